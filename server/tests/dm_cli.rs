//! `handover dm …` support-desk tools, run as the built binary on the
//! real-client captures (PROTOCOL A.1) and on package 0 (PROTOCOL A.5).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use handover::dm::syncml::{self, Message};

fn captures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dm/tests/data/real-clients")
}

const XML: [&str; 5] = [
    "libdmclient-xml/req1.xml",
    "libdmclient-xml/req2.xml",
    "libdmclient-xml/req3.xml",
    "libdmclient-xml/req4.xml",
    "hs20-osu-client/req1.xml",
];
const WBXML: [&str; 4] = [
    "libdmclient-wbxml/req1.wbxml",
    "libdmclient-wbxml/req2.wbxml",
    "libdmclient-wbxml/req3.wbxml",
    "libdmclient-wbxml/req4.wbxml",
];

/// Runs `handover dm ARGS` with `stdin` on standard input.
fn dm(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handover"))
        .arg("dm")
        .args(args)
        .env("HANDOVER_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run handover");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn model(bytes: &[u8]) -> Message {
    syncml::decode(bytes).expect("decodes")
}

fn stderr_one_line(out: &Output) -> String {
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err
}

// PROTOCOL A.1: both encodings decode; the indented XML is the same message.
#[test]
fn decode_real_captures_both_encodings() {
    for rel in XML.iter().chain(WBXML.iter()) {
        let path = captures().join(rel);
        let out = dm(&["decode", path.to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(0), "{rel}: {:?}", out);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("\n  <SyncHdr>"), "{rel}: indented");
        assert_eq!(
            model(text.as_bytes()),
            model(&std::fs::read(&path).unwrap()),
            "{rel}"
        );
    }
}

// PROTOCOL A.1: XML → WBXML → indented XML keeps the model.
#[test]
fn encode_then_decode_gives_the_same_model() {
    for rel in XML {
        let xml = std::fs::read(captures().join(rel)).unwrap();
        let enc = dm(&["encode", "-"], &xml);
        assert_eq!(enc.status.code(), Some(0), "{rel}: {:?}", enc.stderr);
        assert_eq!(enc.stdout[0], 0x02, "{rel}: WBXML 1.2");
        let dec = dm(&["decode", "-"], &enc.stdout);
        assert_eq!(dec.status.code(), Some(0), "{rel}");
        assert_eq!(model(&dec.stdout), model(&xml), "{rel}");
        assert_eq!(model(&enc.stdout), model(&xml), "{rel}");
    }
}

const NOTIFY: [&str; 11] = [
    "notify",
    "--server-id",
    "corp.example.x",
    "--secret",
    "srvpw",
    "--nonce",
    "QUFBQW5vbmNl", // "AAAAnonce"
    "--session",
    "1234",
    "--vendor",
    "0a0b",
];

fn verify(bytes: &[u8], secret: &str) -> Output {
    dm(
        &[
            "verify-notify",
            "-",
            "--secret",
            secret,
            "--nonce",
            "QUFBQW5vbmNl",
        ],
        bytes,
    )
}

// PROTOCOL A.5: worked header vector `02 d8 00 00 00 12 34 0e`; notify and
// verify-notify agree.
#[test]
fn notify_verify_round_trip() {
    let out = dm(&NOTIFY, b"");
    assert_eq!(out.status.code(), Some(0), "{:?}", out.stderr);
    let bytes = out.stdout;
    assert_eq!(
        &bytes[16..24],
        &[0x02, 0xd8, 0x00, 0x00, 0x00, 0x12, 0x34, 0x0e]
    );
    assert_eq!(&bytes[24..], b"corp.example.x\x0a\x0b");

    let v = verify(&bytes, "srvpw");
    assert_eq!(v.status.code(), Some(0), "{v:?}");
    let text = String::from_utf8(v.stdout).unwrap();
    for want in [
        "header        02 d8 00 00 00 12 34 0e",
        "version       11",
        "ui-mode       background",
        "initiator     server",
        "session-id    1234",
        "server-id     corp.example.x (14 bytes)",
        "vendor        0a0b",
        "digest-check  ok",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }

    // Other ui modes land in the two ui bits.
    let mut args = NOTIFY.to_vec();
    args.extend(["--ui", "interactive"]);
    assert_eq!(dm(&args, b"").stdout[17], 0xd8 | 0x20);
}

// PROTOCOL A.5: a changed byte or a wrong secret fails the digest: exit 1.
#[test]
fn tampered_notification_exits_1() {
    let bytes = dm(&NOTIFY, b"").stdout;
    let mut t = bytes.clone();
    *t.last_mut().unwrap() ^= 0x01;
    let v = verify(&t, "srvpw");
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8(v.stdout)
        .unwrap()
        .contains("digest-check  FAILED"));
    assert_eq!(verify(&bytes, "wrong").status.code(), Some(1));
}

// Bad input: one line naming where, exit 2, never a panic.
#[test]
fn garbage_exits_2_with_one_line() {
    let xml = dm(&["decode", "-"], b"<SyncML>\n<SyncHdr>\n<VerDTD>1.2</Ver");
    assert_eq!(xml.status.code(), Some(2));
    let err = stderr_one_line(&xml);
    assert!(err.contains("line 3") && err.contains("byte"), "{err}");

    let wbxml = dm(
        &["decode", "-"],
        &[0x02, 0xa4, 0x01, 0x6a, 0x00, 0x6d, 0x6c],
    );
    assert_eq!(wbxml.status.code(), Some(2));
    assert!(stderr_one_line(&wbxml).contains("byte"));

    let noise: Vec<u8> = (0..=255u8).rev().collect();
    for args in [&["decode", "-"][..], &["encode", "-"]] {
        let out = dm(args, &noise);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        stderr_one_line(&out);
    }

    // encode takes XML only
    let w = std::fs::read(captures().join(WBXML[0])).unwrap();
    let out = dm(&["encode", "-"], &w);
    assert_eq!(out.status.code(), Some(2));
    stderr_one_line(&out);

    let short = verify(b"too short", "srvpw");
    assert_eq!(short.status.code(), Some(2));
    stderr_one_line(&short);

    let mut args = NOTIFY.to_vec();
    args[8] = "12345";
    let out = dm(&args, b"");
    assert_eq!(out.status.code(), Some(2));
    stderr_one_line(&out);

    let missing = dm(&["decode", "/nonexistent/msg.xml"], b"");
    assert_eq!(missing.status.code(), Some(2));
    stderr_one_line(&missing);
}

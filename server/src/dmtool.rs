//! `handover dm …`: support-desk tools for OMA DM messages (PROTOCOL A.1) and
//! package 0 notifications (PROTOCOL A.5).
//!
//! Exit codes: 0 done, 1 a notification whose digest does not verify, 2 bad
//! input or arguments. Every error is one line on standard error, naming the
//! byte offset (and for XML the line) where decoding failed.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use handover_dm::auth::{Nonce, Secret};
use handover_dm::notification::{Notification, ParsedNotification, SessionId, UiMode};
use handover_dm::syncml::{self, Encoding};
use handover_dm::types::ServerId;

#[derive(Debug, Subcommand)]
pub enum DmCommand {
    /// Decode an XML or WBXML message (detected by content) and print it as indented XML.
    Decode {
        /// The message file, or `-` for standard input.
        file: PathBuf,
    },
    /// Encode an XML message as WBXML, written to standard output.
    Encode {
        /// The XML message file, or `-` for standard input.
        file: PathBuf,
    },
    /// Build a package 0 notification and write its bytes to standard output.
    Notify {
        /// The ServerID; it is the server identifier and the SRVCRED name (A.5 profile).
        #[arg(long, value_name = "ID")]
        server_id: String,
        /// The SRVCRED secret stored on the device.
        #[arg(long, value_name = "S")]
        secret: String,
        /// The SRVCRED nonce (AAuthData) in base64.
        #[arg(long, value_name = "B64")]
        nonce: String,
        /// The session id, 1–4 hex digits.
        #[arg(long, value_name = "HEX")]
        session: String,
        #[arg(long, value_enum, default_value = "background")]
        ui: UiArg,
        /// Vendor-specific bytes appended after the server identifier, in hex.
        #[arg(long, value_name = "HEX")]
        vendor: Option<String>,
    },
    /// Print every field of a package 0 and check its digest; exit 1 if it does not verify.
    VerifyNotify {
        /// The notification file, or `-` for standard input.
        file: PathBuf,
        /// The SRVCRED secret stored on the device.
        #[arg(long, value_name = "S")]
        secret: String,
        /// The SRVCRED nonce (AAuthData) in base64.
        #[arg(long, value_name = "B64")]
        nonce: String,
    },
}

/// The `ui-mode` field of package 0 (A.5).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UiArg {
    Unspecified,
    Background,
    Informative,
    Interactive,
}

impl From<UiArg> for UiMode {
    fn from(u: UiArg) -> Self {
        match u {
            UiArg::Unspecified => UiMode::Unspecified,
            UiArg::Background => UiMode::Background,
            UiArg::Informative => UiMode::Informative,
            UiArg::Interactive => UiMode::UserInteraction,
        }
    }
}

/// A one-line reason for exit code 2.
#[derive(Debug)]
struct BadInput(String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line whatever the cause said.
        f.write_str(&self.0.replace(['\n', '\r'], " "))
    }
}

fn bad(msg: impl Into<String>) -> BadInput {
    BadInput(msg.into())
}

/// Runs one `dm` tool on the process's standard streams; returns the exit code.
pub fn run(command: &DmCommand) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run_with(command, &mut std::io::stdin().lock(), &mut out) {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            2
        }
    }
}

fn run_with(cmd: &DmCommand, stdin: &mut dyn Read, out: &mut dyn Write) -> Result<i32, BadInput> {
    let write = |out: &mut dyn Write, bytes: &[u8]| {
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| bad(format!("cannot write output: {e}")))
    };
    match cmd {
        DmCommand::Decode { file } => {
            let bytes = read_input(file, stdin)?;
            let msg = decode(file, &bytes, None)?;
            let mut text = syncml::to_xml_pretty(&msg);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            write(out, text.as_bytes())?;
            Ok(0)
        }
        DmCommand::Encode { file } => {
            let bytes = read_input(file, stdin)?;
            let msg = decode(file, &bytes, Some(Encoding::Xml))?;
            write(out, &syncml::encode_wbxml(&msg))?;
            Ok(0)
        }
        DmCommand::Notify {
            server_id,
            secret,
            nonce,
            session,
            ui,
            vendor,
        } => {
            let server_id = ServerId::parse_strict(server_id.as_str())
                .map_err(|e| bad(format!("--server-id: {e}")))?;
            let nonce = parse_nonce(nonce)?;
            let session_id = parse_session(session)?;
            let vendor = match vendor {
                Some(h) => {
                    hex::decode(h.trim()).map_err(|e| bad(format!("--vendor is not hex: {e}")))?
                }
                None => Vec::new(),
            };
            let n = Notification {
                ui_mode: (*ui).into(),
                server_initiated: true,
                session_id,
                server_id: server_id.clone(),
                vendor,
            };
            // A.5 profile: the SRVCRED name is the ServerID.
            let bytes = n
                .build(server_id.as_str(), &Secret::new(secret.as_str()), &nonce)
                .map_err(|e| bad(e.to_string()))?;
            write(out, &bytes)?;
            Ok(0)
        }
        DmCommand::VerifyNotify {
            file,
            secret,
            nonce,
        } => {
            let nonce = parse_nonce(nonce)?;
            let bytes = read_input(file, stdin)?;
            let p = ParsedNotification::parse(&bytes)
                .map_err(|e| bad(format!("{}: {e}", name(file))))?;
            let n = &p.notification;
            let ok = p.verify(n.server_id.as_str(), &Secret::new(secret.as_str()), &nonce);
            let report = describe(&p, ok);
            write(out, report.as_bytes())?;
            Ok(if ok { 0 } else { 1 })
        }
    }
}

fn name(file: &Path) -> String {
    if file == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    }
}

fn read_input(file: &Path, stdin: &mut dyn Read) -> Result<Vec<u8>, BadInput> {
    let mut bytes = Vec::new();
    let res = if file == Path::new("-") {
        stdin.read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    res.map_err(|e| bad(format!("cannot read {}: {e}", name(file))))?;
    Ok(bytes)
}

/// Decodes a message, or says where it went wrong: the byte offset always,
/// the line too for XML.
fn decode(file: &Path, bytes: &[u8], only: Option<Encoding>) -> Result<syncml::Message, BadInput> {
    let found = Encoding::sniff(bytes);
    if let Some(want) = only {
        if want != found {
            return Err(bad(format!(
                "{}: input is WBXML (byte 0 is {:#04x}); expected XML",
                name(file),
                bytes[0]
            )));
        }
    }
    syncml::decode_as(found, bytes).map_err(|e| match found {
        Encoding::Xml => {
            let upto = e.offset.min(bytes.len());
            let line = 1 + bytes[..upto].iter().filter(|&&b| b == b'\n').count();
            bad(format!("{}: line {line}: {e}", name(file)))
        }
        Encoding::Wbxml => bad(format!("{}: WBXML: {e}", name(file))),
    })
}

fn parse_nonce(s: &str) -> Result<Nonce, BadInput> {
    Nonce::from_b64(s).map_err(|_| bad("--nonce is not base64"))
}

/// 1–4 hex digits, either case, optional `0x`.
fn parse_session(s: &str) -> Result<SessionId, BadInput> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("--session {s:?} is not 1-4 hex digits")));
    }
    u16::from_str_radix(digits, 16)
        .map(SessionId)
        .map_err(|_| bad(format!("--session {s:?} is not 1-4 hex digits")))
}

fn ui_name(u: UiMode) -> &'static str {
    match u {
        UiMode::Unspecified => "unspecified (0)",
        UiMode::Background => "background (1)",
        UiMode::Informative => "informative (2)",
        UiMode::UserInteraction => "interactive (3)",
    }
}

fn hex_spaced(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every field of package 0 (A.5), one per line.
fn describe(p: &ParsedNotification, ok: bool) -> String {
    let n = &p.notification;
    let vendor = if n.vendor.is_empty() {
        "(none)".to_owned()
    } else {
        hex::encode(&n.vendor)
    };
    let fields = [
        ("digest", hex::encode(p.digest)),
        ("header", hex_spaced(&p.trigger[..8])),
        ("version", "11 (DM 1.2)".to_owned()),
        ("ui-mode", ui_name(n.ui_mode).to_owned()),
        (
            "initiator",
            if n.server_initiated {
                "server"
            } else {
                "client"
            }
            .to_owned(),
        ),
        ("reserved", format!("{:#x}", p.reserved)),
        (
            "session-id",
            format!("{} ({})", n.session_id, n.session_id.0),
        ),
        (
            "server-id",
            format!("{} ({} bytes)", n.server_id, n.server_id.as_str().len()),
        ),
        ("vendor", vendor),
        ("digest-check", if ok { "ok" } else { "FAILED" }.to_owned()),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{k:<13} {v}\n"))
        .collect()
}

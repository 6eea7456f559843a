//! B.9 document tests: the example, one test per 400/415 rule, and a
//! serialize → parse round trip for every MsgType.

use super::*;
use proptest::prelude::*;

const CT: &str = "application/vnd.dm.delegation+xml";

/// A header for `msg_type` between corp.example (sender) and carrier.example.
fn doc(msg_type: &str, body: &str) -> String {
    doc_with(
        "xmlns=\"urn:dm-delegation:1.0\" Version=\"1.0\"",
        msg_type,
        body,
    )
}

fn doc_with(root_attrs: &str, msg_type: &str, body: &str) -> String {
    format!(
        "<DelegationMessage {root_attrs}>\
         <MsgType>{msg_type}</MsgType>\
         <MsgID>6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c</MsgID>\
         <DelegationID>0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60</DelegationID>\
         <Sender>corp.example</Sender><Recipient>carrier.example</Recipient>\
         <Sent>2026-11-27T10:00:00Z</Sent>{body}</DelegationMessage>"
    )
}

const TERMS: &str = "<Terms><Initiator>delegated</Initiator>\
    <DelegatingServer>carrier.example</DelegatingServer>\
    <DelegatedServer>corp.example</DelegatedServer>\
    <Device><DevId>IMEI:490154203237518</DevId><Man>Acme</Man><Mod>X1</Mod></Device>\
    <Type>partial</Type>\
    <Scope><Subtree URI=\"./Vendor/Corp/Apps\" Rights=\"Add,Delete,Get,Replace\"/></Scope>\
    <Term>temporary</Term><Expires>2026-12-31T00:00:00Z</Expires>\
    <Reason>Ticket 4711</Reason><RequestedBy>Ana Ops</RequestedBy><ApprovedBy>Ben Lead</ApprovedBy>\
    </Terms>";
const NONCE: &str = "<Nonce>AAECAwQFBgcICQoLDA0ODw==</Nonce>";

fn notification(terms: &str) -> String {
    doc("Notification", &format!("{terms}{NONCE}"))
}

fn parse(s: &str) -> Result<DelegationMessage, WireError> {
    DelegationMessage::parse(s.as_bytes(), CT)
}

#[track_caller]
fn refused(s: &str, code: u16, needle: &str) {
    let e = parse(s).expect_err("must be refused");
    assert_eq!(e.code, code, "{e}");
    assert!(e.message.contains(needle), "{e:?} lacks {needle:?}");
}

/// The example of B.9 with every element, read as a Notification.
const EXAMPLE: &str = r#"<DelegationMessage xmlns="urn:dm-delegation:1.0" Version="1.0">
  <MsgType>Notification</MsgType>
  <MsgID>6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c</MsgID>
  <DelegationID>0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60</DelegationID>
  <Sender>corp.example</Sender>
  <Recipient>carrier.example</Recipient>
  <Sent>2026-11-27T10:00:00Z</Sent>
  <Terms>
    <Initiator>delegated</Initiator>
    <DelegatingServer>carrier.example</DelegatingServer>
    <DelegatedServer>corp.example</DelegatedServer>
    <Device><DevId>IMEI:490154203237518</DevId><Man>Acme</Man><Mod>X1</Mod></Device>
    <Type>partial</Type>
    <Scope><Subtree URI="./Vendor/Corp/Apps" Rights="Add,Delete,Get,Replace"/></Scope>
    <Term>temporary</Term>
    <Expires>2026-12-31T00:00:00Z</Expires>
    <Reason>Ticket 4711</Reason>
    <RequestedBy>Ana Ops</RequestedBy>
    <ApprovedBy>Ben Lead</ApprovedBy>
  </Terms>
  <Nonce>AAECAwQFBgcICQoLDA0ODw==</Nonce>
  <Signature>MEUCIE…</Signature>
  <Approver>Cleo Desk</Approver>
  <DevInfo><DevId>IMEI:490154203237518</DevId><Man>Acme</Man><Mod>X1</Mod><DmV>1.2</DmV><Lang>en</Lang></DevInfo>
  <Acls><Acl URI="./Vendor/Corp/Apps">Add=corp.example&amp;Get=*&amp;Replace=carrier.example+corp.example</Acl></Acls>
  <Reason Code="timeout">no device contact before the deadline</Reason>
</DelegationMessage>"#;

#[test]
fn b9_example_reads_as_a_notification_ignoring_unused_elements() {
    let m = parse(EXAMPLE).unwrap();
    assert_eq!(m.msg_type(), MsgType::Notification);
    let Payload::Notification { terms, nonce } = &m.payload else {
        panic!()
    };
    assert_eq!(nonce.as_str(), "AAECAwQFBgcICQoLDA0ODw==");
    assert_eq!(terms.initiator, Initiator::Delegated);
    assert_eq!(terms.reason.as_deref(), Some("Ticket 4711"));
    assert_eq!(
        terms.scope,
        Scope::Partial(vec![Subtree {
            uri: "./Vendor/Corp/Apps".into(),
            rights: crate::terms::Rights::parse("Add,Delete,Get,Replace").unwrap()
        }])
    );
}

#[test]
fn b9_reason_is_the_direct_child_only() {
    // Terms/Reason must not be taken for the Abort reason.
    let s = doc("Abort", TERMS);
    refused(&s, 400, "DelegationMessage/Reason is missing");
    let s = doc("Abort", "<Reason Code=\"cancelled\"></Reason>");
    let Payload::Abort(r) = parse(&s).unwrap().payload else {
        panic!()
    };
    assert_eq!(r, Reason::new(ReasonCode::Cancelled, ""));
}

#[test]
fn b9_namespace_aware_with_a_prefix_and_foreign_elements_skipped() {
    let s = "<d:DelegationMessage xmlns:d=\"urn:dm-delegation:1.0\" Version=\"1.0\">\
        <d:MsgType>Accept</d:MsgType><d:MsgID>6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c</d:MsgID>\
        <d:DelegationID>0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60</d:DelegationID>\
        <d:Sender>corp.example</d:Sender><d:Recipient>carrier.example</d:Recipient>\
        <d:Sent>2026-11-27T10:00:00Z</d:Sent>\
        <x:Approver xmlns:x=\"urn:other\">Mallory</x:Approver>\
        <d:Approver>Cleo Desk</d:Approver><Approver>no namespace</Approver>\
        </d:DelegationMessage>";
    let m = parse(s).unwrap();
    assert_eq!(
        m.payload,
        Payload::Accept {
            approver: "Cleo Desk".into()
        }
    );
}

#[test]
fn b9_unknown_elements_and_xml_declaration_are_accepted() {
    let s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>{}",
        doc(
            "Accept",
            "<Future><Approver>x</Approver></Future><Approver>Cleo</Approver>"
        )
    );
    assert!(parse(&s).is_ok());
}

#[test]
fn b1_media_type_with_charset_is_accepted_others_415() {
    let s = doc("Accept", "<Approver>Cleo</Approver>");
    let ok = |ct: &str| DelegationMessage::parse(s.as_bytes(), ct);
    assert!(ok("application/vnd.dm.delegation+xml; charset=utf-8").is_ok());
    assert!(ok("Application/VND.dm.delegation+xml;charset=\"UTF-8\"").is_ok());
    assert_eq!(ok("application/xml").unwrap_err().code, 415);
    assert_eq!(
        ok("application/vnd.dm.delegation+xml; charset=latin1")
            .unwrap_err()
            .code,
        415
    );
}

#[test]
fn b9_version_1x_read_other_415_missing_400() {
    let body = "<Approver>Cleo</Approver>";
    let ns = "xmlns=\"urn:dm-delegation:1.0\"";
    assert!(parse(&doc_with(&format!("{ns} Version=\"1.7\""), "Accept", body)).is_ok());
    refused(
        &doc_with(&format!("{ns} Version=\"2.0\""), "Accept", body),
        415,
        "Version",
    );
    refused(
        &doc_with(&format!("{ns} Version=\"1.\""), "Accept", body),
        415,
        "Version",
    );
    refused(&doc_with(ns, "Accept", body), 400, "Version");
    // 415 is checked before 400: a bad Version wins over a missing element.
    refused(
        &doc_with(&format!("{ns} Version=\"3\""), "Accept", ""),
        415,
        "Version",
    );
}

#[test]
fn b9_doctype_refused_but_415_first() {
    let s = format!("<!DOCTYPE x []>{}", doc("Accept", "<Approver>C</Approver>"));
    refused(&s, 400, "DOCTYPE");
    let s = format!(
        "<!DOCTYPE x []>{}",
        doc_with(
            "xmlns=\"urn:dm-delegation:1.0\" Version=\"9.0\"",
            "Accept",
            ""
        )
    );
    refused(&s, 415, "Version");
    let inside = doc("Accept", "<!DOCTYPE x []><Approver>C</Approver>");
    assert_eq!(parse(&inside).unwrap_err().code, 400);
}

#[test]
fn b9_size_bom_utf8_and_well_formedness() {
    let big = doc(
        "Accept",
        &format!("<Approver>{}</Approver>", "a".repeat(MAX_DOCUMENT)),
    );
    refused(&big, 400, "64 KiB");
    let bom = format!("\u{feff}{}", doc("Accept", "<Approver>C</Approver>"));
    refused(&bom, 400, "byte order mark");
    let e = DelegationMessage::parse(b"<a>\xff</a>", CT).unwrap_err();
    assert_eq!(e.code, 400);
    refused(
        "<DelegationMessage xmlns=\"urn:dm-delegation:1.0\" Version=\"1.0\"><MsgType>",
        400,
        "",
    );
    refused(
        &format!("{}<x/>", doc("Accept", "<Approver>C</Approver>")),
        400,
        "after the root",
    );
    refused(
        &doc_with(
            "xmlns=\"urn:other\" Version=\"1.0\"",
            "Accept",
            "<Approver>C</Approver>",
        ),
        400,
        "namespace",
    );
    refused(
        &doc("Accept", "<Approver>&bogus;</Approver>"),
        400,
        "well-formed",
    );
}

#[test]
fn b9_missing_and_repeated_elements_are_400() {
    refused(&doc("Accept", ""), 400, "Approver is missing");
    refused(
        &doc("Accept", "<Approver>a</Approver><Approver>b</Approver>"),
        400,
        "Approver is repeated",
    );
    refused(
        &doc("Accept", "<Approver> </Approver>"),
        400,
        "Approver: empty",
    );
    let twice = doc("Accept", "<Approver>a</Approver>").replace(
        "<Sender>corp.example</Sender>",
        "<Sender>corp.example</Sender><Sender>corp.example</Sender>",
    );
    refused(&twice, 400, "Sender is repeated");
    let no_id = doc("Accept", "<Approver>a</Approver>")
        .replace("<MsgID>6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c</MsgID>", "");
    let e = parse(&no_id).unwrap_err();
    assert_eq!((e.code, e.msg_ref), (400, None));
    // MsgRef is kept when the MsgID could be read.
    let e = parse(&doc("Accept", "")).unwrap_err();
    assert_eq!(
        e.msg_ref.as_ref().unwrap().as_str(),
        "6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c"
    );
    assert_eq!(e.to_status().msg_ref, e.msg_ref);
}

#[test]
fn b9_header_values() {
    let ok = doc("Accept", "<Approver>a</Approver>");
    for (from, to, needle) in [
        (
            "<MsgType>Accept</MsgType>",
            "<MsgType>accept</MsgType>",
            "MsgType",
        ),
        ("6f1c2a90-5b1e", "6F1C2A90-5b1e", "MsgID"),
        ("0b7e7c1e-3a52", "0b7e7c1e3a52-", "DelegationID"),
        ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00+00:00", "Sent"),
        ("2026-11-27T10:00:00Z", "2026-13-27T10:00:00Z", "Sent"),
        (
            "<Sender>corp.example",
            "<Sender> corp.example",
            "whitespace",
        ),
        ("<Sender>corp.example", "<Sender>corp&#1;example", "control"),
        (
            "<Recipient>carrier.example",
            "<Recipient>a&amp;b",
            "Recipient",
        ),
    ] {
        refused(&ok.replace(from, to), 400, needle);
    }
    let long = ok.replace("corp.example", &"c".repeat(256));
    refused(&long, 400, "255");
}

#[test]
fn b9_terms_values() {
    let t = |from: &str, to: &str| notification(&TERMS.replace(from, to));
    assert!(parse(&notification(TERMS)).is_ok());
    for (from, to, needle) in [
        ("<Initiator>delegated", "<Initiator>Delegated", "Initiator"),
        (
            "Rights=\"Add,Delete,Get,Replace\"",
            "Rights=\"Add, Get\"",
            "Rights",
        ),
        (
            "Rights=\"Add,Delete,Get,Replace\"",
            "Rights=\"Get,Get\"",
            "Rights",
        ),
        ("Rights=\"Add,Delete,Get,Replace\"", "Rights=\"\"", "Rights"),
        (" Rights=\"Add,Delete,Get,Replace\"", "", "Rights attribute"),
        (
            "URI=\"./Vendor/Corp/Apps\"",
            "URI=\"./a,b\"",
            "`|`, `;` or `,`",
        ),
        ("URI=\"./Vendor/Corp/Apps\"", "URI=\"./a/../b\"", "URI"),
        ("URI=\"./Vendor/Corp/Apps\"", "URI=\" ./a\"", "whitespace"),
        ("<Type>partial", "<Type>Partial", "Type"),
        ("<Term>temporary", "<Term>forever", "Term"),
        (
            "<Expires>2026-12-31T00:00:00Z",
            "<Expires>2026-12-31",
            "Expires",
        ),
        ("<DevId>IMEI:490154203237518", "<DevId>", "DevId"),
        ("<Man>Acme</Man>", "", "Man is missing"),
        (
            "<Reason>Ticket 4711",
            &format!("<Reason>{}", "r".repeat(1025)),
            "1024",
        ),
        (
            "carrier.example</DelegatingServer>",
            "corp.example</DelegatingServer>",
            "same",
        ),
    ] {
        refused(&t(from, to), 400, needle);
    }
    let twice = "<Subtree URI=\"./Vendor/Corp/Apps\" Rights=\"Add,Delete,Get,Replace\"/>";
    refused(&t(twice, &format!("{twice}{twice}")), 400, "twice");
    refused(&t(twice, ""), 400, "no Subtree");
    refused(
        &t("<Expires>2026-12-31T00:00:00Z</Expires>", ""),
        400,
        "Expires is missing",
    );
    refused(
        &t("<Term>temporary", "<Term>permanent"),
        400,
        "Expires is present",
    );
    refused(&t("<Type>partial", "<Type>full"), 400, "Scope is present");
    let no_scope = t("<Scope>", "<X>").replace("</Scope>", "</X>");
    refused(&no_scope, 400, "Scope is missing");
}

#[test]
fn b9_notification_sender_and_recipient_match_the_initiator() {
    refused(
        &notification(&TERMS.replace(">delegated<", ">delegating<")),
        400,
        "Initiator",
    );
    let reversed = notification(TERMS)
        .replace("<Sender>corp.example", "<Sender>carrier.example")
        .replace("<Recipient>carrier.example", "<Recipient>corp.example");
    refused(&reversed, 400, "Initiator");
}

#[test]
fn b9_nonces_and_signatures_are_canonical_base64() {
    for bad in [
        "AAECAwQFBgcICQoLDA0ODw",    // no padding
        "AAECAwQFBgcICQoLDA0ODx==",  // non-canonical trailing bits
        "AAECAwQFBgcICQoLDA0O",      // 15 bytes
        "AAECAwQFBgcI CQoLDA0ODw==", // whitespace
    ] {
        let s = doc("Notification", &format!("{TERMS}<Nonce>{bad}</Nonce>"));
        refused(&s, 400, "Nonce");
    }
    refused(
        &doc("AuthResponse", "<Signature>MEU=x</Signature>"),
        400,
        "Signature",
    );
    assert!(parse(&doc("AuthResponse", "<Signature>MEUCIA==</Signature>")).is_ok());
}

const GRANT: &str = "<Grant><AccountNode>./DMAcc/corp-example</AccountNode><AuthType>DIGEST</AuthType>\
    <ClientName>cl-1</ClientName><ClientSecret>s3cr3t!</ClientSecret>\
    <ClientNonce>YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4</ClientNonce>\
    <ServerName>corp.example</ServerName><ServerSecret>srv~secret</ServerSecret>\
    <ServerNonce>QUJDREVGR0hJSktMTU5PUFFSU1RVVldY</ServerNonce>\
    <PushAddress>http://127.0.0.1:9001/push</PushAddress><Deadline>2026-11-28T10:00:00Z</Deadline></Grant>";

#[test]
fn b9_grant_values_and_secrets_not_in_debug() {
    let m = parse(&doc("Start", GRANT)).unwrap();
    let dbg = format!("{m:?}");
    assert!(!dbg.contains("s3cr3t") && !dbg.contains("srv~secret") && !dbg.contains("YWJj"));
    let g = |from: &str, to: &str| doc("Start", &GRANT.replace(from, to));
    for (from, to, needle) in [
        ("<AuthType>DIGEST", "<AuthType>digest", "AuthType"),
        ("s3cr3t!", "has space", "ClientSecret"),
        ("s3cr3t!", &"x".repeat(65), "ClientSecret"),
        ("<ClientName>cl-1", "<ClientName>", "ClientName"),
        // 24 bytes but not base64url characters
        (
            "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX",
            "ClientNonce",
        ),
        ("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", "QUJD", "ServerNonce"),
        ("./DMAcc/corp-example", "DMAcc//x", "AccountNode"),
        (
            "<Deadline>2026-11-28T10:00:00Z</Deadline>",
            "",
            "Deadline is missing",
        ),
    ] {
        refused(&g(from, to), 400, needle);
    }
    assert!(parse(&g(
        "<PushAddress>http://127.0.0.1:9001/push</PushAddress>",
        ""
    ))
    .is_ok());
}

#[test]
fn b9_devinfo_acls_and_reason_values() {
    let dev = "<DevInfo><DevId>IMEI:1</DevId><Man>Acme</Man><Mod>X1</Mod><DmV>1.2</DmV><Lang>en</Lang></DevInfo>";
    assert!(parse(&doc("Bootstrapped", dev)).is_ok());
    refused(
        &doc("Bootstrapped", &dev.replace("IMEI:1", "")),
        400,
        "DevId",
    );
    refused(
        &doc("Bootstrapped", &dev.replace("<Lang>en</Lang>", "")),
        400,
        "Lang is missing",
    );
    let m = parse(&doc("Complete", "<Acls/>")).unwrap();
    assert_eq!(m.payload, Payload::Complete { acls: vec![] });
    refused(&doc("Complete", ""), 400, "Acls is missing");
    refused(
        &doc("Complete", "<Acls><Acl URI=\"./a\">Get=</Acl></Acls>"),
        400,
        "Acl",
    );
    refused(
        &doc("Complete", "<Acls><Acl>Get=*</Acl></Acls>"),
        400,
        "URI attribute",
    );
    refused(&doc("Revoke", "<Reason>x</Reason>"), 400, "Code attribute");
    refused(
        &doc("Revoke", "<Reason Code=\"later\">x</Reason>"),
        400,
        "reason code",
    );
    let long = format!("<Reason Code=\"expired\">{}</Reason>", "é".repeat(1025));
    refused(&doc("Relinquish", &long), 400, "1024");
    let ok = format!("<Reason Code=\"expired\">{}</Reason>", "é".repeat(1024));
    assert!(parse(&doc("Relinquish", &ok)).is_ok());
}

#[test]
fn b9_status_round_trip_and_example() {
    let ex = "<DelegationStatus xmlns=\"urn:dm-delegation:1.0\"><MsgRef>6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c</MsgRef>\
        <Code>409</Code><Text>not valid now</Text><Expected>AuthResponse</Expected></DelegationStatus>";
    let s = DelegationStatus::parse(ex.as_bytes(), CT).unwrap();
    assert_eq!(s.code, 409);
    assert_eq!(s.expected, Some(Expected::Msg(MsgType::AuthResponse)));
    for expected in [
        None,
        Some(Expected::Nothing),
        Some(Expected::Msg(MsgType::Start)),
    ] {
        let st = DelegationStatus {
            msg_ref: None,
            code: 409,
            text: "not valid <now> & later".into(),
            expected,
        };
        assert_eq!(DelegationStatus::parse(&st.serialize(), CT).unwrap(), st);
    }
    let bad =
        "<DelegationStatus xmlns=\"urn:dm-delegation:1.0\"><Code>20</Code></DelegationStatus>";
    assert_eq!(
        DelegationStatus::parse(bad.as_bytes(), CT)
            .unwrap_err()
            .code,
        400
    );
}

// ------------------------------------------------------------ round trip

/// Text that XML can carry: no control characters but TAB, LF and CR.
fn free_text() -> impl Strategy<Value = String> {
    "[ -~\\t\\n\\ré€<>&\"']{0,20}"
}

fn id_text() -> impl Strategy<Value = String> {
    "[a-z0-9.:-]{1,12}"
}

fn server() -> impl Strategy<Value = ServerId> {
    id_text().prop_map(|s| ServerId::parse(s).unwrap())
}

fn time() -> impl Strategy<Value = UtcTime> {
    (0i64..4_000_000_000).prop_map(|s| UtcTime::from_unix(s).unwrap())
}

fn uuid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

fn nonce() -> impl Strategy<Value = NonceB64> {
    proptest::collection::vec(any::<u8>(), 16..40).prop_map(|b| NonceB64::from_bytes(&b).unwrap())
}

fn signature() -> impl Strategy<Value = SignatureB64> {
    proptest::collection::vec(any::<u8>(), 1..80)
        .prop_map(|b| SignatureB64::parse(&B64.encode(b)).unwrap())
}

fn reason() -> impl Strategy<Value = Reason> {
    (0usize..9, free_text()).prop_map(|(i, t)| Reason::new(ReasonCode::ALL[i], t))
}

fn terms() -> impl Strategy<Value = Terms> {
    let scope = prop_oneof![
        Just(Scope::Full),
        proptest::collection::btree_map("[A-Za-z0-9]{1,6}", 1u8..32, 1..4).prop_map(|m| {
            Scope::Partial(
                m.into_iter()
                    .map(|(seg, bits)| {
                        let mut rights = crate::terms::Rights::empty();
                        for (i, cmd) in handover_dm::AclCmd::ALL.into_iter().enumerate() {
                            if bits & (1 << i) != 0 {
                                rights.insert(cmd);
                            }
                        }
                        Subtree {
                            uri: format!("./{seg}"),
                            rights,
                        }
                    })
                    .collect(),
            )
        }),
    ];
    let term = prop_oneof![
        Just(Term::Permanent),
        time().prop_map(|expires| Term::Temporary { expires })
    ];
    (
        any::<bool>(),
        id_text(),
        scope,
        term,
        (free_text(), free_text()),
        proptest::option::of(free_text()),
        proptest::option::of(free_text()),
        proptest::option::of(free_text()),
    )
        .prop_map(
            |(delegating_init, dev, scope, term, (man, model), r, q, a)| Terms {
                initiator: if delegating_init {
                    Initiator::Delegating
                } else {
                    Initiator::Delegated
                },
                delegating: ServerId::parse("carrier.example").unwrap(),
                delegated: ServerId::parse("corp.example").unwrap(),
                device: Device {
                    dev_id: DevId::parse(dev).unwrap(),
                    man,
                    model,
                },
                scope,
                term,
                reason: r,
                requested_by: q,
                approved_by: a,
            },
        )
}

fn grant_nonce_text() -> impl Strategy<Value = OneTime> {
    "[A-Za-z0-9_-]{24}".prop_map(|s| OneTime::new(B64.encode(s)))
}

fn grant() -> impl Strategy<Value = Grant> {
    let name = "[!-~]{1,64}";
    (
        (name, name, name, name),
        (grant_nonce_text(), grant_nonce_text()),
        0usize..3,
        proptest::option::of("[a-z:/0-9.]{1,20}"),
        time(),
    )
        .prop_map(
            |((cn, cs, sn, ss), (c_nonce, s_nonce), auth, push, deadline)| Grant {
                credentials: BootstrapCredentials {
                    account_node: "./DMAcc/corp-example".into(),
                    auth_type: [AuthType::Basic, AuthType::Md5, AuthType::Hmac][auth],
                    client_name: cn,
                    client_secret: OneTime::new(cs),
                    client_nonce: c_nonce,
                    server_name: sn,
                    server_secret: OneTime::new(ss),
                    server_nonce: s_nonce,
                    push_address: push,
                },
                deadline,
            },
        )
}

pub(crate) fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (terms(), nonce()).prop_map(|(terms, nonce)| Payload::Notification { terms, nonce }),
        (nonce(), signature())
            .prop_map(|(nonce, signature)| Payload::AuthChallenge { nonce, signature }),
        signature().prop_map(|signature| Payload::AuthResponse { signature }),
        "[!-~][ -~]{0,10}".prop_map(|approver| Payload::Accept { approver }),
        grant().prop_map(|grant| Payload::Start { grant }),
        (
            id_text(),
            free_text(),
            free_text(),
            free_text(),
            free_text()
        )
            .prop_map(|(d, man, model, dmv, lang)| Payload::Bootstrapped {
                dev_info: DevInfo {
                    dev_id: DevId::parse(d).unwrap(),
                    man,
                    model,
                    dmv,
                    lang
                }
            }),
        proptest::collection::vec(("[A-Za-z]{1,5}", server()), 0..4).prop_map(|v| {
            Payload::Complete {
                acls: v
                    .into_iter()
                    .map(|(seg, s)| AclEntry {
                        uri: format!("./{seg}"),
                        value: format!("Get=*&Replace={s}"),
                    })
                    .collect(),
            }
        }),
        reason().prop_map(Payload::Abort),
        reason().prop_map(Payload::Revoke),
        reason().prop_map(Payload::Relinquish),
    ]
}

proptest! {
    #[test]
    fn b9_every_msg_type_round_trips(
        payload in payload(),
        msg_id in uuid(),
        delegation_id in uuid(),
        sent in time(),
    ) {
        // A Notification's Sender and Recipient follow its Initiator (B.9).
        let corp = ServerId::parse("corp.example").unwrap();
        let carrier = ServerId::parse("carrier.example").unwrap();
        let (sender, recipient) = match &payload {
            Payload::Notification { terms, .. } if terms.initiator == Initiator::Delegating => {
                (carrier, corp)
            }
            _ => (corp, carrier),
        };
        let m = DelegationMessage {
            msg_id: MsgId::parse(&msg_id).unwrap(),
            delegation_id: DelegationId::parse(&delegation_id).unwrap(),
            sender,
            recipient,
            sent,
            payload,
        };
        let bytes = m.serialize();
        let back = DelegationMessage::parse(&bytes, CT);
        prop_assert_eq!(back, Ok(m), "{}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn b9_time_arithmetic_saturates_and_text_is_unique() {
    let t = UtcTime::parse("2026-11-27T10:00:00Z").unwrap();
    assert_eq!(
        (t + Duration::minutes(10)).to_string(),
        "2026-11-27T10:10:00Z"
    );
    assert_eq!((t - Duration::days(1)).to_string(), "2026-11-26T10:00:00Z");
    assert!(t + Duration::MAX > t);
    assert!(t - Duration::MAX < t);
    assert_eq!(UtcTime::parse("2026-02-30T10:00:00Z"), None);
    assert_eq!(UtcTime::parse("2026-11-27T24:00:00Z"), None);
}

proptest! {
    /// Cut or byte-flipped documents are refused with 400 or 415, never a panic.
    #[test]
    fn b9_damaged_documents_are_refused_not_panicked(
        payload in payload(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let m = DelegationMessage {
            msg_id: MsgId::parse("6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c").unwrap(),
            delegation_id: DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap(),
            sender: ServerId::parse("corp.example").unwrap(),
            recipient: ServerId::parse("carrier.example").unwrap(),
            sent: UtcTime::parse("2026-11-27T10:00:00Z").unwrap(),
            payload,
        };
        let mut bytes = m.serialize();
        let i = flip.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Err(e) = DelegationMessage::parse(&bytes, CT) {
            prop_assert!(e.code == 400 || e.code == 415);
        }
        let _ = DelegationStatus::parse(&bytes, CT);
    }
}

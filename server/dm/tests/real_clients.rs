//! Messages captured from independent DM clients decode (PROTOCOL A.1), and
//! each WBXML capture decodes to the model of its XML twin.

use std::path::PathBuf;

use handover_dm::syncml::{self, Command, Data, Message};
use handover_dm::tnds::MgmtTree;
use handover_dm::{AlertCode, StatusCode};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-clients")
}

fn load(rel: &str) -> Message {
    let bytes = std::fs::read(data_dir().join(rel)).unwrap();
    syncml::decode(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The two libdmclient runs differ only in nonces (README of the captures).
fn without_nonces(mut m: Message) -> Message {
    for c in &mut m.body {
        if let Command::Status(s) = c {
            if let Some(ch) = &mut s.chal {
                ch.meta.next_nonce = ch.meta.next_nonce.as_ref().map(|_| "N".to_owned());
            }
        }
    }
    m
}

// PROTOCOL A.1: both encodings of the same message give the same model.
#[test]
fn libdmclient_wbxml_equals_xml() {
    for n in 1..=4 {
        let x = load(&format!("libdmclient-xml/req{n}.xml"));
        let w = load(&format!("libdmclient-wbxml/req{n}.wbxml"));
        let (mut xn, mut wn) = (without_nonces(x.clone()), without_nonces(w.clone()));
        if n == 3 {
            // The captures differ in one more place than the README says
            // (libwbxml's own wbxml2xml shows it too): the WBXML run found
            // `./Vendor/test/persist` left by the XML run and answered 418.
            assert_eq!(*persist(&mut xn), StatusCode::OK);
            assert_eq!(*persist(&mut wn), StatusCode::ALREADY_EXISTS);
            *persist(&mut wn) = StatusCode::OK;
        }
        assert_eq!(xn, wn, "req{n}");
        // and each re-encodes to itself in both encodings
        for m in [x, w] {
            assert_eq!(syncml::decode(&syncml::encode_xml(&m)).unwrap(), m);
            assert_eq!(syncml::decode(&syncml::encode_wbxml(&m)).unwrap(), m);
            let pretty = syncml::to_xml_pretty(&m);
            assert_eq!(syncml::decode(pretty.as_bytes()).unwrap(), m);
        }
    }
}

// PROTOCOL A.3: package 1 of libdmclient: Alert 1201, Replace of DevInfo, basic Cred.
#[test]
fn libdmclient_package1() {
    let m = load("libdmclient-xml/req1.xml");
    assert_eq!(m.hdr.msg_id.get(), 1);
    assert_eq!(m.hdr.session_id, "1");
    assert_eq!(m.hdr.source.loc_uri, "DMCtest");
    assert_eq!(m.hdr.meta.as_ref().unwrap().max_msg_size, Some(16384));
    let cred = m.hdr.cred.as_ref().unwrap();
    assert_eq!(
        cred.meta.as_ref().unwrap().type_.as_deref(),
        Some("syncml:auth-basic")
    );
    assert_eq!(cred.data, "ZnVuYW1ib2w6ZnVuYW1ib2w=");
    assert!(m.final_);
    let Command::Alert(a) = &m.body[0] else {
        panic!()
    };
    assert_eq!(a.data, AlertCode::CLIENT_INITIATED);
    let Command::Replace(r) = &m.body[1] else {
        panic!()
    };
    assert_eq!(r.items.len(), 13);
    assert!(r.items[1].meta.as_ref().unwrap().format_is("node"));
    assert_eq!(
        r.items[10].data,
        Some(Data::Text("DMCtest".into())),
        "DevId leaf"
    );
}

// PROTOCOL A.2, A.4: the SyncHdr Status (CmdRef 0) with a Chal; CDATA data.
#[test]
fn libdmclient_statuses() {
    let m = load("libdmclient-xml/req3.xml");
    let Command::Status(s) = &m.body[0] else {
        panic!()
    };
    assert_eq!(s.cmd_ref, syncml::CmdRef::SyncHdr);
    assert_eq!(s.cmd, "SyncHdr");
    assert_eq!(s.data, StatusCode::AUTHENTICATED);
    let chal = s.chal.as_ref().unwrap();
    assert_eq!(chal.meta.next_nonce.as_deref(), Some("M0owaFpqQnMvd1k9"));
    let acl = m.body.iter().find_map(|c| match c {
        Command::Results(r) if r.cmd_ref.get() == 13 => r.items[0].data.clone(),
        _ => None,
    });
    assert_eq!(acl, Some(Data::Text("Get=*&Replace=funambol".into())));
    let alert = m.body.iter().find_map(|c| match c {
        Command::Alert(a) => Some(a),
        _ => None,
    });
    assert_eq!(alert.unwrap().correlator.as_deref(), Some("corr-42"));
}

// PROTOCOL A.1, A.3: hs20 quirks: `Chr`, escaped TNDS in a Generic Alert, no Cred.
#[test]
fn hs20_package1() {
    let m = load("hs20-osu-client/req1.xml");
    assert!(m.hdr.cred.is_none());
    let Command::Alert(g) = &m.body[1] else {
        panic!()
    };
    assert_eq!(g.data, AlertCode::GENERIC);
    let item = &g.items[0];
    assert!(item.meta.as_ref().unwrap().format_is("xml"));
    let Some(Data::Text(text)) = &item.data else {
        panic!("escaped TNDS stays text")
    };
    let tree = MgmtTree::parse_xml(text).unwrap();
    assert_eq!(tree.nodes[0].node_name, "DevDetail");
    assert_eq!(tree.nodes[0].nodes.len(), 8);
    assert_eq!(MgmtTree::parse_xml(&tree.to_xml()).unwrap(), tree);
    assert_eq!(MgmtTree::parse_wbxml(&tree.to_wbxml()).unwrap(), tree);
    let Command::Replace(r) = &m.body[2] else {
        panic!()
    };
    let meta = r.items[0].meta.as_ref().unwrap();
    assert_eq!(meta.format.as_deref(), Some("Chr"));
    assert!(meta.format_is("chr"));
    // WBXML round trip of an hs20 message
    assert_eq!(syncml::decode(&syncml::encode_wbxml(&m)).unwrap(), m);
}

fn persist(m: &mut Message) -> &mut StatusCode {
    m.body
        .iter_mut()
        .find_map(|c| match c {
            Command::Status(s) if s.cmd_ref.get() == 15 => Some(&mut s.data),
            _ => None,
        })
        .unwrap()
}

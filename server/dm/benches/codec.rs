//! Codec throughput (PROTOCOL A.1): parse + serialize of typical messages in
//! XML and in WBXML, each beside a bare quick-xml event scan of the same XML
//! bytes, the floor any XML decoder on quick-xml pays. See RESULTS.md.
//!
//! `cargo bench -p handover-dm --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use handover_dm::syncml::{
    decode_as, encode_wbxml, encode_xml, CmdRef, Command, Data, Encoding, Item, ItemCmd, LocRef,
    Message, Meta, Results, Status, SyncHdr,
};
use handover_dm::tnds::{DfFormat, DfType, MgmtTree, Node, RtProperties};
use handover_dm::{CmdId, StatusCode};
use quick_xml::events::Event;
use quick_xml::Reader;

const PKG1_XML: &[u8] = include_bytes!("../tests/data/real-clients/libdmclient-xml/req1.xml");

fn id(n: u32) -> CmdId {
    CmdId::new(n).expect("non-zero")
}

fn hdr(msg_id: u32) -> SyncHdr {
    SyncHdr {
        ver_dtd: "1.2".into(),
        ver_proto: "DM/1.2".into(),
        session_id: "1234".into(),
        msg_id: NonZeroU32::new(msg_id).expect("non-zero"),
        target: LocRef::uri("IMEI:493005100592800"),
        source: LocRef::uri("https://dm.corp.example/dm"),
        resp_uri: None,
        no_resp: false,
        cred: None,
        meta: None,
    }
}

fn leaf(uri: &str, value: &str) -> Item {
    Item {
        target: Some(LocRef::uri(uri)),
        meta: Some(Meta::with_format_type("chr", "text/plain")),
        data: Some(Data::from(value)),
        ..Item::default()
    }
}

/// Package 2 (PROTOCOL A.3): the SyncHdr Status and 99 management commands.
fn package2() -> Message {
    let mut body = vec![Command::Status(Status {
        cmd_id: id(1),
        msg_ref: NonZeroU32::new(1),
        cmd_ref: CmdRef::SyncHdr,
        cmd: "SyncHdr".into(),
        target_refs: vec!["https://dm.corp.example/dm".into()],
        source_refs: vec!["IMEI:493005100592800".into()],
        cred: None,
        chal: None,
        data: StatusCode::new(212).expect("212"),
        items: vec![],
    })];
    for n in 2..=100 {
        let uri = format!("./Vendor/corp/Settings/Group{}/Value{n}", n % 7);
        let cmd = match n % 4 {
            0 => Command::Get(ItemCmd::new(
                id(n),
                vec![Item {
                    target: Some(LocRef::uri(uri)),
                    ..Item::default()
                }],
            )),
            1 => Command::Replace(ItemCmd::new(id(n), vec![leaf(&uri, "some setting value")])),
            2 => Command::Add(ItemCmd::new(id(n), vec![leaf(&uri, "42")])),
            _ => Command::Delete(ItemCmd::new(
                id(n),
                vec![Item {
                    target: Some(LocRef::uri(uri)),
                    ..Item::default()
                }],
            )),
        };
        body.push(cmd);
    }
    Message {
        hdr: hdr(2),
        body,
        final_: true,
    }
}

fn tnds_node(name: &str, value: Option<String>, nodes: Vec<Node>) -> Node {
    let interior = value.is_none();
    Node {
        node_name: name.into(),
        path: None,
        rt_properties: Some(RtProperties {
            acl: Some("Get=*&Replace=corp.example".into()),
            format: Some(if interior {
                DfFormat::Node
            } else {
                DfFormat::Chr
            }),
            type_: Some(if interior {
                DfType::DdfName(String::new())
            } else {
                DfType::Mime("text/plain".into())
            }),
            ..RtProperties::default()
        }),
        value,
        nodes,
    }
}

/// Package 3 (PROTOCOL A.3): a Results holding a TNDS tree of 51 nodes
/// (one interior root, 10 interior nodes of 4 leaves each).
fn results_tnds() -> Message {
    let groups = (0..10)
        .map(|g| {
            let leaves = (0..4)
                .map(|l| tnds_node(&format!("Leaf{l}"), Some(format!("value {g}.{l}")), vec![]))
                .collect();
            tnds_node(&format!("Group{g}"), None, leaves)
        })
        .collect();
    let mut root = tnds_node("Settings", None, groups);
    root.path = Some("./Vendor/corp".into());
    let tree = MgmtTree::new(vec![root]);
    let status = Command::Status(Status {
        cmd_id: id(1),
        msg_ref: NonZeroU32::new(2),
        cmd_ref: CmdRef::SyncHdr,
        cmd: "SyncHdr".into(),
        target_refs: vec!["https://dm.corp.example/dm".into()],
        source_refs: vec!["IMEI:493005100592800".into()],
        cred: None,
        chal: None,
        data: StatusCode::OK,
        items: vec![],
    });
    let results = Command::Results(Results {
        cmd_id: id(2),
        msg_ref: NonZeroU32::new(2),
        cmd_ref: CmdRef::Cmd(id(3)),
        meta: None,
        target_ref: None,
        source_ref: None,
        items: vec![Item {
            source: Some(LocRef::uri("./Vendor/corp/Settings")),
            meta: Some(Meta::with_format_type(
                "xml",
                "application/vnd.syncml.dmtnds+xml",
            )),
            data: Some(Data::Tree(Box::new(tree))),
            ..Item::default()
        }],
    });
    let mut h = hdr(3);
    std::mem::swap(&mut h.target, &mut h.source);
    Message {
        hdr: h,
        body: vec![status, results],
        final_: true,
    }
}

/// The baseline: every quick-xml event of `xml`, nothing kept.
fn raw_scan(xml: &[u8]) -> usize {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut events = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return events,
            Ok(e) => {
                black_box(&e);
                events += 1;
            }
            Err(e) => panic!("scan: {e}"),
        }
    }
}

fn case(c: &mut Criterion, name: &str, xml: Vec<u8>) {
    let msg = decode_as(Encoding::Xml, &xml).expect("case decodes");
    let wbxml = encode_wbxml(&msg);
    assert_eq!(decode_as(Encoding::Wbxml, &wbxml).expect("twin"), msg);
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(xml.len() as u64));
    g.bench_function("raw_scan_xml", |b| b.iter(|| raw_scan(black_box(&xml))));
    g.bench_function("xml", |b| {
        b.iter(|| encode_xml(&decode_as(Encoding::Xml, black_box(&xml)).expect("decodes")))
    });
    g.throughput(Throughput::Bytes(wbxml.len() as u64));
    g.bench_function("wbxml", |b| {
        b.iter(|| encode_wbxml(&decode_as(Encoding::Wbxml, black_box(&wbxml)).expect("decodes")))
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    case(c, "pkg1_libdmclient", PKG1_XML.to_vec());
    case(c, "pkg2_100_commands", encode_xml(&package2()));
    case(c, "results_tnds_51_nodes", encode_xml(&results_tnds()));
}

criterion_group!(benches, codec);
criterion_main!(benches);

//! parse(serialize(m)) == m for both encodings over generated messages
//! (PROTOCOL A.1: both encodings MUST be supported and carry the same model).

use base64::Engine as _;
use handover_dm::syncml::*;
use handover_dm::tnds::{DfFormat, DfType, MgmtTree, Node, RtProperties};
use handover_dm::{AlertCode, CmdId, StatusCode};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use std::num::NonZeroU32;

fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9./:?=&<>'\"+_-]{0,10}"
}

fn text() -> impl Strategy<Value = String> {
    // Data keeps blanks and any printable character, including non-ASCII.
    "[ -~\u{e9}\u{65e5}\u{1F600}]{0,16}"
}

fn cmd_id() -> impl Strategy<Value = CmdId> {
    (1u32..=u32::MAX).prop_map(|n| CmdId::new(n).unwrap())
}

fn nz() -> impl Strategy<Value = NonZeroU32> {
    (1u32..=u32::MAX).prop_map(|n| NonZeroU32::new(n).unwrap())
}

fn meta() -> BoxedStrategy<Meta> {
    (
        (of(word()), of(word()), of(word()), of(any::<u64>())),
        of((of(word()), of(word())).prop_map(|(last, next)| Anchor { last, next })),
        (of(word()), of(word()), of(any::<u64>()), of(any::<u64>())),
        vec(word(), 0..3),
        of(
            (any::<bool>(), of(any::<u64>()), of(any::<u64>())).prop_map(|(s, m, i)| Mem {
                shared_mem: s,
                free_mem: m,
                free_id: i,
            }),
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                (format, type_, mark, size),
                anchor,
                (version, next_nonce, mms, mos),
                emi,
                mem,
                fl,
            )| {
                Meta {
                    format,
                    type_,
                    mark,
                    size,
                    anchor,
                    version,
                    next_nonce,
                    max_msg_size: mms,
                    max_obj_size: mos,
                    emi,
                    mem,
                    field_level: fl,
                }
            },
        )
        .boxed()
}

fn loc() -> BoxedStrategy<LocRef> {
    (word(), of(word()))
        .prop_map(|(loc_uri, loc_name)| LocRef { loc_uri, loc_name })
        .boxed()
}

fn tnds_node() -> BoxedStrategy<Node> {
    let props = (
        of(word()),
        of(proptest::sample::select(DfFormat::ALL.to_vec())),
        of(word()),
        of(any::<u64>()),
        of(word()),
        of(prop_oneof![
            word().prop_map(DfType::Mime),
            word().prop_map(DfType::DdfName)
        ]),
    )
        .prop_map(|(acl, format, name, size, title, type_)| RtProperties {
            acl,
            format,
            name,
            size,
            title,
            tstamp: None,
            type_,
            ver_no: Some("1".into()),
        });
    let leaf = (word(), of(word()), of(props), of(text())).prop_map(|(n, path, p, value)| Node {
        node_name: n,
        path,
        rt_properties: p,
        value,
        nodes: vec![],
    });
    leaf.prop_recursive(3, 12, 3, |inner| {
        (word(), vec(inner, 0..3)).prop_map(|(n, nodes)| Node {
            node_name: n,
            nodes,
            ..Node::default()
        })
    })
    .boxed()
}

fn data() -> BoxedStrategy<Data> {
    prop_oneof![
        text().prop_map(Data::Text),
        // Binary is never valid UTF-8 (the Data rule): lead with 0xFF.
        vec(any::<u8>(), 0..24).prop_map(|mut b| {
            b.insert(0, 0xFF);
            Data::Binary(b)
        }),
        (of(word()), vec(tnds_node(), 0..3)).prop_map(|(man, nodes)| {
            let mut t = MgmtTree::new(nodes);
            t.man = man;
            Data::Tree(Box::new(t))
        }),
    ]
    .boxed()
}

fn item() -> BoxedStrategy<Item> {
    (
        of(loc()),
        of(loc()),
        of(word()),
        of(word()),
        of(meta()),
        of(data()),
        any::<bool>(),
    )
        .prop_map(|(target, source, tp, sp, meta, data, more_data)| Item {
            target,
            source,
            target_parent: tp,
            source_parent: sp,
            meta,
            data,
            more_data,
        })
        .boxed()
}

fn cred() -> BoxedStrategy<Cred> {
    (of(meta()), word())
        .prop_map(|(meta, data)| Cred { meta, data })
        .boxed()
}

fn item_cmd() -> BoxedStrategy<ItemCmd> {
    (
        cmd_id(),
        any::<bool>(),
        of(cred()),
        of(meta()),
        vec(item(), 0..3),
    )
        .prop_map(|(cmd_id, no_resp, cred, meta, items)| ItemCmd {
            cmd_id,
            no_resp,
            cred,
            meta,
            items,
        })
        .boxed()
}

fn leaf_command() -> BoxedStrategy<Command> {
    prop_oneof![
        item_cmd().prop_map(Command::Add),
        item_cmd().prop_map(Command::Copy),
        item_cmd().prop_map(Command::Delete),
        item_cmd().prop_map(Command::Get),
        item_cmd().prop_map(Command::Replace),
        (
            cmd_id(),
            any::<bool>(),
            of(cred()),
            of(meta()),
            of(word()),
            item()
        )
            .prop_map(
                |(cmd_id, no_resp, cred, meta, correlator, item)| Command::Exec(Exec {
                    cmd_id,
                    no_resp,
                    cred,
                    meta,
                    correlator,
                    item
                })
            ),
        (
            cmd_id(),
            any::<bool>(),
            of(cred()),
            1000u16..=9999,
            of(word()),
            vec(item(), 0..2)
        )
            .prop_map(|(cmd_id, no_resp, cred, code, correlator, items)| {
                Command::Alert(Alert {
                    cmd_id,
                    no_resp,
                    cred,
                    data: AlertCode::new(code).unwrap(),
                    correlator,
                    items,
                })
            }),
    ]
    .boxed()
}

fn nested_command() -> BoxedStrategy<Command> {
    leaf_command()
        .prop_recursive(3, 16, 4, |inner| {
            (
                cmd_id(),
                any::<bool>(),
                of(meta()),
                vec(inner, 0..4),
                any::<bool>(),
            )
                .prop_map(|(cmd_id, no_resp, meta, commands, atomic)| {
                    let c = Container {
                        cmd_id,
                        no_resp,
                        meta,
                        commands,
                    };
                    if atomic {
                        Command::Atomic(c)
                    } else {
                        Command::Sequence(c)
                    }
                })
        })
        .boxed()
}

fn command() -> BoxedStrategy<Command> {
    prop_oneof![
        nested_command(),
        (
            (cmd_id(), of(nz()), any::<u32>(), word()),
            (vec(word(), 0..3), vec(word(), 0..3), of(cred()), of(meta())),
            (100u16..=599, vec(item(), 0..2)),
        )
            .prop_map(
                |((cmd_id, msg_ref, r, cmd), (t, s, cred, chal), (code, items))| {
                    Command::Status(Status {
                        cmd_id,
                        msg_ref,
                        cmd_ref: CmdRef::new(r),
                        cmd,
                        target_refs: t,
                        source_refs: s,
                        cred,
                        chal: chal.map(|meta| Chal { meta }),
                        data: StatusCode::new(code).unwrap(),
                        items,
                    })
                }
            ),
        (
            (cmd_id(), of(nz()), any::<u32>(), of(meta())),
            (of(word()), of(word()), vec(item(), 0..3)),
        )
            .prop_map(
                |((cmd_id, msg_ref, r, meta), (target_ref, source_ref, items))| {
                    Command::Results(Results {
                        cmd_id,
                        msg_ref,
                        cmd_ref: CmdRef::new(r),
                        meta,
                        target_ref,
                        source_ref,
                        items,
                    })
                }
            ),
    ]
    .boxed()
}

fn message() -> BoxedStrategy<Message> {
    (
        (word(), word(), word(), nz(), loc(), loc()),
        (of(word()), any::<bool>(), of(cred()), of(meta())),
        vec(command(), 0..5),
        any::<bool>(),
    )
        .prop_map(
            |(
                (ver_dtd, ver_proto, session_id, msg_id, target, source),
                (resp_uri, no_resp, cred, meta),
                body,
                final_,
            )| {
                Message {
                    hdr: SyncHdr {
                        ver_dtd,
                        ver_proto,
                        session_id,
                        msg_id,
                        target,
                        source,
                        resp_uri,
                        no_resp,
                        cred,
                        meta,
                    },
                    body,
                    final_,
                }
            },
        )
        .boxed()
}

/// XML carries no raw bytes: binary data travels as base64 text and comes
/// back as text (documented on `xml`).
fn as_xml_sees_it(mut m: Message) -> Message {
    fn items(items: &mut [Item]) {
        for i in items {
            if let Some(Data::Binary(b)) = &i.data {
                i.data = Some(Data::Text(
                    base64::engine::general_purpose::STANDARD.encode(b),
                ));
            }
        }
    }
    fn cmds(cs: &mut [Command]) {
        for c in cs {
            match c {
                Command::Add(x)
                | Command::Copy(x)
                | Command::Delete(x)
                | Command::Get(x)
                | Command::Replace(x) => items(&mut x.items),
                Command::Atomic(x) | Command::Sequence(x) => cmds(&mut x.commands),
                Command::Exec(x) => items(std::slice::from_mut(&mut x.item)),
                Command::Alert(x) => items(&mut x.items),
                Command::Status(x) => items(&mut x.items),
                Command::Results(x) => items(&mut x.items),
            }
        }
    }
    cmds(&mut m.body);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    // PROTOCOL A.1: WBXML round trip is exact.
    #[test]
    fn wbxml_round_trip(m in message()) {
        let bytes = encode_wbxml(&m);
        prop_assert_eq!(decode(&bytes).unwrap(), m);
    }

    // PROTOCOL A.1: XML round trip, compact and pretty.
    #[test]
    fn xml_round_trip(m in message()) {
        let want = as_xml_sees_it(m.clone());
        prop_assert_eq!(decode(&encode_xml(&m)).unwrap(), want.clone());
        prop_assert_eq!(decode(to_xml_pretty(&m).as_bytes()).unwrap(), want);
    }

    // PROTOCOL A.1: hostile WBXML never panics (errors are fine).
    #[test]
    fn wbxml_garbage_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let mut b = vec![0x02, 0xA4, 0x01, 0x6A, 0x00];
        b.extend_from_slice(&bytes);
        let _ = decode(&b);
        let _ = decode(&bytes);
    }

    // Every prefix and every single-byte change of a valid message decodes or errs.
    #[test]
    fn wbxml_mutations_never_panic(m in message(), at in any::<usize>(), byte in any::<u8>()) {
        let mut b = encode_wbxml(&m);
        let i = at % b.len();
        let _ = decode(&b[..i]);
        b[i] = byte;
        let _ = decode(&b);
    }

    // PROTOCOL A.1: whatever XML decodes, damaged or not, survives being
    // encoded again (compact, pretty and WBXML) and decoded:
    // decode(encode(m)) == m for every m that decode produces.
    #[test]
    fn xml_mutations_round_trip(
        m in message(),
        at in any::<usize>(),
        byte in prop::sample::select(b"<>&;/!?\"' x\r]-".to_vec()),
        pretty in any::<bool>(),
    ) {
        let mut b = if pretty { to_xml_pretty(&m).into_bytes() } else { encode_xml(&m) };
        let i = at % b.len();
        b[i] = byte;
        for input in [&b[..i], &b[..]] {
            let Ok(got) = decode(input) else { continue };
            prop_assert_eq!(&decode(&encode_xml(&got)).unwrap(), &got);
            prop_assert_eq!(&decode(to_xml_pretty(&got).as_bytes()).unwrap(), &got);
            prop_assert_eq!(&decode(&encode_wbxml(&got)).unwrap(), &got);
        }
    }
}

//! What the decoders tolerate and what they refuse (PROTOCOL A.1, A.2), and
//! that every refusal names the element and the byte offset.

use handover_dm::syncml::{self, CmdRef, Command, Data, DecodeErrorKind, Encoding};

const HDR: &str = "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>t</LocURI></Target><Source><LocURI>s</LocURI></Source></SyncHdr>";

fn msg(body: &str) -> String {
    format!("<SyncML xmlns=\"SYNCML:SYNCML1.2\">{HDR}<SyncBody>{body}<Final/></SyncBody></SyncML>")
}

fn err(xml: &str) -> syncml::DecodeError {
    syncml::decode(xml.as_bytes()).expect_err("accepted")
}

// PROTOCOL A.2: CmdID present and never 0; the error names the element and where it is.
#[test]
fn cmd_id_required_and_non_zero() {
    let text = msg("<Add><Item><Target><LocURI>./a</LocURI></Target></Item></Add>");
    let e = err(&text);
    assert_eq!(e.kind, DecodeErrorKind::Missing("CmdID"));
    assert_eq!(e.element, "Add");
    assert_eq!(e.offset, text.find("<Add>").unwrap());

    let text = msg("<Get><CmdID>0</CmdID></Get>");
    let e = err(&text);
    assert_eq!(e.element, "CmdID");
    assert_eq!(e.offset, text.find("<CmdID>").unwrap());
    assert!(matches!(e.kind, DecodeErrorKind::Invalid { .. }));
    assert!(e.to_string().contains("CmdID"), "{e}");
}

// PROTOCOL A.2: MsgID is a number from 1.
#[test]
fn msg_id_numeric() {
    for bad in ["x", "0", "-1", "99999999999"] {
        let text = msg("").replace("<MsgID>1</MsgID>", &format!("<MsgID>{bad}</MsgID>"));
        let e = err(&text);
        assert_eq!(e.element, "MsgID", "{bad}");
        assert_eq!(e.offset, text.find("<MsgID>").unwrap());
    }
}

// Unknown elements in SyncBody are errors naming them; elsewhere they are skipped.
#[test]
fn unknown_elements() {
    let text = msg("<Sync><CmdID>1</CmdID></Sync>");
    let e = err(&text);
    assert_eq!(e.kind, DecodeErrorKind::UnknownElement);
    assert_eq!(e.element, "Sync");
    assert_eq!(e.offset, text.find("<Sync>").unwrap());
    // Status may not be nested in Atomic
    let e = err(&msg(
        "<Atomic><CmdID>1</CmdID><Status><CmdID>2</CmdID></Status></Atomic>",
    ));
    assert_eq!(e.element, "Status");
    // skipped inside an Item and the header
    let m = syncml::decode(
        msg("<Get><CmdID>1</CmdID><Item><Vendor>x</Vendor><Target><LocURI>./a</LocURI></Target></Item></Get>")
            .replace("</SyncHdr>", "<Extra/></SyncHdr>")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(m.body.len(), 1);
}

// PROTOCOL A.1 (tolerance): quotes, namespaces or none, declaration, indentation, CDATA, order.
#[test]
fn tolerated_variations() {
    let text = "<?xml version='1.0' encoding='UTF-8'?>\n<!-- c -->\n<SyncML xmlns='SYNCML:SYNCML1.2'>\n  <SyncHdr>\n    <VerDTD> 1.2 </VerDTD><VerProto>DM/1.2</VerProto><SessionID>0A</SessionID>\n    <MsgID>\n 3 \n</MsgID><Source><LocURI>s</LocURI><LocName>u</LocName></Source><Target><LocURI>t</LocURI></Target>\n  </SyncHdr>\n  <SyncBody>\n    <Status><Data>212</Data><Cmd>SyncHdr</Cmd><MsgRef>1</MsgRef><TargetRef>t</TargetRef><CmdID>1</CmdID></Status>\n    <Replace><CmdID>2</CmdID><Item><Meta><Format>Chr</Format><Type xmlns=\"syncml:metinf\">text/plain</Type></Meta><Data><![CDATA[a<b>&c]]></Data><Target><LocURI>./x</LocURI></Target></Item></Replace>\n    <Final/>\n  </SyncBody>\n</SyncML>\n<!-- trailer -->\n";
    let m = syncml::decode(text.as_bytes()).unwrap();
    assert_eq!(m.hdr.ver_dtd, "1.2");
    assert_eq!(m.hdr.session_id, "0A");
    assert_eq!(m.hdr.msg_id.get(), 3);
    assert_eq!(m.hdr.source.loc_name.as_deref(), Some("u"));
    let Command::Status(s) = &m.body[0] else {
        panic!()
    };
    // hs20: no CmdRef on the SyncHdr status, Data before TargetRef
    assert_eq!(s.cmd_ref, CmdRef::SyncHdr);
    assert_eq!(s.target_refs, ["t"]);
    let Command::Replace(r) = &m.body[1] else {
        panic!()
    };
    let meta = r.items[0].meta.as_ref().unwrap();
    assert!(meta.format_is("chr"));
    assert_eq!(meta.format_lowercase().as_deref(), Some("chr"));
    assert_eq!(r.items[0].data, Some(Data::Text("a<b>&c".into())));
    assert!(m.final_);
}

#[test]
fn status_without_cmd_ref_must_be_for_the_header() {
    let e = err(&msg(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><Cmd>Get</Cmd><Data>200</Data></Status>",
    ));
    assert_eq!(e.kind, DecodeErrorKind::Missing("CmdRef"));
    assert_eq!(e.element, "Status");
}

// No entity definitions, no expansion beyond the predefined ones.
#[test]
fn doctype_and_entities() {
    let ext = format!("<!DOCTYPE SyncML PUBLIC \"-//SYNCML//DTD SyncML 1.2//EN\" \"http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd\">{}", msg(""));
    assert!(syncml::decode(ext.as_bytes()).is_ok());
    let bomb = format!("<!DOCTYPE SyncML [<!ENTITY a \"aaaa\">]>{}", msg(""));
    let e = err(&bomb);
    assert!(matches!(e.kind, DecodeErrorKind::Unsupported(_)), "{e}");
    let e = err(&msg("<Alert><CmdID>1</CmdID><Data>&a;</Data></Alert>"));
    assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)), "{e}");
    assert_eq!(e.element, "Data");
    let m = syncml::decode(msg("<Replace><CmdID>1</CmdID><Item><Data>&lt;&#65;&#x42;&amp;&quot;&apos;&gt;</Data></Item></Replace>").as_bytes()).unwrap();
    let Command::Replace(r) = &m.body[0] else {
        panic!()
    };
    assert_eq!(r.items[0].data, Some(Data::Text("<AB&\"'>".into())));
}

// One HTTP body is one message: a second document after the root is refused.
#[test]
fn trailing_data() {
    let one = msg("");
    let e = err(&format!("{one}{one}"));
    assert_eq!(e.kind, DecodeErrorKind::TrailingData);
    assert_eq!(e.offset, one.len());
    let e = err(&format!("{one}garbage"));
    assert_eq!(e.kind, DecodeErrorKind::TrailingData);
    assert!(syncml::decode(format!("{one}\n  <!-- x -->\r\n").as_bytes()).is_ok());
    // WBXML: bytes after the root's END
    let mut wb = syncml::encode_wbxml(&syncml::decode(one.as_bytes()).unwrap());
    let at = wb.len();
    wb.push(0x01);
    let e = syncml::decode(&wb).unwrap_err();
    assert_eq!((e.kind, e.offset), (DecodeErrorKind::TrailingData, at));
}

#[test]
fn malformed_xml_names_the_open_element() {
    let text = msg("<Get><CmdID>1</CmdID></Replace>");
    let e = err(&text);
    assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)));
    assert_eq!(e.element, "Get");
    let e = err(&msg("<Get><CmdID>1</CmdID>").replace("<Final/></SyncBody></SyncML>", ""));
    assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)));
}

// Hostile input: nesting is bounded in both encodings.
#[test]
fn nesting_is_bounded() {
    let deep = format!("{}{}", "<Atomic>".repeat(5000), "</Atomic>".repeat(5000));
    let e = err(&msg(&deep));
    assert_eq!(e.kind, DecodeErrorKind::TooDeep);
    let mut wb = vec![0x02, 0xA4, 0x01, 0x6A, 0x00];
    wb.extend(std::iter::repeat_n(0x48u8, 5000)); // Atomic with content
    let e = syncml::decode(&wb).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::TooDeep);
    assert_eq!(e.element, "Atomic");
}

// Hostile input, A.3: Atomic and Sequence nest at most MAX_CONTAINER_DEPTH
// deep; deeper (still within MAX_NESTING elements) is refused with a clear
// error rather than spending stack, even on a small thread stack.
#[test]
fn containers_nest_a_bounded_depth() {
    let nest = |n: usize| {
        let mut body = String::from(
            "<Get><CmdID>99</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Get>",
        );
        for i in 0..n {
            let tag = if i % 2 == 0 { "Atomic" } else { "Sequence" };
            body = format!("<{tag}><CmdID>{}</CmdID>{body}</{tag}>", i + 1);
        }
        msg(&body)
    };
    let ok = nest(syncml::MAX_CONTAINER_DEPTH);
    assert!(syncml::decode(ok.as_bytes()).is_ok());
    let wb = syncml::encode_wbxml(&syncml::decode(ok.as_bytes()).unwrap());
    assert!(syncml::decode(&wb).is_ok());
    for n in [syncml::MAX_CONTAINER_DEPTH + 1, 48] {
        let text = nest(n);
        let e = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || syncml::decode(text.as_bytes()).unwrap_err())
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(
            matches!(e.kind, DecodeErrorKind::Unsupported(_)),
            "{n}: {e}"
        );
        assert!(e.element == "Atomic" || e.element == "Sequence", "{e}");
    }
}

// PROTOCOL A.1: WBXML header rules and clear refusals.
#[test]
fn wbxml_header_and_tokens() {
    let ok = syncml::encode_wbxml(&syncml::decode(msg("").as_bytes()).unwrap());
    assert_eq!(&ok[..5], &[0x02, 0xA4, 0x01, 0x6A, 0x00]);
    for v in [0x01, 0x03] {
        let mut b = ok.clone();
        b[0] = v;
        assert!(syncml::decode(&b).is_ok());
    }
    let mut b = ok.clone();
    b[0] = 0x00;
    assert!(matches!(
        syncml::decode(&b).unwrap_err().kind,
        DecodeErrorKind::Unsupported(_)
    ));
    // SyncML 1.1 public id tolerated
    let mut b = vec![0x02, 0x9F, 0x53];
    b.extend_from_slice(&ok[3..]);
    assert!(syncml::decode(&b).is_ok());
    // literal FPI in the string table
    let fpi = b"-//SYNCML//DTD SyncML 1.2//EN\0";
    let mut b = vec![0x02, 0x00, 0x00, 0x6A, fpi.len() as u8];
    b.extend_from_slice(fpi);
    b.extend_from_slice(&ok[5..]);
    assert!(syncml::decode(&b).is_ok());
    // another charset
    let mut b = ok.clone();
    b[3] = 0x04;
    assert!(matches!(
        syncml::decode(&b).unwrap_err().kind,
        DecodeErrorKind::Unsupported(_)
    ));
    // another public id
    let mut b = ok.clone();
    b[2] = 0x02;
    assert!(matches!(
        syncml::decode(&b).unwrap_err().kind,
        DecodeErrorKind::Unsupported(_)
    ));
    // attributes on a tag
    let mut b = ok.clone();
    b[5] |= 0x80;
    let e = syncml::decode(&b).unwrap_err();
    assert!(e.to_string().contains("attributes"), "{e}");
    assert_eq!(e.offset, 5);
    // an OPAQUE longer than the input allocates nothing and fails cleanly
    let b = [
        0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0xC3, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F,
    ];
    assert!(matches!(
        syncml::decode(&b).unwrap_err().kind,
        DecodeErrorKind::Syntax(_)
    ));
    // every truncation errs
    for i in 0..ok.len() {
        assert!(syncml::decode(&ok[..i]).is_err(), "prefix {i}");
    }
}

// PROTOCOL A.1: STR_I, STR_T, ENTITY and OPAQUE all give the same text.
#[test]
fn wbxml_text_forms_are_equal() {
    let base = syncml::decode(
        msg("<Alert><CmdID>1</CmdID><Data>1201</Data><Item><Data>abc</Data></Item></Alert>")
            .as_bytes(),
    )
    .unwrap();
    let wb = syncml::encode_wbxml(&base);
    let needle = [0x03, b'a', b'b', b'c', 0x00];
    let at = wb.windows(5).position(|w| w == needle).unwrap();
    let splice = |repl: &[u8], strtbl: &[u8]| {
        let mut b = vec![0x02, 0xA4, 0x01, 0x6A, strtbl.len() as u8];
        b.extend_from_slice(strtbl);
        b.extend_from_slice(&wb[5..at]);
        b.extend_from_slice(repl);
        b.extend_from_slice(&wb[at + 5..]);
        syncml::decode(&b).unwrap()
    };
    assert_eq!(splice(&[0xC3, 3, b'a', b'b', b'c'], &[]), base);
    assert_eq!(splice(&[0x83, 0x02], b"xyabc\0"), base);
    assert_eq!(
        splice(&[0x03, b'a', 0x00, 0x02, 0x62, 0x03, b'c', 0x00], &[]),
        base
    );
}

// PROTOCOL A.1: content types, DS aliases, parameters ignored; sniffing.
#[test]
fn media_types() {
    use Encoding::*;
    for (ct, want) in [
        ("application/vnd.syncml.dm+xml", Some(Xml)),
        ("application/vnd.syncml.dm+wbxml", Some(Wbxml)),
        ("application/vnd.syncml+xml", Some(Xml)),
        ("application/vnd.syncml+wbxml", Some(Wbxml)),
        ("Application/Vnd.SyncML.DM+XML; charset=UTF-8", Some(Xml)),
        (
            "application/vnd.syncml.dm+wbxml ;charset=utf-8",
            Some(Wbxml),
        ),
        ("text/xml", None),
        ("application/vnd.syncml.dm.notification", None),
    ] {
        assert_eq!(Encoding::from_content_type(ct), want, "{ct}");
    }
    assert_eq!(Xml.content_type(), "application/vnd.syncml.dm+xml");
    assert_eq!(Wbxml.content_type(), "application/vnd.syncml.dm+wbxml");
    assert_eq!(Encoding::sniff(&[0x02, 0xA4]), Wbxml);
    assert_eq!(Encoding::sniff(b"<?xml"), Xml);
    assert_eq!(Encoding::sniff(b"\xEF\xBB\xBF<"), Xml);
}

// Embedded TNDS: as elements in XML, inline on code page 2 or as a nested
// DM DDF document in WBXML; all the same tree.
#[test]
fn tnds_forms() {
    let tree = "<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD><Node><NodeName>a</NodeName><RTProperties><Format><int/></Format><Type><MIME>text/plain</MIME></Type></RTProperties><Value>7</Value></Node></MgmtTree>";
    let m = syncml::decode(
        msg(&format!(
            "<Replace><CmdID>1</CmdID><Item><Data>\n {tree}\n</Data></Item></Replace>"
        ))
        .as_bytes(),
    )
    .unwrap();
    let Command::Replace(r) = &m.body[0] else {
        panic!()
    };
    let Some(Data::Tree(t)) = &r.items[0].data else {
        panic!()
    };
    assert_eq!(t.nodes[0].value.as_deref(), Some("7"));
    // nested document form (what we write)
    let wb = syncml::encode_wbxml(&m);
    assert_eq!(syncml::decode(&wb).unwrap(), m);
    // inline code page 2 form
    let inner = t.to_wbxml();
    let body_at = 5 + inner[4] as usize; // header + string table
    let mut inline = vec![0x00, 0x02];
    inline.extend_from_slice(&inner[body_at..]);
    inline.extend_from_slice(&[0x00, 0x00]);
    let pos = wb
        .windows(inner.len())
        .position(|w| w == inner.as_slice())
        .unwrap();
    // OPAQUE token and its one-byte length precede the nested document
    let mut b = wb[..pos - 2].to_vec();
    b.extend_from_slice(&inline);
    b.extend_from_slice(&wb[pos + inner.len()..]);
    assert_eq!(syncml::decode(&b).unwrap(), m);
}

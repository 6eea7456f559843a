//! PROTOCOL A.1: any bytes either fail to decode as XML or decode to a
//! message that survives XML (compact and indented) and WBXML re-encoding.
#![no_main]

use handover_dm::syncml::{decode_as, encode_wbxml, encode_xml, to_xml_pretty, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_as(Encoding::Xml, data) else {
        return;
    };
    let again = decode_as(Encoding::Xml, &encode_xml(&msg)).expect("re-encoded XML decodes");
    assert_eq!(again, msg, "XML round trip");
    let pretty =
        decode_as(Encoding::Xml, to_xml_pretty(&msg).as_bytes()).expect("indented XML decodes");
    assert_eq!(pretty, msg, "indented XML round trip");
    let wbxml = decode_as(Encoding::Wbxml, &encode_wbxml(&msg)).expect("WBXML twin decodes");
    assert_eq!(wbxml, msg, "XML -> WBXML");
});

//! PROTOCOL A.1: any bytes either fail to decode as WBXML or decode to a
//! message that survives WBXML and XML re-encoding.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use handover_dm::syncml::{
    decode_as, encode_wbxml, encode_xml, Command, Data, Encoding, Item, Message,
};
use libfuzzer_sys::fuzz_target;

/// XML carries no raw bytes: `Data::Binary` (non-UTF-8 OPAQUE) is written as
/// base64 text and reads back as `Text` (PROTOCOL A.1). This puts a WBXML
/// model in the form its XML twin decodes to.
fn binary_as_base64(msg: &mut Message) {
    fn items(items: &mut [Item]) {
        for it in items {
            if let Some(Data::Binary(b)) = &it.data {
                it.data = Some(Data::Text(B64.encode(b)));
            }
        }
    }
    fn commands(cmds: &mut [Command]) {
        for c in cmds {
            match c {
                Command::Add(c)
                | Command::Copy(c)
                | Command::Delete(c)
                | Command::Get(c)
                | Command::Replace(c) => items(&mut c.items),
                Command::Alert(a) => items(&mut a.items),
                Command::Atomic(k) | Command::Sequence(k) => commands(&mut k.commands),
                Command::Exec(e) => items(std::slice::from_mut(&mut e.item)),
                Command::Status(s) => items(&mut s.items),
                Command::Results(r) => items(&mut r.items),
            }
        }
    }
    commands(&mut msg.body);
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut msg) = decode_as(Encoding::Wbxml, data) else {
        return;
    };
    let again = decode_as(Encoding::Wbxml, &encode_wbxml(&msg)).expect("re-encoded WBXML decodes");
    assert_eq!(again, msg, "WBXML round trip");
    let xml = decode_as(Encoding::Xml, &encode_xml(&msg)).expect("XML twin decodes");
    binary_as_base64(&mut msg);
    assert_eq!(xml, msg, "WBXML -> XML");
});

//! PROTOCOL B.9: any bytes are read without panicking; a document that
//! parses serializes to a document that parses to the same message, and a
//! refusal is 400 or 415 (the codes that need no state).
#![no_main]

use handover_delegation::wire::{DelegationMessage, DelegationStatus, MEDIA_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match DelegationMessage::parse(data, MEDIA_TYPE) {
        Ok(m) => {
            let bytes = m.serialize();
            let again = DelegationMessage::parse(&bytes, MEDIA_TYPE).expect("serialized message parses");
            assert_eq!(again, m, "round trip");
        }
        Err(e) => assert!(e.code == 400 || e.code == 415, "code {}", e.code),
    }
    if let Ok(s) = DelegationStatus::parse(data, MEDIA_TYPE) {
        let again = DelegationStatus::parse(&s.serialize(), MEDIA_TYPE).expect("status parses");
        assert_eq!(again, s);
    }
});

//! PROTOCOL A.7: an ACL that parses formats to text that parses to the same ACL.
#![no_main]

use handover_dm::acl::Acl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Acl::parse(s) {
        Ok(acl) => {
            let text = acl.to_string();
            let again = Acl::parse(&text).expect("formatted ACL parses");
            assert_eq!(again, acl, "ACL round trip");
            // Entry and id order are kept, so the text comes back as given.
            assert_eq!(text, s, "formatting reproduces the parsed text");
        }
        Err(e) => assert!(e.at <= s.len(), "error offset inside the input"),
    }
});

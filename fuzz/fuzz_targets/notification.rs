//! PROTOCOL A.5: parsing package 0 never panics; what parses rebuilds to
//! the same trigger bytes (when the reserved bits are zero).
#![no_main]

use handover_dm::auth::{Nonce, Secret};
use handover_dm::notification::ParsedNotification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = ParsedNotification::parse(data) else {
        return;
    };
    assert_eq!(p.trigger.as_slice(), &data[16..]);
    if p.reserved == 0 {
        let rebuilt = p
            .notification
            .trigger()
            .expect("a parsed id fits in 255 bytes");
        assert_eq!(rebuilt, p.trigger, "trigger rebuilds");
    }
    let _ = p.verify(
        p.notification.server_id.as_str(),
        &Secret::new("s"),
        &Nonce::from_chr("n"),
    );
});

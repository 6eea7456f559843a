//! PROTOCOL A.7: what `TreeUri::parse` and `Target::parse` accept is a
//! valid, normalised address that re-parses to itself.
#![no_main]

use handover_dm::tree::Target;
use handover_dm::types::{TreeUri, MAX_DEPTH, MAX_SEGMENT_LEN, MAX_URI_LEN};
use libfuzzer_sys::fuzz_target;

fn check(uri: &TreeUri) {
    let s = uri.as_str();
    assert_eq!(&TreeUri::parse(s).expect("normalised URI re-parses"), uri);
    assert!(s == "." || s.starts_with("./"), "normalised: {s:?}");
    assert!(s.len() <= MAX_URI_LEN, "length {}", s.len());
    assert!(!s.contains('?') && !s.ends_with('/'));
    assert!(uri.depth() <= MAX_DEPTH);
    assert!(uri
        .segments()
        .all(|seg| !seg.is_empty() && seg.len() <= MAX_SEGMENT_LEN));
    match uri.parent() {
        None => assert!(uri.is_root()),
        Some(parent) => {
            assert_eq!(parent.depth() + 1, uri.depth());
            assert!(uri.is_within(&parent) && !parent.is_within(uri));
            assert_eq!(&parent.join(uri.name()).expect("child re-joins"), uri);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = TreeUri::parse(s) {
        check(&uri);
    }
    if let Ok(target) = Target::parse(s) {
        check(target.uri());
        let text = match &target {
            Target::Node(u) => u.as_str().to_owned(),
            Target::Prop(u, _) => format!("{}?{}", u, s.split_once('?').unwrap().1),
        };
        assert_eq!(Target::parse(&text).expect("target re-parses"), target);
    }
});

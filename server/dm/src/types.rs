//! Identifiers that can only hold valid values (STYLE lesson 3).
//!
//! Each type is built by `parse` (or `TryFrom`) and never changes after that,
//! so code that holds one need not check it again.

use std::fmt;

/// Why a value was refused by one of the identifier types of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} contains a control character at byte {at}")]
    ControlChar { what: &'static str, at: usize },
    #[error("{what} has leading or trailing whitespace")]
    Whitespace { what: &'static str },
    #[error("URI {uri:?}: {reason}")]
    BadUri { uri: String, reason: &'static str },
    #[error("{what} {value:?} is not a number in {min}..={max}")]
    OutOfRange {
        what: &'static str,
        value: String,
        min: u32,
        max: u32,
    },
}

/// Longest ServerID or DevId this profile accepts (PROTOCOL B.9: at most 255 bytes).
pub const MAX_ID_LEN: usize = 255;

fn check_id(what: &'static str, s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId::Empty { what });
    }
    if s.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong {
            what,
            max: MAX_ID_LEN,
        });
    }
    if let Some(at) = s.bytes().position(|b| b < 0x20 || b == 0x7f) {
        return Err(InvalidId::ControlChar { what, at });
    }
    if s.trim() != s {
        return Err(InvalidId::Whitespace { what });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                check_id($what, &s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A device's `./DevInfo/DevId` (PROTOCOL A.2, A.6): non-empty, at most
    /// 255 bytes, no control characters, no surrounding whitespace.
    DevId,
    "DevId"
);

string_id!(
    /// A DM Server's ServerID as written in `./DMAcc/<x>/ServerID` and in ACLs
    /// (PROTOCOL A.6, A.7, B.9). Besides the DevId rules it may not contain the
    /// ACL separators `&`, `+`, `=` nor be `*`, so that every ServerID can stand
    /// in an ACL.
    ServerId,
    "ServerID"
);

impl ServerId {
    /// Like [`ServerId::parse`], and refuses the characters that would break an ACL.
    pub fn parse_strict(s: impl Into<String>) -> Result<Self, InvalidId> {
        let id = Self::parse(s)?;
        if id.0 == "*" || id.0.contains(['&', '+', '=', ' ']) {
            return Err(InvalidId::BadUri {
                uri: id.0,
                reason: "a ServerID may not be `*` nor contain `&`, `+`, `=` or spaces",
            });
        }
        Ok(id)
    }
}

/// Longest URI this profile accepts, in bytes.
pub const MAX_URI_LEN: usize = 1024;
/// Longest single segment of a URI, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;
/// Deepest URI this profile accepts, counting segments below the root.
pub const MAX_DEPTH: usize = 32;

/// A node address in the DM tree (PROTOCOL A.7): relative, `.` is the root,
/// every other URI is `./seg/seg…`, no trailing `/`, no empty, `.` or `..`
/// segment, no `?` (properties are addressed apart, `?prop=`)
/// and no control characters.
///
/// A bare `seg/seg` (without `./`) is accepted and normalised to `./seg/seg`,
/// since OMA DM treats both as the same node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreeUri(String);

impl TreeUri {
    /// The root node `.`.
    pub fn root() -> Self {
        Self(".".to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let bad = |reason| InvalidId::BadUri {
            uri: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_URI_LEN {
            return Err(bad("longer than 1024 bytes"));
        }
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(bad("control character"));
        }
        if s == "." {
            return Ok(Self::root());
        }
        let rest = s.strip_prefix("./").unwrap_or(s);
        // The limit holds for the stored form `./rest`, so that it re-parses.
        if rest.len() + 2 > MAX_URI_LEN {
            return Err(bad("longer than 1024 bytes"));
        }
        if rest.starts_with('/') {
            return Err(bad("absolute"));
        }
        if rest.contains('?') {
            return Err(bad("contains `?`"));
        }
        let mut depth = 0;
        for seg in rest.split('/') {
            depth += 1;
            match seg {
                "" => return Err(bad("empty segment or trailing `/`")),
                "." | ".." => return Err(bad("`.` or `..` segment")),
                _ if seg.len() > MAX_SEGMENT_LEN => {
                    return Err(bad("segment longer than 255 bytes"))
                }
                _ => {}
            }
        }
        if depth > MAX_DEPTH {
            return Err(bad("deeper than 32 segments"));
        }
        if rest.len() == s.len() {
            Ok(Self(format!("./{rest}")))
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "."
    }

    /// The segments below the root; empty for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        let rest = if self.is_root() { "" } else { &self.0[2..] };
        rest.split('/').filter(|s| !s.is_empty())
    }

    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The last segment (the node name); `.` for the root.
    pub fn name(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            self.0.rsplit('/').next().unwrap_or(".")
        }
    }

    /// The parent node; `None` for the root.
    pub fn parent(&self) -> Option<TreeUri> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(1) => Some(Self::root()),
            Some(i) => Some(Self(self.0[..i].to_owned())),
            None => Some(Self::root()),
        }
    }

    /// The child `name` of this node; `name` must be a valid segment.
    pub fn join(&self, name: &str) -> Result<TreeUri, InvalidId> {
        if name.contains('/') {
            return Err(InvalidId::BadUri {
                uri: name.to_owned(),
                reason: "a node name may not contain `/`",
            });
        }
        TreeUri::parse(&format!("{}/{}", self.0, name))
    }

    /// True when `self` is `other` or lies below it.
    pub fn is_within(&self, other: &TreeUri) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for TreeUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TreeUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeUri({:?})", self.0)
    }
}

impl TryFrom<&str> for TreeUri {
    type Error = InvalidId;
    fn try_from(s: &str) -> Result<Self, InvalidId> {
        Self::parse(s)
    }
}

/// A command identifier, unique within a message and never `0` (PROTOCOL A.2).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct CmdId(std::num::NonZeroU32);

impl CmdId {
    pub fn new(n: u32) -> Option<Self> {
        std::num::NonZeroU32::new(n).map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        s.trim()
            .parse::<u32>()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| InvalidId::OutOfRange {
                what: "CmdID",
                value: s.chars().take(20).collect(),
                min: 1,
                max: u32::MAX,
            })
    }
}

impl fmt::Display for CmdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A SyncML status code (PROTOCOL A.3): three digits, 100..=599.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct StatusCode(u16);

impl StatusCode {
    pub const OK: Self = Self(200);
    pub const ACCEPTED: Self = Self(202);
    pub const AUTHENTICATED: Self = Self(212);
    pub const CHUNK_ACCEPTED: Self = Self(213);
    pub const CANCELLED: Self = Self(214);
    pub const NOT_EXECUTED: Self = Self(215);
    pub const ROLLED_BACK: Self = Self(216);
    pub const NOT_MODIFIED: Self = Self(304);
    pub const BAD_REQUEST: Self = Self(400);
    pub const INVALID_CREDENTIALS: Self = Self(401);
    pub const FORBIDDEN: Self = Self(403);
    pub const NOT_FOUND: Self = Self(404);
    pub const COMMAND_NOT_ALLOWED: Self = Self(405);
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: Self = Self(406);
    pub const MISSING_CREDENTIALS: Self = Self(407);
    pub const INCOMPLETE_COMMAND: Self = Self(412);
    pub const REQUEST_ENTITY_TOO_LARGE: Self = Self(413);
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self(415);
    pub const REQUESTED_SIZE_TOO_BIG: Self = Self(416);
    pub const ALREADY_EXISTS: Self = Self(418);
    pub const DEVICE_FULL: Self = Self(420);
    pub const SIZE_MISMATCH: Self = Self(424);
    pub const PERMISSION_DENIED: Self = Self(425);
    pub const COMMAND_FAILED: Self = Self(500);
    pub const NOT_IMPLEMENTED: Self = Self(501);
    pub const PROCESSING_ERROR: Self = Self(506);
    pub const ATOMIC_FAILED: Self = Self(507);
    pub const SEQUENCE_FAILED: Self = Self(510);
    pub const ATOMIC_ROLLBACK_FAILED: Self = Self(516);
    pub const ATOMIC_RESPONSE_TOO_LARGE: Self = Self(517);

    pub fn new(code: u16) -> Option<Self> {
        (100..=599).contains(&code).then_some(Self(code))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        s.trim()
            .parse::<u16>()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| InvalidId::OutOfRange {
                what: "status code",
                value: s.chars().take(20).collect(),
                min: 100,
                max: 599,
            })
    }

    pub fn code(self) -> u16 {
        self.0
    }

    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// The meaning of the code in a few plain words, for people reading logs and pages.
    pub fn meaning(self) -> &'static str {
        match self.0 {
            200 => "OK",
            202 => "accepted for processing",
            212 => "authentication accepted",
            213 => "chunked item accepted",
            214 => "operation cancelled",
            215 => "not executed",
            216 => "atomic roll back OK",
            304 => "not modified",
            400 => "bad request",
            401 => "invalid credentials",
            403 => "forbidden",
            404 => "not found",
            405 => "command not allowed",
            406 => "optional feature not supported",
            407 => "missing credentials",
            412 => "incomplete command",
            413 => "request entity too large",
            415 => "unsupported media type or format",
            416 => "requested size too big",
            418 => "already exists",
            420 => "device full",
            424 => "size mismatch",
            425 => "permission denied",
            500 => "command failed",
            501 => "command not implemented",
            506 => "processing error",
            507 => "atomic failed",
            510 => "data store failure (sequence failed)",
            516 => "atomic roll back failed",
            517 => "atomic response too large to fit",
            c if c < 300 => "success",
            c if c < 400 => "redirection",
            c if c < 500 => "originator error",
            _ => "recipient error",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An Alert code (PROTOCOL A.3). The codes this profile acts on have names;
/// others are carried as they came.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AlertCode(u16);

impl AlertCode {
    /// Display a message to the user (not acted on by this profile, carried through).
    pub const DISPLAY: Self = Self(1100);
    /// Server-initiated management session (answering package 0).
    pub const SERVER_INITIATED: Self = Self(1200);
    /// Client-initiated management session.
    pub const CLIENT_INITIATED: Self = Self(1201);
    /// Next message: the sender has more of the package to send.
    pub const NEXT_MESSAGE: Self = Self(1222);
    /// Session abort.
    pub const SESSION_ABORT: Self = Self(1223);
    /// Generic alert.
    pub const GENERIC: Self = Self(1226);

    pub fn new(code: u16) -> Option<Self> {
        (1000..=9999).contains(&code).then_some(Self(code))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        s.trim()
            .parse::<u16>()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| InvalidId::OutOfRange {
                what: "alert code",
                value: s.chars().take(20).collect(),
                min: 1000,
                max: 9999,
            })
    }

    pub fn code(self) -> u16 {
        self.0
    }
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL A.7: URIs are relative, `.` is the root, no trailing `/`, no `..`.
    #[test]
    fn tree_uri_rules() {
        assert_eq!(TreeUri::parse(".").unwrap().as_str(), ".");
        assert_eq!(
            TreeUri::parse("./DevInfo/DevId").unwrap().as_str(),
            "./DevInfo/DevId"
        );
        assert_eq!(
            TreeUri::parse("DevInfo/DevId").unwrap().as_str(),
            "./DevInfo/DevId"
        );
        for bad in [
            "",
            "./",
            "./a/",
            "./a//b",
            "./a/../b",
            "./..",
            "/a",
            "./a?prop=ACL",
            "./a\n",
        ] {
            assert!(TreeUri::parse(bad).is_err(), "{bad:?} accepted");
        }
        let deep = format!(".{}", "/a".repeat(MAX_DEPTH + 1));
        assert!(TreeUri::parse(&deep).is_err());
    }

    // PROTOCOL A.7: the length limit holds for the normalised form, so
    // every TreeUri re-parses (the invariant fuzz/uri checks): a bare
    // 1023-byte URI used to become a 1025-byte `./…` that parse refused.
    #[test]
    fn tree_uri_limit_counts_the_dot_slash() {
        let seg = "a".repeat(MAX_SEGMENT_LEN);
        let bare = |len: usize| {
            let mut s = [seg.as_str(); 5].join("/");
            s.truncate(len);
            s
        };
        for len in [
            MAX_URI_LEN - 3,
            MAX_URI_LEN - 2,
            MAX_URI_LEN - 1,
            MAX_URI_LEN,
        ] {
            let s = bare(len);
            match TreeUri::parse(&s) {
                Ok(u) => {
                    assert!(u.as_str().len() <= MAX_URI_LEN, "{len}");
                    assert_eq!(TreeUri::parse(u.as_str()).unwrap(), u, "{len}");
                }
                Err(_) => assert!(len + 2 > MAX_URI_LEN, "{len} refused"),
            }
        }
    }

    #[test]
    fn tree_uri_navigation() {
        let u = TreeUri::parse("./Vendor/Corp/Apps").unwrap();
        assert_eq!(u.name(), "Apps");
        assert_eq!(u.depth(), 3);
        assert_eq!(u.parent().unwrap().as_str(), "./Vendor/Corp");
        assert_eq!(
            TreeUri::parse("./Vendor").unwrap().parent().unwrap(),
            TreeUri::root()
        );
        assert!(TreeUri::root().parent().is_none());
        assert!(u.is_within(&TreeUri::parse("./Vendor").unwrap()));
        assert!(!TreeUri::parse("./VendorX")
            .unwrap()
            .is_within(&TreeUri::parse("./Vendor").unwrap()));
        assert!(u.is_within(&TreeUri::root()));
        assert_eq!(u.join("X").unwrap().as_str(), "./Vendor/Corp/Apps/X");
        assert!(u.join("a/b").is_err());
    }

    // PROTOCOL A.2: CmdID is never 0.
    #[test]
    fn cmd_id_never_zero() {
        assert!(CmdId::parse("0").is_err());
        assert!(CmdId::parse("x").is_err());
        assert_eq!(CmdId::parse("7").unwrap().get(), 7);
    }

    // PROTOCOL B.9: ServerID and DevId at most 255 bytes, no control characters.
    #[test]
    fn ids() {
        assert!(DevId::parse("IMEI:490154203237518").is_ok());
        assert!(DevId::parse("").is_err());
        assert!(DevId::parse("a".repeat(256)).is_err());
        assert!(DevId::parse(" x").is_err());
        assert!(ServerId::parse("a\u{1}").is_err());
        assert!(ServerId::parse_strict("corp.example").is_ok());
        assert!(ServerId::parse_strict("a+b").is_err());
        assert!(ServerId::parse_strict("*").is_err());
    }

    #[test]
    fn codes() {
        assert!(StatusCode::parse("200").unwrap().is_success());
        assert!(StatusCode::parse("99").is_err());
        assert_eq!(StatusCode::PERMISSION_DENIED.meaning(), "permission denied");
        assert_eq!(
            AlertCode::parse("1201").unwrap(),
            AlertCode::CLIENT_INITIATED
        );
        assert!(AlertCode::parse("12").is_err());
    }
}

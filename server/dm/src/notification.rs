//! Package 0, the server's notification that asks a device to open a DM
//! session (PROTOCOL A.5), and the session id format of A.2.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest as _, Md5};

use crate::auth::{ct_eq, Nonce, Secret};
use crate::types::ServerId;

/// Media type of package 0 (A.5).
pub const MEDIA_TYPE: &str = "application/vnd.syncml.dm.notification";
/// The older name of the same media type (WSP 0x44), accepted too (A.5).
pub const MEDIA_TYPE_OLD: &str = "application/vnd.syncml.notification";
/// True for either media type of package 0 (A.5), ignoring parameters and case.
pub fn is_notification_media_type(content_type: &str) -> bool {
    let base = content_type.split(';').next().unwrap_or("").trim();
    base.eq_ignore_ascii_case(MEDIA_TYPE) || base.eq_ignore_ascii_case(MEDIA_TYPE_OLD)
}

/// The version field for DM 1.2 (A.5).
pub const VERSION_DM12: u16 = 11;

const DIGEST_LEN: usize = 16;
/// Digest plus the fixed header up to and including the server-id length.
const MIN_LEN: usize = DIGEST_LEN + 8;

/// A DM session id (A.2, A.5): 16 bits, written as 1–4 upper-case hex
/// digits without leading zeros (`0` is written `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u16);

impl SessionId {
    /// Reads the SyncHdr `SessionID` text form (A.2); refuses lower case,
    /// leading zeros, and more than 4 digits.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 4
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            && (s == "0" || !s.starts_with('0'));
        ok.then(|| u16::from_str_radix(s, 16).ok().map(Self))
            .flatten()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}", self.0)
    }
}

/// The `ui-mode` field (A.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiMode {
    Unspecified = 0,
    Background = 1,
    Informative = 2,
    UserInteraction = 3,
}

impl UiMode {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::Unspecified,
            1 => Self::Background,
            2 => Self::Informative,
            _ => Self::UserInteraction,
        }
    }
}

/// The content of package 0 after the digest (A.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub ui_mode: UiMode,
    /// The initiator bit: true = server-initiated (always true from a server).
    pub server_initiated: bool,
    pub session_id: SessionId,
    /// The server identifier; this profile uses the ServerID (= SRVCRED AAuthName).
    pub server_id: ServerId,
    /// Vendor-specific bytes after the server identifier, possibly empty.
    pub vendor: Vec<u8>,
}

/// A received package 0: its digest, its content, and the exact trigger
/// bytes the digest covers (A.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedNotification {
    pub digest: [u8; 16],
    pub notification: Notification,
    /// The 27 "future use" bits. **[profile]** Non-zero values are accepted
    /// (a newer minor revision may use them) and reported here so the
    /// caller can log them.
    pub reserved: u32,
    /// Every byte after the digest, as received.
    pub trigger: Vec<u8>,
}

/// Why a package 0 was refused (A.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("package 0 is {len} bytes, at least {MIN_LEN} are needed")]
    TooShort { len: usize },
    #[error("package 0 version {0} is not 11 (DM 1.2)")]
    WrongVersion(u16),
    #[error("server identifier length {declared} exceeds the {available} bytes left")]
    LengthOverflow { declared: usize, available: usize },
    #[error("server identifier is not a valid ServerID")]
    BadServerId,
    #[error("server identifier is longer than 255 bytes")]
    ServerIdTooLong,
}

/// `MD5(B64(MD5(name ":" pw)) ":" nonce ":" B64(MD5(trigger)))` (A.5).
pub fn digest(name: &str, password: &Secret, nonce: &Nonce, trigger: &[u8]) -> [u8; 16] {
    let cred = B64.encode(Md5::digest(
        [name.as_bytes(), b":", password.expose().as_bytes()].concat(),
    ));
    let trig = B64.encode(Md5::digest(trigger));
    let mut h = Md5::new();
    h.update(cred.as_bytes());
    h.update(b":");
    h.update(nonce.as_bytes());
    h.update(b":");
    h.update(trig.as_bytes());
    h.finalize().into()
}

impl Notification {
    /// The trigger bytes: header, server identifier and vendor bytes (A.5).
    pub fn trigger(&self) -> Result<Vec<u8>, NotificationError> {
        let id = self.server_id.as_str().as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| NotificationError::ServerIdTooLong)?;
        // version(10) ui(2) initiator(1) reserved(27) session(16) = 56 bits
        let word: u64 = (u64::from(VERSION_DM12) << 46)
            | ((self.ui_mode as u64) << 44)
            | (u64::from(self.server_initiated) << 43)
            | u64::from(self.session_id.0);
        let mut out = word.to_be_bytes()[1..].to_vec();
        out.push(id_len);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.vendor);
        Ok(out)
    }

    /// The whole package 0, signed with the SRVCRED name, secret and nonce (A.5).
    pub fn build(
        &self,
        name: &str,
        password: &Secret,
        nonce: &Nonce,
    ) -> Result<Vec<u8>, NotificationError> {
        let trigger = self.trigger()?;
        let mut out = digest(name, password, nonce, &trigger).to_vec();
        out.extend_from_slice(&trigger);
        Ok(out)
    }
}

impl ParsedNotification {
    /// Reads package 0 (A.5) without checking the digest.
    pub fn parse(bytes: &[u8]) -> Result<Self, NotificationError> {
        if bytes.len() < MIN_LEN {
            return Err(NotificationError::TooShort { len: bytes.len() });
        }
        let digest: [u8; 16] = bytes[..DIGEST_LEN].try_into().expect("16 bytes");
        let trigger = &bytes[DIGEST_LEN..];
        let mut w = [0u8; 8];
        w[1..].copy_from_slice(&trigger[..7]);
        let word = u64::from_be_bytes(w);
        let version = (word >> 46) as u16 & 0x3ff;
        if version != VERSION_DM12 {
            return Err(NotificationError::WrongVersion(version));
        }
        let declared = usize::from(trigger[7]);
        let available = trigger.len() - 8;
        if declared > available {
            return Err(NotificationError::LengthOverflow {
                declared,
                available,
            });
        }
        let id = std::str::from_utf8(&trigger[8..8 + declared])
            .ok()
            .and_then(|s| ServerId::parse(s).ok())
            .ok_or(NotificationError::BadServerId)?;
        Ok(Self {
            digest,
            notification: Notification {
                ui_mode: UiMode::from_bits((word >> 44) as u8),
                server_initiated: (word >> 43) & 1 == 1,
                session_id: SessionId(word as u16),
                server_id: id,
                vendor: trigger[8 + declared..].to_vec(),
            },
            reserved: ((word >> 16) & 0x7ff_ffff) as u32,
            trigger: trigger.to_vec(),
        })
    }

    /// Checks the digest against the SRVCRED stored on the client (A.5), in constant time.
    pub fn verify(&self, name: &str, password: &Secret, nonce: &Nonce) -> bool {
        ct_eq(&digest(name, password, nonce, &self.trigger), &self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            ui_mode: UiMode::Background,
            server_initiated: true,
            session_id: SessionId(0x1234),
            server_id: ServerId::parse("corp.example.x").unwrap(),
            vendor: vec![],
        }
    }

    // PROTOCOL A.5 worked example: `02 d8 00 00 00 12 34 0e`.
    #[test]
    fn header_vector() {
        let n = sample();
        assert_eq!(n.server_id.as_str().len(), 14);
        let t = n.trigger().unwrap();
        assert_eq!(&t[..8], &[0x02, 0xd8, 0x00, 0x00, 0x00, 0x12, 0x34, 0x0e]);
        assert_eq!(&t[8..], b"corp.example.x");
    }

    // PROTOCOL A.5: digest verifies; any tampering or wrong credential fails.
    #[test]
    fn build_parse_verify_tamper() {
        let pw = Secret::new("srvpw");
        let nonce = Nonce::from_chr("AAAAnonce");
        let mut n = sample();
        n.vendor = vec![1, 2, 3];
        let bytes = n.build("corp.example.x", &pw, &nonce).unwrap();
        let p = ParsedNotification::parse(&bytes).unwrap();
        assert_eq!(p.notification, n);
        assert_eq!(p.reserved, 0);
        assert!(p.verify("corp.example.x", &pw, &nonce));
        assert!(!p.verify("corp.example.x", &Secret::new("other"), &nonce));
        assert!(!p.verify("corp.example.x", &pw, &Nonce::from_chr("x")));
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            if let Ok(p) = ParsedNotification::parse(&t) {
                assert!(!p.verify("corp.example.x", &pw, &nonce), "byte {i}");
            }
        }
        // the digest matches an independent computation of the formula
        let inner = B64.encode(Md5::digest(b"corp.example.x:srvpw"));
        let trig = B64.encode(Md5::digest(&bytes[16..]));
        let expect = Md5::digest(format!("{inner}:AAAAnonce:{trig}").as_bytes());
        assert_eq!(&bytes[..16], expect.as_slice());
    }

    // PROTOCOL A.5: errors for short input, wrong version, length overflow;
    // reserved bits accepted and reported [profile].
    #[test]
    fn errors() {
        let pw = Secret::new("p");
        let nonce = Nonce::from_chr("n");
        let bytes = sample().build("corp.example.x", &pw, &nonce).unwrap();
        assert_eq!(
            ParsedNotification::parse(&bytes[..23]),
            Err(NotificationError::TooShort { len: 23 })
        );
        let mut v = bytes.clone();
        v[16] = 0x03; // version 15
        assert!(matches!(
            ParsedNotification::parse(&v),
            Err(NotificationError::WrongVersion(_))
        ));
        let mut o = bytes.clone();
        o[23] = 15;
        assert_eq!(
            ParsedNotification::parse(&o),
            Err(NotificationError::LengthOverflow {
                declared: 15,
                available: 14
            })
        );
        let mut r = bytes.clone();
        r[19] = 0x01;
        let p = ParsedNotification::parse(&r).unwrap();
        assert_eq!(p.reserved, 0x100);
        assert_eq!(p.notification.session_id, SessionId(0x1234));
        let mut e = bytes[..24].to_vec();
        e[23] = 0;
        assert_eq!(
            ParsedNotification::parse(&e),
            Err(NotificationError::BadServerId)
        );
    }

    // PROTOCOL A.5: both media type names are accepted.
    #[test]
    fn media_types() {
        assert!(is_notification_media_type(MEDIA_TYPE));
        assert!(is_notification_media_type(
            "Application/vnd.syncml.notification; x=1"
        ));
        assert!(!is_notification_media_type("application/vnd.syncml.dm+xml"));
    }

    // PROTOCOL A.2: 1–4 upper-case hex digits, no leading zeros.
    #[test]
    fn session_id_text() {
        assert_eq!(SessionId(0x1234).to_string(), "1234");
        assert_eq!(SessionId(0xAB).to_string(), "AB");
        assert_eq!(SessionId(0).to_string(), "0");
        assert_eq!(SessionId::parse("FFFF"), Some(SessionId(0xffff)));
        assert_eq!(SessionId::parse("0"), Some(SessionId(0)));
        for bad in ["", "0A", "ab", "12345", "G1", " 1"] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }
}

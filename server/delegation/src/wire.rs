//! The delegation documents of PROTOCOL B.9: `DelegationMessage` and
//! `DelegationStatus`, parsed with the B.9 checks and written in the order of
//! the B.9 example.
//!
//! Parsing builds a small tree of the elements of the delegation namespace
//! (elements of other namespaces are skipped with their content), then reads
//! the elements the message type uses. Every value that enters the canonical
//! terms is kept exactly as received, so [`crate::sign::canonical_terms`]
//! rebuilds the signed text byte for byte.

use std::fmt;
use std::ops::{Add, Sub};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use handover_dm::{Acl, AuthType, DevId, ServerId, TreeUri};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::terms::{Rights, Subtree};

/// The media type of both documents (B.1).
pub const MEDIA_TYPE: &str = "application/vnd.dm.delegation+xml";
/// The namespace of both documents (B.9).
pub const NAMESPACE: &str = "urn:dm-delegation:1.0";
/// Largest document accepted (B.9: at most 64 KiB).
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// Longest `Reason` text, in characters (B.9).
pub const MAX_REASON_CHARS: usize = 1024;
/// Elements nest no deeper than this; the documents of B.9 need four levels.
const MAX_DEPTH: usize = 16;

/// A document refused by a recipient, with the B.3 answer code: 415 for the
/// media type or Version, 400 for everything else of B.9.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct WireError {
    /// 400 or 415 (B.3).
    pub code: u16,
    /// What the sender did wrong, naming the element.
    pub message: String,
    /// The request's MsgID when it could be read (B.3 `MsgRef`).
    pub msg_ref: Option<MsgId>,
}

impl WireError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            message: message.into(),
            msg_ref: None,
        }
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self {
            code: 415,
            message: message.into(),
            msg_ref: None,
        }
    }

    /// The `DelegationStatus` that answers the refused document (B.3).
    pub fn to_status(&self) -> DelegationStatus {
        DelegationStatus {
            msg_ref: self.msg_ref.clone(),
            code: self.code,
            text: self.message.clone(),
            expected: None,
        }
    }
}

type WireResult<T> = Result<T, WireError>;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts only the lowercase UUID form of B.9.
            pub fn parse(s: &str) -> Option<Self> {
                is_lower_uuid(s).then(|| Self(s.to_owned()))
            }

            /// The UUID text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s).ok_or_else(|| format!("{} {s:?} is not a lowercase UUID", $what))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

uuid_id!(
    /// A delegation's `DelegationID` (B.2, B.9): a lowercase UUID chosen by the initiator.
    DelegationId,
    "DelegationID"
);
uuid_id!(
    /// A document's `MsgID` (B.3, B.9): a lowercase UUID, the idempotency key with the Sender.
    MsgId,
    "MsgID"
);

fn is_lower_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// A time of B.9, `YYYY-MM-DDTHH:MM:SSZ`, UTC, whole seconds. Its text form
/// is unique, so printing it gives back the text received.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct UtcTime(OffsetDateTime);

const TIME_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl UtcTime {
    /// Takes `t` in UTC, dropping fractions of a second.
    pub fn new(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        Self(t.replace_nanosecond(0).unwrap_or(t))
    }

    /// Seconds since 1970 (for tests and storage).
    pub fn from_unix(secs: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(secs).ok().map(Self)
    }

    /// Reads the B.9 form; anything else, including an impossible date, is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let shape = b.len() == 20
            && b.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'Z',
                _ => c.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        let t = PrimitiveDateTime::parse(s, TIME_FORMAT).ok()?.assume_utc();
        Some(Self(t))
    }

    /// The instant.
    pub fn get(self) -> OffsetDateTime {
        self.0
    }
}

/// Saturates at the ends of the representable range, so that a configured
/// deadline can never panic.
impl Add<Duration> for UtcTime {
    type Output = UtcTime;
    fn add(self, d: Duration) -> UtcTime {
        let end = if d.is_negative() {
            PrimitiveDateTime::MIN
        } else {
            PrimitiveDateTime::MAX
        };
        UtcTime::new(self.0.checked_add(d).unwrap_or(end.assume_utc()))
    }
}

impl Sub<Duration> for UtcTime {
    type Output = UtcTime;
    fn sub(self, d: Duration) -> UtcTime {
        self + -d
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.format(TIME_FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl fmt::Debug for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<String> for UtcTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("{s:?} is not a B.9 time"))
    }
}

impl From<UtcTime> for String {
    fn from(t: UtcTime) -> String {
        t.to_string()
    }
}

/// Canonical standard base64 with padding and no whitespace (B.9).
fn canonical_b64(s: &str) -> Option<Vec<u8>> {
    let bytes = B64.decode(s).ok()?;
    (B64.encode(&bytes) == s).then_some(bytes)
}

/// A `Nonce` of B.3/B.9 as its base64 text, which is what the signature
/// input uses: canonical base64 of at least 16 bytes.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NonceB64(String);

impl NonceB64 {
    /// Checks the B.9 rule.
    pub fn parse(s: &str) -> Option<Self> {
        (canonical_b64(s)?.len() >= 16).then(|| Self(s.to_owned()))
    }

    /// Encodes fresh random bytes (at least 16) chosen by the caller.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Self::parse(&B64.encode(bytes))
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NonceB64 {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "not a B.9 nonce".to_owned())
    }
}

impl From<NonceB64> for String {
    fn from(n: NonceB64) -> String {
        n.0
    }
}

/// A `Signature` of B.4/B.9: canonical base64 of an ASN.1 DER ECDSA signature.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignatureB64(String);

impl SignatureB64 {
    /// Checks that `s` is canonical, non-empty base64.
    pub fn parse(s: &str) -> Option<Self> {
        (!canonical_b64(s)?.is_empty()).then(|| Self(s.to_owned()))
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DER bytes.
    pub fn der(&self) -> Vec<u8> {
        B64.decode(&self.0).unwrap_or_default()
    }
}

impl TryFrom<String> for SignatureB64 {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "not canonical base64".to_owned())
    }
}

impl From<SignatureB64> for String {
    fn from(s: SignatureB64) -> String {
        s.0
    }
}

/// A one-time credential value of the bootstrap grant (B.5, B.9 `Grant`).
/// `Debug` prints `***` (STYLE lesson 7); it serialises because the grant
/// must survive in the DMS-2 record until the bootstrap is done (B.5 step 3).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OneTime(String);

impl OneTime {
    /// Wraps a one-time value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value; call only where it is written to the device or the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The `MsgType` values of B.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MsgType {
    Notification,
    AuthChallenge,
    AuthResponse,
    Accept,
    Start,
    Bootstrapped,
    Complete,
    Abort,
    Revoke,
    Relinquish,
}

impl MsgType {
    const ALL: [MsgType; 10] = [
        Self::Notification,
        Self::AuthChallenge,
        Self::AuthResponse,
        Self::Accept,
        Self::Start,
        Self::Bootstrapped,
        Self::Complete,
        Self::Abort,
        Self::Revoke,
        Self::Relinquish,
    ];

    /// The element text (B.3).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "Notification",
            Self::AuthChallenge => "AuthChallenge",
            Self::AuthResponse => "AuthResponse",
            Self::Accept => "Accept",
            Self::Start => "Start",
            Self::Bootstrapped => "Bootstrapped",
            Self::Complete => "Complete",
            Self::Abort => "Abort",
            Self::Revoke => "Revoke",
            Self::Relinquish => "Relinquish",
        }
    }

    /// Reads the element text, case-sensitive.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The 2xx code a recipient answers with when it accepts this message (B.3).
    pub fn success_code(self) -> u16 {
        match self {
            Self::Complete | Self::Abort | Self::Revoke | Self::Relinquish => 200,
            _ => 202,
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which server proposed the delegation (B.2 `Initiator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Initiator {
    Delegating,
    Delegated,
}

impl Initiator {
    /// The B.9 text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delegating => "delegating",
            Self::Delegated => "delegated",
        }
    }
}

/// The device a delegation is about (B.2 `Device`): DevId is signed, Man and Mod are not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    #[serde(with = "crate::serde_str")]
    pub dev_id: DevId,
    pub man: String,
    pub model: String,
}

/// What is delegated (B.2 `Type` and `Scope`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// `full`: the whole tree.
    Full,
    /// `partial`: one or more subtrees, URIs as received and each once.
    Partial(Vec<Subtree>),
}

/// How long the delegation lasts (B.2 `Term`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Term {
    Permanent,
    Temporary { expires: UtcTime },
}

impl Term {
    /// The end of a temporary delegation.
    pub fn expires(self) -> Option<UtcTime> {
        match self {
            Term::Permanent => None,
            Term::Temporary { expires } => Some(expires),
        }
    }
}

/// The delegation terms of B.2, as carried in a Notification (B.9 `Terms`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    pub initiator: Initiator,
    #[serde(with = "crate::serde_str")]
    pub delegating: ServerId,
    #[serde(with = "crate::serde_str")]
    pub delegated: ServerId,
    pub device: Device,
    pub scope: Scope,
    pub term: Term,
    pub reason: Option<String>,
    pub requested_by: Option<String>,
    pub approved_by: Option<String>,
}

impl Terms {
    /// `full` + `permanent`: a complete handover that can be neither revoked
    /// nor relinquished (B.6, B.7).
    pub fn is_handover(&self) -> bool {
        self.scope == Scope::Full && self.term == Term::Permanent
    }
}

/// The one-time credentials of the bootstrap grant (B.5 step 1, B.9 `Grant`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootstrapCredentials {
    /// The full URI of DMS-2's account node, e.g. `./DMAcc/corp-example`.
    pub account_node: String,
    pub auth_type: AuthType,
    /// CLCRED: what the client uses towards DMS-2.
    pub client_name: String,
    pub client_secret: OneTime,
    /// Base64 of the 24-character nonce the client uses first.
    pub client_nonce: OneTime,
    /// SRVCRED: what DMS-2 uses towards the client.
    pub server_name: String,
    pub server_secret: OneTime,
    /// Base64 of the 24-character nonce of DMS-2's first Cred and of package 0.
    pub server_nonce: OneTime,
    /// The device's HTTP push URL, if it has one.
    pub push_address: Option<String>,
}

/// The bootstrap grant DMS-1 sends in `Start` (B.5 step 2, B.9 `Grant`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub credentials: BootstrapCredentials,
    /// When DMS-2 must have sent Bootstrapped.
    pub deadline: UtcTime,
}

/// DevInfo as DMS-2 read it during the bootstrap (B.5 step 5, B.9 `DevInfo`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DevInfo {
    #[serde(with = "crate::serde_str")]
    pub dev_id: DevId,
    pub man: String,
    pub model: String,
    pub dmv: String,
    pub lang: String,
}

/// One node whose ACL step 6 replaced, with the value written (B.6, B.9 `Acl`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AclEntry {
    /// A.7 URI as received.
    pub uri: String,
    /// A.7 ACL value as received.
    pub value: String,
}

/// The `Reason` codes of B.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReasonCode {
    Rejected,
    AuthFailed,
    Timeout,
    DeviceError,
    PeerError,
    Cancelled,
    Policy,
    Expired,
    Relinquished,
}

impl ReasonCode {
    const ALL: [ReasonCode; 9] = [
        Self::Rejected,
        Self::AuthFailed,
        Self::Timeout,
        Self::DeviceError,
        Self::PeerError,
        Self::Cancelled,
        Self::Policy,
        Self::Expired,
        Self::Relinquished,
    ];

    /// The B.9 `Code` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::AuthFailed => "auth-failed",
            Self::Timeout => "timeout",
            Self::DeviceError => "device-error",
            Self::PeerError => "peer-error",
            Self::Cancelled => "cancelled",
            Self::Policy => "policy",
            Self::Expired => "expired",
            Self::Relinquished => "relinquished",
        }
    }

    /// Reads the B.9 `Code` text.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Why a delegation ended (B.9 `Reason` of Abort, Revoke, Relinquish).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    /// Free text, at most 1024 characters, may be empty.
    pub text: String,
}

impl Reason {
    /// A reason with its text cut to the B.9 limit.
    pub fn new(code: ReasonCode, text: impl Into<String>) -> Self {
        let text: String = text.into();
        Self {
            code,
            text: text.chars().take(MAX_REASON_CHARS).collect(),
        }
    }
}

/// The payload of each MsgType (B.9 table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Payload {
    Notification {
        terms: Terms,
        nonce: NonceB64,
    },
    AuthChallenge {
        nonce: NonceB64,
        signature: SignatureB64,
    },
    AuthResponse {
        signature: SignatureB64,
    },
    Accept {
        approver: String,
    },
    Start {
        grant: Grant,
    },
    Bootstrapped {
        dev_info: DevInfo,
    },
    Complete {
        acls: Vec<AclEntry>,
    },
    Abort(Reason),
    Revoke(Reason),
    Relinquish(Reason),
}

impl Payload {
    /// The MsgType that carries this payload.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Self::Notification { .. } => MsgType::Notification,
            Self::AuthChallenge { .. } => MsgType::AuthChallenge,
            Self::AuthResponse { .. } => MsgType::AuthResponse,
            Self::Accept { .. } => MsgType::Accept,
            Self::Start { .. } => MsgType::Start,
            Self::Bootstrapped { .. } => MsgType::Bootstrapped,
            Self::Complete { .. } => MsgType::Complete,
            Self::Abort(_) => MsgType::Abort,
            Self::Revoke(_) => MsgType::Revoke,
            Self::Relinquish(_) => MsgType::Relinquish,
        }
    }
}

/// A `DelegationMessage` document (B.3, B.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationMessage {
    pub msg_id: MsgId,
    pub delegation_id: DelegationId,
    pub sender: ServerId,
    pub recipient: ServerId,
    /// Informative; never rejected for clock skew (B.3).
    pub sent: UtcTime,
    pub payload: Payload,
}

/// The `Expected` element of a 409 answer (B.9 "Order and Expected").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `<Expected/>`: the recipient waits for nothing from the sender.
    Nothing,
    /// The MsgType the recipient accepts next from this sender.
    Msg(MsgType),
}

/// A `DelegationStatus` document, the answer to every POST (B.3, B.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationStatus {
    /// The request's MsgID, when it could be read.
    pub msg_ref: Option<MsgId>,
    /// Equal to the HTTP status.
    pub code: u16,
    pub text: String,
    /// Present in every 409 and nowhere else.
    pub expected: Option<Expected>,
}

// ---------------------------------------------------------------- reading

/// One element of the delegation namespace with its attributes (no namespace),
/// its own text and its children of the namespace.
struct El {
    path: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<El>,
}

impl El {
    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    /// The child `name`, refusing a repeat.
    fn opt(&self, name: &str) -> WireResult<Option<&El>> {
        let mut found = self.children.iter().filter(|c| c.name() == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(WireError::bad(format!("{}/{name} is repeated", self.path)));
        }
        Ok(first)
    }

    fn req(&self, name: &str) -> WireResult<&El> {
        self.opt(name)?
            .ok_or_else(|| WireError::bad(format!("{}/{name} is missing", self.path)))
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.children.iter().filter(move |c| c.name() == name)
    }

    fn attr(&self, name: &str) -> WireResult<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| WireError::bad(format!("{} has no {name} attribute", self.path)))
    }

    fn bad_value(&self, why: &str) -> WireError {
        WireError::bad(format!("{}: {why}", self.path))
    }

    /// The text of a value that enters the canonical form (B.9 "Values").
    fn canonical(&self) -> WireResult<&str> {
        canonical_value(&self.path, &self.text)
    }

    fn parse_with<T>(&self, what: &str, f: impl FnOnce(&str) -> Option<T>) -> WireResult<T> {
        f(&self.text).ok_or_else(|| self.bad_value(&format!("not {what}")))
    }

    fn time(&self) -> WireResult<UtcTime> {
        self.parse_with("a time YYYY-MM-DDTHH:MM:SSZ", UtcTime::parse)
    }
}

fn canonical_value<'a>(path: &str, s: &'a str) -> WireResult<&'a str> {
    if s.chars().any(|c| c < '\u{20}' || c == '\u{7f}') {
        return Err(WireError::bad(format!("{path}: control character")));
    }
    if s.trim() != s {
        return Err(WireError::bad(format!(
            "{path}: leading or trailing whitespace"
        )));
    }
    Ok(s)
}

fn check_media_type(content_type: &str) -> WireResult<()> {
    let mut parts = content_type.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    if !essence.eq_ignore_ascii_case(MEDIA_TYPE) {
        return Err(WireError::unsupported(format!(
            "media type {essence:?} is not {MEDIA_TYPE}"
        )));
    }
    for p in parts {
        let ok = p
            .split_once('=')
            .map(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
            .unwrap_or(false);
        if !ok {
            return Err(WireError::unsupported(format!(
                "media type parameter {p:?} is not charset=utf-8"
            )));
        }
    }
    Ok(())
}

/// Version `1.x` is read as 1.0 (B.9).
fn check_version(v: Option<&str>) -> WireResult<()> {
    match v {
        None => Err(WireError::bad("DelegationMessage has no Version attribute")),
        Some(v) => {
            let minor = v.strip_prefix("1.").unwrap_or_default();
            if !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(WireError::unsupported(format!("Version {v:?} is not 1.x")))
            }
        }
    }
}

/// Reads the document into a tree of namespace elements. The root's Version
/// is checked when `root` is `DelegationMessage`; a 415 for it wins over any
/// 400 (B.9 "Checks", in order).
fn read_tree(bytes: &[u8], content_type: &str, root: &str) -> WireResult<El> {
    check_media_type(content_type)?;
    if bytes.len() > MAX_DOCUMENT {
        return Err(WireError::bad("document larger than 64 KiB"));
    }
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Err(WireError::bad("document starts with a byte order mark"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::bad("document is not UTF-8"))?;
    let mut version = None;
    let tree = build_tree(text, root, &mut version);
    if let Some(v) = version.filter(|_| root == "DelegationMessage") {
        match check_version(v.as_deref()) {
            // A 415 for the Version wins over every 400 (B.9 "Checks").
            Err(e) if e.code == 415 => return Err(e),
            Err(e) => return tree.and(Err(e)),
            Ok(()) => {}
        }
    }
    tree
}

fn xml_err(e: impl fmt::Display) -> WireError {
    WireError::bad(format!("not well-formed: {e}"))
}

/// The parse proper. `version` receives the root's Version attribute as soon
/// as the root's start tag is read, so that a 415 for it can win over a 400
/// found before (a DOCTYPE) or after.
fn build_tree(text: &str, root: &str, version: &mut Option<Option<String>>) -> WireResult<El> {
    let mut doctype = false;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    // Open elements; `None` marks one outside the namespace, skipped with its content.
    let mut stack: Vec<Option<El>> = Vec::new();
    let mut done: Option<El> = None;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(xml_err)?;
        let ours = matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes());
        match event {
            Event::DocType(_) if version.is_none() => doctype = true,
            Event::DocType(_) => return Err(WireError::bad("a DOCTYPE is refused")),
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(xml_err)?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(WireError::bad("encoding is not UTF-8"));
                    }
                }
            }
            Event::Start(_) | Event::Empty(_) if done.is_some() => {
                return Err(WireError::bad("content after the root element"));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = std::str::from_utf8(e.local_name().into_inner())
                    .map_err(xml_err)?
                    .to_owned();
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(xml_err)?;
                    let (ans, key) = reader.resolve_attribute(a.key);
                    if matches!(ans, ResolveResult::Unbound) {
                        let key = std::str::from_utf8(key.into_inner()).map_err(xml_err)?;
                        let value = a.unescape_value().map_err(xml_err)?;
                        attrs.push((key.to_owned(), value.into_owned()));
                    }
                }
                let el = if stack.is_empty() {
                    if !ours || local != root {
                        return Err(WireError::bad(format!(
                            "root element is not {root} in namespace {NAMESPACE}"
                        )));
                    }
                    *version = Some(
                        attrs
                            .iter()
                            .find(|(k, _)| k == "Version")
                            .map(|(_, v)| v.clone()),
                    );
                    if doctype {
                        return Err(WireError::bad("a DOCTYPE is refused"));
                    }
                    Some(El {
                        path: local,
                        attrs,
                        text: String::new(),
                        children: Vec::new(),
                    })
                } else {
                    match stack.last() {
                        Some(Some(parent)) if ours => Some(El {
                            path: format!("{}/{local}", parent.path),
                            attrs,
                            text: String::new(),
                            children: Vec::new(),
                        }),
                        _ => None,
                    }
                };
                if stack.len() >= MAX_DEPTH {
                    return Err(WireError::bad("elements nested too deep"));
                }
                stack.push(el);
                if empty {
                    close(&mut stack, &mut done);
                }
            }
            Event::End(_) => close(&mut stack, &mut done),
            Event::Text(t) => {
                let s = t.unescape().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(Some(el)) => el.text.push_str(&s),
                    Some(None) => {}
                    None if s.trim().is_empty() => {}
                    None => return Err(WireError::bad("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(c.as_ref()).map_err(xml_err)?;
                match stack.last_mut() {
                    Some(Some(el)) => el.text.push_str(s),
                    Some(None) => {}
                    None => return Err(WireError::bad("CDATA outside the root element")),
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(WireError::bad("not well-formed: unclosed element"));
    }
    done.ok_or_else(|| WireError::bad("no root element"))
}

fn close(stack: &mut Vec<Option<El>>, done: &mut Option<El>) {
    let Some(el) = stack.pop() else { return };
    match (stack.last_mut(), el) {
        (Some(Some(parent)), Some(el)) => parent.children.push(el),
        (None, el) => *done = el,
        _ => {}
    }
}

fn server_id(el: &El) -> WireResult<ServerId> {
    ServerId::parse_strict(el.canonical()?.to_owned()).map_err(|e| el.bad_value(&e.to_string()))
}

fn dev_id(el: &El) -> WireResult<DevId> {
    DevId::parse(el.canonical()?.to_owned()).map_err(|e| el.bad_value(&e.to_string()))
}

fn reason_text(el: &El) -> WireResult<String> {
    if el.text.chars().count() > MAX_REASON_CHARS {
        return Err(el.bad_value("longer than 1024 characters"));
    }
    Ok(el.text.clone())
}

fn opt_reason_text(parent: &El, name: &str) -> WireResult<Option<String>> {
    parent.opt(name)?.map(reason_text).transpose()
}

fn read_terms(t: &El) -> WireResult<Terms> {
    let initiator = match t.req("Initiator")?.canonical()? {
        "delegating" => Initiator::Delegating,
        "delegated" => Initiator::Delegated,
        _ => return Err(t.req("Initiator")?.bad_value("not delegating or delegated")),
    };
    let delegating = server_id(t.req("DelegatingServer")?)?;
    let delegated = server_id(t.req("DelegatedServer")?)?;
    if delegating == delegated {
        return Err(WireError::bad(
            "Terms: DelegatingServer and DelegatedServer are the same",
        ));
    }
    let d = t.req("Device")?;
    let device = Device {
        dev_id: dev_id(d.req("DevId")?)?,
        man: d.req("Man")?.text.clone(),
        model: d.req("Mod")?.text.clone(),
    };
    let scope_el = t.opt("Scope")?;
    let scope = match (t.req("Type")?.canonical()?, scope_el) {
        ("full", None) => Scope::Full,
        ("partial", Some(s)) => Scope::Partial(read_scope(s)?),
        ("full", Some(_)) => return Err(WireError::bad("Terms/Scope is present for full")),
        ("partial", None) => return Err(WireError::bad("Terms/Scope is missing for partial")),
        _ => return Err(t.req("Type")?.bad_value("not full or partial")),
    };
    let expires = t.opt("Expires")?;
    let term = match (t.req("Term")?.canonical()?, expires) {
        ("permanent", None) => Term::Permanent,
        ("temporary", Some(e)) => Term::Temporary { expires: e.time()? },
        ("permanent", Some(_)) => {
            return Err(WireError::bad("Terms/Expires is present for permanent"))
        }
        ("temporary", None) => {
            return Err(WireError::bad("Terms/Expires is missing for temporary"))
        }
        _ => return Err(t.req("Term")?.bad_value("not permanent or temporary")),
    };
    Ok(Terms {
        initiator,
        delegating,
        delegated,
        device,
        scope,
        term,
        reason: opt_reason_text(t, "Reason")?,
        requested_by: t.opt("RequestedBy")?.map(|e| e.text.clone()),
        approved_by: t.opt("ApprovedBy")?.map(|e| e.text.clone()),
    })
}

fn read_scope(s: &El) -> WireResult<Vec<Subtree>> {
    let mut out: Vec<Subtree> = Vec::new();
    let mut seen: Vec<TreeUri> = Vec::new();
    for st in s.all("Subtree") {
        let uri = canonical_value(&format!("{}@URI", st.path), st.attr("URI")?)?;
        if uri.contains(['|', ';', ',']) {
            return Err(st.bad_value("URI contains `|`, `;` or `,`"));
        }
        let parsed = TreeUri::parse(uri).map_err(|e| st.bad_value(&e.to_string()))?;
        if seen.contains(&parsed) {
            return Err(st.bad_value(&format!("URI {uri:?} appears twice")));
        }
        seen.push(parsed);
        let rights = canonical_value(&format!("{}@Rights", st.path), st.attr("Rights")?)?;
        let rights = Rights::parse(rights).ok_or_else(|| st.bad_value("bad Rights"))?;
        out.push(Subtree {
            uri: uri.to_owned(),
            rights,
        });
    }
    if out.is_empty() {
        return Err(WireError::bad("Terms/Scope has no Subtree"));
    }
    Ok(out)
}

fn nonce(el: &El) -> WireResult<NonceB64> {
    el.parse_with("canonical base64 of at least 16 bytes", NonceB64::parse)
}

fn grant_name(el: &El) -> WireResult<String> {
    let ok = !el.text.is_empty()
        && el.text.len() <= 64
        && el.text.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !ok {
        return Err(el.bad_value("not 1 to 64 printable ASCII characters"));
    }
    Ok(el.text.clone())
}

/// B.9: "the base64 of 24-character nonces as in A.4" (base64url characters).
fn grant_nonce(el: &El) -> WireResult<OneTime> {
    let ok = canonical_b64(&el.text).is_some_and(|raw| {
        raw.len() == 24
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    });
    if !ok {
        return Err(el.bad_value("not the base64 of a 24-character nonce"));
    }
    Ok(OneTime::new(el.text.clone()))
}

fn read_grant(g: &El) -> WireResult<Grant> {
    let node = g.req("AccountNode")?;
    TreeUri::parse(node.canonical()?).map_err(|e| node.bad_value(&e.to_string()))?;
    let auth = g.req("AuthType")?;
    let auth_type = auth.parse_with("BASIC, DIGEST or HMAC", |s| {
        matches!(s, "BASIC" | "DIGEST" | "HMAC")
            .then(|| AuthType::from_aauth_type(s))
            .flatten()
    })?;
    let push_address = match g.opt("PushAddress")? {
        Some(p) => Some(p.canonical()?.to_owned()),
        None => None,
    };
    let credentials = BootstrapCredentials {
        account_node: node.text.clone(),
        auth_type,
        client_name: grant_name(g.req("ClientName")?)?,
        client_secret: OneTime::new(grant_name(g.req("ClientSecret")?)?),
        client_nonce: grant_nonce(g.req("ClientNonce")?)?,
        server_name: grant_name(g.req("ServerName")?)?,
        server_secret: OneTime::new(grant_name(g.req("ServerSecret")?)?),
        server_nonce: grant_nonce(g.req("ServerNonce")?)?,
        push_address,
    };
    Ok(Grant {
        credentials,
        deadline: g.req("Deadline")?.time()?,
    })
}

fn read_reason(root: &El) -> WireResult<Reason> {
    let r = root.req("Reason")?;
    let code = r.attr("Code")?;
    let code = ReasonCode::parse(code)
        .ok_or_else(|| r.bad_value(&format!("Code {code:?} is not a B.9 reason code")))?;
    Ok(Reason {
        code,
        text: reason_text(r)?,
    })
}

fn read_payload(msg_type: MsgType, root: &El) -> WireResult<Payload> {
    Ok(match msg_type {
        MsgType::Notification => Payload::Notification {
            terms: read_terms(root.req("Terms")?)?,
            nonce: nonce(root.req("Nonce")?)?,
        },
        MsgType::AuthChallenge => Payload::AuthChallenge {
            nonce: nonce(root.req("Nonce")?)?,
            signature: signature(root.req("Signature")?)?,
        },
        MsgType::AuthResponse => Payload::AuthResponse {
            signature: signature(root.req("Signature")?)?,
        },
        MsgType::Accept => {
            let a = root.req("Approver")?;
            if a.text.trim().is_empty() {
                return Err(a.bad_value("empty"));
            }
            Payload::Accept {
                approver: a.text.clone(),
            }
        }
        MsgType::Start => Payload::Start {
            grant: read_grant(root.req("Grant")?)?,
        },
        MsgType::Bootstrapped => {
            let d = root.req("DevInfo")?;
            Payload::Bootstrapped {
                dev_info: DevInfo {
                    dev_id: dev_id(d.req("DevId")?)?,
                    man: d.req("Man")?.text.clone(),
                    model: d.req("Mod")?.text.clone(),
                    dmv: d.req("DmV")?.text.clone(),
                    lang: d.req("Lang")?.text.clone(),
                },
            }
        }
        MsgType::Complete => {
            let mut acls = Vec::new();
            for a in root.req("Acls")?.all("Acl") {
                let uri = canonical_value(&format!("{}@URI", a.path), a.attr("URI")?)?;
                TreeUri::parse(uri).map_err(|e| a.bad_value(&e.to_string()))?;
                Acl::parse(&a.text).map_err(|e| a.bad_value(&e.to_string()))?;
                acls.push(AclEntry {
                    uri: uri.to_owned(),
                    value: a.text.clone(),
                });
            }
            Payload::Complete { acls }
        }
        MsgType::Abort => Payload::Abort(read_reason(root)?),
        MsgType::Revoke => Payload::Revoke(read_reason(root)?),
        MsgType::Relinquish => Payload::Relinquish(read_reason(root)?),
    })
}

fn signature(el: &El) -> WireResult<SignatureB64> {
    el.parse_with("canonical base64", SignatureB64::parse)
}

impl DelegationMessage {
    /// Reads a received document with every check of B.9 that needs no state,
    /// in the B.9 order (415 before 400).
    pub fn parse(bytes: &[u8], content_type: &str) -> Result<Self, WireError> {
        let root = read_tree(bytes, content_type, "DelegationMessage")?;
        let msg_ref = root
            .opt("MsgID")
            .ok()
            .flatten()
            .and_then(|e| MsgId::parse(&e.text));
        Self::from_tree(&root).map_err(|mut e| {
            e.msg_ref = msg_ref;
            e
        })
    }

    fn from_tree(root: &El) -> WireResult<Self> {
        let t = root.req("MsgType")?;
        let msg_type = t.parse_with("a MsgType", MsgType::parse)?;
        let msg_id = root
            .req("MsgID")?
            .parse_with("a lowercase UUID", MsgId::parse)?;
        let delegation_id = root
            .req("DelegationID")?
            .parse_with("a lowercase UUID", DelegationId::parse)?;
        let sender = server_id(root.req("Sender")?)?;
        let recipient = server_id(root.req("Recipient")?)?;
        let sent = root.req("Sent")?.time()?;
        let payload = read_payload(msg_type, root)?;
        if let Payload::Notification { terms, .. } = &payload {
            let (from, to) = match terms.initiator {
                Initiator::Delegating => (&terms.delegating, &terms.delegated),
                Initiator::Delegated => (&terms.delegated, &terms.delegating),
            };
            if &sender != from || &recipient != to {
                return Err(WireError::bad(
                    "Notification: Sender and Recipient do not match Terms/Initiator",
                ));
            }
        }
        Ok(Self {
            msg_id,
            delegation_id,
            sender,
            recipient,
            sent,
            payload,
        })
    }

    /// The MsgType of the payload.
    pub fn msg_type(&self) -> MsgType {
        self.payload.msg_type()
    }

    /// The document in UTF-8, elements in the order of the B.9 example.
    pub fn serialize(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.open(
            "DelegationMessage",
            &[("xmlns", NAMESPACE), ("Version", "1.0")],
        );
        w.leaf("MsgType", self.msg_type().as_str());
        w.leaf("MsgID", self.msg_id.as_str());
        w.leaf("DelegationID", self.delegation_id.as_str());
        w.leaf("Sender", self.sender.as_str());
        w.leaf("Recipient", self.recipient.as_str());
        w.leaf("Sent", &self.sent.to_string());
        match &self.payload {
            Payload::Notification { terms, nonce } => {
                write_terms(&mut w, terms);
                w.leaf("Nonce", nonce.as_str());
            }
            Payload::AuthChallenge { nonce, signature } => {
                w.leaf("Nonce", nonce.as_str());
                w.leaf("Signature", signature.as_str());
            }
            Payload::AuthResponse { signature } => w.leaf("Signature", signature.as_str()),
            Payload::Accept { approver } => w.leaf("Approver", approver),
            Payload::Start { grant } => write_grant(&mut w, grant),
            Payload::Bootstrapped { dev_info: d } => {
                w.open("DevInfo", &[]);
                w.leaf("DevId", d.dev_id.as_str());
                w.leaf("Man", &d.man);
                w.leaf("Mod", &d.model);
                w.leaf("DmV", &d.dmv);
                w.leaf("Lang", &d.lang);
                w.close("DevInfo");
            }
            Payload::Complete { acls } => {
                w.open("Acls", &[]);
                for a in acls {
                    w.leaf_with("Acl", &[("URI", &a.uri)], &a.value);
                }
                w.close("Acls");
            }
            Payload::Abort(r) | Payload::Revoke(r) | Payload::Relinquish(r) => {
                w.leaf_with("Reason", &[("Code", r.code.as_str())], &r.text)
            }
        }
        w.close("DelegationMessage");
        w.0.into_bytes()
    }
}

fn write_terms(w: &mut Writer, t: &Terms) {
    w.open("Terms", &[]);
    w.leaf("Initiator", t.initiator.as_str());
    w.leaf("DelegatingServer", t.delegating.as_str());
    w.leaf("DelegatedServer", t.delegated.as_str());
    w.open("Device", &[]);
    w.leaf("DevId", t.device.dev_id.as_str());
    w.leaf("Man", &t.device.man);
    w.leaf("Mod", &t.device.model);
    w.close("Device");
    match &t.scope {
        Scope::Full => w.leaf("Type", "full"),
        Scope::Partial(subtrees) => {
            w.leaf("Type", "partial");
            w.open("Scope", &[]);
            for s in subtrees {
                let rights = s.rights.to_string();
                w.empty("Subtree", &[("URI", &s.uri), ("Rights", &rights)]);
            }
            w.close("Scope");
        }
    }
    match t.term {
        Term::Permanent => w.leaf("Term", "permanent"),
        Term::Temporary { expires } => {
            w.leaf("Term", "temporary");
            w.leaf("Expires", &expires.to_string());
        }
    }
    for (name, v) in [
        ("Reason", &t.reason),
        ("RequestedBy", &t.requested_by),
        ("ApprovedBy", &t.approved_by),
    ] {
        if let Some(v) = v {
            w.leaf(name, v);
        }
    }
    w.close("Terms");
}

fn write_grant(w: &mut Writer, grant: &Grant) {
    let g = &grant.credentials;
    w.open("Grant", &[]);
    w.leaf("AccountNode", &g.account_node);
    w.leaf("AuthType", g.auth_type.aauth_type());
    w.leaf("ClientName", &g.client_name);
    w.leaf("ClientSecret", g.client_secret.expose());
    w.leaf("ClientNonce", g.client_nonce.expose());
    w.leaf("ServerName", &g.server_name);
    w.leaf("ServerSecret", g.server_secret.expose());
    w.leaf("ServerNonce", g.server_nonce.expose());
    if let Some(p) = &g.push_address {
        w.leaf("PushAddress", p);
    }
    w.leaf("Deadline", &grant.deadline.to_string());
    w.close("Grant");
}

impl DelegationStatus {
    /// Reads an answer (the sender's side of B.3). A status is not versioned.
    pub fn parse(bytes: &[u8], content_type: &str) -> Result<Self, WireError> {
        let root = read_tree(bytes, content_type, "DelegationStatus")?;
        let msg_ref = match root.opt("MsgRef")? {
            Some(e) => Some(e.parse_with("a lowercase UUID", MsgId::parse)?),
            None => None,
        };
        let code = root.req("Code")?.parse_with("a status code", |s| {
            (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
                .filter(|c| (100..600).contains(c))
        })?;
        let text = root
            .opt("Text")?
            .map(|e| e.text.clone())
            .unwrap_or_default();
        let expected = match root.opt("Expected")? {
            None => None,
            Some(e) if e.text.is_empty() => Some(Expected::Nothing),
            Some(e) => Some(Expected::Msg(e.parse_with("a MsgType", MsgType::parse)?)),
        };
        Ok(Self {
            msg_ref,
            code,
            text,
            expected,
        })
    }

    /// The document in UTF-8, as in the B.9 response example.
    pub fn serialize(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.open("DelegationStatus", &[("xmlns", NAMESPACE)]);
        if let Some(r) = &self.msg_ref {
            w.leaf("MsgRef", r.as_str());
        }
        w.leaf("Code", &self.code.to_string());
        w.leaf("Text", &self.text);
        match self.expected {
            None => {}
            Some(Expected::Nothing) => w.empty("Expected", &[]),
            Some(Expected::Msg(t)) => w.leaf("Expected", t.as_str()),
        }
        w.close("DelegationStatus");
        w.0.into_bytes()
    }
}

/// A tiny indenting XML writer; text and attribute values are escaped.
#[derive(Default)]
struct Writer(String, usize);

impl Writer {
    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.0.push_str(&"  ".repeat(self.1));
        self.0.push('<');
        self.0.push_str(name);
        for (k, v) in attrs {
            self.0.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start(name, attrs);
        self.0.push_str(">\n");
        self.1 += 1;
    }

    fn close(&mut self, name: &str) {
        self.1 -= 1;
        self.0.push_str(&"  ".repeat(self.1));
        self.0.push_str(&format!("</{name}>\n"));
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start(name, attrs);
        self.0.push_str("/>\n");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.leaf_with(name, &[], text);
    }

    fn leaf_with(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.start(name, attrs);
        self.0.push_str(&format!(">{}</{name}>\n", escape(text)));
    }
}

/// Escapes markup and every character that XML would otherwise normalise
/// (CR, TAB, LF in attributes), so text is read back exactly.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;

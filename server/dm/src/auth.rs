//! Authentication between DM Server and DM Client (PROTOCOL A.4).
//!
//! Pure functions for the three schemes (MD5 digest, HMAC header, basic),
//! nonces, secret wrappers, and two sans-IO state machines: [`ServerAuth`]
//! (the server checking a client) and [`ClientAuth`] (the client's side,
//! used by the device simulator).
//!
//! ```text
//! ServerAuth:
//!                 valid Cred (basic/md5)            valid Cred
//!   Awaiting ─────────────────────────► Authenticated ◄──── (HMAC: every message
//!   {nonce,        212 + Chal(next session)    │             needs a fresh MAC,
//!    failures}                                 │             200 + NextNonce)
//!      │ missing/bad, first failure            │
//!      │   407/401 + Chal(fresh nonce) ──► Awaiting
//!      │ missing/bad, second failure
//!      └──────────────────────────────► Ended (401/407, no Chal)
//! ```

use std::fmt;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine as _;
use md5::{Digest as _, Md5};
use rand_core::{CryptoRng, RngCore};

use crate::types::StatusCode;

/// A password or shared secret (A.4 AAuthSecret). `Debug` prints `***` and
/// there is deliberately no `Serialize` (STYLE lesson 7).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only where it is needed for a computation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Length in characters of the nonces this profile generates (A.4: 24
/// characters of the base64url alphabet, 144 bits).
pub const NONCE_CHARS: usize = 24;

/// A nonce as raw bytes (A.4: "the nonce is the raw bytes from
/// base64-decoding the last NextNonce"). Nonces generated here are 24 ASCII
/// characters of the base64url alphabet, so they also have a `chr` form.
/// `Debug` shows only the length: one-time nonces are secrets (B.5).
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce(Vec<u8>);

impl Nonce {
    /// A fresh nonce: 24 characters of the base64url alphabet from the CSPRNG (A.4).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut raw = [0u8; NONCE_CHARS / 4 * 3];
        rng.fill_bytes(&mut raw);
        Self(URL_SAFE_NO_PAD.encode(raw).into_bytes())
    }

    /// Wraps raw nonce bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The nonce of a `NextNonce` / `Cred` value in Format `b64` (A.4).
    pub fn from_b64(s: &str) -> Result<Self, AuthError> {
        B64.decode(s.trim())
            .map(Self)
            .map_err(|_| AuthError::BadBase64 { what: "nonce" })
    }

    /// The nonce of a DMAcc `AAuthData` written with Format `chr` (A.4).
    pub fn from_chr(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }

    /// The raw bytes that enter the digests.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Standard base64 with padding, as carried in `NextNonce` (A.4).
    pub fn to_b64(&self) -> String {
        B64.encode(&self.0)
    }

    /// The `chr` form for `AAuthData` (A.4); `None` when the bytes are not
    /// printable ASCII (then it must be written as `b64`).
    pub fn to_chr(&self) -> Option<&str> {
        if self.0.iter().all(|b| (0x21..=0x7e).contains(b)) {
            std::str::from_utf8(&self.0).ok()
        } else {
            None
        }
    }
}

// Persisted as its `NextNonce` text (base64), e.g. in a stored DM session.
#[cfg(feature = "serde")]
impl serde::Serialize for Nonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Nonce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Nonce::from_b64(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({} bytes)", self.0.len())
    }
}

/// Why an authentication input could not be read (A.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{what} is not valid base64")]
    BadBase64 { what: &'static str },
    #[error("basic credential has no `:` between user and password")]
    BasicNoColon,
    #[error("x-syncml-hmac header: {0}")]
    BadHmacHeader(&'static str),
    #[error("x-syncml-hmac algorithm {0:?} is not supported (only MD5)")]
    UnsupportedAlgorithm(String),
}

/// The authentication schemes of A.4, with their `Meta/Type` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AuthType {
    /// `syncml:auth-basic`, only over TLS.
    Basic,
    /// `syncml:auth-md5`, the default.
    Md5,
    /// `syncml:auth-MAC`, the `x-syncml-hmac` header.
    Hmac,
}

impl AuthType {
    /// The `Meta/Type` value (A.4).
    pub fn meta_type(self) -> &'static str {
        match self {
            Self::Basic => "syncml:auth-basic",
            Self::Md5 => "syncml:auth-md5",
            Self::Hmac => "syncml:auth-MAC",
        }
    }

    /// Reads a `Meta/Type` value; case-insensitive, as clients differ.
    pub fn from_meta_type(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "syncml:auth-basic" => Some(Self::Basic),
            "syncml:auth-md5" => Some(Self::Md5),
            "syncml:auth-mac" => Some(Self::Hmac),
            _ => None,
        }
    }

    /// The DMAcc `AAuthType` value (A.6).
    pub fn aauth_type(self) -> &'static str {
        match self {
            Self::Basic => "BASIC",
            Self::Md5 => "DIGEST",
            Self::Hmac => "HMAC",
        }
    }

    /// Reads a DMAcc `AAuthType` value (A.6).
    pub fn from_aauth_type(s: &str) -> Option<Self> {
        match s.trim() {
            "BASIC" => Some(Self::Basic),
            "DIGEST" => Some(Self::Md5),
            "HMAC" => Some(Self::Hmac),
            _ => None,
        }
    }
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `B64(MD5(user ":" password))`, the first step of every A.4/A.5 digest.
fn user_hash(user: &str, password: &Secret) -> String {
    B64.encode(md5(&[user.as_bytes(), b":", password.expose().as_bytes()]))
}

/// Compares two byte strings in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The MD5 digest of A.4: `B64(MD5(B64(MD5(user ":" password)) ":" nonce))`.
pub fn md5_digest(user: &str, password: &Secret, nonce: &Nonce) -> String {
    let h = user_hash(user, password);
    B64.encode(md5(&[h.as_bytes(), b":", nonce.as_bytes()]))
}

/// Checks a `Cred/Data` MD5 digest (A.4), in constant time.
pub fn verify_md5_digest(user: &str, password: &Secret, nonce: &Nonce, data: &str) -> bool {
    ct_eq(
        md5_digest(user, password, nonce).as_bytes(),
        data.trim().as_bytes(),
    )
}

/// The HMAC of A.4: `B64(MD5(B64(MD5(user ":" password)) ":" nonce ":" B64(MD5(body))))`.
pub fn hmac_mac(user: &str, password: &Secret, nonce: &Nonce, body: &[u8]) -> String {
    let h = user_hash(user, password);
    let b = B64.encode(md5(&[body]));
    B64.encode(md5(&[
        h.as_bytes(),
        b":",
        nonce.as_bytes(),
        b":",
        b.as_bytes(),
    ]))
}

/// The `x-syncml-hmac` HTTP header of A.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacHeader {
    /// Always `MD5` here; the default when the header omits it.
    pub algorithm: String,
    pub username: String,
    /// The MAC, base64.
    pub mac: String,
}

/// Name of the HMAC header (A.4).
pub const HMAC_HEADER: &str = "x-syncml-hmac";

impl HmacHeader {
    /// Computes the header for a message body (A.4: over the exact bytes sent).
    pub fn build(user: &str, password: &Secret, nonce: &Nonce, body: &[u8]) -> Self {
        Self {
            algorithm: "MD5".to_owned(),
            username: user.to_owned(),
            mac: hmac_mac(user, password, nonce, body),
        }
    }

    /// The header value: `algorithm=MD5, username="<user>", mac=<b64>`.
    pub fn to_value(&self) -> String {
        format!(
            "algorithm={}, username=\"{}\", mac={}",
            self.algorithm, self.username, self.mac
        )
    }

    /// Reads a header value (A.4). Tolerates spaces around `,` and `=`,
    /// quoted or bare values and any key case; `algorithm` defaults to MD5,
    /// any other algorithm is refused; unknown keys are ignored.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let mut algorithm = None;
        let mut username = None;
        let mut mac = None;
        let mut rest = value.trim();
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .ok_or(AuthError::BadHmacHeader("a parameter has no `=`"))?;
            let key = rest[..eq].trim().to_ascii_lowercase();
            let after = rest[eq + 1..].trim_start();
            let (val, tail) = if let Some(q) = after.strip_prefix('"') {
                let end = q
                    .find('"')
                    .ok_or(AuthError::BadHmacHeader("unterminated quoted value"))?;
                (q[..end].to_owned(), &q[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            let tail = tail.trim_start();
            rest = match tail.strip_prefix(',') {
                Some(t) => t.trim_start(),
                None if tail.is_empty() => tail,
                None => return Err(AuthError::BadHmacHeader("expected `,` between parameters")),
            };
            let slot = match key.as_str() {
                "algorithm" => &mut algorithm,
                "username" => &mut username,
                "mac" => &mut mac,
                _ => continue,
            };
            if slot.replace(val).is_some() {
                return Err(AuthError::BadHmacHeader("repeated parameter"));
            }
        }
        let algorithm = algorithm.unwrap_or_else(|| "MD5".to_owned());
        if !algorithm.eq_ignore_ascii_case("MD5") {
            return Err(AuthError::UnsupportedAlgorithm(algorithm));
        }
        Ok(Self {
            algorithm,
            username: username.ok_or(AuthError::BadHmacHeader("no username"))?,
            mac: mac.ok_or(AuthError::BadHmacHeader("no mac"))?,
        })
    }

    /// Checks the MAC over the exact body bytes, in constant time (A.4).
    pub fn verify(&self, password: &Secret, nonce: &Nonce, body: &[u8]) -> bool {
        ct_eq(
            hmac_mac(&self.username, password, nonce, body).as_bytes(),
            self.mac.as_bytes(),
        )
    }
}

/// Basic credential data: `B64(user ":" password)` (A.4).
pub fn basic_encode(user: &str, password: &Secret) -> String {
    B64.encode(format!("{user}:{}", password.expose()))
}

/// Reads basic credential data into user and password (A.4).
pub fn basic_decode(data: &str) -> Result<(String, Secret), AuthError> {
    let raw = B64.decode(data.trim()).map_err(|_| AuthError::BadBase64 {
        what: "basic credential",
    })?;
    let s = String::from_utf8_lossy(&raw);
    let (user, pw) = s.split_once(':').ok_or(AuthError::BasicNoColon)?;
    Ok((user.to_owned(), Secret::new(pw)))
}

/// A `Cred` element, independent of the SyncML model (A.4): `Meta/Type`,
/// `Meta/Format`, `Data`, and the sender's `Source/LocName` when present.
/// `Debug` hides `data`: for basic it is the password in base64.
#[derive(Clone, PartialEq, Eq)]
pub struct Cred {
    pub auth_type: AuthType,
    /// `b64` for the schemes of this profile.
    pub format: Option<String>,
    pub data: String,
    /// `Source/LocName` of the message; checked only when present (A.4).
    pub loc_name: Option<String>,
}

impl fmt::Debug for Cred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cred")
            .field("auth_type", &self.auth_type)
            .field("format", &self.format)
            .field("data", &"***")
            .field("loc_name", &self.loc_name)
            .finish()
    }
}

/// A `Chal` element (A.4): `Meta{Type, Format=b64, NextNonce}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chal {
    pub auth_type: AuthType,
    /// Always `b64`.
    pub format: String,
    pub next_nonce: Nonce,
}

impl Chal {
    /// A challenge carrying `nonce` for `auth_type`.
    pub fn new(auth_type: AuthType, next_nonce: Nonce) -> Self {
        Self {
            auth_type,
            format: "b64".to_owned(),
            next_nonce,
        }
    }
}

/// One stored credential of a DMAcc `AppAuth` (A.6): the user name, the
/// secret and the scheme; the nonce is kept apart since it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub auth_type: AuthType,
    pub name: String,
    pub secret: Secret,
}

impl StoredCredential {
    /// Builds the `Cred` this credential gives for `nonce` (A.4). For HMAC
    /// there is no `Cred`: use [`HmacHeader::build`]; this returns `None`.
    pub fn cred(&self, nonce: &Nonce) -> Option<Cred> {
        let data = match self.auth_type {
            AuthType::Basic => basic_encode(&self.name, &self.secret),
            AuthType::Md5 => md5_digest(&self.name, &self.secret, nonce),
            AuthType::Hmac => return None,
        };
        Some(Cred {
            auth_type: self.auth_type,
            format: Some("b64".to_owned()),
            data,
            loc_name: Some(self.name.clone()),
        })
    }

    /// The `x-syncml-hmac` header value this credential gives for `body`
    /// and `nonce` (A.4); `None` unless the scheme is HMAC.
    pub fn hmac_header(&self, nonce: &Nonce, body: &[u8]) -> Option<String> {
        (self.auth_type == AuthType::Hmac)
            .then(|| HmacHeader::build(&self.name, &self.secret, nonce, body).to_value())
    }

    /// Checks a received `Cred` against this credential and `nonce` (A.4).
    /// Basic is accepted only when `tls` is true; a Basic account also
    /// accepts an MD5 digest (what it is challenged for without TLS). A
    /// `LocName`, when present, must equal the stored name.
    pub fn check_cred(&self, cred: &Cred, nonce: &Nonce, tls: bool) -> bool {
        if let Some(n) = &cred.loc_name {
            if !ct_eq(n.as_bytes(), self.name.as_bytes()) {
                return false;
            }
        }
        // A Basic account also accepts an MD5 digest over the same secret:
        // that is what it is challenged for without TLS.
        let accepted = cred.auth_type == self.auth_type
            || (self.auth_type == AuthType::Basic && cred.auth_type == AuthType::Md5);
        if !accepted {
            return false;
        }
        match cred.auth_type {
            AuthType::Md5 => verify_md5_digest(&self.name, &self.secret, nonce, &cred.data),
            AuthType::Basic => {
                tls && basic_decode(&cred.data).is_ok_and(|(u, p)| {
                    ct_eq(u.as_bytes(), self.name.as_bytes())
                        & ct_eq(p.expose().as_bytes(), self.secret.expose().as_bytes())
                })
            }
            AuthType::Hmac => false,
        }
    }

    /// The scheme to challenge with: basic is replaced by MD5 when the
    /// transport is not TLS (A.4: basic only over TLS).
    fn challenge_type(&self, tls: bool) -> AuthType {
        match self.auth_type {
            AuthType::Basic if !tls => AuthType::Md5,
            t => t,
        }
    }
}

/// What the client presented in one message (A.4).
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// No `Cred` and no HMAC header.
    Nothing,
    /// A `Cred` in the SyncHdr.
    Cred(&'a Cred),
    /// The `x-syncml-hmac` header value and the exact body bytes.
    Hmac { header: &'a str, body: &'a [u8] },
}

/// The server's verdict on one client message (A.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAuthOutcome {
    /// Authenticated. `status` is 212 the first time for basic/MD5, 200
    /// afterwards and 200 for every HMAC message. `chal` carries the next
    /// nonce (next session for basic/MD5, next message for HMAC); the
    /// caller stores it as the device's expected nonce.
    Authenticated {
        status: StatusCode,
        chal: Option<Chal>,
    },
    /// 407 (missing) or 401 (bad) with a fresh nonce; the caller stores
    /// the nonce and answers with this challenge.
    Challenge { status: StatusCode, chal: Chal },
    /// Second failure: the session ends; answer `status` without a Chal.
    SessionEnded { status: StatusCode },
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum ServerState {
    /// Waiting for a valid credential computed with `nonce`.
    AwaitingCred { nonce: Nonce },
    /// Basic/MD5 accepted; later messages need no credential.
    Authenticated,
    /// HMAC accepted; the next message must carry a MAC over `nonce`.
    AwaitingMac { nonce: Nonce },
    /// Two failures; nothing more is accepted.
    Ended,
}

/// What [`ServerAuth`] keeps between messages apart from the account
/// (A.4): the awaited nonce and the failure count. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerAuthSnapshot {
    failures: u8,
    state: ServerState,
}

impl ServerAuthSnapshot {
    /// The state of a session that has not judged a message yet, awaiting
    /// credentials over `expected_nonce`.
    pub fn new(expected_nonce: Nonce) -> Self {
        Self {
            failures: 0,
            state: ServerState::AwaitingCred {
                nonce: expected_nonce,
            },
        }
    }
}

/// Server-side authentication of one DM session (A.4), sans-IO.
///
/// Failure counting **[profile]**: a missing credential counts as a
/// failure like a bad one (A.4 "after a failure exactly one more
/// challenge"), so a client gets one challenge in a session; the second
/// missing or bad credential ends it.
#[derive(Debug, Clone)]
pub struct ServerAuth {
    account: StoredCredential,
    tls: bool,
    failures: u8,
    state: ServerState,
}

impl ServerAuth {
    /// Starts a session for the account found by DevId, expecting
    /// credentials over `expected_nonce` (the stored next nonce).
    pub fn new(account: StoredCredential, expected_nonce: Nonce, tls: bool) -> Self {
        Self {
            account,
            tls,
            failures: 0,
            state: ServerState::AwaitingCred {
                nonce: expected_nonce,
            },
        }
    }

    /// The state without the account (no secret), for a session stored
    /// between messages (A.4: the nonce and failure count outlive one HTTP
    /// request). Resume it with [`Self::resume`].
    pub fn snapshot(&self) -> ServerAuthSnapshot {
        ServerAuthSnapshot {
            failures: self.failures,
            state: self.state.clone(),
        }
    }

    /// Continues a session from [`Self::snapshot`] with the account.
    pub fn resume(account: StoredCredential, tls: bool, snapshot: ServerAuthSnapshot) -> Self {
        Self {
            account,
            tls,
            failures: snapshot.failures,
            state: snapshot.state,
        }
    }

    /// True once the client has authenticated and the session has not ended.
    pub fn is_authenticated(&self) -> bool {
        matches!(
            self.state,
            ServerState::Authenticated | ServerState::AwaitingMac { .. }
        )
    }

    /// True after the second failure (A.4).
    pub fn has_ended(&self) -> bool {
        matches!(self.state, ServerState::Ended)
    }

    /// Judges the credential of one client message (A.4).
    pub fn handle_message<R: RngCore + CryptoRng>(
        &mut self,
        presented: Presented<'_>,
        rng: &mut R,
    ) -> ServerAuthOutcome {
        let nonce = match &self.state {
            ServerState::Ended => {
                return ServerAuthOutcome::SessionEnded {
                    status: StatusCode::INVALID_CREDENTIALS,
                }
            }
            ServerState::Authenticated => {
                return ServerAuthOutcome::Authenticated {
                    status: StatusCode::OK,
                    chal: None,
                }
            }
            ServerState::AwaitingCred { nonce } | ServerState::AwaitingMac { nonce } => {
                nonce.clone()
            }
        };
        let verdict = match presented {
            Presented::Nothing => None,
            Presented::Cred(cred) => Some(
                self.account.auth_type != AuthType::Hmac
                    && self.account.check_cred(cred, &nonce, self.tls),
            ),
            Presented::Hmac { header, body } => Some(
                self.account.auth_type == AuthType::Hmac
                    && HmacHeader::parse(header).is_ok_and(|h| {
                        ct_eq(h.username.as_bytes(), self.account.name.as_bytes())
                            & h.verify(&self.account.secret, &nonce, body)
                    }),
            ),
        };
        match verdict {
            Some(true) => {
                let next = Nonce::generate(rng);
                let chal = Some(Chal::new(self.account.auth_type, next.clone()));
                if self.account.auth_type == AuthType::Hmac {
                    self.state = ServerState::AwaitingMac { nonce: next };
                    ServerAuthOutcome::Authenticated {
                        status: StatusCode::OK,
                        chal,
                    }
                } else {
                    self.state = ServerState::Authenticated;
                    ServerAuthOutcome::Authenticated {
                        status: StatusCode::AUTHENTICATED,
                        chal,
                    }
                }
            }
            failed => {
                let status = if failed.is_none() {
                    StatusCode::MISSING_CREDENTIALS
                } else {
                    StatusCode::INVALID_CREDENTIALS
                };
                self.failures += 1;
                if self.failures >= 2 {
                    self.state = ServerState::Ended;
                    return ServerAuthOutcome::SessionEnded { status };
                }
                let fresh = Nonce::generate(rng);
                self.state = ServerState::AwaitingCred {
                    nonce: fresh.clone(),
                };
                ServerAuthOutcome::Challenge {
                    status,
                    chal: Chal::new(self.account.challenge_type(self.tls), fresh),
                }
            }
        }
    }
}

/// How the client reacts to the server's SyncHdr Status (A.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientReaction {
    /// 200/212: carry on.
    Authenticated,
    /// 401/407 the first time: send the message again with a Cred over the new nonce.
    Retry,
    /// 401/407 again, or without a usable Chal: the session is over.
    GiveUp,
}

/// The result of checking the server's `Cred` on the client (A.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCredCheck {
    /// 212 when the server's Cred verified, 401 (bad) or 407 (missing).
    pub status: StatusCode,
    /// The client's next nonce for the server's next Cred (A.4: a client
    /// issues a new nonce after every Cred it checks).
    pub chal: Chal,
}

/// Client-side authentication (A.4), for the device simulator: builds the
/// client's Cred (CLCRED), reacts to challenges, checks the server's Cred
/// (SRVCRED) and issues the server's next nonce.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    clcred: StoredCredential,
    /// Nonce the client uses in its next Cred (from the server's last NextNonce).
    client_nonce: Nonce,
    srvcred: StoredCredential,
    /// Nonce the server must use in its next Cred (from the client's last Chal).
    server_nonce: Nonce,
    /// Whether the transport is TLS (basic is accepted only then, A.4).
    tls: bool,
    retried: bool,
}

impl ClientAuth {
    /// From the DMAcc credentials, the stored nonces (A.6 AAuthData) and
    /// whether the transport is TLS.
    pub fn new(
        clcred: StoredCredential,
        client_nonce: Nonce,
        srvcred: StoredCredential,
        server_nonce: Nonce,
        tls: bool,
    ) -> Self {
        Self {
            clcred,
            client_nonce,
            srvcred,
            server_nonce,
            tls,
            retried: false,
        }
    }

    /// The Cred for the current nonce; `None` for HMAC (use [`Self::hmac_header`]).
    pub fn cred(&self) -> Option<Cred> {
        self.clcred.cred(&self.client_nonce)
    }

    /// The `x-syncml-hmac` header value for `body` with the current nonce (A.4).
    pub fn hmac_header(&self, body: &[u8]) -> String {
        HmacHeader::build(
            &self.clcred.name,
            &self.clcred.secret,
            &self.client_nonce,
            body,
        )
        .to_value()
    }

    /// The nonce the client will use next (to persist as CLCRED AAuthData).
    pub fn client_nonce(&self) -> &Nonce {
        &self.client_nonce
    }

    /// The nonce the server must use next (to persist as SRVCRED AAuthData).
    pub fn server_nonce(&self) -> &Nonce {
        &self.server_nonce
    }

    /// Handles the server's SyncHdr Status and Chal (A.4): any NextNonce is
    /// stored; 401/407 are retried once.
    pub fn handle_status(&mut self, status: StatusCode, chal: Option<&Chal>) -> ClientReaction {
        if let Some(c) = chal {
            self.client_nonce = c.next_nonce.clone();
            // Basic refused without TLS: the server asks for MD5 instead.
            if self.clcred.auth_type == AuthType::Basic && c.auth_type == AuthType::Md5 {
                self.clcred.auth_type = AuthType::Md5;
            }
        }
        match status {
            StatusCode::OK | StatusCode::AUTHENTICATED => ClientReaction::Authenticated,
            StatusCode::INVALID_CREDENTIALS | StatusCode::MISSING_CREDENTIALS
                if chal.is_some() && !self.retried =>
            {
                self.retried = true;
                ClientReaction::Retry
            }
            _ => ClientReaction::GiveUp,
        }
    }

    /// Checks the server's `x-syncml-hmac` header (SRVCRED AAuthType HMAC)
    /// over the exact `body` received, with SRVCRED's name and secret and
    /// the nonce the client issued, then issues a fresh nonce (A.4: a fresh
    /// nonce per message). 200 when it verified (A.4: 200, not 212, for
    /// HMAC), 401 when bad, 407 when missing.
    pub fn check_server_hmac<R: RngCore + CryptoRng>(
        &mut self,
        header: Option<&str>,
        body: &[u8],
        rng: &mut R,
    ) -> ServerCredCheck {
        let status = match header.map(HmacHeader::parse) {
            None => StatusCode::MISSING_CREDENTIALS,
            Some(Ok(h))
                if self.srvcred.auth_type == AuthType::Hmac
                    && ct_eq(h.username.as_bytes(), self.srvcred.name.as_bytes())
                        & h.verify(&self.srvcred.secret, &self.server_nonce, body) =>
            {
                StatusCode::OK
            }
            Some(_) => StatusCode::INVALID_CREDENTIALS,
        };
        self.server_nonce = Nonce::generate(rng);
        ServerCredCheck {
            status,
            chal: Chal::new(self.srvcred.auth_type, self.server_nonce.clone()),
        }
    }

    /// Checks the server's Cred against SRVCRED and the nonce the client
    /// issued, then issues a fresh nonce (A.4).
    pub fn check_server_cred<R: RngCore + CryptoRng>(
        &mut self,
        cred: Option<&Cred>,
        rng: &mut R,
    ) -> ServerCredCheck {
        let status = match cred {
            None => StatusCode::MISSING_CREDENTIALS,
            Some(c) if self.srvcred.check_cred(c, &self.server_nonce, self.tls) => {
                StatusCode::AUTHENTICATED
            }
            Some(_) => StatusCode::INVALID_CREDENTIALS,
        };
        self.server_nonce = Nonce::generate(rng);
        ServerCredCheck {
            status,
            chal: Chal::new(self.srvcred.auth_type, self.server_nonce.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    // PROTOCOL A.4 test vector.
    #[test]
    fn md5_vector() {
        let pw = Secret::new("OhBehave");
        let n = Nonce::from_chr("Nonce");
        assert_eq!(md5_digest("Bruce2", &pw, &n), "Zz6EivR3yeaaENcRN6lpAQ==");
        assert!(verify_md5_digest(
            "Bruce2",
            &pw,
            &n,
            "Zz6EivR3yeaaENcRN6lpAQ=="
        ));
        assert!(!verify_md5_digest(
            "Bruce2",
            &pw,
            &n,
            "Zz6EivR3yeaaENcRN6lpAA=="
        ));
    }

    // PROTOCOL A.4: 24 base64url characters; NextNonce carries their base64; chr form.
    #[test]
    fn nonce_forms() {
        let n = Nonce::generate(&mut rng());
        assert_eq!(n.as_bytes().len(), 24);
        let chr = n.to_chr().unwrap();
        assert!(chr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Nonce::from_b64(&n.to_b64()).unwrap(), n);
        assert_eq!(Nonce::from_chr(chr), n);
        assert_ne!(
            Nonce::generate(&mut rng()),
            Nonce::generate(&mut StdRng::seed_from_u64(8))
        );
        assert!(Nonce::from_bytes(vec![0u8, 1]).to_chr().is_none());
        assert_eq!(format!("{n:?}"), "Nonce(24 bytes)");
    }

    // STYLE lesson 7.
    #[test]
    fn secrets_do_not_print() {
        let c = StoredCredential {
            auth_type: AuthType::Md5,
            name: "u".into(),
            secret: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let basic = StoredCredential {
            auth_type: AuthType::Basic,
            ..c
        };
        let cred = basic.cred(&Nonce::from_chr("n")).unwrap();
        assert!(!format!("{cred:?}").contains(&cred.data));
    }

    // PROTOCOL A.4: HMAC header round trip, variants, tampered body.
    #[test]
    fn hmac_round_trip_and_tamper() {
        let pw = Secret::new("pw");
        let n = Nonce::from_chr("abc");
        let body = b"<SyncML>...</SyncML>";
        let h = HmacHeader::build("dev", &pw, &n, body);
        let parsed = HmacHeader::parse(&h.to_value()).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify(&pw, &n, body));
        assert!(!parsed.verify(&pw, &n, b"<SyncML>..!</SyncML>"));
        assert!(!parsed.verify(&pw, &Nonce::from_chr("abd"), body));
        let variants = [
            format!("algorithm=MD5,username=dev,mac={}", h.mac),
            format!("  username = \"dev\" ,  mac = \"{}\"  ", h.mac),
            format!(
                "Algorithm=\"md5\", USERNAME=\"dev\", mac={}, extra=1",
                h.mac
            ),
        ];
        for v in variants {
            let p = HmacHeader::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert!(p.verify(&pw, &n, body), "{v}");
            assert_eq!(p.username, "dev");
        }
        assert!(matches!(
            HmacHeader::parse("algorithm=SHA1, username=a, mac=b"),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        // another user's name with this user's MAC fails
        let mut other = h.clone();
        other.username = "dev2".into();
        assert!(!other.verify(&pw, &n, body));
        assert!(HmacHeader::parse("username=a").is_err());
        assert!(HmacHeader::parse("username=\"a, mac=b").is_err());
        assert!(HmacHeader::parse("username=a mac=b").is_err());
    }

    // PROTOCOL A.4: basic accepted only over TLS.
    #[test]
    fn basic_only_over_tls() {
        let acct = StoredCredential {
            auth_type: AuthType::Basic,
            name: "dev".into(),
            secret: Secret::new("pw"),
        };
        let n = Nonce::from_chr("x");
        let cred = acct.cred(&n).unwrap();
        assert_eq!(basic_decode(&cred.data).unwrap().0, "dev");
        assert!(acct.check_cred(&cred, &n, true));
        assert!(!acct.check_cred(&cred, &n, false));

        let mut r = rng();
        let mut s = ServerAuth::new(acct.clone(), n.clone(), false);
        let out = s.handle_message(Presented::Cred(&cred), &mut r);
        let ServerAuthOutcome::Challenge { status, chal } = out else {
            panic!("{out:?}")
        };
        assert_eq!(status, StatusCode::INVALID_CREDENTIALS);
        assert_eq!(chal.auth_type, AuthType::Md5);
        // the client follows the challenge to MD5 and is accepted
        let mut c = ClientAuth::new(acct.clone(), n.clone(), acct, n, false);
        assert_eq!(c.handle_status(status, Some(&chal)), ClientReaction::Retry);
        let retry = c.cred().unwrap();
        assert_eq!(retry.auth_type, AuthType::Md5);
        assert!(matches!(
            s.handle_message(Presented::Cred(&retry), &mut r),
            ServerAuthOutcome::Authenticated {
                status: StatusCode::AUTHENTICATED,
                ..
            }
        ));
    }

    fn md5_account() -> StoredCredential {
        StoredCredential {
            auth_type: AuthType::Md5,
            name: "dev".into(),
            secret: Secret::new("clientpw"),
        }
    }

    // PROTOCOL A.4: 407 → Chal → retry → 212 with next-session nonce; LocName checked if present.
    #[test]
    fn challenge_then_success() {
        let mut r = rng();
        let stale = Nonce::from_chr("stale");
        let mut s = ServerAuth::new(md5_account(), Nonce::from_chr("expected"), false);
        let srv = StoredCredential {
            auth_type: AuthType::Md5,
            name: "srv".into(),
            secret: Secret::new("srvpw"),
        };
        let mut c = ClientAuth::new(md5_account(), stale, srv, Nonce::from_chr("s0"), false);
        let out = s.handle_message(Presented::Nothing, &mut r);
        let ServerAuthOutcome::Challenge { status, chal } = out else {
            panic!("{out:?}")
        };
        assert_eq!(status, StatusCode::MISSING_CREDENTIALS);
        assert_eq!(c.handle_status(status, Some(&chal)), ClientReaction::Retry);
        let cred = c.cred().unwrap();
        assert_eq!(cred.loc_name.as_deref(), Some("dev"));
        let out = s.handle_message(Presented::Cred(&cred), &mut r);
        let ServerAuthOutcome::Authenticated {
            status,
            chal: Some(next),
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(status, StatusCode::AUTHENTICATED);
        assert_ne!(next.next_nonce, chal.next_nonce);
        assert!(s.is_authenticated());
        assert_eq!(
            c.handle_status(status, Some(&next)),
            ClientReaction::Authenticated
        );
        assert_eq!(c.client_nonce(), &next.next_nonce);
        // later messages need no Cred
        assert_eq!(
            s.handle_message(Presented::Nothing, &mut r),
            ServerAuthOutcome::Authenticated {
                status: StatusCode::OK,
                chal: None
            }
        );
    }

    // PROTOCOL A.4: after a failure exactly one more challenge; a second failure ends the session.
    #[test]
    fn second_failure_ends_session() {
        let mut r = rng();
        let n = Nonce::from_chr("n1");
        let mut s = ServerAuth::new(md5_account(), n.clone(), false);
        let mut bad = md5_account().cred(&n).unwrap();
        bad.loc_name = Some("someone-else".into());
        let out = s.handle_message(Presented::Cred(&bad), &mut r);
        let ServerAuthOutcome::Challenge { status, chal } = out else {
            panic!("{out:?}")
        };
        assert_eq!(status, StatusCode::INVALID_CREDENTIALS);
        // the old nonce is no longer accepted
        let old = md5_account().cred(&n).unwrap();
        assert_eq!(
            s.handle_message(Presented::Cred(&old), &mut r),
            ServerAuthOutcome::SessionEnded {
                status: StatusCode::INVALID_CREDENTIALS
            }
        );
        assert!(s.has_ended());
        let good = md5_account().cred(&chal.next_nonce).unwrap();
        assert!(matches!(
            s.handle_message(Presented::Cred(&good), &mut r),
            ServerAuthOutcome::SessionEnded { .. }
        ));

        // the client gives up on the second challenge too
        let mut c = ClientAuth::new(md5_account(), n.clone(), md5_account(), n.clone(), false);
        assert_eq!(
            c.handle_status(StatusCode::INVALID_CREDENTIALS, Some(&chal)),
            ClientReaction::Retry
        );
        assert_eq!(
            c.handle_status(StatusCode::INVALID_CREDENTIALS, Some(&chal)),
            ClientReaction::GiveUp
        );
    }

    // PROTOCOL A.4: HMAC: 200 each message with NextNonce; each message needs a fresh MAC.
    #[test]
    fn hmac_session() {
        let mut r = rng();
        let acct = StoredCredential {
            auth_type: AuthType::Hmac,
            ..md5_account()
        };
        let n0 = Nonce::from_chr("n0");
        let mut s = ServerAuth::new(acct.clone(), n0.clone(), false);
        let mut c = ClientAuth::new(acct.clone(), n0, acct, Nonce::from_chr("s"), false);
        assert!(c.cred().is_none());
        let body1 = b"message one";
        let h1 = c.hmac_header(body1);
        let out = s.handle_message(
            Presented::Hmac {
                header: &h1,
                body: body1,
            },
            &mut r,
        );
        let ServerAuthOutcome::Authenticated {
            status,
            chal: Some(chal),
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(status, StatusCode::OK);
        c.handle_status(status, Some(&chal));
        let body2 = b"message two";
        let h2 = c.hmac_header(body2);
        // replaying the first header on the second message fails
        assert!(matches!(
            s.clone().handle_message(
                Presented::Hmac {
                    header: &h1,
                    body: body1
                },
                &mut r
            ),
            ServerAuthOutcome::Challenge { .. }
        ));
        assert!(matches!(
            s.handle_message(
                Presented::Hmac {
                    header: &h2,
                    body: body2
                },
                &mut r
            ),
            ServerAuthOutcome::Authenticated {
                status: StatusCode::OK,
                chal: Some(_)
            }
        ));
    }

    // PROTOCOL A.4: client checks SRVCRED with the nonce it issued, then issues a fresh one.
    #[test]
    fn client_checks_server_cred() {
        let mut r = rng();
        let srv = StoredCredential {
            auth_type: AuthType::Md5,
            name: "corp.example".into(),
            secret: Secret::new("srvpw"),
        };
        let s0 = Nonce::from_chr("s0");
        let mut c = ClientAuth::new(
            md5_account(),
            Nonce::from_chr("c"),
            srv.clone(),
            s0.clone(),
            false,
        );
        let good = srv.cred(&s0).unwrap();
        let check = c.check_server_cred(Some(&good), &mut r);
        assert_eq!(check.status, StatusCode::AUTHENTICATED);
        assert_eq!(c.server_nonce(), &check.chal.next_nonce);
        // the same Cred again is stale now
        assert_eq!(
            c.check_server_cred(Some(&good), &mut r).status,
            StatusCode::INVALID_CREDENTIALS
        );
        assert_eq!(
            c.check_server_cred(None, &mut r).status,
            StatusCode::MISSING_CREDENTIALS
        );
        let fresh = srv.cred(c.server_nonce()).unwrap();
        assert_eq!(
            c.check_server_cred(Some(&fresh), &mut r).status,
            StatusCode::AUTHENTICATED
        );
    }
}

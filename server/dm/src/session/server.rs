//! The server's side of a DM session (PROTOCOL A.2–A.4), sans-IO.
//!
//! ```text
//!                 package 1, Cred valid          client package (Final)
//!  AwaitingPackage1 ─────────────────► AwaitingAnswer ◄──────────────┐
//!     │  │  missing/bad Cred             {package}  │ queue empty     │ more queued
//!     │  │  407/401 + Chal               │   ▲      └─► Ended         │ commands: next
//!     │  └──────► AwaitingCredentials ───┘   │          {Completed}   │ package ─────┘
//!     │            │ second failure          │ non-final message (either side):
//!     │            └──► Ended{AuthFailed}    └─ Alert 1222 / next chunk, same state
//!     │ Alert 1223 (any state) ──► Ended{Aborted}
//!     │ MsgID out of order, or Source ≠ DevId (any state; A.2):
//!     │ 215s + Alert 1223 ──► Ended{Aborted} after ProtocolViolation
//! ```
//!
//! One message in, at most one message out: [`ServerSession::handle_message`]
//! judges the client's credential (A.4), answers every command with a Status
//! in order (A.2), correlates the client's Statuses and Results with the
//! commands the runtime queued ([`ServerSession::push_command`]), and builds
//! the next message of the server's package within the client's `MaxMsgSize`.
//! Between messages the session can be stored (serde feature); it keeps no
//! secret: the account is passed in with every message.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;

use rand_core::{CryptoRng, RngCore};

use super::outbox::{LargeKind, LargeOut, Packer};
use super::{
    chal_from_model, chal_to_model, cred_from_model, cred_to_model, header, item_bytes, status,
    JobId,
};
use crate::auth::{
    Nonce, Presented, ServerAuth, ServerAuthOutcome, ServerAuthSnapshot, StoredCredential,
};
use crate::syncml::{
    self, Alert, CmdRef, Command, Container, Data, DecodeError, Encoding, Exec, Item, ItemCmd,
    LocRef, Meta, Results,
};
use crate::tree::Timestamp;
use crate::{AlertCode, CmdId, StatusCode};

/// One client message as it arrived (PROTOCOL A.1, A.4).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The request body, XML or WBXML (the reply uses the same encoding).
    pub bytes: &'a [u8],
    /// The `x-syncml-hmac` header value, when present (A.4).
    pub hmac: Option<&'a str>,
    /// Whether the request came over TLS (A.4: basic only over TLS).
    pub tls: bool,
}

/// The device's stored account on the server (PROTOCOL A.4, A.6): the
/// client's credential and the nonce it must use next, the server's own
/// SRVCRED and the nonce the client last issued for it. The nonces are read
/// on the first message only; later ones travel in the session and in
/// [`ServerEvent::NextNonces`].
#[derive(Debug, Clone)]
pub struct DeviceAccount {
    /// CLCRED: what the client must present (A.4).
    pub client: StoredCredential,
    /// The nonce the client's first Cred must use (A.4: stored per device).
    pub client_nonce: Nonce,
    /// SRVCRED: the server's own name and secret (A.4).
    pub server: StoredCredential,
    /// The nonce the client last issued for the server's Cred (A.4).
    pub server_nonce: Nonce,
}

/// A command the runtime wants executed on the device (PROTOCOL A.3),
/// tagged with the runtime's job id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerCommand {
    /// Reported back in [`ServerEvent::CommandStatus`] and [`ServerEvent::CommandResults`].
    pub job: JobId,
    /// What to do.
    pub kind: CommandKind,
}

/// The commands a server issues (PROTOCOL A.3). Targets are tree URIs or
/// `<uri>?prop=<Name>` (A.7); `data` is raw bytes (with Format `b64` the
/// session encodes them).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[allow(missing_docs)] // fields: target URI, data, Format, Type (MIME)
pub enum CommandKind {
    /// Get of a node or property; answered by Results (A.2).
    Get { target: String },
    /// Replace of a value or property; a value bigger than a message goes
    /// as a large object (A.2).
    Replace {
        target: String,
        data: Vec<u8>,
        format: Option<String>,
        mime: Option<String>,
    },
    /// Add of a leaf, or with `data: None` and Format `node` of an
    /// interior node; may go as a large object (A.2).
    Add {
        target: String,
        data: Option<Vec<u8>>,
        format: Option<String>,
        mime: Option<String>,
    },
    /// Delete of a node (A.7).
    Delete { target: String },
    /// Exec of a node, with optional data.
    Exec {
        target: String,
        data: Option<Vec<u8>>,
    },
    /// Copy of `source` to a new node `target` (A.7).
    Copy { source: String, target: String },
    /// All or nothing (A.3); never split across messages: one that does
    /// not fit waits for the next message, one larger than any message is
    /// not sent and reported 517 (A.2).
    Atomic(Vec<ServerCommand>),
    /// In order, stopping at the first failure (A.3); kept whole like an
    /// Atomic (517 when larger than any message).
    Sequence(Vec<ServerCommand>),
}

impl CommandKind {
    /// The element name (what a Status names in `Cmd`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Get { .. } => "Get",
            Self::Replace { .. } => "Replace",
            Self::Add { .. } => "Add",
            Self::Delete { .. } => "Delete",
            Self::Exec { .. } => "Exec",
            Self::Copy { .. } => "Copy",
            Self::Atomic(_) => "Atomic",
            Self::Sequence(_) => "Sequence",
        }
    }
}

/// `./DevInfo` leaves from package 1 (PROTOCOL A.3, A.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfoReport {
    /// `./DevInfo/DevId`.
    pub dev_id: Option<String>,
    /// `./DevInfo/Man`.
    pub man: Option<String>,
    /// `./DevInfo/Mod`.
    pub model: Option<String>,
    /// `./DevInfo/DmV`.
    pub dmv: Option<String>,
    /// `./DevInfo/Lang`.
    pub lang: Option<String>,
}

/// One item the client sent: of the Results of a Get (PROTOCOL A.2) or of a
/// Generic Alert 1226 (A.3). `data` is raw bytes (`b64` decoded), a large
/// object reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedItem {
    /// `Source/LocURI`.
    pub source: Option<String>,
    /// `Meta/Format`.
    pub format: Option<String>,
    /// `Meta/Type`.
    pub mime: Option<String>,
    /// The value.
    pub data: Vec<u8>,
}

/// Why a session ended (PROTOCOL A.2, A.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EndReason {
    /// The server sent a package without commands (A.2).
    Completed,
    /// The client failed authentication twice (A.4).
    AuthFailed,
    /// The client refused the server's Cred (A.4).
    ServerAuthRejected,
    /// Alert 1223 (A.2): from the client, or from the server after a
    /// [`ClientViolation`] (reported just before as
    /// [`ServerEvent::ProtocolViolation`]).
    Aborted,
}

/// What happened during one message (PROTOCOL A.2–A.4), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The client's credential was accepted (A.4); once per session.
    Authenticated,
    /// The second failure of A.4 (status 401 or 407); `SessionEnded` follows.
    #[allow(missing_docs)]
    AuthFailed { status: StatusCode },
    /// Package 1's Replace of `./DevInfo/*` (A.3).
    DevInfo(DeviceInfoReport),
    /// A Generic Alert 1226 (A.3).
    GenericAlert {
        /// The Correlator of the Exec it answers.
        correlator: Option<String>,
        /// Its items (Source, Type, Format, Data).
        items: Vec<ReceivedItem>,
    },
    /// The client's Status of a queued command. An Atomic the client gave no
    /// Status (libdmclient) is reported with the highest status among its
    /// commands, 500 for a command without Status.
    #[allow(missing_docs)]
    CommandStatus {
        job: JobId,
        /// The command's element name (`Get`, `Atomic` …).
        cmd: String,
        status: StatusCode,
    },
    /// The Results of a queued Get (A.2).
    #[allow(missing_docs)]
    CommandResults {
        job: JobId,
        items: Vec<ReceivedItem>,
    },
    /// Nonces to persist (A.4): the client's next (issued by the server) and
    /// the server's next (issued by the client in a Chal).
    #[allow(missing_docs)]
    NextNonces {
        client_next: Option<Nonce>,
        server_next: Option<Nonce>,
    },
    /// Alert 1223 from the client (A.2); `SessionEnded` follows.
    Aborted,
    /// The client broke a rule of A.2; the server aborted the session
    /// (Alert 1223) and `SessionEnded { reason: Aborted }` follows.
    ProtocolViolation(ClientViolation),
    /// The session is over; later messages are refused.
    #[allow(missing_docs)]
    SessionEnded { reason: EndReason },
}

/// A rule of PROTOCOL A.2 the client broke. The server does not execute
/// the message: it answers every command with 215, adds Alert 1223 and
/// ends the session **[profile]** (a message out of order means a lost or
/// replayed message, after which the two sides no longer agree on what
/// was done; going on would risk running a command twice or not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientViolation {
    /// A.2: the client's MsgID must start at 1 and increase by 1 per
    /// message (a message with Alert 1223 is taken as the abort it is
    /// whatever its MsgID). The SyncHdr is answered 400 and the credential is not
    /// judged (a replayed message must not move the nonces on).
    #[allow(missing_docs)]
    MsgIdOutOfOrder { expected: u32, got: u32 },
    /// A.2: `Source/LocURI` must equal `./DevInfo/DevId` as reported in
    /// package 1 (and stay the same for the session). Checked once the
    /// credential is accepted; the SyncHdr keeps its authentication status.
    DevIdMismatch {
        /// The message's `Source/LocURI`.
        source: String,
        /// The DevId the session knows (package 1's `./DevInfo/DevId`).
        dev_id: String,
    },
}

/// A message for the runtime to send back (PROTOCOL A.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransmit {
    /// The response body.
    pub bytes: Vec<u8>,
    /// Its encoding, the request's (A.1); see [`Encoding::content_type`].
    pub encoding: Encoding,
    /// The `x-syncml-hmac` response header (A.4) when SRVCRED's AAuthType
    /// is HMAC: a MAC over `bytes` with SRVCRED's name and secret and the
    /// client's latest nonce, on every message the client answers (not on
    /// a 401/407 challenge nor on the message that ends the session, after
    /// which the client could not hand over its next nonce). With
    /// MD5/basic the server proves itself with a `Cred` instead.
    pub hmac: Option<String>,
}

/// Why a client message could not be handled at all; the runtime answers
/// at the HTTP level (no SyncML reply exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The bytes are not a SyncML DM message (A.1).
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// A message for another SessionID (A.2: fixed for a session).
    #[error("SessionID {got:?} in session {expected:?}")]
    #[allow(missing_docs)]
    WrongSession { expected: String, got: String },
    /// A message after the session ended (A.2, A.4).
    #[error("the session has ended")]
    Ended,
}

/// What the session waits for (STYLE lesson 2; diagram in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum Phase {
    AwaitingPackage1,
    /// Challenged (407/401); waiting for package 1 again with a Cred.
    AwaitingCredentials,
    /// Sent (part of) server package `package`; waiting for the client's
    /// Statuses or its Alert 1222.
    AwaitingAnswer {
        package: u32,
    },
    Ended {
        reason: EndReason,
    },
}

/// A command sent, kept until the client's package answering it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Sent {
    job: JobId,
    cmd: String,
    /// The status code received.
    status: Option<u16>,
    /// CmdIDs of an Atomic's or Sequence's commands.
    children: Vec<u32>,
    /// A chunk of a large object that is not the last one (answered 213).
    chunk: bool,
}

/// A Status held for the next message (PROTOCOL A.2), stored without the
/// SyncML model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct HeldStatus {
    msg_ref: u32,
    cmd_ref: u32,
    cmd: String,
    code: u16,
    targets: Vec<String>,
}

impl HeldStatus {
    /// A command's Status (the SyncHdr's is never held); `None` otherwise.
    fn from_command(c: &Command) -> Option<Self> {
        let Command::Status(s) = c else { return None };
        let CmdRef::Cmd(id) = s.cmd_ref else {
            return None;
        };
        Some(Self {
            msg_ref: s.msg_ref?.get(),
            cmd_ref: id.get(),
            cmd: s.cmd.clone(),
            code: s.data.code(),
            targets: s.target_refs.clone(),
        })
    }

    fn into_status(self) -> Command {
        let mut s = status(
            NonZeroU32::new(self.msg_ref).expect("from a MsgRef"),
            CmdRef::new(self.cmd_ref),
            &self.cmd,
            StatusCode::new(self.code).expect("from a StatusCode"),
        );
        s.target_refs = self.targets;
        Command::Status(s)
    }
}

/// A large object coming in as Results chunks (PROTOCOL A.2).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct LargeIn {
    cmd_ref: u32,
    first: ItemParts,
    size: Option<u64>,
    data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct ItemParts {
    source: Option<String>,
    format: Option<String>,
    mime: Option<String>,
}

impl std::fmt::Debug for LargeIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeIn")
            .field("cmd_ref", &self.cmd_ref)
            .field("size", &self.size)
            .field("received", &self.data.len())
            .finish()
    }
}

/// The server's side of one DM session (PROTOCOL A.2–A.4); see the module
/// doc for its states. Holds no secret, so it can be stored between
/// messages (serde feature); events and transmits must be polled before.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerSession {
    phase: Phase,
    session_id: Option<String>,
    dev_id: String,
    server_uri: String,
    encoding: Encoding,
    next_msg_id: u32,
    next_cmd_id: u32,
    auth: Option<ServerAuthSnapshot>,
    authenticated: bool,
    /// The nonce the client issued for the server's next Cred (A.4).
    server_nonce: Option<Nonce>,
    max_msg_size: Option<u64>,
    /// The server's own `MaxMsgSize`, announced in its headers (A.2).
    own_max_msg_size: Option<u64>,
    /// Commands for the next package.
    queue: VecDeque<ServerCommand>,
    /// The rest of the package being sent.
    package: VecDeque<ServerCommand>,
    large_out: Option<LargeOut>,
    large_in: Option<LargeIn>,
    sent: BTreeMap<u32, Sent>,
    /// When the last client message was handled (STYLE lesson 1: the
    /// caller's clock), for the runtime to expire idle sessions.
    #[cfg_attr(feature = "serde", serde(default))]
    last_message_at: Option<Timestamp>,
    /// The MsgID of the client's last message, 0 before the first (A.2).
    #[cfg_attr(feature = "serde", serde(default))]
    client_msg_id: u32,
    /// Statuses that did not fit in the last reply (A.2), sent next.
    #[cfg_attr(feature = "serde", serde(default))]
    held: VecDeque<HeldStatus>,
    /// The reply whose Statuses were held answered a non-final message:
    /// once they are out, Alert 1222 asks for the rest (A.2).
    #[cfg_attr(feature = "serde", serde(default))]
    held_then_1222: bool,
    #[cfg_attr(feature = "serde", serde(skip))]
    events: VecDeque<ServerEvent>,
    #[cfg_attr(feature = "serde", serde(skip))]
    transmits: VecDeque<ServerTransmit>,
}

impl Default for ServerSession {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerSession {
    /// A session waiting for package 1 (PROTOCOL A.3).
    pub fn new() -> Self {
        Self {
            phase: Phase::AwaitingPackage1,
            session_id: None,
            dev_id: String::new(),
            server_uri: String::new(),
            encoding: Encoding::Xml,
            next_msg_id: 1,
            next_cmd_id: 1,
            auth: None,
            authenticated: false,
            server_nonce: None,
            max_msg_size: None,
            own_max_msg_size: None,
            queue: VecDeque::new(),
            package: VecDeque::new(),
            large_out: None,
            large_in: None,
            sent: BTreeMap::new(),
            last_message_at: None,
            client_msg_id: 0,
            held: VecDeque::new(),
            held_then_1222: false,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
        }
    }

    /// PROTOCOL A.2: the DevId (`Source/LocURI`) and SessionID of a message,
    /// for the runtime to find the account and the stored session.
    pub fn peek(bytes: &[u8]) -> Result<(String, String), SessionError> {
        let m = syncml::decode(bytes)?;
        Ok((m.hdr.source.loc_uri, m.hdr.session_id))
    }

    /// Queues a command for the next server package (PROTOCOL A.3).
    pub fn push_command(&mut self, cmd: ServerCommand) {
        self.queue.push_back(cmd);
    }

    /// Announces the largest message the server accepts (PROTOCOL A.2:
    /// `MaxMsgSize` in the SyncHdr Meta); the client splits its packages.
    pub fn set_max_msg_size(&mut self, max: u64) {
        self.own_max_msg_size = Some(max);
    }

    /// True once the client has authenticated (PROTOCOL A.4).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The jobs of commands not transmitted yet: queued for the next
    /// package, or the rest of a package split over messages (PROTOCOL A.2,
    /// A.3).
    pub fn untransmitted_jobs(&self) -> impl Iterator<Item = JobId> + '_ {
        self.queue.iter().chain(&self.package).map(|c| c.job)
    }

    /// True once the session has ended (PROTOCOL A.2).
    pub fn has_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended { .. })
    }

    /// The next message to send back, if any (at most one per handled message).
    pub fn poll_transmit(&mut self) -> Option<ServerTransmit> {
        self.transmits.pop_front()
    }

    /// The next event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When the last client message was handled by
    /// [`Self::handle_message_at`]; `None` before (or when only
    /// [`Self::handle_message`], which has no clock, was used).
    pub fn last_message_at(&self) -> Option<Timestamp> {
        self.last_message_at
    }

    /// True when the session has waited more than `idle_secs` seconds for
    /// the client's next message (the runtime then discards it). A session
    /// that never saw a timed message is not idle.
    pub fn is_idle(&self, now: Timestamp, idle_secs: u64) -> bool {
        self.last_message_at
            .is_some_and(|t| now.0.saturating_sub(t.0) > idle_secs)
    }

    /// Handles one client message (PROTOCOL A.2–A.4) and prepares the
    /// reply, without a clock: [`Self::last_message_at`] is left as it was.
    /// Prefer [`Self::handle_message_at`].
    pub fn handle_message<R: RngCore + CryptoRng>(
        &mut self,
        input: Incoming<'_>,
        account: &DeviceAccount,
        rng: &mut R,
    ) -> Result<(), SessionError> {
        self.handle(input, None, account, None, rng)
    }

    /// Handles one client message (PROTOCOL A.2–A.4) that arrived at `now`
    /// and prepares the reply; `now` becomes [`Self::last_message_at`].
    pub fn handle_message_at<R: RngCore + CryptoRng>(
        &mut self,
        input: Incoming<'_>,
        account: &DeviceAccount,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<(), SessionError> {
        self.handle(input, None, account, Some(now), rng)
    }

    /// [`Self::handle_message_at`] for a runtime that has decoded the
    /// message already (to find the account and the stored session):
    /// `msg` must be what [`syncml::decode`] makes of `input.bytes`, which
    /// are still what a client HMAC is checked over.
    pub fn handle_decoded_at<R: RngCore + CryptoRng>(
        &mut self,
        input: Incoming<'_>,
        msg: syncml::Message,
        account: &DeviceAccount,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<(), SessionError> {
        self.handle(input, Some(msg), account, Some(now), rng)
    }

    fn handle<R: RngCore + CryptoRng>(
        &mut self,
        input: Incoming<'_>,
        decoded: Option<syncml::Message>,
        account: &DeviceAccount,
        now: Option<Timestamp>,
        rng: &mut R,
    ) -> Result<(), SessionError> {
        if self.has_ended() {
            return Err(SessionError::Ended);
        }
        let msg = match decoded {
            Some(m) => m,
            None => syncml::decode(input.bytes)?,
        };
        match &self.session_id {
            None => {
                self.session_id = Some(msg.hdr.session_id.clone());
                self.dev_id = msg.hdr.source.loc_uri.clone();
                self.server_uri = msg.hdr.target.loc_uri.clone();
                self.auth = Some(ServerAuthSnapshot::new(account.client_nonce.clone()));
                self.server_nonce = Some(account.server_nonce.clone());
            }
            Some(s) if *s != msg.hdr.session_id => {
                return Err(SessionError::WrongSession {
                    expected: s.clone(),
                    got: msg.hdr.session_id.clone(),
                })
            }
            Some(_) => {}
        }
        if now.is_some() {
            self.last_message_at = now;
        }
        self.encoding = syncml::Encoding::sniff(input.bytes);
        if let Some(m) = msg.hdr.meta.as_ref().and_then(|m| m.max_msg_size) {
            self.max_msg_size = Some(m);
        }
        let msg_ref = msg.hdr.msg_id;

        // A.2: MsgID from 1, by 1; checked before the credential so that a
        // replayed message moves no nonce on. An abort (Alert 1223) is
        // taken whatever its MsgID: the session ends either way.
        let expected = self.client_msg_id + 1;
        self.client_msg_id = msg_ref.get();
        let aborting = msg
            .body
            .iter()
            .any(|c| matches!(c, Command::Alert(a) if a.data == AlertCode::SESSION_ABORT));
        if msg_ref.get() != expected && !aborting {
            let mut hdr_status =
                status(msg_ref, CmdRef::SyncHdr, "SyncHdr", StatusCode::BAD_REQUEST);
            hdr_status.target_refs = vec![msg.hdr.target.loc_uri.clone()];
            hdr_status.source_refs = vec![msg.hdr.source.loc_uri.clone()];
            let violation = ClientViolation::MsgIdOutOfOrder {
                expected,
                got: msg_ref.get(),
            };
            self.abort_for(&msg, hdr_status, violation);
            return Ok(());
        }

        // A.4: judge the credential.
        let mut auth = ServerAuth::resume(
            account.client.clone(),
            input.tls,
            self.auth.clone().expect("set on the first message"),
        );
        let model_cred = msg
            .hdr
            .cred
            .as_ref()
            .and_then(|c| cred_from_model(c, msg.hdr.source.loc_name.as_deref()));
        let presented = match (input.hmac, &model_cred) {
            (Some(h), _) => Presented::Hmac {
                header: h,
                body: input.bytes,
            },
            (None, Some(c)) => Presented::Cred(c),
            (None, None) => Presented::Nothing,
        };
        let outcome = auth.handle_message(presented, rng);
        self.auth = Some(auth.snapshot());
        let mut hdr_status = status(msg_ref, CmdRef::SyncHdr, "SyncHdr", StatusCode::OK);
        hdr_status.target_refs = vec![msg.hdr.target.loc_uri.clone()];
        hdr_status.source_refs = vec![msg.hdr.source.loc_uri.clone()];
        let refused = match outcome {
            ServerAuthOutcome::Authenticated { status, chal } => {
                if !self.authenticated {
                    self.authenticated = true;
                    self.events.push_back(ServerEvent::Authenticated);
                }
                hdr_status.data = status;
                if let Some(c) = chal {
                    self.events.push_back(ServerEvent::NextNonces {
                        client_next: Some(c.next_nonce.clone()),
                        server_next: None,
                    });
                    hdr_status.chal = Some(chal_to_model(&c));
                }
                if self.phase == Phase::AwaitingCredentials {
                    self.phase = Phase::AwaitingPackage1;
                }
                None
            }
            ServerAuthOutcome::Challenge { status, chal } => {
                self.events.push_back(ServerEvent::NextNonces {
                    client_next: Some(chal.next_nonce.clone()),
                    server_next: None,
                });
                hdr_status.data = status;
                hdr_status.chal = Some(chal_to_model(&chal));
                // A challenge later in the session (an HMAC that failed)
                // keeps the package in progress: the client sends the same
                // message again.
                if self.phase == Phase::AwaitingPackage1 {
                    self.phase = Phase::AwaitingCredentials;
                }
                Some(status)
            }
            ServerAuthOutcome::SessionEnded { status } => {
                hdr_status.data = status;
                self.events.push_back(ServerEvent::AuthFailed { status });
                self.end(EndReason::AuthFailed);
                Some(status)
            }
        };

        // A.2: Source/LocURI is the DevId, the same all session long.
        if refused.is_none() {
            let source = &msg.hdr.source.loc_uri;
            let dev_id = reported_dev_id(&msg).unwrap_or_else(|| self.dev_id.clone());
            if *source != dev_id || *source != self.dev_id {
                let violation = ClientViolation::DevIdMismatch {
                    source: source.clone(),
                    dev_id,
                };
                self.abort_for(&msg, hdr_status, violation);
                return Ok(());
            }
        }

        let mut statuses = vec![Command::Status(hdr_status)];
        let mut aborted = false;
        let mut devinfo = DeviceInfoReport::default();
        let mut saw_devinfo = false;
        for cmd in &msg.body {
            if let Command::Status(s) = cmd {
                if refused.is_none() {
                    self.handle_status(s);
                }
                continue;
            }
            let mut st = status(
                msg_ref,
                CmdRef::Cmd(cmd.cmd_id()),
                cmd.name(),
                StatusCode::OK,
            );
            if let Some(code) = refused {
                st.data = code;
                statuses.push(Command::Status(st));
                continue;
            }
            match cmd {
                Command::Alert(a) => {
                    st.data = self.handle_alert(a, &mut aborted);
                }
                Command::Replace(r) => {
                    for item in &r.items {
                        let Some(uri) = item_uri(item) else { continue };
                        let value = String::from_utf8_lossy(&item_bytes(item, r.meta.as_ref()))
                            .into_owned();
                        let slot = match uri {
                            "./DevInfo/DevId" => &mut devinfo.dev_id,
                            "./DevInfo/Man" => &mut devinfo.man,
                            "./DevInfo/Mod" => &mut devinfo.model,
                            "./DevInfo/DmV" => &mut devinfo.dmv,
                            "./DevInfo/Lang" => &mut devinfo.lang,
                            _ => continue,
                        };
                        saw_devinfo = true;
                        *slot = Some(value);
                    }
                }
                Command::Results(r) => {
                    // A.2: a Results needs no Status of its own; only a large
                    // object's chunks (213) and a size mismatch (424) get one,
                    // which keeps the answer to many Results within MaxMsgSize.
                    st.data = self.handle_results(r);
                    if st.data == StatusCode::OK {
                        continue;
                    }
                }
                // A server is not managed by its client (A.3).
                _ => st.data = StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED,
            }
            statuses.push(Command::Status(st));
        }
        if saw_devinfo {
            self.events.push_back(ServerEvent::DevInfo(devinfo));
        }
        if aborted {
            self.flush_unanswered();
            self.events.push_back(ServerEvent::Aborted);
            self.end(EndReason::Aborted);
        }

        // What the reply carries.
        if self.has_ended() || refused.is_some() {
            // Sent whole even beyond MaxMsgSize: no later message could
            // carry the rest (a challenge's or a last answer's Statuses).
            self.send(statuses, None, true);
            return Ok(());
        }
        // A.2: Statuses held back from the last reply go first (after
        // this message's SyncHdr Status), then this message's.
        if !self.held.is_empty() {
            let held: Vec<Command> = self.held.drain(..).map(HeldStatus::into_status).collect();
            statuses.splice(1..1, held);
        }
        let answer_1222 = !msg.final_ || std::mem::take(&mut self.held_then_1222);
        if self.hold_overflow(&mut statuses) {
            // A.2: Statuses alone beyond MaxMsgSize: as many as fit, no
            // Final; the client's Alert 1222 asks for the rest, and only
            // then does the reply go on as it would have.
            self.held_then_1222 = answer_1222;
            self.send_part(statuses);
            self.sign_last(account);
        } else if answer_1222 {
            // A.2: a non-final message is answered with Alert 1222 + Statuses.
            let alert = Command::Alert(Alert {
                cmd_id: CmdId::new(1).expect("1 is not 0"),
                no_resp: false,
                cred: None,
                data: AlertCode::NEXT_MESSAGE,
                correlator: None,
                items: Vec::new(),
            });
            statuses.push(alert);
            self.send(statuses, None, true);
            self.sign_last(account);
        } else {
            // A package in progress goes on (the client's Alert 1222 or
            // its Statuses for the last message ask for the rest).
            let mut starts_package = false;
            if self.package.is_empty() && self.large_out.is_none() {
                // The client's answer to a whole package is in.
                self.flush_unanswered();
                self.sent.clear();
                if self.queue.is_empty() {
                    // A.2: a package without commands ends the session.
                    self.end(EndReason::Completed);
                    self.send(statuses, None, true);
                    return Ok(());
                }
                self.package = std::mem::take(&mut self.queue);
                starts_package = true;
                let package = match self.phase {
                    Phase::AwaitingAnswer { package } => package + 2,
                    _ => 2,
                };
                self.phase = Phase::AwaitingAnswer { package };
            }
            // A.4: the server's Cred, over the nonce the client issued, in
            // the first message of a package with commands.
            let cred = self
                .server_nonce
                .as_ref()
                .filter(|_| starts_package)
                .and_then(|n| account.server.cred(n))
                .map(|c| cred_to_model(&c));
            self.send(statuses, cred, false);
            self.sign_last(account);
        }
        Ok(())
    }

    /// A.4: with an HMAC SRVCRED, the `x-syncml-hmac` header of the message
    /// just built, over the nonce the client issued last.
    fn sign_last(&mut self, account: &DeviceAccount) {
        let (Some(t), Some(nonce)) = (self.transmits.back_mut(), self.server_nonce.as_ref()) else {
            return;
        };
        t.hmac = account.server.hmac_header(nonce, &t.bytes);
    }

    fn end(&mut self, reason: EndReason) {
        if !self.has_ended() {
            self.phase = Phase::Ended { reason };
            self.events.push_back(ServerEvent::SessionEnded { reason });
        }
    }

    /// PROTOCOL A.2: a message that broke a rule is not executed: the
    /// SyncHdr gets `hdr_status`, every command 215, then Alert 1223 ends
    /// the session.
    fn abort_for(&mut self, msg: &syncml::Message, hdr_status: syncml::Status, v: ClientViolation) {
        let mut statuses = vec![Command::Status(hdr_status)];
        for cmd in &msg.body {
            if matches!(cmd, Command::Status(_) | Command::Results(_)) {
                continue;
            }
            statuses.push(Command::Status(status(
                msg.hdr.msg_id,
                CmdRef::Cmd(cmd.cmd_id()),
                cmd.name(),
                StatusCode::NOT_EXECUTED,
            )));
        }
        statuses.push(Command::Alert(Alert {
            cmd_id: CmdId::new(1).expect("1 is not 0"),
            no_resp: false,
            cred: None,
            data: AlertCode::SESSION_ABORT,
            correlator: None,
            items: Vec::new(),
        }));
        self.events.push_back(ServerEvent::ProtocolViolation(v));
        self.flush_unanswered();
        self.end(EndReason::Aborted);
        self.send(statuses, None, true);
    }

    /// PROTOCOL A.3: the Alerts a server understands.
    fn handle_alert(&mut self, a: &Alert, aborted: &mut bool) -> StatusCode {
        match a.data {
            AlertCode::SERVER_INITIATED | AlertCode::CLIENT_INITIATED | AlertCode::NEXT_MESSAGE => {
                StatusCode::OK
            }
            AlertCode::SESSION_ABORT => {
                *aborted = true;
                StatusCode::OK
            }
            AlertCode::GENERIC => {
                let items = a
                    .items
                    .iter()
                    .map(|i| ReceivedItem {
                        source: i.source.as_ref().map(|s| s.loc_uri.clone()),
                        format: i.meta.as_ref().and_then(|m| m.format.clone()),
                        mime: i.meta.as_ref().and_then(|m| m.type_.clone()),
                        data: item_bytes(i, None),
                    })
                    .collect();
                self.events.push_back(ServerEvent::GenericAlert {
                    correlator: a.correlator.clone(),
                    items,
                });
                StatusCode::OK
            }
            _ => StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED,
        }
    }

    /// PROTOCOL A.2, A.4: a Status from the client.
    fn handle_status(&mut self, s: &syncml::Status) {
        match s.cmd_ref {
            CmdRef::SyncHdr => {
                // The client's verdict on the server's Cred, and its next nonce.
                if let Some(chal) = s.chal.as_ref().and_then(chal_from_model) {
                    self.server_nonce = Some(chal.next_nonce.clone());
                    self.events.push_back(ServerEvent::NextNonces {
                        client_next: None,
                        server_next: Some(chal.next_nonce),
                    });
                }
                if matches!(
                    s.data,
                    StatusCode::INVALID_CREDENTIALS | StatusCode::MISSING_CREDENTIALS
                ) {
                    self.end(EndReason::ServerAuthRejected);
                }
            }
            CmdRef::Cmd(id) => {
                let Some(sent) = self.sent.get_mut(&id.get()) else {
                    return;
                };
                if sent.chunk && s.data == StatusCode::CHUNK_ACCEPTED {
                    return;
                }
                sent.status = Some(s.data.code());
                let (job, cmd) = (sent.job, sent.cmd.clone());
                self.events.push_back(ServerEvent::CommandStatus {
                    job,
                    cmd,
                    status: s.data,
                });
            }
        }
    }

    /// PROTOCOL A.2: Results of a Get, reassembling a large object.
    fn handle_results(&mut self, r: &Results) -> StatusCode {
        let cmd_ref = r.cmd_ref.get();
        let job = self.sent.get(&cmd_ref).map(|s| s.job);
        let parts = |i: &Item| ItemParts {
            source: i.source.as_ref().map(|s| s.loc_uri.clone()),
            format: i
                .meta
                .as_ref()
                .or(r.meta.as_ref())
                .and_then(|m| m.format.clone()),
            mime: i
                .meta
                .as_ref()
                .or(r.meta.as_ref())
                .and_then(|m| m.type_.clone()),
        };
        let mut items = Vec::new();
        let mut code = StatusCode::OK;
        for item in &r.items {
            let bytes = item_bytes(item, r.meta.as_ref());
            let continuing = self.large_in.as_ref().is_some_and(|l| l.cmd_ref == cmd_ref);
            if item.more_data || continuing {
                let lo = self.large_in.get_or_insert_with(|| LargeIn {
                    cmd_ref,
                    first: parts(item),
                    size: item.meta.as_ref().and_then(|m| m.size),
                    data: Vec::new(),
                });
                lo.data.extend_from_slice(&bytes);
                if item.more_data {
                    code = StatusCode::CHUNK_ACCEPTED;
                    continue;
                }
                let lo = self.large_in.take().expect("just used");
                if lo.size.is_some_and(|s| s != lo.data.len() as u64) {
                    code = StatusCode::SIZE_MISMATCH;
                    if let Some(job) = job {
                        self.events.push_back(ServerEvent::CommandStatus {
                            job,
                            cmd: "Get".to_owned(),
                            status: code,
                        });
                    }
                    continue;
                }
                items.push(ReceivedItem {
                    source: lo.first.source,
                    format: lo.first.format,
                    mime: lo.first.mime,
                    data: lo.data,
                });
            } else {
                let p = parts(item);
                items.push(ReceivedItem {
                    source: p.source,
                    format: p.format,
                    mime: p.mime,
                    data: bytes,
                });
            }
        }
        if let (Some(job), false) = (job, items.is_empty()) {
            self.events
                .push_back(ServerEvent::CommandResults { job, items });
        }
        code
    }

    /// The Atomic quirk (real-clients README, libdmclient): an Atomic without
    /// Status is reported with the highest status among its commands, 500
    /// for a command without Status.
    fn flush_unanswered(&mut self) {
        let mut reports = Vec::new();
        for sent in self.sent.values() {
            if sent.cmd == "Atomic" && sent.status.is_none() {
                let worst = sent
                    .children
                    .iter()
                    .map(|c| {
                        self.sent
                            .get(c)
                            .and_then(|s| s.status)
                            .unwrap_or(StatusCode::COMMAND_FAILED.code())
                    })
                    .max()
                    .and_then(StatusCode::new)
                    .unwrap_or(StatusCode::OK);
                reports.push((sent.job, worst));
            }
        }
        for (job, status) in reports {
            self.events.push_back(ServerEvent::CommandStatus {
                job,
                cmd: "Atomic".to_owned(),
                status,
            });
        }
    }

    /// Builds and queues one message: `statuses` first, then (unless
    /// `statuses_only`) as much of the package as fits (PROTOCOL A.2).
    fn send(&mut self, statuses: Vec<Command>, cred: Option<syncml::Cred>, statuses_only: bool) {
        let mut p = self.packer();
        for s in statuses {
            p.push(s);
        }
        let mut final_ = true;
        if !statuses_only {
            p.set_cred(cred);
            final_ = self.fill(&mut p);
        }
        self.finish(p, final_);
    }

    /// A message of Statuses only, without Final (A.2: more follow).
    fn send_part(&mut self, statuses: Vec<Command>) {
        let mut p = self.packer();
        for s in statuses {
            p.push(s);
        }
        self.finish(p, false);
    }

    /// The next message, empty, within the client's MaxMsgSize.
    fn packer(&self) -> Packer {
        let msg_id = NonZeroU32::new(self.next_msg_id).expect("MsgIDs start at 1");
        let mut hdr = header(
            self.session_id.as_deref().unwrap_or("1"),
            msg_id,
            &self.dev_id,
            &self.server_uri,
        );
        hdr.meta = self.own_max_msg_size.map(|m| Meta {
            max_msg_size: Some(m),
            ..Meta::default()
        });
        Packer::new(hdr, self.encoding, self.max_msg_size, self.next_cmd_id)
    }

    fn finish(&mut self, p: Packer, final_: bool) {
        let (msg, next) = p.finish(final_);
        self.next_msg_id += 1;
        self.next_cmd_id = next;
        self.transmits.push_back(ServerTransmit {
            bytes: syncml::encode(self.encoding, &msg),
            encoding: self.encoding,
            hmac: None,
        });
    }

    /// PROTOCOL A.2: when `statuses` alone do not fit in a message, keeps
    /// the ones that fit (the SyncHdr's always) and holds the rest for the
    /// next message; true when it held some.
    fn hold_overflow(&mut self, statuses: &mut Vec<Command>) -> bool {
        let mut p = self.packer();
        let mut fit = 0;
        for s in statuses.iter() {
            if fit > 0 && p.try_push(s.clone()).is_err() {
                break;
            }
            if fit == 0 {
                p.push(s.clone());
            }
            fit += 1;
        }
        if fit == statuses.len() {
            return false;
        }
        // At least one Status besides the SyncHdr's, so that every
        // message moves the answer on.
        let rest = statuses.split_off(fit.max(2).min(statuses.len()));
        self.held
            .extend(rest.iter().filter_map(HeldStatus::from_command));
        !rest.is_empty()
    }

    /// Moves commands of the package into `p` while they fit; returns true
    /// when the package is complete (A.2: Final).
    fn fill(&mut self, p: &mut Packer) -> bool {
        loop {
            if let Some(lo) = &mut self.large_out {
                let Some(id) = p.push_chunk(lo) else {
                    return false;
                };
                let done = lo.done();
                if let Some(job) = lo.job {
                    let cmd = match lo.kind {
                        LargeKind::Add => "Add",
                        _ => "Replace",
                    }
                    .to_owned();
                    self.sent.insert(
                        id.get(),
                        Sent {
                            job,
                            cmd,
                            status: None,
                            children: Vec::new(),
                            chunk: !done,
                        },
                    );
                }
                if !done {
                    return false;
                }
                self.large_out = None;
                continue;
            }
            let Some(next) = self.package.pop_front() else {
                return true;
            };
            let cmd = to_command(&next);
            match p.try_push(cmd) {
                Ok(id) => {
                    self.record(&next, id.get());
                }
                Err(cmd) => {
                    if let Some(lo) = large_out(&next) {
                        self.large_out = Some(lo);
                        continue;
                    }
                    let alone = p.fits_alone(&cmd);
                    if !alone
                        && matches!(next.kind, CommandKind::Atomic(_) | CommandKind::Sequence(_))
                    {
                        // A.2, A.3: a container is never split (an Atomic
                        // cannot be rolled back across messages, a Sequence
                        // would lose its order guarantee) and the server never
                        // sends a bigger message: it is not sent, and
                        // reported 517 with 215 for what it holds.
                        self.too_large(&next);
                        continue;
                    }
                    if !p.has_commands() && (!alone || p.len() <= 2) {
                        // A single command too big for any message and not
                        // divisible (Exec data, b64 value): sent anyway rather
                        // than never [profile].
                        let id = p.push(*cmd);
                        self.record(&next, id.get());
                        continue;
                    }
                    // It fits in a message of its own: the next one.
                    self.package.push_front(next);
                    return false;
                }
            }
        }
    }

    /// PROTOCOL A.2: an Atomic or Sequence larger than any message the
    /// client accepts is reported 517 (the code DM has for an Atomic that
    /// does not fit in one message) and its commands 215, never sent.
    fn too_large(&mut self, sc: &ServerCommand) {
        fn walk(events: &mut VecDeque<ServerEvent>, sc: &ServerCommand, status: StatusCode) {
            events.push_back(ServerEvent::CommandStatus {
                job: sc.job,
                cmd: sc.kind.name().to_owned(),
                status,
            });
            if let CommandKind::Atomic(cs) | CommandKind::Sequence(cs) = &sc.kind {
                for c in cs {
                    walk(events, c, StatusCode::NOT_EXECUTED);
                }
            }
        }
        walk(&mut self.events, sc, StatusCode::ATOMIC_RESPONSE_TOO_LARGE);
    }

    /// Remembers what CmdID `id` (and its nested commands) stands for.
    fn record(&mut self, sc: &ServerCommand, id: u32) -> u32 {
        let mut next = id + 1;
        let mut children = Vec::new();
        if let CommandKind::Atomic(cs) | CommandKind::Sequence(cs) = &sc.kind {
            for c in cs {
                children.push(next);
                next = self.record(c, next);
            }
        }
        self.sent.insert(
            id,
            Sent {
                job: sc.job,
                cmd: sc.kind.name().to_owned(),
                status: None,
                children,
                chunk: false,
            },
        );
        next
    }
}

/// PROTOCOL A.3: the `./DevInfo/DevId` a package 1 Replace reports.
fn reported_dev_id(msg: &syncml::Message) -> Option<String> {
    msg.body.iter().find_map(|c| match c {
        Command::Replace(r) => r.items.iter().find_map(|i| {
            (item_uri(i) == Some("./DevInfo/DevId"))
                .then(|| String::from_utf8_lossy(&item_bytes(i, r.meta.as_ref())).into_owned())
        }),
        _ => None,
    })
}

/// The URI an item names: Source for client Replace/Results, else Target.
fn item_uri(item: &Item) -> Option<&str> {
    item.source
        .as_ref()
        .or(item.target.as_ref())
        .map(|l| l.loc_uri.as_str())
}

fn target_item(target: &str) -> Item {
    Item {
        target: Some(LocRef::uri(target)),
        ..Item::default()
    }
}

fn data_item(target: &str, data: Option<&[u8]>, format: Option<&str>, mime: Option<&str>) -> Item {
    let b64 = format.is_some_and(|f| f.eq_ignore_ascii_case("b64"));
    let data = data.map(|d| {
        if b64 {
            use base64::Engine;
            Data::Text(base64::engine::general_purpose::STANDARD.encode(d))
        } else {
            Data::from_bytes(d.to_vec())
        }
    });
    let meta = (format.is_some() || mime.is_some()).then(|| Meta {
        format: format.map(str::to_owned),
        type_: mime.map(str::to_owned),
        ..Meta::default()
    });
    Item {
        target: Some(LocRef::uri(target)),
        meta,
        data,
        ..Item::default()
    }
}

/// PROTOCOL A.3: a queued command as a SyncML command (CmdIDs set when sent).
fn to_command(sc: &ServerCommand) -> Command {
    let id = CmdId::new(1).expect("1 is not 0");
    let one = |item| ItemCmd::new(id, vec![item]);
    match &sc.kind {
        CommandKind::Get { target } => Command::Get(one(target_item(target))),
        CommandKind::Replace {
            target,
            data,
            format,
            mime,
        } => Command::Replace(one(data_item(
            target,
            Some(data),
            format.as_deref(),
            mime.as_deref(),
        ))),
        CommandKind::Add {
            target,
            data,
            format,
            mime,
        } => Command::Add(one(data_item(
            target,
            data.as_deref(),
            format.as_deref(),
            mime.as_deref(),
        ))),
        CommandKind::Delete { target } => Command::Delete(one(target_item(target))),
        CommandKind::Exec { target, data } => Command::Exec(Exec {
            cmd_id: id,
            no_resp: false,
            cred: None,
            meta: None,
            correlator: None,
            item: data_item(target, data.as_deref(), None, None),
        }),
        CommandKind::Copy { source, target } => Command::Copy(one(Item {
            source: Some(LocRef::uri(source)),
            ..target_item(target)
        })),
        CommandKind::Atomic(cs) | CommandKind::Sequence(cs) => {
            let c = Container {
                cmd_id: id,
                no_resp: false,
                meta: None,
                commands: cs.iter().map(to_command).collect(),
            };
            if matches!(sc.kind, CommandKind::Atomic(_)) {
                Command::Atomic(c)
            } else {
                Command::Sequence(c)
            }
        }
    }
}

/// PROTOCOL A.2: a Replace or Add that can travel as a large object.
fn large_out(sc: &ServerCommand) -> Option<LargeOut> {
    let (kind, target, data, format, mime) = match &sc.kind {
        CommandKind::Replace {
            target,
            data,
            format,
            mime,
        } => (LargeKind::Replace, target, data, format, mime),
        CommandKind::Add {
            target,
            data: Some(data),
            format,
            mime,
        } => (LargeKind::Add, target, data, format, mime),
        _ => return None,
    };
    if format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("b64"))
    {
        // Chunks of b64 text would each need decoding alone; not supported.
        return None;
    }
    Some(LargeOut {
        kind,
        loc: target.clone(),
        format: format.clone(),
        mime: mime.clone(),
        data: data.clone(),
        offset: 0,
        job: Some(sc.job),
    })
}

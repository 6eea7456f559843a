//! The per-delegation state machines of DMS-1 and DMS-2 — PROTOCOL B.3,
//! B.4, B.6, B.7, B.8.
//!
//! Sans-IO in the manner of quinn-proto: the server hands in what happened
//! (`handle_message`, `handle_answer`, `handle_timeout`, staff decisions,
//! device outcomes) with the current time, and gets back [`Output`]s to carry
//! out — messages to send, device work, deadlines, secrets to purge — in one
//! `Vec` per input, to be committed together with the new state (B.3
//! "Delivery": the state that awaits a reply is committed before the message
//! that provokes it is sent).
//!
//! States are named by what they wait for; each holds only its own data.
//! Either side may be the initiator: the initiator sends Notification and
//! AuthResponse and waits for the other side's staff (`AwaitingAccept`); the
//! other side sends AuthChallenge and asks its own staff (`AwaitingApproval`).
//!
//! ```text
//!            initiator                           other side
//!   Notification sent                   Notification received
//!          │                                      │ AuthChallenge sent
//!          ▼                                      ▼
//!   AwaitingAuthChallenge               AwaitingAuthResponse
//!          │ AuthChallenge ok                     │ AuthResponse ok
//!          │ AuthResponse sent                    ▼
//!          ▼                              AwaitingApproval ── reject ──▶ Aborted(rejected)
//!    AwaitingAccept                               │ approve / auto-accept
//!          │ Accept received                      │ Accept sent
//!          └──────────────┬───────────────────────┘
//!              DMS-1      │           DMS-2
//!          ┌──────────────┴───────────────┐
//!          ▼                              ▼
//!   PreparingClient                 AwaitingStart
//!          │ client prepared              │ Start received
//!          │ Start sent                   ▼
//!          ▼                         Bootstrapping
//!   AwaitingBootstrapped                  │ bootstrap done
//!          │ Bootstrapped received        │ Bootstrapped sent
//!          ▼                              ▼
//!     UpdatingAcls                  AwaitingComplete
//!          │ ACLs written                 │ Complete received
//!          │ Complete sent                │
//!          ▼                              │
//!      Completing                         │
//!          │ Complete answered 2xx        │
//!          ▼                              ▼
//!      Completed ──────────────────── Completed
//!     │ Revoke sent (staff,       │  Revoke received, Expires + 5 min ──▶ Revoked
//!     │   Expires) ──▶ Revoked     │  Relinquish sent (staff) ──▶ Relinquished
//!     │ Relinquish received ──▶ Relinquished
//!
//!   Before Completed (DMS-1: until Complete is answered 2xx): Abort
//!   received or sent, a final error answer (B.3), a bad signature (B.4),
//!   staff abort, device failure or a deadline ──▶ Aborted(reason).
//!   DMS-1's Aborted, Revoked and Relinquished carry the device revert:
//!   Nothing (the client was never touched), Reverting ──▶ Reverted.
//! ```

use handover_dm::ServerId;
use p256::ecdsa::{SigningKey, VerifyingKey};
use time::Duration;

use crate::sign;
use crate::wire::{
    AclEntry, BootstrapCredentials, DelegationId, DelegationMessage, DelegationStatus, DevInfo,
    Expected, Grant, Initiator, MsgType, NonceB64, Payload, Reason, ReasonCode, SignatureB64,
    Terms, UtcTime,
};

/// The deadlines of B.6 and B.7; each expiry is Abort(timeout), or
/// Abort(expired) once a temporary delegation's Expires has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    /// Automatic peer replies: AuthChallenge, AuthResponse, Complete (10 min).
    pub peer_reply: Duration,
    /// Own staff approval (72 h); the side waiting for the peer's staff
    /// waits this plus `peer_reply`.
    pub staff_approval: Duration,
    /// Device contact: preparing the client, the grant's Deadline, updating
    /// ACLs (24 h). DMS-2 waits for Start this plus `peer_reply`.
    pub device_contact: Duration,
    /// DMS-1 waits for Bootstrapped until the grant's Deadline plus this (10 min).
    pub bootstrapped_grace: Duration,
    /// DMS-2 ends a temporary delegation at Expires plus this (B.7: 5 min).
    pub expiry_grace: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            peer_reply: Duration::minutes(10),
            staff_approval: Duration::hours(72),
            device_contact: Duration::hours(24),
            bootstrapped_grace: Duration::minutes(10),
            expiry_grace: Duration::minutes(5),
        }
    }
}

/// The keys of step 2 (B.4): ours to sign, and the one pinned for the peer
/// (the key of the TLS client certificate that carried the message).
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub own: &'a SigningKey,
    pub peer: &'a VerifyingKey,
}

/// Who accepted the delegation on this side (B.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    /// A member of staff, by name.
    Staff(String),
    /// An auto-accept policy, by name; sent as `auto-accept:<policy name>`.
    AutoAccept(String),
}

impl Approver {
    /// The B.9 `Approver` text.
    pub fn text(&self) -> String {
        match self {
            Approver::Staff(name) => name.clone(),
            Approver::AutoAccept(policy) => format!("auto-accept:{policy}"),
        }
    }
}

/// Work on the device (or, for `ForgetClient`, on DMS-2's own record of it)
/// that the server carries out and reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceWork {
    /// DMS-1, B.5 step 1: Add DMS-2's DMAcc with one-time credentials in one
    /// Atomic; report with `client_prepared` or `client_preparation_failed`.
    PrepareClient,
    /// DMS-2, B.5 steps 3–4: bootstrap the client with the grant; report
    /// with `bootstrapped` or `bootstrap_failed`.
    Bootstrap(Box<Grant>),
    /// DMS-1, B.6 step 6: store and replace the ACLs; report with
    /// `acls_updated` or `acl_update_failed`.
    UpdateAcls,
    /// DMS-1, B.6/B.7: restore the stored ACLs and Delete DMS-2's DMAcc,
    /// retried until the device confirms; report with `revert_done`.
    Revert,
    /// DMS-1, B.6 `full` + `permanent`: Delete its own DMAcc.
    DeleteOwnAccount,
    /// DMS-2, B.6/B.7: forget the client's credentials (no device contact).
    ForgetClient,
}

/// Records for the audit log besides state changes (B.4: both signatures
/// are stored with the delegation and in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audit {
    /// We signed the terms.
    Signed { signature: SignatureB64 },
    /// The peer's signature, and whether it verified.
    PeerSignature {
        signature: SignatureB64,
        verified: bool,
    },
    /// Our side accepted (staff or auto-accept).
    Approved { approver: String },
    /// The other side accepted.
    PeerAccepted { approver: String },
}

/// How a delegation ended (B.8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum End {
    Aborted(Reason),
    Revoked(Reason),
    Relinquished(Reason),
}

/// What the server must do after an input, in this order, committed with
/// the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
// Outputs live for one call and are matched on everywhere; a Box would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Queue a message to the peer; the server fills MsgID and Sent and keeps
    /// the bytes for resending (B.3).
    Send(Payload),
    /// Start work on the device.
    DeviceWork(DeviceWork),
    /// Call `handle_timeout` at this time (replaces any earlier one).
    SetDeadline(UtcTime),
    /// No deadline any more.
    ClearDeadline,
    /// Erase the one-time secrets and nonces of the grant (B.5 step 3, B.6).
    PurgeSecrets,
    /// The state changed (names as in the module diagram; `from` is empty
    /// for a new delegation).
    StateChanged {
        from: &'static str,
        to: &'static str,
    },
    /// DMS-1: the device revert finished.
    Reverted,
    /// Something to audit.
    Audit(Audit),
    /// The delegation ended.
    Ended(End),
}

/// The answer to a received message and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The `DelegationStatus` to answer with; its code is the HTTP status (B.3).
    pub answer: DelegationStatus,
    pub outputs: Vec<Output>,
}

/// Why a staff decision or device outcome was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The input does not apply in the current state (e.g. a device outcome
    /// reported after the delegation was aborted); nothing changed.
    #[error("not valid in state {state}")]
    NotNow { state: &'static str },
    /// B.7: a `full` + `permanent` delegation can be neither revoked nor relinquished.
    #[error("a full and permanent delegation can be neither revoked nor relinquished")]
    Handover,
    /// The terms do not fit this side (B.2, B.4); answered 400 to a Notification.
    #[error("inconsistent terms: {0}")]
    Terms(&'static str),
}

/// The device revert DMS-1 owes after an abort, revoke or relinquish (B.6, B.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Revert {
    /// The client was never touched.
    Nothing,
    Reverting,
    Reverted,
}

/// What both sides keep about a delegation besides their state (B.2, B.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shared {
    pub id: DelegationId,
    pub terms: Terms,
    #[serde(with = "crate::serde_str")]
    pub me: ServerId,
    #[serde(with = "crate::serde_str")]
    pub peer: ServerId,
    pub deadlines: Deadlines,
    pub own_nonce: NonceB64,
    pub peer_nonce: Option<NonceB64>,
    pub own_signature: Option<SignatureB64>,
    pub peer_signature: Option<SignatureB64>,
    /// Who accepted: our staff or policy, or the peer's (B.4).
    pub approver: Option<String>,
    /// When the delegation completed (B.7: "since when").
    pub completed_at: Option<UtcTime>,
}

impl Shared {
    fn new(
        id: DelegationId,
        terms: Terms,
        me: ServerId,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
        delegating: bool,
    ) -> Result<Self, Refused> {
        let (mine, peer) = if delegating {
            (&terms.delegating, &terms.delegated)
        } else {
            (&terms.delegated, &terms.delegating)
        };
        if *mine != me {
            return Err(Refused::Terms("this server is not the named party"));
        }
        if terms.delegating == terms.delegated {
            return Err(Refused::Terms("DelegatingServer equals DelegatedServer"));
        }
        if terms.term.expires().is_some_and(|e| e <= now) {
            return Err(Refused::Terms("Expires is not in the future"));
        }
        Ok(Self {
            peer: peer.clone(),
            id,
            terms,
            me,
            deadlines,
            own_nonce,
            peer_nonce: None,
            own_signature: None,
            peer_signature: None,
            approver: None,
            completed_at: None,
        })
    }

    fn canonical(&self) -> String {
        sign::canonical_terms(&self.id, &self.terms)
    }

    /// Our signature over (terms, OwnNonce = ours, PeerNonce = theirs).
    fn sign(&mut self, key: &SigningKey, out: &mut Vec<Output>) -> SignatureB64 {
        let peer_nonce = self
            .peer_nonce
            .as_ref()
            .expect("peer nonce known when signing");
        let input = sign::signature_input(&self.canonical(), &self.me, &self.own_nonce, peer_nonce);
        let signature = sign::sign(key, &input);
        self.own_signature = Some(signature.clone());
        out.push(Output::Audit(Audit::Signed {
            signature: signature.clone(),
        }));
        signature
    }

    /// Checks the peer's signature over (terms, OwnNonce = theirs, PeerNonce = ours).
    fn verify(&mut self, key: &VerifyingKey, sig: &SignatureB64, out: &mut Vec<Output>) -> bool {
        let peer_nonce = self
            .peer_nonce
            .as_ref()
            .expect("peer nonce known when verifying");
        let input =
            sign::signature_input(&self.canonical(), &self.peer, peer_nonce, &self.own_nonce);
        let verified = sign::verify(key, &input, sig);
        self.peer_signature = Some(sig.clone());
        out.push(Output::Audit(Audit::PeerSignature {
            signature: sig.clone(),
            verified,
        }));
        verified
    }

    fn expires(&self) -> Option<UtcTime> {
        self.terms.term.expires()
    }

    /// A deadline of a state before completion, cut short by Expires (B.6).
    fn before_expiry(&self, at: UtcTime) -> UtcTime {
        self.expires().map_or(at, |e| e.min(at))
    }

    fn timeout_reason(&self, now: UtcTime) -> Reason {
        if self.expires().is_some_and(|e| now >= e) {
            Reason::new(
                ReasonCode::Expired,
                "the delegation expired before it completed",
            )
        } else {
            Reason::new(ReasonCode::Timeout, "deadline passed")
        }
    }

    /// The prelude of every received message (B.9 "Checks" after the
    /// stored-answer lookup): 403, 404, 410, then 409 unless `msg_type` is
    /// `expected` or an Abort that `abort_ok` allows.
    fn check(
        &self,
        msg: &DelegationMessage,
        ended: bool,
        expected: Expected,
        abort_ok: bool,
    ) -> Result<(), DelegationStatus> {
        if msg.sender != self.peer || msg.recipient != self.me {
            return Err(status(
                msg,
                403,
                "not a message between the parties of this delegation",
            ));
        }
        if msg.delegation_id != self.id {
            return Err(status(msg, 404, "no such delegation"));
        }
        if ended {
            return Err(status(msg, 410, "delegation already ended"));
        }
        let t = msg.msg_type();
        let ok = match t {
            MsgType::Abort => abort_ok,
            _ => expected == Expected::Msg(t),
        };
        if ok {
            Ok(())
        } else {
            let mut s = status(msg, 409, &format!("{t} is not valid now"));
            s.expected = Some(expected);
            Err(s)
        }
    }
}

fn status(msg: &DelegationMessage, code: u16, text: &str) -> DelegationStatus {
    DelegationStatus {
        msg_ref: Some(msg.msg_id.clone()),
        code,
        text: text.to_owned(),
        expected: None,
    }
}

fn accepted(msg: &DelegationMessage) -> DelegationStatus {
    let t = msg.msg_type();
    status(msg, t.success_code(), "accepted")
}

/// The final answer codes of B.3 "Delivery" and what they do to the sender.
enum Final {
    /// 2xx, or a 410 to Abort, Revoke or Relinquish: delivered.
    Delivered,
    /// Abort with this reason; send Abort when `send`.
    Abort { reason: Reason, send: bool },
    /// 5xx or anything else: the transport resends; nothing changes.
    Retry,
}

fn classify(sent: MsgType, code: u16) -> Final {
    let abort = |rc: ReasonCode, send: bool| Final::Abort {
        reason: Reason::new(rc, format!("the peer answered {sent} with {code}")),
        send,
    };
    let ending = matches!(sent, MsgType::Abort | MsgType::Revoke | MsgType::Relinquish);
    match code {
        200..=299 => Final::Delivered,
        410 if ending => Final::Delivered,
        401 => abort(ReasonCode::AuthFailed, false),
        403 if sent == MsgType::Notification => abort(ReasonCode::Policy, false),
        400 | 403 | 409 | 415 => abort(ReasonCode::PeerError, sent != MsgType::Notification),
        404 | 410 => abort(ReasonCode::PeerError, false),
        _ => Final::Retry,
    }
}

fn transition(
    out: &mut Vec<Output>,
    from: &'static str,
    to: &'static str,
    before: Option<UtcTime>,
    after: Option<UtcTime>,
) {
    if from != to {
        out.push(Output::StateChanged { from, to });
    }
    match (before, after) {
        (b, Some(a)) if b != Some(a) => out.push(Output::SetDeadline(a)),
        (Some(_), None) => out.push(Output::ClearDeadline),
        _ => {}
    }
}

// ------------------------------------------------------------------ DMS-1

/// The states of DMS-1, the delegating server (B.8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dms1State {
    AwaitingAuthChallenge {
        deadline: UtcTime,
    },
    AwaitingAuthResponse {
        deadline: UtcTime,
    },
    AwaitingApproval {
        deadline: UtcTime,
    },
    AwaitingAccept {
        deadline: UtcTime,
    },
    PreparingClient {
        deadline: UtcTime,
    },
    AwaitingBootstrapped {
        deadline: UtcTime,
    },
    UpdatingAcls {
        deadline: UtcTime,
    },
    /// Complete sent, not yet answered 2xx; Abort is still honoured (B.9).
    Completing {
        deadline: UtcTime,
        acls: Vec<AclEntry>,
    },
    Completed {
        acls: Vec<AclEntry>,
    },
    Aborted {
        reason: Reason,
        revert: Revert,
    },
    Revoked {
        reason: Reason,
        revert: Revert,
    },
    Relinquished {
        reason: Reason,
        revert: Revert,
    },
}

impl Dms1State {
    /// The state's name, as in the module diagram.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AwaitingAuthChallenge { .. } => "AwaitingAuthChallenge",
            Self::AwaitingAuthResponse { .. } => "AwaitingAuthResponse",
            Self::AwaitingApproval { .. } => "AwaitingApproval",
            Self::AwaitingAccept { .. } => "AwaitingAccept",
            Self::PreparingClient { .. } => "PreparingClient",
            Self::AwaitingBootstrapped { .. } => "AwaitingBootstrapped",
            Self::UpdatingAcls { .. } => "UpdatingAcls",
            Self::Completing { .. } => "Completing",
            Self::Completed { .. } => "Completed",
            Self::Aborted { .. } => "Aborted",
            Self::Revoked { .. } => "Revoked",
            Self::Relinquished { .. } => "Relinquished",
        }
    }

    fn step_deadline(&self) -> Option<UtcTime> {
        match self {
            Self::AwaitingAuthChallenge { deadline }
            | Self::AwaitingAuthResponse { deadline }
            | Self::AwaitingApproval { deadline }
            | Self::AwaitingAccept { deadline }
            | Self::PreparingClient { deadline }
            | Self::AwaitingBootstrapped { deadline }
            | Self::UpdatingAcls { deadline }
            | Self::Completing { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    fn ended(&self) -> bool {
        matches!(
            self,
            Self::Aborted { .. } | Self::Revoked { .. } | Self::Relinquished { .. }
        )
    }

    /// Whether the client may already carry DMS-2's account or ACLs (B.6).
    fn touched_client(&self) -> bool {
        matches!(
            self,
            Self::PreparingClient { .. }
                | Self::AwaitingBootstrapped { .. }
                | Self::UpdatingAcls { .. }
                | Self::Completing { .. }
                | Self::Completed { .. }
        )
    }
}

/// One delegation as DMS-1, the delegating server, sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dms1 {
    pub shared: Shared,
    pub state: Dms1State,
}

impl Dms1 {
    /// DMS-1 proposes a delegation (B.3 step 1): sends Notification with
    /// `own_nonce` (N1, fresh random bytes from the caller).
    pub fn initiate(
        id: DelegationId,
        terms: Terms,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
    ) -> Result<(Self, Vec<Output>), Refused> {
        if terms.initiator != Initiator::Delegating {
            return Err(Refused::Terms("Initiator is not delegating"));
        }
        let me = terms.delegating.clone();
        let shared = Shared::new(id, terms, me, own_nonce, deadlines, now, true)?;
        let deadline = shared.before_expiry(now + deadlines.peer_reply);
        let mut out = vec![Output::Send(Payload::Notification {
            terms: shared.terms.clone(),
            nonce: shared.own_nonce.clone(),
        })];
        let m = Self {
            state: Dms1State::AwaitingAuthChallenge { deadline },
            shared,
        };
        transition(&mut out, "", m.state.name(), None, m.deadline());
        Ok((m, out))
    }

    /// DMS-1 receives DMS-2's Notification (B.3 step 1) after the server's
    /// policy checks (B.4): answers 202 and sends AuthChallenge with
    /// `own_nonce` (N2). `Err` is the 400 answer; no delegation is created.
    pub fn accept_notification(
        msg: &DelegationMessage,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
        keys: Keys<'_>,
    ) -> Result<(Self, Step), DelegationStatus> {
        let (shared, mut out) = answer_notification(msg, own_nonce, deadlines, now, keys, true)?;
        let deadline = shared.before_expiry(now + deadlines.peer_reply);
        let m = Self {
            state: Dms1State::AwaitingAuthResponse { deadline },
            shared,
        };
        transition(&mut out, "", m.state.name(), None, m.deadline());
        let answer = accepted(msg);
        Ok((
            m,
            Step {
                answer,
                outputs: out,
            },
        ))
    }

    /// When `handle_timeout` is due.
    pub fn deadline(&self) -> Option<UtcTime> {
        match &self.state {
            Dms1State::Completed { .. } => self.shared.expires(),
            s => s.step_deadline(),
        }
    }

    /// The `Expected` of a 409 answer (B.9 "Order and Expected").
    pub fn expected(&self) -> Expected {
        match self.state {
            Dms1State::AwaitingAuthChallenge { .. } => Expected::Msg(MsgType::AuthChallenge),
            Dms1State::AwaitingAuthResponse { .. } => Expected::Msg(MsgType::AuthResponse),
            Dms1State::AwaitingAccept { .. } => Expected::Msg(MsgType::Accept),
            Dms1State::AwaitingBootstrapped { .. } => Expected::Msg(MsgType::Bootstrapped),
            Dms1State::Completed { .. } => Expected::Msg(MsgType::Relinquish),
            _ => Expected::Nothing,
        }
    }

    fn go(&mut self, next: Dms1State, out: &mut Vec<Output>) {
        let (from, before) = (self.state.name(), self.deadline());
        self.state = next;
        transition(out, from, self.state.name(), before, self.deadline());
        match &self.state {
            Dms1State::Aborted { reason, .. } => {
                out.push(Output::Ended(End::Aborted(reason.clone())))
            }
            Dms1State::Revoked { reason, .. } => {
                out.push(Output::Ended(End::Revoked(reason.clone())))
            }
            Dms1State::Relinquished { reason, .. } => {
                out.push(Output::Ended(End::Relinquished(reason.clone())))
            }
            _ => {}
        }
    }

    /// The revert owed when leaving a state that may have touched the client.
    fn start_revert(&self, out: &mut Vec<Output>) -> Revert {
        if self.state.touched_client() {
            out.push(Output::DeviceWork(DeviceWork::Revert));
            Revert::Reverting
        } else {
            Revert::Nothing
        }
    }

    fn abort(&mut self, reason: Reason, send: bool, out: &mut Vec<Output>) {
        if send {
            out.push(Output::Send(Payload::Abort(reason.clone())));
        }
        out.push(Output::PurgeSecrets);
        let revert = self.start_revert(out);
        self.go(Dms1State::Aborted { reason, revert }, out);
    }

    fn after_accept(&mut self, now: UtcTime, out: &mut Vec<Output>) {
        out.push(Output::DeviceWork(DeviceWork::PrepareClient));
        let deadline = self
            .shared
            .before_expiry(now + self.shared.deadlines.device_contact);
        self.go(Dms1State::PreparingClient { deadline }, out);
    }

    fn pending(&self) -> bool {
        !self.state.ended() && !matches!(self.state, Dms1State::Completed { .. })
    }

    /// A message from DMS-2 that passed [`DelegationMessage::parse`] and the
    /// server's 403 checks and stored-answer lookup (B.9 "Checks").
    pub fn handle_message(
        &mut self,
        now: UtcTime,
        msg: &DelegationMessage,
        keys: Keys<'_>,
    ) -> Step {
        let mut out = Vec::new();
        if let (Dms1State::Completing { .. }, Payload::Relinquish(_)) = (&self.state, &msg.payload)
        {
            // DMS-2 relinquishes only once Complete is accepted: the answer
            // to Complete is still on its way (B.3: replies can overtake answers).
            self.complete(now, &mut out);
        }
        if let Err(answer) =
            self.shared
                .check(msg, self.state.ended(), self.expected(), self.pending())
        {
            return Step {
                answer,
                outputs: out,
            };
        }
        let mut answer = accepted(msg);
        match &msg.payload {
            Payload::Abort(reason) => self.abort(reason.clone(), false, &mut out),
            Payload::AuthChallenge { nonce, signature } => {
                self.shared.peer_nonce = Some(nonce.clone());
                if self.shared.verify(keys.peer, signature, &mut out) {
                    let signature = self.shared.sign(keys.own, &mut out);
                    out.push(Output::Send(Payload::AuthResponse { signature }));
                    let d = &self.shared.deadlines;
                    let at = now + d.staff_approval + d.peer_reply;
                    let deadline = self.shared.before_expiry(at);
                    self.go(Dms1State::AwaitingAccept { deadline }, &mut out);
                } else {
                    answer = status(msg, 401, "signature did not verify");
                    self.abort(auth_failed(), true, &mut out);
                }
            }
            Payload::AuthResponse { signature } => {
                if self.shared.verify(keys.peer, signature, &mut out) {
                    let at = now + self.shared.deadlines.staff_approval;
                    let deadline = self.shared.before_expiry(at);
                    self.go(Dms1State::AwaitingApproval { deadline }, &mut out);
                } else {
                    answer = status(msg, 401, "signature did not verify");
                    self.abort(auth_failed(), true, &mut out);
                }
            }
            Payload::Accept { approver } => {
                self.shared.approver = Some(approver.clone());
                out.push(Output::Audit(Audit::PeerAccepted {
                    approver: approver.clone(),
                }));
                self.after_accept(now, &mut out);
            }
            Payload::Bootstrapped { dev_info } => {
                out.push(Output::PurgeSecrets);
                if dev_info.dev_id != self.shared.terms.device.dev_id {
                    let r =
                        Reason::new(ReasonCode::DeviceError, "Bootstrapped names another DevId");
                    self.abort(r, true, &mut out);
                } else {
                    out.push(Output::DeviceWork(DeviceWork::UpdateAcls));
                    let at = now + self.shared.deadlines.device_contact;
                    let deadline = self.shared.before_expiry(at);
                    self.go(Dms1State::UpdatingAcls { deadline }, &mut out);
                }
            }
            Payload::Relinquish(reason) => {
                if self.shared.terms.is_handover() {
                    answer = status(
                        msg,
                        403,
                        "a full and permanent delegation cannot be relinquished",
                    );
                } else {
                    let revert = self.start_revert(&mut out);
                    let reason = reason.clone();
                    self.go(Dms1State::Relinquished { reason, revert }, &mut out);
                }
            }
            // `check` let through only the expected type or Abort.
            _ => unreachable!("checked against expected()"),
        }
        Step {
            answer,
            outputs: out,
        }
    }

    /// Complete was accepted: `Completing` → `Completed`; for `full` +
    /// `permanent` DMS-1 then Deletes its own DMAcc (B.6).
    fn complete(&mut self, now: UtcTime, out: &mut Vec<Output>) {
        let Dms1State::Completing { acls, .. } = &self.state else {
            return;
        };
        let acls = acls.clone();
        self.shared.completed_at = Some(now);
        if self.shared.terms.is_handover() {
            out.push(Output::DeviceWork(DeviceWork::DeleteOwnAccount));
        }
        self.go(Dms1State::Completed { acls }, out);
    }

    /// The answer code to a message we sent (B.3 "Delivery"). 5xx and other
    /// codes change nothing: the transport resends.
    pub fn handle_answer(&mut self, now: UtcTime, sent: MsgType, code: u16) -> Vec<Output> {
        let mut out = Vec::new();
        match classify(sent, code) {
            Final::Delivered if sent == MsgType::Complete => self.complete(now, &mut out),
            Final::Delivered => {}
            Final::Abort { reason, send } if self.pending() => self.abort(reason, send, &mut out),
            Final::Abort { .. } | Final::Retry => {}
        }
        out
    }

    /// A deadline passed (B.6, B.7). Early calls change nothing.
    pub fn handle_timeout(&mut self, now: UtcTime) -> Vec<Output> {
        let mut out = Vec::new();
        if self.deadline().is_none_or(|d| now < d) {
            return out;
        }
        if let Dms1State::Completed { .. } = self.state {
            // B.7: at Expires DMS-1 reverts and sends Revoke(expired).
            let reason = Reason::new(ReasonCode::Expired, "the delegation expired");
            out.push(Output::Send(Payload::Revoke(reason.clone())));
            let revert = self.start_revert(&mut out);
            self.go(Dms1State::Revoked { reason, revert }, &mut out);
        } else {
            let reason = self.shared.timeout_reason(now);
            self.abort(reason, true, &mut out);
        }
        out
    }

    /// Own staff or an auto-accept policy accepts (B.4): sends Accept and
    /// starts preparing the client (B.5 step 1).
    pub fn approve(&mut self, now: UtcTime, approver: Approver) -> Result<Vec<Output>, Refused> {
        let Dms1State::AwaitingApproval { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = approve_outputs(&mut self.shared, &approver);
        self.after_accept(now, &mut out);
        Ok(out)
    }

    /// Own staff rejects: Abort(rejected).
    pub fn reject(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        let Dms1State::AwaitingApproval { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = Vec::new();
        self.abort(Reason::new(ReasonCode::Rejected, text), true, &mut out);
        Ok(out)
    }

    /// Own staff aborts before completion: Abort(cancelled) (B.6). Not
    /// while `Completing`: Complete is on its way and DMS-2 may already have
    /// accepted it; once it is answered, staff revoke instead.
    pub fn abort_by_staff(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        if !self.pending() || matches!(self.state, Dms1State::Completing { .. }) {
            return Err(self.not_now());
        }
        let mut out = Vec::new();
        self.abort(Reason::new(ReasonCode::Cancelled, text), true, &mut out);
        Ok(out)
    }

    /// Own staff revokes a completed delegation: revert and Revoke(cancelled) (B.7).
    pub fn revoke(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        let Dms1State::Completed { .. } = self.state else {
            return Err(self.not_now());
        };
        if self.shared.terms.is_handover() {
            return Err(Refused::Handover);
        }
        let mut out = Vec::new();
        let reason = Reason::new(ReasonCode::Cancelled, text);
        out.push(Output::Send(Payload::Revoke(reason.clone())));
        let revert = self.start_revert(&mut out);
        self.go(Dms1State::Revoked { reason, revert }, &mut out);
        Ok(out)
    }

    /// B.5 step 1 done: the client carries DMS-2's account with these
    /// one-time credentials. Sends Start with the grant (Deadline = now +
    /// device contact).
    pub fn client_prepared(
        &mut self,
        now: UtcTime,
        credentials: BootstrapCredentials,
    ) -> Result<Vec<Output>, Refused> {
        let Dms1State::PreparingClient { .. } = self.state else {
            return Err(self.not_now());
        };
        let d = self.shared.deadlines;
        let grant = Grant {
            credentials,
            deadline: self.shared.before_expiry(now + d.device_contact),
        };
        let deadline = self
            .shared
            .before_expiry(grant.deadline + d.bootstrapped_grace);
        let mut out = vec![Output::Send(Payload::Start { grant })];
        self.go(Dms1State::AwaitingBootstrapped { deadline }, &mut out);
        Ok(out)
    }

    /// B.5 step 1 failed with this DM status: Abort(device-error), revert.
    pub fn client_preparation_failed(&mut self, dm_status: u16) -> Result<Vec<Output>, Refused> {
        let Dms1State::PreparingClient { .. } = self.state else {
            return Err(self.not_now());
        };
        Ok(self.device_failed(format!(
            "preparing the client failed with status {dm_status}"
        )))
    }

    /// B.6 step 6 done: sends Complete with the nodes written, in Atomic order.
    pub fn acls_updated(
        &mut self,
        now: UtcTime,
        acls: Vec<AclEntry>,
    ) -> Result<Vec<Output>, Refused> {
        let Dms1State::UpdatingAcls { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = vec![Output::Send(Payload::Complete { acls: acls.clone() })];
        let deadline = self
            .shared
            .before_expiry(now + self.shared.deadlines.peer_reply);
        self.go(Dms1State::Completing { deadline, acls }, &mut out);
        Ok(out)
    }

    /// B.6 step 6 failed (or found nothing to change for `full`):
    /// Abort(device-error), revert.
    pub fn acl_update_failed(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        let Dms1State::UpdatingAcls { .. } = self.state else {
            return Err(self.not_now());
        };
        Ok(self.device_failed(format!("updating the ACLs failed: {text}")))
    }

    fn device_failed(&mut self, text: String) -> Vec<Output> {
        let mut out = Vec::new();
        self.abort(Reason::new(ReasonCode::DeviceError, text), true, &mut out);
        out
    }

    /// The device confirmed the revert (B.6): `Reverting` → `Reverted`.
    pub fn revert_done(&mut self) -> Result<Vec<Output>, Refused> {
        match &mut self.state {
            Dms1State::Aborted { revert, .. }
            | Dms1State::Revoked { revert, .. }
            | Dms1State::Relinquished { revert, .. }
                if *revert == Revert::Reverting =>
            {
                *revert = Revert::Reverted;
                Ok(vec![Output::Reverted])
            }
            _ => Err(self.not_now()),
        }
    }

    fn not_now(&self) -> Refused {
        Refused::NotNow {
            state: self.state.name(),
        }
    }
}

fn auth_failed() -> Reason {
    Reason::new(ReasonCode::AuthFailed, "signature did not verify")
}

fn approve_outputs(shared: &mut Shared, approver: &Approver) -> Vec<Output> {
    let approver = approver.text();
    shared.approver = Some(approver.clone());
    vec![
        Output::Audit(Audit::Approved {
            approver: approver.clone(),
        }),
        Output::Send(Payload::Accept { approver }),
    ]
}

/// The other side's answer to a Notification (B.3 step 1, B.4): checks the
/// terms name this server as the recipient's role, signs and sends
/// AuthChallenge.
fn answer_notification(
    msg: &DelegationMessage,
    own_nonce: NonceB64,
    deadlines: Deadlines,
    now: UtcTime,
    keys: Keys<'_>,
    delegating: bool,
) -> Result<(Shared, Vec<Output>), DelegationStatus> {
    let Payload::Notification { terms, nonce } = &msg.payload else {
        return Err(status(msg, 400, "not a Notification"));
    };
    let initiator = if delegating {
        Initiator::Delegated
    } else {
        Initiator::Delegating
    };
    if terms.initiator != initiator {
        return Err(status(msg, 400, "Initiator names this server"));
    }
    let mut shared = Shared::new(
        msg.delegation_id.clone(),
        terms.clone(),
        msg.recipient.clone(),
        own_nonce,
        deadlines,
        now,
        delegating,
    )
    .map_err(|e| status(msg, 400, &e.to_string()))?;
    shared.peer_nonce = Some(nonce.clone());
    let mut out = Vec::new();
    let signature = shared.sign(keys.own, &mut out);
    out.push(Output::Send(Payload::AuthChallenge {
        nonce: shared.own_nonce.clone(),
        signature,
    }));
    Ok((shared, out))
}

// ------------------------------------------------------------------ DMS-2

/// The states of DMS-2, the delegated server (B.8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dms2State {
    AwaitingAuthChallenge {
        deadline: UtcTime,
    },
    AwaitingAuthResponse {
        deadline: UtcTime,
    },
    AwaitingApproval {
        deadline: UtcTime,
    },
    AwaitingAccept {
        deadline: UtcTime,
    },
    AwaitingStart {
        deadline: UtcTime,
    },
    /// The grant's one-time credentials live here until Bootstrapped is sent.
    Bootstrapping {
        grant: Grant,
    },
    AwaitingComplete {
        deadline: UtcTime,
    },
    Completed {
        acls: Vec<AclEntry>,
    },
    Aborted {
        reason: Reason,
    },
    Revoked {
        reason: Reason,
    },
    Relinquished {
        reason: Reason,
    },
}

impl Dms2State {
    /// The state's name, as in the module diagram.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AwaitingAuthChallenge { .. } => "AwaitingAuthChallenge",
            Self::AwaitingAuthResponse { .. } => "AwaitingAuthResponse",
            Self::AwaitingApproval { .. } => "AwaitingApproval",
            Self::AwaitingAccept { .. } => "AwaitingAccept",
            Self::AwaitingStart { .. } => "AwaitingStart",
            Self::Bootstrapping { .. } => "Bootstrapping",
            Self::AwaitingComplete { .. } => "AwaitingComplete",
            Self::Completed { .. } => "Completed",
            Self::Aborted { .. } => "Aborted",
            Self::Revoked { .. } => "Revoked",
            Self::Relinquished { .. } => "Relinquished",
        }
    }

    fn ended(&self) -> bool {
        matches!(
            self,
            Self::Aborted { .. } | Self::Revoked { .. } | Self::Relinquished { .. }
        )
    }
}

/// One delegation as DMS-2, the delegated server, sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dms2 {
    pub shared: Shared,
    pub state: Dms2State,
}

impl Dms2 {
    /// DMS-2 asks for a delegation (B.3 step 1): sends Notification with
    /// `own_nonce` (N1).
    pub fn initiate(
        id: DelegationId,
        terms: Terms,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
    ) -> Result<(Self, Vec<Output>), Refused> {
        if terms.initiator != Initiator::Delegated {
            return Err(Refused::Terms("Initiator is not delegated"));
        }
        let me = terms.delegated.clone();
        let shared = Shared::new(id, terms, me, own_nonce, deadlines, now, false)?;
        let deadline = shared.before_expiry(now + deadlines.peer_reply);
        let mut out = vec![Output::Send(Payload::Notification {
            terms: shared.terms.clone(),
            nonce: shared.own_nonce.clone(),
        })];
        let m = Self {
            state: Dms2State::AwaitingAuthChallenge { deadline },
            shared,
        };
        transition(&mut out, "", m.state.name(), None, m.deadline());
        Ok((m, out))
    }

    /// DMS-2 receives DMS-1's Notification after the server's policy checks
    /// (B.4): answers 202 and sends AuthChallenge with `own_nonce` (N2).
    /// `Err` is the 400 answer; no delegation is created.
    pub fn accept_notification(
        msg: &DelegationMessage,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
        keys: Keys<'_>,
    ) -> Result<(Self, Step), DelegationStatus> {
        let (shared, mut out) = answer_notification(msg, own_nonce, deadlines, now, keys, false)?;
        let deadline = shared.before_expiry(now + deadlines.peer_reply);
        let m = Self {
            state: Dms2State::AwaitingAuthResponse { deadline },
            shared,
        };
        transition(&mut out, "", m.state.name(), None, m.deadline());
        let answer = accepted(msg);
        Ok((
            m,
            Step {
                answer,
                outputs: out,
            },
        ))
    }

    /// When `handle_timeout` is due.
    pub fn deadline(&self) -> Option<UtcTime> {
        let s = &self.shared;
        match &self.state {
            Dms2State::AwaitingAuthChallenge { deadline }
            | Dms2State::AwaitingAuthResponse { deadline }
            | Dms2State::AwaitingApproval { deadline }
            | Dms2State::AwaitingAccept { deadline }
            | Dms2State::AwaitingStart { deadline }
            | Dms2State::AwaitingComplete { deadline } => Some(*deadline),
            Dms2State::Bootstrapping { grant } => Some(s.before_expiry(grant.deadline)),
            Dms2State::Completed { .. } => s.expires().map(|e| e + s.deadlines.expiry_grace),
            _ => None,
        }
    }

    /// The `Expected` of a 409 answer (B.9 "Order and Expected").
    pub fn expected(&self) -> Expected {
        match self.state {
            Dms2State::AwaitingAuthChallenge { .. } => Expected::Msg(MsgType::AuthChallenge),
            Dms2State::AwaitingAuthResponse { .. } => Expected::Msg(MsgType::AuthResponse),
            Dms2State::AwaitingAccept { .. } => Expected::Msg(MsgType::Accept),
            Dms2State::AwaitingStart { .. } => Expected::Msg(MsgType::Start),
            Dms2State::AwaitingComplete { .. } => Expected::Msg(MsgType::Complete),
            Dms2State::Completed { .. } => Expected::Msg(MsgType::Revoke),
            _ => Expected::Nothing,
        }
    }

    fn go(&mut self, next: Dms2State, out: &mut Vec<Output>) {
        let (from, before) = (self.state.name(), self.deadline());
        self.state = next;
        transition(out, from, self.state.name(), before, self.deadline());
        match &self.state {
            Dms2State::Aborted { reason } => out.push(Output::Ended(End::Aborted(reason.clone()))),
            Dms2State::Revoked { reason } => out.push(Output::Ended(End::Revoked(reason.clone()))),
            Dms2State::Relinquished { reason } => {
                out.push(Output::Ended(End::Relinquished(reason.clone())))
            }
            _ => {}
        }
    }

    fn pending(&self) -> bool {
        !self.state.ended() && !matches!(self.state, Dms2State::Completed { .. })
    }

    fn abort(&mut self, reason: Reason, send: bool, out: &mut Vec<Output>) {
        if send {
            out.push(Output::Send(Payload::Abort(reason.clone())));
        }
        out.push(Output::PurgeSecrets);
        if matches!(
            self.state,
            Dms2State::Bootstrapping { .. } | Dms2State::AwaitingComplete { .. }
        ) {
            out.push(Output::DeviceWork(DeviceWork::ForgetClient));
        }
        self.go(Dms2State::Aborted { reason }, out);
    }

    fn after_accept(&mut self, now: UtcTime, out: &mut Vec<Output>) {
        let d = self.shared.deadlines;
        let deadline = self
            .shared
            .before_expiry(now + d.device_contact + d.peer_reply);
        self.go(Dms2State::AwaitingStart { deadline }, out);
    }

    /// A message from DMS-1 that passed [`DelegationMessage::parse`] and the
    /// server's 403 checks and stored-answer lookup (B.9 "Checks").
    pub fn handle_message(
        &mut self,
        now: UtcTime,
        msg: &DelegationMessage,
        keys: Keys<'_>,
    ) -> Step {
        let mut out = Vec::new();
        if let Err(answer) =
            self.shared
                .check(msg, self.state.ended(), self.expected(), self.pending())
        {
            return Step {
                answer,
                outputs: out,
            };
        }
        let mut answer = accepted(msg);
        match &msg.payload {
            Payload::Abort(reason) => self.abort(reason.clone(), false, &mut out),
            Payload::AuthChallenge { nonce, signature } => {
                self.shared.peer_nonce = Some(nonce.clone());
                if self.shared.verify(keys.peer, signature, &mut out) {
                    let signature = self.shared.sign(keys.own, &mut out);
                    out.push(Output::Send(Payload::AuthResponse { signature }));
                    let d = &self.shared.deadlines;
                    let deadline = self
                        .shared
                        .before_expiry(now + d.staff_approval + d.peer_reply);
                    self.go(Dms2State::AwaitingAccept { deadline }, &mut out);
                } else {
                    answer = status(msg, 401, "signature did not verify");
                    self.abort(auth_failed(), true, &mut out);
                }
            }
            Payload::AuthResponse { signature } => {
                if self.shared.verify(keys.peer, signature, &mut out) {
                    let at = now + self.shared.deadlines.staff_approval;
                    let deadline = self.shared.before_expiry(at);
                    self.go(Dms2State::AwaitingApproval { deadline }, &mut out);
                } else {
                    answer = status(msg, 401, "signature did not verify");
                    self.abort(auth_failed(), true, &mut out);
                }
            }
            Payload::Accept { approver } => {
                self.shared.approver = Some(approver.clone());
                out.push(Output::Audit(Audit::PeerAccepted {
                    approver: approver.clone(),
                }));
                self.after_accept(now, &mut out);
            }
            Payload::Start { grant } => {
                out.push(Output::DeviceWork(DeviceWork::Bootstrap(Box::new(
                    grant.clone(),
                ))));
                let grant = grant.clone();
                self.go(Dms2State::Bootstrapping { grant }, &mut out);
            }
            Payload::Complete { acls } => {
                self.shared.completed_at = Some(now);
                let acls = acls.clone();
                self.go(Dms2State::Completed { acls }, &mut out);
            }
            Payload::Revoke(reason) => {
                if self.shared.terms.is_handover() {
                    answer = status(
                        msg,
                        403,
                        "a full and permanent delegation cannot be revoked",
                    );
                } else {
                    out.push(Output::DeviceWork(DeviceWork::ForgetClient));
                    let reason = reason.clone();
                    self.go(Dms2State::Revoked { reason }, &mut out);
                }
            }
            _ => unreachable!("checked against expected()"),
        }
        Step {
            answer,
            outputs: out,
        }
    }

    /// The answer code to a message we sent (B.3 "Delivery").
    pub fn handle_answer(&mut self, _now: UtcTime, sent: MsgType, code: u16) -> Vec<Output> {
        let mut out = Vec::new();
        if let Final::Abort { reason, send } = classify(sent, code) {
            if self.pending() {
                self.abort(reason, send, &mut out);
            }
        }
        out
    }

    /// A deadline passed (B.6, B.7). Early calls change nothing.
    pub fn handle_timeout(&mut self, now: UtcTime) -> Vec<Output> {
        let mut out = Vec::new();
        if self.deadline().is_none_or(|d| now < d) {
            return out;
        }
        if let Dms2State::Completed { .. } = self.state {
            // B.7: no Revoke came by Expires + 5 min; DMS-2 ends it itself.
            out.push(Output::DeviceWork(DeviceWork::ForgetClient));
            let reason = Reason::new(ReasonCode::Expired, "the delegation expired");
            self.go(Dms2State::Revoked { reason }, &mut out);
        } else {
            let reason = self.shared.timeout_reason(now);
            self.abort(reason, true, &mut out);
        }
        out
    }

    /// Own staff or an auto-accept policy accepts (B.4): sends Accept.
    pub fn approve(&mut self, now: UtcTime, approver: Approver) -> Result<Vec<Output>, Refused> {
        let Dms2State::AwaitingApproval { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = approve_outputs(&mut self.shared, &approver);
        self.after_accept(now, &mut out);
        Ok(out)
    }

    /// Own staff rejects: Abort(rejected).
    pub fn reject(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        let Dms2State::AwaitingApproval { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = Vec::new();
        self.abort(Reason::new(ReasonCode::Rejected, text), true, &mut out);
        Ok(out)
    }

    /// Own staff aborts before completion: Abort(cancelled) (B.6).
    pub fn abort_by_staff(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        if !self.pending() {
            return Err(self.not_now());
        }
        let mut out = Vec::new();
        self.abort(Reason::new(ReasonCode::Cancelled, text), true, &mut out);
        Ok(out)
    }

    /// Own staff gives a completed delegation back: Relinquish(relinquished) (B.7).
    pub fn relinquish(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        let Dms2State::Completed { .. } = self.state else {
            return Err(self.not_now());
        };
        if self.shared.terms.is_handover() {
            return Err(Refused::Handover);
        }
        let reason = Reason::new(ReasonCode::Relinquished, text);
        let mut out = vec![
            Output::Send(Payload::Relinquish(reason.clone())),
            Output::DeviceWork(DeviceWork::ForgetClient),
        ];
        self.go(Dms2State::Relinquished { reason }, &mut out);
        Ok(out)
    }

    /// B.5 steps 3–4 done (credentials rotated): sends Bootstrapped with the
    /// DevInfo read, purges the one-time values. A DevId other than the
    /// terms' is Abort(device-error).
    pub fn bootstrapped(
        &mut self,
        now: UtcTime,
        dev_info: DevInfo,
    ) -> Result<Vec<Output>, Refused> {
        let Dms2State::Bootstrapping { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = Vec::new();
        if dev_info.dev_id != self.shared.terms.device.dev_id {
            let r = Reason::new(ReasonCode::DeviceError, "the client has another DevId");
            self.abort(r, true, &mut out);
            return Ok(out);
        }
        out.push(Output::Send(Payload::Bootstrapped { dev_info }));
        out.push(Output::PurgeSecrets);
        let deadline = self
            .shared
            .before_expiry(now + self.shared.deadlines.peer_reply);
        self.go(Dms2State::AwaitingComplete { deadline }, &mut out);
        Ok(out)
    }

    /// B.5 steps 3–4 failed: Abort(device-error).
    pub fn bootstrap_failed(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        let Dms2State::Bootstrapping { .. } = self.state else {
            return Err(self.not_now());
        };
        let mut out = Vec::new();
        let reason = Reason::new(ReasonCode::DeviceError, format!("bootstrap failed: {text}"));
        self.abort(reason, true, &mut out);
        Ok(out)
    }

    fn not_now(&self) -> Refused {
        Refused::NotNow {
            state: self.state.name(),
        }
    }
}

/// Either side's machine, for storing one delegation in one column and for
/// the inputs both sides share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Delegation {
    Dms1(Dms1),
    Dms2(Dms2),
}

impl Delegation {
    /// Proposes a delegation as the side the terms' Initiator names (B.3 step 1).
    pub fn initiate(
        id: DelegationId,
        terms: Terms,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
    ) -> Result<(Self, Vec<Output>), Refused> {
        Ok(match terms.initiator {
            Initiator::Delegating => {
                let (m, out) = Dms1::initiate(id, terms, own_nonce, deadlines, now)?;
                (Self::Dms1(m), out)
            }
            Initiator::Delegated => {
                let (m, out) = Dms2::initiate(id, terms, own_nonce, deadlines, now)?;
                (Self::Dms2(m), out)
            }
        })
    }

    /// Answers a Notification for an unknown DelegationID as the side the
    /// terms name for its Recipient (B.3 step 1, B.4); the server has made
    /// its policy checks. `Err` is the 400 answer; no delegation is created.
    pub fn accept_notification(
        msg: &DelegationMessage,
        own_nonce: NonceB64,
        deadlines: Deadlines,
        now: UtcTime,
        keys: Keys<'_>,
    ) -> Result<(Self, Step), DelegationStatus> {
        match &msg.payload {
            Payload::Notification { terms, .. } if terms.delegating == msg.recipient => {
                let (m, step) = Dms1::accept_notification(msg, own_nonce, deadlines, now, keys)?;
                Ok((Self::Dms1(m), step))
            }
            _ => {
                let (m, step) = Dms2::accept_notification(msg, own_nonce, deadlines, now, keys)?;
                Ok((Self::Dms2(m), step))
            }
        }
    }

    /// What both sides keep.
    pub fn shared(&self) -> &Shared {
        match self {
            Self::Dms1(m) => &m.shared,
            Self::Dms2(m) => &m.shared,
        }
    }

    /// The current state's name.
    pub fn state_name(&self) -> &'static str {
        match self {
            Self::Dms1(m) => m.state.name(),
            Self::Dms2(m) => m.state.name(),
        }
    }

    /// Whether the delegation ended (Aborted, Revoked, Relinquished).
    pub fn ended(&self) -> bool {
        match self {
            Self::Dms1(m) => m.state.ended(),
            Self::Dms2(m) => m.state.ended(),
        }
    }

    /// When `handle_timeout` is due.
    pub fn deadline(&self) -> Option<UtcTime> {
        match self {
            Self::Dms1(m) => m.deadline(),
            Self::Dms2(m) => m.deadline(),
        }
    }

    /// The `Expected` of a 409 answer.
    pub fn expected(&self) -> Expected {
        match self {
            Self::Dms1(m) => m.expected(),
            Self::Dms2(m) => m.expected(),
        }
    }

    /// See [`Dms1::handle_message`], [`Dms2::handle_message`].
    pub fn handle_message(
        &mut self,
        now: UtcTime,
        msg: &DelegationMessage,
        keys: Keys<'_>,
    ) -> Step {
        match self {
            Self::Dms1(m) => m.handle_message(now, msg, keys),
            Self::Dms2(m) => m.handle_message(now, msg, keys),
        }
    }

    /// See [`Dms1::handle_answer`], [`Dms2::handle_answer`].
    pub fn handle_answer(&mut self, now: UtcTime, sent: MsgType, code: u16) -> Vec<Output> {
        match self {
            Self::Dms1(m) => m.handle_answer(now, sent, code),
            Self::Dms2(m) => m.handle_answer(now, sent, code),
        }
    }

    /// See [`Dms1::handle_timeout`], [`Dms2::handle_timeout`].
    pub fn handle_timeout(&mut self, now: UtcTime) -> Vec<Output> {
        match self {
            Self::Dms1(m) => m.handle_timeout(now),
            Self::Dms2(m) => m.handle_timeout(now),
        }
    }

    /// Own staff or policy accepts.
    pub fn approve(&mut self, now: UtcTime, approver: Approver) -> Result<Vec<Output>, Refused> {
        match self {
            Self::Dms1(m) => m.approve(now, approver),
            Self::Dms2(m) => m.approve(now, approver),
        }
    }

    /// Own staff rejects.
    pub fn reject(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        match self {
            Self::Dms1(m) => m.reject(text),
            Self::Dms2(m) => m.reject(text),
        }
    }

    /// Own staff aborts before completion.
    pub fn abort_by_staff(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        match self {
            Self::Dms1(m) => m.abort_by_staff(text),
            Self::Dms2(m) => m.abort_by_staff(text),
        }
    }

    /// Own staff ends a completed delegation: Revoke on DMS-1, Relinquish on DMS-2 (B.7).
    pub fn end_by_staff(&mut self, text: &str) -> Result<Vec<Output>, Refused> {
        match self {
            Self::Dms1(m) => m.revoke(text),
            Self::Dms2(m) => m.relinquish(text),
        }
    }
}

#[cfg(test)]
mod tests;

//! The delegation engine: runs the DMS-1 and DMS-2 state machines of
//! handover-delegation (PROTOCOL Part B) against the database, the device
//! command queue and the peers.
//!
//! Every input — a peer's document, the answer to ours, a device job that
//! finished, a deadline, a person's decision — is handled in one database
//! transaction: the delegation row is locked, its sealed machine is fed,
//! and the new state is committed together with the outgoing documents
//! (the outbox), the device jobs and the audit entries it produced (B.3
//! "Delivery"). Workers then deliver the outbox with backoff, wake
//! machines at their deadlines and pick up finished device jobs, so a
//! restarted server resumes every delegation where it stood.

pub mod device_work;
mod inbox;
pub mod policy;
mod work;

use crate::audit::{self, Event, NewEntry};
use crate::device::{notify, Runtime};
use crate::peer::client::PeerClient;
use crate::peer::identity::Identity;
use crate::peer::Peer;
use crate::store::delegations::{self as store, Delegation as Row};
use crate::store::{devices, now_ms, peers, Db};
use handover_delegation::machine::{
    Approver, Audit, Deadlines, Delegation, Dms1, Dms2, End, Output, Refused,
};
use handover_delegation::terms::Subtree;
use handover_delegation::wire::{
    DelegationId, DelegationMessage, Device, Initiator, MsgId, MsgType, NonceB64, Reason,
    ReasonCode, Scope, Term, Terms, UtcTime,
};
use handover_dm::{DevId, Secret, ServerId};
use rand::RngCore;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use work::Work;

/// The name of the state of a request waiting for a second person on the
/// initiating side, before anything is sent (B.4 approval).
pub const AWAITING_REQUEST_APPROVAL: &str = "AwaitingRequestApproval";

/// Why a request or a staff action was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad input from a person or API client.
    #[error("{0}")]
    Invalid(String),
    #[error("no such delegation")]
    NotFound,
    /// Not allowed for this person (four eyes, own requests).
    #[error("{0}")]
    Forbidden(String),
    /// Not valid in the delegation's current state.
    #[error("{0}")]
    NotNow(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(#[from] anyhow::Error),
}

/// Limits and deadlines of the engine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// B.6 deadlines.
    pub deadlines: Deadlines,
    /// How long a request waits for its second person before it expires.
    pub request_ttl: time::Duration,
    /// First retry delay of an undelivered document (B.3: 1 s, ×2, ≤ 5 min).
    pub retry_first: Duration,
    pub retry_cap: Duration,
    /// How often finished device jobs and due deadlines are looked for even
    /// without a wake-up (other instances on the same database).
    pub poll: Duration,
    /// Documents delivered at once (to different delegations).
    pub concurrency: usize,
    /// First retry of device work the device refused (a revert, the own
    /// account's deletion): doubling up to an hour, so the device is
    /// reached at one of its next sessions (B.6).
    pub device_retry_first: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            deadlines: Deadlines::default(),
            request_ttl: time::Duration::hours(72),
            retry_first: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            concurrency: 256,
            device_retry_first: Duration::from_secs(60),
        }
    }
}

/// Something the portal shows live.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveEvent {
    pub delegation: i64,
    pub devid: String,
    pub batch: Option<i64>,
    /// `state`, `queued`, `sent`, `retry`, `received`, `device`.
    pub kind: String,
    pub state: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub text: String,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

struct Inner {
    rt: Runtime,
    me: ServerId,
    identity: Arc<Identity>,
    client: PeerClient,
    settings: Settings,
    wake_outbox: Notify,
    wake_timers: Notify,
    live: broadcast::Sender<LiveEvent>,
    /// Tells this instance's own live events from others' on PostgreSQL.
    instance: String,
}

/// A delegation's sealed column: a request not yet approved (nothing sent
/// yet), one withdrawn before it was sent, or the protocol machine.
#[derive(serde::Serialize, serde::Deserialize)]
enum Stored {
    Request(Draft),
    Withdrawn { draft: Draft, reason: Reason },
    Machine(Box<Delegation>),
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    id: DelegationId,
    terms: Terms,
    /// The request expires unapproved at this time.
    deadline: UtcTime,
}

/// One delegation loaded for a transition.
struct Current {
    row: Row,
    stored: Stored,
    work: Work,
    peer: Option<Peer>,
}

impl Current {
    fn machine(&mut self) -> Option<&mut Delegation> {
        match &mut self.stored {
            Stored::Machine(m) => Some(m),
            _ => None,
        }
    }

    fn dms1(&mut self) -> Result<&mut Dms1, EngineError> {
        match &mut self.stored {
            Stored::Machine(m) => match m.as_mut() {
                Delegation::Dms1(x) => Ok(x),
                Delegation::Dms2(_) => Err(EngineError::NotNow("this server is DMS-2 here".into())),
            },
            _ => Err(EngineError::NotNow("the delegation has not started".into())),
        }
    }

    fn dms2(&mut self) -> Result<&mut Dms2, EngineError> {
        match &mut self.stored {
            Stored::Machine(m) => match m.as_mut() {
                Delegation::Dms2(x) => Ok(x),
                Delegation::Dms1(_) => Err(EngineError::NotNow("this server is DMS-1 here".into())),
            },
            _ => Err(EngineError::NotNow("the delegation has not started".into())),
        }
    }

    /// A request not yet sent ends here: nothing to tell the peer.
    fn withdraw(&mut self, draft: Draft, reason: Reason) -> Vec<Output> {
        self.stored = Stored::Withdrawn {
            draft,
            reason: reason.clone(),
        };
        vec![
            Output::StateChanged {
                from: AWAITING_REQUEST_APPROVAL,
                to: "Aborted",
            },
            Output::Ended(End::Aborted(reason)),
        ]
    }

    fn state_name(&self) -> &'static str {
        match &self.stored {
            Stored::Request(_) => AWAITING_REQUEST_APPROVAL,
            Stored::Withdrawn { .. } => "Aborted",
            Stored::Machine(m) => m.state_name(),
        }
    }

    fn outcome(&self) -> &'static str {
        match &self.stored {
            Stored::Request(_) => "",
            Stored::Withdrawn { .. } => "aborted",
            Stored::Machine(m) if m.ended() => match m.state_name() {
                "Revoked" => "revoked",
                "Relinquished" => "relinquished",
                _ => "aborted",
            },
            Stored::Machine(_) => "",
        }
    }

    fn terms(&self) -> &Terms {
        match &self.stored {
            Stored::Request(d) | Stored::Withdrawn { draft: d, .. } => &d.terms,
            Stored::Machine(m) => &m.shared().terms,
        }
    }
}

/// What to do once a transition is committed.
#[derive(Default)]
struct After {
    notify: Vec<String>,
    outbox: bool,
    live: Vec<LiveEvent>,
}

/// A new request as a person or API client describes it.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub devices: Vec<String>,
    pub peer: String,
    /// True when this server hands authority over (DMS-1), false when it
    /// asks the peer for it (DMS-2).
    pub delegating: bool,
    /// `None` for `full`.
    pub scope: Option<Vec<Subtree>>,
    /// Unix seconds for `temporary`; `None` for `permanent`.
    pub expires: Option<i64>,
    pub reason: String,
}

/// The rows a request created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Requested {
    pub batch_id: i64,
    pub delegations: Vec<i64>,
}

pub(crate) fn utc(ms: i64) -> UtcTime {
    UtcTime::from_unix(ms.div_euclid(1000)).expect("the clock is in range")
}

fn unix_ms(t: UtcTime) -> i64 {
    t.get().unix_timestamp() * 1000
}

fn fresh_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn fresh_nonce() -> NonceB64 {
    let mut b = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut b);
    NonceB64::from_bytes(&b).expect("18 bytes make a nonce")
}

/// Approvals of one "Approve all" in flight at once.
const APPROVALS_AT_ONCE: usize = 16;

/// Finished device jobs handled at once by the job worker.
const OUTCOMES_AT_ONCE: usize = 32;

/// Free delivery slots the outbox worker waits for before it looks for
/// more due documents, while at least as many are on their way.
const REFILL_AT_ONCE: usize = 16;

/// One delegation's outcome in "Approve all".
type Approval = (i64, Result<(), EngineError>);

impl Engine {
    /// An engine for this server; call [`Engine::spawn`] to start its workers.
    pub fn new(rt: Runtime, identity: Arc<Identity>, settings: Settings) -> Engine {
        let me = ServerId::parse(identity.server_id().to_owned()).expect("identity ServerID");
        let client = PeerClient::new(identity.clone());
        Engine(Arc::new(Inner {
            rt,
            me,
            identity,
            client,
            settings,
            wake_outbox: Notify::new(),
            wake_timers: Notify::new(),
            live: broadcast::channel(4096).0,
            instance: fresh_uuid(),
        }))
    }

    fn db(&self) -> &Db {
        &self.0.rt.db
    }

    /// This server's ServerID.
    pub fn server_id(&self) -> &ServerId {
        &self.0.me
    }

    /// Live events for the portal.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.0.live.subscribe()
    }

    fn seal_key(row: &Row) -> String {
        format!("delegation:{}:{}", row.peer, row.delegation_id)
    }

    fn seal<T: serde::Serialize>(&self, row: &Row, field: &str, v: &T) -> String {
        let json = serde_json::to_string(v).expect("engine state serializes");
        self.0
            .rt
            .vault
            .seal(&Self::seal_key(row), field, &Secret::new(json))
    }

    fn unseal<T: serde::de::DeserializeOwned>(
        &self,
        row: &Row,
        field: &str,
        sealed: &str,
    ) -> anyhow::Result<T> {
        let s = self
            .0
            .rt
            .vault
            .unseal(&Self::seal_key(row), field, sealed)?;
        Ok(serde_json::from_str(s.expose())?)
    }

    async fn load(&self, tx: &mut crate::store::Conn, id: i64) -> Result<Current, EngineError> {
        let (row, machine, work) = store::lock(self.db(), tx, id)
            .await?
            .ok_or(EngineError::NotFound)?;
        let stored: Stored = self.unseal(&row, "machine", &machine)?;
        let work = if work.is_empty() {
            Work::default()
        } else {
            self.unseal(&row, "work", &work)?
        };
        // Inside the transaction: holding a connection while asking the
        // pool for another starves SQLite's pool under load (500s).
        let peer = peers::get_in(self.db(), tx, &row.peer).await?;
        Ok(Current {
            row,
            stored,
            work,
            peer,
        })
    }

    async fn save(&self, tx: &mut crate::store::Conn, cur: &Current) -> Result<(), EngineError> {
        let deadline = match &cur.stored {
            Stored::Request(d) => Some(unix_ms(d.deadline)),
            Stored::Withdrawn { .. } => None,
            Stored::Machine(m) => m.deadline().map(unix_ms),
        };
        let wake_at = match (deadline, cur.work.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Our own side's approver: the second person of a request we
        // initiated (in the terms), or whoever accepted an incoming one.
        let approved_by = match &cur.stored {
            Stored::Machine(m) if cur.row.initiator => {
                m.shared().terms.approved_by.clone().unwrap_or_default()
            }
            Stored::Machine(m) => m.shared().approver.clone().unwrap_or_default(),
            _ => String::new(),
        };
        store::save(
            self.db(),
            tx,
            cur.row.id,
            &store::Saved {
                state: cur.state_name(),
                outcome: cur.outcome(),
                machine: &self.seal(&cur.row, "machine", &cur.stored),
                work: &self.seal(&cur.row, "work", &cur.work),
                wake_at,
                job_id: cur.work.job,
                approved_by: &approved_by,
            },
        )
        .await?;
        Ok(())
    }

    async fn audit(
        &self,
        tx: &mut crate::store::Conn,
        cur: &Current,
        event: Event,
        actor: &str,
        mut details: serde_json::Value,
    ) -> Result<(), EngineError> {
        if let Some(obj) = details.as_object_mut() {
            obj.insert("devid".into(), cur.row.devid.clone().into());
            obj.insert("peer".into(), cur.row.peer.clone().into());
            obj.insert("role".into(), cur.row.role.clone().into());
        }
        audit::append_in(
            self.db(),
            tx,
            &NewEntry::new(event, actor, cur.row.delegation_id.clone()).details(details),
        )
        .await?;
        Ok(())
    }

    fn live(&self, cur: &Current, kind: &str, text: impl Into<String>) -> LiveEvent {
        LiveEvent {
            delegation: cur.row.id,
            devid: cur.row.devid.clone(),
            batch: cur.row.batch_id,
            kind: kind.to_owned(),
            state: cur.state_name().to_owned(),
            at: now_ms(),
            text: text.into(),
        }
    }

    /// Carries out a machine's outputs inside the transition's transaction.
    async fn apply(
        &self,
        tx: &mut crate::store::Conn,
        cur: &mut Current,
        outputs: Vec<Output>,
        actor: &str,
        after: &mut After,
    ) -> Result<(), EngineError> {
        let mut queue: VecDeque<Output> = outputs.into();
        if queue.iter().any(|o| matches!(o, Output::Ended(_))) {
            // B.3: once a delegation ended, the documents still waiting
            // behind an unanswered one are no longer sent; what this
            // transition sends (its Abort, Revoke…) goes out next.
            store::drop_queued(self.db(), tx, cur.row.id, i64::MAX).await?;
        }
        let now = now_ms();
        while let Some(o) = queue.pop_front() {
            match o {
                Output::Send(payload) => {
                    let msg = DelegationMessage {
                        msg_id: MsgId::parse(&fresh_uuid()).expect("v4 UUIDs are lowercase"),
                        delegation_id: DelegationId::parse(&cur.row.delegation_id)
                            .expect("stored ids are valid"),
                        sender: self.0.me.clone(),
                        recipient: ServerId::parse(cur.row.peer.clone())
                            .expect("stored peers are valid"),
                        sent: utc(now),
                        payload,
                    };
                    let t = msg.msg_type();
                    let body = Secret::new(String::from_utf8(msg.serialize()).expect("UTF-8"));
                    let sealed =
                        self.0
                            .rt
                            .vault
                            .seal(&Self::seal_key(&cur.row), msg.msg_id.as_str(), &body);
                    store::enqueue(
                        self.db(),
                        tx,
                        cur.row.id,
                        t.as_str(),
                        msg.msg_id.as_str(),
                        &sealed,
                    )
                    .await?;
                    after.outbox = true;
                    after.live.push(self.live(cur, "queued", t.as_str()));
                }
                Output::DeviceWork(w) => {
                    let more = self.start_work(tx, cur, w, actor, after).await?;
                    queue.extend(more);
                }
                Output::SetDeadline(_) | Output::ClearDeadline => {}
                Output::PurgeSecrets => {
                    cur.work.purge();
                    store::erase_bodies(self.db(), tx, cur.row.id, MsgType::Start.as_str()).await?;
                    self.audit(
                        tx,
                        cur,
                        Event::DelegationSecretsPurged,
                        actor,
                        serde_json::json!({}),
                    )
                    .await?;
                }
                Output::StateChanged { from, to } => {
                    self.audit(
                        tx,
                        cur,
                        Event::DelegationStateChanged,
                        actor,
                        serde_json::json!({ "from": from, "to": to }),
                    )
                    .await?;
                    after.live.push(self.live(cur, "state", to));
                    if to == "Completed" {
                        self.completed(tx, cur, actor).await?;
                    }
                    if to == "AwaitingApproval" {
                        queue.extend(self.auto_accept(cur, now)?);
                    }
                }
                Output::Reverted => {
                    self.audit(
                        tx,
                        cur,
                        Event::DelegationReverted,
                        actor,
                        serde_json::json!({}),
                    )
                    .await?;
                    after
                        .live
                        .push(self.live(cur, "device", "the device is back as before"));
                }
                Output::Audit(a) => {
                    let (event, details) = match a {
                        Audit::Signed { signature } => (
                            Event::DelegationSignatureVerified,
                            serde_json::json!({ "signer": self.0.me.as_str(), "signature": signature.as_str(), "own": true }),
                        ),
                        Audit::PeerSignature {
                            signature,
                            verified,
                        } => (
                            Event::DelegationSignatureVerified,
                            serde_json::json!({ "signer": cur.row.peer, "signature": signature.as_str(), "verified": verified }),
                        ),
                        Audit::Approved { approver } => (
                            Event::DelegationApproved,
                            serde_json::json!({ "approver": approver, "side": "own" }),
                        ),
                        Audit::PeerAccepted { approver } => (
                            Event::DelegationAccepted,
                            serde_json::json!({ "approver": approver, "side": "peer" }),
                        ),
                    };
                    self.audit(tx, cur, event, actor, details).await?;
                }
                Output::Ended(end) => {
                    let (event, reason) = match &end {
                        End::Aborted(r) => (Event::DelegationAborted, r),
                        End::Revoked(r) => (Event::DelegationRevoked, r),
                        End::Relinquished(r) => (Event::DelegationRelinquished, r),
                    };
                    self.audit(
                        tx,
                        cur,
                        event,
                        actor,
                        serde_json::json!({ "code": reason.code.as_str(), "reason": reason.text }),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// An incoming request that the peer's auto-accept policy covers is
    /// accepted at once (B.4, after AuthResponse verified).
    fn auto_accept(&self, cur: &mut Current, now: i64) -> Result<Vec<Output>, EngineError> {
        let Some(policy) = cur
            .peer
            .as_ref()
            .and_then(|p| p.auto_accept.as_deref())
            .and_then(|j| policy::AutoAccept::parse(j).ok())
        else {
            return Ok(Vec::new());
        };
        let delegating = cur.row.role == "dms1";
        if !policy.accepts(cur.terms(), delegating, now / 1000) {
            return Ok(Vec::new());
        }
        let m = cur.machine().expect("a machine awaits approval");
        Ok(m.approve(utc(now), Approver::AutoAccept(policy.name))
            .unwrap_or_default())
    }

    /// Bookkeeping of a completed delegation on the device row.
    async fn completed(
        &self,
        tx: &mut crate::store::Conn,
        cur: &Current,
        actor: &str,
    ) -> Result<(), EngineError> {
        self.audit(
            tx,
            cur,
            Event::DelegationCompleted,
            actor,
            serde_json::json!({}),
        )
        .await?;
        if cur.row.role == "dms2" {
            sqlx::query(&self.db().sql(
                "UPDATE devices SET state = 'active', \
                 authority = CASE WHEN $2 = 1 THEN $3 ELSE authority END WHERE devid = $1",
            ))
            .bind(&cur.row.devid)
            .bind(cur.terms().is_handover() as i64)
            .bind(self.0.me.as_str())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Runs one transition on delegation `id`: `f` feeds the machine and
    /// returns its outputs; everything is committed at once.
    async fn transition<R>(
        &self,
        id: i64,
        actor: &str,
        f: impl FnOnce(&mut Current, i64) -> Result<(R, Vec<Output>), EngineError>,
    ) -> Result<R, EngineError> {
        let mut tx = self.db().begin_write().await?;
        let mut cur = self.load(&mut *tx, id).await?;
        let now = now_ms();
        let (r, outputs) = f(&mut cur, now)?;
        let mut after = After::default();
        self.apply(&mut *tx, &mut cur, outputs, actor, &mut after)
            .await?;
        self.save(&mut *tx, &cur).await?;
        tx.commit().await?;
        self.after_commit(after).await;
        Ok(r)
    }

    async fn after_commit(&self, after: After) {
        if after.outbox {
            self.0.wake_outbox.notify_one();
        }
        self.0.wake_timers.notify_one();
        for e in after.live {
            if self.db().dialect() == crate::store::Dialect::Postgres {
                self.publish_shared(&e).await;
            }
            let _ = self.0.live.send(e);
        }
        for devid in after.notify {
            let has_push = devices::get(self.db(), &devid)
                .await
                .ok()
                .flatten()
                .is_some_and(|d| !d.push_address.is_empty());
            if has_push {
                if let Err(e) = notify::notify(&self.0.rt, &devid, "delegation").await {
                    tracing::warn!(%devid, error = %e, "notifying the device failed; it is reached at its next session");
                }
            }
        }
    }

    // ------------------------------------------------------------ staff

    /// Records a request for each device, waiting for a second person on
    /// this side (B.4). Nothing is sent before that approval.
    pub async fn request(
        &self,
        req: NewRequest,
        requested_by: &str,
    ) -> Result<Requested, EngineError> {
        if req.devices.is_empty() {
            return Err(EngineError::Invalid("pick at least one device".into()));
        }
        let mut unique = req.devices.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != req.devices.len() {
            return Err(EngineError::Invalid("a device is listed twice".into()));
        }
        let peer_id = ServerId::parse(req.peer.clone())
            .map_err(|e| EngineError::Invalid(format!("peer: {e}")))?;
        if peers::get(self.db(), peer_id.as_str()).await?.is_none() {
            return Err(EngineError::Invalid(format!(
                "{} is not a configured peer",
                req.peer
            )));
        }
        if peer_id == self.0.me {
            return Err(EngineError::Invalid(
                "a server cannot delegate to itself".into(),
            ));
        }
        if req.reason.chars().count() > 1024 {
            return Err(EngineError::Invalid(
                "the reason is longer than 1024 characters".into(),
            ));
        }
        if req.reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(EngineError::Invalid(
                "the reason holds control characters".into(),
            ));
        }
        let now = now_ms();
        let term = match req.expires {
            None => Term::Permanent,
            Some(secs) => {
                let expires = UtcTime::from_unix(secs)
                    .ok_or_else(|| EngineError::Invalid("the end date is out of range".into()))?;
                if secs * 1000 <= now {
                    return Err(EngineError::Invalid(
                        "the end date must be in the future".into(),
                    ));
                }
                Term::Temporary { expires }
            }
        };
        let scope = match &req.scope {
            None => Scope::Full,
            Some(s) if s.is_empty() => {
                return Err(EngineError::Invalid(
                    "a partial delegation needs at least one subtree".into(),
                ))
            }
            Some(s) => {
                let mut uris: Vec<&str> = s.iter().map(|x| x.uri.as_str()).collect();
                uris.sort();
                if uris.windows(2).any(|w| w[0] == w[1]) {
                    return Err(EngineError::Invalid("a subtree is listed twice".into()));
                }
                for x in s {
                    if handover_dm::TreeUri::parse(&x.uri).is_err()
                        || x.uri.contains(['|', ';', ','])
                    {
                        return Err(EngineError::Invalid(format!(
                            "{:?} is not a subtree URI",
                            x.uri
                        )));
                    }
                    if x.rights.is_empty() {
                        return Err(EngineError::Invalid(format!(
                            "{}: pick at least one right",
                            x.uri
                        )));
                    }
                }
                Scope::Partial(s.clone())
            }
        };
        let mut tx = self.db().begin_write().await?;
        let mut problems = Vec::new();
        let mut drafts = Vec::new();
        for devid in &req.devices {
            let dev_id = match DevId::parse(devid.clone()) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{devid}: {e}"));
                    continue;
                }
            };
            let device = devices::get_in(self.db(), &mut *tx, devid).await?;
            if req.delegating {
                let Some(d) = &device else {
                    problems.push(format!("{devid}: not a device of this server"));
                    continue;
                };
                if let Scope::Partial(_) = &scope {
                    let tree = device_work::tree_from_cache(&d.tree);
                    if let Err(e) =
                        handover_delegation::plan::check_scope(&tree, &self.0.me, &scope)
                    {
                        problems.push(format!("{devid}: {e}"));
                        continue;
                    }
                }
            }
            if self.running_for(&mut *tx, devid).await? {
                problems.push(format!("{devid}: already in a delegation"));
                continue;
            }
            let (delegating, delegated) = if req.delegating {
                (self.0.me.clone(), peer_id.clone())
            } else {
                (peer_id.clone(), self.0.me.clone())
            };
            let terms = Terms {
                initiator: if req.delegating {
                    Initiator::Delegating
                } else {
                    Initiator::Delegated
                },
                delegating,
                delegated,
                device: Device {
                    dev_id,
                    man: device.as_ref().map(|d| d.man.clone()).unwrap_or_default(),
                    model: device.as_ref().map(|d| d.model.clone()).unwrap_or_default(),
                },
                scope: scope.clone(),
                term,
                reason: (!req.reason.trim().is_empty()).then(|| req.reason.trim().to_owned()),
                requested_by: Some(requested_by.to_owned()),
                approved_by: None,
            };
            drafts.push((devid.clone(), terms));
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems.join("; ")));
        }
        let batch_id = store::insert_batch(
            self.db(),
            &mut *tx,
            peer_id.as_str(),
            requested_by,
            &req.reason,
        )
        .await?;
        let deadline = utc(now) + self.0.settings.request_ttl;
        let mut ids = Vec::new();
        let mut after = After::default();
        for (devid, terms) in drafts {
            let id = DelegationId::parse(&fresh_uuid()).expect("v4 UUIDs are lowercase");
            let draft = Draft {
                id: id.clone(),
                terms: terms.clone(),
                deadline,
            };
            let scope_json = scope_json(&terms.scope);
            let kind = if terms.scope == Scope::Full {
                "full"
            } else {
                "partial"
            };
            let term_text = if terms.term == Term::Permanent {
                "permanent"
            } else {
                "temporary"
            };
            let placeholder = Row {
                id: 0,
                peer: peer_id.as_str().to_owned(),
                delegation_id: id.as_str().to_owned(),
                role: String::new(),
                initiator: true,
                devid: devid.clone(),
                batch_id: Some(batch_id),
                kind: String::new(),
                term: String::new(),
                expires_at: None,
                scope: String::new(),
                reason: String::new(),
                requested_by: String::new(),
                approved_by: String::new(),
                state: String::new(),
                outcome: String::new(),
                wake_at: None,
                job_id: None,
                created_at: 0,
                updated_at: 0,
                ended_at: None,
                completed_at: None,
            };
            let sealed = self.seal(&placeholder, "machine", &Stored::Request(draft));
            let row_id = store::insert(
                self.db(),
                &mut *tx,
                &store::NewDelegation {
                    peer: peer_id.as_str(),
                    delegation_id: id.as_str(),
                    role: if req.delegating { "dms1" } else { "dms2" },
                    initiator: true,
                    devid: &devid,
                    batch_id: Some(batch_id),
                    kind,
                    term: term_text,
                    expires_at: terms.term.expires().map(unix_ms),
                    scope: &scope_json,
                    reason: req.reason.trim(),
                    requested_by,
                    approved_by: "",
                    state: AWAITING_REQUEST_APPROVAL,
                    machine: &sealed,
                    wake_at: Some(unix_ms(deadline)),
                },
            )
            .await?;
            let cur = Current {
                row: Row {
                    id: row_id,
                    role: if req.delegating { "dms1" } else { "dms2" }.into(),
                    ..placeholder
                },
                stored: Stored::Request(Draft {
                    id,
                    terms,
                    deadline,
                }),
                work: Work::default(),
                peer: None,
            };
            self.audit(
                &mut *tx,
                &cur,
                Event::DelegationRequested,
                requested_by,
                serde_json::json!({ "batch": batch_id, "type": kind, "term": term_text, "scope": scope_json, "reason": req.reason.trim() }),
            )
            .await?;
            after
                .live
                .push(self.live(&cur, "state", AWAITING_REQUEST_APPROVAL));
            ids.push(row_id);
        }
        tx.commit().await?;
        self.after_commit(after).await;
        Ok(Requested {
            batch_id,
            delegations: ids,
        })
    }

    /// True when the device has a delegation that has not ended.
    async fn running_for(
        &self,
        tx: &mut crate::store::Conn,
        devid: &str,
    ) -> Result<bool, sqlx::Error> {
        use sqlx::Row as _;
        let n: i64 = sqlx::query(
            &self
                .db()
                .sql("SELECT COUNT(*) AS n FROM delegations WHERE devid = $1 AND outcome = ''"),
        )
        .bind(devid)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        Ok(n > 0)
    }

    /// Approves: a request of this side (never by its requester: four
    /// eyes), or an incoming request from the peer (B.4).
    pub async fn approve(&self, id: i64, approver: &str) -> Result<(), EngineError> {
        let me = self.clone();
        self.transition(id, approver, |cur, now| match &mut cur.stored {
            Stored::Request(draft) => {
                if cur.row.requested_by == approver {
                    return Err(EngineError::Forbidden(
                        "the requester cannot approve their own request".into(),
                    ));
                }
                let mut terms = draft.terms.clone();
                terms.approved_by = Some(approver.to_owned());
                let (m, mut out) = Delegation::initiate(
                    draft.id.clone(),
                    terms,
                    fresh_nonce(),
                    me.0.settings.deadlines,
                    utc(now),
                )
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
                out.insert(
                    0,
                    Output::Audit(Audit::Approved {
                        approver: approver.to_owned(),
                    }),
                );
                cur.stored = Stored::Machine(Box::new(m));
                Ok(((), out))
            }
            Stored::Machine(m) => {
                let out = m
                    .approve(utc(now), Approver::Staff(approver.to_owned()))
                    .map_err(refused)?;
                Ok(((), out))
            }
            Stored::Withdrawn { .. } => {
                Err(EngineError::NotNow("the request was withdrawn".into()))
            }
        })
        .await
    }

    /// Approves several delegations as `approver`, one transition each, up
    /// to [`APPROVALS_AT_ONCE`] at a time; the answers, in the order of
    /// `ids`, say how each went (the requester's own are refused, as by
    /// [`Engine::approve`]).
    pub async fn approve_all(&self, ids: &[i64], approver: &str) -> Vec<Approval> {
        use futures_util::StreamExt;
        // Several at a time: each is its own transaction, and one after the
        // other each would wait its turn behind every writer of the moment.
        // Boxed with its lifetime spelled out: the stream's futures borrow
        // `self` and `approver`, which an unboxed closure's future cannot
        // state in a way the Send check of the callers accepts.
        let approve = |id: i64| -> futures_util::future::BoxFuture<'_, Approval> {
            Box::pin(async move { (id, self.approve(id, approver).await) })
        };
        futures_util::stream::iter(ids.to_vec())
            .map(approve)
            .buffered(APPROVALS_AT_ONCE)
            .collect()
            .await
    }

    /// Rejects with a reason: a request of this side, or an incoming one.
    pub async fn reject(&self, id: i64, actor: &str, reason: &str) -> Result<(), EngineError> {
        if reason.trim().is_empty() {
            return Err(EngineError::Invalid("a rejection needs a reason".into()));
        }
        self.transition(id, actor, |cur, _now| match &mut cur.stored {
            Stored::Request(draft) => {
                let draft = draft.clone();
                Ok((
                    (),
                    cur.withdraw(draft, Reason::new(ReasonCode::Rejected, reason.trim())),
                ))
            }
            Stored::Machine(m) => Ok(((), m.reject(reason.trim()).map_err(refused)?)),
            Stored::Withdrawn { .. } => {
                Err(EngineError::NotNow("the request was withdrawn".into()))
            }
        })
        .await
    }

    /// Aborts before completion (B.6); a request not yet sent is withdrawn.
    pub async fn abort(&self, id: i64, actor: &str, reason: &str) -> Result<(), EngineError> {
        let text = if reason.trim().is_empty() {
            format!("aborted by {actor}")
        } else {
            reason.trim().to_owned()
        };
        self.transition(id, actor, |cur, _now| match &mut cur.stored {
            Stored::Request(draft) => {
                let draft = draft.clone();
                Ok((
                    (),
                    cur.withdraw(draft, Reason::new(ReasonCode::Cancelled, text)),
                ))
            }
            Stored::Machine(m) => Ok(((), m.abort_by_staff(&text).map_err(refused)?)),
            Stored::Withdrawn { .. } => {
                Err(EngineError::NotNow("the request was withdrawn".into()))
            }
        })
        .await
    }

    /// Ends a completed delegation: Revoke on DMS-1, Relinquish on DMS-2 (B.7).
    pub async fn end(&self, id: i64, actor: &str, reason: &str) -> Result<(), EngineError> {
        let text = if reason.trim().is_empty() {
            format!("ended by {actor}")
        } else {
            reason.trim().to_owned()
        };
        self.transition(id, actor, |cur, _now| match cur.machine() {
            Some(m) => Ok(((), m.end_by_staff(&text).map_err(refused)?)),
            None => Err(EngineError::NotNow("the delegation has not started".into())),
        })
        .await
    }

    /// A new request with the terms of an ended delegation of this side.
    pub async fn retry(&self, id: i64, actor: &str) -> Result<Requested, EngineError> {
        let row = store::get(self.db(), id)
            .await?
            .ok_or(EngineError::NotFound)?;
        if row.outcome.is_empty() {
            return Err(EngineError::NotNow("the delegation has not ended".into()));
        }
        let scope: Vec<Subtree> = serde_json::from_str::<Vec<ScopeEntry>>(&row.scope)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                Some(Subtree {
                    uri: e.uri,
                    rights: handover_delegation::terms::Rights::parse(&e.rights)?,
                })
            })
            .collect();
        self.request(
            NewRequest {
                devices: vec![row.devid],
                peer: row.peer,
                delegating: row.role == "dms1",
                scope: (row.kind == "partial").then_some(scope),
                expires: row.expires_at.map(|ms| ms / 1000),
                reason: row.reason,
            },
            actor,
        )
        .await
    }

    // ---------------------------------------------------------- workers

    /// Starts the outbox, timer and device-job workers; they stop when
    /// `stop` turns true.
    pub fn spawn(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(self.clone().outbox_worker(stop.clone())),
            tokio::spawn(self.clone().timer_worker(stop.clone())),
        ];
        if self.db().dialect() == crate::store::Dialect::Postgres {
            tasks.push(tokio::spawn(
                self.clone().shared_live_listener(stop.clone()),
            ));
        }
        tasks.push(tokio::spawn(self.clone().job_worker(stop)));
        tasks
    }

    /// PostgreSQL: tells the other instances sharing the database about a
    /// live event, so their portals show it too (PRODUCT: several
    /// instances see each other's live events).
    async fn publish_shared(&self, e: &LiveEvent) {
        let mut e = e.clone();
        e.text = e.text.chars().take(1000).collect();
        let payload = serde_json::json!({ "instance": self.0.instance, "event": e }).to_string();
        if let Err(err) = sqlx::query("SELECT pg_notify('handover_live', $1)")
            .bind(payload)
            .execute(self.db().pool())
            .await
        {
            tracing::warn!(error = %err, "sharing a live event failed");
        }
    }

    /// PostgreSQL: re-broadcasts the live events of the other instances.
    async fn shared_live_listener(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        #[derive(serde::Deserialize)]
        struct Shared {
            instance: String,
            event: LiveEvent,
        }
        let mut delay = Duration::from_millis(200);
        while !*stop.borrow() {
            let mut listener = match sqlx::postgres::PgListener::connect(self.db().url()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other instances' events failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => break,
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if listener.listen("handover_live").await.is_err() {
                continue;
            }
            delay = Duration::from_millis(200);
            loop {
                tokio::select! {
                    n = listener.recv() => match n {
                        Ok(n) => {
                            if let Ok(s) = serde_json::from_str::<Shared>(n.payload()) {
                                if s.instance != self.0.instance {
                                    let _ = self.0.live.send(s.event);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the event listener lost its connection");
                            break;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        }
    }

    async fn outbox_worker(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut running = tokio::task::JoinSet::new();
        let mut in_flight = std::collections::HashSet::new();
        // Whether the outbox may hold due documents not taken yet: at the
        // start, after a wake-up or a sleep, and while a look filled every
        // free slot. A finished delivery alone adds none: its delegation's
        // next document goes on in the same slot (see `deliver_in_turn`).
        let mut look = true;
        loop {
            if *stop.borrow() {
                break;
            }
            while let Some(done) = running.try_join_next() {
                if let Ok((id, later)) = done {
                    in_flight.remove(&id);
                    look |= later;
                }
            }
            let mut next = self.0.settings.poll;
            // Only as many documents as there are free slots, none of a
            // delegation with one on its way. With many on their way, slots
            // are filled a few at a time: each look passes over the busy
            // delegations' documents first.
            let free = self.0.settings.concurrency.saturating_sub(running.len());
            if look && free > 0 && (free >= REFILL_AT_ONCE || running.len() < REFILL_AT_ONCE) {
                let now = now_ms();
                look = match store::due_outbox(self.db(), now, &in_flight, free).await {
                    Ok(due) => {
                        // Every slot filled: more may be due.
                        let more = due.len() == free;
                        for m in due {
                            if !in_flight.insert(m.delegation) {
                                continue;
                            }
                            running.spawn(self.clone().deliver_in_turn(m));
                        }
                        more
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the delegation outbox failed");
                        true
                    }
                };
                // Slots left over: nothing else is due now, so sleep until
                // the next retry time (or a wake-up).
                if !look {
                    if let Ok(Some(t)) = store::next_outbox_time(self.db(), now).await {
                        let wait = (t - now_ms()).clamp(0, next.as_millis() as i64);
                        next = Duration::from_millis(wait as u64);
                    }
                }
            }
            if running.len() >= self.0.settings.concurrency {
                // Full: the next finished delivery frees a slot.
                next = self.0.settings.poll;
            }
            tokio::select! {
                _ = self.0.wake_outbox.notified() => look = true,
                _ = tokio::time::sleep(next) => look = true,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok((id, later)) = done {
                        in_flight.remove(&id);
                        look |= later;
                    }
                }
                _ = stop.changed() => {}
            }
        }
        running.shutdown().await;
    }

    /// Delivers `m`, then its delegation's next documents as long as one is
    /// due (queued while the one before was on its way), in order (B.3).
    /// Returns the delegation and whether it has a document due later (a
    /// retry), for the outbox worker to wake for.
    async fn deliver_in_turn(self, mut m: store::Message) -> (i64, bool) {
        let id = m.delegation;
        loop {
            let sent = m.id;
            self.deliver(m).await;
            match store::first_queued_of(self.db(), id).await {
                // The same document still due: left for the worker's next
                // look rather than tried again at once.
                Ok(Some(n)) if n.id != sent && n.next_attempt_at.is_some_and(|t| t <= now_ms()) => {
                    m = n
                }
                Ok(Some(_)) => return (id, true),
                Ok(None) => return (id, false),
                Err(e) => {
                    tracing::error!(error = %e, "reading the delegation outbox failed");
                    return (id, true);
                }
            }
        }
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let first = self.0.settings.retry_first.as_millis() as i64;
        let cap = self.0.settings.retry_cap.as_millis() as i64;
        let base = first.saturating_mul(1i64 << attempts.clamp(0, 20)).min(cap);
        // ±20 % jitter so that many delegations do not retry in step.
        let jitter = (rand::random::<u32>() % 41) as i64 - 20;
        (base + base * jitter / 100).max(1)
    }

    /// Sends one document and feeds its answer to the machine (B.3).
    async fn deliver(&self, m: store::Message) {
        let Ok(Some(row)) = store::get(self.db(), m.delegation).await else {
            return;
        };
        let peer = match peers::get(self.db(), &row.peer).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ = store::retry_later(
                    self.db(),
                    m.id,
                    "the peer is not configured",
                    now_ms() + self.backoff(m.attempts),
                )
                .await;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the peer failed");
                return;
            }
        };
        let body = match self
            .0
            .rt
            .vault
            .unseal(&Self::seal_key(&row), &m.msg_id, &m.body)
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, msg = %m.msg_id, "an outgoing document cannot be read");
                return;
            }
        };
        let bytes = axum::body::Bytes::from(body.expose().as_bytes().to_vec());
        let answer = self.0.client.post(&peer, bytes).await;
        let code = match answer {
            Ok(a) if a.status < 500 && a.is_delegation_document() => a.status,
            Ok(a) => {
                let why = format!("the peer answered {}", a.status);
                self.give_up_or_retry(&row, &m, &why).await;
                return;
            }
            Err(e) => {
                self.give_up_or_retry(&row, &m, &e.to_string()).await;
                return;
            }
        };
        let msg_type = MsgType::parse(&m.msg_type).expect("stored MsgTypes are valid");
        let res = async {
            let mut tx = self.db().begin_write().await?;
            if !store::answered(self.db(), &mut *tx, m.id, code, "delivered").await? {
                return Ok::<_, EngineError>(());
            }
            let mut cur = self.load(&mut *tx, row.id).await?;
            let now = now_ms();
            self.audit(
                &mut *tx,
                &cur,
                Event::DelegationMessageSent,
                "system",
                serde_json::json!({ "msg_type": m.msg_type, "msg_id": m.msg_id, "code": code, "attempts": m.attempts + 1 }),
            )
            .await?;
            if msg_type == MsgType::Start {
                // The grant's one-time values need not be kept once delivered.
                store::erase_bodies(self.db(), &mut *tx, row.id, MsgType::Start.as_str()).await?;
            }
            let outputs = match cur.machine() {
                Some(mach) => mach.handle_answer(utc(now), msg_type, code),
                None => Vec::new(),
            };
            let mut after = After::default();
            after.live.push(self.live(&cur, "sent", format!("{} {}", m.msg_type, code)));
            self.apply(&mut *tx, &mut cur, outputs, "system", &mut after).await?;
            self.save(&mut *tx, &cur).await?;
            tx.commit().await?;
            self.after_commit(after).await;
            Ok(())
        }
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, msg = %m.msg_id, "recording a peer's answer failed");
        }
    }

    /// B.3: resend later; a document of an ended delegation that keeps
    /// failing is given up after a day.
    async fn give_up_or_retry(&self, row: &Row, m: &store::Message, why: &str) {
        let ended_long_ago = row
            .ended_at
            .is_some_and(|t| now_ms() - t > 24 * 3600 * 1000);
        if ended_long_ago {
            let mut tx = match self.db().begin_write().await {
                Ok(tx) => tx,
                Err(_) => return,
            };
            let _ = store::answered(self.db(), &mut *tx, m.id, 0, "dropped").await;
            let _ = tx.commit().await;
            return;
        }
        tracing::info!(msg = %m.msg_id, peer = %row.peer, why, "document not delivered; retrying");
        let _ = store::retry_later(self.db(), m.id, why, now_ms() + self.backoff(m.attempts)).await;
        // The portal shows each failed attempt as it happens.
        let _ = self.0.live.send(LiveEvent {
            delegation: row.id,
            devid: row.devid.clone(),
            batch: row.batch_id,
            kind: "retry".into(),
            state: row.state.clone(),
            at: now_ms(),
            text: format!("{} not delivered: {why}", m.msg_type),
        });
    }

    async fn timer_worker(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            match store::due(self.db(), now_ms(), 256).await {
                Ok(ids) => {
                    for id in ids {
                        if let Err(e) = self.wake(id).await {
                            tracing::error!(delegation = id, error = %e, "a delegation's deadline could not be handled");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading due delegations failed"),
            }
            let wait = match next_wake(self.db()).await {
                Some(t) => Duration::from_millis(
                    (t - now_ms()).clamp(10, self.0.settings.poll.as_millis() as i64) as u64,
                ),
                None => self.0.settings.poll,
            };
            tokio::select! {
                _ = self.0.wake_timers.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// A delegation's wake time came: its deadline, a request's expiry, or
    /// a device work retry.
    async fn wake(&self, id: i64) -> Result<(), EngineError> {
        let mut retry = false;
        self.transition(id, "system", |cur, now| {
            let mut out = Vec::new();
            match &mut cur.stored {
                Stored::Request(draft) if unix_ms(draft.deadline) <= now => {
                    let draft = draft.clone();
                    let reason =
                        Reason::new(ReasonCode::Timeout, "nobody approved the request in time");
                    out.extend(cur.withdraw(draft, reason));
                }
                Stored::Machine(m) if m.deadline().is_some_and(|d| unix_ms(d) <= now) => {
                    out.extend(m.handle_timeout(utc(now)));
                }
                _ => {}
            }
            if cur.work.retry_at.is_some_and(|t| t <= now) {
                cur.work.retry_at = None;
                retry = true;
            }
            Ok(((), out))
        })
        .await?;
        if retry {
            self.retry_work(id).await?;
        }
        Ok(())
    }

    async fn job_worker(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut events = self.0.rt.bus.subscribe();
        let mut tick = tokio::time::interval(self.0.settings.poll);
        loop {
            let sweep = tokio::select! {
                e = events.recv() => match e {
                    Ok(crate::device::events::DeviceEvent::JobUpdated { state, .. })
                        if state == "succeeded" || state == "failed" => true,
                    Ok(_) => false,
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => true,
                _ = stop.changed() => break,
            };
            if !sweep {
                continue;
            }
            // A burst of finished jobs (a busy fleet finishes several per
            // millisecond) needs one look, not one per job: what is already
            // queued is taken in by this sweep.
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
            match store::waiting_on_finished_jobs(self.db()).await {
                Ok(ids) => {
                    use futures_util::StreamExt;
                    // Several at a time, each its own transaction: one after
                    // the other, each would wait its turn for the writer
                    // behind every other writer of the moment. Each
                    // delegation appears once in a sweep.
                    let this = &self;
                    let done = |id: i64| -> futures_util::future::BoxFuture<'_, ()> {
                        Box::pin(async move {
                            if let Err(e) = this.job_done(id).await {
                                tracing::error!(delegation = id, error = %e, "a device outcome could not be handled");
                            }
                        })
                    };
                    futures_util::stream::iter(ids)
                        .for_each_concurrent(OUTCOMES_AT_ONCE, done)
                        .await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading delegations waiting for devices failed")
                }
            }
        }
    }
}

/// The earliest wake time of any delegation.
async fn next_wake(db: &Db) -> Option<i64> {
    let row = sqlx::query("SELECT MIN(wake_at) AS t FROM delegations WHERE wake_at IS NOT NULL")
        .fetch_one(db.reader())
        .await
        .ok()?;
    crate::store::opt_i64(&row, "t").ok().flatten()
}

fn refused(e: Refused) -> EngineError {
    match e {
        Refused::NotNow { state } => EngineError::NotNow(format!("not possible while {state}")),
        Refused::Handover => EngineError::Forbidden(e.to_string()),
        Refused::Terms(t) => EngineError::Invalid(t.to_owned()),
    }
}

/// One subtree of a stored scope.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScopeEntry {
    pub uri: String,
    pub rights: String,
}

pub(crate) fn scope_json(scope: &Scope) -> String {
    let list: Vec<ScopeEntry> = match scope {
        Scope::Full => Vec::new(),
        Scope::Partial(s) => s
            .iter()
            .map(|x| ScopeEntry {
                uri: x.uri.clone(),
                rights: x.rights.to_string(),
            })
            .collect(),
    };
    serde_json::to_string(&list).expect("scopes serialize")
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("server_id", &self.0.me)
            .finish_non_exhaustive()
    }
}

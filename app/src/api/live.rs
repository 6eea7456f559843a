//! One delegation or batch as it runs (PROTOCOL B.3–B.8), and what the
//! portal draws from it: the timeline of steps 1–6, the sequence of messages
//! between DMS-1, DMS-2 and the device, and who manages which subtree.

use super::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One delegation row, as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRow {
    pub id: i64,
    pub delegation_id: String,
    /// `dms1` (this server hands authority over) or `dms2`.
    pub role: String,
    pub initiator: bool,
    pub devid: String,
    pub peer: String,
    pub batch_id: Option<i64>,
    /// `full` or `partial`.
    pub kind: String,
    /// `permanent` or `temporary`.
    pub term: String,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    /// (subtree URI, rights) for `partial`.
    pub scope: Vec<(String, String)>,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub state: String,
    pub outcome: String,
    /// The current deadline, unix milliseconds.
    pub wake_at: Option<i64>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// When it reached Completed, if it did.
    #[serde(default)]
    pub completed_at: Option<i64>,
}

impl DelegationRow {
    pub fn ended(&self) -> bool {
        !self.outcome.is_empty()
            || matches!(self.state.as_str(), "Aborted" | "Revoked" | "Relinquished")
    }
}

/// A document exchanged with the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMessage {
    /// `in` or `out`.
    pub direction: String,
    pub msg_type: String,
    /// The answer's status code, once answered.
    pub code: Option<i64>,
    pub delivery: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: i64,
    pub answered_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}

/// An audit entry about the delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub time: i64,
    pub event: String,
    pub actor: String,
    pub details: String,
}

/// The device job the delegation waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitJob {
    pub id: i64,
    pub state: String,
    pub status: Option<i64>,
    pub error: String,
    pub updated_at: i64,
}

/// What the caller may do with a delegation now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controls {
    pub abort: bool,
    /// `revoke` (DMS-1) or `relinquish` (DMS-2) when allowed.
    pub end: Option<String>,
    pub retry: bool,
}

/// Everything the delegation page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationLive {
    pub row: DelegationRow,
    /// This server's ServerID.
    pub me: String,
    pub messages: Vec<PeerMessage>,
    /// Oldest first.
    pub steps: Vec<Step>,
    pub job: Option<WaitJob>,
    /// Unix milliseconds of the device's last notification.
    pub notified_at: Option<i64>,
    pub controls: Controls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLive {
    pub id: i64,
    pub rows: Vec<DelegationRow>,
}

/// A column the batch page sorts its delegations by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchSort {
    /// In the order they were created (the default).
    #[default]
    Id,
    Device,
    State,
    Ended,
}

impl BatchSort {
    pub const ALL: [BatchSort; 4] = [
        BatchSort::Id,
        BatchSort::Device,
        BatchSort::State,
        BatchSort::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchSort::Id => "id",
            BatchSort::Device => "device",
            BatchSort::State => "state",
            BatchSort::Ended => "ended",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            BatchSort::Id => "#",
            BatchSort::Device => "Device",
            BatchSort::State => "State",
            BatchSort::Ended => "Ended",
        }
    }

    pub fn parse(s: &str) -> Option<BatchSort> {
        BatchSort::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Rows per page of the batch page.
pub const BATCH_PER_PAGE: usize = 100;

/// Sorts a batch's delegations by `sort`; ties keep creation order. Those
/// not ended yet come after the ended ones when sorting by end time.
pub fn sort_batch(rows: &mut [DelegationRow], sort: BatchSort, desc: bool) {
    rows.sort_by(|a, b| {
        let by = match sort {
            BatchSort::Id => a.id.cmp(&b.id),
            BatchSort::Device => a.devid.cmp(&b.devid),
            BatchSort::State => a.state.cmp(&b.state),
            BatchSort::Ended => match (a.ended_at, b.ended_at) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
        };
        let by = if desc { by.reverse() } else { by };
        by.then(a.id.cmp(&b.id))
    });
}

/// A staff decision on a delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    Abort,
    Revoke,
    Relinquish,
    Retry,
}

/// An event pushed by `/live/…` (Server-Sent Events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub delegation: i64,
    #[serde(default)]
    pub batch: Option<i64>,
    pub kind: String,
    pub state: String,
    pub at: i64,
    pub text: String,
}

#[server(endpoint = "delegations/live")]
pub async fn get_delegation_live(id: i64) -> Result<DelegationLive, AppError> {
    super::with_backend(|b, req| async move { b.delegation_live(&req, id).await }).await
}

/// Carries out `act`; a retry answers the new delegation's id.
#[server(endpoint = "delegations/act")]
pub async fn act_on_delegation(
    id: i64,
    act: Act,
    #[server(default)] reason: String,
) -> Result<Option<i64>, AppError> {
    super::with_backend(|b, req| async move { b.delegation_act(&req, id, act, reason).await }).await
}

#[server(endpoint = "batches/live")]
pub async fn get_batch_live(id: i64) -> Result<BatchLive, AppError> {
    super::with_backend(|b, req| async move { b.batch_live(&req, id).await }).await
}

#[server(endpoint = "devices/delegations")]
pub async fn get_device_delegations(devid: String) -> Result<Vec<DelegationRow>, AppError> {
    super::with_backend(|b, req| async move { b.device_delegations(&req, devid).await }).await
}

// ------------------------------------------------------------ the timeline

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Done,
    Current,
    Failed,
    Pending,
}

/// A piece of a sentence: words, or a time of day that the page shows in
/// the reader's time zone (UTC on the server and in plain text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Text(String),
    /// Unix milliseconds, shown as a clock time.
    Clock(i64),
}

/// A sentence with times of day in it, e.g. "waiting for the device to
/// connect — notified 12:03:41"; `Display` writes the times in UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words(pub Vec<Word>);

impl Words {
    pub fn text(s: impl Into<String>) -> Self {
        Words(vec![Word::Text(s.into())])
    }

    pub fn push_str(&mut self, s: &str) {
        match self.0.last_mut() {
            Some(Word::Text(t)) => t.push_str(s),
            _ => self.0.push(Word::Text(s.to_owned())),
        }
    }

    pub fn push_clock(&mut self, ms: i64) {
        self.0.push(Word::Clock(ms));
    }

    pub fn append(&mut self, other: Words) {
        for w in other.0 {
            match w {
                Word::Text(t) => self.push_str(&t),
                Word::Clock(ms) => self.push_clock(ms),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0
            .iter()
            .all(|w| matches!(w, Word::Text(t) if t.is_empty()))
    }
}

impl std::fmt::Display for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for w in &self.0 {
            match w {
                Word::Text(t) => f.write_str(t)?,
                Word::Clock(ms) => f.write_str(&clock(*ms))?,
            }
        }
        Ok(())
    }
}

impl PartialEq<&str> for Words {
    fn eq(&self, other: &&str) -> bool {
        let mut rest = *other;
        for w in &self.0 {
            let piece = match w {
                Word::Text(t) => t.clone(),
                Word::Clock(ms) => clock(*ms),
            };
            match rest.strip_prefix(piece.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineStep {
    pub title: String,
    pub status: Status,
    /// When it was done, or since when it waits.
    pub at: Option<i64>,
    pub text: Words,
}

/// B.3 answers in plain words.
pub fn code_meaning(code: i64) -> &'static str {
    match code {
        200 | 202 => "accepted",
        400 => "malformed or inconsistent",
        401 => "signature did not verify",
        403 => "refused",
        404 => "unknown delegation",
        409 => "not valid now",
        410 => "already ended",
        415 => "unsupported media type or version",
        500..=599 => "server error",
        _ => "unexpected answer",
    }
}

/// The steps in order; `states` are those in which the step is under way.
const STEPS: &[(&str, &[&str])] = &[
    (
        "Request approved by a second person",
        &["AwaitingRequestApproval"],
    ),
    ("1 · Notification: the terms are proposed", &[]),
    (
        "2 · Both servers prove who they are",
        &["AwaitingAuthChallenge", "AwaitingAuthResponse"],
    ),
    (
        "Accepted by the other side",
        &["AwaitingApproval", "AwaitingAccept"],
    ),
    (
        "3 · The device is prepared and Start is sent",
        &["PreparingClient", "AwaitingStart"],
    ),
    (
        "4 · The new authority bootstraps the device",
        &["Bootstrapping"],
    ),
    ("5 · Bootstrapped is reported", &["AwaitingBootstrapped"]),
    (
        "6 · ACLs are updated and Complete is sent",
        &["UpdatingAcls", "Completing", "AwaitingComplete"],
    ),
];

fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn details(s: &Step) -> serde_json::Value {
    serde_json::from_str(&s.details).unwrap_or_default()
}

/// When the delegation entered `state` last.
fn entered(d: &DelegationLive, state: &str) -> Option<i64> {
    d.steps
        .iter()
        .rev()
        .find(|s| s.event == "delegation.state_changed" && details(s)["to"] == state)
        .map(|s| s.time)
}

/// The step under way in `state`, or `None` for an ended one.
fn step_of(state: &str) -> Option<usize> {
    STEPS.iter().position(|(_, states)| states.contains(&state))
}

/// What the delegation waits for now, in plain words.
pub fn waiting_for(d: &DelegationLive) -> Words {
    let r = &d.row;
    let peer = &r.peer;
    let device = || match (&d.job, d.notified_at) {
        (Some(j), _) if j.state == "sent" => Words::text("the device to finish its DM session"),
        (_, Some(n)) => {
            let mut w = Words::text("the device to connect — notified ");
            w.push_clock(n);
            w
        }
        _ => Words::text("the device to connect"),
    };
    let words = match r.state.as_str() {
        "AwaitingRequestApproval" => format!("an approver at {}", d.me),
        "AwaitingAuthChallenge" => format!("{peer} to prove who it is (AuthChallenge)"),
        "AwaitingAuthResponse" => format!("{peer} to answer the challenge (AuthResponse)"),
        "AwaitingApproval" => format!("an approver at {}", d.me),
        "AwaitingAccept" => format!("an approver at {peer}"),
        "PreparingClient" | "UpdatingAcls" => return device(),
        "AwaitingStart" => format!("{peer} to send Start"),
        "Bootstrapping" => return device(),
        "AwaitingBootstrapped" => format!("{peer} to bootstrap the device"),
        "Completing" => format!("{peer} to answer Complete"),
        "AwaitingComplete" => format!("{peer} to send Complete"),
        s => s.to_owned(),
    };
    Words::text(words)
}

/// A failed delivery in plain words, e.g. "the peer refused Start (409 — not valid now)".
pub fn message_problem(m: &PeerMessage) -> Option<String> {
    if m.direction != "out" {
        return None;
    }
    match m.code {
        Some(c) if !(200..300).contains(&c) => Some(format!(
            "the peer refused {} ({c} — {})",
            m.msg_type,
            code_meaning(c)
        )),
        None if m.attempts > 0 && !m.last_error.is_empty() => Some(format!(
            "{} not delivered yet after {} attempt{}: {}",
            m.msg_type,
            m.attempts,
            if m.attempts == 1 { "" } else { "s" },
            m.last_error
        )),
        _ => None,
    }
}

/// Steps 1–6 with the approval waits, each done, current, failed or pending.
pub fn timeline(d: &DelegationLive) -> Vec<TimelineStep> {
    let r = &d.row;
    let current = step_of(&r.state);
    // An ended delegation stops at the step it was in when it ended.
    let last_step = d
        .steps
        .iter()
        .filter(|s| s.event == "delegation.state_changed")
        .filter_map(|s| step_of(details(s)["to"].as_str().unwrap_or("")))
        .max();
    let completed_at = entered(d, "Completed");
    let reached = if completed_at.is_some() || r.state == "Completed" {
        STEPS.len()
    } else {
        current.or(last_step).unwrap_or(0)
    };
    let sent_at = |t: &str| {
        d.messages
            .iter()
            .find(|m| m.msg_type == t)
            .map(|m| m.answered_at.unwrap_or(m.created_at))
    };
    let problem = d.messages.iter().rev().find_map(message_problem);
    let mut out = Vec::new();
    for (i, (title, states)) in STEPS.iter().enumerate() {
        // Skip the approval wait of a request that never had one.
        if i == 0 && !r.initiator {
            continue;
        }
        let done_at = STEPS[i + 1..]
            .iter()
            .flat_map(|(_, s)| s.iter())
            .filter_map(|s| entered(d, s))
            .min()
            .or(completed_at)
            .or_else(|| {
                if i == 1 {
                    sent_at("Notification")
                } else {
                    None
                }
            });
        let (status, at, text) = if i < reached {
            let text = match i {
                0 if !r.approved_by.is_empty() => format!("approved by {}", r.approved_by),
                1 => "Notification sent".to_owned(),
                _ => String::new(),
            };
            (Status::Done, done_at, Words::text(text))
        } else if i == reached && !r.ended() {
            let since = states
                .iter()
                .filter_map(|s| entered(d, s))
                .max()
                .or_else(|| {
                    d.steps
                        .iter()
                        .rev()
                        .find(|s| s.event == "delegation.state_changed")
                        .map(|s| s.time)
                })
                .or(Some(r.created_at));
            let mut text = Words::text("waiting for ");
            text.append(waiting_for(d));
            if let Some(since) = since {
                text.push_str(" since ");
                text.push_clock(since);
            }
            if let Some(p) = &problem {
                text.push_str(&format!("; {p}"));
            }
            (Status::Current, since, text)
        } else if i == reached && r.state != "Completed" {
            let why = d
                .steps
                .iter()
                .rev()
                .find(|s| s.event == "delegation.aborted")
                .map(|s| {
                    let v = details(s);
                    let reason = v["reason"].as_str().unwrap_or("").to_owned();
                    let code = v["code"].as_str().unwrap_or("").to_owned();
                    match (code.is_empty(), reason.is_empty()) {
                        (false, false) => format!("{code}: {reason}"),
                        (false, true) => code,
                        _ => reason,
                    }
                })
                .or(problem.clone())
                .unwrap_or_default();
            let text = if why.is_empty() {
                format!("{} here", r.state.to_lowercase())
            } else {
                format!("{} here — {why}", r.state.to_lowercase())
            };
            (Status::Failed, r.ended_at, Words::text(text))
        } else {
            (Status::Pending, None, Words::default())
        };
        out.push(TimelineStep {
            title: (*title).to_owned(),
            status,
            at,
            text,
        });
    }
    if r.state == "Completed" || r.ended() && completed_at.is_some() {
        out.push(TimelineStep {
            title: "Completed".to_owned(),
            status: Status::Done,
            at: completed_at,
            text: Words::text(format!(
                "{} manages the scope",
                if r.role == "dms1" { &r.peer } else { &d.me }
            )),
        });
    }
    if completed_at.is_some() && r.ended() {
        out.push(TimelineStep {
            title: r.state.clone(),
            status: Status::Failed,
            at: r.ended_at,
            text: Words::text(r.outcome.clone()),
        });
    }
    out
}

// ------------------------------------------------------ the sequence diagram

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Dms1,
    Dms2,
    Device,
}

/// One arrow of the sequence diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    pub from: Lane,
    pub to: Lane,
    pub label: String,
    /// The answer, e.g. "202", or what is still awaited.
    pub note: String,
    pub at: i64,
    pub failed: bool,
    pub pending: bool,
}

/// Peer documents and device work in the order they happened.
pub fn sequence(d: &DelegationLive) -> Vec<Arrow> {
    let we = if d.row.role == "dms1" {
        Lane::Dms1
    } else {
        Lane::Dms2
    };
    let they = if we == Lane::Dms1 {
        Lane::Dms2
    } else {
        Lane::Dms1
    };
    let mut out: Vec<Arrow> = d
        .messages
        .iter()
        .map(|m| {
            let (from, to) = if m.direction == "out" {
                (we, they)
            } else {
                (they, we)
            };
            let failed = m.code.is_some_and(|c| !(200..300).contains(&c));
            let pending = m.direction == "out" && m.code.is_none();
            let note = match m.code {
                Some(c) => c.to_string(),
                None if m.direction == "in" => "received".to_owned(),
                None if m.attempts == 1 => "retrying · 1 attempt".to_owned(),
                None if m.attempts > 1 => format!("retrying · {} attempts", m.attempts),
                None => "queued".to_owned(),
            };
            Arrow {
                from,
                to,
                label: m.msg_type.clone(),
                note,
                at: m.created_at,
                failed,
                pending,
            }
        })
        .collect();
    for s in d
        .steps
        .iter()
        .filter(|s| s.event == "delegation.device_work")
    {
        let v = details(s);
        let work = v["work"].as_str().unwrap_or("DM session").to_owned();
        let job = v["job"].as_i64();
        let (note, failed, pending) = match (&d.job, job) {
            (Some(j), Some(id)) if j.id == id => match j.state.as_str() {
                "queued" => ("notified · waiting".to_owned(), false, true),
                "sent" => ("in session".to_owned(), false, true),
                "failed" => (
                    format!(
                        "failed {}",
                        j.status.map(|c| c.to_string()).unwrap_or_default()
                    ),
                    true,
                    false,
                ),
                other => (
                    j.status
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| other.to_owned()),
                    false,
                    false,
                ),
            },
            _ => ("done".to_owned(), false, false),
        };
        out.push(Arrow {
            from: we,
            to: Lane::Device,
            label: format!("DM session: {}", plain_work(&work)),
            note,
            at: s.time,
            failed,
            pending,
        });
    }
    out.sort_by_key(|a| a.at);
    out
}

fn plain_work(work: &str) -> &str {
    match work {
        "Preparing" => "add the new account",
        "Bootstrapping" => "bootstrap and rotate",
        "ReadingAcls" => "read the ACLs",
        "WritingAcls" => "write the ACLs",
        "Reverting" => "revert",
        "DeletingOwnAccount" => "delete own account",
        w => w,
    }
}

// ------------------------------------------------------------ ownership

/// Who manages a subtree of a device, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub authority: String,
    /// A subtree URI, or "everything else".
    pub subtree: String,
    pub rights: String,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub delegation: Option<i64>,
}

/// B.7: per device, which authority manages which subtree, since when and
/// until when. Completed delegations hand their scope (or everything, for
/// `full`) to DMS-2; the rest stays with the device's authority.
pub fn ownership(authority: &str, me: &str, history: &[DelegationRow]) -> Vec<Ownership> {
    let mut out = Vec::new();
    let mut everything = false;
    for d in history.iter().filter(|d| d.state == "Completed") {
        let to = if d.role == "dms1" {
            d.peer.clone()
        } else {
            me.to_owned()
        };
        let since = d.completed_at.or(Some(d.created_at));
        if d.kind == "full" {
            everything = true;
            out.push(Ownership {
                authority: to,
                subtree: "everything".to_owned(),
                rights: "Add, Delete, Exec, Get, Replace".to_owned(),
                since,
                until: d.expires_at,
                delegation: Some(d.id),
            });
        } else {
            for (uri, rights) in &d.scope {
                out.push(Ownership {
                    authority: to.clone(),
                    subtree: uri.clone(),
                    rights: rights.clone(),
                    since,
                    until: d.expires_at,
                    delegation: Some(d.id),
                });
            }
        }
    }
    let full_permanent = history
        .iter()
        .any(|d| d.state == "Completed" && d.kind == "full" && d.term == "permanent");
    if !full_permanent {
        out.push(Ownership {
            authority: if authority.is_empty() {
                me.to_owned()
            } else {
                authority.to_owned()
            },
            subtree: if out.is_empty() {
                "everything"
            } else if everything {
                "everything (shared)"
            } else {
                "everything else"
            }
            .to_owned(),
            rights: String::new(),
            since: None,
            until: None,
            delegation: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> DelegationRow {
        DelegationRow {
            id: 7,
            delegation_id: "u".into(),
            role: "dms1".into(),
            initiator: true,
            devid: "IMEI:1".into(),
            peer: "carrier.example".into(),
            batch_id: Some(1),
            kind: "partial".into(),
            term: "permanent".into(),
            expires_at: None,
            scope: vec![("./Vendor".into(), "Get,Replace".into())],
            reason: String::new(),
            requested_by: "op".into(),
            approved_by: "ap".into(),
            state: state.into(),
            outcome: String::new(),
            wake_at: None,
            created_at: 1_000,
            ended_at: None,
            completed_at: None,
        }
    }

    fn changed(time: i64, to: &str) -> Step {
        Step {
            time,
            event: "delegation.state_changed".into(),
            actor: "x".into(),
            details: format!(r#"{{"from":"","to":"{to}"}}"#),
        }
    }

    fn live(state: &str, steps: Vec<Step>, messages: Vec<PeerMessage>) -> DelegationLive {
        DelegationLive {
            row: row(state),
            me: "corp.example".into(),
            messages,
            steps,
            job: None,
            notified_at: None,
            controls: Controls::default(),
        }
    }

    #[test]
    fn a_refused_message_is_named_in_plain_words() {
        let m = PeerMessage {
            direction: "out".into(),
            msg_type: "Start".into(),
            code: Some(409),
            delivery: "done".into(),
            attempts: 1,
            last_error: String::new(),
            created_at: 5,
            answered_at: Some(6),
            next_attempt_at: None,
        };
        assert_eq!(
            message_problem(&m).unwrap(),
            "the peer refused Start (409 — not valid now)"
        );
    }

    #[test]
    fn the_current_step_says_what_it_waits_for() {
        let d = live(
            "AwaitingAuthChallenge",
            vec![
                changed(1_000, "AwaitingRequestApproval"),
                changed(43_421_000, "AwaitingAuthChallenge"),
            ],
            vec![],
        );
        let t = timeline(&d);
        assert_eq!(t[0].status, Status::Done);
        assert_eq!(t[0].text, "approved by ap");
        assert_eq!(t[1].status, Status::Done);
        assert_eq!(t[2].status, Status::Current);
        assert_eq!(
            t[2].text,
            "waiting for carrier.example to prove who it is (AuthChallenge) since 12:03:41"
        );
        assert_eq!(t[3].status, Status::Pending);
    }

    #[test]
    fn an_aborted_request_fails_where_it_stood() {
        let mut d = live(
            "Aborted",
            vec![
                changed(1_000, "AwaitingRequestApproval"),
                changed(2_000, "Aborted"),
            ],
            vec![],
        );
        d.row.outcome = "aborted".into();
        let t = timeline(&d);
        assert_eq!(t[0].status, Status::Failed);
        assert!(t[1..].iter().all(|s| s.status == Status::Pending));
    }

    #[test]
    fn ownership_splits_the_tree() {
        let mut done = row("Completed");
        done.completed_at = Some(9);
        let o = ownership("corp.example", "corp.example", &[done, row("Aborted")]);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].authority, "carrier.example");
        assert_eq!(o[0].subtree, "./Vendor");
        assert_eq!(
            o[0].since,
            Some(9),
            "dated from completion, not the request"
        );
        assert_eq!(o[1].subtree, "everything else");
    }

    #[test]
    fn a_batch_sorts_by_any_column() {
        let mk = |id: i64, devid: &str, state: &str, ended: Option<i64>| DelegationRow {
            id,
            devid: devid.into(),
            ended_at: ended,
            ..row(state)
        };
        let mut rows = vec![
            mk(1, "IMEI:3", "Completed", None),
            mk(2, "IMEI:1", "Aborted", Some(50)),
            mk(3, "IMEI:2", "UpdatingAcls", Some(20)),
            mk(4, "IMEI:1", "Completed", None),
        ];
        let ids = |r: &[DelegationRow]| r.iter().map(|r| r.id).collect::<Vec<_>>();
        sort_batch(&mut rows, BatchSort::Device, false);
        assert_eq!(ids(&rows), vec![2, 4, 3, 1]);
        sort_batch(&mut rows, BatchSort::Device, true);
        assert_eq!(ids(&rows), vec![1, 3, 2, 4], "ties stay in creation order");
        sort_batch(&mut rows, BatchSort::State, false);
        assert_eq!(ids(&rows), vec![2, 1, 4, 3]);
        sort_batch(&mut rows, BatchSort::Ended, false);
        assert_eq!(ids(&rows), vec![3, 2, 1, 4]);
        sort_batch(&mut rows, BatchSort::Id, true);
        assert_eq!(ids(&rows), vec![4, 3, 2, 1]);
        assert_eq!(BatchSort::parse("ended"), Some(BatchSort::Ended));
        assert_eq!(BatchSort::parse("x"), None);
    }
}

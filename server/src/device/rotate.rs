//! New secrets for an auto-enrolled device: the credentials derived from
//! the factory key are for first contact only, so the enrolling session
//! finds the device's DMAcc account for this server and replaces its CLCRED
//! and SRVCRED `AAuthSecret` with fresh per-device values (PROTOCOL A.4: they
//! take effect from the next session; A.6 for the DMAcc layout).
//!
//! The server cannot know the device's node names, so it reads them within
//! the session, one package at a time, each step queued when the answer to
//! the previous one is in:
//!
//! ```text
//! Get ./DMAcc ─► children <x> ─► Get <x>/ServerID, Get <x>/AppAuth
//!   ─► (ServerID = ours) children <y> ─► Get <x>/AppAuth/<y>/AAuthLevel
//!   ─► CLCRED and SRVCRED found ─► Atomic { Replace …/AAuthSecret × 2 }
//!   ─► 200: the new secrets are the device's; otherwise the old ones stay
//! ```
//!
//! The new secrets wait sealed in the device's row until the device confirms
//! the Atomic. The queued job names its targets only: the values are filled
//! in when the command goes into the session, so no secret is stored in the
//! command queue.

use super::Runtime;
use crate::store::devices::{self, Device};
use crate::store::jobs::{self, Job, JobCommand, Value};
use crate::store::Conn;
use handover_dm::auth::Secret;
use handover_dm::session::{CommandKind, ServerCommand};
use handover_dm::syncml::{self, Command, Data};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Who queues the steps (shown with the jobs, audited for the Replace).
pub const REQUESTED_BY: &str = "system:credentials";

/// Starts the search for the device's account (the device was just enrolled).
pub async fn start(rt: &Runtime, tx: &mut Conn, devid: &str) -> anyhow::Result<()> {
    let get = JobCommand::Get {
        target: "./DMAcc".into(),
        walk: false,
    };
    jobs::enqueue(&rt.db, &mut *tx, devid, &get, REQUESTED_BY, false).await?;
    Ok(())
}

/// One Results item of a client message: its source, whether it lists an
/// interior node's children (Format `node`), and its text.
struct Answer {
    source: String,
    node: bool,
    text: String,
}

fn answers(body: &[u8]) -> Vec<Answer> {
    let Ok(msg) = syncml::decode(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for cmd in &msg.body {
        let Command::Results(r) = cmd else { continue };
        for item in &r.items {
            let Some(source) = item.source.as_ref().map(|s| s.loc_uri.clone()) else {
                continue;
            };
            let node = item
                .meta
                .as_ref()
                .or(r.meta.as_ref())
                .is_some_and(|m| m.format_is("node"));
            let text = match &item.data {
                Some(Data::Text(t)) => t.trim().to_owned(),
                Some(Data::Binary(b)) => String::from_utf8_lossy(b).trim().to_owned(),
                _ => String::new(),
            };
            out.push(Answer { source, node, text });
        }
    }
    out
}

fn children(text: &str) -> impl Iterator<Item = &str> {
    text.split('/').filter(|n| !n.is_empty())
}

/// Queues the next step from the answers in `body` to the steps sent in
/// this session (`open`: the session's jobs still waiting for an answer),
/// before the session decides its next package.
pub async fn advance(
    rt: &Runtime,
    tx: &mut Conn,
    dev: &Device,
    open: &[Job],
    body: &[u8],
) -> anyhow::Result<()> {
    let db = &rt.db;
    let asked: HashSet<String> = open
        .iter()
        .filter(|j| j.requested_by == REQUESTED_BY)
        .filter_map(|j| match j.command() {
            Some(JobCommand::Get { target, .. }) => Some(target),
            _ => None,
        })
        .collect();
    if asked.is_empty() {
        return Ok(());
    }
    let answers: Vec<Answer> = answers(body)
        .into_iter()
        .filter(|a| asked.contains(&a.source))
        .collect();
    let mut next = Vec::new();
    // ./DMAcc/<x>/ServerID values and ./DMAcc/<x>/AppAuth children.
    let mut ours = BTreeSet::new();
    let mut app_auth: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    // ./DMAcc/<x>/AppAuth/<y>/AAuthLevel values, by account.
    let mut levels: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for a in &answers {
        let segs: Vec<&str> = a.source.split('/').collect();
        match segs.as_slice() {
            [".", "DMAcc"] if a.node => {
                for x in children(&a.text) {
                    next.push(format!("./DMAcc/{x}/ServerID"));
                    next.push(format!("./DMAcc/{x}/AppAuth"));
                }
            }
            [".", "DMAcc", x, "ServerID"] if a.text == dev.server_name => {
                ours.insert(*x);
            }
            [".", "DMAcc", x, "AppAuth"] if a.node => {
                app_auth.insert(x, children(&a.text).collect());
            }
            [".", "DMAcc", x, "AppAuth", y, "AAuthLevel"] => {
                levels.entry(x).or_default().insert(a.text.as_str(), y);
            }
            _ => {}
        }
    }
    for (x, ys) in &app_auth {
        if ours.contains(x) {
            next.extend(
                ys.iter()
                    .map(|y| format!("./DMAcc/{x}/AppAuth/{y}/AAuthLevel")),
            );
        }
    }
    for c in next {
        let get = JobCommand::Get {
            target: c,
            walk: false,
        };
        if get.validate().is_ok() {
            jobs::enqueue(db, &mut *tx, &dev.devid, &get, REQUESTED_BY, false).await?;
        }
    }
    // Both levels of one account found: replace both secrets at once.
    if let Some((x, l)) = levels
        .iter()
        .find(|(_, l)| l.contains_key("CLCRED") && l.contains_key("SRVCRED"))
    {
        let replace = |y: &str| JobCommand::Replace {
            target: format!("./DMAcc/{x}/AppAuth/{y}/AAuthSecret"),
            value: Value {
                format: Some("chr".into()),
                mime: Some("text/plain".into()),
                ..Value::default()
            },
        };
        // Order matters: CLCRED first, SRVCRED second (see `command`).
        let atomic = JobCommand::Atomic {
            commands: vec![replace(l["CLCRED"]), replace(l["SRVCRED"])],
        };
        if atomic.validate().is_ok() {
            let new = || Secret::new(crate::secrets::random_token(18));
            devices::set_pending_secrets(db, tx, &rt.vault, &dev.devid, &new(), &new()).await?;
            jobs::enqueue(db, &mut *tx, &dev.devid, &atomic, REQUESTED_BY, false).await?;
        }
    }
    Ok(())
}

/// The session command for a job of this module: the Replace of the
/// secrets gets the pending values, CLCRED's then SRVCRED's.
pub async fn command(
    rt: &Runtime,
    tx: &mut Conn,
    job: &Job,
    c: &JobCommand,
) -> anyhow::Result<ServerCommand> {
    let mut cmd = c.to_server(job.id);
    if let CommandKind::Atomic(children) = &mut cmd.kind {
        let dev = devices::get_in(&rt.db, tx, &job.devid)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no device {}", job.devid))?;
        let (client, server) = dev
            .pending_secrets(&rt.vault)?
            .ok_or_else(|| anyhow::anyhow!("no new secrets for {}", job.devid))?;
        for (child, secret) in children.iter_mut().zip([client, server]) {
            if let CommandKind::Replace { data, .. } = &mut child.kind {
                *data = secret.expose().as_bytes().to_vec();
            }
        }
    }
    Ok(cmd)
}

/// The device answered the Replace: on success the new secrets are the
/// device's from its next session; otherwise they are dropped.
pub async fn finish(rt: &Runtime, tx: &mut Conn, job: &Job) -> anyhow::Result<()> {
    if !matches!(job.command(), Some(JobCommand::Atomic { .. })) || job.state == "sent" {
        return Ok(());
    }
    devices::settle_pending_secrets(&rt.db, tx, &job.devid, job.state == "succeeded").await?;
    Ok(())
}

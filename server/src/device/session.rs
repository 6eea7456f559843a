//! One DM message through the server: find the device and its stored
//! session, hand queued jobs to the session, run the sans-IO
//! [`ServerSession`], and store the session, the jobs and the inventory in
//! one transaction, so any instance sharing the database continues the
//! session and a restart loses nothing.

use super::events::DeviceEvent;
use super::{rotate, tree_cache, Runtime};
use crate::audit::{self, Event, NewEntry};
use crate::store::jobs::{self, Job, JobCommand};
use crate::store::Conn;
use crate::store::{devices, throttle, Writes};
use handover_dm::auth::{AuthType, Nonce, Secret, StoredCredential};
use handover_dm::session::{
    DeviceAccount, EndReason, Incoming, ReceivedItem, ServerEvent, ServerSession,
};
use handover_dm::syncml::{self, Command};
use handover_dm::tree::Timestamp;
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};

/// The DevDetail leaves read on a device's first session (PROTOCOL A.6).
pub const DEVDETAIL_LEAVES: &[&str] = &[
    "DevTyp",
    "OEM",
    "FwV",
    "SwV",
    "HwV",
    "LrgObj",
    "URI/MaxDepth",
    "URI/MaxTotLen",
    "URI/MaxSegLen",
];

/// The error of a job the device did not run because it refused the
/// server's credentials (A.4): it is sent once more.
pub const SENT_AGAIN: &str =
    "the device refused the server's credentials; sent again at its next session";

/// Who queues the automatic DevDetail reads.
pub const SYSTEM_DEVDETAIL: &str = "system:devdetail";

/// Failed authentications per device before the endpoint stops listening
/// for a while.
pub const DM_POLICY: throttle::Policy = throttle::Policy {
    free_failures: 3,
    lock_after: 10,
    lock_ms: 15 * 60 * 1000,
    max_delay_ms: 60_000,
};

/// The answer to one request.
#[derive(Debug)]
pub enum Reply {
    /// A SyncML message in the request's encoding, with its
    /// `x-syncml-hmac` header value when SRVCRED uses HMAC (A.4).
    Message(Vec<u8>, Option<String>),
    /// No SyncML answer: an HTTP status and a reason for people.
    Refused(u16, &'static str),
}

fn throttle_key(devid: &str) -> String {
    format!("dm:{devid}")
}

/// An account no device can satisfy: an unknown DevId is challenged and
/// ended exactly like a known one with a wrong secret (A.4).
fn throwaway_account() -> DeviceAccount {
    let secret = || Secret::new(crate::secrets::random_token(24));
    let nonce = || Nonce::generate(&mut rand::rngs::OsRng);
    DeviceAccount {
        client: StoredCredential {
            auth_type: AuthType::Md5,
            name: crate::secrets::random_token(12),
            secret: secret(),
        },
        client_nonce: nonce(),
        server: StoredCredential {
            auth_type: AuthType::Md5,
            name: "unknown".into(),
            secret: secret(),
        },
        server_nonce: nonce(),
    }
}

/// A session as `dm_sessions.state` keeps it.
#[derive(serde::Deserialize)]
struct StoredState {
    session: ServerSession,
    #[serde(default)]
    commands_sent: i64,
}

/// The same, written without an intermediate JSON value.
#[derive(serde::Serialize)]
struct StateRef<'a> {
    session: &'a ServerSession,
    commands_sent: i64,
}

struct Stored {
    session: ServerSession,
    messages: i64,
    started_at: i64,
    commands: i64,
    fresh: bool,
}

fn outcome_of(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Completed => "completed",
        EndReason::AuthFailed => "auth-failed",
        EndReason::ServerAuthRejected => "error",
        EndReason::Aborted => "aborted",
    }
}

/// Handles one client message.
pub async fn handle(
    rt: &Runtime,
    body: &[u8],
    hmac: Option<&str>,
    source: &str,
) -> anyhow::Result<Reply> {
    let db = &rt.db;
    // Decoded once: the DevId and SessionID find the account and the
    // stored session (A.2), and the session handles the same message.
    let Ok(msg) = syncml::decode(body) else {
        return Ok(Reply::Refused(400, "not a SyncML DM message"));
    };
    let (devid, sid) = (msg.hdr.source.loc_uri.clone(), msg.hdr.session_id.clone());
    if devid.is_empty() || devid.len() > 255 || sid.is_empty() || sid.len() > 32 {
        return Ok(Reply::Refused(
            400,
            "missing or oversized DevId or SessionID",
        ));
    }
    let now = rt.settings.clock.now_ms();
    let (mut tx, mut device) = devices::begin_locked(db, &devid).await?;
    // Read in the message's transaction: on SQLite the writer's page cache
    // answers it, where a reader's would start cold after each commit.
    let th = throttle::get_in(db, &mut *tx, &throttle_key(&devid)).await?;
    if th.wait_ms(&DM_POLICY, now).is_some() {
        audit::append_in(
            db,
            &mut *tx,
            &NewEntry::new(Event::DmAuthThrottled, format!("device:{devid}"), &devid)
                .source(source)
                .details(serde_json::json!({ "failures": th.failures })),
        )
        .await?;
        tx.commit().await?;
        return Ok(Reply::Refused(
            429,
            "too many failed authentications; try later",
        ));
    }
    // What the message changes and reads back nowhere, sent with the
    // commit.
    let mut w = Writes::default();
    // An unknown device the enrolment policy admits is judged against its
    // derived credentials; it is only stored once it authenticates.
    let candidate = match &device {
        Some(_) => None,
        None => rt.settings.enrolment.account_for(&devid),
    };
    let mut account = match (&device, &candidate) {
        (Some(d), _) => d.account(&rt.vault)?,
        (None, Some(a)) => a.clone(),
        (None, None) => throwaway_account(),
    };
    let mut bus = Vec::new();
    let mut audits = Vec::new();

    // The stored session (ended ones are deleted), and in the same statement
    // the device's other sessions it left silent (see below).
    let starts = msg.hdr.msg_id.get() == 1;
    let rows = sqlx::query(&db.sql(
        "SELECT session_id, state, messages, started_at, updated_at FROM dm_sessions \
         WHERE devid = $1 AND (session_id = $2 OR updated_at < $3)",
    ))
    .bind(&devid)
    .bind(&sid)
    .bind(now - ABANDONED_AFTER_MS)
    .fetch_all(&mut *tx)
    .await?;
    let (mut row, mut abandoned) = (None, Vec::new());
    for r in rows {
        if r.try_get::<String, _>("session_id")? == sid {
            row = Some(r);
        } else {
            abandoned.push(r);
        }
    }
    let mut stored = None;
    if let Some(r) = row {
        let updated: i64 = r.try_get("updated_at")?;
        let state: String = r.try_get("state")?;
        let messages: i64 = r.try_get("messages")?;
        let started_at: i64 = r.try_get("started_at")?;
        let expired = now - updated > rt.settings.idle_ms;
        // The device started over with the same SessionID (e.g. it
        // restarted mid-session and reuses its id, A.2): the old session is
        // over; what it transmitted is not sent again.
        let restarted = !expired && messages > 0 && starts;
        let too_many = !expired && !restarted && messages >= rt.settings.max_messages;
        if expired || restarted || too_many {
            let outcome = if expired { "expired" } else { "aborted" };
            let ending = Ending::of_stored(&state);
            close(
                rt, &mut *tx, &mut w, None, &devid, &sid, &ending, outcome, started_at, messages,
                source, &mut bus,
            )
            .await?;
            if too_many {
                w.run(db, &mut *tx).await?;
                tx.commit().await?;
                publish(rt, bus);
                return Ok(Reply::Refused(429, "too many messages in this session"));
            }
        } else {
            let s: StoredState = serde_json::from_str(&state)?;
            stored = Some(Stored {
                session: s.session,
                messages,
                started_at,
                commands: s.commands_sent,
                fresh: false,
            });
        }
    }
    if stored.is_none() && starts {
        // A device runs one session at a time with a server: one it left
        // silent for a while before starting this one is over (the server
        // died under it, or the network). Its jobs are settled now, as at
        // expiry, instead of waiting out the idle limit.
        for r in abandoned {
            close(
                rt,
                &mut *tx,
                &mut w,
                None,
                &devid,
                &r.try_get::<String, _>("session_id")?,
                &Ending::of_stored(&r.try_get::<String, _>("state")?),
                "aborted",
                r.try_get("started_at")?,
                r.try_get("messages")?,
                source,
                &mut bus,
            )
            .await?;
        }
    }
    // Jobs of a session closed above that go back to the queue are sent in
    // this one: in the database before the queue is read.
    w.run(db, &mut *tx).await?;
    let mut st = stored.unwrap_or_else(|| {
        let mut session = ServerSession::new();
        session.set_max_msg_size(rt.settings.max_body as u64);
        Stored {
            session,
            messages: 0,
            started_at: now,
            commands: 0,
            fresh: true,
        }
    });

    let incoming = Incoming {
        bytes: body,
        hmac,
        tls: false,
    };
    // A device that took new secrets (see `rotate`) whose confirmation never
    // arrived, because the session broke off, authenticates with them: they
    // are its secrets now. One that authenticates with its old ones never
    // got them.
    if let Some(pending) = device
        .as_ref()
        .map(|d| d.pending_secrets(&rt.vault))
        .transpose()?
        .flatten()
    {
        let mut with_pending = account.clone();
        (with_pending.client.secret, with_pending.server.secret) = pending;
        if authenticates(&st.session, incoming, &msg, &account, now) {
            devices::settle_pending_secrets(db, &mut *tx, &devid, false).await?;
        } else if authenticates(&st.session, incoming, &msg, &with_pending, now) {
            devices::settle_pending_secrets(db, &mut *tx, &devid, true).await?;
            account = with_pending;
        }
    }
    if candidate.is_some() && authenticates(&st.session, incoming, &msg, &account, now) {
        enrol(rt, &mut *tx, &devid, &account).await?;
        // The derived secrets were for first contact: this session replaces them.
        rotate::start(rt, &mut *tx, &devid).await?;
        device = devices::get_in(db, &mut *tx, &devid).await?;
        audits.push(
            NewEntry::new(Event::DeviceEnrolled, format!("device:{devid}"), &devid)
                .source(source)
                .details(serde_json::json!({
                    "session_id": sid,
                    "auth": devices::auth_text(account.client.auth_type),
                })),
        );
    }

    // The session's jobs waiting for an answer, read once: the answers in
    // this message update them (see `cached`).
    let mut job_cache: BTreeMap<i64, Job> = BTreeMap::new();
    if let Some(dev) = &device {
        // Both read the answers in this message to commands already sent.
        // A session begun with this message has sent nothing yet.
        let open = if st.fresh {
            Vec::new()
        } else {
            jobs::open_in_session(db, &mut *tx, &devid, &sid).await?
        };
        expand_walks(rt, &mut *tx, &devid, &open, body).await?;
        rotate::advance(rt, &mut *tx, dev, &open, body).await?;
        job_cache.extend(open.into_iter().map(|j| (j.id, j)));
        if dev.first_seen.is_none()
            && !jobs::exists_by(db, &mut *tx, &devid, SYSTEM_DEVDETAIL).await?
        {
            for leaf in DEVDETAIL_LEAVES {
                let c = JobCommand::Get {
                    target: format!("./DevDetail/{leaf}"),
                    walk: false,
                };
                jobs::enqueue(db, &mut *tx, &devid, &c, SYSTEM_DEVDETAIL, false).await?;
            }
        }
        for j in jobs::take_queued(db, &mut *tx, &devid, &sid).await? {
            // Kept with the others: if the session ends with this message,
            // they are among its unanswered jobs.
            let id = j.id;
            job_cache.insert(id, j);
            let j = &job_cache[&id];
            if let Some(c) = j.command() {
                let cmd = if j.requested_by == rotate::REQUESTED_BY {
                    rotate::command(rt, &mut *tx, j, &c).await?
                } else {
                    c.to_server(j.id)
                };
                st.session.push_command(cmd);
                st.commands += 1;
                bus.push(DeviceEvent::JobUpdated {
                    devid: devid.clone(),
                    job: j.id,
                    state: "sent".into(),
                    status: None,
                });
            }
        }
    }

    if let Err(e) = st.session.handle_decoded_at(
        incoming,
        msg,
        &account,
        timestamp(now),
        &mut rand::rngs::OsRng,
    ) {
        tracing::info!(devid, error = %e, "DM message refused");
        return Ok(Reply::Refused(400, "the message does not fit this session"));
    }
    st.messages += 1;

    let mut dirty: HashSet<i64> = HashSet::new();
    let mut auth_failed = false;
    let mut authenticated = false;
    let mut ended = None;
    let mut inventory_items: Vec<ReceivedItem> = Vec::new();
    let (mut client_nonce, mut server_nonce) = (None, None);
    while let Some(ev) = st.session.poll_event() {
        match ev {
            ServerEvent::Authenticated => authenticated = true,
            ServerEvent::AuthFailed { status } => {
                auth_failed = true;
                audits.push(
                    NewEntry::new(Event::DmAuthFailed, format!("device:{devid}"), &devid)
                        .source(source)
                        .details(serde_json::json!({
                            "session_id": sid, "status": status.code(), "known": device.is_some(),
                        })),
                );
            }
            ServerEvent::DevInfo(info) if device.is_some() => {
                let d = device.as_ref().expect("checked");
                let same =
                    |new: &Option<String>, old: &str| new.as_deref().is_none_or(|n| n == old);
                if d.first_seen.is_some()
                    && same(&info.man, &d.man)
                    && same(&info.model, &d.model)
                    && same(&info.dmv, &d.dmv)
                    && same(&info.lang, &d.lang)
                {
                    // Known and unchanged: nothing to write (most sessions).
                    continue;
                }
                devices::set_devinfo(
                    db,
                    &mut *tx,
                    &devid,
                    info.man.as_deref().unwrap_or(&d.man),
                    info.model.as_deref().unwrap_or(&d.model),
                    info.dmv.as_deref().unwrap_or(&d.dmv),
                    info.lang.as_deref().unwrap_or(&d.lang),
                )
                .await?;
                // Package 1's DevInfo goes into the cached tree too (A.3, A.6).
                for (leaf, v) in [
                    ("DevId", &info.dev_id),
                    ("Man", &info.man),
                    ("Mod", &info.model),
                    ("DmV", &info.dmv),
                    ("Lang", &info.lang),
                ] {
                    if let Some(v) = v {
                        inventory_items.push(ReceivedItem {
                            source: Some(format!("./DevInfo/{leaf}")),
                            format: Some("chr".into()),
                            mime: Some("text/plain".into()),
                            data: v.clone().into_bytes(),
                        });
                    }
                }
                bus.push(DeviceEvent::DevInfoUpdated {
                    devid: devid.clone(),
                });
            }
            ServerEvent::NextNonces {
                client_next,
                server_next,
            } if device.is_some() => {
                client_nonce = client_next.or(client_nonce);
                server_nonce = server_next.or(server_nonce);
            }
            ServerEvent::CommandStatus { job, cmd, status } => {
                let top = jobs::top_job(job);
                let Some(j) = cached(db, &mut *tx, &mut job_cache, top).await? else {
                    continue;
                };
                let refused_server = matches!(status.code(), 401 | 407)
                    && j.requested_by != rotate::REQUESTED_BY
                    && j.error != SENT_AGAIN;
                if job as i64 == top && refused_server {
                    // A.4: the device refused the server's credentials and ran
                    // nothing; its Chal has renewed the server nonce. Once
                    // more at its next session, then it counts as failed.
                    j.state = "queued".into();
                    j.status = None;
                    j.results = None;
                    j.error = SENT_AGAIN.to_owned();
                } else if job as i64 == top {
                    j.status = Some(status.code() as i64);
                    if status.is_success() {
                        j.state = "succeeded".into();
                        j.error.clear();
                    } else {
                        j.state = "failed".into();
                        j.error = status.meaning().to_owned();
                    }
                } else if !(j.state == "queued" && j.error == SENT_AGAIN) {
                    let r = j.results.get_or_insert_with(|| serde_json::json!({}));
                    let list = r
                        .as_object_mut()
                        .expect("results are an object")
                        .entry("children")
                        .or_insert_with(|| serde_json::json!([]));
                    if let Some(a) = list.as_array_mut() {
                        a.push(serde_json::json!({
                            "cmd": cmd, "status": status.code(), "meaning": status.meaning(),
                        }));
                    }
                }
                dirty.insert(top);
            }
            ServerEvent::CommandResults { job, items } => {
                let top = jobs::top_job(job);
                if let Some(j) = cached(db, &mut *tx, &mut job_cache, top).await? {
                    let r = j.results.get_or_insert_with(|| serde_json::json!({}));
                    let list = r
                        .as_object_mut()
                        .expect("results are an object")
                        .entry("items")
                        .or_insert_with(|| serde_json::json!([]));
                    if let Some(a) = list.as_array_mut() {
                        a.extend(items.iter().map(item_json));
                    }
                    dirty.insert(top);
                }
                inventory_items.extend(items);
            }
            ServerEvent::SessionEnded { reason } => ended = Some(reason),
            _ => {}
        }
    }
    let provisioned = device.as_ref().is_some_and(|d| d.state == "provisioned");
    // The last contact moves in steps of `LAST_SEEN_STEP_MS`: it is in most
    // of the device table's indexes, and a device polling often would
    // rewrite them all every session. The session history keeps exact times.
    let stale = device.as_ref().is_none_or(|d| {
        d.last_seen
            .is_none_or(|t| !(0..LAST_SEEN_STEP_MS).contains(&(now - t)))
    });
    devices::set_nonces_seen(
        &mut w,
        &devid,
        client_nonce.as_ref(),
        server_nonce.as_ref(),
        (authenticated && (stale || provisioned)).then_some(now),
        provisioned,
    );
    if authenticated {
        bus.push(DeviceEvent::SessionStarted {
            devid: devid.clone(),
            session_id: sid.clone(),
        });
    }
    if !inventory_items.is_empty() {
        // Read under the lock: nothing else changes them meanwhile.
        if let Some((old_detail, old_tree)) = devices::inventory_in(db, &mut *tx, &devid).await? {
            let (tree, dd) = tree_cache::merge(&old_tree, &inventory_items);
            let detail = if dd.is_empty() {
                None
            } else {
                let mut detail: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&old_detail).unwrap_or_default();
                for (k, v) in dd {
                    detail.insert(k, serde_json::Value::String(v));
                }
                Some(serde_json::Value::Object(detail).to_string())
            };
            // Values read again and unchanged (a routine Get): no write.
            if tree.is_some() || detail.as_ref().is_some_and(|t| *t != old_detail) {
                devices::set_inventory(
                    &mut w,
                    &devid,
                    detail.as_deref().unwrap_or(&old_detail),
                    tree.as_deref().unwrap_or(&old_tree),
                );
            }
            bus.push(DeviceEvent::InventoryUpdated {
                devid: devid.clone(),
            });
        }
    }
    // The jobs this message settled, as `w` will write them.
    for id in dirty {
        let j = &job_cache[&id];
        jobs::finish_later(&mut w, j);
        if j.requested_by == rotate::REQUESTED_BY {
            rotate::finish(rt, &mut *tx, j).await?;
        }
        if j.state != "sent" && j.state != "queued" {
            audits.extend(change_audits(j));
        }
        bus.push(DeviceEvent::JobUpdated {
            devid: devid.clone(),
            job: j.id,
            state: j.state.clone(),
            status: j.status,
        });
    }

    let reply = st.session.poll_transmit();
    if let Some(reason) = ended {
        // The jobs still waiting for an answer, as `w` will leave them:
        // those read at the start and those sent in this reply.
        let open = job_cache
            .into_values()
            .filter(|j| j.state == "sent" && j.session_id == sid && j.devid == devid)
            .collect();
        close(
            rt,
            &mut *tx,
            &mut w,
            Some(open),
            &devid,
            &sid,
            &Ending::of(&st.session, st.commands),
            outcome_of(reason),
            st.started_at,
            st.messages,
            source,
            &mut bus,
        )
        .await?;
    } else {
        // Only a session that goes on is stored.
        let state = serde_json::to_string(&StateRef {
            session: &st.session,
            commands_sent: st.commands,
        })?;
        save(
            &mut w,
            &devid,
            &sid,
            &state,
            st.messages,
            st.started_at,
            now,
            st.fresh,
        );
    }
    // The audit entries commit with the changes they record.
    audit::append_all_in(db, &mut *tx, &audits).await?;
    tx.commit_with(db, &mut w).await?;

    let key = throttle_key(&devid);
    if auth_failed {
        throttle::fail(db, &key, &DM_POLICY, now).await?;
    } else if authenticated && th.failures > 0 {
        // Only a device with failures on record has anything to clear: no
        // write for the usual message.
        throttle::clear(db, &key).await?;
    }
    publish(rt, bus);
    Ok(match reply {
        Some(t) => Reply::Message(t.bytes, t.hmac),
        None => Reply::Refused(500, "no answer"),
    })
}

/// Whether `incoming` authenticates against `account` in this session,
/// judged on a copy so the session itself is untouched.
fn authenticates(
    session: &ServerSession,
    incoming: Incoming<'_>,
    msg: &syncml::Message,
    account: &DeviceAccount,
    now: i64,
) -> bool {
    let mut trial = session.clone();
    if trial
        .handle_decoded_at(
            incoming,
            msg.clone(),
            account,
            timestamp(now),
            &mut rand::rngs::OsRng,
        )
        .is_err()
    {
        return false;
    }
    std::iter::from_fn(|| trial.poll_event()).any(|e| matches!(e, ServerEvent::Authenticated))
}

/// Stores an auto-enrolled device with the credentials it authenticated
/// with, sealed like an import's.
async fn enrol(
    rt: &Runtime,
    tx: &mut Conn,
    devid: &str,
    account: &DeviceAccount,
) -> anyhow::Result<()> {
    let line = devices::ImportLine {
        devid: devid.to_owned(),
        auth: account.client.auth_type,
        client_name: account.client.name.clone(),
        client_secret: account.client.secret.clone(),
        client_nonce: account.client_nonce.clone(),
        server_name: account.server.name.clone(),
        server_secret: account.server.secret.clone(),
        server_nonce: account.server_nonce.clone(),
        push_address: String::new(),
    };
    devices::insert_in(&rt.db, tx, &rt.vault, &line).await?;
    Ok(())
}

/// The runtime's milliseconds as the DM core's seconds.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp((ms / 1000).max(0) as u64)
}

/// How far a device's recorded last contact may lag behind its latest
/// authenticated session.
pub const LAST_SEEN_STEP_MS: i64 = 60_000;

/// An open session of a device that starts another one (its MsgID 1,
/// A.2) and has been silent this long is over (longer than a device waits
/// for an answer).
const ABANDONED_AFTER_MS: i64 = 30_000;

fn publish(rt: &Runtime, bus: Vec<DeviceEvent>) {
    for e in bus {
        rt.bus.publish(e);
    }
}

fn item_json(i: &ReceivedItem) -> serde_json::Value {
    let mut v = serde_json::json!({
        "source": i.source, "format": i.format, "type": i.mime,
    });
    match std::str::from_utf8(&i.data) {
        Ok(t) => v["data"] = serde_json::Value::String(t.to_owned()),
        Err(_) => {
            use base64::Engine;
            v["data_b64"] = base64::engine::general_purpose::STANDARD
                .encode(&i.data)
                .into()
        }
    }
    v
}

async fn cached<'a>(
    db: &crate::store::Db,
    tx: &mut Conn,
    cache: &'a mut BTreeMap<i64, Job>,
    id: i64,
) -> Result<Option<&'a mut Job>, sqlx::Error> {
    if let std::collections::btree_map::Entry::Vacant(e) = cache.entry(id) {
        match jobs::lock_one(db, tx, id).await? {
            Some(j) => {
                e.insert(j);
            }
            None => return Ok(None),
        }
    }
    Ok(cache.get_mut(&id))
}

/// Audit entries for a finished job that touched an ACL or a DMAcc.
fn change_audits(j: &Job) -> Vec<NewEntry> {
    let Some(cmd) = j.command() else {
        return Vec::new();
    };
    let actor = if j.requested_by.is_empty() {
        "system".to_owned()
    } else {
        j.requested_by.clone()
    };
    cmd.targets()
        .into_iter()
        .filter_map(|(name, target)| {
            let event = if name == "Replace" && target.ends_with("?prop=ACL") {
                Event::DmAclChanged
            } else if matches!(name, "Add" | "Delete" | "Replace")
                && (target == "./DMAcc" || target.starts_with("./DMAcc/"))
            {
                Event::DmAccountChanged
            } else {
                return None;
            };
            Some(
                NewEntry::new(event, &actor, &j.devid).details(serde_json::json!({
                    "job": j.id, "cmd": name, "target": target, "state": j.state,
                    "status": j.status,
                })),
            )
        })
        .collect()
}

/// A full tree read goes on within the session: an interior node's Get
/// results in this message queue Gets of its children (values and ACLs)
/// before the session decides its next package.
async fn expand_walks(
    rt: &Runtime,
    tx: &mut Conn,
    devid: &str,
    open: &[Job],
    body: &[u8],
) -> anyhow::Result<()> {
    let db = &rt.db;
    let walking: HashSet<String> = open
        .iter()
        .filter_map(|j| match j.command() {
            Some(JobCommand::Get { target, walk: true }) => Some(target),
            _ => None,
        })
        .collect();
    if walking.is_empty() {
        return Ok(());
    }
    let Ok(msg) = syncml::decode(body) else {
        return Ok(());
    };
    for cmd in &msg.body {
        let Command::Results(r) = cmd else { continue };
        for item in &r.items {
            let Some(src) = item.source.as_ref().map(|s| s.loc_uri.as_str()) else {
                continue;
            };
            let node = item
                .meta
                .as_ref()
                .or(r.meta.as_ref())
                .is_some_and(|m| m.format_is("node"));
            if !node || !walking.contains(src) {
                continue;
            }
            let names = match &item.data {
                Some(syncml::Data::Text(t)) => t.clone(),
                _ => String::new(),
            };
            for name in names.split('/').filter(|n| !n.is_empty()) {
                let child = if src == "." {
                    format!("./{name}")
                } else {
                    format!("{src}/{name}")
                };
                let get = JobCommand::Get {
                    target: child.clone(),
                    walk: true,
                };
                let acl = JobCommand::Get {
                    target: format!("{child}?prop=ACL"),
                    walk: false,
                };
                if get.validate().is_ok() {
                    jobs::enqueue(db, &mut *tx, devid, &get, "system:tree-read", false).await?;
                    jobs::enqueue(db, &mut *tx, devid, &acl, "system:tree-read", false).await?;
                }
            }
        }
    }
    Ok(())
}

/// Queues a full read of the device's tree (values and ACLs of every
/// node), from the root.
pub async fn queue_tree_read(rt: &Runtime, devid: &str, who: &str) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for c in [
        JobCommand::Get {
            target: ".".into(),
            walk: true,
        },
        JobCommand::Get {
            target: ".?prop=ACL".into(),
            walk: false,
        },
    ] {
        ids.push(jobs::enqueue(&rt.db, rt.db.pool(), devid, &c, who, false).await?);
    }
    Ok(ids)
}

#[allow(clippy::too_many_arguments)]
fn save(
    w: &mut Writes,
    devid: &str,
    sid: &str,
    state: &str,
    messages: i64,
    started_at: i64,
    now: i64,
    fresh: bool,
) {
    if fresh {
        // A row left by an earlier session with this id is replaced.
        session_row(
            w,
            "INSERT INTO dm_sessions (devid, session_id, state, messages, started_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (devid, session_id) DO UPDATE SET state = excluded.state, \
             messages = excluded.messages, started_at = excluded.started_at, \
             updated_at = excluded.updated_at",
            [devid, sid, state],
            [messages, started_at, now],
        );
    } else {
        w.push(
            "UPDATE dm_sessions SET state = $3, messages = $4, updated_at = $5 \
             WHERE devid = $1 AND session_id = $2",
            vec![
                devid.into(),
                sid.into(),
                state.into(),
                messages.into(),
                now.into(),
            ],
        );
    }
}

/// A session's row written by `sql`, whose placeholders are, in order, the
/// device, the SessionID, the state, the message count, the start and now.
fn session_row(w: &mut Writes, sql: &'static str, text: [&str; 3], numbers: [i64; 3]) {
    let mut values: Vec<crate::store::Value> = text.into_iter().map(Into::into).collect();
    values.extend(numbers.map(Into::into));
    w.push(sql, values);
}

/// What ending a session needs to know of its state.
struct Ending {
    authenticated: bool,
    /// Jobs of commands not transmitted yet (queued, or the rest of a
    /// package split over messages).
    untransmitted: HashSet<i64>,
    commands: i64,
}

impl Ending {
    fn of(session: &ServerSession, commands: i64) -> Ending {
        Ending {
            authenticated: session.is_authenticated(),
            untransmitted: session.untransmitted_jobs().map(jobs::top_job).collect(),
            commands,
        }
    }

    /// From a session as `dm_sessions.state` keeps it; one that cannot be
    /// read counts as never authenticated (its jobs go back to the queue).
    fn of_stored(state: &str) -> Ending {
        match serde_json::from_str::<StoredState>(state) {
            Ok(s) => Ending::of(&s.session, s.commands_sent),
            Err(_) => Ending {
                authenticated: false,
                untransmitted: HashSet::new(),
                commands: 0,
            },
        }
    }
}

/// Ends a session: its row deleted, a history row, and its unfinished jobs
/// either back in the queue (never transmitted) or failed (transmitted,
/// no answer — they may have run, so they are not sent twice).
#[allow(clippy::too_many_arguments)]
async fn close(
    rt: &Runtime,
    tx: &mut Conn,
    w: &mut Writes,
    open: Option<Vec<Job>>,
    devid: &str,
    sid: &str,
    ending: &Ending,
    outcome: &str,
    started_at: i64,
    messages: i64,
    source: &str,
    bus: &mut Vec<DeviceEvent>,
) -> anyhow::Result<()> {
    let db = &rt.db;
    let now = rt.settings.clock.now_ms();
    let open = match open {
        Some(open) => open,
        None => jobs::open_in_session(db, tx, devid, sid).await?,
    };
    let mut requeue = Vec::new();
    for mut j in open {
        if !ending.authenticated || ending.untransmitted.contains(&j.id) {
            requeue.push(j.id);
            continue;
        }
        j.state = "failed".into();
        j.error = format!("the session ended ({outcome}) before the device answered");
        jobs::finish_later(w, &j);
        bus.push(DeviceEvent::JobUpdated {
            devid: devid.to_owned(),
            job: j.id,
            state: j.state.clone(),
            status: None,
        });
    }
    jobs::requeue_later(w, &requeue);
    // Its record is the history row below; the session's state goes.
    w.push(
        "DELETE FROM dm_sessions WHERE devid = $1 AND session_id = $2",
        vec![devid.into(), sid.into()],
    );
    devices::record_session(
        w,
        devid,
        &devices::SessionRecord {
            session_id: sid.to_owned(),
            started_at,
            ended_at: now,
            outcome: outcome.to_owned(),
            messages,
            commands: ending.commands,
            source: source.to_owned(),
        },
    );
    bus.push(DeviceEvent::SessionEnded {
        devid: devid.to_owned(),
        session_id: sid.to_owned(),
        outcome: outcome.to_owned(),
    });
    Ok(())
}

/// Ends every session idle for longer than the limit (`expired`); returns
/// how many.
pub async fn sweep_expired(rt: &Runtime) -> anyhow::Result<usize> {
    let db = &rt.db;
    let cutoff = rt.settings.clock.now_ms() - rt.settings.idle_ms;
    let rows =
        sqlx::query(&db.sql("SELECT devid, session_id FROM dm_sessions WHERE updated_at < $1"))
            .bind(cutoff)
            .fetch_all(db.pool())
            .await?;
    let mut n = 0;
    for r in rows {
        let devid: String = r.try_get("devid")?;
        let sid: String = r.try_get("session_id")?;
        let mut tx = db.begin_write().await?;
        devices::lock(db, &mut *tx, &devid).await?;
        let row = sqlx::query(&db.sql(
            "SELECT state, messages, started_at FROM dm_sessions \
             WHERE devid = $1 AND session_id = $2 AND updated_at < $3",
        ))
        .bind(&devid)
        .bind(&sid)
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await?;
        let mut bus = Vec::new();
        if let Some(r) = row {
            let mut w = Writes::default();
            close(
                rt,
                &mut *tx,
                &mut w,
                None,
                &devid,
                &sid,
                &Ending::of_stored(&r.try_get::<String, _>("state")?),
                "expired",
                r.try_get("started_at")?,
                r.try_get("messages")?,
                "",
                &mut bus,
            )
            .await?;
            w.run(db, &mut *tx).await?;
            n += 1;
        }
        tx.commit().await?;
        publish(rt, bus);
    }
    Ok(n)
}

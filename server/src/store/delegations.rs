//! Delegations (PROTOCOL Part B) as stored: one row per delegation with its
//! sealed state machine, the messages exchanged with the peer (outgoing
//! ones are the durable outbox of B.3), the answers kept per (Sender,
//! MsgID), and batches.

use super::Conn;
use super::{now_ms, opt_i64, Db};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A delegation row, without its machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delegation {
    pub id: i64,
    pub peer: String,
    pub delegation_id: String,
    /// `dms1` or `dms2`.
    pub role: String,
    pub initiator: bool,
    pub devid: String,
    pub batch_id: Option<i64>,
    /// `full` or `partial`.
    pub kind: String,
    /// `permanent` or `temporary`.
    pub term: String,
    pub expires_at: Option<i64>,
    /// JSON list of `{uri, rights}`.
    pub scope: String,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub state: String,
    /// Empty while running.
    pub outcome: String,
    pub wake_at: Option<i64>,
    pub job_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub ended_at: Option<i64>,
    /// When it reached Completed; kept after it ends.
    pub completed_at: Option<i64>,
}

const COLUMNS: &str = "id, peer, delegation_id, role, initiator, devid, batch_id, kind, term, \
    expires_at, scope, reason, requested_by, approved_by, state, outcome, wake_at, job_id, \
    created_at, updated_at, ended_at, completed_at";

fn from_row(r: &AnyRow) -> Result<Delegation, sqlx::Error> {
    Ok(Delegation {
        id: r.try_get("id")?,
        peer: r.try_get("peer")?,
        delegation_id: r.try_get("delegation_id")?,
        role: r.try_get("role")?,
        initiator: r.try_get::<i64, _>("initiator")? != 0,
        devid: r.try_get("devid")?,
        batch_id: opt_i64(r, "batch_id")?,
        kind: r.try_get("kind")?,
        term: r.try_get("term")?,
        expires_at: opt_i64(r, "expires_at")?,
        scope: r.try_get("scope")?,
        reason: r.try_get("reason")?,
        requested_by: r.try_get("requested_by")?,
        approved_by: r.try_get("approved_by")?,
        state: r.try_get("state")?,
        outcome: r.try_get("outcome")?,
        wake_at: opt_i64(r, "wake_at")?,
        job_id: opt_i64(r, "job_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        ended_at: opt_i64(r, "ended_at")?,
        completed_at: opt_i64(r, "completed_at")?,
    })
}

/// What a new row holds.
#[derive(Debug, Clone)]
pub struct NewDelegation<'a> {
    pub peer: &'a str,
    pub delegation_id: &'a str,
    pub role: &'a str,
    pub initiator: bool,
    pub devid: &'a str,
    pub batch_id: Option<i64>,
    pub kind: &'a str,
    pub term: &'a str,
    pub expires_at: Option<i64>,
    pub scope: &'a str,
    pub reason: &'a str,
    pub requested_by: &'a str,
    pub approved_by: &'a str,
    pub state: &'a str,
    pub machine: &'a str,
    pub wake_at: Option<i64>,
}

pub async fn insert_batch(
    db: &Db,
    tx: &mut Conn,
    peer: &str,
    created_by: &str,
    reason: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(&db.sql(
        "INSERT INTO delegation_batches (peer, created_by, reason, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    ))
    .bind(peer)
    .bind(created_by)
    .bind(reason)
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")
}

/// Inserts a delegation; a second one with the same (peer, DelegationID)
/// is a unique violation.
pub async fn insert(db: &Db, tx: &mut Conn, d: &NewDelegation<'_>) -> Result<i64, sqlx::Error> {
    let now = now_ms();
    sqlx::query(&db.sql(
        "INSERT INTO delegations (peer, delegation_id, role, initiator, devid, batch_id, kind, \
         term, expires_at, scope, reason, requested_by, approved_by, state, machine, wake_at, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) \
         RETURNING id",
    ))
    .bind(d.peer)
    .bind(d.delegation_id)
    .bind(d.role)
    .bind(d.initiator as i64)
    .bind(d.devid)
    .bind(d.batch_id)
    .bind(d.kind)
    .bind(d.term)
    .bind(d.expires_at)
    .bind(d.scope)
    .bind(d.reason)
    .bind(d.requested_by)
    .bind(d.approved_by)
    .bind(d.state)
    .bind(d.machine)
    .bind(d.wake_at)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Delegation>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!("SELECT {COLUMNS} FROM delegations WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The row id of (peer, DelegationID), if this server knows it.
pub async fn find(
    db: &Db,
    tx: &mut Conn,
    peer: &str,
    delegation_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row =
        sqlx::query(&db.sql("SELECT id FROM delegations WHERE peer = $1 AND delegation_id = $2"))
            .bind(peer)
            .bind(delegation_id)
            .fetch_optional(&mut *tx)
            .await?;
    row.map(|r| r.try_get("id")).transpose()
}

/// The row with its sealed machine and work, locked until `tx` ends: the
/// row on PostgreSQL, the database on SQLite (a write first takes the lock).
pub async fn lock(
    db: &Db,
    tx: &mut Conn,
    id: i64,
) -> Result<Option<(Delegation, String, String)>, sqlx::Error> {
    sqlx::query(&db.sql("UPDATE delegations SET state = state WHERE id = $1"))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(&db.sql(&format!(
        "SELECT {COLUMNS}, machine, work FROM delegations WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(r) => Ok(Some((
            from_row(&r)?,
            r.try_get("machine")?,
            r.try_get("work")?,
        ))),
        None => Ok(None),
    }
}

/// What a transition changes on the row.
#[derive(Debug, Clone)]
pub struct Saved<'a> {
    pub state: &'a str,
    pub outcome: &'a str,
    pub machine: &'a str,
    pub work: &'a str,
    pub wake_at: Option<i64>,
    pub job_id: Option<i64>,
    pub approved_by: &'a str,
}

pub async fn save(db: &Db, tx: &mut Conn, id: i64, s: &Saved<'_>) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(&db.sql(
        "UPDATE delegations SET state = $2, outcome = $3, machine = $4, wake_at = $5, \
         job_id = $6, approved_by = $7, updated_at = $8, work = $9, \
         ended_at = CASE WHEN $3 <> '' AND ended_at IS NULL THEN $8 ELSE ended_at END, \
         completed_at = CASE WHEN $2 = 'Completed' AND completed_at IS NULL THEN $8 \
         ELSE completed_at END \
         WHERE id = $1",
    ))
    .bind(id)
    .bind(s.state)
    .bind(s.outcome)
    .bind(s.machine)
    .bind(s.wake_at)
    .bind(s.job_id)
    .bind(s.approved_by)
    .bind(now)
    .bind(s.work)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Filters of the delegation lists; empty strings match anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A state name, or `open` (no outcome yet) / `ended`.
    pub state: String,
    pub devid: String,
    pub peer: String,
    pub batch_id: Option<i64>,
}

/// Delegations matching `f`, newest first.
/// The order of a delegation list; ties fall back to the newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// By id, i.e. by when the delegation was created.
    #[default]
    Created,
    Devid,
    Peer,
    State,
}

impl Order {
    fn column(self) -> &'static str {
        match self {
            Order::Created => "id",
            Order::Devid => "devid",
            Order::Peer => "peer",
            Order::State => "state",
        }
    }
}

/// `WHERE …` for `f`, with its text values to bind in order.
fn where_clause(f: &Filter) -> (String, Vec<String>) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let mut arg = |sql: &mut String, cond: &str, v: &str| {
        binds.push(v.to_owned());
        sql.push_str(&cond.replace("?", &format!("${}", binds.len())));
    };
    match f.state.as_str() {
        "" => {}
        "open" => sql.push_str(" AND outcome = ''"),
        "ended" => sql.push_str(" AND outcome <> ''"),
        s => arg(&mut sql, " AND (state = ? OR outcome = ?)", s),
    }
    if !f.devid.is_empty() {
        arg(&mut sql, " AND devid = ?", &f.devid);
    }
    if !f.peer.is_empty() {
        arg(&mut sql, " AND peer = ?", &f.peer);
    }
    if let Some(b) = f.batch_id {
        sql.push_str(&format!(" AND batch_id = {b}"));
    }
    (sql, binds)
}

/// The newest `limit` delegations matching `f`.
pub async fn list(db: &Db, f: &Filter, limit: i64) -> Result<Vec<Delegation>, sqlx::Error> {
    list_page(db, f, Order::Created, true, limit, 0).await
}

/// One page of the delegations matching `f`, in `order`.
pub async fn list_page(
    db: &Db,
    f: &Filter,
    order: Order,
    desc: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<Delegation>, sqlx::Error> {
    let (cond, binds) = where_clause(f);
    let dir = if desc { "DESC" } else { "ASC" };
    let tie = match order {
        Order::Created => String::new(),
        _ => ", id DESC".to_owned(),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM delegations{cond} ORDER BY {} {dir}{tie} LIMIT {} OFFSET {}",
        order.column(),
        limit.max(0),
        offset.max(0)
    );
    let sql = db.sql(&sql).into_owned();
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// How many delegations match `f`.
pub async fn count(db: &Db, f: &Filter) -> Result<i64, sqlx::Error> {
    let (cond, binds) = where_clause(f);
    let sql = db
        .sql(&format!("SELECT COUNT(*) AS n FROM delegations{cond}"))
        .into_owned();
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b);
    }
    q.fetch_one(db.pool()).await?.try_get("n")
}

/// Running delegations whose wake time has come.
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(
        "SELECT id FROM delegations WHERE wake_at IS NOT NULL AND wake_at <= $1 \
         ORDER BY wake_at LIMIT $2",
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Delegations waiting for a device job that has finished, in id order.
///
/// Only delegations waiting for a job are looked at (`job_id` is set while
/// they wait, through `delegations_job`), not every delegation ever made;
/// sorted here so the planner does not walk the whole table in id order.
pub async fn waiting_on_finished_jobs(db: &Db) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.id FROM delegations d JOIN jobs j ON j.id = d.job_id \
         WHERE d.job_id IS NOT NULL AND j.state IN ('succeeded', 'failed')",
    )
    .fetch_all(db.reader())
    .await?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<Vec<i64>, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// The row ids of these DelegationIDs (for links from the audit log).
pub async fn ids_of(
    db: &Db,
    delegation_ids: &[String],
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    let mut out = std::collections::HashMap::new();
    if delegation_ids.is_empty() {
        return Ok(out);
    }
    let marks: Vec<String> = (1..=delegation_ids.len())
        .map(|i| format!("${i}"))
        .collect();
    let sql = db
        .sql(&format!(
            "SELECT id, delegation_id FROM delegations WHERE delegation_id IN ({})",
            marks.join(", ")
        ))
        .into_owned();
    let mut q = sqlx::query(&sql);
    for d in delegation_ids {
        q = q.bind(d);
    }
    for r in q.fetch_all(db.pool()).await? {
        out.insert(r.try_get("delegation_id")?, r.try_get("id")?);
    }
    Ok(out)
}

/// A message exchanged with the peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    pub id: i64,
    pub delegation: i64,
    /// `in` or `out`.
    pub direction: String,
    pub msg_type: String,
    pub msg_id: String,
    /// Sealed document; empty once erased.
    #[serde(skip)]
    pub body: String,
    pub code: Option<i64>,
    pub delivery: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: String,
    pub created_at: i64,
    pub answered_at: Option<i64>,
}

const MSG_COLUMNS: &str = "id, delegation, direction, msg_type, msg_id, body, code, delivery, \
    attempts, next_attempt_at, last_error, created_at, answered_at";

fn msg_from_row(r: &AnyRow) -> Result<Message, sqlx::Error> {
    Ok(Message {
        id: r.try_get("id")?,
        delegation: r.try_get("delegation")?,
        direction: r.try_get("direction")?,
        msg_type: r.try_get("msg_type")?,
        msg_id: r.try_get("msg_id")?,
        body: r.try_get("body")?,
        code: opt_i64(r, "code")?,
        delivery: r.try_get("delivery")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: opt_i64(r, "next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        answered_at: opt_i64(r, "answered_at")?,
    })
}

/// Records a received message with the code it was answered.
pub async fn insert_received(
    db: &Db,
    tx: &mut Conn,
    delegation: i64,
    msg_type: &str,
    msg_id: &str,
    body: &str,
    code: u16,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(&db.sql(
        "INSERT INTO delegation_messages (delegation, direction, msg_type, msg_id, body, code, \
         created_at, answered_at) VALUES ($1, 'in', $2, $3, $4, $5, $6, $6)",
    ))
    .bind(delegation)
    .bind(msg_type)
    .bind(msg_id)
    .bind(body)
    .bind(code as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Queues a message for the peer (the outbox, B.3).
pub async fn enqueue(
    db: &Db,
    tx: &mut Conn,
    delegation: i64,
    msg_type: &str,
    msg_id: &str,
    body: &str,
) -> Result<i64, sqlx::Error> {
    let now = now_ms();
    sqlx::query(&db.sql(
        "INSERT INTO delegation_messages (delegation, direction, msg_type, msg_id, body, \
         delivery, next_attempt_at, created_at) VALUES ($1, 'out', $2, $3, $4, 'queued', $5, $5) \
         RETURNING id",
    ))
    .bind(delegation)
    .bind(msg_type)
    .bind(msg_id)
    .bind(body)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")
}

/// Up to `limit` outgoing documents due now, the first queued one of each
/// delegation, earliest first. Delegations in `busy` (a document on its
/// way) are left out: their next one waits for the answer (B.3, in order
/// per delegation).
///
/// The statements are the same every time (the busy ones are skipped here,
/// not in SQL), so they stay prepared on the readers, and only the chosen
/// documents' bodies are read.
pub async fn due_outbox(
    db: &Db,
    now: i64,
    busy: &std::collections::HashSet<i64>,
    limit: usize,
) -> Result<Vec<Message>, sqlx::Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Each busy delegation has at most one row here (its first queued
    // document), so `limit + busy` rows hold `limit` free ones if there are.
    let rows = sqlx::query(&db.sql(
        "SELECT m.id, m.delegation FROM delegation_messages m WHERE m.delivery = 'queued' \
         AND m.next_attempt_at <= $1 AND NOT EXISTS (SELECT 1 FROM delegation_messages e \
         WHERE e.delegation = m.delegation AND e.delivery = 'queued' AND e.id < m.id) \
         ORDER BY m.next_attempt_at LIMIT $2",
    ))
    .bind(now)
    .bind((limit + busy.len()) as i64)
    .fetch_all(db.reader())
    .await?;
    let mut out = Vec::new();
    for r in rows {
        if out.len() == limit {
            break;
        }
        if busy.contains(&r.try_get::<i64, _>("delegation")?) {
            continue;
        }
        let id: i64 = r.try_get("id")?;
        // Answered meanwhile by another instance: nothing to send.
        if let Some(m) = first_queued_of(db, r.try_get("delegation")?).await? {
            if m.id == id {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// A delegation's first outgoing document not answered yet, if any.
pub async fn first_queued_of(db: &Db, delegation: i64) -> Result<Option<Message>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!(
        "SELECT {MSG_COLUMNS} FROM delegation_messages \
         WHERE delegation = $1 AND delivery = 'queued' ORDER BY id LIMIT 1"
    )))
    .bind(delegation)
    .fetch_optional(db.reader())
    .await?;
    row.as_ref().map(msg_from_row).transpose()
}

/// The earliest time after `now` an outgoing document is due, if any is
/// queued for later. What is due already was offered by [`due_outbox`]
/// (taken, or waiting behind a document on its way, whose answer wakes the
/// outbox anyway).
pub async fn next_outbox_time(db: &Db, now: i64) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(&db.sql(
        "SELECT MIN(next_attempt_at) AS t FROM delegation_messages \
         WHERE delivery = 'queued' AND next_attempt_at > $1",
    ))
    .bind(now)
    .fetch_one(db.reader())
    .await?;
    opt_i64(&row, "t")
}

/// A failed attempt: try again at `next_at`.
pub async fn retry_later(db: &Db, id: i64, error: &str, next_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql(
        "UPDATE delegation_messages SET attempts = attempts + 1, last_error = $2, \
         next_attempt_at = $3 WHERE id = $1 AND delivery = 'queued'",
    ))
    .bind(id)
    .bind(error)
    .bind(next_at)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(())
}

/// Records the peer's answer; `delivery` is `delivered` or `dropped`.
/// False when the message was no longer queued (answered meanwhile).
pub async fn answered(
    db: &Db,
    tx: &mut Conn,
    id: i64,
    code: u16,
    delivery: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(&db.sql(
        "UPDATE delegation_messages SET code = $2, delivery = $3, answered_at = $4, \
         attempts = attempts + 1, next_attempt_at = NULL WHERE id = $1 AND delivery = 'queued'",
    ))
    .bind(id)
    .bind(code as i64)
    .bind(delivery)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Stops every queued message of a delegation (it ended: B.3 "or the
/// delegation has ended" — later messages are no longer sent).
pub async fn drop_queued(
    db: &Db,
    tx: &mut Conn,
    delegation: i64,
    except_after: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql(
        "UPDATE delegation_messages SET delivery = 'dropped', next_attempt_at = NULL \
         WHERE delegation = $1 AND delivery = 'queued' AND id <= $2",
    ))
    .bind(delegation)
    .bind(except_after)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Erases the stored documents of a delegation that carry one-time
/// secrets, once they can no longer be resent.
pub async fn erase_bodies(
    db: &Db,
    tx: &mut Conn,
    delegation: i64,
    msg_type: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql(
        "UPDATE delegation_messages SET body = '' WHERE delegation = $1 AND msg_type = $2 \
         AND delivery <> 'queued'",
    ))
    .bind(delegation)
    .bind(msg_type)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A delegation's messages, in order.
pub async fn messages(db: &Db, delegation: i64) -> Result<Vec<Message>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(&format!(
        "SELECT {MSG_COLUMNS} FROM delegation_messages WHERE delegation = $1 ORDER BY id"
    )))
    .bind(delegation)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(msg_from_row).collect()
}

/// The stored answer to (Sender, MsgID) (B.3 idempotency).
pub async fn stored_answer(
    db: &Db,
    tx: &mut Conn,
    sender: &str,
    msg_id: &str,
) -> Result<Option<(u16, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query(
        &db.sql("SELECT code, body FROM delegation_answers WHERE sender = $1 AND msg_id = $2"),
    )
    .bind(sender)
    .bind(msg_id)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(r) => {
            let code: i64 = r.try_get("code")?;
            let body: String = r.try_get("body")?;
            Ok(Some((code as u16, body.into_bytes())))
        }
        None => Ok(None),
    }
}

/// Keeps an answer for repeats; 5xx answers are never stored (B.3).
pub async fn store_answer(
    db: &Db,
    tx: &mut Conn,
    sender: &str,
    msg_id: &str,
    code: u16,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    if code >= 500 {
        return Ok(());
    }
    sqlx::query(&db.sql(
        "INSERT INTO delegation_answers (sender, msg_id, code, body, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    ))
    .bind(sender)
    .bind(msg_id)
    .bind(code as i64)
    .bind(String::from_utf8_lossy(body).into_owned())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

//! The command queue: one row per command (or Atomic/Sequence) for one
//! device, `queued → sent → succeeded | failed`, delivered in order at the
//! device's next session and marked `sent` in the transaction that stores
//! the session holding it (so it is delivered exactly once).

use super::Conn;
use super::{bind_all, now_ms, opt_i64, Db, Dialect, WriteTx, Writes};
use base64::Engine;
use handover_dm::session::{CommandKind, JobId, ServerCommand};
use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

/// A command as callers describe it (JSON API, CLI, the runtime itself).
/// `data` is text; `data_b64` raw bytes in base64 (one or the other).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", deny_unknown_fields)]
pub enum JobCommand {
    Get {
        target: String,
        /// Part of a full tree read: an interior node's children are read
        /// too, with their ACLs.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        walk: bool,
    },
    Replace {
        target: String,
        #[serde(flatten)]
        value: Value,
    },
    Add {
        target: String,
        #[serde(flatten)]
        value: Value,
    },
    Delete {
        target: String,
    },
    Exec {
        target: String,
        #[serde(flatten)]
        value: Value,
    },
    Copy {
        source: String,
        target: String,
    },
    Atomic {
        commands: Vec<JobCommand>,
    },
    Sequence {
        commands: Vec<JobCommand>,
    },
}

/// The data of a command, with its Format and Type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Value {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
}

impl Value {
    fn bytes(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.data, &self.data_b64) {
            (Some(_), Some(_)) => Err("give data or data_b64, not both".into()),
            (Some(t), None) => Ok(Some(t.as_bytes().to_vec())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Some)
                .map_err(|_| "data_b64 is not base64".into()),
            (None, None) => Ok(None),
        }
    }
}

/// Child commands of job `id` get ids `id << CHILD_BITS | n`.
const CHILD_BITS: u32 = 20;

/// The top-level job a session job id belongs to.
pub fn top_job(id: JobId) -> i64 {
    if id >= 1 << CHILD_BITS {
        (id >> CHILD_BITS) as i64
    } else {
        id as i64
    }
}

fn check_uri(u: &str) -> Result<(), String> {
    let path = u.split_once("?prop=").map_or(u, |(p, _)| p);
    handover_dm::TreeUri::parse(path)
        .map(|_| ())
        .map_err(|e| format!("{u}: {e}"))
}

impl JobCommand {
    /// Checks URIs, data and nesting (containers hold plain commands or a
    /// Sequence inside an Atomic, never empty).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            JobCommand::Get { target, .. } | JobCommand::Delete { target } => check_uri(target),
            JobCommand::Replace { target, value }
            | JobCommand::Add { target, value }
            | JobCommand::Exec { target, value } => {
                check_uri(target)?;
                value.bytes().map(|_| ())
            }
            JobCommand::Copy { source, target } => {
                check_uri(source)?;
                check_uri(target)
            }
            JobCommand::Atomic { commands } | JobCommand::Sequence { commands } => {
                if commands.is_empty() {
                    return Err(format!("an empty {}", self.name()));
                }
                commands.iter().try_for_each(|c| c.validate())
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Get { .. } => "Get",
            JobCommand::Replace { .. } => "Replace",
            JobCommand::Add { .. } => "Add",
            JobCommand::Delete { .. } => "Delete",
            JobCommand::Exec { .. } => "Exec",
            JobCommand::Copy { .. } => "Copy",
            JobCommand::Atomic { .. } => "Atomic",
            JobCommand::Sequence { .. } => "Sequence",
        }
    }

    /// Every (command, target) pair, children included.
    pub fn targets(&self) -> Vec<(&'static str, &str)> {
        match self {
            JobCommand::Atomic { commands } | JobCommand::Sequence { commands } => {
                commands.iter().flat_map(|c| c.targets()).collect()
            }
            JobCommand::Get { target, .. }
            | JobCommand::Delete { target }
            | JobCommand::Replace { target, .. }
            | JobCommand::Add { target, .. }
            | JobCommand::Exec { target, .. }
            | JobCommand::Copy { target, .. } => vec![(self.name(), target.as_str())],
        }
    }

    /// The session command for job `id` (children numbered under it).
    pub fn to_server(&self, id: i64) -> ServerCommand {
        let mut next = 1u64;
        self.build(id as u64, id as u64, &mut next)
    }

    fn build(&self, job: JobId, top: JobId, next: &mut u64) -> ServerCommand {
        let bytes = |v: &Value| v.bytes().ok().flatten();
        let kind = match self {
            JobCommand::Get { target, .. } => CommandKind::Get {
                target: target.clone(),
            },
            JobCommand::Replace { target, value } => CommandKind::Replace {
                target: target.clone(),
                data: bytes(value).unwrap_or_default(),
                format: value.format.clone().or(Some("chr".into())),
                mime: value.mime.clone(),
            },
            JobCommand::Add { target, value } => {
                let data = bytes(value);
                CommandKind::Add {
                    target: target.clone(),
                    format: value
                        .format
                        .clone()
                        .or(Some(if data.is_some() { "chr" } else { "node" }.into())),
                    data,
                    mime: value.mime.clone(),
                }
            }
            JobCommand::Delete { target } => CommandKind::Delete {
                target: target.clone(),
            },
            JobCommand::Exec { target, value } => CommandKind::Exec {
                target: target.clone(),
                data: bytes(value),
            },
            JobCommand::Copy { source, target } => CommandKind::Copy {
                source: source.clone(),
                target: target.clone(),
            },
            JobCommand::Atomic { commands } | JobCommand::Sequence { commands } => {
                let children = commands
                    .iter()
                    .map(|c| {
                        let id = (top << CHILD_BITS) | *next;
                        *next += 1;
                        c.build(id, top, next)
                    })
                    .collect();
                if matches!(self, JobCommand::Atomic { .. }) {
                    CommandKind::Atomic(children)
                } else {
                    CommandKind::Sequence(children)
                }
            }
        };
        ServerCommand { job, kind }
    }
}

/// A job as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    pub id: i64,
    pub devid: String,
    pub command: serde_json::Value,
    pub state: String,
    pub status: Option<i64>,
    pub results: Option<serde_json::Value>,
    pub error: String,
    pub session_id: String,
    pub requested_by: String,
    pub notify: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Job {
    /// The command, read from the stored JSON in place (no copy of it).
    pub fn command(&self) -> Option<JobCommand> {
        JobCommand::deserialize(&self.command).ok()
    }
}

const COLUMNS: &str = "id, devid, command, state, status, results, error, session_id, requested_by, notify, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<Job, sqlx::Error> {
    let command: String = r.try_get("command")?;
    let results: Option<String> = r.try_get("results")?;
    Ok(Job {
        id: r.try_get("id")?,
        devid: r.try_get("devid")?,
        command: serde_json::from_str(&command).unwrap_or(serde_json::Value::Null),
        state: r.try_get("state")?,
        status: opt_i64(r, "status")?,
        results: results.and_then(|s| serde_json::from_str(&s).ok()),
        error: r.try_get("error")?,
        session_id: r.try_get("session_id")?,
        requested_by: r.try_get("requested_by")?,
        notify: r.try_get::<i64, _>("notify")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Queues a command; returns the job id.
pub async fn enqueue<'c, E>(
    db: &Db,
    exec: E,
    devid: &str,
    command: &JobCommand,
    requested_by: &str,
    notify: bool,
) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    // `exec` may be a pool: the id comes back with the statement.
    let sql = insert_sql(db, 1, true);
    sqlx::query(&sql)
        .bind(devid)
        .bind(requested_by)
        .bind(notify as i64)
        .bind(now_ms())
        .bind(serde_json::to_string(command).expect("commands serialize"))
        .fetch_one(exec)
        .await?
        .try_get("id")
}

/// Inserts `n` jobs; its placeholders: $1 the device, $2 who asks, $3
/// notify, $4 now, then one command each; `returning` their ids.
fn insert_sql(db: &Db, n: usize, returning: bool) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("($1, ${}, $2, $3, $4, $4)", i + 5))
        .collect();
    let returning = if returning { " RETURNING id" } else { "" };
    db.sql(&format!(
        "INSERT INTO jobs (devid, command, requested_by, notify, created_at, updated_at) \
         VALUES {}{returning}",
        rows.join(", ")
    ))
    .into_owned()
}

/// The ids of the `n` rows one SQLite `INSERT` added to `jobs`, the last
/// of them `last`: one statement holds the write lock throughout and numbers
/// its rows one after the other (`AUTOINCREMENT`).
fn inserted_ids(last: i64, inserted: u64, n: usize) -> Result<Vec<i64>, sqlx::Error> {
    if inserted != n as u64 {
        return Err(sqlx::Error::Protocol(format!(
            "{inserted} jobs inserted instead of {n}"
        )));
    }
    Ok((last + 1 - n as i64..=last).collect())
}

/// A write transaction begun by queueing `commands`, in order, with one
/// statement, for a device that exists; returns it and the job ids, or
/// `None` (and nothing written) when there is no device `devid`.
///
/// The device is looked up in the same transaction: on SQLite the writer's
/// page cache answers it (a reader's cache starts cold after each of the
/// writer's commits). It takes no row lock on PostgreSQL, where a DM
/// message holds the device's row while it appends to the audit log.
pub async fn begin_enqueue(
    db: &Db,
    devid: &str,
    commands: &[JobCommand],
    requested_by: &str,
    notify: bool,
) -> Result<Option<(WriteTx, Vec<i64>)>, sqlx::Error> {
    // On SQLite the ids are read off the last one (see [`inserted_ids`]):
    // a `RETURNING` there first copies the rows into a temporary table.
    let sql = insert_sql(db, commands.len(), db.dialect() == Dialect::Postgres);
    let mut values = vec![
        devid.into(),
        requested_by.into(),
        (notify as i64).into(),
        now_ms().into(),
    ];
    values.extend(
        commands
            .iter()
            .map(|c| serde_json::to_string(c).expect("commands serialize").into()),
    );
    let (mut tx, rows) = db
        .begin_write_with(
            "SELECT 1 AS known FROM devices WHERE devid = $1",
            vec![devid.into()],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let q = bind_all(sqlx::query(&sql), values);
    let ids = match db.dialect() {
        Dialect::Postgres => {
            // Ids grow in the order of the rows; RETURNING has no order of
            // its own.
            let mut ids = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<Vec<i64>, _>>()?;
            ids.sort_unstable();
            ids
        }
        Dialect::Sqlite => {
            let done = q.execute(&mut *tx).await?;
            let last = match done.last_insert_id() {
                Some(id) => id,
                // sqlx's own SQLite connection (an in-memory database) does
                // not say; the same connection still knows.
                None => sqlx::query("SELECT last_insert_rowid() AS id")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("id")?,
            };
            inserted_ids(last, done.rows_affected(), commands.len())?
        }
    };
    Ok(Some((tx, ids)))
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A device's jobs, newest first.
pub async fn for_device(db: &Db, devid: &str, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE devid = $1 ORDER BY id DESC LIMIT $2"
    )))
    .bind(devid)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Takes the device's queued jobs, in order, marking them sent in `session_id`.
///
/// Read, then marked one by one by id: an `UPDATE` that changes the state
/// its own index is searched by (or that returns rows) first copies what it
/// finds into a temporary table of SQLite's, which costs more than the
/// statements it saves. A job that is no longer queued when it is marked
/// (another instance on PostgreSQL took or cancelled it) is left out.
pub async fn take_queued(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
    session_id: &str,
) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE devid = $1 AND state = 'queued' ORDER BY id"
    )))
    .bind(devid)
    .fetch_all(&mut *tx)
    .await?;
    let now = now_ms();
    let mark = db.sql(
        "UPDATE jobs SET state = 'sent', session_id = $2, updated_at = $3 \
         WHERE id = $1 AND state = 'queued'",
    );
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut j = from_row(r)?;
        let marked = sqlx::query(&mark)
            .bind(j.id)
            .bind(session_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if marked.rows_affected() == 1 {
            j.state = "sent".into();
            j.session_id = session_id.to_owned();
            j.updated_at = now;
            jobs.push(j);
        }
    }
    Ok(jobs)
}

/// The jobs sent in one session and not finished.
pub async fn open_in_session(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
    session_id: &str,
) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE devid = $1 AND session_id = $2 AND state = 'sent' ORDER BY id"
    )))
    .bind(devid)
    .bind(session_id)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn lock_one(db: &Db, tx: &mut Conn, id: i64) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Writes a job's outcome.
pub async fn finish(db: &Db, tx: &mut Conn, job: &Job) -> Result<(), sqlx::Error> {
    let mut w = Writes::default();
    finish_later(&mut w, job);
    w.run(db, tx).await
}

/// [`finish`], sent with the transaction's other [`Writes`].
pub fn finish_later(w: &mut Writes, job: &Job) {
    w.push(
        "UPDATE jobs SET state = $2, status = $3, results = $4, error = $5, updated_at = $6 WHERE id = $1",
        vec![
            job.id.into(),
            job.state.as_str().into(),
            job.status.into(),
            job.results.as_ref().map(|r| r.to_string()).into(),
            job.error.as_str().into(),
            now_ms().into(),
        ],
    );
}

/// Puts jobs that never left the server back in the queue, with the
/// transaction's other [`Writes`].
pub fn requeue_later(w: &mut Writes, ids: &[i64]) {
    for id in ids {
        w.push(
            "UPDATE jobs SET state = 'queued', session_id = '', updated_at = $2 WHERE id = $1 AND state = 'sent'",
            vec![(*id).into(), now_ms().into()],
        );
    }
}

/// True when the device already has jobs requested by `who`.
pub async fn exists_by(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
    who: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query(
        &db.sql("SELECT COUNT(*) AS n FROM jobs WHERE devid = $1 AND requested_by = $2"),
    )
    .bind(devid)
    .bind(who)
    .fetch_one(&mut *tx)
    .await?
    .try_get("n")?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_number_children() {
        let c: JobCommand = serde_json::from_str(
            r#"{"cmd":"Atomic","commands":[{"cmd":"Replace","target":"./A","data":"x"},{"cmd":"Delete","target":"./B"}]}"#,
        )
        .unwrap();
        c.validate().unwrap();
        let sc = c.to_server(7);
        assert_eq!(sc.job, 7);
        let CommandKind::Atomic(ch) = sc.kind else {
            panic!()
        };
        assert_eq!(top_job(ch[0].job), 7);
        assert_ne!(ch[0].job, ch[1].job);
        let bad: JobCommand = serde_json::from_str(r#"{"cmd":"Get","target":"./A/"}"#).unwrap();
        assert!(bad.validate().is_err());
    }
}

//! Database access: one connection pool for SQLite or PostgreSQL, chosen by
//! the URL, migrations per dialect, and one module per aggregate.
//!
//! Queries are checked at run time (`sqlx::query` on the `Any` driver) so the
//! same code serves both databases. SQL is written with PostgreSQL's `$1`
//! placeholders and rewritten for SQLite by [`Db::sql`].

pub mod api_tokens;
pub mod delegations;
pub mod devices;
pub mod inventory;
pub mod jobs;
pub mod peers;
pub mod settings;
pub mod throttle;
pub mod users;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The database of one Handover instance.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    url: String,
    /// SQLite only: the one connection the hot write paths share (see
    /// [`Db::begin_write`]).
    writer: Option<Arc<Mutex<Writer>>>,
}

/// SQLite's shared writer connection.
pub struct Writer {
    conn: AnyConnection,
    /// A transaction left open by a [`WriteTx`] dropped where it could not
    /// roll back: rolled back before the next use.
    open: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Db")
            .field("dialect", &self.dialect)
            .finish()
    }
}

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Db {
    /// The SQLite file a data directory keeps by default.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("handover.db").display()
        )
    }

    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            anyhow::bail!("unsupported database URL: it must start with sqlite: or postgres://");
        };
        let max = match dialect {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 16,
        };
        let pool = Self::pool_options(dialect, max)
            .connect(url)
            .await
            .context("cannot open the database")?;
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE,
            Dialect::Postgres => &POSTGRES,
        };
        migrator
            .run(&pool)
            .await
            .context("cannot migrate the database")?;
        let writer = match dialect {
            Dialect::Sqlite => {
                let mut conn = AnyConnection::connect(url)
                    .await
                    .context("cannot open the database")?;
                sqlite_pragmas(&mut conn).await?;
                Some(Arc::new(Mutex::new(Writer { conn, open: false })))
            }
            Dialect::Postgres => None,
        };
        Ok(Db {
            pool,
            dialect,
            url: url.to_owned(),
            writer,
        })
    }

    fn pool_options(dialect: Dialect, max: u32) -> AnyPoolOptions {
        AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(15))
            // A local file has no connection to lose; the ping would be one
            // more statement per acquire.
            .test_before_acquire(dialect == Dialect::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        sqlite_pragmas(conn).await?;
                    }
                    Ok(())
                })
            })
    }

    /// A transaction for the hot write paths (a DM message, queueing
    /// commands, an audit append), holding the database's write lock from
    /// its first statement. SQLite has one writer at a time: these share one
    /// connection, kept outside the pool behind a first-come-first-served
    /// lock, so they queue in this process instead of each connection
    /// finding the database locked and sleeping in its busy handler (1, 2, 5,
    /// 10 ms...) while the lock sits idle; handing it on costs no pool
    /// bookkeeping (a pooled connection is pinged on every return), and its
    /// page cache stays valid from one transaction to the next, as nobody
    /// else wrote meanwhile. `BEGIN IMMEDIATE` takes the write lock at once
    /// (another process sharing the file waits in the busy handler). On
    /// PostgreSQL a plain transaction; rows are locked with `FOR UPDATE`.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        Ok(self.begin_write_with("", Vec::new()).await?.0)
    }

    /// [`Db::begin_write`] with its first statement, `sql` (written with `$n`
    /// placeholders, one value each; none when empty): on SQLite it goes in
    /// the same text as the `BEGIN`, one hand-off to the writer's thread for
    /// both. Returns the statement's rows.
    pub async fn begin_write_with(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<(WriteTx, Vec<AnyRow>), sqlx::Error> {
        match &self.writer {
            Some(w) => {
                let mut w = w.clone().lock_owned().await;
                w.settle().await?;
                let mut text = String::from("BEGIN IMMEDIATE;\n");
                let mut bound = Vec::new();
                anonymous(sql, &values, &mut text, &mut bound);
                // Marked first: a BEGIN whose answer is lost (a dropped
                // future) is rolled back all the same.
                w.open = true;
                match bind_all(sqlx::query(&text), bound)
                    .fetch_all(&mut w.conn)
                    .await
                {
                    Ok(rows) => Ok((WriteTx(Some(Held::Shared(w))), rows)),
                    Err(e) => {
                        w.settle().await?;
                        Err(e)
                    }
                }
            }
            None => {
                let mut tx = self.pool.begin().await?;
                let rows = if sql.is_empty() {
                    Vec::new()
                } else {
                    bind_all(sqlx::query(sql), values)
                        .fetch_all(&mut *tx)
                        .await?
                };
                Ok((WriteTx(Some(Held::Pool(tx))), rows))
            }
        }
    }

    /// The connection for single statements on the hot write paths (see
    /// [`Db::begin_write`]), each its own transaction; never ask for it
    /// while holding a [`WriteTx`].
    pub async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        match &self.writer {
            Some(w) => {
                let mut w = w.clone().lock_owned().await;
                w.settle().await?;
                Ok(WriteConn::Shared(w))
            }
            None => Ok(WriteConn::Pool(self.pool.acquire().await?)),
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL this database was opened with (holds credentials: do not log).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Rewrites `$1`-style placeholders to SQLite's `?1` form.
    pub fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        match self.dialect {
            Dialect::Postgres => Cow::Borrowed(sql),
            Dialect::Sqlite => Cow::Owned(sql.replace('$', "?")),
        }
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }
}

impl Writer {
    /// Rolls back what a dropped [`WriteTx`] left open.
    async fn settle(&mut self) -> Result<(), sqlx::Error> {
        if self.open {
            match sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                // The transaction had ended after all (its BEGIN failed, or
                // its COMMIT went through unanswered).
                Err(sqlx::Error::Database(e))
                    if e.message().contains("no transaction is active") => {}
                r => {
                    r?;
                }
            }
            self.open = false;
        }
        Ok(())
    }
}

enum Held {
    Shared(OwnedMutexGuard<Writer>),
    Pool(sqlx::Transaction<'static, sqlx::Any>),
}

/// A write transaction from [`Db::begin_write`]: statements run on it as on
/// a connection (`&mut *tx`); it is rolled back unless committed.
pub struct WriteTx(Option<Held>);

impl WriteTx {
    /// Sends `w` and commits; on SQLite the commit goes in the same text
    /// as the writes, one hand-off for both.
    pub async fn commit_with(mut self, db: &Db, w: &mut Writes) -> Result<(), sqlx::Error> {
        match &mut self.0 {
            Some(Held::Shared(held)) => {
                w.run_then(db, &mut held.conn, "COMMIT").await?;
                held.open = false;
                self.0 = None;
                Ok(())
            }
            _ => {
                w.run(db, &mut self).await?;
                self.commit().await
            }
        }
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.0.take().expect("a transaction is held until it ends") {
            Held::Shared(mut w) => {
                let done = sqlx::query("COMMIT").execute(&mut w.conn).await;
                if done.is_ok() {
                    w.open = false;
                }
                // Otherwise the next user of the writer rolls it back.
                done.map(|_| ())
            }
            Held::Pool(tx) => tx.commit().await,
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self
            .0
            .as_ref()
            .expect("a transaction is held until it ends")
        {
            Held::Shared(w) => &w.conn,
            Held::Pool(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self
            .0
            .as_mut()
            .expect("a transaction is held until it ends")
        {
            Held::Shared(w) => &mut w.conn,
            Held::Pool(tx) => tx,
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Not committed: the writer is handed on only after the rollback,
        // done now where a runtime can run it, else by its next user.
        if let Some(Held::Shared(mut w)) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = w.settle().await {
                        tracing::error!(error = %e, "rolling back a write transaction failed");
                    }
                });
            }
        }
    }
}

/// A connection from [`Db::write_conn`].
pub enum WriteConn {
    Shared(OwnedMutexGuard<Writer>),
    Pool(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl std::ops::Deref for WriteConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConn::Shared(w) => &w.conn,
            WriteConn::Pool(c) => c,
        }
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Shared(w) => &mut w.conn,
            WriteConn::Pool(c) => c,
        }
    }
}

async fn sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA busy_timeout = 10000",
        "PRAGMA foreign_keys = ON",
        "PRAGMA synchronous = NORMAL",
    ] {
        sqlx::query(pragma).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A value bound to a deferred statement (see [`Writes`]).
#[derive(Debug, Clone)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}

/// Writes of one transaction whose results nothing reads, kept until
/// [`Writes::run`] sends them at once: on SQLite as one multi-statement
/// query, one hand-off to the connection's thread instead of one per
/// statement, so the write lock is held that much shorter; on PostgreSQL one
/// by one. A read in the same transaction does not see them before `run`:
/// callers run them before any read that could.
#[derive(Debug, Default)]
pub struct Writes {
    statements: Vec<(&'static str, Vec<Value>)>,
}

impl Writes {
    /// Adds a statement written with `$1`… placeholders, one per value.
    pub fn push(&mut self, sql: &'static str, values: Vec<Value>) {
        debug_assert_eq!(
            placeholders(sql),
            values.len(),
            "one value per placeholder: {sql}"
        );
        self.statements.push((sql, values));
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Sends the statements, in order, and empties the list.
    pub async fn run(&mut self, db: &Db, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        self.run_then(db, tx, "").await
    }

    /// [`Writes::run`], then `last` (SQLite only) in the same text.
    async fn run_then(
        &mut self,
        db: &Db,
        tx: &mut AnyConnection,
        last: &str,
    ) -> Result<(), sqlx::Error> {
        let statements = std::mem::take(&mut self.statements);
        match db.dialect {
            Dialect::Postgres => {
                for (sql, values) in statements {
                    bind_all(sqlx::query(sql), values).execute(&mut *tx).await?;
                }
            }
            Dialect::Sqlite if statements.is_empty() && last.is_empty() => {}
            Dialect::Sqlite => {
                // One text. The driver binds a later statement's values
                // after the earlier ones' only for anonymous placeholders,
                // so each `$n` becomes a `?` with its value in that place.
                let mut sql = String::new();
                let mut all = Vec::new();
                for (s, values) in statements {
                    anonymous(s, &values, &mut sql, &mut all);
                    sql.push_str(";\n");
                }
                sql.push_str(last);
                bind_all(sqlx::query(&sql), all).execute(&mut *tx).await?;
            }
        }
        Ok(())
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_all(mut q: AnyQuery<'_>, values: Vec<Value>) -> AnyQuery<'_> {
    for v in values {
        q = match v {
            Value::Int(i) => q.bind(i),
            Value::Text(t) => q.bind(t),
        };
    }
    q
}

/// Appends `sql` to `out` with each `$n` as `?`, and value n to `bound` in
/// that place (a value used twice is bound twice).
fn anonymous(sql: &str, values: &[Value], out: &mut String, bound: &mut Vec<Value>) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        match rest[at + 1..at + 1 + digits].parse::<usize>() {
            Ok(n) if (1..=values.len()).contains(&n) => {
                out.push('?');
                bound.push(values[n - 1].clone());
            }
            _ => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
}

/// The highest `$n` in `sql`.
fn placeholders(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|p| {
            let d = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            p[..d].parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.code()
                    .is_some_and(|c| c == "2067" || c == "1555" || c == "23505")
                || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// Reads an optional BIGINT column that SQLite may hand back as NULL.
pub fn opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

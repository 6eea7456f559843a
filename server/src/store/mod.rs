//! Database access: one connection pool for SQLite or PostgreSQL, chosen by
//! the URL, migrations per dialect, and one module per aggregate.
//!
//! Queries are checked at run time (`sqlx::query` on the `Any` driver) so the
//! same code serves both databases. SQL is written with PostgreSQL's `$1`
//! placeholders and rewritten for SQLite by [`Db::sql`].

pub mod api_tokens;
pub mod delegations;
pub mod devices;
pub mod inline;
pub mod inventory;
pub mod jobs;
pub mod malloc;
pub mod pcache;
pub mod peers;
pub mod settings;
pub mod throttle;
pub mod users;
pub mod writer;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use inline::Conn;
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

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
    writer: Option<writer::Shared>,
    reader: Arc<Reader>,
    /// Appends to the audit log one at a time through this handle (see
    /// `audit::append`); each opened database has its own.
    audit_turn: Arc<tokio::sync::Mutex<()>>,
}

/// Where the reads of the hot paths run (see [`Db::reader`]).
pub enum Reader {
    Inline(inline::Readers),
    Pool(AnyPool),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reader::Inline(_) => "Reader::Inline",
            Reader::Pool(_) => "Reader::Pool",
        })
    }
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
            inline::configure_library();
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
                let conn = inline::Inline::open(url, false).context("cannot open the database")?;
                let writer = writer::Shared::new(conn);
                let checkpoints =
                    inline::Inline::open(url, false).context("cannot open the database")?;
                tokio::spawn(inline::checkpointer(checkpoints, writer.downgrade()));
                Some(writer)
            }
            Dialect::Postgres => None,
        };
        let reader = Arc::new(match dialect {
            Dialect::Sqlite => Reader::Inline(inline::Readers::new(url)),
            Dialect::Postgres => Reader::Pool(pool.clone()),
        });
        Ok(Db {
            pool,
            dialect,
            url: url.to_owned(),
            writer,
            reader,
            audit_turn: Arc::default(),
        })
    }

    /// The turn of this database's audit appends (see `audit::append`).
    pub async fn audit_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.audit_turn.lock().await
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
    /// 10 ms...) while the lock sits idle. That connection runs its
    /// statements on the calling thread ([`inline::Inline`]), so the lock is
    /// held for the work and not for hand-offs to a driver thread, and its
    /// page cache stays valid from one transaction to the next, as nobody
    /// else wrote meanwhile. `BEGIN IMMEDIATE` takes the write lock at once
    /// (another process sharing the file is waited for). Transactions queued
    /// behind each other share one `COMMIT` ([`writer`]). On PostgreSQL a
    /// plain transaction; rows are locked with `FOR UPDATE`.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        match &self.writer {
            Some(w) => Ok(WriteTx(Some(Held::Shared(w.begin().await?)))),
            None => Ok(WriteTx(Some(Held::Pool(self.pool.begin().await?)))),
        }
    }

    /// [`Db::begin_write`] and its first statement, `sql` (written with
    /// `$n` placeholders, one value each); returns the statement's rows.
    pub async fn begin_write_with(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<(WriteTx, Vec<AnyRow>), sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let rows = bind_all(sqlx::query(&self.sql(sql)), values)
            .fetch_all(&mut *tx)
            .await?;
        Ok((tx, rows))
    }

    /// The connection for single statements on the hot write paths (see
    /// [`Db::begin_write`]), each its own transaction; never ask for it
    /// while holding a [`WriteTx`].
    pub async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        match &self.writer {
            Some(w) => Ok(WriteConn::Shared(w.conn().await?)),
            None => Ok(WriteConn::Pool(self.pool.acquire().await?)),
        }
    }

    /// Runs the reads of the hot paths (a device's throttle, a token, a
    /// device), as `db.pool()` does: on SQLite on the calling thread, with no
    /// hand-off to a driver thread (see [`inline::Readers`]); on PostgreSQL
    /// on the pool. Each query reads in full before its rows are handed back:
    /// not for long result sets.
    pub fn reader(&self) -> &Reader {
        &self.reader
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

enum Held {
    Shared(writer::SharedTx),
    Pool(sqlx::Transaction<'static, sqlx::Any>),
}

/// A write transaction from [`Db::begin_write`]: statements run on it as on
/// a connection (`&mut *tx`); it is rolled back unless committed.
pub struct WriteTx(Option<Held>);

impl WriteTx {
    /// Runs `w` and commits.
    pub async fn commit_with(mut self, db: &Db, w: &mut Writes) -> Result<(), sqlx::Error> {
        w.run(db, &mut *self).await?;
        self.commit().await
    }

    /// Commits; on SQLite possibly with the transactions queued behind this
    /// one (see [`writer`]). Returns once the commit is done.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.0.take().expect("a transaction is held until it ends") {
            Held::Shared(tx) => tx.commit().await,
            Held::Pool(tx) => tx.commit().await,
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self
            .0
            .as_ref()
            .expect("a transaction is held until it ends")
        {
            Held::Shared(w) => w.conn_ref(),
            Held::Pool(tx) => &**tx,
        }
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Conn {
        match self
            .0
            .as_mut()
            .expect("a transaction is held until it ends")
        {
            Held::Shared(w) => w.conn(),
            Held::Pool(tx) => &mut **tx,
        }
    }
}

/// A connection from [`Db::write_conn`].
pub enum WriteConn {
    Shared(OwnedMutexGuard<writer::Writer>),
    Pool(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl std::ops::Deref for WriteConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            WriteConn::Shared(w) => &***w,
            WriteConn::Pool(c) => &**c,
        }
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            WriteConn::Shared(w) => &mut ***w,
            WriteConn::Pool(c) => &mut **c,
        }
    }
}

async fn sqlite_pragmas(conn: &mut Conn) -> Result<(), sqlx::Error> {
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
/// [`Writes::run`] sends them, in order, usually with the commit. A read in
/// the same transaction does not see them before `run`: callers run them
/// before any read that could.
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

    /// Runs the statements, in order, and empties the list.
    pub async fn run(&mut self, db: &Db, tx: &mut Conn) -> Result<(), sqlx::Error> {
        for (sql, values) in std::mem::take(&mut self.statements) {
            let sql = db.sql(sql);
            bind_all(sqlx::query(&sql), values)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds `values` to `q`, in order.
pub fn bind_all(mut q: AnyQuery<'_>, values: Vec<Value>) -> AnyQuery<'_> {
    for v in values {
        q = match v {
            Value::Int(i) => q.bind(i),
            Value::Text(t) => q.bind(t),
        };
    }
    q
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

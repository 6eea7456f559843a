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
use sqlx::{AnyPool, Row};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

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
    writer: Option<AnyPool>,
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
            Dialect::Sqlite => Some(
                Self::pool_options(dialect, 1)
                    .connect(url)
                    .await
                    .context("cannot open the database")?,
            ),
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
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
    }

    /// A transaction for the hot write paths (a DM message, queueing
    /// commands, an audit append), holding the database's write lock from
    /// its first statement. SQLite has one writer at a time: these share one
    /// connection, so they queue in this process (first come, first served)
    /// instead of each connection finding the lock taken and sleeping in its
    /// busy handler (1, 2, 5, 10 ms...) while the lock sits idle; that
    /// connection's page cache also stays valid from one transaction to the
    /// next, as nobody else wrote meanwhile. `BEGIN IMMEDIATE` takes the
    /// write lock at once (another process sharing the file waits in the busy
    /// handler). On PostgreSQL a plain transaction; rows are locked with
    /// `FOR UPDATE`.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match &self.writer {
            Some(w) => w.begin_with("BEGIN IMMEDIATE").await,
            None => self.pool.begin().await,
        }
    }

    /// The pool for single statements on the hot write paths (see
    /// [`Db::begin_write`]); never use it while holding such a transaction.
    pub fn write_pool(&self) -> &AnyPool {
        self.writer.as_ref().unwrap_or(&self.pool)
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

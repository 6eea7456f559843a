//! SQLite's writer connection, driven on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement
//! is a hand-off there and back (about 47 µs with nothing else running, and
//! much more under load), and a write transaction holds SQLite's single
//! write lock through all of them. [`Inline`] runs the statements of the
//! hot write paths right where the task is, in microseconds, so the lock is
//! held only for the work itself. It speaks sqlx's `Executor` interface
//! through [`Conn`], so the store's queries run on it unchanged, as on a
//! pooled connection or a PostgreSQL transaction.

use either::Either;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::types::{Value as Lite, ValueRef};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Any, AnyConnection, Execute, Executor};
use sqlx_core::any::{
    AnyArguments, AnyColumn, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue,
    AnyValueKind,
};
use sqlx_core::ext::ustr::UStr;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection the store's statements run on: a sqlx connection or
/// transaction (`&mut *tx` coerces), or SQLite's [`Inline`] writer.
pub type Conn = dyn SqlConn;

/// What [`Conn`] asks of a connection: run one query.
pub trait SqlConn: Send + std::fmt::Debug {
    fn run<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: Option<AnyArguments<'q>>,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>;
}

impl SqlConn for AnyConnection {
    fn run<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: Option<AnyArguments<'q>>,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
        self.fetch_many((sql, args))
    }
}

/// The `Executor` methods other than `fetch_many`, in terms of it: the first
/// row of its results; statements are not prepared ahead.
macro_rules! beside_fetch_many {
    () => {
        fn fetch_optional<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
        where
            'c: 'e,
            E: 'q + Execute<'q, Any>,
        {
            first_row(self.fetch_many(query))
        }

        fn prepare_with<'e, 'q: 'e>(
            self,
            _sql: &'q str,
            _parameters: &'e [AnyTypeInfo],
        ) -> BoxFuture<'e, Result<sqlx::any::AnyStatement<'q>, sqlx::Error>>
        where
            'c: 'e,
        {
            Box::pin(async { Err(unsupported()) })
        }

        fn describe<'e, 'q: 'e>(
            self,
            _sql: &'q str,
        ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
        where
            'c: 'e,
        {
            Box::pin(async { Err(unsupported()) })
        }
    };
}

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        mut query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let sql = query.sql();
        match query.take_arguments() {
            Ok(args) => self.run(sql, args),
            Err(e) => Box::pin(stream::iter([Err(sqlx::Error::Encode(e))])),
        }
    }

    beside_fetch_many!();
}

impl<'c> Executor<'c> for &'c crate::store::Reader {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        mut query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        use crate::store::Reader;
        match self {
            Reader::Pool(pool) => pool.fetch_many(query),
            Reader::Inline(readers) => {
                let sql = query.sql();
                match query.take_arguments() {
                    Ok(args) => readers.run(sql, args),
                    Err(e) => Box::pin(stream::iter([Err(sqlx::Error::Encode(e))])),
                }
            }
        }
    }

    beside_fetch_many!();
}

/// The first row of `results`, which are read to their end.
fn first_row<'e>(
    mut results: BoxStream<'e, Result<Step, sqlx::Error>>,
) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>> {
    Box::pin(async move {
        let mut first = None;
        while let Some(r) = results.next().await {
            if let Either::Right(row) = r? {
                first.get_or_insert(row);
            }
        }
        Ok(first)
    })
}

fn unsupported() -> sqlx::Error {
    sqlx::Error::Protocol("statements are prepared as they run on this connection".into())
}

/// How long a statement begun outside a transaction waits for another
/// process (or a pooled connection) to release the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's writer connection, run on the calling thread.
pub struct Inline {
    conn: rusqlite::Connection,
    /// The result columns of each statement run, by its text: built once,
    /// not for every query (see [`Shape`]).
    shapes: std::collections::HashMap<String, Arc<Shape>>,
}

/// A statement's result columns as rows carry them: names by position and
/// positions by name.
struct Shape {
    columns: Vec<AnyColumn>,
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
}

impl Shape {
    fn of(names: Vec<&str>) -> Shape {
        let columns: Vec<AnyColumn> = names
            .into_iter()
            .enumerate()
            .map(|(ordinal, name)| AnyColumn {
                ordinal,
                name: UStr::from(name.to_owned()),
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            })
            .collect();
        let names = Arc::new(
            columns
                .iter()
                .map(|c| (c.name.clone(), c.ordinal))
                .collect(),
        );
        Shape { columns, names }
    }
}

/// Statement texts whose [`Shape`] an [`Inline`] keeps; past it they are
/// forgotten and built again as needed (texts with a varying list of
/// placeholders are many).
const SHAPES_KEPT: usize = 512;

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline").finish_non_exhaustive()
    }
}

impl Inline {
    /// Opens the database file of a `sqlite:` URL (created by the pool's
    /// migrations before); a reader refuses to write.
    pub fn open(url: &str, reader: bool) -> Result<Inline, sqlx::Error> {
        configure_library();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = rest.split('?').next().unwrap_or(rest);
        if path.is_empty() || path.starts_with(":memory:") {
            return Err(sqlx::Error::Configuration(
                "the writer needs a database file, not an in-memory database".into(),
            ));
        }
        use rusqlite::OpenFlags as F;
        let conn = rusqlite::Connection::open_with_flags(
            path,
            F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_CREATE | F::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(error)?;
        // Waiting for the lock is done here, asynchronously (see `run`),
        // never by blocking the thread in SQLite's busy handler.
        conn.busy_timeout(Duration::ZERO).map_err(error)?;
        conn.set_prepared_statement_cache_capacity(256);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .map_err(error)?;
        if reader {
            conn.execute_batch("PRAGMA query_only = ON;")
                .map_err(error)?;
        } else {
            // The log is copied back into the database by `checkpointer`,
            // beside the writer; the writer does it only if that falls far
            // behind.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)
                .map_err(error)?;
            // The savepoints of a group commit (see `store::writer`) keep
            // the pages they change in memory, not in a temporary file.
            conn.pragma_update(None, "temp_store", "MEMORY")
                .map_err(error)?;
            // A log that grew under load is cut back when it starts over.
            conn.pragma_update(None, "journal_size_limit", WAL_BACKSTOP_PAGES * 4096)
                .map_err(error)?;
            // Every transaction of the hot paths reaches into the indexes
            // of a different device (its jobs, its sessions, its history):
            // the writer keeps them in memory rather than reading them back
            // from the file each time (SQLite's default is 2 MiB).
            conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
                .map_err(error)?;
        }
        Ok(Inline {
            conn,
            shapes: std::collections::HashMap::new(),
        })
    }

    /// True inside a transaction.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs statements without values (`SAVEPOINT`, `RELEASE`…) at once.
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(error)
    }

    /// Rolls back the open transaction, if any.
    pub fn roll_back(&mut self) -> Result<(), sqlx::Error> {
        if self.in_transaction() {
            self.conn.execute_batch("ROLLBACK").map_err(error)?;
        }
        Ok(())
    }

    fn exec(&mut self, sql: &str, values: &[Lite]) -> Result<Vec<Step>, sqlx::Error> {
        let mut stmt = match self.conn.prepare_cached(sql) {
            Ok(s) => s,
            // Several statements without values (a script): run as one batch.
            Err(rusqlite::Error::MultipleStatement) if values.is_empty() => {
                self.conn.execute_batch(sql).map_err(error)?;
                return Ok(vec![Either::Left(AnyQueryResult {
                    rows_affected: self.conn.changes(),
                    last_insert_id: None,
                })]);
            }
            Err(e) => return Err(error(e)),
        };
        for (i, v) in values.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, v).map_err(error)?;
        }
        let mut out = Vec::new();
        let mut shape: Option<Arc<Shape>> = None;
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(error)? {
            // Read off the first row, not before: a statement prepared
            // before a change of the schema learns its new columns as it
            // runs.
            let shape = shape.get_or_insert_with(|| shape_for(&mut self.shapes, sql, row.as_ref()));
            let width = shape.columns.len();
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(AnyValue {
                    kind: any_value(row.get_ref(i).map_err(error)?)?,
                });
            }
            out.push(Either::Right(AnyRow {
                column_names: shape.names.clone(),
                columns: shape.columns.clone(),
                values,
            }));
        }
        drop(rows);
        out.push(Either::Left(AnyQueryResult {
            rows_affected: self.conn.changes(),
            last_insert_id: Some(self.conn.last_insert_rowid()),
        }));
        Ok(out)
    }
}

/// `stmt`'s [`Shape`], kept under its text `sql`: built again when its
/// columns are not those kept (the schema changed).
fn shape_for(
    shapes: &mut std::collections::HashMap<String, Arc<Shape>>,
    sql: &str,
    stmt: &rusqlite::Statement<'_>,
) -> Arc<Shape> {
    let names = stmt.column_names();
    if let Some(known) = shapes.get(sql) {
        if known
            .columns
            .iter()
            .map(|c| &*c.name)
            .eq(names.iter().copied())
        {
            return known.clone();
        }
    }
    let shape = Arc::new(Shape::of(names));
    if shapes.len() >= SHAPES_KEPT {
        shapes.clear();
    }
    shapes.insert(sql.to_owned(), shape.clone());
    shape
}

type Step = Either<AnyQueryResult, AnyRow>;

impl SqlConn for Inline {
    fn run<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: Option<AnyArguments<'q>>,
    ) -> BoxStream<'e, Result<Step, sqlx::Error>> {
        let values: Result<Vec<Lite>, _> = args
            .map(|a| a.values.0.into_iter().map(lite_value).collect())
            .unwrap_or(Ok(Vec::new()));
        let done = async move {
            let values = match values {
                Ok(v) => v,
                Err(e) => return vec![Err(e)],
            };
            let deadline = Instant::now() + BUSY_TIMEOUT;
            let mut pause = Duration::from_millis(1);
            loop {
                match self.exec(sql, &values) {
                    // Another connection writes: wait for it without holding
                    // the thread. Inside a transaction this connection holds
                    // the lock already, so the error is final.
                    Err(e)
                        if is_busy(&e) && !self.in_transaction() && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                    Ok(steps) => break steps.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => break vec![Err(e)],
                }
            }
        };
        Box::pin(stream::once(done).flat_map(stream::iter))
    }
}

/// Settings of the SQLite library itself, made once before its first
/// connection opens (later they cannot change): no memory statistics, which
/// cost a process-wide mutex around every allocation SQLite makes, its
/// allocations through mimalloc ([`super::malloc`]), and the page cache
/// layer of [`super::pcache`].
pub fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !super::malloc::install() {
            tracing::debug!("SQLite was initialized before its allocator was set");
        }
        if !super::pcache::install() {
            tracing::debug!("SQLite was initialized before its page cache layer was installed");
        }
        // SAFETY: `sqlite3_config` is called before SQLite is initialized
        // (it returns SQLITE_MISUSE, changing nothing, if it already is), with
        // the one integer argument SQLITE_CONFIG_MEMSTATUS takes.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite was initialized before its settings were made");
        }
    });
}

/// Pages in the write-ahead log past which the writer copies it back into
/// the database itself (about 64 MB).
const WAL_BACKSTOP_PAGES: i64 = 16_000;

/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// How often [`checkpointer`] copies the log back.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Copies the write-ahead log back into the database file, with its
/// `fsync`, on a blocking thread of its own every [`CHECKPOINT_EVERY`],
/// so the writer only appends to the log and never waits for the disk.
/// A passive checkpoint waits for no reader and no writer. Ends with the
/// database (`writer` dropped).
pub async fn checkpointer<W>(mut conn: Inline, writer: std::sync::Weak<W>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if writer.strong_count() == 0 {
            return;
        }
        let done = tokio::task::spawn_blocking(move || {
            let r = conn
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            (conn, r)
        })
        .await;
        match done {
            Ok((c, r)) => {
                conn = c;
                match r.map_err(error) {
                    // Busy: another connection is checkpointing.
                    Err(e) if !is_busy(&e) => {
                        tracing::warn!(error = %e, "checkpoint of the write-ahead log failed")
                    }
                    _ => {}
                }
            }
            Err(_) => return,
        }
    }
}

/// Connections for the reads of the hot paths, one taken per query and run
/// on the calling thread like [`Inline`]'s statements (see
/// [`crate::store::Db::reader`]).
pub struct Readers {
    url: String,
    idle: std::sync::Mutex<Vec<Inline>>,
}

/// Idle readers kept open; more are opened while more queries run at once.
const IDLE_READERS: usize = 8;

impl Readers {
    pub fn new(url: &str) -> Readers {
        Readers {
            url: url.to_owned(),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<Inline, sqlx::Error> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => Inline::open(&self.url, true),
        }
    }

    fn give_back(&self, c: Inline) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS && !c.in_transaction() {
            idle.push(c);
        }
    }

    /// Runs one query on a reader; the results are read in full first.
    pub fn run<'e, 'q: 'e>(
        &'e self,
        sql: &'q str,
        args: Option<AnyArguments<'q>>,
    ) -> BoxStream<'e, Result<Step, sqlx::Error>> {
        let done = async move {
            let mut c = match self.take() {
                Ok(c) => c,
                Err(e) => return vec![Err(e)],
            };
            let out: Vec<_> = c.run(sql, args).collect().await;
            self.give_back(c);
            out
        };
        Box::pin(stream::once(done).flat_map(stream::iter))
    }
}

fn lite_value(v: AnyValueKind<'_>) -> Result<Lite, sqlx::Error> {
    Ok(match v {
        AnyValueKind::Null(_) => Lite::Null,
        AnyValueKind::Bool(b) => Lite::Integer(b.into()),
        AnyValueKind::SmallInt(i) => Lite::Integer(i.into()),
        AnyValueKind::Integer(i) => Lite::Integer(i.into()),
        AnyValueKind::BigInt(i) => Lite::Integer(i),
        AnyValueKind::Real(r) => Lite::Real(r.into()),
        AnyValueKind::Double(r) => Lite::Real(r),
        AnyValueKind::Text(t) => Lite::Text(t.into_owned()),
        AnyValueKind::Blob(b) => Lite::Blob(b.into_owned()),
        other => {
            return Err(sqlx::Error::Encode(
                format!("a value of kind {other:?} cannot be bound on SQLite").into(),
            ))
        }
    })
}

fn any_value(v: ValueRef<'_>) -> Result<AnyValueKind<'static>, sqlx::Error> {
    Ok(match v {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(r) => AnyValueKind::Double(r),
        ValueRef::Text(t) => AnyValueKind::Text(Cow::Owned(
            String::from_utf8(t.to_vec()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        )),
        ValueRef::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.to_vec())),
    })
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<LiteError>()
            .is_some_and(|l| l.code & 0xff == rusqlite::ffi::SQLITE_BUSY),
        _ => false,
    }
}

/// An error SQLite reported, shaped as sqlx reports its own.
#[derive(Debug)]
pub struct LiteError {
    /// The extended result code.
    code: i32,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for LiteError {}

impl DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn error(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => sqlx::Error::Database(Box::new(LiteError {
            code: f.extended_code,
            message: message.unwrap_or_else(|| f.to_string()),
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    async fn rows(c: &mut Inline, sql: &str) -> Vec<AnyRow> {
        c.run(sql, None)
            .filter_map(|s| async move { s.ok().and_then(|s| s.right()) })
            .collect()
            .await
    }

    /// Rows carry their statement's columns, by name and by position,
    /// whether the statement's shape was built for them or kept from an
    /// earlier run, and after the kept shapes were forgotten.
    #[tokio::test]
    async fn rows_name_their_columns_when_shapes_are_kept_and_forgotten() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut c = Inline::open(&url, false).expect("opens");
        c.execute_batch(
            "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');",
        )
        .expect("creates");
        for round in 0..3 {
            let r = rows(&mut c, "SELECT a, b FROM t ORDER BY a").await;
            assert_eq!(r.len(), 2, "round {round}");
            assert_eq!(r[1].try_get::<i64, _>("a").expect("a"), 2);
            assert_eq!(r[1].try_get::<String, _>("b").expect("b"), "y");
            // The same table read through another statement: its own names.
            let r = rows(&mut c, "SELECT b AS first, a AS second FROM t ORDER BY a").await;
            assert_eq!(r[0].try_get::<String, _>(0).expect("by position"), "x");
            assert_eq!(r[0].try_get::<i64, _>("second").expect("second"), 1);
            assert!(r[0].try_get::<i64, _>("a").is_err(), "no column a here");
            // More statements than shapes kept: the cache starts over.
            for i in 0..SHAPES_KEPT / 2 + 1 {
                let r = rows(
                    &mut c,
                    &format!("SELECT a + {i} AS n{i} FROM t WHERE a = 1"),
                )
                .await;
                assert_eq!(
                    r[0].try_get::<i64, _>(format!("n{i}").as_str()).expect("n"),
                    1 + i as i64
                );
            }
            assert!(c.shapes.len() <= SHAPES_KEPT);
        }
        // A text whose columns changed with the schema is read with its
        // new columns.
        assert_eq!(rows(&mut c, "SELECT * FROM t").await[0].len(), 2);
        c.execute_batch("ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'z'")
            .expect("alters");
        let r = rows(&mut c, "SELECT * FROM t").await;
        assert_eq!(r[0].try_get::<String, _>("c").expect("the new column"), "z");
        // A statement without result columns keeps no shape.
        let before = c.shapes.len();
        rows(&mut c, "UPDATE t SET a = a").await;
        assert_eq!(c.shapes.len(), before);
    }

    fn pragma(c: &Inline, name: &str) -> i64 {
        c.conn
            .pragma_query_value(None, name, |r| r.get(0))
            .expect("a pragma's value")
    }

    /// The writer keeps a large page cache; a reader sees each of its
    /// commits, whether their pages are still in the log or were copied
    /// back into the file.
    #[tokio::test]
    async fn readers_see_every_commit_of_the_writer() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut w = Inline::open(&url, false).expect("the writer opens");
        w.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
            .expect("creates");
        let mut r = Inline::open(&url, true).expect("a reader opens");
        assert_eq!(pragma(&w, "cache_size"), -WRITER_CACHE_KIB);
        let checkpointer = Inline::open(&url, false).expect("opens");
        for i in 0..200 {
            w.execute_batch(&format!(
                "INSERT INTO t VALUES ({i}, 'v{i}') ON CONFLICT (k) DO NOTHING; \
                 UPDATE t SET v = 'w{i}' WHERE k = {}",
                i / 2
            ))
            .expect("writes");
            if i % 50 == 49 {
                checkpointer
                    .conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .expect("the log is copied back");
            }
            let got = rows(&mut r, "SELECT COUNT(*) AS n FROM t").await;
            assert_eq!(got[0].try_get::<i64, _>("n").expect("n"), i + 1);
            let v = rows(&mut r, &format!("SELECT v FROM t WHERE k = {}", i / 2)).await;
            assert_eq!(
                v[0].try_get::<String, _>("v").expect("v"),
                format!("w{i}"),
                "commit {i}"
            );
        }
        assert_eq!(pragma(&r, "query_only"), 1);
    }
}

//! What the integration tests share: a fresh database of either kind per
//! test, a running server on loopback, and a small portal client.
#![allow(dead_code)]

use handover::config::ServeConfig;
use handover::serve::{self, Bound, Running};
use handover::store::Db;
use std::path::PathBuf;

pub mod world;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty database, dropped with the value: a SQLite one with the
/// test's temporary directory, a PostgreSQL one by `DROP DATABASE`.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    /// The administrative URL and the database's name, for the one value
    /// that owns a PostgreSQL database.
    owned: Option<(String, String)>,
}

impl TestDb {
    /// The same database with a temporary directory of its own, for a
    /// second server; the database stays until `self` is dropped.
    pub fn sharing(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
            kind: self.kind,
            owned: None,
        }
    }
}

impl Drop for TestDb {
    /// Runs on a thread of its own, so it works inside any runtime and after
    /// a panic; `WITH (FORCE)` ends connections the test left open.
    fn drop(&mut self) {
        let Some((admin, name)) = self.owned.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("note: a test database was left behind: {dropped:?}");
        }
    }
}

/// `None` when PostgreSQL is not configured and this is not CI (then the
/// PostgreSQL half of a test is skipped with a note); CI must have it.
pub async fn fresh(kind: Kind) -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("temp dir");
    match kind {
        Kind::Sqlite => Some(TestDb {
            url: Db::sqlite_url(dir.path()),
            dir,
            kind,
            owned: None,
        }),
        Kind::Postgres => {
            let Ok(admin) = std::env::var("HANDOVER_TEST_PG") else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI must set HANDOVER_TEST_PG (make test does)"
                );
                eprintln!("PostgreSQL half skipped: set HANDOVER_TEST_PG=postgres://user:pw@127.0.0.1:5432/postgres");
                return None;
            };
            // The creation time in the name lets `make test` drop what a
            // killed run left behind without touching a run in progress.
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs();
            let name = format!("handover_test_{created}_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .expect("create database");
            pool.close().await;
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b)
                .expect("URL has a database");
            Some(TestDb {
                url: format!("{base}/{name}"),
                dir,
                kind,
                owned: Some((admin, name)),
            })
        }
    }
}

/// How long one half of a test may run, from its database's creation to
/// its runtime's end: far above the slowest (about a minute on a loaded
/// machine), far below the CI's limit, so a test that hangs fails with a
/// report instead of stalling the whole run.
pub const TEST_BOUND: std::time::Duration = std::time::Duration::from_secs(420);

/// Runs one half of a test on a fresh database of `kind`, as [`bounded`]
/// does; past the bound it first prints what every PostgreSQL session of
/// the test's database was doing.
pub fn run_bounded<F, Fut>(name: &'static str, kind: Kind, workers: usize, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = runtime(workers);
    let Some(db) = rt.block_on(fresh(kind)) else {
        return;
    };
    let pg = db.owned.clone();
    watched(name, rt, body(db), move || {
        if let Some((admin, db)) = pg {
            report_pg_sessions(name, &admin, &db);
        }
    });
}

/// Runs `test` on a multi-threaded runtime of its own under a watchdog:
/// past [`TEST_BOUND`] (a hang anywhere, the runtime's shutdown included)
/// the test process ends with a failure naming the test.
pub fn bounded(name: &'static str, workers: usize, test: impl std::future::Future<Output = ()>) {
    watched(name, runtime(workers), test, || {});
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn watched(
    name: &'static str,
    rt: tokio::runtime::Runtime,
    test: impl std::future::Future<Output = ()>,
    report: impl FnOnce() + Send + 'static,
) {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(TEST_BOUND) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        // One report per process: the first watchdog to fire ends it.
        static REPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if REPORTING.swap(true, std::sync::atomic::Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        report();
        thread_stacks();
        say(&format!(
            "{name} did not finish within {TEST_BOUND:?}: ending the test process"
        ));
        std::process::exit(101);
    });
    rt.block_on(test);
    drop(rt);
    let _ = done.send(());
    let _ = watchdog.join();
}

/// Prints every thread's stack with gdb, where the machine has it (a hang's
/// blocked threads show where it waits). gdb stops this thread too while it
/// is attached, so it writes to a file, read once it is gone: a pipe read
/// by this thread would fill up and stall both.
fn thread_stacks() {
    let pid = std::process::id().to_string();
    let stacks = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => return say(&format!("no thread stacks (temporary file: {e})")),
    };
    let run = |f: &std::fs::File| -> std::io::Result<std::process::ExitStatus> {
        std::process::Command::new("gdb")
            .args(["-p", &pid, "-batch", "-nx", "-ex", "thread apply all bt 40"])
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f.try_clone()?)
            .status()
    };
    match run(&stacks) {
        Ok(_) => {
            use std::io::{Read, Seek};
            let mut text = String::new();
            let mut f = stacks;
            let _ = f.rewind();
            let _ = f.read_to_string(&mut text);
            say(&format!("thread stacks:\n{text}"));
        }
        Err(e) => say(&format!("no thread stacks (gdb: {e})")),
    }
}

/// Writes a line to the process's stderr, past the test harness's capture
/// (which a process ending now would never print).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn report_pg_sessions(name: &str, admin: &str, db: &str) {
    let rows = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(sqlx::Error::from)
        .and_then(|rt| rt.block_on(pg_sessions(admin, db)));
    match rows {
        Ok(rows) => {
            say(&format!(
                "{name}: the database's sessions when the bound passed:"
            ));
            for r in rows {
                say(&format!("  {r}"));
            }
        }
        Err(e) => say(&format!(
            "{name}: the database's sessions could not be read: {e}"
        )),
    }
}

async fn pg_sessions(admin: &str, db: &str) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    let rows = sqlx::query(
        "SELECT pid, coalesce(state, ''), coalesce(wait_event_type, ''), \
         coalesce(wait_event, ''), coalesce(pg_blocking_pids(pid)::text, ''), \
         left(coalesce(query, ''), 300) \
         FROM pg_stat_activity WHERE datname = $1 ORDER BY pid",
    )
    .bind(db)
    .fetch_all(&mut conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "pid {} {} wait {}:{} blocked by {}: {}",
                r.get::<i32, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
                r.get::<String, _>(3),
                r.get::<String, _>(4),
                r.get::<String, _>(5)
            )
        })
        .collect())
}

/// Runs `body` once on SQLite and once on PostgreSQL, each within
/// [`TEST_BOUND`].
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[test]
                fn sqlite() {
                    $crate::common::run_bounded(
                        concat!(module_path!(), "::sqlite"),
                        $crate::common::Kind::Sqlite,
                        2,
                        super::$body,
                    );
                }
                #[test]
                fn postgres() {
                    $crate::common::run_bounded(
                        concat!(module_path!(), "::postgres"),
                        $crate::common::Kind::Postgres,
                        2,
                        super::$body,
                    );
                }
            }
        )*
    };
}

pub fn serve_config(db: &TestDb) -> ServeConfig {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    ServeConfig {
        data_dir: db.dir.path().to_path_buf(),
        database_url: db.url.clone(),
        portal_addr: any,
        dm_addr: any,
        peer_addr: any,
        server_id: "corp.example".into(),
        site_root: PathBuf::from(db.dir.path()),
        secure_cookie: false,
        session_idle_secs: 1800,
        device_secrets_key: None,
        dm: Default::default(),
        delegation: Default::default(),
    }
}

pub async fn start(cfg: ServeConfig) -> (Bound, Running) {
    serve::start(cfg).await.expect("server starts")
}

pub const PASSWORD: &str = "correct horse battery staple";

pub async fn create_user(db: &Db, name: &str, roles: &[handover_app::api::Role]) {
    use handover::portal::password::{hash, Password};
    let h = hash(Password::new(PASSWORD.into()).unwrap()).await.unwrap();
    handover::store::users::create(db, name, &h, roles)
        .await
        .unwrap();
}

/// A response's `Location`, empty when it has none.
fn location_of(res: &reqwest::Response) -> String {
    res.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A browser-like portal client: keeps the session cookie, posts forms.
pub struct Portal {
    pub base: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Portal {
    pub fn new(bound: &Bound) -> Self {
        Portal {
            base: format!("http://{}", bound.portal),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // A request the server never answers fails the test, naming
                // the request, well before the test's bound.
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    /// Sends `req` with the session cookie, and keeps the one it sets.
    async fn send(&mut self, mut req: reqwest::RequestBuilder) -> reqwest::Response {
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let res = req.send().await.expect("request");
        self.keep_cookie(&res);
        res
    }

    fn keep_cookie(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap_or("");
            if let Some(pair) = v.split(';').next() {
                if let Some(val) = pair.strip_prefix("handover_session=") {
                    self.cookie = if val.is_empty() {
                        None
                    } else {
                        Some(pair.to_owned())
                    };
                }
            }
        }
    }

    /// Calls a server function with a url-encoded form; returns status and body.
    pub async fn call(&mut self, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
        let req = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .header("Accept", "application/json")
            .form(form);
        let res = self.send(req).await;
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let (status, _, body) = self.get_located(path).await;
        (status, body)
    }

    /// A GET as a browser sends it: status, `Location` (empty when none) and body.
    pub async fn get_located(&mut self, path: &str) -> (u16, String, String) {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "text/html");
        let res = self.send(req).await;
        let status = res.status().as_u16();
        let location = location_of(&res);
        (status, location, res.text().await.unwrap_or_default())
    }

    /// Posts a form as a browser without JavaScript does: it asks for HTML
    /// and names the page it came from. Returns status and `Location`.
    pub async fn post_page_form(
        &mut self,
        endpoint: &str,
        from: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let req = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .header("Accept", "text/html")
            .header("Referer", format!("{}{from}", self.base))
            .form(form);
        let res = self.send(req).await;
        let location = location_of(&res);
        (res.status().as_u16(), location)
    }

    pub fn cookie_value(&self) -> Option<String> {
        self.cookie.clone()
    }

    pub fn set_cookie(&mut self, cookie: Option<String>) {
        self.cookie = cookie;
    }

    pub async fn sign_in(&mut self, name: &str) {
        let (status, body) = self
            .call("session/sign-in", &[("name", name), ("password", PASSWORD)])
            .await;
        assert!(
            (200..400).contains(&status),
            "sign-in of {name}: {status} {body}"
        );
        assert!(self.cookie.is_some(), "sign-in sets the session cookie");
    }
}

/// A device's DevDetail and cached tree, as a DM session leaves them.
pub async fn insert_inventory(db: &Db, devid: &str, devdetail: &str, tree: &str) {
    sqlx::query(
        &db.sql("INSERT INTO device_inventory (devid, devdetail, tree) VALUES ($1, $2, $3)"),
    )
    .bind(devid)
    .bind(devdetail)
    .bind(tree)
    .execute(db.pool())
    .await
    .expect("insert the device's inventory");
}

/// How many audit entries of `event` the log holds.
pub async fn audited(db: &Db, event: handover::audit::Event) -> i64 {
    handover::audit::count(
        db,
        &handover::audit::Filter {
            code: Some(event.code()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// A pool on `t`'s database with the migrations numbered below `version`
/// run, as a database made before that migration has them; the rest run
/// when a [`Db`] connects to it.
pub async fn migrated_before(t: &TestDb, version: &str) -> sqlx::AnyPool {
    let dialect = match t.kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
    };
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect);
    let before = tempfile::tempdir().expect("a temporary directory");
    for entry in std::fs::read_dir(&all).expect("the migrations") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
        if name < version {
            std::fs::copy(&path, before.path().join(name)).expect("copied");
        }
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&t.url).await.expect("connects");
    sqlx::migrate::Migrator::new(before.path())
        .await
        .expect("the earlier migrations")
        .run(&pool)
        .await
        .expect("they run");
    pool
}

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

/// Runs `body` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(db) = $crate::common::fresh($crate::common::Kind::Sqlite).await {
                        super::$body(db).await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = $crate::common::fresh($crate::common::Kind::Postgres).await {
                        super::$body(db).await;
                    }
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
                .build()
                .unwrap(),
            cookie: None,
        }
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
        let mut req = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .header("Accept", "application/json")
            .form(form);
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let res = req.send().await.expect("request");
        self.keep_cookie(&res);
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let res = req.send().await.expect("request");
        self.keep_cookie(&res);
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    }

    /// Posts a form as a browser without JavaScript does: it asks for HTML
    /// and names the page it came from. Returns status and `Location`.
    pub async fn post_page_form(
        &mut self,
        endpoint: &str,
        from: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .header("Accept", "text/html")
            .header("Referer", format!("{}{from}", self.base))
            .form(form);
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let res = req.send().await.expect("request");
        self.keep_cookie(&res);
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
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

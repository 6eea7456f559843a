//! The real server with the real device simulator, on loopback (PROTOCOL
//! Part A end to end): a fleet is imported through `handover admin devices
//! import`, enrols, runs queued jobs, answers HTTP push, and survives
//! restarts of either side. Between the simulator and the DM endpoint sits
//! a small recording proxy that can hold one message, so a test can restart
//! a server (or the simulator) in the middle of a session.

mod common;

use common::{audited, serve_config, start, TestDb};
use handover::audit::Event;
use handover::dm::auth::AuthType;
use handover::dm::session::ServerSession;
use handover::dm::syncml::Encoding;
use handover::dm::{ServerId, Tree, TreeUri};
use handover::serve::{Bound, Running};
use handover::sim::{Sim, SimConfig};
use handover::store::{devices, jobs, Db};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SERVER: &str = "corp.example";
const VPN: &str = "./Vendor/Corp/Apps/VPN/Enabled";

fn uri(s: &str) -> TreeUri {
    TreeUri::parse(s).unwrap()
}

// ---------------------------------------------------------------------------
// The recording, holding proxy.

/// One message through the proxy.
#[derive(Clone)]
struct Exchange {
    devid: String,
    session_id: String,
    at: Instant,
    request: Vec<u8>,
    status: u16,
    response: Vec<u8>,
}

/// What to do with a held message once released.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Release {
    Forward,
    Drop,
}

struct Hold {
    devid: String,
    /// Hold the device's n-th message from when the hold was set (1-based).
    nth: usize,
    seen: usize,
    held: Option<tokio::sync::oneshot::Sender<()>>,
    release: Option<tokio::sync::oneshot::Receiver<Release>>,
}

struct ProxyState {
    target: Mutex<String>,
    log: Mutex<Vec<Exchange>>,
    hold: Mutex<Option<Hold>>,
    http: reqwest::Client,
}

struct Proxy {
    url: String,
    state: Arc<ProxyState>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        use axum::routing::post;
        let state = Arc::new(ProxyState {
            target: Mutex::new(target),
            log: Mutex::new(Vec::new()),
            hold: Mutex::new(None),
            // No idle connections kept: the server behind may be restarted.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        });
        let app = axum::Router::new()
            .route("/dm", post(forward))
            .with_state(state.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/dm", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Proxy { url, state }
    }

    fn retarget(&self, bound: &Bound) {
        *self.state.target.lock().unwrap() = format!("http://{}/dm", bound.dm);
    }

    fn log(&self) -> Vec<Exchange> {
        self.state.log.lock().unwrap().clone()
    }

    fn log_of(&self, devid: &str) -> Vec<Exchange> {
        self.log()
            .into_iter()
            .filter(|e| e.devid == devid)
            .collect()
    }

    /// Holds the device's `nth` next message; returns (held, release).
    fn hold(
        &self,
        devid: &str,
        nth: usize,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<Release>,
    ) {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (rel_tx, rel_rx) = tokio::sync::oneshot::channel();
        *self.state.hold.lock().unwrap() = Some(Hold {
            devid: devid.into(),
            nth,
            seen: 0,
            held: Some(held_tx),
            release: Some(rel_rx),
        });
        (held_rx, rel_tx)
    }
}

async fn forward(
    axum::extract::State(st): axum::extract::State<Arc<ProxyState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let at = Instant::now();
    let (devid, session_id) = ServerSession::peek(&body).unwrap_or_default();
    let wait = {
        let mut h = st.hold.lock().unwrap();
        match h.as_mut() {
            Some(h) if h.devid == devid => {
                h.seen += 1;
                if h.seen == h.nth {
                    let _ = h.held.take().map(|t| t.send(()));
                    h.release.take()
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    if let Some(rx) = wait {
        if rx.await.unwrap_or(Release::Drop) == Release::Drop {
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "dropped").into_response();
        }
    }
    let target = st.target.lock().unwrap().clone();
    let mut req = st.http.post(&target).body(body.to_vec());
    for name in ["content-type", "x-syncml-hmac"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.as_bytes());
        }
    }
    let (status, ct, hmac, response) = match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_owned();
            // A.4: the server's MAC over the body goes to the device as is.
            let hmac = r.headers().get("x-syncml-hmac").cloned();
            (
                status,
                ct,
                hmac,
                r.bytes().await.unwrap_or_default().to_vec(),
            )
        }
        Err(_) => (
            502,
            "text/plain".to_owned(),
            None,
            b"server unreachable".to_vec(),
        ),
    };
    st.log.lock().unwrap().push(Exchange {
        devid,
        session_id,
        at,
        request: body.to_vec(),
        status,
        response: response.clone(),
    });
    let mut res = (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
        response,
    )
        .into_response();
    res.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_str(&ct).unwrap(),
    );
    if let Some(h) = hmac {
        res.headers_mut().insert("x-syncml-hmac", h);
    }
    res
}

// ---------------------------------------------------------------------------
// A server, a fleet imported into it, and the proxy between them.

struct Setup {
    db: Db,
    running: Running,
    proxy: Proxy,
    sim: Sim,
    sim_dir: PathBuf,
}

fn sim_config(dir: &Path, devices: usize, url: &str, auth: AuthType, enc: Encoding) -> SimConfig {
    let mut cfg = SimConfig::new(devices, url, dir);
    cfg.auth = auth;
    cfg.encoding = enc;
    cfg.server_id = ServerId::parse(SERVER).unwrap();
    cfg.push_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.request_timeout = Duration::from_secs(20);
    cfg.concurrency = 32;
    cfg
}

/// `handover --data-dir … --database-url … ARGS…`, as an operator runs it.
async fn admin(t: &TestDb, args: &[&str]) -> i32 {
    use clap::Parser;
    let mut argv = vec![
        "handover",
        "--data-dir",
        t.dir.path().to_str().unwrap(),
        "--database-url",
        &t.url,
    ];
    argv.extend_from_slice(args);
    let cli = handover::cli::Cli::try_parse_from(argv).unwrap();
    handover::cli::run(cli).await.unwrap()
}

async fn import(t: &TestDb, csv: &Path) {
    let code = admin(t, &["admin", "devices", "import", csv.to_str().unwrap()]).await;
    assert_eq!(code, 0, "devices import");
}

async fn setup(t: &TestDb, n: usize, auth: AuthType, enc: Encoding) -> Setup {
    let (bound, running) = start(serve_config(t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    let proxy = Proxy::start(format!("http://{}/dm", bound.dm)).await;
    let sim_dir = t.dir.path().join("sim");
    let sim = Sim::start(sim_config(&sim_dir, n, &proxy.url, auth, enc))
        .await
        .unwrap();
    import(t, &sim_dir.join("devices.csv")).await;
    Setup {
        db,
        running,
        proxy,
        sim,
        sim_dir,
    }
}

fn text(tree: &Tree, u: &str) -> String {
    String::from_utf8_lossy(tree.value(&uri(u)).unwrap_or_default()).into_owned()
}

fn verno(tree: &Tree, u: &str) -> u16 {
    tree.node(&uri(u)).expect("node").verno
}

async fn queue(db: &Db, devid: &str, c: serde_json::Value) -> i64 {
    let c: jobs::JobCommand = serde_json::from_value(c).unwrap();
    c.validate().unwrap();
    jobs::enqueue(db, db.pool(), devid, &c, "ana", false)
        .await
        .unwrap()
}

async fn job(db: &Db, id: i64) -> jobs::Job {
    jobs::get(db, id).await.unwrap().unwrap()
}

/// The SyncHdr Status code of a server message in XML (CmdRef 0).
fn hdr_status(xml: &[u8]) -> u16 {
    let m = handover::dm::decode(xml).expect("a SyncML message");
    for c in &m.body {
        if let handover::dm::syncml::Command::Status(s) = c {
            if s.cmd == "SyncHdr" {
                return s.data.code();
            }
        }
    }
    panic!("no SyncHdr status");
}

// ---------------------------------------------------------------------------
// 1. Enrolment of 100 devices.

// PROTOCOL A.3, A.4, A.6: 100 devices imported from the simulator's
// devices.csv enrol in one session each; DevInfo, DevDetail, tree cached.
async fn hundred_devices_enrol(t: TestDb) {
    let s = setup(&t, 100, AuthType::Md5, Encoding::Xml).await;
    let t0 = Instant::now();
    assert!(s.sim.run_once().await, "{}", s.sim.stats());
    eprintln!("100 enrolment sessions in {:?}", t0.elapsed());
    let st = s.sim.stats();
    assert_eq!((st.sessions_ok, st.sessions_failed), (100, 0), "{st}");
    // Nine DevDetail Gets on first contact (A.6).
    assert_eq!(st.commands_executed, 900, "{st}");
    for id in s.sim.dev_ids() {
        let tree = s.sim.tree(&id).await.unwrap();
        let d = devices::get(&s.db, &id).await.unwrap().expect("imported");
        assert_eq!(d.state, "active", "{id}");
        assert!(d.first_seen.is_some());
        assert_eq!(d.man, text(&tree, "./DevInfo/Man"));
        assert_eq!(d.model, text(&tree, "./DevInfo/Mod"));
        assert_eq!(d.lang, text(&tree, "./DevInfo/Lang"));
        let detail: serde_json::Value = serde_json::from_str(&d.devdetail).unwrap();
        for leaf in handover::device::session::DEVDETAIL_LEAVES {
            assert_eq!(
                detail[*leaf].as_str().unwrap_or("<missing>"),
                text(&tree, &format!("./DevDetail/{leaf}")),
                "{id} DevDetail/{leaf}"
            );
        }
        assert!(d.tree.contains("./DevInfo/Man"), "{id}: tree cached");
        assert!(d.tree.contains("./DevDetail/FwV"), "{id}: tree cached");
        let hist = devices::sessions(&s.db, &id, 5).await.unwrap();
        assert_eq!(hist.len(), 1);
        assert_eq!(hist[0].outcome, "completed");
    }
    let pending = jobs::for_device(&s.db, &s.sim.dev_ids()[0], 50)
        .await
        .unwrap();
    assert!(pending.iter().all(|j| j.state == "succeeded"));
    // A second round: nonces moved on on both sides, nothing more to read.
    assert!(s.sim.run_once().await);
    assert_eq!(s.sim.stats().commands_executed, 900);
    s.sim.shutdown().await;
    s.running.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Auth schemes and encodings.

// PROTOCOL A.4: MD5 with a stale nonce is challenged (401 + fresh nonce)
// and succeeds on the retry; HMAC and WBXML fleets enrol.
async fn md5_hmac_wbxml_fleets(t: TestDb) {
    for (auth, enc) in [
        (AuthType::Md5, Encoding::Xml),
        (AuthType::Hmac, Encoding::Xml),
        (AuthType::Md5, Encoding::Wbxml),
        (AuthType::Hmac, Encoding::Wbxml),
    ] {
        let sub = t.sharing();
        let s = setup(&sub, 10, auth, enc).await;
        let ids = s.sim.dev_ids();
        // The server's idea of the first device's nonce is stale.
        if auth == AuthType::Md5 {
            sqlx::query(
                &s.db
                    .sql("UPDATE devices SET client_nonce = $1 WHERE devid = $2"),
            )
            .bind("c3RhbGU=")
            .bind(&ids[0])
            .execute(s.db.pool())
            .await
            .unwrap();
        }
        assert!(
            s.sim.run_once().await,
            "{auth:?} {enc:?}: {}",
            s.sim.stats()
        );
        assert!(s.sim.run_once().await, "{auth:?} {enc:?} round 2");
        let st = s.sim.stats();
        assert_eq!((st.sessions_ok, st.auth_failures), (20, 0), "{st}");
        let first = s.proxy.log_of(&ids[0]);
        if auth == AuthType::Md5 && enc == Encoding::Xml {
            // Challenged once with a fresh nonce, then authenticated.
            assert_eq!(hdr_status(&first[0].response), 401);
            assert!(String::from_utf8_lossy(&first[0].response).contains("NextNonce"));
            assert_eq!(hdr_status(&first[1].response), 212);
        }
        if auth == AuthType::Hmac && enc == Encoding::Xml {
            // A.4: HMAC gets 200 (not 212) on every message.
            for e in s.proxy.log() {
                assert_eq!(hdr_status(&e.response), 200);
            }
        }
        for id in &ids {
            let d = devices::get(&s.db, id).await.unwrap().unwrap();
            assert_eq!(d.state, "active");
            assert_eq!(
                d.auth_type,
                if auth == AuthType::Md5 { "md5" } else { "hmac" }
            );
        }
        let ct = if enc == Encoding::Wbxml { 0x02 } else { b'<' };
        assert!(s.proxy.log().iter().all(|e| e.response[0] == ct));
        s.sim.shutdown().await;
        s.running.stop().await;
    }
}

// PROTOCOL A.4: basic over plain HTTP is never accepted; the server
// challenges for MD5 (or refuses).
async fn basic_refused_without_tls(t: TestDb) {
    let s = setup(&t, 5, AuthType::Basic, Encoding::Xml).await;
    let ok = s.sim.run_once().await;
    for id in s.sim.dev_ids() {
        let log = s.proxy.log_of(&id);
        let first = &log[0];
        assert!(String::from_utf8_lossy(&first.request).contains("syncml:auth-basic"));
        let code = hdr_status(&first.response);
        assert!(
            code == 401 || code == 407,
            "basic over HTTP answered {code}"
        );
        let answer = String::from_utf8_lossy(&first.response);
        assert!(answer.contains("syncml:auth-md5"), "challenged to MD5");
        // Every message the server accepted was authenticated by MD5.
        for e in &log {
            if hdr_status(&e.response) == 212 {
                let req = String::from_utf8_lossy(&e.request);
                assert!(req.contains("syncml:auth-md5"), "{req}");
            }
        }
    }
    eprintln!("basic fleet: all completed by MD5: {ok}; {}", s.sim.stats());
    s.sim.shutdown().await;
    s.running.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Wrong secret.

// PROTOCOL A.4: a wrong client secret is challenged once more with a fresh
// nonce, then the session ends; it is audited and recorded.
async fn wrong_secret_is_challenged_then_ended(t: TestDb) {
    let s = setup(&t, 4, AuthType::Md5, Encoding::Xml).await;
    let ids = s.sim.dev_ids();
    let csv = std::fs::read_to_string(s.sim_dir.join("devices.csv")).unwrap();
    let rows = handover::sim::csv::parse(&csv).unwrap();
    let mut bad = rows[1].clone();
    bad.client_secret = "not-the-secret".into();
    let file = t.dir.path().join("tampered.csv");
    std::fs::write(&file, handover::sim::csv::write(&[bad])).unwrap();
    import(&t, &file).await;

    assert!(!s.sim.run_once().await);
    let st = s.sim.stats();
    assert_eq!((st.sessions_ok, st.sessions_failed), (3, 1), "{st}");
    assert_eq!(st.auth_failures, 1);
    let log = s.proxy.log_of(&ids[1]);
    assert_eq!(log.len(), 2, "challenged once, then ended");
    assert!(log.iter().all(|e| e.status == 200));
    assert_eq!(log[0].session_id, log[1].session_id);
    assert_eq!(hdr_status(&log[0].response), 401);
    assert_eq!(hdr_status(&log[1].response), 401);
    assert_ne!(
        String::from_utf8_lossy(&log[0].response),
        String::from_utf8_lossy(&log[1].response),
        "a fresh nonce each time"
    );
    assert_eq!(audited(&s.db, Event::DmAuthFailed).await, 1);
    let hist = devices::sessions(&s.db, &ids[1], 5).await.unwrap();
    assert_eq!(hist[0].outcome, "auth-failed");
    let d = devices::get(&s.db, &ids[1]).await.unwrap().unwrap();
    assert!(d.first_seen.is_none(), "never authenticated");
    s.sim.shutdown().await;
    s.running.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Refused ACL Replace, failed Atomic.

// PROTOCOL A.7: a Replace of an ACL the server may not change is 425 and
// the job fails with it; an Atomic with a failing member fails and the
// device rolls back (its Vendor subtree is unchanged).
async fn refused_acl_and_atomic_rollback(t: TestDb) {
    let s = setup(&t, 3, AuthType::Md5, Encoding::Xml).await;
    assert!(s.sim.run_once().await);
    let id = s.sim.dev_ids()[0].clone();
    let before = s.sim.tree(&id).await.unwrap();
    let acl = queue(
        &s.db,
        &id,
        json!({"cmd":"Replace","target":"./Vendor?prop=ACL","data":format!("Get=*&Replace={SERVER}")}),
    )
    .await;
    let atomic = queue(
        &s.db,
        &id,
        json!({"cmd":"Atomic","commands":[
            {"cmd":"Replace","target":VPN,"data":"true"},
            {"cmd":"Replace","target":"./Vendor/Corp/Apps/Nowhere/X","data":"y"}]}),
    )
    .await;
    let ok = queue(
        &s.db,
        &id,
        json!({"cmd":"Get","target":"./Vendor/Corp/Apps/Mail/Server"}),
    )
    .await;
    assert!(s.sim.run_once().await);
    let j = job(&s.db, acl).await;
    assert_eq!((j.state.as_str(), j.status), ("failed", Some(425)), "{j:?}");
    let j = job(&s.db, atomic).await;
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.status.unwrap() >= 400, "{j:?}");
    let j = job(&s.db, ok).await;
    assert_eq!(j.state, "succeeded");
    assert_eq!(j.results.unwrap()["items"][0]["data"], "mail.corp.example");

    let after = s.sim.tree(&id).await.unwrap();
    assert_eq!(text(&after, VPN), "false", "the Atomic rolled back");
    assert_eq!(verno(&after, VPN), verno(&before, VPN));
    assert_eq!(
        before.list(&uri("./Vendor")),
        after.list(&uri("./Vendor")),
        "Vendor subtree unchanged"
    );
    assert_eq!(audited(&s.db, Event::DmAclChanged).await, 1);
    s.sim.shutdown().await;
    s.running.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Notification over HTTP push.

// PROTOCOL A.5: `handover admin devices notify` pushes package 0 to the
// simulator, which answers with a session (Alert 1200) within one second.
async fn push_starts_a_session_within_a_second(t: TestDb) {
    let s = setup(&t, 5, AuthType::Md5, Encoding::Xml).await;
    assert!(s.sim.run_once().await);
    let id = s.sim.dev_ids()[2].clone();
    let get = queue(&s.db, &id, json!({"cmd":"Get","target":VPN})).await;
    let before = s.proxy.log().len();
    let t0 = Instant::now();
    assert_eq!(admin(&t, &["admin", "devices", "notify", &id]).await, 0);
    let deadline = Duration::from_secs(10);
    loop {
        if job(&s.db, get).await.state == "succeeded" {
            break;
        }
        assert!(t0.elapsed() < deadline, "the notified session never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = s.proxy.log();
    let first = &log[before];
    assert_eq!(first.devid, id);
    assert!(String::from_utf8_lossy(&first.request).contains("<Data>1200</Data>"));
    let started = first.at.duration_since(t0);
    eprintln!(
        "notify → first message {started:?}, → job done {:?}",
        t0.elapsed()
    );
    assert!(started < Duration::from_secs(1), "{started:?}");
    let st = s.sim.stats();
    assert_eq!(
        (st.notifications_received, st.notifications_refused),
        (1, 0)
    );
    s.sim.shutdown().await;
    s.running.stop().await;
}

// ---------------------------------------------------------------------------
// 6, 7. Restarts.

/// Runs one session round with the proxy holding the device's `nth`
/// message until `meanwhile` has run; returns what run_once said.
async fn with_held_message<F, Fut>(
    sim: &Sim,
    proxy: &Proxy,
    devid: &str,
    nth: usize,
    meanwhile: F,
) -> bool
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (held, release) = proxy.hold(devid, nth);
    let run = sim.run_once();
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => panic!("the session ended before message {nth}"),
        h = held => h.expect("the message was held"),
    }
    meanwhile().await;
    release.send(Release::Forward).unwrap();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the session finishes")
}

async fn job_rows(db: &Db, devid: &str, target: &str) -> Vec<jobs::Job> {
    jobs::for_device(db, devid, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.command.to_string().contains(target))
        .collect()
}

// A server restart between two messages of a session, and (7) a second
// instance on the same database continuing a session begun on the first:
// each job runs exactly once on the device (VerNo moves by one) and has one
// row, succeeded.
async fn server_restart_and_second_instance(t: TestDb) {
    let Setup {
        db,
        running,
        proxy,
        sim,
        ..
    } = setup(&t, 3, AuthType::Md5, Encoding::Xml).await;
    assert!(sim.run_once().await);
    let id = sim.dev_ids()[1].clone();
    let v0 = verno(&sim.tree(&id).await.unwrap(), VPN);

    // Restart: the device's package 3 waits while the server is replaced.
    let j1 = queue(
        &db,
        &id,
        json!({"cmd":"Replace","target":VPN,"data":"true"}),
    )
    .await;
    let mut keep = Vec::new();
    let ok = with_held_message(&sim, &proxy, &id, 2, || async {
        assert_eq!(job(&db, j1).await.state, "sent");
        running.stop().await;
        let (b2, r2) = start(serve_config(&t)).await;
        proxy.retarget(&b2);
        keep.push(r2);
    })
    .await;
    assert!(ok, "{}", sim.stats());
    let j = job(&db, j1).await;
    assert_eq!((j.state.as_str(), j.status), ("succeeded", Some(200)));
    let tree = sim.tree(&id).await.unwrap();
    assert_eq!(text(&tree, VPN), "true");
    assert_eq!(verno(&tree, VPN), v0 + 1, "executed once");

    // A second instance on the same database, both running.
    let j2 = queue(
        &db,
        &id,
        json!({"cmd":"Replace","target":VPN,"data":"false"}),
    )
    .await;
    let ok = with_held_message(&sim, &proxy, &id, 2, || async {
        let (b3, r3) = start(serve_config(&t)).await;
        proxy.retarget(&b3);
        keep.push(r3);
    })
    .await;
    assert!(ok, "{}", sim.stats());
    let j = job(&db, j2).await;
    assert_eq!((j.state.as_str(), j.status), ("succeeded", Some(200)));
    let tree = sim.tree(&id).await.unwrap();
    assert_eq!(text(&tree, VPN), "false");
    assert_eq!(verno(&tree, VPN), v0 + 2);

    // Nothing is sent again.
    assert!(sim.run_once().await);
    assert_eq!(verno(&sim.tree(&id).await.unwrap(), VPN), v0 + 2);
    assert_eq!(job_rows(&db, &id, VPN).await.len(), 2);
    let hist = devices::sessions(&db, &id, 10).await.unwrap();
    assert!(hist.iter().all(|h| h.outcome == "completed"), "{hist:?}");
    sim.shutdown().await;
    for r in keep {
        r.stop().await;
    }
}

// A simulator restart: between sessions the fleet is the same and a queued
// job runs once; killed in the middle of a session (the device never
// reports), the job is not sent again (it may have run) and the next
// session of the restarted device succeeds.
async fn simulator_restart(t: TestDb) {
    let s = setup(&t, 3, AuthType::Hmac, Encoding::Wbxml).await;
    assert!(s.sim.run_once().await);
    let id = s.sim.dev_ids()[0].clone();
    let v0 = verno(&s.sim.tree(&id).await.unwrap(), VPN);
    let j1 = queue(
        &s.db,
        &id,
        json!({"cmd":"Replace","target":VPN,"data":"true"}),
    )
    .await;

    // Between sessions.
    let cfg = sim_config(&s.sim_dir, 3, &s.proxy.url, AuthType::Hmac, Encoding::Wbxml);
    s.sim.shutdown().await;
    let sim = Sim::start(cfg.clone()).await.unwrap();
    assert!(sim.run_once().await, "{}", sim.stats());
    assert!(sim.run_once().await);
    let tree = sim.tree(&id).await.unwrap();
    assert_eq!(verno(&tree, VPN), v0 + 1, "executed once");
    assert_eq!(job(&s.db, j1).await.state, "succeeded");

    // In the middle of a session: package 3 never arrives.
    let j2 = queue(
        &s.db,
        &id,
        json!({"cmd":"Replace","target":VPN,"data":"false"}),
    )
    .await;
    let (held, release) = s.proxy.hold(&id, 2);
    {
        let run = sim.run_once();
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => panic!("the session ended before message 2"),
            h = held => h.unwrap(),
        }
        // Dropping the round aborts the device's session: a crash.
    }
    drop(sim);
    let _ = release.send(Release::Drop);
    assert_eq!(job(&s.db, j2).await.state, "sent");

    let sim = Sim::start(cfg).await.unwrap();
    let ok = sim.run_once().await;
    let st = sim.stats();
    if !ok {
        for e in s.proxy.log_of(&id) {
            eprintln!(
                "{} {} >>> {}\n<<< {}",
                e.session_id,
                e.status,
                String::from_utf8_lossy(&e.request),
                String::from_utf8_lossy(&e.response)
            );
        }
    }
    assert!(ok, "the restarted device's next session: {st}");
    assert!(sim.run_once().await);
    let j = job(&s.db, j2).await;
    assert_eq!(j.state, "failed", "not sent twice: {j:?}");
    let tree = sim.tree(&id).await.unwrap();
    // The device lost the unsaved session: the Replace never ran for it.
    assert_eq!(verno(&tree, VPN), v0 + 1);
    assert_eq!(job_rows(&s.db, &id, VPN).await.len(), 2);
    // The restarted device reused its SessionID: the server ended the old
    // session instead of feeding it a second package 1.
    let hist = devices::sessions(&s.db, &id, 10).await.unwrap();
    assert_eq!(hist.iter().filter(|h| h.outcome == "aborted").count(), 1);
    sim.shutdown().await;
    s.running.stop().await;
}

on_both_databases! {
    enrol_100 => hundred_devices_enrol;
    auth_fleets => md5_hmac_wbxml_fleets;
    basic => basic_refused_without_tls;
    wrong_secret => wrong_secret_is_challenged_then_ended;
    acl_atomic => refused_acl_and_atomic_rollback;
    push => push_starts_a_session_within_a_second;
    server_restart => server_restart_and_second_instance;
    sim_restart => simulator_restart;
}

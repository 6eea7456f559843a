//! Crash safety of the delegation engine (PROTOCOL B.3 "Delivery": each
//! transition is committed with its outgoing documents): two `handover
//! serve` processes on loopback with SQLite data directories, the device
//! simulator in this process. At each step boundary one server is killed
//! with SIGKILL and started again on the same data; the delegation must end
//! Completed on both sides, or aborted with the device reverted — never in
//! between.

mod common;

use common::create_user;
use common::world::{account_servers, peer_entry, snapshot, DMS1, DMS2};
use handover::dm::auth::AuthType;
use handover::dm::syncml::Encoding;
use handover::dm::ServerId;
use handover::peer::identity::Identity;
use handover::serve::Bound;
use handover::sim::{Sim, SimConfig};
use handover::store::{api_tokens, devices, jobs, peers, users, Db};
use handover_app::api::Role;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A loopback address for a server process started later: a port below
/// the ephemeral range (32768 and up), so no outgoing connection of this
/// test takes it meanwhile, free now and never handed out before in this
/// process.
fn free_addr() -> std::net::SocketAddr {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    let seed = std::process::id() as u64 * 7919 + given.len() as u64 * 104_729;
    for i in 0..12_000u64 {
        let port = 20_000 + ((seed + i * 613) % 12_000) as u16;
        if given.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            given.push(port);
            return l.local_addr().unwrap();
        }
    }
    panic!("no free port below the ephemeral range");
}

/// One `handover serve` process and what the test needs to reach it.
struct Server {
    id: &'static str,
    dir: PathBuf,
    bound: Bound,
    child: Option<Child>,
    tokens: std::collections::HashMap<&'static str, String>,
    http: reqwest::Client,
}

impl Server {
    /// Users and API tokens written into the database before the first start.
    async fn prepare(id: &'static str, dir: PathBuf) -> Server {
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect(&Db::sqlite_url(&dir)).await.unwrap();
        let mut tokens = std::collections::HashMap::new();
        for (name, roles) in [("ana", vec![Role::Operator]), ("ben", vec![Role::Approver])] {
            create_user(&db, name, &roles).await;
            let u = users::by_name(&db, name).await.unwrap().unwrap();
            tokens.insert(name, api_tokens::create(&db, u.id, "test").await.unwrap());
        }
        db.pool().close().await;
        Server {
            id,
            dir,
            bound: Bound {
                portal: free_addr(),
                dm: free_addr(),
                peer: free_addr(),
            },
            child: None,
            tokens,
            http: reqwest::Client::new(),
        }
    }

    fn identity(&self) -> Identity {
        Identity::load_or_create(&self.dir, self.id).unwrap().0
    }

    async fn db(&self) -> Db {
        Db::connect(&Db::sqlite_url(&self.dir)).await.unwrap()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_handover"))
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .args(["--server-id", self.id])
            .args(["--portal-addr", &self.bound.portal.to_string()])
            .args(["--dm-addr", &self.bound.dm.to_string()])
            .args(["--peer-addr", &self.bound.peer.to_string()])
            .arg("--site-root")
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if self
                .http
                .get(format!("http://{}/api/v1/delegations", self.bound.portal))
                .bearer_auth(&self.tokens["ben"])
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "{} did not start within 30 s; the end of its log:\n{}",
            self.id,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    async fn api(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.bound.portal);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .bearer_auth(&self.tokens[who])
        .timeout(Duration::from_secs(10));
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        match req.send().await {
            Ok(res) => {
                let s = res.status().as_u16();
                (s, res.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// State and outcome of a delegation, or `None` while unreachable.
    async fn state(&self, id: i64) -> Option<(String, String)> {
        let (s, v) = self
            .api("ben", "GET", &format!("/api/v1/delegations/{id}"), None)
            .await;
        (s == 200).then(|| {
            let d = &v["delegation"];
            (
                d["state"].as_str().unwrap_or_default().to_owned(),
                d["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
    }

    async fn events(&self, id: i64) -> Vec<String> {
        let (_, v) = self
            .api("ben", "GET", &format!("/api/v1/delegations/{id}"), None)
            .await;
        v["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["event"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn find(&self, delegation_id: &str) -> Option<i64> {
        let (_, v) = self.api("ben", "GET", "/api/v1/delegations", None).await;
        v["delegations"]
            .as_array()?
            .iter()
            .find_map(|d| (d["delegation_id"] == delegation_id).then(|| d["id"].as_i64().unwrap()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// DMS-1 states in the order a delegation passes them; a crash is placed
/// when DMS-1 is seen in the state (or, when a step was too quick to see,
/// just after it).
const STEPS: &[&str] = &[
    "AwaitingAuthChallenge",
    "AwaitingAccept",
    "PreparingClient",
    "AwaitingBootstrapped",
    "UpdatingAcls",
    "Completing",
    "Completed",
];

fn step_index(state: &str) -> usize {
    STEPS
        .iter()
        .position(|s| *s == state)
        .unwrap_or(STEPS.len())
}

#[test]
fn sigkill_at_every_step() {
    common::bounded(
        concat!(module_path!(), "::sigkill_at_every_step"),
        4,
        sigkill_at_every_step_body(),
    );
}

async fn sigkill_at_every_step_body() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dms1 = Server::prepare(DMS1, tmp.path().join("dms1")).await;
    let mut dms2 = Server::prepare(DMS2, tmp.path().join("dms2")).await;
    let cases: Vec<(usize, bool)> = (0..STEPS.len())
        .flat_map(|i| [(i, true), (i, false)])
        .collect();
    // The simulator, polling as devices without a working push would: a
    // notification lost with a killed server is made up by the next session.
    let mut cfg = SimConfig::new(
        cases.len(),
        format!("http://{}/dm", dms1.bound.dm),
        tmp.path().join("sim"),
    );
    cfg.auth = AuthType::Md5;
    cfg.encoding = Encoding::Xml;
    cfg.server_id = ServerId::parse(DMS1).unwrap();
    cfg.push_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.poll = Some(Duration::from_secs(2));
    cfg.request_timeout = Duration::from_secs(10);
    let sim = Arc::new(Sim::start(cfg).await.unwrap());
    {
        let db1 = dms1.db().await;
        let db2 = dms2.db().await;
        peers::add(
            &db1,
            &peer_entry(DMS2, &dms2.bound, dms2.identity().fingerprint().clone()),
        )
        .await
        .unwrap();
        peers::add(
            &db2,
            &peer_entry(DMS1, &dms1.bound, dms1.identity().fingerprint().clone()),
        )
        .await
        .unwrap();
        let csv = std::fs::read_to_string(tmp.path().join("sim/devices.csv")).unwrap();
        let lines = devices::parse_csv(&csv).unwrap();
        let vault = handover::device::vault::Vault::open(None, &dms1.dir).unwrap();
        devices::import(&db1, &vault, &lines).await.unwrap();
        for l in &lines {
            let c = jobs::JobCommand::Get {
                target: ".".into(),
                walk: true,
            };
            jobs::enqueue(&db1, db1.pool(), &l.devid, &c, "ana", false)
                .await
                .unwrap();
        }
        db1.pool().close().await;
        db2.pool().close().await;
    }
    dms1.spawn().await;
    dms2.spawn().await;
    sim.run_once().await;
    assert!(sim.run_once().await, "{}", sim.stats());
    let devids = sim.dev_ids();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let poller = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.run(async {
                let _ = stop_rx.await;
            })
            .await
        })
    };

    let mut report = Vec::new();
    for (n, (target, kill_dms1)) in cases.into_iter().enumerate() {
        let devid = &devids[n];
        let before = snapshot(&sim.tree(devid).await.unwrap());
        let (s, v) = dms1
            .api(
                "ana",
                "POST",
                "/api/v1/delegations",
                Some(json!({
                    "devices": [devid], "peer": DMS2, "type": "partial",
                    "scope": [{"uri": "./Vendor/Corp/Apps", "rights": ["Get", "Replace"]}],
                    "term": "permanent", "reason": "crash test",
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id1 = v["delegations"][0].as_i64().unwrap();
        let (s, v) = dms1
            .api(
                "ben",
                "POST",
                &format!("/api/v1/delegations/{id1}/approve"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (_, d) = dms1
            .api("ben", "GET", &format!("/api/v1/delegations/{id1}"), None)
            .await;
        let did = d["delegation"]["delegation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // DMS-2's staff approves once the request shows there.
        let mut id2 = None;
        let mut seen = String::new();
        let mut killed = false;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if id2.is_none() {
                if let Some(i) = dms2.find(&did).await {
                    if dms2
                        .state(i)
                        .await
                        .is_some_and(|(s, _)| s == "AwaitingApproval")
                    {
                        let (s, v) = dms2
                            .api(
                                "ben",
                                "POST",
                                &format!("/api/v1/delegations/{i}/approve"),
                                None,
                            )
                            .await;
                        assert_eq!(s, 200, "{v}");
                        id2 = Some(i);
                    }
                }
            }
            if let Some((state, _)) = dms1.state(id1).await {
                if step_index(&state) >= target {
                    seen = state;
                    let victim = if kill_dms1 { &mut dms1 } else { &mut dms2 };
                    victim.kill();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    victim.spawn().await;
                    killed = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(killed, "DMS-1 never reached {}", STEPS[target]);
        // The end, on both sides and on the device.
        let mut end = None;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            if id2.is_none() {
                if let Some(i) = dms2.find(&did).await {
                    if dms2
                        .state(i)
                        .await
                        .is_some_and(|(s, _)| s == "AwaitingApproval")
                    {
                        dms2.api(
                            "ben",
                            "POST",
                            &format!("/api/v1/delegations/{i}/approve"),
                            None,
                        )
                        .await;
                        id2 = Some(i);
                    }
                }
            }
            let a = dms1.state(id1).await;
            let b = match id2 {
                Some(i) => dms2.state(i).await,
                None => None,
            };
            if let (Some((s1, o1)), Some((s2, o2))) = (&a, &b) {
                let tree = sim.tree(devid).await.unwrap();
                if s1 == "Completed"
                    && s2 == "Completed"
                    && account_servers(&tree) == vec![DMS1.to_owned(), DMS2.to_owned()]
                {
                    end = Some("Completed");
                    break;
                }
                if !o1.is_empty()
                    && !o2.is_empty()
                    && dms1
                        .events(id1)
                        .await
                        .iter()
                        .any(|e| e == "delegation.reverted")
                    && snapshot(&tree) == before
                {
                    end = Some("Reverted");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let victim = if kill_dms1 { "DMS-1" } else { "DMS-2" };
        let Some(end) = end else {
            panic!(
                "killing {victim} at {seen} (aiming at {}): DMS-1 {:?}, DMS-2 {:?}",
                STEPS[target],
                dms1.state(id1).await,
                match id2 {
                    Some(i) => dms2.state(i).await,
                    None => None,
                }
            );
        };
        let why = if end == "Reverted" {
            let (_, d) = dms1
                .api("ben", "GET", &format!("/api/v1/delegations/{id1}"), None)
                .await;
            d["steps"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["event"] == "delegation.aborted"))
                .map(|s| format!(" ({})", s["details"]))
                .unwrap_or_default()
        } else {
            String::new()
        };
        report.push(format!("{victim} killed at {seen}: {end}{why}"));
    }
    for r in &report {
        eprintln!("{r}");
    }
    let _ = stop_tx.send(());
    let _ = poller.await;
}

//! Two Handover authorities pinned to each other over real mutual TLS on
//! loopback, the device simulator managed by the first, and the JSON API
//! as the people's hands: the world of the delegation tests (PROTOCOL
//! Part B).

use super::{create_user, fresh, serve_config, start, Kind, TestDb};
use handover::config::ServeConfig;
use handover::dm::auth::AuthType;
use handover::dm::syncml::Encoding;
use handover::dm::{ServerId, Tree, TreeUri};
use handover::peer::identity::Identity;
use handover::peer::{DmUrl, Peer, PeerUrl};
use handover::serve::{Bound, Running};
use handover::sim::{Sim, SimConfig};
use handover::store::{api_tokens, devices, jobs, peers, users, Db};
use handover_app::api::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const DMS1: &str = "carrier.test";
pub const DMS2: &str = "corp.test";

/// One authority: a running server, its database and API tokens by user.
pub struct Authority {
    pub t: TestDb,
    pub cfg: ServeConfig,
    pub bound: Bound,
    pub running: Option<Running>,
    pub db: Db,
    pub http: reqwest::Client,
    pub tokens: std::collections::HashMap<&'static str, String>,
}

impl Authority {
    pub async fn start(
        t: TestDb,
        server_id: &str,
        tune: impl Fn(&mut handover::engine::Settings),
    ) -> Authority {
        let mut cfg = serve_config(&t);
        cfg.server_id = server_id.into();
        cfg.delegation.poll = Duration::from_millis(200);
        cfg.delegation.retry_first = Duration::from_millis(100);
        cfg.delegation.retry_cap = Duration::from_secs(1);
        cfg.delegation.device_retry_first = Duration::from_millis(300);
        tune(&mut cfg.delegation);
        let (bound, running) = start(cfg.clone()).await;
        // A restart binds the same ports.
        cfg.portal_addr = bound.portal;
        cfg.dm_addr = bound.dm;
        cfg.peer_addr = bound.peer;
        let db = Db::connect(&t.url).await.unwrap();
        let mut tokens = std::collections::HashMap::new();
        for (name, roles) in [
            ("ana", vec![Role::Operator]),
            ("ben", vec![Role::Approver]),
            ("vic", vec![Role::Viewer]),
        ] {
            create_user(&db, name, &roles).await;
            let u = users::by_name(&db, name).await.unwrap().unwrap();
            tokens.insert(name, api_tokens::create(&db, u.id, "test").await.unwrap());
        }
        Authority {
            t,
            cfg,
            bound,
            running: Some(running),
            db,
            http: reqwest::Client::new(),
            tokens,
        }
    }

    /// Stops every listener and worker, as a shutdown does.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Starts again on the same data directory, database and ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (bound, running) = start(self.cfg.clone()).await;
        self.bound = bound;
        self.running = Some(running);
    }

    pub fn identity(&self) -> Identity {
        Identity::load_or_create(self.t.dir.path(), &self.cfg.server_id)
            .unwrap()
            .0
    }

    pub fn server_id(&self) -> ServerId {
        ServerId::parse(self.cfg.server_id.clone()).unwrap()
    }

    pub async fn api(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://{}{path}", self.bound.portal);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .bearer_auth(&self.tokens[who]);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let v = res.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn delegation(&self, id: i64) -> Value {
        let (s, v) = self
            .api("vic", "GET", &format!("/api/v1/delegations/{id}"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn list(&self, query: &str) -> Vec<Value> {
        let (s, v) = self
            .api("vic", "GET", &format!("/api/v1/delegations?{query}"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v["delegations"].as_array().unwrap().clone()
    }

    /// A staff action (`approve`, `reject`, `abort`, `revoke`, …) by ben.
    pub async fn act(&self, id: i64, action: &str, reason: &str) -> (u16, Value) {
        self.api(
            "ben",
            "POST",
            &format!("/api/v1/delegations/{id}/{action}"),
            Some(json!({ "reason": reason })),
        )
        .await
    }

    /// The audit events of a delegation, in order.
    pub async fn events(&self, id: i64) -> Vec<String> {
        self.delegation(id).await["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// True once the audit log holds device work of this phase.
    pub async fn did_work(&self, id: i64, phase: &str) -> bool {
        self.delegation(id).await["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["event"] == "delegation.device_work" && s["details"]["work"] == phase)
    }

    pub async fn reverted(&self, id: i64) -> bool {
        self.events(id)
            .await
            .iter()
            .any(|e| e == "delegation.reverted")
    }
}

/// The peer entry for `other` as an administrator of `me` adds it (B.1).
pub fn peer_entry(
    other_id: &str,
    other: &Bound,
    fingerprint: handover::peer::pin::Fingerprint,
) -> Peer {
    Peer {
        server_id: ServerId::parse(other_id).unwrap(),
        url: PeerUrl::parse(&format!("https://{}", other.peer)).unwrap(),
        dm_url: DmUrl::parse(&format!("http://{}/dm", other.dm)).unwrap(),
        fingerprint,
        auto_accept: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// Pins each authority in the other (B.1), as their administrators do.
pub async fn pin(a: &Authority, b: &Authority) {
    let pa = peer_entry(
        &b.cfg.server_id,
        &b.bound,
        b.identity().fingerprint().clone(),
    );
    peers::add(&a.db, &pa).await.unwrap();
    let pb = peer_entry(
        &a.cfg.server_id,
        &a.bound,
        a.identity().fingerprint().clone(),
    );
    peers::add(&b.db, &pb).await.unwrap();
}

pub struct World {
    pub dms1: Authority,
    pub dms2: Authority,
    pub sim: Sim,
    pub devids: Vec<String>,
}

/// How a world is set up.
pub struct Opts {
    pub devices: usize,
    /// Devices listen for push notifications; without, they open a session
    /// only when the test runs them ([`World::contact`]).
    pub push: bool,
    pub tune: fn(&mut handover::engine::Settings),
    /// The simulator saves each device's state after every session (so a
    /// restarted simulator is the same fleet); off, only when it stops.
    pub sim_saves: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            devices: 2,
            push: true,
            tune: |_| {},
            sim_saves: true,
        }
    }
}

/// Two servers and simulated devices managed by DMS-1, their trees read
/// with ACLs.
pub async fn world(kind: Kind, opts: Opts) -> Option<World> {
    let t1 = fresh(kind).await?;
    let t2 = fresh(kind).await?;
    let dms1 = Authority::start(t1, DMS1, opts.tune).await;
    let dms2 = Authority::start(t2, DMS2, opts.tune).await;
    pin(&dms1, &dms2).await;
    let sim_dir = dms1.t.dir.path().join("sim");
    let mut cfg = SimConfig::new(
        opts.devices,
        format!("http://{}/dm", dms1.bound.dm),
        &sim_dir,
    );
    cfg.auth = AuthType::Md5;
    cfg.encoding = Encoding::Xml;
    cfg.server_id = ServerId::parse(DMS1).unwrap();
    cfg.push_addr = opts.push.then(|| "127.0.0.1:0".parse().unwrap());
    cfg.request_timeout = Duration::from_secs(20);
    cfg.save_each_session = opts.sim_saves;
    let sim = Sim::start(cfg).await.unwrap();
    let csv = std::fs::read_to_string(sim_dir.join("devices.csv")).unwrap();
    let lines = devices::parse_csv(&csv).unwrap();
    let vault = handover::device::vault::Vault::open(None, dms1.t.dir.path()).unwrap();
    devices::import(&dms1.db, &vault, &lines).await.unwrap();
    let devids: Vec<String> = lines.iter().map(|l| l.devid.clone()).collect();
    // Enrolment, then a full tree read with ACLs.
    assert!(sim.run_once().await, "{}", sim.stats());
    for d in &devids {
        let c = jobs::JobCommand::Get {
            target: ".".into(),
            walk: true,
        };
        jobs::enqueue(&dms1.db, dms1.db.pool(), d, &c, "ana", false)
            .await
            .unwrap();
    }
    assert!(sim.run_once().await, "{}", sim.stats());
    Some(World {
        dms1,
        dms2,
        sim,
        devids,
    })
}

impl World {
    /// Every device opens one session with each server it has an account
    /// for (Alert 1201), as devices without push do now and then.
    pub async fn contact(&self) {
        self.sim.run_once().await;
    }

    /// Runs device sessions until `done` holds (bounded).
    pub async fn contact_until(&self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..60 {
            if done().await {
                return;
            }
            self.contact().await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!("device sessions did not bring about {what}");
    }

    pub async fn stop(mut self) {
        drop(self.sim);
        self.dms1.stop().await;
        self.dms2.stop().await;
    }
}

pub async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn state_of(a: &Authority, id: i64) -> String {
    a.delegation(id).await["delegation"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn outcome_of(a: &Authority, id: i64) -> String {
    a.delegation(id).await["delegation"]["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The peer's row for the same DelegationID.
pub async fn peer_row(a: &Authority, delegation_id: &str) -> Option<i64> {
    a.list("")
        .await
        .iter()
        .find_map(|d| (d["delegation_id"] == delegation_id).then(|| d["id"].as_i64().unwrap()))
}

pub fn acl(tree: &Tree, u: &str) -> String {
    tree.node(&TreeUri::parse(u).unwrap())
        .map(|n| n.acl.to_string())
        .unwrap_or_else(|| panic!("{u} missing"))
}

pub async fn wait_state(a: &Authority, id: i64, want: &str, limit: Duration) {
    let mut last = String::new();
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        last = state_of(a, id).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = a.delegation(id).await;
    panic!("delegation {id} is {last}, not {want}: {d:#}");
}

/// Requests on the initiating side (`from`) and approves there by a second
/// person; returns the initiator's ids.
pub async fn request(from: &Authority, body: Value) -> Vec<i64> {
    let (s, v) = from
        .api("ana", "POST", "/api/v1/delegations", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let ids: Vec<i64> = v["delegations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    // Four eyes: the requester cannot approve.
    let (s, v) = from
        .api(
            "ana",
            "POST",
            &format!("/api/v1/delegations/{}/approve", ids[0]),
            None,
        )
        .await;
    assert_eq!(s, 403, "{v}");
    if ids.len() == 1 {
        let (s, v) = from.act(ids[0], "approve", "").await;
        assert_eq!(s, 200, "{v}");
        return ids;
    }
    // A batch: one call approves it, never by its requester.
    let batch = v_batch(from, ids[0]).await;
    let path = format!("/api/v1/batches/{batch}/approve");
    let (s, v) = from.api("ana", "POST", &path, None).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = from.api("ben", "POST", &path, None).await;
    assert_eq!(s, 200, "{v}");
    let approved: Vec<i64> = v["approved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(approved, ids, "{v}");
    assert_eq!(v["refused"], json!([]));
    let (s, v) = from.api("ben", "POST", &path, None).await;
    assert_eq!(s, 409, "nothing left to approve: {v}");
    ids
}

/// The batch a delegation belongs to.
async fn v_batch(a: &Authority, id: i64) -> i64 {
    a.delegation(id).await["delegation"]["batch_id"]
        .as_i64()
        .expect("a batch")
}

/// The other side's row once its staff sees the request (B.4).
pub async fn incoming(initiator: &Authority, id: i64, other: &Authority) -> i64 {
    let did = initiator.delegation(id).await["delegation"]["delegation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut found = None;
    wait_for(
        "the request at the other side",
        Duration::from_secs(20),
        async || {
            if let Some(o) = peer_row(other, &did).await {
                if state_of(other, o).await == "AwaitingApproval" {
                    found = Some(o);
                    return true;
                }
            }
            false
        },
    )
    .await;
    found.unwrap()
}

/// Requests on `from`, approves by a second person there, and approves the
/// incoming request on `to`; returns the ids (initiator, other side).
pub async fn request_and_approve(from: &Authority, to: &Authority, body: Value) -> Vec<(i64, i64)> {
    let ids = request(from, body).await;
    let mut pairs = Vec::new();
    for id in ids {
        let other = incoming(from, id, to).await;
        let (s, v) = to.act(other, "approve", "").await;
        assert_eq!(s, 200, "{v}");
        pairs.push((id, other));
    }
    pairs
}

/// A request body for one device.
pub fn body(devid: &str, peer: &str, full: bool, temporary: bool, delegated: bool) -> Value {
    let mut b = json!({
        "devices": [devid],
        "peer": peer,
        "type": if full { "full" } else { "partial" },
        "term": if temporary { "temporary" } else { "permanent" },
        "reason": "Ticket 4711",
    });
    if !full {
        b["scope"] = json!([{"uri": "./Vendor/Corp/Apps", "rights": ["Get", "Replace"]}]);
    }
    if temporary {
        let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        b["expires"] = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .into();
    }
    if delegated {
        b["as"] = "delegated".into();
    }
    b
}

/// ACLs of every node, DMAcc aside: DMS-1's own nonces move on with every
/// session, and DMS-2's account comes and goes.
pub fn acls_outside_dmacc(tree: &Tree) -> Vec<(String, String)> {
    tree.list(&TreeUri::root())
        .into_iter()
        .filter(|n| !n.uri.as_str().starts_with("./DMAcc/"))
        .map(|n| (n.uri.as_str().to_owned(), n.acl.to_string()))
        .collect()
}

/// The DMAcc accounts by ServerID.
pub fn account_servers(tree: &Tree) -> Vec<String> {
    let mut v: Vec<String> = tree
        .dm_accounts()
        .into_iter()
        .filter_map(|a| a.server_id.map(|s| s.as_str().to_owned()))
        .collect();
    v.sort();
    v
}

/// Every node with its ACL and readable value (secrets and nonces are
/// never listed), in URI order.
pub fn snapshot(tree: &Tree) -> Vec<(String, String, Option<Vec<u8>>)> {
    tree.list(&TreeUri::root())
        .into_iter()
        .map(|n| (n.uri.as_str().to_owned(), n.acl.to_string(), n.value))
        .collect()
}

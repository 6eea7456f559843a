//! Client Authority Delegation end to end (PROTOCOL Part B): two Handover
//! servers pinned to each other over real mutual TLS on loopback, the
//! device simulator managed by the first, the JSON API as the people's
//! hands. Each test runs on SQLite and on PostgreSQL.

mod common;

use common::{create_user, fresh, serve_config, start, Kind, TestDb};
use handover::dm::auth::AuthType;
use handover::dm::syncml::Encoding;
use handover::dm::{AclCmd, ServerId, Tree, TreeUri};
use handover::peer::identity::Identity;
use handover::peer::{DmUrl, Peer, PeerUrl};
use handover::serve::{Bound, Running};
use handover::sim::{Sim, SimConfig};
use handover::store::{api_tokens, devices, jobs, peers, users, Db};
use handover_app::api::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DMS1: &str = "carrier.test";
const DMS2: &str = "corp.test";

/// One authority: a running server, its database and API tokens by user.
struct Authority {
    t: TestDb,
    bound: Bound,
    running: Running,
    db: Db,
    http: reqwest::Client,
    tokens: std::collections::HashMap<&'static str, String>,
}

impl Authority {
    async fn start(t: TestDb, server_id: &str) -> Authority {
        let mut cfg = serve_config(&t);
        cfg.server_id = server_id.into();
        cfg.delegation.poll = Duration::from_millis(200);
        cfg.delegation.retry_first = Duration::from_millis(100);
        let (bound, running) = start(cfg).await;
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
            bound,
            running,
            db,
            http: reqwest::Client::new(),
            tokens,
        }
    }

    fn identity(&self, server_id: &str) -> Identity {
        Identity::load_or_create(self.t.dir.path(), server_id)
            .unwrap()
            .0
    }

    async fn api(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
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

    async fn delegation(&self, id: i64) -> Value {
        let (s, v) = self
            .api("vic", "GET", &format!("/api/v1/delegations/{id}"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn list(&self, query: &str) -> Vec<Value> {
        let (s, v) = self
            .api("vic", "GET", &format!("/api/v1/delegations?{query}"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v["delegations"].as_array().unwrap().clone()
    }
}

/// Pins each authority in the other (B.1), as their administrators do.
async fn pin(a: &Authority, a_id: &str, b: &Authority, b_id: &str) {
    let add = |me: &Authority, other: &Authority, other_id: &str| {
        let fp = other.identity(other_id).fingerprint().clone();
        let peer = Peer {
            server_id: ServerId::parse(other_id).unwrap(),
            url: PeerUrl::parse(&format!("https://{}", other.bound.peer)).unwrap(),
            dm_url: DmUrl::parse(&format!("http://{}/dm", other.bound.dm)).unwrap(),
            fingerprint: fp,
            auto_accept: None,
            created_at: 0,
            updated_at: 0,
        };
        let db = me.db.clone();
        async move { peers::add(&db, &peer).await.unwrap() }
    };
    add(a, b, b_id).await;
    add(b, a, a_id).await;
}

struct World {
    dms1: Authority,
    dms2: Authority,
    sim: Sim,
    devids: Vec<String>,
}

/// Two servers and `n` simulated devices managed by DMS-1, their trees
/// read with ACLs.
async fn world(kind: Kind, n: usize) -> Option<World> {
    let t1 = fresh(kind).await?;
    let t2 = fresh(kind).await?;
    let dms1 = Authority::start(t1, DMS1).await;
    let dms2 = Authority::start(t2, DMS2).await;
    pin(&dms1, DMS1, &dms2, DMS2).await;
    let sim_dir = dms1.t.dir.path().join("sim");
    let mut cfg = SimConfig::new(n, format!("http://{}/dm", dms1.bound.dm), &sim_dir);
    cfg.auth = AuthType::Md5;
    cfg.encoding = Encoding::Xml;
    cfg.server_id = ServerId::parse(DMS1).unwrap();
    cfg.push_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.request_timeout = Duration::from_secs(20);
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

async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn state_of(a: &Authority, id: i64) -> String {
    a.delegation(id).await["delegation"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The peer's row for the same DelegationID.
async fn peer_row(a: &Authority, delegation_id: &str) -> Option<i64> {
    a.list("")
        .await
        .iter()
        .find_map(|d| (d["delegation_id"] == delegation_id).then(|| d["id"].as_i64().unwrap()))
}

fn acl(tree: &Tree, u: &str) -> String {
    tree.node(&TreeUri::parse(u).unwrap())
        .map(|n| n.acl.to_string())
        .unwrap_or_else(|| panic!("{u} missing"))
}

/// Requests on DMS-1 for `devids`, approves by a second person, and
/// approves the incoming request on DMS-2; returns the ids on both sides.
async fn request_and_approve(w: &World, body: Value) -> Vec<(i64, i64)> {
    let (s, v) = w
        .dms1
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
    let (s, v) = w
        .dms1
        .api(
            "ana",
            "POST",
            &format!("/api/v1/delegations/{}/approve", ids[0]),
            None,
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let mut pairs = Vec::new();
    for id in ids {
        let (s, v) = w
            .dms1
            .api(
                "ben",
                "POST",
                &format!("/api/v1/delegations/{id}/approve"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let did = w.dms1.delegation(id).await["delegation"]["delegation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut other = None;
        wait_for(
            "the request at DMS-2",
            Duration::from_secs(20),
            async || {
                if let Some(o) = peer_row(&w.dms2, &did).await {
                    if state_of(&w.dms2, o).await == "AwaitingApproval" {
                        other = Some(o);
                        return true;
                    }
                }
                false
            },
        )
        .await;
        let other = other.unwrap();
        let (s, v) = w
            .dms2
            .api(
                "ben",
                "POST",
                &format!("/api/v1/delegations/{other}/approve"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        pairs.push((id, other));
    }
    pairs
}

async fn wait_state(a: &Authority, id: i64, want: &str, limit: Duration) {
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

// PROTOCOL B.3–B.6: a partial, temporary delegation initiated by DMS-1
// runs to Completed on both sides; the device carries DMS-2's account with
// the B.5 ACL and the granted rights on the scope; DMS-2 rotated the
// one-time secrets; revoking it restores the device byte for byte.
async fn partial_temporary_from_dms1(kind: Kind) {
    let Some(w) = world(kind, 2).await else {
        return;
    };
    let devid = w.devids[0].clone();
    let before = w.sim.tree(&devid).await.unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let pairs = request_and_approve(
        &w,
        json!({
            "devices": [devid],
            "peer": DMS2,
            "type": "partial",
            "scope": [{"uri": "./Vendor/Corp/Apps", "rights": ["Get", "Replace"]}],
            "term": "temporary",
            "expires": expires.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "reason": "Ticket 4711",
        }),
    )
    .await;
    let (id1, id2) = pairs[0];
    wait_state(&w.dms1, id1, "Completed", Duration::from_secs(60)).await;
    wait_state(&w.dms2, id2, "Completed", Duration::from_secs(10)).await;

    let tree = w.sim.tree(&devid).await.unwrap();
    let dms2 = ServerId::parse(DMS2).unwrap();
    let acc = tree
        .dm_accounts()
        .into_iter()
        .find(|a| a.server_id.as_ref() == Some(&dms2))
        .expect("DMS-2's account on the device");
    assert_eq!(
        acl(&tree, acc.node.as_str()),
        format!("Get={DMS2}&Replace={DMS2}&Delete={DMS1}+{DMS2}")
    );
    let apps = "./Vendor/Corp/Apps";
    assert!(tree.allows(&TreeUri::parse(apps).unwrap(), AclCmd::Replace, &dms2));
    assert!(!tree.allows(
        &TreeUri::parse("./Vendor/Carrier").unwrap(),
        AclCmd::Replace,
        &dms2
    ));
    // B.5 step 3: the one-time secrets were rotated by DMS-2.
    let clcred = acc
        .app_auth
        .iter()
        .find(|a| a.level.as_deref() == Some("CLCRED"))
        .unwrap();
    let d2 = devices::get(&w.dms2.db, &devid).await.unwrap().unwrap();
    let vault2 = handover::device::vault::Vault::open(None, w.dms2.t.dir.path()).unwrap();
    let acct = d2.account(&vault2).unwrap();
    assert_eq!(
        clcred.secret.as_ref().unwrap().expose(),
        acct.client.secret.expose()
    );
    // Both signatures are kept (B.4).
    let d = w.dms1.delegation(id1).await;
    assert_eq!(d["signatures"].as_array().unwrap().len(), 2, "{d:#}");
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{d:#}");
    }
    // DMS-2 manages its scope now: a job from DMS-2 is obeyed.
    let c = jobs::JobCommand::Get {
        target: format!("{apps}/Mail/Enabled"),
        walk: false,
    };
    let job = jobs::enqueue(&w.dms2.db, w.dms2.db.pool(), &devid, &c, "ana", true)
        .await
        .unwrap();
    handover::device::notify::notify(
        &handover::device::Runtime::new(w.dms2.db.clone(), vault2, Default::default()),
        &devid,
        "test",
    )
    .await
    .unwrap();
    wait_for("DMS-2's own job", Duration::from_secs(20), async || {
        jobs::get(&w.dms2.db, job).await.unwrap().unwrap().state == "succeeded"
    })
    .await;

    // B.7: DMS-1 revokes; the device is as before, byte for byte.
    let (s, v) = w
        .dms1
        .api(
            "ben",
            "POST",
            &format!("/api/v1/delegations/{id1}/revoke"),
            Some(json!({"reason": "done"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    wait_state(&w.dms2, id2, "Revoked", Duration::from_secs(20)).await;
    wait_for(
        "the revert on the device",
        Duration::from_secs(60),
        async || {
            w.dms1.delegation(id1).await["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["event"] == "delegation.reverted")
        },
    )
    .await;
    let after = w.sim.tree(&devid).await.unwrap();
    for n in before.list(&TreeUri::root()) {
        if n.uri.as_str().starts_with("./DMAcc/") {
            continue; // DMS-1's own nonces move on with every session
        }
        assert_eq!(acl(&after, n.uri.as_str()), n.acl.to_string(), "{}", n.uri);
    }
    assert!(after
        .dm_accounts()
        .iter()
        .all(|a| a.server_id.as_ref() != Some(&dms2)));
    drop(w.sim);
    w.dms1.running.stop().await;
    w.dms2.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_temporary_from_dms1_sqlite() {
    partial_temporary_from_dms1(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_temporary_from_dms1_postgres() {
    partial_temporary_from_dms1(Kind::Postgres).await;
}

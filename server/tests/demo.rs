//! `handover demo` in-process on loopback with a small fleet: both
//! authorities answer, trust each other by the right pins, the operator has
//! the fleet with inventory and trees with ACLs, every role has a user, and
//! a second start on the same directory is the same demo.

use handover::demo::{demo_users, Demo, DemoConfig, Listen, Side, ENTERPRISE_ID, OPERATOR_ID};
use handover::peer::identity::Identity;
use handover::peer::PeerClient;
use handover::portal::password::{self, Password};
use handover::serve::Bound;
use handover::store::{inventory, peers, users, Db};
use sqlx::Row;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DEVICES: usize = 5;

/// Any free loopback ports, or the ones a previous start had.
fn config(dir: &Path, ports: Option<(Bound, Bound, u16)>) -> DemoConfig {
    let mut cfg = DemoConfig::on_ports(dir, DEVICES, 0, 0, 0, 0).unwrap();
    if let Some((op, ent, push)) = ports {
        cfg.operator = Listen {
            portal: op.portal,
            dm: op.dm,
            peer: op.peer,
        };
        cfg.enterprise = Listen {
            portal: ent.portal,
            dm: ent.dm,
            peer: ent.peer,
        };
        cfg.push = std::net::SocketAddr::from(([127, 0, 0, 1], push));
    }
    // Sessions only when the test asks for them.
    cfg.poll = None;
    cfg.site_root = dir.to_path_buf();
    cfg
}

async fn devids(db: &Db) -> Vec<String> {
    sqlx::query("SELECT devid FROM devices ORDER BY devid")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("devid").unwrap())
        .collect()
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn healthy(url: &str) {
    let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200, "{url}/healthz");
}

/// Each side has the other as its one peer, with the other's pin and URLs,
/// and a mutual-TLS connection to it works.
async fn peers_of_each_other(demo: &Demo) {
    for (me, other) in [
        (&demo.operator, &demo.enterprise),
        (&demo.enterprise, &demo.operator),
    ] {
        let list = peers::list(&me.db).await.unwrap();
        assert_eq!(list.len(), 1, "{}", me.server_id);
        let p = &list[0];
        assert_eq!(p.server_id.as_str(), other.server_id);
        assert_eq!(p.fingerprint, other.fingerprint);
        assert_eq!(p.url.as_str(), other.peer_url());
        assert_eq!(p.dm_url.as_str(), other.dm_url());
        let (identity, _) = Identity::load_or_create(&me.data_dir, &me.server_id).unwrap();
        assert_eq!(identity.fingerprint(), &me.fingerprint);
        let test = PeerClient::new(Arc::new(identity)).test_connection(p).await;
        assert!(
            test.is_ok(),
            "{} → {}: {}",
            me.server_id,
            other.server_id,
            test.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_and_restarts_as_the_same_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");

    // --- First start: everything is made.
    let demo = Demo::start(config(&dir, None)).await.unwrap();
    assert!(demo.first_start);
    assert_eq!(demo.operator.server_id, OPERATOR_ID);
    assert_eq!(demo.enterprise.server_id, ENTERPRISE_ID);
    assert_ne!(demo.operator.fingerprint, demo.enterprise.fingerprint);
    assert_eq!(demo.fleet_size, DEVICES);
    assert_eq!(demo.imported, DEVICES);
    healthy(&demo.operator.portal_url()).await;
    healthy(&demo.enterprise.portal_url()).await;
    peers_of_each_other(&demo).await;

    // Users for every role on both sides, each with its printed password.
    assert_eq!(demo.credentials.len(), 12);
    let summary = demo.summary(&dir);
    assert!(summary.contains(&demo.operator.portal_url()));
    assert!(summary.contains(&demo.enterprise.portal_url()));
    for side in [Side::Operator, Side::Enterprise] {
        let a = match side {
            Side::Operator => &demo.operator,
            Side::Enterprise => &demo.enterprise,
        };
        assert_eq!(users::count(&a.db).await.unwrap(), 6);
        for (name, roles) in demo_users(side) {
            let u = users::by_name(&a.db, &name).await.unwrap().unwrap();
            let (mut have, mut want) = (u.roles.clone(), roles.clone());
            have.sort();
            want.sort();
            assert_eq!(have, want, "{name}");
            let c = demo
                .credentials
                .iter()
                .find(|c| c.user == name && c.side == side)
                .unwrap();
            assert!(summary.contains(&c.password));
            assert!(
                password::verify(
                    Password::offered(c.password.clone()),
                    Some(u.password_hash.clone())
                )
                .await,
                "{name}"
            );
        }
    }
    // No setup link when the demo made the users.
    assert!(!summary.contains("setup?token"));

    // The fleet's first sessions: inventory and the whole tree with ACLs.
    let stats = demo
        .wait_for_first_sessions(Duration::from_secs(120))
        .await
        .expect("first sessions finish");
    assert_eq!(stats.sessions_failed, 0, "{stats}");
    assert!(stats.sessions_ok >= DEVICES as u64, "{stats}");
    let ids = devids(&demo.operator.db).await;
    assert_eq!(ids.len(), DEVICES);
    for id in &ids {
        let d = inventory::device(&demo.operator.db, id)
            .await
            .unwrap()
            .unwrap();
        assert!(d.first_seen.is_some(), "{id}");
        assert!(!d.man.is_empty() && !d.model.is_empty(), "{id}");
        assert!(d.devdetail.contains("FwV"), "{id}: {}", d.devdetail);
        assert_eq!(d.authority, OPERATOR_ID);
        let tree: Vec<serde_json::Value> = serde_json::from_str(&d.tree).unwrap();
        let node = |uri: &str| {
            tree.iter()
                .find(|n| n["uri"] == uri)
                .unwrap_or_else(|| panic!("{id}: no {uri} in the cached tree"))
        };
        // Subtrees worth delegating, which the operator may replace.
        for sub in ["./Vendor/Corp", "./Vendor/Carrier"] {
            let acl = node(sub)["acl"].as_str().unwrap();
            assert!(
                acl.contains(&format!("Replace={OPERATOR_ID}")),
                "{sub}: {acl}"
            );
        }
        node("./Vendor/Corp/Apps/VPN/Enabled");
        node("./Vendor/Carrier/Network/APN/Name");
        node("./DevInfo/DevId");
    }
    let open = count(
        &demo.operator.db,
        "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'sent')",
    )
    .await;
    assert_eq!(open, 0, "every tree read answered");
    let op_users: Vec<(i64, String)> = users::list(&demo.operator.db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id, u.password_hash.as_stored().to_owned()))
        .collect();
    let fingerprints = (
        demo.operator.fingerprint.clone(),
        demo.enterprise.fingerprint.clone(),
    );
    let ports = (
        demo.operator.bound,
        demo.enterprise.bound,
        demo.push_addr.unwrap().port(),
    );
    let first_ids = ids;

    // A second demo on the same ports says so and leaves nothing running.
    let clash = Demo::start(config(&tmp.path().join("other"), Some(ports)))
        .await
        .err()
        .expect("ports are taken");
    let msg = format!("{clash:#}");
    assert!(
        msg.contains("cannot start") && msg.contains("--base-port"),
        "{msg}"
    );

    demo.stop().await;

    // --- Second start on the same directory (and ports, which the fleet
    // has saved as the operator's DM URL): the same demo.
    let demo = Demo::start(config(&dir, Some(ports))).await.unwrap();
    assert!(!demo.first_start);
    assert!(demo.credentials.is_empty(), "no new passwords");
    assert_eq!(demo.imported, 0);
    assert_eq!(
        (
            demo.operator.fingerprint.clone(),
            demo.enterprise.fingerprint.clone()
        ),
        fingerprints
    );
    let summary = demo.summary(&dir);
    assert!(summary.contains("still apply"));
    assert!(summary.contains("--reset-passwords"));
    let again: Vec<(i64, String)> = users::list(&demo.operator.db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id, u.password_hash.as_stored().to_owned()))
        .collect();
    assert_eq!(again, op_users, "same users, same passwords");
    assert_eq!(users::count(&demo.enterprise.db).await.unwrap(), 6);
    assert_eq!(devids(&demo.operator.db).await, first_ids);
    assert_eq!(
        demo.wait_for_first_sessions(Duration::from_secs(5))
            .await
            .map(|s| s.sessions_ok),
        Some(0),
        "nothing to catch up on"
    );
    healthy(&demo.operator.portal_url()).await;
    healthy(&demo.enterprise.portal_url()).await;
    peers_of_each_other(&demo).await;
    // The saved fleet still talks to the operator: same accounts, nonces in step.
    assert!(demo.run_fleet_once().await, "{}", demo.fleet_stats());
    for db in [&demo.operator.db, &demo.enterprise.db] {
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM audit_log WHERE code = 1101").await,
            6,
            "users made once"
        );
    }
    demo.stop().await;

    // --- Asked for new passwords: the same users, each with a new one.
    let mut cfg = config(&dir, Some(ports));
    cfg.reset_passwords = true;
    let demo = Demo::start(cfg).await.unwrap();
    assert!(!demo.first_start);
    assert_eq!(demo.credentials.len(), 12);
    let c = &demo.credentials[0];
    let u = users::by_name(&demo.operator.db, &c.user)
        .await
        .unwrap()
        .unwrap();
    assert!(password::verify(Password::offered(c.password.clone()), Some(u.password_hash)).await);
    assert_eq!(users::count(&demo.operator.db).await.unwrap(), 6);
    demo.stop().await;
}

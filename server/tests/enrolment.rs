//! Auto-enrolment by factory key (issue: devices are "provisioned by import
//! … or auto-enrolled when an enrolment policy allows it (off by
//! default)"): simulated devices made with derived credentials against a
//! real server on loopback.

mod common;

use common::{audited, serve_config, start, TestDb};
use handover::audit::{self, Event};
use handover::device::enrol::{EnrolKey, Policy};
use handover::device::vault::Vault;
use handover::sim::{Sim, SimConfig};
use handover::store::{devices, Db};
use handover_dm::auth::AuthType;
use handover_dm::ServerId;
use std::time::Duration;

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const OTHER_KEY: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn policy(prefix: &str, key: &str, auth: AuthType) -> Policy {
    Policy {
        enabled: true,
        devid_prefixes: vec![prefix.to_owned()],
        key: Some(EnrolKey::from_hex(key).unwrap()),
        auth,
        ..Policy::default()
    }
}

/// A fleet of `n` devices made with the factory key `key` (loaded from
/// `dir` when it holds one).
fn sim_config(
    dm: std::net::SocketAddr,
    dir: &std::path::Path,
    n: usize,
    key: &str,
    auth: AuthType,
) -> SimConfig {
    let mut sc = SimConfig::new(n, format!("http://{dm}/dm"), dir);
    sc.server_id = ServerId::parse("corp.example").unwrap();
    sc.auth = auth;
    sc.enrol_key = Some(EnrolKey::from_hex(key).unwrap());
    sc.request_timeout = Duration::from_secs(10);
    sc
}

/// A server with `policy` (none: the default, off) and a fresh fleet of
/// `n` devices made with the factory key `key`.
async fn setup(
    t: &TestDb,
    dir: &std::path::Path,
    policy: Option<Policy>,
    n: usize,
    key: &str,
    auth: AuthType,
) -> (Db, Sim, handover::serve::Running) {
    let (db, sim, running, _) = setup_at(t, dir, policy, n, key, auth).await;
    (db, sim, running)
}

/// [`setup`], also giving the server's DM address.
async fn setup_at(
    t: &TestDb,
    dir: &std::path::Path,
    policy: Option<Policy>,
    n: usize,
    key: &str,
    auth: AuthType,
) -> (Db, Sim, handover::serve::Running, std::net::SocketAddr) {
    let mut cfg = serve_config(t);
    if let Some(p) = policy {
        cfg.dm.enrolment = p;
    }
    let (bound, running) = start(cfg).await;
    let sim = Sim::start(sim_config(bound.dm, dir, n, key, auth))
        .await
        .unwrap();
    let db = Db::connect(&t.url).await.unwrap();
    (db, sim, running, bound.dm)
}

async fn enrolled_audits(db: &Db) -> i64 {
    audit::count(
        db,
        &audit::Filter {
            code: Some(Event::DeviceEnrolled.code()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn assert_nothing_stored(db: &Db, sim: &Sim) {
    for id in sim.dev_ids() {
        assert!(devices::get(db, &id).await.unwrap().is_none(), "{id}");
    }
    assert_eq!(enrolled_audits(db).await, 0);
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("finished in time")
}

/// Policy off (the default): an unknown device with factory credentials is
/// challenged then ended, like any stranger; nothing is stored.
async fn off_by_default(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (db, sim, running) = setup(&t, dir.path(), None, 1, KEY, AuthType::Md5).await;
    assert!(!bounded(sim.run_once()).await);
    let s = sim.stats();
    assert_eq!(s.auth_failures, 1, "{s}");
    assert_nothing_stored(&db, &sim).await;
    sim.shutdown().await;
    running.stop().await;
}

/// Policy on, matching prefix, right derived credentials (MD5 and HMAC):
/// the device is enrolled in its first session, audited once; that session
/// replaces the derived secrets with fresh ones (PROTOCOL A.4), stored
/// sealed, and the next session, after the simulator restarted from its
/// state on disk, authenticates with the new ones.
async fn enrols_with_derived_credentials(t: TestDb) {
    let vault = Vault::open(None, t.dir.path()).unwrap();
    let key = EnrolKey::from_hex(KEY).unwrap();
    for (i, auth) in [AuthType::Md5, AuthType::Hmac].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let (db, sim, running, dm) = setup_at(
            &t,
            dir.path(),
            Some(policy("IMEI:35", KEY, auth)),
            2,
            KEY,
            auth,
        )
        .await;
        assert!(bounded(sim.run_once()).await, "{auth:?}: {}", sim.stats());
        let records = sim.records().await;
        for id in sim.dev_ids() {
            let d = devices::get(&db, &id).await.unwrap().expect("enrolled");
            let stored = d.account(&vault).unwrap();
            let derived = key.derive_all(&id);
            assert_ne!(stored.client.secret, derived.client_secret, "{auth:?}");
            assert_ne!(stored.server.secret, derived.server_secret, "{auth:?}");
            assert_ne!(stored.client.secret, stored.server.secret);
            let r = records.iter().find(|r| r.devid == id).unwrap();
            assert_eq!(r.client_secret, stored.client.secret.expose(), "{auth:?}");
            assert_eq!(r.server_secret, stored.server.secret.expose(), "{auth:?}");
            assert!(d.pending_secrets(&vault).unwrap().is_none());
        }
        // The Replace of each DMAcc secret is audited, two per device.
        assert_eq!(
            audited(&db, Event::DmAccountChanged).await,
            4 * (i as i64 + 1)
        );
        sim.shutdown().await;
        let sim = Sim::start(sim_config(dm, dir.path(), 2, KEY, auth))
            .await
            .unwrap();
        for id in sim.dev_ids() {
            let d = devices::get(&db, &id).await.unwrap().expect("enrolled");
            assert_eq!(d.client_name, id);
            assert_eq!(d.server_name, "corp.example");
            // The Devices page shows who manages it: this server.
            assert_eq!(d.authority, "corp.example");
            assert!(d.first_seen.is_some());
        }
        assert_eq!(enrolled_audits(&db).await, 2 * (i as i64 + 1));
        // The next session authenticates against the stored device.
        assert!(bounded(sim.run_once()).await, "{auth:?}: {}", sim.stats());
        assert_eq!(enrolled_audits(&db).await, 2 * (i as i64 + 1));
        sim.shutdown().await;
        running.stop().await;
    }
}

/// A DevId outside the prefixes is refused: nothing stored.
async fn wrong_prefix_is_refused(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let p = policy("IMEI:99", KEY, AuthType::Md5);
    let (db, sim, running) = setup(&t, dir.path(), Some(p), 1, KEY, AuthType::Md5).await;
    assert!(!bounded(sim.run_once()).await);
    assert_eq!(sim.stats().auth_failures, 1);
    assert_nothing_stored(&db, &sim).await;
    sim.shutdown().await;
    running.stop().await;
}

/// Credentials derived from another key are refused: nothing stored.
async fn other_key_is_refused(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let p = policy("IMEI:35", KEY, AuthType::Md5);
    let (db, sim, running) = setup(&t, dir.path(), Some(p), 1, OTHER_KEY, AuthType::Md5).await;
    assert!(!bounded(sim.run_once()).await);
    assert_eq!(sim.stats().auth_failures, 1);
    assert_nothing_stored(&db, &sim).await;
    sim.shutdown().await;
    running.stop().await;
}

on_both_databases! {
    policy_off => off_by_default;
    policy_on => enrols_with_derived_credentials;
    prefix => wrong_prefix_is_refused;
    key => other_key_is_refused;
}

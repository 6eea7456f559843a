//! The device simulator against a real DM server session on loopback
//! (PROTOCOL A.1–A.5): `ServerSession` behind axum with the accounts of the
//! simulator's `devices.csv`.

mod common;

use std::time::{Duration, Instant};

use handover::dm::auth::{AuthType, Nonce};
use handover::dm::session::CommandKind;
use handover::dm::syncml::Encoding;
use handover::dm::TreeUri;
use handover::sim::refserver::RefServer;
use handover::sim::{csv, Sim, SimConfig};

const VPN: &str = "./Vendor/Corp/Apps/VPN/Enabled";

fn commands() -> Vec<CommandKind> {
    vec![
        CommandKind::Get {
            target: "./DevInfo".into(),
        },
        CommandKind::Replace {
            target: VPN.into(),
            data: b"true".to_vec(),
            format: Some("chr".into()),
            mime: Some("text/plain".into()),
        },
    ]
}

/// A reference server and a fleet enrolled in it.
async fn fleet(
    dir: &std::path::Path,
    devices: usize,
    auth: AuthType,
    encoding: Encoding,
    push: bool,
) -> (RefServer, Sim) {
    let server = RefServer::start("127.0.0.1:0".parse().unwrap(), &[], commands())
        .await
        .unwrap();
    let sim = start(dir, &server, devices, auth, encoding, push).await;
    (server, sim)
}

async fn start(
    dir: &std::path::Path,
    server: &RefServer,
    devices: usize,
    auth: AuthType,
    encoding: Encoding,
    push: bool,
) -> Sim {
    let mut cfg = SimConfig::new(devices, server.url(), dir);
    cfg.auth = auth;
    cfg.encoding = encoding;
    cfg.request_timeout = Duration::from_secs(5);
    if push {
        cfg.push_addr = Some("127.0.0.1:0".parse().unwrap());
    }
    let sim = Sim::start(cfg).await.unwrap();
    let text = std::fs::read_to_string(dir.join("devices.csv")).unwrap();
    server.set_accounts(&csv::parse(&text).unwrap()).unwrap();
    sim
}

fn value(tree: &handover::dm::Tree, uri: &str) -> String {
    String::from_utf8_lossy(tree.value(&TreeUri::parse(uri).unwrap()).unwrap()).into_owned()
}

/// PROTOCOL A.3, A.4: 20 devices enroll (auth, server's Get and Replace)
/// with each auth scheme and encoding, twice, so the nonces each side
/// issued in the first session carry the second.
#[test]
fn twenty_devices_enroll_with_md5_hmac_and_wbxml() {
    common::bounded(
        concat!(
            module_path!(),
            "::twenty_devices_enroll_with_md5_hmac_and_wbxml"
        ),
        4,
        twenty_devices_enroll_with_md5_hmac_and_wbxml_body(),
    );
}

async fn twenty_devices_enroll_with_md5_hmac_and_wbxml_body() {
    for (auth, encoding) in [
        (AuthType::Md5, Encoding::Xml),
        (AuthType::Hmac, Encoding::Xml),
        (AuthType::Md5, Encoding::Wbxml),
        (AuthType::Hmac, Encoding::Wbxml),
        // Basic is refused without TLS: the server challenges for MD5 (A.4).
        (AuthType::Basic, Encoding::Xml),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (server, sim) = fleet(dir.path(), 20, auth, encoding, false).await;
        for round in 1..=2u64 {
            assert!(sim.run_once().await, "{auth:?} {encoding:?} round {round}");
            assert_eq!(server.completed(), 20 * round, "{auth:?} {encoding:?}");
            assert_eq!(server.results(), 20 * round);
        }
        let s = sim.stats();
        assert_eq!((s.sessions_ok, s.sessions_failed), (40, 0));
        assert_eq!(s.commands_executed, 80);
        assert_eq!(server.auth_failed(), 0);
        for id in sim.dev_ids() {
            assert_eq!(value(&sim.tree(&id).await.unwrap(), VPN), "true");
        }
        sim.shutdown().await;
        server.stop();
    }
}

/// PROTOCOL A.5: a package 0 with the right digest starts a session within
/// a second; one with a wrong digest is refused and starts none.
#[test]
fn push_notification_starts_a_session_and_a_bad_digest_is_refused() {
    common::bounded(
        concat!(
            module_path!(),
            "::push_notification_starts_a_session_and_a_bad_digest_is_refused"
        ),
        4,
        push_notification_starts_a_session_and_a_bad_digest_is_refused_body(),
    );
}

async fn push_notification_starts_a_session_and_a_bad_digest_is_refused_body() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sim) = fleet(dir.path(), 3, AuthType::Md5, Encoding::Xml, true).await;
    let http = reqwest::Client::new();
    let devid = sim.dev_ids()[1].clone();
    let (good, push_url) = server.package0(&devid, 0x1A2B).unwrap();
    assert!(push_url.starts_with(&format!("http://{}/push/IMEI%3A", sim.push_addr().unwrap())));

    let mut bad = good.clone();
    bad[0] ^= 0xff;
    let r = http
        .post(&push_url)
        .header("content-type", "application/vnd.syncml.dm.notification")
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let t0 = Instant::now();
    let r = http
        .post(&push_url)
        .header("content-type", "application/vnd.syncml.dm.notification")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    while server.completed() < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "no session within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the device save, then check that the refused one started nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = sim.stats();
    assert_eq!(s.notifications_received, 2);
    assert_eq!(s.notifications_refused, 1);
    assert_eq!((s.sessions_ok, s.sessions_failed), (1, 0));
    assert_eq!(server.completed(), 1);
    assert_eq!(value(&sim.tree(&devid).await.unwrap(), VPN), "true");

    let status: serde_json::Value = http
        .get(format!("http://{}/status", sim.push_addr().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["notifications_refused"], 1);
    assert_eq!(status["sessions_ok"], 1);

    // The digest of the next notification uses the nonce the device issued
    // in that session (A.4, A.5): the server learnt it, so it verifies.
    let (next, _) = server.package0(&devid, 0x2B).unwrap();
    let r = http
        .post(&push_url)
        .header("content-type", "application/vnd.syncml.dm.notification")
        .body(next)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let t0 = Instant::now();
    while server.completed() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(1), "no second session");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.shutdown().await;
    server.stop();
}

/// A restarted simulator is the same fleet: same DevIds and secrets, the
/// server's tree changes and the nonces kept, so it authenticates again.
#[test]
fn state_survives_a_restart() {
    common::bounded(
        concat!(module_path!(), "::state_survives_a_restart"),
        4,
        state_survives_a_restart_body(),
    );
}

async fn state_survives_a_restart_body() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sim) = fleet(dir.path(), 5, AuthType::Hmac, Encoding::Wbxml, false).await;
    let before = sim.records().await;
    assert!(sim.run_once().await);
    let ids = sim.dev_ids();
    sim.shutdown().await;

    // A different --devices is ignored: the directory holds the fleet.
    let sim = start(
        dir.path(),
        &server,
        9,
        AuthType::Md5,
        Encoding::Wbxml,
        false,
    )
    .await;
    assert_eq!(sim.dev_ids(), ids);
    let after = sim.records().await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.devid, a.devid);
        assert_eq!(b.auth, AuthType::Hmac);
        assert_eq!(a.auth, AuthType::Hmac);
        assert_eq!(b.client_secret, a.client_secret);
        assert_eq!(b.server_secret, a.server_secret);
        // A.4: both nonces moved on during the session.
        assert_ne!(b.client_nonce, a.client_nonce);
        assert_ne!(b.server_nonce, a.server_nonce);
    }
    for id in &ids {
        assert_eq!(value(&sim.tree(id).await.unwrap(), VPN), "true");
    }
    assert!(sim.run_once().await);
    assert_eq!(server.completed(), 10);
    sim.shutdown().await;
    server.stop();
}

/// `devices.csv`: exact header, one row per device, per-device secrets,
/// nonces as base64 of 24 base64url characters (A.4), parse ∘ write = id.
#[test]
fn devices_csv_round_trips() {
    common::bounded(
        concat!(module_path!(), "::devices_csv_round_trips"),
        2,
        devices_csv_round_trips_body(),
    );
}

async fn devices_csv_round_trips_body() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sim) = fleet(dir.path(), 20, AuthType::Md5, Encoding::Xml, true).await;
    let text = std::fs::read_to_string(dir.path().join("devices.csv")).unwrap();
    assert_eq!(text.lines().next().unwrap(), csv::HEADER);
    let rows = csv::parse(&text).unwrap();
    assert_eq!(rows, sim.records().await);
    assert_eq!(csv::write(&rows), text);
    assert_eq!(rows.len(), 20);
    let secrets: std::collections::HashSet<_> = rows
        .iter()
        .flat_map(|r| [r.client_secret.clone(), r.server_secret.clone()])
        .collect();
    assert_eq!(secrets.len(), 40, "never one password for many devices");
    for r in &rows {
        assert!(r.devid.starts_with("IMEI:35"));
        assert_eq!(r.server_name, "handover.localhost");
        for n in [&r.client_nonce, &r.server_nonce] {
            let raw = Nonce::from_b64(n).unwrap();
            assert_eq!(raw.as_bytes().len(), 24);
            assert!(raw.to_chr().is_some());
        }
        assert!(r.push_address.ends_with(&csv::url_encode(&r.devid)));
    }
    sim.shutdown().await;
    server.stop();
}

/// `handover sim bench` end to end against the reference server: both
/// phases run and some sessions succeed (exit code 0), with the canned
/// endpoint in a process of its own and in this one.
#[test]
fn bench_runs_both_phases() {
    common::bounded(
        concat!(module_path!(), "::bench_runs_both_phases"),
        4,
        bench_runs_both_phases_body(),
    );
}

async fn bench_runs_both_phases_body() {
    for in_process in [false, true] {
        bench_once(in_process).await;
    }
}

async fn bench_once(canned_in_process: bool) {
    let args = handover::sim::bench::BenchArgs {
        devices: 5,
        duration: 1,
        server: None,
        state: None,
        server_pid: Some(std::process::id()),
        wbxml: true,
        auth: handover::sim::cli::AuthArg::Hmac,
        server_id: "handover.localhost".into(),
        api: None,
        api_token: None,
        api_concurrency: 64,
        canned_in_process,
        endpoint_bin: Some(env!("CARGO_BIN_EXE_handover").into()),
    };
    assert_eq!(handover::sim::bench::run(args).await.unwrap(), 0);
    assert!(handover::sim::bench::vm_rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
}

/// Between the simulator and the server: forwards each message and flips
/// one character of the `mac` in the server's `x-syncml-hmac` header.
async fn mac_tampering_proxy(target: String) -> String {
    use axum::http::{HeaderMap, HeaderValue};
    use axum::response::IntoResponse;
    let http = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/dm",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (http, target) = (http.clone(), target.clone());
            async move {
                let mut req = http.post(&target).body(body.to_vec());
                for name in ["content-type", "x-syncml-hmac"] {
                    if let Some(v) = headers.get(name) {
                        req = req.header(name, v.as_bytes());
                    }
                }
                let r = req.send().await.unwrap();
                let ct = r.headers()["content-type"].clone();
                let mac = r.headers().get("x-syncml-hmac").map(|v| {
                    let v = v.to_str().unwrap();
                    let (head, mac) = v.rsplit_once("mac=").unwrap();
                    let flipped = if mac.starts_with('A') { "B" } else { "A" };
                    format!("{head}mac={flipped}{}", &mac[1..])
                });
                let mut res = r.bytes().await.unwrap().to_vec().into_response();
                res.headers_mut().insert("content-type", ct);
                if let Some(m) = mac {
                    res.headers_mut()
                        .insert("x-syncml-hmac", HeaderValue::from_str(&m).unwrap());
                }
                res
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/dm", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// PROTOCOL A.4: with an HMAC SRVCRED the device checks the server's MAC
/// over each answer's exact bytes; a wrong one is refused and ends the
/// session before any command runs.
#[test]
fn a_wrong_server_mac_ends_the_session() {
    common::bounded(
        concat!(module_path!(), "::a_wrong_server_mac_ends_the_session"),
        2,
        a_wrong_server_mac_ends_the_session_body(),
    );
}

async fn a_wrong_server_mac_ends_the_session_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = RefServer::start("127.0.0.1:0".parse().unwrap(), &[], commands())
        .await
        .unwrap();
    let mut cfg = SimConfig::new(3, mac_tampering_proxy(server.url()).await, dir.path());
    cfg.auth = AuthType::Hmac;
    cfg.request_timeout = Duration::from_secs(5);
    let sim = Sim::start(cfg).await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("devices.csv")).unwrap();
    server.set_accounts(&csv::parse(&text).unwrap()).unwrap();
    assert!(!sim.run_once().await);
    let st = sim.stats();
    assert_eq!((st.sessions_ok, st.server_auth_failures), (0, 3), "{st}");
    for id in sim.dev_ids() {
        assert_eq!(value(&sim.tree(&id).await.unwrap(), VPN), "false", "{id}");
    }
    sim.shutdown().await;
    server.stop();
}

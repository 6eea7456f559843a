//! The live delegation pages over real HTTP on loopback: the Server-Sent
//! Events endpoint (roles, events as they happen), the delegation and batch
//! data, staff decisions by role, the device's delegations and the audit
//! filters by device, delegation and peer.

mod common;

use common::{create_user, serve_config, start, Portal, TestDb};
use handover::peer::{DmUrl, Fingerprint, Peer, PeerUrl};
use handover::store::{api_tokens, peers, users, Db};
use handover_app::api::audit::AuditPage;
use handover_app::api::live::{BatchLive, DelegationLive, DelegationRow};
use handover_app::api::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DEVID: &str = "IMEI:490154203237518";
const PEER: &str = "carrier.example";
const TREE: &str = r#"[{"uri":".","kind":"interior","format":"node","type":"","value":"","acl":"Add=*&Get=*&Replace=corp.example"},{"uri":"./Vendor","kind":"interior","format":"node","type":"","value":"","acl":"Get=corp.example&Replace=corp.example"}]"#;

struct World {
    base: String,
    db: Db,
    op_token: String,
    ap_token: String,
    _running: handover::serve::Running,
}

async fn world(t: &TestDb) -> (World, handover::serve::Bound) {
    let (bound, running) = start(serve_config(t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "olga", &[Role::Operator, Role::Viewer]).await;
    create_user(&db, "abe", &[Role::Approver, Role::Viewer]).await;
    create_user(&db, "vera", &[Role::Viewer]).await;
    create_user(&db, "aud", &[Role::Auditor]).await;
    // A peer nobody answers for: deliveries are retried, nothing completes.
    peers::add(
        &db,
        &Peer {
            server_id: handover_dm::types::ServerId::parse_strict(PEER.to_owned()).unwrap(),
            url: PeerUrl::parse("https://127.0.0.1:9").unwrap(),
            dm_url: DmUrl::parse("http://127.0.0.1:9/dm").unwrap(),
            fingerprint: Fingerprint::parse(&"ab".repeat(32)).unwrap(),
            auto_accept: None,
            created_at: 0,
            updated_at: 0,
        },
    )
    .await
    .unwrap();
    sqlx::query(&db.sql(
        "INSERT INTO devices (devid, man, model, dmv, lang, auth_type, client_name, \
         client_secret_enc, client_nonce, server_name, server_secret_enc, server_nonce, \
         authority, state, created_at) \
         VALUES ($1, 'Acme', 'X1', '1.2', 'en-us', 'md5', 'client', 'enc', 'bm9uY2U=', \
         'corp.example', 'enc', 'bm9uY2U=', 'corp.example', 'active', 1)",
    ))
    .bind(DEVID)
    .execute(db.pool())
    .await
    .unwrap();
    common::insert_inventory(&db, DEVID, "{}", TREE).await;
    let token = |name: &'static str| {
        let db = db.clone();
        async move {
            let u = users::by_name(&db, name).await.unwrap().unwrap();
            api_tokens::create(&db, u.id, "test").await.unwrap()
        }
    };
    let op_token = token("olga").await;
    let ap_token = token("abe").await;
    (
        World {
            base: format!("http://{}", bound.portal),
            db,
            op_token,
            ap_token,
            _running: running,
        },
        bound,
    )
}

impl World {
    async fn api(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or_default())
    }

    /// A request by olga for the device; its delegation's id.
    async fn request(&self) -> (i64, i64) {
        let (s, v) = self
            .api(
                &self.op_token,
                "/api/v1/delegations",
                json!({ "devices": [DEVID], "peer": PEER, "type": "partial",
                        "scope": [{ "uri": "./Vendor", "rights": ["Get", "Replace"] }],
                        "term": "permanent", "reason": "ticket 42" }),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["delegations"][0].as_i64().unwrap(),
            v["batch_id"].as_i64().unwrap(),
        )
    }
}

/// Reads Server-Sent Events until one whose data satisfies `want`.
async fn next_event(
    res: &mut reqwest::Response,
    buf: &mut String,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        if want(&v) {
                            return v;
                        }
                    }
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, res.chunk())
            .await
            .expect("the event arrives in time")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn sse(p: &Portal, path: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", p.base));
    if let Some(c) = p.cookie_value() {
        req = req.header(reqwest::header::COOKIE, c);
    }
    req.send().await.unwrap()
}

async fn events_arrive_for_viewers_only(t: TestDb) {
    let (w, bound) = world(&t).await;
    let (id, batch) = w.request().await;

    let anonymous = Portal::new(&bound);
    assert_eq!(
        sse(&anonymous, &format!("/live/delegations/{id}"))
            .await
            .status(),
        401
    );
    let mut aud = Portal::new(&bound);
    aud.sign_in("aud").await;
    assert_eq!(
        sse(&aud, &format!("/live/delegations/{id}")).await.status(),
        403
    );
    let denied = handover::audit::list(
        &w.db,
        &handover::audit::Filter {
            actor: "aud".into(),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert!(denied
        .iter()
        .any(|e| e.event_name() == "auth.access_denied"));

    let mut vera = Portal::new(&bound);
    vera.sign_in("vera").await;
    assert_eq!(sse(&vera, "/live/delegations/999999").await.status(), 404);
    let mut res = sse(&vera, &format!("/live/delegations/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut batch_res = sse(&vera, &format!("/live/batches/{batch}")).await;
    assert_eq!(batch_res.status(), 200);

    let (s, v) = w
        .api(
            &w.ap_token,
            &format!("/api/v1/delegations/{id}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut buf = String::new();
    let e = next_event(&mut res, &mut buf, |v| v["kind"] == "state").await;
    assert_eq!(e["delegation"], id);
    assert_eq!(e["state"], "AwaitingAuthChallenge");
    let lag = handover::store::now_ms() - e["at"].as_i64().unwrap();
    assert!(lag < 5_000, "pushed {lag} ms after the transition");
    let mut bbuf = String::new();
    let e = next_event(&mut batch_res, &mut bbuf, |v| v["kind"] == "state").await;
    assert_eq!(e["batch"], batch);

    // The unreachable peer: the page says what the delegation waits for.
    let (s, body) = vera
        .call("delegations/live", &[("id", &id.to_string())])
        .await;
    assert_eq!(s, 200, "{body}");
    let d: DelegationLive = serde_json::from_str(&body).unwrap();
    assert_eq!(d.row.state, "AwaitingAuthChallenge");
    assert_eq!(d.row.approved_by, "abe");
    assert_eq!(
        d.row.scope,
        vec![("./Vendor".to_owned(), "Get,Replace".to_owned())]
    );
    assert!(d.messages.iter().any(|m| m.msg_type == "Notification"));
    assert!(!d.controls.abort && d.controls.end.is_none() && !d.controls.retry);
    let steps = handover_app::api::live::timeline(&d);
    let now = steps
        .iter()
        .find(|s| s.status == handover_app::api::live::Status::Current)
        .unwrap();
    assert!(
        now.text
            .to_string()
            .starts_with("waiting for carrier.example to prove who it is"),
        "{}",
        now.text
    );
}

async fn decisions_follow_roles(t: TestDb) {
    let (w, bound) = world(&t).await;
    let (id, batch) = w.request().await;
    let ids = id.to_string();
    let mut vera = Portal::new(&bound);
    vera.sign_in("vera").await;
    let (s, _) = vera
        .call("delegations/act", &[("id", &ids), ("act", "abort")])
        .await;
    assert_eq!(s, 403, "viewers decide nothing");

    let mut olga = Portal::new(&bound);
    olga.sign_in("olga").await;
    let (_, body) = olga.call("delegations/live", &[("id", &ids)]).await;
    let d: DelegationLive = serde_json::from_str(&body).unwrap();
    assert!(d.controls.abort, "an operator aborts her own request");
    let (s, body) = olga
        .call(
            "delegations/act",
            &[("id", &ids), ("act", "abort"), ("reason", "wrong device")],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, body) = olga.call("delegations/live", &[("id", &ids)]).await;
    let d: DelegationLive = serde_json::from_str(&body).unwrap();
    assert_eq!(d.row.state, "Aborted");
    assert!(d.controls.retry && !d.controls.abort);
    let (s, _) = olga
        .call(
            "delegations/act",
            &[("id", &ids), ("act", "revoke"), ("reason", "x")],
        )
        .await;
    assert_eq!(s, 403, "only approvers end delegations");

    let (s, body) = olga
        .call("delegations/act", &[("id", &ids), ("act", "retry")])
        .await;
    assert_eq!(s, 200, "{body}");
    let new_id: Option<i64> = serde_json::from_str(&body).unwrap();
    let new_id = new_id.unwrap();
    assert_ne!(new_id, id);

    let (s, body) = vera
        .call("batches/live", &[("id", &batch.to_string())])
        .await;
    assert_eq!(s, 200, "{body}");
    let b: BatchLive = serde_json::from_str(&body).unwrap();
    assert_eq!(b.rows.len(), 1);
    assert_eq!(b.rows[0].state, "Aborted");
    let (s, _) = vera.call("batches/live", &[("id", "999999")]).await;
    assert_eq!(s, 404);

    let (s, body) = vera.call("devices/delegations", &[("devid", DEVID)]).await;
    assert_eq!(s, 200, "{body}");
    let rows: Vec<DelegationRow> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![new_id, id]
    );

    // The audit log by device, delegation and peer, with links to the timeline.
    let mut aud = Portal::new(&bound);
    aud.sign_in("aud").await;
    for (key, value) in [
        ("device", DEVID.to_owned()),
        ("delegation", ids.clone()),
        ("peer", PEER.to_owned()),
    ] {
        let k = format!("filter[{key}]");
        let (s, body) = aud.call("audit/list", &[(&k, &value)]).await;
        assert_eq!(s, 200, "{body}");
        let page: AuditPage = serde_json::from_str(&body).unwrap();
        assert!(page.total_matching > 0, "{key}");
        assert!(
            page.entries.iter().any(|e| e.delegation == Some(id)),
            "{key}: entries link to the delegation"
        );
        if key == "delegation" {
            assert!(page.entries.iter().all(|e| e.delegation == Some(id)));
        }
    }
    let (_, body) = aud
        .call("audit/list", &[("filter[device]", "IMEI:000000000000000")])
        .await;
    let page: AuditPage = serde_json::from_str(&body).unwrap();
    assert_eq!(page.total_matching, 0);
}

on_both_databases! {
    sse_events => events_arrive_for_viewers_only;
    decisions => decisions_follow_roles;
}

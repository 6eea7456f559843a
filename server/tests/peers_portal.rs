//! The Peers page's server functions over real HTTP on loopback (PROTOCOL
//! B.1): our identity, adding, editing, testing and removing a peer, the
//! inline errors, the roles (viewers read, admins change; every denial
//! audited) and the peer listener taking changes without a restart.

mod common;

use common::{audited, create_user, serve_config, start, Portal, TestDb};
use handover::audit::{self, Event};
use handover::dm::types::ServerId;
use handover::peer::identity::Identity;
use handover::peer::{ConnectionTest, DmUrl, Endpoint, Fingerprint, Peer, PeerClient, PeerUrl};
use handover::peer::{Pins, Unavailable};
use handover::store::Db;
use handover_app::api::peers::{ConnectionReport, PeersPage};
use handover_app::api::{AppError, Role};
use std::sync::Arc;

async fn overview(p: &mut Portal) -> PeersPage {
    let (status, body) = p.call("peers/overview", &[]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a peers page")
}

/// The field a refused call names.
fn refused_field(status: u16, body: &str) -> String {
    assert_eq!(status, 400, "{body}");
    match serde_json::from_str::<AppError>(body).expect("an error") {
        AppError::Invalid { field, .. } => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

struct Form<'a> {
    server_id: &'a str,
    url: &'a str,
    dm_url: &'a str,
    fingerprint: &'a str,
    auto_accept: &'a str,
}

impl Form<'_> {
    fn fields(&self) -> [(&str, &str); 5] {
        [
            ("server_id", self.server_id),
            ("url", self.url),
            ("dm_url", self.dm_url),
            ("fingerprint", self.fingerprint),
            ("auto_accept", self.auto_accept),
        ]
    }
}

/// The carrier's side: its identity and a peer listener that trusts `ours`.
struct Carrier {
    _dir: tempfile::TempDir,
    identity: Arc<Identity>,
    url: String,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn carrier(ours: &Fingerprint) -> Carrier {
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = Identity::load_or_create(dir.path(), "carrier.example").unwrap();
    let identity = Arc::new(identity);
    let pins = Pins::fixed([(ours.clone(), ServerId::parse("corp.example").unwrap())]);
    let endpoint = Endpoint::new(&identity, pins, Arc::new(Unavailable)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(endpoint.serve(listener, rx));
    Carrier {
        _dir: dir,
        identity,
        url,
        _stop: stop,
    }
}

async fn admin_manages_peers(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "ada", &[Role::Admin]).await;
    let mut admin = Portal::new(&bound);
    admin.sign_in("ada").await;

    // Our identity, as a peer's administrator needs it.
    let page = overview(&mut admin).await;
    assert!(page.can_edit);
    assert!(page.peers.is_empty());
    assert_eq!(page.this.server_id, "corp.example");
    assert_eq!(page.this.peer_url, format!("https://{}", bound.peer));
    assert_eq!(page.this.dm_url, format!("http://{}/dm", bound.dm));
    let ours = Fingerprint::parse(&page.this.fingerprint).unwrap();
    assert_eq!(
        ours.as_str(),
        page.this.fingerprint,
        "64 lowercase hex digits"
    );

    let carrier = carrier(&ours).await;
    let theirs = carrier.identity.fingerprint().as_str().to_owned();
    let upper = theirs.to_uppercase();
    let good = Form {
        server_id: "carrier.example",
        url: &carrier.url,
        dm_url: "https://carrier.example/dm",
        fingerprint: &upper,
        auto_accept: "",
    };

    // Each bad field is named, so the form can show the error beside it.
    let long_policy = format!(r#"{{"name":"{}"}}"#, "x".repeat(9000));
    for (field, form) in [
        (
            "server_id",
            Form {
                server_id: "corp.example",
                ..good
            },
        ),
        (
            "server_id",
            Form {
                server_id: "a&b",
                ..good
            },
        ),
        (
            "url",
            Form {
                url: "http://carrier.example",
                ..good
            },
        ),
        (
            "url",
            Form {
                url: "https://carrier.example/",
                ..good
            },
        ),
        (
            "dm_url",
            Form {
                dm_url: "carrier.example/dm",
                ..good
            },
        ),
        (
            "fingerprint",
            Form {
                fingerprint: "abc123",
                ..good
            },
        ),
        (
            "fingerprint",
            Form {
                fingerprint: &"g".repeat(64),
                ..good
            },
        ),
        (
            "auto_accept",
            Form {
                auto_accept: "{",
                ..good
            },
        ),
        (
            "auto_accept",
            Form {
                auto_accept: r#"{"name":"x","terms":["forever"]}"#,
                ..good
            },
        ),
        (
            "auto_accept",
            Form {
                auto_accept: &long_policy,
                ..good
            },
        ),
    ] {
        let (status, body) = admin.call("peers/add", &form.fields()).await;
        assert_eq!(refused_field(status, &body), field, "{:?}", form.fields());
    }
    assert!(overview(&mut admin).await.peers.is_empty());

    // Before it is added, the carrier cannot reach our listener.
    let to_us = Peer {
        server_id: ServerId::parse("corp.example").unwrap(),
        url: PeerUrl::parse(&page.this.peer_url).unwrap(),
        dm_url: DmUrl::parse(&page.this.dm_url).unwrap(),
        fingerprint: ours.clone(),
        auto_accept: None,
        created_at: 0,
        updated_at: 0,
    };
    let carrier_client = PeerClient::new(carrier.identity.clone());
    assert_eq!(
        carrier_client.test_connection(&to_us).await,
        ConnectionTest::RefusedByPeer
    );

    let (status, body) = admin.call("peers/add", &good.fields()).await;
    assert_eq!(status, 200, "{body}");
    let page = overview(&mut admin).await;
    let [row] = page.peers.as_slice() else {
        panic!("one peer: {:?}", page.peers)
    };
    assert_eq!(row.server_id, "carrier.example");
    assert_eq!(row.fingerprint, theirs, "kept lowercase");
    assert_eq!(
        (row.auto_accept.as_deref(), row.policy_summary.as_deref()),
        (None, None)
    );
    assert!(row.created_at > 0);

    // A second peer with the same ServerID, or the same key, is refused.
    let (status, body) = admin.call("peers/add", &good.fields()).await;
    assert_eq!(refused_field(status, &body), "server_id");
    let (status, body) = admin
        .call(
            "peers/add",
            &Form {
                server_id: "other.example",
                ..good
            }
            .fields(),
        )
        .await;
    assert_eq!(refused_field(status, &body), "fingerprint");

    // The listener takes the new peer without a restart, and the test from
    // the portal works both ways.
    assert!(carrier_client.test_connection(&to_us).await.is_ok());
    let (status, body) = admin
        .call("peers/test", &[("server_id", "carrier.example")])
        .await;
    assert_eq!(status, 200, "{body}");
    let report: ConnectionReport = serde_json::from_str(&body).unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.message.starts_with("ok"), "{report:?}");

    // Edit: a bad policy is named; a good one is kept and summarised.
    let (status, body) = admin
        .call(
            "peers/update",
            &Form {
                auto_accept: r#"{"name":""}"#,
                ..good
            }
            .fields(),
        )
        .await;
    assert_eq!(refused_field(status, &body), "auto_accept");
    let policy = r#"{"name":"corp-apps","types":["partial"],"max_days":30}"#;
    let (status, body) = admin
        .call(
            "peers/update",
            &Form {
                dm_url: "https://carrier.example/dm2",
                auto_accept: policy,
                ..good
            }
            .fields(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let row = overview(&mut admin).await.peers.remove(0);
    assert_eq!(row.dm_url, "https://carrier.example/dm2");
    assert_eq!(row.auto_accept.as_deref(), Some(policy));
    assert_eq!(
        row.policy_summary.as_deref(),
        Some("corp-apps: any role · partial · any term · at most 30 days")
    );
    assert!(row.updated_at >= row.created_at);
    let (status, body) = admin
        .call(
            "peers/update",
            &Form {
                server_id: "nobody.example",
                ..good
            }
            .fields(),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // A wrong pin shows as a mismatch, in plain words.
    let wrong = "ab".repeat(32);
    let (status, body) = admin
        .call(
            "peers/update",
            &Form {
                fingerprint: &wrong,
                ..good
            }
            .fields(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = admin
        .call("peers/test", &[("server_id", "carrier.example")])
        .await;
    let report: ConnectionReport = serde_json::from_str(&body).unwrap();
    assert!(!report.ok);
    assert!(
        report.message.starts_with("fingerprint mismatch"),
        "{report:?}"
    );
    // …and the carrier's key is no longer pinned here.
    assert_eq!(
        carrier_client.test_connection(&to_us).await,
        ConnectionTest::RefusedByPeer
    );
    let (status, body) = admin.call("peers/update", &good.fields()).await;
    assert_eq!(status, 200, "{body}");
    assert!(carrier_client.test_connection(&to_us).await.is_ok());

    // Remove: the carrier is refused from the next handshake.
    let (status, body) = admin
        .call("peers/remove", &[("server_id", "carrier.example")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(overview(&mut admin).await.peers.is_empty());
    assert_eq!(
        carrier_client.test_connection(&to_us).await,
        ConnectionTest::RefusedByPeer
    );
    let (status, _) = admin
        .call("peers/remove", &[("server_id", "carrier.example")])
        .await;
    assert_eq!(status, 404);
    let (status, _) = admin
        .call("peers/test", &[("server_id", "carrier.example")])
        .await;
    assert_eq!(status, 404);

    // Every change is audited, with the admin as actor.
    assert_eq!(audited(&db, Event::PeerAdded).await, 1);
    assert_eq!(audited(&db, Event::PeerUpdated).await, 3);
    assert_eq!(audited(&db, Event::PeerRemoved).await, 1);
    let entries = audit::list(
        &db,
        &audit::Filter {
            subject: "carrier.example".into(),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert!(entries.iter().all(|e| e.actor == "ada"), "{entries:?}");
    running.stop().await;
}

async fn only_admins_change_peers(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    for r in Role::ALL {
        create_user(&db, r.as_str(), &[r]).await;
    }
    let peer = |id: &'static str| {
        [
            ("server_id", id),
            ("url", "https://127.0.0.1:1"),
            ("dm_url", "https://carrier.example/dm"),
            (
                "fingerprint",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ]
    };
    let mut admin = Portal::new(&bound);
    admin.sign_in("admin").await;
    let (status, body) = admin.call("peers/add", &peer("carrier.example")).await;
    assert_eq!(status, 200, "{body}");

    // An unreachable peer is said so in plain words.
    let (_, body) = admin
        .call("peers/test", &[("server_id", "carrier.example")])
        .await;
    let report: ConnectionReport = serde_json::from_str(&body).unwrap();
    assert!(!report.ok);
    assert!(report.message.starts_with("unreachable"), "{report:?}");

    let changes: [(&str, Vec<(&str, &str)>); 4] = [
        ("peers/add", peer("other.example").to_vec()),
        ("peers/update", peer("carrier.example").to_vec()),
        ("peers/remove", vec![("server_id", "carrier.example")]),
        ("peers/test", vec![("server_id", "carrier.example")]),
    ];
    let mut anonymous = Portal::new(&bound);
    let (status, _) = anonymous.call("peers/overview", &[]).await;
    assert_eq!(status, 401);
    for (endpoint, form) in &changes {
        let (status, _) = anonymous.call(endpoint, form).await;
        assert_eq!(status, 401, "anonymous {endpoint}");
    }

    let denials_before = audited(&db, Event::AccessDenied).await;
    let mut expected_denials = 0;
    for r in Role::ALL.into_iter().filter(|r| *r != Role::Admin) {
        let mut p = Portal::new(&bound);
        p.sign_in(r.as_str()).await;
        let (status, body) = p.call("peers/overview", &[]).await;
        if r == Role::Viewer {
            assert_eq!(status, 200, "{body}");
            let page: PeersPage = serde_json::from_str(&body).unwrap();
            assert!(!page.can_edit);
            assert_eq!(page.peers.len(), 1);
        } else {
            assert_eq!(status, 403, "{r} may not see peers: {body}");
            expected_denials += 1;
        }
        for (endpoint, form) in &changes {
            let (status, body) = p.call(endpoint, form).await;
            assert_eq!(status, 403, "{r} may not call {endpoint}: {body}");
            expected_denials += 1;
        }
    }
    assert_eq!(
        audited(&db, Event::AccessDenied).await - denials_before,
        expected_denials,
        "every denial is audited"
    );
    // Nothing changed.
    let page = overview(&mut admin).await;
    assert_eq!(page.peers.len(), 1);
    assert_eq!(audited(&db, Event::PeerAdded).await, 1);
    assert_eq!(audited(&db, Event::PeerUpdated).await, 0);
    assert_eq!(audited(&db, Event::PeerRemoved).await, 0);
    running.stop().await;
}

/// Before the page is interactive its forms are plain posts: the refusal
/// comes back beside the field; a viewer's page has no controls.
async fn forms_work_without_javascript(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "admin", &[Role::Admin]).await;
    create_user(&db, "viewer", &[Role::Viewer]).await;
    let mut admin = Portal::new(&bound);
    admin.sign_in("admin").await;
    let (status, location) = admin
        .post_page_form(
            "peers/add",
            "/peers",
            &[
                ("server_id", "carrier.example"),
                ("url", "https://127.0.0.1:1"),
                ("dm_url", "https://carrier.example/dm"),
                ("fingerprint", "abc123"),
            ],
        )
        .await;
    assert!((300..400).contains(&status), "{status}");
    let path = location
        .strip_prefix(&admin.base)
        .unwrap_or(&location)
        .to_owned();
    assert!(path.starts_with("/peers?"), "{location}");
    let (status, html) = admin.get(&path).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"id="add-fingerprint" name="fingerprint""#)
            && html.contains(r#"aria-invalid="true" aria-describedby="add-fingerprint-hint add-fingerprint-error""#),
        "the fingerprint field is marked invalid"
    );
    assert!(
        html.contains("SHA-256 of the peer&#x27;s public key: 64 hex digits")
            || html.contains("SHA-256 of the peer's public key: 64 hex digits")
    );

    let fingerprint = "ab".repeat(32);
    let (status, _) = admin
        .post_page_form(
            "peers/add",
            "/peers",
            &[
                ("server_id", "carrier.example"),
                ("url", "https://127.0.0.1:1"),
                ("dm_url", "https://carrier.example/dm"),
                ("fingerprint", &fingerprint),
            ],
        )
        .await;
    assert!((300..400).contains(&status), "{status}");
    let (_, html) = admin.get("/peers").await;
    assert!(html.contains("carrier.example") && html.contains("Add a peer"));
    assert!(html.contains("Test connection"));

    let mut viewer = Portal::new(&bound);
    viewer.sign_in("viewer").await;
    let (status, html) = viewer.get("/peers").await;
    assert_eq!(status, 200);
    assert!(html.contains("carrier.example") && html.contains("abababab…abab"));
    for control in [
        "Add a peer",
        "Test connection",
        "Edit",
        "Remove…",
        "Copy fingerprint",
    ] {
        let present = html.contains(control);
        assert_eq!(
            present,
            control == "Copy fingerprint",
            "{control} on a viewer's page"
        );
    }
    running.stop().await;
}

on_both_databases! {
    admin_manages_peers => admin_manages_peers;
    only_admins_change_peers => only_admins_change_peers;
    forms_work_without_javascript => forms_work_without_javascript;
}

//! The portal over real HTTP on loopback: roles for every server function and
//! route, sessions, sign-in throttling, bad input (issue: foundation).

mod common;

use common::{create_user, serve_config, start, Portal, TestDb};
use handover::audit::{self, Event};
use handover::store::Db;
use handover_app::api::Role;

/// Every role-guarded action: (what, needs, how to call it).
#[derive(Debug, Clone, Copy)]
enum Action {
    Fn(&'static str, &'static [(&'static str, &'static str)]),
    Get(&'static str),
}

const MATRIX: &[(&str, Option<Role>, Action)] = &[
    (
        "list users",
        Some(Role::Admin),
        Action::Fn("users/list", &[]),
    ),
    (
        "create user",
        Some(Role::Admin),
        Action::Fn(
            "users/create",
            &[("name", "NEW"), ("password", "another long password")],
        ),
    ),
    (
        "set roles",
        Some(Role::Admin),
        Action::Fn(
            "users/set-roles",
            &[("name", "target"), ("roles[0]", "viewer")],
        ),
    ),
    (
        "disable user",
        Some(Role::Admin),
        Action::Fn(
            "users/set-disabled",
            &[("name", "target"), ("disabled", "false")],
        ),
    ),
    (
        "reset password",
        Some(Role::Admin),
        Action::Fn(
            "users/reset-password",
            &[("name", "target"), ("password", "another long password")],
        ),
    ),
    (
        "list audit",
        Some(Role::Auditor),
        Action::Fn("audit/list", &[("filter[limit]", "5")]),
    ),
    (
        "verify audit",
        Some(Role::Auditor),
        Action::Fn("audit/verify", &[]),
    ),
    (
        "audit events",
        Some(Role::Auditor),
        Action::Fn("audit/events", &[]),
    ),
    (
        "export audit",
        Some(Role::Auditor),
        Action::Get("/audit/export?format=csv"),
    ),
    ("who am i", None, Action::Fn("session/me", &[])),
];

async fn role_matrix(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    for r in Role::ALL {
        create_user(&db, r.as_str(), &[r]).await;
    }
    create_user(&db, "target", &[Role::Viewer]).await;

    let mut anonymous = Portal::new(&bound);
    for (what, needs, action) in MATRIX {
        let (status, body) = call(&mut anonymous, *action, "anon").await;
        let expected = if needs.is_some() { 401 } else { 200 };
        assert_eq!(status, expected, "anonymous {what}: {body}");
    }

    for r in Role::ALL {
        let mut p = Portal::new(&bound);
        p.sign_in(r.as_str()).await;
        for (what, needs, action) in MATRIX {
            let (status, body) = call(&mut p, *action, r.as_str()).await;
            match needs {
                Some(n) if *n != r => assert_eq!(status, 403, "{r} may not {what}: {body}"),
                _ => assert!(
                    (200..300).contains(&status),
                    "{r} may {what}: {status} {body}"
                ),
            }
        }
    }
    // Every denial is in the audit log.
    let denials = audit::count(
        &db,
        &audit::Filter {
            code: Some(Event::AccessDenied.code()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let guarded = MATRIX.iter().filter(|(_, n, _)| n.is_some()).count() as i64;
    let expected: i64 = Role::ALL
        .iter()
        .map(|r| {
            MATRIX
                .iter()
                .filter(|(_, n, _)| n.is_some_and(|n| n != *r))
                .count() as i64
        })
        .sum();
    assert!(guarded > 0);
    assert_eq!(denials, expected);
    running.stop().await;
}

async fn call(p: &mut Portal, action: Action, who: &str) -> (u16, String) {
    match action {
        Action::Fn(endpoint, form) => {
            let unique = format!("new-{who}");
            let form: Vec<(&str, &str)> = form
                .iter()
                .map(|(k, v)| (*k, if *v == "NEW" { unique.as_str() } else { *v }))
                .collect();
            p.call(endpoint, &form).await
        }
        Action::Get(path) => p.get(path).await,
    }
}

async fn sessions_expire_when_idle(t: TestDb) {
    let mut cfg = serve_config(&t);
    cfg.session_idle_secs = 1;
    let (bound, running) = start(cfg).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "ana", &[Role::Admin]).await;
    let mut p = Portal::new(&bound);
    p.sign_in("ana").await;
    let (_, me) = p.call("session/me", &[]).await;
    assert!(me.contains("\"ana\""), "{me}");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, me) = p.call("session/me", &[]).await;
    assert_eq!((status, me.as_str()), (200, "null"));
    let (status, _) = p.call("users/list", &[]).await;
    assert_eq!(status, 401);
    running.stop().await;
}

async fn sign_in_rotates_and_sign_out_ends(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "ana", &[Role::Admin]).await;
    let mut p = Portal::new(&bound);
    // A session id planted before sign-in is replaced at sign-in.
    let (_, _) = p
        .call(
            "session/sign-in",
            &[("name", "ana"), ("password", "wrong wrong wrong")],
        )
        .await;
    let before = p.cookie_value();
    p.sign_in("ana").await;
    assert_ne!(before, p.cookie_value());
    let stolen = p.cookie_value();
    let (status, _) = p.call("session/sign-out", &[]).await;
    assert!((200..400).contains(&status));
    // The old cookie is worth nothing after sign-out.
    let mut thief = Portal::new(&bound);
    thief.set_cookie(stolen);
    let (status, _) = thief.call("users/list", &[]).await;
    assert_eq!(status, 401);
    running.stop().await;
}

async fn failures_are_throttled_then_locked(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "ana", &[Role::Admin]).await;
    let mut p = Portal::new(&bound);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            p.call(
                "session/sign-in",
                &[("name", "ana"), ("password", "not it at all")],
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, vec![400, 400, 400]);
    // The fourth attempt comes too soon after the third failure.
    let (status, body) = p
        .call(
            "session/sign-in",
            &[("name", "ana"), ("password", common::PASSWORD)],
        )
        .await;
    assert_eq!(status, 429, "{body}");
    let failed = audit::count(
        &db,
        &audit::Filter {
            code: Some(Event::SignInFailed.code()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(failed, 3);
    running.stop().await;
}

async fn hostile_input_changes_nothing(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "ana", &[Role::Admin]).await;
    let mut p = Portal::new(&bound);
    p.sign_in("ana").await;
    for name in [
        "<script>alert(1)</script>",
        "x'; DROP TABLE users; --",
        "",
        &"a".repeat(65),
    ] {
        let (status, body) = p
            .call(
                "users/create",
                &[("name", name), ("password", common::PASSWORD)],
            )
            .await;
        assert_eq!(status, 400, "{name:?}: {body}");
    }
    let (status, _) = p
        .call(
            "users/create",
            &[("name", "short-pw"), ("password", "short")],
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = p
        .call(
            "users/create",
            &[
                ("name", "bad-role"),
                ("password", common::PASSWORD),
                ("roles[0]", "root"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(handover::store::users::count(&db).await.unwrap(), 1);
    // Oversized bodies are refused before they are read whole.
    let big = "x".repeat(200 * 1024);
    let (status, _) = p
        .call(
            "users/create",
            &[("name", &big), ("password", common::PASSWORD)],
        )
        .await;
    assert_eq!(status, 413);
    // Cross-site posts are refused.
    let res = reqwest::Client::new()
        .post(format!("{}/api/users/create", p.base))
        .header("Origin", "http://evil.example")
        .form(&[("name", "csrf"), ("password", common::PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    // Unknown routes are 404; health and metrics answer.
    assert_eq!(p.get("/no/such/page").await.0, 404);
    assert_eq!(p.get("/healthz").await.0, 200);
    let (_, metrics) = p.get("/metrics").await;
    assert!(
        metrics.contains("handover_http_requests_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("handover_sign_in_failures_total 0"),
        "{metrics}"
    );
    running.stop().await;
}

/// The server finds out who asks for a page before rendering it: a
/// visitor who is not signed in is sent to sign in, with the way back; a
/// signed-in one gets the page in its frame, whole.
async fn pages_know_who_is_in(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    create_user(&db, "ana", &[Role::Admin, Role::Viewer]).await;
    let mut p = Portal::new(&bound);
    for (page, back) in [
        ("/users", "/sign-in?next=/users"),
        ("/devices/IMEI%3A1", "/sign-in?next=/devices/IMEI%253A1"),
        ("/", "/sign-in?next=/"),
    ] {
        let (status, location, _) = p.get_located(page).await;
        assert_eq!((status, location.as_str()), (302, back), "{page}");
    }
    // Neither the sign-in page nor a static file needs anyone signed in.
    let (status, _, html) = p.get_located("/sign-in").await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign in"), "{html}");

    p.sign_in("ana").await;
    for (page, heading) in [("/users", ">Users<"), ("/devices", ">Devices<")] {
        let (status, _, html) = p.get_located(page).await;
        assert_eq!(status, 200, "{page}: {html}");
        assert!(html.contains(heading), "{page}: {html}");
        // The frame, with who is signed in, is in the page as sent.
        assert!(
            html.contains(">ana<") && html.contains("Sign out"),
            "{html}"
        );
        assert!(!html.contains("Loading…"), "{page}: {html}");
    }
    // Signed out again, the pages send the visitor back to sign in.
    let (status, _) = p.call("session/sign-out", &[]).await;
    assert!((200..400).contains(&status));
    let (status, location, _) = p.get_located("/devices").await;
    assert_eq!((status, location.as_str()), (302, "/sign-in?next=/devices"));
    running.stop().await;
}

on_both_databases! {
    pages => pages_know_who_is_in;
    roles => role_matrix;
    idle_expiry => sessions_expire_when_idle;
    session_rotation => sign_in_rotates_and_sign_out_ends;
    throttling => failures_are_throttled_then_locked;
    bad_input => hostile_input_changes_nothing;
}

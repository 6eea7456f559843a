//! The delegation request pages over real HTTP on loopback: the form's
//! options for a selection, the preview (B.5 account, B.6 ACLs, problems),
//! sending a batch, the approvals inbox with four eyes, rejection with a
//! reason, the delegation list, and the roles (issue #6, items 1 and 2).

mod common;

use common::{create_user, serve_config, start, Portal, TestDb};
use handover::audit::{self, Event};
use handover::peer::{DmUrl, Fingerprint, Peer, PeerUrl};
use handover::store::{peers, Db};
use handover_app::api::delegations::{
    Approvals, BulkDecision, DelegationPage, RequestOptions, RequestPreview, RequestSent,
};
use handover_app::api::Role;
use handover_dm::ServerId;

const PEER: &str = "carrier.example";
const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A tree as the first DM session leaves it: this server may replace the
/// root's and `./Vendor`'s ACLs (and `./Other`'s, from the root), not
/// `./Other/Deep`'s.
const TREE: &str = r#"[
    {"uri":".","kind":"interior","format":"node","type":"","value":"","acl":"Add=*&Get=*&Replace=corp.example"},
    {"uri":"./DevInfo","kind":"interior","format":"node","type":"","value":"","acl":""},
    {"uri":"./DevInfo/Man","kind":"leaf","format":"chr","type":"text/plain","value":"Acme","acl":""},
    {"uri":"./Vendor","kind":"interior","format":"node","type":"","value":"","acl":""},
    {"uri":"./Vendor/Apps","kind":"leaf","format":"chr","type":"text/plain","value":"on","acl":""},
    {"uri":"./Other","kind":"interior","format":"node","type":"","value":"","acl":"Get=*&Replace=other.example"},
    {"uri":"./Other/Deep","kind":"interior","format":"node","type":"","value":"","acl":""}
]"#;

fn devid(i: i64) -> String {
    format!("IMEI:35000000000{i:04}")
}

async fn insert_device(db: &Db, devid: &str, tree: &str) {
    sqlx::query(&db.sql(
        "INSERT INTO devices (devid, man, model, dmv, lang, auth_type, client_name, \
         client_secret_enc, client_nonce, server_name, server_secret_enc, server_nonce, \
         authority, state, created_at) \
         VALUES ($1, 'Acme', 'X1', '1.2', 'en-us', 'md5', 'client', 'enc', 'bm9uY2U=', \
         'corp.example', 'enc', 'bm9uY2U=', 'corp.example', 'active', 1)",
    ))
    .bind(devid)
    .execute(db.pool())
    .await
    .expect("insert device");
    common::insert_inventory(db, devid, "{}", tree).await;
}

async fn setup(t: &TestDb) -> (handover::serve::Bound, Db, handover::serve::Running) {
    let (bound, running) = start(serve_config(t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    for i in 1..=3 {
        insert_device(&db, &devid(i), TREE).await;
    }
    insert_device(&db, &devid(9), "[]").await;
    peers::add(
        &db,
        &Peer {
            server_id: ServerId::parse(PEER).unwrap(),
            // Nothing listens there: requests are recorded all the same.
            url: PeerUrl::parse("https://127.0.0.1:9").unwrap(),
            dm_url: DmUrl::parse("http://127.0.0.1:9/dm").unwrap(),
            fingerprint: Fingerprint::parse(FP).unwrap(),
            auto_accept: None,
            created_at: 0,
            updated_at: 0,
        },
    )
    .await
    .unwrap();
    create_user(&db, "olga", &[Role::Operator, Role::Viewer]).await;
    create_user(&db, "anna", &[Role::Approver, Role::Viewer]).await;
    create_user(&db, "both", &[Role::Operator, Role::Approver]).await;
    create_user(&db, "vera", &[Role::Viewer]).await;
    (bound, db, running)
}

async fn as_user(bound: &handover::serve::Bound, name: &str) -> Portal {
    let mut p = Portal::new(bound);
    p.sign_in(name).await;
    p
}

fn selection(devids: &[String]) -> String {
    serde_json::json!({ "devids": devids }).to_string()
}

/// The request form as a browser posts it.
fn draft(sel: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form = vec![
        ("draft[selection]".to_owned(), sel.to_owned()),
        ("draft[peer]".to_owned(), PEER.to_owned()),
        ("draft[kind]".to_owned(), "partial".to_owned()),
        ("draft[grants][4]".to_owned(), "./Vendor|Get".to_owned()),
        ("draft[grants][5]".to_owned(), "./Vendor|Replace".to_owned()),
        ("draft[term]".to_owned(), "permanent".to_owned()),
        ("draft[until]".to_owned(), String::new()),
        ("draft[tz_offset]".to_owned(), "0".to_owned()),
        ("draft[reason]".to_owned(), "Ticket 4711".to_owned()),
    ];
    for (k, v) in extra {
        let key = format!("draft[{k}]");
        form.retain(|(n, _)| *n != key);
        form.push((key, (*v).to_owned()));
    }
    form
}

async fn call<T: serde::de::DeserializeOwned>(
    p: &mut Portal,
    endpoint: &str,
    form: &[(String, String)],
) -> T {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, body) = p.call(endpoint, &form).await;
    assert_eq!(status, 200, "{endpoint}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{endpoint}: {e}: {body}"))
}

async fn refused(p: &mut Portal, endpoint: &str, form: &[(String, String)]) -> (u16, String) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    p.call(endpoint, &form).await
}

async fn request_preview_send(t: TestDb) {
    let (bound, _db, running) = setup(&t).await;
    let mut olga = as_user(&bound, "olga").await;
    let two = selection(&[devid(1), devid(2)]);

    // The form's options: the peer, and the first device's interior nodes,
    // each saying whether this server may delegate it.
    let o: RequestOptions = call(
        &mut olga,
        "delegations/options",
        &[("selection".into(), two.clone())],
    )
    .await;
    assert_eq!(o.devices, 2);
    assert_eq!(o.peers.len(), 1);
    assert_eq!(o.peers[0].server_id, PEER);
    assert_eq!(o.peers[0].fingerprint, FP);
    assert_eq!(o.tree_device.as_deref(), Some(devid(1).as_str()));
    let node = |u: &str| o.nodes.iter().find(|n| n.uri == u).unwrap();
    assert_eq!(node("./Vendor").refused, "");
    assert_eq!(
        node("./Vendor").effective_acl,
        "Add=*&Get=*&Replace=corp.example"
    );
    assert_eq!(node("./Other").refused, "");
    assert!(!node("./Other/Deep").refused.is_empty());
    assert!(
        o.nodes.iter().all(|n| n.uri != "./Vendor/Apps"),
        "leaves are not offered"
    );

    // All matching a search counts as many devices as match.
    let all = serde_json::json!({ "query": { "q": "IMEI:35" } }).to_string();
    let o: RequestOptions = call(
        &mut olga,
        "delegations/options",
        &[("selection".into(), all)],
    )
    .await;
    assert_eq!(o.devices, 4);

    // The preview: the account added for the peer, and the ACL of ./Vendor
    // from inherited to its own value naming the peer.
    let p: RequestPreview = call(&mut olga, "delegations/preview", &draft(&two, &[])).await;
    assert_eq!((p.devices, p.with_problems), (2, 0));
    assert_eq!(p.scope.len(), 1);
    assert_eq!(p.scope[0].rights, "Get,Replace");
    let d = &p.previews[0];
    assert_eq!(d.devid, devid(1));
    assert_eq!(d.account_node, "./DMAcc/carrier-example");
    assert_eq!(
        d.account_acl,
        "Get=carrier.example&Replace=carrier.example&Delete=corp.example+carrier.example"
    );
    assert_eq!(d.changes.len(), 1);
    let c = &d.changes[0];
    assert_eq!(c.uri, "./Vendor");
    assert_eq!(c.stored, "");
    assert_eq!(c.inherited, "Add=*&Get=*&Replace=corp.example");
    assert!(c.new.contains("carrier.example"), "{}", c.new);

    // Problems per device: a subtree this server does not manage, a tree
    // never read.
    let bad = selection(&[devid(1), devid(9)]);
    let p: RequestPreview = call(
        &mut olga,
        "delegations/preview",
        &draft(&bad, &[("grants][4", "./Other/Deep|Get")]),
    )
    .await;
    assert_eq!(p.with_problems, 2, "{p:?}");
    assert!(p.previews[0].problems[0].contains("./Other/Deep"));

    // A full delegation previews the root and what names this server.
    let p: RequestPreview = call(
        &mut olga,
        "delegations/preview",
        &draft(&selection(&[devid(9)]), &[("kind", "full")]),
    )
    .await;
    assert_eq!(p.with_problems, 0, "{p:?}");
    assert!(
        !p.previews[0].notes.is_empty(),
        "a tree never read is noted"
    );

    // Inline errors name their field.
    for (extra, field) in [
        (vec![("peer", "")], "peer"),
        (vec![("peer", "unknown.example")], "peer"),
        (
            vec![("kind", "partial"), ("grants][4", ""), ("grants][5", "")],
            "scope",
        ),
        (
            vec![("term", "temporary"), ("until", "2020-01-01")],
            "until",
        ),
        (vec![("term", "temporary"), ("until", "")], "until"),
        (vec![("term", "sometimes")], "term"),
    ] {
        let (status, body) = refused(&mut olga, "delegations/preview", &draft(&two, &extra)).await;
        assert_eq!(status, 400, "{extra:?}: {body}");
        assert!(
            body.contains(&format!(r#""field":"{field}""#)),
            "{extra:?}: {body}"
        );
    }
    let (status, body) = refused(
        &mut olga,
        "delegations/preview",
        &draft(&selection(&[]), &[]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("selection"), "{body}");

    // Sent: one batch, a delegation per device, waiting for a second person.
    let sent: RequestSent = call(
        &mut olga,
        "delegations/send",
        &draft(&two, &[("term", "temporary"), ("until", "2099-06-01")]),
    )
    .await;
    assert_eq!(sent.delegations.len(), 2);
    let page: DelegationPage = call(
        &mut olga,
        "delegations/list",
        &[("filter[batch]".into(), sent.batch_id.to_string())],
    )
    .await;
    assert_eq!((page.total, page.page, page.pages()), (2, 1, 1));
    let rows = page.rows;
    assert_eq!(rows.len(), 2);
    assert!(rows[0].id > rows[1].id, "newest first");
    for r in &rows {
        assert_eq!(r.state, "AwaitingRequestApproval");
        assert_eq!((r.role.as_str(), r.kind.as_str()), ("dms1", "partial"));
        assert_eq!(r.requested_by, "olga");
        assert_eq!(r.term, "temporary");
        assert_eq!(r.expires_at, Some(4_083_955_200_000));
        assert_eq!(r.scope[0].uri, "./Vendor");
        assert_eq!(r.reason, "Ticket 4711");
    }
    // A device already in a delegation is a problem of the next preview,
    // and the engine refuses a second request for it.
    let p: RequestPreview = call(&mut olga, "delegations/preview", &draft(&two, &[])).await;
    assert_eq!(p.with_problems, 2);
    assert!(p.previews[0].problems[0].contains("already in a delegation"));
    let (status, body) = refused(&mut olga, "delegations/send", &draft(&two, &[])).await;
    assert_eq!(status, 400, "{body}");

    // Filters of the list.
    let by = |k: &str, v: &str| vec![(format!("filter[{k}]"), v.to_owned())];
    let list = |page: DelegationPage| page.rows;
    let open = list(call(&mut olga, "delegations/list", &by("state", "open")).await);
    assert_eq!(open.len(), 2);
    let ended = list(call(&mut olga, "delegations/list", &by("state", "ended")).await);
    assert!(ended.is_empty());
    let one = list(call(&mut olga, "delegations/list", &by("device", &devid(2))).await);
    assert_eq!(one.len(), 1);
    let none = list(call(&mut olga, "delegations/list", &by("peer", "other.example")).await);
    assert!(none.is_empty());
    // Sorted by any column, both ways; a page past the end shows the last.
    let sorted = |dir: bool| {
        vec![
            ("filter[sort]".to_owned(), "Device".to_owned()),
            ("filter[desc]".to_owned(), dir.to_string()),
            ("filter[page]".to_owned(), "7".to_owned()),
        ]
    };
    let up: DelegationPage = call(&mut olga, "delegations/list", &sorted(false)).await;
    let down: DelegationPage = call(&mut olga, "delegations/list", &sorted(true)).await;
    let devids = |p: &DelegationPage| p.rows.iter().map(|r| r.devid.clone()).collect::<Vec<_>>();
    assert_eq!(devids(&up), vec![devid(1), devid(2)]);
    assert_eq!(devids(&down), vec![devid(2), devid(1)]);
    assert_eq!(up.page, 1);
    let (status, _) = refused(&mut olga, "delegations/list", &by("batch", "x")).await;
    assert_eq!(status, 400);
    running.stop().await;
}

async fn approvals_four_eyes(t: TestDb) {
    let (bound, db, running) = setup(&t).await;
    let mut olga = as_user(&bound, "olga").await;
    let sent: RequestSent = call(
        &mut olga,
        "delegations/send",
        &draft(&selection(&[devid(1), devid(2)]), &[]),
    )
    .await;
    let (first, second) = (sent.delegations[0], sent.delegations[1]);

    // Everyone with a role sees the inbox; only approvers decide.
    let mut vera = as_user(&bound, "vera").await;
    let a: Approvals = call(&mut vera, "approvals/list", &[]).await;
    assert_eq!(a.outgoing.len(), 2);
    assert!(a.incoming.is_empty());
    let n: i64 = call(&mut vera, "approvals/count", &[]).await;
    assert_eq!(n, 2);
    let id = |i: i64| vec![("id".to_owned(), i.to_string())];
    for who in [&mut vera, &mut olga] {
        let (status, _) = refused(who, "approvals/approve", &id(first)).await;
        assert_eq!(status, 403);
    }

    // The requester cannot approve their own request, even as an approver.
    let mut both = as_user(&bound, "both").await;
    let own: RequestSent = call(
        &mut both,
        "delegations/send",
        &draft(&selection(&[devid(3)]), &[]),
    )
    .await;
    let (status, body) = refused(&mut both, "approvals/approve", &id(own.delegations[0])).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = refused(
        &mut both,
        "approvals/reject",
        &[
            ("id".into(), own.delegations[0].to_string()),
            ("reason".into(), "no".into()),
        ],
    )
    .await;
    assert_eq!(status, 403);

    // Another approver approves one and rejects the other, with a reason.
    let mut anna = as_user(&bound, "anna").await;
    let (status, _) = anna
        .call("approvals/approve", &[("id", &first.to_string())])
        .await;
    assert_eq!(status, 200);
    let (status, body) = anna
        .call(
            "approvals/reject",
            &[("id", &second.to_string()), ("reason", "  ")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains(r#""field":"reason""#), "{body}");
    let (status, body) = anna
        .call(
            "approvals/reject",
            &[("id", &second.to_string()), ("reason", "wrong peer")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = anna.call("approvals/approve", &[("id", "999999")]).await;
    assert_eq!(status, 404);

    let a: Approvals = call(&mut anna, "approvals/list", &[]).await;
    assert_eq!(
        a.outgoing.len(),
        1,
        "only the request of `both` still waits"
    );
    assert_eq!(a.outgoing[0].requested_by, "both");
    let rows = call::<DelegationPage>(
        &mut anna,
        "delegations/list",
        &[("filter[batch]".into(), sent.batch_id.to_string())],
    )
    .await
    .rows;
    let row = |i: i64| rows.iter().find(|r| r.id == i).unwrap();
    assert_ne!(row(first).state, "AwaitingRequestApproval");
    assert_eq!(row(first).approved_by, "anna");
    assert_eq!(
        (row(second).state.as_str(), row(second).outcome.as_str()),
        ("Aborted", "aborted")
    );

    // Denials are audited: the roles, and four eyes.
    let denied = audit::list(
        &db,
        &audit::Filter {
            code: Some(Event::AccessDenied.code()),
            ..Default::default()
        },
        50,
    )
    .await
    .unwrap();
    let actors: Vec<&str> = denied.iter().map(|e| e.actor.as_str()).collect();
    assert!(
        actors.contains(&"vera") && actors.contains(&"olga"),
        "{actors:?}"
    );
    assert_eq!(actors.iter().filter(|a| **a == "both").count(), 2);
    running.stop().await;
}

/// "Approve all" decides each request as one by one would: never the
/// caller's own (refused and audited), unknown ones named, the rest approved.
async fn approve_all_keeps_four_eyes(t: TestDb) {
    let (bound, db, running) = setup(&t).await;
    let mut both = as_user(&bound, "both").await;
    let mut olga = as_user(&bound, "olga").await;
    let batch: RequestSent = call(
        &mut both,
        "delegations/send",
        &draft(&selection(&[devid(1), devid(2)]), &[]),
    )
    .await;
    let single: RequestSent = call(
        &mut olga,
        "delegations/send",
        &draft(&selection(&[devid(3)]), &[]),
    )
    .await;
    let ids = |ids: &[i64]| -> Vec<(String, String)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (format!("ids[{i}]"), id.to_string()))
            .collect()
    };
    let (b1, b2, o3) = (
        batch.delegations[0],
        batch.delegations[1],
        single.delegations[0],
    );

    let mut vera = as_user(&bound, "vera").await;
    let (status, _) = refused(&mut vera, "approvals/approve-all", &ids(&[o3])).await;
    assert_eq!(status, 403, "a viewer decides nothing");
    let (status, body) = refused(&mut both, "approvals/approve-all", &[]).await;
    assert_eq!(status, 400, "{body}");

    let d: BulkDecision = call(
        &mut both,
        "approvals/approve-all",
        &ids(&[b1, b2, o3, 999_999]),
    )
    .await;
    assert_eq!(d.approved, 1, "only olga's request is not their own");
    let refused_ids: Vec<i64> = d.refused.iter().map(|(id, _)| *id).collect();
    assert_eq!(refused_ids, vec![b1, b2, 999_999]);
    assert!(
        d.refused[0].1.contains("your own request"),
        "{:?}",
        d.refused
    );
    assert!(d.refused[2].1.contains("no such"), "{:?}", d.refused);

    let mut anna = as_user(&bound, "anna").await;
    let d: BulkDecision = call(&mut anna, "approvals/approve-all", &ids(&[b1, b2, o3])).await;
    assert_eq!(d.approved, 2);
    assert_eq!(
        d.refused.len(),
        1,
        "o3 was approved already: {:?}",
        d.refused
    );
    let a: Approvals = call(&mut anna, "approvals/list", &[]).await;
    assert!(a.outgoing.is_empty());
    let rows = call::<DelegationPage>(&mut anna, "delegations/list", &[])
        .await
        .rows;
    for r in &rows {
        assert_ne!(r.state, "AwaitingRequestApproval");
        let by = if r.id == o3 { "both" } else { "anna" };
        assert_eq!(r.approved_by, by);
    }
    let denied = audit::list(
        &db,
        &audit::Filter {
            code: Some(Event::AccessDenied.code()),
            actor: "both".into(),
            ..Default::default()
        },
        50,
    )
    .await
    .unwrap();
    assert_eq!(denied.len(), 2, "each own request refused is audited");
    running.stop().await;
}

async fn roles(t: TestDb) {
    let (bound, _db, running) = setup(&t).await;
    let sel = selection(&[devid(1)]);
    let mut anonymous = Portal::new(&bound);
    let (status, _) = refused(&mut anonymous, "delegations/list", &[]).await;
    assert_eq!(status, 401);
    for who in ["vera", "anna"] {
        let mut p = as_user(&bound, who).await;
        for endpoint in ["delegations/preview", "delegations/send"] {
            let (status, body) = refused(&mut p, endpoint, &draft(&sel, &[])).await;
            assert_eq!(status, 403, "{who} {endpoint}: {body}");
        }
        let (status, _) = refused(
            &mut p,
            "delegations/options",
            &[("selection".into(), sel.clone())],
        )
        .await;
        assert_eq!(status, 403);
        // Reading is for everyone with a role.
        let page: DelegationPage = call(&mut p, "delegations/list", &[]).await;
        assert!(page.rows.is_empty() && page.total == 0);
    }
    running.stop().await;
}

on_both_databases! {
    request => request_preview_send;
    approvals => approvals_four_eyes;
    approve_all => approve_all_keeps_four_eyes;
    roles_enforced => roles;
}

//! The Devices pages over real HTTP on loopback: search, filters, order,
//! paging and counts, one device with its tree, ACLs, sessions and jobs, 404
//! for unknown devices, and the viewer role (issue: devices portal).

mod common;

use common::{create_user, serve_config, start, Portal, TestDb};
use handover::audit::{self, Event};
use handover::dm::StatusCode;
use handover::store::Db;
use handover_app::api::devices::{DeviceDetail, DevicePage, COUNT_CAP};
use handover_app::api::Role;

const BASE_MS: i64 = 1_795_780_800_000;

/// What a test device looks like; everything else is derived from `i`.
struct Fixture {
    devid: String,
    man: &'static str,
    model: &'static str,
    authority: &'static str,
    state: &'static str,
    last_seen: Option<i64>,
    tree: String,
}

fn devid(i: i64) -> String {
    format!("IMEI:4901542032{i:04}")
}

fn fixture(i: i64) -> Fixture {
    let state = if i % 10 == 0 {
        "handed-over"
    } else if i % 4 == 0 {
        "provisioned"
    } else {
        "active"
    };
    Fixture {
        devid: devid(i),
        man: ["Acme", "Globex", "Initech"][(i % 3) as usize],
        model: ["X1", "X2"][(i % 2) as usize],
        authority: if i % 10 == 0 {
            "carrier.example"
        } else {
            "corp.example"
        },
        state,
        last_seen: (state != "provisioned").then_some(BASE_MS + i * 1000),
        tree: "[]".into(),
    }
}

/// Inserts a device straight into the schema, as the importer and the DM
/// endpoint would leave it.
async fn insert_device(db: &Db, f: &Fixture) {
    sqlx::query(&db.sql(
        "INSERT INTO devices (devid, man, model, dmv, lang, auth_type, client_name, \
         client_secret_enc, client_nonce, server_name, server_secret_enc, server_nonce, \
         authority, state, created_at, first_seen, last_seen) \
         VALUES ($1, $2, $3, '1.2', 'en-us', 'md5', 'client', 'enc', 'bm9uY2U=', 'corp.example', \
         'enc', 'bm9uY2U=', $4, $5, $6, $7, $8)",
    ))
    .bind(&f.devid)
    .bind(f.man)
    .bind(f.model)
    .bind(f.authority)
    .bind(f.state)
    .bind(BASE_MS - 86_400_000)
    .bind(f.last_seen.map(|l| l - 3_600_000))
    .bind(f.last_seen)
    .execute(db.pool())
    .await
    .expect("insert device");
    common::insert_inventory(
        db,
        &f.devid,
        r#"{"DevTyp":"smartphone","FwV":"4.2.1"}"#,
        &f.tree,
    )
    .await;
}

async fn seeded(t: &TestDb) -> (common::Portal, Db, handover::serve::Running) {
    let (bound, running) = start(serve_config(t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    for i in 0..120 {
        insert_device(&db, &fixture(i)).await;
    }
    let mut other = fixture(999);
    other.devid = "urn:uuid:2375-ab_c".into();
    insert_device(&db, &other).await;
    create_user(&db, "vera", &[Role::Viewer]).await;
    let mut p = Portal::new(&bound);
    p.sign_in("vera").await;
    (p, db, running)
}

async fn list(p: &mut Portal, form: &[(&str, &str)]) -> DevicePage {
    let form: Vec<(String, &str)> = form
        .iter()
        .map(|(k, v)| (format!("query[{k}]"), *v))
        .collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let (status, body) = p.call("devices/list", &form).await;
    assert_eq!(status, 200, "{form:?}: {body}");
    serde_json::from_str(&body).expect("a device page")
}

fn devids(page: &DevicePage) -> Vec<&str> {
    page.rows.iter().map(|r| r.devid.as_str()).collect()
}

async fn search_filter_sort_page(t: TestDb) {
    let (mut p, _db, running) = seeded(&t).await;

    // Everything, by DevId, 50 a page.
    let all = list(&mut p, &[]).await;
    assert_eq!(
        (all.total, all.more, all.page_size, all.rows.len()),
        (121, false, 50, 50)
    );
    assert_eq!(all.rows[0].devid, devid(0));
    assert!(devids(&all).windows(2).all(|w| w[0] < w[1]));
    let third = list(&mut p, &[("page", "3")]).await;
    assert_eq!(third.rows.len(), 21);
    assert_eq!(third.rows.last().unwrap().devid, "urn:uuid:2375-ab_c");
    let past = list(&mut p, &[("page", "4")]).await;
    assert!(past.rows.is_empty());
    assert_eq!(past.total, 121);

    // Substring anywhere, prefix included, case-insensitive; wildcards are literal.
    let one = list(&mut p, &[("q", "0042")]).await;
    assert_eq!(devids(&one), [devid(42)]);
    let prefix = list(&mut p, &[("q", "imei:4901542032004")]).await;
    assert_eq!(prefix.total, 10);
    assert_eq!(list(&mut p, &[("q", "2375")]).await.total, 1);
    assert_eq!(list(&mut p, &[("q", "  2375 ")]).await.total, 1);
    assert_eq!(list(&mut p, &[("q", "%")]).await.total, 0);
    assert_eq!(list(&mut p, &[("q", "b_c")]).await.total, 1);
    assert_eq!(list(&mut p, &[("q", "b%c")]).await.total, 0);

    // Filters combine.
    let acme = list(&mut p, &[("man", "Acme")]).await;
    assert_eq!(acme.total, 41);
    assert!(acme.rows.iter().all(|r| r.man == "Acme"));
    assert_eq!(
        list(&mut p, &[("man", "Acme"), ("model", "X1")])
            .await
            .total,
        20
    );
    assert_eq!(
        list(&mut p, &[("authority", "carrier.example")])
            .await
            .total,
        12
    );
    let handed = list(&mut p, &[("state", "handed-over"), ("q", "IMEI")]).await;
    assert_eq!(handed.total, 12);
    assert!(handed.rows.iter().all(|r| r.state == "handed-over"));
    assert_eq!(list(&mut p, &[("man", "Nobody")]).await.total, 0);

    // Orders, with DevId breaking ties; never-seen devices are the oldest.
    let recent = list(&mut p, &[("sort", "last_seen"), ("desc", "true")]).await;
    assert_eq!(recent.rows[0].devid, "urn:uuid:2375-ab_c");
    assert_eq!(recent.rows[1].devid, devid(119));
    let tail = list(
        &mut p,
        &[("sort", "last_seen"), ("desc", "true"), ("page", "3")],
    )
    .await;
    assert_eq!(tail.rows.last().unwrap().last_seen, None);
    let oldest = list(&mut p, &[("sort", "last_seen")]).await;
    assert_eq!(oldest.rows[0].last_seen, None);
    assert_eq!(oldest.rows[0].devid, devid(4));
    let by_man = list(&mut p, &[("sort", "man"), ("desc", "true")]).await;
    assert_eq!(by_man.rows[0].man, "Initech");
    assert_eq!(by_man.rows[0].devid, devid(119));
    let by_model = list(&mut p, &[("sort", "model"), ("q", "IMEI")]).await;
    assert_eq!(
        (
            by_model.rows[0].model.as_str(),
            by_model.rows[0].devid.clone()
        ),
        ("X1", devid(0))
    );

    // Pages do not overlap and cover everything.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let pg = list(&mut p, &[("sort", "man"), ("page", &page.to_string())]).await;
        seen.extend(pg.rows.into_iter().map(|r| r.devid));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 121);

    // Bad input is refused, not run.
    let long = "x".repeat(300);
    let (status, _) = p.call("devices/list", &[("query[q]", long.as_str())]).await;
    assert_eq!(status, 400);

    // Facets for the filters.
    let (status, body) = p.call("devices/facets", &[]).await;
    assert_eq!(status, 200, "{body}");
    let facets: handover_app::api::devices::DeviceFacets = serde_json::from_str(&body).unwrap();
    assert_eq!(facets.man, ["Acme", "Globex", "Initech"]);
    assert_eq!(facets.state, ["active", "handed-over", "provisioned"]);
    running.stop().await;
}

async fn counts_stop_at_the_cap(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    // One statement, so both databases fill quickly.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10050) \
         INSERT INTO devices (devid, auth_type, client_name, client_secret_enc, client_nonce, \
         server_name, server_secret_enc, server_nonce, created_at) \
         SELECT 'BULK-' || CAST(i AS TEXT), 'md5', 'c', 'e', 'n', 's', 'e', 'n', 0 FROM n",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let (bound, running) = start(serve_config(&t)).await;
    create_user(&db, "vera", &[Role::Viewer]).await;
    let mut p = Portal::new(&bound);
    p.sign_in("vera").await;
    let page = list(&mut p, &[]).await;
    assert_eq!((page.total, page.more), (COUNT_CAP, true));
    let some = list(&mut p, &[("q", "BULK-100")]).await;
    // BULK-100, BULK-1000..1009, BULK-10000..10050
    assert_eq!((some.total, some.more), (1 + 10 + 51, false));
    running.stop().await;
}

async fn one_device(t: TestDb) {
    let (mut p, db, running) = seeded(&t).await;
    let mut f = fixture(7);
    f.devid = "IMEI:49015420323751".into();
    f.tree = serde_json::json!([
        {"uri": "./DevInfo/Man", "kind": "leaf", "format": "chr", "type": "text/plain", "value": "Acme", "acl": ""},
        {"uri": ".", "kind": "interior", "format": "node", "acl": "Add=*&Get=*&Replace=corp.example"},
        {"uri": "./DevInfo", "kind": "interior", "format": "node", "acl": "Get=*"},
        {"uri": "./DevDetail", "kind": "interior", "format": "node", "acl": ""}
    ])
    .to_string();
    insert_device(&db, &f).await;
    for s in 0..25 {
        sqlx::query(&db.sql(
            "INSERT INTO session_history (devid, session_id, started_at, ended_at, outcome, messages, commands, source) \
             VALUES ($1, $2, $3, $4, 'completed', 3, 5, '127.0.0.1')",
        ))
        .bind(&f.devid)
        .bind(format!("{s:X}"))
        .bind(BASE_MS + s * 60_000)
        .bind(BASE_MS + s * 60_000 + 2000)
        .execute(db.pool())
        .await
        .unwrap();
    }
    for (status, state) in [
        (Some(200_i64), "succeeded"),
        (Some(425), "failed"),
        (None, "queued"),
    ] {
        sqlx::query(&db.sql(
            "INSERT INTO jobs (devid, command, state, status, requested_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'ana', $5, $5)",
        ))
        .bind(&f.devid)
        .bind(r#"{"Replace":{"uri":"./DevInfo","acl":"Get=*"}}"#)
        .bind(state)
        .bind(status)
        .bind(BASE_MS)
        .execute(db.pool())
        .await
        .unwrap();
    }

    let (status, body) = p
        .call("devices/get", &[("devid", "IMEI:49015420323751")])
        .await;
    assert_eq!(status, 200, "{body}");
    let d: DeviceDetail = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (d.man.as_str(), d.model.as_str(), d.state.as_str()),
        ("Globex", "X2", "active")
    );
    assert_eq!(
        d.devdetail[0],
        ("DevTyp".to_owned(), "smartphone".to_owned())
    );
    let uris: Vec<_> = d.tree.iter().map(|n| n.uri.as_str()).collect();
    assert_eq!(uris, [".", "./DevDetail", "./DevInfo", "./DevInfo/Man"]);
    let man = &d.tree[3];
    assert_eq!(
        (man.effective_acl.as_str(), man.inherited_from.as_deref()),
        ("Get=*", Some("./DevInfo"))
    );
    assert_eq!(d.tree[1].effective_acl, "Add=*&Get=*&Replace=corp.example");
    assert_eq!(d.tree[2].inherited_from, None);
    assert_eq!(d.sessions.len(), 20);
    assert_eq!(d.sessions[0].session_id, "18");
    assert_eq!(d.jobs.len(), 3);
    assert_eq!(d.jobs[0].state, "queued");
    assert_eq!(d.jobs[1].status, Some(425));
    assert_eq!(
        d.jobs[1].status_meaning,
        StatusCode::new(425).unwrap().meaning()
    );
    assert!(!body.contains("enc"), "no secret leaves the server: {body}");

    // Unknown devices are 404, as data and as a page.
    let (status, _) = p.call("devices/get", &[("devid", "IMEI:000")]).await;
    assert_eq!(status, 404);
    let (status, html) = p.get("/devices/IMEI%3A000").await;
    assert_eq!(status, 404);
    assert!(html.contains("There is no such device"), "{html}");

    // The pages render on the server.
    let (status, html) = p.get("/devices?man=Acme&sort=last_seen&dir=desc").await;
    assert_eq!(status, 200);
    assert!(html.contains(&devid(117)), "{html}");
    assert!(!html.contains("Globex</td>"));
    let (status, html) = p.get("/devices/IMEI%3A49015420323751").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Tree and ACLs") && html.contains("Replace=corp.example"),
        "{html}"
    );
    assert!(html.contains("inherited from ./DevInfo"), "{html}");
    running.stop().await;
}

async fn only_viewers_see_devices(t: TestDb) {
    let (bound, running) = start(serve_config(&t)).await;
    let db = Db::connect(&t.url).await.unwrap();
    insert_device(&db, &fixture(1)).await;
    for r in Role::ALL {
        create_user(&db, r.as_str(), &[r]).await;
    }
    let one = devid(1);
    let calls: [(&str, Vec<(&str, &str)>); 3] = [
        ("devices/list", vec![]),
        ("devices/facets", vec![]),
        ("devices/get", vec![("devid", one.as_str())]),
    ];
    let mut anonymous = Portal::new(&bound);
    for (endpoint, form) in &calls {
        assert_eq!(
            anonymous.call(endpoint, form).await.0,
            401,
            "anonymous {endpoint}"
        );
    }
    for r in Role::ALL {
        let mut p = Portal::new(&bound);
        p.sign_in(r.as_str()).await;
        for (endpoint, form) in &calls {
            let (status, body) = p.call(endpoint, form).await;
            let expected = if r == Role::Viewer { 200 } else { 403 };
            assert_eq!(status, expected, "{r} {endpoint}: {body}");
        }
    }
    let denials = audit::count(
        &db,
        &audit::Filter {
            code: Some(Event::AccessDenied.code()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(denials, 3 * (Role::ALL.len() as i64 - 1));
    running.stop().await;
}

on_both_databases! {
    search => search_filter_sort_page;
    count_cap => counts_stop_at_the_cap;
    detail => one_device;
    roles => only_viewers_see_devices;
}

//! Client Authority Delegation end to end (PROTOCOL Part B): two Handover
//! servers pinned to each other over real mutual TLS on loopback, the
//! device simulator managed by the first, the JSON API as the people's
//! hands. Each test runs on SQLite and on PostgreSQL.

mod common;

use common::world::*;
use common::Kind;
use handover::dm::{Acl, AclCmd, ServerId, TreeUri};
use handover::store::{devices, jobs};
use std::time::Duration;

// PROTOCOL B.3–B.6: a partial, temporary delegation initiated by DMS-1
// runs to Completed on both sides; the device carries DMS-2's account with
// the B.5 ACL and the granted rights on the scope; DMS-2 rotated the
// one-time secrets; revoking it restores the device byte for byte. Two
// devices make a batch, approved in one call; each completes on its own.
async fn partial_temporary_from_dms1(kind: Kind) {
    let Some(w) = world(kind, Opts::default()).await else {
        return;
    };
    let devid = w.devids[0].clone();
    let before = w.sim.tree(&devid).await.unwrap();
    let mut b = body(&devid, DMS2, false, true, false);
    b["devices"] = serde_json::json!([devid, w.devids[1]]);
    let pairs = request_and_approve(&w.dms1, &w.dms2, b).await;
    assert_eq!(pairs.len(), 2);
    let (id1, id2) = pairs[0];
    for (one, two) in &pairs {
        wait_state(&w.dms1, *one, "Completed", Duration::from_secs(60)).await;
        wait_state(&w.dms2, *two, "Completed", Duration::from_secs(10)).await;
    }
    // B.7: the ownership map dates DMS-2's management from completion.
    let row = handover::store::delegations::get(&w.dms1.db, id1)
        .await
        .unwrap()
        .unwrap();
    let done = row.completed_at.expect("the time it completed");
    assert!(done >= row.created_at && done <= handover::store::now_ms());

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
    let (s, v) = w.dms1.act(id1, "revoke", "done").await;
    assert_eq!(s, 200, "{v}");
    wait_state(&w.dms2, id2, "Revoked", Duration::from_secs(20)).await;
    wait_for(
        "the revert on the device",
        Duration::from_secs(60),
        async || w.dms1.reverted(id1).await,
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
    w.stop().await;
}

#[test]
fn partial_temporary_from_dms1_sqlite() {
    common::bounded(
        "partial_temporary_from_dms1_sqlite",
        4,
        partial_temporary_from_dms1(Kind::Sqlite),
    );
}

#[test]
fn partial_temporary_from_dms1_postgres() {
    common::bounded(
        "partial_temporary_from_dms1_postgres",
        4,
        partial_temporary_from_dms1(Kind::Postgres),
    );
}

/// One variant of issue #5: full or partial, permanent or temporary,
/// initiated by DMS-1 or by DMS-2.
#[derive(Debug, Clone, Copy)]
struct Variant {
    full: bool,
    temporary: bool,
    by_dms2: bool,
}

/// B.6 by hand: the ACL step 6 writes on a node DMS-1 manages, for
/// `full` — DMS-2 appended wherever DMS-1 is named (not beside `*`).
fn with_dms2_beside_dms1(value: &str) -> String {
    if value.is_empty() {
        return String::new(); // inherited: not a node DMS-1 names
    }
    value
        .split('&')
        .map(|entry| {
            let (cmd, ids) = entry.split_once('=').unwrap();
            let list: Vec<&str> = ids.split('+').collect();
            if list.contains(&DMS1) && !list.contains(&"*") && !list.contains(&DMS2) {
                format!("{cmd}={ids}+{DMS2}")
            } else {
                entry.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

// PROTOCOL B.2, B.5, B.6, B.7: each variant runs to Completed on both
// sides; the device holds exactly the expected accounts and ACLs; a full
// permanent delegation is a handover (DMS-1's account deleted and
// scrubbed, the device marked handed over on DMS-1, DMS-2 the only
// authority, no revoke); any other ends by Revoke (DMS-1) or Relinquish
// (DMS-2) with the device as it was before.
async fn variant(kind: Kind, v: Variant) {
    let Some(w) = world(kind, Opts::default()).await else {
        return;
    };
    let devid = w.devids[1].clone();
    let before = w.sim.tree(&devid).await.unwrap();
    let b = body(
        &devid,
        if v.by_dms2 { DMS1 } else { DMS2 },
        v.full,
        v.temporary,
        v.by_dms2,
    );
    let (id1, id2) = if v.by_dms2 {
        // DMS-2 asks for a device it does not manage; DMS-1 checks it.
        let (i2, i1) = request_and_approve(&w.dms2, &w.dms1, b).await[0];
        (i1, i2)
    } else {
        request_and_approve(&w.dms1, &w.dms2, b).await[0]
    };
    wait_state(&w.dms1, id1, "Completed", Duration::from_secs(60)).await;
    wait_state(&w.dms2, id2, "Completed", Duration::from_secs(10)).await;
    let row1 = w.dms1.delegation(id1).await["delegation"].clone();
    assert_eq!(row1["role"], "dms1", "{row1}");
    assert_eq!(row1["initiator"], !v.by_dms2, "{row1}");
    assert_eq!(row1["kind"], if v.full { "full" } else { "partial" });

    let dms1 = ServerId::parse(DMS1).unwrap();
    let handover = v.full && !v.temporary;
    if handover {
        wait_for(
            "DMS-1's own account deleted",
            Duration::from_secs(30),
            async || {
                devices::get(&w.dms1.db, &devid)
                    .await
                    .unwrap()
                    .unwrap()
                    .state
                    == "handed-over"
            },
        )
        .await;
    }
    let tree = w.sim.tree(&devid).await.unwrap();
    let d2_account = tree
        .dm_accounts()
        .into_iter()
        .find(|a| a.server_id.as_ref().is_some_and(|s| s.as_str() == DMS2))
        .expect("DMS-2's account on the device")
        .node;
    // The expected tree, node by node.
    let mut want = Vec::new();
    for (uri, value, _) in snapshot(&before) {
        let new = if uri.starts_with(&format!("./DMAcc/{}", DMS1.replace('.', "_"))) {
            value.clone() // B.6 full: never DMS-1's own account
        } else if v.full {
            with_dms2_beside_dms1(&value)
        } else if uri == "./Vendor/Corp/Apps" {
            // Inherited from ./Vendor/Corp, copied down with Get and Replace.
            format!("Add={DMS1}&Delete={DMS1}&Exec={DMS1}&Get={DMS1}+{DMS2}&Replace={DMS1}+{DMS2}")
        } else {
            value.clone()
        };
        want.push((uri, new));
    }
    let mut got: Vec<(String, String)> = snapshot(&tree)
        .into_iter()
        .filter(|(u, _, _)| !u.starts_with(d2_account.as_str()))
        .map(|(u, a, _)| (u, a))
        .collect();
    let d2_acl = acl(&tree, d2_account.as_str());
    if handover {
        // A.7: deleting DMS-1's account scrubbed it from every ACL.
        let want: Vec<(String, String)> = want
            .into_iter()
            .filter(|(u, _)| !u.starts_with(&format!("./DMAcc/{}", DMS1.replace('.', "_"))))
            .map(|(u, a)| {
                let mut acl = Acl::parse(&a).unwrap();
                acl.scrub(&dms1);
                (u, acl.to_string())
            })
            .collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want);
        assert_eq!(account_servers(&tree), vec![DMS2.to_owned()]);
        assert_eq!(d2_acl, format!("Get={DMS2}&Replace={DMS2}&Delete={DMS2}"));
        assert!(tree
            .list(&TreeUri::root())
            .iter()
            .all(|n| !n.acl.to_string().contains(DMS1)));
        let d1 = devices::get(&w.dms1.db, &devid).await.unwrap().unwrap();
        assert_eq!(
            (d1.state.as_str(), d1.authority.as_str()),
            ("handed-over", DMS2)
        );
        let d2 = devices::get(&w.dms2.db, &devid).await.unwrap().unwrap();
        assert_eq!(d2.authority, DMS2);
        // B.7: a handover can be neither revoked nor relinquished.
        assert_eq!(w.dms1.act(id1, "revoke", "no").await.0, 403);
        assert_eq!(w.dms2.act(id2, "relinquish", "no").await.0, 403);
        w.stop().await;
        return;
    }
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        account_servers(&tree),
        vec![DMS1.to_owned(), DMS2.to_owned()]
    );
    assert_eq!(
        d2_acl,
        format!("Get={DMS2}&Replace={DMS2}&Delete={DMS1}+{DMS2}")
    );

    // B.7: the delegation ends and the device is as before.
    if v.by_dms2 {
        let (s, b) = w.dms2.act(id2, "relinquish", "done").await;
        assert_eq!(s, 200, "{b}");
        wait_state(&w.dms1, id1, "Relinquished", Duration::from_secs(20)).await;
    } else {
        let (s, b) = w.dms1.act(id1, "revoke", "done").await;
        assert_eq!(s, 200, "{b}");
        wait_state(&w.dms2, id2, "Revoked", Duration::from_secs(20)).await;
    }
    wait_for(
        "the revert on the device",
        Duration::from_secs(60),
        async || w.dms1.reverted(id1).await,
    )
    .await;
    let after = w.sim.tree(&devid).await.unwrap();
    assert_eq!(snapshot(&after), snapshot(&before));
    assert_eq!(account_servers(&after), vec![DMS1.to_owned()]);
    // DMS-2 forgot the device's credentials (B.6).
    let d2 = devices::get(&w.dms2.db, &devid).await.unwrap();
    assert!(
        d2.as_ref().is_none_or(|d| d.state == "released"),
        "{:?}",
        d2.map(|d| d.state)
    );
    w.stop().await;
}

macro_rules! variants {
    ($($name:ident: $full:expr, $temporary:expr, $by_dms2:expr;)*) => {$(
        mod $name {
            use super::*;
            const V: Variant = Variant { full: $full, temporary: $temporary, by_dms2: $by_dms2 };
            #[test]
            fn sqlite() {
                common::bounded(concat!(module_path!(), "::sqlite"), 2, variant(Kind::Sqlite, V));
            }
            #[test]
            fn postgres() {
                common::bounded(concat!(module_path!(), "::postgres"), 2, variant(Kind::Postgres, V));
            }
        }
    )*};
}

variants! {
    full_permanent_from_dms1: true, false, false;
    full_permanent_from_dms2: true, false, true;
    full_temporary_from_dms1: true, true, false;
    full_temporary_from_dms2: true, true, true;
    partial_permanent_from_dms1: false, false, false;
    partial_permanent_from_dms2: false, false, true;
    partial_temporary_from_dms2: false, true, true;
}

//! Plans applied to a real DM tree (handover-dm), the way a client would
//! run them (B.5, B.6).

use super::*;
use crate::terms::Subtree;
use handover_dm::{DevId, DeviceInfo, Timestamp};

const NOW: Timestamp = Timestamp(1_800_000_000);

fn sid(s: &str) -> ServerId {
    ServerId::parse(s).unwrap()
}

fn uri(s: &str) -> TreeUri {
    TreeUri::parse(s).unwrap()
}

fn dms1() -> ServerId {
    sid("carrier.example")
}

fn dms2() -> ServerId {
    sid("corp.example")
}

/// A device managed by DMS-1: its own DMAcc, vendor subtrees it manages,
/// one it may read only.
fn device_tree() -> Tree {
    let info = DeviceInfo {
        dev_id: DevId::parse("IMEI:490154203237518").unwrap(),
        man: "Acme".into(),
        model: "X1".into(),
        lang: "en".into(),
        dev_typ: "phone".into(),
        oem: "Acme".into(),
        fw_v: "1".into(),
        sw_v: "1".into(),
        hw_v: "1".into(),
    };
    let mut t = Tree::standard(&info, NOW);
    let one = dms1();
    let c = one.as_str();
    t.put_local(&uri("./DMAcc/carrier/ServerID"), NewNode::text(c), NOW);
    t.set_acl_local(
        &uri("./DMAcc/carrier"),
        Acl::parse(&format!("Add={c}&Delete={c}&Get={c}&Replace={c}")).unwrap(),
    );
    t.put_local(&uri("./Vendor/Corp/Apps/Mail"), NewNode::text("on"), NOW);
    t.put_local(
        &uri("./Vendor/Carrier/Network/APN"),
        NewNode::text("internet"),
        NOW,
    );
    t.set_acl_local(
        &uri("./Vendor"),
        Acl::parse(&format!("Add={c}&Get=*&Replace={c}")).unwrap(),
    );
    t.set_acl_local(
        &uri("./Vendor/Carrier"),
        Acl::parse(&format!("Delete={c}&Get={c}&Replace={c}")).unwrap(),
    );
    t.put_local(&uri("./ReadOnly/Thing"), NewNode::text("x"), NOW);
    t.set_acl_local(&uri("./ReadOnly"), Acl::parse("Get=*").unwrap());
    t
}

fn account(tree: &Tree) -> BootstrapAccount {
    BootstrapAccount {
        node: account_node_for(tree, &dms2()),
        dms1: dms1(),
        dms2: dms2(),
        dm_url: "http://127.0.0.1:8081/dm".into(),
        auth_type: AuthType::Md5,
        client: OneTimeCredential {
            name: "IMEI:490154203237518".into(),
            secret: Secret::new("one-time-client"),
            nonce: Nonce::from_chr("abcdefghijklmnopqrstuvwx"),
        },
        server: OneTimeCredential {
            name: "corp.example".into(),
            secret: Secret::new("one-time-server"),
            nonce: Nonce::from_chr("ABCDEFGHIJKLMNOPQRSTUVWX"),
        },
    }
}

fn acl_of(t: &Tree, u: &str) -> String {
    t.node(&uri(u)).unwrap().acl.to_string()
}

#[test]
fn account_node_is_the_server_id_made_safe_and_free() {
    let mut t = device_tree();
    assert_eq!(
        account_node_for(&t, &dms2()).as_str(),
        "./DMAcc/corp-example"
    );
    t.put_local(&uri("./DMAcc/corp-example"), NewNode::interior(), NOW);
    assert_eq!(
        account_node_for(&t, &dms2()).as_str(),
        "./DMAcc/corp-example-2"
    );
}

#[test]
fn b5_bootstrap_atomic_runs_on_the_client_and_leaves_dms1_only_delete() {
    let mut t = device_tree();
    let acc = account(&t);
    let r = t.atomic(&dms1(), &acc.ops(), NOW);
    assert_eq!(r.status.code(), 200, "{r:?}");
    assert!(r.results.iter().all(|o| o.status.code() == 200), "{r:?}");
    // Exactly as B.5 writes it.
    let want = "Get=corp.example&Replace=corp.example&Delete=carrier.example+corp.example";
    for n in t.list(&acc.node) {
        assert_eq!(n.acl.to_string(), want, "{}", n.uri);
    }
    // The client sees the account DMS-2 will use, with CLCRED and SRVCRED.
    let a = t
        .dm_accounts()
        .into_iter()
        .find(|a| a.server_id == Some(dms2()))
        .unwrap();
    let level = |l: &str| {
        a.app_auth
            .iter()
            .find(|x| x.level.as_deref() == Some(l))
            .unwrap()
    };
    assert_eq!(level("CLCRED").node.name(), "CLCRED");
    assert_eq!(level("SRVCRED").name.as_deref(), Some("corp.example"));
    assert_eq!(
        level("SRVCRED").data.as_ref().unwrap().as_bytes(),
        b"ABCDEFGHIJKLMNOPQRSTUVWX"
    );
    // DMS-1 can no longer change the account, only delete it.
    assert!(!t.may_replace_acl(&acc.node, &dms1()));
    assert!(t.allows(&acc.node, AclCmd::Delete, &dms1()));
}

#[test]
fn b5_account_acls_are_set_deepest_first_and_the_account_last() {
    let t = device_tree();
    let acc = account(&t);
    let ops = acc.ops();
    let acl_targets: Vec<&TreeUri> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Replace {
                target: Target::Prop(u, Property::Acl),
                ..
            } => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(acl_targets.last().unwrap(), &&acc.node);
    assert!(acl_targets.windows(2).all(|w| w[0].depth() >= w[1].depth()));
    // No secret in the debug form of the plan.
    assert!(!format!("{acc:?}").contains("one-time"));
}

#[test]
fn b5_rotation_applies_for_dms2_on_the_bootstrapped_account() {
    let mut t = device_tree();
    let acc = account(&t);
    t.atomic(&dms1(), &acc.ops(), NOW);
    let r = Rotation {
        client_secret: Secret::new("new-client"),
        server_secret: Secret::new("new-server"),
        client_nonce: Nonce::from_chr("zyxwvutsrqponmlkjihgfedc"),
    };
    let out = t.atomic(&dms2(), &rotation_ops(&acc.node, &r), NOW);
    assert_eq!(out.status.code(), 200, "{out:?}");
    let a = t
        .dm_accounts()
        .into_iter()
        .find(|a| a.server_id == Some(dms2()))
        .unwrap();
    let cl = a
        .app_auth
        .iter()
        .find(|x| x.level.as_deref() == Some("CLCRED"))
        .unwrap();
    assert_eq!(cl.secret.as_ref().unwrap().expose(), "new-client");
    assert_eq!(
        cl.data.as_ref().unwrap().as_bytes(),
        b"zyxwvutsrqponmlkjihgfedc"
    );
}

fn partial(uri: &str, rights: &str) -> Subtree {
    Subtree {
        uri: uri.into(),
        rights: Rights::parse(rights).unwrap(),
    }
}

#[test]
fn b6_partial_copies_the_inherited_acl_down_and_appends_dms2() {
    let t = device_tree();
    let scope = Scope::Partial(vec![partial(
        "./Vendor/Corp/Apps",
        "Add,Delete,Get,Replace",
    )]);
    let changes = acl_update(&t, &dms1(), &dms2(), &scope, None).unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert!(c.stored.is_empty(), "inherited before");
    assert_eq!(
        c.inherited.to_string(),
        "Add=carrier.example&Get=*&Replace=carrier.example"
    );
    // Get holds `*` and stays; Delete had no entry and is granted.
    assert_eq!(
        c.new.to_string(),
        "Add=carrier.example+corp.example&Delete=corp.example&Get=*&Replace=carrier.example+corp.example"
    );
    assert_eq!(
        complete_acls(&changes),
        vec![("./Vendor/Corp/Apps".to_owned(), c.new.to_string())]
    );
}

#[test]
fn b6_update_then_revert_restores_the_tree_exactly() {
    let mut t = device_tree();
    let before = t.clone();
    let acc = account(&t);
    t.atomic(&dms1(), &acc.ops(), NOW);
    let scope = Scope::Partial(vec![
        partial("./Vendor/Corp/Apps", "Get,Replace"),
        partial("./Vendor/Carrier", "Get"),
    ]);
    let changes = acl_update(&t, &dms1(), &dms2(), &scope, Some(&acc.node)).unwrap();
    let ops: Vec<Op> = changes.iter().map(AclChange::apply_op).collect();
    assert_eq!(t.atomic(&dms1(), &ops, NOW).status.code(), 200);
    assert!(t.allows(&uri("./Vendor/Corp/Apps/Mail"), AclCmd::Replace, &dms2()));
    assert!(!t.allows(&uri("./Vendor/Carrier/Network"), AclCmd::Replace, &dms2()));

    let revert = revert_ops(&changes, Some(&acc.node));
    let r = t.sequence(&dms1(), &revert, NOW);
    assert_eq!(r.status.code(), 200, "{r:?}");
    for n in before.list(&TreeUri::root()) {
        assert_eq!(acl_of(&t, n.uri.as_str()), n.acl.to_string(), "{}", n.uri);
    }
    assert!(t.node(&acc.node).is_none());
    assert_eq!(t.len(), before.len());
}

#[test]
fn b6_full_covers_what_dms1_manages_except_the_accounts() {
    let mut t = device_tree();
    let acc = account(&t);
    t.atomic(&dms1(), &acc.ops(), NOW);
    let changes = acl_update(&t, &dms1(), &dms2(), &Scope::Full, Some(&acc.node)).unwrap();
    let uris: Vec<&str> = changes.iter().map(|c| c.uri.as_str()).collect();
    assert_eq!(uris, vec!["./Vendor", "./Vendor/Carrier"]);
    // DMS-2 gets DMS-1's rights there: Add and Replace, not Get=* again.
    assert_eq!(
        changes[0].new.to_string(),
        "Add=carrier.example+corp.example&Get=*&Replace=carrier.example+corp.example"
    );
    assert_eq!(
        changes[1].new.to_string(),
        "Delete=carrier.example+corp.example&Get=carrier.example+corp.example&Replace=carrier.example+corp.example"
    );
}

#[test]
fn b6_full_includes_the_root_when_dms1_may_replace_it() {
    let mut t = device_tree();
    t.set_acl_local(
        &TreeUri::root(),
        Acl::parse("Add=*&Get=*&Replace=carrier.example").unwrap(),
    );
    let changes = acl_update(&t, &dms1(), &dms2(), &Scope::Full, None).unwrap();
    assert_eq!(changes[0].uri.as_str(), ".");
    assert_eq!(
        changes[0].new.to_string(),
        "Add=*&Delete=corp.example&Exec=corp.example&Get=*&Replace=carrier.example+corp.example"
    );
}

#[test]
fn b6_full_with_nothing_managed_is_refused() {
    let info_tree = Tree::default();
    assert_eq!(
        acl_update(&info_tree, &dms1(), &dms2(), &Scope::Full, None),
        Err(PlanError::NothingToChange)
    );
}

#[test]
fn b6_a_value_already_in_place_is_neither_written_nor_listed() {
    let mut t = device_tree();
    t.set_acl_local(
        &uri("./Vendor/Corp"),
        Acl::parse("Add=carrier.example&Get=*&Replace=carrier.example+corp.example").unwrap(),
    );
    let scope = Scope::Partial(vec![partial("./Vendor/Corp", "Get,Replace")]);
    assert_eq!(
        acl_update(&t, &dms1(), &dms2(), &scope, None).unwrap(),
        vec![]
    );
}

#[test]
fn b4_scopes_dms1_may_not_change_are_refused() {
    let t = device_tree();
    let check = |u: &str| check_scope(&t, &dms1(), &Scope::Partial(vec![partial(u, "Get")]));
    assert_eq!(
        check("./ReadOnly"),
        Err(PlanError::NotManaged("./ReadOnly".into()))
    );
    assert_eq!(
        check("./Nowhere"),
        Err(PlanError::UnknownNode("./Nowhere".into()))
    );
    assert_eq!(
        check("./DMAcc/carrier"),
        Err(PlanError::OwnAccount("./DMAcc/carrier".into()))
    );
    assert_eq!(check("./Vendor/Corp/Apps"), Ok(()));
    // `full` is judged at step 6, whatever the tree.
    assert_eq!(check_scope(&Tree::default(), &dms1(), &Scope::Full), Ok(()));
}

#[test]
fn b6_missing_atomic_status_is_the_highest_command_status() {
    assert_eq!(
        judge_atomic(Some(200), &[Some(200), Some(200)]),
        AtomicVerdict::Succeeded
    );
    assert_eq!(
        judge_atomic(None, &[Some(200), Some(200)]),
        AtomicVerdict::Succeeded
    );
    assert_eq!(
        judge_atomic(None, &[Some(200), Some(425)]),
        AtomicVerdict::Failed {
            status: 425,
            restore: vec![0]
        }
    );
    // A command without a Status counts as 500 and is restored too.
    assert_eq!(
        judge_atomic(None, &[Some(200), None]),
        AtomicVerdict::Failed {
            status: 500,
            restore: vec![0, 1]
        }
    );
    // Rolled back (216) needs nothing.
    assert_eq!(
        judge_atomic(Some(507), &[Some(216), Some(425)]),
        AtomicVerdict::Failed {
            status: 507,
            restore: vec![]
        }
    );
}

#[test]
fn b6_scrub_removes_dms2_where_a_client_did_not() {
    let mut t = device_tree();
    t.set_acl_local(
        &uri("./Vendor/Corp/Apps"),
        Acl::parse("Get=corp.example&Replace=carrier.example+corp.example").unwrap(),
    );
    let ops = scrub_ops(&t, &dms1(), &dms2(), &[uri("./Vendor/Corp")]);
    assert_eq!(t.atomic(&dms1(), &ops, NOW).status.code(), 200);
    assert_eq!(acl_of(&t, "./Vendor/Corp/Apps"), "Replace=carrier.example");
}

#[test]
fn b6_reads_the_changed_nodes_and_their_ancestors_root_first() {
    let t = device_tree();
    let scope = Scope::Partial(vec![
        partial("./Vendor/Corp/Apps", "Get,Replace"),
        partial("./Vendor/Carrier", "Get"),
    ]);
    let reads = acl_reads(&t, &dms1(), &scope, None).unwrap();
    let targets: Vec<String> = reads
        .iter()
        .map(|op| match op {
            Op::Get(Target::Prop(u, Property::Acl)) => u.as_str().to_owned(),
            other => panic!("not an ACL read: {other:?}"),
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            ".",
            "./Vendor",
            "./Vendor/Carrier",
            "./Vendor/Corp",
            "./Vendor/Corp/Apps"
        ]
    );
    // A scope the tree does not hold is refused before anything is read.
    let unknown = Scope::Partial(vec![partial("./Nowhere", "Get")]);
    assert!(acl_reads(&t, &dms1(), &unknown, None).is_err());
}

/// The ACLs read are enough: a cache whose ACLs are stale, brought up to
/// date with only what the reads return, plans the same step 6 as the
/// device's own tree (B.6, A.7 inheritance and the right to replace). For
/// `full`, which nodes DMS-1 manages is judged from the tree it last read
/// (B.6); their values are read again.
#[test]
fn b6_the_reads_suffice_to_plan_step_6() {
    let cases = [
        (
            Scope::Partial(vec![
                partial("./Vendor/Corp/Apps", "Add,Get,Replace"),
                partial("./Vendor/Carrier", "Get"),
            ]),
            "./Vendor/Corp",
            "Get=*&Replace=carrier.example",
        ),
        (
            Scope::Full,
            "./Vendor",
            "Add=carrier.example&Exec=carrier.example&Get=*&Replace=carrier.example",
        ),
    ];
    for (scope, changed, value) in cases {
        let mut device = device_tree();
        let acc = account(&device);
        device.atomic(&dms1(), &acc.ops(), NOW);
        // The cache was read before DMS-1 changed ACLs on the device.
        let mut cache = device.clone();
        device.set_acl_local(&uri(changed), Acl::parse(value).unwrap());
        device.set_acl_local(
            &TreeUri::root(),
            Acl::parse("Add=*&Get=*&Replace=carrier.example").unwrap(),
        );
        let reads = acl_reads(&cache, &dms1(), &scope, Some(&acc.node)).unwrap();
        let got = device.sequence(&dms1(), &reads, NOW);
        assert_eq!(got.status.code(), 200);
        for (op, r) in reads.iter().zip(&got.results) {
            let (Op::Get(Target::Prop(u, _)), Some(handover_dm::tree::Output::Item { data, .. })) =
                (op, &r.output)
            else {
                panic!("{op:?} gave {r:?}");
            };
            let acl = Acl::parse(std::str::from_utf8(data).unwrap()).unwrap();
            cache.set_acl_local(u, acl);
        }
        let planned = acl_update(&cache, &dms1(), &dms2(), &scope, Some(&acc.node));
        assert!(planned.as_ref().is_ok_and(|c| !c.is_empty()), "{scope:?}");
        assert_eq!(
            planned,
            acl_update(&device, &dms1(), &dms2(), &scope, Some(&acc.node)),
            "{scope:?}"
        );
    }
}

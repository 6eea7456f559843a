//! The device side of a delegation: tree operations of the plans
//! (handover-delegation) as queued jobs, and the device tree as this
//! server last read it, rebuilt for planning.

use crate::device::tree_cache::CachedNode;
use crate::device::vault::Vault;
use crate::store::jobs::{JobCommand, Value};
use crate::store::Conn;
use crate::store::{devices, now_ms, Db};
use base64::Engine;
use handover_delegation::wire::BootstrapCredentials;
use handover_dm::{Acl, NewNode, Op, Secret, Target, Timestamp, Tree, TreeUri};

fn target_text(t: &Target) -> String {
    t.to_string()
}

/// Text stays text (`data`); anything else travels as `data_b64`.
fn value(bytes: &[u8], format: Option<String>, mime: Option<String>) -> Value {
    let (data, data_b64) = match std::str::from_utf8(bytes) {
        Ok(t) => (Some(t.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
    Value {
        data,
        data_b64,
        format,
        mime,
    }
}

/// One tree operation as a queued command.
pub fn command(op: &Op) -> JobCommand {
    match op {
        Op::Get(t) => JobCommand::Get {
            target: target_text(t),
            walk: false,
        },
        Op::Add(t, NewNode::Interior { mime }) => JobCommand::Add {
            target: target_text(t),
            value: Value {
                format: Some("node".into()),
                mime: mime.clone(),
                ..Value::default()
            },
        },
        Op::Add(
            t,
            NewNode::Leaf {
                value: v,
                format,
                mime,
            },
        ) => JobCommand::Add {
            target: target_text(t),
            value: value(v, Some(format.clone()), mime.clone()),
        },
        Op::Replace {
            target,
            data,
            format,
            mime,
        } => JobCommand::Replace {
            target: target_text(target),
            value: value(data, format.clone(), mime.clone()),
        },
        Op::Delete(t) => JobCommand::Delete {
            target: target_text(t),
        },
        Op::Exec(t, data) => JobCommand::Exec {
            target: target_text(t),
            value: data
                .as_deref()
                .map(|d| value(d, None, None))
                .unwrap_or_default(),
        },
        Op::Copy { source, target } => JobCommand::Copy {
            source: target_text(source),
            target: target_text(target),
        },
    }
}

/// Operations that must all apply or none (A.3 Atomic).
pub fn atomic(ops: &[Op]) -> JobCommand {
    JobCommand::Atomic {
        commands: ops.iter().map(command).collect(),
    }
}

/// Operations run in order, stopping at the first failure (A.3 Sequence).
pub fn sequence(ops: &[Op]) -> JobCommand {
    JobCommand::Sequence {
        commands: ops.iter().map(command).collect(),
    }
}

/// The device tree as last read (`devices.tree`), with values and ACLs,
/// as a handover-dm tree to plan on. Nodes whose URI or ACL does not parse
/// are left out; the root keeps the A.7 default when its ACL was not read.
pub fn tree_from_cache(json: &str) -> Tree {
    let nodes: Vec<CachedNode> = serde_json::from_str(json).unwrap_or_default();
    let mut tree = Tree::default();
    let now = Timestamp(0);
    for n in &nodes {
        let Ok(u) = TreeUri::parse(&n.uri) else {
            continue;
        };
        if !u.is_root() {
            let node = if n.kind == "interior" {
                NewNode::interior()
            } else {
                NewNode::Leaf {
                    value: n.value.as_bytes().to_vec(),
                    format: if n.format.is_empty() {
                        "chr".into()
                    } else {
                        n.format.clone()
                    },
                    mime: (!n.mime.is_empty()).then(|| n.mime.clone()),
                }
            };
            tree.put_local(&u, node, now);
        }
    }
    // ACLs after the nodes: an interior node read after its children would
    // otherwise lose its ACL when it is (re)created.
    for n in &nodes {
        if let (Ok(u), Ok(acl)) = (TreeUri::parse(&n.uri), Acl::parse(&n.acl)) {
            if !acl.is_empty() {
                tree.set_acl_local(&u, acl);
            }
        }
    }
    tree
}

/// DMS-2 (B.5 step 3): the device's account with the one-time values of
/// the grant, so that the DM endpoint accepts the client's bootstrap
/// session and package 0 is signed with the one-time server secret. A
/// device this server knew before (an earlier delegation) is taken over.
#[allow(clippy::too_many_arguments)]
pub async fn provision_bootstrap(
    db: &Db,
    tx: &mut Conn,
    vault: &Vault,
    devid: &str,
    grant: &BootstrapCredentials,
    authority: &str,
) -> Result<(), sqlx::Error> {
    let auth = devices::auth_text(grant.auth_type);
    let cs = vault.seal(
        devid,
        "client_secret",
        &Secret::new(grant.client_secret.expose()),
    );
    let ss = vault.seal(
        devid,
        "server_secret",
        &Secret::new(grant.server_secret.expose()),
    );
    let push = grant.push_address.clone().unwrap_or_default();
    let updated = sqlx::query(&db.sql(
        "UPDATE devices SET auth_type = $2, client_name = $3, client_secret_enc = $4, \
         client_nonce = $5, server_name = $6, server_secret_enc = $7, server_nonce = $8, \
         push_address = $9, authority = $10, state = 'provisioned' WHERE devid = $1",
    ))
    .bind(devid)
    .bind(auth)
    .bind(&grant.client_name)
    .bind(&cs)
    .bind(grant.client_nonce.expose())
    .bind(&grant.server_name)
    .bind(&ss)
    .bind(grant.server_nonce.expose())
    .bind(&push)
    .bind(authority)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(&db.sql(
            "INSERT INTO devices (devid, auth_type, client_name, client_secret_enc, client_nonce, \
             server_name, server_secret_enc, server_nonce, push_address, authority, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        ))
        .bind(devid)
        .bind(auth)
        .bind(&grant.client_name)
        .bind(&cs)
        .bind(grant.client_nonce.expose())
        .bind(&grant.server_name)
        .bind(&ss)
        .bind(grant.server_nonce.expose())
        .bind(&push)
        .bind(authority)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// DMS-2 forgets the client's credentials (B.6 revert, B.7): the secrets
/// are overwritten with fresh random ones nobody knows, queued jobs are
/// dropped, and the device is marked `released`. The row stays for the
/// history pages.
pub async fn forget_device(
    db: &Db,
    tx: &mut Conn,
    vault: &Vault,
    devid: &str,
) -> Result<(), sqlx::Error> {
    let junk = || {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rngs::OsRng.gen();
        Secret::new(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    sqlx::query(&db.sql(
        "UPDATE devices SET client_secret_enc = $2, server_secret_enc = $3, push_address = '', \
         state = 'released' WHERE devid = $1",
    ))
    .bind(devid)
    .bind(vault.seal(devid, "client_secret", &junk()))
    .bind(vault.seal(devid, "server_secret", &junk()))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&db.sql(
        "UPDATE jobs SET state = 'failed', error = 'the delegation ended', updated_at = $2 \
         WHERE devid = $1 AND state = 'queued'",
    ))
    .bind(devid)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use handover_dm::tree::Property;
    use handover_dm::{AclCmd, ServerId};

    #[test]
    fn cached_tree_keeps_acls_and_kinds() {
        let json = r#"[
            {"uri":".","kind":"interior","format":"node","type":"","value":"DevInfo/Vendor","acl":"Add=*&Get=*&Replace=a"},
            {"uri":"./Vendor","kind":"interior","format":"node","type":"","value":"Apps","acl":"Get=*&Replace=a"},
            {"uri":"./Vendor/Apps","kind":"interior","format":"node","type":"","value":"","acl":""},
            {"uri":"./Vendor/Apps/Mail","kind":"leaf","format":"chr","type":"text/plain","value":"on","acl":""}
        ]"#;
        let t = tree_from_cache(json);
        let a = ServerId::parse("a").unwrap();
        let u = TreeUri::parse("./Vendor/Apps").unwrap();
        assert!(t.node(&u).unwrap().is_interior());
        assert!(t.allows(&u, AclCmd::Replace, &a));
        assert!(t.may_replace_acl(&u, &a));
        assert_eq!(
            t.value(&TreeUri::parse("./Vendor/Apps/Mail").unwrap()),
            Some(&b"on"[..])
        );
    }

    #[test]
    fn operations_become_commands() {
        let op = Op::Replace {
            target: Target::Prop(TreeUri::parse("./A").unwrap(), Property::Acl),
            data: b"Get=*".to_vec(),
            format: None,
            mime: None,
        };
        let c = atomic(&[op, Op::Delete(Target::Node(TreeUri::parse("./B").unwrap()))]);
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"cmd":"Atomic","commands":[{"cmd":"Replace","target":"./A?prop=ACL","data":"Get=*"},{"cmd":"Delete","target":"./B"}]}"#
        );
    }
}

//! What the servers write to the device during a delegation, as tree
//! operations (handover-dm [`Op`]s) computed from the tree DMS-1 last read:
//!
//! - [`BootstrapAccount::ops`]: DMS-1's one `Atomic` that prepares the client
//!   for DMS-2 (B.5 step 1).
//! - [`rotation_ops`]: DMS-2's last commands of the bootstrap session (B.5 step 3).
//! - [`acl_update`] / [`AclChange`]: the step 6 ACL values (B.6), their
//!   `Atomic`, the `Complete` list, and the revert to the stored values.
//! - [`judge_atomic`]: success or failure of an `Atomic` from the statuses
//!   a client gave, and which nodes need restoring (B.6).

use crate::terms::Rights;
use crate::wire::Scope;
use handover_dm::tree::Property;
use handover_dm::{
    Acl, AclCmd, AuthType, NewNode, Nonce, Op, Secret, ServerId, Target, Tree, TreeUri,
};
use std::fmt;

/// Why a plan cannot be made; the engine maps these to B.4 policy refusals
/// or to `device-error` in step 6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A scope URI is not a valid A.7 URI.
    #[error("scope URI {0:?} is not a valid tree URI")]
    BadUri(String),
    /// A partial scope names a node DMS-1 has not seen on the device.
    #[error("{0} is not in the device tree as last read")]
    UnknownNode(String),
    /// DMS-1 may not replace this node's ACL (A.7), so it cannot delegate it.
    #[error("this server may not change the ACL of {0}")]
    NotManaged(String),
    /// A scope reaches into DMS-1's own account.
    #[error("{0} is within this server's own DM account")]
    OwnAccount(String),
    /// `full`: nothing in the tree is DMS-1's to hand over (B.6).
    #[error("the device tree holds no node this server manages")]
    NothingToChange,
}

/// A one-time credential of the bootstrap grant (B.5): printable ASCII name
/// and secret, and the 24-character nonce (A.4) that is used first.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCredential {
    pub name: String,
    pub secret: Secret,
    pub nonce: Nonce,
}

impl fmt::Debug for OneTimeCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimeCredential")
            .field("name", &self.name)
            .field("secret", &"***")
            .field("nonce", &"***")
            .finish()
    }
}

/// The DMAcc DMS-1 adds for DMS-2 (B.5 step 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapAccount {
    /// `./DMAcc/<x>`, see [`account_node_for`].
    pub node: TreeUri,
    pub dms1: ServerId,
    pub dms2: ServerId,
    /// DMS-2's DM URL (its peer entry, B.1), written as `AppAddr/1/Addr`.
    pub dm_url: String,
    pub auth_type: AuthType,
    /// CLCRED: what the client presents to DMS-2.
    pub client: OneTimeCredential,
    /// SRVCRED: what DMS-2 presents to the client; its name is DMS-2's ServerID.
    pub server: OneTimeCredential,
}

/// A free `./DMAcc/<x>` for `server`: its ServerID with every character
/// that is not an ASCII letter or digit turned into `-`, and `-2`, `-3`…
/// appended while the tree already has that node.
pub fn account_node_for(tree: &Tree, server: &ServerId) -> TreeUri {
    let base: String = server
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dmacc = TreeUri::parse("./DMAcc").expect("valid URI");
    (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .filter_map(|name| dmacc.join(&name).ok())
        .find(|u| tree.node(u).is_none())
        .expect("some suffix is free")
}

fn chr(value: &[u8]) -> NewNode {
    NewNode::Leaf {
        value: value.to_vec(),
        format: "chr".into(),
        mime: Some("text/plain".into()),
    }
}

fn acl_target(u: &TreeUri) -> Target {
    Target::Prop(u.clone(), Property::Acl)
}

impl BootstrapAccount {
    /// The ACL every added node gets (B.5 step 1).
    pub fn acl(&self) -> Acl {
        let (one, two) = (self.dms1.as_str(), self.dms2.as_str());
        Acl::parse(&format!("Get={two}&Replace={two}&Delete={one}+{two}"))
            .expect("ServerIDs are valid ACL ids")
    }

    /// The nodes added, parents before children, with what each holds.
    fn nodes(&self) -> Vec<(TreeUri, NewNode)> {
        let at = |rel: &str| {
            TreeUri::parse(&format!("{}/{rel}", self.node.as_str())).expect("valid URI")
        };
        let port = self
            .dm_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|host| host.rsplit_once(':'))
            .map(|(_, p)| p.to_owned())
            .unwrap_or_else(|| {
                if self.dm_url.starts_with("https") {
                    "443"
                } else {
                    "80"
                }
                .into()
            });
        let mut out = vec![
            (self.node.clone(), NewNode::interior()),
            (at("AppID"), chr(b"w7")),
            (at("ServerID"), chr(self.dms2.as_str().as_bytes())),
            (at("Name"), chr(self.dms2.as_str().as_bytes())),
            (at("AppAddr"), NewNode::interior()),
            (at("AppAddr/1"), NewNode::interior()),
            (at("AppAddr/1/Addr"), chr(self.dm_url.as_bytes())),
            (at("AppAddr/1/AddrType"), chr(b"URI")),
            (at("AppAddr/1/Port"), NewNode::interior()),
            (at("AppAddr/1/Port/1"), NewNode::interior()),
            (at("AppAddr/1/Port/1/PortNbr"), chr(port.as_bytes())),
            (at("AAuthPref"), chr(self.auth_type.meta_type().as_bytes())),
            (at("AppAuth"), NewNode::interior()),
        ];
        for (level, cred) in [("CLCRED", &self.client), ("SRVCRED", &self.server)] {
            let p = format!("AppAuth/{level}");
            out.push((at(&p), NewNode::interior()));
            out.push((at(&format!("{p}/AAuthLevel")), chr(level.as_bytes())));
            out.push((
                at(&format!("{p}/AAuthType")),
                chr(self.auth_type.aauth_type().as_bytes()),
            ));
            out.push((at(&format!("{p}/AAuthName")), chr(cred.name.as_bytes())));
            out.push((
                at(&format!("{p}/AAuthSecret")),
                chr(cred.secret.expose().as_bytes()),
            ));
            out.push((at(&format!("{p}/AAuthData")), chr(cred.nonce.as_bytes())));
        }
        out
    }

    /// The commands of DMS-1's `Atomic` (B.5 step 1): every Add, parents
    /// first, then the ACL of every added node, deepest first, the account
    /// node last (DMS-1 loses Replace there last).
    pub fn ops(&self) -> Vec<Op> {
        let nodes = self.nodes();
        let acl = self.acl().to_string().into_bytes();
        let mut by_depth: Vec<&TreeUri> = nodes.iter().map(|(u, _)| u).collect();
        // Stable: among equal depths the order of addition is kept.
        by_depth.sort_by_key(|u| std::cmp::Reverse(u.depth()));
        let adds = nodes
            .iter()
            .map(|(u, n)| Op::Add(Target::Node(u.clone()), n.clone()));
        let acls = by_depth.into_iter().map(|u| Op::Replace {
            target: acl_target(u),
            data: acl.clone(),
            format: None,
            mime: None,
        });
        adds.chain(acls).collect()
    }
}

/// New values DMS-2 writes at the end of the bootstrap session (B.5 step 3).
#[derive(Clone, PartialEq, Eq)]
pub struct Rotation {
    pub client_secret: Secret,
    pub server_secret: Secret,
    pub client_nonce: Nonce,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rotation { *** }")
    }
}

/// DMS-2's last commands of the bootstrap session (B.5 step 3): Replace of
/// both AAuthSecret values and of the CLCRED AAuthData, which apply from
/// the next session. `account` is the grant's AccountNode.
pub fn rotation_ops(account: &TreeUri, r: &Rotation) -> Vec<Op> {
    let leaf = |rel: &str, data: &[u8]| Op::Replace {
        target: Target::Node(
            TreeUri::parse(&format!("{}/AppAuth/{rel}", account.as_str())).expect("valid URI"),
        ),
        data: data.to_vec(),
        format: Some("chr".into()),
        mime: None,
    };
    vec![
        leaf("SRVCRED/AAuthSecret", r.server_secret.expose().as_bytes()),
        leaf("CLCRED/AAuthSecret", r.client_secret.expose().as_bytes()),
        leaf("CLCRED/AAuthData", r.client_nonce.as_bytes()),
    ]
}

/// One node's ACL in step 6 (B.6): the value read before, the value it
/// inherited then (what is written back if a client refuses an empty
/// value), and the value written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclChange {
    pub uri: TreeUri,
    /// The node's own ACL as read; empty means inherited (A.7).
    pub stored: Acl,
    /// The effective ACL when it was read.
    pub inherited: Acl,
    /// The value step 6 writes.
    pub new: Acl,
}

impl AclChange {
    /// The Replace that writes the new value.
    pub fn apply_op(&self) -> Op {
        replace_acl(&self.uri, &self.new)
    }

    /// The Replace that restores the stored value (B.6 revert).
    pub fn restore_op(&self) -> Op {
        replace_acl(&self.uri, &self.stored)
    }

    /// The Replace used when the client refused the empty stored value:
    /// the value the node inherited when it was read (B.6).
    pub fn restore_inherited_op(&self) -> Op {
        replace_acl(&self.uri, &self.inherited)
    }
}

fn replace_acl(u: &TreeUri, acl: &Acl) -> Op {
    Op::Replace {
        target: acl_target(u),
        data: acl.to_string().into_bytes(),
        format: None,
        mime: None,
    }
}

/// DMS-1's own `./DMAcc/<x>`, found by its ServerID (A.6).
pub fn own_account(tree: &Tree, server: &ServerId) -> Option<TreeUri> {
    tree.dm_accounts()
        .into_iter()
        .find(|a| a.server_id.as_ref() == Some(server))
        .map(|a| a.node)
}

/// Checks a scope against the tree DMS-1 last read, before the
/// Notification is answered or sent (B.4): every partial scope node is
/// known, outside DMS-1's own account, and DMS-1 may replace its ACL. A
/// `full` scope is accepted whatever the tree (a device whose ACLs were
/// never read is accepted; step 6 judges it).
pub fn check_scope(tree: &Tree, dms1: &ServerId, scope: &Scope) -> Result<(), PlanError> {
    let Scope::Partial(subtrees) = scope else {
        return Ok(());
    };
    let own = own_account(tree, dms1);
    for s in subtrees {
        let u = TreeUri::parse(&s.uri).map_err(|_| PlanError::BadUri(s.uri.clone()))?;
        if own.as_ref().is_some_and(|a| u.is_within(a)) {
            return Err(PlanError::OwnAccount(s.uri.clone()));
        }
        if tree.node(&u).is_none() {
            return Err(PlanError::UnknownNode(s.uri.clone()));
        }
        if !tree.may_replace_acl(&u, dms1) {
            return Err(PlanError::NotManaged(s.uri.clone()));
        }
    }
    Ok(())
}

/// The nodes step 6 changes and the rights DMS-2 gets on each (B.6),
/// judged from `tree` (for `full`, the tree DMS-1 last read).
fn step6_targets(
    tree: &Tree,
    dms1: &ServerId,
    scope: &Scope,
    dms2_account: Option<&TreeUri>,
) -> Result<Vec<(TreeUri, Rights)>, PlanError> {
    check_scope(tree, dms1, scope)?;
    let mut targets: Vec<(TreeUri, Rights)> = Vec::new();
    match scope {
        Scope::Partial(subtrees) => {
            for s in subtrees {
                let u = TreeUri::parse(&s.uri).map_err(|_| PlanError::BadUri(s.uri.clone()))?;
                targets.push((u, s.rights));
            }
        }
        Scope::Full => {
            let root = TreeUri::root();
            if tree.node(&root).is_some() && tree.may_replace_acl(&root, dms1) {
                targets.push((root.clone(), Rights::ALL));
            }
            let own = own_account(tree, dms1);
            let skip = |u: &TreeUri| {
                own.as_ref().is_some_and(|a| u.is_within(a))
                    || dms2_account.is_some_and(|a| u.is_within(a))
            };
            for u in tree.managed_by(dms1) {
                if u.is_root() || skip(&u) {
                    continue;
                }
                let node = tree.node(&u).expect("listed by the tree");
                let mut rights = Rights::empty();
                for cmd in AclCmd::ALL {
                    if node.acl.allows(cmd, dms1) {
                        rights.insert(cmd);
                    }
                }
                targets.push((u, rights));
            }
        }
    }
    Ok(targets)
}

/// What DMS-1 reads before step 6 (B.6 "first reads and stores the ACL
/// value of every node it will change"): the ACL property of each node
/// step 6 changes and of every ancestor up to the root, from which the
/// inherited value and the right to replace it (A.7) follow. One `Get`
/// of `?prop=ACL` per node, root first, instead of a walk of the tree.
pub fn acl_reads(
    tree: &Tree,
    dms1: &ServerId,
    scope: &Scope,
    dms2_account: Option<&TreeUri>,
) -> Result<Vec<Op>, PlanError> {
    let mut uris = std::collections::BTreeSet::new();
    for (u, _) in step6_targets(tree, dms1, scope, dms2_account)? {
        let mut at = Some(u);
        while let Some(u) = at {
            at = u.parent();
            if !uris.insert(u) {
                break;
            }
        }
    }
    let mut uris: Vec<TreeUri> = uris.into_iter().collect();
    uris.sort_by_key(|u| (u.as_str().matches('/').count(), u.as_str().to_owned()));
    Ok(uris.into_iter().map(|u| Op::Get(acl_target(&u))).collect())
}

/// The step 6 ACL values (B.6), in the order of the `Atomic` (and of
/// `Complete`). `partial`: the scope URIs with their rights. `full`: every
/// node whose own ACL names DMS-1 and whose ACL DMS-1 may replace (DMS-2
/// gets DMS-1's rights there), plus the root with all five rights when
/// DMS-1 may replace it, except DMS-1's own DMAcc and DMS-2's new one.
/// Nodes whose new value equals their own stored value are left out.
pub fn acl_update(
    tree: &Tree,
    dms1: &ServerId,
    dms2: &ServerId,
    scope: &Scope,
    dms2_account: Option<&TreeUri>,
) -> Result<Vec<AclChange>, PlanError> {
    let targets = step6_targets(tree, dms1, scope, dms2_account)?;
    let mut out = Vec::new();
    for (u, rights) in targets {
        let node = tree
            .node(&u)
            .ok_or_else(|| PlanError::UnknownNode(u.as_str().to_owned()))?;
        let inherited = tree.effective_acl(&u).cloned().unwrap_or_else(Acl::empty);
        let new = Acl::with_server_added(&inherited, dms2, &rights.cmds());
        if new.to_string() == node.acl.to_string() {
            continue;
        }
        out.push(AclChange {
            uri: u,
            stored: node.acl.clone(),
            inherited,
            new,
        });
    }
    if out.is_empty() && *scope == Scope::Full {
        return Err(PlanError::NothingToChange);
    }
    Ok(out)
}

/// The `Acls` of `Complete` (B.6): every node whose ACL step 6 replaced,
/// with the value written, in the order of the `Atomic`.
pub fn complete_acls(changes: &[AclChange]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| (c.uri.as_str().to_owned(), c.new.to_string()))
        .collect()
}

/// The revert of B.6: restore every stored ACL value exactly, then Delete
/// DMS-2's account (the client then scrubs DMS-2 from every ACL, A.7).
/// Meant for a `Sequence`, so that the account goes only after the ACLs.
pub fn revert_ops(changes: &[AclChange], dms2_account: Option<&TreeUri>) -> Vec<Op> {
    changes
        .iter()
        .map(AclChange::restore_op)
        .chain(dms2_account.map(|a| Op::Delete(Target::Node(a.clone()))))
        .collect()
}

/// For clients that do not scrub (B.6): Replaces that remove `dms2` from
/// every own ACL within `subtrees` that DMS-1 may replace, judged on the
/// tree as read after the revert.
pub fn scrub_ops(tree: &Tree, dms1: &ServerId, dms2: &ServerId, subtrees: &[TreeUri]) -> Vec<Op> {
    let mut out = Vec::new();
    for s in subtrees {
        for n in tree.list(s) {
            let mut acl = n.acl.clone();
            if acl.scrub(dms2)
                && !(n.uri.is_root() && acl.is_empty())
                && tree.may_replace_acl(&n.uri, dms1)
            {
                out.push(replace_acl(&n.uri, &acl));
            }
        }
    }
    out
}

/// The verdict on an `Atomic` (B.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicVerdict {
    Succeeded,
    /// `status` is the Atomic's (or the stand-in); `restore` the indices of
    /// the commands whose effect must be undone by hand because the client
    /// may not have rolled them back.
    Failed {
        status: u16,
        restore: Vec<usize>,
    },
}

/// Judges an `Atomic` from what the client answered (B.6): a missing
/// Atomic Status counts as the numerically highest status among its
/// commands, a command without a Status as 500. On failure every command
/// answered 2xx other than 216 (rolled back), or not answered at all, is
/// listed for restoring.
pub fn judge_atomic(atomic: Option<u16>, commands: &[Option<u16>]) -> AtomicVerdict {
    let status = atomic.unwrap_or_else(|| {
        commands
            .iter()
            .map(|s| s.unwrap_or(500))
            .max()
            .unwrap_or(500)
    });
    if (200..300).contains(&status) && status != 216 {
        return AtomicVerdict::Succeeded;
    }
    let restore = commands
        .iter()
        .enumerate()
        .filter(|(_, s)| match s {
            None => true,
            Some(code) => (200..300).contains(code) && *code != 216,
        })
        .map(|(i, _)| i)
        .collect();
    AtomicVerdict::Failed { status, restore }
}

#[cfg(test)]
mod tests;

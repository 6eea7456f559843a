//! The DM tree engine (PROTOCOL A.6, A.7): the device simulator's own tree,
//! and the server's cached trees and previews.
//!
//! Every operation runs on behalf of a ServerID and answers with the status
//! a DM Client gives. Decisions where DM leaves room **[profile]**:
//! - Add needs the parent to exist (no implicit parents): 404 otherwise;
//!   Add under a leaf is 405.
//! - Rights are checked before "already exists" (425 before 418), so a
//!   server without rights learns nothing about the node.
//! - `AAuthSecret` and `AAuthData` under `./DMAcc/<x>/AppAuth/<y>` are never
//!   returned by Get or used as a Copy source: 405, as their DMAcc
//!   AccessType has no Get (A.6).
//! - Properties: Replace is allowed on ACL, Name and Title only; every other
//!   property, and Add/Delete/Exec/Copy on a property, is 405; an unknown
//!   property name is 406; Size of an interior node is 406.
//! - Replacing the root's ACL with an empty value is 400: the root always
//!   has a value (A.7). If scrubbing (A.7) empties the root's ACL, it falls
//!   back to `Add=*&Get=*`.
//! - Copy onto an existing node is 418; the copy's top node gets the ACL an
//!   Add would give it, nodes below keep theirs.
//! - TStamp/VerNo change on the node whose value or property changed, and on
//!   the parent when a child is added, deleted or renamed.
//! - Limits: a value longer than `max_value_len` is 413, a node beyond
//!   `max_nodes` is 420 (device full).

use std::collections::BTreeMap;
use std::fmt;

use crate::acl::{Acl, AclCmd, AclId};
use crate::auth::{AuthType, Nonce, Secret};
use crate::types::{
    DevId, InvalidId, ServerId, StatusCode, TreeUri, MAX_DEPTH, MAX_SEGMENT_LEN, MAX_URI_LEN,
};

/// The current time, passed in by the caller, in seconds since 1970-01-01
/// UTC; the TStamp property (A.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Timestamp(pub u64);

impl fmt::Display for Timestamp {
    /// ISO 8601 basic format, `YYYYMMDDThhmmssZ`, as DM clients report TStamp.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.0 / 86_400) as i64;
        let secs = self.0 % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(
            f,
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// The node properties of A.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    Acl,
    Format,
    Name,
    Size,
    Title,
    TStamp,
    Type,
    VerNo,
}

impl Property {
    /// Reads a property name as in `?prop=<Name>` (A.7).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACL" => Self::Acl,
            "Format" => Self::Format,
            "Name" => Self::Name,
            "Size" => Self::Size,
            "Title" => Self::Title,
            "TStamp" => Self::TStamp,
            "Type" => Self::Type,
            "VerNo" => Self::VerNo,
            _ => return None,
        })
    }

    /// The name as written after `?prop=` (A.7).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acl => "ACL",
            Self::Format => "Format",
            Self::Name => "Name",
            Self::Size => "Size",
            Self::Title => "Title",
            Self::TStamp => "TStamp",
            Self::Type => "Type",
            Self::VerNo => "VerNo",
        }
    }
}

/// What a command addresses (A.7): a node, or a property `<uri>?prop=<Name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(TreeUri),
    Prop(TreeUri, Property),
}

/// Why a target string was refused; [`InvalidTarget::status`] gives the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTarget {
    #[error(transparent)]
    BadUri(#[from] InvalidId),
    #[error("unknown property {0:?}")]
    UnknownProperty(String),
    #[error("a `?` that is not `?prop=`")]
    BadQuery,
}

impl InvalidTarget {
    /// 406 for an unknown property (A.7), 400 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownProperty(_) => StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl Target {
    /// Reads `<uri>` or `<uri>?prop=<Name>` (A.7).
    pub fn parse(s: &str) -> Result<Self, InvalidTarget> {
        match s.split_once('?') {
            None => Ok(Self::Node(TreeUri::parse(s)?)),
            Some((uri, q)) => {
                let name = q.strip_prefix("prop=").ok_or(InvalidTarget::BadQuery)?;
                let prop = Property::parse(name)
                    .ok_or_else(|| InvalidTarget::UnknownProperty(name.to_owned()))?;
                Ok(Self::Prop(TreeUri::parse(uri)?, prop))
            }
        }
    }

    /// The node addressed (the node of a property, too).
    pub fn uri(&self) -> &TreeUri {
        match self {
            Self::Node(u) | Self::Prop(u, _) => u,
        }
    }
}

impl fmt::Display for Target {
    /// `<uri>` or `<uri>?prop=<Name>` (A.7), as [`Target::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(u) => write!(f, "{u}"),
            Self::Prop(u, p) => write!(f, "{u}?prop={}", p.as_str()),
        }
    }
}

impl From<TreeUri> for Target {
    fn from(u: TreeUri) -> Self {
        Self::Node(u)
    }
}

/// Interior node or leaf with its value (A.7).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NodeKind {
    Interior,
    Leaf(Vec<u8>),
}

impl fmt::Debug for NodeKind {
    // Leaf values may be secrets (AAuthSecret): print only their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interior => f.write_str("Interior"),
            Self::Leaf(v) => write!(f, "Leaf({} bytes)", v.len()),
        }
    }
}

/// One node with its properties (A.7). Name and Size are derived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Node {
    pub kind: NodeKind,
    /// The node's own ACL; empty means inherited (A.7).
    pub acl: Acl,
    /// `node` for interior nodes; `chr`, `int`, `bool`, `b64`, `bin`… for leaves.
    pub format: String,
    /// The Type property: a MIME type for leaves, a DDF name (or empty) for interior nodes.
    pub mime: String,
    pub title: String,
    pub tstamp: Timestamp,
    pub verno: u16,
}

impl Node {
    fn new(kind: NodeKind, format: String, mime: String, now: Timestamp) -> Self {
        Self {
            kind,
            acl: Acl::empty(),
            format,
            mime,
            title: String::new(),
            tstamp: now,
            verno: 0,
        }
    }

    fn touch(&mut self, now: Timestamp) {
        self.tstamp = now;
        self.verno = self.verno.wrapping_add(1);
    }

    /// True for an interior node.
    pub fn is_interior(&self) -> bool {
        matches!(self.kind, NodeKind::Interior)
    }
}

/// What an Add creates (A.7). Values are raw bytes: the session layer
/// decodes `b64` item data before it reaches the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewNode {
    Interior {
        mime: Option<String>,
    },
    Leaf {
        value: Vec<u8>,
        format: String,
        mime: Option<String>,
    },
}

impl NewNode {
    /// A `chr` leaf of MIME type `text/plain`.
    pub fn text(value: &str) -> Self {
        Self::Leaf {
            value: value.as_bytes().to_vec(),
            format: "chr".to_owned(),
            mime: Some("text/plain".to_owned()),
        }
    }

    /// An interior node without a DDF type.
    pub fn interior() -> Self {
        Self::Interior { mime: None }
    }
}

/// One tree operation (A.3 commands), independent of the SyncML model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get(Target),
    Add(Target, NewNode),
    /// New value (or property value); `format`/`mime` replace the leaf's when given.
    Replace {
        target: Target,
        data: Vec<u8>,
        format: Option<String>,
        mime: Option<String>,
    },
    Delete(Target),
    Exec(Target, Option<Vec<u8>>),
    Copy {
        source: Target,
        target: Target,
    },
}

/// What a successful operation returns besides its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A Get's Results item: a leaf value, an interior node's child names
    /// `a/b/c` with Format `node`, or a property value (`chr`).
    Item {
        data: Vec<u8>,
        format: String,
        mime: String,
    },
    /// The Exec was allowed; the caller (simulator) carries it out.
    Exec { uri: TreeUri, data: Option<Vec<u8>> },
}

/// The status of one operation and, for Get and Exec, its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    pub status: StatusCode,
    pub output: Option<Output>,
}

impl OpResult {
    fn status(status: StatusCode) -> Self {
        Self {
            status,
            output: None,
        }
    }
}

/// The statuses of an Atomic or Sequence (A.3): the container's own and one per operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    pub status: StatusCode,
    pub results: Vec<OpResult>,
}

/// Size limits of a tree; exceeding them gives 413 (value) or 420 (nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    pub max_nodes: usize,
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 10_000,
            max_value_len: 64 * 1024,
        }
    }
}

/// One node as listed for cached trees and previews; secret values are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub uri: TreeUri,
    pub interior: bool,
    /// The node's own ACL (empty = inherited).
    pub acl: Acl,
    /// The ACL that applies (A.7 inheritance).
    pub effective_acl: Acl,
    pub format: String,
    pub mime: String,
    /// `None` for interior nodes and for AAuthSecret/AAuthData.
    pub value: Option<Vec<u8>>,
}

/// One `./DMAcc/<x>/AppAuth/<y>` entry (A.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAuth {
    pub node: TreeUri,
    /// `CLCRED` or `SRVCRED`.
    pub level: Option<String>,
    pub auth_type: Option<AuthType>,
    pub name: Option<String>,
    pub secret: Option<Secret>,
    pub data: Option<Nonce>,
}

/// One `./DMAcc/<x>` account (A.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmAccount {
    pub node: TreeUri,
    pub server_id: Option<ServerId>,
    pub app_auth: Vec<AppAuth>,
}

/// Values for the standard objects of A.6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub dev_id: DevId,
    pub man: String,
    pub model: String,
    pub lang: String,
    pub dev_typ: String,
    pub oem: String,
    pub fw_v: String,
    pub sw_v: String,
    pub hw_v: String,
}

/// A DM tree (A.7): nodes keyed by URI, the root always present with a
/// non-empty ACL. Serializable with the `serde` feature (the device's own
/// state, secrets included).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "TreeData", into = "TreeData"))]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    limits: Limits,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
struct TreeData {
    nodes: BTreeMap<String, Node>,
    limits: Limits,
}

#[cfg(feature = "serde")]
impl From<Tree> for TreeData {
    fn from(t: Tree) -> Self {
        Self {
            nodes: t.nodes,
            limits: t.limits,
        }
    }
}

#[cfg(feature = "serde")]
impl TryFrom<TreeData> for Tree {
    type Error = String;
    fn try_from(d: TreeData) -> Result<Self, String> {
        let t = Tree {
            nodes: d.nodes,
            limits: d.limits,
        };
        t.check_invariants()?;
        Ok(t)
    }
}

fn uri(key: &str) -> TreeUri {
    TreeUri::parse(key).expect("tree keys are valid URIs")
}

fn child_prefix(key: &str) -> String {
    format!("{key}/")
}

/// `./DMAcc/<x>/AppAuth/<y>/AAuthSecret|AAuthData` (A.6: no Get).
fn is_secret_leaf(u: &TreeUri) -> bool {
    let s: Vec<&str> = u.segments().collect();
    matches!(
        s.as_slice(),
        ["DMAcc", _, "AppAuth", _, "AAuthSecret" | "AAuthData"]
    )
}

type OpOutcome = Result<Option<Output>, StatusCode>;

impl Default for Tree {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Tree {
    /// A tree with only the root, ACL `Add=*&Get=*` (A.7).
    pub fn new(limits: Limits) -> Self {
        let mut root = Node::new(
            NodeKind::Interior,
            "node".into(),
            String::new(),
            Timestamp(0),
        );
        root.acl = Acl::root_default();
        Self {
            nodes: BTreeMap::from([(".".to_owned(), root)]),
            limits,
        }
    }

    /// The standard initial tree (A.6): `./DevInfo`, `./DevDetail` with its
    /// leaves, an empty `./DMAcc`, root ACL `Add=*&Get=*`; every other node
    /// inherits.
    pub fn standard(info: &DeviceInfo, now: Timestamp) -> Self {
        let mut t = Self::default();
        let leaves: [(&str, &str); 15] = [
            ("./DevInfo/DevId", info.dev_id.as_str()),
            ("./DevInfo/Man", &info.man),
            ("./DevInfo/Mod", &info.model),
            ("./DevInfo/DmV", "1.2"),
            ("./DevInfo/Lang", &info.lang),
            ("./DevDetail/DevTyp", &info.dev_typ),
            ("./DevDetail/OEM", &info.oem),
            ("./DevDetail/FwV", &info.fw_v),
            ("./DevDetail/SwV", &info.sw_v),
            ("./DevDetail/HwV", &info.hw_v),
            ("./DevDetail/LrgObj", "true"),
            ("./DevDetail/URI/MaxDepth", &MAX_DEPTH.to_string()),
            ("./DevDetail/URI/MaxTotLen", &MAX_URI_LEN.to_string()),
            ("./DevDetail/URI/MaxSegLen", &MAX_SEGMENT_LEN.to_string()),
            ("./DMAcc", ""),
        ];
        for (u, v) in leaves {
            let u = uri(u);
            let node = if u.as_str() == "./DMAcc" {
                NewNode::interior()
            } else if u.name() == "LrgObj" {
                NewNode::Leaf {
                    value: v.as_bytes().to_vec(),
                    format: "bool".into(),
                    mime: Some("text/plain".into()),
                }
            } else if u.parent().is_some_and(|p| p.name() == "URI") {
                NewNode::Leaf {
                    value: v.as_bytes().to_vec(),
                    format: "int".into(),
                    mime: Some("text/plain".into()),
                }
            } else {
                NewNode::text(v)
            };
            t.put_local(&u, node, now);
        }
        t
    }

    /// The limits of this tree.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: the root always exists.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The node at `u`, read as the device itself (no ACL check).
    pub fn node(&self, u: &TreeUri) -> Option<&Node> {
        self.nodes.get(u.as_str())
    }

    /// A leaf's value, read as the device itself (no ACL check).
    pub fn value(&self, u: &TreeUri) -> Option<&[u8]> {
        match &self.node(u)?.kind {
            NodeKind::Leaf(v) => Some(v),
            NodeKind::Interior => None,
        }
    }

    /// Direct children names of `u`, in URI order.
    pub fn children(&self, u: &TreeUri) -> Vec<String> {
        let prefix = child_prefix(u.as_str());
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(k, _)| k[prefix.len()..].to_owned())
            .collect()
    }

    fn subtree_keys(&self, key: &str) -> Vec<String> {
        let prefix = child_prefix(key);
        std::iter::once(key.to_owned())
            .chain(
                self.nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone()),
            )
            .filter(|k| self.nodes.contains_key(k))
            .collect()
    }

    /// Writes a node as the device itself (no ACL check, no limits):
    /// missing parents are created as interior nodes; an existing leaf
    /// gets the new value; an existing node of the other kind is replaced
    /// with its subtree. For building trees and for the simulator.
    pub fn put_local(&mut self, u: &TreeUri, node: NewNode, now: Timestamp) {
        if let Some(p) = u.parent() {
            if !self.node(&p).is_some_and(Node::is_interior) {
                self.put_local(&p, NewNode::interior(), now);
            }
        }
        let (kind, format, mime) = match node {
            NewNode::Interior { mime } => {
                (NodeKind::Interior, "node".into(), mime.unwrap_or_default())
            }
            NewNode::Leaf {
                value,
                format,
                mime,
            } => (
                NodeKind::Leaf(value),
                format,
                mime.unwrap_or_else(|| "text/plain".into()),
            ),
        };
        match self.nodes.get_mut(u.as_str()) {
            Some(n) if n.is_interior() == matches!(kind, NodeKind::Interior) => {
                n.kind = kind;
                n.format = format;
                n.mime = mime;
                n.touch(now);
            }
            _ => {
                for k in self.subtree_keys(u.as_str()) {
                    self.nodes.remove(&k);
                }
                self.nodes
                    .insert(u.as_str().to_owned(), Node::new(kind, format, mime, now));
            }
        }
    }

    /// Sets a node's ACL as the device itself (no ACL check). The root's
    /// ACL cannot be emptied; returns false if the node is missing or that was tried.
    pub fn set_acl_local(&mut self, u: &TreeUri, acl: Acl) -> bool {
        if u.is_root() && acl.is_empty() {
            return false;
        }
        match self.nodes.get_mut(u.as_str()) {
            Some(n) => {
                n.acl = acl;
                true
            }
            None => false,
        }
    }

    /// The ACL that applies to `u` (A.7): its own, or the nearest
    /// ancestor's non-empty one, whole. `None` when the node does not exist.
    pub fn effective_acl(&self, u: &TreeUri) -> Option<&Acl> {
        self.node(u)?;
        let mut cur = Some(u.clone());
        while let Some(c) = cur {
            if let Some(n) = self.nodes.get(c.as_str()) {
                if !n.acl.is_empty() {
                    return Some(&n.acl);
                }
            }
            cur = c.parent();
        }
        unreachable!("the root ACL is never empty")
    }

    /// True when `server` may run `cmd` on the existing node `u` (A.7).
    pub fn allows(&self, u: &TreeUri, cmd: AclCmd, server: &ServerId) -> bool {
        self.effective_acl(u).is_some_and(|a| a.allows(cmd, server))
    }

    /// True when `server` may replace the ACL of `u` (A.7): interior node:
    /// Replace on the node or its parent; leaf: Replace on the parent; the
    /// root: Replace on the root.
    pub fn may_replace_acl(&self, u: &TreeUri, server: &ServerId) -> bool {
        let Some(n) = self.node(u) else { return false };
        let on_parent = u
            .parent()
            .is_some_and(|p| self.allows(&p, AclCmd::Replace, server));
        if u.is_root() || n.is_interior() {
            self.allows(u, AclCmd::Replace, server) || on_parent
        } else {
            on_parent
        }
    }

    /// Every node at or below `u` with its own and effective ACL, in URI
    /// order (for cached trees and previews). Secret values are left out.
    pub fn list(&self, u: &TreeUri) -> Vec<NodeInfo> {
        self.subtree_keys(u.as_str())
            .into_iter()
            .map(|k| {
                let n = &self.nodes[&k];
                let u = uri(&k);
                NodeInfo {
                    value: match &n.kind {
                        NodeKind::Leaf(v) if !is_secret_leaf(&u) => Some(v.clone()),
                        _ => None,
                    },
                    effective_acl: self.effective_acl(&u).cloned().unwrap_or_default(),
                    interior: n.is_interior(),
                    acl: n.acl.clone(),
                    format: n.format.clone(),
                    mime: n.mime.clone(),
                    uri: u,
                }
            })
            .collect()
    }

    /// Nodes whose own ACL names `server` and whose ACL `server` may
    /// replace (A.7), in URI order: the "everything DMS-1 itself manages"
    /// of B.6 `full`, before the caller removes its own DMAcc subtree.
    pub fn managed_by(&self, server: &ServerId) -> Vec<TreeUri> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.acl.servers().contains(&server))
            .map(|(k, _)| uri(k))
            .filter(|u| self.may_replace_acl(u, server))
            .collect()
    }

    /// The DM accounts under `./DMAcc` (A.6) with their ServerID and AppAuth entries.
    pub fn dm_accounts(&self) -> Vec<DmAccount> {
        let dmacc = uri("./DMAcc");
        let text = |u: &TreeUri| {
            self.value(u)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        self.children(&dmacc)
            .into_iter()
            .filter_map(|x| dmacc.join(&x).ok())
            .filter(|acc| self.node(acc).is_some_and(Node::is_interior))
            .map(|acc| {
                let leaf = |name: &str| acc.join(name).ok().and_then(|u| text(&u));
                let appauth = acc.join("AppAuth").expect("valid segment");
                let app_auth = self
                    .children(&appauth)
                    .into_iter()
                    .filter_map(|y| appauth.join(&y).ok())
                    .map(|node| {
                        let leaf = |name: &str| node.join(name).ok().and_then(|u| text(&u));
                        AppAuth {
                            level: leaf("AAuthLevel"),
                            auth_type: leaf("AAuthType")
                                .and_then(|t| AuthType::from_aauth_type(&t)),
                            name: leaf("AAuthName"),
                            secret: leaf("AAuthSecret").map(Secret::new),
                            data: node
                                .join("AAuthData")
                                .ok()
                                .and_then(|u| self.value(&u))
                                .map(Nonce::from_bytes),
                            node,
                        }
                    })
                    .collect();
                DmAccount {
                    server_id: leaf("ServerID").and_then(|s| ServerId::parse(s).ok()),
                    app_auth,
                    node: acc,
                }
            })
            .collect()
    }

    /// Checks the structural invariants: the root exists, is interior and
    /// has a non-empty ACL; every other node's parent exists and is interior.
    pub fn check_invariants(&self) -> Result<(), String> {
        let root = self.nodes.get(".").ok_or("no root")?;
        if !root.is_interior() || root.acl.is_empty() {
            return Err("root must be interior with a non-empty ACL".into());
        }
        for k in self.nodes.keys() {
            let u = TreeUri::parse(k).map_err(|e| e.to_string())?;
            if u.as_str() != k {
                return Err(format!("{k} is not in normal form"));
            }
            if let Some(p) = u.parent() {
                if !self.node(&p).is_some_and(Node::is_interior) {
                    return Err(format!("{k} has no interior parent"));
                }
            }
        }
        Ok(())
    }

    fn check(&self, u: &TreeUri, cmd: AclCmd, server: &ServerId) -> Result<(), StatusCode> {
        if self.allows(u, cmd, server) {
            Ok(())
        } else {
            Err(StatusCode::PERMISSION_DENIED)
        }
    }

    fn existing(&self, u: &TreeUri) -> Result<&Node, StatusCode> {
        self.node(u).ok_or(StatusCode::NOT_FOUND)
    }

    fn touch(&mut self, u: &TreeUri, now: Timestamp) {
        if let Some(n) = self.nodes.get_mut(u.as_str()) {
            n.touch(now);
        }
    }

    /// Runs one operation for `server` (A.7) and answers with its status.
    pub fn execute(&mut self, server: &ServerId, op: &Op, now: Timestamp) -> OpResult {
        let r = match op {
            Op::Get(t) => self.get(server, t),
            Op::Add(t, n) => self.add(server, t, n, now),
            Op::Replace {
                target,
                data,
                format,
                mime,
            } => self.replace(
                server,
                target,
                data,
                format.as_deref(),
                mime.as_deref(),
                now,
            ),
            Op::Delete(t) => self.delete(server, t, now),
            Op::Exec(t, data) => self.exec(server, t, data.as_ref()),
            Op::Copy { source, target } => self.copy(server, source, target, now),
        };
        match r {
            Ok(output) => OpResult {
                status: StatusCode::OK,
                output,
            },
            Err(status) => OpResult::status(status),
        }
    }

    /// An Atomic (A.3): all or nothing. On the first failure the tree is
    /// restored from a snapshot; operations that had succeeded get 216, the
    /// failed one keeps its code, the rest get 215, and the Atomic 507.
    /// (516, rollback failed, cannot happen: the snapshot restore is infallible.)
    pub fn atomic(&mut self, server: &ServerId, ops: &[Op], now: Timestamp) -> BatchResult {
        let snapshot = self.clone();
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let r = self.execute(server, op, now);
            if !r.status.is_success() {
                *self = snapshot;
                for done in &mut results {
                    *done = OpResult::status(StatusCode::ROLLED_BACK);
                }
                results.push(r);
                results.extend(
                    ops[i + 1..]
                        .iter()
                        .map(|_| OpResult::status(StatusCode::NOT_EXECUTED)),
                );
                return BatchResult {
                    status: StatusCode::ATOMIC_FAILED,
                    results,
                };
            }
            results.push(r);
        }
        BatchResult {
            status: StatusCode::OK,
            results,
        }
    }

    /// A Sequence (A.3): in order, stopping after the first failure; the
    /// remaining operations get 215. **[profile]** The Sequence itself gets
    /// 200; failures are reported on the operations.
    pub fn sequence(&mut self, server: &ServerId, ops: &[Op], now: Timestamp) -> BatchResult {
        let mut results = Vec::with_capacity(ops.len());
        let mut failed = false;
        for op in ops {
            if failed {
                results.push(OpResult::status(StatusCode::NOT_EXECUTED));
                continue;
            }
            let r = self.execute(server, op, now);
            failed = !r.status.is_success();
            results.push(r);
        }
        BatchResult {
            status: StatusCode::OK,
            results,
        }
    }

    fn get(&self, server: &ServerId, t: &Target) -> OpOutcome {
        let u = t.uri();
        let n = self.existing(u)?;
        self.check(u, AclCmd::Get, server)?;
        let text = |s: String| {
            Ok(Some(Output::Item {
                data: s.into_bytes(),
                format: "chr".into(),
                mime: "text/plain".into(),
            }))
        };
        match t {
            Target::Node(_) => match &n.kind {
                NodeKind::Interior => Ok(Some(Output::Item {
                    data: self.children(u).join("/").into_bytes(),
                    format: "node".into(),
                    mime: n.mime.clone(),
                })),
                NodeKind::Leaf(_) if is_secret_leaf(u) => Err(StatusCode::COMMAND_NOT_ALLOWED),
                NodeKind::Leaf(v) => Ok(Some(Output::Item {
                    data: v.clone(),
                    format: n.format.clone(),
                    mime: n.mime.clone(),
                })),
            },
            Target::Prop(_, p) => match p {
                Property::Acl => text(n.acl.to_string()),
                Property::Format => text(n.format.clone()),
                Property::Name => text(u.name().to_owned()),
                Property::Size => match &n.kind {
                    NodeKind::Leaf(v) => text(v.len().to_string()),
                    NodeKind::Interior => Err(StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED),
                },
                Property::Title => text(n.title.clone()),
                Property::TStamp => text(n.tstamp.to_string()),
                Property::Type => text(n.mime.clone()),
                Property::VerNo => text(n.verno.to_string()),
            },
        }
    }

    /// The ACL a node added by `server` under `parent` starts with (A.7).
    fn acl_for_added(&self, parent: &TreeUri, interior: bool, server: &ServerId) -> Acl {
        if interior && !self.allows(parent, AclCmd::Replace, server) {
            let mut a = Acl::empty();
            for cmd in [AclCmd::Add, AclCmd::Delete, AclCmd::Replace] {
                a.grant(cmd, AclId::Server(server.clone()));
            }
            a
        } else {
            Acl::empty()
        }
    }

    /// Checks common to Add and Copy's target: parent exists and is
    /// interior, Add on the parent, the node is new, room for `count` nodes.
    fn check_new(
        &self,
        server: &ServerId,
        u: &TreeUri,
        count: usize,
    ) -> Result<TreeUri, StatusCode> {
        let parent = u.parent().ok_or(StatusCode::ALREADY_EXISTS)?;
        if !self.existing(&parent)?.is_interior() {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        }
        self.check(&parent, AclCmd::Add, server)?;
        if self.node(u).is_some() {
            return Err(StatusCode::ALREADY_EXISTS);
        }
        if self.nodes.len() + count > self.limits.max_nodes {
            return Err(StatusCode::DEVICE_FULL);
        }
        Ok(parent)
    }

    fn add(&mut self, server: &ServerId, t: &Target, new: &NewNode, now: Timestamp) -> OpOutcome {
        let Target::Node(u) = t else {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        };
        let parent = self.check_new(server, u, 1)?;
        let (kind, format, mime) = match new {
            NewNode::Interior { mime } => (
                NodeKind::Interior,
                "node".to_owned(),
                mime.clone().unwrap_or_default(),
            ),
            NewNode::Leaf {
                value,
                format,
                mime,
            } => {
                if value.len() > self.limits.max_value_len {
                    return Err(StatusCode::REQUEST_ENTITY_TOO_LARGE);
                }
                (
                    NodeKind::Leaf(value.clone()),
                    format.clone(),
                    mime.clone().unwrap_or_else(|| "text/plain".into()),
                )
            }
        };
        let mut node = Node::new(kind, format, mime, now);
        node.acl = self.acl_for_added(&parent, node.is_interior(), server);
        self.nodes.insert(u.as_str().to_owned(), node);
        self.touch(&parent, now);
        Ok(None)
    }

    fn replace(
        &mut self,
        server: &ServerId,
        t: &Target,
        data: &[u8],
        format: Option<&str>,
        mime: Option<&str>,
        now: Timestamp,
    ) -> OpOutcome {
        let u = t.uri();
        let n = self.existing(u)?;
        match t {
            Target::Node(_) => {
                if n.is_interior() {
                    return Err(StatusCode::COMMAND_NOT_ALLOWED);
                }
                self.check(u, AclCmd::Replace, server)?;
                if data.len() > self.limits.max_value_len {
                    return Err(StatusCode::REQUEST_ENTITY_TOO_LARGE);
                }
                let n = self.nodes.get_mut(u.as_str()).expect("checked");
                n.kind = NodeKind::Leaf(data.to_vec());
                if let Some(f) = format {
                    n.format = f.to_owned();
                }
                if let Some(m) = mime {
                    n.mime = m.to_owned();
                }
                n.touch(now);
            }
            Target::Prop(_, Property::Acl) => {
                if !self.may_replace_acl(u, server) {
                    return Err(StatusCode::PERMISSION_DENIED);
                }
                let text = std::str::from_utf8(data).map_err(|_| StatusCode::BAD_REQUEST)?;
                let acl = Acl::parse(text).map_err(|_| StatusCode::BAD_REQUEST)?;
                if u.is_root() && acl.is_empty() {
                    return Err(StatusCode::BAD_REQUEST);
                }
                let n = self.nodes.get_mut(u.as_str()).expect("checked");
                n.acl = acl;
                n.touch(now);
            }
            Target::Prop(_, Property::Title) => {
                self.check(u, AclCmd::Replace, server)?;
                let text = std::str::from_utf8(data).map_err(|_| StatusCode::BAD_REQUEST)?;
                let n = self.nodes.get_mut(u.as_str()).expect("checked");
                n.title = text.to_owned();
                n.touch(now);
            }
            Target::Prop(_, Property::Name) => {
                let parent = u.parent().ok_or(StatusCode::COMMAND_NOT_ALLOWED)?;
                self.check(u, AclCmd::Replace, server)?;
                let name = std::str::from_utf8(data).map_err(|_| StatusCode::BAD_REQUEST)?;
                let to = parent.join(name).map_err(|_| StatusCode::BAD_REQUEST)?;
                if to == *u {
                    return Ok(None);
                }
                if self.node(&to).is_some() {
                    return Err(StatusCode::ALREADY_EXISTS);
                }
                let keys = self.subtree_keys(u.as_str());
                let mut moved = Vec::with_capacity(keys.len());
                for k in &keys {
                    let new_key = format!("{}{}", to.as_str(), &k[u.as_str().len()..]);
                    TreeUri::parse(&new_key).map_err(|_| StatusCode::BAD_REQUEST)?;
                    moved.push(new_key);
                }
                for (k, new_key) in keys.iter().zip(moved) {
                    let n = self.nodes.remove(k).expect("listed");
                    self.nodes.insert(new_key, n);
                }
                self.touch(&to, now);
                self.touch(&parent, now);
            }
            Target::Prop(..) => return Err(StatusCode::COMMAND_NOT_ALLOWED),
        }
        Ok(None)
    }

    fn delete(&mut self, server: &ServerId, t: &Target, now: Timestamp) -> OpOutcome {
        let Target::Node(u) = t else {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        };
        self.existing(u)?;
        if u.is_root() {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        }
        self.check(u, AclCmd::Delete, server)?;
        // A.7: deleting a DMAcc scrubs its ServerID from every ACL.
        let dmacc = uri("./DMAcc");
        let gone: Vec<ServerId> = self
            .dm_accounts()
            .into_iter()
            .filter(|a| a.node.is_within(u) && a.node.parent().as_ref() == Some(&dmacc))
            .filter_map(|a| a.server_id)
            .collect();
        for k in self.subtree_keys(u.as_str()) {
            self.nodes.remove(&k);
        }
        if let Some(p) = u.parent() {
            self.touch(&p, now);
        }
        for id in &gone {
            self.scrub(id);
        }
        Ok(None)
    }

    /// Removes `server` from every ACL in the tree (A.7, DMAcc deleted).
    /// An emptied root ACL falls back to `Add=*&Get=*` **[profile]**.
    pub fn scrub(&mut self, server: &ServerId) {
        for n in self.nodes.values_mut() {
            n.acl.scrub(server);
        }
        let root = self.nodes.get_mut(".").expect("root");
        if root.acl.is_empty() {
            root.acl = Acl::root_default();
        }
    }

    fn exec(&self, server: &ServerId, t: &Target, data: Option<&Vec<u8>>) -> OpOutcome {
        let Target::Node(u) = t else {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        };
        self.existing(u)?;
        self.check(u, AclCmd::Exec, server)?;
        Ok(Some(Output::Exec {
            uri: u.clone(),
            data: data.cloned(),
        }))
    }

    fn copy(
        &mut self,
        server: &ServerId,
        source: &Target,
        target: &Target,
        now: Timestamp,
    ) -> OpOutcome {
        let (Target::Node(src), Target::Node(dst)) = (source, target) else {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        };
        self.existing(src)?;
        self.check(src, AclCmd::Get, server)?;
        let keys = self.subtree_keys(src.as_str());
        if keys.iter().any(|k| is_secret_leaf(&uri(k))) {
            return Err(StatusCode::COMMAND_NOT_ALLOWED);
        }
        if dst.is_within(src) {
            return Err(StatusCode::BAD_REQUEST);
        }
        let parent = self.check_new(server, dst, keys.len())?;
        let mut copies = Vec::with_capacity(keys.len());
        for k in &keys {
            let new_key = format!("{}{}", dst.as_str(), &k[src.as_str().len()..]);
            TreeUri::parse(&new_key).map_err(|_| StatusCode::BAD_REQUEST)?;
            let mut n = self.nodes[k].clone();
            n.tstamp = now;
            n.verno = 0;
            copies.push((new_key, n));
        }
        let top_acl = self.acl_for_added(&parent, copies[0].1.is_interior(), server);
        copies[0].1.acl = top_acl;
        self.nodes.extend(copies);
        self.touch(&parent, now);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp(1_800_000_000);

    fn u(s: &str) -> TreeUri {
        TreeUri::parse(s).unwrap()
    }
    fn sid(s: &str) -> ServerId {
        ServerId::parse_strict(s).unwrap()
    }
    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }
    fn info() -> DeviceInfo {
        DeviceInfo {
            dev_id: DevId::parse("IMEI:490154203237518").unwrap(),
            man: "Acme".into(),
            model: "X1".into(),
            lang: "en".into(),
            dev_typ: "phone".into(),
            oem: "Acme".into(),
            fw_v: "1".into(),
            sw_v: "2".into(),
            hw_v: "3".into(),
        }
    }
    fn get(tree: &mut Tree, s: &ServerId, target: &str) -> OpResult {
        tree.execute(s, &Op::Get(t(target)), NOW)
    }
    fn data(r: &OpResult) -> String {
        match &r.output {
            Some(Output::Item { data, .. }) => String::from_utf8(data.clone()).unwrap(),
            o => panic!("{o:?} {:?}", r.status),
        }
    }
    fn replace(target: &str, v: &str) -> Op {
        Op::Replace {
            target: t(target),
            data: v.as_bytes().to_vec(),
            format: None,
            mime: None,
        }
    }
    fn add_leaf(target: &str, v: &str) -> Op {
        Op::Add(t(target), NewNode::text(v))
    }
    fn add_dir(target: &str) -> Op {
        Op::Add(t(target), NewNode::interior())
    }
    fn st(tree: &mut Tree, s: &ServerId, op: Op) -> u16 {
        tree.execute(s, &op, NOW).status.code()
    }

    // PROTOCOL A.7: `<uri>?prop=<Name>`; unknown property 406.
    #[test]
    fn target_forms() {
        assert_eq!(t("./a/b?prop=ACL"), Target::Prop(u("./a/b"), Property::Acl));
        assert_eq!(t("a"), Target::Node(u("./a")));
        assert_eq!(
            Target::parse("./a?prop=Colour")
                .unwrap_err()
                .status()
                .code(),
            406
        );
        assert_eq!(Target::parse("./a?x=ACL").unwrap_err().status().code(), 400);
        assert_eq!(Timestamp(0).to_string(), "19700101T000000Z");
        assert_eq!(Timestamp(1_800_000_000).to_string(), "20270115T080000Z");
    }

    // PROTOCOL A.6, A.7: standard tree, Get of leaves, interior child lists, properties.
    #[test]
    fn standard_tree_get() {
        let mut tree = Tree::standard(&info(), NOW);
        tree.check_invariants().unwrap();
        let s = sid("corp");
        assert_eq!(
            data(&get(&mut tree, &s, "./DevInfo/DevId")),
            "IMEI:490154203237518"
        );
        let r = get(&mut tree, &s, "./DevInfo");
        assert_eq!(data(&r), "DevId/DmV/Lang/Man/Mod");
        assert!(matches!(&r.output, Some(Output::Item { format, .. }) if format == "node"));
        assert_eq!(data(&get(&mut tree, &s, "./DevDetail/URI/MaxDepth")), "32");
        assert_eq!(data(&get(&mut tree, &s, ".?prop=ACL")), "Add=*&Get=*");
        assert_eq!(data(&get(&mut tree, &s, "./DevInfo?prop=ACL")), "");
        assert_eq!(data(&get(&mut tree, &s, "./DevInfo/Man?prop=Size")), "4");
        assert_eq!(
            data(&get(&mut tree, &s, "./DevInfo/Man?prop=Format")),
            "chr"
        );
        assert_eq!(data(&get(&mut tree, &s, "./DevInfo/Man?prop=Name")), "Man");
        assert_eq!(
            data(&get(&mut tree, &s, "./DevInfo/Man?prop=TStamp")),
            NOW.to_string()
        );
        assert_eq!(get(&mut tree, &s, "./DevInfo?prop=Size").status.code(), 406);
        assert_eq!(get(&mut tree, &s, "./Nope").status.code(), 404);
    }

    // PROTOCOL A.7: status codes for Add, Replace, Delete, properties.
    #[test]
    fn statuses() {
        let mut tree = Tree::default();
        let s = sid("corp");
        assert_eq!(st(&mut tree, &s, add_leaf("./a/b", "x")), 404); // no implicit parent
        assert_eq!(st(&mut tree, &s, add_leaf("./a", "x")), 200);
        assert_eq!(st(&mut tree, &s, add_leaf("./a", "x")), 418);
        assert_eq!(st(&mut tree, &s, add_leaf("./a/b", "x")), 405); // under a leaf
        assert_eq!(st(&mut tree, &s, replace("./a", "y")), 425); // root grants Add, Get only
        assert_eq!(st(&mut tree, &s, Op::Delete(t("."))), 405);
        assert_eq!(st(&mut tree, &s, Op::Delete(t("./a"))), 425);
        assert_eq!(st(&mut tree, &s, Op::Delete(t("./zz"))), 404);
        assert_eq!(st(&mut tree, &s, Op::Delete(t("./a?prop=ACL"))), 405);
        assert_eq!(st(&mut tree, &s, add_leaf("./a?prop=Title", "x")), 405);
        tree.set_acl_local(
            &u("."),
            Acl::parse("Add=*&Get=*&Replace=*&Delete=*&Exec=*").unwrap(),
        );
        assert_eq!(st(&mut tree, &s, replace("./a?prop=Format", "int")), 405);
        assert_eq!(st(&mut tree, &s, replace("./a?prop=ACL", "Get=+")), 400);
        assert_eq!(st(&mut tree, &s, replace(".?prop=ACL", "")), 400);
        assert_eq!(st(&mut tree, &s, replace("./a?prop=Title", "A title")), 200);
        assert_eq!(data(&get(&mut tree, &s, "./a?prop=Title")), "A title");
        assert_eq!(st(&mut tree, &s, replace("./a", "y")), 200);
        assert_eq!(data(&get(&mut tree, &s, "./a?prop=VerNo")), "2");
        assert_eq!(st(&mut tree, &s, add_dir("./d")), 200);
        assert_eq!(st(&mut tree, &s, replace("./d", "y")), 405);
        let r = tree.execute(&s, &Op::Exec(t("./a"), Some(b"go".to_vec())), NOW);
        assert_eq!(
            r.output,
            Some(Output::Exec {
                uri: u("./a"),
                data: Some(b"go".to_vec())
            })
        );
        // rename
        assert_eq!(st(&mut tree, &s, add_leaf("./d/x", "1")), 200);
        assert_eq!(st(&mut tree, &s, replace("./d?prop=Name", "a")), 418);
        assert_eq!(st(&mut tree, &s, replace("./d?prop=Name", "e")), 200);
        assert_eq!(data(&get(&mut tree, &s, "./e/x")), "1");
        assert!(tree.node(&u("./d")).is_none());
        // copy
        assert_eq!(
            st(
                &mut tree,
                &s,
                Op::Copy {
                    source: t("./e"),
                    target: t("./f")
                }
            ),
            200
        );
        assert_eq!(data(&get(&mut tree, &s, "./f/x")), "1");
        assert_eq!(
            st(
                &mut tree,
                &s,
                Op::Copy {
                    source: t("./e"),
                    target: t("./f")
                }
            ),
            418
        );
        assert_eq!(
            st(
                &mut tree,
                &s,
                Op::Copy {
                    source: t("./e"),
                    target: t("./e/g")
                }
            ),
            400
        );
        tree.check_invariants().unwrap();
    }

    // PROTOCOL A.7: Get of a property needs Get on the node; Exec needs Exec; 425 otherwise.
    #[test]
    fn rights_on_properties_and_exec() {
        let mut tree = Tree::default();
        tree.put_local(&u("./n"), NewNode::text("v"), NOW);
        tree.set_acl_local(&u("./n"), Acl::parse("Get=a&Exec=b").unwrap());
        let (a, b) = (sid("a"), sid("b"));
        assert_eq!(data(&get(&mut tree, &a, "./n?prop=ACL")), "Get=a&Exec=b");
        assert_eq!(get(&mut tree, &b, "./n?prop=ACL").status.code(), 425);
        assert_eq!(get(&mut tree, &b, "./n?prop=Type").status.code(), 425);
        assert_eq!(st(&mut tree, &a, Op::Exec(t("./n"), None)), 425);
        assert_eq!(st(&mut tree, &b, Op::Exec(t("./n"), None)), 200);
        assert_eq!(st(&mut tree, &b, Op::Exec(t("./n?prop=ACL"), None)), 405);
        assert_eq!(st(&mut tree, &b, Op::Exec(t("./m"), None)), 404);
    }

    // Limits: 413 for a too large value, 420 when the device is full.
    #[test]
    fn limits() {
        let mut tree = Tree::new(Limits {
            max_nodes: 3,
            max_value_len: 4,
        });
        let s = sid("corp");
        assert_eq!(st(&mut tree, &s, add_leaf("./a", "12345")), 413);
        assert_eq!(st(&mut tree, &s, add_leaf("./a", "1234")), 200);
        assert_eq!(st(&mut tree, &s, add_leaf("./b", "1")), 200);
        assert_eq!(st(&mut tree, &s, add_leaf("./c", "1")), 420);
    }

    // PROTOCOL A.7: an empty ACL takes the nearest ancestor's value whole (no merge).
    #[test]
    fn inheritance() {
        let mut tree = Tree::default();
        tree.put_local(&u("./v/c/a/leaf"), NewNode::text("x"), NOW);
        tree.set_acl_local(&u("./v"), Acl::parse("Get=one&Replace=one").unwrap());
        tree.set_acl_local(&u("./v/c"), Acl::parse("Replace=two").unwrap());
        let (one, two) = (sid("one"), sid("two"));
        assert_eq!(
            tree.effective_acl(&u("./v/c/a/leaf")).unwrap().to_string(),
            "Replace=two"
        );
        // no merge: `one` has Get on ./v but not below ./v/c
        assert!(tree.allows(&u("./v"), AclCmd::Get, &one));
        assert!(!tree.allows(&u("./v/c/a"), AclCmd::Get, &one));
        assert!(!tree.allows(&u("./v/c/a"), AclCmd::Get, &two));
        assert!(tree.allows(&u("./v/c/a/leaf"), AclCmd::Replace, &two));
        assert_eq!(get(&mut tree, &one, "./v/c/a/leaf").status.code(), 425);
        assert_eq!(tree.effective_acl(&u("./other")), None);
        let listed = tree.list(&u("./v/c"));
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[2].effective_acl.to_string(), "Replace=two");
        assert!(listed[2].acl.is_empty());
    }

    // PROTOCOL A.7: who may Replace an ACL — interior: node or parent; leaf: parent only.
    #[test]
    fn acl_change_rule() {
        let mut tree = Tree::default();
        tree.put_local(&u("./p/i/leaf"), NewNode::text("x"), NOW);
        tree.set_acl_local(&u("./p"), Acl::parse("Replace=parent&Get=*").unwrap());
        tree.set_acl_local(&u("./p/i"), Acl::parse("Replace=node&Get=*").unwrap());
        let (parent, node) = (sid("parent"), sid("node"));
        // interior ./p/i: Replace on node (node) or parent (parent)
        assert_eq!(
            st(
                &mut tree,
                &node,
                replace("./p/i?prop=ACL", "Replace=node&Get=*")
            ),
            200
        );
        assert_eq!(
            st(
                &mut tree,
                &parent,
                replace("./p/i?prop=ACL", "Replace=node&Get=*")
            ),
            200
        );
        // leaf ./p/i/leaf: Replace on its parent ./p/i only
        tree.set_acl_local(&u("./p/i/leaf"), Acl::parse("Replace=parent").unwrap());
        assert_eq!(
            st(&mut tree, &parent, replace("./p/i/leaf?prop=ACL", "Get=*")),
            425
        );
        assert_eq!(
            st(&mut tree, &node, replace("./p/i/leaf?prop=ACL", "Get=*")),
            200
        );
        assert_eq!(data(&get(&mut tree, &node, "./p/i/leaf?prop=ACL")), "Get=*");
        // the root: Replace on the root itself
        assert_eq!(st(&mut tree, &node, replace(".?prop=ACL", "Get=*")), 425);
    }

    // PROTOCOL B.6 (full): nodes whose own ACL names the server and whose ACL it may replace.
    #[test]
    fn managed_nodes() {
        let mut tree = Tree::default();
        tree.put_local(&u("./a/leaf"), NewNode::text("x"), NOW);
        tree.put_local(&u("./b/leaf"), NewNode::text("x"), NOW);
        tree.set_acl_local(&u("./a"), Acl::parse("Replace=d1&Get=*").unwrap());
        tree.set_acl_local(&u("./a/leaf"), Acl::parse("Get=d1").unwrap());
        tree.set_acl_local(&u("./b/leaf"), Acl::parse("Get=d1").unwrap());
        assert_eq!(tree.managed_by(&sid("d1")), vec![u("./a"), u("./a/leaf")]);
        assert!(tree.managed_by(&sid("d2")).is_empty());
    }

    // PROTOCOL A.7: Add of an interior node without Replace on the parent gives Add, Delete, Replace.
    #[test]
    fn auto_rights_on_add() {
        let mut tree = Tree::default();
        let s = sid("corp");
        assert_eq!(st(&mut tree, &s, add_dir("./Vendor")), 200);
        assert_eq!(
            tree.node(&u("./Vendor")).unwrap().acl.to_string(),
            "Add=corp&Delete=corp&Replace=corp"
        );
        // leaves inherit
        assert_eq!(st(&mut tree, &s, add_leaf("./Vendor/x", "1")), 200);
        assert!(tree.node(&u("./Vendor/x")).unwrap().acl.is_empty());
        // with Replace on the parent the new node inherits
        assert_eq!(st(&mut tree, &s, add_dir("./Vendor/y")), 200);
        assert!(tree.node(&u("./Vendor/y")).unwrap().acl.is_empty());
        // the other server cannot touch it
        assert_eq!(st(&mut tree, &sid("other"), Op::Delete(t("./Vendor"))), 425);
        assert_eq!(st(&mut tree, &s, Op::Delete(t("./Vendor"))), 200);
        assert_eq!(tree.len(), 1);
    }

    fn add_account(tree: &mut Tree, x: &str, id: &str) {
        let base = format!("./DMAcc/{x}");
        let leaf = |n: &str| u(&format!("{base}/{n}"));
        tree.put_local(&leaf("ServerID"), NewNode::text(id), NOW);
        tree.put_local(
            &leaf("AppAuth/CLCRED/AAuthLevel"),
            NewNode::text("CLCRED"),
            NOW,
        );
        tree.put_local(
            &leaf("AppAuth/CLCRED/AAuthType"),
            NewNode::text("DIGEST"),
            NOW,
        );
        tree.put_local(&leaf("AppAuth/CLCRED/AAuthName"), NewNode::text("dev"), NOW);
        tree.put_local(
            &leaf("AppAuth/CLCRED/AAuthSecret"),
            NewNode::text("s3cret"),
            NOW,
        );
        tree.put_local(
            &leaf("AppAuth/CLCRED/AAuthData"),
            NewNode::text("nonce"),
            NOW,
        );
    }

    // PROTOCOL A.6: DMAcc accounts found; AAuthSecret/AAuthData never readable (405).
    #[test]
    fn dmacc_and_secrets() {
        let mut tree = Tree::standard(&info(), NOW);
        add_account(&mut tree, "corp", "corp.example");
        let accts = tree.dm_accounts();
        assert_eq!(accts.len(), 1);
        assert_eq!(accts[0].server_id, Some(sid("corp.example")));
        let a = &accts[0].app_auth[0];
        assert_eq!(a.auth_type, Some(AuthType::Md5));
        assert_eq!(a.secret.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(a.data, Some(Nonce::from_chr("nonce")));
        assert!(!format!("{accts:?}").contains("s3cret"));
        let s = sid("corp.example");
        let secret = "./DMAcc/corp/AppAuth/CLCRED/AAuthSecret";
        assert_eq!(get(&mut tree, &s, secret).status.code(), 405);
        assert_eq!(
            get(&mut tree, &s, "./DMAcc/corp/AppAuth/CLCRED/AAuthData")
                .status
                .code(),
            405
        );
        assert_eq!(
            data(&get(&mut tree, &s, "./DMAcc/corp/AppAuth/CLCRED/AAuthName")),
            "dev"
        );
        assert!(tree
            .list(&u("."))
            .iter()
            .all(|n| n.uri.name() != "AAuthSecret" || n.value.is_none()));
        assert!(!format!("{tree:?}").contains("s3cret"));
        tree.set_acl_local(&u("."), Acl::parse("Add=*&Get=*&Replace=*").unwrap());
        assert_eq!(
            st(
                &mut tree,
                &s,
                Op::Copy {
                    source: t("./DMAcc/corp"),
                    target: t("./x")
                }
            ),
            405
        );
    }

    // PROTOCOL A.7: deleting a DMAcc scrubs its ServerID from every ACL.
    #[test]
    fn scrub_on_dmacc_delete() {
        let mut tree = Tree::standard(&info(), NOW);
        add_account(&mut tree, "one", "dms1");
        add_account(&mut tree, "two", "dms2");
        tree.set_acl_local(
            &u("."),
            Acl::parse("Add=*&Get=*&Replace=dms1+dms2").unwrap(),
        );
        tree.set_acl_local(
            &u("./DMAcc/one"),
            Acl::parse("Delete=dms1+dms2&Get=dms1").unwrap(),
        );
        tree.set_acl_local(&u("./DevInfo"), Acl::parse("Get=dms1").unwrap());
        let d1 = sid("dms1");
        // deleting a leaf of the account does not scrub
        assert_eq!(
            st(&mut tree, &d1, Op::Delete(t("./DMAcc/one/AppAuth"))),
            200
        );
        assert_eq!(
            tree.node(&u("./DevInfo")).unwrap().acl.to_string(),
            "Get=dms1"
        );
        assert_eq!(st(&mut tree, &d1, Op::Delete(t("./DMAcc/one"))), 200);
        assert_eq!(
            tree.node(&u(".")).unwrap().acl.to_string(),
            "Add=*&Get=*&Replace=dms2"
        );
        assert!(tree.node(&u("./DevInfo")).unwrap().acl.is_empty());
        assert_eq!(tree.dm_accounts().len(), 1);
        tree.check_invariants().unwrap();
        // the root never ends up empty
        tree.set_acl_local(&u("."), Acl::parse("Get=dms2&Delete=dms2").unwrap());
        assert_eq!(st(&mut tree, &sid("dms2"), Op::Delete(t("./DMAcc"))), 200);
        assert_eq!(tree.node(&u(".")).unwrap().acl.to_string(), "Add=*&Get=*");
    }

    // PROTOCOL A.3: Atomic rolls back exactly; 216 / own code / 215, Atomic 507.
    #[test]
    fn atomic_rollback() {
        let mut tree = Tree::standard(&info(), NOW);
        tree.set_acl_local(
            &u("."),
            Acl::parse("Add=*&Get=*&Replace=*&Delete=*").unwrap(),
        );
        let before = tree.clone();
        let s = sid("corp");
        let ops = [
            add_dir("./Vendor"),
            add_leaf("./Vendor/a", "1"),
            replace("./DevInfo/Lang", "de"),
            Op::Delete(t("./DevDetail")),
            add_leaf("./Missing/x", "1"),
            add_leaf("./b", "1"),
        ];
        let later = Timestamp(NOW.0 + 100);
        let r = tree.atomic(&s, &ops, later);
        assert_eq!(r.status.code(), 507);
        let codes: Vec<u16> = r.results.iter().map(|r| r.status.code()).collect();
        assert_eq!(codes, [216, 216, 216, 216, 404, 215]);
        assert_eq!(tree, before);
        let ok = tree.atomic(&s, &ops[..4], later);
        assert_eq!(ok.status.code(), 200);
        assert!(ok.results.iter().all(|r| r.status.code() == 200));
        assert_ne!(tree, before);
    }

    // PROTOCOL A.3: Sequence stops after a failure; the rest get 215.
    #[test]
    fn sequence_stops() {
        let mut tree = Tree::default();
        let s = sid("corp");
        let ops = [
            add_leaf("./a", "1"),
            add_leaf("./a", "2"),
            add_leaf("./b", "1"),
            Op::Get(t("./a")),
        ];
        let r = tree.sequence(&s, &ops, NOW);
        let codes: Vec<u16> = r.results.iter().map(|r| r.status.code()).collect();
        assert_eq!(codes, [200, 418, 215, 215]);
        assert!(tree.node(&u("./a")).is_some());
        assert!(tree.node(&u("./b")).is_none());
    }

    // The simulator persists trees (serde feature); a bad stored tree is refused.
    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip() {
        let mut tree = Tree::standard(&info(), NOW);
        add_account(&mut tree, "corp", "corp.example");
        tree.set_acl_local(&u("./DevInfo"), Acl::parse("Get=corp.example+*").unwrap());
        let json = serde_json::to_string(&tree).unwrap();
        assert!(json.contains("\"Get=corp.example+*\""));
        let back: Tree = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tree);
        let broken = json.replace("\"./DevInfo\"", "\"./Gone\"");
        assert!(serde_json::from_str::<Tree>(&broken).is_err());
    }

    fn arb_op() -> impl Strategy<Value = (usize, Op)> {
        let path = prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
            .prop_map(|s| format!("./{}", s.join("/")));
        let target = (
            path.clone(),
            prop::option::of(prop::sample::select(vec!["ACL", "Name", "Title", "Size"])),
        )
            .prop_map(|(p, prop)| match prop {
                Some(n) => format!("{p}?prop={n}"),
                None => p,
            });
        let value = prop::sample::select(vec![
            "1",
            "x",
            "Get=*",
            "Add=*&Get=*&Replace=s0",
            "Replace=s1",
            "",
            "a",
            "b",
        ]);
        let op = prop_oneof![
            target.clone().prop_map(|p| Op::Get(t(&p))),
            path.clone().prop_map(|p| add_dir(&p)),
            (path.clone(), value.clone()).prop_map(|(p, v)| add_leaf(&p, v)),
            (target.clone(), value).prop_map(|(p, v)| replace(&p, v)),
            target.clone().prop_map(|p| Op::Delete(t(&p))),
            (path.clone(), path).prop_map(|(a, b)| Op::Copy {
                source: t(&a),
                target: t(&b)
            }),
        ];
        (0usize..2, op)
    }

    proptest! {
        // PROTOCOL A.7: invariants hold under any operation sequence, and a
        // successful Replace is read back by Get.
        #[test]
        fn random_ops_keep_invariants(
            ops in prop::collection::vec(arb_op(), 1..40),
            atomic in any::<bool>(),
        ) {
            let servers = [sid("s0"), sid("s1")];
            let mut tree = Tree::default();
            tree.set_acl_local(&u("."), Acl::parse("Add=*&Get=*&Replace=s0&Delete=s0+s1").unwrap());
            for (i, (who, op)) in ops.iter().enumerate() {
                let s = &servers[*who];
                let r = if atomic && i % 5 == 0 {
                    let before = tree.clone();
                    let b = tree.atomic(s, std::slice::from_ref(op), Timestamp(i as u64));
                    if b.status.code() == 507 {
                        prop_assert_eq!(&tree, &before);
                    }
                    b.results[0].clone()
                } else {
                    tree.execute(s, op, Timestamp(i as u64))
                };
                prop_assert!(tree.check_invariants().is_ok(), "{:?}", tree.check_invariants());
                if let (Op::Replace { target, data: v, .. }, 200) = (op, r.status.code()) {
                    if let Target::Prop(_, Property::Name) = target {
                        continue;
                    }
                    let g = tree.execute(s, &Op::Get(target.clone()), Timestamp(i as u64));
                    if g.status.code() == 200 {
                        let Some(Output::Item { data, .. }) = g.output else { panic!() };
                        prop_assert_eq!(&data, v);
                    }
                }
            }
        }
    }
}

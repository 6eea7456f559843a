//! Delegation requests, their preview, the approvals inbox and the list of
//! delegations (PROTOCOL B.4–B.6, PRODUCT "Request a delegation").

use super::devices::{encode_component, DeviceSelection};
use super::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The rights a subtree can be delegated with (A.7), in the order shown.
pub const RIGHTS: [&str; 5] = ["Add", "Delete", "Exec", "Get", "Replace"];

/// The states a delegation passes through, in order, for the filter.
pub const STATES: [&str; 16] = [
    "AwaitingRequestApproval",
    "AwaitingAuthChallenge",
    "AwaitingAuthResponse",
    "AwaitingApproval",
    "AwaitingAccept",
    "PreparingClient",
    "AwaitingStart",
    "Bootstrapping",
    "AwaitingBootstrapped",
    "UpdatingAcls",
    "Completing",
    "AwaitingComplete",
    "Completed",
    "Aborted",
    "Revoked",
    "Relinquished",
];

/// A state name in plain words.
pub fn state_words(state: &str) -> &'static str {
    match state {
        "AwaitingRequestApproval" => "Waiting for a second person here",
        "AwaitingAuthChallenge" | "AwaitingAuthResponse" => "Authenticating with the peer",
        "AwaitingApproval" => "Waiting for our approval",
        "AwaitingAccept" => "Waiting for the peer to accept",
        "PreparingClient" => "Preparing the device",
        "AwaitingStart" => "Waiting for the peer to start",
        "Bootstrapping" | "AwaitingBootstrapped" => "Bootstrapping the device",
        "UpdatingAcls" => "Updating the device's ACLs",
        "Completing" | "AwaitingComplete" => "Completing",
        "Completed" => "Completed",
        "Aborted" => "Aborted",
        "Revoked" => "Revoked",
        "Relinquished" => "Relinquished",
        _ => "Unknown state",
    }
}

/// A subtree of a partial delegation with its rights (`Get,Replace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeItem {
    pub uri: String,
    pub rights: String,
}

/// One delegation as the lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRow {
    pub id: i64,
    pub delegation_id: String,
    pub devid: String,
    pub peer: String,
    /// `dms1` (we delegate) or `dms2` (we are delegated to).
    pub role: String,
    /// True when this server started it.
    pub initiator: bool,
    /// `full` or `partial`.
    pub kind: String,
    /// `permanent` or `temporary`.
    pub term: String,
    /// Unix milliseconds, for `temporary`.
    pub expires_at: Option<i64>,
    pub scope: Vec<ScopeItem>,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub state: String,
    /// Empty while running.
    pub outcome: String,
    /// The current deadline (unix milliseconds): a pending request expires then.
    pub wake_at: Option<i64>,
    pub created_at: i64,
    pub batch_id: Option<i64>,
}

impl DelegationRow {
    pub fn role_words(&self) -> &'static str {
        if self.role == "dms1" {
            "delegating"
        } else {
            "delegated"
        }
    }
}

/// The page of one delegation (built elsewhere; linked from every list).
pub fn delegation_href(id: i64) -> String {
    format!("/delegations/{id}")
}

/// A column the Delegations page sorts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DelegationSort {
    /// When it was requested (the default, newest first).
    #[default]
    Started,
    Device,
    Peer,
    State,
}

impl DelegationSort {
    pub const ALL: [DelegationSort; 4] = [
        DelegationSort::Started,
        DelegationSort::Device,
        DelegationSort::Peer,
        DelegationSort::State,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DelegationSort::Started => "started",
            DelegationSort::Device => "device",
            DelegationSort::Peer => "peer",
            DelegationSort::State => "state",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DelegationSort::Started => "Started",
            DelegationSort::Device => "Device",
            DelegationSort::Peer => "Peer",
            DelegationSort::State => "State",
        }
    }

    pub fn parse(s: &str) -> Option<DelegationSort> {
        DelegationSort::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The direction a first click on the column sorts in: newest first
    /// for times, A→Z for the rest.
    pub fn natural_desc(self) -> bool {
        self == DelegationSort::Started
    }
}

/// Rows per page of the Delegations page.
pub const DELEGATIONS_PER_PAGE: i64 = 50;

/// The filters, order and page of the Delegations page, exactly as in its
/// URL; empty filters mean any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DelegationFilter {
    /// `open`, `ended` or a state name.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub peer: String,
    /// A batch number.
    #[serde(default)]
    pub batch: String,
    #[serde(default)]
    pub sort: DelegationSort,
    /// Descending; when absent, the sort's natural direction (see
    /// [`DelegationFilter::descending`]).
    #[serde(default)]
    pub desc: Option<bool>,
    /// From 1; 0 is read as 1.
    #[serde(default)]
    pub page: i64,
}

impl DelegationFilter {
    pub fn from_pairs(get: impl Fn(&str) -> Option<String>) -> Self {
        let text = |k: &str| get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        let sort = DelegationSort::parse(&text("sort")).unwrap_or_default();
        let desc = match text("dir").as_str() {
            "asc" => Some(false),
            "desc" => Some(true),
            _ => None,
        };
        DelegationFilter {
            state: text("state"),
            device: text("device"),
            peer: text("peer"),
            batch: text("batch"),
            sort,
            desc,
            page: text("page").parse::<i64>().unwrap_or(1).clamp(1, 1_000_000),
        }
    }

    /// Whether the order is descending.
    pub fn descending(&self) -> bool {
        self.desc.unwrap_or(self.sort.natural_desc())
    }

    /// The same filters in another order, from the first page.
    pub fn sorted_by(&self, sort: DelegationSort, desc: bool) -> Self {
        DelegationFilter {
            sort,
            desc: (desc != sort.natural_desc()).then_some(desc),
            page: 1,
            ..self.clone()
        }
    }

    /// The same filters and order on page `page`.
    pub fn with_page(&self, page: i64) -> Self {
        DelegationFilter {
            page,
            ..self.clone()
        }
    }

    /// `/delegations?…` for these filters, order and page.
    pub fn href(&self) -> String {
        let sort = (self.sort != DelegationSort::default()).then(|| self.sort.as_str().to_owned());
        let desc = self.descending();
        let dir = (desc != self.sort.natural_desc())
            .then(|| if desc { "desc" } else { "asc" }.to_owned());
        let page = (self.page > 1).then(|| self.page.to_string());
        let q: Vec<String> = [
            ("state", Some(self.state.clone())),
            ("device", Some(self.device.clone())),
            ("peer", Some(self.peer.clone())),
            ("batch", Some(self.batch.clone())),
            ("sort", sort),
            ("dir", dir),
            ("page", page),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
        .map(|(k, v)| format!("{k}={}", encode_component(&v)))
        .collect();
        if q.is_empty() {
            "/delegations".to_owned()
        } else {
            format!("/delegations?{}", q.join("&"))
        }
    }
}

/// One page of the Delegations page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationPage {
    pub rows: Vec<DelegationRow>,
    /// How many delegations match, over all pages.
    pub total: i64,
    /// From 1.
    pub page: i64,
    pub per_page: i64,
}

impl DelegationPage {
    pub fn pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page.max(1)).max(1)
    }
}

/// A peer to pick, as configured (B.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerChoice {
    pub server_id: String,
    pub fingerprint: String,
}

/// An interior node of the first device's tree that a partial scope can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeNode {
    pub uri: String,
    pub depth: usize,
    /// The ACL in force there now.
    pub effective_acl: String,
    /// Why this server cannot delegate it; empty when it can.
    pub refused: String,
}

/// What the request form offers for a selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOptions {
    pub peers: Vec<PeerChoice>,
    /// Devices the selection names now.
    pub devices: i64,
    /// The first few of them.
    pub sample: Vec<String>,
    /// The device whose tree the subtrees are picked from.
    pub tree_device: Option<String>,
    pub nodes: Vec<ScopeNode>,
}

/// The request form as submitted. `grants` holds `<uri>|<Right>` for every
/// ticked right; `until` is a date (YYYY-MM-DD) that starts in the time zone
/// `tz_offset` minutes east of UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDraft {
    /// A [`DeviceSelection`] as JSON.
    #[serde(default)]
    pub selection: String,
    #[serde(default)]
    pub peer: String,
    /// `full` or `partial`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub grants: BTreeMap<String, String>,
    /// `permanent` or `temporary`.
    #[serde(default)]
    pub term: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub tz_offset: String,
    #[serde(default)]
    pub reason: String,
}

impl RequestDraft {
    /// The ticked subtrees with their rights, in URI order.
    pub fn scope(&self) -> Vec<ScopeItem> {
        let mut by_uri: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for g in self.grants.values() {
            if let Some((uri, right)) = g.rsplit_once('|') {
                by_uri.entry(uri).or_default().push(right);
            }
        }
        by_uri
            .into_iter()
            .map(|(uri, mut rights)| {
                rights.sort_by_key(|r| RIGHTS.iter().position(|x| x == r));
                rights.dedup();
                ScopeItem {
                    uri: uri.to_owned(),
                    rights: rights.join(","),
                }
            })
            .collect()
    }

    pub fn grant_value(uri: &str, right: &str) -> String {
        format!("{uri}|{right}")
    }
}

/// One ACL before and after step 6 (B.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclChangeRow {
    pub uri: String,
    /// The node's own ACL; empty means inherited.
    pub stored: String,
    /// The ACL it inherits now.
    pub inherited: String,
    pub new: String,
}

/// What a request would do to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePreview {
    pub devid: String,
    /// `./DMAcc/<x>` added for the peer (B.5 step 1); empty when unknown.
    pub account_node: String,
    pub account_acl: String,
    pub changes: Vec<AclChangeRow>,
    /// Why the request cannot go ahead for this device.
    pub problems: Vec<String>,
    /// Something to know that does not stop the request.
    pub notes: Vec<String>,
}

/// The preview of a request, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPreview {
    /// The form as checked, to send as is.
    pub draft: RequestDraft,
    pub peer: String,
    pub kind: String,
    pub scope: Vec<ScopeItem>,
    /// Unix milliseconds, for a temporary delegation.
    pub expires_at: Option<i64>,
    pub devices: i64,
    /// At most [`PREVIEW_DEVICES`] devices; problems are counted over all.
    pub previews: Vec<DevicePreview>,
    pub with_problems: i64,
}

/// Devices previewed one by one; beyond them only problems are counted.
pub const PREVIEW_DEVICES: usize = 200;

/// The batch a sent request made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSent {
    pub batch_id: i64,
    pub delegations: Vec<i64>,
}

/// A signature of the terms as recorded when it was checked (B.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRow {
    pub signer: String,
    pub signature: String,
    pub verified: bool,
}

/// A request from a peer waiting for our decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingRequest {
    pub row: DelegationRow,
    /// The peer's pinned certificate fingerprint (B.1); empty if no longer configured.
    pub fingerprint: String,
    pub peer_url: String,
    pub signatures: Vec<SignatureRow>,
}

/// The approvals inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvals {
    /// Our requests waiting for a second person.
    pub outgoing: Vec<DelegationRow>,
    /// Peers' requests waiting for us.
    pub incoming: Vec<IncomingRequest>,
}

/// The request page for a selection of the Devices page.
pub fn new_request_href(selection: &DeviceSelection) -> String {
    match selection {
        DeviceSelection::Devids(d) => {
            let q: Vec<String> = d
                .iter()
                .map(|x| format!("devid={}", encode_component(x)))
                .collect();
            format!("/delegations/new?{}", q.join("&"))
        }
        DeviceSelection::Query(q) => {
            let s = q.matching_only().to_query_string();
            if s.is_empty() {
                "/delegations/new?all=1".to_owned()
            } else {
                format!("/delegations/new?all=1&{s}")
            }
        }
    }
}

/// The selection a request page's URL names (see [`new_request_href`]),
/// from its decoded query values.
pub fn selection_from_pairs(
    get: impl Fn(&str) -> Option<String>,
    get_all: impl Fn(&str) -> Vec<String>,
) -> DeviceSelection {
    if get("all").is_some() {
        let q = super::devices::DeviceQuery::from_pairs(get);
        DeviceSelection::Query(q.matching_only())
    } else {
        DeviceSelection::Devids(
            get_all("devid")
                .into_iter()
                .map(|d| d.trim().to_owned())
                .filter(|d| !d.is_empty())
                .collect(),
        )
    }
}

#[server(endpoint = "delegations/options")]
pub async fn get_request_options(selection: String) -> Result<RequestOptions, AppError> {
    super::with_backend(|b, req| async move { b.request_options(&req, selection).await }).await
}

#[server(endpoint = "delegations/preview")]
pub async fn preview_request(
    #[server(default)] draft: RequestDraft,
) -> Result<RequestPreview, AppError> {
    super::with_backend(|b, req| async move { b.request_preview(&req, draft).await }).await
}

#[server(endpoint = "delegations/send")]
pub async fn send_request(#[server(default)] draft: RequestDraft) -> Result<RequestSent, AppError> {
    super::with_backend(|b, req| async move { b.request_send(&req, draft).await }).await
}

#[server(endpoint = "delegations/list")]
pub async fn list_delegations(
    #[server(default)] filter: DelegationFilter,
) -> Result<DelegationPage, AppError> {
    super::with_backend(|b, req| async move { b.delegations_list(&req, filter).await }).await
}

#[server(endpoint = "approvals/list")]
pub async fn list_approvals() -> Result<Approvals, AppError> {
    super::with_backend(|b, req| async move { b.approvals(&req).await }).await
}

#[server(endpoint = "approvals/count")]
pub async fn count_approvals() -> Result<i64, AppError> {
    super::with_backend(|b, req| async move { b.approvals_waiting(&req).await }).await
}

#[server(endpoint = "approvals/approve")]
pub async fn approve_delegation(id: i64) -> Result<(), AppError> {
    super::with_backend(|b, req| async move { b.approve(&req, id).await }).await
}

/// What approving several requests at once did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkDecision {
    pub approved: i64,
    /// (delegation, why it was not approved), e.g. the caller's own request
    /// or one another approver decided meanwhile.
    pub refused: Vec<(i64, String)>,
}

/// Requests that can be decided together: those of one batch (ours), or a
/// peer's requests with the same terms (theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestGroup {
    /// e.g. "Batch 12" or "Same terms from carrier.example".
    pub title: String,
    pub ids: Vec<i64>,
}

/// Groups our waiting requests by batch, in the order first seen.
pub fn group_outgoing(rows: &[DelegationRow]) -> Vec<RequestGroup> {
    group_by(rows, |r| match r.batch_id {
        Some(b) => (format!("b{b}"), format!("Batch {b}")),
        None => (format!("d{}", r.id), format!("Request {}", r.id)),
    })
}

/// Groups a peer's waiting requests by identical terms (peer, type, scope,
/// term, expiry, reason), in the order first seen.
pub fn group_incoming(rows: &[IncomingRequest]) -> Vec<RequestGroup> {
    group_by(rows.iter().map(|r| &r.row), |r| {
        let scope: Vec<String> = r
            .scope
            .iter()
            .map(|s| format!("{}={}", s.uri, s.rights))
            .collect();
        (
            format!(
                "{}|{}|{}|{}|{:?}|{}",
                r.peer,
                r.kind,
                scope.join(";"),
                r.term,
                r.expires_at,
                r.reason
            ),
            format!("Same terms from {}", r.peer),
        )
    })
}

fn group_by<'a>(
    rows: impl IntoIterator<Item = &'a DelegationRow>,
    key: impl Fn(&DelegationRow) -> (String, String),
) -> Vec<RequestGroup> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, RequestGroup> = BTreeMap::new();
    for r in rows {
        let (k, title) = key(r);
        groups
            .entry(k.clone())
            .or_insert_with(|| {
                order.push(k);
                RequestGroup {
                    title,
                    ids: Vec::new(),
                }
            })
            .ids
            .push(r.id);
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .collect()
}

/// The most requests one "approve all" decides.
pub const BULK_MAX: usize = 10_000;

/// Approves every request in `ids` the caller may approve (never their own).
#[server(endpoint = "approvals/approve-all")]
pub async fn approve_all(#[server(default)] ids: Vec<i64>) -> Result<BulkDecision, AppError> {
    super::with_backend(|b, req| async move { b.approve_all(&req, ids).await }).await
}

#[server(endpoint = "approvals/reject")]
pub async fn reject_delegation(id: i64, #[server(default)] reason: String) -> Result<(), AppError> {
    super::with_backend(|b, req| async move { b.reject(&req, id, reason).await }).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::devices::DeviceQuery;

    #[test]
    fn grants_make_a_scope() {
        let mut d = RequestDraft::default();
        for (i, g) in ["./Vendor|Replace", "./Vendor|Get", "./DevInfo|Get", "junk"]
            .into_iter()
            .enumerate()
        {
            d.grants.insert(i.to_string(), g.to_owned());
        }
        assert_eq!(
            d.scope(),
            vec![
                ScopeItem {
                    uri: "./DevInfo".into(),
                    rights: "Get".into()
                },
                ScopeItem {
                    uri: "./Vendor".into(),
                    rights: "Get,Replace".into()
                },
            ]
        );
    }

    #[test]
    fn a_selection_travels_in_the_url() {
        let s = DeviceSelection::Devids(vec!["IMEI:1".into(), "a b".into()]);
        let href = new_request_href(&s);
        assert_eq!(href, "/delegations/new?devid=IMEI%3A1&devid=a%20b");
        let pairs: Vec<(String, String)> = href
            .split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), crate::api::devices::decode_component(v))
            })
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let get_all = |k: &str| {
            pairs
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect()
        };
        assert_eq!(selection_from_pairs(get, get_all), s);
        let all = DeviceSelection::Query(DeviceQuery {
            man: "Acme".into(),
            ..Default::default()
        });
        assert_eq!(new_request_href(&all), "/delegations/new?all=1&man=Acme");
    }

    #[test]
    fn the_delegations_url_keeps_filters_order_and_page() {
        let pairs = |href: &str| -> Vec<(String, String)> {
            href.split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_owned(), v.replace("%3A", ":"))
                })
                .collect()
        };
        let parse = |href: &str| {
            let p = pairs(href);
            DelegationFilter::from_pairs(|k| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone()))
        };
        let default = parse("/delegations");
        assert_eq!(default.sort, DelegationSort::Started);
        assert!(default.descending(), "newest first by default");
        assert_eq!(default.page, 1);
        assert_eq!(default.href(), "/delegations");

        let f = DelegationFilter {
            device: "IMEI:1".into(),
            ..default.clone()
        }
        .sorted_by(DelegationSort::Peer, false)
        .with_page(3);
        assert_eq!(f.href(), "/delegations?device=IMEI%3A1&sort=peer&page=3");
        assert_eq!(parse(&f.href()), f);
        let oldest = default.sorted_by(DelegationSort::Started, false);
        assert_eq!(oldest.href(), "/delegations?dir=asc");
        assert_eq!(parse(&oldest.href()), oldest);
        assert_eq!(parse("/delegations?page=-4&sort=nonsense").page, 1);
        assert_eq!(
            parse("/delegations?sort=nonsense").sort,
            DelegationSort::Started
        );

        let page = DelegationPage {
            rows: vec![],
            total: 101,
            page: 1,
            per_page: 50,
        };
        assert_eq!(page.pages(), 3);
        assert_eq!(DelegationPage { total: 0, ..page }.pages(), 1);
    }
}

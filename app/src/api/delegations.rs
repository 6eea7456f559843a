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

/// The filters of the Delegations page, exactly as in its URL; empty means any.
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
}

impl DelegationFilter {
    pub fn from_pairs(get: impl Fn(&str) -> Option<String>) -> Self {
        let text = |k: &str| get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        DelegationFilter {
            state: text("state"),
            device: text("device"),
            peer: text("peer"),
            batch: text("batch"),
        }
    }

    /// `/delegations?…` for these filters.
    pub fn href(&self) -> String {
        let q: Vec<String> = [
            ("state", &self.state),
            ("device", &self.device),
            ("peer", &self.peer),
            ("batch", &self.batch),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect();
        if q.is_empty() {
            "/delegations".to_owned()
        } else {
            format!("/delegations?{}", q.join("&"))
        }
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
) -> Result<Vec<DelegationRow>, AppError> {
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
}

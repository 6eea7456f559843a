//! The device inventory (viewer only): search, one device, and the selection
//! the delegation pages act on.

use super::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Rows per page of the Devices table.
pub const PAGE_SIZE: i64 = 50;

/// Counting stops here: "more than 10 000" is all a person needs, and an exact
/// count of a broad substring search would read every row.
pub const COUNT_CAP: i64 = 10_000;

/// The columns the Devices table sorts by. DevId breaks ties, so pages are stable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSort {
    #[default]
    Devid,
    Man,
    Model,
    LastSeen,
}

impl DeviceSort {
    pub const ALL: [DeviceSort; 4] = [
        DeviceSort::Devid,
        DeviceSort::Man,
        DeviceSort::Model,
        DeviceSort::LastSeen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceSort::Devid => "devid",
            DeviceSort::Man => "man",
            DeviceSort::Model => "model",
            DeviceSort::LastSeen => "last_seen",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DeviceSort::Devid => "DevId",
            DeviceSort::Man => "Manufacturer",
            DeviceSort::Model => "Model",
            DeviceSort::LastSeen => "Last seen",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceSort> {
        DeviceSort::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What the Devices page shows: search, filters, order and page, exactly as
/// in its URL. Empty strings mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceQuery {
    /// Part of a DevId (any position, case-insensitive).
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub man: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub authority: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub sort: DeviceSort,
    #[serde(default)]
    pub desc: bool,
    /// 1-based.
    #[serde(default = "first_page")]
    pub page: i64,
}

fn first_page() -> i64 {
    1
}

impl Default for DeviceQuery {
    fn default() -> Self {
        DeviceQuery {
            q: String::new(),
            man: String::new(),
            model: String::new(),
            authority: String::new(),
            state: String::new(),
            sort: DeviceSort::Devid,
            desc: false,
            page: 1,
        }
    }
}

impl DeviceQuery {
    /// Reads the page's URL query; unknown or malformed values fall back to defaults.
    pub fn from_pairs(get: impl Fn(&str) -> Option<String>) -> DeviceQuery {
        let text = |k: &str| get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        DeviceQuery {
            q: text("q"),
            man: text("man"),
            model: text("model"),
            authority: text("authority"),
            state: text("state"),
            sort: DeviceSort::parse(&text("sort")).unwrap_or_default(),
            desc: text("dir") == "desc",
            page: text("page")
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 1)
                .unwrap_or(1),
        }
    }

    /// The URL query that shows this search, without defaults.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("q", &self.q),
            ("man", &self.man),
            ("model", &self.model),
            ("authority", &self.authority),
            ("state", &self.state),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", encode_component(v)));
            }
        }
        if self.sort != DeviceSort::Devid {
            parts.push(format!("sort={}", self.sort.as_str()));
        }
        if self.desc {
            parts.push("dir=desc".to_owned());
        }
        if self.page > 1 {
            parts.push(format!("page={}", self.page));
        }
        parts.join("&")
    }

    /// `/devices?…` for this search.
    pub fn href(&self) -> String {
        let q = self.to_query_string();
        if q.is_empty() {
            "/devices".to_owned()
        } else {
            format!("/devices?{q}")
        }
    }

    /// True when any search or filter narrows the list.
    pub fn is_filtered(&self) -> bool {
        !(self.q.is_empty()
            && self.man.is_empty()
            && self.model.is_empty()
            && self.authority.is_empty()
            && self.state.is_empty())
    }

    /// The same search on another page.
    pub fn with_page(&self, page: i64) -> DeviceQuery {
        DeviceQuery {
            page,
            ..self.clone()
        }
    }

    /// The same search, matching devices only (page and order dropped), as a
    /// selection keeps it.
    pub fn matching_only(&self) -> DeviceQuery {
        DeviceQuery {
            q: self.q.clone(),
            man: self.man.clone(),
            model: self.model.clone(),
            authority: self.authority.clone(),
            state: self.state.clone(),
            ..DeviceQuery::default()
        }
    }
}

/// One row of the Devices table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    pub devid: String,
    pub man: String,
    pub model: String,
    pub authority: String,
    /// provisioned | active | handed-over
    pub state: String,
    /// Unix milliseconds; none if the device never connected.
    pub last_seen: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePage {
    pub rows: Vec<DeviceRow>,
    /// Matching devices, counted up to [`COUNT_CAP`].
    pub total: i64,
    /// True when more than [`COUNT_CAP`] devices match (then `total` is the cap).
    pub more: bool,
    pub page: i64,
    pub page_size: i64,
}

impl DevicePage {
    /// Pages with rows, as far as counted.
    pub fn pages(&self) -> i64 {
        ((self.total + self.page_size - 1) / self.page_size).max(1)
    }
}

/// The values the filters offer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFacets {
    pub man: Vec<String>,
    pub model: Vec<String>,
    pub authority: Vec<String>,
    pub state: Vec<String>,
}

/// Devices picked on the Devices page: a list, or every device a search
/// matches (resolved by the server when acted on, so it names the devices
/// matching at that moment). Serializes as `{"devids":[…]}` or `{"query":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSelection {
    Devids(Vec<String>),
    Query(DeviceQuery),
}

impl Default for DeviceSelection {
    fn default() -> Self {
        DeviceSelection::Devids(Vec::new())
    }
}

impl DeviceSelection {
    pub fn is_empty(&self) -> bool {
        matches!(self, DeviceSelection::Devids(d) if d.is_empty())
    }

    pub fn contains(&self, devid: &str) -> bool {
        match self {
            DeviceSelection::Devids(d) => d.iter().any(|x| x == devid),
            DeviceSelection::Query(_) => true,
        }
    }

    /// Adds or removes one device; a whole-query selection is left as is.
    pub fn toggle(&mut self, devid: &str, on: bool) {
        if let DeviceSelection::Devids(d) = self {
            let at = d.iter().position(|x| x == devid);
            match (at, on) {
                (None, true) => d.push(devid.to_owned()),
                (Some(i), false) => {
                    d.remove(i);
                }
                _ => {}
            }
        }
    }
}

/// A node of the device's tree as last read, with its ACL (PROTOCOL A.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNodeRow {
    pub uri: String,
    /// The last path segment (`.` for the root).
    pub name: String,
    /// 0 for the root.
    pub depth: usize,
    /// interior | leaf
    pub kind: String,
    pub format: String,
    pub mime: String,
    pub value: String,
    /// The node's own ACL; empty means inherited.
    pub acl: String,
    /// The ACL in force: the node's own, or the nearest ancestor's.
    pub effective_acl: String,
    /// The node the effective ACL comes from, when it is inherited.
    pub inherited_from: Option<String>,
}

/// One DM session of the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub session_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    /// completed | auth-failed | aborted | expired | error
    pub outcome: String,
    pub messages: i64,
    pub commands: i64,
    pub source: String,
}

/// One queued or finished DM command for the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: i64,
    /// The command as stored (JSON).
    pub command: String,
    /// queued | sent | succeeded | failed
    pub state: String,
    pub status: Option<i64>,
    /// The status code in plain words.
    pub status_meaning: String,
    pub error: String,
    pub requested_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Everything the device page shows. No secrets: credentials stay on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDetail {
    pub devid: String,
    pub man: String,
    pub model: String,
    pub dmv: String,
    pub lang: String,
    /// DevDetail as (name, value) pairs.
    pub devdetail: Vec<(String, String)>,
    pub auth_type: String,
    pub push_address: String,
    pub authority: String,
    pub state: String,
    pub created_at: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Sorted by URI.
    pub tree: Vec<TreeNodeRow>,
    /// Latest first, at most 20.
    pub sessions: Vec<SessionRow>,
    /// Latest first, at most 50.
    pub jobs: Vec<JobRow>,
}

#[server(endpoint = "devices/list")]
pub async fn list_devices(#[server(default)] query: DeviceQuery) -> Result<DevicePage, AppError> {
    super::with_backend(|b, req| async move { b.devices_list(&req, query).await }).await
}

#[server(endpoint = "devices/facets")]
pub async fn list_device_facets() -> Result<DeviceFacets, AppError> {
    super::with_backend(|b, req| async move { b.devices_facets(&req).await }).await
}

#[server(endpoint = "devices/get")]
pub async fn get_device(devid: String) -> Result<DeviceDetail, AppError> {
    super::with_backend(|b, req| async move { b.device_get(&req, devid).await }).await
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// DevId in a path or a value in a query.
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Undoes [`encode_component`]; text without `%` escapes is returned as is
/// (the router hands over path segments decoded on the server, partly
/// decoded in the browser).
pub fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The device page of `devid`.
pub fn device_href(devid: &str) -> String {
    format!("/devices/{}", encode_component(devid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_through_the_url() {
        let q = DeviceQuery {
            q: "IMEI:49 x".into(),
            man: "Acme & Co".into(),
            state: "active".into(),
            sort: DeviceSort::LastSeen,
            desc: true,
            page: 3,
            ..Default::default()
        };
        let s = q.to_query_string();
        assert_eq!(
            s,
            "q=IMEI%3A49%20x&man=Acme%20%26%20Co&state=active&sort=last_seen&dir=desc&page=3"
        );
        let pairs: Vec<(String, String)> = s
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), decode_component(v))
            })
            .collect();
        let back =
            DeviceQuery::from_pairs(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        assert_eq!(back, q);
        assert_eq!(DeviceQuery::default().href(), "/devices");
        assert_eq!(DeviceQuery::from_pairs(|_| Some("x".into())).page, 1);
    }

    #[test]
    fn devids_survive_a_path() {
        assert_eq!(
            device_href("IMEI:49015420323751"),
            "/devices/IMEI%3A49015420323751"
        );
        assert_eq!(
            decode_component("IMEI%3A49015420323751"),
            "IMEI:49015420323751"
        );
        assert_eq!(decode_component("IMEI:4901"), "IMEI:4901");
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(decode_component("%e2%82%ac"), "€");
    }

    #[test]
    fn selection_serializes_for_the_delegation_request() {
        let mut s = DeviceSelection::default();
        s.toggle("a", true);
        s.toggle("b", true);
        s.toggle("a", false);
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"devids":["b"]}"#);
        let all = DeviceSelection::Query(DeviceQuery {
            man: "Acme".into(),
            ..Default::default()
        });
        assert!(all.contains("anything"));
        let json = serde_json::to_string(&all).unwrap();
        assert!(
            json.starts_with(r#"{"query":{"q":"","man":"Acme""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<DeviceSelection>(&json).unwrap(), all);
    }
}

//! The Devices pages' server side (viewer only): search, filters, one device
//! with its tree, ACLs, sessions and jobs.

use super::auth::internal;
use super::Portal;
use crate::dm::acl::Acl;
use crate::dm::StatusCode;
use crate::store::{devices, inventory};
use handover_app::api::devices::{
    DeviceDetail, DeviceFacets, DevicePage, DeviceQuery, JobRow, SessionRow, TreeNodeRow,
    COUNT_CAP, PAGE_SIZE,
};
use handover_app::api::AppError;
use http::request::Parts;
use std::collections::HashMap;

/// Longest search text and filter value taken (a DevId is at most 255 bytes, B.9).
const MAX_FIELD: usize = 255;

fn check_query(q: &DeviceQuery) -> Result<(), AppError> {
    for (field, v) in [
        ("q", &q.q),
        ("man", &q.man),
        ("model", &q.model),
        ("authority", &q.authority),
        ("state", &q.state),
    ] {
        if v.len() > MAX_FIELD {
            return Err(AppError::invalid(field, "at most 255 bytes"));
        }
    }
    if q.page < 1 {
        return Err(AppError::invalid("page", "pages start at 1"));
    }
    Ok(())
}

impl Portal {
    pub(super) async fn list_devices(
        &self,
        req: &Parts,
        mut query: DeviceQuery,
    ) -> Result<DevicePage, AppError> {
        self.viewer(req, "see devices").await?;
        query.q = query.q.trim().to_owned();
        check_query(&query)?;
        let (rows, total) = inventory::page(&self.db, &query).await.map_err(internal)?;
        Ok(DevicePage {
            rows,
            total: total.min(COUNT_CAP),
            more: total > COUNT_CAP,
            page: query.page,
            page_size: PAGE_SIZE,
        })
    }

    pub(super) async fn device_facets(&self, req: &Parts) -> Result<DeviceFacets, AppError> {
        self.viewer(req, "see devices").await?;
        inventory::facets(&self.db).await.map_err(internal)
    }

    pub(super) async fn device_detail(
        &self,
        req: &Parts,
        devid: String,
    ) -> Result<DeviceDetail, AppError> {
        self.viewer(req, "see devices").await?;
        let not_found = || AppError::NotFound(format!("Device {devid}"));
        if devid.len() > MAX_FIELD {
            return Err(not_found());
        }
        let d = inventory::device(&self.db, &devid)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let (sessions, jobs) = tokio::try_join!(
            devices::sessions(&self.db, &devid, 20),
            inventory::jobs(&self.db, &devid, 50)
        )
        .map_err(internal)?;
        Ok(DeviceDetail {
            devdetail: devdetail_pairs(&d.devdetail),
            tree: tree_rows(&d.tree),
            devid: d.devid,
            man: d.man,
            model: d.model,
            dmv: d.dmv,
            lang: d.lang,
            auth_type: d.auth_type,
            push_address: d.push_address,
            authority: d.authority,
            state: d.state,
            created_at: d.created_at,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            sessions: sessions
                .into_iter()
                .map(|s| SessionRow {
                    session_id: s.session_id,
                    started_at: s.started_at,
                    ended_at: s.ended_at,
                    outcome: s.outcome,
                    messages: s.messages,
                    commands: s.commands,
                    source: s.source,
                })
                .collect(),
            jobs: jobs
                .into_iter()
                .map(|j| JobRow {
                    status_meaning: j
                        .status
                        .and_then(|s| u16::try_from(s).ok())
                        .and_then(StatusCode::new)
                        .map(|s| s.meaning().to_owned())
                        .unwrap_or_default(),
                    id: j.id,
                    command: j.command,
                    state: j.state,
                    status: j.status,
                    error: j.error,
                    requested_by: j.requested_by,
                    created_at: j.created_at,
                    updated_at: j.updated_at,
                })
                .collect(),
        })
    }
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// DevDetail as stored (a JSON object) as (name, value) pairs in name order.
fn devdetail_pairs(json: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => {
            let mut pairs: Vec<_> = map.iter().map(|(k, v)| (k.clone(), text_of(v))).collect();
            pairs.sort();
            pairs
        }
        _ => Vec::new(),
    }
}

/// The parent of a tree URI (A.7: relative, `.` is the root, no trailing `/`).
fn parent(uri: &str) -> Option<&str> {
    if uri == "." {
        return None;
    }
    Some(uri.rsplit_once('/').map(|(p, _)| p).unwrap_or("."))
}

/// The cached tree (a JSON array of `{uri, kind, format, type, value, acl}`)
/// sorted by URI, each node with the ACL in force: its own, or — when empty —
/// the nearest ancestor's value whole; the root always has one (A.7).
fn tree_rows(json: &str) -> Vec<TreeNodeRow> {
    let nodes = match serde_json::from_str::<Vec<serde_json::Value>>(json) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "a device's cached tree is not a JSON array");
            return Vec::new();
        }
    };
    let field = |n: &serde_json::Value, k: &str| n.get(k).map(text_of).unwrap_or_default();
    let mut rows: Vec<TreeNodeRow> = nodes
        .iter()
        .filter_map(|n| {
            let uri = field(n, "uri");
            if uri.is_empty() {
                return None;
            }
            let name = uri.rsplit('/').next().unwrap_or(&uri).to_owned();
            Some(TreeNodeRow {
                depth: if uri == "." {
                    0
                } else {
                    uri.trim_start_matches("./").split('/').count()
                },
                name,
                kind: field(n, "kind"),
                format: field(n, "format"),
                mime: field(n, "type"),
                value: field(n, "value"),
                acl: field(n, "acl"),
                effective_acl: String::new(),
                inherited_from: None,
                uri,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.uri.cmp(&b.uri));
    let own: HashMap<String, String> = rows
        .iter()
        .filter(|r| !r.acl.is_empty())
        .map(|r| (r.uri.clone(), r.acl.clone()))
        .collect();
    let root_default = Acl::root_default().to_string();
    for r in &mut rows {
        if !r.acl.is_empty() {
            r.effective_acl = r.acl.clone();
            continue;
        }
        let mut at = parent(&r.uri);
        let (from, acl) = loop {
            match at {
                Some(p) => match own.get(p) {
                    Some(acl) => break (p.to_owned(), acl.clone()),
                    None => at = parent(p),
                },
                None => break (".".to_owned(), root_default.clone()),
            }
        };
        if r.uri == "." {
            // The root's own value is never empty on a device; a cache
            // without one shows the default.
            r.effective_acl = root_default.clone();
        } else {
            r.effective_acl = acl;
            r.inherited_from = Some(from);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_are_inherited_whole_from_the_nearest_ancestor() {
        let tree = r#"[
            {"uri":"./DevInfo/Man","kind":"leaf","format":"chr","type":"text/plain","value":"Acme","acl":""},
            {"uri":".","kind":"interior","acl":"Add=*&Get=*&Replace=corp.example"},
            {"uri":"./DevInfo","kind":"interior","acl":""},
            {"uri":"./Vendor","kind":"interior","acl":"Get=carrier.example"},
            {"uri":"./Vendor/Corp","kind":"interior","acl":""},
            {"uri":"./Vendor/Corp/Apps","kind":"interior","acl":"Replace=corp.example"},
            {"uri":"./Vendor/Corp/Apps/Mail","kind":"leaf","value":1,"acl":""}
        ]"#;
        let rows = tree_rows(tree);
        let uris: Vec<_> = rows.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                ".",
                "./DevInfo",
                "./DevInfo/Man",
                "./Vendor",
                "./Vendor/Corp",
                "./Vendor/Corp/Apps",
                "./Vendor/Corp/Apps/Mail"
            ]
        );
        let by = |u: &str| rows.iter().find(|r| r.uri == u).unwrap();
        assert_eq!(by(".").inherited_from, None);
        assert_eq!(
            by("./DevInfo/Man").effective_acl,
            "Add=*&Get=*&Replace=corp.example"
        );
        assert_eq!(by("./DevInfo/Man").inherited_from.as_deref(), Some("."));
        assert_eq!(by("./DevInfo/Man").depth, 2);
        assert_eq!(by("./DevInfo/Man").name, "Man");
        // Whole value, no per-command merge.
        assert_eq!(by("./Vendor/Corp").effective_acl, "Get=carrier.example");
        assert_eq!(
            by("./Vendor/Corp/Apps/Mail").effective_acl,
            "Replace=corp.example"
        );
        assert_eq!(
            by("./Vendor/Corp/Apps/Mail").inherited_from.as_deref(),
            Some("./Vendor/Corp/Apps")
        );
        assert_eq!(by("./Vendor/Corp/Apps/Mail").value, "1");
    }

    #[test]
    fn a_tree_without_a_root_inherits_the_default() {
        let rows = tree_rows(r#"[{"uri":"./DevInfo","acl":""},{"uri":"./DevInfo/Lang"}]"#);
        assert!(rows.iter().all(|r| r.effective_acl == "Add=*&Get=*"));
        assert!(tree_rows("not json").is_empty());
        assert!(tree_rows("[]").is_empty());
    }

    #[test]
    fn devdetail_is_flattened() {
        assert_eq!(
            devdetail_pairs(r#"{"SwV":"2.1","DevTyp":"phone","LrgObj":true}"#),
            vec![
                ("DevTyp".to_owned(), "phone".to_owned()),
                ("LrgObj".to_owned(), "true".to_owned()),
                ("SwV".to_owned(), "2.1".to_owned())
            ]
        );
        assert!(devdetail_pairs("{}").is_empty());
        assert!(devdetail_pairs("[").is_empty());
    }
}

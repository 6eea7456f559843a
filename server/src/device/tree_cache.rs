//! The device's tree as last seen (`devices.tree`): a JSON array of nodes
//! sorted by URI, merged from Get results of values and `?prop=ACL`.

use handover_dm::session::ReceivedItem;
use std::collections::BTreeMap;

/// One cached node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedNode {
    pub uri: String,
    /// `leaf` or `interior`.
    pub kind: String,
    pub format: String,
    #[serde(rename = "type")]
    pub mime: String,
    /// The value (UTF-8, lossy); an interior node's child names, `/`-separated.
    pub value: String,
    pub acl: String,
}

/// Merges Get results into the cached tree; returns the new JSON (the
/// given text itself when nothing changed), and the DevDetail leaves seen
/// (relative names → values).
pub fn merge(tree_json: &str, items: &[ReceivedItem]) -> (String, BTreeMap<String, String>) {
    let mut nodes: BTreeMap<String, CachedNode> =
        serde_json::from_str::<Vec<CachedNode>>(tree_json)
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.uri.clone(), n))
            .collect();
    let mut devdetail = BTreeMap::new();
    let mut changed = false;
    for item in items {
        let Some(source) = item.source.as_deref() else {
            continue;
        };
        let text = String::from_utf8_lossy(&item.data).into_owned();
        let (uri, prop) = match source.split_once("?prop=") {
            Some((u, p)) => (u, Some(p)),
            None => (source, None),
        };
        let node = nodes.entry(uri.to_owned()).or_insert_with(|| {
            changed = true;
            CachedNode {
                uri: uri.to_owned(),
                kind: "leaf".into(),
                ..CachedNode::default()
            }
        });
        let before = node.clone();
        match prop {
            Some(p) if p.eq_ignore_ascii_case("ACL") => node.acl = text,
            Some(_) => {}
            None => {
                let interior = item
                    .format
                    .as_deref()
                    .is_some_and(|f| f.eq_ignore_ascii_case("node"));
                node.kind = if interior { "interior" } else { "leaf" }.into();
                node.format = item.format.clone().unwrap_or_default();
                node.mime = item.mime.clone().unwrap_or_default();
                node.value = text.clone();
                if let Some(rel) = uri.strip_prefix("./DevDetail/") {
                    if !interior {
                        devdetail.insert(rel.to_owned(), text);
                    }
                }
            }
        }
        changed |= *node != before;
    }
    if !changed {
        return (tree_json.to_owned(), devdetail);
    }
    let list: Vec<CachedNode> = nodes.into_values().collect();
    (
        serde_json::to_string(&list).expect("nodes serialize"),
        devdetail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(source: &str, format: &str, data: &str) -> ReceivedItem {
        ReceivedItem {
            source: Some(source.into()),
            format: Some(format.into()),
            mime: None,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn merges_values_and_acls_sorted() {
        let (t, dd) = merge(
            "[]",
            &[
                item("./DevDetail/FwV", "chr", "1.0"),
                item("./DevDetail", "node", "FwV/SwV"),
                item("./DevDetail?prop=ACL", "chr", "Get=*"),
            ],
        );
        let nodes: Vec<CachedNode> = serde_json::from_str(&t).unwrap();
        assert_eq!(nodes[0].uri, "./DevDetail");
        assert_eq!(nodes[0].kind, "interior");
        assert_eq!(nodes[0].acl, "Get=*");
        assert_eq!(nodes[1].value, "1.0");
        assert_eq!(dd["FwV"], "1.0");
        // The same values again: the same text back, not re-serialized.
        let (again, _) = merge(&t, &[item("./DevDetail/FwV", "chr", "1.0")]);
        assert_eq!(again, t);
        let (moved, _) = merge(&t, &[item("./DevDetail/FwV", "chr", "1.1")]);
        assert_ne!(moved, t);
    }
}

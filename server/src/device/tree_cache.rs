//! The device's tree as last seen (`devices.tree`): a JSON array of nodes
//! sorted by URI, merged from Get results of values and `?prop=ACL`.

use handover_dm::session::ReceivedItem;
use std::borrow::Cow;
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

/// A cached node as read for [`merge`]: its texts borrowed from the JSON
/// where they can be, so a tree read to learn that nothing changed (the
/// routine Get of `./DevInfo`) allocates little. Written back in the same
/// shape as [`CachedNode`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Node<'a> {
    #[serde(borrow)]
    uri: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    format: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    mime: Cow<'a, str>,
    #[serde(borrow)]
    value: Cow<'a, str>,
    #[serde(borrow)]
    acl: Cow<'a, str>,
}

/// Replaces `field` only when its text differs, noting the change.
fn set(field: &mut Cow<'_, str>, to: &str, changed: &mut bool) {
    if **field != *to {
        *field = Cow::Owned(to.to_owned());
        *changed = true;
    }
}

/// What [`merge`] answers when every item is in the tree as it stands (the
/// routine Get of `./DevInfo`), found without reading the tree: the item's
/// node, written as `merge` writes it up to its ACL, is in `tree_json`
/// verbatim. A node's text cannot hold `{"uri":` unescaped, so that is
/// the node itself. `None` when an item is not there or reads a property.
fn unchanged(tree_json: &str, items: &[ReceivedItem]) -> Option<BTreeMap<String, String>> {
    let mut devdetail = BTreeMap::new();
    for item in items {
        let Some(uri) = item.source.as_deref() else {
            continue;
        };
        if uri.contains("?prop=") {
            return None;
        }
        let text = String::from_utf8_lossy(&item.data);
        let interior = item
            .format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("node"));
        // The node as `merge` writes it, cut after `"acl":`.
        let mut head = serde_json::to_string(&Node {
            uri: Cow::Borrowed(uri),
            kind: Cow::Borrowed(if interior { "interior" } else { "leaf" }),
            format: Cow::Borrowed(item.format.as_deref().unwrap_or("")),
            mime: Cow::Borrowed(item.mime.as_deref().unwrap_or("")),
            value: Cow::Borrowed(&text),
            acl: Cow::Borrowed(""),
        })
        .expect("strings serialize");
        head.truncate(head.len() - "\"\"}".len());
        if !tree_json.contains(&head) {
            return None;
        }
        if let Some(rel) = uri.strip_prefix("./DevDetail/") {
            if !interior {
                devdetail.insert(rel.to_owned(), text.into_owned());
            }
        }
    }
    Some(devdetail)
}

/// Merges Get results into the cached tree; returns the new JSON (none when
/// nothing changed), and the DevDetail leaves seen (relative names →
/// values).
pub fn merge(
    tree_json: &str,
    items: &[ReceivedItem],
) -> (Option<String>, BTreeMap<String, String>) {
    if let Some(devdetail) = unchanged(tree_json, items) {
        return (None, devdetail);
    }
    let mut nodes: BTreeMap<Cow<'_, str>, Node<'_>> =
        serde_json::from_str::<Vec<Node<'_>>>(tree_json)
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
        let text = String::from_utf8_lossy(&item.data);
        let (uri, prop) = match source.split_once("?prop=") {
            Some((u, p)) => (u, Some(p)),
            None => (source, None),
        };
        let node = nodes
            .entry(Cow::Owned(uri.to_owned()))
            .or_insert_with_key(|key| {
                changed = true;
                Node {
                    uri: key.clone(),
                    kind: Cow::Borrowed("leaf"),
                    format: Cow::Borrowed(""),
                    mime: Cow::Borrowed(""),
                    value: Cow::Borrowed(""),
                    acl: Cow::Borrowed(""),
                }
            });
        match prop {
            Some(p) if p.eq_ignore_ascii_case("ACL") => set(&mut node.acl, &text, &mut changed),
            Some(_) => {}
            None => {
                let interior = item
                    .format
                    .as_deref()
                    .is_some_and(|f| f.eq_ignore_ascii_case("node"));
                let kind = if interior { "interior" } else { "leaf" };
                set(&mut node.kind, kind, &mut changed);
                set(
                    &mut node.format,
                    item.format.as_deref().unwrap_or(""),
                    &mut changed,
                );
                set(
                    &mut node.mime,
                    item.mime.as_deref().unwrap_or(""),
                    &mut changed,
                );
                set(&mut node.value, &text, &mut changed);
                if let Some(rel) = uri.strip_prefix("./DevDetail/") {
                    if !interior {
                        devdetail.insert(rel.to_owned(), text.into_owned());
                    }
                }
            }
        }
    }
    if !changed {
        return (None, devdetail);
    }
    let list: Vec<&Node<'_>> = nodes.values().collect();
    (
        Some(serde_json::to_string(&list).expect("nodes serialize")),
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
        let t = t.expect("new nodes change the tree");
        let nodes: Vec<CachedNode> = serde_json::from_str(&t).unwrap();
        assert_eq!(nodes[0].uri, "./DevDetail");
        assert_eq!(nodes[0].kind, "interior");
        assert_eq!(nodes[0].acl, "Get=*");
        assert_eq!(nodes[1].value, "1.0");
        assert_eq!(nodes[1].kind, "leaf");
        assert_eq!(nodes[1].format, "chr");
        assert_eq!(dd["FwV"], "1.0");
        // The same values again: unchanged, not re-serialized.
        let (again, dd) = merge(&t, &[item("./DevDetail/FwV", "chr", "1.0")]);
        assert_eq!(again, None);
        assert_eq!(dd["FwV"], "1.0");
        let (moved, _) = merge(&t, &[item("./DevDetail/FwV", "chr", "1.1")]);
        let moved = moved.expect("a new value changes the tree");
        let nodes: Vec<CachedNode> = serde_json::from_str(&moved).unwrap();
        assert_eq!(nodes[1].value, "1.1");
        assert_eq!(nodes[0].acl, "Get=*", "the other nodes are kept");
        // Text that JSON escapes reads back as it was, and is not a change.
        let (quoted, _) = merge(&moved, &[item("./Vendor/Q", "chr", "a \"b\"\n\\")]);
        let quoted = quoted.expect("a new node");
        let (same, _) = merge(&quoted, &[item("./Vendor/Q", "chr", "a \"b\"\n\\")]);
        assert_eq!(same, None);
        let nodes: Vec<CachedNode> = serde_json::from_str(&quoted).unwrap();
        assert_eq!(nodes[2].value, "a \"b\"\n\\");
    }

    /// The full merge, without the shortcut: what `merge` must agree with.
    fn merged_slowly(
        tree: &str,
        items: &[ReceivedItem],
    ) -> (Option<String>, BTreeMap<String, String>) {
        // A property read (of a node that is there, one `merge` keeps no
        // text for) makes the shortcut step aside and changes nothing.
        let mut with_prop = items.to_vec();
        with_prop.push(item("./DevInfo/Man?prop=Title", "chr", "x"));
        merge(tree, &with_prop)
    }

    #[test]
    fn the_shortcut_agrees_with_the_merge() {
        let (tree, _) = merge(
            "[]",
            &[
                item("./DevInfo/Man", "chr", "Acme"),
                item("./DevInfo/Mod", "chr", "Rocket \"R\" <1>"),
                item("./DevDetail", "node", "FwV"),
                item("./DevDetail/FwV", "chr", "1.0"),
                item("./DevInfo?prop=ACL", "chr", "Get=*"),
            ],
        );
        let tree = tree.expect("new nodes");
        let cases: Vec<Vec<ReceivedItem>> = vec![
            // The routine reads: the same values.
            vec![item("./DevInfo/Man", "chr", "Acme")],
            vec![
                item("./DevInfo/Mod", "chr", "Rocket \"R\" <1>"),
                item("./DevDetail/FwV", "chr", "1.0"),
                item("./DevDetail", "node", "FwV"),
            ],
            // A value, a format, a type, a kind that differ; a new node.
            vec![item("./DevInfo/Man", "chr", "Acme2")],
            vec![item("./DevInfo/Man", "b64", "Acme")],
            vec![ReceivedItem {
                mime: Some("text/html".into()),
                ..item("./DevInfo/Man", "chr", "Acme")
            }],
            vec![item("./DevDetail/FwV", "node", "1.0")],
            vec![item("./DevInfo/New", "chr", "Acme")],
            // One value a prefix of the stored one, one taken from another node.
            vec![item("./DevInfo/Man", "chr", "Acm")],
            vec![item("./DevInfo/Mod", "chr", "Acme")],
            // A value that holds what looks like another node.
            vec![item(
                "./DevInfo/Man",
                "chr",
                r#"{"uri":"./DevInfo/Man","kind":"leaf","format":"chr","type":"","value":"Acme","acl":""}"#,
            )],
        ];
        for items in cases {
            let fast = merge(&tree, &items);
            let slow = merged_slowly(&tree, &items);
            assert_eq!(fast.0.is_none(), slow.0.is_none(), "{items:?}");
            assert_eq!(fast.1, slow.1, "{items:?}");
        }
        // The routine read takes the shortcut.
        assert!(unchanged(&tree, &[item("./DevInfo/Man", "chr", "Acme")]).is_some());
        assert!(unchanged(&tree, &[item("./DevInfo/Man", "chr", "Acm")]).is_none());
    }
}

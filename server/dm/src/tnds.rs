//! TNDS, the Tree and Node Description Serialization of DM TND 1.2
//! (`<MgmtTree xmlns="syncml:dmddf1.2">`), carried inside `Data`
//! (PROTOCOL A.1: WBXML code page 2; A.7: the node properties).

use crate::syncml::element::{El, Ns};
use crate::syncml::{wbxml, xml, DecodeError, DecodeErrorKind};

/// PROTOCOL A.1, A.7: a serialized (sub)tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgmtTree {
    pub ver_dtd: String,
    pub man: Option<String>,
    pub mod_: Option<String>,
    pub nodes: Vec<Node>,
}

/// PROTOCOL A.7: one node with its run-time properties, value and children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub node_name: String,
    /// Where the node sits when it is a top-level node of the tree.
    pub path: Option<String>,
    pub rt_properties: Option<RtProperties>,
    /// The value exactly as received (leaf nodes).
    pub value: Option<String>,
    pub nodes: Vec<Node>,
}

/// PROTOCOL A.7: the properties ACL, Format, Name, Size, Title, TStamp, Type,
/// VerNo. All optional here, though TND requires ACL, Format and Type, since
/// clients leave them out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtProperties {
    pub acl: Option<String>,
    pub format: Option<DfFormat>,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub title: Option<String>,
    pub tstamp: Option<String>,
    pub type_: Option<DfType>,
    pub ver_no: Option<String>,
}

/// PROTOCOL A.7: the `Format` property of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DfFormat {
    B64,
    Bin,
    Bool,
    Chr,
    Int,
    Node,
    Null,
    Xml,
    Date,
    Time,
    Float,
}

impl DfFormat {
    /// Every format, in the order of the TND specification.
    pub const ALL: [DfFormat; 11] = [
        DfFormat::B64,
        DfFormat::Bin,
        DfFormat::Bool,
        DfFormat::Chr,
        DfFormat::Int,
        DfFormat::Node,
        DfFormat::Null,
        DfFormat::Xml,
        DfFormat::Date,
        DfFormat::Time,
        DfFormat::Float,
    ];

    /// The name as written in TNDS and in `Meta/Format` (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            DfFormat::B64 => "b64",
            DfFormat::Bin => "bin",
            DfFormat::Bool => "bool",
            DfFormat::Chr => "chr",
            DfFormat::Int => "int",
            DfFormat::Node => "node",
            DfFormat::Null => "null",
            DfFormat::Xml => "xml",
            DfFormat::Date => "date",
            DfFormat::Time => "time",
            DfFormat::Float => "float",
        }
    }

    /// Parses a format name ignoring ASCII case (`Chr` is `chr`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
    }
}

/// PROTOCOL A.7: the `Type` property: a MIME type (leaves) or a DDF name
/// (interior nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DfType {
    Mime(String),
    DdfName(String),
}

impl MgmtTree {
    /// A tree of `nodes` with `VerDTD` 1.2.
    pub fn new(nodes: Vec<Node>) -> Self {
        Self {
            ver_dtd: "1.2".to_owned(),
            man: None,
            mod_: None,
            nodes,
        }
    }

    /// PROTOCOL A.1: parses a standalone TNDS XML document, e.g. the text of
    /// a `Data` that carries it escaped (hs20 client).
    pub fn parse_xml(text: &str) -> Result<Self, DecodeError> {
        let el = xml::read_tree(text.as_bytes())?;
        Self::from_el(&el)
    }

    /// PROTOCOL A.1: the TNDS XML document (`xmlns="syncml:dmddf1.2"`).
    pub fn to_xml(&self) -> String {
        xml::write_document(&self.to_el(), false)
    }

    /// PROTOCOL A.1: parses a standalone WBXML DM DDF document (code page 2).
    pub fn parse_wbxml(bytes: &[u8]) -> Result<Self, DecodeError> {
        match wbxml::nested_tnds(bytes, 0)? {
            Some(t) => Ok(t),
            None => Err(DecodeError::new(
                "(document)",
                0,
                DecodeErrorKind::Syntax("WBXML: not a DM DDF document".into()),
            )),
        }
    }

    /// PROTOCOL A.1: a standalone WBXML DM DDF document (code page 2, the
    /// FPI `-//OMA//DTD-DM-DDF 1.2//EN` in the string table).
    pub fn to_wbxml(&self) -> Vec<u8> {
        wbxml::write_tnds_document(&self.to_el())
    }

    pub(crate) fn from_el(el: &El) -> Result<Self, DecodeError> {
        if el.name != "MgmtTree" {
            return Err(el.err(DecodeErrorKind::UnknownElement));
        }
        Ok(Self {
            ver_dtd: el.req_text("VerDTD")?,
            man: el.opt_text("Man")?,
            mod_: el.opt_text("Mod")?,
            nodes: el
                .children_named("Node")
                .map(node_from_el)
                .collect::<Result<_, _>>()?,
        })
    }

    pub(crate) fn to_el(&self) -> El {
        let mut el = El::new(Ns::DmDdf, "MgmtTree");
        el.push_leaf("VerDTD", self.ver_dtd.as_str());
        el.push_opt_leaf("Man", self.man.as_deref());
        el.push_opt_leaf("Mod", self.mod_.as_deref());
        for n in &self.nodes {
            el.push(node_to_el(n));
        }
        el
    }
}

fn node_from_el(el: &El) -> Result<Node, DecodeError> {
    Ok(Node {
        node_name: el.req_text("NodeName")?,
        path: el.opt_text("Path")?,
        rt_properties: el.child("RTProperties").map(props_from_el).transpose()?,
        value: el.child("Value").map(El::raw_text).transpose()?,
        nodes: el
            .children_named("Node")
            .map(node_from_el)
            .collect::<Result<_, _>>()?,
    })
}

fn props_from_el(el: &El) -> Result<RtProperties, DecodeError> {
    let format = match el.child("Format") {
        None => None,
        Some(f) => {
            // `<Format><chr/></Format>`; a bare text `chr` is tolerated.
            let name = match f.elements().next() {
                Some(inner) => inner.name.to_string(),
                None => f.text()?,
            };
            Some(DfFormat::parse(&name).ok_or_else(|| f.invalid(&name, "not a TND format"))?)
        }
    };
    let type_ = match el.child("Type") {
        None => None,
        Some(t) => Some(if let Some(m) = t.child("MIME") {
            DfType::Mime(m.text()?)
        } else if let Some(d) = t.child("DDFName") {
            DfType::DdfName(d.text()?)
        } else {
            // Bare text: read as a MIME type.
            DfType::Mime(t.text()?)
        }),
    };
    Ok(RtProperties {
        acl: el.opt_text("ACL")?,
        format,
        name: el.opt_text("Name")?,
        size: el.opt_u64("Size")?,
        title: el.opt_text("Title")?,
        tstamp: el.opt_text("TStamp")?,
        type_,
        ver_no: el.opt_text("VerNo")?,
    })
}

fn node_to_el(n: &Node) -> El {
    let mut el = El::new(Ns::DmDdf, "Node");
    el.push_leaf("NodeName", n.node_name.as_str());
    el.push_opt_leaf("Path", n.path.as_deref());
    if let Some(p) = &n.rt_properties {
        let mut pel = El::new(Ns::DmDdf, "RTProperties");
        pel.push_opt_leaf("ACL", p.acl.as_deref());
        if let Some(f) = p.format {
            let mut fel = El::new(Ns::DmDdf, "Format");
            fel.push_flag(f.as_str(), true);
            pel.push(fel);
        }
        pel.push_opt_leaf("Name", p.name.as_deref());
        pel.push_opt_leaf("Size", p.size.map(|s| s.to_string()).as_deref());
        pel.push_opt_leaf("Title", p.title.as_deref());
        pel.push_opt_leaf("TStamp", p.tstamp.as_deref());
        if let Some(t) = &p.type_ {
            let mut tel = El::new(Ns::DmDdf, "Type");
            match t {
                DfType::Mime(m) => tel.push_leaf("MIME", m.as_str()),
                DfType::DdfName(d) => tel.push_leaf("DDFName", d.as_str()),
            }
            pel.push(tel);
        }
        pel.push_opt_leaf("VerNo", p.ver_no.as_deref());
        el.push(pel);
    }
    el.push_opt_leaf("Value", n.value.as_deref());
    for c in &n.nodes {
        el.push(node_to_el(c));
    }
    el
}

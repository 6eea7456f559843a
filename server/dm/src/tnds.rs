//! TNDS, the Tree and Node Description Serialization of DM TND 1.2
//! (`<MgmtTree xmlns="syncml:dmddf1.2">`), carried inside `Data`
//! (PROTOCOL A.1: WBXML code page 2; A.7: the node properties).

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
        xml::read_tnds(text.as_bytes())
    }

    /// PROTOCOL A.1: the TNDS XML document (`xmlns="syncml:dmddf1.2"`).
    pub fn to_xml(&self) -> String {
        xml::write_tnds(self)
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
        wbxml::write_tnds(self)
    }
}

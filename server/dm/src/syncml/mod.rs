//! SyncML DM 1.2 messages and their two encodings (PROTOCOL A.1).
//!
//! Both codecs read bytes into a small generic element tree that borrows
//! from the input ([`element`]), one mapping ([`map`]) turns that tree into
//! the [`model`], and the same mapping writes the model straight out through
//! either encoder, so an XML message and its WBXML twin decode to equal
//! values.

pub(crate) mod element;
mod map;
pub mod model;
pub mod wbxml;
pub mod xml;

pub use model::{
    Alert, Anchor, Chal, CmdRef, Command, Container, Cred, Data, Exec, Item, ItemCmd, LocRef, Mem,
    Message, Meta, Results, Status, SyncHdr,
};

use std::fmt;

/// Deepest element nesting a decoder accepts (hostile input may not recurse
/// without bound). Enough for a TNDS tree of [`crate::types::MAX_DEPTH`]
/// levels inside nested Atomic/Sequence commands.
pub const MAX_NESTING: usize = 100;

/// Deepest nesting of Atomic and Sequence commands a decoder accepts (A.3):
/// real clients nest one or two; mapping deeper ones would only spend stack.
pub const MAX_CONTAINER_DEPTH: usize = 8;

/// Why bytes could not be decoded into a [`Message`] (PROTOCOL A.1): names the
/// element concerned and the byte offset in the input where it starts (or
/// where the problem was found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (in <{element}> at byte {offset})")]
pub struct DecodeError {
    /// The element concerned; `SyncML` or the innermost open element for
    /// syntax errors, `(document)` before the root.
    pub element: String,
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

/// What was wrong (see [`DecodeError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Not well-formed XML or WBXML.
    #[error("malformed {0}")]
    Syntax(String),
    /// Well-formed, but something this profile refuses (DOCTYPE with an
    /// internal subset, WBXML attributes, another charset …).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An element that may not stand where it stands.
    #[error("unknown or misplaced element")]
    UnknownElement,
    /// A required child element is absent.
    #[error("missing <{0}>")]
    Missing(&'static str),
    /// A value that is not what the element requires.
    #[error("invalid value {value:?}: {reason}")]
    Invalid { value: String, reason: String },
    /// Nesting deeper than [`MAX_NESTING`].
    #[error("elements nested deeper than {MAX_NESTING}")]
    TooDeep,
    /// Non-blank content after the root element ends.
    #[error("data after the end of the root element")]
    TrailingData,
}

impl DecodeError {
    pub(crate) fn new(element: impl Into<String>, offset: usize, kind: DecodeErrorKind) -> Self {
        Self {
            element: element.into(),
            offset,
            kind,
        }
    }
}

/// PROTOCOL A.1: the two encodings of a SyncML DM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Encoding {
    Xml,
    Wbxml,
}

impl Encoding {
    /// PROTOCOL A.1: the encoding named by an HTTP `Content-Type`. Accepts the
    /// DM types and the Data Sync types some clients send (libdmclient);
    /// parameters such as `charset` and letter case are ignored.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/vnd.syncml.dm+xml" | "application/vnd.syncml+xml" => Some(Self::Xml),
            "application/vnd.syncml.dm+wbxml" | "application/vnd.syncml+wbxml" => Some(Self::Wbxml),
            _ => None,
        }
    }

    /// PROTOCOL A.1: the DM media type the server answers with.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Xml => "application/vnd.syncml.dm+xml",
            Self::Wbxml => "application/vnd.syncml.dm+wbxml",
        }
    }

    /// PROTOCOL A.1: WBXML when the first byte is a WBXML version (0x00–0x03),
    /// XML otherwise.
    pub fn sniff(bytes: &[u8]) -> Self {
        match bytes.first() {
            Some(0x00..=0x03) => Self::Wbxml,
            _ => Self::Xml,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.content_type())
    }
}

/// PROTOCOL A.1: decodes one message, XML or WBXML chosen by [`Encoding::sniff`].
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    match Encoding::sniff(bytes) {
        Encoding::Xml => xml::decode(bytes),
        Encoding::Wbxml => wbxml::decode(bytes),
    }
}

/// PROTOCOL A.1: decodes `bytes` that are known to be in `encoding`.
pub fn decode_as(encoding: Encoding, bytes: &[u8]) -> Result<Message, DecodeError> {
    match encoding {
        Encoding::Xml => xml::decode(bytes),
        Encoding::Wbxml => wbxml::decode(bytes),
    }
}

/// PROTOCOL A.1: encodes `msg` in `encoding`.
pub fn encode(encoding: Encoding, msg: &Message) -> Vec<u8> {
    match encoding {
        Encoding::Xml => xml::encode(msg),
        Encoding::Wbxml => wbxml::encode(msg),
    }
}

/// At most the bytes `cmd` adds to the encoding of a message whose body has
/// content already (a Final or another command): what lets a message be
/// filled up to `MaxMsgSize` (A.2) without encoding it whole for every
/// command. Exact for XML.
pub(crate) fn command_len_bound(encoding: Encoding, cmd: &Command) -> usize {
    match encoding {
        Encoding::Xml => xml::command_len(cmd),
        Encoding::Wbxml => wbxml::command_len_bound(cmd),
    }
}

/// PROTOCOL A.1: the compact XML encoding of `msg`.
pub fn encode_xml(msg: &Message) -> Vec<u8> {
    xml::encode(msg)
}

/// PROTOCOL A.1: the WBXML encoding of `msg`.
pub fn encode_wbxml(msg: &Message) -> Vec<u8> {
    wbxml::encode(msg)
}

/// PROTOCOL A.1: indented XML of `msg` for people (support-desk tools); it
/// decodes to the same message.
pub fn to_xml_pretty(msg: &Message) -> String {
    xml::to_pretty(msg)
}

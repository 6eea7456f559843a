//! The SyncML DM message model (PROTOCOL A.1–A.3), one value for what came in
//! as XML or as WBXML: both codecs decode to these types and encode from them,
//! so the same message compares equal whatever its encoding.

use std::num::NonZeroU32;

use crate::tnds::MgmtTree;
use crate::{AlertCode, CmdId, StatusCode};

/// PROTOCOL A.1: one SyncML message, `SyncHdr` then `SyncBody`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub hdr: SyncHdr,
    /// The commands of `SyncBody`, in the order they came (PROTOCOL A.2:
    /// Statuses answer them in that order).
    pub body: Vec<Command>,
    /// `Final` closes a package (PROTOCOL A.2).
    pub final_: bool,
}

/// PROTOCOL A.1, A.2: the message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHdr {
    /// `1.2` for DM 1.2 (PROTOCOL A.1).
    pub ver_dtd: String,
    /// `DM/1.2` (PROTOCOL A.1).
    pub ver_proto: String,
    /// Kept exactly as received (PROTOCOL A.2: fixed for a session).
    pub session_id: String,
    /// Starts at 1, one more per message (PROTOCOL A.2).
    pub msg_id: NonZeroU32,
    pub target: LocRef,
    /// Client→server: the DevId, plus the user name in `LocName` when the
    /// client sends it (PROTOCOL A.2, A.4).
    pub source: LocRef,
    pub resp_uri: Option<String>,
    pub no_resp: bool,
    /// PROTOCOL A.4: credentials of the sender.
    pub cred: Option<Cred>,
    /// `MaxMsgSize`/`MaxObjSize` of the sender (PROTOCOL A.2).
    pub meta: Option<Meta>,
}

/// PROTOCOL A.2: a `Target` or `Source`: `LocURI` and an optional `LocName`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocRef {
    pub loc_uri: String,
    pub loc_name: Option<String>,
}

impl LocRef {
    /// A `LocURI` without `LocName`.
    pub fn uri(uri: impl Into<String>) -> Self {
        Self {
            loc_uri: uri.into(),
            loc_name: None,
        }
    }
}

/// PROTOCOL A.4: `Cred`, the `Meta` (Type, Format) and the credential `Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    pub meta: Option<Meta>,
    pub data: String,
}

/// PROTOCOL A.4: a challenge, `Chal/Meta{Type, Format, NextNonce}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chal {
    pub meta: Meta,
}

/// PROTOCOL A.1 (page 1, `syncml:metinf`): every MetInf element.
///
/// Numbers are parsed strictly (a `MaxMsgSize` that is not a number is an
/// error); strings are kept as received (`Chr` stays `Chr`, see
/// [`Meta::format_is`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    pub format: Option<String>,
    pub type_: Option<String>,
    pub mark: Option<String>,
    /// PROTOCOL A.2: total size of a large object, on its first chunk.
    pub size: Option<u64>,
    pub anchor: Option<Anchor>,
    pub version: Option<String>,
    /// PROTOCOL A.4: base64 text of the next nonce.
    pub next_nonce: Option<String>,
    /// PROTOCOL A.2: the largest message the sender accepts.
    pub max_msg_size: Option<u64>,
    pub max_obj_size: Option<u64>,
    pub emi: Vec<String>,
    pub mem: Option<Mem>,
    pub field_level: bool,
}

impl Meta {
    /// True when `Format` equals `format` ignoring ASCII case (PROTOCOL A.1:
    /// some clients write `Chr` for `chr`).
    pub fn format_is(&self, format: &str) -> bool {
        self.format
            .as_deref()
            .is_some_and(|f| f.trim().eq_ignore_ascii_case(format))
    }

    /// `Format` in lower case, trimmed (PROTOCOL A.1), for matching.
    pub fn format_lowercase(&self) -> Option<String> {
        self.format
            .as_deref()
            .map(|f| f.trim().to_ascii_lowercase())
    }

    /// A `Meta` with only `Format` and `Type`, the common case of an Item.
    pub fn with_format_type(format: &str, type_: &str) -> Self {
        Self {
            format: Some(format.to_owned()),
            type_: Some(type_.to_owned()),
            ..Self::default()
        }
    }
}

/// PROTOCOL A.1 (MetInf `Anchor`): `Last?`, `Next`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Anchor {
    pub last: Option<String>,
    pub next: Option<String>,
}

/// PROTOCOL A.1 (MetInf `Mem`): `SharedMem?`, `FreeMem`, `FreeID`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mem {
    pub shared_mem: bool,
    pub free_mem: Option<u64>,
    pub free_id: Option<u64>,
}

/// PROTOCOL A.1: the content of a `Data` element.
///
/// Decoding rule (the same for XML and WBXML, so the models compare equal):
/// text (XML text or CDATA, WBXML `STR_I`/`STR_T`/`ENTITY`) is `Text`; WBXML
/// `OPAQUE` is `Text` when its bytes are UTF-8 and `Binary` otherwise, except
/// that an `OPAQUE` holding a WBXML DM DDF document is `Tree`; an embedded
/// `MgmtTree` element (XML, or WBXML code page 2) is `Tree`. So `Binary`
/// never holds valid UTF-8 once decoded; build values with
/// [`Data::from_bytes`] to keep that rule. An item holding a `Tree` with
/// Type `application/vnd.syncml.dmtnds+wbxml` reads as `…+xml`; the WBXML
/// encoder writes `+wbxml` back (as libwbxml does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Vec<u8>),
    Tree(Box<MgmtTree>),
}

impl Data {
    /// `Text` when `bytes` are UTF-8, else `Binary` (PROTOCOL A.1).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(s) => Data::Text(s),
            Err(e) => Data::Binary(e.into_bytes()),
        }
    }

    /// The text, when this is `Text`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Self {
        Data::Text(s.to_owned())
    }
}

/// PROTOCOL A.3: an `Item` of a command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub target: Option<LocRef>,
    pub source: Option<LocRef>,
    /// `TargetParent/LocURI`.
    pub target_parent: Option<String>,
    /// `SourceParent/LocURI`.
    pub source_parent: Option<String>,
    pub meta: Option<Meta>,
    pub data: Option<Data>,
    /// PROTOCOL A.2: more chunks of this large object follow.
    pub more_data: bool,
}

/// What a `Status` or `Results` refers to (PROTOCOL A.2): the SyncHdr
/// (`CmdRef` 0) or a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdRef {
    SyncHdr,
    Cmd(CmdId),
}

impl CmdRef {
    /// The number on the wire: 0 for the SyncHdr.
    pub fn get(self) -> u32 {
        match self {
            CmdRef::SyncHdr => 0,
            CmdRef::Cmd(id) => id.get(),
        }
    }

    /// `0` → `SyncHdr`, anything else a `CmdId`.
    pub fn new(n: u32) -> Self {
        CmdId::new(n).map_or(CmdRef::SyncHdr, CmdRef::Cmd)
    }
}

/// PROTOCOL A.3: the DM commands of a `SyncBody`.
// Variants differ in size (Exec holds its Item inline); messages hold tens of
// commands, so boxing would buy nothing but noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add(ItemCmd),
    Alert(Alert),
    Atomic(Container),
    Copy(ItemCmd),
    Delete(ItemCmd),
    Exec(Exec),
    Get(ItemCmd),
    Replace(ItemCmd),
    Sequence(Container),
    Status(Status),
    Results(Results),
}

impl Command {
    /// The element name (what a Status names in `Cmd`, PROTOCOL A.2).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "Add",
            Command::Alert(_) => "Alert",
            Command::Atomic(_) => "Atomic",
            Command::Copy(_) => "Copy",
            Command::Delete(_) => "Delete",
            Command::Exec(_) => "Exec",
            Command::Get(_) => "Get",
            Command::Replace(_) => "Replace",
            Command::Sequence(_) => "Sequence",
            Command::Status(_) => "Status",
            Command::Results(_) => "Results",
        }
    }

    /// The command's `CmdID` (PROTOCOL A.2).
    pub fn cmd_id(&self) -> CmdId {
        match self {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => c.cmd_id,
            Command::Alert(c) => c.cmd_id,
            Command::Atomic(c) | Command::Sequence(c) => c.cmd_id,
            Command::Exec(c) => c.cmd_id,
            Command::Status(c) => c.cmd_id,
            Command::Results(c) => c.cmd_id,
        }
    }
}

/// PROTOCOL A.3: Add, Copy, Delete, Get, Replace: items with optional Meta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCmd {
    pub cmd_id: CmdId,
    pub no_resp: bool,
    pub cred: Option<Cred>,
    pub meta: Option<Meta>,
    pub items: Vec<Item>,
}

impl ItemCmd {
    /// A command with these items and nothing else.
    pub fn new(cmd_id: CmdId, items: Vec<Item>) -> Self {
        Self {
            cmd_id,
            no_resp: false,
            cred: None,
            meta: None,
            items,
        }
    }
}

/// PROTOCOL A.3: Atomic or Sequence, holding nested commands (each may hold
/// the other; Status and Results may not be nested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub cmd_id: CmdId,
    pub no_resp: bool,
    pub meta: Option<Meta>,
    pub commands: Vec<Command>,
}

/// PROTOCOL A.3: Exec of one item, with an optional `Correlator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub cmd_id: CmdId,
    pub no_resp: bool,
    pub cred: Option<Cred>,
    pub meta: Option<Meta>,
    pub correlator: Option<String>,
    pub item: Item,
}

/// PROTOCOL A.3: an Alert (1200, 1201, 1222, 1223, 1226 …) with its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub cmd_id: CmdId,
    pub no_resp: bool,
    pub cred: Option<Cred>,
    pub data: AlertCode,
    /// Generic Alert 1226: the Correlator of the Exec it answers.
    pub correlator: Option<String>,
    pub items: Vec<Item>,
}

/// PROTOCOL A.2: the Status of one command (or of the SyncHdr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub cmd_id: CmdId,
    /// Some clients omit it; Handover always sends it (libdmclient needs it).
    pub msg_ref: Option<NonZeroU32>,
    /// A SyncHdr Status without `CmdRef` (hs20 client) reads as `SyncHdr`.
    pub cmd_ref: CmdRef,
    /// The name of the command this answers, `SyncHdr` for the header.
    pub cmd: String,
    pub target_refs: Vec<String>,
    pub source_refs: Vec<String>,
    pub cred: Option<Cred>,
    /// PROTOCOL A.4: the challenge beside 401/407/212.
    pub chal: Option<Chal>,
    pub data: StatusCode,
    pub items: Vec<Item>,
}

/// PROTOCOL A.2: the Results of a Get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Results {
    pub cmd_id: CmdId,
    pub msg_ref: Option<NonZeroU32>,
    pub cmd_ref: CmdRef,
    pub meta: Option<Meta>,
    pub target_ref: Option<String>,
    pub source_ref: Option<String>,
    pub items: Vec<Item>,
}

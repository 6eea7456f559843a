//! The WBXML encoding of SyncML DM (PROTOCOL A.1): a small generic WBXML
//! reader and writer, and the three code pages of a DM message.
//!
//! Reader: WBXML versions 1.1–1.3 (0x01–0x03), public id 0x1201 (SyncML 1.2),
//! 0x0FD3 (SyncML 1.1) or a literal SyncML FPI from the string table, charset
//! UTF-8 (0x6A) only; `STR_I`, `STR_T`, `ENTITY`, `OPAQUE`, `SWITCH_PAGE`,
//! `END`, `LITERAL` tags. Refused with a clear error: attributes (SyncML has
//! none), extensions and processing instructions. Bounded: lengths are
//! checked against the remaining input before anything is allocated,
//! multi-byte integers may not overflow 32 bits, nesting is limited to
//! [`MAX_NESTING`] and the reader keeps its own stack (no recursion).
//!
//! Writer rule: header `02 A4 01 6A 00`; text as `STR_I`, except text
//! holding a NUL byte (which `STR_I` cannot carry) and binary data, which go
//! as `OPAQUE`; an empty element is a tag without the content bit; an
//! embedded TNDS `MgmtTree` goes as an `OPAQUE` holding a WBXML DM DDF
//! document (code page 2, FPI `-//OMA//DTD-DM-DDF 1.2//EN`), the form the
//! independent libwbxml codec writes and reads. The reader also accepts TNDS
//! inline on code page 2.

use std::borrow::Cow;

use super::element::{name_id, token_id, Doc, Ns, Sink, Tag, UNKNOWN};
use super::model::{Command, Message};
use super::{map, DecodeError, DecodeErrorKind, MAX_NESTING};
use crate::tnds::MgmtTree;

/// PROTOCOL A.1: SyncML 1.2 public identifier.
pub const PUBLIC_ID_SYNCML_1_2: u32 = 0x1201;
/// SyncML 1.1 public identifier, tolerated on input.
pub const PUBLIC_ID_SYNCML_1_1: u32 = 0x0FD3;
/// PROTOCOL A.1: charset UTF-8 (IANA MIBenum 106).
pub const CHARSET_UTF8: u32 = 0x6A;
/// The formal public identifier of a DM DDF (TNDS) document.
pub const FPI_DM_DDF_1_2: &str = "-//OMA//DTD-DM-DDF 1.2//EN";

const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const ENTITY: u8 = 0x02;
const STR_I: u8 = 0x03;
const LITERAL: u8 = 0x04;
const STR_T: u8 = 0x83;
const OPAQUE: u8 = 0xC3;
const CONTENT: u8 = 0x40;
const ATTRIBUTES: u8 = 0x80;

/// Code page 0, SyncML: tokens 0x05..=0x3C (0x30 unassigned).
pub(crate) const PAGE_SYNCML: [&str; 56] = [
    "Add",
    "Alert",
    "Archive",
    "Atomic",
    "Chal",
    "Cmd",
    "CmdID",
    "CmdRef",
    "Copy",
    "Cred",
    "Data",
    "Delete",
    "Exec",
    "Final",
    "Get",
    "Item",
    "Lang",
    "LocName",
    "LocURI",
    "Map",
    "MapItem",
    "Meta",
    "MsgID",
    "MsgRef",
    "NoResp",
    "NoResults",
    "Put",
    "Replace",
    "RespURI",
    "Results",
    "Search",
    "Sequence",
    "SessionID",
    "SftDel",
    "Source",
    "SourceRef",
    "Status",
    "Sync",
    "SyncBody",
    "SyncHdr",
    "SyncML",
    "Target",
    "TargetRef",
    "",
    "VerDTD",
    "VerProto",
    "NumberOfChanges",
    "MoreData",
    "Field",
    "Filter",
    "Record",
    "FilterType",
    "SourceParent",
    "TargetParent",
    "Move",
    "Correlator",
];

/// Code page 1, MetInf: tokens 0x05..=0x16.
pub(crate) const PAGE_METINF: [&str; 18] = [
    "Anchor",
    "EMI",
    "Format",
    "FreeID",
    "FreeMem",
    "Last",
    "Mark",
    "MaxMsgSize",
    "Mem",
    "MetInf",
    "Next",
    "NextNonce",
    "SharedMem",
    "Size",
    "Type",
    "Version",
    "MaxObjSize",
    "FieldLevel",
];

/// Code page 2, DM DDF 1.2 (TNDS): tokens 0x05..=0x3C.
pub(crate) const PAGE_DMDDF: [&str; 56] = [
    "AccessType",
    "ACL",
    "Add",
    "b64",
    "bin",
    "bool",
    "chr",
    "CaseSense",
    "CIS",
    "Copy",
    "CS",
    "date",
    "DDFName",
    "DefaultValue",
    "Delete",
    "Description",
    "DFFormat",
    "DFProperties",
    "DFTitle",
    "DFType",
    "Dynamic",
    "Exec",
    "float",
    "Format",
    "Get",
    "int",
    "Man",
    "MgmtTree",
    "MIME",
    "Mod",
    "Name",
    "Node",
    "node",
    "NodeName",
    "null",
    "Occurrence",
    "One",
    "OneOrMore",
    "OneOrN",
    "Path",
    "Permanent",
    "Replace",
    "RTProperties",
    "Scope",
    "Size",
    "time",
    "Title",
    "TStamp",
    "Type",
    "Value",
    "VerDTD",
    "VerNo",
    "xml",
    "ZeroOrMore",
    "ZeroOrN",
    "ZeroOrOne",
];

pub(crate) fn page_table(ns: Ns) -> &'static [&'static str] {
    match ns {
        Ns::SyncMl => &PAGE_SYNCML,
        Ns::MetInf => &PAGE_METINF,
        Ns::DmDdf => &PAGE_DMDDF,
    }
}

/// `unknown-token-P-0xTT`: the name given to token `TT` of code page `P`
/// (0–2) when the page has no element there, one static string each so
/// that every element name is borrowed.
fn unknown_token_name(page: u8, token: u8) -> &'static str {
    const LEN: usize = "unknown-token-0-0x00".len();
    const NAMES: [[u8; LEN]; 3 * 64] = {
        let mut names = [[0u8; LEN]; 3 * 64];
        let hex = b"0123456789ABCDEF";
        let mut i = 0;
        while i < names.len() {
            let (page, token) = (i / 64, i % 64);
            let mut name = *b"unknown-token-0-0x00";
            name[14] = b'0' + page as u8;
            name[18] = hex[token / 16];
            name[19] = hex[token % 16];
            names[i] = name;
            i += 1;
        }
        names
    };
    let i = usize::from(page.min(2)) * 64 + usize::from(token & 0x3F);
    // Only ASCII was written.
    std::str::from_utf8(&NAMES[i]).unwrap_or("unknown-token")
}

fn page_ns(page: u8) -> Option<Ns> {
    match page {
        0 => Some(Ns::SyncMl),
        1 => Some(Ns::MetInf),
        2 => Some(Ns::DmDdf),
        _ => None,
    }
}

fn ns_page(ns: Ns) -> u8 {
    match ns {
        Ns::SyncMl => 0,
        Ns::MetInf => 1,
        Ns::DmDdf => 2,
    }
}

/// The token (without flags) of element `name` on the page of `ns`.
#[cfg(test)]
fn tag_token(ns: Ns, name: &str) -> Option<u8> {
    page_table(ns)
        .iter()
        .position(|n| !n.is_empty() && *n == name)
        .map(|i| i as u8 + 5)
}

fn tag_name(ns: Ns, token: u8) -> Option<&'static str> {
    page_table(ns)
        .get(usize::from(token).checked_sub(5)?)
        .copied()
        .filter(|n| !n.is_empty())
}

/// PROTOCOL A.1: decodes a WBXML SyncML message.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut cur = Cursor::new(bytes, 0);
    let header = cur.header()?;
    let accepted = match &header.public_id {
        PublicId::Known(id) => *id == PUBLIC_ID_SYNCML_1_2 || *id == PUBLIC_ID_SYNCML_1_1,
        PublicId::Literal(fpi) => fpi.to_ascii_lowercase().contains("dtd syncml"),
    };
    if !accepted {
        return Err(DecodeError::new(
            "(document)",
            1,
            DecodeErrorKind::Unsupported(format!(
                "WBXML public id {}; expected SyncML 1.2 (0x1201)",
                header.public_id
            )),
        ));
    }
    let doc = cur.body(&header)?;
    map::message_from_el(doc.root())
}

/// PROTOCOL A.1: the WBXML encoding (see the module docs for the rule).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut w = WbxmlWriter::new(Vec::with_capacity(map::size_hint(msg) / 2));
    w.out.push(0x02);
    put_mb(&mut w.out, PUBLIC_ID_SYNCML_1_2);
    put_mb(&mut w.out, CHARSET_UTF8);
    w.out.push(0x00); // empty string table
    map::write_message(&mut w, msg);
    w.out
}

/// At most the bytes `cmd` adds to the WBXML of a message whose body has
/// content already: measured after a Final, on the SyncML code page; in a
/// message the page may differ, costing one more `SWITCH_PAGE` (two bytes)
/// before its first element. Past that the same pages follow.
pub(crate) fn command_len_bound(cmd: &Command) -> usize {
    let mut w = WbxmlWriter::new(Vec::with_capacity(128));
    map::open_body(&mut w);
    let start = w.out.len();
    map::write_command(&mut w, cmd);
    w.out.len() - start + 2
}

/// The header of a standalone WBXML DM DDF document.
fn tnds_writer(capacity: usize) -> WbxmlWriter {
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(&[0x02, 0x00, 0x00]); // version 1.2, literal public id at index 0
    put_mb(&mut out, CHARSET_UTF8);
    put_mb(&mut out, FPI_DM_DDF_1_2.len() as u32 + 1);
    out.extend_from_slice(FPI_DM_DDF_1_2.as_bytes());
    out.push(0);
    WbxmlWriter::new(out)
}

/// PROTOCOL A.1: `tree` as a standalone WBXML DM DDF document.
pub(crate) fn write_tnds(tree: &MgmtTree) -> Vec<u8> {
    let mut w = tnds_writer(1024);
    map::write_tree(&mut w, tree);
    w.out
}

/// PROTOCOL A.1: if `bytes` are a WBXML DM DDF document (libwbxml's way of
/// carrying TNDS in `Data`), its tree; `None` when they are not one.
/// `base` is where the bytes sit in the outer message, for error offsets.
pub(crate) fn nested_tnds(bytes: &[u8], base: usize) -> Result<Option<MgmtTree>, DecodeError> {
    if !matches!(bytes.first(), Some(0x01..=0x03)) {
        return Ok(None);
    }
    let mut cur = Cursor::new(bytes, base);
    let Ok(header) = cur.header() else {
        return Ok(None);
    };
    match &header.public_id {
        PublicId::Literal(fpi) if fpi.contains("DM-DDF") => {}
        _ => return Ok(None),
    }
    let doc = cur.body(&header)?;
    map::tree_from_el(doc.root()).map(Some)
}

fn put_mb(out: &mut Vec<u8>, mut n: u32) {
    let mut tmp = [0u8; 5];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (n & 0x7F) as u8 | if i == tmp.len() - 1 { 0 } else { 0x80 };
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn put_opaque(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(OPAQUE);
    put_mb(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// The WBXML [`Sink`]: writes straight into one buffer. An element's token
/// is written when it opens; the content bit is set on it when content
/// follows, and `END` written only then.
pub(crate) struct WbxmlWriter {
    out: Vec<u8>,
    /// Per open element: where its token is, and whether it has content.
    stack: Vec<(usize, bool)>,
    page: u8,
}

impl WbxmlWriter {
    fn new(out: Vec<u8>) -> Self {
        Self {
            out,
            stack: Vec::with_capacity(16),
            page: 0,
        }
    }

    fn content(&mut self) {
        if let Some((at, content)) = self.stack.last_mut() {
            if !*content {
                *content = true;
                self.out[*at] |= CONTENT;
            }
        }
    }
}

impl Sink for WbxmlWriter {
    const WBXML: bool = true;

    fn open(&mut self, tag: Tag) {
        self.content();
        let want = ns_page(tag.ns);
        if self.page != want {
            self.out.extend_from_slice(&[SWITCH_PAGE, want]);
            self.page = want;
        }
        self.stack.push((self.out.len(), false));
        self.out.push(tag.token);
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.content();
        // STR_I cannot carry a NUL byte.
        if text.as_bytes().contains(&0) {
            put_opaque(&mut self.out, text.as_bytes());
        } else {
            self.out.push(STR_I);
            self.out.extend_from_slice(text.as_bytes());
            self.out.push(0);
        }
    }

    fn opaque(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.content();
            put_opaque(&mut self.out, bytes);
        }
    }

    fn close(&mut self) {
        match self.stack.pop() {
            Some((_, true)) => self.out.push(END),
            Some((_, false)) => {}
            None => debug_assert!(false, "close without open"),
        }
    }

    /// In a SyncML document, TNDS goes as an `OPAQUE` holding a DM DDF
    /// document (see the module docs).
    fn tree(&mut self, tree: &MgmtTree) {
        let mut nested = tnds_writer(1024);
        map::write_tree(&mut nested, tree);
        self.opaque(&nested.out);
    }

    /// `open`, `text`, `close` in one go (most elements are leaves).
    fn leaf(&mut self, tag: Tag, text: &str) {
        if text.as_bytes().contains(&0) {
            self.open(tag);
            self.text(text);
            self.close();
            return;
        }
        self.content();
        let want = ns_page(tag.ns);
        if self.page != want {
            self.out.extend_from_slice(&[SWITCH_PAGE, want]);
            self.page = want;
        }
        if text.is_empty() {
            self.out.push(tag.token);
        } else {
            self.out.reserve(text.len() + 4);
            self.out.extend_from_slice(&[tag.token | CONTENT, STR_I]);
            self.out.extend_from_slice(text.as_bytes());
            self.out.extend_from_slice(&[0, END]);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicId {
    Known(u32),
    Literal(String),
}

impl std::fmt::Display for PublicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicId::Known(id) => write!(f, "0x{id:04X}"),
            PublicId::Literal(s) => write!(f, "{s:?}"),
        }
    }
}

struct Header<'a> {
    public_id: PublicId,
    strtbl: &'a [u8],
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes` in the outermost input.
    base: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Self {
            bytes,
            pos: 0,
            base,
        }
    }

    fn fail(&self, el: Option<&str>, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(el.unwrap_or("(document)"), self.base + self.pos, kind)
    }

    fn fail_at(&self, el: Option<&str>, at: usize, kind: DecodeErrorKind) -> DecodeError {
        let mut e = self.fail(el, kind);
        e.offset = at;
        e
    }

    fn malformed(&self, el: Option<&str>, what: &str) -> DecodeError {
        self.fail(el, DecodeErrorKind::Syntax(format!("WBXML: {what}")))
    }

    fn byte(&mut self, el: Option<&str>) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.malformed(el, "unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A multi-byte unsigned integer (mb_u_int32), refusing overflow.
    fn mb(&mut self, el: Option<&str>) -> Result<u32, DecodeError> {
        let mut n: u32 = 0;
        for _ in 0..5 {
            let b = self.byte(el)?;
            if n > (u32::MAX >> 7) {
                return Err(self.malformed(el, "multi-byte integer overflows 32 bits"));
            }
            n = (n << 7) | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.malformed(el, "multi-byte integer longer than 5 bytes"))
    }

    fn take(&mut self, len: u32, el: Option<&str>) -> Result<&'a [u8], DecodeError> {
        let len = len as usize;
        if len > self.bytes.len() - self.pos {
            return Err(self.malformed(el, "length beyond the end of input"));
        }
        let s = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn header(&mut self) -> Result<Header<'a>, DecodeError> {
        let version = self.byte(None)?;
        if !(0x01..=0x03).contains(&version) {
            return Err(self.fail(
                None,
                DecodeErrorKind::Unsupported(format!(
                    "WBXML version 0x{version:02X} (0x01–0x03 accepted)"
                )),
            ));
        }
        let id = self.mb(None)?;
        let literal_index = if id == 0 { Some(self.mb(None)?) } else { None };
        let charset = self.mb(None)?;
        if charset != CHARSET_UTF8 {
            return Err(self.fail(
                None,
                DecodeErrorKind::Unsupported(format!("charset {charset} (only UTF-8, 106)")),
            ));
        }
        let len = self.mb(None)?;
        let strtbl = self.take(len, None)?;
        let public_id = match literal_index {
            None => PublicId::Known(id),
            Some(i) => PublicId::Literal(self.table_str(strtbl, i, None)?.to_owned()),
        };
        Ok(Header { public_id, strtbl })
    }

    fn table_str(
        &self,
        strtbl: &'a [u8],
        index: u32,
        el: Option<&str>,
    ) -> Result<&'a str, DecodeError> {
        let rest = strtbl
            .get(index as usize..)
            .ok_or_else(|| self.malformed(el, "string table index out of range"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.malformed(el, "unterminated string in string table"))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.malformed(el, "string is not UTF-8"))
    }

    fn inline_str(&mut self, el: Option<&str>) -> Result<&'a str, DecodeError> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.malformed(el, "unterminated inline string"))?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.malformed(el, "inline string is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }

    /// The body: one root element, read with an explicit stack.
    fn body(&mut self, header: &Header<'a>) -> Result<Doc<'a>, DecodeError> {
        // An element takes a byte at least, a text two.
        let mut doc = Doc::with_capacity(self.bytes.len() / 3 + 4);
        let mut stack: Vec<u32> = Vec::with_capacity(16);
        let mut page: u8 = 0;
        loop {
            let at = self.base + self.pos;
            let el = stack.last().map(|&i| doc.name_of(i));
            let tok = self.byte(el)?;
            let finished = match tok {
                SWITCH_PAGE => {
                    page = self.byte(el)?;
                    false
                }
                END => {
                    if stack.pop().is_none() {
                        return Err(self.malformed(el, "END without an open element"));
                    }
                    stack.is_empty()
                }
                ENTITY => {
                    let code = self.mb(el)?;
                    let c = char::from_u32(code)
                        .ok_or_else(|| self.malformed(el, "ENTITY is not a character"))?;
                    self.push_text(&mut doc, &stack, Cow::Owned(c.to_string()))?;
                    false
                }
                STR_I => {
                    let s = self.inline_str(el)?;
                    self.push_text(&mut doc, &stack, Cow::Borrowed(s))?;
                    false
                }
                STR_T => {
                    let i = self.mb(el)?;
                    let s = self.table_str(header.strtbl, i, el)?;
                    self.push_text(&mut doc, &stack, Cow::Borrowed(s))?;
                    false
                }
                OPAQUE => {
                    let len = self.mb(el)?;
                    let b = self.take(len, el)?;
                    match stack.last() {
                        Some(&p) => doc.opaque(p, b),
                        None => return Err(self.malformed(el, "OPAQUE outside the root")),
                    };
                    false
                }
                0x40..=0x43 | 0x80..=0x82 | 0xC0..=0xC2 => {
                    return Err(self.fail_at(
                        el,
                        at,
                        DecodeErrorKind::Unsupported(format!(
                            "WBXML extension or PI token 0x{tok:02X}"
                        )),
                    ))
                }
                _ if tok & ATTRIBUTES != 0 => {
                    return Err(self.fail_at(
                        el,
                        at,
                        DecodeErrorKind::Unsupported("WBXML attributes (SyncML uses none)".into()),
                    ))
                }
                _ => {
                    let ns = page_ns(page).ok_or_else(|| {
                        self.fail(
                            el,
                            DecodeErrorKind::Unsupported(format!("WBXML code page {page}")),
                        )
                    })?;
                    let (name, id) = if tok & 0x3F == LITERAL {
                        let i = self.mb(el)?;
                        let name = self.table_str(header.strtbl, i, el)?;
                        (name, name_id(name.as_bytes()))
                    } else {
                        match tag_name(ns, tok & 0x3F) {
                            Some(name) => (name, token_id(ns, tok & 0x3F)),
                            None => (unknown_token_name(page, tok & 0x3F), UNKNOWN),
                        }
                    };
                    if tok & CONTENT != 0 && stack.len() >= MAX_NESTING {
                        return Err(self.fail_at(el, at, DecodeErrorKind::TooDeep));
                    }
                    let idx = doc.element(stack.last().copied(), name, id, ns, at);
                    if tok & CONTENT != 0 {
                        stack.push(idx);
                        false
                    } else {
                        stack.is_empty()
                    }
                }
            };
            if finished {
                if self.pos != self.bytes.len() {
                    return Err(DecodeError::new(
                        doc.name_of(0),
                        self.base + self.pos,
                        DecodeErrorKind::TrailingData,
                    ));
                }
                return Ok(doc);
            }
        }
    }

    fn push_text(
        &self,
        doc: &mut Doc<'a>,
        stack: &[u32],
        s: Cow<'a, str>,
    ) -> Result<(), DecodeError> {
        let Some(&p) = stack.last() else {
            return Err(self.malformed(None, "text outside the root"));
        };
        doc.add_text_joined(p, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Elements on no page keep the names they were given when built one
    // by one.
    #[test]
    fn unknown_token_names() {
        for page in 0..=2u8 {
            for token in 0..64u8 {
                let name = format!("unknown-token-{page}-0x{token:02X}");
                assert_eq!(unknown_token_name(page, token), name);
            }
        }
    }

    // PROTOCOL A.1: the token anchors given for each page.
    #[test]
    fn token_tables() {
        assert_eq!(tag_token(Ns::SyncMl, "SyncML"), Some(0x2D));
        assert_eq!(tag_token(Ns::SyncMl, "VerDTD"), Some(0x31));
        assert_eq!(tag_token(Ns::SyncMl, "Correlator"), Some(0x3C));
        assert_eq!(tag_token(Ns::MetInf, "NextNonce"), Some(0x10));
        assert_eq!(tag_token(Ns::MetInf, "FieldLevel"), Some(0x16));
        for (name, tok) in [
            ("AccessType", 0x05),
            ("ACL", 0x06),
            ("Format", 0x1C),
            ("MgmtTree", 0x20),
            ("Node", 0x24),
            ("NodeName", 0x26),
            ("RTProperties", 0x2F),
            ("Type", 0x35),
            ("Value", 0x36),
            ("VerDTD", 0x37),
            ("ZeroOrOne", 0x3C),
        ] {
            assert_eq!(tag_token(Ns::DmDdf, name), Some(tok), "{name}");
        }
        assert_eq!(tag_name(Ns::SyncMl, 0x30), None);
        assert_eq!(tag_name(Ns::SyncMl, 0x3D), None);
    }

    #[test]
    fn multibyte_integers() {
        for n in [0, 1, 0x7F, 0x80, 0x1201, 0x3FFF, 0x4000, u32::MAX] {
            let mut out = Vec::new();
            put_mb(&mut out, n);
            let mut cur = Cursor::new(&out, 0);
            assert_eq!(cur.mb(None).unwrap(), n);
            assert_eq!(cur.pos, out.len());
        }
        let mut out = Vec::new();
        put_mb(&mut out, 0x1201);
        assert_eq!(out, [0xA4, 0x01]);
        // 2^35: overflows
        let mut cur = Cursor::new(&[0x90, 0x80, 0x80, 0x80, 0x00], 0);
        assert!(cur.mb(None).is_err());
        let mut cur = Cursor::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 0);
        assert!(cur.mb(None).is_err());
    }
}

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

use super::element::{intern, El, Node, Ns};
use super::model::Message;
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
const PAGE_SYNCML: [&str; 56] = [
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
const PAGE_METINF: [&str; 18] = [
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
const PAGE_DMDDF: [&str; 56] = [
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
    let root = cur.body(&header)?;
    map::message_from_el(&root)
}

/// PROTOCOL A.1: the WBXML encoding (see the module docs for the rule).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = vec![0x02];
    put_mb(&mut out, PUBLIC_ID_SYNCML_1_2);
    put_mb(&mut out, CHARSET_UTF8);
    out.push(0x00); // empty string table
    let mut page = 0;
    write_el(&mut out, &map::message_to_el(msg, true), &mut page, true);
    out
}

/// A standalone WBXML DM DDF document of `root` (a `MgmtTree` element).
pub(crate) fn write_tnds_document(root: &El) -> Vec<u8> {
    let mut out = vec![0x02, 0x00, 0x00]; // version 1.2, literal public id at index 0
    put_mb(&mut out, CHARSET_UTF8);
    put_mb(&mut out, FPI_DM_DDF_1_2.len() as u32 + 1);
    out.extend_from_slice(FPI_DM_DDF_1_2.as_bytes());
    out.push(0);
    let mut page = 0;
    write_el(&mut out, root, &mut page, false);
    out
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
    let root = cur.body(&header)?;
    MgmtTree::from_el(&root).map(Some)
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

fn write_el(out: &mut Vec<u8>, el: &El, page: &mut u8, syncml_doc: bool) {
    let Some(token) = tag_token(el.ns, &el.name) else {
        debug_assert!(false, "no WBXML token for {}", el.name);
        return;
    };
    let want = ns_page(el.ns);
    if *page != want {
        out.extend_from_slice(&[SWITCH_PAGE, want]);
        *page = want;
    }
    let has_content = el.children.iter().any(|n| match n {
        Node::Text(t) => !t.is_empty(),
        Node::Opaque(b) => !b.is_empty(),
        Node::El(_) => true,
    });
    if !has_content {
        out.push(token);
        return;
    }
    out.push(token | CONTENT);
    for n in &el.children {
        match n {
            Node::Text(t) if t.is_empty() => {}
            Node::Text(t) if t.contains('\0') => put_opaque(out, t.as_bytes()),
            Node::Text(t) => {
                out.push(STR_I);
                out.extend_from_slice(t.as_bytes());
                out.push(0);
            }
            Node::Opaque(b) if b.is_empty() => {}
            Node::Opaque(b) => put_opaque(out, b),
            Node::El(c) if syncml_doc && c.ns == Ns::DmDdf => {
                put_opaque(out, &write_tnds_document(c));
            }
            Node::El(c) => write_el(out, c, page, syncml_doc),
        }
    }
    out.push(END);
}

fn put_opaque(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(OPAQUE);
    put_mb(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
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

    fn fail(&self, stack: &[El], kind: DecodeErrorKind) -> DecodeError {
        let element = stack
            .last()
            .map_or("(document)".to_owned(), |e| e.name.to_string());
        DecodeError::new(element, self.base + self.pos, kind)
    }

    fn fail_at(&self, stack: &[El], at: usize, kind: DecodeErrorKind) -> DecodeError {
        let mut e = self.fail(stack, kind);
        e.offset = at;
        e
    }

    fn malformed(&self, stack: &[El], what: &str) -> DecodeError {
        self.fail(stack, DecodeErrorKind::Syntax(format!("WBXML: {what}")))
    }

    fn byte(&mut self, stack: &[El]) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.malformed(stack, "unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A multi-byte unsigned integer (mb_u_int32), refusing overflow.
    fn mb(&mut self, stack: &[El]) -> Result<u32, DecodeError> {
        let mut n: u32 = 0;
        for _ in 0..5 {
            let b = self.byte(stack)?;
            if n > (u32::MAX >> 7) {
                return Err(self.malformed(stack, "multi-byte integer overflows 32 bits"));
            }
            n = (n << 7) | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.malformed(stack, "multi-byte integer longer than 5 bytes"))
    }

    fn take(&mut self, len: u32, stack: &[El]) -> Result<&'a [u8], DecodeError> {
        let len = len as usize;
        if len > self.bytes.len() - self.pos {
            return Err(self.malformed(stack, "length beyond the end of input"));
        }
        let s = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn header(&mut self) -> Result<Header<'a>, DecodeError> {
        let version = self.byte(&[])?;
        if !(0x01..=0x03).contains(&version) {
            return Err(self.fail(
                &[],
                DecodeErrorKind::Unsupported(format!(
                    "WBXML version 0x{version:02X} (0x01–0x03 accepted)"
                )),
            ));
        }
        let id = self.mb(&[])?;
        let literal_index = if id == 0 { Some(self.mb(&[])?) } else { None };
        let charset = self.mb(&[])?;
        if charset != CHARSET_UTF8 {
            return Err(self.fail(
                &[],
                DecodeErrorKind::Unsupported(format!("charset {charset} (only UTF-8, 106)")),
            ));
        }
        let len = self.mb(&[])?;
        let strtbl = self.take(len, &[])?;
        let public_id = match literal_index {
            None => PublicId::Known(id),
            Some(i) => PublicId::Literal(self.table_str(strtbl, i, &[])?.to_owned()),
        };
        Ok(Header { public_id, strtbl })
    }

    fn table_str(
        &self,
        strtbl: &'a [u8],
        index: u32,
        stack: &[El],
    ) -> Result<&'a str, DecodeError> {
        let rest = strtbl
            .get(index as usize..)
            .ok_or_else(|| self.malformed(stack, "string table index out of range"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.malformed(stack, "unterminated string in string table"))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.malformed(stack, "string is not UTF-8"))
    }

    fn inline_str(&mut self, stack: &[El]) -> Result<&'a str, DecodeError> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.malformed(stack, "unterminated inline string"))?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.malformed(stack, "inline string is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }

    /// The body: one root element, read with an explicit stack.
    fn body(&mut self, header: &Header<'a>) -> Result<El, DecodeError> {
        let mut stack: Vec<El> = Vec::new();
        let mut page: u8 = 0;
        loop {
            let at = self.base + self.pos;
            let tok = self.byte(&stack)?;
            let finished: Option<El> = match tok {
                SWITCH_PAGE => {
                    page = self.byte(&stack)?;
                    None
                }
                END => {
                    let el = stack
                        .pop()
                        .ok_or_else(|| self.malformed(&stack, "END without an open element"))?;
                    match stack.last_mut() {
                        Some(p) => {
                            p.children.push(Node::El(el));
                            None
                        }
                        None => Some(el),
                    }
                }
                ENTITY => {
                    let code = self.mb(&stack)?;
                    let c = char::from_u32(code)
                        .ok_or_else(|| self.malformed(&stack, "ENTITY is not a character"))?;
                    self.push_text(&mut stack, &c.to_string())?;
                    None
                }
                STR_I => {
                    let s = self.inline_str(&stack)?;
                    self.push_text(&mut stack, s)?;
                    None
                }
                STR_T => {
                    let i = self.mb(&stack)?;
                    let s = self.table_str(header.strtbl, i, &stack)?;
                    self.push_text(&mut stack, s)?;
                    None
                }
                OPAQUE => {
                    let len = self.mb(&stack)?;
                    let b = self.take(len, &stack)?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(Node::Opaque(b.to_vec())),
                        None => return Err(self.malformed(&stack, "OPAQUE outside the root")),
                    }
                    None
                }
                0x40..=0x43 | 0x80..=0x82 | 0xC0..=0xC2 => {
                    return Err(self.fail_at(
                        &stack,
                        at,
                        DecodeErrorKind::Unsupported(format!(
                            "WBXML extension or PI token 0x{tok:02X}"
                        )),
                    ))
                }
                _ if tok & ATTRIBUTES != 0 => {
                    return Err(self.fail_at(
                        &stack,
                        at,
                        DecodeErrorKind::Unsupported("WBXML attributes (SyncML uses none)".into()),
                    ))
                }
                _ => {
                    let ns = page_ns(page).ok_or_else(|| {
                        self.fail(
                            &stack,
                            DecodeErrorKind::Unsupported(format!("WBXML code page {page}")),
                        )
                    })?;
                    let name = if tok & 0x3F == LITERAL {
                        let i = self.mb(&stack)?;
                        intern(ns, self.table_str(header.strtbl, i, &stack)?)
                    } else {
                        tag_name(ns, tok & 0x3F).map_or_else(
                            || Cow::Owned(format!("unknown-token-{page}-0x{:02X}", tok & 0x3F)),
                            Cow::Borrowed,
                        )
                    };
                    let el = El {
                        name,
                        ns,
                        offset: at,
                        children: Vec::new(),
                    };
                    if tok & CONTENT != 0 {
                        if stack.len() >= MAX_NESTING {
                            return Err(self.fail_at(&stack, at, DecodeErrorKind::TooDeep));
                        }
                        stack.push(el);
                        None
                    } else {
                        match stack.last_mut() {
                            Some(p) => {
                                p.children.push(Node::El(el));
                                None
                            }
                            None => Some(el),
                        }
                    }
                }
            };
            if let Some(root) = finished {
                if self.pos != self.bytes.len() {
                    return Err(DecodeError::new(
                        root.name,
                        self.base + self.pos,
                        DecodeErrorKind::TrailingData,
                    ));
                }
                return Ok(root);
            }
        }
    }

    fn push_text(&self, stack: &mut [El], s: &str) -> Result<(), DecodeError> {
        let Some(p) = stack.last_mut() else {
            return Err(self.malformed(stack, "text outside the root"));
        };
        if let Some(Node::Text(t)) = p.children.last_mut() {
            t.push_str(s);
        } else {
            p.children.push(Node::Text(s.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(cur.mb(&[]).unwrap(), n);
            assert_eq!(cur.pos, out.len());
        }
        let mut out = Vec::new();
        put_mb(&mut out, 0x1201);
        assert_eq!(out, [0xA4, 0x01]);
        // 2^35: overflows
        let mut cur = Cursor::new(&[0x90, 0x80, 0x80, 0x80, 0x00], 0);
        assert!(cur.mb(&[]).is_err());
        let mut cur = Cursor::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 0);
        assert!(cur.mb(&[]).is_err());
    }
}

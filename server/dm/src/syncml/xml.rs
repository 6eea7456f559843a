//! The XML encoding of SyncML DM (PROTOCOL A.1), on quick-xml.
//!
//! Tolerant of what real clients send: an XML declaration, namespace
//! declarations in single or double quotes, on Meta children or not,
//! indentation, CDATA, any element order, comments and processing
//! instructions, and a `DOCTYPE` that only names the external DTD (old
//! SyncML clients and `wbxml2xml` write one; it is never fetched).
//! Refused: a `DOCTYPE` with an internal subset (no entity is ever
//! defined), references other than the five predefined entities and
//! numeric character references, nesting deeper than [`MAX_NESTING`], and
//! anything but blanks, comments and processing instructions after the root
//! element (a second concatenated document is an error, not ignored: the
//! body of one HTTP request is one message).

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::element::{name_id, Doc, Kind, Ns, Sink, Tag, UNKNOWN};
use super::model::Message;
use super::{map, DecodeError, DecodeErrorKind, MAX_NESTING};
use crate::tnds::MgmtTree;
use base64::Engine as _;

/// PROTOCOL A.1: decodes an XML SyncML message.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    map::message_from_el(read_doc(bytes)?.root())
}

/// PROTOCOL A.1: the compact XML encoding (`<SyncML xmlns="SYNCML:SYNCML1.2">`,
/// `xmlns="syncml:metinf"` on every Meta child, as clients write it).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut w = XmlWriter::new(false, map::size_hint(msg));
    map::write_message(&mut w, msg);
    w.finish()
}

/// PROTOCOL A.1: indented XML for people; decodes to the same message.
pub fn to_pretty(msg: &Message) -> String {
    let mut w = XmlWriter::new(true, 2 * map::size_hint(msg));
    map::write_message(&mut w, msg);
    into_string(w.finish())
}

fn into_string(bytes: Vec<u8>) -> String {
    // The writer only writes `&str`s and ASCII.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn syntax(doc: &Doc<'_>, stack: &[u32], offset: usize, what: String) -> DecodeError {
    let element = stack.last().map_or("(document)", |&e| doc.name_of(e));
    DecodeError::new(
        element,
        offset,
        DecodeErrorKind::Syntax(format!("XML: {what}")),
    )
}

/// `piece`, a slice of `input`, as a slice of `valid` (`input` already
/// checked as UTF-8), without checking it again.
fn piece_of<'a>(valid: Option<&'a str>, input: &[u8], piece: &[u8]) -> Option<&'a str> {
    let start = (piece.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    valid?.get(start..start.checked_add(piece.len())?)
}

fn open<'a>(
    e: &quick_xml::events::BytesStart<'_>,
    input: &'a [u8],
    valid: Option<&'a str>,
    doc: &Doc<'a>,
    stack: &[u32],
    offset: usize,
) -> Result<Kind<'a>, DecodeError> {
    let parent_ns = stack.last().map_or(Ns::SyncMl, |&p| doc.ns_of(p));
    let qname = e.name().into_inner();
    // The local name: after the first `:` (as quick-xml's `local_name`).
    // No known name has a `:`, so a known name is its own local name.
    let mut id = name_id(qname);
    let local = if id != UNKNOWN {
        qname
    } else if let Some(i) = qname.iter().position(|&b| b == b':') {
        let local = &qname[i + 1..];
        id = name_id(local);
        local
    } else {
        qname
    };
    let name = match piece_of(valid, input, local) {
        // The usual case: a slice of the input, already checked as UTF-8.
        Some(name) => Cow::Borrowed(name),
        None => {
            let not_utf8 = || syntax(doc, stack, offset, "element name is not UTF-8".into());
            // The tag starts at `offset` (`<` then the qualified name):
            // borrow the name from the input when it is there.
            let end = offset + 1 + qname.len();
            match input.get(end - local.len()..end) {
                Some(there) if there == local => {
                    Cow::Borrowed(std::str::from_utf8(there).map_err(|_| not_utf8())?)
                }
                _ => Cow::Owned(
                    std::str::from_utf8(local)
                        .map_err(|_| not_utf8())?
                        .to_owned(),
                ),
            }
        }
    };
    let mut ns = parent_ns;
    let raw = e.attributes_raw();
    if raw.is_empty() {
        // No attributes: the usual case.
    } else if let Some(uri) = lone_xmlns(raw).and_then(|v| match piece_of(valid, input, v) {
        Some(v) => Some(v),
        None => std::str::from_utf8(v).ok(),
    }) {
        if let Some(found) = Ns::from_uri(uri) {
            ns = found;
        }
    } else {
        for attr in e.attributes() {
            let attr = attr.map_err(|err| syntax(doc, stack, offset, err.to_string()))?;
            if attr.key.as_ref() == b"xmlns" {
                let v = attr
                    .unescape_value()
                    .map_err(|err| syntax(doc, stack, offset, err.to_string()))?;
                if let Some(found) = Ns::from_uri(&v) {
                    ns = found;
                }
            }
        }
    }
    Ok(Kind::El {
        name,
        id,
        ns,
        offset,
    })
}

/// The value of `raw` when it is exactly one `xmlns="…"` (or `'…'`)
/// attribute whose value needs no unescaping, as clients write it; `None`
/// sends anything else through quick-xml's attribute parser and its checks.
fn lone_xmlns(raw: &[u8]) -> Option<&[u8]> {
    let rest = raw.trim_ascii_start().strip_prefix(b"xmlns=")?;
    let (&quote, rest) = rest.split_first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    // Up to the closing quote, with nothing to unescape on the way.
    let end = rest
        .iter()
        .position(|&b| b == quote || b == b'&' || b == b'<')
        .filter(|&i| rest[i] == quote)?;
    let (value, after) = (&rest[..end], &rest[end + 1..]);
    if !after.trim_ascii().is_empty() {
        return None;
    }
    Some(value)
}

/// How many `<` are in `bytes` (counted in blocks of 255 with a byte
/// counter, which compilers turn into vector code).
fn count_lt(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|block| {
            let n = block
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'<')));
            usize::from(n)
        })
        .sum()
}

/// Reads one XML document into a [`Doc`] (see the module docs for what is
/// tolerated and refused).
pub(crate) fn read_doc(bytes: &[u8]) -> Result<Doc<'_>, DecodeError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Checked as UTF-8 once: names and text that need no unescaping are
    // then borrowed without checking each again. Invalid input takes the
    // piecewise checks, which name the element and offset.
    let valid = std::str::from_utf8(bytes).ok();
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    // At most one element or text per `<`, about one of each in compact XML.
    let tags = count_lt(bytes);
    let mut doc = Doc::with_capacity(tags + 4);
    let mut stack: Vec<u32> = Vec::with_capacity(16);
    let mut done = false;
    loop {
        let offset = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            syntax(
                &doc,
                &stack,
                reader.error_position() as usize,
                e.to_string(),
            )
        })?;
        if done {
            match event {
                Event::Eof => break,
                Event::Comment(_) | Event::PI(_) => continue,
                Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => continue,
                _ => {
                    return Err(DecodeError::new(
                        "SyncML",
                        offset,
                        DecodeErrorKind::TrailingData,
                    ))
                }
            }
        }
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_NESTING {
                    let mut err = syntax(&doc, &stack, offset, "too deep".into());
                    err.kind = DecodeErrorKind::TooDeep;
                    return Err(err);
                }
                let kind = open(&e, bytes, valid, &doc, &stack, offset)?;
                let idx = doc.add(stack.last().copied(), kind);
                stack.push(idx);
            }
            Event::Empty(e) => {
                let kind = open(&e, bytes, valid, &doc, &stack, offset)?;
                doc.add(stack.last().copied(), kind);
                done = stack.is_empty();
            }
            Event::End(_) => {
                if stack.pop().is_none() {
                    return Err(syntax(&doc, &stack, offset, "unexpected end tag".into()));
                }
                done = stack.is_empty();
            }
            Event::Text(t) => {
                let text = match piece_of(valid, bytes, &t) {
                    Some(text) if !text.contains('&') => Cow::Borrowed(text),
                    _ => t
                        .unescape()
                        .map_err(|e| syntax(&doc, &stack, offset, e.to_string()))?,
                };
                match stack.last() {
                    Some(&p) => {
                        doc.add(Some(p), Kind::Text(text));
                    }
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err(syntax(
                            &doc,
                            &stack,
                            offset,
                            "text outside the root element".into(),
                        ))
                    }
                }
            }
            Event::CData(c) => {
                let text = match c.into_inner() {
                    Cow::Borrowed(b) => std::str::from_utf8(b).map(Cow::Borrowed).ok(),
                    Cow::Owned(b) => String::from_utf8(b).map(Cow::Owned).ok(),
                }
                .ok_or_else(|| syntax(&doc, &stack, offset, "CDATA is not UTF-8".into()))?;
                match stack.last() {
                    Some(&p) => {
                        doc.add(Some(p), Kind::Text(text));
                    }
                    None => {
                        return Err(syntax(
                            &doc,
                            &stack,
                            offset,
                            "CDATA outside the root element".into(),
                        ))
                    }
                }
            }
            Event::DocType(d) => {
                if d.contains(&b'[') {
                    return Err(DecodeError::new(
                        "(document)",
                        offset,
                        DecodeErrorKind::Unsupported(
                            "a DOCTYPE with an internal subset (entity definitions)".into(),
                        ),
                    ));
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                return Err(syntax(
                    &doc,
                    &stack,
                    offset,
                    "unexpected end of input".into(),
                ));
            }
        }
    }
    if !done {
        return Err(syntax(&doc, &[], 0, "no root element".into()));
    }
    Ok(doc)
}

/// PROTOCOL A.1: a standalone TNDS XML document.
pub(crate) fn read_tnds(bytes: &[u8]) -> Result<MgmtTree, DecodeError> {
    map::tree_from_el(read_doc(bytes)?.root())
}

/// PROTOCOL A.1: `tree` as a standalone TNDS XML document.
pub(crate) fn write_tnds(tree: &MgmtTree) -> String {
    let mut w = XmlWriter::new(false, 1024);
    map::write_tree(&mut w, tree);
    into_string(w.finish())
}

/// Whether `bytes` hold `&`, `<`, `>` or CR, eight bytes at a time.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Non-zero exactly when some byte of `x` equals `c`.
    fn has(x: u64, c: u8) -> u64 {
        let v = x ^ (ONES * u64::from(c));
        v.wrapping_sub(ONES) & !v & HIGH
    }
    let special = |w: &[u8]| {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        let x = u64::from_ne_bytes(x);
        has(x, b'&') | has(x, b'<') | has(x, b'>') | has(x, b'\r') != 0
    };
    if bytes.len() < 8 {
        return bytes
            .iter()
            .any(|&b| matches!(b, b'&' | b'<' | b'>' | b'\r'));
    }
    let mut words = bytes.chunks_exact(8);
    if words.any(special) {
        return true;
    }
    // The last bytes as one word overlapping the one before.
    !words.remainder().is_empty() && special(&bytes[bytes.len() - 8..])
}

/// `text` with `&`, `<`, `>` and CR escaped, appended to `out`.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

struct Frame {
    tag: Tag,
    /// `>` written: the element has content.
    content: bool,
    /// It holds elements (pretty printing indents its end tag).
    elements: bool,
}

/// The XML [`Sink`]: writes straight into one buffer.
pub(crate) struct XmlWriter {
    out: Vec<u8>,
    stack: Vec<Frame>,
    pretty: bool,
}

impl XmlWriter {
    pub(crate) fn new(pretty: bool, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        if pretty {
            out.push(b'\n');
        }
        Self {
            out,
            stack: Vec::with_capacity(16),
            pretty,
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        debug_assert!(self.stack.is_empty());
        if self.pretty {
            self.out.push(b'\n');
        }
        self.out
    }

    fn indent(&mut self, depth: usize) {
        self.out.push(b'\n');
        self.out.resize(self.out.len() + 2 * depth, b' ');
    }

    /// Marks the innermost element as having content, closing its start tag.
    fn content(&mut self) {
        if let Some(f) = self.stack.last_mut() {
            if !f.content {
                f.content = true;
                self.out.push(b'>');
            }
        }
    }
}

impl Sink for XmlWriter {
    const WBXML: bool = false;

    fn open(&mut self, tag: Tag) {
        self.content();
        let depth = self.stack.len();
        let parent_ns = match self.stack.last_mut() {
            Some(f) => {
                f.elements = true;
                Some(f.tag.ns)
            }
            None => None,
        };
        if self.pretty && depth > 0 {
            self.indent(depth);
        }
        self.out.push(b'<');
        self.out.extend_from_slice(tag.name.as_bytes());
        if parent_ns != Some(tag.ns) {
            self.out.extend_from_slice(b" xmlns=\"");
            self.out.extend_from_slice(tag.ns.uri().as_bytes());
            self.out.push(b'"');
        }
        self.stack.push(Frame {
            tag,
            content: false,
            elements: false,
        });
    }

    fn text(&mut self, text: &str) {
        if !text.is_empty() {
            self.content();
            escape_into(&mut self.out, text);
        }
    }

    fn opaque(&mut self, bytes: &[u8]) {
        // XML carries no raw bytes: binary data goes as base64 text.
        if !bytes.is_empty() {
            self.content();
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            self.out.extend_from_slice(text.as_bytes());
        }
    }

    fn close(&mut self) {
        let Some(f) = self.stack.pop() else {
            debug_assert!(false, "close without open");
            return;
        };
        if !f.content {
            self.out.extend_from_slice(b"/>");
            return;
        }
        if self.pretty && f.elements {
            let depth = self.stack.len();
            self.indent(depth);
        }
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(f.tag.name.as_bytes());
        self.out.push(b'>');
    }

    fn tree(&mut self, tree: &MgmtTree) {
        map::write_tree(self, tree);
    }

    /// `open`, `text`, `close` in one go (most elements are leaves).
    fn leaf(&mut self, tag: Tag, text: &str) {
        if self.pretty {
            self.open(tag);
            self.text(text);
            self.close();
            return;
        }
        let parent_ns = match self.stack.last_mut() {
            Some(f) => {
                if !f.content {
                    f.content = true;
                    self.out.push(b'>');
                }
                f.elements = true;
                Some(f.tag.ns)
            }
            None => None,
        };
        let name = tag.name.as_bytes();
        self.out.reserve(2 * name.len() + text.len() + 32);
        self.out.push(b'<');
        self.out.extend_from_slice(name);
        if parent_ns != Some(tag.ns) {
            self.out.extend_from_slice(b" xmlns=\"");
            self.out.extend_from_slice(tag.ns.uri().as_bytes());
            self.out.push(b'"');
        }
        if text.is_empty() {
            self.out.extend_from_slice(b"/>");
        } else {
            self.out.push(b'>');
            escape_into(&mut self.out, text);
            self.out.extend_from_slice(b"</");
            self.out.extend_from_slice(name);
            self.out.push(b'>');
        }
    }
}

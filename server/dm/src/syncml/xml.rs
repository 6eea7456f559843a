//! The XML encoding of SyncML DM (PROTOCOL A.1): a reader of its own
//! (`xml/read.rs`) and a writer, both straight to and from bytes.
//!
//! Tolerant of what real clients send: an XML declaration, namespace
//! declarations in single or double quotes, on Meta children or not,
//! indentation, CDATA, any element order, comments and processing
//! instructions, and a `DOCTYPE` that only names the external DTD (old
//! SyncML clients and `wbxml2xml` write one; it is never fetched).
//! Refused: a `DOCTYPE` with an internal subset (no entity is ever
//! defined), references other than the five predefined entities and
//! numeric character references, nesting deeper than
//! [`MAX_NESTING`](super::MAX_NESTING), and
//! anything but blanks, comments and processing instructions after the root
//! element (a second concatenated document is an error, not ignored: the
//! body of one HTTP request is one message).

mod read;

pub(crate) use read::read_doc;

use super::element::{Ns, Sink, Tag, TAG_BLOCK};
use super::model::{Command, Message};
use super::{map, DecodeError};
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

/// The bytes `cmd` adds to the compact XML of a message whose body has
/// content already (its Final, another command): each element is written
/// the same wherever it stands.
pub(crate) fn command_len(cmd: &Command) -> usize {
    let mut w = XmlWriter::new(false, 256);
    map::open_body(&mut w);
    let start = w.out.len();
    map::write_command(&mut w, cmd);
    w.out.len() - start
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
    let mut rest = bytes;
    while let Some(i) = rest
        .iter()
        .position(|&b| matches!(b, b'&' | b'<' | b'>' | b'\r'))
    {
        out.extend_from_slice(&rest[..i]);
        match rest[i] {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.extend_from_slice(b"&#13;"),
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// One block of an [`XmlTag`](super::element::XmlTag), cut to its length.
fn put_block(out: &mut Vec<u8>, (block, len): ([u8; TAG_BLOCK], usize)) {
    let at = out.len();
    out.extend_from_slice(&block);
    out.truncate(at + len);
}

/// The `xmlns` attribute of `ns`, in the spelling this encoder writes
/// (each a constant, so no call to copy it).
fn put_xmlns(out: &mut Vec<u8>, ns: Ns) {
    match ns {
        Ns::SyncMl => out.extend_from_slice(b" xmlns=\"SYNCML:SYNCML1.2\""),
        Ns::MetInf => out.extend_from_slice(b" xmlns=\"syncml:metinf\""),
        Ns::DmDdf => out.extend_from_slice(b" xmlns=\"syncml:dmddf1.2\""),
    }
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
        put_block(&mut self.out, tag.xml.start);
        if parent_ns != Some(tag.ns) {
            put_xmlns(&mut self.out, tag.ns);
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
        put_block(&mut self.out, f.tag.xml.end);
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
        self.out.reserve(2 * TAG_BLOCK + 32 + text.len());
        put_block(&mut self.out, tag.xml.start);
        if parent_ns != Some(tag.ns) {
            put_xmlns(&mut self.out, tag.ns);
        }
        if text.is_empty() {
            self.out.extend_from_slice(b"/>");
        } else {
            self.out.push(b'>');
            escape_into(&mut self.out, text);
            put_block(&mut self.out, tag.xml.end);
        }
    }
}

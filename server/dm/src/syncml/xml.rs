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

use quick_xml::events::Event;
use quick_xml::Reader;

use super::element::{intern, El, Node, Ns};
use super::model::Message;
use super::{map, DecodeError, DecodeErrorKind, MAX_NESTING};
use base64::Engine as _;

/// PROTOCOL A.1: decodes an XML SyncML message.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    map::message_from_el(&read_tree(bytes)?)
}

/// PROTOCOL A.1: the compact XML encoding (`<SyncML xmlns="SYNCML:SYNCML1.2">`,
/// `xmlns="syncml:metinf"` on every Meta child, as clients write it).
pub fn encode(msg: &Message) -> Vec<u8> {
    write_document(&map::message_to_el(msg, false), false).into_bytes()
}

/// PROTOCOL A.1: indented XML for people; decodes to the same message.
pub fn to_pretty(msg: &Message) -> String {
    write_document(&map::message_to_el(msg, false), true)
}

fn syntax(stack: &[El], offset: usize, what: String) -> DecodeError {
    let element = stack
        .last()
        .map_or("(document)".to_owned(), |e| e.name.to_string());
    DecodeError::new(
        element,
        offset,
        DecodeErrorKind::Syntax(format!("XML: {what}")),
    )
}

fn open(
    e: &quick_xml::events::BytesStart<'_>,
    parent_ns: Ns,
    offset: usize,
    stack: &[El],
) -> Result<El, DecodeError> {
    let local = e.local_name();
    let name = std::str::from_utf8(local.as_ref())
        .map_err(|_| syntax(stack, offset, "element name is not UTF-8".into()))?;
    let mut ns = parent_ns;
    for attr in e.attributes() {
        let attr = attr.map_err(|err| syntax(stack, offset, err.to_string()))?;
        if attr.key.as_ref() == b"xmlns" {
            let v = attr
                .unescape_value()
                .map_err(|err| syntax(stack, offset, err.to_string()))?;
            if let Some(found) = Ns::from_uri(&v) {
                ns = found;
            }
        }
    }
    Ok(El {
        name: intern(ns, name),
        ns,
        offset,
        children: Vec::new(),
    })
}

/// Reads one XML document into the element tree (see the module docs for
/// what is tolerated and refused).
pub(crate) fn read_tree(bytes: &[u8]) -> Result<El, DecodeError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<El> = Vec::new();
    let mut root: Option<El> = None;
    loop {
        let offset = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| syntax(&stack, reader.error_position() as usize, e.to_string()))?;
        if root.is_some() {
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
                    return Err(syntax(&stack, offset, "too deep".into())).map_err(|mut err| {
                        err.kind = DecodeErrorKind::TooDeep;
                        err
                    });
                }
                let parent_ns = stack.last().map_or(Ns::SyncMl, |p| p.ns);
                let el = open(&e, parent_ns, offset, &stack)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                let parent_ns = stack.last().map_or(Ns::SyncMl, |p| p.ns);
                let el = open(&e, parent_ns, offset, &stack)?;
                match stack.last_mut() {
                    Some(p) => p.children.push(Node::El(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| syntax(&stack, offset, "unexpected end tag".into()))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(Node::El(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| syntax(&stack, offset, e.to_string()))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(Node::Text(text.into_owned())),
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err(syntax(
                            &stack,
                            offset,
                            "text outside the root element".into(),
                        ))
                    }
                }
            }
            Event::CData(c) => {
                let text = String::from_utf8(c.into_inner().into_owned())
                    .map_err(|_| syntax(&stack, offset, "CDATA is not UTF-8".into()))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(Node::Text(text)),
                    None => {
                        return Err(syntax(
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
                return Err(syntax(&stack, offset, "unexpected end of input".into()));
            }
        }
    }
    root.ok_or_else(|| syntax(&[], 0, "no root element".into()))
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// Writes `root` as an XML document; with `pretty`, elements that hold
/// elements are indented by two spaces (text content is never touched).
pub(crate) fn write_document(root: &El, pretty: bool) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if pretty {
        out.push('\n');
    }
    write_el(&mut out, root, None, pretty, 0);
    if pretty {
        out.push('\n');
    }
    out
}

fn write_el(out: &mut String, el: &El, parent_ns: Option<Ns>, pretty: bool, depth: usize) {
    out.push('<');
    out.push_str(&el.name);
    if parent_ns != Some(el.ns) {
        out.push_str(" xmlns=\"");
        out.push_str(el.ns.uri());
        out.push('"');
    }
    let empty = el.children.iter().all(|n| match n {
        Node::Text(t) => t.is_empty(),
        Node::Opaque(b) => b.is_empty(),
        Node::El(_) => false,
    });
    if empty {
        out.push_str("/>");
        return;
    }
    out.push('>');
    let has_elements = el.children.iter().any(|n| matches!(n, Node::El(_)));
    for n in &el.children {
        match n {
            Node::Text(t) => escape_into(out, t),
            // XML carries no raw bytes: binary data goes as base64 text.
            Node::Opaque(b) => out.push_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Node::El(c) => {
                if pretty {
                    out.push('\n');
                    out.push_str(&"  ".repeat(depth + 1));
                }
                write_el(out, c, Some(el.ns), pretty, depth + 1);
            }
        }
    }
    if pretty && has_elements {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
    out.push_str("</");
    out.push_str(&el.name);
    out.push('>');
}

//! The XML reader (PROTOCOL A.1): bytes to a [`Doc`] in one pass, no
//! tokenizer in between.
//!
//! It reads the part of XML 1.0 a SyncML message uses: elements, attributes
//! (only `xmlns` means anything; the others are checked and skipped), text
//! with the five predefined entities and character references (§4.1, §4.6),
//! CDATA sections, comments, processing instructions and the XML
//! declaration (skipped), and a `DOCTYPE` without an internal subset
//! (skipped). Every refusal names the innermost open element and the byte
//! offset where the problem is (see the module docs of `xml.rs` for what is
//! refused).

use std::borrow::Cow;

use memchr::{memchr, memchr2, memmem};

use crate::syncml::element::{name_id, name_text, Doc, Ns, UNKNOWN};
use crate::syncml::{DecodeError, DecodeErrorKind, MAX_NESTING};

/// Reads one XML document into a [`Doc`].
pub(crate) fn read_doc(bytes: &[u8]) -> Result<Doc<'_>, DecodeError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut r = Reader {
        input: bytes,
        // Checked as UTF-8 once: names and text are then borrowed as slices
        // of it. Input that is not UTF-8 is checked piece by piece, so that
        // the error names the element and the offset.
        valid: std::str::from_utf8(bytes).ok(),
        pos: 0,
        // At most one element or text per `<`, about one of each in compact XML.
        doc: Doc::with_capacity(count_lt(bytes) + 4),
        open: Vec::with_capacity(16),
        attr_names: Vec::new(),
        done: false,
    };
    r.document()?;
    Ok(r.doc)
}

/// An element whose end tag has not been read yet.
struct Open {
    /// Its node in the document.
    idx: u32,
    /// Where its qualified name lies in the input (the end tag must repeat it).
    name: (usize, usize),
}

struct Reader<'a> {
    input: &'a [u8],
    valid: Option<&'a str>,
    /// The next byte to read.
    pos: usize,
    doc: Doc<'a>,
    open: Vec<Open>,
    /// The attribute names of the current start tag (duplicate check).
    attr_names: Vec<&'a [u8]>,
    /// The root element has ended.
    done: bool,
}

/// XML whitespace (§2.3 `S`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// §2.3 `NameStartChar` (ASCII) and `NameChar`, as a table; bytes of
/// non-ASCII characters are accepted (the characters are checked as UTF-8,
/// not against the Unicode ranges).
const NAME_START: u8 = 1;
const NAME_CHAR: u8 = 2;
const NAME_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' || c >= 0x80 {
            t[b] = NAME_START | NAME_CHAR;
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            t[b] = NAME_CHAR;
        }
        b += 1;
    }
    t
};

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

/// The position of the first `<` in `input` from `start`, or its length.
/// Most are a few bytes away (after a tag or short text), nearer than
/// calling `memchr` pays for.
fn next_lt(input: &[u8], start: usize) -> usize {
    let near = &input[start..input.len().min(start + 16)];
    match near.iter().position(|&b| b == b'<') {
        Some(i) => start + i,
        None => {
            let from = start + near.len();
            memchr(b'<', &input[from..]).map_or(input.len(), |i| from + i)
        }
    }
}

/// Whether `hay` holds `b` (short ones byte by byte, as [`next_lt`]).
fn contains(hay: &[u8], b: u8) -> bool {
    if hay.len() <= 16 {
        hay.contains(&b)
    } else {
        memchr(b, hay).is_some()
    }
}

impl<'a> Reader<'a> {
    /// §2.1 `document`: prolog, one root element, then only blanks,
    /// comments and processing instructions.
    fn document(&mut self) -> Result<(), DecodeError> {
        let input = self.input;
        loop {
            let start = self.pos;
            let lt = next_lt(input, start);
            if lt > start {
                self.text(start, lt)?;
            }
            if lt == input.len() {
                break;
            }
            self.pos = lt;
            match input.get(lt + 1) {
                Some(b'/') => self.end_tag()?,
                Some(b'!') => self.markup_decl()?,
                Some(b'?') => self.pi()?,
                _ => self.start_tag()?,
            }
        }
        if !self.open.is_empty() {
            return Err(self.syntax(input.len(), "unexpected end of input"));
        }
        if !self.done {
            return Err(self.syntax(0, "no root element"));
        }
        Ok(())
    }

    fn syntax(&self, offset: usize, what: impl std::fmt::Display) -> DecodeError {
        let element = match self.open.last() {
            Some(o) => self.doc.name_of(o.idx),
            None => "(document)",
        };
        DecodeError::new(
            element,
            offset,
            DecodeErrorKind::Syntax(format!("XML: {what}")),
        )
    }

    /// Anything but blanks, comments and processing instructions after the
    /// root element.
    fn trailing(&self, offset: usize) -> DecodeError {
        DecodeError::new("SyncML", offset, DecodeErrorKind::TrailingData)
    }

    /// `input[start..end]` as text (`what` names it in the error when it
    /// is not UTF-8).
    fn str_at(&self, start: usize, end: usize, what: &str) -> Result<&'a str, DecodeError> {
        let piece = match self.valid {
            Some(valid) => valid.get(start..end),
            None => std::str::from_utf8(&self.input[start..end]).ok(),
        };
        piece.ok_or_else(|| self.syntax(start, format_args!("{what} is not UTF-8")))
    }

    /// The end of the name starting at `start` (§2.3 `Name`), if one does.
    fn name_end(&self, start: usize) -> Option<usize> {
        let input = self.input;
        if NAME_BYTES[usize::from(*input.get(start)?)] & NAME_START == 0 {
            return None;
        }
        let len = input[start + 1..]
            .iter()
            .position(|&b| NAME_BYTES[usize::from(b)] & NAME_CHAR == 0)
            .unwrap_or(input.len() - start - 1);
        Some(start + 1 + len)
    }

    fn skip_space(&self, mut p: usize) -> usize {
        while self.input.get(p).copied().is_some_and(is_space) {
            p += 1;
        }
        p
    }

    /// Character data between markup (§2.4), `start..end` of the input.
    fn text(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let raw = &self.input[start..end];
        let Some(parent) = self.open.last().map(|o| o.idx) else {
            if raw.iter().all(|&b| is_space(b)) {
                return Ok(());
            }
            if self.done {
                return Err(self.trailing(start));
            }
            return Err(self.syntax(start, "text outside the root element"));
        };
        let text = self.str_at(start, end, "text")?;
        let text = if contains(raw, b'&') {
            unescape(text).map_err(|(at, what)| self.syntax(start + at, what))?
        } else {
            Cow::Borrowed(text)
        };
        self.doc.text(parent, text);
        Ok(())
    }

    /// A start tag or empty-element tag (§3.1) at `self.pos`.
    fn start_tag(&mut self) -> Result<(), DecodeError> {
        let at = self.pos;
        if self.done {
            return Err(self.trailing(at));
        }
        let input = self.input;
        let name_start = at + 1;
        let name_end = self
            .name_end(name_start)
            .ok_or_else(|| self.syntax(at, "expected an element name after `<`"))?;
        let (xmlns, empty, end) = self.attributes(at, name_end)?;
        if !empty && self.open.len() >= MAX_NESTING {
            let mut err = self.syntax(at, "too deep");
            err.kind = DecodeErrorKind::TooDeep;
            return Err(err);
        }
        self.pos = end;

        // The local name: after the first `:` (the prefix is not resolved).
        // No known name has a `:`, so a known name is its own local name.
        let qname = &input[name_start..name_end];
        let mut id = name_id(qname);
        let mut local_start = name_start;
        if id == UNKNOWN {
            if let Some(i) = memchr(b':', qname) {
                local_start = name_start + i + 1;
                id = name_id(&input[local_start..name_end]);
            }
        }
        let name = match id {
            UNKNOWN => self.str_at(local_start, name_end, "element name")?,
            // The same bytes, already known to be text.
            _ => name_text(id),
        };
        let mut ns = match self.open.last() {
            Some(o) => self.doc.ns_of(o.idx),
            None => Ns::SyncMl,
        };
        if let Some((v_start, v_end)) = xmlns {
            let uri = self.str_at(v_start, v_end, "attribute value")?;
            let uri = match contains(uri.as_bytes(), b'&') {
                false => Cow::Borrowed(uri),
                true => unescape(uri).map_err(|(i, what)| self.syntax(v_start + i, what))?,
            };
            if let Some(found) = Ns::from_uri(&uri) {
                ns = found;
            }
        }
        let parent = self.open.last().map(|o| o.idx);
        let idx = self.doc.element(parent, name, id, ns, at);
        if empty {
            self.done = parent.is_none();
        } else {
            self.open.push(Open {
                idx,
                name: (name_start, name_end),
            });
        }
        Ok(())
    }

    /// The attributes of the tag at `at` after its name (§3.1 `Attribute`):
    /// where the value of `xmlns` lies, if it is there, whether the tag
    /// is empty (`/>`), and where it ends.
    #[allow(clippy::type_complexity)]
    fn attributes(
        &mut self,
        at: usize,
        mut p: usize,
    ) -> Result<(Option<(usize, usize)>, bool, usize), DecodeError> {
        let input = self.input;
        let unclosed = |r: &Self| r.syntax(at, "unclosed tag");
        let mut xmlns = None;
        self.attr_names.clear();
        let (empty, end) = loop {
            let before = p;
            p = self.skip_space(p);
            match input.get(p) {
                None => return Err(unclosed(self)),
                Some(b'>') => break (false, p + 1),
                Some(b'/') if input.get(p + 1) == Some(&b'>') => break (true, p + 2),
                Some(_) if p == before => {
                    return Err(self.syntax(p, "expected whitespace, `>` or `/>` in a tag"))
                }
                Some(_) => {}
            }
            let key_start = p;
            let key_end = self
                .name_end(p)
                .ok_or_else(|| self.syntax(p, "expected an attribute name"))?;
            p = self.skip_space(key_end);
            if input.get(p) != Some(&b'=') {
                return Err(self.syntax(p, "expected `=` after an attribute name"));
            }
            p = self.skip_space(p + 1);
            let quote = match input.get(p) {
                Some(&q @ (b'"' | b'\'')) => q,
                _ => return Err(self.syntax(p, "expected a quoted attribute value")),
            };
            let v_start = p + 1;
            let v_end = match memchr2(quote, b'<', &input[v_start..]) {
                Some(i) if input[v_start + i] == quote => v_start + i,
                Some(i) => return Err(self.syntax(v_start + i, "`<` in an attribute value")),
                None => return Err(unclosed(self)),
            };
            let key = &input[key_start..key_end];
            if key == b"xmlns" {
                xmlns = Some((v_start, v_end));
            }
            self.attr_names.push(key);
            p = v_end + 1;
        };
        if self.attr_names.len() > 1 {
            self.check_attr_names(at)?;
        }
        Ok((xmlns, empty, end))
    }

    /// §3.1 "Unique Att Spec": no attribute name twice in one tag.
    fn check_attr_names(&mut self, at: usize) -> Result<(), DecodeError> {
        let names = &mut self.attr_names;
        let twice = match names.len() {
            0 | 1 => false,
            // Tags hold one or two attributes; hostile ones may hold many.
            2..=8 => (1..names.len()).any(|i| names[..i].contains(&names[i])),
            _ => {
                names.sort_unstable();
                names.windows(2).any(|w| w[0] == w[1])
            }
        };
        if twice {
            return Err(self.syntax(at, "an attribute given twice"));
        }
        Ok(())
    }

    /// An end tag (§3.1 `ETag`) at `self.pos`: it must close the innermost
    /// open element.
    fn end_tag(&mut self) -> Result<(), DecodeError> {
        let at = self.pos;
        if self.done {
            return Err(self.trailing(at));
        }
        let input = self.input;
        let name_start = at + 2;
        // The usual case, the name of the innermost element then `>`,
        // without reading the name as a name first.
        if let Some(open) = self.open.last() {
            let (s, e) = open.name;
            let name_end = name_start + (e - s);
            if input.get(name_start..name_end) == Some(&input[s..e])
                && input.get(name_end) == Some(&b'>')
            {
                self.open.pop();
                self.done = self.open.is_empty();
                self.pos = name_end + 1;
                return Ok(());
            }
        }
        let name_end = self
            .name_end(name_start)
            .ok_or_else(|| self.syntax(at, "expected an element name after `</`"))?;
        let p = self.skip_space(name_end);
        if input.get(p) != Some(&b'>') {
            return Err(self.syntax(p, "expected `>` to end the end tag"));
        }
        let Some(open) = self.open.last() else {
            return Err(self.syntax(at, "end tag without a start tag"));
        };
        let (s, e) = open.name;
        if input[s..e] != input[name_start..name_end] {
            return Err(self.syntax(
                at,
                format_args!(
                    "end tag `</{}>` does not match `<{}>`",
                    String::from_utf8_lossy(&input[name_start..name_end]),
                    String::from_utf8_lossy(&input[s..e]),
                ),
            ));
        }
        self.open.pop();
        self.done = self.open.is_empty();
        self.pos = p + 1;
        Ok(())
    }

    /// A comment (§2.5), CDATA section (§2.7) or `DOCTYPE` (§2.8) at
    /// `self.pos`.
    fn markup_decl(&mut self) -> Result<(), DecodeError> {
        let at = self.pos;
        let input = self.input;
        let rest = &input[at..];
        if rest.starts_with(b"<!--") {
            let end = memmem::find(&rest[4..], b"-->")
                .ok_or_else(|| self.syntax(at, "unclosed comment"))?;
            self.pos = at + 4 + end + 3;
            return Ok(());
        }
        if self.done {
            return Err(self.trailing(at));
        }
        if rest.starts_with(b"<![CDATA[") {
            let start = at + 9;
            let len = memmem::find(&input[start..], b"]]>")
                .ok_or_else(|| self.syntax(at, "unclosed CDATA section"))?;
            let Some(parent) = self.open.last().map(|o| o.idx) else {
                return Err(self.syntax(at, "CDATA outside the root element"));
            };
            let text = self.str_at(start, start + len, "CDATA")?;
            self.doc.text(parent, Cow::Borrowed(text));
            self.pos = start + len + 3;
            return Ok(());
        }
        if rest.len() >= 9 && rest[2..9].eq_ignore_ascii_case(b"DOCTYPE") {
            if !self.open.is_empty() {
                return Err(self.syntax(at, "DOCTYPE inside an element"));
            }
            let end =
                memchr2(b'>', b'[', rest).ok_or_else(|| self.syntax(at, "unclosed DOCTYPE"))?;
            if rest[end] == b'[' {
                return Err(DecodeError::new(
                    "(document)",
                    at,
                    DecodeErrorKind::Unsupported(
                        "a DOCTYPE with an internal subset (entity definitions)".into(),
                    ),
                ));
            }
            self.pos = at + end + 1;
            return Ok(());
        }
        Err(self.syntax(at, "expected a comment, CDATA or DOCTYPE after `<!`"))
    }

    /// A processing instruction or the XML declaration (§2.6, §2.8) at
    /// `self.pos`: skipped; a declaration after the root element starts a
    /// second document.
    fn pi(&mut self) -> Result<(), DecodeError> {
        let at = self.pos;
        let rest = &self.input[at + 2..];
        let end = memmem::find(rest, b"?>")
            .ok_or_else(|| self.syntax(at, "unclosed processing instruction"))?;
        let decl =
            rest.starts_with(b"xml") && rest.get(3).is_some_and(|&b| is_space(b) || b == b'?');
        if decl && self.done {
            return Err(self.trailing(at));
        }
        self.pos = at + 2 + end + 2;
        Ok(())
    }
}

/// `text` with its references replaced: the five predefined entities
/// (§4.6) and character references (§4.1); no other entity is defined.
/// On error, the offset in `text` of the reference and what is wrong.
pub(crate) fn unescape(text: &str) -> Result<Cow<'_, str>, (usize, String)> {
    let Some(mut amp) = memchr(b'&', text.as_bytes()) else {
        return Ok(Cow::Borrowed(text));
    };
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    loop {
        out.push_str(&text[copied..amp]);
        let semi = memchr(b';', &text.as_bytes()[amp + 1..])
            .map(|i| amp + 1 + i)
            .ok_or_else(|| (amp, "`&` without `;`".to_owned()))?;
        let name = &text[amp + 1..semi];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => match name.strip_prefix('#') {
                Some(num) => char_ref(num)
                    .ok_or_else(|| (amp, format!("invalid character reference `&{name};`")))?,
                None => return Err((amp, format!("undefined entity `&{name};`"))),
            },
        };
        out.push(c);
        copied = semi + 1;
        match memchr(b'&', &text.as_bytes()[copied..]) {
            Some(i) => amp = copied + i,
            None => break,
        }
    }
    out.push_str(&text[copied..]);
    Ok(Cow::Owned(out))
}

/// The character of `&#num;` (`num` decimal, or hexadecimal after `x`);
/// not NUL, not a surrogate, at most U+10FFFF.
fn char_ref(num: &str) -> Option<char> {
    let (digits, radix) = match num.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    // `from_str_radix` alone would take a sign.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    char::from_u32(code).filter(|&c| c != '\0')
}

#[cfg(test)]
mod tests {
    use crate::syncml::{decode, Command, Data, DecodeError, DecodeErrorKind, Message};

    const HDR: &str = "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>t</LocURI></Target><Source><LocURI>s</LocURI></Source></SyncHdr>";

    fn msg(body: &str) -> String {
        format!(
            "<SyncML xmlns=\"SYNCML:SYNCML1.2\">{HDR}<SyncBody>{body}<Final/></SyncBody></SyncML>"
        )
    }

    /// A message whose one command is a Replace of one item holding `item`.
    fn replace(item: &str) -> String {
        msg(&format!(
            "<Replace><CmdID>2</CmdID><Item>{item}</Item></Replace>"
        ))
    }

    fn ok(xml: &str) -> Message {
        decode(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"))
    }

    fn err(xml: &str) -> DecodeError {
        decode(xml.as_bytes()).expect_err("accepted")
    }

    fn syntax_at(xml: &str, element: &str, offset: usize) {
        let e = err(xml);
        assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)), "{e}");
        assert_eq!((e.element.as_str(), e.offset), (element, offset), "{e}");
    }

    fn first_item(m: &Message) -> &crate::syncml::Item {
        match &m.body[0] {
            Command::Replace(r) => &r.items[0],
            c => panic!("{c:?}"),
        }
    }

    fn data(xml: &str) -> Data {
        first_item(&ok(xml)).data.clone().expect("Data")
    }

    // XML 1.0 §4.1, §4.6: predefined entities and character references,
    // and refusals naming the element and the byte of the `&`.
    #[test]
    fn references() {
        let xml = replace("<Data>a&lt;&#65;&#x42;&#x1F600;&amp;&quot;&apos;&gt;z</Data>");
        assert_eq!(data(&xml), Data::from("a<AB\u{1F600}&\"'>z"));
        for bad in [
            "&#0;",
            "&#x0;",
            "&#xD800;",
            "&#x110000;",
            "&#-1;",
            "&#+1;",
            "&#x;",
            "&#;",
            "&#12a;",
            "&#X41;",
            "&foo;",
            "&lt",
            "& ;",
            "&;",
        ] {
            let xml = replace(&format!("<Data>ab{bad}</Data>"));
            syntax_at(&xml, "Data", xml.find(bad).unwrap());
        }
    }

    // §2.7: CDATA is text as it stands; the end tag must close it.
    #[test]
    fn cdata() {
        let xml = replace("<Data>x<![CDATA[<a>&amp;]]]]><![CDATA[>]]>y</Data>");
        assert_eq!(data(&xml), Data::from("x<a>&amp;]]>y"));
        let xml = replace("<Data><![CDATA[]]></Data>");
        assert_eq!(data(&xml), Data::from(""));
        let xml = replace("<Data><![CDATA[abc</Data>");
        syntax_at(&xml, "Data", xml.find("<![CDATA[").unwrap());
        let xml = format!("<![CDATA[x]]>{}", msg(""));
        syntax_at(&xml, "(document)", 0);
    }

    // Namespaces: quotes of either kind, references in the value, a
    // prefixed name, other attributes skipped, `>` inside a value.
    #[test]
    fn namespaces_and_attributes() {
        let meta = |m: &str| {
            let xml = replace(&format!("<Meta>{m}</Meta><Data>x</Data>"));
            first_item(&ok(&xml)).meta.clone().expect("Meta")
        };
        let m = meta("<Format xmlns='syncml:metinf'>chr</Format><Type xmlns=\"syncml&#58;metinf\">text/plain</Type>");
        assert_eq!(
            (m.format.as_deref(), m.type_.as_deref()),
            (Some("chr"), Some("text/plain"))
        );
        let m = meta("<mi:Format xmlns:mi=\"syncml:metinf\" a = \"1 > 0\" b='\"'>Chr</mi:Format>");
        assert!(m.format_is("chr"));
        // The end tag repeats the qualified name.
        let xml = replace("<Meta><mi:Format xmlns:mi=\"syncml:metinf\">chr</Format></Meta>");
        syntax_at(&xml, "Format", xml.find("</Format>").unwrap());
        // §3.1: one attribute name once, `<` never in a value.
        let xml = replace("<Data xmlns=\"a\" xmlns=\"b\">x</Data>");
        syntax_at(&xml, "Item", xml.find("<Data").unwrap());
        let many: String = (0..20).map(|i| format!(" a{i}=\"\"")).collect();
        let xml = replace(&format!("<Data{many} a7=''>x</Data>"));
        syntax_at(&xml, "Item", xml.find("<Data").unwrap());
        let xml = replace(&format!("<Data{many}>x</Data>"));
        assert_eq!(data(&xml), Data::from("x"));
        let xml = replace("<Data a=\"<\">x</Data>");
        syntax_at(&xml, "Item", xml.find("\"<\"").unwrap() + 1);
        for bad in [
            "<Data a>",
            "<Data a=1>",
            "<Data a=\"1\"b=\"2\">",
            "<Data =\"1\">",
            "<Data / >",
        ] {
            let xml = replace(&format!("{bad}x</Data>"));
            let e = err(&xml);
            assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)), "{bad}: {e}");
            assert_eq!(e.element, "Item", "{bad}");
        }
    }

    // §2.3: names; §3.1: end tags match; errors name the open element.
    #[test]
    fn tags_and_error_positions() {
        let xml = replace("<Data>x</Data >");
        assert_eq!(data(&xml.replace("</Data >", "</Data\n>")), Data::from("x"));
        assert_eq!(data(&xml), Data::from("x"));
        let xml = replace("<Data>x</Dat>");
        syntax_at(&xml, "Data", xml.find("</Dat>").unwrap());
        let xml = replace("<Data>x</DataX>");
        syntax_at(&xml, "Data", xml.find("</DataX>").unwrap());
        let xml = replace("<Data>x< Data>");
        syntax_at(&xml, "Data", xml.find("< Data>").unwrap());
        let xml = replace("<Data>x<1a/></Data>");
        syntax_at(&xml, "Data", xml.find("<1a/>").unwrap());
        let xml = replace("<Data>x</Data");
        let e = err(&xml);
        assert_eq!(e.element, "Data");
        let xml = msg("").replace("</SyncML>", "");
        syntax_at(&xml, "SyncML", xml.len());
        let xml = msg("").replace("<Final/>", "<Final");
        syntax_at(
            &xml,
            "SyncBody",
            xml.find("<Final").unwrap() + "<Final".len(),
        );
        syntax_at("", "(document)", 0);
        syntax_at("  <!-- only a comment -->", "(document)", 0);
        syntax_at("</SyncML>", "(document)", 0);
        syntax_at("x<SyncML/>", "(document)", 0);
        let xml = msg("<!DOCTYPE x>");
        syntax_at(&xml, "SyncBody", xml.find("<!DOCTYPE").unwrap());
        let xml = msg("<!ELEMENT x>");
        syntax_at(&xml, "SyncBody", xml.find("<!ELEMENT").unwrap());
    }

    // Comments, processing instructions, the declaration, a DOCTYPE naming
    // the DTD and a byte order mark are skipped; only blanks, comments and
    // processing instructions may follow the root.
    #[test]
    fn skipped_markup() {
        let body = msg("<!-- <Get> & --><?pi <x> ?>");
        let xml = format!("\u{FEFF}<?xml version='1.0'?>\n<!doctype SyncML SYSTEM \"x.dtd\">\n<!-- c -->{body}<!-- d --><?pi?>\n");
        assert_eq!(ok(&xml).body.len(), 0);
        let xml = replace("<Data>a<!-- b -->c<?x y?>d</Data>");
        assert_eq!(data(&xml), Data::from("acd"));
        let one = msg("");
        for after in [
            "<?xml version=\"1.0\"?>",
            "<!DOCTYPE x>",
            "<![CDATA[x]]>",
            "</SyncML>",
            "<x/>",
            "x",
        ] {
            let e = err(&format!("{one} {after}"));
            assert_eq!(
                (e.kind, e.offset),
                (
                    DecodeErrorKind::TrailingData,
                    one.len() + usize::from(after.starts_with('<'))
                ),
                "{after}"
            );
        }
        for unclosed in ["<!-- x", "<?pi x", "<!DOCTYPE x"] {
            let e = err(&format!("{unclosed}{}", "<SyncML/>".replace('>', "")));
            assert!(
                matches!(e.kind, DecodeErrorKind::Syntax(_)),
                "{unclosed}: {e}"
            );
        }
    }

    // Bytes that are not UTF-8 are refused where they stand.
    #[test]
    fn not_utf8() {
        let xml = replace("<Data>ab\u{FF}c</Data>").into_bytes();
        let at = xml
            .windows(2)
            .position(|w| w == "\u{FF}".as_bytes())
            .unwrap();
        let mut bad = xml.clone();
        bad[at] = 0xFF;
        let e = decode(&bad).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)), "{e}");
        assert_eq!((e.element.as_str(), e.offset), ("Data", at - 2));
        let mut bad = xml;
        let at = bad.windows(6).position(|w| w == b"<Data>").unwrap();
        bad[at + 2] = 0xC3;
        let e = decode(&bad).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::Syntax(_)), "{e}");
        assert_eq!(e.element, "Item");
    }

    // Hostile input: nesting is bounded, at the tag that goes too deep;
    // huge text and many elements are read in linear time.
    #[test]
    fn hostile_input() {
        use crate::syncml::MAX_NESTING;
        // SyncML, SyncBody, Atomic elements and the innermost CmdID:
        // MAX_NESTING open at once.
        let atomic = "<Atomic><CmdID>1</CmdID>";
        let fits = MAX_NESTING - 3;
        let deep = format!(
            "{}<NoResp/>{}",
            atomic.repeat(fits),
            "</Atomic>".repeat(fits)
        );
        // Read, not mapped: mapping this many nested commands needs more
        // than a test thread's stack in debug builds.
        assert!(super::read_doc(msg(&deep).as_bytes()).is_ok());
        let deeper = format!(
            "{}{}",
            atomic.repeat(fits + 1),
            "</Atomic>".repeat(fits + 1)
        );
        let xml = msg(&deeper);
        let e = err(&xml);
        assert_eq!(e.kind, DecodeErrorKind::TooDeep);
        // The one CmdID too many, in the innermost Atomic.
        let last = xml.rfind(atomic).unwrap() + "<Atomic>".len();
        assert_eq!((e.element.as_str(), e.offset), ("Atomic", last));
        let e = err(&"<a>".repeat(1_000_000));
        assert_eq!(e.kind, DecodeErrorKind::TooDeep);

        let huge = "x&amp;".repeat(2_000_000);
        let got = data(&replace(&format!("<Data>{huge}</Data>")));
        assert_eq!(got.as_text().map(str::len), Some(2 * 2_000_000));
        let unclosed = format!("<SyncML>{}", "<!--".repeat(100_000));
        assert!(err(&unclosed).to_string().contains("comment"));
        let many = "<Get><CmdID>1</CmdID></Get>".repeat(20_000);
        assert_eq!(ok(&msg(&many)).body.len(), 20_000);
    }
}

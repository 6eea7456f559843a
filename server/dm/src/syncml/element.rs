//! Generic element trees, the meeting point of the XML and WBXML codecs
//! (PROTOCOL A.1).
//!
//! Both decoders read into a [`Doc`]: one `Vec` of nodes linked by index,
//! whose names and text borrow from the input (text is copied only when it
//! had to be unescaped or joined). [`El`], an owned tree, serves the
//! standalone TNDS documents of [`crate::tnds`]. The encoders write the model
//! straight to bytes through a [`Sink`] (see `xml.rs`, `wbxml.rs`).

use std::borrow::Cow;

use super::{DecodeError, DecodeErrorKind};

/// The three namespaces (WBXML code pages) of a DM message (PROTOCOL A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    SyncMl,
    MetInf,
    DmDdf,
}

impl Ns {
    pub(crate) fn uri(self) -> &'static str {
        match self {
            Ns::SyncMl => "SYNCML:SYNCML1.2",
            Ns::MetInf => "syncml:metinf",
            Ns::DmDdf => "syncml:dmddf1.2",
        }
    }

    /// The namespace of an `xmlns` value; namespace names are compared
    /// ignoring case since clients differ (`SYNCML:SYNCML1.2`, `syncml:SYNCML1.2`).
    pub(crate) fn from_uri(uri: &str) -> Option<Self> {
        const KNOWN: [(&str, Ns); 5] = [
            ("syncml:metinf", Ns::MetInf),
            ("syncml:syncml1.2", Ns::SyncMl),
            ("syncml:dmddf1.2", Ns::DmDdf),
            ("syncml:syncml1.1", Ns::SyncMl),
            ("syncml:syncml1.0", Ns::SyncMl),
        ];
        let u = uri.trim();
        KNOWN
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(u))
            .map(|&(_, ns)| ns)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct El {
    /// Borrowed from the WBXML token tables for every known element, so
    /// that building a tree does not allocate one string per element.
    pub name: Cow<'static, str>,
    pub ns: Ns,
    /// Byte offset of the element's start in the input (0 for built trees).
    pub offset: usize,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    El(El),
    Text(String),
    Opaque(Vec<u8>),
}

impl El {
    pub(crate) fn new(ns: Ns, name: &str) -> Self {
        Self {
            name: intern(ns, name),
            ns,
            offset: 0,
            children: Vec::new(),
        }
    }

    /// An element holding `text`.
    pub(crate) fn leaf(ns: Ns, name: &str, text: impl Into<String>) -> Self {
        let mut el = Self::new(ns, name);
        el.children.push(Node::Text(text.into()));
        el
    }

    pub(crate) fn push(&mut self, child: El) {
        self.children.push(Node::El(child));
    }

    pub(crate) fn push_leaf(&mut self, name: &str, text: impl Into<String>) {
        let ns = self.ns;
        self.push(El::leaf(ns, name, text));
    }

    pub(crate) fn push_opt_leaf(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.push_leaf(name, t);
        }
    }

    pub(crate) fn push_flag(&mut self, name: &str, set: bool) {
        if set {
            let ns = self.ns;
            self.push(El::new(ns, name));
        }
    }

    pub(crate) fn elements(&self) -> impl Iterator<Item = &El> {
        self.children.iter().filter_map(|n| match n {
            Node::El(e) => Some(e),
            _ => None,
        })
    }

    pub(crate) fn child(&self, name: &str) -> Option<&El> {
        self.elements().find(|e| e.name == name)
    }

    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> {
        self.elements().filter(move |e| e.name == name)
    }

    pub(crate) fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.name.clone(), self.offset, kind)
    }

    pub(crate) fn required(&self, name: &'static str) -> Result<&El, DecodeError> {
        self.child(name)
            .ok_or_else(|| self.err(DecodeErrorKind::Missing(name)))
    }

    /// The element's text exactly as received: text and UTF-8 OPAQUE joined.
    pub(crate) fn raw_text(&self) -> Result<String, DecodeError> {
        self.text_as_received().map(Cow::into_owned)
    }

    /// [`El::raw_text`] without copying in the common case of one text node.
    fn text_as_received(&self) -> Result<Cow<'_, str>, DecodeError> {
        match self.children.as_slice() {
            [] => return Ok(Cow::Borrowed("")),
            [Node::Text(t)] => return Ok(Cow::Borrowed(t)),
            _ => {}
        }
        let mut out = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Opaque(b) => match std::str::from_utf8(b) {
                    Ok(s) => out.push_str(s),
                    Err(_) => {
                        return Err(self.err(DecodeErrorKind::Invalid {
                            value: String::from_utf8_lossy(b).chars().take(40).collect(),
                            reason: "binary data where text is required".into(),
                        }))
                    }
                },
                Node::El(e) => return Err(e.err(DecodeErrorKind::UnknownElement)),
            }
        }
        Ok(Cow::Owned(out))
    }

    /// The element's text without surrounding whitespace (identifiers,
    /// numbers, URIs: whitespace around them is layout, not value).
    pub(crate) fn text(&self) -> Result<String, DecodeError> {
        Ok(self.text_as_received()?.trim().to_owned())
    }

    pub(crate) fn opt_text(&self, name: &str) -> Result<Option<String>, DecodeError> {
        self.child(name).map(El::text).transpose()
    }

    pub(crate) fn req_text(&self, name: &'static str) -> Result<String, DecodeError> {
        self.required(name)?.text()
    }

    pub(crate) fn invalid(&self, value: &str, reason: impl Into<String>) -> DecodeError {
        self.err(DecodeErrorKind::Invalid {
            value: value.chars().take(40).collect(),
            reason: reason.into(),
        })
    }

    pub(crate) fn parse_u64(&self) -> Result<u64, DecodeError> {
        let t = self.text_as_received()?;
        let t = t.trim();
        t.parse::<u64>()
            .map_err(|_| self.invalid(t, "not a non-negative integer"))
    }

    pub(crate) fn opt_u64(&self, name: &str) -> Result<Option<u64>, DecodeError> {
        self.child(name).map(El::parse_u64).transpose()
    }
}

/// `name` borrowed from the token table of `ns` when it is there (every
/// element a DM message may hold), copied otherwise.
pub(crate) fn intern(ns: Ns, name: &str) -> Cow<'static, str> {
    match super::wbxml::page_table(ns).iter().find(|n| **n == name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.to_owned()),
    }
}

// ------------------------------------------------------------ arena tree

/// "No node": index 0 is always the root, which is nobody's child or sibling.
const NONE: u32 = 0;

/// What one node of a [`Doc`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    El {
        /// Borrowed from the input (XML) or the token tables (WBXML).
        name: Cow<'a, str>,
        ns: Ns,
        /// Byte offset of the element's start in the input.
        offset: usize,
    },
    Text(Cow<'a, str>),
    Opaque(&'a [u8]),
}

#[derive(Debug, Clone)]
struct Slot<'a> {
    kind: Kind<'a>,
    first: u32,
    last: u32,
    next: u32,
}

/// A decoded document: the root element is node 0.
#[derive(Debug, Clone)]
pub(crate) struct Doc<'a> {
    nodes: Vec<Slot<'a>>,
}

impl<'a> Doc<'a> {
    /// An empty document with room for about `capacity` nodes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(capacity),
        }
    }

    /// Adds a node under `parent` (`None` for the root, which must come
    /// first) and returns its index.
    pub(crate) fn add(&mut self, parent: Option<u32>, kind: Kind<'a>) -> u32 {
        let idx = self.nodes.len() as u32;
        self.nodes.push(Slot {
            kind,
            first: NONE,
            last: NONE,
            next: NONE,
        });
        if let Some(p) = parent {
            let last = self.nodes[p as usize].last;
            if last == NONE {
                self.nodes[p as usize].first = idx;
            } else {
                self.nodes[last as usize].next = idx;
            }
            self.nodes[p as usize].last = idx;
        }
        idx
    }

    /// Appends text to `parent`, joined to its last child when that is text
    /// (WBXML: `STR_I`, `ENTITY`, `STR_T` in a row make one text).
    pub(crate) fn add_text_joined(&mut self, parent: u32, text: Cow<'a, str>) {
        let last = self.nodes[parent as usize].last;
        if last != NONE {
            if let Kind::Text(t) = &mut self.nodes[last as usize].kind {
                t.to_mut().push_str(&text);
                return;
            }
        }
        self.add(Some(parent), Kind::Text(text));
    }

    /// The name of element `idx` (for error messages).
    pub(crate) fn name_of(&self, idx: u32) -> &str {
        match &self.nodes[idx as usize].kind {
            Kind::El { name, .. } => name,
            _ => "",
        }
    }

    pub(crate) fn ns_of(&self, idx: u32) -> Ns {
        match &self.nodes[idx as usize].kind {
            Kind::El { ns, .. } => *ns,
            _ => Ns::SyncMl,
        }
    }

    /// The root element.
    pub(crate) fn root(&self) -> Elem<'_, 'a> {
        Elem { doc: self, idx: 0 }
    }

    /// An owned copy of the subtree under `e`.
    pub(crate) fn to_el(e: Elem<'_, 'a>) -> El {
        let mut children = Vec::new();
        let mut c = e.doc.nodes[e.idx as usize].first;
        while c != NONE {
            let slot = &e.doc.nodes[c as usize];
            children.push(match &slot.kind {
                Kind::El { .. } => Node::El(Self::to_el(Elem { doc: e.doc, idx: c })),
                Kind::Text(t) => Node::Text(t.clone().into_owned()),
                Kind::Opaque(b) => Node::Opaque(b.to_vec()),
            });
            c = slot.next;
        }
        El {
            name: intern(e.ns(), e.name()),
            ns: e.ns(),
            offset: e.offset(),
            children,
        }
    }
}

/// One element of a [`Doc`]: the same reading API as [`El`], without
/// copying anything until a value is taken into the model.
#[derive(Clone, Copy)]
pub(crate) struct Elem<'d, 'a> {
    doc: &'d Doc<'a>,
    idx: u32,
}

/// The child nodes of an [`Elem`], in order.
pub(crate) struct Children<'d, 'a> {
    doc: &'d Doc<'a>,
    next: u32,
}

/// One child node.
pub(crate) enum Child<'d, 'a> {
    El(Elem<'d, 'a>),
    Text(&'d str),
    Opaque(&'d [u8]),
}

impl<'d, 'a> Iterator for Children<'d, 'a> {
    type Item = Child<'d, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NONE {
            return None;
        }
        let idx = self.next;
        let slot = &self.doc.nodes[idx as usize];
        self.next = slot.next;
        Some(match &slot.kind {
            Kind::El { .. } => Child::El(Elem { doc: self.doc, idx }),
            Kind::Text(t) => Child::Text(t),
            Kind::Opaque(b) => Child::Opaque(b),
        })
    }
}

impl<'d, 'a> Elem<'d, 'a> {
    fn slot(self) -> &'d Slot<'a> {
        &self.doc.nodes[self.idx as usize]
    }

    pub(crate) fn name(self) -> &'d str {
        self.doc.name_of(self.idx)
    }

    pub(crate) fn ns(self) -> Ns {
        self.doc.ns_of(self.idx)
    }

    pub(crate) fn offset(self) -> usize {
        match &self.slot().kind {
            Kind::El { offset, .. } => *offset,
            _ => 0,
        }
    }

    pub(crate) fn children(self) -> Children<'d, 'a> {
        Children {
            doc: self.doc,
            next: self.slot().first,
        }
    }

    pub(crate) fn elements(self) -> impl Iterator<Item = Elem<'d, 'a>> {
        self.children().filter_map(|c| match c {
            Child::El(e) => Some(e),
            _ => None,
        })
    }

    pub(crate) fn child(self, name: &str) -> Option<Elem<'d, 'a>> {
        self.elements().find(|e| e.name() == name)
    }

    pub(crate) fn children_named<'n>(self, name: &'n str) -> impl Iterator<Item = Elem<'d, 'a>> + 'n
    where
        'd: 'n,
        'a: 'n,
    {
        self.elements().filter(move |e| e.name() == name)
    }

    pub(crate) fn has(self, name: &str) -> bool {
        self.child(name).is_some()
    }

    pub(crate) fn has_opaque(self) -> bool {
        self.children().any(|c| matches!(c, Child::Opaque(_)))
    }

    pub(crate) fn err(self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.name(), self.offset(), kind)
    }

    pub(crate) fn required(self, name: &'static str) -> Result<Elem<'d, 'a>, DecodeError> {
        self.child(name)
            .ok_or_else(|| self.err(DecodeErrorKind::Missing(name)))
    }

    /// The element's text exactly as received: text and UTF-8 OPAQUE joined.
    pub(crate) fn raw_text(self) -> Result<String, DecodeError> {
        self.text_as_received().map(Cow::into_owned)
    }

    /// [`Elem::raw_text`] without copying in the common case of one text node.
    fn text_as_received(self) -> Result<Cow<'d, str>, DecodeError> {
        let mut children = self.children();
        let first = match children.next() {
            None => return Ok(Cow::Borrowed("")),
            Some(first) => first,
        };
        if let Child::Text(t) = first {
            if self.slot().first == self.slot().last {
                return Ok(Cow::Borrowed(t));
            }
        }
        let mut out = String::new();
        for c in self.children() {
            match c {
                Child::Text(t) => out.push_str(t),
                Child::Opaque(b) => match std::str::from_utf8(b) {
                    Ok(s) => out.push_str(s),
                    Err(_) => {
                        return Err(self.err(DecodeErrorKind::Invalid {
                            value: String::from_utf8_lossy(b).chars().take(40).collect(),
                            reason: "binary data where text is required".into(),
                        }))
                    }
                },
                Child::El(e) => return Err(e.err(DecodeErrorKind::UnknownElement)),
            }
        }
        Ok(Cow::Owned(out))
    }

    /// The element's text without surrounding whitespace (identifiers,
    /// numbers, URIs: whitespace around them is layout, not value).
    pub(crate) fn text(self) -> Result<String, DecodeError> {
        Ok(self.text_as_received()?.trim().to_owned())
    }

    /// [`Elem::text`], borrowed when it can be.
    pub(crate) fn text_ref(self) -> Result<Cow<'d, str>, DecodeError> {
        Ok(match self.text_as_received()? {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
            Cow::Owned(t) => Cow::Owned(t.trim().to_owned()),
        })
    }

    pub(crate) fn opt_text(self, name: &str) -> Result<Option<String>, DecodeError> {
        self.child(name).map(Elem::text).transpose()
    }

    pub(crate) fn req_text(self, name: &'static str) -> Result<String, DecodeError> {
        self.required(name)?.text()
    }

    pub(crate) fn invalid(self, value: &str, reason: impl Into<String>) -> DecodeError {
        self.err(DecodeErrorKind::Invalid {
            value: value.chars().take(40).collect(),
            reason: reason.into(),
        })
    }

    pub(crate) fn parse_u64(self) -> Result<u64, DecodeError> {
        let t = self.text_as_received()?;
        let t = t.trim();
        t.parse::<u64>()
            .map_err(|_| self.invalid(t, "not a non-negative integer"))
    }

    pub(crate) fn opt_u64(self, name: &str) -> Result<Option<u64>, DecodeError> {
        self.child(name).map(Elem::parse_u64).transpose()
    }
}

// ------------------------------------------------------------ writing

/// An element name with its namespace and WBXML token, fixed at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag {
    pub ns: Ns,
    pub name: &'static str,
    /// Token on the code page of `ns`, without flags.
    pub token: u8,
}

/// The token of `name` in `page` (0x05 for the first entry); fails to
/// compile when a [`Tag`] names an element the page does not have.
const fn token_in(page: &[&str], name: &str) -> u8 {
    let mut i = 0;
    while i < page.len() {
        let p = page[i].as_bytes();
        let n = name.as_bytes();
        if p.len() == n.len() && !p.is_empty() {
            let mut j = 0;
            while j < n.len() && p[j] == n[j] {
                j += 1;
            }
            if j == n.len() {
                return i as u8 + 5;
            }
        }
        i += 1;
    }
    panic!("element not in the WBXML code page")
}

impl Tag {
    pub(crate) const fn sml(name: &'static str) -> Self {
        Self {
            ns: Ns::SyncMl,
            name,
            token: token_in(&super::wbxml::PAGE_SYNCML, name),
        }
    }

    pub(crate) const fn metinf(name: &'static str) -> Self {
        Self {
            ns: Ns::MetInf,
            name,
            token: token_in(&super::wbxml::PAGE_METINF, name),
        }
    }

    pub(crate) const fn ddf(name: &'static str) -> Self {
        Self {
            ns: Ns::DmDdf,
            name,
            token: token_in(&super::wbxml::PAGE_DMDDF, name),
        }
    }
}

/// Where the encoders write a message: elements opened and closed in
/// document order. An element that receives no content is written empty
/// (`<X/>` in XML, a token without the content bit in WBXML); empty text
/// and empty binary data are no content.
pub(crate) trait Sink {
    /// True for WBXML (an item carrying TNDS gets the `+wbxml` type).
    const WBXML: bool;

    fn open(&mut self, tag: Tag);
    fn text(&mut self, text: &str);
    fn opaque(&mut self, bytes: &[u8]);
    fn close(&mut self);
    /// A TNDS tree inside `Data`.
    fn tree(&mut self, tree: &crate::tnds::MgmtTree);

    fn leaf(&mut self, tag: Tag, text: &str) {
        self.open(tag);
        self.text(text);
        self.close();
    }

    fn opt_leaf(&mut self, tag: Tag, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(tag, t);
        }
    }

    fn num(&mut self, tag: Tag, n: u64) {
        let mut buf = [0u8; 20];
        self.leaf(tag, fmt_u64(n, &mut buf));
    }

    fn opt_num(&mut self, tag: Tag, n: Option<u64>) {
        if let Some(n) = n {
            self.num(tag, n);
        }
    }

    fn flag(&mut self, tag: Tag, set: bool) {
        if set {
            self.open(tag);
            self.close();
        }
    }
}

/// `n` in decimal, written into `buf`.
pub(crate) fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Writes the owned tree `el` to `sink` (standalone TNDS documents).
pub(crate) fn write_el(sink: &mut impl Sink, el: &El) {
    let Some(token) = super::wbxml::tag_token(el.ns, &el.name) else {
        debug_assert!(false, "no WBXML token for {}", el.name);
        return;
    };
    let name = super::wbxml::page_table(el.ns)[usize::from(token) - 5];
    sink.open(Tag {
        ns: el.ns,
        name,
        token,
    });
    for n in &el.children {
        match n {
            Node::Text(t) => sink.text(t),
            Node::Opaque(b) => sink.opaque(b),
            Node::El(c) => write_el(sink, c),
        }
    }
    sink.close();
}

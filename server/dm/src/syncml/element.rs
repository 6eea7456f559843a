//! Generic element trees, the meeting point of the XML and WBXML codecs
//! (PROTOCOL A.1).
//!
//! Both decoders read into a [`Doc`]: one `Vec` of nodes linked by index,
//! whose names and text borrow from the input (text is copied only when it
//! had to be unescaped or joined); every element also carries a [`Name`]
//! id, so that finding a child by name compares one byte. The encoders
//! write the model straight to bytes through a [`Sink`] (see `xml.rs`,
//! `wbxml.rs`).

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
    /// The namespace of an `xmlns` value; namespace names are compared
    /// ignoring case since clients differ (`SYNCML:SYNCML1.2`, `syncml:SYNCML1.2`).
    pub(crate) fn from_uri(uri: &str) -> Option<Self> {
        // As written by this encoder and most clients.
        match uri {
            "syncml:metinf" => return Some(Ns::MetInf),
            "SYNCML:SYNCML1.2" => return Some(Ns::SyncMl),
            "syncml:dmddf1.2" => return Some(Ns::DmDdf),
            _ => {}
        }
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

// ------------------------------------------------------------ names

use super::wbxml::{PAGE_DMDDF, PAGE_METINF, PAGE_SYNCML};

const ALL_LEN: usize = PAGE_SYNCML.len() + PAGE_METINF.len() + PAGE_DMDDF.len();

/// The three code pages one after the other.
const ALL: [&str; ALL_LEN] = {
    let mut all = [""; ALL_LEN];
    let mut i = 0;
    while i < ALL_LEN {
        all[i] = if i < PAGE_SYNCML.len() {
            PAGE_SYNCML[i]
        } else if i < PAGE_SYNCML.len() + PAGE_METINF.len() {
            PAGE_METINF[i - PAGE_SYNCML.len()]
        } else {
            PAGE_DMDDF[i - PAGE_SYNCML.len() - PAGE_METINF.len()]
        };
        i += 1;
    }
    all
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The id of an element name that is not on any code page.
pub(crate) const UNKNOWN: u8 = u8::MAX;

/// The first position of `name` in [`ALL`]: one id per distinct name, the
/// same whichever page (namespace) it was read on, since the mapping finds
/// children by name alone (`Format` under `Meta` may come without its
/// `xmlns`).
const fn first_index(name: &str) -> u8 {
    let mut i = 0;
    while i < ALL_LEN {
        if !ALL[i].is_empty() && same(ALL[i], name) {
            return i as u8;
        }
        i += 1;
    }
    UNKNOWN
}

/// The name id of each (page, token) position of [`ALL`].
const TOKEN_IDS: [u8; ALL_LEN] = {
    let mut ids = [UNKNOWN; ALL_LEN];
    let mut i = 0;
    while i < ALL_LEN {
        ids[i] = first_index(ALL[i]);
        i += 1;
    }
    ids
};

const HASH_SIZE: usize = 512;

/// From the length and three bytes of a non-empty name (few collisions
/// among the names of the pages, and cheap).
const fn hash(name: &[u8]) -> usize {
    let len = name.len();
    let x = (len as u32 & 0xFF)
        | (name[0] as u32) << 8
        | (name[len - 1] as u32) << 16
        | (name[len / 2] as u32) << 24;
    (x.wrapping_mul(0x9E37_79B1) >> 23) as usize % HASH_SIZE
}

/// Open addressing from the hash of a name to its id.
const HASH_IDS: [u8; HASH_SIZE] = {
    let mut table = [UNKNOWN; HASH_SIZE];
    let mut i = 0;
    while i < ALL_LEN {
        let id = TOKEN_IDS[i];
        if id as usize == i {
            let mut h = hash(ALL[i].as_bytes());
            while table[h] != UNKNOWN {
                h = (h + 1) % HASH_SIZE;
            }
            table[h] = id;
        }
        i += 1;
    }
    table
};

/// An element name known to the code pages, as a one-byte id (see
/// [`name_id`]); the mapping looks children up by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Name {
    pub id: u8,
    pub text: &'static str,
}

impl Name {
    /// Fails to compile for a name on no code page.
    pub(crate) const fn new(text: &'static str) -> Self {
        let id = first_index(text);
        assert!(id != UNKNOWN, "element name on no WBXML code page");
        Self { id, text }
    }
}

/// `Name::new` evaluated at compile time.
macro_rules! n {
    ($name:literal) => {{
        const NAME: $crate::syncml::element::Name = $crate::syncml::element::Name::new($name);
        NAME
    }};
}
pub(crate) use n;

/// The id of the element name `name` (`UNKNOWN` when on no code page).
pub(crate) fn name_id(name: &[u8]) -> u8 {
    if name.is_empty() {
        return UNKNOWN;
    }
    let mut h = hash(name);
    loop {
        let id = HASH_IDS[h];
        if id == UNKNOWN {
            return id;
        }
        if ALL[usize::from(id)].as_bytes() == name {
            return id;
        }
        h = (h + 1) % HASH_SIZE;
    }
}

/// The name whose id is `id` (not `UNKNOWN`).
pub(crate) fn name_text(id: u8) -> &'static str {
    ALL[usize::from(id)]
}

/// The id of the element of `token` on the page of `ns`.
pub(crate) fn token_id(ns: Ns, token: u8) -> u8 {
    let base = match ns {
        Ns::SyncMl => 0,
        Ns::MetInf => PAGE_SYNCML.len(),
        Ns::DmDdf => PAGE_SYNCML.len() + PAGE_METINF.len(),
    };
    let len = super::wbxml::page_table(ns).len();
    match usize::from(token).checked_sub(5) {
        Some(i) if i < len => TOKEN_IDS[base + i],
        _ => UNKNOWN,
    }
}

// ------------------------------------------------------------ arena tree

/// "No node": index 0 is always the root, which is nobody's child or sibling.
const NONE: u32 = 0;

/// The id of a slot that is not an element (never a [`Name`] id).
const NOT_EL: u8 = u8::MAX - 1;

/// What one slot of a [`Doc`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    El,
    /// Text borrowed from the input, in `Slot::text`.
    Text,
    /// Text that was unescaped or joined, in `Doc::owned[Slot::at]`.
    OwnedText,
    /// Binary data (WBXML `OPAQUE`), in `Doc::opaque[Slot::at]`.
    Opaque,
}

/// One node, in 32 bytes: decoding writes one per element and text, so
/// its size is most of the memory the tree touches.
#[derive(Debug, Clone)]
struct Slot<'a> {
    /// An element's name, or text borrowed from the input.
    text: &'a str,
    /// An element's byte offset in the input (saturating: messages are far
    /// smaller than 4 GiB), or the index of owned text or opaque data.
    at: u32,
    first: u32,
    next: u32,
    /// The name id of an element, [`NOT_EL`] for text and opaque data.
    id: u8,
    ns: Ns,
    kind: SlotKind,
}

/// The last child so far of an element that has children.
#[derive(Debug, Clone, Copy)]
struct Tail {
    parent: u32,
    last: u32,
}

/// A decoded document: the root element is node 0.
#[derive(Debug, Clone)]
pub(crate) struct Doc<'a> {
    nodes: Vec<Slot<'a>>,
    owned: Vec<String>,
    opaque: Vec<&'a [u8]>,
    /// The last children of the elements that nodes are being added to,
    /// outermost first. Nodes are added in document order, always to an
    /// open element: every element after the one being added to (a
    /// greater index) has ended, so its entry can go. This keeps the
    /// `last` link out of the slots.
    tails: Vec<Tail>,
}

impl<'a> Doc<'a> {
    /// An empty document with room for about `capacity` nodes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(capacity),
            owned: Vec::new(),
            opaque: Vec::new(),
            tails: Vec::with_capacity(16),
        }
    }

    /// Adds an element under `parent` (`None` for the root, which must
    /// come first; afterwards an element that has not ended) and returns
    /// its index. `name` is borrowed from the input (XML) or the token
    /// tables (WBXML), `id` is its [`Name`] id, `offset` the byte offset of
    /// its start in the input.
    #[inline]
    pub(crate) fn element(
        &mut self,
        parent: Option<u32>,
        name: &'a str,
        id: u8,
        ns: Ns,
        offset: usize,
    ) -> u32 {
        let at = u32::try_from(offset).unwrap_or(u32::MAX);
        self.push(parent, name, at, id, ns, SlotKind::El)
    }

    /// Adds text under the open element `parent`.
    #[inline]
    pub(crate) fn text(&mut self, parent: u32, text: Cow<'a, str>) {
        match text {
            Cow::Borrowed(t) => self.push(Some(parent), t, 0, NOT_EL, Ns::SyncMl, SlotKind::Text),
            Cow::Owned(t) => {
                self.owned.push(t);
                let at = self.owned.len() as u32 - 1;
                self.push(
                    Some(parent),
                    "",
                    at,
                    NOT_EL,
                    Ns::SyncMl,
                    SlotKind::OwnedText,
                )
            }
        };
    }

    /// Adds binary data (WBXML `OPAQUE`) under the open element `parent`.
    pub(crate) fn opaque(&mut self, parent: u32, bytes: &'a [u8]) {
        self.opaque.push(bytes);
        let at = self.opaque.len() as u32 - 1;
        self.push(Some(parent), "", at, NOT_EL, Ns::SyncMl, SlotKind::Opaque);
    }

    #[inline(always)]
    fn push(
        &mut self,
        parent: Option<u32>,
        text: &'a str,
        at: u32,
        id: u8,
        ns: Ns,
        kind: SlotKind,
    ) -> u32 {
        let idx = self.nodes.len() as u32;
        self.nodes.push(Slot {
            text,
            at,
            first: NONE,
            next: NONE,
            id,
            ns,
            kind,
        });
        let Some(p) = parent else {
            return idx;
        };
        match self.tails.last_mut() {
            // The usual case: a sibling of the node added before.
            Some(t) if t.parent == p => {
                let last = std::mem::replace(&mut t.last, idx);
                self.nodes[last as usize].next = idx;
            }
            _ => match self.last_child(p) {
                NONE => {
                    self.nodes[p as usize].first = idx;
                    self.tails.push(Tail {
                        parent: p,
                        last: idx,
                    });
                }
                last => {
                    self.nodes[last as usize].next = idx;
                    if let Some(t) = self.tails.last_mut() {
                        t.last = idx;
                    }
                }
            },
        }
        idx
    }

    /// The last child of `parent` so far, dropping the entries of the
    /// elements after it (see [`Doc::tails`]).
    fn last_child(&mut self, parent: u32) -> u32 {
        while let Some(t) = self.tails.last() {
            if t.parent == parent {
                return t.last;
            }
            if t.parent < parent {
                break;
            }
            self.tails.pop();
        }
        NONE
    }

    /// Appends text to `parent`, joined to its last child when that is text
    /// (WBXML: `STR_I`, `ENTITY`, `STR_T` in a row make one text).
    pub(crate) fn add_text_joined(&mut self, parent: u32, text: Cow<'a, str>) {
        let last = self.last_child(parent);
        if last != NONE {
            let slot = &mut self.nodes[last as usize];
            match slot.kind {
                SlotKind::Text => {
                    let mut joined = String::with_capacity(slot.text.len() + text.len());
                    joined.push_str(slot.text);
                    joined.push_str(&text);
                    slot.text = "";
                    slot.kind = SlotKind::OwnedText;
                    slot.at = self.owned.len() as u32;
                    self.owned.push(joined);
                    return;
                }
                SlotKind::OwnedText => {
                    self.owned[slot.at as usize].push_str(&text);
                    return;
                }
                SlotKind::El | SlotKind::Opaque => {}
            }
        }
        self.text(parent, text);
    }

    /// The name of element `idx` (for error messages).
    pub(crate) fn name_of(&self, idx: u32) -> &'a str {
        let slot = &self.nodes[idx as usize];
        match slot.kind {
            SlotKind::El => slot.text,
            _ => "",
        }
    }

    pub(crate) fn ns_of(&self, idx: u32) -> Ns {
        self.nodes[idx as usize].ns
    }

    /// The root element.
    pub(crate) fn root(&self) -> Elem<'_, 'a> {
        Elem { doc: self, idx: 0 }
    }
}

/// `text` without surrounding whitespace ([`str::trim`]), found without
/// decoding characters when it starts and ends with visible ASCII (the
/// usual case).
fn trim(text: &str) -> &str {
    match text.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        [only] if only.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// One element of a [`Doc`]: children found by [`Name`], text read
/// without copying anything until a value is taken into the model.
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

impl Children<'_, '_> {
    /// No more children.
    fn is_none(&self) -> bool {
        self.next == NONE
    }
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
        let doc = self.doc;
        let slot = &doc.nodes[idx as usize];
        self.next = slot.next;
        Some(match slot.kind {
            SlotKind::El => Child::El(Elem { doc, idx }),
            SlotKind::Text => Child::Text(slot.text),
            SlotKind::OwnedText => Child::Text(&doc.owned[slot.at as usize]),
            SlotKind::Opaque => Child::Opaque(doc.opaque[slot.at as usize]),
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

    pub(crate) fn offset(self) -> usize {
        self.slot().at as usize
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

    /// Whether this element is called `name`.
    pub(crate) fn is(self, name: Name) -> bool {
        self.slot().id == name.id
    }

    /// The first child element called `name`.
    pub(crate) fn child(self, name: Name) -> Option<Elem<'d, 'a>> {
        let nodes = &self.doc.nodes;
        let mut c = self.slot().first;
        while c != NONE {
            let slot = &nodes[c as usize];
            if slot.id == name.id {
                return Some(Elem {
                    doc: self.doc,
                    idx: c,
                });
            }
            c = slot.next;
        }
        None
    }

    /// The child elements called `name`, in order.
    pub(crate) fn children_named(self, name: Name) -> impl Iterator<Item = Elem<'d, 'a>> {
        self.elements().filter(move |e| e.is(name))
    }

    /// How many child elements are called `name`.
    pub(crate) fn count(self, name: Name) -> usize {
        self.children_named(name).count()
    }

    pub(crate) fn has(self, name: Name) -> bool {
        self.child(name).is_some()
    }

    pub(crate) fn has_opaque(self) -> bool {
        self.children().any(|c| matches!(c, Child::Opaque(_)))
    }

    pub(crate) fn err(self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.name(), self.offset(), kind)
    }

    pub(crate) fn required(self, name: Name) -> Result<Elem<'d, 'a>, DecodeError> {
        self.child(name)
            .ok_or_else(|| self.err(DecodeErrorKind::Missing(name.text)))
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
            if children.is_none() {
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
        Ok(trim(&self.text_as_received()?).to_owned())
    }

    /// [`Elem::text`], borrowed when it can be.
    pub(crate) fn text_ref(self) -> Result<Cow<'d, str>, DecodeError> {
        Ok(match self.text_as_received()? {
            Cow::Borrowed(t) => Cow::Borrowed(trim(t)),
            Cow::Owned(t) => Cow::Owned(trim(&t).to_owned()),
        })
    }

    pub(crate) fn opt_text(self, name: Name) -> Result<Option<String>, DecodeError> {
        self.child(name).map(Elem::text).transpose()
    }

    pub(crate) fn req_text(self, name: Name) -> Result<String, DecodeError> {
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
        let t = trim(&t);
        t.parse::<u64>()
            .map_err(|_| self.invalid(t, "not a non-negative integer"))
    }

    pub(crate) fn opt_u64(self, name: Name) -> Result<Option<u64>, DecodeError> {
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
    pub xml: &'static XmlTag,
}

/// Size of the blocks of [`XmlTag`]: the longest end tag, `</RTProperties>`,
/// fits.
pub(crate) const TAG_BLOCK: usize = 16;

/// An element's start (`<Name`) and end tag (`</Name>`) in XML, each in a
/// block of [`TAG_BLOCK`] bytes followed by its length: the writer copies
/// the whole block and cuts it to length, a few moves instead of a call to
/// copy each piece.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct XmlTag {
    pub start: ([u8; TAG_BLOCK], usize),
    pub end: ([u8; TAG_BLOCK], usize),
}

impl XmlTag {
    pub(crate) const fn new(name: &str) -> Self {
        const fn block(parts: [&[u8]; 3]) -> ([u8; TAG_BLOCK], usize) {
            let mut out = [0u8; TAG_BLOCK];
            let mut len = 0;
            let mut p = 0;
            while p < parts.len() {
                let mut i = 0;
                while i < parts[p].len() {
                    assert!(len < TAG_BLOCK, "element name too long for TAG_BLOCK");
                    out[len] = parts[p][i];
                    len += 1;
                    i += 1;
                }
                p += 1;
            }
            (out, len)
        }
        let name = name.as_bytes();
        Self {
            start: block([b"<", name, b""]),
            end: block([b"</", name, b">"]),
        }
    }
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
    pub(crate) const fn sml(name: &'static str, xml: &'static XmlTag) -> Self {
        Self {
            ns: Ns::SyncMl,
            name,
            token: token_in(&super::wbxml::PAGE_SYNCML, name),
            xml,
        }
    }

    pub(crate) const fn metinf(name: &'static str, xml: &'static XmlTag) -> Self {
        Self {
            ns: Ns::MetInf,
            name,
            token: token_in(&super::wbxml::PAGE_METINF, name),
            xml,
        }
    }

    pub(crate) const fn ddf(name: &'static str, xml: &'static XmlTag) -> Self {
        Self {
            ns: Ns::DmDdf,
            name,
            token: token_in(&super::wbxml::PAGE_DMDDF, name),
            xml,
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

#[cfg(test)]
mod tests {
    // The shortcut of `trim` changes nothing: the same as `str::trim`,
    // Unicode whitespace included.
    #[test]
    fn trim_is_str_trim() {
        let cases = [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\ta\n",
            "ab",
            "a b",
            "\u{A0}a",
            "a\u{A0}",
            "\u{3000}",
            "é",
            "é ",
            " é",
            "\u{85}x\u{85}",
            "\u{B}a\u{C}",
            "\u{1F}a",
            "~",
            "x\r",
        ];
        for s in cases {
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
    }
}

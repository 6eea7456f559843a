//! A generic element tree, the meeting point of the XML and WBXML codecs
//! (PROTOCOL A.1): both read into it and write from it.

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

    pub(crate) fn has(&self, name: &str) -> bool {
        self.child(name).is_some()
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

//! DM tree access control lists (PROTOCOL A.7) and the B.6 rule for adding
//! a delegated server to an effective ACL.

use std::fmt;

use crate::types::ServerId;

/// The commands an ACL grants (A.7), in the order B.6 writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AclCmd {
    Add,
    Delete,
    Exec,
    Get,
    Replace,
}

impl AclCmd {
    /// All five, in the order Add, Delete, Exec, Get, Replace (B.6).
    pub const ALL: [AclCmd; 5] = [
        AclCmd::Add,
        AclCmd::Delete,
        AclCmd::Exec,
        AclCmd::Get,
        AclCmd::Replace,
    ];

    /// The name as written in an ACL (A.7).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "Add",
            Self::Delete => "Delete",
            Self::Exec => "Exec",
            Self::Get => "Get",
            Self::Replace => "Replace",
        }
    }

    /// Reads a command name; case-sensitive as in A.7.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for AclCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ACL id (A.7): a ServerID or `*` (any server).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AclId {
    Any,
    Server(ServerId),
}

impl AclId {
    /// True when this id grants to `server`.
    pub fn matches(&self, server: &ServerId) -> bool {
        match self {
            Self::Any => true,
            Self::Server(s) => s == server,
        }
    }
}

impl fmt::Display for AclId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Server(s) => f.write_str(s.as_str()),
        }
    }
}

/// Why an ACL value was refused (A.7), with the byte position of the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ACL invalid at byte {at}: {reason}")]
pub struct AclError {
    pub at: usize,
    pub reason: &'static str,
}

/// An ACL value (A.7): `entry ("&" entry)*`, `entry = cmd "=" id ("+" id)*`.
/// Empty means "inherit from the nearest ancestor". Entry and id order are
/// kept as given, so formatting reproduces the parsed text. **[profile]** A
/// command may have one entry only and an id may appear once per entry;
/// repeated ones are refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    entries: Vec<(AclCmd, Vec<AclId>)>,
}

impl Acl {
    /// The empty ACL (inherit, A.7).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The default root ACL `Add=*&Get=*` (A.7).
    pub fn root_default() -> Self {
        Self {
            entries: vec![
                (AclCmd::Add, vec![AclId::Any]),
                (AclCmd::Get, vec![AclId::Any]),
            ],
        }
    }

    /// Reads an ACL value (A.7); the error names the byte where it went wrong.
    pub fn parse(s: &str) -> Result<Self, AclError> {
        let mut acl = Self::empty();
        if s.is_empty() {
            return Ok(acl);
        }
        let err = |at, reason| AclError { at, reason };
        let mut pos = 0;
        for entry in s.split('&') {
            let eq = entry
                .find('=')
                .ok_or(err(pos + entry.len(), "expected `=` after the command"))?;
            let cmd = AclCmd::parse(&entry[..eq]).ok_or(err(
                pos,
                "unknown command (Add, Delete, Exec, Get, Replace)",
            ))?;
            if acl.entries.iter().any(|(c, _)| *c == cmd) {
                return Err(err(pos, "command appears twice"));
            }
            let mut ids = Vec::new();
            let mut ipos = pos + eq + 1;
            for id in entry[eq + 1..].split('+') {
                let parsed = if id == "*" {
                    AclId::Any
                } else {
                    AclId::Server(
                        ServerId::parse_strict(id)
                            .map_err(|_| err(ipos, "not a ServerID nor `*`"))?,
                    )
                };
                if ids.contains(&parsed) {
                    return Err(err(ipos, "id appears twice in the entry"));
                }
                ids.push(parsed);
                ipos += id.len() + 1;
            }
            acl.entries.push((cmd, ids));
            pos += entry.len() + 1;
        }
        Ok(acl)
    }

    /// True for the empty ACL (inherit).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in their order.
    pub fn entries(&self) -> impl Iterator<Item = (AclCmd, &[AclId])> {
        self.entries.iter().map(|(c, ids)| (*c, ids.as_slice()))
    }

    /// The ids of the entry for `cmd`; empty when there is none.
    pub fn ids(&self, cmd: AclCmd) -> &[AclId] {
        self.entries
            .iter()
            .find(|(c, _)| *c == cmd)
            .map_or(&[], |(_, ids)| ids.as_slice())
    }

    /// True when this ACL grants `cmd` to `server` (by name or `*`). This
    /// looks at this value only; inheritance is the tree's business.
    pub fn allows(&self, cmd: AclCmd, server: &ServerId) -> bool {
        self.ids(cmd).iter().any(|id| id.matches(server))
    }

    /// Grants `cmd` to `id`, appending it to the entry (or a new entry at the end).
    pub fn grant(&mut self, cmd: AclCmd, id: AclId) {
        match self.entries.iter_mut().find(|(c, _)| *c == cmd) {
            Some((_, ids)) if !ids.contains(&id) => ids.push(id),
            Some(_) => {}
            None => self.entries.push((cmd, vec![id])),
        }
    }

    /// Removes `server` from the entry for `cmd`; an entry left without ids
    /// disappears. `*` is not touched.
    pub fn revoke(&mut self, cmd: AclCmd, server: &ServerId) {
        for (c, ids) in &mut self.entries {
            if *c == cmd {
                ids.retain(|i| !matches!(i, AclId::Server(s) if s == server));
            }
        }
        self.entries.retain(|(_, ids)| !ids.is_empty());
    }

    /// Removes `server` from every entry (A.7, deleting a DMAcc). Returns
    /// true when something changed. The result may be empty, which then
    /// means "inherit".
    pub fn scrub(&mut self, server: &ServerId) -> bool {
        let before = self.clone();
        for cmd in AclCmd::ALL {
            self.revoke(cmd, server);
        }
        *self != before
    }

    /// Every ServerID named, in order of first appearance, without `*`.
    pub fn servers(&self) -> Vec<&ServerId> {
        let mut out: Vec<&ServerId> = Vec::new();
        for (_, ids) in &self.entries {
            for id in ids {
                if let AclId::Server(s) = id {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    /// The B.6 value: `effective` with `server` added for the granted
    /// `rights`. Entries in the order Add, Delete, Exec, Get, Replace; the
    /// entry of a granted right keeps its ids in order with `server`
    /// appended, unless it is present or the entry holds `*` (then it stays
    /// as is); a granted right without an entry gets `<cmd>=<server>`.
    /// Entries of rights not granted are copied unchanged: DMS-2 gets no
    /// more than the terms grant.
    pub fn with_server_added(effective: &Acl, server: &ServerId, rights: &[AclCmd]) -> Acl {
        let mut out = Acl::empty();
        for cmd in AclCmd::ALL {
            let ids = effective.ids(cmd);
            if !ids.is_empty() {
                let mut ids = ids.to_vec();
                if rights.contains(&cmd)
                    && !ids
                        .iter()
                        .any(|i| matches!(i, AclId::Any) || i.matches(server))
                {
                    ids.push(AclId::Server(server.clone()));
                }
                out.entries.push((cmd, ids));
            } else if rights.contains(&cmd) {
                out.entries.push((cmd, vec![AclId::Server(server.clone())]));
            }
        }
        out
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (cmd, ids)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{cmd}=")?;
            for (j, id) in ids.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{id}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Acl {
    type Err = AclError;
    fn from_str(s: &str) -> Result<Self, AclError> {
        Self::parse(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Acl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Acl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Acl::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sid(s: &str) -> ServerId {
        ServerId::parse_strict(s).unwrap()
    }

    // PROTOCOL A.7 grammar and example; order preserved.
    #[test]
    fn parse_format() {
        for ok in [
            "",
            "Get=*&Replace=corp.example+carrier.example",
            "Replace=b+a&Add=*",
            "Exec=x",
        ] {
            assert_eq!(Acl::parse(ok).unwrap().to_string(), ok);
        }
        let a = Acl::parse("Get=*&Replace=corp.example+carrier.example").unwrap();
        assert!(a.allows(AclCmd::Get, &sid("anyone")));
        assert!(a.allows(AclCmd::Replace, &sid("carrier.example")));
        assert!(!a.allows(AclCmd::Replace, &sid("other")));
        assert!(!a.allows(AclCmd::Add, &sid("corp.example")));
        assert_eq!(
            a.servers(),
            vec![&sid("corp.example"), &sid("carrier.example")]
        );
    }

    // PROTOCOL A.7: invalid values rejected with the byte position.
    #[test]
    fn invalid_with_position() {
        let cases = [
            ("Get", 3),
            ("get=*", 0),
            ("Get=*&", 6),
            ("Get=*&&Add=*", 6),
            ("Get=", 4),
            ("Get=a++b", 6),
            ("Get=a&Put=b", 6),
            ("Get=a&Get=b", 6),
            ("Get=a+b+a", 8),
            ("Get=a b", 4),
            ("Get=a=b", 4),
        ];
        for (s, at) in cases {
            let e = Acl::parse(s).expect_err(s);
            assert_eq!(e.at, at, "{s}: {e}");
        }
    }

    #[test]
    fn grant_revoke_scrub() {
        let mut a = Acl::parse("Get=*&Replace=a+b").unwrap();
        a.grant(AclCmd::Replace, AclId::Server(sid("c")));
        a.grant(AclCmd::Replace, AclId::Server(sid("a")));
        a.grant(AclCmd::Delete, AclId::Server(sid("a")));
        assert_eq!(a.to_string(), "Get=*&Replace=a+b+c&Delete=a");
        a.revoke(AclCmd::Replace, &sid("b"));
        assert_eq!(a.to_string(), "Get=*&Replace=a+c&Delete=a");
        assert!(a.scrub(&sid("a")));
        assert_eq!(a.to_string(), "Get=*&Replace=c");
        assert!(!a.scrub(&sid("a")));
        let mut only = Acl::parse("Get=a").unwrap();
        only.scrub(&sid("a"));
        assert!(only.is_empty());
    }

    // PROTOCOL B.6: effective ACL with DMS-2 added.
    #[test]
    fn b6_added() {
        let d2 = sid("dms2");
        let all = AclCmd::ALL;
        let eff = Acl::parse("Replace=dms1&Get=*&Add=dms1+x").unwrap();
        // reordered; ids keep their order, DMS-2 appended; `*` stays; missing rights added
        assert_eq!(
            Acl::with_server_added(&eff, &d2, &all).to_string(),
            "Add=dms1+x+dms2&Delete=dms2&Exec=dms2&Get=*&Replace=dms1+dms2"
        );
        // rights not granted: entries copied unchanged, no new entries
        assert_eq!(
            Acl::with_server_added(&eff, &d2, &[AclCmd::Get, AclCmd::Add]).to_string(),
            "Add=dms1+x+dms2&Get=*&Replace=dms1"
        );
        // already present: unchanged
        let eff = Acl::parse("Get=dms2+dms1").unwrap();
        assert_eq!(
            Acl::with_server_added(&eff, &d2, &[AclCmd::Get]).to_string(),
            "Get=dms2+dms1"
        );
        assert_eq!(
            Acl::with_server_added(&Acl::empty(), &d2, &[AclCmd::Replace, AclCmd::Add]).to_string(),
            "Add=dms2&Replace=dms2"
        );
    }

    fn arb_acl() -> impl Strategy<Value = String> {
        let id = prop_oneof![Just("*".to_string()), "[a-z0-9.:_-]{1,12}"];
        let entry = (0usize..5, prop::collection::vec(id, 1..4));
        prop::collection::vec(entry, 0..6).prop_map(|es| {
            let mut seen = Vec::new();
            let mut parts = Vec::new();
            for (c, ids) in es {
                if seen.contains(&c) {
                    continue;
                }
                seen.push(c);
                let mut uniq: Vec<String> = Vec::new();
                for i in ids {
                    if !uniq.contains(&i) {
                        uniq.push(i);
                    }
                }
                parts.push(format!("{}={}", AclCmd::ALL[c], uniq.join("+")));
            }
            parts.join("&")
        })
    }

    proptest! {
        // PROTOCOL A.7: parse/format round trip.
        #[test]
        fn round_trip(s in arb_acl()) {
            let a = Acl::parse(&s).unwrap();
            prop_assert_eq!(a.to_string(), s.clone());
            prop_assert_eq!(Acl::parse(&a.to_string()).unwrap(), a);
        }

        #[test]
        fn parse_never_panics(s in "[A-Za-z=&+*. ]{0,30}") {
            if let Ok(a) = Acl::parse(&s) {
                prop_assert_eq!(a.to_string(), s);
            }
        }
    }
}

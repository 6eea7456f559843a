//! Delegation terms — PROTOCOL B.2.

use handover_dm::AclCmd;
use std::fmt;

/// A set of the five DM rights, always written in the order Add, Delete,
/// Exec, Get, Replace (B.9 canonical form, B.6 entry order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Rights(u8);

impl Rights {
    /// All five rights.
    pub const ALL: Rights = Rights(0b1_1111);

    fn bit(cmd: AclCmd) -> u8 {
        match cmd {
            AclCmd::Add => 1,
            AclCmd::Delete => 2,
            AclCmd::Exec => 4,
            AclCmd::Get => 8,
            AclCmd::Replace => 16,
        }
    }

    /// The empty set.
    pub const fn empty() -> Self {
        Rights(0)
    }

    /// Whether no right is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds one right.
    pub fn insert(&mut self, cmd: AclCmd) {
        self.0 |= Self::bit(cmd);
    }

    /// Whether `cmd` is in the set.
    pub fn contains(self, cmd: AclCmd) -> bool {
        self.0 & Self::bit(cmd) != 0
    }

    /// The rights in B.6 order.
    pub fn cmds(self) -> Vec<AclCmd> {
        AclCmd::ALL.into_iter().filter(|c| self.contains(*c)).collect()
    }

    /// Parses B.9 `Rights`: `,`-separated, no spaces, each right at most
    /// once, at least one. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let mut r = Rights::empty();
        for part in s.split(',') {
            let cmd = AclCmd::parse(part)?;
            if r.contains(cmd) {
                return None;
            }
            r.insert(cmd);
        }
        (!r.is_empty()).then_some(r)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for cmd in self.cmds() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(cmd.as_str())?;
        }
        Ok(())
    }
}

/// One delegated subtree with the rights granted on it (B.2 Scope).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subtree {
    /// The subtree's URI in A.7 form, exactly as received.
    pub uri: String,
    /// The rights granted to DMS-2 on it.
    pub rights: Rights,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_parse_and_print_in_b6_order() {
        let r = Rights::parse("Replace,Get,Add").unwrap();
        assert_eq!(r.to_string(), "Add,Get,Replace");
        assert_eq!(Rights::ALL.to_string(), "Add,Delete,Exec,Get,Replace");
    }

    #[test]
    fn rights_refuse_repeats_spaces_and_empty() {
        assert_eq!(Rights::parse("Get,Get"), None);
        assert_eq!(Rights::parse("Get, Add"), None);
        assert_eq!(Rights::parse(""), None);
        assert_eq!(Rights::parse("get"), None);
    }
}

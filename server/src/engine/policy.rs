//! Auto-accept policies (PROTOCOL B.4): a peer's incoming requests that
//! match are accepted without a person, with Approver
//! `auto-accept:<policy name>`.

use handover_delegation::wire::{Scope, Term, Terms};
use handover_dm::TreeUri;

/// A peer's auto-accept policy, stored as JSON on the peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoAccept {
    /// Shown as `auto-accept:<name>`.
    pub name: String,
    /// Which of our roles it covers: `delegating` (we hand over) and/or
    /// `delegated` (we take over). Empty: both.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `full` and/or `partial`; empty: both.
    #[serde(default)]
    pub types: Vec<String>,
    /// `permanent` and/or `temporary`; empty: both.
    #[serde(default)]
    pub terms: Vec<String>,
    /// For `partial`: every scope URI must lie within one of these
    /// subtrees. Empty: any.
    #[serde(default)]
    pub subtrees: Vec<String>,
    /// For `temporary`: at most this many days from now. None: any.
    #[serde(default)]
    pub max_days: Option<u32>,
}

impl AutoAccept {
    /// Reads and checks a policy.
    pub fn parse(json: &str) -> Result<AutoAccept, String> {
        let p: AutoAccept = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if p.name.trim().is_empty() || p.name.len() > 64 {
            return Err("the policy needs a name of at most 64 characters".into());
        }
        let check = |list: &[String], allowed: &[&str], what: &str| {
            list.iter().try_for_each(|v| {
                allowed
                    .contains(&v.as_str())
                    .then_some(())
                    .ok_or_else(|| format!("{what} {v:?} is not one of {allowed:?}"))
            })
        };
        check(&p.roles, &["delegating", "delegated"], "role")?;
        check(&p.types, &["full", "partial"], "type")?;
        check(&p.terms, &["permanent", "temporary"], "term")?;
        for s in &p.subtrees {
            TreeUri::parse(s).map_err(|e| format!("subtree {s:?}: {e}"))?;
        }
        Ok(p)
    }

    /// True when this policy accepts `terms` for a server in the role
    /// `we_delegate` (DMS-1) or not (DMS-2), at `now_unix`.
    pub fn accepts(&self, terms: &Terms, we_delegate: bool, now_unix: i64) -> bool {
        let role = if we_delegate {
            "delegating"
        } else {
            "delegated"
        };
        let any_or = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        let kind = match terms.scope {
            Scope::Full => "full",
            Scope::Partial(_) => "partial",
        };
        let term = match terms.term {
            Term::Permanent => "permanent",
            Term::Temporary { .. } => "temporary",
        };
        if !any_or(&self.roles, role) || !any_or(&self.types, kind) || !any_or(&self.terms, term) {
            return false;
        }
        if let Scope::Partial(subtrees) = &terms.scope {
            if !self.subtrees.is_empty() {
                let allowed: Vec<TreeUri> = self
                    .subtrees
                    .iter()
                    .filter_map(|s| TreeUri::parse(s).ok())
                    .collect();
                let inside = subtrees.iter().all(|s| {
                    TreeUri::parse(&s.uri).is_ok_and(|u| allowed.iter().any(|a| u.is_within(a)))
                });
                if !inside {
                    return false;
                }
            }
        }
        if let (Some(days), Term::Temporary { expires }) = (self.max_days, terms.term) {
            let limit = now_unix + i64::from(days) * 86_400;
            if expires.get().unix_timestamp() > limit {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handover_delegation::terms::{Rights, Subtree};
    use handover_delegation::wire::{Device, Initiator, UtcTime};
    use handover_dm::{DevId, ServerId};

    fn terms(scope: Scope, term: Term) -> Terms {
        Terms {
            initiator: Initiator::Delegating,
            delegating: ServerId::parse("carrier.example").unwrap(),
            delegated: ServerId::parse("corp.example").unwrap(),
            device: Device {
                dev_id: DevId::parse("IMEI:1").unwrap(),
                man: "Acme".into(),
                model: "X1".into(),
            },
            scope,
            term,
            reason: None,
            requested_by: None,
            approved_by: None,
        }
    }

    #[test]
    fn b4_policy_limits_role_type_subtrees_and_term() {
        let p = AutoAccept::parse(
            r#"{"name":"corp-apps","roles":["delegated"],"types":["partial"],"subtrees":["./Vendor/Corp"],"max_days":30}"#,
        )
        .unwrap();
        let now = 1_800_000_000;
        let soon = Term::Temporary {
            expires: UtcTime::from_unix(now + 86_400).unwrap(),
        };
        let apps = Scope::Partial(vec![Subtree {
            uri: "./Vendor/Corp/Apps".into(),
            rights: Rights::parse("Get,Replace").unwrap(),
        }]);
        assert!(p.accepts(&terms(apps.clone(), soon), false, now));
        assert!(!p.accepts(&terms(apps.clone(), soon), true, now), "role");
        assert!(!p.accepts(&terms(Scope::Full, soon), false, now), "type");
        let late = Term::Temporary {
            expires: UtcTime::from_unix(now + 40 * 86_400).unwrap(),
        };
        assert!(!p.accepts(&terms(apps, late), false, now), "too long");
        let other = Scope::Partial(vec![Subtree {
            uri: "./Vendor/Carrier".into(),
            rights: Rights::parse("Get").unwrap(),
        }]);
        assert!(!p.accepts(&terms(other, soon), false, now), "subtree");
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(AutoAccept::parse(r#"{"name":""}"#).is_err());
        assert!(AutoAccept::parse(r#"{"name":"x","types":["most"]}"#).is_err());
        assert!(AutoAccept::parse(r#"{"name":"x","subtrees":["./a/"]}"#).is_err());
        assert!(AutoAccept::parse(r#"{"name":"x","extra":1}"#).is_err());
    }
}

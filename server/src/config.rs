//! Settings from the command line, an optional TOML file and defaults, in
//! that order of precedence.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The keys a `--config` TOML file may hold (the same names as the flags,
/// with `_` for `-`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub portal_addr: Option<SocketAddr>,
    pub dm_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    pub server_id: Option<String>,
    pub site_root: Option<PathBuf>,
    pub secure_cookie: Option<bool>,
    pub session_idle_minutes: Option<i64>,
    /// 64 hex digits sealing device secrets; by default `device-secrets.key`
    /// in the data directory.
    pub device_secrets_key: Option<crate::device::vault::KeyText>,
    /// `[enrolment]`: auto-enrolment by factory key (off by default).
    pub enrolment: Option<crate::device::enrol::FilePolicy>,
    /// `[delegation]`: the deadlines of PROTOCOL B.6 and B.7.
    pub delegation: Option<DelegationFile>,
}

/// `[delegation]` in the configuration file; each key overrides the B.6
/// default of one waiting state.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationFile {
    /// Automatic peer replies (AuthChallenge, AuthResponse, Complete); 10.
    pub peer_reply_minutes: Option<i64>,
    /// Staff approval, on either side; 72.
    pub staff_approval_hours: Option<i64>,
    /// Device contact while preparing, bootstrapping and updating ACLs; 24.
    pub device_contact_hours: Option<i64>,
    /// DMS-1's grace after the grant's Deadline; 10.
    pub bootstrapped_grace_minutes: Option<i64>,
    /// DMS-2 ends a temporary delegation this long after Expires; 5.
    pub expiry_grace_minutes: Option<i64>,
    /// A request waits this long for its second person; 72.
    pub request_hours: Option<i64>,
}

impl DelegationFile {
    /// The engine settings with these overrides; every value must be positive.
    pub fn resolve(&self) -> anyhow::Result<crate::engine::Settings> {
        let mut s = crate::engine::Settings::default();
        let d = &mut s.deadlines;
        let pos = |v: i64, key: &str| {
            anyhow::ensure!(v > 0, "[delegation] {key} must be positive");
            Ok(v)
        };
        if let Some(v) = self.peer_reply_minutes {
            d.peer_reply = time::Duration::minutes(pos(v, "peer_reply_minutes")?);
        }
        if let Some(v) = self.staff_approval_hours {
            d.staff_approval = time::Duration::hours(pos(v, "staff_approval_hours")?);
        }
        if let Some(v) = self.device_contact_hours {
            d.device_contact = time::Duration::hours(pos(v, "device_contact_hours")?);
        }
        if let Some(v) = self.bootstrapped_grace_minutes {
            d.bootstrapped_grace = time::Duration::minutes(pos(v, "bootstrapped_grace_minutes")?);
        }
        if let Some(v) = self.expiry_grace_minutes {
            d.expiry_grace = time::Duration::minutes(pos(v, "expiry_grace_minutes")?);
        }
        if let Some(v) = self.request_hours {
            s.request_ttl = time::Duration::hours(pos(v, "request_hours")?);
        }
        Ok(s)
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Everything `handover serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub portal_addr: SocketAddr,
    pub dm_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub server_id: String,
    pub site_root: PathBuf,
    pub secure_cookie: bool,
    /// Sessions end after this many seconds without a request.
    pub session_idle_secs: i64,
    /// The key sealing device secrets, when not from the data directory.
    pub device_secrets_key: Option<crate::device::vault::KeyText>,
    /// Limits of the DM endpoint.
    pub dm: crate::device::Settings,
    /// Deadlines and delivery of delegations.
    pub delegation: crate::engine::Settings,
}

pub const DEFAULT_PORTAL: &str = "127.0.0.1:3000";
pub const DEFAULT_DM: &str = "127.0.0.1:8080";
pub const DEFAULT_PEER: &str = "127.0.0.1:8443";

#[cfg(test)]
mod delegation_tests {
    use super::*;

    #[test]
    fn delegation_deadlines_come_from_the_file() {
        let f: FileConfig = toml::from_str(
            "[delegation]\npeer_reply_minutes = 2\ndevice_contact_hours = 1\nrequest_hours = 8\n",
        )
        .unwrap();
        let s = f.delegation.unwrap().resolve().unwrap();
        assert_eq!(s.deadlines.peer_reply, time::Duration::minutes(2));
        assert_eq!(s.deadlines.device_contact, time::Duration::hours(1));
        assert_eq!(s.deadlines.staff_approval, time::Duration::hours(72));
        assert_eq!(s.request_ttl, time::Duration::hours(8));
        let bad: FileConfig = toml::from_str("[delegation]\npeer_reply_minutes = 0\n").unwrap();
        assert!(bad.delegation.unwrap().resolve().is_err());
        assert!(toml::from_str::<FileConfig>("[delegation]\nnap_minutes = 1\n").is_err());
    }
}

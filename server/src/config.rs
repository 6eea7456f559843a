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

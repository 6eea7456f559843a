//! Peers (PROTOCOL B.1): this server's identity to hand to other
//! authorities, and the peers it trusts. Viewers and admins see them; only
//! admins change them or test a connection.

use super::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What a peer's administrator needs from us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThisServer {
    pub server_id: String,
    pub peer_url: String,
    pub dm_url: String,
    /// SHA-256 of our certificate's SubjectPublicKeyInfo, 64 lowercase hex digits.
    pub fingerprint: String,
    /// Set when the URLs above name an unspecified address and need the host's name.
    pub note: Option<String>,
}

/// One configured peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRow {
    pub server_id: String,
    pub url: String,
    pub dm_url: String,
    pub fingerprint: String,
    /// The auto-accept policy as stored (JSON), if any.
    pub auto_accept: Option<String>,
    /// The policy in a few words, if any.
    pub policy_summary: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Everything the Peers page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersPage {
    pub this: ThisServer,
    pub peers: Vec<PeerRow>,
    /// The caller is an administrator and may change peers.
    pub can_edit: bool,
}

/// A peer as the add and edit forms send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerForm {
    pub server_id: String,
    pub url: String,
    pub dm_url: String,
    pub fingerprint: String,
    /// Auto-accept policy JSON; empty for none.
    pub auto_accept: String,
}

/// The outcome of a connection test, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub server_id: String,
    pub ok: bool,
    pub message: String,
}

#[server(endpoint = "peers/overview")]
pub async fn peers_overview() -> Result<PeersPage, AppError> {
    super::with_backend(|b, req| async move { b.peers_overview(&req).await }).await
}

#[server(endpoint = "peers/add")]
pub async fn add_peer(
    server_id: String,
    url: String,
    dm_url: String,
    fingerprint: String,
    #[server(default)] auto_accept: String,
) -> Result<(), AppError> {
    let form = PeerForm {
        server_id,
        url,
        dm_url,
        fingerprint,
        auto_accept,
    };
    super::with_backend(|b, req| async move { b.peer_add(&req, form).await }).await
}

#[server(endpoint = "peers/update")]
pub async fn update_peer(
    server_id: String,
    url: String,
    dm_url: String,
    fingerprint: String,
    #[server(default)] auto_accept: String,
) -> Result<(), AppError> {
    let form = PeerForm {
        server_id,
        url,
        dm_url,
        fingerprint,
        auto_accept,
    };
    super::with_backend(|b, req| async move { b.peer_update(&req, form).await }).await
}

#[server(endpoint = "peers/remove")]
pub async fn remove_peer(server_id: String) -> Result<(), AppError> {
    super::with_backend(|b, req| async move { b.peer_remove(&req, server_id).await }).await
}

#[server(endpoint = "peers/test")]
pub async fn test_peer(server_id: String) -> Result<ConnectionReport, AppError> {
    super::with_backend(|b, req| async move { b.peer_test(&req, server_id).await }).await
}

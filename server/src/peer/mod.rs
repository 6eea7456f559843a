//! The peer interface (PROTOCOL B.1, B.3): this server's identity, the
//! configured peers and their pins, the mutually authenticated TLS listener
//! that hands each delegation document to a [`PeerInbox`], and the client
//! that posts documents to a peer.

pub mod client;
pub mod endpoint;
pub mod identity;
pub mod pin;

pub use client::{ConnectionTest, PeerClient, TransportError};
pub use endpoint::{Bytes, Endpoint, PeerInbox, Unavailable, VerifiedPeer, MEDIA_TYPE};
pub use identity::Identity;
pub use pin::{Fingerprint, Pins};

use handover_dm::types::ServerId;

/// The path every peer serves (B.1).
pub const ENDPOINT_PATH: &str = "/dm-delegation";

/// A peer URL (B.1): https, no query, fragment, user name or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl(String);

impl PeerUrl {
    pub fn parse(s: &str) -> Result<PeerUrl, String> {
        let url = url::Url::parse(s).map_err(|e| format!("peer URL {s:?}: {e}"))?;
        if url.scheme() != "https" {
            return Err(format!("peer URL {s:?}: must start with https://"));
        }
        if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("peer URL {s:?}: needs a host and no user name"));
        }
        if url.query().is_some() || url.fragment().is_some() || s.contains(['?', '#']) {
            return Err(format!("peer URL {s:?}: may have no query or fragment"));
        }
        if s.ends_with('/') {
            return Err(format!("peer URL {s:?}: may not end with /"));
        }
        Ok(PeerUrl(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where documents are posted: the URL followed by `/dm-delegation`.
    pub fn endpoint(&self) -> String {
        format!("{}{ENDPOINT_PATH}", self.0)
    }
}

/// Where devices reach a peer's DM endpoint: an absolute http or https URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmUrl(String);

impl DmUrl {
    pub fn parse(s: &str) -> Result<DmUrl, String> {
        let url = url::Url::parse(s).map_err(|e| format!("DM URL {s:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("DM URL {s:?}: must be an http or https URL"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("DM URL {s:?}: may not contain spaces"));
        }
        Ok(DmUrl(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A configured peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub server_id: ServerId,
    pub url: PeerUrl,
    pub dm_url: DmUrl,
    pub fingerprint: Fingerprint,
    /// The auto-accept policy as JSON text, if any.
    pub auto_accept: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL B.1: https, without query, fragment or trailing `/`.
    #[test]
    fn peer_urls() {
        assert_eq!(
            PeerUrl::parse("https://carrier.example:8443")
                .unwrap()
                .endpoint(),
            "https://carrier.example:8443/dm-delegation"
        );
        assert!(PeerUrl::parse("https://carrier.example/dm/peer").is_ok());
        for bad in [
            "http://carrier.example",
            "https://carrier.example/",
            "https://carrier.example?x=1",
            "https://carrier.example#top",
            "https://user@carrier.example",
            "carrier.example",
        ] {
            assert!(PeerUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(DmUrl::parse("http://127.0.0.1:8080/dm").is_ok());
        assert!(DmUrl::parse("ftp://x").is_err());
    }
}

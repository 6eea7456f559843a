//! The Peers page's server side (PROTOCOL B.1): our identity for peers'
//! administrators, the configured peers, and their changes. Viewers and
//! admins read; only admins change or test. Every change is audited and
//! reloads the peer listener's pins, so it counts from the next handshake.

use super::auth::internal;
use super::Portal;
use crate::audit::{Event, NewEntry};
use crate::engine::policy::AutoAccept;
use crate::peer::{DmUrl, Fingerprint, Peer, PeerUrl};
use crate::store::peers::{self, PeerError};
use handover_app::api::peers::{ConnectionReport, PeerForm, PeerRow, PeersPage, ThisServer};
use handover_app::api::{AppError, Role};
use handover_dm::types::ServerId;
use http::request::Parts;

/// Longest auto-accept policy text taken.
const MAX_POLICY: usize = 8 * 1024;

/// The policy in a few words: name, then what it limits.
pub fn policy_summary(p: &AutoAccept) -> String {
    let any = |list: &[String], what: &str| {
        if list.is_empty() {
            format!("any {what}")
        } else {
            list.join(" or ")
        }
    };
    let mut parts = vec![
        any(&p.roles, "role"),
        any(&p.types, "type"),
        any(&p.terms, "term"),
    ];
    if !p.subtrees.is_empty() {
        parts.push(format!("within {}", p.subtrees.join(", ")));
    }
    if let Some(days) = p.max_days {
        parts.push(format!("at most {days} days"));
    }
    format!("{}: {}", p.name, parts.join(" · "))
}

fn row(p: Peer) -> PeerRow {
    let policy_summary = p
        .auto_accept
        .as_deref()
        .map(|json| match AutoAccept::parse(json) {
            Ok(policy) => policy_summary(&policy),
            Err(e) => format!("unreadable policy: {e}"),
        });
    PeerRow {
        server_id: p.server_id.into_string(),
        url: p.url.as_str().to_owned(),
        dm_url: p.dm_url.as_str().to_owned(),
        fingerprint: p.fingerprint.as_str().to_owned(),
        auto_accept: p.auto_accept,
        policy_summary,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

/// Reads the form into a peer, naming the first field that is wrong.
fn parse_form(own_server_id: &str, f: &PeerForm) -> Result<Peer, AppError> {
    let server_id = f.server_id.trim();
    if server_id == own_server_id {
        return Err(AppError::invalid(
            "server_id",
            "that is this server's own ServerID",
        ));
    }
    let server_id = ServerId::parse_strict(server_id)
        .map_err(|e| AppError::invalid("server_id", e.to_string()))?;
    let url = PeerUrl::parse(f.url.trim()).map_err(|e| AppError::invalid("url", e))?;
    let dm_url = DmUrl::parse(f.dm_url.trim()).map_err(|e| AppError::invalid("dm_url", e))?;
    let fingerprint =
        Fingerprint::parse(&f.fingerprint).map_err(|e| AppError::invalid("fingerprint", e))?;
    let policy = f.auto_accept.trim();
    let auto_accept = if policy.is_empty() {
        None
    } else if policy.len() > MAX_POLICY {
        return Err(AppError::invalid("auto_accept", "at most 8 KiB"));
    } else {
        AutoAccept::parse(policy).map_err(|e| AppError::invalid("auto_accept", e))?;
        Some(policy.to_owned())
    };
    Ok(Peer {
        server_id,
        url,
        dm_url,
        fingerprint,
        auto_accept,
        created_at: 0,
        updated_at: 0,
    })
}

fn peer_error(e: PeerError) -> AppError {
    match e {
        PeerError::Exists(id) => AppError::invalid(
            "server_id",
            format!("a peer with ServerID {id} is already configured"),
        ),
        PeerError::FingerprintInUse => AppError::invalid(
            "fingerprint",
            "this fingerprint is already pinned for another peer",
        ),
        PeerError::NotFound(id) => AppError::NotFound(format!("Peer {id}")),
        PeerError::Db(e) => internal(e),
    }
}

impl Portal {
    /// The listener checks the pins before every handshake; reloading here
    /// as well makes the change count even if nothing connects meanwhile.
    async fn reload_pins(&self) -> Result<(), AppError> {
        self.peering.pins.reload().await.map_err(internal)
    }

    pub(super) async fn peers_overview_of(&self, req: &Parts) -> Result<PeersPage, AppError> {
        let reader = self.peer_reader(req, "see peers").await?;
        let list = peers::list(&self.db).await.map_err(internal)?;
        let p = &self.peering;
        let unspecified = ["0.0.0.0", "[::]"];
        let note = unspecified
            .iter()
            .any(|u| p.peer_url.contains(u) || p.dm_url.contains(u))
            .then(|| {
                "These URLs name every address of this host: give peers its name instead.".into()
            });
        Ok(PeersPage {
            this: ThisServer {
                server_id: p.identity.server_id().to_owned(),
                peer_url: p.peer_url.clone(),
                dm_url: p.dm_url.clone(),
                fingerprint: p.identity.fingerprint().as_str().to_owned(),
                note,
            },
            peers: list.into_iter().map(row).collect(),
            can_edit: reader.caller().has(Role::Admin),
        })
    }

    pub(super) async fn add_peer(&self, req: &Parts, form: PeerForm) -> Result<(), AppError> {
        let admin = self.admin(req, "add peers").await?;
        let peer = parse_form(&self.server_id, &form)?;
        let peer = peers::add(&self.db, &peer).await.map_err(peer_error)?;
        self.reload_pins().await?;
        let c = admin.caller();
        self.audit(
            NewEntry::new(Event::PeerAdded, &c.name, peer.server_id.as_str())
                .source(&c.source)
                .details(serde_json::json!({
                    "url": peer.url.as_str(),
                    "dm_url": peer.dm_url.as_str(),
                    "fingerprint": peer.fingerprint.as_str(),
                    "auto_accept": peer.auto_accept,
                })),
        )
        .await
    }

    pub(super) async fn update_peer(&self, req: &Parts, form: PeerForm) -> Result<(), AppError> {
        let admin = self.admin(req, "change peers").await?;
        let before = peers::get(&self.db, form.server_id.trim())
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound(format!("Peer {}", form.server_id.trim())))?;
        let peer = parse_form(&self.server_id, &form)?;
        let peer = peers::update(&self.db, &peer).await.map_err(peer_error)?;
        self.reload_pins().await?;
        let c = admin.caller();
        self.audit(
            NewEntry::new(Event::PeerUpdated, &c.name, peer.server_id.as_str())
                .source(&c.source)
                .details(serde_json::json!({
                    "url": [before.url.as_str(), peer.url.as_str()],
                    "dm_url": [before.dm_url.as_str(), peer.dm_url.as_str()],
                    "fingerprint": [before.fingerprint.as_str(), peer.fingerprint.as_str()],
                    "auto_accept": [before.auto_accept, peer.auto_accept],
                })),
        )
        .await
    }

    pub(super) async fn remove_peer(&self, req: &Parts, server_id: String) -> Result<(), AppError> {
        let admin = self.admin(req, "remove peers").await?;
        let server_id = server_id.trim();
        let Some(before) = peers::get(&self.db, server_id).await.map_err(internal)? else {
            return Err(AppError::NotFound(format!("Peer {server_id}")));
        };
        if !peers::remove(&self.db, server_id).await.map_err(internal)? {
            return Err(AppError::NotFound(format!("Peer {server_id}")));
        }
        self.reload_pins().await?;
        let c = admin.caller();
        self.audit(
            NewEntry::new(Event::PeerRemoved, &c.name, server_id)
                .source(&c.source)
                .details(serde_json::json!({
                    "url": before.url.as_str(),
                    "fingerprint": before.fingerprint.as_str(),
                })),
        )
        .await
    }

    pub(super) async fn test_peer(
        &self,
        req: &Parts,
        server_id: String,
    ) -> Result<ConnectionReport, AppError> {
        self.admin(req, "test peer connections").await?;
        let server_id = server_id.trim();
        let peer = peers::get(&self.db, server_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound(format!("Peer {server_id}")))?;
        let result = self.peering.client.test_connection(&peer).await;
        tracing::info!(peer = server_id, result = %result.describe(), "peer connection test");
        Ok(ConnectionReport {
            server_id: server_id.to_owned(),
            ok: result.is_ok(),
            message: result.describe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> PeerForm {
        PeerForm {
            server_id: "carrier.example".into(),
            url: "https://carrier.example:8443".into(),
            dm_url: "https://carrier.example/dm".into(),
            fingerprint: "AB".repeat(32),
            auto_accept: String::new(),
        }
    }

    fn field(r: Result<Peer, AppError>) -> String {
        match r {
            Err(AppError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn the_form_names_the_wrong_field() {
        let p = parse_form("corp.example", &form()).unwrap();
        assert_eq!(p.fingerprint.as_str(), "ab".repeat(32));
        assert_eq!(p.auto_accept, None);
        let with = |f: fn(&mut PeerForm)| {
            let mut x = form();
            f(&mut x);
            field(parse_form("corp.example", &x))
        };
        assert_eq!(with(|f| f.server_id = "corp.example".into()), "server_id");
        assert_eq!(with(|f| f.server_id = "a b".into()), "server_id");
        assert_eq!(with(|f| f.url = "http://carrier.example".into()), "url");
        assert_eq!(with(|f| f.dm_url = "carrier".into()), "dm_url");
        assert_eq!(with(|f| f.fingerprint = "abc".into()), "fingerprint");
        assert_eq!(with(|f| f.auto_accept = "{".into()), "auto_accept");
        assert_eq!(
            with(|f| f.auto_accept = r#"{"name":"x","types":["most"]}"#.into()),
            "auto_accept"
        );
    }

    #[test]
    fn policies_read_in_a_few_words() {
        let p = AutoAccept::parse(
            r#"{"name":"corp-apps","roles":["delegated"],"types":["partial"],"subtrees":["./Vendor/Corp"],"max_days":30}"#,
        )
        .unwrap();
        assert_eq!(
            policy_summary(&p),
            "corp-apps: delegated · partial · any term · within ./Vendor/Corp · at most 30 days"
        );
    }
}

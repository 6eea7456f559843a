//! Who is calling, and what they may do.
//!
//! A handler that needs a role takes a guard ([`Admin`], [`Auditor`],
//! [`Viewer`], [`PeerReader`]) that only [`Portal::require`] can make, and it makes one only
//! for a signed-in, enabled user holding that role. Everything else is denied, and every denial
//! is audited.

use super::Portal;
use crate::audit::{self, Event, NewEntry};
use crate::store::users;
use handover_app::api::{AppError, Me, Role};
use http::request::Parts;
use std::net::SocketAddr;
use tower_sessions::Session;

/// The session key holding the signed-in user's id.
pub const SESSION_USER: &str = "uid";

/// A signed-in, enabled user and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub name: String,
    pub roles: Vec<Role>,
    pub source: String,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn me(&self, server_id: &str) -> Me {
        Me {
            name: self.name.clone(),
            roles: self.roles.clone(),
            server_id: server_id.to_owned(),
        }
    }
}

macro_rules! guard {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(Caller);

        impl $name {
            pub const ROLE: Role = $role;

            pub fn caller(&self) -> &Caller {
                &self.0
            }
        }
    };
}

guard!(
    /// Proof that the caller is an administrator.
    Admin,
    Role::Admin
);
guard!(
    /// Proof that the caller may see devices, delegations and peers.
    Viewer,
    Role::Viewer
);
guard!(
    /// Proof that the caller is an auditor.
    Auditor,
    Role::Auditor
);
guard!(
    /// Proof that the caller may request delegations.
    Operator,
    Role::Operator
);
guard!(
    /// Proof that the caller may approve or reject requests.
    Approver,
    Role::Approver
);

/// Proof that the caller may see the peers: a viewer, or an administrator
/// (who manages them).
#[derive(Debug, Clone)]
pub struct PeerReader(Caller);

impl PeerReader {
    pub fn caller(&self) -> &Caller {
        &self.0
    }
}

/// The request's source address, as the listener saw it.
pub fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

pub fn session_of(parts: &Parts) -> Result<Session, AppError> {
    parts.extensions.get::<Session>().cloned().ok_or_else(|| {
        tracing::error!("request without a session layer");
        AppError::Internal
    })
}

impl Portal {
    /// The signed-in caller, or `Unauthenticated`. A user disabled since
    /// signing in is signed out here.
    pub async fn caller(&self, parts: &Parts) -> Result<Caller, AppError> {
        let session = session_of(parts)?;
        let uid: Option<i64> = session.get(SESSION_USER).await.map_err(internal)?;
        let Some(uid) = uid else {
            return Err(AppError::Unauthenticated);
        };
        match users::by_id(&self.db, uid).await.map_err(internal)? {
            Some(u) if !u.disabled => Ok(Caller {
                user_id: u.id,
                name: u.name,
                roles: u.roles,
                source: source_of(parts),
            }),
            _ => {
                session.flush().await.map_err(internal)?;
                Err(AppError::Unauthenticated)
            }
        }
    }

    /// The caller, if they hold `role`; otherwise an audited 403.
    pub(super) async fn require(&self, parts: &Parts, role: Role, action: &str) -> Result<Caller, AppError> {
        self.require_any(parts, &[role], action).await
    }

    /// The caller, if they hold one of `roles`; otherwise an audited 403.
    pub(super) async fn require_any(
        &self,
        parts: &Parts,
        roles: &[Role],
        action: &str,
    ) -> Result<Caller, AppError> {
        let caller = self.caller(parts).await?;
        if roles.iter().any(|r| caller.has(*r)) {
            return Ok(caller);
        }
        let needs = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        let entry = NewEntry::new(Event::AccessDenied, &caller.name, action)
            .source(&caller.source)
            .details(serde_json::json!({ "needs": needs, "path": parts.uri.path() }));
        audit::append(&self.db, entry).await.map_err(internal)?;
        tracing::info!(user = %caller.name, action, %needs, "access denied");
        Err(AppError::Forbidden(action.to_owned()))
    }

    pub async fn admin(&self, parts: &Parts, action: &str) -> Result<Admin, AppError> {
        self.require(parts, Admin::ROLE, action).await.map(Admin)
    }

    pub async fn viewer(&self, parts: &Parts, action: &str) -> Result<Viewer, AppError> {
        self.require(parts, Viewer::ROLE, action).await.map(Viewer)
    }

    pub async fn peer_reader(&self, parts: &Parts, action: &str) -> Result<PeerReader, AppError> {
        self.require_any(parts, &[Role::Viewer, Role::Admin], action)
            .await
            .map(PeerReader)
    }

    pub async fn auditor(&self, parts: &Parts, action: &str) -> Result<Auditor, AppError> {
        self.require(parts, Auditor::ROLE, action)
            .await
            .map(Auditor)
    }

    pub async fn operator(&self, parts: &Parts, action: &str) -> Result<Operator, AppError> {
        self.require(parts, Operator::ROLE, action)
            .await
            .map(Operator)
    }

    pub async fn approver(&self, parts: &Parts, action: &str) -> Result<Approver, AppError> {
        self.require(parts, Approver::ROLE, action)
            .await
            .map(Approver)
    }
}

/// Logs an internal cause and answers with a plain 500 (STYLE lesson 4).
pub fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "internal error");
    AppError::Internal
}

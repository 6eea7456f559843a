//! Server functions by domain, and the types they exchange with the browser.
//!
//! Every server function here is a thin adapter: it finds the
//! [`crate::backend::Backend`] in the request context and hands it the
//! request's parts, so the server decides who the caller is and what they may do.

pub mod audit;
pub mod delegations;
pub mod devices;
pub mod live;
pub mod peers;
pub mod session;
pub mod users;

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A role (PRODUCT.md). A user may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s.trim())
    }

    /// What the role allows, in the words of the product.
    pub fn description(self) -> &'static str {
        match self {
            Role::Viewer => "see devices, delegations, peers",
            Role::Operator => "pick devices, request delegations, abort own requests",
            Role::Approver => "approve or reject requests (never their own), revoke",
            Role::Auditor => "read and export the audit log, verify its chain",
            Role::Admin => "users and roles, peers, server identity, settings",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in user, as the portal sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    pub roles: Vec<Role>,
    pub server_id: String,
}

impl Me {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Who sent a page request, as the server found out before rendering it:
/// put in the request's extensions, so the signed-in frame renders without
/// waiting on a resource (see `components::layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn(pub Option<Me>);

/// Every error a server function can return. The server maps each to an HTTP
/// status in one place; internal causes are logged there, never sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppError {
    /// Not signed in, or the session expired.
    Unauthenticated,
    /// Signed in, but the role needed is missing.
    Forbidden(String),
    /// The input was refused; the text says which field and why.
    Invalid {
        field: String,
        message: String,
    },
    /// Too many failed attempts; try again after this many seconds.
    Throttled {
        retry_after_secs: u64,
    },
    NotFound(String),
    Conflict(String),
    /// Something failed on the server; details are in its log.
    Internal,
    /// The request never reached the server function or could not be read.
    Transport(String),
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden(_) => 403,
            AppError::Invalid { .. } | AppError::Transport(_) => 400,
            AppError::Throttled { .. } => 429,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::Internal => 500,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Unauthenticated => f.write_str("Please sign in."),
            AppError::Forbidden(what) => write!(f, "You are not allowed to {what}."),
            AppError::Invalid { field, message } if field.is_empty() => f.write_str(message),
            AppError::Invalid { field, message } => write!(f, "{field}: {message}"),
            AppError::Throttled { retry_after_secs } => write!(
                f,
                "Too many failed attempts. Try again in {retry_after_secs} s."
            ),
            AppError::NotFound(what) => write!(f, "{what} was not found."),
            AppError::Conflict(what) => f.write_str(what),
            AppError::Internal => {
                f.write_str("Something went wrong on the server. It has been logged.")
            }
            AppError::Transport(e) => write!(f, "The request failed: {e}"),
        }
    }
}

impl std::error::Error for AppError {}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}

/// Runs `f` with the backend and the request's parts, and sets the response
/// status from the error if there is one.
#[cfg(feature = "ssr")]
pub(crate) async fn with_backend<T, F, Fut>(f: F) -> Result<T, AppError>
where
    F: FnOnce(std::sync::Arc<dyn crate::backend::Backend>, http::request::Parts) -> Fut,
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    use leptos::prelude::use_context;
    let backend =
        use_context::<std::sync::Arc<dyn crate::backend::Backend>>().ok_or(AppError::Internal)?;
    let parts = use_context::<http::request::Parts>().ok_or(AppError::Internal)?;
    // A plain form post (no JavaScript yet) is answered with a redirect back
    // to the form carrying the error; its status must stay a redirect.
    // A page (a GET, which browsers also send asking for HTML) takes the
    // error's status.
    let plain_form = parts.method == http::Method::POST
        && parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    let result = f(backend, parts).await;
    if let (Err(e), false) = (&result, plain_form) {
        if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
            opts.set_status(
                http::StatusCode::from_u16(e.status())
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            );
        }
    }
    result
}

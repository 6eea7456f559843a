//! The portal listener: Leptos pages and server functions, sessions, the
//! audit export, health and metrics.

pub mod api;
pub mod auth;
pub mod backend;
pub mod delegations_api;
pub mod devices;
pub mod live;
pub mod password;
pub mod peers;
pub mod requests;
pub mod sessions;

use crate::audit::{self, export, Event, NewEntry};
use crate::ops::{self, Metrics};
use crate::store::Db;
use axum::body::Body;
use axum::extract::{FromRef, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use handover_app::api::SignedIn;
use handover_app::backend::Backend;
use handover_app::{shell, App};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Largest request body the portal reads.
pub const MAX_BODY: usize = 64 * 1024;

/// What the portal's handlers share.
#[derive(Clone)]
pub struct Portal {
    pub db: Db,
    pub server_id: String,
    pub metrics: Arc<Metrics>,
    /// The delegation engine: requests, decisions, live events.
    pub engine: crate::engine::Engine,
    pub peering: Peering,
}

/// What the Peers page needs from the peer interface: our identity and
/// where peers reach us, the live pins of the peer listener, and a client
/// for connection tests.
#[derive(Clone)]
pub struct Peering {
    pub identity: Arc<crate::peer::Identity>,
    /// Our peer URL (B.1), as a peer's administrator would enter it.
    pub peer_url: String,
    /// Where devices reach our DM endpoint.
    pub dm_url: String,
    /// The pins the peer listener checks; reloaded after every change.
    pub pins: crate::peer::Pins,
    pub client: crate::peer::PeerClient,
}

/// Settings of the portal listener.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub leptos: LeptosOptions,
    /// Mark the session cookie `Secure` (the portal is reached over HTTPS).
    pub secure_cookie: bool,
    /// Sessions end after this long without a request.
    pub idle_timeout: time::Duration,
}

#[derive(Clone)]
struct AppState {
    portal: Portal,
    leptos: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos.clone()
    }
}

/// The whole portal as one router.
pub fn router(portal: Portal, store: sessions::Store, config: PortalConfig) -> Router {
    let routes = generate_route_list(App);
    let state = AppState {
        portal: portal.clone(),
        leptos: config.leptos.clone(),
    };
    let backend: Arc<dyn Backend> = Arc::new(portal.clone());
    let lookup = backend.clone();
    let leptos_opts = config.leptos.clone();
    let sessions = SessionManagerLayer::new(store)
        .with_name("handover_session")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(config.secure_cookie)
        .with_expiry(Expiry::OnInactivity(config.idle_timeout));
    Router::new()
        .route("/audit/export", get(audit_export))
        .route("/live/delegations/{id}", get(live::delegation_events))
        .route("/live/batches/{id}", get(live::batch_events))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(backend.clone()),
            move || shell(leptos_opts.clone()),
        )
        .route_layer(middleware::from_fn_with_state(
            portal.metrics.clone(),
            ops::count_matched,
        ))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(
            RENDER_LIMIT,
            render_again_if_stalled,
        ))
        .layer(middleware::from_fn_with_state(lookup, who_is_in))
        .layer(sessions)
        .layer(middleware::from_fn(same_origin_only))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
        .merge(ops::router(portal.db.clone(), portal.metrics.clone()))
        .layer(middleware::from_fn_with_state(
            portal.metrics.clone(),
            ops::count_requests,
        ))
}

/// Looks up who sends a page request before the page renders, for the
/// signed-in frame (`handover_app::api::SignedIn`). A failed look-up leaves
/// it unknown: the page then asks, as a browser does after navigating.
async fn who_is_in(State(backend): State<Arc<dyn Backend>>, req: Request, next: Next) -> Response {
    if !is_page(&req) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if let Ok(me) = backend.me(&parts).await {
        parts.extensions.insert(SignedIn(me));
    }
    next.run(Request::from_parts(parts, body)).await
}

/// A page request: a GET of anything but static files, server functions,
/// live streams and the audit export.
fn is_page(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == Method::GET
        && !["/pkg/", "/api/", "/live/", "/audit/export", "/favicon.ico"]
            .iter()
            .any(|p| path.starts_with(p))
}

/// How long a page may take to render before it is rendered again.
const RENDER_LIMIT: Duration = Duration::from_secs(10);

/// Renders a page again when its render has not finished in `limit`, once;
/// then answers 503. The server's renderer can, rarely and under load,
/// leave a render waiting for ever on a `<Suspense>` whose data has long
/// arrived; a fresh render does not. A page's head is sent only once the
/// page is rendered whole (`SsrMode::Async`), so nothing was sent yet.
async fn render_again_if_stalled(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    if !is_page(&req) {
        return next.run(req).await;
    }
    // A GET's body is empty: the request is made again from its head.
    let (parts, _) = req.into_parts();
    for attempt in 1..=2 {
        let again = Request::from_parts(parts.clone(), Body::empty());
        if let Ok(res) = tokio::time::timeout(limit, next.clone().run(again)).await {
            return res;
        }
        tracing::warn!(path = %parts.uri.path(), attempt, "a page's render stalled");
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The page could not be rendered; reload it.",
    )
        .into_response()
}

/// Refuses state-changing requests that a browser sent from another site
/// (CSRF): the `Origin` must name this host, and `Sec-Fetch-Site` must not be
/// cross-site. Requests without either header come from tools, not pages.
async fn same_origin_only(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_ok = match headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
        None => true,
        Some(origin) => origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/') == host)
            .unwrap_or(false),
    };
    let fetch_ok = match headers.get("sec-fetch-site").and_then(|h| h.to_str().ok()) {
        None => true,
        Some(site) => site == "same-origin" || site == "none",
    };
    if origin_ok && fetch_ok {
        next.run(req).await
    } else {
        tracing::info!(path = %req.uri().path(), "cross-origin request refused");
        (StatusCode::FORBIDDEN, "Cross-origin request refused.").into_response()
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    res
}

#[derive(Debug, serde::Deserialize)]
struct ExportQuery {
    format: Option<String>,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    delegation: String,
    #[serde(default)]
    peer: String,
}

/// `GET /audit/export?format=csv|jsonl&…` (auditor): the filtered log as a download.
async fn audit_export(
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
    req: Request,
) -> Response {
    let portal = &state.portal;
    let (parts, _) = req.into_parts();
    let auditor = match portal.auditor(&parts, "export the audit log").await {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
                e.to_string(),
            )
                .into_response()
        }
    };
    let Some(format) = export::Format::parse(q.format.as_deref().unwrap_or("csv")) else {
        return (StatusCode::BAD_REQUEST, "format must be csv or jsonl").into_response();
    };
    #[allow(clippy::result_large_err)]
    let date = |s: &str, end: bool| -> Result<Option<i64>, Response> {
        if s.is_empty() {
            return Ok(None);
        }
        handover_app::pages::audit::date_to_ms(s)
            .map(|ms| Some(if end { ms + 86_400_000 - 1 } else { ms }))
            .ok_or_else(|| (StatusCode::BAD_REQUEST, "dates are YYYY-MM-DD").into_response())
    };
    let (since, until) = match (date(&q.since, false), date(&q.until, true)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let code = if q.event.is_empty() {
        None
    } else {
        match Event::from_name(&q.event) {
            Some(e) => Some(e.code()),
            None => return (StatusCode::BAD_REQUEST, "unknown event").into_response(),
        }
    };
    let subject = match portal.delegation_subject(q.delegation.trim()).await {
        Ok(d) => d.unwrap_or(q.subject),
        Err(e) => {
            return (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.to_string(),
            )
                .into_response()
        }
    };
    let filter = audit::Filter {
        actor: q.actor,
        subject,
        code,
        since,
        until,
        before_seq: None,
        device: q.device,
        peer: q.peer,
    };
    let mut body = String::new();
    let n = match export::export(&portal.db, &filter, format, |chunk| {
        body.push_str(&chunk);
        Ok(())
    })
    .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "audit export failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "export failed").into_response();
        }
    };
    let c = auditor.caller();
    let entry = NewEntry::new(Event::AuditExported, &c.name, "audit log")
        .source(&c.source)
        .details(
            serde_json::json!({ "format": q.format.as_deref().unwrap_or("csv"), "entries": n }),
        );
    if let Err(e) = audit::append(&portal.db, entry).await {
        tracing::error!(error = %e, "cannot audit an export");
        return (StatusCode::INTERNAL_SERVER_ERROR, "export failed").into_response();
    }
    let name = match format {
        export::Format::Csv => "audit.csv",
        export::Format::Jsonl => "audit.jsonl",
    };
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// A page whose first `stalls` renders never finish.
    fn stalling_page(stalls: usize, renders: Arc<AtomicUsize>) -> Router {
        Router::new()
            .route(
                "/devices",
                get(move || {
                    let n = renders.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < stalls {
                            std::future::pending::<()>().await;
                        }
                        "rendered"
                    }
                }),
            )
            .layer(middleware::from_fn_with_state(
                Duration::from_millis(200),
                render_again_if_stalled,
            ))
    }

    async fn get_page(app: Router, uri: &str) -> (StatusCode, String) {
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_stalled_render_is_done_again() {
        let renders = Arc::new(AtomicUsize::new(0));
        let (status, body) = get_page(stalling_page(1, renders.clone()), "/devices").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "rendered"));
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_page_that_stalls_twice_is_unavailable() {
        let renders = Arc::new(AtomicUsize::new(0));
        let (status, body) = get_page(stalling_page(5, renders.clone()), "/devices").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_page_in_time_is_rendered_once() {
        let renders = Arc::new(AtomicUsize::new(0));
        let (status, _) = get_page(stalling_page(0, renders.clone()), "/devices").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }
}

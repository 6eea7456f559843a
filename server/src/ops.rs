//! Operations: `/healthz` and Prometheus `/metrics`.

use crate::store::Db;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    #[allow(clippy::type_complexity)]
    requests: Mutex<BTreeMap<(String, String, &'static str, u16), u64>>,
    sign_in_failures: AtomicU64,
}

impl Metrics {
    pub fn sign_in_failed(&self) {
        self.sign_in_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record(&self, listener: &'static str, method: &str, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((method.to_owned(), route.to_owned(), listener, status))
            .or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP handover_http_requests_total HTTP requests by listener, method, route and status.\n");
        out.push_str("# TYPE handover_http_requests_total counter\n");
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route, listener, status), n) in m.iter() {
            let _ = writeln!(
                out,
                "handover_http_requests_total{{listener=\"{listener}\",method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        out.push_str("# HELP handover_sign_in_failures_total Failed portal sign-ins.\n");
        out.push_str("# TYPE handover_sign_in_failures_total counter\n");
        let _ = writeln!(
            out,
            "handover_sign_in_failures_total {}",
            self.sign_in_failures.load(Ordering::Relaxed)
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Marks a response already counted by [`count_matched`].
#[derive(Clone, Copy)]
struct Counted;

/// Counts a request that matched a route, by its route pattern (never the
/// raw path, so the label set stays small). Installed with `route_layer`.
pub async fn count_matched(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut res = next.run(req).await;
    metrics.record("portal", &method, &route, res.status().as_u16());
    res.extensions_mut().insert(Counted);
    res
}

/// Counts what no route matched (static files, unknown paths) under two fixed labels.
pub async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_owned();
    let route = if req.uri().path().starts_with("/pkg/") {
        "/pkg/*"
    } else {
        "unmatched"
    };
    let res = next.run(req).await;
    if res.extensions().get::<Counted>().is_none() {
        metrics.record("portal", &method, route, res.status().as_u16());
    }
    res
}

pub fn router(db: Db, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz).with_state(db.clone()))
        .route("/metrics", get(render).with_state((db, metrics)))
}

async fn healthz(State(db): State<Db>) -> Response {
    if db.ping().await {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
    }
}

async fn render(State((db, metrics)): State<(Db, Arc<Metrics>)>) -> Response {
    let mut out = metrics.render();
    if let Err(e) = delegation_metrics(&db, &mut out).await {
        tracing::warn!(error = %e, "delegation metrics unavailable");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Delegations by state, and the peer documents by answer code and still
/// waiting for a retry — read from the database, so every instance sharing
/// it reports the same.
async fn delegation_metrics(db: &Db, out: &mut String) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    let rows =
        sqlx::query("SELECT state, COUNT(*) AS n FROM delegations GROUP BY state ORDER BY state")
            .fetch_all(db.pool())
            .await?;
    out.push_str("# HELP handover_delegations Delegations by state.\n");
    out.push_str("# TYPE handover_delegations gauge\n");
    for r in rows {
        let state: String = r.try_get("state")?;
        let n: i64 = r.try_get("n")?;
        let _ = writeln!(
            out,
            "handover_delegations{{state=\"{}\"}} {n}",
            escape(&state)
        );
    }
    let rows = sqlx::query(
        "SELECT code, COUNT(*) AS n FROM delegation_messages \
         WHERE direction = 'out' AND code IS NOT NULL GROUP BY code ORDER BY code",
    )
    .fetch_all(db.pool())
    .await?;
    out.push_str("# HELP handover_peer_documents_total Documents sent to peers, by the peer's answer code.\n");
    out.push_str("# TYPE handover_peer_documents_total counter\n");
    for r in rows {
        let code: i64 = r.try_get("code")?;
        let n: i64 = r.try_get("n")?;
        let _ = writeln!(out, "handover_peer_documents_total{{code=\"{code}\"}} {n}");
    }
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM delegation_messages \
         WHERE delivery = 'queued' AND attempts > 0",
    )
    .fetch_one(db.pool())
    .await?;
    let n: i64 = r.try_get("n")?;
    out.push_str("# HELP handover_peer_documents_retrying Documents a peer has not yet answered after a failed attempt.\n");
    out.push_str("# TYPE handover_peer_documents_retrying gauge\n");
    let _ = writeln!(out, "handover_peer_documents_retrying {n}");
    Ok(())
}

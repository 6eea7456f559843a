//! The HTTP push listener (PROTOCOL A.5 delivery): `POST /push/{devid}`
//! takes a package 0, checks its digest with that device's SRVCRED and
//! answers it with a session; `GET /status` reports the counters.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use handover_dm::notification::{is_notification_media_type, ParsedNotification};

use super::{Fleet, StatsSnapshot};

pub(crate) struct Listener {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    pub async fn bind(fleet: Arc<Fleet>, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/push/{devid}", post(push))
            .route("/status", get(status))
            .with_state(fleet);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "push listener failed");
            }
        });
        tracing::info!(%addr, "push listener");
        Ok(Self { addr, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn status(State(fleet): State<Arc<Fleet>>) -> Json<StatsSnapshot> {
    Json(fleet.snapshot())
}

/// A.5: parse, verify the digest with the SRVCRED of the account the
/// server identifier names, then start the session (Alert 1200) in the
/// background. 202 when accepted; 4xx (and counted) when refused.
async fn push(
    State(fleet): State<Arc<Fleet>>,
    Path(devid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let s = &fleet.stats;
    s.notifications_received.fetch_add(1, Ordering::Relaxed);
    let refuse = |code: StatusCode, why: &str| {
        s.notifications_refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(dev = %devid, why, "notification refused");
        code
    };
    let media_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_notification_media_type);
    if !media_ok {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "media type");
    }
    let Some(dev) = fleet.by_id.get(&devid).cloned() else {
        return refuse(StatusCode::NOT_FOUND, "unknown device");
    };
    let parsed = match ParsedNotification::parse(&body) {
        Ok(p) => p,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "unparsable package 0"),
    };
    let n = parsed.notification.clone();
    let check = |dev: &super::Device| {
        dev.account(&n.server_id)
            .is_some_and(|a| parsed.verify(&a.srvcred.name, &a.srvcred.secret, &a.server_nonce))
    };
    let mut verified = check(&dev);
    if !verified {
        // A session still running may be adding this very account (a new
        // DMAcc written in it, PROTOCOL B.5): like a real client, look
        // again once that session is over.
        let st = dev.state.lock().await;
        dev.refresh_accounts(&st);
        drop(st);
        verified = check(&dev);
    }
    if !verified {
        return refuse(StatusCode::UNAUTHORIZED, "digest");
    }
    let server_id = n.server_id.clone();
    tokio::spawn(async move {
        super::session::run(&fleet, &dev, &server_id, Some(n)).await;
    });
    StatusCode::ACCEPTED
}

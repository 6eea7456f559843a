//! `POST /dm`: the DM endpoint for devices (PROTOCOL A.1), XML or WBXML,
//! answered in the encoding received.

use super::session::{self, Reply};
use super::Runtime;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use handover_dm::auth::HMAC_HEADER;
use handover_dm::Encoding;
use std::net::SocketAddr;

/// The DM listener's router.
pub fn router(rt: Runtime) -> Router {
    Router::new().route("/dm", post(dm)).with_state(rt)
}

fn refuse(code: u16, why: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, format!("{why}\n")).into_response()
}

/// Reads at most `max` bytes of `body`; `None` when it is longer.
async fn read_limited(body: Body, max: usize) -> Option<Bytes> {
    axum::body::to_bytes(body, max).await.ok()
}

async fn dm(
    State(rt): State<Runtime>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(ct) else {
        return refuse(415, "send application/vnd.syncml.dm+xml or +wbxml");
    };
    let max = rt.settings.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return refuse(413, "message too large");
    }
    let Some(bytes) = read_limited(body, max).await else {
        return refuse(413, "message too large");
    };
    if Encoding::sniff(&bytes) != encoding {
        return refuse(415, "the body is not in the declared encoding");
    }
    let hmac = headers
        .get(HMAC_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Handled to the end even if the device hangs up meanwhile: its session
    // state, jobs and audit entries are committed together (the device
    // sends the message again or starts over, A.2), and no transaction or
    // notification after it is left half done by a dropped future.
    let handled = {
        let rt = rt.clone();
        tokio::spawn(async move {
            session::handle(&rt, &bytes, hmac.as_deref(), &peer.ip().to_string()).await
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the message's task failed: {e}")))
    };
    match handled {
        Ok(Reply::Message(out, out_hmac)) => {
            // Answer with the media type family the client used (DS or DM).
            let ct = if ct.to_ascii_lowercase().contains("vnd.syncml.dm") {
                encoding.content_type().to_owned()
            } else {
                ct.split(';').next().unwrap_or(ct).trim().to_owned()
            };
            let mut res = (StatusCode::OK, out).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&ct)
                    .unwrap_or(HeaderValue::from_static(encoding.content_type())),
            );
            // A.4: with an HMAC SRVCRED the server proves itself with a MAC
            // over exactly these body bytes.
            if let Some(v) = out_hmac.and_then(|h| HeaderValue::from_str(&h).ok()) {
                res.headers_mut().insert(HMAC_HEADER, v);
            }
            res
        }
        Ok(Reply::Refused(code, why)) => refuse(code, why),
        Err(e) => {
            tracing::error!(error = %e, "DM message failed");
            refuse(500, "internal error")
        }
    }
}

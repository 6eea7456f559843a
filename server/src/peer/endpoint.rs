//! The peer listener (PROTOCOL B.1, B.3): TLS 1.3 with a mandatory client
//! certificate whose key must be pinned for a configured peer — anyone else
//! is refused in the handshake, before any HTTP. It serves exactly
//! `POST /dm-delegation` with one delegation document and hands the document,
//! with the peer its certificate proved, to a [`PeerInbox`].

use super::identity::Identity;
use super::pin::{spki_of, Fingerprint, PinnedClients, Pins};
use super::ENDPOINT_PATH;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use handover_dm::types::ServerId;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use axum::body::Bytes;

/// The media type of delegation documents, requests and answers alike.
pub const MEDIA_TYPE: &str = "application/vnd.dm.delegation+xml";

/// Largest document accepted (B.9).
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How stale the pins checked per request may be (B.1): a peer removed in
/// another process stops counting within this on open connections too.
const PINS_MAX_AGE: Duration = Duration::from_secs(1);

/// The peer that sent a document, as its TLS client certificate proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    /// The ServerID configured for the pinned key.
    pub server_id: ServerId,
    /// The SubjectPublicKeyInfo of the certificate presented on this
    /// connection: "the key pinned for the peer" of B.4 and B.9.
    pub spki_der: Arc<[u8]>,
    pub fingerprint: Fingerprint,
    pub remote: SocketAddr,
}

/// What the listener hands each document to: the delegation engine.
///
/// The answer is the HTTP status and a `DelegationStatus` document whose
/// `Code` equals it (B.3); it goes back with `Content-Type` [`MEDIA_TYPE`].
/// Answer within 10 s (B.3); longer work happens after the answer.
#[async_trait::async_trait]
pub trait PeerInbox: Send + Sync + 'static {
    async fn receive(&self, from: VerifiedPeer, body: Bytes) -> (u16, Vec<u8>);
}

/// The inbox of a server whose delegation engine is not running: every
/// document is answered 503, which a peer retries later (B.3).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

#[async_trait::async_trait]
impl PeerInbox for Unavailable {
    async fn receive(&self, _from: VerifiedPeer, _body: Bytes) -> (u16, Vec<u8>) {
        (
            503,
            status_document(503, "delegation is not available on this server yet"),
        )
    }
}

/// A `DelegationStatus` without `MsgRef`, for answers given before a
/// document was read (B.3, B.9).
pub fn status_document(code: u16, text: &str) -> Vec<u8> {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    format!(
        "<DelegationStatus xmlns=\"urn:dm-delegation:1.0\"><Code>{code}</Code><Text>{escaped}</Text></DelegationStatus>"
    )
    .into_bytes()
}

/// The TLS side of the listener: our identity as server certificate, TLS
/// 1.3 only, client certificates checked against `pins`, no resumption (so
/// every connection shows its certificate to the current pins).
fn server_tls(identity: &Identity, pins: Pins) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedClients::new(pins, &provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.cert_der().clone()],
            identity.private_key().tls_key(),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The per-connection facts the handler needs.
#[derive(Clone)]
struct Connection {
    spki_der: Arc<[u8]>,
    fingerprint: Fingerprint,
    remote: SocketAddr,
}

#[derive(Clone)]
struct Shared {
    pins: Pins,
    inbox: Arc<dyn PeerInbox>,
}

/// A peer listener ready to serve.
pub struct Endpoint {
    tls: tokio_rustls::TlsAcceptor,
    pins: Pins,
    router: Router,
}

impl Endpoint {
    pub fn new(
        identity: &Identity,
        pins: Pins,
        inbox: Arc<dyn PeerInbox>,
    ) -> anyhow::Result<Endpoint> {
        let tls = server_tls(identity, pins.clone())?;
        let router = Router::new()
            .route(ENDPOINT_PATH, post(receive).fallback(method_not_allowed))
            .fallback(not_found)
            .with_state(Shared {
                pins: pins.clone(),
                inbox,
            });
        Ok(Endpoint {
            tls: tokio_rustls::TlsAcceptor::from(tls),
            pins,
            router,
        })
    }

    /// Accepts connections until `stop` turns true; open connections then
    /// finish their current request.
    pub async fn serve(self, listener: TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "peer listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => return,
            };
            let tls = self.tls.clone();
            let pins = self.pins.clone();
            let router = self.router.clone();
            let stop = stop.clone();
            tokio::spawn(connection(tls, pins, router, tcp, remote, stop));
        }
    }
}

async fn connection(
    tls: tokio_rustls::TlsAcceptor,
    pins: Pins,
    router: Router,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Peers added or removed elsewhere (portal, CLI) count from the next handshake.
    if let Err(e) = pins.reload().await {
        tracing::error!(error = %e, "peer listener: cannot read the configured peers; using the last known");
    }
    let handshake = tls.accept(tcp).into_fallible();
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err((e, tcp))) => {
            tracing::info!(%remote, error = %e, "peer listener: TLS handshake refused");
            linger(tcp).await;
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "peer listener: TLS handshake timed out");
            return;
        }
    };
    let Some(cert) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    else {
        return; // the verifier makes a certificate mandatory
    };
    let Ok(spki) = spki_of(cert) else { return };
    let conn = Connection {
        fingerprint: Fingerprint::of_spki(&spki),
        spki_der: spki.into(),
        remote,
    };
    let service = hyper_util::service::TowerToHyperService::new(router.layer(Extension(conn)));
    let http = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(http);
    tokio::select! {
        res = http.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%remote, error = %e, "peer connection ended");
            }
        }
        _ = stopped(&mut stop) => {
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
    }
}

/// Closes a refused connection gently: in TLS 1.3 the client may already be
/// sending its request when our alert leaves, and closing with unread data
/// would reset the connection and could destroy the alert before the client
/// reads it (B.1: the stranger sees the alert on its first read).
async fn linger(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = MAX_DOCUMENT;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn answer(code: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
        body,
    )
        .into_response()
}

fn refuse(code: u16, text: &str) -> Response {
    answer(code, status_document(code, text))
}

async fn not_found() -> Response {
    refuse(404, "no such endpoint: documents go to POST /dm-delegation")
}

async fn method_not_allowed() -> Response {
    let mut res = refuse(405, "documents are sent with POST");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

/// True for `application/vnd.dm.delegation+xml`, optionally with
/// `charset=utf-8` (B.1).
fn is_delegation_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(MEDIA_TYPE) {
        return false;
    }
    parts.all(|p| {
        let Some((name, value)) = p.split_once('=') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("charset")
            && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

async fn receive(
    State(shared): State<Shared>,
    Extension(conn): Extension<Connection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // B.9: the media type is checked before anything else.
    let media_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_delegation_media_type);
    if !media_ok {
        return refuse(415, &format!("the document must be sent as {MEDIA_TYPE}"));
    }
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || refuse(400, "a document is at most 64 KiB");
    if announced.is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_DOCUMENT).await else {
        return too_large();
    };
    // The pins may have changed since the handshake of this connection,
    // which a peer may keep open for its next documents.
    if let Err(e) = shared.pins.refresh(PINS_MAX_AGE).await {
        tracing::error!(error = %e, "peer listener: cannot read the configured peers; using the last known");
    }
    let Some(server_id) = shared.pins.server_id(&conn.fingerprint) else {
        return refuse(403, "this certificate is no longer pinned for any peer");
    };
    let from = VerifiedPeer {
        server_id,
        spki_der: conn.spki_der,
        fingerprint: conn.fingerprint,
        remote: conn.remote,
    };
    // Run to the end even if the peer hangs up meanwhile: a transition
    // stopped halfway would leave its transaction to the driver's rollback
    // on drop, or skip what follows its commit (waking the workers,
    // notifying the device). The peer sends the document again (idempotent
    // by MsgID, B.2) when it missed the answer.
    let inbox = shared.inbox.clone();
    match tokio::spawn(async move { inbox.receive(from, body).await }).await {
        Ok((code, body)) => answer(code, body),
        Err(e) => {
            tracing::error!(error = %e, "delegation document failed");
            refuse(500, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL B.1: one media type, a charset=utf-8 parameter allowed.
    #[test]
    fn media_types() {
        assert!(is_delegation_media_type(MEDIA_TYPE));
        assert!(is_delegation_media_type(
            "Application/VND.dm.delegation+xml; charset=UTF-8"
        ));
        assert!(is_delegation_media_type(
            "application/vnd.dm.delegation+xml;charset=\"utf-8\""
        ));
        assert!(!is_delegation_media_type("application/xml"));
        assert!(!is_delegation_media_type(
            "application/vnd.dm.delegation+xml; charset=latin1"
        ));
        assert!(!is_delegation_media_type(
            "application/vnd.dm.delegation+xml; version=2"
        ));
    }

    #[test]
    fn status_documents_escape_their_text() {
        assert_eq!(
            String::from_utf8(status_document(415, "a <b> & c")).unwrap(),
            "<DelegationStatus xmlns=\"urn:dm-delegation:1.0\"><Code>415</Code><Text>a &lt;b&gt; &amp; c</Text></DelegationStatus>"
        );
    }
}

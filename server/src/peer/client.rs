//! Posting documents to a peer (PROTOCOL B.1, B.3): TLS 1.3 with our
//! identity as client certificate, the peer's server certificate accepted by
//! its pin alone, 30 s per request.

use super::endpoint::{Bytes, MAX_DOCUMENT, MEDIA_TYPE};
use super::identity::Identity;
use super::pin::{Fingerprint, FingerprintMismatch, PinnedServer};
use super::Peer;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per request, connection included (B.3).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a document did not get an answer. Every kind is retried with the
/// identical bytes until the waiting state's deadline (B.3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer ended the handshake: it has not pinned our key (or has no
    /// such peer configured).
    #[error("the peer refused our certificate: our fingerprint is not pinned there")]
    RefusedByPeer,
    /// The peer's key is not the one pinned for it.
    #[error(transparent)]
    FingerprintMismatch(#[from] FingerprintMismatch),
    #[error("the peer did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the peer is unreachable: {0}")]
    Unreachable(String),
    /// An answer came but could not be read whole.
    #[error("the peer's answer is unreadable: {0}")]
    BadAnswer(String),
}

/// An HTTP answer of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// True when the answer claims to be a delegation document (B.3: an
    /// answer that is not a `DelegationStatus` is retried).
    pub fn is_delegation_document(&self) -> bool {
        self.content_type.as_deref().is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case(MEDIA_TYPE))
        })
    }
}

/// The result of the portal's connection test, in words an administrator
/// can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionTest {
    /// Handshake done both ways and the peer answered with a
    /// `DelegationStatus` (its HTTP status is given).
    Ok { status: u16 },
    /// The peer refused our certificate.
    RefusedByPeer,
    /// The peer's key is not the pinned one.
    FingerprintMismatch {
        expected: Fingerprint,
        presented: Fingerprint,
    },
    /// No TLS connection could be made.
    Unreachable(String),
    /// Something answered, but not a delegation endpoint.
    NotAPeerEndpoint(String),
}

impl ConnectionTest {
    pub fn is_ok(&self) -> bool {
        matches!(self, ConnectionTest::Ok { .. })
    }

    /// One sentence for the portal and the command line.
    pub fn describe(&self) -> String {
        match self {
            ConnectionTest::Ok { status } => {
                format!("ok: mutual TLS works and the peer answered (HTTP {status})")
            }
            ConnectionTest::RefusedByPeer => {
                "refused by the peer: our certificate is not pinned there; give its administrator our fingerprint".into()
            }
            ConnectionTest::FingerprintMismatch { expected, presented } => format!(
                "fingerprint mismatch: the peer presented {presented}, but {expected} is configured"
            ),
            ConnectionTest::Unreachable(why) => format!("unreachable: {why}"),
            ConnectionTest::NotAPeerEndpoint(why) => {
                format!("reached, but it is not a delegation endpoint: {why}")
            }
        }
    }
}

/// Posts documents to peers. Each connection begins with a full mutual
/// handshake (resumption is off, so every connection shows our certificate
/// to the peer's current pins) and is kept open for the next documents to
/// the same endpoint and pin, since the peer checks its pins again on every
/// request. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    identity: Arc<Identity>,
    timeout: Duration,
    connectors: Arc<Mutex<HashMap<Fingerprint, tokio_rustls::TlsConnector>>>,
    kept: Arc<Mutex<KeptByPeer>>,
}

/// Idle connections by pin and endpoint.
type KeptByPeer = HashMap<(Fingerprint, String), Vec<Kept>>;

/// Idle connections kept per peer endpoint and pin.
const KEPT_PER_PEER: usize = 256;
/// An idle connection older than this is closed rather than used.
const KEEP_IDLE: Duration = Duration::from_secs(15);

/// An open connection to a peer, verified by its handshake.
struct Kept {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    conn: AbortOnDrop<Result<(), hyper::Error>>,
    idle_since: std::time::Instant,
}

impl Kept {
    fn usable(&self) -> bool {
        self.idle_since.elapsed() < KEEP_IDLE
            && !self.sender.is_closed()
            && !self.conn.0.is_finished()
    }
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("server_id", &self.identity.server_id())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    pub fn new(identity: Arc<Identity>) -> PeerClient {
        PeerClient {
            identity,
            timeout: REQUEST_TIMEOUT,
            connectors: Arc::default(),
            kept: Arc::default(),
        }
    }

    /// Another time limit per request (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> PeerClient {
        self.timeout = timeout;
        self
    }

    /// POSTs one document to `peer`'s endpoint; any HTTP answer is `Ok`.
    ///
    /// An open connection to the same endpoint and pin is used when there
    /// is one. If it fails, or its answer is a 403 (the peer may have
    /// unpinned us since its handshake), the document goes again on a
    /// fresh connection, whose handshake then tells: documents are
    /// idempotent by MsgID (B.2).
    pub async fn post(&self, peer: &Peer, document: Bytes) -> Result<Answer, TransportError> {
        let key = (peer.fingerprint.clone(), peer.url.endpoint());
        let target = Target::parse(&key.1)?;
        tokio::time::timeout(self.timeout, async {
            while let Some(kept) = self.take_kept(&key) {
                if let Ok((answer, kept)) =
                    request(kept, &target, MEDIA_TYPE, document.clone()).await
                {
                    if answer.status != 403 {
                        self.keep(key, kept);
                        return Ok(answer);
                    }
                }
            }
            let (answer, kept) = self.on_fresh(peer, &target, MEDIA_TYPE, document).await?;
            self.keep(key, kept);
            Ok(answer)
        })
        .await
        .unwrap_or(Err(TransportError::Timeout(self.timeout)))
    }

    /// An idle connection to `key`'s endpoint and pin, if one is still open.
    fn take_kept(&self, key: &(Fingerprint, String)) -> Option<Kept> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let idle = kept.get_mut(key)?;
        while let Some(k) = idle.pop() {
            if k.usable() {
                return Some(k);
            }
        }
        None
    }

    /// Keeps a connection for the next document, if it can carry one.
    fn keep(&self, key: (Fingerprint, String), kept: Option<Kept>) {
        let Some(mut k) = kept else { return };
        k.idle_since = std::time::Instant::now();
        let mut all = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let idle = all.entry(key).or_default();
        idle.retain(Kept::usable);
        if idle.len() < KEPT_PER_PEER {
            idle.push(k);
        }
    }

    /// Connects, completes the mutual handshake and sends a request that
    /// any peer answers with a `DelegationStatus` without acting on it (a
    /// media type it refuses, B.9: 415 before anything else).
    pub async fn test_connection(&self, peer: &Peer) -> ConnectionTest {
        match self.send(peer, "text/plain", Bytes::new()).await {
            Ok(a)
                if a.is_delegation_document()
                    && a.body.windows(16).any(|w| w == b"DelegationStatus") =>
            {
                ConnectionTest::Ok { status: a.status }
            }
            Ok(a) => ConnectionTest::NotAPeerEndpoint(format!(
                "HTTP {} with {}",
                a.status,
                a.content_type.as_deref().unwrap_or("no content type")
            )),
            Err(TransportError::RefusedByPeer) => ConnectionTest::RefusedByPeer,
            Err(TransportError::FingerprintMismatch(m)) => ConnectionTest::FingerprintMismatch {
                expected: m.expected,
                presented: m.presented,
            },
            Err(TransportError::BadAnswer(why)) => ConnectionTest::NotAPeerEndpoint(why),
            Err(e @ (TransportError::Timeout(_) | TransportError::Unreachable(_))) => {
                ConnectionTest::Unreachable(e.to_string())
            }
        }
    }

    /// One request on a fresh connection, which is then closed.
    async fn send(
        &self,
        peer: &Peer,
        content_type: &str,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        let target = Target::parse(&peer.url.endpoint())?;
        tokio::time::timeout(
            self.timeout,
            self.on_fresh(peer, &target, content_type, body),
        )
        .await
        .unwrap_or(Err(TransportError::Timeout(self.timeout)))
        .map(|(answer, _)| answer)
    }

    /// One request on a new connection, returned with the answer when it
    /// can carry another.
    async fn on_fresh(
        &self,
        peer: &Peer,
        target: &Target,
        content_type: &str,
        body: Bytes,
    ) -> Result<(Answer, Option<Kept>), TransportError> {
        let connector = self.connector_for(&peer.fingerprint)?;
        let fresh = connect(connector, target).await?;
        request(fresh, target, content_type, body).await
    }

    fn connector_for(
        &self,
        pin: &Fingerprint,
    ) -> Result<tokio_rustls::TlsConnector, TransportError> {
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = connectors.get(pin) {
            return Ok(c.clone());
        }
        let connector = self
            .tls(pin)
            .map_err(|e| TransportError::Unreachable(format!("cannot set up TLS: {e:#}")))?;
        connectors.insert(pin.clone(), connector.clone());
        Ok(connector)
    }

    fn tls(&self, pin: &Fingerprint) -> anyhow::Result<tokio_rustls::TlsConnector> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedServer::new(pin.clone(), &provider));
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(
                vec![self.identity.cert_der().clone()],
                self.identity.private_key().tls_key(),
            )?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
    }
}

/// Aborts the connection task when the exchange ends, however it ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a peer's endpoint is, read from its URL.
struct Target {
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    path: String,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Target, TransportError> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| TransportError::Unreachable(format!("bad peer URL: {e}")))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let (server_name, host) = match url.host() {
            Some(url::Host::Domain(d)) => (
                ServerName::try_from(d.to_owned())
                    .map_err(|e| TransportError::Unreachable(format!("bad host name: {e}")))?,
                d.to_owned(),
            ),
            Some(url::Host::Ipv4(ip)) => {
                (ServerName::IpAddress(IpAddr::V4(ip).into()), ip.to_string())
            }
            Some(url::Host::Ipv6(ip)) => {
                (ServerName::IpAddress(IpAddr::V6(ip).into()), ip.to_string())
            }
            None => {
                return Err(TransportError::Unreachable(
                    "the peer URL has no host".into(),
                ))
            }
        };
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Target {
            server_name,
            host,
            port,
            authority,
            path: url.path().to_owned(),
        })
    }
}

/// A fresh connection: TCP, the mutual TLS handshake, HTTP/1.1.
async fn connect(
    connector: tokio_rustls::TlsConnector,
    target: &Target,
) -> Result<Kept, TransportError> {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| TransportError::Unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| classify(&e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| classify(&e))?;
    Ok(Kept {
        sender,
        conn: AbortOnDrop(tokio::spawn(conn)),
        idle_since: std::time::Instant::now(),
    })
}

/// One request on `conn`; the connection comes back with the answer when
/// it can carry another.
async fn request(
    mut conn: Kept,
    target: &Target,
    content_type: &str,
    body: Bytes,
) -> Result<(Answer, Option<Kept>), TransportError> {
    use http_body_util::BodyExt;
    let request = http::Request::post(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(body))
        .map_err(|e| TransportError::Unreachable(format!("cannot build the request: {e}")))?;
    // In TLS 1.3 a peer that refuses our certificate says so only after our
    // side of the handshake is done: the alert ends the connection task, so
    // its error explains a failed request better than the request's own.
    let failed = |e: hyper::Error, conn: AbortOnDrop<Result<(), hyper::Error>>| async move {
        let mut conn = conn;
        match tokio::time::timeout(Duration::from_secs(2), &mut conn.0).await {
            Ok(Ok(Err(conn_err))) => match find_rustls(&conn_err, 0) {
                Some(t) => t,
                None => classify(&e),
            },
            _ => classify(&e),
        }
    };
    if let Err(e) = conn.sender.ready().await {
        return Err(failed(e, conn.conn).await);
    }
    let response = match conn.sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => return Err(failed(e, conn.conn).await),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limited = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(TransportError::BadAnswer(
                match e.downcast::<hyper::Error>() {
                    Ok(h) => error_chain(&*h),
                    Err(other) => other.to_string(),
                },
            ))
        }
    };
    let answer = Answer {
        status,
        content_type,
        body,
    };
    let open = !conn.sender.is_closed();
    Ok((answer, open.then_some(conn)))
}

/// A transport error from anything that failed on the way.
fn classify(e: &(dyn std::error::Error + 'static)) -> TransportError {
    find_rustls(e, 0).unwrap_or_else(|| TransportError::Unreachable(error_chain(e)))
}

/// Looks for the TLS error in an error's causes, also inside an
/// `io::Error`, whose `source()` skips the error it wraps.
fn find_rustls(err: &(dyn std::error::Error + 'static), depth: u8) -> Option<TransportError> {
    if depth > 16 {
        return None;
    }
    if let Some(t) = from_rustls(err) {
        return Some(t);
    }
    fn plain<'a>(
        e: &'a (dyn std::error::Error + Send + Sync + 'static),
    ) -> &'a (dyn std::error::Error + 'static) {
        e
    }
    let inner = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref().map(plain));
    if let Some(t) = inner.and_then(|i| find_rustls(i, depth + 1)) {
        return Some(t);
    }
    err.source().and_then(|s| find_rustls(s, depth + 1))
}

fn from_rustls(err: &(dyn std::error::Error + 'static)) -> Option<TransportError> {
    match err.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            match other.0.downcast_ref::<FingerprintMismatch>() {
                Some(m) => Some(TransportError::FingerprintMismatch(m.clone())),
                None => Some(TransportError::Unreachable(other.to_string())),
            }
        }
        rustls::Error::AlertReceived(_) => Some(TransportError::RefusedByPeer),
        other => Some(TransportError::Unreachable(format!("TLS: {other}"))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

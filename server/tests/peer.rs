//! The peer interface over real TLS on loopback (PROTOCOL B.1): the server
//! identity, the configured peers and their pins, the mutually
//! authenticated listener and the client.

mod common;

use common::TestDb;
use handover::audit::{self, Event};
use handover::dm::types::ServerId;
use handover::peer::endpoint::{Endpoint, MEDIA_TYPE};
use handover::peer::identity::{Identity, Origin, CERT_FILE, KEY_FILE};
use handover::peer::pin::PinnedServer;
use handover::peer::{
    Bytes, ConnectionTest, DmUrl, Fingerprint, Peer, PeerClient, PeerInbox, PeerUrl, Pins,
    TransportError, VerifiedPeer,
};
use handover::store::{peers, Db};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An inbox that records what it is handed and accepts it.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<(VerifiedPeer, Bytes)>>,
}

#[async_trait::async_trait]
impl PeerInbox for Recorder {
    async fn receive(&self, from: VerifiedPeer, body: Bytes) -> (u16, Vec<u8>) {
        self.got.lock().unwrap().push((from, body));
        (
            202,
            b"<DelegationStatus xmlns=\"urn:dm-delegation:1.0\"><Code>202</Code><Text>recorded</Text></DelegationStatus>".to_vec(),
        )
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// One server's identity, kept in its own directory.
struct Server {
    _dir: tempfile::TempDir,
    identity: Arc<Identity>,
}

fn server(server_id: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = Identity::load_or_create(dir.path(), server_id).unwrap();
    Server {
        _dir: dir,
        identity: Arc::new(identity),
    }
}

/// A peer listener of `srv` on loopback that trusts `pins`.
struct Listening {
    addr: SocketAddr,
    inbox: Arc<Recorder>,
    pins: Pins,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn listen(srv: &Server, trusted: &[&Server]) -> Listening {
    let pins = Pins::fixed(trusted.iter().map(|s| {
        (
            s.identity.fingerprint().clone(),
            ServerId::parse(s.identity.server_id()).unwrap(),
        )
    }));
    let inbox = Arc::new(Recorder::default());
    let endpoint = Endpoint::new(&srv.identity, pins.clone(), inbox.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(endpoint.serve(listener, rx));
    Listening {
        addr,
        inbox,
        pins,
        _stop: stop,
    }
}

/// How `at` is configured as a peer, pinned to `pin`.
fn peer_at(server_id: &str, addr: SocketAddr, pin: &Fingerprint) -> Peer {
    Peer {
        server_id: ServerId::parse(server_id).unwrap(),
        url: PeerUrl::parse(&format!("https://{addr}")).unwrap(),
        dm_url: DmUrl::parse("http://127.0.0.1:9/dm").unwrap(),
        fingerprint: pin.clone(),
        auto_accept: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn client(srv: &Server) -> PeerClient {
    PeerClient::new(srv.identity.clone()).with_timeout(Duration::from_secs(10))
}

const DOC: &[u8] = b"<DelegationMessage xmlns=\"urn:dm-delegation:1.0\" Version=\"1.0\"/>";

// PROTOCOL B.1: one key pair and one certificate, made at first start and
// kept; a later start loads the same, byte for byte.
#[test]
fn b1_identity_is_created_once_and_reloaded_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (first, origin) = Identity::load_or_create(dir.path(), "corp.example").unwrap();
    assert_eq!(origin, Origin::Created);
    let (again, origin) = Identity::load_or_create(dir.path(), "corp.example").unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(first.cert_der(), again.cert_der());
    assert_eq!(first.spki_der(), again.spki_der());
    assert_eq!(first.fingerprint(), again.fingerprint());
    let fp = first.fingerprint().as_str();
    assert!(fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert_eq!(
        Fingerprint::of_spki(first.spki_der()),
        first.fingerprint().clone()
    );

    let key = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cert = std::fs::read_to_string(dir.path().join(CERT_FILE)).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));

    // The key is the identity: a lost certificate is issued again for it.
    std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
    let (reissued, origin) = Identity::load_or_create(dir.path(), "corp.example").unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(reissued.fingerprint(), first.fingerprint());

    // Another ServerID with the same files is refused, and nothing changes.
    let err = Identity::load_or_create(dir.path(), "other.example")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("corp.example") && err.contains("other.example"),
        "{err}"
    );
    let (still, _) = Identity::load_or_create(dir.path(), "corp.example").unwrap();
    assert_eq!(still.fingerprint(), first.fingerprint());
}

// PROTOCOL B.1: two servers pinned to each other exchange a document over
// mutual TLS, each way; the inbox learns who sent it from the certificate.
#[test]
fn b1_pinned_servers_exchange_a_document() {
    common::bounded(
        concat!(module_path!(), "::b1_pinned_servers_exchange_a_document"),
        1,
        b1_pinned_servers_exchange_a_document_body(),
    );
}

async fn b1_pinned_servers_exchange_a_document_body() {
    let a = server("a.example");
    let b = server("b.example");
    let at_a = listen(&a, &[&b]).await;
    let at_b = listen(&b, &[&a]).await;

    let answer = client(&a)
        .post(
            &peer_at("b.example", at_b.addr, b.identity.fingerprint()),
            Bytes::from_static(DOC),
        )
        .await
        .expect("a reaches b");
    assert_eq!(answer.status, 202);
    assert!(answer.is_delegation_document());
    assert!(std::str::from_utf8(&answer.body)
        .unwrap()
        .contains("<Code>202</Code>"));
    {
        let got = at_b.inbox.got.lock().unwrap();
        assert_eq!(got.len(), 1);
        let (from, body) = &got[0];
        assert_eq!(from.server_id.as_str(), "a.example");
        assert_eq!(&*from.spki_der, a.identity.spki_der());
        assert_eq!(&from.fingerprint, a.identity.fingerprint());
        assert!(from.remote.ip().is_loopback());
        assert_eq!(&body[..], DOC);
    }

    let answer = client(&b)
        .post(
            &peer_at("a.example", at_a.addr, a.identity.fingerprint()),
            Bytes::from_static(DOC),
        )
        .await
        .expect("b reaches a");
    assert_eq!(answer.status, 202);
    let got = at_a.inbox.got.lock().unwrap();
    assert_eq!(got[0].0.server_id.as_str(), "b.example");
}

// PROTOCOL B.1: a key pinned for no peer ends the handshake; no HTTP
// answer, the inbox is never called.
#[test]
fn b1_a_stranger_is_refused_in_the_handshake() {
    common::bounded(
        concat!(
            module_path!(),
            "::b1_a_stranger_is_refused_in_the_handshake"
        ),
        1,
        b1_a_stranger_is_refused_in_the_handshake_body(),
    );
}

async fn b1_a_stranger_is_refused_in_the_handshake_body() {
    let a = server("a.example");
    let b = server("b.example");
    let stranger = server("stranger.example");
    let at_b = listen(&b, &[&a]).await;
    let peer_b = peer_at("b.example", at_b.addr, b.identity.fingerprint());

    let err = client(&stranger)
        .post(&peer_b, Bytes::from_static(DOC))
        .await
        .expect_err("refused");
    assert!(matches!(err, TransportError::RefusedByPeer), "{err:?}");
    let test = client(&stranger).test_connection(&peer_b).await;
    assert_eq!(test, ConnectionTest::RefusedByPeer);
    assert!(test.describe().starts_with("refused by the peer"));
    assert_eq!(at_b.inbox.count(), 0);

    // The pinned peer still gets through.
    assert!(client(&a).test_connection(&peer_b).await.is_ok());
    assert_eq!(
        at_b.inbox.count(),
        0,
        "the connection test reaches no inbox"
    );
}

/// Connects with TLS 1.3 and no client certificate, sends a request and
/// returns what came back (bytes read, or the error).
async fn without_client_certificate(
    addr: SocketAddr,
    pin: &Fingerprint,
) -> Result<Vec<u8>, std::io::Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer::new(pin.clone(), &provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("b.example").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let req = format!(
        "POST /dm-delegation HTTP/1.1\r\nHost: b.example\r\nContent-Type: {MEDIA_TYPE}\r\nContent-Length: {}\r\n\r\n",
        DOC.len()
    );
    tls.write_all(req.as_bytes()).await?;
    tls.write_all(DOC).await?;
    tls.flush().await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .expect("the server ends the connection")?;
    Ok(out)
}

// PROTOCOL B.1: a missing client certificate ends the handshake with a fatal
// alert, seen by the client on its first read; no HTTP response is sent.
#[test]
fn b1_no_client_certificate_is_refused() {
    common::bounded(
        concat!(module_path!(), "::b1_no_client_certificate_is_refused"),
        1,
        b1_no_client_certificate_is_refused_body(),
    );
}

async fn b1_no_client_certificate_is_refused_body() {
    let a = server("a.example");
    let b = server("b.example");
    let at_b = listen(&b, &[&a]).await;
    match without_client_certificate(at_b.addr, b.identity.fingerprint()).await {
        Err(e) => {
            let alert = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned();
            assert!(
                matches!(alert, Some(rustls::Error::AlertReceived(_))),
                "a fatal alert, not {e:?}"
            );
        }
        Ok(bytes) => panic!(
            "no HTTP answer expected, got {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
    assert_eq!(at_b.inbox.count(), 0);
}

// PROTOCOL B.1: the client checks the server by its pin; another key is
// refused before anything is sent.
#[test]
fn b1_a_client_pinned_to_another_key_refuses_the_server() {
    common::bounded(
        concat!(
            module_path!(),
            "::b1_a_client_pinned_to_another_key_refuses_the_server"
        ),
        1,
        b1_a_client_pinned_to_another_key_refuses_the_server_body(),
    );
}

async fn b1_a_client_pinned_to_another_key_refuses_the_server_body() {
    let a = server("a.example");
    let b = server("b.example");
    let other = server("other.example");
    let at_b = listen(&b, &[&a]).await;
    let wrong = peer_at("b.example", at_b.addr, other.identity.fingerprint());

    let err = client(&a)
        .post(&wrong, Bytes::from_static(DOC))
        .await
        .expect_err("refused");
    match err {
        TransportError::FingerprintMismatch(m) => {
            assert_eq!(&m.expected, other.identity.fingerprint());
            assert_eq!(&m.presented, b.identity.fingerprint());
        }
        e => panic!("expected a fingerprint mismatch, got {e:?}"),
    }
    let test = client(&a).test_connection(&wrong).await;
    assert!(
        matches!(test, ConnectionTest::FingerprintMismatch { .. }),
        "{test:?}"
    );
    assert!(test.describe().starts_with("fingerprint mismatch"));
    assert_eq!(at_b.inbox.count(), 0);
}

// PROTOCOL B.1: TLS 1.3 only; a client that offers only TLS 1.2 does not
// get through the handshake, even with a pinned certificate.
#[test]
fn b1_tls_1_2_is_refused() {
    common::bounded(
        concat!(module_path!(), "::b1_tls_1_2_is_refused"),
        1,
        b1_tls_1_2_is_refused_body(),
    );
}

async fn b1_tls_1_2_is_refused_body() {
    let a = server("a.example");
    let b = server("b.example");
    let at_b = listen(&b, &[&a]).await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer::new(
            b.identity.fingerprint().clone(),
            &provider,
        )))
        .with_client_auth_cert(
            vec![a.identity.cert_der().clone()],
            a.identity.private_key().tls_key(),
        )
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(at_b.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("b.example").unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("the handshake ends");
    assert!(refused.is_err(), "TLS 1.2 must not be negotiated");
    assert_eq!(at_b.inbox.count(), 0);
}

/// A plain HTTP client with `srv`'s certificate, pinned to `pin`.
fn raw_client(srv: &Server, pin: &Fingerprint) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer::new(pin.clone(), &provider)))
        .with_client_auth_cert(
            vec![srv.identity.cert_der().clone()],
            srv.identity.private_key().tls_key(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

// PROTOCOL B.1: exactly POST /dm-delegation; other paths 404, other methods
// 405, another media type 415 (B.9: checked first), at most 64 KiB (B.9).
#[test]
fn b1_the_listener_serves_exactly_one_endpoint() {
    common::bounded(
        concat!(
            module_path!(),
            "::b1_the_listener_serves_exactly_one_endpoint"
        ),
        1,
        b1_the_listener_serves_exactly_one_endpoint_body(),
    );
}

async fn b1_the_listener_serves_exactly_one_endpoint_body() {
    let a = server("a.example");
    let b = server("b.example");
    let at_b = listen(&b, &[&a]).await;
    let http = raw_client(&a, b.identity.fingerprint());
    let base = format!("https://{}", at_b.addr);
    let code_in = |body: &str, code: u16| {
        assert!(
            body.contains("<DelegationStatus") && body.contains(&format!("<Code>{code}</Code>")),
            "{body}"
        );
    };

    let res = http
        .post(format!("{base}/elsewhere"))
        .header("Content-Type", MEDIA_TYPE)
        .body(DOC)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    code_in(&res.text().await.unwrap(), 404);

    let res = http
        .get(format!("{base}/dm-delegation"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    code_in(&res.text().await.unwrap(), 405);

    let res = http
        .post(format!("{base}/dm-delegation"))
        .header("Content-Type", "application/xml")
        .body(DOC)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(res.headers()["content-type"], MEDIA_TYPE);
    code_in(&res.text().await.unwrap(), 415);

    let res = http
        .post(format!("{base}/dm-delegation"))
        .header("Content-Type", MEDIA_TYPE)
        .body(vec![b' '; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    code_in(&res.text().await.unwrap(), 400);
    assert_eq!(at_b.inbox.count(), 0);

    let res = http
        .post(format!("{base}/dm-delegation"))
        .header("Content-Type", MEDIA_TYPE)
        .body(vec![b' '; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "exactly 64 KiB is accepted");
    assert_eq!(at_b.inbox.count(), 1);

    let res = http
        .post(format!("{base}/dm-delegation"))
        .header("Content-Type", format!("{MEDIA_TYPE}; charset=utf-8"))
        .body(DOC)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(at_b.inbox.count(), 2);
}

// PROTOCOL B.1: the pins are live — a peer added or removed counts from the
// next connection, without a restart.
#[test]
fn b1_pins_change_without_a_restart() {
    common::bounded(
        concat!(module_path!(), "::b1_pins_change_without_a_restart"),
        1,
        b1_pins_change_without_a_restart_body(),
    );
}

async fn b1_pins_change_without_a_restart_body() {
    let a = server("a.example");
    let b = server("b.example");
    let at_b = listen(&b, &[]).await;
    let peer_b = peer_at("b.example", at_b.addr, b.identity.fingerprint());
    assert_eq!(
        client(&a).test_connection(&peer_b).await,
        ConnectionTest::RefusedByPeer
    );
    at_b.pins.replace(
        [(
            a.identity.fingerprint().clone(),
            ServerId::parse("a.example").unwrap(),
        )]
        .into(),
    );
    let answer = client(&a)
        .post(&peer_b, Bytes::from_static(DOC))
        .await
        .expect("a is a peer now");
    assert_eq!(answer.status, 202);
    at_b.pins.replace(Default::default());
    let err = client(&a)
        .post(&peer_b, Bytes::from_static(DOC))
        .await
        .expect_err("a is no peer any more");
    assert!(matches!(err, TransportError::RefusedByPeer), "{err:?}");
    assert_eq!(at_b.inbox.count(), 1);
}

/// A TCP relay on loopback to `to` that counts the connections made
/// through it.
async fn counting_relay(to: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, count)
}

// PROTOCOL B.1: a connection, verified by its handshake, carries the next
// documents to the same peer; the listener checks its pins on every
// request, so a peer removed meanwhile is refused as on a fresh
// connection, and what it refuses never reaches the inbox.
#[test]
fn b1_a_kept_connection_carries_the_next_documents_while_pinned() {
    common::bounded(
        concat!(
            module_path!(),
            "::b1_a_kept_connection_carries_the_next_documents_while_pinned"
        ),
        1,
        b1_a_kept_connection_carries_the_next_documents_while_pinned_body(),
    );
}

async fn b1_a_kept_connection_carries_the_next_documents_while_pinned_body() {
    use std::sync::atomic::Ordering;
    let a = server("a.example");
    let b = server("b.example");
    let at_b = listen(&b, &[&a]).await;
    let (relay, connections) = counting_relay(at_b.addr).await;
    let peer_b = peer_at("b.example", relay, b.identity.fingerprint());
    let a_client = client(&a);
    for _ in 0..3 {
        let answer = a_client
            .post(&peer_b, Bytes::from_static(DOC))
            .await
            .expect("a reaches b");
        assert_eq!(answer.status, 202);
    }
    assert_eq!(at_b.inbox.count(), 3);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one handshake for three documents"
    );

    at_b.pins.replace(Default::default());
    let err = a_client
        .post(&peer_b, Bytes::from_static(DOC))
        .await
        .expect_err("a is no peer any more");
    assert!(matches!(err, TransportError::RefusedByPeer), "{err:?}");
    assert_eq!(at_b.inbox.count(), 3);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the kept connection's 403 is checked on a fresh handshake"
    );
}

/// Configures `a` as a peer in `db`.
async fn peer_in_the_database(db: &Db, a: &Server) {
    peers::add(
        db,
        &peer_at(
            "a.example",
            "127.0.0.1:9".parse().unwrap(),
            a.identity.fingerprint(),
        ),
    )
    .await
    .unwrap();
}

// PROTOCOL B.1 through `serve`: the peer listener pins the peers of the
// database, and one added while it runs counts at once; the delegation
// engine answers what it receives (B.9: a document without MsgType is 400).
async fn serve_pins_the_peers_of_the_database(tdb: TestDb) {
    let cfg = common::serve_config(&tdb);
    let (bound, running) = common::start(cfg).await;
    let (ours, origin) = Identity::load_or_create(tdb.dir.path(), "corp.example").unwrap();
    assert_eq!(origin, Origin::Loaded, "serve made the identity");
    let us = peer_at("corp.example", bound.peer, ours.fingerprint());
    let a = server("a.example");

    assert_eq!(
        client(&a).test_connection(&us).await,
        ConnectionTest::RefusedByPeer
    );
    let db = Db::connect(&tdb.url).await.unwrap();
    peer_in_the_database(&db, &a).await;
    assert_eq!(
        client(&a).test_connection(&us).await,
        ConnectionTest::Ok { status: 415 }
    );
    let answer = client(&a).post(&us, Bytes::from_static(DOC)).await.unwrap();
    assert_eq!(answer.status, 400);
    assert!(std::str::from_utf8(&answer.body)
        .unwrap()
        .contains("<Code>400</Code>"));

    assert!(peers::remove(&db, "a.example").await.unwrap());
    assert_eq!(
        client(&a).test_connection(&us).await,
        ConnectionTest::RefusedByPeer
    );

    let created = audit::list(
        &db,
        &audit::Filter {
            code: Some(Event::IdentityCreated.code()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].subject, "corp.example");
    running.stop().await;
}

/// Runs `handover --data-dir … admin ARGS` against the test database.
fn admin(tdb: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_handover"))
        .arg("--data-dir")
        .arg(tdb.dir.path())
        .args(["--database-url", &tdb.url, "admin"])
        .args(args)
        .env("HANDOVER_LOG", "off")
        .env("USER", "tester")
        .output()
        .expect("run handover")
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

// PROTOCOL B.1: the identity and the peers from the command line; peer
// changes are audited.
async fn cli_identity_and_peers(tdb: TestDb) {
    let shown = stdout(&admin(&tdb, &["identity", "--server-id", "corp.example"]));
    let (id, origin) = Identity::load_or_create(tdb.dir.path(), "corp.example").unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert!(shown.contains("ServerID:    corp.example"), "{shown}");
    assert!(
        shown.contains("Peer URL:    https://127.0.0.1:8443"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("Fingerprint: {}", id.fingerprint())),
        "{shown}"
    );
    // Shown again, the same.
    assert_eq!(
        stdout(&admin(&tdb, &["identity", "--server-id", "corp.example"])),
        shown
    );

    let upper = "5BF6FF07134FA8867F4D898504062708FFD96E2F7E9F7E7AB4792F91F3A10954";
    let add = |url: &str, fp: &str| {
        admin(
            &tdb,
            &[
                "peer",
                "add",
                "--server-id",
                "carrier.example",
                "--url",
                url,
                "--dm-url",
                "https://dm.carrier.example/dm",
                "--fingerprint",
                fp,
            ],
        )
    };
    for (url, fp) in [
        ("https://carrier.example:8443/", upper),
        ("http://carrier.example:8443", upper),
        ("https://carrier.example:8443?x", upper),
        ("https://carrier.example:8443", &upper[1..]),
    ] {
        assert!(!add(url, fp).status.success(), "{url} {fp} refused");
    }
    stdout(&add("https://carrier.example:8443", upper));
    assert!(
        !add("https://carrier.example:8443", upper).status.success(),
        "a ServerID is added once"
    );
    let listed = stdout(&admin(&tdb, &["peer", "list"]));
    assert_eq!(
        listed,
        format!(
            "carrier.example\thttps://carrier.example:8443\thttps://dm.carrier.example/dm\t{}\n",
            upper.to_ascii_lowercase()
        )
    );
    // One key belongs to one peer.
    let same_key = admin(
        &tdb,
        &[
            "peer",
            "add",
            "--server-id",
            "other.example",
            "--url",
            "https://other.example",
            "--dm-url",
            "https://other.example/dm",
            "--fingerprint",
            upper,
        ],
    );
    assert!(!same_key.status.success());
    let new_key = "ab".repeat(32);
    stdout(&admin(
        &tdb,
        &[
            "peer",
            "update",
            "--server-id",
            "carrier.example",
            "--fingerprint",
            &new_key,
            "--url",
            "https://peer.carrier.example",
        ],
    ));
    assert_eq!(
        stdout(&admin(&tdb, &["peer", "list"])),
        format!("carrier.example\thttps://peer.carrier.example\thttps://dm.carrier.example/dm\t{new_key}\n")
    );
    stdout(&admin(
        &tdb,
        &["peer", "remove", "--server-id", "carrier.example"],
    ));
    assert_eq!(stdout(&admin(&tdb, &["peer", "list"])), "");
    assert_eq!(
        admin(&tdb, &["peer", "remove", "--server-id", "carrier.example"])
            .status
            .code(),
        Some(1)
    );

    let db = Db::connect(&tdb.url).await.unwrap();
    let codes: Vec<i64> = audit::list(&db, &audit::Filter::default(), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.code)
        .collect();
    for e in [
        Event::IdentityCreated,
        Event::PeerAdded,
        Event::PeerUpdated,
        Event::PeerRemoved,
    ] {
        assert_eq!(
            codes.iter().filter(|c| **c == e.code()).count(),
            1,
            "{e:?} once in {codes:?}"
        );
    }
}

/// The `Fingerprint:` line of `handover admin identity`.
fn fingerprint_shown(tdb: &TestDb, server_id: &str) -> String {
    let out = stdout(&admin(tdb, &["identity", "--server-id", server_id]));
    out.lines()
        .find_map(|l| l.strip_prefix("Fingerprint: "))
        .expect("a fingerprint line")
        .to_owned()
}

// PROTOCOL B.1 end to end: two running servers, each told about the other by
// its administrator with the command line; the connection test names what
// is missing until both sides pinned each other.
async fn two_servers_pinned_by_their_administrators(corp_db: TestDb) {
    let carrier_db = common::fresh(corp_db.kind)
        .await
        .expect("a second database");
    let corp_cfg = common::serve_config(&corp_db);
    let mut carrier_cfg = common::serve_config(&carrier_db);
    carrier_cfg.server_id = "carrier.example".into();
    let (corp, corp_running) = common::start(corp_cfg).await;
    let (carrier, carrier_running) = common::start(carrier_cfg).await;
    let corp_fp = fingerprint_shown(&corp_db, "corp.example");
    let carrier_fp = fingerprint_shown(&carrier_db, "carrier.example");
    assert_ne!(corp_fp, carrier_fp);

    let add = |tdb: &TestDb, id: &str, bound: &handover::serve::Bound, fp: &str| {
        stdout(&admin(
            tdb,
            &[
                "peer",
                "add",
                "--server-id",
                id,
                "--url",
                &format!("https://{}", bound.peer),
                "--dm-url",
                &format!("http://{}/dm", bound.dm),
                "--fingerprint",
                fp,
            ],
        ));
    };
    let test_from_corp = || {
        admin(
            &corp_db,
            &[
                "peer",
                "test",
                "--server-id",
                "carrier.example",
                "--as",
                "corp.example",
            ],
        )
    };

    add(&corp_db, "carrier.example", &carrier, &carrier_fp);
    let out = test_from_corp();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("refused by the peer"), "{said}");

    add(&carrier_db, "corp.example", &corp, &corp_fp);
    let said = stdout(&test_from_corp());
    assert!(said.starts_with("ok:"), "{said}");

    // A wrong pin on our side is named as such.
    stdout(&admin(
        &corp_db,
        &[
            "peer",
            "update",
            "--server-id",
            "carrier.example",
            "--fingerprint",
            &corp_fp,
        ],
    ));
    let out = test_from_corp();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("fingerprint mismatch"), "{said}");

    corp_running.stop().await;
    carrier_running.stop().await;
}

on_both_databases! {
    serve_pins_peers => serve_pins_the_peers_of_the_database;
    cli_peers => cli_identity_and_peers;
    two_servers => two_servers_pinned_by_their_administrators;
}

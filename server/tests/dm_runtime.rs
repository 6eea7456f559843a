//! The DM endpoint over real HTTP on loopback, driven by the sans-IO DM
//! client (PROTOCOL A.1–A.5), the command queue, notifications and the
//! JSON API (issue: DM Server runtime).

mod common;

use common::{audited, create_user, serve_config, start, TestDb};
use handover::audit::Event;
use handover::device::vault::Vault;
use handover::store::{api_tokens, devices, jobs, Db};
use handover_app::api::Role;
use handover_dm::auth::{AuthType, Nonce, Secret, StoredCredential};
use handover_dm::notification::ParsedNotification;
use handover_dm::session::{ClientConfig, ClientEvent, ClientSession, EndReason};
use handover_dm::tree::{DeviceInfo, Limits, NewNode, Timestamp, Tree};
use handover_dm::{Acl, AlertCode, DevId, Encoding, ServerId, TreeUri};
use serde_json::json;

const SERVER: &str = "corp.example";
const NOW: Timestamp = Timestamp(1_800_000_000);
const NONCE_C: &str = "Y2xpZW50LW5vbmNlLTA="; // "client-nonce-0"
const NONCE_S: &str = "c2VydmVyLW5vbmNlLTA="; // "server-nonce-0"

fn uri(s: &str) -> TreeUri {
    TreeUri::parse(s).unwrap()
}

fn device_tree(devid: &str) -> Tree {
    let info = DeviceInfo {
        dev_id: DevId::parse(devid).unwrap(),
        man: "Acme".into(),
        model: "Rocket".into(),
        lang: "en-US".into(),
        dev_typ: "phone".into(),
        oem: "Acme".into(),
        fw_v: "1.0".into(),
        sw_v: "2.0".into(),
        hw_v: "3.0".into(),
    };
    let mut t = Tree::new(Limits {
        max_nodes: 10_000,
        max_value_len: 1024 * 1024,
    });
    for n in Tree::standard(&info, NOW).list(&TreeUri::root()) {
        let node = match n.value {
            _ if n.uri.is_root() => continue,
            _ if n.interior => NewNode::Interior { mime: None },
            Some(v) => NewNode::Leaf {
                value: v,
                format: n.format,
                mime: Some(n.mime),
            },
            None => continue,
        };
        t.put_local(&n.uri, node, NOW);
    }
    t.put_local(&uri("./Vendor"), NewNode::interior(), NOW);
    assert!(t.set_acl_local(
        &uri("./Vendor"),
        Acl::parse(&format!(
            "Add={SERVER}&Delete={SERVER}&Get=*&Replace={SERVER}"
        ))
        .unwrap()
    ));
    t.put_local(&uri("./Ops/Reboot"), NewNode::text(""), NOW);
    assert!(t.set_acl_local(
        &uri("./Ops/Reboot"),
        Acl::parse(&format!("Exec={SERVER}&Get=*")).unwrap()
    ));
    t
}

fn csv() -> String {
    format!(
        "{}\nIMEI:1,md5,dev1,clientpw,{NONCE_C},{SERVER},serverpw,{NONCE_S},\n\
         IMEI:2,hmac,dev2,clientpw2,{NONCE_C},{SERVER},serverpw2,{NONCE_S},sms:+4912345\n",
        devices::CSV_HEADER
    )
}

/// A device: its tree and the nonces it keeps between sessions.
struct Device {
    devid: String,
    auth: AuthType,
    secret: String,
    client_nonce: Nonce,
    server_nonce: Nonce,
    tree: Option<Tree>,
    /// Server answers that carried an `x-syncml-hmac` header (A.4).
    signed_answers: usize,
    /// SRVCRED's secret.
    server_secret: String,
    /// Refusing the server's credentials is expected (not a test failure).
    may_refuse_server: bool,
}

impl Device {
    fn new(devid: &str, auth: AuthType, secret: &str) -> Device {
        Device {
            devid: devid.into(),
            auth,
            secret: secret.into(),
            client_nonce: Nonce::from_b64(NONCE_C).unwrap(),
            server_nonce: Nonce::from_b64(NONCE_S).unwrap(),
            tree: Some(device_tree(devid)),
            signed_answers: 0,
            server_secret: if devid == "IMEI:1" {
                "serverpw"
            } else {
                "serverpw2"
            }
            .into(),
            may_refuse_server: false,
        }
    }

    fn start(&mut self, session_id: &str, encoding: Encoding) -> ClientSession {
        let name = if self.devid == "IMEI:1" {
            "dev1"
        } else {
            "dev2"
        };
        ClientSession::start(
            ClientConfig {
                server_id: ServerId::parse(SERVER).unwrap(),
                server_uri: "http://dm.corp.example/dm".into(),
                session_id: session_id.into(),
                alert: AlertCode::CLIENT_INITIATED,
                encoding,
                clcred: StoredCredential {
                    auth_type: self.auth,
                    name: name.into(),
                    secret: Secret::new(self.secret.clone()),
                },
                client_nonce: self.client_nonce.clone(),
                srvcred: StoredCredential {
                    // A.4: an HMAC device checks the server's HMAC header.
                    auth_type: devices::server_auth(self.auth),
                    name: SERVER.into(),
                    secret: Secret::new(self.server_secret.clone()),
                },
                server_nonce: self.server_nonce.clone(),
                tls: false,
                max_msg_size: None,
            },
            self.tree.take().expect("one session at a time"),
        )
    }

    /// Sends the client's messages until it stops; `stop_after` messages
    /// at most (to cut a session short). Returns the end reason if any.
    async fn run(
        &mut self,
        c: &mut ClientSession,
        url: &str,
        stop_after: usize,
    ) -> Option<EndReason> {
        let http = reqwest::Client::new();
        let mut rng = rand::rngs::OsRng;
        let mut end = None;
        for _ in 0..stop_after {
            // An ended session may still have its last message to send (the
            // 401 refusing the server's credentials, A.4); its answer is not read.
            let ended = c.has_ended();
            let Some(t) = c.poll_transmit() else { break };
            let mut req = http
                .post(url)
                .header("content-type", t.encoding.content_type())
                .body(t.bytes);
            if let Some(h) = &t.hmac {
                req = req.header("x-syncml-hmac", h);
            }
            let res = req.send().await.expect("POST");
            assert_eq!(res.status(), 200);
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            assert_eq!(
                ct,
                t.encoding.content_type(),
                "answered in the encoding received"
            );
            let hmac = res
                .headers()
                .get("x-syncml-hmac")
                .map(|v| v.to_str().unwrap().to_owned());
            self.signed_answers += usize::from(hmac.is_some());
            let body = res.bytes().await.unwrap();
            if ended {
                break;
            }
            c.handle_response(&body, hmac.as_deref(), NOW, &mut rng)
                .expect("server message");
            while let Some(e) = c.poll_event() {
                match e {
                    ClientEvent::NextNonces {
                        client_next,
                        server_next,
                    } => {
                        if let Some(n) = client_next {
                            self.client_nonce = n;
                        }
                        if let Some(n) = server_next {
                            self.server_nonce = n;
                        }
                    }
                    ClientEvent::SessionEnded { reason } => end = Some(reason),
                    ClientEvent::ServerAuthFailed { status } if !self.may_refuse_server => {
                        panic!("the server's credential was refused: {status:?}")
                    }
                    _ => {}
                }
            }
        }
        end
    }

    fn finish(&mut self, c: ClientSession) {
        self.tree = Some(c.into_tree());
    }
}

async fn import(t: &TestDb, db: &Db) {
    let vault = Vault::open(None, t.dir.path()).unwrap();
    let lines = devices::parse_csv(&csv()).unwrap();
    assert_eq!(devices::import(db, &vault, &lines).await.unwrap(), (2, 0));
    // Re-import updates.
    assert_eq!(devices::import(db, &vault, &lines).await.unwrap(), (0, 2));
    // The authority managing an imported device is the ServerID its SRVCRED
    // names: this server.
    for id in ["IMEI:1", "IMEI:2"] {
        let d = devices::get(db, id).await.unwrap().unwrap();
        assert_eq!(d.authority, SERVER, "{id}");
    }
}

async fn queue(db: &Db, devid: &str, c: serde_json::Value) -> i64 {
    let c: jobs::JobCommand = serde_json::from_value(c).unwrap();
    c.validate().unwrap();
    jobs::enqueue(db, db.pool(), devid, &c, "ana", false)
        .await
        .unwrap()
}

async fn job(db: &Db, id: i64) -> jobs::Job {
    jobs::get(db, id).await.unwrap().unwrap()
}

// PROTOCOL A.3, A.4, A.7: a challenged MD5 session runs the queue; 425 and
// a failed Atomic become failed jobs, the Atomic rolled back on the device.
// PROTOCOL A.4: a device that refuses the server's credentials runs
// nothing; its commands are sent once more at its next session (its Chal
// renewed the server nonce), and fail only when refused again.
async fn refused_server_credentials_send_again_once(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let (bound, running) = start(serve_config(&t)).await;
    let url = format!("http://{}/dm", bound.dm);
    let get = queue(&db, "IMEI:1", json!({"cmd":"Get","target":"./DevInfo/Man"})).await;

    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    d.server_secret = "not the server's secret".into();
    d.may_refuse_server = true;
    for (session, want) in [("1", "queued"), ("2", "failed")] {
        let mut c = d.start(session, Encoding::Xml);
        d.run(&mut c, &url, 50).await;
        d.finish(c);
        let j = job(&db, get).await;
        assert_eq!(j.state, want, "after session {session}: {j:?}");
        if want == "queued" {
            assert_eq!(j.error, handover::device::session::SENT_AGAIN);
            assert_eq!(j.status, None);
        } else {
            assert_eq!(j.status, Some(401));
        }
    }
    // With the right secret the next command runs.
    let again = queue(&db, "IMEI:1", json!({"cmd":"Get","target":"./DevInfo/Man"})).await;
    d.server_secret = "serverpw".into();
    d.may_refuse_server = false;
    let mut c = d.start("3", Encoding::Xml);
    d.run(&mut c, &url, 50).await;
    d.finish(c);
    assert_eq!(job(&db, again).await.state, "succeeded");
    running.stop().await;
}

async fn md5_session_runs_the_queue(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let (bound, running) = start(serve_config(&t)).await;
    let url = format!("http://{}/dm", bound.dm);

    let get = queue(&db, "IMEI:1", json!({"cmd":"Get","target":"./DevInfo/Man"})).await;
    let add = queue(
        &db,
        "IMEI:1",
        json!({"cmd":"Add","target":"./Vendor/App","data":"v1"}),
    )
    .await;
    let refused = queue(
        &db,
        "IMEI:1",
        json!({"cmd":"Replace","target":"./Ops/Reboot?prop=ACL","data":"Get=*"}),
    )
    .await;
    let atomic = queue(
        &db,
        "IMEI:1",
        json!({"cmd":"Atomic","commands":[
        {"cmd":"Add","target":"./Vendor/Tmp","data":"x"},
        {"cmd":"Replace","target":"./Ops/Reboot","data":"y"}]}),
    )
    .await;

    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    // The device's first nonce is stale: it is challenged (A.4) and retries.
    d.client_nonce = Nonce::from_chr("stale");
    let mut c = d.start("1A", Encoding::Xml);
    let end = d.run(&mut c, &url, 50).await;
    assert_eq!(end, Some(EndReason::Completed));
    let tree = c.tree();
    assert!(tree.node(&uri("./Vendor/App")).is_some());
    assert!(
        tree.node(&uri("./Vendor/Tmp")).is_none(),
        "the Atomic rolled back"
    );
    d.finish(c);

    let j = job(&db, get).await;
    assert_eq!((j.state.as_str(), j.status), ("succeeded", Some(200)));
    assert_eq!(j.results.unwrap()["items"][0]["data"], "Acme");
    assert_eq!(job(&db, add).await.state, "succeeded");
    let j = job(&db, refused).await;
    assert_eq!((j.state.as_str(), j.status), ("failed", Some(425)));
    let j = job(&db, atomic).await;
    assert_eq!(j.state, "failed");
    assert!(j.status.unwrap() >= 400, "{j:?}");

    let dev = devices::get(&db, "IMEI:1").await.unwrap().unwrap();
    assert_eq!((dev.man.as_str(), dev.model.as_str()), ("Acme", "Rocket"));
    assert!(dev.first_seen.is_some());
    let detail: serde_json::Value = serde_json::from_str(&dev.devdetail).unwrap();
    assert_eq!(detail["FwV"], "1.0", "DevDetail read on first contact");
    assert!(dev.tree.contains("./DevInfo/Man"));
    let hist = devices::sessions(&db, "IMEI:1", 5).await.unwrap();
    assert_eq!(hist[0].outcome, "completed");
    // The refused ACL Replace is audited.
    let n = audited(&db, Event::DmAclChanged).await;
    assert_eq!(n, 1);

    // A second session: nonces moved on, no more DevDetail reads.
    let mut c = d.start("1B", Encoding::Xml);
    assert_eq!(d.run(&mut c, &url, 20).await, Some(EndReason::Completed));
    d.finish(c);
    assert_eq!(devices::sessions(&db, "IMEI:1", 5).await.unwrap().len(), 2);
    // Ended sessions live on in the history only.
    assert_eq!(open_sessions(&db, "IMEI:1").await, Vec::<String>::new());
    running.stop().await;
}

/// The device's sessions whose state the server keeps, by SessionID.
async fn open_sessions(db: &Db, devid: &str) -> Vec<String> {
    sqlx::query_scalar(
        &db.sql("SELECT session_id FROM dm_sessions WHERE devid = $1 ORDER BY session_id"),
    )
    .bind(devid)
    .fetch_all(db.pool())
    .await
    .unwrap()
}

// PROTOCOL A.1, A.4: HMAC over WBXML; a wrong secret is challenged, then
// ended and audited; an unknown device looks the same.
async fn hmac_wbxml_and_bad_credentials(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let (bound, running) = start(serve_config(&t)).await;
    let url = format!("http://{}/dm", bound.dm);
    let get = queue(
        &db,
        "IMEI:2",
        json!({"cmd":"Get","target":"./DevInfo/Lang"}),
    )
    .await;
    let mut d = Device::new("IMEI:2", AuthType::Hmac, "clientpw2");
    let mut c = d.start("2", Encoding::Wbxml);
    assert_eq!(d.run(&mut c, &url, 50).await, Some(EndReason::Completed));
    assert_eq!(job(&db, get).await.state, "succeeded");
    // A.4: the server signed every answer the device answered, and the
    // device checked each MAC over the exact body (a bad one would have
    // ended the session with ServerAuthRejected).
    assert!(d.signed_answers >= 1, "{}", d.signed_answers);
    let first = d.signed_answers;
    // A second session with the nonces both sides moved on.
    d.finish(c);
    let again = queue(&db, "IMEI:2", json!({"cmd":"Get","target":"./DevInfo/Man"})).await;
    let mut c = d.start("4", Encoding::Xml);
    assert_eq!(d.run(&mut c, &url, 50).await, Some(EndReason::Completed));
    assert!(d.signed_answers > first);
    assert_eq!(job(&db, again).await.state, "succeeded");

    // Taken for the session below, which never authenticates.
    let waiting = queue(&db, "IMEI:1", json!({"cmd":"Get","target":"./DevInfo/Mod"})).await;
    for (devid, auth, secret) in [
        ("IMEI:1", AuthType::Md5, "wrong"),
        ("IMEI:9", AuthType::Md5, "x"),
    ] {
        let mut d = Device::new(devid, auth, secret);
        let mut c = d.start("3", Encoding::Xml);
        let _ = d.run(&mut c, &url, 10).await;
        assert!(c.has_ended() || c.poll_transmit().is_none());
    }
    let n = audited(&db, Event::DmAuthFailed).await;
    assert_eq!(n, 2);
    let hist = devices::sessions(&db, "IMEI:1", 5).await.unwrap();
    assert_eq!(hist[0].outcome, "auth-failed");
    // A.4: nothing was sent to a device that never authenticated; its job
    // is back in the queue for the next session.
    let j = job(&db, waiting).await;
    assert_eq!((j.state.as_str(), j.session_id.as_str()), ("queued", ""));

    // 413 before the body is read; 415 for other media types.
    // Announce 2 MiB and send none of it: the answer must come without the
    // server waiting for the body.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut conn = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let head = format!(
            "POST /dm HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/vnd.syncml.dm+xml\r\nContent-Length: {}\r\n\r\n",
            2 * 1024 * 1024
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut answer))
            .await
            .expect("answered before the body was sent")
            .unwrap();
        let status_line = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    }
    let http = reqwest::Client::new();
    let res = http
        .post(&url)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    running.stop().await;
}

// A session is cut off after the configured number of messages: the next
// one is refused with 429, the session ends aborted, and a job transmitted
// in its last answer counts as failed (it may have run; it is not sent
// twice).
async fn message_limit_ends_the_session(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let mut cfg = serve_config(&t);
    cfg.dm.max_messages = 2;
    let (bound, running) = start(cfg).await;
    let url = format!("http://{}/dm", bound.dm);
    let first = queue(
        &db,
        "IMEI:1",
        json!({"cmd":"Get","target":"./DevInfo/Lang"}),
    )
    .await;
    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    let mut c = d.start("8", Encoding::Xml);
    assert_eq!(d.run(&mut c, &url, 1).await, None);
    // Queued while the session runs: sent with the answer to message 2.
    let second = queue(&db, "IMEI:1", json!({"cmd":"Get","target":"./DevInfo/Man"})).await;
    assert_eq!(d.run(&mut c, &url, 1).await, None);
    assert_eq!(job(&db, first).await.state, "succeeded");
    assert_eq!(job(&db, second).await.state, "sent");
    let third = c.poll_transmit().expect("the device answers package 4");
    let res = reqwest::Client::new()
        .post(&url)
        .header("content-type", third.encoding.content_type())
        .body(third.bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(open_sessions(&db, "IMEI:1").await.is_empty());
    let hist = devices::sessions(&db, "IMEI:1", 1).await.unwrap();
    assert_eq!(
        (
            hist[0].session_id.as_str(),
            hist[0].outcome.as_str(),
            hist[0].messages
        ),
        ("8", "aborted", 2)
    );
    let j = job(&db, second).await;
    assert_eq!(j.state, "failed", "{}", j.error);
    assert!(j.error.contains("aborted"), "{}", j.error);
    running.stop().await;
}

// A restart between two messages of a session loses nothing, and a job is
// done exactly once; a second instance on the same database continues.
async fn restart_mid_session(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let (bound, running) = start(serve_config(&t)).await;
    let add = queue(
        &db,
        "IMEI:1",
        json!({"cmd":"Add","target":"./Vendor/Once","data":"1"}),
    )
    .await;
    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    let mut c = d.start("5", Encoding::Xml);
    // Package 1 only: the server answers with package 2 (the Add).
    assert_eq!(
        d.run(&mut c, &format!("http://{}/dm", bound.dm), 1).await,
        None
    );
    assert_eq!(job(&db, add).await.state, "sent");
    running.stop().await;

    let (bound2, running2) = start(serve_config(&t)).await;
    // A second instance on the same database too.
    let (bound3, running3) = start(serve_config(&t)).await;
    let end = d.run(&mut c, &format!("http://{}/dm", bound2.dm), 1).await;
    let end = match end {
        Some(e) => Some(e),
        None => d.run(&mut c, &format!("http://{}/dm", bound3.dm), 50).await,
    };
    assert_eq!(end, Some(EndReason::Completed));
    let j = job(&db, add).await;
    assert_eq!(j.state, "succeeded");
    assert_eq!(c.tree().value(&uri("./Vendor/Once")), Some(&b"1"[..]));
    running2.stop().await;
    running3.stop().await;
}

/// `GET url` with a bearer token, its JSON body.
async fn get_json(http: &reqwest::Client, url: String, token: &str) -> serde_json::Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST url` of a JSON body with a bearer token.
async fn post_json(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    http.post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

// PROTOCOL A.5: a job with notify pushes package 0 over HTTP; it verifies
// with the device's SRVCRED. API tokens act with their user's roles.
/// An API error: `status`, and a JSON body naming `code`.
async fn assert_refused(res: reqwest::Response, status: u16, code: &str) {
    assert_eq!(res.status(), status);
    let err: serde_json::Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], code, "{err}");
}

async fn api_and_push(t: TestDb) {
    use axum::routing::post;
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    // The push receiver.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(4);
    let app = axum::Router::new().route(
        "/push",
        post(move |h: axum::http::HeaderMap, b: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let ct = h["content-type"].to_str().unwrap().to_owned();
                tx.send((ct, b.to_vec())).await.unwrap();
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let push = format!("http://{}/push", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let vault = Vault::open(None, t.dir.path()).unwrap();
    let mut lines = devices::parse_csv(&csv()).unwrap();
    lines[0].push_address = push;
    devices::import(&db, &vault, &lines).await.unwrap();

    let (bound, running) = start(serve_config(&t)).await;
    create_user(&db, "vera", &[Role::Viewer]).await;
    create_user(&db, "otto", &[Role::Operator]).await;
    let uid = |n: &'static str| {
        let db = db.clone();
        async move {
            handover::store::users::by_name(&db, n)
                .await
                .unwrap()
                .unwrap()
                .id
        }
    };
    let viewer = api_tokens::create(&db, uid("vera").await, "ci")
        .await
        .unwrap();
    let operator = api_tokens::create(&db, uid("otto").await, "ci")
        .await
        .unwrap();
    let base = format!("http://{}/api/v1", bound.portal);
    let http = reqwest::Client::new();

    let res = http.get(format!("{base}/devices")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(format!("{base}/devices"))
        .bearer_auth("hov_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: serde_json::Value =
        get_json(&http, format!("{base}/devices?q=IMEI&per_page=1"), &viewer).await;
    assert_eq!(v["total"], 2);
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    let cmd = json!({"commands":[{"cmd":"Get","target":"./DevInfo/DmV"}],"notify":true});
    let res = post_json(
        &http,
        format!("{base}/devices/IMEI:1/commands"),
        &viewer,
        &cmd,
    )
    .await;
    assert_refused(res, 403, "forbidden").await;
    let res = post_json(
        &http,
        format!("{base}/devices/IMEI:1/commands"),
        &operator,
        &cmd,
    )
    .await;
    assert_eq!(res.status(), 202);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["notification"]["state"], "sent", "{v}");
    let id = v["jobs"][0].as_i64().unwrap();

    // Several commands in one request are queued in their order.
    let targets = ["./DevInfo/Man", "./DevInfo/Mod", "./DevInfo/Lang"];
    let several = json!({
        "commands": targets.iter().map(|t| json!({"cmd": "Get", "target": t})).collect::<Vec<_>>()
    });
    let v: serde_json::Value = post_json(
        &http,
        format!("{base}/devices/IMEI:2/commands"),
        &operator,
        &several,
    )
    .await
    .json()
    .await
    .unwrap();
    let ids: Vec<i64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{v}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Its audit entry names the operator, the jobs and the commands, and
    // keeps the chain whole.
    let entries = handover::audit::list(
        &db,
        &handover::audit::Filter {
            subject: "IMEI:2".into(),
            code: Some(handover::audit::Event::CommandQueued.code()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].actor, "otto");
    let details: serde_json::Value = serde_json::from_str(&entries[0].details).unwrap();
    assert_eq!(details["jobs"], json!(ids), "{details}");
    let logged: Vec<&str> = details["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    assert_eq!(logged, targets, "{details}");
    assert_eq!(details.to_string(), entries[0].details, "stored compact");
    assert_eq!(handover::audit::verify(&db).await.unwrap().broken, None);
    for (id, target) in ids.iter().zip(targets) {
        let j: serde_json::Value = get_json(&http, format!("{base}/jobs/{id}"), &viewer).await;
        assert_eq!(j["command"]["target"], target, "{j}");
        assert_eq!(j["state"], "queued", "{j}");
    }
    // Too many at once: refused, nothing queued.
    let flood = json!({
        "commands": vec![json!({"cmd": "Get", "target": "./DevInfo/Man"}); 1001]
    });
    let res = post_json(
        &http,
        format!("{base}/devices/IMEI:2/commands"),
        &operator,
        &flood,
    )
    .await;
    assert_refused(res, 400, "bad_request").await;
    assert_eq!(
        handover::store::jobs::for_device(&db, "IMEI:2", 2000)
            .await
            .unwrap()
            .len(),
        3
    );
    // A device that does not exist: 404, nothing queued.
    let res = post_json(
        &http,
        format!("{base}/devices/IMEI:404/commands"),
        &operator,
        &several,
    )
    .await;
    assert_refused(res, 404, "not_found").await;
    assert!(handover::store::jobs::for_device(&db, "IMEI:404", 10)
        .await
        .unwrap()
        .is_empty());

    let (ct, bytes) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ct, "application/vnd.syncml.dm.notification");
    let p = ParsedNotification::parse(&bytes).unwrap();
    assert!(p.verify(
        SERVER,
        &Secret::new("serverpw"),
        &Nonce::from_b64(NONCE_S).unwrap()
    ));
    assert!(p.notification.server_initiated);

    // The device answers the notification; the job completes.
    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    let mut c = d.start(&p.notification.session_id.to_string(), Encoding::Xml);
    assert_eq!(
        d.run(&mut c, &format!("http://{}/dm", bound.dm), 50).await,
        Some(EndReason::Completed)
    );
    let j: serde_json::Value = get_json(&http, format!("{base}/jobs/{id}"), &viewer).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    let dev: serde_json::Value = get_json(&http, format!("{base}/devices/IMEI:1"), &viewer).await;
    assert_eq!(dev["sessions"][0]["outcome"], "completed");
    assert!(!dev.to_string().contains("serverpw"));

    // A device without HTTP push goes to the gateway outbox.
    let o = handover::device::notify::notify(
        &handover::device::Runtime::new(db.clone(), vault, Default::default()),
        "IMEI:2",
        "test",
    )
    .await
    .unwrap();
    assert_eq!(
        (o.transport.as_str(), o.state.as_str()),
        ("gateway", "pending")
    );

    // A disabled user's token stops working.
    handover::store::users::set_disabled(&db, "vera", true)
        .await
        .unwrap();
    let res = http
        .get(format!("{base}/devices"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    running.stop().await;
}

// PROTOCOL A.2: a session idle for longer than the limit on the runtime's
// clock has expired: the device's next message does not continue it, and a
// command it was sent and never answered fails rather than run twice.
async fn idle_session_expires_on_the_runtime_clock(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let cfg = serve_config(&t);
    let clock = cfg.dm.clock.clone();
    let idle = std::time::Duration::from_millis(cfg.dm.idle_ms as u64);
    let (bound, running) = start(cfg).await;
    let url = format!("http://{}/dm", bound.dm);
    let add = queue(
        &db,
        "IMEI:1",
        json!({"cmd":"Add","target":"./Vendor/Late","data":"1"}),
    )
    .await;
    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    let mut c = d.start("7", Encoding::Xml);
    assert_eq!(d.run(&mut c, &url, 1).await, None);
    assert_eq!(job(&db, add).await.state, "sent");
    assert_eq!(open_sessions(&db, "IMEI:1").await, ["7"]);

    clock.advance(idle + std::time::Duration::from_secs(60));
    assert_eq!(d.run(&mut c, &url, 10).await, Some(EndReason::Aborted));
    let hist = devices::sessions(&db, "IMEI:1", 5).await.unwrap();
    assert!(
        hist.iter()
            .any(|h| h.session_id == "7" && h.outcome == "expired"),
        "{hist:?}"
    );
    let j = job(&db, add).await;
    assert_eq!(j.state, "failed", "{j:?}");
    assert_eq!(open_sessions(&db, "IMEI:1").await, Vec::<String>::new());
    running.stop().await;
}

/// A loopback port held bound but not listening, so connecting to it is
/// refused. Bound without `SO_REUSEADDR`, it cannot be taken by another
/// listener (another test's server) until the socket is dropped.
fn held_port() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(false).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// An HTTP push receiver on `addr` that hands over each package 0.
async fn push_receiver(addr: std::net::SocketAddr) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    use axum::routing::post;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let app = axum::Router::new().route(
        "/push",
        post(move |b: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                tx.send(b.to_vec()).await.unwrap();
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    rx
}

async fn outbox(db: &Db, devid: &str) -> (String, i64) {
    use sqlx::Row;
    let r =
        sqlx::query(&db.sql(
            "SELECT state, attempts FROM notification_outbox WHERE devid = $1 ORDER BY id DESC",
        ))
        .bind(devid)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (r.get("state"), r.get("attempts"))
}

// PROTOCOL A.5 delivery: an HTTP push that finds nobody listening is tried
// again with backoff from the outbox, across a restart, until the device's
// listener is up and it answers; one that never gets through is given up
// after the last try and audited.
async fn push_is_retried_with_backoff(t: TestDb) {
    use handover::device::notify::{self, Backoff};
    let db = Db::connect(&t.url).await.unwrap();
    let (late_socket, late) = held_port();
    let (_dead_socket, dead) = held_port();
    let vault = Vault::open(None, t.dir.path()).unwrap();
    let mut lines = devices::parse_csv(&csv()).unwrap();
    lines[0].push_address = format!("http://{late}/push");
    lines[1].push_address = format!("http://{dead}/push");
    devices::import(&db, &vault, &lines).await.unwrap();
    let mut cfg = serve_config(&t);
    cfg.dm.push_retry = Backoff {
        first_ms: 200,
        max_ms: 500,
        attempts: 14,
    };

    // Notified from the command line while no server runs: the first try
    // fails and the retry waits in the outbox.
    let cli = handover::device::Runtime::new(db.clone(), vault.clone(), cfg.dm.clone());
    let o = notify::notify(&cli, "IMEI:1", "test").await.unwrap();
    assert_eq!(
        (o.transport.as_str(), o.state.as_str()),
        ("http", "retrying")
    );
    assert_eq!(outbox(&db, "IMEI:1").await, ("retrying".to_owned(), 1));

    // A server tries again and fails too; then it restarts.
    let (_, running) = start(cfg.clone()).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while outbox(&db, "IMEI:1").await.1 < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("retried");
    running.stop().await;

    // The device's listener comes up; the restarted server gets through.
    drop(late_socket);
    let mut rx = push_receiver(late).await;
    let (bound, running) = start(cfg).await;
    let bytes = tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv())
        .await
        .expect("pushed after all")
        .unwrap();
    let p = ParsedNotification::parse(&bytes).unwrap();
    assert!(p.verify(
        SERVER,
        &Secret::new("serverpw"),
        &Nonce::from_b64(NONCE_S).unwrap()
    ));
    assert_eq!(p.notification.session_id.to_string(), o.session_id);
    // Recorded once the receiver's answer is in.
    let (state, tries) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let row = outbox(&db, "IMEI:1").await;
            if row.0 != "retrying" {
                return row;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("recorded");
    assert_eq!(state, "sent");
    assert!(tries >= 3, "{tries}");
    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    let mut c = d.start(&o.session_id, Encoding::Xml);
    assert_eq!(
        d.run(&mut c, &format!("http://{}/dm", bound.dm), 50).await,
        Some(EndReason::Completed)
    );

    // Nobody ever listens for IMEI:2: failed after the last try, audited.
    let o = notify::notify(&cli, "IMEI:2", "test").await.unwrap();
    assert_eq!(o.state, "retrying");
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while outbox(&db, "IMEI:2").await.0 == "retrying" {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("given up in time");
    assert_eq!(outbox(&db, "IMEI:2").await, ("failed".to_owned(), 14));
    let failed = audited(&db, Event::DeviceNotifyFailed).await;
    assert_eq!(failed, 1);
    running.stop().await;
}

// PROTOCOL A.4: new secrets sent to a device whose confirmation never came
// back (the session broke off after the Replace) are the device's once it
// authenticates with them.
async fn pending_secrets_taken_into_use(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let vault = Vault::open(None, t.dir.path()).unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    devices::set_pending_secrets(
        &db,
        &mut *tx,
        &vault,
        "IMEI:1",
        &Secret::new("clientpw-new"),
        &Secret::new("serverpw-new"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (bound, running) = start(serve_config(&t)).await;
    let url = format!("http://{}/dm", bound.dm);
    let mut d = Device::new("IMEI:1", AuthType::Md5, "clientpw-new");
    d.server_secret = "serverpw-new".into();
    let mut c = d.start("8", Encoding::Xml);
    assert_eq!(d.run(&mut c, &url, 50).await, Some(EndReason::Completed));
    let dev = devices::get(&db, "IMEI:1").await.unwrap().unwrap();
    let acc = dev.account(&vault).unwrap();
    assert_eq!(acc.client.secret.expose(), "clientpw-new");
    assert_eq!(acc.server.secret.expose(), "serverpw-new");
    assert!(dev.pending_secrets(&vault).unwrap().is_none());
    // The old secret is no longer accepted.
    d.finish(c);
    let mut old = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    old.client_nonce = d.client_nonce.clone();
    let mut c = old.start("9", Encoding::Xml);
    let _ = old.run(&mut c, &url, 10).await;
    let hist = devices::sessions(&db, "IMEI:1", 1).await.unwrap();
    assert_eq!(hist[0].outcome, "auth-failed");
    running.stop().await;
}

/// Runs a session until it ends or a message is refused; returns the first
/// status other than 200, or 200.
async fn session_status(d: &mut Device, url: &str, session_id: &str) -> u16 {
    let http = reqwest::Client::new();
    let mut c = d.start(session_id, Encoding::Xml);
    let mut status = 200;
    for _ in 0..10 {
        let ended = c.has_ended();
        let Some(t) = c.poll_transmit() else { break };
        let res = http
            .post(url)
            .header("content-type", t.encoding.content_type())
            .body(t.bytes)
            .send()
            .await
            .expect("POST");
        if res.status() != 200 {
            status = res.status().as_u16();
            break;
        }
        let body = res.bytes().await.unwrap();
        if ended {
            break;
        }
        c.handle_response(&body, None, NOW, &mut rand::rngs::OsRng)
            .expect("server message");
    }
    d.finish(c);
    status
}

// A.4 and the "repeated failures throttled and audited": past the
// free failures a device's messages are refused with 429 whatever they
// carry, each refusal audited; once the delay is over, the right secret
// gets in and clears the count.
async fn repeated_failures_are_throttled(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    import(&t, &db).await;
    let cfg = serve_config(&t);
    let clock = cfg.dm.clock.clone();
    let (bound, running) = start(cfg).await;
    let url = format!("http://{}/dm", bound.dm);
    let policy = handover::device::session::DM_POLICY;

    // Each session fails twice (A.4: challenged, then ended): one failure.
    let mut bad = Device::new("IMEI:1", AuthType::Md5, "wrong");
    let mut failed = 0;
    while session_status(&mut bad, &url, &format!("b{failed}")).await == 200 {
        failed += 1;
        assert!(failed <= policy.lock_after, "never throttled");
    }
    assert_eq!(failed, policy.free_failures + 1);
    // The right secret is refused too while the delay runs.
    let mut good = Device::new("IMEI:1", AuthType::Md5, "clientpw");
    assert_eq!(session_status(&mut good, &url, "g1").await, 429);
    let throttled = audited(&db, Event::DmAuthThrottled).await;
    assert_eq!(throttled, 2);
    let key = "dm:IMEI:1";
    let state = handover::store::throttle::get(&db, key).await.unwrap();
    assert_eq!(state.failures, failed);

    // After the longest delay the device gets in with the nonce the last
    // challenge gave it (A.4), and its failures are forgotten.
    clock.advance(std::time::Duration::from_millis(
        policy.max_delay_ms as u64 + 1000,
    ));
    let stored = devices::get(&db, "IMEI:1").await.unwrap().unwrap();
    good.client_nonce = Nonce::from_b64(&stored.client_nonce).unwrap();
    let mut c = good.start("g2", Encoding::Xml);
    assert_eq!(good.run(&mut c, &url, 10).await, Some(EndReason::Completed));
    let state = handover::store::throttle::get(&db, key).await.unwrap();
    assert_eq!(state.failures, 0);
    running.stop().await;
}

on_both_databases! {
    pending_secrets => pending_secrets_taken_into_use;
    push_retry => push_is_retried_with_backoff;
    idle_clock => idle_session_expires_on_the_runtime_clock;
    md5_queue => md5_session_runs_the_queue;
    refused_server => refused_server_credentials_send_again_once;
    hmac_wbxml_bad => hmac_wbxml_and_bad_credentials;
    restart => restart_mid_session;
    api_push => api_and_push;
    message_limit => message_limit_ends_the_session;
    throttled => repeated_failures_are_throttled;
}

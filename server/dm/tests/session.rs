//! A server session and a client session driven against each other in
//! memory (PROTOCOL A.2–A.4), and the server session fed real-client
//! captures.

use std::collections::BTreeSet;
use std::path::PathBuf;

use handover_dm::auth::{AuthType, Nonce, Secret, StoredCredential};
use handover_dm::notification::{Notification, SessionId, UiMode};
use handover_dm::session::{
    ClientConfig, ClientError, ClientEvent, ClientSession, ClientViolation, CommandKind,
    DeviceAccount, EndReason, GenericAlert, Incoming, ReceivedItem, ServerCommand, ServerEvent,
    ServerSession,
};
use handover_dm::syncml::{self, CmdRef, Command, Encoding, Message};
use handover_dm::tree::{DeviceInfo, Limits, NewNode, Timestamp, Tree};
use handover_dm::{Acl, AlertCode, DevId, ServerId, StatusCode, TreeUri};
use rand::rngs::StdRng;
use rand::SeedableRng;

const NOW: Timestamp = Timestamp(1_800_000_000);
const SERVER: &str = "corp.example";

fn uri(s: &str) -> TreeUri {
    TreeUri::parse(s).unwrap()
}

fn device_tree() -> Tree {
    let info = DeviceInfo {
        dev_id: DevId::parse("IMEI:490154203237518").unwrap(),
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
    // A vendor subtree this server manages (A.7: inherited by its children).
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

fn cred(auth_type: AuthType, name: &str, secret: &str) -> StoredCredential {
    StoredCredential {
        auth_type,
        name: name.into(),
        secret: Secret::new(secret),
    }
}

fn account(auth_type: AuthType) -> DeviceAccount {
    DeviceAccount {
        client: cred(auth_type, "dev1", "clientpw"),
        client_nonce: Nonce::from_chr("client-nonce-0"),
        server: cred(AuthType::Md5, SERVER, "serverpw"),
        server_nonce: Nonce::from_chr("server-nonce-0"),
    }
}

fn config(encoding: Encoding, auth_type: AuthType) -> ClientConfig {
    ClientConfig {
        server_id: ServerId::parse(SERVER).unwrap(),
        server_uri: "https://dm.corp.example/dm".into(),
        session_id: "1A".into(),
        alert: AlertCode::CLIENT_INITIATED,
        encoding,
        clcred: cred(auth_type, "dev1", "clientpw"),
        client_nonce: Nonce::from_chr("client-nonce-0"),
        srvcred: cred(AuthType::Md5, SERVER, "serverpw"),
        server_nonce: Nonce::from_chr("server-nonce-0"),
        tls: false,
        max_msg_size: None,
    }
}

fn job(job: u64, kind: CommandKind) -> ServerCommand {
    ServerCommand { job, kind }
}

fn get(j: u64, target: &str) -> ServerCommand {
    job(
        j,
        CommandKind::Get {
            target: target.into(),
        },
    )
}

fn replace(j: u64, target: &str, data: &[u8]) -> ServerCommand {
    job(
        j,
        CommandKind::Replace {
            target: target.into(),
            data: data.to_vec(),
            format: Some("chr".into()),
            mime: Some("text/plain".into()),
        },
    )
}

fn add_leaf(j: u64, target: &str, data: &[u8]) -> ServerCommand {
    job(
        j,
        CommandKind::Add {
            target: target.into(),
            data: Some(data.to_vec()),
            format: Some("chr".into()),
            mime: Some("text/plain".into()),
        },
    )
}

fn add_node(j: u64, target: &str) -> ServerCommand {
    job(
        j,
        CommandKind::Add {
            target: target.into(),
            data: None,
            format: Some("node".into()),
            mime: None,
        },
    )
}

/// What one driven session produced.
#[derive(Default)]
struct Run {
    server: Vec<ServerEvent>,
    client: Vec<ClientEvent>,
    /// Every message the server sent, decoded, with its size.
    server_msgs: Vec<(Message, usize)>,
    /// The `x-syncml-hmac` header of each server message (A.4).
    server_hmacs: Vec<Option<String>>,
    client_msgs: Vec<Message>,
}

impl Run {
    fn statuses(&self) -> Vec<(u64, String, StatusCode)> {
        self.server
            .iter()
            .filter_map(|e| match e {
                ServerEvent::CommandStatus { job, cmd, status } => {
                    Some((*job, cmd.clone(), *status))
                }
                _ => None,
            })
            .collect()
    }

    fn status_of(&self, j: u64) -> StatusCode {
        let all: Vec<_> = self.statuses().into_iter().filter(|s| s.0 == j).collect();
        assert_eq!(all.len(), 1, "job {j}: {all:?}");
        all[0].2
    }

    fn results_of(&self, j: u64) -> Vec<u8> {
        self.server
            .iter()
            .find_map(|e| match e {
                ServerEvent::CommandResults { job, items } if *job == j => {
                    Some(items[0].data.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no results for job {j}"))
    }

    fn server_ended(&self) -> Option<EndReason> {
        self.server.iter().find_map(|e| match e {
            ServerEvent::SessionEnded { reason } => Some(*reason),
            _ => None,
        })
    }

    fn client_ended(&self) -> Option<EndReason> {
        self.client.iter().find_map(|e| match e {
            ClientEvent::SessionEnded { reason } => Some(*reason),
            _ => None,
        })
    }
}

/// PROTOCOL A.2 rules every message must keep: MsgID from 1 by 1, CmdIDs
/// unique and not 0, the SyncHdr Status first with MsgRef, MsgRef on every
/// Status.
fn check_rules(msgs: &[&Message]) {
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.hdr.msg_id.get() as usize, i + 1, "MsgID");
        let mut ids = BTreeSet::new();
        fn walk(cs: &[Command], ids: &mut BTreeSet<u32>) {
            for c in cs {
                assert!(ids.insert(c.cmd_id().get()), "duplicate CmdID");
                if let Command::Atomic(k) | Command::Sequence(k) = c {
                    walk(&k.commands, ids);
                }
                if let Command::Status(s) = c {
                    assert!(s.msg_ref.is_some(), "Status without MsgRef");
                }
            }
        }
        walk(&m.body, &mut ids);
        match m.body.first() {
            Some(Command::Status(s)) => {
                assert_eq!(s.cmd_ref, CmdRef::SyncHdr);
                assert_eq!(s.cmd, "SyncHdr");
            }
            // Package 1 and an abort start with an Alert.
            Some(Command::Alert(_)) => {}
            other => panic!("message starts with {other:?}"),
        }
    }
}

/// Drives the two sessions until neither has anything to send (a bounded
/// number of round trips). `tamper(from_server, msg)` may change a message
/// before the other side reads it; it returns true when it did. With the serde feature, the server session is stored
/// and restored between messages, as the runtime does.
fn drive_with(
    client: &mut ClientSession,
    server: &mut ServerSession,
    account: &DeviceAccount,
    tamper: &mut dyn FnMut(bool, &mut Message) -> bool,
) -> Run {
    let mut rng = StdRng::seed_from_u64(42);
    let mut run = Run::default();
    for _ in 0..400 {
        let Some(t) = client.poll_transmit() else {
            break;
        };
        let mut bytes = t.bytes;
        let mut m = syncml::decode(&bytes).unwrap();
        if tamper(false, &mut m) {
            bytes = syncml::encode(t.encoding, &m);
        }
        run.client_msgs.push(m);
        if server.has_ended() {
            break;
        }
        server
            .handle_message(
                Incoming {
                    bytes: &bytes,
                    hmac: t.hmac.as_deref(),
                    tls: false,
                },
                account,
                &mut rng,
            )
            .unwrap();
        while let Some(e) = server.poll_event() {
            run.server.push(e);
        }
        let reply = server.poll_transmit();
        assert!(server.poll_transmit().is_none(), "one reply per message");
        persist(server);
        let Some(reply) = reply else { break };
        assert_eq!(
            reply.encoding,
            Encoding::sniff(&bytes),
            "A.1: same encoding"
        );
        let mut decoded = syncml::decode(&reply.bytes).unwrap();
        let mut reply_bytes = reply.bytes;
        if tamper(true, &mut decoded) {
            reply_bytes = syncml::encode(reply.encoding, &decoded);
        }
        run.server_msgs.push((decoded, reply_bytes.len()));
        run.server_hmacs.push(reply.hmac.clone());
        if client.has_ended() {
            continue;
        }
        client
            .handle_response(&reply_bytes, reply.hmac.as_deref(), NOW, &mut rng)
            .unwrap();
        while let Some(e) = client.poll_event() {
            run.client.push(e);
        }
    }
    assert!(client.poll_transmit().is_none(), "round trips exhausted");
    check_rules(&run.server_msgs.iter().map(|(m, _)| m).collect::<Vec<_>>());
    check_rules(&run.client_msgs.iter().collect::<Vec<_>>());
    run
}

fn drive(client: &mut ClientSession, server: &mut ServerSession, account: &DeviceAccount) -> Run {
    drive_with(client, server, account, &mut |_, _| false)
}

#[cfg(feature = "serde")]
fn persist(server: &mut ServerSession) {
    let json = serde_json::to_string(server).unwrap();
    assert!(!json.contains("clientpw") && !json.contains("serverpw"));
    *server = serde_json::from_str(&json).unwrap();
}

#[cfg(not(feature = "serde"))]
fn persist(_: &mut ServerSession) {}

fn session(
    encoding: Encoding,
    auth_type: AuthType,
    commands: Vec<ServerCommand>,
) -> (ClientSession, ServerSession, DeviceAccount) {
    let client = ClientSession::start(config(encoding, auth_type), device_tree());
    let mut server = ServerSession::new();
    for c in commands {
        server.push_command(c);
    }
    (client, server, account(auth_type))
}

const BOTH: [Encoding; 2] = [Encoding::Xml, Encoding::Wbxml];

// PROTOCOL A.3, A.6: enrollment: package 1's DevInfo, then Gets of DevDetail; A.2 end.
#[test]
fn enrollment_reads_devinfo_and_devdetail() {
    for enc in BOTH {
        let (mut c, mut s, acct) = session(
            enc,
            AuthType::Md5,
            vec![
                get(1, "./DevDetail/FwV"),
                get(2, "./DevDetail"),
                get(3, "./DevDetail/URI"),
            ],
        );
        let run = drive(&mut c, &mut s, &acct);
        assert_eq!(run.server[0], ServerEvent::Authenticated);
        let devinfo = run
            .server
            .iter()
            .find_map(|e| match e {
                ServerEvent::DevInfo(d) => Some(d.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(devinfo.dev_id.as_deref(), Some("IMEI:490154203237518"));
        assert_eq!(devinfo.man.as_deref(), Some("Acme"));
        assert_eq!(devinfo.model.as_deref(), Some("Rocket"));
        assert_eq!(devinfo.dmv.as_deref(), Some("1.2"));
        assert_eq!(devinfo.lang.as_deref(), Some("en-US"));
        for j in 1..=3 {
            assert_eq!(run.status_of(j), StatusCode::OK);
        }
        assert_eq!(run.results_of(1), b"1.0");
        let children = String::from_utf8(run.results_of(2)).unwrap();
        assert!(
            children.contains("FwV") && children.contains("URI"),
            "{children}"
        );
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
        assert_eq!(run.client_ended(), Some(EndReason::Completed));
        assert!(run.client.contains(&ClientEvent::ServerAuthenticated));
        // A.4: 212 on package 1, the server's Cred in package 2 only; the
        // last package has no commands and no Cred.
        let (first, _) = &run.server_msgs[0];
        let Command::Status(hs) = &first.body[0] else {
            panic!()
        };
        assert_eq!(hs.data, StatusCode::AUTHENTICATED);
        assert!(hs.chal.is_some(), "next-session nonce beside 212");
        assert!(first.hdr.cred.is_some());
        let (last, _) = run.server_msgs.last().unwrap();
        assert!(last.hdr.cred.is_none() && last.final_);
        assert!(last.body.iter().all(|c| matches!(c, Command::Status(_))));
        assert_eq!(run.server_msgs.len(), 2);
        // the runtime learns both next nonces (A.4)
        assert!(run.server.iter().any(|e| matches!(
            e,
            ServerEvent::NextNonces {
                server_next: Some(_),
                ..
            }
        )));
    }
}

// PROTOCOL A.4: a stale nonce gets 401 + Chal; the retry over the new nonce succeeds.
#[test]
fn md5_challenge_then_success() {
    for enc in BOTH {
        let mut cfg = config(enc, AuthType::Md5);
        cfg.client_nonce = Nonce::from_chr("stale");
        let mut c = ClientSession::start(cfg, device_tree());
        let mut s = ServerSession::new();
        s.push_command(get(1, "./DevInfo/Man"));
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        let Command::Status(hs) = &run.server_msgs[0].0.body[0] else {
            panic!()
        };
        assert_eq!(hs.data, StatusCode::INVALID_CREDENTIALS);
        assert!(hs.chal.is_some());
        assert!(
            run.server_msgs[0].0.hdr.cred.is_none(),
            "A.4: no Cred when only challenging"
        );
        assert_eq!(run.status_of(1), StatusCode::OK);
        assert_eq!(run.results_of(1), b"Acme");
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
    }
}

// PROTOCOL A.4: basic without TLS is challenged for MD5 (407 path of a
// client that sends what the server refuses), then accepted.
#[test]
fn basic_without_tls_is_challenged_to_md5() {
    let mut cfg = config(Encoding::Xml, AuthType::Basic);
    cfg.clcred.auth_type = AuthType::Basic;
    let mut c = ClientSession::start(cfg, device_tree());
    let mut s = ServerSession::new();
    s.push_command(get(1, "./DevInfo/Mod"));
    let run = drive(&mut c, &mut s, &account(AuthType::Basic));
    assert_eq!(run.status_of(1), StatusCode::OK);
    let Command::Status(hs) = &run.server_msgs[0].0.body[0] else {
        panic!()
    };
    assert_eq!(hs.data, StatusCode::INVALID_CREDENTIALS);
    assert_eq!(
        hs.chal.as_ref().unwrap().meta.type_.as_deref(),
        Some("syncml:auth-md5")
    );
}

// PROTOCOL A.4: wrong secret: 401, one more challenge, the second failure ends the session.
#[test]
fn wrong_secret_fails_twice_and_ends() {
    let mut cfg = config(Encoding::Xml, AuthType::Md5);
    cfg.clcred.secret = Secret::new("wrong");
    let mut c = ClientSession::start(cfg, device_tree());
    let mut s = ServerSession::new();
    s.push_command(get(1, "./DevInfo/Man"));
    let run = drive(&mut c, &mut s, &account(AuthType::Md5));
    assert!(!run.server.contains(&ServerEvent::Authenticated));
    assert!(run.server.contains(&ServerEvent::AuthFailed {
        status: StatusCode::INVALID_CREDENTIALS
    }));
    assert_eq!(run.server_ended(), Some(EndReason::AuthFailed));
    assert_eq!(run.client_ended(), Some(EndReason::AuthFailed));
    assert!(run.statuses().is_empty(), "no command went out");
    let codes: Vec<_> = run
        .server_msgs
        .iter()
        .map(|(m, _)| match &m.body[0] {
            Command::Status(s) => (s.data, s.chal.is_some()),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (StatusCode::INVALID_CREDENTIALS, true),
            (StatusCode::INVALID_CREDENTIALS, false)
        ]
    );
    assert!(s
        .handle_message(
            Incoming {
                bytes: &syncml::encode_xml(&run.client_msgs[0]),
                hmac: None,
                tls: false
            },
            &account(AuthType::Md5),
            &mut StdRng::seed_from_u64(1)
        )
        .is_err());
}

// PROTOCOL A.4: HMAC: every message carries a fresh MAC; 200 + NextNonce each time.
#[test]
fn hmac_session() {
    for enc in BOTH {
        let (mut c, mut s, acct) = session(
            enc,
            AuthType::Hmac,
            vec![get(1, "./DevInfo/Lang"), get(2, "./DevDetail/SwV")],
        );
        let run = drive(&mut c, &mut s, &acct);
        assert!(run.server.contains(&ServerEvent::Authenticated));
        assert_eq!(run.results_of(1), b"en-US");
        assert_eq!(run.results_of(2), b"2.0");
        for (m, _) in &run.server_msgs {
            let Command::Status(hs) = &m.body[0] else {
                panic!()
            };
            assert_eq!(hs.data, StatusCode::OK);
            assert!(hs.chal.as_ref().unwrap().meta.next_nonce.is_some());
        }
        assert!(run.client_msgs.iter().all(|m| m.hdr.cred.is_none()));
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
    }
}

// PROTOCOL A.3, A.7: Add, Replace, Get, Copy, Exec, Delete; 425 for a Replace without rights.
#[test]
fn management_commands_and_acl_refusal() {
    for enc in BOTH {
        let cmds = vec![
            add_node(1, "./Vendor/Sub"),
            add_leaf(2, "./Vendor/Setting", b"one"),
            replace(3, "./Vendor/Setting", b"two"),
            get(4, "./Vendor/Setting"),
            job(
                5,
                CommandKind::Copy {
                    source: "./Vendor/Setting".into(),
                    target: "./Vendor/Copy".into(),
                },
            ),
            job(
                6,
                CommandKind::Exec {
                    target: "./Ops/Reboot".into(),
                    data: Some(b"now".to_vec()),
                },
            ),
            job(
                7,
                CommandKind::Delete {
                    target: "./Vendor/Copy".into(),
                },
            ),
            replace(8, "./DevInfo/Man", b"Evil"),
            get(9, "./Nowhere"),
        ];
        let (mut c, mut s, acct) = session(enc, AuthType::Md5, cmds);
        let run = drive(&mut c, &mut s, &acct);
        for j in 1..=7 {
            assert_eq!(run.status_of(j), StatusCode::OK, "job {j}");
        }
        assert_eq!(run.status_of(8), StatusCode::PERMISSION_DENIED);
        assert_eq!(run.status_of(9), StatusCode::NOT_FOUND);
        assert_eq!(run.results_of(4), b"two");
        assert!(run.client.contains(&ClientEvent::Exec {
            uri: uri("./Ops/Reboot"),
            data: Some(b"now".to_vec())
        }));
        let tree = c.tree();
        assert_eq!(tree.value(&uri("./Vendor/Setting")), Some(&b"two"[..]));
        assert!(tree.node(&uri("./Vendor/Copy")).is_none());
        assert_eq!(tree.value(&uri("./DevInfo/Man")), Some(&b"Acme"[..]));
        // All nine, the refused ones too; the server's Statuses not.
        assert_eq!(c.commands_received(), 9);
        assert!(!c.accounts_touched());
    }
}

// PROTOCOL A.6: a session that changed `./DMAcc` says so, for the client to
// read its accounts again; reads, refusals and changes elsewhere do not.
#[test]
fn accounts_touched_only_by_changes_in_dmacc() {
    for enc in BOTH {
        let cmds = vec![
            get(1, "./DMAcc"),
            add_node(2, "./Vendor/Other"),
            replace(3, "./DMAcc", b"x"),
        ];
        let (mut c, mut s, acct) = session(enc, AuthType::Md5, cmds);
        let run = drive(&mut c, &mut s, &acct);
        assert_eq!(run.status_of(1), StatusCode::OK);
        assert_eq!(run.status_of(2), StatusCode::OK);
        assert!(!run.status_of(3).is_success());
        assert!(!c.accounts_touched());

        let (mut c, mut s, acct) = session(enc, AuthType::Md5, vec![add_node(1, "./DMAcc/Second")]);
        let run = drive(&mut c, &mut s, &acct);
        assert_eq!(run.status_of(1), StatusCode::OK);
        assert!(c.accounts_touched());
    }
}

fn atomic_cmds() -> Vec<ServerCommand> {
    vec![job(
        10,
        CommandKind::Atomic(vec![
            add_node(11, "./Staged"),
            replace(12, "./DevInfo/Man", b"Evil"),
            add_leaf(13, "./Staged/x", b"1"),
        ]),
    )]
}

// PROTOCOL A.3: Atomic rollback: 507 for the Atomic, 216 for what had run,
// the failure's own code, 215 for the rest; the tree is unchanged.
#[test]
fn atomic_rollback() {
    for enc in BOTH {
        let (mut c, mut s, acct) = session(enc, AuthType::Md5, atomic_cmds());
        let before = device_tree();
        let run = drive(&mut c, &mut s, &acct);
        assert_eq!(run.status_of(10), StatusCode::ATOMIC_FAILED);
        assert_eq!(run.status_of(11), StatusCode::ROLLED_BACK);
        assert_eq!(run.status_of(12), StatusCode::PERMISSION_DENIED);
        assert_eq!(run.status_of(13), StatusCode::NOT_EXECUTED);
        assert!(c.tree().node(&uri("./Staged")).is_none());
        assert_eq!(c.tree().len(), before.len());
        // The Atomic's three commands, not the Atomic itself.
        assert_eq!(c.commands_received(), 3);
    }
}

// real-clients README: libdmclient gives no Status for an Atomic; the
// server reports the highest status among its commands.
#[test]
fn atomic_without_status_reports_highest_inner_status() {
    let (mut c, mut s, acct) = session(Encoding::Xml, AuthType::Md5, atomic_cmds());
    let mut drop_atomic_status = |from_server: bool, m: &mut Message| {
        if from_server {
            return false;
        }
        let before = m.body.len();
        m.body
            .retain(|c| !matches!(c, Command::Status(s) if s.cmd == "Atomic"));
        before != m.body.len()
    };
    let run = drive_with(&mut c, &mut s, &acct, &mut drop_atomic_status);
    assert_eq!(run.status_of(10), StatusCode::PERMISSION_DENIED);
    assert_eq!(run.status_of(11), StatusCode::ROLLED_BACK);
}

// PROTOCOL A.2: a small MaxMsgSize splits the server's package over several
// messages; the client asks for each with Alert 1222; no message is too big.
#[test]
fn package_split_by_max_msg_size() {
    for enc in BOTH {
        let gets: Vec<ServerCommand> = (0..100)
            .map(|j| {
                let leaf = ["DevId", "Man", "Mod", "DmV", "Lang"][j % 5];
                get(j as u64, &format!("./DevInfo/{leaf}"))
            })
            .collect();
        let mut cfg = config(enc, AuthType::Md5);
        cfg.max_msg_size = Some(1500);
        let mut c = ClientSession::start(cfg, device_tree());
        let mut s = ServerSession::new();
        for g in gets {
            s.push_command(g);
        }
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        assert!(run.server_msgs.len() > 3, "{}", run.server_msgs.len());
        for (m, len) in &run.server_msgs {
            assert!(*len <= 1500, "{len} bytes");
            let _ = m;
        }
        // non-final messages are answered with Alert 1222 (+ Final)
        let non_final = run.server_msgs.iter().filter(|(m, _)| !m.final_).count();
        assert!(non_final >= 2);
        let alerts_1222 = run
            .client_msgs
            .iter()
            .filter(|m| {
                m.body
                    .iter()
                    .any(|c| matches!(c, Command::Alert(a) if a.data == AlertCode::NEXT_MESSAGE))
            })
            .count();
        assert_eq!(alerts_1222, non_final);
        // A.4: the server's Cred only in the first message of the package
        assert_eq!(
            run.server_msgs
                .iter()
                .filter(|(m, _)| m.hdr.cred.is_some())
                .count(),
            1
        );
        for j in 0..100 {
            assert_eq!(run.status_of(j), StatusCode::OK);
        }
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
    }
}

fn big_text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

// PROTOCOL A.2: a 100 KB Replace goes as a large object: MoreData, Size on
// the first chunk, 213 per chunk, 200 at the end.
#[test]
fn large_object_server_to_client() {
    for enc in BOTH {
        let data = big_text(100 * 1024);
        let mut cfg = config(enc, AuthType::Md5);
        cfg.max_msg_size = Some(4000);
        let mut c = ClientSession::start(cfg, device_tree());
        let mut s = ServerSession::new();
        s.push_command(add_node(1, "./Vendor/Sub"));
        s.push_command(add_leaf(2, "./Vendor/Blob", b""));
        s.push_command(replace(3, "./Vendor/Blob", &data));
        s.push_command(get(4, "./Vendor"));
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        for j in 1..=4 {
            assert_eq!(run.status_of(j), StatusCode::OK, "job {j}");
        }
        assert!(run.server_msgs.iter().all(|(_, len)| *len <= 4000));
        assert!(run.server_msgs.len() > 25);
        assert_eq!(c.tree().value(&uri("./Vendor/Blob")), Some(&data[..]));
        let chunks_213 = run
            .client_msgs
            .iter()
            .flat_map(|m| &m.body)
            .filter(|c| matches!(c, Command::Status(s) if s.data == StatusCode::CHUNK_ACCEPTED))
            .count();
        assert!(chunks_213 > 25);
        let first_chunk = run
            .server_msgs
            .iter()
            .flat_map(|(m, _)| &m.body)
            .find_map(|c| match c {
                Command::Replace(r) if r.items[0].more_data => Some(r.items[0].clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(first_chunk.meta.unwrap().size, Some(data.len() as u64));
    }
}

// PROTOCOL A.2: a 100 KB Results client→server as a large object; 424 on a size mismatch.
#[test]
fn large_results_client_to_server() {
    for enc in BOTH {
        let data = big_text(100 * 1024);
        let mut tree = device_tree();
        tree.put_local(
            &uri("./Vendor/Log"),
            NewNode::Leaf {
                value: data.clone(),
                format: "chr".into(),
                mime: Some("text/plain".into()),
            },
            NOW,
        );
        let mut c = ClientSession::start(config(enc, AuthType::Md5), tree);
        let mut s = ServerSession::new();
        s.set_max_msg_size(4000);
        s.push_command(get(1, "./Vendor/Log"));
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        assert_eq!(run.status_of(1), StatusCode::OK);
        assert_eq!(run.results_of(1), data);
        assert!(run
            .client_msgs
            .iter()
            .skip(1)
            .all(|m| { syncml::encode(enc, m).len() <= 4000 }));
        assert!(run.client_msgs.len() > 25);
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
    }

    // The same with one chunk's data cut short: 424 and no Results.
    let data = big_text(20 * 1024);
    let mut tree = device_tree();
    tree.put_local(
        &uri("./Vendor/Log"),
        NewNode::text(std::str::from_utf8(&data).unwrap()),
        NOW,
    );
    let mut c = ClientSession::start(config(Encoding::Xml, AuthType::Md5), tree);
    let mut s = ServerSession::new();
    s.set_max_msg_size(4000);
    s.push_command(get(1, "./Vendor/Log"));
    let mut cut = |from_server: bool, m: &mut Message| {
        if from_server {
            return false;
        }
        for c in &mut m.body {
            if let Command::Results(r) = c {
                let first = r.items[0].meta.as_ref().is_some_and(|m| m.size.is_some());
                if let (true, Some(syncml::Data::Text(t))) = (first, &mut r.items[0].data) {
                    t.truncate(t.len() - 1);
                    return true;
                }
            }
        }
        false
    };
    let run = drive_with(&mut c, &mut s, &account(AuthType::Md5), &mut cut);
    assert!(run
        .statuses()
        .contains(&(1, "Get".to_owned(), StatusCode::SIZE_MISMATCH)));
    assert!(!run
        .server
        .iter()
        .any(|e| matches!(e, ServerEvent::CommandResults { .. })));
}

// PROTOCOL A.2: the client aborts with Alert 1223; the server reports it and ends.
#[test]
fn client_abort() {
    for enc in BOTH {
        let (mut c, mut s, acct) = session(enc, AuthType::Md5, vec![get(1, "./DevInfo/Man")]);
        let mut rng = StdRng::seed_from_u64(3);
        let p1 = c.poll_transmit().unwrap();
        s.handle_message(
            Incoming {
                bytes: &p1.bytes,
                hmac: None,
                tls: false,
            },
            &acct,
            &mut rng,
        )
        .unwrap();
        let reply = s.poll_transmit().unwrap();
        c.handle_message(&reply.bytes, NOW, &mut rng).unwrap();
        let _ = c.poll_transmit();
        c.abort();
        let abort = c.poll_transmit().unwrap();
        let m = syncml::decode(&abort.bytes).unwrap();
        assert!(m.final_);
        s.handle_message(
            Incoming {
                bytes: &abort.bytes,
                hmac: None,
                tls: false,
            },
            &acct,
            &mut rng,
        )
        .unwrap();
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(events.contains(&ServerEvent::Aborted));
        assert_eq!(
            events.last(),
            Some(&ServerEvent::SessionEnded {
                reason: EndReason::Aborted
            })
        );
        assert!(s.has_ended() && c.has_ended());
    }
}

// PROTOCOL A.4: the client refuses a server Cred made with the wrong SRVCRED secret.
#[test]
fn client_rejects_bad_server_cred() {
    let (mut c, mut s, mut acct) =
        session(Encoding::Xml, AuthType::Md5, vec![get(1, "./DevInfo/Man")]);
    acct.server.secret = Secret::new("not-the-server");
    let run = drive(&mut c, &mut s, &acct);
    assert!(run.client.contains(&ClientEvent::ServerAuthFailed {
        status: StatusCode::INVALID_CREDENTIALS
    }));
    assert_eq!(run.client_ended(), Some(EndReason::ServerAuthRejected));
    assert_eq!(run.server_ended(), Some(EndReason::ServerAuthRejected));
    assert!(c.tree().node(&uri("./DevInfo/Man")).is_some());
    assert_eq!(run.status_of(1), StatusCode::INVALID_CREDENTIALS);
}

fn capture(rel: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-clients");
    std::fs::read(dir.join(rel)).unwrap()
}

fn answer(bytes: &[u8], acct: &DeviceAccount, tls: bool) -> (Message, Vec<ServerEvent>, Message) {
    let mut s = ServerSession::new();
    s.push_command(get(1, "./DevDetail"));
    s.handle_message(
        Incoming {
            bytes,
            hmac: None,
            tls,
        },
        acct,
        &mut StdRng::seed_from_u64(5),
    )
    .unwrap();
    let reply = s.poll_transmit().unwrap();
    assert_eq!(reply.encoding, Encoding::sniff(bytes));
    let events = std::iter::from_fn(|| s.poll_event()).collect();
    (
        syncml::decode(bytes).unwrap(),
        events,
        syncml::decode(&reply.bytes).unwrap(),
    )
}

/// PROTOCOL A.2: one Status per command, in order, SyncHdr first, MsgRef set.
fn assert_answers_every_command(req: &Message, reply: &Message) {
    let statuses: Vec<_> = reply
        .body
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(statuses[0].cmd_ref, CmdRef::SyncHdr);
    let refs: Vec<_> = statuses[1..]
        .iter()
        .map(|s| (s.cmd_ref, s.cmd.clone()))
        .collect();
    let want: Vec<_> = req
        .body
        .iter()
        .map(|c| (CmdRef::Cmd(c.cmd_id()), c.name().to_owned()))
        .collect();
    assert_eq!(refs, want);
    assert!(statuses.iter().all(|s| s.msg_ref == Some(req.hdr.msg_id)));
    assert_eq!(reply.hdr.session_id, req.hdr.session_id);
    assert_eq!(reply.hdr.target.loc_uri, req.hdr.source.loc_uri);
}

fn libdm_account() -> DeviceAccount {
    DeviceAccount {
        client: cred(AuthType::Basic, "funambol", "funambol"),
        ..account(AuthType::Basic)
    }
}

// real-clients README + PROTOCOL A.4: libdmclient's basic Cred without TLS
// gets 401 + an MD5 Chal; over TLS it is accepted (212) and DevInfo read.
#[test]
fn libdmclient_package1() {
    for rel in ["libdmclient-xml/req1.xml", "libdmclient-wbxml/req1.wbxml"] {
        let bytes = capture(rel);
        let (req, events, reply) = answer(&bytes, &libdm_account(), false);
        assert_answers_every_command(&req, &reply);
        let Command::Status(hs) = &reply.body[0] else {
            panic!()
        };
        assert_eq!(hs.data, StatusCode::INVALID_CREDENTIALS);
        let chal = hs.chal.as_ref().unwrap();
        assert_eq!(chal.meta.type_.as_deref(), Some("syncml:auth-md5"));
        assert_eq!(chal.meta.format.as_deref(), Some("b64"));
        assert!(reply.hdr.cred.is_none() && reply.final_);
        assert!(!events.contains(&ServerEvent::Authenticated));

        let (req, events, reply) = answer(&bytes, &libdm_account(), true);
        assert_answers_every_command(&req, &reply);
        let Command::Status(hs) = &reply.body[0] else {
            panic!()
        };
        assert_eq!(hs.data, StatusCode::AUTHENTICATED);
        assert!(events.contains(&ServerEvent::Authenticated));
        assert!(events.iter().any(|e| matches!(
            e,
            ServerEvent::DevInfo(d) if d.dev_id.as_deref() == Some("DMCtest")
                && d.man.as_deref() == Some("test manufacturer")
        )));
        assert!(
            reply.hdr.cred.is_some(),
            "package 2 carries the server's Cred"
        );
        assert!(reply.body.iter().any(|c| matches!(c, Command::Get(_))));
    }
}

// real-clients README + PROTOCOL A.4: hs20 sends no Cred: 407 + Chal.
#[test]
fn hs20_package1_is_challenged() {
    let bytes = capture("hs20-osu-client/req1.xml");
    let (req, events, reply) = answer(&bytes, &account(AuthType::Md5), false);
    assert_answers_every_command(&req, &reply);
    let Command::Status(hs) = &reply.body[0] else {
        panic!()
    };
    assert_eq!(hs.data, StatusCode::MISSING_CREDENTIALS);
    assert!(hs.chal.is_some());
    assert!(!events.contains(&ServerEvent::Authenticated));
    assert_eq!(reply.hdr.session_id, "1");
}

// PROTOCOL A.2: a size mismatch on a large object from the server is 424,
// and the device keeps its old value.
#[test]
fn large_object_size_mismatch_is_424() {
    let data = big_text(20 * 1024);
    let mut cfg = config(Encoding::Xml, AuthType::Md5);
    cfg.max_msg_size = Some(4000);
    let mut c = ClientSession::start(cfg, device_tree());
    let mut s = ServerSession::new();
    s.push_command(replace(1, "./DevInfo/Lang", b"de"));
    s.push_command(add_leaf(2, "./Vendor/Blob", &data));
    let mut cut_first_chunk = |from_server: bool, m: &mut Message| {
        if !from_server {
            return false;
        }
        for c in &mut m.body {
            if let Command::Add(a) = c {
                let first = a.items[0].meta.as_ref().is_some_and(|m| m.size.is_some());
                if let (true, Some(syncml::Data::Text(t))) = (first, &mut a.items[0].data) {
                    t.truncate(t.len() - 10);
                    return true;
                }
            }
        }
        false
    };
    let run = drive_with(
        &mut c,
        &mut s,
        &account(AuthType::Md5),
        &mut cut_first_chunk,
    );
    assert_eq!(run.status_of(2), StatusCode::SIZE_MISMATCH);
    assert!(c.tree().node(&uri("./Vendor/Blob")).is_none());
    assert_eq!(run.server_ended(), Some(EndReason::Completed));
}

// PROTOCOL A.3, A.5: answering a notification: Alert 1200 and its session id.
#[test]
fn session_answering_a_notification() {
    let n = Notification {
        ui_mode: UiMode::Background,
        server_initiated: true,
        session_id: SessionId(0x4D2),
        server_id: ServerId::parse(SERVER).unwrap(),
        vendor: Vec::new(),
    };
    let cfg = config(Encoding::Wbxml, AuthType::Md5).answering(&n);
    let mut c = ClientSession::start(cfg, device_tree());
    let mut s = ServerSession::new();
    s.push_command(get(1, "./DevInfo/DevId"));
    let run = drive(&mut c, &mut s, &account(AuthType::Md5));
    let Command::Alert(a) = &run.client_msgs[0].body[0] else {
        panic!()
    };
    assert_eq!(a.data, AlertCode::SERVER_INITIATED);
    assert!(run
        .server_msgs
        .iter()
        .all(|(m, _)| m.hdr.session_id == "4D2"));
    assert_eq!(run.results_of(1), b"IMEI:490154203237518");
}

// STYLE lesson 7: no secret in Debug of either session.
#[test]
fn sessions_do_not_print_secrets() {
    let (mut c, mut s, acct) = session(Encoding::Xml, AuthType::Md5, vec![get(1, "./DevInfo/Man")]);
    let t = c.poll_transmit().unwrap();
    s.handle_message(
        Incoming {
            bytes: &t.bytes,
            hmac: None,
            tls: false,
        },
        &acct,
        &mut StdRng::seed_from_u64(9),
    )
    .unwrap();
    for text in [format!("{c:?}"), format!("{s:?}"), format!("{acct:?}")] {
        assert!(
            !text.contains("clientpw") && !text.contains("serverpw"),
            "{text}"
        );
    }
}

// PROTOCOL A.3: hs20's package 1 (given an MD5 Cred, since this client
// authenticates at the HTTP layer): the Generic Alert 1226 with its TNDS
// item and the DevInfo Replace are reported; every command gets a Status.
#[test]
fn hs20_generic_alert_and_devinfo() {
    let mut m = syncml::decode(&capture("hs20-osu-client/req1.xml")).unwrap();
    let acct = account(AuthType::Md5);
    let c = acct.client.cred(&acct.client_nonce).unwrap();
    m.hdr.cred = Some(syncml::Cred {
        meta: Some(syncml::Meta::with_format_type("b64", "syncml:auth-md5")),
        data: c.data,
    });
    let bytes = syncml::encode_xml(&m);
    let (req, events, reply) = answer(&bytes, &acct, false);
    assert_answers_every_command(&req, &reply);
    assert!(events.contains(&ServerEvent::Authenticated));
    let (correlator, items) = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::GenericAlert { correlator, items } => Some((correlator, items)),
            _ => None,
        })
        .unwrap();
    assert!(correlator.is_none());
    assert_eq!(
        items[0].source.as_deref(),
        Some("./Wi-Fi/org.wi-fi/PerProviderSubscription")
    );
    assert!(items[0]
        .mime
        .as_deref()
        .unwrap()
        .ends_with("SubscriptionRemediation"));
    assert!(String::from_utf8_lossy(&items[0].data).contains("<MgmtTree"));
    assert!(events.iter().any(|e| matches!(
        e,
        ServerEvent::DevInfo(d) if d.model.as_deref() == Some("HS20-station")
            && d.dmv.as_deref() == Some("1.2")
    )));
    assert_eq!(
        ServerSession::peek(&bytes).unwrap(),
        ("urn:Example:HS20-station:123456".to_owned(), "1".to_owned())
    );
}

// STYLE lesson 1 + PROTOCOL A.2: the session records when the client's
// last message arrived, so the runtime can expire idle sessions from the
// stored state; the clockless `handle_message` leaves it unchanged.
#[test]
fn server_session_records_the_time_of_the_last_message() {
    let (mut c, mut s, acct) = session(Encoding::Xml, AuthType::Md5, vec![get(1, "./DevInfo/Man")]);
    let mut rng = StdRng::seed_from_u64(11);
    assert_eq!(s.last_message_at(), None);
    assert!(!s.is_idle(Timestamp(NOW.0 + 1_000_000), 60));
    let p1 = c.poll_transmit().unwrap();
    let incoming = Incoming {
        bytes: &p1.bytes,
        hmac: None,
        tls: false,
    };
    s.handle_message_at(incoming, &acct, NOW, &mut rng).unwrap();
    assert_eq!(s.last_message_at(), Some(NOW));
    let reply = s.poll_transmit().unwrap();
    persist(&mut s);
    assert_eq!(s.last_message_at(), Some(NOW), "kept when stored");
    assert!(!s.is_idle(Timestamp(NOW.0 + 60), 60));
    assert!(s.is_idle(Timestamp(NOW.0 + 61), 60));

    c.handle_message(&reply.bytes, NOW, &mut rng).unwrap();
    let p3 = c.poll_transmit().unwrap();
    s.handle_message(
        Incoming {
            bytes: &p3.bytes,
            hmac: None,
            tls: false,
        },
        &acct,
        &mut rng,
    )
    .unwrap();
    assert_eq!(s.last_message_at(), Some(NOW), "no clock, no change");
    assert!(s.has_ended());
}

fn feed(s: &mut ServerSession, bytes: &[u8], acct: &DeviceAccount) -> (Vec<ServerEvent>, Message) {
    s.handle_message(
        Incoming {
            bytes,
            hmac: None,
            tls: false,
        },
        acct,
        &mut StdRng::seed_from_u64(13),
    )
    .unwrap();
    let reply = s.poll_transmit().unwrap();
    (
        std::iter::from_fn(|| s.poll_event()).collect(),
        syncml::decode(&reply.bytes).unwrap(),
    )
}

/// PROTOCOL A.2: the reply to a message that broke a rule: `hdr` on the
/// SyncHdr, 215 for every command, Alert 1223, Final; nothing executed.
fn assert_aborted(req: &Message, reply: &Message, hdr: StatusCode) {
    let Command::Status(hs) = &reply.body[0] else {
        panic!()
    };
    assert_eq!(hs.data, hdr);
    let commands = req
        .body
        .iter()
        .filter(|c| !matches!(c, Command::Status(_) | Command::Results(_)))
        .count();
    let not_executed = reply
        .body
        .iter()
        .filter(|c| matches!(c, Command::Status(s) if s.data == StatusCode::NOT_EXECUTED))
        .count();
    assert_eq!(not_executed, commands);
    assert!(matches!(
        reply.body.last(),
        Some(Command::Alert(a)) if a.data == AlertCode::SESSION_ABORT
    ));
    assert!(reply.final_ && reply.hdr.cred.is_none());
    assert!(!reply
        .body
        .iter()
        .any(|c| !matches!(c, Command::Status(_) | Command::Alert(_))));
}

// PROTOCOL A.2: the client's MsgID increases by 1. A replayed (or skipped)
// MsgID is answered 400 on the SyncHdr, nothing is executed, the
// credential is not judged, and the server aborts (Alert 1223).
#[test]
fn replayed_or_skipped_msg_id_aborts_the_session() {
    for skip in [false, true] {
        let (mut c, mut s, acct) =
            session(Encoding::Xml, AuthType::Md5, vec![get(1, "./DevInfo/Man")]);
        s.push_command(get(2, "./DevInfo/Mod"));
        let p1 = c.poll_transmit().unwrap();
        let (_, reply) = feed(&mut s, &p1.bytes, &acct);
        c.handle_message(
            &syncml::encode_xml(&reply),
            NOW,
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap();
        let p3 = syncml::decode(&c.poll_transmit().unwrap().bytes).unwrap();
        let (bad, expected_got) = if skip {
            let mut m = p3.clone();
            m.hdr.msg_id = std::num::NonZeroU32::new(3).unwrap();
            (m, (2, 3))
        } else {
            (syncml::decode(&p1.bytes).unwrap(), (2, 1))
        };
        let (events, reply) = feed(&mut s, &syncml::encode_xml(&bad), &acct);
        assert_aborted(&bad, &reply, StatusCode::BAD_REQUEST);
        assert_eq!(
            events,
            vec![
                ServerEvent::ProtocolViolation(ClientViolation::MsgIdOutOfOrder {
                    expected: expected_got.0,
                    got: expected_got.1,
                }),
                ServerEvent::SessionEnded {
                    reason: EndReason::Aborted
                },
            ],
            "no status reported, no nonce moved on"
        );
        assert!(s.has_ended());
        // The client takes the abort as such.
        c.handle_message(
            &syncml::encode_xml(&reply),
            NOW,
            &mut StdRng::seed_from_u64(2),
        )
        .unwrap();
        let client: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(client.contains(&ClientEvent::SessionEnded {
            reason: EndReason::Aborted
        }));
    }
}

// PROTOCOL A.2: Source/LocURI must equal the DevId reported in package 1;
// a mismatch ends the session with ProtocolViolation(DevIdMismatch).
#[test]
fn source_other_than_devinfo_devid_ends_the_session() {
    let (mut c, mut s, acct) = session(
        Encoding::Wbxml,
        AuthType::Md5,
        vec![get(1, "./DevInfo/Man")],
    );
    let mut spoof = |from_server: bool, m: &mut Message| {
        if from_server || m.hdr.msg_id.get() != 1 {
            return false;
        }
        m.hdr.source.loc_uri = "IMEI:000000000000000".into();
        true
    };
    let run = drive_with(&mut c, &mut s, &acct, &mut spoof);
    assert!(run.server.contains(&ServerEvent::ProtocolViolation(
        ClientViolation::DevIdMismatch {
            source: "IMEI:000000000000000".into(),
            dev_id: "IMEI:490154203237518".into(),
        }
    )));
    assert_eq!(run.server_ended(), Some(EndReason::Aborted));
    assert_eq!(run.client_ended(), Some(EndReason::Aborted));
    assert!(run.statuses().is_empty(), "no command went out");
    assert_eq!(run.server_msgs.len(), 1);
    assert_aborted(
        &run.client_msgs[0],
        &run.server_msgs[0].0,
        StatusCode::AUTHENTICATED,
    );
    assert!(!run
        .server
        .iter()
        .any(|e| matches!(e, ServerEvent::DevInfo(_))));
}

fn hmac_srvcred(
    enc: Encoding,
    commands: Vec<ServerCommand>,
) -> (ClientSession, ServerSession, DeviceAccount) {
    let mut cfg = config(enc, AuthType::Hmac);
    cfg.srvcred.auth_type = AuthType::Hmac;
    let c = ClientSession::start(cfg, device_tree());
    let mut s = ServerSession::new();
    for cmd in commands {
        s.push_command(cmd);
    }
    let mut acct = account(AuthType::Hmac);
    acct.server.auth_type = AuthType::Hmac;
    (c, s, acct)
}

// PROTOCOL A.4: with SRVCRED AAuthType HMAC the server proves itself with
// an x-syncml-hmac header (SRVCRED name, the client's latest nonce, over
// the exact body) on every message the client answers, never with a Cred;
// the client answers 200 + a fresh nonce each time. The closing message
// (no commands) carries none.
#[test]
fn hmac_server_credentials() {
    for enc in BOTH {
        let (mut c, mut s, acct) = hmac_srvcred(
            enc,
            vec![get(1, "./DevInfo/Lang"), get(2, "./DevDetail/SwV")],
        );
        s.push_command(replace(3, "./Vendor/Setting", b"x"));
        let run = drive(&mut c, &mut s, &acct);
        assert_eq!(run.results_of(1), b"en-US");
        assert_eq!(run.status_of(3), StatusCode::NOT_FOUND);
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
        assert_eq!(run.client_ended(), Some(EndReason::Completed));
        let n = run.server_msgs.len();
        assert!(n >= 2);
        for (i, ((m, _), h)) in run.server_msgs.iter().zip(&run.server_hmacs).enumerate() {
            assert!(m.hdr.cred.is_none(), "no Cred with an HMAC SRVCRED");
            let h = handover_dm::auth::HmacHeader::parse(h.as_deref().unwrap_or("")).ok();
            if i + 1 < n {
                assert_eq!(h.unwrap().username, SERVER);
            } else {
                assert!(h.is_none(), "the closing message is not signed");
            }
        }
        let checks = run
            .client
            .iter()
            .filter(|e| **e == ClientEvent::ServerAuthenticated)
            .count();
        assert_eq!(checks, n - 1);
        // The client's answers: SyncHdr 200 with a new MAC nonce each time.
        let mut nonces = BTreeSet::new();
        for m in &run.client_msgs[1..] {
            let Command::Status(hs) = &m.body[0] else {
                panic!()
            };
            assert_eq!(hs.data, StatusCode::OK);
            let chal = &hs.chal.as_ref().unwrap().meta;
            assert_eq!(chal.type_.as_deref(), Some("syncml:auth-MAC"));
            assert!(nonces.insert(chal.next_nonce.clone().unwrap()));
        }
        let server_next = run
            .server
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ServerEvent::NextNonces {
                        server_next: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(server_next, n - 1, "the runtime stores every new nonce");
    }
}

// PROTOCOL A.4: a server message whose body no longer matches its MAC is
// refused with 401; a missing header with 407; both sides end
// ServerAuthRejected. MD5/basic SRVCRED keeps the Cred and sends no header.
#[test]
fn hmac_server_credentials_refused() {
    for strip in [false, true] {
        let (mut c, mut s, acct) = hmac_srvcred(Encoding::Xml, vec![get(1, "./DevInfo/Lang")]);
        let mut rng = StdRng::seed_from_u64(17);
        let p1 = c.poll_transmit().unwrap();
        s.handle_message(
            Incoming {
                bytes: &p1.bytes,
                hmac: p1.hmac.as_deref(),
                tls: false,
            },
            &acct,
            &mut rng,
        )
        .unwrap();
        let reply = s.poll_transmit().unwrap();
        assert!(reply.hmac.is_some());
        let (body, header) = if strip {
            (reply.bytes.clone(), None)
        } else {
            let mut m = syncml::decode(&reply.bytes).unwrap();
            m.hdr.session_id = "1B".into();
            (syncml::encode_xml(&m), reply.hmac.as_deref())
        };
        c.handle_response(&body, header, NOW, &mut rng).unwrap();
        let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        let want = if strip {
            StatusCode::MISSING_CREDENTIALS
        } else {
            StatusCode::INVALID_CREDENTIALS
        };
        assert!(events.contains(&ClientEvent::ServerAuthFailed { status: want }));
        assert!(events.contains(&ClientEvent::SessionEnded {
            reason: EndReason::ServerAuthRejected
        }));
        assert!(c.tree().value(&uri("./DevInfo/Lang")).is_some());
    }

    let (mut c, mut s, acct) = session(
        Encoding::Xml,
        AuthType::Hmac,
        vec![get(1, "./DevInfo/Lang")],
    );
    let run = drive(&mut c, &mut s, &acct);
    assert!(run.server_hmacs.iter().all(Option::is_none));
    assert!(
        run.server_msgs[0].0.hdr.cred.is_some(),
        "MD5 SRVCRED: a Cred"
    );
    assert!(run.client.contains(&ClientEvent::ServerAuthenticated));
}

// PROTOCOL A.3: the client adds Generic Alerts 1226 to package 1 (until it
// is sent); after a challenge (A.4) they go again with package 1 and the
// server reports each once, b64 data decoded.
#[test]
fn client_generic_alert_in_package1() {
    for enc in BOTH {
        let mut cfg = config(enc, AuthType::Md5);
        cfg.client_nonce = Nonce::from_chr("stale");
        let mut c = ClientSession::start(cfg, device_tree());
        let item = |source: &str, format: &str, data: &[u8]| ReceivedItem {
            source: Some(source.into()),
            format: Some(format.into()),
            mime: Some("x-oma-application:syncml.samplealert".into()),
            data: data.to_vec(),
        };
        c.add_generic_alert(GenericAlert {
            correlator: Some("job-7".into()),
            items: vec![item("./Ops/Reboot", "chr", b"done")],
        })
        .unwrap();
        c.add_generic_alert(GenericAlert {
            correlator: None,
            items: vec![item("./Vendor/Log", "b64", &[0, 1, 2, 255])],
        })
        .unwrap();
        let mut s = ServerSession::new();
        s.push_command(get(1, "./DevInfo/Man"));
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        let Command::Status(hs) = &run.server_msgs[0].0.body[0] else {
            panic!()
        };
        assert_eq!(hs.data, StatusCode::INVALID_CREDENTIALS);
        let alerts: Vec<_> = run
            .server
            .iter()
            .filter_map(|e| match e {
                ServerEvent::GenericAlert { correlator, items } => Some((correlator, items)),
                _ => None,
            })
            .collect();
        assert_eq!(alerts.len(), 2, "reported once, after authentication");
        assert_eq!(alerts[0].0.as_deref(), Some("job-7"));
        assert_eq!(alerts[0].1[0].data, b"done");
        assert_eq!(alerts[0].1[0].source.as_deref(), Some("./Ops/Reboot"));
        assert_eq!(alerts[1].1[0].data, [0, 1, 2, 255]);
        assert_eq!(run.results_of(1), b"Acme");
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
        // Package 1 (and its retry) in A.3 order: Alert, Replace, then 1226s.
        for m in &run.client_msgs[..2] {
            let kinds: Vec<_> = m.body.iter().map(|c| c.name()).collect();
            assert_eq!(kinds, ["Alert", "Replace", "Alert", "Alert"]);
        }
        assert_eq!(
            c.add_generic_alert(GenericAlert {
                correlator: None,
                items: Vec::new()
            }),
            Err(ClientError::Package1Sent)
        );
    }
}

// PROTOCOL A.4: a 401/407 later in the session (an HMAC that does not match
// the body) is answered by sending the same message again over the new
// nonce, not package 1; the session then goes on.
#[test]
fn client_retries_a_challenge_in_a_later_package() {
    for enc in BOTH {
        let (mut c, mut s, acct) = session(
            enc,
            AuthType::Hmac,
            vec![get(1, "./DevInfo/Lang"), get(2, "./DevDetail/SwV")],
        );
        let mut break_mac = |from_server: bool, m: &mut Message| {
            if from_server || m.hdr.msg_id.get() != 2 {
                return false;
            }
            m.hdr.source.loc_name = Some("changed-after-the-mac".into());
            true
        };
        let run = drive_with(&mut c, &mut s, &acct, &mut break_mac);
        let Command::Status(hs) = &run.server_msgs[1].0.body[0] else {
            panic!()
        };
        assert_eq!(hs.data, StatusCode::INVALID_CREDENTIALS);
        assert!(hs.chal.is_some());
        assert!(run.server_msgs[1]
            .0
            .body
            .iter()
            .all(|c| matches!(c, Command::Status(_))));
        // The retry carries the same commands as the refused message.
        let names = |m: &Message| {
            m.body
                .iter()
                .map(|c| c.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&run.client_msgs[1]), names(&run.client_msgs[2]));
        assert!(run.client_msgs[2]
            .body
            .iter()
            .any(|c| matches!(c, Command::Results(_))));
        assert_eq!(run.results_of(1), b"en-US");
        assert_eq!(run.results_of(2), b"2.0");
        assert_eq!(run.status_of(1), StatusCode::OK);
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
        assert_eq!(run.client_ended(), Some(EndReason::Completed));
    }
}

// PROTOCOL A.3: an Atomic inside a Sequence and a Sequence inside an
// Atomic run with their own semantics: an inner Atomic rolls back only
// itself and stops the Sequence; an outer Atomic rolls back everything in
// it, nested Sequence included (216), the failure keeps its code, the rest 215.
#[test]
fn nested_atomic_and_sequence() {
    for enc in BOTH {
        let cmds = vec![
            job(
                1,
                CommandKind::Sequence(vec![
                    add_node(2, "./Vendor/A"),
                    job(
                        3,
                        CommandKind::Atomic(vec![
                            add_leaf(4, "./Vendor/A/x", b"1"),
                            replace(5, "./DevInfo/Man", b"Evil"),
                        ]),
                    ),
                    add_node(6, "./Vendor/B"),
                ]),
            ),
            job(
                10,
                CommandKind::Atomic(vec![
                    job(
                        11,
                        CommandKind::Sequence(vec![
                            add_leaf(12, "./Vendor/S", b"s"),
                            get(13, "./Vendor/S"),
                        ]),
                    ),
                    add_leaf(14, "./Vendor/T", b"t"),
                ]),
            ),
            job(
                20,
                CommandKind::Atomic(vec![
                    job(
                        21,
                        CommandKind::Sequence(vec![
                            add_leaf(22, "./Vendor/U", b"u"),
                            get(23, "./Nowhere"),
                        ]),
                    ),
                    add_leaf(24, "./Vendor/V", b"v"),
                ]),
            ),
        ];
        let (mut c, mut s, acct) = session(enc, AuthType::Md5, cmds);
        let run = drive(&mut c, &mut s, &acct);
        let want = [
            (1, StatusCode::OK),
            (2, StatusCode::OK),
            (3, StatusCode::ATOMIC_FAILED),
            (4, StatusCode::ROLLED_BACK),
            (5, StatusCode::PERMISSION_DENIED),
            (6, StatusCode::NOT_EXECUTED),
            (10, StatusCode::OK),
            (11, StatusCode::OK),
            (12, StatusCode::OK),
            (13, StatusCode::OK),
            (14, StatusCode::OK),
            (20, StatusCode::ATOMIC_FAILED),
            (21, StatusCode::ROLLED_BACK),
            (22, StatusCode::ROLLED_BACK),
            (23, StatusCode::NOT_FOUND),
            (24, StatusCode::NOT_EXECUTED),
        ];
        for (j, code) in want {
            assert_eq!(run.status_of(j), code, "job {j}");
        }
        assert_eq!(run.results_of(13), b"s");
        let t = c.tree();
        assert!(
            t.node(&uri("./Vendor/A")).is_some(),
            "a Sequence keeps what ran"
        );
        assert!(t.node(&uri("./Vendor/A/x")).is_none());
        assert!(t.node(&uri("./Vendor/B")).is_none());
        assert_eq!(t.value(&uri("./Vendor/S")), Some(&b"s"[..]));
        assert_eq!(t.value(&uri("./Vendor/T")), Some(&b"t"[..]));
        assert!(t.node(&uri("./Vendor/U")).is_none());
        assert!(t.node(&uri("./Vendor/V")).is_none());
        assert_eq!(t.value(&uri("./DevInfo/Man")), Some(&b"Acme"[..]));
    }
}

// PROTOCOL A.3: a command with several items inside an Atomic runs every
// item; one item refused (here 418, the same node twice) fails the command
// with its code and rolls the Atomic back.
#[test]
fn several_items_per_command_inside_atomic() {
    for (second, ok) in [("./Vendor/M2", true), ("./Vendor/M1", false)] {
        let (mut c, mut s, acct) = session(
            Encoding::Xml,
            AuthType::Md5,
            vec![job(
                1,
                CommandKind::Atomic(vec![add_leaf(2, "./Vendor/M1", b"1")]),
            )],
        );
        let mut add_item = |from_server: bool, m: &mut Message| {
            for cmd in &mut m.body {
                if let (true, Command::Atomic(a)) = (from_server, cmd) {
                    if let Command::Add(add) = &mut a.commands[0] {
                        let mut item = add.items[0].clone();
                        item.target = Some(syncml::LocRef::uri(second));
                        item.data = Some(syncml::Data::Text("2".into()));
                        add.items.push(item);
                        return true;
                    }
                }
            }
            false
        };
        let run = drive_with(&mut c, &mut s, &acct, &mut add_item);
        let t = c.tree();
        if ok {
            assert_eq!(run.status_of(1), StatusCode::OK);
            assert_eq!(run.status_of(2), StatusCode::OK);
            assert_eq!(t.value(&uri("./Vendor/M1")), Some(&b"1"[..]));
            assert_eq!(t.value(&uri("./Vendor/M2")), Some(&b"2"[..]));
        } else {
            assert_eq!(run.status_of(1), StatusCode::ATOMIC_FAILED);
            assert_eq!(run.status_of(2), StatusCode::ALREADY_EXISTS);
            assert!(t.node(&uri("./Vendor/M1")).is_none());
        }
    }
}

// PROTOCOL A.2: when the Statuses of a reply alone exceed the client's
// MaxMsgSize, they go over several messages without Final; the client's
// Alert 1222 asks for the rest, every command still gets exactly one
// Status, in order, and the package follows.
#[test]
fn statuses_beyond_max_msg_size_are_split() {
    for enc in BOTH {
        let max = 1500;
        let mut cfg = config(enc, AuthType::Md5);
        cfg.max_msg_size = Some(max);
        let mut c = ClientSession::start(cfg, device_tree());
        for i in 0..40 {
            c.add_generic_alert(GenericAlert {
                correlator: Some(format!("c{i}")),
                items: vec![ReceivedItem {
                    source: Some("./Vendor/Report".into()),
                    format: Some("chr".into()),
                    mime: Some("text/plain".into()),
                    data: b"ok".to_vec(),
                }],
            })
            .unwrap();
        }
        let mut s = ServerSession::new();
        s.push_command(get(1, "./DevInfo/Man"));
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        assert!(run.server_msgs.iter().all(|(_, len)| *len as u64 <= max));
        let (first, _) = &run.server_msgs[0];
        assert!(!first.final_, "more Statuses follow");
        assert!(first.body.iter().all(|c| matches!(c, Command::Status(_))));
        let refs: Vec<u32> = run
            .server_msgs
            .iter()
            .flat_map(|(m, _)| &m.body)
            .filter_map(|c| match c {
                Command::Status(s) if s.msg_ref.map(|r| r.get()) == Some(1) => match s.cmd_ref {
                    CmdRef::Cmd(id) => Some(id.get()),
                    CmdRef::SyncHdr => None,
                },
                _ => None,
            })
            .collect();
        let want: Vec<u32> = run.client_msgs[0]
            .body
            .iter()
            .map(|c| c.cmd_id().get())
            .collect();
        assert_eq!(want.len(), 42);
        assert_eq!(refs, want, "one Status each, in order");
        assert!(run.server_msgs.len() > 2);
        assert_eq!(
            run.server
                .iter()
                .filter(|e| matches!(e, ServerEvent::GenericAlert { .. }))
                .count(),
            40
        );
        assert_eq!(run.results_of(1), b"Acme");
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
        assert_eq!(run.client_ended(), Some(EndReason::Completed));
    }
}

// PROTOCOL A.2, A.3: an Atomic or Sequence is never split: one that does
// not fit after other commands waits for the next message; one larger than
// any message the client accepts is not sent, reported 517 with 215 for its
// commands, and the package goes on.
#[test]
fn atomic_and_sequence_are_not_split() {
    for enc in BOTH {
        let mut cfg = config(enc, AuthType::Md5);
        cfg.max_msg_size = Some(2000);
        let mut c = ClientSession::start(cfg, device_tree());
        let mut s = ServerSession::new();
        let medium = vec![b'm'; 150];
        for k in 0..4u64 {
            s.push_command(job(
                10 * (k + 1),
                CommandKind::Atomic(vec![
                    add_leaf(10 * (k + 1) + 1, &format!("./Vendor/A{k}"), &medium),
                    add_leaf(10 * (k + 1) + 2, &format!("./Vendor/B{k}"), &medium),
                ]),
            ));
        }
        let huge = vec![b'h'; 3000];
        s.push_command(job(
            100,
            CommandKind::Atomic(vec![add_leaf(101, "./Vendor/Huge", &huge)]),
        ));
        s.push_command(job(
            200,
            CommandKind::Sequence(vec![
                add_node(201, "./Vendor/Seq"),
                job(
                    202,
                    CommandKind::Atomic(vec![add_leaf(203, "./Vendor/Seq/H", &huge)]),
                ),
            ]),
        ));
        s.push_command(get(300, "./DevInfo/Mod"));
        let run = drive(&mut c, &mut s, &account(AuthType::Md5));
        assert!(
            run.server_msgs.len() > 2,
            "the Atomics went over several messages"
        );
        assert!(run.server_msgs.iter().all(|(_, len)| *len <= 2000));
        for k in 0..4u64 {
            let j = 10 * (k + 1);
            assert_eq!(run.status_of(j), StatusCode::OK);
            assert_eq!(run.status_of(j + 1), StatusCode::OK);
            assert_eq!(run.status_of(j + 2), StatusCode::OK);
        }
        let atomics: Vec<usize> = run
            .server_msgs
            .iter()
            .flat_map(|(m, _)| &m.body)
            .filter_map(|c| match c {
                Command::Atomic(a) => Some(a.commands.len()),
                _ => None,
            })
            .collect();
        assert_eq!(
            atomics,
            vec![2; 4],
            "each Atomic whole, the huge ones never sent"
        );
        assert_eq!(run.status_of(100), StatusCode::ATOMIC_RESPONSE_TOO_LARGE);
        assert_eq!(run.status_of(101), StatusCode::NOT_EXECUTED);
        assert_eq!(run.status_of(200), StatusCode::ATOMIC_RESPONSE_TOO_LARGE);
        assert_eq!(run.status_of(201), StatusCode::NOT_EXECUTED);
        assert_eq!(run.status_of(202), StatusCode::NOT_EXECUTED);
        assert_eq!(run.status_of(203), StatusCode::NOT_EXECUTED);
        assert!(c.tree().node(&uri("./Vendor/Huge")).is_none());
        assert!(c.tree().node(&uri("./Vendor/Seq")).is_none());
        assert_eq!(run.results_of(300), b"Rocket");
        assert_eq!(run.server_ended(), Some(EndReason::Completed));
    }
}

//! Client Authority Delegation when things go wrong (PROTOCOL B.3, B.4,
//! B.6, B.9): a peer that is down, refuses, or is a stranger; a device
//! that refuses or never comes; documents tampered with, repeated or out
//! of order; staff aborting at several steps. Each case ends the same on
//! both servers and leaves the device as it was.

mod common;

use axum::body::Bytes;
use common::world::*;
use common::Kind;
use handover::dm::{Acl, DevId, ServerId, TreeUri};
use handover::peer::client::PeerClient;
use handover::peer::endpoint::{status_document, Endpoint, PeerInbox, VerifiedPeer};
use handover::peer::identity::Identity;
use handover::peer::pin::Pins;
use handover::peer::{DmUrl, Peer, PeerUrl};
use handover::store::{devices, peers};
use handover_delegation::sign;
use handover_delegation::terms::{Rights, Subtree};
use handover_delegation::wire::{
    Device, Initiator, MsgType, NonceB64, Payload, Scope, Term, Terms, MEDIA_TYPE,
};
use handover_delegation::{DelegationId, DelegationMessage, MsgId, UtcTime};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Ends of a failed delegation: aborted with `code` on both sides, DMS-1's
/// revert done once the device comes, and the device as `before`.
async fn ends_reverted(
    w: &World,
    id1: i64,
    id2: Option<i64>,
    code: &str,
    before: &[(String, String, Option<Vec<u8>>)],
    devid: &str,
) {
    wait_for("DMS-1 aborted", Duration::from_secs(30), async || {
        outcome_of(&w.dms1, id1).await == "aborted"
    })
    .await;
    if let Some(id2) = id2 {
        wait_for("DMS-2 aborted", Duration::from_secs(30), async || {
            outcome_of(&w.dms2, id2).await == "aborted"
        })
        .await;
    }
    for (a, id) in [(&w.dms1, Some(id1)), (&w.dms2, id2)] {
        let Some(id) = id else { continue };
        let d = a.delegation(id).await;
        let ended = d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["event"] == "delegation.aborted")
            .unwrap_or_else(|| panic!("no abort recorded: {d:#}"));
        assert_eq!(ended["details"]["code"], code, "{d:#}");
    }
    // A delegation that ended before DMS-1 touched the device has nothing
    // to revert.
    let touched = w
        .dms1
        .events(id1)
        .await
        .iter()
        .any(|e| e == "delegation.device_work");
    if touched {
        w.contact_until("the revert", async || w.dms1.reverted(id1).await)
            .await;
    } else {
        w.contact().await;
    }
    let after = w.sim.tree(devid).await.unwrap();
    if snapshot(&after) != before && std::env::var_os("SHOW").is_some() {
        for s in w.dms1.delegation(id1).await["steps"].as_array().unwrap() {
            eprintln!("{} {} {}", s["event"], s["actor"], s["details"]);
        }
    }
    assert_eq!(snapshot(&after), before);
    assert_eq!(account_servers(&after), vec![DMS1.to_owned()]);
    if let Some(d2) = devices::get(&w.dms2.db, devid).await.unwrap() {
        assert_eq!(d2.state, "released", "DMS-2 forgets the device (B.6)");
    }
}

fn no_push() -> Opts {
    Opts {
        push: false,
        ..Opts::default()
    }
}

// B.3 Delivery: DMS-2 stops while DMS-1 has Start to send; DMS-1 retries
// the identical document until DMS-2, started again on the same data and
// ports, takes it; the delegation then completes.
async fn peer_down(kind: Kind) {
    let Some(mut w) = world(kind, no_push()).await else {
        return;
    };
    let devid = w.devids[0].clone();
    let (id1, id2) =
        request_and_approve(&w.dms1, &w.dms2, body(&devid, DMS2, false, false, false)).await[0];
    wait_state(&w.dms1, id1, "PreparingClient", Duration::from_secs(20)).await;
    w.dms2.stop().await;
    w.contact().await; // DMS-1 prepares the client and queues Start
    wait_for("Start retried", Duration::from_secs(30), async || {
        let d = w.dms1.delegation(id1).await;
        d["messages"].as_array().unwrap().iter().any(|m| {
            m["msg_type"] == "Start"
                && m["attempts"].as_i64().unwrap_or(0) >= 2
                && m["code"].is_null()
        })
    })
    .await;
    w.dms2.restart().await;
    wait_state(&w.dms2, id2, "Bootstrapping", Duration::from_secs(30)).await;
    let (d1, d2) = (&w.dms1, &w.dms2);
    w.contact_until("completion", async || {
        state_of(d1, id1).await == "Completed" && state_of(d2, id2).await == "Completed"
    })
    .await;
    let tree = w.sim.tree(&devid).await.unwrap();
    assert_eq!(
        account_servers(&tree),
        vec![DMS1.to_owned(), DMS2.to_owned()]
    );
    w.stop().await;
}

// B.4: the other side's staff rejects with a reason: Aborted (rejected) on
// both sides, the device untouched.
async fn rejected(kind: Kind) {
    let Some(w) = world(kind, no_push()).await else {
        return;
    };
    let devid = w.devids[0].clone();
    let before = snapshot(&w.sim.tree(&devid).await.unwrap());
    let id1 = request(&w.dms1, body(&devid, DMS2, true, true, false)).await[0];
    let id2 = incoming(&w.dms1, id1, &w.dms2).await;
    let (s, v) = w.dms2.act(id2, "reject", "").await;
    assert_eq!(s, 400, "a rejection needs a reason: {v}");
    let (s, v) = w.dms2.act(id2, "reject", "not this device").await;
    assert_eq!(s, 200, "{v}");
    ends_reverted(&w, id1, Some(id2), "rejected", &before, &devid).await;
    let d = w.dms1.delegation(id1).await;
    let text = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["event"] == "delegation.aborted")
        .unwrap()["details"]["reason"]
        .clone();
    assert_eq!(text, "not this device");
    w.stop().await;
}

// B.5/B.6: the device refuses the bootstrap Atomic (425 on ./DMAcc):
// Abort(device-error) on both sides and nothing of DMS-2 on the device.
async fn device_refuses_bootstrap(kind: Kind) {
    let Some(w) = world(kind, no_push()).await else {
        return;
    };
    let devid = w.devids[0].clone();
    w.sim
        .edit_tree(&devid, |t| {
            t.set_acl_local(
                &TreeUri::parse("./DMAcc").unwrap(),
                Acl::parse("Get=*").unwrap(),
            );
        })
        .await;
    let before = snapshot(&w.sim.tree(&devid).await.unwrap());
    let (id1, id2) =
        request_and_approve(&w.dms1, &w.dms2, body(&devid, DMS2, false, true, false)).await[0];
    wait_state(&w.dms1, id1, "PreparingClient", Duration::from_secs(20)).await;
    w.contact().await;
    ends_reverted(&w, id1, Some(id2), "device-error", &before, &devid).await;
    w.stop().await;
}

// B.6: the device refuses the step 6 Atomic (425: DMS-1 lost Replace on
// the scope between its read and its write): Abort(device-error); once the
// device accepts again, the revert restores every ACL and deletes DMS-2's
// account.
async fn device_refuses_acl_update(kind: Kind) {
    let Some(w) = world(kind, no_push()).await else {
        return;
    };
    let devid = w.devids[0].clone();
    let before = snapshot(&w.sim.tree(&devid).await.unwrap());
    let (id1, id2) =
        request_and_approve(&w.dms1, &w.dms2, body(&devid, DMS2, false, true, false)).await[0];
    let d1 = &w.dms1;
    w.contact_until("the step 6 read queued", async || {
        d1.did_work(id1, "ReadingAcls").await
    })
    .await;
    let corp = TreeUri::parse("./Vendor/Corp").unwrap();
    let managed = w
        .sim
        .tree(&devid)
        .await
        .unwrap()
        .node(&corp)
        .unwrap()
        .acl
        .clone();
    w.sim
        .edit_tree(&devid, |t| {
            t.set_acl_local(&corp, Acl::parse("Get=*").unwrap());
        })
        .await;
    w.contact_until("DMS-1 aborted", async || {
        outcome_of(d1, id1).await == "aborted"
    })
    .await;
    w.sim
        .edit_tree(&devid, |t| {
            t.set_acl_local(&corp, managed);
        })
        .await;
    ends_reverted(&w, id1, Some(id2), "device-error", &before, &devid).await;
    w.stop().await;
}

// B.6 Deadlines: the device never comes while DMS-1 prepares it: Abort
// (timeout) on both sides; the revert waits for the device and is done
// when it comes back.
async fn device_never_connects(kind: Kind) {
    let opts = Opts {
        push: false,
        tune: |s| s.deadlines.device_contact = time::Duration::seconds(3),
        ..Opts::default()
    };
    let Some(w) = world(kind, opts).await else {
        return;
    };
    let devid = w.devids[0].clone();
    let before = snapshot(&w.sim.tree(&devid).await.unwrap());
    let (id1, id2) =
        request_and_approve(&w.dms1, &w.dms2, body(&devid, DMS2, false, true, false)).await[0];
    wait_for("the timeout", Duration::from_secs(30), async || {
        outcome_of(&w.dms1, id1).await == "aborted"
    })
    .await;
    assert!(!w.dms1.reverted(id1).await, "no device, no revert yet");
    ends_reverted(&w, id1, Some(id2), "timeout", &before, &devid).await;
    w.stop().await;
}

// B.6: staff abort at several steps, on either side; each ends aborted
// (cancelled) on both, and the device as before.
async fn staff_aborts(kind: Kind) {
    let Some(w) = world(
        kind,
        Opts {
            devices: 3,
            push: false,
            ..Opts::default()
        },
    )
    .await
    else {
        return;
    };
    let befores = {
        let mut v = Vec::new();
        for d in &w.devids {
            v.push(snapshot(&w.sim.tree(d).await.unwrap()));
        }
        v
    };
    // 1. DMS-1, waiting for DMS-2's staff.
    let devid = &w.devids[0];
    let id1 = request(&w.dms1, body(devid, DMS2, false, true, false)).await[0];
    let id2 = incoming(&w.dms1, id1, &w.dms2).await;
    let (s, v) = w.dms1.act(id1, "abort", "changed our mind").await;
    assert_eq!(s, 200, "{v}");
    ends_reverted(&w, id1, Some(id2), "cancelled", &befores[0], devid).await;

    // 2. DMS-2, while it waits for the device to bootstrap.
    let devid = &w.devids[1];
    let (id1, id2) =
        request_and_approve(&w.dms1, &w.dms2, body(devid, DMS2, false, false, false)).await[0];
    let d2 = &w.dms2;
    w.contact_until("Bootstrapping on DMS-2", async || {
        state_of(d2, id2).await == "Bootstrapping"
    })
    .await;
    let (s, v) = w.dms2.act(id2, "abort", "").await;
    assert_eq!(s, 200, "{v}");
    ends_reverted(&w, id1, Some(id2), "cancelled", &befores[1], devid).await;

    // 3. DMS-1, with the step 6 read queued.
    let devid = &w.devids[2];
    let (id1, id2) =
        request_and_approve(&w.dms2, &w.dms1, body(devid, DMS1, true, true, true)).await[0];
    let (id1, id2) = (id2, id1);
    let d1 = &w.dms1;
    w.contact_until("the step 6 read queued", async || {
        d1.did_work(id1, "ReadingAcls").await
    })
    .await;
    let (s, v) = w.dms1.act(id1, "abort", "stop").await;
    assert_eq!(s, 200, "{v}");
    ends_reverted(&w, id1, Some(id2), "cancelled", &befores[2], devid).await;
    // Ended: nothing more to abort.
    assert_eq!(w.dms1.act(id1, "abort", "again").await.0, 409);
    w.stop().await;
}

// ------------------------------------------------------- a crafted peer

const FAKE: &str = "fake.test";

/// Records what a server sends it and answers every document as accepted.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<DelegationMessage>>>);

#[async_trait::async_trait]
impl PeerInbox for Recorder {
    async fn receive(&self, _from: VerifiedPeer, body: Bytes) -> (u16, Vec<u8>) {
        match DelegationMessage::parse(&body, MEDIA_TYPE) {
            Ok(m) => {
                let code = m.msg_type().success_code();
                self.0.lock().unwrap().push(m);
                (code, status_document(code, "ok"))
            }
            Err(_) => (400, status_document(400, "unreadable")),
        }
    }
}

/// A peer played by the test: its own identity, an endpoint that records
/// what it receives, and a client that posts crafted documents.
struct Fake {
    _dir: tempfile::TempDir,
    identity: Arc<Identity>,
    inbox: Recorder,
    dms1: Peer,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Fake {
    /// Pinned on DMS-1 (and DMS-1 pinned here) when `pinned`.
    async fn start(w: &World, server_id: &str, pinned: bool) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let identity = Arc::new(Identity::load_or_create(dir.path(), server_id).unwrap().0);
        let dms1_fp = w.dms1.identity().fingerprint().clone();
        let inbox = Recorder::default();
        let endpoint = Endpoint::new(
            &identity,
            Pins::fixed([(dms1_fp.clone(), ServerId::parse(DMS1).unwrap())]),
            Arc::new(inbox.clone()),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(endpoint.serve(listener, rx));
        if pinned {
            peers::add(
                &w.dms1.db,
                &Peer {
                    server_id: ServerId::parse(server_id).unwrap(),
                    url: PeerUrl::parse(&format!("https://{addr}")).unwrap(),
                    dm_url: DmUrl::parse("http://127.0.0.1:9/dm").unwrap(),
                    fingerprint: identity.fingerprint().clone(),
                    auto_accept: None,
                    created_at: 0,
                    updated_at: 0,
                },
            )
            .await
            .unwrap();
        }
        Fake {
            _dir: dir,
            identity,
            inbox,
            dms1: peer_entry(DMS1, &w.dms1.bound, dms1_fp),
            _stop: stop,
        }
    }

    fn doc(&self, delegation: &DelegationId, payload: Payload) -> Vec<u8> {
        DelegationMessage {
            msg_id: MsgId::parse(&uuid::Uuid::new_v4().to_string()).unwrap(),
            delegation_id: delegation.clone(),
            sender: ServerId::parse(self.identity.server_id()).unwrap(),
            recipient: ServerId::parse(DMS1).unwrap(),
            sent: UtcTime::new(time::OffsetDateTime::now_utc()),
            payload,
        }
        .serialize()
    }

    /// Posts to DMS-1; the HTTP status and the answer's text.
    async fn post(&self, bytes: &[u8]) -> Result<(u16, String), String> {
        let a = PeerClient::new(self.identity.clone())
            .post(&self.dms1, Bytes::from(bytes.to_vec()))
            .await
            .map_err(|e| e.to_string())?;
        Ok((a.status, String::from_utf8_lossy(&a.body).into_owned()))
    }

    async fn received(&self, t: MsgType) -> DelegationMessage {
        for _ in 0..200 {
            if let Some(m) = self
                .inbox
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|m| m.msg_type() == t)
            {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("DMS-1 sent no {t:?}");
    }
}

fn fake_terms(devid: &str) -> Terms {
    Terms {
        initiator: Initiator::Delegated,
        delegating: ServerId::parse(DMS1).unwrap(),
        delegated: ServerId::parse(FAKE).unwrap(),
        device: Device {
            dev_id: DevId::parse(devid.to_owned()).unwrap(),
            man: String::new(),
            model: String::new(),
        },
        scope: Scope::Partial(vec![Subtree {
            uri: "./Vendor/Corp/Apps".into(),
            rights: Rights::parse("Get").unwrap(),
        }]),
        term: Term::Permanent,
        reason: None,
        requested_by: None,
        approved_by: None,
    }
}

/// A well-formed signature over the wrong input.
fn forged(identity: &Identity) -> handover_delegation::wire::SignatureB64 {
    sign::sign(identity.private_key().signing_key(), "not the terms\n")
}

// B.1: a server whose certificate is pinned nowhere is refused in the
// handshake; nothing is created.
async fn unpinned_certificate(kind: Kind) {
    let Some(w) = world(kind, no_push()).await else {
        return;
    };
    let stranger = Fake::start(&w, "stranger.test", false).await;
    let id = DelegationId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let mut terms = fake_terms(&w.devids[0]);
    terms.delegated = ServerId::parse("stranger.test").unwrap();
    let doc = stranger.doc(
        &id,
        Payload::Notification {
            terms,
            nonce: NonceB64::from_bytes(&[1; 18]).unwrap(),
        },
    );
    let r = stranger.post(&doc).await;
    assert!(r.is_err(), "a stranger got an answer: {r:?}");
    assert!(w.dms1.list("").await.is_empty());
    w.stop().await;
}

// B.3 idempotency, B.9 order, B.4: a repeated Notification gets the stored
// answer; a document out of order is 409 with Expected; an AuthResponse
// whose signature does not verify is 401, DMS-1 ends aborted (auth-failed)
// and sends Abort(auth-failed); repeating it gets the same 401.
async fn crafted_initiator(kind: Kind) {
    let Some(w) = world(kind, no_push()).await else {
        return;
    };
    let fake = Fake::start(&w, FAKE, true).await;
    let id = DelegationId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let notification = fake.doc(
        &id,
        Payload::Notification {
            terms: fake_terms(&w.devids[0]),
            nonce: NonceB64::from_bytes(&[1; 18]).unwrap(),
        },
    );
    let first = fake.post(&notification).await.unwrap();
    assert_eq!(first.0, 202, "{}", first.1);
    assert_eq!(fake.post(&notification).await.unwrap(), first);
    let rows = w.dms1.list("").await;
    assert_eq!(rows.len(), 1, "one delegation for a repeated Notification");
    let row = rows[0]["id"].as_i64().unwrap();
    let challenge = fake.received(MsgType::AuthChallenge).await;
    assert_eq!(challenge.delegation_id, id);
    // Out of order: Accept before AuthResponse.
    let (code, text) = fake
        .post(&fake.doc(
            &id,
            Payload::Accept {
                approver: "x".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("<Expected>AuthResponse</Expected>"), "{text}");
    assert_eq!(state_of(&w.dms1, row).await, "AwaitingAuthResponse");
    // Unknown delegation: 404.
    let other = DelegationId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    let (code, text) = fake
        .post(&fake.doc(
            &other,
            Payload::AuthResponse {
                signature: forged(&fake.identity),
            },
        ))
        .await
        .unwrap();
    assert_eq!(code, 404, "{text}");
    // A forged AuthResponse.
    let bad = fake.doc(
        &id,
        Payload::AuthResponse {
            signature: forged(&fake.identity),
        },
    );
    let (code, text) = fake.post(&bad).await.unwrap();
    assert_eq!(code, 401, "{text}");
    assert_eq!(outcome_of(&w.dms1, row).await, "aborted");
    let abort = fake.received(MsgType::Abort).await;
    match abort.payload {
        Payload::Abort(r) => assert_eq!(r.code.as_str(), "auth-failed"),
        p => panic!("{p:?}"),
    }
    assert_eq!(fake.post(&bad).await.unwrap().0, 401, "the stored answer");
    // Anything else for the ended delegation: 410.
    let (code, _) = fake
        .post(&fake.doc(
            &id,
            Payload::AuthResponse {
                signature: forged(&fake.identity),
            },
        ))
        .await
        .unwrap();
    assert_eq!(code, 410);
    w.stop().await;
}

// B.4: DMS-1 initiates towards the crafted peer, whose AuthChallenge
// carries a signature that does not verify: 401, Aborted (auth-failed),
// Abort sent.
async fn crafted_challenge(kind: Kind) {
    let Some(w) = world(kind, no_push()).await else {
        return;
    };
    let fake = Fake::start(&w, FAKE, true).await;
    let id1 = request(&w.dms1, body(&w.devids[0], FAKE, false, false, false)).await[0];
    let n = fake.received(MsgType::Notification).await;
    let doc = fake.doc(
        &n.delegation_id,
        Payload::AuthChallenge {
            nonce: NonceB64::from_bytes(&[2; 18]).unwrap(),
            signature: forged(&fake.identity),
        },
    );
    let (code, text) = fake.post(&doc).await.unwrap();
    assert_eq!(code, 401, "{text}");
    assert_eq!(outcome_of(&w.dms1, id1).await, "aborted");
    let abort = fake.received(MsgType::Abort).await;
    match abort.payload {
        Payload::Abort(r) => assert_eq!(r.code.as_str(), "auth-failed"),
        p => panic!("{p:?}"),
    }
    // Nothing reached the device.
    let tree = w.sim.tree(&w.devids[0]).await.unwrap();
    assert_eq!(account_servers(&tree), vec![DMS1.to_owned()]);
    w.stop().await;
}

macro_rules! on_both {
    ($($name:ident,)*) => {$(
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                common::bounded(concat!(module_path!(), "::sqlite"), 2, super::$name(Kind::Sqlite));
            }
            #[test]
            fn postgres() {
                common::bounded(concat!(module_path!(), "::postgres"), 2, super::$name(Kind::Postgres));
            }
        }
    )*};
}

on_both! {
    peer_down,
    rejected,
    device_refuses_bootstrap,
    device_refuses_acl_update,
    device_never_connects,
    staff_aborts,
    unpinned_certificate,
    crafted_initiator,
    crafted_challenge,
}

//! B.8: every arrow of the diagram, failure arrows included, and DMS-1 and
//! DMS-2 driven against each other on a simulated clock with a simulated
//! device (STYLE lesson 1, after quinn-proto's `tests/util.rs`).

use std::collections::VecDeque;

use handover_dm::{AuthType, DevId};

use super::*;
use crate::terms::{Rights, Subtree};
use crate::wire::{Device, MsgId, OneTime, Scope, Term, MEDIA_TYPE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    One,
    Two,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::One => Side::Two,
            Side::Two => Side::One,
        }
    }

    fn id(self) -> ServerId {
        ServerId::parse(match self {
            Side::One => "carrier.example",
            Side::Two => "corp.example",
        })
        .unwrap()
    }
}

fn t0() -> UtcTime {
    UtcTime::parse("2026-11-27T10:00:00Z").unwrap()
}

fn terms(initiator: Side, scope: Scope, term: Term) -> Terms {
    Terms {
        initiator: match initiator {
            Side::One => Initiator::Delegating,
            Side::Two => Initiator::Delegated,
        },
        delegating: Side::One.id(),
        delegated: Side::Two.id(),
        device: Device {
            dev_id: DevId::parse("IMEI:490154203237518").unwrap(),
            man: "Acme".into(),
            model: "X1".into(),
        },
        scope,
        term,
        reason: Some("Ticket 4711".into()),
        requested_by: None,
        approved_by: None,
    }
}

fn partial() -> Scope {
    Scope::Partial(vec![Subtree {
        uri: "./Vendor/Corp/Apps".into(),
        rights: Rights::parse("Add,Get").unwrap(),
    }])
}

fn temporary() -> Term {
    Term::Temporary {
        expires: t0() + Duration::days(30),
    }
}

fn credentials() -> BootstrapCredentials {
    BootstrapCredentials {
        account_node: "./DMAcc/corp-example".into(),
        auth_type: AuthType::Md5,
        client_name: "cl-1".into(),
        client_secret: OneTime::new("client-secret-xyz"),
        client_nonce: OneTime::new("YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4"),
        server_name: "corp.example".into(),
        server_secret: OneTime::new("server-secret-xyz"),
        server_nonce: OneTime::new("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"),
        push_address: None,
    }
}

fn dev_info(dev_id: &str) -> DevInfo {
    DevInfo {
        dev_id: DevId::parse(dev_id).unwrap(),
        man: "Acme".into(),
        model: "X1".into(),
        dmv: "1.2".into(),
        lang: "en".into(),
    }
}

fn acls() -> Vec<AclEntry> {
    vec![AclEntry {
        uri: "./Vendor/Corp/Apps".into(),
        value: "Add=carrier.example+corp.example&Get=*".into(),
    }]
}

/// Two servers, the network between them (FIFO, one message delivered per
/// step) and a device that does whatever it is asked, on a simulated clock.
struct World {
    now: UtcTime,
    k1: SigningKey,
    k2: SigningKey,
    dms1: Option<Dms1>,
    dms2: Option<Dms2>,
    net: VecDeque<(Side, Payload)>,
    work: VecDeque<(Side, DeviceWork)>,
    auto_approve: bool,
    seq: u64,
    log: Vec<(Side, Output)>,
    answers: Vec<(Side, MsgType, u16)>,
}

impl World {
    fn new(initiator: Side, scope: Scope, term: Term) -> Self {
        let mut w = World {
            now: t0(),
            k1: SigningKey::from_slice(&[1; 32]).unwrap(),
            k2: SigningKey::from_slice(&[2; 32]).unwrap(),
            dms1: None,
            dms2: None,
            net: VecDeque::new(),
            work: VecDeque::new(),
            auto_approve: true,
            seq: 0,
            log: Vec::new(),
            answers: Vec::new(),
        };
        let terms = terms(initiator, scope, term);
        let id = DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap();
        let d = Deadlines::default();
        let out = match initiator {
            Side::One => {
                let (m, out) = Dms1::initiate(id, terms, nonce(1), d, w.now).unwrap();
                w.dms1 = Some(m);
                out
            }
            Side::Two => {
                let (m, out) = Dms2::initiate(id, terms, nonce(2), d, w.now).unwrap();
                w.dms2 = Some(m);
                out
            }
        };
        w.absorb(initiator, out);
        w
    }

    fn one(&mut self) -> &mut Dms1 {
        self.dms1.as_mut().unwrap()
    }

    fn two(&mut self) -> &mut Dms2 {
        self.dms2.as_mut().unwrap()
    }

    fn state(&self, side: Side) -> &'static str {
        match side {
            Side::One => self.dms1.as_ref().map_or("-", |m| m.state.name()),
            Side::Two => self.dms2.as_ref().map_or("-", |m| m.state.name()),
        }
    }

    fn absorb(&mut self, side: Side, outputs: Vec<Output>) {
        for o in outputs {
            match &o {
                Output::Send(p) => self.net.push_back((side, p.clone())),
                Output::DeviceWork(dw) => self.work.push_back((side, dw.clone())),
                _ => {}
            }
            self.log.push((side, o));
        }
    }

    /// A document from `from`, through the wire format and back.
    fn wrap(&mut self, from: Side, payload: Payload) -> DelegationMessage {
        self.seq += 1;
        let m = DelegationMessage {
            msg_id: MsgId::parse(&format!("00000000-0000-4000-8000-{:012x}", self.seq)).unwrap(),
            delegation_id: DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap(),
            sender: from.id(),
            recipient: from.other().id(),
            sent: self.now,
            payload,
        };
        let back = DelegationMessage::parse(&m.serialize(), MEDIA_TYPE).unwrap();
        assert_eq!(back, m);
        back
    }

    /// `to` receives `msg`; returns the answer without telling the sender.
    fn receive(&mut self, to: Side, msg: &DelegationMessage) -> DelegationStatus {
        let now = self.now;
        let (k1, k2) = (&self.k1, &self.k2);
        let step = match to {
            Side::One => {
                let keys = Keys {
                    own: k1,
                    peer: k2.verifying_key(),
                };
                match &mut self.dms1 {
                    Some(m) => m.handle_message(now, msg, keys),
                    None => {
                        let d = Deadlines::default();
                        match Dms1::accept_notification(msg, nonce(1), d, now, keys) {
                            Ok((m, step)) => {
                                self.dms1 = Some(m);
                                step
                            }
                            Err(answer) => Step {
                                answer,
                                outputs: vec![],
                            },
                        }
                    }
                }
            }
            Side::Two => {
                let keys = Keys {
                    own: k2,
                    peer: k1.verifying_key(),
                };
                match &mut self.dms2 {
                    Some(m) => m.handle_message(now, msg, keys),
                    None => {
                        let d = Deadlines::default();
                        match Dms2::accept_notification(msg, nonce(2), d, now, keys) {
                            Ok((m, step)) => {
                                self.dms2 = Some(m);
                                step
                            }
                            Err(answer) => Step {
                                answer,
                                outputs: vec![],
                            },
                        }
                    }
                }
            }
        };
        self.absorb(to, step.outputs);
        step.answer
    }

    fn answer(&mut self, side: Side, sent: MsgType, code: u16) {
        let now = self.now;
        self.answers.push((side, sent, code));
        let out = match side {
            Side::One => self.dms1.as_mut().map(|m| m.handle_answer(now, sent, code)),
            Side::Two => self.dms2.as_mut().map(|m| m.handle_answer(now, sent, code)),
        };
        self.absorb(side, out.unwrap_or_default());
    }

    /// Delivers the next message and its answer.
    fn deliver(&mut self) -> Option<(Side, MsgType, u16)> {
        let (from, payload) = self.net.pop_front()?;
        let msg = self.wrap(from, payload);
        let answer = self.receive(from.other(), &msg);
        assert_eq!(answer.msg_ref.as_ref(), Some(&msg.msg_id));
        assert_eq!(answer.expected.is_some(), answer.code == 409);
        self.answer(from, msg.msg_type(), answer.code);
        Some((from, msg.msg_type(), answer.code))
    }

    /// The device does the next piece of work, successfully.
    fn work_one(&mut self) -> bool {
        let Some((side, work)) = self.work.pop_front() else {
            return false;
        };
        let now = self.now;
        let out = match (side, work) {
            (Side::One, DeviceWork::PrepareClient) => {
                self.one().client_prepared(now, credentials())
            }
            (Side::Two, DeviceWork::Bootstrap(_)) => self
                .two()
                .bootstrapped(now, dev_info("IMEI:490154203237518")),
            (Side::One, DeviceWork::UpdateAcls) => self.one().acls_updated(now, acls()),
            (Side::One, DeviceWork::Revert) => self.one().revert_done(),
            (_, DeviceWork::DeleteOwnAccount | DeviceWork::ForgetClient) => Ok(vec![]),
            (side, work) => panic!("{side:?} asked for {work:?}"),
        };
        // Work reported after an abort is refused, as the server would see.
        self.absorb(side, out.unwrap_or_default());
        true
    }

    fn approve_pending(&mut self) -> bool {
        if !self.auto_approve {
            return false;
        }
        let now = self.now;
        let approver = Approver::Staff("Cleo Desk".into());
        if self.state(Side::One) == "AwaitingApproval" {
            let out = self.one().approve(now, approver).unwrap();
            self.absorb(Side::One, out);
            true
        } else if self.state(Side::Two) == "AwaitingApproval" {
            let out = self.two().approve(now, approver).unwrap();
            self.absorb(Side::Two, out);
            true
        } else {
            false
        }
    }

    /// One event, one simulated minute later.
    fn step(&mut self) -> bool {
        self.now = self.now + Duration::minutes(1);
        self.deliver().is_some() || self.work_one() || self.approve_pending()
    }

    fn run(&mut self) {
        for _ in 0..100 {
            if !self.step() {
                return;
            }
        }
        panic!("no quiescence");
    }

    fn run_until(&mut self, side: Side, state: &str) {
        for _ in 0..100 {
            if self.state(side) == state {
                return;
            }
            assert!(self.step(), "stuck before {side:?} reached {state}");
        }
        panic!("{side:?} never reached {state}");
    }

    fn sent(&self, side: Side) -> Vec<MsgType> {
        self.log
            .iter()
            .filter(|(s, _)| *s == side)
            .filter_map(|(_, o)| match o {
                Output::Send(p) => Some(p.msg_type()),
                _ => None,
            })
            .collect()
    }

    fn outputs(&self, side: Side) -> Vec<&Output> {
        self.log
            .iter()
            .filter(|(s, _)| *s == side)
            .map(|(_, o)| o)
            .collect()
    }

    fn clear_log(&mut self) {
        self.log.clear();
    }

    /// Takes the next queued message off the network.
    fn intercept(&mut self) -> (Side, Payload) {
        self.net.pop_front().expect("a message in flight")
    }
}

fn nonce(seed: u8) -> NonceB64 {
    NonceB64::from_bytes(&[seed; 16]).unwrap()
}

fn reason_code(side: Side, w: &World) -> Option<ReasonCode> {
    match side {
        Side::One => match &w.dms1.as_ref()?.state {
            Dms1State::Aborted { reason, .. }
            | Dms1State::Revoked { reason, .. }
            | Dms1State::Relinquished { reason, .. } => Some(reason.code),
            _ => None,
        },
        Side::Two => match &w.dms2.as_ref()?.state {
            Dms2State::Aborted { reason }
            | Dms2State::Revoked { reason }
            | Dms2State::Relinquished { reason } => Some(reason.code),
            _ => None,
        },
    }
}

fn revert_of(w: &World) -> Revert {
    match &w.dms1.as_ref().unwrap().state {
        Dms1State::Aborted { revert, .. }
        | Dms1State::Revoked { revert, .. }
        | Dms1State::Relinquished { revert, .. } => *revert,
        s => panic!("not ended: {s:?}"),
    }
}

// ---------------------------------------------------------- full runs

#[test]
fn b8_full_delegation_each_initiator() {
    for initiator in [Side::One, Side::Two] {
        let mut w = World::new(initiator, partial(), temporary());
        w.run();
        assert_eq!(w.state(Side::One), "Completed", "{initiator:?}");
        assert_eq!(w.state(Side::Two), "Completed", "{initiator:?}");
        let order: Vec<_> = w.answers.iter().map(|(_, t, c)| (*t, *c)).collect();
        assert_eq!(
            order,
            vec![
                (MsgType::Notification, 202),
                (MsgType::AuthChallenge, 202),
                (MsgType::AuthResponse, 202),
                (MsgType::Accept, 202),
                (MsgType::Start, 202),
                (MsgType::Bootstrapped, 202),
                (MsgType::Complete, 200),
            ]
        );
        // Both signatures are kept by both sides (B.4).
        let (s1, s2) = (
            &w.dms1.as_ref().unwrap().shared,
            &w.dms2.as_ref().unwrap().shared,
        );
        assert_eq!(s1.own_signature, s2.peer_signature);
        assert_eq!(s2.own_signature, s1.peer_signature);
        assert!(s1.own_signature.is_some() && s2.own_signature.is_some());
        let Dms2State::Completed { acls: got } = &w.dms2.as_ref().unwrap().state else {
            panic!()
        };
        assert_eq!(got, &acls());
        // Both purged the one-time values after Bootstrapped (B.5 step 3).
        for side in [Side::One, Side::Two] {
            assert!(w.outputs(side).contains(&&Output::PurgeSecrets));
        }
        // DMS-2's state no longer holds the grant.
        let json = serde_json::to_string(w.dms2.as_ref().unwrap()).unwrap();
        assert!(!json.contains("server-secret-xyz"));
    }
}

#[test]
fn b7_temporary_expires_dms1_revokes_and_dms2_follows() {
    let mut w = World::new(Side::Two, partial(), temporary());
    w.run();
    let expires = t0() + Duration::days(30);
    assert_eq!(w.one().deadline(), Some(expires));
    assert_eq!(w.two().deadline(), Some(expires + Duration::minutes(5)));
    w.now = expires - Duration::seconds(1);
    assert!(w
        .one()
        .handle_timeout(expires - Duration::seconds(1))
        .is_empty());
    w.now = expires;
    let out = w.one().handle_timeout(expires);
    w.absorb(Side::One, out);
    assert_eq!(w.state(Side::One), "Revoked");
    assert_eq!(reason_code(Side::One, &w), Some(ReasonCode::Expired));
    assert_eq!(revert_of(&w), Revert::Reverting);
    w.run();
    assert_eq!(revert_of(&w), Revert::Reverted);
    assert_eq!(w.state(Side::Two), "Revoked");
    assert_eq!(w.answers.last(), Some(&(Side::One, MsgType::Revoke, 200)));
}

#[test]
fn b7_dms2_ends_itself_five_minutes_after_expires() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run();
    let at = t0() + Duration::days(30) + Duration::minutes(5);
    assert!(w.two().handle_timeout(at - Duration::seconds(1)).is_empty());
    let out = w.two().handle_timeout(at);
    assert!(out.contains(&Output::DeviceWork(DeviceWork::ForgetClient)));
    assert_eq!(w.state(Side::Two), "Revoked");
    assert_eq!(reason_code(Side::Two, &w), Some(ReasonCode::Expired));
}

#[test]
fn b7_staff_revoke_and_relinquish() {
    let mut w = World::new(Side::One, partial(), Term::Permanent);
    w.run();
    assert_eq!(w.one().deadline(), None);
    let out = w.one().revoke("project over").unwrap();
    w.absorb(Side::One, out);
    w.run();
    assert_eq!(
        (w.state(Side::One), w.state(Side::Two)),
        ("Revoked", "Revoked")
    );
    assert_eq!(reason_code(Side::Two, &w), Some(ReasonCode::Cancelled));
    assert_eq!(revert_of(&w), Revert::Reverted);

    let mut w = World::new(Side::One, partial(), Term::Permanent);
    w.run();
    let out = w.two().relinquish("not needed").unwrap();
    assert!(out.contains(&Output::DeviceWork(DeviceWork::ForgetClient)));
    w.absorb(Side::Two, out);
    w.run();
    assert_eq!(
        (w.state(Side::One), w.state(Side::Two)),
        ("Relinquished", "Relinquished")
    );
    assert_eq!(reason_code(Side::One, &w), Some(ReasonCode::Relinquished));
    assert_eq!(revert_of(&w), Revert::Reverted);
    assert_eq!(
        w.answers.last(),
        Some(&(Side::Two, MsgType::Relinquish, 200))
    );
}

#[test]
fn b7_full_permanent_is_a_handover_that_cannot_be_undone() {
    let mut w = World::new(Side::Two, Scope::Full, Term::Permanent);
    w.run();
    assert!(w
        .outputs(Side::One)
        .contains(&&Output::DeviceWork(DeviceWork::DeleteOwnAccount)));
    assert_eq!(w.one().revoke("x"), Err(Refused::Handover));
    assert_eq!(w.two().relinquish("x"), Err(Refused::Handover));
    // A peer that tries anyway is refused with 403.
    let m = w.wrap(
        Side::Two,
        Payload::Relinquish(Reason::new(ReasonCode::Relinquished, "")),
    );
    assert_eq!(w.receive(Side::One, &m).code, 403);
    let m = w.wrap(
        Side::One,
        Payload::Revoke(Reason::new(ReasonCode::Cancelled, "")),
    );
    assert_eq!(w.receive(Side::Two, &m).code, 403);
    assert_eq!(
        (w.state(Side::One), w.state(Side::Two)),
        ("Completed", "Completed")
    );
}

/// Every state either side passes through, in order, for one initiator.
fn path(initiator: Side) -> Vec<(Side, &'static str)> {
    let mut w = World::new(initiator, partial(), temporary());
    let mut seen = vec![];
    loop {
        for side in [Side::One, Side::Two] {
            let s = w.state(side);
            if s != "-" && !seen.contains(&(side, s)) {
                seen.push((side, s));
            }
        }
        if !w.step() {
            return seen;
        }
    }
}

#[test]
fn b8_abort_at_each_step_ends_both_sides_and_reverts() {
    for initiator in [Side::One, Side::Two] {
        for (side, state) in path(initiator) {
            if state == "Completed" {
                continue;
            }
            let mut w = World::new(initiator, partial(), temporary());
            w.auto_approve = state != "AwaitingApproval";
            w.run_until(side, state);
            let result = match side {
                Side::One => w.one().abort_by_staff("stop"),
                Side::Two => w.two().abort_by_staff("stop"),
            };
            if state == "Completing" {
                assert!(result.is_err());
                continue;
            }
            let out = result.unwrap();
            w.absorb(side, out);
            w.auto_approve = true;
            w.run();
            let ctx = format!("{initiator:?} initiates, {side:?} aborts in {state}");
            assert_eq!(w.state(side), "Aborted", "{ctx}");
            assert_eq!(reason_code(side, &w), Some(ReasonCode::Cancelled), "{ctx}");
            let other = side.other();
            if w.state(other) != "-" {
                assert_eq!(w.state(other), "Aborted", "{ctx}");
            }
            if w.dms1.is_some() {
                assert_ne!(revert_of(&w), Revert::Reverting, "{ctx}");
            }
        }
    }
}

#[test]
fn b6_timeout_at_each_step_aborts_both_sides() {
    for initiator in [Side::One, Side::Two] {
        for (side, state) in path(initiator) {
            if state == "Completed" {
                continue;
            }
            let mut w = World::new(initiator, partial(), Term::Permanent);
            w.auto_approve = state != "AwaitingApproval";
            w.run_until(side, state);
            let ctx = format!("{initiator:?} initiates, {side:?} times out in {state}");
            let deadline = match side {
                Side::One => w.one().deadline(),
                Side::Two => w.two().deadline(),
            }
            .unwrap_or_else(|| panic!("{ctx}: no deadline"));
            w.now = deadline;
            // B.3: a message is resent until the deadline of the waiting
            // state; at the deadline it is given up.
            w.net.retain(|(from, _)| *from != side);
            let out = match side {
                Side::One => w.one().handle_timeout(deadline),
                Side::Two => w.two().handle_timeout(deadline),
            };
            assert!(out.contains(&Output::Send(Payload::Abort(Reason::new(
                ReasonCode::Timeout,
                "deadline passed"
            )))));
            w.absorb(side, out);
            w.auto_approve = true;
            w.run();
            assert_eq!(w.state(side), "Aborted", "{ctx}");
            if w.state(side.other()) != "-" {
                assert_eq!(w.state(side.other()), "Aborted", "{ctx}");
            }
        }
    }
}

// ------------------------------------------------- DMS-1 arrows, one by one

#[test]
fn dms1_initiate_sends_notification_and_waits_for_auth_challenge() {
    let w = World::new(Side::One, partial(), temporary());
    let out = w.outputs(Side::One);
    assert!(matches!(out[0], Output::Send(Payload::Notification { .. })));
    assert!(out.contains(&&Output::StateChanged {
        from: "",
        to: "AwaitingAuthChallenge"
    }));
    assert!(out.contains(&&Output::SetDeadline(t0() + Duration::minutes(10))));
}

#[test]
fn initiate_refuses_inconsistent_terms() {
    let id = DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap();
    let d = Deadlines::default();
    let t = terms(Side::Two, partial(), temporary());
    assert!(Dms1::initiate(id.clone(), t.clone(), nonce(1), d, t0()).is_err());
    let past = terms(Side::One, partial(), Term::Temporary { expires: t0() });
    assert!(Dms1::initiate(id.clone(), past, nonce(1), d, t0()).is_err());
    assert!(Dms2::initiate(
        id,
        terms(Side::One, partial(), temporary()),
        nonce(1),
        d,
        t0()
    )
    .is_err());
}

#[test]
fn b4_notification_with_past_expires_is_400_and_creates_nothing() {
    let mut w = World::new(Side::Two, partial(), temporary());
    w.now = t0() + Duration::days(31);
    let (from, p) = w.intercept();
    let m = w.wrap(from, p);
    assert_eq!(w.receive(Side::One, &m).code, 400);
    assert!(w.dms1.is_none());
    w.answer(Side::Two, MsgType::Notification, 400);
    assert_eq!(reason_code(Side::Two, &w), Some(ReasonCode::PeerError));
    assert!(w.net.is_empty(), "no Abort after a refused Notification");
}

#[test]
fn dms1_other_side_answers_notification_with_signed_auth_challenge() {
    let mut w = World::new(Side::Two, partial(), temporary());
    let (_, code) = w.deliver().map(|(_, t, c)| (t, c)).unwrap();
    assert_eq!(code, 202);
    assert_eq!(w.state(Side::One), "AwaitingAuthResponse");
    let Some((
        _,
        Payload::AuthChallenge {
            nonce: n2,
            signature,
        },
    )) = w.net.front().cloned()
    else {
        panic!()
    };
    let s = &w.dms1.as_ref().unwrap().shared;
    let input = sign::signature_input(&s.canonical(), &Side::One.id(), &n2, &nonce(2));
    assert!(sign::verify(w.k1.verifying_key(), &input, &signature));
}

#[test]
fn dms1_auth_challenge_ok_sends_auth_response_and_awaits_accept() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::Two, "AwaitingAuthResponse");
    w.deliver();
    assert_eq!(w.state(Side::One), "AwaitingAccept");
    assert_eq!(
        w.sent(Side::One),
        vec![MsgType::Notification, MsgType::AuthResponse]
    );
    let d = Deadlines::default();
    assert_eq!(
        w.one().deadline(),
        Some(w.now + d.staff_approval + d.peer_reply)
    );
}

/// Replaces the signature of the next message with one by the wrong key.
fn forge_next(w: &mut World) -> (Side, DelegationMessage) {
    let (from, mut p) = w.intercept();
    let bad = sign::sign(&SigningKey::from_slice(&[9; 32]).unwrap(), "forged");
    match &mut p {
        Payload::AuthChallenge { signature, .. } | Payload::AuthResponse { signature } => {
            *signature = bad
        }
        other => panic!("not signed: {other:?}"),
    }
    let m = w.wrap(from, p);
    (from, m)
}

#[test]
fn b4_bad_signature_is_401_abort_auth_failed_each_side_and_direction() {
    // (initiator, message to forge): the AuthChallenge reaches the
    // initiator, the AuthResponse the other side.
    for initiator in [Side::One, Side::Two] {
        for forged in ["AwaitingAuthChallenge", "AwaitingAuthResponse"] {
            let mut w = World::new(initiator, partial(), temporary());
            if forged == "AwaitingAuthChallenge" {
                w.deliver(); // Notification
            } else {
                w.deliver();
                w.deliver(); // AuthChallenge
            }
            let (from, m) = forge_next(&mut w);
            let to = from.other();
            assert_eq!(w.state(to), forged);
            let answer = w.receive(to, &m);
            assert_eq!(answer.code, 401);
            assert_eq!(w.state(to), "Aborted");
            assert_eq!(reason_code(to, &w), Some(ReasonCode::AuthFailed));
            assert!(w.outputs(to).iter().any(|o| matches!(
                o,
                Output::Audit(Audit::PeerSignature {
                    verified: false,
                    ..
                })
            )));
            // The sender ends auth-failed without Abort and answers the
            // incoming Abort with 410 (B.4).
            w.answer(from, m.msg_type(), 401);
            assert_eq!(reason_code(from, &w), Some(ReasonCode::AuthFailed));
            let (_, t, code) = w.deliver().unwrap();
            assert_eq!((t, code), (MsgType::Abort, 410));
            assert!(w.net.is_empty());
        }
    }
}

#[test]
fn dms1_auth_response_ok_waits_for_own_staff() {
    let mut w = World::new(Side::Two, partial(), temporary());
    w.auto_approve = false;
    w.run();
    assert_eq!(w.state(Side::One), "AwaitingApproval");
    assert_eq!(
        w.one().deadline(),
        Some(w.now - Duration::minutes(1) + Duration::hours(72))
    );
    assert_eq!(w.one().expected(), Expected::Nothing);
    assert!(
        !w.sent(Side::One).contains(&MsgType::Accept),
        "never earlier (B.4)"
    );
}

#[test]
fn dms1_approve_by_auto_accept_sends_accept_and_prepares_the_client() {
    let mut w = World::new(Side::Two, partial(), temporary());
    w.auto_approve = false;
    w.run();
    w.clear_log();
    let now = w.now;
    let out = w
        .one()
        .approve(now, Approver::AutoAccept("corp".into()))
        .unwrap();
    assert!(out.contains(&Output::Send(Payload::Accept {
        approver: "auto-accept:corp".into()
    })));
    assert!(out.contains(&Output::DeviceWork(DeviceWork::PrepareClient)));
    assert_eq!(w.state(Side::One), "PreparingClient");
    assert_eq!(w.one().deadline(), Some(now + Duration::hours(24)));
    assert!(w.one().approve(now, Approver::Staff("x".into())).is_err());
}

#[test]
fn reject_by_staff_aborts_rejected_both_sides() {
    for (initiator, approver) in [(Side::Two, Side::One), (Side::One, Side::Two)] {
        let mut w = World::new(initiator, partial(), temporary());
        w.auto_approve = false;
        w.run();
        let out = match approver {
            Side::One => w.one().reject("no ticket"),
            Side::Two => w.two().reject("no ticket"),
        }
        .unwrap();
        w.absorb(approver, out);
        w.run();
        assert_eq!(reason_code(Side::One, &w), Some(ReasonCode::Rejected));
        assert_eq!(reason_code(Side::Two, &w), Some(ReasonCode::Rejected));
        if approver == Side::One {
            assert_eq!(revert_of(&w), Revert::Nothing);
        }
    }
}

#[test]
fn dms1_accept_received_prepares_the_client() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "PreparingClient");
    assert!(w.outputs(Side::One).iter().any(|o| matches!(
        o,
        Output::Audit(Audit::PeerAccepted { approver }) if approver == "Cleo Desk"
    )));
    assert_eq!(
        w.work.front(),
        Some(&(Side::One, DeviceWork::PrepareClient))
    );
}

#[test]
fn dms1_client_prepared_sends_start_with_the_grant_deadline() {
    let mut w = World::new(Side::One, partial(), Term::Permanent);
    w.run_until(Side::One, "PreparingClient");
    w.work.clear();
    let now = w.now;
    let out = w.one().client_prepared(now, credentials()).unwrap();
    let grant = Grant {
        credentials: credentials(),
        deadline: now + Duration::hours(24),
    };
    assert_eq!(out[0], Output::Send(Payload::Start { grant }));
    assert_eq!(w.state(Side::One), "AwaitingBootstrapped");
    assert_eq!(
        w.one().deadline(),
        Some(now + Duration::hours(24) + Duration::minutes(10))
    );
    assert!(!format!("{out:?}").contains("client-secret-xyz"));
}

#[test]
fn dms1_grant_deadline_is_cut_by_expires() {
    let expires = t0() + Duration::hours(2);
    let mut w = World::new(Side::One, partial(), Term::Temporary { expires });
    w.run_until(Side::One, "PreparingClient");
    let now = w.now;
    let out = w.one().client_prepared(now, credentials()).unwrap();
    let Output::Send(Payload::Start { grant }) = &out[0] else {
        panic!()
    };
    assert_eq!(grant.deadline, expires);
    assert_eq!(w.one().deadline(), Some(expires));
    let out = w.one().handle_timeout(expires);
    assert!(out.contains(&Output::Send(Payload::Abort(Reason::new(
        ReasonCode::Expired,
        "the delegation expired before it completed"
    )))));
}

#[test]
fn dms1_device_failures_abort_device_error_and_revert() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "PreparingClient");
    let out = w.one().client_preparation_failed(507).unwrap();
    assert!(out.contains(&Output::DeviceWork(DeviceWork::Revert)));
    assert!(
        matches!(&out[0], Output::Send(Payload::Abort(r)) if r.code == ReasonCode::DeviceError && r.text.contains("507"))
    );
    assert_eq!(revert_of(&w), Revert::Reverting);
    assert_eq!(w.one().revert_done(), Ok(vec![Output::Reverted]));
    assert_eq!(revert_of(&w), Revert::Reverted);
    assert!(w.one().revert_done().is_err());
    // A late device report is refused and changes nothing.
    let now = w.now;
    assert_eq!(
        w.one().client_prepared(now, credentials()),
        Err(Refused::NotNow { state: "Aborted" })
    );

    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "UpdatingAcls");
    let out = w.one().acl_update_failed("Atomic 425").unwrap();
    w.absorb(Side::One, out);
    w.run();
    assert_eq!(reason_code(Side::Two, &w), Some(ReasonCode::DeviceError));
    assert_eq!(revert_of(&w), Revert::Reverted);
}

#[test]
fn dms1_bootstrapped_purges_and_updates_acls_or_aborts_on_another_devid() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::Two, "AwaitingComplete");
    assert_eq!(w.state(Side::One), "AwaitingBootstrapped");
    w.clear_log();
    w.deliver();
    assert_eq!(w.state(Side::One), "UpdatingAcls");
    assert!(w.outputs(Side::One).contains(&&Output::PurgeSecrets));
    assert!(w
        .outputs(Side::One)
        .contains(&&Output::DeviceWork(DeviceWork::UpdateAcls)));

    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::Two, "AwaitingComplete");
    w.intercept();
    let m = w.wrap(
        Side::Two,
        Payload::Bootstrapped {
            dev_info: dev_info("IMEI:1"),
        },
    );
    assert_eq!(w.receive(Side::One, &m).code, 202);
    assert_eq!(reason_code(Side::One, &w), Some(ReasonCode::DeviceError));
    assert_eq!(revert_of(&w), Revert::Reverting);
    assert_eq!(w.sent(Side::One).last(), Some(&MsgType::Abort));
}

#[test]
fn dms1_acls_updated_sends_complete_and_completes_on_2xx() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "UpdatingAcls");
    w.work.clear();
    let now = w.now;
    let out = w.one().acls_updated(now, acls()).unwrap();
    assert_eq!(out[0], Output::Send(Payload::Complete { acls: acls() }));
    assert_eq!(w.state(Side::One), "Completing");
    assert_eq!(w.one().expected(), Expected::Nothing);
    let out = w.one().handle_answer(now, MsgType::Complete, 200);
    assert_eq!(w.state(Side::One), "Completed");
    assert!(!out.contains(&Output::DeviceWork(DeviceWork::DeleteOwnAccount)));
    assert!(out.contains(&Output::SetDeadline(t0() + Duration::days(30))));
}

#[test]
fn b9_dms1_honours_abort_while_completing_and_reverts_on_410() {
    // Abort overtakes the answer to Complete: DMS-1 still honours it.
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "Completing");
    w.intercept();
    let m = w.wrap(
        Side::Two,
        Payload::Abort(Reason::new(ReasonCode::Timeout, "")),
    );
    assert_eq!(w.receive(Side::One, &m).code, 200);
    assert_eq!(revert_of(&w), Revert::Reverting);
    assert!(!w.sent(Side::One).ends_with(&[MsgType::Abort]));

    // Complete reaching DMS-2 after its Abort is 410 and DMS-1 then reverts.
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "Completing");
    let out = w.two().abort_by_staff("stop").unwrap();
    w.absorb(Side::Two, out);
    let (_, t, code) = w.deliver().unwrap();
    assert_eq!((t, code), (MsgType::Complete, 410));
    assert_eq!(w.state(Side::One), "Aborted");
    assert_eq!(revert_of(&w), Revert::Reverting);
    let (_, t, code) = w.deliver().unwrap();
    assert_eq!(
        (t, code),
        (MsgType::Abort, 410),
        "Abort to an ended delegation"
    );
    assert!(w.net.is_empty());
}

#[test]
fn b3_relinquish_overtaking_the_answer_to_complete_completes_then_relinquishes() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::One, "Completing");
    let (from, p) = w.intercept();
    let complete = w.wrap(from, p);
    assert_eq!(w.receive(Side::Two, &complete).code, 200);
    let out = w.two().relinquish("done early").unwrap();
    w.absorb(Side::Two, out);
    w.clear_log();
    let (_, t, code) = w.deliver().unwrap();
    assert_eq!((t, code), (MsgType::Relinquish, 200));
    assert_eq!(w.state(Side::One), "Relinquished");
    assert_eq!(revert_of(&w), Revert::Reverting);
    // The late answer to Complete changes nothing.
    w.answer(Side::One, MsgType::Complete, 200);
    assert_eq!(w.state(Side::One), "Relinquished");
}

#[test]
fn b9_after_completion_abort_is_409_with_the_next_expected() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run();
    let abort = Payload::Abort(Reason::new(ReasonCode::Cancelled, ""));
    let m = w.wrap(Side::Two, abort.clone());
    let a = w.receive(Side::One, &m);
    assert_eq!(
        (a.code, a.expected),
        (409, Some(Expected::Msg(MsgType::Relinquish)))
    );
    let m = w.wrap(Side::One, abort);
    let a = w.receive(Side::Two, &m);
    assert_eq!(
        (a.code, a.expected),
        (409, Some(Expected::Msg(MsgType::Revoke)))
    );
}

#[test]
fn b9_out_of_order_messages_are_409_with_expected_in_every_state() {
    let expected = |side: Side, state: &str| -> Expected {
        let m = |t| Expected::Msg(t);
        match (side, state) {
            (_, "AwaitingAuthChallenge") => m(MsgType::AuthChallenge),
            (_, "AwaitingAuthResponse") => m(MsgType::AuthResponse),
            (_, "AwaitingAccept") => m(MsgType::Accept),
            (Side::Two, "AwaitingStart") => m(MsgType::Start),
            (Side::One, "AwaitingBootstrapped") => m(MsgType::Bootstrapped),
            (Side::Two, "AwaitingComplete") => m(MsgType::Complete),
            (Side::Two, "Completed") => m(MsgType::Revoke),
            (Side::One, "Completed") => m(MsgType::Relinquish),
            _ => Expected::Nothing,
        }
    };
    for initiator in [Side::One, Side::Two] {
        for (side, state) in path(initiator) {
            let mut w = World::new(initiator, partial(), temporary());
            w.auto_approve = state != "AwaitingApproval";
            w.run_until(side, state);
            // A second Notification for a known DelegationID is always out of order.
            let notification = Payload::Notification {
                terms: terms(side.other(), partial(), temporary()),
                nonce: nonce(7),
            };
            let m = w.wrap(side.other(), notification);
            let a = w.receive(side, &m);
            let want = expected(side, state);
            assert_eq!(
                (a.code, a.expected),
                (409, Some(want)),
                "{side:?} in {state}"
            );
            let got = match side {
                Side::One => w.one().expected(),
                Side::Two => w.two().expected(),
            };
            assert_eq!(got, want);
            assert_eq!(w.state(side), state, "a 409 changes nothing");
        }
    }
}

#[test]
fn b9_ended_delegation_answers_410_and_strangers_403_404() {
    let mut w = World::new(Side::One, partial(), temporary());
    w.run_until(Side::Two, "AwaitingAuthResponse");
    let out = w.two().abort_by_staff("stop").unwrap();
    w.absorb(Side::Two, out);
    let m = w.wrap(
        Side::One,
        Payload::Accept {
            approver: "x".into(),
        },
    );
    assert_eq!(w.receive(Side::Two, &m).code, 410);

    let mut w = World::new(Side::One, partial(), temporary());
    w.deliver();
    let mut m = w.wrap(
        Side::One,
        Payload::Accept {
            approver: "x".into(),
        },
    );
    m.delegation_id = DelegationId::parse("11111111-1111-4111-8111-111111111111").unwrap();
    assert_eq!(w.receive(Side::Two, &m).code, 404);
    let mut m = w.wrap(
        Side::One,
        Payload::Accept {
            approver: "x".into(),
        },
    );
    m.sender = ServerId::parse("other.example").unwrap();
    assert_eq!(w.receive(Side::Two, &m).code, 403);
}

#[test]
fn b3_final_answers_to_our_messages() {
    // (sent, code, reason, Abort sent)
    let cases = [
        (
            MsgType::AuthResponse,
            400,
            Some(ReasonCode::PeerError),
            true,
        ),
        (
            MsgType::AuthResponse,
            403,
            Some(ReasonCode::PeerError),
            true,
        ),
        (
            MsgType::AuthResponse,
            409,
            Some(ReasonCode::PeerError),
            true,
        ),
        (
            MsgType::AuthResponse,
            415,
            Some(ReasonCode::PeerError),
            true,
        ),
        (
            MsgType::AuthResponse,
            404,
            Some(ReasonCode::PeerError),
            false,
        ),
        (
            MsgType::AuthResponse,
            410,
            Some(ReasonCode::PeerError),
            false,
        ),
        (
            MsgType::AuthResponse,
            401,
            Some(ReasonCode::AuthFailed),
            false,
        ),
        (MsgType::AuthResponse, 500, None, false),
        (MsgType::AuthResponse, 202, None, false),
        (MsgType::Notification, 403, Some(ReasonCode::Policy), false),
        (
            MsgType::Notification,
            400,
            Some(ReasonCode::PeerError),
            false,
        ),
        (
            MsgType::Notification,
            415,
            Some(ReasonCode::PeerError),
            false,
        ),
    ];
    for side in [Side::One, Side::Two] {
        for (sent, code, reason, abort) in cases {
            let mut w = World::new(side, partial(), temporary());
            if sent == MsgType::AuthResponse {
                w.deliver();
                w.deliver();
            }
            w.net.clear();
            w.clear_log();
            w.answer(side, sent, code);
            let ctx = format!("{side:?}: {sent} answered {code}");
            assert_eq!(reason_code(side, &w), reason, "{ctx}");
            assert_eq!(w.sent(side).contains(&MsgType::Abort), abort, "{ctx}");
        }
    }
    // A 410 to Abort, Revoke or Relinquish counts as delivered.
    let mut w = World::new(Side::One, partial(), temporary());
    w.run();
    for t in [MsgType::Abort, MsgType::Revoke, MsgType::Relinquish] {
        assert!(w.one().handle_answer(t0(), t, 410).is_empty());
        assert!(w.two().handle_answer(t0(), t, 410).is_empty());
    }
    assert_eq!(
        (w.state(Side::One), w.state(Side::Two)),
        ("Completed", "Completed")
    );
}

#[test]
fn b3_completing_aborts_on_a_final_error_to_complete() {
    for (code, abort) in [(409, true), (404, false), (410, false)] {
        let mut w = World::new(Side::Two, partial(), temporary());
        w.run_until(Side::One, "Completing");
        w.net.clear();
        w.clear_log();
        w.answer(Side::One, MsgType::Complete, code);
        assert_eq!(revert_of(&w), Revert::Reverting, "{code}");
        assert_eq!(w.sent(Side::One).contains(&MsgType::Abort), abort, "{code}");
    }
}

// ------------------------------------------------- DMS-2 arrows, one by one

#[test]
fn dms2_start_bootstraps_with_the_grant_until_its_deadline() {
    let mut w = World::new(Side::Two, partial(), Term::Permanent);
    w.run_until(Side::Two, "AwaitingStart");
    let d = Deadlines::default();
    assert_eq!(
        w.two().deadline(),
        Some(w.now + d.device_contact + d.peer_reply)
    );
    w.run_until(Side::Two, "Bootstrapping");
    let Some((Side::Two, DeviceWork::Bootstrap(grant))) = w.work.front().cloned() else {
        panic!("{:?}", w.work)
    };
    assert_eq!(grant.credentials, credentials());
    assert_eq!(w.two().deadline(), Some(grant.deadline));
    // Secrets stay out of Debug, but survive persistence.
    let m = w.two().clone();
    assert!(!format!("{m:?}").contains("secret-xyz"));
    let json = serde_json::to_string(&Delegation::Dms2(m.clone())).unwrap();
    assert!(json.contains("server-secret-xyz"));
    let back: Delegation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, Delegation::Dms2(m));
}

#[test]
fn dms2_bootstrapped_sends_devinfo_and_purges() {
    let mut w = World::new(Side::Two, partial(), Term::Permanent);
    w.run_until(Side::Two, "Bootstrapping");
    w.work.clear();
    let now = w.now;
    let out = w
        .two()
        .bootstrapped(now, dev_info("IMEI:490154203237518"))
        .unwrap();
    assert!(matches!(out[0], Output::Send(Payload::Bootstrapped { .. })));
    assert!(out.contains(&Output::PurgeSecrets));
    assert_eq!(w.state(Side::Two), "AwaitingComplete");
    assert_eq!(w.two().deadline(), Some(now + Duration::minutes(10)));
}

#[test]
fn dms2_bootstrap_failures_abort_device_error_and_forget_the_client() {
    let mut w = World::new(Side::Two, partial(), Term::Permanent);
    w.run_until(Side::Two, "Bootstrapping");
    let now = w.now;
    let out = w.two().bootstrapped(now, dev_info("IMEI:other")).unwrap();
    assert!(out.contains(&Output::DeviceWork(DeviceWork::ForgetClient)));
    assert_eq!(reason_code(Side::Two, &w), Some(ReasonCode::DeviceError));

    let mut w = World::new(Side::Two, partial(), Term::Permanent);
    w.run_until(Side::Two, "Bootstrapping");
    w.work.clear();
    let out = w.two().bootstrap_failed("no session").unwrap();
    w.absorb(Side::Two, out);
    w.run();
    assert_eq!(reason_code(Side::One, &w), Some(ReasonCode::DeviceError));
    assert_eq!(revert_of(&w), Revert::Reverted);
    assert!(w.two().bootstrap_failed("again").is_err());
}

#[test]
fn dms2_complete_is_200_and_completed() {
    let mut w = World::new(Side::Two, partial(), Term::Permanent);
    w.run_until(Side::One, "Completing");
    let (_, t, code) = w.deliver().unwrap();
    assert_eq!((t, code), (MsgType::Complete, 200));
    assert_eq!(w.state(Side::Two), "Completed");
    assert!(w.two().shared.completed_at.is_some());
    assert_eq!(w.two().deadline(), None);
}

#[test]
fn dms2_revoke_received_forgets_the_client() {
    let mut w = World::new(Side::Two, partial(), Term::Permanent);
    w.run();
    let m = w.wrap(
        Side::One,
        Payload::Revoke(Reason::new(ReasonCode::Cancelled, "")),
    );
    assert_eq!(w.receive(Side::Two, &m).code, 200);
    assert_eq!(w.state(Side::Two), "Revoked");
    assert!(w
        .outputs(Side::Two)
        .contains(&&Output::DeviceWork(DeviceWork::ForgetClient)));
    assert_eq!(w.receive(Side::Two, &m).code, 410);
}

#[test]
fn staff_inputs_in_the_wrong_state_are_refused() {
    let mut w = World::new(Side::One, partial(), temporary());
    let now = w.now;
    assert!(w.one().approve(now, Approver::Staff("x".into())).is_err());
    assert!(w.one().reject("x").is_err());
    assert!(w.one().revoke("x").is_err());
    assert!(w.one().acls_updated(now, vec![]).is_err());
    assert!(w.one().acl_update_failed("x").is_err());
    assert!(w.one().client_preparation_failed(500).is_err());
    w.run();
    assert!(w.one().abort_by_staff("x").is_err());
    assert!(w.two().abort_by_staff("x").is_err());
    assert!(w.two().bootstrapped(now, dev_info("IMEI:1")).is_err());
}

#[test]
fn machine_state_round_trips_through_json_in_every_state() {
    for initiator in [Side::One, Side::Two] {
        let mut w = World::new(initiator, partial(), temporary());
        loop {
            for d in [
                w.dms1.clone().map(Delegation::Dms1),
                w.dms2.clone().map(Delegation::Dms2),
            ]
            .into_iter()
            .flatten()
            {
                let json = serde_json::to_string(&d).unwrap();
                assert_eq!(serde_json::from_str::<Delegation>(&json).unwrap(), d);
            }
            if !w.step() {
                break;
            }
        }
    }
}

#[test]
fn delegation_picks_the_side_from_the_terms() {
    let id = DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap();
    let d = Deadlines::default();
    for initiator in [Side::One, Side::Two] {
        let t = terms(initiator, partial(), temporary());
        let (m, out) = Delegation::initiate(id.clone(), t, nonce(3), d, t0()).unwrap();
        assert_eq!(m.shared().me, initiator.id());
        assert_eq!(m.state_name(), "AwaitingAuthChallenge");
        let Some(Output::Send(p)) = out.first().cloned() else {
            panic!()
        };
        let mut w = World::new(initiator, partial(), temporary());
        let msg = w.wrap(initiator, p);
        let k = SigningKey::from_slice(&[5; 32]).unwrap();
        let keys = Keys {
            own: &k,
            peer: w.k1.verifying_key(),
        };
        let (other, step) = Delegation::accept_notification(&msg, nonce(4), d, t0(), keys).unwrap();
        assert_eq!(step.answer.code, 202);
        assert_eq!(other.shared().me, initiator.other().id());
        assert_eq!(other.expected(), Expected::Msg(MsgType::AuthResponse));
        assert!(matches!(
            (&other, initiator),
            (Delegation::Dms1(_), Side::Two) | (Delegation::Dms2(_), Side::One)
        ));
    }
}

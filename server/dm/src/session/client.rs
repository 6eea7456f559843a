//! The device's side of a DM session (PROTOCOL A.2–A.4), sans-IO, for the
//! device simulator.
//!
//! ```text
//!   start ──► package 1 sent ──► AwaitingServer ──┬─ 401/407 first time (any
//!   (Alert 1200/1201,                ▲   │        │  package): the same message
//!    [Generic Alert 1226],           │   │        │  again, fresh Cred/HMAC
//!    DevInfo, Cred)                  │   │        ├─ 401/407 again ──► Ended{AuthFailed}
//!                                    │   │        ├─ bad/missing server Cred:
//!        statuses + Results          │   │        │  401/407 ──► Ended{ServerAuthRejected}
//!        (or Alert 1222 + statuses   │   │        ├─ Alert 1223 ──► Ended{Aborted}
//!        for a non-final message)    └───┘        └─ Final, no commands, no 401/407
//!                                                      ──► Ended{Completed}
//! ```
//!
//! The session holds the device's [`Tree`] and one DM account's credentials
//! (A.6 DMAcc): commands run on the tree on behalf of the account's
//! ServerID, so the tree's ACLs decide (A.7).

use std::collections::VecDeque;
use std::num::NonZeroU32;

use rand_core::{CryptoRng, RngCore};

use super::outbox::{LargeKind, LargeOut, Packer};
use super::server::{EndReason, ReceivedItem};
use super::{
    chal_from_model, chal_to_model, cred_from_model, cred_to_model, header, item_bytes, status,
};
use crate::auth::{AuthType, ClientAuth, ClientReaction, Nonce, StoredCredential};
use crate::notification::Notification;
use crate::syncml::{
    self, Alert, CmdRef, Command, Data, DecodeError, Encoding, Item, ItemCmd, LocRef, Message,
    Meta, Results,
};
use crate::tree::{NewNode, Op, Output, Target, Timestamp, Tree};
use crate::{AlertCode, CmdId, ServerId, StatusCode, TreeUri};

/// One DM account of the device and how to reach it (PROTOCOL A.1, A.4, A.6).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The account's ServerID: commands run on its behalf (A.7).
    pub server_id: ServerId,
    /// `Target/LocURI` of the client's messages.
    pub server_uri: String,
    /// A.2: the notification's session id for Alert 1200, any for 1201.
    pub session_id: String,
    /// 1200 (answering a notification) or 1201 (client-initiated), A.3.
    pub alert: AlertCode,
    /// XML or WBXML (A.1).
    pub encoding: Encoding,
    /// CLCRED and the nonce for the client's next Cred (A.4).
    pub clcred: StoredCredential,
    /// CLCRED AAuthData.
    pub client_nonce: Nonce,
    /// SRVCRED and the nonce the server must use next (A.4).
    pub srvcred: StoredCredential,
    /// SRVCRED AAuthData.
    pub server_nonce: Nonce,
    /// Basic only over TLS (A.4).
    pub tls: bool,
    /// The largest message the device accepts (A.2), sent in `MaxMsgSize`.
    pub max_msg_size: Option<u64>,
}

impl ClientConfig {
    /// Answers a notification (PROTOCOL A.3, A.5): Alert 1200 and the
    /// notification's session id (A.2).
    pub fn answering(mut self, notification: &Notification) -> Self {
        self.alert = AlertCode::SERVER_INITIATED;
        self.session_id = notification.session_id.to_string();
        self
    }
}

/// A message to POST (PROTOCOL A.1), with the `x-syncml-hmac` header value
/// when the account uses HMAC (A.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTransmit {
    /// The request body.
    pub bytes: Vec<u8>,
    /// Its encoding (A.1).
    pub encoding: Encoding,
    /// The `x-syncml-hmac` header value (A.4).
    pub hmac: Option<String>,
}

/// What happened on the device (PROTOCOL A.2–A.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server's Cred (or, SRVCRED HMAC, its `x-syncml-hmac` header)
    /// verified (A.4).
    ServerAuthenticated,
    /// The server's Cred or HMAC header was missing (407) or bad (401) (A.4).
    #[allow(missing_docs)]
    ServerAuthFailed { status: StatusCode },
    /// An Exec the tree allowed (A.7): the simulator carries it out.
    #[allow(missing_docs)]
    Exec { uri: TreeUri, data: Option<Vec<u8>> },
    /// Nonces to persist in the DMAcc (A.4): the client's next (from the
    /// server's Chal) and the server's next (issued by the client).
    #[allow(missing_docs)]
    NextNonces {
        client_next: Option<Nonce>,
        server_next: Option<Nonce>,
    },
    /// The server sent Alert 1223 (A.2).
    Aborted,
    /// The session is over; nothing more is sent.
    #[allow(missing_docs)]
    SessionEnded { reason: EndReason },
}

/// Why a server message could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Not a SyncML DM message (A.1).
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// A message after the session ended (A.2).
    #[error("the session has ended")]
    Ended,
    /// Package 1 was already taken from [`ClientSession::poll_transmit`]:
    /// a Generic Alert can no longer join it (A.3).
    #[error("package 1 has already been sent")]
    Package1Sent,
}

/// A Generic Alert 1226 for package 1 (PROTOCOL A.3): what the device
/// reports, e.g. the outcome of an earlier asynchronous Exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericAlert {
    /// The Correlator of the Exec it answers, if any.
    pub correlator: Option<String>,
    /// Its items: `source` (Source/LocURI), Format, Type (MIME) and the raw
    /// data (base64-encoded on the wire when Format is `b64`).
    pub items: Vec<ReceivedItem>,
}

/// A large object coming in as Add/Replace chunks (PROTOCOL A.2).
#[derive(Clone)]
struct LargeIn {
    add: bool,
    target: String,
    meta: Option<Meta>,
    size: Option<u64>,
    data: Vec<u8>,
}

/// The device's side of one DM session (PROTOCOL A.2–A.4); states in the
/// module doc.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    auth: ClientAuth,
    tree: Tree,
    dev_id: String,
    next_msg_id: u32,
    next_cmd_id: u32,
    /// Package 1, kept to build it again with a Generic Alert (A.3).
    package1: Vec<Command>,
    /// The last message's commands and Final, to send again after a
    /// 401/407 in any package (A.4).
    last_sent: (Vec<Command>, bool),
    /// Messages taken from [`Self::poll_transmit`].
    polled: u32,
    authenticated: bool,
    /// The server's last message had no Final: the next continues its package.
    server_mid_package: bool,
    server_max_msg_size: Option<u64>,
    outbox: VecDeque<Command>,
    large_out: Option<LargeOut>,
    large_in: Option<LargeIn>,
    ended: bool,
    events: VecDeque<ClientEvent>,
    transmits: VecDeque<ClientTransmit>,
    /// Management commands received from the server (see
    /// [`Self::commands_received`]).
    commands_received: u64,
    /// See [`Self::accounts_touched`].
    accounts_touched: bool,
}

impl std::fmt::Debug for LargeIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeIn")
            .field("target", &self.target)
            .field("size", &self.size)
            .field("received", &self.data.len())
            .finish()
    }
}

impl ClientSession {
    /// Starts a session: package 1 (PROTOCOL A.3) is ready in
    /// [`Self::poll_transmit`]: the Alert, a Replace of the `./DevInfo`
    /// leaves from `tree`, and the Cred (A.4).
    pub fn start(config: ClientConfig, tree: Tree) -> Self {
        let auth = ClientAuth::new(
            config.clcred.clone(),
            config.client_nonce.clone(),
            config.srvcred.clone(),
            config.server_nonce.clone(),
            config.tls,
        );
        let dev_id = leaf_text(&tree, "./DevInfo/DevId").unwrap_or_default();
        let id = CmdId::new(1).expect("1 is not 0");
        let items = ["DevId", "Man", "Mod", "DmV", "Lang"]
            .iter()
            .filter_map(|leaf| {
                let uri = format!("./DevInfo/{leaf}");
                let value = leaf_text(&tree, &uri)?;
                Some(Item {
                    source: Some(LocRef::uri(uri)),
                    meta: Some(Meta::with_format_type("chr", "text/plain")),
                    data: Some(Data::Text(value)),
                    ..Item::default()
                })
            })
            .collect();
        let package1 = vec![
            Command::Alert(Alert {
                cmd_id: id,
                no_resp: false,
                cred: None,
                data: config.alert,
                correlator: None,
                items: Vec::new(),
            }),
            Command::Replace(ItemCmd::new(id, items)),
        ];
        let mut s = Self {
            config,
            auth,
            tree,
            dev_id,
            next_msg_id: 1,
            next_cmd_id: 1,
            package1,
            last_sent: (Vec::new(), true),
            polled: 0,
            authenticated: false,
            server_mid_package: false,
            server_max_msg_size: None,
            outbox: VecDeque::new(),
            large_out: None,
            large_in: None,
            ended: false,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            commands_received: 0,
            accounts_touched: false,
        };
        s.send_package1();
        s
    }

    /// The device's tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Gives the tree back (to persist it).
    pub fn into_tree(self) -> Tree {
        self.tree
    }

    /// The management commands (A.3) in the server messages handled so
    /// far, those inside an Atomic or Sequence counted one by one; Status,
    /// Results and Alert are not counted.
    pub fn commands_received(&self) -> u64 {
        self.commands_received
    }

    /// Whether a command of this session changed `./DMAcc`, a node in it or
    /// one above it (A.6): the DM accounts the device read before the
    /// session may no longer be what its tree holds. Any successful Add,
    /// Replace, Delete or Copy there counts, one an Atomic rolled back too.
    /// The nonces a session renews (A.4) are the caller's to write and do
    /// not count.
    pub fn accounts_touched(&self) -> bool {
        self.accounts_touched
    }

    /// True once the session is over.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// The next message to POST.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        let t = self.transmits.pop_front();
        self.polled += u32::from(t.is_some());
        t
    }

    /// Adds a Generic Alert 1226 to package 1 (PROTOCOL A.3), after the
    /// Alert and the DevInfo Replace; possible until package 1 is taken
    /// from [`Self::poll_transmit`]. Sent again with package 1 after a
    /// challenge (A.4), so the server reports it once it authenticated.
    pub fn add_generic_alert(&mut self, alert: GenericAlert) -> Result<(), ClientError> {
        if self.polled > 0 {
            return Err(ClientError::Package1Sent);
        }
        let items = alert.items.iter().map(alert_item).collect();
        self.package1.push(Command::Alert(Alert {
            cmd_id: CmdId::new(1).expect("1 is not 0"),
            no_resp: false,
            cred: None,
            data: AlertCode::GENERIC,
            correlator: alert.correlator,
            items,
        }));
        // Package 1 again, from MsgID 1.
        self.transmits.clear();
        self.next_msg_id = 1;
        self.next_cmd_id = 1;
        self.send_package1();
        Ok(())
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Aborts the session (PROTOCOL A.2): Alert 1223 + Final.
    pub fn abort(&mut self) {
        if self.ended {
            return;
        }
        let alert = Command::Alert(Alert {
            cmd_id: CmdId::new(1).expect("1 is not 0"),
            no_resp: false,
            cred: None,
            data: AlertCode::SESSION_ABORT,
            correlator: None,
            items: Vec::new(),
        });
        self.send(vec![alert], true);
        self.end(EndReason::Aborted);
    }

    fn end(&mut self, reason: EndReason) {
        if !self.ended {
            self.ended = true;
            self.events.push_back(ClientEvent::SessionEnded { reason });
        }
    }

    fn send_package1(&mut self) {
        let body = self.package1.clone();
        self.send(body, true);
    }

    /// Builds one message from `first` (Statuses, Alerts), then (when
    /// `statuses_only` is false) as much of the outbox as fits.
    fn send(&mut self, first: Vec<Command>, statuses_only: bool) {
        let msg_id = NonZeroU32::new(self.next_msg_id).expect("MsgIDs start at 1");
        self.next_msg_id += 1;
        let mut p = Packer::new(
            self.header(msg_id),
            self.config.encoding,
            self.server_max_msg_size,
            self.next_cmd_id,
        );
        for c in first {
            p.push(c);
        }
        let mut final_ = true;
        if !statuses_only {
            final_ = self.fill(&mut p);
        }
        let (msg, next) = p.finish(final_);
        self.next_cmd_id = next;
        self.emit(&msg);
        // Kept to send again after a 401/407 (A.4).
        self.last_sent = (msg.body, msg.final_);
    }

    /// A.4: the last message again after a 401/407, with a new MsgID and
    /// a credential over the server's new nonce.
    fn send_again(&mut self) {
        let (body, final_) = self.last_sent.clone();
        let msg_id = NonZeroU32::new(self.next_msg_id).expect("MsgIDs start at 1");
        self.next_msg_id += 1;
        let mut p = Packer::new(
            self.header(msg_id),
            self.config.encoding,
            None,
            self.next_cmd_id,
        );
        for c in body {
            p.push(c);
        }
        let (msg, next) = p.finish(final_);
        self.next_cmd_id = next;
        self.emit(&msg);
    }

    fn header(&self, msg_id: NonZeroU32) -> syncml::SyncHdr {
        let mut hdr = header(
            &self.config.session_id,
            msg_id,
            &self.config.server_uri,
            &self.dev_id,
        );
        // A.4: the user name in Source/LocName; the Cred until authenticated.
        hdr.source.loc_name = Some(self.config.clcred.name.clone());
        if !self.authenticated {
            hdr.cred = self.auth.cred().map(|c| cred_to_model(&c));
        }
        hdr.meta = self.config.max_msg_size.map(|m| Meta {
            max_msg_size: Some(m),
            ..Meta::default()
        });
        hdr
    }

    fn emit(&mut self, msg: &Message) {
        let bytes = syncml::encode(self.config.encoding, msg);
        let hmac =
            (self.config.clcred.auth_type == AuthType::Hmac).then(|| self.auth.hmac_header(&bytes));
        self.transmits.push_back(ClientTransmit {
            bytes,
            encoding: self.config.encoding,
            hmac,
        });
    }

    /// Moves Results into `p` while they fit, cutting a large one into
    /// chunks; true when nothing is left (A.2: Final).
    fn fill(&mut self, p: &mut Packer) -> bool {
        loop {
            if let Some(lo) = &mut self.large_out {
                if p.push_chunk(lo).is_none() || !lo.done() {
                    return false;
                }
                self.large_out = None;
                continue;
            }
            let Some(cmd) = self.outbox.pop_front() else {
                return true;
            };
            match p.try_push(cmd) {
                Ok(_) => {}
                Err(cmd) => {
                    if let Some(lo) = large_results(&cmd) {
                        self.large_out = Some(lo);
                        continue;
                    }
                    if !p.has_commands() {
                        p.push(*cmd);
                        continue;
                    }
                    self.outbox.push_front(*cmd);
                    return false;
                }
            }
        }
    }

    /// Handles one server message (PROTOCOL A.2–A.4) and prepares the
    /// answer; the same as [`Self::handle_response`] without an
    /// `x-syncml-hmac` header.
    pub fn handle_message<R: RngCore + CryptoRng>(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        rng: &mut R,
    ) -> Result<(), ClientError> {
        self.handle_response(bytes, None, now, rng)
    }

    /// Handles one server message, the body of an HTTP response, with its
    /// `x-syncml-hmac` header if any (PROTOCOL A.2–A.4), and prepares the
    /// answer. With SRVCRED AAuthType HMAC the header is the server's
    /// proof on every message the client answers (A.4): checked over the
    /// exact `bytes` with the nonce the client issued, answered 200 (401
    /// bad, 407 missing) with a fresh nonce in a Chal each time. With
    /// MD5/basic the server's `Cred` is checked instead.
    pub fn handle_response<R: RngCore + CryptoRng>(
        &mut self,
        bytes: &[u8],
        hmac: Option<&str>,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<(), ClientError> {
        if self.ended {
            return Err(ClientError::Ended);
        }
        let msg = syncml::decode(bytes)?;
        self.commands_received += management_commands(&msg.body);
        let msg_ref = msg.hdr.msg_id;
        // A.2: an abort ends the session whatever else the message says
        // (the server aborts after a rule broken, with 400 on the SyncHdr).
        if msg
            .body
            .iter()
            .any(|c| matches!(c, Command::Alert(a) if a.data == AlertCode::SESSION_ABORT))
        {
            self.events.push_back(ClientEvent::Aborted);
            self.end(EndReason::Aborted);
            return Ok(());
        }
        if let Some(m) = msg.hdr.meta.as_ref().and_then(|m| m.max_msg_size) {
            self.server_max_msg_size = Some(m);
        }

        // A.4: the server's verdict on our credential.
        let mut challenged = false;
        for c in &msg.body {
            let Command::Status(s) = c else { continue };
            if s.cmd_ref != CmdRef::SyncHdr {
                continue;
            }
            let chal = s.chal.as_ref().and_then(chal_from_model);
            if let Some(ch) = &chal {
                self.events.push_back(ClientEvent::NextNonces {
                    client_next: Some(ch.next_nonce.clone()),
                    server_next: None,
                });
            }
            match self.auth.handle_status(s.data, chal.as_ref()) {
                ClientReaction::Authenticated => {
                    if s.data == StatusCode::AUTHENTICATED {
                        self.authenticated = true;
                    }
                }
                ClientReaction::Retry => challenged = true,
                ClientReaction::GiveUp => {
                    self.end(EndReason::AuthFailed);
                    return Ok(());
                }
            }
        }
        if challenged {
            // A.4: in any package, the challenged message goes again.
            self.send_again();
            return Ok(());
        }

        let manages = msg.body.iter().any(is_management);
        // A.4: the server's Cred is due in the first message of a package
        // that carries commands; a Cred sent anyway is checked too.
        let mut hdr_status = status(msg_ref, CmdRef::SyncHdr, "SyncHdr", StatusCode::OK);
        hdr_status.target_refs = vec![msg.hdr.target.loc_uri.clone()];
        hdr_status.source_refs = vec![msg.hdr.source.loc_uri.clone()];
        let cred = msg
            .hdr
            .cred
            .as_ref()
            .and_then(|c| cred_from_model(c, msg.hdr.source.loc_name.as_deref()));
        let mut refused = None;
        let check = if self.config.srvcred.auth_type == AuthType::Hmac {
            // A.4: every message that will be answered carries a MAC; the
            // one that ends the session is not checked, since no answer
            // could hand the server the next nonce.
            let wants_next = msg
                .body
                .iter()
                .any(|c| matches!(c, Command::Alert(a) if a.data == AlertCode::NEXT_MESSAGE));
            let pending = !self.outbox.is_empty() || self.large_out.is_some();
            let ends = msg.final_ && !manages && !wants_next && !pending;
            (!ends).then(|| self.auth.check_server_hmac(hmac, bytes, rng))
        } else if cred.is_some() || (manages && !self.server_mid_package) {
            Some(self.auth.check_server_cred(cred.as_ref(), rng))
        } else {
            None
        };
        if let Some(check) = check {
            hdr_status.data = check.status;
            hdr_status.chal = Some(chal_to_model(&check.chal));
            self.events.push_back(ClientEvent::NextNonces {
                client_next: None,
                server_next: Some(check.chal.next_nonce.clone()),
            });
            if check.status.is_success() {
                self.events.push_back(ClientEvent::ServerAuthenticated);
            } else {
                self.events.push_back(ClientEvent::ServerAuthFailed {
                    status: check.status,
                });
                refused = Some(check.status);
            }
        }
        self.server_mid_package = !msg.final_;

        let mut statuses = vec![Command::Status(hdr_status)];
        let mut server_wants_next = false;
        for cmd in &msg.body {
            // A.2: Statuses and Results get no Status.
            if matches!(cmd, Command::Status(_) | Command::Results(_)) {
                continue;
            }
            let mut st = status(
                msg_ref,
                CmdRef::Cmd(cmd.cmd_id()),
                cmd.name(),
                StatusCode::OK,
            );
            if let Some(code) = refused {
                st.data = code;
                statuses.push(Command::Status(st));
                continue;
            }
            match cmd {
                Command::Alert(a) => match a.data {
                    AlertCode::NEXT_MESSAGE => server_wants_next = true,
                    AlertCode::SESSION_ABORT => {
                        self.events.push_back(ClientEvent::Aborted);
                        self.end(EndReason::Aborted);
                        return Ok(());
                    }
                    _ => st.data = StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED,
                },
                _ => {
                    if let Some(code) = self.receive_chunk(cmd, now) {
                        st.data = code;
                    } else {
                        let ran = self.run(cmd, now);
                        self.report(ran, msg_ref, &mut statuses);
                        continue;
                    }
                }
            }
            if let Some(t) = single_target(cmd) {
                st.target_refs = vec![t];
            }
            statuses.push(Command::Status(st));
        }

        if refused.is_some() {
            self.send(statuses, true);
            self.end(EndReason::ServerAuthRejected);
            return Ok(());
        }
        if !msg.final_ {
            // A.2: Alert 1222 and Statuses only.
            statuses.push(Command::Alert(Alert {
                cmd_id: CmdId::new(1).expect("1 is not 0"),
                no_resp: false,
                cred: None,
                data: AlertCode::NEXT_MESSAGE,
                correlator: None,
                items: Vec::new(),
            }));
            self.send(statuses, true);
            return Ok(());
        }
        let pending = !self.outbox.is_empty() || self.large_out.is_some();
        if !manages && !server_wants_next && !pending {
            // A.2: a package without commands (and no challenge) ends it.
            self.end(EndReason::Completed);
            return Ok(());
        }
        self.send(statuses, false);
        Ok(())
    }

    /// A.2: an Add/Replace chunk of a large object; `None` when `cmd` is not one.
    fn receive_chunk(&mut self, cmd: &Command, now: Timestamp) -> Option<StatusCode> {
        let (add, c) = match cmd {
            Command::Add(c) => (true, c),
            Command::Replace(c) => (false, c),
            _ => return None,
        };
        let [item] = c.items.as_slice() else {
            return None;
        };
        let target = item.target.as_ref()?.loc_uri.clone();
        let continuing = self
            .large_in
            .as_ref()
            .is_some_and(|l| l.target == target && l.add == add);
        if !item.more_data && !continuing {
            return None;
        }
        let bytes = item_bytes(item, c.meta.as_ref());
        let lo = self.large_in.get_or_insert_with(|| LargeIn {
            add,
            target: target.clone(),
            meta: item.meta.clone().or(c.meta.clone()),
            size: item.meta.as_ref().and_then(|m| m.size),
            data: Vec::new(),
        });
        lo.data.extend_from_slice(&bytes);
        if item.more_data {
            return Some(StatusCode::CHUNK_ACCEPTED);
        }
        let lo = self.large_in.take().expect("just used");
        if lo.size.is_some_and(|s| s != lo.data.len() as u64) {
            return Some(StatusCode::SIZE_MISMATCH);
        }
        let op = match Target::parse(&lo.target) {
            Ok(t) => whole_op(lo.add, t, lo.data, lo.meta.as_ref()),
            Err(e) => return Some(e.status()),
        };
        let status = self.tree.execute(&self.config.server_id, &op, now).status;
        self.note_change(&op, status);
        Some(status)
    }

    /// Notes a change in or above `./DMAcc` (see [`Self::accounts_touched`]).
    fn note_change(&mut self, op: &Op, status: StatusCode) {
        let target = match op {
            Op::Get(_) | Op::Exec(..) => return,
            Op::Add(t, _) | Op::Replace { target: t, .. } | Op::Delete(t) => t,
            Op::Copy { target, .. } => target,
        };
        if self.accounts_touched || !status.is_success() {
            return;
        }
        let (Target::Node(u) | Target::Prop(u, _)) = target;
        let dmacc = TreeUri::parse("./DMAcc").expect("a valid URI");
        self.accounts_touched = u.is_within(&dmacc) || dmacc.is_within(u);
    }

    /// Runs one command on the tree (A.3, A.7): every item of it, and an
    /// Atomic or Sequence with whatever it holds, nested to any depth.
    /// - Atomic: all or nothing. On the first failure anywhere inside, the
    ///   tree is restored from a snapshot taken at its start: what had
    ///   succeeded (nested containers too) becomes 216, the failure keeps
    ///   its code, the rest is 215, the Atomic 507.
    /// - Sequence: in order, stopping after the first command that failed
    ///   (for a nested container: anything in it failed); the rest is 215.
    ///   **[profile]** (as `Tree::sequence`) the Sequence itself gets 200.
    /// - A command with several items runs each; its status is the first
    ///   failure's, else 200.
    fn run(&mut self, cmd: &Command, now: Timestamp) -> Ran {
        let mut ran = Ran::new(cmd, StatusCode::OK);
        match cmd {
            Command::Atomic(c) | Command::Sequence(c) => {
                let atomic = matches!(cmd, Command::Atomic(_));
                let snapshot = atomic.then(|| self.tree.clone());
                let mut failed = false;
                for inner in &c.commands {
                    let r = if failed {
                        Ran::not_executed(inner)
                    } else {
                        self.run(inner, now)
                    };
                    failed |= r.failed();
                    ran.children.push(r);
                }
                if let (true, Some(snapshot)) = (failed, snapshot) {
                    self.tree = snapshot;
                    ran.children.iter_mut().for_each(Ran::roll_back);
                    ran.code = StatusCode::ATOMIC_FAILED;
                }
            }
            _ => match ops_of(cmd) {
                Err(code) => ran.code = code,
                Ok(ops) => {
                    for (uri, op) in ops {
                        let r = self.tree.execute(&self.config.server_id, &op, now);
                        self.note_change(&op, r.status);
                        if !r.status.is_success() && ran.code.is_success() {
                            ran.code = r.status;
                        }
                        ran.outputs.extend(r.output.map(|o| (uri, o)));
                    }
                }
            },
        }
        ran
    }

    /// The Statuses of a command run (A.2: one per command, in order, a
    /// container's before those inside it); Results of its Gets go to the
    /// outbox, its Execs out as events (only now: an Atomic may have
    /// rolled them back).
    fn report(&mut self, ran: Ran, msg_ref: NonZeroU32, statuses: &mut Vec<Command>) {
        let mut st = status(msg_ref, CmdRef::Cmd(ran.cmd_id), ran.name, ran.code);
        st.target_refs = ran.target.into_iter().collect();
        statuses.push(Command::Status(st));
        let mut items = Vec::new();
        for (uri, output) in ran.outputs {
            match output {
                Output::Item { data, format, mime } => items.push(Item {
                    source: Some(LocRef::uri(uri)),
                    meta: Some(Meta::with_format_type(&format, &mime)),
                    data: Some(Data::from_bytes(data)),
                    ..Item::default()
                }),
                Output::Exec { uri, data } => {
                    self.events.push_back(ClientEvent::Exec { uri, data });
                }
            }
        }
        self.queue_results(ran.cmd_id, msg_ref, items);
        for child in ran.children {
            self.report(child, msg_ref, statuses);
        }
    }

    fn queue_results(&mut self, cmd_ref: CmdId, msg_ref: NonZeroU32, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        self.outbox.push_back(Command::Results(Results {
            cmd_id: CmdId::new(1).expect("1 is not 0"),
            msg_ref: Some(msg_ref),
            cmd_ref: CmdRef::Cmd(cmd_ref),
            meta: None,
            target_ref: None,
            source_ref: None,
            items,
        }));
    }
}

/// A Generic Alert item (A.3): Source, Meta Format/Type, Data.
fn alert_item(i: &ReceivedItem) -> Item {
    let b64 = i
        .format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("b64"));
    let data = if b64 {
        use base64::Engine;
        Data::Text(base64::engine::general_purpose::STANDARD.encode(&i.data))
    } else {
        Data::from_bytes(i.data.clone())
    };
    let meta = (i.format.is_some() || i.mime.is_some()).then(|| Meta {
        format: i.format.clone(),
        type_: i.mime.clone(),
        ..Meta::default()
    });
    Item {
        source: i.source.as_deref().map(LocRef::uri),
        meta,
        data: Some(data),
        ..Item::default()
    }
}

/// One command run on the tree (A.3), before it becomes Statuses.
struct Ran {
    cmd_id: CmdId,
    name: &'static str,
    target: Option<String>,
    code: StatusCode,
    /// Results items and Execs, by the URI the command named.
    outputs: Vec<(String, Output)>,
    /// An Atomic's or Sequence's commands.
    children: Vec<Ran>,
}

impl Ran {
    fn new(cmd: &Command, code: StatusCode) -> Self {
        Self {
            cmd_id: cmd.cmd_id(),
            name: cmd.name(),
            target: single_target(cmd),
            code,
            outputs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// 215 for `cmd` and everything inside it.
    fn not_executed(cmd: &Command) -> Self {
        let mut r = Self::new(cmd, StatusCode::NOT_EXECUTED);
        if let Command::Atomic(c) | Command::Sequence(c) = cmd {
            r.children = c.commands.iter().map(Self::not_executed).collect();
        }
        r
    }

    /// It, or anything inside it, failed.
    fn failed(&self) -> bool {
        !self.code.is_success() || self.children.iter().any(Self::failed)
    }

    /// An enclosing Atomic restored the tree: what had succeeded is 216.
    fn roll_back(&mut self) {
        if self.code.is_success() && self.code != StatusCode::NOT_EXECUTED {
            self.code = StatusCode::ROLLED_BACK;
        }
        self.outputs.clear();
        self.children.iter_mut().for_each(Self::roll_back);
    }
}

fn leaf_text(tree: &Tree, uri: &str) -> Option<String> {
    let u = TreeUri::parse(uri).ok()?;
    tree.value(&u)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn single_target(cmd: &Command) -> Option<String> {
    let item = match cmd {
        Command::Add(c)
        | Command::Copy(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Replace(c) => match c.items.as_slice() {
            [i] => i,
            _ => return None,
        },
        Command::Exec(e) => &e.item,
        _ => return None,
    };
    item.target.as_ref().map(|t| t.loc_uri.clone())
}

/// The op of an Add or Replace with all its data (A.3, A.7).
fn whole_op(add: bool, target: Target, data: Vec<u8>, meta: Option<&Meta>) -> Op {
    let format = meta.and_then(|m| m.format_lowercase());
    let mime = meta.and_then(|m| m.type_.clone());
    if add {
        let node = if format.as_deref() == Some("node") {
            NewNode::Interior { mime }
        } else {
            NewNode::Leaf {
                value: data,
                format: format.unwrap_or_else(|| "chr".to_owned()),
                mime,
            }
        };
        Op::Add(target, node)
    } else {
        Op::Replace {
            target,
            data,
            format,
            mime,
        }
    }
}

/// The tree operations of one command (A.3), one per item, with the URI
/// its Results item names.
fn ops_of(cmd: &Command) -> Result<Vec<(String, Op)>, StatusCode> {
    let parse = |l: Option<&LocRef>| -> Result<(String, Target), StatusCode> {
        let l = l.ok_or(StatusCode::INCOMPLETE_COMMAND)?;
        let t = Target::parse(&l.loc_uri).map_err(|e| e.status())?;
        Ok((l.loc_uri.clone(), t))
    };
    match cmd {
        Command::Exec(e) => {
            let (u, t) = parse(e.item.target.as_ref())?;
            let data = e
                .item
                .data
                .is_some()
                .then(|| item_bytes(&e.item, e.meta.as_ref()));
            Ok(vec![(u, Op::Exec(t, data))])
        }
        Command::Add(c)
        | Command::Copy(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Replace(c) => {
            if c.items.is_empty() {
                return Err(StatusCode::INCOMPLETE_COMMAND);
            }
            c.items
                .iter()
                .map(|item| {
                    let (u, t) = parse(item.target.as_ref())?;
                    let op = match cmd {
                        Command::Get(_) => Op::Get(t),
                        Command::Delete(_) => Op::Delete(t),
                        Command::Copy(_) => Op::Copy {
                            source: parse(item.source.as_ref())?.1,
                            target: t,
                        },
                        _ => whole_op(
                            matches!(cmd, Command::Add(_)),
                            t,
                            item_bytes(item, c.meta.as_ref()),
                            item.meta.as_ref().or(c.meta.as_ref()),
                        ),
                    };
                    Ok((u, op))
                })
                .collect()
        }
        _ => Err(StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED),
    }
}

/// PROTOCOL A.2: Results with one item that can travel as a large object.
fn large_results(cmd: &Command) -> Option<LargeOut> {
    let Command::Results(r) = cmd else {
        return None;
    };
    let [item] = r.items.as_slice() else {
        return None;
    };
    let meta = item.meta.as_ref();
    if meta.is_some_and(|m| m.format_is("b64")) {
        return None;
    }
    Some(LargeOut {
        kind: LargeKind::Results {
            msg_ref: r.msg_ref.map_or(0, NonZeroU32::get),
            cmd_ref: r.cmd_ref.get(),
        },
        loc: item.source.as_ref()?.loc_uri.clone(),
        format: meta.and_then(|m| m.format.clone()),
        mime: meta.and_then(|m| m.type_.clone()),
        data: item_bytes(item, None),
        offset: 0,
        job: None,
    })
}

/// True for a management command (A.3): every command but Status, Results
/// and Alert.
fn is_management(c: &Command) -> bool {
    !matches!(
        c,
        Command::Status(_) | Command::Results(_) | Command::Alert(_)
    )
}

/// Management commands in a message body (A.3), those inside Atomic and
/// Sequence counted one by one.
fn management_commands(cmds: &[Command]) -> u64 {
    cmds.iter()
        .map(|c| match c {
            Command::Atomic(b) | Command::Sequence(b) => management_commands(&b.commands),
            c => is_management(c) as u64,
        })
        .sum()
}

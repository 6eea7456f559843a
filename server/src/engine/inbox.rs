//! Documents from peers (B.3, B.9 "Checks"): parse, refuse in the B.9
//! order, return the stored answer of a repeat, then feed the machine and
//! commit its outputs with the answer.

use super::device_work::tree_from_cache;
use super::{utc, After, Current, Engine, EngineError, Stored};
use crate::audit::Event;
use crate::peer::endpoint::{PeerInbox, VerifiedPeer};
use crate::store::delegations as store;
use crate::store::{devices, now_ms, peers};
use axum::body::Bytes;
use handover_delegation::machine::{Delegation, Keys};
use handover_delegation::sign;
use handover_delegation::wire::{
    DelegationMessage, DelegationStatus, MsgType, Payload, Scope, Term, MEDIA_TYPE,
};
use handover_dm::Secret;

fn answer(msg: Option<&DelegationMessage>, code: u16, text: &str) -> DelegationStatus {
    DelegationStatus {
        msg_ref: msg.map(|m| m.msg_id.clone()),
        code,
        text: text.to_owned(),
        expected: None,
    }
}

#[async_trait::async_trait]
impl PeerInbox for Engine {
    async fn receive(&self, from: VerifiedPeer, body: Bytes) -> (u16, Vec<u8>) {
        let status = match self.receive_document(&from, &body).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(peer = %from.server_id, error = %e, "a peer's document could not be handled");
                answer(None, 500, "internal error; send it again later")
            }
        };
        (status.code, status.serialize())
    }
}

impl Engine {
    async fn receive_document(
        &self,
        from: &VerifiedPeer,
        body: &[u8],
    ) -> Result<DelegationStatus, EngineError> {
        // 415 and 400 (the listener already checked the media type).
        let msg = match DelegationMessage::parse(body, MEDIA_TYPE) {
            Ok(m) => m,
            Err(e) => return Ok(e.to_status()),
        };
        // 403.
        if msg.recipient != self.0.me {
            return Ok(answer(Some(&msg), 403, "Recipient is not this server"));
        }
        if msg.sender != from.server_id {
            return Ok(answer(
                Some(&msg),
                403,
                "the client certificate is not the one pinned for Sender",
            ));
        }
        if peers::get(self.db(), msg.sender.as_str()).await?.is_none() {
            return Ok(answer(Some(&msg), 403, "Sender is not a configured peer"));
        }
        let peer_key = sign::verifying_key_from_spki(&from.spki_der)
            .ok_or_else(|| anyhow::anyhow!("the peer's key is not P-256"))?;
        let own_key = self.0.identity.private_key().signing_key().clone();
        let keys = Keys {
            own: &own_key,
            peer: &peer_key,
        };
        let mut tx = self.db().begin_write().await?;
        // A repeat gets the stored answer.
        if let Some((code, body)) = store::stored_answer(
            self.db(),
            &mut *tx,
            msg.sender.as_str(),
            msg.msg_id.as_str(),
        )
        .await?
        {
            tracing::debug!(msg = %msg.msg_id, code, "repeated document");
            return Ok(DelegationStatus::parse(&body, MEDIA_TYPE)
                .unwrap_or_else(|_| answer(Some(&msg), code, "repeat")));
        }
        let found = store::find(
            self.db(),
            &mut *tx,
            msg.sender.as_str(),
            msg.delegation_id.as_str(),
        )
        .await?;
        let now = now_ms();
        let mut after = After::default();
        let status = match found {
            None if msg.msg_type() != MsgType::Notification => {
                answer(Some(&msg), 404, "no such delegation with this peer")
            }
            None => {
                self.new_delegation(&mut *tx, &msg, body, keys, now, &mut after)
                    .await?
            }
            Some(id) => {
                let mut cur = self.load(&mut *tx, id).await?;
                let step = match &mut cur.stored {
                    Stored::Machine(m) if msg.msg_type() == MsgType::Notification => {
                        let mut s = answer(
                            Some(&msg),
                            if m.ended() { 410 } else { 409 },
                            "this DelegationID is known",
                        );
                        if s.code == 409 {
                            s.expected = Some(m.expected());
                        }
                        (s, Vec::new())
                    }
                    Stored::Machine(m) => {
                        let step = m.handle_message(utc(now), &msg, keys);
                        (step.answer, step.outputs)
                    }
                    // A request of ours not yet sent: the peer cannot know it.
                    Stored::Request(_) => (
                        answer(Some(&msg), 404, "no such delegation with this peer"),
                        Vec::new(),
                    ),
                    Stored::Withdrawn { .. } => {
                        let mut s = answer(Some(&msg), 410, "delegation already ended");
                        s.expected = None;
                        (s, Vec::new())
                    }
                };
                let (status, outputs) = step;
                self.record_received(&mut *tx, &cur, &msg, body, status.code)
                    .await?;
                after.live.push(self.live(
                    &cur,
                    "received",
                    format!("{} {}", msg.msg_type(), status.code),
                ));
                self.apply(&mut *tx, &mut cur, outputs, msg.sender.as_str(), &mut after)
                    .await?;
                self.save(&mut *tx, &cur).await?;
                status
            }
        };
        store::store_answer(
            self.db(),
            &mut *tx,
            msg.sender.as_str(),
            msg.msg_id.as_str(),
            status.code,
            &status.serialize(),
        )
        .await?;
        tx.commit().await?;
        self.after_commit(after).await;
        Ok(status)
    }

    async fn record_received(
        &self,
        tx: &mut crate::store::Conn,
        cur: &Current,
        msg: &DelegationMessage,
        body: &[u8],
        code: u16,
    ) -> Result<(), EngineError> {
        let sealed = self.0.rt.vault.seal(
            &Self::seal_key(&cur.row),
            msg.msg_id.as_str(),
            &Secret::new(String::from_utf8_lossy(body).into_owned()),
        );
        store::insert_received(
            self.db(),
            tx,
            cur.row.id,
            msg.msg_type().as_str(),
            msg.msg_id.as_str(),
            &sealed,
            code,
        )
        .await?;
        let event = if (200..300).contains(&code) {
            Event::DelegationMessageReceived
        } else {
            Event::DelegationMessageRefused
        };
        self.audit(
            tx,
            cur,
            event,
            msg.sender.as_str(),
            serde_json::json!({ "msg_type": msg.msg_type().as_str(), "msg_id": msg.msg_id.as_str(), "code": code }),
        )
        .await?;
        Ok(())
    }

    /// A Notification for an unknown DelegationID: the checks that need no
    /// person (B.4), then a new delegation answering with AuthChallenge.
    async fn new_delegation(
        &self,
        tx: &mut crate::store::Conn,
        msg: &DelegationMessage,
        body: &[u8],
        keys: Keys<'_>,
        now: i64,
        after: &mut After,
    ) -> Result<DelegationStatus, EngineError> {
        let Payload::Notification { terms, .. } = &msg.payload else {
            unreachable!("only a Notification creates a delegation");
        };
        let delegating = terms.delegating == self.0.me;
        let devid = terms.device.dev_id.as_str().to_owned();
        // B.4: refusals that need no person; no delegation is created.
        if let Some(e) = terms.term.expires() {
            if e.get().unix_timestamp() * 1000 <= now {
                return Ok(answer(Some(msg), 400, "Expires is not in the future"));
            }
        }
        if self.running_for(tx, &devid).await? {
            return Ok(answer(
                Some(msg),
                403,
                "the device is already in a delegation",
            ));
        }
        if delegating {
            let Some(device) = devices::get_in(self.db(), tx, &devid).await? else {
                return Ok(answer(
                    Some(msg),
                    403,
                    "the device is not managed by this server",
                ));
            };
            if device.state == "handed-over" {
                return Ok(answer(Some(msg), 403, "the device was handed over"));
            }
            let tree = tree_from_cache(&device.tree);
            if let Err(e) = handover_delegation::plan::check_scope(&tree, &self.0.me, &terms.scope)
            {
                return Ok(answer(Some(msg), 403, &format!("scope refused: {e}")));
            }
        }
        let (m, step) = match Delegation::accept_notification(
            msg,
            super::fresh_nonce(),
            self.0.settings.deadlines,
            utc(now),
            keys,
        ) {
            Ok(x) => x,
            Err(status) => return Ok(status),
        };
        let kind = if terms.scope == Scope::Full {
            "full"
        } else {
            "partial"
        };
        let term = if terms.term == Term::Permanent {
            "permanent"
        } else {
            "temporary"
        };
        let scope_json = super::scope_json(&terms.scope);
        let placeholder_machine = String::new();
        let id = store::insert(
            self.db(),
            tx,
            &store::NewDelegation {
                peer: msg.sender.as_str(),
                delegation_id: msg.delegation_id.as_str(),
                role: if delegating { "dms1" } else { "dms2" },
                initiator: false,
                devid: &devid,
                batch_id: None,
                kind,
                term,
                expires_at: terms
                    .term
                    .expires()
                    .map(|e| e.get().unix_timestamp() * 1000),
                scope: &scope_json,
                reason: terms.reason.as_deref().unwrap_or(""),
                requested_by: terms.requested_by.as_deref().unwrap_or(""),
                approved_by: terms.approved_by.as_deref().unwrap_or(""),
                state: m.state_name(),
                machine: &placeholder_machine,
                wake_at: None,
            },
        )
        .await?;
        let (row, _, _) = store::lock(self.db(), tx, id)
            .await?
            .expect("just inserted");
        let mut cur = Current {
            row,
            stored: Stored::Machine(Box::new(m)),
            work: Default::default(),
            peer: peers::get_in(self.db(), tx, msg.sender.as_str()).await?,
        };
        self.audit(
            tx,
            &cur,
            Event::DelegationProposed,
            msg.sender.as_str(),
            serde_json::json!({ "type": kind, "term": term, "scope": scope_json, "initiator": msg.sender.as_str() }),
        )
        .await?;
        self.record_received(tx, &cur, msg, body, step.answer.code)
            .await?;
        after.live.push(self.live(&cur, "received", "Notification"));
        self.apply(tx, &mut cur, step.outputs, msg.sender.as_str(), after)
            .await?;
        self.save(tx, &cur).await?;
        Ok(step.answer)
    }
}

//! DM sessions (PROTOCOL A.2–A.4): the server's side ([`ServerSession`]) and
//! the device's side ([`ClientSession`], used by the device simulator).
//!
//! Both are sans-IO in the style of quinn-proto: `handle_message` takes the
//! bytes that arrived (with the current time and an RNG), `poll_transmit`
//! gives the bytes to send, `poll_event` what happened.
//!
//! Decisions where the texts leave room **[profile]**:
//! - CmdIDs are unique for the whole session on each side (so a Status's
//!   `CmdRef` alone names the command it answers), starting at 1.
//! - A message that answers a non-final message (Alert 1222 + Statuses,
//!   A.2) carries `Final`: it is the whole answer to that message, and the
//!   Alert 1222 in it already tells the peer to go on.
//! - The server gives a `Results` no Status (A.2 allows it) except 213 for
//!   a chunk of a large object and 424 for a size mismatch; the client
//!   ignores Statuses of its Results but for the chunks.
//! - Statuses that alone exceed the client's `MaxMsgSize` go over several
//!   messages without Final (the client's Alert 1222 asks for the rest);
//!   the answer to a challenge or the session's last message is sent whole.
//! - An Atomic or Sequence is never split across messages; one larger than
//!   any message the client accepts is not sent and reported 517 (215 for
//!   its commands). A single other command that is too big and cannot go
//!   as a large object (Exec data, a `b64` value) is sent whole.
//! - A client message out of MsgID order or from another DevId (A.2) is
//!   not executed; the server aborts the session (Alert 1223).

// STYLE lesson 11: every public item says which rule it implements.
#![warn(missing_docs)]

pub mod client;
mod outbox;
pub mod server;

pub use client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, ClientTransmit, GenericAlert,
};
pub use server::{
    ClientViolation, CommandKind, DeviceAccount, DeviceInfoReport, EndReason, Incoming,
    ReceivedItem, ServerCommand, ServerEvent, ServerSession, ServerTransmit, SessionError,
};

use std::num::NonZeroU32;

use crate::auth::{self, AuthType};
use crate::syncml::{self, CmdRef, Command, Item, LocRef, Meta, Status, SyncHdr};
use crate::{CmdId, StatusCode};

/// A caller-supplied id tagging a server command (PROTOCOL A.3), reported
/// back with its Status and Results.
pub type JobId = u64;

/// PROTOCOL A.4: the model's `Cred` as the `auth` module reads it;
/// `None` for an unknown scheme.
pub(crate) fn cred_from_model(c: &syncml::Cred, loc_name: Option<&str>) -> Option<auth::Cred> {
    let meta = c.meta.as_ref();
    let auth_type = meta
        .and_then(|m| m.type_.as_deref())
        .map_or(Some(AuthType::Basic), AuthType::from_meta_type)?;
    Some(auth::Cred {
        auth_type,
        format: meta.and_then(|m| m.format.clone()),
        data: c.data.clone(),
        loc_name: loc_name.map(str::to_owned),
    })
}

/// PROTOCOL A.4: an `auth::Cred` as a `Cred` element.
pub(crate) fn cred_to_model(c: &auth::Cred) -> syncml::Cred {
    syncml::Cred {
        meta: Some(Meta {
            format: c.format.clone(),
            type_: Some(c.auth_type.meta_type().to_owned()),
            ..Meta::default()
        }),
        data: c.data.clone(),
    }
}

/// PROTOCOL A.4: a `Chal` element as the `auth` module reads it.
pub(crate) fn chal_from_model(c: &syncml::Chal) -> Option<auth::Chal> {
    let auth_type = AuthType::from_meta_type(c.meta.type_.as_deref()?)?;
    let nonce = auth::Nonce::from_b64(c.meta.next_nonce.as_deref()?).ok()?;
    Some(auth::Chal::new(auth_type, nonce))
}

/// PROTOCOL A.4: an `auth::Chal` as a `Chal` element.
pub(crate) fn chal_to_model(c: &auth::Chal) -> syncml::Chal {
    syncml::Chal {
        meta: Meta {
            format: Some(c.format.clone()),
            type_: Some(c.auth_type.meta_type().to_owned()),
            next_nonce: Some(c.next_nonce.to_b64()),
            ..Meta::default()
        },
    }
}

/// PROTOCOL A.2: a header with VerDTD 1.2 and VerProto DM/1.2.
pub(crate) fn header(session_id: &str, msg_id: NonZeroU32, target: &str, source: &str) -> SyncHdr {
    SyncHdr {
        ver_dtd: "1.2".to_owned(),
        ver_proto: "DM/1.2".to_owned(),
        session_id: session_id.to_owned(),
        msg_id,
        target: LocRef::uri(target),
        source: LocRef::uri(source),
        resp_uri: None,
        no_resp: false,
        cred: None,
        meta: None,
    }
}

/// PROTOCOL A.2: one Status; `MsgRef` is always set (libdmclient needs it).
pub(crate) fn status(msg_ref: NonZeroU32, cmd_ref: CmdRef, cmd: &str, code: StatusCode) -> Status {
    Status {
        cmd_id: CmdId::new(1).expect("1 is not 0"),
        msg_ref: Some(msg_ref),
        cmd_ref,
        cmd: cmd.to_owned(),
        target_refs: Vec::new(),
        source_refs: Vec::new(),
        cred: None,
        chal: None,
        data: code,
        items: Vec::new(),
    }
}

/// The bytes of an item's `Data` (A.1): text as UTF-8, `b64` text decoded
/// (A.7: the tree holds raw bytes), an embedded tree as its XML.
pub(crate) fn item_bytes(item: &Item, cmd_meta: Option<&Meta>) -> Vec<u8> {
    let b64 = item
        .meta
        .as_ref()
        .or(cmd_meta)
        .is_some_and(|m| m.format_is("b64"));
    match &item.data {
        None => Vec::new(),
        Some(syncml::Data::Text(t)) if b64 => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(t.trim())
                .unwrap_or_else(|_| t.as_bytes().to_vec())
        }
        Some(syncml::Data::Text(t)) => t.as_bytes().to_vec(),
        Some(syncml::Data::Binary(b)) => b.clone(),
        Some(syncml::Data::Tree(t)) => t.to_xml().into_bytes(),
    }
}

/// Renumbers the commands of `body` from `first` (PROTOCOL A.2: unique,
/// never 0); returns the next free number.
pub(crate) fn number(body: &mut [Command], mut next: u32) -> u32 {
    for c in body {
        let id = CmdId::new(next).expect("CmdIDs start at 1");
        next += 1;
        match c {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => c.cmd_id = id,
            Command::Alert(c) => c.cmd_id = id,
            Command::Atomic(c) | Command::Sequence(c) => {
                c.cmd_id = id;
                next = number(&mut c.commands, next);
            }
            Command::Exec(c) => c.cmd_id = id,
            Command::Status(c) => c.cmd_id = id,
            Command::Results(c) => c.cmd_id = id,
        }
    }
    next
}

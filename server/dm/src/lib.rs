//! The OMA DM 1.2 protocol core of Handover (PROTOCOL Part A).
//!
//! Sans-IO: nothing in this crate touches a socket, a clock or a database.
//! Callers hand in bytes, the current time and random numbers; the core
//! hands back bytes to send and events that happened.

pub mod acl;
pub mod auth;
pub mod notification;
pub mod syncml;
pub mod tnds;
pub mod tree;
pub mod types;

pub use acl::{Acl, AclCmd, AclError, AclId};
pub use auth::{
    AuthType, ClientAuth, Nonce, Secret, ServerAuth, ServerAuthOutcome, StoredCredential,
};
pub use notification::{Notification, NotificationError, ParsedNotification, SessionId, UiMode};
pub use syncml::{
    decode, encode_wbxml, encode_xml, to_xml_pretty, DecodeError, DecodeErrorKind, Encoding,
    Message,
};
pub use tree::{
    BatchResult, DeviceInfo, DmAccount, NewNode, Op, OpResult, Output, Property, Target, Timestamp,
    Tree,
};
pub use types::{AlertCode, CmdId, DevId, ServerId, StatusCode, TreeUri};
pub mod session;

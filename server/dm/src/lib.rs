//! The OMA DM 1.2 protocol core of Handover (PROTOCOL Part A).
//!
//! Sans-IO: nothing in this crate touches a socket, a clock or a database.
//! Callers hand in bytes, the current time and random numbers; the core
//! hands back bytes to send and events that happened.

pub mod syncml;
pub mod tnds;
pub mod types;

pub use syncml::{
    decode, encode_wbxml, encode_xml, to_xml_pretty, DecodeError, DecodeErrorKind, Encoding,
    Message,
};
pub use types::{AlertCode, CmdId, DevId, ServerId, StatusCode, TreeUri};

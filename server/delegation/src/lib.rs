//! Client Authority Delegation between two DM Servers — PROTOCOL Part B.
//!
//! Everything here is sans-IO (STYLE lesson 1): documents in, documents and
//! decisions out. No sockets, no clock, no database; the server crate feeds
//! time and randomness in and persists what comes out.
//!
//! - [`terms`]: the delegation terms (B.2) and their building blocks.
//! - [`wire`]: the `DelegationMessage` and `DelegationStatus` documents (B.9).
//! - [`sign`]: canonical terms and the step 2 signatures (B.4, B.9).
//! - [`machine`]: the DMS-1 and DMS-2 state machines (B.3, B.6–B.8).
//! - [`plan`]: what DMS-1 writes to the device — the bootstrap Atomic (B.5)
//!   and the ACL update and its revert (B.6).

pub mod machine;
pub mod plan;
pub mod sign;
pub mod terms;
pub mod wire;

pub use machine::{
    Approver, Deadlines, Delegation, DeviceWork, Dms1, Dms2, End, Keys, Output, Refused, Step,
};
pub use wire::{DelegationId, DelegationMessage, DelegationStatus, MsgId, UtcTime, WireError};

/// Serde for the identifier types of `handover-dm`, as their text.
pub(crate) mod serde_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;

    pub fn serialize<T: AsRef<str>, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_ref())
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: TryFrom<String>,
        T::Error: Display,
        D: Deserializer<'de>,
    {
        T::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

//! Client Authority Delegation between two DM Servers — PROTOCOL Part B.
//!
//! Everything here is sans-IO (STYLE lesson 1): documents in, documents and
//! decisions out. No sockets, no clock, no database; the server crate feeds
//! time and randomness in and persists what comes out.
//!
//! - [`terms`]: the delegation terms (B.2) and their building blocks.
//! - [`plan`]: what DMS-1 writes to the device — the bootstrap Atomic (B.5)
//!   and the ACL update and its revert (B.6).

pub mod plan;
pub mod terms;

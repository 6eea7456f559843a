//! The delegation engine: runs the DMS-1 and DMS-2 state machines of
//! handover-delegation (PROTOCOL Part B) against the database, the device
//! command queue and the peers.

pub mod device_work;
pub mod policy;

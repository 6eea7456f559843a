//! Handover: the DM Server and portal of one Management Authority.
//!
//! Layout follows the architecture: `dm` is the sans-IO OMA DM core (its own
//! crate), `store` the database, `audit` the hash-chained log, `portal` the
//! web portal's listener and server functions, `ops` health and metrics,
//! `peer` the mutually authenticated interface to other servers, `serve` the
//! listeners of one authority, `cli` the command line, `dmtool` its
//! support-desk tools for DM messages.

// The portal's routes carry the view types of its pages; in release builds
// (components not erased) they nest deeper than the default limit of 128.
#![recursion_limit = "512"]

pub use handover_dm as dm;

/// The allocator of every process built with this library (the server, the
/// simulator, the tests). A DM message or a delegation step allocates and
/// frees many small buffers (XML, JSON, rows) on whichever worker thread
/// runs it; glibc's allocator spent a sixth of the CPU time of the
/// benchmarks there (server/benches/LOAD.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod audit;
pub mod cli;
pub mod config;
pub mod demo;
pub mod device;
pub mod dmtool;
pub mod engine;
pub mod ops;
pub mod peer;
pub mod portal;
pub mod secrets;
pub mod serve;
pub mod sim;
pub mod store;

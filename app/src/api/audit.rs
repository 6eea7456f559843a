//! The audit log (auditor only).

use super::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Unix milliseconds.
    pub time: i64,
    pub code: i32,
    /// The event's stable name, e.g. `auth.sign_in`.
    pub event: String,
    pub actor: String,
    pub subject: String,
    pub source: String,
    pub details: String,
    pub hash: String,
    /// The delegation the entry is about, when it is about one of ours.
    #[serde(default)]
    pub delegation: Option<i64>,
}

/// What the Audit page filters by. Empty strings mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub subject: String,
    /// A DevId: entries about the device, and those naming it in their details.
    #[serde(default)]
    pub device: String,
    /// A DelegationID (or a delegation's number on this server).
    #[serde(default)]
    pub delegation: String,
    /// A peer's ServerID.
    #[serde(default)]
    pub peer: String,
    /// Unix milliseconds, inclusive.
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub until: Option<i64>,
    /// Entries with `seq` below this one (for paging backwards); none = newest.
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page.
    pub next_before: Option<i64>,
    pub total_matching: i64,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub entries_checked: i64,
    /// The first entry whose hash or link does not match, if any.
    pub first_broken: Option<i64>,
    pub message: String,
}

/// The event names the filter offers: (code, name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventKind {
    pub code: i32,
    pub name: String,
}

#[server(endpoint = "audit/list")]
pub async fn list_audit(filter: AuditFilter) -> Result<AuditPage, AppError> {
    super::with_backend(|b, req| async move { b.audit_list(&req, filter).await }).await
}

#[server(endpoint = "audit/verify")]
pub async fn verify_audit() -> Result<VerifyReport, AppError> {
    super::with_backend(|b, req| async move { b.audit_verify(&req).await }).await
}

#[server(endpoint = "audit/events")]
pub async fn audit_event_kinds() -> Result<Vec<EventKind>, AppError> {
    super::with_backend(|b, req| async move { b.audit_event_kinds(&req).await }).await
}

//! The delegation part of the JSON API (`/api/v1/delegations`,
//! `/api/v1/batches`): request, list, inspect, and the decisions of
//! PROTOCOL B.4, B.6 and B.7, with roles as in PRODUCT.md.

use super::api::{ApiCaller, ApiError};
use crate::audit;
use crate::device::Runtime;
use crate::engine::{Engine, EngineError, NewRequest};
use crate::store::delegations as store;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use handover_app::api::Role;
use handover_delegation::terms::{Rights, Subtree};
use serde_json::json;

/// What the delegation routes share.
#[derive(Clone)]
pub struct ApiState {
    pub rt: Runtime,
    pub engine: Engine,
}

impl FromRef<ApiState> for Runtime {
    fn from_ref(s: &ApiState) -> Runtime {
        s.rt.clone()
    }
}

pub fn router(rt: Runtime, engine: Engine) -> Router {
    Router::new()
        .route("/api/v1/delegations", get(list).post(create))
        .route("/api/v1/delegations/{id}", get(detail))
        .route("/api/v1/delegations/{id}/{action}", post(act))
        .route("/api/v1/batches/{id}", get(batch))
        .route("/api/v1/batches/{id}/approve", post(approve_batch))
        .with_state(ApiState { rt, engine })
}

const READERS: &[Role] = &[
    Role::Viewer,
    Role::Operator,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
];

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
        EngineError::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such delegation")
        }
        EngineError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
        EngineError::NotNow(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        EngineError::Db(e) => ApiError::internal(e),
        EngineError::Internal(e) => ApiError::internal(e),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeBody {
    uri: String,
    rights: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    devices: Vec<String>,
    peer: String,
    /// `full` or `partial`.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    scope: Vec<ScopeBody>,
    /// `permanent` or `temporary`.
    term: String,
    /// RFC 3339, for `temporary`.
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    reason: String,
    /// `delegating` (default: this server hands over) or `delegated`
    /// (this server asks the peer for authority).
    #[serde(default, rename = "as")]
    side: Option<String>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m)
}

async fn create(
    State(s): State<ApiState>,
    caller: ApiCaller,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller
        .require(&s.rt, &[Role::Operator], "request a delegation")
        .await?;
    let Json(b) = body.map_err(|e| bad(e.body_text()))?;
    let scope = match b.kind.as_str() {
        "full" if b.scope.is_empty() => None,
        "full" => return Err(bad("a full delegation takes no scope")),
        "partial" => {
            let mut out = Vec::new();
            for x in &b.scope {
                let rights = Rights::parse(&x.rights.join(",")).ok_or_else(|| {
                    bad(format!(
                        "{}: rights must be distinct Add, Delete, Exec, Get, Replace",
                        x.uri
                    ))
                })?;
                out.push(Subtree {
                    uri: x.uri.clone(),
                    rights,
                });
            }
            Some(out)
        }
        _ => return Err(bad("type must be full or partial")),
    };
    let expires = match (b.term.as_str(), &b.expires) {
        ("permanent", None) => None,
        ("permanent", Some(_)) => return Err(bad("a permanent delegation has no expiry")),
        ("temporary", Some(t)) => Some(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad("expires must be an RFC 3339 time"))?
                .unix_timestamp(),
        ),
        ("temporary", None) => return Err(bad("a temporary delegation needs expires")),
        _ => return Err(bad("term must be permanent or temporary")),
    };
    let delegating = match b.side.as_deref() {
        None | Some("delegating") => true,
        Some("delegated") => false,
        Some(_) => return Err(bad("as must be delegating or delegated")),
    };
    let r = s
        .engine
        .request(
            NewRequest {
                devices: b.devices,
                peer: b.peer,
                delegating,
                scope,
                expires,
                reason: b.reason,
            },
            &caller.name,
        )
        .await
        .map_err(engine_error)?;
    Ok((StatusCode::CREATED, Json(json!(r))))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
    device: Option<String>,
    peer: Option<String>,
    batch: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    State(s): State<ApiState>,
    caller: ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&s.rt, READERS, "list delegations").await?;
    let rows = store::list(
        &s.rt.db,
        &store::Filter {
            state: q.state.unwrap_or_default(),
            devid: q.device.unwrap_or_default(),
            peer: q.peer.unwrap_or_default(),
            batch_id: q.batch,
        },
        q.limit.unwrap_or(100).clamp(1, 1000),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(json!({ "delegations": rows })))
}

async fn detail(
    State(s): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&s.rt, READERS, "read a delegation").await?;
    let row = store::get(&s.rt.db, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such delegation"))?;
    let messages = store::messages(&s.rt.db, id)
        .await
        .map_err(ApiError::internal)?;
    let steps = audit::list(
        &s.rt.db,
        &audit::Filter {
            subject: row.delegation_id.clone(),
            ..Default::default()
        },
        1000,
    )
    .await
    .map_err(ApiError::internal)?;
    let mut steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq, "time": e.time, "event": e.event_name(), "actor": e.actor,
                "details": serde_json::from_str::<serde_json::Value>(&e.details).unwrap_or_default(),
            })
        })
        .collect();
    steps.reverse();
    let signatures: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["event"] == "delegation.signature_verified")
        .map(|s| &s["details"])
        .collect();
    let signatures = json!(signatures);
    Ok(Json(json!({
        "delegation": row,
        "messages": messages,
        "steps": steps,
        "signatures": signatures,
    })))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    #[serde(default)]
    reason: String,
}

async fn act(
    State(s): State<ApiState>,
    caller: ApiCaller,
    Path((id, action)): Path<(i64, String)>,
    body: Option<Json<ActBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let row = store::get(&s.rt.db, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such delegation"))?;
    let e = &s.engine;
    let who = caller.name.as_str();
    match action.as_str() {
        "approve" => {
            caller
                .require(&s.rt, &[Role::Approver], "approve a delegation")
                .await?;
            e.approve(id, who).await
        }
        "reject" => {
            caller
                .require(&s.rt, &[Role::Approver], "reject a delegation")
                .await?;
            e.reject(id, who, &reason).await
        }
        "abort" => {
            // Operators abort their own requests; approvers any (PRODUCT).
            let own = row.requested_by == caller.name && caller.roles.contains(&Role::Operator);
            if !own {
                caller
                    .require(&s.rt, &[Role::Approver], "abort a delegation")
                    .await?;
            }
            e.abort(id, who, &reason).await
        }
        "revoke" | "relinquish" => {
            let want = if action == "revoke" { "dms1" } else { "dms2" };
            caller
                .require(&s.rt, &[Role::Approver], "end a delegation")
                .await?;
            if row.role != want {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "{action} is for the {} side",
                        if want == "dms1" {
                            "delegating"
                        } else {
                            "delegated"
                        }
                    ),
                ));
            }
            e.end(id, who, &reason).await
        }
        "retry" => {
            caller
                .require(&s.rt, &[Role::Operator], "retry a delegation")
                .await?;
            let r = e.retry(id, who).await.map_err(engine_error)?;
            return Ok(Json(json!(r)));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such action",
            ))
        }
    }
    .map_err(engine_error)?;
    let row = store::get(&s.rt.db, id).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "delegation": row })))
}

/// Approves every request of a batch still waiting for a second person,
/// except the caller's own (four eyes): one call instead of one per device.
async fn approve_batch(
    State(s): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller
        .require(&s.rt, &[Role::Approver], "approve a batch")
        .await?;
    let waiting = store::list(
        &s.rt.db,
        &store::Filter {
            batch_id: Some(id),
            state: crate::engine::AWAITING_REQUEST_APPROVAL.to_owned(),
            ..Default::default()
        },
        100_000,
    )
    .await
    .map_err(ApiError::internal)?;
    let (own, others): (Vec<_>, Vec<_>) =
        waiting.iter().partition(|r| r.requested_by == caller.name);
    if waiting.is_empty() || others.is_empty() {
        let why = if waiting.is_empty() {
            "no request of this batch waits for approval"
        } else {
            "a requester cannot approve their own requests"
        };
        let status = if waiting.is_empty() {
            StatusCode::CONFLICT
        } else {
            StatusCode::FORBIDDEN
        };
        return Err(ApiError::new(
            status,
            if waiting.is_empty() {
                "conflict"
            } else {
                "forbidden"
            },
            why,
        ));
    }
    let mut ids: Vec<i64> = others.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    let mut approved = Vec::new();
    let mut refused: Vec<serde_json::Value> = own
        .iter()
        .map(|r| json!({ "id": r.id, "code": "forbidden", "message": "your own request" }))
        .collect();
    for (id, r) in s.engine.approve_all(&ids, &caller.name).await {
        match r {
            Ok(()) => approved.push(id),
            Err(e) => {
                let e = engine_error(e);
                refused.push(json!({ "id": id, "code": e.code(), "message": e.message() }));
            }
        }
    }
    Ok(Json(
        json!({ "batch": id, "approved": approved, "refused": refused }),
    ))
}

async fn batch(
    State(s): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&s.rt, READERS, "read a batch").await?;
    let rows = store::list(
        &s.rt.db,
        &store::Filter {
            batch_id: Some(id),
            ..Default::default()
        },
        100_000,
    )
    .await
    .map_err(ApiError::internal)?;
    if rows.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such batch",
        ));
    }
    let count = |f: &dyn Fn(&store::Delegation) -> bool| rows.iter().filter(|r| f(r)).count();
    let completed = count(&|r| r.state == "Completed");
    let ended = count(&|r| !r.outcome.is_empty());
    Ok(Json(json!({
        "batch": id,
        "total": rows.len(),
        "completed": completed,
        "ended": ended,
        "running": rows.len() - completed - ended,
        "delegations": rows,
    })))
}

//! The JSON API under `/api/v1`, for automation: bearer tokens bound to a
//! user and acting with that user's roles. Errors are
//! `{"error":{"code","message"}}` with the matching HTTP status.

use crate::audit::{self, Event, NewEntry};
use crate::device::{notify, Runtime};
use crate::store::jobs::{self, JobCommand};
use crate::store::{api_tokens, devices};
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use handover_app::api::Role;
use serde_json::json;
use std::net::SocketAddr;

/// The API's routes, merged into the portal listener.
pub fn router(rt: Runtime) -> Router {
    Router::new()
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{devid}", get(device))
        .route("/api/v1/devices/{devid}/commands", post(commands))
        .route("/api/v1/jobs/{id}", get(job))
        .with_state(rt)
}

/// One error of the API boundary (STYLE lesson 4).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// The machine-readable code of the error body.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The message of the error body.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        let mut res = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

/// The user a valid bearer token acts for.
pub struct ApiCaller {
    pub(crate) name: String,
    pub(crate) roles: Vec<Role>,
    pub(crate) source: String,
}

impl<S> FromRequestParts<S> for ApiCaller
where
    S: Send + Sync,
    Runtime: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let rt = &Runtime::from_ref(state);
        let unauth = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required",
            )
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauth)?;
        let user = api_tokens::user_of(&rt.db, token)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(unauth)?;
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        Ok(ApiCaller {
            name: user.name,
            roles: user.roles,
            source,
        })
    }
}

impl ApiCaller {
    /// Passes when the caller holds one of `roles`; otherwise an audited 403.
    pub(crate) async fn require(
        &self,
        rt: &Runtime,
        roles: &[Role],
        action: &str,
    ) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.roles.contains(r)) {
            return Ok(());
        }
        audit::append(
            &rt.db,
            NewEntry::new(Event::AccessDenied, &self.name, action)
                .source(&self.source)
                .details(json!({ "needs": roles[0].as_str(), "via": "api" })),
        )
        .await
        .map_err(ApiError::internal)?;
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{action} needs the {} role", roles[0].as_str()),
        ))
    }
}

pub(crate) const READ: &[Role] = &[Role::Viewer, Role::Operator, Role::Approver, Role::Admin];
const WRITE: &[Role] = &[Role::Operator];

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    q: Option<String>,
    man: Option<String>,
    model: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

fn summary(d: &devices::Device) -> serde_json::Value {
    json!({
        "devid": d.devid, "man": d.man, "model": d.model, "dmv": d.dmv, "lang": d.lang,
        "state": d.state, "authority": d.authority, "push_address": d.push_address,
        "first_seen": d.first_seen, "last_seen": d.last_seen,
    })
}

async fn list_devices(
    State(rt): State<Runtime>,
    caller: ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&rt, READ, "list devices").await?;
    let per_page = q.per_page.unwrap_or(50).clamp(1, 500);
    let page = q.page.unwrap_or(1).max(1);
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let (list, total) = devices::list(
        &rt.db,
        &devices::Query {
            q: nonempty(q.q),
            man: nonempty(q.man),
            model: nonempty(q.model),
            page,
            per_page,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "page": page, "per_page": per_page, "total": total,
        "devices": list.iter().map(summary).collect::<Vec<_>>(),
    })))
}

async fn device(
    State(rt): State<Runtime>,
    caller: ApiCaller,
    Path(devid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&rt, READ, "read a device").await?;
    let d = devices::get(&rt.db, &devid)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such device"))?;
    let sessions = devices::sessions(&rt.db, &devid, 50)
        .await
        .map_err(ApiError::internal)?;
    let jobs = jobs::for_device(&rt.db, &devid, 100)
        .await
        .map_err(ApiError::internal)?;
    let mut v = summary(&d);
    v["devdetail"] = serde_json::from_str(&d.devdetail).unwrap_or(json!({}));
    v["tree"] = serde_json::from_str(&d.tree).unwrap_or(json!([]));
    v["sessions"] = json!(sessions);
    v["jobs"] = json!(jobs);
    Ok(Json(v))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandsBody {
    commands: Vec<JobCommand>,
    #[serde(default)]
    notify: bool,
}

/// Commands one request may queue (they are queued in one statement).
const MAX_COMMANDS: usize = 1000;

async fn commands(
    State(rt): State<Runtime>,
    caller: ApiCaller,
    Path(devid): Path<String>,
    body: Result<Json<CommandsBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(&rt, WRITE, "queue device commands").await?;
    let Json(body) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    if body.commands.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no commands",
        ));
    }
    if body.commands.len() > MAX_COMMANDS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("at most {MAX_COMMANDS} commands per request"),
        ));
    }
    for c in &body.commands {
        c.validate()
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m))?;
    }
    // The audit entry is made before the writer is taken; only the job
    // ids, numbered under it, are added there.
    let commands_text = serde_json::to_string(&body.commands).map_err(ApiError::internal)?;
    let entry = NewEntry::new(Event::CommandQueued, &caller.name, &devid).source(&caller.source);
    let Some((mut tx, ids)) =
        jobs::begin_enqueue(&rt.db, &devid, &body.commands, &caller.name, body.notify)
            .await
            .map_err(ApiError::internal)?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such device",
        ));
    };
    // The audit entry commits with the jobs it records.
    let ids_text = serde_json::to_string(&ids).map_err(ApiError::internal)?;
    audit::append_in(
        &rt.db,
        &mut *tx,
        &entry.details_text(format!(
            r#"{{"commands":{commands_text},"jobs":{ids_text}}}"#
        )),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    let notification = if body.notify {
        match notify::notify(&rt, &devid, &caller.name).await {
            Ok(o) => json!(o),
            Err(e) => json!({ "state": "failed", "error": e.to_string() }),
        }
    } else {
        serde_json::Value::Null
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "jobs": ids, "notification": notification })),
    ))
}

async fn job(
    State(rt): State<Runtime>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&rt, READ, "read a job").await?;
    let j = jobs::get(&rt.db, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such job"))?;
    Ok(Json(json!(j)))
}

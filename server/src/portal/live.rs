//! Delegations as they run: the delegation and batch pages' data, staff
//! decisions from the portal, and the Server-Sent Events that push the
//! engine's live events to the browser.

use super::auth::internal;
use super::{AppState, Portal};
use crate::audit::{self, Event};
use crate::engine::{EngineError, LiveEvent, ScopeEntry};
use crate::store::{delegations as store, jobs};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use handover_app::api::live::{
    Act, BatchLive, Controls, DelegationLive, DelegationRow, PeerMessage, Step, WaitJob,
};
use handover_app::api::{AppError, Role};
use http::request::Parts;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

fn row_view(d: store::Delegation) -> DelegationRow {
    let scope = serde_json::from_str::<Vec<ScopeEntry>>(&d.scope)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.uri, e.rights))
        .collect();
    DelegationRow {
        id: d.id,
        delegation_id: d.delegation_id,
        role: d.role,
        initiator: d.initiator,
        devid: d.devid,
        peer: d.peer,
        batch_id: d.batch_id,
        kind: d.kind,
        term: d.term,
        expires_at: d.expires_at,
        scope,
        reason: d.reason,
        requested_by: d.requested_by,
        approved_by: d.approved_by,
        state: d.state,
        outcome: d.outcome,
        wake_at: d.wake_at,
        created_at: d.created_at,
        ended_at: d.ended_at,
        completed_at: d.completed_at,
    }
}

fn engine_error(e: EngineError) -> AppError {
    match e {
        EngineError::Invalid(m) => AppError::invalid("", m),
        EngineError::NotFound => AppError::NotFound("The delegation".into()),
        EngineError::Forbidden(m) => AppError::Conflict(m),
        EngineError::NotNow(m) => AppError::Conflict(m),
        EngineError::Db(e) => internal(e),
        EngineError::Internal(e) => internal(e),
    }
}

impl Portal {
    async fn delegation_row(&self, id: i64) -> Result<store::Delegation, AppError> {
        store::get(&self.db, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound("The delegation".into()))
    }

    /// The audit subject of a delegation filter: a DelegationID as given,
    /// or the DelegationID of the delegation with that number.
    pub(super) async fn delegation_subject(&self, s: &str) -> Result<Option<String>, AppError> {
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<i64>() {
            Ok(id) => Ok(Some(
                store::get(&self.db, id)
                    .await
                    .map_err(internal)?
                    .map(|d| d.delegation_id)
                    .unwrap_or_else(|| s.to_owned()),
            )),
            Err(_) => Ok(Some(s.to_owned())),
        }
    }

    pub(super) async fn live_delegation(
        &self,
        req: &Parts,
        id: i64,
    ) -> Result<DelegationLive, AppError> {
        let caller = self.viewer(req, "see delegations").await?.caller().clone();
        let row = self.delegation_row(id).await?;
        let messages = store::messages(&self.db, id).await.map_err(internal)?;
        let mut steps = audit::list(
            &self.db,
            &audit::Filter {
                subject: row.delegation_id.clone(),
                ..Default::default()
            },
            1000,
        )
        .await
        .map_err(internal)?;
        steps.reverse();
        let job = match row.job_id {
            Some(j) => jobs::get(&self.db, j).await.map_err(internal)?,
            None => None,
        };
        let notified_at = audit::list(
            &self.db,
            &audit::Filter {
                subject: row.devid.clone(),
                code: Some(Event::DeviceNotified.code()),
                ..Default::default()
            },
            1,
        )
        .await
        .map_err(internal)?
        .first()
        .map(|e| e.time);
        let row = row_view(row);
        let ended = row.ended();
        let controls = Controls {
            abort: !ended
                && row.state != "Completed"
                && (caller.has(Role::Approver)
                    || (caller.has(Role::Operator) && row.requested_by == caller.name)),
            end: (row.state == "Completed"
                && caller.has(Role::Approver)
                && !(row.kind == "full" && row.term == "permanent"))
                .then(|| {
                    if row.role == "dms1" {
                        "revoke"
                    } else {
                        "relinquish"
                    }
                    .to_owned()
                }),
            retry: ended && row.state == "Aborted" && caller.has(Role::Operator),
        };
        Ok(DelegationLive {
            row,
            me: self.server_id.clone(),
            messages: messages
                .into_iter()
                .map(|m| PeerMessage {
                    direction: m.direction,
                    msg_type: m.msg_type,
                    code: m.code,
                    delivery: m.delivery,
                    attempts: m.attempts,
                    last_error: m.last_error,
                    created_at: m.created_at,
                    answered_at: m.answered_at,
                    next_attempt_at: m.next_attempt_at,
                })
                .collect(),
            steps: steps
                .into_iter()
                .map(|e| Step {
                    event: e.event_name().to_owned(),
                    time: e.time,
                    actor: e.actor,
                    details: e.details,
                })
                .collect(),
            job: job.map(|j| WaitJob {
                id: j.id,
                state: j.state,
                status: j.status,
                error: j.error,
                updated_at: j.updated_at,
            }),
            notified_at,
            controls,
        })
    }

    /// The roles as in the JSON API: operators abort their own requests,
    /// approvers any, and end completed ones; operators retry.
    pub(super) async fn act(
        &self,
        req: &Parts,
        id: i64,
        act: Act,
        reason: String,
    ) -> Result<Option<i64>, AppError> {
        let row = self.delegation_row(id).await?;
        let e = &self.engine;
        match act {
            Act::Abort => {
                let caller = self.caller(req).await?;
                let own = row.requested_by == caller.name && caller.has(Role::Operator);
                let who = if own {
                    caller
                } else {
                    self.require(req, Role::Approver, "abort a delegation")
                        .await?
                };
                e.abort(id, &who.name, &reason)
                    .await
                    .map_err(engine_error)?;
                Ok(None)
            }
            Act::Revoke | Act::Relinquish => {
                let who = self
                    .require(req, Role::Approver, "end a delegation")
                    .await?;
                let want = if act == Act::Revoke { "dms1" } else { "dms2" };
                if row.role != want {
                    return Err(AppError::Conflict(format!(
                        "Only the {} side can do this.",
                        if want == "dms1" {
                            "delegating"
                        } else {
                            "delegated"
                        }
                    )));
                }
                if reason.trim().is_empty() {
                    return Err(AppError::invalid("reason", "say why"));
                }
                e.end(id, &who.name, &reason).await.map_err(engine_error)?;
                Ok(None)
            }
            Act::Retry => {
                let who = self
                    .require(req, Role::Operator, "retry a delegation")
                    .await?;
                let r = e.retry(id, &who.name).await.map_err(engine_error)?;
                Ok(r.delegations.first().copied())
            }
        }
    }

    pub(super) async fn live_batch(&self, req: &Parts, id: i64) -> Result<BatchLive, AppError> {
        self.viewer(req, "see delegations").await?;
        let rows = store::list(
            &self.db,
            &store::Filter {
                batch_id: Some(id),
                ..Default::default()
            },
            100_000,
        )
        .await
        .map_err(internal)?;
        if rows.is_empty() {
            return Err(AppError::NotFound(format!("Batch {id}")));
        }
        let mut rows: Vec<DelegationRow> = rows.into_iter().map(row_view).collect();
        rows.reverse();
        Ok(BatchLive { id, rows })
    }

    pub(super) async fn delegations_of_device(
        &self,
        req: &Parts,
        devid: String,
    ) -> Result<Vec<DelegationRow>, AppError> {
        self.viewer(req, "see delegations").await?;
        if devid.is_empty() || devid.len() > 255 {
            return Ok(Vec::new());
        }
        let rows = store::list(
            &self.db,
            &store::Filter {
                devid,
                ..Default::default()
            },
            500,
        )
        .await
        .map_err(internal)?;
        Ok(rows.into_iter().map(row_view).collect())
    }
}

/// Which events a stream carries.
#[derive(Clone, Copy)]
enum Watch {
    Delegation(i64),
    Batch(i64),
}

impl Watch {
    fn wants(self, e: &LiveEvent) -> bool {
        match self {
            Watch::Delegation(id) => e.delegation == id,
            Watch::Batch(id) => e.batch == Some(id),
        }
    }
}

/// `GET /live/delegations/{id}` (viewer): the delegation's live events as
/// Server-Sent Events, from the moment of the request.
pub(super) async fn delegation_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let portal = &state.portal;
    let check = async {
        portal.viewer(&parts, "watch delegations").await?;
        portal.delegation_row(id).await
    };
    match check.await {
        Ok(_) => stream(portal, Watch::Delegation(id)),
        Err(e) => refused(e),
    }
}

/// `GET /live/batches/{id}` (viewer): the live events of a batch's delegations.
pub(super) async fn batch_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let portal = &state.portal;
    match portal.viewer(&parts, "watch delegations").await {
        Ok(_) => stream(portal, Watch::Batch(id)),
        Err(e) => refused(e),
    }
}

fn refused(e: AppError) -> Response {
    (
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
        e.to_string(),
    )
        .into_response()
}

fn stream(portal: &Portal, watch: Watch) -> Response {
    let rx = portal.engine.subscribe();
    let events = futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) if watch.wants(&e) => {
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    return Some((Ok::<_, Infallible>(sse::Event::default().data(data)), rx));
                }
                Ok(_) => {}
                // Some events were missed: the page reads everything again.
                Err(RecvError::Lagged(_)) => {
                    return Some((Ok(sse::Event::default().event("lagged").data("")), rx))
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // No proxy may hold events back.
    res.headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    res
}

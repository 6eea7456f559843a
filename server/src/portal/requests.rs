//! The delegation pages' server side: a request for selected devices, its
//! preview (B.5 account, B.6 ACLs), the approvals inbox (B.4) and the
//! delegation list. Roles as in PRODUCT.md and the JSON API: operators
//! request, approvers decide (never on their own request), everyone with a
//! role reads.

use super::auth::{internal, Caller};
use super::Portal;
use crate::audit::{self, Event, NewEntry};
use crate::engine::device_work::tree_from_cache;
use crate::engine::{EngineError, NewRequest, ScopeEntry, AWAITING_REQUEST_APPROVAL};
use crate::store::{delegations as store, devices, inventory, now_ms, peers};
use handover_app::api::delegations::{
    state_words, AclChangeRow, Approvals, BulkDecision, DelegationFilter, DelegationPage,
    DelegationRow, DelegationSort, DevicePreview, IncomingRequest, PeerChoice, RequestDraft,
    RequestOptions, RequestPreview, RequestSent, ScopeItem, ScopeNode, SignatureRow, BULK_MAX,
    DELEGATIONS_PER_PAGE, PREVIEW_DEVICES,
};
use handover_app::api::devices::{DeviceSelection, COUNT_CAP};
use handover_app::api::{AppError, Role};
use handover_delegation::plan;
use handover_delegation::terms::{Rights, Subtree};
use handover_delegation::wire::Scope;
use handover_dm::{ServerId, TreeUri};
use http::request::Parts;

/// Everyone with a role may read delegations (as in the JSON API).
const READERS: [Role; 5] = Role::ALL;

/// Interior nodes offered for a partial scope, at most.
const MAX_SCOPE_NODES: usize = 500;

/// Longest reason taken (the engine's limit).
const MAX_REASON: usize = 1024;

fn engine_error(e: EngineError) -> AppError {
    match e {
        EngineError::Invalid(m) => AppError::invalid("", sentence(&m)),
        EngineError::NotFound => AppError::NotFound("The delegation".into()),
        EngineError::Forbidden(m) => AppError::Conflict(sentence(&m)),
        EngineError::NotNow(m) => AppError::Conflict(sentence(&m)),
        EngineError::Db(e) => internal(e),
        EngineError::Internal(e) => internal(e),
    }
}

/// "the request…" → "The request….".
fn sentence(m: &str) -> String {
    let mut c = m.chars();
    let mut s: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// A request as checked, ready for the engine.
struct Parsed {
    devids: Vec<String>,
    peer: ServerId,
    scope: Option<Vec<Subtree>>,
    /// Unix seconds.
    expires: Option<i64>,
    reason: String,
}

impl Parsed {
    fn wire_scope(&self) -> Scope {
        match &self.scope {
            None => Scope::Full,
            Some(s) => Scope::Partial(s.clone()),
        }
    }
}

fn scope_items(json: &str) -> Vec<ScopeItem> {
    serde_json::from_str::<Vec<ScopeEntry>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|e| ScopeItem {
            uri: e.uri,
            rights: e.rights,
        })
        .collect()
}

fn row_dto(r: store::Delegation) -> DelegationRow {
    DelegationRow {
        scope: scope_items(&r.scope),
        id: r.id,
        delegation_id: r.delegation_id,
        devid: r.devid,
        peer: r.peer,
        role: r.role,
        initiator: r.initiator,
        kind: r.kind,
        term: r.term,
        expires_at: r.expires_at,
        reason: r.reason,
        requested_by: r.requested_by,
        approved_by: r.approved_by,
        state: r.state,
        outcome: r.outcome,
        wake_at: r.wake_at,
        created_at: r.created_at,
        batch_id: r.batch_id,
    }
}

/// `YYYY-MM-DD` starting `tz_offset` minutes east of UTC, as unix milliseconds.
fn date_start_ms(date: &str, tz_offset: &str) -> Option<i64> {
    let midnight_utc = handover_app::pages::audit::date_to_ms(date)?;
    let offset: i64 = match tz_offset.trim() {
        "" => 0,
        s => s.parse().ok().filter(|m: &i64| m.abs() <= 18 * 60)?,
    };
    Some(midnight_utc - offset * 60_000)
}

impl Portal {
    /// The caller, if they hold any role; otherwise an audited 403.
    async fn reader(&self, req: &Parts, action: &str) -> Result<Caller, AppError> {
        let c = self.caller(req).await?;
        if READERS.iter().any(|r| c.has(*r)) {
            return Ok(c);
        }
        self.viewer(req, action).await.map(|v| v.caller().clone())
    }

    /// The devices a selection names now.
    async fn resolve(&self, selection: &str) -> Result<Vec<String>, AppError> {
        let pick = || AppError::invalid("selection", "pick devices on the Devices page first");
        let selection: DeviceSelection = serde_json::from_str(selection).map_err(|_| pick())?;
        let devids = match selection {
            DeviceSelection::Devids(d) => {
                let mut out: Vec<String> = Vec::new();
                for x in d.into_iter().map(|x| x.trim().to_owned()) {
                    if !x.is_empty() && !out.contains(&x) {
                        out.push(x);
                    }
                }
                out
            }
            DeviceSelection::Query(q) => inventory::matching_devids(&self.db, &q, COUNT_CAP + 1)
                .await
                .map_err(internal)?,
        };
        if devids.is_empty() {
            return Err(pick());
        }
        if devids.len() as i64 > COUNT_CAP {
            return Err(AppError::invalid(
                "selection",
                format!("at most {COUNT_CAP} devices at once; narrow the search"),
            ));
        }
        Ok(devids)
    }

    async fn parse_draft(&self, d: &RequestDraft) -> Result<Parsed, AppError> {
        let devids = self.resolve(&d.selection).await?;
        let peer = match d.peer.trim() {
            "" => return Err(AppError::invalid("peer", "pick a peer")),
            p => ServerId::parse(p.to_owned())
                .map_err(|_| AppError::invalid("peer", "not a valid ServerID"))?,
        };
        if peers::get(&self.db, peer.as_str())
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(AppError::invalid("peer", "not a configured peer"));
        }
        if peer.as_str() == self.server_id {
            return Err(AppError::invalid(
                "peer",
                "this server cannot delegate to itself",
            ));
        }
        let scope = match d.kind.as_str() {
            "full" => None,
            "partial" => {
                let items = d.scope();
                if items.is_empty() {
                    return Err(AppError::invalid(
                        "scope",
                        "pick at least one subtree and its rights",
                    ));
                }
                let mut out = Vec::new();
                for i in items {
                    if TreeUri::parse(&i.uri).is_err() {
                        return Err(AppError::invalid(
                            "scope",
                            format!("{} is not a tree URI", i.uri),
                        ));
                    }
                    let rights = Rights::parse(&i.rights).ok_or_else(|| {
                        AppError::invalid(
                            "scope",
                            format!("{}: rights are Add, Delete, Exec, Get, Replace", i.uri),
                        )
                    })?;
                    out.push(Subtree { uri: i.uri, rights });
                }
                Some(out)
            }
            _ => return Err(AppError::invalid("kind", "choose full or partial")),
        };
        let expires = match d.term.as_str() {
            "permanent" => None,
            "temporary" => {
                let ms = date_start_ms(&d.until, &d.tz_offset)
                    .ok_or_else(|| AppError::invalid("until", "pick the end date"))?;
                if ms <= now_ms() {
                    return Err(AppError::invalid(
                        "until",
                        "the end date must be in the future",
                    ));
                }
                Some(ms / 1000)
            }
            _ => return Err(AppError::invalid("term", "choose permanent or temporary")),
        };
        let reason = d.reason.replace("\r\n", "\n").trim().to_owned();
        if reason.chars().count() > MAX_REASON {
            return Err(AppError::invalid(
                "reason",
                format!("at most {MAX_REASON} characters"),
            ));
        }
        if reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(AppError::invalid("reason", "no control characters"));
        }
        Ok(Parsed {
            devids,
            peer,
            scope,
            expires,
            reason,
        })
    }

    /// What the request would write to one device, from its cached tree.
    async fn preview_device(
        &self,
        devid: &str,
        p: &Parsed,
        me: &ServerId,
    ) -> Result<DevicePreview, AppError> {
        let mut out = DevicePreview {
            devid: devid.to_owned(),
            account_node: String::new(),
            account_acl: String::new(),
            changes: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        };
        let open = store::list(
            &self.db,
            &store::Filter {
                state: "open".into(),
                devid: devid.to_owned(),
                ..Default::default()
            },
            1,
        )
        .await
        .map_err(internal)?;
        if let Some(r) = open.first() {
            out.problems.push(format!(
                "already in a delegation with {} ({})",
                r.peer,
                state_words(&r.state).to_lowercase()
            ));
        }
        let Some(device) = devices::get(&self.db, devid).await.map_err(internal)? else {
            out.problems.push("not a device of this server".into());
            return Ok(out);
        };
        let never_read = serde_json::from_str::<Vec<serde_json::Value>>(&device.tree)
            .map(|v| v.is_empty())
            .unwrap_or(true);
        let tree = tree_from_cache(&device.tree);
        let account = plan::account_node_for(&tree, &p.peer);
        out.account_node = account.as_str().to_owned();
        out.account_acl = format!(
            "Get={dms2}&Replace={dms2}&Delete={me}+{dms2}",
            dms2 = p.peer.as_str()
        );
        if never_read {
            out.notes.push(
                "This server has not read the device's tree yet; it reads it before \
                 changing any ACL."
                    .into(),
            );
        }
        match plan::acl_update(&tree, me, &p.peer, &p.wire_scope(), Some(&account)) {
            Ok(changes) => {
                out.changes = changes
                    .into_iter()
                    .map(|c| AclChangeRow {
                        uri: c.uri.as_str().to_owned(),
                        stored: c.stored.to_string(),
                        inherited: c.inherited.to_string(),
                        new: c.new.to_string(),
                    })
                    .collect();
            }
            Err(plan::PlanError::NothingToChange) if never_read => {}
            Err(e) => out.problems.push(e.to_string()),
        }
        Ok(out)
    }

    pub(super) async fn request_options_for(
        &self,
        req: &Parts,
        selection: String,
    ) -> Result<RequestOptions, AppError> {
        self.operator(req, "request delegations").await?;
        let devids = self.resolve(&selection).await?;
        let peers = peers::list(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|p| p.server_id.as_str() != self.server_id)
            .map(|p| PeerChoice {
                server_id: p.server_id.to_string(),
                fingerprint: p.fingerprint.as_str().to_owned(),
            })
            .collect();
        let first = devids[0].clone();
        let me = self.engine.server_id().clone();
        let mut nodes = Vec::new();
        if let Some(d) = devices::get(&self.db, &first).await.map_err(internal)? {
            let tree = tree_from_cache(&d.tree);
            let own = plan::own_account(&tree, &me);
            for n in tree.list(&TreeUri::root()) {
                if !n.interior {
                    continue;
                }
                let refused = if own.as_ref().is_some_and(|a| n.uri.is_within(a)) {
                    "this server's own DM account"
                } else if !tree.may_replace_acl(&n.uri, &me) {
                    "this server may not change its ACL"
                } else {
                    ""
                };
                nodes.push(ScopeNode {
                    depth: n.uri.depth(),
                    uri: n.uri.as_str().to_owned(),
                    effective_acl: n.effective_acl.to_string(),
                    refused: refused.to_owned(),
                });
                if nodes.len() == MAX_SCOPE_NODES {
                    break;
                }
            }
        }
        Ok(RequestOptions {
            peers,
            devices: devids.len() as i64,
            sample: devids.iter().take(10).cloned().collect(),
            tree_device: Some(first),
            nodes,
        })
    }

    pub(super) async fn preview(
        &self,
        req: &Parts,
        draft: RequestDraft,
    ) -> Result<RequestPreview, AppError> {
        self.operator(req, "request delegations").await?;
        let p = self.parse_draft(&draft).await?;
        let me = self.engine.server_id().clone();
        let mut previews = Vec::new();
        for devid in p.devids.iter().take(PREVIEW_DEVICES) {
            previews.push(self.preview_device(devid, &p, &me).await?);
        }
        Ok(RequestPreview {
            with_problems: previews.iter().filter(|d| !d.problems.is_empty()).count() as i64,
            peer: p.peer.to_string(),
            kind: if p.scope.is_some() { "partial" } else { "full" }.into(),
            scope: p
                .scope
                .iter()
                .flatten()
                .map(|s| ScopeItem {
                    uri: s.uri.clone(),
                    rights: s.rights.to_string(),
                })
                .collect(),
            expires_at: p.expires.map(|s| s * 1000),
            devices: p.devids.len() as i64,
            previews,
            draft,
        })
    }

    pub(super) async fn send(
        &self,
        req: &Parts,
        draft: RequestDraft,
    ) -> Result<RequestSent, AppError> {
        let op = self.operator(req, "request delegations").await?;
        let p = self.parse_draft(&draft).await?;
        let r = self
            .engine
            .request(
                NewRequest {
                    devices: p.devids,
                    peer: p.peer.to_string(),
                    delegating: true,
                    scope: p.scope,
                    expires: p.expires,
                    reason: p.reason,
                },
                &op.caller().name,
            )
            .await
            .map_err(engine_error)?;
        Ok(RequestSent {
            batch_id: r.batch_id,
            delegations: r.delegations,
        })
    }

    pub(super) async fn list_delegations(
        &self,
        req: &Parts,
        f: DelegationFilter,
    ) -> Result<DelegationPage, AppError> {
        self.reader(req, "see delegations").await?;
        for (field, v) in [
            ("device", &f.device),
            ("peer", &f.peer),
            ("state", &f.state),
        ] {
            if v.len() > 255 {
                return Err(AppError::invalid(field, "at most 255 bytes"));
            }
        }
        let batch_id = match f.batch.trim() {
            "" => None,
            b => Some(
                b.parse::<i64>()
                    .map_err(|_| AppError::invalid("batch", "a batch is a number"))?,
            ),
        };
        let filter = store::Filter {
            state: f.state.trim().to_owned(),
            devid: f.device.trim().to_owned(),
            peer: f.peer.trim().to_owned(),
            batch_id,
        };
        let order = match f.sort {
            DelegationSort::Started => store::Order::Created,
            DelegationSort::Device => store::Order::Devid,
            DelegationSort::Peer => store::Order::Peer,
            DelegationSort::State => store::Order::State,
        };
        let per_page = DELEGATIONS_PER_PAGE;
        let total = store::count(&self.db, &filter).await.map_err(internal)?;
        // A page past the end shows the last one.
        let last = ((total + per_page - 1) / per_page).max(1);
        let page = f.page.clamp(1, last);
        let rows = store::list_page(
            &self.db,
            &filter,
            order,
            f.descending(),
            per_page,
            (page - 1) * per_page,
        )
        .await
        .map_err(internal)?;
        Ok(DelegationPage {
            rows: rows.into_iter().map(row_dto).collect(),
            total,
            page,
            per_page,
        })
    }

    async fn waiting(&self) -> Result<(Vec<store::Delegation>, Vec<store::Delegation>), AppError> {
        let by_state = |state: &str| store::Filter {
            state: state.to_owned(),
            ..Default::default()
        };
        let outgoing = store::list(&self.db, &by_state(AWAITING_REQUEST_APPROVAL), 500)
            .await
            .map_err(internal)?;
        let incoming = store::list(&self.db, &by_state("AwaitingApproval"), 500)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|r| r.role == "dms2" || !r.initiator)
            .collect();
        Ok((outgoing, incoming))
    }

    pub(super) async fn list_approvals(&self, req: &Parts) -> Result<Approvals, AppError> {
        self.reader(req, "see approvals").await?;
        let (outgoing, incoming) = self.waiting().await?;
        let mut inbox = Vec::new();
        for r in incoming {
            let peer = peers::get(&self.db, &r.peer).await.map_err(internal)?;
            let entries = audit::list(
                &self.db,
                &audit::Filter {
                    subject: r.delegation_id.clone(),
                    code: Some(Event::DelegationSignatureVerified.code()),
                    ..Default::default()
                },
                20,
            )
            .await
            .map_err(internal)?;
            let signatures = entries
                .iter()
                .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.details).ok())
                .map(|d| SignatureRow {
                    signer: d["signer"].as_str().unwrap_or_default().to_owned(),
                    signature: d["signature"].as_str().unwrap_or_default().to_owned(),
                    verified: d["verified"].as_bool().unwrap_or(false)
                        || d["own"].as_bool().unwrap_or(false),
                })
                .collect();
            inbox.push(IncomingRequest {
                fingerprint: peer
                    .as_ref()
                    .map(|p| p.fingerprint.as_str().to_owned())
                    .unwrap_or_default(),
                peer_url: peer
                    .as_ref()
                    .map(|p| p.url.as_str().to_owned())
                    .unwrap_or_default(),
                signatures,
                row: row_dto(r),
            });
        }
        Ok(Approvals {
            outgoing: outgoing.into_iter().map(row_dto).collect(),
            incoming: inbox,
        })
    }

    pub(super) async fn count_waiting(&self, req: &Parts) -> Result<i64, AppError> {
        self.reader(req, "see approvals").await?;
        let (o, i) = self.waiting().await?;
        Ok((o.len() + i.len()) as i64)
    }

    /// The delegation, unless `who` requested it (four eyes; audited).
    async fn not_own(
        &self,
        c: &Caller,
        id: i64,
        action: &str,
    ) -> Result<store::Delegation, AppError> {
        let row = store::get(&self.db, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound("The delegation".into()))?;
        if row.state == AWAITING_REQUEST_APPROVAL && row.requested_by == c.name {
            audit::append(
                &self.db,
                NewEntry::new(Event::AccessDenied, &c.name, &row.delegation_id)
                    .source(&c.source)
                    .details(serde_json::json!({ "reason": "four eyes", "action": action })),
            )
            .await
            .map_err(internal)?;
            return Err(AppError::Forbidden(format!("{action} your own request")));
        }
        Ok(row)
    }

    pub(super) async fn approve_request(&self, req: &Parts, id: i64) -> Result<(), AppError> {
        let a = self.approver(req, "approve requests").await?;
        self.not_own(a.caller(), id, "approve").await?;
        self.engine
            .approve(id, &a.caller().name)
            .await
            .map_err(engine_error)
    }

    /// "Approve all": each request the caller may approve, one transition
    /// each; their own requests are refused (four eyes) and audited.
    pub(super) async fn approve_requests(
        &self,
        req: &Parts,
        ids: Vec<i64>,
    ) -> Result<BulkDecision, AppError> {
        let a = self.approver(req, "approve requests").await?;
        if ids.is_empty() {
            return Err(AppError::invalid("ids", "pick at least one request"));
        }
        if ids.len() > BULK_MAX {
            return Err(AppError::invalid(
                "ids",
                format!("at most {BULK_MAX} requests at once"),
            ));
        }
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for id in ids {
            match store::get(&self.db, id).await.map_err(internal)? {
                Some(r)
                    if r.state == AWAITING_REQUEST_APPROVAL
                        && r.requested_by == a.caller().name =>
                {
                    mine.push(id)
                }
                Some(_) => theirs.push(id),
                None => mine.push(-id),
            }
        }
        let mut out = BulkDecision::default();
        for id in mine {
            if id < 0 {
                out.refused.push((-id, "no such delegation".to_owned()));
            } else {
                // The same refusal, and the same audit entry, as one by one.
                let e = self.not_own(a.caller(), id, "approve").await.err();
                let why = e.map(|e| e.to_string()).unwrap_or_default();
                out.refused.push((id, why));
            }
        }
        for (id, r) in self.engine.approve_all(&theirs, &a.caller().name).await {
            match r {
                Ok(()) => out.approved += 1,
                Err(e) => out.refused.push((id, engine_error(e).to_string())),
            }
        }
        out.refused.sort();
        Ok(out)
    }

    pub(super) async fn reject_request(
        &self,
        req: &Parts,
        id: i64,
        reason: String,
    ) -> Result<(), AppError> {
        let a = self.approver(req, "reject requests").await?;
        let reason = reason.replace("\r\n", "\n").trim().to_owned();
        if reason.is_empty() {
            return Err(AppError::invalid(
                "reason",
                "give a reason for the rejection",
            ));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(AppError::invalid(
                "reason",
                format!("at most {MAX_REASON} characters"),
            ));
        }
        self.not_own(a.caller(), id, "reject").await?;
        self.engine
            .reject(id, &a.caller().name, &reason)
            .await
            .map_err(engine_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_dates_start_in_the_callers_zone() {
        let utc = date_start_ms("2026-12-01", "").unwrap();
        assert_eq!(
            handover_app::components::ui::utc_text(utc),
            "2026-12-01 00:00:00 UTC"
        );
        // An hour east of UTC the day starts an hour earlier.
        assert_eq!(date_start_ms("2026-12-01", "60"), Some(utc - 3_600_000));
        assert_eq!(date_start_ms("2026-12-01", "9999"), None);
        assert_eq!(date_start_ms("tomorrow", ""), None);
    }

    #[test]
    fn engine_messages_become_sentences() {
        assert_eq!(
            sentence("a device is listed twice"),
            "A device is listed twice."
        );
    }
}

//! The portal's server functions, served by [`Portal`].

use super::auth::{internal, session_of, source_of, SESSION_USER};
use super::password::{self, Password};
use super::Portal;
use crate::audit::{self, Event, NewEntry};
use crate::store::throttle::{self, Policy};
use crate::store::users::{self, UserError};
use crate::store::{now_ms, settings};
use handover_app::api::audit::{AuditEntry, AuditFilter, AuditPage, EventKind, VerifyReport};
use handover_app::api::delegations::{
    Approvals, BulkDecision, DelegationFilter, DelegationPage, RequestDraft, RequestOptions,
    RequestPreview, RequestSent,
};
use handover_app::api::devices::{DeviceDetail, DeviceFacets, DevicePage, DeviceQuery};
use handover_app::api::live::{
    Act, BatchLive, DelegationLive, DelegationRow as DeviceDelegationRow,
};
use handover_app::api::peers::{ConnectionReport, PeerForm, PeersPage};
use handover_app::api::users::UserRow;
use handover_app::api::{AppError, Me, Role};
use handover_app::backend::Backend;
use http::request::Parts;

/// User names: 1–64 of letters, digits and `. _ @ -`.
pub fn check_user_name(name: &str) -> Result<(), AppError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "name",
            "use 1 to 64 letters, digits and . _ @ -",
        ))
    }
}

fn new_password(s: String) -> Result<Password, AppError> {
    Password::new(s).map_err(|m| AppError::invalid("password", m))
}

fn user_error(e: UserError) -> AppError {
    match e {
        UserError::Exists(n) => AppError::Conflict(format!("A user named {n} already exists.")),
        UserError::NotFound(n) => AppError::NotFound(format!("User {n}")),
        UserError::Db(e) => internal(e),
    }
}

pub const SETUP_TOKEN_KEY: &str = "setup_token_sha256";

impl Portal {
    pub(super) async fn audit(&self, entry: NewEntry) -> Result<(), AppError> {
        audit::append(&self.db, entry)
            .await
            .map(|_| ())
            .map_err(internal)
    }

    async fn start_session(&self, parts: &Parts, user_id: i64) -> Result<(), AppError> {
        let session = session_of(parts)?;
        // A new id at sign-in, so a planted session id is worth nothing.
        session.cycle_id().await.map_err(internal)?;
        session
            .insert(SESSION_USER, user_id)
            .await
            .map_err(internal)?;
        users::touch_sign_in(&self.db, user_id)
            .await
            .map_err(internal)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for Portal {
    async fn me(&self, req: &Parts) -> Result<Option<Me>, AppError> {
        match self.caller(req).await {
            Ok(c) => Ok(Some(c.me(&self.server_id))),
            Err(AppError::Unauthenticated) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sign_in(&self, req: &Parts, name: String, password: String) -> Result<Me, AppError> {
        let name = name.trim().to_owned();
        let source = source_of(req);
        let now = now_ms();
        let user_key = format!("user:{}", name.to_lowercase());
        let source_key = format!("source:{source}");
        let user_state = throttle::get(&self.db, &user_key).await.map_err(internal)?;
        let source_state = throttle::get(&self.db, &source_key)
            .await
            .map_err(internal)?;
        let wait = [
            user_state.wait_ms(&Policy::ACCOUNT, now),
            source_state.wait_ms(&Policy::SOURCE, now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(ms) = wait {
            self.audit(
                NewEntry::new(Event::SignInThrottled, &name, &name)
                    .source(&source)
                    .details(serde_json::json!({ "retry_after_ms": ms })),
            )
            .await?;
            return Err(AppError::Throttled {
                retry_after_secs: ((ms + 999) / 1000) as u64,
            });
        }

        let user = if name.len() <= 64 {
            users::by_name(&self.db, &name).await.map_err(internal)?
        } else {
            None
        };
        let ok = password::verify(
            Password::offered(password),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
        match user {
            Some(u) if ok && !u.disabled => {
                throttle::clear(&self.db, &user_key)
                    .await
                    .map_err(internal)?;
                self.start_session(req, u.id).await?;
                self.audit(NewEntry::new(Event::SignIn, &u.name, &u.name).source(&source))
                    .await?;
                tracing::info!(user = %u.name, %source, "signed in");
                Ok(Me {
                    name: u.name,
                    roles: u.roles,
                    server_id: self.server_id.clone(),
                })
            }
            other => {
                let reason = match &other {
                    None => "unknown user",
                    Some(u) if u.disabled && ok => "account disabled",
                    Some(_) => "wrong password",
                };
                self.metrics.sign_in_failed();
                // The delay runs from the failure, not from the start of the slow check.
                let now = now_ms();
                let (_, user_locked) = throttle::fail(&self.db, &user_key, &Policy::ACCOUNT, now)
                    .await
                    .map_err(internal)?;
                let (_, source_locked) =
                    throttle::fail(&self.db, &source_key, &Policy::SOURCE, now)
                        .await
                        .map_err(internal)?;
                self.audit(
                    NewEntry::new(Event::SignInFailed, &name, &name)
                        .source(&source)
                        .details(serde_json::json!({ "reason": reason })),
                )
                .await?;
                for (locked, what) in [(user_locked, "account"), (source_locked, "source address")]
                {
                    if locked {
                        self.audit(
                            NewEntry::new(Event::LockedOut, "system", if what == "account" { &name } else { &source })
                                .source(&source)
                                .details(serde_json::json!({ "locked": what, "minutes": Policy::ACCOUNT.lock_ms / 60_000 })),
                        )
                        .await?;
                    }
                }
                tracing::info!(user = %name, %source, reason, "sign-in failed");
                if user_locked || source_locked {
                    return Err(AppError::Throttled {
                        retry_after_secs: (Policy::ACCOUNT.lock_ms / 1000) as u64,
                    });
                }
                Err(AppError::invalid("", "Wrong user name or password."))
            }
        }
    }

    async fn sign_out(&self, req: &Parts) -> Result<(), AppError> {
        let caller = self.caller(req).await.ok();
        let session = session_of(req)?;
        session.flush().await.map_err(internal)?;
        if let Some(c) = caller {
            self.audit(NewEntry::new(Event::SignOut, &c.name, &c.name).source(&c.source))
                .await?;
        }
        Ok(())
    }

    async fn setup_needed(&self) -> Result<bool, AppError> {
        let users = users::count(&self.db).await.map_err(internal)?;
        let token = settings::get(&self.db, SETUP_TOKEN_KEY)
            .await
            .map_err(internal)?;
        Ok(users == 0 && token.is_some())
    }

    async fn setup_admin(
        &self,
        req: &Parts,
        token: String,
        name: String,
        password: String,
    ) -> Result<Me, AppError> {
        let source = source_of(req);
        let stored = settings::get(&self.db, SETUP_TOKEN_KEY)
            .await
            .map_err(internal)?;
        let offered = crate::secrets::sha256_hex(token.trim().as_bytes());
        let valid = stored.is_some_and(|s| crate::secrets::ct_eq(s.as_bytes(), offered.as_bytes()));
        if !valid || users::count(&self.db).await.map_err(internal)? > 0 {
            self.audit(
                NewEntry::new(Event::AccessDenied, "anonymous", "setup")
                    .source(&source)
                    .details(serde_json::json!({ "reason": "invalid or used setup token" })),
            )
            .await?;
            return Err(AppError::Forbidden(
                "use this setup link: it is invalid or already used".into(),
            ));
        }
        let name = name.trim().to_owned();
        check_user_name(&name)?;
        let hash = password::hash(new_password(password)?)
            .await
            .map_err(internal)?;
        let id = users::create(&self.db, &name, &hash, &[Role::Admin])
            .await
            .map_err(user_error)?;
        settings::delete(&self.db, SETUP_TOKEN_KEY)
            .await
            .map_err(internal)?;
        self.audit(NewEntry::new(Event::SetupAdminCreated, &name, &name).source(&source))
            .await?;
        self.start_session(req, id).await?;
        self.audit(NewEntry::new(Event::SignIn, &name, &name).source(&source))
            .await?;
        Ok(Me {
            name,
            roles: vec![Role::Admin],
            server_id: self.server_id.clone(),
        })
    }

    async fn list_users(&self, req: &Parts) -> Result<Vec<UserRow>, AppError> {
        self.admin(req, "list users").await?;
        let list = users::list(&self.db).await.map_err(internal)?;
        Ok(list
            .into_iter()
            .map(|u| UserRow {
                name: u.name,
                roles: u.roles,
                disabled: u.disabled,
                created_at: u.created_at,
                last_sign_in: u.last_sign_in,
            })
            .collect())
    }

    async fn create_user(
        &self,
        req: &Parts,
        name: String,
        password: String,
        roles: Vec<Role>,
    ) -> Result<(), AppError> {
        let admin = self.admin(req, "create users").await?;
        let name = name.trim().to_owned();
        check_user_name(&name)?;
        let hash = password::hash(new_password(password)?)
            .await
            .map_err(internal)?;
        users::create(&self.db, &name, &hash, &roles)
            .await
            .map_err(user_error)?;
        let c = admin.caller();
        self.audit(
            NewEntry::new(Event::UserCreated, &c.name, &name)
                .source(&c.source)
                .details(serde_json::json!({ "roles": users::roles_to_text(&roles) })),
        )
        .await
    }

    async fn set_roles(&self, req: &Parts, name: String, roles: Vec<Role>) -> Result<(), AppError> {
        let admin = self.admin(req, "change roles").await?;
        let c = admin.caller();
        if c.name == name && !roles.contains(&Role::Admin) {
            return Err(AppError::Conflict(
                "You cannot remove your own admin role; ask another administrator.".into(),
            ));
        }
        let before = users::by_name(&self.db, &name)
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound(format!("User {name}")))?;
        users::set_roles(&self.db, &name, &roles)
            .await
            .map_err(user_error)?;
        self.audit(
            NewEntry::new(Event::UserRolesChanged, &c.name, &name)
                .source(&c.source)
                .details(serde_json::json!({
                    "before": users::roles_to_text(&before.roles),
                    "after": users::roles_to_text(&roles),
                })),
        )
        .await
    }

    async fn set_disabled(
        &self,
        req: &Parts,
        name: String,
        disabled: bool,
    ) -> Result<(), AppError> {
        let admin = self
            .admin(
                req,
                if disabled {
                    "disable users"
                } else {
                    "enable users"
                },
            )
            .await?;
        let c = admin.caller();
        if c.name == name && disabled {
            return Err(AppError::Conflict(
                "You cannot disable your own account.".into(),
            ));
        }
        users::set_disabled(&self.db, &name, disabled)
            .await
            .map_err(user_error)?;
        let event = if disabled {
            Event::UserDisabled
        } else {
            Event::UserEnabled
        };
        self.audit(NewEntry::new(event, &c.name, &name).source(&c.source))
            .await
    }

    async fn reset_password(
        &self,
        req: &Parts,
        name: String,
        password: String,
    ) -> Result<(), AppError> {
        let admin = self.admin(req, "reset passwords").await?;
        let hash = password::hash(new_password(password)?)
            .await
            .map_err(internal)?;
        users::set_password(&self.db, &name, &hash)
            .await
            .map_err(user_error)?;
        throttle::clear(&self.db, &format!("user:{}", name.to_lowercase()))
            .await
            .map_err(internal)?;
        let c = admin.caller();
        self.audit(NewEntry::new(Event::UserPasswordReset, &c.name, &name).source(&c.source))
            .await
    }

    async fn audit_list(&self, req: &Parts, filter: AuditFilter) -> Result<AuditPage, AppError> {
        self.auditor(req, "read the audit log").await?;
        let code = if filter.event.is_empty() {
            None
        } else {
            Some(
                Event::from_name(&filter.event)
                    .ok_or_else(|| AppError::invalid("event", "unknown event"))?
                    .code(),
            )
        };
        let delegation = self.delegation_subject(filter.delegation.trim()).await?;
        let f = audit::Filter {
            actor: filter.actor.trim().to_owned(),
            subject: delegation.unwrap_or_else(|| filter.subject.trim().to_owned()),
            code,
            since: filter.since,
            until: filter.until,
            before_seq: filter.before,
            device: filter.device.trim().to_owned(),
            peer: filter.peer.trim().to_owned(),
        };
        let limit = filter.limit.unwrap_or(50).clamp(1, 500) as i64;
        let entries = audit::list(&self.db, &f, limit).await.map_err(internal)?;
        let total = audit::count(
            &self.db,
            &audit::Filter {
                before_seq: None,
                ..f.clone()
            },
        )
        .await
        .map_err(internal)?;
        let next_before = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.seq))
            .flatten();
        let subjects: Vec<String> = entries
            .iter()
            .filter(|e| e.event_name().starts_with("delegation."))
            .map(|e| e.subject.clone())
            .collect();
        let ids = crate::store::delegations::ids_of(&self.db, &subjects)
            .await
            .map_err(internal)?;
        Ok(AuditPage {
            entries: entries
                .into_iter()
                .map(|e| AuditEntry {
                    delegation: ids.get(&e.subject).copied(),
                    event: e.event_name().to_owned(),
                    seq: e.seq,
                    time: e.time,
                    code: e.code as i32,
                    actor: e.actor,
                    subject: e.subject,
                    source: e.source,
                    details: e.details,
                    hash: e.hash,
                })
                .collect(),
            next_before,
            total_matching: total,
        })
    }

    async fn audit_verify(&self, req: &Parts) -> Result<VerifyReport, AppError> {
        let auditor = self.auditor(req, "verify the audit log").await?;
        let v = audit::verify(&self.db).await.map_err(internal)?;
        let c = auditor.caller();
        self.audit(
            NewEntry::new(Event::AuditVerified, &c.name, "audit log")
                .source(&c.source)
                .details(serde_json::json!({ "checked": v.checked, "broken_at": v.broken.as_ref().map(|b| b.0) })),
        )
        .await?;
        Ok(VerifyReport {
            entries_checked: v.checked,
            first_broken: v.broken.as_ref().map(|b| b.0),
            message: v.message(),
        })
    }

    async fn audit_event_kinds(&self, req: &Parts) -> Result<Vec<EventKind>, AppError> {
        self.auditor(req, "read the audit log").await?;
        Ok(Event::ALL
            .iter()
            .map(|e| EventKind {
                code: e.code() as i32,
                name: e.name().to_owned(),
            })
            .collect())
    }

    async fn devices_list(&self, req: &Parts, query: DeviceQuery) -> Result<DevicePage, AppError> {
        self.list_devices(req, query).await
    }

    async fn devices_facets(&self, req: &Parts) -> Result<DeviceFacets, AppError> {
        self.device_facets(req).await
    }

    async fn device_get(&self, req: &Parts, devid: String) -> Result<DeviceDetail, AppError> {
        self.device_detail(req, devid).await
    }

    async fn peers_overview(&self, req: &Parts) -> Result<PeersPage, AppError> {
        self.peers_overview_of(req).await
    }

    async fn peer_add(&self, req: &Parts, form: PeerForm) -> Result<(), AppError> {
        self.add_peer(req, form).await
    }

    async fn peer_update(&self, req: &Parts, form: PeerForm) -> Result<(), AppError> {
        self.update_peer(req, form).await
    }

    async fn peer_remove(&self, req: &Parts, server_id: String) -> Result<(), AppError> {
        self.remove_peer(req, server_id).await
    }

    async fn peer_test(
        &self,
        req: &Parts,
        server_id: String,
    ) -> Result<ConnectionReport, AppError> {
        self.test_peer(req, server_id).await
    }

    async fn delegation_live(&self, req: &Parts, id: i64) -> Result<DelegationLive, AppError> {
        self.live_delegation(req, id).await
    }

    async fn delegation_act(
        &self,
        req: &Parts,
        id: i64,
        act: Act,
        reason: String,
    ) -> Result<Option<i64>, AppError> {
        self.act(req, id, act, reason).await
    }

    async fn batch_live(&self, req: &Parts, id: i64) -> Result<BatchLive, AppError> {
        self.live_batch(req, id).await
    }

    async fn device_delegations(
        &self,
        req: &Parts,
        devid: String,
    ) -> Result<Vec<DeviceDelegationRow>, AppError> {
        self.delegations_of_device(req, devid).await
    }

    async fn request_options(
        &self,
        req: &Parts,
        selection: String,
    ) -> Result<RequestOptions, AppError> {
        self.request_options_for(req, selection).await
    }

    async fn request_preview(
        &self,
        req: &Parts,
        draft: RequestDraft,
    ) -> Result<RequestPreview, AppError> {
        self.preview(req, draft).await
    }

    async fn request_send(
        &self,
        req: &Parts,
        draft: RequestDraft,
    ) -> Result<RequestSent, AppError> {
        self.send(req, draft).await
    }

    async fn delegations_list(
        &self,
        req: &Parts,
        filter: DelegationFilter,
    ) -> Result<DelegationPage, AppError> {
        self.list_delegations(req, filter).await
    }

    async fn approvals(&self, req: &Parts) -> Result<Approvals, AppError> {
        self.list_approvals(req).await
    }

    async fn approvals_waiting(&self, req: &Parts) -> Result<i64, AppError> {
        self.count_waiting(req).await
    }

    async fn approve(&self, req: &Parts, id: i64) -> Result<(), AppError> {
        self.approve_request(req, id).await
    }

    async fn approve_all(&self, req: &Parts, ids: Vec<i64>) -> Result<BulkDecision, AppError> {
        self.approve_requests(req, ids).await
    }

    async fn reject(&self, req: &Parts, id: i64, reason: String) -> Result<(), AppError> {
        self.reject_request(req, id, reason).await
    }
}

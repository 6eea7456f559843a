//! What the portal needs from the server, as one trait the `handover` server
//! implements. Each method gets the request's parts so the server can find the
//! session and source address and enforce roles itself (default deny).

use crate::api::audit::{AuditFilter, AuditPage, EventKind, VerifyReport};
use crate::api::delegations::{
    Approvals, BulkDecision, DelegationFilter, DelegationPage, RequestDraft, RequestOptions,
    RequestPreview, RequestSent,
};
use crate::api::devices::{DeviceDetail, DeviceFacets, DevicePage, DeviceQuery};
use crate::api::live::{Act, BatchLive, DelegationLive, DelegationRow as DeviceDelegationRow};
use crate::api::peers::{ConnectionReport, PeerForm, PeersPage};
use crate::api::users::UserRow;
use crate::api::{AppError, Me, Role};
use http::request::Parts;

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn me(&self, req: &Parts) -> Result<Option<Me>, AppError>;
    async fn sign_in(&self, req: &Parts, name: String, password: String) -> Result<Me, AppError>;
    async fn sign_out(&self, req: &Parts) -> Result<(), AppError>;
    async fn setup_needed(&self) -> Result<bool, AppError>;
    async fn setup_admin(
        &self,
        req: &Parts,
        token: String,
        name: String,
        password: String,
    ) -> Result<Me, AppError>;

    async fn list_users(&self, req: &Parts) -> Result<Vec<UserRow>, AppError>;
    async fn create_user(
        &self,
        req: &Parts,
        name: String,
        password: String,
        roles: Vec<Role>,
    ) -> Result<(), AppError>;
    async fn set_roles(&self, req: &Parts, name: String, roles: Vec<Role>) -> Result<(), AppError>;
    async fn set_disabled(&self, req: &Parts, name: String, disabled: bool)
        -> Result<(), AppError>;
    async fn reset_password(
        &self,
        req: &Parts,
        name: String,
        password: String,
    ) -> Result<(), AppError>;

    async fn audit_list(&self, req: &Parts, filter: AuditFilter) -> Result<AuditPage, AppError>;
    async fn audit_verify(&self, req: &Parts) -> Result<VerifyReport, AppError>;
    async fn audit_event_kinds(&self, req: &Parts) -> Result<Vec<EventKind>, AppError>;

    async fn devices_list(&self, req: &Parts, query: DeviceQuery) -> Result<DevicePage, AppError>;
    async fn devices_facets(&self, req: &Parts) -> Result<DeviceFacets, AppError>;
    async fn device_get(&self, req: &Parts, devid: String) -> Result<DeviceDetail, AppError>;

    async fn peers_overview(&self, req: &Parts) -> Result<PeersPage, AppError>;
    async fn peer_add(&self, req: &Parts, form: PeerForm) -> Result<(), AppError>;
    async fn peer_update(&self, req: &Parts, form: PeerForm) -> Result<(), AppError>;
    async fn peer_remove(&self, req: &Parts, server_id: String) -> Result<(), AppError>;
    async fn peer_test(&self, req: &Parts, server_id: String)
        -> Result<ConnectionReport, AppError>;
    async fn delegation_live(&self, req: &Parts, id: i64) -> Result<DelegationLive, AppError>;
    async fn delegation_act(
        &self,
        req: &Parts,
        id: i64,
        act: Act,
        reason: String,
    ) -> Result<Option<i64>, AppError>;
    async fn batch_live(&self, req: &Parts, id: i64) -> Result<BatchLive, AppError>;
    async fn device_delegations(
        &self,
        req: &Parts,
        devid: String,
    ) -> Result<Vec<DeviceDelegationRow>, AppError>;

    /// What the request form offers for a selection (a `DeviceSelection` as JSON).
    async fn request_options(
        &self,
        req: &Parts,
        selection: String,
    ) -> Result<RequestOptions, AppError>;
    async fn request_preview(
        &self,
        req: &Parts,
        draft: RequestDraft,
    ) -> Result<RequestPreview, AppError>;
    async fn request_send(&self, req: &Parts, draft: RequestDraft)
        -> Result<RequestSent, AppError>;
    async fn delegations_list(
        &self,
        req: &Parts,
        filter: DelegationFilter,
    ) -> Result<DelegationPage, AppError>;
    async fn approvals(&self, req: &Parts) -> Result<Approvals, AppError>;
    async fn approvals_waiting(&self, req: &Parts) -> Result<i64, AppError>;
    async fn approve(&self, req: &Parts, id: i64) -> Result<(), AppError>;
    async fn approve_all(&self, req: &Parts, ids: Vec<i64>) -> Result<BulkDecision, AppError>;
    async fn reject(&self, req: &Parts, id: i64, reason: String) -> Result<(), AppError>;
}

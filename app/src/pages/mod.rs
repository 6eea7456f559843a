//! One module per route.

pub mod approvals;
pub mod audit;
pub mod batch;
pub mod delegation;
pub mod delegations;
pub mod device;
pub mod devices;
pub mod home;
pub mod not_found;
pub mod peers;
pub mod request;
pub mod setup;
pub mod sign_in;
pub mod users;

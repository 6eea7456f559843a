//! Users and their roles (admin only).

use super::{AppError, Role};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of the Users page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub name: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub last_sign_in: Option<i64>,
}

#[server(endpoint = "users/list")]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    super::with_backend(|b, req| async move { b.list_users(&req).await }).await
}

/// Creates a user. `roles` arrives from a form as repeated `roles[]` fields.
#[server(endpoint = "users/create")]
pub async fn create_user(
    name: String,
    password: String,
    #[server(default)] roles: Vec<String>,
) -> Result<(), AppError> {
    super::with_backend(|b, req| async move {
        let roles = parse_roles(&roles)?;
        b.create_user(&req, name, password, roles).await
    })
    .await
}

#[server(endpoint = "users/set-roles")]
pub async fn set_roles(
    name: String,
    #[server(default)] roles: Vec<String>,
) -> Result<(), AppError> {
    super::with_backend(|b, req| async move {
        let roles = parse_roles(&roles)?;
        b.set_roles(&req, name, roles).await
    })
    .await
}

#[server(endpoint = "users/set-disabled")]
pub async fn set_disabled(name: String, disabled: bool) -> Result<(), AppError> {
    super::with_backend(|b, req| async move { b.set_disabled(&req, name, disabled).await }).await
}

#[server(endpoint = "users/reset-password")]
pub async fn reset_password(name: String, password: String) -> Result<(), AppError> {
    super::with_backend(|b, req| async move { b.reset_password(&req, name, password).await }).await
}

pub fn parse_roles(raw: &[String]) -> Result<Vec<Role>, AppError> {
    let mut roles = Vec::new();
    for r in raw {
        let role = Role::parse(r)
            .ok_or_else(|| AppError::invalid("roles", format!("unknown role {r:?}")))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    Ok(roles)
}

//! Signing in and out, and the first administrator.

use super::{AppError, Me};
use leptos::prelude::*;

/// Who is signed in, if anyone.
#[server(endpoint = "session/me")]
pub async fn current_user() -> Result<Option<Me>, AppError> {
    super::with_backend(|b, req| async move { b.me(&req).await }).await
}

/// Signs in with a local account. Always a POST, so the session cookie is set
/// on a complete response, never on a streamed page.
#[server(endpoint = "session/sign-in")]
pub async fn sign_in(name: String, password: String, next: Option<String>) -> Result<Me, AppError> {
    let me =
        super::with_backend(|b, req| async move { b.sign_in(&req, name, password).await }).await?;
    leptos_axum::redirect(&safe_next(next.as_deref()));
    Ok(me)
}

/// Signs out and ends the server-side session.
#[server(endpoint = "session/sign-out")]
pub async fn sign_out() -> Result<(), AppError> {
    super::with_backend(|b, req| async move { b.sign_out(&req).await }).await?;
    leptos_axum::redirect("/sign-in");
    Ok(())
}

/// True while no user exists and the one-time setup link is still valid.
#[server(endpoint = "session/setup-needed")]
pub async fn setup_needed() -> Result<bool, AppError> {
    super::with_backend(|b, _req| async move { b.setup_needed().await }).await
}

/// Creates the first administrator with the one-time setup token printed at first start.
#[server(endpoint = "session/setup")]
pub async fn setup_admin(
    token: String,
    name: String,
    password: String,
    confirm: String,
) -> Result<Me, AppError> {
    let me = super::with_backend(|b, req| async move {
        if password != confirm {
            return Err(AppError::invalid("confirm", "the two passwords differ"));
        }
        b.setup_admin(&req, token, name, password).await
    })
    .await?;
    leptos_axum::redirect("/");
    Ok(me)
}

/// Only same-site paths are followed after sign-in, so a crafted link cannot
/// send a user elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

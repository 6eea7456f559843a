//! Bearer tokens of the JSON API: stored as SHA-256, acting with their
//! user's roles; a disabled user's tokens stop working.

use super::{now_ms, users, Db};
use crate::secrets;
use handover_app::api::Role;
use sqlx::Row;

/// Creates a token for `user_id`; returns the token text (shown once).
pub async fn create(db: &Db, user_id: i64, label: &str) -> Result<String, sqlx::Error> {
    let token = format!("hov_{}", secrets::random_token(32));
    sqlx::query(&db.sql(
        "INSERT INTO api_tokens (user_id, token_sha256, label, created_at) VALUES ($1, $2, $3, $4)",
    ))
    .bind(user_id)
    .bind(secrets::sha256_hex(token.as_bytes()))
    .bind(label)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(token)
}

/// How stale `last_used_at` may get: a token in steady use is not written
/// back on every request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Who a valid token acts for: its user's name and roles (the password
/// hash and the rest of the user's row are not read).
#[derive(Debug, Clone)]
pub struct TokenUser {
    pub name: String,
    pub roles: Vec<Role>,
}

/// The enabled user a token acts for, if the token is valid; notes its use
/// (to the minute). The token and its user are one read.
pub async fn user_of(db: &Db, token: &str) -> Result<Option<TokenUser>, sqlx::Error> {
    let hash = secrets::sha256_hex(token.as_bytes());
    let row = sqlx::query(&db.sql(
        "SELECT t.id AS token_id, t.last_used_at, u.name, u.roles \
         FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_sha256 = $1 AND t.revoked = 0 AND u.disabled = 0",
    ))
    .bind(&hash)
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user = TokenUser {
        name: row.try_get("name")?,
        roles: users::roles_from_text(&row.try_get::<String, _>("roles")?),
    };
    let last_used = super::opt_i64(&row, "last_used_at")?;
    let now = now_ms();
    if last_used.is_some_and(|t| (0..LAST_USED_GRANULARITY_MS).contains(&(now - t))) {
        return Ok(Some(user));
    }
    sqlx::query(&db.sql("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1"))
        .bind(row.try_get::<i64, _>("token_id")?)
        .bind(now)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(Some(user))
}

//! Portal accounts.

use super::{is_unique_violation, now_ms, opt_i64, Db};
use crate::portal::password::PasswordHash;
use handover_app::api::Role;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A user as stored. The password hash stays wrapped so it cannot be printed.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub password_hash: PasswordHash,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub created_at: i64,
    pub last_sign_in: Option<i64>,
}

impl User {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn roles_from_text(s: &str) -> Vec<Role> {
    s.split(',').filter_map(Role::parse).collect()
}

pub(super) fn from_row(r: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        password_hash: PasswordHash::from_stored(r.try_get::<String, _>("password_hash")?),
        roles: roles_from_text(&r.try_get::<String, _>("roles")?),
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
        last_sign_in: opt_i64(r, "last_sign_in")?,
    })
}

const COLUMNS: &str = "id, name, password_hash, roles, disabled, created_at, last_sign_in";

pub async fn by_name(db: &Db, name: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE name = $1");
    let row = sqlx::query(&db.sql(&sql))
        .bind(name)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_id(db: &Db, id: i64) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(&db.sql(&sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<User>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY name");
    let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(db.pool())
        .await?
        .try_get::<i64, _>("n")
}

pub async fn create(
    db: &Db,
    name: &str,
    hash: &PasswordHash,
    roles: &[Role],
) -> Result<i64, UserError> {
    let row = sqlx::query(&db.sql(
        "INSERT INTO users (name, password_hash, roles, disabled, created_at) VALUES ($1, $2, $3, 0, $4) RETURNING id",
    ))
    .bind(name)
    .bind(hash.as_stored())
    .bind(roles_to_text(roles))
    .bind(now_ms())
    .fetch_one(db.pool())
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            UserError::Exists(name.to_owned())
        } else {
            UserError::Db(e)
        }
    })?;
    Ok(row.try_get("id")?)
}

fn one_row(name: &str, done: sqlx::any::AnyQueryResult) -> Result<(), UserError> {
    if done.rows_affected() == 0 {
        return Err(UserError::NotFound(name.to_owned()));
    }
    Ok(())
}

pub async fn set_roles(db: &Db, name: &str, roles: &[Role]) -> Result<(), UserError> {
    let done = sqlx::query(&db.sql("UPDATE users SET roles = $1 WHERE name = $2"))
        .bind(roles_to_text(roles))
        .bind(name)
        .execute(db.pool())
        .await?;
    one_row(name, done)
}

pub async fn set_disabled(db: &Db, name: &str, disabled: bool) -> Result<(), UserError> {
    let done = sqlx::query(&db.sql("UPDATE users SET disabled = $1 WHERE name = $2"))
        .bind(disabled as i64)
        .bind(name)
        .execute(db.pool())
        .await?;
    one_row(name, done)
}

pub async fn set_password(db: &Db, name: &str, hash: &PasswordHash) -> Result<(), UserError> {
    let done = sqlx::query(&db.sql("UPDATE users SET password_hash = $1 WHERE name = $2"))
        .bind(hash.as_stored())
        .bind(name)
        .execute(db.pool())
        .await?;
    one_row(name, done)
}

pub async fn touch_sign_in(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql("UPDATE users SET last_sign_in = $1 WHERE id = $2"))
        .bind(now_ms())
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

//! Small named values the server keeps (the one-time setup token's hash).

use super::Db;
use sqlx::Row;

pub async fn get(db: &Db, key: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(&db.sql("SELECT value FROM settings WHERE key = $1"))
        .bind(key)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| r.try_get::<String, _>("value")).transpose()
}

pub async fn put(db: &Db, key: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ))
    .bind(key)
    .bind(value)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn delete(db: &Db, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql("DELETE FROM settings WHERE key = $1"))
        .bind(key)
        .execute(db.pool())
        .await?;
    Ok(())
}

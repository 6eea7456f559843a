//! The configured peers (PROTOCOL B.1).

use super::{is_unique_violation, now_ms, Db};
use crate::peer::{DmUrl, Fingerprint, Peer, PeerUrl};
use handover_dm::types::ServerId;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Why a peer could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("a peer with ServerID {0} is already configured")]
    Exists(String),
    #[error("this fingerprint is already pinned for another peer")]
    FingerprintInUse,
    #[error("no peer with ServerID {0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "server_id, url, dm_url, fingerprint, auto_accept, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Peer, sqlx::Error> {
    let bad = |col: &str, e: String| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: e.into(),
    };
    let server_id: String = row.try_get("server_id")?;
    let url: String = row.try_get("url")?;
    let dm_url: String = row.try_get("dm_url")?;
    let fingerprint: String = row.try_get("fingerprint")?;
    Ok(Peer {
        server_id: ServerId::parse(server_id).map_err(|e| bad("server_id", e.to_string()))?,
        url: PeerUrl::parse(&url).map_err(|e| bad("url", e))?,
        dm_url: DmUrl::parse(&dm_url).map_err(|e| bad("dm_url", e))?,
        fingerprint: Fingerprint::parse(&fingerprint).map_err(|e| bad("fingerprint", e))?,
        auto_accept: row.try_get::<Option<String>, _>("auto_accept")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Adds a peer; `created_at`/`updated_at` of `peer` are ignored.
pub async fn add(db: &Db, peer: &Peer) -> Result<Peer, PeerError> {
    let now = now_ms();
    let res = sqlx::query(&db.sql(
        "INSERT INTO peers (server_id, url, dm_url, fingerprint, auto_accept, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    ))
    .bind(peer.server_id.as_str())
    .bind(peer.url.as_str())
    .bind(peer.dm_url.as_str())
    .bind(peer.fingerprint.as_str())
    .bind(peer.auto_accept.clone())
    .bind(now)
    .execute(db.pool())
    .await;
    match res {
        Ok(_) => Ok(Peer {
            created_at: now,
            updated_at: now,
            ..peer.clone()
        }),
        Err(e) if is_unique_violation(&e) => {
            if get(db, peer.server_id.as_str()).await?.is_some() {
                Err(PeerError::Exists(peer.server_id.to_string()))
            } else {
                Err(PeerError::FingerprintInUse)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Changes the URLs, pin and policy of an existing peer.
pub async fn update(db: &Db, peer: &Peer) -> Result<Peer, PeerError> {
    let now = now_ms();
    let res = sqlx::query(&db.sql(
        "UPDATE peers SET url = $2, dm_url = $3, fingerprint = $4, auto_accept = $5, updated_at = $6 \
         WHERE server_id = $1",
    ))
    .bind(peer.server_id.as_str())
    .bind(peer.url.as_str())
    .bind(peer.dm_url.as_str())
    .bind(peer.fingerprint.as_str())
    .bind(peer.auto_accept.clone())
    .bind(now)
    .execute(db.pool())
    .await;
    match res {
        Ok(r) if r.rows_affected() == 0 => Err(PeerError::NotFound(peer.server_id.to_string())),
        Ok(_) => get(db, peer.server_id.as_str())
            .await?
            .ok_or_else(|| PeerError::NotFound(peer.server_id.to_string())),
        Err(e) if is_unique_violation(&e) => Err(PeerError::FingerprintInUse),
        Err(e) => Err(e.into()),
    }
}

/// Removes a peer; false when there was none.
pub async fn remove(db: &Db, server_id: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(&db.sql("DELETE FROM peers WHERE server_id = $1"))
        .bind(server_id)
        .execute(db.pool())
        .await?;
    Ok(res.rows_affected() > 0)
}

pub async fn get(db: &Db, server_id: &str) -> Result<Option<Peer>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!("SELECT {COLUMNS} FROM peers WHERE server_id = $1")))
        .bind(server_id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// [`get`] inside a transaction: a caller holding one must not wait for a
/// second connection (SQLite's small pool would starve).
pub async fn get_in(
    db: &Db,
    tx: &mut crate::store::Conn,
    server_id: &str,
) -> Result<Option<Peer>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!("SELECT {COLUMNS} FROM peers WHERE server_id = $1")))
        .bind(server_id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every configured peer, by ServerID.
pub async fn list(db: &Db) -> Result<Vec<Peer>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM peers ORDER BY server_id"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

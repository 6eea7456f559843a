//! Package 0 (PROTOCOL A.5) and its delivery: HTTP push to an `http(s)`
//! push address, tried again with exponential backoff when the receiver
//! cannot be reached, or the `notification_outbox` for an external SMS/WAP
//! gateway otherwise.

use super::events::DeviceEvent;
use super::Runtime;
use crate::audit::{self, Event, NewEntry};
use crate::store::devices;
use base64::Engine;
use handover_dm::notification::{Notification, SessionId, UiMode};
use handover_dm::{Nonce, ServerId};
use rand::Rng;
use sqlx::Row;
use std::time::Duration;

/// The media type of a pushed package 0.
pub const MEDIA_TYPE: &str = "application/vnd.syncml.dm.notification";

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another try later: no connection, a timeout, a 5xx, 408 or 429.
    #[error("{0}")]
    Transient(String),
    /// The receiver refused the package (another 4xx): a retry would not help.
    #[error("{0}")]
    Refused(String),
}

/// Delivers package 0 bytes to a push address.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The name stored in `notification_outbox.transport`.
    fn transport(&self) -> &'static str;
    /// True when this transport reaches `address` itself.
    fn handles(&self, address: &str) -> bool;
    async fn deliver(&self, address: &str, package0: &[u8]) -> Result<(), DeliveryError>;
}

/// HTTP push: a POST of the raw bytes with [`MEDIA_TYPE`].
pub struct HttpPush {
    client: reqwest::Client,
}

impl Default for HttpPush {
    fn default() -> Self {
        HttpPush {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }
}

#[async_trait::async_trait]
impl Notifier for HttpPush {
    fn transport(&self) -> &'static str {
        "http"
    }

    fn handles(&self, address: &str) -> bool {
        address.starts_with("http://") || address.starts_with("https://")
    }

    async fn deliver(&self, address: &str, package0: &[u8]) -> Result<(), DeliveryError> {
        let res = self
            .client
            .post(address)
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(package0.to_vec())
            .send()
            .await
            .map_err(|e| DeliveryError::Transient(format!("push failed: {e}")))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("push answered {status}");
        if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            Err(DeliveryError::Transient(why))
        } else {
            Err(DeliveryError::Refused(why))
        }
    }
}

/// How a failed HTTP push is tried again: after `first_ms`, then twice as
/// long each time up to `max_ms`, `attempts` tries in all (the first one
/// included). The schedule is in `notification_outbox`, so a restart loses
/// no retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first_ms: i64,
    pub max_ms: i64,
    pub attempts: i64,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s … capped at a minute: 8 tries over about 3 minutes.
    fn default() -> Self {
        Backoff {
            first_ms: 1000,
            max_ms: 60_000,
            attempts: 8,
        }
    }
}

impl Backoff {
    /// The wait after the `tries`-th failed try.
    pub fn delay_ms(&self, tries: i64) -> i64 {
        let doublings = (tries - 1).clamp(0, 30) as u32;
        self.first_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
    }
}

/// A claimed retry is someone's for this long: a retrier that stops
/// mid-delivery (a crash) leaves the row to another after it.
const CLAIM_MS: i64 = 60_000;

/// How a notification went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub transport: String,
    pub session_id: String,
    /// `sent`, `pending` (left for the gateway), `retrying` (tried again
    /// later, see [`retry_due`]) or `failed`.
    pub state: String,
    pub error: String,
}

/// Builds package 0 for `devid` with its SRVCRED and a fresh session id.
pub fn package0(rt: &Runtime, dev: &devices::Device) -> anyhow::Result<(SessionId, Vec<u8>)> {
    let sid = SessionId(rand::rngs::OsRng.gen_range(1..=0xFFFF));
    let n = Notification {
        ui_mode: UiMode::Background,
        server_initiated: true,
        session_id: sid,
        server_id: ServerId::parse(dev.server_name.clone())
            .map_err(|e| anyhow::anyhow!("server_name: {e}"))?,
        vendor: Vec::new(),
    };
    let nonce =
        Nonce::from_b64(&dev.server_nonce).map_err(|e| anyhow::anyhow!("server nonce: {e}"))?;
    let bytes = n
        .build(&dev.server_name, &dev.server_secret(&rt.vault)?, &nonce)
        .map_err(|e| anyhow::anyhow!("package 0: {e}"))?;
    Ok((sid, bytes))
}

/// Notifies a device now; `actor` is audited.
pub async fn notify(rt: &Runtime, devid: &str, actor: &str) -> anyhow::Result<Outcome> {
    let dev = devices::get(&rt.db, devid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no device {devid}"))?;
    anyhow::ensure!(
        !dev.push_address.is_empty(),
        "device {devid} has no push address; it is reached at its next own session"
    );
    let (sid, bytes) = package0(rt, &dev)?;
    let pusher = rt.notifiers.iter().find(|n| n.handles(&dev.push_address));
    let transport = pusher.map_or("gateway", |p| p.transport());
    let db = &rt.db;
    let now = rt.settings.clock.now_ms();
    let payload = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let notified = |state: &str, error: &str| {
        NewEntry::new(Event::DeviceNotified, actor, devid).details(serde_json::json!({
            "transport": transport, "session_id": sid.to_string(), "state": state, "error": error,
        }))
    };
    let insert = db.sql(
        "INSERT INTO notification_outbox (devid, transport, address, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    );
    let insert = sqlx::query(&insert)
        .bind(devid)
        .bind(transport)
        .bind(&dev.push_address)
        .bind(&payload)
        .bind(now);
    let (state, error) = match pusher {
        // For the gateway: the row and its audit entry commit together.
        None => {
            let mut tx = db.begin_write().await?;
            insert.fetch_one(&mut *tx).await?;
            audit::append_in(db, &mut *tx, &notified("pending", "")).await?;
            tx.commit().await?;
            ("pending".to_owned(), String::new())
        }
        // Pushed now: the row first, then how the push went with its
        // audit entry (see `record_try`).
        Some(p) => {
            let id: i64 = insert
                .fetch_one(&mut *db.write_conn().await?)
                .await?
                .try_get("id")?;
            let result = p.deliver(&dev.push_address, &bytes).await;
            record_try(rt, id, devid, transport, 0, result, Some(&notified)).await?
        }
    };
    rt.bus.publish(DeviceEvent::Notified {
        devid: devid.to_owned(),
        transport: transport.to_owned(),
    });
    Ok(Outcome {
        transport: transport.to_owned(),
        session_id: sid.to_string(),
        state,
        error,
    })
}

/// Makes a notification's audit entry from its state and error.
type NotifiedEntry<'a> = dyn Fn(&str, &str) -> NewEntry + Sync + 'a;

/// Stores how try number `tries_before + 1` of outbox row `id` went: `sent`,
/// `retrying` with the next try scheduled by the runtime's [`Backoff`], or
/// `failed` (a refusal, or the last try) and audited. The first try's
/// `notified` entry, made from the state and the error, commits with it.
/// Returns the state and the error.
async fn record_try(
    rt: &Runtime,
    id: i64,
    devid: &str,
    transport: &str,
    tries_before: i64,
    result: Result<(), DeliveryError>,
    notified: Option<&NotifiedEntry<'_>>,
) -> anyhow::Result<(String, String)> {
    let db = &rt.db;
    let now = rt.settings.clock.now_ms();
    let tries = tries_before + 1;
    let backoff = rt.settings.push_retry;
    let (state, error, next) = match result {
        Ok(()) => ("sent", String::new(), None),
        Err(DeliveryError::Transient(e)) if tries < backoff.attempts => {
            ("retrying", e, Some(now + backoff.delay_ms(tries)))
        }
        Err(e) => ("failed", e.to_string(), None),
    };
    // The state and, for a push given up, its audit entry commit together.
    let given_up = (state == "failed" && tries_before > 0).then(|| {
        // The first try is audited by the notification itself.
        NewEntry::new(Event::DeviceNotifyFailed, "system", devid).details(serde_json::json!({
            "outbox": id, "transport": transport, "attempts": tries, "error": error,
        }))
    });
    let entries: Vec<NewEntry> = notified
        .map(|f| f(state, &error))
        .into_iter()
        .chain(given_up)
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = db.begin_write().await?;
        sqlx::query(&db.sql(
            "UPDATE notification_outbox SET state = $2, attempts = $3, error = $4, \
             sent_at = $5, next_attempt_at = $6 WHERE id = $1",
        ))
        .bind(id)
        .bind(state)
        .bind(tries)
        .bind(&error)
        .bind(now)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if !entries.is_empty() {
            match audit::append_all_in(db, &mut *tx, &entries).await {
                Ok(_) => {}
                // Another writer took the log's head: all again.
                Err(e) if crate::store::is_unique_violation(&e) && attempt < 50 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        break;
    }
    match state {
        "retrying" => {
            tracing::info!(devid, tries, error = %error, "push failed; retrying");
        }
        "sent" if tries_before > 0 => rt.bus.publish(DeviceEvent::Notified {
            devid: devid.to_owned(),
            transport: transport.to_owned(),
        }),
        _ => {}
    }
    Ok((state.to_owned(), error))
}

/// Tries again every push whose retry is due; returns how many were tried.
/// Several instances sharing the database each claim a row before trying it.
pub async fn retry_due(rt: &Runtime) -> anyhow::Result<usize> {
    let db = &rt.db;
    let now = rt.settings.clock.now_ms();
    let rows = sqlx::query(&db.sql(
        "SELECT id, devid, transport, address, payload, attempts, next_attempt_at \
         FROM notification_outbox WHERE state = 'retrying' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, id LIMIT 50",
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut n = 0;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let due: i64 = r.try_get("next_attempt_at")?;
        let claimed = sqlx::query(&db.sql(
            "UPDATE notification_outbox SET next_attempt_at = $3 \
             WHERE id = $1 AND state = 'retrying' AND next_attempt_at = $2",
        ))
        .bind(id)
        .bind(due)
        .bind(now + CLAIM_MS)
        .execute(db.pool())
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            continue;
        }
        let devid: String = r.try_get("devid")?;
        let transport: String = r.try_get("transport")?;
        let address: String = r.try_get("address")?;
        let payload: String = r.try_get("payload")?;
        let tries: i64 = r.try_get("attempts")?;
        let result = match (
            rt.notifiers.iter().find(|p| p.transport() == transport),
            base64::engine::general_purpose::STANDARD.decode(payload.as_bytes()),
        ) {
            (Some(p), Ok(bytes)) => p.deliver(&address, &bytes).await,
            (None, _) => Err(DeliveryError::Refused(format!(
                "no {transport} transport on this server"
            ))),
            (_, Err(_)) => Err(DeliveryError::Refused(
                "stored package 0 is not base64".into(),
            )),
        };
        record_try(rt, id, &devid, &transport, tries, result, None).await?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::Backoff;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<i64> = (1..=8).map(|n| b.delay_ms(n)).collect();
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(b.delay_ms(1000), 60_000);
    }
}

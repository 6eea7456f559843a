//! Package 0 (PROTOCOL A.5) and its delivery: HTTP push to an `http(s)`
//! push address, or the `notification_outbox` for an external SMS/WAP
//! gateway otherwise.

use super::events::DeviceEvent;
use super::Runtime;
use crate::audit::{self, Event, NewEntry};
use crate::store::{devices, now_ms};
use base64::Engine;
use handover_dm::notification::{Notification, SessionId, UiMode};
use handover_dm::{Nonce, ServerId};
use rand::Rng;
use sqlx::Row;
use std::time::Duration;

/// The media type of a pushed package 0.
pub const MEDIA_TYPE: &str = "application/vnd.syncml.dm.notification";

/// Delivers package 0 bytes to a push address.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The name stored in `notification_outbox.transport`.
    fn transport(&self) -> &'static str;
    /// True when this transport reaches `address` itself.
    fn handles(&self, address: &str) -> bool;
    async fn deliver(&self, address: &str, package0: &[u8]) -> Result<(), String>;
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

    async fn deliver(&self, address: &str, package0: &[u8]) -> Result<(), String> {
        let res = self
            .client
            .post(address)
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(package0.to_vec())
            .send()
            .await
            .map_err(|e| format!("push failed: {e}"))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("push answered {}", res.status()))
        }
    }
}

/// How a notification went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub transport: String,
    pub session_id: String,
    /// `sent`, `pending` (left for the gateway) or `failed`.
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
    let id: i64 = sqlx::query(&db.sql(
        "INSERT INTO notification_outbox (devid, transport, address, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    ))
    .bind(devid)
    .bind(transport)
    .bind(&dev.push_address)
    .bind(base64::engine::general_purpose::STANDARD.encode(&bytes))
    .bind(now_ms())
    .fetch_one(db.pool())
    .await?
    .try_get("id")?;
    let (state, error) = match pusher {
        None => ("pending".to_owned(), String::new()),
        Some(p) => match p.deliver(&dev.push_address, &bytes).await {
            Ok(()) => ("sent".to_owned(), String::new()),
            Err(e) => ("failed".to_owned(), e),
        },
    };
    if pusher.is_some() {
        sqlx::query(&db.sql(
            "UPDATE notification_outbox SET state = $2, attempts = attempts + 1, error = $3, \
             sent_at = $4 WHERE id = $1",
        ))
        .bind(id)
        .bind(&state)
        .bind(&error)
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    }
    audit::append(
        db,
        NewEntry::new(Event::DeviceNotified, actor, devid).details(serde_json::json!({
            "transport": transport, "session_id": sid.to_string(), "state": state, "error": error,
        })),
    )
    .await?;
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

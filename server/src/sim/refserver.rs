//! A minimal real DM server for the simulator's tests and benchmark: the
//! sans-IO [`ServerSession`] behind axum, with the accounts of a
//! `devices.csv` (real auth, nonces kept per device, PROTOCOL A.4) and a
//! fixed list of commands queued in every session. Not the product's DM
//! endpoint (that is `device/`): no database, no jobs, state in memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use handover_dm::auth::{Nonce, Secret, StoredCredential, HMAC_HEADER};
use handover_dm::notification::{Notification, SessionId, UiMode};
use handover_dm::session::{
    CommandKind, DeviceAccount, EndReason, Incoming, ServerCommand, ServerEvent, ServerSession,
};
use handover_dm::ServerId;

use super::csv::DeviceRecord;

struct Account {
    account: DeviceAccount,
    push: String,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    auth_failed: AtomicU64,
    results: AtomicU64,
}

struct Inner {
    accounts: Mutex<HashMap<String, Account>>,
    sessions: Mutex<HashMap<(String, String), ServerSession>>,
    commands: Vec<CommandKind>,
    counters: Counters,
}

/// A running reference server on loopback.
pub struct RefServer {
    /// Its bound address; the DM endpoint is `http://{addr}/dm`.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

/// The accounts of `records` as the server stores them (A.4).
fn account(r: &DeviceRecord) -> anyhow::Result<Account> {
    Ok(Account {
        account: DeviceAccount {
            client: StoredCredential {
                auth_type: r.auth,
                name: r.client_name.clone(),
                secret: Secret::new(r.client_secret.clone()),
            },
            client_nonce: Nonce::from_b64(&r.client_nonce)?,
            server: StoredCredential {
                auth_type: crate::store::devices::server_auth(r.auth),
                name: r.server_name.clone(),
                secret: Secret::new(r.server_secret.clone()),
            },
            server_nonce: Nonce::from_b64(&r.server_nonce)?,
        },
        push: r.push_address.clone(),
    })
}

impl RefServer {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves `POST /dm` for the
    /// devices of `records`, queueing `commands` in every session.
    pub async fn start(
        addr: SocketAddr,
        records: &[DeviceRecord],
        commands: Vec<CommandKind>,
    ) -> anyhow::Result<Self> {
        let mut accounts = HashMap::new();
        for r in records {
            accounts.insert(r.devid.clone(), account(r)?);
        }
        let inner = Arc::new(Inner {
            accounts: Mutex::new(accounts),
            sessions: Mutex::new(HashMap::new()),
            commands,
            counters: Counters::default(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/dm", post(dm))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// The DM endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/dm", self.addr)
    }

    /// Replaces the accounts (after the simulator rewrote `devices.csv`).
    pub fn set_accounts(&self, records: &[DeviceRecord]) -> anyhow::Result<()> {
        let mut a = self.inner.accounts.lock().expect("not poisoned");
        for r in records {
            let new = account(r)?;
            match a.get_mut(&r.devid) {
                // Keep the nonces the server learnt; take the push address.
                Some(old) => old.push = new.push,
                None => {
                    a.insert(r.devid.clone(), new);
                }
            }
        }
        Ok(())
    }

    /// Sessions that ended with `Completed`.
    pub fn completed(&self) -> u64 {
        self.inner.counters.completed.load(Ordering::Relaxed)
    }

    /// Sessions that ended because the client failed authentication.
    pub fn auth_failed(&self) -> u64 {
        self.inner.counters.auth_failed.load(Ordering::Relaxed)
    }

    /// Results received for queued Gets.
    pub fn results(&self) -> u64 {
        self.inner.counters.results.load(Ordering::Relaxed)
    }

    /// A package 0 for `devid` signed with its SRVCRED and the nonce the
    /// device issued last (A.5), and the device's push address.
    pub fn package0(&self, devid: &str, session: u16) -> Option<(Vec<u8>, String)> {
        let a = self.inner.accounts.lock().expect("not poisoned");
        let acc = a.get(devid)?;
        let s = &acc.account.server;
        let n = Notification {
            ui_mode: UiMode::Background,
            server_initiated: true,
            session_id: SessionId(session),
            server_id: ServerId::parse(s.name.clone()).ok()?,
            vendor: Vec::new(),
        };
        let bytes = n
            .build(&s.name, &s.secret, &acc.account.server_nonce)
            .ok()?;
        Some((bytes, acc.push.clone()))
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn dm(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let hmac = headers
        .get(HMAC_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok((devid, session_id)) = ServerSession::peek(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut accounts = inner.accounts.lock().expect("not poisoned");
    let Some(acc) = accounts.get_mut(&devid) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let key = (devid, session_id);
    let mut sessions = inner.sessions.lock().expect("not poisoned");
    let session = sessions.entry(key.clone()).or_insert_with(|| {
        let mut s = ServerSession::new();
        for (i, kind) in inner.commands.iter().enumerate() {
            s.push_command(ServerCommand {
                job: i as u64,
                kind: kind.clone(),
            });
        }
        s
    });
    let input = Incoming {
        bytes: &body,
        hmac: hmac.as_deref(),
        tls: false,
    };
    let mut rng = rand::rngs::OsRng;
    if session
        .handle_message(input, &acc.account, &mut rng)
        .is_err()
    {
        sessions.remove(&key);
        return StatusCode::BAD_REQUEST.into_response();
    }
    let c = &inner.counters;
    let mut ended = false;
    while let Some(ev) = session.poll_event() {
        match ev {
            ServerEvent::NextNonces {
                client_next,
                server_next,
            } => {
                if let Some(n) = client_next {
                    acc.account.client_nonce = n;
                }
                if let Some(n) = server_next {
                    acc.account.server_nonce = n;
                }
            }
            ServerEvent::CommandResults { .. } => {
                c.results.fetch_add(1, Ordering::Relaxed);
            }
            ServerEvent::SessionEnded { reason } => {
                ended = true;
                let counter = match reason {
                    EndReason::Completed => &c.completed,
                    EndReason::AuthFailed => &c.auth_failed,
                    _ => continue,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    let tx = session.poll_transmit();
    if ended {
        sessions.remove(&key);
    }
    match tx {
        Some(tx) => {
            let mut res = (
                [(header::CONTENT_TYPE, tx.encoding.content_type())],
                tx.bytes,
            )
                .into_response();
            if let Some(v) = tx.hmac.and_then(|h| header::HeaderValue::from_str(&h).ok()) {
                res.headers_mut().insert(HMAC_HEADER, v);
            }
            res
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

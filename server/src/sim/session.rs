//! One DM session of one device over HTTP (PROTOCOL A.1–A.4): the sans-IO
//! [`ClientSession`] driven against the server's DM endpoint.

use std::sync::atomic::Ordering;
use std::time::Duration;

use handover_dm::auth::HMAC_HEADER;
use handover_dm::notification::Notification;
use handover_dm::session::{ClientConfig, ClientEvent, ClientSession, ClientTransmit, EndReason};
use handover_dm::{AlertCode, ServerId};
use rand::SeedableRng;

use super::device::Account;
use super::{Device, Fleet};

/// A session never takes more messages than this.
const MAX_MESSAGES: usize = 64;
/// Connection failures are retried this many times.
const RETRIES: u32 = 3;

/// Why a POST failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
}

/// The server's answer: the body and its `x-syncml-hmac` header (A.4).
pub(crate) struct Answer {
    pub body: Vec<u8>,
    pub hmac: Option<String>,
}

/// POSTs one message (A.1) with its content type and, for HMAC, the
/// `x-syncml-hmac` header (A.4). Only failures where the server cannot have
/// seen the message (connect errors, 502–504) are retried: a SyncML message
/// handled twice would break the session.
pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    tx: &ClientTransmit,
) -> Result<Answer, PostError> {
    let mut attempt = 0;
    loop {
        let mut req = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, tx.encoding.content_type())
            .body(tx.bytes.clone());
        if let Some(h) = &tx.hmac {
            req = req.header(HMAC_HEADER, h);
        }
        let retry = match req.send().await {
            Ok(r) if r.status().is_success() => {
                let hmac = r
                    .headers()
                    .get(HMAC_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = r.bytes().await?.to_vec();
                return Ok(Answer { body, hmac });
            }
            Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                PostError::Status(r.status().as_u16())
            }
            Ok(r) => return Err(PostError::Status(r.status().as_u16())),
            Err(e) if e.is_connect() => PostError::Transport(e),
            Err(e) => return Err(e.into()),
        };
        attempt += 1;
        if attempt > RETRIES {
            return Err(retry);
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
}

/// One client-initiated session (Alert 1201) per DMAcc account of the
/// device; true when all succeeded.
pub(crate) async fn client_initiated(fleet: &Fleet, dev: &Device) -> bool {
    let servers = dev.servers();
    let mut ok = !servers.is_empty();
    for s in servers {
        ok &= run(fleet, dev, &s, None).await;
    }
    ok
}

/// Runs one session with the account of `server_id`, answering
/// `notification` (Alert 1200, its session id) or client-initiated; saves
/// the device afterwards. True when it completed.
pub(crate) async fn run(
    fleet: &Fleet,
    dev: &Device,
    server_id: &ServerId,
    notification: Option<Notification>,
) -> bool {
    run_recorded(fleet, dev, server_id, notification, None).await
}

/// The messages of one session: what the device sent and what came back.
pub(crate) type Transcript = Vec<(ClientTransmit, Vec<u8>)>;

/// [`run`], keeping the exchanged messages in `record` (for the benchmark's
/// canned baseline).
pub(crate) async fn run_recorded(
    fleet: &Fleet,
    dev: &Device,
    server_id: &ServerId,
    notification: Option<Notification>,
    record: Option<&mut Transcript>,
) -> bool {
    // A stopping fleet starts no session (`Sim::stop_sessions`).
    let Ok(_permit) = fleet.permits.acquire().await else {
        return false;
    };
    /// Counts the session in flight until it ends or is cancelled.
    struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    fleet.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight(&fleet.in_flight);
    let ok = run_inner(fleet, dev, server_id, notification, record).await;
    drop(guard);
    let c = if ok {
        &fleet.stats.sessions_ok
    } else {
        &fleet.stats.sessions_failed
    };
    c.fetch_add(1, Ordering::Relaxed);
    ok
}

async fn run_inner(
    fleet: &Fleet,
    dev: &Device,
    server_id: &ServerId,
    notification: Option<Notification>,
    mut record: Option<&mut Transcript>,
) -> bool {
    let mut st = dev.state.lock().await;
    // Read under the device's lock: no session or edit changes the tree
    // (and its accounts with it) meanwhile.
    let Some(acc) = dev.account(server_id) else {
        tracing::warn!(dev = %dev.dev_id, server = %server_id, "no DMAcc for this server");
        return false;
    };
    // A.2: 1–4 upper-case hex digits, no leading zeros.
    st.counters.next_session = st.counters.next_session.wrapping_add(1).max(1);
    let config = config(fleet, &acc, st.counters.next_session);
    let config = match &notification {
        Some(n) => config.answering(n),
        None => config,
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    let now = super::now();
    let mut session = ClientSession::start(config, std::mem::take(&mut st.tree));
    let (mut client_next, mut server_next) = (None, None);
    let mut end = None;
    let mut failed_http = false;
    for _ in 0..MAX_MESSAGES {
        let Some(tx) = session.poll_transmit() else {
            break;
        };
        let answer = match post(&fleet.http, &acc.addr, &tx).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(dev = %dev.dev_id, error = %e, "DM request failed");
                failed_http = true;
                break;
            }
        };
        let reply = answer.body;
        if let Some(r) = record.as_deref_mut() {
            r.push((tx, reply.clone()));
        }
        if session.has_ended() {
            // The last message (e.g. the refusal of a bad server Cred) needs no answer.
            break;
        }
        // A.4: with an HMAC SRVCRED the session checks the server's MAC
        // over these exact bytes; a bad or missing one ends the session
        // (ServerAuthRejected).
        if let Err(e) = session.handle_response(&reply, answer.hmac.as_deref(), now, &mut rng) {
            tracing::debug!(dev = %dev.dev_id, error = %e, "bad server message");
            break;
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::NextNonces {
                    client_next: c,
                    server_next: s,
                } => {
                    client_next = c.or(client_next);
                    server_next = s.or(server_next);
                }
                ClientEvent::SessionEnded { reason } => end = Some(reason),
                ClientEvent::Exec { uri, .. } => {
                    tracing::debug!(dev = %dev.dev_id, %uri, "Exec");
                }
                ClientEvent::ServerAuthFailed { status } => {
                    tracing::info!(dev = %dev.dev_id, status = status.code(), "server credentials refused");
                }
                ClientEvent::ServerAuthenticated | ClientEvent::Aborted => {}
            }
        }
    }
    let commands = session.commands_received();
    let accounts_touched = session.accounts_touched();
    st.tree = session.into_tree();
    // A.4: the nonces both sides now expect, for the next session.
    if let Some(n) = &client_next {
        st.set_nonce(&acc.clcred_node, n, now);
    }
    if let Some(n) = &server_next {
        st.set_nonce(&acc.srvcred_node, n, now);
    }
    let s = &fleet.stats;
    s.commands_executed.fetch_add(commands, Ordering::Relaxed);
    st.counters.commands_executed += commands;
    match end {
        Some(EndReason::AuthFailed) => {
            s.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
        Some(EndReason::ServerAuthRejected) => {
            s.server_auth_failures.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    if failed_http {
        s.http_errors.fetch_add(1, Ordering::Relaxed);
    }
    let ok = end == Some(EndReason::Completed);
    if ok {
        st.counters.sessions_ok += 1;
    } else {
        st.counters.sessions_failed += 1;
    }
    if accounts_touched {
        dev.refresh_accounts(&st);
    } else {
        // The accounts are as they were but for the nonces just written.
        dev.renew_nonces(server_id, client_next.as_ref(), server_next.as_ref());
    }
    if !fleet.cfg.save_each_session {
        return ok;
    }
    match serde_json::to_vec(&*st) {
        Ok(bytes) => {
            let path = dev.path.clone();
            let r = tokio::task::spawn_blocking(move || super::write_atomic(&path, &bytes)).await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::error!(dev = %dev.dev_id, "cannot save the device state");
            }
        }
        Err(e) => tracing::error!(dev = %dev.dev_id, error = %e, "cannot serialize the device"),
    }
    ok
}

fn config(fleet: &Fleet, acc: &Account, session: u16) -> ClientConfig {
    ClientConfig {
        server_id: acc.server_id.clone(),
        server_uri: acc.addr.clone(),
        session_id: format!("{session:X}"),
        alert: AlertCode::CLIENT_INITIATED,
        encoding: fleet.cfg.encoding,
        clcred: acc.clcred.clone(),
        client_nonce: acc.client_nonce.clone(),
        srvcred: acc.srvcred.clone(),
        server_nonce: acc.server_nonce.clone(),
        tls: acc.addr.starts_with("https:"),
        max_msg_size: Some(64 * 1024),
    }
}

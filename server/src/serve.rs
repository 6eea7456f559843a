//! `handover serve`: the three listeners of one authority.

use crate::audit::{self, Event, NewEntry};
use crate::config::ServeConfig;
use crate::device::vault::Vault;
use crate::device::{endpoint, notify, session, Runtime};
use crate::engine::Engine;
use crate::ops::Metrics;
use crate::peer::identity::{Identity, Origin};
use crate::peer::{self, Pins};
use crate::portal::backend::SETUP_TOKEN_KEY;
use crate::portal::{self, sessions, Peering, Portal, PortalConfig};
use crate::secrets;
use crate::store::{settings, users, Db};
use axum::Router;
use leptos::config::LeptosOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long the portal's connection test waits for a peer: an administrator
/// is watching, so less than the 30 s a document gets.
const PORTAL_TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A running server's bound addresses.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub portal: SocketAddr,
    pub dm: SocketAddr,
    pub peer: SocketAddr,
}

/// Binds every listener, then serves until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Every device in a session holds a connection: many more than a
    // default soft limit of 1 024 descriptors.
    if let Some(n) = raise_open_files_limit() {
        tracing::debug!(limit = n, "open files");
    }
    let (bound, running) = start(cfg).await?;
    tracing::info!(portal = %bound.portal, dm = %bound.dm, peer = %bound.peer, "listening");
    shutdown.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

/// Handles of the listener tasks.
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn leptos_options(cfg: &ServeConfig) -> LeptosOptions {
    let output = std::env::var("LEPTOS_OUTPUT_NAME").unwrap_or_else(|_| "handover".to_owned());
    LeptosOptions::builder()
        .output_name(output)
        .site_root(cfg.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(cfg.portal_addr)
        .build()
}

/// This server's identity towards peers (PROTOCOL B.1), made and audited at
/// first start.
pub async fn load_identity(
    db: &Db,
    data_dir: &std::path::Path,
    server_id: &str,
) -> anyhow::Result<Arc<Identity>> {
    let (identity, origin) = Identity::load_or_create(data_dir, server_id)?;
    if origin == Origin::Created {
        audit::append(
            db,
            NewEntry::new(Event::IdentityCreated, "system", server_id)
                .details(serde_json::json!({ "fingerprint": identity.fingerprint().as_str() })),
        )
        .await?;
        tracing::info!(fingerprint = %identity.fingerprint(), "created the server identity");
    }
    Ok(Arc::new(identity))
}

/// Opens the database, binds the listeners and starts serving.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<(Bound, Running)> {
    let db = Db::connect(&cfg.database_url).await?;
    let identity = load_identity(&db, &cfg.data_dir, &cfg.server_id).await?;
    let vault = Vault::open(cfg.device_secrets_key.as_ref(), &cfg.data_dir)?;
    let mut dm = cfg.dm.clone();
    dm.enrolment.server_id = cfg.server_id.clone();
    let runtime = Runtime::new(db.clone(), vault, dm);
    let store = sessions::Store::open(&db).await?;
    let metrics = Arc::new(Metrics::default());
    let engine = Engine::new(runtime.clone(), identity.clone(), cfg.delegation.clone());
    let portal_listener = TcpListener::bind(cfg.portal_addr)
        .await
        .map_err(|e| anyhow::anyhow!("portal address {}: {e}", cfg.portal_addr))?;
    let dm_listener = TcpListener::bind(cfg.dm_addr)
        .await
        .map_err(|e| anyhow::anyhow!("DM address {}: {e}", cfg.dm_addr))?;
    let peer_listener = TcpListener::bind(cfg.peer_addr)
        .await
        .map_err(|e| anyhow::anyhow!("peer address {}: {e}", cfg.peer_addr))?;
    let bound = Bound {
        portal: portal_listener.local_addr()?,
        dm: dm_listener.local_addr()?,
        peer: peer_listener.local_addr()?,
    };

    // The portal and the peer listener share the pins, so a change in the
    // portal counts from the listener's next handshake.
    let pins = Pins::from_db(&db).await?;
    let portal_state = Portal {
        db: db.clone(),
        server_id: cfg.server_id.clone(),
        metrics,
        engine: engine.clone(),
        peering: Peering {
            identity: identity.clone(),
            peer_url: format!("https://{}", bound.peer),
            dm_url: format!("http://{}/dm", bound.dm),
            pins: pins.clone(),
            client: peer::PeerClient::new(identity.clone()).with_timeout(PORTAL_TEST_TIMEOUT),
        },
    };

    if users::count(&db).await? == 0 {
        let token = secrets::random_token(24);
        settings::put(&db, SETUP_TOKEN_KEY, &secrets::sha256_hex(token.as_bytes())).await?;
        println!("No user exists yet. Create the first administrator within this run at:\n  http://{}/setup?token={token}", bound.portal);
        println!("(or run: handover admin user create NAME --role admin --password-stdin)");
    }

    let mut leptos = leptos_options(&cfg);
    leptos.site_addr = bound.portal;
    let portal_router = portal::router(
        portal_state,
        store.clone(),
        PortalConfig {
            leptos,
            secure_cookie: cfg.secure_cookie,
            idle_timeout: time::Duration::seconds(cfg.session_idle_secs),
        },
    );
    let portal_router = portal_router
        .merge(portal::api::router(runtime.clone()))
        .merge(portal::delegations_api::router(
            runtime.clone(),
            engine.clone(),
        ));
    let cleanup = store.spawn_cleanup(Duration::from_secs(60));
    let sweeper = {
        let rt = runtime.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = session::sweep_expired(&rt).await {
                    tracing::error!(error = %e, "expiring DM sessions failed");
                }
            }
        })
    };

    let retrier = {
        let rt = runtime.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if let Err(e) = notify::retry_due(&rt).await {
                    tracing::error!(error = %e, "retrying push notifications failed");
                }
            }
        })
    };

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let serve_one = |listener: TcpListener, router: Router| {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let svc = router.into_make_service_with_connect_info::<SocketAddr>();
            let res = axum::serve(listener, svc)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "listener failed");
            }
        })
    };
    let peer_endpoint = peer::Endpoint::new(&identity, pins, Arc::new(engine.clone()))?;
    let mut tasks = vec![
        serve_one(portal_listener, portal_router),
        serve_one(dm_listener, endpoint::router(runtime)),
        tokio::spawn(peer_endpoint.serve(peer_listener, stop_rx.clone())),
    ];
    tasks.extend(engine.spawn(stop_rx.clone()));
    tasks.push(tokio::spawn(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
        cleanup.abort();
        sweeper.abort();
        retrier.abort();
    }));
    Ok((bound, Running { stop, tasks }))
}

/// Raises this process's soft limit of open files to its hard limit;
/// returns the soft limit now in force (`None` where it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit for the duration of both calls.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above; a refusal leaves the old limit in force.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        // `rlim_t` is not 64 bits on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

//! The device simulator (PRODUCT "The device simulator"): thousands of
//! faithful DM clients in one process, each the client side of `dm/`
//! ([`handover_dm::session::ClientSession`]) over real HTTP.
//!
//! Each device's DM tree is its whole identity: DevInfo/DevDetail, one
//! DMAcc per server with CLCRED and SRVCRED and their nonces (PROTOCOL
//! A.4, A.6), a vendor subtree. It is saved in `DIR/devices/<devid>.json`
//! after every session, so a restarted simulator is the same fleet.
//! `DIR/devices.csv` lists the fleet in the server's import format.
//!
//! Library API: [`Sim::start`], then [`Sim::run_once`] (one client-initiated
//! session per device), [`Sim::run`] (push + periodic sessions until a
//! signal), [`Sim::stats`], [`Sim::shutdown`].

pub mod bench;
pub mod canned;
pub mod cli;
pub mod csv;
pub mod device;
mod push;
pub mod refserver;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handover_dm::auth::{AuthType, Nonce};
use handover_dm::syncml::Encoding;
use handover_dm::tree::{Timestamp, Tree};
use handover_dm::{DevId, ServerId};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

pub use csv::DeviceRecord;
pub use device::DeviceState;

/// How to run a fleet.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Fleet size; an existing state directory with devices is loaded instead.
    pub devices: usize,
    /// The server's DM endpoint URL (written as the DMAcc AppAddr).
    pub server: String,
    /// The state directory.
    pub state: PathBuf,
    /// Where the push listener binds; none when `None`.
    pub push_addr: Option<SocketAddr>,
    /// Client-initiated sessions every this often, with jitter.
    pub poll: Option<Duration>,
    pub encoding: Encoding,
    /// Client auth scheme of new devices.
    pub auth: AuthType,
    pub server_id: ServerId,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Per HTTP request.
    pub request_timeout: Duration,
    /// New devices get credentials derived from this factory key (the
    /// server's auto-enrolment) instead of random ones.
    pub enrol_key: Option<crate::device::enrol::EnrolKey>,
    /// Each device is saved after each of its sessions; when false (the
    /// load benchmark), only by [`Sim::save_all`].
    pub save_each_session: bool,
}

impl SimConfig {
    /// Defaults for everything but the fleet size, server and state directory.
    pub fn new(devices: usize, server: impl Into<String>, state: impl Into<PathBuf>) -> Self {
        Self {
            devices,
            server: server.into(),
            state: state.into(),
            push_addr: None,
            poll: None,
            encoding: Encoding::Xml,
            auth: AuthType::Md5,
            server_id: ServerId::parse("handover.localhost").expect("valid"),
            concurrency: 256,
            request_timeout: Duration::from_secs(30),
            enrol_key: None,
            save_each_session: true,
        }
    }
}

/// What the simulator did, fleet-wide (reported on exit and on `GET /status`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    sessions_ok: AtomicU64,
    sessions_failed: AtomicU64,
    auth_failures: AtomicU64,
    server_auth_failures: AtomicU64,
    commands_executed: AtomicU64,
    notifications_received: AtomicU64,
    notifications_refused: AtomicU64,
    http_errors: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub devices: usize,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// Sessions where the server refused the device's credentials (A.4).
    pub auth_failures: u64,
    /// Sessions where the device refused the server's credentials (A.4).
    pub server_auth_failures: u64,
    pub commands_executed: u64,
    pub notifications_received: u64,
    /// Package 0 refused: unknown device, unparsable, wrong digest (A.5).
    pub notifications_refused: u64,
    pub http_errors: u64,
    pub sessions_in_flight: usize,
}

impl std::fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "devices {}, sessions ok {}, failed {} (auth refused by server {}, server auth refused {}, http errors {}), commands executed {}, notifications received {}, refused {}",
            self.devices,
            self.sessions_ok,
            self.sessions_failed,
            self.auth_failures,
            self.server_auth_failures,
            self.http_errors,
            self.commands_executed,
            self.notifications_received,
            self.notifications_refused
        )
    }
}

/// One device of the fleet.
pub(crate) struct Device {
    dev_id: String,
    path: PathBuf,
    /// Held for the whole of a session: a device runs one at a time.
    state: Mutex<DeviceState>,
    /// Its DMAcc accounts as the tree last held them, kept apart from the
    /// tree: read off it once per change, and so a notification can be
    /// verified while a session holds the device (A.5).
    accounts: std::sync::Mutex<Vec<device::Account>>,
}

impl Device {
    fn new(state: DeviceState, path: PathBuf) -> Self {
        let d = Self {
            dev_id: state.dev_id.clone(),
            path,
            accounts: std::sync::Mutex::new(Vec::new()),
            state: Mutex::new(state),
        };
        d.refresh_accounts(&d.state.try_lock().expect("new"));
        d
    }

    /// Reads the accounts off the tree again, after anything changed it.
    fn refresh_accounts(&self, st: &DeviceState) {
        *self.accounts.lock().expect("not poisoned") = st.accounts();
    }

    /// Sets the nonces of the account of `server_id` to those just written
    /// into the tree (see [`DeviceState::set_nonce`]), without reading all
    /// the accounts off the tree again.
    fn renew_nonces(&self, server_id: &ServerId, client: Option<&Nonce>, server: Option<&Nonce>) {
        let mut accounts = self.accounts.lock().expect("not poisoned");
        if let Some(a) = accounts.iter_mut().find(|a| &a.server_id == server_id) {
            if let Some(n) = client {
                a.client_nonce = n.clone();
            }
            if let Some(n) = server {
                a.server_nonce = n.clone();
            }
        }
    }

    /// The account of `server_id`, as the tree last held it.
    fn account(&self, server_id: &ServerId) -> Option<device::Account> {
        let accounts = self.accounts.lock().expect("not poisoned");
        accounts.iter().find(|a| &a.server_id == server_id).cloned()
    }

    /// The servers the device has accounts with.
    fn servers(&self) -> Vec<ServerId> {
        let accounts = self.accounts.lock().expect("not poisoned");
        accounts.iter().map(|a| a.server_id.clone()).collect()
    }
}

pub(crate) struct Fleet {
    cfg: SimConfig,
    devices: Vec<Arc<Device>>,
    by_id: HashMap<String, Arc<Device>>,
    http: reqwest::Client,
    permits: Semaphore,
    stats: Stats,
    in_flight: AtomicUsize,
}

impl Fleet {
    fn snapshot(&self) -> StatsSnapshot {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            devices: self.devices.len(),
            sessions_ok: g(&s.sessions_ok),
            sessions_failed: g(&s.sessions_failed),
            auth_failures: g(&s.auth_failures),
            server_auth_failures: g(&s.server_auth_failures),
            commands_executed: g(&s.commands_executed),
            notifications_received: g(&s.notifications_received),
            notifications_refused: g(&s.notifications_refused),
            http_errors: g(&s.http_errors),
            sessions_in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Seconds since 1970 as the tree's clock.
pub(crate) fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// A running fleet.
pub struct Sim {
    fleet: Arc<Fleet>,
    push: Option<push::Listener>,
}

impl Sim {
    /// Loads the fleet from `cfg.state` or creates `cfg.devices` new
    /// devices there, binds the push listener and writes `devices.csv`.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Self> {
        let dir = cfg.state.join("devices");
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let mut states = load_dir(&dir)?;
        if states.is_empty() {
            states = create_fleet(&cfg, &dir)?;
        } else if states.len() != cfg.devices {
            tracing::info!(
                loaded = states.len(),
                requested = cfg.devices,
                "state directory holds a fleet already; using it"
            );
        }
        let devices: Vec<Arc<Device>> = states
            .into_iter()
            .map(|s| {
                let path = dir.join(DeviceState::file_name(&s.dev_id));
                Arc::new(Device::new(s, path))
            })
            .collect();
        let by_id = devices
            .iter()
            .map(|d| (d.dev_id.clone(), d.clone()))
            .collect();
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(cfg.concurrency)
            .build()?;
        let fleet = Arc::new(Fleet {
            permits: Semaphore::new(cfg.concurrency.max(1)),
            cfg,
            devices,
            by_id,
            http,
            stats: Stats::default(),
            in_flight: AtomicUsize::new(0),
        });
        let push = match fleet.cfg.push_addr {
            Some(addr) => Some(push::Listener::bind(fleet.clone(), addr).await?),
            None => None,
        };
        let sim = Self { fleet, push };
        sim.write_csv().await?;
        Ok(sim)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.fleet.cfg.state
    }

    /// Where the push listener is bound.
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.push.as_ref().map(|p| p.addr)
    }

    /// The fleet's DevIds.
    pub fn dev_ids(&self) -> Vec<String> {
        self.fleet
            .devices
            .iter()
            .map(|d| d.dev_id.clone())
            .collect()
    }

    /// What the simulator did so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.fleet.snapshot()
    }

    /// A copy of a device's tree.
    pub async fn tree(&self, dev_id: &str) -> Option<Tree> {
        let d = self.fleet.by_id.get(dev_id)?;
        Some(d.state.lock().await.tree.clone())
    }

    /// Changes a device's tree in place, as its user or a local agent
    /// might between sessions (tests inject refusals this way); false when
    /// the device is unknown.
    pub async fn edit_tree(&self, dev_id: &str, f: impl FnOnce(&mut Tree)) -> bool {
        let Some(d) = self.fleet.by_id.get(dev_id) else {
            return false;
        };
        let mut st = d.state.lock().await;
        f(&mut st.tree);
        d.refresh_accounts(&st);
        true
    }

    /// The fleet as `devices.csv` rows, with the current nonces.
    pub async fn records(&self) -> Vec<DeviceRecord> {
        let push = self.push_addr();
        let mut out = Vec::with_capacity(self.fleet.devices.len());
        for d in &self.fleet.devices {
            let st = d.state.lock().await;
            let Some(a) = st
                .accounts()
                .into_iter()
                .find(|a| a.server_id == self.fleet.cfg.server_id)
            else {
                continue;
            };
            out.push(DeviceRecord {
                devid: d.dev_id.clone(),
                auth: st.auth,
                client_name: a.clcred.name,
                client_secret: a.clcred.secret.expose().to_owned(),
                client_nonce: a.client_nonce.to_b64(),
                server_name: a.srvcred.name,
                server_secret: a.srvcred.secret.expose().to_owned(),
                server_nonce: a.server_nonce.to_b64(),
                push_address: push.map_or_else(String::new, |p| {
                    format!("http://{p}/push/{}", csv::url_encode(&d.dev_id))
                }),
            });
        }
        out
    }

    /// Writes `DIR/devices.csv` atomically, owner-readable only.
    pub async fn write_csv(&self) -> anyhow::Result<PathBuf> {
        let text = csv::write(&self.records().await);
        let path = self.fleet.cfg.state.join("devices.csv");
        let p = path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&p, text.as_bytes())).await??;
        Ok(path)
    }

    /// Saves every device's state (after sessions run without
    /// `save_each_session`).
    pub async fn save_all(&self) -> anyhow::Result<()> {
        for d in &self.fleet.devices {
            let bytes = serde_json::to_vec(&*d.state.lock().await)?;
            let path = d.path.clone();
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes)).await??;
        }
        Ok(())
    }

    /// One client-initiated session (Alert 1201) per device and account;
    /// true when all succeeded.
    pub async fn run_once(&self) -> bool {
        let mut set = tokio::task::JoinSet::new();
        for d in &self.fleet.devices {
            let (fleet, d) = (self.fleet.clone(), d.clone());
            set.spawn(async move { session::client_initiated(&fleet, &d).await });
        }
        let mut all = true;
        while let Some(r) = set.join_next().await {
            all &= r.unwrap_or(false);
        }
        all
    }

    /// Serves push notifications and, with `--poll`, runs client-initiated
    /// sessions with jitter, until `shutdown` completes.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut pollers = tokio::task::JoinSet::new();
        if let Some(every) = self.fleet.cfg.poll {
            for d in &self.fleet.devices {
                let (fleet, d) = (self.fleet.clone(), d.clone());
                pollers.spawn(async move {
                    let mut rng = rand::rngs::StdRng::from_entropy();
                    // Spread the first sessions over one period.
                    let first = every.mul_f64(rng.gen_range(0.0..1.0));
                    tokio::time::sleep(first).await;
                    loop {
                        session::client_initiated(&fleet, &d).await;
                        let jitter = rng.gen_range(0.9..1.1);
                        tokio::time::sleep(every.mul_f64(jitter)).await;
                    }
                });
            }
        }
        shutdown.await;
        // Running sessions finish (a device cut off mid-session would be
        // out of step with its server); no new one starts.
        self.stop_sessions();
        self.wait_idle(Duration::from_secs(10)).await;
        pollers.shutdown().await;
    }

    /// From now on no session starts (push, polling, [`Sim::run_once`]);
    /// running ones go on to their end.
    pub fn stop_sessions(&self) {
        self.fleet.permits.close();
    }

    /// Waits (up to `limit`) until no session is running.
    async fn wait_idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.fleet.in_flight.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops starting sessions and the push listener, and waits (up to
    /// 10 s) for running sessions.
    pub async fn shutdown(mut self) -> StatsSnapshot {
        self.stop_sessions();
        if let Some(p) = self.push.take() {
            p.stop().await;
        }
        self.wait_idle(Duration::from_secs(10)).await;
        self.fleet.snapshot()
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, mode 0600:
/// a crash leaves the old file or the new one, never half of one. No
/// fsync: a simulator needs no power-loss durability, and one per session
/// would dominate the load benchmark.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn load_dir(dir: &Path) -> anyhow::Result<Vec<DeviceState>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push(DeviceState::load(&p)?);
        }
    }
    out.sort_by(|a, b| a.dev_id.cmp(&b.dev_id));
    Ok(out)
}

fn create_fleet(cfg: &SimConfig, dir: &Path) -> anyhow::Result<Vec<DeviceState>> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut seen = std::collections::HashSet::new();
    let new = device::NewDevice {
        server_id: &cfg.server_id,
        server_url: &cfg.server,
        auth: cfg.auth,
        enrol_key: cfg.enrol_key.as_ref(),
    };
    let now = now();
    let mut out = Vec::with_capacity(cfg.devices);
    while out.len() < cfg.devices {
        let id = device::random_imei(&mut rng);
        if !seen.insert(id.clone()) {
            continue;
        }
        let s = DeviceState::create(DevId::parse(id)?, &new, &mut rng, now);
        s.save(&dir.join(DeviceState::file_name(&s.dev_id)))?;
        out.push(s);
    }
    out.sort_by(|a, b| a.dev_id.cmp(&b.dev_id));
    Ok(out)
}

//! `handover demo`: two authorities on this machine, ready to click through.
//!
//! A mobile operator and an enterprise IT department, each a full Handover
//! (its own SQLite database, identity and portal, DM and peer listeners, all
//! under one directory), configured as each other's peers with pinned
//! fingerprints (PROTOCOL B.1); a simulated fleet managed by the operator,
//! imported into its database with a full tree read queued per device;
//! users for every role on both sides.
//!
//! Everything lives in the demo directory (`operator/`, `enterprise/`,
//! `fleet/`), so a second start is the same demo: same identities, peers,
//! fleet and users. Passwords are made and shown once, at the first start
//! (or when asked to reset them).

use crate::audit::{self, Event, NewEntry};
use crate::config::ServeConfig;
use crate::device::vault::Vault;
use crate::device::{session, Runtime};
use crate::peer::{DmUrl, Fingerprint, Peer, PeerUrl};
use crate::portal::password::{self, Password};
use crate::serve::{self, Bound, Running};
use crate::sim::{Sim, SimConfig, StatsSnapshot};
use crate::store::{devices, peers, users, Db};
use handover_app::api::Role;
use handover_dm::ServerId;
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The operator's ServerID.
pub const OPERATOR_ID: &str = "operator.demo.localhost";
/// The enterprise's ServerID.
pub const ENTERPRISE_ID: &str = "enterprise.demo.localhost";
/// Who the demo's own changes are audited as.
const ACTOR: &str = "demo";

/// The three listeners of one authority.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub portal: SocketAddr,
    pub dm: SocketAddr,
    pub peer: SocketAddr,
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Holds `operator/`, `enterprise/` and `fleet/`.
    pub dir: PathBuf,
    /// Size of the fleet made at the first start (a saved fleet is reused).
    pub devices: usize,
    pub operator: Listen,
    pub enterprise: Listen,
    /// The simulator's push listener.
    pub push: SocketAddr,
    /// Client-initiated sessions of every device this often.
    pub poll: Option<Duration>,
    /// The built site (CSS, WebAssembly).
    pub site_root: PathBuf,
    /// Give every demo user a new password (printed once).
    pub reset_passwords: bool,
    /// Simulated sessions in flight at once.
    pub concurrency: usize,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Two loopback addresses: `port` and `port + 1`, or both any port for 0.
fn pair(flag: &str, port: u16) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    if port == 0 {
        return Ok((loopback(0), loopback(0)));
    }
    let next = port
        .checked_add(1)
        .ok_or_else(|| anyhow::anyhow!("{flag} {port}: the enterprise needs the next port too"))?;
    Ok((loopback(port), loopback(next)))
}

impl DemoConfig {
    /// The operator listens on each given port, the enterprise on the next
    /// one: portals on `portal` and `portal + 1`, and so on. A port of 0
    /// lets the system pick (tests).
    pub fn on_ports(
        dir: impl Into<PathBuf>,
        devices: usize,
        portal: u16,
        dm: u16,
        peer: u16,
        push: u16,
    ) -> anyhow::Result<DemoConfig> {
        let (op_portal, ent_portal) = pair("--base-port", portal)?;
        let (op_dm, ent_dm) = pair("--dm-port", dm)?;
        let (op_peer, ent_peer) = pair("--peer-port", peer)?;
        Ok(DemoConfig {
            dir: dir.into(),
            devices,
            operator: Listen {
                portal: op_portal,
                dm: op_dm,
                peer: op_peer,
            },
            enterprise: Listen {
                portal: ent_portal,
                dm: ent_dm,
                peer: ent_peer,
            },
            push: loopback(push),
            poll: Some(Duration::from_secs(60)),
            site_root: PathBuf::from("target/site"),
            reset_passwords: false,
            concurrency: 4,
        })
    }
}

/// One side of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Operator,
    Enterprise,
}

impl Side {
    pub fn server_id(self) -> &'static str {
        match self {
            Side::Operator => OPERATOR_ID,
            Side::Enterprise => ENTERPRISE_ID,
        }
    }

    /// What people call it.
    pub fn title(self) -> &'static str {
        match self {
            Side::Operator => "Mobile operator",
            Side::Enterprise => "Enterprise IT",
        }
    }

    /// Its sub-directory of the demo directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Side::Operator => "operator",
            Side::Enterprise => "enterprise",
        }
    }

    /// The prefix of its user names.
    pub fn user_prefix(self) -> &'static str {
        match self {
            Side::Operator => "ops",
            Side::Enterprise => "it",
        }
    }
}

/// The users each side gets: one per role, plus a second approver so that
/// four eyes can be shown (an operator requests, either approver approves).
/// Everyone but the viewer also holds viewer, to see what they act on; the
/// role a user is named after comes first.
pub fn demo_users(side: Side) -> Vec<(String, Vec<Role>)> {
    let p = side.user_prefix();
    [
        ("admin", vec![Role::Admin, Role::Viewer]),
        ("operator", vec![Role::Operator, Role::Viewer]),
        ("approver", vec![Role::Approver, Role::Viewer]),
        ("approver2", vec![Role::Approver, Role::Viewer]),
        ("auditor", vec![Role::Auditor, Role::Viewer]),
        ("viewer", vec![Role::Viewer]),
    ]
    .into_iter()
    .map(|(n, roles)| (format!("{p}-{n}"), roles))
    .collect()
}

/// A user made (or given a new password) by this start. Its `Debug` hides
/// the password.
#[derive(Clone)]
pub struct Credential {
    pub side: Side,
    pub user: String,
    pub roles: Vec<Role>,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("side", &self.side)
            .field("user", &self.user)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Letters and digits that cannot be mistaken for one another.
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// 20 random characters (about 115 bits) in four groups of five, easy to
/// read off a terminal.
pub fn generate_password() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..4)
        .map(|_| {
            (0..5)
                .map(|_| char::from(PASSWORD_ALPHABET[rng.gen_range(0..PASSWORD_ALPHABET.len())]))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A running authority of the demo.
pub struct Authority {
    pub side: Side,
    pub server_id: String,
    pub data_dir: PathBuf,
    pub bound: Bound,
    pub fingerprint: Fingerprint,
    /// The authority's database (its own pool).
    pub db: Db,
    running: Running,
}

impl Authority {
    pub fn portal_url(&self) -> String {
        format!("http://{}", self.bound.portal)
    }

    pub fn dm_url(&self) -> String {
        format!("http://{}/dm", self.bound.dm)
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}", self.bound.peer)
    }
}

/// A side prepared before its listeners start.
struct Prepared {
    side: Side,
    data_dir: PathBuf,
    db: Db,
    fingerprint: Fingerprint,
    created_users: bool,
    credentials: Vec<Credential>,
}

/// The running demo.
pub struct Demo {
    pub operator: Authority,
    pub enterprise: Authority,
    /// True when this start made the users (a fresh demo directory).
    pub first_start: bool,
    /// Users made or given a new password by this start, to show once.
    pub credentials: Vec<Credential>,
    pub fleet_dir: PathBuf,
    pub fleet_size: usize,
    pub push_addr: Option<SocketAddr>,
    /// Devices imported into the operator by this start.
    pub imported: usize,
    poll: Option<Duration>,
    sim: Arc<Sim>,
    stop_fleet: tokio::sync::watch::Sender<bool>,
    fleet_task: tokio::task::JoinHandle<()>,
    first_sessions: tokio::sync::watch::Receiver<Option<StatsSnapshot>>,
}

impl Demo {
    /// Prepares both authorities (identity, users), starts their listeners,
    /// makes them each other's peers, starts the fleet and imports it into
    /// the operator. The fleet's first sessions (inventory, tree with ACLs)
    /// run in the background: see [`Demo::wait_for_first_sessions`].
    pub async fn start(cfg: DemoConfig) -> anyhow::Result<Demo> {
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", cfg.dir.display()))?;
        let op = prepare(&cfg, Side::Operator).await?;
        let ent = prepare(&cfg, Side::Enterprise).await?;
        let first_start = op.created_users || ent.created_users;

        let operator = launch(&cfg, op_listen(&cfg, Side::Operator), &op).await?;
        let enterprise = match launch(&cfg, op_listen(&cfg, Side::Enterprise), &ent).await {
            Ok(a) => a,
            Err(e) => {
                operator.running.stop().await;
                return Err(e);
            }
        };
        let mut credentials = op.credentials;
        credentials.extend(ent.credentials);

        match Self::continue_start(cfg, operator, enterprise, first_start, credentials).await {
            Ok(d) => Ok(d),
            Err((e, operator, enterprise)) => {
                operator.running.stop().await;
                enterprise.running.stop().await;
                Err(e)
            }
        }
    }

    #[allow(clippy::result_large_err)]
    async fn continue_start(
        cfg: DemoConfig,
        operator: Authority,
        enterprise: Authority,
        first_start: bool,
        credentials: Vec<Credential>,
    ) -> Result<Demo, (anyhow::Error, Authority, Authority)> {
        if let Err(e) = ensure_peer(&operator.db, &enterprise).await {
            return Err((e, operator, enterprise));
        }
        if let Err(e) = ensure_peer(&enterprise.db, &operator).await {
            return Err((e, operator, enterprise));
        }
        let fleet_dir = cfg.dir.join("fleet");
        let mut sim_cfg = SimConfig::new(cfg.devices, operator.dm_url(), &fleet_dir);
        sim_cfg.push_addr = Some(cfg.push);
        sim_cfg.poll = cfg.poll;
        sim_cfg.server_id = ServerId::parse(OPERATOR_ID).expect("valid ServerID");
        sim_cfg.concurrency = cfg.concurrency.max(1);
        let sim = match Sim::start(sim_cfg).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let e = e.context(format!(
                    "the simulated fleet cannot start (pick another --push-port than {})",
                    cfg.push.port()
                ));
                return Err((e, operator, enterprise));
            }
        };
        let prepared = async {
            let imported = import_fleet(&operator, &sim).await?;
            let unseen = never_seen(&operator.db).await?;
            // A demo killed during its first sessions left some reads half done.
            let reread = requeue_cut_short_reads(&operator).await?;
            anyhow::Ok((imported, unseen > 0 || reread > 0))
        };
        let (imported, catch_up) = match prepared.await {
            Ok(v) => v,
            Err(e) => {
                if let Ok(sim) = Arc::try_unwrap(sim) {
                    sim.shutdown().await;
                }
                return Err((e, operator, enterprise));
            }
        };

        let (stop_fleet, mut stop_rx) = tokio::sync::watch::channel(false);
        let (done_tx, first_sessions) = tokio::sync::watch::channel(None);
        let fleet_task = {
            let sim = sim.clone();
            tokio::spawn(async move {
                if catch_up {
                    let started = std::time::Instant::now();
                    let once = sim.run_once();
                    tokio::pin!(once);
                    let stopped = {
                        let mut rx = stop_rx.clone();
                        async move {
                            let _ = rx.wait_for(|s| *s).await;
                        }
                    };
                    tokio::select! {
                        _ = &mut once => {
                            let stats = sim.stats();
                            println!(
                                "Fleet: first sessions done in {:.0} s: {} ok, {} failed.",
                                started.elapsed().as_secs_f64(),
                                stats.sessions_ok,
                                stats.sessions_failed
                            );
                            let _ = done_tx.send(Some(stats));
                        }
                        _ = stopped => {
                            // Sessions under way end normally; the rest
                            // wait for the next start.
                            sim.stop_sessions();
                            once.await;
                            return;
                        }
                    }
                } else {
                    let _ = done_tx.send(Some(sim.stats()));
                }
                sim.run(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
            })
        };
        Ok(Demo {
            fleet_size: sim.dev_ids().len(),
            push_addr: sim.push_addr(),
            operator,
            enterprise,
            first_start,
            credentials,
            fleet_dir,
            imported,
            poll: cfg.poll,
            sim,
            stop_fleet,
            fleet_task,
            first_sessions,
        })
    }

    /// Waits (at most `timeout`) until the fleet's first sessions are done
    /// and returns the simulator's counters then; at once when every device
    /// had been seen before this start.
    pub async fn wait_for_first_sessions(&self, timeout: Duration) -> Option<StatsSnapshot> {
        let mut rx = self.first_sessions.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|s| s.is_some())).await;
        match r {
            Ok(Ok(v)) => *v,
            _ => None,
        }
    }

    /// One client-initiated session per device now; true when all succeeded.
    pub async fn run_fleet_once(&self) -> bool {
        self.sim.run_once().await
    }

    /// The simulator's counters now.
    pub fn fleet_stats(&self) -> StatsSnapshot {
        self.sim.stats()
    }

    /// What a person needs to start clicking: both portals and, when this
    /// start made them, the users with their passwords.
    pub fn summary(&self, dir: &Path) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nHandover demo: two authorities on this machine (state in {})\n",
            dir.display()
        );
        for a in [&self.operator, &self.enterprise] {
            let extra = match a.side {
                Side::Operator => format!("manages {} simulated devices", self.fleet_size),
                Side::Enterprise => "requests devices from the operator".to_owned(),
            };
            let _ = writeln!(
                s,
                "  {:<16} {:<26} {:<24} {extra}",
                a.side.title(),
                a.server_id,
                a.portal_url()
            );
        }
        let _ = writeln!(
            s,
            "\n  Each trusts the other as a peer by its pinned fingerprint:"
        );
        for a in [&self.operator, &self.enterprise] {
            let _ = writeln!(
                s,
                "    {:<26} {}  peer {}  DM {}",
                a.server_id,
                a.fingerprint,
                a.peer_url(),
                a.dm_url()
            );
        }
        if self.credentials.is_empty() {
            let _ = writeln!(
                s,
                "\nUsers: the ones printed at the first start still apply ({}, {} …).\n  Lost them? Start with --reset-passwords to print new ones.",
                demo_users(Side::Operator)[0].0,
                demo_users(Side::Enterprise)[0].0
            );
        } else {
            let _ = writeln!(
                s,
                "\nUsers (the passwords are shown this once; keep them):\n"
            );
            let _ = writeln!(
                s,
                "  {:<24} {:<14} {:<20} PASSWORD",
                "PORTAL", "USER", "ROLES"
            );
            for c in &self.credentials {
                let portal = match c.side {
                    Side::Operator => self.operator.portal_url(),
                    Side::Enterprise => self.enterprise.portal_url(),
                };
                let roles = c
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    s,
                    "  {:<24} {:<14} {:<20} {}",
                    portal, c.user, roles, c.password
                );
            }
        }
        let poll = self
            .poll
            .map(|p| format!(", each device calls in every {} s", p.as_secs()))
            .unwrap_or_default();
        let push = self
            .push_addr
            .map(|p| format!(", push listener http://{p}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\nFleet: {} devices in {}{push}{poll}.",
            self.fleet_size,
            self.fleet_dir.display()
        );
        if self.imported > 0 {
            let _ = writeln!(
                s,
                "  {} imported into the operator; their first sessions (inventory, tree with ACLs) are running.",
                self.imported
            );
        }
        let _ = writeln!(
            s,
            "\nStop with Ctrl-C; starting again continues with the same state.\n"
        );
        s
    }

    /// Stops the fleet (its sessions end, its state is saved), then both
    /// authorities' listeners, then closes the databases.
    pub async fn stop(self) -> StatsSnapshot {
        let _ = self.stop_fleet.send(true);
        let _ = self.fleet_task.await;
        let stats = match Arc::try_unwrap(self.sim) {
            Ok(sim) => sim.shutdown().await,
            Err(sim) => sim.stats(),
        };
        self.operator.running.stop().await;
        self.enterprise.running.stop().await;
        self.operator.db.pool().close().await;
        self.enterprise.db.pool().close().await;
        stats
    }
}

fn op_listen(cfg: &DemoConfig, side: Side) -> Listen {
    match side {
        Side::Operator => cfg.operator,
        Side::Enterprise => cfg.enterprise,
    }
}

/// Opens a side's database, makes or loads its identity, and makes its
/// users when it has none (or new passwords when asked).
async fn prepare(cfg: &DemoConfig, side: Side) -> anyhow::Result<Prepared> {
    let data_dir = cfg.dir.join(side.dir_name());
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
    let db = Db::connect(&Db::sqlite_url(&data_dir)).await?;
    let identity = serve::load_identity(&db, &data_dir, side.server_id()).await?;
    let fresh = users::count(&db).await? == 0;
    let mut credentials = Vec::new();
    for (name, roles) in demo_users(side) {
        let existing = users::by_name(&db, &name).await?;
        // Users exist from an earlier start: leave them be, unless asked.
        if existing.is_some() && !cfg.reset_passwords {
            continue;
        }
        if existing.is_none() && !fresh && !cfg.reset_passwords {
            continue;
        }
        let password = generate_password();
        let hash =
            password::hash(Password::new(password.clone()).map_err(anyhow::Error::msg)?).await?;
        if existing.is_some() {
            users::set_password(&db, &name, &hash).await?;
            audit::append(&db, NewEntry::new(Event::UserPasswordReset, ACTOR, &name)).await?;
        } else {
            users::create(&db, &name, &hash, &roles).await?;
            audit::append(
                &db,
                NewEntry::new(Event::UserCreated, ACTOR, &name)
                    .details(serde_json::json!({ "roles": users::roles_to_text(&roles) })),
            )
            .await?;
        }
        let roles = match existing {
            Some(u) => u.roles,
            None => roles,
        };
        credentials.push(Credential {
            side,
            user: name,
            roles,
            password,
        });
    }
    Ok(Prepared {
        side,
        fingerprint: identity.fingerprint().clone(),
        data_dir,
        db,
        created_users: fresh,
        credentials,
    })
}

/// Starts a side's listeners.
async fn launch(cfg: &DemoConfig, listen: Listen, p: &Prepared) -> anyhow::Result<Authority> {
    let serve_cfg = ServeConfig {
        data_dir: p.data_dir.clone(),
        database_url: Db::sqlite_url(&p.data_dir),
        portal_addr: listen.portal,
        dm_addr: listen.dm,
        peer_addr: listen.peer,
        server_id: p.side.server_id().to_owned(),
        site_root: cfg.site_root.clone(),
        secure_cookie: false,
        session_idle_secs: 30 * 60,
        device_secrets_key: None,
        dm: Default::default(),
        delegation: Default::default(),
    };
    let (bound, running) = serve::start(serve_cfg).await.map_err(|e| {
        anyhow::anyhow!(
            "the {} authority cannot start: {e:#}\n(is another demo or server running? \
             Choose other ports with --base-port, --dm-port and --peer-port)",
            p.side.dir_name()
        )
    })?;
    Ok(Authority {
        side: p.side,
        server_id: p.side.server_id().to_owned(),
        data_dir: p.data_dir.clone(),
        bound,
        fingerprint: p.fingerprint.clone(),
        db: p.db.clone(),
        running,
    })
}

/// Makes `other` a peer in `db`, or brings its URLs and pin up to date (a
/// policy an administrator added stays). The peer listener reads the pins
/// before every handshake, so this counts at once.
async fn ensure_peer(db: &Db, other: &Authority) -> anyhow::Result<()> {
    let want = Peer {
        server_id: ServerId::parse_strict(other.server_id.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        url: PeerUrl::parse(&other.peer_url()).map_err(anyhow::Error::msg)?,
        dm_url: DmUrl::parse(&other.dm_url()).map_err(anyhow::Error::msg)?,
        fingerprint: other.fingerprint.clone(),
        auto_accept: None,
        created_at: 0,
        updated_at: 0,
    };
    match peers::get(db, &other.server_id).await? {
        None => {
            peers::add(db, &want).await?;
            audit::append(
                db,
                NewEntry::new(Event::PeerAdded, ACTOR, &other.server_id).details(
                    serde_json::json!({
                        "url": want.url.as_str(),
                        "dm_url": want.dm_url.as_str(),
                        "fingerprint": want.fingerprint.as_str(),
                    }),
                ),
            )
            .await?;
        }
        Some(have)
            if have.url != want.url
                || have.dm_url != want.dm_url
                || have.fingerprint != want.fingerprint =>
        {
            let peer = Peer {
                auto_accept: have.auto_accept.clone(),
                ..want
            };
            peers::update(db, &peer).await?;
            audit::append(
                db,
                NewEntry::new(Event::PeerUpdated, ACTOR, &other.server_id).details(
                    serde_json::json!({
                        "url": [have.url.as_str(), peer.url.as_str()],
                        "dm_url": [have.dm_url.as_str(), peer.dm_url.as_str()],
                        "fingerprint": [have.fingerprint.as_str(), peer.fingerprint.as_str()],
                    }),
                ),
            )
            .await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Imports the fleet's devices the operator does not have yet, each with a
/// full tree read queued, and points the others at this start's push
/// listener. Returns how many were imported.
async fn import_fleet(operator: &Authority, sim: &Sim) -> anyhow::Result<usize> {
    let csv = sim.state_dir().join("devices.csv");
    let text = std::fs::read_to_string(&csv)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", csv.display()))?;
    let lines = devices::parse_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", csv.display()))?;
    let db = &operator.db;
    let mut new = Vec::new();
    for l in lines {
        match devices::get(db, &l.devid).await? {
            None => new.push(l),
            Some(d) if d.push_address != l.push_address => {
                devices::set_push_address(db, &l.devid, &l.push_address).await?;
            }
            Some(_) => {}
        }
    }
    if new.is_empty() {
        return Ok(0);
    }
    let vault = Vault::open(None, &operator.data_dir)?;
    let rt = Runtime::new(db.clone(), vault, Default::default());
    let (added, updated) = devices::import(db, &rt.vault, &new).await?;
    audit::append(
        db,
        NewEntry::new(Event::DevicesImported, ACTOR, csv.display().to_string())
            .details(serde_json::json!({ "added": added, "updated": updated })),
    )
    .await?;
    for l in &new {
        session::queue_tree_read(&rt, &l.devid, ACTOR).await?;
    }
    Ok(added)
}

/// Who queues the children of a full tree read (`device::session`).
const TREE_READ_CHILDREN: &str = "system:tree-read";

/// One job as [`read_cut_short`] needs it.
#[derive(Debug, Clone)]
pub struct ReadJob {
    pub requested_by: String,
    pub command: String,
    pub state: String,
    pub status: Option<i64>,
}

impl ReadJob {
    fn is_demo_root_read(&self) -> bool {
        self.requested_by == ACTOR
            && matches!(
                serde_json::from_str::<crate::store::jobs::JobCommand>(&self.command),
                Ok(crate::store::jobs::JobCommand::Get { ref target, walk: true }) if target == "."
            )
    }
}

/// True when the latest full tree read the demo queued for a device was
/// cut short: one of its jobs went out in a session that ended before the
/// device answered (the process was killed) or that failed authentication
/// (a device cut off mid-session is out of step until its next session).
/// `jobs` is the device's jobs, newest first.
pub fn read_cut_short(jobs: &[ReadJob]) -> bool {
    let Some(root) = jobs.iter().position(ReadJob::is_demo_root_read) else {
        return false;
    };
    jobs[..=root].iter().any(|j| {
        (j.requested_by == ACTOR || j.requested_by == TREE_READ_CHILDREN)
            && (j.state == "sent"
                || (j.state == "failed" && matches!(j.status, None | Some(401) | Some(407))))
    })
}

/// Queues a full tree read again for every operator device whose last one
/// was cut short; returns how many.
async fn requeue_cut_short_reads(operator: &Authority) -> anyhow::Result<usize> {
    use sqlx::Row;
    let db = &operator.db;
    let rows = sqlx::query(&db.sql(
        "SELECT devid, requested_by, command, state, status FROM jobs \
         WHERE requested_by IN ($1, $2) ORDER BY devid, id DESC",
    ))
    .bind(ACTOR)
    .bind(TREE_READ_CHILDREN)
    .fetch_all(db.pool())
    .await?;
    let mut by_device: std::collections::BTreeMap<String, Vec<ReadJob>> = Default::default();
    for r in &rows {
        by_device
            .entry(r.try_get("devid")?)
            .or_default()
            .push(ReadJob {
                requested_by: r.try_get("requested_by")?,
                command: r.try_get("command")?,
                state: r.try_get("state")?,
                status: crate::store::opt_i64(r, "status")?,
            });
    }
    let cut: Vec<&String> = by_device
        .iter()
        .filter(|(_, jobs)| read_cut_short(jobs))
        .map(|(d, _)| d)
        .collect();
    if cut.is_empty() {
        return Ok(0);
    }
    let vault = Vault::open(None, &operator.data_dir)?;
    let rt = Runtime::new(db.clone(), vault, Default::default());
    for devid in &cut {
        session::queue_tree_read(&rt, devid, ACTOR).await?;
    }
    tracing::info!(
        devices = cut.len(),
        "tree reads cut short by the last stop queued again"
    );
    Ok(cut.len())
}

/// How many of the operator's devices never had a session.
async fn never_seen(db: &Db) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE first_seen IS NULL")
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_readable() {
        let a = generate_password();
        assert_eq!(a.len(), 23);
        assert_eq!(a.split('-').count(), 4);
        assert!(a
            .bytes()
            .all(|b| b == b'-' || PASSWORD_ALPHABET.contains(&b)));
        assert!(Password::new(a.clone()).is_ok());
        assert_ne!(a, generate_password());
    }

    #[test]
    fn every_role_on_both_sides() {
        for side in [Side::Operator, Side::Enterprise] {
            let users = demo_users(side);
            for role in Role::ALL {
                assert!(users.iter().any(|(_, r)| r.contains(&role)), "{role}");
            }
            let approvers = users
                .iter()
                .filter(|(_, r)| r.contains(&Role::Approver))
                .count();
            assert!(approvers >= 2, "four eyes need a second approver");
        }
    }

    impl ReadJob {
        fn failed(mut self, status: i64) -> Self {
            self.state = "failed".into();
            self.status = Some(status);
            self
        }
    }

    #[test]
    fn reads_cut_short_are_found() {
        let job = |by: &str, command: &str, state: &str, status: Option<i64>| ReadJob {
            requested_by: by.into(),
            command: command.into(),
            state: state.into(),
            status,
        };
        let root = job(
            ACTOR,
            r#"{"cmd":"Get","target":".","walk":true}"#,
            "succeeded",
            Some(200),
        );
        let acl = job(
            ACTOR,
            r#"{"cmd":"Get","target":".?prop=ACL"}"#,
            "succeeded",
            Some(200),
        );
        let child = |state: &str, status: Option<i64>| {
            job(
                TREE_READ_CHILDREN,
                r#"{"cmd":"Get","target":"./DevInfo","walk":true}"#,
                state,
                status,
            )
        };
        // Newest first.
        let done = [
            child("succeeded", Some(200)),
            child("failed", Some(405)),
            acl.clone(),
            root.clone(),
        ];
        assert!(!read_cut_short(&done));
        let aborted = [child("failed", None), acl.clone(), root.clone()];
        assert!(read_cut_short(&aborted));
        let unanswered = [child("sent", None), acl.clone(), root.clone()];
        assert!(read_cut_short(&unanswered));
        let refused = [acl.clone().failed(401), root.clone().failed(401)];
        assert!(read_cut_short(&refused));
        // A newer read queued after the aborted one: wait for it.
        let again = [
            acl.clone(),
            root.clone(),
            child("failed", None),
            acl.clone(),
            root.clone(),
        ];
        assert!(!read_cut_short(&again));
        // Jobs the demo did not queue are not its business.
        assert!(!read_cut_short(&[child("failed", None)]));
    }

    #[test]
    fn ports_pair_up() {
        let c = DemoConfig::on_ports("d", 5, 3000, 8080, 8443, 9090).unwrap();
        assert_eq!(c.operator.portal.port(), 3000);
        assert_eq!(c.enterprise.portal.port(), 3001);
        assert_eq!(c.enterprise.dm.port(), 8081);
        assert_eq!(c.enterprise.peer.port(), 8444);
        assert!(c.operator.portal.ip().is_loopback());
        let any = DemoConfig::on_ports("d", 5, 0, 0, 0, 0).unwrap();
        assert_eq!(any.enterprise.portal.port(), 0);
        assert!(DemoConfig::on_ports("d", 5, u16::MAX, 1, 1, 1).is_err());
    }
}

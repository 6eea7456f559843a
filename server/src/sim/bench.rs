//! `handover sim bench`: K devices run full DM sessions back to back
//! against a server for a while; then, in the same run, the same round
//! trips (the recorded request and reply bytes of one session per device)
//! against a canned-reply endpoint on loopback that does no protocol work.
//! The ratio real/canned is what the DM protocol costs over bare HTTP.
//! The endpoint runs in a process of its own, as the server does, with all
//! K devices in flight ([`super::canned`]); `--canned-in-process` serves it
//! from this process instead, with at most 2 000 in flight.
//!
//! Every session carries a Get of `./DevInfo` and a Replace of a leaf.
//! Without `--server` the built-in reference server
//! ([`super::refserver::RefServer`]) is started on loopback and queues both
//! in every session. With `--server URL`, `--state DIR` names a fleet that
//! server has imported (`DIR/devices.csv`), and `--api URL` with
//! `--api-token` queues both commands through the server's JSON API before
//! each session (one `POST .../commands` per session, part of the measured
//! cycle and of the canned replay). Without `--api` the server decides what
//! each session carries.
//!
//! Descriptors: the simulator's soft limit is raised to its hard limit; a
//! phase whose client and server sockets both live in this process (the
//! reference server, the in-process canned endpoint) keeps at most as many sessions in
//! flight as the remaining descriptors allow, and says so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header;
use clap::Args;
use handover_dm::session::CommandKind;
use handover_dm::ServerId;

use super::canned::{self, Replies};
use super::cli::AuthArg;
use super::refserver::RefServer;
use super::session::{self, Transcript};
use super::{Sim, SimConfig};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Devices running sessions at once (K).
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Seconds for each phase (real, then canned).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The server's DM endpoint; the built-in reference server when omitted.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The fleet's state directory (required with --server); a temporary one otherwise.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Report this process's VmRSS (the server's) before and after.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    #[arg(long)]
    pub wbxml: bool,
    #[arg(long, value_enum, default_value = "md5")]
    pub auth: AuthArg,
    #[arg(long, value_name = "ID", default_value = "handover.localhost")]
    pub server_id: String,
    /// The server's portal (JSON API) base URL, e.g. http://127.0.0.1:8443:
    /// the bench's Get and Replace are queued there before every session.
    #[arg(long, value_name = "URL", requires = "server")]
    pub api: Option<String>,
    /// A bearer token of the API with write access (see `admin token create`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HANDOVER_API_TOKEN",
        requires = "api"
    )]
    pub api_token: Option<String>,
    /// API requests in flight at once (an operator's tool, not a device).
    #[arg(long, default_value_t = 64)]
    pub api_concurrency: usize,
    /// Serve the canned replies from this process, with at most 2 000
    /// sessions in flight, instead of from a process of their own with all
    /// K devices (the baseline of LOAD.md's first sixteen rounds).
    #[arg(long)]
    pub canned_in_process: bool,
    /// The `handover` binary that serves the canned replies in a process of
    /// its own; this one when `None` (tests name the real binary).
    #[arg(skip)]
    pub endpoint_bin: Option<PathBuf>,
}

/// The bench's commands as the JSON API takes them.
fn bench_commands_json() -> serde_json::Value {
    serde_json::json!({ "commands": [
        { "cmd": "Get", "target": "./DevInfo" },
        { "cmd": "Replace", "target": "./Vendor/Corp/Apps/Mail/Server",
          "data": "mail2.corp.example", "format": "chr", "type": "text/plain" },
    ]})
}

/// One HTTP exchange of a measured cycle, replayed against the canned endpoint.
#[derive(Clone)]
struct Exchange {
    content_type: &'static str,
    body: Vec<u8>,
    hmac: Option<String>,
    reply_type: &'static str,
    reply: Vec<u8>,
}

/// Queues the bench's commands through the server's API.
struct Queuer {
    http: reqwest::Client,
    api: String,
    token: String,
    body: Vec<u8>,
    permits: tokio::sync::Semaphore,
}

impl Queuer {
    fn new(api: &str, token: &str, concurrency: usize) -> anyhow::Result<Self> {
        let n = concurrency.max(1);
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(n)
                .build()?,
            api: api.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            body: serde_json::to_vec(&bench_commands_json())?,
            permits: tokio::sync::Semaphore::new(n),
        })
    }

    /// Queues the commands for `devid`; the exchange as sent and answered.
    async fn queue(&self, devid: &str) -> anyhow::Result<Exchange> {
        let _permit = self.permits.acquire().await?;
        let url = format!(
            "{}/api/v1/devices/{}/commands",
            self.api,
            super::csv::url_encode(devid)
        );
        let r = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await?;
        let status = r.status();
        let reply = r.bytes().await?.to_vec();
        anyhow::ensure!(
            status.is_success(),
            "queueing for {devid}: HTTP {status}: {}",
            String::from_utf8_lossy(&reply)
        );
        Ok(Exchange {
            content_type: "application/json",
            body: self.body.clone(),
            hmac: None,
            reply_type: "application/json",
            reply,
        })
    }
}

/// The canned phase's sessions in flight, at most.
const CANNED_IN_FLIGHT: usize = 2_000;

/// Sessions this process can keep in flight when it holds `ends` ends of
/// every connection (one descriptor each), after what is open already,
/// with room to spare: a client may open a new connection before the one a
/// finished request used is back in its pool.
fn fd_budget(ends: usize) -> usize {
    let limit = crate::serve::raise_open_files_limit().unwrap_or(1024) as usize;
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count());
    limit.saturating_sub(open + 1024) * 2 / (3 * ends.max(1))
}

/// The commands the reference server queues per session.
fn bench_commands() -> Vec<CommandKind> {
    vec![
        CommandKind::Get {
            target: "./DevInfo".into(),
        },
        CommandKind::Replace {
            target: "./Vendor/Corp/Apps/Mail/Server".into(),
            data: b"mail2.corp.example".to_vec(),
            format: Some("chr".into()),
            mime: Some("text/plain".into()),
        },
    ]
}

/// Sessions per second and latency percentiles of one phase.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub sessions: usize,
    pub failed: usize,
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// From the start until the last session in flight at the deadline ended.
    pub elapsed: Duration,
}

impl Phase {
    fn of(mut lat: Vec<Duration>, failed: usize, elapsed: Duration) -> Self {
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Self {
            sessions: lat.len(),
            failed,
            per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            elapsed,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sessions ({} failed), {:.1} sessions/s, p50 {:.2} ms, p99 {:.2} ms",
            self.sessions,
            self.failed,
            self.per_sec,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// `VmRSS` of a process, in kB.
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (user + system) a process has used so far, in milliseconds.
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1000 / hz)
}

/// Time a process's threads have spent runnable but waiting for a core,
/// in milliseconds: the second field of each thread's
/// `/proc/PID/task/TID/schedstat`, summed over the threads alive now.
/// On a machine with spare cores it stays near zero; when the bench's two
/// processes want more cores than there are, it grows with the shortage.
pub fn waiting_ms(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += schedstat_waiting_ns(&text).unwrap_or(0);
        }
    }
    Some(ns / 1_000_000)
}

/// The run-queue wait of one `schedstat` line ("on-cpu-ns wait-ns slices").
fn schedstat_waiting_ns(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// "busy X cores, Y more waiting for one" over `secs` seconds, from CPU and
/// waiting milliseconds before and after.
fn cores(cpu: (Option<u64>, Option<u64>), wait: (Option<u64>, Option<u64>), secs: f64) -> String {
    let per = |(b, a): (Option<u64>, Option<u64>)| {
        Some(a?.saturating_sub(b?) as f64 / 1e3 / secs.max(1e-9))
    };
    match (per(cpu), per(wait)) {
        (Some(c), Some(w)) => format!("{c:.2} cores busy, {w:.2} more waiting for a core"),
        (Some(c), None) => format!("{c:.2} cores busy"),
        _ => "cores not measured".into(),
    }
}

/// Runs the benchmark and prints its numbers; exit code 1 when no session
/// succeeded in either phase.
pub async fn run(a: BenchArgs) -> anyhow::Result<i32> {
    let mut tmp = None;
    let state = match &a.state {
        Some(d) => d.clone(),
        None => {
            anyhow::ensure!(
                a.server.is_none(),
                "--server needs --state DIR with a fleet that server has imported"
            );
            tmp.insert(tempfile_dir()?).clone()
        }
    };
    let code = bench(&a, state).await;
    if let Some(d) = tmp {
        let _ = std::fs::remove_dir_all(d);
    }
    code
}

async fn bench(a: &BenchArgs, state: PathBuf) -> anyhow::Result<i32> {
    let limit = crate::serve::raise_open_files_limit();
    let reference = match &a.server {
        Some(_) => None,
        None => Some(RefServer::start("127.0.0.1:0".parse()?, &[], bench_commands()).await?),
    };
    let url = a
        .server
        .clone()
        .or_else(|| reference.as_ref().map(RefServer::url))
        .expect("one of them");
    let queuer = match (&a.api, &a.api_token) {
        (Some(api), Some(token)) => Some(Arc::new(Queuer::new(api, token, a.api_concurrency)?)),
        (Some(_), None) => anyhow::bail!("--api needs --api-token (or HANDOVER_API_TOKEN)"),
        _ => None,
    };
    let mut cfg = SimConfig::new(a.devices, url.clone(), state);
    cfg.encoding = if a.wbxml {
        handover_dm::syncml::Encoding::Wbxml
    } else {
        handover_dm::syncml::Encoding::Xml
    };
    cfg.auth = a.auth.into();
    cfg.server_id = ServerId::parse_strict(a.server_id.clone())?;
    cfg.concurrency = a.devices.max(1);
    // The simulator's own bookkeeping stays out of the measured loop: the
    // fleet is saved once, after the run.
    cfg.save_each_session = false;
    if reference.is_some() {
        // Both ends of every connection are ours.
        cfg.concurrency = cfg.concurrency.min(fd_budget(2).max(1));
    }
    let in_flight = cfg.concurrency;
    let sim = Sim::start(cfg).await?;
    if let Some(r) = &reference {
        r.set_accounts(&sim.records().await)?;
    }
    let duration = Duration::from_secs(a.duration.max(1));
    println!(
        "{} devices, {} sessions in flight, open files limit {}; each session: {}",
        sim.fleet.devices.len(),
        in_flight.min(sim.fleet.devices.len()),
        limit.map_or("unknown".into(), |l| l.to_string()),
        match (&reference, &queuer) {
            (Some(_), _) => "Get ./DevInfo and Replace a leaf, queued by the reference server",
            (None, Some(_)) =>
                "Get ./DevInfo and Replace a leaf, queued through the API before the session",
            (None, None) => "whatever the server has queued (no --api)",
        }
    );
    let rss_before = a.server_pid.and_then(vm_rss_kb);
    let cpu_before = a.server_pid.and_then(cpu_ms);
    let own_cpu_before = cpu_ms(std::process::id());
    let wait_before = a.server_pid.and_then(waiting_ms);
    let own_wait_before = waiting_ms(std::process::id());
    let commands_before = sim.stats().commands_executed;

    // Phase 1: full sessions against the server.
    let fleet = sim.fleet.clone();
    let server_id = fleet.cfg.server_id.clone();
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for dev in fleet.devices.clone() {
        let (fleet, server_id, queuer) = (fleet.clone(), server_id.clone(), queuer.clone());
        set.spawn(async move {
            let (mut lat, mut failed, mut transcript) = (Vec::new(), 0, None);
            while Instant::now() < deadline {
                let mut t = Transcript::new();
                let t0 = Instant::now();
                let queued = match &queuer {
                    Some(q) => match q.queue(&dev.dev_id).await {
                        Ok(x) => Some(x),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot queue the bench's commands");
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    None => None,
                };
                // Only the first successful session's messages are kept.
                let record = transcript.is_none().then_some(&mut t);
                let ok = session::run_recorded(&fleet, &dev, &server_id, None, record).await;
                if ok {
                    lat.push(t0.elapsed());
                    transcript.get_or_insert_with(|| {
                        let mut x: Vec<Exchange> = queued.into_iter().collect();
                        x.extend(t.into_iter().map(|(tx, reply)| Exchange {
                            content_type: tx.encoding.content_type(),
                            body: tx.bytes,
                            hmac: tx.hmac,
                            reply_type: tx.encoding.content_type(),
                            reply,
                        }));
                        x
                    });
                } else {
                    failed += 1;
                    // A failing server is not hammered in a tight loop.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (lat, failed, transcript)
        });
    }
    let (mut lat, mut failed, mut transcripts) = (Vec::new(), 0, Vec::new());
    while let Some(r) = set.join_next().await {
        let (l, f, t) = r?;
        lat.extend(l);
        failed += f;
        transcripts.extend(t);
    }
    let real = Phase::of(lat, failed, start.elapsed());
    let rss_after = a.server_pid.and_then(vm_rss_kb);
    let cpu_after = a.server_pid.and_then(cpu_ms);
    let own_cpu_after = cpu_ms(std::process::id());
    let wait_after = a.server_pid.and_then(waiting_ms);
    let own_wait_after = waiting_ms(std::process::id());
    let commands = sim.stats().commands_executed - commands_before;
    println!("server {url}: {real}");
    println!(
        "  commands executed by the devices: {commands} ({:.2} per successful session); HTTP round trips per session: {}",
        commands as f64 / real.sessions.max(1) as f64,
        transcripts.first().map_or(0, Vec::len)
    );
    let secs = real.elapsed.as_secs_f64();
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        println!(
            "  server CPU time: {} ms ({:.3} ms per session, {})",
            a - b,
            (a - b) as f64 / real.sessions.max(1) as f64,
            cores((cpu_before, cpu_after), (wait_before, wait_after), secs)
        );
    }
    if let (Some(b), Some(a)) = (own_cpu_before, own_cpu_after) {
        println!(
            "  simulator CPU time: {} ms ({:.3} ms per session, {})",
            a - b,
            (a - b) as f64 / real.sessions.max(1) as f64,
            cores(
                (own_cpu_before, own_cpu_after),
                (own_wait_before, own_wait_after),
                secs
            )
        );
    }
    let devices = fleet.devices.len();
    let rss = match (a.server_pid, rss_before, rss_after) {
        (Some(pid), Some(b), Some(a)) => Some(format!(
            "server pid {pid} VmRSS: before {b} kB, after {a} kB ({:.1} kB per session in flight)",
            (a.saturating_sub(b)) as f64 / in_flight.min(devices).max(1) as f64
        )),
        _ => None,
    };
    // The fleet is saved and let go before the baseline: its connections to
    // the server close, and the canned phase has the descriptors.
    if let Err(e) = sim.save_all().await {
        println!("cannot save the fleet: {e:#}");
    }
    let stats = sim.shutdown().await;
    println!("{stats}");
    drop((fleet, queuer));
    if let Some(r) = reference {
        r.stop();
    }
    if transcripts.is_empty() {
        println!("no session succeeded: no canned baseline");
        return Ok(1);
    }

    // Phase 2: the same round trips against canned replies, with a client
    // of its own.
    let replies: Replies = transcripts
        .iter()
        .map(|t| t.iter().map(|x| (x.reply_type, x.reply.clone())).collect())
        .collect();
    let (canned_addr, endpoint, canned_in_flight) = if a.canned_in_process {
        // Both ends of every connection are in this process. At most
        // CANNED_IN_FLIGHT: its rate is flat beyond that on this machine,
        // and 10 000 sessions in flight here run out of descriptors.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = canned::router(replies);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let n = devices.min(fd_budget(2).max(1)).min(CANNED_IN_FLIGHT);
        (addr, Endpoint::Task(task), n)
    } else {
        let child = CannedChild::start(a.endpoint_bin.as_deref(), &replies).await?;
        let n = devices.min(fd_budget(1).max(1));
        (child.addr, Endpoint::Child(Box::new(child)), n)
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(canned_in_flight)
        .build()?;
    let permits = Arc::new(tokio::sync::Semaphore::new(canned_in_flight));
    let own_cpu_before = cpu_ms(std::process::id());
    let own_wait_before = waiting_ms(std::process::id());
    let (ep_cpu_before, ep_wait_before) = (
        endpoint.pid().and_then(cpu_ms),
        endpoint.pid().and_then(waiting_ms),
    );
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..devices {
        let t = Arc::new(transcripts[i % transcripts.len()].clone());
        let d = i % transcripts.len();
        let (http, permits) = (http.clone(), permits.clone());
        set.spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let Ok(_permit) = permits.acquire().await else {
                    break;
                };
                let t0 = Instant::now();
                let mut ok = true;
                for (m, x) in t.iter().enumerate() {
                    let url = format!("http://{canned_addr}/canned/{d}/{m}");
                    ok &= canned_post(&http, &url, x).await.is_ok();
                }
                if ok {
                    lat.push(t0.elapsed());
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        });
    }
    let (mut lat, mut failed) = (Vec::new(), 0);
    while let Some(r) = set.join_next().await {
        let (l, f) = r?;
        lat.extend(l);
        failed += f;
    }
    let canned = Phase::of(lat, failed, start.elapsed());
    let own_cpu_after = cpu_ms(std::process::id());
    let own_wait_after = waiting_ms(std::process::id());
    let (ep_cpu_after, ep_wait_after) = (
        endpoint.pid().and_then(cpu_ms),
        endpoint.pid().and_then(waiting_ms),
    );
    let secs = canned.elapsed.as_secs_f64();
    let own = cores(
        (own_cpu_before, own_cpu_after),
        (own_wait_before, own_wait_after),
        secs,
    );
    match &endpoint {
        Endpoint::Task(_) => {
            println!("canned http://{canned_addr}, in this process ({canned_in_flight} sessions in flight): {canned}");
            println!("  simulator and canned endpoint: {own}");
        }
        Endpoint::Child(c) => {
            println!(
                "canned http://{canned_addr}, process {} ({canned_in_flight} sessions in flight): {canned}",
                c.pid
            );
            if let (Some(b), Some(a)) = (ep_cpu_before, ep_cpu_after) {
                println!(
                    "  canned endpoint CPU time: {} ms ({:.3} ms per session, {})",
                    a - b,
                    (a - b) as f64 / canned.sessions.max(1) as f64,
                    cores(
                        (ep_cpu_before, ep_cpu_after),
                        (ep_wait_before, ep_wait_after),
                        secs
                    )
                );
            }
            if let (Some(b), Some(a)) = (own_cpu_before, own_cpu_after) {
                println!(
                    "  simulator CPU time: {} ms ({:.3} ms per session, {own})",
                    a - b,
                    (a - b) as f64 / canned.sessions.max(1) as f64,
                );
            }
        }
    }
    endpoint.stop().await;
    if canned.sessions == 0 {
        println!("no canned session succeeded: no ratio");
        return Ok(1);
    }
    println!(
        "ratio real/canned: throughput {:.3}, p50 latency {:.2}, p99 latency {:.2}",
        real.per_sec / canned.per_sec,
        real.p50.as_secs_f64() / canned.p50.as_secs_f64().max(1e-9),
        real.p99.as_secs_f64() / canned.p99.as_secs_f64().max(1e-9)
    );
    if let Some(r) = rss {
        println!("{r}");
    }
    Ok(0)
}

/// Where the canned replies are served from.
enum Endpoint {
    Task(tokio::task::JoinHandle<()>),
    Child(Box<CannedChild>),
}

impl Endpoint {
    fn pid(&self) -> Option<u32> {
        match self {
            Self::Task(_) => None,
            Self::Child(c) => Some(c.pid),
        }
    }

    async fn stop(self) {
        match self {
            Self::Task(t) => t.abort(),
            Self::Child(c) => c.stop().await,
        }
    }
}

/// `handover sim canned-endpoint` running as a child of this process.
struct CannedChild {
    child: tokio::process::Child,
    pid: u32,
    addr: std::net::SocketAddr,
    dir: PathBuf,
}

impl CannedChild {
    /// Writes the replies to a file and starts the endpoint on them; waits
    /// (up to 60 s) for the address it listens on.
    async fn start(bin: Option<&std::path::Path>, replies: &Replies) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile_dir()?;
        let file = dir.join("replies");
        canned::write_replies(&file, replies)?;
        let bin = match bin {
            Some(b) => b.to_owned(),
            None => std::env::current_exe()?,
        };
        let mut child = tokio::process::Command::new(bin)
            .args(["sim", "canned-endpoint", "--replies"])
            .arg(&file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the canned endpoint exited"))?;
        let out = child.stdout.take().expect("piped");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            tokio::io::BufReader::new(out).read_line(&mut line),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the canned endpoint did not start within 60 s"))??;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the canned endpoint said {line:?}"))?;
        Ok(Self {
            child,
            pid,
            addr,
            dir,
        })
    }

    /// Closes its standard input (it stops serving) and waits for it.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One canned round trip: the same request bytes and headers as the real one.
async fn canned_post(http: &reqwest::Client, url: &str, x: &Exchange) -> anyhow::Result<Vec<u8>> {
    let mut req = http
        .post(url)
        .header(header::CONTENT_TYPE, x.content_type)
        .body(x.body.clone());
    if let Some(h) = &x.hmac {
        req = req.header(handover_dm::auth::HMAC_HEADER, h);
    }
    let r = req.send().await?;
    anyhow::ensure!(r.status().is_success(), "HTTP {}", r.status());
    Ok(r.bytes().await?.to_vec())
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "handover-sim-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_the_run_queue_wait() {
        assert_eq!(
            schedstat_waiting_ns("9990423641 6533057474 17169\n"),
            Some(6_533_057_474)
        );
        assert_eq!(schedstat_waiting_ns("123\n"), None);
        assert_eq!(schedstat_waiting_ns("1 x 3"), None);
        // This process's threads are listed (and the sum is read whole).
        assert!(waiting_ms(std::process::id()).is_some());
    }

    #[test]
    fn cores_over_a_phase() {
        assert_eq!(
            cores((Some(1_000), Some(13_000)), (Some(0), Some(6_000)), 10.0),
            "1.20 cores busy, 0.60 more waiting for a core"
        );
        assert_eq!(
            cores((Some(0), Some(5_000)), (None, None), 10.0),
            "0.50 cores busy"
        );
        assert_eq!(
            cores((None, None), (None, None), 10.0),
            "cores not measured"
        );
    }
}

//! `handover sim bench`: K devices run full DM sessions back to back
//! against a server for a while; then, in the same run, the same round
//! trips (the recorded request and reply bytes of one session per device)
//! against a canned-reply endpoint on loopback that does no protocol work.
//! The ratio real/canned is what the DM protocol costs over bare HTTP.
//!
//! Without `--server` the built-in reference server
//! ([`super::refserver::RefServer`]) is started on loopback and queues a
//! Get of `./DevInfo` and a Replace of a leaf in every session. With
//! `--server URL`, `--state DIR` names a fleet that server has imported
//! (`DIR/devices.csv`); the server decides what each session carries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Args;
use handover_dm::session::CommandKind;
use handover_dm::ServerId;

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

/// Runs the benchmark and prints its numbers; exit code 1 when no session succeeded.
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
    let reference = match &a.server {
        Some(_) => None,
        None => Some(RefServer::start("127.0.0.1:0".parse()?, &[], bench_commands()).await?),
    };
    let url = a
        .server
        .clone()
        .or_else(|| reference.as_ref().map(RefServer::url))
        .expect("one of them");
    let mut cfg = SimConfig::new(a.devices, url.clone(), state);
    cfg.encoding = if a.wbxml {
        handover_dm::syncml::Encoding::Wbxml
    } else {
        handover_dm::syncml::Encoding::Xml
    };
    cfg.auth = a.auth.into();
    cfg.server_id = ServerId::parse_strict(a.server_id.clone())?;
    cfg.concurrency = a.devices.max(1);
    let sim = Sim::start(cfg).await?;
    if let Some(r) = &reference {
        r.set_accounts(&sim.records().await)?;
    }
    let duration = Duration::from_secs(a.duration.max(1));
    let rss_before = a.server_pid.and_then(vm_rss_kb);

    // Phase 1: full sessions against the server.
    let fleet = sim.fleet.clone();
    let server_id = fleet.cfg.server_id.clone();
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for dev in fleet.devices.clone() {
        let (fleet, server_id) = (fleet.clone(), server_id.clone());
        set.spawn(async move {
            let (mut lat, mut failed, mut transcript) = (Vec::new(), 0, None);
            while Instant::now() < deadline {
                let mut t = Transcript::new();
                let t0 = Instant::now();
                let ok = session::run_recorded(&fleet, &dev, &server_id, None, Some(&mut t)).await;
                if ok {
                    lat.push(t0.elapsed());
                    transcript.get_or_insert(t);
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
    println!("server {url}: {real}");
    if transcripts.is_empty() {
        println!("no session succeeded: no canned baseline");
        sim.shutdown().await;
        return Ok(1);
    }

    // Phase 2: the same round trips against canned replies.
    let replies: Vec<Vec<Vec<u8>>> = transcripts
        .iter()
        .map(|t| t.iter().map(|(_, r)| r.clone()).collect())
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let canned_addr = listener.local_addr()?;
    let encoding = transcripts[0][0].0.encoding;
    let app = Router::new()
        .route("/canned/{dev}/{msg}", post(canned))
        .with_state(Arc::new((replies, encoding.content_type())));
    let server_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = fleet.http.clone();
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..fleet.devices.len() {
        let t = Arc::new(transcripts[i % transcripts.len()].clone());
        let d = i % transcripts.len();
        let http = http.clone();
        set.spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut ok = true;
                for (m, (tx, _)) in t.iter().enumerate() {
                    let url = format!("http://{canned_addr}/canned/{d}/{m}");
                    ok &= session::post(&http, &url, tx).await.is_ok();
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
    server_task.abort();
    println!("canned http://{canned_addr}: {canned}");
    println!(
        "ratio real/canned: throughput {:.3}, p50 latency {:.2}, p99 latency {:.2}",
        real.per_sec / canned.per_sec,
        real.p50.as_secs_f64() / canned.p50.as_secs_f64().max(1e-9),
        real.p99.as_secs_f64() / canned.p99.as_secs_f64().max(1e-9)
    );
    if let (Some(pid), Some(b), Some(a)) = (a.server_pid, rss_before, rss_after) {
        println!("server pid {pid} VmRSS: before {b} kB, after {a} kB");
    }
    let stats = sim.shutdown().await;
    println!("{stats}");
    if let Some(r) = reference {
        r.stop();
    }
    Ok(0)
}

/// The recorded replies, per device and message, and their content type.
type Canned = Arc<(Vec<Vec<Vec<u8>>>, &'static str)>;

async fn canned(
    State(s): State<Canned>,
    Path((dev, msg)): Path<(usize, usize)>,
    _body: Bytes,
) -> Response {
    match s.0.get(dev).and_then(|t| t.get(msg)) {
        Some(r) => ([(header::CONTENT_TYPE, s.1)], r.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
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

//! `handover sim` and `handover sim bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use handover_dm::auth::AuthType;
use handover_dm::syncml::Encoding;
use handover_dm::ServerId;

use super::{Sim, SimConfig};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCommand>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// K devices run full sessions against a server for a while, then the
    /// same round trips against canned replies on loopback as the baseline.
    Bench(Box<super::bench::BenchArgs>),
    /// The bench's canned-reply endpoint in a process of its own (started
    /// by `sim bench`).
    #[command(hide = true)]
    CannedEndpoint(super::canned::CannedArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthArg {
    Md5,
    Hmac,
    Basic,
}

impl From<AuthArg> for AuthType {
    fn from(a: AuthArg) -> Self {
        match a {
            AuthArg::Md5 => AuthType::Md5,
            AuthArg::Hmac => AuthType::Hmac,
            AuthArg::Basic => AuthType::Basic,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Number of devices (ignored when the state directory holds a fleet).
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// The server's DM endpoint, e.g. http://127.0.0.1:8080/dm.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Where the fleet is kept (one JSON file per device, devices.csv).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// HTTP push listener (POST /push/{devid}, GET /status).
    #[arg(long, value_name = "ADDR")]
    pub push_addr: Option<SocketAddr>,
    /// Client-initiated sessions every SECS seconds (±10 % jitter).
    #[arg(long, value_name = "SECS")]
    pub poll: Option<u64>,
    /// Send WBXML instead of XML.
    #[arg(long)]
    pub wbxml: bool,
    /// Client authentication of new devices.
    #[arg(long, value_enum, default_value = "md5")]
    pub auth: AuthArg,
    /// The server's ServerID (DMAcc ServerID, SRVCRED name).
    #[arg(long, value_name = "ID", default_value = "handover.localhost")]
    pub server_id: String,
    /// One client-initiated session per device, then exit (0 if all succeeded).
    #[arg(long)]
    pub once: bool,
    /// Sessions in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// New devices get credentials derived from this factory key (64 hex
    /// digits), as the server's `[enrolment]` policy expects.
    #[arg(long, value_name = "HEX", value_parser = parse_enrol_key)]
    pub enrol_key: Option<crate::device::enrol::EnrolKey>,
    /// Client authentication of enrolling devices (overrides --auth).
    #[arg(long, value_enum, requires = "enrol_key")]
    pub enrol_auth: Option<EnrolAuthArg>,
}

fn parse_enrol_key(s: &str) -> Result<crate::device::enrol::EnrolKey, String> {
    crate::device::enrol::EnrolKey::from_hex(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EnrolAuthArg {
    Md5,
    Hmac,
}

impl FleetArgs {
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        let server = self
            .server
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--server URL is required"))?;
        let state = self
            .state
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--state DIR is required"))?;
        let mut cfg = SimConfig::new(self.devices, server, state);
        cfg.push_addr = self.push_addr;
        cfg.poll = self.poll.map(Duration::from_secs);
        cfg.encoding = if self.wbxml {
            Encoding::Wbxml
        } else {
            Encoding::Xml
        };
        cfg.auth = self.auth.into();
        cfg.server_id = ServerId::parse_strict(self.server_id.clone())
            .map_err(|e| anyhow::anyhow!("--server-id: {e}"))?;
        cfg.concurrency = self.concurrency.max(1);
        if let Some(k) = &self.enrol_key {
            cfg.enrol_key = Some(k.clone());
            cfg.auth = match self.enrol_auth {
                Some(EnrolAuthArg::Hmac) => AuthType::Hmac,
                Some(EnrolAuthArg::Md5) => AuthType::Md5,
                None => cfg.auth,
            };
        }
        Ok(cfg)
    }
}

/// Runs `handover sim`; returns the exit code.
pub async fn run(args: SimArgs) -> anyhow::Result<i32> {
    match args.command {
        Some(SimCommand::Bench(b)) => return super::bench::run(*b).await,
        Some(SimCommand::CannedEndpoint(c)) => return super::canned::serve(c).await,
        None => {}
    }
    let a = args.fleet;
    let sim = Sim::start(a.config()?).await?;
    let csv = sim.state_dir().join("devices.csv");
    eprintln!(
        "{} devices, state in {}, accounts in {}{}",
        sim.dev_ids().len(),
        sim.state_dir().display(),
        csv.display(),
        sim.push_addr()
            .map(|p| format!(", push listener http://{p}"))
            .unwrap_or_default()
    );
    let code = if a.once {
        let ok = sim.run_once().await;
        i32::from(!ok)
    } else {
        sim.run(crate::serve::shutdown_signal()).await;
        0
    };
    let stats = sim.shutdown().await;
    println!("{stats}");
    Ok(code)
}

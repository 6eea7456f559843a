//! The `handover` command line.

use crate::audit::{self, export, Event, NewEntry};
use crate::config::{self, FileConfig, ServeConfig};
use crate::device::vault::Vault;
use crate::device::{notify, session, Runtime};
use crate::portal::backend::check_user_name;
use crate::portal::password::{self, Password};
use crate::store::{api_tokens, devices, peers, users, Db};
use clap::{Args, Parser, Subcommand, ValueEnum};
use handover_app::api::Role;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "handover",
    version,
    about = "The DM Server and portal of a Management Authority, with Client Authority Delegation."
)]
pub struct Cli {
    /// Where the SQLite database and the server identity live.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; by default an SQLite file in the data directory.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// A TOML file with the same keys as the flags.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: portal, DM endpoint and peer endpoint.
    Serve(ServeArgs),
    /// Users and other administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Support-desk tools for DM messages and notifications.
    Dm {
        #[command(subcommand)]
        command: crate::dmtool::DmCommand,
    },
    /// Simulated DM clients against any DM server, and the load benchmark.
    Sim(crate::sim::cli::SimArgs),
    /// Two authorities on this machine (a mobile operator and an enterprise
    /// IT department, each other's peers) with a simulated fleet and users
    /// for every role, ready to click through.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where both authorities and the fleet keep their state; a second start
    /// with the same directory is the same demo.
    #[arg(long, value_name = "DIR", default_value = "data/demo")]
    pub dir: PathBuf,
    /// Devices in the fleet (at the first start; a saved fleet is reused).
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// The operator's portal listens on this port, the enterprise's on the next.
    #[arg(long, value_name = "PORT", default_value_t = 3000)]
    pub base_port: u16,
    /// The operator's DM endpoint port; the enterprise's is the next.
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub dm_port: u16,
    /// The operator's peer endpoint port; the enterprise's is the next.
    #[arg(long, value_name = "PORT", default_value_t = 8443)]
    pub peer_port: u16,
    /// The simulated devices' push listener.
    #[arg(long, value_name = "PORT", default_value_t = 9090)]
    pub push_port: u16,
    /// Every device calls in every SECS seconds (±10 %); 0 for never.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub poll: u64,
    /// The built site (CSS, WebAssembly); defaults to `$LEPTOS_SITE_ROOT` or `target/site`.
    #[arg(long, value_name = "DIR")]
    pub site_root: Option<PathBuf>,
    /// Give every demo user a new password and print them.
    #[arg(long)]
    pub reset_passwords: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, value_name = "ADDR")]
    pub portal_addr: Option<SocketAddr>,
    #[arg(long, value_name = "ADDR")]
    pub dm_addr: Option<SocketAddr>,
    #[arg(long, value_name = "ADDR")]
    pub peer_addr: Option<SocketAddr>,
    /// This authority's ServerID.
    #[arg(long, value_name = "ID")]
    pub server_id: Option<String>,
    /// The built site (CSS, WebAssembly); defaults to `$LEPTOS_SITE_ROOT` or `target/site`.
    #[arg(long, value_name = "DIR")]
    pub site_root: Option<PathBuf>,
    /// Mark the session cookie Secure (set when the portal is reached over HTTPS).
    #[arg(long)]
    pub secure_cookie: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Portal users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Devices: import accounts, notify.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// API tokens for the JSON API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Show this server's identity for peers: ServerID, peer URL and the
    /// fingerprint to give to their administrators (made at first use).
    Identity {
        /// This authority's ServerID (as for `serve`).
        #[arg(long, value_name = "ID")]
        server_id: Option<String>,
    },
    /// The peers this server trusts (PROTOCOL B.1).
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Trust a peer: its ServerID, peer URL, DM URL and the SHA-256 of its
    /// public key, received out of band.
    Add {
        #[arg(long, value_name = "ID")]
        server_id: String,
        /// `https://host[:port]`, without query, fragment or trailing `/`.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Where devices reach the peer's DM endpoint.
        #[arg(long, value_name = "URL")]
        dm_url: String,
        /// 64 hex digits, as `handover admin identity` prints them on the peer.
        #[arg(long, value_name = "HEX")]
        fingerprint: String,
    },
    /// Change a peer's URLs or pinned fingerprint (e.g. after it made a new key).
    Update {
        #[arg(long, value_name = "ID")]
        server_id: String,
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[arg(long, value_name = "URL")]
        dm_url: Option<String>,
        #[arg(long, value_name = "HEX")]
        fingerprint: Option<String>,
    },
    /// List the configured peers.
    List,
    /// Stop trusting a peer; its connections are refused from now on.
    Remove {
        #[arg(long, value_name = "ID")]
        server_id: String,
    },
    /// Connect to a peer with mutual TLS and say whether it works.
    Test {
        #[arg(long, value_name = "ID")]
        server_id: String,
        /// This authority's ServerID (as for `serve`).
        #[arg(long = "as", value_name = "ID")]
        own_server_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Import or update devices from a CSV file (header:
    /// devid,auth,client_name,client_secret,client_nonce,server_name,server_secret,server_nonce,push_address).
    Import { file: PathBuf },
    /// Send package 0 to a device so it starts a session now.
    Notify { devid: String },
    /// Queue a full read of a device's tree (values and ACLs).
    ReadTree { devid: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token acting with USER's roles; it is printed once.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "")]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        name: String,
        #[arg(long = "role", value_enum, required = true)]
        roles: Vec<RoleArg>,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a new password, read from standard input.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user: they can no longer sign in, and their sessions end.
    Disable { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Viewer,
    Operator,
    Approver,
    Auditor,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Approver => Role::Approver,
            RoleArg::Auditor => Role::Auditor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 1 and name the first broken entry if any.
    Verify,
    /// Write the log to standard output.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Only entries at or after this time (`YYYY-MM-DD` or RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// Resolves the data directory and database URL from flags, file and defaults.
pub struct Common {
    pub file: FileConfig,
    pub data_dir: PathBuf,
    pub database_url: String,
}

impl Cli {
    pub fn common(&self) -> anyhow::Result<Common> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
        let database_url = self
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
            .unwrap_or_else(|| Db::sqlite_url(&data_dir));
        Ok(Common {
            file,
            data_dir,
            database_url,
        })
    }
}

/// This authority's ServerID from the flag, the file or the default.
fn own_server_id(flag: Option<String>, file: &FileConfig) -> anyhow::Result<String> {
    let id = flag
        .or_else(|| file.server_id.clone())
        .unwrap_or_else(|| "handover.localhost".to_owned());
    handover_dm::types::ServerId::parse_strict(id.clone())
        .map_err(|e| anyhow::anyhow!("--server-id: {e}"))?;
    Ok(id)
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Some(ms) = handover_app::pages::audit::date_to_ms(s) {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| anyhow::anyhow!("--since takes YYYY-MM-DD or an RFC 3339 time"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    // The DM tools and the simulator need no data directory nor database.
    let cli = match cli.command {
        Command::Dm { command } => return Ok(crate::dmtool::run(&command)),
        Command::Sim(args) => return crate::sim::cli::run(args).await,
        Command::Demo(args) => return run_demo(args).await,
        command => Cli { command, ..cli },
    };
    let common = cli.common()?;
    match cli.command {
        Command::Serve(args) => {
            let f = &common.file;
            let parse = |s: &str| s.parse::<SocketAddr>().expect("default address");
            let cfg = ServeConfig {
                portal_addr: args
                    .portal_addr
                    .or(f.portal_addr)
                    .unwrap_or_else(|| parse(config::DEFAULT_PORTAL)),
                dm_addr: args
                    .dm_addr
                    .or(f.dm_addr)
                    .unwrap_or_else(|| parse(config::DEFAULT_DM)),
                peer_addr: args
                    .peer_addr
                    .or(f.peer_addr)
                    .unwrap_or_else(|| parse(config::DEFAULT_PEER)),
                server_id: own_server_id(args.server_id, f)?,
                site_root: args
                    .site_root
                    .or(f.site_root.clone())
                    .or_else(|| std::env::var_os("LEPTOS_SITE_ROOT").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("target/site")),
                secure_cookie: args.secure_cookie || f.secure_cookie.unwrap_or(false),
                session_idle_secs: f.session_idle_minutes.unwrap_or(30) * 60,
                device_secrets_key: f.device_secrets_key.clone(),
                dm: crate::device::Settings {
                    enrolment: f.enrolment.clone().unwrap_or_default().resolve()?,
                    ..Default::default()
                },
                delegation: f.delegation.clone().unwrap_or_default().resolve()?,
                data_dir: common.data_dir,
                database_url: common.database_url,
            };
            crate::serve::serve(cfg, crate::serve::shutdown_signal()).await?;
            Ok(0)
        }
        Command::Admin { command } => {
            let db = Db::connect(&common.database_url).await?;
            match command {
                AdminCommand::User { command } => user_command(&db, command).await,
                AdminCommand::Devices { command } => {
                    let vault =
                        Vault::open(common.file.device_secrets_key.as_ref(), &common.data_dir)?;
                    let rt = Runtime::new(db, vault, Default::default());
                    devices_command(&rt, command).await
                }
                AdminCommand::Token { command } => token_command(&db, command).await,
                AdminCommand::Identity { server_id } => {
                    let server_id = own_server_id(server_id, &common.file)?;
                    let identity =
                        crate::serve::load_identity(&db, &common.data_dir, &server_id).await?;
                    let peer_addr = common
                        .file
                        .peer_addr
                        .unwrap_or_else(|| config::DEFAULT_PEER.parse().expect("default address"));
                    println!("ServerID:    {}", identity.server_id());
                    let hint = if peer_addr.ip().is_unspecified() {
                        " (use this host's name instead of the unspecified address)"
                    } else {
                        ""
                    };
                    println!("Peer URL:    https://{peer_addr}{hint}");
                    println!("Fingerprint: {}", identity.fingerprint());
                    Ok(0)
                }
                AdminCommand::Peer { command } => peer_command(&db, &common, command).await,
            }
        }
        Command::Sim(_) | Command::Demo(_) => unreachable!("handled above"),
        Command::Audit { command } => {
            let db = Db::connect(&common.database_url).await?;
            match command {
                AuditCommand::Verify => {
                    let v = audit::verify(&db).await?;
                    println!("{}", v.message());
                    Ok(if v.broken.is_some() { 1 } else { 0 })
                }
                AuditCommand::Export { format, since } => {
                    let since = since.as_deref().map(parse_time).transpose()?;
                    let filter = audit::Filter {
                        since,
                        ..Default::default()
                    };
                    let format = match format {
                        ExportFormat::Csv => export::Format::Csv,
                        ExportFormat::Jsonl => export::Format::Jsonl,
                    };
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    export::export(&db, &filter, format, |chunk| {
                        Ok(out.write_all(chunk.as_bytes())?)
                    })
                    .await?;
                    out.flush()?;
                    Ok(0)
                }
            }
        }
        Command::Dm { .. } => unreachable!("run before the data directory is set up"),
    }
}

/// `handover demo`: starts everything, prints the portals (and the users at
/// the first start), runs until Ctrl-C or SIGTERM, then stops cleanly.
async fn run_demo(args: DemoArgs) -> anyhow::Result<i32> {
    let mut cfg = crate::demo::DemoConfig::on_ports(
        &args.dir,
        args.devices,
        args.base_port,
        args.dm_port,
        args.peer_port,
        args.push_port,
    )?;
    cfg.poll = (args.poll > 0).then(|| std::time::Duration::from_secs(args.poll));
    cfg.reset_passwords = args.reset_passwords;
    cfg.site_root = args
        .site_root
        .or_else(|| std::env::var_os("LEPTOS_SITE_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/site"));
    let demo = crate::demo::Demo::start(cfg).await?;
    // The one place passwords are shown: standard output, once.
    print!("{}", demo.summary(&args.dir));
    std::io::stdout().flush()?;
    crate::serve::shutdown_signal().await;
    eprintln!("stopping the demo…");
    let stats = demo.stop().await;
    eprintln!("stopped; fleet: {stats}");
    Ok(0)
}

fn os_user() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

async fn user_command(db: &Db, command: UserCommand) -> anyhow::Result<i32> {
    match command {
        UserCommand::Create { name, roles, .. } => {
            check_user_name(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let pw = Password::new(read_password_stdin()?)
                .map_err(|m| anyhow::anyhow!("password: {m}"))?;
            let mut roles: Vec<Role> = roles.into_iter().map(Role::from).collect();
            roles.sort();
            roles.dedup();
            let hash = password::hash(pw).await?;
            users::create(db, &name, &hash, &roles).await?;
            audit::append(
                db,
                NewEntry::new(Event::UserCreated, os_user(), &name)
                    .details(serde_json::json!({ "roles": users::roles_to_text(&roles) })),
            )
            .await?;
            println!("created {name} ({})", users::roles_to_text(&roles));
        }
        UserCommand::Passwd { name, .. } => {
            let pw = Password::new(read_password_stdin()?)
                .map_err(|m| anyhow::anyhow!("password: {m}"))?;
            let hash = password::hash(pw).await?;
            users::set_password(db, &name, &hash).await?;
            audit::append(
                db,
                NewEntry::new(Event::UserPasswordReset, os_user(), &name),
            )
            .await?;
            println!("password of {name} changed");
        }
        UserCommand::Disable { name } => {
            users::set_disabled(db, &name, true).await?;
            audit::append(db, NewEntry::new(Event::UserDisabled, os_user(), &name)).await?;
            println!("{name} disabled");
        }
    }
    Ok(0)
}

async fn devices_command(rt: &Runtime, command: DevicesCommand) -> anyhow::Result<i32> {
    match command {
        DevicesCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let lines = match devices::parse_csv(&text) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{}: {e}; nothing imported", file.display());
                    return Ok(1);
                }
            };
            let (added, updated) = devices::import(&rt.db, &rt.vault, &lines).await?;
            audit::append(
                &rt.db,
                NewEntry::new(
                    Event::DevicesImported,
                    os_user(),
                    file.display().to_string(),
                )
                .details(serde_json::json!({ "added": added, "updated": updated })),
            )
            .await?;
            println!("{added} devices added, {updated} updated");
        }
        DevicesCommand::Notify { devid } => {
            let o = notify::notify(rt, &devid, &os_user()).await?;
            println!(
                "package 0 for session {}: {} via {}{}",
                o.session_id,
                o.state,
                o.transport,
                if o.error.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", o.error)
                }
            );
            if o.state == "failed" {
                return Ok(1);
            }
        }
        DevicesCommand::ReadTree { devid } => {
            anyhow::ensure!(
                devices::get(&rt.db, &devid).await?.is_some(),
                "no device {devid}"
            );
            let ids = session::queue_tree_read(rt, &devid, &os_user()).await?;
            println!("queued jobs {ids:?}");
        }
    }
    Ok(0)
}

async fn peer_command(db: &Db, common: &Common, command: PeerCommand) -> anyhow::Result<i32> {
    use crate::peer::{DmUrl, Fingerprint, Peer, PeerUrl};
    match command {
        PeerCommand::Add {
            server_id,
            url,
            dm_url,
            fingerprint,
        } => {
            let peer = Peer {
                server_id: handover_dm::types::ServerId::parse_strict(server_id)
                    .map_err(|e| anyhow::anyhow!("--server-id: {e}"))?,
                url: PeerUrl::parse(&url).map_err(|e| anyhow::anyhow!("--url: {e}"))?,
                dm_url: DmUrl::parse(&dm_url).map_err(|e| anyhow::anyhow!("--dm-url: {e}"))?,
                fingerprint: Fingerprint::parse(&fingerprint)
                    .map_err(|e| anyhow::anyhow!("--fingerprint: {e}"))?,
                auto_accept: None,
                created_at: 0,
                updated_at: 0,
            };
            let peer = peers::add(db, &peer).await?;
            audit::append(
                db,
                NewEntry::new(Event::PeerAdded, os_user(), peer.server_id.as_str()).details(
                    serde_json::json!({
                        "url": peer.url.as_str(),
                        "dm_url": peer.dm_url.as_str(),
                        "fingerprint": peer.fingerprint.as_str(),
                    }),
                ),
            )
            .await?;
            println!("added peer {} ({})", peer.server_id, peer.fingerprint);
        }
        PeerCommand::Update {
            server_id,
            url,
            dm_url,
            fingerprint,
        } => {
            let Some(before) = peers::get(db, &server_id).await? else {
                eprintln!("no peer {server_id}");
                return Ok(1);
            };
            let mut peer = before.clone();
            if let Some(u) = url {
                peer.url = PeerUrl::parse(&u).map_err(|e| anyhow::anyhow!("--url: {e}"))?;
            }
            if let Some(u) = dm_url {
                peer.dm_url = DmUrl::parse(&u).map_err(|e| anyhow::anyhow!("--dm-url: {e}"))?;
            }
            if let Some(f) = fingerprint {
                peer.fingerprint =
                    Fingerprint::parse(&f).map_err(|e| anyhow::anyhow!("--fingerprint: {e}"))?;
            }
            let peer = peers::update(db, &peer).await?;
            audit::append(
                db,
                NewEntry::new(Event::PeerUpdated, os_user(), peer.server_id.as_str()).details(
                    serde_json::json!({
                        "url": [before.url.as_str(), peer.url.as_str()],
                        "dm_url": [before.dm_url.as_str(), peer.dm_url.as_str()],
                        "fingerprint": [before.fingerprint.as_str(), peer.fingerprint.as_str()],
                    }),
                ),
            )
            .await?;
            println!("updated peer {} ({})", peer.server_id, peer.fingerprint);
        }
        PeerCommand::List => {
            for p in peers::list(db).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    p.server_id,
                    p.url.as_str(),
                    p.dm_url.as_str(),
                    p.fingerprint
                );
            }
        }
        PeerCommand::Remove { server_id } => {
            if !peers::remove(db, &server_id).await? {
                eprintln!("no peer {server_id}");
                return Ok(1);
            }
            audit::append(db, NewEntry::new(Event::PeerRemoved, os_user(), &server_id)).await?;
            println!("removed peer {server_id}");
        }
        PeerCommand::Test {
            server_id,
            own_server_id: own,
        } => {
            let Some(peer) = peers::get(db, &server_id).await? else {
                eprintln!("no peer {server_id}");
                return Ok(1);
            };
            let own = own_server_id(own, &common.file)?;
            let identity = crate::serve::load_identity(db, &common.data_dir, &own).await?;
            let result = crate::peer::PeerClient::new(identity)
                .test_connection(&peer)
                .await;
            println!("{}", result.describe());
            return Ok(if result.is_ok() { 0 } else { 1 });
        }
    }
    Ok(0)
}

async fn token_command(db: &Db, command: TokenCommand) -> anyhow::Result<i32> {
    match command {
        TokenCommand::Create { user, label } => {
            let u = users::by_name(db, &user)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {user}"))?;
            let token = api_tokens::create(db, u.id, &label).await?;
            audit::append(
                db,
                NewEntry::new(Event::ApiTokenCreated, os_user(), &user)
                    .details(serde_json::json!({ "label": label })),
            )
            .await?;
            println!("{token}");
        }
    }
    Ok(0)
}

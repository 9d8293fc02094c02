//! `sitec agent`: the host agent every host runs (`sitec-agent.service`,
//! config `/etc/sitec/agent.toml` rendered by the compiler). It is the
//! host's end of the bus (`bus`: libzmq, CURVE on every socket, no broker;
//! `bus_topology` derives who binds and connects what), speaking with this
//! host's key (`bus.key_file`):
//!
//! - `heartbeat`: PUB at `bus.heartbeat`, one message a second with the
//!   state of every app unit on the host (`units`, from systemd), to the
//!   keys in `bus.heartbeat_readers` (the balancers) only;
//! - `control`: ROUTER at `bus.control`, answering the operator's key
//!   (`bus.operator`) and nobody else: `ping`, `status` (`status`: the
//!   host's load, memory, disks, apps, databases, its balancer's rotation),
//!   the fleet lock's lease (`lease`, kept in `state_dir`), drains
//!   (`drain`), `sitec run`'s sessions (`run`: each one a `sitec session`
//!   that systemd starts as the app's user, `session`);
//! - `follow` + `ship`: the files in `[[log]]`, followed like `tail -F` and
//!   shipped in acknowledged batches to every collector in
//!   `bus.log_collectors`, each of which must prove its key, resuming
//!   where each collector has them (`positions`, in `state_dir`);
//! - `collector`: on a `logs` host (`[collector]` in the file), ROUTER at
//!   its endpoint from the agents in `collector.senders`, each line
//!   appended to `DIR/HOST/TAG` where HOST is the name the sender's key
//!   was admitted under, once (`positions`), and answers `sitec logs` from
//!   those files (`logs`).
//!
//! It runs as its own user (`sitec-agent`, no capability) under the unit's
//! hardening (`ProtectSystem=strict`): it reads the logs it ships through its
//! groups, writes only the collector's folder (collected lines), and SIGTERM
//! or SIGINT closes every socket and exits 0 at once, so `systemctl stop`
//! never waits.

mod collector;
mod config;
mod control;
mod drain;
mod follow;
mod heartbeat;
pub mod lease;
pub mod logs;
mod positions;
mod resp;
mod run;
/// `sitec run`'s sessions one agent runs at once.
pub const RUN_SESSIONS: usize = run::SESSIONS;
mod services;
pub mod session;
mod ship;
mod status;
mod units;

pub use config::Config;
pub use heartbeat::unix_time;

/// What the agent's parts share.
pub struct Ctx {
    pub config: Config,
    pub started: Instant,
    /// The app states as the last heartbeat found them.
    pub apps: watch::Receiver<Vec<units::AppState>>,
    pub drains: drain::Drains,
    /// Wakes the heartbeat for a beat now (a drain began or ended).
    pub beat_now: tokio::sync::Notify,
    /// The fleet lock's lease on this host, in `state_dir`.
    pub leases: lease::Store,
    /// `sitec run`'s sessions open on this host.
    pub sessions: run::Sessions,
}

#[cfg(test)]
impl Ctx {
    /// An agent for run1 running blog, its state in a scratch folder
    /// (kept while the folder lives).
    pub fn for_tests() -> (Ctx, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = crate::bus::keys::derive("k").public.z85();
        let text = format!(
            "host = \"run1\"\nstate_dir = \"{}\"\n[bus]\ncontrol = \"tcp://127.0.0.1:1\"\n\
             heartbeat = \"tcp://127.0.0.1:2\"\nkey_file = \"/k\"\noperator = \"{key}\"\n\
             [[app]]\nname = \"blog\"\nservice = \"sitec-app-blog.service\"\n\
             run_socket = \"/run/sitec-run/blog.sock\"\n",
            dir.path().display()
        );
        let config = Config::parse(&text).expect("config");
        let leases = lease::Store::open(&config.state_dir).expect("store");
        let (_, apps) = watch::channel(Vec::new());
        let ctx = Ctx {
            config,
            started: Instant::now(),
            apps,
            drains: drain::Drains::default(),
            beat_now: tokio::sync::Notify::new(),
            leases,
            sessions: run::Sessions::default(),
        };
        (ctx, dir)
    }
}

/// A heartbeat as the agent writes it, for the balancer's tests of reading
/// one: host `host`, one app `blog`.
#[cfg(test)]
pub fn heartbeat_for_tests(host: &str, healthy: bool) -> String {
    let blog = units::AppState {
        name: "blog".into(),
        healthy,
        serving: healthy,
        units: Vec::new(),
        error: None,
        drain: None,
    };
    heartbeat::beat(host, 0, 0.0, &[blog], None)
}

use crate::bus::{self, Bus, KeyPair, Kind, Peer};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Run the host agent: heartbeats, control requests, log shipping and collecting.
#[derive(clap::Args, Debug)]
#[command(after_help = "sitec agent --config /etc/sitec/agent.toml (SIGTERM stops it)")]
pub struct Args {
    /// The agent's TOML config, as `sitec render` writes it for the host.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the config and the key file it names, and exit (0 if the
    /// agent would accept them).
    #[arg(long)]
    pub check: bool,
}

/// Runs the agent until SIGTERM or SIGINT; the exit code says how it ended.
pub fn run(args: Args) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sitec agent: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        // The key too: a file the agent would refuse at start is refused here.
        if let Err(e) = KeyPair::load(&config.key_file) {
            eprintln!("sitec agent: {e}");
            return ExitCode::from(2);
        }
        println!("sitec agent: {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitec agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sitec agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the sockets, starts every part, and returns at the first signal
/// (the sockets close as the process exits).
async fn serve(config: Config) -> Result<(), String> {
    let stop = stop_signal()?;
    let keys = KeyPair::load(&config.key_file)?;
    let bus = Bus::new(keys)?;
    let mut pumps = Vec::new();
    let beats = bus.bind(
        Kind::Heartbeats,
        &config.heartbeat,
        &config.heartbeat_readers,
    )?;
    tracing::info!("heartbeats on {}", config.heartbeat);
    let (beats, running) = bus::pump::spawn("heartbeats", vec![beats], None, 4)?;
    pumps.push(running);
    let operator = Peer {
        name: bus::control::OPERATOR.into(),
        key: config.operator,
    };
    let control = bus.bind(Kind::Control, &config.control, &[operator])?;
    tracing::info!("control on {}", config.control);
    let (requests, incoming) = mpsc::channel(control::QUEUE);
    let (answers, running) = bus::pump::spawn("control", vec![control], Some(requests), 256)?;
    pumps.push(running);
    let mut parts = tokio::task::JoinSet::new();
    if let Some(c) = &config.collector {
        let router = bus.bind(Kind::Logs, &c.endpoint, &c.senders)?;
        tracing::info!("log collector on {}", c.endpoint);
        let (batches, incoming) = mpsc::channel(collector::QUEUE);
        let (acks, running) = bus::pump::spawn("log collector", vec![router], Some(batches), 1024)?;
        pumps.push(running);
        collector::spawn(incoming, acks, c.dir.clone(), c.limits)?;
    }
    start_shipping(&bus, &config)?;
    let (states, apps) = watch::channel(Vec::new());
    let ctx = Arc::new(Ctx {
        leases: lease::Store::open(&config.state_dir)?,
        config,
        started: Instant::now(),
        apps,
        drains: drain::Drains::default(),
        beat_now: tokio::sync::Notify::new(),
        sessions: run::Sessions::default(),
    });
    parts.spawn(heartbeat::run(beats, ctx.clone(), states));
    parts.spawn(control::run(incoming, answers, ctx.clone()));
    tracing::info!("agent for {} running", ctx.config.host);
    crate::sd_notify::ready();
    stop.await;
    tracing::info!("stopping");
    crate::sd_notify::stopping();
    parts.shutdown().await;
    drop(pumps);
    Ok(())
}

/// Ships the `[[log]]` files to every collector, each through a shipper
/// of its own (`ship`: its own cursors, acknowledged positions and DEALER).
fn start_shipping(bus: &Bus, config: &Config) -> Result<(), String> {
    if config.log_collectors.is_empty() || config.logs.is_empty() {
        return Ok(());
    }
    let files: Vec<(PathBuf, String, String)> = (config.logs.iter())
        .map(|l| (l.path.clone(), l.tag.clone(), l.owner.clone()))
        .collect();
    for c in &config.log_collectors {
        let dealer = bus.connect(Kind::Ship, &c.endpoint, &c.key)?;
        ship::Shipper::new(dealer, &c.endpoint, &files, &config.state_dir)?.spawn()?;
    }
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
    let mut term = listen(SignalKind::terminate())?;
    let mut int = listen(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

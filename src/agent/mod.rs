//! `sitec agent`: the host agent every host runs (`sitec-agent.service`,
//! config `/etc/sitec/agent.toml` rendered by the compiler). It is the
//! host's end of the bus (ZeroMQ through zmq.rs, pure Rust on tokio, no
//! broker; `bus_topology` derives who binds and connects what):
//!
//! - `heartbeat`: PUB at `bus.heartbeat`, one message a second with the
//!   state of every app unit on the host (`units`, from systemd);
//! - `control`: ROUTER at `bus.control`, answering `ping` and `status`;
//! - `follow` + `ship`: the files in `[[log]]`, followed like `tail -F` and
//!   pushed line by line to every collector in `bus.log_collectors`;
//! - `collector`: on a `logs` host (`[collector]` in the file), PULL at
//!   its endpoint, each line appended to `DIR/HOST/TAG`.
//!
//! **The bus is not authenticated yet.** DESIGN.md wants control messages
//! signed with the fleet's key, but zmq.rs has no CURVE: `bus.key_file` is
//! read by nobody, and the agent runs whether it exists or not. Until then
//! the bus relies on its endpoints being the fleet's private addresses;
//! the control ops are read-only (`ping`, `status`) for that reason.
//!
//! It runs under the unit's hardening (`ProtectSystem=full`): it writes
//! only below `/var/log` (collected lines), and SIGTERM or SIGINT closes
//! every socket and exits 0 at once, so `systemctl stop` never waits.

mod collector;
mod config;
mod control;
mod follow;
mod heartbeat;
mod ship;
mod socket;
mod units;

pub use config::Config;
pub(crate) use socket::{connect_when_up, is_tcp_endpoint};

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
    };
    heartbeat::beat(host, 0, 0.0, &[blog])
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use zeromq::{PubSocket, PullSocket, RouterSocket, Socket, SocketRecv, ZmqMessage};

/// Run the host agent: heartbeats, control requests, log shipping and collecting.
#[derive(clap::Args, Debug)]
#[command(after_help = "sitec agent --config /etc/sitec/agent.toml (SIGTERM stops it)")]
pub struct Args {
    /// The agent's TOML config, as `sitec render` writes it for the host.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the config and exit (0 if the agent would accept it).
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
/// (dropping, so closing, every socket).
async fn serve(config: Config) -> Result<(), String> {
    let stop = stop_signal()?;
    note_key_file(&config);
    let mut pubs = PubSocket::new();
    bind(&mut pubs, &config.heartbeat, "heartbeats").await?;
    let mut router = RouterSocket::new();
    bind(&mut router, &config.control, "control").await?;
    let mut parts = tokio::task::JoinSet::new();
    if let Some(c) = &config.collector {
        let mut pull = PullSocket::new();
        bind(&mut pull, &c.endpoint, "log collector").await?;
        parts.spawn(collector::run(pull, c.dir.clone()));
    }
    start_shipping(&config, &mut parts);
    let (states, apps) = watch::channel(Vec::new());
    parts.spawn(heartbeat::run(
        pubs,
        config.host.clone(),
        config.apps.clone(),
        states,
    ));
    let facts = control::Facts {
        host: config.host.clone(),
        started: Instant::now(),
        apps,
    };
    parts.spawn(control::run(router, facts));
    tracing::info!("agent for {} running", config.host);
    crate::sd_notify::ready();
    stop.await;
    tracing::info!("stopping");
    crate::sd_notify::stopping();
    parts.shutdown().await;
    Ok(())
}

async fn bind(socket: &mut impl Socket, endpoint: &str, what: &str) -> Result<(), String> {
    let bound = socket
        .bind(endpoint)
        .await
        .map_err(|e| format!("cannot bind the {what} socket at {endpoint}: {e}"))?;
    tracing::info!("{what} on {bound}");
    Ok(())
}

/// The next message on `socket`; an error is logged and waited out, so a
/// broken peer never makes a busy loop.
async fn next_message(socket: &mut impl SocketRecv, what: &str) -> ZmqMessage {
    loop {
        match socket.recv().await {
            Ok(m) => return m,
            Err(e) => {
                tracing::warn!("{what}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Follows the `[[log]]` files and ships their lines to every collector.
fn start_shipping(config: &Config, parts: &mut tokio::task::JoinSet<()>) {
    if config.log_collectors.is_empty() || config.logs.is_empty() {
        return;
    }
    let (lines, _) = broadcast::channel::<Arc<str>>(ship::QUEUE);
    for endpoint in &config.log_collectors {
        parts.spawn(ship::run(endpoint.clone(), lines.subscribe()));
    }
    let host = config.host.clone();
    let files = config
        .logs
        .iter()
        .map(|l| (l.path.clone(), l.tag.clone()))
        .collect();
    follow::spawn(files, move |tag, line| {
        // Err: no collector task left (stopping); nothing to do.
        let _ = lines.send(ship::message(&host, tag, &line, heartbeat::unix_time()));
    });
}

/// Says once, at start, that the bus is not authenticated.
fn note_key_file(config: &Config) {
    let Some(key) = &config.key_file else {
        return;
    };
    let found = if key.exists() { "present" } else { "absent" };
    tracing::warn!(
        "bus authentication is not implemented (zmq.rs has no CURVE): {} ({found}) is not used; keep the bus on private addresses",
        key.display()
    );
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

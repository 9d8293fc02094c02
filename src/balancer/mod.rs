//! `sitec balancer`: the fleet's HTTP/1.1 load balancer.
//!
//! A request's path through the modules: `server` accepts a connection
//! (and terminates TLS, `tls`; `cert_dates` reads when its certificates
//! expire); `conn` reads each request head, found by
//! `scanner` and validated by `request` (strict: everything a lenient
//! backend could read differently is refused with 400 before a byte is
//! forwarded); `router` picks the app by Host; `proxy` reads the start of
//! the body (`chunked` re-frames it), picks a backend (`backend`: health,
//! pool), sends the head `forward` rewrote and retries what is safe to
//! retry; `relay` sends the response back (`response` parsed it). `state`
//! holds the config `config` validated and swaps it on SIGHUP; `health`
//! probes backends and `bus` follows the runner agents' heartbeats
//! (`silence` probes a runner whose heartbeats stop, at once);
//! `metrics`, `admin` and `access_log` make it visible.
//!
//! The HTTP/1.1 layer is hand-written on tokio rather than hyper: hyper
//! parses heads with httparse, which accepts bare LF line endings and other
//! leniencies, and a validator in front of it would need to track body
//! framing anyway to find the next pipelined head — a parser of its own.
//! Owning the layer also lets the balancer re-frame every body itself (a
//! backend never sees the client's framing bytes), keep no buffer for an
//! idle connection, and write each head with its first body bytes in one
//! system call. This module is glue: it never handles a request itself.

mod access_log;
mod admin;
mod backend;
mod buf;
mod bus;
mod cert_dates;
mod chunked;
mod config;
mod conn;
mod fields;
mod forward;
mod head;
mod health;
mod io;
mod metrics;
mod pages;
mod proxy;
mod refusal;
mod relay;
mod request;
mod response;
mod router;
mod scanner;
mod server;
mod silence;
mod state;
mod tls;

// The parsing path, public for the property tests in tests/balancer/.
pub use chunked::{ChunkedDecoder, Emit};
pub use config::Config;
pub use forward::{request_head, Origin, OutFraming};
pub use head::Framing;
pub use refusal::Refusal;
pub use request::RequestHead;
pub use scanner::{HeadLimits, HeadScanner, HeadSpan};
// What makes PEM text a usable certificate and key, and when a certificate
// is valid, for `local_files` too.
pub use cert_dates::{date, standing, validity, Standing};
pub use tls::{certified_key, PairProblem, Unfit};

use std::path::PathBuf;
use std::process::ExitCode;

/// Run the HTTP/1.1 load balancer, from a config file or ad hoc.
#[derive(clap::Args, Debug)]
#[command(after_help = "Ad hoc: sitec balancer --listen 127.0.0.1:8080 \
    --route blog.example.com=127.0.0.1:9001,127.0.0.1:9002 --route '*'=127.0.0.1:9003\n\
    With a file: sitec balancer --config /etc/sitec/balancer.toml (SIGHUP reloads it, SIGTERM drains)")]
pub struct Args {
    /// The TOML config file (see README, "sitec balancer").
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "routes"])]
    pub config: Option<PathBuf>,
    /// Ad hoc: the address to listen on for plain HTTP.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Ad hoc: a route, DOMAIN=HOST:PORT[,HOST:PORT...]; DOMAIN may be
    /// `*.example.com` or `*` (every host no other route claims).
    #[arg(long = "route", value_name = "DOMAIN=BACKENDS")]
    pub routes: Vec<String>,
    /// Ad hoc: the admin listener (GET /metrics).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "config")]
    pub admin: Option<String>,
    /// Ad hoc: the access log file.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub access_log: Option<PathBuf>,
    /// Worker threads (default: the config's server.workers, else one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Validate the config and exit (0 if it would be accepted).
    #[arg(long, requires = "config")]
    pub check: bool,
}

/// Runs the balancer until SIGTERM; the exit code says how it ended.
pub fn run(args: Args) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let valid = match (&args.config, &args.listen) {
        (Some(path), _) => Config::load(path),
        (None, Some(listen)) => Config::ad_hoc(
            listen,
            &args.routes,
            args.admin.as_deref(),
            args.access_log.clone(),
        ),
        (None, None) => Err(
            "give --config FILE, or --listen HOST:PORT with one or more --route DOMAIN=HOST:PORT"
                .into(),
        ),
    };
    let valid = match valid {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sitec balancer: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        // The certificates are read as a start reads them: a pair the
        // balancer would refuse then is refused now.
        if !valid.config.tls.certs.is_empty() {
            if let Err(e) = tls::acceptor(&valid.config.tls.certs) {
                eprintln!("sitec balancer: {e}");
                return ExitCode::from(2);
            }
        }
        println!(
            "sitec balancer: {} is valid",
            args.config.unwrap_or_default().display()
        );
        return ExitCode::SUCCESS;
    }
    raise_open_files_limit();
    let workers = args
        .workers
        .or(Some(valid.config.server.workers).filter(|w| *w > 0))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitec balancer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shared = state::Shared::new(valid, args.config.clone())?;
        server::run(shared).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sitec balancer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one, as Go programs do
/// on start: a proxied connection takes two descriptors, and the usual
/// soft limit of 1024 (a shell, `sitec balancer --listen` tried by hand)
/// would refuse clients past about 500 ("accept failed: Too many open
/// files") while the hard limit allows far more. Nothing here uses
/// `select`, the reason the soft limit stays low by default. The systemd
/// unit sets both (`LimitNOFILE`).
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(
                "cannot raise the open files limit to {:?}: {e}",
                limit.maximum
            );
        }
    }
}

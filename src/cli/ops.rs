//! `sitec status`, `sitec restart`, `sitec run`, `sitec logs` and `sitec unlock`: read the spec's
//! fleet and keys, then hand over to `ops`. Glue only.

use crate::ops::{self, lock::Lock, Fleet};
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sitec status examples/quickstart.site\n  sitec status examples/quickstart.site --json | jq '.problems'\n\n\
Exit status: 0 when every host answered and nothing is wrong, 1 when a host is down or\n\
something is wrong (the `problem:` lines say what), 2 when the fleet could not be asked;\n\
with --watch, Ctrl-C ends it with the last round's status."
)]
pub struct StatusArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Print the status as one JSON document (its fields are in the README)
    #[arg(long)]
    pub json: bool,
    /// Ask again every second and redraw (on a terminal; otherwise one round after
    /// another), until Ctrl-C, which exits with the last round's status
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sitec restart examples/quickstart.site blog\n  sitec restart examples/epio.site shop --host run2"
)]
pub struct RestartArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The app
    #[arg(value_name = "APP")]
    pub app: String,
    /// Only this runner
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sitec run examples/quickstart.site blog -- python manage.py shell\n  \
sitec run examples/quickstart.site blog -- python manage.py shell -c 'print(6*7)'\n  \
sitec run examples/quickstart.site blog --host run2 --lock -- python manage.py migrate\n\n\
The command runs on the app's leader (its first runner) unless --host names another, as the\n\
app's user, in its live release with its virtualenv first on PATH and its environment\n\
(DJANGO_SETTINGS_MODULE, DATABASE_URL...), sandboxed as its server is. On a terminal it gets\n\
one (Ctrl-C and the window's size reach it); otherwise stdout and stderr stay apart.\n\n\
Exit status: the command's (128 + N when signal N ended it), 255 when it could not be run."
)]
pub struct RunArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The app
    #[arg(value_name = "APP")]
    pub app: String,
    /// A runner of the app other than its leader
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Hold the fleet lock while the command runs (no apply or restart meanwhile)
    #[arg(long)]
    pub lock: bool,
    /// No terminal, even on one: stdout and stderr apart, stdin's end passed on
    #[arg(long, short = 'T')]
    pub no_tty: bool,
    /// The command and its arguments (after `--`)
    #[arg(value_name = "COMMAND", required = true, last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sitec logs examples/quickstart.site blog --since 10m\n  \
sitec logs examples/quickstart.site blog -f --grep ' 5[0-9][0-9] '\n  \
sitec logs examples/epio.site run1 lb1 --json | jq -r .line\n\n\
Each line is printed as TIME HOST TAG LINE (TIME in UTC, when the host's agent read it; TAG the\n\
file it came from, APP/gunicorn-access.log, APP/nginx-error.log, balancer/access.log...), in\n\
time order across hosts, from the first of the fleet's collectors (hosts with the `logs` role)\n\
that answers. --json prints {\"time\", \"host\", \"tag\", \"line\"} one object a line."
)]
pub struct LogsArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Only these apps' and hosts' lines (an app's are its runners' gunicorn and nginx logs)
    #[arg(value_name = "APP|HOST")]
    pub names: Vec<String>,
    /// Keep printing new lines as they arrive, until interrupted
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines from this long ago on: 30s, 10m, 2h, 1d, 1h30m
    #[arg(long, value_name = "SPAN", value_parser = ops::logs::parse_since)]
    pub since: Option<Duration>,
    /// Only lines this regular expression matches (Rust regex syntax)
    #[arg(long, value_name = "RE")]
    pub grep: Option<String>,
    /// At most this many lines, the newest (at most 5000)
    #[arg(long, short = 'n', value_name = "N", default_value_t = 1000)]
    pub lines: usize,
    /// One JSON object a line: time, host, tag, line
    #[arg(long)]
    pub json: bool,
}

pub fn logs(args: &LogsArgs) -> ExitCode {
    let result = load(&args.spec).and_then(|fleet| {
        let agents = fleet.agents()?;
        let query = ops::logs::Query {
            names: &args.names,
            since: args.since,
            grep: args.grep.as_deref(),
            lines: args.lines,
            follow: args.follow,
            json: args.json,
        };
        ops::logs::show(&fleet, &agents, &query)
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            crate::errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  sitec unlock examples/quickstart.site")]
pub struct UnlockArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
}

/// The spec's fleet and keys; its errors printed (warnings are `check`'s).
pub fn load(spec: &Path) -> Result<Fleet, String> {
    let mut sources = crate::source::SourceMap::new();
    let secrets =
        crate::secrets::Secrets::load_or_create(&crate::secrets::Secrets::path_for(spec), &[])?;
    let name = spec.display().to_string();
    let (fleet, diagnostics) = crate::compile::with_fleet(&mut sources, spec, |model, _| {
        Fleet::new(&name, model, &secrets)
    });
    let errors: Vec<_> = diagnostics
        .into_iter()
        .filter(crate::diagnostic::Diagnostic::is_error)
        .collect();
    super::print_diagnostics(&sources, &errors);
    match fleet {
        Some(fleet) => fleet,
        None => Err(format!(
            "`{name}` has {} errors; `sitec check {name}` shows them",
            errors.len()
        )),
    }
}

pub fn status(args: &StatusArgs) -> ExitCode {
    let (fleet, agents) = match load(&args.spec).and_then(|f| Ok((f.agents()?, f))) {
        Ok((agents, fleet)) => (fleet, agents),
        Err(e) => {
            crate::errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.watch {
        return watch(args, &fleet, &agents);
    }
    let report = ops::status::gather(&fleet, &agents);
    crate::out!("{}", status_text(args, &report));
    status_code(&report)
}

/// Ctrl-C pressed during `status --watch`.
static WATCH_INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `status --watch`: a round every second, each headed by when it was
/// asked; on a terminal the screen is cleared and the table redrawn, else
/// the rounds follow one another (a log of them). Ctrl-C ends it between
/// two rounds, with the last round's exit status; a reader that goes ends
/// it with 0. Nothing about the terminal is changed, so nothing needs
/// restoring.
fn watch(args: &StatusArgs, fleet: &Fleet, agents: &ops::Agents) -> ExitCode {
    use std::sync::atomic::Ordering;
    ops::catch_interrupts(&WATCH_INTERRUPTED);
    let terminal = std::io::stdout().is_terminal();
    loop {
        let started = Instant::now();
        let report = ops::status::gather(fleet, agents);
        let asked = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        // A document alone when it is JSON (a stream of them, for `jq`).
        let header = if args.json {
            String::new()
        } else {
            format!(
                "Every 1 s until Ctrl-C: asked at {} UTC, answered in {:.2} s\n",
                crate::agent::lease::clock(asked - started.elapsed().as_secs_f64()),
                started.elapsed().as_secs_f64()
            )
        };
        // Home and clear on a terminal, then the new table.
        let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
        crate::out!("{clear}{header}{}\n", status_text(args, &report));
        if crate::stdio::stdout_gone() {
            // Nobody reads the watch any more (`--watch | head`).
            return ExitCode::SUCCESS;
        }
        let next = started + Duration::from_secs(1);
        while Instant::now() < next {
            if WATCH_INTERRUPTED.load(Ordering::Relaxed) {
                return status_code(&report);
            }
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
        if WATCH_INTERRUPTED.load(Ordering::Relaxed) {
            return status_code(&report);
        }
    }
}

/// One round of `status`: the table, or the JSON document.
fn status_text(args: &StatusArgs, report: &ops::status::Report) -> String {
    if args.json {
        serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
    } else {
        ops::status::render(report)
    }
}

/// 0 when every host answered and nothing is wrong, else 1.
fn status_code(report: &ops::status::Report) -> ExitCode {
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn restart(args: &RestartArgs) -> ExitCode {
    let result = load(&args.spec).and_then(|fleet| {
        fleet.app(&args.app)?;
        let agents = fleet.agents()?;
        let lock = Lock::take(&fleet, &agents, &format!("restart {}", args.app))
            .map_err(|e| e.to_string())?;
        if let Some(whose) = &lock.taken_over {
            crate::errln!("note: took over the fleet lock of {whose}: that process is gone");
        }
        let started = Instant::now();
        let done = ops::restart::rolling(
            &fleet,
            &agents,
            &lock,
            &args.app,
            args.host.as_deref(),
            &mut |line| {
                crate::outln!("{line}");
            },
        )?;
        Ok(format!(
            "Restarted {} on {} runner{} in {:.1} s, each drained first.\n",
            args.app,
            done.len(),
            if done.len() == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        ))
    });
    printed(result)
}

pub fn run(args: &RunArgs) -> ExitCode {
    let result = load(&args.spec).and_then(|fleet| {
        ops::run::runner(&fleet, &args.app, args.host.as_deref())?;
        let agents = fleet.agents()?;
        let lock = if args.lock {
            let what = format!("run {} -- {}", args.app, args.command.join(" "));
            let lock = Lock::take(&fleet, &agents, &what).map_err(|e| e.to_string())?;
            if let Some(whose) = &lock.taken_over {
                crate::errln!("note: took over the fleet lock of {whose}: that process is gone");
            }
            Some(lock)
        } else {
            None
        };
        let tty = !args.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let code = ops::run::run(
            &fleet,
            &agents,
            &ops::run::Invocation {
                app: &args.app,
                host: args.host.as_deref(),
                argv: &args.command,
                tty,
            },
        );
        drop(lock);
        code
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            crate::errln!("error: {e}");
            ExitCode::from(255)
        }
    }
}

pub fn unlock(args: &UnlockArgs) -> ExitCode {
    let result = load(&args.spec).and_then(|fleet| {
        let agents = fleet.agents()?;
        Ok(ops::lock::unlock_report(&ops::lock::unlock(
            &fleet, &agents,
        )))
    });
    printed(result)
}

/// A command's report printed, or its error: the exit code says which.
fn printed(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            crate::out!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

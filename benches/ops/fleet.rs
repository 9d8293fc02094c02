//! Operating a local fleet, timed (driven by `benches/ops/run.sh`, which
//! boots and applies the fleet): `cargo bench --bench ops_fleet -- --bench
//! SPEC`. Under `cargo test` (no `--bench`) it does nothing.
//!
//! - `sitec status SPEC --json`, the whole command as an operator runs it
//!   (process start, the spec compiled, every agent asked), `ROUNDS` times,
//!   then as many with the app's last runner cut off (its link down inside
//!   it, as `Cut` below), reported down, before its link is set up again;
//! - a runner's death under load: clients loop on `GET /` through every
//!   balancer (a new connection each), the runner dies, and each
//!   balancer's rotation is read through its agent (`rotation`, as `sitec
//!   restart` reads it) until that runner is out: the time from the death
//!   to the last balancer taking it out, and the GETs that failed
//!   meanwhile. Two deaths, `DEATHS` rounds each, each round the next
//!   runner: `Kill` (SIGKILL to its container's init: every process dies,
//!   and its kernel tears its sockets down) and `Cut` (its link set down
//!   inside it: nothing it sends arrives, nothing answers, as when it loses
//!   power). A cut runner's link is set up again after its round; the
//!   killed ones (a different one each round) are booted again and applied
//!   after the last (`sitec fleet up SPEC $FLEET_ARGS`, `sitec apply`).

use load::Load;
use serde_json::{json, Value};
use sitec::ops::Agents;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SITEC: &str = env!("CARGO_BIN_EXE_sitec");

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let spec = (args.iter().skip(1))
        .find(|a| !a.starts_with("--"))
        .ok_or("usage: ops_fleet --bench SPEC")?;
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let app = std::env::var("APP").unwrap_or_else(|_| "blog".into());
    let domain = std::env::var("DOMAIN").unwrap_or_else(|_| "blog.test".into());
    if std::env::var("ONLY").map_or(true, |o| o == "status") {
        status(spec, number("ROUNDS", 20))?;
        let runners = sitec::cli::ops::load(Path::new(spec))?
            .app(&app)?
            .runners
            .clone();
        let down = runners.last().ok_or("the app has no runner")?;
        status_with_one_down(spec, down, number("ROUNDS", 20))?;
    }
    if std::env::var("ONLY").map_or(true, |o| o == "death") {
        let rounds = number("DEATHS", 3);
        for death in [Death::Kill, Death::Cut] {
            deaths(spec, &app, &domain, death, rounds)?;
        }
    }
    Ok(())
}

fn status(spec: &str, rounds: usize) -> Result<()> {
    let mut took = timed_status(spec, rounds, true)?;
    let hosts = Command::new(SITEC)
        .args(["status", spec, "--json"])
        .output()?;
    let doc: Value = serde_json::from_slice(&hosts.stdout)?;
    let n = doc["hosts"].as_array().map_or(0, Vec::len);
    println!(
        "sitec status --json, {n} hosts, {rounds} runs: {}",
        summary(&mut took, "ms")
    );
    Ok(())
}

/// `sitec status SPEC --json` `rounds` times after a warm-up: each run's
/// milliseconds. Each must exit 0 (`clean`) or 1 (a host down).
fn timed_status(spec: &str, rounds: usize, clean: bool) -> Result<Vec<f64>> {
    let mut took = Vec::new();
    for round in 0..=rounds {
        let started = Instant::now();
        let out = Command::new(SITEC)
            .args(["status", spec, "--json"])
            .output()?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if out.status.code() != Some(if clean { 0 } else { 1 }) {
            return Err(format!(
                "sitec status exited {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        // The first is a warm-up (the binary and the spec from disk).
        if round > 0 {
            took.push(ms);
        }
    }
    Ok(took)
}

/// `sitec status` with `host` cut off (its link down, as `Death::Cut`):
/// once a status reports it down, `rounds` runs, each reporting it down;
/// then its link is set up again and the fleet waited for until status
/// finds nothing wrong.
fn status_with_one_down(spec: &str, host: &str, rounds: usize) -> Result<()> {
    let pid = init_of(spec, host)?;
    let reports_down = || -> Result<bool> {
        let out = Command::new(SITEC)
            .args(["status", spec, "--json"])
            .output()?;
        let doc: Value = serde_json::from_slice(&out.stdout)?;
        Ok((doc["hosts"].as_array().into_iter().flatten())
            .any(|h| h["name"] == host && h["up"] == false))
    };
    Death::Cut.strike(pid)?;
    let measured = (|| -> Result<Vec<f64>> {
        if !eventually(Duration::from_secs(30), || reports_down().unwrap_or(false)) {
            return Err(format!("{host} was never reported down").into());
        }
        timed_status(spec, rounds, false)
    })();
    Death::Cut.revive(pid)?;
    let mut took = measured?;
    println!(
        "sitec status --json, {host} down (cut off), {rounds} runs: {}",
        summary(&mut took, "ms")
    );
    let clean = eventually(Duration::from_secs(120), || {
        Command::new(SITEC)
            .args(["status", spec])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if clean {
        Ok(())
    } else {
        Err(format!("status still finds something wrong 120 s after {host} came back").into())
    }
}

/// `median (min, max) UNIT` of `values`.
fn summary(values: &mut [f64], unit: &str) -> String {
    values.sort_by(f64::total_cmp);
    match values {
        [] => "no runs".into(),
        _ => format!(
            "median {:.0} {unit} (min {:.0}, max {:.0})",
            values[values.len() / 2],
            values[0],
            values[values.len() - 1]
        ),
    }
}

/// How a runner dies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Death {
    /// SIGKILL to its init: every process dies; its kernel tears its
    /// sockets and network down (peers may be told, by a reset).
    Kill,
    /// Its network cut (its link set down inside it): nothing it sends
    /// arrives and nothing answers, as when a machine loses power.
    Cut,
}

impl Death {
    /// Makes `host` (init `pid`) die.
    fn strike(self, pid: i32) -> Result<()> {
        match self {
            Death::Kill => rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).ok_or("no pid")?,
                rustix::process::Signal::KILL,
            )?,
            Death::Cut => link(pid, "down")?,
        }
        Ok(())
    }

    /// Brings a cut runner (init `pid`) back; a killed one waits for
    /// `revive_killed`, after the round.
    fn revive(self, pid: i32) -> Result<()> {
        match self {
            Death::Kill => Ok(()),
            Death::Cut => link(pid, "up"),
        }
    }
}

/// Boots the killed runners again and applies the spec to them (a
/// container booted again starts from the machine's image):
/// `sitec fleet up SPEC $FLEET_ARGS` (its bridge, its subnet), `sitec apply`.
fn revive_killed(spec: &str) -> Result<()> {
    let args = std::env::var("FLEET_ARGS").unwrap_or_default();
    let up: Vec<&str> = ["fleet", "up", spec]
        .into_iter()
        .chain(args.split_whitespace())
        .collect();
    for command in [up, vec!["apply", spec, "--yes"]] {
        let out = Command::new(SITEC).args(&command).output()?;
        if !out.status.success() {
            return Err(format!(
                "sitec {}: {}",
                command.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
    }
    Ok(())
}

/// `ip link set host0 UP_OR_DOWN` in the network of process `pid`.
fn link(pid: i32, up_or_down: &str) -> Result<()> {
    let status = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "link",
            "set",
            "host0",
            up_or_down,
        ])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip link set host0 {up_or_down}: {status}").into())
    }
}

fn deaths(spec: &str, app: &str, domain: &str, death: Death, rounds: usize) -> Result<()> {
    let fleet = sitec::cli::ops::load(Path::new(spec))?;
    let agents = fleet.agents()?;
    let balancers: Vec<String> = fleet.balancers().iter().map(|b| b.name.clone()).collect();
    let runners = fleet.app(app)?.runners.clone();
    let addresses = addresses(spec)?;
    let fronts: Vec<String> = (balancers.iter())
        .filter_map(|b| {
            addresses
                .iter()
                .find(|(h, _)| h == b)
                .map(|(_, a)| a.clone())
        })
        .collect();
    let mut took = Vec::new();
    let mut failed_total = 0;
    for round in 0..rounds {
        // The last runners first; the first (the app's leader) is kept.
        let victim = &runners[runners.len() - 1 - round % (runners.len() - 1).max(1)];
        let back = eventually(Duration::from_secs(120), || {
            in_rotation(&agents, &balancers, app, victim) == Some(true)
        });
        if !back {
            return Err(format!("{victim} is not in every rotation before the round").into());
        }
        let loads: Vec<Load> = fronts.iter().map(|f| Load::start(f, domain, 2)).collect();
        for load in &loads {
            load.wait_answered(20);
        }
        let pid = init_of(spec, victim)?;
        let killed = Instant::now();
        death.strike(pid)?;
        // Each balancer's agent asked on a thread of its own.
        let outs: Vec<std::thread::JoinHandle<Option<Duration>>> = (balancers.iter())
            .map(|b| {
                let (agents, b, app, victim) =
                    (agents.clone(), b.clone(), app.to_string(), victim.clone());
                std::thread::spawn(move || out_of_rotation(&agents, &b, &app, &victim, killed))
            })
            .collect();
        let outs: Vec<Option<Duration>> =
            outs.into_iter().map(|t| t.join().ok().flatten()).collect();
        // Go on loading a little after the last balancer took it out.
        std::thread::sleep(Duration::from_secs(2));
        // The slowest GETs: those that met the dead runner waited.
        let p99 = (loads.iter()).map(Load::p99).max().unwrap_or_default();
        let (mut answered, mut failed) = (0, Vec::new());
        for load in loads {
            let (a, f) = load.stop();
            answered += a;
            failed.extend(f);
        }
        failed_total += failed.len();
        let each: Vec<String> = (balancers.iter().zip(&outs))
            .map(|(b, o)| match o {
                Some(d) => format!("{b} {:.0} ms", d.as_secs_f64() * 1000.0),
                None => format!("{b} never"),
            })
            .collect();
        println!(
            "{death:?} {}: {victim}; out of rotation: {}; {answered} GETs answered (p99 {:.0} ms), {} failed{}",
            round + 1,
            each.join(", "),
            p99.as_secs_f64() * 1000.0,
            failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    failed
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );
        if let Some(last) = outs
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .and_then(|o| o.into_iter().max())
        {
            took.push(last.as_secs_f64() * 1000.0);
        }
        death.revive(pid)?;
    }
    if death == Death::Kill {
        revive_killed(spec)?;
    }
    println!(
        "{death:?}: a runner's death to out of every balancer's rotation, {rounds} deaths: {}; {failed_total} GETs failed",
        summary(&mut took, "ms")
    );
    Ok(())
}

/// Whether every balancer has `app` on `host` in rotation (None: one could
/// not tell).
fn in_rotation(agents: &Agents, balancers: &[String], app: &str, host: &str) -> Option<bool> {
    let answers = agents.ask_all(
        balancers,
        &json!({"op": "rotation"}),
        Duration::from_secs(2),
    );
    let mut all = true;
    for (_, answer) in answers {
        all &= backend(&answer.ok()?, app, host)?["in_rotation"] == true;
    }
    Some(all)
}

/// Asks `balancer`'s agent for its rotation until `app` on `host` is out:
/// how long after `since` it was seen out (None: not within 30 s).
fn out_of_rotation(
    agents: &Agents,
    balancer: &str,
    app: &str,
    host: &str,
    since: Instant,
) -> Option<Duration> {
    let mut client = agents.client(balancer).ok()?;
    while since.elapsed() < Duration::from_secs(30) {
        let asked = Instant::now();
        if let Ok(answer) = client.ask(&json!({"op": "rotation"}), Duration::from_secs(2)) {
            if backend(&answer, app, host).is_some_and(|b| b["in_rotation"] == false) {
                // Out at some point between the question and the answer:
                // the question's time, so the figure is never late.
                return Some(asked.duration_since(since));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn backend<'a>(answer: &'a Value, app: &str, host: &str) -> Option<&'a Value> {
    (answer["balancer"]["routes"]
        .as_array()
        .into_iter()
        .flatten())
    .filter(|r| r["app"] == app)
    .flat_map(|r| r["backends"].as_array().into_iter().flatten())
    .find(|b| b["host"] == host)
}

/// Every host's address, from `sitec fleet status SPEC`.
fn addresses(spec: &str) -> Result<Vec<(String, String)>> {
    let out = Command::new(SITEC)
        .args(["fleet", "status", spec])
        .output()?;
    Ok((String::from_utf8_lossy(&out.stdout).lines())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (host, address) = (words.next()?, words.next()?);
            address
                .parse::<std::net::Ipv4Addr>()
                .is_ok()
                .then(|| (host.to_string(), address.to_string()))
        })
        .collect())
}

/// The pid of `host`'s init (the first child of its systemd-nspawn).
fn init_of(spec: &str, host: &str) -> Result<i32> {
    let stem = Path::new(spec).file_stem().ok_or("a spec file")?;
    let state = Path::new(spec)
        .parent()
        .unwrap_or(Path::new("."))
        .join(".fleet")
        .join(stem)
        .join("fleet.json");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(&state)?)?;
    let nspawn = (state["hosts"].as_array().into_iter().flatten())
        .find(|h| h["name"] == host)
        .and_then(|h| h["pid"].as_u64())
        .ok_or_else(|| format!("{host} has no pid in the fleet's state"))?;
    let children = std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))?;
    Ok(children
        .split_whitespace()
        .next()
        .ok_or("no init")?
        .parse()?)
}

/// The fleet tests' load generator (its `super::eventually` is the one below).
#[path = "../../tests/common/load.rs"]
mod load;

/// Whether `done` holds within `limit`, asked every 50 ms.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

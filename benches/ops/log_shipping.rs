//! Log shipping throughput: lines a second from one agent to a collector
//! on loopback, with acknowledgements (`agent::ship`, `agent::collector`),
//! as two real `sitec agent` processes: a shipper following one file and a
//! collector filing its lines (CURVE on the socket, each batch filed and
//! synced before it is acknowledged). Each round appends `LINES` lines of
//! about 130 bytes (an access log's) to the followed file at once and
//! times until the collector has filed the last of them; the collector's
//! per-host rate is raised out of the way (its default, 2,000 lines a
//! second with a burst of 20,000, is a defence, not the pipeline's speed:
//! `RATE=default` keeps it). Under `cargo test` (no `--bench`) it does
//! nothing.
//!
//! `cargo bench --bench log_shipping` (LINES=200000 ROUNDS=5 by default).

use sitec::bus::keys;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TAG: &str = "bench/access.log";

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let lines = number("LINES", 200_000);
    let rounds = number("ROUNDS", 5);
    let default_rate = std::env::var("RATE").is_ok_and(|r| r == "default");
    let dir = tempfile::Builder::new()
        .prefix("sitec-log-bench-")
        .tempdir()?;
    let pair = Pair::start(dir.path(), default_rate)?;
    println!(
        "log shipping, one agent to one collector on loopback: {lines} lines of {} bytes a round, {rounds} rounds{}",
        line(0).len(),
        if default_rate {
            ", the collector's default rate"
        } else {
            ""
        }
    );
    let mut rates = Vec::new();
    let mut filed = 0;
    for round in 0..rounds {
        let cpu_before = pair.cpu_seconds();
        let text: String = (filed..filed + lines).map(line).collect();
        let started = Instant::now();
        fs::OpenOptions::new()
            .append(true)
            .open(&pair.followed)?
            .write_all(text.as_bytes())?;
        filed += lines;
        pair.wait_filed(filed, Duration::from_secs(600))?;
        let took = started.elapsed().as_secs_f64();
        let cpu = pair.cpu_seconds();
        let rate = lines as f64 / took;
        println!(
            "round {}: {took:.3} s, {rate:.0} lines/s; CPU: shipper {:.2} s, collector {:.2} s",
            round + 1,
            cpu.0 - cpu_before.0,
            cpu.1 - cpu_before.1
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median {:.0} lines/s (min {:.0}, max {:.0})",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
    Ok(())
}

/// Line `n` of the followed file: an nginx access log line's size.
fn line(n: usize) -> String {
    format!(
        "10.77.219.10 - - [07/Dec/2026:08:00:00 +0000] \"GET /posts/{n:08} HTTP/1.1\" 200 5120 \"-\" \"sitec-bench/1.0\" rt=0.004\n"
    )
}

/// The two agents and where the collector files the shipper's lines.
struct Pair {
    shipper: Child,
    collector: Child,
    followed: PathBuf,
    /// The collector's folder for the shipper's tag (`DIR/HOST/TAG`).
    filed: PathBuf,
}

impl Pair {
    fn start(dir: &Path, default_rate: bool) -> Result<Pair> {
        let port = |n: u16| format!("tcp://127.0.0.1:{}", free_port().unwrap_or(20_000 + n));
        let (ship_control, ship_beats) = (port(1), port(2));
        let (collect_end, collect_control, collect_beats) = (port(4), port(5), port(6));
        let operator = keys::derive("bench operator").public.z85();
        let me = user_name()?;
        let followed = dir.join("access.log");
        fs::write(&followed, "")?;
        let limits = if default_rate {
            String::new()
        } else {
            "rate_lines_per_second = 100000000\nburst_lines = 100000000\n".to_string()
        };
        let collector = agent(
            dir,
            "lb1",
            &format!(
                "host = \"lb1\"\nstate_dir = \"{d}/lb1/state\"\n[bus]\ncontrol = \"{collect_control}\"\n\
                 heartbeat = \"{collect_beats}\"\nkey_file = \"{d}/lb1/host.key\"\noperator = \"{operator}\"\n\
                 [collector]\nendpoint = \"{collect_end}\"\ndir = \"{d}/lb1/fleet\"\n\
                 senders = [{{ name = \"run1\", key = \"{run1}\" }}]\n{limits}",
                d = dir.display(),
                run1 = keys::derive("bench run1").public.z85(),
            ),
        )?;
        let shipper = agent(
            dir,
            "run1",
            &format!(
                "host = \"run1\"\nstate_dir = \"{d}/run1/state\"\n[bus]\ncontrol = \"{ship_control}\"\n\
                 heartbeat = \"{ship_beats}\"\nkey_file = \"{d}/run1/host.key\"\noperator = \"{operator}\"\n\
                 log_collectors = [{{ endpoint = \"{collect_end}\", key = \"{lb1}\" }}]\n\
                 [[log]]\npath = \"{f}\"\ntag = \"{TAG}\"\nowner = \"{me}\"\n",
                d = dir.display(),
                f = followed.display(),
                lb1 = keys::derive("bench lb1").public.z85(),
            ),
        )?;
        Ok(Pair {
            shipper,
            collector,
            followed,
            filed: dir.join("lb1/fleet/run1/bench"),
        })
    }

    /// Waits until the collector has filed `lines` lines of the tag (its
    /// file and the ones it rotated).
    fn wait_filed(&self, lines: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut seen = 0;
        while Instant::now() < deadline {
            seen = self.filed_lines();
            if seen >= lines {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(format!("{seen} of {lines} lines filed within {limit:?}").into())
    }

    fn filed_lines(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.filed) else {
            return 0;
        };
        (entries.flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with("access.log"))
            .map(|e| fs::metadata(e.path()).map_or(0, |m| m.len()))
            .sum::<u64>() as usize
            / filed_line_len()
    }

    /// User and system seconds of (shipper, collector) so far.
    fn cpu_seconds(&self) -> (f64, f64) {
        (
            cpu_seconds(self.shipper.id()),
            cpu_seconds(self.collector.id()),
        )
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in [&mut self.shipper, &mut self.collector] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A filed line: `TIME<TAB>LINE` (24 characters of time), the line's
/// length is the same for every `n` below 10^8.
fn filed_line_len() -> usize {
    24 + 1 + line(0).len()
}

/// Starts `sitec agent` as `host` on `config` (its key file written
/// first) and waits until it says it runs.
fn agent(dir: &Path, host: &str, config: &str) -> Result<Child> {
    use std::os::unix::fs::PermissionsExt;
    let home = dir.join(host);
    fs::create_dir_all(&home)?;
    let key = home.join("host.key");
    fs::write(&key, keys::derive(&format!("bench {host}")).key_file_text())?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    fs::write(home.join("agent.toml"), config)?;
    let stderr = home.join("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args(["agent", "--config"])
        .arg(home.join("agent.toml"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr)?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if fs::read_to_string(&stderr)?.contains("running") {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "agent {host} did not start: {}",
        fs::read_to_string(&stderr)?
    )
    .into())
}

fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// The user this runs as: the followed file's owner, as the agent checks.
fn user_name() -> Result<String> {
    let uid = rustix::process::geteuid().as_raw().to_string();
    let passwd = fs::read_to_string("/etc/passwd")?;
    (passwd.lines())
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&uid.as_str())).then(|| f[0].to_string())
        })
        .ok_or_else(|| format!("uid {uid} is not in /etc/passwd").into())
}

/// User and system seconds process `pid` has used (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: fields 3 onwards; utime and
    // stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

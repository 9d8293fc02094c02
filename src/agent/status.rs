//! `status`: what this host is doing, checked when asked (the app units
//! within the heartbeat's second): load, memory, the use of the file
//! systems that hold its logs and data, its apps' units and drains, the
//! fleet lease it holds, each Postgres cluster's role and replication
//! (asked of the server with `psql`), and on a balancer host the balancer's
//! rotation (its admin listener's `/rotation`). A part that cannot be
//! checked says why in its place (`error`); the rest is still reported.
//! Nothing here is remembered from an earlier message.

use super::config::{Disk, Postgres};
use super::Ctx;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one server may take to answer.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1500);
/// The most of an answer read from a local server.
const ANSWER_MAX: u64 = 4 << 20;

/// The answer to `status`.
pub async fn report(ctx: &Ctx) -> Value {
    let apps = ctx.apps.borrow().clone();
    let (postgres, balancer) = tokio::join!(
        postgres_all(&ctx.config.postgres),
        rotation(ctx.config.balancer_admin.as_deref())
    );
    let now = super::heartbeat::unix_time();
    json!({
        "ok": true,
        "op": "status",
        "host": ctx.config.host,
        "version": env!("CARGO_PKG_VERSION"),
        "time": now,
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "boot_seconds": boot_seconds(),
        "load": load(),
        "memory": memory(),
        "disks": ctx.config.disks.iter().map(disk).collect::<Vec<_>>(),
        "apps": apps,
        "lease": ctx.leases.peek().filter(|l| l.live(now)),
        "postgres": postgres,
        "balancer": balancer,
    })
}

/// Seconds since the host booted (`/proc/uptime`).
fn boot_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
fn load() -> Option<[f64; 3]> {
    parse_load(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_load(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([words.next()??, words.next()??, words.next()??])
}

/// Total and available memory in bytes (`/proc/meminfo`).
fn memory() -> Value {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    parse_memory(&text)
}

fn parse_memory(text: &str) -> Value {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    json!({ "total": field("MemTotal:"), "available": field("MemAvailable:") })
}

/// One file system's size and use, or why it cannot be told.
fn disk(d: &Disk) -> Value {
    match rustix::fs::statvfs(&d.path) {
        Ok(s) => {
            let block = s.f_frsize.max(1);
            json!({
                "path": d.path,
                "holds": d.holds,
                "total": s.f_blocks * block,
                "used": s.f_blocks.saturating_sub(s.f_bfree) * block,
                "available": s.f_bavail * block,
            })
        }
        Err(e) => json!({ "path": d.path, "holds": d.holds, "error": e.to_string() }),
    }
}

async fn postgres_all(clusters: &[Postgres]) -> Vec<Value> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in clusters.iter().enumerate() {
        let c = c.clone();
        tasks.spawn(async move { (i, postgres(&c).await) });
    }
    let mut found: Vec<(usize, Value)> = Vec::new();
    while let Some(Ok(one)) = tasks.join_next().await {
        found.push(one);
    }
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, v)| v).collect()
}

/// What the server says of itself, and of its standbys on a primary.
/// Asked over the local socket with peer authentication (no password), so
/// the OS user is the role: the agent, user `sitec-agent`, asks as the
/// cluster's role of that name (`roles.sql`: no password, a member of
/// `pg_monitor`, which may read these and nothing of the databases).
const POSTGRES_QUERIES: [&str; 2] = [
    "SELECT 'self', pg_is_in_recovery(), \
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, \
       pg_last_wal_replay_lsn(), extract(epoch from pg_last_xact_replay_timestamp()), \
       extract(epoch from now())",
    "SELECT 'standby', client_addr, application_name, state, \
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END, \
       extract(epoch from replay_lag) FROM pg_stat_replication",
];

async fn postgres(c: &Postgres) -> Value {
    let mut command = tokio::process::Command::new("psql");
    command
        .args(["-U", "sitec-agent"])
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "/var/run/postgresql", "-d", "postgres"])
        .arg("-p")
        .arg(c.port.to_string())
        .env("PGCONNECT_TIMEOUT", "2")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for q in POSTGRES_QUERIES {
        command.arg("-c").arg(q);
    }
    let base = json!({ "cluster": c.cluster, "port": c.port });
    let result = match tokio::time::timeout(QUERY_TIMEOUT, command.output()).await {
        Err(_) => Err(format!("Postgres did not answer within {QUERY_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("cannot run psql: {e}")),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("failed")
                .trim()
        )),
        Ok(Ok(out)) => parse_postgres(&String::from_utf8_lossy(&out.stdout)),
    };
    merge(base, result)
}

/// Adds what was found (or `error`) to `base`.
fn merge(mut base: Value, found: Result<Value, String>) -> Value {
    let extra = match found {
        Ok(v) => v,
        Err(e) => json!({ "error": e }),
    };
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    base
}

/// `psql -A -t`'s lines for `POSTGRES_QUERIES`: `self|f|LSN|LSN|TIME|NOW`,
/// then `standby|ADDR|NAME|STATE|BYTES|SECONDS` for each standby.
fn parse_postgres(out: &str) -> Result<Value, String> {
    let mut me = None;
    let mut standbys = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let number = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        match f.first() {
            Some(&"self") if f.len() == 6 => {
                let standby = f[1] == "t";
                me = Some(json!({
                    "role": if standby { "standby" } else { "primary" },
                    "lsn": lsn(f[2]),
                    "replay_lsn": lsn(f[3]),
                    "replayed_at": number(4),
                    "now": number(5),
                }));
            }
            Some(&"standby") if f.len() == 6 => standbys.push(json!({
                "address": f[1],
                "name": f[2],
                "state": f[3],
                "lag_bytes": number(4),
                "lag_seconds": number(5),
            })),
            _ => {}
        }
    }
    let mut me = me.ok_or_else(|| format!("psql answered what sitec cannot read: {out:?}"))?;
    if let Some(m) = me.as_object_mut() {
        m.insert("standbys".into(), Value::Array(standbys));
    }
    Ok(me)
}

/// A WAL position (`16/B374D848`) as one number of bytes.
pub fn lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some(u64::from_str_radix(high, 16).ok()? << 32 | u64::from_str_radix(low, 16).ok()?)
}

/// The local balancer's `/rotation`, or why it cannot be had.
pub async fn rotation(admin: Option<&str>) -> Value {
    let Some(admin) = admin else {
        return Value::Null;
    };
    match tokio::time::timeout(QUERY_TIMEOUT, get(admin, "/rotation")).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({ "error": format!("the balancer's admin listener {admin}: {e}") }),
        Err(_) => {
            json!({ "error": format!("the balancer's admin listener {admin} did not answer within {QUERY_TIMEOUT:?}") })
        }
    }
}

/// `GET path` on a local admin listener, its JSON body.
async fn get(addr: &str, path: &str) -> Result<Value, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .take(ANSWER_MAX)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        assert_eq!(
            parse_load("0.52 0.58 0.59 1/123 4567\n"),
            Some([0.52, 0.58, 0.59])
        );
        let m = parse_memory("MemTotal:       16384 kB\nMemFree: 1 kB\nMemAvailable:    8192 kB\n");
        assert_eq!(m, json!({ "total": 16_777_216, "available": 8_388_608 }));
    }

    #[test]
    fn postgres_answers_are_read() {
        assert_eq!(lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn(""), None);
        let primary = parse_postgres(
            "self|f|0/3000148|||1733592000.5\nstandby|10.0.0.9|db2|streaming|0|0.001\n",
        )
        .expect("primary");
        assert_eq!(primary["role"], "primary");
        assert_eq!(primary["lsn"], 0x300_0148);
        assert_eq!(primary["standbys"][0]["address"], "10.0.0.9");
        assert_eq!(primary["standbys"][0]["lag_bytes"], 0.0);
        let standby = parse_postgres("self|t|0/3000148|0/3000100|1733591999.25|1733592000.5\n")
            .expect("standby");
        assert_eq!(standby["role"], "standby");
        assert_eq!(standby["replay_lsn"], 0x300_0100);
        assert_eq!(standby["replayed_at"], 1_733_591_999.25);
        assert!(parse_postgres("psql: oops").is_err());
    }
}

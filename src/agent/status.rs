//! `status`: what this host is doing, checked when asked (the app units
//! within the heartbeat's second): load, memory, the use of the file
//! systems that hold its logs and data, its apps' units and drains, the
//! fleet lease it holds, each Postgres cluster's role and replication
//! (asked of the server with `psql`), each Redis server's (`ROLE`, asked as
//! its user `sitec-agent`, who may ask nothing else), on a backup host
//! what each backup's last pull left (its status file, read as written:
//! the copies themselves are root's), and on a balancer host the balancer's
//! rotation (its admin listener's `/rotation`). A part that cannot be
//! checked says why in its place (`error`); the rest is still reported.
//! Nothing here is remembered from an earlier message.

use super::config::{Backup, Disk, Postgres, Redis};
use super::resp;
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
    let (postgres, redis, balancer) = tokio::join!(
        ask_each(&ctx.config.postgres, |c| async move { postgres(&c).await }),
        ask_each(&ctx.config.redis, |r| async move { redis(&r).await }),
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
        "redis": redis,
        "backups": ctx.config.backups.iter().map(backup).collect::<Vec<_>>(),
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

/// `ask` of every server at once, the answers in the servers' order.
async fn ask_each<T, F, A>(servers: &[T], ask: F) -> Vec<Value>
where
    T: Clone,
    F: Fn(T) -> A,
    A: std::future::Future<Output = Value> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (i, server) in servers.iter().enumerate() {
        let answer = ask(server.clone());
        tasks.spawn(async move { (i, answer.await) });
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

/// What a Redis server says of its replication: `ROLE`, asked on
/// loopback as user `sitec-agent` (its password from the config; the
/// server lets that user ask `ROLE` and nothing else).
async fn redis(r: &Redis) -> Value {
    let base = json!({ "name": r.name, "port": r.port });
    let found = match tokio::time::timeout(QUERY_TIMEOUT, redis_role(r)).await {
        Err(_) => Err(format!("Redis did not answer within {QUERY_TIMEOUT:?}")),
        Ok(found) => found,
    };
    merge(base, found)
}

async fn redis_role(r: &Redis) -> Result<Value, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", r.port))
        .await
        .map_err(|e| format!("127.0.0.1:{}: {e}", r.port))?;
    // Redis speaks TLS only; its certificate names 127.0.0.1 and is
    // checked against the fleet CA, as every other client checks it.
    let loopback = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut stream = tls_connector(&r.ca_file)?
        .connect(loopback, tcp)
        .await
        .map_err(|e| format!("TLS with Redis on 127.0.0.1:{}: {e}", r.port))?;
    let request = [
        resp::command(&["AUTH", "sitec-agent", &r.password]),
        resp::command(&["ROLE"]),
    ]
    .concat();
    stream
        .write_all(&request)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(replies) = resp::replies(&answer, 2)? {
            return match &replies[..] {
                [resp::Reply::Error(e), _] => Err(format!(
                    "Redis refused user sitec-agent ({}); apply the spec",
                    e.split_whitespace().next().unwrap_or("an error")
                )),
                [_, role] => parse_redis_role(role),
                _ => Err("Redis gave no answer to ROLE".into()),
            };
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        if n == 0 {
            return Err("Redis closed the connection before answering".into());
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() as u64 > ANSWER_MAX {
            return Err(format!("Redis answered more than {ANSWER_MAX} bytes"));
        }
    }
}

/// A TLS client that trusts only the certificates in `ca_file` (the
/// fleet CA).
fn tls_connector(ca_file: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let unreadable = |e: &dyn std::fmt::Display| format!("{}: {e}", ca_file.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// `ROLE`'s answer: a primary's offset and its replicas (each's address
/// and acknowledged offset), or a replica's primary, link state and offset.
fn parse_redis_role(role: &resp::Reply) -> Result<Value, String> {
    use resp::Reply;
    let unreadable = || format!("Redis's ROLE answer is not what sitec reads: {role:?}");
    let Reply::Array(items) = role else {
        return Err(unreadable());
    };
    let text = |i: usize| items.get(i).and_then(Reply::text);
    let number = |i: usize| items.get(i).and_then(Reply::number);
    match text(0) {
        Some("master") => {
            let Some(Reply::Array(replicas)) = items.get(2) else {
                return Err(unreadable());
            };
            let replicas = (replicas.iter())
                .map(|r| match r {
                    Reply::Array(r) => Ok(json!({
                        "address": r.first().and_then(Reply::text),
                        "port": r.get(1).and_then(Reply::number),
                        "offset": r.get(2).and_then(Reply::number),
                    })),
                    _ => Err(unreadable()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({ "role": "primary", "offset": number(1), "replicas": replicas }))
        }
        Some("slave") => Ok(json!({
            "role": "replica",
            "primary": text(1),
            "primary_port": number(2),
            "link": text(3),
            "offset": number(4),
        })),
        _ => Err(unreadable()),
    }
}

/// The most of a backup's status file read (a few hundred bytes a source).
const BACKUP_STATUS_MAX: u64 = 256 << 10;

/// What backup `b`'s last pull wrote: `{time, sources[]}` (each source's
/// newest copy, its time and size, the pull's error), or why it cannot be
/// read. No file yet is no error: the first pull has not finished.
fn backup(b: &Backup) -> Value {
    use std::io::Read;
    let base = json!({ "name": b.name });
    let read = || -> Result<Value, String> {
        let unreadable = |e: &dyn std::fmt::Display| format!("{}: {e}", b.status_file.display());
        let file = match std::fs::File::open(&b.status_file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(json!({ "pulled": false }))
            }
            other => other.map_err(|e| unreadable(&e))?,
        };
        let mut text = Vec::new();
        file.take(BACKUP_STATUS_MAX + 1)
            .read_to_end(&mut text)
            .map_err(|e| unreadable(&e))?;
        if text.len() as u64 > BACKUP_STATUS_MAX {
            return Err(unreadable(&format!(
                "longer than {BACKUP_STATUS_MAX} bytes"
            )));
        }
        let status: Value = serde_json::from_slice(&text).map_err(|e| unreadable(&e))?;
        Ok(json!({ "pulled": true, "time": status["time"], "sources": status["sources"] }))
    };
    merge(base, read())
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
    fn redis_roles_are_read() {
        let read = |raw: &[u8]| {
            let replies = resp::replies(raw, 1).expect("RESP").expect("whole");
            parse_redis_role(&replies[0])
        };
        let primary = read(b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$8\r\n10.0.0.4\r\n$4\r\n6379\r\n$7\r\n3129242\r\n");
        assert_eq!(
            primary,
            Ok(json!({"role": "primary", "offset": 3_129_659,
                "replicas": [{"address": "10.0.0.4", "port": 6379, "offset": 3_129_242}]}))
        );
        let replica = read(
            b"*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.3\r\n:6379\r\n$9\r\nconnected\r\n:3167038\r\n",
        );
        assert_eq!(
            replica,
            Ok(
                json!({"role": "replica", "primary": "10.0.0.3", "primary_port": 6379,
                "link": "connected", "offset": 3_167_038})
            )
        );
        assert!(read(b"*1\r\n$8\r\nsentinel\r\n").is_err());
        assert!(read(b":1\r\n").is_err());
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

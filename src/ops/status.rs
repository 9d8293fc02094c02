//! `sitec status`: the whole fleet in one table, from every agent at once
//! (`status`, answered from what each host checks when asked). Hosts whose
//! agent does not answer within `WAIT` are listed down, with how long ago a
//! balancer last heard them where one did (a runner its balancers have not
//! heard for `SILENT_SECONDS` is not waited for once every other host has
//! answered); everything else is still reported. `Report` is both the table and `--json`'s document; its
//! `problems` decide the exit code.

use super::{span, Fleet};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// How long the agents get to answer: a host that has not answered by then
/// is down (or too slow to count as up).
pub const WAIT: Duration = Duration::from_millis(800);
/// A runner that every balancer which answered last heard longer ago than
/// this (ten of its agent's pulses) is not waited for once every other
/// host has answered: it is down, and `WAIT` would only make the operator
/// wait for it.
const SILENT_SECONDS: f64 = 1.0;
/// A file system fuller than this is a problem.
const DISK_FULL: f64 = 0.9;

#[derive(Debug, Serialize)]
pub struct Report {
    pub spec: String,
    /// Unix seconds, the operator's clock.
    pub time: f64,
    /// This sitec's version, which each agent's is compared with.
    pub version: String,
    pub hosts: Vec<HostReport>,
    pub apps: Vec<AppReport>,
    pub databases: Vec<DatabaseReport>,
    pub backups: Vec<BackupReport>,
    pub lock: Option<LockReport>,
    /// What is wrong, one sentence each; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub up: bool,
    pub version: Option<String>,
    pub agent_uptime_seconds: Option<f64>,
    pub host_uptime_seconds: Option<f64>,
    pub load: Option<[f64; 3]>,
    pub memory: Option<Value>,
    pub disks: Vec<Value>,
    /// Set when its agent did not answer.
    pub down: Option<Down>,
}

#[derive(Debug, Serialize)]
pub struct Down {
    /// Why there is no answer.
    pub error: String,
    /// How long ago anyone last heard its agent, and who.
    pub heard_seconds_ago: Option<f64>,
    pub heard_by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AppReport {
    pub name: String,
    pub runners: Vec<RunnerReport>,
}

#[derive(Debug, Serialize)]
pub struct RunnerReport {
    pub host: String,
    /// Where the app's migrations run (and `sitec run` goes by default).
    pub leader: bool,
    /// Every unit active (`None`: its agent did not say).
    pub healthy: Option<bool>,
    /// Its web service active.
    pub serving: Option<bool>,
    pub units: Vec<Value>,
    /// Why it is drained, if it is.
    pub drain: Option<String>,
    pub error: Option<String>,
    /// Each balancer's view of it.
    pub rotation: Vec<Rotation>,
}

#[derive(Debug, Serialize)]
pub struct Rotation {
    pub balancer: String,
    pub in_rotation: Option<bool>,
    /// Why it is out: `{kind, why, seconds}`.
    pub out: Option<Value>,
    pub in_flight: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DatabaseReport {
    pub name: String,
    pub engine: String,
    /// The primary as the spec places it.
    pub spec_primary: String,
    /// The host whose server says it is the primary.
    pub primary: Option<String>,
    pub standby: Option<String>,
    /// The standby's replication as its primary sees it (`streaming`...).
    pub replication: Option<String>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub name: String,
    /// The host that keeps the copies.
    pub host: String,
    pub every_seconds: u64,
    /// Whether a pull has finished since the backup host was set up.
    pub pulled: Option<bool>,
    /// How long ago the last pull ended.
    pub pulled_seconds_ago: Option<f64>,
    pub sources: Vec<BackupSource>,
    pub error: Option<String>,
}

/// What the backup host holds of one database host.
#[derive(Debug, Serialize)]
pub struct BackupSource {
    pub host: String,
    /// The newest copy's stamp, and its age by the backup host's clock.
    pub newest: Option<String>,
    pub age_seconds: Option<f64>,
    /// What the newest copy holds.
    pub bytes: Option<u64>,
    pub copies: Option<u64>,
    /// Why the last pull from it failed.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LockReport {
    pub who: String,
    pub from: String,
    pub pid: u32,
    pub what: String,
    pub since_seconds_ago: f64,
    pub lapses_in_seconds: f64,
    /// The hosts that record it.
    pub hosts: Vec<String>,
}

/// Asks every agent and puts the answers together.
pub fn gather(fleet: &Fleet, agents: &super::Agents) -> Report {
    let hosts: Vec<String> = fleet.hosts.iter().map(|h| h.name.clone()).collect();
    let answers: BTreeMap<String, Result<Value, String>> = agents
        .ask_all_until(&hosts, &json!({"op": "status"}), WAIT, |so_far| {
            settled(fleet, so_far)
        })
        .into_iter()
        .collect();
    let now = crate::agent::unix_time();
    build(fleet, &answers, now)
}

/// Whether every host yet to answer is one the balancers' answers so far
/// say is silent (`SILENT_SECONDS`): no more worth waiting for.
fn settled(fleet: &Fleet, so_far: &BTreeMap<&str, &Value>) -> bool {
    (fleet.hosts.iter())
        .filter(|h| !so_far.contains_key(h.name.as_str()))
        .all(|h| {
            heard_by_balancers(fleet, &h.name, |b| so_far.get(b).copied())
                .is_some_and(|(ago, _)| ago > SILENT_SECONDS)
        })
}

/// The report from the agents' answers (`Err`: no answer, and why).
pub fn build(fleet: &Fleet, answers: &BTreeMap<String, Result<Value, String>>, now: f64) -> Report {
    let answer = |host: &str| answers.get(host).and_then(|a| a.as_ref().ok());
    let mut problems = Vec::new();
    let hosts = (fleet.hosts.iter())
        .map(|h| host_report(fleet, h, answers, &mut problems))
        .collect();
    let apps = (fleet.apps.iter())
        .map(|app| AppReport {
            name: app.name.clone(),
            runners: (app.runners.iter().enumerate())
                .map(|(i, host)| {
                    runner_report(fleet, &app.name, host, i == 0, answer, &mut problems)
                })
                .collect(),
        })
        .collect();
    let databases = (fleet.databases.iter())
        .map(|d| database_report(fleet, d, answer, &mut problems))
        .collect();
    Report {
        spec: fleet.spec.clone(),
        time: now,
        version: env!("CARGO_PKG_VERSION").to_string(),
        hosts,
        apps,
        databases,
        backups: (fleet.backups.iter())
            .map(|b| backup_report(b, answer(&b.to), &mut problems))
            .collect(),
        lock: lock_report(fleet, answer),
        problems,
    }
}

fn host_report(
    fleet: &Fleet,
    h: &super::Host,
    answers: &BTreeMap<String, Result<Value, String>>,
    problems: &mut Vec<String>,
) -> HostReport {
    let mut report = HostReport {
        name: h.name.clone(),
        address: h.address.clone(),
        roles: h.roles.clone(),
        up: false,
        version: None,
        agent_uptime_seconds: None,
        host_uptime_seconds: None,
        load: None,
        memory: None,
        disks: Vec::new(),
        down: None,
    };
    match answers.get(&h.name) {
        Some(Ok(a)) => {
            report.up = true;
            report.version = a["version"].as_str().map(str::to_string);
            report.agent_uptime_seconds = a["uptime_seconds"].as_f64();
            report.host_uptime_seconds = a["boot_seconds"].as_f64();
            report.load = serde_json::from_value(a["load"].clone()).ok();
            report.memory = Some(a["memory"].clone()).filter(|m| !m.is_null());
            report.disks = a["disks"].as_array().cloned().unwrap_or_default();
            for d in &report.disks {
                if let Some(e) = d["error"].as_str() {
                    problems.push(format!(
                        "{}: cannot tell the use of {}: {e}",
                        h.name,
                        d["path"].as_str().unwrap_or("?")
                    ));
                } else if used_share(d).is_some_and(|u| u > DISK_FULL) {
                    problems.push(format!(
                        "{}: {} is {:.0}% full",
                        h.name,
                        d["path"].as_str().unwrap_or("?"),
                        used_share(d).unwrap_or(0.0) * 100.0
                    ));
                }
            }
        }
        other => {
            let error = match other {
                Some(Err(e)) => e.clone(),
                _ => "not asked".into(),
            };
            let heard = heard_of(fleet, &h.name, answers);
            problems.push(format!(
                "{} is down: {}{}",
                h.name,
                error,
                match &heard {
                    Some((ago, by)) => format!(" (last heard {} ago by {by})", span(*ago)),
                    None => String::new(),
                }
            ));
            report.down = Some(Down {
                error,
                heard_seconds_ago: heard.as_ref().map(|(ago, _)| *ago),
                heard_by: heard.map(|(_, by)| by),
            });
        }
    }
    report
}

/// A file system's used share (0 to 1).
fn used_share(d: &Value) -> Option<f64> {
    let used = d["used"].as_f64()?;
    let available = d["available"].as_f64()?;
    (used + available > 0.0).then(|| used / (used + available))
}

/// How long ago a balancer last heard `host`'s heartbeats, and which one
/// (the most recent).
fn heard_of(
    fleet: &Fleet,
    host: &str,
    answers: &BTreeMap<String, Result<Value, String>>,
) -> Option<(f64, String)> {
    heard_by_balancers(fleet, host, |b| answers.get(b)?.as_ref().ok())
}

/// `heard_of`, from each balancer's answer as `answer` gives it.
fn heard_by_balancers<'a>(
    fleet: &Fleet,
    host: &str,
    answer: impl Fn(&str) -> Option<&'a Value>,
) -> Option<(f64, String)> {
    (fleet.balancers().into_iter())
        .filter_map(|b| {
            let ago = answer(&b.name)?["balancer"]["heard_seconds_ago"][host].as_f64()?;
            Some((ago, format!("{}'s balancer", b.name)))
        })
        .min_by(|x, y| x.0.total_cmp(&y.0))
}

fn runner_report<'a>(
    fleet: &Fleet,
    app: &str,
    host: &str,
    leader: bool,
    answer: impl Fn(&str) -> Option<&'a Value>,
    problems: &mut Vec<String>,
) -> RunnerReport {
    let mut report = RunnerReport {
        host: host.to_string(),
        leader,
        healthy: None,
        serving: None,
        units: Vec::new(),
        drain: None,
        error: None,
        rotation: Vec::new(),
    };
    match answer(host) {
        Some(a) => {
            let state = (a["apps"].as_array().into_iter().flatten()).find(|s| s["name"] == app);
            match state {
                Some(s) => {
                    report.healthy = s["healthy"].as_bool();
                    report.serving = s["serving"].as_bool();
                    report.units = s["units"].as_array().cloned().unwrap_or_default();
                    report.drain = s["drain"].as_str().map(str::to_string);
                    report.error = s["error"].as_str().map(str::to_string);
                    for u in &report.units {
                        if u["active"] != "active" {
                            problems.push(format!(
                                "{app} on {host}: {} is {} ({})",
                                u["unit"].as_str().unwrap_or("?"),
                                u["active"].as_str().unwrap_or("?"),
                                u["sub"].as_str().unwrap_or("?")
                            ));
                        }
                    }
                    if let Some(e) = &report.error {
                        problems.push(format!("{app} on {host}: its state is unknown: {e}"));
                    }
                }
                None => {
                    report.error = Some(format!(
                        "{host}'s agent does not know {app} (apply the spec)"
                    ));
                    problems.push(format!(
                        "{app} on {host}: {host}'s agent does not know it; apply the spec"
                    ));
                }
            }
        }
        None => report.error = Some(format!("{host} is down")),
    }
    for b in fleet.balancers() {
        let rotation = rotation_of(app, host, &b.name, answer(&b.name));
        if rotation.in_rotation == Some(false)
            && rotation
                .out
                .as_ref()
                .is_some_and(|o| o["kind"] != "drained")
        {
            problems.push(format!(
                "{app} on {host} is out of {}'s rotation: {}",
                b.name,
                rotation
                    .out
                    .as_ref()
                    .and_then(|o| o["why"].as_str())
                    .unwrap_or("?")
            ));
        }
        report.rotation.push(rotation);
    }
    report
}

/// What balancer `balancer` (its agent's answer) says of `app` on `host`.
fn rotation_of(app: &str, host: &str, balancer: &str, answer: Option<&Value>) -> Rotation {
    let mut r = Rotation {
        balancer: balancer.to_string(),
        in_rotation: None,
        out: None,
        in_flight: None,
        error: None,
    };
    let Some(a) = answer else {
        r.error = Some(format!("{balancer} is down"));
        return r;
    };
    let b = &a["balancer"];
    if let Some(e) = b["error"].as_str() {
        r.error = Some(e.to_string());
        return r;
    }
    let backend = (b["routes"].as_array().into_iter().flatten())
        .filter(|route| route["app"] == app)
        .flat_map(|route| route["backends"].as_array().into_iter().flatten())
        .find(|backend| backend["host"] == host);
    match backend {
        Some(backend) => {
            r.in_rotation = backend["in_rotation"].as_bool();
            r.out = Some(backend["out"].clone()).filter(|o| !o.is_null());
            r.in_flight = backend["in_flight"].as_u64();
        }
        None => {
            r.error = Some(format!(
                "{balancer}'s balancer has no route to {app} on {host} (apply the spec)"
            ))
        }
    }
    r
}

fn database_report<'a>(
    fleet: &Fleet,
    d: &super::Database,
    answer: impl Fn(&str) -> Option<&'a Value>,
    problems: &mut Vec<String>,
) -> DatabaseReport {
    let mut report = DatabaseReport {
        name: d.name.clone(),
        engine: d.engine.clone(),
        spec_primary: d.primary.clone(),
        primary: None,
        standby: d.standby.clone(),
        replication: None,
        lag_bytes: None,
        lag_seconds: None,
        error: None,
    };
    let errors = if d.engine == "redis" {
        redis_replication(fleet, d, answer, &mut report)
    } else {
        postgres_replication(fleet, d, answer, &mut report)
    };
    for e in &errors {
        problems.push(format!("database {}: {e}", d.name));
    }
    report.error = (!errors.is_empty()).then(|| errors.join("; "));
    report
}

/// The server of `d` on `host`, in the `part` (`postgres`, `redis`) of
/// its agent's answer whose `key` (`cluster`, `name`) is `value`.
fn server<'a>(
    answer: &impl Fn(&str) -> Option<&'a Value>,
    host: &str,
    part: &str,
    key: &str,
    value: &str,
) -> Result<&'a Value, String> {
    let a = answer(host).ok_or_else(|| format!("{host} is down"))?;
    let found = (a[part].as_array().into_iter().flatten())
        .find(|p| p[key] == value)
        .ok_or_else(|| format!("{host}'s agent does not know {part} {value} (apply the spec)"))?;
    match found["error"].as_str() {
        Some(e) => Err(format!("{host}: {e}")),
        None => Ok(found),
    }
}

/// Which Redis server says it is the primary, and its replica's link and
/// how many bytes it has not acknowledged (Redis tells no lag in seconds).
fn redis_replication<'a>(
    fleet: &Fleet,
    d: &super::Database,
    answer: impl Fn(&str) -> Option<&'a Value>,
    report: &mut DatabaseReport,
) -> Vec<String> {
    let hosts: Vec<&str> = std::iter::once(d.primary.as_str())
        .chain(d.standby.as_deref())
        .collect();
    let servers: Vec<(&str, Result<&Value, String>)> = (hosts.iter())
        .map(|h| (*h, server(&answer, h, "redis", "name", &d.name)))
        .collect();
    let mut errors: Vec<String> = (servers.iter())
        .filter_map(|(_, s)| s.as_ref().err().cloned())
        .collect();
    let with_role = |role: &str| {
        servers.iter().find_map(|(h, s)| {
            let s = s.as_ref().ok()?;
            (s["role"] == role).then_some((*h, *s))
        })
    };
    let (primary, replica) = (with_role("primary"), with_role("replica"));
    report.primary = primary.map(|(h, _)| h.to_string());
    if primary.is_some_and(|(h, _)| h != d.primary) {
        errors.push(format!(
            "the spec says {} is the primary, but {} is",
            d.primary,
            report.primary.as_deref().unwrap_or("?")
        ));
    }
    if let Some((replica_host, r)) = replica {
        report.standby = Some(replica_host.to_string());
        let link = r["link"].as_str().unwrap_or("?");
        report.replication = Some(link.to_string());
        let address = fleet
            .host(replica_host)
            .map(|h| h.address.clone())
            .unwrap_or_default();
        let acknowledged = primary.and_then(|(_, p)| {
            (p["replicas"].as_array().into_iter().flatten())
                .find(|x| x["address"] == address.as_str())
                .and_then(|x| x["offset"].as_u64())
        });
        report.lag_bytes = match (
            primary.and_then(|(_, p)| p["offset"].as_u64()),
            acknowledged,
        ) {
            (Some(at), Some(acked)) => Some(at.saturating_sub(acked)),
            _ => None,
        };
        if link != "connected" {
            errors.push(format!("its replica {replica_host} is {link}"));
        }
    } else if d.standby.is_some() && errors.is_empty() {
        errors.push("no server of it says it is a replica".into());
    }
    if primary.is_none() && errors.is_empty() {
        errors.push("no server of it says it is the primary".into());
    }
    errors
}

/// Which Postgres server says it is the primary, and its standby's
/// replication and lag as the primary sees it.
fn postgres_replication<'a>(
    fleet: &Fleet,
    d: &super::Database,
    answer: impl Fn(&str) -> Option<&'a Value>,
    report: &mut DatabaseReport,
) -> Vec<String> {
    let cluster = d.cluster.as_deref().unwrap_or("main");
    let hosts: Vec<&str> = std::iter::once(d.primary.as_str())
        .chain(d.standby.as_deref())
        .collect();
    let servers: Vec<(&str, Result<&Value, String>)> = (hosts.iter())
        .map(|h| (*h, server(&answer, h, "postgres", "cluster", cluster)))
        .collect();
    let mut errors: Vec<String> = servers
        .iter()
        .filter_map(|(_, s)| s.as_ref().err().cloned())
        .collect();
    let primary = servers.iter().find_map(|(h, s)| {
        let s = s.as_ref().ok()?;
        (s["role"] == "primary").then_some((*h, *s))
    });
    report.primary = primary.map(|(h, _)| h.to_string());
    if primary.is_some_and(|(h, _)| h != d.primary) {
        errors.push(format!(
            "the spec says {} is the primary, but {} is",
            d.primary,
            report.primary.as_deref().unwrap_or("?")
        ));
    }
    let standby = servers.iter().find_map(|(h, s)| {
        let s = s.as_ref().ok()?;
        (s["role"] == "standby").then_some((*h, *s))
    });
    if let (Some((_, p)), Some((standby_host, s))) = (primary, standby) {
        report.standby = Some(standby_host.to_string());
        let address = fleet
            .host(standby_host)
            .map(|h| h.address.clone())
            .unwrap_or_default();
        let seen = (p["standbys"].as_array().into_iter().flatten())
            .find(|x| x["address"] == address.as_str());
        report.replication = Some(
            seen.and_then(|x| x["state"].as_str())
                .unwrap_or("not connected")
                .to_string(),
        );
        report.lag_bytes = match (p["lsn"].as_u64(), s["replay_lsn"].as_u64()) {
            (Some(at), Some(replayed)) => Some(at.saturating_sub(replayed)),
            _ => None,
        };
        report.lag_seconds = seen
            .and_then(|x| x["lag_seconds"].as_f64())
            .or(if report.lag_bytes == Some(0) {
                Some(0.0)
            } else {
                None
            })
            .or_else(|| Some(s["now"].as_f64()? - s["replayed_at"].as_f64()?));
        if report.replication.as_deref() != Some("streaming") {
            errors.push(format!(
                "its standby {standby_host} is {}",
                report.replication.as_deref().unwrap_or("?")
            ));
        }
    } else if d.standby.is_some() && errors.is_empty() {
        errors.push("no server of it says it is a standby".into());
    }
    if primary.is_none() && errors.is_empty() {
        errors.push("no server of it says it is the primary".into());
    }
    errors
}

/// A newest copy older than this many pull intervals (plus `BACKUP_SLACK`)
/// is a problem: snapshots or pulls have stopped.
const BACKUP_STALE_INTERVALS: f64 = 3.0;
const BACKUP_SLACK_SECONDS: f64 = 300.0;

/// What backup `b`'s host says its last pull left (`answer`: its agent's).
fn backup_report(
    b: &super::Backup,
    answer: Option<&Value>,
    problems: &mut Vec<String>,
) -> BackupReport {
    let mut report = BackupReport {
        name: b.name.clone(),
        host: b.to.clone(),
        every_seconds: b.every_seconds,
        pulled: None,
        pulled_seconds_ago: None,
        sources: Vec::new(),
        error: None,
    };
    let Some(a) = answer else {
        // Its host's own line says it is down.
        report.error = Some(format!("{} is down", b.to));
        return report;
    };
    let now = a["time"].as_f64();
    let found = (a["backups"].as_array().into_iter().flatten()).find(|x| x["name"] == b.name);
    let Some(found) = found else {
        let e = format!("{}'s agent does not know it (apply the spec)", b.to);
        problems.push(format!("backup {}: {e}", b.name));
        report.error = Some(e);
        return report;
    };
    if let Some(e) = found["error"].as_str() {
        problems.push(format!("backup {}: {}: {e}", b.name, b.to));
        report.error = Some(e.to_string());
        return report;
    }
    report.pulled = found["pulled"].as_bool();
    let ago = |t: Option<f64>| Some(now? - t?).map(|s| s.max(0.0));
    report.pulled_seconds_ago = ago(found["time"].as_f64());
    let stale = BACKUP_STALE_INTERVALS * b.every_seconds as f64 + BACKUP_SLACK_SECONDS;
    for s in found["sources"].as_array().into_iter().flatten() {
        let source = BackupSource {
            host: s["host"].as_str().unwrap_or("?").to_string(),
            newest: s["newest"].as_str().map(str::to_string),
            age_seconds: ago(s["newest_time"].as_f64()),
            bytes: s["newest_bytes"].as_u64(),
            copies: s["copies"].as_u64(),
            error: s["error"].as_str().map(str::to_string),
        };
        if let Some(e) = &source.error {
            problems.push(format!(
                "backup {}: the last pull from {} failed: {e}",
                b.name, source.host
            ));
        }
        if let Some(age) = source.age_seconds.filter(|age| *age > stale) {
            problems.push(format!(
                "backup {}: the newest copy of {} on {} is {} old (it pulls every {})",
                b.name,
                source.host,
                b.to,
                span(age),
                span(b.every_seconds as f64)
            ));
        }
        report.sources.push(source);
    }
    report
}

fn lock_report<'a>(
    fleet: &Fleet,
    answer: impl Fn(&str) -> Option<&'a Value>,
) -> Option<LockReport> {
    let mut found: Option<(crate::agent::lease::Lease, f64, Vec<String>)> = None;
    for h in &fleet.hosts {
        let Some(a) = answer(&h.name) else { continue };
        let Ok(lease) = serde_json::from_value::<crate::agent::lease::Lease>(a["lease"].clone())
        else {
            continue;
        };
        let now = a["time"].as_f64().unwrap_or(lease.since);
        match &mut found {
            Some((l, _, hosts)) if l.holder.token == lease.holder.token => {
                hosts.push(h.name.clone())
            }
            Some(_) => {}
            None => found = Some((lease, now, vec![h.name.clone()])),
        }
    }
    let (lease, now, hosts) = found?;
    Some(LockReport {
        who: lease.holder.who,
        from: lease.holder.from,
        pid: lease.holder.pid,
        what: lease.holder.what,
        since_seconds_ago: now - lease.since,
        lapses_in_seconds: lease.expires - now,
        hosts,
    })
}

/// The report as tables.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} hosts, {} apps, {} databases",
        r.spec,
        r.hosts.len(),
        r.apps.len(),
        r.databases.len()
    );
    let _ = writeln!(out);
    let mut rows = vec![row(&[
        "HOST", "ADDRESS", "AGENT", "LOAD", "MEMORY", "DISKS",
    ])];
    for h in &r.hosts {
        if let Some(down) = &h.down {
            let heard = match (&down.heard_seconds_ago, &down.heard_by) {
                (Some(ago), Some(by)) => format!("DOWN: last heard {} ago by {by}", span(*ago)),
                _ => "DOWN: not heard since this check began".into(),
            };
            rows.push(vec![
                h.name.clone(),
                h.address.clone(),
                heard,
                String::new(),
                String::new(),
                down.error.clone(),
            ]);
            continue;
        }
        let version = match h.version.as_deref() {
            Some(v) if v == r.version => v.to_string(),
            Some(v) => format!("{v} (this sitec is {})", r.version),
            None => "?".into(),
        };
        let agent = format!(
            "up {}, {version}",
            span(h.agent_uptime_seconds.unwrap_or(0.0))
        );
        let load = h.load.map_or("?".into(), |l| format!("{:.2}", l[0]));
        let memory = h.memory.as_ref().map_or("?".into(), |m| {
            let (total, available) = (
                m["total"].as_f64().unwrap_or(0.0),
                m["available"].as_f64().unwrap_or(0.0),
            );
            format!("{} of {} used", bytes(total - available), bytes(total))
        });
        let disks: Vec<String> = (h.disks.iter())
            .map(|d| match used_share(d) {
                Some(u) => format!(
                    "{} {} {:.0}%",
                    d["holds"].as_str().unwrap_or("?"),
                    d["path"].as_str().unwrap_or("?"),
                    u * 100.0
                ),
                None => format!(
                    "{} {} ?",
                    d["holds"].as_str().unwrap_or("?"),
                    d["path"].as_str().unwrap_or("?")
                ),
            })
            .collect();
        rows.push(vec![
            h.name.clone(),
            h.address.clone(),
            agent,
            load,
            memory,
            disks.join(", "),
        ]);
    }
    out.push_str(&table(&rows));
    if !r.apps.is_empty() {
        let _ = writeln!(out);
        let balancers: Vec<String> = (r.apps.iter().flat_map(|a| &a.runners))
            .flat_map(|x| x.rotation.iter().map(|b| b.balancer.clone()))
            .fold(Vec::new(), |mut seen, b| {
                if !seen.contains(&b) {
                    seen.push(b);
                }
                seen
            });
        let mut head = vec!["APP".to_string(), "RUNNER".into(), "UNITS".into()];
        head.extend(balancers.iter().map(|b| b.to_uppercase()));
        let mut rows = vec![head];
        for a in &r.apps {
            for x in &a.runners {
                let runner = if x.leader {
                    format!("{} (leader)", x.host)
                } else {
                    x.host.clone()
                };
                let units = match &x.error {
                    Some(e) => e.clone(),
                    None => (x.units.iter())
                        .map(|u| {
                            format!(
                                "{} {}",
                                short_unit(u["unit"].as_str().unwrap_or("?"), &a.name),
                                u["sub"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let mut row = vec![a.name.clone(), runner, units];
                for b in &balancers {
                    let cell = x
                        .rotation
                        .iter()
                        .find(|y| &y.balancer == b)
                        .map_or(String::new(), rotation_cell);
                    row.push(cell);
                }
                rows.push(row);
            }
        }
        out.push_str(&table(&rows));
    }
    if !r.databases.is_empty() {
        let _ = writeln!(out);
        let mut rows = vec![row(&[
            "DATABASE",
            "ENGINE",
            "PRIMARY",
            "STANDBY",
            "REPLICATION",
        ])];
        for d in &r.databases {
            let replication = match (&d.error, &d.replication) {
                (Some(e), _) => e.clone(),
                // Redis tells no lag in seconds.
                (None, Some(state)) => format!(
                    "{state}, {} behind{}",
                    d.lag_bytes.map_or("?".into(), |b| bytes(b as f64)),
                    d.lag_seconds
                        .map_or(String::new(), |s| format!(", {s:.1} s"))
                ),
                (None, None) => "-".into(),
            };
            rows.push(vec![
                d.name.clone(),
                d.engine.clone(),
                d.primary
                    .clone()
                    .unwrap_or_else(|| format!("{}?", d.spec_primary)),
                d.standby.clone().unwrap_or_else(|| "-".into()),
                replication,
            ]);
        }
        out.push_str(&table(&rows));
    }
    if !r.backups.is_empty() {
        let _ = writeln!(out);
        let mut rows = vec![row(&["BACKUP", "ON", "FROM", "NEWEST COPY", "SIZE"])];
        for b in &r.backups {
            let mut line = |from: &str, newest: String, size: String| {
                rows.push(vec![
                    b.name.clone(),
                    b.host.clone(),
                    from.to_string(),
                    newest,
                    size,
                ]);
            };
            if let Some(e) = &b.error {
                line("-", e.clone(), String::new());
            } else if b.pulled == Some(false) {
                let every = span(b.every_seconds as f64);
                line(
                    "-",
                    format!("no pull has finished yet (every {every})"),
                    String::new(),
                );
            }
            for s in &b.sources {
                let newest = match (&s.newest, s.age_seconds) {
                    (Some(stamp), Some(age)) => format!("{} old ({stamp})", span(age)),
                    (Some(stamp), None) => stamp.clone(),
                    (None, _) => "no copy yet".into(),
                };
                let newest = match &s.error {
                    Some(e) => format!("{newest}; last pull failed: {e}"),
                    None => newest,
                };
                line(
                    &s.host,
                    newest,
                    s.bytes.map_or(String::new(), |n| bytes(n as f64)),
                );
            }
        }
        out.push_str(&table(&rows));
    }
    let _ = writeln!(out);
    match &r.lock {
        Some(l) => {
            let _ = writeln!(
                out,
                "LOCK  held by {} on {} (pid {}) for `{}`, since {} ago, lapsing in {} unless renewed (on {})",
                l.who, l.from, l.pid, l.what, span(l.since_seconds_ago), span(l.lapses_in_seconds), l.hosts.join(", ")
            );
        }
        None => {
            let _ = writeln!(out, "LOCK  free");
        }
    }
    if !r.problems.is_empty() {
        let _ = writeln!(out);
        for p in &r.problems {
            let _ = writeln!(out, "problem: {p}");
        }
    }
    out
}

fn rotation_cell(r: &Rotation) -> String {
    if let Some(e) = &r.error {
        return format!("? {e}");
    }
    match (r.in_rotation, &r.out) {
        (Some(true), _) => format!("in ({} in flight)", r.in_flight.unwrap_or(0)),
        (_, Some(out)) => format!(
            "OUT {}: {} ({} ago)",
            out["kind"].as_str().unwrap_or("?"),
            out["why"].as_str().unwrap_or("?"),
            span(out["seconds"].as_f64().unwrap_or(0.0))
        ),
        _ => "?".into(),
    }
}

/// `sitec-app-blog.service` -> `gunicorn`, `sitec-app-blog-worker-celery.service` -> `celery`.
fn short_unit(unit: &str, app: &str) -> String {
    let stem = unit.trim_end_matches(".service");
    let prefix = format!("sitec-app-{app}");
    match stem.strip_prefix(&prefix) {
        Some("") => "gunicorn".into(),
        Some(rest) => rest
            .trim_start_matches("-worker-")
            .trim_start_matches('-')
            .to_string(),
        None => stem.to_string(),
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_string()).collect()
}

/// Rows as columns two spaces apart, the last column unpadded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1.2 GiB`, `340 MiB`, `12 KiB`, `512 B`.
fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n.max(0.0);
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < units.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 || n >= 100.0 {
        format!("{n:.0} {}", units[unit])
    } else {
        format!("{n:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::keys::derive;

    fn fleet() -> Fleet {
        let host = |name: &str, address: &str, roles: &[&str]| super::super::Host {
            name: name.into(),
            address: address.into(),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            control: format!("tcp://{address}:7701"),
            key: derive(name).public,
        };
        Fleet {
            spec: "fleet.site".into(),
            hosts: vec![
                host("lb1", "10.0.0.1", &["balancer"]),
                host("run1", "10.0.0.2", &["runner"]),
                host("db1", "10.0.0.3", &["postgres"]),
                host("db2", "10.0.0.4", &["postgres"]),
            ],
            apps: vec![super::super::App {
                name: "blog".into(),
                runners: vec!["run1".into()],
            }],
            databases: vec![super::super::Database {
                name: "main".into(),
                engine: "postgres".into(),
                primary: "db1".into(),
                standby: Some("db2".into()),
                cluster: Some("main".into()),
                port: 5432,
            }],
            backups: Vec::new(),
            operator: derive("operator"),
        }
    }

    fn answers() -> BTreeMap<String, Result<Value, String>> {
        let base = |host: &str| {
            json!({
                "ok": true, "host": host, "version": env!("CARGO_PKG_VERSION"), "time": 1000.0,
                "uptime_seconds": 120, "load": [0.5, 0.4, 0.3],
                "memory": {"total": 8_589_934_592_u64, "available": 4_294_967_296_u64},
                "disks": [{"path": "/var/log", "holds": "logs", "total": 100, "used": 95, "available": 5}],
                "apps": [], "postgres": [], "balancer": null, "lease": null,
            })
        };
        let mut lb1 = base("lb1");
        lb1["balancer"] = json!({"routes": [{"app": "blog", "backends": [
            {"addr": "10.0.0.2:8000", "host": "run1", "in_rotation": false, "in_flight": 0,
             "out": {"kind": "drained", "why": "restart by alice", "seconds": 2.0}}]}],
            "heard_seconds_ago": {"run1": 0.3}});
        lb1["lease"] = json!({"who": "alice", "from": "laptop", "pid": 7, "what": "restart blog", "token": "t", "since": 990.0, "expires": 1020.0});
        let mut run1 = base("run1");
        run1["apps"] = json!([{"name": "blog", "healthy": false, "serving": true, "drain": "restart by alice",
            "units": [{"unit": "sitec-app-blog.service", "active": "active", "sub": "running"},
                      {"unit": "sitec-app-blog-worker-celery.service", "active": "failed", "sub": "failed"}]}]);
        let mut db1 = base("db1");
        db1["postgres"] = json!([{"cluster": "main", "port": 5432, "role": "primary", "lsn": 5000,
            "standbys": [{"address": "10.0.0.4", "name": "db2", "state": "streaming", "lag_bytes": 100.0, "lag_seconds": 0.25}]}]);
        let mut db2 = base("db2");
        db2["postgres"] = json!([{"cluster": "main", "port": 5432, "role": "standby", "lsn": 4990, "replay_lsn": 4900}]);
        [("lb1", lb1), ("run1", run1), ("db1", db1), ("db2", db2)]
            .into_iter()
            .map(|(h, a)| (h.to_string(), Ok(a)))
            .collect()
    }

    #[test]
    fn redis_replication_is_reported_from_both_servers() {
        let mut fleet = fleet();
        fleet.databases = vec![super::super::Database {
            name: "cache".into(),
            engine: "redis".into(),
            primary: "db1".into(),
            standby: Some("db2".into()),
            cluster: None,
            port: 6379,
        }];
        let mut answers = answers();
        fn set(answers: &mut BTreeMap<String, Result<Value, String>>, host: &str, redis: Value) {
            if let Some(Ok(a)) = answers.get_mut(host) {
                a["redis"] = redis;
            }
        }
        set(
            &mut answers,
            "db1",
            json!([{"name": "cache", "port": 6379, "role": "primary", "offset": 3000,
            "replicas": [{"address": "10.0.0.4", "port": 6379, "offset": 2900}]}]),
        );
        set(
            &mut answers,
            "db2",
            json!([{"name": "cache", "port": 6379, "role": "replica",
            "primary": "10.0.0.3", "link": "connected", "offset": 2950}]),
        );
        let r = build(&fleet, &answers, 1000.0);
        let db = &r.databases[0];
        assert_eq!(
            (
                db.primary.as_deref(),
                db.standby.as_deref(),
                db.replication.as_deref(),
                db.lag_bytes,
                &db.error
            ),
            (
                Some("db1"),
                Some("db2"),
                Some("connected"),
                Some(100),
                &None
            ),
            "{:?}",
            r.problems
        );
        assert!(
            render(&r).contains("connected, 100 B behind"),
            "{}",
            render(&r)
        );
        // A replica that lost its primary is a problem; so is a server its
        // agent cannot ask.
        set(
            &mut answers,
            "db2",
            json!([{"name": "cache", "port": 6379, "role": "replica",
            "primary": "10.0.0.3", "link": "connect", "offset": 2950}]),
        );
        let r = build(&fleet, &answers, 1000.0);
        assert!(
            r.problems
                .contains(&"database cache: its replica db2 is connect".to_string()),
            "{:?}",
            r.problems
        );
        set(
            &mut answers,
            "db1",
            json!([{"name": "cache", "port": 6379, "error": "Redis refused user sitec-agent (WRONGPASS); apply the spec"}]),
        );
        let r = build(&fleet, &answers, 1000.0);
        assert!(
            r.problems
                .iter()
                .any(|p| p.starts_with("database cache: db1: Redis refused")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn backups_report_their_newest_copies_and_what_is_wrong() {
        let mut fleet = fleet();
        fleet.backups = vec![super::super::Backup {
            name: "nightly".into(),
            from: vec!["db1".into(), "db2".into()],
            to: "db2".into(),
            every_seconds: 60,
        }];
        let mut answers = answers();
        let mut set = |backups: Value| {
            if let Some(Ok(a)) = answers.get_mut("db2") {
                a["backups"] = backups;
            }
            build(&fleet, &answers, 1000.0)
        };
        // Before the first pull: said, and no problem.
        let r = set(json!([{"name": "nightly", "pulled": false}]));
        assert_eq!(r.backups[0].pulled, Some(false));
        assert!(
            !r.problems.iter().any(|p| p.contains("backup")),
            "{:?}",
            r.problems
        );
        assert!(
            render(&r).contains("no pull has finished yet (every 1m00s)"),
            "{}",
            render(&r)
        );
        // A fresh copy of db1, a stale one of db2 whose last pull failed.
        let r = set(
            json!([{"name": "nightly", "pulled": true, "time": 990, "sources": [
            {"host": "db1", "newest": "2026-12-07T001500Z", "newest_time": 970, "newest_bytes": 2048, "copies": 3, "error": null},
            {"host": "db2", "newest": "2026-12-06T001500Z", "newest_time": 100, "newest_bytes": 1024, "copies": 1,
             "error": "db2 (10.0.0.4): list: Connection refused"}]}]),
        );
        let b = &r.backups[0];
        assert_eq!((b.host.as_str(), b.pulled_seconds_ago), ("db2", Some(10.0)));
        assert_eq!(
            b.sources[0].age_seconds,
            Some(30.0),
            "by the backup host's clock"
        );
        assert_eq!(b.sources[0].bytes, Some(2048));
        let about: Vec<&String> = r.problems.iter().filter(|p| p.contains("backup")).collect();
        assert_eq!(about.len(), 2, "{about:?}");
        assert!(
            about[0].contains("the last pull from db2 failed: db2 (10.0.0.4): list"),
            "{about:?}"
        );
        assert!(
            about[1].contains("the newest copy of db2 on db2 is 15m00s old"),
            "{about:?}"
        );
        let table = render(&r);
        assert!(table.contains("30s old (2026-12-07T001500Z)"), "{table}");
        // An agent that cannot read the file says why.
        let r = set(
            json!([{"name": "nightly", "error": "/var/lib/sitec-backup/nightly.status.json: Permission denied"}]),
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.starts_with("backup nightly: db2: /var/lib")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn every_part_of_the_fleet_is_reported() {
        let r = build(&fleet(), &answers(), 1000.0);
        let runner = &r.apps[0].runners[0];
        assert_eq!(
            (runner.healthy, runner.serving, runner.leader),
            (Some(false), Some(true), true)
        );
        assert_eq!(runner.drain.as_deref(), Some("restart by alice"));
        assert_eq!(
            runner.rotation[0].out.as_ref().map(|o| o["kind"].clone()),
            Some(json!("drained"))
        );
        let db = &r.databases[0];
        assert_eq!(
            (db.primary.as_deref(), db.standby.as_deref()),
            (Some("db1"), Some("db2"))
        );
        assert_eq!(
            (db.lag_bytes, db.lag_seconds, db.replication.as_deref()),
            (Some(100), Some(0.25), Some("streaming"))
        );
        let lock = r.lock.as_ref().expect("a lock");
        assert_eq!((lock.who.as_str(), lock.hosts.len()), ("alice", 1));
        // A drained runner is no problem; a failed worker and a full disk are.
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("celery.service is failed")),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems.iter().any(|p| p == "lb1: /var/log is 95% full"),
            "{:?}",
            r.problems
        );
        assert!(
            !r.problems.iter().any(|p| p.contains("rotation")),
            "{:?}",
            r.problems
        );
        let text = render(&r);
        for part in [
            "OUT drained: restart by alice (2s ago)",
            "celery failed",
            "streaming, 100 B behind, 0.2 s",
            "LOCK  held by alice on laptop (pid 7) for `restart blog`",
        ] {
            assert!(text.contains(part), "{part}:\n{text}");
        }
    }

    /// A runner the balancer has not heard for over a second is not
    /// waited for once every other host has answered; one heard lately,
    /// or a host no balancer follows, is.
    #[test]
    fn a_silent_runner_is_not_waited_for() {
        let fleet = fleet();
        let mut all = answers();
        let heard = |all: &mut BTreeMap<String, Result<Value, String>>, ago: f64| {
            if let Some(Ok(lb1)) = all.get_mut("lb1") {
                lb1["balancer"]["heard_seconds_ago"]["run1"] = json!(ago);
            }
        };
        let so_far = |all: &BTreeMap<String, Result<Value, String>>, without: &[&str]| {
            let map: BTreeMap<String, Value> = (all.iter())
                .filter(|(h, _)| !without.contains(&h.as_str()))
                .filter_map(|(h, a)| Some((h.clone(), a.as_ref().ok()?.clone())))
                .collect();
            map
        };
        let settled_without = |all: &BTreeMap<String, Result<Value, String>>, without: &[&str]| {
            let owned = so_far(all, without);
            let by_host: BTreeMap<&str, &Value> =
                owned.iter().map(|(h, v)| (h.as_str(), v)).collect();
            settled(&fleet, &by_host)
        };
        assert!(settled_without(&all, &[]), "every host answered");
        heard(&mut all, 0.3);
        assert!(!settled_without(&all, &["run1"]), "run1 heard 0.3 s ago");
        heard(&mut all, 4.0);
        assert!(settled_without(&all, &["run1"]), "run1 silent for 4 s");
        assert!(
            !settled_without(&all, &["run1", "db1"]),
            "db1: nobody follows it"
        );
        assert!(
            !settled_without(&all, &["run1", "lb1"]),
            "no balancer answered yet"
        );
    }

    #[test]
    fn a_host_down_is_reported_with_when_it_was_last_heard() {
        let mut a = answers();
        a.insert(
            "run1".into(),
            Err("no answer from tcp://10.0.0.2:7701 within 800ms".into()),
        );
        a.insert("db1".into(), Err("no answer".into()));
        let r = build(&fleet(), &a, 1000.0);
        let run1 = &r.hosts[1];
        assert!(!run1.up);
        let down = run1.down.as_ref().expect("down");
        assert_eq!(
            (down.heard_seconds_ago, down.heard_by.as_deref()),
            (Some(0.3), Some("lb1's balancer"))
        );
        assert!(
            r.problems.iter().any(|p| p.starts_with("run1 is down")),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("database main: db1 is down")),
            "{:?}",
            r.problems
        );
        // The standby says it is a standby: no primary is known.
        assert_eq!(r.databases[0].primary, None);
        assert!(render(&r).contains("DOWN: last heard 0s ago by lb1's balancer"));
    }
}

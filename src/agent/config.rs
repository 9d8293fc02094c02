//! `Config`: the agent's TOML file, as `templates/agent/agent.toml.hbs`
//! renders it, and its validation. The file is written by sitec, so a
//! problem in it is usually a stale or hand-edited copy: every error names
//! the file, the line and the key, and says what to write instead. It reads
//! the one file and opens nothing else (the key file is only named here;
//! `bus::KeyPair::load` reads it).

use crate::bus::{Peer, PublicKey};
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// What the file holds, with the place of every value that is checked.
/// Unknown keys are errors, so a typo never silently falls back to a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    host: Spanned<String>,
    /// The agent's own folder: leases, log offsets.
    state_dir: Spanned<String>,
    bus: RawBus,
    collector: Option<RawCollector>,
    #[serde(default, rename = "app")]
    apps: Vec<RawApp>,
    #[serde(default, rename = "log")]
    logs: Vec<RawLog>,
    #[serde(default, rename = "disk")]
    disks: Vec<RawDisk>,
    #[serde(default, rename = "postgres")]
    postgres: Vec<RawPostgres>,
    #[serde(default, rename = "redis")]
    redis: Vec<RawRedis>,
    #[serde(default, rename = "backup")]
    backups: Vec<RawBackup>,
    balancer: Option<RawBalancer>,
}

/// A backup this host keeps: its pull's status file (`sitec data pull`
/// writes it, root's, readable by all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    name: Spanned<String>,
    status_file: Spanned<String>,
}

/// A file system whose use `status` reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    path: Spanned<String>,
    /// What it holds: `logs`, `data`, `apps`, `backups`.
    holds: Spanned<String>,
}

/// A Postgres cluster on this host, primary or standby.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    cluster: Spanned<String>,
    port: u16,
}

/// A Redis server on this host, primary or replica: its user `sitec-agent`
/// may ask `ROLE` and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    name: Spanned<String>,
    port: u16,
    password: String,
    ca_file: Spanned<String>,
}

impl std::fmt::Debug for RawRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawRedis {{ name: {:?}, port: {} }}",
            self.name, self.port
        )
    }
}

/// The balancer on this host, whose rotation `status` reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalancer {
    admin: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBus {
    control: Spanned<String>,
    heartbeat: Spanned<String>,
    key_file: Spanned<String>,
    operator: Spanned<String>,
    #[serde(default)]
    heartbeat_readers: Vec<RawPeer>,
    #[serde(default)]
    log_collectors: Vec<RawCollectorEnd>,
}

/// A peer a bound socket admits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Spanned<String>,
    key: Spanned<String>,
}

/// A collector this agent ships to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollectorEnd {
    endpoint: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    endpoint: Spanned<String>,
    dir: Spanned<String>,
    #[serde(default)]
    senders: Vec<RawPeer>,
    /// Per sending host (`collector::Limits`; defaults there).
    rate_lines_per_second: Option<u32>,
    burst_lines: Option<u32>,
    quota_bytes: Option<u64>,
    max_files: Option<usize>,
    rotate_bytes: Option<u64>,
    keep_rotated: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    service: Spanned<String>,
    #[serde(default)]
    workers: Vec<Spanned<String>>,
    /// gunicorn's socket, which `restart` asks until it answers.
    socket: Option<Spanned<String>>,
    /// The Host header of that question (one of the app's domains).
    domain: Option<Spanned<String>>,
    /// `sitec run`'s socket: systemd starts a session as the app's user
    /// for each connection (`agent::run`).
    run_socket: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    path: Spanned<String>,
    tag: Spanned<String>,
    owner: Spanned<String>,
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    /// The agent's own folder (leases, log offsets).
    pub state_dir: PathBuf,
    /// ROUTER endpoint (control requests).
    pub control: String,
    /// PUB endpoint (heartbeats).
    pub heartbeat: String,
    /// This host's bus key (secret; `bus::KeyPair::load`).
    pub key_file: PathBuf,
    /// The operator's public key: the only one control requests come from.
    pub operator: PublicKey,
    /// Who may subscribe to the heartbeats (the balancers).
    pub heartbeat_readers: Vec<Peer>,
    /// Every collector's ROUTER endpoint and key; each line goes to all of them.
    pub log_collectors: Vec<CollectorEnd>,
    /// Set on a `logs` host: where it binds its ROUTER and files the lines.
    pub collector: Option<Collector>,
    pub apps: Vec<App>,
    pub logs: Vec<Log>,
    pub disks: Vec<Disk>,
    pub postgres: Vec<Postgres>,
    pub redis: Vec<Redis>,
    pub backups: Vec<Backup>,
    /// The local balancer's admin listener (`HOST:PORT`), on a balancer host.
    pub balancer_admin: Option<String>,
}

/// A file system `status` reports, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub holds: String,
}

/// A Postgres cluster on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    pub cluster: String,
    pub port: u16,
}

/// A Redis server on this host, and the password of its user
/// `sitec-agent` (never shown: its `Debug` leaves it out).
#[derive(Clone, PartialEq, Eq)]
pub struct Redis {
    pub name: String,
    pub port: u16,
    pub password: String,
    /// The fleet CA, which Redis's certificate (TLS only) is checked against.
    pub ca_file: PathBuf,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis {{ name: {:?}, port: {} }}", self.name, self.port)
    }
}

/// A backup this host keeps, and where its pull says what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub name: String,
    pub status_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub endpoint: String,
    pub dir: PathBuf,
    /// The agents whose lines it takes, by the names it files them under.
    pub senders: Vec<Peer>,
    /// What each of them may cost its disk.
    pub limits: super::collector::Limits,
}

/// A collector's ROUTER endpoint and the key it must prove it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorEnd {
    pub endpoint: String,
    pub key: PublicKey,
}

/// An app on this host and its systemd units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub service: String,
    pub workers: Vec<String>,
    /// gunicorn's Unix socket, asked `GET /` until it answers after a restart.
    pub socket: Option<PathBuf>,
    /// The Host header that question carries.
    pub domain: Option<String>,
    /// Where `sitec run` opens a session as the app's user.
    pub run_socket: Option<PathBuf>,
}

impl App {
    /// The service, then the workers.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.service.as_str()).chain(self.workers.iter().map(String::as_str))
    }
}

/// A log file the agent follows and ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub path: PathBuf,
    pub tag: String,
    /// The user the file must belong to: one owned by anyone else is not
    /// read (`follow`).
    pub owner: String,
}

const REGENERATE: &str =
    "this file is written by sitec: render it again from the spec (`sitec apply`)";

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|(span, message)| {
            let (line, column) = line_column(&text, span.start);
            format!("{}:{line}:{column}: {message}", path.display())
        })
    }

    /// Parses and checks the text of a config; an error is its byte range
    /// and what to do about it.
    pub fn parse(text: &str) -> Result<Config, (Range<usize>, String)> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            (e.span().unwrap_or(0..0), format!("{message}; {REGENERATE}"))
        })?;
        raw.check()
    }
}

type Checked<T> = Result<T, (Range<usize>, String)>;

impl Raw {
    fn check(self) -> Checked<Config> {
        name("host", &self.host)?;
        let control = endpoint("bus.control", &self.bus.control)?;
        let heartbeat = endpoint("bus.heartbeat", &self.bus.heartbeat)?;
        if control == heartbeat {
            return Err(problem(
                &self.bus.heartbeat,
                "bus.heartbeat: the same endpoint as bus.control; each socket needs its own port (sitec uses 7701 for control and 7702 for heartbeats)",
            ));
        }
        let log_collectors = (self.bus.log_collectors.iter().enumerate())
            .map(|(i, c)| {
                let at = format!("bus.log_collectors[{i}]");
                Ok(CollectorEnd {
                    endpoint: endpoint(&format!("{at}.endpoint"), &c.endpoint)?,
                    key: key(&format!("{at}.key"), &c.key)?,
                })
            })
            .collect::<Checked<Vec<_>>>()?;
        let collector = match self.collector {
            Some(c) => Some(Collector {
                endpoint: endpoint("collector.endpoint", &c.endpoint)?,
                dir: absolute("collector.dir", &c.dir)?,
                senders: peers("collector.senders", &c.senders)?,
                limits: c.limits(),
            }),
            None => None,
        };
        let apps = self
            .apps
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.check(i))
            .collect::<Checked<Vec<_>>>()?;
        let mut logs: Vec<Log> = Vec::new();
        for (i, l) in self.logs.iter().enumerate() {
            let path = absolute(&format!("log[{i}].path"), &l.path)?;
            if logs.iter().any(|seen| seen.path == path) {
                return Err(problem(
                    &l.path,
                    &format!(
                        "log[{i}].path: `{}` is listed twice; keep one [[log]] per file",
                        path.display()
                    ),
                ));
            }
            if l.owner.get_ref().is_empty() || l.owner.get_ref().contains([':', '\n', '/']) {
                return Err(problem(&l.owner, &format!("log[{i}].owner: `{}` is not a user name; write the user that writes the file, e.g. \"app-blog\"", l.owner.get_ref())));
            }
            if l.tag.get_ref().trim().is_empty() {
                return Err(problem(&l.tag, &format!("log[{i}].tag: empty; write how collectors file the lines, e.g. \"blog/gunicorn-error.log\"")));
            }
            logs.push(Log {
                path,
                tag: l.tag.get_ref().clone(),
                owner: l.owner.get_ref().clone(),
            });
        }
        let mut disks = Vec::new();
        for (i, d) in self.disks.iter().enumerate() {
            let path = absolute(&format!("disk[{i}].path"), &d.path)?;
            if !["logs", "data", "apps", "backups"].contains(&d.holds.get_ref().as_str()) {
                return Err(problem(&d.holds, &format!("disk[{i}].holds: `{}` is not what sitec reports; write \"logs\", \"data\", \"apps\" or \"backups\"", d.holds.get_ref())));
            }
            disks.push(Disk {
                path,
                holds: d.holds.get_ref().clone(),
            });
        }
        let postgres = (self.postgres.iter().enumerate())
            .map(|(i, p)| {
                name(&format!("postgres[{i}].cluster"), &p.cluster)?;
                Ok(Postgres {
                    cluster: p.cluster.get_ref().clone(),
                    port: p.port,
                })
            })
            .collect::<Checked<Vec<_>>>()?;
        let redis = (self.redis.iter().enumerate())
            .map(|(i, r)| {
                name(&format!("redis[{i}].name"), &r.name)?;
                Ok(Redis {
                    name: r.name.get_ref().clone(),
                    port: r.port,
                    password: r.password.clone(),
                    ca_file: absolute(&format!("redis[{i}].ca_file"), &r.ca_file)?,
                })
            })
            .collect::<Checked<Vec<_>>>()?;
        let backups = (self.backups.iter().enumerate())
            .map(|(i, b)| {
                label(&format!("backup[{i}].name"), &b.name)?;
                Ok(Backup {
                    name: b.name.get_ref().clone(),
                    status_file: absolute(&format!("backup[{i}].status_file"), &b.status_file)?,
                })
            })
            .collect::<Checked<Vec<_>>>()?;
        let balancer_admin = match &self.balancer {
            Some(b) if b.admin.get_ref().parse::<std::net::SocketAddr>().is_err() => {
                return Err(problem(&b.admin, &format!("balancer.admin: `{}` is not an address; write HOST:PORT, e.g. \"127.0.0.1:9100\"", b.admin.get_ref())));
            }
            Some(b) => Some(b.admin.get_ref().clone()),
            None => None,
        };
        Ok(Config {
            host: self.host.into_inner(),
            state_dir: absolute("state_dir", &self.state_dir)?,
            disks,
            postgres,
            redis,
            backups,
            balancer_admin,
            control,
            heartbeat,
            key_file: absolute("bus.key_file", &self.bus.key_file)?,
            operator: key("bus.operator", &self.bus.operator)?,
            heartbeat_readers: peers("bus.heartbeat_readers", &self.bus.heartbeat_readers)?,
            log_collectors,
            collector,
            apps,
            logs,
        })
    }
}

impl RawCollector {
    fn limits(&self) -> super::collector::Limits {
        let d = super::collector::Limits::default();
        super::collector::Limits {
            rate: self.rate_lines_per_second.unwrap_or(d.rate).max(1),
            burst: self.burst_lines.unwrap_or(d.burst).max(1),
            quota: self.quota_bytes.unwrap_or(d.quota),
            files: self.max_files.unwrap_or(d.files),
            rotate: self.rotate_bytes.unwrap_or(d.rotate).max(1024),
            keep: self.keep_rotated.unwrap_or(d.keep).max(1),
        }
    }
}

impl RawApp {
    fn check(self, i: usize) -> Checked<App> {
        name(&format!("app[{i}].name"), &self.name)?;
        unit(&format!("app[{i}].service"), &self.service)?;
        for (j, w) in self.workers.iter().enumerate() {
            unit(&format!("app[{i}].workers[{j}]"), w)?;
        }
        let socket = match &self.socket {
            Some(s) => Some(absolute(&format!("app[{i}].socket"), s)?),
            None => None,
        };
        let run_socket = match &self.run_socket {
            Some(s) => Some(absolute(&format!("app[{i}].run_socket"), s)?),
            None => None,
        };
        Ok(App {
            name: self.name.into_inner(),
            service: self.service.into_inner(),
            workers: self.workers.into_iter().map(Spanned::into_inner).collect(),
            socket,
            run_socket,
            domain: self.domain.map(Spanned::into_inner),
        })
    }
}

fn problem<T>(value: &Spanned<T>, message: &str) -> (Range<usize>, String) {
    (value.span(), message.to_owned())
}

/// A host or app name, as the compiler checks them (`names`).
fn name(key: &str, value: &Spanned<String>) -> Checked<()> {
    let v = value.get_ref();
    match crate::names::fleet_name_problem(v, crate::names::HOST_NAME_LONGEST) {
        None => Ok(()),
        Some(_) => Err(problem(value, &format!("{key}: `{v}` is not a name; names are lowercase letters, digits, `_` and `-`, starting with a letter, e.g. \"run1\""))),
    }
}

/// A name the spec gives something other than a host (a backup's): the
/// language's identifiers, capitals included (`backup Nightly`); shown in
/// reports, never part of a path.
fn label(key: &str, value: &Spanned<String>) -> Checked<()> {
    let v = value.get_ref();
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(problem(value, &format!("{key}: `{v}` is not a name; write the spec's name for it (letters, digits, `_` and `-`)")))
    }
}

/// A systemd unit name, passed to `systemctl`: never an option.
fn unit(key: &str, value: &Spanned<String>) -> Checked<()> {
    let v = value.get_ref();
    let ok = v.contains('.')
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(problem(
            value,
            &format!("{key}: `{v}` is not a systemd unit; write its full name, e.g. \"sitec-app-blog.service\""),
        ))
    }
}

/// `tcp://HOST:PORT` (`is_tcp_endpoint`).
fn endpoint(key: &str, value: &Spanned<String>) -> Checked<String> {
    let v = value.get_ref();
    if crate::bus::is_tcp_endpoint(v) {
        Ok(v.clone())
    } else {
        Err(problem(
            value,
            &format!("{key}: `{v}` is not a TCP endpoint; write tcp://ADDRESS:PORT, e.g. \"tcp://10.0.0.5:7701\""),
        ))
    }
}

/// A CURVE public key in Z85 (40 characters).
fn key(at: &str, value: &Spanned<String>) -> Checked<PublicKey> {
    PublicKey::parse(value.get_ref())
        .map_err(|e| problem(value, &format!("{at}: {e}; {REGENERATE}")))
}

/// Named keys: each name a host name, each key a public key.
fn peers(at: &str, raw: &[RawPeer]) -> Checked<Vec<Peer>> {
    (raw.iter().enumerate())
        .map(|(i, p)| {
            name(&format!("{at}[{i}].name"), &p.name)?;
            Ok(Peer {
                name: p.name.get_ref().clone(),
                key: key(&format!("{at}[{i}].key"), &p.key)?,
            })
        })
        .collect()
}

fn absolute(key: &str, value: &Spanned<String>) -> Checked<PathBuf> {
    let v = value.get_ref();
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err(problem(
            value,
            &format!("{key}: `{v}` is not an absolute path; write it from `/`, e.g. \"/var/log/sitec/apps/blog/gunicorn-error.log\""),
        ))
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rendered file; every key is KEY.
    const LAYOUT: &str = r#"host = "run1"
state_dir = "/var/lib/sitec-agent"

[bus]
control = "tcp://127.0.0.1:7701"
heartbeat = "tcp://127.0.0.1:7702"
log_collectors = [{ endpoint = "tcp://127.0.0.1:7703", key = "KEY" }]
key_file = "/etc/sitec/bus/host.key"
operator = "KEY"
heartbeat_readers = [{ name = "lb1", key = "KEY" }]

[collector]
endpoint = "tcp://127.0.0.1:7703"
dir = "/var/log/sitec/fleet"
senders = [{ name = "run1", key = "KEY" }]

[[app]]
name = "blog"
service = "sitec-app-blog.service"
workers = ["sitec-app-blog-worker-celery.service"]

[[log]]
path = "/var/log/sitec/apps/blog/gunicorn-error.log"
tag = "blog/gunicorn-error.log"
owner = "app-blog"

[[disk]]
path = "/var/log"
holds = "logs"

[[postgres]]
cluster = "main"
port = 5432

[[redis]]
name = "cache"
port = 6379
password = "PASSWORD-never-shown"
ca_file = "/etc/sitec/fleet-ca.pem"

[[backup]]
name = "nightly"
status_file = "/var/lib/sitec-backup/nightly.status.json"

[balancer]
admin = "127.0.0.1:9100"
"#;

    fn key() -> PublicKey {
        crate::bus::keys::derive("a secret").public
    }

    fn good() -> String {
        LAYOUT.replace("KEY", &key().z85())
    }

    #[test]
    fn reads_the_rendered_layout() {
        let c = Config::parse(&good()).expect("valid");
        assert_eq!(c.host, "run1");
        assert_eq!(c.log_collectors[0].endpoint, "tcp://127.0.0.1:7703");
        assert_eq!((c.operator, c.log_collectors[0].key), (key(), key()));
        assert_eq!(c.heartbeat_readers[0].name, "lb1");
        let units: Vec<&str> = c.apps[0].units().collect();
        assert_eq!(
            units,
            [
                "sitec-app-blog.service",
                "sitec-app-blog-worker-celery.service"
            ]
        );
        let collector = c.collector.clone().expect("collector");
        assert_eq!(collector.dir, Path::new("/var/log/sitec/fleet"));
        assert_eq!(collector.senders[0].name, "run1");
        assert_eq!(c.logs[0].tag, "blog/gunicorn-error.log");
        assert_eq!(c.state_dir, Path::new("/var/lib/sitec-agent"));
        assert_eq!(c.disks[0].holds, "logs");
        assert_eq!(
            (c.postgres[0].cluster.as_str(), c.postgres[0].port),
            ("main", 5432)
        );
        assert_eq!(c.balancer_admin.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!((c.redis[0].name.as_str(), c.redis[0].port), ("cache", 6379));
        assert!(!format!("{c:?}").contains("never-shown"), "{c:?}");
        assert_eq!(c.backups[0].name, "nightly");
    }

    /// Each broken file: the line the error must point at and a word it says.
    #[test]
    fn errors_name_the_line_the_key_and_the_fix() {
        for (from, to, line, says) in [
            (
                "host = \"run1\"",
                "host = \"Run 1\"",
                1,
                "host: `Run 1` is not a name",
            ),
            (
                "control = \"tcp://127.0.0.1:7701\"",
                "control = \"127.0.0.1:7701\"",
                5,
                "write tcp://ADDRESS:PORT",
            ),
            (
                "tcp://127.0.0.1:7702\"",
                "tcp://127.0.0.1:7701\"",
                6,
                "bus.heartbeat: the same endpoint",
            ),
            (
                "endpoint = \"tcp://127.0.0.1:7703\", key",
                "endpoint = \"udp://x\", key",
                7,
                "bus.log_collectors[0].endpoint",
            ),
            (
                "operator = \"",
                "operator = \"short",
                9,
                "bus.operator: a CURVE key is 40 Z85 characters",
            ),
            (
                "name = \"lb1\"",
                "name = \"LB 1\"",
                10,
                "bus.heartbeat_readers[0].name",
            ),
            ("\ndir = \"/var", "\ndir = \"var", 14, "collector.dir"),
            ("state_dir = \"/var", "state_dir = \"var", 2, "state_dir"),
            (
                "service = \"sitec-app-blog.service\"",
                "service = \"--now\"",
                19,
                "app[0].service",
            ),
            ("path = \"/var", "path = \"var", 23, "log[0].path"),
            (
                "tag = \"blog/gunicorn-error.log\"",
                "tag = \" \"",
                24,
                "log[0].tag: empty",
            ),
            ("key_file", "keyfile", 8, "unknown field `keyfile`"),
            (
                "heartbeat = \"tcp://127.0.0.1:7702\"\n",
                "",
                4,
                "missing field `heartbeat`",
            ),
            ("holds = \"logs\"", "holds = \"cats\"", 29, "disk[0].holds"),
            (
                "cluster = \"main\"",
                "cluster = \"Main 2\"",
                32,
                "postgres[0].cluster",
            ),
            (
                "admin = \"127.0.0.1:9100\"",
                "admin = \"localhost\"",
                46,
                "balancer.admin",
            ),
            (
                "name = \"cache\"",
                "name = \"Cache 1\"",
                36,
                "redis[0].name",
            ),
            (
                "ca_file = \"/etc",
                "ca_file = \"etc",
                39,
                "redis[0].ca_file",
            ),
            (
                "status_file = \"/var",
                "status_file = \"var",
                43,
                "backup[0].status_file",
            ),
        ] {
            let good = good();
            assert!(good.contains(from), "{from}");
            let text = good.replacen(from, to, 1);
            let (span, message) = Config::parse(&text).expect_err(to);
            assert!(message.contains(says), "{message} should say {says}");
            assert_eq!(line_column(&text, span.start).0, line, "{message}");
        }
    }

    #[test]
    fn load_names_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, good().replace("tcp://127.0.0.1:7701", "nope")).expect("write");
        let err = Config::load(&path).expect_err("invalid");
        assert!(
            err.starts_with(&format!("{}:5:11: bus.control", path.display())),
            "{err}"
        );
        let err = Config::load(&dir.path().join("missing.toml")).expect_err("missing");
        assert!(err.contains("cannot read"), "{err}");
    }
}

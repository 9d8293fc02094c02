//! `sitec data pull --config FILE`: the backup host's timer job. For each
//! database host of the backup it asks for the list of snapshots (over
//! ssh, with its own key, which the database host lets do nothing but
//! `list` and `send`: see `serve`), receives every snapshot newer than its
//! newest copy with `btrfs send`/`btrfs receive` (incremental from the
//! newest copy both sides still have, so only the blocks that changed
//! travel, and copies share what did not change), then removes the copies
//! `keep` does not keep. A copy is received as `.partial-STAMP` and renamed
//! once whole; beside its subvolumes `pulled.json` says how much travelled.
//! Each pull ends by writing `status` (root's folder, a 0644 file): each
//! source's newest copy, its time and size, and the pull's error, which the
//! host's agent reports to `sitec status` (it cannot read the copies).

use super::retention;
use super::snapshots::{self, partial_name, Snapshot};
use super::stamp::Stamp;
use crate::model::Keep;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `sitec data pull` reads (`backup/pull.toml`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullConfig {
    pub backup: String,
    /// Copies go to `DESTINATION/HOST/STAMP`.
    pub destination: PathBuf,
    /// The private key file (sitec's header lines before the key).
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// Where the pull writes what it holds (`SourceStatus`), for the agent.
    #[serde(default)]
    pub status: Option<PathBuf>,
    pub keep: KeepConfig,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepConfig {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl From<KeepConfig> for Keep {
    fn from(k: KeepConfig) -> Keep {
        Keep {
            hourly: k.hourly,
            daily: k.daily,
            weekly: k.weekly,
            monthly: k.monthly,
        }
    }
}

/// A database host to pull from.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub host: String,
    pub address: String,
    pub port: u16,
    pub user: String,
}

/// What one pulled copy cost (`pulled.json` beside its subvolumes).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Pulled {
    /// Bytes of `btrfs send` stream received.
    pub bytes: u64,
    pub seconds: f64,
    /// The copy it was sent as a difference from, if any.
    pub parent: Option<String>,
}

impl PullConfig {
    pub fn load(path: &Path) -> Result<PullConfig, String> {
        let config: PullConfig = super::read_toml(path)?;
        for s in &config.sources {
            let plain = |t: &str| {
                !t.is_empty()
                    && (t.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            };
            if !plain(&s.host) || !plain(&s.address) || !plain(&s.user) || s.host.contains(':') {
                return Err(format!(
                    "{}: source `{}`: host, address and user are names or addresses, nothing else",
                    path.display(),
                    s.host
                ));
            }
        }
        Ok(config)
    }
}

/// Pulls every source, then prunes each. Returns one line per copy
/// received; fails (after trying every source) naming each that failed.
pub fn pull(config: &PullConfig) -> Result<Vec<String>, String> {
    // One pull at a time (a timer's and one started by hand).
    let _lock = lock(&config.destination)?;
    let work = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let key = work.path().join("key");
    write_key(&config.key, &key)?;
    let mut said = Vec::new();
    let mut failed = Vec::new();
    let mut held = Vec::new();
    for source in &config.sources {
        let failed_before = failed.len();
        let ssh = Ssh {
            key: &key,
            known_hosts: &config.known_hosts,
            source,
        };
        let dir = config.destination.join(&source.host);
        match pull_source(&ssh, &dir) {
            Ok(lines) => said.extend(lines),
            Err(e) => failed.push(format!("{} ({}): {e}", source.host, source.address)),
        }
        if let Err(e) = prune(&dir, &config.keep.into()) {
            failed.push(format!("{}: pruning: {e}", source.host));
        }
        held.push(source_status(&source.host, &dir, &failed[failed_before..]));
    }
    if let Some(path) = &config.status {
        if let Err(e) = write_status(path, &config.backup, &held) {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(said)
    } else {
        Err(format!("backup {}: {}", config.backup, failed.join("; ")))
    }
}

/// What a backup host holds of one source after a pull (the `status`
/// file's `sources[]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceStatus {
    pub host: String,
    /// The newest copy's stamp, and its time in Unix seconds.
    pub newest: Option<String>,
    pub newest_time: Option<i64>,
    /// What the newest copy holds, in bytes (`du --apparent-size`).
    pub newest_bytes: Option<u64>,
    pub copies: usize,
    /// Why this pull of the source failed, if it did.
    pub error: Option<String>,
}

fn source_status(host: &str, dir: &Path, failed: &[String]) -> SourceStatus {
    let (copies, newest, error) = match snapshots::list(dir) {
        Ok(here) => (here.len(), here.last().map(|s| s.stamp.clone()), None),
        Err(e) => (0, None, Some(e)),
    };
    let error = (!failed.is_empty()).then(|| failed.join("; ")).or(error);
    SourceStatus {
        host: host.to_string(),
        newest_time: newest.as_deref().and_then(Stamp::parse).map(|s| s.0),
        newest_bytes: newest
            .as_deref()
            .and_then(|n| snapshots::size(&dir.join(n))),
        newest,
        copies,
        error,
    }
}

/// Writes the status file whole (a temporary file renamed over it, in the
/// same root-only folder), readable by all: it names stamps and sizes only.
fn write_status(path: &Path, backup: &str, sources: &[SourceStatus]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let folder = path.parent().ok_or_else(|| failed(&"no folder"))?;
    // The unit's StateDirectory; made here too for a pull started by hand.
    std::fs::create_dir_all(folder).map_err(|e| failed(&e))?;
    let text = serde_json::json!({
        "backup": backup,
        "time": Stamp::now().0,
        "sources": sources,
    })
    .to_string();
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| failed(&e))?;
    file.write_all(text.as_bytes()).map_err(|e| failed(&e))?;
    (file.as_file())
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| failed(&e))?;
    file.persist(path).map_err(|e| failed(&e))?;
    Ok(())
}

/// Holds `DIR/.lock` until dropped; waits for whoever holds it.
pub fn lock(dir: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

/// ssh wants a file holding the key alone, private.
fn write_key(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = std::fs::read_to_string(from)
        .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let key: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .and_then(|mut f| f.write_all(key.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// How to ask one database host.
struct Ssh<'a> {
    key: &'a Path,
    known_hosts: &'a Path,
    source: &'a Source,
}

impl Ssh<'_> {
    fn command(&self, request: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(self.key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5"])
            .arg("-p")
            .arg(self.source.port.to_string())
            .arg(format!("{}@{}", self.source.user, self.source.address))
            .arg(request)
            .stdin(Stdio::null());
        c
    }

    /// The whole snapshots the database host offers.
    fn list(&self) -> Result<Vec<Snapshot>, String> {
        let out = self
            .command("list")
            .output()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "list: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut words = line.split(' ');
                let stamp = Stamp::parse(words.next()?)?;
                Some(Snapshot {
                    stamp: stamp.to_string(),
                    subvolumes: words
                        .filter(|w| snapshots::is_subvolume_name(w))
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect())
    }
}

/// Receives every snapshot of one source newer than the newest copy here.
fn pull_source(ssh: &Ssh, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    snapshots::clear_partials(dir)?;
    let offered = ssh.list()?;
    let mut said = Vec::new();
    for snapshot in &offered {
        let here = snapshots::list(dir)?;
        if here.iter().any(|h| h.stamp >= snapshot.stamp) {
            continue;
        }
        // The newest copy here that the database host still has: the
        // blocks both share need not travel.
        let parent = here
            .iter()
            .rev()
            .find(|h| offered.iter().any(|o| o.stamp == h.stamp))
            .map(|h| h.stamp.clone());
        said.push(receive(ssh, dir, snapshot, parent.as_deref())?);
    }
    Ok(said)
}

/// Receives one snapshot, every subvolume, into `DIR/STAMP`.
fn receive(
    ssh: &Ssh,
    dir: &Path,
    snapshot: &Snapshot,
    parent: Option<&str>,
) -> Result<String, String> {
    let stamp = Stamp::parse(&snapshot.stamp).ok_or("a snapshot without a stamp")?;
    let partial = dir.join(partial_name(stamp));
    std::fs::create_dir(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let started = std::time::Instant::now();
    let mut bytes = 0;
    for name in &snapshot.subvolumes {
        let has_parent = parent.filter(|p| dir.join(p).join(name).exists());
        let mut request = format!("send {} {name}", snapshot.stamp);
        if let Some(p) = has_parent {
            request.push(' ');
            request.push_str(p);
        }
        bytes += stream(ssh.command(&request), &partial)
            .map_err(|e| format!("{} {name}: {e}", snapshot.stamp))?;
    }
    let pulled = Pulled {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        parent: parent.map(str::to_string),
    };
    let note = partial.join("pulled.json");
    std::fs::write(&note, serde_json::to_string(&pulled).unwrap_or_default())
        .map_err(|e| format!("cannot write {}: {e}", note.display()))?;
    let whole = dir.join(&snapshot.stamp);
    std::fs::rename(&partial, &whole)
        .map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
    Ok(format!(
        "{}: {} ({}) in {:.1} s{}",
        whole.display(),
        snapshot.subvolumes.join(", "),
        super::bytes_words(bytes),
        pulled.seconds,
        parent.map_or(String::new(), |p| format!(", changes since {p}"))
    ))
}

/// Runs `send` (an ssh command whose stdout is a `btrfs send` stream) into
/// `btrfs receive INTO`, counting the bytes that pass.
fn stream(mut send: Command, into: &Path) -> Result<u64, String> {
    let mut sender = send
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let mut receiver = Command::new("btrfs")
        .args(["receive", "-q"])
        .arg(into)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run btrfs receive: {e}"))?;
    let copied = match (sender.stdout.take(), receiver.stdin.take()) {
        (Some(mut from), Some(mut to)) => std::io::copy(&mut from, &mut to),
        _ => Ok(0),
    };
    let mut sender_err = String::new();
    if let Some(mut e) = sender.stderr.take() {
        let _ = e.read_to_string(&mut sender_err);
    }
    let sent = sender.wait().map_err(|e| e.to_string())?;
    let received = receiver.wait_with_output().map_err(|e| e.to_string())?;
    // A receive that fails closes the pipe and the send dies of it: the
    // receive's words say why.
    if !received.status.success() {
        return Err(format!(
            "btrfs receive: {}",
            String::from_utf8_lossy(&received.stderr).trim()
        ));
    }
    if !sent.success() {
        return Err(format!("send ({sent}): {}", sender_err.trim()));
    }
    copied.map_err(|e| format!("copying the stream: {e}"))
}

/// Removes the copies in `dir` that `keep` does not keep.
pub fn prune(dir: &Path, keep: &Keep) -> Result<Vec<String>, String> {
    let here = snapshots::list(dir)?;
    let stamps: Vec<Stamp> = here.iter().filter_map(|s| Stamp::parse(&s.stamp)).collect();
    let kept = retention::kept(&stamps, keep);
    let mut removed = Vec::new();
    for stamp in stamps.iter().filter(|s| !kept.contains(s)) {
        snapshots::remove(&dir.join(stamp.to_string()))?;
        removed.push(stamp.to_string());
    }
    Ok(removed)
}

//! The collector, on a `logs` host: a PULL socket every agent's PUSH
//! connects to, and each line `{tag, line, time}` appended to
//! `DIR/HOST/TAG` as `TIME<TAB>LINE` (`logs::time_text`: RFC 3339 UTC to
//! the millisecond, the time the agent read the line, so the files read
//! with `tail` and their lines merge across hosts; `logs` answers
//! `sitec logs` from them), where HOST is the name the sender's key was admitted
//! under (the bus's `User-Id`), never the `host` the message names: a host
//! files lines under its own name only. The tag comes from the network, so
//! it is made into a safe relative path first: no `..`, no absolute path,
//! nothing outside `[A-Za-z0-9._-]` in a name; a tag may keep its `/`
//! folders. Filing runs on a thread of its own, off the agent's runtime.
//!
//! It defends its disk against any one host (`Limits`, from `[collector]`):
//! a line longer than 8 KiB is cut and marked; each host has a rate (lines
//! a second, with a burst), a quota (bytes under `DIR/HOST`) and a number
//! of files; each file is rotated by the collector itself past a size
//! (`FILE.1` ... `FILE.KEEP`, the oldest deleted), so nothing outside it
//! needs to signal it. A line over a limit, or one the disk refuses (full,
//! read-only), is dropped and counted: the first of each kind is logged at
//! once, then a count a minute per host. Nothing a host sends makes it
//! fail or stop.

use crate::bus::Incoming;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Lines waiting to be filed; past it the pump stops reading (the senders'
/// queues hold the rest).
pub const QUEUE: usize = 4 * 1024;

/// A line longer than this is cut to it and marked.
pub const LINE_MAX: usize = 8 * 1024;

/// What one host may cost the collector's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lines a second, on average...
    pub rate: u32,
    /// ...and at once after a quiet spell.
    pub burst: u32,
    /// Bytes under `DIR/HOST`, rotated files included.
    pub quota: u64,
    /// Files under `DIR/HOST` (distinct tags).
    pub files: usize,
    /// A file past this many bytes is rotated...
    pub rotate: u64,
    /// ...keeping this many old ones.
    pub keep: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rate: 2_000,
            burst: 20_000,
            quota: 2 << 30,
            files: 256,
            rotate: 64 << 20,
            keep: 4,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Line {
    tag: String,
    line: String,
    /// When the agent read it (seconds since 1970); the collector's clock
    /// when absent or absurd.
    time: Option<f64>,
}

/// Files every line that arrives under `dir`, on a thread of its own.
pub fn spawn(
    mut incoming: mpsc::Receiver<Incoming>,
    dir: PathBuf,
    limits: Limits,
) -> Result<(), String> {
    let file_all = move || {
        let mut filer = Filer::new(dir, limits);
        while let Some(message) = incoming.blocking_recv() {
            // Only the bus names the sender: no name, no filing.
            let Some(host) = &message.peer else {
                continue;
            };
            for frame in &message.frames {
                filer.file(host, frame, Instant::now());
            }
        }
    };
    std::thread::Builder::new()
        .name("sitec-agent-collector".into())
        .spawn(file_all)
        .map(drop)
        .map_err(|e| format!("cannot start the log collector: {e}"))
}

/// Why a line was not filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Drop {
    Malformed,
    Rate,
    Quota,
    Files,
    Disk,
}

impl Drop {
    fn what(self) -> &'static str {
        match self {
            Drop::Malformed => "not {tag, line} JSON",
            Drop::Rate => "over its rate",
            Drop::Quota => "over its disk quota",
            Drop::Files => "over its number of files",
            Drop::Disk => "refused by the disk",
        }
    }
}

/// One host's standing.
struct Host {
    tokens: f64,
    refilled: Instant,
    /// Bytes under `DIR/HOST` (counted once, then kept up to date).
    used: u64,
    files: HashSet<PathBuf>,
    dropped: HashMap<Drop, u64>,
    reported: Instant,
    /// The last disk error, for the report.
    error: Option<String>,
}

/// Files lines under a folder, within `Limits`.
pub struct Filer {
    dir: PathBuf,
    limits: Limits,
    hosts: HashMap<String, Host>,
}

impl Filer {
    pub fn new(dir: PathBuf, limits: Limits) -> Filer {
        Filer {
            dir,
            limits,
            hosts: HashMap::new(),
        }
    }

    /// Files one message from `host` (admitted under that name) at `now`,
    /// or drops and counts it.
    pub fn file(&mut self, host: &str, frame: &[u8], now: Instant) {
        let folder = self.dir.join(safe_name(host));
        let limits = self.limits;
        let state = self.hosts.entry(host.to_string()).or_insert_with(|| Host {
            tokens: f64::from(limits.burst),
            refilled: now,
            used: du(&folder),
            files: HashSet::new(),
            dropped: HashMap::new(),
            reported: now,
            error: None,
        });
        if let Err(why) = file_in(&folder, state, &limits, frame, now) {
            *state.dropped.entry(why).or_default() += 1;
            if state.dropped[&why] == 1 {
                // The first of its kind since the last report: say it now.
                report(host, state, now);
            }
        }
        if now.duration_since(state.reported) >= Duration::from_secs(60) {
            report(host, state, now);
        }
    }
}

/// Logs what `host` lost since the last report, and starts counting again.
fn report(host: &str, state: &mut Host, now: Instant) {
    let mut parts: Vec<String> = (state.dropped.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(why, n)| format!("{n} {}", why.what()))
        .collect();
    parts.sort();
    if !parts.is_empty() {
        let error = (state.error.take()).map_or(String::new(), |e| format!(" ({e})"));
        tracing::warn!(
            "log collector: lines from {host} dropped: {}{error}",
            parts.join(", ")
        );
    }
    state.dropped.clear();
    state.reported = now;
}

fn file_in(
    folder: &Path,
    state: &mut Host,
    limits: &Limits,
    frame: &[u8],
    now: Instant,
) -> Result<(), Drop> {
    let l: Line = serde_json::from_slice(frame).map_err(|_| Drop::Malformed)?;
    let elapsed = now.duration_since(state.refilled).as_secs_f64();
    state.refilled = now;
    state.tokens = (state.tokens + elapsed * f64::from(limits.rate)).min(f64::from(limits.burst));
    if state.tokens < 1.0 {
        return Err(Drop::Rate);
    }
    state.tokens -= 1.0;
    let time = (l.time)
        .filter(|t| t.is_finite() && (0.0..super::logs::YEAR_9999).contains(t))
        .unwrap_or_else(super::heartbeat::unix_time);
    let text = format!("{}\t{}", super::logs::time_text(time), cut(&l.line));
    let len = text.len() as u64;
    if state.used + len > limits.quota {
        return Err(Drop::Quota);
    }
    let path = folder.join(safe_tag(&l.tag));
    if !state.files.contains(&path) {
        if state.files.len() >= limits.files {
            return Err(Drop::Files);
        }
        state.files.insert(path.clone());
    }
    let disk = |state: &mut Host, e: String| {
        state.error = Some(e);
        Drop::Disk
    };
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    if size > 0 && size + len > limits.rotate {
        state.used -= rotate(&path, limits.keep).min(state.used);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| disk(state, format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| disk(state, format!("cannot open {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| disk(state, format!("cannot write {}: {e}", path.display())))?;
    state.used += len;
    Ok(())
}

/// The line as filed: one line (its new lines made spaces), at most
/// `LINE_MAX` bytes of it, marked when cut, and a new line.
fn cut(line: &str) -> String {
    let mut text = line.replace('\n', " ");
    if text.len() > LINE_MAX {
        let mut end = LINE_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = text.len() - end;
        text.truncate(end);
        text.push_str(&format!(" [cut by sitec: {cut} more bytes]"));
    }
    text.push('\n');
    text
}

/// Moves `path` to `path.1`, `path.1` to `path.2` ..., deleting
/// `path.KEEP`; returns the bytes deleted.
fn rotate(path: &Path, keep: u32) -> u64 {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    let oldest = numbered(keep.max(1));
    let freed = std::fs::metadata(&oldest).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&oldest);
    for n in (1..keep.max(1)).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(path, numbered(1));
    freed
}

/// Bytes of the files under `dir`, not following links.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// One path component: the characters outside `[A-Za-z0-9._-]` become `_`,
/// and `.`, `..` or nothing become `_`.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".into()
    } else {
        cleaned
    }
}

/// A tag as a relative path: its non-empty `/` parts, each a safe name
/// (at most 8 of them).
pub fn safe_tag(tag: &str) -> PathBuf {
    let parts: Vec<String> = tag
        .split('/')
        .filter(|p| !p.is_empty())
        .take(8)
        .map(safe_name)
        .collect();
    if parts.is_empty() {
        PathBuf::from("untagged")
    } else {
        parts.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_cannot_leave_the_folder() {
        for (tag, path) in [
            ("blog/gunicorn-error.log", "blog/gunicorn-error.log"),
            ("../../etc/passwd", "_/_/etc/passwd"),
            ("/etc/shadow", "etc/shadow"),
            ("a/./b", "a/_/b"),
            ("", "untagged"),
            ("we ird\0tag", "we_ird_tag"),
        ] {
            assert_eq!(safe_tag(tag), Path::new(path), "{tag:?}");
        }
        assert_eq!(safe_name(".."), "_");
        assert_eq!(safe_name("run/1"), "run_1");
    }

    fn msg(tag: &str, line: &str) -> Vec<u8> {
        serde_json::json!({"host": "run2", "tag": tag, "line": line, "time": 1.5})
            .to_string()
            .into_bytes()
    }

    fn read(dir: &Path, rel: &str) -> String {
        std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
    }

    #[test]
    fn lines_are_appended_under_the_senders_name_and_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut filer = Filer::new(dir.path().into(), Limits::default());
        let now = Instant::now();
        filer.file("run1", &msg("blog/error.log", "one"), now);
        filer.file("run1", &msg("blog/error.log", "two\nthree"), now);
        filer.file("run1", b"not json", now);
        assert_eq!(
            read(dir.path(), "run1/blog/error.log"),
            "1970-01-01T00:00:01.500Z\tone\n1970-01-01T00:00:01.500Z\ttwo three\n"
        );
        assert!(
            !dir.path().join("run2").exists(),
            "the message's host is not who sent it"
        );
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let long = "é".repeat(LINE_MAX);
        let text = cut(&long);
        assert!(text.len() < LINE_MAX + 64, "{}", text.len());
        assert!(text.ends_with(&format!(
            "[cut by sitec: {} more bytes]\n",
            2 * LINE_MAX - LINE_MAX
        )));
    }

    #[test]
    fn a_host_gets_its_rate_and_quota_and_files_and_no_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            rate: 10,
            burst: 20,
            quota: 10 * 1024,
            files: 2,
            rotate: 1 << 30,
            keep: 2,
        };
        let mut filer = Filer::new(dir.path().into(), limits);
        let start = Instant::now();
        for n in 0..100 {
            filer.file("run1", &msg("a.log", &format!("burst {n}")), start);
        }
        assert_eq!(
            read(dir.path(), "run1/a.log").lines().count(),
            20,
            "the burst"
        );
        // One second later, ten more.
        for n in 0..100 {
            filer.file(
                "run1",
                &msg("a.log", &format!("later {n}")),
                start + Duration::from_secs(1),
            );
        }
        assert_eq!(
            read(dir.path(), "run1/a.log").lines().count(),
            30,
            "the rate"
        );
        // Another host has its own.
        filer.file(
            "run2",
            &msg("a.log", "run2's"),
            start + Duration::from_secs(1),
        );
        assert!(read(dir.path(), "run2/a.log").ends_with("\trun2's\n"));
        // A third file is refused; then the quota.
        let t = start + Duration::from_secs(100);
        filer.file("run1", &msg("b.log", "b"), t);
        filer.file("run1", &msg("c.log", "c"), t);
        assert!(!dir.path().join("run1/c.log").exists());
        for n in 0..200 {
            let at = t + Duration::from_secs(n);
            filer.file("run1", &msg("b.log", &"x".repeat(1000)), at);
        }
        assert!(du(&dir.path().join("run1")) <= 10 * 1024);
    }

    #[test]
    fn files_are_rotated_past_their_size_keeping_a_few() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            rotate: 1000,
            keep: 2,
            ..Limits::default()
        };
        let mut filer = Filer::new(dir.path().into(), limits);
        let now = Instant::now();
        for n in 0..100 {
            filer.file("run1", &msg("a.log", &format!("{n:074}")), now);
        }
        let names: Vec<String> = std::fs::read_dir(dir.path().join("run1"))
            .expect("folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for name in ["a.log", "a.log.1", "a.log.2"] {
            let size = std::fs::metadata(dir.path().join("run1").join(name))
                .expect(name)
                .len();
            assert!(size <= 1000, "{name}: {size}");
        }
        assert!(read(dir.path(), "run1/a.log").ends_with(&format!("\t{:074}\n", 99)));
    }
}

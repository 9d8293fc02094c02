//! The collector, on a `logs` host: a ROUTER every agent's shipper
//! (`ship`, a DEALER) connects to, taking batches of lines `{id, lines:
//! [{tag, file, offset, end, line, time}]}`. Each line is appended to
//! `DIR/HOST/TAG` as `TIME<TAB>LINE` (`logs::time_text`: RFC 3339 UTC to
//! the millisecond, the time the agent read the line, so the files read
//! with `tail` and their lines merge across hosts; `logs` answers
//! `sitec logs` from them), where HOST is the name the sender's key was
//! admitted under (the bus's `User-Id`), never a name the message gives: a
//! host files lines under its own name only. The tag comes from the
//! network, so it is made into a safe relative path first: no `..`, no
//! absolute path, no name starting with a dot, nothing outside
//! `[A-Za-z0-9._-]` in a name; a tag may keep its `/` folders. Filing runs
//! on a thread of its own, off the agent's runtime.
//!
//! Once a batch is filed and its files synced, the collector answers
//! `{id, ok: true}`, and the sender moves its saved positions on. The
//! batches waiting when one is taken are filed with it and synced once
//! (a group commit): under load a sync serves several batches. A line
//! it has filed before (by its file's identity and offset, or a line of
//! the tag's file before the newest: the host's `positions::Seen`, saved
//! beside its files as `DIR/HOST/.positions.json` after the lines it
//! covers are synced) is acknowledged and not filed again, so a batch sent
//! twice (an acknowledgement lost, an agent restarted) is filed once. A
//! batch that meets the host's rate, or a disk that refuses it, is not
//! acknowledged: the agent sends it again, and the lines filed of it
//! already are not filed twice. The positions also say
//! how long each file was when they were saved, and a collector killed
//! while filing a batch (after its lines were written, before its
//! positions were saved) cuts each file back to that when it starts again
//! (`roll_back`): those lines were not acknowledged, so they come again
//! and are filed once.
//!
//! It defends its disk against any one host (`Limits`, from `[collector]`):
//! a line longer than 8 KiB is cut and marked; each host has a rate (lines
//! a second, with a burst; past it the batch waits, as above), a quota
//! (bytes under `DIR/HOST`) and a number of files; each file is rotated by
//! the collector itself past a size (`FILE.1` ... `FILE.KEEP`, the oldest
//! deleted), so nothing outside it needs to signal it. A line over the
//! quota or the files is dropped and counted, as is one that is not a
//! line; the first of each kind is logged at once, then a count a minute
//! per host. Nothing a host sends makes it fail or stop.

use super::positions::{FileId, Seen, Size};
use crate::bus::control::Request;
use crate::bus::{Incoming, Outbox};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Batches waiting to be filed; past it the pump stops reading (the
/// senders' queues hold the rest).
pub const QUEUE: usize = 16;

/// The file beside a host's files that says what of them is filed.
const SEEN_FILE: &str = ".positions.json";

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
struct Line<'a> {
    #[serde(borrow)]
    tag: Cow<'a, str>,
    #[serde(borrow)]
    line: Cow<'a, str>,
    /// When the agent read it (seconds since 1970); the collector's clock
    /// when absent or absurd.
    time: Option<f64>,
    /// Where it lies in the sender's file (older agents sent none).
    file: Option<FileId>,
    offset: Option<u64>,
    end: Option<u64>,
}

/// A batch as it arrives: its lines kept as their raw JSON and each read
/// into a `Line` on its own, so one that is not a line is dropped and
/// counted while the others are filed, and no `Value` of the whole batch
/// is built in between.
#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(borrow)]
    lines: Option<Vec<&'a RawValue>>,
}

/// What became of one batch.
pub struct Written {
    /// Done with once committed (filed, or dropped for good): it may be
    /// acknowledged then.
    pub done: bool,
    /// The batch's `id`, for the acknowledgement.
    pub id: Option<Value>,
}

/// Files every batch that arrives under `dir`, on a thread of its own,
/// acknowledging each through `outbox` once it is filed.
pub fn spawn(
    mut incoming: mpsc::Receiver<Incoming>,
    outbox: Outbox,
    dir: PathBuf,
    limits: Limits,
) -> Result<(), String> {
    let file_all = move || {
        let mut filer = Filer::new(dir, limits);
        while let Some(first) = incoming.blocking_recv() {
            // The batches waiting now too: written each, synced once.
            let mut group = vec![first];
            while group.len() < QUEUE {
                match incoming.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let mut written = Vec::new();
            for message in group {
                // Only the bus names the sender: no name, no filing.
                let Some((peer, body, responder)) = Request::raw(message, &outbox) else {
                    continue;
                };
                let batch = filer.write_batch(&peer, &body, Instant::now());
                written.push((peer, responder.with_id(batch.id), batch.done));
            }
            let mut committed: HashMap<String, bool> = HashMap::new();
            for (peer, responder, done) in written {
                let on_disk = *committed
                    .entry(peer.clone())
                    .or_insert_with(|| filer.commit(&peer));
                if done && on_disk {
                    // false: the sender is gone; it sends the batch again.
                    let _ = responder.send(json!({ "ok": true }));
                }
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
            Drop::Malformed => "not {tag, line, ...} JSON",
            Drop::Rate => "over its rate (held back: sent again)",
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
    /// What of its files is filed, the lines in `open`'s buffers included.
    seen: Seen,
    /// `seen` as of the last lines written out: what it goes back to when
    /// the disk refuses the lines buffered (`write_out`).
    seen_written: Seen,
    /// Lines filed since `seen` was last saved.
    unsaved: bool,
    /// The files filed to since the last commit.
    open: HashMap<PathBuf, Open>,
}

/// A file lines are filed to: they are buffered and written once a batch
/// (`write_out`), one system call for many lines.
struct Open {
    file: std::fs::File,
    /// Its bytes on disk.
    written: u64,
    /// The lines filed to it and not written yet, and how many.
    buf: Vec<u8>,
    lines: u64,
}

impl Open {
    /// How long it is with its buffered lines.
    fn size(&self) -> u64 {
        self.written + self.buf.len() as u64
    }
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

    /// Files one batch from `host` (admitted under that name) at `now`
    /// and commits it: whether it is done with (filed and synced, or
    /// dropped for good) and may be acknowledged.
    #[cfg(test)]
    pub fn file_batch(&mut self, host: &str, body: &Value, now: Instant) -> bool {
        let filed = self.write_batch(host, body.to_string().as_bytes(), now);
        self.commit(host) && filed.done
    }

    /// Writes one batch from `host` (admitted under that name) at `now`,
    /// not synced yet (`commit`).
    pub fn write_batch(&mut self, host: &str, body: &[u8], now: Instant) -> Written {
        let folder = self.dir.join(safe_name(host));
        let limits = self.limits;
        let state = self.hosts.entry(host.to_string()).or_insert_with(|| {
            let seen = Seen::load(&folder.join(SEEN_FILE)).unwrap_or_else(|e| {
                tracing::warn!("log collector: {e}; lines {host} sends again may be filed twice");
                Seen::default()
            });
            roll_back(&folder, &seen);
            Host {
                tokens: f64::from(limits.burst),
                refilled: now,
                used: du(&folder),
                files: HashSet::new(),
                dropped: HashMap::new(),
                reported: now,
                error: None,
                seen_written: seen.clone(),
                seen,
                unsaved: false,
                open: HashMap::new(),
            }
        });
        let Ok(batch) = serde_json::from_slice::<Batch>(body) else {
            count(host, state, Drop::Malformed, 1, now);
            return Written {
                done: true,
                id: None,
            };
        };
        let mut done = true;
        let mut moved = false;
        // A line's text as filed, and what most lines of a batch share.
        let mut text = Vec::new();
        let mut stamp = (f64::NAN, String::new());
        let mut target: Option<(String, PathBuf)> = None;
        for raw in batch.lines.as_deref().unwrap_or_default() {
            let line = serde_json::from_str::<Line>(raw.get()).ok();
            let outcome = match &line {
                None => Err(Drop::Malformed),
                Some(l)
                    if l.file
                        .zip(l.offset)
                        .is_some_and(|(f, o)| state.seen.has(&l.tag, f, o)) =>
                {
                    continue
                }
                Some(l)
                    if l.file
                        .zip(l.offset)
                        .is_some_and(|(f, o)| state.seen.gap(&l.tag, f, o)) =>
                {
                    // A batch sent before this one was lost and comes again
                    // later: lines are filed in their file's order, so this
                    // one waits (not acknowledged) rather than be filed
                    // first and make the earlier lines look filed.
                    done = false;
                    break;
                }
                Some(l) => {
                    let time = (l.time)
                        .filter(|t| t.is_finite() && (0.0..super::logs::YEAR_9999).contains(t))
                        .unwrap_or_else(super::heartbeat::unix_time);
                    if time.to_bits() != stamp.0.to_bits() {
                        stamp = (time, super::logs::time_text(time));
                    }
                    text.clear();
                    text.extend_from_slice(stamp.1.as_bytes());
                    text.push(b'\t');
                    cut_into(&l.line, &mut text);
                    if target.as_ref().is_none_or(|(tag, _)| *tag != l.tag) {
                        target = Some((l.tag.to_string(), folder.join(safe_tag(&l.tag))));
                    }
                    let path = target.as_ref().map_or(folder.as_path(), |(_, p)| p);
                    file_in(state, &limits, path, &text, now)
                }
            };
            if let Err(why) = outcome {
                count(host, state, why, 1, now);
                if matches!(why, Drop::Rate | Drop::Disk) {
                    done = false;
                    break;
                }
            }
            if let Some((l, (file, end))) =
                line.as_ref().and_then(|l| Some((l, l.file.zip(l.end)?)))
            {
                state.seen.filed(&l.tag, file, end);
                moved = true;
            }
        }
        if batch.lines.is_none() {
            count(host, state, Drop::Malformed, 1, now);
        }
        // Only lines written out are filed: a disk that refuses them takes
        // the batch back whole (not acknowledged: it comes again).
        if let Err(lost) = write_out(state) {
            count(host, state, Drop::Disk, lost, now);
            done = false;
        }
        state.unsaved |= moved || !state.open.is_empty();
        if now.duration_since(state.reported) >= Duration::from_secs(60) {
            report(host, state, now);
        }
        Written { done, id: batch.id }
    }

    /// Syncs what was written of `host`'s lines since the last commit,
    /// then saves what says they are filed and how long each file is
    /// with them: whether all of it is on disk (the batches written since
    /// may be acknowledged). One commit serves every batch written before
    /// it, so a busy collector syncs once for several.
    pub fn commit(&mut self, host: &str) -> bool {
        let Some(state) = self.hosts.get_mut(host) else {
            return true;
        };
        let folder = self.dir.join(safe_name(host));
        let mut synced = true;
        for (path, open) in std::mem::take(&mut state.open) {
            match open.file.sync_data().and_then(|()| open.file.metadata()) {
                Ok(meta) => {
                    let rel = path.strip_prefix(&folder).unwrap_or(&path);
                    let size = Size {
                        ino: meta.ino(),
                        len: meta.len(),
                    };
                    state.seen.wrote(&rel.to_string_lossy(), size);
                }
                Err(e) => {
                    state.error = Some(format!("cannot sync {}: {e}", path.display()));
                    synced = false;
                }
            }
        }
        // Every line filed is written now (`write_batch` ends so).
        state.seen_written = state.seen.clone();
        if state.unsaved && synced {
            match state.seen.save(&folder.join(SEEN_FILE)) {
                Ok(()) => state.unsaved = false,
                Err(e) => {
                    state.error = Some(e);
                    return false;
                }
            }
        }
        synced
    }
}

/// Counts `n` lines of `host` dropped for `why`; the first of a kind since
/// the last report is said at once.
fn count(host: &str, state: &mut Host, why: Drop, n: u64, now: Instant) {
    let dropped = state.dropped.entry(why).or_default();
    let first = *dropped == 0;
    *dropped += n;
    if first && n > 0 {
        report(host, state, now);
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

/// Files one line, `text` as it is filed, to the file at `path`: into
/// that file's buffer (`write_out` writes it).
fn file_in(
    state: &mut Host,
    limits: &Limits,
    path: &Path,
    text: &[u8],
    now: Instant,
) -> Result<(), Drop> {
    let elapsed = now.duration_since(state.refilled).as_secs_f64();
    state.refilled = now;
    state.tokens = (state.tokens + elapsed * f64::from(limits.rate)).min(f64::from(limits.burst));
    if state.tokens < 1.0 {
        return Err(Drop::Rate);
    }
    state.tokens -= 1.0;
    let len = text.len() as u64;
    if state.used + len > limits.quota {
        return Err(Drop::Quota);
    }
    if !state.files.contains(path) {
        if state.files.len() >= limits.files {
            return Err(Drop::Files);
        }
        state.files.insert(path.to_path_buf());
    }
    let disk = |state: &mut Host, e: String| {
        state.error = Some(e);
        Drop::Disk
    };
    // Its size as last written (looked up once a commit, not once a line).
    let size = match state.open.get(path) {
        Some(open) => open.size(),
        None => std::fs::symlink_metadata(path).map_or(0, |m| m.len()),
    };
    if size > 0 && size + len > limits.rotate {
        // What is buffered goes out first (every file's: `seen_written`
        // covers them all), and this file is synced before it is renamed.
        write_out(state).map_err(|_| Drop::Disk)?;
        if let Some(open) = state.open.remove(path) {
            (open.file.sync_data())
                .map_err(|e| disk(state, format!("cannot sync {}: {e}", path.display())))?;
        }
        state.used -= rotate(path, limits.keep).min(state.used);
    }
    if !state.open.contains_key(path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| disk(state, format!("cannot create {}: {e}", parent.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| disk(state, format!("cannot open {}: {e}", path.display())))?;
        let written = file.metadata().map_or(0, |m| m.len());
        let open = Open {
            file,
            written,
            buf: Vec::new(),
            lines: 0,
        };
        state.open.insert(path.to_path_buf(), open);
    }
    let Some(open) = state.open.get_mut(path) else {
        return Err(Drop::Disk);
    };
    open.buf.extend_from_slice(text);
    open.lines += 1;
    state.used += len;
    Ok(())
}

/// Writes every file's buffered lines, one `write` a file. If the disk
/// refuses any, each file is cut back to what it held before and `seen`
/// goes back to what was written: none of those lines is filed (the batch
/// is not acknowledged and comes again), and none is filed twice. Returns
/// how many lines were taken back.
fn write_out(state: &mut Host) -> Result<(), u64> {
    let mut refused = None;
    for (path, open) in &mut state.open {
        if open.buf.is_empty() {
            continue;
        }
        if let Err(e) = open.file.write_all(&open.buf) {
            refused = Some(format!("cannot write {}: {e}", path.display()));
            break;
        }
    }
    let Some(error) = refused else {
        for open in state.open.values_mut() {
            open.written += open.buf.len() as u64;
            open.buf.clear();
            open.lines = 0;
        }
        state.seen_written.clone_from(&state.seen);
        return Ok(());
    };
    let mut lost = 0;
    for (path, open) in &mut state.open {
        if let Err(e) = open.file.set_len(open.written) {
            tracing::warn!(
                "log collector: cannot cut {} back to {} bytes: {e}; lines sent again may be filed twice",
                path.display(),
                open.written
            );
        }
        state.used -= (open.buf.len() as u64).min(state.used);
        lost += open.lines;
        open.buf.clear();
        open.lines = 0;
    }
    state.seen.clone_from(&state.seen_written);
    state.error = Some(error);
    Err(lost)
}

/// Appends the line as filed to `out`: one line (its new lines made
/// spaces), at most `LINE_MAX` bytes of it, marked when cut, and a new
/// line.
fn cut_into(line: &str, out: &mut Vec<u8>) {
    let mut end = line.len().min(LINE_MAX);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let start = out.len();
    out.extend_from_slice(&line.as_bytes()[..end]);
    for byte in &mut out[start..] {
        if *byte == b'\n' {
            *byte = b' ';
        }
    }
    if end < line.len() {
        let _ = write!(out, " [cut by sitec: {} more bytes]", line.len() - end);
    }
    out.push(b'\n');
}

/// `PATH.N`: a file the collector rotated.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Moves `path` to `path.1`, `path.1` to `path.2` ..., deleting
/// `path.KEEP`; returns the bytes deleted.
fn rotate(path: &Path, keep: u32) -> u64 {
    let numbered = |n: u32| numbered(path, n);
    let oldest = numbered(keep.max(1));
    let freed = std::fs::metadata(&oldest).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&oldest);
    for n in (1..keep.max(1)).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(path, numbered(1));
    freed
}

/// Cuts each of a host's files (under `folder`) back to its size in
/// `seen`: what a collector killed while filing a batch wrote after its
/// positions were saved (not acknowledged: the sender sends it again). A
/// file the collector rotated after the save is found at `PATH.1` by its
/// inode, and what the new `PATH` holds was written after it. Never
/// through a link; a file found neither way is left as it is.
fn roll_back(folder: &Path, seen: &Seen) {
    for (rel, size) in seen.sizes() {
        let path = folder.join(safe_tag(rel));
        let cut = cut_to(&path, Some(size.ino), size.len).and_then(|found| {
            if found || !cut_to(&numbered(&path, 1), Some(size.ino), size.len)? {
                return Ok(());
            }
            cut_to(&path, None, 0).map(drop)
        });
        if let Err(e) = cut {
            tracing::warn!(
                "log collector: cannot cut {} back to what is acknowledged: {e}; \
                 the lines its sender sends again may be filed twice",
                path.display()
            );
        }
    }
}

/// Cuts the regular file at `path` to `len` bytes if it is longer and is
/// inode `ino` (any, when `None`): whether it was that file.
fn cut_to(path: &Path, ino: Option<u64>, len: u64) -> std::io::Result<bool> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || ino.is_some_and(|i| i != meta.ino()) {
        return Ok(false);
    }
    if meta.len() > len {
        tracing::info!(
            "log collector: {} cut back by {} bytes, filed after its positions were saved (sent again)",
            path.display(),
            meta.len() - len
        );
        file.set_len(len)?;
        file.sync_all()?;
    }
    Ok(true)
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
    // A leading dot would hide it, or name the host's positions file.
    match cleaned.strip_prefix('.') {
        _ if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') => "_".into(),
        Some(rest) => format!("_{rest}"),
        None => cleaned,
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
        assert_eq!(safe_name(".positions.json"), "_positions.json");
    }

    fn msg(tag: &str, line: &str) -> Vec<u8> {
        serde_json::json!({"host": "run2", "tag": tag, "line": line, "time": 1.5})
            .to_string()
            .into_bytes()
    }

    /// Files one message as a batch of its own: whether it was acknowledged.
    fn one(filer: &mut Filer, host: &str, frame: &[u8], now: Instant) -> bool {
        let line = serde_json::from_slice(frame).unwrap_or(Value::Null);
        filer.file_batch(host, &json!({"id": 1, "lines": [line]}), now)
    }

    fn line(n: u64) -> Value {
        let text = format!("line {n}");
        let file = json!({"dev": 1, "ino": 7, "generation": 0});
        json!({"tag": "a.log", "line": text, "time": 2.0, "file": file,
               "offset": n * 10, "end": n * 10 + 10})
    }

    /// A batch of lines `from..to`.
    fn batch(from: u64, to: u64) -> Value {
        json!({"id": 1, "lines": (from..to).map(line).collect::<Vec<_>>()})
    }

    /// A batch as it travels.
    fn body(batch: Value) -> Vec<u8> {
        batch.to_string().into_bytes()
    }

    #[test]
    fn a_batch_sent_again_is_filed_once_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            burst: 5,
            rate: 1,
            ..Limits::default()
        };
        let now = Instant::now();
        let mut filer = Filer::new(dir.path().into(), limits);
        assert!(filer.file_batch("run1", &batch(0, 3), now));
        assert!(
            filer.file_batch("run1", &batch(0, 3), now),
            "a duplicate is acknowledged"
        );
        // Over the rate: two filed, the batch held back (not acknowledged).
        assert!(!filer.file_batch("run1", &batch(2, 8), now));
        // The collector restarts; the agent sends the batch again.
        let mut filer = Filer::new(dir.path().into(), limits);
        assert!(filer.file_batch("run1", &batch(2, 8), now + Duration::from_secs(10)));
        let filed: Vec<String> = read(dir.path(), "run1/a.log")
            .lines()
            .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
            .collect();
        let want: Vec<String> = (0..8).map(|n| format!("line {n}")).collect();
        assert_eq!(filed, want);
        let t = now + Duration::from_secs(15);
        assert!(!filer.file_batch("run1", &batch(10, 12), t), "a gap");
        assert!(filer.file_batch("run1", &batch(8, 10), t));
        assert!(filer.file_batch("run1", &batch(10, 12), t));
        let filed: Vec<String> = read(dir.path(), "run1/a.log")
            .lines()
            .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
            .collect();
        let want: Vec<String> = (0..12).map(|n| format!("line {n}")).collect();
        assert_eq!(filed, want);
        // A rotated file (another inode) starts again at 0.
        let mut rotated = line(0);
        rotated["file"]["ino"] = json!(8);
        rotated["line"] = json!("new file");
        let t = now + Duration::from_secs(20);
        assert!(filer.file_batch("run1", &json!({"id": 2, "lines": [rotated]}), t));
        assert!(read(dir.path(), "run1/a.log").ends_with("\tnew file\n"));
        // Not a batch: dropped and acknowledged (nothing to send again).
        assert!(filer.file_batch("run1", &json!({"id": 3}), t));
        assert!(filer.file_batch("run1", &json!({"id": 4, "lines": [1, {"tag": 2}]}), t));
    }

    /// Batches written together are synced and saved by one commit; a
    /// collector killed before it (the batches written, not acknowledged)
    /// files them once when they come again.
    #[test]
    fn batches_written_together_are_committed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Instant::now();
        let mut filer = Filer::new(dir.path().into(), Limits::default());
        assert!(filer.file_batch("run1", &batch(0, 2), now));
        let positions = dir.path().join("run1").join(SEEN_FILE);
        let saved = std::fs::read(&positions).expect("positions");
        assert!(filer.write_batch("run1", &body(batch(2, 4)), now).done);
        assert!(filer.write_batch("run1", &body(batch(4, 6)), now).done);
        assert_eq!(
            std::fs::read(&positions).expect("positions"),
            saved,
            "saved before the commit"
        );
        drop(filer);
        let mut filer = Filer::new(dir.path().into(), Limits::default());
        assert!(filer.write_batch("run1", &body(batch(2, 4)), now).done);
        assert!(filer.write_batch("run1", &body(batch(4, 6)), now).done);
        assert!(filer.commit("run1"));
        let filed: Vec<String> = (read(dir.path(), "run1/a.log").lines())
            .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
            .collect();
        let want: Vec<String> = (0..6).map(|n| format!("line {n}")).collect();
        assert_eq!(filed, want);
        assert_ne!(std::fs::read(&positions).expect("positions"), saved);
    }

    /// A collector killed while filing a batch (its lines written, its
    /// positions not saved yet) cuts them off when it starts again, so the
    /// batch sent again is filed once; a rotation in between too.
    #[test]
    fn a_batch_cut_short_by_a_kill_is_filed_once() {
        // A filed line is 32 bytes: files of 100 bytes rotate every 3 lines.
        for rotate in [1 << 30, 100] {
            let dir = tempfile::tempdir().expect("tempdir");
            let limits = Limits {
                rotate,
                keep: 8,
                ..Limits::default()
            };
            let now = Instant::now();
            let mut filer = Filer::new(dir.path().into(), limits);
            assert!(filer.file_batch("run1", &batch(0, 3), now));
            let positions = dir.path().join("run1").join(SEEN_FILE);
            let saved = std::fs::read(&positions).expect("positions");
            assert!(filer.file_batch("run1", &batch(3, 6), now));
            // Killed before the positions were saved: they are as they were.
            std::fs::write(&positions, saved).expect("write");
            let mut filer = Filer::new(dir.path().into(), limits);
            assert!(filer.file_batch("run1", &batch(3, 8), now));
            let filed: Vec<String> = (1..=8)
                .rev()
                .map(|n| read(dir.path(), &format!("run1/a.log.{n}")))
                .chain([read(dir.path(), "run1/a.log")])
                .flat_map(|text| {
                    let lines: Vec<String> = text
                        .lines()
                        .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
                        .collect();
                    lines
                })
                .collect();
            let want: Vec<String> = (0..8).map(|n| format!("line {n}")).collect();
            assert_eq!(filed, want, "rotated past {rotate} bytes");
        }
    }

    /// A disk that refuses a batch's lines (here a file that cannot be
    /// written) takes the batch back whole: the other file's lines of it
    /// are cut off again, none is marked filed, it is not acknowledged,
    /// and sent again it is filed once.
    #[test]
    fn a_batch_the_disk_refuses_is_taken_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Instant::now();
        let mut filer = Filer::new(dir.path().into(), Limits::default());
        let two_files = |from: u64, to: u64| {
            let mut lines = Vec::new();
            for n in from..to {
                for tag in ["a.log", "b.log"] {
                    let mut l = line(n);
                    l["tag"] = json!(tag);
                    lines.push(l);
                }
            }
            json!({"id": 1, "lines": lines})
        };
        assert!(filer.write_batch("run1", &body(two_files(0, 2)), now).done);
        // b.log's disk fails: its open file can no longer be written.
        let b = dir.path().join("run1/b.log");
        let state = filer.hosts.get_mut("run1").expect("run1");
        let open = state.open.get_mut(&b).expect("b.log open");
        open.file = std::fs::File::open(&b).expect("read-only");
        let refused = filer.write_batch("run1", &body(two_files(2, 4)), now);
        assert!(!refused.done, "not acknowledged");
        assert!(filer.commit("run1"));
        for tag in ["a.log", "b.log"] {
            assert_eq!(
                read(dir.path(), &format!("run1/{tag}")).lines().count(),
                2,
                "{tag}"
            );
        }
        // The disk is back: the batch sent again is filed once.
        assert!(filer.file_batch("run1", &two_files(2, 4), now));
        assert!(
            filer.file_batch("run1", &two_files(0, 4), now),
            "a duplicate"
        );
        let want: Vec<String> = (0..4).map(|n| format!("line {n}")).collect();
        for tag in ["a.log", "b.log"] {
            let filed: Vec<String> = (read(dir.path(), &format!("run1/{tag}")).lines())
                .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
                .collect();
            assert_eq!(filed, want, "{tag}");
        }
    }

    fn read(dir: &Path, rel: &str) -> String {
        std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
    }

    #[test]
    fn lines_are_appended_under_the_senders_name_and_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut filer = Filer::new(dir.path().into(), Limits::default());
        let now = Instant::now();
        one(&mut filer, "run1", &msg("blog/error.log", "one"), now);
        one(
            &mut filer,
            "run1",
            &msg("blog/error.log", "two\nthree"),
            now,
        );
        one(&mut filer, "run1", b"not json", now);
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
        let mut filed = Vec::new();
        cut_into(&long, &mut filed);
        let text = String::from_utf8(filed).expect("cut at a character's boundary");
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
            one(
                &mut filer,
                "run1",
                &msg("a.log", &format!("burst {n}")),
                start,
            );
        }
        assert_eq!(
            read(dir.path(), "run1/a.log").lines().count(),
            20,
            "the burst"
        );
        // One second later, ten more.
        for n in 0..100 {
            one(
                &mut filer,
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
        one(
            &mut filer,
            "run2",
            &msg("a.log", "run2's"),
            start + Duration::from_secs(1),
        );
        assert!(read(dir.path(), "run2/a.log").ends_with("\trun2's\n"));
        // A third file is refused; then the quota.
        let t = start + Duration::from_secs(100);
        one(&mut filer, "run1", &msg("b.log", "b"), t);
        one(&mut filer, "run1", &msg("c.log", "c"), t);
        assert!(!dir.path().join("run1/c.log").exists());
        for n in 0..200 {
            let at = t + Duration::from_secs(n);
            one(&mut filer, "run1", &msg("b.log", &"x".repeat(1000)), at);
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
            one(&mut filer, "run1", &msg("a.log", &format!("{n:074}")), now);
        }
        let names: Vec<String> = std::fs::read_dir(dir.path().join("run1"))
            .expect("folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != SEEN_FILE)
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

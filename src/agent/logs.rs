//! `sitec logs`' answer on a collector (control op `logs`): the lines the
//! collector filed under `DIR/HOST/TAG` and its rotated `TAG.N`
//! (`collector`, each `TIME<TAB>LINE`), chosen by host, app (a tag's first
//! part), time and a regular expression, in time order.
//!
//! Two kinds of question. Without a `cursor`: the newest `limit` lines
//! since `since` (a file last written before `since` is not read). With
//! one (`sitec logs -f`): the lines written after it. Every answer carries
//! the cursor to ask from next: per file (`HOST/TAG`) its inode and the
//! byte read to, so a file the collector rotated meanwhile is read to its
//! end under its new name first; a line still being written is left for
//! the next question.
//!
//! Bounded whatever is asked or on disk: at most `LINES_MAX` lines and
//! `BYTES_MAX` bytes of JSON an answer (under the operator's `Kind::Ask`
//! message limit), a line read at most `READ_MAX` bytes at a time (a longer
//! one is skipped, never held), the regular expression compiled within
//! `GREP_MAX` bytes (the `regex` crate: matching in linear time), at most
//! `FILES_MAX` files looked at. It reads only under the collector's
//! folder, which only the agent writes, and never follows a link there (no
//! link is walked into, files are opened with `O_NOFOLLOW`); it never
//! writes.

use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Lines in one answer, at most.
pub const LINES_MAX: usize = 5_000;
/// Bytes of JSON the lines of one answer take, at most.
pub const BYTES_MAX: usize = 2 << 20;
/// A filed line longer than this is skipped (the collector cuts at 8 KiB).
const READ_MAX: u64 = 64 * 1024;
/// The compiled `grep`'s size, at most.
const GREP_MAX: usize = 1 << 20;
/// Files looked at for one answer, at most.
const FILES_MAX: usize = 10_000;
/// A tag's folders, at most (as `collector::safe_tag` files them).
const DEPTH_MAX: usize = 8;
/// 10000-01-01T00:00:00Z in seconds: later times are not written.
pub const YEAR_9999: f64 = 253_402_300_800.0;

/// `2026-12-07T02:30:00.123Z`: seconds since 1970 as RFC 3339 UTC to the
/// millisecond. Always 24 characters, so these sort as the times do.
pub fn time_text(seconds: f64) -> String {
    // Whole milliseconds within 0..YEAR_9999: the cast cannot overflow.
    let ms = (seconds.clamp(0.0, YEAR_9999 - 0.001) * 1000.0) as i64;
    let (days, of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = crate::data::stamp::civil(days);
    let (hour, minute) = (of_day / 3_600_000, of_day / 60_000 % 60);
    let (second, milli) = (of_day / 1000 % 60, of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// One line as answered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Entry {
    /// `time_text`; empty for a line filed without one.
    pub time: String,
    pub host: String,
    pub tag: String,
    pub line: String,
}

impl Entry {
    /// Bytes it takes in the answer's JSON, at most (every byte that JSON
    /// escapes counted as `\u00XX`).
    fn cost(&self) -> usize {
        let escaped = |s: &str| {
            s.len()
                + 5 * s
                    .bytes()
                    .filter(|b| *b < 0x20 || b"\"\\".contains(b))
                    .count()
        };
        escaped(&self.line) + escaped(&self.host) + escaped(&self.tag) + self.time.len() + 48
    }
}

/// What the operator asked.
struct Question {
    hosts: Vec<String>,
    apps: Vec<String>,
    since: Option<String>,
    grep: Option<regex::Regex>,
    limit: usize,
    /// Follow from here (`sitec logs -f`); `None`: the newest lines.
    cursor: Option<Map<String, Value>>,
}

impl Question {
    fn parse(request: &Value) -> Result<Question, String> {
        let names = |field: &str| -> Result<Vec<String>, String> {
            match request.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) if a.len() <= 256 => (a.iter())
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("logs: `{field}` must be a list of names")),
                Some(_) => Err(format!(
                    "logs: `{field}` must be a list of at most 256 names"
                )),
            }
        };
        let since = match request.get("since") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 64 => Some(s.clone()),
            Some(_) => {
                return Err("logs: `since` must be a time like 2026-12-07T02:30:00.000Z".into())
            }
        };
        let grep = match request.get("grep").and_then(Value::as_str) {
            None => None,
            Some(pattern) => Some(grep(pattern)?),
        };
        let limit = (request.get("limit").and_then(Value::as_u64))
            .map_or(LINES_MAX, |n| usize::try_from(n).unwrap_or(LINES_MAX))
            .clamp(1, LINES_MAX);
        let cursor = match request.get("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => Some(c.clone()),
            Some(_) => return Err("logs: `cursor` must be the object the last answer gave".into()),
        };
        Ok(Question {
            hosts: names("hosts")?,
            apps: names("apps")?,
            since,
            grep,
            limit,
            cursor,
        })
    }

    fn wants(&self, entry: &Entry) -> bool {
        self.since.as_ref().is_none_or(|s| entry.time >= *s)
            && self.grep.as_ref().is_none_or(|g| g.is_match(&entry.line))
    }
}

/// `pattern` compiled within bounds, or why not.
pub fn grep(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(GREP_MAX)
        .dfa_size_limit(GREP_MAX)
        .build()
        .map_err(|e| format!("--grep `{pattern}` is not a regular expression this reads: {e}"))
}

/// One tag of one host: its files, oldest first (`TAG.N` ... `TAG.1`, `TAG`).
struct Tagged {
    host: String,
    tag: String,
    files: Vec<PathBuf>,
}

impl Tagged {
    fn key(&self) -> String {
        format!("{}/{}", self.host, self.tag)
    }
}

/// The answer to a `logs` request, on a collector filing under `dir`.
pub fn answer(dir: &Path, request: &Value) -> Result<Value, String> {
    let question = Question::parse(request)?;
    let tagged = tagged_files(dir, &question);
    let (mut lines, cursor, more) = match &question.cursor {
        None => newest(&question, &tagged),
        Some(cursor) => after(&question, &tagged, cursor),
    };
    // By time only: lines read at the same moment keep their files' order.
    lines.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(json!({ "ok": true, "op": "logs", "lines": lines, "cursor": cursor, "more": more }))
}

/// The newest lines the question wants, and a cursor at every file's end.
fn newest(question: &Question, tagged: &[Tagged]) -> (Vec<Entry>, Map<String, Value>, bool) {
    let mut kept = Newest::new(question.limit);
    let mut cursor = Map::new();
    for t in tagged {
        for (i, path) in t.files.iter().enumerate() {
            let last = i + 1 == t.files.len();
            if !last && question.since.as_ref().is_some_and(|s| written(path) < *s) {
                continue;
            }
            let read = read_lines(path, 0, |line| {
                let entry = entry(t, line);
                if question.wants(&entry) {
                    kept.push(entry);
                }
                true
            });
            if let (true, Ok((inode, at))) = (last, read) {
                cursor.insert(t.key(), json!({ "inode": inode, "at": at }));
            }
        }
    }
    let more = kept.left_out;
    (kept.into_entries(), cursor, more)
}

/// The lines after `cursor` the question wants, as many as fit, and the
/// cursor after them.
fn after(
    question: &Question,
    tagged: &[Tagged],
    cursor: &Map<String, Value>,
) -> (Vec<Entry>, Map<String, Value>, bool) {
    let mut taken: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    let mut next = Map::new();
    let mut full = false;
    for t in tagged {
        let key = t.key();
        let was = cursor.get(&key);
        if full {
            if let Some(was) = was {
                next.insert(key, was.clone());
            }
            continue;
        }
        let (first, mut from) = start(&t.files, was);
        for path in &t.files[first..] {
            let read = read_lines(path, from, |line| {
                let entry = entry(t, line);
                if question.wants(&entry) {
                    if taken.len() >= question.limit || bytes + entry.cost() > BYTES_MAX {
                        full = true;
                        return false;
                    }
                    bytes += entry.cost();
                    taken.push(entry);
                }
                true
            });
            from = 0;
            match read {
                Ok((inode, at)) => {
                    next.insert(key.clone(), json!({ "inode": inode, "at": at }));
                }
                Err(_) => continue,
            }
            if full {
                break;
            }
        }
    }
    (taken, next, full)
}

/// Where to go on in a tag's files from a cursor's `{inode, at}`: the file
/// that has its inode (the path's own, or rotated since) at `at` (from the
/// start if the file is shorter now: truncated); a tag with no cursor, or
/// whose file has gone, from the start of its newest file.
fn start(files: &[PathBuf], was: Option<&Value>) -> (usize, u64) {
    let newest = files.len().saturating_sub(1);
    let Some(was) = was else {
        return (newest, 0);
    };
    let (Some(inode), Some(at)) = (
        was.get("inode").and_then(Value::as_u64),
        was.get("at").and_then(Value::as_u64),
    ) else {
        return (newest, 0);
    };
    let found = files.iter().enumerate().rev().find_map(|(i, p)| {
        let m = std::fs::symlink_metadata(p).ok()?;
        (m.ino() == inode).then_some((i, if m.len() < at { 0 } else { at }))
    });
    found.unwrap_or((newest, 0))
}

/// The newest entries, at most `limit` of them and `BYTES_MAX` bytes.
struct Newest {
    heap: BinaryHeap<std::cmp::Reverse<(String, u64, Entry)>>,
    bytes: usize,
    limit: usize,
    seq: u64,
    left_out: bool,
}

impl Newest {
    fn new(limit: usize) -> Newest {
        Newest {
            heap: BinaryHeap::new(),
            bytes: 0,
            limit,
            seq: 0,
            left_out: false,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.bytes += entry.cost();
        self.seq += 1;
        self.heap
            .push(std::cmp::Reverse((entry.time.clone(), self.seq, entry)));
        while self.heap.len() > self.limit || self.bytes > BYTES_MAX {
            let Some(std::cmp::Reverse((_, _, oldest))) = self.heap.pop() else {
                break;
            };
            self.bytes -= oldest.cost();
            self.left_out = true;
        }
    }

    fn into_entries(self) -> Vec<Entry> {
        let mut all: Vec<(String, u64, Entry)> = self
            .heap
            .into_iter()
            .map(|std::cmp::Reverse(e)| e)
            .collect();
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        all.into_iter().map(|(_, _, e)| e).collect()
    }
}

/// A filed line (`TIME<TAB>TEXT`, its new line gone) as an entry.
fn entry(t: &Tagged, line: &[u8]) -> Entry {
    let text = String::from_utf8_lossy(line);
    let (time, rest) = match text.split_once('\t') {
        Some((time, rest)) if time.len() == 24 && time.ends_with('Z') => (time, rest),
        _ => ("", &*text),
    };
    Entry {
        time: time.to_string(),
        host: t.host.clone(),
        tag: t.tag.clone(),
        line: rest.to_string(),
    }
}

/// When `path` was last written, as `time_text` (empty when unknown).
fn written(path: &Path) -> String {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(String::new(), |d| time_text(d.as_secs_f64()))
}

/// Reads the whole lines of `path` from byte `from`, handing each (without
/// its new line) to `each` until it says stop;
/// returns the file's inode and the byte after the last line handed. A
/// line longer than `READ_MAX` is skipped; a last line without its new
/// line yet is left.
fn read_lines(
    path: &Path,
    from: u64,
    mut each: impl FnMut(&[u8]) -> bool,
) -> std::io::Result<(u64, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut at = if from > meta.len() { 0 } else { from };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    reader.seek(SeekFrom::Start(at))?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader).take(READ_MAX).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            if n as u64 == READ_MAX {
                // Too long to hold: skipped to its end, if it has one yet.
                let skipped = reader.skip_until(b'\n')?;
                if skipped == 0 {
                    break;
                }
                at += (n + skipped) as u64;
                continue;
            }
            break;
        }
        let end = at + n as u64;
        if !each(&line[..n - 1]) {
            break;
        }
        at = end;
    }
    Ok((meta.ino(), at))
}

/// Every tag's files under `dir` the question names, a host's folders and
/// a tag's files in name order. Links are not walked.
fn tagged_files(dir: &Path, question: &Question) -> Vec<Tagged> {
    let mut all = Vec::new();
    let mut budget = FILES_MAX;
    for host in sorted_entries(dir) {
        let name = host.file_name().to_string_lossy().into_owned();
        let is_dir = host.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !(question.hosts.is_empty() || question.hosts.contains(&name)) {
            continue;
        }
        let mut files = Vec::new();
        walk(&host.path(), "", 0, &mut files, &mut budget);
        let files: Vec<String> = files
            .into_iter()
            .filter(|tag| {
                let app = tag.split('/').next().unwrap_or("");
                question.apps.is_empty() || question.apps.iter().any(|a| a == app)
            })
            .collect();
        all.extend(group(&host.path(), &name, &files));
    }
    all
}

fn sorted_entries(dir: &Path) -> Vec<std::fs::DirEntry> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    entries
}

/// The regular files under `folder` as `/`-joined paths after `prefix`.
fn walk(folder: &Path, prefix: &str, depth: usize, out: &mut Vec<String>, budget: &mut usize) {
    if depth >= DEPTH_MAX {
        return;
    }
    for e in sorted_entries(folder) {
        if *budget == 0 {
            return;
        }
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path(), &format!("{name}/"), depth + 1, out, budget),
            Ok(t) if t.is_file() && !name.rsplit('/').next().unwrap_or("").starts_with('.') => {
                *budget -= 1;
                out.push(name);
            }
            _ => {}
        }
    }
}

/// Groups files into tags: `TAG.N` (N a number) goes with `TAG` when
/// there is one, oldest (the highest N) first.
fn group(folder: &Path, host: &str, files: &[String]) -> Vec<Tagged> {
    let mut tags: BTreeMap<&str, Vec<(u32, &str)>> = BTreeMap::new();
    for f in files {
        let rotated = f.rsplit_once('.').and_then(|(base, n)| {
            let n: u32 = n.parse().ok()?;
            files.iter().any(|g| g == base).then_some((base, n))
        });
        match rotated {
            Some((base, n)) => tags.entry(base).or_default().push((n, f)),
            None => tags.entry(f).or_default().push((0, f)),
        }
    }
    tags.into_iter()
        .map(|(tag, mut files)| {
            files.sort_by_key(|f| std::cmp::Reverse(f.0));
            Tagged {
                host: host.to_string(),
                tag: tag.to_string(),
                files: files.into_iter().map(|(_, f)| folder.join(f)).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn times_are_rfc3339_to_the_millisecond() {
        assert_eq!(time_text(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_text(1_796_610_600.125), "2026-12-07T02:30:00.125Z");
        assert_eq!(time_text(-5.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_text(f64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(time_text(f64::NAN).len(), 24);
    }

    fn file(dir: &Path, rel: &str, lines: &[(&str, &str)]) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        for (time, line) in lines {
            writeln!(f, "2026-12-07T02:{time}Z\t{line}").expect("write");
        }
    }

    fn ask(dir: &Path, request: Value) -> Value {
        answer(dir, &request).expect("answer")
    }

    fn texts(answer: &Value) -> Vec<String> {
        (answer["lines"].as_array().expect("lines").iter())
            .map(|l| {
                format!(
                    "{} {} {}",
                    l["host"].as_str().unwrap_or(""),
                    l["tag"].as_str().unwrap_or(""),
                    l["line"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    fn fleet() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        file(d, "run1/blog/access.log.1", &[("00:00.000", "a0")]);
        file(
            d,
            "run1/blog/access.log",
            &[("00:02.000", "a2 GET /"), ("00:04.000", "a4 POST /")],
        );
        file(
            d,
            "run2/blog/access.log",
            &[("00:01.000", "b1 GET /"), ("00:03.000", "b3 GET /x")],
        );
        file(d, "oplb/balancer/access.log", &[("00:05.000", "lb5")]);
        // Read at the same moment: kept in the file's order.
        file(
            d,
            "oplb/balancer/access.log",
            &[("00:06.000", "lb6 b"), ("00:06.000", "lb6 a")],
        );
        dir
    }

    #[test]
    fn lines_are_merged_in_time_order_and_chosen() {
        let dir = fleet();
        let d = dir.path();
        assert_eq!(
            texts(&ask(d, json!({"op": "logs"}))),
            [
                "run1 blog/access.log a0",
                "run2 blog/access.log b1 GET /",
                "run1 blog/access.log a2 GET /",
                "run2 blog/access.log b3 GET /x",
                "run1 blog/access.log a4 POST /",
                "oplb balancer/access.log lb5",
                "oplb balancer/access.log lb6 b",
                "oplb balancer/access.log lb6 a",
            ]
        );
        assert_eq!(
            texts(&ask(d, json!({"apps": ["blog"], "hosts": ["run2"]}))),
            [
                "run2 blog/access.log b1 GET /",
                "run2 blog/access.log b3 GET /x"
            ]
        );
        let since = ask(
            d,
            json!({"since": "2026-12-07T02:00:02.000Z", "grep": "GET"}),
        );
        assert_eq!(
            texts(&since),
            [
                "run1 blog/access.log a2 GET /",
                "run2 blog/access.log b3 GET /x"
            ]
        );
        let newest = ask(d, json!({"limit": 2, "hosts": ["run1", "run2"]}));
        assert_eq!(
            texts(&newest),
            [
                "run2 blog/access.log b3 GET /x",
                "run1 blog/access.log a4 POST /"
            ]
        );
        assert_eq!(
            (newest["more"].clone(), since["more"].clone()),
            (json!(true), json!(false))
        );
        assert!(answer(d, &json!({"grep": "("})).is_err_and(|e| e.contains("--grep `(`")));
        assert!(answer(d, &json!({"grep": "a{100000}{100000}"})).is_err());
    }

    #[test]
    fn a_cursor_follows_across_a_rotation_and_a_partial_line_waits() {
        let dir = fleet();
        let d = dir.path();
        let first = ask(d, json!({"hosts": ["run1"], "limit": 1}));
        assert_eq!(texts(&first), ["run1 blog/access.log a4 POST /"]);
        let cursor = first["cursor"].clone();
        assert_eq!(
            texts(&ask(d, json!({"hosts": ["run1"], "cursor": cursor}))),
            Vec::<String>::new()
        );
        // Written, then rotated, then more and half a line in the new file.
        file(d, "run1/blog/access.log", &[("00:06.000", "a6")]);
        std::fs::rename(
            d.join("run1/blog/access.log.1"),
            d.join("run1/blog/access.log.2"),
        )
        .expect("mv");
        std::fs::rename(
            d.join("run1/blog/access.log"),
            d.join("run1/blog/access.log.1"),
        )
        .expect("mv");
        file(d, "run1/blog/access.log", &[("00:07.000", "a7")]);
        file(d, "run1/blog/new.log", &[("00:08.000", "n8")]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("run1/blog/access.log"))
            .expect("open");
        f.write_all(b"2026-12-07T02:00:09.000Z\thalf")
            .expect("write");
        let next = ask(d, json!({"hosts": ["run1"], "cursor": cursor}));
        assert_eq!(
            texts(&next),
            [
                "run1 blog/access.log a6",
                "run1 blog/access.log a7",
                "run1 blog/new.log n8"
            ]
        );
        f.write_all(b" a line\n").expect("write");
        let last = ask(d, json!({"hosts": ["run1"], "cursor": next["cursor"]}));
        assert_eq!(texts(&last), ["run1 blog/access.log half a line"]);
    }

    #[test]
    fn answers_are_bounded_and_resume_where_they_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let lines: Vec<(String, String)> = (0..3000)
            .map(|n| {
                (
                    format!("00:{:02}.{:03}", n / 1000, n % 1000),
                    format!("{n} {}", "\"".repeat(400)),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = lines
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        file(d, "run1/blog/a.log", &refs);
        // A line too long to hold is skipped, not read into memory.
        file(
            d,
            "run1/blog/a.log",
            &[("59:00.000", &"x".repeat(100_000)), ("59:01.000", "after")],
        );
        let newest = ask(d, json!({}));
        let size = newest["lines"].to_string().len();
        assert!(size <= BYTES_MAX, "{size}");
        assert_eq!(newest["more"], true);
        assert_eq!(
            texts(&newest).last().map(String::as_str),
            Some("run1 blog/a.log after")
        );
        // Following from the start takes it in bounded pieces, each line once.
        let mut cursor = json!({"run1/blog/a.log": {"inode": 0, "at": 0}});
        let mut seen = Vec::new();
        for _ in 0..20 {
            let a = ask(d, json!({"cursor": cursor}));
            assert!(a["lines"].to_string().len() <= BYTES_MAX);
            seen.extend(texts(&a));
            cursor = a["cursor"].clone();
            if a["more"] == false {
                break;
            }
        }
        assert_eq!(seen.len(), 3001, "{:?}", seen.last());
        assert!(seen[0].starts_with("run1 blog/a.log 0 "));
    }

    #[cfg(unix)]
    #[test]
    fn links_are_not_followed() {
        let dir = fleet();
        let d = dir.path();
        let secret = tempfile::tempdir().expect("tempdir");
        file(secret.path(), "x/s.log", &[("00:00.000", "secret")]);
        std::os::unix::fs::symlink(secret.path().join("x"), d.join("run1/linked")).expect("link");
        std::os::unix::fs::symlink(secret.path().join("x/s.log"), d.join("run1/blog/s.log"))
            .expect("link");
        std::os::unix::fs::symlink(secret.path(), d.join("evil")).expect("link");
        let all = ask(d, json!({}));
        assert!(!all.to_string().contains("secret"), "{all}");
    }
}

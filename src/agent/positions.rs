//! Where each followed file stands, for acknowledged log shipping (`ship`,
//! `collector`). Both ends key a line by
//! `(file, offset)`, where `file` is the followed file's identity: its
//! device and inode, and a generation the follower counts up when it finds
//! the file truncated in place (the same inode read again from 0).
//!
//! - `Acked`, on the sending agent, one per collector: the end of the last
//!   line that collector acknowledged in each tag's file, kept in the
//!   agent's state folder (`ship/COLLECTOR.json`, written whole by rename),
//!   so a restarted agent resumes each file where the collector has it.
//! - `Seen`, on the collector, one per sending host: the end of the last
//!   line filed for each tag, and the file filed before that one, so a
//!   line sent again (an acknowledgement lost, an agent restarted, a copy
//!   of a batch that arrives after the tag's next file began) is
//!   acknowledged but not filed twice; kept beside the host's files
//!   (`DIR/HOST/.positions.json`).
//!
//! A tag's files follow one another (rotated, truncated), and the
//! collector takes a line of a file it has not seen as the start of the
//! tag's next file. That holds because the shipper never sends a line of
//! a new file while a line of the tag is unacknowledged, nor a second
//! batch of it before the first is acknowledged (`ship`): a batch lost on
//! a dead connection is sent again before anything of the next file, so
//! the old file's lines never arrive after the new one's. Only the
//! previous file is remembered: its identity cannot be a new file's while
//! it is still on disk (logrotate's `delaycompress` keeps `PATH.1`;
//! `copytruncate` makes a new generation of the same inode).
//!
//! Pure but for the loads and saves, which write a file whole (a new file
//! in the same folder, synced, renamed over the old: never through a link).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One followed file, as both ends name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Counted up each time the file is found truncated in place.
    pub generation: u32,
}

/// How far one file has got: the end of its last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub file: FileId,
    pub end: u64,
}

/// The larger of `old` and a line of `file` ending at `end`: a new file
/// (rotated, truncated) replaces the old one's position.
fn advance(old: Option<Position>, file: FileId, end: u64) -> Position {
    match old {
        Some(p) if p.file == file => Position {
            file,
            end: p.end.max(end),
        },
        _ => Position { file, end },
    }
}

/// What one collector has acknowledged of each tag's file.
#[derive(Debug)]
pub struct Acked {
    path: PathBuf,
    by_tag: BTreeMap<String, Position>,
}

impl Acked {
    /// The positions kept for collector `collector` under `state_dir`
    /// (none yet when there is no file).
    pub fn load(state_dir: &Path, collector: &str) -> Result<Acked, String> {
        let path = state_dir
            .join("ship")
            .join(format!("{}.json", super::collector::safe_name(collector)));
        let by_tag = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: {e}; remove it to ship each file from its end",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Acked { path, by_tag })
    }

    /// Where to resume `tag`'s file.
    pub fn get(&self, tag: &str) -> Option<Position> {
        self.by_tag.get(tag).copied()
    }

    /// The collector acknowledged `tag`'s lines of `file` up to `end`.
    pub fn ack(&mut self, tag: &str, file: FileId, end: u64) {
        // In place when the tag is known (once a line): no new key.
        match self.by_tag.get_mut(tag) {
            Some(at) => *at = advance(Some(*at), file, end),
            None => {
                self.by_tag.insert(tag.to_string(), Position { file, end });
            }
        }
    }

    /// Writes the positions whole: a temporary file in the same folder,
    /// synced, renamed over the old one.
    pub fn save(&self) -> Result<(), String> {
        save_whole(&self.path, &self.by_tag)
    }
}

/// What a collector has filed of one host's files.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    by_tag: BTreeMap<String, Filed>,
    /// Each file the host's lines were filed to (by its path under the
    /// host's folder): its inode and size when these positions were saved.
    /// What was written after belongs to a batch not acknowledged, which
    /// comes again: a collector killed while filing it cuts that off when
    /// it starts again (`collector`), so it is not filed twice.
    #[serde(default)]
    files: BTreeMap<String, Size>,
}

/// A filed file's inode and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    pub ino: u64,
    pub len: u64,
}

/// What is filed of one tag: up to where in its newest file, and which
/// file came before that one (all of it filed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Filed {
    at: Position,
    previous: Option<FileId>,
}

impl Seen {
    /// Whether the line at `offset` of `tag`'s `file` was filed already:
    /// before the end of the newest file, or in the file before it.
    pub fn has(&self, tag: &str, file: FileId, offset: u64) -> bool {
        (self.by_tag.get(tag))
            .is_some_and(|f| (f.at.file == file && offset < f.at.end) || f.previous == Some(file))
    }

    /// Whether a line at `offset` of `tag`'s `file` would leave a gap: lines
    /// before it not filed yet (a batch sent before it was lost and comes
    /// again later). Lines are filed in their file's order, so a line
    /// filed is never passed over as a duplicate.
    pub fn gap(&self, tag: &str, file: FileId, offset: u64) -> bool {
        (self.by_tag.get(tag)).is_some_and(|f| f.at.file == file && offset > f.at.end)
    }

    /// The line of `tag`'s `file` ending at `end` is filed; a line of
    /// another file than the newest starts the tag's next file.
    pub fn filed(&mut self, tag: &str, file: FileId, end: u64) {
        // In place when the tag is known (once a line): no new key.
        if let Some(filed) = self.by_tag.get_mut(tag) {
            if filed.at.file != file {
                filed.previous = Some(filed.at.file);
            }
            filed.at = advance(Some(filed.at), file, end);
            return;
        }
        let at = Position { file, end };
        let previous = None;
        self.by_tag.insert(tag.to_string(), Filed { at, previous });
    }

    /// Lines were filed to `path` (under the host's folder), which is now
    /// `size`.
    pub fn wrote(&mut self, path: &str, size: Size) {
        self.files.insert(path.to_string(), size);
    }

    /// Each file filed to and its size as of these positions.
    pub fn sizes(&self) -> impl Iterator<Item = (&str, Size)> {
        self.files.iter().map(|(path, size)| (path.as_str(), *size))
    }

    /// What `path` holds (nothing yet when there is no file; at most
    /// 4 MiB read, never through a link).
    pub fn load(path: &Path) -> Result<Seen, String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Seen::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut bytes = Vec::new();
        (file.take(4 << 20))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes it to `path` whole.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        save_whole(path, self)
    }
}

/// Writes `value` as JSON to `path`: a temporary file in the same folder
/// (made anew, never through a link), synced, renamed over the old one.
fn save_whole(path: &Path, value: &impl Serialize) -> Result<(), String> {
    use std::io::Write;
    let failed = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let folder = path.parent().ok_or_else(|| failed(&"no folder"))?;
    std::fs::create_dir_all(folder).map_err(|e| failed(&e))?;
    let text = serde_json::to_vec(value).map_err(|e| failed(&e))?;
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| failed(&e))?;
    file.write_all(&text).map_err(|e| failed(&e))?;
    file.as_file().sync_data().map_err(|e| failed(&e))?;
    file.persist(path).map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Seen {
        /// Whether the line is new (filing it if so), as the collector asks.
        fn admit(&mut self, tag: &str, file: FileId, offset: u64, end: u64) -> bool {
            let new = !self.has(tag, file, offset);
            if new {
                self.filed(tag, file, end);
            }
            new
        }
    }

    const A: FileId = FileId {
        dev: 1,
        ino: 10,
        generation: 0,
    };
    const B: FileId = FileId {
        dev: 1,
        ino: 11,
        generation: 0,
    };

    #[test]
    fn a_line_sent_again_is_filed_once() {
        let mut seen = Seen::default();
        assert!(seen.admit("blog/app.log", A, 0, 5));
        assert!(seen.admit("blog/app.log", A, 5, 9));
        // The agent restarted and sends both again.
        assert!(!seen.admit("blog/app.log", A, 0, 5));
        assert!(!seen.admit("blog/app.log", A, 5, 9));
        assert!(seen.admit("blog/app.log", A, 9, 12));
        // Another tag has its own position.
        assert!(seen.admit("blog/error.log", A, 0, 5));
    }

    #[test]
    fn a_rotated_or_truncated_file_starts_a_new_position() {
        let mut seen = Seen::default();
        assert!(seen.admit("t", A, 0, 100));
        // Rotated: the new file's first line.
        assert!(seen.admit("t", B, 0, 10));
        // Truncated in place: the same inode, a new generation.
        let again = FileId { generation: 1, ..B };
        assert!(seen.admit("t", again, 0, 10));
        assert!(!seen.admit("t", again, 0, 10));
    }

    #[test]
    fn a_line_of_the_file_before_the_newest_is_a_duplicate() {
        let mut seen = Seen::default();
        assert!(seen.admit("t", A, 0, 100));
        assert!(seen.admit("t", B, 0, 10));
        // A copy of a batch of A that arrives after B began: filed already.
        assert!(!seen.admit("t", A, 50, 60));
        assert!(!seen.admit("t", A, 100, 110), "all of A was filed");
        assert!(seen.admit("t", B, 10, 20), "B goes on");
        // Saved and loaded, it still knows.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".positions.json");
        seen.save(&path).expect("save");
        let again = Seen::load(&path).expect("load");
        assert_eq!(again, seen);
        assert!(again.has("t", A, 0) && again.has("t", B, 19) && !again.has("t", B, 20));
    }

    #[test]
    fn acknowledged_positions_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut acked = Acked::load(dir.path(), "lb1").expect("none yet");
        assert_eq!(acked.get("t"), None);
        acked.ack("t", A, 50);
        acked.ack("t", A, 40); // a late acknowledgement moves nothing back
        acked.save().expect("save");
        let again = Acked::load(dir.path(), "lb1").expect("load");
        assert_eq!(again.get("t"), Some(Position { file: A, end: 50 }));
        // Each collector has its own.
        assert_eq!(Acked::load(dir.path(), "lb2").expect("load").get("t"), None);
        std::fs::write(dir.path().join("ship/lb1.json"), "{").expect("write");
        let err = Acked::load(dir.path(), "lb1").expect_err("garbled");
        assert!(
            err.contains("ship/lb1.json") && err.contains("remove it"),
            "{err}"
        );
    }
}

//! Following log files like `tail -F`: a file present when the agent
//! starts is read from its end (what was there was shipped by the agent
//! before, or predates it), unless a collector's acknowledged position names
//! it (`Start::Saved`: the rest of that file, at the path or rotated to
//! `PATH.1`, then the path's), a file that appears later from its start.
//! Each line says where it lies (`Line`: the file's identity and the byte
//! range), which acknowledged shipping keys it by (`positions`). A file
//! renamed away by logrotate is read to its end before the new one at the
//! path is opened; a file truncated in place (`copytruncate`) is read again
//! from its start. The files stay on disk: nothing here writes or deletes.
//!
//! The agent runs as root and the files sit in folders their writers own,
//! so a file is opened without following a link (`O_NOFOLLOW`: an app user
//! who swaps its log for a link to `/etc/shadow` gets an error, not
//! shadow's lines shipped), without blocking (a FIFO in its place), and is
//! read only if it is a regular file owned by the user the config names
//! (`owner`); anything else is refused with a warning naming the file.
//!
//! Polled (by each collector's shipper, `ship`, every 100 ms) rather than
//! watched with inotify: it needs no extra crate, sees a rotation the same
//! way on every filesystem, and costs one `stat` per file per poll.

use super::positions::{FileId, Position};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Read at most this much of a file per poll, so one busy file cannot
/// starve the others.
const READ_MAX: u64 = 1 << 20;
/// A line longer than this is shipped in pieces.
const LINE_MAX: usize = 8 * 1024;

/// One line read, and where it lies in its file: `(file, offset)` is how
/// both ends of acknowledged shipping name it (`positions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub file: FileId,
    pub offset: u64,
    pub end: u64,
    pub text: String,
}

/// Where a follower starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A file present now is read from its end (nothing kept for it).
    End,
    /// Where a collector acknowledged it: the rest of that file (found at
    /// the path, or at `PATH.1` if rotated meanwhile), then the path's.
    Saved(Position),
}

/// One followed file.
pub struct Follower {
    path: PathBuf,
    /// The user the file must belong to.
    owner: String,
    /// The open file and its identity.
    file: Option<(File, FileId)>,
    pos: u64,
    /// The end of the file when it does not end with a newline yet, and
    /// where in the file it starts.
    partial: Vec<u8>,
    partial_at: u64,
    /// How the first open starts; later opens read a new file from 0.
    start: Option<Start>,
}

impl Follower {
    pub fn new(path: PathBuf, owner: String, start: Start) -> Follower {
        Follower {
            path,
            owner,
            file: None,
            pos: 0,
            partial: Vec::new(),
            partial_at: 0,
            start: Some(start),
        }
    }

    /// Appends every complete line written since the last poll to `out`.
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        self.drain(out)?;
        if self.replaced() {
            // Rotated: the old file is read to its end, now the new one.
            self.flush(out);
            self.file = None;
            self.open()?;
            self.drain(out)?;
        }
        Ok(())
    }

    fn open(&mut self) -> io::Result<()> {
        let start = self.start.take();
        if let Some(Start::Saved(saved)) = start {
            if self.resume(saved)? {
                return Ok(());
            }
        }
        let file = match open_owned(&self.path, &self.owner) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        self.pos = if start == Some(Start::End) {
            meta.len()
        } else {
            0
        };
        self.begin(file, identity(&meta, 0));
        Ok(())
    }

    /// Opens the file a collector has up to `saved`, at the path or,
    /// rotated since, at `PATH.1`; false when neither is it.
    fn resume(&mut self, saved: Position) -> io::Result<bool> {
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(".1");
        for path in [self.path.clone(), PathBuf::from(rotated)] {
            let file = match open_owned(&path, &self.owner) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let meta = file.metadata()?;
            let same = (meta.dev(), meta.ino()) == (saved.file.dev, saved.file.ino);
            if !same {
                continue;
            }
            if meta.len() < saved.end {
                // Truncated since: a new generation, from its start.
                self.pos = 0;
                self.begin(file, identity(&meta, saved.file.generation + 1));
            } else {
                self.pos = saved.end;
                self.begin(file, saved.file);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Where the next line starts in the file open, if one is.
    pub fn position(&self) -> Option<Position> {
        let (_, file) = self.file.as_ref()?;
        Some(Position {
            file: *file,
            end: self.partial_at,
        })
    }

    fn begin(&mut self, file: File, id: FileId) {
        self.partial.clear();
        self.partial_at = self.pos;
        self.file = Some((file, id));
    }

    /// Reads what was appended; starts over after a truncation.
    fn drain(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        let Some((file, id)) = self.file.as_mut() else {
            return Ok(());
        };
        if file.metadata()?.len() < self.pos {
            id.generation += 1;
            self.pos = 0;
            self.partial.clear();
            self.partial_at = 0;
        }
        file.seek(SeekFrom::Start(self.pos))?;
        let mut bytes = Vec::new();
        let n = file.take(READ_MAX).read_to_end(&mut bytes)?;
        let read_at = self.pos;
        self.pos += n as u64;
        self.split(read_at, &bytes, out);
        Ok(())
    }

    /// Splits `bytes`, read at `read_at`, into lines.
    fn split(&mut self, read_at: u64, bytes: &[u8], out: &mut Vec<Line>) {
        let mut at = 0;
        while let Some(i) = bytes[at..].iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[at..at + i]);
            at += i + 1;
            self.emit(read_at + at as u64, out);
        }
        self.partial.extend_from_slice(&bytes[at..]);
        if self.partial.len() >= LINE_MAX {
            self.emit(read_at + bytes.len() as u64, out);
        }
    }

    /// Ships the pending partial line, if any (its file has gone).
    fn flush(&mut self, out: &mut Vec<Line>) {
        self.emit(self.pos, out);
    }

    /// The pending line, ending at `end`.
    fn emit(&mut self, end: u64, out: &mut Vec<Line>) {
        let Some((_, file)) = &self.file else {
            return;
        };
        if !self.partial.is_empty() {
            let line = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
            out.push(Line {
                file: *file,
                offset: self.partial_at,
                end,
                text: String::from_utf8_lossy(line).into_owned(),
            });
        }
        self.partial.clear();
        self.partial_at = end;
    }

    /// Whether the path now names another file than the one open (a missing
    /// path is not a rotation yet: the old file may still be written).
    fn replaced(&self) -> bool {
        let Some((_, id)) = &self.file else {
            return false;
        };
        std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) != (id.dev, id.ino))
    }
}

fn identity(meta: &std::fs::Metadata, generation: u32) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        generation,
    }
}

/// Opens `path` for reading if it is a regular file owned by `owner`,
/// without following a link or blocking.
fn open_owned(path: &std::path::Path, owner: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                io::Error::other("it is a symbolic link; sitec follows only the file itself")
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    let Some(uid) = uid_of(owner) else {
        return Err(io::Error::other(format!(
            "its owner `{owner}` is not a user here"
        )));
    };
    if meta.uid() != uid {
        return Err(io::Error::other(format!(
            "it belongs to uid {}, not to `{owner}`; sitec ships only the file the app writes",
            meta.uid()
        )));
    }
    Ok(file)
}

/// The uid of `user`, from `/etc/passwd`.
fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut fields = l.split(':');
        (fields.next()? == user).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// Logs a file's error once, and its recovery.
pub fn report(f: &Follower, result: io::Result<()>, last: &mut Option<String>) {
    let now = result.err().map(|e| e.to_string());
    if now != *last {
        match &now {
            Some(e) => tracing::warn!("cannot follow {}: {e}", f.path.display()),
            None => tracing::info!("following {} again", f.path.display()),
        }
        *last = now;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn poll(f: &mut Follower) -> Vec<String> {
        poll_lines(f).into_iter().map(|l| l.text).collect()
    }

    fn poll_lines(f: &mut Follower) -> Vec<Line> {
        let mut out = Vec::new();
        f.poll(&mut out).expect("poll");
        out
    }

    #[test]
    fn lines_say_where_they_are_and_a_saved_position_resumes_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "");
        let mut f = Follower::new(path.clone(), me(), Start::End);
        assert!(poll(&mut f).is_empty());
        append(&path, "one\ntwo\n");
        let lines = poll_lines(&mut f);
        let spans: Vec<(u64, u64)> = lines.iter().map(|l| (l.offset, l.end)).collect();
        assert_eq!(spans, [(0, 4), (4, 8)]);
        // Acknowledged up to "one"; the agent stops; the file rotates and
        // a new one is written before it starts again.
        let saved = Position {
            file: lines[0].file,
            end: lines[0].end,
        };
        append(&path, "three\n");
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rotate");
        append(&path, "four\n");
        let mut again = Follower::new(path.clone(), me(), Start::Saved(saved));
        assert_eq!(poll(&mut again), ["two", "three", "four"]);
        // A saved file that is gone: the path's file from its start.
        let gone = Position {
            file: FileId {
                ino: 1,
                ..saved.file
            },
            end: 3,
        };
        let mut fresh = Follower::new(path.clone(), me(), Start::Saved(gone));
        assert_eq!(poll(&mut fresh), ["four"]);
        // Truncated in place: a new generation, from 0.
        std::fs::write(&path, "5\n").expect("truncate");
        let lines = poll_lines(&mut fresh);
        assert_eq!((lines[0].text.as_str(), lines[0].offset), ("5", 0));
        assert_eq!(lines[0].file.generation, 1);
    }

    #[test]
    fn starts_at_the_end_and_sees_appends_partial_lines_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "old line\n");
        let mut f = Follower::new(path.clone(), me(), Start::End);
        assert!(poll(&mut f).is_empty(), "what was there is not shipped");
        append(&path, "one\ntw");
        assert_eq!(poll(&mut f), ["one"]);
        append(&path, "o\r\n");
        assert_eq!(poll(&mut f), ["two"]);
        std::fs::write(&path, "").expect("truncate");
        append(&path, "after\n");
        assert_eq!(poll(&mut f), ["after"]);
    }

    #[test]
    fn survives_rotation_and_a_file_that_appears_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let mut f = Follower::new(path.clone(), me(), Start::End);
        assert!(poll(&mut f).is_empty());
        append(&path, "first\n");
        assert_eq!(poll(&mut f), ["first"], "a new file is read from its start");
        append(&path, "late in the old file");
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rotate");
        assert!(poll(&mut f).is_empty(), "no new file yet");
        append(&path, "in the new file\n");
        assert_eq!(poll(&mut f), ["late in the old file", "in the new file"]);
    }

    /// The name of the user the tests run as.
    pub(crate) fn me() -> String {
        let uid = rustix::process::geteuid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
        (passwd.lines())
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
            .expect("this user in /etc/passwd")
    }

    #[test]
    fn a_link_a_fifo_or_another_users_file_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("shadow");
        std::fs::write(&secret, "root:secret\n").expect("write");
        let link = dir.path().join("app.log");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let mut f = Follower::new(link.clone(), me(), Start::End);
        let mut out = Vec::new();
        let err = f.poll(&mut out).expect_err("a link is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::remove_file(&link).expect("rm");
        let made = std::process::Command::new("mkfifo").arg(&link).status();
        if made.is_ok_and(|s| s.success()) {
            let err = Follower::new(link.clone(), me(), Start::End)
                .poll(&mut out)
                .expect_err("a FIFO");
            assert!(err.to_string().contains("not a regular file"), "{err}");
            std::fs::remove_file(&link).expect("rm");
        }
        std::fs::write(&link, "x\n").expect("write");
        let err = Follower::new(link.clone(), "nobody".into(), Start::End)
            .poll(&mut out)
            .expect_err("owner");
        assert!(err.to_string().contains("not to `nobody`"), "{err}");
        assert!(out.is_empty());
    }
}

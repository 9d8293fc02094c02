//! Following log files like `tail -F`: a file present when the agent
//! starts is read from its end (what was there was shipped by the agent
//! before, or predates it), a file that appears later from its start. A file
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
//! Polling (every 250 ms, one thread for every file) rather than inotify:
//! it needs no extra crate, sees a rotation the same way on every
//! filesystem, and costs one `stat` per file per poll.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(250);
/// Read at most this much of a file per poll, so one busy file cannot
/// starve the others.
const READ_MAX: u64 = 1 << 20;
/// A line longer than this is shipped in pieces.
const LINE_MAX: usize = 8 * 1024;

/// One followed file.
pub struct Follower {
    path: PathBuf,
    /// The user the file must belong to.
    owner: String,
    /// The open file, with its device and inode.
    file: Option<(File, (u64, u64))>,
    pos: u64,
    /// The end of the file when it does not end with a newline yet.
    partial: Vec<u8>,
    /// The file as found at start: read from its end.
    at_start: bool,
}

impl Follower {
    pub fn new(path: PathBuf, owner: String) -> Follower {
        Follower {
            path,
            owner,
            file: None,
            pos: 0,
            partial: Vec::new(),
            at_start: true,
        }
    }

    /// Appends every complete line written since the last poll to `out`.
    pub fn poll(&mut self, out: &mut Vec<String>) -> io::Result<()> {
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
        let at_start = std::mem::replace(&mut self.at_start, false);
        let file = match open_owned(&self.path, &self.owner) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        self.pos = if at_start { meta.len() } else { 0 };
        self.partial.clear();
        self.file = Some((file, (meta.dev(), meta.ino())));
        Ok(())
    }

    /// Reads what was appended; starts over after a truncation.
    fn drain(&mut self, out: &mut Vec<String>) -> io::Result<()> {
        let Some((file, _)) = self.file.as_mut() else {
            return Ok(());
        };
        if file.metadata()?.len() < self.pos {
            self.pos = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.pos))?;
        let mut bytes = Vec::new();
        let n = file.take(READ_MAX).read_to_end(&mut bytes)?;
        self.pos += n as u64;
        self.split(&bytes, out);
        Ok(())
    }

    fn split(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..i]);
            self.flush(out);
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() >= LINE_MAX {
            self.flush(out);
        }
    }

    /// Ships the pending partial line, if any.
    fn flush(&mut self, out: &mut Vec<String>) {
        if self.partial.is_empty() {
            return;
        }
        let line = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
        out.push(String::from_utf8_lossy(line).into_owned());
        self.partial.clear();
    }

    /// Whether the path now names another file than the one open (a missing
    /// path is not a rotation yet: the old file may still be written).
    fn replaced(&self) -> bool {
        let Some((_, id)) = &self.file else {
            return false;
        };
        std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) != *id)
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

/// Follows every `(path, tag, owner)` on its own thread, calling
/// `ship(tag, line)` for each new line, forever. The first poll runs
/// before it returns, so where each file starts is fixed when the agent
/// says it is running.
pub fn spawn(files: Vec<(PathBuf, String, String)>, ship: impl Fn(&str, String) + Send + 'static) {
    let mut followers: Vec<(Follower, String, Option<String>)> = files
        .into_iter()
        .map(|(path, tag, owner)| (Follower::new(path, owner), tag, None))
        .collect();
    let mut poll_all = move || {
        for (follower, tag, last_error) in &mut followers {
            let mut lines = Vec::new();
            let result = follower.poll(&mut lines);
            lines.into_iter().for_each(|line| ship(tag, line));
            report(follower, result, last_error);
        }
    };
    poll_all();
    let thread = std::thread::Builder::new()
        .name("sitec-agent-follow".into())
        .spawn(move || loop {
            std::thread::sleep(POLL);
            poll_all();
        });
    if let Err(e) = thread {
        tracing::error!("cannot start the log follower: {e}");
    }
}

/// Logs a file's error once, and its recovery.
fn report(f: &Follower, result: io::Result<()>, last: &mut Option<String>) {
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
mod tests {
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
        let mut out = Vec::new();
        f.poll(&mut out).expect("poll");
        out
    }

    #[test]
    fn starts_at_the_end_and_sees_appends_partial_lines_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "old line\n");
        let mut f = Follower::new(path.clone(), me());
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
        let mut f = Follower::new(path.clone(), me());
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
    fn me() -> String {
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
        let mut f = Follower::new(link.clone(), me());
        let mut out = Vec::new();
        let err = f.poll(&mut out).expect_err("a link is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::remove_file(&link).expect("rm");
        let made = std::process::Command::new("mkfifo").arg(&link).status();
        if made.is_ok_and(|s| s.success()) {
            let err = Follower::new(link.clone(), me())
                .poll(&mut out)
                .expect_err("a FIFO");
            assert!(err.to_string().contains("not a regular file"), "{err}");
            std::fs::remove_file(&link).expect("rm");
        }
        std::fs::write(&link, "x\n").expect("write");
        let err = Follower::new(link.clone(), "nobody".into())
            .poll(&mut out)
            .expect_err("owner");
        assert!(err.to_string().contains("not to `nobody`"), "{err}");
        assert!(out.is_empty());
    }
}

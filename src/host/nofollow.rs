//! The one way the host side touches a path. Apply and facts run as root
//! on hosts where service users own folders (a database's config folder,
//! an app's log folder), and such a user may plant a link or swap a name at
//! any moment; so nothing here follows a link or trusts a name twice.
//!
//! A path is walked from `/` one folder at a time, each opened relative to
//! the one before with `O_NOFOLLOW | O_DIRECTORY` (systemd's `chase()`);
//! what is done in the last folder is done relative to its open handle
//! (`openat`, `renameat`, `unlinkat`...). A link on the way is refused,
//! unless only root could have made it: the link is root's and so is every
//! folder from `/` to it, none writable by its group or others (Debian's
//! merged `/usr`: `/lib -> usr/lib`; `/var/run -> /run`). Its target is
//! then walked by the same rule, 40 links at most. A file is
//! written under a random name created with `O_EXCL`, its owner and mode
//! set on the open file, synced, renamed over the target, and the folder
//! synced. A link, or anything but a folder or a regular file, where one
//! of those is wanted is an error that names the path and the fix; only a
//! link the spec itself declares is made or replaced (`symlink`), and a
//! removal never follows one.
//!
//! This module never runs a program and never decides what a host needs.

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Stat, Uid};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a name in a folder is, not following it if it is a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File,
    Dir,
    /// A symbolic link, and where it points.
    Link(PathBuf),
    /// A socket, a device, a FIFO: never read or written here.
    Other(&'static str),
}

/// A name's kind, owner, group and permission bits (`lstat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub node: Node,
    pub uid: u32,
    pub gid: u32,
    /// The permission bits, setuid, setgid and sticky included.
    pub mode: u32,
    /// When its content last changed, in seconds since the epoch.
    pub modified: i64,
}

impl Meta {
    fn of(stat: &Stat, node: Node) -> Meta {
        Meta {
            node,
            uid: stat.st_uid,
            gid: stat.st_gid,
            mode: stat.st_mode & 0o7777,
            modified: stat.st_mtime,
        }
    }
}

/// Owner, group and mode to give what is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// An open folder, reached without following a link but root's own;
/// `path` is only for messages. `root_only`: it and every folder walked
/// to reach it are root's and writable by no one else, so only root could
/// have put a link in it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    root_only: bool,
}

/// The most links one name may lead through (Linux's `MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

/// Whether a folder (or link) with this owner and mode, found in a folder
/// that is `root_only`, keeps the way root's alone.
fn stays_root_only(within_root_only: bool, meta: &Meta) -> bool {
    within_root_only && meta.uid == 0 && (meta.node != Node::Dir || meta.mode & 0o022 == 0)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A file opened for reading: never a link (`O_NOFOLLOW`), never blocking on
/// a FIFO (`O_NONBLOCK`), never taking a terminal.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// The name part of temporary files: `.NAME.sitec-tmp-RANDOM`.
pub const TEMP_MARK: &str = ".sitec-tmp-";

fn describe(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

fn node_of(stat: &Stat) -> Node {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Node::File,
        FileType::Directory => Node::Dir,
        FileType::Symlink => Node::Link(PathBuf::new()),
        FileType::Fifo => Node::Other("a FIFO"),
        FileType::Socket => Node::Other("a socket"),
        FileType::CharacterDevice => Node::Other("a character device"),
        FileType::BlockDevice => Node::Other("a block device"),
        FileType::Unknown => Node::Other("of an unknown kind"),
    }
}

/// Why `path`, which is `found`, cannot be used as `wanted` ("a folder",
/// "a file"): the message names the path and what to do.
pub fn refusal(path: &Path, found: &Node, wanted: &str) -> String {
    let path = path.display();
    match found {
        Node::Link(target) => format!(
            "{path} is a symbolic link (to {}) where {wanted} should be; sitec follows no link it did not make, but for one only root could have made on the way: remove the link (or point the spec at the real path) and apply again",
            target.display()
        ),
        Node::File => format!("{path} is a file where {wanted} should be; remove or move it and apply again"),
        Node::Dir => format!("{path} is a folder where {wanted} should be; remove or move it and apply again"),
        Node::Other(what) => format!("{path} is {what} where {wanted} should be; remove it and apply again"),
    }
}

/// The folders of an absolute path, each a plain name: no `..`, no `.`.
fn names(path: &Path) -> Result<Vec<&OsStr>, String> {
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir) {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    parts
        .map(|part| match part {
            Component::Normal(name) => Ok(name),
            _ => Err(format!(
                "{} holds `..` or `.`; paths on a host must be plain absolute paths",
                path.display()
            )),
        })
        .collect()
}

/// `path`'s folder and its last name.
fn split(path: &Path) -> Result<(PathBuf, &OsStr), String> {
    let all = names(path)?;
    let (last, _) = all
        .split_last()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    Ok((parent, last))
}

impl Dir {
    /// `/` itself.
    pub fn root() -> Result<Dir, String> {
        let fd = rustix::fs::open("/", DIR_FLAGS, Mode::empty())
            .map_err(|e| format!("cannot open /: {}", describe(e)))?;
        let mut dir = Dir {
            fd,
            path: PathBuf::from("/"),
            root_only: false,
        };
        dir.root_only = stays_root_only(true, &dir.meta_of_self()?);
        Ok(dir)
    }

    /// Opens the folder at the absolute `path`, refusing a link anywhere on
    /// the way. `Ok(None)` when some folder on the way does not exist.
    pub fn open(path: &Path) -> Result<Option<Dir>, String> {
        let mut dir = Dir::root()?;
        for name in names(path)? {
            match dir.sub(name)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// Like [`Dir::open`], but a missing folder is an error.
    pub fn existing(path: &Path) -> Result<Dir, String> {
        Dir::open(path)?.ok_or_else(|| format!("{} does not exist", path.display()))
    }

    /// Opens, creating what is missing (as root, mode 0755, like `mkdir
    /// -p`), the folder at `path`; the last one gets `last`'s owner and
    /// mode when given. Refuses a link anywhere on the way.
    pub fn make(path: &Path, last: Option<Ownership>) -> Result<Dir, String> {
        let mut dir = Dir::root()?;
        for name in names(path)? {
            dir = match dir.sub(name)? {
                Some(next) => next,
                None => dir.make_sub(name, 0o755)?,
            };
        }
        if let Some(own) = last {
            dir.set_ownership(own)?;
        }
        Ok(dir)
    }

    /// A second handle on the same folder.
    pub fn try_clone(&self) -> Result<Dir, String> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| format!("cannot reopen {}: {e}", self.path.display()))?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
            root_only: self.root_only,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// `cannot WHAT PATH: why`, for `name` in this folder.
    fn failed(&self, what: &str, name: &OsStr, e: Errno) -> String {
        format!(
            "cannot {what} {}: {}",
            self.child(name).display(),
            describe(e)
        )
    }

    /// What `name` is here, without following it (`None`: absent).
    pub fn meta(&self, name: &OsStr) -> Result<Option<Meta>, String> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                let node = match node_of(&stat) {
                    Node::Link(_) => Node::Link(self.read_link(name)?.unwrap_or_default()),
                    other => other,
                };
                Ok(Some(Meta::of(&stat, node)))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.failed("look at", name, e)),
        }
    }

    /// Where the link `name` points (`None`: absent).
    pub fn read_link(&self, name: &OsStr) -> Result<Option<PathBuf>, String> {
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(target) => Ok(Some(PathBuf::from(OsStr::from_bytes(target.as_bytes())))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.failed("read the link", name, e)),
        }
    }

    /// The folder `name` in this one, not following a link unless only root
    /// could have made it (`None`: absent).
    pub fn sub(&self, name: &OsStr) -> Result<Option<Dir>, String> {
        let mut links = MAX_LINKS;
        self.sub_within(name, &mut links)
    }

    /// [`Dir::sub`], following at most `links` more links.
    fn sub_within(&self, name: &OsStr, links: &mut u32) -> Result<Option<Dir>, String> {
        let path = self.child(name);
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => {
                let mut dir = Dir {
                    fd,
                    path,
                    root_only: false,
                };
                dir.root_only = stays_root_only(self.root_only, &dir.meta_of_self()?);
                Ok(Some(dir))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::NOTDIR | Errno::LOOP) => {
                let found = self.meta(name)?;
                match found {
                    Some(
                        link @ Meta {
                            node: Node::Link(_),
                            ..
                        },
                    ) if stays_root_only(self.root_only, &link) && *links > 0 => {
                        *links -= 1;
                        let Node::Link(target) = link.node else {
                            unreachable!("matched a link")
                        };
                        Ok(self.walk(&target, links)?.map(|dir| Dir { path, ..dir }))
                    }
                    found => Err(refusal(
                        &path,
                        &found.map_or(Node::Other("gone"), |m| m.node),
                        "a folder",
                    )),
                }
            }
            Err(e) => Err(format!("cannot open {}: {}", path.display(), describe(e))),
        }
    }

    /// The folder a root-only link in this folder points at, walked by the
    /// same rule as any path (`None`: absent).
    fn walk(&self, target: &Path, links: &mut u32) -> Result<Option<Dir>, String> {
        let mut dir = if target.is_absolute() {
            Dir::root()?
        } else {
            self.try_clone()?
        };
        for part in target.components() {
            dir = match part {
                Component::RootDir | Component::CurDir => continue,
                // The folder's real parent: one already walked.
                Component::ParentDir => {
                    let fd = rustix::fs::openat(&dir.fd, "..", DIR_FLAGS, Mode::empty()).map_err(
                        |e| format!("cannot open {}/..: {}", dir.path.display(), describe(e)),
                    )?;
                    let parent = dir.path.parent().unwrap_or(Path::new("/")).to_path_buf();
                    Dir {
                        fd,
                        path: parent,
                        root_only: dir.root_only,
                    }
                }
                Component::Normal(name) => match dir.sub_within(name, links)? {
                    Some(next) => next,
                    None => return Ok(None),
                },
                Component::Prefix(_) => unreachable!("no prefixes on Unix"),
            };
        }
        Ok(Some(dir))
    }

    /// Makes the folder `name` here (root's, `mode`) unless it exists; opens it.
    pub fn make_sub(&self, name: &OsStr, mode: u32) -> Result<Dir, String> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(self.failed("create", name, e)),
        }
        self.sub(name)?
            .ok_or_else(|| format!("{} vanished as it was made", self.child(name).display()))
    }

    /// Sets this folder's owner, group and mode, on its handle.
    pub fn set_ownership(&self, own: Ownership) -> Result<(), String> {
        set_ownership(&self.fd, &self.path, own)
    }

    pub fn meta_of_self(&self) -> Result<Meta, String> {
        let stat = rustix::fs::fstat(&self.fd)
            .map_err(|e| format!("cannot look at {}: {}", self.path.display(), describe(e)))?;
        Ok(Meta::of(&stat, Node::Dir))
    }

    /// Opens the regular file `name` for reading (`None`: absent). A link
    /// or anything else but a regular file is refused.
    pub fn open_file(&self, name: &OsStr) -> Result<Option<File>, String> {
        let path = self.child(name);
        // Looked at before it is opened: opening a device can do things.
        match self.meta(name)? {
            None => return Ok(None),
            Some(Meta {
                node: Node::File, ..
            }) => {}
            Some(meta) => return Err(refusal(&path, &meta.node, "a file")),
        }
        let fd = match rustix::fs::openat(&self.fd, name, READ_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                let found = self.meta(name)?.map_or(Node::Other("gone"), |m| m.node);
                return Err(refusal(&path, &found, "a file"));
            }
            Err(e) => return Err(format!("cannot open {}: {}", path.display(), describe(e))),
        };
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| format!("cannot look at {}: {}", path.display(), describe(e)))?;
        match node_of(&stat) {
            Node::File => Ok(Some(File::from(fd))),
            other => Err(refusal(&path, &other, "a file")),
        }
    }

    /// The bytes of the regular file `name` (`None`: absent), refusing one
    /// larger than `limit`.
    pub fn read(&self, name: &OsStr, limit: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(file) = self.open_file(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", self.child(name).display()))?;
        if bytes.len() as u64 > limit {
            return Err(format!(
                "{} is larger than {limit} bytes",
                self.child(name).display()
            ));
        }
        Ok(Some(bytes))
    }

    /// Creates the file `name`, which must not exist (`O_EXCL`, never
    /// through a link), with `own`'s owner and mode set on it.
    pub fn create_file(&self, name: &OsStr, own: Option<Ownership>) -> Result<File, String> {
        let path = self.child(name);
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        // Private until its real mode is set, so a secret is never readable on the way.
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| format!("cannot create {}: {}", path.display(), describe(e)))?;
        if let Some(own) = own {
            set_ownership(&fd, &path, own)?;
        }
        Ok(File::from(fd))
    }

    /// Opens the file `name` for a lock, creating it (root's, 0600) if
    /// missing; never through a link, never anything but a regular file.
    pub fn lock_file(&self, name: &OsStr) -> Result<File, String> {
        let path = self.child(name);
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600)).map_err(|e| {
                match e {
                    Errno::LOOP => refusal(
                        &path,
                        &Node::Link(self.read_link(name).ok().flatten().unwrap_or_default()),
                        "a file",
                    ),
                    e => format!("cannot open {}: {}", path.display(), describe(e)),
                }
            })?;
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| format!("cannot look at {}: {}", path.display(), describe(e)))?;
        match node_of(&stat) {
            Node::File => Ok(File::from(fd)),
            other => Err(refusal(&path, &other, "a file")),
        }
    }

    /// Writes `bytes` as the file `name` atomically, with `own`'s owner and
    /// mode: a new file under a random name, synced, renamed over `name`
    /// (whatever `name` was: a rename replaces a link, never follows it),
    /// then the folder synced. Readers see the old file or the new one.
    pub fn write_atomic(&self, name: &OsStr, bytes: &[u8], own: Ownership) -> Result<(), String> {
        let path = self.child(name);
        if let Some(meta) = self.meta(name)? {
            if meta.node != Node::File {
                return Err(refusal(&path, &meta.node, "a file"));
            }
        }
        self.remove_stale_temps(name);
        let temp = temp_name(name)?;
        let result = (|| {
            let mut file = self.create_file(&temp, Some(own))?;
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            rustix::fs::renameat(&self.fd, &temp, &self.fd, name)
                .map_err(|e| format!("cannot rename onto {}: {}", path.display(), describe(e)))
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, &temp, AtFlags::empty());
        }
        result?;
        self.sync()
    }

    /// Removes temporary files an apply cut off by a kill left for `name`.
    fn remove_stale_temps(&self, name: &OsStr) {
        let mut prefix = b".".to_vec();
        prefix.extend_from_slice(name.as_bytes());
        prefix.extend_from_slice(TEMP_MARK.as_bytes());
        for (entry, node) in self.entries().unwrap_or_default() {
            if node == FileType::RegularFile && entry.as_bytes().starts_with(&prefix) {
                let _ = rustix::fs::unlinkat(&self.fd, &entry, AtFlags::empty());
            }
        }
    }

    /// Makes `name` a symbolic link to `target`, replacing what is there
    /// (a file or another link) in one rename.
    pub fn symlink(&self, name: &OsStr, target: &Path) -> Result<(), String> {
        let path = self.child(name);
        if let Some(meta) = self.meta(name)? {
            if meta.node == Node::Dir {
                return Err(refusal(&path, &meta.node, "a symbolic link"));
            }
        }
        let temp = temp_name(name)?;
        rustix::fs::symlinkat(target, &self.fd, &temp)
            .map_err(|e| format!("cannot make the link {}: {}", path.display(), describe(e)))?;
        if let Err(e) = rustix::fs::renameat(&self.fd, &temp, &self.fd, name) {
            let _ = rustix::fs::unlinkat(&self.fd, &temp, AtFlags::empty());
            return Err(format!(
                "cannot put the link {} in place: {}",
                path.display(),
                describe(e)
            ));
        }
        self.sync()
    }

    /// Moves `name` to `to` in the folder `dest`, replacing it.
    pub fn rename(&self, name: &OsStr, dest: &Dir, to: &OsStr) -> Result<(), String> {
        rustix::fs::renameat(&self.fd, name, &dest.fd, to).map_err(|e| {
            format!(
                "cannot move {} to {}: {}",
                self.child(name).display(),
                dest.child(to).display(),
                describe(e)
            )
        })
    }

    /// Swaps `a` and `b`, two names in this folder, in one step
    /// (`RENAME_EXCHANGE`): whoever looks finds one or the other there,
    /// never neither.
    pub fn exchange(&self, a: &OsStr, b: &OsStr) -> Result<(), String> {
        rustix::fs::renameat_with(&self.fd, a, &self.fd, b, rustix::fs::RenameFlags::EXCHANGE)
            .map_err(|e| {
                format!(
                    "cannot swap {} and {}: {}",
                    self.child(a).display(),
                    self.child(b).display(),
                    describe(e)
                )
            })
    }

    /// Removes the file or link `name` (a link itself, never what it points
    /// at). `false` when it was not there.
    pub fn remove_file(&self, name: &OsStr) -> Result<bool, String> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.failed("remove", name, e)),
        }
    }

    /// Removes the empty folder `name`: `Ok(Some(false))` when it is not
    /// empty, `Ok(None)` when it was not there.
    pub fn remove_empty_dir(&self, name: &OsStr) -> Result<Option<bool>, String> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(Some(true)),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(Some(false)),
            Err(Errno::NOTDIR) => {
                let found = self.meta(name)?.map_or(Node::Other("gone"), |m| m.node);
                Err(refusal(&self.child(name), &found, "a folder"))
            }
            Err(e) => Err(self.failed("remove", name, e)),
        }
    }

    /// Removes `name` and everything under it, links as links (`rm -rf`
    /// through handles). `false` when it was not there.
    pub fn remove_tree(&self, name: &OsStr) -> Result<bool, String> {
        match self.meta(name)? {
            None => Ok(false),
            Some(Meta {
                node: Node::Dir, ..
            }) => {
                if let Some(sub) = self.sub(name)? {
                    for (entry, _) in sub.entries()? {
                        sub.remove_tree(&entry)?;
                    }
                }
                Ok(self.remove_empty_dir(name)?.is_some())
            }
            Some(_) => self.remove_file(name),
        }
    }

    /// The names in this folder (not `.` and `..`) and what each is.
    pub fn entries(&self) -> Result<Vec<(OsString, FileType)>, String> {
        let mut dir = rustix::fs::Dir::read_from(&self.fd)
            .map_err(|e| format!("cannot list {}: {}", self.path.display(), describe(e)))?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry
                .map_err(|e| format!("cannot list {}: {}", self.path.display(), describe(e)))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_os_string();
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    self.meta(&name)?
                        .map_or(FileType::Unknown, |m| match m.node {
                            Node::File => FileType::RegularFile,
                            Node::Dir => FileType::Directory,
                            Node::Link(_) => FileType::Symlink,
                            Node::Other(_) => FileType::Unknown,
                        })
                }
                known => known,
            };
            out.push((name, kind));
        }
        Ok(out)
    }

    /// Gives this folder and everything under it `uid` and `gid`, links
    /// themselves included and never what they point at.
    pub fn chown_tree(&self, uid: u32, gid: u32) -> Result<(), String> {
        let (owner, group) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        rustix::fs::fchown(&self.fd, owner, group)
            .map_err(|e| format!("cannot chown {}: {}", self.path.display(), describe(e)))?;
        for (name, kind) in self.entries()? {
            if kind == FileType::Directory {
                if let Some(sub) = self.sub(&name)? {
                    sub.chown_tree(uid, gid)?;
                }
            } else {
                self.chown_entry(&name, uid, gid)?;
            }
        }
        Ok(())
    }

    /// Gives the entry `name` (a link itself, not what it points at) `uid` and `gid`.
    pub fn chown_entry(&self, name: &OsStr, uid: u32, gid: u32) -> Result<(), String> {
        let (owner, group) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        rustix::fs::chownat(&self.fd, name, owner, group, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.failed("chown", name, e))
    }

    /// Flushes this folder's entries to disk (after a rename into it).
    pub fn sync(&self) -> Result<(), String> {
        rustix::fs::fsync(&self.fd)
            .map_err(|e| format!("cannot sync {}: {}", self.path.display(), describe(e)))
    }

    /// Flushes the whole file system this folder is on.
    pub fn sync_all(&self) -> Result<(), String> {
        rustix::fs::syncfs(&self.fd)
            .map_err(|e| format!("cannot sync {}: {}", self.path.display(), describe(e)))
    }
}

fn set_ownership<Fd: AsFd>(fd: Fd, path: &Path, own: Ownership) -> Result<(), String> {
    rustix::fs::fchown(
        &fd,
        Some(Uid::from_raw(own.uid)),
        Some(Gid::from_raw(own.gid)),
    )
    .map_err(|e| format!("cannot chown {}: {}", path.display(), describe(e)))?;
    // After the chown, which clears setuid and setgid bits.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(own.mode & 0o7777))
        .map_err(|e| format!("cannot chmod {}: {}", path.display(), describe(e)))
}

/// `.NAME.sitec-tmp-` and 12 random hex digits: nobody can guess it, and
/// `O_EXCL` fails on a name planted all the same.
fn temp_name(name: &OsStr) -> Result<OsString, String> {
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for a temporary name: {e}"))?;
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(TEMP_MARK);
    for byte in random {
        temp.push(format!("{byte:02x}"));
    }
    Ok(temp)
}

// Whole-path shorthands: the folder is opened without following links, then
// the last name is handled relative to it.

/// The folder of `path` and its last name; `Ok(None)` when a folder on the
/// way does not exist.
pub fn parent(path: &Path) -> Result<Option<(Dir, OsString)>, String> {
    let (folder, name) = split(path)?;
    Ok(Dir::open(&folder)?.map(|dir| (dir, name.to_os_string())))
}

/// Like [`parent`], but a missing folder is an error.
pub fn existing_parent(path: &Path) -> Result<(Dir, OsString), String> {
    let (folder, name) = split(path)?;
    Ok((Dir::existing(&folder)?, name.to_os_string()))
}

/// What `path` is (`None`: it, or a folder on the way, does not exist).
pub fn meta(path: &Path) -> Result<Option<Meta>, String> {
    if path == Path::new("/") {
        return Dir::root()?.meta_of_self().map(Some);
    }
    match parent(path)? {
        Some((dir, name)) => dir.meta(&name),
        None => Ok(None),
    }
}

/// The bytes of the regular file at `path`, up to `limit` (`None`: absent).
pub fn read(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, String> {
    match parent(path)? {
        Some((dir, name)) => dir.read(&name, limit),
        None => Ok(None),
    }
}

/// Writes the file at `path` atomically (its folder must exist).
pub fn write_atomic(path: &Path, bytes: &[u8], own: Ownership) -> Result<(), String> {
    let (dir, name) = existing_parent(path)?;
    dir.write_atomic(&name, bytes, own)
}

/// Where the link at `path` points (`None`: absent or not a link).
pub fn read_link(path: &Path) -> Result<Option<PathBuf>, String> {
    match meta(path)? {
        Some(Meta {
            node: Node::Link(target),
            ..
        }) => Ok(Some(target)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;

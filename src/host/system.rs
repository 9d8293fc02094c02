//! The few things the host side asks of the system: run a program, look up
//! users and groups, write a file atomically, read a file's mode and owner.
//! Plain std; everything returns a message that names what failed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// A program's outcome: success and what it printed (stdout and stderr).
pub struct Ran {
    pub ok: bool,
    pub output: String,
}

/// Runs `sh -c script`, as `user` when given (via runuser), collecting
/// output. Never fails: a program that cannot start is a failed run.
pub fn sh(script: &str, user: Option<&str>) -> Ran {
    let mut command = match user {
        Some(user) if user != "root" => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "sh", "-c", script]);
            c
        }
        _ => {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    run(&mut command)
}

/// Runs a program with arguments (no shell).
pub fn program(name: &str, args: &[&str]) -> Ran {
    run(Command::new(name).args(args))
}

fn run(command: &mut Command) -> Ran {
    command
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive");
    match command.output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Ran {
                ok: out.status.success(),
                output: text.trim_end().to_string(),
            }
        }
        Err(e) => Ran {
            ok: false,
            output: format!("cannot start {:?}: {e}", command.get_program()),
        },
    }
}

/// A `Ran` as a result: the error is the output, or `what failed`.
pub fn ok_or(ran: Ran, what: &str) -> Result<(), String> {
    if ran.ok {
        Ok(())
    } else if ran.output.is_empty() {
        Err(format!("{what} failed"))
    } else {
        Err(format!("{what} failed: {}", last_lines(&ran.output, 8)))
    }
}

/// The last `n` lines of a program's output: where the error usually is.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One line of /etc/passwd or /etc/group: name and numeric id (field 3).
fn lookup(file: &str, name: &str) -> Option<u32> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

fn name_of(file: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == id).then(|| fields[0].to_string())
    })
}

pub fn uid(user: &str) -> Option<u32> {
    lookup("/etc/passwd", user)
}

pub fn gid(group: &str) -> Option<u32> {
    lookup("/etc/group", group)
}

/// The groups `user` is a member of (besides its primary group).
pub fn groups_of(user: &str) -> Vec<String> {
    let text = fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let members = fields.get(3)?;
            members
                .split(',')
                .any(|m| m == user)
                .then(|| fields[0].to_string())
        })
        .collect()
}

/// The passwd entry of `user`: (home, shell).
pub fn passwd(user: &str) -> Option<(String, String)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user) && fields.len() >= 7)
            .then(|| (fields[5].to_string(), fields[6].to_string()))
    })
}

/// Owner, group and permission bits of a path (not following symlinks).
pub struct Meta {
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub is_dir: bool,
    pub is_file: bool,
}

pub fn meta(path: &Path) -> Option<Meta> {
    let m = fs::symlink_metadata(path).ok()?;
    Some(Meta {
        owner: name_of("/etc/passwd", m.uid()).unwrap_or_else(|| m.uid().to_string()),
        group: name_of("/etc/group", m.gid()).unwrap_or_else(|| m.gid().to_string()),
        mode: m.permissions().mode() & 0o7777,
        is_dir: m.is_dir(),
        is_file: m.is_file(),
    })
}

/// `"0640"` to its bits.
pub fn parse_mode(mode: &str) -> Result<u32, String> {
    u32::from_str_radix(mode, 8).map_err(|_| format!("`{mode}` is not an octal mode"))
}

/// Sets owner, group and mode of `path`.
pub fn set_owner_mode(path: &Path, owner: &str, group: &str, mode: &str) -> Result<(), String> {
    let uid = uid(owner).ok_or_else(|| format!("there is no user `{owner}`"))?;
    let gid = gid(group).ok_or_else(|| format!("there is no group `{group}`"))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(parse_mode(mode)?))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

/// The temporary name a file is written under before its rename: fixed,
/// so a write cut off by a kill is replaced by the next one, never read.
pub fn temp_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.sitec-tmp"))
}

/// Writes `bytes` to `path` atomically with owner, group and mode: a
/// temporary file in the same folder, flushed to disk, renamed over the
/// target. Readers see the old file or the new one, never half of one.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    owner: &str,
    group: &str,
    mode: &str,
) -> Result<(), String> {
    let tmp = temp_name(path);
    let result = (|| {
        let mut f =
            fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        // Restrictive until the real mode is set, so a secret is never briefly world-readable.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        set_owner_mode(&tmp, owner, group, mode)?;
        fs::rename(&tmp, path).map_err(|e| format!("cannot rename onto {}: {e}", path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Hex sha256 of a file's bytes, or `None` when it cannot be read.
pub fn file_sha256(path: &Path) -> Option<String> {
    fs::read(path)
        .ok()
        .map(|b| crate::resources::sha256_hex(&b))
}

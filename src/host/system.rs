//! The few things the host side asks of the system: run a program, look up
//! users and groups; and, by name, write a file atomically and read a
//! path's mode and owner (through [`nofollow`], which follows no link).
//! Everything returns a message that names what failed.

use super::nofollow::{self, Node, Ownership};
use std::fs;
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

/// The user holding uid `id`, if any.
pub fn user_with_uid(id: u32) -> Option<String> {
    name_of("/etc/passwd", id)
}

/// The group holding gid `id`, if any.
pub fn group_with_gid(id: u32) -> Option<String> {
    name_of("/etc/group", id)
}

/// The numeric ids of `user`'s passwd entry: (uid, primary gid).
pub fn ids(user: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&user) {
            return None;
        }
        Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
    })
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

/// What a path is, with its owner's and group's names and its mode; read
/// without following a link on the way or at the end ([`nofollow`]).
pub struct Meta {
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub node: Node,
}

pub fn meta(path: &Path) -> Result<Option<Meta>, String> {
    Ok(nofollow::meta(path)?.map(|m| Meta {
        owner: name_of("/etc/passwd", m.uid).unwrap_or_else(|| m.uid.to_string()),
        group: name_of("/etc/group", m.gid).unwrap_or_else(|| m.gid.to_string()),
        mode: m.mode,
        node: m.node,
    }))
}

/// `"0640"` to its bits.
pub fn parse_mode(mode: &str) -> Result<u32, String> {
    u32::from_str_radix(mode, 8).map_err(|_| format!("`{mode}` is not an octal mode"))
}

/// Owner, group and mode by name, as numbers.
pub fn ownership(owner: &str, group: &str, mode: &str) -> Result<Ownership, String> {
    Ok(Ownership {
        uid: uid(owner).ok_or_else(|| format!("there is no user `{owner}`"))?,
        gid: gid(group).ok_or_else(|| format!("there is no group `{group}`"))?,
        mode: parse_mode(mode)?,
    })
}

/// Writes `bytes` to `path` atomically with owner, group and mode (see
/// [`nofollow::Dir::write_atomic`]); the folder must exist.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    owner: &str,
    group: &str,
    mode: &str,
) -> Result<(), String> {
    nofollow::write_atomic(path, bytes, ownership(owner, group, mode)?)
}

/// Hex sha256 of a regular file's bytes (`None`: absent); a link or
/// anything but a regular file is an error.
pub fn file_sha256(path: &Path) -> Result<Option<String>, String> {
    Ok(nofollow::read(path, u64::MAX)?.map(|b| crate::resources::sha256_hex(&b)))
}

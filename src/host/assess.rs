//! Compares one desired resource with what the host has. Read-only: the
//! only programs it runs ask questions (`dpkg-query`, `systemctl show`, a
//! command's `unless` guard). Plan and apply both use it, so what a plan
//! predicts and what apply decides are the same judgement.

use super::nofollow::{self, Node};
use super::release::{short, Place};
use super::state::State;
use super::system::{self, meta, parse_mode};
use super::wire::{Assessment, Item, Status};
use crate::resources::Kind;
use std::path::Path;

/// A changed file's old content goes into the plan's diff up to this size.
const DIFF_LIMIT: usize = 128 * 1024;

/// Marker files sitec leaves in what it built, holding the digest built.
pub const TREE_MARKER: &str = ".sitec-tree";
pub const VENV_MARKER: &str = ".sitec-venv";
pub const PYTHON_MARKER: &str = ".sitec-built";
/// The file list of a release, beside it (its item's content).
pub const TREE_FILES: &str = ".sitec-files";

pub fn assess(item: &Item, state: &State) -> Assessment {
    let differences = match &item.kind {
        Kind::Package { name, version } => package(name, version.as_deref()),
        Kind::User {
            name,
            home,
            shell,
            groups,
            uid,
            ..
        } => user(name, home.as_deref(), shell.as_deref(), groups, *uid),
        Kind::Directory {
            path,
            owner,
            group,
            mode,
        } => directory(path, owner, group, mode),
        Kind::File {
            path,
            owner,
            group,
            mode,
            sha256,
            absent,
            ..
        } => file(path, owner, group, mode, sha256, *absent),
        Kind::Symlink { path, target } => symlink(path, target),
        Kind::Service {
            name,
            enabled,
            running,
            ..
        } => service(name, *enabled, *running),
        Kind::Virtualenv { path, python, .. } => {
            // One to build: say now, before anything changes, when the
            // host lacks the Python it needs.
            let mut out = virtualenv(path, &item.digest);
            // (Unless the plan brings sitec's build of it first.)
            let brought = (item.requires.iter()).any(|r| r.starts_with("python:"));
            if let (false, false, Err(missing)) = (
                out.is_empty(),
                brought,
                super::converge::interpreter(python),
            ) {
                out.push(missing);
            }
            out
        }
        Kind::Tree { path, .. } => release(path, item),
        Kind::Command {
            unless,
            creates,
            user,
            ..
        } => command(
            item,
            unless.as_deref(),
            creates.as_deref(),
            user.as_deref(),
            state,
        ),
        Kind::Subvolume { path } => subvolume(path),
        Kind::Python { path, packages, .. } => python(path, packages, &item.digest),
        Kind::Timer {
            name,
            every_seconds,
            command,
            user,
        } => timer(name, *every_seconds, command, user),
    };
    let status = match differences.first().map(String::as_str) {
        None => Status::Ok,
        Some(MISSING) => Status::Add,
        Some(_) => Status::Change,
    };
    let old_content = match (&item.kind, status) {
        (
            Kind::File {
                path,
                absent: false,
                ..
            },
            Status::Change,
        ) => readable_text(Path::new(path)),
        // The release's files, for the plan's list of what it adds and removes.
        (Kind::Tree { path, .. }, Status::Change) => Place::of(Path::new(path))
            .ok()
            .and_then(|place| Some(place.path_of(&place.live().ok()??)))
            .and_then(|live| readable_text(&live.join(TREE_FILES))),
        _ => None,
    };
    let drifted = status != Status::Ok && state.digest_of(&item.id) == Some(item.digest.as_str());
    Assessment {
        id: item.id.clone(),
        status,
        differences,
        old_content,
        drifted,
    }
}

/// The first difference of a resource that is not there at all.
pub const MISSING: &str = "missing";

fn missing() -> Vec<String> {
    vec![MISSING.to_string()]
}

/// A file's text for the diff: only a regular file opened without following
/// a link (a link planted at the path shows as a difference, never as the
/// text of what it points at), not too large, UTF-8.
fn readable_text(path: &Path) -> Option<String> {
    let bytes = nofollow::read(path, DIFF_LIMIT as u64).ok()??;
    String::from_utf8(bytes).ok()
}

/// What differs when `found` is at a path where `wanted` should be.
fn wrong_kind(found: &Node, wanted: &str) -> String {
    match found {
        Node::Link(target) => format!("a symbolic link to {}, not {wanted}", target.display()),
        _ => format!("not {wanted}"),
    }
}

/// A Python sitec built: the libraries it links against installed, and
/// its folder holding this build (its marker names the item's digest).
fn python(path: &str, packages: &[String], digest: &str) -> Vec<String> {
    let mut out: Vec<String> = (packages.iter())
        .filter(|p| !package(p, None).is_empty())
        .map(|p| format!("package {p} (it links against) to install"))
        .collect();
    match meta(Path::new(path)) {
        Ok(Some(m)) if m.node == Node::Dir => {
            let marker = Path::new(path).join(PYTHON_MARKER);
            let built = nofollow::read(&marker, 4096).ok().flatten();
            if built.is_none_or(|b| String::from_utf8_lossy(&b).trim() != digest) {
                out.push("another build of it is there".into());
            }
        }
        Ok(Some(m)) => out.push(wrong_kind(&m.node, "a directory")),
        Ok(None) => out.extend(missing()),
        Err(e) => out.push(e),
    }
    out
}

/// How an installed package differs from `version` (none: any version),
/// or that it is missing.
pub(super) fn package(name: &str, version: Option<&str>) -> Vec<String> {
    let ran = system::program(
        "dpkg-query",
        &["-W", "-f=${db:Status-Status} ${Version}", name],
    );
    let mut words = ran.output.split_whitespace();
    match (ran.ok, words.next(), words.next()) {
        (true, Some("installed"), Some(have)) => match version {
            Some(want) if want != have => vec![format!("version {have} -> {want}")],
            _ => Vec::new(),
        },
        _ => missing(),
    }
}

fn user(
    name: &str,
    home: Option<&str>,
    shell: Option<&str>,
    groups: &[String],
    uid: Option<u32>,
) -> Vec<String> {
    // A fixed uid the host cannot give: said first, so the plan shows it.
    let mut out: Vec<String> = (uid.and_then(|uid| super::converge::uid_problem(name, uid)))
        .into_iter()
        .collect();
    let Some((have_home, have_shell)) = system::passwd(name) else {
        return if out.is_empty() { missing() } else { out };
    };
    if let Some(home) = home.filter(|h| *h != have_home) {
        out.push(format!("home {have_home} -> {home}"));
    }
    if let Some(shell) = shell.filter(|s| *s != have_shell) {
        out.push(format!("shell {have_shell} -> {shell}"));
    }
    let member_of = system::groups_of(name);
    for group in groups.iter().filter(|g| !member_of.contains(g)) {
        out.push(format!("not in group {group}"));
    }
    out
}

/// Owner, group and mode differences of an existing path.
fn ownership(m: &system::Meta, owner: &str, group: &str, mode: &str) -> Vec<String> {
    let mut out = Vec::new();
    if m.owner != owner {
        out.push(format!("owner {} -> {owner}", m.owner));
    }
    if m.group != group {
        out.push(format!("group {} -> {group}", m.group));
    }
    if parse_mode(mode).is_ok_and(|want| want != m.mode) {
        out.push(format!("mode {:04o} -> {mode}", m.mode));
    }
    out
}

fn directory(path: &str, owner: &str, group: &str, mode: &str) -> Vec<String> {
    match meta(Path::new(path)) {
        Ok(Some(m)) if m.node == Node::Dir => ownership(&m, owner, group, mode),
        Ok(Some(m)) => vec![wrong_kind(&m.node, "a directory")],
        Ok(None) => missing(),
        Err(e) => vec![e],
    }
}

fn file(
    path: &str,
    owner: &str,
    group: &str,
    mode: &str,
    sha256: &str,
    absent: bool,
) -> Vec<String> {
    let m = meta(Path::new(path));
    if absent {
        return match m {
            Ok(Some(_)) => vec!["present".to_string()],
            Ok(None) => Vec::new(),
            Err(e) => vec![e],
        };
    }
    match m {
        Ok(Some(m)) if m.node == Node::File => {
            let mut out = Vec::new();
            match system::file_sha256(Path::new(path)) {
                Ok(Some(have)) if have == sha256 => {}
                Ok(_) => out.push("content".to_string()),
                Err(e) => out.push(e),
            }
            out.extend(ownership(&m, owner, group, mode));
            out
        }
        Ok(Some(m)) => vec![wrong_kind(&m.node, "a regular file")],
        Ok(None) => missing(),
        Err(e) => vec![e],
    }
}

fn symlink(path: &str, target: &str) -> Vec<String> {
    match meta(Path::new(path)) {
        Ok(Some(m)) => match m.node {
            Node::Link(have) if have == Path::new(target) => Vec::new(),
            Node::Link(have) => vec![format!("target {} -> {target}", have.display())],
            _ => vec!["not a symlink".to_string()],
        },
        Ok(None) => missing(),
        Err(e) => vec![e],
    }
}

/// What systemd says of a unit: (load state, unit file state, active state).
pub fn unit_state(unit: &str) -> (String, String, String) {
    let ran = system::program(
        "systemctl",
        &["show", "-p", "LoadState,UnitFileState,ActiveState", unit],
    );
    let value = |key: &str| show_value(&ran.output, key).unwrap_or("").to_string();
    (
        value("LoadState"),
        value("UnitFileState"),
        value("ActiveState"),
    )
}

/// `systemctl show` prints one block of `Key=value` lines per unit, in the
/// order asked, blocks apart by a blank line.
pub fn show_blocks(out: &str) -> impl Iterator<Item = &str> {
    out.split("\n\n").filter(|b| !b.trim().is_empty())
}

/// The value of `key` in one block of `systemctl show`.
pub fn show_value<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    block
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Unit file states that need no `systemctl enable`.
pub fn is_enabled(unit_file_state: &str) -> bool {
    matches!(
        unit_file_state,
        "enabled" | "enabled-runtime" | "static" | "alias" | "generated" | "indirect"
    )
}

fn service(name: &str, enabled: bool, running: bool) -> Vec<String> {
    unit(&crate::resources::unit_name(name), enabled, running)
}

fn unit(unit: &str, enabled: bool, running: bool) -> Vec<String> {
    let (load, file_state, active) = unit_state(unit);
    let mut out = Vec::new();
    if load == "masked" || file_state == "masked" {
        out.push("masked".to_string());
    } else if load == "not-found" {
        // Its unit file is written earlier in the same apply.
        out.push("no unit file yet".to_string());
    }
    if enabled && !is_enabled(&file_state) && file_state != "masked" {
        out.push("not enabled".to_string());
    }
    if running && active != "active" {
        out.push(format!("not running ({active})"));
    }
    if !running && active == "active" {
        out.push("running".to_string());
    }
    out
}

/// The folder of virtualenvs at `path` against the one of `digest` it
/// should hold, complete (its marker, written last, holds the digest).
fn virtualenv(path: &str, digest: &str) -> Vec<String> {
    match meta(Path::new(path)) {
        Ok(Some(m)) if m.node == Node::Dir => {}
        Ok(Some(m)) => return vec![wrong_kind(&m.node, "a directory")],
        Ok(None) => return missing(),
        Err(e) => return vec![e],
    }
    let name = super::release::venv_name(digest);
    let marker = Path::new(path).join(name).join(VENV_MARKER);
    let built = nofollow::read(&marker, 4096).ok().flatten();
    if built.is_some_and(|b| String::from_utf8_lossy(&b).trim() == digest) {
        Vec::new()
    } else {
        vec![format!(
            "no virtualenv {name} built for these requirements yet"
        )]
    }
}

/// The live release against the one `item` wants: its pinned id, or a
/// release of its blob's content.
fn release(path: &str, item: &Item) -> Vec<String> {
    let place = match Place::of(Path::new(path)) {
        Ok(place) => place,
        Err(e) => return vec![e],
    };
    let live = match place.live() {
        Ok(Some(id)) => id,
        Ok(None) => return missing(),
        Err(e) => return vec![e],
    };
    let found = place
        .list()
        .ok()
        .and_then(|all| all.into_iter().find(|r| r.live));
    let digest = found.map(|r| r.digest).unwrap_or_default();
    match (&item.pinned, item.release()) {
        (Some(pinned), _) if !pinned.is_empty() && digest.starts_with(pinned.as_str()) => {
            Vec::new()
        }
        (Some(pinned), _) => vec![format!(
            "release {live} is live, not {pinned} (pinned by `sitec rollback`)"
        )],
        (None, Some(wanted)) if digest == wanted => Vec::new(),
        (None, wanted) => vec![format!(
            "release {live} is live, not the source's {}",
            short(&wanted.unwrap_or_default())
        )],
    }
}

fn command(
    item: &Item,
    unless: Option<&str>,
    creates: Option<&str>,
    user: Option<&str>,
    state: &State,
) -> Vec<String> {
    if let Some(path) = creates {
        match meta(Path::new(path)) {
            Ok(Some(_)) => {}
            Ok(None) => return vec![format!("{path} does not exist")],
            Err(e) => return vec![e],
        }
    }
    if let Some(guard) = unless {
        if !system::sh(guard, user).ok {
            return vec![format!("`{guard}` fails")];
        }
    }
    if creates.is_none() && unless.is_none() && state.digest_of(&item.id) != Some(&item.digest) {
        return vec!["never ran in this form".to_string()];
    }
    Vec::new()
}

fn subvolume(path: &str) -> Vec<String> {
    match meta(Path::new(path)) {
        Ok(Some(m)) if m.node == Node::Dir => {}
        Ok(Some(m)) => return vec![wrong_kind(&m.node, "a btrfs subvolume")],
        Ok(None) => return missing(),
        Err(e) => return vec![e],
    }
    if system::program("btrfs", &["subvolume", "show", path]).ok {
        Vec::new()
    } else {
        vec!["not a btrfs subvolume".to_string()]
    }
}

/// The two unit files of a timer: `NAME.service` runs the command as
/// `user`, `NAME.timer` starts it every `every_seconds`.
pub fn timer_units(
    name: &str,
    every_seconds: u64,
    command: &str,
    user: &str,
) -> [(String, String); 2] {
    let service = format!(
        "# Generated by sitec (timer {name}): do not edit by hand.\n[Unit]\nDescription=sitec timer {name}\n\n[Service]\nType=oneshot\nUser={user}\nExecStart=/bin/sh -c {}\n",
        systemd_quote(command)
    );
    let timer = format!(
        "# Generated by sitec (timer {name}): do not edit by hand.\n[Unit]\nDescription=sitec timer {name}: every {every_seconds}s\n\n[Timer]\nOnBootSec={every_seconds}s\nOnUnitActiveSec={every_seconds}s\n\n[Install]\nWantedBy=timers.target\n"
    );
    [
        (format!("/etc/systemd/system/{name}.service"), service),
        (format!("/etc/systemd/system/{name}.timer"), timer),
    ]
}

/// Quotes a command line for an `ExecStart=` argument, `$` too (systemd
/// would put its own variables in before `sh` saw the command).
fn systemd_quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$")
    )
}

fn timer(name: &str, every_seconds: u64, command: &str, user: &str) -> Vec<String> {
    let units = timer_units(name, every_seconds, command, user);
    if matches!(meta(Path::new(&units[1].0)), Ok(None)) {
        return missing();
    }
    let mut out = Vec::new();
    for (path, content) in units {
        match system::file_sha256(Path::new(&path)) {
            Ok(Some(have)) if have == crate::resources::sha256_hex(content.as_bytes()) => {}
            Ok(_) => out.push(format!("{path} content")),
            Err(e) => out.push(e),
        }
    }
    out.extend(unit(&format!("{name}.timer"), true, true));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_commands_are_quoted_for_systemd() {
        let [(_, service), _] = timer_units("t", 60, "echo \"100%\"", "root");
        assert!(service.contains("ExecStart=/bin/sh -c \"echo \\\"100%%\\\"\""));
    }

    #[test]
    fn a_timer_runs_its_command_as_its_user() {
        let [(path, service), _] = timer_units(
            "clearsessions-blog",
            86400,
            "/etc/sitec/apps/blog/manage.sh clearsessions",
            "app-blog",
        );
        assert_eq!(path, "/etc/systemd/system/clearsessions-blog.service");
        assert_eq!(
            service,
            "# Generated by sitec (timer clearsessions-blog): do not edit by hand.\n\
             [Unit]\nDescription=sitec timer clearsessions-blog\n\n\
             [Service]\nType=oneshot\nUser=app-blog\n\
             ExecStart=/bin/sh -c \"/etc/sitec/apps/blog/manage.sh clearsessions\"\n"
        );
    }
}

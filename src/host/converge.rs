//! Makes one resource on the host match its desired state, or removes one
//! the spec dropped. Each function does the one thing its kind needs and
//! returns what it did, in words for the operator, or why it could not.
//! Services are the apply loop's business (they wait for their inputs).

use super::assess::{timer_units, unit_name, TREE_MARKER, VENV_MARKER};
use super::state::Managed;
use super::system::{self, ok_or, program, set_owner_mode, sh, temp_name, write_atomic};
use super::wire::{Item, STATE_DIR};
use crate::resources::Kind;
use std::fs;
use std::path::{Path, PathBuf};

/// Where uploaded blobs (app releases, wheelhouses) wait on the host.
pub fn blob_path(digest: &str) -> PathBuf {
    Path::new(STATE_DIR)
        .join("blobs")
        .join(format!("{digest}.tar"))
}

/// Makes `item` match. Returns the action taken (`created`, `updated`...).
pub fn converge(item: &Item, adding: bool) -> Result<String, String> {
    let verb = if adding { "created" } else { "updated" };
    match &item.kind {
        Kind::Package { name, version } => {
            let spec = version
                .as_ref()
                .map_or(name.clone(), |v| format!("{name}={v}"));
            ok_or(
                program(
                    "apt-get",
                    &["install", "-y", "-q", "--no-install-recommends", &spec],
                ),
                &format!("apt-get install {spec}"),
            )?;
            Ok("installed".into())
        }
        Kind::User {
            name,
            home,
            shell,
            system,
            groups,
        } => user(
            name,
            home.as_deref(),
            shell.as_deref(),
            *system,
            groups,
            adding,
        )
        .map(|()| verb.into()),
        Kind::Directory {
            path,
            owner,
            group,
            mode,
        } => {
            fs::create_dir_all(path).map_err(|e| format!("cannot create {path}: {e}"))?;
            set_owner_mode(Path::new(path), owner, group, mode)?;
            Ok(verb.into())
        }
        Kind::File {
            path,
            owner,
            group,
            mode,
            absent,
            ..
        } => {
            if *absent {
                fs::remove_file(path).map_err(|e| format!("cannot remove {path}: {e}"))?;
                return Ok("removed".into());
            }
            let content = item.content.as_deref().unwrap_or("");
            write_atomic(Path::new(path), content.as_bytes(), owner, group, mode)?;
            Ok(verb.into())
        }
        Kind::Symlink { path, target } => {
            let tmp = temp_name(Path::new(path));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(target, &tmp)
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(|e| format!("cannot link {path} -> {target}: {e}"))?;
            Ok(verb.into())
        }
        Kind::Tree { path, owner, .. } => {
            tree(item, Path::new(path), owner).map(|()| "unpacked".into())
        }
        Kind::Virtualenv {
            path,
            python,
            owner,
            ..
        } => virtualenv(item, Path::new(path), python, owner).map(|()| "built".into()),
        Kind::Command { run, user, .. } => {
            ok_or(sh(run, user.as_deref()), &format!("`{run}`"))?;
            Ok("ran".into())
        }
        Kind::Subvolume { path } => {
            ok_or(
                program("btrfs", &["subvolume", "create", path]),
                "btrfs subvolume create",
            )?;
            Ok(verb.into())
        }
        Kind::Timer {
            name,
            every_seconds,
            command,
        } => {
            for (path, content) in timer_units(name, *every_seconds, command) {
                write_atomic(Path::new(&path), content.as_bytes(), "root", "root", "0644")?;
            }
            // One reload for the (possibly changed) units; `enable` then
            // needs none of its own.
            ok_or(
                program("systemctl", &["daemon-reload"]),
                "systemctl daemon-reload",
            )?;
            let timer = format!("{name}.timer");
            ok_or(
                program("systemctl", &["enable", "--no-reload", "--now", &timer]),
                &format!("enabling {timer}"),
            )?;
            Ok(verb.into())
        }
        Kind::Service { .. } => Ok(String::new()),
    }
}

fn user(
    name: &str,
    home: Option<&str>,
    shell: Option<&str>,
    system_user: bool,
    groups: &[String],
    adding: bool,
) -> Result<(), String> {
    let shell = shell.unwrap_or(if system_user {
        "/usr/sbin/nologin"
    } else {
        "/bin/bash"
    });
    let mut args: Vec<&str> = vec!["--shell", shell];
    if let Some(home) = home {
        args.extend(["--home-dir", home]);
    }
    let joined = groups.join(",");
    if adding {
        if system_user {
            args.push("--system");
        }
        // The home is a `directory` resource of its own when sitec manages it.
        args.extend(["--no-create-home", "--user-group"]);
        if !groups.is_empty() {
            args.extend(["--groups", &joined]);
        }
        args.push(name);
        ok_or(program("useradd", &args), &format!("useradd {name}"))
    } else {
        if !groups.is_empty() {
            args.extend(["--append", "--groups", &joined]);
        }
        args.push(name);
        ok_or(program("usermod", &args), &format!("usermod {name}"))
    }
}

/// Unpacks the release blob next to `path`, then swaps it in with two
/// renames: a kill between them leaves the old release beside the path,
/// and the next apply unpacks again.
fn tree(item: &Item, path: &Path, owner: &str) -> Result<(), String> {
    let blob = item.blob.as_deref().ok_or("no release blob was sent")?;
    let fresh = sibling(path, "sitec-new");
    let old = sibling(path, "sitec-old");
    let _ = fs::remove_dir_all(&fresh);
    let _ = fs::remove_dir_all(&old);
    unpack(&blob_path(blob), &fresh)?;
    fs::write(fresh.join(TREE_MARKER), &item.digest)
        .map_err(|e| format!("cannot write {}: {e}", fresh.join(TREE_MARKER).display()))?;
    if owner != "root" {
        ok_or(
            program("chown", &["-R", owner, &fresh.to_string_lossy()]),
            "chown of the release",
        )?;
    }
    if path.exists() {
        fs::rename(path, &old).map_err(|e| format!("cannot move {} aside: {e}", path.display()))?;
    }
    fs::rename(&fresh, path)
        .map_err(|e| format!("cannot move the release to {}: {e}", path.display()))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

fn unpack(blob: &Path, into: &Path) -> Result<(), String> {
    let file = fs::File::open(blob).map_err(|e| format!("cannot open {}: {e}", blob.display()))?;
    fs::create_dir_all(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
    tar::Archive::new(file)
        .unpack(into)
        .map_err(|e| format!("cannot unpack {}: {e}", blob.display()))
}

/// The wheelhouse of `digest`, unpacked once under /var/lib/sitec.
fn wheelhouse(digest: &str) -> Result<PathBuf, String> {
    let dir = Path::new(STATE_DIR).join("wheelhouse").join(digest);
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = fs::remove_dir_all(&dir);
        unpack(&blob_path(digest), &dir)?;
        fs::write(&done, digest).map_err(|e| format!("cannot write {}: {e}", done.display()))?;
    }
    Ok(dir)
}

/// Builds the virtualenv from scratch (virtualenvs can't be moved, so not
/// beside it): the marker is written last, so a cut-off build is rebuilt.
fn virtualenv(item: &Item, path: &Path, python: &str, owner: &str) -> Result<(), String> {
    let wheels = match item.blob.as_deref() {
        Some(blob) => Some(wheelhouse(blob)?),
        None => None,
    };
    let interpreter = interpreter(python)?;
    if path.exists() {
        fs::remove_dir_all(path)
            .map_err(|e| format!("cannot remove the old {}: {e}", path.display()))?;
    }
    let p = path.to_string_lossy();
    ok_or(
        program(&interpreter, &["-m", "venv", &p]),
        &format!("{interpreter} -m venv {p}"),
    )?;
    let requirements = path.join(".sitec-requirements.txt");
    fs::write(&requirements, item.content.as_deref().unwrap_or(""))
        .map_err(|e| format!("cannot write {}: {e}", requirements.display()))?;
    let pip = path.join("bin/pip");
    let req = requirements.to_string_lossy();
    let mut args = vec![
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        "-r",
        &req,
    ];
    // Without a wheelhouse the host installs from its own index (it needs one).
    let find_links = wheels.map(|dir| dir.to_string_lossy().into_owned());
    if let Some(dir) = &find_links {
        args.extend(["--no-index", "--find-links", dir]);
    }
    ok_or(program(&pip.to_string_lossy(), &args), "pip install")?;
    if owner != "root" {
        ok_or(
            program("chown", &["-R", owner, &p]),
            "chown of the virtualenv",
        )?;
    }
    fs::write(path.join(VENV_MARKER), &item.digest)
        .map_err(|e| format!("cannot write the virtualenv marker: {e}"))
}

/// `3.11` to the interpreter that is that version (`python3.11`); `3` to
/// whichever Python 3 the host has.
fn interpreter(python: &str) -> Result<String, String> {
    let candidates = [format!("python{python}"), "python3".to_string()];
    for candidate in candidates {
        let ran = program(
            &candidate,
            &["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        );
        let found = ran.output.trim();
        let matches = python.is_empty()
            || found == python
            || found
                .strip_prefix(python)
                .is_some_and(|minor| minor.starts_with('.'));
        if ran.ok && matches {
            return Ok(candidate);
        }
    }
    Err(format!(
        "there is no Python {python} on this host; install python{python} (and python3-venv) or change the app's `python`"
    ))
}

/// Removes what sitec put here earlier and the spec dropped. Returns what
/// it did; things that hold data or that others may share are left.
pub fn remove(managed: &Managed) -> Result<String, String> {
    let gone = |r: std::io::Result<()>, what: &str| match r {
        Ok(()) => Ok("removed".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok("forgotten (already gone)".to_string())
        }
        Err(e) => Err(format!("cannot remove {what}: {e}")),
    };
    match &managed.kind {
        Kind::File {
            path,
            absent: false,
            ..
        }
        | Kind::Symlink { path, .. } => gone(fs::remove_file(path), path),
        Kind::File { absent: true, .. } | Kind::Command { .. } => Ok("forgotten".into()),
        Kind::Directory { path, .. } => match fs::remove_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                Ok("left in place (not empty)".into())
            }
            other => gone(other, path),
        },
        Kind::Tree { path, .. } | Kind::Virtualenv { path, .. } => {
            gone(fs::remove_dir_all(path), path)
        }
        Kind::Service { name, .. } => {
            let unit = unit_name(name);
            let _ = program("systemctl", &["disable", "--now", &unit]);
            Ok("stopped and disabled".into())
        }
        Kind::Timer {
            name,
            every_seconds,
            command,
        } => {
            let _ = program("systemctl", &["disable", "--now", &format!("{name}.timer")]);
            for (path, _) in timer_units(name, *every_seconds, command) {
                let _ = fs::remove_file(path);
            }
            Ok("stopped and removed".into())
        }
        Kind::User { name, .. } => {
            ok_or(program("userdel", &[name]), &format!("userdel {name}"))?;
            Ok("removed (its files stay)".into())
        }
        Kind::Package { .. } => Ok("left installed (other software may need it)".into()),
        Kind::Subvolume { .. } => Ok("left in place (it holds data)".into()),
    }
}

/// What [`remove`] would do, for the plan.
pub fn removal_action(managed: &Managed) -> &'static str {
    match &managed.kind {
        Kind::Package { .. } => "leave installed",
        Kind::Subvolume { .. } => "leave in place (holds data)",
        Kind::Command { .. } | Kind::File { absent: true, .. } => "forget",
        Kind::Service { .. } | Kind::Timer { .. } => "stop, disable and remove",
        _ => "remove",
    }
}

/// Whether the removed resource is there at all.
pub fn present(managed: &Managed) -> bool {
    match &managed.kind {
        Kind::File { absent: true, .. } | Kind::Command { .. } => false,
        Kind::Service { name, .. } => super::assess::unit_state(&unit_name(name)).0 == "loaded",
        Kind::Timer { name, .. } => {
            Path::new(&format!("/etc/systemd/system/{name}.timer")).exists()
        }
        Kind::User { name, .. } => system::uid(name).is_some(),
        Kind::Package { .. } => true,
        other => system::meta(Path::new(other.key())).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::interpreter;

    /// Runs the machine's own Python 3 (CI installs it).
    #[test]
    fn a_version_finds_its_interpreter_and_a_major_finds_python3() {
        let found = std::process::Command::new("python3")
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        assert!(found.starts_with("3."), "python3 here: {found:?}");
        assert_eq!(interpreter("3"), Ok("python3".to_string()));
        assert_eq!(interpreter(&found), Ok(format!("python{found}")));
        let missing = interpreter("3.99").err().unwrap_or_default();
        assert!(missing.contains("there is no Python 3.99"), "{missing}");
    }
}

//! Makes one resource on the host match its desired state, or removes one
//! the spec dropped. Each function does the one thing its kind needs and
//! returns what it did, in words for the operator, or why it could not.
//! Services are the apply loop's business (they wait for their inputs).

use super::assess::{timer_units, PYTHON_MARKER, VENV_MARKER};
use super::nofollow::{self, existing_parent, Dir, Ownership};
use super::release::{venv_name, Output, Place};
use super::state::Managed;
use super::system::{self, ok_or, ownership, program, sh, write_atomic};
use super::wire::{Item, STATE_DIR};
use crate::resources::unit_name;
use crate::resources::Kind;
use std::ffi::{OsStr, OsString};
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
            uid,
        } => user(
            name,
            home.as_deref(),
            shell.as_deref(),
            *system,
            groups,
            *uid,
            adding,
        )
        .map(|()| verb.into()),
        Kind::Directory {
            path,
            owner,
            group,
            mode,
        } => {
            Dir::make(Path::new(path), Some(ownership(owner, group, mode)?))?;
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
                let (dir, name) = existing_parent(Path::new(path))?;
                dir.remove_file(&name)?;
                return Ok("removed".into());
            }
            let content = item.content.as_deref().unwrap_or("");
            write_atomic(Path::new(path), content.as_bytes(), owner, group, mode)?;
            Ok(verb.into())
        }
        Kind::Symlink { path, target } => {
            let (dir, name) = existing_parent(Path::new(path))?;
            dir.symlink(&name, Path::new(target))?;
            Ok(verb.into())
        }
        Kind::Tree {
            path,
            owner,
            keep,
            check,
            user,
            output,
            migrate,
            venv,
            ..
        } => {
            let release = Releases {
                keep: *keep,
                check: check.as_deref(),
                user: user.as_deref().unwrap_or("root"),
                output: output.as_deref(),
                migrate: migrate.as_deref(),
                venvs: venv.as_deref().map(Path::new),
            };
            tree(item, Path::new(path), owner, &release)
        }
        Kind::Virtualenv {
            path,
            python,
            owner,
            ..
        } => virtualenv(item, Path::new(path), python, owner),
        Kind::Command {
            run, user, creates, ..
        } => {
            // A link on the way to what it creates: the guard cannot be
            // trusted, so the command does not run.
            if let Some(creates) = creates {
                nofollow::meta(Path::new(creates))?;
            }
            ok_or(sh(run, user.as_deref()), &format!("`{run}`"))?;
            Ok("ran".into())
        }
        Kind::Subvolume { path } => {
            existing_parent(Path::new(path))?;
            // `btrfs subvolume create` would only say "exists".
            if nofollow::meta(Path::new(path))?.is_some() {
                return Err(format!(
                    "{path} exists but is not a btrfs subvolume, so its data cannot be \
                     snapshotted; move what it holds aside, make {path} a subvolume on a btrfs \
                     file system (`btrfs subvolume create`, or mount one there) and move it back"
                ));
            }
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
            user,
        } => {
            for (path, content) in timer_units(name, *every_seconds, command, user) {
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
        Kind::Python { path, packages, .. } => python(item, Path::new(path), packages),
    }
}

/// Why `name` cannot have the fixed `uid` (and a group of its own with
/// that gid) on this host, with the fix; `None` when it has them or can be
/// made with them. sitec never renumbers a user itself: the files it owns
/// (uploads among them) keep their numeric owner, and a running service
/// of the user's would break.
pub(super) fn uid_problem(name: &str, uid: u32) -> Option<String> {
    let fixed = "sitec gives this user one uid on every host, so files on a volume the hosts share keep their owner";
    if let Some((have_uid, have_gid)) = system::ids(name) {
        if (have_uid, have_gid) == (uid, uid) {
            return None;
        }
        return Some(format!(
            "user `{name}` has uid {have_uid} (group {have_gid}) here, and {uid} on every host of the fleet ({fixed}): \
             stop its services, then `usermod --uid {uid} {name} && groupmod --gid {uid} {name}` and give its files \
             the new ids (`find / -xdev -uid {have_uid} -exec chown -h {uid} {{}} +`, and `-gid {have_gid}` with `chgrp -h {uid}`), \
             and apply again"
        ));
    }
    if let Some(other) = system::user_with_uid(uid) {
        return Some(format!(
            "uid {uid} belongs to user `{other}` here, and sitec gives it to `{name}` on every host ({fixed}): \
             give `{other}` another uid (`usermod --uid ID {other}`), and apply again"
        ));
    }
    match (system::gid(name), system::group_with_gid(uid)) {
        (Some(gid), _) if gid != uid => Some(format!(
            "group `{name}` has gid {gid} here, and sitec gives it {uid} on every host ({fixed}): \
             `groupmod --gid {uid} {name}` (or remove the group), and apply again"
        )),
        (None, Some(other)) => Some(format!(
            "gid {uid} belongs to group `{other}` here, and sitec gives it to `{name}` on every host ({fixed}): \
             give `{other}` another gid (`groupmod --gid ID {other}`), and apply again"
        )),
        _ => None,
    }
}

fn user(
    name: &str,
    home: Option<&str>,
    shell: Option<&str>,
    system_user: bool,
    groups: &[String],
    uid: Option<u32>,
    adding: bool,
) -> Result<(), String> {
    if let Some(problem) = uid.and_then(|uid| uid_problem(name, uid)) {
        return Err(problem);
    }
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
        args.push("--no-create-home");
        let id = uid.map(|uid| uid.to_string());
        if let Some(id) = &id {
            // Its own group first, with the same fixed id (useradd's
            // --user-group would take the next free gid).
            if system::gid(name).is_none() {
                let mut group = vec!["--gid", id.as_str(), name];
                if system_user {
                    group.insert(0, "--system");
                }
                ok_or(program("groupadd", &group), &format!("groupadd {name}"))?;
            }
            args.extend(["--uid", id, "--gid", id]);
        } else {
            args.push("--user-group");
        }
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

/// Makes the release `item` wants live at the link `path`: a kept release
/// of the same content, or a new one unpacked from its blob (owned by
/// `owner`, group root) and checked in its own folder as `user`, who may
/// write only its `output`; then one rename of a new link over `path`, and
/// the oldest beyond `keep` removed. A new release that fails its check is
/// removed and the live one stays. Its `migrate` runs next (a rollback's
/// pinned release skips it); a failure there too leaves the live one.
/// With a folder of virtualenvs, a new release links the one `item` names
/// (built already: its virtualenv item comes first), and the virtualenvs
/// no kept release runs go with the pruned releases. Returns what it did.
fn tree(item: &Item, path: &Path, owner: &str, release: &Releases) -> Result<String, String> {
    let uid = system::uid(owner).ok_or_else(|| format!("there is no user `{owner}`"))?;
    let user = release.user;
    let checker = system::uid(user).ok_or_else(|| format!("there is no user `{user}`"))?;
    let output = (release.output).map(|name| Output { name, user });
    let place = Place::of(path)?;
    let before = place.live().ok().flatten();
    let venv = match (release.venvs, item.venv_digest.as_deref()) {
        (Some(venvs), Some(digest)) => Some((venvs, venv_name(digest))),
        (Some(venvs), None) => {
            return Err(format!(
                "no virtualenv of {} was named for it",
                venvs.display()
            ))
        }
        (None, _) => None,
    };
    let (id, made) = match &item.pinned {
        Some(pinned) => (place.find(pinned)?, false),
        None => {
            let source = item.blob.as_deref().ok_or("no release blob was sent")?;
            let digest = item.release().unwrap_or_default();
            let blob = match place.list()?.iter().any(|r| r.digest == digest) {
                true => None,
                false => Some(open_blob(source)?),
            };
            let files = item.content.as_deref().unwrap_or("");
            let output = output.map(|o| (o.name, checker));
            let built = match (venv, item.venv_digest.as_deref()) {
                (Some((venvs, name)), Some(wanted)) => Some(built_venv(venvs, name, wanted)?),
                _ => None,
            };
            place.unpack(&digest, blob, files, uid, (output, built.as_deref()))?
        }
    };
    let live = || {
        before
            .as_ref()
            .map_or("nothing".to_string(), |b| format!("release {b}"))
    };
    if let (true, Some(check)) = (made, release.check) {
        if let Err(e) = place.check(&id, check, user, output.is_some()) {
            place.remove(&id, output)?;
            return Err(format!("{e}; {} stays live", live()));
        }
    }
    // The migrations, before any runner serves the release (the leader's
    // apply comes first): a failure leaves every runner on the live one.
    if let (None, Some(migrate)) = (&item.pinned, release.migrate) {
        if let Err(e) = place.run(&id, "the migrations", migrate, user) {
            if made {
                place.remove(&id, output)?;
            }
            return Err(format!("{e}; {} stays live", live()));
        }
    }
    place.switch(&id)?;
    let mut removed = place.prune(release.keep as usize, output)?;
    let mut dropped_venvs = Vec::new();
    if let Some((venvs, wanted)) = venv {
        removed.extend(place.prune_without_venv(output)?);
        dropped_venvs = place.prune_venvs(venvs, wanted)?;
    }
    let mut done = format!("release {id} live");
    if !removed.is_empty() {
        done.push_str(&format!(" ({} old removed)", removed.len()));
    }
    if !dropped_venvs.is_empty() {
        done.push_str(&format!(
            " (virtualenvs no release runs removed: {})",
            dropped_venvs.join(", ")
        ));
    }
    Ok(done)
}

/// The virtualenv `name` in the folder `venvs`, if its build completed
/// (its marker holds `digest`, written last): a release never links a
/// half-built one.
fn built_venv(venvs: &Path, name: &str, digest: &str) -> Result<PathBuf, String> {
    let path = venvs.join(name);
    let marker = nofollow::read(&path.join(VENV_MARKER), 4096)?.unwrap_or_default();
    if String::from_utf8_lossy(&marker).trim() == digest {
        Ok(path)
    } else {
        Err(format!(
            "the virtualenv {} was not built completely; the next apply builds it",
            path.display()
        ))
    }
}

/// A tree's release fields.
struct Releases<'a> {
    keep: u32,
    check: Option<&'a str>,
    /// Who runs `check` and owns the outputs (root when the spec names none).
    user: &'a str,
    output: Option<&'a str>,
    migrate: Option<&'a str>,
    /// The folder of virtualenvs the releases run, if any.
    venvs: Option<&'a Path>,
}

/// The uploaded blob `digest`, opened without following a link.
fn open_blob(digest: &str) -> Result<std::fs::File, String> {
    let path = blob_path(digest);
    let (dir, name) = existing_parent(&path)?;
    dir.open_file(&name)?
        .ok_or_else(|| format!("{} is missing; make a new plan", path.display()))
}

/// After a complete apply: removes the uploaded blobs (`blobs/DIGEST.tar`)
/// and unpacked wheelhouses (`wheelhouse/DIGEST`) that no resource of
/// `desired` names. Each deploy leaves its release's blob, and each
/// requirements change a wheelhouse, and they are read only while a
/// resource converges; those `desired` names stay, so mending drift needs
/// no upload. Both folders are root's alone; links are removed as links.
/// Best effort: what could not be removed is tried again next time.
pub fn prune_blobs(items: &[Item]) {
    let wanted: std::collections::HashSet<&str> =
        items.iter().filter_map(|i| i.blob.as_deref()).collect();
    let state = Path::new(STATE_DIR);
    let prune = |folder: &str, digest_of: &dyn Fn(&str) -> Option<String>| {
        let Ok(Some(dir)) = Dir::open(&state.join(folder)) else {
            return;
        };
        for (name, _) in dir.entries().unwrap_or_default() {
            let keep = name
                .to_str()
                .and_then(digest_of)
                .is_some_and(|digest| wanted.contains(digest.as_str()));
            if !keep {
                let _ = dir.remove_tree(&name);
            }
        }
    };
    prune("blobs", &|name| name.strip_suffix(".tar").map(String::from));
    prune("wheelhouse", &|name| Some(name.to_string()));
}

/// The wheelhouse of `digest`, unpacked once under /var/lib/sitec.
fn wheelhouse(digest: &str) -> Result<PathBuf, String> {
    let root = Path::new(STATE_DIR).join("wheelhouse");
    let parent = Dir::make(&root, None)?;
    let name = OsString::from(digest);
    let done = OsStr::new(".complete");
    let complete = parent
        .sub(&name)?
        .map(|dir| dir.meta(done))
        .transpose()?
        .flatten()
        .is_some();
    if !complete {
        parent.remove_tree(&name)?;
        let dir = parent.make_sub(&name, 0o755)?;
        super::unpack::unpack(open_blob(digest)?, &dir, 0, 0)
            .map_err(|e| format!("cannot unpack the wheelhouse {digest}: {e}"))?;
        dir.write_atomic(done, digest.as_bytes(), ROOT_FILE)?;
    }
    Ok(root.join(digest))
}

/// A root-owned file anyone may read.
const ROOT_FILE: Ownership = Ownership {
    uid: 0,
    gid: 0,
    mode: 0o644,
};

/// Builds the virtualenv `item` wants in the folder of virtualenvs `path`
/// (root's), as `path/NAME` ([`venv_name`] of its digest), unless it is
/// built already; the others, which kept releases run, are not touched. A
/// virtualenv cannot be moved (its scripts name its path in their `#!`
/// lines), so it is built where it stays, under a name no release links
/// yet; its marker, written last, says it is complete, and only then may a
/// release link it (`built_venv`). A failed build is removed (a cut-off one
/// is rebuilt). pip installs wheels only (`--only-binary :all:`, from the
/// wheelhouse the operator built): no package's code runs here.
fn virtualenv(item: &Item, path: &Path, python: &str, owner: &str) -> Result<String, String> {
    let folder = Dir::make(path, Some(ROOT_FOLDER))?;
    let name = OsString::from(venv_name(&item.digest));
    let venv = path.join(&name);
    if built_venv(path, venv_name(&item.digest), &item.digest).is_ok() {
        return Ok(format!("{} kept", venv.display()));
    }
    folder.remove_tree(&name)?;
    if let Err(e) = build_venv(item, &folder, &name, python, owner) {
        // Left behind, it has no marker: no release links it, and the next
        // build or prune removes it.
        let _ = folder.remove_tree(&name);
        return Err(format!(
            "{e}; the live release keeps running its own virtualenv"
        ));
    }
    Ok(format!("{} built", venv.display()))
}

/// A Python sitec built (`plan::python`): the packages it links against,
/// then its tree unpacked from the blob into a new folder beside `path`,
/// root's, read-only to everyone else, its marker last; then swapped with
/// the old one in one step (virtualenvs name the interpreter by its path,
/// so they run the new build at once; running processes keep the old
/// files).
fn python(item: &Item, path: &Path, packages: &[String]) -> Result<String, String> {
    // Only the missing ones: `apt-get install` of an installed package
    // would upgrade it (libc6 among them).
    let missing: Vec<&str> = (packages.iter())
        .filter(|p| !super::assess::package(p, None).is_empty())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        ok_or(
            program("apt-get", &args),
            &format!("apt-get install {}", missing.join(" ")),
        )?;
    }
    let blob = item
        .blob
        .as_deref()
        .ok_or("the plan sent no Python to unpack; make a new plan")?;
    let (parent, name) = existing_parent(path).or_else(|_| {
        let folder = path.parent().ok_or("a Python's path has no folder")?;
        Dir::make(folder, Some(ROOT_FOLDER))?;
        existing_parent(path)
    })?;
    let new = OsString::from(format!(".{}.new", name.to_string_lossy()));
    parent.remove_tree(&new)?;
    let tree = parent.make_sub(&new, 0o755)?;
    let unpacked = super::unpack::unpack(open_blob(blob)?, &tree, 0, 0)
        .and_then(|()| {
            tree.write_atomic(OsStr::new(PYTHON_MARKER), item.digest.as_bytes(), ROOT_FILE)
        })
        .and_then(|()| tree.sync_all());
    if let Err(e) = unpacked {
        let _ = parent.remove_tree(&new);
        return Err(format!("cannot unpack the Python {blob}: {e}"));
    }
    let had = parent.meta(&name)?.is_some();
    if had {
        // The old build goes to `new`'s name, and then away.
        parent.exchange(&new, &name)?;
        parent.sync()?;
        parent.remove_tree(&new)?;
    } else {
        parent.rename(&new, &parent, &name)?;
        parent.sync()?;
    }
    Ok(format!(
        "{} {}",
        path.display(),
        if had { "replaced" } else { "unpacked" }
    ))
}

/// A root-owned folder anyone may pass through and list.
const ROOT_FOLDER: Ownership = Ownership {
    uid: 0,
    gid: 0,
    mode: 0o755,
};

/// `python -m venv` at `folder/name`, then pip from the wheelhouse, then
/// the marker.
fn build_venv(
    item: &Item,
    folder: &Dir,
    name: &OsStr,
    python: &str,
    owner: &str,
) -> Result<(), String> {
    let wheels = match item.blob.as_deref() {
        Some(blob) => Some(wheelhouse(blob)?),
        None => None,
    };
    let interpreter = interpreter(python)?;
    let path = folder.path().join(name);
    let p = path.to_string_lossy();
    ok_or(
        program(&interpreter, &["-m", "venv", &p]),
        &format!("{interpreter} -m venv {p}"),
    )?;
    let venv = folder
        .sub(name)?
        .ok_or_else(|| format!("{p} was not made by {interpreter} -m venv"))?;
    let requirements_name = OsStr::new(".sitec-requirements.txt");
    let requirements_text = item.content.as_deref().unwrap_or("");
    venv.write_atomic(requirements_name, requirements_text.as_bytes(), ROOT_FILE)?;
    let requirements = path.join(requirements_name);
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
        args.extend(["--no-index", "--only-binary", ":all:", "--find-links", dir]);
    }
    ok_or(
        program(&pip.to_string_lossy(), &args),
        &format!("pip install into {p}"),
    )?;
    let uid = system::uid(owner).ok_or_else(|| format!("there is no user `{owner}`"))?;
    if uid != 0 {
        venv.chown_tree(uid, 0)?;
    }
    venv.sync_all()?;
    venv.write_atomic(
        OsStr::new(VENV_MARKER),
        item.digest.as_bytes(),
        Ownership { uid, ..ROOT_FILE },
    )
}

/// The interpreters that may run a virtualenv of the app's `python`, the
/// first that [`is_version`] first: `python3.11` for `3.11`, else the one
/// sitec built (`/opt/sitec/python/3.11/bin/python3.11`, by its path),
/// else `python3` if it is 3.11; `python3` for `3`. The plan picks the
/// same one from what the host reports (`wheelhouse::Platform`), so a
/// virtualenv's identity is the interpreter that builds it.
pub fn interpreter_candidates(python: &str) -> Vec<String> {
    if !python.contains('.') {
        return vec!["python3".to_string()];
    }
    vec![
        format!("python{python}"),
        format!("{}/bin/python{python}", crate::plan::python::prefix(python)),
        "python3".to_string(),
    ]
}

/// Whether an interpreter of version `found` (`3.11`, `3.11.2 (main, ...)`)
/// is the app's `python` (`3.11`, `3`).
pub fn is_version(python: &str, found: &str) -> bool {
    let found = found.split_whitespace().next().unwrap_or_default();
    python.is_empty()
        || found == python
        || found
            .strip_prefix(python)
            .is_some_and(|minor| minor.starts_with('.'))
}

/// `3.11` to the interpreter that is that version (`python3.11`); `3` to
/// whichever Python 3 the host has.
pub(super) fn interpreter(python: &str) -> Result<String, String> {
    for candidate in interpreter_candidates(python) {
        let ran = program(
            &candidate,
            &["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        );
        if ran.ok && is_version(python, ran.output.trim()) {
            return Ok(candidate);
        }
    }
    let have = pythons();
    let have = if have.is_empty() {
        "none".to_string()
    } else {
        have.join(", ")
    };
    Err(format!(
        "there is no Python {python} on this host (it has: {have}); install python{python} (and python3-venv) or change the app's `python`"
    ))
}

/// The Pythons this host has, as `3.11`: each `python3.N` in /usr/bin,
/// /usr/local/bin and the `bin` of each Python sitec built.
fn pythons() -> Vec<String> {
    let built = (std::fs::read_dir(crate::plan::python::SITEC_PYTHONS).into_iter())
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"));
    let mut found: Vec<String> = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(PathBuf::from)
        .chain(built)
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("python")?.to_string();
            let minor = version.strip_prefix("3.")?;
            (!minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit())).then_some(version)
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Removes what sitec put here earlier and the spec dropped. Returns what
/// it did; things that hold data or that others may share are left. A link
/// is removed as a link, never followed; a link on the way is an error.
pub fn remove(managed: &Managed) -> Result<String, String> {
    let gone = |removed: bool| {
        Ok(if removed {
            "removed".to_string()
        } else {
            "forgotten (already gone)".to_string()
        })
    };
    let in_folder = |path: &str| nofollow::parent(Path::new(path));
    match &managed.kind {
        Kind::File {
            path,
            absent: false,
            ..
        }
        | Kind::Symlink { path, .. } => match in_folder(path)? {
            Some((dir, name)) => gone(dir.remove_file(&name)?),
            None => gone(false),
        },
        Kind::File { absent: true, .. } | Kind::Command { .. } => Ok("forgotten".into()),
        Kind::Directory { path, .. } => match in_folder(path)? {
            Some((dir, name)) => match dir.remove_empty_dir(&name)? {
                Some(false) => Ok("left in place (not empty)".into()),
                Some(true) => gone(true),
                None => gone(false),
            },
            None => gone(false),
        },
        // The link to the live release, the releases and outputs beside it.
        Kind::Tree {
            path, user, output, ..
        } => match in_folder(path)? {
            Some(_) => {
                let place = Place::of(Path::new(path))?;
                let user = output.as_ref().map(|_| user.as_deref().unwrap_or("root"));
                gone(place.remove_all(user)?)
            }
            None => gone(false),
        },
        Kind::Virtualenv { path, .. } => match in_folder(path)? {
            Some((dir, name)) => gone(dir.remove_tree(&name)?),
            None => gone(false),
        },
        Kind::Service { name, .. } if is_way_in(name) => Ok(KEPT_RUNNING.into()),
        Kind::Service { name, .. } => {
            let unit = unit_name(name);
            let _ = program("systemctl", &["disable", "--now", &unit]);
            Ok("stopped and disabled".into())
        }
        Kind::Timer {
            name,
            every_seconds,
            command,
            user,
        } => {
            let _ = program("systemctl", &["disable", "--now", &format!("{name}.timer")]);
            for (path, _) in timer_units(name, *every_seconds, command, user) {
                if let Some((dir, name)) = in_folder(&path)? {
                    dir.remove_file(&name)?;
                }
            }
            Ok("stopped and removed".into())
        }
        Kind::User { name, .. } => {
            ok_or(program("userdel", &[name]), &format!("userdel {name}"))?;
            Ok("removed (its files stay)".into())
        }
        Kind::Package { .. } => Ok("left installed (other software may need it)".into()),
        Kind::Subvolume { .. } => Ok("left in place (it holds data)".into()),
        Kind::Python { path, .. } => match in_folder(path)? {
            Some((dir, name)) => gone(dir.remove_tree(&name)?),
            None => gone(false),
        },
    }
}

/// What removing a dropped `ssh` service does: nothing to it.
const KEPT_RUNNING: &str = "forgotten (left running: sitec reaches the host through it)";

/// Whether `service` is the SSH server, which sitec reaches the host
/// through: a role that reloaded it (`snapshots`, for the backup hosts'
/// keys) going from the host must not stop it, or the host is cut off.
fn is_way_in(service: &str) -> bool {
    matches!(unit_name(service).as_str(), "ssh.service" | "sshd.service")
}

/// What [`remove`] would do, for the plan.
pub fn removal_action(managed: &Managed) -> &'static str {
    match &managed.kind {
        Kind::Service { name, .. } if is_way_in(name) => {
            "forget (left running: sitec reaches the host through it)"
        }
        Kind::Package { .. } => "leave installed",
        // `remove` keeps a folder that holds anything (a media brick's data).
        Kind::Directory { .. } => "remove if empty",
        Kind::Subvolume { .. } => "leave in place (holds data)",
        Kind::Command { .. } | Kind::File { absent: true, .. } => "forget",
        Kind::Service { .. } | Kind::Timer { .. } => "stop, disable and remove",
        _ => "remove",
    }
}

/// Whether the removed resource is there at all (something that cannot be
/// looked at without following a link counts as there: removing it says why not).
pub fn present(managed: &Managed) -> bool {
    let exists = |path: &str| !matches!(nofollow::meta(Path::new(path)), Ok(None));
    match &managed.kind {
        Kind::File { absent: true, .. } | Kind::Command { .. } => false,
        Kind::Service { name, .. } => super::assess::unit_state(&unit_name(name)).0 == "loaded",
        Kind::Timer { name, .. } => exists(&format!("/etc/systemd/system/{name}.timer")),
        Kind::User { name, .. } => system::uid(name).is_some(),
        Kind::Package { .. } => true,
        other => exists(other.key()),
    }
}

#[cfg(test)]
mod tests {
    use super::interpreter;

    #[test]
    fn the_ssh_server_is_never_stopped_when_dropped() {
        assert!(super::is_way_in("ssh") && super::is_way_in("sshd.service"));
        assert!(!super::is_way_in("nginx") && !super::is_way_in("sshguard"));
    }

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

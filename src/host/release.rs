//! An app's releases on a runner: each deploy unpacks into a folder of its
//! own under `releases/` beside the `current` link, is checked there, and
//! goes live with one atomic rename of a new link over `current`; the last
//! `keep` releases stay for `sitec rollback`. The link and `releases/` live
//! in the app's root-owned folder, so no less privileged user can swap
//! them; every path goes through [`nofollow`], which follows no link: the
//! link is only read (its target must be `releases/ID`) and replaced.
//!
//! A release is root's from unpacking to removal, read-only to the app's
//! user, who runs its check: the one thing the check may write (Django's
//! collected static files) is the release's `output` entry, a link root
//! makes to `output/ID` beside `releases/`, a folder of the user's own.
//! Root never opens a path in `output/` (nor chowns anything back): the
//! user makes `output/ID` and removes it, and nginx's workers read it.
//!
//! A release runs the virtualenv its `venv` link names (absolute, into the
//! tree's folder of virtualenvs, root's, one per content): the units run
//! `current/venv/bin/...`, so the one switch of `current` moves code and
//! virtualenv together, and a rollback brings the old one back. A release
//! is known by its source's digest and its virtualenv's ([`digest`]).
//! Virtualenvs no kept release runs are removed with the releases.
//!
//! This module never decides which release should be live: the plan says
//! (a new release's content, or a rollback's pinned one).

use super::assess::{TREE_FILES, TREE_MARKER};
use super::nofollow::{refusal, Dir, Node, Ownership};
use super::system::{ok_or, sh};
use crate::data::stamp::Stamp;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The folder beside `current` that holds the releases.
pub const RELEASES: &str = "releases";

/// The folder beside `releases/` that holds what each release's check
/// writes (`output/ID`): the check user's, never opened by root.
pub const OUTPUT: &str = "output";

/// The link in each release to the virtualenv it runs.
pub const VENV: &str = "venv";

/// What a new release's check may write, and as whom: `name` (a path in
/// the release, such as `collected_static`) is a link to `output/ID`, a
/// folder `user` makes and owns.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub name: &'a str,
    pub user: &'a str,
}

/// A release folder on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `YYYYMMDDTHHMMSSZ-HASH`: when it was unpacked, and its content.
    pub id: String,
    /// The content's digest (the plan's blob of the source).
    pub digest: String,
    /// Whether `current` points at it.
    pub live: bool,
    /// The virtualenv it runs (its `venv` link's target), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venv: Option<String>,
}

/// The app's folder (`current`'s parent) and the name of the link.
pub struct Place {
    pub app: Dir,
    pub link: OsString,
}

impl Place {
    pub fn of(current: &Path) -> Result<Place, String> {
        let (app, link) = super::nofollow::existing_parent(current)?;
        Ok(Place { app, link })
    }

    /// The id of the live release: what `current` points at, when it is a
    /// link to `releases/ID`. `Err` names what is there instead.
    pub fn live(&self) -> Result<Option<String>, String> {
        let path = self.app.path().join(&self.link);
        match self.app.meta(&self.link)? {
            None => Ok(None),
            Some(m) => match m.node {
                Node::Link(target) => release_of(&target).map(Some).ok_or_else(|| {
                    format!(
                        "{} points at {}, not at a release under {RELEASES}/",
                        path.display(),
                        target.display()
                    )
                }),
                // The layout before releases: a folder, replaced on the next deploy.
                Node::Dir => Err(format!(
                    "{} is a folder, not a release link",
                    path.display()
                )),
                other => Err(refusal(&path, &other, "a link to a release")),
            },
        }
    }

    /// The releases folder, made (root's, 0751: nginx passes through to
    /// the static files) when missing.
    fn releases(&self) -> Result<Dir, String> {
        let dir = self.app.make_sub(OsStr::new(RELEASES), 0o751)?;
        dir.set_ownership(Ownership {
            uid: 0,
            gid: 0,
            mode: 0o751,
        })?;
        Ok(dir)
    }

    /// Every release here, oldest first.
    pub fn list(&self) -> Result<Vec<Release>, String> {
        let live = self.live().ok().flatten();
        let Some(dir) = self.app.sub(OsStr::new(RELEASES))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, _) in dir.entries()? {
            let id = name.to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            let digest = marker(&dir, &name).unwrap_or_default();
            let venv = (dir.sub(&name).ok().flatten())
                .and_then(|release| release.read_link(OsStr::new(VENV)).ok().flatten())
                .map(|target| target.to_string_lossy().into_owned());
            out.push(Release {
                live: live.as_deref() == Some(id.as_str()),
                id,
                digest,
                venv,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The id of the kept release whose content's digest starts with
    /// `digest` (how `sitec rollback` names a release on every runner).
    pub fn find(&self, digest: &str) -> Result<String, String> {
        let all = self.list()?;
        let found = (all.iter()).find(|r| !digest.is_empty() && r.digest.starts_with(digest));
        found.map(|r| r.id.clone()).ok_or_else(|| {
            let kept: Vec<&str> = all.iter().map(|r| short(&r.digest)).collect();
            format!(
                "no release {digest} is kept here (kept: {}); `sitec releases` lists them",
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(", ")
                }
            )
        })
    }

    /// The path of release `id`, for the programs that run in it.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.app.path().join(RELEASES).join(id)
    }

    /// The release that holds `digest`, unpacked from `blob` unless one of
    /// the kept releases already holds it. Files owned by `uid` (group
    /// root); with `output`, its `name` is a link to `output/ID`, whatever
    /// the source had there, and `output/` is made the user's; with `venv`
    /// (a built virtualenv), its `venv` is a link to it.
    pub fn unpack(
        &self,
        digest: &str,
        blob: Option<std::fs::File>,
        files: &str,
        uid: u32,
        (output, venv): (Option<(&str, u32)>, Option<&Path>),
    ) -> Result<(String, bool), String> {
        if let Some(kept) = self.list()?.into_iter().find(|r| r.digest == digest) {
            return Ok((kept.id, false));
        }
        let blob = blob.ok_or_else(|| {
            format!(
                "no release of {} is kept on this host; make a new plan",
                short(digest)
            )
        })?;
        let releases = self.releases()?;
        let id = format!("{}-{}", stamp(), short(digest));
        let fresh = OsString::from(format!(".{id}.sitec-new"));
        releases.remove_tree(&fresh)?;
        let release = releases.make_sub(&fresh, 0o700)?;
        super::unpack::unpack(blob, &release, uid, 0).map_err(|e| {
            format!(
                "cannot unpack the release into {}: {e}",
                self.path_of(&id).display()
            )
        })?;
        let file = Ownership {
            uid,
            gid: 0,
            mode: 0o644,
        };
        release.write_atomic(OsStr::new(TREE_MARKER), digest.as_bytes(), file)?;
        // Its file list, for the next plan to say what a release adds and removes.
        release.write_atomic(OsStr::new(TREE_FILES), files.as_bytes(), file)?;
        if let Some((name, user)) = output {
            self.outputs(user)?;
            link_output(&release, name, &id)?;
        }
        if let Some(venv) = venv {
            release.remove_tree(OsStr::new(VENV))?;
            release.symlink(OsStr::new(VENV), venv)?;
        }
        release.set_ownership(Ownership {
            uid,
            gid: 0,
            mode: 0o755,
        })?;
        release.sync_all()?;
        releases.rename(&fresh, &releases, OsStr::new(&id))?;
        releases.sync()?;
        Ok((id, true))
    }

    /// The folder of the releases' outputs, made when missing and given to
    /// `uid` (0755: nginx's workers read the static files in it). Only the
    /// folder itself is opened, in the app's root-owned folder.
    fn outputs(&self, uid: u32) -> Result<(), String> {
        let dir = self.app.make_sub(OsStr::new(OUTPUT), 0o755)?;
        dir.set_ownership(Ownership {
            uid,
            gid: 0,
            mode: 0o755,
        })
    }

    /// Removes release `id`'s output, as its `user`: `output/` is theirs,
    /// so root opens no path in it.
    fn remove_output(&self, id: &str, user: &str) -> Result<(), String> {
        let path = self.app.path().join(OUTPUT).join(id);
        let script = format!("cd / && rm -rf -- {}", quoted(&path));
        ok_or(
            sh(&script, Some(user)),
            &format!("removing {}", path.display()),
        )
    }

    /// Runs `check` (a shell command, as `user`) in release `id`: the
    /// release's path is in `SITEC_RELEASE`. With `output`, the user first
    /// makes the folder the release's output link points at.
    pub fn check(&self, id: &str, check: &str, user: &str, output: bool) -> Result<(), String> {
        let mut script = String::new();
        if output {
            let made = self.app.path().join(OUTPUT).join(id);
            script.push_str(&format!("mkdir -p -- {}\n", quoted(&made)));
        }
        script.push_str(check);
        self.run(id, "the check", &script, user)
    }

    /// Runs `command` (a shell command, as `user`) in release `id`, its
    /// path in `SITEC_RELEASE`; `what` names it in an error.
    pub fn run(&self, id: &str, what: &str, command: &str, user: &str) -> Result<(), String> {
        let script = format!(
            "export SITEC_RELEASE={}\n{command}",
            quoted(&self.path_of(id))
        );
        ok_or(sh(&script, Some(user)), &format!("{what} of release {id}"))
    }

    /// Points `current` at release `id`: one rename of a new link over the
    /// old one, so `current` always exists. A folder left there by the
    /// layout before releases becomes a release of its own first.
    pub fn switch(&self, id: &str) -> Result<(), String> {
        if let Some(m) = self.app.meta(&self.link)? {
            if m.node == Node::Dir {
                let releases = self.releases()?;
                // Named by its own age, so it sorts before the new one.
                let kept = format!("{}-before-releases", Stamp(m.modified));
                self.app.rename(&self.link, &releases, OsStr::new(&kept))?;
            }
        }
        let target = Path::new(RELEASES).join(id);
        self.app.symlink(&self.link, &target)
    }

    /// Removes the oldest releases beyond `keep`, never the live one, and
    /// their outputs (as the output's user).
    pub fn prune(&self, keep: usize, output: Option<Output>) -> Result<Vec<String>, String> {
        let all = self.list()?;
        let Some(dir) = self.app.sub(OsStr::new(RELEASES))? else {
            return Ok(Vec::new());
        };
        let extra = all.len().saturating_sub(keep.max(1));
        let mut removed = Vec::new();
        for release in all.iter().filter(|r| !r.live).take(extra) {
            self.remove_in(&dir, &release.id, output)?;
            removed.push(release.id.clone());
        }
        Ok(removed)
    }

    /// Removes the releases that run no virtualenv of their own (kept from
    /// before virtualenvs were per release: the units now run
    /// `current/venv`), never the live one.
    pub fn prune_without_venv(&self, output: Option<Output>) -> Result<Vec<String>, String> {
        let Some(dir) = self.app.sub(OsStr::new(RELEASES))? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for release in self.list()?.iter().filter(|r| !r.live && r.venv.is_none()) {
            self.remove_in(&dir, &release.id, output)?;
            removed.push(release.id.clone());
        }
        Ok(removed)
    }

    /// Removes from the folder of virtualenvs `venvs` every one no kept
    /// release runs, but `wanted` (the one the spec's requirements build,
    /// which the next release runs): what a failed or cut-off build left
    /// too. Root's folder, root's virtualenvs: removed through handles, no
    /// link followed. Returns their names.
    pub fn prune_venvs(&self, venvs: &Path, wanted: &str) -> Result<Vec<String>, String> {
        let Some(dir) = Dir::open(venvs)? else {
            return Ok(Vec::new());
        };
        let used: Vec<PathBuf> = (self.list()?.into_iter())
            .filter_map(|r| r.venv.map(PathBuf::from))
            .collect();
        let mut removed = Vec::new();
        for (name, _) in dir.entries()? {
            if name == wanted || used.contains(&venvs.join(&name)) {
                continue;
            }
            dir.remove_tree(&name)?;
            removed.push(name.to_string_lossy().into_owned());
        }
        Ok(removed)
    }

    /// Removes release `id` (a new one whose check failed) and its output.
    pub fn remove(&self, id: &str, output: Option<Output>) -> Result<(), String> {
        if let Some(dir) = self.app.sub(OsStr::new(RELEASES))? {
            self.remove_in(&dir, id, output)?;
        }
        Ok(())
    }

    /// Removes release `id` from `releases`: its output as the output's
    /// user, then its folder. Root made every file in a release; only one
    /// kept from the layout before releases may hold a folder of the app's
    /// user (its collected static files), and `remove_tree` unlinks through
    /// handles opened without following a link, changing no owner.
    fn remove_in(&self, releases: &Dir, id: &str, output: Option<Output>) -> Result<(), String> {
        if let Some(output) = output {
            self.remove_output(id, output.user)?;
        }
        releases.remove_tree(OsStr::new(id))?;
        Ok(())
    }

    /// Removes every release, the link and the outputs (a dropped app's):
    /// the outputs emptied by their user while that user exists, then
    /// `output/` itself, root's removal only for what no user is left to own.
    pub fn remove_all(&self, output_user: Option<&str>) -> Result<bool, String> {
        let releases = self.app.remove_tree(OsStr::new(RELEASES))?;
        let link = self.app.remove_tree(&self.link)?;
        if let Some(user) = output_user.filter(|u| super::system::uid(u).is_some()) {
            let path = self.app.path().join(OUTPUT);
            let script = format!(
                "cd / && {{ [ ! -d {0} ] || find {0} -mindepth 1 -delete; }}",
                quoted(&path)
            );
            ok_or(
                sh(&script, Some(user)),
                &format!("emptying {}", path.display()),
            )?;
        }
        let outputs = self.app.remove_tree(OsStr::new(OUTPUT))?;
        Ok(releases || link || outputs)
    }
}

/// The link of `app`'s live release; `app` must be a name sitec gives
/// apps (it becomes a path).
fn place_of(app: &str) -> Result<Place, String> {
    let plain = !app.is_empty()
        && (app.chars())
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !plain {
        return Err(format!("`{app}` is not an app name"));
    }
    Place::of(Path::new(&crate::context::release_dir(app)))
}

/// `sitec host releases APP`: the app's releases as JSON.
pub fn listed(app: &str) -> Result<String, String> {
    let all = place_of(app)?.list()?;
    serde_json::to_string(&all).map_err(|e| e.to_string())
}

/// `sitec host rollback APP HASH`: the kept release of that content goes
/// live, and the app and its workers restart onto it (under the apply lock,
/// so no apply runs meanwhile). Prints the release's id.
pub fn rollback(app: &str, hash: &str) -> Result<String, String> {
    let place = place_of(app)?;
    let _lock = super::apply::lock()?;
    let id = place.find(hash)?;
    place.switch(&id)?;
    let units = [
        format!("sitec-app-{app}.service"),
        format!("sitec-app-{app}-worker-*.service"),
    ];
    ok_or(
        super::system::program("systemctl", &["restart", &units[0], &units[1]]),
        &format!("restarting app {app}"),
    )?;
    Ok(format!("release {id}"))
}

/// Makes `name` (a relative path) in a freshly unpacked `release` a link to
/// `output/ID` beside the releases, replacing what the source had there;
/// the folders on the way are made (root's, as the rest of the release).
fn link_output(release: &Dir, name: &str, id: &str) -> Result<(), String> {
    let parts: Vec<&OsStr> = (Path::new(name).components())
        .map(|c| match c {
            std::path::Component::Normal(part) => Ok(part),
            _ => Err(format!(
                "`{name}` is not a folder inside the release (a relative path without ..)"
            )),
        })
        .collect::<Result<_, _>>()?;
    let Some((last, way)) = parts.split_last() else {
        return Err("the release's output has no name".to_string());
    };
    let mut made: Option<Dir> = None;
    for part in way {
        let next = made.as_ref().unwrap_or(release).make_sub(part, 0o755)?;
        made = Some(next);
    }
    let dir = made.as_ref().unwrap_or(release);
    dir.remove_tree(last)?;
    // From the link's folder up to the app's: its depth in the release, plus
    // the release's own folder and `releases/`.
    let up = "../".repeat(way.len() + 2);
    dir.symlink(last, &Path::new(&up).join(OUTPUT).join(id))
}

/// `path` quoted for sh.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

/// `releases/ID` to `ID`; anything else (absolute, `..`, deeper) is `None`.
fn release_of(target: &Path) -> Option<String> {
    let mut parts = target.components();
    let (Some(first), Some(std::path::Component::Normal(id)), None) =
        (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let id = id.to_str()?;
    (first.as_os_str() == RELEASES && !id.starts_with('.')).then(|| id.to_string())
}

/// The digest a release folder's marker holds.
fn marker(releases: &Dir, id: &OsStr) -> Option<String> {
    let dir = releases.sub(id).ok()??;
    let bytes = dir.read(OsStr::new(TREE_MARKER), 4096).ok()??;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// The digest of a release of `source` (its blob's digest) running the
/// virtualenv `venv` (that virtualenv's digest): the source's own without
/// one. The same code on new requirements is a new release, so a kept
/// release always runs what it was checked with.
#[must_use]
pub fn digest(source: &str, venv: Option<&str>) -> String {
    match venv {
        None => source.to_string(),
        Some(venv) => crate::resources::sha256_hex(format!("{source}\n{venv}").as_bytes()),
    }
}

/// The name of the virtualenv of `digest` in its folder: 16 hex digits
/// (its scripts' `#!` lines hold the path, so it stays short).
#[must_use]
pub fn venv_name(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

/// A digest's first 12 characters, as release ids show it.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Now, as `20261206T171900Z` (sorts as time does).
fn stamp() -> String {
    Stamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release blob holding `app.py` with `text`.
    fn blob(text: &str) -> std::fs::File {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "app.py", text.as_bytes())
            .expect("append");
        let bytes = tar.into_inner().expect("tar");
        let mut file = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut file, &bytes).expect("write");
        std::io::Seek::rewind(&mut file).expect("rewind");
        file
    }

    fn uid() -> u32 {
        rustix::process::getuid().as_raw()
    }

    #[test]
    fn releases_are_unpacked_beside_checked_switched_and_pruned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let current = dir.path().join("current");
        let place = Place::of(&current).expect("place");
        assert_eq!(place.live(), Ok(None));
        let (v1, made) = place
            .unpack(
                "1111aaaa2222bbbb",
                Some(blob("v1")),
                "app.py\n",
                uid(),
                (None, None),
            )
            .expect("v1");
        assert!(made && v1.ends_with("-1111aaaa2222"), "{v1}");
        place
            .check(
                &v1,
                "test \"$(cat \"$SITEC_RELEASE/app.py\")\" = v1",
                "root",
                false,
            )
            .expect("checked");
        place.switch(&v1).expect("switch");
        assert_eq!(
            std::fs::read_to_string(current.join("app.py")).expect("live"),
            "v1"
        );
        assert_eq!(
            std::fs::read_link(&current).expect("a link"),
            Path::new("releases").join(&v1)
        );

        let (v2, _) = place
            .unpack(
                "3333cccc4444dddd",
                Some(blob("v2")),
                "",
                uid(),
                (None, None),
            )
            .expect("v2");
        place.switch(&v2).expect("switch");
        assert_eq!(
            std::fs::read_to_string(current.join("app.py")).expect("live"),
            "v2"
        );
        // A release whose check fails is not switched to; v2 stays live.
        let (v3, _) = place
            .unpack(
                "5555eeee6666ffff",
                Some(blob("v3")),
                "",
                uid(),
                (None, None),
            )
            .expect("v3");
        let failed = place.check(&v3, "echo broken >&2; false", "root", false);
        assert!(
            failed.as_ref().is_err_and(|e| e.contains("broken")),
            "{failed:?}"
        );
        // A migration runs in the release too, and says what failed.
        let migrated = place.run(
            &v3,
            "the migrations",
            "test \"$(cat \"$SITEC_RELEASE/app.py\")\" = v3 && echo no database >&2 && false",
            "root",
        );
        assert!(
            (migrated.as_ref()).is_err_and(
                |e| e.contains("the migrations of release") && e.contains("no database")
            ),
            "{migrated:?}"
        );
        place.remove(&v3, None).expect("remove");
        assert_eq!(place.live(), Ok(Some(v2.clone())));
        let ids: Vec<String> = place
            .list()
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [v1.clone(), v2.clone()]);
        // The same content again: the kept release, nothing unpacked.
        assert_eq!(
            place.unpack("1111aaaa2222bbbb", None, "", uid(), (None, None)),
            Ok((v1.clone(), false))
        );
        assert!(
            place.unpack("7777", None, "", uid(), (None, None)).is_err(),
            "no blob, no release"
        );
        // Keep 1: the live one stays, whatever its age.
        place.switch(&v1).expect("back to v1");
        assert_eq!(place.prune(1, None), Ok(vec![v2]));
        assert_eq!(place.live(), Ok(Some(v1)));
    }

    #[test]
    fn a_check_writes_only_its_output_a_folder_beside_the_releases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let current = dir.path().join("current");
        let place = Place::of(&current).expect("place");
        // The source has a folder where the output goes: the link replaces it.
        let mut tar = tar::Builder::new(Vec::new());
        for (path, text) in [("app.py", "v1"), ("web/static/old.css", "old")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, text.as_bytes())
                .expect("append");
        }
        let mut file = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut file, &tar.into_inner().expect("tar")).expect("write");
        std::io::Seek::rewind(&mut file).expect("rewind");
        let output = Output {
            name: "web/static",
            user: "root",
        };
        let (v1, _) = place
            .unpack(
                "aaaa",
                Some(file),
                "",
                uid(),
                (Some((output.name, uid())), None),
            )
            .expect("v1");
        let release = place.path_of(&v1);
        assert_eq!(
            std::fs::read_link(release.join("web/static")).expect("a link"),
            Path::new("../../../output").join(&v1)
        );
        place
            .check(
                &v1,
                "echo body > \"$SITEC_RELEASE/web/static/site.css\"",
                "root",
                true,
            )
            .expect("checked");
        let written = dir.path().join(OUTPUT).join(&v1).join("site.css");
        assert_eq!(std::fs::read_to_string(&written).expect("output"), "body\n");
        place.switch(&v1).expect("switch");
        assert_eq!(
            std::fs::read_to_string(current.join("web/static/site.css")).expect("served"),
            "body\n"
        );
        // A release whose check fails goes with its output.
        let with_output = |digest: &str, text: &str| {
            let made = place.unpack(
                digest,
                Some(blob(text)),
                "",
                uid(),
                (Some((output.name, uid())), None),
            );
            made.expect("unpacked").0
        };
        let v2 = with_output("bbbb", "v2");
        let failed = place.check(
            &v2,
            "touch \"$SITEC_RELEASE/web/static/x\"; false",
            "root",
            true,
        );
        assert!(failed.is_err());
        place.remove(&v2, Some(output)).expect("remove");
        assert!(!dir.path().join(OUTPUT).join(&v2).exists());
        // Pruned: the release and its output.
        let v3 = with_output("cccc", "v3");
        place.check(&v3, "true", "root", true).expect("checked");
        place.switch(&v3).expect("switch");
        assert_eq!(place.prune(1, Some(output)), Ok(vec![v1.clone()]));
        assert!(!written.exists() && !release.exists());
        assert!(dir.path().join(OUTPUT).join(&v3).is_dir());
        // The app dropped: releases, link and outputs.
        assert_eq!(place.remove_all(Some("root")), Ok(true));
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "{left:?}");
        // A path out of the release is refused.
        let (v4, _) = place
            .unpack("dddd", Some(blob("v4")), "", uid(), (None, None))
            .expect("v4");
        let bad = place.unpack(
            "eeee",
            Some(blob("v5")),
            "",
            uid(),
            (Some(("../x", uid())), None),
        );
        assert!(
            bad.is_err_and(|e| e.contains("not a folder inside the release")),
            "{v4}"
        );
    }

    #[test]
    fn each_release_runs_its_own_virtualenv_and_unused_ones_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let current = dir.path().join("current");
        let venvs = dir.path().join("venvs");
        for name in ["aaaa", "bbbb", "cccc", "dddd"] {
            std::fs::create_dir_all(venvs.join(name).join("bin")).expect("mkdir");
        }
        let place = Place::of(&current).expect("place");
        // From before virtualenvs were per release: no `venv` link.
        let (old, _) = place
            .unpack("0000", Some(blob("v0")), "", uid(), (None, None))
            .expect("v0");
        let with_venv = |source: &str, venv: &str| {
            let digest = digest(source, Some(venv));
            let made = place.unpack(
                &digest,
                Some(blob(source)),
                "",
                uid(),
                (None, Some(&venvs.join(venv))),
            );
            made.expect("unpacked").0
        };
        // The same code on two virtualenvs: two releases, each its own.
        let v1 = with_venv("1111", "aaaa");
        let v2 = with_venv("1111", "bbbb");
        assert_ne!(v1, v2);
        assert_ne!(digest("1111", Some("aaaa")), digest("1111", Some("bbbb")));
        assert_eq!(digest("1111", None), "1111");
        place.switch(&v1).expect("switch");
        assert!(current.join("venv/bin").is_dir(), "current/venv reaches it");
        assert_eq!(
            std::fs::read_link(current.join(VENV)).expect("a link"),
            venvs.join("aaaa")
        );
        // Back and forth: the link moves the virtualenv with the code.
        place.switch(&v2).expect("switch");
        assert_eq!(
            std::fs::read_link(current.join(VENV)).expect("a link"),
            venvs.join("bbbb")
        );
        let listed = place.list().expect("list");
        let venv_of = |id: &str| (listed.iter().find(|r| r.id == id)).and_then(|r| r.venv.clone());
        assert_eq!(venv_of(&v1), Some(venvs.join("aaaa").display().to_string()));
        assert_eq!(venv_of(&old), None);
        // The release without one goes; kept releases' virtualenvs and the
        // wanted one stay, the rest go.
        assert_eq!(place.prune_without_venv(None), Ok(vec![old]));
        assert_eq!(
            place.prune_venvs(&venvs, "cccc"),
            Ok(vec!["dddd".to_string()])
        );
        assert_eq!(place.prune(1, None), Ok(vec![v1]));
        assert_eq!(
            place.prune_venvs(&venvs, "cccc"),
            Ok(vec!["aaaa".to_string()])
        );
        let mut left: Vec<String> = std::fs::read_dir(&venvs)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["bbbb", "cccc"]);
    }

    #[test]
    fn a_folder_from_before_releases_becomes_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let current = dir.path().join("current");
        std::fs::create_dir(&current).expect("mkdir");
        std::fs::write(current.join("old.py"), "old").expect("write");
        // Deployed before: older than the release that replaces it.
        let touched = std::process::Command::new("touch")
            .args(["-d", "2026-01-01"])
            .arg(&current)
            .status();
        assert!(touched.is_ok_and(|s| s.success()));
        let place = Place::of(&current).expect("place");
        assert!(place.live().is_err(), "a folder is no release link");
        let (id, _) = place
            .unpack("8888", Some(blob("new")), "", uid(), (None, None))
            .expect("new");
        place.switch(&id).expect("switch");
        assert_eq!(place.live(), Ok(Some(id)));
        let kept = place.list().expect("list");
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[0].id.ends_with("-before-releases"), "{kept:?}");
        let old = place.path_of(&kept[0].id).join("old.py");
        assert_eq!(std::fs::read_to_string(old).expect("kept"), "old");
    }

    #[test]
    fn only_a_release_under_releases_is_live() {
        assert_eq!(
            release_of(Path::new("releases/20261206T1719Z-abc")).as_deref(),
            Some("20261206T1719Z-abc")
        );
        for bad in [
            "/srv/x",
            "releases/../etc",
            "releases/a/b",
            "elsewhere/a",
            "releases/.a.sitec-new",
            "releases",
        ] {
            assert_eq!(release_of(Path::new(bad)), None, "{bad}");
        }
    }
}

//! What an app's release ships: the files of its source folder that the
//! project means to ship. That is the working tree as git would commit it
//! (every `.gitignore` from the folder up to the filesystem's root,
//! `.git/info/exclude` and the user's global excludes, read by the `ignore`
//! crate, ripgrep's, so a developer's `.env`, SQLite file or local settings
//! stay home), less what a `.sitecignore` (same syntax, at any level) names
//! for sitec alone, less what never belongs in one (VCS folders, bytecode,
//! virtualenvs), and never the spec's own files: its secrets and override
//! files and a local fleet's keys (`.fleet/`), wherever they sit. The
//! working tree rather than `git archive` of HEAD: what is on disk is what
//! the operator just tested, committed or not, and a project that is not a
//! git repository deploys the same way.
//!
//! Releases are deterministic tars (sorted entries, owner root, time zero),
//! so an unchanged tree packs to the same bytes. Reads only.

use std::fs;
use std::path::{Path, PathBuf};

/// One entry of a release, relative to its source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Folder,
    File { executable: bool, size: u64 },
    Link,
}

/// Names never shipped, whatever the ignore files say: VCS data, bytecode,
/// local virtualenvs and caches.
fn never_shipped(name: &str) -> bool {
    matches!(
        name,
        ".git"
            | ".hg"
            | ".svn"
            | "__pycache__"
            | ".venv"
            | "venv"
            | ".mypy_cache"
            | ".pytest_cache"
            | ".ruff_cache"
            | ".tox"
            | "node_modules"
    ) || name.ends_with(".pyc")
        || name.starts_with(".sitec")
        || sitecs_own(name)
}

/// The names of the files sitec keeps beside a spec for itself: a local
/// fleet's state and keys, the secrets file, the override file.
pub fn sitecs_own(name: &str) -> bool {
    name == ".fleet" || name.ends_with(".secrets.toml") || name.ends_with(".local.toml")
}

/// The entries of the release of `source`, sorted by path.
pub fn entries(source: &Path) -> Result<Vec<Entry>, String> {
    if !source.is_dir() {
        return Err(format!(
            "the app source {} is not a folder; fix the app's `source`",
            source.display()
        ));
    }
    let walk = ignore::WalkBuilder::new(source)
        .hidden(false)
        .parents(true)
        .ignore(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(true)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(".sitecignore")
        .filter_entry(|e| !never_shipped(&e.file_name().to_string_lossy()))
        .build();
    let mut out = Vec::new();
    for found in walk {
        let found =
            found.map_err(|e| format!("cannot read the app source {}: {e}", source.display()))?;
        let Ok(path) = found.path().strip_prefix(source) else {
            continue;
        };
        if path.as_os_str().is_empty() || path.file_name().is_some_and(|n| n == ".sitecignore") {
            continue;
        }
        let meta = fs::symlink_metadata(found.path())
            .map_err(|e| format!("cannot read {}: {e}", found.path().display()))?;
        let what = if meta.file_type().is_symlink() {
            What::Link
        } else if meta.is_dir() {
            What::Folder
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            What::File {
                executable: meta.permissions().mode() & 0o111 != 0,
                size: meta.len(),
            }
        } else {
            // Sockets, fifos, devices: nothing a release holds.
            continue;
        };
        out.push(Entry {
            path: path.to_path_buf(),
            what,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The files of a release, one path a line (folders left out): what a plan
/// compares with the host's, and what the host keeps beside the release.
pub fn file_list(entries: &[Entry]) -> String {
    entries
        .iter()
        .filter(|e| e.what != What::Folder)
        .map(|e| format!("{}\n", e.path.display()))
        .collect()
}

/// A tar of `entries` of `root` that depends only on names, contents and
/// the executable bit: in order, owner root, time zero.
pub fn tar(root: &Path, entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let path = root.join(&entry.path);
        let io = |e: std::io::Error| format!("cannot pack {}: {e}", path.display());
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry.what {
            What::Link => {
                let target = fs::read_link(&path).map_err(io)?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, &entry.path, &target)
                    .map_err(io)?;
            }
            What::Folder => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, &entry.path, std::io::empty())
                    .map_err(io)?;
            }
            What::File { executable, .. } => {
                let file = fs::File::open(&path).map_err(io)?;
                let size = file.metadata().map_err(io)?.len();
                header.set_mode(if executable { 0o755 } else { 0o644 });
                header.set_size(size);
                builder
                    .append_data(&mut header, &entry.path, file)
                    .map_err(io)?;
            }
        }
    }
    builder
        .into_inner()
        .map_err(|e| format!("cannot pack {}: {e}", root.display()))
}

/// What changed between two file lists ([`file_list`]): files added and
/// removed, each sorted.
pub fn list_changes<'a>(old: &'a str, new: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
    let old: std::collections::BTreeSet<&str> = old.lines().collect();
    let new: std::collections::BTreeSet<&str> = new.lines().collect();
    (
        new.difference(&old).copied().collect(),
        old.difference(&new).copied().collect(),
    )
}

/// The files of the spec's folder (`base`) that sitec reads or writes for
/// itself, and `also` (the TLS files the spec names): what no release may
/// hold. Absolute, as found.
pub fn spec_files(base: &Path, also: &[PathBuf]) -> Vec<PathBuf> {
    let folder = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let mut out: Vec<PathBuf> = fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            sitecs_own(&name) || name.ends_with(".site")
        })
        .chain(also.iter().map(|p| folder.join(p)))
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Which of `spec_files` the release of `source` would hold: each one's
/// path in the release. Cheap when the spec's folder is outside the source.
pub fn holding_spec_files(source: &Path, spec_files: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let Ok(source) = fs::canonicalize(source) else {
        return Ok(Vec::new());
    };
    let inside: Vec<PathBuf> = (spec_files.iter())
        .filter_map(|f| f.strip_prefix(&source).ok())
        .map(Path::to_path_buf)
        .collect();
    if inside.is_empty() {
        return Ok(Vec::new());
    }
    let shipped = entries(&source)?;
    Ok(inside
        .into_iter()
        .filter(|f| shipped.iter().any(|e| e.path == *f))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, text: &str) {
        let path = root.join(name);
        fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
        fs::write(path, text).expect("a file");
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.path.display().to_string())
            .collect()
    }

    #[test]
    fn ignored_files_bytecode_and_sitecs_own_files_stay_home() {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let root = dir.path();
        write(
            root,
            ".gitignore",
            "*.sqlite3\n.env\nlocal_settings.py\n/media/\n",
        );
        write(root, ".sitecignore", "docs/\n");
        write(root, "manage.py", "");
        write(root, "db.sqlite3", "");
        write(root, ".env", "SECRET=1");
        write(root, "mysite/settings/__init__.py", "");
        write(root, "mysite/settings/local_settings.py", "");
        write(root, "mysite/settings/.gitignore", "dev.py\n");
        write(root, "mysite/settings/dev.py", "");
        write(root, "mysite/__pycache__/x.pyc", "");
        write(root, "media/upload.png", "");
        write(root, "docs/index.md", "");
        write(root, "deploy/fleet.secrets.toml", "");
        write(root, "deploy/fleet.local.toml", "");
        write(root, "deploy/.fleet/keys/id", "");
        write(root, "deploy/fleet.site", "");
        let got = paths(&entries(root).expect("the entries"));
        assert_eq!(
            got,
            [
                ".gitignore",
                "deploy",
                "deploy/fleet.site",
                "manage.py",
                "mysite",
                "mysite/settings",
                "mysite/settings/.gitignore",
                "mysite/settings/__init__.py"
            ]
        );
        let spec_files = spec_files(&root.join("deploy"), &[]);
        let held = holding_spec_files(root, &spec_files).expect("a walk");
        assert_eq!(held, [PathBuf::from("deploy/fleet.site")]);
    }

    #[test]
    fn a_tree_packs_the_same_whatever_its_times() {
        let dir = tempfile::tempdir().expect("a scratch folder");
        write(dir.path(), "pkg/a.py", "x = 1\n");
        let first = tar(dir.path(), &entries(dir.path()).expect("entries")).expect("a tar");
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(dir.path(), "pkg/a.py", "x = 1\n");
        let second = tar(dir.path(), &entries(dir.path()).expect("entries")).expect("a tar");
        assert_eq!(first, second);
    }

    #[test]
    fn a_file_list_change_is_what_was_added_and_removed() {
        let (added, removed) = list_changes("a.py\nb.py\n", "b.py\nc.py\n");
        assert_eq!((added, removed), (vec!["c.py"], vec!["a.py"]));
    }
}

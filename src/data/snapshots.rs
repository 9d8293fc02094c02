//! A folder of snapshots, on the host that holds it: a database host's
//! `/var/lib/sitec/snapshots/BACKUP/` or a backup host's copies in
//! `/srv/sitec/backups/BACKUP/HOST/`. Each snapshot is a folder named by
//! its [`Stamp`] holding one read-only subvolume per data folder
//! (`postgresql`, `redis`, an app's `media.APP.STORE`); one being made or received is `.partial-STAMP`
//! until it is whole, so nobody ever reads half of one. Taking them (`take`)
//! is the database host's timer job; this module also lists and removes
//! them, for every side.

use super::stamp::Stamp;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One whole snapshot in a folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub stamp: String,
    /// Its subvolumes' names, sorted.
    pub subvolumes: Vec<String>,
}

/// The name a folder being filled has until it is whole.
pub fn partial_name(stamp: Stamp) -> String {
    format!(".partial-{stamp}")
}

/// The whole snapshots in `dir`, oldest first (none when `dir` is missing).
pub fn list(dir: &Path) -> Result<Vec<Snapshot>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stamp) = Stamp::parse(&name) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        found.push((stamp, subvolumes(&entry.path())?));
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(stamp, subvolumes)| Snapshot {
            stamp: stamp.to_string(),
            subvolumes,
        })
        .collect())
}

/// The subvolumes of one snapshot folder: its sub-folders with a plain name.
fn subvolumes(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_subvolume_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Subvolume names sitec gives: `postgresql`, `redis`, and an app's media
/// store's [`media_subvolume`]. What a request or a listing may name: one
/// plain path component, never `.`, `..` or a `/`.
pub fn is_subvolume_name(name: &str) -> bool {
    matches!(name, "postgresql" | "redis") || media_of_subvolume(name).is_some()
}

/// The subvolume an app's media store is snapshotted as:
/// `media.APP.STORE`. A `.` is in neither an app's name nor a store's, so
/// the name says whose it is, and two stores never share one.
pub fn media_subvolume(app: &str, store: &str) -> String {
    format!("media.{app}.{store}")
}

/// The app and the store a media subvolume's name holds, each checked as
/// the spec checks it; `None` for any other name.
pub fn media_of_subvolume(name: &str) -> Option<(&str, &str)> {
    let (app, store) = name.strip_prefix("media.")?.split_once('.')?;
    let app_ok = crate::names::fleet_name_problem(app, crate::names::APP_NAME_LONGEST).is_none();
    (app_ok && crate::names::media_name_problem(store).is_none()).then_some((app, store))
}

/// Deletes one snapshot folder (whole or partial): its subvolumes, then it.
pub fn remove(folder: &Path) -> Result<(), String> {
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let path = entry.path();
            if is_subvolume(&path) {
                run("btrfs", &["subvolume", "delete", &path.to_string_lossy()])?;
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            } else {
                std::fs::remove_file(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            }
        }
    }
    match std::fs::remove_dir(folder) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", folder.display()))
        }
        _ => Ok(()),
    }
}

/// A btrfs subvolume's root always has inode number 256.
fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

/// Removes what runs that died left half made (`.partial-*`).
pub fn clear_partials(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".partial-") {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// What `sitec data snapshot` reads (`backup/snapshot.toml`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// This backup's snapshots, on the data's btrfs file system.
    pub dir: PathBuf,
    /// How many to keep here; the backup host keeps the history.
    pub keep: usize,
    /// None on a host without databases: nothing to snapshot.
    #[serde(rename = "subvolume", default)]
    pub subvolumes: Vec<Subvolume>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subvolume {
    pub name: String,
    pub path: PathBuf,
}

impl SnapshotConfig {
    pub fn load(path: &Path) -> Result<SnapshotConfig, String> {
        let config: SnapshotConfig = super::read_toml(path)?;
        if let Some(bad) = (config.subvolumes.iter()).find(|s| !is_subvolume_name(&s.name)) {
            return Err(format!(
                "{}: subvolume name `{}` should be `postgresql`, `redis` or `media.APP.STORE`",
                path.display(),
                bad.name
            ));
        }
        if config.keep == 0 {
            return Err(format!(
                "{}: keep = 0 would remove each snapshot as it is made; keep at least 1",
                path.display()
            ));
        }
        Ok(config)
    }
}

/// Takes one read-only snapshot of every subvolume into `DIR/STAMP`
/// (made as `.partial-STAMP`, renamed once whole), then removes all but
/// the newest `keep`. Each subvolume's snapshot is atomic: the data folder
/// as it was at one instant, WAL and all, so Postgres recovers from it as
/// from a power cut.
pub fn take(config: &SnapshotConfig) -> Result<Stamp, String> {
    let dir = &config.dir;
    let _lock = super::pull::lock(dir)?;
    clear_partials(dir)?;
    let mut stamp = Stamp::now();
    // Two runs in one second would want one name.
    while dir.join(stamp.to_string()).exists() {
        std::thread::sleep(std::time::Duration::from_millis(200));
        stamp = Stamp::now();
    }
    let partial = dir.join(partial_name(stamp));
    std::fs::create_dir(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    for sub in &config.subvolumes {
        let into = partial.join(&sub.name);
        run(
            "btrfs",
            &[
                "subvolume",
                "snapshot",
                "-r",
                &sub.path.to_string_lossy(),
                &into.to_string_lossy(),
            ],
        )?;
    }
    let whole = dir.join(stamp.to_string());
    std::fs::rename(&partial, &whole)
        .map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
    let all = list(dir)?;
    for old in all.iter().rev().skip(config.keep) {
        remove(&dir.join(&old.stamp))?;
    }
    Ok(stamp)
}

/// Runs a program; its error output in the error.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The size of what a snapshot holds, in bytes (`du --apparent-size`):
/// what a restore writes back.
pub fn size(folder: &Path) -> Option<u64> {
    let out = run("du", &["-s", "-b", &folder.to_string_lossy()]).ok()?;
    out.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subvolume_names_are_the_engines_and_checked_media_stores() {
        for good in [
            "postgresql",
            "redis",
            "media.blog.uploads",
            "media.my_app-2.x-1",
        ] {
            assert!(is_subvolume_name(good), "{good} refused");
        }
        assert_eq!(media_subvolume("blog", "uploads"), "media.blog.uploads");
        assert_eq!(
            media_of_subvolume("media.blog.uploads"),
            Some(("blog", "uploads"))
        );
        for bad in [
            "",
            ".",
            "..",
            "media",
            "media.",
            "media..",
            "media.blog",
            "media.blog.",
            "media..uploads",
            "media.blog.up.loads",
            "media.blog./",
            "media.blog.../x",
            "media.../..",
            "media.Blog.uploads",
            "media.blog.Uploads",
            "media.blog.up_loads",
            "media.1blog.uploads",
            "media.blog.-x",
            "media.blog.uploads/..",
            "media.blog.uploads ",
            "Postgresql",
            "postgresql/../x",
        ] {
            assert!(!is_subvolume_name(bad), "{bad:?} passed");
        }
        let long = format!("media.{}.uploads", "a".repeat(29));
        assert!(!is_subvolume_name(&long), "an app name too long passed");
    }
}

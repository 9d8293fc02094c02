//! `sitec render SPEC --check DIR`: what the spec renders now against a
//! tree committed beside it, as an operator's CI reviews config changes.
//!
//! The tree is every host's files and its `resources.json`, rendered with
//! placeholder secrets, as `render --out` writes them but for one thing: a
//! resource the standard library declares names its module without a line
//! (`std/platform.site`), so a new release of sitec that moves the lines of
//! its roles, and changes nothing a host gets, changes no snapshot. The
//! comparison gives a unified diff per file added, removed or changed;
//! `--update` rewrites the tree (through `output`). Reads `DIR` and
//! nothing else; never writes.

use crate::compile::{HostState, Rendered};
use crate::resources::Kind;
use std::collections::BTreeMap;
use std::path::Path;

/// The files of a snapshot tree: path below the tree to text.
pub type Files = BTreeMap<String, String>;

/// What a spec renders, as a snapshot tree.
pub fn tree(rendered: &Rendered) -> Result<Files, String> {
    let mut files = Files::new();
    for host in &rendered.hosts {
        for resource in &host.resources {
            if let Kind::File {
                path,
                content,
                absent: false,
                ..
            } = &resource.kind
            {
                files.insert(format!("{}{path}", host.name), content.clone());
            }
        }
        files.insert(format!("{}/resources.json", host.name), resources(host)?);
    }
    Ok(files)
}

/// `HOST/resources.json` with the standard library's lines left out.
fn resources(host: &HostState) -> Result<String, String> {
    let mut resources = host.resources.clone();
    for resource in &mut resources {
        if resource.origin.starts_with("std/") {
            if let Some((module, _line)) = resource.origin.rsplit_once(':') {
                resource.origin = module.to_string();
            }
        }
    }
    crate::output::resources_json(host, &resources)
}

/// The snapshot tree committed at `dir`: every file below it but the
/// marker `render` leaves. A missing folder is an empty tree.
pub fn read(dir: &Path) -> Result<Files, String> {
    let mut files = Files::new();
    if !dir.exists() {
        return Ok(files);
    }
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| format!("can't read `{}`: {e}", folder.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("can't read `{}`: {e}", folder.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("can't read `{}`: {e}", path.display()))?;
            if kind.is_dir() {
                folders.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if relative == crate::output::MARKER {
                continue;
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("can't read `{}`: {e}", path.display()))?;
            files.insert(relative, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(files)
}

/// How a file of the tree changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One file that differs, with its unified diff.
#[derive(Debug)]
pub struct Difference {
    pub path: String,
    pub change: Change,
    pub diff: String,
}

/// Every file that differs between the committed tree and the one the spec
/// renders now, in path order.
pub fn compare(committed: &Files, now: &Files) -> Vec<Difference> {
    let paths: std::collections::BTreeSet<&String> = committed.keys().chain(now.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (before, after) = (committed.get(path), now.get(path));
            let change = match (before, after) {
                (Some(b), Some(a)) if a == b => return None,
                (Some(_), Some(_)) => Change::Changed,
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
            };
            let old_name = if change == Change::Added {
                "/dev/null".to_string()
            } else {
                format!("{path} (committed)")
            };
            let new_name = if change == Change::Removed {
                "/dev/null".to_string()
            } else {
                format!("{path} (the spec)")
            };
            let diff = similar::TextDiff::from_lines(
                before.map_or("", String::as_str),
                after.map_or("", String::as_str),
            )
            .unified_diff()
            .context_radius(3)
            .header(&old_name, &new_name)
            .to_string();
            Some(Difference {
                path: path.clone(),
                change,
                diff,
            })
        })
        .collect()
}

/// "2 changed, 1 added, 1 removed"
pub fn summary(differences: &[Difference]) -> String {
    let count = |c: Change| differences.iter().filter(|d| d.change == c).count();
    let parts: Vec<String> = [
        (Change::Changed, "changed"),
        (Change::Added, "added"),
        (Change::Removed, "removed"),
    ]
    .into_iter()
    .map(|(c, word)| (count(c), word))
    .filter(|(n, _)| *n > 0)
    .map(|(n, word)| format!("{n} {word}"))
    .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn added_removed_and_changed_files_each_get_a_diff() {
        let committed = files(&[("h/a", "one\n"), ("h/b", "same\n"), ("h/c", "gone\n")]);
        let now = files(&[("h/a", "two\n"), ("h/b", "same\n"), ("h/d", "new\n")]);
        let differences = compare(&committed, &now);
        let found: Vec<(&str, Change)> = differences
            .iter()
            .map(|d| (d.path.as_str(), d.change))
            .collect();
        assert_eq!(
            found,
            [
                ("h/a", Change::Changed),
                ("h/c", Change::Removed),
                ("h/d", Change::Added)
            ]
        );
        assert!(
            differences[0].diff.contains("-one\n+two\n"),
            "{}",
            differences[0].diff
        );
        assert!(differences[1]
            .diff
            .starts_with("--- h/c (committed)\n+++ /dev/null\n"));
        assert!(differences[2]
            .diff
            .starts_with("--- /dev/null\n+++ h/d (the spec)\n"));
        assert_eq!(summary(&differences), "1 changed, 1 added, 1 removed");
        assert!(compare(&now, &now).is_empty());
    }
}

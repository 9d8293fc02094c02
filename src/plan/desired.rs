//! From a compiled spec to what each host is sent: its resources with file
//! contents, and the blobs they need — each app release as a deterministic
//! tar of its source folder, and each app's wheelhouse (`wheelhouse`: its
//! requirements as pip reads them, and the app server, built with pip on
//! the operator's machine, so hosts install without reaching any index). Blobs are content-addressed in the
//! operator's cache, so a saved plan can find them again.

use crate::compile::Rendered;
use crate::host::wire::{Desired, Item};
use crate::resources::{sha256_hex, Kind};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One host's desired state and how to reach it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostDesired {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub reach: Reach,
    pub desired: Desired,
}

/// How to reach a host: its provider's SSH settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reach {
    pub provider: String,
    /// A `local` provider: a container of `sitec fleet up`.
    pub local: bool,
    pub user: String,
    pub port: u16,
    pub known_hosts: Option<String>,
    pub identity: Option<String>,
}

impl Reach {
    fn of(p: &crate::model::Provider) -> Self {
        Self {
            provider: p.name.clone(),
            local: p.kind == crate::model::ProviderKind::Local,
            user: p.user.clone(),
            port: p.port,
            known_hosts: p.known_hosts.clone(),
            identity: p.identity.clone(),
        }
    }
}

/// Where sitec keeps wheelhouses and blobs on the operator's machine:
/// `$SITEC_CACHE`, else `$XDG_CACHE_HOME/sitec`, else `~/.cache/sitec`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SITEC_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("sitec");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/sitec")
}

/// The cached blob of `digest`.
#[must_use]
pub fn blob_file(digest: &str) -> PathBuf {
    cache_dir().join("blobs").join(format!("{digest}.tar"))
}

/// Builds every host's desired state. `say` reports slow steps (a first
/// wheelhouse build downloads from PyPI).
pub fn build(
    rendered: &Rendered,
    spec: &Path,
    say: &dyn Fn(&str),
) -> Result<Vec<HostDesired>, String> {
    let base = spec.parent().unwrap_or(Path::new("."));
    let mut blobs = BlobMaker::default();
    let mut hosts = Vec::new();
    for host in &rendered.hosts {
        let mut items = Vec::new();
        for r in &host.resources {
            items.push(item(r, base, &mut blobs, say)?);
        }
        hosts.push(HostDesired {
            name: host.name.clone(),
            address: host.address.clone(),
            roles: host.roles.clone(),
            reach: Reach::of(&host.provider),
            desired: Desired {
                host: host.name.clone(),
                generation: String::new(),
                spec: spec.display().to_string(),
                items,
                expect: None,
            },
        });
    }
    let all: Vec<(&str, Vec<&str>)> = hosts
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.desired.items.iter().map(|i| i.digest.as_str()).collect(),
            )
        })
        .collect();
    let generation = sha256_hex(serde_json::to_string(&all).unwrap_or_default().as_bytes());
    for host in &mut hosts {
        host.desired.generation.clone_from(&generation);
    }
    Ok(hosts)
}

fn item(
    r: &crate::resources::Resource,
    base: &Path,
    blobs: &mut BlobMaker,
    say: &dyn Fn(&str),
) -> Result<Item, String> {
    let (content, blob) = match &r.kind {
        Kind::File {
            content,
            absent: false,
            ..
        } => (Some(content.clone()), None),
        Kind::Tree { source, .. } => (None, Some(blobs.tree(&base.join(source))?)),
        Kind::Virtualenv {
            requirements,
            python,
            ..
        } => {
            let (text, wheels) = blobs
                .wheelhouse(base, requirements, python, say)
                .map_err(|e| format!("{}: {e}", r.origin))?;
            (Some(text), Some(wheels))
        }
        _ => (None, None),
    };
    let digest = sha256_hex(
        serde_json::to_string(&(&r.kind, &content, &blob))
            .unwrap_or_default()
            .as_bytes(),
    );
    Ok(Item {
        id: r.id.clone(),
        kind: r.kind.clone(),
        requires: r.requires.clone(),
        notifies: r.notifies.clone(),
        content,
        blob,
        digest,
    })
}

/// Makes each blob once per run.
#[derive(Default)]
struct BlobMaker {
    trees: BTreeMap<PathBuf, String>,
    /// By Python and requirements file: (what the host installs, blob digest).
    wheelhouses: BTreeMap<String, (String, String)>,
}

impl BlobMaker {
    fn tree(&mut self, dir: &Path) -> Result<String, String> {
        if let Some(d) = self.trees.get(dir) {
            return Ok(d.clone());
        }
        if !dir.is_dir() {
            return Err(format!(
                "the app source {} is not a folder; fix the app's `source`",
                dir.display()
            ));
        }
        let digest = store(&tar_of(dir, &|_| true)?)?;
        self.trees.insert(dir.to_path_buf(), digest.clone());
        Ok(digest)
    }

    /// The app's wheelhouse (`wheelhouse::build`), packed: the requirements
    /// the host installs and the blob's digest. `requirements` is the
    /// file's path from the spec's folder (`{app.requirements}`).
    fn wheelhouse(
        &mut self,
        base: &Path,
        requirements: &str,
        python: &str,
        say: &dyn Fn(&str),
    ) -> Result<(String, String), String> {
        let key = format!("{python}\n{requirements}");
        if let Some(done) = self.wheelhouses.get(&key) {
            return Ok(done.clone());
        }
        let built = super::wheelhouse::build(base, requirements, python, &cache_dir(), say)?;
        let digest = store(&tar_of(&built.dir, &|p| {
            p.extension().is_some_and(|e| e == "whl")
        })?)?;
        let done = (built.host_requirements, digest);
        self.wheelhouses.insert(key, done.clone());
        Ok(done)
    }
}

/// Names never shipped in a release: VCS data, bytecode, local virtualenvs.
fn skipped(name: &str) -> bool {
    matches!(
        name,
        ".git"
            | ".hg"
            | "__pycache__"
            | ".venv"
            | "venv"
            | ".mypy_cache"
            | ".pytest_cache"
            | "node_modules"
    ) || name.ends_with(".pyc")
        || name.starts_with(".sitec")
}

/// A tar of `dir` that depends only on names, contents and the executable
/// bit: sorted entries, owner root, time zero.
fn tar_of(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    add_dir(&mut builder, dir, Path::new(""), keep)?;
    builder
        .into_inner()
        .map_err(|e| format!("cannot pack {}: {e}", dir.display()))
}

fn add_dir(
    b: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<(), String> {
    let here = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&here)
        .map_err(|e| format!("cannot read {}: {e}", here.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| !skipped(&n.to_string_lossy()))
        .collect();
    entries.sort();
    for name in entries {
        let path = here.join(&name);
        let inner = rel.join(&name);
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let io = |e: std::io::Error| format!("cannot pack {}: {e}", path.display());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(io)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            b.append_link(&mut header, &inner, &target).map_err(io)?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            b.append_data(&mut header, &inner, std::io::empty())
                .map_err(io)?;
            add_dir(b, root, &inner, keep)?;
        } else if meta.is_file() && keep(&path) {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let file = fs::File::open(&path).map_err(io)?;
            b.append_data(&mut header, &inner, file).map_err(io)?;
        }
    }
    Ok(())
}

/// Puts `bytes` in the blob cache; returns their digest.
fn store(bytes: &[u8]) -> Result<String, String> {
    let digest = sha256_hex(bytes);
    let path = blob_file(&digest);
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = path.with_extension("partial");
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_packs_the_same_whatever_its_times() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        fs::create_dir_all(dir.path().join("pkg/__pycache__")).map_err(|e| e.to_string())?;
        fs::write(dir.path().join("pkg/a.py"), "x = 1\n").map_err(|e| e.to_string())?;
        fs::write(dir.path().join("pkg/__pycache__/a.pyc"), "junk").map_err(|e| e.to_string())?;
        let first = tar_of(dir.path(), &|_| true)?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.path().join("pkg/a.py"), "x = 1\n").map_err(|e| e.to_string())?;
        assert_eq!(first, tar_of(dir.path(), &|_| true)?);
        let names: Vec<String> = tar::Archive::new(first.as_slice())
            .entries()
            .map_err(|e| e.to_string())?
            .filter_map(|e| Some(e.ok()?.path().ok()?.display().to_string()))
            .collect();
        assert_eq!(names, ["pkg", "pkg/a.py"]);
        Ok(())
    }
}

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
    /// The ids of its resources that apply converges on every host before
    /// the rolling deploy (`apply::first_phase`): the `gluster` role's, so
    /// that every brick host's glusterd runs when the app's leader makes
    /// the volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<String>,
}

impl HostDesired {
    /// A host to reach and run commands on, with nothing to apply (the
    /// data commands: `sitec backups`, `restore`, `failover`).
    #[must_use]
    pub fn reach_only(fleet: &crate::model::Fleet, host: crate::model::HostId) -> HostDesired {
        let name = fleet.hosts[host].name.clone();
        HostDesired {
            address: fleet.address(host),
            roles: fleet.hosts[host].roles.clone(),
            reach: Reach::of(fleet.provider_of(host)),
            desired: Desired::nothing(&name),
            first: Vec::new(),
            name,
        }
    }
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
/// wheelhouse build downloads from PyPI). A host's wheelhouses are for the
/// platform `runner` learns from it, and a package without a wheel is
/// built by `runner` on the build host ([`build_host`]).
pub fn build(
    rendered: &Rendered,
    spec: &Path,
    say: &dyn Fn(&str),
    runner: &dyn super::build::Runner,
) -> Result<Vec<HostDesired>, String> {
    let base = spec.parent().unwrap_or(Path::new("."));
    let mut blobs = BlobMaker::default();
    let mut hosts = Vec::new();
    let pins = crate::overrides::pins(spec)?;
    let mut said = std::collections::BTreeSet::new();
    for host in &rendered.hosts {
        let mut items = Vec::new();
        let builder = build_host(rendered, host);
        let wheels = Wheels {
            platform: platform_of(host, runner, say),
            builder: super::build::On {
                runner,
                host: &builder,
            },
        };
        for r in &host.resources {
            // A virtualenv's Python the host lacks: sitec's build of it,
            // unpacked before the virtualenv is built.
            let built = match &r.kind {
                Kind::Virtualenv { python, .. } if wheels.platform.lacks(python) => {
                    let builders = (runner, &builder, host);
                    let built = (blobs.python(python, &wheels.platform, builders, say))
                        .map_err(|e| format!("{}: {e}", r.origin))?;
                    let python = python_item(&built);
                    let id = python.id.clone();
                    if !items.iter().any(|i: &Item| i.id == id) {
                        items.push(python);
                    }
                    Some((built, id))
                }
                _ => None,
            };
            let mut made = item(
                r,
                base,
                &mut blobs,
                &wheels,
                built.as_ref().map(|(b, _)| b),
                say,
            )?;
            if let Some((_, id)) = built {
                made.requires.push(id);
            }
            items.push(made);
        }
        link_venvs(&mut items)?;
        for item in &mut items {
            if let Some(note) = pinned(item, &pins, spec) {
                if said.insert(note.clone()) {
                    say(&note);
                }
            }
        }
        hosts.push(HostDesired {
            name: host.name.clone(),
            address: host.address.clone(),
            roles: host.roles.clone(),
            reach: Reach::of(&host.provider),
            desired: Desired {
                spec: spec.display().to_string(),
                items,
                ..Desired::nothing(&host.name)
            },
            first: (host.resources.iter())
                .filter(|r| r.role == crate::expand::GLUSTER_ROLE)
                .map(|r| r.id.clone())
                .collect(),
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
    prune(&cache_dir(), &blobs.used, std::time::SystemTime::now());
    Ok(hosts)
}

/// What a host's virtualenvs are built for, and where their packages that
/// have no wheel are built.
struct Wheels<'a> {
    platform: super::wheelhouse::Platform,
    builder: super::build::On<'a>,
}

/// The platform `host`'s wheels must fit, as the host says, if it has a
/// virtualenv (else no host is asked). A host that cannot be asked gets
/// Debian 12's, and the plan then reports it unreachable.
fn platform_of(
    host: &crate::compile::HostState,
    runner: &dyn super::build::Runner,
    say: &dyn Fn(&str),
) -> super::wheelhouse::Platform {
    let has_virtualenv = (host.resources.iter()).any(|r| matches!(r.kind, Kind::Virtualenv { .. }));
    if !has_virtualenv {
        return super::wheelhouse::Platform::debian_12();
    }
    runner.platform(&reached(host)).unwrap_or_else(|e| {
        say(&format!(
            "cannot learn {}'s platform ({e}); its wheels are for Debian 12's (glibc 2.36, x86_64)",
            host.name
        ));
        super::wheelhouse::Platform::debian_12()
    })
}

/// Where the packages of `host`'s virtualenvs that have no wheel are built:
/// the first host with the `build` role, else `host` itself (the app's
/// runner).
fn build_host(rendered: &Rendered, host: &crate::compile::HostState) -> HostDesired {
    let builder = (rendered.hosts.iter())
        .find(|h| h.roles.iter().any(|r| r == "build"))
        .unwrap_or(host);
    reached(builder)
}

/// `host` as the connections take it, with nothing desired.
fn reached(builder: &crate::compile::HostState) -> HostDesired {
    HostDesired {
        name: builder.name.clone(),
        address: builder.address.clone(),
        roles: builder.roles.clone(),
        reach: Reach::of(&builder.provider),
        desired: Desired::nothing(&builder.name),
        first: Vec::new(),
    }
}

/// How long the cache keeps a wheelhouse or blob no plan has used: a plan
/// saved for later (`--out`), or another spec on this machine, still finds
/// what it used within this time.
const KEPT_UNUSED: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// Marks `used` (this plan's blobs and wheelhouses) as used `now`, then
/// removes from `cache` every wheelhouse and blob unused for
/// [`KEPT_UNUSED`], and builds left unfinished for a day (a killed plan).
/// The cache keeps what the plans need and stops growing without bound.
/// Best effort: a cache entry that cannot be looked at is left.
fn prune(cache: &Path, used: &[PathBuf], now: std::time::SystemTime) {
    for path in used {
        let _ = fs::File::options()
            .append(true)
            .open(path)
            .and_then(|f| f.set_modified(now));
    }
    let age = |path: &Path| {
        let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
        now.duration_since(modified).ok()
    };
    let folders = [
        cache.join("blobs"),
        cache.join("wheelhouse"),
        cache.join("built"),
        cache.join("python/built"),
    ];
    for entry in folders
        .iter()
        .filter_map(|f| fs::read_dir(f).ok())
        .flatten()
        .flatten()
    {
        let path = entry.path();
        let partial = path.extension().is_some_and(|e| e == "partial");
        // A wheelhouse is as old as its `.complete` mark.
        let marked = if path.is_dir() && !partial {
            path.join(".complete")
        } else {
            path.clone()
        };
        let limit = if partial {
            std::time::Duration::from_secs(86_400)
        } else {
            KEPT_UNUSED
        };
        if used.contains(&marked) || age(&marked).is_none_or(|a| a <= limit) {
            continue;
        }
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// The item that puts sitec's build of a Python on a host
/// (`plan::python`).
fn python_item(built: &super::python::Built) -> Item {
    let kind = Kind::Python {
        path: super::python::prefix(&built.python),
        python: built.python.clone(),
        version: built.version.clone(),
        packages: built.packages.clone(),
    };
    let blob = Some(built.blob.clone());
    Item {
        id: format!("{}:{}", kind.word(), kind.key()),
        digest: item_digest(&kind, (&None, &blob), None),
        kind,
        requires: Vec::new(),
        notifies: Vec::new(),
        content: None,
        blob,
        pinned: None,
        venv_digest: None,
    }
}

/// `item`'s wire form: its content and blob made. `built`: the Python
/// sitec builds for a virtualenv, whose version is the one it runs.
fn item(
    r: &crate::resources::Resource,
    base: &Path,
    blobs: &mut BlobMaker,
    wheels: &Wheels<'_>,
    built: Option<&super::python::Built>,
    say: &dyn Fn(&str),
) -> Result<Item, String> {
    let (content, blob) = match &r.kind {
        Kind::File {
            content,
            absent: false,
            ..
        } => (Some(content.clone()), None),
        Kind::Tree { source, .. } => {
            let (files, digest) = blobs.tree(&base.join(source))?;
            (Some(files), Some(digest))
        }
        Kind::Virtualenv {
            requirements,
            python,
            packages,
            build_packages,
            ..
        } => {
            let tree = built.map(|b| blob_file(&b.blob));
            let builds = super::wheelhouse::Builds {
                platform: &wheels.platform,
                host: &wheels.builder,
                packages: build_packages,
                python_tree: tree.as_deref(),
            };
            let (text, wheels) = blobs
                .wheelhouse(base, (requirements, packages), python, &builds, say)
                .map_err(|e| format!("{}: {e}", r.origin))?;
            (Some(text), Some(wheels))
        }
        _ => (None, None),
    };
    let interpreter = match (&r.kind, built) {
        (Kind::Virtualenv { .. }, Some(built)) => Some(built.version.as_str()),
        (Kind::Virtualenv { python, .. }, None) => wheels.platform.python(python),
        _ => None,
    };
    let digest = item_digest(&r.kind, (&content, &blob), interpreter);
    Ok(Item {
        id: r.id.clone(),
        kind: r.kind.clone(),
        requires: r.requires.clone(),
        notifies: r.notifies.clone(),
        content,
        blob,
        pinned: None,
        venv_digest: None,
        digest,
    })
}

/// An item's digest: what it is, its content and blob, and for a
/// virtualenv the whole version of the host's interpreter that builds it
/// (`wheelhouse::Platform::python`). The digest names a virtualenv's
/// folder and is part of every release that runs it (`link_venvs`), so an
/// interpreter upgraded in place (a patch release, another build) makes a
/// new virtualenv, built beside the live one at the next apply, and hosts
/// with the same requirements and the same interpreter share one. Unknown
/// (the host could not be asked): the digest of the rest alone.
fn item_digest(
    kind: &Kind,
    (content, blob): (&Option<String>, &Option<String>),
    interpreter: Option<&str>,
) -> String {
    let mut identity = serde_json::to_string(&(kind, content, blob)).unwrap_or_default();
    if let Some(version) = interpreter {
        identity.push_str("\npython ");
        identity.push_str(version);
    }
    sha256_hex(identity.as_bytes())
}

/// Gives each tree whose `venv` names a virtualenv of the host that
/// virtualenv's digest: its new releases run it, and it is part of what a
/// release is (`Item::release`), so new requirements make a new release
/// and a code change alone reuses the virtualenv.
fn link_venvs(items: &mut [Item]) -> Result<(), String> {
    let venvs: BTreeMap<String, String> = (items.iter())
        .filter_map(|i| match &i.kind {
            Kind::Virtualenv { path, .. } => Some((path.clone(), i.digest.clone())),
            _ => None,
        })
        .collect();
    for item in items.iter_mut() {
        let Kind::Tree {
            venv: Some(venv), ..
        } = &item.kind
        else {
            continue;
        };
        let digest = venvs.get(venv).ok_or_else(|| {
            format!(
                "{}: its `venv` {venv} is no virtualenv of this host; declare `virtualenv \"{venv}\"` beside it, or drop `venv`",
                item.id
            )
        })?;
        item.venv_digest = Some(digest.clone());
        item.digest = sha256_hex(format!("{}\n{digest}", item.digest).as_bytes());
    }
    Ok(())
}

/// Applies a rollback's pin to an app's release: while the app's source is
/// the one rolled back from, the pinned release stays live (no blob is
/// sent). Returns what plan tells the operator about the pin.
fn pinned(item: &mut Item, pins: &[crate::overrides::Pin], spec: &Path) -> Option<String> {
    let Kind::Tree { path, .. } = &item.kind else {
        return None;
    };
    let pin = pins
        .iter()
        .find(|p| crate::context::release_dir(&p.app) == *path)?;
    let file = crate::overrides::path_for(spec);
    // The release the spec makes: its source and its virtualenv.
    let source = item.release().unwrap_or_default();
    if !source.starts_with(&pin.from) {
        return Some(format!(
            "app {}: its source changed since `sitec rollback` pinned release {}; this deploys the source (remove [{}.release] from {} once it is out)",
            pin.app,
            pin.pinned,
            pin.app,
            file.display()
        ));
    }
    item.pinned = Some(pin.pinned.clone());
    item.blob = None;
    Some(format!(
        "app {}: release {} is pinned by `sitec rollback` ([{}.release] in {}) while its source is still {}",
        pin.app,
        pin.pinned,
        pin.app,
        file.display(),
        pin.from
    ))
}

/// Makes each blob once per run.
#[derive(Default)]
struct BlobMaker {
    /// By source folder: (the release's file list, blob digest).
    trees: BTreeMap<PathBuf, (String, String)>,
    /// By Python and requirements file: (what the host installs, blob digest).
    wheelhouses: BTreeMap<String, (String, String)>,
    /// By Python and platform: sitec's build of that Python.
    pythons: BTreeMap<String, super::python::Built>,
    /// The cache entries this plan uses (blobs, wheelhouses' `.complete`).
    used: Vec<PathBuf>,
}

impl BlobMaker {
    /// Python `python` built for `platform` (`plan::python`): from the
    /// cache, else built on the build host when its platform is the same,
    /// else on the host itself.
    fn python(
        &mut self,
        python: &str,
        platform: &super::wheelhouse::Platform,
        (runner, builder, host): (
            &dyn super::build::Runner,
            &HostDesired,
            &crate::compile::HostState,
        ),
        say: &dyn Fn(&str),
    ) -> Result<super::python::Built, String> {
        let key = format!(
            "{python}\n{}\n{}\n{}",
            platform.os, platform.machine, platform.glibc_minor
        );
        if let Some(done) = self.pythons.get(&key) {
            return Ok(done.clone());
        }
        let cache = cache_dir();
        let source = super::python::source(python, &cache, say)?;
        let same = |p: &super::wheelhouse::Platform| {
            (&p.os, &p.machine, p.glibc_minor)
                == (&platform.os, &platform.machine, platform.glibc_minor)
        };
        let itself = reached(host);
        let on = if builder.name == host.name || !runner.platform(builder).is_ok_and(|p| same(&p)) {
            &itself
        } else {
            builder
        };
        let built = super::python::built(
            python,
            &source,
            platform,
            &cache,
            &super::build::On { runner, host: on },
            say,
        )?;
        self.used.push(blob_file(&built.blob));
        self.pythons.insert(key, built.clone());
        Ok(built)
    }

    /// The release of the source folder `dir` (`release`), packed: its
    /// file list and the blob's digest.
    fn tree(&mut self, dir: &Path) -> Result<(String, String), String> {
        if let Some(done) = self.trees.get(dir) {
            return Ok(done.clone());
        }
        let entries = super::release::entries(dir)?;
        let digest = store(&super::release::tar(dir, &entries)?)?;
        self.used.push(blob_file(&digest));
        let done = (super::release::file_list(&entries), digest);
        self.trees.insert(dir.to_path_buf(), done.clone());
        Ok(done)
    }

    /// The app's wheelhouse (`wheelhouse::build`), packed: the requirements
    /// the host installs and the blob's digest. `requirements` is the
    /// file's path from the spec's folder (`{app.requirements}`).
    fn wheelhouse(
        &mut self,
        base: &Path,
        (requirements, packages): (&str, &[String]),
        python: &str,
        builds: &super::wheelhouse::Builds<'_>,
        say: &dyn Fn(&str),
    ) -> Result<(String, String), String> {
        let key = format!(
            "{python}\n{requirements}\n{}\n{}",
            packages.join(" "),
            builds.packages.join(" ")
        );
        if let Some(done) = self.wheelhouses.get(&key) {
            return Ok(done.clone());
        }
        let built = super::wheelhouse::build(
            base,
            requirements,
            packages,
            python,
            &cache_dir(),
            builds,
            say,
        )?;
        let digest = store(&super::release::tar(&built.dir, &built.wheels)?)?;
        self.used.push(blob_file(&digest));
        self.used.push(built.dir.join(".complete"));
        let done = (built.host_requirements, digest);
        self.wheelhouses.insert(key, done.clone());
        Ok(done)
    }
}

/// Puts `bytes` in the blob cache; returns their digest.
pub(super) fn store(bytes: &[u8]) -> Result<String, String> {
    let digest = sha256_hex(bytes);
    let path = blob_file(&digest);
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // A temporary name of this write's own: another sitec run may be
        // storing the same blob at the same moment.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        std::io::Write::write_all(&mut tmp, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tmp.persist(&path)
            .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtualenv is its requirements and its host's interpreter: the
    /// same on two hosts, another after a patch upgrade or a rebuild.
    #[test]
    fn a_virtualenv_is_its_hosts_interpreter_too() {
        let venv = Kind::Virtualenv {
            path: "/srv/venvs/blog".into(),
            python: "3.11".into(),
            requirements: "requirements.txt".into(),
            packages: Vec::new(),
            build_packages: Vec::new(),
            owner: "app-blog".into(),
        };
        let parts = (
            &Some("django==5.2\n".to_string()),
            &Some("wheels".to_string()),
        );
        let digest = |version: Option<&str>| item_digest(&venv, parts, version);
        let debian = "3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]";
        assert_eq!(digest(Some(debian)), digest(Some(debian)));
        for other in [
            "3.11.9 (main, Apr 10 2024, 13:16:36) [GCC 12.2.0]",
            "3.11.2 (main, Jun  1 2023, 09:00:00) [GCC 12.2.0]",
        ] {
            assert_ne!(digest(Some(debian)), digest(Some(other)), "{other}");
        }
        // Not asked: what it was before the interpreter counted.
        let before = sha256_hex(
            serde_json::to_string(&(&venv, parts.0, parts.1))
                .unwrap_or_default()
                .as_bytes(),
        );
        assert_eq!(digest(None), before);
    }

    #[test]
    fn the_cache_keeps_what_plans_use_and_prunes_the_rest() -> Result<(), String> {
        let cache = tempfile::tempdir().map_err(|e| e.to_string())?;
        let io = |e: std::io::Error| e.to_string();
        let blobs = cache.path().join("blobs");
        let houses = cache.path().join("wheelhouse");
        for dir in [
            &blobs,
            &houses.join("old"),
            &houses.join("new"),
            &houses.join("cut.partial"),
        ] {
            fs::create_dir_all(dir).map_err(io)?;
        }
        for file in [
            blobs.join("used.tar"),
            blobs.join("stale.tar"),
            houses.join("old/.complete"),
            houses.join("new/.complete"),
        ] {
            fs::write(file, "").map_err(io)?;
        }
        // A month from now: everything is old, but what this plan uses.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 86_400);
        prune(
            cache.path(),
            &[blobs.join("used.tar"), houses.join("new/.complete")],
            later,
        );
        let left = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(left(&blobs), ["used.tar"]);
        assert_eq!(left(&houses), ["new"]);
        Ok(())
    }
}

//! Wheels built from a source distribution, for a package that publishes
//! no wheel the hosts can use (uWSGI, psycopg2): built on a host of the
//! fleet, never on the operator's machine and never as root.
//!
//! The operator's machine fetches the sdist and the wheels its build needs
//! (`build-system.requires` of its `pyproject.toml`, setuptools' defaults
//! without one, for the hosts' Python) and sends them to the build host
//! (a host with the `build` role, else the app's runner) in one tar on
//! stdin. There root installs the build packages (a compiler, the Python
//! headers and the app's `build_packages`, with apt) and starts the build
//! as a transient systemd unit: a user made for the unit alone
//! (`DynamicUser=yes`), a `/tmp` of its own, no network, no way to gain
//! privileges. pip builds the wheel there from the files it was sent
//! (`--no-index`), and the unit writes it as a tar to stdout. Root opens no
//! file the build wrote, and when the unit ends systemd removes its user
//! and its `/tmp`: nothing of a build, failed or not, stays on the host.
//! The wheels come back into the operator's cache (`built/`), keyed on the
//! sdist's bytes, the Python and the build packages, so the next plan
//! builds nothing; the wheelhouse then takes them like downloaded ones, and
//! hosts still install wheels only.
//!
//! Never runs a package's code anywhere but in that unit.

use super::desired::HostDesired;
use super::wheelhouse::Platform;
use crate::resources::sha256_hex;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Raised when the way a build runs changes, so cached builds are redone.
const BUILD_VERSION: &str = "1";

/// The longest a build may run on the build host.
const BUILD_SECONDS: u32 = 1800;

/// What a build's script left: its exit status, stdout and stderr.
pub type Output = (Option<i32>, Vec<u8>, Vec<u8>);

/// Where builds run: a host of the fleet, reached as root.
pub trait Host {
    /// The host's name, for messages.
    fn name(&self) -> &str;
    /// Runs the shell `script` as root with `input` on stdin: the exit
    /// status, stdout and stderr.
    fn run(&self, script: &str, input: &[u8]) -> Result<Output, String>;
}

/// No host to build on (`sitec` used as a library, a test): a package
/// without a wheel stays an error.
pub struct Nowhere;

impl Host for Nowhere {
    fn name(&self) -> &str {
        "no build host"
    }

    fn run(&self, _: &str, _: &[u8]) -> Result<Output, String> {
        Err("there is no host to build it on".into())
    }
}

/// Runs a build's script, and asks a host its platform, on a host of the
/// fleet.
pub trait Runner {
    /// Runs `script` as root on `host` with `input` on stdin.
    fn run(&self, host: &HostDesired, script: &str, input: &[u8]) -> Result<Output, String>;

    /// The platform `host`'s wheels must fit, as it says.
    fn platform(&self, host: &HostDesired) -> Result<Platform, String> {
        let (status, stdout, stderr) = self.run(host, Platform::SCRIPT, &[])?;
        if status != Some(0) {
            return Err(format!(
                "`{}` failed there: {}",
                Platform::SCRIPT,
                String::from_utf8_lossy(&stderr).trim()
            ));
        }
        Platform::parse(&String::from_utf8_lossy(&stdout))
    }
}

impl Runner for Nowhere {
    fn run(&self, _: &HostDesired, _: &str, _: &[u8]) -> Result<Output, String> {
        Err("there is no host to build it on".into())
    }

    /// No host says otherwise: Debian 12's.
    fn platform(&self, _: &HostDesired) -> Result<Platform, String> {
        Ok(Platform::debian_12())
    }
}

/// One host of the fleet as a [`Host`], through a [`Runner`].
pub struct On<'a> {
    pub runner: &'a dyn Runner,
    pub host: &'a HostDesired,
}

impl Host for On<'_> {
    fn name(&self) -> &str {
        &self.host.name
    }

    fn run(&self, script: &str, input: &[u8]) -> Result<Output, String> {
        self.runner.run(self.host, script, input)
    }
}

/// Build hosts reached over SSH as `plan` reaches every host (the spec's
/// providers), each connection opened on its first build and closed when
/// this is dropped. Plans that build nothing connect to nothing here.
pub struct Ssh {
    spec: PathBuf,
    kex: crate::transport::Kex,
    runtime: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>>,
    open: std::sync::Mutex<Vec<(String, super::remote::Connections)>>,
}

impl Ssh {
    #[must_use]
    pub fn new(spec: &Path, kex: crate::transport::Kex) -> Self {
        Self {
            spec: spec.to_path_buf(),
            kex,
            runtime: std::sync::OnceLock::new(),
            open: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, String> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the async runtime: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Runner for Ssh {
    fn run(&self, host: &HostDesired, script: &str, input: &[u8]) -> Result<Output, String> {
        let runtime = self.runtime()?;
        let mut open = self
            .open
            .lock()
            .map_err(|_| "a build failed before".to_string())?;
        if !open.iter().any(|(name, _)| *name == host.name) {
            let (connections, unreachable) = runtime.block_on(super::remote::Connections::open(
                std::slice::from_ref(host),
                &self.spec,
                self.kex,
            ))?;
            if let Some((_, error)) = unreachable.first() {
                return Err(format!("cannot reach {}: {error}", host.name));
            }
            open.push((host.name.clone(), connections));
        }
        let (_, connections) = (open.iter())
            .find(|(name, _)| *name == host.name)
            .ok_or("not connected")?;
        let out = runtime.block_on(connections.run(&host.name, script, input))?;
        Ok((out.status, out.stdout, out.stderr))
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let open = std::mem::take(self.open.get_mut().unwrap_or_else(|e| e.into_inner()));
        if let Some(Ok(runtime)) = self.runtime.get() {
            for (_, connections) in open {
                runtime.block_on(connections.close());
            }
        }
    }
}

/// What one build needs besides the sdist.
pub struct Job<'a> {
    /// The hosts' Python (`3.11`).
    pub python: &'a str,
    /// Debian packages the build needs beyond [`base_packages`]: the
    /// app's `build_packages`.
    pub packages: &'a [String],
    /// A folder of wheels for the build's own requirements.
    pub deps: &'a Path,
    /// The hosts' Python when sitec builds it (`plan::python`): its blob,
    /// a tar of the installed tree, sent with the sdist and unpacked in the
    /// build's own `/tmp` (the build host may not have it yet, and Debian
    /// has no `-dev` package of it).
    pub python_tree: Option<&'a Path>,
}

/// What every build installs: a C compiler and make, the Python's headers
/// and its venv module.
#[must_use]
pub fn base_packages(python: &str) -> Vec<String> {
    let python = if python.contains('.') {
        format!("python{python}")
    } else {
        "python3".into()
    };
    vec![
        "build-essential".into(),
        format!("{python}-dev"),
        format!("{python}-venv"),
    ]
}

/// The cache folder of the wheels built from `sdist` for `job`, built on
/// `host` unless the cache has them. `say` reports the build.
pub fn wheels(
    sdist: &Path,
    job: &Job<'_>,
    cache: &Path,
    host: &dyn Host,
    say: &dyn Fn(&str),
) -> Result<PathBuf, String> {
    // A role's virtualenv may pass any text; the script names them to apt.
    if let Some(p) = (job.packages.iter()).find_map(|p| crate::names::package_problem(p)) {
        return Err(p.at("build_packages"));
    }
    let bytes = fs::read(sdist).map_err(|e| format!("cannot read {}: {e}", sdist.display()))?;
    // A sitec-built Python's blob is named by its digest.
    let tree = job.python_tree.map(file_name).unwrap_or_default();
    let key = sha256_hex(
        format!(
            "{BUILD_VERSION}\n{}\n{}\n{}\n{tree}",
            job.python,
            job.packages.join(" "),
            sha256_hex(&bytes)
        )
        .as_bytes(),
    );
    let dir = cache.join("built").join(&key);
    // Two sitec runs sharing a cache build one sdist once: the second
    // waits here, then finds the first's wheels complete.
    let _building = super::wheelhouse::lock_beside(&dir)?;
    let complete = dir.join(".complete");
    if complete.exists() {
        // Used now: the cache's pruning goes by this mark's age.
        let _ = fs::File::options()
            .append(true)
            .open(&complete)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(dir);
    }
    let name = file_name(sdist);
    say(&format!(
        "building {name} from source on {} for Python {} (it has no wheel for the hosts)",
        host.name(),
        job.python
    ));
    let input = inputs(sdist, job.deps, job.python_tree)?;
    let (status, stdout, stderr) = host.run(&script(job), &input).map_err(|e| {
        format!(
            "{name} has no wheel for the hosts and cannot be built on {}: {e}",
            host.name()
        )
    })?;
    if status != Some(0) {
        return Err(format!(
            "building {name} from source on {} failed (nothing of the build is left there); pip said:\n{}",
            host.name(),
            tail(&String::from_utf8_lossy(&stderr), 60)
        ));
    }
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let unpacked = unpack_wheels(&stdout, &partial);
    if let Err(e) = unpacked {
        let _ = fs::remove_dir_all(&partial);
        return Err(format!(
            "building {name} on {}: {e}; its output was:\n{}",
            host.name(),
            tail(&String::from_utf8_lossy(&stderr), 20)
        ));
    }
    fs::write(partial.join(".complete"), "").map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)
        .map_err(|e| format!("cannot move the built wheels into {}: {e}", dir.display()))?;
    Ok(dir)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The last `lines` lines of `text` (a compiler's output runs long).
pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    let cut = if start > 0 { "...\n" } else { "" };
    format!("{cut}{}", all[start..].join("\n"))
}

/// The build's input: `sdist/NAME`, `deps/*.whl` and sitec's build of the
/// Python as `python.tar` (if any), as a tar.
fn inputs(sdist: &Path, deps: &Path, python_tree: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    let io = |e: std::io::Error| format!("cannot pack the build's input: {e}");
    tar.append_path_with_name(sdist, Path::new("sdist").join(file_name(sdist)))
        .map_err(io)?;
    if let Some(tree) = python_tree {
        tar.append_path_with_name(tree, "python.tar").map_err(io)?;
    }
    let mut wheels: Vec<PathBuf> = fs::read_dir(deps)
        .map_err(|e| format!("cannot read {}: {e}", deps.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    for wheel in wheels {
        tar.append_path_with_name(&wheel, Path::new("deps").join(file_name(&wheel)))
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// The largest build output taken back (a wheel with compiled code is a
/// few MB; numpy's is 20).
const MAX_OUTPUT: u64 = 512 << 20;

/// Unpacks the build's tar into `dir`: wheels only (`NAME.whl` at the top,
/// regular files), at least one.
fn unpack_wheels(tar_bytes: &[u8], dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut archive = tar::Archive::new(tar_bytes);
    let mut count = 0;
    let mut total = 0;
    let entries = archive
        .entries()
        .map_err(|e| format!("the build host sent no tar of wheels ({e})"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the build's tar is damaged ({e})"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let name = path.strip_prefix(".").unwrap_or(&path).to_path_buf();
        if entry.header().entry_type().is_dir() && name.as_os_str().is_empty() {
            continue;
        }
        let plain = name.components().count() == 1
            && name.extension().is_some_and(|e| e == "whl")
            && entry.header().entry_type().is_file();
        if !plain {
            return Err(format!(
                "the build sent {}, which is not a wheel",
                path.display()
            ));
        }
        total += entry.size();
        if total > MAX_OUTPUT {
            return Err(format!("the build sent more than {MAX_OUTPUT} bytes"));
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("the build's tar is damaged ({e})"))?;
        let target = dir.join(&name);
        fs::write(&target, bytes).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        count += 1;
    }
    if count == 0 {
        return Err("the build sent no wheel".into());
    }
    Ok(())
}

/// The script the build host runs as root: installs what is missing of the
/// build packages, then runs the build as a throwaway user (module doc).
fn script(job: &Job<'_>) -> String {
    let (mut packages, python, unpack) = match job.python_tree {
        // Its headers are in its tree: sysconfig finds them beside the
        // interpreter wherever the tree is.
        Some(_) => (
            vec!["build-essential".to_string()],
            format!("/tmp/python/bin/python{}", job.python),
            "mkdir /tmp/python; tar -x -C /tmp/python -f /tmp/in/python.tar; ",
        ),
        None if job.python.contains('.') => (
            base_packages(job.python),
            format!("python{}", job.python),
            "",
        ),
        None => (base_packages(job.python), "python3".into(), ""),
    };
    packages.extend(job.packages.iter().cloned());
    // As the unit's user, in its own /tmp: the input from stdin, pip's
    // words to stderr, the wheels as a tar to stdout. `--use-pep517`: an
    // sdist with a setup.py only (psycopg2) is built in an isolated
    // environment from the setuptools and wheel it was sent, not with the
    // venv's own setuptools, which has no `bdist_wheel`.
    let build = format!(
        "set -eu; cd /tmp; mkdir in out; tar -x -C in; {unpack}\
         {python} -m venv /tmp/venv >&2; \
         /tmp/venv/bin/pip wheel --disable-pip-version-check --no-cache-dir --no-input \
         --no-index --find-links /tmp/in/deps --use-pep517 --no-deps --wheel-dir /tmp/out /tmp/in/sdist/* >&2; \
         tar -c -C /tmp/out ."
    );
    in_throwaway_unit(&packages, BUILD_SECONDS, &build)
}

/// The script a build host runs as root for a build: installs what is
/// missing of `packages` with apt, then runs the shell script `build` as a
/// user made for it alone (`DynamicUser=yes`), in a `/tmp` of its own,
/// without network or a way to gain privileges, for `seconds` at most,
/// its stdin and stdout the script's. `build` holds no `'`; its `$` are
/// passed to systemd as `$$`, its literal dollar (systemd expands
/// `${NAME}` and a lone `$NAME` in a unit's command line itself).
pub(super) fn in_throwaway_unit(packages: &[String], seconds: u32, build: &str) -> String {
    let build = build.replace('$', "$$");
    format!(
        "set -eu\n\
         missing=\n\
         for p in {packages}; do\n\
         \x20 dpkg-query -W -f='${{Status}}' \"$p\" 2>/dev/null | grep -q 'install ok installed' || missing=\"$missing $p\"\n\
         done\n\
         if [ -n \"$missing\" ]; then\n\
         \x20 echo \"installing the build packages:$missing\" >&2\n\
         \x20 DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2 \\\n\
         \x20   || {{ echo \"cannot install$missing on this build host\" >&2; exit 3; }}\n\
         fi\n\
         exec systemd-run --quiet --wait --pipe --collect --service-type=exec \\\n\
         \x20 --property=DynamicUser=yes --property=PrivateTmp=yes --property=PrivateNetwork=yes \\\n\
         \x20 --property=ProtectHome=yes --property=NoNewPrivileges=yes \\\n\
         \x20 --property=RuntimeMaxSec={seconds} --setenv=HOME=/tmp \\\n\
         \x20 -- /bin/sh -c '{build}'\n",
        packages = packages.join(" "),
    )
}

/// The requirements a build needs, from the sdist's `pyproject.toml`
/// (`build-system.requires`); setuptools' without one, as pip assumes.
/// `wheel` always: setuptools asks for it while building.
#[must_use]
pub fn build_requires(sdist: &Path) -> Vec<String> {
    let mut out = pyproject_requires(sdist).unwrap_or_else(|| vec!["setuptools>=40.8.0".into()]);
    if !out
        .iter()
        .any(|r| crate::requirements::normalize_name(name_of(r)) == "wheel")
    {
        out.push("wheel".into());
    }
    out
}

/// The project name a requirement (`setuptools>=61`) starts with.
fn name_of(requirement: &str) -> &str {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(requirement.len());
    &requirement[..end]
}

/// `build-system.requires` of a `.tar.gz` sdist's top `pyproject.toml`.
fn pyproject_requires(sdist: &Path) -> Option<Vec<String>> {
    if !file_name(sdist).ends_with(".tar.gz") {
        return None;
    }
    let file = fs::File::open(sdist).ok()?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(path) = entry.path().map(std::borrow::Cow::into_owned) else {
            continue;
        };
        let parts: Vec<_> = path.components().collect();
        if parts.len() != 2 || path.file_name().is_none_or(|n| n != "pyproject.toml") {
            continue;
        }
        let mut text = String::new();
        entry.take(1 << 20).read_to_string(&mut text).ok()?;
        let doc: toml::Table = text.parse().ok()?;
        let requires = doc.get("build-system")?.get("requires")?.as_array()?;
        return Some(
            requires
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdist_with(dir: &Path, pyproject: Option<&str>) -> PathBuf {
        let path = dir.join("demo-1.0.tar.gz");
        let file = fs::File::create(&path).expect("a file");
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, text: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, text.as_bytes())
                .expect("an entry");
        };
        add(
            "demo-1.0/setup.py",
            "from setuptools import setup\nsetup()\n",
        );
        if let Some(text) = pyproject {
            add("demo-1.0/pyproject.toml", text);
        }
        tar.into_inner()
            .and_then(flate2::write::GzEncoder::finish)
            .expect("written");
        path
    }

    #[test]
    fn a_builds_requirements_come_from_its_pyproject() {
        let dir = tempfile::tempdir().expect("a folder");
        let plain = sdist_with(dir.path(), None);
        assert_eq!(build_requires(&plain), ["setuptools>=40.8.0", "wheel"]);
        let hatch = sdist_with(
            dir.path(),
            Some("[build-system]\nrequires = [\"hatchling>=1.18\", \"Wheel\"]\nbuild-backend = \"hatchling.build\"\n"),
        );
        assert_eq!(build_requires(&hatch), ["hatchling>=1.18", "Wheel"]);
    }

    #[test]
    fn the_build_runs_as_a_throwaway_user_without_network() {
        let deps = tempfile::tempdir().expect("a folder");
        let packages = ["libpq-dev".to_string()];
        let text = script(&Job {
            python: "3.11",
            packages: &packages,
            deps: deps.path(),
            python_tree: None,
        });
        for needed in [
            "for p in build-essential python3.11-dev python3.11-venv libpq-dev; do",
            "--property=DynamicUser=yes",
            "--property=PrivateNetwork=yes",
            "--property=PrivateTmp=yes",
            "--no-index --find-links /tmp/in/deps",
            "tar -c -C /tmp/out .'",
        ] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
        // The script is valid sh.
        let checked = std::process::Command::new("sh")
            .args(["-n", "-c", &text])
            .status()
            .expect("sh runs");
        assert!(checked.success(), "{text}");
    }

    /// A build host that answers every build with `answer` and counts them.
    struct Answers {
        answer: Output,
        runs: std::cell::Cell<usize>,
    }

    impl Host for Answers {
        fn name(&self) -> &str {
            "bld1"
        }

        fn run(&self, _: &str, _: &[u8]) -> Result<Output, String> {
            self.runs.set(self.runs.get() + 1);
            Ok(self.answer.clone())
        }
    }

    impl Answers {
        fn new(answer: Output) -> Self {
            Self {
                answer,
                runs: std::cell::Cell::new(0),
            }
        }
    }

    /// A folder holding an sdist, an empty `deps` and the cache's place.
    fn a_build() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("a folder");
        let sdist = sdist_with(dir.path(), None);
        let deps = dir.path().join("deps");
        fs::create_dir_all(&deps).expect("a folder");
        let cache = dir.path().join("cache");
        (dir, sdist, deps, cache)
    }

    fn one_wheel(name: &str) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, &b"PK"[..])
            .expect("an entry");
        tar.into_inner().expect("packed")
    }

    #[test]
    fn a_failed_build_names_the_package_and_ends_with_the_logs_last_lines() {
        let (_dir, sdist, deps, cache) = a_build();
        let log: String = (1..=100).map(|n| format!("compiler line {n}\n")).collect();
        let host = Answers::new((
            Some(1),
            Vec::new(),
            format!("{log}Error: pg_config executable not found.\n").into_bytes(),
        ));
        let job = Job {
            python: "3.11",
            packages: &[],
            deps: &deps,
            python_tree: None,
        };
        let error = wheels(&sdist, &job, &cache, &host, &|_| {}).expect_err("the build failed");
        assert!(
            error.contains("demo-1.0.tar.gz") && error.contains("bld1"),
            "{error}"
        );
        assert!(
            error.ends_with("Error: pg_config executable not found."),
            "{error}"
        );
        assert!(
            !error.contains("compiler line 1\n"),
            "only the last lines: {error}"
        );
        // Nothing of it in the cache but the lock: the next plan tries again.
        let left: Vec<_> = fs::read_dir(cache.join("built"))
            .expect("the cache")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_none_or(|e| e != "lock"))
            .collect();
        assert_eq!(left, Vec::<PathBuf>::new());
    }

    /// A fleet whose every host answers every script with `answer`.
    struct Fleet(Output);

    impl Runner for Fleet {
        fn run(&self, _: &HostDesired, _: &str, _: &[u8]) -> Result<Output, String> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn a_host_says_its_platform() {
        let host: HostDesired = serde_json::from_value(serde_json::json!({
            "name": "run1", "address": "203.0.113.10", "roles": [],
            "reach": {"provider": "ssh", "local": false, "user": "root", "port": 22,
                      "known_hosts": null, "identity": null},
            "desired": {"host": "run1", "generation": "", "spec": "", "items": [], "expect": null},
        }))
        .expect("a host");
        let arm = Fleet((Some(0), b"glibc 2.31\naarch64\n".to_vec(), Vec::new()));
        let platform = arm.platform(&host).expect("a platform");
        assert_eq!(platform.tag(), "manylinux_2_31_aarch64");
        let musl = Fleet((
            Some(1),
            Vec::new(),
            b"getconf: GNU_LIBC_VERSION: unknown variable\n".to_vec(),
        ));
        let error = musl.platform(&host).expect_err("no glibc");
        assert!(error.contains("unknown variable"), "{error}");
        assert_eq!(Nowhere.platform(&host), Ok(Platform::debian_12()));
    }

    #[test]
    fn a_build_package_apt_cannot_take_is_refused_before_the_host_runs_anything() {
        let (_dir, sdist, deps, cache) = a_build();
        let host = Answers::new((Some(0), Vec::new(), Vec::new()));
        let packages = ["libpq-dev; reboot".to_string()];
        let job = Job {
            python: "3.11",
            packages: &packages,
            deps: &deps,
            python_tree: None,
        };
        let error = wheels(&sdist, &job, &cache, &host, &|_| {}).expect_err("refused");
        assert!(
            error.starts_with("build_packages: `libpq-dev; reboot`"),
            "{error}"
        );
        assert_eq!(host.runs.get(), 0);
    }

    #[test]
    fn a_built_wheel_is_kept_and_not_built_again() {
        let (_dir, sdist, deps, cache) = a_build();
        let host = Answers::new((
            Some(0),
            one_wheel("./demo-1.0-cp311-cp311-linux_x86_64.whl"),
            Vec::new(),
        ));
        let job = Job {
            python: "3.11",
            packages: &[],
            deps: &deps,
            python_tree: None,
        };
        let first = wheels(&sdist, &job, &cache, &host, &|_| {}).expect("built");
        assert!(first
            .join("demo-1.0-cp311-cp311-linux_x86_64.whl")
            .is_file());
        let again = wheels(&sdist, &job, &cache, &host, &|_| {}).expect("cached");
        assert_eq!((first, host.runs.get()), (again, 1));
        // Another Python is another build.
        let job = Job {
            python: "3.12",
            ..job
        };
        wheels(&sdist, &job, &cache, &host, &|_| {}).expect("built");
        assert_eq!(host.runs.get(), 2);
    }

    /// A build host many threads may share, whose builds take a moment.
    struct Slow {
        runs: std::sync::atomic::AtomicUsize,
    }

    impl Host for Slow {
        fn name(&self) -> &str {
            "bld1"
        }

        fn run(&self, _: &str, _: &[u8]) -> Result<Output, String> {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Long enough for the other run to reach the cache meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let wheel = one_wheel("demo-1.0-cp311-cp311-linux_x86_64.whl");
            Ok((Some(0), wheel, Vec::new()))
        }
    }

    #[test]
    fn two_runs_sharing_a_cache_build_an_sdist_once() {
        let (_dir, sdist, deps, cache) = a_build();
        let host = Slow {
            runs: std::sync::atomic::AtomicUsize::new(0),
        };
        let start = std::sync::Barrier::new(2);
        let job = Job {
            python: "3.11",
            packages: &[],
            deps: &deps,
            python_tree: None,
        };
        let built: Vec<PathBuf> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        wheels(&sdist, &job, &cache, &host, &|_| {}).expect("built")
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().expect("a run")).collect()
        });
        assert_eq!(built[0], built[1]);
        assert!(built[0].join(".complete").is_file());
        assert_eq!(host.runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn only_wheels_come_back() {
        let dir = tempfile::tempdir().expect("a folder");
        let pack = one_wheel;
        unpack_wheels(
            &pack("./demo-1.0-cp311-cp311-linux_x86_64.whl"),
            &dir.path().join("a"),
        )
        .expect("a wheel is taken");
        assert!(dir
            .path()
            .join("a/demo-1.0-cp311-cp311-linux_x86_64.whl")
            .exists());
        for bad in ["sub/demo.whl", "setup.py"] {
            assert!(
                unpack_wheels(&pack(bad), &dir.path().join("b")).is_err(),
                "{bad}"
            );
        }
        assert!(unpack_wheels(b"", &dir.path().join("c")).is_err());
    }
}

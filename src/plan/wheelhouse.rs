//! An app's wheelhouse: every distribution its requirements need, built
//! once on the operator's machine into the cache, so hosts install with
//! `--no-index` and need no package index. The requirements are read as
//! pip reads them (`crate::requirements`: every included file, options,
//! hashes), and the app server sitec runs the app with ([`SERVER`]) is
//! added whether the project lists it or not, at sitec's version.
//!
//! Wheels only: a package with no wheel for the hosts (an sdist only) is
//! fetched as its source distribution and built into a wheel on a host of
//! the fleet (`build`), and the download is tried again with the built
//! wheels beside the index's, until pip finds a wheel for everything.
//!
//! A build goes to a folder of its own beside the cache entry and is
//! renamed into place only when complete; a failed one is removed, and its
//! error names the package pip stopped at. Touches no host but through
//! `build`.

use super::build;
use super::python::SITEC_PYTHONS;
use crate::requirements::{self, Requirements};
use crate::resources::sha256_hex;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The app server, pinned: the config sitec writes (`gunicorn.conf.py`)
/// uses what this version has (`control_socket_disable`, 25.1 and later).
/// A project that lists gunicorn gets this one instead of its own.
pub const SERVER: [&str; 1] = ["gunicorn==27.0.1"];

/// The names of [`SERVER`]'s projects, normalized.
fn server_names() -> Vec<String> {
    SERVER
        .iter()
        .map(|pin| requirements::normalize_name(pin.split("==").next().unwrap_or(pin)))
        .collect()
}

/// What a host gets for an app's virtualenv: the requirements it installs
/// (one a line: the project's, then the server's) and the wheelhouse
/// folder in the cache they install from.
pub struct Built {
    pub host_requirements: String,
    pub dir: PathBuf,
    /// The distributions in `dir`, sorted.
    pub wheels: Vec<super::release::Entry>,
}

/// What sitec installs beside the project's requirements: [`SERVER`]
/// always (in place of the project's own), and each of `packages` (the
/// database drivers its settings use) unless the project names it, or
/// another of its family (psycopg2 for psycopg).
fn sitecs_packages(read: &Requirements, packages: &[String]) -> Vec<String> {
    let named: Vec<&str> = read.requirements.iter().map(|r| r.name.as_str()).collect();
    let mut out: Vec<String> = SERVER.iter().map(|s| (*s).to_string()).collect();
    for package in packages {
        let name = package
            .split(['[', '=', '<', '>', '~', '!'])
            .next()
            .unwrap_or(package);
        let name = requirements::normalize_name(name);
        let family: &[&str] = match name.as_str() {
            "psycopg" => &["psycopg-binary", "psycopg-c", "psycopg2", "psycopg2-binary"],
            _ => &[],
        };
        if !named.contains(&name.as_str()) && !family.iter().any(|f| named.contains(f)) {
            out.push(package.clone());
        }
    }
    out
}

/// The requirements a host installs: the project's (without its own app
/// server), then `sitecs` ([`sitecs_packages`]).
fn host_requirements(read: &Requirements, sitecs: &[String]) -> String {
    let names = server_names();
    let without: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lines = read.for_host(&without);
    lines.extend(sitecs.iter().cloned());
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The hosts a wheelhouse is for: their platform, and where and with what
/// a package without a wheel is built (the build host, and the app's
/// `build_packages`, Debian packages its builds need).
pub struct Builds<'a> {
    pub platform: &'a Platform,
    pub host: &'a dyn build::Host,
    pub packages: &'a [String],
    /// The blob of sitec's build of the hosts' Python, if it builds one.
    pub python_tree: Option<&'a Path>,
}

/// Reads `requirements` (relative to `source`) and builds its wheelhouse
/// for Python `python` in `cache`, with `packages` unless the project names
/// them ([`sitecs_packages`]), unless the cache has it already. A package
/// without a wheel is built from source as `builds` says.
pub fn build(
    source: &Path,
    requirements: &str,
    packages: &[String],
    python: &str,
    cache: &Path,
    builds: &Builds<'_>,
    say: &dyn Fn(&str),
) -> Result<Built, String> {
    let (read, problems) = requirements::read(source, requirements);
    if let Some(problem) = problems.first() {
        return Err(format!(
            "{}: {}; {} (`sitec check` lists every such line)",
            problem.at, problem.message, problem.help
        ));
    }
    if read.files.is_empty() {
        return Err(format!(
            "cannot read the requirements {}; fix the app's `source`/`requirements`",
            source.join(requirements).display()
        ));
    }
    let names = server_names();
    let without: Vec<&str> = names.iter().map(String::as_str).collect();
    let constraints_name = Path::new("constraints.txt");
    let download = read.for_download(constraints_name, &without);
    let sitecs = sitecs_packages(&read, packages);
    let key = sha256_hex(
        format!(
            "{python}\n{}\n{download}\n{}\n{}\n{}",
            sitecs.join("\n"),
            read.constraints_file(),
            builds.packages.join(" "),
            builds.platform.tag()
        )
        .as_bytes(),
    );
    let dir = cache.join("wheelhouse").join(&key);
    // Two sitec runs sharing a cache (CI jobs, two terminals) build one
    // wheelhouse once: the second waits here, then finds it complete.
    let _building = lock_beside(&dir)?;
    if !dir.join(".complete").exists() {
        say(&format!(
            "building the wheelhouse for the hosts' Python {python} (pip download, from the package index) in {}",
            dir.display()
        ));
        let partial = dir.with_extension("partial");
        let result = build_into(
            &read,
            (&download, &sitecs),
            python,
            cache,
            &partial,
            builds,
            say,
        );
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&partial, &dir)
            .map_err(|e| format!("cannot move the wheelhouse into {}: {e}", dir.display()))?;
    }
    Ok(Built {
        host_requirements: host_requirements(&read, &sitecs),
        wheels: distributions(&dir)?,
        dir,
    })
}

/// An exclusive lock on `DIR.lock`, held until dropped.
pub(super) fn lock_beside(dir: &Path) -> Result<fs::File, String> {
    let path = dir.with_extension("lock");
    let failed = |e: &dyn std::fmt::Display| format!("cannot lock {}: {e}", path.display());
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| failed(&e))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| failed(&e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| failed(&e))?;
    // Its age is its last use: the cache's prune removes a lock only
    // after as long unused as a wheelhouse.
    let _ = file.set_modified(std::time::SystemTime::now());
    Ok(file)
}

/// The wheels in a built wheelhouse, sorted by name.
fn distributions(dir: &Path) -> Result<Vec<super::release::Entry>, String> {
    let mut out = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for found in listing.filter_map(Result::ok) {
        let name = PathBuf::from(found.file_name());
        let meta = found
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", found.path().display()))?;
        if meta.is_file() && name.extension().is_some_and(|e| e == "whl") {
            out.push(super::release::Entry {
                path: name,
                what: super::release::What::File {
                    executable: false,
                    size: meta.len(),
                },
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// What a host's wheels must fit: its C library (glibc) version and its
/// machine; and the Python interpreters its virtualenvs are built with. As
/// the host reports them ([`Platform::SCRIPT`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// glibc's minor version (36 for 2.36); manylinux goes by it.
    pub glibc_minor: u32,
    /// `uname -m`: `x86_64`, `aarch64`.
    pub machine: String,
    /// `/etc/os-release`'s `ID VERSION_ID` (`debian 12`): a Python sitec
    /// builds (`plan::python`) is built for it, against its libraries.
    pub os: String,
    /// The host said it (else it could not be asked, and this is Debian
    /// 12's guess): only then is a missing Python built for it.
    pub reported: bool,
    /// Each Python 3 the host runs by name (`python3`, `python3.11`), with
    /// its whole `sys.version` (`3.11.2 (main, Mar 13 2023, ...) [GCC
    /// 12.2.0]`): a patch upgrade or another build of the interpreter a
    /// virtualenv runs on makes it another virtualenv ([`Platform::python`]).
    pub pythons: Vec<(String, String)>,
}

impl Platform {
    /// What a host runs to say its platform: `glibc 2.36` and `x86_64`,
    /// then `os debian 12`, then a line `NAME VERSION` for each `python3`
    /// and `python3.N` in /usr/local/bin and /usr/bin, run by name as apply
    /// runs it (the first on `PATH`), and for each Python sitec built
    /// there (`/opt/sitec/python/3.N/bin/python3.N`, by its path).
    pub const SCRIPT: &str = r#"getconf GNU_LIBC_VERSION && uname -m && {
(. /etc/os-release && echo "os ${ID:-linux} ${VERSION_ID:-unknown}") || echo "os unknown"
for p in /usr/local/bin/python3* /usr/bin/python3* /opt/sitec/python/3.*/bin/python3.*; do
  n=${p##*/}
  case $n in python3|python3.[0-9]|python3.[0-9][0-9]) ;; *) continue ;; esac
  case $p in /opt/*) n=$p ;; esac
  case " $seen " in *" $n "*) continue ;; esac
  seen="$seen $n"
  v=$("$n" -c 'import sys; print(sys.version.replace(chr(10), " "))' 2>/dev/null) && echo "$n $v"
done
true
}"#;

    /// Debian 12 on x86-64: what a wheelhouse is built for when no host
    /// says otherwise (sitec as a library, a plan that cannot reach the
    /// host, which the plan then reports). Its interpreters are unknown.
    #[must_use]
    pub fn debian_12() -> Self {
        Self {
            glibc_minor: 36,
            machine: "x86_64".into(),
            os: "debian 12".into(),
            reported: false,
            pythons: Vec::new(),
        }
    }

    /// The platform from [`Platform::SCRIPT`]'s output.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim);
        let libc = lines.next().unwrap_or_default();
        let machine = lines.next().unwrap_or_default();
        let minor = (libc.strip_prefix("glibc 2."))
            .and_then(|v| v.split('.').next()?.parse().ok())
            .ok_or_else(|| {
                format!("its C library is `{libc}`, not glibc 2.x: PyPI's Linux wheels (manylinux) need glibc")
            })?;
        let machine_ok = !machine.is_empty()
            && machine
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !machine_ok {
            return Err(format!("`uname -m` said `{machine}`"));
        }
        let mut os = "unknown".to_string();
        let pythons = lines
            .filter_map(|line| {
                if let Some(said) = line.strip_prefix("os ") {
                    said.trim().clone_into(&mut os);
                    return None;
                }
                let (name, version) = line.split_once(' ')?;
                // One sitec built goes by its path (`converge::interpreter`).
                let file = match name.strip_prefix(SITEC_PYTHONS) {
                    Some(rest) => rest.rsplit('/').next()?,
                    None => name,
                };
                let minor = file.strip_prefix("python3")?;
                let named = minor.is_empty()
                    || (minor.strip_prefix('.'))
                        .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
                let version = version.trim();
                (named && version.starts_with("3."))
                    .then(|| (name.to_string(), version.to_string()))
            })
            .collect();
        Ok(Self {
            glibc_minor: minor,
            machine: machine.to_string(),
            os,
            reported: true,
            pythons,
        })
    }

    /// The whole version of the interpreter a virtualenv for the app's
    /// `python` (`3.11`, `3`) is built with on the host: the one apply
    /// picks (`converge::interpreter`). `None` when the host did not say
    /// (it could not be asked) or has none (apply then fails, naming it).
    #[must_use]
    pub fn python(&self, python: &str) -> Option<&str> {
        crate::host::interpreter_candidates(python)
            .iter()
            .find_map(|name| {
                let (_, version) = self.pythons.iter().find(|(n, _)| n == name)?;
                crate::host::is_version(python, version).then_some(version.as_str())
            })
    }

    /// Whether the host reported a Python `python` of its own (its OS's or
    /// one installed by hand), not one sitec built: else sitec builds and
    /// ships one (`plan::python`), for as long as the host has none.
    #[must_use]
    pub fn lacks(&self, python: &str) -> bool {
        self.reported
            && python.contains('.')
            && !(crate::host::interpreter_candidates(python).iter())
                .filter(|name| !name.starts_with(SITEC_PYTHONS))
                .any(|name| {
                    (self.pythons.iter())
                        .any(|(n, v)| n == name && crate::host::is_version(python, v))
                })
    }

    /// The newest platform tag it takes: `manylinux_2_36_x86_64`.
    #[must_use]
    pub fn tag(&self) -> String {
        format!("manylinux_2_{}_{}", self.glibc_minor, self.machine)
    }

    /// Every platform tag a wheel for it may carry, newest first:
    /// `manylinux_2_MINOR` down to `manylinux_2_5`, the legacy names its
    /// glibc and machine take (`manylinux2014` is 2.17, `manylinux2010`
    /// 2.12 and `manylinux1` 2.5, the last two on x86 only), and
    /// `linux_MACHINE`. pip 23.0, Debian 12's, takes a `--platform`
    /// literally, so each is named.
    fn tags(&self) -> Vec<String> {
        let m = &self.machine;
        let mut tags: Vec<String> = (5..=self.glibc_minor)
            .rev()
            .map(|minor| format!("manylinux_2_{minor}_{m}"))
            .collect();
        let x86 = matches!(m.as_str(), "x86_64" | "i686");
        for (legacy, minor, only_x86) in [
            ("manylinux2014", 17, false),
            ("manylinux2010", 12, true),
            ("manylinux1", 5, true),
        ] {
            if self.glibc_minor >= minor && (x86 || !only_x86) {
                tags.push(format!("{legacy}_{m}"));
            }
        }
        // What `pip wheel` tags a wheel built on a host (plan::build): PyPI
        // holds none, the build's folder and a `--find-links` one may.
        tags.push(format!("linux_{m}"));
        tags
    }
}

/// The Python a wheel must fit: the app's `python` (`"3.11"`); a bare `"3"`
/// is Debian 12's `python3`, 3.11.
fn target_python(python: &str) -> &str {
    if python.contains('.') {
        python
    } else {
        "3.11"
    }
}

/// pip's arguments that choose distributions for the hosts rather than
/// for the Python and platform pip itself runs on: wheels only, for
/// CPython `python` on `platform`.
fn for_the_hosts(python: &str, platform: &Platform) -> Vec<String> {
    let python = target_python(python);
    let mut args: Vec<String> = [
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
    ]
    .iter()
    .map(|a| (*a).to_string())
    .collect();
    args.push(format!("cp{}", python.replace('.', "")));
    for tag in platform.tags() {
        args.push("--platform".into());
        args.push(tag);
    }
    args
}

/// How many packages one wheelhouse may build from source.
const MAX_BUILDS: usize = 16;

/// `pip download` of the project's requirements and of [`SERVER`] into
/// `partial`, for the hosts' Python and platform whatever the operator's
/// are, with a pip of the cache's own (Debian's python3 has no pip;
/// python3-venv brings one into a venv). A package pip finds no wheel for
/// is built from its sdist ([`from_source`]) and the download tried again.
fn build_into(
    read: &Requirements,
    (download, sitecs): (&str, &[String]),
    python: &str,
    cache: &Path,
    partial: &Path,
    builds: &Builds<'_>,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let pip = pip(cache)?;
    let _ = fs::remove_dir_all(partial);
    fs::create_dir_all(partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let write = |name: &str, text: &str| {
        let path = partial.join(name);
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok::<PathBuf, String>(path)
    };
    write("constraints.txt", &read.constraints_file())?;
    let project = write("requirements.txt", download)?;
    let server = write("server.txt", &sitecs.join("\n"))?;
    // Sdists and their builds' requirements, gone with the build.
    let work = tempfile::Builder::new()
        .prefix("sdists-")
        .tempdir_in(partial)
        .map_err(|e| format!("cannot make a folder in {}: {e}", partial.display()))?;
    let mut built: Vec<(String, PathBuf)> = Vec::new();
    for file in [project, server] {
        let file = file.to_string_lossy().into_owned();
        let dest = partial.to_string_lossy().into_owned();
        loop {
            let mut args = vec!["download", "-r", &file, "-d", &dest];
            let links: Vec<String> = (built.iter())
                .map(|(_, dir)| dir.to_string_lossy().into_owned())
                .collect();
            for link in &links {
                args.extend(["--find-links", link]);
            }
            // Run from the folder, so `-c constraints.txt` is found.
            let Err(error) = pip_for_the_hosts(&pip, &args, (python, builds.platform), partial)
            else {
                break;
            };
            let wanted = no_wheel_for(&error)
                .filter(|w| built.len() < MAX_BUILDS && !built.iter().any(|(done, _)| done == w));
            let Some(wanted) = wanted else {
                return Err(no_wheel_help(error, python, builds.platform));
            };
            let dir = from_source(
                &pip,
                &wanted,
                python,
                (partial, work.path()),
                cache,
                builds,
                say,
            )?;
            built.push((wanted, dir));
        }
    }
    drop(work);
    for name in ["constraints.txt", "requirements.txt", "server.txt"] {
        let _ = fs::remove_file(partial.join(name));
    }
    fs::write(partial.join(".complete"), "").map_err(|e| e.to_string())
}

/// Runs the cache's pip with `args` and the options that choose
/// distributions for the hosts ([`for_the_hosts`]), in `dir`.
fn pip_for_the_hosts(
    pip: &Path,
    args: &[&str],
    (python, platform): (&str, &Platform),
    dir: &Path,
) -> Result<(), String> {
    let target = for_the_hosts(python, platform);
    let mut all: Vec<&str> = vec![args[0], "--disable-pip-version-check", "-q"];
    all.extend(&args[1..]);
    all.extend(target.iter().map(String::as_str));
    run(pip, &all, Some(dir))
}

/// The requirement pip found no distribution for, when that is why it
/// stopped (`No matching distribution found for uwsgi==2.0.28`).
fn no_wheel_for(error: &str) -> Option<String> {
    const MARK: &str = "No matching distribution found for ";
    error.lines().find_map(|line| {
        let rest = &line[line.find(MARK)? + MARK.len()..];
        let wanted = rest.split_whitespace().next()?;
        (!wanted.is_empty()).then(|| wanted.to_string())
    })
}

/// Builds `wanted` from its source distribution on the build host: fetches
/// the sdist (the constraints in `partial` apply) and the wheels its build
/// needs into `work`, and returns the folder of the built wheels.
fn from_source(
    pip: &Path,
    wanted: &str,
    python: &str,
    (partial, work): (&Path, &Path),
    cache: &Path,
    builds: &Builds<'_>,
    say: &dyn Fn(&str),
) -> Result<PathBuf, String> {
    let here = tempfile::tempdir_in(work).map_err(|e| e.to_string())?;
    let sdists = here.path().join("sdist");
    let deps = here.path().join("deps");
    let constraints = partial.join("constraints.txt");
    let (sdists_arg, constraints_arg) = (
        sdists.to_string_lossy().into_owned(),
        constraints.to_string_lossy().into_owned(),
    );
    let fetched = run(
        pip,
        &[
            "download",
            "--disable-pip-version-check",
            "-q",
            "--no-deps",
            "--no-binary=:all:",
            "--python-version",
            target_python(python),
            "-c",
            &constraints_arg,
            "-d",
            &sdists_arg,
            wanted,
        ],
        Some(partial),
    );
    if let Err(e) = fetched {
        return Err(format!(
            "`{wanted}` has no wheel for the hosts (CPython {} on {}) and no source distribution to build one from: {e}",
            target_python(python),
            builds.platform.tag()
        ));
    }
    let sdist = fs::read_dir(&sdists)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .ok_or_else(|| format!("pip fetched no source distribution of `{wanted}`"))?;
    let requires = build::build_requires(&sdist);
    let deps_arg = deps.to_string_lossy().into_owned();
    let mut args = vec!["download", "-d", &deps_arg];
    args.extend(requires.iter().map(String::as_str));
    pip_for_the_hosts(pip, &args, (python, builds.platform), partial).map_err(|e| {
        format!(
            "`{wanted}` has no wheel for the hosts, and what building it needs ({}) cannot be fetched as wheels: {e}",
            requires.join(", ")
        )
    })?;
    let job = build::Job {
        python: target_python(python),
        packages: builds.packages,
        deps: &deps,
        python_tree: builds.python_tree,
    };
    build::wheels(&sdist, &job, cache, builds.host, say)
}

/// A download that found no wheel for the hosts says so and what to do.
fn no_wheel_help(error: String, python: &str, platform: &Platform) -> String {
    if !error.contains("No matching distribution found") {
        return error;
    }
    format!(
        "{error}\nsitec builds the wheelhouse for the hosts (CPython {} on {}), from wheels only: \
         pin a version that publishes such a wheel, or check that the app's `python` is the one the project supports",
        target_python(python),
        platform.tag()
    )
}

/// The cache's own pip, made on first use with the operator's `python3`:
/// whichever version it is, [`for_the_hosts`] picks the hosts' wheels.
fn pip(cache: &Path) -> Result<PathBuf, String> {
    let pip_env = cache.join("pip");
    let pip = pip_env.join("bin/pip");
    if !pip.exists() {
        let interpreter = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .ok_or("there is no python3 here to build the wheelhouse with; install python3 and python3-venv")?;
        run(
            Path::new(interpreter),
            &["-m", "venv", &pip_env.to_string_lossy()],
            None,
        )?;
    }
    Ok(pip)
}

fn run(program: &Path, args: &[&str], dir: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let errors = String::from_utf8_lossy(&out.stderr);
    let errors = errors.trim_end();
    let package = failing_package(errors)
        .map(|p| format!(" at `{p}`"))
        .unwrap_or_default();
    Err(format!(
        "building the wheelhouse failed{package}: `{} {}` said:\n{errors}",
        program.display(),
        args.join(" "),
    ))
}

/// The package pip's error output says it stopped at, if it says.
fn failing_package(errors: &str) -> Option<String> {
    const MARKS: [&str; 5] = [
        "No matching distribution found for ",
        "Could not find a version that satisfies the requirement ",
        "Failed to build ",
        "Failed building wheel for ",
        "Could not build wheels for ",
    ];
    errors.lines().find_map(|line| {
        MARKS.iter().find_map(|mark| {
            let rest = &line[line.find(mark)? + mark.len()..];
            let name = rest.split([' ', ',', '\n']).next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_installs_the_projects_lines_and_sitecs_server() {
        let dir = tempfile::tempdir().expect("a scratch folder");
        std::fs::write(
            dir.path().join("requirements.txt"),
            "-r base.txt\nGunicorn==20.1.0 --hash=sha256:00\n",
        )
        .expect("a file");
        std::fs::write(
            dir.path().join("base.txt"),
            "Django==5.2.19 --hash=sha256:11\n",
        )
        .expect("a file");
        let (read, problems) = requirements::read(dir.path(), "requirements.txt");
        assert_eq!(problems, []);
        let drivers = [
            "psycopg[binary]==3.3.9".to_string(),
            "redis==8.1.0".to_string(),
        ];
        let sitecs = sitecs_packages(&read, &drivers);
        assert_eq!(
            sitecs,
            ["gunicorn==27.0.1", "psycopg[binary]==3.3.9", "redis==8.1.0"]
        );
        assert_eq!(
            host_requirements(&read, &sitecs[..1]),
            "Django==5.2.19\ngunicorn==27.0.1\n"
        );
        // A project that names a driver, or another of its family, keeps its own.
        let base = "Django==5.2.19\npsycopg2-binary==2.9\nRedis>=5\n";
        std::fs::write(dir.path().join("base.txt"), base).expect("a file");
        let (read, _) = requirements::read(dir.path(), "requirements.txt");
        assert_eq!(sitecs_packages(&read, &drivers), ["gunicorn==27.0.1"]);
    }

    #[test]
    fn the_hosts_take_every_manylinux_up_to_their_glibc() {
        let platform = Platform::parse("glibc 2.36\nx86_64\nos debian 12\n").expect("Debian 12's");
        assert_eq!(
            Platform {
                reported: false,
                ..platform.clone()
            },
            Platform::debian_12()
        );
        let args = for_the_hosts("3.12", &platform);
        let platforms: Vec<&str> = (args.windows(2))
            .filter(|w| w[0] == "--platform")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(platforms.first(), Some(&"manylinux_2_36_x86_64"));
        assert_eq!(platforms.last(), Some(&"linux_x86_64"));
        for tag in [
            "manylinux_2_28_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux1_x86_64",
        ] {
            assert!(platforms.contains(&tag), "{tag}: {platforms:?}");
        }
        assert!(args.windows(2).any(|w| w == ["--abi", "cp312"]), "{args:?}");
        assert_eq!(target_python("3"), "3.11");
    }

    #[test]
    fn a_hosts_platform_is_its_glibc_and_machine() {
        // Debian 11 on ARM: nothing newer than 2.31, no x86-only names.
        let arm = Platform::parse("glibc 2.31\naarch64\n").expect("a platform");
        let tags = arm.tags();
        assert_eq!(
            tags.first().map(String::as_str),
            Some("manylinux_2_31_aarch64")
        );
        assert!(
            tags.contains(&"manylinux2014_aarch64".to_string()),
            "{tags:?}"
        );
        assert!(
            !tags
                .iter()
                .any(|t| t.contains("2_32") || t.starts_with("manylinux1")),
            "{tags:?}"
        );
        assert_eq!(tags.last().map(String::as_str), Some("linux_aarch64"));
        for (bad, says) in [
            (
                "getconf: Unrecognized variable `GNU_LIBC_VERSION'\n",
                "not glibc",
            ),
            ("glibc 2.36\nx86 64; rm\n", "uname -m"),
            ("", "not glibc"),
        ] {
            let error = Platform::parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn a_virtualenv_is_for_the_interpreter_apply_picks() {
        let host = Platform::parse(
            "glibc 2.36\nx86_64\npython3 3.12.1 (main) [GCC 13]\npython3.11 3.11.2 (main, Mar 13 2023) [GCC 12.2.0]\npython3-config 3.12\npython3.13 not a version\n",
        )
        .expect("a platform");
        assert_eq!(
            host.pythons
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["python3", "python3.11"]
        );
        // `3`: python3. `3.11`: python3.11. `3.12`: no python3.12, but
        // python3 is 3.12. `3.13`: none (apply fails, naming it).
        assert_eq!(host.python("3"), Some("3.12.1 (main) [GCC 13]"));
        assert_eq!(
            host.python("3.11"),
            Some("3.11.2 (main, Mar 13 2023) [GCC 12.2.0]")
        );
        assert_eq!(host.python("3.12"), Some("3.12.1 (main) [GCC 13]"));
        assert_eq!(host.python("3.13"), None);
        assert_eq!(Platform::debian_12().python("3"), None);
        // It lacks 3.13, so sitec builds one; not 3.12 (python3 is that),
        // and an unasked host lacks nothing it can tell.
        assert!(host.lacks("3.13") && !host.lacks("3.12") && !host.lacks("3"));
        assert!(!Platform::debian_12().lacks("3.13"));
    }

    /// Once sitec's build of a Python is on the host, virtualenvs run it,
    /// and the host still lacks one of its own (so the plan keeps it).
    #[test]
    fn a_python_sitec_built_is_reported_by_its_path() {
        let built = "/opt/sitec/python/3.13/bin/python3.13";
        let host = Platform::parse(&format!(
            "glibc 2.36\nx86_64\nos debian 12\npython3 3.11.2 (main) [GCC 12.2.0]\n{built} 3.13.5 (main, Dec  7 2026) [GCC 12.2.0]\n/opt/elsewhere/bin/python3.13 3.13.1\n"
        ))
        .expect("a platform");
        assert_eq!(host.os, "debian 12");
        assert_eq!(
            (host.pythons.iter().map(|(n, _)| n.as_str())).collect::<Vec<_>>(),
            ["python3", built]
        );
        assert_eq!(
            host.python("3.13"),
            Some("3.13.5 (main, Dec  7 2026) [GCC 12.2.0]")
        );
        assert!(host.lacks("3.13"));
        assert!(!host.lacks("3.11"));
    }

    /// The script, run here as a host runs it: its Python's whole version.
    #[test]
    fn this_machine_says_its_pythons() {
        let out = std::process::Command::new("sh")
            .args(["-c", Platform::SCRIPT])
            .output()
            .expect("sh");
        assert!(out.status.success(), "{out:?}");
        let here = Platform::parse(&String::from_utf8_lossy(&out.stdout)).expect("a platform");
        let python3 = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.version)"])
            .output()
            .expect("python3 (the tests need it)");
        let version = String::from_utf8_lossy(&python3.stdout).trim().to_string();
        assert_eq!(here.python("3"), Some(version.as_str()), "{here:?}");
        let os = std::fs::read_to_string("/etc/os-release").expect("os-release");
        let field = |name: &str| {
            os.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        assert_eq!(here.os, format!("{} {}", field("ID"), field("VERSION_ID")));
    }

    #[test]
    fn pips_errors_name_the_package() {
        let failed = "  error: invalid command 'bdist_wheel'\n  ERROR: Failed building wheel for uWSGI\nFailed to build uWSGI\nERROR: Could not build wheels for uWSGI, which is required";
        assert_eq!(failing_package(failed), Some("uWSGI".into()));
        let missing = "ERROR: Could not find a version that satisfies the requirement nosuchthing==1.0 (from versions: none)\nERROR: No matching distribution found for nosuchthing==1.0";
        assert_eq!(failing_package(missing), Some("nosuchthing==1.0".into()));
    }
}

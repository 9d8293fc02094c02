//! An app's wheelhouse: every distribution its requirements need, built
//! once on the operator's machine into the cache, so hosts install with
//! `--no-index` and need no package index. The requirements are read as
//! pip reads them (`crate::requirements`: every included file, options,
//! hashes), and the app server sitec runs the app with ([`SERVER`]) is
//! added whether the project lists it or not, at sitec's version.
//!
//! A build goes to a folder of its own beside the cache entry and is
//! renamed into place only when complete; a failed one is removed, and its
//! error names the package pip stopped at. Never touches a host.

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

/// The requirements a host installs: the project's (without its own app
/// server) and [`SERVER`].
fn host_requirements(read: &Requirements) -> String {
    let names = server_names();
    let without: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lines = read.for_host(&without);
    lines.extend(SERVER.iter().map(|s| (*s).to_string()));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Reads `requirements` (relative to `source`) and builds its wheelhouse
/// for Python `python` in `cache`, unless the cache has it already.
pub fn build(
    source: &Path,
    requirements: &str,
    python: &str,
    cache: &Path,
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
    let key = sha256_hex(
        format!(
            "{python}\n{}\n{download}\n{}",
            SERVER.join("\n"),
            read.constraints_file()
        )
        .as_bytes(),
    );
    let dir = cache.join("wheelhouse").join(&key);
    if !dir.join(".complete").exists() {
        say(&format!(
            "building the wheelhouse for the hosts' Python {python} (pip download, from the package index) in {}",
            dir.display()
        ));
        let partial = dir.with_extension("partial");
        let result = build_into(&read, &download, python, cache, &partial);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&partial, &dir)
            .map_err(|e| format!("cannot move the wheelhouse into {}: {e}", dir.display()))?;
    }
    Ok(Built {
        host_requirements: host_requirements(&read),
        wheels: distributions(&dir)?,
        dir,
    })
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

/// The hosts' platform: Debian 12 on x86-64, glibc 2.36. pip takes every
/// manylinux wheel up to it (`manylinux_2_17`, `manylinux2014`...).
pub const HOST_PLATFORM: &str = "manylinux_2_36_x86_64";

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
/// CPython `python` on [`HOST_PLATFORM`].
fn for_the_hosts(python: &str) -> Vec<String> {
    let python = target_python(python);
    [
        "--only-binary=:all:",
        "--platform",
        HOST_PLATFORM,
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        &format!("cp{}", python.replace('.', "")),
    ]
    .iter()
    .map(|a| (*a).to_string())
    .collect()
}

/// `pip download` of the project's requirements and of [`SERVER`] into
/// `partial`, for the hosts' Python and platform whatever the operator's
/// are, with a pip of the cache's own (Debian's python3 has no pip;
/// python3-venv brings one into a venv).
fn build_into(
    read: &Requirements,
    download: &str,
    python: &str,
    cache: &Path,
    partial: &Path,
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
    let server = write("server.txt", &SERVER.join("\n"))?;
    let target = for_the_hosts(python);
    for file in [project, server] {
        let file = file.to_string_lossy().into_owned();
        let dest = partial.to_string_lossy().into_owned();
        let mut args = vec![
            "download",
            "--disable-pip-version-check",
            "-q",
            "-r",
            &file,
            "-d",
            &dest,
        ];
        args.extend(target.iter().map(String::as_str));
        // Run from the folder, so `-c constraints.txt` is found.
        run(&pip, &args, Some(partial)).map_err(|e| no_wheel_help(e, python))?;
    }
    for name in ["constraints.txt", "requirements.txt", "server.txt"] {
        let _ = fs::remove_file(partial.join(name));
    }
    fs::write(partial.join(".complete"), "").map_err(|e| e.to_string())
}

/// A download that found no wheel for the hosts says so and what to do.
fn no_wheel_help(error: String, python: &str) -> String {
    if !error.contains("No matching distribution found") {
        return error;
    }
    format!(
        "{error}\nsitec builds the wheelhouse for the hosts (CPython {} on {HOST_PLATFORM}), from wheels only: \
         pin a version that publishes such a wheel, or check that the app's `python` is the one the project supports",
        target_python(python)
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
        assert_eq!(
            host_requirements(&read),
            "Django==5.2.19\ngunicorn==27.0.1\n"
        );
    }

    #[test]
    fn pips_errors_name_the_package() {
        let failed = "  error: invalid command 'bdist_wheel'\n  ERROR: Failed building wheel for uWSGI\nFailed to build uWSGI\nERROR: Could not build wheels for uWSGI, which is required";
        assert_eq!(failing_package(failed), Some("uWSGI".into()));
        let missing = "ERROR: Could not find a version that satisfies the requirement nosuchthing==1.0 (from versions: none)\nERROR: No matching distribution found for nosuchthing==1.0";
        assert_eq!(failing_package(missing), Some("nosuchthing==1.0".into()));
    }
}

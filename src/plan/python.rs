//! A Python the hosts' Debian does not ship (an app's `python = "3.13"` on
//! Debian 12): sitec builds CPython from its source once, on a host of the
//! fleet, and ships the result to every host that lacks it like a
//! wheelhouse, where apply unpacks it into `/opt/sitec/python/X.Y`
//! (`Kind::Python`, root's, read-only to everyone else).
//!
//! The source is CPython's release tarball as Debian's archive keeps it
//! (the `orig.tar.xz` of Debian's own `python3.X` package, byte for byte
//! python.org's), fetched by the operator's machine into its cache and
//! checked against the sha256 pinned in [`SOURCES`]; or, for a version
//! sitec pins none of, a `Python-X.Y.Z.tar.xz` the operator put in the
//! cache's `python/src/` folder (from python.org).
//!
//! The build runs like a package's (`plan::build`): the source goes to the
//! build host on stdin; root there installs the compiler and the libraries'
//! headers with apt, then runs `configure`, `make` and `make install` as a
//! throwaway user (`DynamicUser=yes`), with no network and a `/tmp` of its
//! own, and the unit writes the installed tree as a tar to stdout. Root
//! opens no file the build wrote. The tree comes back to the operator's
//! cache (checked: plain names, files, folders and links only), keyed on
//! the source and the host's OS, machine and C library, so the next plan
//! builds nothing. Beside it the build says its `sys.version` (a
//! virtualenv's identity, `desired::item_digest`) and the Debian packages
//! its binaries link against, which apply installs before unpacking it.

use super::build::Host;
use super::wheelhouse::Platform;
use crate::resources::sha256_hex;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Raised when the way a Python is built changes, so cached ones are redone.
const BUILD_VERSION: &str = "2";

/// The longest a build may run on the build host (2 cores take 2-5 min).
const BUILD_SECONDS: u32 = 3600;

/// Where the Pythons sitec builds live on a host, one folder a minor
/// (`Platform::SCRIPT` globs it too).
pub const SITEC_PYTHONS: &str = "/opt/sitec/python/";

/// Where a sitec-built Python of minor `python` (`3.13`) lives on a host.
#[must_use]
pub fn prefix(python: &str) -> String {
    format!("{SITEC_PYTHONS}{python}")
}

/// A CPython source sitec knows: its version, where Debian's archive keeps
/// it, and its sha256 (from that archive's signed `Sources` index).
pub struct Source {
    pub version: &'static str,
    pub url: &'static str,
    pub sha256: &'static str,
}

/// The sources sitec pins, by minor. Debian 13's 3.13 stays in the archive
/// as long as Debian 13 does.
pub const SOURCES: &[(&str, Source)] = &[(
    "3.13",
    Source {
        version: "3.13.5",
        url: "http://deb.debian.org/debian/pool/main/p/python3.13/python3.13_3.13.5.orig.tar.xz",
        sha256: "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640",
    },
)];

/// What the build host installs to build CPython with the modules a Django
/// app needs (`ssl` for pip, `sqlite3`, `ctypes`, `lzma`, `bz2`, `uuid`...).
const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "zlib1g-dev",
    "libffi-dev",
    "libsqlite3-dev",
    "libbz2-dev",
    "liblzma-dev",
    "uuid-dev",
    "libreadline-dev",
    "libncurses-dev",
];

/// The modules the build must have made, checked by importing them.
const NEEDED_MODULES: &str =
    "ssl, sqlite3, zlib, ctypes, lzma, bz2, uuid, readline, venv, ensurepip";

/// A built Python in the operator's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The minor (`3.13`).
    pub python: String,
    /// The blob (a tar of the installed tree) in the cache.
    pub blob: String,
    /// Its `sys.version`, as `Platform::SCRIPT` reports it once installed.
    pub version: String,
    /// The Debian packages its binaries link against.
    pub packages: Vec<String>,
}

/// The source tarball of Python `python` (`3.13`) in `cache`: the pinned
/// one, fetched on first use, else the newest `Python-X.Y.*.tar.xz` the
/// operator put in `cache/python/src/`. An error says how to get one.
pub fn source(python: &str, cache: &Path, say: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let dir = cache.join("python/src");
    if let Some((_, pinned)) = SOURCES.iter().find(|(minor, _)| *minor == python) {
        return fetched(pinned, &dir, say);
    }
    operators(python, &dir).ok_or_else(|| {
        let pinned: Vec<&str> = SOURCES.iter().map(|(minor, _)| *minor).collect();
        format!(
            "the hosts have no Python {python}, and sitec pins no source of it (it builds {} from Debian's archive); put CPython's source, `Python-{python}.N.tar.xz` from https://www.python.org/downloads/source/, in {} and plan again, or choose a Python the hosts have",
            pinned.join(", "),
            dir.display()
        )
    })
}

/// `pinned`'s tarball in `dir`, downloaded and checked if it is not there.
fn fetched(pinned: &Source, dir: &Path, say: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let name = pinned.url.rsplit('/').next().unwrap_or("python.tar.xz");
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    say(&format!(
        "downloading CPython {}'s source ({})",
        pinned.version, pinned.url
    ));
    // The operator's python3 (the wheelhouse needs one too) fetches it:
    // sitec has no HTTP client of its own.
    let fetch = "import shutil, sys, urllib.request\n\
                 with urllib.request.urlopen(sys.argv[1], timeout=120) as r:\n    shutil.copyfileobj(r, sys.stdout.buffer)";
    let out = std::process::Command::new("python3")
        .args(["-c", fetch, pinned.url])
        .output()
        .map_err(|e| format!("cannot run python3 to download {}: {e}", pinned.url))?;
    if !out.status.success() {
        return Err(format!(
            "cannot download {}: {}",
            pinned.url,
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let got = sha256_hex(&out.stdout);
    if got != pinned.sha256 {
        return Err(format!(
            "{} is not CPython {}'s source: its sha256 is {got}, not {}",
            pinned.url, pinned.version, pinned.sha256
        ));
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, &out.stdout)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tmp.persist(&path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(path)
}

/// The newest `Python-X.Y.Z.tar.xz` of minor `python` in `dir` (the build
/// unpacks xz; python.org publishes each release so).
fn operators(python: &str, dir: &Path) -> Option<PathBuf> {
    let prefix = format!("Python-{python}.");
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let patch = name.strip_prefix(&prefix)?.strip_suffix(".tar.xz")?;
            Some((patch.parse().ok()?, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// The Python built from `source` for hosts of `platform`, from the cache,
/// else built on `host` (whose platform is `platform`'s) and cached.
pub fn built(
    python: &str,
    source: &Path,
    platform: &Platform,
    cache: &Path,
    host: &dyn Host,
    say: &dyn Fn(&str),
) -> Result<Built, String> {
    let bytes = fs::read(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let key = sha256_hex(
        format!(
            "{BUILD_VERSION}\n{python}\n{}\n{}\n{}\n{}",
            sha256_hex(&bytes),
            platform.os,
            platform.machine,
            platform.glibc_minor
        )
        .as_bytes(),
    );
    let dir = cache.join("python/built").join(&key);
    let _building = super::wheelhouse::lock_beside(&dir)?;
    if let Some(done) = cached(python, &dir)? {
        return Ok(done);
    }
    let name = source.file_name().map_or_else(
        || source.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    say(&format!(
        "building Python {python} from {name} on {} for {} (the hosts have none; once, then it is cached)",
        host.name(),
        platform.os
    ));
    let (status, stdout, stderr) = host
        .run(&script(python), &bytes)
        .map_err(|e| format!("cannot build Python {python} on {}: {e}", host.name()))?;
    if status != Some(0) {
        return Err(format!(
            "building Python {python} on {} failed (nothing of the build is left there); it said:\n{}",
            host.name(),
            super::build::tail(&String::from_utf8_lossy(&stderr), 40)
        ));
    }
    let (version, packages) = checked(&stdout)
        .map_err(|e| format!("building Python {python} on {}: {e}", host.name()))?;
    let blob = super::desired::store(&stdout)?;
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let write = |name: &str, text: &str| {
        fs::write(partial.join(name), text)
            .map_err(|e| format!("cannot write in {}: {e}", partial.display()))
    };
    write("blob", &blob)?;
    write("version", &version)?;
    write("packages", &packages.join("\n"))?;
    write(".complete", "")?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)
        .map_err(|e| format!("cannot move the built Python into {}: {e}", dir.display()))?;
    Ok(Built {
        python: python.to_string(),
        blob,
        version,
        packages,
    })
}

/// A complete cache entry whose blob is still in the cache.
fn cached(python: &str, dir: &Path) -> Result<Option<Built>, String> {
    let complete = dir.join(".complete");
    if !complete.exists() {
        return Ok(None);
    }
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let blob = read("blob").trim().to_string();
    if blob.is_empty() || !super::desired::blob_file(&blob).exists() {
        return Ok(None);
    }
    // Used now: the cache's pruning goes by this mark's age.
    let _ = fs::File::options()
        .append(true)
        .open(&complete)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Ok(Some(Built {
        python: python.to_string(),
        blob,
        version: read("version").trim().to_string(),
        packages: read("packages")
            .split_whitespace()
            .map(String::from)
            .collect(),
    }))
}

/// The largest installed tree taken back (one is about 120 MB).
const MAX_OUTPUT: u64 = 1 << 30;

/// The files sitec's build leaves at the top of the tree: the
/// interpreter's `sys.version`, and the packages it links against.
const VERSION_FILE: &str = ".sitec-python";
const PACKAGES_FILE: &str = ".sitec-packages";

/// Checks the build's tar (plain relative names; files, folders and
/// symbolic links only; an interpreter in `bin/`) and reads what the build
/// said of itself: `sys.version` and the packages, each checked.
fn checked(tar_bytes: &[u8]) -> Result<(String, Vec<String>), String> {
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive
        .entries()
        .map_err(|e| format!("the build host sent no tar ({e})"))?;
    let (mut version, mut packages, mut total, mut interpreter) = (None, None, 0, false);
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the build's tar is damaged ({e})"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let plain = path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        let kind = entry.header().entry_type();
        if !plain || !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            return Err(format!(
                "the build sent {} ({kind:?}): only files, folders and links under the tree are taken",
                path.display()
            ));
        }
        total += entry.size();
        if total > MAX_OUTPUT {
            return Err(format!("the build sent more than {MAX_OUTPUT} bytes"));
        }
        let name = path.strip_prefix(".").unwrap_or(&path).to_path_buf();
        interpreter |= name.starts_with("bin")
            && name
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3."));
        if name == Path::new(VERSION_FILE) || name == Path::new(PACKAGES_FILE) {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("the build's {} is unreadable ({e})", name.display()))?;
            if name == Path::new(VERSION_FILE) {
                version = Some(text.trim().to_string());
            } else {
                packages = Some(text);
            }
        }
    }
    let version = version
        .filter(|v| v.starts_with("3.") && v.len() < 300 && !v.contains('\n'))
        .ok_or("the build did not say its Python's version")?;
    if !interpreter {
        return Err("the build sent no interpreter in bin/".into());
    }
    let mut packages: Vec<String> = packages
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    if let Some(p) = packages
        .iter()
        .find_map(|p| crate::names::package_problem(p))
    {
        return Err(format!(
            "the build named a package apt cannot take: {}",
            p.at("packages")
        ));
    }
    packages.sort();
    packages.dedup();
    Ok((version, packages))
}

/// The script the build host runs as root: installs what is missing of
/// [`BUILD_PACKAGES`], then builds as a throwaway user (module doc).
fn script(python: &str) -> String {
    let prefix = prefix(python);
    // As the unit's user, in its own /tmp: the source from stdin, the
    // build's words to stderr, the installed tree as a tar to stdout. The
    // static library (130 MB) only embeds Python in C programs; Tk (which
    // would bring X11's libraries to every host) serves no web app;
    // `strip` takes the debug symbols. The interpreter then says its version (as
    // `Platform::SCRIPT` asks it), proves the modules were built, and each
    // library its binaries load is named by the Debian package holding it.
    let build = format!(
        "set -eu; cd /tmp; mkdir src root; tar -xJ -C src --strip-components=1; cd src; \
         ./configure --prefix={prefix} --with-ensurepip=install --disable-test-modules >&2; \
         make -j\"$(nproc)\" >&2; make install DESTDIR=/tmp/root >&2; \
         cd /tmp/root{prefix}; rm -f lib/libpython*.a lib/python{python}/config-*/libpython*.a; \
         rm -rf lib/python{python}/lib-dynload/_tkinter.* lib/python{python}/tkinter lib/python{python}/idlelib lib/python{python}/turtledemo bin/idle3*; \
         strip bin/python{python} lib/python{python}/lib-dynload/*.so; \
         ./bin/python{python} -c \"import sys, {NEEDED_MODULES}; print(sys.version.replace(chr(10), chr(32)))\" > {VERSION_FILE}; \
         for lib in $(ldd bin/python{python} lib/python{python}/lib-dynload/*.so | sed -n \"s/.*=> \\(\\/[^ ]*\\) .*/\\1/p\" | sort -u); do \
           dpkg -S \"*/${{lib##*/}}\" 2>/dev/null | sed -n \"1s/:.*//p\"; \
         done | sort -u > {PACKAGES_FILE}; \
         tar -c --hard-dereference ."
    );
    let packages: Vec<String> = BUILD_PACKAGES.iter().map(|p| (*p).to_string()).collect();
    super::build::in_throwaway_unit(&packages, BUILD_SECONDS, &build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, *bytes).expect("append");
        }
        b.into_inner().expect("tar")
    }

    const VERSION: &[u8] = b"3.13.5 (main, Dec  7 2026, 18:00:00) [GCC 12.2.0]\n";

    #[test]
    fn a_build_says_its_version_and_packages() {
        let tar = tar_of(&[
            ("./bin/python3.13", b"ELF"),
            ("./.sitec-python", VERSION),
            ("./.sitec-packages", b"libssl3\nlibc6\nlibffi8\nlibc6\n"),
        ]);
        assert_eq!(
            checked(&tar),
            Ok((
                "3.13.5 (main, Dec  7 2026, 18:00:00) [GCC 12.2.0]".to_string(),
                vec!["libc6".into(), "libffi8".into(), "libssl3".into()]
            ))
        );
    }

    #[test]
    fn a_build_that_says_nothing_or_too_much_is_refused() {
        let no_version = tar_of(&[("./bin/python3.13", b"ELF")]);
        assert!(checked(&no_version)
            .expect_err("refused")
            .contains("version"));
        let no_binary = tar_of(&[("./.sitec-python", VERSION)]);
        assert!(checked(&no_binary)
            .expect_err("refused")
            .contains("interpreter"));
        let odd_package = tar_of(&[
            ("./bin/python3.13", b"ELF"),
            ("./.sitec-python", VERSION),
            ("./.sitec-packages", b"libssl3 -o=APT::Foo\n"),
        ]);
        assert!(checked(&odd_package)
            .expect_err("refused")
            .contains("apt cannot take"));
    }

    #[test]
    fn a_name_out_of_the_tree_is_refused() {
        // The tar crate refuses to write `..` itself: a raw header.
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        let name = b"../etc/passwd";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(b"x");
        bytes.resize(512 * 4, 0);
        let error = checked(&bytes).expect_err("refused");
        assert!(error.contains("../etc/passwd"), "{error}");
    }

    #[test]
    fn the_build_runs_as_a_throwaway_user_without_network() {
        let script = script("3.13");
        for needed in [
            "DynamicUser=yes",
            "PrivateNetwork=yes",
            "NoNewPrivileges=yes",
            "--prefix=/opt/sitec/python/3.13",
            "libssl-dev",
            "import sys, ssl, sqlite3",
        ] {
            assert!(script.contains(needed), "{needed}: {script}");
        }
        // The build's part is one single-quoted word for sh -c, where
        // systemd takes `$$` for `$` (it would expand `${lib}` itself).
        let build = script.split("sh -c '").nth(1).expect("the build");
        assert_eq!(build.matches('\'').count(), 1, "{build}");
        assert!(
            build.contains("$$(nproc)") && build.contains("$${lib##*/}"),
            "{build}"
        );
        assert!(!build.replace("$$", "").contains('$'), "{build}");
    }

    #[test]
    fn a_pinned_source_is_fetched_only_when_missing_and_an_operators_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("python/src");
        fs::create_dir_all(&src).expect("mkdir");
        // The pinned one, already there: no download.
        let pinned = src.join("python3.13_3.13.5.orig.tar.xz");
        fs::write(&pinned, b"xz").expect("write");
        assert_eq!(
            source("3.13", dir.path(), &|_| panic!("no download")),
            Ok(pinned)
        );
        // Another minor: the operator's newest, else how to get one.
        let error = source("3.12", dir.path(), &|_| {}).expect_err("refused");
        assert!(
            error.contains("Python-3.12.N.tar.xz") && error.contains("python.org"),
            "{error}"
        );
        for name in [
            "Python-3.12.2.tar.xz",
            "Python-3.12.10.tar.xz",
            "Python-3.12.11.tgz",
        ] {
            fs::write(src.join(name), b"xz").expect("write");
        }
        assert_eq!(
            source("3.12", dir.path(), &|_| {}),
            Ok(src.join("Python-3.12.10.tar.xz"))
        );
    }
}

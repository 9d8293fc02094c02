//! A Python the hosts' Debian does not ship (issue #24): an app asks for
//! Python 3.13 on Debian 12 hosts, whose Python is 3.11 (and so is the
//! operator's, this machine's). On a local fleet of its own (`pybuild`,
//! 10.77.224.0/24 on bridge `sitecpy`: one host, balancer, runner and
//! Postgres), the first plan says the host lacks it
//! and builds CPython 3.13 from the source sitec pins (Debian's archive,
//! sha256-checked) on the host, as a throwaway user without network; the
//! wheelhouse is for 3.13 although pip runs on 3.11 here; psycopg2, which
//! has no wheel, is built on the host with that Python. Apply unpacks it
//! into /opt/sitec/python/3.13 (root's, nothing in it writable by anyone
//! else), the app's virtualenv runs it, and the page through the balancer
//! says so. The next plan builds nothing and says "No changes". A Python
//! sitec pins no source of fails the plan, naming the fix, and changes
//! nothing.
//!
//! Needs root, systemd-container and the package indexes (PyPI, Debian's
//! archive); the source and the build are cached in
//! `target/sitec-test-cache`.

mod common;

use common::exclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn cache() -> PathBuf {
    common::repo().join("target/sitec-test-cache")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `sitec ARGS...` in `dir`, with the tests' cache.
fn sitec(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args(args)
        .current_dir(dir)
        .env("SITEC_CACHE", cache())
        .stdin(Stdio::null())
        .output()
        .expect("sitec runs")
}

/// Takes the fleet down when dropped.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let down = sitec(self.0, &["fleet", "down", SPEC_FILE]);
        if !down.status.success() {
            eprintln!("fleet down failed: {}", text_of(&down));
        }
    }
}

const SPEC_FILE: &str = "pybuild.site";

const SPEC: &str = r#"use std/platform

provider local { kind = local }

host pyrun { provider = local  address = "10.77.224.10"  roles = [balancer, runner, postgres] }

checks {
  balancer_redundancy = off
  database_redundancy = off
}

database main { engine = postgres  primary = pyrun }

app site {
  source = "../site"
  wsgi = "site_conf.wsgi:application"
  python = "PYTHON"
  domains = ["site.localhost"]
  build_packages = ["libpq-dev"]
  databases { default = main }
}
"#;

/// A small Django project as its developer has it: a nested requirements
/// file, psycopg2 (an sdist only, for Linux), `.python-version` saying
/// 3.13, and a page that says which Python serves it.
fn write_project(dir: &Path) -> Result<(), String> {
    let files = [
        (".python-version", "3.13\n"),
        ("requirements/base.txt", "Django>=5.2,<5.3\n"),
        ("requirements.txt", "-r requirements/base.txt\npsycopg2==2.9.10\n"),
        (
            "manage.py",
            "import os, sys\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site_conf.settings')\nfrom django.core.management import execute_from_command_line\nexecute_from_command_line(sys.argv)\n",
        ),
        ("site_conf/__init__.py", ""),
        (
            "site_conf/settings.py",
            "import os\nSECRET_KEY = os.environ.get('SECRET_KEY', 'dev')\nDEBUG = False\nALLOWED_HOSTS = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')\nINSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth', 'django.contrib.staticfiles']\nMIDDLEWARE = []\nROOT_URLCONF = 'site_conf.urls'\nSTATIC_URL = 'static/'\nDATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': 'dev.sqlite3'}}\nUSE_TZ = True\n",
        ),
        (
            "site_conf/urls.py",
            "import sys\nimport psycopg2\nfrom django.http import HttpResponse\nfrom django.urls import path\n\ndef home(request):\n    return HttpResponse(f'python {sys.version.split()[0]} at {sys.base_prefix}, psycopg2 {psycopg2.__version__.split()[0]}')\n\nurlpatterns = [path('', home)]\n",
        ),
        (
            "site_conf/wsgi.py",
            "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site_conf.settings')\nfrom django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `ssh pyrun COMMAND`: its stdout, or why it failed.
fn on_host(deploy: &Path, command: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(deploy.join(".fleet/pybuild/ssh_config"))
        .args(["pyrun", command])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ssh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{command}: {}", text_of(&out)))
    }
}

/// Waits (a minute at most) for the page through the balancer to say `text`.
fn page_says(address: &str, text: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-H", "Host: site.localhost"])
            .arg(format!("http://{address}/"))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if body.contains(text) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            return Err(format!("the page does not say {text:?}: {body:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_python_debian_lacks_is_built_shipped_and_run() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("pybuild")?;
    let work = tempfile::Builder::new().prefix("sitec-python-").tempdir()?;
    write_project(&work.path().join("site"))?;
    let deploy = work.path().join("deploy");
    std::fs::create_dir_all(&deploy)?;
    std::fs::write(deploy.join(SPEC_FILE), SPEC.replace("PYTHON", "3.13"))?;
    // The project's `.python-version` agrees with the spec: no warning.
    let check = sitec(&deploy, &["check", SPEC_FILE]);
    assert!(
        check.status.success() && !text_of(&check).contains("E280"),
        "check: {}",
        text_of(&check)
    );

    common::take_down_leftover_fleet("pybuild")?;
    // A bridge and subnet of its own: it runs beside the other fleet
    // suites, whose hosts take addresses on the default bridge.
    let up = sitec(
        &deploy,
        &[
            "fleet",
            "up",
            SPEC_FILE,
            "--bridge",
            "sitecpy",
            "--subnet",
            "10.77.224.0/24",
        ],
    );
    let _down = Down(&deploy);
    assert!(up.status.success(), "fleet up: {}", text_of(&up));
    let native = on_host(
        &deploy,
        "python3 -c 'import sys; print(sys.version_info[:2])'",
    )?;
    assert_eq!(native, "(3, 11)", "the host's own Python");

    // The plan says what the host lacks and brings it, built there.
    let plan = sitec(&deploy, &["plan", SPEC_FILE]);
    let text = text_of(&plan);
    assert!(plan.status.success(), "plan: {text}");
    for said in [
        "+ python:/opt/sitec/python/3.13",
        "+ virtualenv:/srv/sitec/apps/site/venvs",
    ] {
        assert!(text.contains(said), "{said}: {text}");
    }
    // Built now, or by an earlier run into the tests' cache: either way
    // from the pinned source, and psycopg2's wheel for 3.13 built on a
    // host (pip runs on 3.11 here, and PyPI has no such wheel).
    let source = cache().join("python/src/python3.13_3.13.5.orig.tar.xz");
    assert!(source.exists(), "{}", source.display());
    let built_wheel = std::fs::read_dir(cache().join("built"))?
        .filter_map(Result::ok)
        .filter_map(|dir| std::fs::read_dir(dir.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .any(|w| {
            let name = w.file_name().to_string_lossy().into_owned();
            name.starts_with("psycopg2-2.9.10-cp313-cp313-linux_x86_64")
        });
    assert!(
        built_wheel,
        "no psycopg2 wheel for 3.13 in the cache's built/"
    );

    let applied = sitec(&deploy, &["apply", SPEC_FILE, "--yes"]);
    assert!(applied.status.success(), "apply: {}", text_of(&applied));
    let balancer = on_host(&deploy, "hostname -I")?;
    let balancer = balancer.split_whitespace().next().unwrap_or_default();
    let page = page_says(balancer, "python 3.13.5 at /opt/sitec/python/3.13")?;
    assert!(page.contains("psycopg2 2.9.10"), "{page}");

    // Root's, and nothing in it that another user may change.
    assert_eq!(
        on_host(&deploy, "stat -c '%U:%G %a' /opt/sitec/python /opt/sitec/python/3.13 /opt/sitec/python/3.13/bin/python3.13")?,
        "root:root 755\nroot:root 755\nroot:root 755"
    );
    let writable = on_host(
        &deploy,
        "find /opt/sitec/python \\( \\( -perm /022 ! -type l \\) -o ! -user root \\) -print | head -5",
    )?;
    assert_eq!(writable, "", "writable by others, or not root's");
    let venv = on_host(
        &deploy,
        "/srv/sitec/apps/site/current/venv/bin/python -c 'import sys, ssl, sqlite3, psycopg2; print(sys.version_info[:2], sys.base_prefix)'",
    )?;
    assert_eq!(venv, "(3, 13) /opt/sitec/python/3.13");

    let again = sitec(&deploy, &["plan", SPEC_FILE]);
    let text = text_of(&again);
    assert!(
        again.status.success() && text.contains("No changes") && !text.contains("building"),
        "the plan after apply: {text}"
    );

    // A Python sitec pins no source of: the plan names the fix, and
    // nothing changes.
    std::fs::write(deploy.join(SPEC_FILE), SPEC.replace("PYTHON", "3.12"))?;
    let refused = sitec(&deploy, &["plan", SPEC_FILE]);
    let text = text_of(&refused);
    assert!(!refused.status.success(), "{text}");
    for said in ["no Python 3.12", "Python-3.12.N.tar.xz", "python/src"] {
        assert!(text.contains(said), "{said}: {text}");
    }
    page_says(balancer, "python 3.13.5")?;
    Ok(())
}

//! Real Django projects, not written for sitec, deploy unmodified (issue
//! #24). The project comes from the package index at test time, the way a
//! user gets one: `wagtail start` (Wagtail 7.0, whose template pins Django
//! 5.2 for the hosts' Python 3.11) makes a project with a settings package
//! (`dev` and `production`), static files and an admin, and it is deployed
//! to a local fleet of its own (`projtest`: a balancer, a runner, a
//! database host) by a spec outside it, with no line of it changed.
//! Through the balancer, the home page, the admin's login page and a static
//! file answer 200, and still after a redeploy of a release with a new
//! file; plans of the spec by two spellings of its path and after a
//! comment-only edit say "No changes"; a file the project's `.gitignore`
//! names never reaches the runner. Its `media` store: a file saved through
//! Django's default storage in a `sitec run` session (the app's user and
//! sandbox) is served through the balancer with its bytes, `nosniff` and a
//! `sandbox` CSP, app-mysite:www-data 640 in folders of 2750, and still
//! after the redeploy. Beside it, on the same runner, a project
//! made by `django-admin startproject` whose requirements include a nested
//! file and psycopg2, which PyPI has only as an sdist for Linux: the wheel
//! is built on the runner (`plan::build`), its admin login answers 200 and
//! its virtualenv imports psycopg2. The echo app (ASGI) answers a WebSocket
//! and greets with its environment's ECHO_GREETING: a settings layer that
//! changes it restarts gunicorn and the app's worker (new MainPIDs) and the
//! new greeting is served; one that changes a Django setting restarts the
//! worker too.
//!
//! On a fleet of its own (`mediatest`: a balancer, two runners, a database
//! host), the sample blog on one runner first, taking an upload in its own
//! folder, then on both runners, that upload copied into their volume and
//! served by both: its user `app-blog` has one
//! uid and gid on both, sitec's; a runner where the user was made by hand
//! with another uid fails plan and apply naming the fix, and is not
//! renumbered. Its `media` store is a GlusterFS volume (bricks on both
//! runners, the arbiter on the database host): a file saved on mtrun1 is
//! served by mtrun2's nginx and the balancer with its bytes and owners;
//! with mtrun1's glusterd and brick stopped mtrun2 still serves it and
//! takes a new upload, which mtrun1 serves once its brick is back; both
//! survive a redeploy, and the plans after the first apply and the
//! redeploy say "No changes". Then mtrun3 (a host that ran nothing)
//! replaces mtrun2 in the app's runners: apply moves mtrun2's brick to it,
//! healed there before apply reports, mtrun2 keeps its brick's folder;
//! mtrun3 serves every upload and takes one mtrun1 serves, and a plan
//! says "No changes"; moved back to mtrun2, its kept brick folder gets
//! that upload, under load through the balancer, failing no request.
//! Back on mtrun1 alone, its own folder gets the volume's files from its
//! brick, and serves every upload.
//!
//! Also, without a fleet: a wheelhouse built for a Python minor other than
//! the operator's holds that minor's wheels.
//!
//! Needs root, systemd-container and the package index (CI has all three;
//! elsewhere the fleet test says so and skips, except under `CI=true`). The
//! project's generator and the wheelhouse are cached in
//! `target/sitec-test-cache`.

mod common;

use common::exclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    repo().join("target/sitec-test-cache")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(command: &mut Command) -> Result<Output, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{command:?} failed: {}", text_of(&out)))
    }
}

/// A fresh Wagtail project in `into`, made by Wagtail's own generator,
/// installed from the package index into a virtualenv of the test cache.
fn wagtail_start(into: &Path) -> Result<PathBuf, String> {
    let venv = cache().join("wagtail-7.0");
    let wagtail = venv.join("bin/wagtail");
    if !wagtail.exists() {
        run(Command::new("/usr/bin/python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "wagtail>=7.0,<7.1",
        ]))?;
    }
    run(Command::new(&wagtail)
        .args(["start", "mysite"])
        .current_dir(into))?;
    Ok(into.join("mysite"))
}

/// Copies a sample app of `examples/apps` (files and folders, no caches).
fn copy_sample(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.path().is_dir() {
            copy_sample(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A project made by Django's own generator (`django-admin startproject`,
/// from the Wagtail virtualenv's Django) with the requirements its
/// developer writes: Django from a nested file, and psycopg2, which PyPI
/// has only as a source distribution for Linux.
fn django_startproject(into: &Path) -> Result<PathBuf, String> {
    let admin = cache().join("wagtail-7.0/bin/django-admin");
    run(Command::new(&admin)
        .args(["startproject", "blog"])
        .current_dir(into))?;
    let project = into.join("blog");
    let write = |name: &str, text: &str| {
        let path = project.join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(&project))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    write("requirements/base.txt", "Django>=5.2,<5.3\n")?;
    write(
        "requirements.txt",
        "-r requirements/base.txt\npsycopg2==2.9.10\n",
    )?;
    Ok(project)
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

/// Takes a fleet down when dropped, by its spec.
struct Down<'a>(&'a Path, &'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let down = sitec(self.0, &["fleet", "down", self.1]);
        if !down.status.success() {
            eprintln!("fleet down failed: {}", text_of(&down));
        }
    }
}

const SPEC_FILE: &str = "projtest.site";

/// The spec a user writes for the project, from Wagtail's README: its
/// production settings module, its static folder, a Postgres database.
const SPEC: &str = r#"use std/platform

provider local { kind = local }

host pjlb { provider = local  roles = [balancer] }
host pjrun { provider = local  roles = [runner] }
host pjdb { provider = local  roles = [postgres] }

checks { balancer_redundancy = off }

database main { engine = postgres  primary = pjdb }

database blogdb { engine = postgres  primary = pjdb }

# psycopg2 publishes no wheel for Linux: it is built on the runner.
app blog {
  source = "../blog"
  wsgi = "blog.wsgi:application"
  domains = ["blog.localhost"]
  build_packages = ["libpq-dev"]
  databases { default = blogdb }
}

# The sample ASGI app: uvicorn's worker under gunicorn, a WebSocket echo.
app echo {
  source = "../echo"
  asgi = "echo.asgi:application"
  domains = ["echo.localhost"]
  env { ECHO_GREETING = "Hello from the spec" }
  databases { default = echodb }
  # A process that, like celery, reads its environment once, at start.
  worker ticker { command = "python -c 'import time; time.sleep(1e9)'" }
}

database echodb { engine = postgres  primary = pjdb }

app mysite {
  source = "../mysite"
  wsgi = "mysite.wsgi:application"
  settings_module = "mysite.settings.production"
  domains = ["mysite.localhost"]
  static "/static/" = "static"
  media "/media/" = "uploads"
  databases { default = main }
}
"#;

/// An upload's bytes: a page that would run a script, were it served as
/// the site's own.
const UPLOAD: &str =
    "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(document.cookie)</script></svg>\n";

/// Saves `UPLOAD` through Django's default storage in a `sitec run`
/// session of `app` of `spec` on `host` (its user, release and sandbox,
/// as gunicorn has them), and returns the name the storage gave it.
fn save_upload(deploy: &Path, spec: &str, app: &str, host: &str) -> Result<String, String> {
    let code = format!(
        "from django.core.files.base import ContentFile; \
         from django.core.files.storage import default_storage as s; \
         print(s.save('docs/probe.svg', ContentFile({UPLOAD:?}.encode())))"
    );
    let out = sitec(
        deploy,
        &[
            "run",
            spec,
            app,
            "--host",
            host,
            "-T",
            "--",
            "python",
            "manage.py",
            "shell",
            "-c",
            &code,
        ],
    );
    if !out.status.success() {
        return Err(format!("saving an upload: {}", text_of(&out)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    (stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| l.starts_with("docs/")))
    .map(str::to_string)
    .ok_or_else(|| format!("saving an upload printed no name: {}", text_of(&out)))
}

/// Waits (up to a minute) until the upload `name` answers at `address`
/// (a balancer, or a runner's nginx as `HOST:PORT`) for `domain` with its
/// bytes and the headers that keep it from running as the site.
fn serves_upload(address: &str, domain: &str, name: &str) -> Result<(), String> {
    let path = format!("/media/{name}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let headers = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-D", "-", "--max-time", "10"])
            .args(["-H", &format!("Host: {domain}")])
            .arg(format!("http://{address}{path}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_ascii_lowercase())
            .unwrap_or_default();
        let body = body_of(address, domain, &path);
        let ok = headers.starts_with("http/1.1 200")
            && headers.contains("x-content-type-options: nosniff")
            && headers.contains("content-security-policy: sandbox");
        if ok && body == UPLOAD {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{path}: headers {headers:?}, body {body:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The status of GET http://ADDRESS/PATH with Host `domain`.
fn status_of(address: &str, domain: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["-H", &format!("Host: {domain}")])
        .arg(format!("http://{address}{path}"))
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The body of GET http://ADDRESS/PATH with Host `domain`.
fn body_of(address: &str, domain: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-H", &format!("Host: {domain}")])
        .arg(format!("http://{address}{path}"))
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Waits (up to a minute) until GET PATH of `domain` answers a body that
/// contains `text`.
fn serves_text(address: &str, domain: &str, path: &str, text: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = body_of(address, domain, path);
        if body.contains(text) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{domain}{path} does not say {text:?}: {body:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (up to a minute) until every path answers 200 through the balancer.
fn all_answer(address: &str, paths: &[&str]) -> Result<(), String> {
    all_answer_for(address, "mysite.localhost", paths)
}

/// Waits (up to a minute) until every path of `domain` answers 200.
fn all_answer_for(address: &str, domain: &str, paths: &[&str]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, String)> = paths
            .iter()
            .map(|p| ((*p).to_string(), status_of(address, domain, p)))
            .collect();
        if got.iter().all(|(_, code)| code == "200") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("through the balancer: {got:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A WebSocket client over one TCP connection (RFC 6455), enough for the
/// tests: text and close frames of up to 125 bytes. A client's frames are
/// masked (5.3); the server's are not.
struct WebSocket {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

fn ws_error(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("WebSocket {what}: {e}")
}

impl WebSocket {
    /// Opens ws://ADDRESS/PATH with Host `domain`: the handshake's answer
    /// must be a 101 with the accept value RFC 6455 gives for its key.
    fn open(address: &str, domain: &str, path: &str) -> Result<Self, String> {
        use std::io::{BufRead, Write};
        let port = if address.contains(':') { "" } else { ":80" };
        let mut stream = std::net::TcpStream::connect(format!("{address}{port}"))
            .map_err(ws_error("connect"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(ws_error("timeout"))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {domain}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .map_err(ws_error("handshake"))?;
        let mut reader = std::io::BufReader::new(stream.try_clone().map_err(ws_error("clone"))?);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(ws_error("response"))? == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        if !head.starts_with("HTTP/1.1 101") || !head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
            return Err(format!("no WebSocket handshake: {head}"));
        }
        Ok(WebSocket { stream, reader })
    }

    /// Sends one masked frame.
    fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        use std::io::Write;
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut out = vec![
            0x80 | opcode,
            0x80 | u8::try_from(payload.len()).unwrap_or(125),
        ];
        out.extend(mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).map_err(ws_error("send"))
    }

    /// The next frame's first byte (FIN and opcode) and payload, waiting at
    /// most `limit`.
    fn read_frame(&mut self, limit: Duration) -> Result<(u8, Vec<u8>), String> {
        use std::io::Read;
        self.stream
            .set_read_timeout(Some(limit))
            .map_err(ws_error("timeout"))?;
        let mut two = [0u8; 2];
        self.reader
            .read_exact(&mut two)
            .map_err(ws_error("frame"))?;
        let len = usize::from(two[1] & 0x7f);
        if len > 125 {
            return Err(format!("a longer frame than sent: {two:?}"));
        }
        let mut payload = vec![0; len];
        self.reader
            .read_exact(&mut payload)
            .map_err(ws_error("frame"))?;
        Ok((two[0], payload))
    }

    /// Sends `text` and returns the text message that comes back.
    fn echo(&mut self, text: &str) -> Result<String, String> {
        self.send(0x1, text.as_bytes())?;
        let (first, payload) = self.read_frame(Duration::from_secs(10))?;
        if first != 0x81 {
            return Err(format!("not one text frame: {first:#x}"));
        }
        Ok(String::from_utf8_lossy(&payload).into_owned())
    }
}

/// Opens a WebSocket, sends `text` and returns the text message that comes
/// back, then closes it with a close frame and waits for the server's.
fn websocket_echo(address: &str, domain: &str, path: &str, text: &str) -> Result<String, String> {
    let mut socket = WebSocket::open(address, domain, path)?;
    let echoed = socket.echo(text)?;
    socket.send(0x8, &1000u16.to_be_bytes())?;
    let (closed, _) = socket.read_frame(Duration::from_secs(10))?;
    if closed != 0x88 {
        return Err(format!("the server did not close cleanly: {closed:#x}"));
    }
    Ok(echoed)
}

/// A WebSocket open through the balancer while `sitec restart` rolls the
/// app: the drain does not wait for it (it is no request in flight), and
/// the restart ends it with the app server's close frame (uvicorn's 1012,
/// "service restart"), passed through nginx and the balancer, not a reset.
fn websocket_closed_cleanly_by_a_rolling_restart(
    dir: &Path,
    balancer: &str,
    app: &str,
    domain: &str,
) -> TestResult {
    let mut socket = WebSocket::open(balancer, domain, "/ws/echo/")?;
    assert_eq!(socket.echo("before the restart")?, "before the restart");
    let (restarted, closed) = std::thread::scope(|scope| {
        let restart = scope.spawn(|| sitec(dir, &["restart", SPEC_FILE, app]));
        let closed = socket.read_frame(Duration::from_secs(120));
        (restart.join(), closed)
    });
    let restarted = restarted.map_err(|_| "the restart's thread panicked")?;
    assert!(
        restarted.status.success(),
        "sitec restart: {}",
        text_of(&restarted)
    );
    let (opcode, payload) = closed?;
    assert_eq!(opcode, 0x88, "not a close frame: {opcode:#x} {payload:?}");
    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    assert!(
        matches!(code, Some(1001 | 1012)),
        "close code {code:?}: going away or service restart"
    );
    // The app is back: a new socket echoes.
    let again = websocket_echo(balancer, domain, "/ws/echo/", "after the restart")?;
    assert_eq!(again, "after the restart");
    Ok(())
}

fn address(dir: &Path, host: &str) -> Result<String, String> {
    address_in(dir, SPEC_FILE, host)
}

fn assert_no_changes(dir: &Path, spec: &str, what: &str) {
    let plan = sitec(dir, &["plan", spec]);
    let text = text_of(&plan);
    assert!(
        plan.status.success() && text.contains("No changes"),
        "{what}: {text}"
    );
}

#[test]
fn a_wagtail_project_deploys_unmodified_and_stays_up_across_a_redeploy() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("projtest")?;
    let work = tempfile::Builder::new()
        .prefix("sitec-projects-")
        .tempdir()?;
    let project = wagtail_start(work.path())?;
    django_startproject(work.path())?;
    copy_sample(
        &repo().join("examples/apps/echo"),
        &work.path().join("echo"),
    )?;
    // What a developer leaves in a working copy, which git would not commit.
    std::fs::write(project.join(".gitignore"), ".env\n*.sqlite3\n")?;
    std::fs::write(project.join(".env"), "DJANGO_SECRET_KEY=a-developers-own\n")?;
    let deploy = work.path().join("deploy");
    std::fs::create_dir_all(&deploy)?;
    std::fs::write(deploy.join(SPEC_FILE), SPEC)?;
    let check = sitec(&deploy, &["check", SPEC_FILE]);
    assert!(check.status.success(), "check: {}", text_of(&check));

    common::take_down_leftover_fleet("projtest")?;
    let up = sitec(&deploy, &["fleet", "up", SPEC_FILE]);
    let _down = Down(&deploy, SPEC_FILE);
    assert!(up.status.success(), "fleet up: {}", text_of(&up));
    let applied = sitec(&deploy, &["apply", SPEC_FILE, "--yes"]);
    assert!(applied.status.success(), "apply: {}", text_of(&applied));
    let balancer = address(&deploy, "pjlb")?;
    let paths = ["/", "/admin/login/", "/static/css/welcome_page.css"];
    all_answer(&balancer, &paths)?;

    // An upload saved as the app's user is served by nginx from the media
    // folder, with its bytes, as a sandboxed page; files and folders Django
    // makes there are the app's, group www-data, closed to others.
    let upload = save_upload(&deploy, SPEC_FILE, "mysite", "pjrun")?;
    serves_upload(&balancer, "mysite.localhost", &upload)?;
    let ssh_config = deploy.join(".fleet/projtest/ssh_config");
    let modes = Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args([
            "pjrun",
            &format!(
                "cd /srv/sitec/apps/mysite/media/uploads && stat -c '%U:%G %a' . docs {upload}"
            ),
        ])
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&modes.stdout),
        "app-mysite:www-data 2750\napp-mysite:www-data 2750\napp-mysite:www-data 640\n",
        "the media folder, a folder Django made, the upload: {}",
        text_of(&modes)
    );

    // The project with psycopg2 serves, and its virtualenv has the wheel
    // built on the runner from psycopg2's sdist.
    all_answer_for(&balancer, "blog.localhost", &["/admin/login/"])?;
    let imported = Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args([
            "pjrun",
            "/srv/sitec/apps/blog/current/venv/bin/python -c 'import psycopg2; print(psycopg2.__version__)'",
        ])
        .stdin(Stdio::null())
        .output()?;
    assert!(
        String::from_utf8_lossy(&imported.stdout).starts_with("2.9.10"),
        "psycopg2 on the runner: {}",
        text_of(&imported)
    );

    // The ASGI app answers HTTP, and a WebSocket through the balancer and
    // the runner's nginx echoes and closes cleanly.
    all_answer_for(&balancer, "echo.localhost", &["/", "/healthz"])?;
    let echoed = websocket_echo(&balancer, "echo.localhost", "/ws/echo/", "hello, sitec")?;
    assert_eq!(echoed, "hello, sitec");
    websocket_closed_cleanly_by_a_rolling_restart(&deploy, &balancer, "echo", "echo.localhost")?;
    // Its environment holds the spec's env block.
    serves_text(&balancer, "echo.localhost", "/", "Hello from the spec.")?;

    // The developer's .env stayed home.
    let env_shipped = Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args(["pjrun", "test -e /srv/sitec/apps/mysite/current/.env"])
        .stdin(Stdio::null())
        .status()?;
    assert!(
        !env_shipped.success(),
        "the project's .env reached the runner"
    );

    // Nothing changed: whatever the spelling, and after a comment.
    assert_no_changes(&deploy, SPEC_FILE, "a second plan");
    assert_no_changes(&deploy, &format!("./{SPEC_FILE}"), "./ spelling");
    let absolute = deploy.join(SPEC_FILE);
    assert_no_changes(&deploy, &absolute.to_string_lossy(), "absolute path");
    std::fs::write(
        deploy.join(SPEC_FILE),
        format!(
            "# The Wagtail site.\n#\n{}",
            SPEC.replace("\napp mysite", "\n# Its app.\napp mysite")
        ),
    )?;
    assert_no_changes(&deploy, SPEC_FILE, "after a comment-only edit");

    // A redeploy: a new release with a new file, listed by the plan.
    let added = project.join("mysite/static/css/added.css");
    std::fs::write(&added, "body { color: black; }\n")?;
    let plan = sitec(&deploy, &["plan", SPEC_FILE]);
    assert!(
        text_of(&plan).contains("+ mysite/static/css/added.css"),
        "the plan lists the release's new file: {}",
        text_of(&plan)
    );
    let applied = sitec(&deploy, &["apply", SPEC_FILE, "--yes"]);
    assert!(applied.status.success(), "redeploy: {}", text_of(&applied));
    all_answer(
        &balancer,
        &[&paths[..], &["/static/css/added.css"]].concat(),
    )?;
    // The new release serves the upload of the old one.
    serves_upload(&balancer, "mysite.localhost", &upload)?;
    assert_no_changes(&deploy, SPEC_FILE, "after the redeploy");

    // A settings layer changes a variable of the echo app's environment:
    // systemd reads the environment file only when it starts the worker, so
    // the plan restarts it; gunicorn's config reads it again at each reload
    // (its unit says so), so gunicorn reloads: the same master, new workers,
    // and the new value is served.
    let unit = |unit: &str, property: &str| -> Result<String, String> {
        let out = Command::new("ssh")
            .arg("-F")
            .arg(&ssh_config)
            .args(["pjrun", &format!("systemctl show -P {property} {unit}")])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ssh: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    const GUNICORN: &str = "sitec-app-echo";
    const WORKER: &str = "sitec-app-echo-worker-ticker";
    // The worker runs, and systemd never restarted it on a failure: a new
    // MainPID below is the plan's restart, not a crash loop's.
    let running = |why: &str| -> Result<String, String> {
        let pid = unit(WORKER, "MainPID")?;
        let restarts = unit(WORKER, "NRestarts")?;
        if pid == "0" || pid.is_empty() || restarts != "0" {
            return Err(format!(
                "{why}: the worker is not running steadily (MainPID {pid:?}, NRestarts {restarts:?})"
            ));
        }
        Ok(pid)
    };
    let pid_before = unit(GUNICORN, "MainPID")?;
    let worker_before = running("before the environment change")?;
    // A settings layer for echo on pjrun: planned (the plan says each
    // restart and the first thing that makes it), then applied.
    let layer = |body: &str, restarts: &[&str], what: &str| -> TestResult {
        std::fs::write(
            deploy.join(SPEC_FILE),
            format!("{SPEC}\nsettings app echo host pjrun {{\n{body}\n}}\n"),
        )?;
        let plan = sitec(&deploy, &["plan", SPEC_FILE]);
        for restart in restarts {
            let line = format!("* service:{restart}");
            assert!(
                text_of(&plan).contains(&line),
                "{what}: the plan says {line}: {}",
                text_of(&plan)
            );
        }
        let applied = sitec(&deploy, &["apply", SPEC_FILE, "--yes"]);
        assert!(applied.status.success(), "{what}: {}", text_of(&applied));
        Ok(())
    };
    let greeting = "  env { ECHO_GREETING = \"Hello again\" }";
    layer(
        greeting,
        &[
            "sitec-app-echo: reload (file:/etc/sitec/apps/echo/environment",
            "sitec-app-echo-worker-ticker: restart (file:/etc/sitec/apps/echo/environment",
        ],
        "env change",
    )?;
    serves_text(&balancer, "echo.localhost", "/", "Hello again.")?;
    let pid_after = unit(GUNICORN, "MainPID")?;
    assert_eq!(
        pid_before, pid_after,
        "gunicorn's master was restarted, not reloaded"
    );
    let worker_after = running("after the environment change")?;
    assert_ne!(worker_before, worker_after, "the worker was not restarted");
    assert_no_changes(&deploy, SPEC_FILE, "after the environment change");

    // A Django setting (sitec_settings.py, not the environment): the worker
    // imported the old one at start, so it restarts too.
    layer(
        &format!("{greeting}\n  ECHO_COLOUR = \"blue\""),
        &["sitec-app-echo-worker-ticker: restart (file:/etc/sitec/apps/echo/python/sitec_settings.py"],
        "settings change",
    )?;
    let worker_last = running("after the settings change")?;
    assert_ne!(worker_after, worker_last, "the worker was not restarted");
    assert_no_changes(&deploy, SPEC_FILE, "after the settings change");
    Ok(())
}

/// The operator's Python (Debian 12's 3.11 here) builds a wheelhouse for
/// hosts on 3.12: every compiled wheel in it is a cp312 one.
#[test]
fn a_wheelhouse_for_another_python_minor_holds_that_minors_wheels() -> TestResult {
    let source = tempfile::tempdir()?;
    std::fs::write(
        source.path().join("requirements.txt"),
        "# a compiled package, so its wheel names a Python\ncharset-normalizer==3.5.3\n",
    )?;
    let operator = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()?;
    let operator = String::from_utf8_lossy(&operator.stdout).trim().to_string();
    let hosts = if operator == "3.12" { "3.13" } else { "3.12" };
    let built = sitec::plan::wheelhouse::build(
        source.path(),
        "requirements.txt",
        &[],
        hosts,
        &cache(),
        &sitec::plan::wheelhouse::Builds {
            platform: &sitec::plan::wheelhouse::Platform::debian_12(),
            host: &sitec::plan::build::Nowhere,
            packages: &[],
            python_tree: None,
        },
        &|_| {},
    )?;
    let abi = format!("cp{}", hosts.replace('.', ""));
    let names: Vec<String> = built
        .wheels
        .iter()
        .map(|w| w.path.display().to_string())
        .collect();
    let compiled: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("charset_normalizer"))
        .collect();
    assert!(
        !compiled.is_empty()
            && compiled
                .iter()
                .all(|n| n.contains(&format!("-{abi}-")) && n.contains("manylinux")),
        "operator {operator}, hosts {hosts}: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("gunicorn-27.0.1")),
        "{names:?}"
    );
    assert_eq!(
        built.host_requirements,
        "charset-normalizer==3.5.3\ngunicorn==27.0.1\n"
    );
    Ok(())
}

const SHARED_FILE: &str = "mediatest.site";

/// Two runners of one app (`mediatest`: a balancer, two runners, a
/// database host; addresses `fleet up` allocates).
const SHARED_SPEC: &str = r#"use std/platform

provider local { kind = local }

host mtlb { provider = local  roles = [balancer] }
host mtrun1 { provider = local  roles = [runner] }
host mtrun2 { provider = local  roles = [runner] }
host mtrun3 { provider = local  roles = [] }
host mtdb { provider = local  roles = [postgres] }
host mtbak { provider = local  roles = [backup] }

checks {
  balancer_redundancy = off
  database_redundancy = off
}

database main { engine = postgres  primary = mtdb }

app blog {
  source = "../blog"
  wsgi = "blog.wsgi:application"
  domains = ["blog.localhost"]
  paths = ["."]
  replicas = 2
  static "/static/" = "collected_static"
  media "/media/" = "uploads"
  databases { default = main }
  settings { SECRET_KEY = secret("blog.secret_key") }
}

# The blog's leader: its brick of the media volume is snapshotted.
backup media {
  from = [mtrun1]
  to = mtbak
  every = 1h
  keep { hourly = 4 }
}
"#;

/// `ssh HOST COMMAND` into fleet `fleet` of the spec in `deploy`.
fn ssh_in(deploy: &Path, fleet: &str, host: &str, command: &str) -> Result<String, String> {
    let ssh_config = deploy.join(format!(".fleet/{fleet}/ssh_config"));
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args([host, command])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ssh {host}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{host}: {command}: {}", text_of(&out)))
    }
}

/// The app's user has one uid on every runner: sitec's, from the app's
/// name. A runner where `app-blog` exists with another uid (made before
/// sitec, by hand) fails its plan line and the apply with the commands
/// that fix it, changing nothing there; once the user is gone, apply
/// makes it with the fleet's uid.
#[test]
fn two_runners_of_an_app_share_its_user_ids() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("mediatest")?;
    let work = tempfile::Builder::new()
        .prefix("sitec-mediatest-")
        .tempdir()?;
    copy_sample(
        &repo().join("examples/apps/blog"),
        &work.path().join("blog"),
    )?;
    let deploy = work.path().join("deploy");
    std::fs::create_dir_all(&deploy)?;
    std::fs::write(deploy.join(SHARED_FILE), SHARED_SPEC)?;
    let check = sitec(&deploy, &["check", SHARED_FILE]);
    assert!(check.status.success(), "check: {}", text_of(&check));

    common::take_down_leftover_fleet("mediatest")?;
    let up = sitec(&deploy, &["fleet", "up", SHARED_FILE]);
    let _down = Down(&deploy, SHARED_FILE);
    assert!(up.status.success(), "fleet up: {}", text_of(&up));

    // The blog on one runner first: an upload in mtrun1's own folder,
    // which the volume of two runners is then mounted over.
    std::fs::write(deploy.join(SHARED_FILE), one_runner_spec())?;
    let applied = sitec(&deploy, &["apply", SHARED_FILE, "--yes"]);
    assert!(
        applied.status.success(),
        "one runner: {}",
        text_of(&applied)
    );
    let zero = save_upload(&deploy, SHARED_FILE, "blog", "mtrun1")?;
    runner_serves_upload(&deploy, "mtrun1", &zero)?;
    std::fs::write(deploy.join(SHARED_FILE), SHARED_SPEC)?;

    // app-blog made by hand on mtrun2, with the uid useradd picks.
    let made = ssh_in(
        &deploy,
        "mediatest",
        "mtrun2",
        "useradd --system --no-create-home app-blog && id -u app-blog",
    )?;
    let plan = sitec(&deploy, &["plan", SHARED_FILE]);
    let said = text_of(&plan);
    assert!(
        said.contains(&format!("user `app-blog` has uid {}", made.trim()))
            && said.contains("usermod --uid"),
        "the plan names the other uid and the fix: {said}"
    );
    let applied = sitec(&deploy, &["apply", SHARED_FILE, "--yes"]);
    let said = text_of(&applied);
    assert!(
        !applied.status.success() && said.contains("usermod --uid"),
        "apply fails naming the fix: {said}"
    );
    // Nothing changed there: no user renumbered, no folder of the app's.
    assert_eq!(
        ssh_in(
            &deploy,
            "mediatest",
            "mtrun2",
            "id -u app-blog; test -e /srv/sitec/apps/blog || echo none"
        )?,
        format!("{made}none\n"),
        "the refused runner changed"
    );

    ssh_in(&deploy, "mediatest", "mtrun2", "userdel app-blog")?;
    let applied = sitec(&deploy, &["apply", SHARED_FILE, "--yes"]);
    assert!(applied.status.success(), "apply: {}", text_of(&applied));
    let ids = "id -u app-blog; id -g app-blog; getent group app-blog | cut -d: -f3";
    let on_run1 = ssh_in(&deploy, "mediatest", "mtrun1", ids)?;
    assert_eq!(on_run1, ssh_in(&deploy, "mediatest", "mtrun2", ids)?);
    let numbers: Vec<u32> = on_run1.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(
        numbers.len() == 3
            && numbers.iter().all(|n| *n == numbers[0])
            && (40000..60000).contains(&numbers[0]),
        "app-blog's uid, gid and group: {on_run1:?}"
    );
    let balancer = address_in(&deploy, SHARED_FILE, "mtlb")?;
    all_answer_for(&balancer, "blog.localhost", &["/"])?;
    assert_no_changes(&deploy, SHARED_FILE, "a second plan of the shared media");
    // The upload mtrun1 took alone was copied into the volume: every
    // runner serves it, and mtrun1's own folder still holds it.
    for host in ["mtrun1", "mtrun2"] {
        runner_serves_upload(&deploy, host, &zero)?;
    }
    serves_upload(&balancer, "blog.localhost", &zero)?;

    // The media volume: an upload saved on mtrun1 is served by mtrun2's
    // nginx and by the balancer, with its bytes.
    let on = |host: &str, command: &str| ssh_in(&deploy, "mediatest", host, command);
    let first = save_upload(&deploy, SHARED_FILE, "blog", "mtrun1")?;
    runner_serves_upload(&deploy, "mtrun2", &first)?;
    serves_upload(&balancer, "blog.localhost", &first)?;
    // Owned as on one runner: the app's uid, www-data, in folders of 2750.
    let folder = "/srv/sitec/apps/blog/media/uploads";
    let modes = on(
        "mtrun2",
        &format!("stat -c '%a %U:%G' {folder} {folder}/docs {folder}/{first}"),
    )?;
    assert_eq!(
        modes, "2750 app-blog:www-data\n2750 app-blog:www-data\n640 app-blog:www-data\n",
        "the upload's folders and file through mtrun2's mount"
    );
    // Bricks on both runners and an arbiter on the database host.
    let bricks = on("mtrun1", "gluster volume info blog_uploads")?;
    assert!(
        bricks.contains("Number of Bricks: 1 x (2 + 1) = 3") && bricks.contains("Status: Started"),
        "{bricks}"
    );
    // All of it over TLS, by the fleet CA's certificates of the hosts named.
    let options = on(
        "mtrun1",
        "for o in client.ssl server.ssl auth.ssl-allow; do gluster volume get blog_uploads $o | awk -v o=$o '$1 == o { print $2 }'; done",
    )?;
    assert_eq!(
        options, "on\non\nmtdb,mtrun1,mtrun2\n",
        "the volume's TLS options"
    );
    gluster_refuses_strangers(&deploy)?;
    shared_media_is_backed_up(&deploy, &first)?;

    // One brick host down (mtrun1: glusterd and its brick process): the
    // upload is still served by mtrun2, and mtrun2 still takes uploads.
    // (Debian's glusterd.service stops the local bricks with it; the kill
    // is for one that outlived it.)
    on(
        "mtrun1",
        "pid=$(cat /var/run/gluster/vols/blog_uploads/*.pid) && systemctl stop glusterd; \
         kill $pid 2>/dev/null; sleep 1; ! kill -0 $pid 2>/dev/null",
    )?;
    runner_serves_upload(&deploy, "mtrun2", &first)?;
    let second = save_upload(&deploy, SHARED_FILE, "blog", "mtrun2")?;
    runner_serves_upload(&deploy, "mtrun2", &second)?;
    // glusterd starts its brick again, which heals from the others.
    on("mtrun1", "systemctl start glusterd")?;
    runner_serves_upload(&deploy, "mtrun1", &second)?;

    // A redeploy (a code change): both uploads still served.
    let template = work.path().join("blog/blog/redeployed.txt");
    std::fs::write(&template, "a new release\n")?;
    let applied = sitec(&deploy, &["apply", SHARED_FILE, "--yes"]);
    assert!(applied.status.success(), "redeploy: {}", text_of(&applied));
    for name in [&first, &second] {
        serves_upload(&balancer, "blog.localhost", name)?;
    }
    assert_no_changes(&deploy, SHARED_FILE, "after the redeploy");
    let third = a_runner_replaced_moves_its_brick(&deploy, &balancer, &[&first, &second])?;
    back_to_one_runner(&deploy, &[&zero, &first, &second, &third])
}

/// `SHARED_SPEC` with the blog on mtrun1 alone, and no backup of its
/// media (the fleet's btrfs on mtrun1 is where two runners put the brick,
/// not where one runner keeps its folder).
fn one_runner_spec() -> String {
    let alone = SHARED_SPEC.replace("  replicas = 2\n", "  runners = [mtrun1]\n");
    let end = alone.find("# The blog's leader").unwrap_or(alone.len());
    alone[..end].to_string()
}

/// The blog back on mtrun1 alone: its own folder again, into which apply
/// copies the volume's files from mtrun1's brick, so every upload is
/// served, the ones taken on two runners too; a plan then says "No
/// changes".
fn back_to_one_runner(deploy: &Path, uploads: &[&str]) -> TestResult {
    std::fs::write(deploy.join(SHARED_FILE), one_runner_spec())?;
    let applied = sitec(deploy, &["apply", SHARED_FILE, "--yes"]);
    assert!(
        applied.status.success(),
        "back to one runner: {}",
        text_of(&applied)
    );
    let folder = "/srv/sitec/apps/blog/media/uploads";
    let mounted = ssh_in(
        deploy,
        "mediatest",
        "mtrun1",
        &format!("mountpoint -q {folder} && echo mounted || echo own"),
    )?;
    assert_eq!(mounted, "own\n", "mtrun1's folder is its own again");
    for name in uploads {
        runner_serves_upload(deploy, "mtrun1", name)?;
    }
    assert_no_changes(deploy, SHARED_FILE, "back on one runner");
    Ok(())
}

/// The blog's runners go from [mtrun1, mtrun2] to [mtrun1, mtrun3] (a
/// host that ran nothing), under load through the balancer: apply moves
/// mtrun2's brick to mtrun3, healed before it reports, while mtrun2's
/// glusterd still runs (mtrun2 is drained of the blog first, as mtdb
/// takes its database access, and goes after the app's runners), fails
/// no request, and
/// mtrun2 keeps its brick's folder and data.
/// mtrun3's brick holds every upload's bytes, its nginx and the balancer
/// serve them, an upload it takes is served by mtrun1, whose mount was not
/// remounted (its gunicorn kept serving), and a plan then says "No
/// changes". Then back to [mtrun1, mtrun2]: mtrun2's kept brick folder
/// gets the upload mtrun3 took meanwhile.
fn a_runner_replaced_moves_its_brick(
    deploy: &Path,
    balancer: &str,
    uploads: &[&str],
) -> Result<String, Box<dyn std::error::Error>> {
    let on = |host: &str, command: &str| ssh_in(deploy, "mediatest", host, command);
    let mount = "systemctl show -p ActiveEnterTimestampMonotonic --value \
                 srv-sitec-apps-blog-media-uploads.mount";
    let mounted = on("mtrun1", mount)?;
    let moved = SHARED_SPEC
        .replace(
            "host mtrun3 { provider = local  roles = [] }",
            "host mtrun3 { provider = local  roles = [runner] }",
        )
        .replace("  replicas = 2\n", "  runners = [mtrun1, mtrun3]\n");
    std::fs::write(deploy.join(SHARED_FILE), &moved)?;
    let started = Instant::now();
    let load = common::load::Load::start(balancer, "blog.localhost", 4);
    load.wait_answered(20);
    let applied = sitec(deploy, &["apply", SHARED_FILE, "--yes"]);
    load.wait_answered(20);
    let (answered, failed) = load.stop();
    let said = text_of(&applied);
    assert!(applied.status.success(), "the move: {said}");
    eprintln!(
        "moving mtrun2's brick to mtrun3: apply took {:?}, {answered} requests answered, {} failed",
        started.elapsed(),
        failed.len()
    );
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "the move failed requests: {said}"
    );
    assert!(
        said.contains("mtrun2: directory:/srv/sitec/media-bricks: left in place (not empty)"),
        "mtrun2's bricks are left, and apply says so: {said}"
    );
    // mtrun2 is out of rotation before mtdb takes its database access
    // away, and stops the blog after the leader moved its brick and mtrun3
    // serves.
    let drained = said.find("mtrun2: draining blog before it leaves this host");
    let stopped = said.find("mtrun2: service:sitec-app-blog: stopped");
    let done = |host: &str| said.rfind(&format!("{host}: done"));
    assert!(
        drained.is_some() && drained < done("mtdb"),
        "mtrun2 is drained first: {said}"
    );
    assert!(
        stopped > done("mtrun1") && stopped > done("mtrun3"),
        "mtrun2 leaves the blog after its runners: {said}"
    );

    let brick = "/srv/sitec/media-bricks/blog.uploads";
    for name in uploads {
        // Healed onto mtrun3's brick itself, not only read through the mount.
        assert_eq!(
            on("mtrun3", &format!("cat {brick}/{name}"))?,
            UPLOAD,
            "{name}"
        );
        assert_eq!(
            on("mtrun2", &format!("cat {brick}/{name}"))?,
            UPLOAD,
            "{name}"
        );
        runner_serves_upload(deploy, "mtrun3", name)?;
        serves_upload(balancer, "blog.localhost", name)?;
    }
    let third = save_upload(deploy, SHARED_FILE, "blog", "mtrun3")?;
    runner_serves_upload(deploy, "mtrun1", &third)?;

    let (run2, run3) = (
        address_in(deploy, SHARED_FILE, "mtrun2")?,
        address_in(deploy, SHARED_FILE, "mtrun3")?,
    );
    let info = on("mtrun1", "gluster volume info blog_uploads")?;
    assert!(
        info.contains(&format!("Brick2: {run3}:{brick}\n"))
            && !info.contains(&format!("{run2}:"))
            && info.contains("Number of Bricks: 1 x (2 + 1) = 3"),
        "{info}"
    );
    let options = on(
        "mtrun1",
        "for o in auth.ssl-allow auth.allow; do gluster volume get blog_uploads $o | awk -v o=$o '$1 == o { print $2 }'; done",
    )?;
    let run1 = address_in(deploy, SHARED_FILE, "mtrun1")?;
    assert_eq!(options, format!("mtdb,mtrun1,mtrun3\n{run1},{run3}\n"));
    // mtrun2's glusterd ran while the leader moved its brick, so the
    // leader detached it: a connected peer that holds no brick.
    let pool = on("mtrun1", "gluster pool list")?;
    let state = |address: &str| {
        (pool.lines())
            .find(|l| l.split_whitespace().nth(1) == Some(address))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("gone")
            .to_string()
    };
    assert_eq!(state(&run3), "Connected", "{pool}");
    assert_eq!(state(&run2), "gone", "{pool}");
    assert_eq!(
        on("mtrun1", mount)?,
        mounted,
        "mtrun1's mount was remounted"
    );
    assert_no_changes(deploy, SHARED_FILE, "after the brick moved");

    // And back: mtrun2 (its glusterd started again by apply's first
    // phase, and probed into the pool) takes its brick back, into the folder it kept,
    // which the full heal after the move fills with what mtrun3 took
    // meanwhile (an index heal would not: the folder is on both).
    std::fs::write(
        deploy.join(SHARED_FILE),
        moved.replace("runners = [mtrun1, mtrun3]", "runners = [mtrun1, mtrun2]"),
    )?;
    let applied = sitec(deploy, &["apply", SHARED_FILE, "--yes"]);
    assert!(
        applied.status.success(),
        "the move back: {}",
        text_of(&applied)
    );
    assert_eq!(on("mtrun2", &format!("cat {brick}/{third}"))?, UPLOAD);
    for name in uploads.iter().copied().chain([third.as_str()]) {
        runner_serves_upload(deploy, "mtrun2", name)?;
    }
    let info = on("mtrun1", "gluster volume info blog_uploads")?;
    assert!(
        info.contains(&format!("Brick2: {run2}:{brick}\n")) && !info.contains(&format!("{run3}:")),
        "{info}"
    );
    assert_no_changes(deploy, SHARED_FILE, "after the brick moved back");
    Ok(third)
}

/// glusterd (24007) and mtrun1's brick refuse a TLS client without a
/// certificate (they close the connection after the handshake) and one
/// whose certificate another CA signed, even under an allowed name (`unknown
/// ca`), from mtlb, which is in no volume; mtrun2's own certificate gets in.
fn gluster_refuses_strangers(deploy: &Path) -> Result<(), String> {
    let on = |host: &str, command: &str| ssh_in(deploy, "mediatest", host, command);
    // The port mtrun1's brick process listens on (`volume status` wraps
    // a long brick name onto two lines).
    let brick = on(
        "mtrun1",
        "ss -Hltnp | awk '/\"glusterfsd\"/ { n = split($4, a, \":\"); print a[n]; exit }'",
    )?;
    let brick = brick.trim();
    assert!(
        brick.parse::<u16>().is_ok(),
        "mtrun1's brick port: {brick:?}"
    );
    let stranger_key = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -subj /CN=mtrun2 -days 1 -keyout /tmp/stranger.key -out /tmp/stranger.pem 2>/dev/null";
    on("mtlb", stranger_key)?;
    // `sleep 1` holds the connection open past the handshake: TLS 1.3
    // checks the client's certificate after it.
    let connect = |from: &str, port: &str, cert: &str| {
        on(
            from,
            &format!(
                "sleep 1 | timeout 20 openssl s_client -connect mtrun1:{port} {cert} >/tmp/s_client.out 2>&1; \
                 echo rc=$?; cat /tmp/s_client.out"
            ),
        )
    };
    for port in ["24007", brick] {
        let bare = connect("mtlb", port, "")?;
        assert!(
            bare.starts_with("rc=1") && bare.contains("unexpected eof"),
            "no certificate, port {port}: {bare}"
        );
        let stranger = connect(
            "mtlb",
            port,
            "-cert /tmp/stranger.pem -key /tmp/stranger.key",
        )?;
        assert!(
            stranger.starts_with("rc=1") && stranger.contains("alert unknown ca"),
            "another CA's certificate, port {port}: {stranger}"
        );
        let own = "-cert /usr/lib/ssl/glusterfs.pem -key /usr/lib/ssl/glusterfs.key \
                   -CAfile /usr/lib/ssl/glusterfs.ca -verify_return_error";
        let peer = connect("mtrun2", port, own)?;
        assert!(
            peer.starts_with("rc=0"),
            "mtrun2's certificate, port {port}: {peer}"
        );
    }
    Ok(())
}

/// The store's backup: mtrun1's brick (the leader's) is in its snapshots,
/// pulled to mtbak with the upload's bytes and listed by `sitec backups`;
/// the upload deleted, `sitec restore blog/uploads` writes the snapshot
/// back through mtrun1's mount (GlusterFS's own folders left out), and
/// mtrun2 serves it again.
fn shared_media_is_backed_up(deploy: &Path, upload: &str) -> Result<(), String> {
    let on = |host: &str, command: &str| ssh_in(deploy, "mediatest", host, command);
    let brick = "/srv/sitec/media-bricks/blog.uploads";
    on(
        "mtrun1",
        &format!("btrfs subvolume show {brick} >/dev/null"),
    )?;
    let took = sitec(deploy, &["backups", SHARED_FILE, "blog/uploads", "--now"]);
    assert!(took.status.success(), "backups --now: {}", text_of(&took));
    let listed = sitec(deploy, &["backups", SHARED_FILE, "blog/uploads", "--json"]);
    assert!(listed.status.success(), "backups: {}", text_of(&listed));
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&listed.stdout).map_err(|e| format!("backups --json: {e}"))?;
    let copy = (rows.iter())
        .filter(|r| r["on"] == "mtbak" && r["of"] == "mtrun1")
        .filter_map(|r| r["stamp"].as_str())
        .max()
        .ok_or_else(|| format!("no copy of blog/uploads on mtbak: {rows:?}"))?
        .to_string();
    let table = text_of(&sitec(deploy, &["backups", SHARED_FILE, "blog/uploads"]));
    assert!(
        table.contains(&format!("mtrun1/{copy}"))
            && table.contains("mtbak:/srv/sitec/backups/media/mtrun1"),
        "{table}"
    );
    let pulled = on(
        "mtbak",
        &format!("cat /srv/sitec/backups/media/mtrun1/{copy}/media.blog.uploads/{upload}"),
    )?;
    assert_eq!(pulled, UPLOAD, "mtbak's copy holds the upload");

    let folder = "/srv/sitec/apps/blog/media/uploads";
    on(
        "mtrun2",
        &format!(
            "cd / && runuser -u app-blog -- rm {folder}/{upload} && test ! -e {folder}/{upload}"
        ),
    )?;
    let restored = sitec(
        deploy,
        &[
            "restore",
            SHARED_FILE,
            "blog/uploads",
            "--snapshot",
            &format!("mtrun1/{copy}"),
            "--yes",
        ],
    );
    assert!(restored.status.success(), "restore: {}", text_of(&restored));
    eprintln!("{}", text_of(&restored));
    runner_serves_upload(deploy, "mtrun2", upload)?;
    let root = on("mtrun2", &format!("ls -A {folder}"))?;
    assert!(
        root.lines()
            .all(|name| name != ".glusterfs" && name != ".sitec-restore"),
        "the brick's index came back: {root}"
    );
    Ok(())
}

/// Waits (up to a minute) until the runner `host` of the mediatest fleet
/// serves the blog's upload `name` from its own nginx with its bytes. From
/// inside the runner, from 127.0.0.1: its nginx lets only the balancers
/// and the host itself connect.
fn runner_serves_upload(deploy: &Path, host: &str, name: &str) -> Result<(), String> {
    let get = format!(
        "port=$(sed -n 's/^ *listen \\([0-9.:]*\\);/\\1/p' /etc/nginx/sites-enabled/sitec-blog.conf); \
         curl -s -i --max-time 10 --interface 127.0.0.1 -H 'Host: blog.localhost' \"http://$port/media/{name}\""
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = ssh_in(deploy, "mediatest", host, &get).unwrap_or_else(|e| e);
        let ok = answer.starts_with("HTTP/1.1 200")
            && answer
                .to_ascii_lowercase()
                .contains("x-content-type-options: nosniff");
        if ok && answer.ends_with(&format!("\r\n\r\n{UPLOAD}")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{host}'s nginx, /media/{name}: {answer:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn address_in(dir: &Path, spec: &str, host: &str) -> Result<String, String> {
    let out = sitec(dir, &["fleet", "status", spec]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(host)).then(|| words.next().map(str::to_string))?
        })
        .ok_or_else(|| format!("{host} has no address: {}", text_of(&out)))
}

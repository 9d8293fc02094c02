//! Helpers the test binaries share that run the real programs on rendered
//! files (`tests/templates.rs` on sample contexts, `tests/render.rs` on the
//! examples' rendered trees): scratch directories, moving production paths
//! under them, finding and running programs, stub executables, a throwaway
//! nginx main config, Postgres as its own user, Redis children.
//!
//! Each test binary uses only some of them.
#![allow(dead_code)]

pub mod agent;
pub mod cli;
pub mod load;
pub mod tree;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path prefixes moved under a scratch directory, in contexts and rendered files.
pub const RELOCATED: [&str; 5] = ["/srv/", "/var/", "/etc/", "/run/", "/usr/local/"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files below `dir` whose name ends with `suffix`, as sorted paths relative to `dir`.
pub fn walk(dir: &Path, suffix: &str) -> Vec<String> {
    fn go(base: &Path, dir: &Path, suffix: &str, out: &mut Vec<String>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                go(base, &path, suffix, out);
            } else if path.to_string_lossy().ends_with(suffix) {
                let rel = path.strip_prefix(base).expect("path below its base");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, suffix, &mut out);
    out.sort();
    out
}

/// A directory that is deleted when dropped; readable by the postgres user.
/// `SITEC_KEEP_SCRATCH=1` keeps it for a look after a failure.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("sitec-test-{}-{what}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SITEC_KEEP_SCRATCH").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Moves every string of a context under one of `RELOCATED` below `root`.
pub fn relocate(value: &mut Value, root: &Path) {
    match value {
        Value::String(s) if RELOCATED.iter().any(|p| s.starts_with(p)) => {
            *s = format!("{}{s}", root.display());
        }
        Value::Array(items) => items.iter_mut().for_each(|v| relocate(v, root)),
        Value::Object(map) => map.values_mut().for_each(|v| relocate(v, root)),
        _ => {}
    }
}

/// Moves every absolute path under one of `RELOCATED` in a rendered file's
/// text below `root`: a prefix counts where a path can start (line start,
/// after a blank, a quote, `=`, `:`, `,`, `(` or `[`), not inside a URL.
pub fn relocate_text(text: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    let mut previous: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts = previous.is_none_or(|p| " \t\n'\"=:,([".contains(p));
        if c == '/' && starts && RELOCATED.iter().any(|p| text[i..].starts_with(p)) {
            out.push_str(&root);
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// The path of `program`, or a failure that says how to install it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed: run `apt-get install -y {package}` (or `bash .ci/setup`)")
    })
}

/// The variable a run sets to `1` to skip the tests that need root.
pub const SKIP_ROOT_TESTS: &str = "SITEC_SKIP_ROOT_TESTS";

pub fn is_root() -> bool {
    fs::metadata("/proc/self").expect("/proc/self").uid() == 0
}

/// Whether a test that needs root, and what `.ci/setup` installs for it,
/// can run here; `lacking` names what this machine lacks (nothing: it
/// can), `purpose` what the test needs it for. A test never passes by
/// doing nothing: lacking anything, it fails, unless the run opted out of
/// root tests with `SITEC_SKIP_ROOT_TESTS=1`, and then it says it skipped.
/// Callers return at once on `false`.
#[must_use]
pub fn root_test_can_run(lacking: &[String], purpose: &str) -> bool {
    if lacking.is_empty() {
        return true;
    }
    let why = format!("this test needs {} ({purpose})", lacking.join(" and "));
    if std::env::var(SKIP_ROOT_TESTS).is_ok_and(|v| v == "1") {
        eprintln!("skipped ({SKIP_ROOT_TESTS}=1): {why}");
        return false;
    }
    panic!(
        "{why}: run it as root on a machine `bash .ci/setup` set up, \
         or set {SKIP_ROOT_TESTS}=1 to skip the tests that need root"
    );
}

/// A test that needs root for `purpose`: see [`root_test_can_run`].
#[must_use]
pub fn require_root(purpose: &str) -> bool {
    let lacking = if is_root() {
        Vec::new()
    } else {
        vec!["root".to_string()]
    };
    root_test_can_run(&lacking, purpose)
}

/// Whether fleet tests can boot hosts here (root and systemd-nspawn): see
/// [`root_test_can_run`].
#[must_use]
pub fn can_boot() -> bool {
    let mut lacking = Vec::new();
    if !is_root() {
        lacking.push("root".to_string());
    }
    if !Path::new("/usr/bin/systemd-nspawn").exists() {
        lacking.push("systemd-nspawn (apt-get install systemd-container)".to_string());
    }
    root_test_can_run(&lacking, "it boots systemd-nspawn hosts")
}

/// Runs `command`; Ok(stdout) when it exits 0, otherwise everything it said.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(stdout + &stderr)
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{stdout}{stderr}",
            output.status
        ))
    }
}

/// Runs `command`, which must exit 0 and print nothing (warnings count as failures).
pub fn run_silent(command: &mut Command) -> Result<(), String> {
    let said = run(command)?;
    if said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{command:?} warned:\n{said}"))
    }
}

/// Polls `probe` every 100 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe() {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

/// A loopback port nobody listens on right now (other test binaries run at
/// the same time, so fixed ports could clash), and one this test binary
/// has not handed out before: the kernel may give the port it just freed
/// to the next `bind(0)`, so two calls in a row could return the same one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Writes an executable that exits 0 at `path`: `systemd-analyze verify`
/// insists that every `Exec*=` program exists.
pub fn stub_executable(path: &Path) -> Result<(), String> {
    write_script(path, "#!/bin/sh\nexit 0\n")
}

/// Writes an executable script at `path` (a stand-in for a program).
pub fn write_script(path: &Path, text: &str) -> Result<(), String> {
    fs::create_dir_all(path.parent().expect("script in a folder")).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| e.to_string())?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// Sends `sig` (`TERM`, `HUP`, ...) to one process, by its own pid.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Waits up to `limit` for `child` to exit by itself.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        sleep(Duration::from_millis(20));
    }
    None
}

/// Stubs every `Exec*=` program of a unit's text that lies below `root`;
/// every other one (/bin/kill, ...) must really exist.
pub fn stub_unit_programs(unit: &str, root: &Path) -> Result<(), String> {
    for line in unit.lines() {
        let Some((key, command)) = line.split_once('=') else {
            continue;
        };
        if !key.starts_with("Exec") {
            continue;
        }
        let program = command
            .trim_start_matches(['-', '@', ':', '+', '!'])
            .split_whitespace()
            .next()
            .unwrap_or_default();
        if Path::new(program).starts_with(root) {
            stub_executable(Path::new(program))?;
        }
    }
    Ok(())
}

/// `systemd-analyze verify` on unit files, which must pass without a word.
pub fn verify_units(units: &[PathBuf]) -> Result<(), String> {
    let analyze = require("systemd-analyze", "systemd");
    run_silent(
        Command::new(analyze)
            .arg("verify")
            .arg("--man=no")
            .args(units),
    )
}

/// `nginx -t` on a main config in `dir` that includes `sites` in its `http`
/// block, with every path of its own (pid, logs, temp files) inside `dir`.
pub fn nginx_test(dir: &Path, sites: &[PathBuf]) -> Result<(), String> {
    let nginx = require("nginx", "nginx");
    let d = dir.display();
    let includes: String = sites
        .iter()
        .map(|s| format!("include {};\n", s.display()))
        .collect();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
         access_log {d}/access.log;\nclient_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         {includes}}}\n"
    );
    fs::write(dir.join("nginx.conf"), main).map_err(|e| e.to_string())?;
    run_silent(
        Command::new(nginx)
            .arg("-t")
            .arg("-q")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf")),
    )
}

/// `python3 -m py_compile` on every module, then running each: generated
/// modules are plain assignments, so running one proves the literals and
/// imports are valid at run time, not only parseable. One interpreter for
/// all of them (starting one is the slow part).
/// Stub modules under `dir` for the dotted names in `modules` (packages
/// with an empty `__init__.py`, the last part a module of one line): what
/// sitec's settings module imports of the project's, when a test renders it
/// without the project.
pub fn stub_modules(dir: &Path, modules: &[&str]) -> Result<(), String> {
    for module in modules {
        let parts: Vec<&str> = module.split('.').collect();
        let mut folder = dir.to_path_buf();
        for package in &parts[..parts.len() - 1] {
            folder.push(package);
            fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            fs::write(folder.join("__init__.py"), "").map_err(|e| e.to_string())?;
        }
        fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        let file = folder.join(format!("{}.py", parts[parts.len() - 1]));
        fs::write(file, "DEBUG = True\n").map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn python_compile_and_run(modules: &[PathBuf], python_path: &[PathBuf]) -> Result<(), String> {
    let python = require("python3", "python3");
    let python_path = std::env::join_paths(python_path).map_err(|e| e.to_string())?;
    run_silent(
        Command::new(&python)
            .args(["-m", "py_compile"])
            .args(modules),
    )?;
    run_silent(
        Command::new(&python)
            .env("PYTHONPATH", python_path)
            .args([
                "-c",
                "import runpy, sys\nfor path in sys.argv[1:]: runpy.run_path(path)",
            ])
            .args(modules),
    )
}

/// The postgres system user's uid and gid, from /etc/passwd.
pub fn postgres_user() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .unwrap_or_else(|| panic!("no postgres user: run `apt-get install -y postgresql`"));
    let fields: Vec<&str> = line.split(':').collect();
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

/// The newest installed server's bin directory (`/usr/lib/postgresql/15/bin`).
pub fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no postgres server: run `apt-get install -y postgresql`"))
}

pub struct Postgres {
    pub bin: PathBuf,
    pub runuser: PathBuf,
    pub user: (u32, u32),
}

/// A running server, stopped when dropped.
pub struct Running<'a> {
    pub pg: &'a Postgres,
    pub config: PathBuf,
    pub log: PathBuf,
    pub socket: String,
    pub port: u64,
}

impl Running<'_> {
    pub fn psql(&self, query: &str) -> Result<String, String> {
        run(self
            .pg
            .command("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(&self.socket)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", query]))
        .map(|out| out.trim().to_owned())
        .map_err(|e| self.with_log(&e))
    }

    /// Runs a psql script file (`-f`), stopping at its first error.
    pub fn psql_file(&self, script: &Path) -> Result<String, String> {
        run(self
            .pg
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-h"])
            .arg(&self.socket)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-f")
            .arg(script))
        .map_err(|e| self.with_log(&e))
    }

    pub fn with_log(&self, error: &str) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        format!("{error}\nserver log {}:\n{log}", self.log.display())
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = run(self
            .pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.config)
            .args(["-m", "fast", "-w", "stop"]));
    }
}

impl Postgres {
    /// The newest installed server, run as the postgres user through runuser.
    pub fn installed() -> Postgres {
        Postgres {
            bin: postgres_bin(),
            runuser: require("runuser", "util-linux"),
            user: postgres_user(),
        }
    }

    /// `program` from the server's bin directory, run as the postgres user.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(&self.runuser);
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        command
    }

    pub fn own(&self, path: &Path) -> Result<(), String> {
        if !path.exists() {
            fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        std::os::unix::fs::chown(path, Some(self.user.0), Some(self.user.1))
            .map_err(|e| format!("chown {}: {e}", path.display()))
    }

    /// Writes `text` to `path`, owned by the postgres user.
    pub fn write(&self, path: &Path, text: &str) -> Result<(), String> {
        fs::create_dir_all(path.parent().expect("in a folder")).map_err(|e| e.to_string())?;
        fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.own(path)
    }

    /// One `initdb` at `dir`, for `copy_cluster`: initdb is the slow part.
    pub fn init_template(&self, dir: &Path) -> Result<(), String> {
        self.own(dir)?;
        run(self.command("initdb").arg("-D").arg(dir).args([
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            "--no-sync",
        ]))
        .map(drop)
    }

    /// A fresh cluster copied from `template`, at `data`.
    pub fn copy_cluster(&self, template: &Path, data: &Path) -> Result<(), String> {
        self.own(data.parent().expect("data directory in a folder"))?;
        run(Command::new("cp").arg("-a").arg(template).arg(data)).map(drop)
    }

    /// Starts the server on `config` (a config directory that names its data
    /// directory, or a data directory), with `options` for `postgres`.
    pub fn start(
        &self,
        config: &Path,
        log: &Path,
        socket: &str,
        port: u64,
        options: &str,
    ) -> Result<Running<'_>, String> {
        let running = Running {
            pg: self,
            config: config.to_owned(),
            log: log.to_owned(),
            socket: socket.to_owned(),
            port,
        };
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(config)
            .arg("-l")
            .arg(log)
            .args(["-o", options])
            .args(["-w", "-t", "30", "start"]))
        .map_err(|e| running.with_log(&e))?;
        Ok(running)
    }
}

/// A redis-server child, shut down when dropped.
pub struct Redis {
    pub child: Child,
}

impl Redis {
    /// `redis-server CONF ARGS...` (later arguments override the file).
    pub fn start(conf: &Path, args: &[String]) -> Result<Redis, String> {
        let server = require("redis-server", "redis-server");
        let child = Command::new(server)
            .arg(conf)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        Ok(Redis { child })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-cli` against `host:port` with `password`.
pub fn redis_cli(host: &str, port: u64, password: &str, args: &[&str]) -> Result<String, String> {
    let cli = require("redis-cli", "redis-tools");
    run(Command::new(cli)
        .args(["-h", host, "-p"])
        .arg(port.to_string())
        .args(["--no-auth-warning", "-a", password])
        .args(args))
}

/// [`redis_cli`] over TLS, the server checked against the CA in `ca`.
pub fn redis_cli_tls(
    host: &str,
    port: u64,
    password: &str,
    ca: &Path,
    args: &[&str],
) -> Result<String, String> {
    let mut tls = vec!["--tls", "--cacert"];
    let ca = ca.to_string_lossy();
    tls.push(&ca);
    tls.extend_from_slice(args);
    redis_cli(host, port, password, &tls)
}

/// A database server's TLS files for a test on this machine: a fleet CA
/// and a certificate for `localhost` and 127.0.0.1 signed by it (the
/// compiler's own, from a test secret), the key 0600. Each path is written
/// only where none is (a rendered tree has its own).
pub fn database_tls(cert: &Path, key: &Path, ca: &Path) -> Result<(), String> {
    let secret = "test fleet CA";
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let server = sitec::fleet_ca::server(secret, "db1", "postgres", &names)?;
    for (path, text) in [
        (cert, server.cert_pem),
        (key, server.key_pem),
        (ca, sitec::fleet_ca::ca_pem(secret)?),
    ] {
        if !path.exists() {
            fs::create_dir_all(path.parent().expect("in a folder")).map_err(|e| e.to_string())?;
            fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    fs::set_permissions(key, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

/// `bash -n` on shell scripts, then `shellcheck` (which must say nothing).
pub fn shell_check(scripts: &[PathBuf]) -> Result<(), String> {
    let bash = require("bash", "bash");
    for script in scripts {
        run_silent(Command::new(&bash).arg("-n").arg(script))?;
    }
    let shellcheck = require("shellcheck", "shellcheck");
    run_silent(Command::new(shellcheck).args(scripts))
}

/// `ssh-keygen -l` lists a fingerprint for every key line of an
/// `authorized_keys` file (options and comments allowed).
pub fn authorized_keys_check(file: &Path, keys: usize) -> Result<(), String> {
    let keygen = require("ssh-keygen", "openssh-client");
    let listed = run(Command::new(keygen).arg("-l").arg("-f").arg(file))?;
    let found = listed.lines().filter(|l| l.contains("(ED25519)")).count();
    if found == keys {
        Ok(())
    } else {
        Err(format!(
            "{keys} keys expected, ssh-keygen lists {found}:\n{listed}"
        ))
    }
}

/// A rendered private key, its header lines left out as the pull script
/// does, is one `ssh-keygen -y` reads; returns its public key.
pub fn private_key_check(file: &Path, scratch: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let keygen = require("ssh-keygen", "openssh-client");
    let text = fs::read_to_string(file).map_err(|e| e.to_string())?;
    let key: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let bare = scratch.join("bare-key");
    fs::write(&bare, key).map_err(|e| e.to_string())?;
    fs::set_permissions(&bare, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    run(Command::new(keygen).arg("-y").arg("-f").arg(&bare))
}

/// `sshd -t` on a config file, with a host key of its own (root: sshd
/// wants its privilege separation folder).
pub fn sshd_check(config: &Path, scratch: &Path) -> Result<(), String> {
    let keygen = require("ssh-keygen", "openssh-client");
    let sshd = require("sshd", "openssh-server");
    let host_key = scratch.join("host-key");
    if !host_key.exists() {
        run(Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key))?;
    }
    fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
    run_silent(
        Command::new(sshd)
            .arg("-t")
            .arg("-f")
            .arg(config)
            .arg("-h")
            .arg(&host_key),
    )
}

/// The test that boots fleet `name`, one process at a time on this
/// machine (two worktrees, or a CI run beside a developer's, would share
/// its name and addresses). Tests of different fleets run side by side:
/// `sitec fleet up` itself serialises address allocation and bridges
/// across fleets. Held until dropped.
pub fn exclusive(name: &str) -> Result<fs::File, Box<dyn std::error::Error>> {
    fs::create_dir_all("/run/sitec")?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("/run/sitec/test-{name}.lock"))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(file)
}

/// Takes down the fleet named `name` when a killed test run left it up
/// from a scratch folder of its own: its lease still claims the name and
/// the spec's addresses, so this run's `fleet up` would be refused. Call
/// it holding the test's lock for that name (no live test then uses the
/// fleet). A fleet of that name run from outside the temp folder (an
/// operator's) is left alone, and its `up` error stands.
pub fn take_down_leftover_fleet(name: &str) -> Result<(), String> {
    let lease = Path::new("/run/sitec/fleets").join(format!("{name}.json"));
    let Ok(text) = fs::read_to_string(&lease) else {
        return Ok(());
    };
    let lease: Value = serde_json::from_str(&text).map_err(|e| format!("{lease:?}: {e}"))?;
    let (Some(state_dir), Some(bridge)) = (lease["state_dir"].as_str(), lease["bridge"].as_str())
    else {
        return Ok(());
    };
    let state_dir = Path::new(state_dir);
    let Some(state_root) = state_dir.parent() else {
        return Ok(());
    };
    if !state_dir.starts_with(std::env::temp_dir()) || !state_dir.join("fleet.json").exists() {
        return Ok(());
    }
    run(Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args([
            "fleet",
            "down",
            "--name",
            name,
            "--bridge",
            bridge,
            "--state-root",
        ])
        .arg(state_root))
    .map(|_| ())
}

/// The network link on this machine whose interface index is `index`
/// (a container's `host0` names its outer end in `/sys/class/net/host0/iflink`).
pub fn link_with_index(index: &str) -> String {
    fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .find(|link| {
            fs::read_to_string(link.path().join("ifindex")).is_ok_and(|i| i.trim() == index)
        })
        .map(|link| link.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no link with index {index:?}"))
}

//! Every template under `templates/` renders each of its sample contexts under
//! `tests/template_contexts/TEMPLATE/*.json` in handlebars strict mode, and the
//! program that reads the rendered file accepts it: `nginx -t`, `systemd-analyze
//! verify`, `python3` (compile, then run), a real `postgres` started on the
//! config (and a standby that streams from the primary sample), a real
//! `pg_hba.conf` loaded without errors, a real `redis-server` answering `PING`
//! (and a replica that links to the primary sample). Nothing is skipped: a
//! missing program fails with the `apt-get` line that installs it.
//!
//! The contexts are also checked against `templates/README.md`: every field a
//! sample has is documented there, and every documented field is in every
//! sample.
//!
//! Sample contexts name production paths (`/srv/sitec/...`, `/var/lib/...`). The
//! test moves every such path under a scratch directory (see `RELOCATED`), so
//! each rendered file points at a tree this test owns and deletes
//! (`SITEC_KEEP_SCRATCH=1` keeps it), and moves every port by one offset, so
//! that two runs at once do not collide.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use handlebars::Handlebars;
use serde_json::Value;

/// Path prefixes a context's strings are moved under the scratch directory from.
const RELOCATED: [&str; 5] = ["/srv/", "/var/", "/etc/", "/run/", "/usr/local/"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The program that checks a rendered template, chosen by the template's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checker {
    Nginx,
    Systemd,
    Python,
    PostgresConf,
    PostgresHba,
    Redis,
    Toml,
}

fn checker(template: &str) -> Option<Checker> {
    if template.starts_with("runner/nginx") {
        Some(Checker::Nginx)
    } else if template.starts_with("systemd/") && template.ends_with(".service") {
        Some(Checker::Systemd)
    } else if template.ends_with(".py") {
        Some(Checker::Python)
    } else if template == "postgres/postgresql.conf" {
        Some(Checker::PostgresConf)
    } else if template == "postgres/pg_hba.conf" {
        Some(Checker::PostgresHba)
    } else if template.starts_with("redis/") {
        Some(Checker::Redis)
    } else if template.ends_with(".toml") {
        Some(Checker::Toml)
    } else {
        None
    }
}

/// Files below `dir` whose name ends with `suffix`, as sorted paths relative to `dir`.
fn walk(dir: &Path, suffix: &str) -> Vec<String> {
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

/// Template names: paths below `templates/` without `.hbs` (`runner/nginx-app.conf`).
fn templates() -> Vec<String> {
    walk(&repo().join("templates"), ".hbs")
        .into_iter()
        .map(|t| t.trim_end_matches(".hbs").to_owned())
        .collect()
}

struct Sample {
    template: String,
    name: String,
    context: Value,
}

impl Sample {
    fn label(&self) -> String {
        format!("{} with {}.json", self.template, self.name)
    }
}

fn samples(template: &str) -> Vec<Sample> {
    let dir = repo().join("tests/template_contexts").join(template);
    if !dir.is_dir() {
        return Vec::new();
    }
    walk(&dir, ".json")
        .into_iter()
        .map(|file| {
            let path = dir.join(&file);
            let text = fs::read_to_string(&path).expect("sample context readable");
            let context = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            Sample {
                template: template.to_owned(),
                name: file.trim_end_matches(".json").to_owned(),
                context,
            }
        })
        .collect()
}

/// Every sample of every template `which` checks.
fn samples_for(which: Checker) -> Vec<Sample> {
    templates()
        .iter()
        .filter(|t| checker(t) == Some(which))
        .flat_map(|t| samples(t))
        .collect()
}

fn render(template: &str, context: &Value) -> Result<String, String> {
    let path = repo().join("templates").join(format!("{template}.hbs"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_template_string(template, text)
        .map_err(|e| format!("{template}: {e}"))?;
    hb.render(template, context)
        .map_err(|e| format!("{template}: {e}"))
}

/// A directory that is deleted when dropped; readable by the postgres user.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("sitec-templates-{}-{what}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Scratch(dir)
    }

    fn path(&self) -> &Path {
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

/// Moves every string under one of `RELOCATED` below `root`.
/// and shifts every `port` and `primary_port` by `port_shift()`.
fn relocate(value: &mut Value, root: &Path) {
    match value {
        Value::String(s) if RELOCATED.iter().any(|p| s.starts_with(p)) => {
            *s = format!("{}{s}", root.display());
        }
        Value::Array(items) => items.iter_mut().for_each(|v| relocate(v, root)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v.as_u64() {
                    Some(port) if key == "port" || key == "primary_port" => {
                        *v = Value::from(port + port_shift());
                    }
                    _ => relocate(v, root),
                }
            }
        }
        _ => {}
    }
}

/// Ports the servers of this test listen on, before `port_shift()`: the
/// samples' (postgres 15432-15433, redis 16379-16380) and the pg_hba check's.
const TEST_PORTS: [u64; 5] = [15432, 15433, 15434, 16379, 16380];

/// How far this run moves every port, so that two runs of this test (two
/// checkouts, CI beside a developer) do not meet: the first shift, starting
/// from one derived from the process id, at which every port is free.
fn port_shift() -> u64 {
    static SHIFT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SHIFT.get_or_init(|| {
        let start = u64::from(std::process::id());
        (0..400)
            .map(|attempt| 1000 + ((start + attempt * 7) % 400) * 100)
            .find(|shift| {
                TEST_PORTS.iter().all(|port| {
                    let port = u16::try_from(port + shift).expect("ports stay below 65536");
                    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                })
            })
            .expect("no free block of loopback ports")
    })
}

/// Renders `sample` with its paths moved below `root`.
fn render_relocated(sample: &Sample, root: &Path) -> Result<(Value, String), String> {
    let mut context = sample.context.clone();
    relocate(&mut context, root);
    let text = render(&sample.template, &context)?;
    Ok((context, text))
}

fn field<'a>(context: &'a Value, name: &str) -> &'a str {
    context[name]
        .as_str()
        .unwrap_or_else(|| panic!("context field `{name}` is not a string"))
}

fn port(context: &Value, name: &str) -> u64 {
    context[name]
        .as_u64()
        .unwrap_or_else(|| panic!("context field `{name}` is not a number"))
}

/// The path of `program`, or a failure that says how to install it.
fn require(program: &str, package: &str) -> PathBuf {
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

fn require_root(why: &str) {
    let uid = fs::metadata("/proc/self").expect("/proc/self").uid();
    assert_eq!(uid, 0, "this test must run as root: {why}");
}

/// Runs `command`; Ok(stdout) when it exits 0, otherwise everything it said.
fn run(command: &mut Command) -> Result<String, String> {
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
fn run_silent(command: &mut Command) -> Result<(), String> {
    let said = run(command)?;
    if said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{command:?} warned:\n{said}"))
    }
}

/// Runs every sample through `check`, then fails once with every failure.
fn check_all(which: Checker, check: impl FnMut(&Sample) -> Result<(), String>) {
    let samples = samples_for(which);
    assert!(!samples.is_empty(), "no template is checked by {which:?}");
    check_samples(&samples, check);
}

fn check_samples(samples: &[Sample], mut check: impl FnMut(&Sample) -> Result<(), String>) {
    let mut failures = String::new();
    for sample in samples {
        if let Err(e) = check(sample) {
            let _ = writeln!(failures, "--- {}:\n{e}\n", sample.label());
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn every_template_has_samples_a_checker_and_a_header() {
    let templates = templates();
    assert!(!templates.is_empty(), "no templates under templates/");
    let mut failures = Vec::new();
    for template in &templates {
        if checker(template).is_none() {
            failures.push(format!(
                "{template}: no program checks it (add a Checker in tests/templates.rs)"
            ));
        }
        let samples = samples(template);
        if samples.is_empty() {
            failures.push(format!(
                "{template}: no sample context (add tests/template_contexts/{template}/NAME.json)"
            ));
        }
        for sample in samples {
            match render(template, &sample.context) {
                Err(e) => failures.push(format!("{}: {e}", sample.label())),
                Ok(text) => {
                    let origin = field(&sample.context, "origin");
                    let head: Vec<&str> = text.lines().take(3).collect();
                    let first = format!("# Generated by sitec from {origin}");
                    if !head.first().is_some_and(|l| l.starts_with(&first))
                        || !head.iter().any(|l| l.contains("do not edit by hand"))
                    {
                        failures.push(format!(
                            "{}: must open with `{first}` and say `do not edit by hand`",
                            sample.label()
                        ));
                    }
                }
            }
        }
    }
    // A context folder whose template is gone is a stale sample.
    for file in walk(&repo().join("tests/template_contexts"), ".json") {
        let template = Path::new(&file).parent().expect("in a folder");
        if !templates.iter().any(|t| Path::new(t) == template) {
            failures.push(format!(
                "tests/template_contexts/{file}: no template templates/{}.hbs",
                template.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_context_field_is_needed() {
    // Strict mode turns a missing field into an error: removing any top-level
    // field of a sample must break its rendering, or the field is documented
    // but unused.
    let mut failures = Vec::new();
    for template in templates() {
        let text = fs::read_to_string(repo().join("templates").join(format!("{template}.hbs")))
            .expect("template readable");
        for sample in samples(&template) {
            let Value::Object(map) = &sample.context else {
                failures.push(format!("{}: not a JSON object", sample.label()));
                continue;
            };
            for key in map.keys() {
                let mut smaller = map.clone();
                smaller.remove(key);
                // `{{#if}}` treats a missing field as false even in strict mode:
                // such fields are checked against templates/README.md instead.
                let optional = text.contains(&format!("{{{{#if {key}}}}}"));
                if !optional && render(&template, &Value::Object(smaller)).is_ok() {
                    failures.push(format!("{}: renders without `{key}`", sample.label()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_hop_waits_longer_than_its_client() {
    // The balancer drops idle backend connections after
    // `balancer_idle_timeout_seconds`; nginx and gunicorn must keep them longer,
    // or a request can be sent on a connection the server is closing.
    for template in templates() {
        for sample in samples(&template) {
            let c = &sample.context;
            if let (Some(idle), Some(keep)) = (
                c["balancer_idle_timeout_seconds"].as_u64(),
                c["keepalive_seconds"].as_u64(),
            ) {
                assert!(
                    keep > idle,
                    "{}: keepalive_seconds {keep} must exceed balancer_idle_timeout_seconds {idle}",
                    sample.label()
                );
            }
        }
    }
}

#[test]
fn nginx_accepts_every_vhost() {
    require_root("nginx -t opens its pid and log files as root");
    let nginx = require("nginx", "nginx");
    check_all(Checker::Nginx, |sample| {
        let scratch = Scratch::new("nginx");
        let dir = scratch.path();
        let (context, text) = render_relocated(sample, dir)?;
        fs::create_dir_all(field(&context, "log_dir")).map_err(|e| e.to_string())?;
        fs::write(dir.join("site.conf"), text).map_err(|e| e.to_string())?;
        let d = dir.display();
        let main = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             access_log {d}/access.log;\nclient_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             include {d}/site.conf;\n}}\n"
        );
        fs::write(dir.join("nginx.conf"), main).map_err(|e| e.to_string())?;
        run_silent(
            Command::new(&nginx)
                .arg("-t")
                .arg("-q")
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf")),
        )
    });
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    let analyze = require("systemd-analyze", "systemd");
    check_all(Checker::Systemd, |sample| {
        let scratch = Scratch::new("systemd");
        let dir = scratch.path();
        let (_, text) = render_relocated(sample, dir)?;
        // verify insists that every command exists and is executable: the ones
        // the context placed under the scratch tree become stubs, every other
        // one (/bin/kill, ...) must really exist.
        for line in text.lines() {
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
            if program.starts_with(&*dir.to_string_lossy()) {
                let stub = Path::new(program);
                fs::create_dir_all(stub.parent().expect("stub in a folder"))
                    .map_err(|e| e.to_string())?;
                fs::write(stub, "#!/bin/sh\nexit 0\n").map_err(|e| e.to_string())?;
                fs::set_permissions(stub, fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
            }
        }
        let name = Path::new(&sample.template)
            .file_name()
            .expect("template file name");
        let unit = dir.join(name);
        fs::write(&unit, text).map_err(|e| e.to_string())?;
        run_silent(
            Command::new(&analyze)
                .arg("verify")
                .arg("--man=no")
                .arg(&unit),
        )
    });
}

#[test]
fn python_compiles_and_runs_every_module() {
    let python = require("python3", "python3");
    check_all(Checker::Python, |sample| {
        let scratch = Scratch::new("python");
        let (_, text) = render_relocated(sample, scratch.path())?;
        let name = Path::new(&sample.template).file_name().expect("file name");
        let module = scratch.path().join(name);
        fs::write(&module, text).map_err(|e| e.to_string())?;
        run_silent(
            Command::new(&python)
                .args(["-m", "py_compile"])
                .arg(&module),
        )?;
        // Generated modules are plain assignments: running one proves the
        // literals and imports are valid at run time, not only parseable.
        run_silent(
            Command::new(&python)
                .args(["-c", "import runpy, sys; runpy.run_path(sys.argv[1])"])
                .arg(&module),
        )
    });
}

#[test]
fn toml_parses_every_config() {
    // The daemons' configs (agent, balancer) are TOML. Until the daemons can
    // check a config themselves, Python's tomllib (a strict TOML 1.0 parser)
    // does; a branch without TOML templates has nothing to check here.
    let samples = samples_for(Checker::Toml);
    if samples.is_empty() {
        return;
    }
    let python = require("python3", "python3");
    check_samples(&samples, |sample| {
        let scratch = Scratch::new("toml");
        let (_, text) = render_relocated(sample, scratch.path())?;
        let file = scratch.path().join("config.toml");
        fs::write(&file, text).map_err(|e| e.to_string())?;
        run_silent(
            Command::new(&python)
                .args([
                    "-c",
                    "import sys, tomllib; tomllib.load(open(sys.argv[1], 'rb'))",
                ])
                .arg(&file),
        )
    });
}

/// The postgres system user's uid and gid, from /etc/passwd.
fn postgres_user() -> (u32, u32) {
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
fn postgres_bin() -> PathBuf {
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

struct Postgres {
    bin: PathBuf,
    runuser: PathBuf,
    user: (u32, u32),
}

/// A running server, stopped when dropped.
struct Running<'a> {
    pg: &'a Postgres,
    config: PathBuf,
    log: PathBuf,
    socket: String,
    port: u64,
}

impl Running<'_> {
    fn psql(&self, query: &str) -> Result<String, String> {
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

    fn with_log(&self, error: &str) -> String {
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
    /// `program` from the server's bin directory, run as the postgres user.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(&self.runuser);
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        command
    }

    fn own(&self, path: &Path) -> Result<(), String> {
        if !path.exists() {
            fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        std::os::unix::fs::chown(path, Some(self.user.0), Some(self.user.1))
            .map_err(|e| format!("chown {}: {e}", path.display()))
    }

    /// Writes `text` to `path`, owned by the postgres user.
    fn write(&self, path: &Path, text: &str) -> Result<(), String> {
        fs::create_dir_all(path.parent().expect("in a folder")).map_err(|e| e.to_string())?;
        fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.own(path)
    }

    /// A fresh cluster copied from `template`, at `data`.
    fn copy_cluster(&self, template: &Path, data: &Path) -> Result<(), String> {
        self.own(data.parent().expect("data directory in a folder"))?;
        run(Command::new("cp").arg("-a").arg(template).arg(data)).map(drop)
    }

    /// Starts the server on `config` (a config directory that names its data
    /// directory, or a data directory).
    fn start(
        &self,
        config: &Path,
        log: &Path,
        socket: &str,
        port: u64,
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
            .args(["-w", "-t", "30", "start"]))
        .map_err(|e| running.with_log(&e))?;
        Ok(running)
    }
}

/// The pg_hba.conf the postgresql.conf samples run with (pg_hba.conf samples
/// are checked on their own): the test connects through the socket, the
/// standby replicates over loopback.
const TEST_HBA: &str = "local all all peer\n\
    host all all 127.0.0.1/32 scram-sha-256\n\
    host replication all 127.0.0.1/32 scram-sha-256\n";

#[test]
fn postgres_starts_on_every_config() {
    require_root("the server runs as the postgres user, through runuser");
    let pg = Postgres {
        bin: postgres_bin(),
        runuser: require("runuser", "util-linux"),
        user: postgres_user(),
    };
    let scratch = Scratch::new("postgres");
    // One initdb, copied for every primary: initdb is the slow part.
    let template = scratch.path().join("template-cluster");
    pg.own(&template).expect("template cluster directory");
    run(pg.command("initdb").arg("-D").arg(&template).args([
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
        "--no-sync",
    ]))
    .expect("initdb");

    // Samples run in name order and primaries stay up, so a standby sample
    // really streams from the primary sample on its `primary_port`: its data
    // directory is a pg_basebackup of that primary, through the replication
    // role and slot the standby's context names.
    let mut primaries: Vec<Running> = Vec::new();
    check_all(Checker::PostgresConf, |sample| {
        let dir = scratch.path().join(&sample.name);
        pg.own(&dir)?;
        let (context, text) = render_relocated(sample, &dir)?;
        let data = Path::new(field(&context, "data_directory"));
        pg.write(Path::new(field(&context, "hba_file")), TEST_HBA)?;
        pg.write(Path::new(field(&context, "ident_file")), "")?;
        let socket = field(&context, "unix_socket_directory");
        pg.own(Path::new(socket))?;
        let standby = &context["standby"];
        if standby.is_null() {
            pg.copy_cluster(&template, data)?;
        } else {
            let primary = primaries
                .iter()
                .find(|p| Some(p.port) == standby["primary_port"].as_u64())
                .ok_or("a standby sample must follow a primary sample on its primary_port")?;
            let (user, password) = (
                field(standby, "replication_user"),
                field(standby, "replication_password"),
            );
            primary.psql(&format!(
                "create role {user} with replication login password '{password}'"
            ))?;
            primary.psql(&format!(
                "select pg_create_physical_replication_slot('{}')",
                field(standby, "slot_name")
            ))?;
            pg.own(data.parent().expect("in a folder"))?;
            run(pg
                .command("pg_basebackup")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    user,
                    "-X",
                    "stream",
                    "--no-sync",
                    "-p",
                ])
                .arg(primary.port.to_string())
                .arg("-D")
                .arg(data)
                .env("PGPASSWORD", password))
            .map_err(|e| primary.with_log(&e))?;
            pg.write(&data.join("standby.signal"), "")?;
        }
        let config = dir.join("config");
        pg.write(&config.join("postgresql.conf"), &text)?;
        let server = pg.start(
            &config,
            &dir.join("server.log"),
            socket,
            port(&context, "port"),
        )?;
        let recovering = server.psql("select pg_is_in_recovery()")?;
        if standby.is_null() {
            if recovering != "f" {
                return Err(format!("a primary in recovery: {recovering:?}"));
            }
            primaries.push(server);
            return Ok(());
        }
        if recovering != "t" {
            return Err(server.with_log(&format!("a standby not in recovery: {recovering:?}")));
        }
        let primary = primaries
            .iter()
            .find(|p| Some(p.port) == standby["primary_port"].as_u64())
            .expect("found above");
        let query = format!(
            "select state from pg_stat_replication where application_name = '{}'",
            field(&context, "host")
        );
        if eventually(Duration::from_secs(10), || {
            primary.psql(&query).is_ok_and(|s| s == "streaming")
        }) {
            Ok(())
        } else {
            Err(server.with_log("the standby never streamed from its primary"))
        }
    });
    drop(primaries);

    check_all(Checker::PostgresHba, |sample| {
        let dir = scratch.path().join(&sample.name);
        pg.own(&dir)?;
        let (_, text) = render_relocated(sample, &dir)?;
        let data = dir.join("data");
        pg.copy_cluster(&template, &data)?;
        pg.write(&data.join("pg_hba.conf"), &text)?;
        let socket = dir.join("socket");
        pg.own(&socket)?;
        let socket = socket.to_string_lossy().into_owned();
        let port = 15434 + port_shift();
        pg.write(
            &data.join("postgresql.auto.conf"),
            &format!(
                "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket}'\n"
            ),
        )?;
        // A server refuses to start on a pg_hba.conf it cannot read; once up,
        // pg_hba_file_rules lists every line it kept and any error in one.
        let server = pg.start(&data, &dir.join("server.log"), &socket, port)?;
        let errors = server.psql(
            "select count(*) filter (where error is not null) || ' errors, ' || count(*) || ' rules' from pg_hba_file_rules",
        )?;
        if errors.starts_with("0 errors") {
            Ok(())
        } else {
            Err(format!("pg_hba_file_rules: {errors}"))
        }
    });
}

/// A redis-server child, shut down when dropped.
struct Redis {
    child: Child,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_cli(cli: &Path, context: &Value, args: &[&str]) -> Result<String, String> {
    let host = context["bind"][0].as_str().unwrap_or("127.0.0.1");
    run(Command::new(cli)
        .args(["-h", host, "-p"])
        .arg(port(context, "port").to_string())
        .args(["--no-auth-warning", "-a", field(context, "password")])
        .args(args))
}

/// Polls `probe` every 100 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe() {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn redis_starts_on_every_config() {
    let server = require("redis-server", "redis-server");
    let cli = require("redis-cli", "redis-tools");
    let scratch = Scratch::new("redis");
    // All samples run at once, so a replica sample can follow the primary sample.
    let mut running = Vec::new();
    let mut failures = String::new();
    for sample in samples_for(Checker::Redis) {
        let dir = scratch.path().join(&sample.name);
        let started = render_relocated(&sample, &dir).and_then(|(context, text)| {
            fs::create_dir_all(field(&context, "dir")).map_err(|e| e.to_string())?;
            for file in ["log_file", "pid_file"] {
                let parent = Path::new(field(&context, file))
                    .parent()
                    .expect("in a folder");
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let conf = dir.join("redis.conf");
            fs::write(&conf, text).map_err(|e| e.to_string())?;
            let child = Command::new(&server)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))?;
            Ok((context, Redis { child }))
        });
        match started {
            Ok(started) => running.push((sample, started)),
            Err(e) => {
                let _ = writeln!(failures, "--- {}:\n{e}\n", sample.label());
            }
        }
    }
    assert!(
        !running.is_empty() || !failures.is_empty(),
        "no redis samples"
    );
    for (sample, (context, _)) in &running {
        let up = eventually(Duration::from_secs(5), || {
            redis_cli(&cli, context, &["ping"]).is_ok_and(|out| out.trim() == "PONG")
        });
        let replica = !context["replicaof"].is_null();
        let linked = !replica
            || eventually(Duration::from_secs(10), || {
                redis_cli(&cli, context, &["info", "replication"])
                    .is_ok_and(|out| out.contains("master_link_status:up"))
            });
        let pid_written = Path::new(field(context, "pid_file")).is_file();
        if !up || !linked || !pid_written {
            let log = fs::read_to_string(field(context, "log_file")).unwrap_or_default();
            let _ = writeln!(
                failures,
                "--- {}: {}\nredis log:\n{log}\n",
                sample.label(),
                if !up {
                    "no PONG"
                } else if !linked {
                    "replica never linked to its primary"
                } else {
                    "no pid file"
                }
            );
        }
    }
    for (_, (context, _)) in &running {
        let _ = redis_cli(&cli, context, &["shutdown", "nosave"]);
    }
    drop(running);
    assert!(failures.is_empty(), "{failures}");
}

/// Not a check: renders one template for `examples/apps/blog/smoke.sh`, which
/// deploys the blog with the real templates before sitec's render stage exists.
/// `SITEC_RENDER=TEMPLATE:CONTEXT.json:OUTPUT cargo test --test templates render_one -- --ignored`
#[test]
#[ignore = "a tool for smoke.sh, run with --ignored and SITEC_RENDER"]
fn render_one() {
    let spec = std::env::var("SITEC_RENDER").expect("SITEC_RENDER=TEMPLATE:CONTEXT.json:OUTPUT");
    let parts: Vec<&str> = spec.splitn(3, ':').collect();
    let [template, context, output] = parts[..] else {
        panic!("SITEC_RENDER=TEMPLATE:CONTEXT.json:OUTPUT, not {spec}");
    };
    let text = fs::read_to_string(context).unwrap_or_else(|e| panic!("{context}: {e}"));
    let context: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{context}: {e}"));
    let rendered = render(template, &context).unwrap_or_else(|e| panic!("{e}"));
    fs::write(output, rendered).unwrap_or_else(|e| panic!("{output}: {e}"));
}

/// Field paths per template, from the tables of templates/README.md
/// (`static[].url` is the key `url` of each element of the list `static`).
fn documented_fields() -> Vec<(String, Vec<String>)> {
    let readme =
        fs::read_to_string(repo().join("templates/README.md")).expect("templates/README.md");
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in readme.lines() {
        if let Some(name) = line
            .strip_prefix("## `")
            .and_then(|l| l.strip_suffix(".hbs`"))
        {
            sections.push((name.to_owned(), Vec::new()));
        } else if let (Some(row), Some((_, fields))) =
            (line.strip_prefix("| `"), sections.last_mut())
        {
            if let Some((field, _)) = row.split_once('`') {
                fields.push(field.to_owned());
            }
        }
    }
    sections
}

/// Every field path of a context, in the README's notation.
fn field_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.push(path.clone());
        match value {
            Value::Object(_) => field_paths(value, &path, out),
            Value::Array(items) => {
                for item in items {
                    field_paths(item, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn readme_documents_every_context_field() {
    let documented = documented_fields();
    let mut failures = Vec::new();
    for template in templates() {
        let Some((_, fields)) = documented.iter().find(|(t, _)| *t == template) else {
            failures.push(format!(
                "templates/README.md has no section ## `{template}.hbs`"
            ));
            continue;
        };
        for sample in samples(&template) {
            let mut paths = Vec::new();
            field_paths(&sample.context, "", &mut paths);
            for path in &paths {
                if !fields.contains(path) {
                    failures.push(format!(
                        "{}: `{path}` is not in templates/README.md",
                        sample.label()
                    ));
                }
            }
            for field in fields.iter().filter(|f| !f.contains(['.', '['])) {
                if !paths.contains(field) {
                    failures.push(format!(
                        "{}: lacks `{field}` (send optional fields as null)",
                        sample.label()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

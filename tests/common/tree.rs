//! A rendered spec written out as the hosts would have it, and the real
//! programs run on it: `tests/render.rs` runs them on every example,
//! `tests/check_contract.rs` on generated specs that `sitec check` accepts.
//!
//! Each check adds one line per failure to `failures` (so one run reports
//! all of them) and returns how many things it checked, so a caller can
//! tell a pass from a tree that held nothing to check.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sitec::compile::Rendered;
use sitec::resources::Kind;

use super::{eventually, free_port, redis_cli_tls, relocate_text, Postgres, Redis, Scratch};

/// One rendered file.
pub struct File {
    pub host: String,
    pub path: String,
    pub content: String,
    pub secret: bool,
}

/// Every file sitec writes (absent ones are removed, not written), host by host.
pub fn files(rendered: &Rendered) -> Vec<File> {
    let mut out = Vec::new();
    for host in &rendered.hosts {
        for resource in &host.resources {
            if let Kind::File {
                path,
                content,
                secret,
                absent: false,
                ..
            } = &resource.kind
            {
                out.push(File {
                    host: host.name.clone(),
                    path: path.clone(),
                    content: content.clone(),
                    secret: *secret,
                });
            }
        }
    }
    out
}

/// A render written into a scratch directory: `ROOT/HOST/<path>` for
/// every file, with every production path in every file moved below
/// `ROOT/HOST`, so files point at each other inside the tree. Every
/// directory resource is created, as apply would.
pub struct Tree {
    scratch: Scratch,
    /// What the failures name: the spec.
    name: String,
    pub rendered: Rendered,
}

impl Tree {
    pub fn new(rendered: Rendered, name: &str, what: &str) -> Tree {
        let scratch = Scratch::new(what);
        let root = scratch.path().join("tree");
        sitec::output::write_tree(&root, &rendered).expect("write the tree");
        for host in &rendered.hosts {
            let base = root.join(&host.name);
            for resource in &host.resources {
                match &resource.kind {
                    Kind::File {
                        path,
                        absent: false,
                        ..
                    } => {
                        let file = base.join(path.trim_start_matches('/'));
                        let text = fs::read_to_string(&file).expect("a rendered file");
                        fs::write(&file, relocate_text(&text, &base)).expect("relocate");
                    }
                    Kind::Directory { path, .. } => {
                        fs::create_dir_all(base.join(path.trim_start_matches('/')))
                            .expect("a directory");
                    }
                    _ => {}
                }
            }
        }
        Tree {
            scratch,
            name: name.to_owned(),
            rendered,
        }
    }

    pub fn host(&self, host: &str) -> PathBuf {
        self.scratch.path().join("tree").join(host)
    }

    /// `(host, file)` for every rendered file whose path matches `which`.
    pub fn files(&self, which: impl Fn(&str) -> bool) -> Vec<(String, PathBuf)> {
        files(&self.rendered)
            .into_iter()
            .filter(|f| which(&f.path))
            .map(|f| {
                let file = self.host(&f.host).join(f.path.trim_start_matches('/'));
                (f.host, file)
            })
            .collect()
    }

    /// The addresses `host` is known by: where others dial it, and where
    /// its services listen (its `private_address`, when it has one).
    pub fn addresses(&self, host: &str) -> Vec<String> {
        (self.rendered.hosts.iter())
            .filter(|h| h.name == host)
            .flat_map(|h| [h.address.clone(), h.listen_address.clone()])
            .collect()
    }

    /// The `run` lines of `host`'s commands run as `user`.
    pub fn commands_as(&self, host: &str, user: &str) -> Vec<String> {
        (self.rendered.hosts.iter())
            .filter(|h| h.name == host)
            .flat_map(|h| &h.resources)
            .filter_map(|r| match &r.kind {
                Kind::Command {
                    run, user: Some(u), ..
                } if u == user => Some(run.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn label(&self, host: &str) -> String {
        format!("{} host {host}", self.name)
    }
}

pub fn note(failures: &mut Vec<String>, label: &str, result: Result<(), String>) {
    if let Err(e) = result {
        failures.push(format!("--- {label}:\n{e}"));
    }
}

/// Groups `(host, file)` pairs by host, in order.
fn by_host(files: Vec<(String, PathBuf)>) -> BTreeMap<String, Vec<PathBuf>> {
    let mut hosts: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (host, file) in files {
        hosts.entry(host).or_default().push(file);
    }
    hosts
}

/// A site with its `listen ADDRESS:PORT` moved to a free loopback port:
/// `nginx -t` binds every listen socket, and the host's address is not this
/// machine's.
fn listen_on_loopback(site: &Path) -> Result<(), String> {
    let text = fs::read_to_string(site).map_err(|e| e.to_string())?;
    let listen = regex::Regex::new(r"(?m)^(\s*listen\s+)\S+:\d+;").expect("a pattern");
    if !listen.is_match(&text) {
        return Err("no `listen ADDRESS:PORT;`".into());
    }
    let moved = listen.replace_all(&text, |c: &regex::Captures| {
        format!("{}127.0.0.1:{};", &c[1], free_port())
    });
    fs::write(site, moved.as_bytes()).map_err(|e| e.to_string())
}

/// `nginx -t` on every runner's sites (as root: it opens its pid and log files).
pub fn nginx(tree: &Tree, failures: &mut Vec<String>) -> usize {
    let sites = tree.files(|p| p.starts_with("/etc/nginx/sites-enabled/"));
    let mut checked = 0;
    for (host, sites) in by_host(sites) {
        checked += 1;
        let dir = tree.host(&host).join("nginx-test");
        fs::create_dir_all(&dir).expect("nginx test folder");
        // Debian's nginx log folder, where the sites log.
        fs::create_dir_all(tree.host(&host).join("var/log/nginx")).expect("log folder");
        let tested = sites
            .iter()
            .try_for_each(|site| listen_on_loopback(site))
            .and_then(|()| super::nginx_test(&dir, &sites));
        note(failures, &tree.label(&host), tested);
    }
    checked
}

/// `systemd-analyze verify` on every host's units: those rendered, and
/// those a `timer` resource makes on the host (`host::assess::timer_units`).
pub fn units(tree: &Tree, failures: &mut Vec<String>) -> usize {
    let mut units = tree.files(|p| p.starts_with("/etc/systemd/system/"));
    for host in &tree.rendered.hosts {
        for resource in &host.resources {
            if let Kind::Timer {
                name,
                every_seconds,
                command,
                user,
            } = &resource.kind
            {
                let made = sitec::host::assess::timer_units(name, *every_seconds, command, user);
                for (path, text) in made {
                    let file = tree.host(&host.name).join(path.trim_start_matches('/'));
                    fs::create_dir_all(file.parent().expect("in a folder")).expect("a folder");
                    fs::write(&file, text).expect("a timer's unit");
                    units.push((host.name.clone(), file));
                }
            }
        }
    }
    let mut checked = 0;
    for (host, units) in by_host(units) {
        checked += units.len();
        let base = tree.host(&host);
        let units = match with_packaged_units(units).and_then(named_for_relocated_mounts) {
            Ok(units) => units,
            Err(e) => {
                note(failures, &tree.label(&host), Err(e));
                continue;
            }
        };
        let stubbed = units.iter().try_for_each(|unit| {
            let text = fs::read_to_string(unit).map_err(|e| e.to_string())?;
            super::stub_unit_programs(&text, &base)
        });
        note(
            failures,
            &tree.label(&host),
            stubbed.and_then(|()| super::verify_units(&units)),
        );
    }
    checked
}

/// Mount units under the names their relocated `Where=` has (systemd
/// refuses a mount unit whose name is not its path's): each `.mount` is
/// moved to `systemd-escape --path WHERE`.mount beside it.
fn named_for_relocated_mounts(units: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for unit in units {
        if unit.extension().is_none_or(|e| e != "mount") {
            out.push(unit);
            continue;
        }
        let text = fs::read_to_string(&unit).map_err(|e| e.to_string())?;
        let place = text.lines().find_map(|l| l.strip_prefix("Where="));
        let place = place.ok_or_else(|| format!("{}: no Where=", unit.display()))?;
        let name = format!("{}.mount", sitec::model::volumes::mount_unit(place));
        let renamed = unit.with_file_name(name);
        fs::rename(&unit, &renamed).map_err(|e| e.to_string())?;
        out.push(renamed);
    }
    Ok(out)
}

/// Units with a rendered drop-in (`NAME.service.d/*.conf`) for a unit a
/// package ships (Debian's `redis-server@.service`): the packaged unit is
/// copied beside its drop-in folder as NAME.service and verified in the
/// drop-in's place, so systemd reads the two together.
fn with_packaged_units(units: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for unit in units {
        let folder = unit
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        let Some(name) = folder.as_deref().and_then(|f| f.strip_suffix(".d")) else {
            out.push(unit);
            continue;
        };
        let beside = unit
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join(name))
            .ok_or("no folder")?;
        if !beside.exists() {
            // `redis-server@cache.service` is an instance of `redis-server@.service`.
            let template = match name.split_once('@') {
                Some((prefix, rest)) => {
                    format!("{prefix}@{}", &rest[rest.find('.').unwrap_or(0)..])
                }
                None => name.to_string(),
            };
            let packaged = Path::new("/lib/systemd/system").join(&template);
            fs::copy(&packaged, &beside).map_err(|e| format!("{}: {e}", packaged.display()))?;
        }
        if !out.contains(&beside) {
            out.push(beside);
        }
    }
    Ok(out)
}

/// Every backup config through `sitec data snapshot|pull --check`, the
/// keys through `ssh-keygen`, the sshd configs through `sshd -t` (as root:
/// sshd wants its privilege separation folder). How many of each were
/// checked.
pub fn backup_files(tree: &Tree, failures: &mut Vec<String>) -> [usize; 4] {
    let mut checked = [0; 4];
    let configs = tree.files(|p| p.starts_with("/etc/sitec/backup/") && p.ends_with(".toml"));
    for (host, config) in configs {
        checked[0] += 1;
        let side = if config.to_string_lossy().ends_with(".pull.toml") {
            "pull"
        } else {
            "snapshot"
        };
        note(
            failures,
            &tree.label(&host),
            super::run(
                std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
                    .args(["data", side, "--check", "--config"])
                    .arg(&config),
            )
            .map(drop),
        );
    }
    let keys = tree.files(|p| p.starts_with("/etc/sitec/backup/authorized_keys."));
    for (host, file) in keys {
        checked[1] += 1;
        let text = fs::read_to_string(&file).expect("rendered");
        let lines = text.lines().filter(|l| l.starts_with("restrict,")).count();
        note(
            failures,
            &tree.label(&host),
            super::authorized_keys_check(&file, lines),
        );
    }
    let private = tree.files(|p| p.starts_with("/etc/sitec/backup/") && p.ends_with(".key"));
    for (host, file) in private {
        checked[2] += 1;
        note(
            failures,
            &tree.label(&host),
            super::private_key_check(&file, &tree.host(&host)).map(drop),
        );
    }
    for (host, file) in tree.files(|p| p.starts_with("/etc/ssh/sshd_config.d/")) {
        checked[3] += 1;
        note(
            failures,
            &tree.label(&host),
            super::sshd_check(&file, &tree.host(&host)),
        );
    }
    checked
}

/// The backup host's key opens the database hosts' `authorized_keys`: the
/// public key derived from the private key the backup host holds is the one
/// each database host it pulls from accepts. How many hosts accept one.
pub fn backup_keys(tree: &Tree, failures: &mut Vec<String>) -> usize {
    let mut checked = 0;
    for (vault, key) in tree.files(|p| p.starts_with("/etc/sitec/backup/") && p.ends_with(".key")) {
        let public = match super::private_key_check(&key, &tree.host(&vault)) {
            Ok(public) => public,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let public = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let accepting: Vec<String> = tree
            .files(|p| p.starts_with("/etc/sitec/backup/authorized_keys."))
            .into_iter()
            .filter(|(_, f)| fs::read_to_string(f).is_ok_and(|t| t.contains(&public)))
            .map(|(host, _)| host)
            .collect();
        checked += accepting.len();
        if accepting.is_empty() {
            failures.push(format!(
                "{}: no host accepts {}",
                tree.label(&vault),
                key.display()
            ));
        }
    }
    checked
}

/// `python3` compiles and runs every module, the project settings modules
/// sitec's import standing in as stubs (a project needs its requirements
/// installed to import).
pub fn python(tree: &Tree, failures: &mut Vec<String>) -> usize {
    let modules: Vec<PathBuf> = tree
        .files(|p| p.ends_with(".py"))
        .into_iter()
        .map(|(_, module)| module)
        .collect();
    if modules.is_empty() {
        return 0;
    }
    let imported: Vec<String> = (modules.iter())
        .filter_map(|m| fs::read_to_string(m).ok())
        .flat_map(|text| {
            (text.lines())
                .filter(|l| l.ends_with("- the project's own settings"))
                .filter_map(|l| Some(l.strip_prefix("from ")?.split(' ').next()?.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let stubs = tree.scratch.path().join("stub-projects");
    let imported: Vec<&str> = imported.iter().map(String::as_str).collect();
    let ran = super::stub_modules(&stubs, &imported)
        .and_then(|()| super::python_compile_and_run(&modules, &[stubs]));
    note(failures, &tree.name, ran);
    modules.len()
}

/// Every `.toml` file parses, and the daemons that read theirs accept it:
/// `sitec agent --check` every `agent.toml`, `sitec balancer --check`
/// every `balancer.toml`.
pub fn toml(tree: &Tree, failures: &mut Vec<String>) -> usize {
    let mut checked = 0;
    for (host, file) in tree.files(|p| p.ends_with(".toml")) {
        checked += 1;
        let text = fs::read_to_string(&file).expect("rendered");
        let mut parsed = text
            .parse::<toml_edit::DocumentMut>()
            .map(drop)
            .map_err(|e| format!("not TOML: {e}\n{text}"));
        // A balancer's certificates are placeholders here, no PEM: a config
        // that names one is checked with real ones by `tests/render.rs`
        // (every_balancer_config_passes_the_balancers_check).
        let daemon = ["agent", "balancer"]
            .into_iter()
            .find(|d| file.ends_with(format!("etc/sitec/{d}.toml")))
            .filter(|d| *d == "agent" || !text.contains("[[tls.cert]]"));
        if let (true, Some(daemon)) = (parsed.is_ok(), daemon) {
            parsed = super::run(
                std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
                    .args([daemon, "--check", "--config"])
                    .arg(&file),
            )
            .map(drop);
        }
        note(
            failures,
            &format!("{} {}", tree.label(&host), file.display()),
            parsed,
        );
    }
    checked
}

/// The value of `key = 'value'` (or `key value`) in a rendered config.
pub fn setting<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        if !rest.starts_with([' ', '=']) {
            return None;
        }
        let value = rest.trim_start().trim_start_matches('=').trim();
        Some(value.trim_matches(['\'', '"']))
    })
}

/// `text` with its `KEY = VALUE` (or `KEY VALUE`) line's value replaced.
fn set(text: &str, key: &str, value: &str) -> String {
    let pattern = regex::Regex::new(&format!(r"(?m)^({}\s*=?\s*).*$", regex::escape(key)))
        .expect("a pattern");
    pattern
        .replace(text, |c: &regex::Captures| format!("{}{value}", &c[1]))
        .into_owned()
}

/// `host=... port=...` of a standby's `primary_conninfo`, as `host:port`.
pub fn conninfo_address(conninfo: &str) -> Option<String> {
    let word = |key: &str| {
        conninfo
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    };
    Some(format!("{}:{}", word("host")?, word("port")?))
}

/// A real `postgres` on every cluster's `postgresql.conf` and `pg_hba.conf`
/// (as root: the server runs as the postgres user): primaries as
/// primaries, standbys in recovery from a copy of their primary's data, and
/// every line of both files understood. `template` is a data directory
/// `initdb` made (`Postgres::init_template`). How many primaries ran.
pub fn postgres(tree: &Tree, pg: &Postgres, template: &Path, failures: &mut Vec<String>) -> usize {
    let mut primaries = 0;
    // Primaries first: a standby's data directory is a copy of its
    // primary's after the primary ran on its rendered config, as a base
    // backup would be. Rendered `address:port` to the primary's data.
    let mut confs = tree.files(|p| p.ends_with("/postgresql.conf"));
    confs.sort_by_key(|(_, conf)| {
        fs::read_to_string(conf).is_ok_and(|t| t.contains("\nprimary_conninfo"))
    });
    let mut datas: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (host, conf) in confs {
        let label = format!("{} {}", tree.label(&host), conf.display());
        let text = fs::read_to_string(&conf).expect("rendered");
        let standby = setting(&text, "primary_conninfo");
        primaries += usize::from(standby.is_none());
        let started = (|| {
            let config = conf.parent().expect("in a folder");
            let field = |key| setting(&text, key).ok_or(format!("no `{key}`"));
            let data = Path::new(field("data_directory")?);
            let source = match standby {
                None => template.to_owned(),
                Some(conninfo) => {
                    let primary = conninfo_address(conninfo).ok_or("no host and port")?;
                    datas
                        .get(&primary)
                        .ok_or(format!("no rendered primary at {primary}"))?
                        .clone()
                }
            };
            // The role has postgres touch `standby.signal` in a standby's
            // data directory, and only there (never root: it is postgres's
            // folder): the copy gets it as that command would make it.
            let signal = data.join("standby.signal");
            let production = Path::new("/").join(
                signal
                    .strip_prefix(tree.host(&host))
                    .map_err(|_| "a data directory outside the host's tree")?,
            );
            let touch = format!("touch {}", production.display());
            let signalled = (tree.commands_as(&host, "postgres").iter())
                .any(|run| run.ends_with(&touch) && run.contains("umask 077"));
            if standby.is_some() != signalled {
                return Err(format!(
                    "a {} with{} a command, as postgres, that makes {}",
                    if standby.is_some() {
                        "standby"
                    } else {
                        "primary"
                    },
                    if signalled { "" } else { "out" },
                    production.display()
                ));
            }
            if data.exists() {
                fs::remove_dir_all(data).map_err(|e| e.to_string())?;
            }
            pg.copy_cluster(&source, data)?;
            if signalled {
                pg.write(&signal, "")?;
            } else {
                // A standby dials the address others reach the primary at,
                // which is not the one it listens on behind a NAT.
                for address in tree.addresses(&host) {
                    datas.insert(format!("{address}:{}", field("port")?), data.to_owned());
                }
            }
            // The key as Postgres wants it: its own, 0600.
            let key = Path::new(field("ssl_key_file")?);
            pg.own(key)?;
            fs::set_permissions(key, fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            // Other tests run servers too: a free port instead of the rendered one.
            let port = free_port();
            pg.own(config)?;
            pg.write(&conf, &set(&text, "port", &port.to_string()))?;
            pg.own(&config.join("pg_hba.conf"))?;
            pg.write(Path::new(field("ident_file")?), "")?;
            let socket = field("unix_socket_directories")?;
            pg.own(Path::new(socket))?;
            let server = pg.start(config, &config.join("server.log"), socket, port.into(), "")?;
            // In recovery or not, and every line of both files understood.
            let query = "select pg_is_in_recovery() || '|' \
                || (select coalesce(string_agg(name || ': ' || error, '; '), '') \
                    from pg_file_settings where error is not null) || '|' \
                || (select coalesce(string_agg(line_number || ': ' || error, '; '), '') \
                    from pg_hba_file_rules where error is not null)";
            let want = if standby.is_some() {
                "true||"
            } else {
                "false||"
            };
            let got = server.psql(query)?;
            if got == want {
                Ok(())
            } else {
                Err(server.with_log(&format!(
                    "recovery|settings errors|pg_hba errors: {got:?}, not {want:?}"
                )))
            }
        })();
        note(failures, &label, started);
    }
    primaries
}

/// A real `redis-server` on every `redis.conf`: each answers with its
/// rendered password, replicas link to their primary. How many replicas.
pub fn redis(tree: &Tree, failures: &mut Vec<String>) -> usize {
    let mut replicas = 0;
    // Primaries first, so replicas can follow them: rendered
    // `address:port` of each primary to the loopback port it runs on.
    let mut confs = tree.files(|p| p.starts_with("/etc/sitec/redis/"));
    confs.sort_by_key(|(_, conf)| {
        fs::read_to_string(conf).is_ok_and(|t| t.contains("\nreplicaof "))
    });
    let mut ports: BTreeMap<String, u16> = BTreeMap::new();
    let mut running = Vec::new();
    for (host, conf) in confs {
        let label = format!("{} {}", tree.label(&host), conf.display());
        let text = fs::read_to_string(&conf).expect("rendered");
        let started = (|| {
            let field = |key| setting(&text, key).ok_or(format!("no `{key}`"));
            fs::create_dir_all(field("dir")?).map_err(|e| e.to_string())?;
            for file in ["pidfile", "logfile"] {
                let parent = Path::new(field(file)?).parent().expect("in a folder");
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            // TLS only, as rendered, on a free port instead of the rendered one.
            let port = free_port();
            let mut args: Vec<String> = [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ]
            .map(str::to_owned)
            .to_vec();
            for address in tree.addresses(&host) {
                ports.insert(format!("{address}:{}", field("tls-port")?), port);
            }
            if let Some(primary) = setting(&text, "replicaof") {
                replicas += 1;
                let primary = primary.replace(' ', ":");
                let followed = ports
                    .get(&primary)
                    .ok_or(format!("no rendered primary at {primary}"))?;
                args.extend([
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    followed.to_string(),
                ]);
            }
            let server = Redis::start(&conf, &args)?;
            let password = field("requirepass")?.to_owned();
            let ca = PathBuf::from(field("tls-ca-cert-file")?);
            let cli = |args: &[&str]| redis_cli_tls("127.0.0.1", port.into(), &password, &ca, args);
            let up = eventually(Duration::from_secs(5), || {
                cli(&["ping"]).is_ok_and(|out| out.trim() == "PONG")
            });
            let linked = setting(&text, "replicaof").is_none()
                || eventually(Duration::from_secs(10), || {
                    cli(&["info", "replication"])
                        .is_ok_and(|out| out.contains("master_link_status:up"))
                });
            let pid_written = Path::new(field("pidfile")?).is_file();
            let log = || fs::read_to_string(field("logfile")?).map_err(|e| e.to_string());
            match (up, linked, pid_written) {
                (true, true, true) => Ok((server, port, password, ca)),
                (false, _, _) => Err(format!("no PONG\n{}", log()?)),
                (_, false, _) => Err(format!(
                    "the replica never linked to its primary with the rendered password\n{}",
                    log()?
                )),
                _ => Err(format!("no pid file\n{}", log()?)),
            }
        })();
        match started {
            Ok(server) => running.push(server),
            Err(e) => failures.push(format!("--- {label}:\n{e}")),
        }
    }
    for (_, port, password, ca) in &running {
        let _ = redis_cli_tls(
            "127.0.0.1",
            (*port).into(),
            password,
            ca,
            &["shutdown", "nosave"],
        );
    }
    replicas
}

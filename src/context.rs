//! Template contexts: the JSON object each template is rendered with.
//!
//! One builder per template, given the host and the scope the file was
//! declared in (the app, worker, cluster or Redis server of an `each`).
//! `templates/README.md` documents every field; the fixed values here
//! (timeouts, worker counts, paths) are the platform's defaults. Pure.

use crate::model::clusters::{self, Cluster, POSTGRES_VERSION};
use crate::model::{AppId, Backup, DatabaseId, Engine, Fleet, HostId};
use crate::secrets::Secrets;
use crate::settings::{self, Override};
use crate::source::SourceMap;
use serde_json::{json, Value};

pub const APPS_ROOT: &str = "/srv/sitec/apps";
pub const APP_LOGS: &str = "/var/log/sitec/apps";
pub const SITEC_BINARY: &str = "/usr/local/lib/sitec/sitec";
/// The balancer closes idle backend connections first...
pub const BALANCER_IDLE_SECONDS: u64 = 60;
/// ...and the runners' nginx and gunicorn wait longer.
pub const RUNNER_KEEPALIVE_SECONDS: u64 = 75;
/// Bus ports every agent binds (control, heartbeats) and collectors bind (logs).
pub const BUS_CONTROL_PORT: u16 = 7701;
pub const BUS_HEARTBEAT_PORT: u16 = 7702;
pub const BUS_LOGS_PORT: u16 = 7703;
/// Where a `logs` host's agent files the lines it collects: `DIR/HOST/TAG`.
pub const FLEET_LOGS: &str = "/var/log/sitec/fleet";

/// What an `each` block is repeating over when a file is declared.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub app: Option<AppId>,
    pub worker: Option<usize>,
    pub cluster: Option<Cluster>,
    pub redis: Option<DatabaseId>,
    /// The backup of an `each backup` (pulled here) or `each snapshot` (pulled from here).
    pub backup: Option<usize>,
    /// The app's `media` store of an `each media`.
    pub media: Option<usize>,
}

/// Everything a builder may read.
pub struct Inputs<'a, 'p> {
    pub fleet: &'a Fleet<'p>,
    pub sources: &'a SourceMap,
    pub secrets: &'a Secrets,
    pub overrides: &'a [Override],
    /// What many hosts' files share, built on first use.
    pub shared: Shared,
}

/// Parts of contexts that are the same on every host, built once per
/// compile when a builder first needs them (`Shared::default()` to start).
#[derive(Default)]
pub struct Shared {
    /// The settings layers by target, for each app's settings on each runner.
    settings: std::cell::OnceCell<settings::Index>,
}

impl Shared {
    pub fn settings(&self, fleet: &Fleet) -> &settings::Index {
        self.settings.get_or_init(|| settings::Index::new(fleet))
    }
}

/// Which files render alike: those whose contexts are built from the same
/// things. Files with equal keys render to the same text but for their
/// [`Sharing::open`] fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    template: &'static str,
    app: Option<AppId>,
    worker: Option<usize>,
}

/// How a file's text may be shared with other files' ([`sharing`]).
pub struct Sharing {
    /// `None`: the file's context is its host's own; it is rendered alone.
    pub key: Option<Key>,
    /// The top-level fields that differ between the files of one key (each
    /// only printed by the template), with this file's values.
    pub open: Vec<(&'static str, String)>,
}

impl Sharing {
    /// A file rendered on its own.
    pub fn alone() -> Sharing {
        Sharing {
            key: None,
            open: Vec::new(),
        }
    }

    fn by(template: &'static str, app: Option<AppId>, worker: Option<usize>) -> Sharing {
        Sharing {
            key: Some(Key {
                template,
                app,
                worker,
            }),
            open: Vec::new(),
        }
    }
}

/// What the context of `template` for a file on `host` in `scope` is built
/// from ([`Key`]), without building it: an app's files on its runners are
/// mostly the same, the balancers' configs all but for two fields. A
/// builder and its arm here change together (the render test checks they
/// agree).
pub fn sharing(template: &'static str, inputs: &Inputs, host: HostId, scope: &Scope) -> Sharing {
    let Some(app) = scope.app else {
        return match template {
            "balancer/balancer.toml" => Sharing {
                open: balancer_open(inputs, host),
                ..Sharing::by(template, None, None)
            },
            _ => Sharing::alone(),
        };
    };
    match template {
        "runner/gunicorn.conf.py"
        | "systemd/gunicorn.service"
        | "runner/logrotate"
        | "systemd/app-run.socket"
        | "systemd/app-run.service" => Sharing::by(template, Some(app), None),
        "systemd/celery-worker.service" if scope.worker.is_some() => {
            Sharing::by(template, Some(app), scope.worker)
        }
        "runner/nginx-app.conf" => Sharing {
            open: vec![("listen", nginx_listen(inputs, host, app))],
            ..Sharing::by(template, Some(app), None)
        },
        "runner/manage.sh" | "django/sitec_redis.py" => Sharing::by(template, Some(app), None),
        "django/sitec_settings.py" | "runner/environment" => {
            let index = inputs.shared.settings(inputs.fleet);
            if settings::host_specific(index, inputs.fleet, inputs.overrides, app, host) {
                Sharing::alone()
            } else {
                Sharing::by(template, Some(app), None)
            }
        }
        _ => Sharing::alone(),
    }
}

/// A built context, and whether it holds a secret's value.
pub struct Built {
    pub context: Value,
    pub secret: bool,
}

/// Builds the context of `template` for a file on `host` in `scope`.
pub fn build(
    template: &str,
    inputs: &Inputs,
    host: HostId,
    scope: &Scope,
) -> Result<Built, String> {
    let need_app = || {
        scope
            .app
            .ok_or_else(|| format!("template `{template}` is used outside `each app`"))
    };
    let plain = |context| {
        Ok(Built {
            context,
            secret: false,
        })
    };
    match template {
        "runner/nginx-app.conf" => plain(nginx_app(inputs, host, need_app()?)),
        "runner/gunicorn.conf.py" => plain(gunicorn_conf(inputs, need_app()?)),
        "django/sitec_settings.py" => django_settings(inputs, host, need_app()?),
        "runner/environment" => environment(inputs, host, need_app()?),
        "runner/manage.sh" => plain(manage_script(inputs, need_app()?)),
        "django/sitec_redis.py" => plain(redis_pool_module(inputs, need_app()?)),
        "systemd/gunicorn.service" => plain(gunicorn_service(inputs, need_app()?)),
        "systemd/app-run.socket" => plain(run_socket_unit(inputs, need_app()?)),
        "systemd/app-run.service" => plain(run_service_unit(inputs, need_app()?)),
        "runner/logrotate" => plain(app_logrotate(inputs, need_app()?)),
        "gluster/volume.sh" | "systemd/media.mount" => {
            let media = (scope.media)
                .ok_or_else(|| format!("template `{template}` is used outside `each media`"))?;
            plain(media_volume(inputs, need_app()?, media, template)?)
        }
        "systemd/celery-worker.service" => {
            let worker = scope
                .worker
                .ok_or("template `systemd/celery-worker.service` is used outside `each worker`")?;
            plain(celery_service(inputs, need_app()?, worker))
        }
        "systemd/sitec-agent.service" => plain(agent_service(inputs, host)),
        "polkit/sitec-agent.rules" | "polkit/tmpfiles.conf" => {
            plain(polkit(inputs, host, template))
        }
        "systemd/sitec-balancer.service" => plain(balancer_service(inputs, host)),
        "balancer/balancer.toml" => plain(balancer_config(inputs, host)?),
        "balancer/tls.pem" | "balancer/tls.key" => {
            let a = &inputs.fleet.apps[need_app()?];
            let name = if template.ends_with(".key") {
                tls_key_secret(&a.name)
            } else {
                tls_cert_secret(&a.name)
            };
            Ok(Built {
                context: json!({
                    "origin": spec_file(inputs, a.span),
                    "host": inputs.fleet.hosts[host].name,
                    "app": a.name,
                    // Trimmed already (`compile`), as a plan looks for it.
                    "pem": secret(inputs, &name)?,
                }),
                // Both: their text is a secret's value (`compile`), even
                // the certificate's, which is public.
                secret: true,
            })
        }
        "agent/agent.toml" => {
            let context = agent_config(inputs, host)?;
            // The password of each Redis server's agent user is a secret.
            let secret = context["redis"].as_array().is_some_and(|r| !r.is_empty());
            Ok(Built { context, secret })
        }
        "bus/host.key" | "bus/balancer.key" => {
            let h = &inputs.fleet.hosts[host];
            let name = if template == "bus/host.key" {
                crate::bus::keys::host_secret(&h.name)
            } else {
                crate::bus::keys::balancer_secret(&h.name)
            };
            Ok(Built {
                context: json!({
                    "origin": spec_file(inputs, h.span),
                    "host": h.name,
                    "secret_key": bus_keys(inputs, &name)?.key_file_text().trim_end(),
                }),
                secret: true,
            })
        }
        "tls/fleet-ca.pem" | "tls/server.pem" | "tls/server.key" => {
            database_tls(template, inputs, host, scope)
        }
        "gluster/ca.pem" | "gluster/tls.pem" | "gluster/tls.key" => {
            gluster_tls(template, inputs, host)
        }
        "postgres/postgresql.conf" => {
            let cluster = scope
                .cluster
                .as_ref()
                .ok_or("template `postgres/postgresql.conf` is used outside `each cluster`")?;
            Ok(Built {
                context: postgresql_conf(inputs, host, cluster)?,
                secret: true,
            })
        }
        "postgres/pg_hba.conf" => {
            let cluster = scope
                .cluster
                .as_ref()
                .ok_or("template `postgres/pg_hba.conf` is used outside `each cluster`")?;
            plain(pg_hba(inputs, host, cluster))
        }
        "postgres/clone-standby.sh" => {
            let cluster = scope
                .cluster
                .as_ref()
                .ok_or("template `postgres/clone-standby.sh` is used outside `each standby`")?;
            Ok(Built {
                context: clone_standby(inputs, host, cluster)?,
                secret: true,
            })
        }
        "postgres/roles.sql" => {
            let cluster = scope
                .cluster
                .as_ref()
                .ok_or("template `postgres/roles.sql` is used outside `each primary`")?;
            Ok(Built {
                context: postgres_roles(inputs, host, cluster)?,
                secret: true,
            })
        }
        "redis/redis.conf" => {
            let redis = scope
                .redis
                .ok_or("template `redis/redis.conf` is used outside `each redis`")?;
            Ok(Built {
                context: redis_conf(inputs, host, redis)?,
                secret: true,
            })
        }
        backup if backup.starts_with("backup/") => backup_context(backup, inputs, host, scope),
        other => Err(format!("sitec has no context for template `{other}`")),
    }
}

/// What a rendered file names as its origin: the spec file that declared
/// it, relative to the spec's folder, and no line. A file on a host must not
/// change with how the operator spelled the spec's path (`./x.site`,
/// `x.site`) or when a comment above it shifts its line: either would
/// rewrite the file and reload its service for nothing. The app, host or
/// database the template names beside it says which declaration it is.
fn spec_file(inputs: &Inputs, span: crate::source::Span) -> String {
    settings::file_of(inputs.sources, span)
}

/// Where an app's release lives on a runner.
pub fn release_dir(app: &str) -> String {
    format!("{APPS_ROOT}/{app}/current")
}

/// Where an app's `media` store lives: beside the releases, so every
/// deploy and rollback keeps it; the app's user writes it, nginx reads it.
pub fn media_dir(app: &str, store: &str) -> String {
    format!("{APPS_ROOT}/{app}/media/{store}")
}

/// Every `media` folder of an app: what its processes may write.
fn media_dirs(app: &crate::model::App) -> Vec<String> {
    (app.media.iter())
        .map(|m| media_dir(&app.name, &m.name))
        .collect()
}

/// The `media` folders of an app that are GlusterFS mounts: its units
/// start after them (`RequiresMountsFor=`), at boot too.
fn mounted_media_dirs(fleet: &crate::model::Fleet, app: AppId) -> Vec<String> {
    if crate::model::volumes::shared(fleet, app) {
        media_dirs(&fleet.apps[app])
    } else {
        Vec::new()
    }
}

/// A shared media store's volume, for its mount unit (`template`
/// `systemd/media.mount`) or the script that makes it (`gluster/volume.sh`,
/// on the app's leader): each gets the fields it reads.
fn media_volume(
    inputs: &Inputs,
    app: AppId,
    media: usize,
    template: &str,
) -> Result<Value, String> {
    use crate::model::volumes;
    let fleet = inputs.fleet;
    let a = &fleet.apps[app];
    let m = a.media.get(media).ok_or("no such media store")?;
    let (bricks, arbiter) = volumes::bricks(fleet, app)
        .ok_or_else(|| format!("app {}'s media is on one runner: no volume", a.name))?;
    let addresses: Vec<String> = bricks.iter().map(|h| fleet.address(*h)).collect();
    // Mounts come from the runners' own (private) addresses.
    let runners: Vec<String> = (fleet.placement[app].iter())
        .map(|h| fleet.listen_address(*h))
        .collect();
    let mut volume = json!({
        "origin": spec_file(inputs, m.span),
        "app": a.name,
        "store": m.name,
        "volume": volumes::volume_name(&a.name, &m.name),
        "path": media_dir(&a.name, &m.name),
        "volfile_server": addresses[0],
        "backup_volfile_servers": addresses[1..].join(":"),
        // The leader (the first brick's host) probes the others.
        "peers": addresses[1..],
        "replica": if arbiter { "replica 3 arbiter 1" } else { "replica 3" },
        "arbiter": arbiter,
        "bricks": addresses.iter()
            .map(|h| format!("{h}:{}", volumes::brick_dir(&a.name, &m.name)))
            .collect::<Vec<_>>(),
        "allow": runners.join(","),
        // Certificates by common name, the host's (`fleet_ca::peer`).
        "ssl_allow": volumes::allowed_names(fleet, app).join(","),
        // A peer none of these is, holding no brick, leaves the pool.
        "brick_hosts": volumes::brick_hosts(fleet).iter()
            .map(|h| fleet.address(*h))
            .collect::<std::collections::BTreeSet<_>>(),
    });
    let others: &[&str] = if template == "systemd/media.mount" {
        &[
            "peers",
            "replica",
            "arbiter",
            "bricks",
            "allow",
            "ssl_allow",
            "brick_hosts",
        ]
    } else {
        &["volfile_server", "backup_volfile_servers"]
    };
    if let Value::Object(fields) = &mut volume {
        for field in others {
            fields.remove(*field);
        }
    }
    Ok(volume)
}

/// Where sitec's settings module lives: outside the releases, so a
/// settings change reaches the live release and a rollback keeps it.
pub fn settings_dir(app: &str) -> String {
    format!("/etc/sitec/apps/{app}/python")
}

/// The Python statement that imports the app's WSGI callable
/// (`from blog.wsgi import application`): a new release must run it.
pub fn wsgi_import(app: &crate::model::App) -> String {
    let (module, callable) = app
        .wsgi
        .split_once(':')
        .unwrap_or((&app.wsgi, "application"));
    format!("from {module} import {callable}")
}

/// The virtualenv the live release runs: its `venv` link, so the switch of
/// `current` moves code and virtualenv together.
fn venv(app: &str) -> String {
    format!("{}/{}", release_dir(app), crate::host::release::VENV)
}

/// An app's log folder: root's, where systemd opens gunicorn's and the
/// workers' logs (their stdout and stderr).
fn log_dir(app: &str) -> String {
    format!("{APP_LOGS}/{app}")
}

/// The app's own log folder inside it: the one its processes may write (logs
/// the app writes itself), where nothing running as root opens a path.
fn app_log_dir(app: &str) -> String {
    format!("{APP_LOGS}/{app}/app")
}

/// Debian's nginx log folder (root's, group adm): each app's nginx logs go
/// there as `sitec-APP-access.log` and `sitec-APP-error.log`.
const NGINX_LOGS: &str = "/var/log/nginx";

fn nginx_log(app: &str, which: &str) -> String {
    format!("{NGINX_LOGS}/sitec-{app}-{which}.log")
}

pub fn app_user(app: &str) -> String {
    format!("app-{app}")
}

/// The app's folder under /run: its unit has systemd create it
/// (`RuntimeDirectory=`), and gunicorn binds its socket there.
fn runtime_directory(app: &str) -> String {
    format!("sitec/apps/{app}")
}

fn gunicorn_bind(app: &str) -> String {
    format!("unix:/run/{}/gunicorn.sock", runtime_directory(app))
}

/// The app's `paths`, absolute against its release.
fn python_paths(inputs: &Inputs, app: AppId) -> Vec<String> {
    let a = &inputs.fleet.apps[app];
    let release = release_dir(&a.name);
    a.paths
        .iter()
        .map(|p| {
            let p = p.trim_start_matches("./").trim_end_matches('/');
            if p.is_empty() || p == "." {
                release.clone()
            } else {
                format!("{release}/{p}")
            }
        })
        .collect()
}

/// nginx's size syntax: `20m`, `512k`, or bytes.
fn nginx_size(bytes: u64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{}m", bytes >> 20)
    } else if bytes % (1 << 10) == 0 {
        format!("{}k", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// An app's domains as nginx `server_name`s. `*` (the balancer's
/// catch-all) is no nginx name; the app's nginx has a port of its own, so it
/// answers every name anyway (`_` when no other is left).
fn nginx_server_names<'d>(domains: impl Iterator<Item = &'d str>) -> Vec<&'d str> {
    let names: Vec<&str> = domains.filter(|d| *d != "*").collect();
    if names.is_empty() {
        vec!["_"]
    } else {
        names
    }
}

/// Where an app's nginx listens on a runner: the one field of its nginx
/// site that changes from one runner to the next.
fn nginx_listen(inputs: &Inputs, host: HostId, app: AppId) -> String {
    let port = inputs.fleet.apps[app].port;
    format!("{}:{port}", inputs.fleet.listen_address(host))
}

fn nginx_app(inputs: &Inputs, host: HostId, app: AppId) -> Value {
    let fleet = inputs.fleet;
    let a = &fleet.apps[app];
    let release = release_dir(&a.name);
    let balancers: Vec<String> = fleet
        .hosts_with_role("balancer")
        .map(|h| fleet.address(h))
        .collect();
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "listen": nginx_listen(inputs, host, app),
        "domains": nginx_server_names(a.domains.iter().map(|(d, _)| d.as_str())),
        "balancers": balancers,
        "gunicorn_bind": gunicorn_bind(&a.name),
        "upstream_keepalive_connections": 16,
        "balancer_idle_timeout_seconds": BALANCER_IDLE_SECONDS,
        "keepalive_seconds": RUNNER_KEEPALIVE_SECONDS,
        "timeout_seconds": a.server.timeout_seconds,
        "client_max_body_size": nginx_size(a.max_body),
        "static": a.statics.iter().map(|s| json!({
            "url": s.url,
            "path": format!("{release}/{}", s.dir.trim_start_matches("./").trim_end_matches('/')),
        })).collect::<Vec<_>>(),
        "media": a.media.iter().map(|m| json!({
            "url": m.url,
            "path": media_dir(&a.name, &m.name),
        })).collect::<Vec<_>>(),
        "access_log": nginx_log(&a.name, "access"),
        "error_log": nginx_log(&a.name, "error"),
        "websockets": a.asgi,
    })
}

fn gunicorn_conf(inputs: &Inputs, app: AppId) -> Value {
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "wsgi": a.wsgi,
        "release_dir": release_dir(&a.name),
        "python_paths": python_paths(inputs, app),
        "environment_file": environment_file(&a.name),
        "gunicorn_bind": gunicorn_bind(&a.name),
        "workers": a.server.workers,
        "worker_class": a.server.worker_class,
        "threads": (a.server.worker_class == "gthread").then_some(a.server.threads),
        "timeout_seconds": a.server.timeout_seconds,
        "graceful_timeout_seconds": a.server.graceful_timeout_seconds,
        "balancer_idle_timeout_seconds": BALANCER_IDLE_SECONDS,
        "keepalive_seconds": RUNNER_KEEPALIVE_SECONDS,
        "max_requests": a.server.max_requests,
        "max_requests_jitter": a.server.max_requests_jitter,
    })
}

/// How an app's clients reach its databases: TLS, the server checked
/// against the fleet CA by name (templates/README.md, "Database
/// connections"), as URL query strings.
const PG_TLS_QUERY: &str = "sslmode=verify-full&sslrootcert=/etc/sitec/fleet-ca.pem";
/// How an app's Postgres clients find the primary: libpq tries each host
/// of the list in turn (its primary first, then its standby), each for
/// `connect_timeout` seconds at most, and keeps the one that takes writes.
/// So after a failover the app reaches the new primary on its next
/// connection, before its settings are re-rendered to name it first.
pub const PG_PRIMARY_ATTRS: &str = "read-write";
pub const PG_CONNECT_TIMEOUT: u32 = 3;

/// The hosts a Postgres client of `db` tries: its primary, then its
/// standby (`h1,h2`, libpq's list).
fn postgres_hosts(fleet: &Fleet, db: &crate::model::Database) -> String {
    let hosts: Vec<String> = (std::iter::once(db.primary).chain(db.follower))
        .map(|h| fleet.address(h))
        .collect();
    hosts.join(",")
}
/// Every server of the Redis database `db` as `HOST:PORT`, its primary
/// first, then its replica: the app's cache client keeps whichever says
/// it is the primary (`django/sitec_redis.py`), so after a failover it
/// reaches the new one before its settings name it first.
fn redis_servers(fleet: &Fleet, db: &crate::model::Database) -> Vec<String> {
    (std::iter::once(db.primary).chain(db.follower))
        .map(|h| match fleet.address(h) {
            a if a.contains(':') => format!("[{a}]:{}", db.port),
            a => format!("{a}:{}", db.port),
        })
        .collect()
}
/// How long the app's Redis client waits to connect to a server, and for
/// an answer: a dead primary's host costs a page this long, once.
pub const REDIS_TIMEOUT_SECONDS: u32 = 2;
const REDIS_TLS_QUERY: &str = "ssl_cert_reqs=required&ssl_ca_certs=/etc/sitec/fleet-ca.pem";

/// Each database server's certificate (`tls/server.pem`) and its own key
/// (`tls/server.key`, root:postgres and root:redis 0640), in a folder of
/// their own: `/etc/sitec/tls/` holds the balancers' `APP.pem`, and an app
/// may be called `db`.
pub const DB_POSTGRES_CERT_FILE: &str = "/etc/sitec/db-tls/postgres.pem";
pub const DB_REDIS_CERT_FILE: &str = "/etc/sitec/db-tls/redis.pem";
pub const DB_POSTGRES_KEY_FILE: &str = "/etc/sitec/db-tls/postgres.key";
pub const DB_REDIS_KEY_FILE: &str = "/etc/sitec/db-tls/redis.key";

/// The names a database host's certificate carries: its name, the
/// addresses it is reached and listens at, and the loopback.
fn certificate_names(fleet: &Fleet, host: HostId) -> Vec<String> {
    let mut names = vec![
        fleet.hosts[host].name.clone(),
        "localhost".to_string(),
        fleet.address(host),
        fleet.listen_address(host),
        "127.0.0.1".to_string(),
    ];
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Every database server's private key, and every GlusterFS peer's, as its
/// rendered file holds it, named for a plan's redactor (`compile` adds them as secrets, so a diff
/// of a key file shows `<secret tls.db1.postgres_key>`).
pub fn database_keys(fleet: &Fleet, secrets: &Secrets) -> Vec<(String, String)> {
    let Some(ca) = secrets.get(crate::fleet_ca::CA_SECRET) else {
        return Vec::new();
    };
    let servers = (0..fleet.hosts.len()).flat_map(|h| {
        let postgres = !clusters::clusters_on(fleet, h).is_empty();
        let redis = !clusters::redis_on(fleet, h).is_empty();
        let gluster = crate::model::volumes::speaks_gluster(fleet, h);
        [
            (h, "postgres", postgres),
            (h, "redis", redis),
            (h, crate::fleet_ca::PEER, gluster),
        ]
    });
    servers
        .filter(|(_, _, serves)| *serves)
        .filter_map(|(h, server, _)| {
            let name = &fleet.hosts[h].name;
            let key = crate::fleet_ca::server_key_pem(&ca, name, server).ok()?;
            Some((
                format!("tls.{name}.{server}_key"),
                key.trim_end().to_string(),
            ))
        })
        .collect()
}

/// A database server's key and certificate (Redis's within `each redis`,
/// else Postgres's), and the fleet CA's certificate (`fleet_ca`, from the
/// secret `fleet.ca_key`).
fn database_tls(
    template: &str,
    inputs: &Inputs,
    host: HostId,
    scope: &Scope,
) -> Result<Built, String> {
    let fleet = inputs.fleet;
    let h = &fleet.hosts[host];
    let ca = secret(inputs, crate::fleet_ca::CA_SECRET)?;
    let names = certificate_names(fleet, host);
    let server = if scope.redis.is_some() {
        "redis"
    } else {
        "postgres"
    };
    let (pem, secret) = match template {
        "tls/fleet-ca.pem" => (crate::fleet_ca::ca_pem(&ca)?, false),
        "tls/server.pem" => (
            crate::fleet_ca::server(&ca, &h.name, server, &names)?.cert_pem,
            false,
        ),
        _ => (crate::fleet_ca::server_key_pem(&ca, &h.name, server)?, true),
    };
    let mut context = json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "pem": pem.trim_end(),
    });
    if template != "tls/fleet-ca.pem" {
        context["server"] = json!(server);
    }
    // The certificate's header says whom it is for.
    if template == "tls/server.pem" {
        context["names"] = json!(names.join(", "));
    }
    Ok(Built { context, secret })
}

/// Where GlusterFS reads its TLS files on Debian: its build's certificate
/// path is OpenSSL's folder, `/usr/lib/ssl` (upstream's default is
/// `/etc/ssl`), and it has no setting for the mounts' own connection.
pub const GLUSTER_TLS_DIR: &str = "/usr/lib/ssl";

/// A host's GlusterFS certificate (`gluster/tls.pem`, server and client,
/// for the names a database server's carries), its key (`gluster/tls.key`)
/// and the fleet CA (`gluster/ca.pem`): on every brick host and every
/// runner of an app whose media is shared.
fn gluster_tls(template: &str, inputs: &Inputs, host: HostId) -> Result<Built, String> {
    let fleet = inputs.fleet;
    let h = &fleet.hosts[host];
    let ca = secret(inputs, crate::fleet_ca::CA_SECRET)?;
    let (pem, secret) = match template {
        "gluster/ca.pem" => (crate::fleet_ca::ca_pem(&ca)?, false),
        "gluster/tls.pem" => (
            crate::fleet_ca::peer(&ca, &h.name, &certificate_names(fleet, host))?.cert_pem,
            false,
        ),
        _ => (
            crate::fleet_ca::server_key_pem(&ca, &h.name, crate::fleet_ca::PEER)?,
            true,
        ),
    };
    let mut context = json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "pem": pem.trim_end(),
    });
    // The certificate's header says whom it is for.
    if template == "gluster/tls.pem" {
        context["names"] = json!(certificate_names(fleet, host).join(", "));
    }
    Ok(Built { context, secret })
}

/// The generated password of an app's role in a Postgres database.
pub fn db_password_secret(database: &str, app: &str) -> String {
    format!("db.{database}.{app}.password")
}

/// The values of an app's TLS certificate and key, read from the files its
/// `tls` names (`compile`), used as secrets so a plan's diffs hide them.
pub fn tls_cert_secret(app: &str) -> String {
    format!("tls.{app}.cert")
}

pub fn tls_key_secret(app: &str) -> String {
    format!("tls.{app}.key")
}

/// Where the balancers keep an app's certificate and key.
fn tls_file(app: &str, key: bool) -> String {
    format!("/etc/sitec/tls/{app}.{}", if key { "key" } else { "pem" })
}

pub fn redis_password_secret(database: &str) -> String {
    format!("redis.{database}.password")
}

/// The generated password of the agent's Redis user (`ROLE` only) on
/// database `database`'s servers.
pub fn redis_agent_secret(database: &str) -> String {
    format!("redis.{database}.agent.password")
}

/// Clusters are named per primary host (`main` on db1 and on db3 differ).
pub fn replication_secret(primary: &str, cluster: &str) -> String {
    format!("postgres.{primary}.{cluster}.replication.password")
}

fn secret(inputs: &Inputs, name: &str) -> Result<String, String> {
    inputs
        .secrets
        .get(name)
        .ok_or_else(|| format!("secret `{name}` has no value"))
}

fn django_settings(inputs: &Inputs, host: HostId, app: AppId) -> Result<Built, String> {
    let fleet = inputs.fleet;
    let a = &fleet.apps[app];
    let release = release_dir(&a.name);
    let index = inputs.shared.settings(fleet);
    let resolved =
        settings::resolve_indexed(index, fleet, inputs.sources, inputs.overrides, app, host);
    let conn_max_age = resolved
        .iter()
        .find(|r| r.name == "CONN_MAX_AGE")
        .and_then(|r| settings::python_literal(&r.winner().value, inputs.secrets).ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let mut databases = Vec::new();
    let mut caches = Vec::new();
    for binding in &a.bindings {
        let db = &fleet.databases[binding.database];
        let origin = format!(
            "{} (databases.{} = {})",
            spec_file(inputs, binding.span),
            binding.alias,
            db.name
        );
        match db.engine {
            Engine::Postgres => databases.push(json!({
                "origin": origin,
                "alias": binding.alias,
                "name": a.name,
                "user": a.name,
                "password_py": settings::python_string(&secret(inputs, &db_password_secret(&db.name, &a.name))?),
                "host": postgres_hosts(fleet, db),
                "port": db.port,
                "conn_max_age": conn_max_age,
                "target_session_attrs": PG_PRIMARY_ATTRS,
                "connect_timeout": PG_CONNECT_TIMEOUT,
            })),
            Engine::Redis => caches.push(json!({
                "origin": origin,
                "alias": if binding.alias == "cache" { "default" } else { binding.alias.as_str() },
                "name": binding.alias,
                "password_py": settings::python_string(&secret(inputs, &redis_password_secret(&db.name))?),
                "host": fleet.address(db.primary),
                "port": db.port,
                "db": 0,
                "servers": redis_servers(fleet, db),
                "timeout_seconds": REDIS_TIMEOUT_SECONDS,
            })),
        }
    }
    let mut secret_inside = !databases.is_empty() || !caches.is_empty();
    let mut values = Vec::new();
    for r in &resolved {
        let winner = r.winner();
        secret_inside |= settings::holds_secret(&winner.value);
        let value_py = settings::python_literal(&winner.value, inputs.secrets)?;
        values.push(json!({ "name": r.name, "value_py": value_py, "origin": winner.name }));
    }
    let first_static = a.statics.first();
    let context = json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "settings_module": a.settings_module,
        "python_paths": python_paths(inputs, app),
        "domains": a.domains.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        "static_url": first_static.map_or("/static/", |s| s.url.as_str()),
        "static_root": format!("{release}/{}", static_dir(a)),
        // Uploads: the app's first `media` store, when it has one.
        "media": a.media.first().map(|m| json!({
            "url": m.url,
            "root": media_dir(&a.name, &m.name),
        })),
        "release_dir": release,
        "databases": databases,
        "caches": caches,
        "ca_file": crate::fleet_ca::CA_FILE,
        "settings": values,
    });
    Ok(Built {
        context,
        secret: secret_inside,
    })
}

/// The folder of the release `collectstatic` fills (`STATIC_ROOT`): the
/// app's first `static` mapping's, else `collected_static`.
pub fn static_dir(app: &crate::model::App) -> String {
    app.statics
        .first()
        .map_or("collected_static", |s| {
            s.dir.trim_start_matches("./").trim_end_matches('/')
        })
        .to_string()
}

/// The database drivers the settings sitec writes for `app` need, pinned:
/// psycopg for a Postgres binding (`django.db.backends.postgresql`), redis
/// for a Redis one (`django.core.cache.backends.redis`). Installed unless
/// the project's requirements name them (`plan::wheelhouse`).
pub fn database_drivers(fleet: &Fleet, app: AppId) -> Vec<&'static str> {
    let engines: Vec<Engine> = (fleet.apps[app].bindings.iter())
        .map(|b| fleet.databases[b.database].engine)
        .collect();
    let mut drivers = Vec::new();
    if engines.contains(&Engine::Postgres) {
        drivers.push("psycopg[binary]==3.3.9");
    }
    if engines.contains(&Engine::Redis) {
        drivers.push("redis==8.1.0");
    }
    drivers
}

/// What sitec installs beside gunicorn to serve an ASGI app, listed by the
/// project or not: uvicorn's worker class for gunicorn, uvicorn, and the
/// WebSocket protocol uvicorn speaks with (`websockets`). None for WSGI.
pub fn asgi_server_packages(fleet: &Fleet, app: AppId) -> &'static [&'static str] {
    if fleet.apps[app].asgi {
        &[
            "uvicorn-worker==0.4.0",
            "uvicorn==0.55.0",
            "websockets==17.4",
        ]
    } else {
        &[]
    }
}

/// The environment every process of an app runs with (its server, its
/// workers, its management commands): systemd's `EnvironmentFile`, which
/// `manage.sh` reads too.
pub fn environment_file(app: &str) -> String {
    format!("/etc/sitec/apps/{app}/environment")
}

/// The module sitec writes into each release, which Django is pointed at:
/// it imports the project's own settings module, then applies sitec's.
pub const SITEC_SETTINGS_MODULE: &str = "sitec_settings";

/// The generated secret an app's `SECRET_KEY` is, unless the spec names one.
pub fn secret_key_secret(app: &str) -> String {
    format!("app.{app}.secret_key")
}

/// The name of the environment variable that holds the URL of the
/// database an app binds as `alias`: `DATABASE_URL` for Postgres `default`
/// (dj-database-url's and django-environ's default), `REDIS_URL` for the
/// app's first Redis, else `ALIAS_DATABASE_URL` / `ALIAS_REDIS_URL`.
fn url_variable(alias: &str, engine: Engine, first_redis: bool) -> String {
    let alias = alias.to_ascii_uppercase().replace('-', "_");
    match engine {
        Engine::Postgres if alias == "DEFAULT" => "DATABASE_URL".into(),
        Engine::Postgres => format!("{alias}_DATABASE_URL"),
        Engine::Redis if first_redis => "REDIS_URL".into(),
        Engine::Redis => format!("{alias}_REDIS_URL"),
    }
}

/// The variables sitec sets for `app` on `host`, before the spec's `env`
/// layers: the 12-factor names the common packages read.
pub fn sitec_environment(
    inputs: &Inputs,
    host: HostId,
    app: AppId,
) -> Vec<(String, settings::Layer)> {
    use settings::{Layer, Piece, SettingValue};
    let fleet = inputs.fleet;
    let a = &fleet.apps[app];
    let layer = |pieces: Vec<Piece>| Layer {
        name: "sitec".into(),
        origin: settings::line_of(inputs.sources, a.span),
        value: SettingValue::Derived(pieces),
    };
    let text = |t: String| layer(vec![Piece::Text(t)]);
    let mut out = vec![
        (
            "DJANGO_SETTINGS_MODULE".to_string(),
            text(SITEC_SETTINGS_MODULE.into()),
        ),
        ("PYTHONPATH".to_string(), text(python_path(inputs, app))),
        ("PYTHONUNBUFFERED".to_string(), text("1".into())),
    ];
    let hosts: Vec<&str> = a.domains.iter().map(|(d, _)| d.as_str()).collect();
    for name in ["ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS"] {
        out.push((name.to_string(), text(hosts.join(","))));
    }
    // The spec's SECRET_KEY when it names a secret, so both agree.
    let index = inputs.shared.settings(fleet);
    let resolved =
        settings::resolve_indexed(index, fleet, inputs.sources, inputs.overrides, app, host);
    let named = resolved
        .iter()
        .find(|r| r.name == "SECRET_KEY")
        .and_then(|r| match &r.winner().value {
            SettingValue::Spec(crate::syntax::ast::Value {
                kind: crate::syntax::ast::ValueKind::Call(call),
                ..
            }) => match call.args.first().map(|v| &v.kind) {
                Some(crate::syntax::ast::ValueKind::Str(name)) => Some(name.clone()),
                _ => None,
            },
            _ => None,
        });
    let key = named.unwrap_or_else(|| secret_key_secret(&a.name));
    for name in ["SECRET_KEY", "DJANGO_SECRET_KEY"] {
        out.push((
            name.to_string(),
            layer(vec![Piece::Secret {
                name: key.clone(),
                url: false,
            }]),
        ));
    }
    let mut first_redis = true;
    for binding in &a.bindings {
        let db = &fleet.databases[binding.database];
        let address = format!("{}:{}", fleet.address(db.primary), db.port);
        let (variable, pieces) = match db.engine {
            Engine::Postgres => (
                url_variable(&binding.alias, db.engine, false),
                vec![
                    Piece::Text(format!("postgres://{}:", a.name)),
                    Piece::Secret {
                        name: db_password_secret(&db.name, &a.name),
                        url: true,
                    },
                    Piece::Text(postgres_url_rest(fleet, db, &a.name)),
                ],
            ),
            Engine::Redis => {
                let variable = url_variable(&binding.alias, db.engine, first_redis);
                first_redis = false;
                (
                    variable,
                    vec![
                        Piece::Text("rediss://:".into()),
                        Piece::Secret {
                            name: redis_password_secret(&db.name),
                            url: true,
                        },
                        Piece::Text(format!("@{address}/0?{REDIS_TLS_QUERY}")),
                    ],
                )
            }
        };
        out.push((variable, layer(pieces)));
    }
    out
}

/// A `DATABASE_URL` after its password: `@HOST:PORT/NAME?QUERY`, or with a
/// standby, the hosts and ports in the query (`@/NAME?host=H1,H2&port=P,P&...`):
/// libpq reads both, and dj-database-url and django-environ, which read
/// one host in a URL, pass the query's keys to the driver in `OPTIONS`.
fn postgres_url_rest(fleet: &Fleet, db: &crate::model::Database, name: &str) -> String {
    let attrs = format!(
        "{PG_TLS_QUERY}&target_session_attrs={PG_PRIMARY_ATTRS}&connect_timeout={PG_CONNECT_TIMEOUT}"
    );
    if db.follower.is_none() {
        return format!("@{}:{}/{name}?{attrs}", fleet.address(db.primary), db.port);
    }
    format!(
        "@/{name}?host={}&port={p},{p}&{attrs}",
        postgres_hosts(fleet, db),
        p = db.port
    )
}

/// `PYTHONPATH`: the release, then the app's `paths`, each once.
fn python_path(inputs: &Inputs, app: AppId) -> String {
    let mut path = vec![release_dir(&inputs.fleet.apps[app].name)];
    for entry in python_paths(inputs, app) {
        if !path.contains(&entry) {
            path.push(entry);
        }
    }
    path.push(settings_dir(&inputs.fleet.apps[app].name));
    path.join(":")
}

/// An environment variable's value in systemd's `EnvironmentFile` syntax,
/// which POSIX sh reads alike: double quotes, with `\`, `"`, `` ` `` and
/// `$` escaped (systemd unescapes exactly those inside double quotes).
fn env_quoted(value: &str) -> Result<String, String> {
    if value.contains(['\n', '\r', '\0']) {
        return Err("an environment variable's value is one line".into());
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// The app's environment on `host`: sitec's variables, then the spec's
/// `env` layers; each line names the layer that won.
fn environment(inputs: &Inputs, host: HostId, app: AppId) -> Result<Built, String> {
    let fleet = inputs.fleet;
    let a = &fleet.apps[app];
    let index = inputs.shared.settings(fleet);
    let sitec = sitec_environment(inputs, host, app);
    let resolved = settings::resolve_env(index, fleet, inputs.sources, sitec, app, host);
    let mut secret = false;
    let mut variables = Vec::new();
    for r in &resolved {
        let valid = r
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{}` in the `env` of app `{}` is not an environment variable's name: letters, digits and `_`, not starting with a digit", r.name, a.name));
        }
        let winner = r.winner();
        secret |= settings::holds_secret(&winner.value);
        let value = settings::env_value(&winner.value, inputs.secrets)
            .and_then(|v| env_quoted(&v))
            .map_err(|e| format!("`{}` in the environment of app `{}`: {e}", r.name, a.name))?;
        variables.push(json!({ "name": r.name, "value": value, "origin": winner.name }));
    }
    Ok(Built {
        context: json!({
            "origin": spec_file(inputs, a.span),
            "app": a.name,
            "variables": variables,
        }),
        secret,
    })
}

/// The script that runs the app's `manage.py` as its server runs: as its
/// user, in its release, with its environment.
fn manage_script(inputs: &Inputs, app: AppId) -> Value {
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "environment_file": environment_file(&a.name),
        "release_dir": release_dir(&a.name),
        "venv": crate::host::release::VENV,
    })
}

/// The module the app's Django cache finds its Redis primary with.
fn redis_pool_module(inputs: &Inputs, app: AppId) -> Value {
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
    })
}

fn gunicorn_service(inputs: &Inputs, app: AppId) -> Value {
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "user": app_user(&a.name),
        "group": app_user(&a.name),
        "release_dir": release_dir(&a.name),
        "venv": venv(&a.name),
        "environment_file": environment_file(&a.name),
        "gunicorn_config": format!("/etc/sitec/apps/{}/gunicorn.conf.py", a.name),
        "runtime_directory": runtime_directory(&a.name),
        // gunicorn's own graceful stop ends first.
        "stop_timeout_seconds": a.server.graceful_timeout_seconds + 5,
        "log_dir": log_dir(&a.name),
        "app_log_dir": app_log_dir(&a.name),
        "writable_paths": media_dirs(a),
        "mounts": mounted_media_dirs(inputs.fleet, app),
    })
}

/// Where the agent opens `sitec run`'s sessions of an app (systemd makes
/// the folder, root's; the socket is the agent's alone).
fn run_socket(app: &str) -> String {
    format!("/run/sitec-run/{app}.sock")
}

/// The socket unit of `sitec run`'s sessions: the agent's to connect to.
fn run_socket_unit(inputs: &Inputs, app: AppId) -> Value {
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "socket": run_socket(&a.name),
        "service_prefix": format!("{APP_UNIT_PREFIX}{}-run", a.name),
        "user": app_user(&a.name),
        "agent_user": AGENT_GROUP,
        "sessions": crate::agent::RUN_SESSIONS,
        "max_connections": crate::agent::RUN_SESSIONS + 4,
    })
}

/// A `sitec run` session's unit: the app's user, release, environment and
/// writable paths, as its server has them (`gunicorn_service`).
fn run_service_unit(inputs: &Inputs, app: AppId) -> Value {
    let server = gunicorn_service(inputs, app);
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": server["origin"],
        "app": a.name,
        "user": server["user"],
        "group": server["group"],
        "release_dir": server["release_dir"],
        "venv": server["venv"],
        "environment_file": server["environment_file"],
        "app_log_dir": server["app_log_dir"],
        "writable_paths": server["writable_paths"],
        "mounts": server["mounts"],
        "socket_unit": format!("{APP_UNIT_PREFIX}{}-run.socket", a.name),
        "sitec_binary": SITEC_BINARY,
    })
}

/// A command line as systemd's `ExecStart=` passes it on as written: its
/// `%` specifiers, `$` variables and backslash escapes are written out,
/// so the program gets the words of the spec (split at blanks, with
/// quotes as a shell has them), not what systemd would make of them.
fn systemd_literal(command: &str) -> String {
    command
        .replace('\\', "\\\\")
        .replace('%', "%%")
        .replace('$', "$$")
}

/// The rotation of an app's logs on a runner (nginx's are Debian's to rotate).
fn app_logrotate(inputs: &Inputs, app: AppId) -> Value {
    let a = &inputs.fleet.apps[app];
    json!({
        "origin": spec_file(inputs, a.span),
        "app": a.name,
        "log_dir": log_dir(&a.name),
        "app_log_dir": app_log_dir(&a.name),
        "user": app_user(&a.name),
        "group": AGENT_GROUP,
    })
}

/// The agent's user and group: the group may read every log it ships.
const AGENT_GROUP: &str = "sitec-agent";

fn celery_service(inputs: &Inputs, app: AppId, worker: usize) -> Value {
    let a = &inputs.fleet.apps[app];
    let w = &a.workers[worker];
    // The command's program runs from the app's virtualenv.
    let command = systemd_literal(&w.command);
    let exec_start = match command.split_once(' ') {
        Some((program, rest)) if !program.contains('/') => {
            format!("{}/bin/{program} {rest}", venv(&a.name))
        }
        None if !command.contains('/') => format!("{}/bin/{command}", venv(&a.name)),
        _ => command,
    };
    json!({
        "origin": spec_file(inputs, w.span),
        "app": a.name,
        "worker": w.name,
        "user": app_user(&a.name),
        "group": app_user(&a.name),
        "release_dir": release_dir(&a.name),
        "environment_file": environment_file(&a.name),
        "exec_start": exec_start,
        "stop_timeout_seconds": 600,
        "log_dir": log_dir(&a.name),
        "app_log_dir": app_log_dir(&a.name),
        "writable_paths": media_dirs(a),
        "mounts": mounted_media_dirs(inputs.fleet, app),
    })
}

fn agent_service(inputs: &Inputs, host: HostId) -> Value {
    let h = &inputs.fleet.hosts[host];
    json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "user": AGENT_GROUP,
        "group": AGENT_GROUP,
        "log_groups": ["adm"],
        "sitec_binary": SITEC_BINARY,
        "config": "/etc/sitec/agent.toml",
        "memory_max": "512M",
        "collector_logs": inputs.fleet.has_role(host, "logs").then(|| FLEET_LOGS.trim_start_matches("/var/log/")),
    })
}

/// polkit's rule letting the agent restart the apps' units, and the
/// tmpfiles line keeping polkit's rules folder root's.
fn polkit(inputs: &Inputs, host: HostId, template: &str) -> Value {
    let h = &inputs.fleet.hosts[host];
    let (origin, host) = (spec_file(inputs, h.span), &h.name);
    if template == "polkit/tmpfiles.conf" {
        json!({ "origin": origin, "host": host, "rules_dir": "/etc/polkit-1/rules.d", "group": "polkitd" })
    } else {
        // `restart` is all `agent::services` asks for.
        json!({ "origin": origin, "host": host, "user": AGENT_GROUP, "unit_prefix": APP_UNIT_PREFIX, "verbs": ["restart"] })
    }
}

fn balancer_service(inputs: &Inputs, host: HostId) -> Value {
    let h = &inputs.fleet.hosts[host];
    json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "user": "sitec-balancer",
        "group": "sitec-balancer",
        "sitec_binary": SITEC_BINARY,
        "config": "/etc/sitec/balancer.toml",
        "log_dir": BALANCER_LOGS,
        "max_open_files": 262_144,
    })
}

/// The fields of `balancer.toml` that differ from one balancer to the next.
fn balancer_open(inputs: &Inputs, host: HostId) -> Vec<(&'static str, String)> {
    let h = &inputs.fleet.hosts[host];
    vec![
        ("origin", spec_file(inputs, h.span)),
        ("host", h.name.clone()),
    ]
}

fn balancer_config(inputs: &Inputs, host: HostId) -> Result<Value, String> {
    let fleet = inputs.fleet;
    let addresses: Vec<String> = (0..fleet.hosts.len()).map(|h| fleet.address(h)).collect();
    let routes: Vec<Value> = fleet
        .apps
        .iter()
        .enumerate()
        .map(|(id, a)| {
            let backends: Vec<String> = fleet.placement[id]
                .iter()
                .map(|runner| format!("{}:{}", addresses[*runner], a.port))
                .collect();
            let hosts: Vec<&str> = fleet.placement[id]
                .iter()
                .map(|runner| fleet.hosts[*runner].name.as_str())
                .collect();
            json!({
                "origin": spec_file(inputs, a.span),
                "name": a.name,
                "domains": a.domains.iter().map(|(d, _)| d).collect::<Vec<_>>(),
                "backends": backends,
                "hosts": hosts,
                "max_body": a.max_body,
                "redirect_https": a.tls.as_ref().is_some_and(|t| t.redirect),
            })
        })
        .collect();
    // Each certificate by SNI for its app's domains (`*` names no host).
    let certs: Vec<Value> = (fleet.apps.iter())
        .filter(|a| a.tls.is_some())
        .map(|a| {
            json!({
                "origin": spec_file(inputs, a.span),
                "domains": (a.domains.iter()).map(|(d, _)| d).filter(|d| *d != "*").collect::<Vec<_>>(),
                "cert": tls_file(&a.name, false),
                "key": tls_file(&a.name, true),
            })
        })
        .collect();
    let mut context = json!({
        "listen_http": ["0.0.0.0:80"],
        "listen_https": if certs.is_empty() { json!([]) } else { json!(["0.0.0.0:443"]) },
        "certs": certs,
        "admin": BALANCER_ADMIN,
        "backend_idle_ms": BALANCER_IDLE_SECONDS * 1000,
        "runner_keepalive_seconds": RUNNER_KEEPALIVE_SECONDS,
        "access_log": BALANCER_ACCESS_LOG,
        "bus_key_file": BALANCER_BUS_KEY,
        "heartbeats": fleet
            .hosts_with_role("runner")
            .map(|r| Ok(json!({
                "host": fleet.hosts[r].name,
                "endpoint": crate::bus_topology::endpoint(fleet, r, BUS_HEARTBEAT_PORT),
                "key": host_public_key(inputs, r)?,
            })))
            .collect::<Result<Vec<_>, String>>()?,
        "routes": routes,
    });
    if let Some(map) = context.as_object_mut() {
        for (field, value) in balancer_open(inputs, host) {
            map.insert(field.to_string(), Value::String(value));
        }
    }
    Ok(context)
}

/// Where each host's bus key lives (0600 root, read by its agent) and each
/// balancer's (0640 root:sitec-balancer).
const HOST_BUS_KEY: &str = "/etc/sitec/bus/host.key";
const BALANCER_BUS_KEY: &str = "/etc/sitec/bus/balancer.key";

/// The bus key pair derived from generated secret `name`.
fn bus_keys(inputs: &Inputs, name: &str) -> Result<crate::bus::KeyPair, String> {
    Ok(crate::bus::keys::derive(&secret(inputs, name)?))
}

/// Host `host`'s public bus key, in Z85.
fn host_public_key(inputs: &Inputs, host: HostId) -> Result<String, String> {
    let name = crate::bus::keys::host_secret(&inputs.fleet.hosts[host].name);
    Ok(bus_keys(inputs, &name)?.public.z85())
}

/// `{name, key}` for each of `hosts`, with the key `secret` names for it.
fn named_keys(
    inputs: &Inputs,
    hosts: impl Iterator<Item = HostId>,
    secret: fn(&str) -> String,
) -> Result<Vec<Value>, String> {
    hosts
        .map(|h| {
            let name = &inputs.fleet.hosts[h].name;
            let key = bus_keys(inputs, &secret(name))?.public.z85();
            Ok(json!({ "name": name, "key": key }))
        })
        .collect()
}

/// The balancer's admin listener (metrics, `/rotation`), on the host only.
const BALANCER_ADMIN: &str = "127.0.0.1:9100";
/// The agent's own state (the fleet lock's lease, log offsets).
pub const AGENT_STATE: &str = "/var/lib/sitec-agent";

/// The Host header the agent asks an app with (`probe`): its first domain,
/// a wildcard made a name under it.
fn probe_domain(domains: &[(String, crate::source::Span)]) -> String {
    match domains.first().map(|(d, _)| d.as_str()) {
        None | Some("*") => "localhost".into(),
        Some(d) => match d.strip_prefix("*.") {
            Some(rest) => format!("www.{rest}"),
            None => d.to_string(),
        },
    }
}

/// The file systems `status` reports for a host: its logs, and each kind of
/// data its roles keep.
fn agent_disks(fleet: &Fleet, host: HostId) -> Vec<Value> {
    let mut disks = vec![json!({ "path": "/var/log", "holds": "logs" })];
    for (role, path, holds) in [
        ("runner", APPS_ROOT, "apps"),
        ("postgres", "/var/lib/postgresql", "data"),
        ("redis", "/var/lib/redis", "data"),
        ("backup", BACKUPS_ROOT, "backups"),
    ] {
        if fleet.has_role(host, role) {
            disks.push(json!({ "path": path, "holds": holds }));
        }
    }
    disks
}

/// Where every balancer writes its access log (its agent ships it to the
/// `logs` hosts).
const BALANCER_ACCESS_LOG: &str = "/var/log/sitec/balancer/access.log";
const BALANCER_LOGS: &str = "/var/log/sitec/balancer";

/// What every unit of an app starts with: the agent may restart units so
/// named, and no other (`polkit/sitec-agent.rules`).
const APP_UNIT_PREFIX: &str = "sitec-app-";

/// The systemd unit that runs an app's gunicorn (`service` in stdlib's runner role).
fn app_unit(app: &str) -> String {
    format!("{APP_UNIT_PREFIX}{app}.service")
}

fn agent_config(inputs: &Inputs, host: HostId) -> Result<Value, String> {
    use crate::bus::keys;
    let fleet = inputs.fleet;
    let h = &fleet.hosts[host];
    let logs_endpoint = |c| crate::bus_topology::endpoint(fleet, c, BUS_LOGS_PORT);
    let collectors = (fleet.hosts_with_role("logs"))
        .map(|c| Ok(json!({ "endpoint": logs_endpoint(c), "key": host_public_key(inputs, c)? })))
        .collect::<Result<Vec<_>, String>>()?;
    let collector = if fleet.has_role(host, "logs") {
        json!({
            "endpoint": logs_endpoint(host),
            "dir": FLEET_LOGS,
            "senders": named_keys(inputs, 0..fleet.hosts.len(), keys::host_secret)?,
        })
    } else {
        Value::Null
    };
    let mut logs = Vec::new();
    let mut apps = Vec::new();
    for app in fleet.apps_on(host) {
        let a = &fleet.apps[app];
        let here: Vec<&crate::model::Worker> = (fleet.workers_on(app, host))
            .map(|w| &a.workers[w])
            .collect();
        let workers: Vec<String> = (here.iter())
            .map(|w| format!("{APP_UNIT_PREFIX}{}-worker-{}.service", a.name, w.name))
            .collect();
        apps.push(json!({
            "origin": spec_file(inputs, a.span),
            "name": a.name,
            "service": app_unit(&a.name),
            "workers": workers,
            "socket": gunicorn_bind(&a.name).trim_start_matches("unix:"),
            "domain": probe_domain(&a.domains),
            "run_socket": run_socket(&a.name),
        }));
        // Who writes each file: systemd (as root) appends gunicorn's output
        // and each worker's (celery's: `worker-NAME.log`); nginx's are
        // www-data's (made so before nginx opens them, and so Debian's
        // logrotate makes them again).
        let workers = (here.iter()).map(|w| {
            let file = format!("worker-{}.log", w.name);
            let path = format!("{}/{file}", log_dir(&a.name));
            (file, path, "root")
        });
        let files = [
            (
                "gunicorn-access.log",
                format!("{}/gunicorn-access.log", log_dir(&a.name)),
                "root",
            ),
            (
                "gunicorn-error.log",
                format!("{}/gunicorn-error.log", log_dir(&a.name)),
                "root",
            ),
            ("nginx-access.log", nginx_log(&a.name, "access"), "www-data"),
            ("nginx-error.log", nginx_log(&a.name, "error"), "www-data"),
        ]
        .map(|(file, path, owner)| (file.to_string(), path, owner));
        for (file, path, owner) in files.into_iter().chain(workers) {
            logs.push(json!({ "origin": spec_file(inputs, a.span), "path": path, "tag": format!("{}/{file}", a.name), "owner": owner }));
        }
    }
    if fleet.has_role(host, "balancer") {
        logs.push(json!({ "origin": spec_file(inputs, h.span), "path": BALANCER_ACCESS_LOG, "tag": "balancer/access.log", "owner": "sitec-balancer" }));
    }
    let postgres: Vec<Value> = (crate::model::clusters::clusters_on(fleet, host).iter())
        .map(|c| json!({ "cluster": c.name, "port": c.port }))
        .collect();
    let redis = (crate::model::clusters::redis_on(fleet, host).into_iter())
        .map(|r| {
            let db = &fleet.databases[r];
            Ok(json!({
                "name": db.name,
                "port": db.port,
                "password": secret(inputs, &redis_agent_secret(&db.name))?,
                "ca_file": crate::fleet_ca::CA_FILE,
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "state_dir": AGENT_STATE,
        "disks": agent_disks(fleet, host),
        "backups": (fleet.backups.iter())
            .filter(|b| b.to == host)
            .map(|b| json!({ "name": b.name, "status_file": backup_status_file(&b.name) }))
            .collect::<Vec<_>>(),
        "postgres": postgres,
        "redis": redis,
        "balancer_admin": fleet.has_role(host, "balancer").then_some(BALANCER_ADMIN),
        "address": fleet.listen_address(host),
        "control_port": BUS_CONTROL_PORT,
        "heartbeat_port": BUS_HEARTBEAT_PORT,
        "key_file": HOST_BUS_KEY,
        "operator_key": bus_keys(inputs, keys::OPERATOR_SECRET)?.public.z85(),
        "heartbeat_readers": named_keys(inputs, fleet.hosts_with_role("balancer"), keys::balancer_secret)?,
        "log_collectors": collectors,
        "collector": collector,
        "apps": apps,
        "logs": logs,
    }))
}

fn postgresql_conf(inputs: &Inputs, host: HostId, cluster: &Cluster) -> Result<Value, String> {
    let fleet = inputs.fleet;
    let first = &fleet.databases[cluster.databases[0]];
    let standby = if cluster.standby == Some(host) {
        standby_source(inputs, host, cluster)?
    } else {
        Value::Null
    };
    let config = format!("{}/", cluster.config_directory());
    Ok(json!({
        "origin": spec_file(inputs, first.span),
        "cluster": cluster.name,
        "host": fleet.hosts[host].name,
        "data_directory": cluster.data_directory(),
        "hba_file": format!("{config}pg_hba.conf"),
        "ident_file": format!("{config}pg_ident.conf"),
        "listen_addresses": ["127.0.0.1", fleet.listen_address(host)],
        "port": cluster.port,
        "unix_socket_directory": "/var/run/postgresql",
        "ssl_cert_file": DB_POSTGRES_CERT_FILE,
        "ssl_key_file": DB_POSTGRES_KEY_FILE,
        "max_connections": 100,
        "shared_buffers": "128MB",
        "effective_cache_size": "512MB",
        "work_mem": "4MB",
        "maintenance_work_mem": "64MB",
        "max_wal_senders": 5,
        "wal_keep_size": "1GB",
        "log_min_duration_statement_ms": 500,
        "standby": standby,
    }))
}

/// Where the standby `host` of `cluster` streams from: its primary, the
/// replication role and password, and the slot the primary keeps for it.
fn standby_source(inputs: &Inputs, host: HostId, cluster: &Cluster) -> Result<Value, String> {
    let fleet = inputs.fleet;
    Ok(json!({
        "primary_host": fleet.address(cluster.primary),
        "primary_port": cluster.port,
        "replication_user": "replicator",
        "replication_password": secret(inputs, &replication_secret(&fleet.hosts[cluster.primary].name, &cluster.name))?,
        "slot_name": standby_slot(&fleet.hosts[host].name),
        "ca_file": crate::fleet_ca::CA_FILE,
    }))
}

/// The replication slot a primary keeps for its standby `host`.
fn standby_slot(host: &str) -> String {
    format!("standby_{}", host.replace('-', "_"))
}

/// The script that makes a standby's data directory a copy of its primary.
fn clone_standby(inputs: &Inputs, host: HostId, cluster: &Cluster) -> Result<Value, String> {
    let fleet = inputs.fleet;
    if cluster.standby != Some(host) {
        return Err("template `postgres/clone-standby.sh` is used outside `each standby`".into());
    }
    let source = standby_source(inputs, host, cluster)?;
    let password = source["replication_password"].as_str().unwrap_or_default();
    Ok(json!({
        "origin": spec_file(inputs, fleet.databases[cluster.databases[0]].span),
        "cluster": cluster.name,
        "host": fleet.hosts[host].name,
        "service": format!("postgresql@{POSTGRES_VERSION}-{}", cluster.name),
        "data_directory": cluster.data_directory(),
        "primary_host": source["primary_host"],
        "primary_port": source["primary_port"],
        "replication_user": source["replication_user"],
        "password_sh": crate::transport::shell_quote(password),
        "slot_name": source["slot_name"],
        "ca_file": crate::fleet_ca::CA_FILE,
    }))
}

fn pg_hba(inputs: &Inputs, host: HostId, cluster: &Cluster) -> Value {
    let fleet = inputs.fleet;
    let first = &fleet.databases[cluster.databases[0]];
    let mut apps = Vec::new();
    for (id, a) in fleet.apps.iter().enumerate() {
        for binding in a
            .bindings
            .iter()
            .filter(|b| cluster.databases.contains(&b.database))
        {
            let addresses: Vec<String> = fleet.placement[id]
                .iter()
                .map(|r| format!("{}/32", fleet.address(*r)))
                .collect();
            apps.push(json!({
                "origin": format!("{} (app {})", spec_file(inputs, binding.span), a.name),
                "database": a.name,
                "user": a.name,
                "addresses": addresses,
            }));
        }
    }
    let replication: Vec<Value> = cluster
        .standby
        .map(|standby| {
            json!({
                "origin": format!("{} (standby = {})", spec_file(inputs, first.follower_span.unwrap_or(first.span)), fleet.hosts[standby].name),
                "user": "replicator",
                "address": format!("{}/32", fleet.address(standby)),
            })
        })
        .into_iter()
        .collect();
    json!({
        "origin": spec_file(inputs, first.span),
        "cluster": cluster.name,
        "host": fleet.hosts[host].name,
        "apps": apps,
        "replication": replication,
    })
}

/// Each app's role and database in a cluster (the same names `pg_hba` lets
/// in), and the replication role when the cluster has a standby.
fn postgres_roles(inputs: &Inputs, host: HostId, cluster: &Cluster) -> Result<Value, String> {
    let fleet = inputs.fleet;
    let mut apps = Vec::new();
    for a in &fleet.apps {
        let Some(binding) = a
            .bindings
            .iter()
            .find(|b| cluster.databases.contains(&b.database))
        else {
            continue;
        };
        let db = &fleet.databases[binding.database];
        apps.push(json!({
            "origin": format!("{} (app {})", spec_file(inputs, binding.span), a.name),
            "role": a.name,
            "database": a.name,
            "password": sql_string(&secret(inputs, &db_password_secret(&db.name, &a.name))?),
        }));
    }
    let replication = match cluster.standby {
        Some(standby) => json!({
            "role": "replicator",
            "slot": standby_slot(&fleet.hosts[standby].name),
            "password": sql_string(&secret(inputs, &replication_secret(&fleet.hosts[cluster.primary].name, &cluster.name))?),
        }),
        None => Value::Null,
    };
    Ok(json!({
        "origin": spec_file(inputs, fleet.databases[cluster.databases[0]].span),
        "cluster": cluster.name,
        "host": fleet.hosts[host].name,
        "apps": apps,
        "replication": replication,
    }))
}

/// A SQL string literal: single quotes, doubled inside.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn redis_conf(inputs: &Inputs, host: HostId, redis: DatabaseId) -> Result<Value, String> {
    let fleet = inputs.fleet;
    let db = &fleet.databases[redis];
    let replicaof = if db.follower == Some(host) {
        json!({ "host": fleet.address(db.primary), "port": db.port })
    } else {
        Value::Null
    };
    Ok(json!({
        "origin": spec_file(inputs, db.span),
        "app": db.name,
        "host": fleet.hosts[host].name,
        "bind": ["127.0.0.1", fleet.listen_address(host)],
        "port": db.port,
        "dir": format!("/var/lib/redis/{}", db.name),
        "log_file": format!("/var/log/redis/redis-{}.log", db.name),
        "pid_file": format!("/run/redis-{}/redis-server.pid", db.name),
        "password": secret(inputs, &redis_password_secret(&db.name))?,
        "agent_user": AGENT_GROUP,
        "agent_password": secret(inputs, &redis_agent_secret(&db.name))?,
        "maxmemory": "256mb",
        "maxmemory_policy": "noeviction",
        "replicaof": replicaof,
        "tls_cert_file": DB_REDIS_CERT_FILE,
        "tls_key_file": DB_REDIS_KEY_FILE,
        "tls_ca_file": crate::fleet_ca::CA_FILE,
    }))
}

/// Every generated secret the fleet needs (database, Redis and replication
/// passwords, the bus keys' secrets), sorted: `sitec render` adds the missing ones to the secrets file.
pub fn generated_secrets(fleet: &Fleet) -> Vec<String> {
    let mut names = Vec::new();
    for a in &fleet.apps {
        for binding in &a.bindings {
            let db = &fleet.databases[binding.database];
            match db.engine {
                Engine::Postgres => names.push(db_password_secret(&db.name, &a.name)),
                Engine::Redis => names.push(redis_password_secret(&db.name)),
            }
        }
    }
    for db in fleet.databases.iter().filter(|d| d.engine == Engine::Redis) {
        names.push(redis_password_secret(&db.name));
        names.push(redis_agent_secret(&db.name));
    }
    for cluster in crate::model::clusters::clusters(fleet) {
        names.push(replication_secret(
            &fleet.hosts[cluster.primary].name,
            &cluster.name,
        ));
    }
    for b in &fleet.backups {
        names.push(backup_key_secret(&b.name));
    }
    for a in &fleet.apps {
        names.push(secret_key_secret(&a.name));
    }
    for h in &fleet.hosts {
        names.push(crate::bus::keys::host_secret(&h.name));
    }
    for b in fleet.hosts_with_role("balancer") {
        names.push(crate::bus::keys::balancer_secret(&fleet.hosts[b].name));
    }
    names.push(crate::bus::keys::OPERATOR_SECRET.to_string());
    names.push(crate::fleet_ca::CA_SECRET.to_string());
    names.sort();
    names.dedup();
    names
}

/// Backups: where their pieces live on the hosts.
pub const SNAPSHOTS_ROOT: &str = "/var/lib/sitec/snapshots";
pub const BACKUPS_ROOT: &str = "/srv/sitec/backups";
pub const BACKUP_CONFIG: &str = "/etc/sitec/backup";

/// Where a backup host's pull writes what it holds of backup `name`: in
/// the pull unit's state folder (root's, 0755), which the agent reads.
pub fn backup_status_file(name: &str) -> String {
    format!("/var/lib/sitec-backup/{name}.status.json")
}
/// How many snapshots a database host keeps of each backup; the backup host keeps the history.
const SNAPSHOTS_KEPT_LOCALLY: u32 = 3;

/// The generated secret backup `name`'s SSH key is derived from.
pub fn backup_key_secret(backup: &str) -> String {
    format!("backup.{backup}.ssh_key")
}

/// Backup `name`'s key pair (`sshkey`), from its generated secret.
pub fn backup_key(secrets: &Secrets, backup: &str) -> Result<crate::sshkey::KeyPair, String> {
    let name = backup_key_secret(backup);
    let value = secrets
        .get(&name)
        .ok_or_else(|| format!("secret `{name}` has no value"))?;
    crate::sshkey::derive(&value)
}

fn backup_key_comment(fleet: &Fleet, b: &Backup) -> String {
    format!("sitec-backup-{}@{}", b.name, fleet.hosts[b.to].name)
}

fn need_backup<'f>(fleet: &'f Fleet, template: &str, scope: &Scope) -> Result<&'f Backup, String> {
    scope.backup.map(|b| &fleet.backups[b]).ok_or_else(|| {
        format!("template `{template}` is used outside `each backup` or `each snapshot`")
    })
}

/// The contexts of `backup/*`: the backup of the `each backup` (or `each
/// snapshot`) a file is declared in, or every backup pulling from the host.
fn backup_context(
    template: &str,
    inputs: &Inputs,
    host: HostId,
    scope: &Scope,
) -> Result<Built, String> {
    let plain = |context| {
        Ok(Built {
            context,
            secret: false,
        })
    };
    match template {
        "backup/authorized_keys" => return plain(authorized_keys(inputs, host)?),
        "backup/sshd.conf" => return plain(sshd_conf(inputs, host)),
        _ => {}
    }
    let b = need_backup(inputs.fleet, template, scope)?;
    match template {
        "backup/snapshot.toml" => plain(snapshot_config(inputs, host, b)),
        "backup/snapshot.service" => plain(backup_service(inputs, host, b, Side::Snapshot)),
        "backup/snapshot.timer" => plain(backup_timer(inputs, host, b, Side::Snapshot)),
        "backup/pull.toml" => plain(pull_config(inputs, host, b)),
        "backup/pull.service" => plain(backup_service(inputs, host, b, Side::Pull)),
        "backup/pull.timer" => plain(backup_timer(inputs, host, b, Side::Pull)),
        "backup/ssh-key" => Ok(Built {
            context: ssh_key(inputs, host, b)?,
            secret: true,
        }),
        other => Err(format!("sitec has no context for template `{other}`")),
    }
}

/// The data subvolumes of a host a backup pulls from, which its snapshots
/// hold: its databases' and its apps' media stores.
fn data_subvolumes(fleet: &Fleet, host: HostId) -> Vec<Value> {
    let mut out = Vec::new();
    if !clusters::clusters_on(fleet, host).is_empty() {
        out.push(json!({ "name": "postgresql", "path": "/var/lib/postgresql" }));
    }
    if !clusters::redis_on(fleet, host).is_empty() {
        out.push(json!({ "name": "redis", "path": "/var/lib/redis" }));
    }
    // The media stores of the apps this host runs: subvolumes too (the
    // `snapshots` role's `each media`). A GlusterFS volume's mount hides
    // the subvolume below it: on the app's leader its first brick is the
    // store's subvolume instead, under the same name (a replica holds
    // every file; `sitec restore` writes it back through the mount).
    for app in fleet.apps_on(host) {
        let a = &fleet.apps[app];
        let shared = crate::model::volumes::shared(fleet, app);
        if shared && fleet.placement[app].first() != Some(&host) {
            continue;
        }
        for m in &a.media {
            let path = if shared {
                crate::model::volumes::brick_dir(&a.name, &m.name)
            } else {
                media_dir(&a.name, &m.name)
            };
            out.push(json!({
                "name": crate::data::snapshots::media_subvolume(&a.name, &m.name),
                "path": path,
            }));
        }
    }
    out
}

fn snapshot_config(inputs: &Inputs, host: HostId, b: &Backup) -> Value {
    let fleet = inputs.fleet;
    json!({
        "origin": spec_file(inputs, b.span),
        "backup": b.name,
        "host": fleet.hosts[host].name,
        "service": format!("{}.service", Side::Snapshot.unit(&b.name)),
        "snapshot_dir": format!("{SNAPSHOTS_ROOT}/{}", b.name),
        "subvolumes": data_subvolumes(fleet, host),
        "keep_local": SNAPSHOTS_KEPT_LOCALLY,
    })
}

/// The two ends of a backup: the database host's snapshots, the backup host's pulls.
#[derive(Clone, Copy)]
enum Side {
    Snapshot,
    Pull,
}

impl Side {
    /// `sitec-snapshot-NAME` / `sitec-backup-NAME`.
    fn unit(self, backup: &str) -> String {
        match self {
            Side::Snapshot => format!("sitec-snapshot-{backup}"),
            Side::Pull => format!("sitec-backup-{backup}"),
        }
    }

    /// The file `sitec data snapshot` or `sitec data pull` reads.
    fn config(self, backup: &str) -> String {
        match self {
            Side::Snapshot => format!("{BACKUP_CONFIG}/{backup}.snapshot.toml"),
            Side::Pull => format!("{BACKUP_CONFIG}/{backup}.pull.toml"),
        }
    }
}

fn backup_service(inputs: &Inputs, host: HostId, b: &Backup, side: Side) -> Value {
    let mut context = json!({
        "origin": spec_file(inputs, b.span),
        "backup": b.name,
        "host": inputs.fleet.hosts[host].name,
        "sitec": SITEC_BINARY,
        "config": side.config(&b.name),
        "timer": format!("{}.timer", side.unit(&b.name)),
    });
    if let (Side::Pull, Some(map)) = (side, context.as_object_mut()) {
        // The whole subvolume, not this backup's folder in it: `btrfs
        // receive` finds the parent of an incremental copy through the
        // root of the mount it writes in, which must be a subvolume's.
        map.insert("writable".into(), json!(BACKUPS_ROOT));
        map.insert("state_directory".into(), json!("sitec-backup"));
    }
    context
}

fn backup_timer(inputs: &Inputs, host: HostId, b: &Backup, side: Side) -> Value {
    let every_seconds = (b.every_ms / 1000).max(1);
    let mut context = json!({
        "origin": spec_file(inputs, b.span),
        "backup": b.name,
        "host": inputs.fleet.hosts[host].name,
        "service": format!("{}.service", side.unit(&b.name)),
        "every_seconds": every_seconds,
    });
    if let (Side::Pull, Some(map)) = (side, context.as_object_mut()) {
        map.insert("first_seconds".into(), json!((every_seconds / 2).max(1)));
    }
    context
}

fn pull_config(inputs: &Inputs, host: HostId, b: &Backup) -> Value {
    let fleet = inputs.fleet;
    // By name: the order `from` is written in changes nothing.
    let mut from = b.from.clone();
    from.sort_by(|x, y| fleet.hosts[x.0].name.cmp(&fleet.hosts[y.0].name));
    let sources: Vec<Value> = from
        .iter()
        .map(|(h, span)| {
            let provider = fleet.provider_of(*h);
            json!({
                "origin": format!("{} (from {})", spec_file(inputs, *span), fleet.hosts[*h].name),
                "host": fleet.hosts[*h].name,
                "address": fleet.address(*h),
                "port": provider.port,
                "user": "root",
            })
        })
        .collect();
    json!({
        "origin": spec_file(inputs, b.span),
        "backup": b.name,
        "host": fleet.hosts[host].name,
        "service": format!("{}.service", Side::Pull.unit(&b.name)),
        "destination": format!("{BACKUPS_ROOT}/{}", b.name),
        "key": format!("{BACKUP_CONFIG}/{}.key", b.name),
        "known_hosts": "/var/lib/sitec-backup/known_hosts",
        "status": backup_status_file(&b.name),
        "sources": sources,
        "keep": b.keep,
    })
}

fn ssh_key(inputs: &Inputs, host: HostId, b: &Backup) -> Result<Value, String> {
    let pair = backup_key(inputs.secrets, &b.name)?;
    Ok(json!({
        "origin": spec_file(inputs, b.span),
        "backup": b.name,
        "host": inputs.fleet.hosts[host].name,
        "private_key": pair.private_pem.trim_end(),
    }))
}

/// Root's restricted keys on a database host: one per backup that pulls from it.
fn authorized_keys(inputs: &Inputs, host: HostId) -> Result<Value, String> {
    let fleet = inputs.fleet;
    let h = &fleet.hosts[host];
    let mut keys = Vec::new();
    let mut backups: Vec<&Backup> = (fleet.backups.iter())
        .filter(|b| b.from.iter().any(|(f, _)| *f == host))
        .collect();
    backups.sort_by(|x, y| x.name.cmp(&y.name));
    for b in backups {
        let pair = backup_key(inputs.secrets, &b.name)?;
        keys.push(json!({
            "origin": spec_file(inputs, b.span),
            "backup": b.name,
            "puller": fleet.hosts[b.to].name,
            "from": fleet.address(b.to),
            "command": format!("{SITEC_BINARY} data serve {SNAPSHOTS_ROOT}/{}", b.name),
            "public_key": pair.public,
            "comment": backup_key_comment(fleet, b),
        }));
    }
    Ok(json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "user": "root",
        "sshd_config": "/etc/ssh/sshd_config.d/sitec-backup.conf",
        "keys": keys,
    }))
}

fn sshd_conf(inputs: &Inputs, host: HostId) -> Value {
    let h = &inputs.fleet.hosts[host];
    json!({
        "origin": spec_file(inputs, h.span),
        "host": h.name,
        "authorized_keys": format!("{BACKUP_CONFIG}/authorized_keys.USER"),
        "authorized_keys_pattern": format!("{BACKUP_CONFIG}/authorized_keys.%u"),
    })
}

/// For tests: `f` with the inputs of `examples/NAME` (placeholder secrets).
#[cfg(test)]
pub fn with_example<R>(name: &str, f: impl FnOnce(&Inputs) -> R) -> R {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let spec = std::fs::read_to_string(path).expect("the example");
    let mut sources = SourceMap::new();
    let (done, diagnostics) =
        crate::compile::with_fleet_text(&mut sources, name, &spec, |fleet, sources| {
            f(&Inputs {
                fleet,
                sources,
                secrets: &Secrets::placeholders(),
                overrides: &[],
                shared: Shared::default(),
            })
        });
    done.unwrap_or_else(|| panic!("{diagnostics:?}"))
}

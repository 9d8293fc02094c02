//! The fleet model: a checked spec as typed data.
//!
//! Built from the syntax trees once `resolve` has found no errors, so every
//! reference names a declaration and every value has its schema type; the
//! builder reads them without re-checking. It adds what the spec leaves to
//! sitec: where each app's replicas run, which port each service listens on,
//! the names of databases and roles. Everything keeps the span of the spec
//! line that produced it. Pure: no IO.

pub mod clusters;
mod placement;
mod read;
pub mod volumes;

use crate::diagnostic::Diagnostic;
use crate::modules::Program;
use crate::resolve::schema::Kind;
use crate::resolve::Symbols;
use crate::source::Span;
use crate::syntax::ast::{Block, Entry, Value, ValueKind};
use read::Fields;
use std::collections::BTreeMap;

/// An index into `Fleet::hosts` (and so on for the other kinds).
pub type HostId = usize;
pub type AppId = usize;
pub type DatabaseId = usize;
pub type ProviderId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Ssh,
    Local,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub user: String,
    pub port: u16,
    pub known_hosts: Option<String>,
    pub identity: Option<String>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub provider: ProviderId,
    /// As written; `None` for hosts of a local provider until the fleet
    /// gives them one (see `Fleet::address`).
    pub address: Option<String>,
    /// Where its own services bind when `address` is not on any of its
    /// interfaces (EC2's public IPs); see `Fleet::listen_address`.
    pub private_address: Option<String>,
    pub roles: Vec<String>,
    pub span: Span,
    /// The span of `address = ...`, when the spec sets it.
    pub address_span: Option<Span>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Shared,
    Dedicated,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub engine: Engine,
    pub tier: Tier,
    pub primary: HostId,
    /// The Postgres standby or the Redis replica.
    pub follower: Option<HostId>,
    pub port: u16,
    pub span: Span,
    /// The span of `primary = ...`'s value.
    pub primary_span: Option<Span>,
    /// The span of `standby = ...` or `replica = ...`.
    pub follower_span: Option<Span>,
    /// The span of `port = ...`, when the spec sets it.
    pub port_span: Option<Span>,
}

#[derive(Debug, Clone)]
pub struct Static {
    pub url: String,
    pub dir: String,
    pub span: Span,
}

/// `media "/url/" = "name"` of an app: uploads kept outside the releases.
#[derive(Debug, Clone)]
pub struct Media {
    pub url: String,
    pub name: String,
    pub span: Span,
}

/// `databases { alias = database }` of an app.
#[derive(Debug, Clone)]
pub struct Binding {
    pub alias: String,
    pub database: DatabaseId,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub name: String,
    pub command: String,
    pub replicas: u32,
    /// `once = true`: on the app's leader only (a scheduler).
    pub once: bool,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub source: String,
    pub python: String,
    /// Where `python` is written; `None`: the default.
    pub python_span: Option<Span>,
    /// The callable gunicorn serves: `wsgi`'s, or `asgi`'s.
    pub wsgi: String,
    /// An ASGI app (`asgi`): served by uvicorn's worker under gunicorn.
    pub asgi: bool,
    pub domains: Vec<(String, Span)>,
    pub replicas: u32,
    /// Runners pinned in the spec (`runners = [...]`).
    pub pinned: Vec<HostId>,
    /// Where each of `pinned` is written.
    pub pinned_spans: Vec<Span>,
    pub paths: Vec<String>,
    pub requirements: String,
    /// The project's Django settings module: `settings_module`, else
    /// `PACKAGE.settings` for the package `wsgi` names.
    pub settings_module: String,
    /// Where `settings_module` is written; `None`: the default.
    pub settings_module_span: Option<Span>,
    pub max_body: u64,
    /// Debian packages its builds of sdists need (`build_packages`).
    pub build_packages: Vec<String>,
    pub statics: Vec<Static>,
    pub media: Vec<Media>,
    pub bindings: Vec<Binding>,
    pub workers: Vec<Worker>,
    /// The port nginx listens on for this app on every runner.
    pub port: u16,
    /// The uid (and gid) of the app's user on every host: `APP_UIDS`.
    pub uid: u32,
    pub span: Span,
    /// Where replicas, domains etc. are written, for diagnostics.
    pub replicas_span: Span,
    /// Where `source`, `requirements` and `wsgi` are written (the app's
    /// head when one is left to its default), for what `local_files`
    /// finds on the operator's machine.
    pub source_span: Span,
    pub requirements_span: Option<Span>,
    pub wsgi_span: Span,
    /// `tls { ... }`: HTTPS at the balancers.
    pub tls: Option<Tls>,
    /// `gunicorn { ... }`, with the defaults filled in.
    pub server: Server,
    /// How many releases each runner keeps, the live one among them.
    pub releases: u32,
}

/// Releases a runner keeps of an app unless its `releases` says.
pub const DEFAULT_RELEASES: u32 = 5;

/// The app server's settings (`gunicorn { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Worker processes; `None`: 2 per CPU of the runner, plus 1 (the
    /// runner's gunicorn config counts them when it starts).
    pub workers: Option<u32>,
    pub threads: u32,
    pub timeout_seconds: u64,
    pub graceful_timeout_seconds: u64,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// gunicorn's `worker_class`: `gthread` or `sync`, or uvicorn's
    /// ([`ASGI_WORKER`]) for an ASGI app.
    pub worker_class: String,
}

/// The worker class gunicorn runs an ASGI app with (`uvicorn-worker`'s).
pub const ASGI_WORKER: &str = "uvicorn_worker.UvicornWorker";

impl Server {
    fn of(block: Option<&Block>, asgi: bool) -> Server {
        let f = block.map(Fields::of_block);
        let int = |key: &str| f.as_ref().and_then(|f| f.int(key));
        let seconds = |key: &str| {
            f.as_ref()
                .and_then(|f| f.duration_ms(key))
                .map_or(30, |ms| ms / 1000)
        };
        let max_requests = int("max_requests").map_or(2000, |n| n.max(0) as u64);
        Server {
            workers: int("workers").map(|n| n.clamp(1, 256) as u32),
            threads: int("threads").map_or(4, |n| n.clamp(1, 256) as u32),
            timeout_seconds: seconds("timeout"),
            graceful_timeout_seconds: seconds("graceful_timeout"),
            max_requests,
            max_requests_jitter: int("max_requests_jitter")
                .map_or(max_requests / 10, |n| n.max(0) as u64),
            worker_class: if asgi {
                ASGI_WORKER.to_string()
            } else {
                f.as_ref()
                    .and_then(|f| f.word("worker_class"))
                    .unwrap_or("gthread")
                    .to_string()
            },
        }
    }
}

/// An app's certificate: files on the operator's machine, relative to the
/// spec, with where each is written.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: (String, Span),
    pub key: (String, Span),
    /// Plain-HTTP requests get a 301 to https.
    pub redirect: bool,
    /// Where `redirect` is set (the `tls` block when it is not).
    pub redirect_span: Span,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Keep {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

#[derive(Debug, Clone)]
pub struct Backup {
    pub name: String,
    pub from: Vec<(HostId, Span)>,
    pub to: HostId,
    pub to_span: Span,
    pub every_ms: u64,
    pub keep: Keep,
    pub span: Span,
}

/// One `settings` layer as written in the spec.
#[derive(Debug, Clone)]
pub struct SettingsLayer {
    pub target: Target,
    pub values: Vec<(String, Value)>,
    /// Its `env { }`: environment variables, layered as the values are.
    pub env: Vec<(String, Value)>,
    pub span: Span,
}

/// Whom a settings layer applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Base,
    Host(HostId),
    /// The app's own `settings` block, or `settings app A`.
    App(AppId),
    AppOnHost(AppId, HostId),
}

/// A role's declaration (its resources are expanded per host later).
#[derive(Debug, Clone)]
pub struct Role<'p> {
    pub name: String,
    pub block: &'p Block,
    pub span: Span,
}

/// The whole fleet, typed.
#[derive(Debug)]
pub struct Fleet<'p> {
    pub providers: Vec<Provider>,
    pub hosts: Vec<Host>,
    pub databases: Vec<Database>,
    pub apps: Vec<App>,
    pub backups: Vec<Backup>,
    pub roles: BTreeMap<String, Role<'p>>,
    pub settings: Vec<SettingsLayer>,
    /// `checks { rule = severity }`, as written.
    pub check_levels: Vec<(String, String, Span)>,
    /// For each app, the runners its replicas run on.
    pub placement: Vec<Vec<HostId>>,
    /// Addresses given to hosts of local providers.
    pub local_addresses: BTreeMap<HostId, String>,
}

impl Fleet<'_> {
    pub fn host_named(&self, name: &str) -> Option<HostId> {
        self.hosts.iter().position(|h| h.name == name)
    }

    pub fn app_named(&self, name: &str) -> Option<AppId> {
        self.apps.iter().position(|a| a.name == name)
    }

    /// The address other hosts reach `host` at.
    pub fn address(&self, host: HostId) -> String {
        let h = &self.hosts[host];
        h.address
            .clone()
            .or_else(|| self.local_addresses.get(&host).cloned())
            .unwrap_or_else(|| h.name.clone())
    }

    /// The address `host`'s own services bind to: its `private_address`,
    /// or else the address others reach it at.
    pub fn listen_address(&self, host: HostId) -> String {
        match &self.hosts[host].private_address {
            Some(private) => private.clone(),
            None => self.address(host),
        }
    }

    pub fn has_role(&self, host: HostId, role: &str) -> bool {
        self.hosts[host].roles.iter().any(|r| r == role)
    }

    pub fn hosts_with_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = HostId> + 'a {
        (0..self.hosts.len()).filter(move |h| self.has_role(*h, role))
    }

    /// The apps whose replicas run on `host`.
    pub fn apps_on(&self, host: HostId) -> impl Iterator<Item = AppId> + '_ {
        (0..self.apps.len()).filter(move |a| self.placement[*a].contains(&host))
    }

    /// The workers of `app` that run on `host` (one of its runners), by
    /// index: every worker on each runner, except a `once` worker, which
    /// runs on the app's leader (its first runner) alone.
    pub fn workers_on(&self, app: AppId, host: HostId) -> impl Iterator<Item = usize> + '_ {
        let leader = self.placement[app].first() == Some(&host);
        let workers = &self.apps[app].workers;
        (0..workers.len()).filter(move |w| leader || !workers[*w].once)
    }

    pub fn provider_of(&self, host: HostId) -> &Provider {
        &self.providers[self.hosts[host].provider]
    }
}

/// Network numbers local hosts get: `10.77.0.0/24`, the gateway at `.1`.
pub const LOCAL_SUBNET: &str = "10.77.0";

/// Builds the model of a program that checked clean.
pub fn build<'p>(program: &'p Program, symbols: &Symbols<'p>) -> (Fleet<'p>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let entries: Vec<&'p Entry> = program.entries().collect();
    let index = |kind: Kind| -> BTreeMap<&str, usize> {
        symbols
            .of_kind(kind)
            .enumerate()
            .map(|(i, d)| (d.name.text.as_str(), i))
            .collect()
    };
    let provider_ids = index(Kind::Provider);
    let host_ids = index(Kind::Host);
    let database_ids = index(Kind::Database);
    let app_ids = index(Kind::App);

    let providers: Vec<Provider> = symbols
        .of_kind(Kind::Provider)
        .map(|d| provider(d.entry))
        .collect();
    let hosts: Vec<Host> = symbols
        .of_kind(Kind::Host)
        .map(|d| host(d.entry, &provider_ids))
        .collect();
    let databases: Vec<Database> = symbols
        .of_kind(Kind::Database)
        .map(|d| database(d.entry, &host_ids))
        .collect();
    let mut apps: Vec<App> = symbols
        .of_kind(Kind::App)
        .map(|d| app(d.entry, &host_ids, &database_ids))
        .collect();
    let backups: Vec<Backup> = symbols
        .of_kind(Kind::Backup)
        .map(|d| backup(d.entry, &host_ids))
        .collect();
    let roles = symbols
        .of_kind(Kind::Role)
        .filter_map(|d| {
            let block = d.entry.block()?;
            Some((
                d.name.text.clone(),
                Role {
                    name: d.name.text.clone(),
                    block,
                    span: d.name.span,
                },
            ))
        })
        .collect();

    let mut settings = Vec::new();
    let mut check_levels = Vec::new();
    for entry in &entries {
        match entry.key.text.as_str() {
            "settings" => settings.extend(settings_layer(entry, &host_ids, &app_ids)),
            "checks" => {
                for (key, value) in Fields::of(entry).all() {
                    if let ValueKind::Ref(word) = &value.kind {
                        check_levels.push((key.to_string(), word.text.clone(), value.span));
                    }
                }
            }
            _ => {}
        }
    }
    for (id, a) in apps.iter().enumerate() {
        if let Some(entry) = symbols.get(Kind::App, &a.name).map(|d| d.entry) {
            let fields = Fields::of(entry);
            let own_settings = fields.block("settings");
            let own_env = fields.block("env");
            if own_settings.is_some() || own_env.is_some() {
                settings.push(SettingsLayer {
                    target: Target::App(id),
                    values: own_settings.map(open_values).unwrap_or_default(),
                    env: own_env.map(open_values).unwrap_or_default(),
                    span: own_settings
                        .or(own_env)
                        .map_or(entry.head_span(), |b| b.span),
                });
            }
        }
    }

    placement::assign_ports(&mut apps);
    placement::assign_uids(&mut apps);
    let mut fleet = Fleet {
        providers,
        hosts,
        databases,
        apps,
        backups,
        roles,
        settings,
        check_levels,
        placement: Vec::new(),
        local_addresses: BTreeMap::new(),
    };
    fleet.placement = placement::place_apps(&fleet, &mut diagnostics);
    fleet.local_addresses = placement::local_addresses(&fleet, &mut diagnostics);
    (fleet, diagnostics)
}

fn provider(entry: &Entry) -> Provider {
    let f = Fields::of(entry);
    Provider {
        name: f.name(),
        kind: if f.word("kind") == Some("local") {
            ProviderKind::Local
        } else {
            ProviderKind::Ssh
        },
        user: f.string("user").unwrap_or("root").to_string(),
        port: f.port("port").unwrap_or(22),
        known_hosts: f.string("known_hosts").map(str::to_string),
        identity: f.string("identity").map(str::to_string),
        span: entry.head_span(),
    }
}

fn host(entry: &Entry, providers: &BTreeMap<&str, usize>) -> Host {
    let f = Fields::of(entry);
    // A set: expanded by name, so `[redis, postgres]` gives the host what
    // `[postgres, redis]` does, in the same order.
    let mut roles = f.words("roles");
    roles.sort();
    roles.dedup();
    Host {
        name: f.name(),
        provider: f.reference("provider", providers).unwrap_or(0),
        address: f.string("address").map(str::to_string),
        private_address: f.string("private_address").map(str::to_string),
        roles,
        span: entry.head_span(),
        address_span: f.value("address").map(|v| v.span),
    }
}

fn database(entry: &Entry, hosts: &BTreeMap<&str, usize>) -> Database {
    let f = Fields::of(entry);
    let engine = if f.word("engine") == Some("redis") {
        Engine::Redis
    } else {
        Engine::Postgres
    };
    let follower_key = if engine == Engine::Postgres {
        "standby"
    } else {
        "replica"
    };
    let tier = if f.word("tier") == Some("dedicated") {
        Tier::Dedicated
    } else {
        Tier::Shared
    };
    let name = f.name();
    // Shared Postgres clusters listen on 5432; a dedicated cluster and every
    // Redis server get a port from their name's hash, stable as others come and go.
    let hashed = |base: u16| base + u16::try_from(placement::stable_hash(&name) % 90).unwrap_or(0);
    let default_port = match (engine, tier) {
        (Engine::Postgres, Tier::Shared) => 5432,
        (Engine::Postgres, Tier::Dedicated) => hashed(5433),
        (Engine::Redis, _) => hashed(6380),
    };
    Database {
        name,
        engine,
        tier,
        primary: f.reference("primary", hosts).unwrap_or(0),
        follower: f.reference(follower_key, hosts),
        port: f.port("port").unwrap_or(default_port),
        span: entry.head_span(),
        primary_span: f.value("primary").map(|v| v.span),
        follower_span: f.value(follower_key).map(|v| v.span),
        port_span: f.value("port").map(|v| v.span),
    }
}

fn app(entry: &Entry, hosts: &BTreeMap<&str, usize>, databases: &BTreeMap<&str, usize>) -> App {
    let f = Fields::of(entry);
    let statics = f
        .labelled("static")
        .map(|(url, value)| Static {
            url: url.to_string(),
            dir: read::as_str(value).unwrap_or_default().to_string(),
            span: value.span,
        })
        .collect();
    let media = f
        .labelled("media")
        .map(|(url, value)| Media {
            url: url.to_string(),
            name: read::as_str(value).unwrap_or_default().to_string(),
            span: value.span,
        })
        .collect();
    let bindings = f
        .block("databases")
        .map(|block| {
            open_values(block)
                .into_iter()
                .filter_map(|(alias, value)| {
                    let ValueKind::Ref(name) = &value.kind else {
                        return None;
                    };
                    let database = *databases.get(name.text.as_str())?;
                    Some(Binding {
                        alias,
                        database,
                        span: value.span,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let workers = f
        .blocks("worker")
        .map(|w| {
            let wf = Fields::of(w);
            Worker {
                name: wf.name(),
                command: wf.string("command").unwrap_or_default().to_string(),
                replicas: wf.int("replicas").map_or(1, |n| n.clamp(1, 64) as u32),
                once: wf.bool("once").unwrap_or(false),
                span: w.head_span(),
            }
        })
        .collect();
    let pinned: Vec<HostId> = f.references("runners", hosts);
    let asgi = f.value("wsgi").is_none() && f.value("asgi").is_some();
    let callable = f
        .string(if asgi { "asgi" } else { "wsgi" })
        .unwrap_or_default();
    let replicas = f
        .int("replicas")
        .map_or(pinned.len().max(1) as u32, |n| n.clamp(0, 1000) as u32);
    App {
        name: f.name(),
        source: f.string("source").unwrap_or_default().to_string(),
        python: f.string("python").unwrap_or("3.11").to_string(),
        python_span: f.value("python").map(|v| v.span),
        wsgi: callable.to_string(),
        asgi,
        domains: f.strings_with_spans("domains"),
        replicas,
        pinned,
        pinned_spans: f.list("runners").iter().map(|v| v.span).collect(),
        paths: {
            let paths = f.strings("paths");
            if paths.is_empty() {
                vec![".".to_string()]
            } else {
                paths
            }
        },
        requirements: f
            .string("requirements")
            .unwrap_or("requirements.txt")
            .to_string(),
        settings_module: f
            .string("settings_module")
            .map_or_else(|| default_settings_module(callable), str::to_string),
        settings_module_span: f.value("settings_module").map(|v| v.span),
        max_body: f.size("max_body").unwrap_or(10 << 20),
        build_packages: f.strings("build_packages"),
        statics,
        media,
        bindings,
        workers,
        port: 0,
        uid: 0,
        span: entry.head_span(),
        replicas_span: f.value("replicas").map_or(entry.head_span(), |v| v.span),
        source_span: f.value("source").map_or(entry.head_span(), |v| v.span),
        requirements_span: f.value("requirements").map(|v| v.span),
        wsgi_span: (f.value("wsgi").or(f.value("asgi"))).map_or(entry.head_span(), |v| v.span),
        tls: f.block("tls").map(|block| {
            let t = Fields::of_block(block);
            let file = |key: &str| {
                t.value(key).map_or((String::new(), block.span), |v| {
                    (t.string(key).unwrap_or_default().to_string(), v.span)
                })
            };
            Tls {
                cert: file("cert"),
                key: file("key"),
                redirect: t.bool("redirect").unwrap_or(false),
                redirect_span: t.value("redirect").map_or(block.span, |v| v.span),
            }
        }),
        server: Server::of(f.block("gunicorn"), asgi),
        releases: f
            .int("releases")
            .map_or(DEFAULT_RELEASES, |n| n.clamp(1, 100) as u32),
    }
}

/// `blog.wsgi:application` -> `blog.settings`: where `django-admin
/// startproject` puts them, beside the WSGI (or ASGI) module.
pub fn default_settings_module(wsgi: &str) -> String {
    let module = wsgi.split(':').next().unwrap_or(wsgi);
    match module.rsplit_once('.') {
        Some((package, _)) => format!("{package}.settings"),
        None => "settings".to_string(),
    }
}

fn backup(entry: &Entry, hosts: &BTreeMap<&str, usize>) -> Backup {
    let f = Fields::of(entry);
    let keep = f.block("keep").map(|k| {
        let kf = Fields::of_block(k);
        let n = |key: &str| kf.int(key).map_or(0, |n| n.clamp(0, 100_000) as u32);
        Keep {
            hourly: n("hourly"),
            daily: n("daily"),
            weekly: n("weekly"),
            monthly: n("monthly"),
        }
    });
    Backup {
        name: f.name(),
        from: f
            .list("from")
            .iter()
            .filter_map(|v| match &v.kind {
                ValueKind::Ref(n) => hosts.get(n.text.as_str()).map(|h| (*h, v.span)),
                _ => None,
            })
            .collect(),
        to: f.reference("to", hosts).unwrap_or(0),
        to_span: f.value("to").map_or(entry.head_span(), |v| v.span),
        every_ms: f.duration_ms("every").unwrap_or(3_600_000),
        keep: keep.unwrap_or(Keep {
            hourly: 24,
            daily: 14,
            weekly: 8,
            monthly: 12,
        }),
        span: entry.head_span(),
    }
}

fn settings_layer(
    entry: &Entry,
    hosts: &BTreeMap<&str, usize>,
    apps: &BTreeMap<&str, usize>,
) -> Option<SettingsLayer> {
    let words: Vec<&str> = entry.labels.iter().map(|l| l.text.as_str()).collect();
    let target = match words.as_slice() {
        ["base"] => Target::Base,
        ["host", h] => Target::Host(*hosts.get(h)?),
        ["app", a] => Target::App(*apps.get(a)?),
        ["app", a, "host", h] => Target::AppOnHost(*apps.get(a)?, *hosts.get(h)?),
        _ => return None,
    };
    let block = entry.block()?;
    Some(SettingsLayer {
        target,
        values: open_values(block),
        env: env_values(block),
        span: entry.head_span(),
    })
}

/// The `env { }` block's entries inside `block`.
fn env_values(block: &Block) -> Vec<(String, Value)> {
    (block.entries.iter())
        .filter(|e| e.key.text == "env")
        .filter_map(|e| e.block())
        .flat_map(open_values)
        .collect()
}

/// The `key = value` entries of an open block (settings, databases).
fn open_values(block: &Block) -> Vec<(String, Value)> {
    block
        .entries
        .iter()
        .filter_map(|e| Some((e.key.text.clone(), e.value()?.clone())))
        .collect()
}

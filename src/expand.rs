//! Expand: every host's roles into the resources that host needs.
//!
//! A host plays the roles in its `roles` list, plus `agent`. Each role's
//! resource blocks become resources; an `each SCOPE { ... }` block repeats
//! its resources for every app, worker, Postgres cluster or Redis server on
//! the host. Labels and string fields may name the scope's values as
//! `{app}`, `{app.user}`, `{cluster.port}` ... (`{{` is a literal brace),
//! and a string of a list field a list value, once per item
//! (`{app.workers}`: every worker of the app, see [`LISTS`]); a
//! file with a `template` is rendered with the context `context` builds for
//! it, or, for a template of your own (`./motd.hbs`), the one
//! `own_templates::context` builds for its host. A `service` with a `unit`
//! template (sitec's or one of your own) also writes its unit file. Pure: the templates and secrets are
//! given.

use crate::context::{self, Inputs, Scope};
use crate::diagnostic::Diagnostic;
use crate::model::clusters::{self, POSTGRES_VERSION};
use crate::model::HostId;
use crate::resources::{self, Kind, Resource};
use crate::settings::line_of;
use crate::source::Span;
use crate::syntax::ast::{Block, Entry, Value, ValueKind};
use crate::templates::Templates;

/// The role every host a backup pulls from plays without asking (`std/platform`).
pub const SNAPSHOTS_ROLE: &str = "snapshots";
/// The role every host holding a brick of a shared media volume plays
/// without asking (`std/platform`): its items converge on every brick host
/// before the rolling deploy (`apply::first_phase`).
pub const GLUSTER_ROLE: &str = "gluster";

/// The resources of one host, in declaration order.
#[derive(Debug, Clone)]
pub struct HostResources {
    pub host: HostId,
    pub resources: Vec<Resource>,
}

/// Expands every host of the fleet.
pub fn expand(inputs: &Inputs, templates: &Templates) -> (Vec<HostResources>, Vec<Diagnostic>) {
    expand_sharing(inputs, templates, true)
}

/// [`expand`], rendering each file on its own when not `share` (tests
/// compare the two).
fn expand_sharing(
    inputs: &Inputs,
    templates: &Templates,
    share: bool,
) -> (Vec<HostResources>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut hosts = Vec::new();
    let mut rendered = Rendered::new(share);
    for host in 0..inputs.fleet.hosts.len() {
        let mut expander = Expander {
            inputs,
            templates,
            host,
            out: Vec::new(),
            index: std::collections::HashMap::new(),
            rendered: &mut rendered,
            diagnostics: &mut diagnostics,
        };
        expander.host();
        hosts.push(HostResources {
            host,
            resources: expander.out,
        });
    }
    (hosts, diagnostics)
}

/// The roles `host` plays: its own, the agent's (every host's), the
/// snapshots role on a host a backup pulls from, and the gluster role on a
/// host holding a brick of a media volume.
fn roles_of(fleet: &crate::model::Fleet, host: HostId) -> Vec<String> {
    let h = &fleet.hosts[host];
    let mut roles: Vec<String> = Vec::new();
    if fleet.roles.contains_key("agent") && !h.roles.iter().any(|r| r == "agent") {
        roles.push("agent".to_string());
    }
    // Before the host's own: the TLS files a runner's mount declares too
    // are the gluster role's, so apply's first phase writes them before it
    // starts glusterd (`plan::desired`'s `first`).
    if crate::model::volumes::holds_bricks(fleet, host)
        && fleet.roles.contains_key(GLUSTER_ROLE)
        && !h.roles.iter().any(|r| r == GLUSTER_ROLE)
    {
        roles.push(GLUSTER_ROLE.to_string());
    }
    roles.extend(h.roles.iter().cloned());
    // A host a backup pulls from takes the snapshots it pulls.
    let backed_up = (fleet.backups.iter()).any(|b| b.from.iter().any(|(f, _)| *f == host));
    if backed_up
        && fleet.roles.contains_key(SNAPSHOTS_ROLE)
        && !roles.iter().any(|r| r == SNAPSHOTS_ROLE)
    {
        roles.push(SNAPSHOTS_ROLE.to_string());
    }
    roles
}

struct Expander<'a, 'p> {
    inputs: &'a Inputs<'a, 'p>,
    templates: &'a Templates,
    host: HostId,
    out: Vec<Resource>,
    /// Where each resource id stands in `out` (a linear search made
    /// expansion quadratic in a host's resources).
    index: std::collections::HashMap<String, usize>,
    /// Files already rendered on any host, by template and context.
    rendered: &'a mut Rendered,
    diagnostics: &'a mut Vec<Diagnostic>,
}

/// A rendered file's content and its sha256.
type Content = (String, String);

/// Every file rendered so far that others may share, by [`context::Key`]:
/// most of an app's files are the same on each of its runners, and the
/// balancers' configs differ in two fields, so each is rendered (and, when
/// whole, hashed) once.
struct Rendered {
    by_key: std::collections::HashMap<context::Key, Kept>,
    /// The settings templates of your own may read, once a file needs them.
    setting_names: std::cell::OnceCell<crate::own_templates::context::SettingNames>,
    /// `false`: every file is rendered alone.
    share: bool,
}

/// A rendered file kept for others with its key, and whether it holds a secret.
struct Kept {
    text: KeptText,
    secret: bool,
}

enum KeptText {
    Whole(Content),
    /// With the key's open fields left open.
    Open(crate::templates::Open),
}

impl Kept {
    /// The file's content, given its values of the open fields.
    fn content(&self, open: &[(&'static str, String)]) -> Content {
        match &self.text {
            KeptText::Whole(content) => content.clone(),
            KeptText::Open(text) => {
                let values: Vec<&str> = open.iter().map(|(_, v)| v.as_str()).collect();
                hashed(text.fill(&values))
            }
        }
    }
}

fn hashed(text: String) -> Content {
    let sha256 = resources::sha256_hex(text.as_bytes());
    (text, sha256)
}

impl Rendered {
    fn new(share: bool) -> Rendered {
        Rendered {
            by_key: std::collections::HashMap::new(),
            setting_names: std::cell::OnceCell::new(),
            share,
        }
    }
}

impl Expander<'_, '_> {
    fn host(&mut self) {
        let h = &self.inputs.fleet.hosts[self.host];
        let roles = roles_of(self.inputs.fleet, self.host);
        let because = line_of(self.inputs.sources, h.span);
        for role in roles {
            let Some(definition) = self.inputs.fleet.roles.get(&role) else {
                continue;
            };
            self.block(&role, definition.block, &Scope::default(), &because);
        }
    }

    fn block(&mut self, role: &str, block: &Block, scope: &Scope, because: &str) {
        for entry in &block.entries {
            match entry.key.text.as_str() {
                "description" => {}
                "each" => self.each(role, entry, scope),
                _ => self.resource(role, entry, scope, because),
            }
        }
    }

    /// `each SCOPE { ... }`: the block once per item of the scope.
    fn each(&mut self, role: &str, entry: &Entry, scope: &Scope) {
        let (Some(word), Some(block)) = (entry.labels.first(), entry.block()) else {
            return;
        };
        let fleet = self.inputs.fleet;
        let items: Vec<(Scope, String)> = match word.text.as_str() {
            "app" => fleet
                .apps_on(self.host)
                .map(|app| {
                    (
                        Scope {
                            app: Some(app),
                            ..scope.clone()
                        },
                        line_of(self.inputs.sources, fleet.apps[app].span),
                    )
                })
                .collect(),
            "tls" => (fleet.apps.iter().enumerate())
                .filter(|(_, app)| app.tls.is_some())
                .map(|(app, a)| {
                    (
                        Scope {
                            app: Some(app),
                            ..scope.clone()
                        },
                        line_of(self.inputs.sources, a.span),
                    )
                })
                .collect(),
            "worker" => {
                let Some(app) = scope.app else {
                    return self
                        .diagnostics
                        .push(each_outside("worker", "app", word.span));
                };
                fleet
                    .workers_on(app, self.host)
                    .map(|w| {
                        (
                            Scope {
                                worker: Some(w),
                                ..scope.clone()
                            },
                            line_of(self.inputs.sources, fleet.apps[app].workers[w].span),
                        )
                    })
                    .collect()
            }
            "media" => {
                let Some(app) = scope.app else {
                    return self
                        .diagnostics
                        .push(each_outside("media", "app", word.span));
                };
                (fleet.apps[app].media.iter().enumerate())
                    .map(|(m, media)| {
                        (
                            Scope {
                                media: Some(m),
                                ..scope.clone()
                            },
                            line_of(self.inputs.sources, media.span),
                        )
                    })
                    .collect()
            }
            // Once, when the app's media stores are GlusterFS volumes.
            "volume" => {
                let (Some(app), Some(_)) = (scope.app, scope.media) else {
                    return self
                        .diagnostics
                        .push(each_outside("volume", "media", word.span));
                };
                let shared = crate::model::volumes::shared(fleet, app);
                let origin = line_of(self.inputs.sources, fleet.apps[app].span);
                shared
                    .then(|| (scope.clone(), origin))
                    .into_iter()
                    .collect()
            }
            // Once, when the app's media stores are each runner's own folder.
            "local" => {
                let (Some(app), Some(_)) = (scope.app, scope.media) else {
                    return self
                        .diagnostics
                        .push(each_outside("local", "media", word.span));
                };
                let local = !crate::model::volumes::shared(fleet, app);
                let origin = line_of(self.inputs.sources, fleet.apps[app].span);
                local.then(|| (scope.clone(), origin)).into_iter().collect()
            }
            "leader" => {
                let Some(app) = scope.app else {
                    return self
                        .diagnostics
                        .push(each_outside("leader", "app", word.span));
                };
                let first = fleet.placement[app].first() == Some(&self.host);
                let origin = line_of(self.inputs.sources, fleet.apps[app].span);
                first.then(|| (scope.clone(), origin)).into_iter().collect()
            }
            "cluster" | "standby" | "primary" => clusters::clusters_on(fleet, self.host)
                .into_iter()
                .filter(|c| match word.text.as_str() {
                    "standby" => c.standby == Some(self.host),
                    "primary" => c.primary == self.host,
                    _ => true,
                })
                .map(|c| {
                    let origin = line_of(self.inputs.sources, fleet.databases[c.databases[0]].span);
                    (
                        Scope {
                            cluster: Some(c),
                            ..scope.clone()
                        },
                        origin,
                    )
                })
                .collect(),
            "redis" => clusters::redis_on(fleet, self.host)
                .into_iter()
                .map(|d| {
                    (
                        Scope {
                            redis: Some(d),
                            ..scope.clone()
                        },
                        line_of(self.inputs.sources, fleet.databases[d].span),
                    )
                })
                .collect(),
            // By name: the order backups are declared in changes nothing.
            "backup" | "snapshot" => {
                let mut ids: Vec<usize> = (0..fleet.backups.len()).collect();
                ids.sort_by(|a, b| fleet.backups[*a].name.cmp(&fleet.backups[*b].name));
                ids.into_iter()
                    .map(|id| (id, &fleet.backups[id]))
                    .filter(|(_, b)| {
                        if word.text == "backup" {
                            b.to == self.host
                        } else {
                            b.from.iter().any(|(f, _)| *f == self.host)
                        }
                    })
                    .map(|(id, b)| {
                        (
                            Scope {
                                backup: Some(id),
                                ..scope.clone()
                            },
                            line_of(self.inputs.sources, b.span),
                        )
                    })
                    .collect()
            }
            _ => return,
        };
        for (inner, origin) in items {
            self.block(role, block, &inner, &origin);
        }
    }

    /// `{app}` and friends in a role's string: the scope's values (a list
    /// value's items joined by spaces).
    fn interpolate(&mut self, text: &str, span: Span, scope: &Scope) -> Option<String> {
        let mut filled = self.fill(text, span, scope, false)?;
        Some(filled.pop().unwrap_or_default())
    }

    /// A string of a list field (`notify`, `requires`, `packages`...): one
    /// string per item of a list value it names (none for an empty list;
    /// for two lists, one per pair), else the one string.
    fn interpolate_each(&mut self, text: &str, span: Span, scope: &Scope) -> Vec<String> {
        self.fill(text, span, scope, true).unwrap_or_default()
    }

    /// The strings `text` makes: one, unless `each` and it names a list.
    fn fill(&mut self, text: &str, span: Span, scope: &Scope, each: bool) -> Option<Vec<String>> {
        let Some(pieces) = pieces(text) else {
            self.diagnostics.push(lone_brace(span));
            return None;
        };
        let mut out = vec![String::with_capacity(text.len())];
        for piece in pieces {
            let name = match piece {
                Piece::Text(text) => {
                    out.iter_mut().for_each(|s| s.push_str(text));
                    continue;
                }
                Piece::Value(name) => name,
            };
            let items = match self.list(name, scope).filter(|_| each) {
                Some(items) => items,
                None => match self.variable(name, scope) {
                    Some(value) => vec![value],
                    None => {
                        self.diagnostics.push(unknown_value(name, span));
                        return None;
                    }
                },
            };
            out = match items.as_slice() {
                [value] => out.into_iter().map(|s| s + value).collect(),
                _ => (out.iter())
                    .flat_map(|s| items.iter().map(move |item| format!("{s}{item}")))
                    .collect(),
            };
        }
        Some(out)
    }

    fn variable(&self, name: &str, scope: &Scope) -> Option<String> {
        let fleet = self.inputs.fleet;
        let app = scope.app.map(|a| &fleet.apps[a]);
        Some(match name {
            "host" => fleet.hosts[self.host].name.clone(),
            "host.address" => fleet.address(self.host),
            "app" => app?.name.clone(),
            "app.user" => context::app_user(&app?.name),
            "app.python" => app?.python.clone(),
            "app.source" => app?.source.clone(),
            "app.requirements" => format!(
                "{}/{}",
                app?.source.trim_end_matches('/'),
                app?.requirements
            ),
            "app.port" => app?.port.to_string(),
            "app.uid" => app?.uid.to_string(),
            "app.static_dir" => context::static_dir(app?),
            "app.releases" => app?.releases.to_string(),
            "app.wsgi_import" => context::wsgi_import(app?),
            "app.leader" => fleet.hosts[*fleet.placement[scope.app?].first()?]
                .name
                .clone(),
            "worker" => app?.workers.get(scope.worker?)?.name.clone(),
            "media" => app?.media.get(scope.media?)?.name.clone(),
            "media.volume" => {
                crate::model::volumes::volume_name(&app?.name, &app?.media.get(scope.media?)?.name)
            }
            "media.mount" => crate::model::volumes::mount_unit(&context::media_dir(
                &app?.name,
                &app?.media.get(scope.media?)?.name,
            )),
            "cluster" => scope.cluster.as_ref()?.name.clone(),
            "cluster.version" => {
                scope.cluster.as_ref()?;
                POSTGRES_VERSION.to_string()
            }
            "cluster.port" => scope.cluster.as_ref()?.port.to_string(),
            "redis" => fleet.databases[scope.redis?].name.clone(),
            "redis.port" => fleet.databases[scope.redis?].port.to_string(),
            "backup" => fleet.backups[scope.backup?].name.clone(),
            _ => return self.list(name, scope).map(|items| items.join(" ")),
        })
    }

    /// The items of a list value (one of [`LISTS`]).
    fn list(&self, name: &str, scope: &Scope) -> Option<Vec<String>> {
        let fleet = self.inputs.fleet;
        let app = scope.app?;
        let owned = |items: &[&str]| items.iter().map(|i| i.to_string()).collect();
        Some(match name {
            "app.workers" => (fleet.workers_on(app, self.host))
                .map(|w| fleet.apps[app].workers[w].name.clone())
                .collect(),
            "app.drivers" => owned(&context::database_drivers(fleet, app)),
            "app.build_packages" => fleet.apps[app].build_packages.clone(),
            "app.asgi_server" => owned(context::asgi_server_packages(fleet, app)),
            "app.volumes" if crate::model::volumes::shared(fleet, app) => {
                (fleet.apps[app].media.iter())
                    .map(|m| m.name.clone())
                    .collect()
            }
            "app.volumes" => Vec::new(),
            _ => return None,
        })
    }

    fn string(&mut self, entry: &Entry, key: &str, scope: &Scope) -> Option<String> {
        let value = field(entry, key)?;
        let ValueKind::Str(text) = &value.kind else {
            return None;
        };
        self.interpolate(text, value.span, scope)
    }

    fn strings(&mut self, entry: &Entry, key: &str, scope: &Scope) -> Vec<String> {
        let Some(ValueKind::List(list)) = field(entry, key).map(|v| &v.kind) else {
            return Vec::new();
        };
        list.items
            .iter()
            .flat_map(|v| match &v.kind {
                ValueKind::Str(s) => self.interpolate_each(s, v.span, scope),
                _ => Vec::new(),
            })
            .collect()
    }

    fn boolean(entry: &Entry, key: &str) -> Option<bool> {
        match field(entry, key)?.kind {
            ValueKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// One resource block of a role.
    fn resource(&mut self, role: &str, entry: &Entry, scope: &Scope, because: &str) {
        let Some(label) = entry.labels.first() else {
            return;
        };
        if let Some(problem) = list_in_label(&label.text, label.span) {
            self.diagnostics.push(problem);
            return;
        }
        let Some(key) = self.interpolate(&label.text, label.span, scope) else {
            return;
        };
        if let Some(problem) = path_problem(entry, &key, label.span) {
            self.diagnostics.push(problem);
            return;
        }
        let owner = self
            .string(entry, "owner", scope)
            .unwrap_or_else(|| "root".to_string());
        let group = self
            .string(entry, "group", scope)
            .unwrap_or_else(|| owner.clone());
        let kind = match entry.key.text.as_str() {
            "package" => Kind::Package {
                name: key,
                version: self.string(entry, "version", scope),
            },
            "user" => Kind::User {
                name: key,
                home: self.string(entry, "home", scope),
                shell: self.string(entry, "shell", scope),
                system: Self::boolean(entry, "system").unwrap_or(false),
                groups: self.strings(entry, "groups", scope),
                uid: match self.string(entry, "uid", scope) {
                    None => None,
                    Some(text) => match uid_problem(&text, entry) {
                        Ok(uid) => Some(uid),
                        Err(diagnostic) => {
                            self.diagnostics.push(diagnostic);
                            return;
                        }
                    },
                },
            },
            "directory" => Kind::Directory {
                path: key,
                owner,
                group,
                mode: self
                    .string(entry, "mode", scope)
                    .unwrap_or_else(|| "0755".to_string()),
            },
            "file" => match self.file(entry, key, owner, group, scope) {
                Some(kind) => kind,
                None => return,
            },
            "symlink" => Kind::Symlink {
                path: key,
                target: self.string(entry, "target", scope).unwrap_or_default(),
            },
            "service" => {
                if field(entry, "unit").is_some() {
                    self.unit_file(role, entry, &key, scope, because);
                }
                Kind::Service {
                    restart: self
                        .string(entry, "restart", scope)
                        .or_else(|| Some(format!("systemctl restart {key}"))),
                    reload: self.string(entry, "reload", scope),
                    validate: self.string(entry, "validate", scope),
                    enabled: Self::boolean(entry, "enabled").unwrap_or(true),
                    running: Self::boolean(entry, "running").unwrap_or(true),
                    name: key,
                }
            }
            "virtualenv" => Kind::Virtualenv {
                path: key,
                python: self
                    .string(entry, "python", scope)
                    .unwrap_or_else(|| "3".to_string()),
                requirements: self
                    .string(entry, "requirements", scope)
                    .unwrap_or_default(),
                packages: (self.strings(entry, "packages", scope).iter())
                    .flat_map(|p| p.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .collect(),
                build_packages: (self.strings(entry, "build_packages", scope).iter())
                    .flat_map(|p| p.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .collect(),
                owner,
            },
            "tree" => Kind::Tree {
                path: key,
                source: self.string(entry, "source", scope).unwrap_or_default(),
                owner,
                keep: (self.string(entry, "keep", scope))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(crate::model::DEFAULT_RELEASES),
                check: self.string(entry, "check", scope),
                user: self.string(entry, "user", scope),
                output: self.string(entry, "output", scope),
                // Only on the host `migrate_on` names, when it names one.
                migrate: match self.string(entry, "migrate_on", scope) {
                    Some(on) if on != self.inputs.fleet.hosts[self.host].name => None,
                    _ => self.string(entry, "migrate", scope),
                },
                venv: self.string(entry, "venv", scope),
            },
            "command" => Kind::Command {
                name: key,
                run: self.string(entry, "run", scope).unwrap_or_default(),
                unless: self.string(entry, "unless", scope),
                creates: self.string(entry, "creates", scope),
                user: self.string(entry, "user", scope),
            },
            "subvolume" => Kind::Subvolume { path: key },
            "timer" => {
                let app = scope.app.map(|a| &self.inputs.fleet.apps[a]);
                let user = (self.string(entry, "user", scope))
                    .or_else(|| app.map(|a| context::app_user(&a.name)));
                let Some(user) = user else {
                    // `lint` said so before any expansion.
                    self.diagnostics
                        .push(timer_without_user(&key, entry.head_span()));
                    return;
                };
                Kind::Timer {
                    name: key,
                    every_seconds: match field(entry, "every").map(|v| &v.kind) {
                        Some(ValueKind::Duration(q)) => q.millis() / 1000,
                        _ => 3600,
                    },
                    command: self.string(entry, "command", scope).unwrap_or_default(),
                    user,
                }
            }
            _ => return,
        };
        let requires = self.strings(entry, "requires", scope);
        let notifies = self.strings(entry, "notify", scope);
        self.push(role, entry.head_span(), because, kind, requires, notifies);
    }

    fn push(
        &mut self,
        role: &str,
        span: Span,
        because: &str,
        kind: Kind,
        requires: Vec<String>,
        notifies: Vec<String>,
    ) {
        let id = resources::id(&kind);
        let origin = line_of(self.inputs.sources, span);
        if let Some(existing) = self.index.get(&id).map(|i| &mut self.out[*i]) {
            if existing.kind == kind {
                // Two roles asking for the same thing (a package) is fine.
                existing.notifies.extend(notifies);
                return;
            }
            let message = format!(
                "two roles want different `{id}` on host `{}`",
                self.inputs.fleet.hosts[self.host].name
            );
            self.diagnostics.push(
                Diagnostic::error("E222", message)
                    .primary(span, format!("role `{role}` declares it here"))
                    .secondary(
                        existing.span,
                        format!("role `{}` declares it differently here", existing.role),
                    )
                    .help("make the two agree, or keep it in one role"),
            );
            return;
        }
        self.index.insert(id.clone(), self.out.len());
        self.out.push(Resource {
            id,
            kind,
            role: role.to_string(),
            origin,
            because: because.to_string(),
            requires,
            notifies,
            span,
        });
    }

    fn file(
        &mut self,
        entry: &Entry,
        path: String,
        owner: String,
        group: String,
        scope: &Scope,
    ) -> Option<Kind> {
        let mode = self
            .string(entry, "mode", scope)
            .unwrap_or_else(|| "0644".to_string());
        let absent = Self::boolean(entry, "absent").unwrap_or(false);
        let (template, (content, sha256), secret) = match field(entry, "template") {
            Some(Value {
                kind: ValueKind::Str(_),
                ..
            }) => {
                let (name, content, secret) = self.template(entry, "template", scope)?;
                (Some(name), content, secret)
            }
            _ => (None, self.content(entry, scope)?, false),
        };
        Some(Kind::File {
            path,
            owner,
            group,
            mode: if secret { private_mode(&mode) } else { mode },
            sha256,
            template,
            secret,
            absent,
            content,
        })
    }

    /// A file's literal `content`, its `{values}` filled when it asks
    /// (`values = true`); empty without one.
    fn content(&mut self, entry: &Entry, scope: &Scope) -> Option<Content> {
        let text = match field(entry, "content") {
            Some(
                value @ Value {
                    kind: ValueKind::Str(s) | ValueKind::Text(s),
                    ..
                },
            ) => {
                // `{values}` only where the role asks for them: a literal
                // content (JSON, an nginx snippet) keeps its braces.
                if Self::boolean(entry, "values").unwrap_or(false) {
                    self.interpolate(s, value.span, scope)?
                } else {
                    s.clone()
                }
            }
            _ => String::new(),
        };
        Some(hashed(text))
    }

    /// What the template a file's `template` or a service's `unit` names
    /// (`key`) renders to here, one of sitec's or one of your own: the
    /// template's name, the content and whether it holds a secret.
    fn template(
        &mut self,
        entry: &Entry,
        key: &str,
        scope: &Scope,
    ) -> Option<(String, Content, bool)> {
        if let Some((written, span)) = crate::own_templates::written(entry, key) {
            // Only a file may ask for the secrets: a unit is world-readable.
            let secrets = crate::own_templates::Secrets::of(entry, key)
                == crate::own_templates::Secrets::Given;
            let (name, content) = self.render_own(written, span, scope, secrets)?;
            return Some((name, content, secrets));
        }
        let span = field(entry, key).map_or(entry.head_span(), |v| v.span);
        let name = self.string(entry, key, scope)?;
        let (content, secret) = self.render(&name, span, scope)?;
        Some((name, content, secret))
    }

    /// The file `template` renders to here: `(content, sha256)` and whether
    /// it holds a secret.
    fn render(&mut self, template: &str, span: Span, scope: &Scope) -> Option<(Content, bool)> {
        let Some(name) = Templates::names().find(|n| *n == template) else {
            self.diagnostics.push(unknown_template(template, span));
            return None;
        };
        let sharing = if self.rendered.share {
            context::sharing(name, self.inputs, self.host, scope)
        } else {
            context::Sharing::alone()
        };
        if let Some(kept) = sharing.key.and_then(|key| self.rendered.by_key.get(&key)) {
            return Some((kept.content(&sharing.open), kept.secret));
        }
        self.render_first(name, span, scope, &sharing)
    }

    /// A template of your own, rendered with its host's own context
    /// (`own_templates::context`, which holds the secret settings only for
    /// a file that asks, `secrets`): the template's name and the file's
    /// content.
    fn render_own(
        &mut self,
        written: &str,
        span: Span,
        scope: &Scope,
        secrets: bool,
    ) -> Option<(String, Content)> {
        let Some(name) = self.templates.own(span.file, written) else {
            // `check` reports why (E226, E227); an expansion without it too.
            self.diagnostics.push(
                Diagnostic::error(
                    crate::own_templates::UNREADABLE,
                    format!("the template `{written}` was not read"),
                )
                .primary(span, "this file can't be rendered")
                .help("run `sitec check` for why"),
            );
            return None;
        };
        let fleet = self.inputs.fleet;
        let names = (self.rendered.setting_names)
            .get_or_init(|| crate::own_templates::context::SettingNames::of(fleet));
        let context =
            crate::own_templates::context::build(self.inputs, self.host, scope, names, secrets);
        match self.templates.render_own(name, context) {
            Ok(text) => Some((name.to_string(), hashed(text))),
            Err(message) => {
                self.diagnostics.push(
                    Diagnostic::error("E224", format!("template `{name}` failed: {message}"))
                        .primary(span, "rendering this")
                        .help(format!(
                            "the context of `{name}` on host `{}` lacks what it reads: guard it with `{{{{#if ...}}}}`",
                            self.inputs.fleet.hosts[self.host].name
                        )),
                );
                None
            }
        }
    }

    /// [`Expander::render`] of the first file of its key (or of a file
    /// rendered alone): builds its context and renders it, keeping the text
    /// for the key's other files.
    fn render_first(
        &mut self,
        template: &'static str,
        span: Span,
        scope: &Scope,
        sharing: &context::Sharing,
    ) -> Option<(Content, bool)> {
        let built = match context::build(template, self.inputs, self.host, scope) {
            Ok(built) => built,
            Err(message) => {
                self.diagnostics.push(
                    Diagnostic::error("E224", message)
                        .primary(span, "this file can't be rendered here"),
                );
                return None;
            }
        };
        let open: Vec<&str> = sharing.open.iter().map(|(field, _)| *field).collect();
        match self.templates.render_open(template, built.context, &open) {
            Ok((text, opened)) => {
                let content = hashed(text);
                if let Some(key) = sharing.key {
                    let text = match opened {
                        Some(opened) => KeptText::Open(opened),
                        None if open.is_empty() => KeptText::Whole(content.clone()),
                        // Fields that differ but can't be left open: not shared.
                        None => return Some((content, built.secret)),
                    };
                    let secret = built.secret;
                    self.rendered.by_key.insert(key, Kept { text, secret });
                }
                Some((content, built.secret))
            }
            Err(message) => {
                self.diagnostics.push(
                    Diagnostic::error("E224", format!("template `{template}` failed: {message}"))
                        .primary(span, "rendering this"),
                );
                None
            }
        }
    }

    /// A service's unit file, from sitec's template or one of your own:
    /// written to /etc/systemd/system, restarting the service when it
    /// changes.
    fn unit_file(&mut self, role: &str, entry: &Entry, name: &str, scope: &Scope, because: &str) {
        let Some((template, (content, sha256), secret)) = self.template(entry, "unit", scope)
        else {
            return;
        };
        let unit_name = crate::resources::unit_name(name);
        let kind = Kind::File {
            path: format!("/etc/systemd/system/{unit_name}"),
            owner: "root".to_string(),
            group: "root".to_string(),
            mode: "0644".to_string(),
            template: Some(template),
            sha256,
            secret,
            absent: false,
            content,
        };
        self.push(
            role,
            entry.head_span(),
            because,
            kind,
            Vec::new(),
            vec![format!("service:{name}")],
        );
    }
}

/// The values a role's strings may name as `{name}`, and the `each` scopes
/// that give each one (none: every host has it). `Expander::variable` fills
/// them in; `lint` checks them without a host.
pub const VALUES: [(&str, &[&str]); 28] = [
    ("host", &[]),
    ("host.address", &[]),
    ("app", APP_SCOPES),
    ("app.user", APP_SCOPES),
    ("app.python", APP_SCOPES),
    ("app.source", APP_SCOPES),
    ("app.requirements", APP_SCOPES),
    ("app.port", APP_SCOPES),
    ("app.uid", APP_SCOPES),
    ("app.drivers", APP_SCOPES),
    ("app.build_packages", APP_SCOPES),
    ("app.asgi_server", APP_SCOPES),
    ("app.static_dir", APP_SCOPES),
    ("app.releases", APP_SCOPES),
    ("app.wsgi_import", APP_SCOPES),
    ("app.workers", APP_SCOPES),
    ("app.leader", APP_SCOPES),
    ("app.volumes", APP_SCOPES),
    ("worker", &["worker"]),
    ("media", &["media"]),
    ("media.volume", &["media"]),
    ("media.mount", &["media"]),
    ("cluster", CLUSTER_SCOPES),
    ("cluster.version", CLUSTER_SCOPES),
    ("cluster.port", CLUSTER_SCOPES),
    ("redis", &["redis"]),
    ("redis.port", &["redis"]),
    ("backup", &["backup", "snapshot"]),
];

const APP_SCOPES: &[&str] = &["app", "tls"];

/// The values of [`VALUES`] that are lists, each with the value its items
/// are where there is one (`{app.workers}`: each a `{worker}`). A string
/// of a list field naming one makes a string per item
/// ([`Expander::interpolate_each`]): `notify =
/// ["service:sitec-app-{app}-worker-{app.workers}"]` notifies every worker
/// of the app, and none when it has none. In a field of one string (`run`,
/// `check`) the items are joined by spaces, as a command's words; a label
/// can't name one (E221): a resource has one name.
pub const LISTS: [(&str, Option<&str>); 5] = [
    ("app.workers", Some("worker")),
    // The app's media stores when they are GlusterFS volumes, else none.
    ("app.volumes", Some("media")),
    ("app.drivers", None),
    ("app.build_packages", None),
    ("app.asgi_server", None),
];

/// E221: a label that names a list value.
fn list_in_label(label: &str, span: Span) -> Option<Diagnostic> {
    let (list, item) = pieces(label)?.into_iter().find_map(|piece| match piece {
        Piece::Value(name) => LISTS.iter().find(|(list, _)| *list == name),
        Piece::Text(_) => None,
    })?;
    let help = match item {
        Some(item) => format!("one resource per item: put it in `each {item}` and name it by `{{{item}}}`"),
        None => "name it by a value of one string; a list fills a list field (`notify`, `requires`, `packages`) with one string per item".to_string(),
    };
    Some(
        Diagnostic::error(
            "E221",
            format!("`{{{list}}}` is a list, and a resource has one name"),
        )
        .primary(span, "in this label")
        .help(help),
    )
}
const CLUSTER_SCOPES: &[&str] = &["cluster", "standby", "primary"];

/// A role's string in pieces: literal text (`{{` and `}}` are single
/// braces) and the `{name}`s in it.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'t> {
    Text(&'t str),
    Value(&'t str),
}

/// `None`: a brace without its pair.
fn pieces(text: &str) -> Option<Vec<Piece<'_>>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        pieces.push(Piece::Text(&rest[..open]));
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            pieces.push(Piece::Text(&tail[..1]));
            rest = after;
            continue;
        }
        let close = tail.find('}').filter(|_| tail.starts_with('{'))?;
        pieces.push(Piece::Value(&tail[1..close]));
        rest = &tail[close + 1..];
    }
    pieces.push(Piece::Text(rest));
    Some(pieces)
}

/// E220: `each word` outside the `each needed` it repeats within.
fn each_outside(word: &str, needed: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        "E220",
        format!("`each {word}` stands inside `each {needed}`"),
    )
    .primary(span, "here")
    .help(format!("put it in an `each {needed}` block"))
}

/// E232: a timer outside `each app` that does not say whom it runs as:
/// root only when the spec says so.
fn timer_without_user(name: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        "E232",
        format!("timer `{name}` does not say which user it runs as"),
    )
    .primary(span, "no `user`, and no `each app` whose user it would be")
    .help("write `user = \"NAME\"`: a user a role makes (`user NAME { system = true }`), or `user = \"root\"` if it must run as root")
}

/// E220: a brace without its pair in a role's string.
fn lone_brace(span: Span) -> Diagnostic {
    Diagnostic::error("E220", "a lone brace in a role's string")
        .primary(span, "here")
        .help("write `{{` or `}}` for a literal brace, `{app}` for a value")
}

/// E225: the label of a resource that is a path (once its values are
/// filled in) is not an absolute path on the host.
fn path_problem(entry: &Entry, label: &str, span: Span) -> Option<Diagnostic> {
    let is_path = matches!(
        entry.key.text.as_str(),
        "directory" | "file" | "symlink" | "virtualenv" | "tree" | "subvolume"
    );
    let problem = is_path.then(|| crate::names::host_path_problem(label))??;
    Some(
        Diagnostic::error("E225", format!("{} {}", entry.key.text, problem.what))
            .primary(span, "not a path on the host")
            .help(problem.fix),
    )
}

/// Ids a `user`'s `uid` may take: below 100 are Debian's fixed system
/// users, from 60000 on Debian's and systemd's reserved and dynamic ones.
pub const USER_IDS: std::ops::Range<u32> = 100..60000;

/// E229: a `user`'s `uid` (once its values are filled in) that is not a
/// number in [`USER_IDS`].
fn uid_problem(text: &str, entry: &Entry) -> Result<u32, Diagnostic> {
    match text.parse::<u32>() {
        Ok(uid) if USER_IDS.contains(&uid) => Ok(uid),
        _ => Err(Diagnostic::error(
            "E229",
            format!(
                "user `uid` `{text}` is not a uid from {} to {}",
                USER_IDS.start,
                USER_IDS.end - 1
            ),
        )
        .primary(
            field(entry, "uid").map_or(entry.key.span, |v| v.span),
            "not a uid sitec gives",
        )
        .help("write the number in quotes, such as \"40100\", or `{app.uid}` for an app's user")),
    }
}

/// E223: a file's `template` or a service's `unit` names no template.
fn unknown_template(template: &str, span: Span) -> Diagnostic {
    let names: Vec<&str> = Templates::names().collect();
    // `templates/motd.hbs`, `/srv/motd.hbs`: a file of the user's, written
    // without the `./` that says so.
    let own = template.ends_with(".hbs") || template.starts_with('/');
    let help = match crate::suggest::closest(template, names.iter().copied()) {
        Some(best) if !own => format!("did you mean `{best}`?"),
        _ if template.starts_with('/') => "a template of your own is a path relative to the file that declares the role, starting with `./` or `../`".to_string(),
        _ if own => format!("a template of your own is a path relative to the file that declares the role, starting with `./` or `../`: `./{template}`"),
        _ => format!("the templates are: {}", names.join(", ")),
    };
    Diagnostic::error("E223", format!("there is no template `{template}`"))
        .primary(span, "not under templates/")
        .help(help)
}

/// E221: `{name}` is no value, or not one of the scopes around it.
fn unknown_value(name: &str, span: Span) -> Diagnostic {
    let known: Vec<&str> = VALUES.iter().map(|(value, _)| *value).collect();
    let diagnostic = Diagnostic::error("E221", format!("`{{{name}}}` means nothing here"))
        .primary(span, "in this string");
    let scopes = VALUES.iter().find(|(value, _)| *value == name);
    // `{app.name}` is a natural guess: the name is the scope's own value.
    let closest = name
        .strip_suffix(".name")
        .filter(|scope| known.contains(scope))
        .or_else(|| crate::suggest::closest(name, known.iter().copied()));
    match (scopes, closest) {
        (Some((_, scopes)), _) => {
            let inside: Vec<String> = scopes.iter().map(|s| format!("`each {s}`")).collect();
            diagnostic.help(format!("`{{{name}}}` has a value only inside {}", inside.join(" or ")))
        }
        (None, Some(best)) => diagnostic.help(format!("did you mean `{{{best}}}`?")),
        (None, None) => diagnostic.help(format!(
            "the values a role can use are: {} (app, worker, media, cluster and redis only inside their `each`, backup inside `each backup` or `each snapshot`)",
            known.join(", ")
        )),
    }
}

/// `0644` to `0640`, `0666` to `0660`: a file holding a secret is
/// readable by no other user, whatever its `mode` says.
fn private_mode(mode: &str) -> String {
    let mut private = mode.to_string();
    private.pop();
    private.push('0');
    private
}

mod lint;
pub use lint::lint;

#[cfg(test)]
mod tests;

fn field<'e>(entry: &'e Entry, key: &str) -> Option<&'e Value> {
    entry
        .block()?
        .entries
        .iter()
        .find(|e| e.key.text == key)
        .and_then(Entry::value)
}

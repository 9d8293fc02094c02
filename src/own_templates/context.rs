//! The context a template of your own is rendered with, and its shape:
//! what `check` holds a template's names against. The two change together
//! (a test builds contexts and compares them with their shapes); lang/README
//! documents both.
//!
//! ```text
//! host     { name, address, listen_address, provider, roles: [text] }
//! fleet    { hosts: [{ name, address, roles }], apps: [{ name, domains, runners }] }
//! app      { name, user, python, source, port, domains, runners, static_dir,
//!            settings: { NAME: value } }         inside each app, tls, worker, leader
//! worker   { name }                               inside each worker
//! cluster  { name, version, port }                inside each cluster, standby, primary
//! redis    { name, port }                         inside each redis
//! backup   { name }                               inside each backup, snapshot
//! ```
//!
//! A setting's value is as Python gets it (durations in seconds, sizes in
//! bytes, lists and maps as they are); one from the local override file is
//! its literal's text; one some layer gives other apps but not this one is
//! `null`. A setting any layer sets with `secret(...)` is left out, whatever
//! the layer that wins here, unless the file asks for the secrets
//! (`secrets = true`): then it is in, a secret as its value's text, and
//! `expand` writes the file as one that holds a secret (readable by no other
//! user, its content never shown).

use crate::context::{Inputs, Scope};
use crate::model::clusters::POSTGRES_VERSION;
use crate::model::{AppId, Fleet, HostId};
use crate::settings::{self, SettingValue};
use crate::syntax::ast::{Value as SpecValue, ValueKind};
use serde_json::{json, Map, Value};

/// What a name of the context holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Text, a number or true/false.
    Value,
    /// A list of items of one shape.
    List(Box<Shape>),
    /// Fields, each with its shape.
    Object(Vec<(String, Shape)>),
    /// Whatever a setting holds (a list, a map): not looked into.
    Any,
}

fn object(fields: &[(&str, Shape)]) -> Shape {
    Shape::Object(
        (fields.iter())
            .map(|(name, shape)| (name.to_string(), shape.clone()))
            .collect(),
    )
}

fn texts() -> Shape {
    Shape::List(Box::new(Shape::Value))
}

/// The items of `each` scopes a file stands in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scopes {
    pub app: bool,
    pub worker: bool,
    pub cluster: bool,
    pub redis: bool,
    pub backup: bool,
}

/// Each item's name in the context, and the first `each` that gives it.
const ITEMS: [(&str, &str); 5] = [
    ("app", "app"),
    ("worker", "worker"),
    ("cluster", "cluster"),
    ("redis", "redis"),
    ("backup", "backup"),
];

impl Scopes {
    /// From the words of the `each` blocks around a file.
    pub fn of(open: &[&str]) -> Scopes {
        let any = |words: &[&str]| open.iter().any(|o| words.contains(o));
        Scopes {
            app: any(&["app", "tls", "worker", "leader"]),
            worker: any(&["worker"]),
            cluster: any(&["cluster", "standby", "primary"]),
            redis: any(&["redis"]),
            backup: any(&["backup", "snapshot"]),
        }
    }

    /// From the items of an expansion's scope.
    fn of_scope(scope: &Scope) -> Scopes {
        Scopes {
            app: scope.app.is_some(),
            worker: scope.worker.is_some(),
            cluster: scope.cluster.is_some(),
            redis: scope.redis.is_some(),
            backup: scope.backup.is_some(),
        }
    }

    /// Whether the item `name` (`app`, `worker`...) is in the context.
    pub fn has(&self, name: &str) -> bool {
        match name {
            "app" => self.app,
            "worker" => self.worker,
            "cluster" => self.cluster,
            "redis" => self.redis,
            "backup" => self.backup,
            _ => false,
        }
    }

    /// The `each` that puts the item `name` in the context.
    pub fn word_of(name: &str) -> Option<&'static str> {
        ITEMS.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
    }
}

/// The settings names a template may read, fleet-wide: those some layer
/// gives, less those some layer makes a secret.
#[derive(Debug, Default)]
pub struct SettingNames {
    pub plain: Vec<String>,
    pub secret: Vec<String>,
}

impl SettingNames {
    pub const NONE: SettingNames = SettingNames {
        plain: Vec::new(),
        secret: Vec::new(),
    };

    pub fn of(fleet: &Fleet) -> SettingNames {
        let mut names = SettingNames::default();
        for (name, value) in fleet.settings.iter().flat_map(|l| &l.values) {
            let secret = settings::holds_secret(&SettingValue::Spec(value.clone()));
            let list = if secret {
                &mut names.secret
            } else {
                &mut names.plain
            };
            if !list.contains(name) {
                list.push(name.clone());
            }
        }
        let secret = std::mem::take(&mut names.secret);
        names.plain.retain(|n| !secret.contains(n));
        names.plain.sort();
        names.secret = secret;
        names
    }
}

/// The shape of the context of a file inside `scopes`, its apps' settings
/// named by `settings`, the secret ones too when the file asks (`secrets`).
pub fn shape(scopes: &Scopes, settings: &SettingNames, secrets: bool) -> Shape {
    let mut fields = vec![
        (
            "host",
            object(&[
                ("name", Shape::Value),
                ("address", Shape::Value),
                ("listen_address", Shape::Value),
                ("provider", Shape::Value),
                ("roles", texts()),
            ]),
        ),
        (
            "fleet",
            object(&[
                (
                    "hosts",
                    Shape::List(Box::new(object(&[
                        ("name", Shape::Value),
                        ("address", Shape::Value),
                        ("roles", texts()),
                    ]))),
                ),
                (
                    "apps",
                    Shape::List(Box::new(object(&[
                        ("name", Shape::Value),
                        ("domains", texts()),
                        ("runners", texts()),
                    ]))),
                ),
            ]),
        ),
    ];
    if scopes.app {
        let secret = settings.secret.iter().filter(|_| secrets);
        let settings = Shape::Object(
            (settings.plain.iter().chain(secret))
                .map(|name| (name.clone(), Shape::Any))
                .collect(),
        );
        fields.push((
            "app",
            object(&[
                ("name", Shape::Value),
                ("user", Shape::Value),
                ("python", Shape::Value),
                ("source", Shape::Value),
                ("port", Shape::Value),
                ("domains", texts()),
                ("runners", texts()),
                ("static_dir", Shape::Value),
                ("settings", settings),
            ]),
        ));
    }
    if scopes.worker {
        fields.push(("worker", object(&[("name", Shape::Value)])));
    }
    if scopes.cluster {
        fields.push((
            "cluster",
            object(&[
                ("name", Shape::Value),
                ("version", Shape::Value),
                ("port", Shape::Value),
            ]),
        ));
    }
    if scopes.redis {
        fields.push((
            "redis",
            object(&[("name", Shape::Value), ("port", Shape::Value)]),
        ));
    }
    if scopes.backup {
        fields.push(("backup", object(&[("name", Shape::Value)])));
    }
    object(&fields)
}

/// The context of a file on `host` in `scope`; `names` are the fleet's
/// ([`SettingNames::of`], worked out once per compile); the secret
/// settings' values only for a file that asks for them (`secrets`).
pub fn build(
    inputs: &Inputs,
    host: HostId,
    scope: &Scope,
    names: &SettingNames,
    secrets: bool,
) -> Value {
    let fleet = inputs.fleet;
    let h = &fleet.hosts[host];
    let runners = |app: AppId| -> Vec<&str> {
        (fleet.placement[app].iter())
            .map(|r| fleet.hosts[*r].name.as_str())
            .collect()
    };
    let domains = |app: AppId| -> Vec<&str> {
        (fleet.apps[app].domains.iter())
            .map(|(d, _)| d.as_str())
            .collect()
    };
    let mut context = Map::new();
    context.insert(
        "host".into(),
        json!({
            "name": h.name,
            "address": fleet.address(host),
            "listen_address": fleet.listen_address(host),
            "provider": fleet.provider_of(host).name,
            "roles": h.roles,
        }),
    );
    let hosts: Vec<Value> = (0..fleet.hosts.len())
        .map(|other| {
            json!({
                "name": fleet.hosts[other].name,
                "address": fleet.address(other),
                "roles": fleet.hosts[other].roles,
            })
        })
        .collect();
    let apps: Vec<Value> = (0..fleet.apps.len())
        .map(|app| {
            json!({
                "name": fleet.apps[app].name,
                "domains": domains(app),
                "runners": runners(app),
            })
        })
        .collect();
    context.insert("fleet".into(), json!({ "hosts": hosts, "apps": apps }));
    let scopes = Scopes::of_scope(scope);
    if let Some(app) = scope.app.filter(|_| scopes.app) {
        let a = &fleet.apps[app];
        context.insert(
            "app".into(),
            json!({
                "name": a.name,
                "user": crate::context::app_user(&a.name),
                "python": a.python,
                "source": a.source,
                "port": a.port,
                "domains": domains(app),
                "runners": runners(app),
                "static_dir": crate::context::static_dir(a),
                "settings": app_settings(inputs, app, host, names, secrets),
            }),
        );
    }
    if let Some(worker) = scope
        .app
        .and_then(|a| fleet.apps[a].workers.get(scope.worker?))
    {
        context.insert("worker".into(), json!({ "name": worker.name }));
    }
    if let Some(cluster) = &scope.cluster {
        context.insert(
            "cluster".into(),
            json!({ "name": cluster.name, "version": POSTGRES_VERSION, "port": cluster.port }),
        );
    }
    if let Some(redis) = scope.redis {
        let d = &fleet.databases[redis];
        context.insert("redis".into(), json!({ "name": d.name, "port": d.port }));
    }
    if let Some(backup) = scope.backup {
        context.insert(
            "backup".into(),
            json!({ "name": fleet.backups[backup].name }),
        );
    }
    Value::Object(context)
}

/// The app's settings on `host`, but those some layer makes a secret unless
/// `secrets`; a setting other apps have and this one not is `null` (prints
/// nothing, false to `#if`), so a template `check` accepts renders for
/// every app.
fn app_settings(
    inputs: &Inputs,
    app: AppId,
    host: HostId,
    names: &SettingNames,
    secrets: bool,
) -> Value {
    let resolved = settings::resolve_indexed(
        inputs.shared.settings(inputs.fleet),
        inputs.fleet,
        inputs.sources,
        inputs.overrides,
        app,
        host,
    );
    let secret = names.secret.iter().filter(|_| secrets);
    let mut values: Map<String, Value> = (names.plain.iter().chain(secret))
        .map(|name| (name.clone(), Value::Null))
        .collect();
    // A secret's value, for a file that asked; never otherwise.
    let reveal = |name: &str| inputs.secrets.get(name).map(Value::String);
    let reveal: &dyn Fn(&str) -> Option<Value> = if secrets { &reveal } else { &|_| None };
    let given = resolved
        .iter()
        .filter(|r| secrets || !names.secret.contains(&r.name))
        .filter(|r| secrets || !r.layers.iter().any(|l| settings::holds_secret(&l.value)))
        .filter_map(|r| Some((r.name.clone(), setting(&r.winner().value, reveal)?)));
    values.extend(given);
    Value::Object(values)
}

/// A setting's value as JSON, a secret's as `reveal` gives it; `None` for
/// one that reads a secret `reveal` does not give.
fn setting(value: &SettingValue, reveal: &dyn Fn(&str) -> Option<Value>) -> Option<Value> {
    match value {
        SettingValue::Spec(value) => spec_value(value, reveal),
        SettingValue::Python(text) => Some(Value::String(text.clone())),
        SettingValue::Derived(_) => None,
    }
}

fn spec_value(value: &SpecValue, reveal: &dyn Fn(&str) -> Option<Value>) -> Option<Value> {
    Some(match &value.kind {
        ValueKind::Str(s) | ValueKind::Text(s) => Value::String(s.clone()),
        ValueKind::Int(n) => json!(n),
        ValueKind::Bool(b) => json!(b),
        ValueKind::Duration(q) => json!(q.millis() / 1000),
        ValueKind::Size(q) => json!(q.bytes()),
        ValueKind::List(list) => Value::Array(
            (list.items.iter())
                .map(|v| spec_value(v, reveal))
                .collect::<Option<_>>()?,
        ),
        ValueKind::Map(block) => Value::Object(
            (block.entries.iter())
                .filter_map(|e| Some((e.key.text.clone(), spec_value(e.value()?, reveal)?)))
                .collect(),
        ),
        // `secret("name")`, the only call a setting holds.
        ValueKind::Call(call) => match call.args.first().map(|a| &a.kind) {
            Some(ValueKind::Str(name)) => reveal(name)?,
            _ => return None,
        },
        ValueKind::Ref(_) | ValueKind::Invalid => return None,
    })
}

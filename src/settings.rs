//! Settings layering with provenance.
//!
//! For one app on one host, every settings layer that applies is merged,
//! lowest first: role defaults < `settings base` < `settings host H` < the
//! app's own settings (and `settings app A`) < `settings app A host H` < the
//! local override file. Each resolved setting keeps every layer it passed,
//! so `sitec explain` can show where a value came from and what it
//! replaced. Values become Python literals here, secrets included. Pure.

use crate::model::{AppId, Fleet, HostId, Target};
use crate::secrets::Secrets;
use crate::source::{SourceMap, Span};
use crate::syntax::ast::{Value, ValueKind};
use std::collections::HashMap;

/// A layer a value was set in.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `settings base`, `app blog settings`, ...
    pub name: String,
    /// Where: the spec line, or the override file.
    pub origin: String,
    pub value: SettingValue,
}

/// A value as a layer wrote it.
#[derive(Debug, Clone)]
pub enum SettingValue {
    Spec(Value),
    /// From the local override file, already a Python literal.
    Python(String),
    /// Made by sitec (an environment variable such as `DATABASE_URL`):
    /// text and secrets, joined.
    Derived(Vec<Piece>),
}

/// A piece of a [`SettingValue::Derived`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A secret's value, percent-encoded when `url` (inside a URL).
    Secret {
        name: String,
        url: bool,
    },
}

/// Which entries of the layers: the settings, or the `env { }` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Settings,
    Env,
}

/// One setting of one app on one host, with every layer it passed (lowest
/// first; the last one wins).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub layers: Vec<Layer>,
}

impl Resolved {
    pub fn winner(&self) -> &Layer {
        // Every Resolved has at least one layer: it is made from one.
        &self.layers[self.layers.len() - 1]
    }
}

/// One value set in the local override file (`NAME.local.toml`).
#[derive(Debug, Clone)]
pub struct Override {
    pub app: String,
    pub host: Option<String>,
    pub name: String,
    pub python: String,
    /// `fleet.local.toml:12`
    pub origin: String,
}

/// The settings layers by whom they apply to, built once per fleet so
/// resolving an app's settings on a host reads only its own layers.
#[derive(Debug, Default)]
pub struct Index {
    base: Vec<usize>,
    host: HashMap<HostId, Vec<usize>>,
    app: HashMap<AppId, Vec<usize>>,
    app_on_host: HashMap<(AppId, HostId), Vec<usize>>,
}

impl Index {
    pub fn new(fleet: &Fleet) -> Index {
        let mut index = Index::default();
        for (i, layer) in fleet.settings.iter().enumerate() {
            match layer.target {
                Target::Base => index.base.push(i),
                Target::Host(h) => index.host.entry(h).or_default().push(i),
                Target::App(a) => index.app.entry(a).or_default().push(i),
                Target::AppOnHost(a, h) => index.app_on_host.entry((a, h)).or_default().push(i),
            }
        }
        index
    }

    /// The layers of `app` on `host`, lowest first (in declaration order
    /// within one rank).
    fn layers(&self, app: AppId, host: HostId) -> impl Iterator<Item = usize> + '_ {
        self.base
            .iter()
            .chain(self.host.get(&host).into_iter().flatten())
            .chain(self.app.get(&app).into_iter().flatten())
            .chain(self.app_on_host.get(&(app, host)).into_iter().flatten())
            .copied()
    }
}

/// Resolves the settings of `app` on `host`, sorted by name.
pub fn resolve(
    fleet: &Fleet,
    sources: &SourceMap,
    overrides: &[Override],
    app: AppId,
    host: HostId,
) -> Vec<Resolved> {
    resolve_indexed(&Index::new(fleet), fleet, sources, overrides, app, host)
}

/// Adds `layer` to the setting `name` in `resolved` (a new one if needed).
fn add(resolved: &mut Vec<Resolved>, name: &str, layer: Layer) {
    match resolved.iter_mut().find(|r| r.name == name) {
        Some(r) => r.layers.push(layer),
        None => resolved.push(Resolved {
            name: name.to_string(),
            layers: vec![layer],
        }),
    }
}

/// The spec's layers of `app` on `host`, lowest first, for `part`, onto
/// `resolved`.
fn layered(
    resolved: &mut Vec<Resolved>,
    index: &Index,
    fleet: &Fleet,
    sources: &SourceMap,
    (app, host): (AppId, HostId),
    part: Part,
) {
    let app_name = &fleet.apps[app].name;
    let host_name = &fleet.hosts[host].name;
    let block = match part {
        Part::Settings => "settings",
        Part::Env => "env",
    };
    for layer in index.layers(app, host).map(|i| &fleet.settings[i]) {
        let name = match layer.target {
            Target::Base => "settings base".to_string(),
            Target::Host(_) => format!("settings host {host_name}"),
            Target::App(_) => format!("app {app_name} {block}"),
            Target::AppOnHost(..) => format!("settings app {app_name} host {host_name}"),
        };
        let entries = match part {
            Part::Settings => &layer.values,
            Part::Env => &layer.env,
        };
        for (key, value) in entries {
            let origin = line_of(sources, value.span);
            add(
                resolved,
                key,
                Layer {
                    name: name.clone(),
                    origin,
                    value: SettingValue::Spec(value.clone()),
                },
            );
        }
    }
}

/// The environment of `app` on `host`, sorted by name: sitec's own
/// variables (`sitec`, as [`Layer`]s named `sitec`), then the spec's `env`
/// blocks layered as settings are.
pub fn resolve_env(
    index: &Index,
    fleet: &Fleet,
    sources: &SourceMap,
    sitec: Vec<(String, Layer)>,
    app: AppId,
    host: HostId,
) -> Vec<Resolved> {
    let mut resolved = Vec::new();
    for (name, layer) in sitec {
        add(&mut resolved, &name, layer);
    }
    layered(&mut resolved, index, fleet, sources, (app, host), Part::Env);
    resolved.sort_by(|a, b| a.name.cmp(&b.name));
    resolved
}

/// [`resolve`] with the fleet's [`Index`] built once by the caller.
pub fn resolve_indexed(
    index: &Index,
    fleet: &Fleet,
    sources: &SourceMap,
    overrides: &[Override],
    app: AppId,
    host: HostId,
) -> Vec<Resolved> {
    let mut resolved: Vec<Resolved> = Vec::new();
    let app_name = &fleet.apps[app].name;
    let host_name = &fleet.hosts[host].name;
    layered(
        &mut resolved,
        index,
        fleet,
        sources,
        (app, host),
        Part::Settings,
    );
    // `[APP]` before `[APP.hosts.HOST]`, wherever each stands in the file.
    let app_wide = overrides.iter().filter(|o| o.host.is_none());
    let on_host = overrides
        .iter()
        .filter(|o| o.host.as_ref() == Some(host_name));
    for o in app_wide.chain(on_host).filter(|o| &o.app == app_name) {
        let name = match &o.host {
            Some(h) => format!("local override for {app_name} on {h}"),
            None => format!("local override for {app_name}"),
        };
        add(
            &mut resolved,
            &o.name,
            Layer {
                name,
                origin: o.origin.clone(),
                value: SettingValue::Python(o.python.clone()),
            },
        );
    }
    resolved.sort_by(|a, b| a.name.cmp(&b.name));
    resolved
}

/// Whether `app`'s settings on `host` may differ from its settings on its
/// other runners: a layer or a local override names the host. What
/// [`resolve_indexed`] reads of the host, and nothing else.
pub fn host_specific(
    index: &Index,
    fleet: &Fleet,
    overrides: &[Override],
    app: AppId,
    host: HostId,
) -> bool {
    let host_name = &fleet.hosts[host].name;
    index.host.contains_key(&host)
        || index.app_on_host.contains_key(&(app, host))
        || (overrides.iter()).any(|o| o.host.as_ref() == Some(host_name))
}

/// The spec file of a span, relative to the root spec's folder (the first
/// file loaded): `fleet.site`, `lib/apps.site`, `std/platform.site`, however
/// the operator spelled the root's path. What rendered files cite.
pub fn file_of(sources: &SourceMap, span: Span) -> String {
    let name = sources.name(span.file);
    if name.starts_with("std/") {
        return name.to_string();
    }
    let root = std::path::Path::new(sources.name(crate::source::FileId(0))).parent();
    root.and_then(|r| std::path::Path::new(name).strip_prefix(r).ok())
        .map_or_else(
            || name.to_string(),
            |relative| relative.display().to_string(),
        )
}

/// `file:line` of a span, as explanations and diagnostics cite it (never a
/// rendered file: see [`file_of`]).
pub fn line_of(sources: &SourceMap, span: Span) -> String {
    let position = sources.position(span.file, span.start);
    format!("{}:{}", sources.name(span.file), position.line)
}

/// A value as a Python literal. Durations become seconds and sizes bytes
/// (integers); secrets become their value (or placeholder).
pub fn python_literal(value: &SettingValue, secrets: &Secrets) -> Result<String, String> {
    let secret = |name: &str| {
        secrets
            .get(name)
            .map(|value| python_string(&value))
            .ok_or_else(|| format!("secret `{name}` has no value"))
    };
    match value {
        SettingValue::Python(text) => Ok(text.clone()),
        SettingValue::Spec(value) => python(value, &secret),
        SettingValue::Derived(_) => Ok(python_string(&env_value(value, secrets)?)),
    }
}

/// A value as an environment variable holds it: text as written, a
/// secret's value, sitec's derived values joined. Lists and maps are not
/// text (the schema allows a string or `secret()` in `env`).
pub fn env_value(value: &SettingValue, secrets: &Secrets) -> Result<String, String> {
    let secret = |name: &str| {
        secrets
            .get(name)
            .ok_or_else(|| format!("secret `{name}` has no value"))
    };
    match value {
        SettingValue::Python(text) => Ok(text.clone()),
        SettingValue::Derived(pieces) => pieces.iter().try_fold(String::new(), |mut out, piece| {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Secret { name, url } => {
                    let value = secret(name)?;
                    out.push_str(&if *url { percent_encode(&value) } else { value });
                }
            }
            Ok(out)
        }),
        SettingValue::Spec(value) => match &value.kind {
            ValueKind::Str(s) | ValueKind::Text(s) => Ok(s.clone()),
            ValueKind::Int(n) => Ok(n.to_string()),
            ValueKind::Bool(b) => Ok(b.to_string()),
            ValueKind::Call(call) => match call.args.first().map(|a| &a.kind) {
                Some(ValueKind::Str(name)) => secret(name),
                _ => Err("`secret` takes one name".into()),
            },
            _ => Err("an environment variable is text or `secret(\"name\")`".into()),
        },
    }
}

/// An environment variable as `sitec explain` shows it: secrets as
/// `secret("name")`. Never reads a secret's value.
pub fn shown_env(value: &SettingValue) -> String {
    match value {
        SettingValue::Derived(pieces) => pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.clone(),
                Piece::Secret { name, .. } => format!("secret({})", python_string(name)),
            })
            .collect(),
        SettingValue::Spec(Value {
            kind: ValueKind::Call(_),
            ..
        }) => shown_literal(value),
        other => env_value(other, &Secrets::placeholders()).unwrap_or_else(|m| format!("<{m}>")),
    }
}

/// `text` with every byte outside RFC 3986's unreserved set percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A value as `sitec explain` shows it: the Python literal, except that a
/// secret stays `secret("name")`. Never reads a secret's value.
pub fn shown_literal(value: &SettingValue) -> String {
    let secret = |name: &str| Ok(format!("secret({})", python_string(name)));
    match value {
        SettingValue::Python(text) => text.clone(),
        SettingValue::Spec(value) => {
            python(value, &secret).unwrap_or_else(|message| format!("<{message}>"))
        }
        SettingValue::Derived(_) => python_string(&shown_env(value)),
    }
}

/// `secret` turns a secret's name into the literal that stands for it.
fn python(
    value: &Value,
    secret: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    Ok(match &value.kind {
        ValueKind::Str(s) | ValueKind::Text(s) => python_string(s),
        ValueKind::Int(n) => n.to_string(),
        ValueKind::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        ValueKind::Duration(q) => (q.millis() / 1000).to_string(),
        ValueKind::Size(q) => q.bytes().to_string(),
        ValueKind::List(list) => {
            let items: Result<Vec<String>, String> =
                list.items.iter().map(|v| python(v, secret)).collect();
            format!("[{}]", items?.join(", "))
        }
        ValueKind::Map(block) => {
            let mut pairs = Vec::new();
            for entry in &block.entries {
                let Some(v) = entry.value() else { continue };
                pairs.push(format!(
                    "{}: {}",
                    python_string(&entry.key.text),
                    python(v, secret)?
                ));
            }
            format!("{{{}}}", pairs.join(", "))
        }
        ValueKind::Call(call) => {
            let name = call.args.first().and_then(|a| match &a.kind {
                ValueKind::Str(s) => Some(s.as_str()),
                _ => None,
            });
            let name = name.ok_or("`secret` takes one name")?;
            secret(name)?
        }
        ValueKind::Ref(name) => return Err(format!("`{}` is a bare name", name.text)),
        ValueKind::Invalid => return Err("invalid value".to_string()),
    })
}

/// A Python string literal: JSON's escapes are all valid Python.
pub fn python_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "''".to_string())
}

/// Whether a value reads a secret (the file that holds it is then private).
pub fn holds_secret(value: &SettingValue) -> bool {
    fn walk(value: &Value) -> bool {
        match &value.kind {
            ValueKind::Call(_) => true,
            ValueKind::List(list) => list.items.iter().any(walk),
            ValueKind::Map(block) => block.entries.iter().filter_map(|e| e.value()).any(walk),
            _ => false,
        }
    }
    match value {
        SettingValue::Spec(v) => walk(v),
        SettingValue::Python(_) => false,
        SettingValue::Derived(pieces) => pieces.iter().any(|p| matches!(p, Piece::Secret { .. })),
    }
}

/// Every secret name the spec refers to, sorted.
pub fn secret_names(fleet: &Fleet) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match &value.kind {
            ValueKind::Call(call) => {
                if let Some(ValueKind::Str(s)) = call.args.first().map(|a| &a.kind) {
                    out.push(s.clone());
                }
            }
            ValueKind::List(list) => list.items.iter().for_each(|v| walk(v, out)),
            ValueKind::Map(block) => block
                .entries
                .iter()
                .filter_map(|e| e.value())
                .for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for layer in &fleet.settings {
        for (_, value) in layer.values.iter().chain(&layer.env) {
            walk(value, &mut names);
        }
    }
    names.sort();
    names.dedup();
    names
}

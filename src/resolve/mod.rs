//! Resolve: check a loaded spec against the schema and resolve its names.
//!
//! Declarations may come in any order and from any module the spec uses:
//! a first pass collects every declared name (reporting duplicates with both
//! places), a second checks each entry's keyword, labels, fields and value
//! types, and resolves each reference to its declaration, suggesting the
//! closest name when one is unknown. Pure: it reads only the syntax trees.

pub mod schema;

use crate::diagnostic::Diagnostic;
use crate::modules::Program;
use crate::source::Span;
use crate::suggest;
use crate::syntax::ast::{
    Block, Body, Call, DurationUnit, Entry, Name, SizeUnit, Value, ValueKind,
};
use crate::syntax::units::{show, Measure};
use schema::{Bounds, Field, Kind, Labels, Only, Schema, Shape, Ty};
use std::collections::{BTreeMap, HashMap};

/// A declared name and where it is declared.
#[derive(Clone, Debug)]
pub struct Declaration<'p> {
    pub kind: Kind,
    pub name: &'p Name,
    pub entry: &'p Entry,
}

/// Every declaration of a spec, by kind and name.
#[derive(Default)]
pub struct Symbols<'p> {
    pub declared: BTreeMap<Kind, BTreeMap<&'p str, Declaration<'p>>>,
}

impl<'p> Symbols<'p> {
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Declaration<'p>> {
        self.declared.get(&kind).and_then(|names| names.get(name))
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Declaration<'p>> {
        self.declared
            .get(&kind)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.of_kind(kind).count()
    }
}

pub struct Checked<'p> {
    pub symbols: Symbols<'p>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks every module of `program`. `broken` holds the places of syntax
/// errors: a block with one inside lost the entry that failed to parse, so
/// it is not also reported for missing that entry.
pub fn check<'p>(program: &'p Program, broken: &[Span]) -> Checked<'p> {
    let mut checker = Checker {
        symbols: Symbols::default(),
        diagnostics: Vec::new(),
        broken: broken.to_vec(),
        seen_lists: Vec::new(),
        std_files: (program.modules.iter())
            .filter(|m| m.name.starts_with("std/"))
            .map(|m| (m.file, m.name.trim_end_matches(".site").to_string()))
            .collect(),
    };
    let entries: Vec<&Entry> = program.entries().collect();
    checker.declare(&entries);
    let uses_platform = program
        .modules
        .iter()
        .any(|m| m.name == "std/platform.site");
    for entry in &entries {
        checker.top_level(entry, uses_platform);
    }
    checker.hosts_have_addresses();
    crate::diagnostic::sort(&mut checker.diagnostics);
    Checked {
        symbols: checker.symbols,
        diagnostics: checker.diagnostics,
    }
}

struct Checker<'p> {
    symbols: Symbols<'p>,
    diagnostics: Vec<Diagnostic>,
    broken: Vec<Span>,
    /// Spare lists for `block`'s (key, label, span) of the entries seen.
    seen_lists: Vec<Vec<SeenEntry<'p>>>,
    /// The standard modules' files, and their names (`std/platform`).
    std_files: Vec<(crate::source::FileId, String)>,
}

type SeenEntry<'p> = (&'p str, Option<&'p str>, Span);

impl<'p> Checker<'p> {
    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// First pass: every named declaration, and every settings target.
    fn declare(&mut self, entries: &[&'p Entry]) {
        let mut settings_targets: HashMap<String, Span> = HashMap::new();
        for entry in entries {
            let Some(schema) = schema::top_level(&entry.key.text) else {
                continue;
            };
            if schema.labels == Labels::SettingsTarget {
                let target: Vec<&str> = entry.labels.iter().map(|l| l.text.as_str()).collect();
                let target = target.join(" ");
                if let Some(first) = settings_targets.insert(target.clone(), entry.head_span()) {
                    self.report(
                        Diagnostic::error("E101", format!("`settings {target}` is declared twice"))
                            .primary(entry.head_span(), "declared again here")
                            .secondary(first, "first declared here")
                            .help("merge the two blocks into one"),
                    );
                }
                continue;
            }
            let (Some(kind), [name]) = (schema.declares, entry.labels.as_slice()) else {
                continue;
            };
            if name.quoted {
                continue;
            }
            let longest = match kind {
                Kind::Host => Some(crate::names::HOST_NAME_LONGEST),
                Kind::App => Some(crate::names::APP_NAME_LONGEST),
                _ => None,
            };
            let problem = longest.and_then(|l| crate::names::fleet_name_problem(&name.text, l));
            if let Some(problem) = problem {
                self.report(
                    Diagnostic::error("E113", format!("{} name: {}", kind.word(), problem.what))
                        .primary(name.span, "not a name the hosts take")
                        .help(problem.fix),
                );
            }
            if let Some(first) = self.symbols.get(kind, &name.text) {
                let first_span = first.name.span;
                let std_module = (self.std_files.iter())
                    .find(|(file, _)| *file == name.span.file)
                    .map(|(_, module)| module.clone());
                if let Some(module) = std_module.filter(|_| !self.is_std(first_span)) {
                    // The user's own line is the one to edit, wherever it stands.
                    self.report(
                        Diagnostic::error(
                            "E101",
                            format!("{} `{}` is already declared by {module}", kind.word(), name.text),
                        )
                        .primary(first_span, format!("a second {} `{}`", kind.word(), name.text))
                        .secondary(name.span, format!("{module} declares it here"))
                        .help(format!(
                            "give yours another name, such as `{}-extra`, and add it to the hosts' roles beside `{}`",
                            name.text, name.text
                        )),
                    );
                    continue;
                }
                self.report(
                    Diagnostic::error(
                        "E101",
                        format!("{} `{}` is declared twice", kind.word(), name.text),
                    )
                    .primary(name.span, "declared again here")
                    .secondary(first_span, "first declared here")
                    .help("rename one of them, or remove the copy"),
                );
                continue;
            }
            self.symbols
                .declared
                .entry(kind)
                .or_default()
                .insert(&name.text, Declaration { kind, name, entry });
        }
    }

    fn is_std(&self, span: Span) -> bool {
        self.std_files.iter().any(|(file, _)| *file == span.file)
    }

    fn top_level(&mut self, entry: &'p Entry, uses_platform: bool) {
        let Some(schema) = schema::top_level(&entry.key.text) else {
            let keywords = schema::TOP_LEVEL.iter().map(|s| s.keyword);
            let help = match suggest::closest(&entry.key.text, keywords) {
                Some(best) => format!("did you mean `{best}`?"),
                None => "a spec declares `provider`, `host`, `settings`, `database`, `app`, `backup` and `role` blocks".into(),
            };
            let message = match entry.body {
                Body::Value(_) => {
                    format!("`{} = ...` can't stand at the top level", entry.key.text)
                }
                Body::Block(_) => format!("unknown declaration `{}`", entry.key.text),
            };
            self.report(
                Diagnostic::error("E100", message)
                    .primary(entry.key.span, "not a declaration")
                    .help(help),
            );
            return;
        };
        let ctx = Context { uses_platform };
        self.labels(entry, schema, &ctx);
        self.body(entry, schema, &ctx);
        if schema.keyword == "app" {
            self.replicas_beside_runners(entry);
        }
    }

    /// E117: `replicas` below the number of `runners` an app is pinned to
    /// (it runs on every one; more replicas than runners is E200).
    fn replicas_beside_runners(&mut self, app: &Entry) {
        let Some(block) = app.block() else {
            return;
        };
        let value = |key: &str| {
            (block.entries.iter())
                .find(|e| e.key.text == key)
                .and_then(|e| Some((e, e.value()?)))
        };
        let (Some((replicas, r)), Some((runners, list))) = (value("replicas"), value("runners"))
        else {
            return;
        };
        let (ValueKind::Int(n), ValueKind::List(list)) = (&r.kind, &list.kind) else {
            return;
        };
        let pinned = list.items.len();
        if usize::try_from(*n).is_ok_and(|n| n < pinned) {
            self.report(
                Diagnostic::error(
                    "E117",
                    format!("`replicas = {n}` means nothing beside {pinned} `runners`"),
                )
                .primary(replicas.span, "ignored here")
                .secondary(runners.span, "the app runs on every one of these")
                .help("an app runs on every runner it is pinned to: remove `replicas`, or pin it to fewer runners"),
            );
        }
    }

    fn body(&mut self, entry: &'p Entry, schema: &'static Schema, ctx: &Context) {
        match &entry.body {
            Body::Block(block) => self.block(entry, block, schema, ctx),
            Body::Value(value) => self.report(
                Diagnostic::error(
                    "E112",
                    format!("`{}` is a block, not a value", entry.key.text),
                )
                .primary(value.span, "a value where a block belongs")
                .help(format!(
                    "write `{}{} {{ ... }}`",
                    entry.key.text,
                    label_hint(schema.labels)
                )),
            ),
        }
    }

    fn block(
        &mut self,
        owner: &'p Entry,
        block: &'p Block,
        schema: &'static Schema,
        ctx: &Context,
    ) {
        // (key, label) of each entry seen so far; blocks are small, so a
        // list beats hashing owned strings. The lists are reused: a spec
        // has thousands of blocks.
        let mut seen = self.seen_lists.pop().unwrap_or_default();
        seen.clear();
        for entry in &block.entries {
            let key = entry.key.text.as_str();
            let mut label = None;
            if let Some(field) = schema.field(key) {
                if field.label.is_some() {
                    label = Some(entry.labels.first().map_or("", |l| l.text.as_str()));
                }
                self.field(entry, field, ctx);
            } else if let Some(sub) = schema.block(key) {
                label = entry.labels.first().map(|l| l.text.as_str());
                self.labels(entry, sub, ctx);
                self.body(entry, sub, ctx);
            } else if let Some(ty) = schema.open {
                if matches!(ty, Ty::Setting) {
                    self.setting_name(&entry.key);
                }
                self.open_entry(entry, ty, ctx);
            } else {
                self.unknown_field(owner, entry, schema);
                continue;
            }
            if let Some(&(_, _, first)) = seen.iter().find(|(k, l, _)| *k == key && *l == label) {
                let identity = label.map_or_else(|| key.to_string(), |l| format!("{key} {l}"));
                self.report(
                    Diagnostic::error("E103", format!("`{identity}` is set twice"))
                        .primary(entry.head_span(), "set again here")
                        .secondary(first, "first set here")
                        .help("keep one of them"),
                );
            } else {
                seen.push((key, label, entry.head_span()));
            }
        }
        for entry in &block.entries {
            let only = schema.field(&entry.key.text).and_then(|f| f.only);
            if let Some(only) = only {
                self.only_where_it_means_something(block, entry, only);
            }
        }
        if schema.keyword == "app" {
            self.asgi_server_fields(block);
        }
        let broken = self
            .broken
            .iter()
            .any(|b| b.file == block.span.file && block.span.range().contains(&b.start));
        let written = |name: &str| seen.iter().find(|(k, _, _)| *k == name).map(|s| s.2);
        for field in schema.fields.iter().filter(|f| f.required) {
            let other = field.or.and_then(|name| Some((name, written(name)?)));
            match (written(field.name), other) {
                (Some(first), Some((name, again))) => self.report(
                    Diagnostic::error(
                        "E103",
                        format!("`{}` and `{name}` are both set", field.name),
                    )
                    .primary(again, "set here")
                    .secondary(first, "and here")
                    .help(format!(
                        "an app is one or the other: keep `{}` or `{name}`",
                        field.name
                    )),
                ),
                (None, None) if !broken => self.report(missing_field(owner, schema, field)),
                _ => {}
            }
        }
        self.seen_lists.push(seen);
    }

    fn field(&mut self, entry: &'p Entry, field: &'static Field, ctx: &Context) {
        match (field.label, entry.labels.as_slice()) {
            (None, []) => {}
            (Some(shape), [label]) if label.quoted => {
                self.shaped(shape, &label.text, label.span, field.name);
            }
            (Some(_), _) => {
                let spans = entry.head_span();
                self.report(
                    Diagnostic::error("E108", format!("`{}` takes one path in quotes", field.name))
                        .primary(spans, "expected one quoted label")
                        .help(format!("write `{} \"/url/\" = \"folder\"`", field.name)),
                );
            }
            (None, [first, ..]) => {
                let span = first
                    .span
                    .to(entry.labels.last().map_or(first.span, |l| l.span));
                self.report(
                    Diagnostic::error("E108", format!("`{}` takes no label", field.name))
                        .primary(span, "unexpected label")
                        .help(format!("write `{} = value`", field.name)),
                );
            }
        }
        match &entry.body {
            Body::Value(value) => self.value(value, field.ty, field.name, ctx),
            Body::Block(block) => self.report(
                Diagnostic::error("E112", format!("`{}` is a value, not a block", field.name))
                    .primary(block.span, "a block where a value belongs")
                    .help(format!(
                        "write `{} = ...`; it takes {}",
                        field.name,
                        field.ty.describe()
                    )),
            ),
        }
    }

    /// An entry of a block that takes any key (`settings`, `databases`).
    fn open_entry(&mut self, entry: &'p Entry, ty: Ty, ctx: &Context) {
        if let Some(first) = entry.labels.first() {
            self.report(
                Diagnostic::error("E108", format!("`{}` takes no label here", entry.key.text))
                    .primary(first.span, "unexpected label")
                    .help(format!("write `{} = value`", entry.key.text)),
            );
        }
        match &entry.body {
            Body::Value(value) => self.value(value, ty, &entry.key.text, ctx),
            Body::Block(block) => self.report(
                Diagnostic::error(
                    "E112",
                    format!("`{}` needs `=` before its value", entry.key.text),
                )
                .primary(block.span, "a block where a value belongs")
                .help(format!(
                    "write `{} = {{ ... }}` for a map value",
                    entry.key.text
                )),
            ),
        }
    }

    fn unknown_field(&mut self, owner: &Entry, entry: &Entry, schema: &'static Schema) {
        // The block may well miss a field only because its key was misspelt.
        self.broken.push(entry.key.span);
        let key = &entry.key.text;
        let known: Vec<&str> = schema.keys().collect();
        let elsewhere = (schema::ELSEWHERE.iter())
            .find(|(keyword, k, _)| *keyword == schema.keyword && k == key)
            .map(|(_, _, help)| *help);
        let help = match suggest::closest(key, known.iter().copied()) {
            _ if elsewhere.is_some() => elsewhere.unwrap_or_default().to_string(),
            Some(best) => format!("did you mean `{best}`?"),
            None if known.is_empty() => format!("`{}` blocks hold nothing", schema.keyword),
            None => format!(
                "{} {} takes: {}",
                article_for(schema.keyword),
                schema.keyword,
                known.join(", ")
            ),
        };
        self.report(
            Diagnostic::error(
                "E102",
                format!("unknown field `{key}` in {}", describe_owner(owner, schema)),
            )
            .primary(entry.key.span, "not a field here")
            .help(help),
        );
    }

    fn labels(&mut self, entry: &'p Entry, schema: &'static Schema, ctx: &Context) {
        let keyword = schema.keyword;
        let problem = match (schema.labels, entry.labels.as_slice()) {
            (Labels::None, []) => None,
            (Labels::None, [first, ..]) => Some((first.span, format!("`{keyword}` takes no name"))),
            (Labels::Name, [name]) if !name.quoted => None,
            (Labels::Name, [name]) => Some((
                name.span,
                format!("a {keyword}'s name is written without quotes"),
            )),
            (Labels::Path, [path]) if path.quoted => None,
            (Labels::Path, [path]) => Some((
                path.span,
                format!("a {keyword}'s path is written in quotes"),
            )),
            (Labels::SettingsTarget, labels) => return self.settings_target(entry, labels, ctx),
            (Labels::Resource, [_]) => None,
            (Labels::Scope, [scope]) => self.scope_problem(scope),
            (_, []) => Some((
                entry.key.span,
                format!("`{keyword}` needs a {}", label_word(schema.labels)),
            )),
            (_, [_, second, ..]) => Some((
                second.span,
                format!("`{keyword}` takes one {}", label_word(schema.labels)),
            )),
        };
        if let Some((span, message)) = problem {
            self.report(
                Diagnostic::error("E108", message)
                    .primary(span, "here")
                    .help(format!(
                        "write `{keyword}{} {{ ... }}`",
                        label_hint(schema.labels)
                    )),
            );
        }
    }

    /// Whether `each SCOPE` names a scope (and sits inside the one it needs).
    fn scope_problem(&self, scope: &Name) -> Option<(Span, String)> {
        let known = schema::SCOPES.iter().map(|(word, _, _)| *word);
        if schema::SCOPES
            .iter()
            .any(|(word, _, _)| *word == scope.text)
        {
            return None;
        }
        let hint = suggest::closest(&scope.text, known)
            .map_or(String::new(), |best| format!("; did you mean `{best}`?"));
        Some((
            scope.span,
            format!("`each` can't repeat over `{}`{hint}", scope.text),
        ))
    }

    /// `settings base`, `settings host H`, `settings app A`, `settings app A host H`.
    fn settings_target(&mut self, entry: &'p Entry, labels: &'p [Name], ctx: &Context) {
        let words: Vec<&str> = labels.iter().map(|l| l.text.as_str()).collect();
        let refs: Vec<(Kind, &Name)> = match words.as_slice() {
            ["base"] => vec![],
            ["host", _] => vec![(Kind::Host, &labels[1])],
            ["app", _] => vec![(Kind::App, &labels[1])],
            ["app", _, "host", _] => vec![(Kind::App, &labels[1]), (Kind::Host, &labels[3])],
            _ => {
                let span = labels.first().map_or(entry.key.span, |first| {
                    first.span.to(labels[labels.len() - 1].span)
                });
                self.report(
                    Diagnostic::error("E108", "`settings` needs a target")
                        .primary(span, "not a settings target")
                        .help("write `settings base`, `settings host NAME`, `settings app NAME` or `settings app NAME host NAME`"),
                );
                return;
            }
        };
        for (kind, name) in refs {
            self.reference(name, kind, ctx);
        }
    }

    fn value(&mut self, value: &'p Value, ty: Ty, field: &str, ctx: &Context) {
        match (ty, &value.kind) {
            (_, ValueKind::Call(call)) => {
                self.call(call, value.span);
                if !matches!(ty, Ty::Secret | Ty::Setting) {
                    self.mismatch(value, ty, field);
                }
            }
            (_, ValueKind::Invalid) => {}
            (Ty::Setting, _) => self.setting(value, field, ctx),
            (Ty::Str, ValueKind::Str(text)) => {
                self.shaped(Shape::OneLine, text, value.span, field);
            }
            (Ty::Secret, ValueKind::Str(_))
            | (Ty::Text, ValueKind::Str(_) | ValueKind::Text(_))
            | (Ty::Bool, ValueKind::Bool(_)) => {}
            (Ty::Duration(bounds), ValueKind::Duration(q)) => {
                self.bounded(value, q.millis(), bounds, Measure::Duration, field);
            }
            (Ty::Size(bounds), ValueKind::Size(q)) => {
                self.bounded(value, q.bytes(), bounds, Measure::Size, field);
            }
            (Ty::Shaped(shape), ValueKind::Str(text)) => {
                self.shaped(shape, text, value.span, field);
            }
            (Ty::IntIn(min, max), ValueKind::Int(n)) => {
                if !(min..=max).contains(n) {
                    self.report(
                        Diagnostic::error(
                            "E115",
                            format!("`{field}` is {n}, outside {min} to {max}"),
                        )
                        .primary(value.span, format!("expected {}", ty.describe()))
                        .help(format!("`{field}` takes {}", ty.describe())),
                    );
                }
            }
            (Ty::Ref(kind), ValueKind::Ref(name)) => self.reference(name, kind, ctx),
            (Ty::OneOf(words), ValueKind::Ref(name)) => {
                if !words.contains(&name.text.as_str()) {
                    let help = match suggest::closest(&name.text, words.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("`{field}` takes {}", ty.describe()),
                    };
                    self.report(
                        Diagnostic::error(
                            "E111",
                            format!("`{}` is not a valid `{field}`", name.text),
                        )
                        .primary(name.span, format!("expected {}", ty.describe()))
                        .help(help),
                    );
                }
            }
            (Ty::List(item), ValueKind::List(list)) => {
                for v in &list.items {
                    self.value(v, *item, field, ctx);
                }
            }
            _ => self.mismatch(value, ty, field),
        }
    }

    /// E117: a field written where it means nothing (`standby` on a Redis
    /// database): it would be ignored.
    fn only_where_it_means_something(&mut self, block: &Block, entry: &Entry, only: &Only) {
        let word = |e: &Entry| match e.value().map(|v| &v.kind) {
            Some(ValueKind::Ref(name)) => Some(name.text.clone()),
            _ => None,
        };
        let sibling = block.entries.iter().find(|e| e.key.text == only.field);
        let Some(beside) = sibling.map_or(only.default.map(str::to_string), word) else {
            return;
        };
        let out_of_place = beside != only.is
            && only
                .value
                .is_none_or(|value| word(entry).as_deref() == Some(value));
        if !out_of_place {
            return;
        }
        let written = match only.value {
            Some(value) => format!("`{} = {value}`", entry.key.text),
            None => format!("`{}`", entry.key.text),
        };
        let mut diagnostic = Diagnostic::error(
            "E117",
            format!("{written} means nothing with `{} = {beside}`", only.field),
        )
        .primary(entry.span, "ignored here")
        .help(only.instead);
        if let Some(sibling) = sibling {
            diagnostic = diagnostic.secondary(sibling.span, "because of this");
        }
        self.report(diagnostic);
    }

    /// E117: gunicorn's `worker_class` or `threads` in an app written with
    /// `asgi`, whose workers are uvicorn's (`model::ASGI_WORKER`).
    fn asgi_server_fields(&mut self, app: &Block) {
        let Some(asgi) = app.entries.iter().find(|e| e.key.text == "asgi") else {
            return;
        };
        let gunicorn = (app.entries.iter())
            .filter(|e| e.key.text == "gunicorn")
            .filter_map(Entry::block);
        for entry in gunicorn.flat_map(|b| &b.entries) {
            if matches!(entry.key.text.as_str(), "worker_class" | "threads") {
                self.report(
                    Diagnostic::error(
                        "E117",
                        format!("`{}` means nothing in an ASGI app", entry.key.text),
                    )
                    .primary(entry.span, "ignored here")
                    .secondary(asgi.span, "because of this")
                    .help("gunicorn runs an ASGI app with uvicorn's worker, one event loop per process: remove it, or write `wsgi` for gunicorn's own workers"),
                );
            }
        }
    }

    /// E115: a duration or size out of its field's bounds.
    fn bounded(
        &mut self,
        value: &Value,
        amount: u64,
        bounds: Bounds,
        measure: Measure,
        field: &str,
    ) {
        if bounds.holds(amount) {
            return;
        }
        let help = if amount < bounds.min {
            format!("use at least {}", show(bounds.min, measure))
        } else if amount > bounds.max {
            format!("use at most {}", show(bounds.max, measure))
        } else {
            let rounded = (amount / bounds.step).max(1) * bounds.step;
            format!("write whole seconds, such as `{}`", show(rounded, measure))
        };
        let ty = match measure {
            Measure::Duration => Ty::Duration(bounds),
            Measure::Size => Ty::Size(bounds),
        };
        self.report(
            Diagnostic::error(
                "E115",
                format!(
                    "`{field}` is {}, outside what it takes",
                    show(amount, measure)
                ),
            )
            .primary(value.span, format!("expected {}", ty.describe()))
            .help(help),
        );
    }

    /// A settings value: literals, lists and maps of them, and secrets.
    fn setting(&mut self, value: &'p Value, field: &str, ctx: &Context) {
        match &value.kind {
            ValueKind::Ref(name) => self.report(
                Diagnostic::error("E105", format!("`{field}` is set to a bare name"))
                    .primary(name.span, "a name means nothing in settings")
                    .help(match name.text.as_str() {
                        "True" | "False" => format!(
                            "Python's `{}` is written `{}` in a spec",
                            name.text,
                            name.text.to_lowercase()
                        ),
                        "yes" | "on" | "Yes" | "On" | "YES" | "ON" => {
                            "a boolean is written `true` (or `false`)".to_string()
                        }
                        "no" | "off" | "No" | "Off" | "NO" | "OFF" => {
                            "a boolean is written `false` (or `true`)".to_string()
                        }
                        "None" | "null" | "nil" => {
                            "a spec has no None: leave the setting out for Django's default"
                                .to_string()
                        }
                        _ => format!("put it in quotes for a string: \"{}\"", name.text),
                    }),
            ),
            ValueKind::List(list) => {
                for item in &list.items {
                    self.setting(item, field, ctx);
                }
            }
            ValueKind::Map(block) => {
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for entry in &block.entries {
                    self.open_entry(entry, Ty::Setting, ctx);
                    if let Some(first) = seen.insert(&entry.key.text, entry.key.span) {
                        self.report(
                            Diagnostic::error("E103", format!("`{}` is set twice", entry.key.text))
                                .primary(entry.key.span, "set again here")
                                .secondary(first, "first set here")
                                .help("keep one of them"),
                        );
                    }
                }
            }
            ValueKind::Call(call) => self.call(call, value.span),
            ValueKind::Duration(q) if q.millis() % 1000 != 0 => {
                let rounded = (q.millis() / 1000).max(1) * 1000;
                self.report(
                    Diagnostic::error(
                        "E115",
                        format!(
                            "`{field}` is {}, not whole seconds",
                            show(q.millis(), Measure::Duration)
                        ),
                    )
                    .primary(value.span, "a part of a second")
                    .help(format!(
                        "a duration in settings becomes a number of seconds: write `{}`",
                        show(rounded, Measure::Duration)
                    )),
                );
            }
            ValueKind::Str(text) if ["true", "false"].contains(&text.to_lowercase().as_str()) => {
                self.report(
                    Diagnostic::warning(
                        "E116",
                        if text.eq_ignore_ascii_case("false") {
                            format!("`{field}` is the text \"{text}\", which Python takes as true")
                        } else {
                            format!("`{field}` is the text \"{text}\", not a boolean")
                        },
                    )
                    .primary(value.span, "a string, not a boolean")
                    .help(format!(
                        "write `{}` (no quotes) for the boolean",
                        text.to_lowercase()
                    )),
                );
            }
            _ => {}
        }
    }

    fn call(&mut self, call: &Call, span: Span) {
        let name = &call.name.text;
        if !schema::FUNCTIONS.contains(&name.as_str()) {
            let help = match suggest::closest(name, schema::FUNCTIONS.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("the functions are: {}", schema::FUNCTIONS.join(", ")),
            };
            self.report(
                Diagnostic::error("E109", format!("unknown function `{name}`"))
                    .primary(call.name.span, "not a function")
                    .help(help),
            );
            return;
        }
        let valid = match call.args.as_slice() {
            [Value {
                kind: ValueKind::Str(s),
                ..
            }] => {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            }
            _ => false,
        };
        if !valid {
            self.report(
                Diagnostic::error("E110", "`secret` takes one name in quotes")
                    .primary(span, "expected `secret(\"app.name\")`")
                    .help("a secret's name is letters, digits, `.`, `_` and `-`, such as \"blog.secret_key\""),
            );
        }
    }

    fn reference(&mut self, name: &'p Name, kind: Kind, ctx: &Context) {
        if self.symbols.get(kind, &name.text).is_some() {
            return;
        }
        let other = self
            .symbols
            .declared
            .values()
            .find_map(|names| names.get(name.text.as_str()))
            .map(|d| (d.kind, d.name.span));
        if let Some((other_kind, other_span)) = other {
            self.report(
                Diagnostic::error(
                    "E107",
                    format!(
                        "`{}` is {} {}, not {} {}",
                        name.text,
                        other_kind.article(),
                        other_kind.word(),
                        kind.article(),
                        kind.word()
                    ),
                )
                .primary(
                    name.span,
                    format!("expected {} {}", kind.article(), kind.word()),
                )
                .secondary(
                    other_span,
                    format!(
                        "declared as {} {} here",
                        other_kind.article(),
                        other_kind.word()
                    ),
                ),
            );
            return;
        }
        let names: Vec<&str> = self
            .symbols
            .of_kind(kind)
            .map(|d| d.name.text.as_str())
            .collect();
        let help = match suggest::closest(&name.text, names.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if kind == Kind::Role && !ctx.uses_platform => {
                "the platform's roles come from the standard library: add `use std/platform` at the top".to_string()
            }
            None if names.is_empty() => format!("declare it: `{} {} {{ ... }}`", kind.word(), name.text),
            None if names.len() <= 8 => format!("the declared {}s are: {}", kind.word(), names.join(", ")),
            None => format!("declare it with `{} {} {{ ... }}`", kind.word(), name.text),
        };
        self.report(
            Diagnostic::error("E106", format!("unknown {} `{}`", kind.word(), name.text))
                .primary(name.span, format!("no {} has this name", kind.word()))
                .help(help),
        );
    }

    /// A settings layer's key: a name Django will read (E114).
    fn setting_name(&mut self, key: &Name) {
        if let Some(problem) = crate::names::setting_name_problem(&key.text) {
            self.report(
                Diagnostic::error("E114", problem.what)
                    .primary(key.span, "not a setting's name")
                    .help(problem.fix),
            );
        }
    }

    /// A string handed to another program as it is: E113 if its shape is wrong.
    fn shaped(&mut self, shape: Shape, text: &str, span: Span, field: &str) {
        if let Some(problem) = shape.problem(text) {
            self.report(
                Diagnostic::error("E113", format!("`{field}`: {}", problem.what))
                    .primary(span, format!("not a valid `{field}`"))
                    .help(problem.fix),
            );
        }
    }

    fn mismatch(&mut self, value: &Value, ty: Ty, field: &str) {
        let hint = type_hint(value, ty);
        self.report(
            Diagnostic::error(
                "E105",
                format!(
                    "`{field}` takes {}, found {}",
                    ty.describe(),
                    value.kind.describe()
                ),
            )
            .primary(value.span, format!("expected {}", ty.describe()))
            .help_opt(hint),
        );
    }

    /// Hosts outside `local` providers must say where they are.
    fn hosts_have_addresses(&mut self) {
        let mut missing = Vec::new();
        for host in self.symbols.of_kind(Kind::Host) {
            let Some(block) = host.entry.block() else {
                continue;
            };
            let broken = self
                .broken
                .iter()
                .any(|b| b.file == block.span.file && block.span.range().contains(&b.start));
            if broken || block.entries.iter().any(|e| e.key.text == "address") {
                continue;
            }
            let provider = block
                .entries
                .iter()
                .find(|e| e.key.text == "provider")
                .and_then(Entry::value);
            let Some(ValueKind::Ref(provider)) = provider.map(|v| &v.kind) else {
                continue;
            };
            let Some(declared) = self.symbols.get(Kind::Provider, &provider.text) else {
                continue;
            };
            let local = declared.entry.block().is_some_and(|b| {
                b.entries.iter().any(|e| {
                    e.key.text == "kind" && matches!(e.value().map(|v| &v.kind), Some(ValueKind::Ref(k)) if k.text == "local")
                })
            });
            if !local {
                missing.push((
                    host.name.text.clone(),
                    host.name.span,
                    provider.text.clone(),
                ));
            }
        }
        for (name, span, provider) in missing {
            self.report(
                Diagnostic::error("E104", format!("host `{name}` has no `address`"))
                    .primary(span, "missing `address`")
                    .help(format!(
                        "add `address = \"...\"`; only hosts of a `kind = local` provider get one automatically, and `{provider}` is not one"
                    )),
            );
        }
    }
}

struct Context {
    uses_platform: bool,
}

fn missing_field(owner: &Entry, schema: &Schema, field: &Field) -> Diagnostic {
    Diagnostic::error(
        "E104",
        format!("{} has no `{}`", describe_owner(owner, schema), field.name),
    )
    .primary(owner.head_span(), format!("missing `{}`", field.name))
    .help(format!(
        "add `{} = ...`: {} ({}){}",
        field.name,
        field.doc,
        field.ty.describe(),
        field
            .or
            .map(|other| format!(", or `{other} = ...`"))
            .unwrap_or_default()
    ))
}

fn describe_owner(owner: &Entry, schema: &Schema) -> String {
    match owner.labels.as_slice() {
        [name] => format!("{} `{}`", schema.keyword, name.text),
        _ => format!("`{}`", schema.keyword),
    }
}

fn article_for(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn label_word(labels: Labels) -> &'static str {
    match labels {
        Labels::Path => "path in quotes",
        Labels::Resource => "name or path",
        Labels::Scope => "scope (app, worker, cluster or redis)",
        _ => "name",
    }
}

fn label_hint(labels: Labels) -> &'static str {
    match labels {
        Labels::None => "",
        Labels::Name => " NAME",
        Labels::Path => " \"/path\"",
        Labels::SettingsTarget => " base",
        Labels::Resource => " \"name-or-path\"",
        Labels::Scope => " app",
    }
}

/// A likely fix for a value of the wrong type.
fn type_hint(value: &Value, ty: Ty) -> Option<String> {
    match (ty, &value.kind) {
        (Ty::Str | Ty::Text | Ty::Secret | Ty::Shaped(_), ValueKind::Ref(name)) => {
            Some(format!("put it in quotes: \"{}\"", name.text))
        }
        (Ty::Ref(_) | Ty::OneOf(_), ValueKind::Str(s)) => {
            Some(format!("names are written without quotes: {s}"))
        }
        (Ty::List(item), _)
            if !matches!(value.kind, ValueKind::List(_)) && accepts(*item, &value.kind) =>
        {
            Some("put it in a list: [...]".to_string())
        }
        (Ty::Duration(_), ValueKind::Int(n)) => {
            Some(format!("add a unit: `{n}s`, `{n}m` or `{n}h`"))
        }
        (Ty::Size(_), ValueKind::Int(n)) => Some(format!("add a unit: `{n}MB` or `{n}GB`")),
        (Ty::Size(_), ValueKind::Duration(q)) if q.unit == DurationUnit::Minutes => Some(format!(
            "`m` is minutes; write `{}MB` for megabytes",
            q.amount
        )),
        (Ty::Size(_), ValueKind::Duration(_)) => Some(Measure::Size.word().to_string()),
        (Ty::Duration(_), ValueKind::Size(q)) if q.unit == SizeUnit::MB => Some(format!(
            "`MB` is megabytes; write `{}m` for minutes",
            q.amount
        )),
        (Ty::Duration(_), ValueKind::Size(_)) => Some(Measure::Duration.word().to_string()),
        (Ty::Duration(_) | Ty::Size(_) | Ty::Bool | Ty::IntIn(..), ValueKind::Str(s))
            if written_bare(s) =>
        {
            Some(format!("write it without quotes: {s}"))
        }
        (Ty::Shaped(Shape::Mode), ValueKind::Int(n)) => Some(format!(
            "a mode is written in quotes, octal with its leading zero: \"{n:04}\""
        )),
        (Ty::Ref(kind), ValueKind::List(list)) => match list.items.as_slice() {
            [Value {
                kind: ValueKind::Ref(name),
                ..
            }] => Some(format!(
                "it takes one {}, not a list: write `{}`",
                kind.word(),
                name.text
            )),
            _ => Some(format!("it takes one {}, not a list", kind.word())),
        },
        (Ty::Bool, ValueKind::Ref(name))
            if ["yes", "no", "on", "off", "True", "False"].contains(&name.text.as_str()) =>
        {
            Some("write `true` or `false`".to_string())
        }
        (Ty::Str | Ty::Text | Ty::Secret | Ty::Shaped(_), ValueKind::Int(n)) => {
            Some(format!("put it in quotes: \"{n}\""))
        }
        (_, ValueKind::Call(_)) => {
            Some("`secret(...)` can stand in settings and in password fields only".to_string())
        }
        _ => None,
    }
}

/// Whether a string holds a value the language writes without quotes: a
/// number, a duration, a size, `true` or `false`.
fn written_bare(text: &str) -> bool {
    let file = crate::source::FileId::default();
    let (tree, errors) = crate::syntax::parse(file, &format!("x = {text}"));
    let value = match tree.items.as_slice() {
        [crate::syntax::ast::Item::Entry(entry)] => entry.value(),
        _ => None,
    };
    errors.is_empty()
        && matches!(
            value.map(|v| &v.kind),
            Some(
                ValueKind::Int(_)
                    | ValueKind::Bool(_)
                    | ValueKind::Duration(_)
                    | ValueKind::Size(_)
            )
        )
}

fn accepts(ty: Ty, kind: &ValueKind) -> bool {
    matches!(
        (ty, kind),
        (Ty::Str | Ty::Shaped(_), ValueKind::Str(_))
            | (Ty::Ref(_), ValueKind::Ref(_))
            | (Ty::IntIn(..), ValueKind::Int(_))
    )
}

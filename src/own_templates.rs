//! Templates of your own: the handlebars files a role's `file` (its
//! `template`) or `service` (its `unit`) names by path (`template =
//! "./templates/motd.hbs"`, relative to the file that declares the role, as
//! a `use` is) instead of one of sitec's.
//!
//! [`read`] reads and parses them when the spec is loaded (`modules`), so
//! `check`, `render` and the language server see the same text. [`check`]
//! finds, without a host, a file that can't be read (E226), a template that
//! does not parse (E227), and a name the template reads that its context
//! lacks, an unknown helper or a partial (E228), all at the `template =`
//! or `unit =` line. The context ([`context::build`], its [`context::shape`]
//! checked against) holds the host, the fleet and, inside an `each`, its
//! item: an app with its settings. It holds a secret's value only for a
//! file that asks with `secrets = true` ([`SECRETS`]): otherwise a setting
//! any layer sets with `secret(...)` is left out. Rendering is `expand`'s,
//! with sitec's own registry (`templates`). Never writes.

pub mod context;
mod fields;

use crate::diagnostic::Diagnostic;
use crate::modules::Module;
use crate::source::{FileId, Span};
use crate::syntax::ast::{Block, Entry, Item, ValueKind};
use handlebars::template::Template;
use std::collections::HashMap;
use std::path::Path;

/// The file cannot be read.
pub const UNREADABLE: &str = "E226";
/// The file is not a template handlebars can parse.
pub const SYNTAX: &str = "E227";
/// The template reads a name its context lacks (or a helper or partial
/// there is none of).
pub const UNKNOWN_FIELD: &str = "E228";

/// `secrets = true` on a file of a template of your own that is not one.
pub const SECRETS_UNUSED: &str = "E234";

/// The fields that may name a template of your own: a file's `template`,
/// a service's `unit` (its unit file).
pub const FIELDS: [&str; 2] = ["template", "unit"];

/// The field a file sets to give its template the secret settings
/// (`secrets = true`): the file is then written readable by no other user
/// and its content never shown.
pub const SECRETS: &str = "secrets";

/// Whether a template of your own may read the secret settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// A file that asks (`secrets = true`).
    Given,
    /// A file that does not: it may ask.
    NotAsked,
    /// A unit file: world-readable in /etc/systemd/system, never given one.
    Never,
}

impl Secrets {
    /// What the resource `entry` whose `field` names the template may read.
    pub fn of(entry: &Entry, field: &str) -> Secrets {
        match field {
            "unit" => Secrets::Never,
            _ if wants_secrets(entry) => Secrets::Given,
            _ => Secrets::NotAsked,
        }
    }
}

/// Whether a file's `template` names a template of your own, a path
/// (`./x.hbs`, `../x.hbs`), rather than one of sitec's (`runner/environment`).
pub fn is_own(written: &str) -> bool {
    written.starts_with("./") || written.starts_with("../")
}

/// Every template of your own a spec's roles name, read and parsed.
#[derive(Default)]
pub struct Files {
    /// By the module that names it and the path as written there.
    by_use: HashMap<(FileId, String), usize>,
    files: Vec<File>,
}

/// One template of your own.
pub struct File {
    /// Its path relative to the root spec's folder (`templates/motd.hbs`),
    /// the same from any working folder: what errors, resources and
    /// snapshots call it.
    pub name: String,
    /// The parsed template, or why there is none.
    pub parsed: Result<Template, Problem>,
}

/// Why a template of your own can't be used.
#[derive(Debug, Clone)]
pub enum Problem {
    /// Not found, not readable, not UTF-8 (E226).
    Unreadable(String),
    /// Handlebars' complaint, and where in the file (E227).
    Syntax {
        reason: String,
        at: Option<(usize, usize)>,
    },
}

impl Files {
    /// The template the module `file` names as `written`.
    pub fn get(&self, file: FileId, written: &str) -> Option<&File> {
        let at = self.by_use.get(&(file, written.to_string()))?;
        self.files.get(*at)
    }

    /// Every use: the module, the path as written, the file.
    pub fn uses(&self) -> impl Iterator<Item = (FileId, &str, &File)> {
        (self.by_use.iter()).filter_map(|((file, written), at)| {
            Some((*file, written.as_str(), self.files.get(*at)?))
        })
    }
}

/// Reads every template of your own the roles of `modules` name (the root
/// first), each once however many roles use it.
pub fn read(modules: &[Module]) -> Files {
    let root = (modules.first())
        .and_then(|m| Path::new(&m.name).parent())
        .map(crate::modules::normalize)
        .unwrap_or_default();
    let mut files = Files::default();
    let mut by_path: HashMap<std::path::PathBuf, usize> = HashMap::new();
    for module in modules {
        let Some(folder) = &module.folder else {
            continue;
        };
        let mut written = Vec::new();
        for item in &module.ast.items {
            if let Item::Entry(entry) = item {
                if entry.key.text == "role" {
                    if let Some(block) = entry.block() {
                        named_in(block, &mut written);
                    }
                }
            }
        }
        for path in written {
            let on_disk = crate::modules::normalize(&folder.join(&path));
            let at = *by_path.entry(on_disk.clone()).or_insert_with(|| {
                let shown = crate::modules::normalize(
                    &Path::new(&module.name)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(&path),
                );
                let name = shown.strip_prefix(&root).unwrap_or(&shown);
                let name = name.display().to_string();
                let parsed = parse(&on_disk, &name);
                files.files.push(File { name, parsed });
                files.files.len() - 1
            });
            files.by_use.insert((module.ast.file, path), at);
        }
    }
    files
}

/// Every `template = "./..."` and `unit = "./..."` in a role's block, `each`
/// blocks included.
fn named_in(block: &Block, out: &mut Vec<String>) {
    for entry in &block.entries {
        if let Some(inner) = entry.block() {
            named_in(inner, out);
        } else if let Some(ValueKind::Str(text)) = entry.value().map(|v| &v.kind) {
            if FIELDS.contains(&entry.key.text.as_str()) && is_own(text) && !out.contains(text) {
                out.push(text.clone());
            }
        }
    }
}

/// A template larger than this is no config file (and `./../dev/zero`
/// would never end).
const LARGEST: u64 = 16 << 20;

fn parse(path: &Path, name: &str) -> Result<Template, Problem> {
    let why = |e: std::io::Error| {
        Problem::Unreadable(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        })
    };
    let metadata = std::fs::metadata(path).map_err(why)?;
    if !metadata.is_file() {
        return Err(Problem::Unreadable("it is not a file".to_string()));
    }
    if metadata.len() > LARGEST {
        return Err(Problem::Unreadable("it is larger than 16 MiB".to_string()));
    }
    let bytes = std::fs::read(path).map_err(why)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Problem::Unreadable("it is not UTF-8 text".to_string()))?;
    Template::compile_with_name(&text, name.to_string()).map_err(|e| Problem::Syntax {
        reason: e.reason().to_string(),
        at: e.pos(),
    })
}

/// What a template of your own is checked against: the fleet, for the
/// settings its apps have.
pub struct Checker<'a, 'p> {
    pub fleet: &'a crate::model::Fleet<'p>,
    pub files: &'a Files,
    /// Every setting name any layer gives, and those a layer makes secret;
    /// worked out when a template inside `each app` is first checked.
    settings: std::cell::OnceCell<context::SettingNames>,
}

impl<'a, 'p> Checker<'a, 'p> {
    pub fn new(fleet: &'a crate::model::Fleet<'p>, files: &'a Files) -> Self {
        Checker {
            fleet,
            files,
            settings: std::cell::OnceCell::new(),
        }
    }

    /// The mistakes of the template a file or unit names as `written` (at
    /// `span`, its value), used inside the `each` scopes `open`, with the
    /// secret settings or not (`secrets`).
    pub fn check(
        &self,
        written: &str,
        span: Span,
        open: &[&str],
        secrets: Secrets,
    ) -> Vec<Diagnostic> {
        let Some(file) = self.files.get(span.file, written) else {
            // A standard module's role: it has no folder to look in.
            return vec![Diagnostic::error(
                UNREADABLE,
                format!("a standard module can't name the template `{written}`"),
            )
            .primary(span, "not beside a spec")];
        };
        let template = match &file.parsed {
            Ok(template) => template,
            Err(problem) => return vec![problem_diagnostic(file, problem, written, span)],
        };
        let scopes = context::Scopes::of(open);
        let settings = if scopes.app {
            self.settings
                .get_or_init(|| context::SettingNames::of(self.fleet))
        } else {
            &context::SettingNames::NONE
        };
        let shape = context::shape(&scopes, settings, secrets == Secrets::Given);
        fields::unknown(template, &shape)
            .into_iter()
            .map(|unknown| unknown_diagnostic(file, &unknown, &scopes, settings, secrets, span))
            .collect()
    }
}

fn problem_diagnostic(file: &File, problem: &Problem, written: &str, span: Span) -> Diagnostic {
    match problem {
        Problem::Unreadable(why) => {
            let builtin = crate::templates::Templates::names()
                .find(|n| Some(*n) == written.strip_prefix("./"));
            Diagnostic::error(
                UNREADABLE,
                format!("can't read the template `{written}`: {why}"),
            )
            .primary(span, format!("looked for `{}`", file.name))
            .help(match builtin {
                Some(name) => format!("to use sitec's template, write `template = \"{name}\"`"),
                None => "the path is relative to the file that declares the role: create the file there, or fix the path".to_string(),
            })
        }
        Problem::Syntax { reason, at } => {
            let place = match at {
                Some((line, column)) => format!("{}:{line}:{column}", file.name),
                None => file.name.clone(),
            };
            Diagnostic::error(
                SYNTAX,
                format!("the template `{}` does not parse: {reason}", file.name),
            )
            .primary(span, format!("at {place}"))
            .help(format!(
                "fix the template at {place}: handlebars writes `{{{{name}}}}`, `{{{{#if name}}}}...{{{{/if}}}}`, `{{{{#each list}}}}...{{{{/each}}}}`"
            ))
        }
    }
}

fn unknown_diagnostic(
    file: &File,
    unknown: &fields::Unknown,
    scopes: &context::Scopes,
    settings: &context::SettingNames,
    secrets: Secrets,
    span: Span,
) -> Diagnostic {
    let place = format!("{}:{}:{}", file.name, unknown.line, unknown.column);
    let (message, help) = match &unknown.what {
        fields::What::Field { at, missing, known } => {
            let secret = at == "app.settings" && settings.secret.iter().any(|s| s == missing);
            let message = if secret {
                format!(
                    "`{}` in the template `{}` reads a secret setting, and this {} gets none",
                    unknown.path,
                    file.name,
                    if secrets == Secrets::Never {
                        "unit"
                    } else {
                        "file"
                    }
                )
            } else {
                format!(
                    "`{}` in the template `{}` names no field of its context",
                    unknown.path, file.name
                )
            };
            let scope = at.is_empty() && context::Scopes::word_of(missing).is_some();
            let help = if secret && secrets == Secrets::Never {
                format!("the setting `{missing}` is a secret, and a unit file is readable by every user: put it in a `file` with `{SECRETS} = true` (readable by its owner and group only) and read that from the unit (`EnvironmentFile=`, or the daemon's own config)")
            } else if secret {
                format!("the setting `{missing}` is a secret: write `{SECRETS} = true` in this `file` to give its template the secrets (the file is then readable by its owner and group only, and never shown in a plan), or leave it out")
            } else if scope && !scopes.has(missing) {
                format!(
                    "`{missing}` is in the context only inside `each {}`",
                    context::Scopes::word_of(missing).unwrap_or(missing)
                )
            } else if let Some(best) =
                crate::suggest::closest(missing, known.iter().map(String::as_str))
            {
                // As the template writes it: `nme` inside `each fleet.hosts` is `name`.
                let whole = match unknown.path.strip_suffix(missing.as_str()) {
                    Some(before) => format!("{before}{best}"),
                    None => best.to_string(),
                };
                format!("did you mean `{whole}`?")
            } else if at == "app.settings" {
                format!(
                    "no settings layer gives `{missing}`; the settings are: {}",
                    known.join(", ")
                )
            } else {
                let level = if at.is_empty() {
                    "the context"
                } else {
                    at.as_str()
                };
                format!("{level} holds: {}", known.join(", "))
            };
            (message, help)
        }
        fields::What::NotObject { at } => (
            format!(
                "`{}` in the template `{}` reads into `{at}`, which is a value",
                unknown.path, file.name
            ),
            format!("`{at}` is text, a number or true/false: write `{{{{{at}}}}}`"),
        ),
        fields::What::NotList { at } => (
            format!(
                "`{{{{#each {at}}}}}` in the template `{}` repeats over what is not a list",
                file.name
            ),
            format!("`{at}` is a value: print it with `{{{{{at}}}}}`"),
        ),
        fields::What::Helper(name) => (
            format!("the template `{}` calls `{name}`, no helper", file.name),
            format!("the helpers are: {}", fields::HELPERS.join(", ")),
        ),
        fields::What::Partial => (
            format!("the template `{}` uses a partial or decorator", file.name),
            "a template of your own stands alone: write the text in it".to_string(),
        ),
    };
    Diagnostic::error(UNKNOWN_FIELD, message)
        .primary(span, format!("at {place}"))
        .help(help)
}

/// The template of your own a resource's `field` (`template`, `unit`)
/// names, as written, and where: for `expand`, which finds it through the
/// resource's entry. Its resources name it by [`File::name`].
pub fn written<'e>(entry: &'e Entry, field: &str) -> Option<(&'e str, Span)> {
    let value = entry
        .block()?
        .entries
        .iter()
        .find(|e| e.key.text == field)?
        .value()?;
    match &value.kind {
        ValueKind::Str(text) if is_own(text) => Some((text, value.span)),
        _ => None,
    }
}

/// Whether a resource asks for the secrets (`secrets = true`).
pub fn wants_secrets(entry: &Entry) -> bool {
    (entry.block().into_iter().flat_map(|b| &b.entries)).any(|e| {
        e.key.text == SECRETS && matches!(e.value().map(|v| &v.kind), Some(ValueKind::Bool(true)))
    })
}

#[cfg(test)]
mod tests;

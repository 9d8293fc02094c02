//! The local override file: `NAME.local.toml` beside `NAME.site`, the top
//! settings layer, which operators edit by hand and `sitec set` edits with
//! toml_edit (comments and layout kept).
//!
//! ```toml
//! [blog]                 # app blog, every host
//! DEBUG = true
//! [blog.hosts.run1]      # app blog on run1 only
//! WORKERS = 8
//! ```

use crate::settings::{python_string, Override};
use std::path::{Path, PathBuf};

/// `fleet.site` keeps its overrides in `fleet.local.toml`.
pub fn path_for(spec: &Path) -> PathBuf {
    let stem = spec
        .file_stem()
        .map_or_else(|| "spec".into(), |s| s.to_string_lossy().into_owned());
    spec.with_file_name(format!("{stem}.local.toml"))
}

/// Reads the override file beside `spec` (none is fine).
pub fn load(spec: &Path) -> Result<Vec<Override>, String> {
    let path = path_for(spec);
    match read(&path)? {
        Some(text) => parse(&text, &path.display().to_string()),
        None => Ok(Vec::new()),
    }
}

/// The override file's text (`None`: there is none).
fn read(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("can't read `{}`: {e}", path.display())),
    }
}

/// Parses an override file's text; `name` is how origins cite it.
pub fn parse(text: &str, name: &str) -> Result<Vec<Override>, String> {
    // The immutable document keeps spans, so every value can cite its line.
    let doc = toml_edit::Document::parse(text.to_string())
        .map_err(|e| format!("`{name}` is not valid TOML: {e}"))?;
    let line = |span: Option<std::ops::Range<usize>>| {
        span.map_or(0, |s| text[..s.start].matches('\n').count() + 1)
    };
    let mut out = Vec::new();
    for (app, table) in doc.as_table().iter() {
        let Some(table) = table.as_table() else {
            return Err(format!(
                "`{name}`: `{app}` should be a table `[{app}]` of settings for app {app}"
            ));
        };
        for (key, item) in table.iter() {
            if key == RELEASE {
                continue; // a rollback's pin ([`pins`]), not a setting
            }
            if key == "hosts" {
                let Some(hosts) = item.as_table() else {
                    return Err(format!(
                        "`{name}`: `[{app}.hosts]` should hold `[{app}.hosts.HOST]` tables"
                    ));
                };
                for (host, settings) in hosts.iter() {
                    let Some(settings) = settings.as_table() else {
                        continue;
                    };
                    for (key, item) in settings.iter() {
                        let origin = format!(
                            "{name}:{}",
                            line(settings.key(key).and_then(toml_edit::Key::span))
                        );
                        setting_name(key, &origin)?;
                        let python = to_python(item).ok_or_else(|| format!("`{name}`: `{app}.hosts.{host}.{key}` has a value sitec can't pass to Python"))?;
                        out.push(Override {
                            app: app.to_string(),
                            host: Some(host.to_string()),
                            name: key.to_string(),
                            python,
                            origin,
                        });
                    }
                }
                continue;
            }
            let origin = format!(
                "{name}:{}",
                line(table.key(key).and_then(toml_edit::Key::span))
            );
            setting_name(key, &origin)?;
            let python = to_python(item).ok_or_else(|| {
                format!("`{name}`: `{app}.{key}` has a value sitec can't pass to Python")
            })?;
            out.push(Override {
                app: app.to_string(),
                host: None,
                name: key.to_string(),
                python,
                origin,
            });
        }
    }
    Ok(out)
}

/// `[APP.release]`: the pin `sitec rollback` leaves.
const RELEASE: &str = "release";

/// A release pinned by `sitec rollback`: `[APP.release] pinned = "HASH"
/// from = "HASH"`. It holds while the app's source is still `from` (the
/// release rolled back from); a new source is a new deploy, and the pin
/// no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub app: String,
    /// The start of the pinned release's content hash.
    pub pinned: String,
    /// The start of the content hash that was live when it was pinned.
    pub from: String,
}

/// The pins in the override file beside `spec`.
pub fn pins(spec: &Path) -> Result<Vec<Pin>, String> {
    let path = path_for(spec);
    let Some(text) = read(&path)? else {
        return Ok(Vec::new());
    };
    let doc = toml_edit::Document::parse(text)
        .map_err(|e| format!("`{}` is not valid TOML: {e}", path.display()))?;
    let mut out = Vec::new();
    for (app, table) in doc.as_table().iter() {
        let Some(pin) = table.get(RELEASE) else {
            continue;
        };
        let field = |key: &str| pin.get(key).and_then(toml_edit::Item::as_str).unwrap_or("");
        let (pinned, from) = (field("pinned"), field("from"));
        let hex = |h: &str| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit());
        if !hex(pinned) || !hex(from) {
            return Err(format!(
                "`{}`: `[{app}.release]` should hold `pinned = \"HASH\"` and `from = \"HASH\"` as `sitec rollback` writes them; remove the table to unpin",
                path.display()
            ));
        }
        out.push(Pin {
            app: app.to_string(),
            pinned: pinned.to_string(),
            from: from.to_string(),
        });
    }
    Ok(out)
}

/// Writes `[APP.release]` into the override file beside `spec`, keeping
/// the rest of it.
pub fn pin(spec: &Path, app: &str, pinned: &str, from: &str) -> Result<(), String> {
    let path = path_for(spec);
    let text = read(&path)?;
    let mut doc: toml_edit::DocumentMut = (text.as_deref().unwrap_or(""))
        .parse()
        .map_err(|e| format!("`{}` is not valid TOML: {e}", path.display()))?;
    let mut release = toml_edit::Table::new();
    release.insert("pinned", toml_edit::value(pinned));
    release.insert("from", toml_edit::value(from));
    release.decor_mut().set_prefix(
        "\n# Pinned by `sitec rollback`: plan and apply keep this release live while the\n\
         # app's source is still `from`; a new source deploys, and this no longer holds.\n",
    );
    let root = doc.as_table_mut();
    if !root.contains_key(app) {
        let mut table = toml_edit::Table::new();
        table.set_implicit(true);
        root.insert(app, toml_edit::Item::Table(table));
    }
    let table = root
        .get_mut(app)
        .and_then(toml_edit::Item::as_table_mut)
        .ok_or_else(|| format!("`{}`: `{app}` is not a table", path.display()))?;
    table.insert(RELEASE, toml_edit::Item::Table(release));
    let new = match text {
        Some(_) => doc.to_string(),
        None => format!("{}{doc}", header(&spec.display().to_string())),
    };
    std::fs::write(&path, new).map_err(|e| format!("can't write `{}`: {e}", path.display()))
}

/// A key of the file is a setting's name Django will read.
fn setting_name(key: &str, place: &str) -> Result<(), String> {
    crate::names::setting_name_problem(key).map_or(Ok(()), |p| Err(p.at(place)))
}

fn to_python(item: &toml_edit::Item) -> Option<String> {
    value_python(item.as_value()?)
}

fn value_python(value: &toml_edit::Value) -> Option<String> {
    Some(match value {
        toml_edit::Value::String(s) => python_string(s.value()),
        toml_edit::Value::Integer(n) => n.value().to_string(),
        toml_edit::Value::Float(f) => format!("{:?}", f.value()),
        toml_edit::Value::Boolean(b) => if *b.value() { "True" } else { "False" }.to_string(),
        toml_edit::Value::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(value_python).collect();
            format!("[{}]", items?.join(", "))
        }
        toml_edit::Value::InlineTable(table) => {
            let pairs: Option<Vec<String>> = table
                .iter()
                .map(|(k, v)| Some(format!("{}: {}", python_string(k), value_python(v)?)))
                .collect();
            format!("{{{}}}", pairs?.join(", "))
        }
        toml_edit::Value::Datetime(d) => python_string(&d.value().to_string()),
    })
}

/// A change `sitec set` makes: `KEY = value` (or, without a value, its
/// removal) in `[APP]` or `[APP.hosts.HOST]`.
pub struct Edit<'a> {
    pub app: &'a str,
    pub host: Option<&'a str>,
    pub key: &'a str,
    pub value: Option<toml_edit::Value>,
}

impl Edit<'_> {
    /// `[blog]` or `[blog.hosts.run1]`
    pub fn table(&self) -> String {
        match self.host {
            Some(host) => format!("[{}.hosts.{host}]", self.app),
            None => format!("[{}]", self.app),
        }
    }
}

/// A value given on the command line: a TOML literal if it is one (`true`,
/// `3`, `"x"`, `[1, 2]`), else the text as a string. Python's `True`,
/// `False` and `None` are refused: as text, `DEBUG=False` would set DEBUG
/// to the string "False", which Python takes as true.
pub fn parse_value(text: &str) -> Result<toml_edit::Value, String> {
    match text {
        "True" | "False" => Err(format!(
            "`{text}` would be the text \"{text}\", which Python takes as true; write `{}` for the boolean, or `'\"{text}\"'` for the text",
            text.to_lowercase()
        )),
        "None" => Err(
            "a setting cannot be None; `sitec set --unset` removes the override, leaving the spec's value"
                .to_string(),
        ),
        _ => Ok(text
            .parse::<toml_edit::Value>()
            .unwrap_or_else(|_| toml_edit::Value::from(text))),
    }
}

/// Applies `edit` to an override file's text (`None`: there is no file yet,
/// and the new one starts with a header naming `spec`). Every comment and
/// the layout are kept. Returns the new text and the value the key had.
pub fn apply(
    text: Option<&str>,
    spec: &str,
    edit: &Edit,
) -> Result<(String, Option<String>), String> {
    let mut doc: toml_edit::DocumentMut = text
        .unwrap_or("")
        .parse()
        .map_err(|e| format!("the override file is not valid TOML: {e}"))?;
    let Some(table) = table_mut(doc.as_table_mut(), edit)? else {
        // Nothing to remove from a table that does not exist.
        return Ok((text.unwrap_or("").to_string(), None));
    };
    let old = table
        .get(edit.key)
        .and_then(toml_edit::Item::as_value)
        .map(shown);
    match (&edit.value, table.get_mut(edit.key)) {
        (Some(value), Some(item)) => {
            let mut value = value.clone();
            if let Some(previous) = item.as_value() {
                // A comment after the old value stays after the new one.
                *value.decor_mut() = previous.decor().clone();
            }
            // Replacing the item in place keeps the key and the comments above it.
            *item = toml_edit::Item::Value(value);
        }
        (Some(value), None) => {
            let mut value = value.clone();
            value.decor_mut().clear();
            table.insert(edit.key, toml_edit::Item::Value(value));
        }
        (None, _) => {
            table.remove(edit.key);
        }
    }
    let new = doc.to_string();
    Ok(match text {
        Some(_) => (new, old),
        None => (format!("{}\n{new}", header(spec)), old),
    })
}

/// A TOML value as written, without the spaces and comment around it.
pub fn shown(value: &toml_edit::Value) -> String {
    let mut value = value.clone();
    value.decor_mut().clear();
    value.to_string()
}

fn header(spec: &str) -> String {
    format!(
        "# Local overrides for {spec}: the top settings layer, above everything the spec sets.\n\
         # `[APP]` holds settings for an app on every host, `[APP.hosts.HOST]` for one host.\n\
         # Edit by hand or with `sitec set`, which keeps comments; `sitec explain` shows the layers.\n"
    )
}

/// The table `edit` writes into, made when a value is set and missing.
fn table_mut<'d>(
    root: &'d mut toml_edit::Table,
    edit: &Edit,
) -> Result<Option<&'d mut toml_edit::Table>, String> {
    let create = edit.value.is_some();
    let mut path = vec![edit.app];
    if let Some(host) = edit.host {
        path.extend(["hosts", host]);
    }
    let mut table = root;
    for (depth, name) in path.iter().enumerate() {
        if !table.contains_key(name) {
            if !create {
                return Ok(None);
            }
            let mut new = toml_edit::Table::new();
            // `[blog.hosts.run1]` needs no `[blog]` or `[blog.hosts]` header of its own.
            new.set_implicit(depth + 1 < path.len());
            table.insert(name, toml_edit::Item::Table(new));
        }
        table = table
            .get_mut(name)
            .and_then(toml_edit::Item::as_table_mut)
            .ok_or_else(|| format!("`{}` should be a table", path[..=depth].join(".")))?;
    }
    Ok(Some(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollbacks_pin_is_written_beside_the_settings_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = dir.path().join("fleet.site");
        std::fs::write(path_for(&spec), "[blog]\nDEBUG = true # kept\n").expect("write");
        pin(&spec, "blog", "3333cccc4444", "5555eeee6666").expect("pin");
        pin(&spec, "shop", "0123456789ab", "ba9876543210").expect("pin");
        let text = std::fs::read_to_string(path_for(&spec)).expect("read");
        assert!(text.contains("DEBUG = true # kept"), "{text}");
        let found = pins(&spec).expect("pins");
        assert_eq!(
            found
                .iter()
                .map(|p| (p.app.as_str(), p.pinned.as_str(), p.from.as_str()))
                .collect::<Vec<_>>(),
            [
                ("blog", "3333cccc4444", "5555eeee6666"),
                ("shop", "0123456789ab", "ba9876543210")
            ]
        );
        // The pin is no setting: the settings read as before.
        let settings = load(&spec).expect("settings");
        assert_eq!(settings.len(), 1, "{settings:?}");
        std::fs::write(
            path_for(&spec),
            "[blog.release]\npinned = \"../x\"\nfrom = \"ab\"\n",
        )
        .expect("write");
        assert!(pins(&spec).is_err_and(|e| e.contains("[blog.release]")));
    }

    fn set(text: Option<&str>, host: Option<&str>, key: &str, value: Option<&str>) -> String {
        let edit = Edit {
            app: "blog",
            host,
            key,
            value: value.map(|v| parse_value(v).expect("a value")),
        };
        apply(text, "fleet.site", &edit).expect("applies").0
    }

    #[test]
    fn values_are_toml_or_text() {
        let shown = |t: &str| parse_value(t).expect("a value").to_string();
        assert_eq!(shown("true"), "true");
        assert_eq!(shown("3"), "3");
        assert_eq!(shown("\"x\""), "\"x\"");
        assert_eq!(shown("[1, 2]"), "[1, 2]");
        assert_eq!(shown("hello world"), "\"hello world\"");
        assert_eq!(shown("https://x.example/a"), "\"https://x.example/a\"");
        assert_eq!(shown("\"False\""), "\"False\"");
        for python in ["True", "False", "None"] {
            assert!(parse_value(python).is_err(), "{python}");
        }
    }

    #[test]
    fn keys_django_cannot_read_are_refused_with_their_line() {
        for (text, said) in [
            (
                "[blog]\nDEBUG = true\nmy-setting = 1\n",
                "f.local.toml:3: `my-setting` is not a Python name",
            ),
            (
                "[blog.hosts.run1]\nworkers = 8\n",
                "f.local.toml:2: `workers` is not in capitals",
            ),
            ("[blog]\n_X = 1\n", "f.local.toml:2: `_X` starts with `_`"),
        ] {
            let err = parse(text, "f.local.toml").err().unwrap_or_default();
            assert!(err.starts_with(said), "{err}");
        }
    }

    #[test]
    fn set_keeps_comments_and_blank_lines() {
        let text = "# top comment\n\n[blog]  # the blog\n# debug off in prod\nDEBUG = false  # keep\n\nTITLE = \"Hi\"\n\n# shop next\n[shop]\nX = 1\n";
        let got = set(Some(text), None, "DEBUG", Some("true"));
        assert_eq!(
            got,
            "# top comment\n\n[blog]  # the blog\n# debug off in prod\nDEBUG = true  # keep\n\nTITLE = \"Hi\"\n\n# shop next\n[shop]\nX = 1\n"
        );
        let got = set(Some(&got), None, "NEW", Some("x y"));
        assert!(got.contains("TITLE = \"Hi\"\nNEW = \"x y\"\n"), "{got}");
        assert!(got.contains("# shop next\n[shop]\nX = 1\n"), "{got}");
    }

    #[test]
    fn creates_file_and_tables() {
        let got = set(None, Some("run1"), "WORKERS", Some("8"));
        assert!(got.starts_with("# Local overrides for fleet.site"), "{got}");
        assert!(got.ends_with("\n[blog.hosts.run1]\nWORKERS = 8\n"), "{got}");
        let parsed = parse(&got, "f").expect("readable");
        assert_eq!(parsed[0].host.as_deref(), Some("run1"));
        assert_eq!(parsed[0].python, "8");
    }

    #[test]
    fn unset_removes_and_reports_the_old_value() {
        let text = "[blog]\nDEBUG = false\nX = 1\n";
        let edit = Edit {
            app: "blog",
            host: None,
            key: "DEBUG",
            value: None,
        };
        let (got, old) = apply(Some(text), "f.site", &edit).expect("applies");
        assert_eq!(
            (got.as_str(), old.as_deref()),
            ("[blog]\nX = 1\n", Some("false"))
        );
        let (same, old) = apply(Some(&got), "f.site", &edit).expect("applies");
        assert_eq!((same.as_str(), old), (got.as_str(), None));
    }

    #[test]
    fn reads_app_and_host_layers_with_lines() {
        let text =
            "# mine\n[blog]\nDEBUG = true\nTITLE = \"Hi\"\n\n[blog.hosts.run1]\nWORKERS = [1, 2]\n";
        let overrides = parse(text, "f.local.toml").expect("valid");
        let got: Vec<(&str, Option<&str>, &str, &str, &str)> = overrides
            .iter()
            .map(|o| {
                (
                    o.app.as_str(),
                    o.host.as_deref(),
                    o.name.as_str(),
                    o.python.as_str(),
                    o.origin.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("blog", None, "DEBUG", "True", "f.local.toml:3"),
                ("blog", None, "TITLE", "\"Hi\"", "f.local.toml:4"),
                ("blog", Some("run1"), "WORKERS", "[1, 2]", "f.local.toml:7"),
            ]
        );
    }
}

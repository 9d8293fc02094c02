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
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("can't read `{}`: {e}", path.display())),
    };
    parse(&text, &path.display().to_string())
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

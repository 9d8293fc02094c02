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
                        let python = to_python(item).ok_or_else(|| format!("`{name}`: `{app}.hosts.{host}.{key}` has a value sitec can't pass to Python"))?;
                        let span = settings.key(key).and_then(toml_edit::Key::span);
                        out.push(Override {
                            app: app.to_string(),
                            host: Some(host.to_string()),
                            name: key.to_string(),
                            python,
                            origin: format!("{name}:{}", line(span)),
                        });
                    }
                }
                continue;
            }
            let python = to_python(item).ok_or_else(|| {
                format!("`{name}`: `{app}.{key}` has a value sitec can't pass to Python")
            })?;
            let span = table.key(key).and_then(toml_edit::Key::span);
            out.push(Override {
                app: app.to_string(),
                host: None,
                name: key.to_string(),
                python,
                origin: format!("{name}:{}", line(span)),
            });
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

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

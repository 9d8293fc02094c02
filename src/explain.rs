//! `sitec explain`: where one setting of one app gets its value, one
//! variable of its environment (`env.NAME`), or every variable of it
//! (`env`).
//!
//! For each runner the app runs on, every layer the setting passed, lowest
//! first, with the `file:line` that set it, the winner marked, and the final
//! Python literal (for a variable: its text, sitec's own layer first).
//! Runners that see the same layers are shown together.
//! Secrets are shown as `secret("name")`: this module never reads a
//! secret's value. Pure: the command in `cli` loads the spec and prints.

use crate::model::{AppId, Fleet, HostId};
use crate::settings::{self, Override, Resolved};
use crate::source::SourceMap;

/// What to explain: `KEY` of app `APP`, on one host or on every runner.
pub struct Query<'a> {
    pub app: &'a str,
    pub key: &'a str,
    pub host: Option<&'a str>,
}

/// The explanation as operators read it, or what is wrong with the query
/// (with a "did you mean" where one is likely).
pub fn explain(
    fleet: &Fleet,
    sources: &SourceMap,
    overrides: &[Override],
    query: &Query,
) -> Result<String, String> {
    let app = find_app(fleet, query.app)?;
    let hosts = hosts_of(fleet, app, query.host)?;
    if query.key == "env" {
        return explain_environment(fleet, sources, overrides, query, &hosts);
    }
    let variable = query.key.strip_prefix("env.");
    let key = variable.unwrap_or(query.key);
    let resolve = |host: HostId| match variable {
        Some(_) => environment(fleet, sources, overrides, app, host),
        None => settings::resolve(fleet, sources, overrides, app, host),
    };
    let per_host: Vec<(HostId, Option<Resolved>)> = hosts
        .iter()
        .map(|&host| (host, resolve(host).into_iter().find(|r| r.name == key)))
        .collect();
    if per_host.iter().all(|(_, s)| s.is_none()) {
        let mut known: Vec<String> = hosts
            .iter()
            .flat_map(|&h| resolve(h))
            .map(|r| r.name)
            .collect();
        known.sort();
        known.dedup();
        let what = if variable.is_some() {
            "environment variable"
        } else {
            "setting"
        };
        let hint = match crate::suggest::closest(key, known.iter().map(String::as_str)) {
            Some(name) if variable.is_some() => format!("; did you mean `env.{name}`?"),
            Some(name) => format!("; did you mean `{name}`?"),
            None if known.is_empty() => format!("; it has no {what}s"),
            None => format!("; its {what}s are {}", quoted(&known)),
        };
        let close = crate::suggest::closest(key, known.iter().map(String::as_str));
        let env_hint = if variable.is_none() && close.is_none() {
            " (an environment variable is `env.NAME`)"
        } else {
            ""
        };
        return Err(format!(
            "app `{}` has no {what} `{key}`{hint}{env_hint}",
            query.app
        ));
    }
    // Runners that see exactly the same layers are explained once.
    let mut groups: Vec<(Vec<&str>, Vec<Row>)> = Vec::new();
    for (host, setting) in &per_host {
        let rows = rows(setting.as_ref(), variable.is_some());
        let name = fleet.hosts[*host].name.as_str();
        match groups.iter_mut().find(|(_, r)| *r == rows) {
            Some((names, _)) => names.push(name),
            None => groups.push((vec![name], rows)),
        }
    }
    let mut out = String::new();
    for (i, (names, rows)) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let on = names.join(", ");
        if rows.is_empty() {
            let default = if variable.is_some() {
                "not in its environment"
            } else {
                "not set (Django's default applies)"
            };
            out.push_str(&format!(
                "{} for app {} on {on}: {default}\n",
                query.key, query.app
            ));
            continue;
        }
        out.push_str(&format!("{} for app {} on {on}:\n", query.key, query.app));
        let name_width = rows.iter().map(|r| r.layer.len()).max().unwrap_or(0);
        let origin_width = rows.iter().map(|r| r.origin.len()).max().unwrap_or(0);
        for (n, row) in rows.iter().enumerate() {
            let wins = if n + 1 == rows.len() {
                "   <- wins"
            } else {
                ""
            };
            let line = format!(
                "  {:name_width$}   {:origin_width$}   {}{wins}",
                row.layer, row.origin, row.value
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if let Some(last) = rows.last() {
            out.push_str(&format!("  value: {}\n", last.value));
        }
    }
    Ok(out)
}

/// Every variable of the app's environment on `hosts`, in the order of its
/// environment file (sitec's own first), each explained as `env.NAME` is.
fn explain_environment(
    fleet: &Fleet,
    sources: &SourceMap,
    overrides: &[Override],
    query: &Query,
    hosts: &[HostId],
) -> Result<String, String> {
    let app = find_app(fleet, query.app)?;
    let mut names: Vec<String> = Vec::new();
    for &host in hosts {
        for variable in environment(fleet, sources, overrides, app, host) {
            if !names.contains(&variable.name) {
                names.push(variable.name);
            }
        }
    }
    let mut out = String::new();
    for name in &names {
        if !out.is_empty() {
            out.push('\n');
        }
        let key = format!("env.{name}");
        out.push_str(&explain(
            fleet,
            sources,
            overrides,
            &Query {
                key: &key,
                ..*query
            },
        )?);
    }
    Ok(out)
}

/// The variables of `app`'s environment on `host`, each with its layers.
/// Names only: sitec's own variables hold secrets by name, never by value.
fn environment(
    fleet: &Fleet,
    sources: &SourceMap,
    overrides: &[Override],
    app: AppId,
    host: HostId,
) -> Vec<Resolved> {
    let secrets = crate::secrets::Secrets::placeholders();
    let inputs = crate::context::Inputs {
        fleet,
        sources,
        secrets: &secrets,
        overrides,
        shared: crate::context::Shared::default(),
    };
    let sitec = crate::context::sitec_environment(&inputs, host, app);
    let index = settings::Index::new(fleet);
    settings::resolve_env(&index, fleet, sources, sitec, app, host)
}

/// One layer as printed.
#[derive(PartialEq)]
struct Row {
    layer: String,
    origin: String,
    value: String,
}

/// A setting's layers as printed (`variable`: an environment variable's).
fn rows(setting: Option<&Resolved>, variable: bool) -> Vec<Row> {
    setting.map_or_else(Vec::new, |s| {
        s.layers
            .iter()
            .map(|l| Row {
                layer: l.name.clone(),
                origin: l.origin.clone(),
                value: if variable {
                    settings::shown_env(&l.value)
                } else {
                    settings::shown_literal(&l.value)
                },
            })
            .collect()
    })
}

/// The app named `name`, or an error that suggests one.
pub fn find_app(fleet: &Fleet, name: &str) -> Result<AppId, String> {
    fleet.app_named(name).ok_or_else(|| {
        let names: Vec<&str> = fleet.apps.iter().map(|a| a.name.as_str()).collect();
        unknown("app", name, &names)
    })
}

/// The host named `name`, or an error that suggests one.
pub fn find_host(fleet: &Fleet, name: &str) -> Result<HostId, String> {
    fleet.host_named(name).ok_or_else(|| {
        let names: Vec<&str> = fleet.hosts.iter().map(|h| h.name.as_str()).collect();
        unknown("host", name, &names)
    })
}

/// The hosts to explain `app` on: `host` (which must run it), or every
/// runner it runs on.
pub fn hosts_of(fleet: &Fleet, app: AppId, host: Option<&str>) -> Result<Vec<HostId>, String> {
    let runners = &fleet.placement[app];
    let app_name = &fleet.apps[app].name;
    let runner_names: Vec<String> = runners
        .iter()
        .map(|h| fleet.hosts[*h].name.clone())
        .collect();
    match host {
        Some(name) => {
            let host = find_host(fleet, name)?;
            if runners.contains(&host) {
                Ok(vec![host])
            } else if runners.is_empty() {
                Err(format!("app `{app_name}` runs on no host"))
            } else {
                Err(format!(
                    "app `{app_name}` does not run on `{name}`; it runs on {}",
                    quoted(&runner_names)
                ))
            }
        }
        None if runners.is_empty() => Err(format!("app `{app_name}` runs on no host")),
        None => Ok(runners.clone()),
    }
}

fn unknown(kind: &str, name: &str, known: &[&str]) -> String {
    match crate::suggest::closest(name, known.iter().copied()) {
        Some(close) => format!("unknown {kind} `{name}`; did you mean `{close}`?"),
        None if known.is_empty() => format!("unknown {kind} `{name}`; the spec declares none"),
        None => format!(
            "unknown {kind} `{name}`; the spec declares {}",
            quoted(&known.iter().map(ToString::to_string).collect::<Vec<_>>())
        ),
    }
}

/// "`a`, `b` and `c`"
fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_lists_in_words() {
        assert_eq!(quoted(&[]), "");
        assert_eq!(quoted(&["a".into()]), "`a`");
        assert_eq!(
            quoted(&["a".into(), "b".into(), "c".into()]),
            "`a`, `b` and `c`"
        );
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        assert_eq!(
            unknown("app", "blgo", &["blog", "shop"]),
            "unknown app `blgo`; did you mean `blog`?"
        );
        assert_eq!(
            unknown("app", "zzzz", &["blog", "shop"]),
            "unknown app `zzzz`; the spec declares `blog` and `shop`"
        );
    }
}

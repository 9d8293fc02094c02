//! What the settings layers say, checked against where the apps run: a
//! layer for a host no app runs on, or for an app on a host it does not run
//! on, never applies (rule `unused_settings`, E263); a key set twice in one
//! layer, once in the app's own `settings` and once in `settings app A`, is
//! E103 with both places (which one wins would depend on file order).

use crate::diagnostic::Diagnostic;
use crate::model::{Fleet, Target};
use crate::source::Span;

/// Rule `unused_settings`: every layer that applies to nothing.
pub fn unused_settings(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for layer in &fleet.settings {
        let (host, app) = match layer.target {
            Target::Host(host) => (host, None),
            Target::AppOnHost(app, host) => (host, Some(app)),
            Target::Base | Target::App(_) => continue,
        };
        let host_name = &fleet.hosts[host].name;
        let diagnostic = match app {
            None if fleet.apps_on(host).next().is_none() => Diagnostic::error(
                "E263",
                format!("`settings host {host_name}` never applies: no app runs on `{host_name}`"),
            )
            .primary(layer.span, "applies to nothing")
            .help("settings are an app's; set them for a host that runs apps, or remove the block"),
            Some(app) if !fleet.placement[app].contains(&host) => {
                let name = &fleet.apps[app].name;
                let runs_on: Vec<&str> = (fleet.placement[app].iter())
                    .map(|h| fleet.hosts[*h].name.as_str())
                    .collect();
                Diagnostic::error(
                    "E263",
                    format!("`settings app {name} host {host_name}` never applies: `{name}` does not run on `{host_name}`"),
                )
                .primary(layer.span, "applies to nothing")
                .help(match runs_on.as_slice() {
                    [] => format!("`{name}` runs on no runner"),
                    hosts => format!("`{name}` runs on {}", hosts.join(", ")),
                })
            }
            _ => continue,
        };
        diagnostics.push(diagnostic);
    }
    diagnostics
}

/// E103: a key an app's layer sets in two places (its own `settings` and a
/// `settings app A`), the later one in file order as the error.
pub fn set_twice_in_a_layer(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for app in 0..fleet.apps.len() {
        let mut seen: Vec<(&str, Span)> = Vec::new();
        let layers = (fleet.settings.iter()).filter(|l| l.target == Target::App(app));
        let mut set: Vec<(&str, Span)> = layers
            .flat_map(|l| {
                l.values
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.span))
            })
            .collect();
        set.sort_by_key(|(_, span)| (span.file, span.start));
        for (key, span) in set {
            match seen.iter().find(|(k, _)| *k == key) {
                // The same block twice is resolve's to report.
                Some((_, first)) if !same_block(fleet, app, *first, span) => diagnostics.push(
                    Diagnostic::error(
                        "E103",
                        format!("`{key}` is set twice for app `{}`", fleet.apps[app].name),
                    )
                    .primary(span, "set again here")
                    .secondary(*first, "first set here")
                    .help("the app's own `settings` and `settings app` are one layer: keep one of them"),
                ),
                Some(_) => {}
                None => seen.push((key, span)),
            }
        }
    }
    diagnostics
}

/// Whether two values of an app's layer stand in the same block.
fn same_block(fleet: &Fleet, app: usize, a: Span, b: Span) -> bool {
    (fleet.settings.iter())
        .filter(|l| l.target == Target::App(app))
        .any(|l| {
            let holds = |s: Span| l.values.iter().any(|(_, v)| v.span == s);
            holds(a) && holds(b)
        })
}

//! Sharing rendered text between files ([`context::sharing`], open fields)
//! changes no file: every example and generated specs expand to the same
//! resources, diagnostics included, with it and with each file rendered
//! alone from its own context.

use super::*;
use crate::compile;
use crate::model::Fleet;
use crate::secrets::Secrets;
use crate::settings::Override;
use crate::source::SourceMap;

#[path = "../../benches/spec_gen.rs"]
mod spec_gen;

fn same_both_ways(what: &str, fleet: &Fleet, sources: &SourceMap, overrides: &[Override]) {
    let secrets = Secrets::placeholders();
    let templates = Templates::new().expect("templates");
    let run = |share| {
        let inputs = Inputs {
            fleet,
            sources,
            secrets: &secrets,
            overrides,
            shared: context::Shared::default(),
        };
        expand_sharing(&inputs, &templates, share)
    };
    let (shared, shared_diagnostics) = run(true);
    let (alone, alone_diagnostics) = run(false);
    assert_eq!(
        format!("{shared_diagnostics:?}"),
        format!("{alone_diagnostics:?}"),
        "{what}: diagnostics"
    );
    assert_eq!(shared.len(), alone.len(), "{what}: hosts");
    let mut files = 0;
    for (s, a) in shared.iter().zip(&alone) {
        assert_eq!(s.resources.len(), a.resources.len(), "{what}: resources");
        for (rs, ra) in s.resources.iter().zip(&a.resources) {
            assert_eq!(rs.kind, ra.kind, "{what}: {}", ra.id);
            files += usize::from(matches!(ra.kind, Kind::File { .. }));
        }
    }
    assert!(files > 0, "{what}: no files");
}

fn spec_both_ways(name: &str, text: &str, overrides: &[Override]) {
    let mut sources = SourceMap::new();
    let (done, diagnostics) =
        compile::with_fleet_text(&mut sources, name, text, |fleet, sources| {
            same_both_ways(name, fleet, sources, overrides);
        });
    assert!(done.is_some(), "{name}: {diagnostics:?}");
}

#[test]
fn every_example_renders_the_same_shared_or_alone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(root).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "site") {
            let mut sources = SourceMap::new();
            let what = path.display().to_string();
            let (done, diagnostics) = compile::with_fleet(&mut sources, &path, |fleet, sources| {
                same_both_ways(&what, fleet, sources, &[]);
            });
            assert!(done.is_some(), "{what}: {diagnostics:?}");
            seen += 1;
        }
    }
    assert!(seen > 0);
}

#[test]
fn generated_specs_render_the_same_shared_or_alone() {
    for (hosts, apps) in [(20, 200), (13, 31)] {
        spec_both_ways(
            &format!("{hosts}x{apps}"),
            &spec_gen::spec(hosts, apps),
            &[],
        );
    }
}

/// Two workers of one app: their units share nothing.
#[test]
fn workers_render_the_same_shared_or_alone() {
    let one = "  worker celery { command = \"celery -A app0 worker\" }\n";
    let two = format!("{one}  worker beat {{ command = \"celery -A app0 beat\"  once = true }}\n");
    let text = spec_gen::spec(20, 20);
    assert!(text.contains(one));
    spec_both_ways("workers", &text.replacen(one, &two, 1), &[]);
}

/// Local overrides: one for an app on one of its runners makes that
/// runner's settings its own; one for an app everywhere does not.
#[test]
fn overrides_render_the_same_shared_or_alone() {
    let mut sources = SourceMap::new();
    let text = spec_gen::spec(20, 40);
    let (done, diagnostics) =
        compile::with_fleet_text(&mut sources, "o", &text, |fleet, sources| {
            let value = |app: usize, host: Option<usize>| Override {
                app: fleet.apps[app].name.clone(),
                host: host.map(|h| fleet.hosts[h].name.clone()),
                name: "FEATURE".to_string(),
                python: "True".to_string(),
                origin: "o.local.toml:1".to_string(),
            };
            let overrides = [value(1, None), value(2, Some(fleet.placement[2][0]))];
            same_both_ways("overrides", fleet, sources, &overrides);
        });
    assert!(done.is_some(), "{diagnostics:?}");
}

/// E225 of a label without values comes from `lint` (checking the spec);
/// of one whose values make it relative, from expansion.
#[test]
fn a_role_path_that_is_not_absolute_is_an_error_at_its_label() {
    let e225 = |diagnostics: &[Diagnostic]| {
        diagnostics
            .iter()
            .filter(|d| d.code == "E225")
            .map(|d| (d.message.clone(), d.help.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let text = "use std/platform\nprovider colo { user = \"root\" }\nhost h1 { provider = colo  address = \"203.0.113.10\"  roles = [odd] }\nrole odd {\n  file \"etc/motd\" { content = \"hi\\n\" }\n  directory \"/srv/../etc\" { }\n  package \"etc\" { }\n}\n";
    let mut sources = SourceMap::new();
    let (_, diagnostics) = compile::with_fleet_text(&mut sources, "odd.site", text, |_, _| ());
    assert_eq!(
        e225(&diagnostics),
        [
            (
                "file `etc/motd` is not an absolute path".to_string(),
                "write it from the root: \"/etc/motd\"".to_string()
            ),
            (
                "directory `/srv/../etc` has a `..` segment".to_string(),
                "write the path it stands for, without `..`".to_string()
            ),
        ]
    );
    let text = "use std/platform\nprovider colo { user = \"root\" }\nhost h1 { provider = colo  address = \"203.0.113.10\"  roles = [balancer, runner, postgres, odd] }\nchecks { balancer_redundancy = off }\ndatabase main { engine = postgres  primary = h1 }\napp blog { source = \"apps/blog\"  wsgi = \"blog.wsgi\"  domains = [\"b.example.com\"]  databases { default = main } }\nrole odd { each app { directory \"{app.source}\" { } } }\n";
    let mut sources = SourceMap::new();
    let (done, diagnostics) =
        compile::with_fleet_text(&mut sources, "odd.site", text, |fleet, sources| {
            let inputs = Inputs {
                fleet,
                sources,
                secrets: &Secrets::placeholders(),
                overrides: &[],
                shared: context::Shared::default(),
            };
            e225(&expand(&inputs, &Templates::new().expect("templates")).1)
        });
    assert_eq!(
        done.unwrap_or_else(|| panic!("{diagnostics:?}")),
        [(
            "directory `apps/blog` is not an absolute path".to_string(),
            "write it from the root: \"/apps/blog\"".to_string()
        )]
    );
}

/// `VALUES` (what the lint accepts) and `Expander::variable` (what
/// expansion fills in) name the same values: each of `VALUES` has one in a
/// scope that holds everything, and a name outside it has none.
#[test]
fn the_lint_and_expansion_know_the_same_values() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/epio.site");
    let text = std::fs::read_to_string(path).expect("examples/epio.site");
    // The blog's media store, a volume on its two runners.
    assert!(
        text.contains("media \"/media/\" = \"uploads\""),
        "epio's blog changed"
    );
    let mut sources = SourceMap::new();
    let (done, diagnostics) =
        compile::with_fleet_text(&mut sources, "epio.site", &text, |fleet, sources| {
            let db1 = fleet.host_named("db1").expect("db1");
            let blog = fleet
                .apps
                .iter()
                .position(|a| a.name == "blog")
                .expect("blog");
            let scope = Scope {
                app: Some(blog),
                worker: Some(0),
                cluster: clusters::clusters_on(fleet, db1).into_iter().next(),
                redis: clusters::redis_on(fleet, db1).into_iter().next(),
                backup: Some(0),
                media: Some(0),
            };
            let secrets = Secrets::placeholders();
            let templates = Templates::new().expect("templates");
            let inputs = Inputs {
                fleet,
                sources,
                secrets: &secrets,
                overrides: &[],
                shared: context::Shared::default(),
            };
            let mut rendered = Rendered::new(true);
            let mut diagnostics = Vec::new();
            let expander = Expander {
                inputs: &inputs,
                templates: &templates,
                host: db1,
                out: Vec::new(),
                index: std::collections::HashMap::new(),
                rendered: &mut rendered,
                diagnostics: &mut diagnostics,
            };
            for (name, _) in VALUES {
                assert!(expander.variable(name, &scope).is_some(), "{name}");
                let listed = LISTS.iter().any(|(list, _)| *list == name);
                assert_eq!(expander.list(name, &scope).is_some(), listed, "{name}");
            }
            for name in ["app.name", "hosts", "cluster.name", ""] {
                assert!(expander.variable(name, &scope).is_none(), "{name}");
            }
        });
    assert!(done.is_some(), "{diagnostics:?}");
}

/// `values = true`: a role's literal content filled in per host (the apply
/// benchmark's per-host pages); without it the braces are written as they are.
#[test]
fn content_with_values_is_filled_per_host_and_literal_otherwise() {
    let spec = r#"use std/platform
provider p { kind = local }
host web1 { provider = p  roles = [motd] }
host web2 { provider = p  roles = [motd] }
role motd {
  file "/etc/motd" {
    values = true
    content = """
      This is {host}. {{kept}}
      """
  }
  file "/etc/raw.json" { content = "{\"host\": \"{host}\"}" }
}
"#;
    let mut sources = SourceMap::new();
    let rendered = crate::compile::render_text(
        &mut sources,
        "t.site",
        spec,
        &crate::compile::SecretSource::Placeholders,
        &[],
    );
    assert_eq!(rendered.errors(), 0, "{:?}", rendered.diagnostics);
    for host in &rendered.hosts {
        let content = |path: &str| {
            (host.resources.iter())
                .find_map(|r| match &r.kind {
                    crate::resources::Kind::File {
                        path: p, content, ..
                    } if p == path => Some(content.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        assert_eq!(
            content("/etc/motd"),
            format!("This is {}. {{kept}}\n", host.name)
        );
        assert_eq!(content("/etc/raw.json"), "{\"host\": \"{host}\"}");
    }
}

/// A list value (`{app.workers}`) in a list field makes one string per
/// item, none for an app without workers, one per pair for two lists; in
/// a field of one string its items are joined by spaces.
#[test]
fn a_list_value_makes_a_string_per_item_in_a_list_field() {
    let spec = r#"use std/platform
provider colo { user = "root" }
host h1 { provider = colo  address = "203.0.113.10"  roles = [balancer, runner, postgres, odd] }
checks { balancer_redundancy = off }
database main { engine = postgres  primary = h1 }
app blog {
  source = "apps/blog"
  wsgi = "blog.wsgi"
  domains = ["b.example.com"]
  databases { default = main }
  worker celery { command = "celery -A blog worker" }
  worker beat { command = "celery -A blog beat" }
}
app shop { source = "apps/shop"  wsgi = "shop.wsgi"  domains = ["s.example.com"]  databases { default = main } }
role odd {
  each app {
    command "tell-{app}" { run = "echo {app.workers}." }
    file "/etc/odd/{app}" {
      content = "x"
      notify = ["service:odd-{app}-{app.workers}", "service:odd-{app}"]
    }
    virtualenv "/srv/odd/{app}" { packages = ["{app.workers}-{app.workers}"] }
    service "odd-{app}" {}
    each worker { service "odd-{app}-{worker}" {} }
  }
}
"#;
    let mut sources = SourceMap::new();
    let rendered = compile::render_text(
        &mut sources,
        "t.site",
        spec,
        &compile::SecretSource::Placeholders,
        &[],
    );
    assert_eq!(rendered.errors(), 0, "{:?}", rendered.diagnostics);
    let resource = |id: &str| {
        (rendered.hosts[0].resources.iter())
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    assert_eq!(
        resource("file:/etc/odd/blog").notifies,
        [
            "service:odd-blog-celery",
            "service:odd-blog-beat",
            "service:odd-blog"
        ]
    );
    assert_eq!(
        resource("file:/etc/odd/shop").notifies,
        ["service:odd-shop"]
    );
    let run = |id: &str| match &resource(id).kind {
        Kind::Command { run, .. } => run.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(run("command:tell-blog"), "echo celery beat.");
    assert_eq!(run("command:tell-shop"), "echo .");
    let packages = |id: &str| match &resource(id).kind {
        Kind::Virtualenv { packages, .. } => packages.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        packages("virtualenv:/srv/odd/blog"),
        ["celery-celery", "celery-beat", "beat-celery", "beat-beat"]
    );
    assert!(packages("virtualenv:/srv/odd/shop").is_empty());
    // The runner's own: what its processes read at start restarts each worker.
    for id in [
        "file:/etc/sitec/apps/blog/environment",
        "file:/etc/sitec/apps/blog/python/sitec_settings.py",
        "tree:/srv/sitec/apps/blog/current",
        "file:/etc/sitec/fleet-ca.pem",
    ] {
        let notifies = &resource(id).notifies;
        for worker in ["celery", "beat"] {
            let wanted = format!("service:sitec-app-blog-worker-{worker}");
            assert!(notifies.contains(&wanted), "{id}: {notifies:?}");
        }
    }
}

/// Every list value is a value, and only a list value has items.
#[test]
fn the_list_values_are_values() {
    for (list, item) in LISTS {
        assert!(VALUES.iter().any(|(value, _)| *value == list), "{list}");
        if let Some(item) = item {
            assert!(VALUES.iter().any(|(value, _)| *value == item), "{item}");
        }
    }
}

/// A `once` worker (a scheduler) runs on the app's leader only; the
/// others on every runner. The agents' unit lists and `{app.workers}`
/// agree with what each host runs.
#[test]
fn a_once_worker_runs_on_the_leader_alone() {
    let spec = r#"use std/platform
provider colo { user = "root" }
host h1 { provider = colo  address = "203.0.113.10"  roles = [balancer, runner, postgres] }
host h2 { provider = colo  address = "203.0.113.11"  roles = [balancer, runner] }
checks { database_redundancy = off }
database main { engine = postgres  primary = h1 }
app blog {
  source = "apps/blog"
  wsgi = "blog.wsgi"
  domains = ["b.example.com"]
  replicas = 2
  databases { default = main }
  worker celery { command = "celery -A blog worker" }
  worker beat { command = "celery -A blog beat"  once = true }
}
"#;
    let mut sources = SourceMap::new();
    let rendered = compile::render_text(
        &mut sources,
        "t.site",
        spec,
        &compile::SecretSource::Placeholders,
        &[],
    );
    assert_eq!(rendered.errors(), 0, "{:?}", rendered.diagnostics);
    // Each host's workers, and whether it runs the migrations (the leader).
    let mut seen: Vec<(bool, Vec<String>)> = (rendered.hosts.iter())
        .map(|h| {
            let mut workers: Vec<String> = (h.resources.iter())
                .filter_map(|r| r.id.strip_prefix("service:sitec-app-blog-worker-"))
                .map(String::from)
                .collect();
            workers.sort();
            let leader = (h.resources.iter()).any(|r| {
                matches!(
                    &r.kind,
                    Kind::Tree {
                        migrate: Some(_),
                        ..
                    }
                )
            });
            (leader, workers)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (false, vec!["celery".to_string()]),
            (true, vec!["beat".to_string(), "celery".to_string()])
        ]
    );
}

use super::context::{self, Scopes, SettingNames, Shape};
use super::fields::{self, What};
use crate::compile::{self, SecretSource};
use crate::resources::Kind;
use crate::source::SourceMap;
use handlebars::template::Template;
use std::path::Path;

/// A spec whose role, in a module of its own under `roles/`, names
/// templates beside that module.
const SPEC: &str = r#"use std/platform
use ./roles/motd.site
provider p { kind = local }
host web1 { provider = p  roles = [balancer, runner, postgres, motd] }
host web2 { provider = p  roles = [runner, motd] }
checks {
  balancer_redundancy = off
  database_redundancy = off
}
database main { engine = postgres  primary = web1 }
app blog {
  source = "apps/blog"
  wsgi = "blog.wsgi:application"
  domains = ["blog.example.com"]
  replicas = 2
  databases { default = main }
  settings {
    TITLE = "Blog"
    SECRET_KEY = secret("blog.key")
  }
}
"#;

const ROLE: &str = r#"role motd {
  file "/etc/motd" { template = "./motd.hbs" }
  each app {
    file "/etc/about-{app}" { template = "./about.hbs"  mode = "0600" }
  }
}
"#;

fn spec_in(dir: &Path, motd: &str, about: &str) -> std::path::PathBuf {
    spec_with(dir, ROLE, &[("motd.hbs", motd), ("about.hbs", about)])
}

/// [`SPEC`] with `role` (a role `motd`) as `roles/motd.site` and
/// `templates` beside it.
fn spec_with(dir: &Path, role: &str, templates: &[(&str, &str)]) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("roles")).expect("roles/");
    std::fs::write(dir.join("main.site"), SPEC).expect("spec");
    std::fs::write(dir.join("roles/motd.site"), role).expect("role");
    for (name, text) in templates {
        std::fs::write(dir.join("roles").join(name), text).expect("template");
    }
    dir.join("main.site")
}

/// Each diagnostic's code, line of `roles/motd.site` (0 elsewhere) and help.
fn found(sources: &SourceMap, report: &compile::Report) -> Vec<(&'static str, usize, String)> {
    (report.diagnostics.iter())
        .map(|d| {
            let at = d.primary_span().map(|s| sources.describe(s));
            let line = (at.as_deref())
                .and_then(|at| at.split_once("roles/motd.site:"))
                .and_then(|(_, rest)| rest.split(':').next()?.parse().ok());
            (
                d.code,
                line.unwrap_or(0),
                d.help.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The codes and lines of [`found`].
fn codes(found: &[(&'static str, usize, String)]) -> Vec<(&'static str, usize)> {
    found.iter().map(|(code, line, _)| (*code, *line)).collect()
}

/// A daemon of your own: its unit and timer from templates beside the role,
/// its config from one that asks for the secrets.
const DAEMON: &str = r#"role motd {
  service mailerd { unit = "./mailerd.service.hbs" }
  service "digest.timer" { unit = "./digest.timer.hbs" }
  each app {
    file "/etc/mailerd/{app}.env" {
      template = "./mailerd.env.hbs"
      secrets = true
      group = "app-{app}"
    }
  }
}
"#;

const MAILERD: &str = "[Service]\nExecStart=/usr/sbin/mailerd --name {{host.name}}\n";
const DIGEST: &str = "[Timer]\nOnCalendar=daily\n";
const MAILERD_ENV: &str = "KEY={{app.settings.SECRET_KEY}}\nTITLE={{app.settings.TITLE}}\n";

/// `spec`, which checks and renders (placeholder secrets) clean.
fn checked_and_rendered(spec: &Path) -> compile::Rendered {
    let mut sources = SourceMap::new();
    let report = compile::check(&mut sources, spec);
    assert_eq!(report.errors(), 0, "{:?}", report.diagnostics);
    let rendered = compile::render(&mut sources, spec, &SecretSource::Placeholders, &[]);
    assert_eq!(rendered.errors(), 0, "{:?}", rendered.diagnostics);
    rendered
}

/// [`DAEMON`] with its three templates.
fn daemon_spec(dir: &Path) -> std::path::PathBuf {
    let templates = [
        ("mailerd.service.hbs", MAILERD),
        ("digest.timer.hbs", DIGEST),
        ("mailerd.env.hbs", MAILERD_ENV),
    ];
    spec_with(dir, DAEMON, &templates)
}

#[test]
fn a_unit_of_your_own_is_written_as_sitecs_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = daemon_spec(dir.path());
    let rendered = checked_and_rendered(&spec);
    for host in ["web1", "web2"] {
        let unit = file_of(&rendered, host, "/etc/systemd/system/mailerd.service");
        let Kind::File {
            content,
            template,
            mode,
            secret,
            ..
        } = unit
        else {
            unreachable!()
        };
        assert_eq!(
            content,
            &format!("[Service]\nExecStart=/usr/sbin/mailerd --name {host}\n")
        );
        assert_eq!(template.as_deref(), Some("roles/mailerd.service.hbs"));
        assert_eq!((mode.as_str(), *secret), ("0644", false));
        let timer = file_of(&rendered, host, "/etc/systemd/system/digest.timer");
        assert!(
            matches!(timer, Kind::File { content, .. } if content == "[Timer]\nOnCalendar=daily\n")
        );
        // The unit restarts its service when it changes, as sitec's do.
        let h = rendered
            .hosts
            .iter()
            .find(|h| h.name == host)
            .expect("host");
        let resource = (h.resources.iter())
            .find(|r| r.id == "file:/etc/systemd/system/mailerd.service")
            .expect("the unit");
        assert_eq!(resource.notifies, ["service:mailerd"]);
    }
}

#[test]
fn a_unit_of_your_own_is_checked_at_its_unit_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let templates = [
        ("mailerd.service.hbs", "{{host.nmae}}"),
        ("mailerd.env.hbs", MAILERD_ENV),
    ];
    // No digest.timer.hbs.
    let spec = spec_with(dir.path(), DAEMON, &templates);
    let mut sources = SourceMap::new();
    let report = compile::check(&mut sources, &spec);
    let found = found(&sources, &report);
    assert_eq!(codes(&found), [("E228", 2), ("E226", 3)], "{found:?}");
    assert_eq!(found[0].2, "did you mean `host.name`?");
    // A unit never gets a secret: the help says where one goes.
    std::fs::write(
        dir.path().join("roles/motd.site"),
        "role motd {\n  each app {\n    service \"mailerd-{app}\" { unit = \"./mailerd.service.hbs\" }\n  }\n}\n",
    )
    .expect("w");
    std::fs::write(
        dir.path().join("roles/mailerd.service.hbs"),
        "[Service]\nEnvironment=KEY={{app.settings.SECRET_KEY}}\n",
    )
    .expect("w");
    let mut sources = SourceMap::new();
    let report = compile::check(&mut sources, &spec);
    let found = self::found(&sources, &report);
    assert!(!found.is_empty(), "{found:?}");
    for (code, _, help) in &found {
        assert_eq!(*code, "E228", "{found:?}");
        assert!(
            help.contains("a unit file is readable by every user"),
            "{help}"
        );
    }
}

#[test]
fn a_file_that_asks_for_the_secrets_gets_them_private_and_never_shown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = daemon_spec(dir.path());
    let mut sources = SourceMap::new();
    // The secrets file beside the spec, made with a generated value.
    let rendered = compile::render(&mut sources, &spec, &SecretSource::File, &[]);
    assert_eq!(rendered.errors(), 0, "{:?}", rendered.diagnostics);
    let secrets = std::fs::read_to_string(dir.path().join("main.secrets.toml")).expect("secrets");
    let value = (secrets.lines())
        .find_map(|l| l.strip_prefix("\"blog.key\" = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("blog.key's value");
    assert!(value.len() >= 16, "{value}");
    let path = "/etc/mailerd/blog.env";
    let Kind::File {
        content,
        mode,
        secret,
        ..
    } = file_of(&rendered, "web1", path)
    else {
        unreachable!()
    };
    assert_eq!(content, &format!("KEY={value}\nTITLE=Blog\n"));
    // Written 0644 by default: no other user may read it.
    assert_eq!((mode.as_str(), *secret), ("0640", true));
    // A plan of a host whose file holds the value before a rotation: neither
    // value shows, in its text or its JSON.
    let old_value = "Zq0ldS3cretValueBeforeRotation";
    let host = (rendered.hosts.iter())
        .find(|h| h.name == "web1")
        .expect("web1");
    let resource = (host.resources.iter())
        .find(|r| r.id == format!("file:{path}"))
        .expect("the file");
    let item = crate::host::wire::Item {
        id: resource.id.clone(),
        kind: resource.kind.clone(),
        requires: Vec::new(),
        notifies: Vec::new(),
        content: Some(content.clone()),
        blob: None,
        pinned: None,
        venv_digest: None,
        digest: "d".into(),
    };
    let desired = crate::plan::desired::HostDesired {
        name: host.name.clone(),
        address: host.address.clone(),
        roles: host.roles.clone(),
        reach: crate::plan::desired::Reach {
            provider: host.provider.name.clone(),
            local: true,
            user: "root".into(),
            port: 22,
            known_hosts: None,
            identity: None,
        },
        desired: crate::host::wire::Desired {
            generation: "g".into(),
            spec: "main.site".into(),
            items: vec![item],
            ..crate::host::wire::Desired::nothing(&host.name)
        },
        first: Vec::new(),
    };
    let facts = crate::host::wire::Facts {
        host: host.name.clone(),
        assessments: vec![crate::host::wire::Assessment {
            id: resource.id.clone(),
            status: crate::host::wire::Status::Change,
            differences: vec!["content".into()],
            old_content: Some(content.replace(value, old_value)),
            drifted: false,
        }],
        removals: Vec::new(),
        missing_blobs: Vec::new(),
        applied_generation: None,
        owed: Vec::new(),
        binary_switch: false,
        fingerprint: "f".into(),
    };
    let plan = crate::plan::Plan::new(
        "main.site",
        &[desired],
        &[Some(facts)],
        Vec::new(),
        &|_, _| None,
        &rendered.redactor,
    );
    let shown = format!(
        "{}\n{}",
        plan.human(),
        serde_json::to_string(&plan).expect("json")
    );
    assert!(shown.contains(path), "{shown}");
    assert!(shown.contains("KEY=<secret blog.key>"), "{shown}");
    for hidden in [value, old_value] {
        assert!(!shown.contains(hidden), "{shown}");
    }
}

#[test]
fn secrets_are_asked_for_where_a_template_of_your_own_reads_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let role = r#"role motd {
  file "/etc/motd" { content = "hi"  secrets = true }
  each app {
    file "/etc/about-{app}" { template = "./about.hbs" }
  }
}
"#;
    let spec = spec_with(dir.path(), role, &[("about.hbs", MAILERD_ENV)]);
    let mut sources = SourceMap::new();
    let report = compile::check(&mut sources, &spec);
    let found = found(&sources, &report);
    assert_eq!(codes(&found), [("E234", 2), ("E228", 4)], "{found:?}");
    assert!(
        found[1].2.contains("write `secrets = true` in this `file`"),
        "{found:?}"
    );
    // No value in any message.
    assert!(!(report.diagnostics.iter()).any(|d| format!("{d:?}").contains("PLACEHOLDER")));
}

fn file_of<'r>(rendered: &'r compile::Rendered, host: &str, path: &str) -> &'r Kind {
    let host = (rendered.hosts.iter())
        .find(|h| h.name == host)
        .expect("host");
    (host.resources.iter())
        .map(|r| &r.kind)
        .find(|k| matches!(k, Kind::File { path: p, .. } if p == path))
        .expect("file")
}

#[test]
fn each_host_renders_the_template_with_its_own_context_and_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = spec_in(
        dir.path(),
        "{{host.name}} of {{#each fleet.hosts}}{{name}} {{/each}}\n",
        "{{app.name}} on {{#each app.runners}}{{this}},{{/each}} {{#each app.settings}}{{@key}}={{this}};{{/each}}\n",
    );
    let rendered = checked_and_rendered(&spec);
    for host in ["web1", "web2"] {
        let Kind::File {
            content, template, ..
        } = file_of(&rendered, host, "/etc/motd")
        else {
            unreachable!()
        };
        assert_eq!(content, &format!("{host} of web1 web2 \n"));
        // Named from the root spec's folder, whatever the working folder.
        assert_eq!(template.as_deref(), Some("roles/motd.hbs"));
        let Kind::File {
            content,
            mode,
            secret,
            ..
        } = file_of(&rendered, host, "/etc/about-blog")
        else {
            unreachable!()
        };
        // The secret setting is left out: neither its name nor its value.
        assert_eq!(content, "blog on web1,web2, TITLE=Blog;\n");
        assert_eq!((mode.as_str(), *secret), ("0600", false));
    }
}

#[test]
fn check_finds_what_rendering_would_fail_on_at_the_template_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = spec_in(
        dir.path(),
        "{{#if host.name}}{{host.nmae}}{{/if}}\n",
        "{{app.settings.SECRET_KEY}}",
    );
    let mut sources = SourceMap::new();
    let report = compile::check(&mut sources, &spec);
    let found = found(&sources, &report);
    assert_eq!(codes(&found), [("E228", 2), ("E228", 4)], "{found:?}");
    assert_eq!(found[0].2, "did you mean `host.name`?");
    assert!(found[1].2.contains("`SECRET_KEY` is a secret"), "{found:?}");
    std::fs::remove_file(dir.path().join("roles/motd.hbs")).expect("rm");
    std::fs::write(dir.path().join("roles/about.hbs"), "{{#each app.domains}}").expect("w");
    let report = compile::check(&mut SourceMap::new(), &spec);
    let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E226", "E227"]);
    // A folder, or a device, is no template (and is never read).
    std::fs::create_dir(dir.path().join("roles/motd.hbs")).expect("mkdir");
    std::fs::write(dir.path().join("roles/about.hbs"), "{{app.name}}").expect("w");
    let report = compile::check(&mut SourceMap::new(), &spec);
    let found: Vec<(&str, &str)> = (report.diagnostics.iter())
        .map(|d| (d.code, d.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [(
            "E226",
            "can't read the template `./motd.hbs`: it is not a file"
        )]
    );
}

/// An editor's buffer (`sitec lsp`) is checked with the templates beside
/// the file it stands for, as `sitec check` checks the saved file.
#[test]
fn an_editors_buffer_sees_the_templates_beside_its_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = spec_in(dir.path(), "{{host.name}}", "{{app.nmae}}");
    let mut sources = SourceMap::new();
    let saved = compile::check(&mut sources, &spec);
    let mut sources = SourceMap::new();
    let buffer = compile::check_buffer(&mut sources, &spec, SPEC);
    for report in [saved, buffer] {
        let found: Vec<(&str, Option<String>)> = (report.diagnostics.iter())
            .map(|d| (d.code, d.help.clone()))
            .collect();
        assert_eq!(
            found,
            [("E228", Some("did you mean `app.name`?".to_string()))]
        );
    }
}

fn unknown(text: &str, shape: &Shape) -> Vec<(String, What)> {
    let template = Template::compile(text).expect("parses");
    (fields::unknown(&template, shape).into_iter())
        .map(|u| (u.path, u.what))
        .collect()
}

fn app_shape() -> Shape {
    let names = SettingNames {
        plain: vec!["DEBUG".into()],
        secret: vec![],
    };
    context::shape(&Scopes::of(&["app"]), &names, false)
}

#[test]
fn every_way_a_template_names_a_field_is_followed() {
    let shape = app_shape();
    let clean = [
        "{{host.name}} {{this.host.name}} {{./host.name}} {{@root.host.roles.[0]}}",
        "{{#each fleet.hosts}}{{name}} {{../host.name}} {{@index}} {{@root.app.name}}{{/each}}",
        "{{#each fleet.apps as |a i|}}{{a.name}} {{i}}{{#each a.domains}}{{this}}{{/each}}{{/each}}",
        "{{#with app}}{{name}} {{settings.DEBUG}} {{settings.DEBUG.anything}}{{/with}}",
        "{{#if (eq host.name \"x\")}}{{else}}{{lookup app.settings \"DEBUG\"}}{{/if}}",
        "{{#each app.settings}}{{@key}}={{this}}{{/each}}{{len fleet.hosts}}{{!-- {{nothing}} --}}",
    ];
    for text in clean {
        assert_eq!(unknown(text, &shape), [], "{text}");
    }
    let field = |at: &str, missing: &str| (at.to_string(), missing.to_string());
    let found: Vec<_> = unknown(
        "{{#each fleet.hosts}}{{adress}}{{/each}}{{app.settings.NOPE}}{{cluster.port}}{{@index}}",
        &shape,
    )
    .into_iter()
    .map(|(_, what)| match what {
        What::Field { at, missing, .. } => field(&at, &missing),
        other => panic!("{other:?}"),
    })
    .collect();
    assert_eq!(
        found,
        [
            field("fleet.hosts", "adress"),
            field("app.settings", "NOPE"),
            field("", "cluster"),
            field("", "@index"),
        ]
    );
    let kinds: Vec<What> = unknown(
        "{{host.name.first}}{{#each host.name}}{{/each}}{{upper host.name}}{{> other}}",
        &shape,
    )
    .into_iter()
    .map(|(_, what)| what)
    .collect();
    assert!(matches!(kinds[0], What::NotObject { .. }), "{kinds:?}");
    assert!(matches!(kinds[1], What::NotList { .. }), "{kinds:?}");
    assert_eq!(kinds[2], What::Helper("upper".into()));
    assert_eq!(kinds[3], What::Partial);
}

/// Whether `value` has exactly the fields `shape` says, at every level
/// (a setting's value is `Any`).
fn fits(value: &serde_json::Value, shape: &Shape) -> Result<(), String> {
    use serde_json::Value;
    match (shape, value) {
        (Shape::Any, _) => Ok(()),
        (Shape::Value, Value::String(_) | Value::Number(_) | Value::Bool(_)) => Ok(()),
        (Shape::List(item), Value::Array(items)) => items.iter().try_for_each(|i| fits(i, item)),
        (Shape::Object(fields), Value::Object(map)) => {
            let names: Vec<&String> = fields.iter().map(|(n, _)| n).collect();
            let keys: Vec<&String> = map.keys().collect();
            let mut sorted = names.clone();
            sorted.sort();
            if sorted != keys {
                return Err(format!("fields {names:?}, context {keys:?}"));
            }
            fields.iter().try_for_each(|(n, s)| fits(&map[n], s))
        }
        _ => Err(format!("{value} is not {shape:?}")),
    }
}

/// The documented shape is what the builder builds, in every scope.
#[test]
fn the_shape_is_what_the_context_holds() {
    let checked = crate::context::with_example("epio.site", |inputs| {
        let fleet = inputs.fleet;
        let names = SettingNames::of(fleet);
        let mut checked = 0;
        for host in 0..fleet.hosts.len() {
            let mut scopes = vec![crate::context::Scope::default()];
            for app in fleet.apps_on(host) {
                for worker in 0..fleet.apps[app].workers.len() {
                    scopes.push(crate::context::Scope {
                        app: Some(app),
                        worker: Some(worker),
                        ..Default::default()
                    });
                }
            }
            for cluster in crate::model::clusters::clusters_on(fleet, host) {
                scopes.push(crate::context::Scope {
                    cluster: Some(cluster),
                    ..Default::default()
                });
            }
            for redis in crate::model::clusters::redis_on(fleet, host) {
                scopes.push(crate::context::Scope {
                    redis: Some(redis),
                    backup: (!fleet.backups.is_empty()).then_some(0),
                    ..Default::default()
                });
            }
            for (scope, secrets) in scopes.iter().flat_map(|s| [(s, false), (s, true)]) {
                let built = context::build(inputs, host, scope, &names, secrets);
                let words: Vec<&str> = [
                    (scope.app.is_some(), "app"),
                    (scope.worker.is_some(), "worker"),
                    (scope.cluster.is_some(), "cluster"),
                    (scope.redis.is_some(), "redis"),
                    (scope.backup.is_some(), "backup"),
                ]
                .into_iter()
                .filter_map(|(on, w)| on.then_some(w))
                .collect();
                let shape = context::shape(&Scopes::of(&words), &names, secrets);
                assert_eq!(fits(&built, &shape), Ok(()), "{words:?}, secrets {secrets}");
                checked += 1;
            }
        }
        checked
    });
    assert!(checked > 10, "{checked}");
}

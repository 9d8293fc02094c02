//! `sitec explain`, `sitec set` and `sitec graph --bus`, run for real: each
//! test writes a spec into a temporary folder, runs the binary there, and
//! compares exact output.

mod common;
use common::cli::Test;

const SPEC: &str = r#"use std/platform

provider colo { user = "root" }
provider ec2 { user = "admin" }

host lb1 { provider = colo  address = "10.0.0.1"  roles = [balancer, logs] }
host lb2 { provider = ec2  address = "10.0.0.2"  roles = [balancer] }
host run1 { provider = colo  address = "10.0.0.3"  roles = [runner] }
host run2 { provider = ec2  address = "10.0.0.4"  roles = [runner] }

settings base {
  DEBUG = false
  SITE_TITLE = "Fleet default"
}

settings host run2 { SITE_TITLE = "Second runner" }

app blog {
  source = "apps/blog"
  wsgi = "blog.wsgi:application"
  domains = ["blog.example.com"]
  replicas = 2
  settings {
    SITE_TITLE = "The blog"
    SECRET_KEY = secret("blog.secret_key")
  }
}
"#;

fn spec() -> Test {
    Test::new().file("fleet.site", SPEC)
}

#[test]
fn explain_shows_every_layer_with_its_line_and_the_winner() {
    let out = spec()
        .args(&[
            "explain",
            "fleet.site",
            "blog",
            "SITE_TITLE",
            "--host",
            "run1",
        ])
        .run();
    assert_eq!((out.status, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert_eq!(
        out.stdout,
        "SITE_TITLE for app blog on run1:\n\
         \x20 settings base       fleet.site:13   \"Fleet default\"\n\
         \x20 app blog settings   fleet.site:24   \"The blog\"   <- wins\n\
         \x20 value: \"The blog\"\n"
    );
}

#[test]
fn explain_without_host_groups_runners_that_agree() {
    let out = spec()
        .args(&["explain", "fleet.site", "blog", "DEBUG"])
        .run();
    assert_eq!(
        out.stdout,
        "DEBUG for app blog on run1, run2:\n\
         \x20 settings base   fleet.site:12   False   <- wins\n\
         \x20 value: False\n"
    );
    let out = spec()
        .args(&["explain", "fleet.site", "blog", "SITE_TITLE"])
        .run();
    assert_eq!(
        out.stdout,
        "SITE_TITLE for app blog on run1:\n\
         \x20 settings base       fleet.site:13   \"Fleet default\"\n\
         \x20 app blog settings   fleet.site:24   \"The blog\"   <- wins\n\
         \x20 value: \"The blog\"\n\
         \n\
         SITE_TITLE for app blog on run2:\n\
         \x20 settings base        fleet.site:13   \"Fleet default\"\n\
         \x20 settings host run2   fleet.site:16   \"Second runner\"\n\
         \x20 app blog settings    fleet.site:24   \"The blog\"   <- wins\n\
         \x20 value: \"The blog\"\n"
    );
}

#[test]
fn explain_never_shows_a_secret_value() {
    let out = spec()
        .args(&["explain", "fleet.site", "blog", "SECRET_KEY"])
        .run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("value: secret(\"blog.secret_key\")\n"),
        "{}",
        out.stdout
    );
    // No secrets file was read or made.
    assert!(!out.dir.path().join("fleet.secrets.toml").exists());
}

#[test]
fn explain_suggests_names_for_typos() {
    for (args, message) in [
        (
            ["blgo", "DEBUG", "--host", "run1"],
            "error: unknown app `blgo`; did you mean `blog`?\n",
        ),
        (
            ["blog", "DEBGU", "--host", "run1"],
            "error: app `blog` has no setting `DEBGU`; did you mean `DEBUG`?\n",
        ),
        (
            ["blog", "DEBUG", "--host", "rnu1"],
            "error: unknown host `rnu1`; did you mean `run1`?\n",
        ),
        (
            ["blog", "DEBUG", "--host", "lb1"],
            "error: app `blog` does not run on `lb1`; it runs on `run1` and `run2`\n",
        ),
    ] {
        let mut all = vec!["explain", "fleet.site"];
        all.extend(args);
        let out = spec().args(&all).run();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (1, "", message)
        );
    }
}

#[test]
fn set_creates_the_override_file_and_explain_shows_it_winning() {
    let out = spec()
        .args(&[
            "set",
            "fleet.site",
            "blog",
            "SITE_TITLE=Hello there",
            "--host",
            "run1",
        ])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            "fleet.local.toml: [blog.hosts.run1] SITE_TITLE = \"Hello there\" (new)\n",
            ""
        )
    );
    let file = out.read("fleet.local.toml");
    assert!(
        file.starts_with("# Local overrides for fleet.site"),
        "{file}"
    );
    assert!(
        file.ends_with("\n[blog.hosts.run1]\nSITE_TITLE = \"Hello there\"\n"),
        "{file}"
    );
    let lines = file.lines().count();
    let out = out
        .again()
        .args(&[
            "explain",
            "fleet.site",
            "blog",
            "SITE_TITLE",
            "--host",
            "run1",
        ])
        .run();
    assert_eq!(
        out.stdout,
        format!(
            "SITE_TITLE for app blog on run1:\n\
             \x20 settings base                     fleet.site:13        \"Fleet default\"\n\
             \x20 app blog settings                 fleet.site:24        \"The blog\"\n\
             \x20 local override for blog on run1   fleet.local.toml:{lines}   \"Hello there\"   <- wins\n\
             \x20 value: \"Hello there\"\n"
        )
    );
}

#[test]
fn set_keeps_comments_and_blank_lines_and_says_what_changed() {
    let overrides = "# Mine: hands off.\n\n[blog]  # the blog\n# Off in production.\nDEBUG = false  # really\n\nSITE_TITLE = \"x\"\n";
    let out = spec()
        .file("fleet.local.toml", overrides)
        .args(&["set", "fleet.site", "blog", "DEBUG=true"])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (0, "fleet.local.toml: [blog] DEBUG = true (was false)\n", "")
    );
    assert_eq!(
        out.read("fleet.local.toml"),
        overrides.replace("DEBUG = false", "DEBUG = true")
    );
    let out = out
        .again()
        .args(&["set", "fleet.site", "blog", "DEBUG", "--unset"])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "fleet.local.toml: [blog] DEBUG removed (was true)\n")
    );
    assert!(!out.read("fleet.local.toml").contains("DEBUG ="));
}

#[test]
fn set_checks_app_host_key_and_value() {
    for (args, message) in [
        (
            vec!["blgo", "DEBUG=true"],
            "error: unknown app `blgo`; did you mean `blog`?\n",
        ),
        (
            vec!["blog", "DEBUG=true", "--host", "rn1"],
            "error: unknown host `rn1`; did you mean `run1`?\n",
        ),
        (
            vec!["blog", "NOT-A-NAME=1"],
            "error: `NOT-A-NAME` is not a Python name, so no setting can have it\n  help: write `NOT_A_NAME`\n",
        ),
        (
            vec!["blog", "debug=true"],
            "error: `debug` is not in capitals, and Django reads only names in capitals from settings\n  help: write `DEBUG`\n",
        ),
        (
            vec!["blog", "DEBUG"],
            "error: `DEBUG` should be `KEY=VALUE` (or use --unset to remove KEY)\n",
        ),
        (
            vec!["blog", "DEBUG=False"],
            "error: DEBUG=False: `False` would be the text \"False\", which Python takes as true; write `false` for the boolean, or `'\"False\"'` for the text\n",
        ),
    ] {
        let mut all = vec!["set", "fleet.site"];
        all.extend(args);
        let out = spec().args(&all).run();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (1, "", message)
        );
        assert!(!out.dir.path().join("fleet.local.toml").exists());
    }
}

#[test]
fn graph_bus_as_json_and_dot() {
    let out = spec()
        .args(&["graph", "fleet.site", "--bus", "--format", "json"])
        .run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    let bus: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let sockets = bus["sockets"].as_array().expect("sockets");
    let links = bus["links"].as_array().expect("links");
    // 4 agents bind ROUTER and PUB, lb1 collects logs; 2 balancer SUBs,
    // 4 agent DEALERs to the collector, the operator's DEALER.
    assert_eq!(sockets.len(), 4 * 2 + 1 + 2 + 4 + 1);
    // SUBs reach 2 runners each, the agents' DEALERs reach lb1, the operator's 4 agents.
    assert_eq!(links.len(), 2 * 2 + 4 + 4);
    let sub = sockets
        .iter()
        .find(|s| s["id"] == "lb2/balancer/heartbeats")
        .expect("lb2's SUB");
    assert_eq!(
        sub,
        &serde_json::json!({
            "id": "lb2/balancer/heartbeats",
            "host": "lb2",
            "process": "balancer",
            "purpose": "heartbeats",
            "type": "SUB",
            "mode": "connect",
            "endpoints": ["tcp://10.0.0.3:7702", "tcp://10.0.0.4:7702"],
        })
    );
    let out = spec().args(&["graph", "fleet.site", "--bus"]).run();
    assert!(out.stdout.starts_with("digraph bus {"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "\"operator/cli/control\" -> \"run2/agent/control\" [label=\"DEALER->ROUTER tcp://10.0.0.4:7701\"];"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn explain_shows_an_environment_variables_layers_with_secrets_by_name() {
    let spec = spec_with_sentry_dsn();
    let out = Test::new()
        .file("fleet.site", &spec)
        .args(&["explain", "fleet.site", "blog", "env.SENTRY_DSN"])
        .run();
    assert_eq!((out.status, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert_eq!(
        out.stdout,
        "env.SENTRY_DSN for app blog on run1:\n\
         \x20 settings base   fleet.site:14   https://sentry.example.com/1   <- wins\n\
         \x20 value: https://sentry.example.com/1\n\
         \n\
         env.SENTRY_DSN for app blog on run2:\n\
         \x20 settings base        fleet.site:14   https://sentry.example.com/1\n\
         \x20 settings host run2   fleet.site:19   secret(\"sentry.run2\")   <- wins\n\
         \x20 value: secret(\"sentry.run2\")\n"
    );
    // sitec's own variables: SECRET_KEY is the secret the settings name.
    let out = spec_of(&spec)
        .args(&[
            "explain",
            "fleet.site",
            "blog",
            "env.SECRET_KEY",
            "--host",
            "run1",
        ])
        .run();
    assert_eq!((out.status, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("sitec   fleet.site:22   secret(\"blog.secret_key\")   <- wins"),
        "{}",
        out.stdout
    );
    let out = spec_of(&spec)
        .args(&["explain", "fleet.site", "blog", "env.DATABSE_URL"])
        .run();
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .contains("has no environment variable `DATABSE_URL`"),
        "{}",
        out.stderr
    );
}

/// `explain SPEC APP env`: every variable of the app's environment, each
/// with its layers, sitec's own first; secrets by name (the golden
/// golden/explain/snapshots/environment_of_blog_on_run2.snap).
#[test]
fn explain_env_shows_every_variable_of_the_environment_with_its_layers() {
    let spec = spec_with_sentry_dsn();
    let out = spec_of(&spec)
        .args(&["explain", "fleet.site", "blog", "env", "--host", "run2"])
        .run();
    assert_eq!((out.status, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert!(
        out.stdout.contains("secret(\"sentry.run2\")   <- wins"),
        "{}",
        out.stdout
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../golden/explain/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("environment_of_blog_on_run2", out.stdout));
}

/// SPEC with `SENTRY_DSN` in two layers' env blocks: text in `settings
/// base`, a secret in `settings host run2`.
fn spec_with_sentry_dsn() -> String {
    SPEC.replace(
        "settings host run2 { SITE_TITLE = \"Second runner\" }",
        "settings host run2 {\n  SITE_TITLE = \"Second runner\"\n  env { SENTRY_DSN = secret(\"sentry.run2\") }\n}",
    )
    .replace(
        "  SITE_TITLE = \"Fleet default\"\n",
        "  SITE_TITLE = \"Fleet default\"\n  env { SENTRY_DSN = \"https://sentry.example.com/1\" }\n",
    )
}

fn spec_of(text: &str) -> Test {
    Test::new().file("fleet.site", text)
}

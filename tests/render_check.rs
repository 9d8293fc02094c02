//! `sitec render SPEC --check DIR [--update]`, run for real: a snapshot
//! tree written with `--update`, then checked after the spec changes a
//! file, adds a host's files and removes an app's.

mod common;
use common::cli::{Outcome, Test};

const SPEC: &str = r#"use std/platform

provider colo { user = "root" }
host web1 { provider = colo  address = "203.0.113.10"  roles = [balancer, runner, postgres] }
checks { balancer_redundancy = off }
database main { engine = postgres  primary = web1 }

app blog {
  source = "apps/blog"
  wsgi = "blog.wsgi:application"
  domains = ["blog.example.com"]
  databases { default = main }
  settings { SITE_TITLE = "Hello" }
}

app wiki {
  source = "apps/wiki"
  wsgi = "wiki.wsgi:application"
  domains = ["wiki.example.com"]
  databases { default = main }
}
"#;

/// The spec with `from` replaced by `to` (which must be there).
fn edited(from: &str, to: &str) -> String {
    assert!(SPEC.contains(from), "{from}");
    SPEC.replace(from, to)
}

/// `test` after `render fleet.site --check rendered --update`: its
/// `rendered/` holds what its fleet.site renders.
fn committed(test: Test) -> Outcome {
    let out = test
        .args(&["render", "fleet.site", "--check", "rendered", "--update"])
        .run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    out
}

#[test]
fn a_snapshot_is_written_then_checked() {
    let out = Test::new()
        .file("fleet.site", SPEC)
        .args(&["render", "fleet.site", "--check", "rendered"])
        .run();
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("`rendered` holds no snapshot yet"),
        "{}",
        out.stderr
    );
    let out = committed(out.again());
    assert!(
        out.stdout.contains("+ web1/etc/sitec/balancer.toml\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("added\n"), "{}", out.stdout);
    // The standard library's resources name their module, not its lines.
    let resources = out.read("rendered/web1/resources.json");
    assert!(
        resources.contains("\"origin\": \"std/platform.site\""),
        "{resources}"
    );
    assert!(!resources.contains("std/platform.site:"), "{resources}");
    // Unchanged: exit 0.
    let out = out
        .again()
        .args(&["render", "fleet.site", "--check", "rendered"])
        .run();
    assert_eq!(out.status, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .starts_with("rendered matches what fleet.site renders (")
            && out.stdout.ends_with(" files)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn changed_added_and_removed_files_each_get_a_diff() {
    let out = committed(Test::new().file("fleet.site", SPEC));
    // A setting changed, a host added (its files), an app removed (its files).
    // (At the end of the file, so no line above moves.)
    let spec = edited("SITE_TITLE = \"Hello\"", "SITE_TITLE = \"Hello again\"");
    let wiki = spec.find("app wiki").expect("app wiki");
    let spec = format!(
        "{}host web2 {{ provider = colo  address = \"203.0.113.11\"  roles = [] }}\n",
        &spec[..wiki]
    );
    let out = out
        .again()
        .file("fleet.site", &spec)
        .args(&["render", "fleet.site", "--check", "rendered"])
        .run();
    assert_eq!(out.status, 1, "{}", out.stderr);
    let said = &out.stdout;
    for expected in [
        // Changed: the settings module, with the line that changed.
        "--- web1/etc/sitec/apps/blog/python/sitec_settings.py (committed)\n+++ web1/etc/sitec/apps/blog/python/sitec_settings.py (the spec)\n",
        "-SITE_TITLE = \"Hello\"",
        "+SITE_TITLE = \"Hello again\"",
        // Added: every file of the new host, its resource list too.
        "--- /dev/null\n+++ web2/etc/sitec/agent.toml (the spec)\n",
        "--- /dev/null\n+++ web2/resources.json (the spec)\n",
        // Removed: the app's files.
        "--- web1/etc/nginx/sites-enabled/sitec-wiki.conf (committed)\n+++ /dev/null\n",
        // The resource list that changed.
        "--- web1/resources.json (committed)\n+++ web1/resources.json (the spec)\n",
        "-      \"id\": \"user:app-wiki\",",
    ] {
        assert!(said.contains(expected), "no {expected:?} in:\n{said}");
    }
    let summary = regex::Regex::new(
        r"rendered differs from what fleet.site renders: \d+ changed, \d+ added, \d+ removed\n\(after an intended change: `sitec render fleet.site --check rendered --update`, and commit it\)\n$",
    )
    .expect("a pattern");
    assert!(summary.is_match(said), "{said}");
    // --update takes the change; the next check is clean.
    let out = out
        .again()
        .args(&["render", "fleet.site", "--check", "rendered", "--update"])
        .run();
    assert!(
        out.stdout
            .contains("~ web1/etc/sitec/apps/blog/python/sitec_settings.py\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("- web1/etc/nginx/sites-enabled/sitec-wiki.conf\n"),
        "{}",
        out.stdout
    );
    let out = out
        .again()
        .args(&["render", "fleet.site", "--check", "rendered"])
        .run();
    assert_eq!(out.status, 0, "{}", out.stdout);
}

#[test]
fn a_folder_sitec_did_not_write_is_left_alone() {
    let out = Test::new()
        .file("fleet.site", SPEC)
        .file("mine/notes.txt", "not sitec's\n")
        .args(&["render", "fleet.site", "--check", "mine", "--update"])
        .run();
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("was not rendered by sitec"),
        "{}",
        out.stderr
    );
    assert_eq!(out.read("mine/notes.txt"), "not sitec's\n");
}

/// A template of your own is snapshot like sitec's: a change to the
/// template alone (the spec as it was) is a diff of the file it renders.
#[test]
fn a_change_to_a_template_of_your_own_is_a_diff() {
    let spec = format!(
        "{}role motd {{\n  file \"/etc/motd\" {{ template = \"./templates/motd.hbs\" }}\n}}\n",
        edited(
            "roles = [balancer, runner, postgres]",
            "roles = [balancer, runner, postgres, motd]"
        )
    );
    let out = committed(
        Test::new()
            .file("fleet.site", &spec)
            .file("templates/motd.hbs", "This is {{host.name}}.\n"),
    );
    assert_eq!(out.read("rendered/web1/etc/motd"), "This is web1.\n");
    let resources = out.read("rendered/web1/resources.json");
    assert!(
        resources.contains("\"template\": \"templates/motd.hbs\""),
        "{resources}"
    );
    let out = out
        .again()
        .file(
            "templates/motd.hbs",
            "This is {{host.name}} at {{host.address}}.\n",
        )
        .args(&["render", "fleet.site", "--check", "rendered"])
        .run();
    assert_eq!(out.status, 1, "{}", out.stderr);
    for expected in [
        "--- web1/etc/motd (committed)\n+++ web1/etc/motd (the spec)\n",
        "-This is web1.",
        "+This is web1 at 203.0.113.10.",
    ] {
        assert!(
            out.stdout.contains(expected),
            "no {expected:?} in:\n{}",
            out.stdout
        );
    }
}

/// `sitec render SPEC --check DIR | head`: a reader that stops early ends
/// the check quietly, as it would end `diff` (SIGPIPE, status 141 in a
/// shell), where it once panicked with "failed printing to stdout".
#[test]
fn a_reader_that_stops_early_ends_the_check_quietly() {
    let out = committed(Test::new().file("fleet.site", SPEC));
    let spec = edited("SITE_TITLE = \"Hello\"", "SITE_TITLE = \"Hello again\"");
    let out = out
        .again()
        .file("fleet.site", &spec)
        .args(&["render", "fleet.site", "--check", "rendered"])
        .run_into_a_closed_reader();
    // Its warnings about the spec still go to stderr; no panic joins them.
    assert_eq!(
        out.signal,
        Some(13),
        "status {}: {}",
        out.status,
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("Broken pipe"),
        "{}",
        out.stderr
    );
}

//! The `sitec` binary, run for real: each test writes files into a temporary
//! folder, runs a command there, and compares exact output and exit status.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

mod common;
use common::cli::Test;

const GOOD: &str = "use std/platform\n\nprovider here { kind = local }\n\nhost web1 { provider = here  roles = [runner] }\n";

#[test]
fn version_and_help() {
    let out = Test::new().args(&["--version"]).run();
    assert_eq!(out.stdout, format!("sitec {}\n", env!("CARGO_PKG_VERSION")));
    let out = Test::new().args(&["--help"]).run();
    assert_eq!(out.status, 0);
    for command in ["check", "fmt"] {
        assert!(
            out.stdout.contains(command),
            "--help does not list {command}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn check_a_good_spec() {
    let out = Test::new()
        .file("spec.site", GOOD)
        .args(&["check", "spec.site"])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (0, "ok: spec.site (1 provider, 1 host)\n", "")
    );
}

/// The newcomer's experience: three mistakes, all reported, each with its place and fix.
#[test]
fn check_reports_every_mistake_with_place_and_fix() {
    let spec = "use std/platform\n\
                provider colo { user = \"root\" }\n\
                host run1 { provider = colo  address = \"203.0.113.21\"  roles = [runer] }\n\
                host run2 { provider = colo  address = 203.0.113.22 }\n\
                database main { engine = postgres  primary = run3 }\n";
    let out = Test::new()
        .file("fleet.site", spec)
        .args(&["check", "fleet.site"])
        .run();
    assert_eq!(out.status, 1);
    assert_eq!(out.stdout, "");
    let expected = r#"error[E106]: unknown role `runer`
  --> fleet.site:3:65
  |
3 | host run1 { provider = colo  address = "203.0.113.21"  roles = [runer] }
  |                                                                 ^^^^^ no role has this name
  |
  = help: did you mean `runner`?

error[E012]: `203.0.113.22` is not a number sitec reads
  --> fleet.site:4:40
  |
4 | host run2 { provider = colo  address = 203.0.113.22 }
  |                                        ^^^^^^^^^^^^ needs quotes
  |
  = help: numbers are whole; write an address or a version as a string: "203.0.113.22"

error[E106]: unknown host `run3`
  --> fleet.site:5:46
  |
5 | database main { engine = postgres  primary = run3 }
  |                                              ^^^^ no host has this name
  |
  = help: did you mean `run1`?

note: the fleet checks (redundancy, conflicts, ports, roles) run once the errors above are fixed
error: `fleet.site` has 3 errors
"#;
    assert_eq!(out.stderr, expected);
}

#[test]
fn check_json_names_file_line_and_column() {
    let out = Test::new()
        .file("spec.site", "provider colo { usr = \"root\" }\n")
        .args(&["check", "--format", "json", "spec.site"])
        .run();
    assert_eq!(out.status, 1);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    let first = &json[0];
    assert_eq!(first["code"], "E102");
    assert_eq!(first["severity"], "error");
    assert_eq!(
        (
            first["file"].as_str(),
            first["line"].as_u64(),
            first["column"].as_u64()
        ),
        (Some("spec.site"), Some(1), Some(17))
    );
    assert_eq!(first["help"], "did you mean `user`?");
}

#[test]
fn check_a_missing_file() {
    let out = Test::new().args(&["check", "nope.site"]).run();
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .starts_with("error[E033]: can't read `nope.site`: no such file\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_follows_use_relative_to_the_importing_file() {
    let out = Test::new()
        .file(
            "fleet/main.site",
            "use ./hosts/all.site\nuse std/platform\n",
        )
        .file(
            "fleet/hosts/all.site",
            "use ../providers.site\nhost web1 { provider = here  roles = [runner] }\n",
        )
        .file("fleet/providers.site", "provider here { kind = local }\n")
        .args(&["check", "fleet/main.site"])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "ok: fleet/main.site (1 provider, 1 host)\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn fmt_rewrites_in_place_and_keeps_comments() {
    let messy = "# my fleet\nprovider   here{kind=local}   # at home\nhost web1 {\nprovider=here\n\n\n\n  roles=[ ]}\n";
    let out = Test::new()
        .file("spec.site", messy)
        .args(&["fmt", "spec.site"])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "formatted: spec.site\n")
    );
    let formatted = out.read("spec.site");
    assert_eq!(formatted, "# my fleet\nprovider here { kind = local } # at home\nhost web1 {\n  provider = here\n\n  roles = []\n}\n");
}

#[test]
fn fmt_check_lists_files_and_changes_nothing() {
    let out = Test::new()
        .file("good.site", GOOD)
        .file("messy.site", "host   a {}\n")
        .args(&["fmt", "--check", "good.site", "messy.site"])
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (1, "would reformat: messy.site\n")
    );
    assert_eq!(out.read("messy.site"), "host   a {}\n");
    let out = Test::new()
        .file("good.site", GOOD)
        .args(&["fmt", "--check", "good.site"])
        .run();
    assert_eq!((out.status, out.stdout.as_str()), (0, ""));
}

#[test]
fn fmt_reads_standard_input() {
    let out = Test::new()
        .args(&["fmt", "-"])
        .stdin("host a{provider=b}")
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "host a { provider = b }\n")
    );
}

#[test]
fn fmt_leaves_a_file_with_syntax_errors_alone() {
    let broken = "host a { provider = }\n";
    let out = Test::new()
        .file("spec.site", broken)
        .args(&["fmt", "spec.site"])
        .run();
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .contains("error[E002]: expected a value, found `}`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`spec.site` has syntax errors"),
        "{}",
        out.stderr
    );
    assert_eq!(out.read("spec.site"), broken);
    assert!(!Path::new(&out.dir.path().join(".spec.site.sitec-fmt")).exists());
}

/// An app's source folder misspelt: `check` warns at the spec's line with the
/// folder it meant; `plan` stops there, as an error, before building a
/// wheelhouse or reaching a host (the local fleet is not even up).
#[test]
fn a_missing_app_source_warns_in_check_and_stops_plan() {
    let spec = "use std/platform\n\
                provider here { kind = local }\n\
                host lb1 { provider = here  roles = [balancer] }\n\
                host run1 { provider = here  roles = [runner, postgres] }\n\
                checks { balancer_redundancy = off  database_redundancy = off }\n\
                database main { engine = postgres  primary = run1 }\n\
                app blog {\n  source = \"apps/blgo\"\n  wsgi = \"blog.wsgi:application\"\n  \
                domains = [\"blog.example.com\"]\n  databases { default = main }\n}\n";
    let test = || {
        Test::new()
            .file("spec.site", spec)
            .file("apps/blog/requirements.txt", "Django==5.2.19\n")
            .file("apps/blog/blog/wsgi.py", "application = None\n")
    };
    let expected = "[E270]: the source of app `blog`, `apps/blgo`, does not exist\n  \
                    --> spec.site:8:12\n  |\n8 |   source = \"apps/blgo\"\n  \
                    |            ^^^^^^^^^^^ not beside the spec\n  |\n  \
                    = help: did you mean `source = \"apps/blog\"`?\n";
    let out = test().args(&["check", "spec.site"]).run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (
            0,
            "ok: spec.site (1 provider, 2 hosts, 1 database, 1 app, 1 warning)\n"
        )
    );
    assert_eq!(out.stderr, format!("warning{expected}\n"));
    let out = test().args(&["plan", "spec.site"]).run();
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr,
        format!("error{expected}\nerror: `spec.site` has 1 error\n")
    );
}

/// Files as editors save them: a byte-order mark and `\r\n` line ends are
/// read as any file, and `fmt` writes them back as they were.
#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_kept() {
    let spec = "\u{feff}# saved on Windows\r\nprovider colo {\r\n  user   = \"root\"\r\n}\r\n";
    let out = Test::new()
        .file("spec.site", spec)
        .args(&["check", "spec.site"])
        .run();
    assert_eq!((out.status, out.stderr.as_str()), (0, ""));
    let out = out.again().args(&["fmt", "spec.site"]).run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(
        out.read("spec.site"),
        "\u{feff}# saved on Windows\r\nprovider colo {\r\n  user = \"root\"\r\n}\r\n"
    );
    let out = out.again().args(&["fmt", "--check", "spec.site"]).run();
    assert_eq!((out.status, out.stdout.as_str()), (0, ""));
}

/// `fmt` reads a file as `check` does: a file that is not UTF-8 gets the
/// same one error, not a parse of its replacement characters, and the
/// excerpt of a binary file writes no control character to the terminal.
#[test]
fn fmt_and_check_agree_on_a_file_that_is_not_utf8() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/errors/binary_file.site");
    let bytes = std::fs::read(path).expect("the golden binary file");
    let run = |command: &str| {
        Test::new()
            .bytes("spec.site", &bytes)
            .args(&[command, "spec.site"])
            .run()
    };
    let (check, fmt) = (run("check"), run("fmt"));
    assert_eq!((check.status, fmt.status), (1, 1));
    let codes = |text: &str| -> Vec<String> {
        (text.lines())
            .filter_map(|l| l.strip_prefix("error[").map(|c| c[..4].to_string()))
            .collect()
    };
    assert_eq!(codes(&check.stderr), ["E001"]);
    assert_eq!(codes(&fmt.stderr), ["E001"]);
    for said in [&check.stderr, &fmt.stderr] {
        let control = said.chars().find(|c| c.is_control() && *c != '\n');
        assert_eq!(
            control, None,
            "a control character reached the terminal:\n{said}"
        );
    }
}

/// A host with a role of the spec's own: the graph depends on the spec
/// alone, not on the standard library's roles.
const OWN_ROLE: &str = "provider here { kind = local }\n\n\
host web1 { provider = here  roles = [web] }\n\n\
role web {\n  package nginx {}\n  file \"/etc/nginx/conf.d/site.conf\" {\n    content = \"server {}\\n\"\n    notify = [\"service:nginx\"]\n  }\n  service nginx { requires = [\"package:nginx\"] }\n}\n";

#[test]
fn graph_draws_requires_and_notifies_in_dot() {
    let out = Test::new()
        .file("own.site", OWN_ROLE)
        .args(&["graph", "own.site"])
        .run();
    let dot = r#"digraph sitec {
  rankdir=LR;
  node [shape=box, fontname="monospace", fontsize=10];
  subgraph "cluster_web1" {
    label="web1";
    "web1/package:nginx" [label="package:nginx"];
    "web1/file:/etc/nginx/conf.d/site.conf" [label="file:/etc/nginx/conf.d/site.conf"];
    "web1/service:nginx" [label="service:nginx"];
    "web1/package:nginx" -> "web1/service:nginx";
    "web1/file:/etc/nginx/conf.d/site.conf" -> "web1/service:nginx" [style=dashed, label="notifies"];
  }
}
"#;
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (0, dot, "")
    );
}

#[test]
fn graph_as_json_names_each_resources_edges_and_origin() {
    let out = Test::new()
        .file("own.site", OWN_ROLE)
        .args(&["graph", "own.site", "--format", "json"])
        .run();
    let json = r#"{
  "host_order": [],
  "hosts": [
    {
      "host": "web1",
      "resources": [
        {
          "id": "package:nginx",
          "notifies": [],
          "origin": "own.site:6",
          "requires": []
        },
        {
          "id": "file:/etc/nginx/conf.d/site.conf",
          "notifies": [
            "service:nginx"
          ],
          "origin": "own.site:7",
          "requires": []
        },
        {
          "id": "service:nginx",
          "notifies": [],
          "origin": "own.site:11",
          "requires": [
            "package:nginx"
          ]
        }
      ]
    }
  ]
}
"#;
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (0, json, "")
    );
}

/// The order between hosts: a database's primary before its standby, in
/// both formats. A Redis replica needs no order (it asks its primary until
/// it answers), so Redis the other way round makes no cycle.
#[test]
fn graph_orders_a_primary_before_its_standby() {
    let spec = "use std/platform\n\nprovider here { kind = local }\n\n\
                host run1 { provider = here  roles = [runner, postgres, redis] }\n\
                host run2 { provider = here  roles = [runner, postgres, redis] }\n\n\
                checks { replica_spread = off }\n\n\
                database main { engine = postgres  primary = run1  standby = run2 }\n\
                database cache { engine = redis  primary = run2  replica = run1 }\n";
    let out = Test::new()
        .file("two.site", spec)
        .args(&["graph", "two.site", "--format", "json"])
        .run();
    assert_eq!((out.status, out.stderr.as_str()), (0, ""));
    let graph: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        graph["host_order"],
        serde_json::json!([{"before": "run1", "after": "run2", "why": "database main: primary before its follower"}])
    );
    let out = out.again().args(&["graph", "two.site"]).run();
    let edges: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("  \"") && l.contains("->"))
        .collect();
    assert_eq!(
        edges,
        ["  \"run1/user:sitec-agent\" -> \"run2/user:sitec-agent\" [color=blue, ltail=\"cluster_run1\", lhead=\"cluster_run2\", label=\"database main: primary before its follower\"];"]
    );
}

#[test]
fn graph_of_a_circle_names_it_and_draws_nothing() {
    let spec = "provider here { kind = local }\n\n\
                host web1 { provider = here  roles = [web] }\n\n\
                role web {\n  file \"/etc/a\" { content = \"a\\n\"  requires = [\"file:/etc/b\"] }\n  file \"/etc/b\" { content = \"b\\n\"  requires = [\"file:/etc/a\"] }\n}\n";
    let out = Test::new()
        .file("cycle.site", spec)
        .args(&["graph", "cycle.site"])
        .run();
    let said = r#"error[E230]: resources depend on each other in a circle: file:/etc/a -> file:/etc/b -> file:/etc/a
  --> cycle.site:6:3
  |
6 |   file "/etc/a" { content = "a\n"  requires = ["file:/etc/b"] }
  |   ^^^^^^^^^^^^^ this one waits for the last
7 |   file "/etc/b" { content = "b\n"  requires = ["file:/etc/a"] }
  |   ------------- on the circle
  |
  = help: remove one of the `requires` or `notify` that close the circle

error: `cycle.site` has 1 error
"#;
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (1, "", said)
    );
}

/// `sitec render` as a user who is not root, with a HOME of its own, as an
/// operator runs it on a laptop: the quickstart's first render writes every
/// host's files and a secrets file only that user may read. CI runs as
/// root, so there the test drops to `nobody` (setpriv); anyone else runs
/// it as themselves.
#[test]
fn render_runs_without_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir(root.join("apps")).expect("mkdir");
    std::fs::create_dir(root.join("home")).expect("mkdir");
    std::fs::copy(
        examples.join("quickstart.site"),
        root.join("quickstart.site"),
    )
    .expect("cp");
    for (from, into) in [("apps/blog", "apps"), ("tls", ".")] {
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(examples.join(from))
            .arg(root.join(into))
            .status()
            .expect("cp");
        assert!(copied.success(), "copying examples/{from}");
    }
    let as_root = common::is_root();
    let mut render = if as_root {
        let owned = std::process::Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(root)
            .status()
            .expect("chown");
        assert!(owned.success(), "chown to nobody");
        let mut setpriv = std::process::Command::new("setpriv");
        setpriv
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_sitec"));
        setpriv
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
    };
    let out = render
        .args(["render", "quickstart.site", "--out", "out"])
        .current_dir(root)
        .env("HOME", root.join("home"))
        .env("NO_COLOR", "1")
        .output()
        .expect("sitec render runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("rendered ") && stdout.ends_with(" files for 3 hosts into out\n"),
        "{stdout}"
    );
    assert_eq!(stderr, "");
    let uid = std::fs::metadata(root.join("home")).expect("home").uid();
    for written in [
        "quickstart.secrets.toml",
        "out/lb1/etc/sitec/balancer.toml",
        "out/run1/etc/sitec/apps/blog/python/sitec_settings.py",
    ] {
        let meta =
            std::fs::metadata(root.join(written)).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(meta.uid(), uid, "{written} belongs to whoever rendered");
    }
    let secrets = std::fs::metadata(root.join("quickstart.secrets.toml")).expect("secrets");
    assert_eq!(
        secrets.mode() & 0o777,
        0o600,
        "only its owner reads the secrets"
    );
}

/// Completion scripts for each shell, from the same definitions as the
/// commands: bash's parses (`bash -n`) and offers the subcommands; the man
/// page is roff that groff reads without a warning.
#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Test::new().args(&["completions", shell]).run();
        assert_eq!(out.status, 0, "{shell}: {}", out.stderr);
        for command in ["check", "render", "lsp", "plan"] {
            assert!(out.stdout.contains(command), "{shell} lacks {command}");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("sitec.bash");
    let out = Test::new().args(&["completions", "bash"]).run();
    std::fs::write(&script, &out.stdout).expect("write");
    let bash = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p sitec && COMP_WORDS=(sitec ren); COMP_CWORD=1; _sitec sitec ren sitec && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash");
    let said = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    assert!(said.lines().last() == Some("render"), "{said}");
    // The internal commands are not offered.
    let bash = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(sitec ''); COMP_CWORD=1; _sitec sitec '' sitec && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash");
    let offered = String::from_utf8_lossy(&bash.stdout);
    let offered: Vec<&str> = offered.split_whitespace().collect();
    assert!(
        offered.contains(&"lsp") && offered.contains(&"completions"),
        "{offered:?}"
    );
    assert!(
        !offered.contains(&"host") && !offered.contains(&"data"),
        "{offered:?}"
    );

    let out = Test::new().args(&["man"]).run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(".ie"),
        "{}",
        &out.stdout[..80.min(out.stdout.len())]
    );
    let page = dir.path().join("sitec.1");
    std::fs::write(&page, &out.stdout).expect("write");
    let groff = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff");
    assert!(
        groff.status.success() && groff.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&groff.stderr)
    );
    let pages = dir.path().join("man");
    let out = Test::new()
        .args(&["man", "--out", pages.to_str().expect("utf-8")])
        .run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    for name in ["sitec.1", "sitec-check.1", "sitec-lsp.1", "sitec-render.1"] {
        assert!(pages.join(name).is_file(), "{name}");
    }
    assert!(
        !pages.join("sitec-host.1").exists(),
        "an internal command's page"
    );
}

/// A secrets file's mistakes are told by their place, never their text, and
/// one that others can read is a warning with the command that fixes it.
#[test]
fn the_secrets_file_is_checked_without_showing_a_value() {
    let spec = "use std/platform\nprovider p { kind = local }\nhost web1 { provider = p  roles = [runner] }\n";
    let render = |secrets: &str| {
        Test::new()
            .file("spec.site", spec)
            .file("spec.secrets.toml", secrets)
            .mode("spec.secrets.toml", 0o644)
            .args(&["render", "spec.site", "--out", "out"])
            .run()
    };
    let out = render("\"fleet.bus_key\" = \"Xy7-the-value\n");
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .contains("error[E240]: `spec.secrets.toml` line 1, column 33: invalid basic string"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Xy7"),
        "a value was shown: {}",
        out.stderr
    );
    // sitec writes the file 0600 (here, adding the generated secrets it
    // lacks); made readable by others afterwards, the next run warns.
    let first = render("\"fleet.bus_key\" = \"Xy7-the-value\"\n");
    assert_eq!(first.status, 0, "{}", first.stderr);
    let secrets = first.dir.path().join("spec.secrets.toml");
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let out = first
        .again()
        .args(&["render", "spec.site", "--out", "out"])
        .run();
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "warning[E241]: `spec.secrets.toml` can be read by every user of this machine (mode 0644); \
         it holds the fleet's passwords and keys: `chmod 600 spec.secrets.toml`\n\n"
    );
}

/// Every command that only prints ends quietly when its reader goes
/// (`sitec graph ... | head`): killed by SIGPIPE as a Unix filter is, with
/// nothing on stderr (no "failed printing to stdout" panic).
#[test]
fn output_commands_end_quietly_when_their_reader_goes() {
    for args in [
        &["graph", "spec.site"][..],
        &["graph", "spec.site", "--format", "json"],
        &["check", "spec.site"],
        &["completions", "bash"],
    ] {
        let out = Test::new()
            .file("spec.site", GOOD)
            .args(args)
            .run_into_a_closed_reader();
        assert_eq!(
            (out.signal, out.stderr.as_str()),
            (Some(13), ""),
            "sitec {args:?}: status {}",
            out.status
        );
    }
}

/// A fleet of one host that is not up: the commands that reach hosts
/// answer at once (unreachable, down) without booting anything.
const NOT_UP: &str = "use std/platform\n\
                      provider here { kind = local }\n\
                      host run1 { provider = here  roles = [runner, postgres] }\n\
                      checks { balancer_redundancy = off  database_redundancy = off }\n\
                      database main { engine = postgres  primary = run1 }\n";

/// The commands that keep SIGPIPE ignored (they talk to ssh and to hosts)
/// print through `sitec::stdio`: when their reader goes (`sitec plan SPEC
/// | head -1`) they stop printing and finish their work, exiting with the
/// status that work earns, with no signal and no "failed printing to
/// stdout" panic (status 101) on stderr.
fn ends_quietly(test: Test, status: i32, stderr: &str) -> common::cli::Outcome {
    let out = test.run_into_a_closed_reader();
    assert_eq!(
        (out.signal, out.status, out.stderr.as_str()),
        (None, status, stderr)
    );
    out
}

/// plan and apply: the plan still goes on to be saved after the print that
/// met the closed pipe (before, the panic came first and saved nothing).
#[test]
fn plan_and_apply_end_quietly_when_their_reader_goes() {
    let fleet = || Test::new().file("spec.site", NOT_UP);
    let out = ends_quietly(
        fleet().args(&["plan", "spec.site", "--out", "saved.json"]),
        1,
        "Saved the plan to saved.json; `sitec apply saved.json` applies exactly it.\n",
    );
    assert!(out.dir.path().join("saved.json").is_file());
    ends_quietly(fleet().args(&["apply", "spec.site", "--yes"]), 1, "");
}

/// status, status --watch (which stops: nobody reads it any more) and
/// unlock, once a plan made the bus keys they use.
#[test]
fn status_and_unlock_end_quietly_when_their_reader_goes() {
    let planned = Test::new()
        .file("spec.site", NOT_UP)
        .args(&["plan", "spec.site"])
        .run();
    assert_eq!(planned.status, 1, "{}", planned.stderr);
    let out = ends_quietly(planned.again().args(&["status", "spec.site"]), 1, "");
    let out = ends_quietly(out.again().args(&["status", "spec.site", "--watch"]), 0, "");
    ends_quietly(out.again().args(&["unlock", "spec.site"]), 0, "");
}

/// backups (restore and failover print through the same function).
#[test]
fn backups_end_quietly_when_their_reader_goes() {
    ends_quietly(
        Test::new()
            .file("spec.site", NOT_UP)
            .args(&["backups", "spec.site"]),
        0,
        "",
    );
}

/// What runs on a host, read by the operator's sitec over ssh: a session
/// gone mid-apply must not stop `sitec host apply` half-way.
#[test]
fn host_and_data_end_quietly_when_their_reader_goes() {
    ends_quietly(
        Test::new()
            .stdin(r#"{"host":"run1","generation":"g","spec":"spec.site","items":[]}"#)
            .args(&["host", "facts"]),
        0,
        "",
    );
    ends_quietly(
        Test::new()
            .file("snapshots/.keep", "")
            .args(&["data", "list", "snapshots"]),
        0,
        "",
    );
}

/// fleet: `fleet down` of a fleet never made (its own state folder and a
/// bridge that does not exist, so nothing of anyone else's is touched).
#[test]
fn fleet_ends_quietly_when_its_reader_goes() {
    if !common::require_root("fleet down refuses to run without root") {
        return;
    }
    ends_quietly(
        Test::new().args(&[
            "fleet",
            "down",
            "--name",
            "pipegone",
            "--state-root",
            "state",
            "--bridge",
            "sitecpipe0",
        ]),
        0,
        "",
    );
}

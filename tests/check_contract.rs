//! `sitec check` is a contract: what it accepts, render and the hosts'
//! programs accept. Specs are generated from a seed, with the edge values
//! each field takes (the shortest and longest names, the first and last
//! port, 1B and 1TB, 1s and 52w, IPv6 addresses, wildcard domains, text
//! with quotes, backslashes, `%` and `$` where a systemd unit or a shell
//! would read them); every one that checks clean (no error) must render
//! without an error, and every rendered file must pass the program that
//! reads it: `sitec balancer --check` and `sitec agent --check`, `nginx -t`,
//! `systemd-analyze verify`, `python3`, `bash -n` and shellcheck, a real
//! `postgres` and `redis-server` (`common::tree`, as `tests/render.rs` runs
//! them on the examples).
//!
//! `CONTRACT_CASES` sets how many specs (24 by default, a few minutes);
//! `CONTRACT_SEED` the first seed (case `n` uses seed + n), so a failure
//! is reproduced by the seed it prints. Runs as root (nginx, postgres).

mod common;

use common::tree::{self, Tree};
use common::{Postgres, Scratch};
use sitec::compile::SecretSource;
use sitec::source::SourceMap;
use std::fmt::Write as _;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Up to `most` distinct items of `items`, in their order.
    fn some<T: Clone>(&mut self, items: &[T], most: usize) -> Vec<T> {
        let mut chosen: Vec<usize> = (0..items.len()).filter(|_| self.chance(50)).collect();
        chosen.truncate(most);
        chosen.into_iter().map(|i| items[i].clone()).collect()
    }
}

const HOST_NAMES: &[&str] = &[
    "lb1",
    "run-1",
    "db_1",
    "web2",
    "h",
    "vault",
    "run3",
    "a-host-name-that-is-long-enough-to-matter-0123456789abcdefghijk",
];
const APP_NAMES: &[&str] = &[
    "blog",
    "shop_2",
    "wiki",
    "a",
    "app-name-of-28-characters-xy",
];
const DB_NAMES: &[&str] = &["maindb", "cache", "shop-db", "D2", "q"];
const ROLES: &[&str] = &["balancer", "runner", "postgres", "redis", "backup", "logs"];

fn address(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("2001:db8::{:x}", rng.below(0xffff) + 1),
        _ => format!(
            "{}.{}.{}.{}",
            rng.pick(&[10, 198, 203, 255]),
            rng.pick(&[0, 51, 255]),
            rng.pick(&[0, 100, 113, 255]),
            rng.pick(&[1, 9, 200, 254])
        ),
    }
}

/// One line of text as a worker's command, a file's content or a setting
/// may hold it.
fn text(rng: &mut Rng) -> String {
    rng.pick(&[
        "plain",
        "",
        "with \\\"quotes\\\" and \\\\ backslash",
        "percent %h and dollar $HOME and ${X}",
        "unicode é ☃ 😀",
        "a 'single' quote; semicolon & ampersand",
        "trailing backslash \\\\",
        "{braces} and {{double}}",
        "--opt \\\"double quoted\\\" 'single'",
    ])
    .to_string()
}

fn setting_value(rng: &mut Rng, depth: usize) -> String {
    match rng.below(if depth > 1 { 7 } else { 9 }) {
        0 => format!("\"{}\"", text(rng)),
        1 => rng
            .pick(&[
                "0",
                "-1",
                "9223372036854775807",
                "-9223372036854775808",
                "42",
            ])
            .to_string(),
        2 => rng.pick(&["true", "false"]).to_string(),
        3 => rng.pick(&["1s", "90s", "2h", "52w"]).to_string(),
        4 => rng.pick(&["1B", "64KB", "512MB", "2GiB"]).to_string(),
        5 => format!("secret(\"shared.{}\")", rng.pick(&["a", "b.c", "x-y_z"])),
        6 => "\"\"\"\n    line one\n      indented \"quoted\" \\ back\n    \"\"\"".to_string(),
        7 => {
            let items: Vec<String> = (0..rng.below(3))
                .map(|_| setting_value(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let entries: Vec<String> = (0..rng.below(3))
                .map(|i| format!("K{i} = {}", setting_value(rng, depth + 1)))
                .collect();
            format!("{{ {} }}", entries.join("  "))
        }
    }
}

fn settings_block(rng: &mut Rng) -> String {
    let mut out = String::new();
    for n in 0..rng.below(4) {
        let key = rng.pick(&[
            "DEBUG",
            "TIME_ZONE",
            "SITE_TITLE",
            "X_1",
            "CACHES",
            "ADMINS",
        ]);
        let _ = writeln!(out, "  {key}{n} = {}", setting_value(rng, 0));
    }
    out
}

/// `text` for a role's string, where braces name values: doubled.
fn literal(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// One spec, from `seed`.
fn spec(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::from("use std/platform\n\n");
    // Providers.
    let providers: Vec<(&str, bool)> = ["colo", "ec2", "here-1"]
        .iter()
        .take(1 + rng.below(3))
        .map(|p| (*p, *p == "here-1"))
        .collect();
    for (name, local) in &providers {
        if *local {
            let _ = writeln!(out, "provider {name} {{ kind = local }}");
        } else {
            let user = rng.pick(&["root", "admin", "deploy-user", "a", "x.y_z"]);
            let port = rng.pick(&[22, 1, 65535, 2222]);
            let _ = writeln!(
                out,
                "provider {name} {{ user = \"{user}\"  port = {port} }}"
            );
        }
    }
    // Hosts: every role somewhere, more hosts now and then.
    let count = 3 + rng.below(5);
    let hosts: Vec<&str> = HOST_NAMES.iter().copied().take(count).collect();
    let mut roles_of: Vec<Vec<&str>> = vec![Vec::new(); hosts.len()];
    for (i, role) in ROLES.iter().enumerate() {
        roles_of[i % hosts.len()].push(role);
    }
    for roles in &mut roles_of {
        for role in rng.some(&["runner", "balancer", "postgres", "redis"], 2) {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    let has_role = |roles_of: &[Vec<&str>], role: &str| -> Vec<usize> {
        (0..roles_of.len())
            .filter(|h| roles_of[*h].contains(&role))
            .collect()
    };
    let own_role = rng.chance(50);
    for (h, name) in hosts.iter().enumerate() {
        let (provider, local) = *rng.pick(&providers);
        let mut line = format!("host {name} {{ provider = {provider}");
        if !local || rng.chance(30) {
            let _ = write!(line, "  address = \"{}\"", address(&mut rng));
        }
        if !local && rng.chance(25) {
            let _ = write!(line, "  private_address = \"{}\"", address(&mut rng));
        }
        let mut roles = roles_of[h].clone();
        if own_role && rng.chance(50) {
            roles.push("extra");
        }
        let _ = writeln!(line, "  roles = [{}] }}", roles.join(", "));
        out.push_str(&line);
    }
    // The warnings only: what the hosts refuse stays an error.
    out.push_str("\nchecks {\n  balancer_redundancy = off\n  replica_spread = off\n  standby_provider = off\n  unused_settings = off\n  inline_secret = off\n}\n\n");
    // Databases.
    let postgres_hosts = has_role(&roles_of, "postgres");
    let redis_hosts = has_role(&roles_of, "redis");
    let mut databases: Vec<(&str, bool)> = Vec::new();
    for name in DB_NAMES.iter().take(rng.below(4)) {
        let redis = rng.chance(40);
        let candidates = if redis { &redis_hosts } else { &postgres_hosts };
        let primary = hosts[*rng.pick(candidates)];
        let mut line = format!(
            "database {name} {{ engine = {}  primary = {primary}",
            if redis { "redis" } else { "postgres" }
        );
        if !redis {
            let _ = write!(line, "  tier = {}", rng.pick(&["shared", "dedicated"]));
        }
        let others: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|h| hosts[*h] != primary)
            .collect();
        if rng.chance(50) && !others.is_empty() {
            let follower = hosts[*rng.pick(&others)];
            let _ = write!(
                line,
                "  {} = {follower}",
                if redis { "replica" } else { "standby" }
            );
        }
        if rng.chance(30) {
            let _ = write!(line, "  port = {}", rng.pick(&[1024, 5434, 6390, 65535]));
        }
        let _ = writeln!(line, " }}");
        out.push_str(&line);
        databases.push((name, redis));
    }
    // Settings layers.
    let _ = writeln!(out, "\nsettings base {{\n{}}}", settings_block(&mut rng));
    // Apps.
    let runners = has_role(&roles_of, "runner");
    let mut star_taken = false;
    // No app now and then: the balancers then route nothing.
    for name in APP_NAMES.iter().take(rng.below(4)) {
        let _ = writeln!(out, "\napp {name} {{");
        let _ = writeln!(
            out,
            "  source = \"{}\"",
            rng.pick(&[format!("apps/{name}"), format!("apps/my {name}")])
        );
        let _ = writeln!(
            out,
            "  python = \"{}\"",
            rng.pick(&["3", "3.11", "3.9", "3.13"])
        );
        let _ = writeln!(
            out,
            "  wsgi = \"{}\"",
            rng.pick(&[
                "blog.wsgi:application",
                "app",
                "app:create_app()",
                "pkg.mod.sub:app",
                "app:create_app('a b', x='y')"
            ])
        );
        // Each app's own: a domain belongs to one app.
        let label = name.replace('_', "-");
        let domains = [
            "*".to_string(),
            format!("*.{label}.example.com"),
            format!("xn--bcher-kva.{label}.example"),
            format!("Blog.{label}.COM"),
            format!("{label}.b"),
            format!("label-of-sixty-three-characters-which-is-the-most-one-may-have3.{label}.com"),
        ];
        let mut mine: Vec<String> = vec![format!("{label}.example.org")];
        mine.extend(
            rng.some(&domains, 2)
                .into_iter()
                .filter(|d| d != "*" || !star_taken),
        );
        star_taken |= mine.iter().any(|d| d == "*");
        let mine: Vec<String> = mine.iter().map(|d| format!("\"{d}\"")).collect();
        let _ = writeln!(out, "  domains = [{}]", mine.join(", "));
        if rng.chance(40) && !runners.is_empty() {
            let pinned: Vec<&str> = rng
                .some(&runners, 3)
                .into_iter()
                .map(|h| hosts[h])
                .collect();
            if !pinned.is_empty() {
                let _ = writeln!(out, "  runners = [{}]", pinned.join(", "));
            }
        } else {
            let _ = writeln!(out, "  replicas = {}", 1 + rng.below(2));
        }
        if rng.chance(50) {
            let _ = writeln!(
                out,
                "  paths = [\".\", \"{}\"]",
                rng.pick(&["apps", "src/lib", "a-b_c.d~"])
            );
        }
        if rng.chance(30) {
            let _ = writeln!(
                out,
                "  requirements = \"{}\"",
                rng.pick(&["requirements.txt", "reqs/prod.txt", "my reqs.txt"])
            );
        }
        if rng.chance(60) {
            let _ = writeln!(
                out,
                "  max_body = {}",
                rng.pick(&["1B", "1KB", "1023B", "10MB", "1TB", "3GiB"])
            );
        }
        for (url, dir) in rng.some(
            &[
                ("/static/", "collected_static"),
                ("/media/", "media"),
                ("/a-b_c.d~/", "a/b"),
            ],
            3,
        ) {
            let _ = writeln!(out, "  static \"{url}\" = \"{dir}\"");
        }
        let bindings: Vec<String> = databases
            .iter()
            .filter(|_| rng.chance(60))
            .map(|(db, redis)| {
                format!(
                    "{} = {db}",
                    if *redis {
                        format!("cache_{db}").replace('-', "_")
                    } else {
                        "default".to_string()
                    }
                )
            })
            .take(1)
            .collect();
        if !bindings.is_empty() {
            let _ = writeln!(out, "  databases {{ {} }}", bindings.join("  "));
        }
        let _ = writeln!(
            out,
            "  settings {{\n  SECRET_KEY = secret(\"{name}.secret_key\")\n{}  }}",
            settings_block(&mut rng)
        );
        if rng.chance(50) {
            let _ = writeln!(
                out,
                "  worker {} {{ command = \"celery -A x worker {}\" }}",
                rng.pick(&["celery", "w_2", "Jobs"]),
                text(&mut rng)
            );
        }
        out.push_str("}\n");
    }
    // A backup, from the database hosts to a backup host.
    let backup_hosts = has_role(&roles_of, "backup");
    let from: Vec<&str> = postgres_hosts
        .iter()
        .chain(&redis_hosts)
        .filter(|h| !backup_hosts.contains(h))
        .map(|h| hosts[*h])
        .take(2)
        .collect();
    if rng.chance(60) && !from.is_empty() {
        let to = hosts[*rng.pick(&backup_hosts)];
        let _ = writeln!(
            out,
            "\nbackup {} {{\n  from = [{}]\n  to = {to}\n  every = {}\n  keep {{ hourly = {}  daily = {}  weekly = 0  monthly = {} }}\n}}",
            rng.pick(&["hourly", "b_2", "Nightly"]),
            from.join(", "),
            rng.pick(&["1s", "1h", "90m", "52w", "1d"]),
            rng.pick(&[0, 1, 24, 100_000]),
            rng.pick(&[0, 14]),
            rng.pick(&[1, 12]),
        );
    }
    if own_role {
        // The role's own user, whom its timer may run as.
        let user = *rng.pick(&["deploy.x", "Deploy", "_svc"]);
        let _ = writeln!(
            out,
            "\nrole extra {{\n  package {} {{}}\n  user \"{}\" {{ system = true }}\n  directory \"/srv/extra\" {{ owner = \"deploy.x\"  mode = \"{}\" }}\n  file \"/srv/extra/motd\" {{\n    content = \"{}\\n\"\n    mode = \"{}\"\n  }}\n  timer {} {{\n    every = {}\n    command = \"{}\"\n    user = \"{}\"\n  }}\n  command {} {{ run = \"{}\"  creates = \"/srv/extra/made\" }}\n}}",
            rng.pick(&["htop", "python3-venv", "\"g++\""]),
            user,
            rng.pick(&["0755", "2775", "0700"]),
            text(&mut rng),
            rng.pick(&["0644", "0600", "4755", "0000"]),
            rng.pick(&["clean-tmp", "tick_2"]),
            rng.pick(&["1s", "90s", "52w", "1h"]),
            literal(&text(&mut rng)),
            rng.pick(&[user, "root", "www-data"]),
            rng.pick(&["make-it", "m_2"]),
            literal(&text(&mut rng)),
        );
    }
    out
}

/// The problems with one spec that `check` accepts; `None` when `check`
/// refuses it.
fn contract(seed: u64, pg: &Postgres, template: &std::path::Path) -> Option<Vec<String>> {
    let text = spec(seed);
    let mut sources = SourceMap::new();
    let report = sitec::compile::check_text(&mut sources, "contract.site", &text);
    if report.errors() > 0 {
        if std::env::var_os("CONTRACT_VERBOSE").is_some() {
            let said = sitec::diagnostic::render_human(&sources, &report.diagnostics, false);
            eprintln!("seed {seed}: check refused it:\n{said}");
        }
        return None;
    }
    let mut sources = SourceMap::new();
    let rendered = sitec::compile::render_text(
        &mut sources,
        "contract.site",
        &text,
        &SecretSource::Placeholders,
        &[],
    );
    if rendered.errors() > 0 {
        let said = sitec::diagnostic::render_human(&sources, &rendered.diagnostics, false);
        return Some(vec![format!("check accepted it, render did not:\n{said}")]);
    }
    let tree = Tree::new(
        rendered,
        &format!("seed {seed}"),
        &format!("contract-{seed}"),
    );
    let mut failures = Vec::new();
    tree::toml(&tree, &mut failures);
    tree::nginx(&tree, &mut failures);
    tree::units(&tree, &mut failures);
    tree::python(&tree, &mut failures);
    tree::backup_files(&tree, &mut failures);
    tree::postgres(&tree, pg, template, &mut failures);
    tree::redis(&tree, &mut failures);
    Some(failures)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn what_check_accepts_every_program_accepts() {
    if !common::require_root("nginx -t, sshd -t and postgres run as root") {
        return;
    }
    let cases = env_number("CONTRACT_CASES", 24);
    let first = env_number("CONTRACT_SEED", 1);
    let pg = Postgres::installed();
    let scratch = Scratch::new("contract-postgres");
    let template = scratch.path().join("cluster");
    pg.init_template(&template).expect("initdb");
    let mut accepted = 0;
    let mut failed = Vec::new();
    for seed in first..first + cases {
        match contract(seed, &pg, &template) {
            None => {}
            Some(failures) if failures.is_empty() => accepted += 1,
            Some(failures) => {
                accepted += 1;
                failed.push(format!(
                    "=== seed {seed} (CONTRACT_SEED={seed} CONTRACT_CASES=1):\n{}\n{}",
                    spec(seed),
                    failures.join("\n")
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    // Most generated specs must pass check, or this proves little.
    assert!(
        accepted * 2 >= cases,
        "check accepted only {accepted} of {cases} generated specs"
    );
}

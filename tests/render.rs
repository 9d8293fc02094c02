//! The rendered output of every example, proved three ways.
//!
//! - Snapshots: every file of every host of every `examples/*.site`,
//!   rendered with placeholder secrets, and each host's `resources.json`,
//!   against the insta snapshots in `golden/render/` (one per file, named
//!   `EXAMPLE__HOST__PATH`); a snapshot with no file behind it fails. The
//!   same examples rendered with real generated secrets differ from the
//!   snapshots only where a secret's value stands for its `PLACEHOLDER...`,
//!   and every file that holds one is marked secret.
//! - Determinism: rendering twice gives the same bytes, and so does every
//!   seeded permutation of `examples/epio.site`'s declarations (and of the
//!   entries inside its blocks), once the spec lines that files name are
//!   read through the spec they came from.
//! - The real programs accept the rendered trees: `nginx -t` on every
//!   runner's sites, `systemd-analyze verify` on every unit, `python3` on
//!   every module, a real `postgres` on every cluster's `postgresql.conf`
//!   and `pg_hba.conf` (primaries as primaries, standbys in recovery), a
//!   real `redis-server` on every `redis.conf` (replicas linked to their
//!   primary with the rendered passwords), and every `.toml` parses. The
//!   rendered paths are moved under a scratch directory the way
//!   `tests/templates.rs` moves the samples' (`common::relocate_text`).
//!
//! After an intended change: `INSTA_UPDATE=always cargo test --test render`,
//! then review `git diff golden/render`.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, free_port, redis_cli, relocate_text, repo, Postgres, Redis, Scratch};
use sitec::compile::{Rendered, SecretSource};
use sitec::resources::Kind;
use sitec::secrets::Secrets;
use sitec::source::SourceMap;

/// Every example spec, as a path relative to the package root (so origins
/// and snapshots name it the same on every machine).
fn examples() -> Vec<PathBuf> {
    std::env::set_current_dir(repo()).expect("package root");
    let mut specs: Vec<PathBuf> = fs::read_dir("examples")
        .expect("examples/")
        .map(|e| e.expect("readable examples/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "site"))
        .collect();
    specs.sort();
    assert!(!specs.is_empty(), "no examples/*.site");
    specs
}

fn stem(spec: &Path) -> String {
    spec.file_stem()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Renders `spec`, which must compile without an error.
fn render(spec: &Path, secrets: &SecretSource) -> Rendered {
    let mut sources = SourceMap::new();
    let rendered = sitec::compile::render(&mut sources, spec, secrets, &[]);
    assert_eq!(
        rendered.errors(),
        0,
        "{} does not render:\n{}",
        spec.display(),
        sitec::diagnostic::render_human(&sources, &rendered.diagnostics, false)
    );
    rendered
}

/// One rendered file.
struct File {
    host: String,
    path: String,
    content: String,
    secret: bool,
}

/// Every file sitec writes (absent ones are removed, not written), host by host.
fn files(rendered: &Rendered) -> Vec<File> {
    let mut out = Vec::new();
    for host in &rendered.hosts {
        for resource in &host.resources {
            if let Kind::File {
                path,
                content,
                secret,
                absent: false,
                ..
            } = &resource.kind
            {
                out.push(File {
                    host: host.name.clone(),
                    path: path.clone(),
                    content: content.clone(),
                    secret: *secret,
                });
            }
        }
    }
    out
}

/// Everything a render produces, by name: every file (`HOST:/path`), every
/// `HOST:resources.json`, the graph as dot and as JSON.
fn everything(rendered: &Rendered) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = files(rendered)
        .into_iter()
        .map(|f| (format!("{}:{}", f.host, f.path), f.content))
        .collect();
    for host in &rendered.hosts {
        all.insert(
            format!("{}:resources.json", host.name),
            sitec::output::host_json(host).expect("resources.json"),
        );
    }
    all.insert("graph.dot".into(), rendered.dot());
    all.insert("graph.json".into(), sitec::output::graph_json(rendered));
    all
}

/// `EXAMPLE__HOST__etc_nginx_...`: a file name for a snapshot.
fn snapshot_name(spec: &Path, host: &str, path: &str) -> String {
    format!(
        "{}__{host}__{}",
        stem(spec),
        path.trim_start_matches('/').replace('/', "_")
    )
}

#[test]
fn every_example_renders_as_its_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../golden/render");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let mut names = Vec::new();
    for spec in examples() {
        let rendered = render(&spec, &SecretSource::Placeholders);
        let mut snapshots: Vec<(String, String, String)> = files(&rendered)
            .into_iter()
            .map(|f| {
                (
                    snapshot_name(&spec, &f.host, &f.path),
                    format!("{}:{}", f.host, f.path),
                    f.content,
                )
            })
            .collect();
        for host in &rendered.hosts {
            snapshots.push((
                snapshot_name(&spec, &host.name, "resources.json"),
                format!("{}:resources.json", host.name),
                sitec::output::host_json(host).expect("resources.json"),
            ));
        }
        for (name, description, content) in snapshots {
            let mut settings = settings.clone();
            settings.set_description(format!("{} {description}", spec.display()));
            settings.bind(|| insta::assert_snapshot!(name.as_str(), content));
            names.push(name);
        }
    }
    // A snapshot whose file is no longer rendered is stale.
    let mut stale = Vec::new();
    for entry in fs::read_dir("golden/render").expect("golden/render") {
        let file = entry.expect("readable").file_name();
        let file = file.to_string_lossy();
        if let Some(name) = file.strip_suffix(".snap") {
            if !names.iter().any(|n| n == name) {
                stale.push(format!("golden/render/{file}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "snapshots of files no example renders (delete them):\n{}",
        stale.join("\n")
    );
}

/// The secrets file sitec created beside a spec: name to value.
fn secrets_file(spec: &Path) -> BTreeMap<String, String> {
    let path = Secrets::path_for(spec);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: toml_edit::DocumentMut = text.parse().expect("the secrets file is TOML");
    doc.iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.as_str()?.to_owned())))
        .collect()
}

/// The text of every app's TLS files, by the secret name it is used under.
fn tls_values(spec: &Path) -> BTreeMap<String, String> {
    let mut sources = SourceMap::new();
    let (values, _) = sitec::compile::with_fleet(&mut sources, spec, |fleet, _| {
        let base = spec.parent().expect("a folder");
        let read = |file: &str| fs::read_to_string(base.join(file)).expect("a TLS file");
        (fleet.apps.iter())
            .filter_map(|app| Some((app, app.tls.as_ref()?)))
            .flat_map(|(app, tls)| {
                [
                    (
                        sitec::context::tls_cert_secret(&app.name),
                        read(&tls.cert.0),
                    ),
                    (sitec::context::tls_key_secret(&app.name), read(&tls.key.0)),
                ]
            })
            .map(|(name, text)| (name, text.trim_end().to_string()))
            .collect()
    });
    values.unwrap_or_default()
}

#[test]
fn snapshots_hold_placeholders_never_secrets() {
    let placeholders = Secrets::placeholders();
    let mut failures = String::new();
    for spec in examples() {
        let with_placeholders = render(&spec, &SecretSource::Placeholders);
        // The same spec beside a fresh secrets file: real generated values.
        let scratch = Scratch::new("secrets");
        let copy = scratch.path().join(spec.file_name().expect("a file name"));
        fs::copy(&spec, &copy).expect("copy the spec");
        // And the files its apps' `tls` name, which are used as secrets.
        let tls = tls_values(&spec);
        if !tls.is_empty() {
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(repo().join("examples/tls"))
                .arg(scratch.path())
                .status()
                .expect("cp");
            assert!(status.success(), "copying examples/tls");
        }
        let with_secrets = render(&copy, &SecretSource::File);
        let mut secrets = secrets_file(&copy);
        secrets.extend(tls);
        assert!(!secrets.is_empty(), "{}: no secrets at all", spec.display());
        let expected: BTreeMap<String, (String, bool)> = files(&with_placeholders)
            .into_iter()
            .map(|f| (format!("{}:{}", f.host, f.path), (f.content, f.secret)))
            .collect();
        let mut seen = 0;
        for file in files(&with_secrets) {
            let key = format!("{}:{}", file.host, file.path);
            let mut text = file
                .content
                .replace(&*copy.to_string_lossy(), &spec.to_string_lossy());
            let mut holds_secret = false;
            for (name, value) in &secrets {
                let placeholder = placeholders.get(name).expect("a placeholder");
                if text.contains(value.as_str()) {
                    holds_secret = true;
                    text = text.replace(value.as_str(), &placeholder);
                }
                // An SSH key derived from a secret: its private half is secret too.
                if name.ends_with(".ssh_key") {
                    let real = sitec::sshkey::derive(value).expect("a key");
                    let shown = sitec::sshkey::derive(&placeholder).expect("a key");
                    let private = real.private_pem.trim_end();
                    if text.contains(private) {
                        holds_secret = true;
                        text = text.replace(private, shown.private_pem.trim_end());
                    }
                    text = text.replace(&real.public, &shown.public);
                }
                // A bus key derived from a secret: its secret half is secret too.
                if name.starts_with("bus.") {
                    let (real, shown) = (
                        sitec::bus::keys::derive(value),
                        sitec::bus::keys::derive(&placeholder),
                    );
                    let secret = real.key_file_text();
                    if text.contains(secret.trim_end()) {
                        holds_secret = true;
                        text = text.replace(secret.trim_end(), shown.key_file_text().trim_end());
                    }
                    text = text.replace(&real.public.z85(), &shown.public.z85());
                }
            }
            let Some((snapshot, marked)) = expected.get(&key) else {
                let _ = writeln!(failures, "{key}: rendered with secrets only");
                continue;
            };
            seen += 1;
            if &text != snapshot {
                let _ = writeln!(
                    failures,
                    "{key}: with its secrets replaced by placeholders, differs from its placeholder rendering"
                );
            }
            if holds_secret && !file.secret {
                let _ = writeln!(failures, "{key}: holds a secret but is not marked secret");
            }
            if snapshot.contains("PLACEHOLDER") && !marked {
                let _ = writeln!(
                    failures,
                    "{key}: holds a placeholder but is not marked secret"
                );
            }
        }
        if seen != expected.len() {
            let _ = writeln!(
                failures,
                "{}: {} files with placeholders, {seen} with secrets",
                spec.display(),
                expected.len()
            );
        }
        for host in &with_secrets.hosts {
            let json = sitec::output::host_json(host).expect("resources.json");
            for (name, value) in &secrets {
                if json.contains(value.as_str()) {
                    let _ = writeln!(
                        failures,
                        "{}:resources.json holds the value of `{name}`",
                        host.name
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    for spec in examples() {
        let first = everything(&render(&spec, &SecretSource::Placeholders));
        let second = everything(&render(&spec, &SecretSource::Placeholders));
        assert!(
            first == second,
            "{}: two renders differ in {:?}",
            spec.display(),
            first
                .iter()
                .filter(|(k, v)| second.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        );
    }
}

/// xorshift64*: a tiny seeded generator, so a failing permutation can be
/// named by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x % n as u64).expect("small")
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// How deep the braces are after `line` (outside string literals).
fn depth_change(line: &str) -> i32 {
    let mut depth = 0;
    let mut in_string = false;
    for c in line.chars() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => break,
            '{' if !in_string => depth += 1,
            '}' if !in_string => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// Splits lines into items that start at brace depth 0: each item is the
/// comment and blank lines above an entry, the entry, and everything up to
/// its closing brace. Trailing comments join the last item.
fn items(lines: &[String]) -> Vec<Vec<String>> {
    let mut items: Vec<Vec<String>> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut depth = 0;
    for line in lines {
        let trimmed = line.trim();
        if depth == 0 && (trimmed.is_empty() || trimmed.starts_with('#')) {
            pending.push(line.clone());
            continue;
        }
        if depth == 0 {
            let mut item = std::mem::take(&mut pending);
            item.push(line.clone());
            items.push(item);
        } else if let Some(last) = items.last_mut() {
            last.push(line.clone());
        }
        depth += depth_change(line);
    }
    if let Some(last) = items.last_mut() {
        last.extend(pending);
    }
    items
}

/// Reorders the entries of a multi-line block (its first line opens it,
/// its last closes it), recursively. `static` entries keep their order
/// among themselves: the first one is the app's `STATIC_URL`.
fn shuffle_block(item: Vec<String>, rng: &mut Rng) -> Vec<String> {
    let opens = item
        .iter()
        .position(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .expect("an entry line");
    let closes = item.iter().rposition(|l| l.trim() == "}").unwrap_or(0);
    if depth_change(&item[opens]) <= 0 || closes < opens + 2 {
        return item;
    }
    let head = item[..=opens].to_vec();
    let tail = item[closes..].to_vec();
    let mut children: Vec<Vec<String>> = items(&item[opens + 1..closes])
        .into_iter()
        .map(|child| shuffle_block(child, rng))
        .collect();
    let is_static = |c: &Vec<String>| c.iter().any(|l| l.trim_start().starts_with("static "));
    let statics: Vec<Vec<String>> = children.iter().filter(|c| is_static(c)).cloned().collect();
    rng.shuffle(&mut children);
    let mut statics = statics.into_iter();
    for child in &mut children {
        if is_static(child) {
            *child = statics.next().expect("as many statics");
        }
    }
    let mut out = head;
    out.extend(children.into_iter().flatten());
    out.extend(tail);
    out
}

/// A line with the names in its `roles`, `runners` and `from` lists (sets
/// of references) reordered.
fn shuffle_sets(line: &str, rng: &mut Rng) -> String {
    reorder_sets(line, |names| rng.shuffle(names))
}

fn reorder_sets(line: &str, mut reorder: impl FnMut(&mut Vec<&str>)) -> String {
    static SETS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\b(roles|runners|from) = \[([^\]]*)\]").expect("a pattern")
    });
    SETS.replace_all(line, |c: &regex::Captures| {
        let mut names: Vec<&str> = c[2].split(", ").collect();
        reorder(&mut names);
        format!("{} = [{}]", &c[1], names.join(", "))
    })
    .into_owned()
}

/// `text` with its top-level declarations, the entries of every multi-line
/// block and the names in every set of references in an order drawn from
/// `seed`. Every line keeps its text but for those sets.
fn permute(text: &str, seed: u64) -> String {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let lines: Vec<String> = text.lines().map(|l| shuffle_sets(l, &mut rng)).collect();
    let mut declarations: Vec<Vec<String>> = items(&lines)
        .into_iter()
        .map(|item| shuffle_block(item, &mut rng))
        .collect();
    rng.shuffle(&mut declarations);
    let mut out = declarations.concat().join("\n");
    out.push('\n');
    out
}

/// Everything rendered, with every `SPEC:LINE` replaced by that line's text (its
/// sets of references sorted), the spec's file name by `«spec»`, and
/// content hashes (which cover such origins) blanked: what stays is what
/// a permutation of the spec must not change.
fn normalize(rendered: &Rendered, spec: &Path, spec_text: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = spec_text.lines().collect();
    let pattern = regex::Regex::new(&format!(
        r"{}:(\d+)",
        regex::escape(&spec.to_string_lossy())
    ))
    .expect("a pattern");
    let hashes = regex::Regex::new(r#""sha256": "[0-9a-f]{64}""#).expect("a pattern");
    let file_name = spec
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    everything(rendered)
        .into_iter()
        .map(|(name, text)| {
            let text = pattern.replace_all(&text, |c: &regex::Captures| {
                let n: usize = c[1].parse().expect("a line number");
                let line = lines.get(n - 1).map_or("", |l| l.trim());
                format!("«{}»", reorder_sets(line, |names| names.sort_unstable()))
            });
            let text = hashes.replace_all(&text, r#""sha256": "…""#);
            // Rendered files name the spec by its file name alone.
            let text = text.replace(&file_name, "«spec»");
            (name, text)
        })
        .collect()
}

#[test]
fn declaration_order_changes_nothing() {
    std::env::set_current_dir(repo()).expect("package root");
    let spec = Path::new("examples/epio.site");
    let text = fs::read_to_string(spec).expect("examples/epio.site");
    let original = normalize(&render(spec, &SecretSource::Placeholders), spec, &text);
    let scratch = Scratch::new("permutations");
    for seed in 1..=6 {
        let permuted = permute(&text, seed);
        assert_ne!(permuted, text, "seed {seed} changed nothing");
        let path = scratch.path().join(format!("epio-{seed}.site"));
        fs::write(&path, &permuted).expect("write the permutation");
        let rendered = render(&path, &SecretSource::Placeholders);
        let got = normalize(&rendered, &path, &permuted);
        let differ: Vec<&String> = original
            .keys()
            .chain(got.keys())
            .filter(|k| original.get(*k) != got.get(*k))
            .collect();
        if let Some(first) = differ.first() {
            panic!(
                "seed {seed} (`SITEC_KEEP_SCRATCH=1` keeps {}) renders differently: {differ:?}\n\
                 --- original {first}:\n{}\n--- permuted:\n{}",
                path.display(),
                original.get(*first).map_or("(none)", String::as_str),
                got.get(*first).map_or("(none)", String::as_str),
            );
        }
    }
}

/// The first capture of `pattern` in `text`.
fn capture<'t>(text: &'t str, pattern: &str) -> Option<&'t str> {
    let re = regex::Regex::new(pattern).expect("a pattern");
    Some(re.captures(text)?.get(1)?.as_str())
}

#[test]
fn rendered_files_agree_with_each_other() {
    let mut failures = Vec::new();
    // How many of each link were followed: sites, routes, databases, caches, standbys, replicas.
    let mut followed = [0usize; 6];
    let databases = regex::Regex::new(
        r#""NAME": "([^"]+)",\s*"USER": "([^"]+)",\s*"PASSWORD": .*\s*"HOST": "([^"]+)",\s*"PORT": "(\d+)""#,
    )
    .expect("a pattern");
    let caches = regex::Regex::new(r#""LOCATION": "redis://([^/"]+)/"#).expect("a pattern");
    for spec in examples() {
        let rendered = render(&spec, &SecretSource::Placeholders);
        let all = files(&rendered);
        let address: BTreeMap<&str, &str> = rendered
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.address.as_str()))
            .collect();
        let listen_address: BTreeMap<&str, &str> = rendered
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.listen_address.as_str()))
            .collect();
        let text = |host: &str, path: &str| {
            all.iter()
                .find(|f| f.host == host && f.path == path)
                .map_or("", |f| f.content.as_str())
        };
        // Rendered servers on `address:port`, by kind.
        let servers = |prefix: &str, port: &str| -> BTreeMap<String, &File> {
            all.iter()
                .filter(|f| f.path.starts_with(prefix) && f.path.ends_with(".conf"))
                .filter_map(|f| {
                    let port = capture(&f.content, port)?;
                    Some((format!("{}:{port}", address[f.host.as_str()]), f))
                })
                .collect()
        };
        let postgres = servers("/etc/postgresql/", r"(?m)^port = (\d+)");
        let redis = servers("/etc/redis/", r"(?m)^port (\d+)");
        let mut fail = |what: String| failures.push(format!("{}: {what}", spec.display()));
        // App on runner: nginx site -> gunicorn socket -> the unit's runtime directory.
        let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let sites = all
            .iter()
            .filter(|f| f.path.starts_with("/etc/nginx/sites-enabled/"));
        for site in sites {
            let (host, at) = (site.host.as_str(), format!("{}:{}", site.host, site.path));
            let Some(app) = capture(&site.path, r"/sitec-(.+)\.conf$") else {
                fail(format!("{at}: not an app's site"));
                continue;
            };
            let upstream = capture(&site.content, r"(?m)^\s*server (\S+) ").unwrap_or("");
            let gunicorn = text(host, &format!("/etc/sitec/apps/{app}/gunicorn.conf.py"));
            let bind = capture(gunicorn, r#"(?m)^bind = \["([^"]+)"\]"#).unwrap_or("");
            let unit = text(
                host,
                &format!("/etc/systemd/system/sitec-app-{app}.service"),
            );
            let runtime = capture(unit, r"(?m)^RuntimeDirectory=(\S+)").unwrap_or("");
            if upstream != bind {
                fail(format!(
                    "{at}: nginx sends to `{upstream}`, gunicorn binds `{bind}`"
                ));
            }
            let socket_dir = bind.strip_prefix("unix:").map(|s| Path::new(s).parent());
            if socket_dir.is_some_and(|d| d != Some(&Path::new("/run").join(runtime))) {
                fail(format!(
                    "{at}: gunicorn binds `{bind}`, its unit creates /run/{runtime}"
                ));
            }
            let listen = capture(&site.content, r"(?m)^\s*listen (\S+);").unwrap_or("");
            let Some(port) = listen.strip_prefix(&format!("{}:", listen_address[host])) else {
                fail(format!(
                    "{at}: listens on `{listen}`, not on its host's listen address"
                ));
                continue;
            };
            // Where the balancers dial it.
            served
                .entry(app.to_owned())
                .or_default()
                .push(format!("{}:{port}", address[host]));
            followed[0] += 1;
        }
        // Every balancer routes each app to exactly the runners' nginx.
        for balancer in all.iter().filter(|f| f.path == "/etc/sitec/balancer.toml") {
            let doc: toml_edit::DocumentMut = balancer.content.parse().expect("TOML");
            let routes = doc["route"].as_array_of_tables().map_or(0, |r| r.len());
            for route in doc["route"].as_array_of_tables().into_iter().flatten() {
                let name = route["name"].as_str().unwrap_or_default();
                let mut backends: Vec<String> = route["backends"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.as_str().map(str::to_owned))
                    .collect();
                followed[1] += 1;
                let mut runners = served.get(name).cloned().unwrap_or_default();
                backends.sort();
                runners.sort();
                if backends != runners {
                    fail(format!(
                        "{}: route {name} to {backends:?}, its nginx listens on {runners:?}",
                        balancer.host
                    ));
                }
            }
            if routes != served.len() {
                fail(format!(
                    "{}: {routes} routes for {} apps",
                    balancer.host,
                    served.len()
                ));
            }
        }
        // Django settings name servers that exist and let the runner in.
        for settings in all
            .iter()
            .filter(|f| f.path.ends_with("/sitec_settings.py"))
        {
            let at = format!("{}:{}", settings.host, settings.path);
            let runner = address[settings.host.as_str()];
            for c in databases.captures_iter(&settings.content) {
                followed[2] += 1;
                let server = format!("{}:{}", &c[3], &c[4]);
                let Some(conf) = postgres.get(&server) else {
                    fail(format!("{at}: no postgres renders at {server}"));
                    continue;
                };
                if conf.content.contains("\nprimary_conninfo") {
                    fail(format!("{at}: {server} is a standby"));
                }
                let hba = text(
                    &conf.host,
                    &conf.path.replace("postgresql.conf", "pg_hba.conf"),
                );
                let line = format!(r"(?m)^host\s+{}\s+{}\s+{runner}/32\s", &c[1], &c[2]);
                if capture(hba, &format!("({line})")).is_none() {
                    fail(format!(
                        "{at}: {server}'s pg_hba.conf lets no `{}` in from {runner}",
                        &c[2]
                    ));
                }
            }
            for c in caches.captures_iter(&settings.content) {
                followed[3] += 1;
                if !redis.contains_key(&c[1]) {
                    fail(format!("{at}: no redis renders at {}", &c[1]));
                }
            }
        }
        // Followers follow a rendered primary, which lets them in.
        for (server, conf) in &postgres {
            let Some(conninfo) = capture(&conf.content, r"(?m)^primary_conninfo = '([^']+)'")
            else {
                continue;
            };
            followed[4] += 1;
            let primary = conninfo_address(conninfo).unwrap_or_default();
            let user = capture(conninfo, r"user=(\S+)").unwrap_or("");
            let hba = postgres
                .get(&primary)
                .map(|p| text(&p.host, &p.path.replace("postgresql.conf", "pg_hba.conf")));
            let standby = address[conf.host.as_str()];
            let line = format!(r"(?m)^(host\s+replication\s+{user}\s+{standby}/32\s)");
            if hba.is_none_or(|hba| capture(hba, &line).is_none()) {
                fail(format!("standby {server} follows {primary}, which does not let `{user}` in from {standby}"));
            }
        }
        for (server, conf) in &redis {
            if let Some(primary) = capture(&conf.content, r"(?m)^replicaof (\S+ \d+)") {
                followed[5] += 1;
                let primary = primary.replace(' ', ":");
                if !redis.contains_key(&primary) {
                    fail(format!(
                        "replica {server} follows {primary}, where no redis renders"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        followed.iter().all(|n| *n > 0),
        "sites, routes, databases, caches, standbys, replicas followed: {followed:?}"
    );
}

// ---------------------------------------------------------------------------
// The real programs, on the rendered trees.

/// An example rendered into a scratch directory: `ROOT/HOST/<path>` for
/// every file, with every production path in every file moved below
/// `ROOT/HOST`, so files point at each other inside the tree. Every
/// directory resource is created, as apply would.
struct Tree {
    scratch: Scratch,
    spec: PathBuf,
    rendered: Rendered,
}

impl Tree {
    fn new(spec: &Path, what: &str) -> Tree {
        let scratch = Scratch::new(&format!("{what}-{}", stem(spec)));
        let rendered = render(spec, &SecretSource::Placeholders);
        let root = scratch.path().join("tree");
        sitec::output::write_tree(&root, &rendered).expect("write the tree");
        for host in &rendered.hosts {
            let base = root.join(&host.name);
            for resource in &host.resources {
                match &resource.kind {
                    Kind::File {
                        path,
                        absent: false,
                        ..
                    } => {
                        let file = base.join(path.trim_start_matches('/'));
                        let text = fs::read_to_string(&file).expect("a rendered file");
                        fs::write(&file, relocate_text(&text, &base)).expect("relocate");
                    }
                    Kind::Directory { path, .. } => {
                        fs::create_dir_all(base.join(path.trim_start_matches('/')))
                            .expect("a directory");
                    }
                    _ => {}
                }
            }
        }
        Tree {
            scratch,
            spec: spec.to_owned(),
            rendered,
        }
    }

    fn host(&self, host: &str) -> PathBuf {
        self.scratch.path().join("tree").join(host)
    }

    /// `(host, file)` for every rendered file whose path matches `which`.
    fn files(&self, which: impl Fn(&str) -> bool) -> Vec<(String, PathBuf)> {
        files(&self.rendered)
            .into_iter()
            .filter(|f| which(&f.path))
            .map(|f| {
                let file = self.host(&f.host).join(f.path.trim_start_matches('/'));
                (f.host, file)
            })
            .collect()
    }

    fn label(&self, host: &str) -> String {
        format!("{} host {host}", self.spec.display())
    }
}

/// Runs `check` on every example's tree, then fails once with every failure.
fn check_trees(what: &str, mut check: impl FnMut(&Tree, &mut Vec<String>)) {
    let mut failures = Vec::new();
    for spec in examples() {
        let tree = Tree::new(&spec, what);
        check(&tree, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn note(failures: &mut Vec<String>, label: &str, result: Result<(), String>) {
    if let Err(e) = result {
        failures.push(format!("--- {label}:\n{e}"));
    }
}

/// Groups `(host, file)` pairs by host, in order.
fn by_host(files: Vec<(String, PathBuf)>) -> BTreeMap<String, Vec<PathBuf>> {
    let mut hosts: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (host, file) in files {
        hosts.entry(host).or_default().push(file);
    }
    hosts
}

/// A site with its `listen ADDRESS:PORT` moved to a free loopback port:
/// `nginx -t` binds every listen socket, and the host's address is not this
/// machine's.
fn listen_on_loopback(site: &Path) -> Result<(), String> {
    let text = fs::read_to_string(site).map_err(|e| e.to_string())?;
    let listen = regex::Regex::new(r"(?m)^(\s*listen\s+)\S+:\d+;").expect("a pattern");
    if !listen.is_match(&text) {
        return Err("no `listen ADDRESS:PORT;`".into());
    }
    let moved = listen.replace_all(&text, |c: &regex::Captures| {
        format!("{}127.0.0.1:{};", &c[1], free_port())
    });
    fs::write(site, moved.as_bytes()).map_err(|e| e.to_string())
}

#[test]
fn nginx_accepts_every_runners_sites() {
    if !common::require_root("nginx -t opens its pid and log files as root") {
        return;
    }
    let mut checked = 0;
    check_trees("nginx", |tree, failures| {
        let sites = tree.files(|p| p.starts_with("/etc/nginx/sites-enabled/"));
        for (host, sites) in by_host(sites) {
            checked += 1;
            let dir = tree.host(&host).join("nginx-test");
            fs::create_dir_all(&dir).expect("nginx test folder");
            let tested = sites
                .iter()
                .try_for_each(|site| listen_on_loopback(site))
                .and_then(|()| common::nginx_test(&dir, &sites));
            note(failures, &tree.label(&host), tested);
        }
    });
    assert!(checked > 0, "no runner renders nginx sites");
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    check_trees("systemd", |tree, failures| {
        let units = tree.files(|p| p.starts_with("/etc/systemd/system/"));
        for (host, units) in by_host(units) {
            let base = tree.host(&host);
            let stubbed = units.iter().try_for_each(|unit| {
                let text = fs::read_to_string(unit).map_err(|e| e.to_string())?;
                common::stub_unit_programs(&text, &base)
            });
            note(
                failures,
                &tree.label(&host),
                stubbed.and_then(|()| common::verify_units(&units)),
            );
        }
    });
}

#[test]
fn backup_files_pass_their_programs() {
    if !common::require_root("sshd -t wants its privilege separation folder, /run/sshd") {
        return;
    }
    let mut checked = [0; 4];
    check_trees("backup", |tree, failures| {
        let configs = tree.files(|p| p.starts_with("/etc/sitec/backup/") && p.ends_with(".toml"));
        for (host, config) in configs {
            checked[0] += 1;
            let side = if config.to_string_lossy().ends_with(".pull.toml") {
                "pull"
            } else {
                "snapshot"
            };
            note(
                failures,
                &tree.label(&host),
                common::run(
                    std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
                        .args(["data", side, "--check", "--config"])
                        .arg(&config),
                )
                .map(drop),
            );
        }
        let keys = tree.files(|p| p.starts_with("/etc/sitec/backup/authorized_keys."));
        for (host, file) in keys {
            checked[1] += 1;
            let text = fs::read_to_string(&file).expect("rendered");
            let lines = text.lines().filter(|l| l.starts_with("restrict,")).count();
            note(
                failures,
                &tree.label(&host),
                common::authorized_keys_check(&file, lines),
            );
        }
        let private = tree.files(|p| p.starts_with("/etc/sitec/backup/") && p.ends_with(".key"));
        for (host, file) in private {
            checked[2] += 1;
            note(
                failures,
                &tree.label(&host),
                common::private_key_check(&file, &tree.host(&host)).map(drop),
            );
        }
        for (host, file) in tree.files(|p| p.starts_with("/etc/ssh/sshd_config.d/")) {
            checked[3] += 1;
            note(
                failures,
                &tree.label(&host),
                common::sshd_check(&file, &tree.host(&host)),
            );
        }
    });
    assert!(
        checked.iter().all(|n| *n > 0),
        "sitec data configs, authorized_keys, keys, sshd configs checked: {checked:?}"
    );
}

/// The backup host's key opens the database hosts' `authorized_keys`: the
/// public key derived from the private key the backup host holds is the one
/// each database host it pulls from accepts.
#[test]
fn backup_keys_match_across_hosts() {
    let mut checked = 0;
    check_trees("backup-keys", |tree, failures| {
        for (vault, key) in
            tree.files(|p| p.starts_with("/etc/sitec/backup/") && p.ends_with(".key"))
        {
            let public = match common::private_key_check(&key, &tree.host(&vault)) {
                Ok(public) => public,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let public = public
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let accepting: Vec<String> = tree
                .files(|p| p.starts_with("/etc/sitec/backup/authorized_keys."))
                .into_iter()
                .filter(|(_, f)| fs::read_to_string(f).is_ok_and(|t| t.contains(&public)))
                .map(|(host, _)| host)
                .collect();
            checked += accepting.len();
            if accepting.is_empty() {
                failures.push(format!(
                    "{}: no host accepts {}",
                    tree.label(&vault),
                    key.display()
                ));
            }
        }
    });
    assert!(checked > 0, "no backup key checked");
}

#[test]
fn python_compiles_and_runs_every_module() {
    check_trees("python", |tree, failures| {
        let modules: Vec<PathBuf> = tree
            .files(|p| p.ends_with(".py"))
            .into_iter()
            .map(|(_, module)| module)
            .collect();
        let label = tree.spec.display().to_string();
        // The project settings modules sitec's import, as stubs (the projects
        // need their requirements installed to import).
        let imported: Vec<String> = (modules.iter())
            .filter_map(|m| fs::read_to_string(m).ok())
            .flat_map(|text| {
                (text.lines())
                    .filter(|l| l.ends_with("- the project's own settings"))
                    .filter_map(|l| Some(l.strip_prefix("from ")?.split(' ').next()?.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let stubs = tree.scratch.path().join("stub-projects");
        let imported: Vec<&str> = imported.iter().map(String::as_str).collect();
        let ran = common::stub_modules(&stubs, &imported)
            .and_then(|()| common::python_compile_and_run(&modules, &[stubs]));
        note(failures, &label, ran);
    });
}

#[test]
fn every_toml_file_parses() {
    check_trees("toml", |tree, failures| {
        for (host, file) in tree.files(|p| p.ends_with(".toml")) {
            let text = fs::read_to_string(&file).expect("rendered");
            let mut parsed = text
                .parse::<toml_edit::DocumentMut>()
                .map(drop)
                .map_err(|e| format!("not TOML: {e}\n{text}"));
            if parsed.is_ok() && file.ends_with("etc/sitec/agent.toml") {
                // The agent reads it: its own check accepts every one.
                parsed = common::run(
                    std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
                        .args(["agent", "--check", "--config"])
                        .arg(&file),
                )
                .map(drop);
            }
            note(
                failures,
                &format!("{} {}", tree.label(&host), file.display()),
                parsed,
            );
        }
    });
}

/// Every rendered `balancer.toml` passes `sitec balancer --check`, which
/// reads it as a start does, certificates and keys too: rendered with real
/// secrets beside the spec's TLS files (placeholders are no PEM), its
/// paths moved under the tree where those files were written.
#[test]
fn every_balancer_config_passes_the_balancers_check() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for spec in examples() {
        let scratch = Scratch::new(&format!("balancer-{}", stem(&spec)));
        let copy = scratch.path().join(spec.file_name().expect("a file name"));
        fs::copy(&spec, &copy).expect("copy the spec");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(repo().join("examples/tls"))
            .arg(scratch.path())
            .status()
            .expect("cp");
        assert!(status.success(), "copying examples/tls");
        let rendered = render(&copy, &SecretSource::File);
        let root = scratch.path().join("tree");
        sitec::output::write_tree(&root, &rendered).expect("write the tree");
        for file in files(&rendered)
            .into_iter()
            .filter(|f| f.path == "/etc/sitec/balancer.toml")
        {
            let base = root.join(&file.host);
            let config = base.join("etc/sitec/balancer.toml");
            fs::write(&config, relocate_text(&file.content, &base)).expect("relocate");
            let checked_config = common::run(
                std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
                    .args(["balancer", "--check", "--config"])
                    .arg(&config),
            )
            .and_then(|said| {
                if said.contains("is valid") {
                    Ok(())
                } else {
                    Err(format!("no verdict: {said}"))
                }
            });
            note(
                &mut failures,
                &format!("{} host {}", spec.display(), file.host),
                checked_config,
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no balancer.toml rendered");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The value of `key = 'value'` (or `key value`) in a rendered config.
fn setting<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        if !rest.starts_with([' ', '=']) {
            return None;
        }
        let value = rest.trim_start().trim_start_matches('=').trim();
        Some(value.trim_matches(['\'', '"']))
    })
}

/// `text` with its `KEY = VALUE` (or `KEY VALUE`) line's value replaced.
fn set(text: &str, key: &str, value: &str) -> String {
    let pattern = regex::Regex::new(&format!(r"(?m)^({}\s*=?\s*).*$", regex::escape(key)))
        .expect("a pattern");
    pattern
        .replace(text, |c: &regex::Captures| format!("{}{value}", &c[1]))
        .into_owned()
}

/// `host=... port=...` of a standby's `primary_conninfo`, as `host:port`.
fn conninfo_address(conninfo: &str) -> Option<String> {
    let word = |key: &str| {
        conninfo
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    };
    Some(format!("{}:{}", word("host")?, word("port")?))
}

#[test]
fn postgres_starts_on_every_cluster() {
    if !common::require_root("the server runs as the postgres user, through runuser") {
        return;
    }
    let pg = Postgres::installed();
    let scratch = Scratch::new("postgres-template");
    let template = scratch.path().join("cluster");
    pg.init_template(&template).expect("initdb");
    let mut primaries = 0;
    check_trees("postgres", |tree, failures| {
        // Primaries first: a standby's data directory is a copy of its
        // primary's after the primary ran on its rendered config, as a base
        // backup would be. Rendered `address:port` to the primary's data.
        let mut confs = tree.files(|p| p.ends_with("/postgresql.conf"));
        confs.sort_by_key(|(_, conf)| {
            fs::read_to_string(conf).is_ok_and(|t| t.contains("\nprimary_conninfo"))
        });
        let mut datas: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (host, conf) in confs {
            let label = format!("{} {}", tree.label(&host), conf.display());
            let text = fs::read_to_string(&conf).expect("rendered");
            let standby = setting(&text, "primary_conninfo");
            primaries += usize::from(standby.is_none());
            let started = (|| {
                let config = conf.parent().expect("in a folder");
                let field = |key| setting(&text, key).ok_or(format!("no `{key}`"));
                let data = Path::new(field("data_directory")?);
                let source = match standby {
                    None => template.clone(),
                    Some(conninfo) => {
                        let primary = conninfo_address(conninfo).ok_or("no host and port")?;
                        datas
                            .get(&primary)
                            .ok_or(format!("no rendered primary at {primary}"))?
                            .clone()
                    }
                };
                // The role renders `standby.signal` into a standby's data
                // directory, and only there: the copy gets the rendered one.
                let signal = data.join("standby.signal");
                let rendered_signal = fs::read_to_string(&signal).ok();
                if standby.is_some() != rendered_signal.is_some() {
                    return Err(format!(
                        "a {} with{} a rendered {}",
                        if standby.is_some() {
                            "standby"
                        } else {
                            "primary"
                        },
                        if rendered_signal.is_some() { "" } else { "out" },
                        signal.display()
                    ));
                }
                if data.exists() {
                    fs::remove_dir_all(data).map_err(|e| e.to_string())?;
                }
                pg.copy_cluster(&source, data)?;
                if let Some(content) = rendered_signal {
                    pg.write(&signal, &content)?;
                } else {
                    let address = field("listen_addresses")?.rsplit(',').next().unwrap_or("");
                    datas.insert(format!("{address}:{}", field("port")?), data.to_owned());
                }
                // Other tests run servers too: a free port instead of the rendered one.
                let port = free_port();
                pg.own(config)?;
                pg.write(&conf, &set(&text, "port", &port.to_string()))?;
                pg.own(&config.join("pg_hba.conf"))?;
                pg.write(Path::new(field("ident_file")?), "")?;
                let socket = field("unix_socket_directories")?;
                pg.own(Path::new(socket))?;
                let server =
                    pg.start(config, &config.join("server.log"), socket, port.into(), "")?;
                // In recovery or not, and every line of both files understood.
                let query = "select pg_is_in_recovery() || '|' \
                    || (select coalesce(string_agg(name || ': ' || error, '; '), '') \
                        from pg_file_settings where error is not null) || '|' \
                    || (select coalesce(string_agg(line_number || ': ' || error, '; '), '') \
                        from pg_hba_file_rules where error is not null)";
                let want = if standby.is_some() {
                    "true||"
                } else {
                    "false||"
                };
                let got = server.psql(query)?;
                if got == want {
                    Ok(())
                } else {
                    Err(server.with_log(&format!(
                        "recovery|settings errors|pg_hba errors: {got:?}, not {want:?}"
                    )))
                }
            })();
            note(failures, &label, started);
        }
    });
    assert!(primaries > 0, "no example renders a primary cluster");
}

#[test]
fn redis_starts_on_every_server() {
    let mut replicas = 0;
    check_trees("redis", |tree, failures| {
        // Primaries first, so replicas can follow them: rendered
        // `address:port` of each primary to the loopback port it runs on.
        let mut confs = tree.files(|p| p.starts_with("/etc/redis/"));
        confs.sort_by_key(|(_, conf)| {
            fs::read_to_string(conf).is_ok_and(|t| t.contains("\nreplicaof "))
        });
        let mut ports: BTreeMap<String, u16> = BTreeMap::new();
        let mut running = Vec::new();
        for (host, conf) in confs {
            let label = format!("{} {}", tree.label(&host), conf.display());
            let text = fs::read_to_string(&conf).expect("rendered");
            let started = (|| {
                let field = |key| setting(&text, key).ok_or(format!("no `{key}`"));
                fs::create_dir_all(field("dir")?).map_err(|e| e.to_string())?;
                for file in ["pidfile", "logfile"] {
                    let parent = Path::new(field(file)?).parent().expect("in a folder");
                    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                let port = free_port();
                let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
                    .map(str::to_owned)
                    .to_vec();
                let address = field("bind")?
                    .split_whitespace()
                    .last()
                    .unwrap_or_default()
                    .to_owned();
                ports.insert(format!("{address}:{}", field("port")?), port);
                if let Some(primary) = setting(&text, "replicaof") {
                    replicas += 1;
                    let primary = primary.replace(' ', ":");
                    let followed = ports
                        .get(&primary)
                        .ok_or(format!("no rendered primary at {primary}"))?;
                    args.extend([
                        "--replicaof".into(),
                        "127.0.0.1".into(),
                        followed.to_string(),
                    ]);
                }
                let server = Redis::start(&conf, &args)?;
                let password = field("requirepass")?.to_owned();
                let cli = |args: &[&str]| redis_cli("127.0.0.1", port.into(), &password, args);
                let up = eventually(Duration::from_secs(5), || {
                    cli(&["ping"]).is_ok_and(|out| out.trim() == "PONG")
                });
                let linked = setting(&text, "replicaof").is_none()
                    || eventually(Duration::from_secs(10), || {
                        cli(&["info", "replication"])
                            .is_ok_and(|out| out.contains("master_link_status:up"))
                    });
                let pid_written = Path::new(field("pidfile")?).is_file();
                let log = || fs::read_to_string(field("logfile")?).map_err(|e| e.to_string());
                match (up, linked, pid_written) {
                    (true, true, true) => Ok((server, port, password)),
                    (false, _, _) => Err(format!("no PONG\n{}", log()?)),
                    (_, false, _) => Err(format!(
                        "the replica never linked to its primary with the rendered password\n{}",
                        log()?
                    )),
                    _ => Err(format!("no pid file\n{}", log()?)),
                }
            })();
            match started {
                Ok(server) => running.push(server),
                Err(e) => failures.push(format!("--- {label}:\n{e}")),
            }
        }
        for (_, port, password) in &running {
            let _ = redis_cli(
                "127.0.0.1",
                (*port).into(),
                password,
                &["shutdown", "nosave"],
            );
        }
    });
    assert!(replicas > 0, "no example renders a Redis replica");
}

/// What every host is sent, resource by resource (kinds hold each file's
/// content): what must not change with the spec's spelling or its comments.
fn sent(rendered: &Rendered) -> Vec<String> {
    (rendered.hosts.iter())
        .flat_map(|h| {
            h.resources.iter().map(move |r| {
                format!(
                    "{} {}",
                    h.name,
                    serde_json::to_string(&r.kind).expect("a kind")
                )
            })
        })
        .collect()
}

/// `./x.site`, `x.site` and `/abs/x.site` are one spec, and a comment above
/// a declaration shifts lines but changes nothing a host uses: each renders
/// the same resources, byte for byte (issue #24: a plan changed 16 files for
/// the spelling alone).
#[test]
fn the_specs_spelling_and_its_comments_change_nothing_sent() {
    std::env::set_current_dir(repo()).expect("package root");
    for spec in examples() {
        let original = sent(&render(&spec, &SecretSource::Placeholders));
        let dotted = Path::new(".").join(&spec);
        let absolute = repo().join(&spec);
        for other in [&dotted, &absolute] {
            let got = sent(&render(other, &SecretSource::Placeholders));
            assert!(
                got == original,
                "{} and {} render differently",
                spec.display(),
                other.display()
            );
        }
        let text = fs::read_to_string(&spec).expect("the example");
        let commented: String = text
            .lines()
            .flat_map(|l| {
                let comment =
                    (!l.starts_with([' ', '}'])).then_some("# a comment the operator added\n#\n");
                comment.into_iter().chain([l, "\n"])
            })
            .collect();
        let scratch = Scratch::new("commented");
        let copy = scratch.path().join(spec.file_name().expect("a file name"));
        fs::write(&copy, &commented).expect("the commented copy");
        let got = sent(&render(&copy, &SecretSource::Placeholders));
        let differ: Vec<(&String, &String)> =
            original.iter().zip(&got).filter(|(a, b)| a != b).collect();
        assert!(
            differ.is_empty() && got.len() == original.len(),
            "{} with comments renders differently: {:?}",
            spec.display(),
            differ.first()
        );
    }
}

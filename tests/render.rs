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

use common::tree::{self, conninfo_address, files, note, File, Tree};
use common::{relocate_text, repo, Postgres, Scratch};
use sitec::compile::{Rendered, SecretSource};
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

/// Copies the templates of their own the examples' roles name
/// (`examples/templates`) into `folder`, beside a copy of an example.
fn copy_own_templates(folder: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("examples/templates"))
        .arg(folder)
        .status()
        .expect("cp");
    assert!(status.success(), "copying examples/templates");
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
        copy_own_templates(scratch.path());
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
                // The fleet CA's certificate and a database host's
                // certificate and key, derived from the CA's secret.
                if name == sitec::fleet_ca::CA_SECRET {
                    let ca = |s: &str| sitec::fleet_ca::ca_pem(s).expect("a CA");
                    text = text.replace(ca(value).trim_end(), ca(&placeholder).trim_end());
                    for server in ["postgres", "redis", sitec::fleet_ca::PEER] {
                        let key = |s: &str| {
                            sitec::fleet_ca::server_key_pem(s, &file.host, server).expect("a key")
                        };
                        if text.contains(key(value).trim_end()) {
                            holds_secret = true;
                            text =
                                text.replace(key(value).trim_end(), key(&placeholder).trim_end());
                        }
                    }
                    // The certificate's header names whose it is and for what.
                    let names = text.lines().find_map(|l| {
                        let rest = l.strip_prefix("# The certificate of this host's ")?;
                        let (server, names) =
                            rest.split_once(" server, signed by the fleet CA, for ")?;
                        let names = names.trim_end_matches('.').split(", ");
                        Some((
                            server.to_string(),
                            names.map(String::from).collect::<Vec<_>>(),
                        ))
                    });
                    if let Some((server, names)) = names {
                        let cert = |s: &str| {
                            sitec::fleet_ca::server(s, &file.host, &server, &names)
                                .expect("a certificate")
                                .cert_pem
                        };
                        text = text.replace(cert(value).trim_end(), cert(&placeholder).trim_end());
                    }
                    // A GlusterFS peer's certificate (gluster/tls.pem).
                    let peer_names = text.lines().find_map(|l| {
                        let names = l.strip_prefix(
                            "# The certificate this host speaks GlusterFS with, as server and client, signed by the fleet CA, for ",
                        )?;
                        Some(names.trim_end_matches('.').split(", ").map(String::from).collect::<Vec<_>>())
                    });
                    if let Some(names) = peer_names {
                        let cert = |s: &str| {
                            sitec::fleet_ca::peer(s, &file.host, &names)
                                .expect("a certificate")
                                .cert_pem
                        };
                        text = text.replace(cert(value).trim_end(), cert(&placeholder).trim_end());
                    }
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
    let caches = regex::Regex::new(r#""LOCATION": "rediss://([^/"]+)/"#).expect("a pattern");
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
        let redis = servers("/etc/sitec/redis/", r"(?m)^tls-port (\d+)");
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
        // A unit's drop-in starts its program with a config file that is rendered.
        for dropin in all.iter().filter(|f| f.path.contains(".service.d/")) {
            let instance = capture(&dropin.path, r"@([^/.]+)\.service\.d/").unwrap_or("");
            for config in dropin
                .content
                .lines()
                .filter_map(|l| l.strip_prefix("ExecStart="))
            {
                let Some(file) = config.split_whitespace().nth(1) else {
                    continue;
                };
                let file = file.replace("%i", instance);
                if text(&dropin.host, &file).is_empty() {
                    fail(format!(
                        "{}:{}: starts with {file}, which is not rendered",
                        dropin.host, dropin.path
                    ));
                }
            }
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
            // HOST lists the primary, then its standby (libpq keeps the
            // one that takes writes): each lets the app in.
            let servers = databases.captures_iter(&settings.content).flat_map(|c| {
                let hosts: Vec<String> = c[3].split(',').map(str::to_string).collect();
                (hosts.into_iter().enumerate()).map(move |(i, h)| {
                    (
                        i == 0,
                        format!("{h}:{}", &c[4]),
                        c[1].to_string(),
                        c[2].to_string(),
                    )
                })
            });
            for (first, server, name, user) in servers.collect::<Vec<_>>() {
                followed[2] += 1;
                let Some(conf) = postgres.get(&server) else {
                    fail(format!("{at}: no postgres renders at {server}"));
                    continue;
                };
                if first && conf.content.contains("\nprimary_conninfo") {
                    fail(format!("{at}: {server} is a standby"));
                }
                if !first && !conf.content.contains("\nprimary_conninfo") {
                    fail(format!("{at}: {server}, second in HOST, is no standby"));
                }
                let hba = text(
                    &conf.host,
                    &conf.path.replace("postgresql.conf", "pg_hba.conf"),
                );
                let line = format!(r"(?m)^hostssl\s+{name}\s+{user}\s+{runner}/32\s");
                if capture(hba, &format!("({line})")).is_none() {
                    fail(format!(
                        "{at}: {server}'s pg_hba.conf lets no `{user}` in from {runner}"
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
            let line = format!(r"(?m)^(hostssl\s+replication\s+{user}\s+{standby}/32\s)");
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
// The real programs, on the rendered trees (`common::tree`).

/// Runs `check` on every example's tree, then fails once with every failure.
fn check_trees(what: &str, mut check: impl FnMut(&Tree, &mut Vec<String>)) {
    let mut failures = Vec::new();
    for spec in examples() {
        let rendered = render(&spec, &SecretSource::Placeholders);
        let name = spec.display().to_string();
        let tree = Tree::new(rendered, &name, &format!("{what}-{}", stem(&spec)));
        check(&tree, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn nginx_accepts_every_runners_sites() {
    if !common::require_root("nginx -t opens its pid and log files as root") {
        return;
    }
    let mut checked = 0;
    check_trees("nginx", |tree, failures| {
        checked += tree::nginx(tree, failures)
    });
    assert!(checked > 0, "no runner renders nginx sites");
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    check_trees("systemd", |tree, failures| {
        tree::units(tree, failures);
    });
}

#[test]
fn backup_files_pass_their_programs() {
    if !common::require_root("sshd -t wants its privilege separation folder, /run/sshd") {
        return;
    }
    let mut checked = [0; 4];
    check_trees("backup", |tree, failures| {
        let found = tree::backup_files(tree, failures);
        for (total, n) in checked.iter_mut().zip(found) {
            *total += n;
        }
    });
    assert!(
        checked.iter().all(|n| *n > 0),
        "sitec data configs, authorized_keys, keys, sshd configs checked: {checked:?}"
    );
}

#[test]
fn backup_keys_match_across_hosts() {
    let mut checked = 0;
    check_trees("backup-keys", |tree, failures| {
        checked += tree::backup_keys(tree, failures);
    });
    assert!(checked > 0, "no backup key checked");
}

#[test]
fn python_compiles_and_runs_every_module() {
    check_trees("python", |tree, failures| {
        tree::python(tree, failures);
    });
}

#[test]
fn every_toml_file_parses() {
    check_trees("toml", |tree, failures| {
        tree::toml(tree, failures);
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
        copy_own_templates(scratch.path());
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
        primaries += tree::postgres(tree, &pg, &template, failures);
    });
    assert!(primaries > 0, "no example renders a primary cluster");
}

#[test]
fn redis_starts_on_every_server() {
    let mut replicas = 0;
    check_trees("redis", |tree, failures| {
        replicas += tree::redis(tree, failures);
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
        copy_own_templates(scratch.path());
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

//! The driver: runs the compiler's stages in order on one spec.
//!
//! `check` loads the root file and every module it uses (`modules`, which
//! parses each with `syntax`), then resolves names and types (`resolve`);
//! when that finds no error it builds the fleet model (`model`), runs the
//! fleet checks (`checks`) and checks every role's strings and scopes
//! without a host (`expand::lint`); for a spec on disk it then looks up the apps'
//! files beside it (`local_files`).
//! Each stage returns its result with its diagnostics; the driver collects
//! them, in source order, and never prints: the commands in `cli` do.

use crate::diagnostic::{self, Diagnostic};
use crate::modules;
use crate::resolve::{self, schema::Kind};
use crate::source::SourceMap;
use std::path::Path;

/// What `sitec check` learns about a spec.
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    /// How many of each kind the spec declares (stdlib roles included).
    pub counts: Vec<(Kind, usize)>,
    /// The fleet checks did not run: names or types had errors, and the
    /// fleet model is built only from a spec without.
    pub held_back: bool,
    /// The syntax trees checked. Kept so that a caller about to exit can
    /// skip freeing them ([`Report::leak`]).
    _program: modules::Program,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// Hands out the diagnostics and never frees the rest: for `sitec
    /// check`, which exits right after. Freeing the syntax trees of a 1 MB
    /// spec is about a seventh of its check (glibc walks every small chunk
    /// freed so far), work that ending the process does for nothing.
    #[must_use]
    pub fn leak(mut self) -> Vec<Diagnostic> {
        let diagnostics = std::mem::take(&mut self.diagnostics);
        std::mem::forget(self);
        diagnostics
    }

    /// The modules checked, the root first (the language server indexes them).
    pub fn program(&self) -> &modules::Program {
        &self._program
    }

    /// "3 hosts, 1 app, 1 database"
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|(kind, n)| *n > 0 && *kind != Kind::Role)
            .map(|(kind, n)| format!("{n} {}{}", kind.word(), if *n == 1 { "" } else { "s" }))
            .collect();
        if parts.is_empty() {
            "nothing declared".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Checks the spec at `path`.
pub fn check(sources: &mut SourceMap, path: &Path) -> Report {
    let program = modules::load(sources, path);
    report(program, Some(spec_folder(path)))
}

/// Checks a spec given as text (standard input, tests, benchmarks).
pub fn check_text(sources: &mut SourceMap, name: &str, text: &str) -> Report {
    let program = modules::load_text(sources, name, text, Path::new("."));
    report(program, None)
}

/// Checks a spec as an editor holds it: `text` (perhaps unsaved) stands for
/// the file at `path`, whose `use`s and apps' files are looked up beside it,
/// so the diagnostics are those `sitec check PATH` gives once it is saved.
pub fn check_buffer(sources: &mut SourceMap, path: &Path, text: &str) -> Report {
    let folder = spec_folder(path);
    let name = path.display().to_string();
    let program = modules::load_text(sources, &name, text, folder);
    report(program, Some(folder))
}

/// The folder a spec's relative paths (an app's `source`) start from.
fn spec_folder(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// `local`: the spec's folder, when it is a file on disk: then the apps'
/// files are looked up (`local_files`).
fn report(program: modules::Program, local: Option<&Path>) -> Report {
    let (diagnostics, counts, held_back) = {
        let mut analysis = analyse(&program);
        if let (Some(fleet), Some(base)) = (&analysis.fleet, local) {
            crate::trace::mark(|| "checked; looking up the apps' files".into());
            analysis
                .diagnostics
                .extend(crate::local_files::check(fleet, base));
            crate::trace::mark(|| "apps' files looked up".into());
            diagnostic::sort(&mut analysis.diagnostics);
        }
        (analysis.diagnostics, analysis.counts, analysis.held_back)
    };
    Report {
        diagnostics,
        counts,
        held_back,
        _program: program,
    }
}

/// Where rendering gets secret values from.
pub enum SecretSource {
    /// `PLACEHOLDER...` for every secret: tests, snapshots, previews.
    Placeholders,
    /// The secrets file beside the spec, created and extended as needed.
    File,
}

/// One host's desired state, in apply order.
pub struct HostState {
    pub name: String,
    /// Where others reach it.
    pub address: String,
    /// How to reach it: the provider's kind, SSH user, port and keys.
    pub provider: crate::model::Provider,
    /// The roles it plays (as its `roles` says).
    pub roles: Vec<String>,
    /// Where its own services bind (`private_address`, or `address`).
    pub listen_address: String,
    pub resources: Vec<crate::resources::Resource>,
    /// The graph's edges, `(before, after, why)`, as positions in
    /// `resources` (for `sitec graph`'s dot, drawn on demand).
    pub edges: Vec<(usize, usize, crate::graph::Edge)>,
    /// Where the first resource declared stands in `resources`.
    pub first_declared: Option<usize>,
}

/// What `sitec render` produces.
pub struct Rendered {
    pub diagnostics: Vec<Diagnostic>,
    pub hosts: Vec<HostState>,
    /// `(before, after, why)` host names that apply orders.
    pub host_order: Vec<(String, String, String)>,
    /// Hides the secrets' values in a plan's diffs.
    pub redactor: crate::secrets::Redactor,
}

impl Rendered {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Graphviz dot of the resource graph, made when asked for (`sitec graph`).
    pub fn dot(&self) -> String {
        crate::output::graph_dot(self)
    }
}

/// Compiles the spec at `path` to every host's resources and files.
pub fn render(
    sources: &mut SourceMap,
    path: &Path,
    secrets: &SecretSource,
    overrides: &[crate::settings::Override],
) -> Rendered {
    let program = modules::load(sources, path);
    let local = Some(spec_folder(path));
    render_program(sources, &program, path, local, secrets, overrides)
}

/// Compiles a spec given as text (benchmarks, tests). Modules it `use`s are
/// looked up from the current folder; secrets, when not placeholders, live
/// beside `name`.
pub fn render_text(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    secrets: &SecretSource,
    overrides: &[crate::settings::Override],
) -> Rendered {
    let program = modules::load_text(sources, name, text, Path::new("."));
    render_program(sources, &program, Path::new(name), None, secrets, overrides)
}

/// Loads, checks and models the spec at `path` and hands the fleet to `f`
/// (the fleet borrows the loaded program, so it can't be returned). `None`
/// when the spec has errors; the diagnostics are returned either way.
pub fn with_fleet<R>(
    sources: &mut SourceMap,
    path: &Path,
    f: impl FnOnce(&crate::model::Fleet, &SourceMap) -> R,
) -> (Option<R>, Vec<Diagnostic>) {
    let program = modules::load(sources, path);
    let (fleet, diagnostics) = model(&program);
    (fleet.map(|fleet| f(&fleet, sources)), diagnostics)
}

/// [`with_fleet`] for a spec given as text (tests).
pub fn with_fleet_text<R>(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    f: impl FnOnce(&crate::model::Fleet, &SourceMap) -> R,
) -> (Option<R>, Vec<Diagnostic>) {
    let program = modules::load_text(sources, name, text, Path::new("."));
    let (fleet, diagnostics) = model(&program);
    (fleet.map(|fleet| f(&fleet, sources)), diagnostics)
}

/// What checking a loaded program finds.
struct Analysis<'p> {
    /// The fleet model; `None` when the spec has errors.
    fleet: Option<crate::model::Fleet<'p>>,
    /// Sorted.
    diagnostics: Vec<Diagnostic>,
    /// How many of each kind the spec declares (stdlib roles included).
    counts: Vec<(Kind, usize)>,
    /// Names or types had errors, so the fleet checks did not run.
    held_back: bool,
}

/// Resolves a loaded program and, when that finds no error, builds its
/// fleet model and runs the fleet checks.
fn analyse(program: &modules::Program) -> Analysis<'_> {
    let broken: Vec<_> = program
        .diagnostics
        .iter()
        .filter_map(Diagnostic::primary_span)
        .collect();
    let checked = resolve::check(program, &broken);
    let kinds = [
        Kind::Provider,
        Kind::Host,
        Kind::Role,
        Kind::Database,
        Kind::App,
        Kind::Backup,
    ];
    let counts = kinds
        .iter()
        .map(|k| (*k, checked.symbols.count(*k)))
        .collect();
    let mut diagnostics = program.diagnostics.clone();
    diagnostics.extend(checked.diagnostics);
    let mut fleet = None;
    let held_back = diagnostics.iter().any(Diagnostic::is_error);
    if !held_back {
        let (built, model_diagnostics) = crate::model::build(program, &checked.symbols);
        diagnostics.extend(model_diagnostics);
        diagnostics.extend(crate::checks::check(&built));
        diagnostics.extend(crate::expand::lint(&built, &program.templates));
        if !diagnostics.iter().any(Diagnostic::is_error) {
            fleet = Some(built);
        }
    }
    diagnostic::sort(&mut diagnostics);
    Analysis {
        fleet,
        diagnostics,
        counts,
        held_back,
    }
}

/// Checks a loaded program and builds its fleet model; `None` when the
/// spec has errors. The diagnostics come sorted either way.
fn model(program: &modules::Program) -> (Option<crate::model::Fleet<'_>>, Vec<Diagnostic>) {
    let analysis = analyse(program);
    (analysis.fleet, analysis.diagnostics)
}

fn render_program(
    sources: &SourceMap,
    program: &modules::Program,
    path: &Path,
    local: Option<&Path>,
    secret_source: &SecretSource,
    overrides: &[crate::settings::Override],
) -> Rendered {
    let failed = |diagnostics: Vec<Diagnostic>| Rendered {
        diagnostics,
        hosts: Vec::new(),
        host_order: Vec::new(),
        redactor: crate::secrets::Redactor::default(),
    };
    let (fleet, mut diagnostics) = model(program);
    let Some(fleet) = fleet else {
        return failed(diagnostics);
    };
    if let Some(base) = local {
        diagnostics.extend(crate::local_files::check(&fleet, base));
    }
    let mut secrets = match secret_source {
        SecretSource::Placeholders => crate::secrets::Secrets::placeholders(),
        SecretSource::File => {
            let mut needed = crate::settings::secret_names(&fleet);
            needed.extend(crate::context::generated_secrets(&fleet));
            let file = crate::secrets::Secrets::path_for(path);
            match crate::secrets::Secrets::load_or_create(&file, &needed) {
                Ok(secrets) => {
                    if let Some(warning) = crate::secrets::loose_permissions(&file) {
                        diagnostics.push(Diagnostic::warning("E241", warning));
                    }
                    secrets
                }
                Err(message) => {
                    diagnostics.push(
                        Diagnostic::error("E240", message)
                            .help("check the secrets file beside the spec"),
                    );
                    return failed(diagnostics);
                }
            }
        }
    };
    if let Some(base) = local {
        for app in &fleet.apps {
            let files =
                (app.tls.as_ref()).and_then(|t| crate::local_files::tls_files(t, base).ok());
            // Trimmed as the templates write them, so a plan finds and
            // hides them whole.
            if let Some((cert, key)) = files {
                let (cert, key) = (cert.trim_end().to_string(), key.trim_end().to_string());
                secrets.insert(crate::context::tls_cert_secret(&app.name), cert);
                secrets.insert(crate::context::tls_key_secret(&app.name), key);
            }
        }
    }
    // The database hosts' keys derive from a secret: hidden like one.
    for (name, key) in crate::context::database_keys(&fleet, &secrets) {
        secrets.insert(name, key);
    }
    let templates = match crate::templates::Templates::with_own(&program.templates) {
        Ok(t) => t,
        Err(message) => return failed(vec![Diagnostic::error("E224", message)]),
    };
    let inputs = crate::context::Inputs {
        fleet: &fleet,
        sources,
        secrets: &secrets,
        overrides,
        shared: crate::context::Shared::default(),
    };
    let (expanded, expand_diagnostics) = crate::expand::expand(&inputs, &templates);
    diagnostics.extend(expand_diagnostics);
    let (graphs, graph_diagnostics) = crate::graph::build(&expanded);
    diagnostics.extend(graph_diagnostics);
    diagnostic::sort(&mut diagnostics);
    let hosts = expanded
        .into_iter()
        .zip(&graphs)
        .map(|(h, g)| {
            // Where each declared resource stands in apply order.
            let mut position = vec![0; h.resources.len()];
            for (at, i) in g.order.iter().enumerate() {
                position[*i] = at;
            }
            let edges = g
                .graph
                .edge_indices()
                .filter_map(|e| {
                    let (a, b) = g.graph.edge_endpoints(e)?;
                    Some((position[a.index()], position[b.index()], g.graph[e]))
                })
                .collect();
            let mut resources = h.resources;
            let mut taken: Vec<Option<crate::resources::Resource>> =
                resources.drain(..).map(Some).collect();
            HostState {
                name: fleet.hosts[h.host].name.clone(),
                address: fleet.address(h.host),
                listen_address: fleet.listen_address(h.host),
                provider: fleet.provider_of(h.host).clone(),
                roles: fleet.hosts[h.host].roles.clone(),
                resources: g.order.iter().filter_map(|i| taken[*i].take()).collect(),
                edges,
                first_declared: position.first().copied(),
            }
        })
        .collect();
    let host_order = crate::graph::host_order(&fleet)
        .into_iter()
        .map(|(a, b, why)| {
            (
                fleet.hosts[a].name.clone(),
                fleet.hosts[b].name.clone(),
                why,
            )
        })
        .collect();
    Rendered {
        diagnostics,
        hosts,
        host_order,
        redactor: secrets.redactor(),
    }
}

/// The hosts of `kind = local` providers with the addresses the compiler
/// gave them: what `sitec fleet up SPEC` boots. Errors are diagnostics.
pub fn local_hosts(
    sources: &mut SourceMap,
    path: &Path,
) -> Result<Vec<(String, String)>, Vec<Diagnostic>> {
    let program = modules::load(sources, path);
    let broken: Vec<_> = program
        .diagnostics
        .iter()
        .filter_map(Diagnostic::primary_span)
        .collect();
    let checked = resolve::check(&program, &broken);
    let mut diagnostics = program.diagnostics.clone();
    diagnostics.extend(checked.diagnostics);
    diagnostics.retain(Diagnostic::is_error);
    if !diagnostics.is_empty() {
        diagnostic::sort(&mut diagnostics);
        return Err(diagnostics);
    }
    let (fleet, mut model_diagnostics) = crate::model::build(&program, &checked.symbols);
    // A host left without a local address (E202) can't be booted.
    model_diagnostics.retain(|d| d.is_error() && d.code == "E202");
    if !model_diagnostics.is_empty() {
        return Err(model_diagnostics);
    }
    Ok((0..fleet.hosts.len())
        .filter(|h| fleet.provider_of(*h).kind == crate::model::ProviderKind::Local)
        .map(|h| (fleet.hosts[h].name.clone(), fleet.address(h)))
        .collect())
}

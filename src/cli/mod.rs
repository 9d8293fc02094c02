//! The command line: clap definitions and the dispatch to each stage.
//! This is glue only; every command's work lives in its own module.

mod data;
mod deploy;
// Public for benches/ops, which reads a spec's fleet as the commands do.
pub mod ops;
mod releases;

use crate::diagnostic::{self, Diagnostic};
use crate::source::SourceMap;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// sitec: compile a fleet of Python web apps from `.site` files, plan and
/// apply it over SSH, and run the fleet's balancer and agent.
#[derive(Parser, Debug)]
#[command(name = "sitec", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a spec: parse it and every module it uses, resolve names and types, check the roles,
    /// run the fleet checks, look up each app's files beside it; report every problem
    Check(CheckArgs),
    /// Rewrite .site files in the one canonical layout, keeping every comment
    Fmt(FmtArgs),
    /// Run the language server for editors, over standard input and output: check's
    /// diagnostics as you type, hover, go to definition, references, completion, formatting
    Lsp,
    /// Compile a spec and write every host's files under DIR/HOST/, with DIR/HOST/resources.json
    Render(RenderArgs),
    /// Draw the resource graph (every host's resources and the order between hosts),
    /// or with --bus the ZeroMQ bus between the hosts' agents and balancers
    Graph(GraphArgs),
    /// Boot, inspect and remove local fleets of systemd-nspawn hosts
    Fleet(crate::fleet::Args),
    /// Run the fleet's HTTP/1.1 load balancer
    Balancer(crate::balancer::Args),
    /// Run the host agent: heartbeats, control requests, log shipping and collecting
    Agent(crate::agent::Args),
    /// Show every layer a setting of an app passed, where each was set, and the value that wins
    Explain(ExplainArgs),
    /// Set (or --unset) a setting in the local override file beside the spec, keeping its comments
    Set(SetArgs),
    /// Show what applying the spec would change on every host (one round trip per host)
    Plan(deploy::PlanArgs),
    /// Make every host match the spec (or a saved plan): in order, in parallel, safely
    Apply(deploy::ApplyArgs),
    /// List every snapshot of the spec's databases: whose data, where, how old, how large
    Backups(data::BackupsArgs),
    /// Put a snapshot of a database back (on its primary or another host), start it, check it
    Restore(data::RestoreArgs),
    /// Show the whole running fleet: hosts, agents, apps in each balancer's rotation, databases,
    /// the fleet lock
    Status(ops::StatusArgs),
    /// Restart an app runner by runner, each drained out of every balancer's rotation first
    Restart(ops::RestartArgs),
    /// Run a command (`python manage.py shell`) on an app's runner as the app's user, in its release,
    /// virtualenv and environment, on a terminal when this is one
    Run(ops::RunArgs),
    /// Print the fleet's logs from its collectors, merged in time order across hosts (-f follows)
    Logs(ops::LogsArgs),
    /// Break the fleet lock (apply, restart, run --lock and data operations take it), saying whose it was
    Unlock(ops::UnlockArgs),
    /// Make a database's standby (or Redis replica) its primary: fence the old one, promote, repoint the apps
    Failover(data::FailoverArgs),
    /// List an app's releases on each of its runners: which is live, which are kept
    Releases(releases::ReleasesArgs),
    /// Switch an app back to a kept release on every runner, one at a time, without rebuilding
    Rollback(releases::RollbackArgs),
    /// Print a shell's completion script: `sitec completions bash > /etc/bash_completion.d/sitec`
    Completions(CompletionsArgs),
    /// Print sitec's man page (roff), or write one page per command into --out DIR
    Man(ManArgs),
    /// Internal: what `plan` and `apply` run on each host over SSH
    #[command(hide = true)]
    Host(crate::host::Args),
    /// Internal: what the backup timers and keys run on the hosts
    #[command(hide = true)]
    Data(crate::data::Args),
    /// Internal: one `sitec run` session, as the app's user, on the connection systemd hands it
    #[command(hide = true)]
    Session,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write sitec.1 and a page per command (sitec-check.1, ...) into this folder
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The app
    #[arg(value_name = "APP")]
    pub app: String,
    /// The setting, as Django reads it (`DEBUG`); `env.NAME` for a variable of
    /// the app's environment, `env` for every one
    #[arg(value_name = "KEY")]
    pub key: String,
    /// One host only (without it: every runner the app runs on)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// The spec (its overrides live in SPEC's .local.toml)
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The app
    #[arg(value_name = "APP")]
    pub app: String,
    /// `KEY=VALUE`: VALUE is a TOML literal (`true`, `3`, `"x"`, `[1, 2]`) or else text;
    /// with --unset, just `KEY`
    #[arg(value_name = "KEY=VALUE")]
    pub assignment: String,
    /// For this host only (`[APP.hosts.HOST]`)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Remove KEY from the override file instead
    #[arg(long)]
    pub unset: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("into").required(true).args(["out", "check"])))]
pub struct RenderArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The folder to write into (created; a folder sitec rendered before is replaced)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write `PLACEHOLDER...` instead of every secret (for review and snapshots);
    /// without it, secrets come from SPEC's .secrets.toml, created as needed
    #[arg(long)]
    pub placeholders: bool,
    /// Compare what SPEC renders (placeholder secrets) with the snapshot tree committed
    /// in DIR: a unified diff per file that differs, exit 1 if any does
    #[arg(long, value_name = "DIR", conflicts_with = "placeholders")]
    pub check: Option<PathBuf>,
    /// With --check: rewrite DIR to what SPEC renders now, after an intended change
    #[arg(long, requires = "check")]
    pub update: bool,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// dot (Graphviz) or json
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// Draw the bus instead: every host's ZeroMQ sockets and who connects to whom
    #[arg(long)]
    pub bus: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Json,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The spec files to check (each with the modules it uses)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// How to print problems: rustc-style text, or JSON for editors and CI
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Args, Debug)]
pub struct FmtArgs {
    /// Files to format in place; `-` reads standard input and writes standard output
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Change nothing; list the files that are not formatted and exit 1 if there are any
    #[arg(long)]
    pub check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// rustc-style text on standard error
    Human,
    /// one JSON array of diagnostics on standard output (see lang/errors.md)
    Json,
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if writes_only_its_output(&cli.command) {
        die_on_closed_stdout();
    }
    let code = match cli.command {
        Command::Check(args) => check(&args),
        Command::Fmt(args) => fmt(&args),
        Command::Lsp => crate::lsp::run(),
        Command::Completions(args) => completions(&args),
        Command::Man(args) => man(&args),
        Command::Render(args) => render(&args),
        Command::Graph(args) => graph(&args),
        Command::Fleet(args) => crate::fleet::run(args),
        Command::Balancer(args) => crate::balancer::run(args),
        Command::Agent(args) => crate::agent::run(args),
        Command::Explain(args) => explain(&args),
        Command::Set(args) => set(&args),
        Command::Host(args) => crate::host::run(&args),
        Command::Data(args) => crate::data::run(&args),
        Command::Plan(args) => deploy::plan(&args),
        Command::Apply(args) => deploy::apply(&args),
        Command::Backups(args) => data::backups(&args),
        Command::Restore(args) => data::restore(&args),
        Command::Status(args) => ops::status(&args),
        Command::Restart(args) => ops::restart(&args),
        Command::Run(args) => ops::run(&args),
        Command::Session => crate::agent::session::run(),
        Command::Logs(args) => ops::logs(&args),
        Command::Unlock(args) => ops::unlock(&args),
        Command::Failover(args) => data::failover(&args),
        Command::Releases(args) => releases::releases(&args),
        Command::Rollback(args) => releases::rollback(&args),
    };
    crate::stdio::exit_code(code)
}

/// Commands that only read files and print: when whoever reads their
/// output stops (`sitec render ... | head`), they end as a Unix filter does.
/// The others keep Rust's ignored SIGPIPE and see EPIPE as an error: the
/// balancer and agent serve sockets whose peers may go at any time, and
/// fleet, plan, apply, host, data, backups, restore, failover, status,
/// restart, logs, unlock, releases and rollback talk to ssh and to hosts
/// mid-change, where dying of a signal would skip the error handling that
/// leaves a host in a known state (they print through `stdio`, which drops
/// a closed stream and goes on); run hangs up its remote command instead
/// (`ops::run`); lsp's editor is its only reader.
fn writes_only_its_output(command: &Command) -> bool {
    matches!(
        command,
        Command::Check(_)
            | Command::Fmt(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Render(_)
            | Command::Graph(_)
            | Command::Explain(_)
    )
}

/// Restores SIGPIPE's default action (the Rust runtime ignores it, so a
/// write to a closed pipe fails with EPIPE and `print!` panics with
/// "failed printing to stdout: Broken pipe"): the process then ends
/// quietly at its first write to a closed stdout, with the status a shell
/// expects of a filter cut short (128 + 13).
#[allow(unsafe_code)]
fn die_on_closed_stdout() {
    // SAFETY: `signal` with SIG_DFL installs no handler (no code runs in
    // signal context); it is called before this process starts any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = visible_command();
    clap_complete::generate(args.shell, &mut command, "sitec", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// The command line as `--help` shows it: without the internal commands
/// (`host`, `data`), which the completion generators would offer.
fn visible_command() -> clap::Command {
    let full = <Cli as clap::CommandFactory>::command();
    let visible: Vec<clap::Command> = (full.get_subcommands())
        .filter(|command| !command.is_hide_set())
        .cloned()
        .collect();
    let mut command = clap::Command::new("sitec")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommand_required(true)
        .subcommands(visible);
    if let Some(about) = full.get_about() {
        command = command.about(about.clone());
    }
    command
}

/// The man page of `sitec`, and with `--out` one per visible command.
fn man(args: &ManArgs) -> ExitCode {
    let command = visible_command();
    let Some(folder) = &args.out else {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(command).render(&mut page) {
            Ok(()) => exit(std::io::stdout().write_all(&page).is_err()),
            Err(e) => {
                eprintln!("error: can't render the man page: {e}");
                ExitCode::FAILURE
            }
        };
    };
    let written =
        std::fs::create_dir_all(folder).and_then(|()| clap_mangen::generate_to(command, folder));
    match written {
        Ok(()) => {
            println!("wrote the man pages to {}", folder.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: can't write the man pages to `{}`: {e}",
                folder.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn use_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_diagnostics(sources: &SourceMap, diagnostics: &[Diagnostic]) {
    if !diagnostics.is_empty() {
        crate::err!(
            "{}",
            diagnostic::render_human(sources, diagnostics, use_color())
        );
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    let mut sources = SourceMap::new();
    let mut all = Vec::new();
    for path in &args.files {
        let report = crate::compile::check(&mut sources, path);
        failed |= report.errors() > 0;
        if args.format == OutputFormat::Human {
            print_diagnostics(&sources, &report.diagnostics);
            if report.held_back {
                eprintln!("note: the fleet checks (redundancy, conflicts, ports, roles) run once the errors above are fixed");
            }
            if report.errors() > 0 {
                let n = report.errors();
                eprintln!(
                    "error: `{}` has {n} error{}",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                );
            } else {
                let warnings = match report.warnings() {
                    0 => String::new(),
                    n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
                };
                println!("ok: {} ({}{warnings})", path.display(), report.summary());
            }
        }
        all.extend(report.leak());
    }
    if args.format == OutputFormat::Json {
        println!("{}", diagnostic::render_json(&sources, &all));
    }
    exit(failed)
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fmt(args: &FmtArgs) -> ExitCode {
    let mut failed = false;
    for path in &args.files {
        match fmt_one(path, args.check) {
            Ok(FmtOutcome::Unchanged) => {}
            Ok(FmtOutcome::Changed) if args.check => {
                println!("would reformat: {}", path.display());
                failed = true;
            }
            Ok(FmtOutcome::Changed) => println!("formatted: {}", path.display()),
            Err(message) => {
                if !message.is_empty() {
                    eprintln!("error: {message}");
                }
                failed = true;
            }
        }
    }
    exit(failed)
}

enum FmtOutcome {
    Unchanged,
    Changed,
}

/// Formats one file. Files with syntax errors are reported and left alone.
fn fmt_one(path: &Path, check_only: bool) -> Result<FmtOutcome, String> {
    let stdin = path.as_os_str() == "-";
    let bytes = if stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("can't read standard input: {e}"))?;
        bytes
    } else {
        std::fs::read(path).map_err(|e| format!("can't read `{}`: {e}", path.display()))?
    };
    let mut sources = SourceMap::new();
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let (file, ast, diagnostics) = crate::syntax::read(&mut sources, &name, bytes.clone());
    if diagnostics.iter().any(Diagnostic::is_error) {
        print_diagnostics(&sources, &diagnostics);
        return Err(format!(
            "`{name}` has syntax errors; fix them and format again"
        ));
    }
    let formatted =
        crate::format::as_saved(crate::format::format(&ast, sources.text(file)), &bytes);
    if stdin {
        std::io::stdout()
            .write_all(formatted.as_bytes())
            .map_err(|e| format!("can't write standard output: {e}"))?;
        return Ok(FmtOutcome::Unchanged);
    }
    if formatted.as_bytes() == bytes {
        return Ok(FmtOutcome::Unchanged);
    }
    if !check_only {
        write_atomically(path, formatted.as_bytes())
            .map_err(|e| format!("can't write `{}`: {e}", path.display()))?;
    }
    Ok(FmtOutcome::Changed)
}

/// Writes a file through a temporary name and a rename, keeping its mode,
/// so a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.sitec-fmt.{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&temp, meta.permissions())?;
    }
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Compiles a spec, printing its diagnostics; `None` when it has errors.
/// `for_plan`: what plan cannot do without (an app's source folder,
/// requirements and TLS files: `local_files::needed_by_plan`) is an error
/// rather than a warning.
pub(crate) fn compile(
    spec: &Path,
    secrets: &crate::compile::SecretSource,
    for_plan: bool,
) -> Option<crate::compile::Rendered> {
    let mut sources = SourceMap::new();
    let overrides = match crate::overrides::load(spec) {
        Ok(overrides) => overrides,
        Err(message) => {
            crate::errln!("error: {message}");
            return None;
        }
    };
    let mut rendered = crate::compile::render(&mut sources, spec, secrets, &overrides);
    if for_plan {
        for d in &mut rendered.diagnostics {
            if crate::local_files::needed_by_plan(d) {
                d.severity = diagnostic::Severity::Error;
            }
        }
    }
    print_diagnostics(&sources, &rendered.diagnostics);
    if rendered.errors() > 0 {
        let n = rendered.errors();
        crate::errln!(
            "error: `{}` has {n} error{}",
            spec.display(),
            if n == 1 { "" } else { "s" }
        );
        return None;
    }
    Some(rendered)
}

fn render(args: &RenderArgs) -> ExitCode {
    if let Some(dir) = &args.check {
        return render_check(&args.spec, dir, args.update);
    }
    let Some(out) = &args.out else {
        return ExitCode::FAILURE;
    };
    let source = if args.placeholders {
        crate::compile::SecretSource::Placeholders
    } else {
        crate::compile::SecretSource::File
    };
    let Some(rendered) = compile(&args.spec, &source, false) else {
        return ExitCode::FAILURE;
    };
    match crate::output::write_tree(out, &rendered) {
        Ok(files) => {
            println!(
                "rendered {files} files for {} hosts into {}",
                rendered.hosts.len(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `render SPEC --check DIR [--update]`: the snapshot tree in `DIR`
/// against what the spec renders now (`snapshot`).
fn render_check(spec: &Path, dir: &Path, update: bool) -> ExitCode {
    let Some(rendered) = compile(spec, &crate::compile::SecretSource::Placeholders, false) else {
        return ExitCode::FAILURE;
    };
    if !dir.exists() && !update {
        let shown = dir.display();
        eprintln!("error: `{shown}` holds no snapshot yet; write it with `sitec render {} --check {shown} --update`, and commit it", spec.display());
        return ExitCode::FAILURE;
    }
    let compared = crate::snapshot::tree(&rendered).and_then(|now| {
        let committed = crate::snapshot::read(dir)?;
        Ok((crate::snapshot::compare(&committed, &now), now))
    });
    let (differences, now) = match compared {
        Ok(compared) => compared,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let shown = dir.display();
    if differences.is_empty() {
        println!(
            "{shown} matches what {} renders ({} files)",
            spec.display(),
            now.len()
        );
        return ExitCode::SUCCESS;
    }
    let summary = crate::snapshot::summary(&differences);
    if update {
        return match crate::output::write_snapshot(dir, &now) {
            Ok(_) => {
                for d in &differences {
                    println!("{} {}", change_mark(d.change), d.path);
                }
                println!("updated {shown}: {summary}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    for d in &differences {
        print!("{}", d.diff);
    }
    println!(
        "{shown} differs from what {} renders: {summary}\n(after an intended change: `sitec render {} --check {shown} --update`, and commit it)",
        spec.display(),
        spec.display()
    );
    ExitCode::FAILURE
}

fn change_mark(change: crate::snapshot::Change) -> &'static str {
    match change {
        crate::snapshot::Change::Added => "+",
        crate::snapshot::Change::Removed => "-",
        crate::snapshot::Change::Changed => "~",
    }
}

fn graph(args: &GraphArgs) -> ExitCode {
    if args.bus {
        return with_fleet(&args.spec, |fleet, _| {
            let bus = crate::bus_topology::derive(fleet);
            Ok(match args.format {
                GraphFormat::Dot => crate::bus_topology::to_dot(&bus),
                GraphFormat::Json => crate::bus_topology::to_json(&bus) + "\n",
            })
        });
    }
    let Some(rendered) = compile(
        &args.spec,
        &crate::compile::SecretSource::Placeholders,
        false,
    ) else {
        return ExitCode::FAILURE;
    };
    match args.format {
        GraphFormat::Dot => print!("{}", rendered.dot()),
        GraphFormat::Json => println!("{}", crate::output::graph_json(&rendered)),
    }
    ExitCode::SUCCESS
}

/// Loads the spec's fleet, runs `f` on it and prints what it returns (or
/// its error). The spec's diagnostics are printed as `check` prints them.
fn with_fleet(
    spec: &Path,
    f: impl FnOnce(&crate::model::Fleet, &SourceMap) -> Result<String, String>,
) -> ExitCode {
    let mut sources = SourceMap::new();
    let (result, diagnostics) = crate::compile::with_fleet(&mut sources, spec, f);
    print_diagnostics(&sources, &diagnostics);
    match result {
        Some(Ok(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(Err(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
        None => {
            let n = diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "error: `{}` has {n} error{}",
                spec.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let overrides = match crate::overrides::load(&args.spec) {
        Ok(overrides) => overrides,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let query = crate::explain::Query {
        app: &args.app,
        key: &args.key,
        host: args.host.as_deref(),
    };
    with_fleet(&args.spec, |fleet, sources| {
        crate::explain::explain(fleet, sources, &overrides, &query)
    })
}

fn set(args: &SetArgs) -> ExitCode {
    let (key, value) = match (args.assignment.split_once('='), args.unset) {
        (None, true) => (args.assignment.as_str(), None),
        (Some((key, value)), false) => (key.trim(), Some(value.trim())),
        (Some(_), true) => {
            eprintln!("error: --unset takes just `KEY`, not `KEY=VALUE`");
            return ExitCode::FAILURE;
        }
        (None, false) => {
            eprintln!(
                "error: `{}` should be `KEY=VALUE` (or use --unset to remove KEY)",
                args.assignment
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(problem) = crate::names::setting_name_problem(key) {
        eprintln!("error: {}\n  help: {}", problem.what, problem.fix);
        return ExitCode::FAILURE;
    }
    let value = match value.map(crate::overrides::parse_value).transpose() {
        Ok(value) => value,
        Err(problem) => {
            eprintln!("error: {key}={}: {problem}", value.unwrap_or_default());
            return ExitCode::FAILURE;
        }
    };
    let edit = crate::overrides::Edit {
        app: &args.app,
        host: args.host.as_deref(),
        key,
        value,
    };
    with_fleet(&args.spec, |fleet, _| {
        let app = crate::explain::find_app(fleet, &args.app)?;
        if let Some(host) = &args.host {
            crate::explain::hosts_of(fleet, app, Some(host))?;
        }
        write_override(&args.spec, &edit)
    })
}

/// Applies `edit` to the override file beside `spec`; says what changed.
fn write_override(spec: &Path, edit: &crate::overrides::Edit) -> Result<String, String> {
    let path = crate::overrides::path_for(spec);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("can't read `{}`: {e}", path.display())),
    };
    let spec_name = spec.file_name().map_or_else(
        || spec.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (new, old) = crate::overrides::apply(text.as_deref(), &spec_name, edit)
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    let file = path.display();
    let (table, key) = (edit.table(), edit.key);
    let change = match (&edit.value, old) {
        (Some(value), Some(old)) => {
            format!(
                "{table} {key} = {} (was {old})",
                crate::overrides::shown(value)
            )
        }
        (Some(value), None) => format!("{table} {key} = {} (new)", crate::overrides::shown(value)),
        (None, Some(old)) => format!("{table} {key} removed (was {old})"),
        (None, None) => {
            return Ok(format!(
                "{file}: {table} {key} was not set; nothing changed\n"
            ))
        }
    };
    crate::overrides::parse(&new, &path.display().to_string())?;
    if text.as_deref() != Some(new.as_str()) {
        write_atomically(&path, new.as_bytes())
            .map_err(|e| format!("can't write `{}`: {e}", path.display()))?;
    }
    Ok(format!("{file}: {change}\n"))
}

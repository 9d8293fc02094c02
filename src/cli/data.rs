//! `sitec backups`, `sitec restore` and `sitec failover`: read the spec,
//! open SSH to the hosts the command needs, hand both to `data`, print.
//! Glue only: the work is in `data`.

use super::deploy::SshArgs;
use crate::data::backups::{self, DataSet};
use crate::data::failover::{self, Edit, Failover};
use crate::data::reach::{Hosts, Ssh};
use crate::model::{DatabaseId, Fleet};
use crate::source::SourceMap;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BackupsArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// One database, or one app's media store (APP/STORE), only (without
    /// it: every database and media store)
    #[arg(value_name = "DATA")]
    pub data: Option<String>,
    /// Take a backup first, as the timers would: a snapshot on each
    /// database host, then the pull on each backup host
    #[arg(long)]
    pub now: bool,
    /// Print the snapshots as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// The databases a command is about: the one named, or every one.
fn databases(fleet: &Fleet, named: Option<&str>) -> Result<Vec<DatabaseId>, String> {
    match named {
        None => Ok((0..fleet.databases.len()).collect()),
        Some(name) => (fleet.databases.iter())
            .position(|d| d.name == name)
            .map(|d| vec![d])
            .ok_or_else(|| {
                let known: Vec<&str> = fleet.databases.iter().map(|d| d.name.as_str()).collect();
                format!(
                    "the spec has no database `{name}`; it has {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            }),
    }
}

/// The data sets a command is about: the one named, or every one.
fn data_sets(fleet: &Fleet, named: Option<&str>) -> Result<Vec<DataSet>, String> {
    match named {
        None => Ok(DataSet::all(fleet)),
        Some(word) => DataSet::named(fleet, word).map(|d| vec![d]),
    }
}

/// Runs `work` on the spec's fleet inside a tokio runtime; prints the
/// spec's errors, or the work's error, and gives the exit code.
pub(super) fn on_fleet<T>(
    spec: &Path,
    work: impl for<'f> FnOnce(
        &'f Fleet<'f>,
        &'f SourceMap,
        &'f tokio::runtime::Runtime,
    ) -> Result<T, String>,
) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            crate::errln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    let mut sources = SourceMap::new();
    let (result, diagnostics) = crate::compile::with_fleet(&mut sources, spec, |fleet, sources| {
        work(fleet, sources, &runtime)
    });
    let errors: Vec<_> = (diagnostics.into_iter())
        .filter(crate::diagnostic::Diagnostic::is_error)
        .collect();
    super::print_diagnostics(&sources, &errors);
    match result {
        Some(Ok(done)) => Ok(done),
        Some(Err(message)) => {
            crate::errln!("error: {message}");
            Err(ExitCode::FAILURE)
        }
        None => {
            crate::errln!(
                "error: `{}` has errors; `sitec check {}` shows them",
                spec.display(),
                spec.display()
            );
            Err(ExitCode::FAILURE)
        }
    }
}

pub fn backups(args: &BackupsArgs) -> ExitCode {
    let listed = on_fleet(&args.spec, |fleet, _, runtime| {
        let chosen = data_sets(fleet, args.data.as_deref())?;
        let hosts: Vec<_> = (chosen.iter())
            .flat_map(|d| backups::places(fleet, *d))
            .map(|p| p.on)
            .collect();
        runtime.block_on(async {
            let ssh = Ssh::open(fleet, &hosts, &args.spec, args.ssh.kex()).await?;
            if args.now {
                let mut say = |line: String| crate::errln!("{line}");
                if let Err(e) = backups::take_now(fleet, &chosen, &ssh, &mut say).await {
                    ssh.close().await;
                    return Err(e);
                }
            }
            let (rows, mut problems) = backups::gather(fleet, &chosen, &ssh).await;
            problems.extend((ssh.unreachable.iter()).map(|(h, why)| format!("{h}: {why}")));
            ssh.close().await;
            let none: Vec<String> = (chosen.iter())
                .filter(|d| backups::places(fleet, **d).is_empty())
                .map(|d| match d {
                    DataSet::Database(_) => {
                        format!("database {}: no backup pulls from its hosts", d.name(fleet))
                    }
                    DataSet::Media(..) => format!(
                        "media store {}: no backup pulls from its runners",
                        d.name(fleet)
                    ),
                })
                .collect();
            Ok((rows, problems, none))
        })
    });
    let (rows, problems, none) = match listed {
        Ok(found) => found,
        Err(code) => return code,
    };
    if args.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        crate::out!(
            "{}",
            backups::table(&rows, crate::data::stamp::Stamp::now())
        );
        for line in none {
            crate::outln!("{line}");
        }
    }
    for problem in &problems {
        crate::errln!("warning: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The database (its whole server goes back: every database of a shared
    /// cluster), or an app's media store (APP/STORE; APP alone when it has one)
    #[arg(value_name = "DATA")]
    pub data: String,
    /// The snapshot, as `sitec backups` names it (HOST/STAMP); default: the newest
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Restore onto this host instead of the database's primary (for a
    /// media store: instead of the runner whose snapshot it is)
    #[arg(long, value_name = "HOST")]
    pub to: Option<String>,
    /// Restore without asking (the server's current data is kept aside either way)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// A host of the spec by name.
fn host(fleet: &Fleet, name: &str) -> Result<crate::model::HostId, String> {
    fleet
        .host_named(name)
        .ok_or_else(|| format!("the spec has no host `{name}`"))
}

pub fn restore(args: &RestoreArgs) -> ExitCode {
    let done = on_fleet(&args.spec, |fleet, _, runtime| {
        let set = DataSet::named(fleet, &args.data)?;
        let to = args.to.as_deref().map(|h| host(fleet, h)).transpose()?;
        let involved = match set {
            DataSet::Database(d) => crate::data::restore::hosts_involved(fleet, d, to),
            DataSet::Media(..) => crate::data::media_restore::hosts_involved(fleet, set, to),
        };
        runtime.block_on(async {
            let ssh = Ssh::open(fleet, &involved, &args.spec, args.ssh.kex()).await?;
            for (h, why) in &ssh.unreachable {
                crate::errln!("warning: {h}: {why}");
            }
            let (rows, problems) = backups::gather(fleet, &[set], &ssh).await;
            for problem in &problems {
                crate::errln!("warning: {problem}");
            }
            let result = restore_set(fleet, set, args, &rows, to, &ssh).await;
            ssh.close().await;
            result
        })
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Chooses the snapshot of `set` to restore, asks, and restores it.
async fn restore_set(
    fleet: &Fleet<'_>,
    set: DataSet,
    args: &RestoreArgs,
    rows: &[backups::Row],
    to: Option<crate::model::HostId>,
    ssh: &Ssh,
) -> Result<(), String> {
    let snapshot = args.snapshot.as_deref();
    let question = |target: crate::model::HostId, id: &str, what: &str| {
        let question = format!(
            "Restore {} on {} from {id}? {what}",
            args.data, fleet.hosts[target].name
        );
        args.yes || super::deploy::confirmed_to(&question, "restore")
    };
    let mut say = |line: String| crate::outln!("{line}");
    match set {
        DataSet::Database(d) => {
            let restore = crate::data::restore::choose(fleet, d, rows, snapshot, to)?;
            let what = "Its server's current data is moved aside.";
            if !question(restore.target, &restore.snapshot.snapshot, what) {
                return Err("nothing restored".to_string());
            }
            restore.run(ssh, &mut say).await.map(drop)
        }
        DataSet::Media(app, store) => {
            let restore =
                crate::data::media_restore::choose(fleet, (app, store), rows, snapshot, to)?;
            let what = "What the folder holds now is moved aside.";
            if !question(restore.target, &restore.snapshot.snapshot, what) {
                return Err("nothing restored".to_string());
            }
            restore.run(ssh, &mut say).await
        }
    }
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The spec (edited: the database's `primary` and its standby or replica swap)
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The databases (each one's whole server moves: every database of a shared cluster);
    /// several at once when a host that holds several primaries died
    #[arg(value_name = "DATABASE", required = true)]
    pub databases: Vec<String>,
    /// The host to promote: the database's standby or replica (the only one that holds its data)
    #[arg(long, value_name = "HOST")]
    pub to: Option<String>,
    /// Fail over without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// Fences and promotes (`data::failover`) with the apps' runners held out
/// of rotation (`HeldApps`), edits the spec to say so, then applies it, to
/// the apps' hosts first: the apps' settings name the new primary first
/// and their servers restart on them (with the drain); then to every host.
pub fn failover(args: &FailoverArgs) -> ExitCode {
    let started = std::time::Instant::now();
    crate::trace::mark(|| "failover begins".into());
    let named = args.databases.join(", ");
    let done = on_fleet(&args.spec, |fleet, sources, runtime| {
        let to = args.to.as_deref().map(|h| host(fleet, h)).transpose()?;
        let mut failovers: Vec<Failover> = Vec::new();
        for name in &args.databases {
            let chosen = Failover::choose(fleet, databases(fleet, Some(name))?[0], to)?;
            // Two databases of one shared cluster are one failover.
            if !failovers.iter().any(|f| f.databases == chosen.databases) {
                failovers.push(chosen);
            }
        }
        let edits = (failovers.iter())
            .map(|f| spec_edits(fleet, sources, &args.spec, f))
            .collect::<Result<Vec<_>, _>>()?;
        let moves: Vec<String> = (failovers.iter())
            .map(|f| {
                let (old, new) = (&fleet.hosts[f.old].name, &fleet.hosts[f.new].name);
                format!("{new} instead of {old} for {}", f.names(fleet))
            })
            .collect();
        let question = format!(
            "Make {}? An old primary is stopped if it answers.",
            moves.join("; ")
        );
        if !args.yes && !super::deploy::confirmed_to(&question, "fail over") {
            return Err("nothing changed".to_string());
        }
        let mut app_hosts: Vec<String> =
            failovers.iter().flat_map(|f| f.app_hosts(fleet)).collect();
        app_hosts.sort();
        app_hosts.dedup();
        let hosts: Vec<_> = failovers.iter().flat_map(|f| [f.old, f.new]).collect();
        let ssh = runtime.block_on(Ssh::open(fleet, &hosts, &args.spec, args.ssh.kex()))?;
        crate::trace::mark(|| format!("connected; {} unreachable", ssh.unreachable.len()));
        let mut say = |line: String| crate::outln!("{line}");
        // Held once the hosts are known to answer or not (a dead one's
        // connect timeout is not spent holding requests), and only when
        // every old primary answers: an app whose primary died waits on it
        // (Redis, and Postgres's first host) until it is repointed, so
        // holding its requests would only make them fail later.
        let mut runners: Vec<(String, String)> = failovers
            .iter()
            .flat_map(|f| f.app_runners(fleet))
            .collect();
        runners.sort();
        runners.dedup();
        let mut dead: Vec<&str> = (failovers.iter())
            .map(|f| fleet.hosts[f.old].name.as_str())
            .filter(|old| !ssh.reachable(old))
            .collect();
        dead.dedup();
        let held = if dead.is_empty() {
            HeldApps::hold(&args.spec, runners, &mut say)
        } else {
            say(format!(
                "the apps are not held out of rotation: {} cannot be reached, and they wait on it until repointed",
                dead.join(", ")
            ));
            None
        };
        crate::trace::mark(|| "apps held".into());
        let (done, failed, down) = runtime.block_on(async {
            let (mut done, mut failed) = (0, None);
            for failover in &failovers {
                let ran = failover.run(fleet, &ssh, &mut say).await;
                crate::trace::mark(|| format!("failover of {} run", failover.names(fleet)));
                match ran {
                    Ok(_) => done += 1,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // A host that did not answer now is not tried again by the
            // apply below: that would cost another connect timeout.
            let down: Vec<(String, String)> = (ssh.unreachable.iter())
                .map(|(host, why)| (host.clone(), format!("did not answer the failover: {why}")))
                .collect();
            ssh.close().await;
            (done, failed, down)
        });
        if let Some(held) = held {
            held.release(&mut say);
            crate::trace::mark(|| "apps back in rotation".into());
        }
        // What was promoted is recorded, even when a later one failed.
        let recorded = write_spec(&args.spec, &edits[..done].concat());
        match failed {
            Some(e) => Err(match recorded {
                Ok(()) if done > 0 => format!("{e} (the failovers before it are recorded in the spec; `sitec apply` repoints the apps)"),
                _ => e,
            }),
            None => Ok((recorded, down, app_hosts)),
        }
    });
    let (recorded, down, app_hosts) = match done {
        Ok(done) => done,
        Err(code) => return code,
    };
    if let Err(why) = recorded {
        crate::errln!(
            "error: the new primaries run, but the spec could not be edited to say so ({why}); \
             edit it by hand (swap each database's `primary` and its follower), then `sitec apply {}`",
            args.spec.display()
        );
        return ExitCode::FAILURE;
    }
    let apply = |only: Vec<String>| {
        super::deploy::apply(&super::deploy::ApplyArgs {
            target: args.spec.clone(),
            yes: true,
            parallel: 16,
            // Every runner at once: until repointed, its app fails anyway.
            batch: 16,
            ssh: SshArgs { kex: args.ssh.kex },
            down: down.clone(),
            only,
        })
    };
    // The apps first: until their settings name the new primary, each new
    // Postgres connection tries the old one first, and Redis clients fail. The database hosts' own changes (configs, the new
    // follower's copy) can take minutes and change nothing for the apps.
    if !app_hosts.is_empty() {
        crate::outln!(
            "recorded in {}; applying it to the apps' hosts ({}) first, so every app uses the new primary",
            args.spec.display(),
            app_hosts.join(", ")
        );
        let repointed = apply(app_hosts);
        crate::outln!(
            "apps repointed {:.1} s after the failover began{}",
            started.elapsed().as_secs_f64(),
            if repointed == ExitCode::SUCCESS {
                ""
            } else {
                " (not on every host: the apply below tries again)"
            }
        );
    }
    crate::outln!("applying {} to the whole fleet", args.spec.display());
    let applied = apply(Vec::new());
    crate::outln!(
        "failover of {named} done in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if applied == ExitCode::SUCCESS {
            ""
        } else {
            " (the apply did not finish on every host: an old primary that is down fails it; \
             `sitec apply` once it is back makes it a follower)"
        }
    );
    applied
}

/// The runners of the apps whose database moves, held out of every
/// balancer's rotation while it moves: the balancers hold their new
/// requests (`balancer::proxy`, up to 15 s) instead of sending them to an
/// app whose primary is being fenced and not yet promoted, and the
/// requests in flight finish first. Under the fleet lock, as any drain.
struct HeldApps {
    drainer: crate::ops::drain::Drainer,
    runners: Vec<(String, String)>,
    _lock: crate::ops::lock::Lock,
}

/// How long requests in flight get to finish before the fence.
const HOLD_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a runner gets to answer on the new primary before it is
/// returned to rotation anyway.
const HOLD_RETURN: std::time::Duration = std::time::Duration::from_secs(5);

impl HeldApps {
    /// Drains every `(host, app)` of `runners`; `None` (with a warning,
    /// the failover going on without) when the fleet's agents cannot be
    /// asked or its lock is held.
    fn hold(
        spec: &Path,
        runners: Vec<(String, String)>,
        say: &mut dyn FnMut(String),
    ) -> Option<HeldApps> {
        if runners.is_empty() {
            return None;
        }
        let taken = super::ops::load(spec).and_then(|fleet| {
            let agents = fleet.agents()?;
            let what = format!("failover {}", spec.display());
            let lock =
                crate::ops::lock::Lock::take(&fleet, &agents, &what).map_err(|e| e.to_string())?;
            let (who, from) = crate::ops::operator_identity();
            let why = format!("sitec failover by {who} on {from}");
            let drainer = crate::ops::drain::Drainer::new(&fleet, &agents, &why);
            Ok((lock, drainer))
        });
        let (lock, drainer) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                crate::errln!(
                    "warning: the apps are not held out of rotation during the failover: {e}"
                );
                return None;
            }
        };
        let mut warn = |line: String| crate::errln!("warning: {line}");
        for (host, app) in &runners {
            if let Err(e) = drainer.drain(host, app, HOLD_DRAIN, &mut warn) {
                warn(format!("{app} on {host}: {e}"));
            }
        }
        say(format!(
            "held {} out of rotation while the database moves (the balancers hold their requests)",
            (runners.iter())
                .map(|(h, a)| format!("{a} on {h}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Some(HeldApps {
            drainer,
            runners,
            _lock: lock,
        })
    }

    /// Returns each runner to rotation once its app answers (now on the
    /// new primary, which libpq finds by itself: `target_session_attrs`),
    /// or after `HOLD_RETURN` all the same; then the lock goes.
    fn release(self, say: &mut dyn FnMut(String)) {
        let started = std::time::Instant::now();
        for (host, app) in &self.runners {
            if let Err(e) = self.drainer.restore(host, app, HOLD_RETURN) {
                crate::errln!("warning: {e}; returned to rotation all the same");
                let _ = self.drainer.end(host, app);
            }
        }
        say(format!(
            "apps back in rotation ({:.1} s to answer)",
            started.elapsed().as_secs_f64()
        ));
    }
}

/// The spec's edit that records a failover: for each database of the
/// server, its `primary` names the new host and its follower the old one.
/// Only values written as a host's name in the spec file itself are
/// edited; otherwise, why not.
fn spec_edits(
    fleet: &Fleet,
    sources: &SourceMap,
    spec: &Path,
    failover: &Failover,
) -> Result<Vec<Edit>, String> {
    let spec_file = std::fs::canonicalize(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    let (old, new) = (
        &fleet.hosts[failover.old].name,
        &fleet.hosts[failover.new].name,
    );
    let mut edits = Vec::new();
    for d in &failover.databases {
        let db = &fleet.databases[*d];
        for (span, was, now, what) in [
            (db.primary_span, old, new, "primary"),
            (
                db.follower_span,
                new,
                old,
                failover::follower_word(db.engine),
            ),
        ] {
            let span = span.ok_or_else(|| format!("database {} has no `{what}`", db.name))?;
            let file = std::fs::canonicalize(sources.name(span.file)).ok();
            let text = sources.text(span.file).get(span.start..span.end);
            match text {
                Some(text) if file.as_ref() == Some(&spec_file) && text == was => {
                    edits.push(Edit {
                        at: span.start..span.end,
                        was: was.clone(),
                        now: now.clone(),
                    });
                }
                _ => {
                    return Err(format!(
                        "database {}'s `{what} = {was}` is not written so in {}",
                        db.name,
                        spec.display()
                    ))
                }
            }
        }
    }
    Ok(edits)
}

/// Makes `edits` to the spec file, if it still reads as it did: the new
/// text is written beside it and renamed over it (its mode kept).
fn write_spec(spec: &Path, edits: &[Edit]) -> Result<(), String> {
    let text = std::fs::read_to_string(spec)
        .map_err(|e| format!("cannot read {}: {e}", spec.display()))?;
    let new = failover::edited(&text, edits)
        .map_err(|e| format!("{} changed since it was read: {e}", spec.display()))?;
    let beside = spec.with_extension("site.sitec-failover");
    let written = std::fs::write(&beside, new)
        .and_then(|()| std::fs::metadata(spec))
        .and_then(|m| std::fs::set_permissions(&beside, m.permissions()))
        .and_then(|()| std::fs::rename(&beside, spec));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&beside);
        format!("cannot write {}: {e}", spec.display())
    })
}

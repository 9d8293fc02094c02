//! `sitec backups`, `sitec restore` and `sitec failover`: read the spec,
//! open SSH to the hosts the command needs, hand both to `data`, print.
//! Glue only: the work is in `data`.

use super::deploy::SshArgs;
use crate::data::{backups, reach::Ssh};
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
    /// One database only (without it: every database)
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
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

/// Runs `work` on the spec's fleet inside a tokio runtime; prints the
/// spec's errors, or the work's error, and gives the exit code.
fn on_fleet<T>(
    spec: &Path,
    work: impl for<'f> FnOnce(&'f Fleet<'f>, &'f tokio::runtime::Runtime) -> Result<T, String>,
) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    let mut sources = SourceMap::new();
    let (result, diagnostics) =
        crate::compile::with_fleet(&mut sources, spec, |fleet, _| work(fleet, &runtime));
    let errors: Vec<_> = (diagnostics.into_iter())
        .filter(crate::diagnostic::Diagnostic::is_error)
        .collect();
    super::print_diagnostics(&sources, &errors);
    match result {
        Some(Ok(done)) => Ok(done),
        Some(Err(message)) => {
            eprintln!("error: {message}");
            Err(ExitCode::FAILURE)
        }
        None => {
            eprintln!(
                "error: `{}` has errors; `sitec check {}` shows them",
                spec.display(),
                spec.display()
            );
            Err(ExitCode::FAILURE)
        }
    }
}

pub fn backups(args: &BackupsArgs) -> ExitCode {
    let listed = on_fleet(&args.spec, |fleet, runtime| {
        let chosen = databases(fleet, args.database.as_deref())?;
        let hosts: Vec<_> = (chosen.iter())
            .flat_map(|d| backups::places(fleet, *d))
            .map(|p| p.on)
            .collect();
        runtime.block_on(async {
            let ssh = Ssh::open(fleet, &hosts, &args.spec, args.ssh.kex()).await?;
            if args.now {
                let mut say = |line: String| eprintln!("{line}");
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
                .map(|d| fleet.databases[*d].name.clone())
                .collect();
            Ok((rows, problems, none))
        })
    });
    let (rows, problems, none) = match listed {
        Ok(found) => found,
        Err(code) => return code,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        print!(
            "{}",
            backups::table(&rows, crate::data::stamp::Stamp::now())
        );
        for name in none {
            println!("database {name}: no backup pulls from its hosts");
        }
    }
    for problem in &problems {
        eprintln!("warning: {problem}");
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
    /// The database (its whole server goes back: every database of a shared cluster)
    #[arg(value_name = "DATABASE")]
    pub database: String,
    /// The snapshot, as `sitec backups` names it (HOST/STAMP); default: the newest
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Restore onto this host instead of the database's primary
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
    let done = on_fleet(&args.spec, |fleet, runtime| {
        let database = databases(fleet, Some(&args.database))?[0];
        let to = args.to.as_deref().map(|h| host(fleet, h)).transpose()?;
        let involved = crate::data::restore::hosts_involved(fleet, database, to);
        runtime.block_on(async {
            let ssh = Ssh::open(fleet, &involved, &args.spec, args.ssh.kex()).await?;
            for (h, why) in &ssh.unreachable {
                eprintln!("warning: {h}: {why}");
            }
            let (rows, problems) = backups::gather(fleet, &[database], &ssh).await;
            for problem in &problems {
                eprintln!("warning: {problem}");
            }
            let chosen =
                crate::data::restore::choose(fleet, database, &rows, args.snapshot.as_deref(), to);
            let result = match chosen {
                Ok(restore) => {
                    let question = format!(
                        "Restore {} on {} from {}? Its server's current data is moved aside.",
                        args.database, fleet.hosts[restore.target].name, restore.snapshot.snapshot
                    );
                    if args.yes || super::deploy::confirmed_to(&question, "restore") {
                        let mut say = |line: String| println!("{line}");
                        restore.run(&ssh, &mut say).await.map(drop)
                    } else {
                        Err("nothing restored".to_string())
                    }
                }
                Err(e) => Err(e),
            };
            ssh.close().await;
            result
        })
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

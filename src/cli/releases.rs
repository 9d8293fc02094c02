//! `sitec releases` and `sitec rollback`: an app's releases on each of its
//! runners, and a switch back to a kept one without rebuilding. Glue only:
//! the runners do the work (`sitec host releases`, `sitec host rollback`,
//! in `host::release`), the pin that keeps plan and apply from undoing
//! a rollback is `overrides::Pin`, and a rollback rolls as `sitec restart`
//! does: under the fleet lock, one runner at a time (the leader first),
//! each drained out of the balancers' rotation before its switch and
//! returned once it answers (`ops::drain`).

use super::deploy::SshArgs;
use crate::data::reach::{Hosts, Ssh};
use crate::host::release::{short, Release};
use crate::model::{AppId, Fleet};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReleasesArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The app
    #[arg(value_name = "APP")]
    pub app: String,
    /// Print the releases as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The app
    #[arg(value_name = "APP")]
    pub app: String,
    /// The release to go back to, as `sitec releases` shows it (its id or
    /// its content's hash); default: the one before the live one
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

fn app(fleet: &Fleet, name: &str) -> Result<AppId, String> {
    fleet.app_named(name).ok_or_else(|| {
        let known: Vec<&str> = fleet.apps.iter().map(|a| a.name.as_str()).collect();
        format!("the spec has no app `{name}`; it has {}", known.join(", "))
    })
}

/// Each runner of `app` and the releases it keeps, oldest first.
async fn gather(
    fleet: &Fleet<'_>,
    app: AppId,
    ssh: &Ssh,
) -> Result<Vec<(String, Vec<Release>)>, String> {
    let name = &fleet.apps[app].name;
    let mut out = Vec::new();
    for host in &fleet.placement[app] {
        let host = &fleet.hosts[*host].name;
        if !ssh.reachable(host) {
            return Err(format!("{host} cannot be reached"));
        }
        let listed = ssh
            .sitec(host, &format!("host releases {name}"))
            .await?
            .or_fail(host, "listing the releases")?;
        let releases: Vec<Release> = serde_json::from_str(&listed)
            .map_err(|e| format!("{host}: the release list is not valid: {e}"))?;
        out.push((host.clone(), releases));
    }
    Ok(out)
}

/// The virtualenv a release runs, as the table shows it: its folder's name
/// under `venvs/` (the content's digest), cut to 12 characters; `-` for a
/// release from before virtualenvs by content.
fn venv_column(venv: Option<&str>) -> String {
    let name = venv
        .and_then(|v| v.rsplit('/').find(|part| !part.is_empty()))
        .unwrap_or("-");
    name.chars().take(12).collect()
}

/// The releases as a table: one row per content, its virtualenv, and a
/// column per runner saying `live`, `kept` or nothing.
pub fn table(rows: &[(String, Vec<Release>)]) -> String {
    // By the content's short digest: the earliest id and the virtualenv.
    let mut by_digest: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (_, releases) in rows {
        for r in releases {
            let entry = (by_digest.entry(short(&r.digest).to_string()))
                .or_insert_with(|| (r.id.clone(), venv_column(r.venv.as_deref())));
            // The earliest id names the release: when it first went out.
            if r.id < entry.0 {
                entry.0.clone_from(&r.id);
            }
        }
    }
    let mut order: Vec<(&String, &(String, String))> = by_digest.iter().collect();
    order.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
    let mut out = format!("{:<40} {:<12}", "RELEASE", "VENV");
    for (host, _) in rows {
        out.push_str(&format!(" {host:<8}"));
    }
    out.push('\n');
    for (digest, (id, venv)) in order {
        out.push_str(&format!("{id:<40} {venv:<12}"));
        for (_, releases) in rows {
            let state = match releases.iter().find(|r| short(&r.digest) == digest) {
                Some(r) if r.live => "live",
                Some(_) => "kept",
                None => "-",
            };
            out.push_str(&format!(" {state:<8}"));
        }
        out.push('\n');
    }
    out
}

pub fn releases(args: &ReleasesArgs) -> ExitCode {
    let listed = super::data::on_fleet(&args.spec, |fleet, _, runtime| {
        let app = app(fleet, &args.app)?;
        runtime.block_on(async {
            let ssh = Ssh::open(fleet, &fleet.placement[app], &args.spec, args.ssh.kex()).await?;
            let rows = gather(fleet, app, &ssh).await;
            ssh.close().await;
            rows
        })
    });
    match listed {
        Ok(rows) if args.json => {
            let map: BTreeMap<&str, &Vec<Release>> =
                rows.iter().map(|(h, r)| (h.as_str(), r)).collect();
            crate::outln!("{}", serde_json::to_string_pretty(&map).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(rows) => {
            crate::out!("{}", table(&rows));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The content to go back to: `to` (an id or a hash, on any runner), or
/// the newest release older than the first runner's live one.
fn target(rows: &[(String, Vec<Release>)], to: Option<&str>) -> Result<String, String> {
    let all = rows.iter().flat_map(|(_, r)| r);
    if let Some(to) = to {
        let found = all
            .clone()
            .find(|r| r.id == to || (!to.is_empty() && r.digest.starts_with(to)));
        return found.map(|r| short(&r.digest).to_string()).ok_or_else(|| {
            format!("no runner keeps a release `{to}`; `sitec releases` lists them")
        });
    }
    let (host, first) = rows.first().ok_or("the app runs nowhere")?;
    let live = first
        .iter()
        .position(|r| r.live)
        .ok_or_else(|| format!("{host} has no live release"))?;
    let before = first[..live]
        .iter()
        .rev()
        .find(|r| r.digest != first[live].digest)
        .ok_or_else(|| format!("{host} keeps no release older than the live one"))?;
    Ok(short(&before.digest).to_string())
}

pub fn rollback(args: &RollbackArgs) -> ExitCode {
    let spec = args.spec.clone();
    let done = super::data::on_fleet(&args.spec, |fleet, _, runtime| {
        let app = app(fleet, &args.app)?;
        let name = fleet.apps[app].name.clone();
        let operated = super::ops::load(&spec)?;
        let agents = operated.agents()?;
        let lock = crate::ops::lock::Lock::take(&operated, &agents, &format!("rollback {name}"))
            .map_err(|e| e.to_string())?;
        let (who, from) = crate::ops::operator_identity();
        let why = format!("sitec rollback by {who} on {from}");
        let drainer = crate::ops::drain::Drainer::new(&operated, &agents, &why);
        runtime.block_on(async {
            let ssh = Ssh::open(fleet, &fleet.placement[app], &spec, args.ssh.kex()).await?;
            let result = async {
                let rows = gather(fleet, app, &ssh).await?;
                let digest = target(&rows, args.to.as_deref())?;
                let lacking: Vec<&str> = (rows.iter())
                    .filter(|(_, r)| !r.iter().any(|r| r.digest.starts_with(&digest)))
                    .map(|(h, _)| h.as_str())
                    .collect();
                if !lacking.is_empty() {
                    return Err(format!(
                        "release {digest} is no longer kept on {}; nothing was switched",
                        lacking.join(", ")
                    ));
                }
                let from = (rows.iter())
                    .flat_map(|(_, r)| r)
                    .find(|r| r.live)
                    .map(|r| short(&r.digest).to_string())
                    .unwrap_or_default();
                // The pin first: a plan made while the runners switch already
                // agrees with them.
                crate::overrides::pin(&spec, &name, &digest, &from)?;
                // One runner at a time, drained: the others serve meanwhile.
                for (host, _) in &rows {
                    if let Some(why) = lock.lost() {
                        return Err(format!("stopped before {host}: {why}"));
                    }
                    let started = std::time::Instant::now();
                    let drained = tokio::task::block_in_place(|| {
                        let mut warn = |w: String| crate::outln!("{host}: {w}");
                        drainer.drain(host, &name, crate::apply::DRAIN, &mut warn)
                    });
                    if let Err(e) = &drained {
                        crate::outln!(
                            "{host}: {name} not drained ({e}); switching it all the same"
                        );
                    }
                    let switched = ssh
                        .sitec(host, &format!("host rollback {name} {digest}"))
                        .await?
                        .or_fail(host, "the rollback")?;
                    if drained.is_ok() {
                        tokio::task::block_in_place(|| {
                            drainer.restore(host, &name, crate::apply::BACK)
                        })?;
                    }
                    crate::outln!(
                        "{host}: {} live ({:.1} s)",
                        switched.trim(),
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(digest)
            }
            .await;
            ssh.close().await;
            result
        })
    });
    match done {
        Ok(digest) => {
            crate::outln!(
                "app {} is on release {digest} on every runner; pinned in {} until its source changes",
                args.app,
                crate::overrides::path_for(&args.spec).display()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(id: &str, digest: &str, live: bool, venv: Option<&str>) -> Release {
        Release {
            id: id.into(),
            digest: digest.into(),
            live,
            venv: venv.map(String::from),
        }
    }

    #[test]
    fn the_table_has_a_row_per_content_with_its_virtualenv_and_a_column_per_runner() {
        let venv = "/srv/sitec/apps/blog/venvs/0123456789abcdef0123";
        let rows = vec![
            (
                "run1".to_string(),
                vec![
                    release("20261207T080000Z-aaaa", "aaaa1111", false, None),
                    release("20261207T090000Z-bbbb", "bbbb2222", true, Some(venv)),
                ],
            ),
            (
                "run2".to_string(),
                vec![release(
                    "20261207T090100Z-bbbb",
                    "bbbb2222",
                    true,
                    Some(venv),
                )],
            ),
        ];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let words = |line: &str| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(words(lines[0]), ["RELEASE", "VENV", "run1", "run2"]);
        // Before virtualenvs by content: no venv, kept on run1 only.
        assert_eq!(words(lines[1]), ["20261207T080000Z-aaaa", "-", "kept", "-"]);
        // The earliest id names a release live on both runners.
        assert_eq!(
            words(lines[2]),
            ["20261207T090000Z-bbbb", "0123456789ab", "live", "live"]
        );
    }
}

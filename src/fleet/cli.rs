//! `sitec fleet up|down|status`: flags in, a [`FleetSpec`] and [`Options`]
//! out, then a table or an error with its fix. The hosts come from a spec
//! (`sitec fleet up fleet.site`: every host of a `kind = local` provider, at
//! the address the compiler gave it, fleet named after the file, state in
//! `.fleet/` beside it, the data its `subvolume` resources hold on a btrfs
//! file system of each host's own) or from `--name` and `--host
//! NAME[=ADDRESS]`.

use super::spec::{FleetSpec, LocalHost};
use super::status::{table, HostStatus};
use super::subnet::Subnet;
use super::{down, status, up, Error, Options};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Boot, inspect and remove local fleets (systemd-nspawn hosts on this machine).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Boot the fleet's hosts (hosts already up are left alone).
    Up(UpArgs),
    /// Stop every host and remove mounts, cgroups, bridge and state (keys stay).
    Down(Common),
    /// Show each host's address, whether it is up, and its systemd state.
    Status(Common),
}

/// Flags every action takes.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// The spec whose `kind = local` hosts form the fleet (named after the file)
    #[arg(value_name = "SPEC", required_unless_present = "name")]
    pub spec: Option<PathBuf>,
    /// The fleet's name, for a fleet given by `--host` flags instead of a spec
    #[arg(long, conflicts_with = "spec")]
    pub name: Option<String>,
    /// The directory holding fleets' state (one subdirectory per fleet);
    /// default: `.fleet` beside the spec, or in the current directory
    #[arg(long, value_name = "DIR")]
    pub state_root: Option<PathBuf>,
    /// The bridge the hosts attach to.
    #[arg(long, default_value = "sitec0")]
    pub bridge: String,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: Common,
    /// A host: NAME, or NAME=ADDRESS for a fixed address. Repeat per host (with `--name`).
    #[arg(
        long = "host",
        value_name = "NAME[=ADDRESS]",
        required_unless_present = "spec",
        conflicts_with = "spec"
    )]
    pub hosts: Vec<String>,
    /// The bridge's subnet; the bridge takes its first address.
    #[arg(long, default_value = "10.77.0.0/24")]
    pub subnet: String,
    /// Seconds a host may take to boot.
    #[arg(long, default_value_t = 60)]
    pub boot_timeout: u64,
}

impl Common {
    fn options(&self) -> Options {
        let default_root = match &self.spec {
            Some(spec) => spec
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(".fleet"),
            None => PathBuf::from(".fleet"),
        };
        let root = self.state_root.clone().unwrap_or(default_root);
        Options {
            state_root: std::path::absolute(&root).unwrap_or(root),
            bridge: self.bridge.clone(),
            ..Options::default()
        }
    }

    /// The fleet's name: `--name`, or the spec's file name without `.site`.
    fn fleet_name(&self) -> String {
        match (&self.name, &self.spec) {
            (Some(name), _) => name.clone(),
            (None, Some(spec)) => spec
                .file_stem()
                .map_or_else(|| "fleet".into(), |s| s.to_string_lossy().into_owned()),
            (None, None) => "fleet".into(),
        }
    }
}

/// The local hosts of a spec, at the addresses its compiled files use.
fn hosts_from_spec(spec: &std::path::Path) -> Result<Vec<LocalHost>, Error> {
    let mut sources = crate::source::SourceMap::new();
    let hosts = crate::compile::local_hosts(&mut sources, spec);
    let (hosts, diagnostics) = match hosts {
        Ok(hosts) => (hosts, Vec::new()),
        Err(diagnostics) => (Vec::new(), diagnostics),
    };
    if !diagnostics.is_empty() {
        crate::err!(
            "{}",
            crate::diagnostic::render_human(&sources, &diagnostics, false)
        );
        return Err(Error::new(format!("`{}` has errors", spec.display()))
            .help(format!("run `sitec check {}`", spec.display())));
    }
    if hosts.is_empty() {
        return Err(Error::new(format!(
            "`{}` has no host of a local provider",
            spec.display()
        ))
        .help("declare `provider local { kind = local }` and give hosts `provider = local`"));
    }
    let mut btrfs = btrfs_paths(spec)?;
    hosts
        .into_iter()
        .map(|(name, address)| {
            let address = address.parse().map_err(|_| {
                Error::new(format!("host `{name}`: `{address}` is not an IPv4 address"))
            })?;
            Ok(LocalHost {
                btrfs: btrfs.remove(&name).unwrap_or_default(),
                name,
                address: Some(address),
            })
        })
        .collect()
}

/// Each host's paths the spec puts on btrfs (its `subvolume` resources:
/// the data of a database or backup host), from the compiled spec.
fn btrfs_paths(
    spec: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, Error> {
    let mut sources = crate::source::SourceMap::new();
    let placeholders = crate::compile::SecretSource::Placeholders;
    let rendered = crate::compile::render(&mut sources, spec, &placeholders, &[]);
    if rendered.errors() > 0 {
        let errors: Vec<_> = (rendered.diagnostics.into_iter())
            .filter(crate::diagnostic::Diagnostic::is_error)
            .collect();
        crate::err!(
            "{}",
            crate::diagnostic::render_human(&sources, &errors, false)
        );
        return Err(Error::new(format!("`{}` has errors", spec.display()))
            .help(format!("run `sitec check {}`", spec.display())));
    }
    Ok((rendered.hosts.into_iter())
        .map(|h| {
            let paths = (h.resources.into_iter())
                .filter_map(|r| match r.kind {
                    crate::resources::Kind::Subvolume { path } => Some(path),
                    _ => None,
                })
                .collect();
            (h.name, paths)
        })
        .collect())
}

/// Runs one `sitec fleet` action.
#[must_use]
pub fn run(args: Args) -> ExitCode {
    match run_action(args.action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_action(action: Action) -> Result<(), Error> {
    match action {
        Action::Up(a) => {
            let mut options = a.common.options();
            options.subnet = a.subnet.parse::<Subnet>()?;
            options.boot_timeout = Duration::from_secs(a.boot_timeout);
            let hosts = match &a.common.spec {
                Some(spec) => hosts_from_spec(spec)?,
                None => a
                    .hosts
                    .iter()
                    .map(|h| LocalHost::parse(h))
                    .collect::<Result<_, _>>()?,
            };
            let spec = FleetSpec {
                name: a.common.fleet_name(),
                hosts,
            };
            let state = up(&spec, &options)?;
            // `up` succeeds only once every host answered; no need to ask again.
            let rows: Vec<HostStatus> = state
                .hosts
                .iter()
                .map(|h| HostStatus {
                    name: h.name.clone(),
                    address: h.address,
                    up: true,
                    system_state: h.system_state.clone(),
                    failed_units: h.failed_units.clone(),
                })
                .collect();
            crate::out!("{}", table(&rows));
            let first = state.hosts.first().map_or("HOST", |h| h.name.as_str());
            crate::outln!(
                "ssh: ssh -F {} {first}",
                options
                    .state_root
                    .join(&spec.name)
                    .join("ssh_config")
                    .display()
            );
            Ok(())
        }
        Action::Down(c) => {
            let name = c.fleet_name();
            let report = down(&name, &c.options())?;
            crate::outln!(
                "fleet `{}` is down ({} host(s) stopped{})",
                name,
                report.stopped.len(),
                if report.bridge_removed {
                    ", bridge removed"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Action::Status(c) => {
            crate::out!("{}", table(&status(&c.fleet_name(), &c.options())?));
            Ok(())
        }
    }
}

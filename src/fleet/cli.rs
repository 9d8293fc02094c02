//! `sitec fleet up|down|status`: flags in, a [`FleetSpec`] and [`Options`]
//! out, then a table or an error with its fix. Until the language lands,
//! hosts come from `--host NAME[=ADDRESS]`.

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
    /// The fleet's name.
    #[arg(long)]
    pub name: String,
    /// The directory holding fleets' state (one subdirectory per fleet).
    #[arg(long, value_name = "DIR", default_value = ".fleet")]
    pub state_root: PathBuf,
    /// The bridge the hosts attach to.
    #[arg(long, default_value = "sitec0")]
    pub bridge: String,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: Common,
    /// A host: NAME, or NAME=ADDRESS for a fixed address. Repeat per host.
    #[arg(long = "host", value_name = "NAME[=ADDRESS]", required = true)]
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
        Options {
            state_root: std::path::absolute(&self.state_root)
                .unwrap_or_else(|_| self.state_root.clone()),
            bridge: self.bridge.clone(),
            ..Options::default()
        }
    }
}

/// Runs one `sitec fleet` action.
#[must_use]
pub fn run(args: Args) -> ExitCode {
    match run_action(args.action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
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
            let spec = FleetSpec {
                name: a.common.name.clone(),
                hosts: a
                    .hosts
                    .iter()
                    .map(|h| LocalHost::parse(h))
                    .collect::<Result<_, _>>()?,
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
            print!("{}", table(&rows));
            let first = state.hosts.first().map_or("HOST", |h| h.name.as_str());
            println!(
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
            let report = down(&c.name, &c.options())?;
            println!(
                "fleet `{}` is down ({} host(s) stopped{})",
                c.name,
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
            print!("{}", table(&status(&c.name, &c.options())?));
            Ok(())
        }
    }
}

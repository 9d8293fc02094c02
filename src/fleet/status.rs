//! `status`: for each recorded host, its address, whether its container
//! runs, and what systemd inside says now, with any failed units (asked over
//! ssh, all hosts at once). Reads only; changes nothing.

use super::container::Container;
use super::error::{Error, Result};
use super::layout::Layout;
use super::readiness::ssh;
use super::spec::check_fleet_name;
use super::state::FleetState;
use super::Options;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// One row of `sitec fleet status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub name: String,
    pub address: Ipv4Addr,
    /// True when the host's container runs.
    pub up: bool,
    /// `systemctl is-system-running` now, when up and reachable.
    pub system_state: Option<String>,
    /// The units that have failed (what makes a host `degraded`).
    pub failed_units: Vec<String>,
}

/// The status of every host of fleet `name`.
pub fn status(name: &str, options: &Options) -> Result<Vec<HostStatus>> {
    check_fleet_name(name)?;
    let layout = Layout::new(&options.state_root, name);
    let state = FleetState::load(&layout)?.ok_or_else(|| {
        Error::new(format!(
            "fleet `{name}` is not up: no {}",
            layout.fleet_json().display()
        ))
        .help(format!(
            "start it with `sitec fleet up --name {name} --host …` (or pass --state-root)"
        ))
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let ssh_config = layout.ssh_config();
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = state
            .hosts
            .iter()
            .map(|h| {
                let ssh_config = &ssh_config;
                s.spawn(move || {
                    let up = h
                        .pid
                        .is_some_and(|p| Container::new(name, &h.name).is_running(p));
                    // One round trip: the state, then any failed units.
                    let probe =
                        "systemctl is-system-running; systemctl --failed --plain --no-legend";
                    let answer = up
                        .then(|| ssh(ssh_config, &h.name, probe, deadline).ok())
                        .flatten()
                        .filter(|o| o.status.code() != Some(255))
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
                    let mut lines = answer.as_deref().unwrap_or_default().lines();
                    let system_state = lines.next().map(|l| l.trim().to_owned());
                    let failed_units = lines
                        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                        .collect();
                    HostStatus {
                        name: h.name.clone(),
                        address: h.address,
                        up,
                        system_state,
                        failed_units,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&state.hosts)
            .map(|(handle, h)| {
                handle.join().unwrap_or_else(|_| HostStatus {
                    name: h.name.clone(),
                    address: h.address,
                    up: false,
                    system_state: None,
                    failed_units: Vec::new(),
                })
            })
            .collect()
    }))
}

/// The status rows as an aligned text table.
#[must_use]
pub fn table(rows: &[HostStatus]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:width$}  {:15}  {:4}  SYSTEMD\n", "HOST", "ADDRESS", "UP");
    for r in rows {
        let _ = writeln!(
            out,
            "{:width$}  {:15}  {:4}  {}",
            r.name,
            r.address.to_string(),
            if r.up { "up" } else { "down" },
            r.system_state.as_deref().unwrap_or("-")
        );
        if !r.failed_units.is_empty() {
            out.pop();
            let _ = writeln!(out, " (failed: {})", r.failed_units.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = [HostStatus {
            name: "lb1".into(),
            address: Ipv4Addr::new(10, 77, 0, 10),
            up: true,
            system_state: Some("running".into()),
            failed_units: Vec::new(),
        }];
        assert_eq!(
            table(&rows),
            "HOST  ADDRESS          UP    SYSTEMD\nlb1   10.77.0.10       up    running\n"
        );
    }
}

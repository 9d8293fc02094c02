//! `down`: stops every host of a fleet and removes everything `up` made —
//! mounts (a host's btrfs image and its loop device too), cgroups, the
//! bridge when no other fleet uses it, the lease and the state — except
//! the keys, so hosts keep their identity next time. Finds what to remove
//! from the machine itself (pid files, host directories, `/proc/mounts`,
//! the cgroup tree), not only from `fleet.json`, so it also cleans up after
//! a crashed `up`. Running it twice is harmless.

use super::bridge::Bridge;
use super::cgroup::HostCgroup;
use super::container::Container;
use super::error::{Error, Result};
use super::layout::Layout;
use super::lock::Lock;
use super::mounts;
use super::preflight;
use super::registry::Registry;
use super::spec::check_fleet_name;
use super::state::FleetState;
use super::Options;
use std::time::{Duration, Instant};

/// What `down` stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Hosts whose container was still running.
    pub stopped: Vec<String>,
    /// Whether the bridge was removed (false: another fleet uses it, or it
    /// was already gone).
    pub bridge_removed: bool,
}

/// Takes the fleet `name` down (see the module doc).
pub fn down(name: &str, options: &Options) -> Result<DownReport> {
    check_fleet_name(name)?;
    preflight::require_root("down")?;
    let layout = Layout::new(&options.state_root, name);
    // Cgroups and machine names are per fleet name: never take down a
    // fleet of this name that runs from another state directory.
    if let Some(other) = Registry::open()?.owner(name)? {
        if other.state_dir != layout.dir {
            return Err(Error::new(format!(
                "fleet `{name}` is not in {}; a fleet of that name runs from {}",
                options.state_root.display(),
                other.state_dir.display()
            ))
            .help(format!(
                "sitec fleet down --name {name} --state-root {}",
                other
                    .state_dir
                    .parent()
                    .unwrap_or(&other.state_dir)
                    .display()
            )));
        }
    }
    let mut report = DownReport::default();
    let _lock = if layout.dir.exists() {
        Some(Lock::acquire(&layout.lock())?)
    } else {
        None
    };
    let state = FleetState::load(&layout).ok().flatten();

    let mut hosts: Vec<String> = state
        .iter()
        .flat_map(|s| s.hosts.iter().map(|h| h.name.clone()))
        .collect();
    if let Ok(dirs) = std::fs::read_dir(layout.hosts()) {
        hosts.extend(
            dirs.filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    hosts.extend(
        HostCgroup::existing(name)
            .iter()
            .filter_map(|c| c.rsplit('/').next().map(str::to_owned)),
    );
    hosts.sort();
    hosts.dedup();

    // Ask every container to power off at once, then wait for each.
    let running: Vec<(Container, u32, String)> = hosts
        .iter()
        .filter_map(|h| {
            let c = Container::new(name, h);
            let pid = Container::recorded_pid(&layout.host(h))
                .or_else(|| state.as_ref().and_then(|s| s.host(h)).and_then(|s| s.pid))?;
            c.is_running(pid).then(|| (c, pid, h.clone()))
        })
        .collect();
    for (c, pid, _) in &running {
        c.request_stop(*pid);
    }
    std::thread::scope(|s| {
        for (c, pid, _) in &running {
            s.spawn(move || c.wait_stopped(*pid, Duration::from_secs(15)));
        }
    });
    report.stopped = running.into_iter().map(|(_, _, h)| h).collect();

    let mut errors = Vec::new();
    if let Err(e) = mounts::unmount_below(&layout.hosts()) {
        errors.push(e.to_string());
    }
    for h in &hosts {
        if let Err(e) = HostCgroup::new(name, h).remove() {
            errors.push(e.to_string());
        }
    }
    for path in [
        layout.fleet_json(),
        layout.known_hosts(),
        layout.ssh_config(),
    ] {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("{}: {e}", path.display()));
            }
        }
    }
    if errors.is_empty() {
        if let Err(e) = std::fs::remove_dir_all(layout.hosts()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("{}: {e}", layout.hosts().display()));
            }
        }
    }

    let bridge_name = state
        .as_ref()
        .map_or(options.bridge.as_str(), |s| s.bridge.as_str());
    match remove_bridge(name, bridge_name, &layout) {
        Ok(removed) => report.bridge_removed = removed,
        Err(e) => errors.push(e.to_string()),
    }

    if errors.is_empty() {
        Ok(report)
    } else {
        Err(Error::new(errors.join("\n"))
            .help("fix the cause and run `sitec fleet down` again; it picks up where it stopped"))
    }
}

/// Drops the fleet's lease and removes the bridge when no other fleet's
/// lease names it and no interface hangs off it any more.
fn remove_bridge(fleet: &str, bridge: &str, layout: &Layout) -> Result<bool> {
    let bridge = Bridge::new(bridge)?;
    let registry = Registry::open()?;
    registry.remove(fleet, &layout.dir)?;
    if !registry.others_on(&layout.dir, &bridge.name)?.is_empty() || !bridge.exists() {
        return Ok(false);
    }
    // The hosts' veths vanish with their network namespaces, a moment
    // after the containers exit.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !bridge.ports().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !bridge.ports().is_empty() {
        return Ok(false);
    }
    bridge.remove()?;
    Ok(true)
}

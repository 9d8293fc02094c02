//! `up`: boots every host of a fleet that is not already running, in
//! parallel, and waits until each answers over ssh with systemd finished
//! booting. Records everything it creates in `fleet.json` before creating
//! it, so `down` can clean up after an `up` that failed half-way.

use super::bridge::Bridge;
use super::btrfs::Volume;
use super::cgroup::HostCgroup;
use super::container::{Boot, Container};
use super::error::{Error, Result};
use super::keys;
use super::layout::Layout;
use super::lock::Lock;
use super::preflight;
use super::readiness::{wait_ready, Readiness};
use super::registry::{Lease, Registry};
use super::rootfs::HostRoot;
use super::spec::FleetSpec;
use super::state::{FleetState, HostState};
use super::Options;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Instant;

/// Boots the fleet (hosts already up are left alone) and returns its state.
pub fn up(spec: &FleetSpec, options: &Options) -> Result<FleetState> {
    spec.validate()?;
    preflight::require_root("up")?;
    preflight::require_tools()?;
    preflight::raise_inotify_limit();
    let bridge = Bridge::new(&options.bridge)?;
    let layout = Layout::new(&options.state_root, &spec.name);
    std::fs::create_dir_all(&layout.dir).map_err(|e| Error::io(layout.dir.display(), &e))?;
    preflight::require_space(&layout.dir)?;
    let _lock = Lock::acquire(&layout.lock())?;
    let previous = FleetState::load(&layout)?;
    if let Some(p) = &previous {
        let running = p.hosts.iter().any(|h| {
            h.pid
                .is_some_and(|pid| Container::new(&spec.name, &h.name).is_running(pid))
        });
        let subnet = options.subnet.to_string();
        if running && (p.bridge != bridge.name || p.subnet != subnet) {
            return Err(Error::new(format!(
                "fleet `{}` is up on bridge {} ({}), not {} ({subnet})",
                spec.name, p.bridge, p.subnet, bridge.name
            ))
            .help(format!(
                "`sitec fleet down --name {}` first to move it",
                spec.name
            )));
        }
    }

    keys::ensure_key(&layout.client_key(), &format!("sitec fleet {}", spec.name))?;
    for h in &spec.hosts {
        keys::ensure_key(&layout.host_key(&h.name), &format!("root@{}", h.name))?;
    }

    let mut state = {
        let registry = Registry::open()?;
        let state = plan_addresses(spec, options, &layout, previous.as_ref(), &registry)?;
        registry.put(&Lease {
            fleet: state.name.clone(),
            state_dir: layout.dir.clone(),
            bridge: bridge.name.clone(),
            addresses: state.hosts.iter().map(|h| h.address).collect(),
        })?;
        state.save(&layout)?;
        bridge.ensure(&options.subnet)?;
        state
    };
    write_ssh_files(&state, &layout, options)?;

    let client_public = keys::public_key(&layout.client_key())?;
    let peers: Vec<(String, Ipv4Addr)> = state
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.address))
        .collect();
    for i in 0..state.hosts.len() {
        let host = state.hosts[i].clone();
        let container = Container::new(&spec.name, &host.name);
        if host.pid.is_some_and(|p| container.is_running(p)) {
            continue;
        }
        let hl = layout.host(&host.name);
        let cgroup = HostCgroup::new(&spec.name, &host.name);
        cgroup.remove()?;
        container.wait_link_gone();
        HostRoot {
            layout: &hl,
            hostname: &host.name,
            address: host.address,
            prefix: options.subnet.prefix(),
            peers: &peers,
            host_key: &layout.host_key(&host.name),
            authorized_key: &client_public,
        }
        .mount()?;
        let btrfs = spec.host(&host.name).map_or(&[][..], |h| &h.btrfs[..]);
        let volume = Volume {
            layout: &hl,
            paths: btrfs,
        };
        if !btrfs.is_empty() {
            volume.make()?;
        }
        let procs = cgroup.create()?;
        let pid = container.start(&Boot {
            layout: &hl,
            hostname: &host.name,
            bridge: &bridge.name,
            cgroup_procs: &procs,
            binds: &volume.binds()?,
        })?;
        state.hosts[i].pid = Some(pid);
        state.hosts[i].system_state = None;
        state.save(&layout)?;
    }

    let deadline = Instant::now() + options.boot_timeout;
    let results: Vec<Result<Readiness>> = std::thread::scope(|s| {
        let handles: Vec<_> = state
            .hosts
            .iter()
            .map(|h| {
                let (layout, ssh_config, fleet) = (&layout, layout.ssh_config(), &spec.name);
                s.spawn(move || {
                    let container = Container::new(fleet, &h.name);
                    let alive = || h.pid.is_some_and(|p| container.is_running(p));
                    wait_ready(
                        &h.name,
                        h.address,
                        &ssh_config,
                        &layout.host(&h.name),
                        deadline,
                        &alive,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::new("a boot watcher panicked")))
            })
            .collect()
    });
    let mut errors = Vec::new();
    for (host, result) in state.hosts.iter_mut().zip(results) {
        match result {
            Ok(r) => {
                host.system_state = Some(r.system_state);
                host.failed_units = r.failed_units;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    state.save(&layout)?;
    if errors.is_empty() {
        Ok(state)
    } else {
        Err(Error::new(errors.join("\n")).help(format!(
            "`sitec fleet down --name {}` removes everything this `up` created",
            spec.name
        )))
    }
}

/// Each host's address: a running host keeps its own; otherwise the one the
/// spec gives, else the one recorded last time (if still free), else the
/// first free one in the subnet. Hosts recorded before, no longer in the
/// spec and still running stay recorded (`down` stops them).
fn plan_addresses(
    spec: &FleetSpec,
    options: &Options,
    layout: &Layout,
    previous: Option<&FleetState>,
    registry: &Registry,
) -> Result<FleetState> {
    let subnet = options.subnet;
    let other_fleets = registry.others_on(&layout.dir, &options.bridge)?;
    let mut taken: Vec<Ipv4Addr> = other_fleets
        .iter()
        .flat_map(|l| l.addresses.iter().copied())
        .collect();
    let recorded = |name: &str| previous.and_then(|p| p.host(name)).cloned();
    let running = |h: &HostState| {
        h.pid
            .is_some_and(|p| Container::new(&spec.name, &h.name).is_running(p))
    };

    for h in &spec.hosts {
        if let Some(a) = h.address {
            if !subnet.is_host_address(a) {
                return Err(Error::new(format!(
                    "host `{}`: address {a} is not a host address of {subnet}",
                    h.name
                ))
                .help(format!(
                    "pick one from {} up, inside {subnet} (or pass --subnet)",
                    subnet
                        .first_free(&[])
                        .map_or_else(String::new, |a| a.to_string())
                )));
            }
            if let Some(other) = other_fleets.iter().find(|l| l.addresses.contains(&a)) {
                return Err(Error::new(format!(
                    "host `{}`: address {a} is used by fleet `{}` on bridge {}",
                    h.name, other.fleet, options.bridge
                ))
                .help(format!(
                    "give host `{}` another `address` in the spec, or take that fleet down first: sitec fleet down --name {} --state-root {}",
                    h.name,
                    other.fleet,
                    other.state_dir.parent().unwrap_or(&other.state_dir).display()
                )));
            }
            taken.push(a);
        }
    }
    let mut hosts = Vec::new();
    for h in &spec.hosts {
        let old = recorded(&h.name);
        let address = match (&old, h.address) {
            (Some(o), Some(a)) if running(o) && o.address != a => {
                return Err(Error::new(format!(
                    "host `{}` is up at {}, but the spec now says {a}",
                    h.name, o.address
                ))
                .help(format!("`sitec fleet down --name {}` first", spec.name)));
            }
            (Some(o), _) if running(o) => o.address,
            (_, Some(a)) => a,
            (Some(o), None) if !taken.contains(&o.address) && subnet.is_host_address(o.address) => {
                o.address
            }
            _ => subnet.first_free(&taken).ok_or_else(|| {
                Error::new(format!("no free address left in {subnet}"))
                    .help("pass a larger --subnet")
            })?,
        };
        taken.push(address);
        hosts.push(HostState {
            name: h.name.clone(),
            address,
            machine: Container::new(&spec.name, &h.name).machine,
            pid: old.as_ref().and_then(|o| o.pid),
            cgroup: HostCgroup::new(&spec.name, &h.name).relative,
            system_state: old.as_ref().and_then(|o| o.system_state.clone()),
            failed_units: old.map(|o| o.failed_units).unwrap_or_default(),
        });
    }
    if let Some(p) = previous {
        for h in &p.hosts {
            if !hosts.iter().any(|n| n.name == h.name) && running(h) {
                hosts.push(h.clone());
            }
        }
    }
    Ok(FleetState {
        name: spec.name.clone(),
        state_dir: layout.dir.clone(),
        bridge: options.bridge.clone(),
        subnet: subnet.to_string(),
        hosts,
    })
}

/// Writes `known_hosts` (every host's pinned key) and `ssh_config` (one
/// `Host` block per host, then the fleet's ssh options).
fn write_ssh_files(state: &FleetState, layout: &Layout, options: &Options) -> Result<()> {
    let mut entries = Vec::new();
    for h in &state.hosts {
        entries.push((
            h.name.clone(),
            h.address,
            keys::public_key(&layout.host_key(&h.name))?,
        ));
    }
    let kh = layout.known_hosts();
    std::fs::write(&kh, keys::known_hosts(&entries)).map_err(|e| Error::io(kh.display(), &e))?;
    let mut config = String::new();
    for h in &state.hosts {
        let _ = writeln!(config, "Host {}\n  HostName {}\n", h.name, h.address);
    }
    config.push_str(&state.ssh_options(options.kex).config_text());
    let path = layout.ssh_config();
    std::fs::write(&path, config).map_err(|e| Error::io(path.display(), &e))
}

//! `fleet.json`: what `up` started (bridge, subnet, each host's address,
//! container, cgroup and last known systemd state), read by `status` and
//! `down`. Plain data with load/save; never starts or stops anything.

use super::error::{Error, Result};
use super::layout::Layout;
use crate::transport::{HostTarget, Kex, SshOptions};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The recorded state of one fleet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FleetState {
    pub name: String,
    /// The fleet's state directory (absolute).
    pub state_dir: PathBuf,
    pub bridge: String,
    /// The subnet, as `10.77.0.0/24`.
    pub subnet: String,
    pub hosts: Vec<HostState>,
}

/// The recorded state of one host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostState {
    pub name: String,
    pub address: Ipv4Addr,
    /// The container's machine name (`<fleet>-<host>`).
    pub machine: String,
    /// The pid of its `systemd-nspawn`, once started.
    pub pid: Option<u32>,
    /// Its cgroup, relative to each hierarchy's root (`sitec/<fleet>/<host>`).
    pub cgroup: String,
    /// What `systemctl is-system-running` said last (`running`, `degraded`).
    pub system_state: Option<String>,
    /// The units that had failed when it said `degraded`.
    #[serde(default)]
    pub failed_units: Vec<String>,
}

impl FleetState {
    /// Reads `fleet.json`; `Ok(None)` when there is none.
    pub fn load(layout: &Layout) -> Result<Option<Self>> {
        let path = layout.fleet_json();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path.display(), &e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::new(format!("{} is not valid fleet state: {e}", path.display()))
                .help("run `sitec fleet down` for this fleet; it cleans up without it")
        })
    }

    /// Writes `fleet.json` (temp file, then rename).
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let path = layout.fleet_json();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::new(format!("cannot encode fleet state: {e}")))?;
        std::fs::write(&tmp, text + "\n").map_err(|e| Error::io(tmp.display(), &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(path.display(), &e))
    }

    /// The hosts as transport targets (port 22 at their address).
    #[must_use]
    pub fn targets(&self) -> Vec<HostTarget> {
        self.hosts
            .iter()
            .map(|h| HostTarget::new(h.name.clone(), h.address.to_string()))
            .collect()
    }

    /// How to reach the hosts: root, the fleet's key, its known_hosts.
    #[must_use]
    pub fn ssh_options(&self, kex: Kex) -> SshOptions {
        let layout = Layout {
            dir: self.state_dir.clone(),
        };
        let mut o = SshOptions::new("root", layout.known_hosts());
        o.identity = Some(layout.client_key());
        o.kex = kex;
        o
    }

    #[must_use]
    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

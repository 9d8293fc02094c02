//! The machine-wide list of local fleets (`/run/sitec/fleets/<name>.json`):
//! which bridge and addresses each holds, so two fleets on one bridge never
//! get the same address and `down` removes a bridge only when no other fleet
//! uses it. Every change happens under `/run/sitec/lock`. An entry whose
//! state directory has no `fleet.json` any more is stale and ignored.

use super::error::{Error, Result};
use super::lock::Lock;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const ROOT: &str = "/run/sitec";

/// One fleet's claim on a bridge and addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub fleet: String,
    pub state_dir: PathBuf,
    pub bridge: String,
    pub addresses: Vec<Ipv4Addr>,
}

impl Lease {
    fn is_live(&self) -> bool {
        self.state_dir.join("fleet.json").exists()
    }
}

/// The registry, locked for as long as this value lives.
#[derive(Debug)]
pub struct Registry {
    _lock: Lock,
    dir: PathBuf,
}

impl Registry {
    /// Takes the machine-wide lock (blocking) and opens the registry.
    pub fn open() -> Result<Self> {
        let root = Path::new(ROOT);
        let lock = Lock::acquire(&root.join("lock"))?;
        let dir = root.join("fleets");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), &e))?;
        Ok(Self { _lock: lock, dir })
    }

    fn path(&self, fleet: &str) -> PathBuf {
        self.dir.join(format!("{fleet}.json"))
    }

    /// Every live lease.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| Error::io(self.dir.display(), &e))?;
        let mut out = Vec::new();
        for entry in entries.filter_map(std::result::Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if let Ok(lease) = serde_json::from_str::<Lease>(&text) {
                if lease.is_live() {
                    out.push(lease);
                }
            }
        }
        Ok(out)
    }

    /// Live leases on `bridge` of every fleet but the one run from
    /// `state_dir`.
    pub fn others_on(&self, state_dir: &Path, bridge: &str) -> Result<Vec<Lease>> {
        Ok(self
            .leases()?
            .into_iter()
            .filter(|l| l.state_dir != state_dir && l.bridge == bridge)
            .collect())
    }

    /// The live lease of the fleet named `fleet`, wherever it runs from.
    pub fn owner(&self, fleet: &str) -> Result<Option<Lease>> {
        Ok(self.leases()?.into_iter().find(|l| l.fleet == fleet))
    }

    /// Records (or replaces) a fleet's lease. Refuses when a live fleet of
    /// the same name runs from another state directory: container, cgroup
    /// and interface names would collide.
    pub fn put(&self, lease: &Lease) -> Result<()> {
        if let Some(other) = self
            .leases()?
            .into_iter()
            .find(|l| l.fleet == lease.fleet && l.state_dir != lease.state_dir)
        {
            return Err(Error::new(format!(
                "a fleet named `{}` is already up from {}",
                lease.fleet,
                other.state_dir.display()
            ))
            .help(format!(
                "pick another --name, or take that one down first: sitec fleet down --name {} --state-root {}",
                other.fleet,
                other.state_dir.parent().unwrap_or(&other.state_dir).display()
            )));
        }
        let path = self.path(&lease.fleet);
        let text = serde_json::to_string_pretty(lease)
            .map_err(|e| Error::new(format!("cannot encode lease: {e}")))?;
        std::fs::write(&path, text).map_err(|e| Error::io(path.display(), &e))
    }

    /// Forgets a fleet's lease (if it is the one from `state_dir`).
    pub fn remove(&self, fleet: &str, state_dir: &Path) -> Result<()> {
        let path = self.path(fleet);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let mine = serde_json::from_str::<Lease>(&text)
            .map_or(true, |l| l.state_dir == state_dir || !l.is_live());
        if mine {
            std::fs::remove_file(&path).map_err(|e| Error::io(path.display(), &e))?;
        }
        Ok(())
    }
}

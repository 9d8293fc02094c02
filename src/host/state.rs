//! `/var/lib/sitec/state.json`: what sitec manages on this host. Written
//! last in an apply, atomically, so it only ever names what was really put
//! in place. Plan reads it to know what to remove (managed before, not
//! wanted now) and to tell drift (same desired state, different host).

use super::system::write_atomic;
use super::wire::STATE_DIR;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The spec generation last applied in full (`None` after a partial one).
    pub generation: Option<String>,
    pub spec: String,
    /// Unix seconds of the last apply.
    pub applied_at: u64,
    /// Every managed resource in the order it was applied.
    pub managed: Vec<Managed>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Managed {
    pub id: String,
    /// The desired state's digest when it was applied.
    pub digest: String,
    /// Services to reload once it is removed.
    #[serde(default)]
    pub notifies: Vec<String>,
    /// Enough of the resource to remove it once the spec drops it.
    #[serde(flatten)]
    pub kind: crate::resources::Kind,
}

pub fn path() -> PathBuf {
    Path::new(STATE_DIR).join("state.json")
}

impl State {
    /// Reads the state file; an absent one is an empty state, an unreadable
    /// one an error (never silently forget what sitec manages).
    pub fn load() -> Result<Self, String> {
        let path = path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{} is damaged ({e}); move it away to start over (sitec then forgets what it put here)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save(&self) -> Result<(), String> {
        std::fs::create_dir_all(STATE_DIR)
            .map_err(|e| format!("cannot create {STATE_DIR}: {e}"))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        write_atomic(&path(), text.as_bytes(), "root", "root", "0600")
    }

    pub fn digest_of(&self, id: &str) -> Option<&str> {
        self.managed
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.digest.as_str())
    }
}

/// `/var/lib/sitec/pending.json`: services owed a reload or restart. An
/// apply records a notification here *before* it changes what notifies, and
/// clears it once the service took the change, so an apply killed in
/// between leaves the debt for the next apply (and plan) to see.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// `(service id, id of what changed)`.
    pub owed: Vec<(String, String)>,
}

impl Pending {
    fn path() -> PathBuf {
        Path::new(STATE_DIR).join("pending.json")
    }

    /// The recorded debts; none when the file is absent or unreadable (a
    /// damaged file can only cost a reload, never a wrong config).
    #[must_use]
    pub fn load() -> Self {
        std::fs::read_to_string(Self::path())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self) -> Result<(), String> {
        if self.owed.is_empty() {
            return match std::fs::remove_file(Self::path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("cannot remove {}: {e}", Self::path().display()))
                }
                _ => Ok(()),
            };
        }
        std::fs::create_dir_all(STATE_DIR)
            .map_err(|e| format!("cannot create {STATE_DIR}: {e}"))?;
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        write_atomic(&Self::path(), text.as_bytes(), "root", "root", "0600")
    }
}

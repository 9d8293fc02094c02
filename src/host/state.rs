//! `/var/lib/sitec/state.json`: what sitec manages on this host. Written
//! last in an apply, atomically, so it only ever names what was really put
//! in place. Plan reads it to know what to remove (managed before, not
//! wanted now) and to tell drift (same desired state, different host).

use super::nofollow::{self, Dir, Ownership};
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

/// The largest state or pending file read: far above what a host holds.
const STATE_LIMIT: u64 = 256 << 20;

/// Root's alone: sitec's own files under /var/lib/sitec.
const PRIVATE: Ownership = Ownership {
    uid: 0,
    gid: 0,
    mode: 0o600,
};

/// Writes one of sitec's own files into /var/lib/sitec (made if missing).
fn save_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = Dir::make(Path::new(STATE_DIR), None)?;
    let name = path.file_name().unwrap_or_default();
    dir.write_atomic(name, bytes, PRIVATE)
}

impl State {
    /// Reads the state file; an absent one is an empty state, an unreadable
    /// one an error (never silently forget what sitec manages).
    pub fn load() -> Result<Self, String> {
        let path = path();
        match nofollow::read(&path, STATE_LIMIT)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is damaged ({e}); move it away to start over (sitec then forgets what it put here)",
                    path.display()
                )
            }),
            None => Ok(Self::default()),
        }
    }

    pub fn save(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        save_private(&path(), text.as_bytes())
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
        nofollow::read(&Self::path(), STATE_LIMIT)
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self) -> Result<(), String> {
        if self.owed.is_empty() {
            return match nofollow::parent(&Self::path())? {
                Some((dir, name)) => dir.remove_file(&name).map(|_| ()),
                None => Ok(()),
            };
        }
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        save_private(&Self::path(), text.as_bytes())
    }
}

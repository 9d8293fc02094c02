//! An exclusive `flock` on a file, held until dropped: serialises `up` and
//! `down` of one fleet, and address allocation across fleets.

use super::error::{Error, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until the lock on `path` (created if missing) is ours.
    pub fn acquire(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), &e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path.display(), &e))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::new(format!("cannot lock {}: {e}", path.display())))?;
        Ok(Self { _file: file })
    }
}

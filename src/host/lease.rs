//! The fleet lock on this host, for `sitec host apply`: before it changes
//! anything, the apply records the lease its operator holds (`ops::lock`)
//! in the agent's state folder, as the agent itself records the leases it
//! grants (`agent::lease`, whose `decide` both follow), and stops if
//! another live lease stands there. So a lease request the bus lost, or an
//! agent that is down, never lets a second operator's apply change this
//! host beside the first. A host with no agent state yet (its first apply)
//! has no lease to respect. The agent's folder is the agent's user's, so
//! everything goes through `nofollow` (no link followed, the record written
//! under a random name and renamed).

use super::nofollow::{Dir, Ownership};
use crate::agent::lease::{self, Action, Outcome};
use crate::ops::lock::Claim;
use std::ffi::OsStr;
use std::path::Path;

/// Records `claim` in the host's lease, or says who holds it instead.
pub fn record(claim: &Claim) -> Result<(), String> {
    let Some(dir) = Dir::open(Path::new(crate::context::AGENT_STATE))? else {
        return Ok(());
    };
    // The agent makes the lock file; until it has run there is none to share.
    let lock = dir.open_file(OsStr::new(lease::LOCK))?;
    if let Some(lock) = &lock {
        rustix::fs::flock(lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| format!("cannot lock the host's lease: {e}"))?;
    }
    let current = (dir.read(OsStr::new(lease::RECORD), lease::RECORD_MAX)?)
        .and_then(|bytes| lease::parse(&bytes));
    let now = crate::agent::unix_time();
    let (record, outcome) = lease::decide(
        current.clone(),
        Action::Take,
        Some(&claim.holder),
        claim.ttl_seconds,
        now,
    );
    if let Outcome::Held(other) = outcome {
        return Err(format!(
            "the fleet is locked by {}; this host was not changed",
            lease::describe(&other, now)
        ));
    }
    if record != current {
        let own = Ownership {
            uid: 0,
            gid: 0,
            mode: 0o644,
        };
        dir.write_atomic(
            OsStr::new(lease::RECORD),
            lease::render(record.as_ref()).as_bytes(),
            own,
        )?;
    }
    Ok(())
}

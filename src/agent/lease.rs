//! The fleet lock, as one host holds it: a lease (who holds it, from
//! where, since when, for what, until when) that `apply`, `restart`,
//! `run --lock` and the data operations take on every agent of the fleet
//! before they change anything (`ops::lock` is the operator's end).
//!
//! The record lives in the agent's state folder (`lease.json`), not only in
//! its memory, and `sitec host apply` (root, over SSH) reads and writes the
//! same record before it changes the host (`host::lease`): a request the
//! bus lost, or an agent that is down or restarting, never lets a second
//! operator's apply run beside the first on that host. Both sides take
//! `lease.lock` (flock) around a read and a write, and decide with the one
//! pure function here, `decide`.
//!
//! A lease expires on its own (`expires`, on this host's clock): a holder
//! renews it while it works, so one that dies loses it within its time to
//! live. Breaking one (`sitec unlock`) says whose it was.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Who holds (or asks for) the lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// The operator's user name.
    pub who: String,
    /// The operator's machine.
    pub from: String,
    /// The operator's process.
    pub pid: u32,
    /// What it does: `apply fleet.site`, `restart blog`.
    pub what: String,
    /// Names this one holding: a renewal or release must repeat it.
    pub token: String,
}

/// A lease as a host records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(flatten)]
    pub holder: Holder,
    /// Unix seconds (this host's clock) it was taken.
    pub since: f64,
    /// Unix seconds it lapses at unless renewed.
    pub expires: f64,
}

impl Lease {
    pub fn live(&self, now: f64) -> bool {
        self.expires > now
    }
}

/// What a request asks of the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Take it (or extend it, if this holder has it already).
    Take,
    /// Extend it; refused if it is not this holder's any more.
    Renew,
    /// Give it up (nothing happens if it is another's).
    Release,
    /// Clear it, whoever holds it.
    Break,
    /// Only say who holds it.
    Show,
}

impl Action {
    pub fn parse(word: &str) -> Option<Action> {
        Some(match word {
            "take" => Action::Take,
            "renew" => Action::Renew,
            "release" => Action::Release,
            "break" => Action::Break,
            "show" => Action::Show,
            _ => return None,
        })
    }
}

/// What came of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It is the asker's until the lease's `expires`.
    Granted(Lease),
    /// Another holds it.
    Held(Lease),
    /// A renewal of a lease that is no longer the asker's (broken, or it
    /// lapsed and another took it): the work it covered must stop.
    Lost(Option<Lease>),
    /// Released or broken: what it was (`None`: nobody held it).
    Cleared(Option<Lease>),
    /// Who holds it now.
    Shown(Option<Lease>),
}

/// Decides a request against the recorded lease `current` at `now`:
/// the record to keep and the outcome. A lapsed lease counts as none.
pub fn decide(
    current: Option<Lease>,
    action: Action,
    asker: Option<&Holder>,
    ttl_seconds: f64,
    now: f64,
) -> (Option<Lease>, Outcome) {
    let recorded = current.clone();
    let live = current.filter(|l| l.live(now));
    let mine = |l: &Lease| asker.is_some_and(|a| a.token == l.holder.token);
    let extended = |since: f64, holder: &Holder| Lease {
        holder: holder.clone(),
        since,
        expires: now + ttl_seconds,
    };
    match (action, asker) {
        (Action::Show, _) => (live.clone(), Outcome::Shown(live)),
        (Action::Break, _) => (None, Outcome::Cleared(live)),
        (Action::Release, _) => match live {
            Some(l) if !mine(&l) => (Some(l), Outcome::Cleared(None)),
            other => (None, Outcome::Cleared(other)),
        },
        (Action::Take | Action::Renew, None) => (live.clone(), Outcome::Shown(live)),
        (Action::Take, Some(holder)) => match live {
            Some(l) if !mine(&l) => (Some(l.clone()), Outcome::Held(l)),
            Some(l) => {
                let lease = extended(l.since, holder);
                (Some(lease.clone()), Outcome::Granted(lease))
            }
            None => {
                let lease = extended(now, holder);
                (Some(lease.clone()), Outcome::Granted(lease))
            }
        },
        // Renewing what lapsed is fine as long as nobody took it since:
        // the record still names this holder.
        (Action::Renew, Some(holder)) => match recorded {
            Some(l) if mine(&l) => {
                let lease = extended(l.since, holder);
                (Some(lease.clone()), Outcome::Granted(lease))
            }
            _ => (live.clone(), Outcome::Lost(live)),
        },
    }
}

/// The lease's files in a state folder, read and written with plain paths:
/// the agent's own folder, which only it (and root) can write.
pub struct Store {
    dir: PathBuf,
}

pub const RECORD: &str = "lease.json";
pub const LOCK: &str = "lease.lock";
/// A record is a few hundred bytes: anything much larger is not one.
pub const RECORD_MAX: u64 = 64 * 1024;

impl Store {
    /// The store in `dir`, creating the lock file `sitec host apply` also
    /// takes (readable by all: root opens it only to lock it).
    pub fn open(dir: &Path) -> Result<Store, String> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot make the state folder {}: {e}", dir.display()))?;
        let lock = dir.join(LOCK);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock)
            .map_err(|e| format!("cannot make {}: {e}", lock.display()))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The recorded lease, read without the lock (records are replaced
    /// whole, by a rename), for heartbeats and `status`.
    pub fn peek(&self) -> Option<Lease> {
        std::fs::read(self.dir.join(RECORD))
            .ok()
            .and_then(|b| parse(&b))
    }

    /// Reads the record, decides, writes the record back if it changed.
    pub fn update(
        &self,
        action: Action,
        asker: Option<&Holder>,
        ttl_seconds: f64,
        now: f64,
    ) -> Result<Outcome, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let lock_path = self.dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let path = self.dir.join(RECORD);
        let current = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let (record, outcome) = decide(current.clone(), action, asker, ttl_seconds, now);
        if record != current {
            let temp = self.dir.join(format!(".{RECORD}.{}", std::process::id()));
            std::fs::write(&temp, render(record.as_ref()))
                .and_then(|()| std::fs::rename(&temp, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(outcome)
    }
}

/// A record's bytes (an empty or unreadable one holds no lease: a lease is
/// only ever written whole, by a rename).
pub fn parse(bytes: &[u8]) -> Option<Lease> {
    serde_json::from_slice(bytes).ok()
}

/// A record's text: the lease, or `{}` for none.
pub fn render(lease: Option<&Lease>) -> String {
    lease.map_or_else(
        || "{}\n".to_string(),
        |l| serde_json::to_string(l).unwrap_or_default() + "\n",
    )
}

/// "alice on laptop (pid 42), for `apply fleet.site`, since 12:03:04 UTC,
/// lapsing in 25 s": who holds a lease, for messages.
pub fn describe(lease: &Lease, now: f64) -> String {
    let h = &lease.holder;
    let left = (lease.expires - now).max(0.0);
    format!(
        "{} on {} (pid {}), for `{}`, since {} UTC, lapsing in {left:.0} s unless renewed",
        h.who,
        h.from,
        h.pid,
        h.what,
        clock(lease.since)
    )
}

/// `HH:MM:SS` of a unix time, UTC.
pub fn clock(unix: f64) -> String {
    let s = unix.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(token: &str) -> Holder {
        Holder {
            who: "alice".into(),
            from: "laptop".into(),
            pid: 42,
            what: "apply fleet.site".into(),
            token: token.into(),
        }
    }

    #[test]
    fn one_holder_at_a_time_until_it_lapses() {
        let (a, b) = (holder("a"), holder("b"));
        let (record, got) = decide(None, Action::Take, Some(&a), 30.0, 100.0);
        let Outcome::Granted(lease) = got else {
            panic!("{got:?}")
        };
        assert_eq!((lease.since, lease.expires), (100.0, 130.0));
        let (record, got) = decide(record, Action::Take, Some(&b), 30.0, 110.0);
        assert!(
            matches!(&got, Outcome::Held(l) if l.holder.token == "a"),
            "{got:?}"
        );
        // a renews: still since 100.
        let (record, got) = decide(record, Action::Renew, Some(&a), 30.0, 120.0);
        assert!(matches!(&got, Outcome::Granted(l) if l.since == 100.0 && l.expires == 150.0));
        // a dies: at 151 it has lapsed and b takes it.
        let (record, got) = decide(record, Action::Take, Some(&b), 30.0, 151.0);
        assert!(
            matches!(&got, Outcome::Granted(l) if l.holder.token == "b"),
            "{got:?}"
        );
        // a's late renewal learns it lost the lease.
        let (record, got) = decide(record, Action::Renew, Some(&a), 30.0, 152.0);
        assert!(
            matches!(&got, Outcome::Lost(Some(l)) if l.holder.token == "b"),
            "{got:?}"
        );
        // a's release leaves b's alone.
        let (record, got) = decide(record, Action::Release, Some(&a), 30.0, 153.0);
        assert_eq!(got, Outcome::Cleared(None));
        assert!(record.is_some());
        // Breaking says whose it was.
        let (record, got) = decide(record, Action::Break, None, 30.0, 154.0);
        assert!(matches!(&got, Outcome::Cleared(Some(l)) if l.holder.token == "b"));
        assert_eq!(record, None);
    }

    #[test]
    fn a_lapsed_lease_may_be_renewed_while_nobody_took_it() {
        let a = holder("a");
        let (record, _) = decide(None, Action::Take, Some(&a), 30.0, 100.0);
        let (_, got) = decide(record.clone(), Action::Renew, Some(&a), 30.0, 200.0);
        assert!(matches!(got, Outcome::Granted(_)), "{got:?}");
        let (_, got) = decide(None, Action::Renew, Some(&a), 30.0, 200.0);
        assert_eq!(got, Outcome::Lost(None), "broken: renewing it is refused");
    }

    #[test]
    fn the_store_keeps_the_record_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let a = holder("a");
        store
            .update(Action::Take, Some(&a), 30.0, 100.0)
            .expect("take");
        // Another process (a restarted agent, `sitec host apply`) sees it.
        let again = Store::open(dir.path()).expect("store");
        let got = again.update(Action::Take, Some(&holder("b")), 30.0, 101.0);
        assert!(matches!(got, Ok(Outcome::Held(_))), "{got:?}");
        std::fs::write(dir.path().join(RECORD), "not json").expect("garble");
        let got = again.update(Action::Show, None, 30.0, 101.0);
        assert_eq!(got, Ok(Outcome::Shown(None)));
        assert!(describe(
            &Lease {
                holder: a,
                since: 3723.0,
                expires: 130.0
            },
            100.0
        )
        .contains(
            "alice on laptop (pid 42), for `apply fleet.site`, since 01:02:03 UTC, lapsing in 30 s"
        ));
    }
}

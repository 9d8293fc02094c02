//! The fleet lock: one lease, held on every agent of the fleet, that
//! `apply`, `restart`, `run --lock` and the data operations take before
//! they change anything, so two operators never change one fleet at once.
//!
//! `Lock::take` asks every agent for the lease at once (`lease` `take`,
//! `agent::lease`); if any says another holds it, the agents that granted
//! it give it back and the command is refused at once with who holds it,
//! from where, since when and for what. An agent that does not answer
//! (down, or not installed yet on a new host) is asked again at each
//! renewal, and `sitec host apply` records the lease in the host's state
//! before it changes that host (`Lock::claim`, `host::lease`), so a lost
//! message never lets a second apply run beside the first. While held, a
//! thread renews the lease every `RENEW` (it lapses `TTL` after the last
//! renewal: a holder that dies loses it within `TTL`); if a renewal finds
//! the lease broken (`sitec unlock`) or taken, `lost` says so and the
//! command stops at its next step. Dropping the `Lock` releases it.
//!
//! For another command (`data`'s backups, restore, failover):
//! `let lock = Lock::take(&fleet, &agents, "failover main")?;` then do the
//! work, checking `lock.lost()` between steps; drop it when done.

use super::{Agents, Fleet};
use crate::agent::lease::{self, Holder, Lease};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a lease lasts after its last renewal.
pub const TTL: Duration = Duration::from_secs(30);
/// How often the holder renews it.
const RENEW: Duration = Duration::from_secs(10);
/// How long every agent gets to answer a lease request.
const ASK: Duration = Duration::from_millis(1500);

/// The fleet lock, held until dropped.
pub struct Lock {
    holder: Holder,
    stop: Arc<AtomicBool>,
    lost: Arc<Mutex<Option<String>>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    agents: Agents,
    hosts: Vec<String>,
    /// Whose lease this one replaced: a holder on this machine that is gone.
    pub taken_over: Option<String>,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum Refused {
    /// Another holds it; what `host`'s agent says of the lease, and the
    /// time on that host then.
    Held {
        host: String,
        lease: Box<Lease>,
        now: f64,
    },
    /// The agents could not be asked.
    Failed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Held { host, lease, now } => write!(
                f,
                "the fleet is locked by {} (as {host} records it); wait for it, or `sitec unlock SPEC` breaks it",
                lease::describe(lease, *now)
            ),
            Refused::Failed(e) => write!(f, "cannot take the fleet lock: {e}"),
        }
    }
}

/// What `sitec host apply` records in the host's state (`host::lease`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub holder: Holder,
    pub ttl_seconds: f64,
}

/// The holder this process is, doing `what`.
pub fn holder(what: &str) -> Holder {
    let (who, from) = super::operator_identity();
    let mut token = [0u8; 16];
    // A token only tells holders apart: the time serves if the kernel fails us.
    if getrandom::fill(&mut token).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        token = nanos.to_le_bytes();
    }
    Holder {
        who,
        from,
        pid: std::process::id(),
        what: what.chars().take(200).collect(),
        token: token.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

impl Lock {
    /// Takes the lease on every agent of `fleet` for `what`. A lease held
    /// by a process of this machine that is gone (an apply killed a moment
    /// ago) is given back in that holder's name and taken (`taken_over`
    /// says whose it was): it cannot be working any more, and making its
    /// operator wait for it to lapse helps nobody.
    pub fn take(fleet: &Fleet, agents: &Agents, what: &str) -> Result<Lock, Refused> {
        let holder = holder(what);
        let hosts: Vec<String> = fleet.hosts.iter().map(|h| h.name.clone()).collect();
        match Lock::attempt(agents, &hosts, holder.clone()) {
            Err(Refused::Held { lease, now, .. }) if gone(&lease.holder) => {
                let _ = agents.ask_all(&hosts, &request("release", &lease.holder), ASK);
                let mut lock = Lock::attempt(agents, &hosts, holder)?;
                lock.taken_over = Some(lease::describe(&lease, now));
                Ok(lock)
            }
            other => other,
        }
    }

    fn attempt(agents: &Agents, hosts: &[String], holder: Holder) -> Result<Lock, Refused> {
        let answers = agents.ask_all(hosts, &request("take", &holder), ASK);
        let mut granted = Vec::new();
        let mut held = None;
        for (host, answer) in answers {
            let Ok(answer) = answer else { continue };
            match answer["outcome"].as_str() {
                Some("granted") => granted.push(host),
                Some("held") => {
                    if let Ok(lease) = serde_json::from_value::<Lease>(answer["lease"].clone()) {
                        let now = answer["time"].as_f64().unwrap_or(lease.since);
                        held.get_or_insert(Refused::Held {
                            host,
                            lease: Box::new(lease),
                            now,
                        });
                    }
                }
                _ => {}
            }
        }
        if let Some(refused) = held {
            let _ = agents.ask_all(&granted, &request("release", &holder), ASK);
            return Err(refused);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(Mutex::new(None));
        let renewer = {
            let (agents, hosts, holder) = (agents.clone(), hosts.to_vec(), holder.clone());
            let (stop, lost) = (stop.clone(), lost.clone());
            std::thread::Builder::new()
                .name("sitec-lock".into())
                .spawn(move || renew(&agents, &hosts, granted, &holder, &stop, &lost))
                .map_err(|e| Refused::Failed(format!("cannot start its renewal: {e}")))?
        };
        Ok(Lock {
            holder,
            stop,
            lost,
            renewer: Some(renewer),
            agents: agents.clone(),
            hosts: hosts.to_vec(),
            taken_over: None,
        })
    }

    /// What `sitec host apply` records on each host it changes.
    pub fn claim(&self) -> Claim {
        Claim {
            holder: self.holder.clone(),
            ttl_seconds: TTL.as_secs_f64(),
        }
    }

    /// Set once a renewal found the lease broken or taken: why.
    pub fn lost(&self) -> Option<String> {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            renewer.thread().unpark();
            let _ = renewer.join();
        }
        let _ = self
            .agents
            .ask_all(&self.hosts, &request("release", &self.holder), ASK);
    }
}

/// Whether `holder` was a process of this machine that no longer runs
/// (its pid gone, or taken by a program that is not sitec).
fn gone(holder: &Holder) -> bool {
    let (_, here) = super::operator_identity();
    if holder.from != here {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{}/comm", holder.pid)) {
        Ok(name) => !name.trim().starts_with("sitec"),
        Err(_) => true,
    }
}

fn request(action: &str, holder: &Holder) -> Value {
    json!({
        "op": "lease",
        "action": action,
        "holder": holder,
        "ttl_seconds": TTL.as_secs_f64(),
    })
}

/// Renews the lease every `RENEW` until `stop`: `renew` where it was
/// granted, `take` where the agent had not answered (it may be new).
fn renew(
    agents: &Agents,
    hosts: &[String],
    granted: Vec<String>,
    holder: &Holder,
    stop: &AtomicBool,
    lost: &Mutex<Option<String>>,
) {
    let mut holding: std::collections::BTreeSet<String> = granted.into_iter().collect();
    loop {
        std::thread::park_timeout(RENEW);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        for (host, answer) in agents.ask_all(hosts, &request("renew", holder), ASK) {
            let Ok(answer) = answer else { continue };
            match answer["outcome"].as_str() {
                Some("granted") => {
                    holding.insert(host);
                }
                Some("lost") => {
                    let taken = serde_json::from_value::<Lease>(answer["lease"].clone()).ok();
                    let now = answer["time"].as_f64().unwrap_or(0.0);
                    let why = match &taken {
                        Some(l) => format!(
                            "{host} says the fleet lock is now {}'s",
                            lease::describe(l, now)
                        ),
                        None => format!("{host} says the fleet lock was broken (`sitec unlock`)"),
                    };
                    if holding.contains(&host) || taken.is_some() {
                        *lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                    } else {
                        // An agent that never granted it (new, or it restarted
                        // without its record): take it there now.
                        let _ = agents.ask(&host, &request("take", holder), ASK);
                    }
                }
                _ => {}
            }
        }
    }
}

/// What one host's agent said to `sitec unlock`: the lease it held (and
/// the time there), none, or why it did not answer.
pub type Broken = (String, Result<Option<(Lease, f64)>, String>);

/// Breaks the lease on every agent: what each one held (`None`: nothing),
/// or why it did not answer.
pub fn unlock(fleet: &Fleet, agents: &Agents) -> Vec<Broken> {
    let hosts: Vec<String> = fleet.hosts.iter().map(|h| h.name.clone()).collect();
    agents
        .ask_all(&hosts, &json!({"op": "lease", "action": "break"}), ASK)
        .into_iter()
        .map(|(host, answer)| {
            let found = answer.map(|a| {
                let now = a["time"].as_f64().unwrap_or(0.0);
                serde_json::from_value::<Lease>(a["lease"].clone())
                    .ok()
                    .map(|l| (l, now))
            });
            (host, found)
        })
        .collect()
}

/// What `sitec unlock` prints: whose lease it broke, on which hosts, and the
/// hosts that did not answer (their records lapse on their own).
pub fn unlock_report(broken: &[Broken]) -> String {
    let mut out = String::new();
    let mut held: Vec<(&Lease, f64, Vec<&str>)> = Vec::new();
    for (host, found) in broken {
        if let Ok(Some((lease, now))) = found {
            match held
                .iter_mut()
                .find(|(l, _, _)| l.holder.token == lease.holder.token)
            {
                Some((_, _, hosts)) => hosts.push(host),
                None => held.push((lease, *now, vec![host])),
            }
        }
    }
    if held.is_empty() {
        out.push_str("The fleet was not locked.\n");
    }
    for (lease, now, hosts) in &held {
        out.push_str(&format!(
            "Broke the fleet lock of {} (held on {}).\n",
            lease::describe(lease, *now),
            hosts.join(", ")
        ));
    }
    for (host, found) in broken {
        if let Err(e) = found {
            out.push_str(&format!(
                "{host}: not broken there ({e}); its record lapses on its own within {} s.\n",
                TTL.as_secs()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unlock_report_names_the_holder_once() {
        let lease = Lease {
            holder: holder("apply fleet.site"),
            since: 3600.0,
            expires: 3630.0,
        };
        let report = unlock_report(&[
            ("lb1".into(), Ok(Some((lease.clone(), 3610.0)))),
            ("run1".into(), Ok(Some((lease, 3610.0)))),
            ("db1".into(), Ok(None)),
            (
                "db2".into(),
                Err("no answer from tcp://10.0.0.4:7701 within 1.5s".into()),
            ),
        ]);
        assert!(
            report.contains("for `apply fleet.site`, since 01:00:00 UTC"),
            "{report}"
        );
        assert!(report.contains("(held on lb1, run1)"), "{report}");
        assert!(
            report.contains("db2: not broken there (no answer"),
            "{report}"
        );
        assert_eq!(unlock_report(&[]), "The fleet was not locked.\n");
    }
}

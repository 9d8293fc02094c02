//! Draining a runner: taking one app on one host out of every balancer's
//! rotation while its requests in flight finish, and returning it once it
//! answers. `sitec restart` drains each runner before its agent restarts
//! the app; `apply` drains a runner whose plan restarts an app's service;
//! a rolling deploy or rollback does the same around each batch.
//!
//! How it goes: the runner's agent is told to drain the app (`drain`, with
//! a time to live this side renews while it holds the drain), which it
//! announces at once in a heartbeat; each balancer then holds that backend
//! out, sends it no new request, and pools none of its connections. The
//! runner knows its requests have finished when every balancer says so:
//! `Drainer::drain` asks each balancer host's agent for its balancer's
//! rotation (`rotation`) until that backend is out as drained with no
//! request in flight. A balancer whose agent does not answer is passed
//! over with a warning (a balancer that is down sends nothing; one whose
//! agent alone is down still reads the runner's heartbeats). `restore`
//! asks the runner's agent to `probe` the app until it answers, ends the
//! drain, and waits until every balancer has it back in rotation.
//!
//! While every runner of an app is drained, the balancers hold new
//! requests for it a while instead of refusing them (`balancer::proxy`),
//! so even an app with one runner keeps serving through a restart.

use super::{Agents, Fleet};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A drain lasts this long after its last renewal: an operator that dies
/// mid-restart leaves no runner out for longer.
pub const TTL: Duration = Duration::from_secs(60);
/// How often held drains are renewed.
const RENEW: Duration = Duration::from_secs(15);
/// How long an agent gets to answer one question.
const ASK: Duration = Duration::from_millis(1500);
/// How often the balancers are asked while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Drains and returns runners, renewing the drains it holds.
pub struct Drainer {
    agents: Agents,
    balancers: Vec<String>,
    why: String,
    held: Arc<Mutex<BTreeMap<(String, String), ()>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Drainer {
    /// A drainer for `fleet`'s runners, made under the fleet lock: it ends
    /// every drain standing (a dead holder's); `why` is what the balancers
    /// show (`restart by alice on laptop`).
    pub fn new(fleet: &Fleet, agents: &Agents, why: &str) -> Drainer {
        let held: Arc<Mutex<BTreeMap<(String, String), ()>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renewer = {
            let (agents, held, stop, why) =
                (agents.clone(), held.clone(), stop.clone(), why.to_string());
            std::thread::Builder::new()
                .name("sitec-drains".into())
                .spawn(move || loop {
                    std::thread::park_timeout(RENEW);
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let drains: Vec<(String, String)> = held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .keys()
                        .cloned()
                        .collect();
                    for (host, app) in drains {
                        let _ = agents.ask(&host, &drain_request(&app, &why), ASK);
                    }
                })
                .ok()
        };
        // Drains are only made under the fleet lock, which this command
        // holds: one still standing is a dead holder's, left to lapse.
        for app in &fleet.apps {
            let _ = agents.ask_all(
                &app.runners,
                &json!({"op": "undrain", "app": app.name}),
                ASK,
            );
        }
        Drainer {
            agents: agents.clone(),
            balancers: fleet.balancers().iter().map(|b| b.name.clone()).collect(),
            why: why.to_string(),
            held,
            stop,
            renewer,
        }
    }

    /// Takes `app` on `host` out of every balancer's rotation and waits
    /// until none of them has a request in flight to it, at most `timeout`.
    /// `warn` hears about balancers passed over.
    pub fn drain(
        &self,
        host: &str,
        app: &str,
        timeout: Duration,
        warn: &mut dyn FnMut(String),
    ) -> Result<(), String> {
        self.agents.ask(host, &drain_request(app, &self.why), ASK)?;
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((host.to_string(), app.to_string()), ());
        let deadline = Instant::now() + timeout;
        let mut waiting: Vec<String> = self.balancers.clone();
        let mut first = true;
        loop {
            let answers = self
                .agents
                .ask_all(&waiting, &json!({"op": "rotation"}), ASK);
            let mut still = Vec::new();
            for (balancer, answer) in answers {
                let found = answer.and_then(|a| backend(&a, app, host).map(|b| b.cloned()));
                match found {
                    Ok(Some(b)) if b["out"]["kind"] == "drained" && b["in_flight"] == 0 => {}
                    Ok(Some(_)) => still.push(balancer),
                    // No route to it there: nothing to drain.
                    Ok(None) => {}
                    Err(e) if first => warn(format!(
                        "{balancer} cannot confirm {app} on {host} is drained ({e}); going on without it"
                    )),
                    Err(_) => {}
                }
            }
            first = false;
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{app} on {host} still had requests in flight on {} after {timeout:?}",
                    still.join(", ")
                ));
            }
            waiting = still;
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `app` on `host` answers (its agent asks it), ends its
    /// drain and waits until every balancer has it back, at most `timeout`.
    pub fn restore(&self, host: &str, app: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.agents.ask(
            host,
            &json!({"op": "probe", "app": app, "timeout_ms": ms}),
            timeout + ASK,
        )?;
        self.end(host, app)?;
        self.until_in_rotation(host, app, deadline, false)
            .map_err(|e| format!("{app} on {host} answers but {e}"))
    }

    /// Waits until every balancer has `app` on `host` in rotation, at most
    /// `timeout`: after an apply that started or restarted it, so the
    /// fleet serves it when apply returns. A balancer whose agent does not
    /// answer yet (a new fleet's, just started) is waited for too.
    pub fn serving(&self, host: &str, app: &str, timeout: Duration) -> Result<(), String> {
        self.until_in_rotation(host, app, Instant::now() + timeout, true)
            .map_err(|e| format!("{app} on {host} {e}"))
    }

    /// Asks every balancer's agent for its rotation until each has `app`
    /// on `host` in it, or has no such backend. One that cannot tell is
    /// waited for when `silent_waits`, else passed over (see `drain`).
    fn until_in_rotation(
        &self,
        host: &str,
        app: &str,
        deadline: Instant,
        silent_waits: bool,
    ) -> Result<(), String> {
        let mut waiting = self.balancers.clone();
        loop {
            let answers = self
                .agents
                .ask_all(&waiting, &json!({"op": "rotation"}), ASK);
            waiting = (answers.into_iter())
                .filter(|(_, a)| match a.as_ref().map(|a| backend(a, app, host)) {
                    Ok(Ok(Some(b))) => b["in_rotation"] != true,
                    Ok(Ok(None)) => false,
                    Ok(Err(_)) | Err(_) => silent_waits,
                })
                .map(|(b, _)| b)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("is not in {}'s rotation yet", waiting.join(", ")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Ends the drain of `app` on `host` without waiting for anything.
    pub fn end(&self, host: &str, app: &str) -> Result<(), String> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(host.to_string(), app.to_string()));
        self.agents
            .ask(host, &json!({"op": "undrain", "app": app}), ASK)
            .map(drop)
    }
}

impl Drop for Drainer {
    /// Drains still held end here (an error stops a restart half way: the
    /// runner it stopped at goes back rather than wait for its drain to lapse).
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.renewer.take() {
            r.thread().unpark();
            let _ = r.join();
        }
        let held: Vec<(String, String)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for (host, app) in held {
            let _ = self
                .agents
                .ask(&host, &json!({"op": "undrain", "app": app}), ASK);
        }
    }
}

fn drain_request(app: &str, why: &str) -> Value {
    json!({"op": "drain", "app": app, "why": why, "ttl_seconds": TTL.as_secs_f64()})
}

/// The backend of `app` on `host` in a balancer agent's `rotation` answer:
/// `Ok(None)` when the balancer has none, `Err` when it cannot tell.
fn backend<'a>(answer: &'a Value, app: &str, host: &str) -> Result<Option<&'a Value>, String> {
    let b = &answer["balancer"];
    if let Some(e) = b["error"].as_str() {
        return Err(e.to_string());
    }
    if b.is_null() {
        return Err("no balancer runs there".into());
    }
    Ok((b["routes"].as_array().into_iter().flatten())
        .filter(|r| r["app"] == app)
        .flat_map(|r| r["backends"].as_array().into_iter().flatten())
        .find(|x| x["host"] == host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_found_in_a_rotation() {
        let a = json!({"balancer": {"routes": [
            {"app": "shop", "backends": [{"host": "run1", "in_flight": 3}]},
            {"app": "blog", "backends": [{"host": "run2"}, {"host": "run1", "in_flight": 0}]}]}});
        assert_eq!(
            backend(&a, "blog", "run1"),
            Ok(Some(&json!({"host": "run1", "in_flight": 0})))
        );
        assert_eq!(backend(&a, "blog", "run3"), Ok(None));
        assert!(backend(&json!({"balancer": {"error": "down"}}), "blog", "run1").is_err());
        assert!(backend(&json!({"balancer": null}), "blog", "run1").is_err());
    }
}

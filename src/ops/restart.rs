//! `sitec restart SPEC APP [--host H]`: a rolling restart that keeps the app
//! serving. One runner at a time: drained out of every balancer's rotation
//! with its requests in flight finished (`drain`), its web service
//! restarted by its agent (`restart`, which returns once systemd has it
//! running again), asked until it answers, returned to rotation, then its
//! workers restarted; only then the next runner. The fleet lock is held
//! throughout (the caller takes it); a runner that fails to come back
//! stops the restart there, with that runner's drain ended so it is not
//! left out.

use super::drain::Drainer;
use super::lock::Lock;
use super::{Agents, Fleet};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long in-flight requests get to finish (gunicorn's own timeout is 30 s).
const DRAIN: Duration = Duration::from_secs(40);
/// How long a restarted app gets to answer and be back in rotation.
const BACK: Duration = Duration::from_secs(90);

/// What happened to one runner.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restarted {
    pub host: String,
    /// Seconds from its drain to its return.
    pub seconds: f64,
}

/// Restarts `app` on each of its runners (or only `only`), one at a time.
/// `say` hears each step.
pub fn rolling(
    fleet: &Fleet,
    agents: &Agents,
    lock: &Lock,
    app: &str,
    only: Option<&str>,
    say: &mut dyn FnMut(String),
) -> Result<Vec<Restarted>, String> {
    let runners = &fleet.app(app)?.runners;
    let hosts: Vec<&String> = match only {
        Some(h) if runners.iter().any(|r| r == h) => runners.iter().filter(|r| *r == h).collect(),
        Some(h) => {
            return Err(format!(
                "{app} does not run on {h}; its runners: {}",
                runners.join(", ")
            ))
        }
        None => runners.iter().collect(),
    };
    let (who, from) = super::operator_identity();
    let drainer = Drainer::new(fleet, agents, &format!("sitec restart by {who} on {from}"));
    let mut done = Vec::new();
    for host in hosts {
        if let Some(why) = lock.lost() {
            return Err(format!("stopped before {host}: {why}"));
        }
        let started = Instant::now();
        say(format!("{host}: draining {app}"));
        drainer.drain(host, app, DRAIN, &mut |w| say(format!("{host}: {w}")))?;
        say(format!("{host}: restarting {app}"));
        let ms = u64::try_from(BACK.as_millis()).unwrap_or(u64::MAX);
        let request = json!({"op": "restart", "app": app, "units": "web", "timeout_ms": ms});
        agents.ask(host, &request, BACK + Duration::from_secs(5))?;
        drainer.restore(host, app, BACK)?;
        let request = json!({"op": "restart", "app": app, "units": "workers", "timeout_ms": ms});
        let workers = agents.ask(host, &request, BACK + Duration::from_secs(5))?;
        let seconds = started.elapsed().as_secs_f64();
        let restarted = workers["restarted"].as_array().map_or(0, Vec::len);
        say(format!(
            "{host}: {app} back in rotation after {seconds:.1} s{}",
            if restarted > 0 {
                format!(" ({restarted} workers restarted)")
            } else {
                String::new()
            }
        ));
        done.push(Restarted {
            host: host.clone(),
            seconds,
        });
    }
    Ok(done)
}

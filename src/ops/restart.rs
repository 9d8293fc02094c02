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

/// When each step of one runner's restart ended, from its start: what
/// the report shows, so a slow restart says which step was slow.
struct Steps {
    drained: Duration,
    restarted: Duration,
    back: Duration,
    workers: usize,
    done: Duration,
}

impl std::fmt::Display for Steps {
    /// `drained 0.3 s, restarted 2.1 s, answering and back 0.9 s, 1 worker 0.1 s`:
    /// each step's own time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |d: Duration| d.as_secs_f64();
        write!(
            f,
            "drained {:.1} s, restarted {:.1} s, answering and back {:.1} s",
            secs(self.drained),
            secs(self.restarted - self.drained),
            secs(self.back - self.restarted),
        )?;
        if self.workers > 0 {
            write!(
                f,
                ", {} worker{} {:.1} s",
                self.workers,
                if self.workers == 1 { "" } else { "s" },
                secs(self.done - self.back)
            )?;
        }
        Ok(())
    }
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
        let drained = started.elapsed();
        say(format!("{host}: restarting {app}"));
        let ms = u64::try_from(BACK.as_millis()).unwrap_or(u64::MAX);
        let request = json!({"op": "restart", "app": app, "units": "web", "timeout_ms": ms});
        agents.ask(host, &request, BACK + Duration::from_secs(5))?;
        let restarted = started.elapsed();
        drainer.restore(host, app, BACK)?;
        let back = started.elapsed();
        let request = json!({"op": "restart", "app": app, "units": "workers", "timeout_ms": ms});
        let workers = agents.ask(host, &request, BACK + Duration::from_secs(5))?;
        let seconds = started.elapsed().as_secs_f64();
        let steps = Steps {
            drained,
            restarted,
            back,
            workers: workers["restarted"].as_array().map_or(0, Vec::len),
            done: started.elapsed(),
        };
        say(format!(
            "{host}: {app} back in rotation after {seconds:.1} s ({steps})"
        ));
        done.push(Restarted {
            host: host.clone(),
            seconds,
        });
    }
    Ok(done)
}

//! Heartbeats that fall silent. A runner's agent beats ten times a second
//! (`agent::heartbeat`); when nothing has come from a host for
//! `bus.silent_ms` (250: two and a half pulses), each of its backends is
//! probed at once, a TCP connect within `bus.probe_ms` (100), rather than at the
//! active checks' next round (`health`, up to `interval_ms` +
//! `timeout_ms` away). A backend that does not answer is found dead
//! (`Backend::found_dead`): out of rotation as if a check had failed (back
//! when a check finds it answering), and the requests in flight to it are
//! given up, sent again to another backend when that is safe (`proxy`).
//! One that answers stays in rotation: the silence alone says only that
//! the bus is out (an agent restarting, a blocked port), and a bus outage
//! must not become a web outage. Each silence is probed once; while it
//! lasts, the active checks go on as they do without a bus.
//!
//! Only hosts heard at least once are watched: a balancer started while
//! an agent is down leaves that runner to the active checks.

use super::backend::Backend;
use super::io::within;
use super::state::Shared;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Looks for silent hosts every sixth of `silent`, for as long as the
/// heartbeats are followed, and probes each one's backends.
pub async fn watch(shared: Arc<Shared>, silent: Duration, probe: Duration) {
    let every = (silent / 6).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut probed = HashMap::new();
    loop {
        tick.tick().await;
        let heard = shared.heard_at();
        for host in fallen_silent(&heard, &mut probed, Instant::now(), silent) {
            let fail_timeout = Duration::from_millis(shared.state().health.fail_timeout_ms);
            for backend in shared.backends_on(&host) {
                let host = host.clone();
                tokio::spawn(async move {
                    check(&backend, &host, probe, fail_timeout).await;
                });
            }
        }
    }
}

/// The hosts last heard longer than `silent` before `now` whose silence
/// has not been probed yet; `probed` remembers, by each host's last
/// heartbeat, which silences were.
fn fallen_silent(
    heard: &[(String, Instant)],
    probed: &mut HashMap<String, Instant>,
    now: Instant,
    silent: Duration,
) -> Vec<String> {
    let mut due = Vec::new();
    for (host, last) in heard {
        if now.saturating_duration_since(*last) < silent || probed.get(host) == Some(last) {
            continue;
        }
        probed.insert(host.clone(), *last);
        due.push(host.clone());
    }
    due
}

/// Probes one backend of silent `host`: found dead if it does not accept
/// a connection within `probe`; left as it is if it does.
async fn check(backend: &Backend, host: &str, probe: Duration, fail_timeout: Duration) {
    match within(probe, TcpStream::connect(backend.addr)).await {
        Ok(_) => tracing::info!(
            backend = %backend.addr,
            "{host}'s heartbeats are silent, but it answers: kept in rotation (the bus, not the runner)"
        ),
        Err(e) => backend.found_dead(
            fail_timeout,
            &format!("{host}'s heartbeats stopped and it does not answer ({e}): found dead"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_silence_is_probed_once_when_it_passes_the_limit() {
        let start = Instant::now();
        let silent = Duration::from_millis(300);
        let at = |ms| start + Duration::from_millis(ms);
        let mut probed = HashMap::new();
        let heard = vec![("run1".to_string(), at(0)), ("run2".to_string(), at(200))];
        assert!(fallen_silent(&heard, &mut probed, at(250), silent).is_empty());
        assert_eq!(
            fallen_silent(&heard, &mut probed, at(301), silent),
            ["run1"]
        );
        assert!(
            fallen_silent(&heard, &mut probed, at(400), silent).is_empty(),
            "run1's silence is probed once"
        );
        assert_eq!(
            fallen_silent(&heard, &mut probed, at(600), silent),
            ["run2"]
        );
        // run1 beats again, then falls silent again: a new silence.
        let heard = vec![("run1".to_string(), at(700))];
        assert!(fallen_silent(&heard, &mut probed, at(900), silent).is_empty());
        assert_eq!(
            fallen_silent(&heard, &mut probed, at(1001), silent),
            ["run1"]
        );
    }

    /// A silent runner that answers stays in rotation (a bus outage is
    /// not a web outage); one that does not is out, and the requests
    /// waiting on it learn it.
    #[tokio::test]
    async fn a_silent_runner_is_out_only_if_it_does_not_answer() {
        let alive = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let answering = Backend::new(alive.local_addr().expect("addr"));
        let gone = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            listener.local_addr().expect("addr")
        };
        let dead = Backend::new(gone);
        let (probe, out_for) = (Duration::from_secs(5), Duration::from_secs(60));
        check(&answering, "run1", probe, out_for).await;
        assert!(answering.is_up(), "kept: it answers");
        assert_eq!(answering.deaths(), 0);
        let deaths = dead.deaths();
        let (_, ()) = tokio::join!(
            check(&dead, "run2", probe, out_for),
            dead.died_since(deaths)
        );
        assert!(!dead.is_up());
        let out = dead.out().expect("out");
        assert!(out.why.contains("run2's heartbeats stopped"), "{out:?}");
    }
}

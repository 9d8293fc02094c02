//! The balancer's end of the bus: it subscribes to every runner agent's
//! heartbeats (`bus.heartbeats`, one SUB socket per agent, so an agent that
//! is down holds up no other) and lets them decide which runners serve.
//! Each heartbeat names its host and the state of every app unit there
//! (`agent::heartbeat`); a route that lists its backends' `hosts` maps
//! (host, app) to backends. An app whose web service its agent reports not
//! running (`serving`; a dead worker does not count) is taken
//! out of rotation at once, before any request fails on it, and an active
//! check cannot bring it back; the next heartbeat that reports it running
//! brings it back. A hold lasts `HOLD` unless renewed, so an agent that
//! stops talking leaves its runners to the passive and active checks
//! rather than out for good. Endpoints are fixed at start.

use super::state::Shared;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use zeromq::{SocketRecv, SubSocket};

/// How long one "not running" heartbeat keeps a backend out (agents beat
/// every second: this outlasts two lost beats).
const HOLD: Duration = Duration::from_secs(3);
/// No heartbeat for this long: the connection is made again.
const SILENCE: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct Beat {
    host: String,
    #[serde(default)]
    apps: Vec<AppBeat>,
}

#[derive(Deserialize)]
struct AppBeat {
    name: String,
    /// Every unit active, workers too.
    healthy: bool,
    /// Its web service active: what the balancer goes by (a dead celery
    /// worker takes no web capacity away). Agents before it sent only
    /// `healthy`.
    #[serde(default)]
    serving: Option<bool>,
    /// Set when the agent could not ask systemd: the states say nothing.
    #[serde(default)]
    error: Option<String>,
}

/// Follows every endpoint, each on a task of its own, for good.
pub fn start(shared: &Arc<Shared>, endpoints: &[String]) {
    for endpoint in endpoints {
        tokio::spawn(follow(shared.clone(), endpoint.clone()));
    }
}

async fn follow(shared: Arc<Shared>, endpoint: String) {
    loop {
        let mut socket: SubSocket =
            crate::agent::connect_when_up(&endpoint, "heartbeats from").await;
        if let Err(e) = socket.subscribe("").await {
            tracing::warn!("heartbeats from {endpoint}: cannot subscribe: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tracing::info!("following heartbeats from {endpoint}");
        loop {
            match tokio::time::timeout(SILENCE, socket.recv()).await {
                Ok(Ok(message)) => {
                    for frame in message.iter() {
                        apply(&shared, frame);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("heartbeats from {endpoint}: {e}; connecting again");
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        "no heartbeat from {endpoint} for {SILENCE:?}; connecting again"
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes out or brings back the backends one heartbeat speaks for.
fn apply(shared: &Shared, frame: &[u8]) {
    let Ok(beat) = serde_json::from_slice::<Beat>(frame) else {
        tracing::debug!("ignored a message on the heartbeat bus that is not a heartbeat");
        return;
    };
    let state = shared.state();
    for app in beat.apps.iter().filter(|a| a.error.is_none()) {
        let Some(backends) = state.runners.get(&(beat.host.clone(), app.name.clone())) else {
            continue;
        };
        let serving = app.serving.unwrap_or(app.healthy);
        for backend in backends {
            if serving {
                backend.release(&format!(
                    "{}'s agent says {} runs again",
                    beat.host, app.name
                ));
            } else {
                backend.hold_out(
                    HOLD,
                    &format!("{}'s agent says {} is not running", beat.host, app.name),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_read_as_the_agent_writes_it() {
        let text = crate::agent::heartbeat_for_tests("run1", false);
        let beat: Beat = serde_json::from_str(&text).expect("a heartbeat");
        assert_eq!(beat.host, "run1");
        assert_eq!(beat.apps.len(), 1);
        assert_eq!(beat.apps[0].name, "blog");
        assert!(!beat.apps[0].healthy);
        assert_eq!(beat.apps[0].serving, Some(false));
        assert!(beat.apps[0].error.is_none());
    }
}

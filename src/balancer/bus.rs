//! The balancer's end of the bus: it subscribes to every runner agent's
//! heartbeats (`bus.heartbeats`: one SUB socket per agent, all on one pump
//! thread, so an agent that is down holds up no other) and lets them decide
//! which runners serve. Each SUB speaks CURVE with the balancer's key and
//! checks the agent's: a heartbeat is tied to the host whose key its PUB
//! proved (`bus.heartbeats[].host`), and one that names another host is
//! ignored (and logged), so a runner speaks only for itself. Each heartbeat
//! gives the state of every app unit there (`agent::heartbeat`); a route
//! that lists its backends' `hosts` maps (host, app) to backends. An app
//! whose web service its agent reports not running (`serving`; a dead
//! worker does not count) is taken out of rotation at once, before any
//! request fails on it, and an active check cannot bring it back; the next
//! heartbeat that reports it running brings it back; one that says the app
//! is drained (`drain`: a restart is coming) holds it out the same way,
//! and the requests already sent finish. A hold lasts `HOLD`
//! unless renewed, so when heartbeats stop (an agent, a bus or a network
//! down) the runners are left to the passive and active checks within
//! `HOLD`, never held out for good: a bus outage is not a web outage.
//! Agents beat ten times a second, most beats only saying they live; a
//! host whose beats stop for `bus.silent_ms` has its backends probed at
//! once (`silence`): out if they do not answer, kept if they do. A
//! reload that changes `[bus]` starts the followers again.

use super::backend::Hold;
use super::config;
use super::state::Shared;
use crate::bus::{self, Bus, Incoming, KeyPair, Kind, PublicKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one "not running" heartbeat keeps a backend out (agents say
/// their apps' states every second: this outlasts two lost ones).
const HOLD: Duration = Duration::from_secs(3);

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
    /// Set while its agent drains it (a restart is coming): why.
    #[serde(default)]
    drain: Option<String>,
}

/// Following the heartbeats: dropping it stops the pump and its task.
pub struct Following {
    /// What it was started with, to tell whether a reload changes it.
    config: config::Bus,
    public: PublicKey,
    _pump: bus::pump::Stop,
    /// Applying heartbeats, and watching for their silence (`silence`).
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for Following {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects to every agent in `config` and follows their heartbeats;
/// `None` when there are none to follow.
pub fn start(shared: &Arc<Shared>, config: &config::Bus) -> Result<Option<Following>, String> {
    let Some(key_file) = &config.key_file else {
        return Ok(None);
    };
    if config.heartbeats.is_empty() {
        return Ok(None);
    }
    let keys = KeyPair::load(key_file)?;
    let public = keys.public;
    let bus = Bus::new(keys)?;
    let mut sockets = Vec::new();
    for h in &config.heartbeats {
        let key =
            PublicKey::parse(&h.key).map_err(|e| format!("bus.heartbeats: {}: {e}", h.host))?;
        sockets.push(bus.connect(Kind::Follow, &h.endpoint, &key)?);
        tracing::info!("following heartbeats from {} at {}", h.host, h.endpoint);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let (_, pump) = bus::pump::spawn("heartbeats", sockets, Some(tx), 1)?;
    let hosts = config.heartbeats.iter().map(|h| h.host.clone()).collect();
    let follow = tokio::spawn(follow(shared.clone(), hosts, rx)).abort_handle();
    let (silent, probe) = (
        Duration::from_millis(config.silent_ms),
        Duration::from_millis(config.probe_ms),
    );
    let watch = tokio::spawn(super::silence::watch(shared.clone(), silent, probe)).abort_handle();
    Ok(Some(Following {
        config: config.clone(),
        public,
        _pump: pump,
        tasks: [follow, watch],
    }))
}

/// After a reload: follows anew if `[bus]` or the balancer's own key
/// (rotated: the agents admit only the new one) changed; the old
/// followers stop first. Needs the runtime entered.
pub fn refresh(following: &mut Option<Following>, shared: &Arc<Shared>, config: &config::Bus) {
    let key = (config.key_file.as_deref()).and_then(|f| KeyPair::load(f).ok());
    let same = following
        .as_ref()
        .is_some_and(|f| f.config == *config && key.is_some_and(|k| k.public == f.public));
    if same {
        return;
    }
    *following = None;
    match start(shared, config) {
        Ok(f) => *following = f,
        Err(e) => tracing::error!("bus: {e}; heartbeats are not followed until the next reload"),
    }
}

/// Applies every heartbeat that arrives, as spoken by the host whose
/// socket it came in on.
async fn follow(
    shared: Arc<Shared>,
    hosts: Vec<String>,
    mut rx: tokio::sync::mpsc::Receiver<Incoming>,
) {
    let mut warned: HashMap<usize, Instant> = HashMap::new();
    while let Some(message) = rx.recv().await {
        let Some(host) = hosts.get(message.from) else {
            continue;
        };
        for frame in &message.frames {
            if let Err(e) = apply(&shared, host, frame) {
                // At most once a minute per agent.
                if warned
                    .get(&message.from)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    tracing::warn!("heartbeats from {host}: {e}");
                    warned.insert(message.from, Instant::now());
                }
            }
        }
    }
}

/// Takes out or brings back the backends that `host`'s heartbeat speaks for.
fn apply(shared: &Shared, host: &str, frame: &[u8]) -> Result<(), String> {
    let beat = serde_json::from_slice::<Beat>(frame)
        .map_err(|e| format!("ignored a message that is not a heartbeat: {e}"))?;
    if beat.host != host {
        return Err(format!(
            "ignored a heartbeat that speaks for `{}`: a host speaks only for itself",
            beat.host
        ));
    }
    shared.heard(host);
    let state = shared.state();
    for app in &beat.apps {
        let Some(backends) = state.runners.get(&(beat.host.clone(), app.name.clone())) else {
            continue;
        };
        // A drain stands whatever systemd says; unknown states say nothing.
        let hold = match (&app.drain, &app.error) {
            (Some(why), _) => Some((
                Hold::Drained,
                format!("{}'s agent drains {}: {why}", beat.host, app.name),
            )),
            (None, Some(_)) => continue,
            (None, None) if app.serving.unwrap_or(app.healthy) => None,
            (None, None) => Some((
                Hold::Stopped,
                format!("{}'s agent says {} is not running", beat.host, app.name),
            )),
        };
        for backend in backends {
            match &hold {
                Some((kind, why)) => backend.hold_out(HOLD, *kind, why),
                None => backend.release(&format!(
                    "{}'s agent says {} runs again",
                    beat.host, app.name
                )),
            }
        }
    }
    Ok(())
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

//! Heartbeats on the PUB socket: every second one JSON message with the
//! host, a sequence number (a subscriber sees what it missed), the unix
//! time, sitec's version and the state of every app unit on the host. The
//! balancers subscribe to learn which runners are alive (they go by the key
//! the PUB proved, not the host named here); the states also answer
//! `status` requests (shared through a watch channel). More of the host's
//! state can join the object: readers ignore fields they do not know.

use super::config::App;
use super::units::{self, AppState};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

pub const INTERVAL: Duration = Duration::from_secs(1);

/// Seconds since the epoch, with milliseconds.
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One heartbeat.
pub fn beat(host: &str, seq: u64, time: f64, apps: &[AppState]) -> String {
    json!({
        "host": host,
        "seq": seq,
        "time": time,
        "version": env!("CARGO_PKG_VERSION"),
        "apps": apps,
    })
    .to_string()
}

/// Publishes a heartbeat every second, forever.
pub async fn run(
    socket: crate::bus::Outbox,
    host: String,
    apps: Vec<App>,
    states: watch::Sender<Vec<AppState>>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_error = None;
    for seq in 0u64.. {
        tick.tick().await;
        let found = units::query(&apps).await;
        let error = found.first().and_then(|a| a.error.clone());
        if error != last_error {
            match &error {
                Some(e) => tracing::warn!("app states unknown: {e}"),
                None => tracing::info!("app states known again"),
            }
            last_error = error;
        }
        let message = beat(&host, seq, unix_time(), &found);
        states.send_replace(found);
        // false: the pump is behind (counted there); the next beat follows.
        let _ = socket.send(vec![message.into_bytes()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_says_who_when_and_what() {
        let v: serde_json::Value = serde_json::from_str(&beat("run1", 3, 12.5, &[])).expect("JSON");
        assert_eq!(v["host"], "run1");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["time"], 12.5);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["apps"], serde_json::json!([]));
    }
}

//! Heartbeats on the PUB socket: every second one JSON message with the
//! host, a sequence number (a subscriber sees what it missed), the unix
//! time, sitec's version, the state of every app unit on the host (each
//! app's drain, if it is drained) and the fleet lock's lease as this host
//! holds it. The balancers subscribe to learn which runners are alive and
//! which are drained (they go by the key the PUB proved, not the host named
//! here); the states also answer `status` requests (shared through a watch
//! channel). A drain that begins or ends is published at once, without
//! waiting for the next second. More of the host's state can join the
//! object: readers ignore fields they do not know.

use super::lease::Lease;
use super::units::{self, AppState};
use super::Ctx;
use serde_json::json;
use std::sync::Arc;
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
pub fn beat(host: &str, seq: u64, time: f64, apps: &[AppState], lease: Option<&Lease>) -> String {
    json!({
        "host": host,
        "seq": seq,
        "time": time,
        "version": env!("CARGO_PKG_VERSION"),
        "apps": apps,
        "lease": lease,
    })
    .to_string()
}

/// Publishes a heartbeat every second, and one at once whenever
/// `ctx.beat_now` is notified (with the units as last found), forever.
pub async fn run(socket: crate::bus::Outbox, ctx: Arc<Ctx>, states: watch::Sender<Vec<AppState>>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_error = None;
    let mut found = Vec::new();
    for seq in 0u64.. {
        let ticked = tokio::select! {
            _ = tick.tick() => true,
            () = ctx.beat_now.notified() => false,
        };
        if ticked {
            found = units::query(&ctx.config.apps).await;
            let error = found.first().and_then(|a| a.error.clone());
            if error != last_error {
                match &error {
                    Some(e) => tracing::warn!("app states unknown: {e}"),
                    None => tracing::info!("app states known again"),
                }
                last_error = error;
            }
        }
        for app in &mut found {
            app.drain = ctx.drains.why(&app.name);
        }
        let now = unix_time();
        let lease = ctx.leases.peek().filter(|l| l.live(now));
        let message = beat(&ctx.config.host, seq, now, &found, lease.as_ref());
        states.send_replace(found.clone());
        // false: the pump is behind (counted there); the next beat follows.
        let _ = socket.send(vec![message.into_bytes()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_says_who_when_and_what() {
        let v: serde_json::Value =
            serde_json::from_str(&beat("run1", 3, 12.5, &[], None)).expect("JSON");
        assert_eq!(v["host"], "run1");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["time"], 12.5);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["apps"], serde_json::json!([]));
        assert_eq!(v["lease"], serde_json::Value::Null);
    }
}

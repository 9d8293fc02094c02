//! Heartbeats on the PUB socket. Every second one JSON message with the
//! host, a sequence number (a subscriber sees what it missed), the unix
//! time, sitec's version, the state of every app unit on the host (each
//! app's drain, if it is drained) and the fleet lock's lease as this host
//! holds it; in between, every `PULSE` (100 ms), a pulse: the host, the
//! sequence number and the time alone, which says the agent lives. The
//! balancers subscribe to learn which runners are alive and which are
//! drained (they go by the key the PUB proved, not the host named here):
//! a runner whose beats stop for a few pulses is probed at once
//! (`balancer::silence`). The states also answer `status` requests
//! (shared through a watch channel). A drain that begins or ends is
//! published at once, without waiting for the next second. Systemd is
//! asked on a task of its own, so a slow answer (a loaded host) never
//! holds up a pulse. More of the host's state can join the object: readers
//! ignore fields they do not know.
//!
//! What pulses cost: a pulse is about 60 bytes, sent once to each balancer
//! (CURVE-encrypted per connection); a balancer reads each runner's ten a
//! second (benches/ops/README.md has the CPU measured).

use super::lease::Lease;
use super::units::{self, AppState};
use super::Ctx;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often the app states are asked of systemd and published.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How often a pulse says the agent lives: a balancer probes a runner
/// silent for two and a half of them (`balancer::silence`, `bus.silent_ms`).
pub const PULSE: Duration = Duration::from_millis(100);

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

/// One pulse: the agent lives.
pub fn pulse(host: &str, seq: u64, time: f64) -> String {
    json!({ "host": host, "seq": seq, "time": time }).to_string()
}

/// Publishes the app states each time systemd has been asked (every
/// second), and at once whenever `ctx.beat_now` is notified (with the
/// units as last found), and a pulse every `PULSE` in between, forever.
pub async fn run(socket: crate::bus::Outbox, ctx: Arc<Ctx>, states: watch::Sender<Vec<AppState>>) {
    let (answers, mut answered) = tokio::sync::mpsc::channel(1);
    // Ends when this task does (its receiver dropped).
    tokio::spawn(ask_systemd(ctx.clone(), answers));
    let mut pulses = tokio::time::interval(PULSE);
    pulses.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut found = Vec::new();
    for seq in 0u64.. {
        let states_now = tokio::select! {
            _ = pulses.tick() => false,
            () = ctx.beat_now.notified() => true,
            Some(asked) = answered.recv() => {
                found = asked;
                true
            }
        };
        if !states_now {
            let message = pulse(&ctx.config.host, seq, unix_time());
            let _ = socket.send(vec![message.into_bytes()]);
            continue;
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

/// Asks systemd for the app units' states every `INTERVAL`, handing each
/// answer to `run`, until it stops listening.
async fn ask_systemd(ctx: Arc<Ctx>, answers: tokio::sync::mpsc::Sender<Vec<AppState>>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_error = None;
    loop {
        tick.tick().await;
        let found = units::query(&ctx.config.apps).await;
        let error = found.first().and_then(|a| a.error.clone());
        if error != last_error {
            match &error {
                Some(e) => tracing::warn!("app states unknown: {e}"),
                None => tracing::info!("app states known again"),
            }
            last_error = error;
        }
        if answers.send(found).await.is_err() {
            return;
        }
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

    #[test]
    fn a_pulse_says_who_and_when_only() {
        let v: serde_json::Value = serde_json::from_str(&pulse("run1", 4, 12.5)).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"host": "run1", "seq": 4, "time": 12.5})
        );
    }
}

//! Control requests (`bus::control`: one JSON object per request, answers
//! with its `id`), taken from the operator's key only: the bus's ZAP
//! handler admits no other key on this socket, and a request that comes
//! without the operator's name is refused here too. `ping` and `status`
//! are answered; anything else (not JSON, no `op`, an op the agent does
//! not know) gets `{"ok": false, "error": ...}`: a peer can never stop the
//! agent. Answers go out without waiting (`Outbox`): a client that never
//! reads its answers loses them and holds up no other.

use super::units::AppState;
use crate::bus::control::{Request, OPERATOR};
use crate::bus::{Incoming, Outbox};
use serde_json::{json, Value};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Requests waiting to be answered; past it the pump drops new ones.
pub const QUEUE: usize = 64;

/// What the answers are made of.
pub struct Facts {
    pub host: String,
    pub started: Instant,
    /// The states the last heartbeat found.
    pub apps: watch::Receiver<Vec<AppState>>,
}

/// Answers every request that arrives, until the pump stops.
pub async fn run(mut incoming: mpsc::Receiver<Incoming>, outbox: Outbox, facts: Facts) {
    while let Some(message) = incoming.recv().await {
        let Some(request) = Request::from_incoming(message, &outbox) else {
            continue;
        };
        if request.peer != OPERATOR {
            request
                .responder
                .error("only the operator's key may send control requests");
            continue;
        }
        let answer = match &request.body {
            Ok(body) => {
                let apps = facts.apps.borrow().clone();
                answer(body, &facts.host, facts.started.elapsed().as_secs(), &apps)
            }
            Err(e) => error(e),
        };
        // false: the client does not read its answers (counted by the pump).
        let _ = request.responder.send(answer);
    }
}

/// The answer to one request (a JSON object).
pub fn answer(request: &Value, host: &str, uptime: u64, apps: &[AppState]) -> Value {
    match request.get("op").and_then(Value::as_str) {
        Some("ping") => json!({
            "ok": true,
            "op": "ping",
            "host": host,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": uptime,
        }),
        Some("status") => json!({ "ok": true, "op": "status", "host": host, "apps": apps }),
        Some(other) => error(&format!(
            "unknown op `{other}`; the agent answers `ping` and `status`"
        )),
        None => error("the request has no `op`; send e.g. {\"op\": \"status\"}"),
    }
}

fn error(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_status_and_errors() {
        let apps = vec![AppState {
            name: "blog".into(),
            healthy: true,
            serving: true,
            units: Vec::new(),
            error: None,
        }];
        let ping = answer(&json!({"op": "ping"}), "run1", 7, &apps);
        assert_eq!(
            (ping["ok"].clone(), ping["uptime_seconds"].clone()),
            (json!(true), json!(7))
        );
        assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
        let status = answer(&json!({"op": "status"}), "run1", 7, &apps);
        assert_eq!(status["apps"][0]["name"], "blog");
        for (body, says) in [
            (json!({"op": "reboot"}), "unknown op `reboot`"),
            (json!({}), "no `op`"),
            (json!({"op": 1}), "no `op`"),
        ] {
            let a = answer(&body, "run1", 0, &apps);
            assert_eq!(a["ok"], false);
            assert!(a["error"].as_str().is_some_and(|e| e.contains(says)), "{a}");
        }
    }
}

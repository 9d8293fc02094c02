//! Control requests on the ROUTER socket: one JSON object per request,
//! `{"op": "ping"}` or `{"op": "status"}`, one JSON object back. A REQ
//! client's envelope (its identity and the empty delimiter) or a DEALER's
//! (its identity) is sent back as it came, with the answer as the last
//! frame. Anything else — not JSON, no `op`, an op the agent does not know —
//! gets `{"ok": false, "error": ...}`: a peer can never stop the agent.

use super::units::AppState;
use serde_json::{json, Value};
use std::time::Instant;
use tokio::sync::watch;
use zeromq::{RouterSocket, SocketSend, ZmqMessage};

/// What the answers are made of.
pub struct Facts {
    pub host: String,
    pub started: Instant,
    /// The states the last heartbeat found.
    pub apps: watch::Receiver<Vec<AppState>>,
}

/// Answers every request on `socket`, forever.
pub async fn run(mut socket: RouterSocket, facts: Facts) {
    loop {
        let request = super::next_message(&mut socket, "control").await;
        let mut frames = request.into_vecdeque();
        let Some(body) = frames.pop_back().filter(|_| !frames.is_empty()) else {
            continue;
        };
        let apps = facts.apps.borrow().clone();
        let answer = answer(&body, &facts.host, facts.started.elapsed().as_secs(), &apps);
        let mut reply = ZmqMessage::from(answer.to_string());
        while let Some(frame) = frames.pop_back() {
            reply.push_front(frame);
        }
        if let Err(e) = socket.send(reply).await {
            tracing::warn!("control: cannot answer: {e}");
        }
    }
}

/// The answer to one request body.
pub fn answer(body: &[u8], host: &str, uptime: u64, apps: &[AppState]) -> Value {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error(&format!(
                "the request is not JSON ({e}); send e.g. {{\"op\": \"ping\"}}"
            ))
        }
    };
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
        let ping = answer(br#"{"op":"ping"}"#, "run1", 7, &apps);
        assert_eq!(
            (ping["ok"].clone(), ping["uptime_seconds"].clone()),
            (json!(true), json!(7))
        );
        assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
        let status = answer(br#"{"op":"status"}"#, "run1", 7, &apps);
        assert_eq!(status["apps"][0]["name"], "blog");
        for (body, says) in [
            (&br#"{"op":"reboot"}"#[..], "unknown op `reboot`"),
            (b"{}", "no `op`"),
            (b"\xff", "not JSON"),
            (b"[1]", "no `op`"),
        ] {
            let a = answer(body, "run1", 0, &apps);
            assert_eq!(a["ok"], false);
            assert!(a["error"].as_str().is_some_and(|e| e.contains(says)), "{a}");
        }
    }
}

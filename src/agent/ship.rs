//! Shipping log lines to the collectors: one PUSH socket per collector, so
//! every collector gets every line (a PUSH connected to several would deal
//! the lines out between them) and a collector that is down holds up no
//! other. Lines wait in a bounded queue per collector while it is away:
//! zmq.rs returns a line it could not hand to any peer, the socket is made
//! again and connects with backoff, and the line goes first once it is back.
//! A collector away for longer than the queue holds loses the oldest lines
//! (counted in the log); the files themselves stay on the host.
//!
//! Not lossless across a collector restart yet: zmq.rs's PUSH never reads
//! from its peer, so it learns that a collector closed only when a write
//! fails, and the line or two written into the dead connection before that
//! are gone. Losing none needs acknowledged delivery (lines numbered per
//! file, acked by the collector, resent from the last ack), which PUSH/PULL
//! cannot carry.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use zeromq::{PushSocket, SocketSend, ZmqError, ZmqMessage};

/// Lines kept per collector while it is unreachable.
pub const QUEUE: usize = 8 * 1024;

/// One log line on the bus: `{host, tag, line, time}` as JSON.
pub fn message(host: &str, tag: &str, line: &str, time: f64) -> Arc<str> {
    serde_json::json!({ "host": host, "tag": tag, "line": line, "time": time })
        .to_string()
        .into()
}

/// Sends every line from `lines` to the collector at `endpoint`, forever.
pub async fn run(endpoint: String, mut lines: broadcast::Receiver<Arc<str>>) {
    let mut held: Option<ZmqMessage> = None;
    loop {
        let mut socket: PushSocket = super::connect_when_up(&endpoint, "log collector").await;
        tracing::info!("shipping logs to {endpoint}");
        loop {
            let next = match held.take() {
                Some(m) => m,
                None => match lines.recv().await {
                    Ok(line) => ZmqMessage::from(line.to_string()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            "log collector {endpoint}: {n} lines dropped while it was away"
                        );
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            match socket.send(next).await {
                Ok(()) => {}
                Err(ZmqError::ReturnToSender { message, .. }) => {
                    held = Some(message);
                    break;
                }
                Err(e) => {
                    tracing::warn!("log collector {endpoint}: {e}");
                    break;
                }
            }
        }
        tracing::warn!("log collector {endpoint} went away; reconnecting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

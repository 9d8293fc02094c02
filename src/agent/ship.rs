//! Shipping log lines to the collectors: one PUSH socket per collector
//! (`Kind::Ship`, CURVE with this host's key, checking the collector's), so
//! every collector gets every line (a PUSH connected to several would deal
//! the lines out between them) and a collector that is down holds up no
//! other. Lines wait while a collector is away: in libzmq's queue for it
//! (its high-water mark), then in the pump's outbox (`QUEUE`); past both,
//! new lines are dropped and counted in the log. The files themselves stay
//! on the host, and libzmq connects again by itself.
//!
//! Not lossless across a collector restart yet: the lines libzmq had
//! written into the connection that died are gone. Losing none needs
//! acknowledged delivery (lines numbered per file, acked by the collector,
//! resent from the last ack), which PUSH/PULL cannot carry.

/// Lines kept in each collector's outbox beyond libzmq's own queue.
pub const QUEUE: usize = 8 * 1024;

/// One log line on the bus: `{host, tag, line, time}` as JSON (the
/// collector files it under the name this host's key is admitted under,
/// not `host`).
pub fn message(host: &str, tag: &str, line: &str, time: f64) -> Vec<u8> {
    serde_json::json!({ "host": host, "tag": tag, "line": line, "time": time })
        .to_string()
        .into_bytes()
}

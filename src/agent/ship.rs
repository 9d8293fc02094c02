//! Shipping log lines to the collectors, acknowledged: for each collector
//! a thread of its own with a DEALER (`Kind::Ship`, CURVE with this host's
//! key, checking the collector's) and followers of its own of the `[[log]]`
//! files (`follow`), each a cursor into its file on disk that starts where
//! that collector acknowledged it (`positions::Acked`, kept in
//! `STATE/ship/COLLECTOR.json`). So every collector gets every line, one
//! that is away costs this host no memory (its cursors wait in the files,
//! which stay on disk, rotated by logrotate), and a restarted agent goes on
//! where each collector has the lines, not at the files' ends.
//!
//! Lines go out in batches, `{id, lines: [{tag, file, offset, end, line,
//! time}]}` (at most `BATCH_LINES` lines and `BATCH_BYTES` bytes of JSON),
//! at most `WINDOW` of them unacknowledged; no more is read while they are
//! (a bounded read-ahead, `READ_AHEAD`). The collector answers `{id, ok:
//! true}` once it has filed and synced the batch, or dropped the lines it
//! already had (`positions::Seen`, by file and offset). A batch not
//! acknowledged within `RESEND` is sent again (a collector restarted, a
//! connection lost, a collector over its rate). Positions are saved only
//! up to the oldest batch not yet acknowledged, so a restart sends again,
//! never skips, what was in flight: at least once on the wire, once in the
//! collector's files.
//!
//! A tag's lines reach the collector in their order across its files: a
//! line of a file other than the one the collector has acknowledged of
//! its tag (rotated, truncated) is sent only when nothing of that tag is
//! unacknowledged, and then no more of that file until that batch is
//! acknowledged (`may_send`). Batches a dead connection lost are sent
//! again after later ones, so without this the collector could meet the
//! new file first and take the old one's late lines for another new file:
//! filed out of order, or twice (`positions::Seen`).

use super::follow::{Follower, Line, Start};
use super::positions::{Acked, FileId};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches sent and not yet acknowledged, at most.
pub const WINDOW: usize = 8;
/// Lines in one batch, at most (each batch costs the collector a sync and
/// this host a save of its positions: 1,024 lines of an access log's
/// length are about 240 KiB of JSON).
pub const BATCH_LINES: usize = 1024;
/// Bytes of JSON in one batch, at most (a line is at most 8 KiB, escaped
/// at most six times that): well under the collector's message limit.
pub const BATCH_BYTES: usize = 256 * 1024;
/// How long a batch may wait for its acknowledgement before it is sent again.
const RESEND: Duration = Duration::from_secs(2);
/// Lines read and not yet in a batch past which the files are not read.
const READ_AHEAD: usize = 4 * BATCH_LINES;
/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(100);

/// A followed file, for one collector.
struct Followed {
    follower: Follower,
    /// Shared by its lines (no copy a line).
    tag: Arc<str>,
    last_error: Option<String>,
}

/// A line read, waiting for its batch.
struct Pending {
    tag: Arc<str>,
    line: Line,
    time: f64,
}

/// A line as it travels in a batch.
#[derive(Serialize)]
struct Wire<'a> {
    tag: &'a str,
    file: FileId,
    offset: u64,
    end: u64,
    line: &'a str,
    time: f64,
}

/// A batch sent and not yet acknowledged.
struct Batch {
    id: u64,
    body: Vec<u8>,
    sent: Instant,
    /// Where each of its lines ends, in order: what an acknowledgement saves.
    ends: Vec<(Arc<str>, FileId, u64)>,
    acked: bool,
}

/// One collector's shipping.
pub struct Shipper {
    socket: zmq::Socket,
    /// The collector's endpoint, for the log.
    collector: String,
    followed: Vec<Followed>,
    acked: Acked,
    pending: VecDeque<Pending>,
    in_flight: VecDeque<Batch>,
    next_id: u64,
    /// The last error saving positions, said once.
    save_error: Option<String>,
}

impl Shipper {
    /// Ships `files` (`(path, tag, owner)`) through `socket` (a DEALER
    /// connected to the collector at `collector`), resuming each where the
    /// positions under `state_dir` say that collector has it.
    pub fn new(
        socket: zmq::Socket,
        collector: &str,
        files: &[(PathBuf, String, String)],
        state_dir: &Path,
    ) -> Result<Shipper, String> {
        let acked = Acked::load(state_dir, collector)?;
        let followed = (files.iter())
            .map(|(path, tag, owner)| {
                let start = acked.get(tag).map_or(Start::End, Start::Saved);
                Followed {
                    follower: Follower::new(path.clone(), owner.clone(), start),
                    tag: Arc::from(tag.as_str()),
                    last_error: None,
                }
            })
            .collect();
        let mut shipper = Shipper {
            socket,
            collector: collector.to_string(),
            followed,
            acked,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_id: 1,
            save_error: None,
        };
        // Where each file starts is fixed before the agent says it runs.
        shipper.read();
        Ok(shipper)
    }

    /// Ships on a thread of its own, for as long as the process lives.
    pub fn spawn(mut self) -> Result<(), String> {
        std::thread::Builder::new()
            .name("sitec-agent-ship".into())
            .spawn(move || loop {
                self.step(POLL);
            })
            .map(drop)
            .map_err(|e| format!("cannot start shipping logs: {e}"))
    }

    /// One round: read what is new (room permitting), send what fits the
    /// window, send again what waited too long, and take the
    /// acknowledgements that come within `wait`.
    pub fn step(&mut self, wait: Duration) {
        let started = Instant::now();
        if self.pending.len() < READ_AHEAD {
            self.read();
        }
        while self.in_flight.len() < WINDOW && self.send_batch() {}
        for batch in self.in_flight.iter_mut().filter(|b| !b.acked) {
            if batch.sent.elapsed() >= RESEND {
                // Not sent (no connection yet): tried again after RESEND too.
                let _ = self.socket.send(&batch.body, zmq::DONTWAIT);
                batch.sent = Instant::now();
            }
        }
        let left = wait.saturating_sub(started.elapsed());
        let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
        if self.socket.poll(zmq::POLLIN, ms).unwrap_or(0) > 0 {
            self.receive();
        }
    }

    fn read(&mut self) {
        let mut started = false;
        for f in &mut self.followed {
            let mut lines = Vec::new();
            let result = f.follower.poll(&mut lines);
            if self.acked.get(&f.tag).is_none() {
                // Where this file's shipping starts is saved at once, so a
                // restart before any acknowledgement starts there again,
                // not at the file's end then.
                let first = lines.first().map(|l| (l.file, l.offset));
                let at = first.or_else(|| f.follower.position().map(|p| (p.file, p.end)));
                if let Some((file, offset)) = at {
                    self.acked.ack(&f.tag, file, offset);
                    started = true;
                }
            }
            let time = super::heartbeat::unix_time();
            self.pending.extend(lines.into_iter().map(|line| Pending {
                tag: f.tag.clone(),
                line,
                time,
            }));
            super::follow::report(&f.follower, result, &mut f.last_error);
        }
        if started {
            self.save();
        }
    }

    /// Saves the positions, saying a failure once.
    fn save(&mut self) {
        let saved = self.acked.save().err();
        if saved != self.save_error {
            if let Some(e) = &saved {
                tracing::warn!("log shipping to {}: {e}", self.collector);
            }
            self.save_error = saved;
        }
    }

    /// Whether a line of `tag`'s `file` may go out now: a line of the file
    /// the collector has acknowledged of the tag, or of another (the tag's
    /// next file) once nothing of the tag waits for its acknowledgement.
    fn may_send(&self, tag: &str, file: FileId) -> bool {
        let unacked = |b: &Batch| !b.acked && b.ends.iter().any(|(t, _, _)| **t == *tag);
        self.acked.get(tag).is_some_and(|p| p.file == file) || !self.in_flight.iter().any(unacked)
    }

    /// Sends the next batch of the lines pending, as many as fit and may
    /// go out in their order; false when none may.
    fn send_batch(&mut self) -> bool {
        let id = self.next_id;
        // `{"id": ID, "lines": [LINE, ...]}`, each line serialized once,
        // straight into the batch.
        let mut body = format!("{{\"id\":{id},\"lines\":[").into_bytes();
        let head = body.len();
        let mut line = Vec::new();
        let mut ends = Vec::new();
        while let Some(p) = self.pending.front() {
            if !self.may_send(&p.tag, p.line.file) {
                break;
            }
            line.clear();
            let wire = Wire {
                tag: &p.tag,
                file: p.line.file,
                offset: p.line.offset,
                end: p.line.end,
                line: &p.line.text,
                time: p.time,
            };
            // Into a Vec, of strings and numbers: it cannot fail.
            let _ = serde_json::to_writer(&mut line, &wire);
            let bytes = body.len() - head;
            if !ends.is_empty()
                && (ends.len() >= BATCH_LINES || bytes + line.len() + 1 > BATCH_BYTES)
            {
                break;
            }
            if !ends.is_empty() {
                body.push(b',');
            }
            body.extend_from_slice(&line);
            ends.push((p.tag.clone(), p.line.file, p.line.end));
            self.pending.pop_front();
        }
        if ends.is_empty() {
            return false;
        }
        body.extend_from_slice(b"]}");
        self.next_id += 1;
        let _ = self.socket.send(&body, zmq::DONTWAIT);
        self.in_flight.push_back(Batch {
            id,
            body,
            sent: Instant::now(),
            ends,
            acked: false,
        });
        true
    }

    /// Takes every acknowledgement that has arrived; saves the positions
    /// of the batches acknowledged in a row from the oldest.
    fn receive(&mut self) {
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let Some(answer) = frames
                .last()
                .and_then(|f| serde_json::from_slice::<Value>(f).ok())
            else {
                continue;
            };
            let id = answer.get("id").and_then(Value::as_u64);
            if answer.get("ok") != Some(&Value::Bool(true)) {
                let why = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason");
                tracing::warn!("log collector {} refused a batch: {why}", self.collector);
                continue;
            }
            if let Some(batch) = self.in_flight.iter_mut().find(|b| Some(b.id) == id) {
                batch.acked = true;
            }
        }
        let mut moved = false;
        while self.in_flight.front().is_some_and(|b| b.acked) {
            if let Some(batch) = self.in_flight.pop_front() {
                for (tag, file, end) in &batch.ends {
                    self.acked.ack(tag, *file, *end);
                }
                moved = true;
            }
        }
        if moved {
            self.save();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::collector::{Filer, Limits};
    use serde_json::json;
    use std::io::Write;

    fn append(path: &Path, from: u32, to: u32) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open for append");
        let text: String = (from..to).map(|n| format!("line {n}\n")).collect();
        f.write_all(text.as_bytes()).expect("append");
    }

    /// A collector on a ROUTER: files each batch it is given, or loses it.
    struct Collector {
        router: zmq::Socket,
        filer: Filer,
        dir: PathBuf,
    }

    impl Collector {
        /// The next batch the shipper sends (within 10 s), stepping it.
        fn next(&self, shipper: &mut Shipper) -> (Vec<u8>, Value) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                shipper.step(Duration::from_millis(10));
                if let Ok(mut frames) = self.router.recv_multipart(zmq::DONTWAIT) {
                    let body = frames.pop().expect("a body");
                    let batch = serde_json::from_slice(&body).expect("a JSON batch");
                    return (frames.pop().expect("a routing id"), batch);
                }
            }
            panic!("no batch within 10 s");
        }

        /// Files `batch` from `peer` and acknowledges it, as the collector does.
        fn file(&mut self, peer: &[u8], batch: &Value) {
            if self.filer.file_batch("run1", batch, Instant::now()) {
                let ack = json!({"id": batch["id"], "ok": true}).to_string();
                (self.router.send_multipart([peer, ack.as_bytes()], 0)).expect("ack");
            }
        }

        fn filed(&self) -> Vec<String> {
            let text = std::fs::read_to_string(self.dir.join("run1/t/app.log")).unwrap_or_default();
            (text.lines())
                .map(|l| l.split_once('\t').map_or(l, |(_, t)| t).to_string())
                .collect()
        }
    }

    /// The collector meets a tag's lines in their order across a rotation
    /// even when a batch of the old file is lost on the wire (a dead
    /// connection) and sent again after 2 s: nothing of the new file is
    /// sent before it is acknowledged. A late copy of it is not filed twice.
    #[test]
    fn a_lost_batch_of_a_rotated_file_is_filed_before_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        append(&log, 0, 0);
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).expect("ROUTER");
        router.bind("inproc://ship-rotation").expect("bind");
        let dealer = context.socket(zmq::DEALER).expect("DEALER");
        dealer.connect("inproc://ship-rotation").expect("connect");
        let files = [(
            log.clone(),
            "t/app.log".to_string(),
            crate::agent::follow::tests::me(),
        )];
        let state = dir.path().join("state");
        let mut shipper = Shipper::new(dealer, "lb1", &files, &state).expect("shipper");
        let mut collector = Collector {
            router,
            filer: Filer::new(dir.path().join("fleet"), Limits::default()),
            dir: dir.path().join("fleet"),
        };
        append(&log, 0, 10);
        let (peer, first) = collector.next(&mut shipper);
        collector.file(&peer, &first);
        // Lost on the wire; the file rotated; the new one written.
        append(&log, 10, 20);
        let (_, lost) = collector.next(&mut shipper);
        std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
        append(&log, 20, 30);
        let want: Vec<String> = (0..30).map(|n| format!("line {n}")).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while collector.filed().len() < want.len() && Instant::now() < deadline {
            let (peer, batch) = collector.next(&mut shipper);
            collector.file(&peer, &batch);
        }
        assert_eq!(collector.filed(), want, "each line once, in order");
        collector.file(&peer, &lost);
        assert_eq!(collector.filed(), want, "a late copy is filed once");
    }
}

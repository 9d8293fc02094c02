//! A pump: the thread that owns one or more libzmq sockets (they are not
//! thread-safe and their calls block) and moves messages between them and
//! the rest of the process without ever blocking on either side.
//!
//! Inbound, every socket is read as soon as `zmq::poll` says it has a
//! message and the bounded tokio channel it feeds has room; each message
//! (at most `MAX_FRAMES` frames kept, the rest read and dropped) goes to
//! that channel. When its reader falls behind, the pump stops reading and
//! libzmq's own per-peer queues fill (each to its high-water mark, then that
//! peer's TCP connection waits): a peer that floods waits for its own turn,
//! and libzmq's fair queuing still gives every other peer its turn.
//! Outbound, an `Outbox` queues messages for the first
//! socket in a bounded channel and wakes the thread through a socket pair;
//! the thread sends each with `DONTWAIT`. What libzmq cannot take at once
//! is dropped and counted (a PUB or ROUTER peer that does not read; the
//! log shippers, which must not drop, own their DEALERs, `agent::ship`).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames kept of one message; the bus's messages have at most three
/// (a REQ's envelope, its delimiter, the body).
const MAX_FRAMES: usize = 4;
/// Messages read from one socket before the others get a turn.
const BATCH: usize = 256;

/// A message that arrived.
#[derive(Debug)]
pub struct Incoming {
    /// Which of the pump's sockets it came in on (their order at `spawn`).
    pub from: usize,
    /// The name its sender was admitted under (the ZAP handler's user id);
    /// `None` on a connecting socket, where the bound peer is known by the
    /// endpoint and key it was connected with.
    pub peer: Option<String>,
    pub frames: Vec<Vec<u8>>,
}

/// Queues messages for a pump's first socket. Cheap to clone; sending never
/// blocks.
#[derive(Clone)]
pub struct Outbox {
    queue: SyncSender<Vec<Vec<u8>>>,
    wake: Arc<UnixStream>,
    dropped: Arc<AtomicU64>,
}

impl Outbox {
    /// Queues `frames`; false (and counted) when the queue is full or the
    /// pump is gone.
    pub fn send(&self, frames: Vec<Vec<u8>>) -> bool {
        match self.queue.try_send(frames) {
            Ok(()) => {
                // A full socket buffer means a wake-up is pending already.
                let _ = (&*self.wake).write(&[1]);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Stops a pump's thread (within its poll interval) when dropped; its
/// sockets close with it.
pub struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts the thread `name` for `sockets`: what
/// arrives goes to `inbox` if given; the returned outbox feeds the first
/// socket, holding up to `queue` messages.
pub fn spawn(
    name: &str,
    sockets: Vec<zmq::Socket>,
    inbox: Option<tokio::sync::mpsc::Sender<Incoming>>,
    queue: usize,
) -> Result<(Outbox, Stop), String> {
    let (tx, rx) = sync_channel(queue);
    let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| format!("cannot start {name}: {e}"))?;
    for end in [&wake_tx, &wake_rx] {
        end.set_nonblocking(true)
            .map_err(|e| format!("cannot start {name}: {e}"))?;
    }
    let dropped = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut pump = Pump {
        name: name.to_string(),
        sockets,
        inbox,
        outbox: rx,
        wake: Some(wake_rx),
        dropped: dropped.clone(),
        stop: stop.clone(),
        reported: Instant::now(),
    };
    std::thread::Builder::new()
        .name(format!("sitec-bus-{name}"))
        .spawn(move || pump.run())
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let outbox = Outbox {
        queue: tx,
        wake: Arc::new(wake_tx),
        dropped,
    };
    Ok((outbox, Stop(stop)))
}

struct Pump {
    name: String,
    sockets: Vec<zmq::Socket>,
    inbox: Option<tokio::sync::mpsc::Sender<Incoming>>,
    outbox: Receiver<Vec<Vec<u8>>>,
    /// `None` once every `Outbox` is gone (a pump that only receives, as
    /// the balancer's heartbeats): its end then reads as closed, always
    /// ready, and polling it would spin the thread.
    wake: Option<UnixStream>,
    /// Messages dropped either way since the last report.
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reported: Instant,
}

impl Pump {
    fn run(&mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let room = self
                .inbox
                .as_ref()
                .map_or(BATCH, |i| i.capacity().min(BATCH));
            let readable = match self.poll(room > 0) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("bus {}: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for (i, ready) in readable.into_iter().enumerate() {
                if ready {
                    self.receive(i, room);
                }
            }
            self.drain_wake();
            self.send();
            self.report();
        }
    }

    /// Waits for a message (if there is `room` for one), room to send the
    /// held one, or a wake-up: at most 500 ms, or 10 ms while the inbox is
    /// full (its reader frees room without waking the pump); says which
    /// sockets have a message.
    fn poll(&self, room: bool) -> zmq::Result<Vec<bool>> {
        let mut items: Vec<zmq::PollItem> = self
            .sockets
            .iter()
            .map(|s| {
                let events = if room {
                    zmq::POLLIN
                } else {
                    zmq::PollEvents::empty()
                };
                s.as_poll_item(events)
            })
            .collect();
        if let Some(wake) = &self.wake {
            items.push(zmq::PollItem::from_fd(wake.as_raw_fd(), zmq::POLLIN));
        }
        zmq::poll(&mut items, if room { 500 } else { 10 })?;
        Ok((items.iter().take(self.sockets.len()))
            .map(zmq::PollItem::is_readable)
            .collect())
    }

    /// Reads up to `room` messages from socket `from` into the inbox.
    fn receive(&mut self, from: usize, room: usize) {
        for _ in 0..room {
            let Some((frames, peer)) = read_message(&self.sockets[from]) else {
                return;
            };
            let Some(inbox) = &self.inbox else {
                continue;
            };
            let message = Incoming { from, peer, frames };
            // Room was counted before reading; only a closed inbox fails.
            if inbox.try_send(message).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn drain_wake(&mut self) {
        let mut buf = [0u8; 256];
        while let Some(wake) = &mut self.wake {
            match wake.read(&mut buf) {
                Ok(0) => self.wake = None,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Sends what the outbox holds, as far as the socket takes it now.
    fn send(&mut self) {
        let Some(socket) = self.sockets.first() else {
            return;
        };
        loop {
            let message = match self.outbox.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            match socket.send_multipart(&message, zmq::DONTWAIT) {
                Ok(()) => {}
                // Full (EAGAIN) or gone (EHOSTUNREACH, a ROUTER's peer):
                // that peer's loss only.
                Err(_) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Logs the dropped messages, at most once a minute.
    fn report(&mut self) {
        if self.reported.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.reported = Instant::now();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                "bus {}: {dropped} messages dropped in the last minute (a peer or this process fell behind)",
                self.name
            );
        }
    }
}

/// The next message on `socket` if one is waiting: its first `MAX_FRAMES`
/// frames and its sender's user id (a ROUTER's identity frame is made by
/// the ROUTER and carries none: the first frame that has one says it).
fn read_message(socket: &zmq::Socket) -> Option<(Vec<Vec<u8>>, Option<String>)> {
    let mut frame = socket.recv_msg(zmq::DONTWAIT).ok()?;
    let mut frames = Vec::new();
    let mut peer = None;
    loop {
        if peer.is_none() {
            peer = (frame.gets("User-Id"))
                .filter(|u| !u.is_empty())
                .map(str::to_string);
        }
        let more = frame.get_more();
        if frames.len() < MAX_FRAMES {
            frames.push(frame.to_vec());
        }
        if !more {
            break;
        }
        match socket.recv_msg(0) {
            Ok(next) => frame = next,
            Err(_) => break,
        }
    }
    Some((frames, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pump whose outboxes are all gone stops polling its wake-up end
    /// (closed, it would be ready on every poll: a spinning thread); while
    /// one lives, a wake-up is read and the end kept.
    #[test]
    fn a_pump_without_outboxes_stops_polling_its_wake_up() {
        let (outbox_end, pump_end) = UnixStream::pair().expect("pair");
        pump_end.set_nonblocking(true).expect("nonblocking");
        let (_queue, outbox) = sync_channel(1);
        let mut pump = Pump {
            name: "test".into(),
            sockets: Vec::new(),
            inbox: None,
            outbox,
            wake: Some(pump_end),
            dropped: Arc::default(),
            stop: Arc::default(),
            reported: Instant::now(),
        };
        (&outbox_end).write_all(&[1]).expect("wake");
        pump.drain_wake();
        assert!(pump.wake.is_some(), "an outbox lives");
        drop(outbox_end);
        pump.drain_wake();
        assert!(pump.wake.is_none(), "every outbox is gone");
    }
}

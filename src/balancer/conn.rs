//! `Conn`: one client connection, from accept to close. It reads request
//! heads one after the other (pipelined requests wait in the buffer and are
//! answered in order, because each is answered before the next is read),
//! enforces the keep-alive idle timeout and the header-read deadline (a
//! slowloris client gets 408 and is closed, costing only a parked task),
//! refuses what the strict parser refuses, routes by host, hands the
//! exchange with a backend to `proxy`, and records each request in metrics
//! and the access log. A close that may leave a request body unread lingers
//! (see `Conn::linger`). It never parses bytes itself.

use super::buf::Buf;
use super::forward::Origin;
use super::head::Framing;
use super::io::{until, within, Alarm, ClientIo, Deadline};
use super::pages;
use super::refusal::Refusal;
use super::request::RequestHead;
use super::router::App;
use super::scanner::HeadScanner;
use super::state::{Shared, State};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Whether the connection carries another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
    /// Close, though the client may still be sending a request body we did
    /// not read (we answered it ourselves, or the backend answered early):
    /// see `Conn::linger`.
    CloseUnread,
}

/// How long a closing connection keeps reading what its client still sends
/// (nginx's `lingering_timeout` is 5 s too).
const LINGER: Duration = Duration::from_secs(5);

/// What the access log and metrics say about one request.
pub struct Record {
    /// When its head was in hand.
    started: Instant,
    /// 499 until a response is written: the client went away first.
    pub status: u16,
    pub bytes: u64,
    pub backend: Option<SocketAddr>,
}

impl Record {
    fn new() -> Self {
        Record {
            started: Instant::now(),
            status: 499,
            bytes: 0,
            backend: None,
        }
    }
}

pub struct Conn<S> {
    pub io: S,
    pub buf: Buf,
    pub peer: SocketAddr,
    /// The peer's address for the forwarding fields, and whether it came
    /// over TLS.
    pub origin: Origin,
    pub shared: Arc<Shared>,
    /// When it was accepted or last finished a response: the idle timeout
    /// counts from there.
    last_active: Instant,
    /// `timeouts.idle_ms` of the config its last request was served by
    /// (not looked up again for each wait: a config load is an atomic
    /// reference count up and down).
    idle: Duration,
}

/// What a connection waits on, made once per connection: its timer (see
/// `Alarm`: the idle wait and the wait for a backend's answer share it) and
/// the drain signal (its waiter stays queued instead of being queued and
/// unqueued per request).
struct Waits<'a, D> {
    alarm: Alarm<'a>,
    drain: Pin<&'a mut D>,
}

impl<S: ClientIo> Conn<S> {
    pub fn new(io: S, peer: SocketAddr, tls: bool, shared: Arc<Shared>) -> Self {
        let idle = Duration::from_millis(shared.state().timeouts.idle_ms);
        Conn {
            io,
            buf: Buf::default(),
            peer,
            origin: Origin::new(peer.ip(), tls),
            shared,
            last_active: Instant::now(),
            idle,
        }
    }

    /// Serves requests until either side closes, a timeout, or a drain.
    pub async fn serve(&mut self) {
        let shared = self.shared.clone();
        let timer = pin!(tokio::time::sleep(self.idle));
        let mut waits = Waits {
            alarm: Alarm::new(timer),
            drain: pin!(shared.drain_started()),
        };
        let unread = loop {
            if self.buf.is_empty() {
                self.buf.release();
                if !self.wait_idle(&mut waits).await {
                    break false;
                }
            }
            // Boxed: an idle connection's task then holds only this loop
            // and its waits (560 bytes, where reading a head and proxying
            // inline made it 1,200: 7 MB more for 10,000 idle clients).
            match Box::pin(self.request(&mut waits.alarm)).await {
                Next::KeepAlive => {}
                Next::Close => break false,
                Next::CloseUnread => break true,
            }
        };
        let _ = self.io.shutdown().await;
        if unread {
            Box::pin(self.linger()).await;
        }
    }

    /// After our answer and FIN went out, reads and drops what the client
    /// still sends until it closes too, for at most `LINGER`: closing a
    /// socket with unread input resets the connection, and a client still
    /// sending its body could lose the answer to that reset (nginx's
    /// lingering close).
    async fn linger(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut sink = vec![0u8; 16384];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(1..) = self.io.read(&mut sink).await {}
        })
        .await;
    }

    /// One request, from reading its head (it has begun to arrive, or is
    /// whole in the buffer) to the end of its answer: refused, or routed
    /// and proxied.
    async fn request(&mut self, alarm: &mut Alarm<'_>) -> Next {
        match self.read_head().await {
            Ok(Some((state, head))) => self.exchange(&state, head, alarm).await,
            Ok(None) => Next::Close,
            Err((state, refusal)) => {
                self.refuse(&state, refusal).await;
                Next::CloseUnread
            }
        }
    }

    /// Reads a request head under the header deadline. `Ok(None)`: the
    /// client closed.
    async fn read_head(
        &mut self,
    ) -> Result<Option<(Arc<State>, RequestHead)>, (Arc<State>, Refusal)> {
        let state = self.shared.state();
        self.idle = Duration::from_millis(state.timeouts.idle_ms);
        let mut deadline = Deadline::new(Duration::from_millis(state.timeouts.header_ms));
        let mut scanner = HeadScanner::default();
        loop {
            match scanner.scan(self.buf.filled(), &state.head_limits) {
                Err(refusal) => return Err((state, refusal)),
                Ok(Some(span)) => {
                    let parsed = RequestHead::parse(
                        &self.buf.filled()[span.start..span.end],
                        &state.head_limits,
                    );
                    self.buf.consume(span.end);
                    return match parsed {
                        Ok(head) => Ok(Some((state, head))),
                        Err(refusal) => Err((state, refusal)),
                    };
                }
                Ok(None) => {}
            }
            match until(&mut deadline, self.buf.read_from(&mut self.io)).await {
                None => {
                    return Err((
                        state,
                        Refusal::new(408, "request head not received in time"),
                    ))
                }
                Some(Ok(0) | Err(_)) => return Ok(None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits until the client sends something: false when it stays idle
    /// for `timeouts.idle_ms`, closes, or a drain starts. A request already
    /// sent is served even when a drain has started (its answer then closes
    /// the connection): closing on it would fail a request the client
    /// believes delivered. That order also spares the busy path a look at
    /// the drain signal (a lock) when the next request is already here.
    async fn wait_idle<D: Future<Output = ()>>(&mut self, waits: &mut Waits<'_, D>) -> bool {
        let limit = self.last_active + self.idle;
        tokio::select! {
            biased;
            ready = self.io.ready() => ready.is_ok(),
            () = waits.drain.as_mut() => false,
            () = waits.alarm.expired(limit) => false,
        }
    }

    /// Answers a refused head and counts it; the connection then closes.
    async fn refuse(&mut self, state: &State, refusal: Refusal) {
        self.shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %self.peer, status = refusal.status, "refused: {}", refusal.reason);
        let mut rec = Record::new();
        self.reply(
            state,
            &mut rec,
            pages::page(refusal.status, refusal.reason, true),
            refusal.status,
        )
        .await;
        self.record(None, None, &rec);
    }

    /// One request: route, proxy, record.
    async fn exchange(&mut self, state: &State, req: RequestHead, alarm: &mut Alarm<'_>) -> Next {
        let mut rec = Record::new();
        let app = state.router.find(req.host()).cloned();
        let next = match &app {
            Some(app) => self.proxy(state, app, &req, &mut rec, alarm).await,
            None => {
                let close = self.must_close(&req);
                let page = pages::page(
                    404,
                    &format!("No app serves the host `{}`.", req.host()),
                    close,
                );
                self.reply(state, &mut rec, page, 404).await;
                after_own_reply(&req, close)
            }
        };
        self.record(app.as_deref(), Some(&req), &rec);
        next
    }

    /// Whether a response we write ourselves must close the connection:
    /// the client asked, we are draining, or its body is still unread.
    pub fn must_close(&self, req: &RequestHead) -> bool {
        !req.keep_alive || self.shared.draining() || req.framing != Framing::None
    }

    /// Writes a response the balancer made itself.
    pub async fn reply(&mut self, state: &State, rec: &mut Record, bytes: Vec<u8>, status: u16) {
        let send = std::time::Duration::from_millis(state.timeouts.body_ms);
        if within(send, self.io.write_all(&bytes)).await.is_ok() {
            rec.status = status;
            rec.bytes = bytes.len() as u64;
        }
    }

    fn record(&mut self, app: Option<&App>, req: Option<&RequestHead>, rec: &Record) {
        let now = Instant::now();
        let elapsed = now - rec.started;
        self.last_active = now;
        match app {
            Some(app) => app.metrics.observe(rec.status, elapsed),
            None => self.shared.metrics.app("-").observe(rec.status, elapsed),
        }
        let log = self.shared.log();
        let Some(log) = log.as_ref() else {
            return;
        };
        let request = req.map_or("-".to_owned(), |r| {
            let version = match r.version {
                super::head::Version::Http10 => "HTTP/1.0",
                super::head::Version::Http11 => "HTTP/1.1",
            };
            format!(
                "{} {} {version}",
                String::from_utf8_lossy(r.method()),
                r.path().replace('"', "%22")
            )
        });
        let line = format!(
            "{} {} {} \"{request}\" {} {} {:.6} {}\n",
            super::access_log::timestamp(SystemTime::now()),
            self.peer,
            app.map_or("-", |a| a.name.as_str()),
            rec.status,
            rec.bytes,
            elapsed.as_secs_f64(),
            rec.backend.map_or("-".to_owned(), |b| b.to_string()),
        );
        if !log.write(line) {
            self.shared
                .metrics
                .log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What follows a response the balancer wrote itself (`close`: it said so):
/// a body the request announced is unread, and lingers.
pub fn after_own_reply(req: &RequestHead, close: bool) -> Next {
    if req.framing != Framing::None {
        Next::CloseUnread
    } else if close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

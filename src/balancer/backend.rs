//! `Backend`: one runner address, shared by every route and every config
//! generation that names it: its health (passive: a refused connection
//! takes it out until `down_until`, and so do `STRIKES` requests in a row
//! that it accepted and then dropped unanswered; active checks in `health`
//! bring it back), its count of requests in flight (for least-connections)
//! and its pool of idle kept-alive connections. Idle connections are given
//! out newest first, only while younger than the idle timeout (set shorter
//! than the backend's own, so we never reuse one it is closing) and only if
//! the socket shows no EOF or stray bytes. A backend found dead
//! (`found_dead`: its runner's heartbeats stopped and it does not answer)
//! wakes the requests in flight to it (`died_since`), which give up on it
//! rather than wait for their timeouts. While it is out it keeps why
//! (`Out`, for `/rotation` and `sitec status`), and a connection that
//! finishes its request then is closed, not pooled: a drained runner sees
//! its balancers' connections go as their requests end. It never speaks HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

struct Idle {
    stream: TcpStream,
    since: Instant,
}

pub struct Backend {
    pub addr: SocketAddr,
    /// Milliseconds since `epoch()` until which it is out; 0 when up.
    down_until: AtomicU64,
    /// Likewise, because its runner's agent says the app is not running
    /// (heartbeats, `bus`); an active check does not bring it back.
    held_until: AtomicU64,
    /// Requests in flight to it: what a drain waits for.
    pub active: AtomicUsize,
    /// Upgraded connections (WebSockets) open to it. Not requests in
    /// flight: a drain never waits for them (they may last for hours); the
    /// app server closes them when it restarts (a close frame).
    tunnels: AtomicUsize,
    pub failures: AtomicU64,
    /// Requests in a row it accepted and dropped unanswered.
    strikes: AtomicU32,
    idle: Mutex<Vec<Idle>>,
    /// Why it is out, by the health checks and by its agent, and since when.
    why: Mutex<Why>,
    /// Times it was found dead (`found_dead`), and the requests in flight
    /// to it waiting on that (`died_since`).
    deaths: AtomicU64,
    death: tokio::sync::Notify,
}

/// Why a backend went out of rotation, as last set.
#[derive(Default)]
struct Why {
    down: Option<(String, Instant)>,
    held: Option<(Hold, String, Instant)>,
}

/// Why its runner's agent holds it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The app's web service is not running there.
    Stopped,
    /// The agent drains it (a restart is coming): requests in flight finish.
    Drained,
}

/// A backend out of rotation, for `/rotation`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Out {
    /// `drained`, `stopped` (its agent says so) or `failing` (the checks).
    pub kind: &'static str,
    pub why: String,
    /// Seconds since it went out.
    pub seconds: f64,
}

/// Requests in a row a backend may accept and drop unanswered before it is
/// taken out. One such request says little about the next: a gunicorn
/// worker killed for its timeout, or a crash in one view, drops only its
/// own request, and taking the app's only runner out for it would answer
/// everyone else 503 until the next active check. Three in a row is a
/// runner that drops everything. (A refused connect takes it out at once.)
pub const STRIKES: u32 = 3;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// `period` after `now` (both as `now_ms` counts), saturating.
fn ms_after(now: u64, period: Duration) -> u64 {
    now.saturating_add(u64::try_from(period.as_millis()).unwrap_or(u64::MAX))
}

impl Backend {
    pub fn new(addr: SocketAddr) -> Self {
        Backend {
            addr,
            down_until: AtomicU64::new(0),
            held_until: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            strikes: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
            why: Mutex::new(Why::default()),
            deaths: AtomicU64::new(0),
            death: tokio::sync::Notify::new(),
        }
    }

    fn lock_why(&self) -> std::sync::MutexGuard<'_, Why> {
        self.why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Why it is out of rotation now, if it is: a hold by its agent first.
    pub fn out(&self) -> Option<Out> {
        let now = now_ms();
        let held = self.held_until.load(Ordering::Relaxed) > now;
        let down = self.down_until.load(Ordering::Relaxed) > now;
        let why = self.lock_why();
        let (kind, text, since) = match (&why.held, &why.down) {
            (Some((hold, text, since)), _) if held => {
                let kind = match hold {
                    Hold::Drained => "drained",
                    Hold::Stopped => "stopped",
                };
                (kind, text.clone(), *since)
            }
            (_, Some((text, since))) if down => ("failing", text.clone(), *since),
            _ if held || down => ("failing", "out of rotation".to_string(), Instant::now()),
            _ => return None,
        };
        Some(Out {
            kind,
            why: text,
            seconds: since.elapsed().as_secs_f64(),
        })
    }

    /// Held out by its agent's drain (and not failing its checks).
    pub fn drained(&self) -> bool {
        let now = now_ms();
        self.held_until.load(Ordering::Relaxed) > now
            && self.down_until.load(Ordering::Relaxed) <= now
            && matches!(self.lock_why().held, Some((Hold::Drained, _, _)))
    }

    /// Requests it has in flight.
    pub fn in_flight(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Upgraded connections (WebSockets) it has open.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// What least-connections weighs: requests in flight and open tunnels,
    /// each holding some of the app server's capacity.
    pub fn load(&self) -> usize {
        self.in_flight() + self.tunnels()
    }

    pub fn is_up(&self) -> bool {
        // The later of the two: out while either lasts.
        let until =
            (self.down_until.load(Ordering::Relaxed)).max(self.held_until.load(Ordering::Relaxed));
        until == 0 || until <= now_ms()
    }

    /// Its runner's agent says the app is not running, or drains it: out
    /// for `period` (renewed by every such heartbeat), whatever active
    /// checks find.
    pub fn hold_out(&self, period: Duration, hold: Hold, why: &str) {
        let now = now_ms();
        let was_held = self
            .held_until
            .swap(ms_after(now, period), Ordering::Relaxed)
            > now;
        let mut reason = self.lock_why();
        let same = was_held
            && reason
                .held
                .as_ref()
                .is_some_and(|(h, w, _)| *h == hold && w == why);
        if !same {
            tracing::warn!(backend = %self.addr, "{why}; out of rotation");
            let since = match &reason.held {
                Some((_, _, since)) if was_held => *since,
                _ => Instant::now(),
            };
            reason.held = Some((hold, why.to_string(), since));
            drop(reason);
            self.clear_idle();
        }
    }

    /// Its runner's agent says the app runs again.
    pub fn release(&self, why: &str) {
        if self.held_until.swap(0, Ordering::Relaxed) > now_ms() {
            tracing::info!(backend = %self.addr, "{why}; back in rotation");
            self.lock_why().held = None;
        }
    }

    /// Passive or active health: takes it out for `period` (its pool goes
    /// too), saying `why`.
    pub fn mark_down(&self, period: Duration, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self
            .down_until
            .swap(ms_after(now_ms(), period), Ordering::Relaxed)
            == 0
        {
            tracing::warn!(backend = %self.addr, "backend failed ({why}); out of rotation for {period:?}");
            self.lock_why().down = Some((why.to_string(), Instant::now()));
        }
        self.clear_idle();
    }

    /// Its runner was found dead (its heartbeats stopped and it does not
    /// answer, `silence`): out for `period` like a failed check, and every
    /// request in flight to it is given up (`died_since`).
    pub fn found_dead(&self, period: Duration, why: &str) {
        self.mark_down(period, why);
        self.deaths.fetch_add(1, Ordering::SeqCst);
        self.death.notify_waiters();
    }

    /// Times it was found dead so far: what `died_since` compares with.
    pub fn deaths(&self) -> u64 {
        self.deaths.load(Ordering::SeqCst)
    }

    /// Resolves once it is found dead after `deaths` was read (a request
    /// in flight takes that as its answer: given up, retried if safe).
    pub async fn died_since(&self, deaths: u64) {
        loop {
            let woken = self.death.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the count is read: a death in between
            // still wakes it.
            woken.as_mut().enable();
            if self.deaths() != deaths {
                return;
            }
            woken.await;
        }
    }

    /// It accepted a request and dropped it unanswered: out for `period`
    /// if that is the `STRIKES`th time in a row.
    pub fn strike(&self, period: Duration) {
        if self.strikes.fetch_add(1, Ordering::Relaxed) + 1 < STRIKES {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.strikes.store(0, Ordering::Relaxed);
            self.mark_down(
                period,
                &format!("{STRIKES} requests in a row dropped unanswered"),
            );
        }
    }

    /// It answered a request: the strikes start over. (Read first: most
    /// requests leave the shared counter untouched.)
    pub fn answered(&self) {
        if self.strikes.load(Ordering::Relaxed) != 0 {
            self.strikes.store(0, Ordering::Relaxed);
        }
    }

    /// Closes every idle connection (one turned out dead: so are the rest).
    pub fn clear_idle(&self) {
        self.lock_idle().clear();
    }

    /// An active check passed: back in rotation.
    pub fn mark_up(&self) {
        if self.down_until.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(backend = %self.addr, "backend answers again; back in rotation");
            self.lock_why().down = None;
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest idle connection that is young enough and still open.
    pub fn take_idle(&self, max_idle: Duration) -> Option<TcpStream> {
        let mut idle = self.lock_idle();
        while let Some(conn) = idle.pop() {
            if conn.since.elapsed() >= max_idle {
                idle.clear();
                return None;
            }
            let mut probe = [0u8; 1];
            if matches!(conn.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Keeps a connection for the next request, up to `max` idle ones
    /// (none while it is out of rotation: the connection closes).
    pub fn put_idle(&self, stream: TcpStream, max: usize) {
        if !self.is_up() {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < max {
            idle.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections older than `max_idle`; returns how many are left.
    pub fn sweep(&self, max_idle: Duration) -> usize {
        let mut idle = self.lock_idle();
        idle.retain(|c| c.since.elapsed() < max_idle);
        idle.len()
    }
}

/// Counts a request in flight on a backend while it lives.
pub struct InFlight<'a>(&'a Backend);

impl<'a> InFlight<'a> {
    pub fn new(backend: &'a Backend) -> Self {
        backend.active.fetch_add(1, Ordering::Relaxed);
        InFlight(backend)
    }
}

impl<'a> InFlight<'a> {
    /// The request became a tunnel (`101 Switching Protocols`): no longer in
    /// flight, so a drain does not wait for it, but still counted.
    pub fn into_tunnel(self) -> Tunnel<'a> {
        self.0.tunnels.fetch_add(1, Ordering::Relaxed);
        Tunnel(self.0)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open tunnel to a backend, counted while it lives.
pub struct Tunnel<'a>(&'a Backend);

impl Drop for Tunnel<'_> {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_says_why_and_since_when_until_released() {
        let b = Backend::new("127.0.0.1:9".parse().expect("addr"));
        assert_eq!(b.out(), None);
        b.hold_out(
            Duration::from_secs(60),
            Hold::Drained,
            "drained for a restart",
        );
        let first = b.out().expect("held");
        assert_eq!(
            (first.kind, first.why.as_str()),
            ("drained", "drained for a restart")
        );
        // Renewed by the next heartbeat: still out since the first.
        b.hold_out(
            Duration::from_secs(60),
            Hold::Drained,
            "drained for a restart",
        );
        assert!(b.out().expect("held").seconds >= first.seconds);
        b.hold_out(
            Duration::from_secs(60),
            Hold::Stopped,
            "blog is not running",
        );
        assert_eq!(b.out().expect("held").kind, "stopped");
        b.release("runs again");
        assert_eq!(b.out(), None);
        assert!(b.is_up());
    }

    /// A request waiting on a backend learns of its death whenever it
    /// comes, before or after the request began waiting; a death before the
    /// request started is not its own.
    #[tokio::test]
    async fn a_death_reaches_the_requests_in_flight() {
        let b = std::sync::Arc::new(Backend::new("127.0.0.1:9".parse().expect("addr")));
        b.found_dead(Duration::from_secs(60), "an earlier death");
        let before = b.deaths();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.died_since(before).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "an earlier death is not this request's"
        );
        b.found_dead(Duration::from_secs(60), "heartbeats stopped; no answer");
        waiting.await.expect("woken by the death");
        // Found dead between reading the count and waiting: not missed.
        b.died_since(before).await;
        assert!(!b.is_up());
        assert!(b.out().expect("out").why.contains("an earlier death"));
    }

    #[test]
    fn only_strikes_in_a_row_take_a_backend_out() {
        let b = Backend::new("127.0.0.1:9".parse().expect("addr"));
        let out_for = Duration::from_secs(60);
        for _ in 0..3 {
            for _ in 1..STRIKES {
                b.strike(out_for);
            }
            assert!(b.is_up(), "out before {STRIKES} strikes in a row");
            b.answered();
        }
        for _ in 0..STRIKES {
            b.strike(out_for);
        }
        assert!(!b.is_up());
        let out = b.out().expect("out");
        assert_eq!(out.kind, "failing");
        assert!(out.why.contains("dropped unanswered"), "{out:?}");
        assert_eq!(
            b.failures.load(Ordering::Relaxed),
            u64::from(4 * STRIKES - 3)
        );
    }
}

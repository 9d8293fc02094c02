//! Small I/O helpers shared by the client and backend sides: timeouts that
//! cost nothing when the I/O is done at once, a connection's reusable
//! timer for its long waits (`Alarm`), and the `ClientIo` trait that
//! lets a plain TCP client wait for bytes while holding no buffer. No
//! protocol logic.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Polls `f` once. Most reads and writes on the request path complete on
/// their first poll; only those that must wait get a timer (making one
/// costs a clock read and a runtime-handle lookup, arming it a lock and a
/// wheel insertion), which does not change when they time out.
async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

/// Runs `f` for at most `d`; running out is `ErrorKind::TimedOut`.
pub async fn within<T>(d: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut f = std::pin::pin!(f);
    if let Poll::Ready(done) = poll_once(f.as_mut()).await {
        return done;
    }
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// A time limit that starts counting the first time something has to wait
/// for it: most request heads arrive whole in the first read, and then it
/// costs no clock read. Counting from the first wait instead of the first
/// byte moves a limit by microseconds at most.
pub struct Deadline {
    after: Duration,
    at: Option<Instant>,
}

impl Deadline {
    pub fn new(after: Duration) -> Self {
        Deadline { after, at: None }
    }

    fn at(&mut self) -> Instant {
        *self.at.get_or_insert_with(|| Instant::now() + self.after)
    }
}

/// Runs `f` until `deadline`; `None` if it ran out first.
pub async fn until<F: Future>(deadline: &mut Deadline, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    if let Poll::Ready(done) = poll_once(f.as_mut()).await {
        return Some(done);
    }
    tokio::time::timeout_at(deadline.at(), f).await.ok()
}

/// A connection's one timer for its long waits (for the next request, for
/// a backend's answer). Armed for the earliest limit any wait has needed
/// and moved only when it fires before the current wait's own limit, or
/// when a wait needs it sooner: a busy connection re-arms it about once per
/// timeout instead of making, arming and dropping a timer per request (a
/// clock read and a handle lookup to make, a lock and a wheel insertion to
/// arm, another lock to drop). Not for short limits (the head deadline):
/// those would pull it in every time.
pub struct Alarm<'a> {
    timer: Pin<&'a mut Sleep>,
}

impl<'a> Alarm<'a> {
    pub fn new(timer: Pin<&'a mut Sleep>) -> Self {
        Alarm { timer }
    }

    /// Resolves once `limit` has passed.
    pub async fn expired(&mut self, limit: Instant) {
        if self.timer.deadline() > limit {
            self.timer.as_mut().reset(limit);
        }
        loop {
            self.timer.as_mut().await;
            // Armed for an earlier wait: this one's limit may not be here.
            if Instant::now() >= limit {
                return;
            }
            self.timer.as_mut().reset(limit);
        }
    }

    /// Runs `f` until `limit`; `None` if it ran out first.
    pub async fn until<F: Future>(&mut self, limit: Instant, f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            done = f => Some(done),
            () = self.expired(limit) => None,
        }
    }
}

/// A client stream: plain TCP or TLS over TCP.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits until there may be something to read, without a buffer.
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl ClientIo for TcpStream {
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        // The reader's own waker slot, as a read uses: `readable()` would
        // queue a waiter node (a lock to link it, another to unlink it).
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        let (tcp, tls) = self.get_ref();
        // `wants_read` is false when rustls holds decrypted bytes (or the
        // peer's close_notify): read at once. Otherwise what comes next
        // comes over the socket. Without this wait an idle TLS client was
        // read under the head deadline and got a 408 for a request it never
        // began, after `header_ms` instead of `idle_ms`.
        let buffered = !tls.wants_read();
        std::future::poll_fn(move |cx| {
            if buffered {
                return Poll::Ready(Ok(()));
            }
            tcp.poll_read_ready(cx)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs `body` on a current-thread runtime with time paused: timers
    /// fire in order, as soon as nothing else can run.
    fn paused(body: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(body);
    }

    #[test]
    fn a_wait_ends_at_its_own_limit_whatever_the_timer_was_armed_for() {
        paused(async {
            let start = Instant::now();
            let timer = std::pin::pin!(tokio::time::sleep(ms(75_000)));
            let mut alarm = Alarm::new(timer);
            // Sooner than the timer: pulled in.
            assert_eq!(alarm.until(start + ms(100), pending::<()>()).await, None);
            assert_eq!(Instant::now(), start + ms(100));
            // Later than the timer (now at 100 ms): it fires first, the wait goes on.
            let second = Instant::now();
            alarm.until(second + ms(50), pending::<()>()).await;
            assert_eq!(Instant::now(), second + ms(50));
            let third = Instant::now();
            assert_eq!(alarm.until(third + ms(1_500), pending::<()>()).await, None);
            assert_eq!(Instant::now(), third + ms(1_500));
        });
    }

    #[test]
    fn work_done_in_time_is_returned_and_leaves_the_timer_armed() {
        paused(async {
            let start = Instant::now();
            let timer = std::pin::pin!(tokio::time::sleep(ms(60_000)));
            let mut alarm = Alarm::new(timer);
            let quick = async {
                tokio::time::sleep(ms(10)).await;
                7
            };
            assert_eq!(alarm.until(start + ms(60_000), quick).await, Some(7));
            assert_eq!(Instant::now(), start + ms(10));
            // A later wait with a longer limit still times out at its own limit.
            let later = Instant::now();
            assert_eq!(alarm.until(later + ms(90_000), pending::<()>()).await, None);
            assert_eq!(Instant::now(), later + ms(90_000));
        });
    }

    #[test]
    fn a_deadline_counts_from_the_first_wait() {
        paused(async {
            let mut deadline = Deadline::new(ms(100));
            tokio::time::sleep(ms(1_000)).await;
            // Done at once: the clock is not read, the limit not set.
            assert_eq!(until(&mut deadline, async { 1 }).await, Some(1));
            assert!(deadline.at.is_none());
            let start = Instant::now();
            let slow = async {
                tokio::time::sleep(ms(60)).await;
                2
            };
            assert_eq!(until(&mut deadline, slow).await, Some(2));
            // The second wait shares the first one's limit.
            assert_eq!(until(&mut deadline, pending::<()>()).await, None);
            assert_eq!(Instant::now(), start + ms(100));
        });
    }

    #[test]
    fn within_times_out_only_what_does_not_finish() {
        paused(async {
            let done = within(ms(5), async { Ok::<_, io::Error>(3) }).await;
            assert_eq!(done.ok(), Some(3));
            let stuck = within(ms(5), pending::<io::Result<()>>()).await;
            assert_eq!(stuck.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        });
    }
}

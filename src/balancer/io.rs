//! Small I/O helpers shared by the client and backend sides: timeouts that
//! cost nothing when the I/O is done at once, and the `ClientIo` trait that
//! lets a plain TCP client wait for bytes while holding no buffer. No
//! protocol logic.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

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

/// Runs `f` until `deadline`; `None` if it ran out first.
pub async fn until<F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    if let Poll::Ready(done) = poll_once(f.as_mut()).await {
        return Some(done);
    }
    tokio::time::timeout_at(deadline, f).await.ok()
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
        // rustls may hold decrypted bytes already: read at once.
        std::future::ready(Ok(()))
    }
}

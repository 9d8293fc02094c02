//! Small I/O helpers shared by the client and backend sides: a timeout that
//! turns into an `io::Error`, and the `ClientIo` trait that lets a plain TCP
//! client wait for bytes while holding no buffer. No protocol logic.

use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Runs `f` for at most `d`; running out is `ErrorKind::TimedOut`.
pub async fn within<T>(d: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// A client stream: plain TCP or TLS over TCP.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits until there may be something to read, without a buffer.
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl ClientIo for TcpStream {
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.readable()
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send {
        // rustls may hold decrypted bytes already: read at once.
        std::future::ready(Ok(()))
    }
}

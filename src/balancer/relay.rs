//! Relaying a backend's response to the client (more `impl Conn`): the
//! rewritten head and the first body bytes in one write, then the body by
//! its framing: a length copied as is, chunks re-framed by us (decoded for
//! an HTTP/1.0 client, who then sees the connection close), a body that
//! ends at close turned into chunks for an HTTP/1.1 client. `101 Switching
//! Protocols` turns the connection into a tunnel (WebSockets) that streams
//! both ways until either side closes. A backend connection goes back to
//! the pool only after a complete, well-framed response with nothing extra.
//!
//! A backend found dead while its response streams (`silence`: its
//! runner's heartbeats stopped and it does not answer a probe) ends the
//! relay at once rather than at the response timeout: the client's
//! connection closes mid-body, so a body of announced length ends short
//! and a chunked one without its last chunk, as the client would see had
//! the runner's own connection closed. Bytes already read are still sent;
//! only the wait for more is given up. A tunnel to it closes too.

use super::backend::{Backend, InFlight};
use super::buf::Buf;
use super::chunked::{ChunkedDecoder, Emit};
use super::conn::{Conn, Next, Record};
use super::forward::{self, OutFraming};
use super::head::Version;
use super::io::{within, ClientIo};
use super::request::RequestHead;
use super::response::{BodyFraming, ResponseHead};
use super::state::State;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A backend connection with a response in it.
pub struct Upstream<'a> {
    pub backend: &'a Backend,
    /// Counts the request as in flight to `backend` until it is relayed.
    pub in_flight: InFlight<'a>,
    pub stream: TcpStream,
    pub buf: Buf,
    /// The backend's deaths (`Backend::deaths`) when the request chose it:
    /// one more ends the relay.
    pub deaths: u64,
}

/// How the body travels from backend to client.
enum Mode {
    Empty,
    Length(u64),
    Chunked(Emit),
    /// Until the backend closes; as chunks (HTTP/1.1) or raw (HTTP/1.0).
    UntilClose {
        chunks: bool,
    },
}

/// Something went wrong mid-body: both connections are dropped.
struct Broken;

impl<S: ClientIo> Conn<S> {
    pub async fn relay(
        &mut self,
        state: &State,
        req: &RequestHead,
        rec: &mut Record,
        mut up: Upstream<'_>,
        resp: ResponseHead,
    ) -> Next {
        if resp.status == 101 {
            if !req.upgrade {
                return self
                    .fail(state, rec, 502, "The backend switched protocols unasked.")
                    .await;
            }
            return self.tunnel(state, rec, up, &resp).await;
        }
        let http11 = req.version == Version::Http11;
        let mut close = !req.keep_alive || self.shared.draining();
        let (framing, mode) = match resp.framing {
            BodyFraming::Empty => (OutFraming::None, Mode::Empty),
            BodyFraming::Length(n) => (OutFraming::Length(n), Mode::Length(n)),
            BodyFraming::Chunked if http11 => (OutFraming::Chunked, Mode::Chunked(Emit::Chunks)),
            BodyFraming::UntilClose if http11 => {
                (OutFraming::Chunked, Mode::UntilClose { chunks: true })
            }
            BodyFraming::Chunked => (OutFraming::Close, Mode::Chunked(Emit::Data)),
            BodyFraming::UntilClose => (OutFraming::Close, Mode::UntilClose { chunks: false }),
        };
        close |= framing == OutFraming::Close;
        rec.status = resp.status;
        let head = forward::response_head(&resp, framing, close, req.version);
        let d = Duration::from_millis(state.timeouts.response_ms);
        let backend = up.backend;
        let dies = std::pin::pin!(backend.died_since(up.deaths));
        match self.body(&mut up, head, mode, d, rec, dies).await {
            Ok(()) if resp.reusable && up.buf.is_empty() => {
                up.backend
                    .put_idle(up.stream, state.health.backend_keepalive);
            }
            Ok(()) => {}
            Err(Broken) => return Next::Close,
        }
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    async fn send(&mut self, bytes: &[u8], d: Duration, rec: &mut Record) -> Result<(), Broken> {
        within(d, self.io.write_all(bytes))
            .await
            .map_err(|_| Broken)?;
        rec.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Copies the body; `head` goes out with the first bytes. Broken once
    /// `dies` resolves while it waits for the backend.
    async fn body<F: Future<Output = ()>>(
        &mut self,
        up: &mut Upstream<'_>,
        mut head: Vec<u8>,
        mode: Mode,
        d: Duration,
        rec: &mut Record,
        mut dies: Pin<&mut F>,
    ) -> Result<(), Broken> {
        match mode {
            Mode::Empty => {
                self.send(&head, d, rec).await?;
            }
            Mode::Length(mut left) => loop {
                let avail = up.buf.filled();
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(avail.len());
                if head.is_empty() {
                    self.send(&avail[..take], d, rec).await?;
                } else {
                    head.extend_from_slice(&avail[..take]);
                    self.send(&head, d, rec).await?;
                    head = Vec::new();
                }
                up.buf.consume(take);
                left -= take as u64;
                if left == 0 {
                    break;
                }
                fill(up, d, dies.as_mut()).await?;
            },
            Mode::Chunked(emit) => {
                let mut decoder = ChunkedDecoder::new(64 * 1024);
                loop {
                    let used = decoder
                        .feed(up.buf.filled(), &mut head, emit)
                        .map_err(|_| Broken)?;
                    up.buf.consume(used);
                    if !head.is_empty() {
                        self.send(&head, d, rec).await?;
                        head.clear();
                    }
                    if decoder.is_done() {
                        break;
                    }
                    fill(up, d, dies.as_mut()).await?;
                }
            }
            Mode::UntilClose { chunks } => loop {
                let avail = up.buf.filled();
                if !avail.is_empty() {
                    if chunks {
                        head.extend_from_slice(format!("{:x}\r\n", avail.len()).as_bytes());
                        head.extend_from_slice(avail);
                        head.extend_from_slice(b"\r\n");
                    } else {
                        head.extend_from_slice(avail);
                    }
                    let n = avail.len();
                    up.buf.consume(n);
                }
                if !head.is_empty() {
                    self.send(&head, d, rec).await?;
                    head.clear();
                }
                match read_more(up, d, dies.as_mut()).await? {
                    0 if chunks => {
                        self.send(b"0\r\n\r\n", d, rec).await?;
                        break;
                    }
                    0 => break,
                    _ => {}
                }
            },
        }
        Ok(())
    }

    /// `101`: relays the head, then bytes both ways until either side
    /// closes. Config reloads do not touch it; only the drain deadline does.
    /// From here on it is a tunnel, not a request in flight: draining the
    /// backend (a rolling restart) does not wait for it, and the app
    /// server's restart closes it with a close frame that passes through.
    async fn tunnel(
        &mut self,
        state: &State,
        rec: &mut Record,
        mut up: Upstream<'_>,
        resp: &ResponseHead,
    ) -> Next {
        rec.status = 101;
        let _tunnel = up.in_flight.into_tunnel();
        let d = Duration::from_millis(state.timeouts.response_ms);
        let mut head = forward::response_head(resp, OutFraming::None, false, Version::Http11);
        head.extend_from_slice(up.buf.filled());
        if self.send(&head, d, rec).await.is_err() {
            return Next::Close;
        }
        let early = self.buf.take_all();
        if !early.is_empty() && within(d, up.stream.write_all(&early)).await.is_err() {
            return Next::Close;
        }
        let backend = up.backend;
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut self.io, &mut up.stream) => {}
            () = backend.died_since(up.deaths) => {
                tracing::warn!(backend = %backend.addr, "its runner was found dead: the tunnel to it is closed");
            }
        }
        Next::Close
    }
}

/// Reads more of the response body; a close or error mid-body is broken.
async fn fill<F: Future<Output = ()>>(
    up: &mut Upstream<'_>,
    d: Duration,
    dies: Pin<&mut F>,
) -> Result<(), Broken> {
    match read_more(up, d, dies).await? {
        0 => Err(Broken),
        _ => Ok(()),
    }
}

/// Reads more of the response body: how many bytes (0 at its close);
/// broken on an error, past `d`, or once the backend is found dead.
async fn read_more<F: Future<Output = ()>>(
    up: &mut Upstream<'_>,
    d: Duration,
    dies: Pin<&mut F>,
) -> Result<usize, Broken> {
    // The read first: `dies` is polled (a lock) only when it must wait.
    tokio::select! {
        biased;
        read = within(d, up.buf.read_from(&mut up.stream)) => read.map_err(|_| Broken),
        () = dies => {
            tracing::warn!(backend = %up.backend.addr,
                "its runner was found dead mid-response: the response is cut short");
            Err(Broken)
        }
    }
}

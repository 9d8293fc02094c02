//! Relaying a backend's response to the client (more `impl Conn`): the
//! rewritten head and the first body bytes in one write, then the body by
//! its framing: a length copied as is, chunks re-framed by us (decoded for
//! an HTTP/1.0 client, who then sees the connection close), a body that
//! ends at close turned into chunks for an HTTP/1.1 client. `101 Switching
//! Protocols` turns the connection into a tunnel (WebSockets) that streams
//! both ways until either side closes. A backend connection goes back to
//! the pool only after a complete, well-framed response with nothing extra.

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
        match self.body(&mut up, head, mode, d, rec).await {
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

    /// Copies the body; `head` goes out with the first bytes.
    async fn body(
        &mut self,
        up: &mut Upstream<'_>,
        mut head: Vec<u8>,
        mode: Mode,
        d: Duration,
        rec: &mut Record,
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
                fill(up, d).await?;
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
                    fill(up, d).await?;
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
                match within(d, up.buf.read_from(&mut up.stream)).await {
                    Ok(0) if chunks => {
                        self.send(b"0\r\n\r\n", d, rec).await?;
                        break;
                    }
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Err(Broken),
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
        let _ = tokio::io::copy_bidirectional(&mut self.io, &mut up.stream).await;
        Next::Close
    }
}

/// Reads more of the response body; a close or error mid-body is broken.
async fn fill(up: &mut Upstream<'_>, d: Duration) -> Result<(), Broken> {
    match within(d, up.buf.read_from(&mut up.stream)).await {
        Ok(0) | Err(_) => Err(Broken),
        Ok(_) => Ok(()),
    }
}

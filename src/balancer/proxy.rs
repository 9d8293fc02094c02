//! The exchange with a backend for one routed request (more `impl Conn`):
//! refuse what the app's limits refuse, answer `100 Continue` ourselves,
//! buffer the start of the body (a small body is read whole before any
//! backend is chosen, so a bad chunk is refused with nothing forwarded and
//! the request can be replayed), pick a backend, reuse a pooled connection
//! or open one, send the rewritten head, and retry on another backend when
//! the request is safe to send again. Passive health lives here: a refused
//! connect takes the backend out, and so do `backend::STRIKES` requests in
//! a row it dropped unanswered. The response is relayed by
//! `relay`, also one a backend sends before it has read all of a streamed
//! body (an early 401 or 413).
//!
//! Nothing of a response reaches the client before its head and, for a body
//! of announced length, the body's start (all of a small one, up to
//! `limits.request_buffer`) are in hand: gunicorn writes the head and the
//! body in separate calls, so a runner that dies between them (or mid-head)
//! would otherwise leave a client with a committed, truncated answer. Held
//! back, such a request is retried like one that got no answer at all.
//! Chunked and close-delimited bodies may be event streams whose first bytes
//! come much later, so they are relayed as they come.

use super::backend::{Backend, InFlight};
use super::buf::Buf;
use super::chunked::{ChunkedDecoder, Emit};
use super::conn::{after_own_reply, Conn, Next, Record};
use super::forward::{self, OutFraming};
use super::head::Framing;
use super::io::{within, Alarm, ClientIo};
use super::pages;
use super::refusal::Refusal;
use super::relay::Upstream;
use super::request::RequestHead;
use super::response::{BodyFraming, ResponseHead};
use super::router::App;
use super::scanner::HeadScanner;
use super::state::State;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The part of a request body still to be read from the client.
pub enum Rest {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// Why reading a request body stopped.
pub enum BodyError {
    Refuse(Refusal),
    ClientGone,
    /// The backend stopped reading it (closed, reset, or stalled past the
    /// response timeout): it may have answered early (a 401, a 413).
    BackendStopped,
}

/// Why a backend gave no usable response head.
enum HeadError {
    /// Closed or reset before sending a byte: maybe safe to retry.
    Nothing,
    /// Closed or reset mid-head, or before the body start it announced:
    /// nothing reached the client, so as safe to retry as `Nothing`.
    Cut,
    Timeout,
    Invalid(&'static str),
    /// Its runner was found dead while we waited (`silence`): as safe to
    /// retry as `Nothing`.
    Dead,
}

/// What to do after an attempt failed before any response byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A pooled connection the backend had closed: try again, free (twice
    /// per backend).
    Stale,
    /// Try once more on another backend.
    Retry,
    GiveUp,
}

/// The backends one request tried and the retries it has left.
#[derive(Default)]
struct Attempts {
    tried: Vec<usize>,
    retried: bool,
    stale: u8,
}

impl Attempts {
    /// `safe`: the request can be sent again (nothing reached the backend,
    /// or it is idempotent and its body is all in hand).
    fn after_failure(&mut self, backend: usize, reused: bool, safe: bool) -> Verdict {
        if reused && safe && self.stale < 2 {
            self.stale += 1;
            return Verdict::Stale;
        }
        self.tried.push(backend);
        self.stale = 0;
        if safe && !self.retried {
            self.retried = true;
            return Verdict::Retry;
        }
        Verdict::GiveUp
    }
}

const NO_ANSWER: &str = "The backend closed the connection without answering.";

const FOUND_DEAD: &str =
    "given up: its runner was found dead (heartbeats stopped, no answer to a probe)";

/// Whether a request a backend received and did not answer may be sent to
/// another: only GET, HEAD and OPTIONS (idempotent: what nginx's
/// `proxy_next_upstream` and HAProxy's `retry-on` send again unless told
/// otherwise), and only when its whole body is in hand (`replayable`: none
/// of it was streamed past `limits.request_buffer`). A POST that reached a
/// backend is never sent twice: that backend may have acted on it. (A
/// request that never reached one, a failed connect, always may.)
fn may_resend(req: &RequestHead, replayable: bool) -> bool {
    replayable && req.idempotent()
}

/// While every backend of an app that is out is out because its agent
/// drains it (a rolling restart or deploy), a new request waits this long
/// at most for one to come back instead of getting a 503 at once: an app
/// with one runner keeps serving through a restart, only slower.
const DRAIN_WAIT: Duration = Duration::from_secs(15);
/// How often a waiting request looks again.
const DRAIN_POLL: Duration = Duration::from_millis(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl<S: ClientIo> Conn<S> {
    pub async fn proxy(
        &mut self,
        state: &State,
        app: &App,
        req: &RequestHead,
        rec: &mut Record,
        alarm: &mut Alarm<'_>,
    ) -> Next {
        if app.redirect_https && !self.origin.tls {
            let close = self.must_close(req);
            self.reply(
                state,
                rec,
                pages::redirect_https(req.authority(), req.path(), close),
                301,
            )
            .await;
            return after_own_reply(req, close);
        }
        if let Framing::Length(n) = req.framing {
            if n > app.max_body {
                return self
                    .fail(
                        state,
                        rec,
                        413,
                        "The request body is larger than this app accepts.",
                    )
                    .await;
            }
        }
        let (prefix, rest) = match self.read_body_start(state, app, req).await {
            Ok(found) => found,
            Err(BodyError::ClientGone | BodyError::BackendStopped) => return Next::Close,
            Err(BodyError::Refuse(r)) => {
                self.shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
                return self.fail(state, rec, r.status, r.reason).await;
            }
        };
        let framing = match req.framing {
            Framing::None => OutFraming::None,
            Framing::Length(n) => OutFraming::Length(n),
            Framing::Chunked => OutFraming::Chunked,
        };
        let mut wire = forward::request_head(req, &self.origin, framing);
        wire.extend_from_slice(&prefix);
        drop(prefix);
        let replayable = rest.is_none();
        let mut rest = rest;
        let mut attempts = Attempts::default();
        let t = &state.timeouts;
        let mut drain_wait = DRAIN_WAIT.min(ms(t.response_ms));
        loop {
            let Some(i) = app.pick(&attempts.tried) else {
                if attempts.tried.is_empty() && !drain_wait.is_zero() && app.drained() {
                    tokio::time::sleep(DRAIN_POLL).await;
                    drain_wait = drain_wait.saturating_sub(DRAIN_POLL);
                    continue;
                }
                let (status, why) = if attempts.tried.is_empty() {
                    (503, "Every backend of this app is out of rotation.")
                } else {
                    (502, "No backend of this app answered.")
                };
                return self.fail(state, rec, status, why).await;
            };
            let backend = &app.backends[i];
            rec.backend = Some(backend.addr);
            let in_flight = InFlight::new(backend);
            // This attempt is given up if its runner is found dead meanwhile
            // (`silence`), not left to its connect or response timeout.
            let deaths = backend.deaths();
            let mut dies = std::pin::pin!(backend.died_since(deaths));
            let (mut stream, reused) = match backend.take_idle(ms(t.backend_idle_ms)) {
                Some(s) => (s, true),
                None => match tokio::select! {
                    connected = self.connect(backend, state) => connected,
                    () = dies.as_mut() => Err(std::io::Error::other(FOUND_DEAD)),
                } {
                    Ok(s) => (s, false),
                    Err(e) => {
                        // Nothing reached it: always safe to try the next one.
                        tracing::warn!(backend = %backend.addr, "connect failed: {e}");
                        backend.mark_down(
                            ms(state.health.fail_timeout_ms),
                            &format!("connect failed: {e}"),
                        );
                        attempts.tried.push(i);
                        continue;
                    }
                },
            };
            let failure = match within(ms(t.response_ms), stream.write_all(&wire)).await {
                Err(e) => Some((
                    format!("sending the request failed: {e}"),
                    replayable,
                    NO_ANSWER,
                )),
                Ok(()) => None,
            };
            if failure.is_none() {
                if let Some(r) = rest.take() {
                    match self.stream_body(state, app, &mut stream, r).await {
                        Ok(()) => {}
                        Err(BodyError::ClientGone) => return Next::Close,
                        Err(BodyError::Refuse(r)) => {
                            self.shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
                            return self.fail(state, rec, r.status, r.reason).await;
                        }
                        Err(BodyError::BackendStopped) => {
                            let up = Upstream {
                                backend,
                                in_flight,
                                stream,
                                buf: Buf::default(),
                                deaths,
                            };
                            return self.early_answer(state, req, rec, up, alarm).await;
                        }
                    }
                }
            }
            let mut bbuf = Buf::default();
            let failure = match failure {
                Some(f) => f,
                None => match tokio::select! {
                    head = read_response(&mut stream, &mut bbuf, state, req, alarm) => head,
                    () = dies.as_mut() => Err(HeadError::Dead),
                } {
                    Ok(resp) => {
                        backend.answered();
                        let up = Upstream {
                            backend,
                            in_flight,
                            stream,
                            buf: bbuf,
                            deaths,
                        };
                        return self.relay(state, req, rec, up, resp).await;
                    }
                    Err(HeadError::Timeout) => {
                        return self
                            .fail(state, rec, 504, "The backend did not answer in time.")
                            .await;
                    }
                    Err(HeadError::Invalid(why)) => {
                        tracing::warn!(backend = %backend.addr, "invalid response: {why}");
                        return self.fail(state, rec, 502, why).await;
                    }
                    Err(HeadError::Nothing) => (
                        "closed without answering".to_owned(),
                        may_resend(req, replayable),
                        NO_ANSWER,
                    ),
                    Err(HeadError::Cut) => (
                        "closed mid-answer".to_owned(),
                        may_resend(req, replayable),
                        "The backend closed the connection mid-answer.",
                    ),
                    Err(HeadError::Dead) => (
                        FOUND_DEAD.to_owned(),
                        may_resend(req, replayable),
                        "The backend was found dead before it answered.",
                    ),
                },
            };
            let (why, safe, page) = failure;
            // A dead runner is not tried again, pooled connection or not,
            // and its death counts no strike (it is out already).
            let dead = backend.deaths() != deaths;
            let verdict = attempts.after_failure(i, reused && !dead, safe);
            if dead {
                tracing::warn!(backend = %backend.addr, "{why}");
            } else if verdict != Verdict::Stale && !reused {
                tracing::warn!(backend = %backend.addr, "{why}");
                backend.strike(ms(state.health.fail_timeout_ms));
            }
            match verdict {
                // One pooled connection was dead: the others (older) are
                // too, likely; the next attempt connects afresh.
                Verdict::Stale => backend.clear_idle(),
                Verdict::Retry => {
                    self.shared.metrics.retries.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::GiveUp => return self.fail(state, rec, 502, page).await,
            }
        }
    }

    async fn connect(&self, backend: &Backend, state: &State) -> std::io::Result<TcpStream> {
        self.shared
            .metrics
            .backend_connects
            .fetch_add(1, Ordering::Relaxed);
        let stream = within(
            ms(state.timeouts.connect_ms),
            TcpStream::connect(backend.addr),
        )
        .await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// An error page, after which the connection closes (the request's
    /// body, if any, may be unread).
    pub async fn fail(&mut self, state: &State, rec: &mut Record, status: u16, why: &str) -> Next {
        self.reply(state, rec, pages::page(status, why, true), status)
            .await;
        Next::CloseUnread
    }

    /// Reads the body up to `limits.request_buffer` bytes (all of it when it
    /// fits), re-framed for the backend; the rest is streamed later.
    async fn read_body_start(
        &mut self,
        state: &State,
        app: &App,
        req: &RequestHead,
    ) -> Result<(Vec<u8>, Option<Rest>), BodyError> {
        if req.framing == Framing::None {
            return Ok((Vec::new(), None));
        }
        if req.expect_continue {
            let sent = within(
                ms(state.timeouts.body_ms),
                self.io.write_all(pages::CONTINUE),
            )
            .await;
            sent.map_err(|_| BodyError::ClientGone)?;
        }
        let cap = state.limits.request_buffer;
        match req.framing {
            Framing::None => Ok((Vec::new(), None)),
            Framing::Length(n) => {
                let want = usize::try_from(n).unwrap_or(usize::MAX).min(cap);
                while self.buf.filled().len() < want {
                    self.read_body_more(state).await?;
                }
                let prefix = self.buf.filled()[..want].to_vec();
                self.buf.consume(want);
                let left = n - want as u64;
                Ok((prefix, (left > 0).then_some(Rest::Length(left))))
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(state.limits.max_header_bytes);
                let mut out = Vec::new();
                loop {
                    self.decode_buffered(&mut decoder, &mut out, app)?;
                    if decoder.is_done() {
                        return Ok((out, None));
                    }
                    if out.len() >= cap {
                        return Ok((out, Some(Rest::Chunked(decoder))));
                    }
                    self.read_body_more(state).await?;
                }
            }
        }
    }

    /// Decodes the chunked body bytes held in the buffer into `out`,
    /// refusing a body over the app's limit.
    fn decode_buffered(
        &mut self,
        decoder: &mut ChunkedDecoder,
        out: &mut Vec<u8>,
        app: &App,
    ) -> Result<(), BodyError> {
        let used = decoder
            .feed(self.buf.filled(), out, Emit::Chunks)
            .map_err(BodyError::Refuse)?;
        self.buf.consume(used);
        if decoder.data_len > app.max_body {
            return Err(BodyError::Refuse(Refusal::new(
                413,
                "The request body is larger than this app accepts.",
            )));
        }
        Ok(())
    }

    async fn read_body_more(&mut self, state: &State) -> Result<(), BodyError> {
        match within(ms(state.timeouts.body_ms), self.buf.read_from(&mut self.io)).await {
            Ok(0) | Err(_) => Err(BodyError::ClientGone),
            Ok(_) => Ok(()),
        }
    }

    /// Streams the rest of a large body to the backend as it arrives.
    async fn stream_body(
        &mut self,
        state: &State,
        app: &App,
        stream: &mut TcpStream,
        rest: Rest,
    ) -> Result<(), BodyError> {
        let send = ms(state.timeouts.response_ms);
        match rest {
            Rest::Length(mut left) => loop {
                if self.buf.is_empty() {
                    self.read_body_more(state).await?;
                }
                let avail = self.buf.filled();
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(avail.len());
                send_body(stream, &avail[..take], send).await?;
                self.buf.consume(take);
                left -= take as u64;
                if left == 0 {
                    return Ok(());
                }
            },
            Rest::Chunked(mut decoder) => {
                let mut out = Vec::new();
                loop {
                    self.decode_buffered(&mut decoder, &mut out, app)?;
                    if !out.is_empty() {
                        send_body(stream, &out, send).await?;
                        out.clear();
                    }
                    if decoder.is_done() {
                        return Ok(());
                    }
                    self.read_body_more(state).await?;
                }
            }
        }
    }
}

impl<S: ClientIo> Conn<S> {
    /// The backend stopped reading a streamed request body. A backend that
    /// answered before it had all of it (a 401 or 413 from the app, then a
    /// close) gets that answer relayed, as nginx and HAProxy do, instead of
    /// a 502; the client connection closes after it (the rest of its body
    /// is unread) and the backend connection is not pooled. No answer is a
    /// 502, never a retry: part of the body went to this backend.
    async fn early_answer(
        &mut self,
        state: &State,
        req: &RequestHead,
        rec: &mut Record,
        mut up: Upstream<'_>,
        alarm: &mut Alarm<'_>,
    ) -> Next {
        match read_response(&mut up.stream, &mut up.buf, state, req, alarm).await {
            Ok(mut resp) if resp.status != 101 => {
                tracing::debug!(backend = %up.backend.addr, status = resp.status,
                    "answered before reading the whole request body");
                resp.reusable = false;
                let mut closing = req.clone();
                closing.keep_alive = false;
                self.relay(state, &closing, rec, up, resp).await;
                Next::CloseUnread
            }
            _ => {
                tracing::warn!(backend = %up.backend.addr, "stopped reading the request body");
                self.fail(state, rec, 502, "The backend stopped reading the request.")
                    .await
            }
        }
    }
}

/// Reads the backend's response head and, for a body of announced length,
/// its start (see the module doc): up to `limits.request_buffer` bytes, all
/// of a small body. Both within `timeouts.response_ms`.
async fn read_response(
    stream: &mut TcpStream,
    bbuf: &mut Buf,
    state: &State,
    req: &RequestHead,
    alarm: &mut Alarm<'_>,
) -> Result<ResponseHead, HeadError> {
    let deadline = tokio::time::Instant::now() + ms(state.timeouts.response_ms);
    let resp = read_response_head(stream, bbuf, state, req, deadline, alarm).await?;
    if let BodyFraming::Length(n) = resp.framing {
        let want = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(state.limits.request_buffer);
        while bbuf.filled().len() < want {
            read_more(stream, bbuf, deadline, alarm, HeadError::Cut).await?;
        }
    }
    Ok(resp)
}

/// Reads the backend's response head, skipping interim 1xx responses
/// (but not `101 Switching Protocols`).
async fn read_response_head(
    stream: &mut TcpStream,
    bbuf: &mut Buf,
    state: &State,
    req: &RequestHead,
    deadline: tokio::time::Instant,
    alarm: &mut Alarm<'_>,
) -> Result<ResponseHead, HeadError> {
    let mut scanner = HeadScanner::default();
    let mut closed = HeadError::Nothing;
    loop {
        match scanner.scan(bbuf.filled(), &state.head_limits) {
            Err(r) => return Err(HeadError::Invalid(r.reason)),
            Ok(Some(span)) => {
                let resp = ResponseHead::parse(
                    &bbuf.filled()[span.start..span.end],
                    &state.head_limits,
                    req.method(),
                )
                .map_err(|r| HeadError::Invalid(r.reason))?;
                bbuf.consume(span.end);
                if resp.status >= 200 || resp.status == 101 {
                    return Ok(resp);
                }
                continue;
            }
            Ok(None) => {}
        }
        read_more(stream, bbuf, deadline, alarm, closed).await?;
        closed = HeadError::Cut;
    }
}

/// One read from the backend before `deadline`; a close or a reset is
/// `closed`.
async fn read_more(
    stream: &mut TcpStream,
    bbuf: &mut Buf,
    deadline: tokio::time::Instant,
    alarm: &mut Alarm<'_>,
    closed: HeadError,
) -> Result<(), HeadError> {
    match alarm.until(deadline, bbuf.read_from(stream)).await {
        None => Err(HeadError::Timeout),
        Some(Ok(0) | Err(_)) => Err(closed),
        Some(Ok(_)) => Ok(()),
    }
}

/// Writes request body bytes to the backend.
async fn send_body(stream: &mut TcpStream, bytes: &[u8], d: Duration) -> Result<(), BodyError> {
    within(d, stream.write_all(bytes))
        .await
        .map_err(|_| BodyError::BackendStopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_requests_whose_body_is_in_hand_are_sent_again() {
        use crate::balancer::scanner::TEST_LIMITS;
        let head = |method: &str| {
            let raw = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
            RequestHead::parse(raw.as_bytes(), &TEST_LIMITS).expect("valid")
        };
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert!(may_resend(&head(method), true), "{method}");
            assert!(!may_resend(&head(method), false), "{method}, body streamed");
        }
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            assert!(!may_resend(&head(method), true), "{method}");
        }
    }

    /// A request is sent again once at most, and a pooled connection found
    /// closed is tried afresh (twice) before that counts.
    #[test]
    fn a_request_is_retried_once_and_never_when_unsafe() {
        let mut post = Attempts::default();
        assert_eq!(post.after_failure(0, false, false), Verdict::GiveUp);
        let mut get = Attempts::default();
        assert_eq!(get.after_failure(0, true, true), Verdict::Stale);
        assert_eq!(get.after_failure(0, true, true), Verdict::Stale);
        assert_eq!(get.after_failure(0, true, true), Verdict::Retry);
        assert_eq!(get.after_failure(1, false, true), Verdict::GiveUp);
        assert_eq!(get.tried, [0, 1]);
    }
}

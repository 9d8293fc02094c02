//! `sitec run`'s sessions on the agent: the control op `run` opens one,
//! and the operator's messages naming it (`input`, `eof`, `resize`,
//! `signal`, `alive`) steer it. The agent connects to the app's run socket
//! (`run_socket` in its config; only the agent may connect to it), and
//! systemd starts a `sitec session` (`agent::session`) as the app's user
//! on the other end: the agent never runs the command itself and never
//! becomes the app's user. It relays the session's frames as answers to
//! the `run` request (`"more": true`, the bytes in base64), and the
//! operator's messages as frames; the last answer carries the exit status.
//!
//! Bounds, for a peer on either side: at most `SESSIONS` sessions at once;
//! a frame from the session over `session::FRAME_MAX` ends it; the command
//! line is at most `ARGV_MAX` bytes; input waits in a queue of `QUEUE`
//! messages (the operator's sitec sends at most a few before their acks
//! come back); a session the operator's sitec has not spoken to for
//! `SILENCE` (it says `alive` every few seconds) is hung up, and so is one
//! whose output the operator does not read for that long.

use super::session::{self, Kind, Start};
use super::Ctx;
use crate::bus::control::Responder;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Sessions open at once on one agent.
pub const SESSIONS: usize = 8;
/// The longest the operator's sitec may stay silent, or leave output unread.
pub const SILENCE: Duration = Duration::from_secs(30);
/// The command line's bytes, all words together.
const ARGV_MAX: usize = 32 * 1024;
/// Messages for one session waiting to be written to it.
const QUEUE: usize = 16;
/// How long the session's socket may take to accept.
const CONNECT: Duration = Duration::from_secs(10);

/// The ops that steer an open session.
pub const SESSION_OPS: [&str; 5] = ["input", "eof", "resize", "signal", "alive"];

/// The open sessions, by id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Open>>,
}

/// Sends the answer to one message (the caller's `Responder`).
pub type Ack = Box<dyn FnOnce(Value) + Send>;

/// A frame for the session, and the answer to send once it is written
/// (input is acknowledged only then: the operator's window of unanswered
/// input is what holds the queue to its bound).
type Fed = (Kind, Vec<u8>, Option<(Ack, Value)>);
/// A frame's kind and payload.
type Frame = (Kind, Vec<u8>);

struct Open {
    feed: mpsc::Sender<Fed>,
    heard: Arc<Mutex<Instant>>,
}

/// Removes a session from `Sessions` when its task ends, however it ends.
struct Registered<'a> {
    sessions: &'a Sessions,
    id: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sessions.open.lock() {
            open.remove(&self.id);
        }
    }
}

fn base64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Answers a message for an open session (`SESSION_OPS`) through `ack`:
/// at once, or for input once it is written to the session.
pub fn message(ctx: &Ctx, op: &str, request: &Value, ack: Ack) {
    let id = request.get("session").and_then(Value::as_str).unwrap_or("");
    let ok = json!({ "ok": true, "op": op, "session": id });
    let (feed, frame) = match steer(ctx, op, id, request) {
        Ok(steer) => steer,
        Err(e) => return ack(error(&e)),
    };
    let Some((kind, payload)) = frame else {
        return ack(ok);
    };
    if kind == Kind::Input {
        if let Err(mpsc::error::TrySendError::Full((_, _, Some((ack, _))))) =
            feed.try_send((kind, payload, Some((ack, ok))))
        {
            ack(error(
                "the session's input queue is full; send again after the acks",
            ));
        }
        return;
    }
    ack(match feed.try_send((kind, payload, None)) {
        Ok(()) => ok,
        Err(_) => error("the session's input queue is full; send again after the acks"),
    })
}

/// The open session `id`'s queue, and the frame `op` makes of `request`
/// (none for `alive`, which only says the operator is there).
fn steer(
    ctx: &Ctx,
    op: &str,
    id: &str,
    request: &Value,
) -> Result<(mpsc::Sender<Fed>, Option<Frame>), String> {
    let (feed, heard) = {
        let open =
            (ctx.sessions.open.lock()).map_err(|_| "the agent's session table is unusable")?;
        match open.get(id) {
            Some(s) => (s.feed.clone(), s.heard.clone()),
            None => return Err(format!("no session `{id}` is open on {}", ctx.config.host)),
        }
    };
    if let Ok(mut heard) = heard.lock() {
        *heard = Instant::now();
    }
    let frame = match op {
        "alive" => None,
        "eof" => Some((Kind::Eof, Vec::new())),
        "input" => {
            let data = request.get("data").and_then(Value::as_str).unwrap_or("");
            match base64().decode(data) {
                Ok(bytes) if bytes.len() <= session::FRAME_MAX => Some((Kind::Input, bytes)),
                Ok(_) => return Err("input: at most 64 KiB a message".into()),
                Err(e) => return Err(format!("input: `data` is not base64: {e}")),
            }
        }
        "resize" => {
            let size = |k| {
                request
                    .get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
            };
            match (size("rows"), size("cols")) {
                (Some(r), Some(c)) => {
                    let mut b = r.to_be_bytes().to_vec();
                    b.extend(c.to_be_bytes());
                    Some((Kind::Resize, b))
                }
                _ => return Err("resize: `rows` and `cols` are numbers up to 65535".into()),
            }
        }
        _ => {
            let number = request.get("signal").and_then(Value::as_u64).unwrap_or(0);
            match u8::try_from(number)
                .ok()
                .filter(|n| session::allowed_signal(*n).is_some())
            {
                Some(n) => Some((Kind::Signal, vec![n])),
                None => {
                    return Err("signal: INT (2), QUIT (3), TERM (15), HUP (1) or KILL (9)".into())
                }
            }
        }
    };
    Ok((feed, frame))
}

fn error(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

/// What a `run` request asks for, checked.
fn start_of(ctx: &Ctx, request: &Value) -> Result<(std::path::PathBuf, Start), String> {
    let name = request.get("app").and_then(Value::as_str).unwrap_or("");
    let app = (ctx.config.apps.iter())
        .find(|a| a.name == name)
        .ok_or_else(|| format!("no app `{name}` runs on {}", ctx.config.host))?;
    let socket = app.run_socket.clone().ok_or_else(|| {
        format!(
            "{}'s agent config names no run socket for {name}: apply the spec with this sitec first",
            ctx.config.host
        )
    })?;
    let argv: Vec<String> = (request.get("argv").and_then(Value::as_array))
        .map(|words| {
            words
                .iter()
                .map(|w| w.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or(None)
        .filter(|a| !a.is_empty())
        .ok_or("run: `argv` is a list of one or more strings: the command and its arguments")?;
    if argv.iter().map(String::len).sum::<usize>() > ARGV_MAX {
        return Err(format!("run: the command line is over {ARGV_MAX} bytes"));
    }
    let size = |k| {
        (request.get(k).and_then(Value::as_u64))
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(0)
    };
    let term = (request.get("term").and_then(Value::as_str))
        .filter(|t| {
            t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        })
        .map(str::to_string);
    Ok((
        socket,
        Start {
            argv,
            tty: request.get("tty").and_then(Value::as_bool).unwrap_or(false),
            rows: size("rows"),
            cols: size("cols"),
            term,
        },
    ))
}

/// Serves one `run` request to its end: every answer goes out through
/// `responder`, the last one without `more`.
pub async fn serve(ctx: Arc<Ctx>, request: Value, responder: Responder) {
    if let Err(e) = session_of(&ctx, &request, &responder).await {
        responder.error(&e);
    }
}

async fn session_of(ctx: &Ctx, request: &Value, responder: &Responder) -> Result<(), String> {
    let (path, start) = start_of(ctx, request)?;
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for a session id: {e}"))?;
    let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let (feed, mut fed) = mpsc::channel(QUEUE);
    let heard = Arc::new(Mutex::new(Instant::now()));
    {
        let mut open = (ctx.sessions.open.lock()).map_err(|_| "the session table is unusable")?;
        if open.len() >= SESSIONS {
            return Err(format!(
                "{} runs {SESSIONS} sessions already; wait for one to end",
                ctx.config.host
            ));
        }
        let heard = heard.clone();
        open.insert(id.clone(), Open { feed, heard });
    }
    let _registered = Registered {
        sessions: &ctx.sessions,
        id: id.clone(),
    };
    let stream = tokio::time::timeout(CONNECT, tokio::net::UnixStream::connect(&path))
        .await
        .map_err(|_| format!("{} did not accept within {CONNECT:?}", path.display()))?
        .map_err(|e| {
            format!(
                "cannot reach {} ({e}): the app's run socket comes with its runner's apply",
                path.display()
            )
        })?;
    let (mut from_session, mut to_session) = stream.into_split();
    let start = serde_json::to_vec(&start).map_err(|e| e.to_string())?;
    to_session
        .write_all(&frame(Kind::Start, &start))
        .await
        .map_err(|e| format!("the session went before it started: {e}"))?;
    deliver(
        responder,
        json!({ "ok": true, "more": true, "op": "run", "host": ctx.config.host, "session": id }),
    )
    .await?;
    // The operator's messages, written to the session in order.
    let writer = tokio::spawn(async move {
        while let Some((kind, payload, ack)) = fed.recv().await {
            if to_session.write_all(&frame(kind, &payload)).await.is_err() {
                break;
            }
            if let Some((ack, answer)) = ack {
                ack(answer);
            }
        }
    });
    let result = relay(&mut from_session, responder, &heard).await;
    writer.abort();
    result
}

fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    // Writing into a Vec fails only on a payload over the bound, which
    // `message` and `start_of` have refused already.
    let _ = session::write_frame(&mut out, kind, payload);
    out
}

/// The session's frames as answers, until its exit.
async fn relay(
    from: &mut tokio::net::unix::OwnedReadHalf,
    responder: &Responder,
    heard: &Mutex<Instant>,
) -> Result<(), String> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = tokio::select! {
            f = read_frame(from) => f,
            _ = tick.tick() => {
                let silent = heard.lock().map(|h| h.elapsed()).unwrap_or(SILENCE);
                if silent >= SILENCE {
                    return Err(format!("no word from the operator's sitec for {SILENCE:?}: the session was hung up"));
                }
                continue;
            }
        };
        match next? {
            None => {
                return Err(
                    "the session ended without an exit status (its journal says why: journalctl -u 'sitec-app-*-run@*')"
                        .into(),
                )
            }
            Some((Kind::Stdout, bytes)) => {
                deliver(responder, json!({ "ok": true, "more": true, "stdout": base64().encode(bytes) })).await?
            }
            Some((Kind::Stderr, bytes)) => {
                deliver(responder, json!({ "ok": true, "more": true, "stderr": base64().encode(bytes) })).await?
            }
            Some((Kind::Exit, bytes)) => {
                let exit: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if let Some(e) = exit.get("error").and_then(Value::as_str) {
                    return Err(e.chars().take(1000).collect());
                }
                let answer = json!({
                    "ok": true,
                    "op": "run",
                    "code": exit.get("code").and_then(Value::as_i64),
                    "signal": exit.get("signal").and_then(Value::as_i64),
                });
                return deliver(responder, answer).await;
            }
            Some((kind, _)) => return Err(format!("the session sent a {kind:?} frame")),
        }
    }
}

/// Reads one frame, never more than its bound.
async fn read_frame(
    from: &mut tokio::net::unix::OwnedReadHalf,
) -> Result<Option<(Kind, Vec<u8>)>, String> {
    let mut head = [0u8; 5];
    match from.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("the session: {e}")),
    }
    let (kind, len) = session::header(head).map_err(|e| format!("the session: {e}"))?;
    let mut payload = vec![0u8; len];
    from.read_exact(&mut payload)
        .await
        .map_err(|e| format!("the session: {e}"))?;
    Ok(Some((kind, payload)))
}

/// Sends an answer, waiting while the bus's queue is full (the session
/// waits with it: its output is not read meanwhile) for up to `SILENCE`.
async fn deliver(responder: &Responder, answer: Value) -> Result<(), String> {
    let deadline = Instant::now() + SILENCE;
    while !responder.send(answer.clone()) {
        if Instant::now() >= deadline {
            return Err(format!(
                "the operator's sitec read no output for {SILENCE:?}: the session was hung up"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_anything_is_opened() {
        let (ctx, _dir) = Ctx::for_tests();
        for (request, says) in [
            (
                json!({"op": "run", "app": "shop", "argv": ["ls"]}),
                "no app `shop`",
            ),
            (
                json!({"op": "run", "app": "blog", "argv": []}),
                "`argv` is a list",
            ),
            (
                json!({"op": "run", "app": "blog", "argv": [1]}),
                "`argv` is a list",
            ),
            (
                json!({"op": "run", "app": "blog", "argv": ["x".repeat(ARGV_MAX + 1)]}),
                "over 32768 bytes",
            ),
        ] {
            let e = start_of(&ctx, &request).expect_err("refused");
            assert!(e.contains(says), "{e}");
        }
        let (path, start) = start_of(
            &ctx,
            &json!({"op": "run", "app": "blog", "argv": ["ls", "-l"], "tty": true, "rows": 30, "cols": 100, "term": "xterm; rm -rf /"}),
        )
        .expect("accepted");
        assert_eq!(path, std::path::Path::new("/run/sitec-run/blog.sock"));
        assert_eq!((start.tty, start.rows, start.cols), (true, 30, 100));
        assert_eq!(
            start.term, None,
            "a TERM that is not a terminal's name is dropped"
        );
    }

    /// `message`'s answer, when it is given at once.
    fn answer(ctx: &Ctx, op: &str, body: Value) -> Option<Value> {
        let answer = Arc::new(Mutex::new(None));
        let slot = answer.clone();
        message(
            ctx,
            op,
            &body,
            Box::new(move |v| {
                *slot.lock().expect("slot") = Some(v);
            }),
        );
        let given = answer.lock().expect("answer").take();
        given
    }

    #[test]
    fn messages_for_a_session_that_is_not_open_are_refused() {
        let (ctx, _dir) = Ctx::for_tests();
        let a = answer(&ctx, "input", json!({"session": "nope", "data": ""})).expect("at once");
        assert!(
            a["error"]
                .as_str()
                .is_some_and(|e| e.contains("no session `nope`")),
            "{a}"
        );
    }

    #[test]
    fn messages_become_frames_within_bounds_and_input_is_acked_once_written() {
        let (ctx, _dir) = Ctx::for_tests();
        let (feed, mut fed) = mpsc::channel(QUEUE);
        let heard = Arc::new(Mutex::new(Instant::now() - Duration::from_secs(20)));
        ctx.sessions.open.lock().expect("lock").insert(
            "s1".into(),
            Open {
                feed,
                heard: heard.clone(),
            },
        );
        let data = base64().encode(b"ls\n");
        assert_eq!(
            answer(&ctx, "input", json!({"session": "s1", "data": data})),
            None,
            "input is answered once written, not when queued"
        );
        let (kind, payload, ack) = fed.try_recv().expect("frame");
        assert_eq!((kind, payload), (Kind::Input, b"ls\n".to_vec()));
        assert_eq!(ack.expect("an ack to send").1["ok"], true);
        assert!(heard.lock().expect("heard").elapsed() < Duration::from_secs(5));
        let resized = answer(
            &ctx,
            "resize",
            json!({"session": "s1", "rows": 2, "cols": 300}),
        );
        assert_eq!(resized.expect("at once")["ok"], true);
        let (kind, payload, _) = fed.try_recv().expect("frame");
        assert_eq!((kind, payload), (Kind::Resize, vec![0, 2, 1, 44]));
        let refused =
            answer(&ctx, "signal", json!({"session": "s1", "signal": 19})).expect("at once");
        assert!(
            refused["error"]
                .as_str()
                .is_some_and(|e| e.contains("INT (2)")),
            "{refused}"
        );
        let big = base64().encode(vec![0u8; session::FRAME_MAX + 1]);
        let refused =
            answer(&ctx, "input", json!({"session": "s1", "data": big})).expect("at once");
        assert_eq!(refused["ok"], false);
        for _ in 0..QUEUE {
            answer(&ctx, "eof", json!({"session": "s1"}));
        }
        let full = answer(&ctx, "eof", json!({"session": "s1"})).expect("at once");
        assert!(
            full["error"]
                .as_str()
                .is_some_and(|e| e.contains("queue is full")),
            "{full}"
        );
        let data = base64().encode(b"more");
        let full = answer(&ctx, "input", json!({"session": "s1", "data": data})).expect("at once");
        assert!(
            full["error"]
                .as_str()
                .is_some_and(|e| e.contains("queue is full")),
            "{full}"
        );
    }
}

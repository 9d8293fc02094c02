//! `sitec run`'s operator end: asks one runner's agent to run a command in
//! the app's release as the app's user (`agent::run`), relays this
//! terminal (or these pipes) both ways, and returns the command's exit
//! status. On a terminal it puts the terminal in raw mode (restored
//! however the run ends), so Ctrl-C, Ctrl-Z and every key travel to the
//! remote terminal, whose line discipline makes them signals there, and
//! passes on the window's size when it changes. Without one, stdout and
//! stderr stay apart, the end of stdin reaches the command as its end, and
//! Ctrl-C here is passed on as SIGINT to the remote command.
//!
//! Input goes out in messages of at most `INPUT_CHUNK` bytes, at most
//! `WINDOW` of them unacknowledged, so the agent's queues never overflow;
//! `alive` every `ALIVE` tells the agent the operator is still there.

use super::{Agents, Fleet};
use base64::Engine;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes of input per message.
const INPUT_CHUNK: usize = 16 * 1024;
/// Input messages in flight before their acks.
const WINDOW: usize = 4;
/// How often the agent hears that this end is still here.
const ALIVE: Duration = Duration::from_secs(5);
/// How long the agent may take to answer anything.
const ANSWER: Duration = Duration::from_secs(20);
/// How often a terminal's size is looked at.
const SIZE_POLL: Duration = Duration::from_millis(250);

/// What to run, and where.
pub struct Invocation<'a> {
    pub app: &'a str,
    /// A runner of the app; the leader (where migrations run) when `None`.
    pub host: Option<&'a str>,
    pub argv: &'a [String],
    /// Run on a pseudo-terminal (this process's stdin and stdout are one).
    pub tty: bool,
}

/// The runner an invocation goes to.
pub fn runner(fleet: &Fleet, app: &str, host: Option<&str>) -> Result<String, String> {
    let a = fleet.app(app)?;
    match host {
        None => a
            .runners
            .first()
            .cloned()
            .ok_or_else(|| format!("app `{app}` runs on no host")),
        Some(h) if a.runners.iter().any(|r| r == h) => Ok(h.to_string()),
        Some(h) => Err(format!(
            "app `{app}` does not run on `{h}`; its runners: {}",
            a.runners.join(", ")
        )),
    }
}

/// Ctrl-C pressed here while a command runs without a terminal.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs the invocation to its end: the command's exit status as a shell
/// gives it (128 + the signal that ended it).
pub fn run(fleet: &Fleet, agents: &Agents, what: &Invocation) -> Result<u8, String> {
    let host = runner(fleet, what.app, what.host)?;
    let mut client = agents.client(&host)?;
    let size = if what.tty { window_size() } else { None };
    let request = json!({
        "op": "run",
        "app": what.app,
        "argv": what.argv,
        "tty": what.tty,
        "rows": size.map_or(0, |s| s.0),
        "cols": size.map_or(0, |s| s.1),
        "term": std::env::var("TERM").ok(),
    });
    let run_id = client.send(&request)?;
    // The first answer opens the session (or says why not).
    let session = loop {
        let answer = client
            .recv(ANSWER)?
            .ok_or_else(|| format!("no answer from {host}'s agent within {ANSWER:?}"))?;
        if answer.get("id") != Some(&json!(run_id)) {
            continue;
        }
        let answer = super::checked(&host, answer)?;
        match answer.get("session").and_then(Value::as_str) {
            Some(s) => break s.to_string(),
            None => {
                return Err(format!(
                    "{host}'s agent answered without a session: {answer}"
                ))
            }
        }
    };
    let _raw = if what.tty { Raw::enter() } else { None };
    if !what.tty {
        super::catch_interrupts(&INTERRUPTED);
    }
    let input = read_stdin();
    let mut relay = Relay {
        client: &mut client,
        host: &host,
        session,
        in_flight: Vec::new(),
        input_done: false,
        tty: what.tty,
        hung_up: false,
    };
    relay.until_exit(run_id, input, size)
}

struct Relay<'a> {
    client: &'a mut crate::bus::control::Client,
    host: &'a str,
    session: String,
    /// The ids of input messages not yet acknowledged (written to the session).
    in_flight: Vec<u64>,
    input_done: bool,
    tty: bool,
    /// Its output's reader went and the command was sent SIGHUP.
    hung_up: bool,
}

impl Relay<'_> {
    fn until_exit(
        &mut self,
        run_id: u64,
        input: mpsc::Receiver<Option<Vec<u8>>>,
        mut size: Option<(u16, u16)>,
    ) -> Result<u8, String> {
        let (mut alive_sent, mut size_seen) = (Instant::now(), Instant::now());
        let mut alive_due: Option<(u64, Instant)> = None;
        loop {
            while let Some(answer) = self.client.recv(Duration::from_millis(20))? {
                let id = answer.get("id").and_then(Value::as_u64);
                if id == Some(run_id) {
                    if let Some(code) = self.output(answer)? {
                        return Ok(code);
                    }
                } else if let Some(id) = id {
                    if alive_due.is_some_and(|(a, _)| a == id) {
                        alive_due = None;
                    }
                    self.in_flight.retain(|i| *i != id);
                    super::checked(self.host, answer)?;
                }
            }
            // Input may wait as long as the command does not read it; an
            // `alive` is answered at once by an agent that is there.
            if alive_due.is_some_and(|(_, sent)| sent.elapsed() > ANSWER) {
                return Err(format!(
                    "{}'s agent stopped answering (nothing for {ANSWER:?}); the command may still be running until its session is hung up",
                    self.host
                ));
            }
            while !self.input_done && self.in_flight.len() < WINDOW {
                match input.try_recv() {
                    Ok(Some(bytes)) => {
                        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                        let id = self.message(json!({"op": "input", "data": data}))?;
                        self.in_flight.push(id);
                    }
                    Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                        self.input_done = true;
                        // On a terminal the end of input is a key (Ctrl-D), not a close.
                        if !self.tty {
                            self.message(json!({"op": "eof"}))?;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            if INTERRUPTED.swap(false, Ordering::Relaxed) {
                self.message(json!({"op": "signal", "signal": libc::SIGINT}))?;
            }
            if self.tty && size_seen.elapsed() >= SIZE_POLL {
                size_seen = Instant::now();
                let now = window_size();
                if now.is_some() && now != size {
                    size = now;
                    if let Some((rows, cols)) = now {
                        self.message(json!({"op": "resize", "rows": rows, "cols": cols}))?;
                    }
                }
            }
            if alive_sent.elapsed() >= ALIVE {
                alive_sent = Instant::now();
                if alive_due.is_none() {
                    alive_due = Some((self.message(json!({"op": "alive"}))?, Instant::now()));
                }
            }
        }
    }

    /// Sends a message for the session; its id.
    fn message(&mut self, mut body: Value) -> Result<u64, String> {
        body["session"] = json!(self.session);
        self.client.send(&body)
    }

    /// Writes an answer's output; the exit status once the last one came.
    fn output(&mut self, answer: Value) -> Result<Option<u8>, String> {
        let answer = super::checked(self.host, answer)?;
        let decode = |k: &str| {
            (answer.get(k).and_then(Value::as_str))
                .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
        };
        if let Some(bytes) = decode("stdout") {
            let bytes = bytes.map_err(|e| format!("output from {}: {e}", self.host))?;
            let mut out = std::io::stdout().lock();
            let written = out.write_all(&bytes).and_then(|()| out.flush());
            // A reader that went (`| head`): the command is hung up, as a
            // closed terminal would, and its exit status still comes back.
            if written.is_err() && !self.hung_up {
                self.hung_up = true;
                self.message(json!({"op": "signal", "signal": libc::SIGHUP}))?;
            }
        }
        if let Some(bytes) = decode("stderr") {
            let bytes = bytes.map_err(|e| format!("output from {}: {e}", self.host))?;
            let _ = std::io::stderr().write_all(&bytes);
        }
        if answer.get("more") == Some(&json!(true)) {
            return Ok(None);
        }
        let code = match (
            answer.get("code").and_then(Value::as_i64),
            answer.get("signal").and_then(Value::as_i64),
        ) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        };
        Ok(Some(u8::try_from(code).unwrap_or(255)))
    }
}

/// This process's stdin, read on a thread of its own: chunks, then `None`
/// at its end.
fn read_stdin() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(WINDOW);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; INPUT_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// The terminal's rows and columns, if stdout is one.
fn window_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// The terminal in raw mode, put back as it was when dropped.
struct Raw {
    before: rustix::termios::Termios,
}

impl Raw {
    fn enter() -> Option<Raw> {
        let stdin = std::io::stdin();
        let before = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = before.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Flush, &raw).ok()?;
        Some(Raw { before })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Flush,
            &self.before,
        );
    }
}

//! A `sitec run` session's app-side end: `sitec session`, which systemd
//! starts as the app's user for each connection to the app's run socket
//! (`sitec-app-APP-run.socket`, `Accept=yes`; the socket is the agent's
//! alone, so only the agent can open a session). Its standard input and
//! output are that connection. The unit gives it the app's release as its
//! folder, its virtualenv first on `PATH`, its environment and the same
//! sandbox as the app's server; this end runs the command it is sent in
//! them, on a pseudo-terminal of its own when asked for one (the command
//! gets a session and that terminal as its controlling one, through
//! util-linux's `setsid --ctty`), else on pipes, and relays both ways.
//!
//! The connection carries frames, `kind`, a 4-byte big-endian length, the
//! payload (at most `FRAME_MAX`); what each kind holds is on `Kind`. The
//! agent sends `Start` first. The session sends `Exit` last and closes. It
//! never runs as root (its unit says `User=`), and it trusts the agent's
//! frames no further than their bounds: the agent, as the less privileged
//! peer's reader, bounds what it reads from here too (`agent::run`).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest payload of one frame either way.
pub const FRAME_MAX: usize = 64 * 1024;
/// What one read of the command's output sends at most.
const CHUNK: usize = 16 * 1024;
/// How long output may still come after the command ended (a child it
/// left behind may hold the terminal open).
const DRAIN: Duration = Duration::from_secs(2);

/// The kinds of frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Agent → session, first: JSON `{argv, tty, rows, cols, term}`.
    Start = b'S',
    /// Agent → session: bytes for the command's input.
    Input = b'I',
    /// Agent → session: the input has ended (the command's stdin closes).
    Eof = b'E',
    /// Agent → session: the terminal's size, rows and columns as two
    /// big-endian u16.
    Resize = b'W',
    /// Agent → session: a signal for the command's process group, its
    /// number as one byte (INT, QUIT, TERM, HUP or KILL only).
    Signal = b'K',
    /// Session → agent: the command's output (its terminal's, with a tty).
    Stdout = b'O',
    /// Session → agent: the command's stderr (without a tty only).
    Stderr = b'R',
    /// Session → agent, last: JSON `{code, signal}`, or `{error}` when the
    /// command could not start.
    Exit = b'X',
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        [
            Kind::Start,
            Kind::Input,
            Kind::Eof,
            Kind::Resize,
            Kind::Signal,
            Kind::Stdout,
            Kind::Stderr,
            Kind::Exit,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// Writes one frame.
pub fn write_frame(out: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    if payload.len() > FRAME_MAX {
        return Err(io::Error::other("a frame's payload is over 64 KiB"));
    }
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind as u8);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    out.write_all(&frame)
}

/// The frame a header announces: its kind and length, or why it is not one.
pub fn header(head: [u8; 5]) -> io::Result<(Kind, usize)> {
    let kind = Kind::from_byte(head[0])
        .ok_or_else(|| io::Error::other(format!("unknown frame kind {}", head[0])))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > FRAME_MAX {
        return Err(io::Error::other(format!(
            "a frame of {len} bytes (at most {FRAME_MAX})"
        )));
    }
    Ok((kind, len))
}

/// Reads one frame; `None` at the end of the stream.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match input.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (kind, len) = header(head)?;
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// What `Start` asks for.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct Start {
    pub argv: Vec<String>,
    pub tty: bool,
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
    #[serde(default)]
    pub term: Option<String>,
}

/// The signals a session passes on: the ones a terminal's user sends.
pub fn allowed_signal(number: u8) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    [
        Signal::INT,
        Signal::QUIT,
        Signal::TERM,
        Signal::HUP,
        Signal::KILL,
    ]
    .into_iter()
    .find(|s| s.as_raw() == i32::from(number))
}

/// Gives the signals a terminal's user sends (INT, QUIT, HUP, TERM) their
/// default action back, for this process and so for the commands it runs:
/// an ignored signal stays ignored through exec, and a process started
/// from a shell that ignored them (a background job ignores SIGINT and
/// SIGQUIT) would hand that on, so Ctrl-C would stop nothing. systemd
/// starts services with the defaults; this makes sure of it. (SIGPIPE's
/// default is restored in every child by std's `Command`.)
#[allow(unsafe_code)]
pub fn default_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM] {
        // SAFETY: `signal` with SIG_DFL installs no handler (no code runs in
        // signal context).
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

/// `sitec session`: serves one connection on standard input and output.
pub fn run() -> ExitCode {
    default_signals();
    let result = (|| -> io::Result<()> {
        let input = io::stdin().as_fd().try_clone_to_owned()?;
        let output = io::stdout().as_fd().try_clone_to_owned()?;
        serve(std::fs::File::from(input), std::fs::File::from(output))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sitec session: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command's end of the relay: where its input goes.
enum Feed {
    Terminal(std::fs::File),
    Pipe(Option<std::process::ChildStdin>),
}

/// Serves one session: reads `Start`, runs the command, relays until it ends.
pub fn serve(mut input: std::fs::File, output: std::fs::File) -> io::Result<()> {
    let output = Arc::new(Mutex::new(output));
    let start = match read_frame(&mut input)? {
        Some((Kind::Start, payload)) => serde_json::from_slice::<Start>(&payload)
            .map_err(|e| io::Error::other(format!("the start frame: {e}")))?,
        _ => return Err(io::Error::other("the first frame is not a start frame")),
    };
    let started = match spawn(&start) {
        Ok(started) => started,
        Err(e) => {
            let text = serde_json::json!({ "error": e }).to_string();
            return send(&output, Kind::Exit, text.as_bytes());
        }
    };
    let (mut child, feed, sources) = started;
    let open = sources.len();
    let (done_tx, done_rx) = mpsc::channel();
    for (kind, source) in sources {
        let (output, done) = (output.clone(), done_tx.clone());
        std::thread::spawn(move || {
            pump(source, kind, &output);
            let _ = done.send(());
        });
    }
    drop(done_tx);
    let group = rustix::process::Pid::from_child(&child);
    std::thread::spawn(move || relay(input, feed, group));
    let status = child.wait()?;
    // Output written just before the end still goes out first.
    for _ in 0..open {
        if done_rx.recv_timeout(DRAIN).is_err() {
            break;
        }
    }
    let exit = serde_json::json!({ "code": status.code(), "signal": status.signal() });
    send(&output, Kind::Exit, exit.to_string().as_bytes())
}

fn send(output: &Mutex<std::fs::File>, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let mut out = output.lock().map_err(|_| io::Error::other("poisoned"))?;
    write_frame(&mut *out, kind, payload)
}

/// The command started, where its input goes, and its outputs (with the
/// frame kind each is sent as).
type Started = (Child, Feed, Vec<(Kind, Box<dyn Read + Send>)>);

fn spawn(start: &Start) -> Result<Started, String> {
    let Some((program, args)) = start.argv.split_first() else {
        return Err("no command to run".into());
    };
    let mut command = if start.tty {
        // A session of its own with the terminal as its controlling one, so
        // Ctrl-C typed at the operator's terminal reaches it as SIGINT.
        let mut c = Command::new("setsid");
        c.args(["--ctty", "--wait", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args).process_group(0);
        c
    };
    if let Some(term) = &start.term {
        command.env("TERM", term);
    }
    let failed = |e: io::Error| format!("cannot run `{program}`: {e}");
    if start.tty {
        let (master, slave) = terminal(start.rows, start.cols).map_err(|e| e.to_string())?;
        let io = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| e.to_string());
        command
            .stdin(io(&slave)?)
            .stdout(io(&slave)?)
            .stderr(io(&slave)?);
        let child = command.spawn().map_err(failed)?;
        drop(command);
        drop(slave);
        let reader = std::fs::File::from(master.try_clone().map_err(|e| e.to_string())?);
        let sources: Vec<(Kind, Box<dyn Read + Send>)> = vec![(Kind::Stdout, Box::new(reader))];
        Ok((child, Feed::Terminal(std::fs::File::from(master)), sources))
    } else {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(failed)?;
        let stdin = child.stdin.take();
        let mut sources: Vec<(Kind, Box<dyn Read + Send>)> = Vec::new();
        if let Some(out) = child.stdout.take() {
            sources.push((Kind::Stdout, Box::new(out)));
        }
        if let Some(err) = child.stderr.take() {
            sources.push((Kind::Stderr, Box::new(err)));
        }
        Ok((child, Feed::Pipe(stdin), sources))
    }
}

/// A new pseudo-terminal of `rows` × `cols`: (master, slave).
fn terminal(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    resize(&master, rows, cols);
    Ok((master, slave))
}

fn resize(master: impl AsFd, rows: u16, cols: u16) {
    if rows > 0 && cols > 0 {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Sends what `source` gives as `kind` frames until it ends (a terminal
/// whose every holder has closed it reads EIO: the end too).
fn pump(mut source: Box<dyn Read + Send>, kind: Kind, output: &Mutex<std::fs::File>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match source.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if send(output, kind, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Applies the agent's frames to the command until the agent hangs up,
/// which hangs up the command too (SIGHUP to its group).
fn relay(mut input: std::fs::File, mut feed: Feed, group: rustix::process::Pid) {
    while let Ok(Some(frame)) = read_frame(&mut input) {
        match frame {
            (Kind::Input, bytes) => {
                let written = match &mut feed {
                    Feed::Terminal(t) => t.write_all(&bytes),
                    Feed::Pipe(Some(p)) => p.write_all(&bytes),
                    Feed::Pipe(None) => Ok(()),
                };
                if written.is_err() {
                    // The command closed its input: nothing more goes there.
                    if let Feed::Pipe(p) = &mut feed {
                        *p = None;
                    }
                }
            }
            (Kind::Eof, _) => {
                if let Feed::Pipe(p) = &mut feed {
                    *p = None;
                }
            }
            (Kind::Resize, size) if size.len() == 4 => {
                if let Feed::Terminal(t) = &feed {
                    let rows = u16::from_be_bytes([size[0], size[1]]);
                    let cols = u16::from_be_bytes([size[2], size[3]]);
                    resize(t, rows, cols);
                }
            }
            (Kind::Signal, number) if number.len() == 1 => {
                if let Some(signal) = allowed_signal(number[0]) {
                    let _ = rustix::process::kill_process_group(group, signal);
                }
            }
            _ => {}
        }
    }
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::HUP);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A session on one end of a socket pair; the test is the agent.
    fn session() -> (UnixStream, std::thread::JoinHandle<io::Result<()>>) {
        // As `run` does: under a shell's background job, the test's own
        // SIGINT is ignored and would be handed on to the commands.
        default_signals();
        let (agent, here) = UnixStream::pair().expect("pair");
        let input = std::fs::File::from(OwnedFd::from(here.try_clone().expect("clone")));
        let output = std::fs::File::from(OwnedFd::from(here));
        (agent, std::thread::spawn(move || serve(input, output)))
    }

    fn start(agent: &mut UnixStream, argv: &[&str], tty: bool) {
        let start = Start {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            tty,
            rows: 24,
            cols: 80,
            term: None,
        };
        let json = serde_json::to_vec(&start).expect("json");
        write_frame(agent, Kind::Start, &json).expect("start");
    }

    /// Every frame until `Exit`: (stdout, stderr, exit's JSON).
    fn collect(agent: &mut UnixStream) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match read_frame(agent).expect("frame") {
                Some((Kind::Stdout, b)) => out.extend(b),
                Some((Kind::Stderr, b)) => err.extend(b),
                Some((Kind::Exit, b)) => {
                    return (out, err, serde_json::from_slice(&b).expect("exit json"))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn without_a_terminal_output_and_errors_stay_apart_and_the_exit_code_comes_back() {
        let (mut agent, served) = session();
        start(
            &mut agent,
            &["sh", "-c", "read x; echo out:$x; echo err >&2; exit 3"],
            false,
        );
        write_frame(&mut agent, Kind::Input, b"hello\n").expect("input");
        let (out, err, exit) = collect(&mut agent);
        assert_eq!(String::from_utf8_lossy(&out), "out:hello\n");
        assert_eq!(String::from_utf8_lossy(&err), "err\n");
        assert_eq!(exit["code"], 3, "{exit}");
        served.join().expect("join").expect("served");
    }

    #[test]
    fn the_input_ends_when_the_agent_says_so() {
        let (mut agent, _served) = session();
        start(&mut agent, &["wc", "-c"], false);
        write_frame(&mut agent, Kind::Input, b"12345").expect("input");
        write_frame(&mut agent, Kind::Eof, b"").expect("eof");
        let (out, _, exit) = collect(&mut agent);
        assert_eq!(String::from_utf8_lossy(&out).trim(), "5");
        assert_eq!(exit["code"], 0);
    }

    #[test]
    fn on_a_terminal_the_command_sees_one_and_ctrl_c_interrupts_it() {
        let (mut agent, _served) = session();
        start(
            &mut agent,
            &[
                "sh",
                "-c",
                "test -t 0 && stty size && echo ready && sleep 30",
            ],
            true,
        );
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("ready") {
            match read_frame(&mut agent).expect("frame") {
                Some((Kind::Stdout, b)) => seen.extend(b),
                other => panic!("unexpected {other:?} after {seen:?}"),
            }
        }
        assert!(String::from_utf8_lossy(&seen).contains("24 80"), "{seen:?}");
        // ^C typed at the operator's terminal: the line discipline makes it SIGINT.
        write_frame(&mut agent, Kind::Input, b"\x03").expect("ctrl-c");
        let (_, _, exit) = collect(&mut agent);
        assert_eq!(exit["signal"], 2, "{exit}");
    }

    #[test]
    fn a_signal_frame_reaches_the_process_group() {
        let (mut agent, _served) = session();
        start(&mut agent, &["sleep", "30"], false);
        write_frame(&mut agent, Kind::Signal, &[15]).expect("signal");
        let (_, _, exit) = collect(&mut agent);
        assert_eq!(exit["signal"], 15, "{exit}");
    }

    #[test]
    fn a_command_that_cannot_start_says_why() {
        let (mut agent, _served) = session();
        start(&mut agent, &["/nonexistent/program"], false);
        let (_, _, exit) = collect(&mut agent);
        assert!(
            exit["error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot run `/nonexistent/program`")),
            "{exit}"
        );
    }

    #[test]
    fn frames_over_the_bound_are_refused_before_anything_is_read() {
        let mut head = [b'I', 0, 0, 0, 0];
        head[1..].copy_from_slice(&(FRAME_MAX as u32 + 1).to_be_bytes());
        assert!(header(head).is_err());
        assert!(header([b'?', 0, 0, 0, 0]).is_err());
        assert!(allowed_signal(9).is_some() && allowed_signal(19).is_none());
    }
}

//! Printing for the commands that keep SIGPIPE ignored: plan, apply,
//! fleet, host, data, backups, restore, failover, status, restart, logs,
//! unlock, releases and rollback (see `cli::main`). `print!` panics when its stream is closed
//! (`sitec plan SPEC | head -1`; an operator's ssh session gone while
//! `sitec host apply` converges), which would skip the rest of a change
//! half-done. The macros here (`out!`, `outln!`, `err!`, `errln!`) write
//! through one function instead: a stream whose reader has gone (EPIPE) is
//! dropped quietly and the command goes on to its end, with the exit status
//! its work earns; any other write error (a full disk) is said once on
//! standard error and makes a successful command exit 1, since what it
//! printed is incomplete. The commands that only read and print share some
//! of these paths (a spec's diagnostics) but never reach the EPIPE: they
//! die of SIGPIPE first, as a Unix filter does.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// One of the process's two output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// Set once a stream failed: nothing more is written to it.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);
/// Set when a stream failed for another reason than its reader going.
static CUT_SHORT: AtomicBool = AtomicBool::new(false);

fn gone(stream: Stream) -> &'static AtomicBool {
    match stream {
        Stream::Out => &STDOUT_GONE,
        Stream::Err => &STDERR_GONE,
    }
}

/// Writes `args` to `stream` (standard output flushed at once, so a
/// failure is seen here and not at exit); see the module's paragraph.
pub fn write(stream: Stream, args: fmt::Arguments) {
    if gone(stream).load(Ordering::Relaxed) {
        return;
    }
    let written = match stream {
        Stream::Out => {
            let mut out = std::io::stdout().lock();
            out.write_fmt(args).and_then(|()| out.flush())
        }
        Stream::Err => std::io::stderr().lock().write_fmt(args),
    };
    if let Err(e) = written {
        gone(stream).store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            CUT_SHORT.store(true, Ordering::Relaxed);
            if stream == Stream::Out {
                write(
                    Stream::Err,
                    format_args!("sitec: cannot write to standard output ({e}); nothing more is printed there\n"),
                );
            }
        }
    }
}

/// Whether standard output has gone (its reader closed it, or it failed):
/// a command that only prints, such as `sitec status --watch`, stops.
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// The exit code of a command that printed through this module: its own,
/// except that a success whose output was cut short by a write error other
/// than a closed pipe is a failure.
pub fn exit_code(code: ExitCode) -> ExitCode {
    if CUT_SHORT.load(Ordering::Relaxed) && code == ExitCode::SUCCESS {
        ExitCode::FAILURE
    } else {
        code
    }
}

/// `print!` that never panics (see `stdio`).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdio::write($crate::stdio::Stream::Out, format_args!($($arg)*)) };
}

/// `println!` that never panics (see `stdio`).
#[macro_export]
macro_rules! outln {
    () => { $crate::stdio::write($crate::stdio::Stream::Out, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdio::write($crate::stdio::Stream::Out, format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics (see `stdio`).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::stdio::write($crate::stdio::Stream::Err, format_args!($($arg)*)) };
}

/// `eprintln!` that never panics (see `stdio`).
#[macro_export]
macro_rules! errln {
    () => { $crate::stdio::write($crate::stdio::Stream::Err, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdio::write($crate::stdio::Stream::Err, format_args!("{}\n", format_args!($($arg)*))) };
}

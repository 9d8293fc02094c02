//! `SITEC_TRACE=1`: time marks on stderr for where a plan or an apply
//! spends its time (connect, ship the binary, facts, each host's apply).
//! For operators chasing a slow run and for the apply benchmark; silent
//! unless the variable is set.

use std::sync::OnceLock;
use std::time::Instant;

/// When tracing started, or `None` when `SITEC_TRACE` is unset.
fn start() -> Option<Instant> {
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    *START.get_or_init(|| std::env::var_os("SITEC_TRACE").map(|_| Instant::now()))
}

/// Prints `[+1.234s] what` to stderr when tracing is on.
pub fn mark(what: impl FnOnce() -> String) {
    if let Some(t0) = start() {
        eprintln!("[+{:.3}s] {}", t0.elapsed().as_secs_f64(), what());
    }
}

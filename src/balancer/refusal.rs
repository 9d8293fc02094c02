//! `Refusal`: the status and the one-line reason the balancer gives when it
//! turns a request away before anything of it reaches a backend. It only
//! names the answer; writing it to the client is the proxy's job.

/// A request the balancer will not forward, and the status that says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

impl Refusal {
    /// A malformed or ambiguous request: 400 Bad Request.
    pub const fn bad(reason: &'static str) -> Self {
        Refusal {
            status: 400,
            reason,
        }
    }

    pub const fn new(status: u16, reason: &'static str) -> Self {
        Refusal { status, reason }
    }
}

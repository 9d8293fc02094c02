//! SSH to the fleet's hosts: one multiplexed master connection per host
//! (the `openssh` crate driving the system `ssh`, native mux), opened to every
//! host at once, then commands, uploads and binary shipping over those masters.
//!
//! Host keys are always checked strictly against a known_hosts file the caller
//! names (`StrictHostKeyChecking=yes`, no global file, nothing is ever added),
//! and the key exchange defaults to `curve25519-sha256`: OpenSSH 9.2's default
//! post-quantum exchange (`sntrup761x25519-sha512`) costs several times more CPU per
//! new connection (measured in `benches/fleet/README.md`). Every master is
//! closed when its [`Transport`] is closed or dropped, and on Ctrl-C / SIGTERM
//! by the handler [`Transport::connect`] installs.
//!
//! This module never decides *what* to run on a host, never reads a `.site`
//! spec, and never connects without host-key pinning.

mod error;
mod interrupt;
mod options;
mod output;
mod target;
#[allow(clippy::module_inception)]
mod transport;

pub use error::Error;
pub use options::{Kex, SshOptions};
pub use output::CommandOutput;
pub use target::HostTarget;
pub use transport::Transport;
pub(crate) use transport::{shell_quote, write_file_script};

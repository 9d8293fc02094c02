//! Local fleets: real hosts on this machine, each a `systemd-nspawn -b`
//! container booting this machine's own systemd on an overlay of `/`, with
//! its own tmpfs layer, machine-id, address on a private bridge, sshd host
//! key and cgroup, reachable over ssh as root with the fleet's key. A host
//! whose data the spec puts on btrfs (database and backup hosts) also gets
//! a btrfs file system of its own, from a loop-mounted image, bound in at
//! those paths (`btrfs`). The quickstart, the tests and CI run plan and
//! apply against them.
//!
//! The API is three functions: [`up`] (boot what is not running, wait until
//! every host answers with systemd booted), [`down`] (stop everything and
//! remove every mount, cgroup, bridge and state file it made, keys aside;
//! also after a crashed `up`) and [`status`]. [`FleetState::targets`] and
//! [`FleetState::ssh_options`] hand the hosts to [`crate::transport`].
//!
//! The bridge's subnet is private and lives only on this machine: nothing
//! here adds a route beyond it, forwards or NATs. This module never reads a
//! `.site` file (the caller builds the [`FleetSpec`]) and never applies
//! anything to a host.

mod bridge;
mod btrfs;
mod cgroup;
mod cli;
mod command;
mod container;
mod down;
mod error;
mod keys;
mod layout;
mod lock;
mod masks;
mod mounts;
mod options;
mod preflight;
mod readiness;
mod registry;
mod rootfs;
mod spec;
mod state;
mod status;
mod subnet;
mod up;

pub use cli::{run, Args};
pub use down::{down, DownReport};
pub use error::Error;
pub use layout::Layout;
pub use options::Options;
pub use spec::{FleetSpec, LocalHost};
pub use state::{FleetState, HostState};
pub use status::{status, table, HostStatus};
pub use subnet::Subnet;
pub use up::up;

//! sitec compiles a description of a Python web-hosting fleet (`.site` files)
//! into everything each host needs, and ships the fleet's own daemons.
//!
//! The modules below are listed in pipeline order; each is one stage and says
//! in its opening paragraph what it does and what it never does.
//!
//! ```text
//! .site text ──syntax──▶ syntax trees ──modules──▶ every file the spec uses
//!            ──resolve──▶ checked spec (names, kinds, types)
//!            ──model────▶ typed fleet ──checks──▶ fleet diagnostics
//! ```
//!
//! `format` prints a syntax tree back in canonical layout. Only `modules`
//! (which reads the files a spec imports) and the commands in `cli` do IO.

pub mod bus_topology;
pub mod checks;
pub mod compile;
pub mod context;
pub mod diagnostic;
pub mod expand;
pub mod explain;
pub mod fleet_ca;
pub mod format;
pub mod graph;
pub mod local_files;
pub mod lsp;
pub mod model;
pub mod modules;
pub mod names;
pub mod output;
pub mod overrides;
pub mod own_templates;
pub mod plan;
pub mod requirements;
pub mod resolve;
pub mod resources;
pub mod secrets;
pub mod settings;
pub mod snapshot;
pub mod source;
pub mod sshkey;
pub mod stdlib;
pub mod suggest;
pub mod syntax;
pub mod templates;
pub mod trace;

pub mod agent;
pub mod apply;
pub mod balancer;
pub mod bus;
pub mod cli;
pub mod data;
pub mod fleet;
pub mod host;
pub mod ops;
pub mod sd_notify;
pub mod stdio;
pub mod transport;

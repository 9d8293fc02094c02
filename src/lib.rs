//! sitec compiles a description of a Python web-hosting fleet (`.site` files)
//! into everything each host needs, and ships the fleet's own daemons.
//!
//! The modules below are listed in pipeline order; each is one stage and says
//! in its opening paragraph what it does and what it never does.

pub mod balancer;
pub mod cli;

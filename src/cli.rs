//! The command line: clap definitions and the dispatch to each stage.
//! This is glue only; every command's work lives in its own module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// sitec: compile a fleet of Python web apps from `.site` files, plan and
/// apply it over SSH, and run the fleet's balancer and agent.
#[derive(Parser, Debug)]
#[command(name = "sitec", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot, inspect and remove local fleets of systemd-nspawn hosts.
    Fleet(crate::fleet::Args),
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Fleet(args) => crate::fleet::run(args),
    }
}

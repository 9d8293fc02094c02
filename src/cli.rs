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
    /// Run the fleet's HTTP/1.1 load balancer.
    Balancer(crate::balancer::Args),
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Balancer(args) => crate::balancer::run(args),
    }
}

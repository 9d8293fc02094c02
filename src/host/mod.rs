//! The host side of plan and apply: `sitec host facts` and `sitec host
//! apply`, run over SSH by the operator's sitec (the same version: plan ships
//! the binary first). Each reads the host's desired state as one JSON
//! document on stdin, so a whole host is assessed in one round trip and
//! converged in another. Synchronous and plain std: it runs one host.
//!
//! This module never reads a spec, never renders a template and never opens
//! a connection; it only compares and changes the host it runs on.

mod apply;
pub mod assess;
mod converge;
mod lease;
pub mod nofollow;
pub mod release;
pub mod state;
mod system;
#[cfg(test)]
mod tests;
mod unpack;
mod watch;
pub mod wire;

pub use converge::{blob_path, interpreter_candidates, is_version};

use std::io::Read as _;
use wire::{Desired, Facts, Removal, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Read the desired state (JSON) on stdin; print what differs (JSON)
    Facts,
    /// Read the desired state (JSON) on stdin; converge; print events (JSON lines)
    Apply,
    /// Print APP's releases (JSON), oldest first
    Releases { app: String },
    /// Make APP's kept release whose content's hash starts with HASH live; restart the app
    Rollback { app: String, hash: String },
}

/// Runs `sitec host ACTION`; the exit code is 0 only when all went well.
#[must_use]
pub fn run(args: &Args) -> std::process::ExitCode {
    let done = match &args.action {
        Action::Releases { app } => release::listed(app),
        Action::Rollback { app, hash } => release::rollback(app, hash),
        Action::Facts | Action::Apply => return run_desired(args),
    };
    match done {
        Ok(out) => {
            crate::outln!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            crate::errln!("sitec host: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// `facts` and `apply`: the desired state comes on stdin.
fn run_desired(args: &Args) -> std::process::ExitCode {
    let mut input = String::new();
    let desired: Result<Desired, String> = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&input).map_err(|e| e.to_string()));
    let desired = match desired {
        Ok(d) => d,
        Err(e) => {
            crate::errln!("sitec host: the desired state on stdin is not valid: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match args.action {
        Action::Facts => match state::State::load() {
            Ok(state) => {
                let facts = facts(&desired, &state);
                crate::outln!("{}", serde_json::to_string(&facts).unwrap_or_default());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                crate::errln!("sitec host: {e}");
                std::process::ExitCode::from(1)
            }
        },
        Action::Apply => {
            let code = apply::apply(&desired);
            std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Action::Releases { .. } | Action::Rollback { .. } => std::process::ExitCode::from(2),
    }
}

/// Everything a plan needs from this host, in one answer.
pub fn facts(desired: &Desired, state: &state::State) -> Facts {
    let assessments = apply::assess_all(desired, state);
    let wanted: std::collections::HashSet<&str> =
        desired.items.iter().map(|i| i.id.as_str()).collect();
    let removals = state
        .managed
        .iter()
        .filter(|m| !wanted.contains(m.id.as_str()))
        .map(|m| Removal {
            id: m.id.clone(),
            present: converge::present(m),
            action: converge::removal_action(m).to_string(),
            notifies: m.notifies.clone(),
        })
        .collect();
    let mut missing_blobs: Vec<String> = desired
        .items
        .iter()
        .zip(&assessments)
        .filter(|(_, a)| a.status != Status::Ok)
        .filter_map(|(item, _)| item.blob.clone())
        .filter(|blob| {
            !matches!(nofollow::meta(&blob_path(blob)), Ok(Some(m)) if m.node == nofollow::Node::File)
        })
        .collect();
    missing_blobs.sort();
    missing_blobs.dedup();
    let mut facts = Facts {
        host: desired.host.clone(),
        assessments,
        removals,
        missing_blobs,
        applied_generation: state.generation.clone(),
        owed: state::Pending::load().owed,
        binary_switch: apply::binary_switch().is_some(),
        fingerprint: String::new(),
    };
    // Not the missing blobs: uploading them is part of applying the plan.
    let seen = (
        &facts.assessments,
        &facts.removals,
        &facts.applied_generation,
    );
    facts.fingerprint =
        crate::resources::sha256_hex(serde_json::to_string(&seen).unwrap_or_default().as_bytes());
    facts
}

//! Runs a local helper program (`ip`, `ssh-keygen`, `ssh`) and turns its
//! failure into an error that names the command and what it printed.

use super::error::{Error, Result};
use std::process::{Command, Stdio};

/// Runs `program args…`, returning its stdout; fails naming the command and
/// its stderr when it cannot start or exits non-zero.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::new(format!("cannot run `{program}`: {e}"))
                .help(format!("is `{program}` installed and on PATH?"))
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::new(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

//! The fleet's error: what failed, in words, and the exact fix where one is
//! known ("apt-get install systemd-container", "run as root").

use std::fmt;

/// A failure of `up`, `down` or `status`.
#[derive(Debug)]
pub struct Error {
    /// What failed, naming the host, file or command involved.
    pub message: String,
    /// The fix, when one is likely.
    pub help: Option<String>,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// An I/O failure on `what` (a path or an action), with the OS's reason.
    pub(crate) fn io(what: impl fmt::Display, e: &std::io::Error) -> Self {
        Self::new(format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<crate::transport::Error> for Error {
    fn from(e: crate::transport::Error) -> Self {
        Self {
            message: match &e.host {
                Some(h) => format!("{h}: {}", e.message),
                None => e.message.clone(),
            },
            help: e.help,
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

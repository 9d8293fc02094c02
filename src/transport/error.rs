//! The transport's error: which host, what failed, and (where one is likely)
//! how to fix it. Never carries file contents or command input.

use std::fmt;

/// A failure talking to one host (or setting up to talk to any).
#[derive(Debug)]
pub struct Error {
    /// The host's name, when the failure belongs to one host.
    pub host: Option<String>,
    /// What failed, in words.
    pub message: String,
    /// A likely fix, when there is one.
    pub help: Option<String>,
}

impl Error {
    pub(crate) fn new(host: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            host: host.map(str::to_owned),
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

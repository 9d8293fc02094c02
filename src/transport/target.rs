//! One host to connect to: the name sitec knows it by and where it answers.

/// A host the transport connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    /// The name used in messages and to pick the host (`lb1`).
    pub name: String,
    /// The address ssh dials: an IP address or a DNS name, as in known_hosts.
    pub address: String,
    /// The SSH port (22 unless the spec says otherwise).
    pub port: u16,
}

impl HostTarget {
    /// A host on the standard SSH port.
    #[must_use]
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            port: 22,
        }
    }
}

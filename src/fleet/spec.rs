//! What a local fleet is made of: its name and its hosts, each with an
//! optional fixed address. Built from the command line today and from the
//! `.site` spec's `local` provider later; checked here, never booted here.

use super::error::{Error, Result};
use std::net::Ipv4Addr;

/// A fleet of local hosts (systemd-nspawn containers on this machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSpec {
    /// The fleet's name: names its state directory, cgroups and containers.
    pub name: String,
    pub hosts: Vec<LocalHost>,
}

/// One host of a local fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHost {
    /// The host's name: its hostname inside, and how sitec refers to it.
    pub name: String,
    /// A fixed address in the fleet's subnet; `None` allocates one.
    pub address: Option<Ipv4Addr>,
    /// Paths inside the host that live on a btrfs file system of its own
    /// (the spec's `subvolume` resources on it: a database or backup
    /// host's data); empty for most hosts.
    pub btrfs: Vec<String>,
}

impl LocalHost {
    /// Parses `NAME` or `NAME=ADDRESS` (the CLI's `--host`).
    pub fn parse(s: &str) -> Result<Self> {
        let (name, address) = match s.split_once('=') {
            Some((n, a)) => {
                let address = a.parse().map_err(|_| {
                    Error::new(format!("`{a}` in --host {s} is not an IPv4 address"))
                        .help("write --host NAME or --host NAME=10.77.0.21")
                })?;
                (n, Some(address))
            }
            None => (s, None),
        };
        Ok(Self {
            name: name.to_owned(),
            address,
            btrfs: Vec::new(),
        })
    }
}

impl FleetSpec {
    #[must_use]
    pub fn host(&self, name: &str) -> Option<&LocalHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Checks names (short, lowercase, usable as hostnames and in interface
    /// and cgroup names) and that no host or address appears twice.
    pub fn validate(&self) -> Result<()> {
        check_fleet_name(&self.name)?;
        if self.hosts.is_empty() {
            return Err(Error::new(format!("fleet `{}` has no hosts", self.name))
                .help("name at least one: --host lb1"));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            check_name("host", &h.name, 32)?;
            if self.hosts[..i].iter().any(|o| o.name == h.name) {
                return Err(Error::new(format!("host `{}` is named twice", h.name)));
            }
            if let Some(a) = h.address {
                if let Some(o) = self.hosts[..i].iter().find(|o| o.address == Some(a)) {
                    return Err(Error::new(format!(
                        "hosts `{}` and `{}` both ask for address {a}",
                        o.name, h.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Checks a fleet's name (it becomes a directory, cgroup and machine name).
pub(crate) fn check_fleet_name(name: &str) -> Result<()> {
    check_name("fleet", name, 12)
}

fn check_name(kind: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::new(format!("`{name}` is not a usable {kind} name")).help(format!(
            "use 1 to {max} lowercase letters, digits and inner dashes (it becomes a hostname and part of interface and cgroup names)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hosts: &[&str]) -> Result<FleetSpec> {
        Ok(FleetSpec {
            name: "demo".into(),
            hosts: hosts
                .iter()
                .map(|h| LocalHost::parse(h))
                .collect::<Result<_>>()?,
        })
    }

    #[test]
    fn parses_and_validates_hosts() -> Result<()> {
        let s = spec(&["lb1", "run1=10.77.0.21"])?;
        assert_eq!(s.hosts[1].address, Some(Ipv4Addr::new(10, 77, 0, 21)));
        s.validate()
    }

    #[test]
    fn rejects_bad_names_and_duplicates() -> Result<()> {
        assert!(spec(&["Lb1"])?.validate().is_err());
        assert!(spec(&["lb1", "lb1"])?.validate().is_err());
        assert!(spec(&["a=10.77.0.5", "b=10.77.0.5"])?.validate().is_err());
        assert!(LocalHost::parse("a=10.77.0").is_err());
        let long = FleetSpec {
            name: "averyveryverylongname".into(),
            hosts: vec![],
        };
        assert!(long.validate().is_err());
        Ok(())
    }
}

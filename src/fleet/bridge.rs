//! The bridge the hosts' `host0` interfaces hang off: created with the
//! subnet's gateway address and no route beyond it (no forwarding, no NAT),
//! removed once no host is attached. Talks to `ip`; never to anything else.

use super::command::run;
use super::error::{Error, Result};
use super::subnet::Subnet;
use std::path::Path;

/// A bridge on this machine, by name.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
}

impl Bridge {
    /// A bridge named `name` (checked: an interface name of at most 15 bytes).
    pub fn new(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 15
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::new(format!("`{name}` is not a usable bridge name"))
                .help("use at most 15 letters, digits, `-` or `_` (e.g. sitec0)"));
        }
        Ok(Self { name: name.into() })
    }

    /// True when an interface of this name exists.
    #[must_use]
    pub fn exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.name).exists()
    }

    /// The interfaces attached to the bridge (the hosts' `vb-…` veths).
    #[must_use]
    pub fn ports(&self) -> Vec<String> {
        let dir = Path::new("/sys/class/net").join(&self.name).join("brif");
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(std::result::Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates the bridge (if missing) holding the subnet's gateway address,
    /// and brings it up. Refuses when the bridge holds another address or
    /// another interface already routes the subnet.
    pub fn ensure(&self, subnet: &Subnet) -> Result<()> {
        let cidr = format!("{}/{}", subnet.gateway(), subnet.prefix());
        let routes = run(
            "ip",
            &[
                "-4",
                "-o",
                "route",
                "show",
                "to",
                "exact",
                &subnet.to_string(),
            ],
        )?;
        if let Some(line) = routes
            .lines()
            .find(|l| !l.contains(&format!("dev {} ", self.name)))
        {
            return Err(Error::new(format!(
                "subnet {subnet} is already routed elsewhere on this machine: {}",
                line.trim()
            ))
            .help("pick another --subnet (e.g. 10.77.1.0/24) or --bridge"));
        }
        if self.exists() {
            if !Path::new("/sys/class/net")
                .join(&self.name)
                .join("bridge")
                .exists()
            {
                return Err(Error::new(format!(
                    "interface `{}` exists and is not a bridge",
                    self.name
                ))
                .help("pick another --bridge"));
            }
        } else {
            run("ip", &["link", "add", &self.name, "type", "bridge"])
                .map_err(|e| e.help("are you root? is the bridge module available?"))?;
        }
        // IPv6 on the bridge would only add link-local chatter.
        let v6 = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", self.name);
        let _ = std::fs::write(v6, "1");
        let addrs = run("ip", &["-4", "-o", "addr", "show", "dev", &self.name])?;
        let held: Vec<&str> = addrs
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
            .collect();
        if let Some(other) = held.iter().find(|a| **a != cidr) {
            return Err(
                Error::new(format!("bridge `{}` holds {other}, not {cidr}", self.name))
                    .help("use the subnet that bridge was made for, or another --bridge"),
            );
        }
        if held.is_empty() {
            run("ip", &["addr", "add", &cidr, "dev", &self.name])?;
        }
        run("ip", &["link", "set", &self.name, "up"])?;
        Ok(())
    }

    /// Deletes the bridge if it exists.
    pub fn remove(&self) -> Result<()> {
        if self.exists() {
            run("ip", &["link", "del", &self.name])?;
        }
        Ok(())
    }
}

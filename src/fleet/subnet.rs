//! An IPv4 subnet for a fleet's bridge (10.77.0.0/24 by default): parsing,
//! the gateway (`.1`, on the bridge), and deterministic host addresses.

use super::error::{Error, Result};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A subnet between /16 and /29.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: u32,
    prefix: u8,
}

impl Default for Subnet {
    fn default() -> Self {
        Self {
            network: u32::from(Ipv4Addr::new(10, 77, 0, 0)),
            prefix: 24,
        }
    }
}

impl Subnet {
    /// The gateway address: the first one, held by the bridge.
    #[must_use]
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn broadcast(&self) -> u32 {
        self.network | (u32::MAX >> self.prefix)
    }

    /// True when `a` may be given to a host (inside, not the network,
    /// gateway or broadcast address).
    #[must_use]
    pub fn is_host_address(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        a > self.network + 1
            && a < self.broadcast()
            && (a & !(u32::MAX >> self.prefix)) == self.network
    }

    /// The first host address, from `.10` on (or right after the gateway in
    /// a small subnet), that `taken` does not hold.
    #[must_use]
    pub fn first_free(&self, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let start = if self.broadcast() - self.network > 16 {
            10
        } else {
            2
        };
        (self.network + start..self.broadcast())
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains(a))
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::new(format!("`{s}` is not a subnet"))
                .help("write it as 10.77.0.0/24 (prefix 16 to 29)")
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(16..=29).contains(&prefix) {
            return Err(bad());
        }
        let network = u32::from(addr) & !(u32::MAX >> prefix);
        if network != u32::from(addr) {
            return Err(Error::new(format!("`{s}` has host bits set")).help(format!(
                "did you mean {}/{prefix}?",
                Ipv4Addr::from(network)
            )));
        }
        if !addr.is_private() {
            return Err(Error::new(format!("{s} is not a private range")).help(
                "a local fleet lives only on this machine: use 10.x, 172.16-31.x or 192.168.x",
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_from_ten_skipping_taken() -> Result<()> {
        let s: Subnet = "10.77.3.0/24".parse()?;
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 77, 3, 1));
        let taken = [Ipv4Addr::new(10, 77, 3, 10)];
        assert_eq!(s.first_free(&taken), Some(Ipv4Addr::new(10, 77, 3, 11)));
        assert!(s.is_host_address(Ipv4Addr::new(10, 77, 3, 254)));
        assert!(!s.is_host_address(Ipv4Addr::new(10, 77, 3, 255)));
        assert!(!s.is_host_address(Ipv4Addr::new(10, 77, 3, 1)));
        assert!(!s.is_host_address(Ipv4Addr::new(10, 77, 4, 9)));
        assert_eq!(s.to_string(), "10.77.3.0/24");
        Ok(())
    }

    #[test]
    fn rejects_public_and_sloppy_subnets() {
        assert!("8.8.8.0/24".parse::<Subnet>().is_err());
        assert!("10.77.0.5/24".parse::<Subnet>().is_err());
        assert!("10.77.0.0/8".parse::<Subnet>().is_err());
        assert!("10.77.0.0".parse::<Subnet>().is_err());
    }
}

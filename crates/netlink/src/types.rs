//! Small value types shared by links, addresses, routes and rules.

use std::fmt;
use std::str::FromStr;

use netlink_packet_route::AddressFamily;

/// A link-layer address (6 bytes for Ethernet, longer for e.g. InfiniBand).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HwAddr(Vec<u8>);

impl HwAddr {
    /// Wraps raw bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Error for a string that is not `xx:xx:…` hex.
#[derive(Debug, thiserror::Error)]
#[error("invalid hardware address {0:?}")]
pub struct HwAddrParseError(String);

impl FromStr for HwAddr {
    type Err = HwAddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: Result<Vec<u8>, _> = s
            .split([':', '-'])
            .map(|p| {
                if p.len() == 2 {
                    u8::from_str_radix(p, 16).map_err(|_| ())
                } else {
                    Err(())
                }
            })
            .collect();
        match bytes {
            Ok(b) if b.len() >= 6 => Ok(Self(b)),
            _ => Err(HwAddrParseError(s.to_string())),
        }
    }
}

/// IP family of an address, route or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn to_af(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }

    pub(crate) fn from_af(af: AddressFamily) -> Option<Self> {
        match af {
            AddressFamily::Inet => Some(Family::V4),
            AddressFamily::Inet6 => Some(Family::V6),
            _ => None,
        }
    }

    /// The family of an address.
    pub fn of(ip: &std::net::IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// Address and route scope (`RT_SCOPE_*`; the same numbers for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    #[default]
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl From<u8> for Scope {
    fn from(v: u8) -> Self {
        match v {
            0 => Scope::Universe,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            o => Scope::Other(o),
        }
    }
}

impl From<Scope> for u8 {
    fn from(s: Scope) -> u8 {
        match s {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(o) => o,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwaddr_round_trip() {
        let m: HwAddr = "02:AB:cd:00:11:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!(m.as_bytes().len(), 6);
        assert!("02:ab".parse::<HwAddr>().is_err());
        assert!("02:ab:cd:00:11:zz".parse::<HwAddr>().is_err());
        assert!("2:ab:cd:00:11:ff".parse::<HwAddr>().is_err());
    }

    #[test]
    fn scope_numbers() {
        for s in [
            Scope::Universe,
            Scope::Site,
            Scope::Link,
            Scope::Host,
            Scope::Nowhere,
        ] {
            assert_eq!(Scope::from(u8::from(s)), s);
        }
    }
}

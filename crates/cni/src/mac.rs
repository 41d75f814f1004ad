//! The one MAC address type every crate carries: config `hwaddr`, netlink
//! links, the host-device store, IMDS NICs, the node state file, the agent's
//! plans and the networks annotation. It lives here because every user
//! already depends on `plexus-cni`.
//!
//! Parsing accepts what Go's `net.ParseMAC` accepts for a 48-bit address
//! (the reference plugins use it): `:`- or `-`-separated pairs or dotted
//! `xxxx.xxxx.xxxx`, any case. It prints and serializes as lower-case
//! `aa:bb:cc:dd:ee:ff`, the form sysfs and `ip link` show, so files written
//! before this type existed read unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// From its six bytes.
    pub const fn new(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }

    /// From a kernel link-layer address; `None` unless it is 6 bytes long
    /// (tunnels carry 4- or 16-byte addresses, InfiniBand 20).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Its six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        // `pad` so width flags in tables (`{:<17}`) apply.
        f.pad(&format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}"))
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// A string that is not a 48-bit MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct MacParseError(String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).ok_or_else(|| MacParseError(s.to_string()))
    }
}

fn parse(s: &str) -> Option<MacAddr> {
    let hex = |p: &str, width: usize| {
        (p.len() == width && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u16::from_str_radix(p, 16).ok())
            .flatten()
    };
    let mut out = [0u8; 6];
    if s.len() == 14 && s.contains('.') {
        let groups: Vec<&str> = s.split('.').collect();
        if groups.len() != 3 {
            return None;
        }
        for (i, g) in groups.iter().enumerate() {
            let [hi, lo] = hex(g, 4)?.to_be_bytes();
            out[2 * i] = hi;
            out[2 * i + 1] = lo;
        }
        return Some(MacAddr(out));
    }
    let sep = if s.contains('-') { '-' } else { ':' };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 6 {
        return None;
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::try_from(hex(p, 2)?).ok()?;
    }
    Some(MacAddr(out))
}

/// So `assert_eq!(nic.mac, "02:00:17:05:d1:db")` reads like the file it
/// checks: equal when `other` parses to the same address.
impl PartialEq<str> for MacAddr {
    fn eq(&self, other: &str) -> bool {
        other.parse::<Self>().is_ok_and(|m| m == *self)
    }
}

impl PartialEq<&str> for MacAddr {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_forms_and_prints_lower_colon() {
        for s in [
            "02:AB:cd:00:11:ff",
            "02-ab-CD-00-11-FF",
            "02ab.cd00.11ff",
            "02:ab:cd:00:11:ff",
        ] {
            let m: MacAddr = s.parse().unwrap();
            assert_eq!(m.to_string(), "02:ab:cd:00:11:ff", "{s}");
            assert_eq!(m.octets(), [0x02, 0xab, 0xcd, 0x00, 0x11, 0xff]);
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "02:ab",
            "02:ab:cd:00:11:zz",
            "2:ab:cd:00:11:ff",
            "02:ab:cd:00:11:ff:00",
            "02:ab-cd:00:11:ff",
            "+2:ab:cd:00:11:ff",
            " 02:ab:cd:00:11:ff",
            "02ab.cd00.11f",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn hwaddr_round_trip() {
        let m: MacAddr = "02:AB:cd:00:11:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!(m.octets().len(), 6);
        assert!("02:ab".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:11:zz".parse::<MacAddr>().is_err());
        assert!("2:ab:cd:00:11:ff".parse::<MacAddr>().is_err());
    }

    #[test]
    fn serde_is_the_lower_case_string() {
        let m: MacAddr = serde_json::from_str("\"02:00:17:05:D1:DB\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:00:17:05:d1:db\"");
        let e = serde_json::from_str::<MacAddr>("\"nope\"").unwrap_err();
        assert!(e.to_string().contains("invalid MAC address"), "{e}");
    }

    #[test]
    fn compares_with_strings_and_slices() {
        let m = MacAddr::new([2, 0, 0, 0, 0, 5]);
        assert_eq!(m, "02:00:00:00:00:05");
        assert_eq!(m, "02-00-00-00-00-05");
        assert_ne!(m, "02:00:00:00:00:06");
        assert_eq!(MacAddr::from_slice(&[2, 0, 0, 0, 0, 5]), Some(m));
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4]), None);
        assert!(MacAddr::new([3; 6]) > m);
    }
}

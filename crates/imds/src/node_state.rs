//! The node state file: what the agent learned about this node's VNICs,
//! written for the `vnic` IPAM plugin to read.
//!
//! It lives here rather than in the agent so the plugin links only this
//! crate (serde + a blocking HTTP client), not the agent's runtime. The agent
//! re-exports it as `plexus_agent::state`.
//!
//! Contract: JSON at [`DEFAULT_STATE_PATH`], `version` = [`SCHEMA_VERSION`],
//! replaced atomically and durably (`plexus_cni::fsutil`: temp file in the
//! same directory, fsync, rename, fsync
//! of the directory) so a reader sees the old or the new file, never a torn
//! one. Readers reject versions they do not know instead of guessing.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use plexus_cni::fsutil::{write_atomic, AtomicWrite};
use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::node::{NicAddress, NodeNic};
use crate::types::normalize_mac;

/// Where the agent writes the state file on a node.
pub const DEFAULT_STATE_PATH: &str = "/run/plexus/state.json";
/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Schema version, [`SCHEMA_VERSION`].
    pub version: u32,
    /// When the agent wrote it, RFC 3339 UTC.
    pub updated_at: String,
    /// One entry per VF (several VFs may share one VNIC), plus one per VNIC
    /// with no device on this node, so MAC lookups still succeed.
    pub vnics: Vec<VnicState>,
}

/// One VF (or VNIC) and the cloud addressing that belongs to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnicState {
    /// Host interface name when last seen in the host namespace.
    pub ifname: Option<String>,
    /// PCI address (`0000:00:05.0`) of the function, when known.
    pub pci: Option<String>,
    /// MAC, lower-case.
    pub mac: String,
    /// VNIC OCID.
    pub vnic_id: String,
    /// The VNIC's primary private IP.
    pub ip: IpAddr,
    /// Prefix length of `ip` (from the subnet).
    pub prefix_len: u8,
    /// Subnet CIDR.
    pub subnet_cidr: IpNet,
    /// Subnet gateway (`virtualRouterIp`).
    pub gateway: Option<IpAddr>,
    /// VLAN tag (bare metal only).
    pub vlan_tag: Option<u32>,
    /// Physical NIC index (bare metal only).
    pub nic_index: Option<u32>,
    /// MTU to configure; OCI VNICs use 9000.
    pub mtu: Option<u32>,
    /// True for the primary VNIC (first IMDS entry); never hand it to a pod.
    pub is_primary: bool,
}

impl VnicState {
    /// Builds an entry from a node NIC and the device it matched, if any.
    pub fn from_nic(
        nic: &NodeNic,
        is_primary: bool,
        ifname: Option<String>,
        pci: Option<String>,
    ) -> Self {
        Self {
            ifname,
            pci,
            mac: nic.mac.clone(),
            vnic_id: nic.id.clone(),
            ip: nic.address.ip,
            prefix_len: nic.address.prefix_len(),
            subnet_cidr: nic.address.subnet,
            gateway: nic.address.gateway,
            vlan_tag: nic.vlan,
            nic_index: nic.nic_index,
            mtu: nic.mtu,
            is_primary,
        }
    }
}

impl VnicState {
    /// The node NIC this entry records, for readers that act on what the
    /// agent configured (uninstall deconfigures from the file, not IMDS).
    pub fn to_nic(&self) -> NodeNic {
        NodeNic {
            id: self.vnic_id.clone(),
            mac: self.mac.clone(),
            address: NicAddress {
                ip: self.ip,
                subnet: self.subnet_cidr,
                gateway: self.gateway,
            },
            vlan: self.vlan_tag,
            nic_index: self.nic_index,
            mtu: self.mtu,
        }
    }
}

impl NodeState {
    /// A state stamped with `now`.
    pub fn new(vnics: Vec<VnicState>, now: SystemTime) -> Self {
        Self {
            version: SCHEMA_VERSION,
            updated_at: rfc3339_utc(now),
            vnics,
        }
    }

    /// The entry for PCI address `pci` (case-insensitive).
    pub fn find_by_pci(&self, pci: &str) -> Option<&VnicState> {
        self.vnics.iter().find(|v| {
            v.pci
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(pci))
        })
    }

    /// The first entry with MAC `mac` (case-insensitive). VFs sharing a MAC
    /// belong to one VNIC, so any of them carries the same addressing.
    pub fn find_by_mac(&self, mac: &str) -> Option<&VnicState> {
        let mac = normalize_mac(mac);
        self.vnics.iter().find(|v| v.mac == mac)
    }

    /// Reads `path`; `Ok(None)` when it does not exist yet.
    pub fn read(path: &Path) -> Result<Option<Self>, StateError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let parse_err = |source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse_err)?;
        let found = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if found != u64::from(SCHEMA_VERSION) {
            return Err(StateError::Version {
                path: path.to_path_buf(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: SCHEMA_VERSION,
            });
        }
        serde_json::from_value(value).map(Some).map_err(parse_err)
    }

    /// Replaces `path` atomically, creating its directory if needed.
    pub fn write_atomic(&self, path: &Path) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        // Durable: the plugin reads this file after a node reboot too.
        let how = AtomicWrite {
            sync: true,
            mode: None,
            create_dir: Some(0o755),
        };
        write_atomic(path, &json, how).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SSZ` (UTC) without a date crate.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    plexus_cni::timefmt::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(mac: &str, pci: Option<&str>) -> VnicState {
        VnicState {
            ifname: Some("ens5".into()),
            pci: pci.map(str::to_string),
            mac: mac.into(),
            vnic_id: "ocid1.vnic.oc1.phx.a".into(),
            ip: "198.51.100.10".parse().unwrap(),
            prefix_len: 24,
            subnet_cidr: "198.51.100.0/24".parse().unwrap(),
            gateway: Some("198.51.100.1".parse().unwrap()),
            vlan_tag: None,
            nic_index: None,
            mtu: Some(9000),
            is_primary: false,
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // leap-year Feb 29
        assert_eq!(rfc3339_utc(t), "2024-02-29T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
        assert_eq!(rfc3339_utc(t), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn write_then_read_roundtrips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let state = NodeState::new(
            vec![entry("02:00:17:00:00:01", Some("0000:00:05.0"))],
            UNIX_EPOCH,
        );
        state.write_atomic(&path).unwrap();
        state.write_atomic(&path).unwrap();
        assert_eq!(NodeState::read(&path).unwrap(), Some(state));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn missing_file_is_none_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(NodeState::read(&path).unwrap(), None);
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            NodeState::read(&path),
            Err(StateError::Parse { .. })
        ));
        fs::write(&path, r#"{"version":7,"updated_at":"x","vnics":[]}"#).unwrap();
        let err = NodeState::read(&path).unwrap_err();
        assert!(matches!(err, StateError::Version { found: 7, .. }), "{err}");
    }

    #[test]
    fn entry_and_nic_convert_both_ways() {
        let e = entry("02:00:17:00:00:01", Some("0000:00:05.0"));
        let back = VnicState::from_nic(&e.to_nic(), e.is_primary, e.ifname.clone(), e.pci.clone());
        assert_eq!(back, e);
        assert_eq!(e.to_nic().address.cidr().to_string(), "198.51.100.10/24");
    }

    #[test]
    fn lookups_ignore_case() {
        let state = NodeState::new(
            vec![
                entry("02:00:17:00:00:01", Some("0000:00:05.0")),
                entry("02:00:17:00:00:02", None),
            ],
            UNIX_EPOCH,
        );
        assert!(state.find_by_pci("0000:00:05.0").is_some());
        assert!(state.find_by_pci("0000:00:06.0").is_none());
        assert_eq!(
            state
                .find_by_mac("02:00:17:00:00:02")
                .map(|v| v.pci.is_none()),
            Some(true)
        );
        assert!(state.find_by_mac("02:00:17:00:00:0A").is_none());
        assert!(state
            .find_by_mac("02:00:17:00:00:01".to_uppercase().as_str())
            .is_some());
    }
}

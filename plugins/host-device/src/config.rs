//! The host-device configuration: the reference's keys plus `dataDir`, and
//! the choice of one device selector.

use std::path::PathBuf;

use plexus_cni::MacAddr;
use plexus_cni::NetConf;
use plexus_sysfs::pci::PciAddr;
use serde_json::Value;

use crate::error::Error;

/// Where state files and device locks live unless `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/plexus-host-device";

/// How the device is chosen, in precedence order: an allocated `deviceID`
/// (runtimeConfig, then top level) wins over everything, so a NAD naming
/// `device` cannot silently ignore the VF the device plugin allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `runtimeConfig.deviceID` or top-level `deviceID` (a PCI address).
    DeviceId(PciAddr),
    /// `device`: host interface name.
    Name(String),
    /// `hwaddr`: current or permanent MAC.
    Mac(MacAddr),
    /// `kernelpath`: a `/sys/devices/...` path.
    KernelPath(String),
    /// `pciBusID`.
    PciBusId(PciAddr),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::DeviceId(a) => write!(f, "deviceID {a}"),
            Selector::Name(n) => write!(f, "device {n:?}"),
            Selector::Mac(m) => write!(f, "hwaddr {m}"),
            Selector::KernelPath(p) => write!(f, "kernelpath {p}"),
            Selector::PciBusId(a) => write!(f, "pciBusID {a}"),
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub net: NetConf,
    pub selector: Selector,
    pub use_interface_network: bool,
    pub data_dir: PathBuf,
    /// `ipam.type`, when an `ipam` section is present.
    pub ipam_type: Option<String>,
}

fn opt_string(conf: &NetConf, key: &'static str) -> Result<Option<String>, Error> {
    match conf.extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::config(key, format!("must be a string, got {other}"))),
    }
}

fn pci(key: &'static str, s: &str) -> Result<PciAddr, Error> {
    s.parse().map_err(|e| Error::config(key, e))
}

impl Config {
    /// Parses stdin into the config, validating every selector key.
    pub fn load(stdin: &[u8]) -> Result<Self, Error> {
        let net = NetConf::parse(stdin)?;
        let device = opt_string(&net, "device")?;
        let hwaddr = opt_string(&net, "hwaddr")?
            .map(|s| s.parse::<MacAddr>().map_err(|e| Error::config("hwaddr", e)))
            .transpose()?;
        let kernelpath = opt_string(&net, "kernelpath")?;
        if let Some(p) = &kernelpath {
            if !p.starts_with("/sys/devices/") {
                return Err(Error::config(
                    "kernelpath",
                    format!("{p:?} must be an absolute path under /sys/devices/"),
                ));
            }
        }
        let pci_bus_id = opt_string(&net, "pciBusID")?
            .map(|s| pci("pciBusID", &s))
            .transpose()?;
        let runtime_id = net
            .runtime()?
            .device_id
            .filter(|s| !s.is_empty())
            .map(|s| pci("runtimeConfig.deviceID", &s))
            .transpose()?;
        let top_id = opt_string(&net, "deviceID")?
            .map(|s| pci("deviceID", &s))
            .transpose()?;
        let selector = runtime_id
            .or(top_id)
            .map(Selector::DeviceId)
            .or(device.map(Selector::Name))
            .or(hwaddr.map(Selector::Mac))
            .or(kernelpath.map(Selector::KernelPath))
            .or(pci_bus_id.map(Selector::PciBusId))
            .ok_or_else(|| {
                Error::config(
                    "device",
                    "specify either \"device\", \"hwaddr\", \"kernelpath\", \"pciBusID\" or \"deviceID\"",
                )
            })?;
        let use_interface_network = match net.extra.get("useInterfaceNetwork") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Error::config(
                    "useInterfaceNetwork",
                    format!("must be a boolean, got {other}"),
                ))
            }
        };
        let data_dir = opt_string(&net, "dataDir")?
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from);
        let ipam_type = net.ipam_conf()?.map(|i| i.plugin_type);
        if ipam_type.as_deref() == Some("") {
            return Err(Error::config("ipam.type", "must name an IPAM plugin"));
        }
        Ok(Config {
            net,
            selector,
            use_interface_network,
            data_dir,
            ipam_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: Value) -> Result<Config, Error> {
        Config::load(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn allocated_device_id_wins_over_name() {
        let c = load(json!({"cniVersion":"1.0.0","name":"n","type":"host-device",
            "device":"ens5","pciBusID":"0000:00:05.0",
            "runtimeConfig":{"deviceID":"00:04.0"}}))
        .unwrap();
        assert_eq!(
            c.selector,
            Selector::DeviceId("0000:00:04.0".parse().unwrap())
        );
        let c = load(json!({"name":"n","device":"ens5","deviceID":"0000:00:06.0"})).unwrap();
        assert_eq!(
            c.selector,
            Selector::DeviceId("0000:00:06.0".parse().unwrap())
        );
    }

    #[test]
    fn reference_order_without_device_id() {
        let c = load(json!({"name":"n","device":"ens5","hwaddr":"02:00:00:00:00:01"})).unwrap();
        assert_eq!(c.selector, Selector::Name("ens5".into()));
        let c = load(json!({"name":"n","hwaddr":"02:00:00:00:00:01","pciBusID":"0000:00:05.0"}))
            .unwrap();
        assert!(matches!(c.selector, Selector::Mac(_)));
        let c = load(
            json!({"name":"n","kernelpath":"/sys/devices/pci0000:00/0000:00:05.0",
            "pciBusID":"0000:00:05.0"}),
        )
        .unwrap();
        assert!(matches!(c.selector, Selector::KernelPath(_)));
        let c = load(json!({"name":"n","pciBusID":"0000:00:05.0"})).unwrap();
        assert!(matches!(c.selector, Selector::PciBusId(_)));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(!c.use_interface_network);
        assert_eq!(c.ipam_type, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"name":"n"}), "device", 7),
            (json!({"name":"n","hwaddr":"zz"}), "hwaddr", 7),
            (json!({"name":"n","device":5}), "device", 7),
            (json!({"name":"n","pciBusID":"0000:00:99.0"}), "pciBusID", 7),
            (json!({"name":"n","kernelpath":"/tmp/x"}), "kernelpath", 7),
            (
                json!({"name":"n","device":"a","useInterfaceNetwork":"yes"}),
                "useInterfaceNetwork",
                7,
            ),
            (
                json!({"name":"n","device":"a","runtimeConfig":{"deviceID":"x"}}),
                "runtimeConfig.deviceID",
                7,
            ),
            (json!({"name":"n","device":"a","ipam":{}}), "ipam.type", 7),
        ];
        for (v, field, code) in cases {
            let e = plexus_cni::CniError::from(load(v.clone()).unwrap_err());
            assert_eq!(e.code, code, "{v}: {e}");
            assert!(e.msg.contains(field), "{v}: {e}");
        }
        let e = plexus_cni::CniError::from(Config::load(b"{not json").unwrap_err());
        assert_eq!(e.code, 6);
    }
}

//! The host-device configuration: the reference's keys plus `dataDir`, and
//! the choice of one device selector.

use std::path::PathBuf;

use plexus_cni::CniError;
use plexus_cni::MacAddr;
use plexus_cni::NetConf;
use plexus_sysfs::pci::PciAddr;
use serde::{Deserialize, Deserializer};
use serde_json::error::Category;
use serde_path_to_error::Segment;

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

/// The wire form: the common keys typed once in plexus-cni, flattened, plus
/// host-device's own. Selector strings stay strings here so their parse
/// errors keep naming the key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default, deserialize_with = "unset_if_empty")]
    device: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    hwaddr: Option<String>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    kernelpath: Option<String>,
    #[serde(rename = "pciBusID", default, deserialize_with = "unset_if_empty")]
    pci_bus_id: Option<String>,
    #[serde(rename = "deviceID", default, deserialize_with = "unset_if_empty")]
    device_id: Option<String>,
    #[serde(default)]
    use_interface_network: Option<bool>,
    #[serde(default, deserialize_with = "unset_if_empty")]
    data_dir: Option<String>,
}

/// host-device's own top-level keys: a type error in one of them is a
/// config error (code 7) naming it; anything else is a decode error (code 6).
const OWN_KEYS: [&str; 7] = [
    "device",
    "hwaddr",
    "kernelpath",
    "pciBusID",
    "deviceID",
    "useInterfaceNetwork",
    "dataDir",
];

/// `""` and `null` both mean unset, as in the reference (Go's zero value).
fn unset_if_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

impl RawConf {
    fn parse(stdin: &[u8]) -> Result<Self, Error> {
        let decode = |e: &dyn std::fmt::Display| {
            Error::Cni(CniError::decode(format!("failed to load netconf: {e}")))
        };
        let mut de = serde_json::Deserializer::from_slice(stdin);
        let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let own = match e.path().iter().next() {
                Some(Segment::Map { key }) => OWN_KEYS.iter().find(|k| *k == key),
                _ => None,
            };
            match own {
                Some(key) if e.inner().classify() == Category::Data => {
                    Error::config(key, e.into_inner())
                }
                _ => decode(e.inner()),
            }
        })?;
        de.end().map_err(|e| decode(&e))?;
        Ok(raw)
    }
}

fn pci(key: &'static str, s: &str) -> Result<PciAddr, Error> {
    s.parse().map_err(|e| Error::config(key, e))
}

impl Config {
    /// Parses stdin into the config, validating every selector key.
    pub fn load(stdin: &[u8]) -> Result<Self, Error> {
        let raw = RawConf::parse(stdin)?;
        let hwaddr = raw
            .hwaddr
            .map(|s| s.parse::<MacAddr>().map_err(|e| Error::config("hwaddr", e)))
            .transpose()?;
        if let Some(p) = &raw.kernelpath {
            if !p.starts_with("/sys/devices/") {
                return Err(Error::config(
                    "kernelpath",
                    format!("{p:?} must be an absolute path under /sys/devices/"),
                ));
            }
        }
        let pci_bus_id = raw.pci_bus_id.map(|s| pci("pciBusID", &s)).transpose()?;
        let runtime_id = raw
            .net
            .runtime()?
            .device_id
            .filter(|s| !s.is_empty())
            .map(|s| pci("runtimeConfig.deviceID", &s))
            .transpose()?;
        let top_id = raw.device_id.map(|s| pci("deviceID", &s)).transpose()?;
        let selector = runtime_id
            .or(top_id)
            .map(Selector::DeviceId)
            .or(raw.device.map(Selector::Name))
            .or(hwaddr.map(Selector::Mac))
            .or(raw.kernelpath.map(Selector::KernelPath))
            .or(pci_bus_id.map(Selector::PciBusId))
            .ok_or_else(|| {
                Error::config(
                    "device",
                    "specify either \"device\", \"hwaddr\", \"kernelpath\", \"pciBusID\" or \"deviceID\"",
                )
            })?;
        let data_dir = raw
            .data_dir
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from);
        let ipam_type = raw.net.ipam_conf()?.map(|i| i.plugin_type);
        if ipam_type.as_deref() == Some("") {
            return Err(Error::config("ipam.type", "must name an IPAM plugin"));
        }
        Ok(Config {
            net: raw.net,
            selector,
            use_interface_network: raw.use_interface_network.unwrap_or(false),
            data_dir,
            ipam_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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

    /// A value of the wrong JSON type: host-device's own keys are config
    /// errors (7) naming the key, as before the flattened struct; the common
    /// keys stay decode errors (6) as plexus-cni reports them.
    #[rstest::rstest]
    #[case("device", json!(5), 7)]
    #[case("hwaddr", json!(["02:00:00:00:00:01"]), 7)]
    #[case("kernelpath", json!(true), 7)]
    #[case("pciBusID", json!({"bus": 5}), 7)]
    #[case("deviceID", json!(4), 7)]
    #[case("useInterfaceNetwork", json!("yes"), 7)]
    #[case("useInterfaceNetwork", json!(1), 7)]
    #[case("dataDir", json!(false), 7)]
    #[case("runtimeConfig", json!({"deviceID": 4}), 6)]
    fn wrong_type_names_the_key(#[case] key: &str, #[case] value: Value, #[case] code: u32) {
        let mut v = json!({"cniVersion":"1.0.0","name":"n","type":"host-device","device":"a"});
        v[key] = value;
        let e = plexus_cni::CniError::from(load(v.clone()).unwrap_err());
        assert_eq!(e.code, code, "{v}: {e}");
        let named = if code == 7 {
            format!("{key:?}")
        } else {
            key.to_string()
        };
        assert!(e.msg.contains(&named), "{v}: {e}");
    }

    #[test]
    fn empty_and_null_mean_unset() {
        let c = load(json!({"name":"n","device":"","hwaddr":null,"kernelpath":"",
            "pciBusID":"0000:00:05.0","deviceID":"","dataDir":"","useInterfaceNetwork":null,
            "runtimeConfig":{"deviceID":""}}))
        .unwrap();
        assert!(matches!(c.selector, Selector::PciBusId(_)));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(!c.use_interface_network);
        let c = load(
            json!({"name":"n","device":"a","dataDir":"/tmp/d","useInterfaceNetwork":true,
            "ipam":{"type":"static"}}),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert!(c.use_interface_network);
        assert_eq!(c.ipam_type.as_deref(), Some("static"));
        assert!(Config::load(br#"{"name":"n","device":"a"} x"#).is_err());
    }
}

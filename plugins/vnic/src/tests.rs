use super::*;
use plexus_imds::testing::StaticMetadata;
use plexus_imds::Vnic;
use serde_json::json;
use std::path::Path;

fn req(extra: serde_json::Value) -> Result<Request, CniError> {
    let mut c = json!({"cniVersion": "1.0.0", "name": "n", "type": "host-device", "ipam": {"type": "vnic"}});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    parse_request(&serde_json::to_vec(&c).unwrap())
}

#[test]
fn selector_follows_host_device_precedence() {
    let all = json!({"device": "ens5", "hwaddr": "aa:bb:cc:dd:ee:ff", "kernelpath": "/sys/devices/x/0000:00:05.0",
                     "pciBusID": "0000:00:06.0", "runtimeConfig": {"deviceID": "0000:00:07.0"}});
    // An allocated deviceID wins over `device`, as in host-device.
    assert_eq!(
        req(all).unwrap().selector,
        Selector::Pci("0000:00:07.0".into())
    );
    // Top-level deviceID (as Multus/plexus inject it) wins too.
    let s = req(json!({"device": "ens5", "deviceID": "0000:00:08.0"}))
        .unwrap()
        .selector;
    assert_eq!(s, Selector::Pci("0000:00:08.0".into()));
    let s = req(json!({"device": "ens5", "hwaddr": "aa:bb:cc:dd:ee:ff"}))
        .unwrap()
        .selector;
    assert_eq!(s, Selector::Name("ens5".into()));
    let s = req(json!({"hwaddr": "AA:BB:CC:DD:EE:FF", "pciBusID": "0000:00:06.0"}))
        .unwrap()
        .selector;
    // host-device normalises the MAC; matching is case-insensitive.
    assert_eq!(s, Selector::Mac("aa:bb:cc:dd:ee:ff".into()));
    let s = req(json!({"pciBusID": "0000:00:06.0", "runtimeConfig": {"deviceID": "0000:00:07.0"}}))
        .unwrap()
        .selector;
    assert_eq!(s, Selector::Pci("0000:00:07.0".into()));
    assert_eq!(
        req(json!({})).unwrap_err().code,
        CniError::INVALID_NETWORK_CONFIG
    );
    let r = req(json!({"device": "x"})).unwrap();
    assert_eq!(r.ipam.state_file, PathBuf::from("/run/plexus/state.json"));
    assert_eq!(r.ipam.sysfs_root, PathBuf::from("/"));
    assert_eq!(r.ipam.imds_url, "http://169.254.169.254");
    assert!(!r.ipam.default_route);
}

fn vnic_state() -> VnicState {
    VnicState {
        ifname: None,
        pci: None,
        mac: "02:00:17:00:00:02".into(),
        vnic_id: "ocid1.vnic.x".into(),
        ip: "198.51.100.20".parse().unwrap(),
        prefix_len: 24,
        subnet_cidr: "198.51.100.0/24".parse().unwrap(),
        gateway: Some("198.51.100.1".parse().unwrap()),
        vlan_tag: None,
        nic_index: None,
        mtu: None,
        is_primary: false,
    }
}

#[test]
fn result_keeps_host_bits_and_does_not_duplicate_default_route() {
    let mut ipam = req(json!({"device": "x"})).unwrap().ipam;
    ipam.default_route = true;
    ipam.routes = vec![ConfRoute {
        dst: "0.0.0.0/0".parse().unwrap(),
        gw: None,
    }];
    let r = build_result(&vnic_state(), &ipam).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "198.51.100.20/24");
    assert_eq!(r.routes.len(), 1);
}

struct Fixed(Vec<Vnic>);
impl MetadataConnector for Fixed {
    fn connect(&self, _base_url: &str) -> Box<dyn MetadataSource> {
        Box::new(StaticMetadata::new(self.0.clone(), None))
    }
}

/// A pod with at most one link; counts the questions.
#[derive(Default)]
struct FakePod {
    link: Option<(&'static str, &'static str)>,
    fail: bool,
    asked: std::cell::Cell<u32>,
}
impl PodLinks for FakePod {
    fn mac_of(&self, pod: PodIface<'_>) -> Result<Option<String>, plexus_netlink::Error> {
        self.asked.set(self.asked.get() + 1);
        if self.fail {
            return Err(plexus_netlink::Error::Decode("boom".into()));
        }
        Ok(self
            .link
            .filter(|(name, _)| *name == pod.ifname)
            .map(|(_, mac)| mac.to_string()))
    }
}

const POD: PodIface<'static> = PodIface {
    netns: "/run/netns/pod",
    ifname: "net1",
};

fn imds_two() -> Fixed {
    Fixed(
        serde_json::from_value(json!([
            {"vnicId": "p", "privateIp": "198.51.100.10", "macAddr": "02:00:17:00:00:01", "subnetCidrBlock": "198.51.100.0/24"},
            {"vnicId": "s", "privateIp": "198.51.100.20", "macAddr": "02:00:17:00:00:02", "subnetCidrBlock": "198.51.100.0/24"}
        ]))
        .unwrap(),
    )
}

#[test]
fn imds_fallback_marks_first_entry_primary_and_needs_a_mac() {
    let connector = imds_two();
    let pod = FakePod::default();
    let plugin = VnicIpam::new(&connector, &pod);
    let dev = |mac: Option<&str>| DeviceRef {
        mac: mac.map(str::to_string),
        ..DeviceRef::default()
    };
    let why = String::new;
    assert!(
        plugin
            .ask_imds("x", &dev(Some("02:00:17:00:00:01")), why())
            .unwrap()
            .is_primary
    );
    let s = plugin
        .ask_imds("x", &dev(Some("02:00:17:00:00:02")), why())
        .unwrap();
    assert_eq!((s.vnic_id.as_str(), s.is_primary), ("s", false));
    assert!(matches!(
        plugin.ask_imds("x", &dev(None), why()),
        Err(VnicError::NoMac { .. })
    ));
    assert!(matches!(
        plugin.ask_imds("x", &dev(Some("02:00:17:00:00:09")), why()),
        Err(VnicError::NoVnic { .. })
    ));
}

/// A state file with one entry keyed only by MAC (no ifname, no PCI),
/// and a request naming a device that is not on the (empty) node.
fn moved(dir: &Path, with_state: bool, selector: serde_json::Value) -> Request {
    let state_file = dir.join("state.json");
    if with_state {
        let mut v = vnic_state();
        v.pci = Some("0000:00:09.0".into());
        let other = v.clone();
        v.pci = None;
        let mut other = other;
        other.mac = "02:00:17:00:00:09".into();
        other.ip = "198.51.100.99".parse().unwrap();
        NodeState::new(vec![other, v], std::time::UNIX_EPOCH)
            .write_atomic(&state_file)
            .unwrap();
    }
    let mut r = req(selector).unwrap();
    r.ipam.state_file = state_file;
    r.ipam.sysfs_root = dir.join("empty-root");
    r
}

#[test]
fn moved_device_mac_comes_from_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let connector = Fixed(Vec::new());
    let pod = FakePod {
        link: Some(("net1", "02:00:17:00:00:02")),
        ..FakePod::default()
    };
    let plugin = VnicIpam::new(&connector, &pod);
    for sel in [
        json!({"device": "ens5"}),
        json!({"kernelpath": "/sys/devices/pci0000:00/0000:00:05.0"}),
        json!({"pciBusID": "0000:00:05.0"}),
    ] {
        let r = moved(dir.path(), true, sel.clone());
        let v = plugin.find_vnic(&r, POD).unwrap();
        assert_eq!(v.ip.to_string(), "198.51.100.20", "{sel}");
    }
    assert_eq!(pod.asked.get(), 3);
    // A PCI match in the state file answers without asking the pod.
    let r = moved(dir.path(), true, json!({"pciBusID": "0000:00:09.0"}));
    assert_eq!(
        plugin.find_vnic(&r, POD).unwrap().ip.to_string(),
        "198.51.100.99"
    );
    assert_eq!(pod.asked.get(), 3);
    // IMDS fallback by the pod's MAC.
    let connector = imds_two();
    let plugin = VnicIpam::new(&connector, &pod);
    let r = moved(dir.path(), false, json!({"device": "ens5"}));
    let _ = std::fs::remove_file(&r.ipam.state_file);
    assert_eq!(plugin.find_vnic(&r, POD).unwrap().vnic_id, "s");
}

#[test]
fn unknown_mac_says_what_was_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let connector = imds_two();
    let r = moved(dir.path(), false, json!({"device": "ens5"}));
    let err = |pod: &FakePod, at: PodIface<'_>| {
        VnicIpam::new(&connector, pod)
            .find_vnic(&r, at)
            .unwrap_err()
            .to_string()
    };
    let empty = FakePod::default();
    assert_eq!(
        err(&empty, POD),
        "device (name ens5, MAC -, PCI -) is not in the state file and its MAC is unknown \
         (not on the node, and no \"net1\" with a MAC in /run/netns/pod), so IMDS cannot be asked"
    );
    let no_ns = PodIface { netns: "", ..POD };
    assert!(err(&empty, no_ns).contains("CNI_NETNS is empty"));
    assert_eq!(empty.asked.get(), 1, "no netns, no question");
    let failing = FakePod {
        fail: true,
        ..FakePod::default()
    };
    assert!(err(&failing, POD).contains("reading \"net1\" in /run/netns/pod: netlink decode: boom"));
    let stranger = FakePod {
        link: Some(("net1", "02:00:17:00:00:77")),
        ..FakePod::default()
    };
    assert_eq!(
        err(&stranger, POD),
        "no VNIC for device (name ens5, MAC 02:00:17:00:00:77 (of net1 in the pod), PCI -)"
    );
}

//! The scenario fixture: node and pod namespaces with the veth "VF", the
//! configs, the ADD/DEL snapshots and the intended differences to compare by.

use std::path::{Path, PathBuf};

use plexus_netns::NetNs;
use plexus_testkit::net::{
    bin_dir, ip_json, reference_plugin, unique_name, CniCall, CniOutput, TestNs, Veth, VethEnd,
};
use serde_json::{json, Value};

pub const VF_MAC: &str = "02:00:c6:33:64:07";
pub const VF_MTU: u64 = 1400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Reference,
    Ours,
}

impl Impl {
    fn plugin_dir(self) -> PathBuf {
        match self {
            // reference_plugin panics with an install hint when missing.
            Impl::Reference => reference_plugin("host-device")
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            Impl::Ours => {
                // bin_path panics with a build hint when missing.
                plexus_testkit::net::bin_path("host-device");
                plexus_testkit::net::bin_path("static");
                bin_dir()
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Selector {
    Device,
    HwAddr,
}

/// The host-device + static config of a scenario.
pub fn config(version: &str, selector: Selector, vf: &str, dns: bool) -> Value {
    let mut conf = json!({
        "cniVersion": version,
        "name": "sriov-vnic-1",
        "type": "host-device",
        "ipam": {
            "type": "static",
            "addresses": [
                {"address": "198.51.100.21/24", "gateway": "198.51.100.1"},
                {"address": "203.0.113.21/24"}
            ],
            "routes": [
                {"dst": "203.0.113.128/25", "gw": "198.51.100.1"},
                {"dst": "198.51.100.128/25"}
            ]
        }
    });
    match selector {
        Selector::Device => conf["device"] = json!(vf),
        Selector::HwAddr => conf["hwaddr"] = json!(VF_MAC),
    }
    if dns {
        conf["ipam"]["dns"] = json!({
            "nameservers": ["198.51.100.53"],
            "domain": "example.test",
            "search": ["example.test"],
            "options": ["ndots:2"]
        });
    }
    conf
}

/// Fresh node + pod namespaces with the veth "VF" in the node.
pub struct Fixture {
    /// Our host-device's state files (`dataDir`; the reference ignores the key).
    data_dir: tempfile::TempDir,
    container_id: String,
    _veth: Veth,
    pub vf: String,
    node_fd: NetNs,
    pub pod: TestNs,
    pub node: TestNs,
}

impl Fixture {
    pub fn new() -> Self {
        let node = TestNs::new("pxdn");
        let pod = TestNs::new("pxdp");
        // Same name in both runs: results carry the device name in the alias
        // and the node-side state, so it must not differ per implementation.
        let vf = "ens5".to_owned();
        let mut veth = Veth::create(
            VethEnd::new(vf.clone())
                .in_ns(&node)
                .mac(VF_MAC)
                .mtu(VF_MTU as u32)
                .up(),
            VethEnd::new(unique_name("pxdw")).in_ns(&node).up(),
        );
        veth.may_visit(&pod);
        let node_fd = NetNs::open(node.path()).unwrap();
        Self {
            data_dir: tempfile::tempdir().unwrap(),
            container_id: unique_name("pxdiff"),
            _veth: veth,
            vf,
            node_fd,
            pod,
            node,
        }
    }

    /// Runs the plugin with the thread in the node namespace, as on a node.
    pub fn cni(&self, imp: Impl, command: &str, conf: &Value) -> CniOutput {
        let dir = imp.plugin_dir();
        let mut conf = conf.clone();
        conf["dataDir"] = json!(self.data_dir.path());
        let call = CniCall::new(dir.join("host-device"), command)
            .container_id(&self.container_id)
            .netns(self.pod.path())
            .ifname("net1")
            .cni_path(&dir)
            .stdin(conf.to_string());
        plexus_netns::run_in(&self.node_fd, || call.run()).unwrap()
    }
}

/// What a scenario observed, ready to compare across implementations.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub result: Value,
    pub pod: Value,
    pub node_after_del: Value,
    pub del_stdout: String,
}

/// The parts of a link that both implementations must agree on.
pub fn link_state(link: &Value) -> Value {
    json!({
        "ifname": link["ifname"],
        "address": link["address"],
        "mtu": link["mtu"],
        "up": link["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP")),
        "alias": link.get("ifalias").cloned().unwrap_or(Value::Null),
    })
}

pub fn addr_state(addrs: &Value) -> Value {
    json!(plexus_testkit::net::v4_addr_lines(addrs))
}

/// Global IPv6 addresses as `addr/len`, marked while still `tentative`
/// (DAD running): an address must be usable when ADD returns, whichever
/// way an implementation gets there (the reference waits for DAD, we add
/// with `nodad`).
fn addr6_state(addrs: &Value) -> Value {
    let mut out: Vec<String> = (addrs.as_array().into_iter().flatten())
        .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
        .map(|a| {
            let t = if a["tentative"] == true {
                " tentative"
            } else {
                ""
            };
            format!(
                "{}/{}{t}",
                a["local"].as_str().unwrap_or("?"),
                a["prefixlen"]
            )
        })
        .collect();
    out.sort();
    json!(out)
}

pub fn route_state(routes: &Value) -> Value {
    let mut out: Vec<String> = routes
        .as_array()
        .into_iter()
        .flatten()
        // IPv6 link-local routes come from the kernel's address generation.
        .filter(|r| !r["dst"].as_str().unwrap_or("").starts_with("fe80"))
        .map(plexus_testkit::net::route_line)
        .collect();
    out.sort();
    json!(out)
}

/// Replaces what legitimately differs per run (the sandbox path).
fn normalise(mut result: Value, pod: &Path) -> Value {
    if let Some(ifaces) = result["interfaces"].as_array_mut() {
        for i in ifaces {
            if i["sandbox"] == json!(pod.to_string_lossy()) {
                i["sandbox"] = json!("<pod netns>");
            }
        }
    }
    result
}

/// ADD, snapshot the pod, DEL, snapshot the node.
pub fn add_del(imp: Impl, conf: &Value) -> Observed {
    let fx = Fixture::new();
    let add = fx.cni(imp, "ADD", conf);
    let result = normalise(add.assert_ok().clone(), &fx.pod.path());
    let net1 = fx.pod.link("net1").expect("net1 in the pod after ADD");
    let pod = json!({
        "link": link_state(&net1),
        "addrs": addr_state(&fx.pod.addrs("net1")),
        "routes": route_state(&fx.pod.routes()),
        "addrs6": addr6_state(&fx.pod.addrs("net1")),
        "routes6": route_state(&ip_json(Some(&fx.pod), &["-6", "route", "show"])),
    });
    assert!(
        fx.node.link(&fx.vf).is_none(),
        "{imp:?}: VF still on the node"
    );
    let del = fx.cni(imp, "DEL", conf);
    del.assert_ok();
    let vf = fx.node.link(&fx.vf).expect("VF back on the node after DEL");
    let node_after_del = json!({
        "link": link_state(&vf),
        "addrs": addr_state(&fx.node.addrs(&fx.vf)),
        "addrs6": addr6_state(&fx.node.addrs(&fx.vf)),
        "pod_links": fx.pod.links().as_array().map_or(0, Vec::len),
    });
    Observed {
        result,
        pod,
        node_after_del,
        del_stdout: del.stdout,
    }
}

/// Intended difference: the reference prints `"dns": {}` when no DNS is
/// configured; we leave the empty object out. Returns the reference result
/// with that difference removed, asserting it was there.
pub fn without_empty_dns(reference: &Value, ours: &Value) -> Value {
    let mut reference = reference.clone();
    assert_eq!(reference["dns"], json!({}), "reference prints an empty dns");
    assert!(ours.get("dns").is_none(), "ours omits an empty dns: {ours}");
    if let Some(map) = reference.as_object_mut() {
        map.remove("dns");
    }
    reference
}

/// Intended difference: the reference host-device 1.1.1 drops the DNS its
/// IPAM returned (`/usr/lib/cni/static` alone does return it) and prints
/// `"dns": {}`; we pass the IPAM's DNS through. Returns the reference result
/// with the configured DNS put in, asserting both sides of the difference.
pub fn with_ipam_dns(reference: &Value, ours: &Value, conf: &Value) -> Value {
    let mut reference = reference.clone();
    assert_eq!(
        reference["dns"],
        json!({}),
        "reference drops the IPAM's dns"
    );
    assert_eq!(
        ours["dns"], conf["ipam"]["dns"],
        "ours keeps the IPAM's dns"
    );
    reference["dns"] = conf["ipam"]["dns"].clone();
    reference
}

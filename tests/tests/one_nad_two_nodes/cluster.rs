//! The two-node fixture: the VCN bridge, each node's netns, "VF", pod netns
//! and plugin runner, and the NADs and checks the tests share.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_testkit::net::{
    bin_dir, reference_plugin, unique_name, CniCall, CniOutput, TestNs, Veth, VethEnd,
};
use serde_json::{json, Value};

/// The device name the NAD names: the same on every node, as OCI names the
/// secondary VNIC's VF alike on identical shapes.
pub const VF: &str = "ens5";
/// The subnet's virtual router (`virtualRouterIp`).
pub const GATEWAY: &str = "198.51.100.1";
pub const SUBNET: &str = "198.51.100.0/24";
/// The IPv6 virtual router (`ipv6VirtualRouterIp`), link-local like OCI's.
pub const GATEWAY6: &str = "fe80::1";
const SUBNET6: &str = "2001:db8:0:1::/64";

/// One node's secondary VNIC as the cloud assigned it.
#[derive(Debug, Clone, Copy)]
pub struct VnicSpec {
    pub label: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
    /// The node's primary VNIC (never given to a pod), listed first in the
    /// state file as the agent writes it.
    primary_mac: &'static str,
    primary_ip: &'static str,
}

pub const NODE_A: VnicSpec = VnicSpec {
    label: "a",
    mac: "02:00:17:00:0a:05",
    ip: "198.51.100.11",
    primary_mac: "02:00:17:00:0a:03",
    primary_ip: "203.0.113.11",
};
pub const NODE_B: VnicSpec = VnicSpec {
    label: "b",
    mac: "02:00:17:00:0b:05",
    ip: "198.51.100.12",
    primary_mac: "02:00:17:00:0b:03",
    primary_ip: "203.0.113.12",
};

/// Which plugins a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Ours,
    /// Debian's containernetworking-plugins (`/usr/lib/cni`).
    Reference,
}

impl Impl {
    pub fn plugin_dir(self) -> PathBuf {
        match self {
            Impl::Ours => {
                // bin_path panics with a build hint when one is missing.
                for bin in ["host-device", "static", "vnic"] {
                    plexus_testkit::net::bin_path(bin);
                }
                bin_dir()
            }
            Impl::Reference => reference_plugin("host-device")
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }
}

/// A node: its namespace, its secondary NIC, a pod namespace, its private
/// files and the wrapper that runs plugins "on" it. Fields drop in order:
/// the NIC first (it may be in the pod), then the namespaces.
pub struct Node {
    pub spec: VnicSpec,
    _nic: Veth,
    pub pod: TestNs,
    pub ns: TestNs,
    /// Node-private directory, bind-mounted on the cluster's shared path.
    root: PathBuf,
    /// Wrapper scripts (`host-device`, `plexus`) running the plugin of
    /// that name in this node's context.
    runners: PathBuf,
    container_id: String,
}

/// The VCN and its nodes. Nodes drop before the VCN (their veth peers live
/// there), the temporary directory last.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub vcn: TestNs,
    /// The path every node's config names; each node's runner mounts its own
    /// directory here, in its private mount namespace only.
    pub shared: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn new(imp: Impl, specs: &[VnicSpec]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("node");
        std::fs::create_dir(&shared).unwrap();
        let vcn = TestNs::new("pxvcn");
        vcn.ip(&["link", "add", "vcn0", "type", "bridge"]);
        vcn.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", "vcn0"]);
        // The subnet's IPv6 router: link-local, as OCI's ipv6VirtualRouterIp.
        for a in [GATEWAY6, "2001:db8:0:1::1"] {
            vcn.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                "vcn0",
                "nodad",
            ]);
        }
        vcn.ip(&["link", "set", "vcn0", "up"]);
        let plugins = imp.plugin_dir();
        let nodes = specs
            .iter()
            .map(|spec| Node::new(*spec, &vcn, tmp.path(), &shared, &plugins))
            .collect();
        Self {
            nodes,
            vcn,
            shared,
            _tmp: tmp,
        }
    }

    /// Where host-device keeps its state, the same path on every node.
    pub fn data_dir(&self) -> PathBuf {
        self.shared.join("var/lib/cni/plexus-host-device")
    }

    /// Where the agent writes the node state, the same path on every node.
    pub fn state_file(&self) -> PathBuf {
        self.shared.join("run/plexus/state.json")
    }
}

impl Node {
    fn new(spec: VnicSpec, vcn: &TestNs, tmp: &Path, shared: &Path, plugins: &Path) -> Self {
        let ns = TestNs::new(&format!("pxn{}", spec.label));
        let pod = TestNs::new(&format!("pxp{}", spec.label));
        let wire = unique_name(&format!("pxw{}", spec.label));
        let mut nic = Veth::create(
            VethEnd::new(VF).in_ns(&ns).mac(spec.mac).up(),
            VethEnd::new(wire.clone()).in_ns(vcn).up(),
        );
        nic.may_visit(&pod);
        vcn.ip(&["link", "set", &wire, "master", "vcn0"]);

        let dir = tmp.join(spec.label);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let runners = dir.join("run");
        std::fs::create_dir_all(&runners).unwrap();
        for bin in ["host-device", "plexus"] {
            // The node's runtime calling the plugin: node netns + its own
            // /sys (`ip netns exec` remounts it in a private mount
            // namespace), node files at the shared path. Delegates inherit
            // all of it.
            let script = format!(
                "#!/bin/sh\nexec ip netns exec '{ns}' /bin/sh -c \
                 'mount --bind \"$1\" \"$2\" && exec \"$3\"' node '{root}' '{shared}' '{bin}'\n",
                ns = ns.name(),
                root = root.display(),
                shared = shared.display(),
                bin = plugins.join(bin).display(),
            );
            let runner = runners.join(bin);
            std::fs::write(&runner, script).unwrap();
            std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The node's /sys shows its own NIC (what vnic reads), the host's does not.
        let seen = ns.exec(&["cat", &format!("/sys/class/net/{VF}/address")]);
        assert_eq!(
            String::from_utf8_lossy(&seen.stdout).trim(),
            spec.mac,
            "node /sys"
        );
        Self {
            spec,
            _nic: nic,
            pod,
            ns,
            root,
            runners,
            container_id: unique_name(&format!("pxc{}", spec.label)),
        }
    }

    /// What the agent writes on this node: the primary VNIC, then the
    /// secondary one with the host name and MAC it found (a veth has no PCI
    /// function, so `pci` stays empty). The host name matters: host-device
    /// runs IPAM after moving the device into the pod, so vnic no longer sees
    /// it in the node's /sys and matches the entry by name; with a MAC-only
    /// entry it fails ("its MAC is unknown").
    pub fn write_state(&self, cluster_state_file: &Path, shared: &Path) {
        self.write_state_v6(cluster_state_file, shared, &[]);
    }

    /// [`Node::write_state`] with IPv6 addresses on the secondary VNIC.
    pub fn write_state_v6(&self, cluster_state_file: &Path, shared: &Path, v6: &[&str]) {
        let ipv6: Vec<plexus_imds::NicAddress> = (v6.iter())
            .map(|ip| plexus_imds::NicAddress {
                ip: ip.parse().unwrap(),
                subnet: SUBNET6.parse().unwrap(),
                gateway: Some(GATEWAY6.parse().unwrap()),
            })
            .collect();
        let entry = |ifname: &str, mac: &str, ip: &str, subnet: &str, primary: bool| VnicState {
            ifname: Some(ifname.to_owned()),
            pci: None,
            mac: mac.parse().unwrap(),
            vnic_id: format!("ocid1.vnic.oc1..node{}{}", self.spec.label, ifname),
            ip: ip.parse().unwrap(),
            prefix_len: 24,
            subnet_cidr: subnet.parse().unwrap(),
            gateway: Some(
                if primary { "203.0.113.1" } else { GATEWAY }
                    .parse()
                    .unwrap(),
            ),
            ipv6: if primary { vec![] } else { ipv6.clone() },
            vlan_tag: None,
            nic_index: None,
            mtu: Some(9000),
            is_primary: primary,
        };
        let state = NodeState::new(
            vec![
                entry(
                    "ens3",
                    self.spec.primary_mac,
                    self.spec.primary_ip,
                    "203.0.113.0/24",
                    true,
                ),
                entry(VF, self.spec.mac, self.spec.ip, SUBNET, false),
            ],
            SystemTime::now(),
        );
        state
            .write_atomic(&self.file(cluster_state_file, shared))
            .unwrap();
    }

    /// Where a file the config names under the shared path lives on disk
    /// for this node.
    pub fn file(&self, at_shared: &Path, shared: &Path) -> PathBuf {
        self.root.join(at_shared.strip_prefix(shared).unwrap())
    }

    /// The runtime calling plexus for this node's pod `default/<pod>`.
    pub fn plexus(&self, command: &str, conf: &Value, pod: &str, uid: &str) -> CniOutput {
        CniCall::new(self.runners.join("plexus"), command)
            .container_id(&self.container_id)
            .netns(self.pod.path())
            .ifname("eth0")
            .cni_path(Impl::Ours.plugin_dir())
            .args(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};\
                 K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={uid}",
                self.container_id
            ))
            .stdin(conf.to_string())
            .run()
    }

    pub fn cni(&self, imp: Impl, command: &str, conf: &Value) -> CniOutput {
        CniCall::new(self.runners.join("host-device"), command)
            .container_id(&self.container_id)
            .netns(self.pod.path())
            .ifname("net1")
            .cni_path(imp.plugin_dir())
            .stdin(conf.to_string())
            .run()
    }

    /// `ping` from this node's pod over net1; true when a reply came back.
    pub fn ping(&self, dst: &str) -> bool {
        let out = self.pod.exec(&[
            "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", "-I", "net1", dst,
        ]);
        if !out.status.success() {
            eprintln!(
                "ping {dst} from pod {}: {}{}",
                self.spec.label,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }
}

/// IPv4 addresses of `dev` in `ns`, as `a.b.c.d/len`, sorted.
pub fn v4_addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    plexus_testkit::net::v4_addr_lines(&ns.addrs(dev))
}

/// IPv4 routes of the main table, as `dst via gw dev d proto p scope s`.
pub fn v4_routes(ns: &TestNs) -> Vec<String> {
    let mut out: Vec<String> = plexus_testkit::net::ip_json(Some(ns), &["-4", "route", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .map(plexus_testkit::net::route_line)
        .collect();
    out.sort();
    out
}

/// After DEL: the NIC is back on its node under its name with its MAC, and
/// the pod has nothing but `lo`.
pub fn assert_returned(node: &Node) {
    let nic = node
        .ns
        .link(VF)
        .unwrap_or_else(|| panic!("{VF} not back on node {} after DEL", node.spec.label));
    assert_eq!(nic["address"], node.spec.mac, "node {}", node.spec.label);
    assert!(node.pod.link("net1").is_none(), "net1 left in the pod");
    assert_eq!(
        node.pod.links().as_array().map_or(0, Vec::len),
        1,
        "pod: lo only"
    );
}

/// The NAD every node uses: byte-identical, no per-node value in it.
pub fn one_nad(version: &str, cluster: &Cluster) -> Value {
    json!({
        "cniVersion": version,
        "name": "sriov-vnic",
        "type": "host-device",
        "device": VF,
        "dataDir": cluster.data_dir(),
        "ipam": {
            "type": "vnic",
            "stateFile": cluster.state_file(),
        }
    })
}

/// The tutorial's Task 3 NAD for one node, addresses moved to the test
/// range. Multus injects `name` (the NAD's) when the config has none; we pass
/// it as the meta plugin would. `dataDir` is the only key added: it keeps
/// our host-device's state on the node's private path instead of the host's
/// `/var/lib/cni` (the reference ignores it).
pub fn tutorial_nad(name: &str, address: &str, cluster: &Cluster) -> Value {
    json!({
        "cniVersion": "0.3.1",
        "name": name,
        "type": "host-device",
        "device": VF,
        "dataDir": cluster.data_dir(),
        "ipam": {
            "type": "static",
            "addresses": [{"address": address, "gateway": "0.0.0.0"}],
            "routes": [{"dst": SUBNET, "gw": "0.0.0.0"}]
        }
    })
}

/// Global IPv6 addresses of `dev` in `ns`, `addr/len` plus ` tentative`
/// while DAD still runs.
pub fn v6_addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    let all = ns.addrs(dev);
    let mut out: Vec<String> = (all.as_array().into_iter().flatten())
        .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
        .map(|a| {
            let t = if a["tentative"] == true {
                " tentative"
            } else {
                ""
            };
            format!("{}/{}{t}", a["local"].as_str().unwrap(), a["prefixlen"])
        })
        .collect();
    out.sort();
    out
}

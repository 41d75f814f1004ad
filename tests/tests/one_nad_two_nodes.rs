//! One NetworkAttachmentDefinition for every node: `host-device` + `vnic`
//! IPAM on two "nodes", each pod getting its own node's VNIC address, against
//! the tutorial's form (one NAD per node, `static` IPAM with
//! `"gateway": "0.0.0.0"`).
//!
//! Topology, all in namespaces this test creates:
//!
//! ```text
//!  pod A (net1)      pod B (net1)
//!     ^ ADD moves       ^ ADD moves
//!  node A: ens5      node B: ens5       <- veth ends, distinct MACs
//!        \              /
//!         VCN: bridge vcn0, 198.51.100.1 (the subnet's virtual router)
//! ```
//!
//! A node is more than a network namespace: the plugin reads `/sys` (vnic
//! resolves devices there) and node-local files (the agent's state file,
//! host-device's `dataDir`). So each plugin call goes through a small wrapper
//! standing in for the node's runtime: `ip netns exec` (the node netns, a
//! private mount namespace, `/sys` remounted so it shows the node's links,
//! not the host's), then a bind mount of the node's own directory on a path
//! shared by both nodes. The NAD config names that shared path, so both nodes
//! get byte-identical config while reading different files, as on a cluster.
//!
//! Tests: host-device + vnic called directly with one NAD (every CNI
//! version); the same NAD served by the (fake) API and resolved by plexus on
//! each node; the tutorial's per-node NADs through ours and the reference.
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_netns::NetNs;
use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::net::{
    bin_dir, ip_json, reference_plugin, require_root, unique_name, CniCall, CniOutput, TestNs,
    Veth, VethEnd,
};
use rstest::rstest;
use serde_json::{json, Value};

/// The device name the NAD names: the same on every node, as OCI names the
/// secondary VNIC's VF alike on identical shapes.
const VF: &str = "ens5";
/// The subnet's virtual router (`virtualRouterIp`).
const GATEWAY: &str = "198.51.100.1";
const SUBNET: &str = "198.51.100.0/24";
/// The IPv6 virtual router (`ipv6VirtualRouterIp`), link-local like OCI's.
const GATEWAY6: &str = "fe80::1";
const SUBNET6: &str = "2001:db8:0:1::/64";

/// One node's secondary VNIC as the cloud assigned it.
#[derive(Debug, Clone, Copy)]
struct VnicSpec {
    label: &'static str,
    mac: &'static str,
    ip: &'static str,
    /// The node's primary VNIC (never given to a pod), listed first in the
    /// state file as the agent writes it.
    primary_mac: &'static str,
    primary_ip: &'static str,
}

const NODE_A: VnicSpec = VnicSpec {
    label: "a",
    mac: "02:00:17:00:0a:05",
    ip: "198.51.100.11",
    primary_mac: "02:00:17:00:0a:03",
    primary_ip: "203.0.113.11",
};
const NODE_B: VnicSpec = VnicSpec {
    label: "b",
    mac: "02:00:17:00:0b:05",
    ip: "198.51.100.12",
    primary_mac: "02:00:17:00:0b:03",
    primary_ip: "203.0.113.12",
};

/// Which plugins a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Ours,
    /// Debian's containernetworking-plugins (`/usr/lib/cni`).
    Reference,
}

impl Impl {
    fn plugin_dir(self) -> PathBuf {
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
struct Node {
    spec: VnicSpec,
    _nic: Veth,
    pod: TestNs,
    ns: TestNs,
    /// Node-private directory, bind-mounted on the cluster's shared path.
    root: PathBuf,
    /// Wrapper scripts (`host-device`, `plexus`) running the plugin of
    /// that name in this node's context.
    runners: PathBuf,
    container_id: String,
}

/// The VCN and its nodes. Nodes drop before the VCN (their veth peers live
/// there), the temporary directory last.
struct Cluster {
    nodes: Vec<Node>,
    vcn: TestNs,
    /// The path every node's config names; each node's runner mounts its own
    /// directory here, in its private mount namespace only.
    shared: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new(imp: Impl, specs: &[VnicSpec]) -> Self {
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
    fn data_dir(&self) -> PathBuf {
        self.shared.join("var/lib/cni/plexus-host-device")
    }

    /// Where the agent writes the node state, the same path on every node.
    fn state_file(&self) -> PathBuf {
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
    fn write_state(&self, cluster_state_file: &Path, shared: &Path) {
        self.write_state_v6(cluster_state_file, shared, &[]);
    }

    /// [`Node::write_state`] with IPv6 addresses on the secondary VNIC.
    fn write_state_v6(&self, cluster_state_file: &Path, shared: &Path, v6: &[&str]) {
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
    fn file(&self, at_shared: &Path, shared: &Path) -> PathBuf {
        self.root.join(at_shared.strip_prefix(shared).unwrap())
    }

    /// The runtime calling plexus for this node's pod `default/<pod>`.
    fn plexus(&self, command: &str, conf: &Value, pod: &str, uid: &str) -> CniOutput {
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

    fn cni(&self, imp: Impl, command: &str, conf: &Value) -> CniOutput {
        CniCall::new(self.runners.join("host-device"), command)
            .container_id(&self.container_id)
            .netns(self.pod.path())
            .ifname("net1")
            .cni_path(imp.plugin_dir())
            .stdin(conf.to_string())
            .run()
    }

    /// `ping` from this node's pod over net1; true when a reply came back.
    fn ping(&self, dst: &str) -> bool {
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
fn v4_addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    plexus_testkit::net::v4_addr_lines(&ns.addrs(dev))
}

/// IPv4 routes of the main table, as `dst via gw dev d proto p scope s`.
fn v4_routes(ns: &TestNs) -> Vec<String> {
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
fn assert_returned(node: &Node) {
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
fn one_nad(version: &str, cluster: &Cluster) -> Value {
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

#[rstest]
fn one_nad_gives_each_pod_its_nodes_vnic_ip(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    require_root();
    let cluster = Cluster::new(Impl::Ours, &[NODE_A, NODE_B]);
    let conf = one_nad(version, &cluster);
    for node in &cluster.nodes {
        node.write_state(&cluster.state_file(), &cluster.shared);
    }

    let mut results = Vec::new();
    for node in &cluster.nodes {
        let add = node.cni(Impl::Ours, "ADD", &conf);
        let result = add.assert_ok().clone();
        let (label, ip) = (node.spec.label, node.spec.ip);
        assert_eq!(result["cniVersion"], version, "node {label}: {result}");
        assert_eq!(
            result["ips"][0]["address"],
            format!("{ip}/24"),
            "node {label}: {result}"
        );
        assert_eq!(
            result["ips"][0]["gateway"], GATEWAY,
            "node {label}: {result}"
        );
        let iface = result["interfaces"]
            .as_array()
            .and_then(|ifs| ifs.iter().find(|i| i["name"] == "net1"))
            .unwrap_or_else(|| panic!("node {label}: no net1 in {result}"));
        assert_eq!(iface["mac"], node.spec.mac);
        assert_eq!(iface["sandbox"], json!(node.pod.path()));

        // The pod has its node's NIC, with its node's VNIC address.
        let net1 = node.pod.link("net1").expect("net1 in the pod");
        assert_eq!(
            net1["address"], node.spec.mac,
            "node {label}: the node's own NIC"
        );
        assert_eq!(v4_addrs(&node.pod, "net1"), vec![format!("{ip}/24")]);
        assert_eq!(
            v4_routes(&node.pod),
            vec![format!("{SUBNET} via - dev net1 proto kernel scope link")]
        );
        assert!(
            node.ns.link(VF).is_none(),
            "node {label}: {VF} still on the node"
        );
        results.push(result);
    }

    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert!(a.ping(b.spec.ip), "pod A -> pod B over net1");
    assert!(b.ping(a.spec.ip), "pod B -> pod A over net1");
    for node in &cluster.nodes {
        assert!(
            node.ping(GATEWAY),
            "pod {} -> virtual router",
            node.spec.label
        );
    }

    if version != "0.3.1" {
        for (node, result) in cluster.nodes.iter().zip(&results) {
            let mut check = conf.clone();
            check["prevResult"] = result.clone();
            node.cni(Impl::Ours, "CHECK", &check).assert_ok();
        }
    }

    for node in &cluster.nodes {
        let del = node.cni(Impl::Ours, "DEL", &conf);
        del.assert_ok();
        assert_eq!(del.stdout, "");
        assert_returned(node);
    }
}

/// The whole path on each node: the runtime calls plexus, plexus reads the
/// pod's networks annotation and the one NAD from the API, runs
/// host-device + vnic, and reports the node's VNIC address in the pod's
/// network-status. Each node reaches "the API" on its own loopback, so each
/// gets a fake API server of its own, seeded with the same NAD object. The
/// plexus config is identical on both nodes too (kubeconfig, cache and
/// state paths are the shared ones).
#[test]
fn one_nad_from_the_api_through_plexus() {
    require_root();
    let cluster = Cluster::new(Impl::Ours, &[NODE_A, NODE_B]);
    let nad = one_nad("1.0.0", &cluster).to_string();
    let kubeconfig = cluster
        .shared
        .join("etc/cni/net.d/plexus.d/plexus.kubeconfig");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "plexus-cni-network",
        "type": "plexus",
        "kubeconfig": kubeconfig,
        "cniDir": cluster.shared.join("var/lib/cni/plexus"),
        "confDir": cluster.shared.join("etc/cni/net.d"),
        "binDir": Impl::Ours.plugin_dir(),
        "apiTimeoutSeconds": 2,
        // The shared NAD names node paths; the admin allows exactly these.
        "nadNodeKeys": ["dataDir", "stateFile"],
        // The cluster network (flannel on OKE); static only computes a result.
        "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "static",
            "ipam": {"type": "static", "addresses": [{"address": "203.0.113.2/24"}]}}]
    });
    let mut apis = Vec::new();
    // Node A's VNIC is dual-stack, node B's IPv4-only: the one NAD serves both.
    let v6: [&[&str]; 2] = [&["2001:db8:0:1::a"], &[]];
    for (i, node) in cluster.nodes.iter().enumerate() {
        node.write_state_v6(&cluster.state_file(), &cluster.shared, v6[i]);
        let node_ns = NetNs::open(node.ns.path()).unwrap();
        let api = plexus_netns::run_in(&node_ns, FakeApiServer::start)
            .unwrap()
            .unwrap();
        api.put_nad("default", "sriov-vnic", &nad).unwrap();
        let name = format!("testpod{}", i + 1);
        let pod = api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default",
                    "annotations": {"k8s.v1.cni.cncf.io/networks": "sriov-vnic"}},
                "spec": {"nodeName": format!("node-{}", node.spec.label)}}))
            .unwrap();
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
        let file = node.file(&kubeconfig, &cluster.shared);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let kc = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "oke", "cluster": {"server": api.url()}}],
            "users": [{"name": "plexus", "user": {}}],
            "contexts": [{"name": "oke", "context": {"cluster": "oke", "user": "plexus"}}],
            "current-context": "oke"});
        std::fs::write(&file, kc.to_string()).unwrap();
        apis.push((api, name, uid));
    }

    for ((node, (api, name, uid)), v6) in cluster.nodes.iter().zip(&apis).zip(v6) {
        let label = node.spec.label;
        node.plexus("ADD", &conf, name, uid).assert_ok();
        let ip = node.spec.ip;
        assert_eq!(
            v4_addrs(&node.pod, "net1"),
            vec![format!("{ip}/24")],
            "node {label}"
        );
        let net1 = node.pod.link("net1").expect("net1 in the pod");
        assert_eq!(net1["address"], node.spec.mac, "node {label}");
        let status = api.network_status("default", name).unwrap();
        let entry = status
            .as_array()
            .and_then(|s| s.iter().find(|e| e["interface"] == "net1"))
            .unwrap_or_else(|| panic!("node {label}: no net1 in {status}"));
        assert_eq!(entry["name"], "default/sriov-vnic", "node {label}");
        // network-status lists both families of a dual-stack VNIC.
        let mut ips = vec![ip];
        ips.extend(v6);
        assert_eq!(entry["ips"], json!(ips), "node {label}: {entry}");
        assert_eq!(entry["mac"], node.spec.mac, "node {label}: {entry}");
    }
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert!(a.ping(b.spec.ip), "pod A -> pod B over net1");
    assert!(b.ping(a.spec.ip), "pod B -> pod A over net1");
    assert!(a.ping(GATEWAY6), "dual-stack pod A -> IPv6 router");

    for (node, (api, name, uid)) in cluster.nodes.iter().zip(&apis) {
        api.clear_requests();
        node.plexus("DEL", &conf, name, uid).assert_ok();
        assert_returned(node);
        assert!(api.requests().is_empty(), "DEL replays the node's cache");
        let cache = node.file(&cluster.shared.join("var/lib/cni/plexus"), &cluster.shared);
        let left = std::fs::read_dir(&cache).map_or(0, |d| d.count());
        assert_eq!(left, 0, "node {}: cache entries left", node.spec.label);
    }
}

/// The tutorial's Task 3 NAD for one node, addresses moved to the test
/// range. Multus injects `name` (the NAD's) when the config has none; we pass
/// it as the meta plugin would. `dataDir` is the only key added: it keeps
/// our host-device's state on the node's private path instead of the host's
/// `/var/lib/cni` (the reference ignores it).
fn tutorial_nad(name: &str, address: &str, cluster: &Cluster) -> Value {
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

/// The tutorial's per-node NADs (`"gateway": "0.0.0.0"`, route
/// `{"dst": <subnet>, "gw": "0.0.0.0"}`) through our host-device + static
/// and through the reference plugins: same result, same pod routes, ping.
#[test]
fn tutorial_per_node_nads_work_like_the_reference() {
    require_root();
    let mut seen = Vec::new();
    for imp in [Impl::Reference, Impl::Ours] {
        let cluster = Cluster::new(imp, &[NODE_A, NODE_B]);
        let confs: Vec<Value> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                tutorial_nad(
                    &format!("sriov-vnic-{}", i + 1),
                    &format!("{}/24", n.spec.ip),
                    &cluster,
                )
            })
            .collect();
        let mut observed = Vec::new();
        for (node, conf) in cluster.nodes.iter().zip(&confs) {
            let result = node.cni(imp, "ADD", conf).assert_ok().clone();
            let label = node.spec.label;
            assert_eq!(
                result["ips"][0]["address"],
                format!("{}/24", node.spec.ip),
                "{imp:?} {label}"
            );
            assert_eq!(
                result["ips"][0]["gateway"], "0.0.0.0",
                "{imp:?} {label}: {result}"
            );
            assert_eq!(
                result["routes"],
                json!([{"dst": SUBNET, "gw": "0.0.0.0"}]),
                "{imp:?} {label}: {result}"
            );
            assert_eq!(
                v4_addrs(&node.pod, "net1"),
                vec![format!("{}/24", node.spec.ip)]
            );
            // Pod routes, the same in both: the kernel's connected route,
            // and beside it the configured route, on-link (its 0.0.0.0
            // gateway means no next hop) with the universe scope and boot
            // protocol netlink gives a route by default.
            let expected = vec![
                format!("{SUBNET} via - dev net1 proto boot scope universe"),
                format!("{SUBNET} via - dev net1 proto kernel scope link"),
            ];
            assert_eq!(v4_routes(&node.pod), expected, "{imp:?} {label}");
            let got = plexus_testkit::net::ip_json(
                Some(&node.pod),
                &["-4", "route", "get", GATEWAY, "oif", "net1"],
            );
            assert_eq!(
                got[0]["gateway"],
                Value::Null,
                "{imp:?} {label}: on-link {got}"
            );
            assert_eq!(got[0]["prefsrc"], node.spec.ip, "{imp:?} {label}: {got}");
            observed.push(result.clone());
        }
        let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
        assert!(a.ping(b.spec.ip), "{imp:?}: pod A -> pod B");
        assert!(b.ping(a.spec.ip), "{imp:?}: pod B -> pod A");
        for (node, conf) in cluster.nodes.iter().zip(&confs) {
            node.cni(imp, "DEL", conf).assert_ok();
            assert_returned(node);
        }
        seen.push(observed);
    }
    // Same results; `interfaces[].sandbox` names each run's own pod, and
    // the reference prints an empty `"dns": {}` that ours leaves out (the
    // known difference of tests/tests/differential.rs).
    let strip = |runs: &Vec<Value>| -> Vec<Value> {
        runs.iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(ifs) = r["interfaces"].as_array_mut() {
                    for i in ifs {
                        i["sandbox"] = json!("<pod>");
                    }
                }
                if let Some(map) = r.as_object_mut() {
                    if map.get("dns") == Some(&json!({})) {
                        map.remove("dns");
                    }
                }
                r
            })
            .collect()
    };
    assert!(
        seen[1].iter().all(|r| r.get("dns").is_none()),
        "ours: no empty dns"
    );
    assert_eq!(
        strip(&seen[1]),
        strip(&seen[0]),
        "ours vs reference: ADD results"
    );
}

/// Global IPv6 addresses of `dev` in `ns`, `addr/len` plus ` tentative`
/// while DAD still runs.
fn v6_addrs(ns: &TestNs, dev: &str) -> Vec<String> {
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

/// The same NAD on dual-stack VNICs: each pod gets its VNIC's IPv4 and
/// IPv6 addresses (the gateway link-local, as on OCI), usable when ADD
/// returns; pods reach each other and the router over both families, the
/// VCN reaches the pods; `families: ["ipv6"]` makes it IPv6-only.
#[rstest]
fn one_nad_dual_stack_and_ipv6_only(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str) {
    require_root();
    let cluster = Cluster::new(Impl::Ours, &[NODE_A, NODE_B]);
    let v6 = ["2001:db8:0:1::a", "2001:db8:0:1::b"];
    for (node, ip) in cluster.nodes.iter().zip(v6) {
        node.write_state_v6(&cluster.state_file(), &cluster.shared, &[ip]);
    }
    let mut conf = one_nad(version, &cluster);
    conf["ipam"]["defaultRoute"] = json!(true);
    for (node, ip6) in cluster.nodes.iter().zip(v6) {
        let result = node.cni(Impl::Ours, "ADD", &conf).assert_ok().clone();
        let label = node.spec.label;
        assert_eq!(result["ips"][0]["address"], format!("{}/24", node.spec.ip));
        assert_eq!(
            result["ips"][1]["address"],
            format!("{ip6}/64"),
            "{label}: {result}"
        );
        assert_eq!(result["ips"][1]["gateway"], GATEWAY6, "{label}: {result}");
        if version.starts_with("0.") {
            assert_eq!(result["ips"][1]["version"], "6");
        }
        // Not tentative: usable the moment ADD returns.
        assert_eq!(v6_addrs(&node.pod, "net1"), [format!("{ip6}/64")]);
        let defaults = ip_json(Some(&node.pod), &["-6", "route", "show", "default"]);
        assert_eq!(defaults[0]["gateway"], GATEWAY6, "{label}: {defaults}");
        assert_eq!(defaults[0]["dev"], "net1", "{label}: {defaults}");
    }
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert!(a.ping(v6[1]), "pod A -> pod B over IPv6");
    assert!(b.ping(v6[0]), "pod B -> pod A over IPv6");
    assert!(a.ping(b.spec.ip), "pod A -> pod B over IPv4");
    for node in &cluster.nodes {
        assert!(node.ping(GATEWAY6), "pod -> link-local router");
        assert!(
            node.ping("2001:db8:0:1::1"),
            "pod -> router's global address"
        );
    }
    for ip6 in v6 {
        let out = cluster
            .vcn
            .exec(&["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", ip6]);
        assert!(out.status.success(), "VCN -> pod {ip6}");
    }
    for node in &cluster.nodes {
        node.cni(Impl::Ours, "DEL", &conf).assert_ok();
        assert_returned(node);
    }

    // IPv6-only: the same VNICs, `families: ["ipv6"]`.
    conf["ipam"]["families"] = json!(["ipv6"]);
    let result = a.cni(Impl::Ours, "ADD", &conf).assert_ok().clone();
    assert_eq!(result["ips"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(result["ips"][0]["address"], format!("{}/64", v6[0]));
    assert!(v4_addrs(&a.pod, "net1").is_empty());
    assert!(a.ping(GATEWAY6));
    a.cni(Impl::Ours, "DEL", &conf).assert_ok();
    assert_returned(a);
}

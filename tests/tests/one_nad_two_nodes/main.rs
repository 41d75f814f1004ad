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

mod cluster;

use plexus_netns::NetNs;
use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::net::{ip_json, require_root};
use rstest::rstest;
use serde_json::{json, Value};

use cluster::{
    assert_returned, one_nad, tutorial_nad, v4_addrs, v4_routes, v6_addrs, Cluster, Impl, GATEWAY,
    GATEWAY6, NODE_A, NODE_B, SUBNET, VF,
};

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
    // known difference of tests/tests/differential/).
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

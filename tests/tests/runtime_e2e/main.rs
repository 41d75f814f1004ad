//! End-to-end tests through a real container runtime: Debian's containerd
//! (CRI) + runc create pod sandboxes and call the CNI plugins in the node's
//! CNI bin dir, the way kubelet -> containerd -> CNI does on a node. See
//! `plexus_e2e::runtime` for the fixture and `docs/runtime-e2e.md`.
//!
//! Root only (they panic, never skip, otherwise). The nextest config runs
//! tests whose name contains `runtime` one at a time.

// Scenarios read top to bottom, one runtime call after another.
#![allow(clippy::too_many_lines)]

mod plexus_node;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use plexus_e2e::runtime::{ip_json_at, ipv4_addrs, link_at, PodSpec, RuntimeNode};
use plexus_testkit::net::{self, ip_json, Veth, VethEnd};
use serde_json::{json, Value};

use plexus_node::{plugin_log, pod_netns_entries, PlexusNode, NETWORK_STATUS, TOKEN, VF_MAC};

/// Baseline: the runtime harness itself, with only Debian's reference
/// plugins. A sandbox gets `eth0` on the cluster bridge with an address in
/// 198.51.100.0/24; stop removes its netns and veth, remove forgets it.
#[test]
fn runtime_baseline_bridge_sandbox_lifecycle() -> Result<()> {
    let mut node = RuntimeNode::new()?;
    for plugin in ["bridge", "host-local"] {
        node.link_reference_plugin(plugin)?;
    }
    node.write_conf("10-cluster.conflist", &node.cluster_conflist("plxbr0"))?;
    node.start()?;

    let pod = PodSpec::new("baseline")?;
    let sandbox = node.run_pod(&pod)?;
    ensure!(
        sandbox.ip.starts_with("198.51.100."),
        "CRI pod IP {:?} not from the cluster range",
        sandbox.ip
    );
    let eth0 = link_at(&sandbox.netns, "eth0")?.context("no eth0 in the sandbox")?;
    let addrs = ipv4_addrs(&eth0);
    ensure!(
        addrs == [format!("{}/24", sandbox.ip)],
        "eth0 addresses {addrs:?}, CRI reported {}",
        sandbox.ip
    );
    // The host end of the pod's veth is on the bridge, in the node netns.
    let ports = ip_json(Some(node.netns()), &["link", "show", "master", "plxbr0"]);
    ensure!(
        ports.as_array().map_or(0, Vec::len) == 1,
        "expected one bridge port, got {ports}"
    );

    node.cri().stop(&sandbox.id)?;
    ensure!(
        !sandbox.netns.exists(),
        "netns {} still there after StopPodSandbox",
        sandbox.netns.display()
    );
    let ports = ip_json(Some(node.netns()), &["link", "show", "master", "plxbr0"]);
    ensure!(
        ports.as_array().map_or(0, Vec::len) == 0,
        "bridge ports left after stop: {ports}"
    );
    node.cri().remove(&sandbox.id)?;
    node.assert_no_sandboxes()?;
    node.shutdown()
}

/// The issue's acceptance test: a pod annotated with a NAD gets the cluster
/// network on `eth0` (bridge, via `clusterNetwork`) and the "VF" as `net1`
/// with its static address, the API gets the network-status, and removing
/// the pod returns the VF to the node under its original name.
#[test]
fn runtime_plexus_pod_gets_vf_as_net1_and_returns_it() -> Result<()> {
    let mut t = PlexusNode::new()?;
    let vf = t.vf(VF_MAC);
    t.put_nad("sriov-vnic-1", vf.a(), "203.0.113.10/24")?;
    let pod = t.pod("testpod1", "sriov-vnic-1")?;
    t.node.start()?;

    let sandbox = t
        .node
        .run_pod(&pod)
        .map_err(|e| anyhow!("RunPodSandbox: {e}\nplexus log:\n{}", plugin_log(&t.node)))?;

    // eth0: the cluster network from the bridge conflist.
    ensure!(
        sandbox.ip.starts_with("198.51.100."),
        "CRI pod IP {:?} is not the cluster network's",
        sandbox.ip
    );
    let eth0 = link_at(&sandbox.netns, "eth0")?.context("no eth0 in the pod")?;
    ensure!(
        ipv4_addrs(&eth0) == [format!("{}/24", sandbox.ip)],
        "eth0: {eth0}"
    );
    // net1: the VF itself (same MAC), with the NAD's static address.
    let net1 = link_at(&sandbox.netns, "net1")?.context("no net1 in the pod")?;
    ensure!(net1["address"] == VF_MAC, "net1 is not the VF: {net1}");
    ensure!(ipv4_addrs(&net1) == ["203.0.113.10/24"], "net1: {net1}");
    ensure!(
        t.on_node(vf.a()).is_none(),
        "the VF is still in the node netns"
    );

    // The network-status PATCH, as Multus sends it: pods/status merge patch
    // with the UID precondition, eth0 first and default, then net1.
    let status_path = format!("/api/v1/namespaces/default/pods/{}/status", pod.name);
    let patches: Vec<_> = t
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path == status_path)
        .collect();
    ensure!(patches.len() == 1, "network-status PATCHes: {patches:?}");
    ensure!(
        patches[0].authorization.as_deref() == Some(&*format!("Bearer {TOKEN}")),
        "PATCH without the node's token: {:?}",
        patches[0]
    );
    let body: Value = serde_json::from_str(&patches[0].body)?;
    ensure!(
        body["metadata"]["uid"] == pod.uid.as_str(),
        "no UID precondition: {body}"
    );
    let status_text = body["metadata"]["annotations"][NETWORK_STATUS]
        .as_str()
        .context("PATCH without network-status")?;
    let status: Value = serde_json::from_str(status_text)?;
    let entries = status.as_array().context("network-status is not a list")?;
    ensure!(entries.len() == 2, "network-status: {status}");
    let (cluster, attached) = (&entries[0], &entries[1]);
    ensure!(
        cluster["name"] == "cluster"
            && cluster["interface"] == "eth0"
            && cluster["default"] == true
            && cluster["ips"] == json!([sandbox.ip])
            && cluster["mac"] == eth0["address"],
        "eth0 entry: {cluster}"
    );
    ensure!(
        attached["name"] == "default/sriov-vnic-1"
            && attached["interface"] == "net1"
            && attached["ips"] == json!(["203.0.113.10"])
            && attached["mac"] == VF_MAC
            && attached.get("default").is_none_or(|d| d == false),
        "net1 entry: {attached}"
    );
    // The stored pod carries it too.
    let stored = t
        .api
        .get_object(&format!("/api/v1/namespaces/default/pods/{}", pod.name))
        .context("pod vanished from the API")?;
    ensure!(
        stored["metadata"]["annotations"][NETWORK_STATUS] == status_text,
        "stored pod: {stored}"
    );

    // `kubectl describe pod` lists the attachments as events.
    let events = t.api.objects_under("/api/v1/namespaces/default/events/");
    let added: Vec<&str> = events
        .iter()
        .filter(|e| {
            e["reason"] == "AddedInterface" && e["involvedObject"]["uid"] == pod.uid.as_str()
        })
        .filter_map(|e| e["message"].as_str())
        .collect();
    ensure!(
        added.contains(&"Add net1 [203.0.113.10/24] from default/sriov-vnic-1"),
        "AddedInterface events: {added:?}"
    );

    // StopPodSandbox: DEL with the netns; the VF comes back under its name.
    t.node.cri().stop(&sandbox.id)?;
    ensure!(!sandbox.netns.exists(), "pod netns left after stop");
    let back = t
        .on_node(vf.a())
        .context("VF not returned to the node netns")?;
    ensure!(back["address"] == VF_MAC, "returned link: {back}");
    let kept = net::addrs(Some(t.node.netns()), vf.a());
    ensure!(
        kept.as_array()
            .is_none_or(|a| a.iter().all(|i| i["family"] != "inet")),
        "VF kept the pod's address: {kept}"
    );
    // RemovePodSandbox: the second DEL, with an empty CNI_NETNS.
    t.node.cri().remove(&sandbox.id)?;
    t.node.assert_no_sandboxes()?;
    ensure!(t.on_node(vf.a()).is_some(), "VF lost by the second DEL");
    drop(vf);
    t.shutdown()
}

/// Most pods name no extra network: through Plexus they get exactly the
/// cluster network, and the network-status lists only `eth0`.
#[test]
fn runtime_plexus_pod_without_networks_gets_cluster_network_only() -> Result<()> {
    let mut t = PlexusNode::new()?;
    let pod = PodSpec::new("plainpod")?;
    t.api
        .put_pod(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "spec": {"containers": [{"name": "app", "image": "localhost/app"}]},
        }))
        .map_err(|e| anyhow!("put_pod: {e}"))?;
    t.node.start()?;
    let sandbox = t
        .node
        .run_pod(&pod)
        .map_err(|e| anyhow!("RunPodSandbox: {e}\nplexus log:\n{}", plugin_log(&t.node)))?;
    let links = ip_json_at(&sandbox.netns, &["link", "show"])?;
    let mut names: Vec<&str> = links
        .as_array()
        .map(|ls| ls.iter().filter_map(|l| l["ifname"].as_str()).collect())
        .unwrap_or_default();
    names.sort_unstable();
    ensure!(names == ["eth0", "lo"], "pod links: {names:?}");
    let stored = t
        .api
        .get_object(&format!("/api/v1/namespaces/default/pods/{}", pod.name))
        .context("pod vanished from the API")?;
    let status: Value = serde_json::from_str(
        stored["metadata"]["annotations"][NETWORK_STATUS]
            .as_str()
            .context("no network-status on the pod")?,
    )?;
    ensure!(
        status.as_array().map_or(0, Vec::len) == 1
            && status[0]["interface"] == "eth0"
            && status[0]["default"] == true
            && status[0]["ips"] == json!([sandbox.ip]),
        "network-status: {status}"
    );
    t.node.cri().stop(&sandbox.id)?;
    t.node.cri().remove(&sandbox.id)?;
    t.node.assert_no_sandboxes()?;
    t.shutdown()
}

/// A NAD naming a device the node does not have: RunPodSandbox fails with
/// the plugin's error text, the real VF is untouched, and no sandbox stays.
#[test]
fn runtime_plexus_missing_device_fails_run_pod_sandbox() -> Result<()> {
    let mut t = PlexusNode::new()?;
    let vf = t.vf(VF_MAC);
    t.put_nad("sriov-missing", "nosuchvf0", "203.0.113.11/24")?;
    let pod = t.pod("testpod2", "sriov-missing")?;
    t.node.start()?;

    let netns_before = pod_netns_entries()?;
    let err = match t.node.run_pod(&pod) {
        Ok(sb) => bail!("RunPodSandbox succeeded without the device: {sb:?}"),
        Err(e) => e.to_string(),
    };
    ensure!(
        err.contains("failed to setup network for sandbox")
            && err.contains(r#"plugin type="plexus" failed (add)"#)
            && err.contains("nosuchvf0"),
        "RunPodSandbox error lacks the CNI error text: {err}"
    );
    let vf = t.on_node(vf.a()).context("the VF left the node")?;
    ensure!(vf["address"] == VF_MAC, "VF changed: {vf}");
    t.node.assert_no_sandboxes()?;
    // containerd created the pod netns before calling CNI; it must be gone.
    let netns_after = pod_netns_entries()?;
    ensure!(
        netns_after.is_subset(&netns_before),
        "pod netns left: {:?}",
        netns_after.difference(&netns_before).collect::<Vec<_>>()
    );
    ensure!(
        t.api.requests().iter().all(|r| r.method != "PATCH"),
        "a failed ADD must not publish a network-status"
    );
    drop(vf);
    t.shutdown()
}

/// The VF disappears while the pod runs (the VNIC is detached from the
/// instance; here the veth pair is deleted from its node end). The CNI spec
/// wants DEL to succeed when resources are already gone, and kubelet keeps
/// the pod Terminating until it does: StopPodSandbox and RemovePodSandbox
/// must succeed, promptly.
#[test]
fn runtime_plexus_stop_succeeds_after_vf_vanished() -> Result<()> {
    let mut t = PlexusNode::new()?;
    let vf = t.vf(VF_MAC);
    t.put_nad("sriov-vnic-1", vf.a(), "203.0.113.10/24")?;
    let pod = t.pod("testpod1", "sriov-vnic-1")?;
    t.node.start()?;
    let sandbox = t
        .node
        .run_pod(&pod)
        .map_err(|e| anyhow!("RunPodSandbox: {e}\nplexus log:\n{}", plugin_log(&t.node)))?;
    ensure!(link_at(&sandbox.netns, "net1")?.is_some(), "no net1");

    // Deleting one end of a veth pair deletes both: net1 vanishes.
    t.node.netns().ip(&["link", "del", vf.b()]);
    ensure!(link_at(&sandbox.netns, "net1")?.is_none(), "net1 survived");

    let started = Instant::now();
    t.node.cri().stop(&sandbox.id).map_err(|e| {
        anyhow!(
            "StopPodSandbox after {:?}: {e}\nplexus log:\n{}",
            started.elapsed(),
            plugin_log(&t.node)
        )
    })?;
    let took = started.elapsed();
    ensure!(
        took < Duration::from_secs(10),
        "StopPodSandbox took {took:?}"
    );
    ensure!(!sandbox.netns.exists(), "pod netns left after stop");
    t.node.cri().remove(&sandbox.id)?;
    t.node.assert_no_sandboxes()?;
    drop(vf);
    t.shutdown()
}

/// The tutorial's closing check, through two runtimes: two nodes, one NAD
/// each (the IP is per node), the two "VFs" wired to each other (one veth
/// pair, an end in each node netns, standing in for the VCN subnet). Each
/// pod gets its node's VF as `net1`, and the pods ping each other over
/// `net1` both ways. (One fake API per node: each must be reachable from its
/// node netns; each holds that node's NAD and pod.)
#[test]
fn runtime_plexus_two_nodes_pods_ping_over_net1() -> Result<()> {
    let mut a = PlexusNode::new()?;
    let mut b = PlexusNode::new()?;
    const MAC_A: &str = "02:00:cb:00:71:1a";
    const MAC_B: &str = "02:00:cb:00:71:1b";
    let vcn = Veth::create(
        VethEnd::new(net::unique_name("vfa"))
            .in_ns(a.node.netns())
            .mac(MAC_A),
        VethEnd::new(net::unique_name("vfb"))
            .in_ns(b.node.netns())
            .mac(MAC_B),
    );
    a.put_nad("sriov-vnic-1", vcn.a(), "203.0.113.93/24")?;
    b.put_nad("sriov-vnic-2", vcn.b(), "203.0.113.238/24")?;
    let pod_a = a.pod("testpod1", "sriov-vnic-1")?;
    let pod_b = b.pod("testpod2", "sriov-vnic-2")?;
    a.node.start()?;
    b.node.start()?;
    let run = |t: &PlexusNode, pod: &PodSpec| {
        t.node.run_pod(pod).map_err(|e| {
            anyhow!(
                "RunPodSandbox {}: {e}\nplexus log:\n{}",
                pod.name,
                plugin_log(&t.node)
            )
        })
    };
    let sb_a = run(&a, &pod_a)?;
    let sb_b = run(&b, &pod_b)?;
    for (sb, mac, addr) in [
        (&sb_a, MAC_A, "203.0.113.93/24"),
        (&sb_b, MAC_B, "203.0.113.238/24"),
    ] {
        let net1 = link_at(&sb.netns, "net1")?.context("no net1")?;
        ensure!(
            net1["address"] == mac && ipv4_addrs(&net1) == [addr],
            "net1: {net1}"
        );
    }
    for (from, to) in [(&sb_a, "203.0.113.238"), (&sb_b, "203.0.113.93")] {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", from.netns.display()))
            .args(["ping", "-c", "1", "-W", "2", "-I", "net1", to])
            .output()?;
        ensure!(
            out.status.success(),
            "ping {to} over net1 failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (t, sb) in [(&a, &sb_a), (&b, &sb_b)] {
        t.node.cri().stop(&sb.id)?;
        t.node.cri().remove(&sb.id)?;
        t.node.assert_no_sandboxes()?;
    }
    ensure!(
        a.on_node(vcn.a()).is_some() && b.on_node(vcn.b()).is_some(),
        "the VFs did not return to their nodes"
    );
    drop(vcn);
    b.shutdown()?;
    a.shutdown()
}

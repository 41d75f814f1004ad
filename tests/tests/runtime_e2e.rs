//! End-to-end tests through a real container runtime: Debian's containerd
//! (CRI) + runc create pod sandboxes and call the CNI plugins in the node's
//! CNI bin dir, the way kubelet -> containerd -> CNI does on a node. See
//! `plexus_e2e::runtime` for the fixture and `docs/runtime-e2e.md`.
//!
//! Root only (they panic, never skip, otherwise). The nextest config runs
//! tests whose name contains `runtime` one at a time.

use anyhow::{ensure, Context, Result};
use plexus_e2e::runtime::{ipv4_addrs, link_at, PodSpec, RuntimeNode};
use plexus_testkit::net::ip_json;

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

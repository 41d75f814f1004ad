//! The tutorial and plexus examples: NADs, pods and the NADs they name.

use std::collections::BTreeSet;

use crate::support::{docs, nad_config, of_kind, pod_networks};

#[test]
fn tutorial_examples_are_per_node_static() {
    let all = docs("examples/tutorial");
    let nads = of_kind(&all, "NetworkAttachmentDefinition");
    let names: BTreeSet<&str> = nads
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["sriov-vnic-1", "sriov-vnic-2"]));
    let mut ips = Vec::new();
    for n in &nads {
        let c = nad_config(n);
        assert_eq!(c["cniVersion"], "0.3.1");
        assert_eq!(c["type"], "host-device");
        assert_eq!(c["device"], "ens5");
        assert_eq!(c["ipam"]["type"], "static");
        assert_eq!(c["ipam"]["routes"][0]["dst"], "10.0.10.0/24");
        ips.push(
            c["ipam"]["addresses"][0]["address"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ips.sort();
    assert_eq!(ips, vec!["10.0.10.238/24", "10.0.10.93/24"]);
    let pods = of_kind(&all, "Pod");
    assert_eq!(pods.len(), 2);
    let mut nodes = BTreeSet::new();
    for p in pods {
        for net in pod_networks(p) {
            assert!(
                names.contains(net.as_str()),
                "pod refers to unknown NAD {net}"
            );
        }
        nodes.insert(p["spec"]["nodeName"].as_str().unwrap());
        assert_eq!(p["spec"]["containers"][0]["image"], "centos/tools");
    }
    assert_eq!(nodes.len(), 2, "each pod pinned to its own node");
}

#[test]
fn plexus_examples_use_one_nad_and_the_device_plugin() {
    let all = docs("examples/plexus");
    let nads = of_kind(&all, "NetworkAttachmentDefinition");
    assert_eq!(nads.len(), 1);
    let nad = nads[0];
    assert_eq!(
        nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"],
        "plexus.io/vf"
    );
    let c = nad_config(nad);
    assert_eq!(c["type"], "host-device");
    assert_eq!(c["ipam"], serde_json::json!({"type": "vnic"}));
    assert!(
        c.get("device").is_none(),
        "the allocated VF, not a name, picks the device"
    );
    let pods = of_kind(&all, "Pod");
    assert_eq!(pods.len(), 2);
    for p in pods {
        assert_eq!(
            pod_networks(p),
            vec![nad["metadata"]["name"].as_str().unwrap()]
        );
        assert!(p["spec"].get("nodeName").is_none());
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["limits"]["plexus.io/vf"],
            "1"
        );
    }
}

//! The Plexus node fixture: a runtime node with our plugins, the fake API
//! with a bearer token, NADs, annotated pods and "VFs"; log and netns helpers.

use std::collections::BTreeSet;
use std::fs;

use anyhow::{anyhow, Result};
use plexus_e2e::runtime::{PodSpec, RuntimeNode};
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::net::{self, Veth, VethEnd};
use serde_json::{json, Value};

/// What the Plexus tests share: a node whose CNI bin dir holds our `plexus`,
/// `host-device` and `static` next to Debian's `bridge`, `host-local` and
/// `loopback`; the fake Kubernetes API serving in the node netns with a
/// bearer token; and `00-plexus.conflist` delegating the cluster network to
/// a bridge conflist in a sub-directory. "VFs" are veth ends in the node
/// netns, made by the test.
pub struct PlexusNode {
    // Field order is drop order: the node (whose teardown may still run the
    // plugin) goes before the API server it talks to.
    pub node: RuntimeNode,
    pub api: FakeApiServer,
}

/// The annotation a pod names its extra networks with.
const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
pub const TOKEN: &str = "e2e-node-token";
/// The VF's fixed MAC (locally administered), to recognise it in the pod.
pub const VF_MAC: &str = "02:00:cb:00:71:0a";

impl PlexusNode {
    pub fn new() -> Result<Self> {
        let node = RuntimeNode::new()?;
        for plugin in ["bridge", "host-local"] {
            node.link_reference_plugin(plugin)?;
        }
        for plugin in ["plexus", "host-device", "static"] {
            node.install_plugin(plugin, &net::bin_path(plugin))?;
        }
        // Bound inside the node netns: the plugin (a child of containerd)
        // reaches it on 127.0.0.1 there, the test keeps calling it in-process.
        let api = node.in_node_netns(|| {
            FakeApiServer::start_with(Options {
                token: Some(TOKEN.to_owned()),
                seed: Vec::new(),
                ..Options::default()
            })
        })??;

        // The installer's layout, the kubeconfig naming a token file.
        let aux = node.plexus_aux_dir();
        fs::create_dir_all(&aux)?;
        fs::write(aux.join("token"), TOKEN)?;
        node.write_plexus_layout(
            json!({"server": api.url()}),
            json!({"tokenFile": aux.join("token")}),
        )?;
        Ok(Self { node, api })
    }

    /// Stores the tutorial's NAD shape: host-device moving `device` into the
    /// pod, static IPAM with `address`. (`dataDir` only keeps host-device's
    /// state inside the work dir instead of /var/lib/cni.)
    pub fn put_nad(&self, name: &str, device: &str, address: &str) -> Result<()> {
        let config = json!({
            "cniVersion": "0.3.1",
            "type": "host-device",
            "device": device,
            "dataDir": self.node.work_dir().join("host-device").display().to_string(),
            "ipam": {
                "type": "static",
                "addresses": [{"address": address, "gateway": "0.0.0.0"}],
                "routes": [{"dst": "203.0.113.0/24", "gw": "0.0.0.0"}],
            }
        });
        self.api
            .put_nad("default", name, &config.to_string())
            .map_err(|e| anyhow!("put_nad: {e}"))?;
        Ok(())
    }

    /// A pod requesting `networks`, known to the API (same UID as the
    /// sandbox, as kubelet guarantees) and annotated the same way for CRI.
    pub fn pod(&self, name: &str, networks: &str) -> Result<PodSpec> {
        let pod = PodSpec::new(name)?.annotation(NETWORKS, networks);
        self.api
            .put_pod(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod.name,
                    "namespace": pod.namespace,
                    "uid": pod.uid,
                    "annotations": {NETWORKS: networks},
                },
                "spec": {"containers": [{"name": "app", "image": "localhost/app"}]},
            }))
            .map_err(|e| anyhow!("put_pod: {e}"))?;
        Ok(pod)
    }

    /// A "VF" with MAC `mac` in the node netns: one end of a veth pair whose
    /// other end (the "wire") stays there too.
    pub fn vf(&self, mac: &str) -> Veth {
        Veth::create(
            VethEnd::new(net::unique_name("vf"))
                .in_ns(self.node.netns())
                .mac(mac),
            VethEnd::new(net::unique_name("wire")).in_ns(self.node.netns()),
        )
    }

    /// The link `name` if it is in the node netns.
    pub fn on_node(&self, name: &str) -> Option<Value> {
        self.node.netns().link(name)
    }

    /// Tears the node down; fails if anything had to be forced.
    pub fn shutdown(self) -> Result<()> {
        let Self { node, api } = self;
        let result = node.shutdown();
        drop(api);
        result
    }
}

/// The plugin's own log file, for failure messages.
pub fn plugin_log(node: &RuntimeNode) -> String {
    fs::read_to_string(node.work_dir().join("logs/plexus.log")).unwrap_or_default()
}

/// The `cni-*` entries of /run/netns: pod network namespaces containerd
/// created (runtime tests run one at a time, so all of them are ours).
pub fn pod_netns_entries() -> Result<BTreeSet<String>> {
    Ok(fs::read_dir("/run/netns")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cni-"))
        .collect())
}

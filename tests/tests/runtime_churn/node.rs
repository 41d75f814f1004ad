//! The churn node: containerd with plexus as its CNI, the fake API, four
//! "VFs" and their NADs, and where a VF is (home, or where it went).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Result};
use plexus_e2e::consistency::{Node, VfHome};
use plexus_e2e::runtime::{test_vnic, write_state_file, PodSpec, RuntimeNode};
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::net::{self, Veth, VethEnd};
use serde_json::json;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const TOKEN: &str = "churn-node-token";
pub const VFS: usize = 4;
const VF_MTU: u32 = 9000;

fn vf_mac(i: usize) -> String {
    format!("02:00:17:00:c0:{i:02x}")
}

fn vnic_ip(i: usize) -> String {
    format!("203.0.113.{}", 10 + i)
}

/// The node: containerd with plexus as its CNI, the fake API in the node
/// netns, four VFs. Field order is drop order (node before the API it uses).
pub struct ChurnNode {
    pub node: RuntimeNode,
    pub api: FakeApiServer,
    pub vfs: Vec<Veth>,
}

impl ChurnNode {
    pub fn new() -> Result<Self> {
        let node = RuntimeNode::new()?;
        for plugin in ["bridge", "host-local"] {
            node.link_reference_plugin(plugin)?;
        }
        for plugin in ["plexus", "host-device", "static", "vnic"] {
            node.install_plugin(plugin, &net::bin_path(plugin))?;
        }
        let api = node.in_node_netns(|| {
            FakeApiServer::start_with(Options {
                token: Some(TOKEN.to_owned()),
                seed: Vec::new(),
                ..Options::default()
            })
        })??;
        let vfs = (0..VFS)
            .map(|i| {
                Veth::create(
                    VethEnd::new(net::unique_name("vf"))
                        .in_ns(node.netns())
                        .mac(vf_mac(i))
                        .mtu(VF_MTU)
                        .up(),
                    VethEnd::new(net::unique_name("wire"))
                        .in_ns(node.netns())
                        .up(),
                )
            })
            .collect();
        let this = Self { node, api, vfs };
        this.write_configs()?;
        Ok(this)
    }

    fn aux(&self) -> PathBuf {
        self.node.plexus_aux_dir()
    }

    fn host_device_dir(&self) -> PathBuf {
        self.node.work_dir().join("host-device")
    }

    fn state_file(&self) -> PathBuf {
        self.aux().join("state.json")
    }

    /// kubeconfig, conflists, the agent-format state file and one NAD per VF.
    fn write_configs(&self) -> Result<()> {
        let aux = self.aux();
        fs::create_dir_all(&aux)?;
        fs::write(aux.join("token"), TOKEN)?;
        self.node.write_plexus_layout(
            json!({"server": self.api.url()}),
            json!({"tokenFile": aux.join("token")}),
        )?;
        let path = |p: &Path| p.display().to_string();
        let vnic = |i: usize, ifname, mac: &str, ip: &str, primary| {
            let id = format!("ocid1.vnic.oc1..churn{i}");
            test_vnic(id, ifname, mac, ip, primary, VF_MTU)
        };
        let mut vnics = vec![vnic(99, None, "02:00:17:00:c0:ff", "203.0.113.2", true)?];
        for (i, vf) in self.vfs.iter().enumerate() {
            vnics.push(vnic(
                i,
                Some(vf.a().to_owned()),
                &vf_mac(i),
                &vnic_ip(i),
                false,
            )?);
        }
        write_state_file(&self.state_file(), vnics)?;
        for (i, vf) in self.vfs.iter().enumerate() {
            let config = json!({
                "cniVersion": "1.0.0",
                "type": "host-device",
                "device": vf.a(),
                "dataDir": path(&self.host_device_dir()),
                "ipam": {"type": "vnic", "stateFile": path(&self.state_file())},
            });
            self.api
                .put_nad("default", &format!("vf{i}"), &config.to_string())
                .map_err(|e| anyhow!("put_nad: {e}"))?;
        }
        Ok(())
    }

    fn vf_homes(&self) -> Vec<VfHome> {
        self.vfs
            .iter()
            .enumerate()
            .map(|(i, vf)| VfHome {
                name: vf.a().to_owned(),
                mac: vf_mac(i),
                mtu: u64::from(VF_MTU),
                up: true,
            })
            .collect()
    }

    pub fn checker(&self) -> Node {
        Node {
            netns: self.node.netns().path(),
            vfs: self.vf_homes(),
            pod_addrs: (0..VFS).map(vnic_ip).collect(),
            record_dirs: vec![self.host_device_dir(), self.aux().join("cache")],
        }
    }

    /// A pod in the API requesting VF `vf`.
    pub fn pod(&self, n: usize, vf: usize) -> Result<PodSpec> {
        let networks = format!("vf{vf}");
        let pod = PodSpec::new(&format!("churn-{n}"))?.annotation(NETWORKS, &networks);
        self.api
            .put_pod(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                             "annotations": {NETWORKS: networks}},
                "spec": {"containers": [{"name": "app", "image": "localhost/app"}]},
            }))
            .map_err(|e| anyhow!("put_pod: {e}"))?;
        Ok(pod)
    }
}

/// The VF `i` is home as the node had it.
pub fn vf_home(t: &ChurnNode, i: usize) -> Result<()> {
    let want = &t.vf_homes()[i];
    let Some(link) = t.node.netns().link(&want.name) else {
        return Err(anyhow!(
            "VF {} not on the node: {}",
            want.name,
            where_is(t, i)
        ));
    };
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    ensure!(
        link["address"] == want.mac.as_str() && link["mtu"] == want.mtu && up == want.up,
        "VF {} changed: {link}",
        want.name
    );
    Ok(())
}

/// Where VF `i` went: a link with its MAC on the node (renamed) or in a pod
/// netns, and whether its veth peer still exists (gone: the pair died with
/// a pod netns, as a real VF would have fallen back to the host as `net1`).
fn where_is(t: &ChurnNode, i: usize) -> String {
    let mac = vf_mac(i);
    let mut seen = Vec::new();
    let node_links = t.node.netns().links();
    for l in node_links.as_array().into_iter().flatten() {
        if l["address"] == mac.as_str() {
            seen.push(format!("on the node as {}", l["ifname"]));
        }
    }
    for e in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("cni-") {
            continue;
        }
        if let Ok(links) = plexus_e2e::runtime::ip_json_at(&path, &["link", "show"]) {
            for l in links.as_array().into_iter().flatten() {
                if l["address"] == mac.as_str() {
                    seen.push(format!("in {} as {}", path.display(), l["ifname"]));
                }
            }
        }
    }
    let peer = t.vfs[i].b();
    let peer_alive = t.node.netns().link(peer).is_some();
    format!("seen {seen:?}; veth peer {peer} exists: {peer_alive}")
}

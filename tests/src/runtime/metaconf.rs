//! The meta plugin's layout on a test node, as the agent's installer
//! writes it on a real one: the primary network's conflist moved aside
//! (`cluster.d/10-cluster.conflist`, a bridge), the kubeconfig in
//! `plexus.d/`, and `00-plexus.conflist` wrapping the primary.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use plexus_imds::node_state::{NodeState, VnicState, SCHEMA_VERSION};
use serde_json::{json, Value};

use super::RuntimeNode;

impl RuntimeNode {
    /// The meta plugin's aux dir (kubeconfig, cache, device info, state).
    pub fn plexus_aux_dir(&self) -> PathBuf {
        self.work_dir().join("plexus.d")
    }

    /// Writes the layout with a kubeconfig of `cluster` (server, CA) and
    /// `user` (token file or nothing). NADs may name the node's record dir
    /// and state file (`nadNodeKeys`).
    pub fn write_plexus_layout(&self, cluster: Value, user: Value) -> Result<()> {
        let aux = self.plexus_aux_dir();
        let cluster_dir = self.work_dir().join("cluster.d");
        fs::create_dir_all(&aux)?;
        fs::create_dir_all(&cluster_dir)?;
        fs::write(
            cluster_dir.join("10-cluster.conflist"),
            serde_json::to_string_pretty(&self.cluster_conflist("plxbr0"))?,
        )?;
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "plexus", "user": user}],
            "contexts": [{"name": "plexus", "context": {"cluster": "fake", "user": "plexus"}}],
            "current-context": "plexus",
        });
        fs::write(aux.join("plexus.kubeconfig"), kubeconfig.to_string())?;
        let path = |p: &Path| p.display().to_string();
        self.write_conf(
            "00-plexus.conflist",
            &json!({
                "cniVersion": "1.0.0",
                "name": "plexus",
                "plugins": [{
                    "type": "plexus",
                    "capabilities": {"io.kubernetes.cri.pod-annotations": true},
                    "kubeconfig": path(&aux.join("plexus.kubeconfig")),
                    "clusterNetwork": path(&cluster_dir),
                    "confDir": path(&cluster_dir),
                    "cniDir": path(&aux.join("cache")),
                    "nadNodeKeys": ["dataDir", "stateFile"],
                    "binDir": path(&self.cni_bin_dir()),
                    "deviceInfoDir": path(&aux.join("devinfo")),
                    "logFile": path(&self.work_dir().join("logs/plexus.log")),
                    "logLevel": "info",
                }]
            }),
        )?;
        Ok(())
    }
}

/// One VNIC of the agent's state file on a test node: subnet
/// 203.0.113.0/24 behind 203.0.113.1, no PCI address (the VFs are veths).
pub fn test_vnic(
    vnic_id: String,
    ifname: Option<String>,
    mac: &str,
    ip: &str,
    primary: bool,
    mtu: u32,
) -> Result<VnicState> {
    Ok(VnicState {
        ifname,
        pci: None,
        mac: mac.parse()?,
        vnic_id,
        ip: ip.parse()?,
        prefix_len: 24,
        subnet_cidr: "203.0.113.0/24".parse()?,
        gateway: Some("203.0.113.1".parse()?),
        vlan_tag: None,
        nic_index: None,
        mtu: Some(mtu),
        is_primary: primary,
        ipv6: Vec::new(),
    })
}

/// Writes the agent's state file with `vnics`, as its reconcile pass does.
pub fn write_state_file(path: &Path, vnics: Vec<VnicState>) -> Result<()> {
    let state = NodeState {
        version: SCHEMA_VERSION,
        updated_at: "2026-12-04T00:00:00Z".into(),
        vnics,
    };
    fs::write(path, serde_json::to_vec_pretty(&state)?)?;
    Ok(())
}

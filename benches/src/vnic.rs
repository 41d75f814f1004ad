//! The `vnic` IPAM plugin's ADD, the call host-device makes right after it
//! moved the VF: from the node state file the agent writes (the normal path)
//! and from IMDS (the fallback when there is no state file), side by side with
//! `static` ADD and `/bin/true` in the same spawn harness.
//!
//! The node is the generated OCI VM sysfs tree of `plexus_sysfs::testing`
//! (the one `plugins/vnic/tests` use); IMDS is `plexus_testkit::imds::FakeImds`
//! on the loopback of the namespace the bench runs in.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use plexus_imds::node_state::{NodeState, VnicState};
use plexus_imds::types::Vnic;
use plexus_imds::NodeNic;
use plexus_sysfs::testing::{macs, oci_vm_node};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{CniCall, CniOutput};
use serde_json::{json, Value};

/// The VF the pod gets: `ens4` of the generated node.
const VF_PCI: &str = "0000:00:04.0";
const VF_NAME: &str = "ens4";
/// Its VNIC's address, as both the state file and IMDS report it.
pub const VF_IP: &str = "198.51.100.20/24";

/// The node's VNICs as `/opc/v2/vnics/` lists them: the primary first.
fn imds_vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.oc1.phx.primary", "privateIp": "198.51.100.10",
         "macAddr": macs::PRIMARY.to_uppercase(), "virtualRouterIp": "198.51.100.1",
         "subnetCidrBlock": "198.51.100.0/24"},
        {"vnicId": "ocid1.vnic.oc1.phx.ens4", "privateIp": "198.51.100.20",
         "macAddr": macs::SINGLE_VF.to_uppercase(), "virtualRouterIp": "198.51.100.1",
         "subnetCidrBlock": "198.51.100.0/24"},
        {"vnicId": "ocid1.vnic.oc1.phx.shared", "privateIp": "203.0.113.30",
         "macAddr": macs::SHARED.to_uppercase(), "virtualRouterIp": "203.0.113.1",
         "subnetCidrBlock": "203.0.113.0/25"}
    ])
}

/// The state file the agent would write for that node: one entry per VF
/// (ens5 and ens6 share a VNIC), the primary marked.
fn node_state() -> Result<NodeState> {
    let vnics: Vec<Vnic> = serde_json::from_value(imds_vnics()).context("VNIC fixture")?;
    let entry = |v: &Vnic, primary: bool, ifname: &str, pci: &str| {
        VnicState::from_nic(
            &NodeNic::from(v),
            primary,
            Some(ifname.into()),
            Some(pci.into()),
        )
    };
    let [primary, vf, shared] = vnics.as_slice() else {
        bail!("VNIC fixture: expected three VNICs");
    };
    Ok(NodeState::new(
        vec![
            entry(primary, true, "ens3", "0000:00:03.0"),
            entry(vf, false, VF_NAME, VF_PCI),
            entry(shared, false, "ens5", "0000:00:05.0"),
            entry(shared, false, "ens6", "0000:00:06.0"),
        ],
        UNIX_EPOCH,
    ))
}

/// Two generated nodes and the fake IMDS, removed on drop.
pub struct VnicFixture {
    /// With a state file; the VF's netdev is gone from sysfs, as after
    /// host-device moved it, so only the PCI address identifies it.
    moved_root: PathBuf,
    state_file: PathBuf,
    /// No state file; the VF's netdev still visible, so its MAC is known
    /// and IMDS can be asked (the plugin's fallback).
    visible_root: PathBuf,
    missing_state_file: PathBuf,
    pub imds: FakeImds,
    _dir: tempfile::TempDir,
}

impl VnicFixture {
    /// Binds the fake IMDS in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("plexus-bench-vnic.")
            .tempdir()
            .context("create a fixture directory")?;
        let moved = oci_vm_node(&dir.path().join("moved")).context("generate sysfs")?;
        moved.hide_netdev(VF_NAME).context("hide the VF netdev")?;
        let visible = oci_vm_node(&dir.path().join("visible")).context("generate sysfs")?;
        let state_file = dir.path().join("run/plexus/state.json");
        node_state()?
            .write_atomic(&state_file)
            .context("write the state file")?;
        let imds = FakeImds::start(imds_vnics()).context("start the fake IMDS")?;
        Ok(Self {
            moved_root: moved.root().to_owned(),
            state_file,
            visible_root: visible.root().to_owned(),
            missing_state_file: dir.path().join("run/plexus/none.json"),
            imds,
            _dir: dir,
        })
    }

    /// host-device's delegate config with `ipam`, as the IPAM plugin gets it
    /// (cniVersion 0.3.1 like the tutorial's NAD).
    fn config(device: Value, ipam: Value) -> Vec<u8> {
        let mut c = json!({"cniVersion": "0.3.1", "name": "sriov-vnic-1", "type": "host-device",
                           "ipam": ipam});
        if let (Some(c), Some(d)) = (c.as_object_mut(), device.as_object()) {
            c.extend(d.clone());
        }
        c.to_string().into_bytes()
    }

    fn call(bin: &Path, netns: &Path, stdin: Vec<u8>) -> CniCall {
        CniCall::new(bin, "ADD")
            .container_id("pxbench-vnic")
            .netns(netns)
            .ifname("net1")
            .cni_path(bin.parent().unwrap_or(Path::new("/")))
            .stdin(stdin)
    }

    /// `vnic` ADD by the device plugin's PCI address, answered from the state
    /// file; IMDS is unreachable on purpose (port 9), so any request fails.
    pub fn state_call(&self, ours: &Path, netns: &Path) -> CniCall {
        let ipam = json!({"type": "vnic", "stateFile": self.state_file,
                          "sysfsRoot": self.moved_root, "imdsUrl": "http://127.0.0.1:9"});
        let device = json!({"runtimeConfig": {"deviceID": VF_PCI}});
        Self::call(&ours.join("vnic"), netns, Self::config(device, ipam))
    }

    /// `vnic` ADD by device name with no state file: MAC from sysfs, VNIC
    /// from the fake IMDS.
    pub fn imds_call(&self, ours: &Path, netns: &Path) -> CniCall {
        let ipam = json!({"type": "vnic", "stateFile": self.missing_state_file,
                          "sysfsRoot": self.visible_root, "imdsUrl": self.imds.url()});
        let device = json!({"device": VF_NAME});
        Self::call(&ours.join("vnic"), netns, Self::config(device, ipam))
    }

    /// `static` ADD of the same address in the same delegate config.
    pub fn static_call(ours: &Path, netns: &Path) -> CniCall {
        let ipam = json!({"type": "static",
                          "addresses": [{"address": VF_IP, "gateway": "198.51.100.1"}]});
        let device = json!({"device": VF_NAME});
        Self::call(&ours.join("static"), netns, Self::config(device, ipam))
    }
}

/// The call succeeded and handed out the VF's VNIC address.
pub fn check_result(out: &CniOutput, what: &str) -> Result<()> {
    let ip = out.json["ips"][0]["address"].as_str();
    if !out.status.success() || ip != Some(VF_IP) {
        bail!(
            "{what} ADD: expected {VF_IP}, got ({}) {} {}",
            out.status,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(())
}

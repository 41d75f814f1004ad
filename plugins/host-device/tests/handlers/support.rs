//! The test environment: the plugin over a fake kernel and a scripted IPAM.

use std::path::PathBuf;

use plexus_cni::testing::FakeExec;
use plexus_cni::{CmdArgs, CniError, Command, Plugin};
use plexus_host_device::net::Side;
use plexus_host_device::testing::{FakeLink, FakeOpener, World};
use plexus_host_device::HostDevice;
use serde_json::{json, Value};

pub(crate) const POD: &str = "/var/run/netns/pod1";
pub(crate) const MAC: &str = "02:00:00:00:00:05";

pub(crate) struct Env {
    pub(crate) plugin: HostDevice<FakeOpener, FakeExec>,
    pub(crate) data: tempfile::TempDir,
    pub(crate) _sys: tempfile::TempDir,
}

impl Env {
    /// Host with `ens5` (MTU 9000, up) and an empty pod.
    pub(crate) fn new() -> Self {
        let mut w = World::new(POD);
        w.add_link(Side::Host, "ens5", MAC, 9000, true);
        Self::with_world(w)
    }

    pub(crate) fn with_world(w: World) -> Self {
        let sys = tempfile::tempdir().unwrap();
        Env {
            plugin: HostDevice {
                opener: FakeOpener::new(w),
                exec: FakeExec::new().with_plugin("static"),
                sys_root: sys.path().to_path_buf(),
            },
            data: tempfile::tempdir().unwrap(),
            _sys: sys,
        }
    }

    pub(crate) fn world(&self) -> std::cell::RefMut<'_, World> {
        self.plugin.opener.world.borrow_mut()
    }

    pub(crate) fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version, "name": "sriov-vnic-1", "type": "host-device",
            "device": "ens5", "dataDir": self.data.path(),
            "ipam": {"type": "static", "addresses": [{"address": "198.51.100.7/24", "gateway": "198.51.100.1"}]}
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    pub(crate) fn args(&self, cmd: Command, netns: &str, conf: &Value) -> CmdArgs {
        CmdArgs {
            command: cmd,
            container_id: "c1".into(),
            netns: netns.into(),
            ifname: "net1".into(),
            args: String::new(),
            path: vec![PathBuf::from("/opt/cni/bin")],
            stdin: serde_json::to_vec(conf).unwrap(),
        }
    }

    pub(crate) fn ipam_ok(&self, version: &str) {
        let mut ip = json!({"address": "198.51.100.7/24", "gateway": "198.51.100.1"});
        if version.starts_with("0.") {
            ip["version"] = json!("4");
        }
        let out = json!({"cniVersion": version, "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "203.0.113.0/24", "gw": "198.51.100.254"}],
            "dns": {"nameservers": ["198.51.100.53"]}});
        self.plugin
            .exec
            .push_output(&serde_json::to_vec(&out).unwrap());
    }

    pub(crate) fn add(&self, version: &str, extra: Value) -> Result<Value, CniError> {
        let c = self.conf(version, extra);
        self.plugin.add(&self.args(Command::Add, POD, &c))
    }

    pub(crate) fn del(&self, netns: &str, version: &str, extra: Value) -> Result<(), CniError> {
        let c = self.conf(version, extra);
        self.plugin.del(&self.args(Command::Del, netns, &c))
    }

    pub(crate) fn state_files(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect()
    }

    pub(crate) fn ipam_commands(&self) -> Vec<String> {
        self.plugin
            .exec
            .calls()
            .iter()
            .filter_map(|c| c.command().map(str::to_string))
            .collect()
    }

    /// The host device is back as found: name, MTU, up, no alias.
    pub(crate) fn assert_restored(&self) {
        let w = self.plugin.opener.world.borrow();
        let l = &w
            .get(Side::Host, "ens5")
            .expect("ens5 back on the host")
            .link;
        assert_eq!((l.mtu, l.up, l.alias.as_deref()), (9000, true, None));
        assert!(w.get(Side::Pod, "net1").is_none());
    }
}

/// A link's routes as `dst gateway|- kernel|boot`, in the order added.
pub(crate) fn routes_of(l: &FakeLink) -> Vec<String> {
    l.routes
        .iter()
        .map(|r| {
            let gw = r.gateway.map_or("-".to_string(), |g| g.to_string());
            let proto = if r.protocol == plexus_netlink::RTPROT_KERNEL {
                "kernel"
            } else {
                "boot"
            };
            format!("{} {gw} {proto}", r.dst)
        })
        .collect()
}

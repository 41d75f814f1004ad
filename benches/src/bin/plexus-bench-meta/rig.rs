//! The bench's fixtures: the node and pod namespaces with the veth "VFs",
//! the fake Kubernetes API in the node namespace, the scratch dir with the
//! kubeconfig, and the CNI configs and calls every series is built from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plexus_netns::NetNs;
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::net::{unique_name, CniCall, CniOutput, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

const POD_NS: &str = "default";
const POD: &str = "benchpod";
const NAD: &str = "sriov-vnic";
/// The API-bound scenario: a pod whose one extra network is a `static` NAD.
const POD_STATIC: &str = "benchpod-static";
const NAD_STATIC: &str = "static-net";
pub const VF: &str = "ens5";
/// The tutorial-shape series' cluster-network VF.
pub const VF2: &str = "ens6";

/// A directory removed on drop (the bench links no tempfile crate).
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    fn new_in(base: &Path) -> Result<Self> {
        let dir = base.join(unique_name("pxbmeta"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixtures: namespaces, VF, fake API, configs. Fields drop in order:
/// the VF, then the pod and node namespaces, the API, the files.
pub struct Rig {
    _vf: Veth,
    _vf2: Veth,
    pub pod: TestNs,
    pub node: TestNs,
    pub node_fd: NetNs,
    pub api: FakeApiServer,
    dir: ScratchDir,
    ours: PathBuf,
    /// A hard link of `plexus` alone: its delegates are always exec'd.
    pub exec_only: ScratchDir,
    uid: String,
    uid_static: String,
}

impl Rig {
    pub fn new(ours: PathBuf, scheme: &str) -> Result<Self> {
        let node = TestNs::new("pxbmn");
        let pod = TestNs::new("pxbmp");
        let mut vf = Veth::create(
            VethEnd::new(VF).in_ns(&node).mac("02:00:17:00:0a:05").up(),
            VethEnd::new(unique_name("pxbmw")).in_ns(&node).up(),
        );
        vf.may_visit(&pod);
        let mut vf2 = Veth::create(
            VethEnd::new(VF2).in_ns(&node).mac("02:00:17:00:0a:06").up(),
            VethEnd::new(unique_name("pxbmw")).in_ns(&node).up(),
        );
        vf2.may_visit(&pod);
        let node_fd = NetNs::open(node.path())?;
        // Bound inside the node namespace, so the plugins (run there) reach
        // it on their loopback, as a node reaches its API endpoint.
        let dir = ScratchDir::new_in(&std::env::temp_dir())?;
        let mut options = Options::default();
        if scheme != "http" {
            let ca = plexus_testkit::tls::TestCa::new()?;
            std::fs::write(dir.0.join("ca.pem"), ca.cert_pem())?;
            let mut cert = ca.loopback_cert()?;
            cert.http1_only = scheme == "https-http1";
            options.tls = Some(cert);
        }
        let api = plexus_netns::run_in(&node_fd, move || FakeApiServer::start_with(options))??;
        let exec_only = ScratchDir::new_in(&ours)?;
        std::fs::hard_link(ours.join("plexus"), exec_only.0.join("plexus"))
            .context("hard-link plexus for the exec'd-delegates series")?;
        let rig = Self {
            _vf: vf,
            _vf2: vf2,
            pod,
            node,
            node_fd,
            api,
            dir,
            ours,
            exec_only,
            uid: String::new(),
            uid_static: String::new(),
        };
        rig.write_kubeconfig()?;
        let nad = rig.nad_config().to_string();
        rig.api
            .put_nad(POD_NS, NAD, &nad)
            .map_err(anyhow::Error::msg)?;
        let pod = rig
            .api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": POD, "namespace": POD_NS,
                    "annotations": {"k8s.v1.cni.cncf.io/networks": NAD}},
                "spec": {"nodeName": "node-1"}}))
            .map_err(anyhow::Error::msg)?;
        let uid = pod["metadata"]["uid"]
            .as_str()
            .context("fake API gave the pod no uid")?
            .to_string();
        let mut st = Self::static_conf();
        st["name"] = json!(NAD_STATIC);
        st["ipam"]["addresses"][0]["address"] = json!("198.51.100.12/24");
        rig.api
            .put_nad(POD_NS, NAD_STATIC, &st.to_string())
            .map_err(anyhow::Error::msg)?;
        let pod = rig
            .api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": POD_STATIC, "namespace": POD_NS,
                    "annotations": {"k8s.v1.cni.cncf.io/networks": NAD_STATIC}},
                "spec": {"nodeName": "node-1"}}))
            .map_err(anyhow::Error::msg)?;
        let uid_static = pod["metadata"]["uid"]
            .as_str()
            .context("fake API gave the pod no uid")?
            .to_string();
        Ok(Self {
            uid,
            uid_static,
            ..rig
        })
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.0.join(p)
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let mut cluster = json!({"server": self.api.url()});
        if self.api.url().starts_with("https:") {
            cluster["certificate-authority"] = json!(self.path("ca.pem"));
        }
        let kubeconfig = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "plexus", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "plexus"}}],
            "current-context": "fake"});
        std::fs::write(self.path("plexus.kubeconfig"), kubeconfig.to_string())?;
        Ok(())
    }

    /// The tutorial's NAD (Task 3) with a test address; `dataDir` keeps
    /// host-device's records in the scratch dir.
    pub fn nad_config(&self) -> Value {
        json!({
            "cniVersion": "0.3.1",
            "name": NAD,
            "type": "host-device",
            "device": VF,
            "dataDir": self.path("host-device"),
            "ipam": {
                "type": "static",
                "addresses": [{"address": "198.51.100.11/24", "gateway": "0.0.0.0"}],
                "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}]
            }
        })
    }

    /// A static-only conf: the cluster-network stand-in and series 1's
    /// delegate. It only computes a result (no kernel change), so series
    /// 1 → 2 isolates what plexus itself adds.
    pub fn static_conf() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "cluster",
            "type": "static",
            "ipam": {
                "type": "static",
                "addresses": [{"address": "203.0.113.10/24", "gateway": "203.0.113.1"}]
            }
        })
    }

    /// The tutorial-shape cluster network: `host-device` with the second
    /// VF and a static address.
    pub fn cluster_host_device_conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "cluster",
            "type": "host-device",
            "device": VF2,
            "dataDir": self.path("host-device"),
            "ipam": {
                "type": "static",
                "addresses": [{"address": "203.0.113.10/24", "gateway": "203.0.113.1"}]
            }
        })
    }

    /// The plexus conf; `cache_dir` is its `cniDir` (the ADD record).
    pub fn plexus_conf(&self, kube: bool, cache_dir: &Path) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "plexus-cni-network",
            "type": "plexus",
            "kubeconfig": if kube { self.path("plexus.kubeconfig") } else { PathBuf::new() },
            "cniDir": cache_dir,
            "confDir": self.path("net.d"),
            "binDir": self.ours,
            "nadNodeKeys": ["dataDir"],
            "delegates": [Self::static_conf()],
        })
    }

    pub fn call(
        &self,
        bin: &str,
        command: &str,
        container: &str,
        ifname: &str,
        conf: &Value,
    ) -> CniCall {
        CniCall::new(self.ours.join(bin), command)
            .container_id(container)
            .netns(self.pod.path())
            .ifname(ifname)
            .cni_path(&self.ours)
            .args(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME={POD};\
                 K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={}",
                self.uid
            ))
            .stdin(conf.to_string())
    }

    /// [`Self::call`] for the API-bound pod (its one NAD is `static`).
    pub fn call_static_pod(&self, command: &str, container: &str, conf: &Value) -> CniCall {
        let mut c = self.call("plexus", command, container, "eth0", conf);
        c.args = Some(format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME={POD_STATIC};\
             K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={}",
            self.uid_static
        ));
        c
    }

    /// [`Self::call`] of the `plexus` link that has no delegates next to it,
    /// so it execs them (the CNI_PATH is the same).
    pub fn call_exec(&self, command: &str, container: &str, conf: &Value) -> CniCall {
        let mut c = self.call("plexus", command, container, "eth0", conf);
        c.bin = self.exec_only.0.join("plexus");
        c
    }

    /// Runs a call in the node namespace; fails on a non-zero exit.
    pub fn run(&self, call: &CniCall) -> Result<CniOutput> {
        let out = plexus_netns::run_in(&self.node_fd, || call.run())?;
        if !out.status.success() {
            bail!(
                "{} {} failed: {} {}",
                call.bin.display(),
                call.command,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(out)
    }
}

//! Fakes shared by the handler tests: scripted delegate plugins, a pod API
//! connector over `FakePodApi`, a device-ID source and route recorder.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use plexus::cache::testing::MemCacheStore;
use plexus::config::PlexusConf;
use plexus::devices::DeviceIdSource;
use plexus::error::PlexusError;
use plexus::handlers::Deps;
use plexus::kube::{KubeConnect, Sleeper};
use plexus::routes::RouteOps;
use plexus_cni::exec::Exec;
use plexus_cni::{CmdArgs, CniError, Command};
use plexus_netattach::api::PodRef;
use plexus_netattach::testing::FakePodApi;
use plexus_netattach::{ApiError, Event, NetworkAttachmentDefinition, Pod, PodApi};
use serde_json::{json, Value};

/// One delegate invocation.
#[derive(Debug, Clone)]
pub struct Call {
    pub plugin: String,
    pub command: String,
    pub ifname: String,
    pub netns: String,
    pub cni_args: String,
    pub stdin: Value,
}

/// Delegates that answer like well-behaved plugins: ADD returns (or passes
/// through) a result for `CNI_IFNAME`, the rest succeed, unless scripted.
#[derive(Default)]
pub struct FakeDelegates {
    pub calls: Mutex<Vec<Call>>,
    failures: Mutex<HashMap<(String, String), CniError>>,
    missing: Mutex<HashSet<String>>,
}

pub fn address_for(ifname: &str) -> String {
    let n = match ifname {
        "eth0" => 10,
        other => 20 + other.bytes().map(u32::from).sum::<u32>() % 200,
    };
    format!("198.51.100.{n}/24")
}

pub fn result_for(version: &str, ifname: &str, netns: &str) -> Value {
    let mut ip = json!({"address": address_for(ifname), "gateway": "198.51.100.1", "interface": 0});
    if !version.starts_with('1') {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": version,
        "interfaces": [{"name": ifname, "mac": "0a:58:c6:33:64:0a", "sandbox": netns}],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.51.100.1"}],
        "dns": {}
    })
}

impl FakeDelegates {
    pub fn fail(&self, plugin: &str, command: &str, err: CniError) {
        self.failures
            .lock()
            .unwrap()
            .insert((plugin.into(), command.into()), err);
    }

    pub fn remove(&self, plugin: &str) {
        self.missing.lock().unwrap().insert(plugin.into());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// `(command, plugin, ifname)` of every call.
    pub fn summary(&self) -> Vec<(String, String, String)> {
        self.calls()
            .into_iter()
            .map(|c| (c.command, c.plugin, c.ifname))
            .collect()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// Undoes every `fail` and `remove`.
    pub fn clear_failures(&self) {
        self.failures.lock().unwrap().clear();
        self.missing.lock().unwrap().clear();
    }
}

impl Exec for FakeDelegates {
    fn exec_plugin(
        &self,
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Vec<u8>, CniError> {
        let get = |k: &str| {
            env.iter()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let plugin = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stdin: Value = serde_json::from_slice(stdin).unwrap();
        let call = Call {
            plugin: plugin.clone(),
            command: get("CNI_COMMAND"),
            ifname: get("CNI_IFNAME"),
            netns: get("CNI_NETNS"),
            cni_args: get("CNI_ARGS"),
            stdin: stdin.clone(),
        };
        self.calls.lock().unwrap().push(call.clone());
        if let Some(e) = self
            .failures
            .lock()
            .unwrap()
            .get(&(plugin.clone(), call.command.clone()))
        {
            return Err(e.clone());
        }
        if call.command != "ADD" {
            return Ok(Vec::new());
        }
        let out = match stdin.get("prevResult") {
            Some(prev) => prev.clone(),
            None => result_for(
                stdin["cniVersion"].as_str().unwrap_or("1.0.0"),
                &call.ifname,
                &call.netns,
            ),
        };
        Ok(serde_json::to_vec(&out).unwrap())
    }

    fn find_in_path(&self, plugin_type: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError> {
        let missing = self.missing.lock().unwrap().clone();
        plexus_cni::exec::find_in_path(plugin_type, paths, |p| {
            p.file_name()
                .is_some_and(|f| !missing.contains(f.to_string_lossy().as_ref()))
        })
    }
}

/// Hands out a borrowed `FakePodApi`; counts connects.
#[derive(Default)]
pub struct FakeKube {
    pub api: FakePodApi,
    pub connects: Mutex<u32>,
}

struct Borrowed<'a>(&'a FakePodApi);

impl PodApi for Borrowed<'_> {
    fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        self.0.get_pod(namespace, name)
    }
    fn get_nad(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<NetworkAttachmentDefinition, ApiError> {
        self.0.get_nad(namespace, name)
    }
    fn patch_network_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status_json: &str,
    ) -> Result<(), ApiError> {
        self.0
            .patch_network_status(namespace, name, uid, status_json)
    }
    fn create_event(&self, pod: &PodRef, event: &Event) -> Result<(), ApiError> {
        self.0.create_event(pod, event)
    }
}

impl KubeConnect for FakeKube {
    fn connect(&self, _conf: &PlexusConf) -> Result<Box<dyn PodApi + '_>, PlexusError> {
        *self.connects.lock().unwrap() += 1;
        Ok(Box::new(Borrowed(&self.api)))
    }
}

pub struct NoSleep;

impl Sleeper for NoSleep {
    fn sleep(&self, _d: Duration) {}
}

#[derive(Default)]
pub struct FakeDevices {
    pub allocated: Mutex<Vec<(String, Vec<String>)>>,
    pub fail: Mutex<Option<String>>,
    pub calls: Mutex<u32>,
}

impl DeviceIdSource for FakeDevices {
    fn allocated(
        &self,
        _socket: &Path,
        _timeout: Duration,
        _namespace: &str,
        _pod: &str,
    ) -> Result<Vec<(String, Vec<String>)>, String> {
        *self.calls.lock().unwrap() += 1;
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(self.allocated.lock().unwrap().clone())
    }
}

#[derive(Default)]
pub struct FakeRoutes {
    pub ops: Mutex<Vec<String>>,
}

impl RouteOps for FakeRoutes {
    fn delete_default_routes(&self, _netns: &str, ifname: &str, v6: bool) -> Result<(), String> {
        self.ops
            .lock()
            .unwrap()
            .push(format!("del {} {ifname}", if v6 { "v6" } else { "v4" }));
        Ok(())
    }

    fn add_default_route(&self, _netns: &str, ifname: &str, gw: IpAddr) -> Result<(), String> {
        self.ops.lock().unwrap().push(format!("add {gw} {ifname}"));
        Ok(())
    }
}

/// All fakes plus temp dirs for confDir and device-info.
pub struct Harness {
    pub exec: FakeDelegates,
    pub kube: FakeKube,
    pub devices: FakeDevices,
    pub routes: FakeRoutes,
    pub cache: MemCacheStore,
    pub dir: tempfile::TempDir,
}

pub const POD_NS: &str = "default";
pub const POD_NAME: &str = "testpod";
pub const POD_UID: &str = "0d3f3c2e-1111-4a4b-9c9c-000000000001";

impl Harness {
    pub fn new() -> Self {
        Self {
            exec: FakeDelegates::default(),
            kube: FakeKube::default(),
            devices: FakeDevices::default(),
            routes: FakeRoutes::default(),
            cache: MemCacheStore::default(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn deps(&self) -> Deps<'_> {
        Deps {
            exec: &self.exec,
            kube: &self.kube,
            sleeper: &NoSleep,
            devices: &self.devices,
            cache: &self.cache,
            routes: &self.routes,
        }
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// A plexus config with an inline cluster delegate of `version`, a
    /// kubeconfig (so the fake API is used) and temp dirs.
    pub fn conf(&self, version: &str, extra: Value) -> (Value, PlexusConf) {
        let mut v = json!({
            "cniVersion": version,
            "name": "plexus-cni-network",
            "type": "plexus",
            "kubeconfig": "/fake/kubeconfig",
            "confDir": self.conf_dir(),
            "deviceInfoDir": self.dir.path().join("devinfo"),
            "apiRetryBudgetSeconds": 0,
            "delegates": [{"cniVersion": version, "name": "cluster", "type": "cluster-cni"}]
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                m.insert(k.clone(), val.clone());
            }
        }
        let conf = PlexusConf::parse(v.to_string().as_bytes()).unwrap();
        (v, conf)
    }

    pub fn add_pod(&self, networks: Option<&str>) {
        let mut ann = vec![];
        if let Some(n) = networks {
            ann.push(("k8s.v1.cni.cncf.io/networks", n));
        }
        self.kube.api.add_pod(POD_NS, POD_NAME, POD_UID, &ann);
    }

    pub fn add_nad(&self, ns: &str, name: &str, config: Value) {
        self.kube.api.add_nad(ns, name, &config.to_string(), None);
    }
}

pub fn args(command: Command, container: &str, stdin: &Value) -> CmdArgs {
    CmdArgs {
        command,
        container_id: container.into(),
        netns: "/var/run/netns/fake-test".into(),
        ifname: "eth0".into(),
        args: format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME={POD_NAME};K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={POD_UID}"
        ),
        path: vec![PathBuf::from("/opt/cni/bin")],
        stdin: stdin.to_string().into_bytes(),
    }
}

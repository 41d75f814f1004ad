//! The DaemonSet of `deploy/plexus.yaml`, as written, through a real
//! container runtime: the image `scripts/build-image.sh` builds is imported
//! into containerd (`ctr -n k8s.io images import`), and the agent container
//! runs exactly as the manifest specifies it (command, env with `fieldRef`,
//! hostPath and projected volumes, capabilities, hostNetwork, resources),
//! translated the way kubelet does (`plexus_e2e::runtime::kubelet`), with
//! only the host paths moved under the node's work dir. Its readiness probe
//! runs inside the container through CRI ExecSync, as kubelet's prober does.
//!
//! The node around it: a primary (bridge) network config, a fake sysfs with
//! the secondary VNIC's NIC, the fake IMDS on 169.254.169.254:80 and a veth
//! with the VNIC's MAC in the node netns, the fake kubelet device-plugin
//! registration socket and pod-resources socket, and the fake API server
//! over TLS on the `kubernetes` Service address (127.0.0.1:6443 in the node
//! netns), its CA in the projected volume.
//!
//! The node has its own mount namespace (`RuntimeNode::set_node_fs`):
//! containerd and every CNI plugin it runs see the manifest's hostPath dirs
//! at their node paths (`/opt/cni/bin`, `/etc/cni/net.d`, `/var/lib/cni`,
//! `/run/plexus`, `/sys`, ...), so the absolute paths the agent writes into
//! its conflist and kubeconfig resolve as on a node. The last step is a pod
//! through the plugins the container installed: the README's one NAD
//! (`examples/plexus/nad.yaml`: host-device + vnic IPAM, `resourceName`
//! `plexus.io/vf`) and its example pod, the VF allocated to the pod in
//! PodResources as kubelet reports it; the sandbox gets `eth0` from the
//! wrapped primary and the VNIC's NIC as `net1` with the VNIC's IP, the
//! network-status lands in the API, and stopping the pod returns the NIC.
// One scenario reads top to bottom, as the node sees it.
#![allow(clippy::too_many_lines)]
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use plexus_e2e::manifest::{self, Manifest};
use plexus_e2e::runtime::kubelet::{self, NodeView};
use plexus_e2e::runtime::{ipv4_addrs, link_at, NodeFs, PodSpec, RuntimeNode};
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::net::{Veth, VethEnd};
use plexus_testkit::podresources::{FakePodResources, FakeRegistration};
use plexus_testkit::tls::TestCa;
use serde_json::{json, Value};

const VNIC_MAC: &str = "02:00:17:dd:00:02";
const VNIC_IP: &str = "203.0.113.93";
const VNIC_PCI: &str = "0000:00:05.0";
const TOKEN: &str = "plexus-e2e-token";
const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

fn vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:DD:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": VNIC_IP, "macAddr": VNIC_MAC.to_uppercase(),
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ])
}

/// A bind mount of a directory onto itself made shared, as `/` is on a
/// systemd node: containerd refuses `HostToContainer` propagation from a
/// private mount (this machine's `/` is private). Unmounted on drop.
struct SharedMount(PathBuf);

impl SharedMount {
    fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let d = dir.to_str().unwrap();
        run(&["mount", "--bind", d, d]);
        let guard = Self(dir.to_path_buf());
        run(&["mount", "--make-rshared", d]);
        guard
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(200));
    }
}

#[test]
fn runtime_daemonset_from_the_manifest_installs_the_node_and_wires_a_pod() {
    // The real manifest, typed.
    let manifest = Manifest::load().unwrap();
    let ds = manifest.daemon_set().unwrap();
    let namespace = ds.metadata.namespace.clone().unwrap();
    let pod = ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];

    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("plexus.oci.tar");
    plexus_e2e::image::build(&archive, None).unwrap();
    let image = plexus_image::inspect::inspect(&fs::read(&archive).unwrap()).unwrap();

    let mut node = RuntimeNode::new().unwrap();
    let work = node.work_dir().to_path_buf();
    let registration = FakeRegistration::start().unwrap();
    let pod_resources = FakePodResources::start().unwrap();
    let (cni_bin, cni_conf) = (node.cni_bin_dir(), node.cni_conf_dir());
    let dp_dir = registration.dir().to_path_buf();
    let pr_dir = pod_resources.socket_path().parent().unwrap().to_path_buf();
    // The node's filesystem: containerd's CNI dirs are the node's
    // /opt/cni/bin and /etc/cni/net.d, the kubelet fakes serve in the
    // kubelet's dirs, everything else is under <work>/host.
    let host_path = move |p: &str| -> PathBuf {
        match p {
            "/opt/cni/bin" => cni_bin.clone(),
            "/etc/cni/net.d" => cni_conf.clone(),
            "/var/lib/kubelet/device-plugins" => dp_dir.clone(),
            "/var/lib/kubelet/pod-resources" => pr_dir.clone(),
            other => work.join("host").join(other.trim_start_matches('/')),
        }
    };

    // The primary network the agent wraps (Flannel's role).
    node.link_reference_plugin("bridge").unwrap();
    node.link_reference_plugin("host-local").unwrap();
    let primary = node
        .write_conf("10-cluster.conflist", &node.cluster_conflist("plxbr0"))
        .unwrap();

    // The host's /sys with the secondary VNIC's NIC, and that NIC (a veth)
    // in the node netns; IMDS where the agent looks by default.
    let sys = FakeSysfs::new(&host_path("/")).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:03.0", 0x1af4, 0x1000)
            .driver("virtio-pci")
            .netdev("ens3", Some("02:00:17:dd:00:01")),
    )
    .unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("ens5", Some(VNIC_MAC)),
    )
    .unwrap();
    let _nic = Veth::create(
        VethEnd::new("ens5").in_ns(node.netns()).mac(VNIC_MAC),
        VethEnd::new("ens5peer").in_ns(node.netns()).up(),
    );
    node.netns()
        .ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let imds = node
        .in_node_netns(|| FakeImds::start_on("169.254.169.254:80".parse().unwrap(), vnics()))
        .unwrap()
        .unwrap();
    let netns_mount = SharedMount::new(&host_path("/run/netns"));
    // The node's own mount namespace: every hostPath of the manifest at its
    // node path (created now; kubelet's type checks find them later), the
    // fake sysfs as /sys.
    let mut node_fs = NodeFs::new();
    for v in pod.volumes.iter().flatten() {
        let Some(hp) = &v.host_path else { continue };
        let dir = host_path(&hp.path);
        fs::create_dir_all(&dir).unwrap();
        node_fs = if hp.path == "/sys" {
            node_fs.sys(&dir)
        } else {
            node_fs.bind(&hp.path, &dir)
        };
    }
    node.set_node_fs(node_fs);

    // The API server behind the `kubernetes` Service (127.0.0.1:6443 in
    // the node netns, where the host-network agent and the plugins run),
    // serving TLS with a certificate of the cluster CA and accepting the
    // service account's token.
    let ca = TestCa::new().unwrap();
    let api = node
        .in_node_netns(|| {
            FakeApiServer::start_on(
                std::net::TcpListener::bind("127.0.0.1:6443")?,
                Options {
                    token: Some(TOKEN.to_owned()),
                    tls: Some(ca.loopback_cert().map_err(std::io::Error::other)?),
                    ..Options::default()
                },
            )
        })
        .unwrap()
        .unwrap();

    // The projected service-account volume.
    let projected = work_sa_dir(node.work_dir());
    kubelet::write_projected_sa(
        &projected,
        &[
            ("token", TOKEN.as_bytes()),
            ("ca.crt", ca.cert_pem().as_bytes()),
            ("namespace", namespace.as_bytes()),
        ],
    )
    .unwrap();

    node.start().unwrap();
    run(&[
        "ctr",
        "--address",
        node.cri().sock().to_str().unwrap(),
        "--namespace",
        "k8s.io",
        "images",
        "import",
        "--platform",
        "linux/amd64",
        archive.to_str().unwrap(),
    ]);

    // The DaemonSet's pod: host network sandbox, then the agent container.
    let node_name = node.netns().name().to_owned();
    let mut pod_meta = PodSpec::new("plexus-e2e").unwrap();
    pod_meta.namespace = namespace.clone();
    let mut sandbox_config = node.pod_config(&pod_meta);
    sandbox_config["linux"]["security_context"]["namespace_options"] =
        kubelet::namespace_options(&pod);
    // kubelet sets no hostname for a host-network pod (it shares the node's
    // UTS namespace; runc refuses a hostname there).
    sandbox_config["hostname"] = json!("");
    let sandbox = node.cri().run_pod(&sandbox_config).unwrap();
    let api_host = api.addr().ip().to_string();
    let view = NodeView {
        node_name: &node_name,
        pod_name: &pod_meta.name,
        namespace: &namespace,
        host_path: &host_path,
        projected_dir: &projected,
        api_host: &api_host,
        api_port: api.addr().port(),
    };
    let config = kubelet::container_config(&pod, c, &view).unwrap();
    let id = node
        .cri()
        .create_container(&sandbox, &config, &sandbox_config)
        .unwrap();
    node.cri().start_container(&id).unwrap();
    let log = PathBuf::from(sandbox_config["log_directory"].as_str().unwrap())
        .join(config["log_path"].as_str().unwrap());
    let logs = || fs::read_to_string(&log).unwrap_or_default();

    // kubelet's prober: the manifest's exec probe inside the container.
    let probe = c.readiness_probe.as_ref().unwrap();
    let probe_cmd = probe.exec.as_ref().unwrap().command.clone().unwrap();
    let probe_timeout = i64::from(probe.timeout_seconds.unwrap_or(1));
    let ready = |node: &RuntimeNode| {
        let st = node.cri().container_status(&id).unwrap();
        assert_eq!(
            st["status"]["state"],
            "CONTAINER_RUNNING",
            "agent container not running: {st}\n{}",
            logs()
        );
        let (code, _, _) = node
            .cri()
            .exec_sync(&id, &probe_cmd, probe_timeout)
            .unwrap();
        code == 0
    };
    wait_for("readiness probe", Duration::from_secs(60), || ready(&node));

    // What the node got: our plugins (the image's bytes) next to the
    // primary's, the meta config wrapping the primary, the kubeconfig with a
    // token file, the state file, the ready file.
    for b in plexus_agent::install::DEFAULT_BINARIES {
        let installed = fs::read(node.cni_bin_dir().join(b)).unwrap();
        assert_eq!(
            installed,
            image.layer[&format!("usr/local/bin/{b}")].data,
            "{b} is not the image's"
        );
    }
    let conf: Value =
        serde_json::from_slice(&fs::read(node.cni_conf_dir().join("00-plexus.conflist")).unwrap())
            .unwrap();
    assert_eq!(conf["plugins"][0]["type"], "plexus");
    assert_eq!(conf["plugins"][0]["delegates"][0]["name"], "cluster");
    let aux = node.cni_conf_dir().join("plexus.d");
    let kubeconfig = fs::read_to_string(aux.join("plexus.kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("https://127.0.0.1:6443"),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains("/etc/cni/net.d/plexus.d/token"),
        "kubeconfig without the token file: {kubeconfig}"
    );
    assert_eq!(fs::read_to_string(aux.join("token")).unwrap(), TOKEN);
    let state = fs::read_to_string(host_path("/run/plexus/state.json")).unwrap();
    assert!(state.contains(VNIC_IP), "state file: {state}");
    assert!(host_path("/run/plexus/ready").is_file());
    // containerd switched to the meta plugin's config.
    wait_for(
        "containerd loads 00-plexus",
        Duration::from_secs(10),
        || {
            node.cri().status().unwrap()["info"]["cniconfig"]
                .to_string()
                .contains("plexus")
        },
    );

    // hostNetwork + NET_ADMIN: the VNIC configured in the node netns.
    let ens5 = node.netns().link("ens5").unwrap();
    assert_eq!(ens5["mtu"], 9000, "{ens5}");
    let addrs = node.netns().addrs("ens5").to_string();
    assert!(addrs.contains(VNIC_IP), "{addrs}");
    assert!(imds.request_count() > 0);

    // The device plugin registered with the kubelet, its socket next to
    // kubelet.sock.
    let regs = registration.wait_for_requests(1, Duration::from_secs(30));
    assert!(!regs.is_empty(), "no Register from the agent\n{}", logs());
    assert_eq!(regs[0].resource_name, "plexus.io/vf");
    assert!(registration.dir().join(&regs[0].endpoint).exists());

    // A pod through the plugins the container installed: the README's one
    // NAD and its example pod, scheduled here, the VF allocated to it by the
    // agent's device plugin (Allocate writes the device-info file) and then
    // reported by kubelet's PodResources.
    let mut nad = example("nad.yaml").remove(0);
    nad["metadata"]["namespace"] = json!("default");
    api.put_object(nad).unwrap();
    let mut app = example("pods.yaml").remove(0);
    let networks = app["metadata"]["annotations"][NETWORKS].as_str().unwrap();
    let app_pod = PodSpec::new(app["metadata"]["name"].as_str().unwrap())
        .unwrap()
        .annotation(NETWORKS, networks);
    app["metadata"]["namespace"] = json!(app_pod.namespace);
    app["metadata"]["uid"] = json!(app_pod.uid);
    app["spec"]["nodeName"] = json!(node_name);
    let container = app["spec"]["containers"][0]["name"].as_str().unwrap();
    let endpoint = registration.dir().join(&regs[0].endpoint);
    let env = kubelet::allocate_device(&endpoint, VNIC_PCI).unwrap();
    assert_eq!(env["PCIDEVICE_PLEXUS_IO_VF"], VNIC_PCI, "{env:?}");
    pod_resources.add_container(
        &app_pod.namespace,
        &app_pod.name,
        container,
        &[(&regs[0].resource_name, &[VNIC_PCI])],
    );
    api.put_pod(app).unwrap();
    // On failure the agent's log; containerd's (with the plugins' errors)
    // is printed by the node's teardown.
    let app_sandbox = node
        .run_pod(&app_pod)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\nagent log:\n{}", logs()));
    // eth0 from the wrapped primary, net1 the VNIC's NIC with its IP.
    assert!(
        app_sandbox.ip.starts_with("198.51.100."),
        "pod IP {}",
        app_sandbox.ip
    );
    let eth0 = link_at(&app_sandbox.netns, "eth0")
        .unwrap()
        .expect("no eth0");
    assert_eq!(
        ipv4_addrs(&eth0),
        [format!("{}/24", app_sandbox.ip)],
        "{eth0}"
    );
    let net1 = link_at(&app_sandbox.netns, "net1")
        .unwrap()
        .expect("no net1");
    assert_eq!(net1["address"], VNIC_MAC, "{net1}");
    assert_eq!(ipv4_addrs(&net1), [format!("{VNIC_IP}/24")], "{net1}");
    assert!(
        node.netns().link("ens5").is_none(),
        "ens5 still on the node"
    );
    // The network-status PATCH, with the projected token over TLS.
    let status = api
        .network_status(&app_pod.namespace, &app_pod.name)
        .expect("no network-status on the pod");
    assert_eq!(status.as_array().map(Vec::len), Some(2), "{status}");
    assert_eq!(status[0]["interface"], "eth0", "{status}");
    assert_eq!(status[0]["ips"], json!([app_sandbox.ip]), "{status}");
    assert_eq!(status[0]["default"], true, "{status}");
    assert_eq!(status[1]["name"], "default/sriov-vnic", "{status}");
    assert_eq!(status[1]["interface"], "net1", "{status}");
    assert_eq!(status[1]["ips"], json!([VNIC_IP]), "{status}");
    assert_eq!(status[1]["mac"], VNIC_MAC, "{status}");
    let pci = &status[1]["device-info"]["pci"]["pci-address"];
    assert_eq!(pci, VNIC_PCI, "{status}");
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let conns = api.connections();
    assert!(
        !conns.is_empty() && conns.iter().all(|c| c.tls),
        "{conns:?}"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(patches[0].authorization.as_deref(), Some(&*bearer));

    // The pod goes: the NIC is back on the node as it was found, and no
    // netns, sandbox or per-attachment record is left.
    node.cri().stop(&app_sandbox.id).unwrap();
    node.cri().remove(&app_sandbox.id).unwrap();
    assert!(!app_sandbox.netns.exists(), "pod netns left");
    let ens5 = node
        .netns()
        .link("ens5")
        .expect("ens5 not back on the node");
    assert_eq!(ens5["address"], VNIC_MAC, "{ens5}");
    assert_eq!(ens5["mtu"], 9000, "{ens5}");
    // The moves cleared its addresses; the agent's next reconcile pass
    // (every 10 s) configures the VNIC again.
    wait_for(
        "the agent re-applies the VNIC",
        Duration::from_secs(25),
        || node.netns().addrs("ens5").to_string().contains(VNIC_IP),
    );
    let ids = node.cri().sandbox_ids().unwrap();
    assert_eq!(
        ids,
        std::slice::from_ref(&sandbox),
        "only the agent's sandbox stays"
    );
    for dir in ["/var/lib/cni/plexus", "/var/lib/cni/plexus-host-device"] {
        let left: Vec<_> = fs::read_dir(host_path(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(&app_sandbox.id))
            .collect();
        assert!(left.is_empty(), "records left: {left:?}");
    }

    // The primary goes away: the probe turns the pod not ready.
    fs::remove_file(&primary).unwrap();
    wait_for("probe failing", Duration::from_secs(30), || !ready(&node));

    // kubelet's stop: SIGTERM, grace period, then the agent has exited 0 and
    // removed its device plugin socket.
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    node.cri().stop_container(&id, grace).unwrap();
    let st = node.cri().container_status(&id).unwrap();
    assert_eq!(st["status"]["state"], "CONTAINER_EXITED", "{st}");
    assert_eq!(st["status"]["exit_code"], 0, "{st}\n{}", logs());
    assert!(!registration.dir().join(&regs[0].endpoint).exists());
    node.cri().remove_container(&id).unwrap();
    node.cri().stop(&sandbox).unwrap();
    node.cri().remove(&sandbox).unwrap();
    drop(netns_mount);
    node.shutdown().unwrap();
}

/// The documents of `examples/plexus/<file>`, what a user applies.
fn example(file: &str) -> Vec<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plexus")
        .join(file);
    manifest::documents(&fs::read_to_string(p).unwrap()).unwrap()
}

/// kubelet's `pods/<uid>/volumes/kubernetes.io~projected/<name>` role.
fn work_sa_dir(work: &Path) -> PathBuf {
    let d = work.join("host/var/lib/kubelet/pods/e2e/volumes/kubernetes.io~projected/sa-token");
    fs::create_dir_all(&d).unwrap();
    d
}

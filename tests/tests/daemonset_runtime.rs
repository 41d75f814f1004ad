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
//! registration socket and pod-resources socket.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use plexus_e2e::manifest::Manifest;
use plexus_e2e::runtime::kubelet::{self, NodeView};
use plexus_e2e::runtime::{PodSpec, RuntimeNode};
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{Veth, VethEnd};
use plexus_testkit::podresources::{FakePodResources, FakeRegistration};
use serde_json::{json, Value};

const VNIC_MAC: &str = "02:00:17:dd:00:02";
const VNIC_IP: &str = "203.0.113.93";
const TOKEN: &str = "plexus-e2e-token";

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
fn runtime_daemonset_from_the_manifest_installs_the_node() {
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

    // The projected service-account volume.
    let projected = work_sa_dir(node.work_dir());
    kubelet::write_projected_sa(
        &projected,
        &[
            ("token", TOKEN.as_bytes()),
            ("ca.crt", b"-----BEGIN CERTIFICATE-----\n"),
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
    let view = NodeView {
        node_name: &node_name,
        pod_name: &pod_meta.name,
        namespace: &namespace,
        host_path: &host_path,
        projected_dir: &projected,
        api_host: "127.0.0.1",
        api_port: 6443,
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

/// kubelet's `pods/<uid>/volumes/kubernetes.io~projected/<name>` role.
fn work_sa_dir(work: &Path) -> PathBuf {
    let d = work.join("host/var/lib/kubelet/pods/e2e/volumes/kubernetes.io~projected/sa-token");
    fs::create_dir_all(&d).unwrap();
    d
}

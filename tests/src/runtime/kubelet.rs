//! What kubelet does with a pod spec before the runtime sees it, for the
//! DaemonSet test: the CRI `ContainerConfig` and the sandbox's namespace
//! options from the typed `PodSpec` (`k8s-openapi`), volumes resolved on
//! this node, env with `fieldRef`s filled in and the service env kubelet
//! injects, the projected service-account volume written the way kubelet's
//! atomic writer does. Anything the translation does not know fails loudly
//! instead of being dropped, so the test runs the manifest as written. And
//! kubelet's device manager admitting a pod: [`allocate_device`].

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Volume};
use plexus_kubelet_api::deviceplugin::v1beta1 as dp;
use serde_json::{json, Value};

/// Where things are on the simulated node.
pub struct NodeView<'a> {
    pub node_name: &'a str,
    pub pod_name: &'a str,
    pub namespace: &'a str,
    /// Maps a `hostPath` path to where that directory is on this node.
    pub host_path: &'a dyn Fn(&str) -> PathBuf,
    /// The projected volume's directory (see [`write_projected_sa`]).
    pub projected_dir: &'a Path,
    /// `KUBERNETES_SERVICE_HOST` / `_PORT` of the `kubernetes` Service.
    pub api_host: &'a str,
    pub api_port: u16,
}

/// Lays out a projected service-account volume as kubelet's atomic writer
/// does: the files in a timestamped `..<ts>` dir, `..data` pointing at it,
/// and one relative symlink per file through `..data` (so a rotation is
/// one rename of `..data`).
pub fn write_projected_sa(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let ts = "..2026_01_01_00_00_00.000000001";
    let data_dir = dir.join(ts);
    fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    for (name, bytes) in files {
        fs::write(data_dir.join(name), bytes).with_context(|| format!("writing {name}"))?;
        symlink(format!("..data/{name}"), dir.join(name))?;
    }
    symlink(ts, dir.join("..data"))?;
    Ok(())
}

fn env_value(e: &EnvVar, view: &NodeView<'_>) -> Result<String> {
    if let Some(v) = &e.value {
        return Ok(v.clone());
    }
    let field = e
        .value_from
        .as_ref()
        .and_then(|f| f.field_ref.as_ref())
        .ok_or_else(|| anyhow!("env {}: only value and fieldRef are supported", e.name))?;
    Ok(match field.field_path.as_str() {
        "spec.nodeName" => view.node_name.to_owned(),
        "metadata.name" => view.pod_name.to_owned(),
        "metadata.namespace" => view.namespace.to_owned(),
        other => bail!("env {}: fieldRef {other} not supported", e.name),
    })
}

/// Resolves a volume to a host directory, applying kubelet's hostPath type
/// checks (`Directory` must exist, `DirectoryOrCreate` is created).
fn volume_source(v: &Volume, view: &NodeView<'_>) -> Result<PathBuf> {
    if let Some(hp) = &v.host_path {
        let path = (view.host_path)(&hp.path);
        match hp.type_.as_deref() {
            Some("DirectoryOrCreate") => fs::create_dir_all(&path)
                .with_context(|| format!("volume {}: creating {}", v.name, path.display()))?,
            Some("Directory") if !path.is_dir() => bail!(
                "volume {}: hostPath type check failed: {} is not a directory",
                v.name,
                path.display()
            ),
            Some("Directory") | None | Some("") => {}
            Some(other) => bail!("volume {}: hostPath type {other} not supported", v.name),
        }
        return Ok(path);
    }
    if v.projected.is_some() {
        return Ok(view.projected_dir.to_path_buf());
    }
    bail!(
        "volume {}: only hostPath and projected are supported",
        v.name
    )
}

/// kubelet's milli-CPU -> cpu.shares (min 2).
fn cpu_shares(milli: i64) -> i64 {
    (milli * 1024 / 1000).max(2)
}

fn milli_cpu(q: &str) -> Result<i64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().context("cpu quantity"),
        None => Ok(q.parse::<i64>().context("cpu quantity")? * 1000),
    }
}

fn bytes(q: &str) -> Result<i64> {
    let (num, mult) = match q {
        _ if q.ends_with("Mi") => (&q[..q.len() - 2], 1 << 20),
        _ if q.ends_with("Gi") => (&q[..q.len() - 2], 1 << 30),
        _ if q.ends_with("Ki") => (&q[..q.len() - 2], 1 << 10),
        _ => (q, 1),
    };
    Ok(num.parse::<i64>().context("memory quantity")? * mult)
}

/// CRI namespace options for the pod (hostNetwork/hostPID/hostIPC).
pub fn namespace_options(pod: &PodSpec) -> Value {
    let mode = |host: Option<bool>, default: &str| {
        if host == Some(true) {
            "NODE".to_owned()
        } else {
            default.to_owned()
        }
    };
    json!({
        "network": mode(pod.host_network, "POD"),
        "pid": mode(pod.host_pid, "CONTAINER"),
        "ipc": mode(pod.host_ipc, "POD"),
    })
}

/// The CRI `ContainerConfig` kubelet sends for container `c` of `pod`.
pub fn container_config(pod: &PodSpec, c: &Container, view: &NodeView<'_>) -> Result<Value> {
    // Service env first (kubelet's order), the container's own after it.
    let mut envs = vec![
        json!({"key": "KUBERNETES_SERVICE_HOST", "value": view.api_host}),
        json!({"key": "KUBERNETES_SERVICE_PORT", "value": view.api_port.to_string()}),
    ];
    for e in c.env.iter().flatten() {
        envs.push(json!({"key": e.name, "value": env_value(e, view)?}));
    }
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| anyhow!("volumeMount {}: no such volume", m.name))?;
        let propagation = match m.mount_propagation.as_deref() {
            None | Some("None") => "PROPAGATION_PRIVATE",
            Some("HostToContainer") => "PROPAGATION_HOST_TO_CONTAINER",
            Some("Bidirectional") => "PROPAGATION_BIDIRECTIONAL",
            Some(o) => bail!("volumeMount {}: mountPropagation {o}", m.name),
        };
        if m.sub_path.is_some() || m.sub_path_expr.is_some() {
            bail!("volumeMount {}: subPath not supported", m.name);
        }
        mounts.push(json!({
            "container_path": m.mount_path,
            "host_path": volume_source(v, view)?.display().to_string(),
            "readonly": m.read_only.unwrap_or(false),
            "propagation": propagation,
        }));
    }
    let sc = c.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let mut resources = json!({"cpu_period": 100_000});
    let res = c.resources.clone().unwrap_or_default();
    if let Some(cpu) = res.requests.as_ref().and_then(|r| r.get("cpu")) {
        resources["cpu_shares"] = json!(cpu_shares(milli_cpu(&cpu.0)?));
    }
    if let Some(cpu) = res.limits.as_ref().and_then(|r| r.get("cpu")) {
        resources["cpu_quota"] = json!(milli_cpu(&cpu.0)? * 100);
    }
    if let Some(mem) = res.limits.as_ref().and_then(|r| r.get("memory")) {
        resources["memory_limit_in_bytes"] = json!(bytes(&mem.0)?);
    }
    Ok(json!({
        "metadata": {"name": c.name, "attempt": 0},
        "image": {"image": c.image.as_deref().unwrap_or_default()},
        "command": c.command.clone().unwrap_or_default(),
        "args": c.args.clone().unwrap_or_default(),
        "working_dir": c.working_dir.clone().unwrap_or_default(),
        "envs": envs,
        "mounts": mounts,
        "labels": {
            "io.kubernetes.container.name": c.name,
            "io.kubernetes.pod.name": view.pod_name,
            "io.kubernetes.pod.namespace": view.namespace,
        },
        "log_path": format!("{}/0.log", c.name),
        "linux": {
            "resources": resources,
            "security_context": {
                "capabilities": {
                    "add_capabilities": caps.add.unwrap_or_default(),
                    "drop_capabilities": caps.drop.unwrap_or_default(),
                },
                "privileged": sc.privileged.unwrap_or(false),
                "namespace_options": namespace_options(pod),
                "readonly_rootfs": sc.read_only_root_filesystem.unwrap_or(false),
                "no_new_privs": sc.allow_privilege_escalation == Some(false),
            }
        }
    }))
}

/// What kubelet's device manager does for a container requesting one
/// device of the plugin serving on `socket`: the device must be in the
/// plugin's first `ListAndWatch` answer and healthy, then `Allocate` for it.
/// Returns the env the answer gives the container.
pub fn allocate_device(socket: &Path, device: &str) -> Result<BTreeMap<String, String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ch = plexus_kubelet_api::connect_unix(socket, Duration::from_secs(5)).await?;
        let mut client = dp::device_plugin_client::DevicePluginClient::new(ch);
        let mut devices = client.list_and_watch(dp::Empty {}).await?.into_inner();
        let listed = devices
            .message()
            .await?
            .context("ListAndWatch ended without an answer")?;
        ensure!(
            listed
                .devices
                .iter()
                .any(|d| d.id == device && d.health == "Healthy"),
            "{device} not advertised healthy: {:?}",
            listed.devices
        );
        let answer = client
            .allocate(dp::AllocateRequest {
                container_requests: vec![dp::ContainerAllocateRequest {
                    devices_ids: vec![device.to_owned()],
                }],
            })
            .await?
            .into_inner();
        let container = answer
            .container_responses
            .into_iter()
            .next()
            .context("Allocate answered no container")?;
        Ok(container.envs.into_iter().collect())
    })
}

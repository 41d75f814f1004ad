//! One fuzz target per parser that reads outside input: what the runtime
//! sends (netconf, conflists, `prevResult`, `CNI_ARGS`), what a tenant writes
//! (the networks annotation, NAD configs), what another process or node
//! component writes (network-status, kubeconfigs, IMDS JSON, device-info,
//! host-device records, the plexus cache, the node state file) and what the
//! kubelet sends over gRPC (PodResources, device-plugin registration).
//! A target must never panic, hang or allocate without bound; the result of
//! parsing is used (converted, re-encoded) so later stages are reached too.

use std::path::Path;

use plexus_cni::{CniResult, NetConf, NetConfList};
use serde_json::Value;

/// A named parser entry point.
#[derive(Clone, Copy)]
pub struct Target {
    /// Directory name under `fuzz/corpus/` and the CLI name.
    pub name: &'static str,
    /// Feeds one input; must return for every input.
    pub run: fn(&[u8]),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every target, in a fixed order.
pub const TARGETS: &[Target] = &[
    Target {
        name: "netconf",
        run: netconf,
    },
    Target {
        name: "conflist",
        run: conflist,
    },
    Target {
        name: "cni_result",
        run: cni_result,
    },
    Target {
        name: "cni_args",
        run: cni_args,
    },
    Target {
        name: "networks_annotation",
        run: networks_annotation,
    },
    Target {
        name: "nad",
        run: nad,
    },
    Target {
        name: "network_status",
        run: network_status,
    },
    Target {
        name: "kubeconfig",
        run: kubeconfig,
    },
    Target {
        name: "imds",
        run: imds,
    },
    Target {
        name: "device_info",
        run: device_info,
    },
    Target {
        name: "host_device_record",
        run: host_device_record,
    },
    Target {
        name: "plexus_cache",
        run: plexus_cache,
    },
    Target {
        name: "node_state",
        run: node_state,
    },
    Target {
        name: "plugin_configs",
        run: plugin_configs,
    },
    Target {
        name: "pod_resources",
        run: pod_resources,
    },
    Target {
        name: "device_plugin",
        run: device_plugin,
    },
];

/// Looks a target up by name.
pub fn find(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn netconf(data: &[u8]) {
    let Ok(conf) = NetConf::parse(data) else {
        return;
    };
    let _ = conf.ipam_conf();
    let _ = conf.runtime();
    let _ = conf.valid_attachments();
    if let Ok(Some(prev)) = conf.parse_prev_result() {
        reencode(&prev);
    }
}

fn conflist(data: &[u8]) {
    let Ok(list) = NetConfList::parse(data) else {
        return;
    };
    for plugin in &list.plugins {
        if let Ok(bytes) = serde_json::to_vec(plugin) {
            netconf(&bytes);
        }
    }
}

fn reencode(result: &CniResult) {
    for v in VERSIONS {
        if let Ok(json) = result.to_json(v) {
            let _ = CniResult::from_json_as(&json, v);
        }
    }
}

fn cni_result(data: &[u8]) {
    if let Ok(result) = CniResult::from_slice(data, "1.0.0") {
        reencode(&result);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let _ = CniResult::from_json_any(&v);
        for ver in VERSIONS {
            let _ = CniResult::convert(&v, ver);
        }
    }
}

fn cni_args(data: &[u8]) {
    let s = text(data);
    if let Ok(args) = plexus_cni::args::CniArgs::parse(&s) {
        let _ = args.check_known(&["IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE"]);
        let _ = plexus_cni::args::CniArgs::parse(&args.to_env_string());
    }
    let _ = plexus_cni::version::Version::parse(&s);
    let _ = plexus_cni::skel::Command::parse(&s);
    let _ = plexus::delegates::NetworkRef::parse(&s, "default");
}

fn networks_annotation(data: &[u8]) {
    let _ = plexus_netattach::networks::parse_networks_annotation(&text(data), "default");
}

fn nad(data: &[u8]) {
    let Ok(nad) = plexus_netattach::NetworkAttachmentDefinition::from_json(data) else {
        return;
    };
    let _ = nad.qualified_name();
    let _ = nad.resource_name();
    if let Ok(conf) = nad.delegate_config() {
        if let Ok(bytes) = serde_json::to_vec(&conf) {
            conflist(&bytes);
            netconf(&bytes);
        }
    }
}

fn network_status(data: &[u8]) {
    if let Ok(statuses) = plexus_netattach::status::decode_network_status(&text(data)) {
        let _ = plexus_netattach::status::encode_network_status(&statuses);
    }
    let _ = plexus_netattach::api::Pod::from_json(data);
}

fn kubeconfig(data: &[u8]) {
    // Relative file references resolve under a directory that does not
    // exist; absolute ones name real node files, which the loader must read
    // with a bound (a FIFO or /dev/zero must not block or exhaust memory).
    let base = Path::new("/nonexistent/plexus-fuzz");
    let _ = plexus_netattach::ClientConfig::from_kubeconfig_str(
        &text(data),
        base,
        Path::new("fuzz-kubeconfig"),
    );
}

fn imds(data: &[u8]) {
    if let Ok(vnics) = serde_json::from_slice::<Vec<plexus_imds::Vnic>>(data) {
        for v in &vnics {
            // A VNIC that fails validation (e.g. IPv6 outside its subnet)
            // is an error, never a panic.
            if let Ok(nic) = plexus_imds::NodeNic::try_from(v) {
                let _ = nic.address.cidr();
            }
            let _ = v.prefix_len();
        }
        let _ = plexus_imds::primary_vnic(&vnics);
        let _ = plexus_imds::is_bare_metal(&vnics);
    }
    let _ = serde_json::from_slice::<plexus_imds::Instance>(data);
}

fn device_info(data: &[u8]) {
    if let Ok(info) = serde_json::from_slice::<plexus_netattach::status::DeviceInfo>(data) {
        let _ = serde_json::to_vec(&info);
    }
}

fn host_device_record(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<plexus_host_device::store::Record>(data) {
        let mac = plexus_cni::MacAddr::new([2, 0, 0, 0, 0, 1]);
        let _ = r.same_device(Some(&mac), None);
    }
}

fn plexus_cache(data: &[u8]) {
    if let Ok(entry) = serde_json::from_slice::<plexus::cache::CacheEntry>(data) {
        let _ = serde_json::to_vec(&entry);
    }
}

fn node_state(data: &[u8]) {
    if let Ok(state) = plexus_imds::node_state::NodeState::parse(data) {
        for v in &state.vnics {
            let _ = v.to_nic().address.cidr();
        }
    }
}

fn plugin_configs(data: &[u8]) {
    let _ = plexus::config::PlexusConf::parse(data);
    let _ = plexus_host_device::config::Config::load(data);
    let _ = plexus_static::load_config(data, "IP=198.51.100.7/24;GATEWAY=198.51.100.1");
    let _ = plexus_vnic::parse_request(data);
}

fn pod_resources(data: &[u8]) {
    use plexus_kubelet_api::podresources::v1 as api;
    use prost::Message;
    if let Ok(resp) = api::GetPodResourcesResponse::decode(data) {
        if let Some(pod) = resp.pod_resources {
            let _ = plexus_kubelet_api::devices_of(&pod);
        }
    }
    if let Ok(resp) = api::ListPodResourcesResponse::decode(data) {
        for pod in &resp.pod_resources {
            let _ = plexus_kubelet_api::devices_of(pod);
        }
    }
}

fn device_plugin(data: &[u8]) {
    use plexus_kubelet_api::deviceplugin::v1beta1 as api;
    use prost::Message;
    let _ = api::RegisterRequest::decode(data);
    let _ = api::AllocateRequest::decode(data);
    let _ = api::PreferredAllocationRequest::decode(data);
    let _ = api::ListAndWatchResponse::decode(data);
}

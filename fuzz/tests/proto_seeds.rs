//! The protobuf seeds under `corpus/pod_resources` and `corpus/device_plugin`
//! are binary, so they are encoded here from readable values and compared
//! with the checked-in files (`PLEXUS_FUZZ_WRITE_SEEDS=1` rewrites them).

use plexus_kubelet_api::deviceplugin::v1beta1 as dp;
use plexus_kubelet_api::podresources::v1 as pr;
use prost::Message;

fn container(name: &str, devs: &[(&str, &[&str])]) -> pr::ContainerResources {
    pr::ContainerResources {
        name: name.into(),
        devices: devs
            .iter()
            .map(|(res, ids)| pr::ContainerDevices {
                resource_name: (*res).into(),
                device_ids: ids.iter().map(|s| (*s).into()).collect(),
                topology: Some(pr::TopologyInfo {
                    nodes: vec![pr::NumaNode { id: 0 }],
                }),
            })
            .collect(),
        cpu_ids: vec![1, 2],
        ..Default::default()
    }
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let pod = pr::PodResources {
        name: "web-0".into(),
        namespace: "default".into(),
        containers: vec![
            container(
                "app",
                &[("plexus.io/vnic", &["0000:00:05.1", "0000:00:05.2"])],
            ),
            container("side", &[("plexus.io/sriov", &["0000:3b:02.0"])]),
        ],
    };
    let list = pr::ListPodResourcesResponse {
        pod_resources: vec![pod.clone(), pod.clone()],
    };
    let get = pr::GetPodResourcesResponse {
        pod_resources: Some(pod),
    };
    let register = dp::RegisterRequest {
        version: "v1beta1".into(),
        endpoint: "plexus-vnic.sock".into(),
        resource_name: "plexus.io/vnic".into(),
        options: Some(dp::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }),
    };
    let allocate = dp::AllocateRequest {
        container_requests: vec![dp::ContainerAllocateRequest {
            devices_ids: vec!["0000:00:05.1".into()],
        }],
    };
    vec![
        ("pod_resources", "list.bin", list.encode_to_vec()),
        ("pod_resources", "get.bin", get.encode_to_vec()),
        ("device_plugin", "register.bin", register.encode_to_vec()),
        ("device_plugin", "allocate.bin", allocate.encode_to_vec()),
    ]
}

#[test]
fn protobuf_seeds_match_their_source() {
    let write = std::env::var_os("PLEXUS_FUZZ_WRITE_SEEDS").is_some();
    for (target, file, bytes) in seeds() {
        let path = plexus_fuzz::fuzz_dir()
            .join("corpus")
            .join(target)
            .join(file);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(on_disk, bytes, "{} is stale", path.display());
    }
}

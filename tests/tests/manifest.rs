//! Every manifest under `deploy/` (plexus.yaml, uninstall.yaml,
//! operator.yaml, and any added later) against the Kubernetes API types and
//! the image: every field known to the API (a misspelled key fails), every
//! image reference is the one `plexus-image` builds (tag = workspace
//! version), and no container needs a shell.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use plexus_e2e::manifest::{all_paths, documents, strict, Manifest};
use serde_json::Value;

/// Every manifest under deploy/, parsed strictly, with its file name.
fn all_manifests() -> Vec<(String, Manifest)> {
    all_paths()
        .unwrap()
        .into_iter()
        .map(|p: PathBuf| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, Manifest::load_file(&p).unwrap())
        })
        .collect()
}

#[test]
fn manifest_parses_strictly_into_api_types() {
    let m = Manifest::load().unwrap();
    assert_eq!(m.crds.len(), 1);
    assert_eq!(m.service_accounts.len(), 1);
    assert_eq!(m.cluster_roles.len(), 1);
    assert_eq!(m.cluster_role_bindings.len(), 1);
    m.daemon_set().unwrap();

    let all = all_manifests();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for shipped in ["operator.yaml", "plexus.yaml", "uninstall.yaml"] {
        assert!(
            names.contains(&shipped),
            "{shipped} not under deploy/: {names:?}"
        );
    }
    let by_name = |n: &str| &all.iter().find(|(name, _)| name == n).unwrap().1;
    by_name("uninstall.yaml").daemon_set().unwrap();
    let op = by_name("operator.yaml");
    assert_eq!(op.crds.len(), 1);
    assert_eq!(op.deployments.len(), 1);
    assert_eq!((op.roles.len(), op.role_bindings.len()), (1, 1));
    assert_eq!(
        (op.cluster_roles.len(), op.cluster_role_bindings.len()),
        (1, 1)
    );
}

#[test]
fn misspelled_or_misplaced_fields_are_rejected() {
    let text = std::fs::read_to_string(plexus_e2e::manifest::path()).unwrap();
    for (from, to) in [
        ("imagePullPolicy:", "imagePulPolicy:"),
        ("readinessProbe:", "readinesProbe:"),
        ("mountPropagation:", "mountPropagaton:"),
        ("expirationSeconds:", "expirySeconds:"),
    ] {
        assert!(text.contains(from), "{from} not in the manifest");
        let bad = text.replacen(from, to, 1);
        let err = Manifest::parse(&bad).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(to.trim_end_matches(':')),
            "{to}: error does not name the field: {msg}"
        );
    }
    // A known field at the wrong level is unknown there.
    let doc: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "x", "image": "y"}
    });
    assert!(strict::<k8s_openapi::api::core::v1::ServiceAccount>(&doc).is_err());
    assert_eq!(documents("---\n---\na: 1\n").unwrap().len(), 1);
}

#[test]
fn image_tag_is_the_workspace_version() {
    assert!(plexus_image::image_ref().ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
    let mut checked = 0;
    for (file, m) in all_manifests() {
        for (workload, spec) in m.pod_specs() {
            for c in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                let at = format!("{file}: {workload} container {}", c.name);
                assert_eq!(
                    c.image.as_deref(),
                    Some(plexus_image::image_ref().as_str()),
                    "{at}"
                );
                // Loaded from the archive on the node, never pulled when
                // present: explicit, or the API's default for a tag that is
                // not `latest`.
                let policy = c.image_pull_policy.as_deref();
                assert!(
                    matches!(policy, None | Some("IfNotPresent")),
                    "{at}: {policy:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "agent, uninstall and operator containers: {checked}"
    );
    let m = Manifest::load().unwrap();
    let ds = m.daemon_set().unwrap();
    let c = &ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
}

/// Every command and probe of `spec`'s containers, as argv.
fn commands(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        commands.push(c.command.clone().unwrap_or_default());
        for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
            .into_iter()
            .flatten()
        {
            assert!(probe.http_get.is_none() && probe.tcp_socket.is_none());
            commands.push(probe.exec.as_ref().unwrap().command.clone().unwrap());
        }
        if let Some(lc) = &c.lifecycle {
            for h in [&lc.post_start, &lc.pre_stop].into_iter().flatten() {
                commands.push(h.exec.as_ref().unwrap().command.clone().unwrap());
            }
        }
    }
    commands
}

/// The image has no shell and nothing but our binaries: every command and
/// probe of every manifest must exec one of them by absolute path.
#[test]
fn every_command_execs_a_binary_of_the_image() {
    let mut workloads = Vec::new();
    for (file, m) in all_manifests() {
        for (workload, spec) in m.pod_specs() {
            let cmds = commands(spec);
            assert!(!cmds.is_empty(), "{file}: {workload} runs nothing");
            for cmd in cmds {
                let bin = cmd
                    .first()
                    .unwrap_or_else(|| panic!("{file}: {workload}: a container without command"));
                let name = bin
                    .strip_prefix(&format!("{}/", plexus_image::BIN_DIR))
                    .unwrap_or_else(|| {
                        panic!("{file}: {workload}: {cmd:?} does not exec a binary in the image's bin dir")
                    });
                assert!(
                    plexus_image::BINARIES.contains(&name),
                    "{file}: {workload}: {name} not in the image"
                );
            }
            workloads.push(format!("{file}: {workload}"));
        }
    }
    for w in [
        "plexus.yaml: DaemonSet plexus",
        "uninstall.yaml: DaemonSet plexus-uninstall",
        "operator.yaml: Deployment plexus-operator",
    ] {
        assert!(
            workloads.iter().any(|x| x == w),
            "{w} not checked: {workloads:?}"
        );
    }
}

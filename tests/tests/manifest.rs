//! `deploy/plexus.yaml` against the Kubernetes API types and the image: every
//! field known to the API (a misspelled key fails), the image reference is
//! the one `plexus-image` builds (tag = workspace version), and the container
//! needs no shell.

#![allow(clippy::unwrap_used)]

use plexus_e2e::manifest::{documents, strict, Manifest};
use serde_json::Value;

#[test]
fn manifest_parses_strictly_into_api_types() {
    let m = Manifest::load().unwrap();
    assert_eq!(m.crds.len(), 1);
    assert_eq!(m.service_accounts.len(), 1);
    assert_eq!(m.cluster_roles.len(), 1);
    assert_eq!(m.cluster_role_bindings.len(), 1);
    m.daemon_set().unwrap();
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
    let m = Manifest::load().unwrap();
    let ds = m.daemon_set().unwrap();
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some(plexus_image::image_ref().as_str()));
    assert!(plexus_image::image_ref().ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
    // Loaded from the archive on the node, never pulled when present.
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
}

/// The image has no shell and nothing but our binaries: every command and
/// probe the manifest runs must exec one of them by absolute path.
#[test]
fn every_command_execs_a_binary_of_the_image() {
    let m = Manifest::load().unwrap();
    let spec = m
        .daemon_set()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
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
    assert!(commands.len() >= 2, "container command and readiness probe");
    for cmd in commands {
        let bin = cmd.first().unwrap();
        let name = bin
            .strip_prefix(&format!("{}/", plexus_image::BIN_DIR))
            .unwrap_or_else(|| panic!("{cmd:?} does not exec a binary in the image's bin dir"));
        assert!(
            plexus_image::BINARIES.contains(&name),
            "{name} not in the image"
        );
    }
}

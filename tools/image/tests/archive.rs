//! The archive format on small inputs: layout, digests, names, run config,
//! reproducibility, and the agreement between the image's binary list and
//! what the agent installs. The real image (static binaries, containerd
//! import) is checked in `tests/tests/image.rs` and the DaemonSet e2e test.

#![allow(clippy::unwrap_used)]

use plexus_image::inspect::inspect;
use plexus_image::oci::{build, File, ImageSpec};
use serde_json::json;

fn spec(created: u64) -> ImageSpec {
    ImageSpec {
        name: "ghcr.io/plexus/plexus:9.8.7".into(),
        created,
        entrypoint: vec!["/usr/local/bin/a".into()],
        cmd: vec!["run".into()],
        env: vec!["PATH=/usr/local/bin".into()],
        labels: vec![("org.opencontainers.image.version".into(), "9.8.7".into())],
    }
}

fn files() -> Vec<File> {
    vec![
        File {
            path: "usr/local/bin/b".into(),
            mode: 0o755,
            data: b"bee".to_vec(),
        },
        File {
            path: "usr/local/bin/a".into(),
            mode: 0o755,
            data: vec![7; 100_000],
        },
    ]
}

#[test]
fn layout_names_config_and_layer_check_out() {
    let archive = build(&files(), &spec(1_700_000_000)).unwrap();
    let img = inspect(&archive.bytes).unwrap();
    assert_eq!(img.manifest_digest, archive.manifest_digest);
    for p in ["oci-layout", "index.json", "manifest.json"] {
        assert!(img.archive_paths.iter().any(|x| x == p), "{p} missing");
    }
    let mut sorted = img.archive_paths.clone();
    sorted.sort();
    assert_eq!(img.archive_paths, sorted, "entries in a fixed order");

    let ann = &img.index["manifests"][0]["annotations"];
    assert_eq!(
        ann["io.containerd.image.name"],
        "ghcr.io/plexus/plexus:9.8.7"
    );
    assert_eq!(
        ann["org.opencontainers.image.ref.name"],
        "ghcr.io/plexus/plexus:9.8.7"
    );
    assert_eq!(
        img.index["manifests"][0]["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(
        img.docker_manifest[0]["RepoTags"],
        json!(["ghcr.io/plexus/plexus:9.8.7"])
    );
    let c = &img.config;
    assert_eq!(c["created"], "2023-11-14T22:13:20Z");
    assert_eq!(c["config"]["Entrypoint"], json!(["/usr/local/bin/a"]));
    assert_eq!(c["config"]["Cmd"], json!(["run"]));
    assert_eq!(
        c["config"]["Labels"]["org.opencontainers.image.version"],
        "9.8.7"
    );

    let paths: Vec<&str> = img.layer.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/a",
            "usr/local/bin/b"
        ]
    );
    for (p, e) in &img.layer {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 1_700_000_000), "{p}");
        assert_eq!(e.mode, 0o755, "{p}");
    }
    assert_eq!(img.layer["usr/local/bin/a"].data, vec![7; 100_000]);
}

#[test]
fn same_inputs_same_bytes_and_time_changes_the_digest() {
    let a = build(&files(), &spec(1)).unwrap();
    let b = build(&files(), &spec(1)).unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.manifest_digest, b.manifest_digest);
    let c = build(&files(), &spec(2)).unwrap();
    assert_ne!(a.manifest_digest, c.manifest_digest);
}

#[test]
fn paths_escaping_the_root_are_refused() {
    for bad in ["/etc/x", "usr/../x", "usr//x", ""] {
        let f = File {
            path: bad.into(),
            mode: 0o644,
            data: vec![],
        };
        assert!(build(&[f], &spec(0)).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn corrupted_blob_is_detected() {
    let archive = build(&files(), &spec(0)).unwrap();
    let mut bytes = archive.bytes.clone();
    // Change the config blob (the first `"os":"linux"`; the index comes
    // after the blobs) without renaming it.
    let at = bytes
        .windows(12)
        .position(|w| w == br#""os":"linux""#)
        .unwrap();
    bytes[at + 6] = b'L';
    assert!(inspect(&bytes).is_err());
}

/// Every binary the agent copies onto the node must be in the image, next
/// to the entrypoint, in the directory the agent copies from.
#[test]
fn image_ships_every_binary_the_agent_installs() {
    for b in plexus_agent::install::DEFAULT_BINARIES {
        assert!(plexus_image::BINARIES.contains(&b), "{b} not in the image");
    }
    let entry = plexus_image::ENTRYPOINT
        .strip_prefix(&format!("{}/", plexus_image::BIN_DIR))
        .unwrap();
    assert!(plexus_image::BINARIES.contains(&entry));
    assert_eq!(plexus_image::BIN_DIR, "/usr/local/bin"); // the agent's --source-bin-dir default
}

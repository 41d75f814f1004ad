//! The OCI image archive: pure functions from files + metadata to the bytes
//! of one tar (OCI image layout 1.0.0 plus Docker's `manifest.json`).
//!
//! Layout (image-spec `image-layout.md`): `oci-layout`, `index.json` with
//! one manifest descriptor annotated `org.opencontainers.image.ref.name` and
//! `io.containerd.image.name` (containerd's importer names the image from
//! the latter), `blobs/sha256/<digest>` for the manifest, config and the
//! gzip layer. `manifest.json` (`Config`, `RepoTags`, `Layers` as paths in
//! the same tar) is what `docker load` before Docker 25 reads.

use std::io::Write;

use flate2::{Compression, GzBuilder};
use plexus_cni::timefmt::rfc3339;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// containerd's image-name annotation on index descriptors.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Error)]
pub enum OciError {
    #[error("tar entry {path}: {source}")]
    Tar {
        path: String,
        source: std::io::Error,
    },
    #[error("gzip: {0}")]
    Gzip(std::io::Error),
    #[error("file path {0:?} must be relative, without `..` or empty parts")]
    BadPath(String),
}

/// One regular file of the image's filesystem.
#[derive(Debug, Clone)]
pub struct File {
    /// Relative to `/`, e.g. `usr/local/bin/plexus-agent`.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// The image's run-time configuration and identity.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Full reference, e.g. `ghcr.io/plexus/plexus:0.1.0`.
    pub name: String,
    /// Seconds since the epoch for every timestamp (`SOURCE_DATE_EPOCH`).
    pub created: u64,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// OCI annotation/label values (`org.opencontainers.image.*`).
    pub labels: Vec<(String, String)>,
}

/// A built archive and the digests that identify the image.
#[derive(Debug, Clone)]
pub struct Archive {
    pub bytes: Vec<u8>,
    /// `sha256:…` of the manifest: the image digest runtimes report.
    pub manifest_digest: String,
    /// `sha256:…` of the config: Docker's image ID.
    pub config_digest: String,
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn tar_err(path: &str) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Tar {
        path: path.to_owned(),
        source,
    }
}

/// A deterministic tar: the given entries in order, uid/gid 0, no user or
/// group names, every mtime `mtime`. `None` data is a directory.
fn tar(entries: &[(String, u32, Option<&[u8]>)], mtime: u64) -> Result<Vec<u8>, OciError> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(tar_err(path))?;
        h.set_mode(*mode);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
            }
        }
        h.set_cksum();
        b.append(&h, data.unwrap_or_default())
            .map_err(tar_err(path))?;
    }
    b.into_inner().map_err(tar_err("end of archive"))
}

/// The layer tar: `files` plus every parent directory (0755), sorted.
pub fn layer_tar(files: &[File], mtime: u64) -> Result<Vec<u8>, OciError> {
    let mut entries: Vec<(String, u32, Option<&[u8]>)> = Vec::new();
    for f in files {
        let parts: Vec<&str> = f.path.split('/').collect();
        if f.path.starts_with('/') || parts.iter().any(|p| p.is_empty() || *p == "..") {
            return Err(OciError::BadPath(f.path.clone()));
        }
        for i in 1..parts.len() {
            let dir = format!("{}/", parts[..i].join("/"));
            if !entries.iter().any(|(p, _, _)| *p == dir) {
                entries.push((dir, 0o755, None));
            }
        }
        entries.push((f.path.clone(), f.mode, Some(&f.data)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    tar(&entries, mtime)
}

/// gzip without file name, with mtime 0 and OS "unknown": same input, same
/// bytes.
fn gzip(data: &[u8]) -> Result<Vec<u8>, OciError> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::default());
    gz.write_all(data).map_err(OciError::Gzip)?;
    gz.finish().map_err(OciError::Gzip)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // serde_json keeps insertion order (preserve_order): fixed key order.
    v.to_string().into_bytes()
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest(data), "size": data.len()})
}

fn blob_path(data: &[u8]) -> String {
    format!("blobs/sha256/{}", &digest(data)["sha256:".len()..])
}

/// The image config (image-spec `config.md`).
fn config(spec: &ImageSpec, diff_id: &str) -> Value {
    let created = rfc3339(spec.created);
    let labels: serde_json::Map<String, Value> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": spec.env,
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd,
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "plexus-image"}],
    })
}

/// Builds the whole archive.
pub fn build(files: &[File], spec: &ImageSpec) -> Result<Archive, OciError> {
    let layer_raw = layer_tar(files, spec.created)?;
    let layer = gzip(&layer_raw)?;
    let config = to_bytes(&config(spec, &digest(&layer_raw)));
    let annotations: serde_json::Map<String, Value> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, &config),
        "layers": [descriptor(MEDIA_LAYER_GZIP, &layer)],
        "annotations": annotations,
    }));
    let mut index_entry = descriptor(MEDIA_MANIFEST, &manifest);
    index_entry["annotations"] = json!({
        ANNOTATION_CONTAINERD_NAME: spec.name,
        ANNOTATION_REF_NAME: spec.name,
    });
    index_entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [index_entry],
    }));
    let docker = to_bytes(&json!([{
        "Config": blob_path(&config),
        "RepoTags": [spec.name],
        "Layers": [blob_path(&layer)],
    }]));
    let layout = to_bytes(&json!({"imageLayoutVersion": "1.0.0"}));

    let mut entries: Vec<(String, u32, Option<&[u8]>)> = vec![
        ("blobs/".into(), 0o755, None),
        ("blobs/sha256/".into(), 0o755, None),
    ];
    for blob in [&config, &layer, &manifest] {
        entries.push((blob_path(blob), 0o644, Some(blob)));
    }
    entries.push(("index.json".into(), 0o644, Some(&index)));
    entries.push(("manifest.json".into(), 0o644, Some(&docker)));
    entries.push(("oci-layout".into(), 0o644, Some(&layout)));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Archive {
        bytes: tar(&entries, spec.created)?,
        manifest_digest: digest(&manifest),
        config_digest: digest(&config),
    })
}

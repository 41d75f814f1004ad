//! Reads an image archive back and checks what every loader relies on: the
//! layout marker, blob digests equal to their names, the index -> manifest
//! -> config/layer chain, the layer's `diff_id`, and Docker's
//! `manifest.json` pointing at the same config and layer. The image tests
//! use it on the archive `scripts/build-image.sh` produced.

use std::collections::BTreeMap;
use std::io::Read;

use flate2::read::GzDecoder;
use serde_json::Value;
use thiserror::Error;

use crate::oci::{digest, MEDIA_LAYER_GZIP, MEDIA_MANIFEST};

#[derive(Debug, Error)]
pub enum InspectError {
    #[error("reading the archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} missing from the archive")]
    Missing(String),
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: String,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One file or directory of the image's filesystem.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub is_dir: bool,
    pub data: Vec<u8>,
}

/// A checked archive.
#[derive(Debug, Clone)]
pub struct Image {
    /// The outer tar's entry names, in archive order.
    pub archive_paths: Vec<String>,
    pub index: Value,
    pub manifest: Value,
    pub manifest_digest: String,
    pub config: Value,
    pub docker_manifest: Value,
    /// The layer's entries by path (directories end in `/`).
    pub layer: BTreeMap<String, LayerEntry>,
}

fn invalid(msg: impl Into<String>) -> InspectError {
    InspectError::Invalid(msg.into())
}

fn json(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Result<Value, InspectError> {
    let bytes = files
        .get(name)
        .ok_or_else(|| InspectError::Missing(name.to_owned()))?;
    serde_json::from_slice(bytes).map_err(|source| InspectError::Json {
        file: name.to_owned(),
        source,
    })
}

/// The blob a descriptor names, after checking its digest and size.
fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, desc: &Value) -> Result<&'a [u8], InspectError> {
    let d = desc["digest"]
        .as_str()
        .ok_or_else(|| invalid(format!("descriptor without digest: {desc}")))?;
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| invalid(format!("digest {d} is not sha256")))?;
    let path = format!("blobs/sha256/{hex}");
    let data = files.get(&path).ok_or(InspectError::Missing(path))?;
    if digest(data) != d || desc["size"].as_u64() != Some(data.len() as u64) {
        return Err(invalid(format!("blob {d}: digest or size mismatch")));
    }
    Ok(data)
}

fn entries(tar_bytes: &[u8]) -> Result<Vec<(String, LayerEntry)>, InspectError> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for e in archive.entries()? {
        let mut e = e?;
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        out.push((
            path,
            LayerEntry {
                mode: h.mode()?,
                uid: h.uid()?,
                gid: h.gid()?,
                mtime: h.mtime()?,
                is_dir: h.entry_type().is_dir(),
                data,
            },
        ));
    }
    Ok(out)
}

/// Parses and checks an archive.
pub fn inspect(archive: &[u8]) -> Result<Image, InspectError> {
    let outer = entries(archive)?;
    let archive_paths: Vec<String> = outer.iter().map(|(p, _)| p.clone()).collect();
    let files: BTreeMap<String, Vec<u8>> = outer
        .into_iter()
        .filter(|(_, e)| !e.is_dir)
        .map(|(p, e)| (p, e.data))
        .collect();
    if json(&files, "oci-layout")?["imageLayoutVersion"] != "1.0.0" {
        return Err(invalid("oci-layout: imageLayoutVersion is not 1.0.0"));
    }
    let index = json(&files, "index.json")?;
    let [desc] = index["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    else {
        return Err(invalid("index.json must list exactly one manifest"));
    };
    if desc["mediaType"] != MEDIA_MANIFEST {
        return Err(invalid("index.json: not an OCI manifest descriptor"));
    }
    let manifest_bytes = blob(&files, desc)?;
    let manifest: Value =
        serde_json::from_slice(manifest_bytes).map_err(|source| InspectError::Json {
            file: "manifest blob".into(),
            source,
        })?;
    let config_bytes = blob(&files, &manifest["config"])?;
    let config: Value =
        serde_json::from_slice(config_bytes).map_err(|source| InspectError::Json {
            file: "config blob".into(),
            source,
        })?;
    let [layer_desc] = manifest["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    else {
        return Err(invalid("the manifest must list exactly one layer"));
    };
    if layer_desc["mediaType"] != MEDIA_LAYER_GZIP {
        return Err(invalid("the layer is not an OCI gzip layer"));
    }
    let mut layer_tar = Vec::new();
    GzDecoder::new(blob(&files, layer_desc)?).read_to_end(&mut layer_tar)?;
    if config["rootfs"]["diff_ids"] != serde_json::json!([digest(&layer_tar)]) {
        return Err(invalid("config rootfs.diff_ids does not match the layer"));
    }
    let docker_manifest = json(&files, "manifest.json")?;
    let hex = |d: &Value| d["digest"].as_str().unwrap_or("").replace("sha256:", "");
    let d = &docker_manifest[0];
    if d["Config"] != format!("blobs/sha256/{}", hex(&manifest["config"]))
        || d["Layers"] != serde_json::json!([format!("blobs/sha256/{}", hex(layer_desc))])
    {
        return Err(invalid(
            "manifest.json does not name the OCI config and layer",
        ));
    }
    Ok(Image {
        archive_paths,
        manifest_digest: digest(manifest_bytes),
        index,
        manifest,
        config,
        docker_manifest,
        layer: entries(&layer_tar)?.into_iter().collect(),
    })
}

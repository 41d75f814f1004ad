//! The image `scripts/build-image.sh` builds (test profile: the same script,
//! linking and packing as release): a valid OCI archive loaders accept, the
//! binaries the agent installs present and static, the run config the
//! manifest relies on, and the same digest on a rebuild of the same commit.

#![allow(clippy::unwrap_used)]

use plexus_image::elf::{linking, Linking};
use plexus_image::inspect::inspect;
use serde_json::json;

#[test]
fn image_archive_is_complete_static_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    plexus_e2e::image::build(&a, None).unwrap();
    plexus_e2e::image::build(&b, None).unwrap();
    let (a_bytes, b_bytes) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let img = inspect(&a_bytes).unwrap();
    let again = inspect(&b_bytes).unwrap();
    assert_eq!(
        img.manifest_digest, again.manifest_digest,
        "rebuild changed the image"
    );
    assert_eq!(a_bytes, b_bytes);

    let name = plexus_image::image_ref();
    let ann = &img.index["manifests"][0]["annotations"];
    assert_eq!(ann["io.containerd.image.name"], name.as_str());
    assert_eq!(ann["org.opencontainers.image.ref.name"], name.as_str());
    assert_eq!(img.docker_manifest[0]["RepoTags"], json!([name]));
    let cfg = &img.config["config"];
    assert_eq!(cfg["Entrypoint"], json!(["/usr/local/bin/plexus-agent"]));
    assert_eq!(cfg["Cmd"], json!(["run"]));
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );

    // Our binaries and their directories, nothing else (no shell, no libc).
    let mut want: Vec<String> = ["usr/", "usr/local/", "usr/local/bin/"]
        .into_iter()
        .map(String::from)
        .collect();
    want.extend(
        plexus_image::BINARIES
            .iter()
            .map(|b| format!("usr/local/bin/{b}")),
    );
    want.sort();
    assert_eq!(img.layer.keys().cloned().collect::<Vec<_>>(), want);
    for b in plexus_agent::install::DEFAULT_BINARIES
        .iter()
        .chain(&["plexus-agent"])
    {
        let e = &img.layer[&format!("usr/local/bin/{b}")];
        assert_eq!(e.mode, 0o755, "{b}");
        assert_eq!((e.uid, e.gid), (0, 0), "{b}");
        assert_eq!(
            linking(&e.data).unwrap(),
            Linking::Static,
            "{b} needs a loader"
        );
    }
    // Every timestamp is the commit's: nothing from the build machine's clock.
    let times: std::collections::BTreeSet<u64> = img.layer.values().map(|e| e.mtime).collect();
    assert_eq!(times.len(), 1);

    // containers/image (skopeo; podman load uses the same library) reads the
    // file both as an OCI archive, by the ref name, and as a Docker archive
    // (manifest.json), and copying verifies every blob and diff_id.
    plexus_e2e::runtime::ensure_deps().unwrap();
    let a_str = a.to_str().unwrap();
    let by_name = format!("oci-archive:{a_str}:{name}");
    let inspected = skopeo(&["inspect", &by_name]);
    assert_eq!(inspected["Digest"], img.manifest_digest.as_str());
    let docker = skopeo(&["inspect", &format!("docker-archive:{a_str}")]);
    assert_eq!(docker["Labels"], cfg["Labels"]);
    let copy = tmp.path().join("copy");
    let dest = format!("dir:{}", copy.display());
    let src = format!("docker-archive:{a_str}");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "-q", &src, &dest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another SOURCE_DATE_EPOCH is another image: the time is really used.
    let c = tmp.path().join("c.tar");
    plexus_e2e::image::build(&c, Some(86_400)).unwrap();
    let other = inspect(&std::fs::read(&c).unwrap()).unwrap();
    assert_ne!(other.manifest_digest, img.manifest_digest);
    assert_eq!(other.config["created"], "1970-01-02T00:00:00Z");
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `podman load` takes the archive under the manifest's image name, and
/// every binary in it starts inside a container (`--version`): the image's
/// entrypoint and each `--entrypoint` the agent's installer copies from.
/// Podman runs with its storage and network config in the test's temp dir
/// (vfs driver, no network, no events), so nothing of it outlives the test.
#[test]
fn image_loads_and_runs_in_podman() {
    plexus_e2e::runtime::ensure_deps().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("plexus.oci.tar");
    plexus_e2e::image::build(&archive, None).unwrap();
    let podman = Podman::new(tmp.path());
    let name = plexus_image::image_ref();
    let loaded = podman.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        loaded.contains(&format!("Loaded image: {name}")),
        "{loaded}"
    );
    let version = env!("CARGO_PKG_VERSION");
    // podman's default rlimits (1048576 files, 4194304 processes) exceed
    // this VM's hard limits, which the container (without CAP_SYS_RESOURCE)
    // cannot raise; a `--version` needs few of either.
    let limits = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    let run = |entrypoint: Option<&str>| {
        let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none"];
        args.extend(limits);
        if let Some(e) = entrypoint {
            args.extend(["--entrypoint", e]);
        }
        args.extend([name.as_str(), "--version"]);
        podman.run(&args)
    };
    let agent = run(None);
    assert!(
        agent.starts_with(&format!("plexus-agent {version} (")),
        "{agent}"
    );
    for b in plexus_agent::install::DEFAULT_BINARIES {
        let out = run(Some(&format!("/usr/local/bin/{b}")));
        assert!(out.starts_with(&format!("{b} {version} (")), "{b}: {out}");
    }
}

/// podman with all its state under one directory, reset on drop.
struct Podman {
    base: Vec<String>,
    /// `XDG_CONFIG_HOME`: podman creates its per-user config dir there.
    config: std::path::PathBuf,
}

impl Podman {
    fn new(dir: &std::path::Path) -> Self {
        let d = |s: &str| dir.join(s).to_str().unwrap().to_owned();
        Self {
            base: vec![
                "--root".into(),
                d("storage"),
                "--runroot".into(),
                d("run"),
                "--tmpdir".into(),
                d("tmp"),
                "--storage-driver".into(),
                "vfs".into(),
                "--network-config-dir".into(),
                d("cni"),
                "--events-backend".into(),
                "none".into(),
                "--cgroup-manager".into(),
                "cgroupfs".into(),
            ],
            config: dir.join("config"),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("podman")
            .env("XDG_CONFIG_HOME", &self.config)
            .args(&self.base)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Unmounts and removes whatever the storage holds; the temp dir goes
        // with the test.
        let _ = std::process::Command::new("podman")
            .env("XDG_CONFIG_HOME", &self.config)
            .args(&self.base)
            .args(["system", "reset", "--force"])
            .output();
    }
}

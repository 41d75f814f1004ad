//! `plexus-image`: see the library docs. `scripts/build-image.sh` drives it:
//! it builds [`plexus_image::BINARIES`] static, then runs `build`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use plexus_image::elf::{self, Linking};
use plexus_image::oci::{self, File, ImageSpec};
use plexus_image::{image_ref, BINARIES, BIN_DIR, CMD, ENTRYPOINT, VERSION};

#[derive(Parser, Debug)]
#[command(
    name = "plexus-image",
    version,
    about = "Build the Plexus OCI image archive"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the binaries the image ships, one a line (for cargo --bin).
    Binaries,
    /// Print the image reference (repository:version).
    Ref,
    /// Pack the binaries of --bin-dir into an OCI image archive.
    Build {
        /// Directory holding the static binaries (cargo's output dir).
        #[arg(long)]
        bin_dir: PathBuf,
        /// Archive to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// Timestamp of every entry and of the config.
        #[arg(long, env = "SOURCE_DATE_EPOCH")]
        source_date_epoch: u64,
        /// Commit the binaries were built from (label
        /// org.opencontainers.image.revision).
        #[arg(long)]
        revision: Option<String>,
    },
}

/// The one place that writes to stdout: command results.
#[allow(clippy::print_stdout)]
fn emit(text: &str) {
    println!("{text}");
}

/// Reads one binary, refusing anything the node could not run without the
/// image's (absent) dynamic loader.
fn read_static(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    match elf::linking(&data).with_context(|| path.display().to_string())? {
        Linking::Static => Ok(data),
        Linking::Dynamic { interpreter } => bail!(
            "{} is dynamically linked (interpreter {interpreter}); build it with \
             -C target-feature=+crt-static (scripts/build-image.sh does)",
            path.display()
        ),
    }
}

fn build(bin_dir: &Path, out: &Path, created: u64, revision: Option<&str>) -> Result<()> {
    let mut files = Vec::new();
    for name in BINARIES {
        files.push(File {
            path: format!("{}/{name}", BIN_DIR.trim_start_matches('/')),
            mode: 0o755,
            data: read_static(bin_dir, name)?,
        });
    }
    let mut labels = vec![(
        "org.opencontainers.image.version".to_owned(),
        VERSION.to_owned(),
    )];
    if let Some(r) = revision {
        labels.push(("org.opencontainers.image.revision".to_owned(), r.to_owned()));
    }
    let spec = ImageSpec {
        name: image_ref(),
        created,
        entrypoint: vec![ENTRYPOINT.to_owned()],
        cmd: CMD.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![format!("PATH={BIN_DIR}")],
        labels,
    };
    let archive = oci::build(&files, &spec)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = out.with_extension("tmp");
    fs::write(&tmp, &archive.bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    eprintln!(
        "plexus-image: {} {} ({} bytes) -> {}",
        spec.name,
        archive.manifest_digest,
        archive.bytes.len(),
        out.display()
    );
    emit(&archive.manifest_digest);
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Binaries => {
            emit(&BINARIES.join("\n"));
            Ok(())
        }
        Cmd::Ref => {
            emit(&image_ref());
            Ok(())
        }
        Cmd::Build {
            bin_dir,
            out,
            source_date_epoch,
            revision,
        } => build(&bin_dir, &out, source_date_epoch, revision.as_deref()),
    }
}

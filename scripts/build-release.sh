#!/usr/bin/env bash
# Builds the binaries we ship (and the benchmark drivers) as static-pie
# executables: `-C target-feature=+crt-static` on the x86_64 glibc target.
#
# Why static: the agent copies the plugins onto the node's /opt/cni/bin, and
# the node's glibc is not the image's (Oracle Linux 8 ships 2.28, the build
# image 2.36), so dynamically linked plugins could fail to start there. A
# static-pie binary also skips the dynamic loader: every CNI call starts
# ~0.5 ms faster (BENCHMARKS.md). The one catch of static glibc, NSS for host
# name lookups, does not arise: kubeconfigs written by `plexus-agent install`
# name the API server by IP, and IMDS is an IP.
#
# `--target` is explicit so RUSTFLAGS reach only target artifacts, not build
# scripts and proc-macros (which must stay dynamic). Output:
# target/x86_64-unknown-linux-gnu/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --release --locked --target x86_64-unknown-linux-gnu \
    --bin plexus --bin host-device --bin static --bin vnic --bin plexus-agent \
    --bin plexus-bench --bin plexus-bench-meta --bin plexus-bench-move "$@"
echo "target/x86_64-unknown-linux-gnu/release"

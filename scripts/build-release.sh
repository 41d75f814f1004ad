#!/usr/bin/env bash
# Builds the binaries we ship (and, for release, the benchmark drivers) as
# static-pie executables: `-C target-feature=+crt-static` on the x86_64 glibc
# target.
#
# Why static: the agent copies the plugins onto the node's /opt/cni/bin, and
# the node's glibc is not the one they were built against (Oracle Linux 8
# ships 2.28, Debian 12 2.36), and the image has no libc at all
# (scripts/build-image.sh), so dynamically linked binaries could not start
# there. A static-pie binary also skips the dynamic loader: every CNI call
# starts ~0.5 ms faster (BENCHMARKS.md). The one catch of static glibc, NSS
# for host name lookups, does not arise: kubeconfigs written by
# `plexus-agent install` name the API server by IP, and IMDS is an IP.
#
# `--target` is explicit so RUSTFLAGS reach only target artifacts, not build
# scripts and proc-macros (which must stay dynamic). The shipped binaries are
# the image tool's list (`plexus-image binaries`), the one list there is.
#
# usage: scripts/build-release.sh [--profile NAME] [cargo args...]
#   --profile  cargo profile (default release; `image-test` is the fast one
#              the tests pack). Prints the output dir,
#              target/x86_64-unknown-linux-gnu/<profile>, as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = --profile ]; then
    profile=$2
    shift 2
fi
bins=()
for b in $(cargo run -q --locked -p plexus-image -- binaries); do
    bins+=(--bin "$b")
done
if [ "$profile" = release ]; then
    bins+=(--bin plexus-bench --bin plexus-bench-meta --bin plexus-bench-move --bin plexus-bench-concurrency --bin plexus-bench-api)
fi
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --profile "$profile" --locked --target x86_64-unknown-linux-gnu "${bins[@]}" "$@"
case "$profile" in
dev) dir=debug ;;
*) dir=$profile ;;
esac
echo "target/x86_64-unknown-linux-gnu/$dir"

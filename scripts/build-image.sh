#!/usr/bin/env bash
# Builds the Plexus container image, the one `deploy/plexus.yaml` runs, as an
# OCI image archive: static-pie binaries (scripts/build-release.sh) packed by
# the image tool (tools/image, `plexus-image build`). No registry, base image
# or container engine is involved, and the same commit always gives the same
# image digest (timestamps = the commit time, SOURCE_DATE_EPOCH).
#
# usage: scripts/build-image.sh [--profile NAME] [--out FILE]
#   --profile  cargo profile of the binaries (default release, what we ship;
#              the tests use `image-test`: same static linking, no LTO)
#   --out      archive path (default target/image/plexus-<version>.oci.tar,
#              or plexus-<version>-<profile>.oci.tar for other profiles)
# Prints the archive path as its last line. Load it on a node with
#   ctr -n k8s.io images import FILE  |  docker load -i FILE  |  podman load -i FILE
#   skopeo copy oci-archive:FILE docker://REGISTRY/plexus:VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--profile NAME] [--out FILE]" >&2; exit 2 ;;
    esac
done
# Without SOURCE_DATE_EPOCH: it stamps the image only, and ring's build
# script watches it, so a changed value would rebuild the binaries.
bin_dir=$(env -u SOURCE_DATE_EPOCH scripts/build-release.sh --profile "$profile" | tail -n1)
cargo build -q --locked -p plexus-image
tool=target/debug/plexus-image
version=$("$tool" ref)
version=${version##*:}
if [ -z "$out" ]; then
    suffix=""
    [ "$profile" = release ] || suffix="-$profile"
    out="target/image/plexus-$version$suffix.oci.tar"
fi
# The commit's time, so rebuilding a commit reproduces its image; outside a
# git checkout, SOURCE_DATE_EPOCH must be given.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH
revision=()
if rev=$(git rev-parse HEAD 2>/dev/null); then
    revision=(--revision "$rev")
fi
"$tool" build --bin-dir "$bin_dir" --out "$out" "${revision[@]}" >/dev/null
echo "$out"

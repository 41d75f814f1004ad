#!/bin/sh
# deps.sh: install the Debian 12 packages Plexus' tests, demo and CI need.
#
# Idempotent: with everything present it only asks dpkg (well under a
# second) and prints nothing; otherwise it says what it installs (stderr),
# runs `apt-get update` once and installs what is missing. Used by .ci/run, the demo and the runtime e2e tests
# on a fresh machine that has only the Rust toolchain, cargo-nextest, gcc,
# Python 3 and git.
#
# Why each package:
#   iproute2, iputils-ping      `ip`/`ping` in privileged tests and the demo
#   containernetworking-plugins reference plugins in /usr/lib/cni: the
#                               differential tests, and bridge/host-local/
#                               loopback for the runtime e2e cluster network
#   containerd, runc            the real container runtime of the e2e tests
#   python3-grpcio,             the runtime tests' minimal CRI client (run
#   python3-protobuf,           with /usr/bin/python3: a pyenv python3 first
#   protobuf-compiler           on PATH cannot see Debian's grpc module)
#   gcc, libc6-dev              the statically linked pause binary
#   util-linux, procps          nsenter, flock; ps/pkill-free process checks
#   nftables, curl              demo-plexus.sh: the VCN's DNAT to the fake API
#                               server, and reading the pod back from it
#   skopeo                      the image tests: containers/image (podman's
#                               loader) reads our archive as oci-archive and
#                               as docker-archive
#   podman                      the image tests: `podman load` of our archive
#                               and each binary run in a container
#   strace                      the crash-consistency tests: SIGKILL a plugin
#                               at its N-th marker syscall (inject=...:signal=KILL)
#
# Usage: scripts/deps.sh [--check]   (--check: exit 1 if something is missing,
#                                     install nothing)
set -eu

PKGS="iproute2 iputils-ping containernetworking-plugins containerd runc \
python3-grpcio python3-protobuf protobuf-compiler gcc libc6-dev util-linux procps \
nftables curl skopeo podman strace"

missing() {
    # One dpkg-query for all packages: "ii " means installed and configured;
    # packages dpkg never heard of are reported on stderr and count as missing.
    installed=$(dpkg-query -W -f='${db:Status-Abbrev}${Package}\n' $PKGS 2>/dev/null |
        sed -n 's/^ii *//p')
    out=""
    for p in $PKGS; do
        case " $(echo $installed) " in
        *" $p "*) ;;
        *) out="$out $p" ;;
        esac
    done
    echo "$out"
}

need=$(missing)
[ -z "$need" ] && exit 0

if [ "${1:-}" = "--check" ]; then
    echo "deps.sh: missing packages:$need" >&2
    exit 1
fi

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        echo "deps.sh: missing packages:$need; installing through sudo" >&2
        exec sudo "$0" "$@"
    fi
    echo "deps.sh: missing packages:$need (run as root to install)" >&2
    exit 1
fi

# Several test processes may start at once on a fresh machine: serialise the
# install (apt's own lock would make the losers fail) and re-check after
# waiting, since the winner may have installed everything already.
LOCK=/run/lock/plexus-deps.lock
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock 9
need=$(missing)
[ -z "$need" ] && exit 0

echo "deps.sh: installing$need (apt-get; about a minute on a fresh machine)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends $need; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "deps.sh: installing$need failed" >&2
    exit 1
fi
need=$(missing)
if [ -n "$need" ]; then
    echo "deps.sh: still missing after install:$need" >&2
    exit 1
fi

# Shared by demo.sh, demo-plexus.sh, demo-oci.sh and test.sh (sourced, not
# run; bash). What only the namespace demos share is in demo-lib.sh.

# Colour only on a terminal, and never with NO_COLOR set (no-color.org):
# logs written to a file stay plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    C_BOLD=$'\033[1m' C_GREEN=$'\033[32m' C_RED=$'\033[31m' C_DIM=$'\033[2m' C_OFF=$'\033[0m'
else
    C_BOLD="" C_GREEN="" C_RED="" C_DIM="" C_OFF=""
fi

# as_root "$0" "$@": the scripts need root (namespaces, mounts, apt). As
# root this returns; otherwise the script re-runs itself through sudo,
# passing the caller's PATH, CARGO_HOME and RUSTUP_HOME explicitly (sudo's
# secure_path and env_reset would drop them, and with them cargo and
# cargo-nextest from ~/.cargo/bin). One command form, `./scripts/x.sh`,
# works for root and for a sudo user alike.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        # A user's PATH (kept through sudo, or `su` without `-`) lacks the
        # sbin directories, where Debian keeps sysctl.
        local d
        for d in /usr/local/sbin /usr/sbin /sbin; do
            case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
        done
        export PATH
        return 0
    fi
    if ! command -v sudo >/dev/null; then
        echo "$(basename "$1") needs root (network namespaces): run it as root" >&2
        exit 1
    fi
    echo "$(basename "$1"): not root, re-running through sudo" >&2
    local script=$1
    shift
    exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
        RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" ${NO_COLOR:+NO_COLOR=1} \
        ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR="$CARGO_TARGET_DIR"} \
        "$(cd "$(dirname "$script")" && pwd)/$(basename "$script")" "$@"
}

# Prints the path of cargo: on PATH (as_root passes the caller's PATH), else
# in the sudo caller's ~/.cargo/bin (for a plain `sudo ./scripts/x.sh`).
find_cargo() {
    if command -v cargo >/dev/null; then
        command -v cargo
    elif [ -n "${SUDO_USER:-}" ] && [ -x "$(eval echo "~$SUDO_USER")/.cargo/bin/cargo" ]; then
        echo "$(eval echo "~$SUDO_USER")/.cargo/bin/cargo"
    else
        echo "cargo not found: install Rust (https://rustup.rs) or point the demo at prebuilt binaries" >&2
        exit 1
    fi
}

# cargo_as_owner <args...>: runs cargo as the user who owns the checkout
# when that is the sudo caller, so that target/ and the caller's CARGO_HOME
# (registry, git checkouts) never get root-owned files the caller could not
# update later. As plain root on a root-owned checkout: cargo as is.
cargo_as_owner() {
    local cargo owner
    cargo=$(find_cargo)
    owner=$(stat -c %u "$REPO")
    if [ -n "${SUDO_UID:-}" ] && [ "$SUDO_UID" != 0 ] && [ "$owner" = "$SUDO_UID" ]; then
        local home
        home=$(eval echo "~$SUDO_USER")
        setpriv --reuid="$SUDO_UID" --regid="$SUDO_GID" --init-groups -- \
            env HOME="$home" USER="$SUDO_USER" "$cargo" "$@"
    else
        "$cargo" "$@"
    fi
}

# step <title>: a section header; first says how long the previous one took.
STEP_START=""
step() {
    step_end
    STEP_START=$SECONDS
    printf '\n%s== %s%s\n' "$C_BOLD" "$*" "$C_OFF"
}

# step_end: says how long the current step took (once), e.g. before a summary.
step_end() {
    if [ -n "$STEP_START" ]; then
        printf '   %s(%ss)%s\n' "$C_DIM" "$((SECONDS - STEP_START))" "$C_OFF"
    fi
    STEP_START=""
}

# timed <label> <command...>: runs the command, then says how long it took.
timed() {
    local label=$1 start=$SECONDS rc=0
    shift
    "$@" || rc=$?
    printf '   %s(%s: %ss)%s\n' "$C_DIM" "$label" "$((SECONDS - start))" "$C_OFF" >&2
    STEP_START=""   # said already: the next step header need not repeat it
    return "$rc"
}

# The one build both demo parts and scripts/test.sh use: every binary of the
# workspace in the dev profile (what the tests run as real processes), so
# the demo then the tests build once. Cargo's own progress (each crate as it
# compiles) goes to stderr. The release/static-pie build is
# scripts/build-release.sh, for the image and the benchmarks.
build_bins() {
    cargo_as_owner build --locked --workspace --bins >&2
}

# Where build_bins puts the binaries.
bins_dir() {
    echo "${CARGO_TARGET_DIR:-$REPO/target}/debug"
}

# vcn_bridge <ns> <router address/len>...: the demos' VCN, a namespace whose
# bridge br0 carries the virtual router's addresses (IPv4 or IPv6; IPv6
# without duplicate address detection, usable at once), forwarding on.
vcn_bridge() {
    local ns=$1 a
    shift
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 up
    for a in "$@"; do
        case "$a" in
        *:*) ip -n "$ns" -6 addr add "$a" dev br0 nodad ;;
        *) ip -n "$ns" addr add "$a" dev br0 ;;
        esac
    done
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# What the demos run for real and what they only simulate, said up front.
real_and_simulated() {
    cat <<EOF
   ${C_BOLD}Real${C_OFF}: the Linux kernel's network stack, netlink, network namespaces,
         veth/bridge links, routes and policy rules, and our binaries
         (plexus, host-device, static, vnic, plexus-agent, plexus-operator)
         run exactly as a container runtime runs them; Debian's
         bridge/host-local plugins; the operator's OCI request signing
         (RSA-SHA256 HTTP signatures, instance-principal session keys),
         verified by the fake OCI API as OCI does.
   ${C_BOLD}Simulated${C_OFF}: each "node" is a network namespace; the VFs/VNICs are veths;
         their PCI identity (mlx5_core VF, 0000:00:05.0) is a small fake sysfs
         tree; the OCI metadata service (IMDS), the OCI API (VNIC attach,
         ATTACHING -> ATTACHED, no hypervisor behind it) and the Kubernetes
         API server are in-repo fakes (crates/testkit); "the kubelet" is
         this script.
EOF
}

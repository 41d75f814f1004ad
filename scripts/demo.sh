#!/usr/bin/env bash
# demo.sh: the OKE SR-IOV tutorial's Task 3/4 at CNI level, in namespaces.
#
# Topology (all inside network namespaces this script creates; nothing is
# configured in the host's own namespace):
#
#   VCN ns:  bridge br0 = the VCN; 203.0.113.1 and 198.51.100.1 on it play
#            the VCN's virtual router (forwarding on)
#   node1/2: ens3 = primary VNIC   203.0.113.11/.12, default via 203.0.113.1
#            ens5 = secondary VNIC (stands in for the SR-IOV VF), MTU 9000
#   pod1/2:  empty sandboxes; net1 arrives through host-device + static
#
# Each node gets its own NAD-style config (cniVersion 0.3.1, like the
# tutorial's sriov-vnic-1/2): host-device moves ens5 into the pod as net1 and
# static gives it the VNIC's address. Checks: pod<->pod over net1, node->pod
# over the VCN, and after DEL the NIC is back on its node (name, MTU, up).
#
# Usage: ./scripts/demo.sh   (as root, or as a sudo user: it re-runs itself
#                             through sudo, keeping the caller's toolchain)
#   PLEXUS_DEMO_PLUGINS=reference   run Debian's Go plugins (/usr/lib/cni)
#                                   instead of ours, for comparison
#   PLEXUS_DEMO_PLUGIN_DIR=<dir>    explicit plugin directory (skips the build)
#   PLEXUS_DEMO_TUTORIAL_ONLY=1     stop after part 1 (no parts 2 and 3)
# Builds our binaries once, `cargo build --workspace --bins` in the dev profile
# (both parts use them, and scripts/test.sh then reuses the same build).
# Part 2 (scripts/demo-plexus.sh, run next with our plugins): the same
# scenario the Plexus way: plexus-agent configures the VNICs from a fake IMDS,
# the meta plugin reads one NAD from a fake API server, vnic IPAM gives each
# pod its node's VNIC IP. Part 3 (scripts/demo-oci.sh, after part 2 passed):
# the cloud step too: a VnicPool object, plexus-operator attaches the VNICs
# through the fake OCI API (signed requests), the running agent configures
# them, pods get the VF with the VNIC's IP.
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
as_root "$0" "$@"
BUILT_HERE=""

# Namespace names carry the pid so concurrent runs never collide.
TAG="pxd$$"
NS_VCN="$TAG-vcn"
NODES=(1 2)
FAILED=0
CHECKS=0
# host-device's record of each NIC's host state (our plugin's `dataDir`; the
# reference ignores the key). Kept out of /var/lib/cni for a self-contained run.
STATE_DIR=""

# Per-node facts: the secondary VNIC's address is what the tutorial's per-node
# NAD hard-codes.
node_ns() { echo "$TAG-node$1"; }
pod_ns() { echo "$TAG-pod$1"; }
primary_ip() { echo "203.0.113.1$1"; }
vnic_ip() { echo "198.51.100.2$1"; }
vnic_mac() { echo "02:00:c6:33:64:2$1"; }
VNIC_MTU=9000

info() { printf '   %s\n' "$*"; }

check() {
    # check <description> <command...>: runs the command quietly, records it.
    local what=$1
    shift
    CHECKS=$((CHECKS + 1))
    if "$@" >/dev/null 2>&1; then
        printf '   %sok%s   %s\n' "$C_GREEN" "$C_OFF" "$what"
    else
        printf '   %sFAIL%s %s\n' "$C_RED" "$C_OFF" "$what"
        FAILED=$((FAILED + 1))
    fi
}

cleanup() {
    # Deleting a namespace destroys the veths inside it; plus our state dir.
    [ -n "$STATE_DIR" ] && rm -rf "$STATE_DIR"
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

install_deps() {
    # The project's one installer covers both parts of the demo (iproute2,
    # iputils-ping, containernetworking-plugins, nftables, curl, ...).
    step "Debian packages (scripts/deps.sh)"
    timed "packages" "$REPO/scripts/deps.sh"
}

select_plugins() {
    if [ -n "${PLEXUS_DEMO_PLUGIN_DIR:-}" ]; then
        PLUGIN_DIR=$PLEXUS_DEMO_PLUGIN_DIR
    elif [ "${PLEXUS_DEMO_PLUGINS:-ours}" = reference ]; then
        PLUGIN_DIR=/usr/lib/cni
    else
        step "building Plexus: cargo build --workspace --bins (dev profile; part 2 and scripts/test.sh reuse it)"
        timed "build" build_bins
        PLUGIN_DIR=$(bins_dir)
        BUILT_HERE=1
    fi
    local p
    for p in host-device static; do
        [ -x "$PLUGIN_DIR/$p" ] || { echo "missing plugin $PLUGIN_DIR/$p" >&2; exit 1; }
    done
    info "plugins from $PLUGIN_DIR"
}

setup_vcn() {
    step "VCN: namespace $NS_VCN, bridge br0, virtual router 203.0.113.1 / 198.51.100.1"
    vcn_bridge "$NS_VCN" 203.0.113.1/24 198.51.100.1/24
}

# plug <ns> <ifname> <vcn-side name> [ip link options...]: a NIC of <ns> whose
# wire ends on the VCN bridge.
plug() {
    local ns=$1 ifname=$2 wire=$3
    shift 3
    ip -n "$NS_VCN" link add "$wire" type veth peer name "$ifname" netns "$ns" "$@"
    ip -n "$NS_VCN" link set "$wire" master br0 up
    ip -n "$ns" link set "$ifname" up
}

setup_node() {
    local n=$1 ns
    ns=$(node_ns "$n")
    step "node$n: namespace $ns, ens3 $(primary_ip "$n")/24, ens5 (secondary VNIC, MTU $VNIC_MTU)"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    plug "$ns" ens3 "n${n}p"
    ip -n "$ns" addr add "$(primary_ip "$n")/24" dev ens3
    ip -n "$ns" route add default via 203.0.113.1
    plug "$ns" ens5 "n${n}s" address "$(vnic_mac "$n")" mtu "$VNIC_MTU"
    ip -n "$NS_VCN" link set "n${n}s" mtu "$VNIC_MTU"
    # As in Task 1: the OCI script gives the secondary VNIC its address on
    # the node. host-device will move the NIC and the kernel drops it.
    ip -n "$ns" addr add "$(vnic_ip "$n")/24" dev ens5
    ip -n "$ns" -br addr show dev ens5 | sed 's/^/   /'
}

setup_pod() {
    local n=$1
    ip netns add "$(pod_ns "$n")"
    ip -n "$(pod_ns "$n")" link set lo up
}

# The tutorial's per-node NAD config (sriov-vnic-<n>), plus a route to the
# nodes' subnet through the VCN router so that node -> pod replies find their
# way back (in the tutorial the pod's eth0 default route covers this).
nad_config() {
    local n=$1
    cat <<EOF
{"cniVersion":"0.3.1","name":"sriov-vnic-$n","type":"host-device","device":"ens5",
 "dataDir":"$STATE_DIR",
 "ipam":{"type":"static",
   "addresses":[{"address":"$(vnic_ip "$n")/24","gateway":"0.0.0.0"}],
   "routes":[{"dst":"198.51.100.0/24","gw":"0.0.0.0"},
             {"dst":"203.0.113.0/24","gw":"198.51.100.1"}]}}
EOF
}

# cni <command> <n>: runs host-device on node<n> for pod<n>, the way the
# kubelet's runtime (through Multus) would: exact env, config on stdin.
cni() {
    local cmd=$1 n=$2
    nad_config "$n" | ip netns exec "$(node_ns "$n")" env -i PATH="$PATH" \
        CNI_COMMAND="$cmd" CNI_CONTAINERID="demo-pod$n" CNI_NETNS="/run/netns/$(pod_ns "$n")" \
        CNI_IFNAME=net1 CNI_PATH="$PLUGIN_DIR" "$PLUGIN_DIR/host-device"
}

add_pods() {
    local n out
    for n in "${NODES[@]}"; do
        step "ADD: pod$n gets node$n's ens5 as net1 (NAD sriov-vnic-$n)"
        local rc=0
        out=$(cni ADD "$n") || rc=$?
        echo "$out" | sed 's/^/   /'
        check "ADD pod$n (exit $rc)" test "$rc" = 0
    done
}

show_pods() {
    local n
    for n in "${NODES[@]}"; do
        step "pod$n: ip addr / ip route"
        ip -n "$(pod_ns "$n")" addr show | sed 's/^/   /'
        ip -n "$(pod_ns "$n")" route show | sed 's/^/   /'
        check "pod$n has net1 with $(vnic_ip "$n")/24" \
            sh -c "ip -n $(pod_ns "$n") -br addr show dev net1 | grep -q ' $(vnic_ip "$n")/24'"
        check "pod$n net1 keeps the VNIC MAC $(vnic_mac "$n")" \
            sh -c "ip -n $(pod_ns "$n") -br link show dev net1 | grep -q '$(vnic_mac "$n")'"
        check "ens5 is gone from node$n" sh -c "! ip -n $(node_ns "$n") link show dev ens5"
    done
}

pings() {
    step "ping pod <-> pod over net1, node -> pod over the VCN"
    check "pod1 -> pod2 $(vnic_ip 2) (-I net1)" \
        ip netns exec "$(pod_ns 1)" ping -c 2 -W 2 -I net1 "$(vnic_ip 2)"
    check "pod2 -> pod1 $(vnic_ip 1) (-I net1)" \
        ip netns exec "$(pod_ns 2)" ping -c 2 -W 2 -I net1 "$(vnic_ip 1)"
    check "node1 -> pod2 $(vnic_ip 2) (via ens3 and the VCN router)" \
        ip netns exec "$(node_ns 1)" ping -c 2 -W 2 "$(vnic_ip 2)"
    check "node2 -> pod1 $(vnic_ip 1) (via ens3 and the VCN router)" \
        ip netns exec "$(node_ns 2)" ping -c 2 -W 2 "$(vnic_ip 1)"
}

del_pods() {
    local n
    for n in "${NODES[@]}"; do
        step "DEL: pod$n returns ens5 to node$n"
        check "DEL pod$n" cni DEL "$n"
        ip -n "$(node_ns "$n")" link show dev ens5 2>&1 | sed 's/^/   /'
        check "node$n has ens5 back" ip -n "$(node_ns "$n")" link show dev ens5
        check "ens5 MTU is still $VNIC_MTU" \
            sh -c "ip -n $(node_ns "$n") link show dev ens5 | grep -q 'mtu $VNIC_MTU '"
        if [ "$PLUGIN_DIR" = /usr/lib/cni ]; then
            # Known reference behaviour: "we don't know the previous state,
            # leave the link down" (docs/differences-hostdevice-static.md).
            info "(reference host-device leaves ens5 DOWN after DEL)"
        else
            check "ens5 is UP again (state before ADD restored)" \
                sh -c "ip -n $(node_ns "$n") link show dev ens5 | grep -q '[<,]UP[,>]'"
        fi
        check "net1 is gone from pod$n" sh -c "! ip -n $(pod_ns "$n") link show dev net1"
    done
}

main() {
    local started=$SECONDS
    printf '%sPlexus demo, part 1: the OKE SR-IOV tutorial by hand (scripts/demo.sh)%s\n' "$C_BOLD" "$C_OFF"
    real_and_simulated
    install_deps
    select_plugins
    trap cleanup EXIT
    STATE_DIR=$(mktemp -d /tmp/plexus-demo.XXXXXX)
    setup_vcn
    local n
    for n in "${NODES[@]}"; do
        setup_node "$n"
        setup_pod "$n"
    done
    add_pods
    show_pods
    pings
    del_pods
    step "cleanup (namespaces $TAG-*)"
    if [ "$FAILED" -eq 0 ]; then
        printf '\n%s%d/%d checks passed%s (part 1, %ss)\n' "$C_GREEN" "$CHECKS" "$CHECKS" "$C_OFF" "$((SECONDS - started))"
    else
        printf '\n%s%d of %d checks failed%s\n' "$C_RED" "$FAILED" "$CHECKS" "$C_OFF"
        exit 1
    fi
    # Parts 2 and 3 use the same build and skip the packages. Skipped for
    # the reference plugins, which have no part 2 or 3.
    if [ "$PLUGIN_DIR" != /usr/lib/cni ] && [ -z "${PLEXUS_DEMO_TUTORIAL_ONLY:-}" ]; then
        trap - EXIT
        cleanup
        if [ -n "$BUILT_HERE" ]; then
            export PLEXUS_DEMO_BIN_DIR="$PLUGIN_DIR"
        fi
        export PLEXUS_DEMO_DEPS_DONE=1
        part 2 "the tutorial the Plexus way" demo-plexus.sh
        part 3 "from node pool to pod, no console step" demo-oci.sh
        printf '\n%sAll three parts passed%s (%ss in total)\n' "$C_GREEN" "$C_OFF" "$((SECONDS - started))"
    fi
}

# part <n> <title> <script>: runs a later part of the demo; stops at the
# first that fails.
part() {
    printf '\n%s######## Part %s: %s (scripts/%s) ########%s\n' "$C_BOLD" "$1" "$2" "$3" "$C_OFF"
    "$REPO/scripts/$3" || {
        printf '\n%sPart %s failed%s\n' "$C_RED" "$1" "$C_OFF"
        exit 1
    }
}

main "$@"

# Shared by demo-plexus.sh and demo-oci.sh (sourced after lib.sh; bash): the
# check bookkeeping, the process and namespace cleanup, the VCN and node
# topology, and how a command runs "on a node".
#
# The sourcing script sets TAG (namespace prefix, carries the pid) before
# calling anything here; BIN is set by select_bins, WORK/ROOT by demo_start.
# Node model (see demo-plexus.sh's header): a node is a netns plus a private
# mount namespace with a fresh sysfs and its own files bind-mounted on $ROOT.

NS_VCN="$TAG-vcn"
NODES=(1 2)
PASSED=0
FAILED=0
WORK=""          # temp dir: every file of the run
ROOT=""          # $WORK/node: mount point, each node's own files appear here
PIDS=()          # background processes we started
SUMMARY_DONE=""
DEMO_STARTED=$SECONDS

node_ns() { echo "$TAG-node$1"; }
pod_ns() { echo "$TAG-pod$1"; }
primary_ip() { echo "203.0.113.1$1"; }
primary_mac() { echo "02:00:17:00:01:0$1"; }
cid() { echo "$TAG-sandbox-pod$1"; }

info() { printf '   %s\n' "$*"; }
indent() { sed 's/^/   | /'; }

# check <description> <command...>: runs the command quietly, records it.
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        printf '   %sok%s   %s\n' "$C_GREEN" "$C_OFF" "$what"
        PASSED=$((PASSED + 1))
    else
        printf '   %sFAIL%s %s\n' "$C_RED" "$C_OFF" "$what"
        FAILED=$((FAILED + 1))
    fi
}

# demo_header <title>: the title, what is real and simulated, the packages
# (unless demo.sh installed them already), the tools, the binaries.
demo_header() {
    printf '%s%s%s\n' "$C_BOLD" "$1" "$C_OFF"
    real_and_simulated
    [ -n "${PLEXUS_DEMO_DEPS_DONE:-}" ] || timed "packages" "$REPO/scripts/deps.sh"
}

# need_tools [file...]: the commands every demo runs, plus the given files.
need_tools() {
    local t missing=()
    for t in ip nsenter unshare nft curl python3 ping; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    for t in "$@"; do
        [ -x "$t" ] || missing+=("$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing: ${missing[*]}" >&2
        exit 1
    fi
}

# select_bins <binary...>: BIN = PLEXUS_DEMO_BIN_DIR, or the dev-profile
# build scripts/test.sh shares (lib.sh's build_bins); each binary must exist.
select_bins() {
    if [ -n "${PLEXUS_DEMO_BIN_DIR:-}" ]; then
        BIN=$PLEXUS_DEMO_BIN_DIR
    else
        step "building Plexus: cargo build --workspace --bins (dev profile, shared with scripts/test.sh)"
        timed "build" build_bins
        BIN=$(bins_dir)
    fi
    local b
    for b in "$@"; do
        [ -x "$BIN/$b" ] || { echo "missing binary $BIN/$b" >&2; exit 1; }
    done
    info "binaries from $BIN"
}

# demo_start: cleanup on any exit, the run's temp dir and node root.
demo_start() {
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    WORK=$(mktemp -d "/tmp/plexus-demo-$TAG.XXXXXX")
    ROOT="$WORK/node"
    mkdir -p "$ROOT"
}

# demo_finish: cleanup, checked (no namespace, process or temp file left),
# then the summary; the exit status says whether every check passed.
demo_finish() {
    step "cleanup: namespaces $TAG-*, processes, $WORK"
    local work=$WORK
    cleanup
    check "no namespace $TAG-* left" sh -c "! ip netns list | grep -q '^$TAG-'"
    check "no process of this run left" no_leftover_processes "$work"
    check "temp dir removed" test ! -e "$work"
    WORK=""
    SUMMARY_DONE=1
    trap - EXIT
    step_end
    local colour=$C_GREEN
    [ "$FAILED" -eq 0 ] || colour=$C_RED
    printf '\n%s%s passed, %s failed%s (%ss)\n' "$colour" "$PASSED" "$FAILED" "$C_OFF" "$((SECONDS - DEMO_STARTED))"
    [ "$FAILED" -eq 0 ]
}

# EXIT trap: cleanup, and a summary even when something outside a check
# aborted the run (set -e).
on_exit() {
    local rc=$?
    trap - EXIT
    cleanup
    if [ -z "$SUMMARY_DONE" ]; then
        printf '\n%s passed, %s failed (aborted, exit %s)\n' "$PASSED" "$((FAILED + 1))" "$rc"
        [ "$rc" -ne 0 ] || rc=1
    fi
    exit "$rc"
}

cleanup() {
    local p ns
    for p in "${PIDS[@]}"; do
        stop_pid "$p"
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        rm -rf "$WORK"
    fi
}

# stop_pid <pid>: SIGTERM, then SIGKILL after 5 s; reaps it and forgets it.
# Each pid is signalled and waited for exactly once: it leaves PIDS here, so
# cleanup never signals a pid the kernel may have handed to another process
# since, nor makes bash wait for a child it has already reaped.
stop_pid() {
    local p=$1 i keep=() q
    for q in "${PIDS[@]}"; do
        [ "$q" = "$p" ] || keep+=("$q")
    done
    PIDS=("${keep[@]}")
    if kill "$p" 2>/dev/null; then
        for ((i = 0; i < 50; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
}

# Processes whose command line names this run (temp dir or namespace tag).
no_leftover_processes() {
    ! pgrep -f "$1" >/dev/null && ! pgrep -f "$TAG-" >/dev/null
}

# wait_file <file>: up to 10 s for it to be non-empty.
wait_file() {
    local i
    for i in $(seq 100); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# node_argv <n>: sets NODE_ARGV to the prefix that runs a command "on node
# n": its netns, a private mount namespace with a fresh sysfs (so
# /sys/class/net is the node's) and the node's files on $ROOT. nsenter,
# unshare and sh all exec, so for `"${NODE_ARGV[@]}" cmd &` $! is cmd's own
# pid (a backgrounded shell *function* would give a subshell's pid).
node_argv() {
    NODE_ARGV=(nsenter --net="/run/netns/$(node_ns "$1")" unshare --mount --propagation private
        sh -c 'mount -t sysfs sysfs /sys && mount --bind "$1" "$2" && shift 2 && exec "$@"'
        on_node "$WORK/node$1" "$ROOT")
}

on_node() {
    local NODE_ARGV
    node_argv "$1"
    shift
    "${NODE_ARGV[@]}" "$@"
}

# agent_argv <n>: sets AGENT_ARGV to plexus-agent on node n, every path flag
# node-local (through the PLEXUS_* environment variables).
# PLEXUS_HOST_ROOT is the directory HOLDING sys/ (discovery reads
# <root>/sys/bus/pci/devices), like the DaemonSet's /host and the default /.
agent_argv() {
    local NODE_ARGV
    node_argv "$1"
    AGENT_ARGV=("${NODE_ARGV[@]}" env RUST_LOG="${RUST_LOG:-warn}"
        PLEXUS_HOST_ROOT="$ROOT/hw"
        PLEXUS_STATE_FILE="$ROOT/run/plexus/state.json"
        PLEXUS_HOST_DEVICE_DIR="$ROOT/var/lib/cni/plexus-host-device"
        PLEXUS_META_CACHE_DIR="$ROOT/var/lib/cni/plexus"
        PLEXUS_CNI_BIN_DIR="$ROOT/opt/cni/bin"
        PLEXUS_CNI_CONF_DIR="$ROOT/etc/cni/net.d"
        PLEXUS_HOST_CNI_CONF_DIR="$ROOT/etc/cni/net.d"
        "$BIN/plexus-agent" --netns "$(node_ns "$1")")
}

agent() {
    local AGENT_ARGV
    agent_argv "$1"
    shift
    "${AGENT_ARGV[@]}" "$@"
}

in_vcn() { nsenter --net="/run/netns/$NS_VCN" "$@"; }

# setup_vcn <endpoint=inner>...: the VCN namespace, bridge br0 with the
# virtual router 203.0.113.1/25 and 198.51.100.1/24 (forwarding on), and
# each service endpoint (ip:port) on the VCN DNAT-ed to its loopback
# listener inside the VCN ns (the fakes bind loopback only; route_localnet
# lets the kernel route to 127.0.0.1 for packets arriving on br0).
setup_vcn() {
    local e rules="" addrs=()
    for e in "$@"; do
        local endpoint=${e%%=*} inner=${e#*=}
        addrs+=("${endpoint%:*}/25")
        rules+="ip daddr ${endpoint%:*} tcp dport ${endpoint#*:} dnat to $inner"$'\n'
    done
    # VCN_EXTRA_ADDRS: further router addresses a part needs (IPv6).
    vcn_bridge "$NS_VCN" 203.0.113.1/25 198.51.100.1/24 "${addrs[@]}" \
        ${VCN_EXTRA_ADDRS[@]+"${VCN_EXTRA_ADDRS[@]}"}
    in_vcn sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.br0.route_localnet=1
    in_vcn nft -f - <<EOF
table ip plexus_demo {
  chain pre {
    type nat hook prerouting priority dstnat;
    $rules
  }
}
EOF
}

# plug <ns> <ifname> <vcn-side name> [ip link options...]: a NIC of <ns>
# whose wire ends on the VCN bridge.
plug() {
    local ns=$1 ifname=$2 wire=$3
    shift 3
    ip -n "$NS_VCN" link add "$wire" type veth peer name "$ifname" netns "$ns" "$@"
    ip -n "$NS_VCN" link set "$wire" mtu 9000 master br0 up
}

# node_base <n> <vf-mac>: node n's namespace with ens3 (primary VNIC, up,
# default via the router) and ens5 (the VF, down, MTU 1500), the metadata
# address on lo, its file tree, and a fake sysfs with both as mlx5 VFs.
node_base() {
    local n=$1 vf=$2 ns dir
    ns=$(node_ns "$n")
    dir="$WORK/node$n"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    plug "$ns" ens3 "n${n}p" address "$(primary_mac "$n")" mtu 9000
    ip -n "$ns" link set ens3 up
    ip -n "$ns" addr add "$(primary_ip "$n")/25" dev ens3
    ip -n "$ns" route add default via 203.0.113.1
    plug "$ns" ens5 "n${n}s" address "$vf" mtu 1500
    # The metadata address exists only inside this node's namespace.
    ip -n "$ns" addr add 169.254.169.254/32 dev lo
    mkdir -p "$dir"/{etc/cni/net.d,opt/cni/bin,var/lib/cni,run/plexus,hw,imds}
    fake_vf "$dir/hw" 0000:00:03.0 ens3 "$(primary_mac "$n")"
    fake_vf "$dir/hw" 0000:00:05.0 ens5 "$vf"
}

# start_imds <n> <fake-imds args...>: node n's fake IMDS on
# 169.254.169.254:80 (node netns only), waited for.
start_imds() {
    local n=$1 dir="$WORK/node$1" i
    shift
    nsenter --net="/run/netns/$(node_ns "$n")" "$BIN/fake-imds" --listen 169.254.169.254:80 \
        "$@" 2>"$dir/imds/log" &
    PIDS+=($!)
    for i in $(seq 50); do
        grep -q listening "$dir/imds/log" 2>/dev/null && break
        sleep 0.1
    done
}

# imds_on <n>: node n's VNIC list, as the agent reads it.
imds_on() {
    nsenter --net="/run/netns/$(node_ns "$1")" curl -sf --max-time 5 \
        -H "Authorization: Bearer Oracle" http://169.254.169.254/opc/v2/vnics/
}

# fake_vf <root> <pci> <ifname> <mac>: a Mellanox ConnectX VF (15b3:101e,
# mlx5_core) with netdev <ifname>, laid out as the kernel does.
fake_vf() {
    local r=$1/sys pci=$2 ifname=$3 mac=$4 d
    d="$r/devices/pci0000:00/$pci"
    mkdir -p "$d/net/$ifname" "$r/bus/pci/devices" "$r/bus/pci/drivers/mlx5_core" "$r/class/net"
    echo 0x15b3 >"$d/vendor"
    echo 0x101e >"$d/device"
    echo 0x020000 >"$d/class"
    echo -1 >"$d/numa_node"
    ln -s "../../../devices/pci0000:00/$pci" "$r/bus/pci/devices/$pci"
    ln -s ../../../bus/pci/drivers/mlx5_core "$d/driver"
    echo "$mac" >"$d/net/$ifname/address"
    echo up >"$d/net/$ifname/operstate"
    echo 9000 >"$d/net/$ifname/mtu"
    ln -s "../../../$pci" "$d/net/$ifname/device"
    ln -s "../../devices/pci0000:00/$pci/net/$ifname" "$r/class/net/$ifname"
}

#!/usr/bin/env bash
# demo-oci.sh: the tutorial's Task 1 without a console step. From "the node
# pool exists" to "a pod has a VF with its VNIC's IP", driven by one
# Kubernetes object (a VnicPool) and plexus-operator, against the fake OCI
# API (signed requests verified) and the fake Kubernetes API.
#
# Topology (everything inside namespaces this script creates):
#
#   VCN ns   bridge br0 = the VCN; 203.0.113.1/25 and 198.51.100.1/24 play
#            the virtual router. Loopback services, reached by the nodes
#            through DNAT: fake-kube-apiserver 127.0.0.1:6443 as
#            203.0.113.2:6443, fake-oci-api 127.0.0.1:8443 as 203.0.113.3:8443.
#            plexus-operator runs on node1 (hostNetwork, as its Deployment)
#            with instance principals: identity from node1's IMDS, session
#            token from the fake OCI API's /v1/x509.
#   node1/2  ens3 = primary VNIC 203.0.113.1N/25; ens5 = the VF the
#            hypervisor will hand to the secondary VNIC (a veth with the MAC
#            the fake OCI API assigns), present but unconfigured;
#            fake-imds on 169.254.169.254:80 whose /opc/v2/vnics/ follows
#            what fake-oci-api has attached to this node's instance.
#   pod1/2   empty sandboxes; the "kubelet" (this script) calls host-device
#            + vnic IPAM, the delegate plexus runs for a VNIC NAD.
#
# Node-side commands run through on_node() (node netns + private mount
# namespace with the node's sysfs and files on $ROOT), as in
# demo-plexus.sh, whose conventions this script follows.
#
# Steps (each with checks):
#   1 the node pool exists: IMDS lists only the primary VNIC, nothing to do
#   2 kubectl apply a VnicPool; plexus-operator attaches one VNIC per node
#     (AttachVnic, ATTACHING -> ATTACHED), status + events in the API
#   3 IMDS now lists the VNIC; the plexus-agent already running on each
#     node configures it on its next pass
#   4 pod1/pod2 get ens5 as net1 with the VNIC's IP; ping over net1
#   5 a second operator pass changes nothing (idempotent), every OCI
#     request was signed and verified
#
# Usage: sudo ./scripts/demo-oci.sh
#   PLEXUS_DEMO_BIN_DIR=<dir>   our binaries (host-device, vnic,
#                               plexus-agent, plexus-operator, fake-imds,
#                               fake-oci-api, fake-kube-apiserver);
#                               default: build them into target/release
# Needs: iproute2, nsenter/unshare (util-linux), nft, curl, python3.
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

TAG="pxo$$"
NS_VCN="$TAG-vcn"
NODES=(1 2)
PASSED=0
FAILED=0
WORK=""
ROOT=""
PIDS=()
SUMMARY_DONE=""
API_INNER="127.0.0.1:6443"
API_ENDPOINT="203.0.113.2:6443"
OCI_INNER="127.0.0.1:8443"
OCI_ENDPOINT="203.0.113.3:8443"
SUBNET="ocid1.subnet.oc1.phx.demo-pods"
COMPARTMENT="ocid1.compartment.oc1..demo"
RESOURCE="plexus.io/vnic-pods"

node_ns() { echo "$TAG-node$1"; }
pod_ns() { echo "$TAG-pod$1"; }
primary_ip() { echo "203.0.113.1$1"; }
primary_mac() { echo "02:00:17:00:01:0$1"; }
vf_mac() { echo "02:00:17:00:02:0$1"; }
instance() { echo "ocid1.instance.oc1.phx.demo-node$1"; }
cid() { echo "$TAG-sandbox-pod$1"; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
info() { printf '   %s\n' "$*"; }
indent() { sed 's/^/   | /'; }

check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        printf '   \033[32mok\033[0m   %s\n' "$what"
        PASSED=$((PASSED + 1))
    else
        printf '   \033[31mFAIL\033[0m %s\n' "$what"
        FAILED=$((FAILED + 1))
    fi
}

on_exit() {
    local rc=$?
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
    PIDS=()
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        rm -rf "$WORK"
    fi
}

stop_pid() {
    local p=$1 i
    kill "$p" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "demo-oci.sh needs root (namespaces, mounts): sudo $0" >&2
        exit 1
    fi
}

need_tools() {
    local t missing=()
    for t in ip nsenter unshare nft curl python3 ping; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing: ${missing[*]}" >&2
        exit 1
    fi
}

select_bins() {
    if [ -n "${PLEXUS_DEMO_BIN_DIR:-}" ]; then
        BIN=$PLEXUS_DEMO_BIN_DIR
    else
        step "building Plexus (release profile)"
        "$(find_cargo)" build --release -q -p plexus-host-device -p plexus-vnic -p plexus-agent \
            -p plexus-operator -p plexus-testkit --bins >&2
        BIN="$REPO/target/release"
    fi
    local b
    for b in host-device vnic plexus-agent plexus-operator fake-imds fake-oci-api fake-kube-apiserver; do
        [ -x "$BIN/$b" ] || { echo "missing binary $BIN/$b" >&2; exit 1; }
    done
    info "binaries from $BIN"
}

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

api() { in_vcn curl -sf --max-time 5 "http://$API_INNER$1"; }

imds_on() {
    nsenter --net="/run/netns/$(node_ns "$1")" curl -sf --max-time 5 \
        -H "Authorization: Bearer Oracle" http://169.254.169.254/opc/v2/vnics/
}

# fake_vf <root> <pci> <ifname> <mac>: a Mellanox VF (15b3:101e, mlx5_core).
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

wait_file() {
    local i
    for i in $(seq 100); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- topology

setup_vcn() {
    step "VCN: namespace $NS_VCN, router 203.0.113.1 / 198.51.100.1, API $API_ENDPOINT, OCI $OCI_ENDPOINT"
    ip netns add "$NS_VCN"
    ip -n "$NS_VCN" link set lo up
    ip -n "$NS_VCN" link add br0 type bridge
    ip -n "$NS_VCN" link set br0 up
    ip -n "$NS_VCN" addr add 203.0.113.1/25 dev br0
    ip -n "$NS_VCN" addr add "${API_ENDPOINT%:*}/25" dev br0
    ip -n "$NS_VCN" addr add "${OCI_ENDPOINT%:*}/25" dev br0
    ip -n "$NS_VCN" addr add 198.51.100.1/24 dev br0
    in_vcn sysctl -qw net.ipv4.ip_forward=1
    in_vcn sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.br0.route_localnet=1
    in_vcn nft -f - <<EOF
table ip plexus_demo {
  chain pre {
    type nat hook prerouting priority dstnat;
    ip daddr ${API_ENDPOINT%:*} tcp dport ${API_ENDPOINT#*:} dnat to $API_INNER
    ip daddr ${OCI_ENDPOINT%:*} tcp dport ${OCI_ENDPOINT#*:} dnat to $OCI_INNER
  }
}
EOF
}

plug() {
    local ns=$1 ifname=$2 wire=$3
    shift 3
    ip -n "$NS_VCN" link add "$wire" type veth peer name "$ifname" netns "$ns" "$@"
    ip -n "$NS_VCN" link set "$wire" mtu 9000 master br0 up
}

start_oci() {
    step "fake OCI API: two VFIO instances, subnet 198.51.100.0/24, instance principals of the nodes' tenancy"
    python3 - "$WORK/oci" "$SUBNET" "$COMPARTMENT" <<'EOF'
import json, sys
d, subnet, comp = sys.argv[1:4]
seed = {
  "subnets": [
    {"id": subnet, "cidr": "198.51.100.0/24", "gateway": "198.51.100.1", "firstHost": "198.51.100.21"},
    {"id": "ocid1.subnet.oc1.phx.demo-nodes", "cidr": "203.0.113.0/25", "gateway": "203.0.113.1", "firstHost": "203.0.113.11"}],
  "instances": [
    {"id": f"ocid1.instance.oc1.phx.demo-node{n}", "compartmentId": comp, "availabilityDomain": "Uocm:PHX-AD-1",
     "networkType": "VFIO", "primarySubnet": "ocid1.subnet.oc1.phx.demo-nodes",
     "primaryMac": f"02:00:17:00:01:0{n}", "primaryIp": f"203.0.113.1{n}", "macs": [f"02:00:17:00:02:0{n}"]}
    for n in (1, 2)],
  # The tenancy named by the fake IMDS identity certificates: instance
  # principals of these nodes federate.
  "trustTenancies": ["ocid1.tenancy.oc1..faketenancy"],
  "attachDelayMs": 1500,
}
json.dump(seed, open(d + "/seed.json", "w"))
EOF
    # nsenter directly (not in_vcn): $! must be the server's own pid.
    nsenter --net="/run/netns/$NS_VCN" "$BIN/fake-oci-api" --listen "$OCI_INNER" --port-file "$WORK/oci/port" \
        --seed "$WORK/oci/seed.json" 2>"$WORK/oci/log" &
    PIDS+=($!)
    check "fake OCI API listening on $OCI_INNER (VCN ns)" wait_file "$WORK/oci/port"
    check "an unsigned request is refused (401 NotAuthenticated)" sh -c \
        "nsenter --net=/run/netns/$NS_VCN curl -s http://$OCI_INNER/20160918/instances/$(instance 1) | grep -q NotAuthenticated"
}

setup_node() {
    local n=$1 ns dir
    ns=$(node_ns "$n")
    dir="$WORK/node$n"
    step "node$n: namespace $ns, ens3 $(primary_ip "$n")/25; ens5 = the VF for a future VNIC ($(vf_mac "$n"))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    plug "$ns" ens3 "n${n}p" address "$(primary_mac "$n")" mtu 9000
    ip -n "$ns" link set ens3 up
    ip -n "$ns" addr add "$(primary_ip "$n")/25" dev ens3
    ip -n "$ns" route add default via 203.0.113.1
    plug "$ns" ens5 "n${n}s" address "$(vf_mac "$n")" mtu 1500
    ip -n "$ns" addr add 169.254.169.254/32 dev lo
    mkdir -p "$dir"/{etc/cni/net.d,opt/cni/bin,var/lib/cni,run/plexus,hw,imds}
    fake_vf "$dir/hw" 0000:00:03.0 ens3 "$(primary_mac "$n")"
    fake_vf "$dir/hw" 0000:00:05.0 ens5 "$(vf_mac "$n")"
    echo '[]' >"$dir/imds/fallback.json"
    nsenter --net="/run/netns/$ns" "$BIN/fake-imds" --listen 169.254.169.254:80 \
        --vnics "$dir/imds/fallback.json" --oci-api "http://$OCI_ENDPOINT" \
        --instance-id "$(instance "$n")" 2>"$dir/imds/log" &
    PIDS+=($!)
    local i
    for i in $(seq 50); do
        grep -q listening "$dir/imds/log" 2>/dev/null && break
        sleep 0.1
    done
}

start_api() {
    step "fake Kubernetes API: nodes node1/node2 (providerID = their instances)"
    python3 - "$WORK/kube-seed.json" <<'EOF'
import json, sys
nodes = [{"apiVersion": "v1", "kind": "Node",
          "metadata": {"name": f"node{n}", "labels": {"plexus.io/vnic-pool": "pods"}},
          "spec": {"providerID": f"oci://ocid1.instance.oc1.phx.demo-node{n}"},
          "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "2"}}}
         for n in (1, 2)]
json.dump(nodes, open(sys.argv[1], "w"))
EOF
    nsenter --net="/run/netns/$NS_VCN" "$BIN/fake-kube-apiserver" --listen "$API_INNER" --port-file "$WORK/api.port" \
        --seed "$WORK/kube-seed.json" 2>"$WORK/api.log" &
    PIDS+=($!)
    check "fake API answers on $API_INNER" wait_file "$WORK/api.port"
}

# ------------------------------------------------------------------ steps

step1() {
    local n
    for n in "${NODES[@]}"; do
        step "1. node$n as the node pool created it: IMDS lists the primary VNIC only"
        { imds_on "$n"; echo; } 2>&1 | indent || true
        check "node$n: IMDS lists 1 VNIC (primary)" sh -c \
            "nsenter --net=/run/netns/$(node_ns "$n") curl -sf -H 'Authorization: Bearer Oracle' http://169.254.169.254/opc/v2/vnics/ | python3 -c 'import json,sys; assert len(json.load(sys.stdin)) == 1'"
        sleep 1
        check "node$n: ens5 has no address (the running agent has nothing to do)" \
            sh -c "! ip -n $(node_ns "$n") -4 addr show dev ens5 | grep -q inet"
    done
}

pool_json() {
    cat <<EOF
{"apiVersion":"plexus.io/v1alpha1","kind":"VnicPool","metadata":{"name":"pods"},
 "spec":{"nodeSelector":{"plexus.io/vnic-pool":"pods"},"subnetId":"$SUBNET",
         "nsgIds":["ocid1.networksecuritygroup.oc1.phx.demo"],"vnicsPerNode":1,
         "displayNamePrefix":"pods-","resourceName":"$RESOURCE"}}
EOF
}

pool_attached() {
    api /apis/plexus.io/v1alpha1/vnicpools/pods | python3 -c 'import json,sys
s = json.load(sys.stdin).get("status") or {}
n = s.get("nodes", [])
assert len(n) == 2 and all(x["attached"] == 1 and x["phase"] in ("Configuring", "Ready") for x in n), s'
}

step2() {
    step "2. kubectl apply -f vnicpool.yaml (one object instead of console clicks per node)"
    pool_json | indent
    pool_json | in_vcn curl -sf --max-time 5 -X POST -H 'Content-Type: application/json' \
        --data-binary @- "http://$API_INNER/apis/plexus.io/v1alpha1/vnicpools" >/dev/null
    cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: demo, cluster: {server: "http://$API_ENDPOINT"}}]
users: [{name: operator, user: {}}]
contexts: [{name: demo, context: {cluster: demo, user: operator}}]
current-context: demo
EOF
    step "2. plexus-operator on node1 (leader-elected; instance principal from node1's IMDS)"
    nsenter --net="/run/netns/$(node_ns 1)" env RUST_LOG="${RUST_LOG:-info}" "$BIN/plexus-operator" \
        --kubeconfig "$WORK/kubeconfig" --auth instance-principal --imds http://169.254.169.254 \
        --auth-endpoint "http://$OCI_ENDPOINT" --oci-endpoint "http://$OCI_ENDPOINT" \
        --identity demo-operator --lease-namespace kube-system \
        --busy-resync-seconds 1 --resync-seconds 5 2>"$WORK/operator.log" &
    PIDS+=($!)
    local i ok=""
    for i in $(seq 150); do
        if pool_attached 2>/dev/null; then ok=1; break; fi
        sleep 0.2
    done
    check "VnicPool status: both nodes have their VNIC attached" test -n "$ok"
    info "kubectl get vnicpool pods -o jsonpath='{.status}':"
    api /apis/plexus.io/v1alpha1/vnicpools/pods | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["status"], indent=2))' 2>&1 | indent || true
    info "events (kubectl get events --field-selector involvedObject.kind=VnicPool):"
    api /api/v1/namespaces/default/events | python3 -c 'import json,sys
for e in json.load(sys.stdin)["items"]:
    print(e["type"], e["reason"], e["message"])' 2>&1 | indent || true
    check "events: AttachingVnic and VnicAttached for each node" events_count 2
    check "the operator federated an instance-principal session (/v1/x509)" \
        grep -q "federated an instance-principal session" "$WORK/operator.log"
    check "the lease names the operator" sh -c \
        "nsenter --net=/run/netns/$NS_VCN curl -sf http://$API_INNER/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plexus-operator | grep -q demo-operator"
}

# events_count <n>: n AttachingVnic and n VnicAttached events so far.
events_count() {
    api /api/v1/namespaces/default/events | python3 -c 'import json,sys
r = [e["reason"] for e in json.load(sys.stdin)["items"]]
n = int(sys.argv[1])
assert r.count("AttachingVnic") == n and r.count("VnicAttached") == n, r' "$1"
}

# imds_has_mac <n> <mac>
imds_has_mac() { imds_on "$1" | grep -i "$2" >/dev/null; }

# oci_vnics <n>: number of VNICs the fake OCI API lists for node n's IMDS.
oci_vnics() {
    in_vcn curl -sf "http://$OCI_INNER/_fake/imds/$(instance "$1")/vnics" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

vnic_ip_of() {
    imds_on "$1" | python3 -c 'import json,sys; v = json.load(sys.stdin); print(v[1]["privateIp"] if len(v) > 1 else "")'
}

# start_agents: plexus-agent run on every node, as its DaemonSet does, from
# before the pool exists: it reconciles IMDS every second and configures
# whatever VNIC shows up (no device plugin here: no kubelet).
start_agents() {
    local n AGENT_ARGV
    for n in "${NODES[@]}"; do
        agent_argv "$n"
        "${AGENT_ARGV[@]}" run --no-install --no-device-plugin --metrics-addr "" --interval 1 \
            2>"$WORK/node$n/agent-run.log" &
        PIDS+=($!)
    done
}

# vnic_configured <n> <ip>: ens5 carries <ip>/24 and the state file maps it.
# (grep without -q in pipelines: under pipefail, -q's early exit can kill
# the writer with SIGPIPE and fail a pipeline that matched.)
vnic_configured() {
    ip -n "$(node_ns "$1")" addr show dev ens5 | grep "inet $2/24" >/dev/null &&
        grep -q "$2" "$WORK/node$1/run/plexus/state.json"
}

step3() {
    local n ns ip i
    for n in "${NODES[@]}"; do
        ns=$(node_ns "$n")
        step "3. node$n: IMDS lists the new VNIC; the running plexus-agent configures it by itself"
        { imds_on "$n"; echo; } 2>&1 | indent || true
        ip=$(vnic_ip_of "$n")
        check "node$n: IMDS lists the attached VNIC with MAC $(vf_mac "$n")" imds_has_mac "$n" "$(vf_mac "$n")"
        for i in $(seq 300); do
            vnic_configured "$n" "$ip" 2>/dev/null && break
            sleep 0.1
        done
        vnic_configured "$n" "$ip" 2>/dev/null || {
            info "state file and agent log on node$n:"
            cat "$WORK/node$n/run/plexus/state.json" "$WORK/node$n/agent-run.log" 2>&1 | tail -20 | indent
        }
        { ip -n "$ns" addr show dev ens5; ip -n "$ns" rule show; ip -n "$ns" route show table 101; } 2>&1 | indent || true
        check "node$n: ens5 has the VNIC IP $ip/24 and the agent state maps it (no command run)" \
            vnic_configured "$n" "$ip"
    done
}

cni() {
    local cmd=$1 n=$2
    python3 -c 'import json,sys; print(json.dumps({"cniVersion":"1.0.0","name":"vnic-net","type":"host-device",
        "device":"ens5","dataDir":sys.argv[1]+"/var/lib/cni/plexus-host-device",
        "ipam":{"type":"vnic","stateFile":sys.argv[1]+"/run/plexus/state.json"}}))' "$ROOT" |
        on_node "$n" env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$(cid "$n")" \
            CNI_NETNS="/run/netns/$(pod_ns "$n")" CNI_IFNAME=net1 CNI_PATH="$BIN" "$BIN/host-device"
}

step4() {
    local n pns ip rc
    for n in "${NODES[@]}"; do
        pns=$(pod_ns "$n")
        ip=$(vnic_ip_of "$n")
        ip netns add "$pns"
        ip -n "$pns" link set lo up
        step "4. pod$n on node$n: host-device + vnic IPAM (what plexus delegates for the VNIC NAD)"
        rc=0
        cni ADD "$n" 2>&1 | indent || rc=$?
        check "ADD pod$n (exit $rc)" test "$rc" = 0
        ip -n "$pns" addr show dev net1 2>&1 | indent || true
        check "pod$n: net1 is the VF ($(vf_mac "$n")) with the VNIC IP $ip/24" sh -c \
            "ip -n $pns addr show dev net1 | grep -q 'inet $ip/24' && ip -n $pns link show dev net1 | grep -q '$(vf_mac "$n")'"
    done
    check "pod1 -> pod2 over net1 ($(vnic_ip_of 2))" \
        ip netns exec "$(pod_ns 1)" ping -c 2 -W 2 -I net1 "$(vnic_ip_of 2)"
}

step5() {
    step "5. idempotence, ownership, no secrets"
    sleep 3
    check "after more operator passes: still one AttachingVnic per node" events_count 2
    check "OCI lists primary + 1 VNIC per instance (no duplicate)" \
        test "$(oci_vnics 1)/$(oci_vnics 2)" = "2/2"
    check "no secret in the operator log (no key, no signature)" sh -c \
        "! grep -q -e 'PRIVATE KEY' -e 'signature=' -e 'ST\\$' $WORK/operator.log"
    for n in "${NODES[@]}"; do
        cni DEL "$n" >/dev/null 2>&1 || true
    done
}

# Processes whose command line names this run (temp dir or namespace tag).
no_leftover_processes() {
    ! pgrep -f "$1" >/dev/null && ! pgrep -f "$TAG-" >/dev/null
}

main() {
    need_root
    need_tools
    select_bins
    local started=$SECONDS
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    WORK=$(mktemp -d "/tmp/plexus-demo-$TAG.XXXXXX")
    ROOT="$WORK/node"
    mkdir -p "$ROOT" "$WORK/oci"
    setup_vcn
    start_oci
    local n
    for n in "${NODES[@]}"; do
        setup_node "$n"
    done
    start_api
    start_agents
    step1
    step2
    step3
    step4
    step5

    step "cleanup: namespaces $TAG-*, processes, $WORK"
    local work=$WORK
    cleanup
    check "no namespace $TAG-* left" sh -c "! ip netns list | grep -q '^$TAG-'"
    check "no process of this run left" no_leftover_processes "$work"
    check "temp dir removed" test ! -e "$work"
    WORK=""
    SUMMARY_DONE=1
    printf '\n%s passed, %s failed (%ss)\n' "$PASSED" "$FAILED" "$((SECONDS - started))"
    [ "$FAILED" -eq 0 ]
}

main "$@"

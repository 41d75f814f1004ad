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
# namespace with the node's sysfs and files on $ROOT); that and the rest of
# the topology and bookkeeping are scripts/demo-lib.sh's, shared with
# demo-plexus.sh.
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
# Part 3 of ./scripts/demo.sh (which runs it after parts 1 and 2 passed,
# with their build); on its own:
# Usage: ./scripts/demo-oci.sh   (root, or a sudo user: re-runs via sudo)
#   PLEXUS_DEMO_BIN_DIR=<dir>   our binaries (host-device, vnic,
#                               plexus-agent, plexus-operator, fake-imds,
#                               fake-oci-api, fake-kube-apiserver); default:
#                               build them (dev profile, scripts/lib.sh)
# Needs: iproute2, nsenter/unshare (util-linux), nft, curl, python3.
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
as_root "$0" "$@"

TAG="pxo$$"
# shellcheck source=scripts/demo-lib.sh
. "$REPO/scripts/demo-lib.sh"
API_INNER="127.0.0.1:6443"
API_ENDPOINT="203.0.113.2:6443"
OCI_INNER="127.0.0.1:8443"
OCI_ENDPOINT="203.0.113.3:8443"
SUBNET="ocid1.subnet.oc1.phx.demo-pods"
COMPARTMENT="ocid1.compartment.oc1..demo"
RESOURCE="plexus.io/vnic-pods"

vf_mac() { echo "02:00:17:00:02:0$1"; }
instance() { echo "ocid1.instance.oc1.phx.demo-node$1"; }

api() { in_vcn curl -sf --max-time 5 "http://$API_INNER$1"; }

# ---------------------------------------------------------------- topology

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
    node_base "$n" "$(vf_mac "$n")"
    echo '[]' >"$dir/imds/fallback.json"
    start_imds "$n" --vnics "$dir/imds/fallback.json" --oci-api "http://$OCI_ENDPOINT" \
        --instance-id "$(instance "$n")"
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

main() {
    demo_header "Plexus demo, part 3: from node pool to pod without a console step (scripts/demo-oci.sh)"
    need_tools
    select_bins host-device vnic plexus-agent plexus-operator fake-imds fake-oci-api fake-kube-apiserver
    demo_start
    mkdir -p "$WORK/oci"
    step "VCN: namespace $NS_VCN, router 203.0.113.1 / 198.51.100.1, API $API_ENDPOINT, OCI $OCI_ENDPOINT"
    setup_vcn "$API_ENDPOINT=$API_INNER" "$OCI_ENDPOINT=$OCI_INNER"
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
    demo_finish
}

main "$@"

#!/usr/bin/env bash
# demo-plexus.sh: the OKE SR-IOV tutorial done the Plexus way, end to end.
#
# What the tutorial does by hand (OCI's secondary-VNIC script on every node,
# one NAD per node with a hard-coded IP, pods pinned to nodes), done by
# plexus-agent + the plexus meta plugin + host-device + vnic IPAM, with
# ONE NetworkAttachmentDefinition for all nodes.
#
# Topology (everything inside namespaces this script creates; nothing is
# configured in the host's own network namespace):
#
#   VCN ns   bridge br0 = the VCN. 203.0.113.1/25 and 198.51.100.1/24 play
#            the virtual router (forwarding on), for IPv6 fe80::1 (OCI's
#            link-local ipv6VirtualRouterIp) with 2001:db8::1/64 and
#            2001:db8:0:1::1/64; 203.0.113.2:6443 is the
#            cluster's API endpoint (nft DNAT to fake-kube-apiserver, which
#            only binds loopback: 127.0.0.1:6443 inside the VCN ns).
#   node1/2  ens3 = primary VNIC 203.0.113.11/.12 (/25), default via .1;
#                   2001:db8::11/.12 (/64), IPv6 default via fe80::1
#            ens5 = secondary VNIC (a veth with a fixed MAC plays the VF),
#                   attached "fresh": down, MTU 1500, no address
#            fake-imds on 169.254.169.254:80 (on lo) describing that node's
#            VNICs: primary + dual-stack secondary 198.51.100.21/.22 and
#            2001:db8:0:1::21/::22 (/64); pods ping each other and the
#            other node over both families
#            cni0 = the cluster network (Debian's bridge + host-local,
#                   pods 203.0.113.128/26 on node1, .192/26 on node2)
#   pod1/2   empty sandboxes; the "kubelet" (this script) calls plexus
#
# A node is more than a netns: it has its own files (CNI conf/bin dirs,
# caches, /run/plexus/state.json). Every node-side command runs through
# on_node(): nsenter --net into the node's netns, then unshare -m (private
# mount namespace) where (a) a fresh sysfs is mounted on /sys -- sysfs shows
# the network devices of the netns that mounts it, so /sys/class/net is the
# node's, not the host's (without it host-device's sysfs PCI fallback and
# vnic's name lookup would read the HOST's /sys/class/net/ens5, if any), and
# (b) the node's backing dir $WORK/node<N> is bind-mounted on $ROOT. All node
# paths (NAD dataDir/stateFile, agent flags, kubeconfig) name $ROOT, so ONE
# NAD resolves to each node's own files, as on real nodes. Mounts die with
# the process; the host's mount table is never touched.
#
# The agent itself runs on the node too (its fake IMDS is only reachable
# there, as the real one is only reachable from the instance); `--netns` is
# passed anyway to name the namespace it configures.
#
# Veths have no PCI identity, so the agent's --host-root points at a small
# per-node tree ($ROOT/hw/sys/...) describing what lspci shows on an OCI
# "hardware-assisted" VM: two mlx5 VFs, ens3 (0000:00:03.0) and ens5
# (0000:00:05.0) with the veths' MACs. Netlink is always the real netns.
#
# Steps (each with checks):
#   1 Task 1: vnic plan / apply per node, ip addr/rule/route table 101,
#     state file (one `run` pass), status; node1 <-> node2 secondary ping
#   2 Task 2/3: `plexus-agent install` wraps the node's primary conflist
#     into 00-plexus.conflist; one NAD default/vnic-net in the fake API
#   3 Task 4: kubelet-style ADD of pod1 on node1, pod2 on node2: eth0 +
#     net1 with each node's VNIC IP; network-status + events from the API
#   4 pings pod1 <-> pod2 over net1, node1 -> pod2 / node2 -> pod1 over the VCN
#   5 DEL with the fake API stopped; host-device returns ens5 (name, MTU, up
#     state as found at ADD); the address and table 101 routes left with the
#     device, agent `vnic apply` restores them (the rule stayed on the node)
#
# Usage: ./scripts/demo-plexus.sh   (root, or a sudo user: re-runs via sudo)
#   PLEXUS_DEMO_BIN_DIR=<dir>   our binaries (plexus, host-device, static,
#                               vnic, plexus-agent, fake-imds,
#                               fake-kube-apiserver); default: build them
#                               (dev profile, the build scripts/test.sh uses)
# Needs: iproute2, nsenter/unshare (util-linux), nft, curl, python3,
#        Debian's containernetworking-plugins (/usr/lib/cni: bridge, host-local).
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
as_root "$0" "$@"

TAG="pxp$$"
# shellcheck source=scripts/demo-lib.sh
. "$REPO/scripts/demo-lib.sh"
API_PID=""
API_TOKEN="plexus-demo-token"
API_INNER="127.0.0.1:6443"          # fake API, inside the VCN ns
API_ENDPOINT="203.0.113.2:6443"     # what nodes use (DNAT in the VCN ns)
REF_CNI=/usr/lib/cni

vnic_ip() { echo "198.51.100.2$1"; }
# The secondary VNICs are dual-stack: IPv6 from 2001:db8::/32 only, the
# router link-local (fe80::1) as OCI's ipv6VirtualRouterIp is.
vnic_ip6() { echo "2001:db8:0:1::2$1"; }
primary_ip6() { echo "2001:db8::1$1"; }
# The VCN router's IPv6 addresses (setup_vcn in demo-lib.sh adds them).
VCN_EXTRA_ADDRS=(fe80::1/64 2001:db8::1/64 2001:db8:0:1::1/64)
vnic_mac() { echo "02:00:17:00:02:0$1"; }
pod_cidr() { [ "$1" = 1 ] && echo 203.0.113.128/26 || echo 203.0.113.192/26; }
pod_uid() { echo "5d6c1f0e-8a1b-4c2d-9e3f-00000000000$1"; }
TABLE=101   # table_base 100 + IMDS index 1
# Said wherever `plexus-agent status` prints PCI/driver facts.
SIMULATED_PCI="PCI, TYPE, DRIVER: simulated (fake sysfs tree; the VFs are veths); VNIC, IP, SUBNET: from the fake IMDS; INTERFACE, MAC, WHERE: real (kernel, CNI caches)"

# api GET <path>: the fake API as seen from the VCN ns.
api() {
    in_vcn curl -sf --max-time 5 -H "Authorization: Bearer $API_TOKEN" "http://$API_INNER$1"
}

# ---------------------------------------------------------------- topology

setup_node() {
    local n=$1 ns dir
    ns=$(node_ns "$n")
    dir="$WORK/node$n"
    step "node$n: namespace $ns, ens3 $(primary_ip "$n")/25, ens5 = secondary VNIC $(vnic_mac "$n") (fresh: down, MTU 1500)"
    node_base "$n" "$(vnic_mac "$n")"
    ip -n "$ns" -6 addr add "$(primary_ip6 "$n")/64" dev ens3 nodad
    ip -n "$ns" -6 route add default via fe80::1 dev ens3
    cat >"$dir/imds/vnics.json" <<EOF
[{"vnicId":"ocid1.vnic.oc1.phx.demo-node$n-primary","privateIp":"$(primary_ip "$n")",
  "macAddr":"$(primary_mac "$n" | tr a-f A-F)","virtualRouterIp":"203.0.113.1",
  "subnetCidrBlock":"203.0.113.0/25","vlanTag":0},
 {"vnicId":"ocid1.vnic.oc1.phx.demo-node$n-vnic1","privateIp":"$(vnic_ip "$n")",
  "macAddr":"$(vnic_mac "$n" | tr a-f A-F)","virtualRouterIp":"198.51.100.1",
  "subnetCidrBlock":"198.51.100.0/24","vlanTag":0,
  "ipv6Addresses":["$(vnic_ip6 "$n")"],"ipv6SubnetCidrBlock":"2001:db8:0:1::/64",
  "ipv6VirtualRouterIp":"fe80::1"}]
EOF
    start_imds "$n" --vnics "$dir/imds/vnics.json"
    # The node's primary CNI config (what Flannel's would be): a bridge with
    # this node's pod CIDR. install wraps it; the kubelet never sees it alone.
    cat >"$dir/etc/cni/net.d/10-cluster.conflist" <<EOF
{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge","bridge":"cni0",
  "isGateway":true,"isDefaultGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","dataDir":"$ROOT/var/lib/cni/networks",
          "ranges":[[{"subnet":"$(pod_cidr "$n")"}]]}}]}
EOF
    check "node$n: fake IMDS on 169.254.169.254:80 (node netns only)" imds_on "$n"
}

start_api() {
    step "fake Kubernetes API: NAD default/vnic-net (host-device + vnic IPAM), pods pod1/pod2"
    # ONE NAD for every node. dataDir/stateFile name the node root only
    # because this demo keeps node files out of /var/lib/cni and /run/plexus
    # (the defaults there are exactly these paths minus $ROOT).
    local nad_conf
    nad_conf=$(python3 -c 'import json,sys; print(json.dumps(json.dumps({
        "cniVersion":"1.0.0","name":"vnic-net","type":"host-device","device":"ens5",
        "dataDir":sys.argv[1]+"/var/lib/cni/plexus-host-device",
        "ipam":{"type":"vnic","stateFile":sys.argv[1]+"/run/plexus/state.json",
                "routes":[{"dst":"203.0.113.0/25"},{"dst":"2001:db8::/64"}]}})))' "$ROOT")
    cat >"$WORK/seed.json" <<EOF
[{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition",
  "metadata":{"name":"vnic-net","namespace":"default"},"spec":{"config":$nad_conf}},
 {"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod1","namespace":"default","uid":"$(pod_uid 1)",
  "annotations":{"k8s.v1.cni.cncf.io/networks":"vnic-net"}},
  "spec":{"nodeName":"node1","containers":[{"name":"tools","image":"centos/tools"}]}},
 {"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod2","namespace":"default","uid":"$(pod_uid 2)",
  "annotations":{"k8s.v1.cni.cncf.io/networks":"vnic-net"}},
  "spec":{"nodeName":"node2","containers":[{"name":"tools","image":"centos/tools"}]}}]
EOF
    nsenter --net="/run/netns/$NS_VCN" "$BIN/fake-kube-apiserver" --listen "$API_INNER" --port-file "$WORK/api.port" \
        --seed "$WORK/seed.json" --token "$API_TOKEN" 2>"$WORK/api.log" &
    API_PID=$!
    PIDS+=("$API_PID")
    wait_file "$WORK/api.port" || true
    info "NAD spec.config: $(api /apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/vnic-net |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["config"])')"
    check "fake API answers on $API_INNER (VCN ns)" api /api/v1/namespaces/default/pods/pod1
    check "node1 reaches the API endpoint $API_ENDPOINT over the VCN" \
        nsenter --net="/run/netns/$(node_ns 1)" curl -sf --max-time 3 \
        -H "Authorization: Bearer $API_TOKEN" "http://$API_ENDPOINT/version"
}

# ------------------------------------------------------------------ step 1

plan_is_empty() { agent "$1" vnic plan 2>/dev/null | grep -q 'no changes'; }

task1() {
    local n ns
    for n in "${NODES[@]}"; do
        ns=$(node_ns "$n")
        step "1. Task 1 on node$n: plexus-agent vnic plan / apply (OCI's secondary VNIC script, via netlink)"
        info "\$ plexus-agent --netns $ns vnic plan"
        agent "$n" vnic plan 2>&1 | indent || true
        check "node$n: plan changed nothing (ens5 still without address)" \
            sh -c "! ip -n $ns -4 addr show dev ens5 | grep -q inet"
        info "\$ plexus-agent --netns $ns vnic apply"
        local rc=0
        agent "$n" vnic apply 2>&1 | indent || rc=$?
        check "node$n: vnic apply (exit $rc)" test "$rc" = 0
        info "ip addr show ens5 / ip rule / ip route show table $TABLE"
        { ip -n "$ns" addr show dev ens5; ip -n "$ns" rule show; ip -n "$ns" route show table "$TABLE"; } 2>&1 | indent || true
        check "node$n: ens5 has $(vnic_ip "$n")/24, MTU 9000, UP" \
            sh -c "ip -n $ns addr show dev ens5 | grep -q 'inet $(vnic_ip "$n")/24' &&
                   ip -n $ns link show dev ens5 | grep -q 'mtu 9000 ' &&
                   ip -n $ns link show dev ens5 | grep -q '[<,]UP[,>]'"
        check "node$n: rule 1000 from $(vnic_ip "$n") lookup $TABLE, rule 999 to 169.254.169.254 lookup main" \
            sh -c "ip -n $ns rule show | grep -q '^1000:.*from $(vnic_ip "$n") lookup $TABLE' &&
                   ip -n $ns rule show | grep -q '^999:.*to 169.254.169.254 lookup main'"
        check "node$n: table $TABLE has the subnet route and default via 198.51.100.1" \
            sh -c "ip -n $ns route show table $TABLE | grep -q '^198.51.100.0/24 dev ens5' &&
                   ip -n $ns route show table $TABLE | grep -q '^default via 198.51.100.1 dev ens5'"
        check "node$n: ens5 has $(vnic_ip6 "$n")/64 (nodad), rule from it lookup $TABLE, v6 default via fe80::1 dev ens5" \
            sh -c "ip -n $ns -6 addr show dev ens5 | grep 'inet6 $(vnic_ip6 "$n")/64' | grep -qv tentative &&
                   ip -n $ns -6 rule show | grep -q '^1000:.*from $(vnic_ip6 "$n") lookup $TABLE' &&
                   ip -n $ns -6 route show table $TABLE | grep -q '^default via fe80::1 dev ens5'"
        check "node$n: a second plan is empty" plan_is_empty "$n"

        # No one-shot subcommand writes the state file: it is the last step
        # of `run`'s reconcile pass. Run the agent until the first pass wrote
        # it, then SIGTERM it (that is what the DaemonSet keeps doing).
        step "1. node$n: state file via one reconcile pass of plexus-agent run; status"
        local state="$WORK/node$n/run/plexus/state.json" pid i
        local AGENT_ARGV
        agent_argv "$n"
        "${AGENT_ARGV[@]}" run --no-install --no-device-plugin --metrics-addr "" --interval 60 \
            2>"$WORK/node$n/agent-run.log" &
        pid=$!
        PIDS+=("$pid")
        for i in $(seq 100); do
            [ -s "$state" ] && break
            sleep 0.1
        done
        stop_pid "$pid"
        info "$ROOT/run/plexus/state.json on node$n:"
        python3 -m json.tool "$state" 2>&1 | indent || true
        check "node$n: state file maps ens5 (0000:00:05.0) to $(vnic_ip "$n")" python3 - "$state" "$(vnic_ip "$n")" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert any(v.get("ifname") == "ens5" and v.get("pci") == "0000:00:05.0" and v["ip"] == sys.argv[2]
           and not v["is_primary"] for v in s["vnics"]), s
EOF
        info "\$ plexus-agent status"
        info "  $SIMULATED_PCI"
        agent "$n" status 2>&1 | indent || true
    done
    step "1. check: node1 -> node2 secondary IP from the secondary IP (the tutorial's Task 1 ping)"
    check "node1 $(vnic_ip 1) -> node2 $(vnic_ip 2) (rule $TABLE, ens5)" \
        ip netns exec "$(node_ns 1)" ping -c 2 -W 2 -I "$(vnic_ip 1)" "$(vnic_ip 2)"
    check "node2 $(vnic_ip 2) -> node1 $(vnic_ip 1)" \
        ip netns exec "$(node_ns 2)" ping -c 2 -W 2 -I "$(vnic_ip 2)" "$(vnic_ip 1)"
    check "node1 $(vnic_ip6 1) -> node2 $(vnic_ip6 2) over IPv6 (rule $TABLE, ens5)" \
        ip netns exec "$(node_ns 1)" ping -6 -c 2 -W 2 -I "$(vnic_ip6 1)" "$(vnic_ip6 2)"
}

# ------------------------------------------------------------------ step 2

task23() {
    local n conf
    for n in "${NODES[@]}"; do
        step "2. Task 2/3 on node$n: plexus-agent install (what the DaemonSet does)"
        mkdir -p "$WORK/sa"
        printf '%s' "$API_TOKEN" >"$WORK/sa/token"
        echo "# plain-http fake API: no TLS, the CA is never read" >"$WORK/sa/ca.crt"
        local rc=0
        agent "$n" install --source-bin-dir "$BIN" --api-server "http://$API_ENDPOINT" \
            --token-file "$WORK/sa/token" --ca-file "$WORK/sa/ca.crt" \
            --ready-file "$ROOT/run/plexus/ready" 2>&1 | indent || rc=$?
        check "node$n: install (exit $rc)" test "$rc" = 0
        conf="$WORK/node$n/etc/cni/net.d/00-plexus.conflist"
        # Demo-only edit: the meta plugin's cache and bin dir inside the node
        # root ($ROOT/var/lib/cni/plexus, $ROOT/opt/cni/bin) instead of
        # /var/lib/cni/plexus and /opt/cni/bin on the host.
        { [ -s "$conf" ] && python3 - "$conf" "$ROOT" <<'EOF'
import json, sys
path, root = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["plugins"][0]["cniDir"] = root + "/var/lib/cni/plexus"
c["plugins"][0]["binDir"] = root + "/opt/cni/bin"
# The one NAD names node paths under $ROOT: the admin allows these keys.
c["plugins"][0]["nadNodeKeys"] = ["dataDir", "stateFile"]
open(path, "w").write(json.dumps(c, indent=2) + "\n")
EOF
        } || true
        info "$ROOT/etc/cni/net.d: $(ls "$WORK/node$n/etc/cni/net.d" | tr '\n' ' ')"
        indent <"$conf" || true
        check "node$n: 00-plexus.conflist is type plexus wrapping the bridge conflist" python3 - "$conf" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
p = c["plugins"][0]
assert p["type"] == "plexus" and p["delegates"][0]["plugins"][0]["type"] == "bridge", c
assert p["kubeconfig"].endswith("plexus.d/plexus.kubeconfig"), p
EOF
        check "node$n: binaries installed in $ROOT/opt/cni/bin" \
            test -x "$WORK/node$n/opt/cni/bin/plexus" -a -x "$WORK/node$n/opt/cni/bin/host-device" \
            -a -x "$WORK/node$n/opt/cni/bin/vnic"
    done
}

# ------------------------------------------------------------------ step 3

# runtime_conf <n>: what a runtime hands the first plugin of the node's
# first conflist: the plugin object with name/cniVersion injected.
runtime_conf() {
    python3 - "$WORK/node$1/etc/cni/net.d/00-plexus.conflist" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
p = dict(c["plugins"][0], name=c["name"], cniVersion=c["cniVersion"])
print(json.dumps(p))
EOF
}

# kubelet <command> <n>: the kubelet/runtime calling plexus for pod<n> on node<n>.
kubelet() {
    local cmd=$1 n=$2
    runtime_conf "$n" | on_node "$n" env -i PATH="$PATH" \
        CNI_COMMAND="$cmd" CNI_CONTAINERID="$(cid "$n")" CNI_NETNS="/run/netns/$(pod_ns "$n")" \
        CNI_IFNAME=eth0 CNI_PATH="$ROOT/opt/cni/bin:$REF_CNI" \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod$n;K8S_POD_INFRA_CONTAINER_ID=$(cid "$n");K8S_POD_UID=$(pod_uid "$n")" \
        "$ROOT/opt/cni/bin/plexus"
}

task4() {
    local n ns pns out rc
    for n in "${NODES[@]}"; do
        ns=$(node_ns "$n")
        pns=$(pod_ns "$n")
        ip netns add "$pns"
        ip -n "$pns" link set lo up
        step "3. Task 4: kubelet ADD pod$n on node$n (plexus -> bridge eth0, host-device + vnic net1)"
        rc=0
        out=$(kubelet ADD "$n" 2>"$WORK/add$n.err") || rc=$?
        { echo "$out"; cat "$WORK/add$n.err"; } | indent || true
        check "ADD pod$n (exit $rc)" test "$rc" = 0
        info "pod$n: ip addr / ip route"
        { ip -n "$pns" addr show; ip -n "$pns" route show; } 2>&1 | indent || true
        check "pod$n: eth0 in $(pod_cidr "$n") (cluster network)" \
            sh -c "ip -n $pns -4 addr show dev eth0 | grep -q 'inet 203.0.113.1[0-9][0-9]/26\|inet 203.0.113.2[0-9][0-9]/26'"
        check "pod$n: net1 has node$n's VNIC IP $(vnic_ip "$n")/24 and MAC $(vnic_mac "$n")" \
            sh -c "ip -n $pns addr show dev net1 | grep -q 'inet $(vnic_ip "$n")/24' &&
                   ip -n $pns link show dev net1 | grep -q '$(vnic_mac "$n")'"
        check "pod$n: net1 has node$n's VNIC IPv6 $(vnic_ip6 "$n")/64, usable (not tentative), route 2001:db8::/64 via fe80::1" \
            sh -c "ip -n $pns -6 addr show dev net1 | grep 'inet6 $(vnic_ip6 "$n")/64' | grep -qv tentative &&
                   ip -n $pns -6 route show | grep -q '^2001:db8::/64 via fe80::1 dev net1'"
        check "pod$n: route 203.0.113.0/25 via 198.51.100.1 dev net1 (from the NAD)" \
            sh -c "ip -n $pns route show | grep -q '^203.0.113.0/25 via 198.51.100.1 dev net1'"
        check "node$n: ens5 is gone from the node" sh -c "! ip -n $ns link show dev ens5"
        info "network-status annotation the fake API received for pod$n:"
        api "/api/v1/namespaces/default/pods/pod$n" >"$WORK/pod$n.json" || true
        python3 -c 'import json,sys
p = json.load(open(sys.argv[1]))
print(json.dumps(json.loads(p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]), indent=2))' \
            "$WORK/pod$n.json" 2>&1 | indent || true
        check "pod$n: network-status lists eth0 (default) and net1 default/vnic-net $(vnic_ip "$n") + $(vnic_ip6 "$n")" \
            python3 - "$WORK/pod$n.json" "$(vnic_ip "$n")" "$(vnic_mac "$n")" "$(vnic_ip6 "$n")" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
st = json.loads(p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"])
d = [s for s in st if s.get("default")]
v = [s for s in st if s["name"] == "default/vnic-net"]
assert d and d[0]["interface"] == "eth0", st
assert v and v[0]["interface"] == "net1" and v[0]["ips"] == [sys.argv[2], sys.argv[4]] and v[0]["mac"] == sys.argv[3], st
EOF
        info "\$ plexus-agent status   (node$n, while pod$n holds ens5)"
        info "  $SIMULATED_PCI"
        agent "$n" status 2>&1 | indent || true
    done
    step "3. events (kubectl describe pod): AddedInterface from the fake API"
    api /api/v1/namespaces/default/events | python3 -c 'import json,sys
for e in json.load(sys.stdin)["items"]:
    print(e["involvedObject"]["name"], e["reason"], e["message"])' 2>&1 | indent || true
    check "events: AddedInterface net1 for pod1 and pod2" events_ok
}

events_ok() {
    api /api/v1/namespaces/default/events | python3 -c 'import json, sys
m = [e["involvedObject"]["name"] for e in json.load(sys.stdin)["items"]
     if e["reason"] == "AddedInterface" and "net1" in e["message"]]
assert "pod1" in m and "pod2" in m, m'
}

# ------------------------------------------------------------------ step 4

pings() {
    step "4. ping pod1 <-> pod2 over net1, node -> other node's pod over the VCN"
    check "pod1 -> pod2 $(vnic_ip 2) (-I net1)" \
        ip netns exec "$(pod_ns 1)" ping -c 2 -W 2 -I net1 "$(vnic_ip 2)"
    check "pod2 -> pod1 $(vnic_ip 1) (-I net1)" \
        ip netns exec "$(pod_ns 2)" ping -c 2 -W 2 -I net1 "$(vnic_ip 1)"
    check "node1 -> pod2 $(vnic_ip 2) (ens3, VCN router)" \
        ip netns exec "$(node_ns 1)" ping -c 2 -W 2 "$(vnic_ip 2)"
    check "node2 -> pod1 $(vnic_ip 1) (ens3, VCN router)" \
        ip netns exec "$(node_ns 2)" ping -c 2 -W 2 "$(vnic_ip 1)"
    check "pod1 -> pod2 $(vnic_ip6 2) over IPv6 (-I net1)" \
        ip netns exec "$(pod_ns 1)" ping -6 -c 2 -W 2 -I net1 "$(vnic_ip6 2)"
    check "pod2 -> pod1 $(vnic_ip6 1) over IPv6 (-I net1)" \
        ip netns exec "$(pod_ns 2)" ping -6 -c 2 -W 2 -I net1 "$(vnic_ip6 1)"
    check "node1 $(primary_ip6 1) -> pod2 $(vnic_ip6 2) over IPv6 (ens3, VCN router)" \
        ip netns exec "$(node_ns 1)" ping -6 -c 2 -W 2 "$(vnic_ip6 2)"
    check "node2 $(primary_ip6 2) -> pod1 $(vnic_ip6 1) over IPv6 (ens3, VCN router)" \
        ip netns exec "$(node_ns 2)" ping -6 -c 2 -W 2 "$(vnic_ip6 1)"
}

# ------------------------------------------------------------------ step 5

status_shows_host() { agent "$1" status 2>/dev/null | grep -q '^ens5 .* host *$'; }

task_del() {
    local n ns pns rc
    step "5. DEL without the API server: stop fake-kube-apiserver (pid $API_PID)"
    stop_pid "$API_PID"
    check "fake API is down" sh -c "! nsenter --net=/run/netns/$NS_VCN curl -s --max-time 2 http://$API_INNER/version"
    for n in "${NODES[@]}"; do
        ns=$(node_ns "$n")
        pns=$(pod_ns "$n")
        step "5. kubelet DEL pod$n on node$n (replayed from plexus' cache)"
        rc=0
        kubelet DEL "$n" 2>&1 | indent || rc=$?
        check "DEL pod$n with the API down (exit $rc)" test "$rc" = 0
        check "pod$n: net1 and eth0 are gone" \
            sh -c "! ip -n $pns link show dev net1 && ! ip -n $pns link show dev eth0"
        info "host-device restored on node$n (name, MTU, up state as found at ADD):"
        ip -n "$ns" addr show dev ens5 2>&1 | indent || true
        check "node$n: ens5 back, MTU 9000, UP (host-device's restore)" \
            sh -c "ip -n $ns link show dev ens5 | grep -q 'mtu 9000 ' &&
                   ip -n $ns link show dev ens5 | grep -q '[<,]UP[,>]'"
        info "the address and table went with the device; the agent puts them back:"
        info "\$ plexus-agent --netns $ns vnic plan"
        agent "$n" vnic plan 2>&1 | indent || true
        rc=0
        info "\$ plexus-agent --netns $ns vnic apply"
        agent "$n" vnic apply 2>&1 | indent || rc=$?
        check "node$n: vnic apply after DEL (exit $rc)" test "$rc" = 0
        { ip -n "$ns" addr show dev ens5; ip -n "$ns" route show table "$TABLE"; } 2>&1 | indent || true
        info "\$ plexus-agent status"
        info "  $SIMULATED_PCI"
        agent "$n" status 2>&1 | indent || true
        check "node$n: status shows ens5 on the host again" status_shows_host "$n"
        check "node$n: ens5 has $(vnic_ip "$n")/24 again, table $TABLE complete (agent's vnic apply)" \
            sh -c "ip -n $ns addr show dev ens5 | grep -q 'inet $(vnic_ip "$n")/24' &&
                   ip -n $ns route show table $TABLE | grep -q '^default via 198.51.100.1 dev ens5' &&
                   ip -n $ns rule show | grep -q '^1000:.*from $(vnic_ip "$n") lookup $TABLE'"
        check "node$n: ens5 has $(vnic_ip6 "$n")/64 again, IPv6 table $TABLE and rule (agent's vnic apply)" \
            sh -c "ip -n $ns -6 addr show dev ens5 | grep 'inet6 $(vnic_ip6 "$n")/64' | grep -qv tentative &&
                   ip -n $ns -6 route show table $TABLE | grep -q '^default via fe80::1 dev ens5' &&
                   ip -n $ns -6 rule show | grep -q '^1000:.*from $(vnic_ip6 "$n") lookup $TABLE'"
        check "node$n: no record left (plexus cache, host-device dataDir)" \
            sh -c "[ -z \"\$(ls -A $WORK/node$n/var/lib/cni/plexus $WORK/node$n/var/lib/cni/plexus-host-device 2>/dev/null | grep -v '\.lock$' | grep -v ':$' | grep .)\" ]"
    done
    check "node1 $(vnic_ip 1) -> node2 $(vnic_ip 2) again (NICs back in host use)" \
        ip netns exec "$(node_ns 1)" ping -c 2 -W 2 -I "$(vnic_ip 1)" "$(vnic_ip 2)"
    check "node1 $(vnic_ip6 1) -> node2 $(vnic_ip6 2) again over IPv6" \
        ip netns exec "$(node_ns 1)" ping -6 -c 2 -W 2 -I "$(vnic_ip6 1)" "$(vnic_ip6 2)"
}

main() {
    demo_header "Plexus demo, part 2: the tutorial the Plexus way (scripts/demo-plexus.sh)"
    need_tools "$REF_CNI/bridge" "$REF_CNI/host-local"
    select_bins plexus host-device static vnic plexus-agent fake-imds fake-kube-apiserver
    demo_start
    step "VCN: namespace $NS_VCN, bridge br0, router 203.0.113.1 / 198.51.100.1, API $API_ENDPOINT"
    setup_vcn "$API_ENDPOINT=$API_INNER"
    local n
    for n in "${NODES[@]}"; do
        setup_node "$n"
    done
    start_api
    task1
    task23
    task4
    pings
    task_del
    demo_finish
}

main "$@"

#!/usr/bin/env bash
# Nodes on one machine: N network namespaces joined by a switch, each link with its own
# bandwidth, for as long as a command runs (docs/multi-gpu.md, "Two nodes").
#
#   scripts/nodes.sh [--nodes N] [--rate R[,R...]] -- COMMAND [ARG...]
#   scripts/nodes.sh --check          exits 0 where it can run, else 2 with the reason
#   scripts/nodes.sh --on I -- COMMAND [ARG...]
#                                     inside a run's COMMAND: runs COMMAND on node I
#
# Node i (0-based) is the namespace $MGPU_NODE_NS_i with one interface, mgpu0, at 10.231.0.(i+1)/24;
# a switch namespace ($MGPU_NODE_SWITCH_NS) holds a bridge and each node's other end, port<i>.
# --rate shapes both directions of each node's link with tc's tbf (one rate for all links, or
# one per node: 1gbit,200mbit); without it the links are as fast as the kernel's veth.
# COMMAND runs in the machine's own namespace with MGPU_NODES, MGPU_NODE_NS_<i>,
# MGPU_NODE_ADDR_<i>, MGPU_NODE_IF (mgpu0) and MGPU_NODE_SWITCH_NS set; it starts a process on
# node i with `scripts/nodes.sh --on i -- ...` (that is, `ip netns exec "$MGPU_NODE_NS_i" ...`,
# the environment kept), and cuts node i's link with
# `ip -n "$MGPU_NODE_SWITCH_NS" link set port<i> down`.
# Everything it makes is in namespaces of its own, named for this run (two runs at once do not
# collide), and nothing outside them is touched; on exit, Ctrl-C or SIGTERM it kills what still
# runs in them and deletes them. Needs root and iproute2's `ip netns` (and `tc` for --rate).
# Exit status: COMMAND's; 2 when it cannot make the nodes (the reason on stderr).
set -euo pipefail

nodes=2
rates=""
check=0
on=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --on) on="${2:?--on needs a node number}"; shift 2 ;;
    --nodes) nodes="${2:?--nodes needs a count}"; shift 2 ;;
    --rate) rates="${2:?--rate needs a rate such as 200mbit}"; shift 2 ;;
    --check) check=1; shift ;;
    --) shift; break ;;
    *) echo "nodes.sh: unknown argument '$1' (see the head of scripts/nodes.sh)" >&2; exit 2 ;;
  esac
done
if [[ -n $on ]]; then
  ns_var="MGPU_NODE_NS_$on"
  [[ $on =~ ^[0-9]$ && -n ${!ns_var:-} ]] || {
    echo "nodes.sh: --on $on: no node $on here (run it inside scripts/nodes.sh's command," \
      "which sets MGPU_NODE_NS_0 to MGPU_NODE_NS_$((${MGPU_NODES:-2} - 1)))" >&2
    exit 2
  }
  [[ $# -gt 0 ]] || { echo "nodes.sh: no command after --on $on --" >&2; exit 2; }
  exec ip netns exec "${!ns_var}" "$@"
fi
[[ $nodes =~ ^[2-9]$ ]] || { echo "nodes.sh: --nodes must be 2 to 9, not '$nodes'" >&2; exit 2; }
[[ $check -eq 1 || $# -gt 0 ]] || { echo "nodes.sh: no command after --" >&2; exit 2; }

cannot() { echo "nodes.sh: cannot make network namespaces here: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || cannot "it needs root (ip netns), and this is uid $(id -u)"
command -v ip > /dev/null || cannot "no 'ip' command (Debian's iproute2)"
[[ -z $rates ]] || command -v tc > /dev/null || cannot "--rate needs 'tc' (Debian's iproute2)"

# A run's names: the namespaces carry the process id and a random tag. Those of a run whose
# process is gone (killed with SIGKILL, as CTest does at a test's timeout) are removed first.
for old in $(ip netns list 2> /dev/null | grep -o '^mgpu-[0-9]*-[0-9a-f]*-[a-z0-9]*'); do
  pid=${old#mgpu-}; pid=${pid%%-*}
  if ! kill -0 "$pid" 2> /dev/null; then
    ip netns pids "$old" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
    ip netns delete "$old" 2> /dev/null || true
  fi
done
tag="mgpu-$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
switch="$tag-switch"
made=()
teardown() {
  local ns
  for ns in "${made[@]}"; do
    # What still runs in a namespace keeps it alive after `ip netns delete`: end it first.
    ip netns pids "$ns" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
    ip netns delete "$ns" 2> /dev/null || true
  done
  made=()
}
child=""
stop() {  # on a signal: the command, what runs on the nodes, the nodes
  [[ -z $child ]] || kill -TERM "$child" 2> /dev/null || true
  teardown
  exit "$1"
}
trap teardown EXIT
trap 'stop 130' INT
trap 'stop 143' TERM
trap 'stop 129' HUP

make_ns() {
  made+=("$1")  # first: a signal right after the add still removes it
  ip netns add "$1" 2> /dev/null || cannot "'ip netns add $1' failed: $(ip netns add "$1" 2>&1)"
  ip -n "$1" link set lo up
}

if [[ $check -eq 1 ]]; then
  make_ns "$tag-check"
  ip -n "$tag-check" link add probe0 type veth peer name probe1 2> /dev/null ||
    cannot "the kernel makes no veth pairs"
  ip -n "$tag-check" link add br0 type bridge 2> /dev/null || cannot "the kernel makes no bridges"
  if [[ -n $rates ]]; then
    tc -n "$tag-check" qdisc add dev probe0 root tbf rate 1mbit burst 32kb latency 50ms 2> /dev/null ||
      cannot "tc's tbf qdisc is missing from this kernel"
  fi
  echo "nodes.sh: network namespaces work here"
  exit 0
fi

# tbf's burst: at least 5 ms of the rate and 32 KB, so a full-size packet always fits.
burst_for() {
  local rate="$1" bits form="$1"
  [[ $rate =~ ^[1-9][0-9]*[kmg]bit$ ]] || form=bad
  case "$form" in
    *gbit) bits=$((${rate%gbit} * 1000000000)) ;;
    *mbit) bits=$((${rate%mbit} * 1000000)) ;;
    *kbit) bits=$((${rate%kbit} * 1000)) ;;
    *) echo "nodes.sh: rate '$rate' is not a whole number of kbit, mbit or gbit" >&2; exit 2 ;;
  esac
  local bytes=$((bits / 8 / 200))
  echo $((bytes > 32768 ? bytes : 32768))
}
IFS=, read -r -a rate_list <<< "$rates"
if [[ ${#rate_list[@]} -gt 1 && ${#rate_list[@]} -ne $nodes ]]; then
  echo "nodes.sh: --rate has ${#rate_list[@]} rates for $nodes nodes (give one, or one a node)" >&2
  exit 2
fi
for rate in "${rate_list[@]}"; do burst_for "$rate" > /dev/null; done  # refused before any node
shape() {  # shape NS DEV RATE
  tc -n "$1" qdisc add dev "$2" root tbf rate "$3" burst "$(burst_for "$3")" latency 100ms
}

make_ns "$switch"
ip -n "$switch" link add br0 type bridge
ip -n "$switch" link set br0 up
export MGPU_NODES="$nodes" MGPU_NODE_IF=mgpu0 MGPU_NODE_SWITCH_NS="$switch"
for ((i = 0; i < nodes; i++)); do
  ns="$tag-node$i"
  make_ns "$ns"
  # Made inside the switch with its other end straight in the node: never in this namespace.
  ip -n "$switch" link add "port$i" type veth peer name mgpu0 netns "$ns"
  ip -n "$switch" link set "port$i" master br0 up
  ip -n "$ns" addr add "10.231.0.$((i + 1))/24" dev mgpu0
  ip -n "$ns" link set mgpu0 up
  if [[ -n $rates ]]; then
    rate="${rate_list[0]}"
    [[ ${#rate_list[@]} -gt 1 ]] && rate="${rate_list[$i]}"
    shape "$ns" mgpu0 "$rate"          # node -> switch
    shape "$switch" "port$i" "$rate"   # switch -> node
  fi
  export "MGPU_NODE_NS_$i=$ns" "MGPU_NODE_ADDR_$i=10.231.0.$((i + 1))"
done

# In the background, so that a signal reaches the traps while the command runs.
"$@" &
child=$!
set +e
wait "$child"
status=$?
set -e
exit "$status"

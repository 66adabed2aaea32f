#!/bin/sh
# TEST BED ONLY: the simulated guests' network of a bridged KVM hypervisor.
# A Linux bridge br0 without uplink and two "VMs", network namespaces vmA and vmB,
# each on a veth pair enslaved to br0, with link-local addresses: VM-to-VM traffic
# crosses the bridge (and, with bridge netfilter on, the host's FORWARD chain) and
# never leaves the host. Idempotent: a restarted host starts from a fresh network
# namespace, a rerun in a running one rebuilds the same state.
set -eu

BRIDGE=br0

add_vm() {  # name, veth on the bridge side, veth in the VM, address
    vm=$1 host_end=$2 vm_end=$3 address=$4
    ip netns del "$vm" 2>/dev/null || true
    ip link del "$host_end" 2>/dev/null || true
    ip netns add "$vm"
    ip link add "$host_end" type veth peer name "$vm_end"
    ip link set "$host_end" master "$BRIDGE" up
    ip link set "$vm_end" netns "$vm"
    ip -n "$vm" link set lo up
    ip -n "$vm" link set "$vm_end" up
    ip -n "$vm" addr add "$address" dev "$vm_end"
}

ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
ip link set "$BRIDGE" up
add_vm vmA vethA ethA 169.254.99.1/24
add_vm vmB vethB ethB 169.254.99.2/24

#!/bin/busybox sh
# The init of a `cargo xtask matrix` guest: mount what enetstat needs, load the sock_diag
# modules, run the checks, print their lines between markers, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
if grep -q enetstat.nobtf /proc/cmdline; then
    # A kernel without BTF: hide it; and leave tracefs for enetstat to mount, as it must.
    mount -t tmpfs none /sys/kernel/btf
    export ENETSTAT_GUEST_NOBTF=1
else
    mount -t tracefs tracefs /sys/kernel/tracing
fi
# The mode enetstat must pick on this kernel, for the guest's `mode` check.
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        enetstat.mode=*) export ENETSTAT_GUEST_MODE="${arg#enetstat.mode=}" ;;
    esac
done
ip link set lo up
# Keep the kernel's messages off the console the checks print on.
echo 1 > /proc/sys/kernel/printk

echo "=== ENETSTAT-MATRIX BEGIN $(uname -r) ==="
for m in $(cat /matrix-modules/order); do
    insmod "/matrix-modules/$m.ko" || echo "matrix: insmod $m failed"
done
export ENETSTAT_BIN=/bin/enetstat
export ENETSTAT_PEER_BIN=/bin/enetstat-peer
export ENETSTAT_SOCKETS_BIN=/bin/enetstat-sockets
export ENETSTAT_ENDER_BIN=/bin/enetstat-ender
/bin/enetstat-guest
echo "=== ENETSTAT-MATRIX END rc=$? ==="
poweroff -f

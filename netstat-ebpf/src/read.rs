//! Reading kernel memory at offsets the running kernel's BTF gave userspace: the one way the
//! programs read a field, so none hard-codes a kernel layout.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_socket_cookie};
use netstat_common::{Offsets, counter};

use crate::counters::count;

/// Reads a `T` at `offset` bytes into the kernel object at `base`; a failed read counts and
/// yields `T::default()`, so one unreadable field never costs the whole record.
#[inline(always)]
pub fn read<T: Default>(bank: u32, base: *const u8, offset: u32) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one returns an error, not a fault.
    match unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) } {
        Ok(value) => value,
        Err(_) => {
            count(bank, counter::READ_ERRORS);
            T::default()
        }
    }
}

/// The socket's cookie. With `HELPER`, `bpf_get_socket_cookie`, which makes one if the socket
/// has none yet (Linux 5.12+ for tracing programs). Without, the cookie field as it stands: 0
/// until something asked for the cookie (a sock_diag dump does), and then the same value.
#[inline(always)]
pub fn cookie<const HELPER: bool>(bank: u32, sk: *const u8, off: &Offsets) -> u64 {
    if HELPER {
        // SAFETY: `sk` is a tracepoint's own BTF-typed socket pointer, as the helper requires.
        unsafe { bpf_get_socket_cookie(sk as *mut _) }
    } else {
        read(bank, sk, off.skc_cookie)
    }
}

/// The local port. At the transition into CLOSE the kernel has already released an
/// automatically bound port (`skc_num` is 0), but `inet_sport` still holds it.
#[inline(always)]
pub fn local_port(bank: u32, sk: *const u8, off: &Offsets) -> u16 {
    let num: u16 = read(bank, sk, off.skc_num);
    if num != 0 {
        num
    } else {
        u16::from_be(read::<u16>(bank, sk, off.inet_sport))
    }
}

/// The id of the socket's cgroup: `sk->sk_cgrp_data.cgroup->kn->id`.
#[inline(always)]
pub fn socket_cgroup(bank: u32, sk: *const u8, off: &Offsets) -> u64 {
    if off.sk_cgroup == 0 {
        return 0;
    }
    let cgroup = read::<usize>(bank, sk, off.sk_cgroup) as *const u8;
    if cgroup.is_null() {
        return 0;
    }
    let kn = read::<usize>(bank, cgroup, off.cgroup_kn) as *const u8;
    if kn.is_null() {
        return 0;
    }
    read(bank, kn, off.kernfs_node_id)
}

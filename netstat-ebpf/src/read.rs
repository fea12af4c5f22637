//! Reading kernel memory at offsets the running kernel's BTF gave userspace: the one way the
//! programs read a field, so none hard-codes a kernel layout.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf, generated::bpf_get_socket_cookie},
    macros::map,
    maps::PerCpuArray,
};
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

/// Bytes of a socket read at once: `struct sock_common`'s head, where the family, ports,
/// addresses (IPv6 too), state and network namespace are (offsets 0 to 88 on every kernel
/// we know; userspace refuses a kernel where they are not below [`HEAD`]). One read of them
/// costs what one read of a field does, and a read each was a fifth of the state program's
/// time.
pub const HEAD: usize = netstat_common::SOCKET_HEAD as usize;

/// Where [`Head`] reads to: a map value, which a field's offset from userspace may index
/// (the verifier refuses a variable offset into the stack on older kernels). One per counter
/// bank, as the counters: a program never runs inside itself on a CPU (nor, preempted, beside
/// itself: the kernel skips it there), but another program may interrupt it. 16 bytes past
/// the head, so that any offset below [`HEAD`] is in bounds for any field.
#[map]
static SCRATCH: PerCpuArray<[u8; HEAD + 16]> = PerCpuArray::with_max_entries(counter::BANKS, 0);

/// A socket's first [`HEAD`] bytes, read once, and the socket, for what lies beyond them.
pub struct Head {
    bytes: *const [u8; HEAD + 16],
    sk: *const u8,
    bank: u32,
}

impl Head {
    /// Reads `sk`'s head; `None` for no socket (a NULL `sk`), or if the scratch map cannot
    /// be had (never, in practice).
    #[inline(always)]
    pub fn read(bank: u32, sk: *const u8) -> Option<Head> {
        if sk.is_null() {
            return None;
        }
        let bytes = SCRATCH.get_ptr_mut(bank)?;
        // SAFETY: bpf_probe_read_kernel checks the address; the map value is this CPU's and
        // this bank's, which no other program writes.
        let head = unsafe { &mut (&mut *bytes)[..HEAD] };
        // SAFETY: as above.
        if unsafe { bpf_probe_read_kernel_buf(sk, head) }.is_err() {
            count(bank, counter::READ_ERRORS);
            head.fill(0);
        }
        Some(Head { bytes, sk, bank })
    }

    /// The `T` at `offset` (below [`HEAD`]) in the socket. The offset is masked, not
    /// checked: a branch per field doubled the paths the verifier of Linux 5.10 and 6.1 had
    /// to follow.
    #[inline(always)]
    pub fn field<T: Copy>(&self, offset: u32) -> T {
        const { assert!(size_of::<T>() <= 16) };
        let at = offset as usize & (HEAD - 1);
        // SAFETY: `at` + 16 is within the map value; an unaligned read.
        unsafe { core::ptr::read_unaligned((*self.bytes).as_ptr().add(at).cast::<T>()) }
    }

    /// The local and remote ports, in host order. At the transition into CLOSE the kernel
    /// has already released an automatically bound port (`skc_num` is 0), but `inet_sport`
    /// still holds it.
    #[inline(always)]
    pub fn ports(&self, off: &Offsets) -> (u16, u16) {
        let num: u16 = self.field(off.skc_num);
        let local = if num != 0 {
            num
        } else {
            u16::from_be(read::<u16>(self.bank, self.sk, off.inet_sport))
        };
        (local, u16::from_be(self.field::<u16>(off.skc_dport)))
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

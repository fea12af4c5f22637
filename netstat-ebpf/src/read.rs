//! Reading kernel memory at offsets the running kernel's BTF gave userspace, so no program
//! hard-codes a kernel layout. Two ways:
//! - [`direct`]: a load in place from a BTF-typed object, at an offset the verifier knows
//!   ([`offset!`]). The state program's way on kernels with the cookie helper (5.12+).
//! - [`read`] and [`Head`]: `bpf_probe_read_kernel`, a helper call each. For everything
//!   else: objects the verifier has no type for (the classic tracepoint's, the accept
//!   program's file table) and older kernels. A failed read is counted (`read_errors`); a
//!   direct load that faults reads 0, uncounted.

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

/// A field of a BTF-typed kernel object (the tracepoint's socket, or what its pointers lead
/// to), loaded in place rather than through `bpf_probe_read_kernel`. Under churn the helper
/// calls were about a third of the programs' time; a load is one instruction that the kernel
/// makes safe (a fault reads 0).
///
/// The verifier allows such a load only at an offset it knows, and `offset` must be one it
/// does: read with [`offset!`] from the frozen, read-only map `CONFIG` lives in, which the
/// verifier reads as a constant. (Only for the programs of kernels with the cookie helper,
/// 5.12+: the older ones read everything with the helper.)
#[inline(always)]
pub fn direct<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: the verifier checks the access against the object's BTF type.
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) }
}

/// A field of the load-time configuration, read from `CONFIG`'s own map at the point of use
/// (not from a copy on the stack, whose value the verifier would not know).
macro_rules! offset {
    ($($field:ident).+) => {
        // SAFETY: `CONFIG` is a `Global<Config>`, transparent over the `Config`; the read is
        // volatile so it is not folded into the compile-time initializer.
        unsafe {
            core::ptr::read_volatile(
                &raw const (*(&raw const crate::CONFIG).cast::<netstat_common::Config>())
                    $(.$field)+,
            )
        }
    };
}
pub(crate) use offset;

/// The `T` at `offset` in the kernel object at `base`: loaded in place (`IN_PLACE`, where
/// `base` is BTF-typed and `offset` comes from [`offset!`]), or read through the helper.
#[inline(always)]
pub fn field<const IN_PLACE: bool, T: Copy + Default>(
    bank: u32,
    base: *const u8,
    offset: u32,
) -> T {
    if IN_PLACE {
        direct(base, offset)
    } else {
        read(bank, base, offset)
    }
}

/// A task's 16-byte name (`comm`, at `offset` in `task`): loaded in place in two halves (a
/// load in place is at most 8 bytes), or read through the helper in one go.
#[inline(always)]
pub fn comm<const IN_PLACE: bool>(bank: u32, task: *const u8, offset: u32) -> [u8; 16] {
    if !IN_PLACE {
        return read(bank, task, offset);
    }
    let mut comm = [0u8; 16];
    comm[..8].copy_from_slice(&direct::<u64>(task, offset).to_ne_bytes());
    comm[8..].copy_from_slice(&direct::<u64>(task, offset + 8).to_ne_bytes());
    comm
}

/// Bytes of a socket read at once: `struct sock_common`'s head, where the family, ports,
/// addresses (IPv6 too), state and network namespace are (offsets 0 to 88 on every kernel
/// we know; userspace refuses a kernel where they are not below [`HEAD`]). One read of them
/// costs what one read of a field does, and a read each was a fifth of the state program's
/// time. (Where loads in place are allowed they are cheaper still: no copy at all.)
pub const HEAD: usize = netstat_common::SOCKET_HEAD as usize;

/// Where [`Head`] reads to: a map value, which a field's offset from userspace may index
/// (the verifier refuses a variable offset into the stack on older kernels). One per counter
/// bank, as the counters: another program may interrupt this one on a CPU, and so may a call
/// of its own program where the kernel has no recursion guard (before 6.0), which takes a
/// bank of its own (`counters::Call`). 16 bytes past
/// the head, so that any offset below [`HEAD`] is in bounds for any field.
#[map]
static SCRATCH: PerCpuArray<[u8; HEAD + 16]> = PerCpuArray::with_max_entries(counter::BANKS, 0);

/// A socket's first [`HEAD`] bytes, and the socket, for what lies beyond them. `IN_PLACE`:
/// each field is loaded where it is (see [`direct`]; the socket must be BTF-typed and the
/// offsets from [`offset!`]); otherwise the head is copied once, into [`SCRATCH`].
pub struct Head<const IN_PLACE: bool> {
    bytes: *const [u8; HEAD + 16],
    sk: *const u8,
    bank: u32,
}

impl<const IN_PLACE: bool> Head<IN_PLACE> {
    /// Reads `sk`'s head; `None` for no socket (a NULL `sk`), or if the scratch map cannot
    /// be had (never, in practice).
    #[inline(always)]
    pub fn read(bank: u32, sk: *const u8) -> Option<Self> {
        if sk.is_null() {
            return None;
        }
        if IN_PLACE {
            return Some(Head {
                bytes: core::ptr::null(),
                sk,
                bank,
            });
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
        if IN_PLACE {
            return direct(self.sk, offset);
        }
        let at = offset as usize & (HEAD - 1);
        // SAFETY: `at` + 16 is within the map value; an unaligned read.
        unsafe { core::ptr::read_unaligned((*self.bytes).as_ptr().add(at).cast::<T>()) }
    }

    /// The local and remote ports, in host order. At the transition into CLOSE the kernel
    /// has already released an automatically bound port (`skc_num` is 0), but `inet_sport`
    /// still holds it. (`inet_sock` lies beyond `struct sock`, out of a load in place's
    /// reach: `inet_sport` is always read through the helper.)
    #[inline(always)]
    pub fn ports(&self) -> (u16, u16) {
        let num: u16 = self.field(offset!(offsets.skc_num));
        let local = if num != 0 {
            num
        } else {
            u16::from_be(read::<u16>(self.bank, self.sk, offset!(offsets.inet_sport)))
        };
        (
            local,
            u16::from_be(self.field::<u16>(offset!(offsets.skc_dport))),
        )
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
pub fn socket_cgroup<const IN_PLACE: bool>(bank: u32, sk: *const u8) -> u64 {
    if offset!(offsets.sk_cgroup) == 0 {
        return 0;
    }
    let cgroup: *const u8 = field::<IN_PLACE, usize>(bank, sk, offset!(offsets.sk_cgroup)) as _;
    if cgroup.is_null() {
        return 0;
    }
    let kn: *const u8 = field::<IN_PLACE, usize>(bank, cgroup, offset!(offsets.cgroup_kn)) as _;
    if kn.is_null() {
        return 0;
    }
    field::<IN_PLACE, u64>(bank, kn, offset!(offsets.kernfs_node_id))
}

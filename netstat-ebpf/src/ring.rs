//! The ring buffers the records go to: one per CPU, up to [`RINGS`].
//!
//! One ring shared by every CPU serialises them on its spinlock and bounces its lock, its
//! producer position and the cache line between two records from CPU to CPU. In the
//! benchmark's server shape (both CPUs making transitions) that was a third of the state
//! program's time: 350 ns a record with one ring, 237 with the load on one CPU. So each CPU
//! writes to a ring of its own, and userspace merges them by the records' times (see
//! `probe/stream.rs` in netstat-user). Beyond [`RINGS`] CPUs, CPUs share rings (`cpu % rings`).
//!
//! Each ring is its own map, not an array of maps: map-in-map with ring buffers and aya's
//! BTF map definitions would tie the programs to kernels with BTF, which the classic
//! tracepoint must do without. Userspace sizes the rings in use and shrinks the others to a
//! page.

use aya_ebpf::{helpers::bpf_get_smp_processor_id, macros::map, maps::RingBuf};
use netstat_common::Config;

/// The most rings: userspace uses `min(possible CPUs, RINGS)` of them.
pub const RINGS: u32 = netstat_common::RINGS;

#[map]
static EVENTS_0: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_1: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_2: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_3: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_4: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_5: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_6: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_7: RingBuf = RingBuf::with_byte_size(4096, 0);

const _: () = assert!(RINGS == 8);

/// This CPU's ring. The program cannot migrate while it runs, so its reserve, submit and
/// wakeup all go to the same one.
#[inline(always)]
pub fn current(config: &Config) -> &'static RingBuf {
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    // `checked_rem`: no division-by-zero panic path for the verifier to refuse.
    match cpu.checked_rem(config.rings as u32).unwrap_or(0) {
        0 => &EVENTS_0,
        1 => &EVENTS_1,
        2 => &EVENTS_2,
        3 => &EVENTS_3,
        4 => &EVENTS_4,
        5 => &EVENTS_5,
        6 => &EVENTS_6,
        _ => &EVENTS_7,
    }
}

//! When a record wakes the reader.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::Array};
use netstat_common::Config;

use crate::EVENTS;

/// `bpf_ktime_get_ns()` of the last time we woke the reader, shared by all CPUs. Races between
/// CPUs only cost an extra or a skipped wakeup, and the reader's own timer covers the latter.
#[map]
static LAST_WAKEUP: Array<u64> = Array::with_max_entries(1, 0);

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Kernel monotonic time, for records and wakeups.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Wake the reader when enough time has passed since the last wakeup or enough bytes wait.
/// Otherwise let the kernel decide (flags 0): it wakes the reader only when the reader had
/// read everything before this record, so it may be asleep; a reader that is behind is awake
/// and will get to the record, which saves a wakeup per event under load. (Never wake it
/// would strand a record that lands just after the reader found the ring empty.)
#[inline(always)]
pub fn flags(config: &Config, now: u64) -> u64 {
    if config.wakeup_interval_ns == 0 {
        return 0;
    }
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a valid map value pointer; a torn read between CPUs only shifts one wakeup.
    let since = now.wrapping_sub(unsafe { *last });
    if since >= config.wakeup_interval_ns || EVENTS.query(BPF_RB_AVAIL_DATA) >= config.wakeup_bytes
    {
        unsafe { *last = now };
        BPF_RB_FORCE_WAKEUP
    } else {
        0
    }
}

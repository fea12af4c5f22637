//! Owner facts from process context: which process accepted a socket, and which processes
//! ended. Both run in the process they describe, so unlike most state transitions (made in
//! softirq, where the task on the CPU is anybody) the current task is the answer.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, generated::bpf_get_current_task_btf,
    },
    macros::map,
    maps::LruHashMap,
    programs::TracePointContext,
};
use netstat_common::{AF_INET, AF_INET6, Accept, Config, Exit, IPPROTO_TCP, counter, record_kind};

use crate::{
    counters::{BANK_EXIT_RESCUE, BANK_EXITS, BANK_OWNERS, count},
    read::{Head, comm, field, offset, read},
    ring, wakeup,
};

/// At the exit of `accept()`/`accept4()`: finds the socket behind the returned descriptor
/// (`current->files->fdt->fd[fd]->private_data->sk`) and records the accepting process. The
/// fallback for kernels where [`accepted_sock`] cannot run.
#[inline(always)]
pub fn accepted(ctx: &TracePointContext, config: &Config) {
    let bank = BANK_OWNERS;
    let tasks = &config.tasks;
    // SAFETY: a read inside the tracepoint's record, at the offset tracefs gave.
    let fd: i64 = match unsafe { ctx.read_at::<i64>(tasks.sys_exit_ret as usize) } {
        Ok(fd) if fd >= 0 => fd,
        _ => return,
    };
    // SAFETY: the helper only returns the current task's address.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files = read::<usize>(bank, task, tasks.task_files) as *const u8;
    let fdt = read::<usize>(bank, files, tasks.files_fdt) as *const u8;
    let table = read::<usize>(bank, fdt, tasks.fdtable_fd) as *const u8;
    let file = read::<usize>(bank, table.wrapping_add(fd as usize * 8), 0);
    if file == 0 {
        return; // another thread closed it already
    }
    let socket = read::<usize>(bank, file as *const u8, tasks.file_private_data) as *const u8;
    // Another thread may have put another file at that number since: only a socket's
    // `struct socket` points back to its file.
    if socket.is_null() || read::<usize>(bank, socket, tasks.socket_file) != file {
        return;
    }
    let sk = read::<usize>(bank, socket, tasks.socket_sk) as *const u8;
    record_accept::<false>(config, bank, sk, task);
}

/// At the exit of `inet_csk_accept`, with the socket it returns (NULL on failure). Every TCP
/// accept goes through it: the system calls, io_uring's, the kernel's own. It runs in the
/// accepting task, like the system call's exit, but hands over the socket itself, BTF-typed:
/// no walk through the file table, every field loaded in place (see `read::direct`). And it
/// is not a system call tracepoint, whose mere presence sends every system call of every
/// process on the host through the kernel's slow path. For kernels with the cookie helper
/// (5.12+), as the in-place loads of the state program.
#[inline(always)]
pub fn accepted_sock(config: &Config, sk: *const u8) {
    // SAFETY: the helper only returns the current task, BTF-typed (5.11+).
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    record_accept::<true>(config, BANK_OWNERS, sk, task);
}

/// Records that the current task (`task`) accepted the socket `sk`. `IN_PLACE`: `sk` and
/// `task` are BTF-typed, and their fields are loaded in place (see `read::field`).
#[inline(always)]
fn record_accept<const IN_PLACE: bool>(config: &Config, bank: u32, sk: *const u8, task: *const u8) {
    let Some(head) = Head::<IN_PLACE>::read(bank, sk) else {
        return;
    };
    let family: u16 = head.field(offset!(offsets.skc_family));
    if (family != AF_INET && family != AF_INET6)
        || field::<IN_PLACE, u16>(bank, sk, offset!(offsets.sk_protocol)) != IPPROTO_TCP
    {
        return; // Unix and UDP sockets are accepted far more often than TCP ones
    }
    let (lport, rport) = head.ports();
    if !config.filter.keeps(family, lport, rport) {
        return;
    }
    let net: *const u8 = head.field::<usize>(offset!(offsets.skc_net)) as *const u8;
    let netns: u32 = if net.is_null() {
        0
    } else {
        field::<IN_PLACE, u32>(bank, net, offset!(offsets.net_ns_inum))
    };
    let leader =
        field::<IN_PLACE, usize>(bank, task, offset!(tasks.task_group_leader)) as *const u8;
    let comm = comm::<IN_PLACE>(bank, leader, offset!(tasks.task_comm));
    // Before the reservation: see `ring.rs` for why the merge needs it so.
    let now = wakeup::now();
    let pid_tgid = bpf_get_current_pid_tgid();
    let record = Accept {
        kind: record_kind::ACCEPT,
        family,
        lport,
        rport,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ts_ns: now,
        // The field, not the helper: an accepted socket's cookie was made at its first
        // transitions, and the field is what the older programs read too.
        cookie: field::<IN_PLACE, u64>(bank, sk, offset!(offsets.skc_cookie)),
        skaddr: sk as u64,
        netns,
        _pad: 0,
        comm,
    };
    ring::emit(config, bank, &record);
}

/// The calls the first exit program took (by thread), for its rescue copy to take off: a
/// `pid_tgid` left here is one the rescue copy did not run for (it is only ever skipped, like
/// the first, while another task sits preempted inside it), and the LRU drops it.
#[map]
static EXIT_CALLS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(1024, 0);

/// Which exit program runs: the first, or its rescue copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ExitCopy {
    /// Records every process end, and notes every call for the rescue copy.
    First,
    /// Records only the ends the first copy was skipped for.
    Rescue,
}

/// At `sched:sched_process_exit`, which fires for every thread: records the end of a
/// process when its last thread goes (`signal->live` is already 0 then). Without the task
/// offsets the group leader's exit stands for the process's.
///
/// Since Linux 7.x tracepoint callbacks can be preempted, and a task preempted inside this
/// program makes the kernel skip it (its per-CPU recursion guard) for another task exiting
/// on that CPU. So with BTF it runs twice, as [`ExitCopy::First`] and then
/// [`ExitCopy::Rescue`], which records what the first did not: the first notes each call it
/// takes in [`EXIT_CALLS`], the rescue takes the note off or, finding none, counts the
/// call (`EXIT_RESCUES`; the first's misses minus those are lost) and records the end itself.
#[inline(always)]
pub fn exited(config: &Config, copy: ExitCopy) {
    let bank = match copy {
        ExitCopy::First => BANK_EXITS,
        ExitCopy::Rescue => BANK_EXIT_RESCUE,
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    // Every call is noted, not only the process ends recorded: the kernel counts a skipped
    // call whether it was a process end or not, and the rescue copy must count the same.
    match copy {
        ExitCopy::First => {
            let _ = EXIT_CALLS.insert(&pid_tgid, &1, 0);
        }
        ExitCopy::Rescue => {
            if EXIT_CALLS.remove(&pid_tgid).is_ok() {
                return;
            }
            count(bank, counter::EXIT_RESCUES);
        }
    }
    let tasks = &config.tasks;
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tasks.task_signal != 0 {
        // SAFETY: the helper only returns the current task's address.
        let task = unsafe { bpf_get_current_task() } as *const u8;
        let signal = read::<usize>(bank, task, tasks.task_signal) as *const u8;
        if read::<i32>(bank, signal, tasks.signal_live) != 0 {
            return;
        }
    } else if tid != tgid {
        return;
    }
    // Before the reservation: see `ring.rs` for why the merge needs it so.
    let now = wakeup::now();
    let record = Exit {
        kind: record_kind::EXIT,
        _pad: 0,
        pid: tgid,
        ts_ns: now,
    };
    ring::emit(config, bank, &record);
}

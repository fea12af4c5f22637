//! Owner facts from process context: which process accepted a socket, and which processes
//! ended. Both run in the process they describe, so unlike most state transitions (made in
//! softirq, where the task on the CPU is anybody) the current task is the answer.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::map,
    maps::LruHashMap,
    programs::TracePointContext,
};
use netstat_common::{AF_INET, AF_INET6, Accept, Config, Exit, IPPROTO_TCP, counter, record_kind};

use crate::{
    counters::{BANK_EXIT_RESCUE, BANK_OWNERS, count},
    read::{Head, read},
    ring, wakeup,
};

/// At the exit of `accept()`/`accept4()`: finds the socket behind the returned descriptor
/// (`current->files->fdt->fd[fd]->private_data->sk`) and records the accepting process.
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
    let Some(head) = Head::<false>::read(bank, sk) else {
        return;
    };
    let off = &config.offsets;
    let family: u16 = head.field(off.skc_family);
    if (family != AF_INET && family != AF_INET6)
        || read::<u16>(bank, sk, off.sk_protocol) != IPPROTO_TCP
    {
        return; // Unix and UDP sockets are accepted far more often than TCP ones
    }
    let (lport, rport) = head.ports();
    if !config.filter.keeps(family, lport, rport) {
        return;
    }
    let net: *const u8 = head.field::<usize>(off.skc_net) as *const u8;
    let netns: u32 = if net.is_null() {
        0
    } else {
        read(bank, net, off.net_ns_inum)
    };
    let leader = read::<usize>(bank, task, tasks.task_group_leader) as *const u8;
    let comm: [u8; 16] = read(bank, leader, tasks.task_comm);
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
        cookie: read(bank, sk, off.skc_cookie),
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
        ExitCopy::First => BANK_OWNERS,
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

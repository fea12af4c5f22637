//! Types shared by enetstat's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]` plain data with explicit padding: the kernel writes these
//! bytes into the ring buffer (or reads them from load-time globals) and userspace reads the
//! same bytes back, so both halves must agree on every offset. The size assertions below make a
//! layout change a compile error on both sides instead of garbage at run time.
#![no_std]

/// Kernel TCP state numbers (`include/net/tcp_states.h`), as the tracepoint reports them.
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
}

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`: the tracepoint also fires for other protocols (SCTP, MPTCP subflows use TCP).
pub const IPPROTO_TCP: u16 = 6;

/// What a ring-buffer record holds. Every record starts with its kind so new kinds can be added
/// without breaking readers, which skip (and count) kinds they do not know.
pub mod record_kind {
    /// A [`StateChange`](super::StateChange).
    pub const STATE_CHANGE: u16 = 1;
    /// A [`Reset`](super::Reset).
    pub const RESET: u16 = 2;
    /// An [`Accept`](super::Accept).
    pub const ACCEPT: u16 = 3;
    /// An [`Exit`](super::Exit).
    pub const EXIT: u16 = 4;
}

/// Which way a TCP reset went, in a [`Reset`] record.
pub mod reset_direction {
    /// We sent it (`tcp:tcp_send_reset`): an abort, or a reply to an unexpected segment.
    pub const SENT: u8 = 1;
    /// The peer sent it (`tcp:tcp_receive_reset`).
    pub const RECEIVED: u8 = 2;
}

/// Bits of a record's `flags`: what the kernel could not give for it.
pub mod record_flags {
    /// The record was made without the socket's kernel structures (the classic tracepoint on
    /// a kernel without BTF): the network namespace, cgroup and the counters at CLOSE are
    /// unknown, not zero.
    pub const NO_SOCKET_FIELDS: u16 = 1;
}

/// A TCP reset sent or received on a socket. It explains how a connection ended: a reset
/// sent on abort (`SO_LINGER` 0) is traced just *after* the socket's transition into CLOSE.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    /// [`record_kind::RESET`].
    pub kind: u16,
    /// [`reset_direction`].
    pub direction: u8,
    /// The socket's state when the reset went out or came in (kernel number).
    pub state: u8,
    pub _pad: u32,
    /// Kernel monotonic time, `bpf_ktime_get_ns()`.
    pub ts_ns: u64,
    /// Socket cookie; 0 when the kernel cannot give it (see [`StateChange::cookie`]).
    pub cookie: u64,
    /// Kernel address of the socket: its identity where the cookie is unknown.
    pub skaddr: u64,
}

const _: () = assert!(core::mem::size_of::<Reset>() == 32);

/// A process took a TCP socket out of a listener's queue: `accept()`/`accept4()` returned it.
///
/// An accepted socket is born in softirq, where the task on the CPU is anybody; its
/// listener may be shared by many processes (pre-fork servers). This record, written at the
/// system call's exit in the accepting process, is the one fact that says which process
/// serves the connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    /// [`record_kind::ACCEPT`].
    pub kind: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Local and remote ports, host byte order.
    pub lport: u16,
    pub rport: u16,
    /// Thread-group id (the userspace "pid") and thread id of the accepting task.
    pub pid: u32,
    pub tid: u32,
    /// Kernel monotonic time, `bpf_ktime_get_ns()`.
    pub ts_ns: u64,
    /// The socket's cookie field as it stands (set once a state program or a dump asked for
    /// it); see [`StateChange::cookie`].
    pub cookie: u64,
    /// Kernel address of the socket: its identity where the cookie is unknown.
    pub skaddr: u64,
    /// Inode number of the socket's network namespace.
    pub netns: u32,
    pub _pad: u32,
    /// `comm` of the process (its thread group leader), NUL padded.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<Accept>() == 64);

/// A process ended: the last of its threads exited (`sched:sched_process_exit`). Its sockets
/// may live on (orphaned, or held by a child); userspace stops naming it as a current owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// [`record_kind::EXIT`].
    pub kind: u16,
    pub _pad: u16,
    /// Thread-group id of the process that ended.
    pub pid: u32,
    /// Kernel monotonic time, `bpf_ktime_get_ns()`.
    pub ts_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Exit>() == 16);

/// One TCP state transition, as the `inet_sock_set_state` program writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// [`record_kind::STATE_CHANGE`].
    pub kind: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Kernel state numbers, see [`tcp_state`].
    pub old_state: u8,
    pub new_state: u8,
    /// Local port, host byte order (0 until the kernel assigns one, see `skc_num`).
    pub lport: u16,
    /// Remote port, host byte order.
    pub rport: u16,
    /// [`record_flags`].
    pub flags: u16,
    /// Thread-group id (the userspace "pid") of the task on the CPU when the tracepoint fired.
    /// Only some transitions run in the socket owner's context; userspace decides which.
    pub pid: u32,
    /// Kernel monotonic time of the transition, `bpf_ktime_get_ns()`.
    pub ts_ns: u64,
    /// `bpf_get_socket_cookie(sk)`: the socket's never-reused id, the same as sock_diag's.
    /// Kernels before 5.12 lack that helper for tracing programs; there this is the cookie
    /// field as it stands (set once anything, such as a sock_diag dump, asked for it), and 0
    /// when nothing has yet. The classic tracepoint has no cookie at all: 0.
    pub cookie: u64,
    /// Kernel address of the socket: the socket's identity while it lives where the cookie
    /// is unknown (userspace never shows it as a cookie).
    pub skaddr: u64,
    /// Thread id of the task on the CPU.
    pub tid: u32,
    /// Inode number of the socket's network namespace.
    pub netns: u32,
    /// `sk->sk_err` at a transition into CLOSE (0 otherwise): why the connection ended.
    pub sk_err: i32,
    /// Retransmitted segments over the connection's life (`tcp_sock.total_retrans`), at CLOSE.
    pub retransmits: u32,
    /// Smoothed RTT in microseconds (`tcp_sock.srtt_us >> 3`), at CLOSE.
    pub srtt_us: u32,
    /// 1 when the peer's FIN arrived (`SOCK_DONE`), at CLOSE. The kernel counts that FIN as a
    /// byte in `bytes_received`.
    pub fin_received: u32,
    /// Data bytes sent, not counting retransmissions (`tcp_sock.bytes_sent - bytes_retrans`),
    /// at CLOSE.
    pub bytes_sent: u64,
    /// Bytes received (`tcp_sock.bytes_received`, which counts a received FIN as one), at CLOSE.
    pub bytes_received: u64,
    /// Id of the socket's cgroup (v2): the inode number of its directory under
    /// /sys/fs/cgroup, which names the container. 0 when the kernel does not track it.
    pub cgroup: u64,
    /// Local address: the IPv4 address in the first 4 bytes, or the IPv6 address.
    pub saddr: [u8; 16],
    /// Remote address, laid out as `saddr`.
    pub daddr: [u8; 16],
    /// `comm` of the task on the CPU, NUL padded.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<StateChange>() == 136);
// Where `record_ts` finds each kind's time.
const _: () = assert!(core::mem::offset_of!(StateChange, ts_ns) == 16);
const _: () = assert!(core::mem::offset_of!(Accept, ts_ns) == 16);
const _: () = assert!(core::mem::offset_of!(Reset, ts_ns) == 8);
const _: () = assert!(core::mem::offset_of!(Exit, ts_ns) == 8);

/// Byte offsets of the kernel struct fields the programs read, resolved from the running
/// kernel's BTF by userspace at load time. Rust eBPF has no CO-RE, so this is how one object
/// file runs on every kernel layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `struct sock`: `sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `struct sock`: `__sk_common.skc_family` (u16).
    pub skc_family: u32,
    /// `struct sock`: `__sk_common.skc_num` (u16, host order).
    pub skc_num: u32,
    /// `struct sock`: `__sk_common.skc_dport` (u16, network order).
    pub skc_dport: u32,
    /// `struct sock`: `__sk_common.skc_rcv_saddr` (u32).
    pub skc_rcv_saddr: u32,
    /// `struct sock`: `__sk_common.skc_daddr` (u32).
    pub skc_daddr: u32,
    /// `struct sock`: `__sk_common.skc_v6_rcv_saddr` (16 bytes).
    pub skc_v6_rcv_saddr: u32,
    /// `struct sock`: `__sk_common.skc_v6_daddr` (16 bytes).
    pub skc_v6_daddr: u32,
    /// `struct sock`: `__sk_common.skc_net` (a `struct net *`).
    pub skc_net: u32,
    /// `struct net`: `ns.inum` (u32).
    pub net_ns_inum: u32,
    /// `struct sock`: `sk_err` (int).
    pub sk_err: u32,
    /// `struct tcp_sock`: `bytes_sent` (u64).
    pub tcp_bytes_sent: u32,
    /// `struct tcp_sock`: `bytes_retrans` (u64).
    pub tcp_bytes_retrans: u32,
    /// `struct tcp_sock`: `bytes_received` (u64).
    pub tcp_bytes_received: u32,
    /// `struct tcp_sock`: `total_retrans` (u32).
    pub tcp_total_retrans: u32,
    /// `struct tcp_sock`: `srtt_us` (u32, RTT << 3).
    pub tcp_srtt_us: u32,
    /// `struct sock`: `__sk_common.skc_state` (u8).
    pub skc_state: u32,
    /// `struct inet_sock`: `inet_sport` (u16, network order). Still set at the transition
    /// into CLOSE, after the kernel has already released the port and zeroed `skc_num`.
    pub inet_sport: u32,
    /// `struct sock`: `sk_cgrp_data.cgroup` (a `struct cgroup *`); 0 when the kernel lacks it.
    pub sk_cgroup: u32,
    /// `struct cgroup`: `kn` (a `struct kernfs_node *`).
    pub cgroup_kn: u32,
    /// `struct kernfs_node`: `id` (u64).
    pub kernfs_node_id: u32,
    /// `struct sock`: `sk_flags` (unsigned long); bit `SOCK_DONE` says a FIN arrived.
    pub sk_flags: u32,
    /// `struct sock`: `__sk_common.skc_cookie` (atomic64), read where the cookie helper is
    /// missing.
    pub skc_cookie: u32,
}

/// Byte offsets into the task and file structures, from BTF: how the accept program goes from
/// the descriptor `accept()` returned to its socket
/// (`current->files->fdt->fd[fd]->private_data->sk`), and how the exit program tells the end
/// of a process from the end of one of its threads. All zero when BTF lacks any of them:
/// then nothing that needs them is attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `struct task_struct`: `files` (a `struct files_struct *`).
    pub task_files: u32,
    /// `struct files_struct`: `fdt` (a `struct fdtable *`).
    pub files_fdt: u32,
    /// `struct fdtable`: `fd` (a `struct file **`).
    pub fdtable_fd: u32,
    /// `struct file`: `private_data` (for a socket's file, its `struct socket *`).
    pub file_private_data: u32,
    /// `struct socket`: `sk` (a `struct sock *`).
    pub socket_sk: u32,
    /// `struct socket`: `file`, pointing back to the file: proof the file is a socket.
    pub socket_file: u32,
    /// `struct task_struct`: `group_leader` (a `struct task_struct *`).
    pub task_group_leader: u32,
    /// `struct task_struct`: `comm` (16 bytes).
    pub task_comm: u32,
    /// `struct task_struct`: `signal` (a `struct signal_struct *`).
    pub task_signal: u32,
    /// `struct signal_struct`: `live` (atomic_t): threads not yet exited.
    pub signal_live: u32,
    /// The `ret` field of the `syscalls:sys_exit_accept*` tracepoints' record, from tracefs.
    pub sys_exit_ret: u32,
    /// `struct task_struct`: `stack` (the lowest address of the task's kernel stack), for the
    /// recursion rescue's per-CPU notes; 0 where they are not used.
    pub task_stack: u32,
}

/// Byte offsets of the fields of the classic `sock/inet_sock_set_state` tracepoint's record,
/// from its tracefs `format` file: the fallback for kernels without BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
}

/// The most ports each kernel-side port filter holds; longer lists are filtered in userspace only.
pub const MAX_FILTER_PORTS: usize = 8;

/// The cheap part of the user's filter, applied in the kernel before a record is reserved.
/// Userspace applies the whole filter again, so this only has to never drop a wanted event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    /// 0: any family; otherwise only sockets of this family ([`AF_INET`] or [`AF_INET6`]).
    pub family: u16,
    /// How many entries of `lports` / `rports` / `ports` are in use; 0 means no filter.
    pub n_lports: u16,
    pub n_rports: u16,
    pub n_ports: u16,
    /// Keep the event when the local port is one of these.
    pub lports: [u16; MAX_FILTER_PORTS],
    /// Keep the event when the remote port is one of these.
    pub rports: [u16; MAX_FILTER_PORTS],
    /// Keep the event when either port is one of these.
    pub ports: [u16; MAX_FILTER_PORTS],
}

impl KernelFilter {
    /// Whether the kernel keeps a transition of a socket of `family` with these ports (host
    /// order). The kernel programs call this, and the filter's property test checks it against
    /// the whole filter, so the two cannot drift apart.
    ///
    /// An AF_INET6 socket may carry v4-mapped addresses, which userspace shows as IPv4, so only
    /// "IPv6 only" can drop by family.
    #[inline(always)]
    pub fn keeps(&self, family: u16, lport: u16, rport: u16) -> bool {
        if self.family == AF_INET6 && family == AF_INET {
            return false;
        }
        if self.n_lports != 0 && !port_in(lport, &self.lports, self.n_lports) {
            return false;
        }
        if self.n_rports != 0 && !port_in(rport, &self.rports, self.n_rports) {
            return false;
        }
        if self.n_ports != 0
            && !port_in(lport, &self.ports, self.n_ports)
            && !port_in(rport, &self.ports, self.n_ports)
        {
            return false;
        }
        true
    }
}

/// Whether `port` is among the first `n` of `ports`. A fixed-bound loop, which the verifier
/// accepts on every kernel (no bounded-loop support needed once unrolled).
#[inline(always)]
fn port_in(port: u16, ports: &[u16; MAX_FILTER_PORTS], n: u16) -> bool {
    let mut i = 0;
    while i < MAX_FILTER_PORTS {
        if (i as u16) < n && ports[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// Bytes the programs read at once from the start of a socket (`struct sock_common`): the
/// fields [`Offsets::head_fields`] names must end within them.
pub const SOCKET_HEAD: u32 = 128;

impl Offsets {
    /// The fields the programs take from a socket's first [`SOCKET_HEAD`] bytes, read in one
    /// go: name, offset and size.
    pub fn head_fields(&self) -> [(&'static str, u32, u32); 9] {
        [
            ("skc_family", self.skc_family, 2),
            ("skc_num", self.skc_num, 2),
            ("skc_dport", self.skc_dport, 2),
            ("skc_rcv_saddr", self.skc_rcv_saddr, 4),
            ("skc_daddr", self.skc_daddr, 4),
            ("skc_v6_rcv_saddr", self.skc_v6_rcv_saddr, 16),
            ("skc_v6_daddr", self.skc_v6_daddr, 16),
            ("skc_net", self.skc_net, 8),
            ("skc_state", self.skc_state, 1),
        ]
    }
}

/// Everything the kernel programs take at load time (the `CONFIG` global).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub offsets: Offsets,
    /// For the accept and exit programs.
    pub tasks: TaskOffsets,
    /// Only for the classic tracepoint (no BTF).
    pub tracepoint: TracepointOffsets,
    pub filter: KernelFilter,
    /// Wake the reader at most this often while events keep coming (0: on every event). The
    /// reader polls on its own timer too, so a quiet period never strands an event.
    pub wakeup_interval_ns: u64,
    /// Also wake the reader when this many bytes are waiting in the ring, whatever the time.
    pub wakeup_bytes: u64,
    /// Non-zero: the recursion rescue keeps its notes per CPU and per context level (task,
    /// interrupt), which holds only where the kernel never preempts a tracepoint's programs
    /// (before Linux 7; used up to 6.18) and a task's kernel stack is [`TASK_STACK_SIZE`];
    /// otherwise in one map.
    pub notes_per_cpu: u64,
    /// How many ring buffers the programs write to, one per CPU (`cpu % rings`), at most
    /// [`RINGS`].
    pub rings: u64,
}

/// The most ring buffers (`EVENTS_0` to `EVENTS_7`): beyond as many CPUs, CPUs share them.
pub const RINGS: u32 = 8;

/// The kernel monotonic time a record carries (`bpf_ktime_get_ns` just before its space
/// was reserved), by its kind; `None` for a record too short or of a kind not known here.
/// Userspace merges the per-CPU rings by it.
pub fn record_ts(record: &[u8]) -> Option<u64> {
    let kind = u16::from_ne_bytes([*record.first()?, *record.get(1)?]);
    let at = match kind {
        record_kind::STATE_CHANGE | record_kind::ACCEPT => 16,
        record_kind::RESET | record_kind::EXIT => 8,
        _ => return None,
    };
    let bytes = record.get(at..at + 8)?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(bytes);
    Some(u64::from_ne_bytes(ts))
}

/// The size of a task's kernel stack (`THREAD_SIZE`) on x86-64 and arm64 without KASAN.
pub const TASK_STACK_SIZE: u64 = 16 * 1024;

impl Config {
    /// All zeroes: the compiled-in value of the kernel's `CONFIG` global, which userspace
    /// always overrides at load time.
    pub const ZERO: Config = Config {
        offsets: Offsets {
            sk_protocol: 0,
            skc_family: 0,
            skc_num: 0,
            skc_dport: 0,
            skc_rcv_saddr: 0,
            skc_daddr: 0,
            skc_v6_rcv_saddr: 0,
            skc_v6_daddr: 0,
            skc_net: 0,
            net_ns_inum: 0,
            sk_err: 0,
            tcp_bytes_sent: 0,
            tcp_bytes_retrans: 0,
            tcp_bytes_received: 0,
            tcp_total_retrans: 0,
            tcp_srtt_us: 0,
            skc_state: 0,
            inet_sport: 0,
            sk_cgroup: 0,
            cgroup_kn: 0,
            kernfs_node_id: 0,
            sk_flags: 0,
            skc_cookie: 0,
        },
        tasks: TaskOffsets {
            task_files: 0,
            files_fdt: 0,
            fdtable_fd: 0,
            file_private_data: 0,
            socket_sk: 0,
            socket_file: 0,
            task_group_leader: 0,
            task_comm: 0,
            task_signal: 0,
            signal_live: 0,
            sys_exit_ret: 0,
            task_stack: 0,
        },
        tracepoint: TracepointOffsets {
            skaddr: 0,
            oldstate: 0,
            newstate: 0,
            sport: 0,
            dport: 0,
            family: 0,
            protocol: 0,
            saddr: 0,
            daddr: 0,
            saddr_v6: 0,
            daddr_v6: 0,
        },
        filter: KernelFilter {
            family: 0,
            n_lports: 0,
            n_rports: 0,
            n_ports: 0,
            lports: [0; MAX_FILTER_PORTS],
            rports: [0; MAX_FILTER_PORTS],
            ports: [0; MAX_FILTER_PORTS],
        },
        wakeup_interval_ns: 0,
        wakeup_bytes: 0,
        notes_per_cpu: 0,
        rings: 0,
    };
}

/// Indexes into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Transitions of TCP sockets the program saw.
    pub const SEEN: u32 = 0;
    /// Transitions left out by the kernel-side filter.
    pub const FILTERED: u32 = 1;
    /// Records lost because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 2;
    /// Kernel memory reads that failed (the record was still sent, with zeroes there).
    pub const READ_ERRORS: u32 = 3;
    /// Calls the nested copy recorded because the primary program, guarded against
    /// recursion, skipped them. The primary's `recursion_misses` minus this is what neither
    /// program recorded: lost.
    pub const NESTED_CALLS: u32 = 4;
    /// Process ends the exit program's rescue copy recorded because the first copy was
    /// skipped. The first copy's `recursion_misses` minus this is what neither recorded.
    pub const EXIT_RESCUES: u32 = 5;
    /// Number of counters.
    pub const COUNT: u32 = 6;
    /// The array holds one bank of [`COUNT`] counters per program that can interrupt another
    /// on the same CPU (primary, nested copy and resets, each again for a call that
    /// interrupts its own program on kernels before 6.0; the accept programs; the exit
    /// program and its rescue copy), so plain per-CPU increments never race. Userspace sums
    /// the banks.
    pub const BANKS: u32 = 9;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `repr(C)` plain integers and arrays with explicit padding.
    unsafe impl aya::Pod for super::StateChange {}
    unsafe impl aya::Pod for super::Reset {}
    unsafe impl aya::Pod for super::Accept {}
    unsafe impl aya::Pod for super::Exit {}
    unsafe impl aya::Pod for super::TaskOffsets {}
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::TracepointOffsets {}
    unsafe impl aya::Pod for super::KernelFilter {}
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a record as the kernel writes it.
    fn bytes<T>(record: &T) -> &[u8] {
        // SAFETY: plain `repr(C)` data, read as bytes for its whole size.
        unsafe {
            core::slice::from_raw_parts(core::ptr::from_ref(record).cast::<u8>(), size_of::<T>())
        }
    }

    #[test]
    fn record_ts_reads_each_kinds_time() {
        let exit = Exit {
            kind: record_kind::EXIT,
            _pad: 0,
            pid: 7,
            ts_ns: 42,
        };
        assert_eq!(record_ts(bytes(&exit)), Some(42));
        let reset = Reset {
            kind: record_kind::RESET,
            direction: reset_direction::SENT,
            state: 1,
            _pad: 0,
            ts_ns: 43,
            cookie: 9,
            skaddr: 10,
        };
        assert_eq!(record_ts(bytes(&reset)), Some(43));
        let mut accept = [0u8; size_of::<Accept>()];
        accept[..2].copy_from_slice(&record_kind::ACCEPT.to_ne_bytes());
        accept[16..24].copy_from_slice(&44u64.to_ne_bytes());
        assert_eq!(record_ts(&accept), Some(44));
        let mut change = [0u8; size_of::<StateChange>()];
        change[..2].copy_from_slice(&record_kind::STATE_CHANGE.to_ne_bytes());
        change[16..24].copy_from_slice(&45u64.to_ne_bytes());
        assert_eq!(record_ts(&change), Some(45));
        // Too short, or a kind it does not know: no time.
        assert_eq!(record_ts(&change[..20]), None);
        assert_eq!(
            record_ts(&[9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(record_ts(&[]), None);
    }
}

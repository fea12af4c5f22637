//! Kernel struct field offsets from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so the kernel program reads every field at an offset it
//! is given at load time. This module computes those offsets from `/sys/kernel/btf/vmlinux`,
//! which is what libbpf's CO-RE would have done for a C program.

use std::path::{Path, PathBuf};

use btfparse::{Offset, Readable, TypeInformation, TypeVariant};
use netstat_common::{Offsets, TaskOffsets};

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "this kernel has no BTF type information ({path} is missing). enetstat needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y (standard on Debian 11+, Ubuntu 20.10+, RHEL 8.2+, \
         kernel >= 5.8); install such a kernel or enable that option"
    )]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot parse the kernel's BTF in {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "the kernel's BTF has no `{ty}.{field}` (or it is a bitfield); this kernel's socket \
         layout is not one enetstat supports"
    )]
    Field {
        ty: &'static str,
        field: &'static str,
    },
    #[error(
        "the kernel's `struct sock_common` has `{field}` beyond its first {head} bytes, which \
         enetstat reads in one go; this kernel's socket layout is not one enetstat supports",
        head = netstat_common::SOCKET_HEAD
    )]
    OutsideHead { field: &'static str },
}

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buffer.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(
                btfparse::ErrorKind::EOF,
                "read past the end of the BTF data",
            )),
        }
    }
}

/// What the kernel programs need to know of the running kernel's layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The socket's fields.
    pub sockets: Offsets,
    /// The task and file structures' fields for the owner programs (zero when any is missing).
    pub tasks: TaskOffsets,
    /// How many parameters `inet_csk_accept` takes: its exit program finds the returned
    /// socket right after them (Linux 6.10 went from four to two). `None` if the BTF has no
    /// such function.
    pub accept_params: Option<usize>,
}

/// Resolves what the kernel programs need from the BTF file at `path`.
pub fn layout_from(path: &Path) -> Result<Layout, BtfError> {
    let data = std::fs::read(path).map_err(|cause| {
        if cause.kind() == std::io::ErrorKind::NotFound {
            BtfError::Missing {
                path: path.to_owned(),
            }
        } else {
            BtfError::Read {
                path: path.to_owned(),
                cause,
            }
        }
    })?;
    let types = TypeInformation::new(&Bytes(data)).map_err(|e| BtfError::Parse {
        path: path.to_owned(),
        message: format!("{e:?}"),
    })?;
    let at = |ty: &'static str, field: &'static str| -> Result<u32, BtfError> {
        let missing = || BtfError::Field { ty, field };
        let id = types.id_of(ty).ok_or_else(missing)?;
        match types.offset_of(id, field) {
            Ok((_, Offset::ByteOffset(off))) => Ok(off),
            _ => Err(missing()),
        }
    };
    let tasks = || -> Result<TaskOffsets, BtfError> {
        Ok(TaskOffsets {
            task_files: at("task_struct", "files")?,
            files_fdt: at("files_struct", "fdt")?,
            fdtable_fd: at("fdtable", "fd")?,
            file_private_data: at("file", "private_data")?,
            socket_sk: at("socket", "sk")?,
            socket_file: at("socket", "file")?,
            task_group_leader: at("task_struct", "group_leader")?,
            task_comm: at("task_struct", "comm")?,
            task_signal: at("task_struct", "signal")?,
            signal_live: at("signal_struct", "live")?,
            ..TaskOffsets::default()
        })
    };
    let tasks = tasks().unwrap_or_else(|e| {
        tracing::warn!("{e}; owners will not follow accept() nor process exits");
        TaskOffsets::default()
    });
    // Apart from the rest: the recursion rescue's per-CPU notes need only this one.
    let tasks = TaskOffsets {
        task_stack: at("task_struct", "stack").unwrap_or(0),
        ..tasks
    };
    let sockets = Offsets {
        sk_protocol: at("sock", "sk_protocol")?,
        skc_family: at("sock", "__sk_common.skc_family")?,
        skc_num: at("sock", "__sk_common.skc_num")?,
        skc_dport: at("sock", "__sk_common.skc_dport")?,
        skc_rcv_saddr: at("sock", "__sk_common.skc_rcv_saddr")?,
        skc_daddr: at("sock", "__sk_common.skc_daddr")?,
        skc_v6_rcv_saddr: at("sock", "__sk_common.skc_v6_rcv_saddr")?,
        skc_v6_daddr: at("sock", "__sk_common.skc_v6_daddr")?,
        skc_net: at("sock", "__sk_common.skc_net")?,
        net_ns_inum: at("net", "ns.inum")?,
        sk_err: at("sock", "sk_err")?,
        tcp_bytes_sent: at("tcp_sock", "bytes_sent")?,
        tcp_bytes_received: at("tcp_sock", "bytes_received")?,
        tcp_total_retrans: at("tcp_sock", "total_retrans")?,
        tcp_srtt_us: at("tcp_sock", "srtt_us")?,
        skc_state: at("sock", "__sk_common.skc_state")?,
        tcp_bytes_retrans: at("tcp_sock", "bytes_retrans")?,
        inet_sport: at("inet_sock", "inet_sport")?,
        // Socket cgroups need CONFIG_SOCK_CGROUP_DATA; without it events carry cgroup 0.
        sk_cgroup: at("sock", "sk_cgrp_data.cgroup").unwrap_or(0),
        cgroup_kn: at("cgroup", "kn").unwrap_or(0),
        kernfs_node_id: at("kernfs_node", "id").unwrap_or(0),
        // Moved into sock_common (as skc_flags) in Linux 6.x; `struct sock` had it before.
        sk_flags: at("sock", "__sk_common.skc_flags").or_else(|_| at("sock", "sk_flags"))?,
        skc_cookie: at("sock", "__sk_common.skc_cookie")?,
    };
    if let Some((field, _, _)) = sockets
        .head_fields()
        .into_iter()
        .find(|&(_, offset, size)| offset + size > netstat_common::SOCKET_HEAD)
    {
        return Err(BtfError::OutsideHead { field });
    }
    Ok(Layout {
        sockets,
        tasks,
        accept_params: params(&types, "inet_csk_accept"),
    })
}

/// How many parameters the kernel function `name` takes, if the BTF describes it.
fn params(types: &TypeInformation, name: &str) -> Option<usize> {
    let TypeVariant::Func(func) = types.from_id(types.id_of(name)?)? else {
        return None;
    };
    match types.from_id(*func.prototype_tid())? {
        TypeVariant::FuncProto(proto) => Some(proto.parameter_list().len()),
        _ => None,
    }
}

/// The layout of the running kernel.
pub fn layout() -> Result<Layout, BtfError> {
    layout_from(Path::new(VMLINUX_BTF))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the machine's real BTF (no root needed; the file is world-readable).
    #[test]
    fn resolves_socket_offsets_from_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            crate::test_skip::skip(
                "resolves_socket_offsets_from_the_running_kernel",
                &format!("{VMLINUX_BTF} is missing on this machine"),
            );
            return;
        }
        let Layout {
            sockets: o,
            tasks: t,
            accept_params,
        } = layout().expect("offsets from this kernel's BTF");
        // Layout facts that hold on every kernel enetstat supports: sock_common comes first
        // in struct sock, with the IPv4 addresses at its very start.
        assert_eq!(o.skc_daddr, 0);
        assert_eq!(o.skc_rcv_saddr, 4);
        assert_eq!(o.skc_num, o.skc_dport + 2);
        assert!(o.skc_v6_daddr > o.skc_family);
        assert_eq!(o.skc_v6_rcv_saddr, o.skc_v6_daddr + 16);
        assert!(o.tcp_bytes_received > o.sk_err);
        assert_ne!(o.sk_cgroup, 0, "this kernel tracks socket cgroups");
        // The owner programs' path from a descriptor to its socket, all found.
        assert_ne!(t.task_files, 0);
        assert_eq!(
            t.fdtable_fd, 8,
            "struct fdtable: unsigned int max_fds, then fd"
        );
        assert_ne!(t.socket_sk, t.socket_file);
        assert_eq!(t.signal_live, 4, "struct signal_struct: sigcnt, then live");
        // `inet_csk_accept(sk, flags, err, kern)` before 6.10, `(sk, arg)` since.
        assert!(
            matches!(accept_params, Some(2 | 4)),
            "inet_csk_accept takes {accept_params:?} parameters"
        );
    }

    #[test]
    fn a_missing_file_says_how_to_get_btf() {
        let err = layout_from(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("enetstat-btf-{}", std::process::id()));
        std::fs::write(&dir, b"not btf at all").unwrap();
        let err = layout_from(&dir).unwrap_err();
        std::fs::remove_file(&dir).ok();
        assert!(matches!(err, BtfError::Parse { .. }), "{err}");
    }
}

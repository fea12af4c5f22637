//! `recursion_misses`: how many times the kernel skipped one of our programs because it was
//! already running on that CPU. Each miss is a lost event, so it is reported as such. aya's
//! `ProgramInfo` does not expose the field, so this asks the kernel directly.

use std::{
    io,
    mem::{offset_of, size_of},
    os::fd::{AsRawFd, BorrowedFd},
};

use aya_obj::generated::{bpf_cmd, bpf_prog_info};

/// The `info` member of `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The program's `recursion_misses` counter (0 on kernels too old to keep one).
pub fn recursion_misses(prog: BorrowedFd<'_>) -> io::Result<u64> {
    let mut info = [0u8; size_of::<bpf_prog_info>()];
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` points at a live buffer of `info_len` bytes; the kernel writes at most that.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_int,
            &raw mut attr,
            size_of::<InfoAttr>() as u32,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    let at = offset_of!(bpf_prog_info, recursion_misses);
    if (attr.info_len as usize) < at + 8 {
        return Ok(0);
    }
    Ok(u64::from_ne_bytes(
        info[at..at + 8].try_into().expect("8 bytes"),
    ))
}

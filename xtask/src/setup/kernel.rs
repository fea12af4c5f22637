//! Setup check: whether the running kernel has what enetstat uses. Nothing here can be
//! installed, and the build does not need it, so it only warns.

use std::{fs, path::Path};

/// Kernel type information; enetstat reads `struct sock` offsets from it and attaches a BTF
/// tracepoint (DESIGN.md, decisions 1 and 2).
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

pub fn check() {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    if Path::new(VMLINUX_BTF).exists() {
        say!("kernel {release} BTF ({VMLINUX_BTF}) ... ok");
    } else {
        say!(
            "warning: kernel {release} has no {VMLINUX_BTF} (built without \
             CONFIG_DEBUG_INFO_BTF): enetstat cannot use its BTF tracepoint here, and the \
             end-to-end tests will fail; the build itself is unaffected"
        );
    }
}

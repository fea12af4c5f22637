//! This process's network namespace: the one whose sockets the live table holds and whose
//! records the owner seed names.

use std::os::unix::fs::MetadataExt as _;

/// The inode of this process's network namespace (the number records carry as `netns`).
pub fn own_netns() -> Option<u32> {
    let ino = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    u32::try_from(ino).ok()
}

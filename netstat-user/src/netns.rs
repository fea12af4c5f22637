//! This process's network namespace: the one whose sockets the live table holds and whose
//! records the owner seed names.

use std::os::unix::fs::MetadataExt as _;

/// The inode of this process's network namespace (the number records carry as `netns`).
///
/// One `stat` of `/proc/self/ns/net` rather than procfs's `namespaces()`, which lists the
/// whole `ns` directory: after `daemon --user` the process is not dumpable, its `ns`
/// directory belongs to root and lets others through (`x`) but not list it (`r`), so only the
/// direct path still works.
pub fn own_netns() -> Option<u32> {
    let ino = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    u32::try_from(ino).ok()
}

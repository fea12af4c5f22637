//! The network namespace the tests run in.

use std::os::unix::fs::MetadataExt;

/// The inode of this process's network namespace: the number enetstat prints as `netns`.
pub fn current_netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net")
        .expect("cannot stat /proc/self/ns/net")
        .ino()
}

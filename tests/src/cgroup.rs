//! cgroup v2 directories the tests make (a fake container's cgroup, for one), removed on drop.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Where cgroup v2 is mounted: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid
/// systems. `None` when it is not mounted.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// A cgroup the test made, with any parents it had to make. Dropping it removes them all,
/// innermost first; a process still inside keeps its directory (the kernel refuses), so drop
/// the processes first.
pub struct Cgroup {
    /// Relative to the cgroup2 root, starting with `/`, as enetstat prints it.
    rel: String,
    /// The directories made, outermost first.
    made: Vec<PathBuf>,
}

impl Cgroup {
    /// Makes `rel` (`a/b/c`) under the cgroup2 root. `None` when cgroup v2 is not mounted.
    ///
    /// # Panics
    ///
    /// When the directory cannot be made.
    pub fn create(rel: &str) -> Option<Cgroup> {
        let root = cgroup2_root()?;
        let mut made = Vec::new();
        let mut dir = root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("cannot make cgroup {}: {e}", dir.display()));
                made.push(dir.clone());
            }
        }
        Some(Cgroup {
            rel: format!("/{}", rel.trim_matches('/')),
            made,
        })
    }

    /// The path as enetstat prints it: `/a/b/c`.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The innermost directory.
    pub fn dir(&self) -> &Path {
        self.made
            .last()
            .expect("a cgroup test makes at least one directory")
    }

    /// The cgroup id: what enetstat prints as `cgroup`.
    pub fn id(&self) -> u64 {
        std::fs::metadata(self.dir()).unwrap().ino()
    }

    /// The file a process id is written to, to move that process in.
    pub fn procs(&self) -> PathBuf {
        self.dir().join("cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

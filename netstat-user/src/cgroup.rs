//! cgroup v2: the id the kernel reports for a socket's cgroup (the inode number of its
//! directory under `/sys/fs/cgroup`), the path it names, and the container a path belongs to.
//!
//! Paths are relative to the cgroup root and start with `/`, as `/proc/PID/cgroup` shows them:
//! `/system.slice/nginx.service`.

pub use netstat_core::cgroup::{Cgroup, Container, Runtime, container_of};

use rustc_hash::FxHashMap;
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Where cgroup v2 is usually mounted (the unified hierarchy).
pub const ROOT: &str = "/sys/fs/cgroup";

/// Where cgroup v2 is mounted here: the first `cgroup2` mount in `/proc/mounts`
/// (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid systems), else [`ROOT`].
pub fn root() -> PathBuf {
    procfs::mounts()
        .ok()
        .and_then(|mounts| {
            mounts
                .into_iter()
                .find(|m| m.fs_vfstype == "cgroup2")
                .map(|m| PathBuf::from(m.fs_file))
        })
        .unwrap_or_else(|| PathBuf::from(ROOT))
}

/// The id of a cgroup given by path: relative to the cgroup v2 root
/// (`/system.slice/x.service`) or absolute under it (`/sys/fs/cgroup/system.slice/x.service`).
/// `None` when it does not exist.
pub fn id_of(path: &str) -> Option<u64> {
    let p = Path::new(path);
    let root = root();
    let full: PathBuf = if p.starts_with(&root) {
        p.to_owned()
    } else {
        root.join(path.trim_start_matches('/'))
    };
    let meta = std::fs::metadata(full).ok()?;
    meta.is_dir().then(|| meta.ino())
}

/// The id of this process's own cgroup (from `/proc/self/cgroup`), when cgroup v2 is
/// mounted.
pub fn own_id() -> Option<u64> {
    let cgroups = procfs::process::Process::myself().ok()?.cgroups().ok()?;
    let v2 = cgroups.into_iter().find(|c| c.hierarchy == 0)?;
    id_of(&v2.pathname)
}

/// cgroup ids to what they name, from a scan of the cgroup tree; rescanned (at most once per
/// `min_rescan`) when asked for an id it does not know. A lookup is one hash probe, so
/// renderers can ask once per event.
#[derive(Debug)]
pub struct Paths {
    root: PathBuf,
    /// Keyed by cgroup ids: inode numbers the kernel hands out, so a fast hash is safe.
    paths: FxHashMap<u64, Arc<Cgroup>>,
    scanned: Option<Instant>,
    min_rescan: Duration,
}

impl Paths {
    pub fn new() -> Self {
        Self::at(&root())
    }

    /// A cache that never looks anything up (for callers that only pick rows).
    pub fn empty() -> Self {
        Self {
            scanned: Some(Instant::now()),
            min_rescan: Duration::MAX,
            ..Self::at(Path::new(""))
        }
    }

    /// A cache over another tree (for tests).
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            paths: FxHashMap::default(),
            scanned: None,
            min_rescan: Duration::from_secs(1),
        }
    }

    /// What cgroup `id` names, if it exists (or existed at the last scan). 0 is "not known".
    pub fn get(&mut self, id: u64) -> Option<&Arc<Cgroup>> {
        if id == 0 {
            return None;
        }
        if self.paths.contains_key(&id) {
            return self.paths.get(&id);
        }
        if self.scanned.is_none_or(|t| t.elapsed() >= self.min_rescan) {
            self.rescan();
        }
        self.paths.get(&id)
    }

    /// The path of cgroup `id`, if it exists (or existed at the last scan). Callers take the
    /// whole [`Cgroup`] ([`get`](Self::get)); this is for tests.
    #[cfg(test)]
    pub fn path(&mut self, id: u64) -> Option<&str> {
        self.get(id).map(|c| c.path.as_str())
    }

    /// Rebuilds the map from the tree. Entries of cgroups that still exist are kept as they
    /// are; those of removed cgroups are dropped.
    fn rescan(&mut self) {
        let mut old = std::mem::take(&mut self.paths);
        let mut stack = vec![(self.root.clone(), String::from("/"))];
        while let Some((dir, rel)) = stack.pop() {
            if let Ok(meta) = std::fs::metadata(&dir) {
                let known = old.remove(&meta.ino()).filter(|c| c.path == rel);
                let c = known.unwrap_or_else(|| Arc::new(Cgroup::new(rel.clone())));
                self.paths.insert(meta.ino(), c);
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let child = if rel == "/" {
                        format!("/{name}")
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((e.path(), child));
                }
            }
        }
        self.scanned = Some(Instant::now());
    }
}

impl Default for Paths {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths_from_a_tree() {
        let dir = std::env::temp_dir().join(format!("enetstat-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("system.slice/nginx.service")).unwrap();
        let ino = std::fs::metadata(dir.join("system.slice/nginx.service"))
            .unwrap()
            .ino();
        let docker = dir.join(format!("system.slice/docker-{}.scope", "ab".repeat(32)));
        std::fs::create_dir_all(&docker).unwrap();
        let mut paths = Paths::at(&dir);
        assert_eq!(paths.path(ino), Some("/system.slice/nginx.service"));
        assert_eq!(paths.get(ino).unwrap().container, None);
        let c = paths
            .get(std::fs::metadata(&docker).unwrap().ino())
            .unwrap();
        assert_eq!(
            c.container.as_ref().map(|c| c.runtime),
            Some(Runtime::Docker)
        );
        assert_eq!(paths.path(0), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_root_cgroup_has_an_id() {
        if !root().join("cgroup.procs").exists() {
            crate::test_skip::skip("the_root_cgroup_has_an_id", "no cgroup v2 is mounted");
            return;
        }
        assert!(id_of("/").is_some());
        assert_eq!(id_of("/no/such/cgroup"), None);
    }
}

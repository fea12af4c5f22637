//! The container a socket's cgroup id names, for `enetstat top` tracing in this process: asked
//! once per event, so the answer for a cgroup is kept (one hash probe), and the cgroup tree is
//! read only when an id is new ([`cgroup::Paths`] rescans at most once a second).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::cgroup;

/// cgroup ids to the container they are in, as `runtime://id`.
#[derive(Debug)]
pub struct Containers {
    paths: cgroup::Paths,
    /// What each cgroup seen so far names. An id the tree did not hold is not kept: the next
    /// rescan may find it (a container started since).
    known: FxHashMap<u64, Option<Arc<str>>>,
}

impl Containers {
    pub fn new(paths: cgroup::Paths) -> Self {
        Self {
            paths,
            known: FxHashMap::default(),
        }
    }

    /// The container of cgroup `id` (0: not known), if it is one's.
    pub fn of(&mut self, id: u64) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.known.contains_key(&id) {
            let cgroup = self.paths.get(id)?;
            let container = cgroup.container.as_ref().map(|c| c.to_string().into());
            self.known.insert(id, container);
        }
        self.known.get(&id)?.as_deref()
    }

    /// The same, shared.
    pub fn shared(&mut self, id: u64) -> Option<Arc<str>> {
        self.of(id)?;
        self.known.get(&id)?.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_cgroup_names_its_container_once_found() {
        let dir = std::env::temp_dir().join(format!("enetstat-top-cg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = "ab".repeat(32);
        let docker = dir.join(format!("system.slice/docker-{id}.scope"));
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::create_dir_all(dir.join("user.slice")).unwrap();
        let mut c = Containers::new(cgroup::Paths::at(&dir));
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        let want = format!("docker://{id}");
        assert_eq!(c.of(ino(&docker)), Some(want.as_str()));
        assert_eq!(c.shared(ino(&docker)).as_deref(), Some(want.as_str()));
        assert_eq!(c.of(ino(&dir.join("user.slice"))), None);
        assert_eq!(c.of(0), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! What a cgroup v2 path names: the [`Cgroup`] a socket's cgroup id stands for, and the
//! container a path belongs to. Pure: finding the id of a path, or the path of an id, reads
//! the cgroup tree, and that is netstat-user's `cgroup` module.
//!
//! Paths are relative to the cgroup root and start with `/`, as `/proc/PID/cgroup` shows them:
//! `/system.slice/nginx.service`.

use std::fmt;

/// What a cgroup id names: its path, and the container it belongs to when the path is a
/// container runtime's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub path: String,
    pub container: Option<Container>,
}

impl Cgroup {
    pub fn new(path: String) -> Self {
        let container = container_of(&path);
        Self { path, container }
    }
}

/// The container runtime a cgroup path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A Kubernetes pod under the cgroupfs driver: the path does not name the runtime.
    Kubernetes,
}

impl Runtime {
    /// The name Kubernetes uses in a container id's scheme (`containerd://ID`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
        }
    }
}

/// A container: its runtime and its full id (64 hex digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub runtime: Runtime,
    pub id: String,
}

impl Container {
    /// The 12-digit short id `docker ps` and `crictl ps` show.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// `runtime://short-id`, for columns meant for people.
    pub fn short(&self) -> String {
        format!("{}://{}", self.runtime.name(), self.short_id())
    }
}

/// `runtime://id`, the form Kubernetes shows in a pod's `containerID`.
impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.runtime.name(), self.id)
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The innermost container a cgroup path belongs to, for the common runtimes' layouts:
///
/// - Docker: `/docker/ID`, `/system.slice/docker-ID.scope`
/// - containerd (Kubernetes, systemd driver): `.../cri-containerd-ID.scope`
/// - CRI-O: `.../crio-ID.scope` (not `crio-conmon-ID.scope`, the monitor)
/// - podman: `.../libpod-ID.scope`, `/machine.slice/libpod-ID.scope/container`,
///   `/libpod_parent/libpod-ID` (not `libpod-conmon-ID.scope`)
/// - Kubernetes with the cgroupfs driver: `/kubepods/burstable/podUID/ID`
pub fn container_of(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate().rev() {
        let name = part.strip_suffix(".scope").unwrap_or(part);
        let prefixed = [
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::CriO),
            ("libpod-", Runtime::Podman),
        ];
        for (prefix, runtime) in prefixed {
            if let Some(id) = name.strip_prefix(prefix).filter(|id| is_id(id)) {
                return Some(Container {
                    runtime,
                    id: id.to_owned(),
                });
            }
        }
        if is_id(name) && i > 0 {
            let parent = parts[i - 1];
            let runtime = if parent == "docker" {
                Some(Runtime::Docker)
            } else if parent.starts_with("pod") || parts.iter().any(|p| p.starts_with("kubepods")) {
                Some(Runtime::Kubernetes)
            } else {
                None
            };
            if let Some(runtime) = runtime {
                return Some(Container {
                    runtime,
                    id: name.to_owned(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    // An Option, as container_of gives: the cases compare with it.
    #[allow(clippy::unnecessary_wraps)]
    fn c(runtime: Runtime) -> Option<Container> {
        Some(Container {
            runtime,
            id: ID.to_owned(),
        })
    }

    #[test]
    fn container_ids_from_every_runtime_layout() {
        let cases = [
            (format!("/docker/{ID}"), c(Runtime::Docker)),
            (
                format!("/system.slice/docker-{ID}.scope"),
                c(Runtime::Docker),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/\
                     kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/\
                     cri-containerd-{ID}.scope"
                ),
                c(Runtime::Containerd),
            ),
            (
                format!("/kubepods.slice/kubepods-pod1234.slice/crio-{ID}.scope"),
                c(Runtime::CriO),
            ),
            (
                format!("/kubepods.slice/kubepods-pod1234.slice/crio-conmon-{ID}.scope"),
                None,
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                c(Runtime::Podman),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                c(Runtime::Podman),
            ),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                c(Runtime::Podman),
            ),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), None),
            (format!("/libpod_parent/libpod-{ID}"), c(Runtime::Podman)),
            (
                format!("/kubepods/burstable/pod1a2b3c4d-5e6f/{ID}"),
                c(Runtime::Kubernetes),
            ),
            ("/system.slice/nginx.service".to_owned(), None),
            ("/".to_owned(), None),
            (format!("/docker/{}", &ID[..63]), None),
            (format!("/random/{ID}"), None),
        ];
        for (path, want) in cases {
            assert_eq!(container_of(&path), want, "{path}");
        }
        let docker = c(Runtime::Docker).unwrap();
        assert_eq!(docker.short_id(), &ID[..12]);
        assert_eq!(docker.to_string(), format!("docker://{ID}"));
        assert_eq!(docker.short(), format!("docker://{}", &ID[..12]));
    }
}

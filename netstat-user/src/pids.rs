//! Which process holds a socket, from `/proc/*/fd`, as `netstat -p` and `ss -p` find it.
//!
//! Every open socket is a file with an inode number; sock_diag reports the same inode. A scan
//! reads the fd links of every process we may read and maps each socket inode to its holder.
//! Processes come and go during a scan: one that exits (or that we may not read) is skipped,
//! never an error. Without root only our own processes' fds are readable, as with netstat.

use std::{collections::HashMap, time::Instant};

use procfs::process::{FDTarget, Process, all_processes};

use crate::event::Owner;
use std::sync::Arc;

/// Socket inode -> the process holding it, from one scan of `/proc`.
#[derive(Debug, Default)]
pub struct SocketOwners {
    by_inode: HashMap<u64, Owner>,
    /// Names by pid from the last scan, so a rescan reads each surviving process's name once.
    /// Each process's name once, shared by the owners of all its sockets.
    comms: HashMap<u32, Arc<str>>,
    scanned_at: Option<Instant>,
    /// Processes skipped in the last scan (exited mid-scan, or not readable).
    pub skipped: usize,
}

impl SocketOwners {
    /// An empty map; [`refresh`](Self::refresh) fills it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `/proc` once.
    pub fn scan() -> Self {
        let mut s = Self::new();
        s.refresh();
        s
    }

    /// When the last scan finished.
    pub fn scanned_at(&self) -> Option<Instant> {
        self.scanned_at
    }

    /// Rescans `/proc`. When several processes hold one socket (inherited across fork), the
    /// lowest pid is shown, as the stable choice.
    pub fn refresh(&mut self) {
        let mut by_inode: HashMap<u64, Owner> = HashMap::with_capacity(self.by_inode.len());
        let mut comms = HashMap::with_capacity(self.comms.len());
        let mut skipped = 0;
        let procs = match all_processes() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot list processes in /proc: {e}; no owners shown");
                self.by_inode.clear();
                self.scanned_at = Some(Instant::now());
                return;
            }
        };
        for process in procs {
            let Ok(process) = process else {
                skipped += 1;
                continue;
            };
            let Some(inodes) = socket_inodes(&process) else {
                skipped += 1;
                continue;
            };
            if inodes.is_empty() {
                continue;
            }
            let pid = process.pid() as u32;
            let comm = match self.comms.get(&pid) {
                Some(c) => c.clone(),
                None => match process.stat() {
                    Ok(stat) => Arc::from(stat.comm),
                    Err(_) => {
                        skipped += 1;
                        continue;
                    }
                },
            };
            for inode in inodes {
                by_inode
                    .entry(inode)
                    .and_modify(|o: &mut Owner| {
                        if pid < o.pid {
                            *o = Owner::new(pid, comm.clone());
                        }
                    })
                    .or_insert_with(|| Owner::new(pid, comm.clone()));
            }
            comms.insert(pid, comm);
        }
        self.by_inode = by_inode;
        self.comms = comms;
        self.skipped = skipped;
        self.scanned_at = Some(Instant::now());
    }

    /// The process holding the socket with this inode.
    pub fn get(&self, inode: u64) -> Option<&Owner> {
        if inode == 0 || self.by_inode.is_empty() {
            return None;
        }
        self.by_inode.get(&inode)
    }

    /// Sockets with a known holder.
    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }
}

/// The socket inodes among a process's fds; `None` when the process is gone or unreadable.
fn socket_inodes(process: &Process) -> Option<Vec<u64>> {
    let fds = process.fd().ok()?;
    Some(
        fds.filter_map(|fd| match fd.ok()?.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn finds_our_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        let owners = SocketOwners::scan();
        let owner = owners.get(inode).expect("our socket has an owner");
        assert_eq!(owner.pid, std::process::id());
        assert!(owners.get(0).is_none());
    }
}

//! The client side of the daemon's protocol ([`crate::daemon`]): what `enetstat`,
//! `enetstat watch` and `enetstat life` use when a daemon is running, so a member of the
//! socket's group needs neither root nor CAP_BPF.

use std::{
    io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::daemon::protocol::{
    self, ReplyProbe, Request, SnapshotReply, SnapshotRequest, SubscribeRequest,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no enetstat daemon socket at {0}. Start the daemon (`systemctl start enetstat`, or \
         `enetstat daemon --socket {0}` as root), or run this command with --standalone (as \
         root, or with CAP_BPF and CAP_PERFMON)"
    )]
    NoSocket(PathBuf),
    #[error(
        "permission denied on {path}: the daemon's socket is mode 0660, so only root and the \
         members of its group ({group}) may use it. Ask an administrator to add you \
         (`usermod -aG {group} $USER`, then log in again), or run as root with --standalone"
    )]
    Permission { path: PathBuf, group: String },
    #[error(
        "cannot reach {path}: the directory {dir} ({detail}) does not let this user through. \
         The daemon makes the directories it creates mode 0750 with the socket's group; ask an \
         administrator to give {dir} that mode and group, or run as root with --standalone"
    )]
    Blocked {
        path: PathBuf,
        dir: PathBuf,
        detail: String,
    },
    #[error(
        "permission denied on {path}, although this user is in its group ({group}): the \
         socket's mode ({mode:04o}) does not let the group connect. The daemon makes it 0660; \
         ask an administrator to restart the daemon, or run as root with --standalone"
    )]
    GroupDenied {
        path: PathBuf,
        group: String,
        mode: u32,
    },
    #[error(
        "{0} exists but no daemon answers on it: a daemon was stopped without cleaning up, or \
         was killed. Start it again (it replaces the stale file), or use --standalone"
    )]
    Stale(PathBuf),
    #[error(
        "{0} is not a socket, so it is not an enetstat daemon. Pass the daemon's socket with \
         --socket PATH, or use --standalone"
    )]
    NotASocket(PathBuf),
    #[error("cannot talk to the daemon at {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error(
        "the daemon at {path} answered something this client does not understand ({detail}). \
         Is it an enetstat daemon of the same version?"
    )]
    Protocol { path: PathBuf, detail: String },
    #[error("the daemon refused the request: {0}")]
    Refused(String),
    #[error(
        "the daemon cut this client off because it read too slowly: lagged: {0} events \
         dropped. Narrow the filter, or raise the daemon's --client-queue"
    )]
    Lagged(u64),
    #[error("the daemon closed the connection")]
    Closed,
}

/// A connection to the daemon.
pub struct Client {
    path: PathBuf,
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

/// The name of a group, or its number.
fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| gid.to_string())
}

/// Whether this process has `gid` as its group or one of its supplementary groups.
fn in_group(gid: u32) -> bool {
    nix::unistd::getegid().as_raw() == gid
        || nix::unistd::getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// The first directory on the way to `path` this process may not pass through, with its
/// mode, owner and group.
fn blocking_dir(path: &Path) -> Option<(PathBuf, String)> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    dirs.into_iter()
        .filter(|d| !d.as_os_str().is_empty())
        .find(|d| {
            use std::os::unix::ffi::OsStrExt;
            let Ok(c) = std::ffi::CString::new(d.as_os_str().as_bytes()) else {
                return false;
            };
            // SAFETY: a NUL-terminated path that lives across the call.
            unsafe { libc::access(c.as_ptr(), libc::X_OK) != 0 }
        })
        .map(|d| {
            let detail = std::fs::metadata(d).map_or_else(
                |e| e.to_string(),
                |m| {
                    format!(
                        "mode {:04o}, owner uid {}, group {}",
                        m.mode() & 0o7777,
                        m.uid(),
                        group_name(m.gid())
                    )
                },
            );
            (d.to_owned(), detail)
        })
}

impl Client {
    /// Connects, turning every failure into an error that names the fix.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ClientError::NoSocket(path.to_owned()));
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(match blocking_dir(path) {
                    Some((dir, detail)) => ClientError::Blocked {
                        path: path.to_owned(),
                        dir,
                        detail,
                    },
                    None => ClientError::Permission {
                        path: path.to_owned(),
                        group: "the daemon's --socket-group".into(),
                    },
                });
            }
            Err(cause) => {
                return Err(ClientError::Io {
                    path: path.to_owned(),
                    cause,
                });
            }
        };
        if !meta.file_type().is_socket() {
            return Err(ClientError::NotASocket(path.to_owned()));
        }
        let stream = match UnixStream::connect(path).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match e.kind() {
                    io::ErrorKind::PermissionDenied if in_group(meta.gid()) => {
                        ClientError::GroupDenied {
                            path: path.to_owned(),
                            group: group_name(meta.gid()),
                            mode: meta.mode() & 0o7777,
                        }
                    }
                    io::ErrorKind::PermissionDenied => ClientError::Permission {
                        path: path.to_owned(),
                        group: group_name(meta.gid()),
                    },
                    io::ErrorKind::ConnectionRefused => ClientError::Stale(path.to_owned()),
                    _ => ClientError::Io {
                        path: path.to_owned(),
                        cause: e,
                    },
                });
            }
        };
        let (rd, wr) = stream.into_split();
        Ok(Client {
            path: path.to_owned(),
            rd: BufReader::new(rd),
            wr,
        })
    }

    fn io(&self, cause: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            cause,
        }
    }

    /// What the daemon sent is untrusted (a fake server may sit on the socket): the detail
    /// is made terminal-safe before it can reach an error message.
    fn protocol(&self, detail: impl AsRef<str>) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail: crate::render::escape::terminal_safe(detail.as_ref()).into_owned(),
        }
    }

    async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let line = protocol::request_line(request);
        self.wr
            .write_all(line.as_bytes())
            .await
            .map_err(|e| self.io(e))
    }

    /// The next line, or `None` at the end; error lines become errors.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        let mut line = String::new();
        let n = self.rd.read_line(&mut line).await.map_err(|e| self.io(e))?;
        if n == 0 {
            return Ok(None);
        }
        if line.starts_with("{\"error\"") {
            let probe: ReplyProbe =
                serde_json::from_str(&line).map_err(|e| self.protocol(e.to_string()))?;
            return Err(match (probe.lagged, probe.error) {
                (Some(n), _) => ClientError::Lagged(n),
                (None, Some(e)) => {
                    ClientError::Refused(crate::render::escape::terminal_safe(&e).into_owned())
                }
                (None, None) => self.protocol(line.trim_end()),
            });
        }
        Ok(Some(line))
    }

    /// Bytes already read from the daemon and not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.rd.buffer().len()
    }

    async fn reply(&mut self) -> Result<String, ClientError> {
        self.next_line().await?.ok_or(ClientError::Closed)
    }

    /// One snapshot, rendered by the daemon exactly as `enetstat -c` renders a refresh.
    pub async fn snapshot(&mut self, request: SnapshotRequest) -> Result<String, ClientError> {
        self.send(&Request::Snapshot(request)).await?;
        let line = self.reply().await?;
        let reply: SnapshotReply =
            serde_json::from_str(&line).map_err(|e| self.protocol(e.to_string()))?;
        Ok(reply.output)
    }

    /// The daemon's counters.
    pub async fn stats(&mut self) -> Result<serde_json::Value, ClientError> {
        self.send(&Request::Stats).await?;
        let line = self.reply().await?;
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| self.protocol(e.to_string()))?;
        v.get("stats")
            .cloned()
            .ok_or_else(|| self.protocol(line.trim_end()))
    }

    /// Starts a subscription; read its lines with [`Client::next_line`].
    pub async fn subscribe(&mut self, request: SubscribeRequest) -> Result<(), ClientError> {
        self.send(&Request::Subscribe(request)).await?;
        let line = self.reply().await?;
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| self.protocol(e.to_string()))?;
        if v.get("ok") != Some(&serde_json::Value::Bool(true)) {
            return Err(self.protocol(line.trim_end()));
        }
        Ok(())
    }
}

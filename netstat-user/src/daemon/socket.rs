//! The Unix socket's file: made in directories of mode 0750 with the socket's group, mode
//! 0660 itself, whatever the umask; never in a directory another user could replace it in;
//! a stale one a killed daemon left replaced, a live daemon's never; removed on exit by
//! whatever user the daemon runs as, or a loud word why not.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::sys::stat::{Mode, umask};
use tokio::net::UnixListener;

use super::DaemonError;

/// The socket file and its [`SocketLock`]; removed on drop unless another daemon has
/// replaced it since (a daemon that is not enetstat's, or one run before the lock was
/// taken). When it cannot be removed, the daemon says so and why, rather than leave a file that makes every
/// client report a stale daemon.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    ino: u64,
    /// Dropped after the socket is removed (fields drop after `drop`): until then, no other
    /// daemon takes the path.
    _lock: SocketLock,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if !std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::error!(
                "cannot remove the socket {}: {e}. Clients will find a stale socket there \
                 until it is removed (`rm {}`) or a daemon starts on it again",
                self.path.display(),
                self.path.display()
            );
        }
    }
}

/// A group's id, by name or number.
pub fn group_id(group: &str) -> Result<u32, DaemonError> {
    super::privilege::group_id(group).ok_or_else(|| DaemonError::Group(group.into()))
}

/// Mode of the directories the daemon makes for its socket, whatever the umask: the owner
/// writes, the socket's group passes through, nobody else.
pub const DIR_MODE: u32 = 0o750;

/// Makes the missing directories of `dir`, each [`DIR_MODE`] with group `gid`. Returns
/// whether `dir` itself was made.
fn make_dirs(dir: &Path, gid: Option<u32>) -> io::Result<bool> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    for d in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(d) {
            Ok(()) => {}
            // Another daemon racing this one made it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        if gid.is_some() {
            std::os::unix::fs::chown(d, None, gid)?;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(!missing.is_empty())
}

/// Whether `dir` holds nothing but (maybe) the socket `name` and its lock: a directory for
/// the socket alone, such as `/run/enetstat`.
fn only_the_socket(dir: &Path, name: Option<&std::ffi::OsStr>) -> bool {
    let Some(name) = name else {
        return std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    };
    let mut lock = name.to_owned();
    lock.push(".lock");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.into_iter().all(|e| {
            e.is_ok_and(|e| {
                let file = e.file_name();
                file == name || file == lock
            })
        })
    })
}

/// Why another user could swap what is in `dir` (the socket, for a fake daemon that a root
/// client would believe), if one could: `dir` belongs to a user other than root and the
/// daemon's, or group or others may write to it without the sticky bit (with it, as in
/// `/tmp`, they may not remove or rename what is not theirs).
fn open_to_others(dir: &Path, meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 && meta.uid() != uid {
        return Some(format!(
            "the directory {} belongs to uid {}, another user, who could replace the socket \
             with a fake daemon; give --socket a path in a directory of root's or of this \
             daemon's own (such as the default {})",
            dir.display(),
            meta.uid(),
            super::DEFAULT_SOCKET
        ));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        let who = match mode & 0o022 {
            0o020 => "its group",
            0o002 => "every user",
            _ => "its group and every user",
        };
        return Some(format!(
            "the directory {} (mode {mode:04o}) may be written by {who}, without the sticky \
             bit, so they could replace the socket with a fake daemon; take that away \
             (`chmod go-w {}`) or set the sticky bit (`chmod +t {}`), or give --socket a \
             path in a directory of its own",
            dir.display(),
            dir.display(),
            dir.display()
        ));
    }
    None
}

fn refuse(problem: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, problem)
}

/// Refuses when a directory above the socket's (those that exist) is [`open_to_others`]:
/// whoever may write there could rename the socket's directory away and put their own.
/// Checked before any directory is made, so a refusal leaves nothing behind.
fn check_above(dir: &Path) -> io::Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = std::path::absolute(dir)?;
    for above in dir.ancestors().skip(1) {
        match std::fs::metadata(above) {
            Ok(meta) => {
                if let Some(problem) = open_to_others(above, &meta, uid) {
                    return Err(refuse(problem));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Checks and takes the socket's directory.
///
/// Nobody but root and the daemon's user may be able to replace the socket: a directory
/// another user owns, or one group or others may write to without the sticky bit, is
/// refused (as those above it are, see [`check_above`]), with the directory, why, and what
/// to do. Unless it is the daemon's own (below): then it is taken and tightened instead
/// (group and other write taken away, with a warning), as it holds nothing others need.
///
/// The daemon must also be able to remove its socket when it stops, with the capabilities it
/// keeps (none that override file permissions), as root or as another user (`--user`). So
/// it owns the socket's directory when the directory is its own: the default
/// `/run/enetstat`, one it just made, or one that holds nothing but the socket, even when a
/// daemon that ran as another user left it behind (then a root daemon takes it back).
/// Elsewhere it warns, at start, when it will not be able to.
fn take_dir(dir: &Path, made: bool, socket: Option<&std::ffi::OsStr>) -> io::Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let meta = std::fs::metadata(dir)?;
    let mode = meta.mode() & 0o7777;
    let ours = made
        || Path::new(super::DEFAULT_SOCKET).parent() == Some(dir)
        || only_the_socket(dir, socket);
    if ours {
        if meta.uid() != uid {
            std::os::unix::fs::chown(dir, Some(uid), None)?;
        }
        let tight = (mode & !0o022) | 0o200;
        if tight != mode {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tight))?;
        }
        if mode & 0o022 != 0 {
            tracing::warn!(
                "{} was mode {mode:04o}: other users could have replaced the socket in it. It \
                 holds nothing but the socket, so the daemon made it {tight:04o}",
                dir.display()
            );
        }
        return Ok(());
    }
    if let Some(problem) = open_to_others(dir, &meta, uid) {
        return Err(refuse(problem));
    }
    if meta.uid() == uid && mode & 0o200 != 0 {
        return Ok(());
    }
    tracing::warn!(
        "{} belongs to uid {} (mode {mode:04o}), so this daemon (uid {uid}) will not be able \
         to remove its socket there when it stops; give --socket a path in a directory of its \
         own",
        dir.display(),
        meta.uid()
    );
    Ok(())
}

/// The lock a daemon holds on `<socket>.lock` for its whole life: whoever holds it owns the
/// socket path, so a socket file found there by the holder is a stale one, and a second
/// daemon is told one runs, however close together the two start. (Asking the socket instead
/// races: a daemon makes its file with `bind` a moment before it listens, and a connection
/// in between is refused as a stale socket's is.) Removed on drop, while still held.
#[derive(Debug)]
pub struct SocketLock {
    path: PathBuf,
    file: nix::fcntl::Flock<std::fs::File>,
}

impl SocketLock {
    /// Takes the lock of the socket at `socket`, or `None` when another daemon holds it.
    fn take(socket: &Path) -> io::Result<Option<Self>> {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            let file =
                match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                    Ok(file) => file,
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
                    Err((_, errno)) => return Err(errno.into()),
                };
            // A daemon that was stopping removed the file between our open and our lock:
            // the lock is on a file nobody else will open. Take the new one.
            let held = file.metadata()?.ino();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == held) {
                return Ok(Some(Self { path, file }));
            }
        }
    }
}

impl Drop for SocketLock {
    fn drop(&mut self) {
        // Still held: a daemon starting now either locked the old file before this (and was
        // told one runs) or opens a new one.
        if let Ok(meta) = self.file.metadata()
            && std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == meta.ino())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes the socket: replaces a stale file a killed daemon left, refuses when a live daemon
/// answers on it, and sets mode 0660 and the group.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<(UnixListener, SocketFile), DaemonError> {
    let err = |cause| DaemonError::Socket {
        path: path.to_owned(),
        cause,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_above(dir).map_err(err)?;
        let made = make_dirs(dir, gid).map_err(err)?;
        take_dir(dir, made, path.file_name()).map_err(err)?;
    }
    let Some(lock) = SocketLock::take(path).map_err(err)? else {
        return Err(DaemonError::AlreadyRunning(path.to_owned()));
    };
    match std::fs::symlink_metadata(path) {
        // Held by no daemon, so nobody should answer; but a daemon from before the lock was
        // taken (an older enetstat) might.
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(DaemonError::AlreadyRunning(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("replacing the stale socket {}", path.display());
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        },
        Ok(_) => return Err(DaemonError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    // Nobody but root may connect until the mode and group are set.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(old);
    let listener = match bound {
        Ok(l) => l,
        Err(e) => return Err(err(e)),
    };
    let ino = std::fs::symlink_metadata(path).map_err(err)?.ino();
    let file = SocketFile {
        path: path.to_owned(),
        ino,
        _lock: lock,
    };
    // Owned by root even when the daemon runs as another user (`--user`).
    if gid.is_some() || !nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(path, Some(0), gid).map_err(err)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let listener = UnixListener::from_std(listener).map_err(err)?;
    Ok((listener, file))
}

//! `--event-log PATH`: every transition as NDJSON (the objects `enetstat watch -o json`
//! prints), written by its own thread so a slow disk never holds the engine up. The engine
//! hands events over through a bounded channel and counts what did not fit; the file is
//! rotated by size (`PATH` → `PATH.1` → … → `PATH.N`, the oldest deleted).
//!
//! The file is mode 0640 whatever the umask (made so, or set so on an existing file of the
//! daemon's, which an older version or another tool may have left 0644), opened without
//! following a symbolic link
//! (`O_NOFOLLOW`), and must be a regular file. In a directory other users may write to (such
//! as `/tmp`), a file that belongs to another user is refused: it could be a trap laid for
//! the daemon.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::event::Event;
use crate::render;

/// How to keep the log.
#[derive(Clone, Debug)]
pub struct EventLogOptions {
    pub path: PathBuf,
    /// Rotate when the file reaches this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` … `PATH.keep`).
    pub keep: u32,
    /// Events waiting for the writer before new ones are dropped.
    pub queue: usize,
    /// The `--user` the daemon runs as by the time it opens the log, named when it may not.
    pub run_as: Option<String>,
}

/// What the log did, for stats.
#[derive(Debug, Default)]
pub struct EventLogCounters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub rotations: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The engine's end of the log.
pub struct EventLog {
    tx: Option<SyncSender<Arc<Event>>>,
    pub counters: Arc<EventLogCounters>,
    writer: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the event log {path}: {cause}{hint}", hint = user_hint(path, cause, run_as.as_deref()))]
pub struct EventLogError {
    path: PathBuf,
    cause: io::Error,
    run_as: Option<String>,
}

/// Who was refused, when the daemon had stopped being root: the log is opened after `--user`
/// took effect, so that user must be able to write there.
fn user_hint(path: &Path, cause: &io::Error, run_as: Option<&str>) -> String {
    match (run_as, cause.raw_os_error()) {
        (Some(user), Some(libc::EACCES | libc::EPERM | libc::EROFS)) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            format!(
                ". The daemon opens it as user {user} (--user {user}), who may not write \
                 there: make {dir} writable by {user} (e.g. `chown {user} {dir}`), or give a \
                 path in a directory {user} may write to",
                dir = dir.display()
            )
        }
        _ => String::new(),
    }
}

/// The mode a new log gets, whatever the umask.
pub const LOG_MODE: u32 = 0o640;

fn refuse(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

/// Opens `path` for appending: never through a symbolic link, only a regular file, mode
/// [`LOG_MODE`] when new or the daemon's own, and never another user's file in a directory
/// others can write.
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let uid = nix::unistd::geteuid().as_raw();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let shared_dir = std::fs::metadata(dir)?.mode() & 0o022 != 0;
    let foreign = |owner: u32| {
        refuse(format!(
            "it belongs to uid {owner}, not to this daemon (uid {uid}), in {}, a directory \
             other users may write to; remove it, or give a path in a directory of the \
             daemon's own",
            dir.display()
        ))
    };
    // Said plainly first (the kernel may refuse such a file with a bare EACCES, see
    // fs.protected_regular); checked again on what was opened, against a swap in between.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(refuse(
                "it is a symbolic link, which the daemon does not follow; give the real path"
                    .into(),
            ));
        }
        Ok(m) if shared_dir && m.uid() != uid => return Err(foreign(m.uid())),
        _ => {}
    }
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let (file, made) = match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(LOG_MODE)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = OpenOptions::new()
                .append(true)
                .custom_flags(flags)
                .open(path)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ELOOP) => refuse(
                        "it is a symbolic link, which the daemon does not follow; give the \
                         real path"
                            .into(),
                    ),
                    _ => e,
                })?;
            (f, false)
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    if !made && shared_dir && meta.uid() != uid {
        return Err(foreign(meta.uid()));
    }
    // A new file: the umask may have taken bits away (or, at 0, added none). An existing one
    // of the daemon's keeps whatever mode it had, maybe world-readable. Set exactly, on the
    // descriptor (fchmod), so it is the file just checked.
    let was = meta.mode() & 0o7777;
    if made || (meta.uid() == uid && was != LOG_MODE) {
        file.set_permissions(std::fs::Permissions::from_mode(LOG_MODE))?;
        if !made {
            tracing::info!(
                "the event log {} was mode {was:04o}; made it {LOG_MODE:04o}",
                path.display()
            );
        }
    }
    Ok(file)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `PATH.keep` goes, every `PATH.n` becomes `PATH.n+1`, `PATH` becomes `PATH.1`.
fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(rotated(path, keep));
    for n in (1..keep).rev() {
        let from = rotated(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

impl EventLog {
    /// Opens (appends to) the log and starts its writer thread.
    pub fn start(opts: EventLogOptions) -> Result<EventLog, EventLogError> {
        let file = open(&opts.path).map_err(|cause| EventLogError {
            path: opts.path.clone(),
            cause,
            run_as: opts.run_as.clone(),
        })?;
        let size = file.metadata().map_or(0, |m| m.len());
        let (tx, rx) = mpsc::sync_channel::<Arc<Event>>(opts.queue.max(1));
        let counters = Arc::new(EventLogCounters::default());
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_loop(&opts, file, size, &rx, &c))
            .map_err(|cause| EventLogError {
                path: PathBuf::new(),
                cause,
                run_as: None,
            })?;
        Ok(EventLog {
            tx: Some(tx),
            counters,
            writer: Some(writer),
        })
    }

    /// Hands an event to the writer; never blocks (counts a drop when the queue is full).
    pub fn offer(&self, event: Arc<Event>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for EventLog {
    /// Lets the writer finish what is queued and flush.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_loop(
    opts: &EventLogOptions,
    file: File,
    mut size: u64,
    rx: &mpsc::Receiver<Arc<Event>>,
    c: &EventLogCounters,
) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut line = Vec::with_capacity(512);
    loop {
        let ev = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        line.clear();
        let rendered = render::transition::json::write_line(&mut line, &ev.line());
        if rendered.is_err() {
            continue;
        }
        if size > 0 && size + line.len() as u64 > opts.max_bytes {
            let reopened = out
                .flush()
                .and_then(|()| rotate(&opts.path, opts.keep))
                .and_then(|()| open(&opts.path));
            match reopened {
                Ok(f) => {
                    out = BufWriter::with_capacity(256 * 1024, f);
                    size = 0;
                    c.rotations.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("cannot rotate the event log: {e}");
                    c.write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        match out.write_all(&line) {
            Ok(()) => {
                size += line.len() as u64;
                c.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if c.write_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("cannot write the event log: {e}");
                }
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_0640_whatever_the_umask_and_never_followed() {
        use std::os::unix::fs::PermissionsExt;

        use nix::sys::stat::{Mode, umask};
        let dir = std::env::temp_dir().join(format!("enetstat-evlog-m-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = dir.join("events.ndjson");
        // This test restores the process's mask.
        let old = umask(Mode::empty());
        let opened = open(&p);
        umask(old);
        drop(opened.unwrap());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let target = dir.join("target");
        std::fs::write(&target, "x").unwrap();
        let link = dir.join("link.ndjson");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
        // A log left world-readable (by an older version, or under umask 022) is set too.
        let old = dir.join("old.ndjson");
        std::fs::write(&old, "before\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(open(&old).unwrap());
        let mode = std::fs::metadata(&old).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "before\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refusal_under_user_names_the_user() {
        let error = |run_as: Option<&str>, errno| EventLogError {
            path: PathBuf::from("/var/log/enetstat/events.ndjson"),
            cause: io::Error::from_raw_os_error(errno),
            run_as: run_as.map(str::to_owned),
        };
        let text = error(Some("nobody"), libc::EACCES).to_string();
        assert!(
            text.contains("as user nobody (--user nobody)")
                && text.contains("`chown nobody /var/log/enetstat`"),
            "{text}"
        );
        // As root, or for another error, the plain cause alone.
        assert!(!error(None, libc::EACCES).to_string().contains("--user"));
        assert!(
            !error(Some("nobody"), libc::ENOSPC)
                .to_string()
                .contains("--user")
        );
    }

    #[test]
    fn rotation_shifts_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("enetstat-evlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("events.ndjson");
        for i in 0..4 {
            std::fs::write(&p, format!("{i}\n")).unwrap();
            rotate(&p, 2).unwrap();
        }
        assert!(!p.exists());
        assert_eq!(std::fs::read_to_string(rotated(&p, 1)).unwrap(), "3\n");
        assert_eq!(std::fs::read_to_string(rotated(&p, 2)).unwrap(), "2\n");
        assert!(!rotated(&p, 3).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `--event-log PATH`: every transition as NDJSON (the objects `enetstat watch -o json`
//! prints), written by its own thread so a slow disk never holds the engine up. The engine
//! hands events over through a bounded channel and counts what did not fit; the file is
//! rotated by size (`PATH` → `PATH.1` → … → `PATH.N`, the oldest deleted).

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

use super::engine::Event;
use crate::render::{self, Line};

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
#[error("cannot open the event log {path}: {source}")]
pub struct EventLogError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
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
        let file = open(&opts.path).map_err(|source| EventLogError {
            path: opts.path.clone(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = mpsc::sync_channel::<Arc<Event>>(opts.queue.max(1));
        let counters = Arc::new(EventLogCounters::default());
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_loop(&opts, file, size, &rx, &c))
            .map_err(|source| EventLogError {
                path: PathBuf::new(),
                source,
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
        let rendered = render::json::write_line(
            &mut line,
            &Line {
                transition: &ev.transition,
                time: ev.time,
                owner: ev.owner.as_ref(),
                in_old: ev.in_old,
                end: ev.end,
                cgroup: ev.cgroup.as_deref(),
            },
        );
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

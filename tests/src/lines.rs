//! Collecting a child's output lines in the background.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The lines a reader thread has collected from one stream of a child process, with a way to
/// wait for more. Clones share the same lines.
#[derive(Clone)]
pub(crate) struct LineLog {
    shared: Arc<(Mutex<Collected>, Condvar)>,
}

struct Collected {
    lines: Vec<String>,
    /// When the last line arrived (or the log was made).
    last_line: Instant,
    /// The stream reached EOF (the child closed it, usually by exiting).
    eof: bool,
}

impl LineLog {
    /// Starts a thread reading `stream` line by line. When `echo` is set, each line is also
    /// written to stderr with that prefix (the test harness shows it when a test fails).
    ///
    /// The harness must never be what slows the tracer down: a `watch` whose stdout pipe is
    /// full blocks on its write, stops reading its ring, and loses records a test then blames
    /// on it. On a slow VM a full-speed churn (200k lines/s) outran a reader that took a lock
    /// per line through the kernel's 64 KiB pipe. So the pipe is widened (to 1 MiB, the
    /// default most a process may ask for) and lines are collected a buffer at a time.
    pub(crate) fn spawn<R: Read + AsRawFd + Send + 'static>(
        stream: R,
        echo: Option<String>,
    ) -> (LineLog, JoinHandle<()>) {
        widen_pipe(&stream);
        let log = LineLog {
            shared: Arc::new((
                Mutex::new(Collected {
                    lines: Vec::new(),
                    last_line: Instant::now(),
                    eof: false,
                }),
                Condvar::new(),
            )),
        };
        let writer = log.clone();
        let handle = thread::spawn(move || {
            let mut reader = BufReader::with_capacity(PIPE_SIZE, stream);
            let mut buf = Vec::new();
            let mut batch = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let line = text.trim_end_matches(['\n', '\r']).to_owned();
                        if let Some(prefix) = &echo {
                            eprintln!("{prefix}{line}");
                        }
                        batch.push(line);
                        // Handed over before the next read could block: once no complete
                        // line is left of what was read, so waiters see each line as soon
                        // as it was read.
                        if !reader.buffer().contains(&b'\n') {
                            writer.push(&mut batch);
                        }
                    }
                }
            }
            writer.push(&mut batch);
            let (lock, cvar) = &*writer.shared;
            lock_ignoring_poison(lock).eof = true;
            cvar.notify_all();
        });
        (log, handle)
    }

    /// Moves `batch`'s lines in.
    fn push(&self, batch: &mut Vec<String>) {
        if batch.is_empty() {
            return;
        }
        let (lock, cvar) = &*self.shared;
        let mut collected = lock_ignoring_poison(lock);
        collected.lines.append(batch);
        collected.last_line = Instant::now();
        cvar.notify_all();
    }

    /// A copy of every line so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        lock_ignoring_poison(&self.shared.0).lines.clone()
    }

    /// Waits until `done(lines, eof)` holds or `timeout` passes; returns whether it held.
    pub(crate) fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[String], bool) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut collected = lock_ignoring_poison(lock);
        loop {
            if done(&collected.lines, collected.eof) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            collected = cvar
                .wait_timeout(collected, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until no line has arrived for `idle` (or the stream ended), at most `timeout`;
    /// returns whether it went idle.
    pub(crate) fn wait_idle(&self, idle: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut collected = lock_ignoring_poison(lock);
        loop {
            let now = Instant::now();
            if collected.eof || now.duration_since(collected.last_line) >= idle {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let wake = (collected.last_line + idle).min(deadline);
            collected = cvar
                .wait_timeout(collected, wake.saturating_duration_since(now))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Restarts the idle clock, so [`LineLog::wait_idle`] waits a full `idle` from now.
    pub(crate) fn touch(&self) {
        lock_ignoring_poison(&self.shared.0).last_line = Instant::now();
    }
}

fn lock_ignoring_poison<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pipe size asked for, and the reader's buffer: 1 MiB, `/proc/sys/fs/pipe-max-size`'s
/// default.
const PIPE_SIZE: usize = 1 << 20;

/// Asks the kernel for a [`PIPE_SIZE`] pipe behind `stream`; a stream that is not a pipe, or a
/// smaller limit, keeps what it has.
fn widen_pipe(stream: &impl AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a descriptor the caller owns; it fails harmlessly on a non-pipe.
    let _ = unsafe {
        libc::fcntl(
            stream.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            PIPE_SIZE as libc::c_int,
        )
    };
}

//! The processes a benchmark starts, killed on every exit path: on drop, on error, on Ctrl-C
//! of xtask (the handler only sets a flag; every wait checks it and unwinds through the
//! drops), and, should xtask itself be killed, by the kernel (`PR_SET_PDEATHSIG`).
//!
//! Children run in their own process group, so a Ctrl-C in the terminal reaches xtask alone
//! and xtask stops them in order (a tracer gets SIGINT and prints its summary).

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead as _, BufReader, Read},
    os::unix::process::CommandExt as _,
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag that [`check`] and every wait here turn into an error.
pub fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, on_interrupt as *const () as libc::sighandler_t);
        }
    }
}

/// Fails once the user has pressed Ctrl-C.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; every process the benchmark started was stopped");
    }
    Ok(())
}

/// Sleeps, but wakes up for Ctrl-C.
pub fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Lines a child wrote on stderr (or stdout), collected by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The last lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let all = self.all();
        all[all.len().saturating_sub(n)..].join("\n")
    }
}

/// A running child process, stopped and reaped on drop.
pub struct Child {
    name: String,
    child: std::process::Child,
    pub stderr: Lines,
    /// One message per stderr line, for [`Child::wait_for_stderr`].
    stderr_rx: mpsc::Receiver<String>,
}

impl Child {
    /// Starts `command` with stderr captured; stdin and stdout as the caller set them.
    pub fn spawn(name: &str, mut command: Command) -> Result<Child> {
        command.stderr(Stdio::piped()).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let shown = cmd::display(&command);
        say!("$ {shown} &");
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        let stderr = Lines::default();
        let (tx, stderr_rx) = mpsc::channel();
        if let Some(pipe) = child.stderr.take() {
            let lines = stderr.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut all) = lines.0.lock() {
                        all.push(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Child {
            name: name.to_owned(),
            child,
            stderr,
            stderr_rx,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for a stderr line containing `needle` (a tracer's "tracing" line).
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            check()?;
            match self.stderr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!(
                        "{} exited ({status}) before it was ready:\n{}",
                        self.name,
                        self.stderr.tail(10)
                    );
                }
            }
            if Instant::now() > end {
                bail!(
                    "{} did not say {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.stderr.tail(10)
                );
            }
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit on its own, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            check()?;
            if let Some(status) = self.child.try_wait()? {
                // Give the stderr thread a moment to collect the last lines.
                thread::sleep(Duration::from_millis(20));
                return Ok(status);
            }
            if Instant::now() > end {
                bail!(
                    "{} still running after {timeout:?}:\n{}",
                    self.name,
                    self.stderr.tail(10)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` and waits up to `grace` for it to exit; kills it after that.
    pub fn stop(&mut self, signal: libc::c_int, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill takes a pid and a signal; the pid is our unreaped child's.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait()? {
                thread::sleep(Duration::from_millis(20));
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        say!("{} did not stop within {grace:?}; killing it", self.name);
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop(libc::SIGTERM, Duration::from_secs(3));
        }
    }
}

/// What [`LineCounter`] saw: lines, the first ones kept, and how many lines showed each
/// `"old":"A","new":"B"` pair (enetstat's JSON transitions), as `"A->B"`.
pub struct Counted {
    pub lines: u64,
    pub kept: Vec<u8>,
    pub transitions: BTreeMap<String, u64>,
}

/// Counts the lines a child writes to `pipe`, tallies the transitions in them, and keeps the
/// first `keep` lines.
pub struct LineCounter {
    handle: thread::JoinHandle<Counted>,
}

impl LineCounter {
    pub fn start(pipe: impl Read + Send + 'static, keep: usize) -> LineCounter {
        let handle = thread::spawn(move || {
            let mut counted = Counted {
                lines: 0,
                kept: Vec::new(),
                transitions: BTreeMap::new(),
            };
            let mut tally = HashMap::<(Vec<u8>, Vec<u8>), u64>::new();
            let mut reader = BufReader::with_capacity(1 << 16, pipe);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                counted.lines += 1;
                if let (Some(old), Some(new)) =
                    (field(&line, b"\"old\":\""), field(&line, b"\"new\":\""))
                {
                    match tally.get_mut(&(old.to_vec(), new.to_vec())) {
                        Some(n) => *n += 1,
                        None => {
                            tally.insert((old.to_vec(), new.to_vec()), 1);
                        }
                    }
                }
                if counted.lines <= keep as u64 {
                    counted.kept.extend_from_slice(&line);
                }
                line.clear();
            }
            for ((old, new), n) in tally {
                let key = format!(
                    "{}->{}",
                    String::from_utf8_lossy(&old),
                    String::from_utf8_lossy(&new)
                );
                counted.transitions.insert(key, n);
            }
            counted
        });
        LineCounter { handle }
    }

    /// What was counted, once the writer closed the pipe.
    pub fn finish(self) -> Result<Counted> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the line counter panicked"))
    }
}

/// The string value after `key` in a JSON line (up to the closing quote).
fn field<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = line.windows(key.len()).position(|w| w == key)? + key.len();
    let len = line[at..].iter().position(|&b| b == b'"')?;
    Some(&line[at..at + len])
}

/// Resident and peak memory of `pid` in KiB: `VmRSS` and `VmHWM` from `/proc/PID/status`.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// CPU time (user + system) `pid` has used, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_transitions_and_keeps_the_first() {
        let text = "{\"old\":\"CLOSE\",\"new\":\"SYN_SENT\"}\n\
                    {\"old\":\"CLOSE\",\"new\":\"SYN_SENT\"}\n\
                    {\"old\":\"LAST_ACK\",\"new\":\"CLOSE\"}\n";
        let counted = LineCounter::start(std::io::Cursor::new(text), 1)
            .finish()
            .unwrap();
        assert_eq!(counted.lines, 3);
        assert_eq!(
            counted.kept,
            text.lines()
                .next()
                .unwrap()
                .as_bytes()
                .iter()
                .chain(b"\n")
                .copied()
                .collect::<Vec<u8>>()
        );
        assert_eq!(counted.transitions["CLOSE->SYN_SENT"], 2);
        assert_eq!(counted.transitions["LAST_ACK->CLOSE"], 1);
    }
}

//! A running `enetstat`, killed on drop.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::binaries::enetstat_bin;
use crate::lines::LineLog;
use crate::summary::Summary;
use crate::transition::Transition;

/// What enetstat prints to stderr once its programs are attached.
pub const READY_PREFIX: &str = "enetstat: tracing";
/// How long enetstat may take to attach (loading BTF and programs takes well under a second).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long enetstat may take to exit once asked to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A signal to stop the tracer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT, as Ctrl-C sends.
    Int,
    /// SIGTERM, as `kill` and service managers send.
    Term,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
        }
    }
}

/// A running `enetstat`. Its stdout (one JSON transition per line with `-o json`) and stderr are
/// collected in the background. Dropping it kills the process (SIGKILL) if it is still running,
/// which detaches its programs: they belong to its file descriptors.
pub struct Tracer {
    command: String,
    child: Child,
    stdout: LineLog,
    stderr: LineLog,
    readers: Vec<JoinHandle<()>>,
}

impl Tracer {
    /// Starts `enetstat <args>` and waits until it says its programs are attached.
    ///
    /// # Panics
    ///
    /// When the binary is missing, fails to start, exits, or is not ready in time.
    pub fn start(args: &[&str]) -> Tracer {
        Tracer::start_with_env(args, &[])
    }

    /// [`Tracer::start`] with extra environment variables (`TZ`, or `ENETSTAT_PROBE_MODE`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Tracer {
        let bin = enetstat_bin();
        let command = format!("{} {}", bin.display(), args.join(" "));
        let mut child = Command::new(&bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        let (stdout, out_reader) = LineLog::spawn(child.stdout.take().expect("piped stdout"), None);
        let (stderr, err_reader) = LineLog::spawn(
            child.stderr.take().expect("piped stderr"),
            Some(format!("[enetstat {}] ", child.id())),
        );
        let tracer = Tracer {
            command,
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        };
        let ready = tracer.stderr.wait_until(READY_TIMEOUT, |lines, eof| {
            eof || lines.iter().any(|l| l.starts_with(READY_PREFIX))
        });
        let attached = tracer
            .stderr
            .lines()
            .iter()
            .any(|l| l.starts_with(READY_PREFIX));
        assert!(
            ready && attached,
            "`{}` did not print `{READY_PREFIX}` within {READY_TIMEOUT:?} (or exited first); \
             stderr: {:#?}",
            tracer.command,
            tracer.stderr.lines()
        );
        tracer
    }

    /// Starts `enetstat watch -o json <extra>`.
    pub fn watch_json(extra: &[&str]) -> Tracer {
        let mut args = vec!["watch", "-o", "json"];
        args.extend_from_slice(extra);
        Tracer::start(&args)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines()
    }

    /// Every stdout line so far, parsed (panics on lines that break the contract).
    pub fn transitions(&self) -> Vec<Transition> {
        Transition::parse_all(&self.stdout.lines())
    }

    /// Waits until at least `n` stdout lines have arrived; returns whether they did in time.
    pub fn wait_for_lines(&self, n: usize, timeout: Duration) -> bool {
        self.stdout
            .wait_until(timeout, |lines, eof| lines.len() >= n || eof)
    }

    /// Waits until stdout has been quiet for `idle`, counted from now (at most a minute).
    /// Used after the peers exit, so that lines still on their way arrive, and lines that
    /// should not exist get a chance to show up, before the tracer stops.
    pub fn settle(&self, idle: Duration) {
        self.stdout.touch();
        let quiet = self.stdout.wait_idle(idle, Duration::from_secs(60));
        assert!(
            quiet,
            "`{}` kept printing for a minute after the traffic stopped",
            self.command
        );
    }

    /// Sends `signal` to the tracer.
    pub fn signal(&self, signal: Signal) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill() on our own child, which we have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal.number()) };
        assert_eq!(
            rc,
            0,
            "cannot signal `{}`: {}",
            self.command,
            std::io::Error::last_os_error()
        );
    }

    /// Sends `signal` and waits for the tracer to exit.
    pub fn stop(mut self, signal: Signal) -> Finished {
        self.signal(signal);
        self.finish()
    }

    /// Waits for the tracer to exit by itself (`--count`, `--duration`).
    pub fn wait_exit(mut self) -> Finished {
        self.finish()
    }

    fn finish(&mut self) -> Finished {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for enetstat") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not exit within {EXIT_TIMEOUT:?}; stderr: {:#?}",
                self.command,
                self.stderr.lines()
            );
            thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Finished {
            command: self.command.clone(),
            status,
            stdout: self.stdout.lines(),
            stderr: self.stderr.lines(),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tracer that has exited: its status and everything it printed.
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// Every stdout line, parsed (panics on lines that break the contract).
    pub fn transitions(&self) -> Vec<Transition> {
        Transition::parse_all(&self.stdout)
    }

    /// Asserts the tracer exited with status 0 (not by a signal).
    pub fn assert_success(&self) {
        assert!(
            self.status.code() == Some(0),
            "`{}` exited with {} instead of 0; stderr: {:#?}",
            self.command,
            self.status,
            self.stderr
        );
    }

    /// The exit summary, checked for consistency: it is present, `shown` equals the lines
    /// printed, `seen >= shown`, and nothing was undecodable.
    pub fn summary(&self) -> Summary {
        let summary = Summary::find(&self.stderr).unwrap_or_else(|| {
            panic!(
                "`{}` printed no `enetstat: <N> transitions seen, <M> shown, <L> lost (ring \
                 buffer full), <U> undecodable` line on exit; stderr: {:#?}",
                self.command, self.stderr
            )
        });
        let printed = u64::try_from(self.stdout.len()).expect("line count fits u64");
        assert_eq!(
            summary.shown, printed,
            "the summary says {} shown but {printed} lines were printed: {summary:?}",
            summary.shown
        );
        assert!(
            summary.seen >= summary.shown,
            "the summary shows more than it saw: {summary:?}"
        );
        assert_eq!(summary.undecodable, 0, "undecodable records: {summary:?}");
        summary
    }
}

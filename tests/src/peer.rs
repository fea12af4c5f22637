//! An `enetstat-peer` child process, killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::binaries::peer_bin;
use crate::cgroup::Cgroup;
use crate::lines::LineLog;

/// How long a peer may take to say what it is expected to say, or to exit.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `enetstat-peer`. Its stdout and stderr are collected in the background; dropping
/// it kills the process if it is still running.
pub struct Peer {
    name: String,
    child: Child,
    stdout: LineLog,
    stderr: LineLog,
    readers: Vec<JoinHandle<()>>,
}

impl Peer {
    /// Starts `enetstat-peer <args>`.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn spawn(args: &[&str]) -> Peer {
        let mut cmd = Command::new(peer_bin());
        cmd.args(args);
        Peer::start(cmd, format!("enetstat-peer {}", args.join(" ")))
    }

    /// Starts `enetstat-peer <args>` inside `cgroup`: moved there before it runs, so every
    /// socket it makes belongs to the cgroup. Its pid is the peer's (the shell `exec`s it).
    pub fn spawn_in(cgroup: &Cgroup, args: &[&str]) -> Peer {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"echo $$ > "$0" && exec "$@""#])
            .arg(cgroup.procs())
            .arg(peer_bin())
            .args(args);
        Peer::start(
            cmd,
            format!("enetstat-peer {} (in {})", args.join(" "), cgroup.rel()),
        )
    }

    fn start(mut cmd: Command, name: String) -> Peer {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{name}`: {e}"));
        let (stdout, out_reader) = LineLog::spawn(child.stdout.take().expect("piped stdout"), None);
        let (stderr, err_reader) = LineLog::spawn(
            child.stderr.take().expect("piped stderr"),
            Some(format!("[peer {}] ", child.id())),
        );
        Peer {
            name,
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// `serve --addr ADDR --accept N`, once it listens. Returns the peer and its port.
    pub fn serve(addr: SocketAddr, accept: u64) -> (Peer, u16) {
        let peer = Peer::spawn(&[
            "serve",
            "--addr",
            &addr.to_string(),
            "--accept",
            &accept.to_string(),
        ]);
        let port = peer.port_from("listening ");
        (peer, port)
    }

    /// `connect --addr ADDR --count N`.
    pub fn connect(addr: SocketAddr, count: u64) -> Peer {
        Peer::spawn(&[
            "connect",
            "--addr",
            &addr.to_string(),
            "--count",
            &count.to_string(),
        ])
    }

    /// `churn --addr ADDR --connections N`, once it listens. Returns the peer and its port.
    pub fn churn(addr: SocketAddr, connections: u64) -> (Peer, u16) {
        let peer = Peer::spawn(&[
            "churn",
            "--addr",
            &addr.to_string(),
            "--connections",
            &connections.to_string(),
        ]);
        let port = peer.port_from("listening ");
        (peer, port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    ///
    /// # Panics
    ///
    /// When the line does not come (the peer exits or takes too long).
    pub fn wait_line(&self, prefix: &str) -> String {
        let mut found = None;
        self.stdout.wait_until(PEER_TIMEOUT, |lines, eof| {
            found = lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_owned);
            found.is_some() || eof
        });
        found.unwrap_or_else(|| {
            panic!(
                "`{}` never printed `{prefix}...`; stdout: {:?}; stderr: {:?}",
                self.name,
                self.stdout.lines(),
                self.stderr.lines()
            )
        })
    }

    fn port_from(&self, prefix: &str) -> u16 {
        let rest = self.wait_line(prefix);
        rest.trim()
            .parse()
            .unwrap_or_else(|_| panic!("`{}` printed a bad port: {rest}", self.name))
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lines()
    }

    /// Waits for the peer to exit and returns its status.
    ///
    /// # Panics
    ///
    /// When it does not exit in time.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PEER_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for the peer") {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not exit within {PEER_TIMEOUT:?}; stdout: {:?}; stderr: {:?}",
                self.name,
                self.stdout.lines(),
                self.stderr.lines()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the peer to exit and asserts it succeeded.
    pub fn wait_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "`{}` failed with {status}; stdout: {:?}; stderr: {:?}",
            self.name,
            self.stdout.lines(),
            self.stderr.lines()
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

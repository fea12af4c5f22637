//! `enetstat-peer`: the other end of enetstat's end-to-end tests, and a small load generator.
//!
//! The tests need the sockets they watch to belong to a process other than the test runner, so
//! that enetstat's owner attribution (pid and comm) can be checked against a known pid. This
//! binary makes those sockets. It uses only blocking std sockets; every connection it makes
//! closes in the same order, so the kernel's state transitions are known in advance.
//!
//! # Subcommands
//!
//! ```text
//! enetstat-peer serve   --addr IP:PORT [--accept N] [--fork]
//! enetstat-peer connect --addr IP:PORT [--count N] [--timeout-secs S]
//! enetstat-peer churn   --addr IP[:PORT] (--connections N | --seconds S) [--workers W] [--window K]
//! enetstat-peer knock   --addr IP:PORT --seconds S [--interval-ms MS]
//! ```
//!
//! - `serve` binds and listens on `--addr` (port 0 picks one), prints `listening <port>`, then
//!   accepts `N` connections one after another: each is read until EOF (the client closed
//!   first) and then closed. Then it closes the listener, waits until the kernel has finished
//!   closing every connection on the port (each in TIME_WAIT or gone), prints `done <N>` and
//!   exits. `churn` waits the same way before its `done`, so a test that reads `done` knows
//!   every transition has happened.
//!   Per connection the server side makes LISTEN->SYN_RECV->ESTABLISHED->CLOSE_WAIT->LAST_ACK
//!   ->CLOSE; the listener makes CLOSE->LISTEN and LISTEN->CLOSE.
//! - `connect` connects to `--addr` and closes at once, `N` times in sequence, printing
//!   `connected <local port>` after each connect. A client socket makes
//!   CLOSE->SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE (or CLOSE->SYN_SENT->CLOSE when
//!   refused).
//! - `churn` runs a listener with an accepting thread and `W` client threads in one process.
//!   Each client thread connects and closes; the server reads each connection until EOF and
//!   closes it, so every connection makes exactly 10 transitions (5 per side) and the
//!   listener 2. It prints `listening <port>` before the first connection and
//!   `done <connections> <elapsed seconds>` at the end. With `--connections N` it makes exactly
//!   `N` connections; with `--seconds S` as many as it can in `S` seconds (for benchmarks). At
//!   most `--window` connections wait for the server at a time, so the accept queue never
//!   overflows (an overflow would change the transitions).
//! - `knock` connects and closes at once every `MS` milliseconds for `S` seconds, going on
//!   when a connect is refused; it prints `connected` after the first connection that
//!   succeeds and `refused` after the first that is refused (so a test knows when refusals
//!   began), then exits 0.
//!
//! Lines go to stdout and are flushed at once; errors go to stderr as `enetstat-peer: ...`.
//!
//! # Exit status
//!
//! 0 success; 1 any other error; 2 bad usage (clap); 3 connection refused; 4 timed out.
//!
//! Threads are left unnamed on purpose: naming a thread changes its comm, and the tests expect
//! every socket of this process to show the comm `enetstat-peer`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

const EXIT_ERROR: u8 = 1;
const EXIT_REFUSED: u8 = 3;
const EXIT_TIMED_OUT: u8 = 4;

#[derive(Parser)]
#[command(
    name = "enetstat-peer",
    about = "Makes the TCP connections enetstat's tests watch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen, accept N connections (read each until EOF, then close), close the listener.
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long)]
        addr: SocketAddr,
        /// How many connections to accept before closing the listener.
        #[arg(long, default_value_t = 1)]
        accept: u64,
        /// Accept in a forked child, as pre-fork servers do: the child prints `acceptor
        /// <pid>`, then `accepted <client port>` after each accept; the parent, which made
        /// the listener, waits for it.
        #[arg(long)]
        fork: bool,
    },
    /// Bind a UDP socket and never answer what arrives (a DNS server that does not reply),
    /// until stdin closes.
    Mute {
        /// Address to bind.
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Connect and close at once, COUNT times in sequence.
    Connect {
        /// Address to connect to.
        #[arg(long)]
        addr: SocketAddr,
        /// How many connections to make, one after another.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Give up on a connect after this many seconds (exit status 4).
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
    /// Connect and close every INTERVAL for SECONDS, whether refused or not.
    Knock {
        /// Address to connect to.
        #[arg(long)]
        addr: SocketAddr,
        /// How long to go on.
        #[arg(long)]
        seconds: f64,
        /// Time between connects.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
    },
    /// Listener and clients in one process: connect/close cycles, as fast as possible.
    Churn {
        /// Address to listen on: an IP (port 0) or IP:PORT.
        #[arg(long, value_parser = parse_listen_addr)]
        addr: SocketAddr,
        /// Make exactly this many connections.
        #[arg(long, conflicts_with = "seconds", required_unless_present = "seconds")]
        connections: Option<u64>,
        /// Make connections for this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Client threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Most connections waiting for the server at once (keep it below the listen backlog).
        #[arg(long, default_value_t = 64)]
        window: u64,
    },
}

fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| format!("`{s}` is neither an IP address nor IP:PORT"))
}

/// An error with the exit status it should produce.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn io(what: &str, err: &io::Error) -> Self {
        let code = match err.kind() {
            io::ErrorKind::ConnectionRefused => EXIT_REFUSED,
            io::ErrorKind::TimedOut => EXIT_TIMED_OUT,
            _ => EXIT_ERROR,
        };
        Failure {
            code,
            message: format!("{what}: {err}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { addr, accept, fork } => serve(addr, accept, fork),
        Command::Mute { addr } => mute(addr),
        Command::Connect {
            addr,
            count,
            timeout_secs,
        } => connect(addr, count, Duration::from_secs(timeout_secs)),
        Command::Knock {
            addr,
            seconds,
            interval_ms,
        } => knock(
            addr,
            Duration::from_secs_f64(seconds),
            Duration::from_millis(interval_ms),
        ),
        Command::Churn {
            addr,
            connections,
            seconds,
            workers,
            window,
        } => {
            let budget = match (connections, seconds) {
                (Some(n), _) => Budget::Connections(n),
                (None, Some(s)) => Budget::Until(Instant::now() + Duration::from_secs_f64(s)),
                (None, None) => unreachable!("clap requires one of them"),
            };
            churn(addr, budget, workers.max(1), window.max(1))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("enetstat-peer: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Prints one protocol line and flushes it, so a reader sees it at once.
fn say(line: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::io("cannot write to stdout", &e))
}

/// Waits until the kernel has finished closing every connection to or from `port`: each one
/// is in TIME_WAIT or gone (a listener, or a bound socket that never connected, is not a
/// connection). Until then a LAST_ACK->CLOSE may still be on its way: on a loaded host a
/// FIN or its ACK can be dropped on loopback and sent again a retransmission timeout
/// (200 ms or more) later, after the peer would otherwise have said `done`.
fn wait_closed(port: u16) -> Result<(), Failure> {
    use procfs::net::TcpState;
    const LIMIT: Duration = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        let mut entries =
            procfs::net::tcp().map_err(|e| Failure::io("/proc/net/tcp", &io::Error::other(e)))?;
        // IPv6 may be disabled, and then there is no tcp6 table.
        entries.extend(procfs::net::tcp6().unwrap_or_default());
        let closing = entries
            .iter()
            .filter(|e| e.local_address.port() == port || e.remote_address.port() == port)
            .filter(|e| {
                !matches!(
                    e.state,
                    TcpState::TimeWait | TcpState::Listen | TcpState::Close
                )
            })
            .count();
        if closing == 0 {
            return Ok(());
        }
        if started.elapsed() > LIMIT {
            return Err(Failure {
                code: EXIT_ERROR,
                message: format!(
                    "{closing} connections on port {port} still closing after {LIMIT:?}"
                ),
            });
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads until the peer's FIN, then closes: the server side of every connection here.
fn drain_and_close(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    while stream.read(&mut buf)? != 0 {}
    drop(stream);
    Ok(())
}

fn serve(addr: SocketAddr, accept: u64, fork: bool) -> Result<(), Failure> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Failure::io(&format!("cannot listen on {addr}"), &e))?;
    let port = local_port(&listener.local_addr())?;
    say(&format!("listening {port}"))?;
    if fork {
        // SAFETY: this process has one thread here, so the child may do anything.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(Failure::io("fork failed", &io::Error::last_os_error()));
        }
        if child > 0 {
            let mut status = 0;
            // SAFETY: our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            drop(listener);
            wait_closed(port)?;
            return say(&format!("done {accept}"));
        }
        say(&format!("acceptor {}", std::process::id()))?;
        for _ in 0..accept {
            let (stream, peer) = listener
                .accept()
                .map_err(|e| Failure::io("accept failed", &e))?;
            say(&format!("accepted {}", peer.port()))?;
            drain_and_close(stream).map_err(|e| Failure::io("read failed", &e))?;
        }
        // SAFETY: ends the child without running the parent's exit handlers twice.
        unsafe { libc::_exit(0) };
    }
    for _ in 0..accept {
        let (stream, _) = listener
            .accept()
            .map_err(|e| Failure::io("accept failed", &e))?;
        drain_and_close(stream).map_err(|e| Failure::io("read failed", &e))?;
    }
    drop(listener);
    wait_closed(port)?;
    say(&format!("done {accept}"))
}

fn mute(addr: SocketAddr) -> Result<(), Failure> {
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(|e| Failure::io(&format!("cannot bind {addr}"), &e))?;
    say(&format!("bound {}", local_port(&socket.local_addr())?))?;
    // Whatever arrives stays unread; stdin closing (the test dropping us) ends it.
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    drop(socket);
    Ok(())
}

fn connect(addr: SocketAddr, count: u64, timeout: Duration) -> Result<(), Failure> {
    for _ in 0..count {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| Failure::io(&format!("cannot connect to {addr}"), &e))?;
        let port = local_port(&stream.local_addr())?;
        drop(stream);
        say(&format!("connected {port}"))?;
    }
    Ok(())
}

fn knock(addr: SocketAddr, seconds: Duration, interval: Duration) -> Result<(), Failure> {
    let end = Instant::now() + seconds;
    let (mut connected, mut refused) = (false, false);
    while Instant::now() < end {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                drop(stream);
                if !connected {
                    connected = true;
                    say("connected")?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if !refused {
                    refused = true;
                    say("refused")?;
                }
            }
            Err(e) => return Err(Failure::io(&format!("cannot connect to {addr}"), &e)),
        }
        thread::sleep(interval);
    }
    Ok(())
}

fn local_port(addr: &io::Result<SocketAddr>) -> Result<u16, Failure> {
    match addr {
        Ok(a) => Ok(a.port()),
        Err(e) => Err(Failure::io("cannot read the local address", e)),
    }
}

#[derive(Clone, Copy)]
enum Budget {
    Connections(u64),
    Until(Instant),
}

/// Counters shared by the client threads and the accepting thread.
#[derive(Default)]
struct Progress {
    /// Connections a client has claimed (and will make).
    claimed: AtomicU64,
    /// Connections a client has connected and closed.
    opened: AtomicU64,
    /// Connections the server has read to EOF and closed.
    served: AtomicU64,
    /// Set once every client thread has finished.
    clients_done: AtomicBool,
    /// Connect attempts retried because the local ports ran out (EADDRNOTAVAIL).
    port_retries: AtomicU64,
}

fn churn(addr: SocketAddr, budget: Budget, workers: usize, window: u64) -> Result<(), Failure> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Failure::io(&format!("cannot listen on {addr}"), &e))?;
    let target = listener
        .local_addr()
        .map_err(|e| Failure::io("local address", &e))?;
    say(&format!("listening {}", target.port()))?;

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let server = {
        let progress = Arc::clone(&progress);
        thread::spawn(move || churn_server(listener, &progress))
    };
    let clients: Vec<_> = (0..workers)
        .map(|_| {
            let progress = Arc::clone(&progress);
            thread::spawn(move || churn_client(target, budget, window, &progress))
        })
        .collect();

    let mut first_error = None;
    for client in clients {
        let result = client
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("client panicked")));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    progress.clients_done.store(true, Ordering::Release);
    let served = server
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("server panicked")));
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        return Err(Failure::io("churn client failed", &e));
    }
    let served = served.map_err(|e| Failure::io("churn server failed", &e))?;
    wait_closed(target.port())?;
    let retries = progress.port_retries.load(Ordering::Relaxed);
    if retries > 0 {
        eprintln!("enetstat-peer: retried {retries} connects for lack of local ports");
    }
    say(&format!("done {served} {elapsed:.3}"))
}

/// Accepts until every client is done and every connection it made is served; then closes the
/// listener (its LISTEN->CLOSE). Returns how many connections it served.
fn churn_server(listener: TcpListener, progress: &Progress) -> io::Result<u64> {
    loop {
        let done = progress.clients_done.load(Ordering::Acquire);
        let served = progress.served.load(Ordering::Acquire);
        if done && served == progress.opened.load(Ordering::Acquire) {
            drop(listener);
            return Ok(served);
        }
        if !readable(&listener, Duration::from_millis(20))? {
            continue;
        }
        let (stream, _) = listener.accept()?;
        drain_and_close(stream)?;
        progress.served.fetch_add(1, Ordering::AcqRel);
    }
}

/// Waits up to `timeout` for a connection to accept.
fn readable(listener: &TcpListener, timeout: Duration) -> io::Result<bool> {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, and the listener outlives the call.
    let n = unsafe { libc::poll(&mut fd, 1, millis) };
    match n {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

fn churn_client(
    target: SocketAddr,
    budget: Budget,
    window: u64,
    progress: &Progress,
) -> io::Result<()> {
    loop {
        match budget {
            Budget::Connections(n) => {
                if progress.claimed.fetch_add(1, Ordering::AcqRel) >= n {
                    return Ok(());
                }
            }
            Budget::Until(deadline) => {
                if Instant::now() >= deadline {
                    return Ok(());
                }
                progress.claimed.fetch_add(1, Ordering::AcqRel);
            }
        }
        // Keep the accept queue short: wait while `window` connections await the server.
        // (The server may count a connection before its client does, hence saturating_sub.)
        while progress
            .opened
            .load(Ordering::Acquire)
            .saturating_sub(progress.served.load(Ordering::Acquire))
            >= window
        {
            thread::yield_now();
        }
        let stream = loop {
            match TcpStream::connect(target) {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                    progress.port_retries.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        };
        // Close first: the server reads our FIN before it closes. (Not shutdown(): a close()
        // after it would add a FIN_WAIT1->FIN_WAIT1 or FIN_WAIT2->FIN_WAIT2 transition.)
        drop(stream);
        progress.opened.fetch_add(1, Ordering::AcqRel);
    }
}

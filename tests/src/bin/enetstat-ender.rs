//! `enetstat-ender`: ends TCP connections in every way enetstat tells apart, for the tests of
//! `enetstat life` and of the `end` field.
//!
//! # Subcommands
//!
//! ```text
//! enetstat-ender [--name NAME] refuse   --addr IP:PORT
//! enetstat-ender [--name NAME] timeout  --addr IP:PORT
//! enetstat-ender [--name NAME] abort    --addr IP:PORT [--after-ms MS]
//! enetstat-ender [--name NAME] pair     --addr IP:PORT --end normal|client-reset|server-reset
//! enetstat-ender [--name NAME] transfer-serve   --addr IP:PORT --bytes N [--close-delay-ms MS]
//! enetstat-ender [--name NAME] transfer-connect --addr IP:PORT --bytes N
//! enetstat-ender [--name NAME] stall-serve --addr IP:PORT --user-timeout-ms MS
//! enetstat-ender [--name NAME] hold-connect --addr IP:PORT
//! ```
//!
//! - `--name` renames the process (`prctl(PR_SET_NAME)`) before anything else, so its sockets
//!   carry that comm; it may hold control characters.
//! - `refuse` connects and expects ECONNREFUSED; prints `refused`.
//! - `timeout` connects (blocking, no timeout of its own) and expects ETIMEDOUT, the kernel's
//!   SYN retries running out; prints `timed_out`.
//! - `abort` starts a non-blocking connect, waits `--after-ms` (default 200) with the socket in
//!   SYN_SENT, closes it and prints `aborted`.
//! - `pair` listens on `--addr`, prints `listening <port>`, connects to itself and accepts,
//!   prints `client <client's local port>`, then ends the connection: `normal`: the client
//!   closes, the server reads EOF and closes; `client-reset`: the client closes with
//!   `SO_LINGER` 0 (a reset), the server reads ECONNRESET and closes; `server-reset`: the
//!   other way round. Prints `done`.
//! - `transfer-serve` listens, prints `listening <port>`, accepts one connection, reads exactly
//!   `N` bytes, writes `N` bytes, reads to EOF (expecting nothing more), waits
//!   `--close-delay-ms` (default 0), closes, prints `done`. With a delay the ACK of the
//!   client's FIN goes out alone, so the client (closed, hence orphaned) leaves FIN_WAIT2
//!   for TIME_WAIT before the server's FIN arrives.
//! - `transfer-connect` connects, prints `connected <local port>`, writes `N` bytes, reads
//!   exactly `N` bytes, closes first, prints `done`.
//!
//! - `stall-serve` listens, prints `listening <port>`, accepts one connection, prints
//!   `accepted <client's port>`, sets `TCP_USER_TIMEOUT` to `MS` on it and writes a byte every
//!   100 ms until a write fails; expects ETIMEDOUT (the peer vanished: its data went
//!   unacknowledged for `MS`) and prints `timed_out`, then closes.
//! - `hold-connect` connects, prints `connected <local port>` and reads until EOF or an error;
//!   prints `done`.
//!
//! Any other outcome exits with status 1 and a message on stderr.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use socket2::{Domain, SockRef, Socket, Type};

#[derive(Parser)]
#[command(name = "enetstat-ender", about = "Ends TCP connections in known ways")]
struct Cli {
    /// Rename the process (prctl(PR_SET_NAME)) first; at most 15 bytes.
    #[arg(long)]
    name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Ending {
    Normal,
    ClientReset,
    ServerReset,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to a closed port; expect ECONNREFUSED.
    Refuse {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Connect to a host that drops SYNs; expect ETIMEDOUT.
    Timeout {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Start a connect to a host that drops SYNs, then close the socket in SYN_SENT.
    Abort {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 200)]
        after_ms: u64,
    },
    /// A connection to ourselves, ended as told.
    Pair {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_enum)]
        end: Ending,
    },
    /// Accept one connection; read N bytes, write N bytes, read EOF, close.
    TransferServe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        bytes: usize,
        /// Wait this long after the client's EOF before closing.
        #[arg(long, default_value_t = 0)]
        close_delay_ms: u64,
    },
    /// Connect; write N bytes, read N bytes, close.
    TransferConnect {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        bytes: usize,
    },
    /// Accept one connection and write to it until TCP_USER_TIMEOUT ends it.
    StallServe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        user_timeout_ms: u32,
    },
    /// Connect and read until the end.
    HoldConnect {
        #[arg(long)]
        addr: SocketAddr,
    },
}

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result =
        cli.name
            .as_deref()
            .map_or(Ok(()), set_name)
            .and_then(|()| match cli.command {
                Command::Refuse { addr } => expect_error(addr, io::ErrorKind::ConnectionRefused)
                    .and_then(|()| say("refused")),
                Command::Timeout { addr } => {
                    expect_error(addr, io::ErrorKind::TimedOut).and_then(|()| say("timed_out"))
                }
                Command::Abort { addr, after_ms } => abort(addr, Duration::from_millis(after_ms)),
                Command::Pair { addr, end } => pair(addr, end),
                Command::TransferServe {
                    addr,
                    bytes,
                    close_delay_ms,
                } => transfer_serve(addr, bytes, Duration::from_millis(close_delay_ms)),
                Command::TransferConnect { addr, bytes } => transfer_connect(addr, bytes),
                Command::StallServe {
                    addr,
                    user_timeout_ms,
                } => stall_serve(addr, user_timeout_ms),
                Command::HoldConnect { addr } => hold_connect(addr),
            });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("enetstat-ender: {message}");
            ExitCode::FAILURE
        }
    }
}

fn set_name(name: &str) -> Result<()> {
    let mut bytes = name.as_bytes().to_vec();
    if bytes.len() > 15 || bytes.contains(&0) {
        return Err(format!(
            "{name:?} is not a process name (at most 15 bytes, no NUL)"
        ));
    }
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which `bytes` is.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr()) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_NAME): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Prints one protocol line and flushes it.
fn say(line: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn ctx(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn expect_error(addr: SocketAddr, kind: io::ErrorKind) -> Result<()> {
    match TcpStream::connect(addr) {
        Ok(_) => Err(format!("connect to {addr} succeeded; expected {kind}")),
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(format!("connect to {addr}: {e}; expected {kind}")),
    }
}

fn abort(addr: SocketAddr, after: Duration) -> Result<()> {
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(ctx("socket"))?;
    socket.set_nonblocking(true).map_err(ctx("O_NONBLOCK"))?;
    match socket.connect(&addr.into()) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Ok(()) => return Err(format!("connect to {addr} succeeded at once")),
        Err(e) => return Err(format!("connect to {addr}: {e}")),
    }
    thread::sleep(after);
    // Still connecting? (An error or a connection would make the socket writable.)
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; the socket outlives the call.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    if n != 0 {
        return Err(format!(
            "the connect to {addr} finished (poll {n}, revents {:#x}); expected it pending",
            fd.revents
        ));
    }
    drop(socket);
    say("aborted")
}

fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let port = listener.local_addr().map_err(ctx("local address"))?.port();
    say(&format!("listening {port}"))?;
    Ok(listener)
}

fn local_port(s: &TcpStream) -> Result<u16> {
    Ok(s.local_addr().map_err(ctx("local address"))?.port())
}

fn local_port_of(l: &TcpListener) -> Result<u16> {
    Ok(l.local_addr().map_err(ctx("local address"))?.port())
}

fn reset(s: TcpStream) -> Result<()> {
    SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .map_err(ctx("SO_LINGER"))?;
    drop(s);
    Ok(())
}

/// Reads until the connection ends; `Ok(true)` on a reset, `Ok(false)` on EOF.
fn read_to_end_or_reset(mut s: &TcpStream) -> Result<bool> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => return Err(format!("read {n} unexpected bytes")),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn pair(addr: SocketAddr, end: Ending) -> Result<()> {
    let listener = listen(addr)?;
    let target = listener.local_addr().map_err(ctx("local address"))?;
    let client = TcpStream::connect(target).map_err(ctx("connect"))?;
    let (server, _) = listener.accept().map_err(ctx("accept"))?;
    drop(listener);
    say(&format!("client {}", local_port(&client)?))?;
    let (closer, other) = match end {
        Ending::Normal => {
            drop(client);
            (None, server)
        }
        Ending::ClientReset => (Some(client), server),
        Ending::ServerReset => (Some(server), client),
    };
    let expect_reset = closer.is_some();
    if let Some(closer) = closer {
        reset(closer)?;
    }
    let was_reset = read_to_end_or_reset(&other)?;
    if was_reset != expect_reset {
        return Err(format!(
            "the other side saw {}",
            if was_reset { "a reset" } else { "EOF" }
        ));
    }
    drop(other);
    say("done")
}

fn transfer_serve(addr: SocketAddr, bytes: usize, close_delay: Duration) -> Result<()> {
    let listener = listen(addr)?;
    let (mut s, _) = listener.accept().map_err(ctx("accept"))?;
    drop(listener);
    let mut buf = vec![0u8; bytes];
    s.read_exact(&mut buf).map_err(ctx("read"))?;
    s.write_all(&pattern(bytes)).map_err(ctx("write"))?;
    if read_to_end_or_reset(&s)? {
        return Err("reset instead of EOF".into());
    }
    thread::sleep(close_delay);
    drop(s);
    say("done")
}

fn stall_serve(addr: SocketAddr, user_timeout_ms: u32) -> Result<()> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    say(&format!("listening {}", local_port_of(&listener)?))?;
    let (mut s, peer) = listener.accept().map_err(ctx("accept"))?;
    say(&format!("accepted {}", peer.port()))?;
    let ms: libc::c_uint = user_timeout_ms;
    // SAFETY: setsockopt with a pointer to a c_uint of the size given.
    let set = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(format!(
            "setsockopt(TCP_USER_TIMEOUT): {}",
            io::Error::last_os_error()
        ));
    }
    loop {
        match s.write_all(b"x") {
            Ok(()) => thread::sleep(Duration::from_millis(100)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => return Err(format!("write: {e}, not a timeout")),
        }
    }
    say("timed_out")
}

fn hold_connect(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    say(&format!("connected {}", local_port(&s)?))?;
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    say("done")
}

fn transfer_connect(addr: SocketAddr, bytes: usize) -> Result<()> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    say(&format!("connected {}", local_port(&s)?))?;
    s.write_all(&pattern(bytes)).map_err(ctx("write"))?;
    let mut buf = vec![0u8; bytes];
    s.read_exact(&mut buf).map_err(ctx("read"))?;
    if buf != pattern(bytes) {
        return Err("the data came back different".into());
    }
    drop(s);
    say("done")
}

fn pattern(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i % 251) as u8).collect()
}

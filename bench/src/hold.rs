//! Many established loopback connections, held open: the sockets the scale benchmark counts.
//!
//! One loopback 4-tuple space is too small for 100,000 connections to one port (the ephemeral
//! range is ~28,000 ports), so connection `i` goes to listening port `i % ports` from source
//! address `127.0.0.(1 + (i / ports) % sources)`. Sources are bound with
//! `IP_BIND_ADDRESS_NO_PORT`, so the kernel still picks the port at `connect()` and may reuse it
//! towards another destination.

use std::{
    io::{self, Read as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use socket2::{Domain, Socket, Type};

use crate::limits;

#[derive(Clone, Debug)]
pub struct HoldOptions {
    /// Established connections to open.
    pub connections: u64,
    /// Listening ports `base_port..base_port + ports`; 0 picks `ceil(connections / 20,000)`.
    pub ports: u16,
    /// First listening port; 0 lets the kernel pick each.
    pub base_port: u16,
    /// Source addresses 127.0.0.1 ..= 127.0.0.N.
    pub sources: u8,
    /// Threads opening connections.
    pub threads: usize,
}

/// Printed as one JSON line once every connection is established.
#[derive(Clone, Debug, Serialize)]
pub struct HoldReport {
    pub mode: &'static str,
    pub connections: u64,
    /// Sockets held: both ends of every connection, plus the listeners.
    pub sockets: u64,
    pub ports: Vec<u16>,
    pub sources: u8,
    pub open_files_limit: u64,
    /// Seconds it took to open them all.
    pub setup_s: f64,
}

/// Sockets held open until [`Held`] is dropped.
pub struct Held {
    pub report: HoldReport,
    _listeners: Vec<TcpListener>,
    _conns: Vec<(TcpStream, TcpStream)>,
}

/// Opens and establishes every connection (both ends accepted), then returns them held.
pub fn open(opts: &HoldOptions) -> Result<Held> {
    if opts.connections == 0 || opts.sources == 0 || opts.threads == 0 {
        bail!("--connections, --sources and --threads must be at least 1");
    }
    let ports = match opts.ports {
        0 => u16::try_from(opts.connections.div_ceil(20_000)).context("too many connections")?,
        n => n,
    };
    let need = 2 * opts.connections + u64::from(ports) + 256;
    let open_files_limit = limits::raise_nofile(need)?;

    let began = Instant::now();
    let mut listeners = Vec::new();
    for i in 0..ports {
        let port = match opts.base_port {
            0 => 0,
            base => base
                .checked_add(i)
                .context("--port + --ports passes 65535")?,
        };
        let listener = listen(port)?;
        listeners.push(listener);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<_>>()?;

    let threads = opts.threads.min(opts.connections as usize);
    let conns = thread::scope(|scope| -> Result<Vec<(TcpStream, TcpStream)>> {
        let mut handles = Vec::new();
        for t in 0..threads {
            let (listeners, addrs) = (&listeners, &addrs);
            handles.push(scope.spawn(move || -> Result<Vec<(TcpStream, TcpStream)>> {
                let mut mine = Vec::new();
                let mut i = t as u64;
                while i < opts.connections {
                    let port = (i % u64::from(ports)) as usize;
                    let source = 1 + ((i / u64::from(ports)) % u64::from(opts.sources)) as u8;
                    let client = connect(Ipv4Addr::new(127, 0, 0, source), addrs[port])
                        .with_context(|| {
                            format!("connection {i} of {} failed", opts.connections)
                        })?;
                    // Any connection to this port will do: every thread accepts once per
                    // connect it made, so each accept has one waiting.
                    let (server, _) = listeners[port].accept()?;
                    mine.push((client, server));
                    i += threads as u64;
                }
                Ok(mine)
            }));
        }
        let mut all = Vec::with_capacity(opts.connections as usize);
        for handle in handles {
            all.extend(
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a thread panicked"))??,
            );
        }
        Ok(all)
    })?;

    Ok(Held {
        report: HoldReport {
            mode: "hold",
            connections: conns.len() as u64,
            sockets: 2 * conns.len() as u64 + u64::from(ports),
            ports: addrs.iter().map(SocketAddr::port).collect(),
            sources: opts.sources,
            open_files_limit,
            setup_s: began.elapsed().as_secs_f64(),
        },
        _listeners: listeners,
        _conns: conns,
    })
}

/// Waits until standard input reaches end of file (the harness closes it) or `max` passes.
pub fn wait(max: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(max);
}

fn listen(port: u16) -> Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}: is the port taken?"))?;
    // The kernel caps this at net.core.somaxconn; every connect is accepted right away anyway.
    socket.listen(4096)?;
    Ok(socket.into())
}

fn connect(source: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    bind_address_no_port(&socket)?;
    socket.bind(&SocketAddrV4::new(source, 0).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// `IP_BIND_ADDRESS_NO_PORT`: bind the address now, pick the port at `connect()`.
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, option and pointer to an int of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_connections_it_was_asked_for() {
        let held = open(&HoldOptions {
            connections: 50,
            ports: 3,
            base_port: 0,
            sources: 2,
            threads: 2,
        })
        .unwrap();
        assert_eq!(held.report.connections, 50);
        assert_eq!(held.report.sockets, 103);
        assert_eq!(held.report.ports.len(), 3);
    }
}

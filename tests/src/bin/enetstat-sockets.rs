//! `enetstat-sockets`: makes many sockets in known states and holds them, for the snapshot
//! tests. Runs inside the test's network namespace (`ip netns exec NS enetstat-sockets ...`).
//!
//! ```text
//! enetstat-sockets server --addr IP --listeners N
//! enetstat-sockets client --addr IP --ports P,P,.. --closer P [--established N] [--half-closed N]
//!                         [--orphaned N] [--time-wait N] [--udp N] [--syn-sent-to IP:PORT]
//!                         [--syn-sent N]
//! ```
//!
//! `server` listens on N ports plus one "closer" port, accepts everything and holds every
//! accepted socket (never reads, never closes), except on the closer port, where it reads each
//! connection to EOF and closes it (so the client's side ends in TIME_WAIT).
//!
//! `client` makes, round-robin over the server's ports: ESTABLISHED pairs; half-closed pairs
//! (client FIN_WAIT2, held; server CLOSE_WAIT); orphaned pairs (the client closes after the
//! half-close: FIN_WAIT2 with no holder); TIME_WAIT client sockets (via the closer port);
//! UDP sockets, half of them connected to the other half; and SYN_SENT sockets to an address
//! whose host drops them.
//!
//! Both print one JSON line when ready: `{"pid":..,"ports":[..],"closer":..,"held":[..]}`,
//! where `held` lists `[proto, local, remote]` of every socket this process holds. Then they
//! read commands from stdin, one per line, answering each with one JSON line:
//! `report` (the same object again), `burst N PORT` (client: N connections to PORT, each
//! closed at once with a reset; answers `{"burst":N}`), `more N` (client: N more ESTABLISHED
//! pairs and N more TIME_WAIT sockets, and closes N held pairs with a reset). EOF on stdin ends
//! the process.

use std::{
    io::{self, BufRead, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use clap::{Parser, Subcommand};
use socket2::{Domain, SockAddr, Socket, Type};

#[derive(Parser)]
#[command(name = "enetstat-sockets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Server {
        #[arg(long)]
        addr: IpAddr,
        #[arg(long, default_value_t = 10)]
        listeners: usize,
    },
    Client {
        #[arg(long)]
        addr: IpAddr,
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
        #[arg(long)]
        closer: u16,
        #[arg(long, default_value_t = 0)]
        established: usize,
        #[arg(long, default_value_t = 0)]
        half_closed: usize,
        #[arg(long, default_value_t = 0)]
        orphaned: usize,
        #[arg(long, default_value_t = 0)]
        time_wait: usize,
        #[arg(long, default_value_t = 0)]
        udp: usize,
        #[arg(long)]
        syn_sent_to: Option<SocketAddr>,
        #[arg(long, default_value_t = 0)]
        syn_sent: usize,
    },
}

/// Every socket this process holds, as `[proto, local, remote]`.
#[derive(Default)]
struct Held {
    tcp: Vec<TcpStream>,
    listeners: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    /// Connecting (SYN_SENT) sockets and where they connect to.
    raw: Vec<(Socket, SocketAddr)>,
}

fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

impl Held {
    fn report(&self) -> Vec<[String; 3]> {
        let mut out = Vec::new();
        for s in &self.tcp {
            if let (Ok(l), Ok(r)) = (s.local_addr(), s.peer_addr()) {
                out.push(["tcp".into(), l.to_string(), r.to_string()]);
            }
        }
        for s in &self.listeners {
            if let Ok(l) = s.local_addr() {
                let r = SocketAddr::new(unspecified(l.ip()), 0);
                out.push(["tcp".into(), l.to_string(), r.to_string()]);
            }
        }
        for s in &self.udp {
            if let Ok(l) = s.local_addr() {
                let r = s
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::new(unspecified(l.ip()), 0));
                out.push(["udp".into(), l.to_string(), r.to_string()]);
            }
        }
        for (s, r) in &self.raw {
            if let Some(l) = s.local_addr().ok().and_then(|a| a.as_socket()) {
                out.push(["tcp".into(), l.to_string(), r.to_string()]);
            }
        }
        out
    }
}

fn print(v: serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> ExitCode {
    raise_fd_limit();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server { addr, listeners } => server(addr, listeners),
        Command::Client {
            addr,
            ports,
            closer,
            established,
            half_closed,
            orphaned,
            time_wait,
            udp,
            syn_sent_to,
            syn_sent,
        } => client(
            addr,
            &ports,
            closer,
            [established, half_closed, orphaned, time_wait, udp, syn_sent],
            syn_sent_to,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enetstat-sockets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn listen(addr: IpAddr) -> io::Result<TcpListener> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(addr, 0)),
        Type::STREAM,
        None,
    )?;
    s.bind(&SockAddr::from(SocketAddr::new(addr, 0)))?;
    s.listen(4096)?;
    Ok(s.into())
}

fn server(addr: IpAddr, n: usize) -> io::Result<()> {
    let held = Arc::new(Mutex::new(Held::default()));
    let mut ports = Vec::new();
    for _ in 0..n {
        let l = listen(addr)?;
        ports.push(l.local_addr()?.port());
        let accepting = l.try_clone()?;
        held.lock().unwrap().listeners.push(l);
        let held = Arc::clone(&held);
        thread::spawn(move || {
            for s in accepting.incoming().flatten() {
                held.lock().unwrap().tcp.push(s);
            }
        });
    }
    let closer = listen(addr)?;
    let closer_port = closer.local_addr()?.port();
    let closing = closer.try_clone()?;
    held.lock().unwrap().listeners.push(closer);
    thread::spawn(move || {
        for mut s in closing.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 64];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let report = |held: &Mutex<Held>| {
        serde_json::json!({
            "pid": std::process::id(),
            "ports": ports,
            "closer": closer_port,
            "held": held.lock().unwrap().report(),
        })
    };
    print(report(&held));
    for line in io::stdin().lock().lines() {
        let line = line?;
        if line.trim() == "report" {
            print(report(&held));
        }
    }
    Ok(())
}

fn connect(to: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&to, Duration::from_secs(5))
}

/// Closes with a reset (SO_LINGER 0): the connection leaves no TIME_WAIT behind.
fn reset(s: TcpStream) {
    let s = Socket::from(s);
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

fn client(
    addr: IpAddr,
    ports: &[u16],
    closer: u16,
    [established, half_closed, orphaned, time_wait, udp, syn_sent]: [usize; 6],
    syn_sent_to: Option<SocketAddr>,
) -> io::Result<()> {
    let mut held = Held::default();
    let mut next = 0usize;
    let mut target = || {
        next += 1;
        SocketAddr::new(addr, ports[next % ports.len()])
    };
    for _ in 0..established {
        held.tcp.push(connect(target())?);
    }
    for _ in 0..half_closed {
        let s = connect(target())?;
        s.shutdown(std::net::Shutdown::Write)?;
        held.tcp.push(s);
    }
    for _ in 0..orphaned {
        let s = connect(target())?;
        s.shutdown(std::net::Shutdown::Write)?;
        // Wait until the server's ACK of our FIN took us to FIN_WAIT2, then let go.
        thread::sleep(Duration::from_millis(2));
        drop(s);
    }
    let closer_addr = SocketAddr::new(addr, closer);
    for _ in 0..time_wait {
        drop(connect(closer_addr)?);
    }
    let wild = SocketAddr::new(addr, 0);
    let mut unconnected = Vec::new();
    for _ in 0..udp / 2 {
        let s = UdpSocket::bind(wild)?;
        unconnected.push(s.local_addr()?);
        held.udp.push(s);
    }
    for to in unconnected.iter().take(udp - udp / 2) {
        let s = UdpSocket::bind(wild)?;
        s.connect(to)?;
        held.udp.push(s);
    }
    if let Some(to) = syn_sent_to {
        for _ in 0..syn_sent {
            let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            match s.connect(&to.into()) {
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                other => other?,
            }
            held.raw.push((s, to));
        }
    }
    let report = |held: &Held| {
        serde_json::json!({
            "pid": std::process::id(),
            "ports": ports,
            "closer": closer,
            "held": held.report(),
        })
    };
    print(report(&held));
    for line in io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["report"] => print(report(&held)),
            ["burst", n, port] => {
                let n: usize = n.parse().unwrap_or(0);
                let to = SocketAddr::new(addr, port.parse().unwrap_or(0));
                let mut made = 0;
                for _ in 0..n {
                    if let Ok(s) = connect(to) {
                        reset(s);
                        made += 1;
                    }
                }
                print(serde_json::json!({ "burst": made }));
            }
            ["more", n] => {
                let n: usize = n.parse().unwrap_or(0);
                for _ in 0..n {
                    held.tcp.push(connect(target())?);
                    drop(connect(closer_addr)?);
                }
                for _ in 0..n.min(held.tcp.len()) {
                    reset(held.tcp.remove(0));
                }
                print(report(&held));
            }
            _ => print(serde_json::json!({ "error": line })),
        }
    }
    // Keep the sockets open until stdin closes.
    let _ = held.tcp.first().map(|s| s.as_raw_fd());
    Ok(())
}

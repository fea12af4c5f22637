//! The traffic the checks watch: connections, a refused connect and a 1 MiB transfer between
//! helper processes, each on a port reserved for it, and what the checks know about each.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use enetstat_tests::scenario::Child;
use enetstat_tests::{Peer, PortReservation};

/// Bytes each way in the transfer.
pub(crate) const MIB: u64 = 1_048_576;

/// `enetstat-peer connect` exits with this when the connection is refused.
const EXIT_REFUSED: i32 = 3;

/// How long a helper may take to say its next line (TCG is slow).
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A helper binary: `$VAR`, else next to this executable.
fn helper(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("cannot find this executable");
    exe.with_file_name(name)
}

/// One connection between two `enetstat-peer`s: what the test knows about it.
pub(crate) struct Connection {
    pub(crate) server: SocketAddr,
    pub(crate) server_pid: u32,
    pub(crate) client_pid: u32,
    pub(crate) client_port: u16,
}

/// The refused connect.
pub(crate) struct Refused {
    pub(crate) closed: SocketAddr,
    pub(crate) client_pid: u32,
}

/// The 1 MiB transfer between two `enetstat-ender`s.
pub(crate) struct Transfer {
    pub(crate) server: SocketAddr,
    pub(crate) server_pid: u32,
    pub(crate) client_pid: u32,
    pub(crate) client_port: u16,
}

/// `serve` and `connect` on a reserved port of `ip`. The reservation is returned so that it
/// lives until the tracers stop.
pub(crate) fn connection(ip: IpAddr) -> (Connection, PortReservation) {
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let (mut serve, listening) = Peer::serve(server, 1);
    assert_eq!(listening, server.port(), "the peer listens elsewhere");
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();
    let connection = Connection {
        server,
        server_pid: serve.pid(),
        client_pid: client.pid(),
        client_port,
    };
    (connection, reservation)
}

/// [`connection`] on a port already reserved.
pub(crate) fn connection_on(reservation: PortReservation) -> (Connection, PortReservation) {
    let server = reservation.addr();
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();
    let c = Connection {
        server,
        server_pid: serve.pid(),
        client_pid: client.pid(),
        client_port,
    };
    (c, reservation)
}

/// A pre-fork server: the process that made the listener forks the one that accepts.
pub(crate) struct Prefork {
    pub(crate) server: SocketAddr,
    pub(crate) listener_pid: u32,
    pub(crate) acceptor_pid: u32,
    pub(crate) client_port: u16,
}

/// `serve --fork`, and a client (this process) that closes only once the acceptor has
/// accepted: the server side's CLOSE_WAIT, made in softirq, then comes after the accept.
pub(crate) fn prefork(ip: IpAddr) -> (Prefork, PortReservation) {
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let mut serve = Peer::spawn(&[
        "serve",
        "--addr",
        &server.to_string(),
        "--accept",
        "1",
        "--fork",
    ]);
    serve.wait_line("listening ");
    let acceptor_pid: u32 = serve.wait_line("acceptor ").parse().expect("a pid");
    let client = std::net::TcpStream::connect(server).expect("cannot connect to the acceptor");
    let client_port = client.local_addr().expect("a local address").port();
    let accepted = serve.wait_line("accepted ");
    assert_eq!(
        accepted,
        client_port.to_string(),
        "the acceptor took another connection"
    );
    drop(client);
    serve.wait_success();
    let p = Prefork {
        server,
        listener_pid: serve.pid(),
        acceptor_pid,
        client_port,
    };
    (p, reservation)
}

pub(crate) fn refused(ip: IpAddr) -> (Refused, PortReservation) {
    let reservation = PortReservation::new(ip);
    let closed = reservation.addr();
    let mut client = Peer::connect(closed, 1);
    let status = client.wait();
    assert_eq!(
        status.code(),
        Some(EXIT_REFUSED),
        "connect to {closed} should be refused"
    );
    let refused = Refused {
        closed,
        client_pid: client.pid(),
    };
    (refused, reservation)
}

fn expect_line(child: &mut Child, prefix: &str) -> String {
    let (_, line) = child.line(CHILD_TIMEOUT);
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}: expected `{prefix}...`, got `{line}`", child.name))
        .trim()
        .to_owned()
}

pub(crate) fn transfer(ip: IpAddr) -> (Transfer, PortReservation) {
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let ender = helper("ENETSTAT_ENDER_BIN", "enetstat-ender");
    let bytes = MIB.to_string();
    let mut cmd = Command::new(&ender);
    cmd.args(["transfer-serve", "--addr", &server.to_string()])
        .args(["--bytes", &bytes]);
    let mut serve = Child::spawn(cmd, "enetstat-ender transfer-serve");
    expect_line(&mut serve, "listening ");
    let mut cmd = Command::new(&ender);
    cmd.args(["transfer-connect", "--addr", &server.to_string()])
        .args(["--bytes", &bytes]);
    let mut client = Child::spawn(cmd, "enetstat-ender transfer-connect");
    let client_port = expect_line(&mut client, "connected ")
        .parse()
        .expect("a port");
    expect_line(&mut client, "done");
    expect_line(&mut serve, "done");
    let transfer = Transfer {
        server,
        server_pid: serve.pid(),
        client_pid: client.pid(),
        client_port,
    };
    (transfer, reservation)
}

//! Holding a port for the whole of a test.

use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A TCP port bound (never listening) for as long as this value lives.
///
/// The socket sets `SO_REUSEADDR`, as std's `TcpListener::bind` does, so a peer can still bind
/// and listen on the same address and port; while the reservation lives, the kernel gives the
/// port to no other socket: no other `bind(0)` and no `connect()` autobind. So a tracer
/// filtered by this port sees only the test's own sockets, even after the peer's listener has
/// closed.
///
/// Nothing connects to a reservation, so connecting to its port is refused: that is also how
/// the refused-connect test gets a closed port.
///
/// Drop it only after the tracer has stopped: closing a bound, never-connected socket makes
/// the kernel report a CLOSE->CLOSE transition on its port.
///
/// A port no socket holds may still be named by others: the TIME_WAIT sockets an earlier
/// test's clients left, for a minute, with the port as their remote end. A filter by port
/// then matched 20 of them beside the test's own (a fresh-clone CI run), so a port that any
/// socket names, at either end, is passed over.
pub struct PortReservation {
    socket: Socket,
    addr: SocketAddr,
}

impl PortReservation {
    /// Binds `ip:0` and keeps the port the kernel picked.
    ///
    /// # Panics
    ///
    /// When the socket cannot be made or bound.
    pub fn new(ip: IpAddr) -> Self {
        // Held until one is kept, so the kernel does not hand the same port out again.
        let mut passed_over = Vec::new();
        loop {
            let (socket, addr) = bind_any(ip);
            if passed_over.len() >= MAX_PASSED_OVER || !named_by_any_socket(addr.port()) {
                return PortReservation { socket, addr };
            }
            passed_over.push(socket);
        }
    }

    /// The reserved address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Gives the port back (also what dropping does).
    pub fn release(self) {
        drop(self.socket);
    }
}

/// How many ports [`PortReservation::new`] passes over before it takes one anyway.
const MAX_PASSED_OVER: usize = 64;

/// A socket bound to `ip:0` with `SO_REUSEADDR`, and the address the kernel gave it.
fn bind_any(ip: IpAddr) -> (Socket, SocketAddr) {
    let wanted = SocketAddr::new(ip, 0);
    let socket = Socket::new(Domain::for_address(wanted), Type::STREAM, None)
        .expect("cannot create a TCP socket to reserve a port");
    socket
        .set_reuse_address(true)
        .expect("cannot set SO_REUSEADDR");
    socket
        .bind(&wanted.into())
        .unwrap_or_else(|e| panic!("cannot bind {wanted}: {e}"));
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("cannot read the reserved port");
    (socket, addr)
}

/// Whether a TCP socket of this network namespace, in any state, has `port` at either end.
/// (A bound socket that neither listens nor connects, as a reservation, is in none of the
/// kernel's tables and does not count.)
fn named_by_any_socket(port: u16) -> bool {
    let mut entries = procfs::net::tcp().unwrap_or_default();
    // IPv6 may be disabled, and then there is no tcp6 table.
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    entries
        .iter()
        .any(|e| e.local_address.port() == port || e.remote_address.port() == port)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_port_left_in_a_clients_time_wait_is_passed_over() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (served, _) = listener.accept().unwrap();
        // The client closes first: its socket stays in TIME_WAIT, naming `port` remotely,
        // after the listener and the served socket are gone.
        drop(client);
        drop(served);
        drop(listener);
        assert!(
            named_by_any_socket(port),
            "the client's TIME_WAIT names the port"
        );
        let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(reservation.port(), port);
        assert!(!named_by_any_socket(reservation.port()));
    }
}

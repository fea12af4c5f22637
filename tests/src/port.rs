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
        PortReservation { socket, addr }
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

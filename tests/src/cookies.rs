//! The cookie on a traced transition is the socket's own, the one the kernel's sock_diag
//! reports for it (`ss -e` prints it as `sk:`): an accepted connection is held open, its two
//! sockets' cookies are read from `ss`, and every line of each socket, from the accepted one's
//! LISTEN>SYN_RECV on, must carry it. One definition for the host suite and the kernel matrix.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::{Peer, PortReservation, Signal, State, Tracer, Transition};

/// The cookie `ss -tHne` reports for the TCP socket from `local` to `remote`, if one is there.
pub fn ss_cookie(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-tHne", "state", "established"])
        .arg(format!("sport = :{}", local.port()))
        .output()
        .expect("cannot run ss");
    assert!(out.status.success(), "ss -tHne failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ends = fields.get(2..4)?;
        if ends != [local.to_string(), remote.to_string()] {
            return None;
        }
        let sk = fields.iter().find_map(|f| f.strip_prefix("sk:"))?;
        u64::from_str_radix(sk, 16).ok()
    })
}

/// Holds one connection to an `enetstat-peer serve` on `ip` open under `enetstat watch`
/// (in `mode`, forced with `env` where given), reads both sockets' cookies from `ss`, closes
/// it, and checks every line of both sockets against them:
///
/// - `tp_btf`: `cookie` and `id` equal the socket's sock_diag cookie on every line, the
///   accepted socket's LISTEN>SYN_RECV included;
/// - `tp_btf_cookie_field`: a socket born while tracing has one `id` on every line, and where
///   a line has a `cookie`, it is sock_diag's;
/// - `tracepoint`: no cookie on any line, one `id` per socket.
///
/// # Panics
///
/// When any of that does not hold.
pub fn accepted_cookies_are_sock_diags(ip: IpAddr, mode: &str, env: &[(&str, &str)]) {
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let port = server.port().to_string();
    let tracer = Tracer::start_with_env(&["watch", "-o", "json", "--port", &port], env);
    let (mut serve, _) = Peer::serve(server, 1);
    let mut stream = TcpStream::connect(server).expect("cannot connect to enetstat-peer serve");
    let client = stream.local_addr().expect("the client's address");
    // The listener's CLOSE>LISTEN, the client's two and the accepted socket's two.
    tracer.wait_for_lines(5, Duration::from_secs(15));
    let server_cookie = ss_cookie(server, client);
    let client_cookie = ss_cookie(client, server);
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("cannot shut the client down");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    drop(stream);
    serve.wait_success();
    tracer.wait_for_lines(12, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let transitions = finished.transitions();
    reservation.release();

    let (Some(server_cookie), Some(client_cookie)) = (server_cookie, client_cookie) else {
        panic!(
            "ss -tHne did not show the held connection {client} -> {server} \
             (server side {server_cookie:?}, client side {client_cookie:?})"
        );
    };
    let sides = [
        ("accepted", server, client, server_cookie),
        ("client", client, server, client_cookie),
    ];
    for (what, local, remote, cookie) in sides {
        let lines: Vec<&Transition> = transitions
            .iter()
            .filter(|t| t.lport == Some(local.port()) && t.rport == Some(remote.port()))
            .collect();
        let all = || {
            lines
                .iter()
                .map(|t| t.raw.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            lines.len() >= 4,
            "{mode}: the {what} socket's lines ({local} -> {remote}):\n{}",
            all()
        );
        if what == "accepted" {
            assert_eq!(
                lines[0].states(),
                (State::Listen, State::SynRecv),
                "{mode}: the accepted socket's first line:\n{}",
                all()
            );
        }
        let id = lines[0].cookie;
        for t in &lines {
            assert_eq!(t.cookie, id, "{mode}: one id per socket:\n{}", all());
            match mode {
                "tp_btf" => {
                    assert_eq!(
                        (t.cookie, t.real_cookie),
                        (cookie, Some(cookie)),
                        "tp_btf: the {what} socket's sock_diag cookie is {cookie}:\n{t}"
                    );
                }
                "tracepoint" => {
                    assert_eq!(t.real_cookie, None, "tracepoint: no cookie:\n{t}");
                }
                _ => {
                    assert!(
                        t.real_cookie.is_none_or(|c| c == cookie),
                        "{mode}: a cookie shown is the {what} socket's sock_diag one, \
                         {cookie}:\n{t}"
                    );
                }
            }
        }
    }
}

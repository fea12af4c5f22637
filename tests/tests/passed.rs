//! A socket passed on after accept (issue 11): over a Unix socket with SCM_RIGHTS, or to a
//! child forked after accept, the sender closing its copy. The holder that acts on it owns it
//! from its act on: its close(), in whichever order the two ends close. What the peer does
//! before the new holder acts (the client's FIN making CLOSE_WAIT, in softirq) still names
//! the process that accepted it: the README's owner table says so, and this file pins it.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use enetstat_tests::{Signal, State, Tracer, Transition, life::Life, require_root};

/// Who closes the passed socket first.
#[derive(Clone, Copy, Debug, PartialEq)]
enum First {
    /// The new holder writes a byte and closes it; the client then reads to the end.
    Holder,
    /// The client closes; the new holder reads to the end, then closes.
    Client,
}

/// What the forked holder does with `fd` (an accepted socket it got somehow), then it waits,
/// alive, to be killed: it says `r` on `unix` when it holds the socket. Only system calls:
/// the test process has threads.
///
/// # Safety
///
/// To be called in a freshly forked child only.
unsafe fn hold(unix: RawFd, fd: RawFd, first: First) -> ! {
    // SAFETY: plain system calls on descriptors this process holds.
    unsafe {
        libc::write(unix, b"r".as_ptr().cast(), 1);
        if first == First::Holder {
            libc::write(fd, b"x".as_ptr().cast(), 1);
        } else {
            let mut buf = [0u8; 64];
            while libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
        }
        libc::close(fd);
        libc::pause();
        libc::_exit(0)
    }
}

/// Forks a child that receives a descriptor over `unix` (SCM_RIGHTS) and [`hold`]s it.
fn receiver(unix: &UnixStream, first: First) -> u32 {
    let fd = unix.as_raw_fd();
    // SAFETY: fork in a multi-threaded process; the child only makes system calls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: recvmsg into buffers on this stack, then system calls only.
        unsafe {
            let mut byte = [0u8; 1];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: 1,
            };
            let mut control = [0u64; 8];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            if libc::recvmsg(fd, &mut msg, 0) <= 0 {
                libc::_exit(1);
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
                libc::_exit(2);
            }
            let passed = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            hold(fd, passed, first)
        }
    }
    pid as u32
}

/// Sends `fd` over `unix` with SCM_RIGHTS.
fn send_fd(unix: &UnixStream, fd: RawFd) {
    let mut byte = *b"f";
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: a message built on this stack; CMSG_* stay within `control`.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        libc::sendmsg(unix.as_raw_fd(), &msg, 0)
    };
    assert_eq!(sent, 1, "sendmsg: {}", std::io::Error::last_os_error());
}

/// Forks a child that [`hold`]s the accepted `fd` it inherits, after closing its copy of the
/// client's socket `client` (this process is the client too).
fn forked_holder(unix: &UnixStream, fd: RawFd, client: RawFd, first: First) -> u32 {
    let unix = unix.as_raw_fd();
    // SAFETY: fork in a multi-threaded process; the child only makes system calls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: in the freshly forked child.
        unsafe {
            libc::close(client);
            hold(unix, fd, first)
        }
    }
    pid as u32
}

fn kill_and_reap(pid: u32) {
    // SAFETY: our own child, not yet reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
    }
}

/// How the socket goes to its new holder.
#[derive(Clone, Copy, Debug)]
enum Pass {
    ScmRights,
    Fork,
}

/// One connection: accepted here, passed on, the sender's copy closed, then closed in the
/// `first` order. Returns the client's port and the new holder's pid; the holder is killed
/// (after the connection ended).
fn one(listener: &TcpListener, pass: Pass, first: First) -> (u16, u32) {
    let (ours, theirs) = UnixStream::pair().expect("a Unix socket pair");
    let port = listener.local_addr().unwrap().port();
    // The receiver is forked before the connection exists: it gets the socket only by the
    // message.
    let receiver = matches!(pass, Pass::ScmRights).then(|| receiver(&theirs, first));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let (conn, _) = listener.accept().unwrap();
    let holder = match receiver {
        Some(pid) => {
            send_fd(&ours, conn.as_raw_fd());
            pid
        }
        None => forked_holder(&theirs, conn.as_raw_fd(), client.as_raw_fd(), first),
    };
    // The sender lets go of its copy before anything else happens to the socket.
    drop(conn);
    let mut ready = [0u8; 1];
    (&ours).read_exact(&mut ready).expect("the holder's `r`");
    match first {
        First::Holder => {
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
        }
        First::Client => {
            // Only once the holder waits in read(): its FIN comes to a held socket.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(client);
    // The holder's last transitions, before it goes.
    std::thread::sleep(Duration::from_millis(300));
    kill_and_reap(holder);
    (client_port, holder)
}

fn owner_exited(t: &Transition) -> bool {
    let v: serde_json::Value = serde_json::from_str(&t.raw).unwrap();
    v["owner_exited"].as_bool().unwrap_or(false)
}

#[test]
fn a_passed_socket_is_owned_by_the_holder_that_acts_on_it_in_either_close_order() {
    const TEST: &str =
        "a_passed_socket_is_owned_by_the_holder_that_acts_on_it_in_either_close_order";
    if !require_root(TEST) {
        return;
    }
    let me = std::process::id();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = port.to_string();
    let watch = Tracer::start(&["watch", "-o", "json", "--port", &p]);
    let life = Tracer::start(&["life", "-o", "json", "--port", &p]);

    let cases = [
        (Pass::ScmRights, First::Holder),
        (Pass::ScmRights, First::Client),
        (Pass::Fork, First::Client),
    ];
    let done: Vec<(Pass, First, u16, u32)> = cases
        .iter()
        .map(|&(pass, first)| {
            let (client_port, holder) = one(&listener, pass, first);
            (pass, first, client_port, holder)
        })
        .collect();

    watch.settle(Duration::from_secs(1));
    life.settle(Duration::from_millis(300));
    let watch = watch.stop(Signal::Int);
    let life = life.stop(Signal::Int);
    watch.assert_success();
    life.assert_success();
    let transitions = watch.transitions();
    let lives: Vec<Life> = life
        .stdout
        .iter()
        .map(|l| Life::parse(l).unwrap())
        .filter(|l| l.lport == Some(port))
        .collect();

    for (pass, first, client_port, holder) in done {
        let case = format!("{pass:?}, {first:?} closes first (holder {holder}, acceptor {me})");
        let lines: Vec<&Transition> = transitions
            .iter()
            .filter(|t| t.lport == Some(port) && t.rport == Some(client_port))
            .collect();
        let states: Vec<(State, State)> = lines.iter().map(|t| t.states()).collect();
        let expected: &[(State, State)] = match first {
            First::Holder => &[
                (State::Listen, State::SynRecv),
                (State::SynRecv, State::Established),
                (State::Established, State::FinWait1),
                (State::FinWait1, State::FinWait2),
                (State::FinWait2, State::Close),
            ],
            First::Client => &[
                (State::Listen, State::SynRecv),
                (State::SynRecv, State::Established),
                (State::Established, State::CloseWait),
                (State::CloseWait, State::LastAck),
                (State::LastAck, State::Close),
            ],
        };
        assert_eq!(states, expected, "{case}: {lines:#?}");
        for t in &lines {
            let want = match t.states() {
                // Before accept, the listener's holder; until the holder acts, the acceptor.
                (State::Listen | State::SynRecv, _) | (State::Established, State::CloseWait) => me,
                // From the holder's close() on, the holder.
                _ => holder,
            };
            assert_eq!(t.pid, Some(want), "{case}: {t}");
            assert!(!owner_exited(t), "{case}: both were alive: {t}");
        }
        let records: Vec<&Life> = lives
            .iter()
            .filter(|l| l.rport == Some(client_port))
            .collect();
        let [record] = records.as_slice() else {
            panic!(
                "{case}: one life record, not {}: {records:#?}",
                records.len()
            );
        };
        assert_eq!(record.pid, Some(holder), "{case}: {}", record.raw);
        assert!(record.complete, "{case}: {}", record.raw);
    }
}

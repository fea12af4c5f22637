//! Hostile input (issue 13): nothing a local user or a bad input can do takes the daemon down.
//! Each test reproduces one hostile case and checks what users see: the daemon still answers
//! `stats`, refusals are clear and counted, other subscribers get every event, files have the
//! right modes, outputs carry no raw control characters.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        net::UnixListener,
    },
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use enetstat::{filter::MAX_LEN, render::escape::needs_escape};
use enetstat_tests::{
    PortReservation, READY_PREFIX, Tmux,
    daemon::{Conn, Daemon, TempDir},
    enetstat_bin, require_program, require_root, under_ci,
};
use serde_json::{Value, json};

fn stats(socket: &Path) -> Value {
    Conn::connect(socket).request(&json!({"v":1,"op":"stats"}))["stats"].clone()
}

fn enetstat(args: &[&str]) -> std::process::Output {
    Command::new(enetstat_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run enetstat")
}

/// Characters that must never reach a terminal raw (the library's own rule,
/// [`needs_escape`]), line feeds aside.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c != '\n' && needs_escape(c))
        .collect()
}

/// A command (any: `prlimit`, `sh -c`) that runs `enetstat daemon`, killed on drop.
struct Spawned {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `cmd` and waits for the daemon's ready line.
    fn daemon(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the daemon");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stderr.lock().unwrap().contains(READY_PREFIX) {
            assert!(
                Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "the daemon did not start: {}",
                stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
        Spawned { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, and the exit status and stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill() on our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        thread::sleep(Duration::from_millis(100));
        (status, self.stderr())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon_command(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(enetstat_bin());
    cmd.args(["daemon", "--socket", socket.to_str().unwrap()])
        .args(args);
    cmd
}

#[test]
fn filters_too_deep_or_too_long_are_refused_everywhere_and_counted() {
    // The command line first: a clear error, not a stack overflow (it was exit 134).
    for (filter, says) in [
        (
            format!("{}state close{}", "(".repeat(10_000), ")".repeat(10_000)),
            "bytes long",
        ),
        (format!("{}state close", "!".repeat(50_000)), "bytes long"),
        (
            format!("{}state close{}", "(".repeat(100), ")".repeat(100)),
            "nests",
        ),
        (format!("{}state close", "not ".repeat(65)), "nests"),
        ("dport > 65535".to_owned(), "can never match"),
    ] {
        let out = enetstat(&["--standalone", "watch", &filter]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {stderr}",
            &filter[..20.min(filter.len())]
        );
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.len() < 1000,
            "the error quotes a window, not the whole filter: {stderr}"
        );
    }

    if !require_root("filters_too_deep_or_too_long_are_refused_everywhere_and_counted") {
        return;
    }
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = PortReservation::new(lo);
    let metrics = port.addr().to_string();
    let daemon = Daemon::start("deep", &["--metrics", &metrics]);
    let mut conn = daemon.connect();
    // 5 KB of nesting crashed the daemon (a worker's stack overflowed): now it is too long.
    let deep = format!("{}state close{}", "(".repeat(2_500), ")".repeat(2_500));
    let r = conn.request(&json!({"v":1,"op":"subscribe","filter":deep}));
    assert!(
        r["error"].as_str().unwrap().contains("5011 bytes long"),
        "{r}"
    );
    // Shorter, but deeper than 64.
    let deep = format!("{}state close{}", "(".repeat(65), ")".repeat(65));
    let r = conn.request(&json!({"v":1,"op":"subscribe","filter":deep}));
    assert!(r["error"].as_str().unwrap().contains("nests"), "{r}");
    let r = conn.request(&json!({"v":1,"op":"snapshot","filter":format!("{}x", "!".repeat(100))}));
    assert!(r["error"].as_str().unwrap().contains("nests"), "{r}");
    let r = conn.request(&json!({"v":1,"op":"snapshot","filter":"!".repeat(50_000)}));
    assert!(r["error"].as_str().unwrap().contains("bytes long"), "{r}");
    // A wrong filter is not a limit: refused, not counted.
    let r = conn.request(&json!({"v":1,"op":"snapshot","filter":"dport = banana"}));
    assert!(r["error"].as_str().unwrap().contains("unknown port"), "{r}");
    // Duplicate keys: refused, whichever a parser would pick.
    conn.send_raw(b"{\"v\":1,\"op\":\"stats\",\"op\":\"snapshot\"}\n");
    let r = conn.json();
    assert!(
        r["error"].as_str().unwrap().contains("appears twice"),
        "{r}"
    );

    // The same connection still works, and the daemon counted the four refused for a limit
    // (too long twice, too deep twice; not the wrong filter nor the duplicate key).
    let s = conn.request(&json!({"v":1,"op":"stats"}))["stats"].clone();
    assert_eq!(s["filters_refused"], 4, "{s}");
    let body = http(port.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        body.contains("enetstat_refused_total{what=\"filter\"} 4"),
        "{body}"
    );
    let ok = conn.request(&json!({"v":1,"op":"subscribe","filter":"state close"}));
    assert_eq!(ok["ok"], true, "{ok}");
}

/// Sends `request` and reads the whole answer.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The soft and hard "Max open files" of a process.
fn nofile(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn floods_of_clients_and_metrics_connections_are_refused_and_the_daemon_keeps_serving() {
    if !require_root(
        "floods_of_clients_and_metrics_connections_are_refused_and_the_daemon_keeps_serving",
    ) {
        return;
    }
    let dir = TempDir::new("flood");
    let socket = dir.path.join("enetstat.sock");
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = PortReservation::new(lo);
    let metrics = port.addr().to_string();
    // A soft limit of 200 (hard 400), as a default soft limit of 1024 was for 1,100 clients.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=200:400", "--"])
        .arg(enetstat_bin())
        .args([
            "daemon",
            "--socket",
            socket.to_str().unwrap(),
            "--max-clients",
            "1000",
            "--max-subscribers",
            "3",
            "--max-metrics-connections",
            "4",
            "--metrics",
            &metrics,
            "--reconcile",
            "0.2",
        ]);
    let d = Spawned::daemon(cmd);
    assert_eq!(
        nofile(d.pid()),
        (400, 400),
        "the soft limit is raised to the hard one"
    );
    assert!(
        d.stderr().contains("RLIMIT_NOFILE) is 400"),
        "it says it serves fewer clients: {}",
        d.stderr()
    );
    let s = stats(&socket);
    let max = s["max_clients"].as_u64().unwrap() as usize;
    assert!(max < 400 && max > 100, "{s}");

    // Every client the cap allows, each answered, then 50 more, each refused in words.
    let mut held: Vec<Conn> = (0..max)
        .map(|_| {
            let mut c = Conn::connect(&socket);
            assert!(c.request(&json!({"v":1,"op":"stats"}))["stats"].is_object());
            c
        })
        .collect();
    for _ in 0..50 {
        let mut c = Conn::connect(&socket);
        let line = c.line().expect("a refusal, not silence");
        assert!(line.contains("too many clients"), "{line}");
        assert_eq!(c.line(), None, "closed after the refusal");
    }
    // Metrics: the four allowed hang without a request; 300 more get 503 and go.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(port.addr()).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(200));
    for _ in 0..300 {
        let r = http(port.addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    }
    drop(idle);
    // Subscribers: three of the held clients subscribe; a fourth is refused.
    for c in held.iter_mut().take(3) {
        assert_eq!(c.request(&json!({"v":1,"op":"subscribe"}))["ok"], true);
    }
    let r = held[3].request(&json!({"v":1,"op":"subscribe"}));
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("too many subscribers"),
        "{r}"
    );

    // Reconciliation runs all along (every 0.2 s) and never fails; the daemon answers. Asked
    // on a connection it holds (a new one would be one too many) until five more ran.
    let reconciliations = |c: &mut Conn| {
        let s = c.request(&json!({"v":1,"op":"stats"}))["stats"].clone();
        (s["reconciliations"].as_u64().unwrap(), s)
    };
    let (from, _) = reconciliations(&mut held[4]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let (now, s) = reconciliations(&mut held[4]);
        if now >= from + 5 {
            break s;
        }
        assert!(Instant::now() < deadline, "no reconciliation for 60 s: {s}");
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["clients_refused"], 50, "{s}");
    assert_eq!(s["subscribers_refused"], 1, "{s}");
    assert_eq!(s["metrics_connections_refused"], 300, "{s}");
    assert_eq!(s["reconcile_failures"], 0, "{s}");
    assert!(s["uptime_s"].as_f64().unwrap() > 0.0, "{s}");
    let body = http(port.addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(
        body.contains("enetstat_refused_total{what=\"client\"} 50"),
        "{body}"
    );
    assert!(
        body.contains("enetstat_refused_total{what=\"metrics_connection\"} 300"),
        "{body}"
    );
    assert!(
        body.contains("enetstat_refused_total{what=\"subscriber\"} 1"),
        "{body}"
    );
    drop(held);
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn metrics_requests_with_bare_lf_are_answered_and_huge_heads_get_431() {
    if !require_root("metrics_requests_with_bare_lf_are_answered_and_huge_heads_get_431") {
        return;
    }
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = PortReservation::new(lo);
    let metrics = port.addr().to_string();
    let daemon = Daemon::start("http", &["--metrics", &metrics]);
    let r = http(port.addr(), b"GET /metrics HTTP/1.0\n\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("enetstat_table_sockets"), "{r}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    let mut s = TcpStream::connect(port.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The daemon answers once it has read 16 KiB, and may close before taking the rest.
    let _ = s.write_all(&huge);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let r = String::from_utf8_lossy(&out);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    assert!(stats(&daemon.socket)["uptime_s"].is_number());
}

/// The mode bits of `p`.
fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn directories_sockets_and_logs_get_their_modes_whatever_the_umask() {
    if !require_root("directories_sockets_and_logs_get_their_modes_whatever_the_umask") {
        return;
    }
    for (umask, group) in [("000", None), ("077", Some(4u32))] {
        let dir = TempDir::new("umask");
        let socket = dir.path.join("a").join("b").join("e.sock");
        let log = dir.path.join("events.ndjson");
        let mut line = format!(
            "umask {umask}; exec \"$0\" daemon --socket {} --event-log {}",
            socket.display(),
            log.display()
        );
        if let Some(g) = group {
            line.push_str(&format!(" --socket-group {g}"));
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(line).arg(enetstat_bin());
        let d = Spawned::daemon(cmd);
        for sub in [dir.path.join("a"), dir.path.join("a").join("b")] {
            assert_eq!(mode(&sub), 0o750, "umask {umask}: {}", sub.display());
            let gid = std::fs::metadata(&sub).unwrap().gid();
            assert_eq!(gid, group.unwrap_or(0), "umask {umask}: {}", sub.display());
        }
        assert_eq!(mode(&socket), 0o660, "umask {umask}");
        assert_eq!(mode(&log), 0o640, "umask {umask}");
        let (status, stderr) = d.stop();
        assert!(status.success(), "{stderr}");
        assert!(!socket.exists(), "the socket is left behind: {stderr}");
    }
}

#[test]
fn a_socket_directory_another_user_could_write_is_refused_or_tightened() {
    if !require_root("a_socket_directory_another_user_could_write_is_refused_or_tightened") {
        return;
    }
    let dir = TempDir::new("opendir");
    // A directory that holds something else, so it is not the daemon's to take: whoever may
    // write there (or owns it) could replace the socket with a fake daemon.
    let make = |name: &str, mode: u32, owner: u32| {
        let d = dir.path.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("other"), "").unwrap();
        std::os::unix::fs::chown(&d, Some(owner), None).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    };
    for (run, socket, says) in [
        (
            make("world", 0o777, 0),
            "enetstat.sock",
            "(mode 0777) may be written by its group and every user, without the sticky bit",
        ),
        (
            make("group", 0o770, 0),
            "enetstat.sock",
            "(mode 0770) may be written by its group, without the sticky bit",
        ),
        (
            make("theirs", 0o755, 65534),
            "enetstat.sock",
            "belongs to uid 65534, another user",
        ),
        // Above the socket's directory: it could be renamed away and replaced.
        (
            make("above", 0o757, 0),
            "inner/enetstat.sock",
            "(mode 0757) may be written by every user, without the sticky bit",
        ),
    ] {
        let socket = run.join(socket);
        let out = enetstat(&["daemon", "--socket", socket.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot set up the socket {}: the directory {} {says}",
                socket.display(),
                run.display()
            )),
            "{stderr}"
        );
        let fix = if says.contains("belongs") {
            "give --socket a path in a directory of root's or of this daemon's own".to_owned()
        } else {
            format!("`chmod go-w {}`", run.display())
        };
        assert!(stderr.contains(&fix), "{stderr}");
        assert!(!socket.exists(), "{stderr}");
        assert!(!run.join("inner").exists(), "nothing made: {stderr}");
    }
    // Sticky (as /tmp): others may write, but not remove or rename the socket. Served.
    let sticky = make("sticky", 0o1777, 0);
    let d = Spawned::daemon(daemon_command(&sticky.join("enetstat.sock"), &[]));
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
    // The daemon's own (nothing but its socket in it), left wide open by another user: taken
    // and tightened, with a word.
    let own = dir.path.join("own");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(65534), None).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = Spawned::daemon(daemon_command(&own.join("enetstat.sock"), &[]));
    assert_eq!(mode(&own), 0o755);
    assert_eq!(std::fs::metadata(&own).unwrap().uid(), 0);
    assert!(
        d.stderr().contains(&format!(
            "{} was mode 0777: other users could have replaced the socket in it",
            own.display()
        )),
        "{}",
        d.stderr()
    );
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
}

/// `PATH.n`, the `n`th rotated event log.
fn rotated(path: &Path, n: u32) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

#[test]
fn an_event_log_left_world_readable_is_made_0640_and_stays_so_through_rotation() {
    if !require_root("an_event_log_left_world_readable_is_made_0640_and_stays_so_through_rotation")
    {
        return;
    }
    let port = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = port.port();
    port.release();
    let dir = TempDir::new("oldlog");
    // As an older version left it under umask 022.
    let log = dir.path.join("events.ndjson");
    std::fs::write(&log, "{}\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let socket = dir.path.join("enetstat.sock");
    let args = [
        "--event-log",
        log.to_str().unwrap(),
        "--event-log-size",
        "4K",
        "--event-log-keep",
        "2",
    ];
    let d = Spawned::daemon(daemon_command(&socket, &args));
    assert_eq!(mode(&log), 0o640, "at start");
    // Enough transitions to rotate more than twice (4 KiB is a dozen lines).
    churn(p, 50);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rotated(&log, 2).exists() {
        assert!(
            Instant::now() < deadline,
            "never rotated twice: {}",
            d.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Stopped first: a rotation in flight renames the log before it opens the next one.
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
    for file in [log.clone(), rotated(&log, 1), rotated(&log, 2)] {
        assert_eq!(mode(&file), 0o640, "{}", file.display());
    }
}

#[test]
fn the_event_log_never_follows_a_link_nor_takes_another_users_file() {
    if !require_root("the_event_log_never_follows_a_link_nor_takes_another_users_file") {
        return;
    }
    let dir = TempDir::new("evlog");
    // A directory anyone may write to, as /tmp.
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.path.join("victim");
    std::fs::write(&victim, "root's\n").unwrap();
    let link = dir.path.join("link.ndjson");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let theirs = dir.path.join("theirs.ndjson");
    std::fs::write(&theirs, "").unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    for (log, says) in [(&link, "symbolic link"), (&theirs, "belongs to uid 65534")] {
        let socket = dir.path.join("e.sock");
        let out = enetstat(&[
            "daemon",
            "--socket",
            socket.to_str().unwrap(),
            "--event-log",
            log.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!socket.exists());
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's\n");
}

/// A fake daemon on `socket` that answers every request line with the next of `replies`.
/// A fake daemon on `socket`: it answers `stats` requests (the client asks for the daemon's
/// counters on a connection of its own) with zero counters, and the first other request with
/// `replies`, then stops accepting.
fn fake_daemon(socket: &Path, replies: Vec<&'static str>) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    thread::spawn(move || {
        let mut handlers = Vec::new();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while done_rx.try_recv().is_err() && Instant::now() < deadline {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            let replies = replies.clone();
            let done_tx = done_tx.clone();
            handlers.push(thread::spawn(move || {
                let mut rd = BufReader::new(stream.try_clone().unwrap());
                let mut wr = stream;
                let mut line = String::new();
                while rd.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.contains(r#""op":"stats""#) {
                        let _ = wr.write_all(b"{\"v\":1,\"stats\":{\"kernel_seen\":0}}\n");
                        line.clear();
                        continue;
                    }
                    for r in &replies {
                        let _ = wr.write_all(r.as_bytes());
                    }
                    let _ = done_tx.send(());
                    return;
                }
            }));
        }
        for h in handlers {
            let _ = h.join();
        }
    })
}

#[test]
fn the_client_prints_a_fake_daemons_bytes_terminal_safe() {
    let dir = TempDir::new("fake");
    let socket = dir.path.join("fake.sock");
    let evil = "{\"v\":1,\"output\":\"x\\u001b]0;owned\\u0007\\r\\u202eabc\\u009b\\n\"}\n";
    let server = fake_daemon(&socket, vec![evil]);
    // `--recent` needs the daemon (a plain snapshot reads sock_diag itself).
    let out = enetstat(&[
        "--socket",
        socket.to_str().unwrap(),
        "-tn",
        "--recent",
        "10s",
    ]);
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(raw_controls(&stdout), Vec::<char>::new(), "{stdout:?}");
    assert_eq!(stdout, "x\\x1b]0;owned\\x07\\x0d\\u{202e}abc\\u{9b}\n");

    std::fs::remove_file(&socket).unwrap();
    let server = fake_daemon(
        &socket,
        vec![
            "{\"v\":1,\"ok\":true,\"subscribed\":\"transitions\"}\n",
            "line \u{1b}[2J one\u{7}\n",
            "{\"error\":\"refused \\u001b[31mred\"}\n",
        ],
    );
    let out = enetstat(&["--socket", socket.to_str().unwrap(), "watch", "-o", "json"]);
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "line \\x1b[2J one\\x07\n", "{stderr}");
    assert_eq!(raw_controls(&stderr), Vec::<char>::new(), "{stderr:?}");
    assert!(stderr.contains("refused \\x1b[31mred"), "{stderr}");
}

#[test]
fn a_daemon_removes_its_socket_whatever_user_ran_the_one_before() {
    if !require_root("a_daemon_removes_its_socket_whatever_user_ran_the_one_before") {
        return;
    }
    let dir = TempDir::new("lockout");
    let run = dir.path.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = run.join("enetstat.sock");
    // A daemon as nobody takes the socket's directory, so it can remove its socket.
    let first = Spawned::daemon(daemon_command(&socket, &["--user", "nobody"]));
    assert_eq!(std::fs::metadata(&run).unwrap().uid(), 65534);
    let (status, stderr) = first.stop();
    assert!(status.success(), "{stderr}");
    assert!(!socket.exists(), "{stderr}");
    // Then root's daemon (which drops the capabilities that override file permissions) must
    // still remove its own: it takes the directory back.
    let second = Spawned::daemon(daemon_command(&socket, &[]));
    assert_eq!(std::fs::metadata(&run).unwrap().uid(), 0);
    let (status, stderr) = second.stop();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("cannot remove"), "{stderr}");
    assert!(!socket.exists(), "the socket is left behind: {stderr}");
    // So the next client hears "no daemon", not "a stale socket".
    let out = enetstat(&[
        "--socket",
        socket.to_str().unwrap(),
        "-tn",
        "--recent",
        "10s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no enetstat daemon socket"), "{stderr}");
}

/// Opens and closes `n` connections to `port` on loopback, with a listener of its own.
fn churn(port: u16, n: usize) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let accept = thread::spawn(move || {
        for _ in 0..n {
            let (s, _) = listener.accept().unwrap();
            drop(s);
        }
    });
    for _ in 0..n {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        drop(s);
    }
    accept.join().unwrap();
}

/// How late a good subscriber's last event may arrive after the connections that made it are
/// done. The daemon reads a record within 250 µs (`--wakeup-us`) and hands it to a subscriber
/// within milliseconds; a loaded 2-core test VM can make that a few hundred. 3 s is an order
/// of magnitude above that, and far below the stalls this must catch: issue 13's 10.5 s, and
/// the 10 s a write to a subscriber that never reads may block before it is cut off.
const ON_TIME: Duration = Duration::from_secs(3);

/// Reads `n` events from `conn` on a thread of its own, failing on an error line or the end
/// of the stream. Gives the connection back with the time the last event arrived.
fn read_events(mut conn: Conn, n: usize) -> thread::JoinHandle<(Conn, Instant)> {
    thread::spawn(move || {
        for got in 0..n {
            let line = conn
                .line()
                .unwrap_or_else(|| panic!("cut off after {got} of {n} events"));
            assert!(
                !line.starts_with("{\"error\""),
                "after {got} events: {line}"
            );
        }
        (conn, Instant::now())
    })
}

/// Asserts that the last of the events `reader` reads came within [`ON_TIME`] of `churned`,
/// the end of the traffic that made them.
fn assert_on_time(reader: thread::JoinHandle<(Conn, Instant)>, churned: Instant) -> Conn {
    let (conn, last) = reader.join().expect("every event");
    let late = last.saturating_duration_since(churned);
    eprintln!("the last event came {late:?} after the traffic");
    assert!(
        late < ON_TIME,
        "the last event came {late:?} after the traffic: another subscriber held it up"
    );
    conn
}

/// Asserts, from a daemon's `stats`, that the kernel dropped no event for want of room in the
/// ring. The daemon traces every socket on the host, and a shared test host may be flooded by
/// others meanwhile (a benchmark makes 100,000 transitions a second and more, which a loaded
/// 2-core VM does not keep up with, and this test cannot tell from its own traffic): past
/// [`FLOOD`] transitions seen, a drop is reported, not failed, except under CI, where nothing
/// but the suite runs and a weaker check would pass for the wrong reason. Either way the events
/// the test's subscribers want are each checked, and on time.
fn assert_no_drops(s: &Value) {
    let drops = s["kernel_ringbuf_full"]
        .as_u64()
        .expect("kernel_ringbuf_full");
    let seen = s["kernel_seen"].as_u64().expect("kernel_seen");
    if drops > 0 && seen > FLOOD && !under_ci() {
        eprintln!(
            "NOT CHECKED: the kernel dropped {drops} events, but the host made {seen} \
             transitions meanwhile, over ten times this test's own: others flooded it"
        );
        return;
    }
    assert_eq!(drops, 0, "the kernel dropped events: {s}");
}

/// Transitions seen past which the host was flooded by others: over ten times what the
/// tests that check drops make themselves (2,000 connections, about 20,000).
const FLOOD: u64 = 300_000;

/// The metrics body from `addr`, once it has `line` (the metrics' counters follow `stats` at
/// the next `--reconcile` tick).
fn metrics_with(addr: SocketAddr, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        if body.lines().any(|l| l == line) {
            return body;
        }
        assert!(Instant::now() < deadline, "no {line:?} in 20 s: {body}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_subscriber_that_never_reads_is_cut_off_and_the_others_get_every_event() {
    if !require_root("a_subscriber_that_never_reads_is_cut_off_and_the_others_get_every_event") {
        return;
    }
    let port = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = port.port();
    port.release();
    let metrics = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let daemon = Daemon::start(
        "stuck",
        &[
            "--client-queue",
            "1000",
            "--ring-size",
            "16M",
            "--metrics",
            &metrics.addr().to_string(),
        ],
    );
    // Subscribes to everything on the port and never reads.
    let mut stuck = daemon.connect();
    let ack = stuck.request(&json!({"v":1,"op":"subscribe","filter":format!("port = :{p}")}));
    assert_eq!(ack["ok"], true);
    // Reads one event per connection: its SYN_SENT.
    let mut good = daemon.connect();
    let filter = format!("dport = :{p} and from close and state syn-sent");
    let ack = good.request(&json!({"v":1,"op":"subscribe","filter":filter}));
    assert_eq!(ack["ok"], true);
    let n = 3000;
    let reader = read_events(good, n);
    churn(p, n);
    // Every event, on time: a write to the stuck one never holds the others up.
    let _good = assert_on_time(reader, Instant::now());
    // The stuck one filled its socket and its queue; it is cut off once a write to it has
    // waited 10 s, and the daemon keeps nothing for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(&daemon.socket);
        assert_eq!(s["kernel_ringbuf_full"], 0, "{s}");
        if s["subscribers_cut_off"] == 1 {
            assert_eq!(s["subscribers"], 1, "only the good one is left: {s}");
            break;
        }
        assert!(Instant::now() < deadline, "never cut off: {s}");
        thread::sleep(Duration::from_millis(500));
    }
    stuck
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let rest = stuck.rest();
    assert!(!rest.is_empty(), "what it had been sent");
    metrics_with(metrics.addr(), "enetstat_subscribers_cut_off_total 1");
}

#[test]
fn watch_through_the_daemon_into_head_counts_what_was_shown() {
    if !require_root("watch_through_the_daemon_into_head_counts_what_was_shown") {
        return;
    }
    let port = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = port.port();
    port.release();
    let daemon = Daemon::start("head", &[]);
    let line = format!(
        "\"$0\" --socket {} watch -o json dport = :{p} and state syn-sent | head -1",
        daemon.socket.display()
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .arg(enetstat_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the subscription, then one connection, a pause for head to exit, and more.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats(&daemon.socket)["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "never subscribed");
        thread::sleep(Duration::from_millis(50));
    }
    churn(p, 1);
    // The line head prints (head exits right after), then more connections: the client
    // finds the pipe closed at its next write.
    let mut child = child;
    let mut head = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    head.read_line(&mut first).expect("head's line");
    churn(p, 20);
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    head.read_to_string(&mut rest).unwrap();
    let stdout = first + &rest;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stderr.contains(" transitions seen, 1 shown, "), "{stderr}");
}

#[test]
fn a_subscriber_whose_filter_costs_more_than_its_share_is_cut_off_not_the_others() {
    if !require_root(
        "a_subscriber_whose_filter_costs_more_than_its_share_is_cut_off_not_the_others",
    ) {
        return;
    }
    let port = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = port.port();
    port.release();
    // 4M units a second for all: a 2-subscriber share is 1M per half-second check. The costly
    // filter is ~680 units an event (cut off past ~1,500 events in a check); the cheap one is
    // 6 units (fine up to ~330,000 events a second, whatever else the host does).
    let daemon = Daemon::start(
        "budget",
        &["--filter-budget", "4000000", "--reconcile", "0.5"],
    );
    let costly = format!("pid 1 {}", "pid 1 ".repeat(675));
    assert!(costly.len() < 4096);
    let mut heavy = daemon.connect();
    assert_eq!(
        heavy.request(&json!({"v":1,"op":"subscribe","filter":costly}))["ok"],
        true
    );
    let mut good = daemon.connect();
    let filter = format!("dport = :{p} and from close and state syn-sent");
    assert_eq!(
        good.request(&json!({"v":1,"op":"subscribe","filter":filter}))["ok"],
        true
    );
    let n = 2000;
    let reader = read_events(good, n);
    churn(p, n);
    // Every event, on time: the costly filter held nobody up, and the kernel dropped nothing.
    let _good = assert_on_time(reader, Instant::now());
    let line = heavy.line().expect("an explanation before the close");
    assert!(line.contains("more than its share"), "{line}");
    assert_eq!(heavy.line(), None);
    let s = stats(&daemon.socket);
    assert_eq!(s["subscribers_cut_off"], 1, "{s}");
    assert_eq!(s["subscribers"], 1, "{s}");
    assert_no_drops(&s);
}

#[test]
fn thirty_subscribers_with_long_globs_hold_up_no_plain_one() {
    if !require_root("thirty_subscribers_with_long_globs_hold_up_no_plain_one") {
        return;
    }
    let port = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = port.port();
    port.release();
    // Issue 13's item 3 as reported: thirty subscribers with `comm "*aaaa…"` (60,000 `a`s
    // then; as long as a filter may be now) beside a plain one, then 1,500 connections. The
    // plain one's last event came 10.5 s late, and the kernel dropped 8,108 events.
    let daemon = Daemon::start("globs", &[]);
    let glob = format!("comm \"*{}\"", "a".repeat(MAX_LEN - 8));
    assert_eq!(glob.len(), MAX_LEN);
    let globs: Vec<Conn> = (0..30)
        .map(|_| {
            let mut c = daemon.connect();
            let ack = c.request(&json!({"v":1,"op":"subscribe","filter":glob}));
            assert_eq!(ack["ok"], true, "{ack}");
            c
        })
        .collect();
    let mut plain = daemon.connect();
    let filter = format!("dport = :{p} and from close and state syn-sent");
    let ack = plain.request(&json!({"v":1,"op":"subscribe","filter":filter}));
    assert_eq!(ack["ok"], true, "{ack}");
    let n = 1500;
    let reader = read_events(plain, n);
    churn(p, n);
    let _plain = assert_on_time(reader, Instant::now());
    assert_no_drops(&stats(&daemon.socket));
    drop(globs);
}

#[test]
fn a_hostile_process_name_reaches_no_output_raw() {
    if !require_root("a_hostile_process_name_reaches_no_output_raw") {
        return;
    }
    let port = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = port.port();
    port.release();
    let daemon = Daemon::start("comm", &[]);
    let filter = format!("dport = :{p}");
    let mut subs: Vec<(String, Conn)> = [
        ("transitions", "csv"),
        ("transitions", "text"),
        ("transitions", "json"),
        ("lifecycles", "csv"),
        ("lifecycles", "text"),
        ("lifecycles", "json"),
    ]
    .into_iter()
    .map(|(stream, format)| {
        let mut c = daemon.connect();
        let ack = c.request(
            &json!({"v":1,"op":"subscribe","stream":stream,"format":format,
                                    "filter":filter}),
        );
        assert_eq!(ack["ok"], true, "{ack}");
        (format!("{stream} {format}"), c)
    })
    .collect();
    // A process named with an escape sequence, a bell, a carriage return and a bidi override
    // (15 bytes at most) connects, so it owns the socket. A process: a thread's connection is
    // named by its process, whatever the thread's own name.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
    let name = std::ffi::CString::new("\u{1b}[2J\u{7}\r\u{202e}x").unwrap();
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: p.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: fork in a multi-threaded process; the child only makes system calls on memory
    // prepared before the fork.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        // SAFETY: system calls with valid pointers; _exit ends the child at once.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr());
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let ok = libc::connect(
                fd,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            libc::close(fd);
            libc::_exit(if ok == 0 { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child did not connect"
    );
    let (s, _) = listener.accept().unwrap();
    drop(s);
    for (what, conn) in &mut subs {
        conn.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // Until a line names the process (text keeps the start of a long name only).
        loop {
            let line = conn.line().expect("the stream goes on");
            assert_eq!(raw_controls(&line), Vec::<char>::new(), "{what}: {line:?}");
            let full = line.contains("\\x1b[2J\\x07\\x0d\\u{202e}x")
                || line.contains("\\u001b[2J\\u0007\\r\\u202ex");
            if full || (what.ends_with("text") && line.contains("\\x1b[2J")) {
                break;
            }
        }
    }
}

#[test]
fn log_lines_are_coloured_on_a_terminal_only_and_never_under_no_color() {
    if !require_root("log_lines_are_coloured_on_a_terminal_only_and_never_under_no_color") {
        return;
    }
    if require_program(
        "log_lines_are_coloured_on_a_terminal_only_and_never_under_no_color",
        "tmux",
        "tmux",
    )
    .is_none()
    {
        return;
    }
    // A pipe (as a log file or the journal gets): plain text, not escape codes.
    let out = Command::new(enetstat_bin())
        .args([
            "-v",
            "--standalone",
            "watch",
            "--duration",
            "1s",
            "dport = :1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run enetstat");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    // A terminal: coloured, unless NO_COLOR says not to.
    for (no_color, coloured) in [("", true), ("1", false)] {
        let command = format!(
            "NO_COLOR={no_color} {} -v --standalone watch --duration 1s 'dport = :1'",
            enetstat_bin().display()
        );
        let tmux = Tmux::start(&command, 200, 30);
        tmux.wait_for(Duration::from_secs(30), "the exit", |screen| {
            screen.iter().any(|l| l.starts_with("exited "))
        });
        let screen = tmux.screen_with_escapes();
        let info = screen
            .lines()
            .find(|l| l.contains("INFO"))
            .unwrap_or_else(|| panic!("no INFO line: {screen}"));
        assert_eq!(
            info.contains('\u{1b}'),
            coloured,
            "NO_COLOR={no_color}: {info:?}"
        );
    }
}

#[test]
fn a_client_blocked_by_a_directory_is_told_which_one() {
    if !require_root("a_client_blocked_by_a_directory_is_told_which_one") {
        return;
    }
    // What a unit's UMask=0077 used to make: a 0700 directory around a 0660 socket. A member
    // of the socket's group was told to join the group it was already in.
    let dir = TempDir::new("blocked");
    let run = dir.path.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = run.join("enetstat.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--groups=0"])
        .arg(enetstat_bin())
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "-tn",
            "--recent",
            "10s",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the directory {} (mode 0700", run.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("usermod"), "{stderr}");
}

/// File descriptors `pid` has open.
/// The descriptor numbers `pid` holds.
fn open_fds(pid: u32) -> Vec<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn a_reconcile_that_runs_out_of_descriptors_is_counted_retried_and_named() {
    if !require_root("a_reconcile_that_runs_out_of_descriptors_is_counted_retried_and_named") {
        return;
    }
    let dir = TempDir::new("emfile");
    let socket = dir.path.join("enetstat.sock");
    let args = [
        "--reconcile",
        "0.2",
        "--max-clients",
        "1",
        "--max-metrics-connections",
        "1",
    ];
    let d = Spawned::daemon(daemon_command(&socket, &args));
    // The descriptors the daemon holds when idle, here: the fewest seen, since a reconcile's
    // netlink socket is open for a moment now and then. Read from the running daemon, because
    // starting up briefly takes more, and what a test harness leaves open varies.
    let idle = (0..40)
        .map(|_| {
            thread::sleep(Duration::from_millis(25));
            open_fds(d.pid())
        })
        .min_by_key(Vec::len)
        .unwrap();
    // A new descriptor takes the lowest free number, and the limit bounds numbers: leave
    // exactly one free below it, so a connected client takes the one a reconcile's netlink
    // socket needs.
    let mut free = (0..).filter(|n| !idle.contains(n));
    let _for_the_client = free.next();
    let limit = format!("--nofile={0}:{0}", free.next().unwrap());
    let status = Command::new("prlimit")
        .args(["--pid", &d.pid().to_string(), limit.as_str()])
        .status()
        .expect("cannot run prlimit (util-linux)");
    assert!(status.success(), "prlimit {limit} failed");
    let mut client = Conn::connect(&socket);
    // Asked on that connection (a new one would need another descriptor) until a
    // reconciliation has failed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = client.request(&json!({"v":1,"op":"stats"}))["stats"].clone();
        if s["reconcile_failures"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconciliation failed in 60 s with no descriptor to spare: {s}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    drop(client);
    // With the client gone, the next reconciliations work again.
    thread::sleep(Duration::from_secs(1));
    let before = stats(&socket)["reconciliations"].as_u64().unwrap();
    thread::sleep(Duration::from_secs(1));
    let s = stats(&socket);
    assert!(s["reconciliations"].as_u64().unwrap() > before, "{s}");
    let stderr = d.stderr();
    assert!(stderr.contains("reconciliation failed"), "{stderr}");
    assert!(
        stderr.contains("open-file limit (RLIMIT_NOFILE"),
        "{stderr}"
    );
    assert!(!stderr.contains("lack"), "the cause is named: {stderr}");
    let (status, stderr) = d.stop();
    assert!(status.success(), "the daemon never exits over it: {stderr}");
}

#[test]
fn starting_without_enough_descriptors_names_the_open_file_limit() {
    if !require_root("starting_without_enough_descriptors_names_the_open_file_limit") {
        return;
    }
    let dir = TempDir::new("nofile");
    let socket = dir.path.join("enetstat.sock");
    // Every limit too low to start: whichever step runs out (a map, a program load, the ring
    // buffer's epoll, the sock_diag seed) names the limit, not the kernel or enetstat.
    let mut refused = 0;
    for n in (8..=40).step_by(4) {
        let nofile = format!("--nofile={n}:{n}");
        for tracer in [
            vec!["daemon", "--socket", socket.to_str().unwrap()],
            vec!["--standalone", "watch", "--duration", "1s"],
        ] {
            let out = Command::new("prlimit")
                .args([nofile.as_str(), "--"])
                .arg(enetstat_bin())
                .args(&tracer)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|child| {
                    // A daemon that started is stopped at once: only refusals are checked.
                    thread::sleep(Duration::from_millis(1500));
                    // SAFETY: kill() on our own child, not reaped yet.
                    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                    child.wait_with_output()
                })
                .expect("cannot run prlimit (util-linux)");
            let _ = std::fs::remove_file(&socket);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || stderr.contains(READY_PREFIX) {
                continue;
            }
            refused += 1;
            assert!(
                stderr.contains("open-file limit (RLIMIT_NOFILE"),
                "nofile {n}, {tracer:?}: {stderr}"
            );
            for blame in ["bug in enetstat", "lack", "panicked"] {
                assert!(!stderr.contains(blame), "nofile {n}: {stderr}");
            }
        }
    }
    assert!(refused > 0, "no limit from 8 to 40 was too low to start");
}

#[test]
fn a_daemon_that_cannot_remove_its_socket_says_so_at_start_and_at_stop() {
    if !require_root("a_daemon_that_cannot_remove_its_socket_says_so_at_start_and_at_stop") {
        return;
    }
    // Root's directory, with something else in it: not the daemon's to take.
    let dir = TempDir::new("noremove");
    std::fs::write(dir.path.join("other"), "").unwrap();
    let socket = dir.path.join("enetstat.sock");
    let d = Spawned::daemon(daemon_command(&socket, &["--user", "nobody"]));
    assert!(
        d.stderr().contains("will not be able to remove its socket"),
        "{}",
        d.stderr()
    );
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("cannot remove the socket"), "{stderr}");
    assert!(
        stderr.contains(&format!("rm {}", socket.display())),
        "{stderr}"
    );
}

#[test]
fn two_daemons_racing_for_one_socket_never_print_a_raw_errno() {
    if !require_root("two_daemons_racing_for_one_socket_never_print_a_raw_errno") {
        return;
    }
    for round in 0..5 {
        let dir = TempDir::new("race");
        let socket = dir.path.join("enetstat.sock");
        let mut both: Vec<std::process::Child> = (0..2)
            .map(|_| {
                daemon_command(&socket, &[])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // One of them loses at once; the winner serves until stopped.
        let deadline = Instant::now() + Duration::from_secs(30);
        let loser = loop {
            if let Some(i) = both
                .iter_mut()
                .position(|c| c.try_wait().unwrap().is_some())
            {
                break i;
            }
            if Instant::now() >= deadline {
                // Both still serve: stop them, or they outlive the test with their programs
                // attached.
                for daemon in &mut both {
                    let _ = daemon.kill();
                    let _ = daemon.wait();
                }
                panic!("round {round}: neither daemon gave way");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut lost = both.remove(loser);
        let mut stderr = String::new();
        lost.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let mut winner = both.pop().unwrap();
        let _ = winner.kill();
        let _ = winner.wait();
        assert!(!lost.wait().unwrap().success(), "round {round}: {stderr}");
        assert!(
            stderr.contains("already serving"),
            "round {round}: {stderr}"
        );
        assert!(!stderr.contains("os error"), "round {round}: {stderr}");
    }
}

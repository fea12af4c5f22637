//! Owners under real servers (issue 11): the process that accepts a connection owns it, checked
//! against nginx's own access log, which names the worker (`$pid`) that served each connection;
//! and the cases a log cannot show: resets, client closes, forking and threaded servers.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{
    PortReservation, Signal, State, Tracer, daemon::TempDir, life::Life, require_program,
    require_root,
};

/// Runs `cmd`, panicking with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pids whose parent is `parent`, from /proc.
fn children(parent: u32) -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces, so split after the `)`.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A private nginx on loopback: its own configuration, pid file and logs in a temporary
/// directory, never the system's. Stopped on drop.
struct Nginx {
    bin: PathBuf,
    dir: TempDir,
    conf: PathBuf,
    /// Every process of every run: launchers, masters, workers.
    launchers: BTreeSet<u32>,
    masters: BTreeSet<u32>,
    workers: BTreeSet<u32>,
}

impl Nginx {
    fn new(bin: PathBuf, port: u16) -> Nginx {
        let dir = TempDir::new("nginx");
        let d = dir.path.display();
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path.join(sub)).unwrap();
        }
        let conf = dir.path.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 2;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 512; }}
http {{
    log_format owners '$connection $remote_addr $remote_port $bytes_sent $request_length $pid';
    access_log {d}/access.log owners;
    client_body_temp_path {d}/body;
    keepalive_timeout 60;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        location / {{ return 200 \"served\\n\"; }}
    }}
}}
"
            ),
        )
        .unwrap();
        Nginx {
            bin,
            dir,
            conf,
            launchers: BTreeSet::new(),
            masters: BTreeSet::new(),
            workers: BTreeSet::new(),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path.join("nginx.pid")
    }

    /// Starts nginx as it starts itself: the launcher opens the listeners, forks the master,
    /// and exits. Returns once both workers run.
    fn start(&mut self) {
        let _ = std::fs::remove_file(self.pid_file());
        let mut launcher = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.dir.path)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start nginx");
        self.launchers.insert(launcher.id());
        let status = launcher.wait().unwrap();
        assert!(status.success(), "nginx failed to start: {}", self.errors());
        let master = {
            let file = self.pid_file();
            let mut master = 0;
            wait_until("nginx's pid file", Duration::from_secs(10), || {
                master = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                master != 0
            });
            master
        };
        self.masters.insert(master);
        let mut workers = BTreeSet::new();
        wait_until("nginx's two workers", Duration::from_secs(10), || {
            workers = children(master);
            workers.len() == 2
        });
        self.workers.extend(workers);
    }

    /// `nginx -s stop`, and waits until every process of this run has gone.
    fn stop(&mut self) {
        run(Command::new(&self.bin)
            .arg("-p")
            .arg(&self.dir.path)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"]));
        let pids: Vec<u32> = self.masters.iter().chain(&self.workers).copied().collect();
        wait_until("nginx to stop", Duration::from_secs(20), || {
            pids.iter().all(|&p| !alive(p))
        });
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("error.log")).unwrap_or_default()
    }

    /// Each logged connection's (remote address, remote port) -> the workers that served
    /// connections from it: one, unless a later run's client reused the port.
    fn served_by(&self) -> HashMap<(IpAddr, u16), BTreeSet<u32>> {
        let log = std::fs::read_to_string(self.dir.path.join("access.log")).unwrap();
        let mut served: HashMap<(IpAddr, u16), BTreeSet<u32>> = HashMap::new();
        for line in log.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 6, "an access log line of another format: {line}");
            let addr: IpAddr = f[1].parse().unwrap();
            let port: u16 = f[2].parse().unwrap();
            let pid: u32 = f[5].parse().unwrap();
            served.entry((addr, port)).or_default().insert(pid);
        }
        served
    }

    fn pids(&self) -> BTreeSet<u32> {
        self.launchers
            .iter()
            .chain(&self.masters)
            .chain(&self.workers)
            .copied()
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        for &pid in self.masters.iter().chain(&self.workers) {
            if alive(pid) {
                // SAFETY: kill() on nginx processes this test started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

fn ab(bin: &Path, args: &[&str], url: &str) {
    let out = run(Command::new(bin).args(["-q", "-r"]).args(args).arg(url));
    assert!(
        out.contains("Failed requests:        0"),
        "ab saw failures: {out}"
    );
}

#[test]
fn nginx_workers_own_the_connections_they_serve() {
    const TEST: &str = "nginx_workers_own_the_connections_they_serve";
    if !require_root(TEST) {
        return;
    }
    let Some(nginx_bin) = require_program(TEST, "nginx", "nginx-light") else {
        return;
    };
    let Some(ab_bin) = require_program(TEST, "ab", "apache2-utils") else {
        return;
    };
    let v4 = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = v4.port();
    let _v6 = PortReservation::new(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let mut nginx = Nginx::new(nginx_bin, port);
    // The first run's listeners predate tracing.
    nginx.start();
    let p = port.to_string();
    let watch = Tracer::start(&["watch", "-o", "json", "--port", &p]);
    let life = Tracer::start(&["life", "-o", "json", "--port", &p]);
    let v4_url = format!("http://127.0.0.1:{port}/");
    let v6_url = format!("http://[::1]:{port}/");
    ab(&ab_bin, &["-n", "2000", "-c", "20"], &v4_url);
    ab(&ab_bin, &["-n", "500", "-c", "20"], &v6_url);
    ab(&ab_bin, &["-k", "-n", "2000", "-c", "20"], &v4_url);
    // A fresh start under tracing: the launcher that opens the listeners exits at once.
    nginx.stop();
    nginx.start();
    ab(&ab_bin, &["-n", "1000", "-c", "20"], &v4_url);
    nginx.stop();
    watch.settle(Duration::from_secs(2));
    life.settle(Duration::from_millis(500));
    let watch = watch.stop(Signal::Int);
    watch.assert_success();
    let life = life.stop(Signal::Int);
    life.assert_success();

    let served = nginx.served_by();
    assert!(
        served.len() >= 3500,
        "too few connections logged: {}",
        served.len()
    );
    let workers = &nginx.workers;
    let nginx_pids = nginx.pids();

    // Every logged connection has a server-side life record naming its worker.
    let mut lives: HashMap<(IpAddr, u16), Vec<Life>> = HashMap::new();
    for l in life.stdout.iter().map(|l| Life::parse(l).unwrap()) {
        if l.lport == Some(port) {
            lives
                .entry((l.raddr, l.rport.unwrap()))
                .or_default()
                .push(l);
        }
    }
    let mut right = 0;
    let mut missing = Vec::new();
    for (key, workers) in &served {
        let records = lives.get(key).map_or(&[][..], Vec::as_slice);
        for l in records {
            assert!(
                l.pid.is_some_and(|pid| workers.contains(&pid)),
                "the connection from {key:?} was served by {workers:?}, but its life record \
                 names {:?}: {}",
                l.pid,
                l.raw
            );
        }
        if records.is_empty() {
            missing.push(*key);
        } else {
            right += 1;
        }
    }
    assert!(
        right * 1000 >= served.len() * 999,
        "{right} of {} connections have a life record naming their worker; none for {:?}",
        served.len(),
        &missing[..missing.len().min(10)]
    );

    // Every server-side transition after accept names the worker; none names a process that
    // is not nginx's, and none before accept names the launcher, which had exited by then.
    let mut after_accept = 0;
    for t in watch.transitions() {
        if t.lport != Some(port) || t.rport.is_none_or(|r| r == 0) {
            continue;
        }
        let key = (t.raddr.unwrap(), t.rport.unwrap());
        if let Some(pid) = t.pid {
            assert!(nginx_pids.contains(&pid), "a pid that is not nginx's: {t}");
            assert!(
                !nginx.launchers.contains(&pid),
                "the launcher had exited before any connection: {t}"
            );
        }
        let before_accept = matches!(
            (t.old, t.new),
            (State::Listen, State::SynRecv) | (State::SynRecv, State::Established)
        );
        if before_accept {
            if let Some(pid) = t.pid {
                assert!(
                    workers.contains(&pid) || nginx.masters.contains(&pid),
                    "before accept the owner holds the listener: {t}"
                );
            }
            continue;
        }
        if let Some(workers) = served.get(&key) {
            after_accept += 1;
            assert!(
                t.pid.is_some_and(|pid| workers.contains(&pid)),
                "after accept the worker owns it ({workers:?}): {t}"
            );
        }
    }
    assert!(
        after_accept >= 3 * 3500,
        "too few transitions after accept: {after_accept}"
    );
}

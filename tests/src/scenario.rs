//! Many sockets in mixed states, inside network namespaces the test makes, and the tools to
//! compare what enetstat shows with what `ss` shows.
//!
//! Everything is RAII: a [`Netns`] deletes itself, a [`Child`] is killed and reaped on drop,
//! and a [`Scenario`] owns both (children dropped first), so a failing test leaves nothing.
//! All sockets live in the scenario's own namespace, so a comparison of everything in it is a
//! comparison of the test's own sockets, whatever else runs on the machine.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::{ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc::{Receiver, channel},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::enetstat_bin;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add`, with loopback up.
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("enetstat-{tag}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl Into<PathBuf>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program.into());
        c
    }

    /// Writes `/etc/netns/NAME/<file>`, which `ip netns exec` mounts over `/etc/<file>` for
    /// the commands it runs in the namespace (a hosts file of the test's own, for one).
    /// Removed with the namespace.
    pub fn etc_file(&self, file: &str, content: &str) {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).expect("cannot create /etc/netns/NAME");
        std::fs::write(dir.join(file), content)
            .unwrap_or_else(|e| panic!("cannot write {}/{file}: {e}", dir.display()));
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    /// The namespace's inode: what enetstat prints as `netns`.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("cannot stat /run/netns/{}: {e}", self.name))
            .ino()
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// A host in its own namespace, reached from `from` over a veth pair at [`Self::addr`],
/// that drops every TCP SYN sent to it: replies to the other side are routed to a blackhole,
/// so connections to it stay in SYN_SENT.
pub struct SynDropHost {
    pub addr: IpAddr,
    _ns: Netns,
}

impl SynDropHost {
    pub fn new(from: &Netns) -> Self {
        let ns = Netns::new("drop");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let (near, far) = (format!("198.18.{n}.1"), format!("198.18.{n}.2"));
        run(&[
            "ip", "-n", &from.name, "link", "add", "e3a", "type", "veth", "peer", "name", "e3b",
            "netns", &ns.name,
        ]);
        run(&[
            "ip",
            "-n",
            &from.name,
            "addr",
            "add",
            &format!("{near}/24"),
            "dev",
            "e3a",
        ]);
        run(&[
            "ip",
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{far}/24"),
            "dev",
            "e3b",
        ]);
        run(&["ip", "-n", &from.name, "link", "set", "e3a", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "e3b", "up"]);
        run(&[
            "ip",
            "-n",
            &ns.name,
            "route",
            "add",
            "blackhole",
            &format!("{near}/32"),
        ]);
        SynDropHost {
            addr: far.parse().unwrap(),
            _ns: ns,
        }
    }
}

/// A client namespace with a SYN-dropping host behind a veth pair, `tcp_syn_retries` lowered
/// to 1 inside it (a connect gives up after about 3 s instead of about 2 minutes, with
/// ETIMEDOUT). Fields drop in order: the host's namespace, then the client's.
pub struct DropNet {
    pub host: SynDropHost,
    pub ns: Netns,
}

impl DropNet {
    pub fn new(tag: &str) -> Self {
        let ns = Netns::new(tag);
        ns.sysctl("net.ipv4.tcp_syn_retries", "1");
        let host = SynDropHost::new(&ns);
        DropNet { host, ns }
    }

    /// Where a connect times out (the discard port of the SYN-dropping host).
    pub fn target(&self) -> SocketAddr {
        SocketAddr::new(self.host.addr, 9)
    }
}

/// The socket-making helper, next to the test executable's directory like `enetstat-peer`.
pub fn sockets_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENETSTAT_SOCKETS_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("cannot find the test executable");
    let path = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("enetstat-sockets"))
        .unwrap_or_default();
    assert!(
        path.is_file(),
        "enetstat-sockets was not found at {}; `cargo test -p enetstat-tests` builds it",
        path.display()
    );
    path
}

/// A child process with its stdout read line by line on a thread; killed and reaped on drop.
pub struct Child {
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    pub name: String,
}

impl Child {
    pub fn spawn(mut cmd: Command, name: &str) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Child {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The next line, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> (Instant, String) {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{}: no output line within {timeout:?} (exit status {status:?})",
                    self.name
                )
            }
        }
    }

    /// The next line as JSON.
    pub fn json(&mut self, timeout: Duration) -> Value {
        let (_, line) = self.line(timeout);
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name))
    }

    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{command}").expect("cannot write to the child");
        stdin.flush().unwrap();
    }

    /// Every line that is waiting now.
    pub fn drain(&mut self) -> Vec<(Instant, String)> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One process's sockets, as it reported them.
#[derive(Clone, Debug)]
pub struct Holder {
    pub pid: u32,
    pub held: Vec<Key>,
}

/// A socket as both tools show it: (proto, local, remote), addresses unmapped, an
/// unspecified address as `*`.
pub type Key = (String, String, String);

fn norm_ip(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    };
    if ip.is_unspecified() {
        "*".into()
    } else {
        ip.to_string()
    }
}

fn norm_endpoint(ip: IpAddr, port: u16) -> String {
    format!("{}|{}", norm_ip(ip), port)
}

/// `ss` style `addr:port` (`[v6]:port`, `*:*`, `0.0.0.0:*`) to the normal form.
pub fn norm_ss_endpoint(s: &str) -> String {
    let (host, port) = s.rsplit_once(':').expect("address with a port");
    let port: u16 = port.parse().unwrap_or(0);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.split('%').next().unwrap_or(host);
    let ip = if host == "*" {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        host.parse().unwrap_or_else(|_| panic!("bad address {s:?}"))
    };
    norm_endpoint(ip, port)
}

fn parse_key(v: &Value) -> Key {
    let a: SocketAddr = v[1].as_str().unwrap().parse().unwrap();
    let b: SocketAddr = v[2].as_str().unwrap().parse().unwrap();
    (
        v[0].as_str().unwrap().to_owned(),
        norm_endpoint(a.ip(), a.port()),
        norm_endpoint(b.ip(), b.port()),
    )
}

/// netstat's state name for an `ss` state.
fn ss_state(s: &str) -> String {
    match s {
        "ESTAB" => "ESTABLISHED".into(),
        "UNCONN" => "CLOSE".into(),
        other => other.replace("-WAIT-", "_WAIT").replace('-', "_"),
    }
}

/// A socket with its state and queues, the unit of comparison.
pub type Full = (Key, String, u64, u64);

/// `ss -tuanH` in `ns`.
pub fn ss(ns: &Netns) -> Vec<Full> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ss", "-tuanH"])
        .output()
        .expect("cannot run ss");
    assert!(out.status.success(), "ss failed");
    ss_rows(&String::from_utf8_lossy(&out.stdout))
}

/// `ss -tuanH` in this process's own network namespace.
pub fn ss_here() -> Vec<Full> {
    let out = Command::new("ss")
        .arg("-tuanH")
        .output()
        .expect("cannot run ss");
    assert!(out.status.success(), "ss failed");
    ss_rows(&String::from_utf8_lossy(&out.stdout))
}

/// The sockets in `ss -tuanH` output, sorted.
pub fn ss_rows(stdout: &str) -> Vec<Full> {
    let mut rows: Vec<Full> = stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some((
                (
                    f[0].to_owned(),
                    norm_ss_endpoint(f[4]),
                    norm_ss_endpoint(f[5]),
                ),
                ss_state(f[1]),
                f[2].parse().ok()?,
                f[3].parse().ok()?,
            ))
        })
        .collect();
    rows.sort();
    rows
}

/// The live (not closed) sockets of one enetstat JSON snapshot.
pub fn enetstat_rows(snapshot: &Value) -> Vec<Full> {
    let mut rows: Vec<Full> = snapshot["sockets"]
        .as_array()
        .expect("a snapshot has sockets")
        .iter()
        .filter(|s| s["closed"] != true)
        .map(|s| {
            let ip = |k: &str| s[k].as_str().unwrap().parse::<IpAddr>().unwrap();
            let port = |k: &str| s[k].as_u64().unwrap_or(0) as u16;
            (
                (
                    transport(s),
                    norm_endpoint(ip("local_addr"), port("local_port")),
                    norm_endpoint(ip("remote_addr"), port("remote_port")),
                ),
                s["state"].as_str().unwrap().to_owned(),
                s["recv_q"].as_u64().unwrap(),
                s["send_q"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// One-shot `enetstat ARGS` in `ns`, parsed as one JSON snapshot.
pub fn enetstat_json(ns: &Netns, args: &[&str]) -> Value {
    let out = ns
        .command(enetstat_bin())
        .args(args)
        .output()
        .expect("cannot run enetstat");
    assert!(
        out.status.success(),
        "enetstat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("enetstat -o json prints one JSON object")
}

/// What is in one list and not the other (multisets).
pub fn differences(ours: &[Full], theirs: &[Full]) -> (Vec<Full>, Vec<Full>) {
    let mut count: BTreeMap<&Full, i64> = BTreeMap::new();
    for r in ours {
        *count.entry(r).or_default() += 1;
    }
    for r in theirs {
        *count.entry(r).or_default() -= 1;
    }
    let mut only_ours = Vec::new();
    let mut only_theirs = Vec::new();
    for (r, n) in count {
        for _ in 0..n.max(0) {
            only_ours.push(r.clone());
        }
        for _ in 0..(-n).max(0) {
            only_theirs.push(r.clone());
        }
    }
    (only_ours, only_theirs)
}

/// Socket counts by (proto, state), for the test log.
pub fn census(rows: &[Full]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry((r.0.0.clone(), r.1.clone())).or_default() += 1;
    }
    m
}

/// How many sockets each family gets, per kind.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub listeners: usize,
    pub established: usize,
    pub half_closed: usize,
    pub orphaned: usize,
    pub time_wait: usize,
    pub udp: usize,
    pub syn_sent: usize,
}

impl Mix {
    /// 1,000+ sockets over both families.
    pub const BIG: Mix = Mix {
        listeners: 25,
        established: 150,
        half_closed: 40,
        orphaned: 10,
        time_wait: 50,
        udp: 40,
        syn_sent: 20,
    };
}

/// Servers and clients for IPv4 and IPv6 in one namespace, plus a SYN-dropping host.
pub struct Scenario {
    pub servers: Vec<Child>,
    pub clients: Vec<Child>,
    pub syn_host: SynDropHost,
    /// Dropped last: every process in it is gone by then.
    pub ns: Netns,
}

impl Scenario {
    pub fn start(mix: Mix) -> Self {
        let ns = Netns::new("snap");
        let syn_host = SynDropHost::new(&ns);
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        for addr in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let mut cmd = ns.command(sockets_bin());
            cmd.args(["server", "--addr", &addr.to_string()])
                .args(["--listeners", &mix.listeners.to_string()]);
            let mut server = Child::spawn(cmd, "enetstat-sockets server");
            let ready = server.json(Duration::from_secs(30));
            let ports: Vec<String> = ready["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.to_string())
                .collect();
            let mut cmd = ns.command(sockets_bin());
            cmd.args(["client", "--addr", &addr.to_string()])
                .args(["--ports", &ports.join(",")])
                .args(["--closer", &ready["closer"].to_string()])
                .args(["--established", &mix.established.to_string()])
                .args(["--half-closed", &mix.half_closed.to_string()])
                .args(["--orphaned", &mix.orphaned.to_string()])
                .args(["--time-wait", &mix.time_wait.to_string()])
                .args(["--udp", &mix.udp.to_string()]);
            if addr.is_ipv4() {
                cmd.args([
                    "--syn-sent-to",
                    &SocketAddr::new(syn_host.addr, 9).to_string(),
                ])
                .args(["--syn-sent", &(2 * mix.syn_sent).to_string()]);
            }
            let mut client = Child::spawn(cmd, "enetstat-sockets client");
            client.json(Duration::from_secs(60));
            servers.push(server);
            clients.push(client);
        }
        Scenario {
            servers,
            clients,
            syn_host,
            ns,
        }
    }

    /// Every process's held sockets, asked now.
    pub fn holders(&mut self) -> Vec<Holder> {
        self.servers
            .iter_mut()
            .chain(self.clients.iter_mut())
            .map(|c| {
                c.send("report");
                let v = c.json(Duration::from_secs(30));
                Holder {
                    pid: v["pid"].as_u64().unwrap() as u32,
                    held: v["held"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(parse_key)
                        .collect(),
                }
            })
            .collect()
    }

    /// `ss` twice with enetstat's snapshot taken by `take` in between, until `ss` shows the
    /// same both times (sockets settle within milliseconds; at most 20 tries).
    pub fn stable<T>(&self, mut take: impl FnMut() -> T) -> (Vec<Full>, T) {
        for _ in 0..20 {
            let before = ss(&self.ns);
            let t = take();
            let after = ss(&self.ns);
            if before == after {
                return (after, t);
            }
            thread::sleep(Duration::from_millis(300));
        }
        panic!("the sockets in {} never settled", self.ns.name);
    }
}

/// How many held sockets the snapshot names the right process for (its pid and its program,
/// which is the holder's `comm`, and `holds: true`): (right, total), with up to 10 wrong ones
/// for the log.
pub fn owners_right(snapshot: &Value, holders: &[Holder]) -> (usize, usize, Vec<String>) {
    // (pid, program, holds) of every row with the key.
    type Shown = Vec<(Option<u64>, Option<String>, Option<bool>)>;
    let mut by_key: BTreeMap<Key, Shown> = BTreeMap::new();
    for s in snapshot["sockets"].as_array().unwrap() {
        if s["closed"] == true {
            continue;
        }
        let ip = |k: &str| s[k].as_str().unwrap().parse::<IpAddr>().unwrap();
        let port = |k: &str| s[k].as_u64().unwrap_or(0) as u16;
        let key = (
            transport(s),
            norm_endpoint(ip("local_addr"), port("local_port")),
            norm_endpoint(ip("remote_addr"), port("remote_port")),
        );
        by_key.entry(key).or_default().push((
            s["pid"].as_u64(),
            s["program"].as_str().map(str::to_owned),
            s["holds"].as_bool(),
        ));
    }
    let (mut right, mut total, mut wrong) = (0, 0, Vec::new());
    for h in holders {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", h.pid))
            .unwrap_or_else(|e| panic!("the holder {} is gone: {e}", h.pid));
        let comm = comm.trim_end();
        for key in &h.held {
            total += 1;
            let found = by_key.get(key).cloned().unwrap_or_default();
            if found.iter().any(|(pid, program, holds)| {
                *pid == Some(u64::from(h.pid))
                    && program.as_deref() == Some(comm)
                    && *holds == Some(true)
            }) {
                right += 1;
            } else if wrong.len() < 10 {
                wrong.push(format!(
                    "{key:?}: expected pid {} ({comm}), shown {found:?}",
                    h.pid
                ));
            }
        }
    }
    (right, total, wrong)
}

/// The Unix time in seconds of an RFC 3339 UTC timestamp as enetstat prints it
/// (`2026-11-26T09:09:47.000001Z`). Panics on anything else.
pub fn unix_seconds(time: &str) -> f64 {
    fn bad(time: &str) -> ! {
        panic!("not an RFC 3339 UTC time: {time:?}")
    }
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| bad(time));
    let t = time.strip_suffix('Z').unwrap_or_else(|| bad(time));
    let (date, clock) = t.split_once('T').unwrap_or_else(|| bad(time));
    let d: Vec<i64> = date.split('-').map(num).collect();
    let c: Vec<&str> = clock.split(':').collect();
    let (&[y, m, day], &[hh, mm, ss]) = (&d[..], &c[..]) else {
        bad(time)
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs: f64 = ss.parse().unwrap_or_else(|_| bad(time));
    (days * 86_400 + num(hh) * 3600 + num(mm) * 60) as f64 + secs
}

/// `tcp` or `udp` from a snapshot socket's documented `proto` (`tcp`, `tcp6`, `udp`, `udp6`),
/// checked against its `transport`.
fn transport(s: &Value) -> String {
    let proto = s["proto"].as_str().expect("every socket has a proto");
    let transport = proto.trim_end_matches('6');
    assert_eq!(
        s["transport"], transport,
        "proto and transport disagree: {s}"
    );
    transport.to_owned()
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_reads_as_unix_time() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), 0.0);
        assert_eq!(unix_seconds("2000-03-01T00:00:01.5Z"), 951_868_801.5);
        let t = unix_seconds("2026-11-26T09:09:47.000001Z");
        assert!((t - 1_795_684_187.000_001).abs() < 1e-5, "{t}");
    }
}

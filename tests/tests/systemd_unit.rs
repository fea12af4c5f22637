//! The shipped systemd unit (`dist/enetstat.service`), checked by systemd itself: `systemd-analyze
//! verify` finds nothing wrong in it, and a real systemd manager starts it, so the sandbox is
//! systemd's own doing, not a model of it. The daemon then runs with the unit's bounding set
//! and only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH in effect, no new privileges, seccomp
//! filters, a read-only system, no /home or /root, a private /tmp and /dev, its own hostname,
//! umask 0077 and the unit's limits; it serves on `/run/enetstat/enetstat.sock` (the unit's
//! RuntimeDirectory) with the modes the README gives, answers a client, and stops cleanly when
//! systemd stops it, the directory removed.
//!
//! The manager is a private one, so this works whether or not systemd is the machine's init
//! and touches nothing of the host's: it is PID 1 of PID, mount, cgroup, UTS and IPC
//! namespaces of the test's own, its /run is a tmpfs of its own, its cgroup tree is a new
//! directory under the host's cgroup2 mount (removed afterwards), and the only units it knows
//! are the test's: the shipped unit (the binary under test in ExecStart, `--socket-group
//! root`, its output to a file), a target that wants it, and empty stand-ins for the targets
//! systemd orders services after. The network namespace is the host's, as for the real unit.

use std::{
    os::unix::{fs::MetadataExt, fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{
    cgroup2_root,
    daemon::{Conn, TempDir},
    enetstat_bin, require_program, require_root, skip,
};
use serde_json::json;

const TEST: &str = "systemd_runs_the_shipped_unit_with_its_sandbox";
const SYSTEMD: &str = "/lib/systemd/systemd";

/// The shipped unit.
fn shipped_unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/enetstat.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `unit` with ExecStart's binary and socket group replaced, checking both were there.
fn with_exec(unit: &str, binary: &str) -> String {
    let from = "ExecStart=/usr/bin/enetstat daemon --socket /run/enetstat/enetstat.sock \
                --socket-group enetstat";
    assert!(unit.contains(from), "the unit's ExecStart changed:\n{unit}");
    unit.replace(
        from,
        &format!(
            "ExecStart={binary} daemon --socket /run/enetstat/enetstat.sock --socket-group root"
        ),
    )
}

/// The capabilities a unit directive lists, as a bit set.
fn capability_bits(names: &str) -> u64 {
    names
        .split_whitespace()
        .map(|name| {
            let bit = match name {
                "CAP_CHOWN" => 0,
                "CAP_DAC_READ_SEARCH" => 2,
                "CAP_SETGID" => 6,
                "CAP_SETUID" => 7,
                "CAP_SETPCAP" => 8,
                "CAP_SYS_PTRACE" => 19,
                "CAP_SYS_RESOURCE" => 24,
                "CAP_PERFMON" => 38,
                "CAP_BPF" => 39,
                other => panic!("capability {other} unknown to the test; add it"),
            };
            1u64 << bit
        })
        .fold(0, |a, b| a | b)
}

/// A `Name:` line of /proc/PID/status.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn caps(pid: u32, which: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, which), 16).expect("a capability set")
}

/// The soft and hard limit of one /proc/PID/limits row (`u64::MAX` for unlimited).
fn limit(pid: u32, row: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row} in /proc/{pid}/limits"));
    let fields: Vec<&str> = line[row.len()..].split_whitespace().collect();
    let n = |s: &str| {
        if s == "unlimited" {
            u64::MAX
        } else {
            s.parse().unwrap()
        }
    };
    (n(fields[0]), n(fields[1]))
}

/// Mount points of `pid` and their options (`/` → `ro,nosuid,...`).
fn mounts(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[4].to_owned(), f[5].to_owned())
        })
        .collect()
}

fn pids_in(cgroup: &Path) -> Vec<u32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The private manager: `unshare` and, under it, systemd as PID 1. Dropping it kills the
/// whole PID namespace and removes the cgroup tree.
struct Manager {
    unshare: std::process::Child,
    cgroup: PathBuf,
    /// systemd's pid, as the host sees it.
    init: u32,
}

impl Manager {
    /// Starts systemd with the units in `units`, its console in the file `console`, and the
    /// directory `staged` shown at /run/enetstat-test.
    fn start(units: &Path, console: &Path, staged: &Path, cgroup: PathBuf) -> Manager {
        std::fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", cgroup.display()));
        // Inside the new namespaces: a /run of its own (with the staged directory), the
        // cgroup2 tree rooted at our new cgroup, systemd's console in a file, then systemd
        // with the test's units only.
        let inner = r#"set -e
mount -t tmpfs -o mode=755 tmpfs /run
mkdir /run/enetstat-test
mount --bind "$STAGED" /run/enetstat-test
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind "$CONSOLE" /dev/console
exec env -i container=enetstat-test SYSTEMD_UNIT_PATH="$UNITS" \
  SYSTEMD_GENERATOR_PATH=/nonexistent SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/nonexistent \
  "$SYSTEMD" --system --unit=enetstat-test.target --log-target=console --log-color=no
"#;
        let outer = r#"echo $$ > "$CGROUP/cgroup.procs" && exec unshare --pid --fork --mount \
  --cgroup --uts --ipc --mount-proc --propagation private sh -c "$INNER""#;
        let unshare = Command::new("sh")
            .args(["-c", outer])
            .env("CGROUP", &cgroup)
            .env("INNER", inner)
            .env("CONSOLE", console)
            .env("STAGED", staged)
            .env("UNITS", units)
            .env("SYSTEMD", SYSTEMD)
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot run sh");
        let mut manager = Manager {
            unshare,
            cgroup,
            init: 0,
        };
        // systemd is unshare's only child.
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = manager.unshare.id();
        while manager.init == 0 {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            manager.init = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if let Ok(Some(status)) = manager.unshare.try_wait() {
                panic!(
                    "unshare exited ({status}) before systemd started; console:\n{}",
                    std::fs::read_to_string(console).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "systemd did not start in 30 s");
            thread::sleep(Duration::from_millis(20));
        }
        manager
    }

    /// A path inside the manager's mount namespace, seen from here.
    fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.init))
    }

    /// `systemctl ARGS` against this manager (in its namespaces, where its /run is): its
    /// stdout, and what it said on stderr.
    fn systemctl(&self, args: &[&str]) -> (String, String) {
        let out = Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-m", "-p", "systemctl"])
            .args(args)
            .output()
            .expect("cannot run nsenter");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.init != 0 {
            // SAFETY: kill() on the PID namespace's init, which takes every process in the
            // namespace with it; our own child (unshare) is reaped below.
            unsafe { libc::kill(self.init as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The cgroups, innermost first, once their processes have left.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut dirs = Vec::new();
            let mut stack = vec![self.cgroup.clone()];
            while let Some(d) = stack.pop() {
                if let Ok(entries) = std::fs::read_dir(&d) {
                    stack.extend(
                        entries
                            .flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
                dirs.push(d);
            }
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            if !self.cgroup.exists() || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn systemd_runs_the_shipped_unit_with_its_sandbox() {
    if !require_root(TEST) {
        return;
    }
    let Some(analyze) = require_program(TEST, "systemd-analyze", "systemd") else {
        return;
    };
    if require_program(TEST, "unshare", "util-linux").is_none()
        || require_program(TEST, "nsenter", "util-linux").is_none()
    {
        return;
    }
    if !Path::new(SYSTEMD).is_file() {
        return skip(
            TEST,
            &format!(
                "{SYSTEMD} is missing (Debian package `systemd`; `cargo xtask setup` installs it)"
            ),
        );
    }
    let Some(cgroup2) = cgroup2_root() else {
        return skip(TEST, "cgroup v2 is not mounted; systemd needs it");
    };
    let shipped = shipped_unit();
    let bin = enetstat_bin();
    let bin = bin.to_str().expect("a UTF-8 path");

    // systemd-analyze verify: nothing to say about the unit (no unknown key, no bad value).
    let dir = TempDir::new("systemd");
    let verify_dir = dir.path.join("verify");
    std::fs::create_dir(&verify_dir).unwrap();
    let verify_unit = verify_dir.join("enetstat.service");
    std::fs::write(&verify_unit, with_exec(&shipped, bin)).unwrap();
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&verify_unit)
        .output()
        .expect("cannot run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("enetstat")).collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify dist/enetstat.service:\n{said}"
    );

    // The private manager's units. ExecStart runs inside the sandbox, where /tmp is private
    // and /home and /root are gone, so the binary under test is shown at
    // /run/enetstat-test (see Manager::start), with the daemon's output beside it.
    let units = dir.path.join("units");
    std::fs::create_dir(&units).unwrap();
    let unit = with_exec(&shipped, "/run/enetstat-test/enetstat");
    std::fs::write(units.join("enetstat.service"), &unit).unwrap();
    let dropin = units.join("enetstat.service.d");
    std::fs::create_dir(&dropin).unwrap();
    std::fs::write(
        dropin.join("output.conf"),
        "[Service]\nStandardOutput=append:/run/enetstat-test/daemon.log\nStandardError=inherit\n",
    )
    .unwrap();
    std::fs::write(
        units.join("enetstat-test.target"),
        "[Unit]\nDescription=enetstat test\nWants=enetstat.service\n",
    )
    .unwrap();
    for stub in [
        "sysinit",
        "basic",
        "shutdown",
        "sockets",
        "paths",
        "timers",
        "slices",
        "local-fs",
        "swap",
        "network",
        "multi-user",
    ] {
        std::fs::write(
            units.join(format!("{stub}.target")),
            format!("[Unit]\nDescription=stand-in for {stub}.target\n"),
        )
        .unwrap();
    }
    let console = dir.path.join("console.log");
    std::fs::write(&console, "").unwrap();
    let staged = dir.path.join("run-enetstat-test");
    std::fs::create_dir(&staged).unwrap();
    std::fs::copy(bin, staged.join("enetstat")).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();

    let cgroup = cgroup2.join(format!("enetstat-systemd-test-{}", std::process::id()));
    let manager = Manager::start(&units, &console, &staged, cgroup.clone());
    let diagnose = || {
        format!(
            "systemd's console:\n{}\nthe daemon's output:\n{}\nsystemctl status:\n{}",
            std::fs::read_to_string(&console).unwrap_or_default(),
            std::fs::read_to_string(staged.join("daemon.log")).unwrap_or_default(),
            {
                let (out, err) = manager.systemctl(&["status", "--no-pager", "enetstat.service"]);
                out + &err
            }
        )
    };

    // Serving: the socket answers `stats`.
    let socket = manager.path("/run/enetstat/enetstat.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not serve on {} within 60 s\n{}",
            socket.display(),
            diagnose()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let stats = Conn::connect(&socket).request(&json!({"v": 1, "op": "stats"}));
    assert!(stats["stats"].is_object(), "{stats}");
    let service = cgroup.join("system.slice/enetstat.service");
    let [daemon] = pids_in(&service)[..] else {
        panic!("not one process in {}\n{}", service.display(), diagnose());
    };

    // Capabilities: within the unit's bounding set, and once attached only the two it keeps.
    let unit_caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .map(capability_bits)
        .expect("the unit sets CapabilityBoundingSet");
    let bounding = caps(daemon, "CapBnd");
    assert_eq!(
        bounding & !unit_caps,
        0,
        "bounding set {bounding:#x} beyond the unit's {unit_caps:#x}"
    );
    assert_eq!(
        caps(daemon, "CapEff"),
        capability_bits("CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"),
        "effective capabilities"
    );
    assert_eq!(caps(daemon, "CapAmb"), 0, "AmbientCapabilities= is empty");
    assert_eq!(
        status_field(daemon, "NoNewPrivs"),
        "1",
        "NoNewPrivileges=yes"
    );
    // SystemCallArchitectures=, MemoryDenyWriteExecute=, RestrictAddressFamilies= and the
    // other Protect*/Restrict* settings are seccomp filters.
    assert_eq!(status_field(daemon, "Seccomp"), "2", "seccomp filters");
    assert_eq!(status_field(daemon, "Umask"), "0077", "UMask=0077");

    // The file system: read-only but for its runtime directory; no /home or /root; a /tmp
    // and a /dev of its own; its own hostname namespace.
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    assert_ne!(
        ns(daemon, "mnt"),
        ns(manager.init, "mnt"),
        "a mount namespace of its own"
    );
    assert_ne!(
        ns(daemon, "uts"),
        ns(manager.init, "uts"),
        "ProtectHostname=yes"
    );
    let mounted = mounts(daemon);
    let options = |at: &str| {
        mounted
            .iter()
            .rev()
            .find(|(point, _)| point == at)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("nothing mounted at {at}: {mounted:#?}"))
    };
    let read_only = |o: &str| o.split(',').any(|f| f == "ro");
    for at in ["/", "/usr", "/etc", "/home", "/root"] {
        if at == "/" || mounted.iter().any(|(p, _)| p == at) {
            assert!(read_only(&options(at)), "{at} is writable: {}", options(at));
        }
    }
    assert!(
        mounted.iter().any(|(p, _)| p == "/home") && mounted.iter().any(|(p, _)| p == "/root"),
        "ProtectHome=yes hides /home and /root: {mounted:#?}"
    );
    for hidden in ["/home", "/root"] {
        let mode = std::fs::metadata(format!("/proc/{daemon}/root{hidden}"))
            .map(|m| m.mode() & 0o777)
            .unwrap_or_else(|e| panic!("{hidden}: {e}"));
        assert_eq!(mode, 0, "ProtectHome=yes makes {hidden} inaccessible");
    }
    assert!(
        !read_only(&options("/run/enetstat")),
        "/run/enetstat is writable"
    );
    let inode = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    assert_ne!(
        inode(&format!("/proc/{daemon}/root/tmp")),
        inode("/tmp"),
        "PrivateTmp=yes"
    );
    let block_devices: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{daemon}/root/dev"))
        .unwrap()
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type().is_ok_and(|t| t.is_block_device())
        })
        .map(|e| e.path())
        .collect();
    assert!(
        block_devices.is_empty(),
        "PrivateDevices=yes: {block_devices:?}"
    );

    // Limits: the unit's, where systemd may raise them (it needs CAP_SYS_RESOURCE, which
    // some containers withhold; then it keeps ours). The daemon raises its soft limit.
    let can_raise = caps(std::process::id(), "CapEff") & capability_bits("CAP_SYS_RESOURCE") != 0;
    let (_, our_files) = limit(std::process::id(), "Max open files");
    let want_files = if can_raise || our_files >= 65_536 {
        65_536
    } else {
        our_files
    };
    assert_eq!(
        limit(daemon, "Max open files"),
        (want_files, want_files),
        "LimitNOFILE=65536, soft raised to hard"
    );
    if can_raise {
        assert_eq!(
            limit(daemon, "Max locked memory"),
            (u64::MAX, u64::MAX),
            "LimitMEMLOCK=infinity"
        );
    }

    // The files: the runtime directory 0755, the socket 0660 owned by root:root.
    let run_dir = std::fs::metadata(manager.path("/run/enetstat")).unwrap();
    assert_eq!(run_dir.mode() & 0o7777, 0o755, "RuntimeDirectoryMode=0755");
    let sock = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        (sock.mode() & 0o7777, sock.uid(), sock.gid()),
        (0o660, 0, 0),
        "the socket"
    );

    // A client gets a snapshot through it.
    let out = Command::new(bin)
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "-tan",
            "--recent",
            "10s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("Active Internet connections"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // systemctl stop: SIGTERM, a clean exit, the runtime directory gone.
    let (_, said) = manager.systemctl(&["stop", "enetstat.service"]);
    assert!(said.is_empty(), "systemctl stop: {said}");
    let (show, _) = manager.systemctl(&[
        "show",
        "enetstat.service",
        "-p",
        "ActiveState",
        "-p",
        "Result",
        "-p",
        "ExecMainStatus",
    ]);
    let mut show: Vec<&str> = show.lines().collect();
    show.sort_unstable();
    assert_eq!(
        show,
        ["ActiveState=inactive", "ExecMainStatus=0", "Result=success"],
        "after systemctl stop\n{}",
        diagnose()
    );
    assert!(
        !manager.path("/run/enetstat").exists(),
        "RuntimeDirectory= removed on stop"
    );
    drop(manager);
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
}

//! The Debian package from `cargo xtask dist`: it installs with `dpkg -i`, the installed binary
//! runs, its man pages, completions and systemd unit are where Debian expects them, and it
//! removes cleanly.
//!
//! The package is `$ENETSTAT_DEB` (`cargo xtask test` builds it from the binary under test and
//! sets it), else `<target>/dist/enetstat_*.deb` next to the binary under test. Without one the
//! test says SKIPPED, except under CI (`CI=true`), where it must run and fails instead.
//!
//! It installs into the real system, so it takes care not to clash: two runs on one machine
//! take turns (a lock file), an `enetstat` it did not install is left alone (the test skips, or
//! fails under CI), dpkg's own lock held by apt is waited for, and the package is purged on every
//! path, with the `enetstat` group too when the package made it.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{enetstat_bin, require_root};

const TEST: &str = "debian_package_installs_runs_and_removes";

/// Says loudly that the test cannot run here, and why; under CI, where it must run, fails.
fn skip(why: &str) {
    enetstat_tests::skip(TEST, why);
}

/// The package under test, if there is one.
fn find_deb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENETSTAT_DEB") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ENETSTAT_DEB={} does not exist", p.display());
        return Some(p);
    }
    let bin = enetstat_bin();
    let dist = bin.parent()?.parent()?.join("dist");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dist)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs.pop()
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `dpkg ARGS`, waiting up to a minute while apt or another dpkg holds dpkg's lock.
fn dpkg(args: &[&str]) -> (bool, String) {
    let started = Instant::now();
    loop {
        let (ok, text) = run("dpkg", args);
        let locked = text.contains("frontend lock") || text.contains("database is locked");
        if ok || !locked || started.elapsed() > Duration::from_secs(60) {
            return (ok, text);
        }
        thread::sleep(Duration::from_secs(1));
    }
}

/// What dpkg says of the enetstat package: `install ok installed`, `unknown ok not-installed`,
/// `deinstall ok config-files`...; empty when it has never heard of it.
fn package_status() -> String {
    let (_, status) = run("dpkg-query", &["-W", "-f=${Status}", "enetstat"]);
    if status.contains("no packages found") {
        return String::new();
    }
    status.trim().to_owned()
}

/// Holds an exclusive lock while alive, so that two test runs on one machine (two checkouts, say)
/// never install and purge the package at the same time.
struct MachineLock {
    _file: File,
}

impl MachineLock {
    fn take() -> Self {
        let dir = Path::new("/run/lock");
        let dir = if dir.is_dir() {
            dir.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join("enetstat-dist-test.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        Self { _file: file }
    }
}

/// Purges the package on drop, and the `enetstat` group if the package made it, so a failing
/// test leaves nothing installed.
struct Installed {
    group_was_there: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", "enetstat"]);
        if !self.group_was_there {
            let _ = Command::new("groupdel").arg("enetstat").output();
        }
    }
}

#[test]
fn debian_package_installs_runs_and_removes() {
    if !require_root(TEST) {
        return;
    }
    let Some(deb) = find_deb() else {
        return skip(
            "no package; `cargo xtask test` builds one, else build it with `cargo xtask dist` \
             (or name it in ENETSTAT_DEB)",
        );
    };
    // Dropped last: the package is purged before another run may install it.
    let _lock = MachineLock::take();
    let status = package_status();
    let installed = !status.is_empty()
        && !status.ends_with("not-installed")
        && !status.ends_with("config-files");
    if installed {
        return skip(&format!(
            "an enetstat package is installed already ({status}); not replacing it. Remove it \
             with `dpkg --purge enetstat` to run this test"
        ));
    }
    if Path::new("/usr/bin/enetstat").exists() {
        return skip(
            "/usr/bin/enetstat exists and belongs to no enetstat package; not overwriting it",
        );
    }
    let group_was_there = run("getent", &["group", "enetstat"]).0;
    let _installed = Installed { group_was_there };
    let (ok, text) = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(ok, "dpkg -i {}: {text}", deb.display());

    let (ok, version) = run("/usr/bin/enetstat", &["--version"]);
    assert!(ok, "{version}");
    assert_eq!(
        version.trim(),
        format!("enetstat {}", env!("CARGO_PKG_VERSION"))
    );
    let (ok, help) = run("/usr/bin/enetstat", &["daemon", "--help"]);
    assert!(ok && help.contains("--socket-group"), "{help}");
    // A one-shot snapshot needs no eBPF: the installed binary really works.
    let (ok, snap) = run("/usr/bin/enetstat", &["--standalone", "-tan"]);
    assert!(
        ok && snap.starts_with("Active Internet connections"),
        "{snap}"
    );

    let (_, files) = run("dpkg", &["-L", "enetstat"]);
    for path in [
        "/usr/bin/enetstat",
        "/lib/systemd/system/enetstat.service",
        "/usr/lib/sysusers.d/enetstat.conf",
        "/usr/share/man/man1/enetstat.1.gz",
        "/usr/share/man/man1/enetstat-daemon.1.gz",
        "/usr/share/man/man1/enetstat-watch.1.gz",
        "/usr/share/man/man1/enetstat-top.1.gz",
        "/usr/share/bash-completion/completions/enetstat",
        "/usr/share/zsh/vendor-completions/_enetstat",
        "/usr/share/fish/vendor_completions.d/enetstat.fish",
    ] {
        assert!(
            files.lines().any(|l| l == path),
            "{path} not in the package:\n{files}"
        );
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let man = std::fs::read("/usr/share/man/man1/enetstat.1.gz").unwrap();
    assert_eq!(&man[..2], &[0x1f, 0x8b], "the man page is gzipped");
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/enetstat").unwrap();
    assert!(
        bash.contains("daemon") && bash.contains("--socket"),
        "{bash}"
    );
    // The postinst made the socket's group (or found it there).
    assert!(run("getent", &["group", "enetstat"]).0, "no enetstat group");

    let (ok, text) = dpkg(&["--purge", "enetstat"]);
    assert!(ok, "dpkg --purge: {text}");
    assert!(!Path::new("/usr/bin/enetstat").exists());
    assert!(!Path::new("/lib/systemd/system/enetstat.service").exists());
    let status = package_status();
    assert!(
        status.is_empty() || status.ends_with("not-installed"),
        "after dpkg --purge, dpkg says the package is {status:?}"
    );
}

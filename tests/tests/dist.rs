//! The Debian package from `cargo xtask dist`: it installs with `dpkg -i`, the installed binary
//! runs, its man pages, completions and systemd unit are where Debian expects them, and it
//! removes cleanly.
//!
//! The package is `$ENETSTAT_DEB`, else `<target>/dist/enetstat_*.deb` next to the binary under
//! test; without one the test says SKIPPED (build it with `cargo xtask dist`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use enetstat_tests::{enetstat_bin, require_root};

fn find_deb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENETSTAT_DEB") {
        return Some(PathBuf::from(p));
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

/// Purges the package on drop, so a failing test leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "enetstat"]).output();
    }
}

#[test]
fn debian_package_installs_runs_and_removes() {
    if !require_root("debian_package_installs_runs_and_removes") {
        return;
    }
    let Some(deb) = find_deb() else {
        eprintln!(
            "SKIPPED: debian_package_installs_runs_and_removes: no package; build one with \
             `cargo xtask dist` (or name it in ENETSTAT_DEB)"
        );
        return;
    };
    if Path::new("/usr/bin/enetstat").exists() && !run("dpkg", &["-s", "enetstat"]).0 {
        eprintln!(
            "SKIPPED: debian_package_installs_runs_and_removes: /usr/bin/enetstat exists and \
             belongs to no enetstat package; not overwriting it"
        );
        return;
    }
    let (ok, text) = run("dpkg", &["-i", deb.to_str().unwrap()]);
    let _installed = Installed;
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
    // The postinst made the socket's group.
    assert!(run("getent", &["group", "enetstat"]).0, "no enetstat group");

    let (ok, text) = run("dpkg", &["--purge", "enetstat"]);
    assert!(ok, "dpkg --purge: {text}");
    assert!(!Path::new("/usr/bin/enetstat").exists());
    assert!(!Path::new("/lib/systemd/system/enetstat.service").exists());
}

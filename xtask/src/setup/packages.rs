//! Setup step: system packages, through apt on Debian and Ubuntu. To need another package, add
//! a line to [`PACKAGES`].

use std::{collections::HashSet, io};

use anyhow::{Context as _, Result, bail};

use super::{Mode, already_installed, installed, installing, missing};
use crate::{cmd, privilege::is_root};

/// A Debian package and what it is for.
pub struct Package {
    pub name: &'static str,
    pub why: &'static str,
}

/// Every system package the build, the tests and the benchmarks need.
pub const PACKAGES: &[Package] = &[
    Package {
        // Keep the number in step with `pins::LLVM_MAJOR`.
        name: "llvm-22-dev",
        why: "the LLVM that bpf-linker links against; same major version as the nightly's",
    },
    Package {
        name: "libpolly-22-dev",
        why: "needed to link bpf-linker against llvm-22",
    },
    Package {
        name: "libzstd-dev",
        why: "needed to link bpf-linker against llvm-22",
    },
    Package {
        name: "zlib1g-dev",
        why: "needed to link bpf-linker against llvm-22",
    },
    Package {
        name: "bpftool",
        why: "inspect loaded programs: tests check nothing is left attached",
    },
    Package {
        name: "iproute2",
        why: "`ip netns` and `ss` for the end-to-end tests",
    },
    Package {
        name: "procps",
        why: "`ps` and `pgrep` for the end-to-end tests",
    },
    Package {
        name: "util-linux",
        why: "`setpriv`: the daemon tests run clients as another user; `unshare` and `nsenter` \
              for the systemd unit's test",
    },
    Package {
        name: "systemd",
        why: "`systemd-analyze verify` and a private systemd manager that runs the shipped unit \
              in its test, sandbox and all",
    },
    Package {
        name: "g++",
        why: "libfuzzer-sys compiles libFuzzer (C++) for `cargo xtask fuzz`",
    },
    Package {
        name: "qemu-system-x86",
        why: "`cargo xtask matrix` boots Debian's kernels under QEMU",
    },
    Package {
        name: "busybox-static",
        why: "the shell and tools inside `cargo xtask matrix`'s guests",
    },
    Package {
        name: "nginx-light",
        why: "a real pre-fork server (2 workers) whose access log checks the owners enetstat \
              names; the tests run their own instance on loopback, never the system's",
    },
    Package {
        name: "apache2-utils",
        why: "`ab`, the load generator of the nginx owner tests",
    },
    Package {
        name: "tmux",
        why: "drives `enetstat top` on a real terminal in the end-to-end tests",
    },
    Package {
        name: "prometheus",
        why: "`promtool check metrics` and a real Prometheus server for the daemon's metrics test",
    },
];

/// What only the benchmarks need: the peers measured side by side with enetstat.
pub const BENCH_PACKAGES: &[Package] = &[
    Package {
        name: "libbpf-tools",
        why: "`tcpstates` (libbpf-tools), the peer the overhead benchmark runs beside enetstat",
    },
    Package {
        name: "bpftrace",
        why: "the overhead benchmark's floor: a bpftrace program only counting the tracepoint",
    },
];

pub fn ensure(mode: Mode) -> Result<bool> {
    ensure_list(mode, PACKAGES)
}

/// [`ensure`] for the benchmarks' own packages.
pub fn ensure_bench(mode: Mode) -> Result<bool> {
    ensure_list(mode, BENCH_PACKAGES)
}

fn ensure_list(mode: Mode, packages: &[Package]) -> Result<bool> {
    let names: Vec<&str> = packages.iter().map(|package| package.name).collect();
    let thing = format!("system packages {}", names.join(" "));
    if which::which("apt-get").is_err() || which::which("dpkg-query").is_err() {
        say!(
            "warning: no apt-get/dpkg-query: cannot check system packages on this system. \
             Install the equivalents of these Debian packages yourself:"
        );
        for package in packages {
            say!("  {}: {}", package.name, package.why);
        }
        return Ok(true);
    }

    let absent = absent_packages(&names)?;
    if absent.is_empty() {
        already_installed(&thing);
        return Ok(true);
    }
    let absent_list = absent.join(" ");
    if mode == Mode::Check {
        missing(&format!("system packages {absent_list}"));
        return Ok(false);
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {absent_list}. Installing them needs root: run \
             `apt-get update && apt-get install -y --no-install-recommends {absent_list}` as \
             root (or `cargo xtask setup` as root), then run this again"
        );
    }

    installing(&format!("system packages {absent_list}"));
    cmd::run(cmd::new("apt-get").arg("update").stdout(io::stderr()))?;
    cmd::run(
        cmd::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&absent)
            .stdout(io::stderr()),
    )?;
    let still_absent = absent_packages(&names)?;
    if !still_absent.is_empty() {
        bail!(
            "apt-get reported success, but these packages are still not installed: {}",
            still_absent.join(" ")
        );
    }
    installed(&thing);
    Ok(true)
}

/// The packages in `names` that dpkg does not report as installed.
fn absent_packages<'a>(names: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query exits non-zero when it knows nothing of some package, and still lists the
    // others, so its status says nothing useful here.
    let output = cmd::output(
        cmd::new("dpkg-query")
            .arg("-W")
            .arg(r"-f=${Package}\t${Status}\n")
            .args(names),
    )?
    .context("dpkg-query disappeared")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let present = installed_packages(&stdout);
    Ok(names
        .iter()
        .copied()
        .filter(|name| !present.contains(name))
        .collect())
}

/// Names of installed packages in `dpkg-query -W -f='${Package}\t${Status}\n'` output.
/// A removed package whose configuration files remain reads `deinstall ok config-files`.
fn installed_packages(listing: &str) -> HashSet<&str> {
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pins::LLVM_MAJOR;

    #[test]
    fn only_fully_installed_packages_count() {
        let listing = "bpftool\tinstall ok installed\n\
                       iproute2\tdeinstall ok config-files\n\
                       procps\tinstall ok unpacked\n";
        assert_eq!(installed_packages(listing), HashSet::from(["bpftool"]));
    }

    #[test]
    fn llvm_packages_follow_the_pinned_llvm() {
        let names: Vec<&str> = PACKAGES.iter().map(|package| package.name).collect();
        assert!(names.contains(&format!("llvm-{LLVM_MAJOR}-dev").as_str()));
        assert!(names.contains(&format!("libpolly-{LLVM_MAJOR}-dev").as_str()));
    }
}

//! `cargo xtask matrix`: enetstat's end-to-end checks on the kernels our users run.
//!
//! Each kernel of [`kernels::KERNELS`] is a Debian cloud kernel, fetched with a private apt
//! ([`apt`]), unpacked ([`unpack`]), given an initramfs with busybox, the release `enetstat`,
//! the test helpers and the sock_diag modules ([`initramfs`], [`modules`]), and booted under
//! QEMU ([`boot`]). In the guest, `enetstat-guest` (tests/src/bin/enetstat-guest/) runs the checks with the
//! end-to-end suite's own definition of correct and prints one line per check; [`report`]
//! turns those into a kernel × check table. Everything lives under `target/matrix/`; the
//! downloads are kept, so a second run fetches nothing.

mod apt;
mod boot;
mod cpio;
mod initramfs;
mod kernels;
mod modules;
mod report;
mod unpack;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::{
    build,
    cargo::{self, Profile},
    cmd, setup,
};

use self::{
    apt::Apt,
    boot::{Accel, Guest},
    initramfs::Binary,
    kernels::Resolved,
    report::Row,
};

#[derive(Args)]
pub struct Options {
    /// Run only these kernels (see --list); repeat or separate with commas.
    #[arg(long = "kernel", value_name = "NAME", value_delimiter = ',')]
    kernels: Vec<String>,

    /// List the kernels, resolved to Debian packages, and exit.
    #[arg(long)]
    list: bool,

    /// Update the package indexes even if they were fetched in the last 12 hours.
    #[arg(long)]
    refresh: bool,

    /// Guests running at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,

    /// Virtual CPUs per guest.
    #[arg(long, value_name = "N", default_value_t = 2)]
    smp: usize,

    /// Seconds a guest may run before it is killed and reported as hung.
    #[arg(long, value_name = "SECS", default_value_t = 240)]
    timeout: u64,

    /// How QEMU runs the guests' CPUs.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kernels: Vec::new(),
            list: false,
            refresh: false,
            jobs: None,
            smp: 2,
            timeout: 240,
            accel: Accel::Tcg,
        }
    }
}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure()?;
        if let Err(missing) = prerequisites() {
            bail!("cannot run the kernel matrix: {missing}");
        }
        let apt = Apt::new(&matrix_dir().join("apt"))?;
        apt.update(self.refresh)?;
        self.matrix(&apt)
    }

    /// Everything after the package indexes are there.
    fn matrix(&self, apt: &Apt) -> Result<()> {
        let started = Instant::now();
        let dir = matrix_dir();
        let kernels = kernels::resolve(apt, &self.kernels)?;
        if self.list {
            for k in &kernels {
                println!(
                    "{:<7} {:<28} {:<18} {:<18} {} ({})",
                    k.name,
                    k.release,
                    k.version,
                    k.suite,
                    k.packages.join(" "),
                    k.about
                );
            }
            return Ok(());
        }

        let programs = build_programs()?;
        let common = initramfs::common(&programs)?;
        let images = dir.join("images");
        let logs = dir.join("logs");
        for d in [&images, &logs] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let mut prepared = Vec::new();
        for kernel in &kernels {
            say!(
                "matrix: kernel {} is {} ({} from {})",
                kernel.name,
                kernel.release,
                kernel.version,
                kernel.suite
            );
            let unpacked = unpack::unpack(apt, kernel, &dir.join("kernels"))?;
            let modules = modules::resolve(&unpacked.modules, modules::WANTED)
                .with_context(|| format!("kernel {}", kernel.release))?;
            let mut initrd = common.clone();
            initrd.extend(initramfs::modules(&modules)?);
            let path = images.join(format!("{}.cpio.gz", kernel.name));
            fs::write(&path, initrd).with_context(|| format!("cannot write {}", path.display()))?;
            prepared.push((kernel.clone(), unpacked.vmlinuz, path));
        }
        say!(
            "matrix: prepared {} guests in {:.0?}",
            prepared.len(),
            started.elapsed()
        );

        let rows = self.boot_all(&prepared, &logs)?;
        let table = report::table(&rows);
        let report_path = dir.join("report.md");
        fs::write(&report_path, &table)
            .with_context(|| format!("cannot write {}", report_path.display()))?;
        println!("{table}");
        say!(
            "matrix: {} kernels in {:.0?} (table also in {})",
            rows.len(),
            started.elapsed(),
            report_path.display()
        );
        let failed: usize = rows.iter().map(Row::failed).sum();
        if failed > 0 {
            bail!("the kernel matrix has {failed} failing cell(s); see the table above");
        }
        Ok(())
    }

    /// Boots every guest, `jobs` at a time; rows in the order of `prepared`.
    fn boot_all(&self, prepared: &[(Resolved, PathBuf, PathBuf)], logs: &Path) -> Result<Vec<Row>> {
        let jobs = self
            .jobs
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            })
            .max(1);
        let next = Mutex::new(0usize);
        let rows: Mutex<Vec<Option<Result<Row>>>> =
            Mutex::new((0..prepared.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(prepared.len()) {
                scope.spawn(|| {
                    loop {
                        let i = {
                            let mut next = next
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let i = *next;
                            *next += 1;
                            i
                        };
                        let Some((kernel, vmlinuz, initrd)) = prepared.get(i) else {
                            break;
                        };
                        let row = self.boot_one(kernel, vmlinuz, initrd, logs);
                        rows.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(row);
                    }
                });
            }
        });
        rows.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .into_iter()
            .map(|row| row.context("a guest was never booted")?)
            .collect()
    }

    fn boot_one(
        &self,
        kernel: &Resolved,
        vmlinuz: &Path,
        initrd: &Path,
        logs: &Path,
    ) -> Result<Row> {
        let log = logs.join(format!("{}.log", kernel.name));
        let guest = Guest {
            vmlinuz,
            initrd,
            log: log.clone(),
            no_btf: kernel.no_btf,
            mode: kernel.mode,
        };
        let booted = boot::boot(
            &guest,
            self.accel,
            self.smp.max(1),
            Duration::from_secs(self.timeout),
        )?;
        let row = report::parse(kernel.name, &booted, &log.display().to_string());
        say!(
            "matrix: {} ({}) finished in {:.1} s: {} check(s), {} failed",
            kernel.name,
            kernel.release,
            row.seconds,
            row.checks.len(),
            row.failed()
        );
        Ok(row)
    }
}

/// `cargo xtask test`'s last step. Under `CI=true` a missing prerequisite fails the run,
/// naming it; elsewhere the matrix is skipped with a line saying why.
pub fn run_in_tests() -> Result<()> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = |why: String| skip_or_fail(ci, &why);
    if let Err(missing) = prerequisites() {
        return skip(missing);
    }
    let apt = Apt::new(&matrix_dir().join("apt"))?;
    if let Err(error) = apt.update(false) {
        return skip(format!("{error:#}"));
    }
    Options::default().matrix(&apt)
}

/// Where the matrix keeps everything: `target/matrix`.
fn matrix_dir() -> PathBuf {
    cargo::target_dir().join("matrix")
}

/// Under CI a prerequisite that is missing fails the run; elsewhere the matrix is skipped,
/// loudly.
fn skip_or_fail(ci: bool, why: &str) -> Result<()> {
    if ci {
        bail!("the kernel matrix cannot run under CI=true: {why}");
    }
    say!("SKIPPED: the kernel matrix (cargo xtask matrix): {why}");
    Ok(())
}

/// What the matrix needs on the host, or a message naming what is missing.
fn prerequisites() -> Result<(), String> {
    let tools = [
        (
            boot::QEMU,
            "qemu-system-x86 (cargo xtask setup installs it)",
        ),
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
        ("ldd", "libc-bin"),
        ("gzip", "gzip"),
        ("xz", "xz-utils"),
        ("zstd", "zstd"),
        ("ss", "iproute2 (cargo xtask setup installs it)"),
        ("bpftool", "bpftool (cargo xtask setup installs it)"),
    ];
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| which::which(tool).is_err())
        .map(|(tool, package)| format!("{tool} (Debian package {package})"))
        .collect();
    if !is_static(Path::new(initramfs::BUSYBOX)) {
        missing.push(format!(
            "a static busybox at {} (Debian package busybox-static; cargo xtask setup installs it)",
            initramfs::BUSYBOX
        ));
    }
    if !Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").is_file() {
        missing.push("Debian's archive keys (Debian package debian-archive-keyring)".to_owned());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

/// Whether `path` is an executable without a dynamic loader.
fn is_static(path: &Path) -> bool {
    let Ok(output) = cmd::new("ldd").arg(path).output() else {
        return false;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    path.is_file()
        && (text.contains("not a dynamic executable") || text.contains("statically linked"))
}

/// The release `enetstat` and the test helpers the guest runs, with their paths in the guest.
fn build_programs() -> Result<Vec<Binary>> {
    let enetstat = build::build(Profile::Release)?;
    cmd::run(&mut cargo::nightly([
        "build",
        "--release",
        "--package",
        "enetstat-tests",
        "--bins",
    ]))?;
    let mut programs = vec![Binary {
        guest: "bin/enetstat".to_owned(),
        host: enetstat,
    }];
    for helper in [
        "enetstat-guest",
        "enetstat-peer",
        "enetstat-ender",
        "enetstat-sockets",
    ] {
        programs.push(Binary {
            guest: format!("bin/{helper}"),
            host: Profile::Release.bin(helper),
        });
    }
    for (tool, guest) in [("ss", "usr/bin/ss"), ("bpftool", "usr/sbin/bpftool")] {
        let host = which::which(tool).with_context(|| format!("{tool} is not installed"))?;
        programs.push(Binary {
            guest: guest.to_owned(),
            host,
        });
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_prerequisite_fails_under_ci_and_is_skipped_elsewhere() {
        let why = "missing qemu-system-x86_64 (Debian package qemu-system-x86)";
        let error = skip_or_fail(true, why).unwrap_err().to_string();
        assert!(error.contains("CI=true") && error.contains(why), "{error}");
        assert!(skip_or_fail(false, why).is_ok());
    }
}

//! Booting one guest under QEMU: the kernel and initramfs on the command line, the serial
//! console into a log file, no network device, killed when it outlives its timeout.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::ValueEnum;

use crate::cmd;

/// How QEMU runs the guest's CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// Emulation: works everywhere (on the reference machine KVM fails with "internal
    /// error").
    Tcg,
    /// Hardware virtualization through /dev/kvm.
    Kvm,
}

/// One guest to boot.
pub struct Guest<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub log: PathBuf,
    /// Hide the kernel's BTF and leave tracefs unmounted (see `Kernel::no_btf`).
    pub no_btf: bool,
    /// The mode enetstat must pick in the guest (see `Kernel::mode`).
    pub mode: &'static str,
}

/// How a guest ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// QEMU exited (the guest powered off, or its kernel panicked and `-no-reboot` stopped it).
    Exited(Option<i32>),
    /// Still running at the timeout: killed.
    TimedOut,
}

/// A finished guest: how it ended, how long it ran, and its console output.
pub struct Boot {
    pub ended: Ended,
    pub elapsed: Duration,
    pub console: String,
}

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// Boots `guest` and waits for it, at most `timeout`.
pub fn boot(guest: &Guest<'_>, accel: Accel, smp: usize, timeout: Duration) -> Result<Boot> {
    let log = File::create(&guest.log)
        .with_context(|| format!("cannot create {}", guest.log.display()))?;
    let mut command = cmd::new(QEMU);
    command
        .args([
            "-cpu",
            "max",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .args(["-smp", &smp.to_string()])
        // Multi-threaded TCG runs each vCPU on its own host thread, and its handling of code
        // one vCPU patches while another runs it is not exact: a guest kernel flipping a
        // static key (its own, or a tracepoint enetstat enables) now and then died with
        // "Oops: int3" in code it was patching (seen on 6.12). One host thread for all vCPUs
        // keeps two guest CPUs and their interleaving, and patches exactly.
        .args([
            "-accel",
            if accel == Accel::Kvm {
                "kvm"
            } else {
                "tcg,thread=single"
            },
        ])
        .arg("-kernel")
        .arg(guest.vmlinuz)
        .arg("-initrd")
        .arg(guest.initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off enetstat.mode={}{}",
            guest.mode,
            if guest.no_btf { " enetstat.nobtf" } else { "" }
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    say!("$ {}", cmd::display(&command));
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            break Ended::Exited(status.code());
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break Ended::TimedOut;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let console = String::from_utf8_lossy(&fs::read(&guest.log)?).into_owned();
    Ok(Boot {
        ended,
        elapsed,
        console,
    })
}

//! `cargo xtask test`: netstat-core's tests on the stable toolchain first (the pure core must
//! build without the nightly), then every test in the workspace, including the end-to-end tests, which drive
//! the real release binary named by `ENETSTAT_BIN` and need root, and the Debian-package test,
//! which installs the package named by `ENETSTAT_DEB`, built here from that same binary. Then
//! the fuzz targets run briefly, 40 s in all (`cargo xtask fuzz` runs each longer), and the
//! kernel matrix (`cargo xtask matrix`) runs the end-to-end checks on Debian's kernels under
//! QEMU.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Result, bail};
use clap::Args;

use crate::{build, cargo, cargo::Profile, cmd, dist, fuzz, matrix, privilege::is_root, setup};

#[derive(Args)]
pub struct Options {
    /// Seconds to fuzz for after the tests, in all, split evenly over the fuzz targets; 0
    /// skips fuzzing. At most 60, to keep CI short (`cargo xtask fuzz` fuzzes longer).
    #[arg(long, value_name = "N", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(0..=60))]
    fuzz_seconds: u64,

    /// Do not run the kernel matrix after the tests (not allowed under CI=true).
    #[arg(long)]
    no_matrix: bool,

    /// Extra arguments for `cargo test` (put them after `--`; test-binary arguments after a
    /// second `--`, e.g. `cargo xtask test -- -- --nocapture`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CARGO_TEST_ARGS"
    )]
    args: Vec<OsString>,
}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure_for_tests(self.fuzz_seconds > 0)?;
        say!("netstat-core on the stable toolchain: the pure core builds without the nightly");
        cmd::run(&mut cargo::stable(["test", "-p", "netstat-core"]))?;
        let bin = build::build(Profile::Release)?;
        let deb = package(&bin)?;

        if is_root() {
            say!("running as root: the end-to-end tests will run");
        } else {
            say!(
                "not root: the end-to-end tests will be SKIPPED (they load eBPF programs); \
                 run `cargo xtask test` as root to run them, as CI does"
            );
        }
        let mut command = cargo::nightly([
            "test",
            "--release",
            "--workspace",
            "--exclude",
            "netstat-ebpf",
        ]);
        command.args(&self.args).env("ENETSTAT_BIN", &bin);
        if let Some(deb) = &deb {
            command.env("ENETSTAT_DEB", deb);
        }
        cmd::run(&mut command)?;

        if self.fuzz_seconds > 0 {
            fuzz::fuzz(Duration::from_secs(self.fuzz_seconds))?;
        }

        if self.no_matrix {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                bail!("--no-matrix under CI=true: CI must run the kernel matrix");
            }
            say!("SKIPPED: the kernel matrix (cargo xtask matrix): --no-matrix was given");
        } else {
            matrix::run_in_tests()?;
        }
        Ok(())
    }
}

/// The Debian package of `bin` for the package test, where dpkg-deb can build one.
fn package(bin: &Path) -> Result<Option<PathBuf>> {
    if which::which("dpkg-deb").is_err() {
        say!(
            "no dpkg-deb: the Debian-package test will be SKIPPED (and fail under CI=true), \
             as there is no package to install"
        );
        return Ok(None);
    }
    dist::package(bin).map(Some)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::{Cli, Task};

    #[test]
    fn a_second_separator_goes_on_to_the_test_binaries() {
        let line = [
            "xtask",
            "test",
            "--",
            "-p",
            "enetstat-tests",
            "--",
            "--nocapture",
        ];
        let Task::Test(options) = Cli::parse_from(line).task else {
            unreachable!()
        };
        assert_eq!(options.args, ["-p", "enetstat-tests", "--", "--nocapture"]);
        assert_eq!(options.fuzz_seconds, 40);
    }

    #[test]
    fn fuzzing_can_be_skipped() {
        let line = ["xtask", "test", "--fuzz-seconds", "0", "--", "--lib"];
        let Task::Test(options) = Cli::parse_from(line).task else {
            unreachable!()
        };
        assert_eq!(options.fuzz_seconds, 0);
        assert_eq!(options.args, ["--lib"]);
    }
}

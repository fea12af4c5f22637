//! `cargo xtask test`: every test in the workspace, including the end-to-end tests, which drive
//! the real release binary named by `ENETSTAT_BIN` and need root.

use std::ffi::OsString;

use anyhow::Result;
use clap::Args;

use crate::{build, cargo, cargo::Profile, cmd, privilege::is_root, setup};

#[derive(Args)]
pub struct Options {
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
        setup::ensure()?;
        let bin = build::build(Profile::Release)?;

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
        cmd::run(&mut command)
    }
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
    }
}

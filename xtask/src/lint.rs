//! `cargo xtask lint`: rustfmt and clippy over the whole workspace, warnings denied.
//!
//! The eBPF crate is linted on its own, the way aya-template does it: it is `no_std` with its
//! own panic handler, so its test harness must be built with `panic=abort`.
//!
//! The cargo-fuzz crate (`fuzz/`, outside the workspace) gets rustfmt only: clippy would have to
//! build netstat-core's dependencies once more, in its own workspace, for four short files that
//! `cargo xtask test` compiles anyway.

use anyhow::{Result, bail};
use clap::Args;

use crate::{cargo, cmd, setup};

#[derive(Args)]
pub struct Options {}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure()?;
        let checks: [(&str, &[&str]); 4] = [
            ("rustfmt", &["fmt", "--all", "--", "--check"]),
            (
                "rustfmt (fuzz)",
                &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
            ),
            (
                "clippy (workspace)",
                &[
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "netstat-ebpf",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
            (
                "clippy (netstat-ebpf)",
                &[
                    "clippy",
                    "--package",
                    "netstat-ebpf",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                    "-C",
                    "panic=abort",
                    "-Zpanic_abort_tests",
                ],
            ),
        ];
        // Run every check even after one fails, so one run shows everything to fix.
        let mut failed = Vec::new();
        for (name, args) in checks {
            if let Err(error) = cmd::run(&mut cargo::nightly(args)) {
                say!("{error:#}");
                failed.push(name);
            }
        }
        if !failed.is_empty() {
            bail!("lint failed: {}", failed.join(", "));
        }
        say!("lint: all clean");
        Ok(())
    }
}

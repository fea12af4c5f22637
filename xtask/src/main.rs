//! `cargo xtask`: enetstat's developer tasks in Rust rather than shell, so they run the same on
//! every machine and say what they do.
//!
//! This crate must build on the machine's default stable toolchain: it is what installs the
//! pinned nightly that everything else needs (DESIGN.md, decision 8). Every task runs `setup`
//! first, so a fresh clone needs only `cargo xtask test`.
//!
//! All of xtask's own output goes to stderr, so `cargo xtask run -- ... | jq` sees only
//! enetstat's output on stdout.

/// Prints one line of xtask's own output, prefixed so it stands out from the tools it runs.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("xtask: {}", format_args!($($arg)*))
    };
}

mod bench;
mod build;
mod cargo;
mod cmd;
mod dist;
mod fuzz;
mod lint;
mod matrix;
mod pins;
mod privilege;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "enetstat's set-up, build, run, test, fuzz and lint tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and tests need (pinned nightly, system packages, bpf-linker,
    /// cargo-fuzz); idempotent.
    Setup(setup::Options),
    /// Build the `enetstat` binary (and, through its build script, the eBPF programs).
    Build(build::Options),
    /// Build and run `enetstat` as root: `cargo xtask run -- ARGS...`.
    Run(run::Options),
    /// Build, then run all tests (end-to-end ones only as root), then fuzz briefly.
    Test(test::Options),
    /// Fuzz the daemon's request parser with cargo-fuzz (installed if missing).
    Fuzz(fuzz::Options),
    /// Check formatting and run clippy on every crate, warnings denied.
    Lint(lint::Options),
    /// Run every benchmark (overhead, lossless, replay, latency, scale) and write the results.
    Bench(bench::Options),
    /// Build a Debian package (binary, systemd unit, man pages, completions) with dpkg-deb.
    Dist(dist::Options),
    /// Boot Debian's kernels (5.10 to the newest) under QEMU and run the end-to-end checks in
    /// each; print a kernel x check table.
    Matrix(matrix::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup(options) => options.run(),
        Task::Build(options) => options.run(),
        Task::Run(options) => options.run(),
        Task::Test(options) => options.run(),
        Task::Fuzz(options) => options.run(),
        Task::Lint(options) => options.run(),
        Task::Bench(options) => options.run(),
        Task::Dist(options) => options.run(),
        Task::Matrix(options) => options.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line and never a backtrace, even
            // with RUST_BACKTRACE set: a failed command is an expected outcome, not a bug.
            say!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}

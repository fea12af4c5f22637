//! `cargo xtask setup`: everything the build needs that cargo cannot fetch by itself, installed
//! idempotently. Each step checks first and says what it found, so running it on a ready
//! machine is quick and changes nothing; every other task runs it first.

mod bpf_linker;
mod kernel;
mod packages;
mod toolchain;

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args)]
pub struct Options {
    /// Only report what is present and what is missing; install nothing. Fails if anything
    /// is missing.
    #[arg(long)]
    check: bool,
}

impl Options {
    pub fn run(self) -> Result<()> {
        let mode = if self.check {
            Mode::Check
        } else {
            Mode::Install
        };
        setup(mode)
    }
}

/// Installs whatever is missing; for tasks that need a ready machine.
pub fn ensure() -> Result<()> {
    setup(Mode::Install)
}

/// Whether a step may install what it finds missing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Install,
    Check,
}

/// A step: checks one thing and, in [`Mode::Install`], installs it if missing. Returns whether
/// the thing is ready; errors when installing fails or is impossible here.
type Step = fn(Mode) -> Result<bool>;

/// In order: the packages provide the LLVM that bpf-linker is built against.
const STEPS: &[(&str, Step)] = &[
    ("the pinned nightly toolchain", toolchain::ensure),
    ("system packages", packages::ensure),
    ("bpf-linker", bpf_linker::ensure),
];

fn setup(mode: Mode) -> Result<()> {
    let started = Instant::now();
    let mut not_ready = Vec::new();
    for (name, step) in STEPS {
        if !step(mode)? {
            not_ready.push(*name);
        }
    }
    kernel::check();
    if !not_ready.is_empty() {
        bail!(
            "missing: {}; run `cargo xtask setup` to install",
            not_ready.join(", ")
        );
    }
    say!("setup: ready ({:.1?})", started.elapsed());
    Ok(())
}

fn already_installed(thing: &str) {
    say!("{thing} ... ok (already installed)");
}

fn installing(thing: &str) {
    say!("installing {thing} ...");
}

fn installed(thing: &str) {
    say!("{thing} ... ok (installed)");
}

fn missing(thing: &str) {
    say!("{thing} ... MISSING");
}

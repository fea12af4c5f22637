//! `cargo xtask setup`: everything the build needs that cargo cannot fetch by itself, installed
//! idempotently. Each step checks first and says what it found, so running it on a ready
//! machine is quick and changes nothing; every other task runs it first.

mod bpf_linker;
mod cargo_fuzz;
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
        setup(mode, &[STEPS, TEST_STEPS, FUZZ_STEPS])
    }
}

/// Installs whatever is missing; for tasks that need a ready machine.
pub fn ensure() -> Result<()> {
    setup(Mode::Install, &[STEPS])
}

/// [`ensure`], and the peers the benchmarks measure; for `cargo xtask bench`.
pub fn ensure_with_bench_peers() -> Result<()> {
    setup(Mode::Install, &[STEPS, BENCH_STEPS])
}

/// [`ensure`], and what fuzzing needs too; for `cargo xtask fuzz`.
pub fn ensure_with_fuzzing() -> Result<()> {
    setup(Mode::Install, &[STEPS, FUZZ_STEPS])
}

/// [`ensure`], what only the tests need, and what fuzzing needs when they fuzz; for
/// `cargo xtask test`.
pub fn ensure_for_tests(fuzzing: bool) -> Result<()> {
    if fuzzing {
        setup(Mode::Install, &[STEPS, TEST_STEPS, FUZZ_STEPS])
    } else {
        setup(Mode::Install, &[STEPS, TEST_STEPS])
    }
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

/// What building enetstat needs. In order: the packages provide the LLVM that bpf-linker is
/// built against.
const STEPS: &[(&str, Step)] = &[
    ("the pinned nightly toolchain", toolchain::ensure),
    ("system packages", packages::ensure),
    ("bpf-linker", bpf_linker::ensure),
];

/// What only the tests need: the stable toolchain that netstat-core's tests also run on.
const TEST_STEPS: &[(&str, Step)] = &[("the stable toolchain", toolchain::ensure_stable)];

/// What only the benchmarks need: the peers they measure side by side.
const BENCH_STEPS: &[(&str, Step)] = &[("benchmark peers", packages::ensure_bench)];

/// What only fuzzing needs, after [`STEPS`] (the packages provide the C++ compiler that
/// libFuzzer is built with).
const FUZZ_STEPS: &[(&str, Step)] = &[("cargo-fuzz", cargo_fuzz::ensure)];

fn setup(mode: Mode, steps: &[&[(&str, Step)]]) -> Result<()> {
    let started = Instant::now();
    let mut not_ready = Vec::new();
    for (name, step) in steps.iter().copied().flatten() {
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

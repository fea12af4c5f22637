//! `cargo xtask fuzz`: runs the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) one after the
//! other, built with the pinned nightly. `cargo xtask test` runs them briefly too.
//!
//! - `request`: the daemon's request parser;
//! - `filter`: the filter language (lengths, nesting, Unicode);
//! - `sockdiag`: the sock_diag reply parser (kernel bytes read at hand-written offsets);
//! - `http`: the metrics endpoint's request handling.
//!
//! It builds in `<target>/fuzz` and keeps the corpora libFuzzer grows there; it only reads the
//! seeds checked in under `fuzz/corpus/TARGET`. A failing input lands in
//! `fuzz/artifacts/TARGET/`, and cargo-fuzz prints the command that replays it.

use std::{fs, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{cargo, cmd, setup};

/// The fuzz targets, `[[bin]]`s of `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 4] = ["request", "filter", "sockdiag", "http"];

#[derive(Args)]
pub struct Options {
    /// How long to fuzz each target, in seconds (building comes on top).
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure_with_fuzzing()?;
        fuzz_each(Duration::from_secs(self.seconds))
    }
}

/// Fuzzes every target for `total` in all, split evenly (at least a second each).
pub fn fuzz(total: Duration) -> Result<()> {
    let each = (total.as_secs() / TARGETS.len() as u64).max(1);
    fuzz_each(Duration::from_secs(each))
}

/// Fuzzes every target for `each`.
fn fuzz_each(each: Duration) -> Result<()> {
    for target in TARGETS {
        fuzz_one(target, each)?;
    }
    Ok(())
}

/// Builds `target` and fuzzes it for `time`, which must be at least a second (setup, with
/// cargo-fuzz, must have run). Fails when libFuzzer finds an input that breaks a property.
fn fuzz_one(target: &str, time: Duration) -> Result<()> {
    let fuzz_dir = cargo::workspace_root().join("fuzz");
    let target_dir = cargo::target_dir().join("fuzz");
    let corpus = target_dir.join("corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    say!("fuzzing `{target}` for {time:?}, after building it");
    let mut command = cargo::nightly(["fuzz", "run", "--fuzz-dir"]);
    command
        .arg(&fuzz_dir)
        .arg("--target-dir")
        .arg(&target_dir)
        .arg(target)
        // libFuzzer adds what it finds to the first directory only.
        .arg(&corpus)
        .arg(fuzz_dir.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={}", time.as_secs()))
        .arg("-print_final_stats=1");
    let dict = fuzz_dir.join(format!("{target}.dict"));
    if dict.exists() {
        command.arg(format!("-dict={}", dict.display()));
    }
    cmd::run(&mut command)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::{Cli, Task};

    #[test]
    fn fuzzing_lasts_a_minute_unless_told_and_never_zero_seconds() {
        let seconds = |line: &[&str]| match Cli::try_parse_from(line).map(|cli| cli.task) {
            Ok(Task::Fuzz(options)) => Some(options.seconds),
            _ => None,
        };
        assert_eq!(seconds(&["xtask", "fuzz"]), Some(60));
        assert_eq!(seconds(&["xtask", "fuzz", "--seconds", "5"]), Some(5));
        // libFuzzer reads -max_total_time=0 as "forever".
        assert_eq!(seconds(&["xtask", "fuzz", "--seconds", "0"]), None);
    }
}

//! `cargo xtask fuzz`: runs the cargo-fuzz target `request` (the daemon's request parser,
//! `fuzz/fuzz_targets/request.rs`) for a while, built with the pinned nightly. `cargo xtask test`
//! runs it briefly too.
//!
//! It builds in `<target>/fuzz` and keeps the corpus libFuzzer grows there; it only reads the
//! seeds checked in under `fuzz/corpus/request`. A failing input lands in
//! `fuzz/artifacts/request/`, and cargo-fuzz prints the command that replays it.

use std::{fs, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{cargo, cmd, setup};

/// The fuzz target, a `[[bin]]` of `fuzz/Cargo.toml`.
const TARGET: &str = "request";

#[derive(Args)]
pub struct Options {
    /// How long to fuzz, in seconds (building the target comes on top).
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure_with_fuzzing()?;
        fuzz(Duration::from_secs(self.seconds))
    }
}

/// Builds the target and fuzzes it for `time`, which must be at least a second (setup, with
/// cargo-fuzz, must have run). Fails when libFuzzer finds an input that breaks a property.
pub fn fuzz(time: Duration) -> Result<()> {
    let fuzz_dir = cargo::workspace_root().join("fuzz");
    let target_dir = cargo::target_dir().join("fuzz");
    let corpus = target_dir.join("corpus").join(TARGET);
    fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    say!("fuzzing `{TARGET}` for {time:?}, after building it");
    cmd::run(
        cargo::nightly(["fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg("--target-dir")
            .arg(&target_dir)
            .arg(TARGET)
            // libFuzzer adds what it finds to the first directory only.
            .arg(&corpus)
            .arg(fuzz_dir.join("corpus").join(TARGET))
            .arg("--")
            .arg(format!("-max_total_time={}", time.as_secs()))
            .arg(format!(
                "-dict={}",
                fuzz_dir.join(format!("{TARGET}.dict")).display()
            ))
            .arg("-print_final_stats=1"),
    )
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

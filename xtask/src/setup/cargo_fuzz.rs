//! Setup step for fuzzing: cargo-fuzz, which builds and runs the targets in `fuzz/`. Only
//! `cargo xtask fuzz`, `cargo xtask test` (which fuzzes briefly) and `cargo xtask setup` need
//! it, so building or running enetstat never waits for it.

use std::io;

use anyhow::{Result, bail};

use super::{Mode, already_installed, installed, installing, missing};
use crate::{cmd, pins::CARGO_FUZZ_VERSION};

pub fn ensure(mode: Mode) -> Result<bool> {
    let thing = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let why = match probe()? {
        Some(version) if version == CARGO_FUZZ_VERSION => {
            already_installed(&thing);
            return Ok(true);
        }
        Some(version) => format!("found {version}"),
        None => "not found".to_owned(),
    };
    if mode == Mode::Check {
        missing(&format!("{thing} ({why})"));
        return Ok(false);
    }

    installing(&format!(
        "{thing} ({why}; building it takes a minute or two)"
    ));
    // The default toolchain builds it: the one cargo xtask itself runs on.
    cmd::run(
        cmd::new("cargo")
            .args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION])
            .arg("--locked")
            // Replace another version.
            .arg("--force")
            .stdout(io::stderr()),
    )?;
    match probe()? {
        Some(version) if version == CARGO_FUZZ_VERSION => installed(&thing),
        Some(version) => {
            bail!("cargo installed {thing}, but `cargo-fuzz --version` says {version}")
        }
        None => bail!(
            "cargo installed {thing}, but it is not on PATH nor in {}",
            cmd::cargo_bin_dir().display()
        ),
    }
    Ok(true)
}

/// The version of the cargo-fuzz that children of xtask would run; `None` when there is none.
fn probe() -> Result<Option<String>> {
    let Some(output) = cmd::output(cmd::new("cargo-fuzz").arg("--version"))? else {
        return Ok(None);
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(Some(match version_in(&stdout) {
        Some(version) if output.status.success() => version.to_owned(),
        _ => format!(
            "an unusable one (`cargo-fuzz --version`: {}: {:?})",
            output.status,
            stdout.trim()
        ),
    }))
}

/// The version in `cargo-fuzz --version` output, `cargo-fuzz 0.13.2`.
fn version_in(stdout: &str) -> Option<&str> {
    stdout.trim().strip_prefix("cargo-fuzz ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_off_the_version_line() {
        assert_eq!(version_in("cargo-fuzz 0.13.2\n"), Some("0.13.2"));
        assert_eq!(version_in("bpf-linker 0.13.0\n"), None);
        assert_eq!(version_in(""), None);
    }
}

//! Setup steps: the pinned nightly and its components, and the stable toolchain that
//! netstat-core's tests also run on, through rustup. Nothing installs it
//! implicitly (`RUSTUP_AUTO_INSTALL=0`, and no rust-toolchain.toml, so that xtask itself still
//! builds on the default stable), so this step must.

use std::io;

use anyhow::{Context as _, Result, bail};

use super::{Mode, already_installed, installed, installing, missing};
use crate::{
    cmd,
    pins::{NIGHTLY, NIGHTLY_COMPONENTS, STABLE},
};

pub fn ensure(mode: Mode) -> Result<bool> {
    let thing = format!("toolchain {NIGHTLY} with {}", NIGHTLY_COMPONENTS.join(", "));
    match probe(NIGHTLY, NIGHTLY_COMPONENTS)? {
        State::Ready(version) => {
            already_installed(&format!("{thing} ({version})"));
            return Ok(true);
        }
        State::Absent if mode == Mode::Check => {
            missing(&thing);
            return Ok(false);
        }
        State::Lacking(components) if mode == Mode::Check => {
            missing(&format!("{thing}: lacks {}", components.join(", ")));
            return Ok(false);
        }
        State::Absent | State::Lacking(_) => {}
    }

    installing(&thing);
    // Adds only the missing components when the toolchain is already there. Updating rustup
    // itself is not this step's business.
    cmd::run(
        cmd::new("rustup")
            .args(["toolchain", "install", NIGHTLY, "--profile", "minimal"])
            .arg("--no-self-update")
            .args(["--component", &NIGHTLY_COMPONENTS.join(",")])
            .stdout(io::stderr()),
    )?;
    match probe(NIGHTLY, NIGHTLY_COMPONENTS)? {
        State::Ready(version) => installed(&format!("{thing} ({version})")),
        State::Absent => bail!("rustup reported success, but `{NIGHTLY}` is still not usable"),
        State::Lacking(components) => bail!(
            "rustup reported success, but `{NIGHTLY}` still lacks {}",
            components.join(", ")
        ),
    }
    Ok(true)
}

/// The stable toolchain (minimal profile: rustc, cargo, the standard library), for
/// `cargo +stable test -p netstat-core`. Usually there already: xtask itself builds with it.
pub fn ensure_stable(mode: Mode) -> Result<bool> {
    let thing = format!("toolchain {STABLE}");
    match probe(STABLE, &[])? {
        State::Ready(version) => {
            already_installed(&format!("{thing} ({version})"));
            return Ok(true);
        }
        State::Absent | State::Lacking(_) if mode == Mode::Check => {
            missing(&thing);
            return Ok(false);
        }
        State::Absent | State::Lacking(_) => {}
    }
    installing(&thing);
    cmd::run(
        cmd::new("rustup")
            .args(["toolchain", "install", STABLE, "--profile", "minimal"])
            .arg("--no-self-update")
            .stdout(io::stderr()),
    )?;
    match probe(STABLE, &[])? {
        State::Ready(version) => installed(&format!("{thing} ({version})")),
        State::Absent | State::Lacking(_) => {
            bail!("rustup reported success, but `{STABLE}` is still not usable")
        }
    }
    Ok(true)
}

/// What rustup has of a toolchain.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Absent,
    Lacking(Vec<&'static str>),
    /// Holds `rustc --version`.
    Ready(String),
}

/// What rustup has of `toolchain`, and which of `components` it lacks.
fn probe(toolchain: &str, components: &[&'static str]) -> Result<State> {
    let output = cmd::output(cmd::new("rustup").args(["run", toolchain, "rustc", "--version"]))?
        .context("rustup is not installed: install it from https://rustup.rs")?;
    if !output.status.success() {
        return Ok(State::Absent);
    }
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();

    let mut list = cmd::new("rustup");
    list.args(["component", "list", "--installed", "--toolchain", toolchain]);
    let shown = cmd::display(&list);
    let output = cmd::output(&mut list)?.context("rustup disappeared")?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let lacking = lacking_components(&String::from_utf8_lossy(&output.stdout), components);
    Ok(if lacking.is_empty() {
        State::Ready(version)
    } else {
        State::Lacking(lacking)
    })
}

/// The `wanted` components absent from `rustup component list --installed` output, whose
/// lines are names like `rust-src` or `clippy-x86_64-unknown-linux-gnu`.
fn lacking_components(installed: &str, wanted: &[&'static str]) -> Vec<&'static str> {
    let has = |component: &str| {
        installed.lines().map(str::trim).any(|line| {
            line.strip_prefix(component)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
    };
    wanted
        .iter()
        .copied()
        .filter(|component| !has(component))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_matched_with_or_without_a_target_suffix() {
        let listed = "cargo-x86_64-unknown-linux-gnu\nrust-src\n\
                      rust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            lacking_components(listed, NIGHTLY_COMPONENTS),
            ["clippy", "rustfmt"]
        );
        let listed =
            format!("{listed}clippy-x86_64-unknown-linux-gnu\nrustfmt-x86_64-unknown-linux-gnu\n");
        assert!(lacking_components(&listed, NIGHTLY_COMPONENTS).is_empty());
        assert_eq!(
            lacking_components("", NIGHTLY_COMPONENTS),
            NIGHTLY_COMPONENTS
        );
    }

    #[test]
    fn an_uninstalled_toolchain_is_absent() {
        assert_eq!(
            probe("nightly-1999-01-01", NIGHTLY_COMPONENTS).unwrap(),
            State::Absent
        );
    }
}

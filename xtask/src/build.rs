//! `cargo xtask build`: the `enetstat` binary. The eBPF programs come along: netstat-user's
//! build script compiles them with aya-build, which is why the nightly and bpf-linker must be
//! set up first.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{
    cargo::{self, Profile},
    cmd, setup,
};

/// The binary the user runs.
pub const BIN: &str = "enetstat";

#[derive(Args)]
pub struct Options {
    /// Build with optimizations (target/release/enetstat).
    #[arg(long)]
    release: bool,
}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure()?;
        let profile = if self.release {
            Profile::Release
        } else {
            Profile::Debug
        };
        let bin = build(profile)?;
        say!("built {}", bin.display());
        Ok(())
    }
}

/// Builds netstat-user with `profile` (setup must have run) and returns the binary's path.
pub fn build(profile: Profile) -> Result<PathBuf> {
    cmd::run(cargo::nightly(["build", "--package", "netstat-user"]).args(profile.flags()))?;
    Ok(profile.bin(BIN))
}

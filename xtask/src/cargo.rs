//! Cargo with the pinned nightly, run from the workspace root, and where its outputs land.
//! Every task that builds, tests, lints or benchmarks the project goes through [`nightly`].

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    cmd,
    pins::{NIGHTLY, STABLE},
};

/// `cargo +NIGHTLY <args>` in the workspace root. `cargo` is rustup's proxy, which is what
/// understands `+toolchain`.
pub fn nightly<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = cmd::new("cargo");
    command
        .arg(format!("+{NIGHTLY}"))
        .args(args)
        .current_dir(workspace_root());
    command
}

/// `cargo +stable <args>` in the workspace root: for netstat-core, which must build without
/// the nightly.
pub fn stable<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = cmd::new("cargo");
    command
        .arg(format!("+{STABLE}"))
        .args(args)
        .current_dir(workspace_root());
    command
}

/// The workspace root: xtask's own manifest directory is one level below it.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the workspace root")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root) or `target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// A cargo build profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The profile's arguments to `cargo build`/`cargo test`.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Profile::Debug => &[],
            Profile::Release => &["--release"],
        }
    }

    /// Where a binary built with this profile lands.
    pub fn bin(self, name: &str) -> PathBuf {
        let dir = match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        };
        target_dir().join(dir).join(name)
    }
}

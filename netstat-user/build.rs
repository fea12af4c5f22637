//! Builds the kernel programs (`netstat-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR`, where `probe` embeds it. The toolchain is pinned because bpf-linker must share
//! its LLVM major version with rustc; `cargo xtask setup` installs both.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;
// A build-dependency only so that cargo rebuilds us when the kernel crate changes (see
// Cargo.toml); named so that `unused_crate_dependencies` sees it used.
use netstat_ebpf as _;

/// The pinned nightly, from the file xtask's `pins::NIGHTLY` reads too.
const NIGHTLY: &str = include_str!("../nightly-toolchain.txt").trim_ascii();

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "netstat-ebpf")
        .ok_or_else(|| anyhow!("the netstat-ebpf package is missing from the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(NIGHTLY),
    )
}

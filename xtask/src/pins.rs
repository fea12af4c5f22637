//! The pinned versions, in one place because they must move together.
//!
//! bpf-linker must link against the same LLVM major version as the nightly rustc that emits
//! the eBPF bitcode, or linking fails with unreadable-bitcode errors. nightly-2026-07-01 is rustc
//! 1.98.0-nightly with LLVM 22; aya 0.16 needs rustc >= 1.98, and later nightlies move to LLVM
//! 23, which Debian does not ship (DESIGN.md, decision 8).

/// The toolchain for everything except xtask itself, from `nightly-toolchain.txt` at the root,
/// which `netstat-user/build.rs` also reads to compile the eBPF crate: one pin for both. Not a
/// `rust-toolchain.toml`, which would make rustup refuse to run xtask before it could install
/// the toolchain (DESIGN.md, decision 8).
pub const NIGHTLY: &str = include_str!("../../nightly-toolchain.txt").trim_ascii();

/// The toolchain netstat-core's tests also run on (`cargo xtask test`), to show that the pure
/// core builds without the nightly, aya or the eBPF build. The current stable, not a pinned
/// release: what it guards is "builds on stable", and netstat-core's `rust-version` says the
/// oldest it was checked on.
pub const STABLE: &str = "stable";

/// Components of [`NIGHTLY`]: `rust-src` for `-Z build-std=core` on the BPF target, the other
/// two for `cargo xtask lint`.
pub const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy", "rustfmt"];

/// The LLVM major version of [`NIGHTLY`]; bpf-linker is built against this one.
pub const LLVM_MAJOR: u32 = 22;

/// bpf-linker's minor series; any patch release of it will do.
pub const BPF_LINKER_SERIES: &str = "0.13.";

/// The exact bpf-linker release `setup` installs.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The exact cargo-fuzz release `cargo xtask fuzz` installs (built with the default stable, like
/// bpf-linker); it builds the fuzz targets with [`NIGHTLY`], as sanitizers need a nightly.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

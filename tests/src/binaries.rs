//! Finding the binaries under test.

use std::env;
use std::path::{Path, PathBuf};

/// The `enetstat` binary under test: `$ENETSTAT_BIN` (set by `cargo xtask test`), else
/// `<workspace>/target/release/enetstat`, else `<workspace>/target/debug/enetstat`.
///
/// # Panics
///
/// When none exists, with a message saying how to build it.
pub fn enetstat_bin() -> PathBuf {
    if let Some(path) = env::var_os("ENETSTAT_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "ENETSTAT_BIN={} does not exist; run the end-to-end tests with `cargo xtask test`, \
             which builds enetstat and sets ENETSTAT_BIN",
            path.display()
        );
        return path;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let candidates = [
        workspace.join("target/release/enetstat"),
        workspace.join("target/debug/enetstat"),
    ];
    for candidate in &candidates {
        if candidate.is_file() {
            return candidate.clone();
        }
    }
    panic!(
        "the enetstat binary was not found (ENETSTAT_BIN is unset; looked at {} and {}); run the \
         end-to-end tests with `cargo xtask test`, which builds enetstat and sets ENETSTAT_BIN",
        candidates[0].display(),
        candidates[1].display()
    );
}

/// The `enetstat-peer` binary: `$ENETSTAT_PEER_BIN`, else next to the test executable's
/// directory, where cargo puts the package's binaries (`target/<profile>/enetstat-peer`, while
/// tests run from `target/<profile>/deps/`).
///
/// # Panics
///
/// When it does not exist.
pub fn peer_bin() -> PathBuf {
    if let Some(path) = env::var_os("ENETSTAT_PEER_BIN") {
        return PathBuf::from(path);
    }
    let exe = env::current_exe().expect("cannot find the running test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("enetstat-peer"))
        .unwrap_or_default();
    assert!(
        path.is_file(),
        "enetstat-peer was not found at {}; build it with `cargo build -p enetstat-tests` (cargo \
         test builds it) or set ENETSTAT_PEER_BIN",
        path.display()
    );
    path
}

/// The `enetstat-ender` binary (connections that end every way there is), next to
/// `enetstat-peer`.
///
/// # Panics
///
/// When it does not exist.
pub fn ender_bin() -> PathBuf {
    let path = peer_bin().with_file_name("enetstat-ender");
    assert!(
        path.is_file(),
        "enetstat-ender was not found at {}; `cargo test -p enetstat-tests` builds it",
        path.display()
    );
    path
}

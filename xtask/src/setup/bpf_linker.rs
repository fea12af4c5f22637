//! Setup step: bpf-linker, which links the eBPF crate. It must be built against the same LLVM
//! major version as the pinned nightly (see `pins`), so it is built from source against the
//! system's LLVM rather than downloaded with whatever LLVM it bundles.

use std::{fs, io, path::Path};

use anyhow::{Context as _, Result, bail};

use super::{Mode, already_installed, installed, installing, missing};
use crate::{
    cmd,
    pins::{BPF_LINKER_SERIES, BPF_LINKER_VERSION, LLVM_MAJOR},
};

pub fn ensure(mode: Mode) -> Result<bool> {
    let thing = format!("bpf-linker {BPF_LINKER_SERIES}x for LLVM {LLVM_MAJOR}");
    let why = match probe()? {
        Found::Ready(version) => {
            already_installed(&format!("bpf-linker {version} for LLVM {LLVM_MAJOR}"));
            return Ok(true);
        }
        Found::Absent => "not found".to_owned(),
        Found::Unfit(why) => why,
    };
    if mode == Mode::Check {
        missing(&format!("{thing} ({why})"));
        return Ok(false);
    }

    installing(&format!(
        "{thing} ({why}; building it takes a minute or two)"
    ));
    // Without LLVM_PREFIX, llvm-sys takes the first `llvm-config` on PATH, which on Debian
    // bookworm is LLVM 14.
    let prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    if !Path::new(&prefix).join("bin/llvm-config").exists() {
        bail!(
            "LLVM {LLVM_MAJOR} is not installed in {prefix}, and bpf-linker must be built \
             against it: install it (Debian/Ubuntu: llvm-{LLVM_MAJOR}-dev \
             libpolly-{LLVM_MAJOR}-dev) and run this again"
        );
    }
    // The default toolchain builds it: the one cargo xtask itself runs on.
    cmd::run(
        cmd::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{LLVM_MAJOR}"),
            ])
            // Replace an unfit install of the same version (built against another LLVM).
            .arg("--force")
            .stdout(io::stderr()),
    )?;
    match probe()? {
        Found::Ready(version) => installed(&format!("bpf-linker {version} for LLVM {LLVM_MAJOR}")),
        Found::Absent => bail!(
            "cargo installed bpf-linker, but it is not on PATH nor in {}",
            cmd::cargo_bin_dir().display()
        ),
        Found::Unfit(why) => bail!("cargo installed bpf-linker, but {why}"),
    }
    Ok(true)
}

/// The bpf-linker that children of xtask would run.
enum Found {
    Absent,
    /// Present but not usable; says why.
    Unfit(String),
    /// Holds the version.
    Ready(String),
}

fn probe() -> Result<Found> {
    let Some(output) = cmd::output(cmd::new("bpf-linker").arg("--version"))? else {
        return Ok(Found::Absent);
    };
    if !output.status.success() {
        // Typically a dynamically linked LLVM that is gone.
        return Ok(Found::Unfit(format!(
            "`bpf-linker --version` failed: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(version) = stdout.trim().strip_prefix("bpf-linker ") else {
        return Ok(Found::Unfit(format!(
            "`bpf-linker --version` printed {:?}",
            stdout.trim()
        )));
    };
    if !version.starts_with(BPF_LINKER_SERIES) {
        return Ok(Found::Unfit(format!(
            "found version {version}, need {BPF_LINKER_SERIES}x"
        )));
    }
    let llvm = format!("llvm-{LLVM_MAJOR}");
    if let Some(features) = cargo_install_features(version)?
        && !features.contains(&llvm)
    {
        return Ok(Found::Unfit(format!(
            "bpf-linker {version} was installed without the `{llvm}` feature ({features:?})"
        )));
    }
    Ok(Found::Ready(version.to_owned()))
}

/// The features `cargo install` built bpf-linker `version` with, from cargo's install record;
/// `None` when cargo did not install it (then we cannot tell, and trust it).
fn cargo_install_features(version: &str) -> Result<Option<Vec<String>>> {
    let record = cmd::cargo_home().join(".crates2.json");
    let text = match fs::read_to_string(&record) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", record.display())),
    };
    Ok(features_in_record(&text, version))
}

/// Looks up `bpf-linker <version>` in the text of cargo's `.crates2.json`.
fn features_in_record(record: &str, version: &str) -> Option<Vec<String>> {
    let record: serde_json::Value = serde_json::from_str(record).ok()?;
    let key = format!("bpf-linker {version} ");
    let (_, install) = record
        .get("installs")?
        .as_object()?
        .iter()
        .find(|(name, _)| name.starts_with(&key))?;
    let features = install.get("features")?.as_array()?;
    Some(
        features
            .iter()
            .filter_map(|feature| Some(feature.as_str()?.to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"installs":{
        "bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":
            {"version_req":"=0.13.0","bins":["bpf-linker"],"features":["llvm-22"],
             "all_features":false,"no_default_features":true}}}"#;

    #[test]
    fn features_come_from_the_matching_install() {
        assert_eq!(
            features_in_record(RECORD, "0.13.0"),
            Some(vec!["llvm-22".to_owned()])
        );
        assert_eq!(features_in_record(RECORD, "0.13.1"), None);
        assert_eq!(features_in_record("not json", "0.13.0"), None);
    }
}

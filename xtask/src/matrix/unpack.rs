//! A kernel's packages unpacked (`dpkg-deb -x`) into `target/matrix/kernels/<release>/`, once:
//! where its `vmlinuz` and its modules are.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{apt::Apt, kernels::Resolved};
use crate::cmd;

/// An unpacked kernel.
pub struct Unpacked {
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` (or `usr/lib/...`) inside the unpacked tree.
    pub modules: PathBuf,
}

/// Downloads (or finds in the cache) and unpacks `kernel`'s packages under `dir`.
pub fn unpack(apt: &Apt, kernel: &Resolved, dir: &Path) -> Result<Unpacked> {
    let root = dir.join(&kernel.release);
    let done = root.join(format!(".unpacked-{}", kernel.version));
    if !done.is_file() {
        let debs = kernel
            .packages
            .iter()
            .map(|package| apt.download(package, &kernel.version))
            .collect::<Result<Vec<_>>>()?;
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        for deb in &debs {
            cmd::run(cmd::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
        }
        fs::write(&done, b"").with_context(|| format!("cannot write {}", done.display()))?;
    }
    locate(&root, &kernel.release)
}

/// Where the kernel and its modules are: `boot/vmlinuz-<release>` (up to 6.18) or
/// `usr/lib/modules/<release>/vmlinuz` (the split packages of 6.19+).
fn locate(root: &Path, release: &str) -> Result<Unpacked> {
    let module_dirs = [
        root.join("lib/modules").join(release),
        root.join("usr/lib/modules").join(release),
    ];
    let Some(modules) = module_dirs.iter().find(|d| d.join("kernel").is_dir()) else {
        bail!(
            "kernel {release}: no modules in its packages (looked for {})",
            module_dirs[0].display()
        );
    };
    let kernels = [
        root.join("boot").join(format!("vmlinuz-{release}")),
        modules.join("vmlinuz"),
    ];
    let Some(vmlinuz) = kernels.iter().find(|k| k.is_file()) else {
        bail!(
            "kernel {release}: no vmlinuz in its packages (looked at {} and {})",
            kernels[0].display(),
            kernels[1].display()
        );
    };
    Ok(Unpacked {
        vmlinuz: vmlinuz.clone(),
        modules: modules.clone(),
    })
}

//! `cargo xtask dist`: a Debian package of enetstat, built with `dpkg-deb`: the release binary,
//! the systemd unit and its sysusers file (the `enetstat` group), man pages and bash, zsh and
//! fish completions generated from the CLI definition (`enetstat generate-docs`). The package
//! lands in `<target>/dist/enetstat_<version>_<arch>.deb`.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{
    build,
    cargo::{self, Profile},
    cmd, setup,
};

#[derive(Args)]
pub struct Options {}

const DESCRIPTION: &str = "netstat rebuilt on eBPF: every TCP state transition, live\n \
enetstat traces every TCP state transition with an eBPF program, keeps an exact live socket\n \
table, shows connections polling tools miss, how long sockets spend in each state and the\n \
process that owns each socket. Includes a daemon (systemd unit) with a Unix-socket API and\n \
Prometheus metrics.";

const POSTINST: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  \
getent group enetstat >/dev/null || groupadd --system enetstat\n  \
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\nfi\n";

const POSTRM: &str =
    "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n";

const PRERM: &str = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then \
systemctl stop enetstat.service 2>/dev/null || true; fi\n";

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure()?;
        let deb = dist()?;
        say!("built {}", deb.display());
        Ok(())
    }
}

fn write(path: &Path, text: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    write(to, bytes, mode)
}

fn arch() -> Result<String> {
    let out = cmd::output(cmd::new("dpkg").arg("--print-architecture"))?
        .context("dpkg is missing: `cargo xtask dist` builds a Debian package with dpkg-deb")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the release binary, then the package; returns the package's path.
pub fn dist() -> Result<PathBuf> {
    let bin = build::build(Profile::Release)?;
    package(&bin)
}

/// Packages `bin`, the release binary [`build::build`] built, and returns the package's path.
pub fn package(bin: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = arch()?;
    let out_dir = cargo::target_dir().join("dist");
    let root = out_dir.join(format!("enetstat_{version}_{arch}"));
    let _ = fs::remove_dir_all(&root);
    let docs = out_dir.join("docs");
    let _ = fs::remove_dir_all(&docs);
    cmd::run(cmd::new(bin).arg("generate-docs").arg(&docs))?;

    let ws = cargo::workspace_root();
    copy(bin, &root.join("usr/bin/enetstat"), 0o755)?;
    copy(
        &ws.join("dist/enetstat.service"),
        &root.join("lib/systemd/system/enetstat.service"),
        0o644,
    )?;
    copy(
        &ws.join("dist/enetstat.sysusers"),
        &root.join("usr/lib/sysusers.d/enetstat.conf"),
        0o644,
    )?;
    let man1 = root.join("usr/share/man/man1");
    fs::create_dir_all(&man1)?;
    for page in fs::read_dir(docs.join("man"))? {
        let page = page?.path();
        let name = page.file_name().context("a man page")?.to_owned();
        copy(&page, &man1.join(&name), 0o644)?;
        cmd::run(cmd::new("gzip").args(["-9nf"]).arg(man1.join(&name)))?;
    }
    let completions = docs.join("completions");
    for (file, dest) in [
        (
            "enetstat.bash",
            "usr/share/bash-completion/completions/enetstat",
        ),
        ("_enetstat", "usr/share/zsh/vendor-completions/_enetstat"),
        (
            "enetstat.fish",
            "usr/share/fish/vendor_completions.d/enetstat.fish",
        ),
    ] {
        copy(&completions.join(file), &root.join(dest), 0o644)?;
    }
    let size_kib = fs::metadata(bin)?.len() / 1024 + 64;
    let control = format!(
        "Package: enetstat\nVersion: {version}\nSection: net\nPriority: optional\n\
         Architecture: {arch}\nMaintainer: enetstat maintainers <enetstat@users.noreply.github.com>\n\
         Installed-Size: {size_kib}\nDepends: libc6\nHomepage: https://github.com/enetstat/enetstat\n\
         Description: {DESCRIPTION}\n"
    );
    write(&root.join("DEBIAN/control"), control, 0o644)?;
    write(&root.join("DEBIAN/postinst"), POSTINST, 0o755)?;
    write(&root.join("DEBIAN/prerm"), PRERM, 0o755)?;
    write(&root.join("DEBIAN/postrm"), POSTRM, 0o755)?;
    let deb = out_dir.join(format!("enetstat_{version}_{arch}.deb"));
    cmd::run(
        cmd::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&deb),
    )?;
    Ok(deb)
}

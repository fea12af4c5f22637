//! The guest's initramfs, in two gzipped `newc` cpio archives the kernel unpacks one after the
//! other: a common one (busybox, `/init`, the enetstat binaries, `ss`, `bpftool`, their dynamic
//! loader and libraries) built once per run, and a small one per kernel with its modules.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, Result, bail};

use super::{
    cpio::{Kind, Writer},
    modules::Module,
};
use crate::cmd;

/// The guest's `/init`.
const INIT: &str = include_str!("init.sh");
/// A statically linked busybox: `busybox-static` installs it here.
pub const BUSYBOX: &str = "/bin/busybox";

/// What goes into the initramfs from the host: a path in the guest and a file on the host.
/// Dynamically linked programs bring their loader and libraries along.
pub struct Binary {
    pub guest: String,
    pub host: PathBuf,
}

/// Files by their path in the guest (relative), in an order where a directory comes first.
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, (Vec<u8>, u32)>,
}

impl Tree {
    fn add(&mut self, guest: &str, data: Vec<u8>, perm: u32) {
        self.files
            .insert(guest.trim_start_matches('/').to_owned(), (data, perm));
    }

    fn add_host_file(&mut self, guest: &str, host: &Path, perm: u32) -> Result<()> {
        let data = fs::read(host).with_context(|| format!("cannot read {}", host.display()))?;
        self.add(guest, data, perm);
        Ok(())
    }

    /// `host` at `guest`, and every library `ldd` says it loads, at the path ldd names.
    fn add_program(&mut self, guest: &str, host: &Path) -> Result<()> {
        self.add_host_file(guest, host, 0o755)?;
        for library in libraries(host)? {
            let at = library.to_string_lossy().into_owned();
            self.add_host_file(&at, &library, 0o755)?;
        }
        Ok(())
    }

    /// The cpio archive (`dirs` first, then every file's parent directories before it),
    /// gzipped.
    fn archive(&self, extra: impl FnOnce(&mut Writer<Vec<u8>>) -> Result<()>) -> Result<Vec<u8>> {
        let mut writer = Writer::new(Vec::new());
        let mut dirs: Vec<String> = Vec::new();
        for name in self.files.keys() {
            let mut at = String::new();
            for part in name
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |s| s.1)
            {
                if !at.is_empty() {
                    at.push('/');
                }
                at.push_str(part);
                if !dirs.contains(&at) {
                    dirs.push(at.clone());
                }
            }
        }
        dirs.sort();
        for dir in &dirs {
            writer.entry(dir, Kind::Dir)?;
        }
        for (name, (data, perm)) in &self.files {
            writer.entry(name, Kind::File(data, *perm))?;
        }
        extra(&mut writer)?;
        gzip(&writer.finish()?)
    }
}

/// The common archive: `/init`, busybox, the programs, `/dev/console` (the kernel opens it
/// for init's output before anything is mounted) and the mount points.
pub fn common(programs: &[Binary]) -> Result<Vec<u8>> {
    let mut tree = Tree::default();
    tree.add("init", INIT.as_bytes().to_vec(), 0o755);
    tree.add_host_file("bin/busybox", Path::new(BUSYBOX), 0o755)?;
    for program in programs {
        tree.add_program(&program.guest, &program.host)?;
    }
    tree.add(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    );
    tree.add("etc/group", b"root:x:0:\n".to_vec(), 0o644);
    tree.archive(|w| {
        for dir in ["dev", "proc", "sys", "tmp", "run", "root"] {
            w.entry(dir, Kind::Dir)?;
        }
        w.entry("dev/console", Kind::CharDev(5, 1))?;
        Ok(())
    })
}

/// The per-kernel archive: `matrix-modules/<name>.ko` and `matrix-modules/order`, the names
/// in load order.
pub fn modules(modules: &[Module]) -> Result<Vec<u8>> {
    let mut tree = Tree::default();
    let mut order = String::new();
    for module in modules {
        tree.add(
            &format!("matrix-modules/{}.ko", module.name),
            module.elf.clone(),
            0o644,
        );
        order.push_str(&module.name);
        order.push('\n');
    }
    tree.add("matrix-modules/order", order.into_bytes(), 0o644);
    tree.archive(|_| Ok(()))
}

/// The libraries and loader `ldd` lists for `program` (none for a static one).
fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let mut command = cmd::new("ldd");
    command.arg(program);
    let output = command
        .output()
        .with_context(|| format!("cannot run `{}`", cmd::display(&command)))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "`ldd {}` failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_ldd(&stdout)
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and `/lib64/ld-linux-x86-64.so.2
/// (0x...)` lines; `linux-vdso.so.1` has no file. A library ldd cannot find is an error.
fn parse_ldd(stdout: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for line in stdout.lines().map(str::trim) {
        let path = match line.split_once(" => ") {
            Some((name, rest)) => {
                if rest.starts_with("not found") {
                    bail!("ldd: {name} not found");
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            found.push(PathBuf::from(path));
        }
    }
    Ok(found)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = cmd::new("gzip")
        .args(["-n", "-6", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    let mut stdin = child.stdin.take().context("gzip's stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().context("cannot wait for gzip")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the gzip writer panicked"))?
        .context("cannot write to gzip")?;
    if !output.status.success() {
        bail!("gzip failed: {}", output.status);
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f2)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }
}

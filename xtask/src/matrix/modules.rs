//! The kernel modules a guest must load, with their dependencies, in load order.
//!
//! Debian's packages do not ship `modules.dep` (depmod writes it when the package is
//! installed), so the dependencies come from where depmod takes them: the `depends=` entry in
//! each module's `.modinfo` ELF section. Modules are decompressed here (`.ko.xz`, `.ko.zst`,
//! `.ko.gz`), so the guest's busybox `insmod` loads plain `.ko` files.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// What the snapshot needs on Debian's kernels (TCP and UDP over sock_diag).
pub const WANTED: &[&str] = &["inet_diag", "tcp_diag", "udp_diag"];

/// A module ready to load: its name and its uncompressed contents.
pub struct Module {
    pub name: String,
    pub elf: Vec<u8>,
}

/// `wanted` and their dependencies, dependencies first. A module the kernel has built in (in
/// `modules.builtin`) needs no loading and is left out.
pub fn resolve(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let index = index(&modules_dir.join("kernel"))?;
    let builtin: HashSet<String> = fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| normalize(f.trim_end_matches(".ko")))
        .collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        visit(&normalize(name), &index, &builtin, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    order: &mut Vec<Module>,
) -> Result<()> {
    if !seen.insert(name.to_owned()) || builtin.contains(name) {
        return Ok(());
    }
    let Some(path) = index.get(name) else {
        bail!("module {name} is neither in the kernel's package nor built in");
    };
    let elf = decompress(path)?;
    for dependency in depends(&elf).with_context(|| format!("reading {}", path.display()))? {
        visit(&normalize(&dependency), index, builtin, seen, order)?;
    }
    order.push(Module {
        name: name.to_owned(),
        elf,
    });
    Ok(())
}

/// Module names treat `-` and `_` alike.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every module file under `dir`, by module name.
fn index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
            let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .find_map(|ext| file.strip_suffix(ext));
            if let Some(stem) = stem {
                found.insert(normalize(stem), path);
            }
        }
    }
    Ok(found)
}

fn decompress(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    };
    let mut command = cmd::new(tool);
    command.args(["-d", "-c"]).arg(path);
    let output = command
        .output()
        .with_context(|| format!("cannot run {tool} to decompress {}", path.display()))?;
    if !output.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd::display(&command),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// The `depends=` list of a module's `.modinfo` section (64-bit little-endian ELF).
fn depends(elf: &[u8]) -> Result<Vec<String>> {
    let modinfo = section(elf, ".modinfo")?;
    Ok(modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| list.split(|&b| b == b','))
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

fn section<'a>(elf: &'a [u8], wanted: &str) -> Result<&'a [u8]> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |at: usize| -> Result<usize> {
        let b = elf.get(at..at + 2).context("truncated ELF")?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |at: usize| -> Result<usize> {
        let b = elf.get(at..at + 4).context("truncated ELF")?;
        Ok(u32::from_le_bytes(b.try_into()?) as usize)
    };
    let u64_at = |at: usize| -> Result<usize> {
        let b = elf.get(at..at + 8).context("truncated ELF")?;
        Ok(usize::try_from(u64::from_le_bytes(b.try_into()?))?)
    };
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| shoff + i * shentsize;
    let names_at = u64_at(header(shstrndx) + 0x18)?;
    for i in 0..shnum {
        let h = header(i);
        let name_start = names_at + u32_at(h)?;
        let name = elf
            .get(name_start..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .context("truncated ELF section name")?;
        if name == wanted.as_bytes() {
            let (offset, size) = (u64_at(h + 0x18)?, u64_at(h + 0x20)?);
            return elf
                .get(offset..offset + size)
                .context("truncated ELF section");
        }
    }
    bail!("no {wanted} section")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF file with a `.shstrtab` and a `.modinfo` section.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let names_at = 64;
        let modinfo_at = names_at + names.len();
        let shoff = modinfo_at + modinfo.len();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf.extend_from_slice(names);
        elf.extend_from_slice(modinfo);
        let header = |name: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, names_at, names.len()));
        elf.extend(header(11, modinfo_at, modinfo.len()));
        elf
    }

    #[test]
    fn depends_come_from_the_modinfo_section() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=inet_diag,sock-diag\0name=tcp_diag\0");
        assert_eq!(depends(&elf).unwrap(), ["inet_diag", "sock-diag"]);
        let none = elf_with_modinfo(b"license=GPL\0depends=\0name=inet_diag\0");
        assert!(depends(&none).unwrap().is_empty());
    }

    #[test]
    fn a_file_that_is_not_elf64_is_refused() {
        assert!(depends(b"\x7fELF\x01\x01rest").is_err());
        assert!(depends(&elf_with_modinfo(b"x")[..80]).is_err());
    }

    #[test]
    fn dependencies_load_first_and_builtins_not_at_all() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let net = dir.join("kernel/net/ipv4");
        fs::create_dir_all(&net).unwrap();
        let module = |name: &str, deps: &str| {
            let info = format!("depends={deps}\0name={name}\0");
            fs::write(
                net.join(format!("{name}.ko")),
                elf_with_modinfo(info.as_bytes()),
            )
            .unwrap();
        };
        module("tcp_diag", "inet_diag");
        module("udp_diag", "inet_diag");
        module("inet_diag", "sock_diag");
        module("sock_diag", "");
        fs::write(
            dir.join("modules.builtin"),
            "kernel/net/core/sock_diag.ko\n",
        )
        .unwrap();
        let order: Vec<String> = resolve(&dir, &["tcp_diag", "udp_diag"])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(order, ["inet_diag", "tcp_diag", "udp_diag"]);
    }
}

//! The kernels of the matrix: which Debian cloud kernel each row is, and how its package is
//! chosen from the package indexes. Every row is discovered, not pinned: the newest build of
//! the row's series in the row's suites, so the matrix follows Debian's security updates.

use std::cmp::Ordering;

use anyhow::{Context as _, Result, bail};

use super::apt::{Apt, Candidate};

/// Debian's cloud kernels end their ABI name with this.
const FLAVOUR: &str = "-cloud-amd64";

/// One row of the matrix.
pub struct Kernel {
    /// The row's name, as `--kernel` takes it.
    pub name: &'static str,
    /// What it stands for.
    pub about: &'static str,
    /// The suites its package may come from.
    suites: &'static [&'static str],
    /// Which ABI names (`5.10.0-46`, `6.12.118+deb13`) belong to the row.
    series: fn(&str) -> bool,
    /// Boot with the kernel's BTF hidden and tracefs unmounted: a kernel built without
    /// CONFIG_DEBUG_INFO_BTF, as custom and embedded kernels often are.
    pub no_btf: bool,
    /// The mode enetstat must pick there by probing the kernel (`-v`, the daemon's `stats`):
    /// the guest fails its `expected_mode` check on any other.
    pub mode: &'static str,
}

/// Every row, oldest first.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        about: "bullseye (Debian 11); Amazon Linux 2's series",
        suites: &["bullseye", "bullseye-security"],
        series: |abi| numbered(abi, "5.10.0-"),
        no_btf: false,
        mode: "tp_btf_cookie_field",
    },
    Kernel {
        name: "6.1",
        about: "bookworm (Debian 12)",
        suites: &["bookworm", "bookworm-security", "bookworm-updates"],
        series: |abi| numbered(abi, "6.1.0-"),
        no_btf: false,
        mode: "tp_btf",
    },
    Kernel {
        name: "6.12",
        about: "trixie (Debian 13)",
        suites: &["trixie", "trixie-security", "trixie-updates"],
        series: |abi| abi.starts_with("6.12."),
        no_btf: false,
        mode: "tp_btf",
    },
    Kernel {
        name: "6.12-nobtf",
        about: "trixie's kernel with its BTF hidden: the classic-tracepoint fallback",
        suites: &["trixie", "trixie-security", "trixie-updates"],
        series: |abi| abi.starts_with("6.12."),
        no_btf: true,
        mode: "tracepoint",
    },
    Kernel {
        name: "6.16",
        about: "trixie-backports",
        suites: &["trixie-backports"],
        series: |abi| abi.starts_with("6.16."),
        no_btf: false,
        mode: "tp_btf",
    },
    Kernel {
        name: "newest",
        about: "trixie-backports' newest",
        suites: &["trixie-backports"],
        series: |_| true,
        no_btf: false,
        mode: "tp_btf",
    },
];

/// `PREFIX<digits>`: Debian's numbered ABIs (`5.10.0-46`), not the backports of another
/// release (`6.1.0-0.deb11.52`).
fn numbered(abi: &str, prefix: &str) -> bool {
    abi.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A row resolved to packages.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: &'static str,
    pub about: &'static str,
    /// The ABI name (`6.1.0-57-cloud-amd64`): `uname -r` in the guest.
    pub release: String,
    /// The package version (`6.1.192-3`).
    pub version: String,
    pub suite: String,
    /// See [`Kernel::no_btf`].
    pub no_btf: bool,
    /// See [`Kernel::mode`].
    pub mode: &'static str,
    /// What to download: the image, and for the split kernels (6.19+) the packages holding
    /// the kernel binary and the modules.
    pub packages: Vec<String>,
}

/// The rows named in `only` (all when empty), each resolved to its newest package.
pub fn resolve(apt: &Apt, only: &[String]) -> Result<Vec<Resolved>> {
    for name in only {
        if !KERNELS.iter().any(|k| k.name == name) {
            let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
            bail!(
                "no kernel named `{name}` in the matrix; the kernels are: {}",
                names.join(", ")
            );
        }
    }
    let names = apt.package_names("linux-")?;
    let images: Vec<String> = names
        .iter()
        .filter(|n| image_abi(n).is_some())
        .cloned()
        .collect();
    let candidates = apt.candidates(&images)?;
    KERNELS
        .iter()
        .filter(|k| only.is_empty() || only.iter().any(|n| n == k.name))
        .map(|kernel| {
            let best = candidates
                .iter()
                .filter(|c| kernel.suites.contains(&c.suite.as_str()))
                .filter(|c| image_abi(&c.package).is_some_and(kernel.series))
                .max_by(|a, b| compare_versions(&a.version, &b.version))
                .with_context(|| {
                    format!(
                        "no linux-image-*{FLAVOUR} package of kernel {} in {}",
                        kernel.name,
                        kernel.suites.join(", ")
                    )
                })?;
            Ok(resolved(kernel, best, &names))
        })
        .collect()
}

fn resolved(kernel: &Kernel, best: &Candidate, names: &[String]) -> Resolved {
    let abi = image_abi(&best.package).unwrap_or_default();
    let release = format!("{abi}{FLAVOUR}");
    let mut packages = vec![best.package.clone()];
    for kind in ["binary", "modules"] {
        let split = format!("linux-{kind}-{release}");
        if names.contains(&split) {
            packages.push(split);
        }
    }
    Resolved {
        name: kernel.name,
        about: kernel.about,
        release,
        version: best.version.clone(),
        suite: best.suite.clone(),
        no_btf: kernel.no_btf,
        mode: kernel.mode,
        packages,
    }
}

/// `6.12.118+deb13` for `linux-image-6.12.118+deb13-cloud-amd64`; `None` for other packages
/// (the `-dbg` and `-unsigned` ones, other flavours, the series metapackages like
/// `linux-image-6.1-cloud-amd64`).
fn image_abi(package: &str) -> Option<&str> {
    let abi = package
        .strip_prefix("linux-image-")?
        .strip_suffix(FLAVOUR)?;
    let (major_minor, rest) = abi.split_once('-').map_or((abi, ""), |(a, b)| (a, b));
    let dots = major_minor.split('+').next()?.matches('.').count();
    // A real ABI has three numbers (6.12.118+deb13) or an ABI number (5.10.0-46).
    (dots == 2 || !rest.is_empty()).then_some(abi)
}

/// Debian's version order (`dpkg --compare-versions`): epoch, then upstream version and
/// revision, each compared as alternating non-digit and digit runs, `~` before everything.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, a) = split_epoch(a);
    let (eb, b) = split_epoch(b);
    ea.cmp(&eb).then_with(|| {
        let (ua, ra) = a.rsplit_once('-').unwrap_or((a, ""));
        let (ub, rb) = b.rsplit_once('-').unwrap_or((b, ""));
        compare_part(ua, ub).then_with(|| compare_part(ra, rb))
    })
}

fn split_epoch(v: &str) -> (u64, &str) {
    match v.split_once(':') {
        Some((epoch, rest)) => (epoch.parse().unwrap_or(0), rest),
        None => (0, v),
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        let (na, ra) = split_run(a, |c| !c.is_ascii_digit());
        let (nb, rb) = split_run(b, |c| !c.is_ascii_digit());
        let mut i = 0;
        loop {
            let (x, y) = (na.get(i).copied(), nb.get(i).copied());
            if x.is_none() && y.is_none() {
                break;
            }
            let order = weight(x).cmp(&weight(y));
            if order != Ordering::Equal {
                return order;
            }
            i += 1;
        }
        let (da, ra) = split_run(ra, |c| c.is_ascii_digit());
        let (db, rb) = split_run(rb, |c| c.is_ascii_digit());
        let order = number(da).cmp(&number(db));
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (ra, rb);
    }
    Ordering::Equal
}

fn split_run(s: &[u8], keep: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&c| !keep(c)).unwrap_or(s.len());
    s.split_at(n)
}

/// dpkg's character order: `~` first, then the end of the string, then letters, then the rest.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn number(digits: &[u8]) -> u128 {
    digits.iter().fold(0u128, |n, d| {
        n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_dpkg_sorts_them() {
        use Ordering::*;
        let cases = [
            ("6.1.192-3", "6.1.192-2", Greater),
            ("7.3.4-1~bpo13+1", "7.2.12-1~bpo13+1", Greater),
            ("6.19.6-2~bpo13+1", "6.19.10-1~bpo13+1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1:1.0", "2.0", Greater),
            ("5.10.262-1", "5.10.262-1", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn only_real_cloud_images_have_an_abi() {
        assert_eq!(
            image_abi("linux-image-5.10.0-46-cloud-amd64"),
            Some("5.10.0-46")
        );
        assert_eq!(
            image_abi("linux-image-6.12.118+deb13-cloud-amd64"),
            Some("6.12.118+deb13")
        );
        assert_eq!(image_abi("linux-image-6.1-cloud-amd64"), None);
        assert_eq!(image_abi("linux-image-6.12-cloud-amd64"), None);
        assert_eq!(image_abi("linux-image-cloud-amd64"), None);
        assert_eq!(image_abi("linux-image-6.1.0-57-cloud-amd64-dbg"), None);
        assert_eq!(image_abi("linux-image-6.1.0-57-amd64"), None);
    }

    #[test]
    fn series_keep_to_their_release() {
        assert!(numbered("5.10.0-46", "5.10.0-"));
        assert!(numbered("6.1.0-57", "6.1.0-"));
        assert!(!numbered("6.1.0-0.deb11.52", "6.1.0-"));
    }
}

//! Debian's package indexes and packages through apt, with a private configuration under
//! `target/matrix/apt`: its own sources list, state, cache and log directories, so the
//! machine's own apt configuration is neither read nor touched. `APT_CONFIG` points apt at our
//! `apt.conf`, which apt reads before anything else and which moves every directory apt uses
//! (including `Dir::Etc`, so `/etc/apt/apt.conf.d` is not read either).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// The archive keys every suite is signed with (Debian's `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Where the packages come from.
const ARCHIVE: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";
/// The suites the kernels come from: each release with its security (and updates or
/// backports) suite.
const SOURCES: &[(&str, &str)] = &[
    (ARCHIVE, "bullseye"),
    (SECURITY, "bullseye-security"),
    (ARCHIVE, "bookworm"),
    (ARCHIVE, "bookworm-updates"),
    (SECURITY, "bookworm-security"),
    (ARCHIVE, "trixie"),
    (ARCHIVE, "trixie-updates"),
    (SECURITY, "trixie-security"),
    (ARCHIVE, "trixie-backports"),
];
/// Package indexes younger than this are used as they are (pass `--refresh` to update).
const FRESH: Duration = Duration::from_secs(12 * 3600);

/// A private apt installation: configuration, indexes and downloaded packages.
pub struct Apt {
    root: PathBuf,
}

/// One version of a package, from `apt-cache madison`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub package: String,
    pub version: String,
    /// The suite it is in (`bookworm-security`).
    pub suite: String,
}

impl Apt {
    /// Lays out the private apt root at `root` (idempotent).
    pub fn new(root: &Path) -> Result<Apt> {
        let apt = Apt {
            root: root.to_path_buf(),
        };
        for dir in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "etc/trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
            "debs",
        ] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("cannot create {}", root.join(dir).display()))?;
        }
        write_if_changed(&root.join("etc/sources.list"), &sources_list())?;
        write_if_changed(&root.join("apt.conf"), &apt_conf(root))?;
        // An empty dpkg status: apt must not look at what the machine has installed.
        write_if_changed(&root.join("state/status"), "")?;
        Ok(apt)
    }

    /// `apt-get update` with the private configuration, unless the indexes are fresh.
    pub fn update(&self, refresh: bool) -> Result<()> {
        let stamp = self.root.join("state/updated");
        let age = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        if !refresh && age.is_some_and(|age| age < FRESH) {
            say!(
                "matrix: Debian package indexes fetched {} min ago (--refresh to update)",
                age.unwrap_or_default().as_secs() / 60
            );
            return Ok(());
        }
        let output = cmd::output(self.command("apt-get").args(["-q", "update"]))?
            .context("apt-get is not installed")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // apt-get update exits 0 even when some index could not be fetched.
        let failed = stderr
            .lines()
            .find(|l| l.starts_with("E:") || l.starts_with("W: Failed to fetch"));
        if !output.status.success() || failed.is_some() {
            bail!(
                "cannot fetch Debian's package indexes from deb.debian.org (is the network \
                 there?): {}",
                failed.unwrap_or(stderr.trim())
            );
        }
        fs::write(&stamp, b"").with_context(|| format!("cannot write {}", stamp.display()))?;
        Ok(())
    }

    /// Every package name starting with `prefix`.
    pub fn package_names(&self, prefix: &str) -> Result<Vec<String>> {
        let stdout = self.query(self.command("apt-cache").args(["pkgnames", prefix]))?;
        let mut names: Vec<String> = stdout.lines().map(str::to_owned).collect();
        names.sort();
        Ok(names)
    }

    /// Every version of `packages` in every suite.
    pub fn candidates(&self, packages: &[String]) -> Result<Vec<Candidate>> {
        if packages.is_empty() {
            return Ok(Vec::new());
        }
        let stdout = self.query(self.command("apt-cache").arg("madison").args(packages))?;
        Ok(parse_madison(&stdout))
    }

    /// The `.deb` of `package` at `version`, downloaded into `debs/` unless it is there.
    pub fn download(&self, package: &str, version: &str) -> Result<PathBuf> {
        let dir = self.root.join("debs");
        let file = dir.join(format!(
            "{package}_{}_amd64.deb",
            version.replace(':', "%3a")
        ));
        if file.is_file() {
            return Ok(file);
        }
        cmd::run(
            self.command("apt-get")
                .args(["-q", "download"])
                .arg(format!("{package}={version}"))
                .current_dir(&dir)
                .stdout(std::io::stderr()),
        )?;
        if !file.is_file() {
            bail!(
                "apt-get download {package}={version} did not leave {}",
                file.display()
            );
        }
        Ok(file)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = cmd::new(program);
        command.env("APT_CONFIG", self.root.join("apt.conf"));
        command
    }

    fn query(&self, command: &mut Command) -> Result<String> {
        let shown = cmd::display(command);
        let output = command
            .output()
            .with_context(|| format!("cannot run `{shown}`"))?;
        if !output.status.success() {
            bail!(
                "`{shown}` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn sources_list() -> String {
    SOURCES
        .iter()
        .fold(String::new(), |mut list, (uri, suite)| {
            let _ = writeln!(list, "deb [signed-by={KEYRING}] {uri} {suite} main");
            list
        })
}

fn apt_conf(root: &Path) -> String {
    let root = root.display();
    format!(
        "// Written by `cargo xtask matrix`: a private apt, apart from the machine's.\n\
         Dir \"{root}/\";\n\
         Dir::Etc \"{root}/etc/\";\n\
         Dir::Etc::Main \"apt.conf\";\n\
         Dir::Etc::Parts \"apt.conf.d\";\n\
         Dir::Etc::SourceList \"sources.list\";\n\
         Dir::Etc::SourceParts \"sources.list.d\";\n\
         Dir::Etc::Preferences \"preferences\";\n\
         Dir::Etc::PreferencesParts \"preferences.d\";\n\
         Dir::Etc::Trusted \"trusted.gpg\";\n\
         Dir::Etc::TrustedParts \"trusted.gpg.d\";\n\
         Dir::State \"{root}/state/\";\n\
         Dir::State::status \"{root}/state/status\";\n\
         Dir::Cache \"{root}/cache/\";\n\
         Dir::Log \"{root}/log/\";\n\
         APT::Architecture \"amd64\";\n\
         APT::Architectures {{ \"amd64\"; }};\n\
         Acquire::Languages \"none\";\n\
         APT::Sandbox::User \"root\";\n"
    )
}

/// `pkg | version | http://deb.debian.org/debian-security bookworm-security/main amd64
/// Packages` lines.
fn parse_madison(stdout: &str) -> Vec<Candidate> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('|').map(str::trim);
            let package = fields.next()?.to_owned();
            let version = fields.next()?.to_owned();
            let source = fields.next()?;
            let suite = source
                .split_whitespace()
                .nth(1)?
                .split('/')
                .next()?
                .to_owned();
            Some(Candidate {
                package,
                version,
                suite,
            })
        })
        .collect()
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madison_lines_give_package_version_and_suite() {
        let out = "linux-image-6.1.0-57-cloud-amd64 |  6.1.192-3 | \
                   http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n";
        assert_eq!(
            parse_madison(out),
            [Candidate {
                package: "linux-image-6.1.0-57-cloud-amd64".into(),
                version: "6.1.192-3".into(),
                suite: "bookworm-security".into(),
            }]
        );
    }

    #[test]
    fn every_source_is_signed_by_the_archive_keyring() {
        for line in sources_list().lines() {
            assert!(
                line.starts_with(&format!("deb [signed-by={KEYRING}] ")),
                "{line}"
            );
        }
    }
}

//! Running external programs the same way everywhere: each command is echoed before it runs,
//! finds `$CARGO_HOME/bin` first on its PATH (where `setup` installs bpf-linker, and where a
//! fresh CI shell may not have it yet), and a failure names the command and how it ended.

use std::{
    env,
    ffi::{OsStr, OsString},
    io,
    path::PathBuf,
    process::{Command, Output},
    sync::OnceLock,
};

use anyhow::{Context as _, Result, bail};

/// A command for `program` with the PATH every child of xtask gets.
pub fn new(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env("PATH", path());
    command
}

/// Echoes and runs `command`, failing unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = display(command);
    say!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed: {status}");
    }
    Ok(())
}

/// Echoes and runs `command` with its output captured, whatever its exit status. `None` means
/// the program is not installed (not found on PATH).
pub fn output(command: &mut Command) -> Result<Option<Output>> {
    let shown = display(command);
    say!("$ {shown}");
    match command.output() {
        Ok(output) => Ok(Some(output)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("could not start `{shown}`")),
    }
}

/// Where cargo installs binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> PathBuf {
    cargo_home().join("bin")
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> PathBuf {
    match env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => env::home_dir().unwrap_or_default().join(".cargo"),
    }
}

/// The current PATH with [`cargo_bin_dir`] in front.
fn path() -> &'static OsStr {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| {
        let current = env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(cargo_bin_dir()).chain(env::split_paths(&current));
        // Only fails if a directory name contains ':', which cannot be put on PATH anyway.
        env::join_paths(dirs).unwrap_or(current)
    })
}

/// `command` as a shell line: explicitly set variables (except PATH), program, arguments.
pub fn display(command: &Command) -> String {
    let envs = command
        .get_envs()
        .filter(|(key, _)| *key != "PATH")
        .filter_map(|(key, value)| Some(format!("{}={}", key.to_string_lossy(), quote(value?))));
    let words = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quote);
    envs.chain(words).collect::<Vec<_>>().join(" ")
}

/// Quotes `word` for a POSIX shell when it needs it, so echoed commands can be pasted.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=+/.,:@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_and_quotes_what_needs_it() {
        let mut command = new("dpkg-query");
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-W", "-f=${Status}\n", "it's"]);
        assert_eq!(
            display(&command),
            "DEBIAN_FRONTEND=noninteractive dpkg-query -W '-f=${Status}\n' 'it'\\''s'"
        );
    }

    #[test]
    fn cargo_bin_dir_comes_first_on_path() {
        let first = env::split_paths(path()).next();
        assert_eq!(first, Some(cargo_bin_dir()));
    }
}

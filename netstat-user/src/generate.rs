//! `enetstat generate-docs DIR` (hidden): the man pages and shell completions, generated from
//! the command-line definition itself, for packages (`cargo xtask dist`).

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes `DIR/man/enetstat.1`, `DIR/man/enetstat-SUBCOMMAND.1` and
/// `DIR/completions/{enetstat.bash,_enetstat,enetstat.fish}`.
pub fn docs(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut cmd = Cli::command();
    cmd.build();
    let page = |c: clap::Command, name: &str| -> Result<()> {
        let path = man.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
    };
    page(cmd.clone(), "enetstat")?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // clap names are &'static str; this runs once, so leaking the few names is fine.
        let name: &'static str = Box::leak(format!("enetstat-{}", sub.get_name()).into_boxed_str());
        page(sub.clone().name(name), name)?;
    }
    for (shell, file) in [
        (Shell::Bash, "enetstat.bash"),
        (Shell::Zsh, "_enetstat"),
        (Shell::Fish, "enetstat.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut for_completion(), "enetstat", &mut out);
        let path = completions.join(file);
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The command line as completions offer it: without hidden subcommands (`generate-docs`),
/// which the shells' generators would otherwise list.
fn for_completion() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("enetstat")
        .about(full.get_about().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned());
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_offer_the_commands_but_not_the_hidden_one() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut for_completion(), "enetstat", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("generate-docs"), "{shell}");
            for word in ["watch", "life", "daemon", "socket", "ipv4", "recent"] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }
}

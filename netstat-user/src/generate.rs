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
        clap_complete::generate(shell, &mut Cli::command(), "enetstat", &mut out);
        let path = completions.join(file);
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

//! `cargo xtask run -- ARGS...`: build, then become `enetstat ARGS` as root.
//!
//! xtask execs the binary instead of spawning it, so Ctrl-C and every other signal reach
//! enetstat directly and its exit status is the one the caller sees (cargo's `run` execs xtask
//! the same way on Unix).

use std::{ffi::OsString, os::unix::process::CommandExt as _};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{
    build,
    cargo::Profile,
    cmd,
    privilege::{is_root, sudo},
    setup,
};

#[derive(Args)]
pub struct Options {
    /// Run the debug build instead of the release build.
    #[arg(long)]
    debug: bool,

    /// Arguments for enetstat (put them after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

impl Options {
    pub fn run(self) -> Result<()> {
        setup::ensure()?;
        let profile = if self.debug {
            Profile::Debug
        } else {
            Profile::Release
        };
        // Before building: no point in a long build that cannot be run.
        let sudo = if is_root() {
            None
        } else {
            let sudo = sudo().with_context(|| {
                let build = [&["cargo", "xtask", "build"], profile.flags()].concat();
                format!(
                    "enetstat needs root (or CAP_BPF + CAP_PERFMON) to load its eBPF programs, \
                     and sudo is not installed: run `cargo xtask run` as root, or run \
                     `{}`, grant the capabilities as root with \
                     `setcap cap_bpf,cap_perfmon+ep {}` and run that binary directly",
                    build.join(" "),
                    profile.bin(build::BIN).display()
                )
            })?;
            Some(sudo)
        };
        let bin = build::build(profile)?;

        let mut command = match sudo {
            None => cmd::new(&bin),
            Some(sudo) => {
                let mut command = cmd::new(sudo);
                command.arg("-E").arg(&bin);
                command
            }
        };
        command.args(&self.args);

        let shown = cmd::display(&command);
        say!("$ {shown}");
        // exec only returns on failure.
        let error = command.exec();
        Err(error).with_context(|| format!("could not start `{shown}`"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Task};

    fn parse(line: &[&str]) -> Options {
        match Cli::parse_from([&["xtask", "run"], line].concat()).task {
            Task::Run(options) => options,
            _ => unreachable!(),
        }
    }

    #[test]
    fn everything_after_the_separator_goes_to_enetstat() {
        let options = parse(&["--debug", "--", "watch", "--json"]);
        assert!(options.debug);
        assert_eq!(options.args, ["watch", "--json"]);
        assert_eq!(parse(&["--", "-tan"]).args, ["-tan"]);
        // Without the separator, the first word ends xtask's own options.
        let options = parse(&["snapshot", "--debug"]);
        assert!(!options.debug);
        assert_eq!(options.args, ["snapshot", "--debug"]);
    }
}

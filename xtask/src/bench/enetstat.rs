//! Driving the binaries under test: what this `enetstat` build offers (modes land one issue
//! at a time, so the harness asks rather than assumes), starting it as a tracer, and reading
//! its closing summary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Result, bail};

use super::child::Child;
use crate::cmd;

/// How long a tracer may take to load and attach its programs.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The binaries and what the enetstat build can do.
pub struct Tools {
    pub enetstat: PathBuf,
    pub loadgen: PathBuf,
    /// `enetstat -tan`: a one-shot snapshot.
    pub snapshot: bool,
    /// `enetstat -c SECS -tan`: the live table, refreshed.
    pub live: bool,
    /// `enetstat daemon`.
    pub daemon: bool,
    /// `enetstat watch --stats-json PATH` (hidden).
    pub stats_json: bool,
    /// `enetstat top -b -o json`.
    pub top: bool,
}

impl Tools {
    pub fn probe(enetstat: PathBuf, loadgen: PathBuf) -> Tools {
        // An argument clap does not know fails before `--help` is reached; a known one is
        // taken and then `--help` exits 0. Nothing is loaded either way.
        let accepts = |args: &[&str]| {
            let mut command = cmd::new(&enetstat);
            command
                .args(args)
                .arg("--help")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command.status().is_ok_and(|s| s.success())
        };
        let tools = Tools {
            snapshot: accepts(&["-tan"]),
            live: accepts(&["-c", "1", "-tan"]),
            daemon: accepts(&["daemon"]),
            stats_json: accepts(&["watch", "--stats-json", "/dev/null"]),
            top: accepts(&["top", "-b", "-o", "json"]),
            enetstat,
            loadgen,
        };
        say!(
            "enetstat offers: snapshot (-tan) {}, live table (-c) {}, daemon {}, watch --stats-json {}, top -b {}",
            yes(tools.snapshot),
            yes(tools.live),
            yes(tools.daemon),
            yes(tools.stats_json),
            yes(tools.top)
        );
        tools
    }

    /// `enetstat ARGS` with stdout discarded (as `> /dev/null`).
    pub fn enetstat(&self, args: &[String]) -> Command {
        let mut command = cmd::new(&self.enetstat);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// Starts `enetstat ARGS` and waits until its programs are attached.
    pub fn tracer(&self, name: &str, args: &[String], stdout: Stdio) -> Result<Child> {
        let mut command = self.enetstat(args);
        command.stdout(stdout);
        let mut child = Child::spawn(name, command)?;
        child.wait_for_stderr("tracing", READY_TIMEOUT)?;
        Ok(child)
    }

    /// Starts a long-running enetstat that says nothing when ready (live table, daemon),
    /// waiting `settle` for it to load, seed and settle. Fails if it exits meanwhile.
    pub fn background(&self, name: &str, args: &[String], settle: Duration) -> Result<Child> {
        self.background_to(name, args, Stdio::null(), settle)
    }

    /// [`Tools::background`] with stdout going to `stdout`.
    pub fn background_to(
        &self,
        name: &str,
        args: &[String],
        stdout: Stdio,
        settle: Duration,
    ) -> Result<Child> {
        let mut command = self.enetstat(args);
        command.stdout(stdout);
        let mut child = Child::spawn(name, command)?;
        super::child::pause(settle)?;
        if !child.running() {
            let status = child.wait(Duration::from_secs(1))?;
            bail!(
                "{name} exited ({status}) instead of running:\n{}",
                child.stderr.tail(10)
            );
        }
        Ok(child)
    }

    /// `enetstat-loadgen ARGS`, its JSON result on stdout.
    pub fn loadgen(&self, args: &[String]) -> Command {
        let mut command = cmd::new(&self.loadgen);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        command
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// enetstat's closing summary line:
/// `enetstat: N transitions seen, M shown, L lost (ring buffer full), U undecodable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub seen: u64,
    pub shown: u64,
    pub lost: u64,
    pub undecodable: u64,
}

impl Summary {
    pub fn find(lines: &[String]) -> Option<Summary> {
        lines.iter().rev().find_map(|l| Summary::parse(l))
    }

    fn parse(line: &str) -> Option<Summary> {
        let rest = line.strip_prefix("enetstat: ")?;
        let mut s = Summary::default();
        let mut found = 0;
        for part in rest.split(", ") {
            let (n, what) = part.split_once(' ')?;
            let n: u64 = n.parse().ok()?;
            let slot = match what.split_whitespace().next()? {
                "transitions" => &mut s.seen,
                "shown" => &mut s.shown,
                "lost" => &mut s.lost,
                "undecodable" => &mut s.undecodable,
                _ => continue,
            };
            *slot = n;
            found += 1;
        }
        (found >= 3).then_some(s)
    }
}

/// A temporary path under the results directory for a daemon socket or stats file.
pub fn scratch(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_closing_summary() {
        let lines = [
            "enetstat: tracing TCP state transitions; press Ctrl-C to stop".to_owned(),
            "enetstat: 120 transitions seen, 100 shown, 3 lost (ring buffer full), 0 undecodable, \
             2 sockets untracked (socket table full)"
                .to_owned(),
        ];
        assert_eq!(
            Summary::find(&lines),
            Some(Summary {
                seen: 120,
                shown: 100,
                lost: 3,
                undecodable: 0
            })
        );
        assert_eq!(Summary::find(&lines[..1]), None);
    }
}

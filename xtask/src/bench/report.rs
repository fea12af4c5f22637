//! The results table: its rows, the machine they were measured on, and the two ways it is
//! shown (aligned text on stderr, Markdown for docs/performance.md).

use std::{fmt::Write as _, process::Stdio};

use serde_json::{Value, json};

use crate::{cargo, cmd};

/// One line of the results table.
pub struct Row {
    pub bench: &'static str,
    pub config: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn na(bench: &'static str, config: &str, why: &str, target: &str) -> Row {
        Row {
            bench,
            config: config.to_owned(),
            value: why.to_owned(),
            target: target.to_owned(),
            verdict: Verdict::NotRun,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No target: shown for comparison.
    Info,
    NotRun,
}

impl Verdict {
    pub fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::Missed }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Info => "",
            Verdict::NotRun => "not run",
        }
    }
}

/// One line, at most `max` characters: table cells cannot hold a multi-line error.
fn cell(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        flat.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// The machine, for the record: CPU, cores, kernel, load, commit.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let git = |args: &[&str]| {
        let mut c = cmd::new("git");
        c.args(args)
            .current_dir(cargo::workspace_root())
            .stderr(Stdio::null());
        c.output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    json!({
        "summary": format!("{cpu}, {cores} cores, Linux {kernel}, load average {load} at start"),
        "cpu": cpu, "cores": cores, "kernel": kernel, "load_average_at_start": load,
        "commit": commit, "dirty": dirty,
    })
}

pub fn markdown(rows: &[Row], machine: &Value, command: &str) -> String {
    let mut s = String::new();
    let commit = format!(
        "{}{}",
        machine["commit"].as_str().unwrap_or("?"),
        if machine["dirty"].as_bool() == Some(true) {
            " (with local changes)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "Machine: {}; commit {commit}.\n",
        machine["summary"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "Command: `{command}`\n");
    let _ = writeln!(s, "| Benchmark | Configuration | Result | Target | |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.bench,
            cell(&r.config, 200).replace('|', "\\|"),
            cell(&r.value, 400).replace('|', "\\|"),
            r.target,
            r.verdict.word()
        );
    }
    s
}

pub fn plain_table(rows: &[Row]) -> String {
    let header = ["BENCHMARK", "CONFIGURATION", "RESULT", "TARGET", ""];
    let flat: Vec<[String; 2]> = rows
        .iter()
        .map(|r| [cell(&r.config, 60), cell(&r.value, 110)])
        .collect();
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .zip(&flat)
        .map(|(r, [config, value])| [r.bench, config, value, &r.target, r.verdict.word()])
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let mut s = String::new();
    for line in std::iter::once(&header).chain(&cells) {
        let mut l = String::new();
        for (v, w) in line.iter().zip(widths) {
            let _ = write!(l, "{v:<w$}  ");
        }
        let _ = writeln!(s, "{}", l.trim_end());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up() {
        let rows = [
            Row::na("scale", "daemon", "n/a (no daemon yet)", "< 64 MiB"),
            Row {
                bench: "replay",
                config: "watch_path".into(),
                value: "6.00 M events/s".into(),
                target: ">= 5 M/s".into(),
                verdict: Verdict::Met,
            },
        ];
        let table = plain_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("RESULT").unwrap();
        assert_eq!(lines[2].find("6.00").unwrap(), col);
        assert!(
            markdown(&rows, &json!({}), "cargo xtask bench").contains("| replay | watch_path |")
        );
    }
}

//! Reading a guest's console into check results, and the kernel × check table.
//!
//! The guest prints `=== ENETSTAT-MATRIX BEGIN <uname -r> ===`, a `PLAN <name>...` line naming
//! every check, one `CHECK <name> ok` or `CHECK <name> FAIL <reason>` line per check, then
//! `=== ENETSTAT-MATRIX END rc=N ===`. A `MODE <mode>` line says which mode enetstat picked
//! there (the guest's `expected_mode` check compares it with the row's expected one); the
//! table shows it in its `mode` column. Anything missing is a failure of its own: `boot` (no
//! BEGIN: the kernel or init never got there), a planned check without its line, `guest` (no
//! END: the guest crashed or hung).

use std::fmt::Write as _;

use super::boot::{Boot, Ended};

const BEGIN: &str = "=== ENETSTAT-MATRIX BEGIN ";
const END: &str = "=== ENETSTAT-MATRIX END rc=";

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail(String),
}

/// One kernel's results, in the order the guest printed them.
pub struct Row {
    pub kernel: String,
    /// `uname -r` as the guest printed it.
    pub release: Option<String>,
    /// The mode enetstat traced in, as the guest's `MODE` line said.
    pub mode: Option<String>,
    pub checks: Vec<(String, Outcome)>,
    pub seconds: f64,
    pub log: String,
}

impl Row {
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Fail(_)))
            .count()
    }
}

/// The results in a guest's console output.
pub fn parse(kernel: &str, boot: &Boot, log: &str) -> Row {
    let mut row = Row {
        kernel: kernel.to_owned(),
        release: None,
        mode: None,
        checks: Vec::new(),
        seconds: boot.elapsed.as_secs_f64(),
        log: log.to_owned(),
    };
    let lines: Vec<&str> = boot
        .console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let begin = lines.iter().position(|l| l.contains(BEGIN));
    let Some(begin) = begin else {
        let last = lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(&"(no console output)");
        let why = match boot.ended {
            Ended::TimedOut => format!(
                "timed out after {:.0} s before init ran the checks; last console line: {last}",
                row.seconds
            ),
            Ended::Exited(_) => format!("the guest stopped before init ran the checks: {last}"),
        };
        row.checks.push(("boot".to_owned(), Outcome::Fail(why)));
        return row;
    };
    row.checks.push(("boot".to_owned(), Outcome::Ok));
    row.release = lines[begin]
        .split(BEGIN)
        .nth(1)
        .map(|r| r.trim_end_matches(" ===").trim().to_owned());
    let mut end = None;
    let mut plan: Vec<String> = Vec::new();
    for line in &lines[begin + 1..] {
        if let Some(rc) = line.split(END).nth(1) {
            end = Some(rc.trim_end_matches(" ===").trim().to_owned());
            break;
        }
        if let Some(names) = line.strip_prefix("PLAN ") {
            plan = names.split_whitespace().map(str::to_owned).collect();
        } else if let Some(mode) = line.strip_prefix("MODE ") {
            row.mode = Some(mode.trim().to_owned());
        } else if let Some((name, outcome)) = parse_check(line) {
            row.checks.push((name, outcome));
        }
    }
    if plan.is_empty() {
        row.checks.push((
            "plan".to_owned(),
            Outcome::Fail("the guest never said which checks it would run".to_owned()),
        ));
    }
    for name in plan {
        if !row.checks.iter().any(|(n, _)| *n == name) {
            let why = "no result line from the guest (it stopped first, see `guest`)";
            row.checks.push((name, Outcome::Fail(why.to_owned())));
        }
    }
    let guest = match (end, &boot.ended) {
        (Some(_), Ended::Exited(_)) => Outcome::Ok,
        (Some(_), Ended::TimedOut) => Outcome::Fail(format!(
            "the checks ended but the guest did not power off within {:.0} s",
            row.seconds
        )),
        (None, Ended::TimedOut) => Outcome::Fail(format!(
            "timed out after {:.0} s, killed (a check hung)",
            row.seconds
        )),
        (None, Ended::Exited(_)) => {
            let last = lines.last().copied().unwrap_or_default();
            Outcome::Fail(format!("the guest stopped during the checks: {last}"))
        }
    };
    row.checks.push(("guest".to_owned(), guest));
    row
}

/// `CHECK <name> ok` or `CHECK <name> FAIL <reason>`, wherever it starts on the line (kernel
/// messages may share the console).
fn parse_check(line: &str) -> Option<(String, Outcome)> {
    let rest = &line[line.find("CHECK ")? + "CHECK ".len()..];
    let (name, result) = rest.split_once(' ')?;
    let outcome = if result == "ok" {
        Outcome::Ok
    } else {
        Outcome::Fail(
            result
                .strip_prefix("FAIL")
                .unwrap_or(result)
                .trim()
                .to_owned(),
        )
    };
    Some((name.to_owned(), outcome))
}

/// The table: a grid of kernels × checks (`ok`, `FAIL`, or `-` for not reported), the
/// failures' first lines, and where each guest's whole output is.
pub fn table(rows: &[Row]) -> String {
    // In the order the guests ran them, `guest` (how the guest ended) last.
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for (name, _) in &row.checks {
            if !columns.contains(&name.as_str()) && name != "guest" {
                columns.push(name);
            }
        }
    }
    columns.push("guest");
    let mut out = String::new();
    let kernel_width = rows
        .iter()
        .map(|r| label(r).len())
        .chain(["kernel".len()])
        .max()
        .unwrap_or(6);
    let mode_width = rows
        .iter()
        .filter_map(|r| r.mode.as_ref().map(String::len))
        .chain(["mode".len()])
        .max()
        .unwrap_or(4);
    let _ = write!(
        out,
        "| {:kernel_width$} | {:mode_width$} |",
        "kernel", "mode"
    );
    for c in &columns {
        let _ = write!(out, " {c} |");
    }
    let _ = writeln!(out, " time |");
    let _ = write!(
        out,
        "|{}|{}|",
        "-".repeat(kernel_width + 2),
        "-".repeat(mode_width + 2)
    );
    for c in &columns {
        let _ = write!(out, "{}|", "-".repeat(c.len() + 2));
    }
    let _ = writeln!(out, "------|");
    for row in rows {
        let _ = write!(
            out,
            "| {:kernel_width$} | {:mode_width$} |",
            label(row),
            row.mode.as_deref().unwrap_or("-")
        );
        for c in &columns {
            let cell = match row.checks.iter().find(|(n, _)| n == c) {
                Some((_, Outcome::Ok)) => "ok",
                Some((_, Outcome::Fail(_))) => "FAIL",
                None => "-",
            };
            let _ = write!(out, " {cell:w$} |", w = c.len());
        }
        let _ = writeln!(out, " {:.0} s |", row.seconds);
    }
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.checks
                .iter()
                .filter_map(move |(name, outcome)| match outcome {
                    Outcome::Fail(why) => Some(format!("{} {name}: {why}", row.kernel)),
                    Outcome::Ok => None,
                })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailures:");
        for f in failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    let _ = writeln!(out, "\nLogs (each guest's whole console):");
    for row in rows {
        let _ = writeln!(out, "- {}: {}", row.kernel, row.log);
    }
    out
}

fn label(row: &Row) -> String {
    match &row.release {
        Some(release) => format!("{} ({release})", row.kernel),
        None => row.kernel.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn boot(console: &str, ended: Ended) -> Boot {
        Boot {
            ended,
            elapsed: Duration::from_secs(20),
            console: console.to_owned(),
        }
    }

    #[test]
    fn checks_between_the_markers_become_the_row() {
        let console = "[    0.1] booting\r\n\
                       === ENETSTAT-MATRIX BEGIN 6.1.0-57-cloud-amd64 ===\n\
                       PLAN modules watch_ipv4\n\
                       noise\n\
                       CHECK modules ok\n\
                       MODE tp_btf\n\
                       CHECK watch_ipv4 FAIL 2 problem(s) [1x] listener: transitions\n\
                       === ENETSTAT-MATRIX END rc=1 ===\n";
        let row = parse("6.1", &boot(console, Ended::Exited(Some(0))), "log");
        assert_eq!(row.release.as_deref(), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(
            row.checks,
            [
                ("boot".to_owned(), Outcome::Ok),
                ("modules".to_owned(), Outcome::Ok),
                (
                    "watch_ipv4".to_owned(),
                    Outcome::Fail("2 problem(s) [1x] listener: transitions".to_owned())
                ),
                ("guest".to_owned(), Outcome::Ok),
            ]
        );
        assert_eq!(row.failed(), 1);
        assert_eq!(row.mode.as_deref(), Some("tp_btf"));
        let table = table(&[row]);
        assert!(table.contains("| mode   |"), "{table}");
        assert!(table.contains("| tp_btf |"), "{table}");
        assert!(table.contains("| FAIL       |"), "{table}");
        assert!(table.contains("- 6.1 watch_ipv4: 2 problem(s)"), "{table}");
    }

    #[test]
    fn a_guest_that_never_got_to_init_fails_boot() {
        let row = parse(
            "5.10",
            &boot("Kernel panic - not syncing\n", Ended::Exited(Some(0))),
            "l",
        );
        assert_eq!(row.checks.len(), 1);
        assert!(matches!(&row.checks[0].1, Outcome::Fail(why) if why.contains("Kernel panic")));
    }

    #[test]
    fn a_hung_guest_fails_guest() {
        let console = "=== ENETSTAT-MATRIX BEGIN 6.12 ===\nCHECK modules ok\n";
        let row = parse("6.12", &boot(console, Ended::TimedOut), "l");
        assert!(
            matches!(&row.checks.last().unwrap().1, Outcome::Fail(why) if why.contains("timed out"))
        );
    }
}

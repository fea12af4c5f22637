//! The lines the host reads: one per check, a failed check's reason on one line, and the
//! panic hook that turns a failed assertion into that reason.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Instant;

use crate::PLAN;

/// The message of the last panic, taken by [`Report::run_value`].
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The check lines printed so far, and how many failed.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) failed: usize,
}

impl Report {
    /// Runs one check, catching its panic, and prints its line.
    pub(crate) fn run(&mut self, name: &str, check: impl FnOnce()) {
        let _ = self.run_value(name, check);
    }

    /// Runs one check that produces something later checks use.
    pub(crate) fn run_value<T>(
        &mut self,
        name: &str,
        check: impl FnOnce() -> T,
    ) -> Result<T, String> {
        let started = Instant::now();
        eprintln!("enetstat-guest: running {name}");
        let result = panic::catch_unwind(AssertUnwindSafe(check)).map_err(|_| {
            PANIC
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| "panicked".to_owned())
        });
        eprintln!(
            "enetstat-guest: {name} took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        match &result {
            Ok(_) => self.line(name, "ok"),
            Err(message) => self.fail(name, &one_line(message)),
        }
        result
    }

    /// A check on what an earlier check produced; fails with its reason if there is nothing.
    pub(crate) fn after<T>(
        &mut self,
        name: &str,
        input: &Result<T, String>,
        check: impl FnOnce(&T),
    ) {
        match input {
            Ok(value) => self.run(name, || check(value)),
            Err(reason) => self.fail(name, &format!("not run: {}", one_line(reason))),
        }
    }

    /// A check that cannot run because an earlier one failed.
    pub(crate) fn skip_after(&mut self, name: &str, why: &str) {
        self.fail(name, &format!("not run: {why}"));
    }

    fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        self.line(name, &format!("FAIL {reason}"));
    }

    pub(crate) fn line(&self, name: &str, result: &str) {
        debug_assert!(PLAN.contains(&name), "{name} is not in PLAN");
        print_line(&format!("CHECK {name} {result}"));
    }
}

/// One line on stdout in one write, so that the helpers' output echoed on the same console
/// cannot land inside it.
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// A failure message on one line: for a `Checker`'s report its headline and the headline
/// of each kind of problem; for a tracer that did not start its error and the verifier's
/// verdict; else the first line, with the list it opens if it ends with `[`.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with('[') && l.contains("x] "))
        .collect();
    let stderr = quoted_lines(&lines);
    let mut out = if !kinds.is_empty() {
        format!("{} {}", lines[0], kinds.join(" "))
    } else if let Some(error) = stderr.iter().find(|l| l.starts_with("enetstat: error:")) {
        // A tracer that did not start: its error, and the verifier's verdict if it gave one
        // (the line before its statistics).
        let verdict = stderr
            .iter()
            .position(|l| l.starts_with("verification time"))
            .and_then(|i| i.checked_sub(1))
            .map(|i| format!(" [verifier: {}]", stderr[i]))
            .unwrap_or_default();
        format!("{error}{verdict}")
    } else if lines.first().is_some_and(|l| l.ends_with('[')) {
        // `...; stderr: [` then the lines of a `{:#?}` list.
        format!("{} {}]", lines[0], stderr.join(" | "))
    } else {
        lines.first().copied().unwrap_or_default().to_owned()
    };
    const MAX: usize = 500;
    if out.len() > MAX {
        let mut end = MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    if out.is_empty() {
        "(no message)".to_owned()
    } else {
        out
    }
}

/// The lines of a `{:#?}`-printed list of strings (a tracer's stderr in its panic message).
fn quoted_lines(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix('"'))
        .filter_map(|l| l.strip_suffix("\",").or_else(|| l.strip_suffix('"')))
        .map(|l| l.replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect()
}

/// Keeps each panic's message for [`Report::run_value`], and prints it whole on stderr (the
/// serial console, so the host's log has it).
pub(crate) fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_owned()
        };
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("enetstat-guest: {message}{at}");
        *PANIC
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }));
}

//! What can be wrong with a filter expression, and the error that shows where.

use std::ops::Range;

/// What is wrong, in words; [`ParseError`] adds where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("expected {what} after `{after}`, found {found}")]
    ExpectedAfter {
        what: String,
        after: String,
        found: String,
    },
    #[error("expected {what}, found {found}")]
    Expected { what: String, found: String },
    #[error("unknown condition {found}; expected {CONDITIONS}")]
    UnknownCondition { found: String },
    #[error("unknown state `{name}`; expected {accepted}")]
    UnknownState { name: String, accepted: String },
    #[error("unknown port `{0}`: not a number (0-65535) nor a TCP service in /etc/services")]
    UnknownPort(String),
    #[error(
        "`{0}` is not an address; expected an IPv4 or IPv6 address, optionally with a /prefix \
         and a :port (10.0.0.1, 10.0.0.0/8, 10.0.0.1:80, ::1, [::1]:80, [fe80::]/10, *:80)"
    )]
    BadAddress(String),
    #[error("prefix length /{prefix} is longer than the {max} bits of the address")]
    PrefixTooLong { prefix: String, max: u8 },
    #[error("`{op}` cannot compare {what}; use `=` or `!=`")]
    BadOperator { op: String, what: &'static str },
    #[error("`)` without a matching `(`")]
    UnmatchedClose,
    #[error("expected `)` to close the `(` at column {column}, found {found}")]
    UnclosedParen { column: usize, found: String },
    #[error("unclosed quote: no closing {0}")]
    UnclosedQuote(char),
    #[error(
        "the filter is {len} bytes long; the limit is {max} bytes (see `enetstat watch --help`)"
    )]
    TooLong { len: usize, max: usize },
    #[error(
        "the filter nests `(`, `not` and `!` more than {max} deep; write it flatter (see \
         `enetstat watch --help`)"
    )]
    TooDeep { max: usize },
    #[error("`{what}` can never match: ports are 0 to 65535")]
    NeverMatches { what: String },
}

impl Problem {
    /// Whether the expression broke one of the size limits ([`super::MAX_LEN`],
    /// [`super::MAX_DEPTH`]), as opposed to being wrong.
    pub fn is_limit(&self) -> bool {
        matches!(self, Problem::TooLong { .. } | Problem::TooDeep { .. })
    }
}

/// The conditions the language knows, for error messages.
pub const CONDITIONS: &str = "a condition: state, from, sport, dport, port, src, dst, pid, comm, \
                              family, netns, cgroup, cookie, `not`, `!` or `(`";

/// Characters of the expression shown on each side of the offending part.
const WINDOW: usize = 60;

/// The largest char boundary of `s` at or before `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A filter expression that does not parse. `Display` quotes the expression and points at
/// the offending part:
///
/// ```text
/// invalid filter: expected a port (:443, 443 or :https) after `dport =`, found `and`
///   dport = and state established
///           ^^^
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter: {}\n  {}\n  {}", .0.said, .0.shown, .0.caret)]
pub struct ParseError(Box<Details>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Details {
    problem: Problem,
    /// The problem in words, escaped (it may quote the expression's characters).
    said: String,
    expression: String,
    span: Range<usize>,
    shown: String,
    caret: String,
}

impl ParseError {
    pub fn new(problem: Problem, expression: &str, span: Range<usize>) -> Self {
        let start = floor_boundary(expression, span.start.min(expression.len()));
        let end = floor_boundary(expression, span.end.clamp(start, expression.len()));
        // A long expression (up to the length limit, or longer when refused for it) is shown
        // as a window around the offending part, so the error stays a few lines.
        let from = floor_boundary(expression, start.saturating_sub(WINDOW));
        let marked = floor_boundary(expression, end.min(start + WINDOW));
        let to = floor_boundary(
            expression,
            (marked.max(start + 1) + WINDOW).min(expression.len()),
        );
        let (lead, tail) = (
            if from > 0 { "…" } else { "" },
            if to < expression.len() { "…" } else { "" },
        );
        // Control and format characters (tabs, newlines, escapes, bidi overrides) would break
        // the caret's alignment or reach the terminal raw; each shows as one space.
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if crate::render::escape::needs_escape(c) {
                        ' '
                    } else {
                        c
                    }
                })
                .collect()
        };
        let shown = format!("{lead}{}{tail}", clean(&expression[from..to]));
        let column = lead.chars().count() + expression[from..start].chars().count();
        let width = expression[start..marked].chars().count().max(1);
        let caret = format!("{}{}", " ".repeat(column), "^".repeat(width));
        let said = crate::render::escape::escape_comm(&problem.to_string()).into_owned();
        Self(Box::new(Details {
            said,
            problem,
            expression: expression.to_owned(),
            span: start..end,
            shown: shown.trim_end().to_owned(),
            caret,
        }))
    }

    /// What is wrong.
    pub fn problem(&self) -> &Problem {
        &self.0.problem
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.0.expression
    }

    /// Byte range of the offending part (empty at the end of the expression).
    pub fn span(&self) -> Range<usize> {
        self.0.span.clone()
    }
}

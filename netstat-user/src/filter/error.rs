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
}

/// The conditions the language knows, for error messages.
pub const CONDITIONS: &str = "a condition: state, from, sport, dport, port, src, dst, pid, comm, \
                              family, netns, cgroup, cookie, `not`, `!` or `(`";

/// A filter expression that does not parse. `Display` quotes the expression and points at
/// the offending part:
///
/// ```text
/// invalid filter: expected a port (:443, 443 or :https) after `dport =`, found `and`
///   dport = and state established
///           ^^^
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter: {}\n  {}\n  {}", .0.problem, .0.shown, .0.caret)]
pub struct ParseError(Box<Details>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Details {
    problem: Problem,
    expression: String,
    span: Range<usize>,
    shown: String,
    caret: String,
}

impl ParseError {
    pub fn new(problem: Problem, expression: &str, span: Range<usize>) -> Self {
        // Control characters (tabs, newlines, escapes) would break the caret's alignment or
        // reach the terminal raw; each shows as one space.
        let shown: String = expression
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let start = span.start.min(expression.len());
        let end = span.end.clamp(start, expression.len());
        let column = expression[..start].chars().count();
        let width = expression[start..end].chars().count().max(1);
        let caret = format!("{}{}", " ".repeat(column), "^".repeat(width));
        Self(Box::new(Details {
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

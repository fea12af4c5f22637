//! The summary line enetstat prints to stderr on exit.

/// `enetstat: <N> transitions seen, <M> shown, <L> lost, <U> undecodable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Transitions that reached userspace.
    pub seen: u64,
    /// Transitions printed (after filters).
    pub shown: u64,
    /// Transitions dropped in the kernel because the ring buffer was full.
    pub lost: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
}

impl Summary {
    /// Parses the summary line; `None` if `line` is not one.
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.strip_prefix("enetstat: ")?;
        let mut numbers = Vec::with_capacity(4);
        for (part, suffix) in
            rest.split(", ")
                .zip([" transitions seen", " shown", " lost", " undecodable"])
        {
            numbers.push(part.strip_suffix(suffix)?.parse::<u64>().ok()?);
        }
        match numbers[..] {
            [seen, shown, lost, undecodable] if rest.split(", ").count() == 4 => Some(Summary {
                seen,
                shown,
                lost,
                undecodable,
            }),
            _ => None,
        }
    }

    /// Finds the summary among stderr lines (the last one, if several).
    pub fn find(stderr: &[String]) -> Option<Summary> {
        stderr.iter().rev().find_map(|l| Summary::parse(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_line() {
        let line = "enetstat: 20002 transitions seen, 20002 shown, 0 lost, 0 undecodable";
        assert_eq!(
            Summary::parse(line),
            Some(Summary {
                seen: 20002,
                shown: 20002,
                lost: 0,
                undecodable: 0
            })
        );
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(
            Summary::parse("enetstat: tracing TCP state transitions"),
            None
        );
        assert_eq!(
            Summary::parse("enetstat: 1 transitions seen, 1 shown"),
            None
        );
    }
}

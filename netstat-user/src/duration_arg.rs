//! The one parser for every duration on the command line (`--duration`, `-c`, `--reconcile`,
//! `--recent`, `--keep-closed`): a number with an optional unit, `500ms`, `2s`, `5m`, `1h`,
//! `2d`; a bare number is seconds (`0.5`, `10`). Values that would overflow a clock, or that
//! are too short to act on, are refused with a message that says the range, never a panic.

use std::time::Duration;

/// The longest duration accepted: a year.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest: a millisecond.
pub const MIN: Duration = Duration::from_millis(1);

/// Parses `s`, e.g. `500ms`, `2s`, `1.5`, `5m`, `1h`, `2d`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_duration = || {
        format!(
            "{s:?} is not a duration; use a number with a unit: 500ms, 2s, 5m, 1h or 2d (a bare number is seconds)"
        )
    };
    let seconds_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(not_a_duration()),
    };
    let n: f64 = number.parse().map_err(|_| not_a_duration())?;
    let seconds = n * seconds_per_unit;
    let range = || format!("{s:?} is out of range: a duration is from 1ms to 365d");
    if !seconds.is_finite() || seconds > MAX.as_secs_f64() || seconds < MIN.as_secs_f64() {
        return Err(range());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("365d"), Ok(MAX));
    }

    #[test]
    fn absurd_values_are_refused_with_the_range() {
        for s in [
            "1e30",
            "99999999999999999999h",
            "366d",
            "1e400",
            "inf",
            "NaN",
        ] {
            let e = parse(s).expect_err(s);
            assert!(
                e.contains("out of range") || e.contains("not a duration"),
                "{s}: {e}"
            );
        }
        assert!(
            parse("99999999999999999999h")
                .unwrap_err()
                .contains("1ms to 365d")
        );
        assert!(parse("0").unwrap_err().contains("out of range"));
        assert!(parse("0.0001").unwrap_err().contains("out of range"));
        assert!(parse("-1").unwrap_err().contains("not a duration"));
        assert!(parse("soon").unwrap_err().contains("not a duration"));
        assert!(parse("1.2.3s").unwrap_err().contains("not a duration"));
        assert!(parse("").unwrap_err().contains("not a duration"));
    }
}

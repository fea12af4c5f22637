//! The one parser for sizes on the command line: bytes with an optional binary unit. The
//! ring buffer (`--ring-size`) takes a power of two of at least a page, as the kernel needs;
//! the event log (`--event-log-size`) any size of at least 4K.

/// `4096`, `64K`, `8M`, `1G` (binary units; a trailing `B`/`iB` is allowed) in bytes, or
/// `None` when `s` is not a size.
fn bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    digits.parse::<u64>().ok()?.checked_shl(shift)
}

/// A ring-buffer size: a power of two of at least 4K that fits 32 bits.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let bytes = bytes(s)
        .and_then(|b| u32::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is not a size; use bytes or K/M/G, e.g. 8M"))?;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!(
            "{s:?} must be a power of two of at least 4K (e.g. 4M, 8M, 16M)"
        ));
    }
    Ok(bytes)
}

/// An event-log size: at least 4K.
pub fn parse_log_size(s: &str) -> Result<u64, String> {
    bytes(s)
        .filter(|n| *n >= 4096)
        .ok_or_else(|| format!("{s:?} is not a size of at least 4K; use e.g. 64M"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert!(parse_size("3M").is_err());
        assert!(parse_size("1K").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("8G").is_err());
    }

    #[test]
    fn log_sizes() {
        assert_eq!(parse_log_size("64M"), Ok(64 << 20));
        assert_eq!(parse_log_size("1g"), Ok(1 << 30));
        assert_eq!(parse_log_size("5000"), Ok(5000));
        assert_eq!(parse_log_size("8G"), Ok(8 << 30));
        assert!(parse_log_size("1K").unwrap_err().contains("at least 4K"));
        assert!(parse_log_size("lots").is_err());
    }
}

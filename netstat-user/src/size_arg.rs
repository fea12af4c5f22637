//! The one parser for sizes on the command line (`--ring-size`): bytes with an optional binary
//! unit, a power of two of at least a page, as the kernel's ring buffer needs.

/// `4096`, `64K`, `8M`, `1G` (binary units; a trailing `B`/`iB` is allowed).
pub fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let bad = || format!("{s:?} is not a size; use bytes or K/M/G, e.g. 8M");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| *b <= u64::from(u32::MAX))
        .ok_or_else(bad)?;
    let bytes = bytes as u32;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!(
            "{s:?} must be a power of two of at least 4K (e.g. 4M, 8M, 16M)"
        ));
    }
    Ok(bytes)
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
}

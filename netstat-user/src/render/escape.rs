//! Process names are chosen by processes (`prctl(PR_SET_NAME)`), so they may hold control
//! characters and terminal escape sequences. They never reach the terminal raw.

use std::borrow::Cow;

/// `comm` with control characters, backslashes and non-printing characters escaped as `\xNN`
/// (or `\u{..}`), so a hostile name cannot move the cursor or recolour the terminal.
pub fn escape_comm(comm: &str) -> Cow<'_, str> {
    if comm
        .chars()
        .all(|c| !c.is_control() && c != '\\' && c != '\u{fffd}')
    {
        return Cow::Borrowed(comm);
    }
    let mut out = String::with_capacity(comm.len() + 8);
    for c in comm.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || c == '\u{fffd}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_untouched() {
        assert!(matches!(escape_comm("nginx: worker"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_sequences_are_neutralised() {
        assert_eq!(escape_comm("a\x1b[31mb"), "a\\x1b[31mb");
        assert_eq!(escape_comm("tab\there\n"), "tab\\x09here\\x0a");
        assert_eq!(escape_comm("back\\slash"), "back\\\\slash");
        assert_eq!(escape_comm("c1\u{9b}x"), "c1\\u{9b}x");
    }
}

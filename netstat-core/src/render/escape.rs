//! Process names are chosen by processes (`prctl(PR_SET_NAME)`), cgroup paths by whoever
//! makes cgroups, and a daemon's replies by whatever listens on its socket: they may hold
//! control characters, terminal escape sequences and bidi overrides. One rule, for every
//! format that can reach a terminal, keeps them from reaching it raw:
//!
//! | character | text and CSV | JSON strings |
//! |---|---|---|
//! | `\` in a process name or cgroup path | `\\` | `\\` (JSON's own escape) |
//! | C0 controls U+0000–U+001F, DEL U+007F | `\xNN` (`\x1b`, `\x0a`) | `\n` `\r` `\t` `\b` `\f` (JSON's own escapes) for those five, `\u00NN` for the rest |
//! | C1 controls U+0080–U+009F | `\u{NN}` (`\u{9b}`) | `\u00NN` |
//! | bidi controls (U+061C, U+200E–U+200F, U+202A–U+202E, U+2066–U+2069), invisible characters (U+00AD, U+180E, U+200B–U+200D, U+2060–U+2064, U+FEFF, U+FFF9–U+FFFB), deprecated and reserved format characters (U+2065, U+206A–U+206F), line and paragraph separators (U+2028, U+2029) | `\u{NNNN}` (`\u{202e}`) | `\uNNNN` |
//! | U+FFFD (what invalid UTF-8 became) in a process name | `\u{fffd}` | as is |
//!
//! Everything else, including other non-ASCII text, passes as it is. JSON escapes keep the
//! value: a JSON parser reads back the same string. Text and CSV escapes are for people.
//! What a client prints from a daemon's replies gets the text column (the line feeds that end
//! its lines aside). The README's "Escaping" shows this same table, and a test walks it
//! against [`needs_escape`].

use std::{borrow::Cow, io};

/// Whether `c` must not reach a terminal raw: C0 and C1 control characters and DEL (they
/// move the cursor, recolour, retitle, or start escape sequences), the Unicode format
/// characters that reorder or hide text (bidi embeddings, overrides and isolates such as
/// U+202E, invisible joiners and spaces, the BOM, the soft hyphen), and the line and
/// paragraph separators. Everything else, including other non-ASCII text, passes.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// A `serde_json` formatter that writes every character [`needs_escape`] names as a `\uNNNN`
/// escape (serde_json escapes C0 controls itself; DEL, C1 controls and format characters it
/// would write raw). The JSON means the same; only its bytes are terminal-safe.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonSafe;

impl serde_json::ser::Formatter for JsonSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json has already cut C0 controls and quotes out of fragments: ASCII short of
        // DEL is all safe, and nearly every fragment is that.
        if fragment.bytes().all(|b| b < 0x7f) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{u:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as JSON, terminal-safe (see [`JsonSafe`]).
pub fn json_to_writer<W: io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(
        writer, JsonSafe,
    ))
}

/// Text from elsewhere (a daemon's reply, which may be a fake daemon's) made safe for a
/// terminal: every character [`needs_escape`] says must not reach one raw, except the line
/// feeds that end lines, is written as `\xNN` (ASCII) or `\u{NNNN}`. Text the renderers
/// made passes unchanged, since they already escaped what they print.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_comm`] on an optional field, keeping a borrowed value when nothing changes: what
/// the CSV writers apply to process names and cgroup paths.
pub fn escape_field(field: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    field.map(|f| {
        match escape_comm(&f) {
            Cow::Borrowed(_) => None,
            Cow::Owned(o) => Some(o),
        }
        .map_or(f, Cow::Owned)
    })
}

/// `comm` with control characters, backslashes and non-printing characters escaped as `\xNN`
/// (or `\u{..}`), so a hostile name cannot move the cursor or recolour the terminal.
pub fn escape_comm(comm: &str) -> Cow<'_, str> {
    if comm
        .chars()
        .all(|c| !needs_escape(c) && c != '\\' && c != '\u{fffd}')
    {
        return Cow::Borrowed(comm);
    }
    let mut out = String::with_capacity(comm.len() + 8);
    for c in comm.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) || c == '\u{fffd}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
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
    fn untrusted_text_keeps_its_lines_and_loses_its_escapes() {
        assert!(matches!(terminal_safe("a b\nc\n"), Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("x\x1b]0;pwned\x07\r\u{202e}y\n"),
            "x\\x1b]0;pwned\\x07\\x0d\\u{202e}y\n"
        );
    }

    #[test]
    fn json_keeps_the_value_and_loses_the_raw_characters() {
        let name = "a\u{7f}b\u{9b}c\u{202e}d\x1be\"\\é";
        let mut out = Vec::new();
        json_to_writer(&mut out, &serde_json::json!({ "comm": name })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#"{"comm":"a\u007fb\u009bc\u202ed\u001be\"\\é"}"#);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["comm"], name);
    }

    /// The characters a row of the module's table names: every `U+XXXX` and `U+XXXX–U+YYYY`
    /// in its first cell.
    fn named(cell: &str) -> Vec<std::ops::RangeInclusive<u32>> {
        let hex = |s: &str| u32::from_str_radix(&s[..4], 16).unwrap();
        let mut out = Vec::new();
        let mut rest = cell;
        while let Some(i) = rest.find("U+") {
            let from = hex(&rest[i + 2..]);
            rest = &rest[i + 6..];
            match rest.strip_prefix("–U+") {
                Some(r) => {
                    out.push(from..=hex(r));
                    rest = &r[4..];
                }
                None => out.push(from..=from),
            }
        }
        out
    }

    /// The table in this module's doc (which the README's "Escaping" repeats) says exactly
    /// what [`needs_escape`] does: every character its rows name is escaped, and no other.
    #[test]
    fn the_table_names_exactly_what_is_escaped() {
        let rows: Vec<&str> = include_str!("escape.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! |"))
            .skip(2)
            .collect();
        assert_eq!(rows.len(), 5, "{rows:?}");
        let mut ranges = Vec::new();
        for row in &rows {
            let first = row.split(" | ").next().unwrap().trim();
            // Backslashes and U+FFFD are escaped in process names and cgroup paths only, by
            // `escape_comm`; the rest are what `needs_escape` names.
            if first.starts_with("`\\`") {
                continue;
            }
            if first.starts_with("U+FFFD") {
                assert!(!needs_escape('\u{fffd}'));
                assert_eq!(escape_comm("\u{fffd}"), "\\u{fffd}");
                continue;
            }
            ranges.extend(named(first));
        }
        for c in (0..=0x0010_ffff).filter_map(char::from_u32) {
            let listed = ranges.iter().any(|r| r.contains(&(c as u32)));
            assert_eq!(needs_escape(c), listed, "U+{:04X}", c as u32);
        }
        // The JSON column: JSON's own short escapes for five C0 controls, `\u00NN` for the
        // rest of C0, DEL and C1.
        for c in (0..0x20)
            .chain([0x7f])
            .chain(0x80..0xa0)
            .filter_map(char::from_u32)
        {
            let mut out = Vec::new();
            json_to_writer(&mut out, &c.to_string()).unwrap();
            let want = match c {
                '\n' => "\"\\n\"".to_owned(),
                '\r' => "\"\\r\"".to_owned(),
                '\t' => "\"\\t\"".to_owned(),
                '\u{8}' => "\"\\b\"".to_owned(),
                '\u{c}' => "\"\\f\"".to_owned(),
                c => format!("\"\\u{:04x}\"", c as u32),
            };
            assert_eq!(String::from_utf8(out).unwrap(), want, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn escape_sequences_are_neutralised() {
        assert_eq!(escape_comm("a\x1b[31mb"), "a\\x1b[31mb");
        assert_eq!(escape_comm("tab\there\n"), "tab\\x09here\\x0a");
        assert_eq!(escape_comm("back\\slash"), "back\\\\slash");
        assert_eq!(escape_comm("c1\u{9b}x"), "c1\\u{9b}x");
    }
}

//! Fuzz target `filter`: the filter language, `netstat_core::filter::Filter::parse_with`, on
//! arbitrary text (`cargo xtask fuzz`): lengths, nesting and Unicode.
//!
//! Beyond "never panics, never overflows the stack", every input checks:
//!
//! - text over `MAX_LEN` bytes is refused as too long, whatever it holds;
//! - a filter that parses is written in its canonical form, which parses back to the same
//!   filter (unless writing it out made it break a limit), and its kernel part can be made;
//! - the error of one that does not parse can be shown, with no control or bidi character;
//! - a filter that parses, nested `MAX_DEPTH + 1` deep in `(` or `!`, is refused as too deep.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netstat_core::filter::{Filter, MAX_DEPTH, MAX_LEN, Problem};

fn services(name: &str) -> Option<u16> {
    match name {
        "https" => Some(443),
        "ssh" => Some(22),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Filter, netstat_core::filter::ParseError> {
    Filter::parse_with(text, &services)
}

fuzz_target!(|text: &str| {
    let parsed = parse(text);
    if text.len() > MAX_LEN {
        let e = parsed.expect_err("longer than MAX_LEN");
        assert!(matches!(e.problem(), Problem::TooLong { .. }), "{e}");
        return;
    }
    match &parsed {
        Ok(filter) => {
            let canonical = filter.to_string();
            match parse(&canonical) {
                Ok(again) => assert_eq!(&again, filter, "{text:?} -> {canonical:?}"),
                Err(e) => assert!(e.problem().is_limit(), "{text:?} -> {canonical:?}: {e}"),
            }
            let _ = filter.kernel_part();
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                !shown
                    .chars()
                    .any(|c| c != '\n' && netstat_core::render::escape::needs_escape(c)),
                "{shown:?}"
            );
        }
    }
    // Nested one level too deep, a filter that parses is refused for that, before anything
    // else (a lexical error elsewhere would come first, so only for filters that parse).
    if parsed.is_ok() {
        for open in ["(", "!"] {
            let deep = format!("{}{text}", open.repeat(MAX_DEPTH + 1));
            if deep.len() <= MAX_LEN {
                let e = parse(&deep).expect_err("nested too deep");
                assert!(
                    matches!(e.problem(), Problem::TooDeep { .. }),
                    "{deep:?}: {e}"
                );
            }
        }
    }
});

//! Fuzz target `request`: the daemon's request parser,
//! `netstat_core::protocol::parse_request`, on arbitrary bytes (`cargo xtask fuzz`).
//!
//! Beyond "never panics", every input checks:
//!
//! - a request that parses, written again with `request_line`, parses back to an equal request;
//! - the limit: a line of `MAX_REQUEST` bytes or more (the limit counts the newline) is refused
//!   as too long, and a request padded with JSON whitespace to one byte under it still parses
//!   to the same request. libFuzzer's inputs stay far below 64 KiB, so each input is also tried
//!   padded with spaces to both lengths.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netstat_core::protocol::{MAX_REQUEST, RequestError, parse_request, request_line};

thread_local! {
    /// `MAX_REQUEST` spaces, reused so each input costs a copy rather than a 64 KiB allocation.
    static PADDED: RefCell<Vec<u8>> = RefCell::new(vec![b' '; MAX_REQUEST]);
}

fuzz_target!(|line: &[u8]| {
    let parsed = parse_request(line);
    if line.len() >= MAX_REQUEST {
        assert_eq!(parsed, Err(RequestError::TooLong), "{} bytes", line.len());
        return;
    }
    PADDED.with_borrow_mut(|padded| {
        padded[..line.len()].copy_from_slice(line);
        assert_eq!(
            parse_request(padded),
            Err(RequestError::TooLong),
            "a line of exactly MAX_REQUEST bytes"
        );
        if let Ok(request) = &parsed {
            assert_eq!(
                parse_request(&padded[..MAX_REQUEST - 1]).as_ref(),
                Ok(request),
                "padded with spaces to MAX_REQUEST - 1 bytes"
            );
        }
        padded[..line.len()].fill(b' ');
    });
    let Ok(request) = parsed else {
        return;
    };

    let written = request_line(&request);
    let Some(written) = written.strip_suffix('\n') else {
        panic!("request_line wrote {written:?}, without its newline");
    };
    // `request_line` writes every field, so a short request with a filter near the limit
    // comes out longer than it went in, and may no longer fit.
    let expected = if written.len() >= MAX_REQUEST {
        Err(RequestError::TooLong)
    } else {
        Ok(request)
    };
    assert_eq!(parse_request(written.as_bytes()), expected, "{written}");
});

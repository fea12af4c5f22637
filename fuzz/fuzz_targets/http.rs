//! Fuzz target `http`: the metrics endpoint's request handling, `netstat_core::http`
//! (`Incoming`, `route`, `reply`), on arbitrary bytes arriving in arbitrary pieces
//! (`cargo xtask fuzz`).
//!
//! The first byte picks where the input is cut in two. Beyond "never panics", it checks:
//!
//! - the answer does not depend on how the bytes were cut;
//! - a head that ends (an empty line, CRLF or bare LF) within `MAX_HEAD` bytes is answered,
//!   and not with 431; `MAX_HEAD` bytes or more without one get 431 (`Route::TooLarge`); fewer
//!   wait for more;
//! - every reply is one HTTP/1.1 status line, headers, and a body of its Content-Length
//!   (none for HEAD).

#![no_main]

use libfuzzer_sys::fuzz_target;
use netstat_core::http::{Incoming, MAX_HEAD, Route, reply};

fn answer(pieces: &[&[u8]]) -> Option<Route> {
    let mut incoming = Incoming::default();
    pieces.iter().find_map(|p| incoming.push(p))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(bytes.len());
    let whole = answer(&[bytes]);
    let (first, second) = bytes.split_at(cut);
    assert_eq!(answer(&[first, second]), whole, "cut at {cut}");
    // Where the head ends, said another way than `Incoming` finds it: after the first empty
    // line (CRLF or bare LF), which may be the very first line.
    let end = [
        bytes.starts_with(b"\n").then_some(1),
        bytes.starts_with(b"\r\n").then_some(2),
        bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2),
        bytes.windows(3).position(|w| w == b"\n\r\n").map(|i| i + 3),
    ]
    .into_iter()
    .flatten()
    .min();
    match end {
        Some(end) if end <= MAX_HEAD => assert!(
            whole.is_some_and(|r| r != Route::TooLarge),
            "a complete head of {end} bytes is answered, and not as too large: {whole:?}"
        ),
        _ if bytes.len() >= MAX_HEAD => assert_eq!(
            whole,
            Some(Route::TooLarge),
            "no end of head within {MAX_HEAD} bytes: 431"
        ),
        _ => assert_eq!(whole, None, "an unfinished head waits for more"),
    }
    let Some(route) = whole else {
        return;
    };
    let out = reply(route, &|om| format!("metrics om={om}\n"));
    let text = String::from_utf8(out).expect("replies are UTF-8");
    assert!(text.starts_with("HTTP/1.1 "), "{text:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    let head_only = matches!(
        route,
        Route::Metrics { head: true, .. } | Route::NotFound { head: true }
    );
    assert_eq!(body.len(), if head_only { 0 } else { length }, "{text:?}");
});

//! Fuzz target `http`: the metrics endpoint's request handling, `netstat_core::http`
//! (`Incoming`, `route`, `reply`), on arbitrary bytes arriving in arbitrary pieces
//! (`cargo xtask fuzz`).
//!
//! The first byte picks where the input is cut in two. Beyond "never panics", it checks:
//!
//! - the answer does not depend on how the bytes were cut;
//! - a head that ends (an empty line, CRLF or bare LF) within `MAX_HEAD` bytes is answered;
//!   bytes past `MAX_HEAD` without one get 431;
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
    let blank = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .into_iter()
        .chain(bytes.windows(3).position(|w| w == b"\n\r\n"))
        .min();
    match blank {
        Some(i) if i + 3 <= MAX_HEAD => assert!(whole.is_some(), "a complete head"),
        _ if bytes.len() >= MAX_HEAD => assert!(whole.is_some(), "a head too large"),
        _ => {}
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

//! The pieces of a JSON line written by hand, for the per-event paths (`watch -o json`, the
//! daemon's event log and JSON subscriptions).
//!
//! serde_json with the terminal-safe formatter ([`JsonSafe`]) looks at every character of
//! every key and value, and the transition's `time`, addresses and container were first made
//! into `String`s: together most of `watch -o json`'s CPU under churn. Here keys are
//! literals, numbers go through serde_json's own formatter (so they are the same bytes), and
//! strings take a fast path when they are plain printable ASCII, which nearly all are; any
//! other string goes through serde_json with [`JsonSafe`], so the rules stay in one place.
//! The tests in `json.rs` hold the result byte for byte to serde's.

use std::{
    cell::RefCell,
    fmt,
    io::{self, Write},
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer as _;
use serde_json::ser::Formatter as _;

use super::escape::JsonSafe;

/// Writes `s` as a JSON string.
pub fn string(out: &mut impl Write, s: &str) -> io::Result<()> {
    // Printable ASCII other than `"` and `\` needs no escape under either rule.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        return out.write_all(b"\"");
    }
    serde_json::Serializer::with_formatter(&mut *out, JsonSafe)
        .serialize_str(s)
        .map_err(io::Error::from)
}

/// Writes `s` as a JSON string, or `null`.
pub fn opt_string(out: &mut impl Write, s: Option<&str>) -> io::Result<()> {
    match s {
        Some(s) => string(out, s),
        None => out.write_all(b"null"),
    }
}

/// Writes the `Display` of a value that never needs escaping (an address, a container id
/// made of a runtime name and hex digits) as a JSON string, without making a `String`.
pub fn display_string(out: &mut impl Write, value: impl fmt::Display) -> io::Result<()> {
    write!(out, "\"{value}\"")
}

/// An address as a JSON string; IPv4, the common case, without the formatting machinery.
pub fn addr(out: &mut impl Write, addr: std::net::IpAddr) -> io::Result<()> {
    let std::net::IpAddr::V4(v4) = addr else {
        return display_string(out, addr);
    };
    let (quoted, n) = super::json_line::quoted_ipv4(v4);
    out.write_all(&quoted[..n])
}

pub fn u64(out: &mut impl Write, v: u64) -> io::Result<()> {
    JsonSafe.write_u64(out, v)
}

pub fn opt_u64(out: &mut impl Write, v: Option<u64>) -> io::Result<()> {
    match v {
        Some(v) => u64(out, v),
        None => out.write_all(b"null"),
    }
}

/// A float as serde_json writes it (`null` when not finite, as serde_json does).
pub fn opt_f64(out: &mut impl Write, v: Option<f64>) -> io::Result<()> {
    match v {
        Some(v) if v.is_finite() => JsonSafe.write_f64(out, v),
        _ => out.write_all(b"null"),
    }
}

pub fn bool(out: &mut impl Write, v: bool) -> io::Result<()> {
    out.write_all(if v { b"true" } else { b"false" })
}

thread_local! {
    /// The day last written and its `YYYY-MM-DDT`, as chrono writes it: the date changes
    /// once a day, the rest is arithmetic.
    static DAY: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// `time` as RFC 3339 in UTC with microseconds (`2026-11-26T09:09:47.000001Z`), quoted: what
/// `to_rfc3339_opts(SecondsFormat::Micros, true)` gives, without a `String` per line.
pub fn time(out: &mut impl Write, time: &DateTime<Utc>) -> io::Result<()> {
    let secs = time.timestamp();
    let nanos = time.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        // A leap second: chrono's own rendering.
        return display_string(out, time.to_rfc3339_opts(SecondsFormat::Micros, true));
    }
    let day = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400) as u32;
    DAY.with_borrow_mut(|(cached, prefix)| {
        if *cached != day {
            let full = time.to_rfc3339_opts(SecondsFormat::Micros, true);
            let t = full.find('T').map_or(0, |t| t + 1);
            full[..t].clone_into(prefix);
            *cached = day;
        }
        out.write_all(b"\"")?;
        out.write_all(prefix.as_bytes())
    })?;
    let (h, m, s) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    let micros = nanos / 1_000;
    let mut b = *b"00:00:00.000000Z\"";
    two(&mut b[0..2], h);
    two(&mut b[3..5], m);
    two(&mut b[6..8], s);
    let mut rest = micros;
    for i in (9..15).rev() {
        b[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.write_all(&b)
}

fn two(b: &mut [u8], v: u32) {
    b[0] = b'0' + (v / 10) as u8;
    b[1] = b'0' + (v % 10) as u8;
}

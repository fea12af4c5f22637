//! A JSON line built in a fixed array, for the line every transition gets (`watch -o json`,
//! the daemon's JSON event log and subscriptions).
//!
//! [`json_writer`](super::json_writer) writes each piece through `io::Write` into a `Vec`:
//! numbers through a formatter's own buffer and then a copy, every key and value a call to
//! `memcpy` of a length only known at run time. Under churn those small copies were a fifth
//! of `watch -o json`'s CPU, and rendering twice the rest of its per-event work. Here digits
//! are written where they go, keys are copies of a length the compiler knows, and the only
//! bounds are the array's.
//!
//! It takes the common case only: names and paths that are plain printable ASCII, IPv4 or
//! IPv6 addresses, a time in an ordinary second, durations below a few hours' worth of
//! exactly printable milliseconds, a line that fits. Anything else returns `None`, and the
//! caller writes the line the general way; the tests hold the two to the same bytes.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use chrono::{DateTime, Datelike as _, Utc};

/// The longest line built here; a longer one (a long cgroup path) goes the general way.
const CAPACITY: usize = 1024;

/// A line under construction, and the day whose date it last wrote.
pub struct JsonLine {
    bytes: [u8; CAPACITY],
    len: usize,
    /// The day number (since 1970) of `date`, and `"YYYY-MM-DDT` for it.
    day: i64,
    date: [u8; 12],
}

impl Default for JsonLine {
    fn default() -> Self {
        Self {
            bytes: [0; CAPACITY],
            len: 0,
            day: i64::MIN,
            date: [0; 12],
        }
    }
}

/// Whether `b` may stand in a JSON string as it is under both escaping rules (serde's and
/// [`JsonSafe`](super::escape::JsonSafe)'s): printable ASCII other than `"` and `\`.
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// How many decimal digits `v` takes.
fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// `00` to `99`: two digits at a time halve the divisions.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Microseconds below which `ms` is written here: `µs / 1000` then prints as its exact
/// decimal (the doubles around it are far closer together than 0.001).
const MAX_MICROS: u64 = 1 << 33;

impl JsonLine {
    /// The line so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Starts a new line.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes that need no escaping, as they are: keys and punctuation.
    #[inline(always)]
    pub fn raw<const N: usize>(&mut self, bytes: &[u8; N]) -> Option<()> {
        let end = self.len + N;
        self.bytes.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    /// `v` in decimal.
    #[inline]
    pub fn u64(&mut self, v: u64) -> Option<()> {
        let end = self.len + decimal_len(v);
        let out = self.bytes.get_mut(self.len..end)?;
        let mut at = out.len();
        let mut rest = v;
        while rest >= 100 {
            let pair = (rest % 100) as usize * 2;
            rest /= 100;
            at -= 2;
            out[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if rest >= 10 {
            let pair = rest as usize * 2;
            out[at - 2..at].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            out[at - 1] = b'0' + rest as u8;
        }
        self.len = end;
        Some(())
    }

    /// `v` in decimal, or `null`.
    #[inline]
    pub fn opt_u64(&mut self, v: Option<u64>) -> Option<()> {
        match v {
            Some(v) => self.u64(v),
            None => self.raw(b"null"),
        }
    }

    /// `s`'s bytes, when they are plain (else `None`), unquoted.
    #[inline]
    fn plain(&mut self, s: &str) -> Option<()> {
        let end = self.len + s.len();
        for (o, &b) in self
            .bytes
            .get_mut(self.len..end)?
            .iter_mut()
            .zip(s.as_bytes())
        {
            if !plain(b) {
                return None;
            }
            *o = b;
        }
        self.len = end;
        Some(())
    }

    /// `s` as a JSON string, when it is plain (else `None`).
    #[inline]
    pub fn string(&mut self, s: &str) -> Option<()> {
        self.quoted(&[s])
    }

    /// The parts, one after another, as one JSON string, when they are plain (else `None`).
    #[inline]
    pub fn quoted(&mut self, parts: &[&str]) -> Option<()> {
        self.raw(b"\"")?;
        for part in parts {
            self.plain(part)?;
        }
        self.raw(b"\"")
    }

    /// `s` as a JSON string, or `null`.
    #[inline]
    pub fn opt_string(&mut self, s: Option<&str>) -> Option<()> {
        match s {
            Some(s) => self.string(s),
            None => self.raw(b"null"),
        }
    }

    /// An address as a JSON string, as `Display` writes it.
    pub fn addr(&mut self, addr: IpAddr) -> Option<()> {
        let IpAddr::V4(v4) = addr else {
            let mut rest = self.bytes.get_mut(self.len..)?;
            let room = rest.len();
            write!(rest, "\"{addr}\"").ok()?;
            self.len += room - rest.len();
            return Some(());
        };
        let (quoted, n) = quoted_ipv4(v4);
        self.bytes
            .get_mut(self.len..self.len + quoted.len())?
            .copy_from_slice(&quoted);
        self.len += n;
        Some(())
    }

    /// A duration as milliseconds with microsecond precision, as serde writes
    /// [`millis`](super::millis) of it (`12.087`, `3.0`), or `null`.
    pub fn opt_millis(&mut self, d: Option<Duration>) -> Option<()> {
        let Some(d) = d else {
            return self.raw(b"null");
        };
        // What `millis` rounds to, in integers: half a microsecond up.
        let micros = u64::try_from(d.as_nanos().checked_add(500)? / 1_000).ok()?;
        if micros >= MAX_MICROS {
            return None;
        }
        self.u64(micros / 1_000)?;
        let frac = micros % 1_000;
        if frac == 0 {
            return self.raw(b".0");
        }
        // Three digits, less the trailing zeros.
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let keep = if frac % 100 == 0 {
            2
        } else if frac % 10 == 0 {
            3
        } else {
            4
        };
        self.bytes
            .get_mut(self.len..self.len + 4)?
            .copy_from_slice(&digits);
        self.len += keep;
        Some(())
    }

    /// `time` as RFC 3339 in UTC with microseconds (`"2026-11-26T09:09:47.000001Z"`), as
    /// `to_rfc3339_opts(SecondsFormat::Micros, true)` writes it, for years 0 to 9999.
    pub fn time(&mut self, time: &DateTime<Utc>) -> Option<()> {
        let nanos = time.timestamp_subsec_nanos();
        if nanos >= 1_000_000_000 {
            // A leap second.
            return None;
        }
        let secs = time.timestamp();
        let day = secs.div_euclid(86_400);
        if day != self.day {
            let date = time.date_naive();
            let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
            let mut d = *b"\"0000-00-00T";
            for (i, place) in [1000, 100, 10, 1].into_iter().enumerate() {
                d[1 + i] = b'0' + (year / place % 10) as u8;
            }
            two(&mut d[6..8], date.month());
            two(&mut d[9..11], date.day());
            self.date = d;
            self.day = day;
        }
        let date = self.date;
        self.raw(&date)?;
        let in_day = secs.rem_euclid(86_400) as u32;
        let mut t = *b"00:00:00.000000Z\"";
        two(&mut t[0..2], in_day / 3600);
        two(&mut t[3..5], in_day / 60 % 60);
        two(&mut t[6..8], in_day % 60);
        let mut rest = nanos / 1_000;
        for digit in t[9..15].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.raw(&t)
    }
}

/// An IPv4 address in quotes, as `Display` writes it, and how many of the bytes it takes
/// (`"255.255.255.255"`, the longest, takes all 17).
pub(super) fn quoted_ipv4(v4: Ipv4Addr) -> ([u8; 17], usize) {
    let mut b = [0u8; 17];
    b[0] = b'"';
    let mut n = 1;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            b[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            b[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            b[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        b[n] = b'0' + octet % 10;
        n += 1;
    }
    b[n] = b'"';
    (b, n + 1)
}

fn two(b: &mut [u8], v: u32) {
    b[0] = b'0' + (v / 10) as u8;
    b[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use proptest::prelude::*;
    use serde_json::ser::Formatter as _;

    use super::*;
    use crate::render::escape::JsonSafe;

    fn serde_millis(d: Duration) -> String {
        let mut out = Vec::new();
        JsonSafe
            .write_f64(&mut out, crate::render::millis(d))
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ours(f: impl FnOnce(&mut JsonLine) -> Option<()>) -> Option<String> {
        let mut line = JsonLine::default();
        f(&mut line)?;
        Some(String::from_utf8(line.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn millis_at_the_edges_of_a_microsecond() {
        for nanos in [
            0,
            1,
            499,
            500,
            999,
            1_000,
            1_499,
            1_500,
            10_000,
            100_000,
            999_999,
            999_500,
            1_000_000,
            12_087_400,
            3_000_000_000,
            (MAX_MICROS - 1) * 1_000,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(
                ours(|l| l.opt_millis(Some(d))).as_deref(),
                Some(&*serde_millis(d)),
                "{nanos} ns"
            );
        }
        assert_eq!(
            ours(|l| l.opt_millis(Some(Duration::from_micros(MAX_MICROS)))),
            None
        );
    }

    #[test]
    fn time_at_the_edges_of_days_and_years() {
        for time in [
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap()
                + Duration::from_nanos(999_999_999),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
        ] {
            let want = format!(
                "\"{}\"",
                time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
            assert_eq!(ours(|l| l.time(&time)).as_deref(), Some(&*want));
        }
    }

    #[test]
    fn what_does_not_fit_or_needs_escaping_is_refused() {
        assert_eq!(ours(|l| l.string("a\"b")), None);
        assert_eq!(ours(|l| l.string("caf\u{e9}")), None);
        assert_eq!(ours(|l| l.string(&"x".repeat(CAPACITY))), None);
        assert_eq!(ours(|l| l.string("nginx")).as_deref(), Some("\"nginx\""));
    }

    proptest! {
        #[test]
        fn numbers_are_what_serde_writes(v in any::<u64>()) {
            prop_assert_eq!(ours(|l| l.u64(v)), Some(v.to_string()));
        }

        #[test]
        fn millis_are_what_serde_writes(nanos in 0u64..(MAX_MICROS * 1_000)) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(ours(|l| l.opt_millis(Some(d))), Some(serde_millis(d)));
        }

        #[test]
        fn addresses_are_what_display_writes(v4 in any::<u32>(), v6 in any::<u128>()) {
            for addr in [IpAddr::from(v4.to_be_bytes()), IpAddr::from(v6.to_be_bytes())] {
                prop_assert_eq!(ours(|l| l.addr(addr)), Some(format!("\"{addr}\"")));
            }
        }

        #[test]
        fn times_are_what_chrono_writes(secs in -62_135_596_800i64..253_402_300_799, micros in 0u32..1_000_000) {
            let time = Utc.timestamp_opt(secs, micros * 1_000).unwrap();
            let want = format!("\"{}\"", time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            prop_assert_eq!(ours(|l| l.time(&time)), Some(want));
        }
    }
}

//! Which renderer writes an event stream's lines. `enetstat watch`, `enetstat life` and a
//! daemon's subscriptions all choose here, so a line through the daemon is byte for byte the
//! line the standalone command prints.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::{
    Format, Line, lifecycle,
    transition::{csv, json, text, text::TextStyle},
};
use crate::life::Lifecycle;

/// What an event stream shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Every transition (`enetstat watch`).
    #[default]
    Transitions,
    /// One record per connection when it ends (`enetstat life`).
    Lifecycles,
}

/// A stream's renderer: what it shows, in which format, and (for text) how.
#[derive(Clone, Copy, Debug)]
pub struct Renderer<'a> {
    pub stream: Stream,
    pub format: Format,
    /// How text lines look (JSON and CSV ignore it).
    pub style: &'a TextStyle,
}

impl Renderer<'_> {
    /// The header lines (text and CSV have one; JSON none).
    pub fn write_header(&self, out: &mut impl Write) -> io::Result<()> {
        match (self.stream, self.format) {
            (Stream::Transitions, Format::Text) => text::write_header(out, self.style),
            (Stream::Transitions, Format::Csv) => csv::write_header(out),
            (Stream::Lifecycles, Format::Text) => writeln!(out, "{}", lifecycle::text::TEXT_HEADER),
            (Stream::Lifecycles, Format::Csv) => lifecycle::csv::write_csv_header(out),
            (_, Format::Json) => Ok(()),
        }
    }

    /// One event's line: the transition, or in a lifecycle stream the connection it closed.
    /// Returns whether it wrote anything (a lifecycle stream skips a transition that closes
    /// no connection), so a caller counting lines counts only what it printed.
    pub fn write(
        &self,
        out: &mut impl Write,
        line: &Line<'_>,
        closed: Option<&Lifecycle>,
    ) -> io::Result<bool> {
        match (self.stream, closed) {
            (Stream::Transitions, _) => match self.format {
                Format::Text => text::write_line(out, line, self.style),
                Format::Json => json::write_line(out, line),
                Format::Csv => csv::write_line(out, line),
            },
            (Stream::Lifecycles, Some(l)) => match self.format {
                Format::Text => lifecycle::text::write_text(out, l),
                Format::Json => lifecycle::json::write_json(out, l, line.time, line.cgroup),
                Format::Csv => lifecycle::csv::write_csv(out, l, line.time, line.cgroup),
            },
            (Stream::Lifecycles, None) => return Ok(false),
        }
        .map(|()| true)
    }
}

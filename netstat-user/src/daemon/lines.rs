//! How a subscription's events become output lines: the same renderers, in the same formats,
//! as `enetstat watch` and `enetstat life` use, so output through the daemon is byte for byte
//! what the standalone commands print.

use std::io::{self, Write};

use super::{
    event::Event,
    protocol::{Stream, SubscribeRequest, WireFormat, WireTime},
};
use crate::render::{
    self, Line,
    text::{TextStyle, Time, Zone},
};

/// The text style a subscription asked for.
pub fn style(r: &SubscribeRequest) -> TextStyle {
    TextStyle {
        wide: r.wide,
        time: match r.time {
            WireTime::Wall if r.utc => Time::Wall(Zone::Utc),
            WireTime::Wall => Time::Wall(Zone::Local),
            WireTime::Relative => Time::Relative {
                start_ns: r.start_ns,
            },
            WireTime::None => Time::Hidden,
        },
    }
}

/// The header lines of a stream (text and CSV have one; JSON none).
pub fn write_header(
    out: &mut impl Write,
    stream: Stream,
    format: WireFormat,
    style: &TextStyle,
) -> io::Result<()> {
    match (stream, format) {
        (Stream::Transitions, WireFormat::Text) => render::text::write_header(out, style),
        (Stream::Transitions, WireFormat::Csv) => render::csv::write_header(out),
        (Stream::Lifecycles, WireFormat::Text) => writeln!(out, "{}", render::life::TEXT_HEADER),
        (Stream::Lifecycles, WireFormat::Csv) => render::life::write_csv_header(out),
        (_, WireFormat::Json) => Ok(()),
    }
}

/// One event's line.
pub fn write_event(
    out: &mut impl Write,
    ev: &Event,
    stream: Stream,
    format: WireFormat,
    style: &TextStyle,
) -> io::Result<()> {
    match stream {
        Stream::Transitions => {
            let line = Line {
                transition: &ev.transition,
                time: ev.time,
                owner: ev.owner.as_ref(),
                in_old: ev.in_old,
                end: ev.end,
                cgroup: ev.cgroup.as_deref(),
            };
            match format {
                WireFormat::Text => render::text::write_line(out, &line, style),
                WireFormat::Json => render::json::write_line(out, &line),
                WireFormat::Csv => render::csv::write_line(out, &line),
            }
        }
        Stream::Lifecycles => {
            let Some(life) = &ev.life else {
                return Ok(());
            };
            match format {
                WireFormat::Text => render::life::write_text(out, life),
                WireFormat::Json => {
                    render::life::write_json(out, life, ev.time, ev.cgroup.as_deref())
                }
                WireFormat::Csv => {
                    render::life::write_csv(out, life, ev.time, ev.cgroup.as_deref())
                }
            }
        }
    }
}

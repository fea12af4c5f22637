//! How a subscription's events become output lines: the renderer `enetstat watch` and
//! `enetstat life` use ([`Renderer`]), in the text style the request asked for, so output
//! through the daemon is byte for byte what the standalone commands print.

use std::io::{self, Write};

use super::{
    event::Event,
    protocol::{SubscribeRequest, WireTime},
};
use crate::render::{
    Renderer,
    transition::text::{TextStyle, Time, Zone},
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

/// The renderer for a subscription.
pub fn renderer<'a>(r: &SubscribeRequest, style: &'a TextStyle) -> Renderer<'a> {
    Renderer {
        stream: r.stream,
        format: r.format,
        style,
    }
}

/// One event's line (none for a lifecycle stream's event that closed no connection).
pub fn write_event(out: &mut impl Write, ev: &Event, renderer: &Renderer<'_>) -> io::Result<()> {
    renderer.write(out, &ev.line(), ev.life.as_ref()).map(drop)
}

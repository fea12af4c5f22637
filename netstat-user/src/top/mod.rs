//! `enetstat top`: a live full-screen view of who connects to what, or (`-b`) the same
//! refreshes printed for scripts.
//!
//! A feed (tracing in this process, [`local`], or a daemon's streams, [`daemon_feed`]) turns
//! events into facts for the [`model`], which rolls them into a [`model::Frame`] every
//! interval, with the live table counted in. [`keys`] holds what the keys change, [`view`]
//! draws a frame, [`batch`] prints one, [`terminal`] owns the terminal.

pub mod batch;
pub mod cells;
pub mod columns;
pub mod containers;
pub mod daemon_feed;
pub mod keys;
pub mod live_bytes;
pub mod local;
pub mod model;
pub mod terminal;
pub mod view;

use std::{
    future::Future,
    io::{self, Write},
    pin::pin,
    time::Duration,
};

use chrono::{Local, SecondsFormat, Utc};

use self::{
    cells::Names,
    daemon_feed::DaemonFeed,
    keys::{Action, Ui, View},
    local::LocalFeed,
    model::{Frame, Model, Socket},
};
use crate::{client::ClientError, filter::Filter, probe::ProbeError, sockdiag::SockDiagError};

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    SockDiag(#[from] SockDiagError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the daemon at {} did not answer a snapshot request within {after:?}", path.display())]
    DaemonTimeout {
        path: std::path::PathBuf,
        after: Duration,
    },
    #[error(
        "cannot use the terminal: {0}. `enetstat top` draws on an interactive terminal; for \
         output to a pipe or file use batch mode (-b)"
    )]
    Terminal(io::Error),
    #[error(
        "standard output is not a terminal. `enetstat top` draws on an interactive terminal; \
         for output to a pipe or file use batch mode (-b)"
    )]
    NotATerminal,
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

/// Where the facts come from.
pub enum Feed {
    Local(Box<LocalFeed>),
    Daemon(DaemonFeed),
}

impl Feed {
    async fn next(&mut self, model: &mut Model) -> Result<(), TopError> {
        match self {
            Feed::Local(f) => f.next(model).await,
            Feed::Daemon(f) => f.next(model).await,
        }
    }

    fn live(&mut self, model: &mut Model) -> Result<Vec<Socket>, TopError> {
        match self {
            Feed::Local(f) => f.live(model),
            Feed::Daemon(f) => f.live(model),
        }
    }

    async fn set_filter(&mut self, filter: Filter) -> Result<(), TopError> {
        match self {
            Feed::Local(f) => {
                f.set_filter(filter);
                Ok(())
            }
            Feed::Daemon(f) => f.subscribe(filter.to_string()).await,
        }
    }

    /// Events that could not be counted so far: lost to a full ring or undecodable here, or
    /// dropped by the daemon because this client read too slowly.
    fn lost(&self) -> u64 {
        match self {
            Feed::Local(f) => {
                let (lost, bad) = f.losses();
                lost + bad
            }
            Feed::Daemon(f) => f.lagged,
        }
    }

    /// A warning for the screen: events lost, here or by the daemon for this client.
    fn warning(&self) -> Option<String> {
        match self {
            Feed::Local(f) => match f.losses() {
                (0, 0) => None,
                (lost, bad) => Some(format!(
                    "{lost} events lost (raise --ring-size), {bad} undecodable"
                )),
            },
            Feed::Daemon(f) => (f.lagged > 0).then(|| {
                format!(
                    "the daemon dropped {} events this client read too slowly",
                    f.lagged
                )
            }),
        }
    }
}

/// Batch output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct TopOptions {
    /// Time between refreshes.
    pub delay: Duration,
    /// The view shown first (and the one batch text prints).
    pub view: View,
    /// The filter expression as given (already parsed into the feed's filter).
    pub filter: String,
    /// No host or service names.
    pub numeric: bool,
    /// `-b`: print refreshes in this format instead of drawing.
    pub batch: Option<BatchFormat>,
    /// Stop after this many refreshes.
    pub iterations: Option<u64>,
    /// Where the facts come from, for the status line: `standalone`, `daemon at PATH`.
    pub source: String,
}

/// How long name lookups may hold a refresh up.
const NAME_BUDGET: Duration = Duration::from_millis(200);

/// Ends the interval: the frame of the time since the last one.
fn roll(
    feed: &mut Feed,
    model: &mut Model,
    last: &mut tokio::time::Instant,
) -> Result<Frame, TopError> {
    let live = feed.live(model)?;
    let now = tokio::time::Instant::now();
    let interval = now - *last;
    *last = now;
    Ok(model.roll(interval, live))
}

/// Runs until `stop` resolves, `q` or Ctrl-C, or the refresh count is reached.
pub async fn run(
    mut feed: Feed,
    opts: &TopOptions,
    stop: impl Future<Output = ()>,
) -> Result<(), TopError> {
    match opts.batch {
        Some(format) => run_batch(&mut feed, opts, format, stop).await,
        None => run_screen(&mut feed, opts, stop).await,
    }
}

async fn run_batch(
    feed: &mut Feed,
    opts: &TopOptions,
    format: BatchFormat,
    stop: impl Future<Output = ()>,
) -> Result<(), TopError> {
    let mut stop = pin!(stop);
    let mut model = Model::new();
    let mut names = Names::new((!opts.numeric).then_some(NAME_BUDGET));
    let mut out = io::BufWriter::new(io::stdout());
    let first = feed.live(&mut model)?;
    model.note_listeners(&first);
    let mut last = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(last + opts.delay, opts.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    loop {
        tokio::select! {
            r = feed.next(&mut model) => { r?; continue; }
            _ = tick.tick() => {}
            () = &mut stop => return Ok(()),
        }
        let mut frame = roll(feed, &mut model, &mut last)?;
        let written = match format {
            BatchFormat::Json => batch::write_json(
                &mut out,
                &mut frame,
                Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
                feed.lost(),
            ),
            BatchFormat::Text => {
                let title = format!(
                    "enetstat top - {} - {} - {:.2}s",
                    Local::now().format("%H:%M:%S"),
                    opts.source,
                    frame.interval.as_secs_f64()
                );
                let title = match feed.warning() {
                    Some(w) => format!("{title} - {w}"),
                    None => title,
                };
                batch::write_text(&mut out, &mut frame, opts.view, &mut names, &title)
            }
        }
        .and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(TopError::Output(e)),
        }
        shown += 1;
        if opts.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

async fn run_screen(
    feed: &mut Feed,
    opts: &TopOptions,
    stop: impl Future<Output = ()>,
) -> Result<(), TopError> {
    use crossterm::{event::Event, tty::IsTty};
    if !io::stdout().is_tty() {
        return Err(TopError::NotATerminal);
    }
    let mut stop = pin!(stop);
    let mut model = Model::new();
    let mut names = Names::new((!opts.numeric).then_some(NAME_BUDGET));
    let first = feed.live(&mut model)?;
    model.note_listeners(&first);
    // Until the first interval ends there are no rates to show, only the live connections.
    let mut frame = Frame {
        connections: first,
        ..Frame::default()
    };
    let mut last = tokio::time::Instant::now();
    let mut ui = Ui::new(opts.view, opts.filter.clone());
    let look = view::Look {
        color: terminal::use_color(),
    };
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    let mut screen = terminal::Screen::open(keys_tx).map_err(TopError::Terminal)?;
    let mut tick = tokio::time::interval_at(last + opts.delay, opts.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    let mut clock = Local::now().format("%H:%M:%S").to_string();
    loop {
        let warning = feed.warning();
        let status = view::Status {
            source: &opts.source,
            delay: opts.delay,
            time: &clock,
            warning: warning.as_deref(),
        };
        let width = screen.terminal.size().map_err(TopError::Terminal)?.width;
        ui.set_wide(view::wide_enough(width));
        // Sorting happens on a copy: the frame keeps the order the model gave.
        let mut shown_frame = frame.clone();
        screen
            .terminal
            .draw(|s| view::draw(s, &ui, &mut shown_frame, &names, &status, look))
            .map_err(TopError::Terminal)?;
        loop {
            tokio::select! {
                r = feed.next(&mut model) => { r?; continue; }
                key = keys.recv() => {
                    let Some(key) = key else { return Ok(()) };
                    match key.map_err(TopError::Terminal)? {
                        Event::Key(k) => match ui.key(k) {
                            Action::Nothing => continue,
                            Action::Redraw => {}
                            Action::Quit => return Ok(()),
                            Action::Filter(f) => {
                                // A new start: no rates until a whole interval has passed
                                // (a few milliseconds of events would make wild ones).
                                feed.set_filter(f).await?;
                                model.clear();
                                let live = feed.live(&mut model)?;
                                model.note_listeners(&live);
                                frame = Frame {
                                    connections: live,
                                    ..Frame::default()
                                };
                                last = tokio::time::Instant::now();
                                tick.reset();
                            }
                        },
                        Event::Resize(..) => {
                            screen.terminal.autoresize().map_err(TopError::Terminal)?;
                        }
                        _ => continue,
                    }
                }
                _ = tick.tick() => {
                    if ui.paused {
                        continue;
                    }
                    frame = roll(feed, &mut model, &mut last)?;
                    names.prepare(&frame.remotes, &frame.connections);
                    names.prepare(&frame.local_ports, &[]);
                    clock = Local::now().format("%H:%M:%S").to_string();
                    shown += 1;
                    if opts.iterations.is_some_and(|n| shown > n) {
                        return Ok(());
                    }
                }
                () = &mut stop => return Ok(()),
            }
            break;
        }
    }
}

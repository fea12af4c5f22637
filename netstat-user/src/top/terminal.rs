//! The terminal while `enetstat top` runs full-screen: raw mode and the alternate screen,
//! given back on every way out (return, error, a signal that ends the loop, and panic), and
//! key presses read on a thread of their own.

use std::{
    io::{self, Stdout, Write as _},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crossterm::{
    cursor, event,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{Terminal, backend::CrosstermBackend};
use tokio::sync::mpsc;

/// Whether the terminal is ours (raw, alternate screen) right now.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Gives the terminal back, once, from wherever it is called.
fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let mut out = io::stdout();
        let _ = crossterm::execute!(out, LeaveAlternateScreen, cursor::Show);
        let _ = out.flush();
    }
}

/// A panic prints on a restored terminal (and its message is not lost on the alternate
/// screen).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The full-screen terminal; dropping it gives the terminal back.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    keys_stop: Arc<AtomicBool>,
}

impl Screen {
    /// Takes the terminal and starts reading keys into `keys`.
    pub fn open(keys: mpsc::UnboundedSender<io::Result<event::Event>>) -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        TAKEN.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = crossterm::execute!(out, EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e);
        }
        let terminal = match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        let keys_stop = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&keys_stop);
        std::thread::Builder::new()
            .name("enetstat-keys".into())
            .spawn(move || read_keys(&keys, &stop))
            .inspect_err(|_| restore())?;
        Ok(Self {
            terminal,
            keys_stop,
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.keys_stop.store(true, Ordering::SeqCst);
        restore();
    }
}

/// Reads terminal events until told to stop or nobody listens.
fn read_keys(keys: &mpsc::UnboundedSender<io::Result<event::Event>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => {
                let ev = event::read();
                let failed = ev.is_err();
                if keys.send(ev).is_err() || failed {
                    return;
                }
            }
            Err(e) => {
                let _ = keys.send(Err(e));
                return;
            }
        }
    }
}

/// Whether to use colour: not when `NO_COLOR` is set (and not empty), nor when the terminal
/// has fewer than 8 colours (or is `dumb`).
pub fn use_color() -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if std::env::var("TERM").is_ok_and(|t| t == "dumb") {
        return false;
    }
    crossterm::style::available_color_count() >= 8
}

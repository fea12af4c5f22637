//! What the keys of `enetstat top` do: the state of the screen (view, sort, filter bar,
//! pause, help) and how a key press changes it. Pure: no terminal; the caller draws the state
//! and carries out the [`Action`].

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    columns::{Column, ConnColumn},
    model::GroupBy,
};
use crate::filter::{Filter, ParseError};

/// The four views, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Processes,
    Remotes,
    LocalPorts,
    Connections,
}

impl View {
    pub const ALL: [View; 4] = [
        View::Processes,
        View::Remotes,
        View::LocalPorts,
        View::Connections,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Processes => "Processes",
            View::Remotes => "Remote endpoints",
            View::LocalPorts => "Local ports",
            View::Connections => "Connections",
        }
    }

    /// The grouping of a grouped view; `None` for the connections view.
    pub fn group_by(self) -> Option<GroupBy> {
        match self {
            View::Processes => Some(GroupBy::Process),
            View::Remotes => Some(GroupBy::Remote),
            View::LocalPorts => Some(GroupBy::LocalPort),
            View::Connections => None,
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The columns of a grouped view, as shown when the screen is `wide` enough for all
    /// (else without the process view's CONTAINER, the last).
    pub fn columns(self, wide: bool) -> &'static [Column] {
        let all = Column::of(self.group_by().unwrap_or(GroupBy::Remote));
        match (self, wide) {
            (View::Processes, false) => &all[..all.len() - 1],
            _ => all,
        }
    }

    /// How many columns it can be sorted by.
    fn sortable(self, wide: bool) -> usize {
        match self {
            View::Connections => ConnColumn::ALL.len(),
            _ => self.columns(wide).len(),
        }
    }

    /// The column it is sorted by at first: connections opened (connect attempts, or accepts
    /// in the local-port view), or the oldest connections first.
    fn default_sort(self) -> usize {
        let column = match self {
            View::LocalPorts => Column::Accepts,
            View::Connections => return ConnColumn::ALL.len() - 1,
            _ => Column::Connects,
        };
        Column::ALL.iter().position(|c| *c == column).unwrap_or(0)
    }
}

/// What the caller must do after a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Nothing,
    /// The screen changed: draw it again.
    Redraw,
    /// Use this filter from now on (and draw again).
    Filter(Filter),
    Quit,
}

/// The filter bar while it is open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Editor {
    pub text: String,
    /// Why the text last given with Enter was refused.
    pub error: Option<ParseError>,
}

/// The state of the screen.
#[derive(Clone, Debug, PartialEq)]
pub struct Ui {
    pub view: View,
    /// Sort column (an index into the view's columns) and direction, per view.
    sort: [(usize, bool); 4],
    pub paused: bool,
    pub help: bool,
    /// The filter bar, while open.
    pub editing: Option<Editor>,
    /// The filter in use, as typed.
    pub filter: String,
    /// Rows scrolled past at the top.
    pub scroll: usize,
    /// Whether the screen has room for every column (see [`Ui::set_wide`]).
    wide: bool,
}

impl Ui {
    pub fn new(view: View, filter: String) -> Self {
        Self {
            view,
            sort: View::ALL.map(|v| (v.default_sort(), false)),
            paused: false,
            help: false,
            editing: None,
            filter,
            scroll: 0,
            wide: true,
        }
    }

    /// Says whether the screen has room for every column. A column it loses is no longer
    /// a sort key: a view sorted by it goes back to its first order.
    pub fn set_wide(&mut self, wide: bool) {
        self.wide = wide;
        for v in View::ALL {
            let (col, reverse) = &mut self.sort[v.index()];
            if *col >= v.sortable(wide) {
                (*col, *reverse) = (v.default_sort(), false);
            }
        }
    }

    /// The current view's columns (grouped views).
    pub fn columns(&self) -> &'static [Column] {
        self.view.columns(self.wide)
    }

    /// The current view's sort column (grouped views).
    pub fn column(&self) -> Column {
        let columns = self.columns();
        columns[self.sort[self.view.index()].0 % columns.len()]
    }

    /// The current view's sort column (connections view).
    pub fn conn_column(&self) -> ConnColumn {
        ConnColumn::ALL[self.sort[self.view.index()].0 % ConnColumn::ALL.len()]
    }

    /// The sort column of the current view as an index into its columns, and whether it is
    /// reversed.
    pub fn sort(&self) -> (usize, bool) {
        self.sort[self.view.index()]
    }

    fn switch(&mut self, view: View) -> Action {
        self.view = view;
        self.scroll = 0;
        Action::Redraw
    }

    fn move_sort(&mut self, forward: bool) -> Action {
        let n = self.view.sortable(self.wide);
        let (col, _) = &mut self.sort[self.view.index()];
        *col = if forward {
            (*col + 1) % n
        } else {
            (*col + n - 1) % n
        };
        Action::Redraw
    }

    /// Applies one key press.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return Action::Quit;
        }
        if let Some(editor) = &mut self.editing {
            return match key.code {
                KeyCode::Esc => {
                    self.editing = None;
                    Action::Redraw
                }
                KeyCode::Enter => match crate::filter::parse(&editor.text) {
                    Ok(filter) => {
                        self.filter = std::mem::take(&mut editor.text);
                        self.editing = None;
                        self.scroll = 0;
                        Action::Filter(filter)
                    }
                    Err(e) => {
                        editor.error = Some(e);
                        Action::Redraw
                    }
                },
                KeyCode::Backspace => {
                    editor.text.pop();
                    editor.error = None;
                    Action::Redraw
                }
                KeyCode::Char('u') if ctrl => {
                    editor.text.clear();
                    editor.error = None;
                    Action::Redraw
                }
                KeyCode::Char(c) if !ctrl => {
                    editor.text.push(c);
                    editor.error = None;
                    Action::Redraw
                }
                _ => Action::Nothing,
            };
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            if key.code == KeyCode::Char('q') {
                return Action::Quit;
            }
            return Action::Redraw;
        }
        match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Tab => self.switch(View::ALL[(self.view.index() + 1) % 4]),
            KeyCode::BackTab => self.switch(View::ALL[(self.view.index() + 3) % 4]),
            KeyCode::Char(c @ '1'..='4') => self.switch(View::ALL[usize::from(c as u8 - b'1')]),
            KeyCode::Char('>' | 's') | KeyCode::Right => self.move_sort(true),
            KeyCode::Char('<') | KeyCode::Left => self.move_sort(false),
            KeyCode::Char('r') => {
                let (_, reverse) = &mut self.sort[self.view.index()];
                *reverse = !*reverse;
                Action::Redraw
            }
            KeyCode::Char('/') => {
                self.editing = Some(Editor {
                    text: self.filter.clone(),
                    error: None,
                });
                Action::Redraw
            }
            KeyCode::Char('p' | ' ') => {
                self.paused = !self.paused;
                Action::Redraw
            }
            KeyCode::Char('?' | 'h') => {
                self.help = true;
                Action::Redraw
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.scroll = self.scroll.saturating_add(1);
                Action::Redraw
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.scroll = self.scroll.saturating_sub(1);
                Action::Redraw
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_add(10);
                Action::Redraw
            }
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_sub(10);
                Action::Redraw
            }
            KeyCode::Home => {
                self.scroll = 0;
                Action::Redraw
            }
            _ => Action::Nothing,
        }
    }
}

/// The keys, for the help overlay and the README.
pub const HELP: &[(&str, &str)] = &[
    ("Tab, Shift-Tab", "next, previous view"),
    (
        "1 2 3 4",
        "processes, remote endpoints, local ports, connections",
    ),
    ("s, >, Right", "sort by the next column"),
    ("<, Left", "sort by the previous column"),
    ("r", "reverse the sort"),
    ("/", "filter (Enter applies, Esc cancels; empty shows all)"),
    ("Up, Down, PgUp, PgDn", "scroll"),
    ("p, Space", "pause (rates then cover the whole pause)"),
    ("?, h", "this help (any key closes it)"),
    ("q, Ctrl-C", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn press(ui: &mut Ui, code: KeyCode) -> Action {
        ui.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn type_text(ui: &mut Ui, text: &str) {
        for c in text.chars() {
            press(ui, KeyCode::Char(c));
        }
    }

    #[test]
    fn tab_and_numbers_switch_views() {
        let mut ui = Ui::new(View::Processes, String::new());
        press(&mut ui, KeyCode::Tab);
        assert_eq!(ui.view, View::Remotes);
        press(&mut ui, KeyCode::BackTab);
        press(&mut ui, KeyCode::BackTab);
        assert_eq!(ui.view, View::Connections);
        press(&mut ui, KeyCode::Char('3'));
        assert_eq!(ui.view, View::LocalPorts);
    }

    #[test]
    fn sort_moves_per_view_and_reverses() {
        let mut ui = Ui::new(View::Processes, String::new());
        assert_eq!(ui.column(), Column::Connects);
        press(&mut ui, KeyCode::Char('s'));
        assert_eq!(ui.column(), Column::Accepts);
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        assert_eq!(ui.column(), Column::Active);
        press(&mut ui, KeyCode::Char('r'));
        assert_eq!(ui.sort(), (1, true));
        // The connections view keeps its own sort: oldest first.
        press(&mut ui, KeyCode::Char('4'));
        assert_eq!((ui.conn_column(), ui.sort().1), (ConnColumn::Age, false));
        press(&mut ui, KeyCode::Right);
        assert_eq!(ui.conn_column(), ConnColumn::Process);
    }

    #[test]
    fn only_the_process_view_sorts_by_container_and_only_when_shown() {
        let mut ui = Ui::new(View::Processes, String::new());
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        assert_eq!(ui.column(), Column::Container);
        // Too narrow for it: back to the first order, and `<` from the name wraps to TX.
        ui.set_wide(false);
        assert_eq!((ui.column(), ui.sort().1), (Column::Connects, false));
        assert!(!ui.columns().contains(&Column::Container));
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        assert_eq!(ui.column(), Column::BytesOut);
        ui.set_wide(true);
        press(&mut ui, KeyCode::Char('2'));
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        press(&mut ui, KeyCode::Char('<'));
        assert_eq!(ui.column(), Column::BytesOut);
    }

    #[test]
    fn the_filter_bar_keeps_a_bad_expression_with_its_error() {
        let mut ui = Ui::new(View::Processes, String::new());
        press(&mut ui, KeyCode::Char('/'));
        type_text(&mut ui, "dport = :80 q");
        // Typing q in the bar does not quit.
        assert!(ui.editing.is_some());
        assert_eq!(press(&mut ui, KeyCode::Enter), Action::Redraw);
        let editor = ui.editing.as_ref().unwrap();
        let error = editor.error.as_ref().expect("an error").to_string();
        assert!(error.contains('^'), "{error}");
        assert_eq!(editor.text, "dport = :80 q");
        press(&mut ui, KeyCode::Backspace);
        press(&mut ui, KeyCode::Backspace);
        assert!(matches!(
            press(&mut ui, KeyCode::Enter),
            Action::Filter(f) if f.to_string().contains("80")
        ));
        assert_eq!(
            (ui.editing.is_none(), ui.filter.as_str()),
            (true, "dport = :80")
        );
        // Esc leaves the filter as it was.
        press(&mut ui, KeyCode::Char('/'));
        type_text(&mut ui, "x");
        press(&mut ui, KeyCode::Esc);
        assert_eq!(ui.filter, "dport = :80");
    }

    #[test]
    fn quit_pause_and_help() {
        let mut ui = Ui::new(View::Processes, String::new());
        press(&mut ui, KeyCode::Char('p'));
        assert!(ui.paused);
        press(&mut ui, KeyCode::Char('?'));
        assert!(ui.help);
        assert_eq!(press(&mut ui, KeyCode::Char('x')), Action::Redraw);
        assert!(!ui.help);
        assert_eq!(press(&mut ui, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        press(&mut ui, KeyCode::Char('/'));
        assert_eq!(ui.key(ctrl_c), Action::Quit);
    }
}

//! Draws `enetstat top`'s screen from the [`Ui`] state and the last [`Frame`]: a status
//! line, the view tabs, the host's totals, the table, and the key line or filter bar. Pure:
//! it draws into ratatui's buffer, so it is tested on a test backend.

use ratatui::{
    Frame as Screen,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Table},
};

use super::{
    cells::{self, Names},
    columns::{Column, ConnColumn, sort_rows, sort_sockets},
    keys::{HELP, Ui, View},
    model::Frame,
};

/// Whether a screen `width` columns wide has room for every column of the process view
/// (CONTAINER too) with the name at its narrowest: 93 columns. At 80 the container is left
/// out rather than squeezing the name or the numbers.
pub fn wide_enough(width: u16) -> bool {
    let fixed: u16 = Column::ALL[1..].iter().map(|c| cells::width(*c) + 1).sum();
    width >= fixed + cells::width(Column::Name)
}

/// Numbers are right-aligned under their headers; names and containers are text.
fn aligned(column: Column, text: String) -> Cell<'static> {
    match column {
        Column::Name | Column::Container => Cell::from(text),
        _ => Cell::from(Line::from(text).right_aligned()),
    }
}

/// Colours, or none (`NO_COLOR`, or a terminal without them): then only bold and reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    pub color: bool,
}

impl Look {
    fn header(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    fn jumped(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.color { s.fg(Color::Red) } else { s }
    }

    fn error(self) -> Style {
        if self.color {
            Style::new().fg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    fn accent(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.color { s.fg(Color::Cyan) } else { s }
    }
}

/// What the status line says besides the view.
pub struct Status<'a> {
    /// Where the facts come from: `standalone` or `daemon at PATH`.
    pub source: &'a str,
    pub delay: std::time::Duration,
    /// Wall-clock time of the frame, `HH:MM:SS`.
    pub time: &'a str,
    /// Problems to show (lost events, a daemon that went away).
    pub warning: Option<&'a str>,
}

/// Draws one screen. The frame's rows are sorted here, as the view asks.
pub fn draw(
    screen: &mut Screen,
    ui: &Ui,
    frame: &mut Frame,
    names: &Names,
    status: &Status,
    look: Look,
) {
    let area = screen.area();
    let bottom = match &ui.editing {
        Some(e) if e.error.is_some() => 4,
        _ => 1,
    };
    let [top, tabs, totals, table, bar] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(bottom),
    ])
    .areas(area);

    let mut head = vec![Span::styled("enetstat top", look.accent())];
    head.push(Span::raw(format!(
        " - {} - {} - every {:.1}s",
        status.time,
        status.source,
        status.delay.as_secs_f64()
    )));
    if !ui.filter.is_empty() {
        head.push(Span::raw(format!(
            " - filter: {}",
            crate::render::escape::terminal_safe(&ui.filter)
        )));
    }
    if ui.paused {
        head.push(Span::styled(" - PAUSED", look.error()));
    }
    screen.render_widget(Paragraph::new(Line::from(head)), top);

    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, v.title());
        if *v == ui.view {
            spans.push(Span::styled(format!("[{}]", label.trim()), look.header()));
        } else {
            spans.push(Span::raw(label));
        }
    }
    screen.render_widget(Paragraph::new(Line::from(spans)), tabs);

    let mut line = cells::totals(frame);
    if frame.dropped > 0 {
        line.push_str(&format!("  ({} groups over the cap)", frame.dropped));
    }
    let mut totals_line = vec![Span::raw(line)];
    if let Some(w) = status.warning {
        totals_line.push(Span::styled(format!("  {w}"), look.error()));
    }
    screen.render_widget(Paragraph::new(Line::from(totals_line)), totals);

    let (column, reverse) = ui.sort();
    let visible = usize::from(table.height.saturating_sub(1));
    let interval = frame.interval;
    match ui.view.group_by() {
        Some(by) => {
            let rows = frame.rows_mut(by);
            let columns = ui.columns();
            sort_rows(rows, ui.column(), reverse);
            let headers = columns
                .iter()
                .enumerate()
                .map(|(i, c)| sort_mark(cells::header(ui.view, *c), i == column, reverse));
            let widths = columns.iter().map(|&c| match c {
                Column::Name => Constraint::Min(cells::width(c)),
                c => Constraint::Length(cells::width(c)),
            });
            // What the fixed columns and the gaps between columns leave the name.
            let fixed: u16 = columns[1..].iter().map(|c| cells::width(*c) + 1).sum();
            let name_width = usize::from(
                table
                    .width
                    .saturating_sub(fixed)
                    .max(cells::width(Column::Name)),
            );
            let body = rows.iter().skip(ui.scroll).take(visible).map(|row| {
                let style = if row.jumped {
                    look.jumped()
                } else {
                    Style::new()
                };
                let cells = cells::row_cells(row, columns, interval, names, name_width);
                TableRow::new(
                    columns
                        .iter()
                        .zip(cells)
                        .map(|(&column, text)| aligned(column, text)),
                )
                .style(style)
            });
            let header = TableRow::new(
                columns
                    .iter()
                    .zip(headers)
                    .map(|(&column, text)| aligned(column, text)),
            )
            .style(look.header());
            screen.render_widget(Table::new(body, widths).header(header), table);
        }
        None => {
            sort_sockets(&mut frame.connections, ui.conn_column(), reverse);
            let headers = ConnColumn::ALL
                .iter()
                .enumerate()
                .map(|(i, c)| Cell::from(sort_mark(cells::conn_header(*c), i == column, reverse)));
            let widths = ConnColumn::ALL.map(|c| match c {
                ConnColumn::Process => Constraint::Min(cells::conn_width(c)),
                c => Constraint::Length(cells::conn_width(c)),
            });
            let body = frame
                .connections
                .iter()
                .skip(ui.scroll)
                .take(visible)
                .map(|s| TableRow::new(cells::socket_cells(s, names)));
            let header = TableRow::new(headers).style(look.header());
            screen.render_widget(Table::new(body, widths).header(header), table);
        }
    }

    match &ui.editing {
        Some(editor) => {
            let mut lines = vec![Line::from(vec![
                Span::styled("/", look.accent()),
                Span::raw(crate::render::escape::terminal_safe(&editor.text).into_owned()),
                Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            ])];
            if let Some(e) = &editor.error {
                lines.extend(
                    e.to_string()
                        .lines()
                        .map(|l| Line::styled(l.to_owned(), look.error())),
                );
            }
            screen.render_widget(Paragraph::new(lines), bar);
        }
        None => {
            let keys = "q quit  Tab/1-4 view  s/</> sort  r reverse  / filter  p pause  ? help";
            screen.render_widget(Paragraph::new(keys).style(look.header()), bar);
        }
    }

    if ui.help {
        draw_help(screen, area);
    }
}

/// The header of the sort column gets an arrow: down for the usual order, up reversed.
fn sort_mark(header: &str, sorted: bool, reverse: bool) -> String {
    match (sorted, reverse) {
        (false, _) => header.to_owned(),
        (true, false) => format!("{header}▼"),
        (true, true) => format!("{header}▲"),
    }
}

fn draw_help(screen: &mut Screen, area: Rect) {
    let width = area.width.min(76);
    let height = (HELP.len() as u16 + 6).min(area.height);
    let r = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| Line::from(format!(" {k:<22}{what}")))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(
        " Rates are per second over the last interval; P50/P99: connect latency.",
    ));
    lines.push(Line::from(
        " ! marks a row whose failures or resets at least doubled (>= 1/s).",
    ));
    lines.push(Line::from(
        " PID*: the process has exited. CONTAINER shows from 93 columns.",
    ));
    screen.render_widget(Clear, r);
    screen.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" Keys ")),
        r,
    );
}

#[cfg(test)]
mod tests;

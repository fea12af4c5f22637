use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend};

use super::*;
use crate::{
    end::End,
    event::{Endpoint, Owner},
    state::TcpState,
    top::model::{Conn, Fact, Model, Opened, Socket},
};

fn frame() -> Frame {
    let mut m = Model::new();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let curl = Owner::new(4242, "curl\x1b[31m");
    let conn = Conn {
        owner: Some(&curl),
        local: Endpoint::new(lo, 40000),
        remote: Endpoint::new(lo, 8080),
        container: None,
    };
    for _ in 0..30 {
        m.record(&conn, Fact::Opened(Opened::Active));
    }
    m.record(&conn, Fact::Connected(Duration::from_micros(120)));
    for _ in 0..3 {
        m.record(&conn, Fact::Ended(End::Refused));
    }
    let live = vec![Socket {
        owner: Some(curl.clone()),
        local: Endpoint::new(lo, 40001),
        remote: Endpoint::new(lo, 8080),
        state: TcpState::SynSent,
        age: Some(Duration::from_secs(75)),
        container: None,
    }];
    m.roll(Duration::from_secs(1), live)
}

/// Draws at `width` x `height`, told the width as `top` tells it, and returns the screen's
/// lines.
fn screen(ui: &Ui, width: u16, height: u16) -> Vec<String> {
    let mut ui = ui.clone();
    ui.set_wide(wide_enough(width));
    let ui = &ui;
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    let names = Names::new(None);
    let status = Status {
        source: "standalone",
        delay: Duration::from_secs(1),
        time: "12:00:00",
        warning: None,
    };
    let mut f = frame();
    t.draw(|s| draw(s, ui, &mut f, &names, &status, Look { color: false }))
        .unwrap();
    let buf = t.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

fn press(ui: &mut Ui, code: KeyCode) {
    ui.key(KeyEvent::new(code, KeyModifiers::NONE));
}

#[test]
fn the_process_view_fits_80_by_24() {
    let ui = Ui::new(View::Processes, String::new());
    let lines = screen(&ui, 80, 24);
    let text = lines.join("\n");
    assert!(
        lines[0].starts_with("enetstat top - 12:00:00 - standalone"),
        "{text}"
    );
    assert!(lines[1].contains("[1 Processes]"), "{text}");
    assert!(
        lines[2].contains("conn 30/s") && lines[2].contains("failed 3/s"),
        "{text}"
    );
    assert!(
        lines[3].contains(" CONN▼ ") && lines[3].ends_with("   TX"),
        "{text}"
    );
    // The name is escaped; 3 failures a second from none is a jump, marked with !.
    let row = &lines[4];
    assert!(row.starts_with("!4242 curl\\x1b…"), "{text}");
    assert!(row.contains(" 30 ") && row.contains("120us"), "{text}");
    assert!(lines[23].starts_with("q quit"), "{text}");
}

#[test]
fn connections_show_state_and_age() {
    let mut ui = Ui::new(View::Processes, String::new());
    press(&mut ui, KeyCode::Char('4'));
    let lines = screen(&ui, 80, 24);
    let text = lines.join("\n");
    assert!(lines[3].contains("AGE▼"), "{text}");
    assert!(
        lines[4].contains("127.0.0.1:8080")
            && lines[4].contains("SYN_SENT")
            && lines[4].contains("1m15s"),
        "{text}"
    );
}

#[test]
fn a_bad_filter_shows_the_caret_under_the_expression() {
    let mut ui = Ui::new(View::Processes, String::new());
    press(&mut ui, KeyCode::Char('/'));
    for c in "dport = :80 bogus".chars() {
        press(&mut ui, KeyCode::Char(c));
    }
    press(&mut ui, KeyCode::Enter);
    let lines = screen(&ui, 80, 24);
    let text = lines.join("\n");
    assert!(lines[20].starts_with("/dport = :80 bogus"), "{text}");
    assert!(lines[21].starts_with("invalid filter:"), "{text}");
    assert_eq!(lines[22].trim_end(), "  dport = :80 bogus", "{text}");
    assert_eq!(lines[23].trim_end(), "              ^^^^^", "{text}");
}

#[test]
fn help_and_small_terminals_do_not_panic() {
    let mut ui = Ui::new(View::Processes, String::new());
    press(&mut ui, KeyCode::Char('?'));
    let text = screen(&ui, 80, 24).join("\n");
    assert!(text.contains("reverse the sort"), "{text}");
    for (w, h) in [(80, 24), (40, 10), (10, 3), (1, 1)] {
        screen(&ui, w, h);
        screen(&Ui::new(View::Connections, String::new()), w, h);
    }
}

#[test]
fn the_container_column_shows_from_93_columns() {
    let ui = Ui::new(View::Processes, String::new());
    assert!(!wide_enough(92) && wide_enough(93));
    let s = screen(&ui, 93, 24);
    assert!(
        s[3].trim_end().ends_with("TX CONTAINER"),
        "{}",
        s.join("\n")
    );
    assert!(s.iter().all(|l| l.chars().count() == 93));
    // Other views have none.
    let mut ui = ui;
    ui.view = View::Remotes;
    let s = screen(&ui, 120, 24);
    assert!(s[3].trim_end().ends_with("TX"), "{}", s.join("\n"));
}

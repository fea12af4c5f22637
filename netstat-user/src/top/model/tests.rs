use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::top::columns::{Column, ConnColumn, sort_rows, sort_sockets};
use TcpState::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn ep(port: u16) -> Endpoint {
    Endpoint::new(LO, port)
}

fn owner(pid: u32, comm: &str) -> Owner {
    Owner::new(pid, comm)
}

fn socket(o: Option<&Owner>, local: u16, remote: u16, state: TcpState) -> Socket {
    Socket {
        owner: o.cloned(),
        local: ep(local),
        remote: ep(remote),
        state,
        age: None,
        container: None,
    }
}

/// Feeds the facts of one transition.
fn transition(
    m: &mut Model,
    o: &Owner,
    local: u16,
    remote: u16,
    (old, new): (TcpState, TcpState),
    in_old_us: u64,
    end: Option<End>,
) {
    let conn = Conn {
        owner: Some(o),
        local: ep(local),
        remote: ep(remote),
        container: None,
    };
    for f in facts_of(old, new, Some(Duration::from_micros(in_old_us)), end) {
        m.record(&conn, f);
    }
}

fn row<'a>(f: &'a Frame, by: GroupBy, key: &Key) -> &'a Row {
    f.rows(by)
        .iter()
        .find(|r| &r.key == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {:?}", f.rows(by)))
}

#[test]
fn percentiles_are_nearest_rank() {
    assert_eq!(percentile(&mut [], 50.0), None);
    assert_eq!(percentile(&mut [7], 99.0), Some(7));
    let mut v: Vec<u64> = (1..=100).rev().collect();
    assert_eq!(percentile(&mut v, 50.0), Some(50));
    assert_eq!(percentile(&mut v, 99.0), Some(99));
    assert_eq!(percentile(&mut v, 100.0), Some(100));
    let mut v = vec![10, 20, 30];
    assert_eq!(percentile(&mut v, 50.0), Some(20));
    assert_eq!(percentile(&mut v, 99.0), Some(30));
}

#[test]
fn transitions_give_opens_latency_failures_and_resets() {
    let f =
        |old, new, end| facts_of(old, new, Some(Duration::from_micros(5)), end).collect::<Vec<_>>();
    assert_eq!(f(Close, SynSent, None), [Fact::Opened(Opened::Active)]);
    assert_eq!(
        f(SynRecv, Established, None),
        [Fact::Opened(Opened::Passive)]
    );
    assert_eq!(
        f(SynSent, Established, None),
        [Fact::Connected(Duration::from_micros(5))]
    );
    assert_eq!(
        f(SynSent, Close, Some(End::Refused)),
        [Fact::Ended(End::Refused)]
    );
    assert!(f(Established, FinWait1, None).is_empty());
    // The first transition seen for a socket has no time in its old state.
    assert!(facts_of(SynSent, Established, None, None).next().is_none());
}

#[test]
fn rates_latency_and_bytes_per_process_remote_and_port() {
    let mut m = Model::new();
    let client = owner(10, "curl");
    let server = owner(20, "nginx");
    // nginx listens on 80 (from the table); curl makes 4 connections to it.
    m.note_listeners(&[socket(Some(&server), 80, 0, Listen)]);
    for (i, us) in [100u64, 200, 300, 400].into_iter().enumerate() {
        let port = 40000 + i as u16;
        transition(&mut m, &client, port, 80, (Close, SynSent), 0, None);
        transition(&mut m, &client, port, 80, (SynSent, Established), us, None);
        transition(&mut m, &server, 80, port, (SynRecv, Established), 0, None);
        let conn = Conn {
            owner: Some(&client),
            local: ep(port),
            remote: ep(80),
            container: None,
        };
        m.record(
            &conn,
            Fact::Bytes {
                sent: 100,
                received: 1000,
            },
        );
    }
    // One refused connect to port 81 and one reset by the server.
    transition(&mut m, &client, 40010, 81, (Close, SynSent), 0, None);
    transition(
        &mut m,
        &client,
        40010,
        81,
        (SynSent, Close),
        9,
        Some(End::Refused),
    );
    transition(
        &mut m,
        &server,
        80,
        40003,
        (Established, Close),
        9,
        Some(End::ResetSent),
    );
    let live = vec![
        socket(Some(&server), 80, 0, Listen),
        socket(Some(&client), 40000, 80, Established),
        socket(Some(&server), 80, 40000, Established),
        socket(Some(&client), 40001, 80, TimeWait),
    ];
    let f = m.roll(Duration::from_millis(500), live);
    assert_eq!(f.interval, Duration::from_millis(500));

    let curl = row(&f, GroupBy::Process, &Key::Process(Some(client.clone())));
    assert_eq!((curl.active_opens, curl.passive_opens), (5, 0));
    assert_eq!((curl.refused, curl.timeouts, curl.failed()), (1, 0, 1));
    assert_eq!(per_second(curl.active_opens, f.interval), 10.0);
    assert_eq!(curl.connect_p50, Some(Duration::from_micros(200)));
    assert_eq!(curl.connect_p99, Some(Duration::from_micros(400)));
    assert_eq!(curl.connects_measured, 4);
    assert_eq!((curl.bytes_out, curl.bytes_in), (400, 4000));
    // TIME_WAIT is not an active connection.
    assert_eq!(curl.active, 1);
    // One failure in half a second: 2/s from nothing is a jump.
    assert!(curl.jumped);

    let nginx = row(&f, GroupBy::Process, &Key::Process(Some(server.clone())));
    assert_eq!(
        (nginx.passive_opens, nginx.resets_out, nginx.active),
        (4, 1, 1)
    );

    // Remote view: port 80 as a destination; nginx's clients by address alone.
    let to_80 = row(&f, GroupBy::Remote, &Key::Remote(ep(80)));
    assert_eq!((to_80.active_opens, to_80.active), (4, 1));
    let clients = row(
        &f,
        GroupBy::Remote,
        &Key::Remote(Endpoint {
            addr: LO,
            port: None,
        }),
    );
    assert_eq!((clients.passive_opens, clients.resets_out), (4, 1));
    assert_eq!(row(&f, GroupBy::Remote, &Key::Remote(ep(81))).refused, 1);

    // Local-port view: only the service port, never curl's ephemeral ports.
    assert_eq!(f.local_ports.len(), 1, "{:?}", f.local_ports);
    let p80 = row(&f, GroupBy::LocalPort, &Key::LocalPort(80));
    assert_eq!((p80.passive_opens, p80.active), (4, 1));

    let total = f.total();
    assert_eq!(
        (total.active_opens, total.passive_opens, total.bad()),
        (5, 4, 2)
    );
}

#[test]
fn a_new_interval_starts_from_zero_and_jumps_need_a_rise() {
    let mut m = Model::new();
    let o = owner(1, "a");
    let fail = |m: &mut Model, n: u16| {
        for i in 0..n {
            transition(m, &o, 1000 + i, 9, (SynSent, Close), 1, Some(End::Timeout));
        }
    };
    fail(&mut m, 3);
    let f = m.roll(Duration::from_secs(1), vec![]);
    assert!(f.processes[0].jumped);
    // The same rate again is no jump; idle groups without connections disappear.
    fail(&mut m, 3);
    let f = m.roll(Duration::from_secs(1), vec![]);
    assert_eq!(f.processes[0].timeouts, 3);
    assert!(!f.processes[0].jumped);
    let f = m.roll(Duration::from_secs(1), vec![]);
    assert!(f.processes.is_empty());
    // Nor does a group whose connections only closed in order.
    transition(&mut m, &o, 1000, 9, (FinWait2, Close), 1, Some(End::Normal));
    assert!(m.roll(Duration::from_secs(1), vec![]).processes.is_empty());
    // Doubled from 3/s: a jump.
    fail(&mut m, 3);
    m.roll(Duration::from_secs(1), vec![]);
    fail(&mut m, 6);
    assert!(m.roll(Duration::from_secs(1), vec![]).processes[0].jumped);
}

#[test]
fn groups_are_capped_and_counted() {
    let mut m = Model::new();
    for i in 0..(MAX_GROUPS as u32 + 5) {
        let o = owner(i, "x");
        transition(&mut m, &o, 1, 2, (Close, SynSent), 0, None);
    }
    let f = m.roll(Duration::from_secs(1), vec![]);
    assert_eq!(f.processes.len(), MAX_GROUPS);
    // Each of the 5 extra connections was left out of the process view (the remote view
    // had room: one key).
    assert_eq!(f.dropped, 5);
}

fn rows_for_sorting() -> Vec<Row> {
    let mut m = Model::new();
    let (a, b, c) = (owner(1, "a"), owner(2, "b"), owner(3, "c"));
    for (o, n) in [(&a, 1), (&b, 3), (&c, 2)] {
        for i in 0..n {
            transition(&mut m, o, 100 + i, 9, (Close, SynSent), 0, None);
        }
    }
    transition(&mut m, &a, 5, 9, (SynSent, Close), 1, Some(End::Refused));
    m.roll(Duration::from_secs(1), vec![]).processes
}

fn pids(rows: &[Row]) -> Vec<u32> {
    rows.iter()
        .map(|r| match &r.key {
            Key::Process(Some(o)) => o.pid,
            _ => 0,
        })
        .collect()
}

#[test]
fn sorting_by_any_column_either_way() {
    let mut rows = rows_for_sorting();
    sort_rows(&mut rows, Column::Connects, false);
    assert_eq!(pids(&rows), [2, 3, 1]);
    sort_rows(&mut rows, Column::Connects, true);
    assert_eq!(pids(&rows), [1, 3, 2]);
    sort_rows(&mut rows, Column::Name, false);
    assert_eq!(pids(&rows), [1, 2, 3]);
    sort_rows(&mut rows, Column::Name, true);
    assert_eq!(pids(&rows), [3, 2, 1]);
    // Ties (b and c have no failures) go by pid.
    sort_rows(&mut rows, Column::Failed, false);
    assert_eq!(pids(&rows), [1, 2, 3]);
}

#[test]
fn connections_sort_oldest_first_by_default() {
    let mut s = vec![
        Socket {
            age: Some(Duration::from_secs(1)),
            ..socket(None, 1, 2, Established)
        },
        Socket {
            age: Some(Duration::from_secs(90)),
            ..socket(None, 3, 4, SynSent)
        },
        socket(None, 5, 6, CloseWait),
    ];
    sort_sockets(&mut s, ConnColumn::Age, false);
    let states: Vec<_> = s.iter().map(|s| s.state).collect();
    assert_eq!(states, [SynSent, Established, CloseWait]);
    sort_sockets(&mut s, ConnColumn::State, false);
    let states: Vec<_> = s.iter().map(|s| s.state).collect();
    assert_eq!(states, [CloseWait, Established, SynSent]);
}

#[test]
fn accepted_connections_without_an_owner_get_their_listeners() {
    let mut m = Model::new();
    let server = owner(20, "nginx");
    m.note_listeners(&[socket(Some(&server), 80, 0, Listen)]);
    let conn = Conn {
        owner: None,
        local: ep(80),
        remote: ep(50000),
        container: None,
    };
    m.record(&conn, Fact::Opened(Opened::Passive));
    let live = vec![
        socket(Some(&server), 80, 0, Listen),
        socket(None, 80, 50000, Established),
    ];
    let f = m.roll(Duration::from_secs(1), live);
    assert_eq!(f.processes.len(), 1, "{:?}", f.processes);
    let nginx = row(&f, GroupBy::Process, &Key::Process(Some(server)));
    assert_eq!((nginx.passive_opens, nginx.active), (1, 1));
}

#[test]
fn a_process_row_carries_its_container_and_its_exit_without_splitting() {
    let mut m = Model::new();
    let nginx = owner(10, "nginx");
    let gone = Owner {
        exited: true,
        ..nginx.clone()
    };
    let (a, b) = ("docker://aaaa", "docker://bbbb");
    let conn = |o, local, container| Conn {
        owner: Some(o),
        local: ep(local),
        remote: ep(80),
        container,
    };
    m.record(&conn(&nginx, 40000, Some(a)), Fact::Opened(Opened::Active));
    m.record(&conn(&nginx, 40001, None), Fact::Opened(Opened::Active));
    let stray = owner(11, "stray");
    m.record(&conn(&stray, 40002, Some(a)), Fact::Opened(Opened::Active));
    m.record(&conn(&stray, 40003, Some(b)), Fact::Opened(Opened::Active));
    let live = vec![Socket {
        container: Some(a.into()),
        ..socket(Some(&gone), 40004, 80, Established)
    }];
    let f = m.roll(Duration::from_secs(1), live);
    let r = row(&f, GroupBy::Process, &Key::Process(Some(nginx.clone())));
    assert_eq!((r.active_opens, r.active), (2, 1));
    assert_eq!(r.container.as_deref(), Some(a));
    assert!(r.exited, "the live socket named its owner as exited");
    assert_eq!(f.rows(GroupBy::Process).len(), 2, "{:?}", f.processes);
    // Sockets in two containers: none shown.
    let r = row(&f, GroupBy::Process, &Key::Process(Some(stray)));
    assert_eq!((r.container.as_deref(), r.exited), (None, false));
    // The next interval starts afresh.
    let f = m.roll(Duration::from_secs(1), vec![]);
    assert!(f.processes.is_empty());
}

#[test]
fn rows_sort_by_container_with_the_unknown_last() {
    let mut m = Model::new();
    for (pid, container) in [(1, None), (2, Some("docker://b")), (3, Some("docker://a"))] {
        let o = owner(pid, "x");
        let conn = Conn {
            owner: Some(&o),
            local: ep(40000 + pid as u16),
            remote: ep(80),
            container,
        };
        m.record(&conn, Fact::Opened(Opened::Active));
    }
    let mut rows = m.roll(Duration::from_secs(1), vec![]).processes;
    sort_rows(&mut rows, Column::Container, false);
    let pids: Vec<u32> = rows
        .iter()
        .map(|r| match &r.key {
            Key::Process(Some(o)) => o.pid,
            k => panic!("{k:?}"),
        })
        .collect();
    assert_eq!(pids, [3, 2, 1]);
}

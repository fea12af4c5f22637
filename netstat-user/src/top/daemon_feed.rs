//! `enetstat top` through a running daemon (members of its socket's group, no root): two
//! subscriptions of the daemon's protocol, transitions and lifecycles as JSON, filtered by
//! the daemon, give the facts; a snapshot of the daemon's table each refresh gives the live
//! connections. The daemon's lines are untrusted: they are parsed, never shown raw, and names
//! are escaped when drawn.
//!
//! An owner the daemon says has exited (`owner_exited`) is marked as standalone marks it, and
//! the container comes from the daemon, which resolved it where the sockets are.
//!
//! RX and TX count live connections too: each refresh, top asks the kernel's socket dump
//! (which needs no privilege) for the byte counters of the sockets the daemon's table shows,
//! by cookie, as standalone does ([`LiveBytes`]); a connection's close, whose lifecycle
//! carries its totals, counts what was left. Sockets the dump cannot see (the daemon traces
//! another network namespace) count when they close.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use tokio::{sync::mpsc, task::JoinHandle};

use rustc_hash::FxHashMap;

use super::{
    TopError,
    live_bytes::LiveBytes,
    model::{Conn, Fact, Model, Socket, facts_of},
};
use crate::{
    client::{Client, ClientError},
    daemon::protocol::{Format, Servers, SnapshotRequest, Stream, SubscribeRequest},
    end::End,
    event::{Cookie, Endpoint, Owner},
    sockdiag::{self, Proto, TcpBytes},
    state::TcpState,
};

/// How long a snapshot may take the daemon.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines waiting between the readers and the model; a reader that finds it full stops
/// reading, and the daemon then cuts it off as lagged (and says so).
const QUEUE: usize = 65_536;

/// A transition as `watch -o json` prints it: the fields top needs.
#[derive(Debug, Deserialize)]
struct WireTransition {
    #[serde(flatten)]
    conn: WireConn,
    old: String,
    new: String,
    ms_in_old: Option<f64>,
    end: Option<String>,
}

/// What a transition's and a finished connection's lines both say of the connection: who
/// holds it, where it is.
#[derive(Debug, Deserialize)]
struct WireConn {
    pid: Option<u32>,
    comm: Option<String>,
    #[serde(default)]
    owner_exited: bool,
    laddr: String,
    lport: Option<u16>,
    raddr: String,
    rport: Option<u16>,
    container: Option<String>,
}

impl WireConn {
    /// `None` when an address does not parse.
    fn parse(self) -> Option<ParsedConn> {
        Some(ParsedConn {
            local: endpoint(&self.laddr, self.lport)?,
            remote: endpoint(&self.raddr, self.rport)?,
            owner: owner(self.pid, self.comm, self.owner_exited),
            container: self.container,
        })
    }
}

/// A line's connection, parsed: what a [`Conn`] borrows.
struct ParsedConn {
    owner: Option<Owner>,
    local: Endpoint,
    remote: Endpoint,
    container: Option<String>,
}

impl ParsedConn {
    fn conn(&self) -> Conn<'_> {
        Conn {
            owner: self.owner.as_ref(),
            local: self.local,
            remote: self.remote,
            container: self.container.as_deref(),
        }
    }
}

/// A finished connection as `life -o json` prints it: the fields top needs.
#[derive(Debug, Deserialize)]
struct WireLife {
    #[serde(flatten)]
    conn: WireConn,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    cookie: Option<u64>,
}

/// A socket of a JSON snapshot: the fields top needs.
#[derive(Debug, Deserialize)]
struct WireSocket {
    local_addr: String,
    local_port: Option<u16>,
    remote_addr: String,
    remote_port: Option<u16>,
    state: String,
    pid: Option<u32>,
    program: Option<String>,
    age_ms: Option<f64>,
    #[serde(default)]
    closed: bool,
    container: Option<String>,
    cookie: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WireSnapshot {
    sockets: Vec<WireSocket>,
}

/// One line from a subscription.
enum Incoming {
    Transition(WireTransition),
    Life(WireLife),
    /// The daemon cut the subscription off for reading too slowly, dropping this many
    /// events; the reader subscribed again.
    Lagged(u64),
}

fn owner(pid: Option<u32>, comm: Option<String>, exited: bool) -> Option<Owner> {
    pid.map(|pid| Owner {
        exited,
        ..Owner::new(pid, comm.unwrap_or_default())
    })
}

fn endpoint(addr: &str, port: Option<u16>) -> Option<Endpoint> {
    Some(Endpoint {
        addr: addr.parse().ok()?,
        port,
    })
}

/// What a snapshot of the daemon's table gave: each socket with its cookie, where known.
type Table = Result<Vec<(Option<Cookie>, Socket)>, TopError>;

/// Through the daemon.
pub struct DaemonFeed {
    path: PathBuf,
    lines: mpsc::Receiver<Result<Incoming, TopError>>,
    /// Tables fetched in the background, so keys are never held up by a busy daemon.
    tables: mpsc::Receiver<Table>,
    /// The readers of the streams and the fetcher of tables.
    tasks: Vec<JoinHandle<()>>,
    /// The last table, shown again until a newer one comes.
    table: Vec<(Option<Cookie>, Socket)>,
    /// What the live connections' byte counters gave so far.
    bytes: LiveBytes,
    /// Whether a dump has set the counters' baseline (what moved before top started).
    baselined: bool,
    /// Whether a failed dump has been reported: RX and TX then count closes only.
    dump_failed: bool,
    /// Events the daemon dropped because this client read too slowly.
    pub lagged: u64,
}

impl DaemonFeed {
    /// Connects and subscribes with `filter` (an expression already checked).
    pub async fn connect(path: &Path, filter: String) -> Result<Self, TopError> {
        // The first connection says what is wrong (no daemon, permissions) before anything.
        drop(Client::connect(path).await?);
        let (_, lines) = mpsc::channel(1);
        let (_, tables) = mpsc::channel(1);
        let mut feed = Self {
            path: path.to_owned(),
            lines,
            tables,
            tasks: Vec::new(),
            table: Vec::new(),
            bytes: LiveBytes::new(),
            baselined: false,
            dump_failed: false,
            lagged: 0,
        };
        feed.subscribe(filter).await?;
        Ok(feed)
    }

    /// (Re)subscribes both streams and the tables with `filter`; what the old ones sent is
    /// dropped. Waits for the first table.
    pub async fn subscribe(&mut self, filter: String) -> Result<(), TopError> {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lines = rx;
        for stream in [Stream::Transitions, Stream::Lifecycles] {
            let client = subscribe(&self.path, stream, &filter).await?;
            let reader = read_lines(
                client,
                stream,
                filter.clone(),
                tx.clone(),
                self.path.clone(),
            );
            self.tasks.push(tokio::spawn(reader));
        }
        let client = Client::connect(&self.path).await?;
        let (tx, rx) = mpsc::channel(1);
        self.tables = rx;
        self.tasks.push(tokio::spawn(fetch_tables(
            client,
            self.path.clone(),
            filter,
            tx,
        )));
        self.table = match self.tables.recv().await {
            Some(table) => table?,
            None => return Err(ClientError::Closed.into()),
        };
        Ok(())
    }

    /// Waits for lines and turns them into facts.
    pub async fn next(&mut self, model: &mut Model) -> Result<(), TopError> {
        let Some(first) = self.lines.recv().await else {
            return Err(ClientError::Closed.into());
        };
        self.lagged += apply(model, &mut self.bytes, first?);
        while let Ok(line) = self.lines.try_recv() {
            self.lagged += apply(model, &mut self.bytes, line?);
        }
        Ok(())
    }

    /// The daemon's live TCP sockets the filter keeps, with their owners: the newest table
    /// fetched. The bytes they moved since the last refresh go to the model.
    pub fn live(&mut self, model: &mut Model) -> Result<Vec<Socket>, TopError> {
        if let Ok(table) = self.tables.try_recv() {
            self.table = table?;
        }
        self.count_live_bytes(model);
        Ok(self.table.iter().map(|(_, s)| s.clone()).collect())
    }

    /// Samples the byte counters of the table's sockets from the kernel's socket dump.
    fn count_live_bytes(&mut self, model: &mut Model) {
        let mut sampled: FxHashMap<Cookie, TcpBytes> = FxHashMap::default();
        let dumped = sockdiag::dump_connections_with_bytes(&[Proto::Tcp], |d| {
            if let Some(b) = d.bytes {
                sampled.insert(d.cookie, b);
            }
        });
        if let Err(e) = dumped {
            if !self.dump_failed {
                tracing::warn!("{e}; RX and TX count connections as they close");
                self.dump_failed = true;
            }
            return;
        }
        for (cookie, socket) in &self.table {
            let Some((cookie, &now)) = cookie.and_then(|c| Some((c, sampled.get(&c)?))) else {
                continue;
            };
            if !self.baselined {
                self.bytes.baseline(cookie, now);
                continue;
            }
            let moved = self.bytes.moved(cookie, now);
            if moved.sent + moved.received > 0 {
                let conn = Conn {
                    owner: socket.owner.as_ref(),
                    local: socket.local,
                    remote: socket.remote,
                    container: socket.container.as_deref(),
                };
                model.record(&conn, Fact::from(moved));
            }
        }
        self.baselined = true;
        self.bytes.end_refresh();
    }
}

/// Fetches the daemon's table again as soon as the last one was taken.
async fn fetch_tables(mut client: Client, path: PathBuf, filter: String, tx: mpsc::Sender<Table>) {
    loop {
        let table = table(&mut client, &path, &filter).await;
        let last = table.is_err();
        if tx.send(table).await.is_err() || last {
            return;
        }
    }
}

/// One snapshot of the daemon's table: every TCP socket but those in TIME_WAIT (which are not
/// connections any more, and may be many).
async fn table(client: &mut Client, path: &Path, filter: &str) -> Table {
    let request = SnapshotRequest {
        filter: filter.to_owned(),
        protos: vec!["tcp".into()],
        servers: Servers::Include,
        // The table shows request sockets (NEW_SYN_RECV) as SYN_RECV.
        states: TcpState::ALL
            .into_iter()
            .filter(|s| !matches!(s, TcpState::TimeWait | TcpState::NewSynRecv))
            .map(|s| s.name().to_owned())
            .collect(),
        format: Format::Json,
        numeric: true,
        programs: true,
        ..SnapshotRequest::default()
    };
    let text = tokio::time::timeout(SNAPSHOT_TIMEOUT, client.snapshot(request))
        .await
        .map_err(|_| TopError::DaemonTimeout {
            path: path.to_owned(),
            after: SNAPSHOT_TIMEOUT,
        })??;
    let snapshot: WireSnapshot = serde_json::from_str(&text).map_err(|e| {
        TopError::Client(ClientError::Protocol {
            path: path.to_owned(),
            detail: crate::render::escape::terminal_safe(&e.to_string()).into_owned(),
        })
    })?;
    Ok(snapshot
        .sockets
        .into_iter()
        .filter(|s| !s.closed)
        .filter_map(|s| {
            let cookie = s.cookie.map(Cookie);
            let socket = Socket {
                // A snapshot names the process that holds the socket now, or (`holds`
                // false) the last one that did, which may still run: not marked.
                owner: owner(s.pid, s.program, false),
                local: endpoint(&s.local_addr, s.local_port)?,
                remote: endpoint(&s.remote_addr, s.remote_port)?,
                state: s.state.parse::<TcpState>().ok()?,
                age: s
                    .age_ms
                    .filter(|ms| ms.is_finite() && *ms >= 0.0)
                    .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                container: s.container.map(Into::into),
            };
            Some((cookie, socket))
        })
        .collect())
}

impl Drop for DaemonFeed {
    fn drop(&mut self) {
        for r in &self.tasks {
            r.abort();
        }
    }
}

/// One subscription.
async fn subscribe(path: &Path, stream: Stream, filter: &str) -> Result<Client, TopError> {
    let mut client = Client::connect(path).await?;
    client
        .subscribe(SubscribeRequest {
            stream,
            filter: filter.to_owned(),
            format: Format::Json,
            header: false,
            ..SubscribeRequest::default()
        })
        .await?;
    Ok(client)
}

/// Reads one subscription's lines into the queue until the daemon closes it or the queue is
/// dropped. When the daemon cuts it off for lagging, it says how many events were dropped and
/// subscribes again: a live view goes on with what comes next.
async fn read_lines(
    mut client: Client,
    stream: Stream,
    filter: String,
    tx: mpsc::Sender<Result<Incoming, TopError>>,
    path: PathBuf,
) {
    loop {
        let item = match client.next_line().await {
            Ok(Some(line)) => {
                let parsed = match stream {
                    Stream::Transitions => serde_json::from_str(&line).map(Incoming::Transition),
                    Stream::Lifecycles => serde_json::from_str(&line).map(Incoming::Life),
                };
                parsed.map_err(|e| {
                    TopError::Client(ClientError::Protocol {
                        path: path.clone(),
                        detail: crate::render::escape::terminal_safe(&e.to_string()).into_owned(),
                    })
                })
            }
            Err(ClientError::Lagged(n)) => match subscribe(&path, stream, &filter).await {
                Ok(again) => {
                    client = again;
                    Ok(Incoming::Lagged(n))
                }
                Err(e) => Err(e),
            },
            Ok(None) => Err(ClientError::Closed.into()),
            Err(e) => Err(e.into()),
        };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// The facts in one line; returns the events the daemon dropped, if it says so. A closed
/// connection's bytes are what its live samples had not counted yet.
fn apply(model: &mut Model, bytes: &mut LiveBytes, line: Incoming) -> u64 {
    match line {
        Incoming::Lagged(n) => return n,
        Incoming::Transition(t) => {
            let (Some(parsed), Ok(old), Ok(new)) = (
                t.conn.parse(),
                t.old.parse::<TcpState>(),
                t.new.parse::<TcpState>(),
            ) else {
                return 0;
            };
            let conn = parsed.conn();
            let in_old = t
                .ms_in_old
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .map(|ms| Duration::from_secs_f64(ms / 1000.0));
            let end = t.end.as_deref().and_then(End::named);
            for fact in facts_of(old, new, in_old, end) {
                model.record(&conn, fact);
            }
        }
        Incoming::Life(l) => {
            let (Some(parsed), Some(sent), Some(received)) =
                (l.conn.parse(), l.bytes_sent, l.bytes_received)
            else {
                return 0;
            };
            let conn = parsed.conn();
            let total = TcpBytes { sent, received };
            let left = match l.cookie {
                Some(c) => bytes.closed(Cookie(c), total),
                None => total,
            };
            model.record(&conn, Fact::from(left));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::GroupBy;

    #[test]
    fn daemon_lines_become_the_same_facts() {
        let mut m = Model::new();
        let lines = [
            r#"{"pid":7,"comm":"curl","laddr":"127.0.0.1","lport":40000,"raddr":"127.0.0.1","rport":80,"old":"CLOSE","new":"SYN_SENT","ms_in_old":null,"end":null,"unknown":1}"#,
            r#"{"pid":7,"comm":"curl","laddr":"127.0.0.1","lport":40000,"raddr":"127.0.0.1","rport":80,"old":"SYN_SENT","new":"ESTABLISHED","ms_in_old":0.25,"end":null}"#,
            r#"{"pid":7,"comm":"curl","laddr":"127.0.0.1","lport":40001,"raddr":"127.0.0.1","rport":80,"old":"SYN_SENT","new":"CLOSE","ms_in_old":0.1,"end":"refused"}"#,
        ];
        for l in lines {
            apply(
                &mut m,
                &mut LiveBytes::new(),
                Incoming::Transition(serde_json::from_str(l).unwrap()),
            );
        }
        let life = r#"{"pid":7,"comm":"curl","laddr":"127.0.0.1","lport":40000,"raddr":"127.0.0.1","rport":80,"bytes_sent":10,"bytes_received":2000}"#;
        apply(
            &mut m,
            &mut LiveBytes::new(),
            Incoming::Life(serde_json::from_str(life).unwrap()),
        );
        let f = m.roll(Duration::from_secs(1), vec![]);
        let r = &f.rows(GroupBy::Process)[0];
        assert_eq!((r.active_opens, r.refused, r.bytes_in), (1, 1, 2000));
        assert_eq!(r.connect_p50, Some(Duration::from_micros(250)));
        assert!(!r.exited);
    }

    #[test]
    fn an_exited_owner_and_a_container_reach_the_row() {
        let mut m = Model::new();
        let id = "ab".repeat(32);
        let lines = [
            format!(
                r#"{{"pid":7,"comm":"curl","laddr":"127.0.0.1","lport":40000,"raddr":"127.0.0.1","rport":80,"old":"SYN_SENT","new":"CLOSE","ms_in_old":0.1,"end":"refused","container":"docker://{id}"}}"#
            ),
            format!(
                r#"{{"pid":7,"comm":"curl","owner_exited":true,"laddr":"127.0.0.1","lport":40001,"raddr":"127.0.0.1","rport":80,"old":"SYN_SENT","new":"CLOSE","ms_in_old":0.1,"end":"refused","container":"docker://{id}"}}"#
            ),
        ];
        for l in &lines {
            apply(
                &mut m,
                &mut LiveBytes::new(),
                Incoming::Transition(serde_json::from_str(l).unwrap()),
            );
        }
        let f = m.roll(Duration::from_secs(1), vec![]);
        // One row: an exited owner marks it rather than splitting it.
        let [r] = f.rows(GroupBy::Process) else {
            panic!("{f:#?}")
        };
        assert_eq!(r.refused, 2);
        assert!(r.exited);
        let want = format!("docker://{id}");
        assert_eq!(r.container.as_deref(), Some(want.as_str()));
        let names = crate::top::cells::Names::new(None);
        assert_eq!(crate::top::cells::name(r, &names), "!7* curl");
    }
}

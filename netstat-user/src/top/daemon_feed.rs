//! `enetstat top` through a running daemon (members of its socket's group, no root): two
//! subscriptions of the daemon's protocol, transitions and lifecycles as JSON, filtered by
//! the daemon, give the facts; a snapshot of the daemon's table each refresh gives the live
//! connections. The daemon's lines are untrusted: they are parsed, never shown raw, and names
//! are escaped when drawn.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    TopError,
    model::{Conn, Fact, Model, Socket, facts_of},
};
use crate::{
    client::{Client, ClientError},
    daemon::protocol::{SnapshotRequest, Stream, SubscribeRequest, WireFormat, WireServers},
    end::End,
    event::{Endpoint, Owner},
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
    pid: Option<u32>,
    comm: Option<String>,
    laddr: String,
    lport: Option<u16>,
    raddr: String,
    rport: Option<u16>,
    old: String,
    new: String,
    ms_in_old: Option<f64>,
    end: Option<String>,
}

/// A finished connection as `life -o json` prints it: the fields top needs.
#[derive(Debug, Deserialize)]
struct WireLife {
    pid: Option<u32>,
    comm: Option<String>,
    laddr: String,
    lport: Option<u16>,
    raddr: String,
    rport: Option<u16>,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
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
}

#[derive(Debug, Deserialize)]
struct WireSnapshot {
    sockets: Vec<WireSocket>,
}

/// One line from a subscription.
enum Incoming {
    Transition(WireTransition),
    Life(WireLife),
}

fn owner(pid: Option<u32>, comm: Option<String>) -> Option<Owner> {
    pid.map(|pid| Owner {
        pid,
        comm: comm.unwrap_or_default(),
    })
}

fn endpoint(addr: &str, port: Option<u16>) -> Option<Endpoint> {
    Some(Endpoint {
        addr: addr.parse().ok()?,
        port,
    })
}

fn end_named(name: &str) -> Option<End> {
    [
        End::Normal,
        End::Refused,
        End::Timeout,
        End::ResetReceived,
        End::ResetSent,
        End::Aborted,
    ]
    .into_iter()
    .find(|e| e.name() == name)
}

/// Through the daemon.
pub struct DaemonFeed {
    path: PathBuf,
    /// For snapshots.
    client: Client,
    lines: mpsc::Receiver<Result<Incoming, TopError>>,
    readers: Vec<JoinHandle<()>>,
    filter: String,
}

impl DaemonFeed {
    /// Connects and subscribes with `filter` (an expression already checked).
    pub async fn connect(path: &Path, filter: String) -> Result<Self, TopError> {
        let client = Client::connect(path).await?;
        let (_, lines) = mpsc::channel(1);
        let mut feed = Self {
            path: path.to_owned(),
            client,
            lines,
            readers: Vec::new(),
            filter: String::new(),
        };
        feed.subscribe(filter).await?;
        Ok(feed)
    }

    /// (Re)subscribes both streams with `filter`; lines of the old subscriptions are dropped.
    pub async fn subscribe(&mut self, filter: String) -> Result<(), TopError> {
        for r in self.readers.drain(..) {
            r.abort();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lines = rx;
        for stream in [Stream::Transitions, Stream::Lifecycles] {
            let mut client = Client::connect(&self.path).await?;
            client
                .subscribe(SubscribeRequest {
                    stream,
                    filter: filter.clone(),
                    format: WireFormat::Json,
                    header: false,
                    ..SubscribeRequest::default()
                })
                .await?;
            let tx = tx.clone();
            let path = self.path.clone();
            self.readers
                .push(tokio::spawn(read_lines(client, stream, tx, path)));
        }
        self.filter = filter;
        Ok(())
    }

    /// Waits for lines and turns them into facts.
    pub async fn next(&mut self, model: &mut Model) -> Result<(), TopError> {
        let Some(first) = self.lines.recv().await else {
            return Err(ClientError::Closed.into());
        };
        apply(model, first?);
        while let Ok(line) = self.lines.try_recv() {
            apply(model, line?);
        }
        Ok(())
    }

    /// The daemon's live TCP sockets the filter keeps, with their owners.
    pub async fn live(&mut self) -> Result<Vec<Socket>, TopError> {
        let request = SnapshotRequest {
            filter: self.filter.clone(),
            protos: vec!["tcp".into()],
            servers: WireServers::Include,
            format: WireFormat::Json,
            numeric: true,
            programs: true,
            ..SnapshotRequest::default()
        };
        let text = tokio::time::timeout(SNAPSHOT_TIMEOUT, self.client.snapshot(request))
            .await
            .map_err(|_| TopError::DaemonTimeout {
                path: self.path.clone(),
                after: SNAPSHOT_TIMEOUT,
            })??;
        let snapshot: WireSnapshot =
            serde_json::from_str(&text).map_err(|e| self.protocol(e.to_string()))?;
        Ok(snapshot
            .sockets
            .into_iter()
            .filter(|s| !s.closed)
            .filter_map(|s| {
                Some(Socket {
                    owner: owner(s.pid, s.program),
                    local: endpoint(&s.local_addr, s.local_port)?,
                    remote: endpoint(&s.remote_addr, s.remote_port)?,
                    state: s.state.parse::<TcpState>().ok()?,
                    age: s
                        .age_ms
                        .filter(|ms| ms.is_finite() && *ms >= 0.0)
                        .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                })
            })
            .collect())
    }

    fn protocol(&self, detail: String) -> TopError {
        TopError::Client(ClientError::Protocol {
            path: self.path.clone(),
            detail: crate::render::escape::terminal_safe(&detail).into_owned(),
        })
    }
}

impl Drop for DaemonFeed {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// Reads one subscription's lines into the queue until the daemon closes it or the queue is
/// dropped.
async fn read_lines(
    mut client: Client,
    stream: Stream,
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
            Ok(None) => Err(ClientError::Closed.into()),
            Err(e) => Err(e.into()),
        };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// The facts in one line.
fn apply(model: &mut Model, line: Incoming) {
    match line {
        Incoming::Transition(t) => {
            let (Some(local), Some(remote), Ok(old), Ok(new)) = (
                endpoint(&t.laddr, t.lport),
                endpoint(&t.raddr, t.rport),
                t.old.parse::<TcpState>(),
                t.new.parse::<TcpState>(),
            ) else {
                return;
            };
            let owner = owner(t.pid, t.comm);
            let conn = Conn {
                owner: owner.as_ref(),
                local,
                remote,
            };
            let in_old = t
                .ms_in_old
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .map(|ms| Duration::from_secs_f64(ms / 1000.0));
            let end = t.end.as_deref().and_then(end_named);
            for fact in facts_of(old, new, in_old, end) {
                model.record(&conn, fact);
            }
        }
        Incoming::Life(l) => {
            let (Some(local), Some(remote), Some(sent), Some(received)) = (
                endpoint(&l.laddr, l.lport),
                endpoint(&l.raddr, l.rport),
                l.bytes_sent,
                l.bytes_received,
            ) else {
                return;
            };
            let owner = owner(l.pid, l.comm);
            let conn = Conn {
                owner: owner.as_ref(),
                local,
                remote,
            };
            model.record(&conn, Fact::Bytes { sent, received });
        }
    }
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
                Incoming::Transition(serde_json::from_str(l).unwrap()),
            );
        }
        let life = r#"{"pid":7,"comm":"curl","laddr":"127.0.0.1","lport":40000,"raddr":"127.0.0.1","rport":80,"bytes_sent":10,"bytes_received":2000}"#;
        apply(&mut m, Incoming::Life(serde_json::from_str(life).unwrap()));
        let f = m.roll(Duration::from_secs(1), vec![]);
        let r = &f.rows(GroupBy::Process)[0];
        assert_eq!((r.active_opens, r.refused, r.bytes_in), (1, 1, 2000));
        assert_eq!(r.connect_p50, Some(Duration::from_micros(250)));
    }
}

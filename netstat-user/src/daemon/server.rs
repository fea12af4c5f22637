//! The Unix socket's clients: one task per connection that reads requests and writes replies
//! (the socket file itself is [`super::socket`]).

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, oneshot},
};

use super::{
    engine::{Command, EntrySubject, Subscribe, Subscription},
    limits::{Guards, WRITE_TIMEOUT},
    lines,
    protocol::{
        self, MAX_REQUEST, Request, RequestError, SnapshotReply, SnapshotRequest, SubscribeRequest,
    },
};
use crate::{
    filter::{self, Filter, ParseError},
    pids::SocketOwners,
    snapshot::{self, SnapshotOptions},
    table::{Entry, Limits},
};

/// What every client task shares.
#[derive(Clone, Debug)]
pub struct Shared {
    pub commands: mpsc::Sender<Command>,
    /// Events a subscriber may have queued before it is cut off.
    pub queue_len: usize,
    pub limits: Limits,
    pub guards: Arc<Guards>,
}

impl Shared {
    /// Parses a request's filter; a filter over a size limit is counted.
    fn filter(&self, text: &str) -> Result<Filter, String> {
        filter::parse(text).map_err(|e: ParseError| {
            if e.problem().is_limit() {
                self.guards.filters_refused.fetch_add(1, Ordering::Relaxed);
            }
            format!("bad filter: {e}")
        })
    }
}

/// Accepts clients until the listener is dropped. Past `--max-clients` a new client gets one
/// error line and is closed; out of file descriptors, accepting pauses and retries.
pub async fn serve(listener: UnixListener, shared: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match shared.guards.clients.enter() {
                Some(pass) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        client(stream, shared).await;
                        drop(pass);
                    });
                }
                None => {
                    let max = shared.guards.clients.max();
                    let line = protocol::error_line(&format!(
                        "too many clients: this daemon serves at most {max} at once \
                         (--max-clients); try again later"
                    ));
                    // Never wait for a refused client: what does not fit is lost.
                    let _ = stream.try_write(line.as_bytes());
                }
            },
            Err(e) => {
                tracing::warn!("cannot accept a client: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request line, at most [`MAX_REQUEST`] bytes. `None` at a clean end of input.
async fn read_request(
    rd: &mut BufReader<OwnedReadHalf>,
) -> io::Result<Option<Result<Vec<u8>, RequestError>>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = rd.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (line.is_empty(), too_long) {
                (_, true) => Some(Err(RequestError::TooLong)),
                (true, false) => None,
                (false, false) => Some(Err(RequestError::Truncated)),
            });
        }
        let (chunk, used, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            line.extend_from_slice(chunk);
            if line.len() >= MAX_REQUEST {
                too_long = true;
                line = Vec::new();
            }
        }
        rd.consume(used);
        if done {
            if too_long {
                return Ok(Some(Err(RequestError::TooLong)));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(Ok(line)));
        }
    }
}

async fn client(stream: UnixStream, shared: Shared) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    if let Err(e) = requests(&mut rd, &mut wr, &shared).await {
        tracing::debug!("client went away: {e}");
    }
}

async fn requests(
    rd: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    shared: &Shared,
) -> io::Result<()> {
    loop {
        let line = match read_request(rd).await? {
            None => return Ok(()),
            Some(Err(e)) => {
                wr.write_all(protocol::error_line(&e.to_string()).as_bytes())
                    .await?;
                if e == RequestError::Truncated {
                    return Ok(());
                }
                continue;
            }
            Some(Ok(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Some(Ok(line)) => line,
        };
        let reply = match protocol::parse_request(&line) {
            Err(e) => protocol::error_line(&e.to_string()),
            Ok(Request::Stats) => stats(shared).await,
            Ok(Request::Snapshot(r)) => snapshot(shared, r).await,
            Ok(Request::Subscribe(r)) => match shared.filter(&r.filter) {
                Ok(filter) => match shared.guards.subscribers.enter() {
                    Some(_pass) => return subscribe(rd, wr, shared, r, filter).await,
                    None => protocol::error_line(&format!(
                        "too many subscribers: this daemon streams to at most {} at once \
                         (--max-subscribers); try again later",
                        shared.guards.subscribers.max()
                    )),
                },
                Err(e) => protocol::error_line(&e),
            },
        };
        wr.write_all(reply.as_bytes()).await?;
    }
}

const GONE: &str = "the daemon is shutting down";

async fn stats(shared: &Shared) -> String {
    let (reply, rx) = oneshot::channel();
    if shared
        .commands
        .send(Command::Stats { reply })
        .await
        .is_err()
    {
        return protocol::error_line(GONE);
    }
    match rx.await {
        Ok(stats) => {
            let mut s = serde_json::json!({ "v": protocol::VERSION, "stats": stats }).to_string();
            s.push('\n');
            s
        }
        Err(_) => protocol::error_line(GONE),
    }
}

/// The options of a snapshot request, as `enetstat`'s flags would set them, with its filter
/// compiled against this host (service names, cgroup tree, network namespace).
pub fn snapshot_options(
    r: &SnapshotRequest,
    limits: Limits,
    filter: Filter,
) -> Result<SnapshotOptions, String> {
    let netns = crate::netns::own_netns();
    let extra: Option<snapshot::Matcher> = (!filter.is_all()).then(|| {
        Arc::new(move |e: &Entry| filter.matches(&EntrySubject::new(e, netns))) as snapshot::Matcher
    });
    r.options(limits, extra)
}

async fn snapshot(shared: &Shared, r: SnapshotRequest) -> String {
    let opts = match shared
        .filter(&r.filter)
        .and_then(|f| snapshot_options(&r, shared.limits, f))
    {
        Ok(o) => o,
        Err(e) => return protocol::error_line(&e),
    };
    let owners = if opts.programs {
        tokio::task::spawn_blocking(SocketOwners::scan)
            .await
            .unwrap_or_default()
    } else {
        SocketOwners::new()
    };
    let (reply, rx) = oneshot::channel();
    let cmd = Command::Snapshot {
        opts: Box::new(opts.clone()),
        owners,
        reply,
    };
    if shared.commands.send(cmd).await.is_err() {
        return protocol::error_line(GONE);
    }
    let Ok((rows, status)) = rx.await else {
        return protocol::error_line(GONE);
    };
    let header = r.header;
    let rendered = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        snapshot::render_traced(&opts, &rows, &status, &mut out, header).map(|()| out)
    })
    .await;
    match rendered {
        Ok(Ok(out)) => {
            let reply = SnapshotReply {
                v: protocol::VERSION,
                output: String::from_utf8_lossy(&out).into_owned(),
            };
            let mut s = serde_json::to_string(&reply).unwrap_or_default();
            s.push('\n');
            s
        }
        Ok(Err(e)) => protocol::error_line(&format!("cannot render the snapshot: {e}")),
        Err(e) => protocol::error_line(&format!("cannot render the snapshot: {e}")),
    }
}

/// Writes to a subscriber; one that has not taken the bytes within [`WRITE_TIMEOUT`] (it
/// does not read) is cut off, so it holds no queue or buffer for long.
async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8], shared: &Shared) -> io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::info!("a subscriber has not read for {WRITE_TIMEOUT:?}; cutting it off");
            shared
                .guards
                .subscribers_cut_off
                .fetch_add(1, Ordering::Relaxed);
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the subscriber stopped reading",
            ))
        }
    }
}

/// Streams events to the client until it goes away or lags.
async fn subscribe(
    rd: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    shared: &Shared,
    mut r: SubscribeRequest,
    filter: Filter,
) -> io::Result<()> {
    // `"time":"relative"` without a `start_ns` counts from the subscription, not from boot.
    if r.start_ns == 0 {
        r.start_ns = crate::clock::monotonic_ns();
    }
    let (queue, mut rx) = mpsc::channel(shared.queue_len.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(std::sync::OnceLock::new());
    let sub = Subscription {
        stream: r.stream,
        cost: filter.cost(),
        filter,
        queue,
        dropped: dropped.clone(),
        cut: cut.clone(),
        work: 0,
    };
    let (registered, done) = oneshot::channel();
    let cmd = Command::Subscribe(Subscribe {
        subscription: sub,
        registered,
    });
    if shared.commands.send(cmd).await.is_err() || done.await.is_err() {
        return wr.write_all(protocol::error_line(GONE).as_bytes()).await;
    }
    let style = lines::style(&r);
    let renderer = lines::renderer(&r, &style);
    let mut buf = protocol::subscribed_line(r.stream).into_bytes();
    if r.header {
        renderer.write_header(&mut buf)?;
    }
    write(wr, &buf, shared).await?;
    buf.clear();
    let mut batch = Vec::with_capacity(1024);
    let mut scratch = [0u8; 512];
    let mut reading = true;
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 1024) => {
                let lost = dropped.load(Ordering::Relaxed);
                if lost > 0 {
                    tracing::info!("a subscriber lagged: {lost} events dropped; cutting it off");
                    shared.guards.subscribers_cut_off.fetch_add(1, Ordering::Relaxed);
                    let line = protocol::lagged_line(lost);
                    // It may not read this either: the connection closes regardless.
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes()))
                        .await;
                    return Ok(());
                }
                if n == 0 {
                    // The engine cut this subscriber off, or stopped.
                    let Some(why) = cut.get() else {
                        return wr.write_all(protocol::error_line(GONE).as_bytes()).await;
                    };
                    shared.guards.subscribers_cut_off.fetch_add(1, Ordering::Relaxed);
                    let line = protocol::error_line(why);
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes()))
                        .await;
                    return Ok(());
                }
                for ev in batch.drain(..) {
                    lines::write_event(&mut buf, &ev, &renderer)?;
                }
                write(wr, &buf, shared).await?;
                buf.clear();
            }
            n = rd.read(&mut scratch), if reading => {
                // Anything more the client sends is ignored. Its end of input may be a
                // half-close (`socat`), so only a failed write ends the stream.
                reading = matches!(n, Ok(n) if n > 0);
            }
        }
    }
}

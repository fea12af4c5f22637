//! Connection churn on loopback, in one of two shapes ([`Shape`]):
//!
//! - **pingpong**: every worker owns a listener and, in one thread, loops connect / accept /
//!   one byte each way / client close / server reads EOF / server close. No wakeups between
//!   threads sit on the measured path.
//! - **server**: as real servers run. Every worker owns a listener served by one accepting
//!   thread, which writes the payload and closes first, and `connectors` threads that connect,
//!   read to EOF and close. Every connection crosses threads (and usually CPUs), so it costs
//!   the wakeups a server pays, and the server's close leaves TIME_WAIT on its side.
//!
//! Either way every connection ends the same orderly way and makes exactly
//! [`TRANSITIONS_PER_CONNECTION`] transitions; no connection ends in a reset.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::{
    TRANSITIONS_PER_CONNECTION, TRANSITIONS_PER_LISTENER,
    placement::{Placement, Role},
};

/// Which address family the workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Families {
    /// 127.0.0.1 only.
    V4,
    /// ::1 only.
    V6,
    /// Even workers on 127.0.0.1, odd ones on ::1.
    Mix,
}

impl Families {
    fn addr(self, worker: usize) -> IpAddr {
        match (self, worker % 2) {
            (Families::V4, _) | (Families::Mix, 0) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }
}

/// How connections are made and closed; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One thread per worker does both ends; the client closes first.
    Pingpong,
    /// An accepting thread and connecting threads per worker; the server closes first.
    Server,
}

#[derive(Clone, Debug)]
pub struct ChurnOptions {
    pub shape: Shape,
    /// With [`Shape::Server`]: connecting threads per worker.
    pub connectors: usize,
    /// With [`Shape::Server`]: bytes the server writes before it closes (at least 1).
    pub payload: usize,
    /// Concurrent workers, one thread and one listener each.
    pub workers: usize,
    /// Stop after this long...
    pub duration: Option<Duration>,
    /// ...or after this many connections in total (whichever comes first).
    pub connections: Option<u64>,
    /// Target connections per second over all workers; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Worker `i` listens on `base_port + i`; 0 lets the kernel pick.
    pub base_port: u16,
    pub families: Families,
    /// Where each worker's threads run.
    pub placement: Placement,
}

/// What a churn run did; printed as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnReport {
    pub mode: &'static str,
    pub shape: Shape,
    pub workers: usize,
    pub families: Families,
    pub placement: Placement,
    /// Listening ports, one per worker.
    pub ports: Vec<u16>,
    /// Connections completed (opened, used and closed by both ends).
    pub connections: u64,
    /// Listeners opened and closed.
    pub listeners: u64,
    /// State transitions the run made: connections x 10 + listeners x 2.
    pub transitions: u64,
    /// Seconds from the start signal to the last worker's end.
    pub elapsed_s: f64,
    /// Connections per second.
    pub rate_cps: f64,
    /// Transitions per second (connections only).
    pub events_per_s: f64,
    /// Target rate, when one was set.
    pub target_cps: Option<f64>,
    /// Connections that failed part way (their transitions are unknown); should be 0.
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

struct WorkerResult {
    connections: u64,
    errors: u64,
    first_error: Option<String>,
}

impl WorkerResult {
    /// A worker that could not start.
    fn failed(error: String) -> Self {
        Self {
            connections: 0,
            errors: 1,
            first_error: Some(error),
        }
    }
}

/// Runs the churn and reports what it did. Listeners are opened before the clock starts and
/// closed after it stops, so their transitions are counted but not timed.
pub fn run(opts: &ChurnOptions) -> Result<ChurnReport> {
    if opts.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if opts.duration.is_none() && opts.connections.is_none() {
        bail!("give --seconds or --connections (or both)");
    }
    let mut listeners = Vec::with_capacity(opts.workers);
    for i in 0..opts.workers {
        let port = match opts.base_port {
            0 => 0,
            base => base
                .checked_add(u16::try_from(i)?)
                .context("--port + --workers passes 65535")?,
        };
        let addr = SocketAddr::new(opts.families.addr(i), port);
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr}: is the port taken, or IPv6 off on loopback?")
        })?;
        listeners.push(listener);
    }
    let ports = listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<io::Result<Vec<_>>>()?;

    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(opts.workers + 1));
    let per_worker_interval = opts
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(opts.workers as f64 / r));
    let mut handles = Vec::with_capacity(opts.workers);
    for (i, listener) in listeners.into_iter().enumerate() {
        let quota = opts.connections.map(|n| {
            let w = opts.workers as u64;
            n / w + u64::from((i as u64) < n % w)
        });
        let (stop, start) = (stop.clone(), start.clone());
        let (shape, connectors, payload) = (opts.shape, opts.connectors.max(1), opts.payload);
        let placement = opts.placement;
        handles.push(
            thread::Builder::new()
                .name(format!("churn-{i}"))
                .spawn(move || {
                    if let Err(e) = placement.pin(i, Role::Server) {
                        start.wait();
                        return WorkerResult::failed(format!("cannot pin worker {i}: {e}"));
                    }
                    match shape {
                        Shape::Pingpong => {
                            worker(listener, quota, per_worker_interval, &stop, &start)
                        }
                        Shape::Server => server_worker(
                            listener,
                            Team {
                                worker: i,
                                connectors,
                                placement,
                            },
                            payload.max(1),
                            quota,
                            per_worker_interval,
                            &stop,
                            &start,
                        ),
                    }
                })?,
        );
    }

    start.wait();
    let began = Instant::now();
    if let Some(d) = opts.duration {
        // Sleep in small steps so count-limited runs that finish early are not held up.
        while began.elapsed() < d && !handles.iter().all(std::thread::JoinHandle::is_finished) {
            thread::sleep((d.saturating_sub(began.elapsed())).min(Duration::from_millis(20)));
        }
        stop.store(true, Ordering::Relaxed);
    }
    let mut connections = 0;
    let mut errors = 0;
    let mut first_error = None;
    for handle in handles {
        let r = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        connections += r.connections;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let elapsed_s = began.elapsed().as_secs_f64();
    let listeners = opts.workers as u64;
    Ok(ChurnReport {
        mode: "churn",
        shape: opts.shape,
        workers: opts.workers,
        families: opts.families,
        placement: opts.placement,
        ports,
        connections,
        listeners,
        transitions: connections * TRANSITIONS_PER_CONNECTION
            + listeners * TRANSITIONS_PER_LISTENER,
        elapsed_s,
        rate_cps: connections as f64 / elapsed_s,
        events_per_s: (connections * TRANSITIONS_PER_CONNECTION) as f64 / elapsed_s,
        target_cps: opts.rate,
        errors,
        first_error,
    })
}

fn worker(
    listener: TcpListener,
    quota: Option<u64>,
    interval: Option<Duration>,
    stop: &AtomicBool,
    start: &Barrier,
) -> WorkerResult {
    let mut result = WorkerResult {
        connections: 0,
        errors: 0,
        first_error: None,
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            result.errors += 1;
            result.first_error = Some(e.to_string());
            start.wait();
            return result;
        }
    };
    start.wait();
    let began = Instant::now();
    let mut attempts: u64 = 0;
    while !stop.load(Ordering::Relaxed) && quota.is_none_or(|q| attempts < q) {
        if let Some(interval) = interval {
            // An absolute schedule: a late connection does not push back the ones after it.
            let due = began + interval.mul_f64(attempts as f64);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        attempts += 1;
        match connection(&listener, addr) {
            Ok(()) => result.connections += 1,
            Err(e) => {
                result.errors += 1;
                if result.first_error.is_none() {
                    result.first_error = Some(e.to_string());
                }
                // Usually EADDRNOTAVAIL (ephemeral ports exhausted): give TIME_WAIT a moment.
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    result
}

/// A [`Shape::Server`] worker's threads beside the accepting one.
#[derive(Clone, Copy)]
struct Team {
    worker: usize,
    connectors: usize,
    placement: Placement,
}

/// A [`Shape::Server`] worker: this thread accepts and serves (writes `payload` bytes, then
/// closes first); `connectors` threads connect, read to EOF and close. Connections are
/// counted when the server has served them. Stopping: once the connectors are done, one more
/// connection wakes the accepting thread (it is served and counted like the others).
fn server_worker(
    listener: TcpListener,
    team: Team,
    payload: usize,
    quota: Option<u64>,
    interval: Option<Duration>,
    stop: &AtomicBool,
    start: &Barrier,
) -> WorkerResult {
    let mut result = WorkerResult {
        connections: 0,
        errors: 0,
        first_error: None,
    };
    let fail = |result: &mut WorkerResult, e: io::Error| {
        result.errors += 1;
        if result.first_error.is_none() {
            result.first_error = Some(e.to_string());
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            fail(&mut result, e);
            start.wait();
            return result;
        }
    };
    // Connections the connectors opened, and (once they are done) how many the accepting
    // thread must serve before it stops: theirs and the one that wakes it.
    let made = AtomicU64::new(0);
    let expected = AtomicU64::new(u64::MAX);
    let attempts = AtomicU64::new(0);
    let data = vec![b'!'; payload];
    thread::scope(|scope| {
        let clients: Vec<_> = (0..team.connectors)
            .map(|_| {
                scope.spawn(|| {
                    let mut errors = Vec::new();
                    if let Err(e) = team.placement.pin(team.worker, Role::Connector) {
                        errors.push(io::Error::other(format!(
                            "cannot pin a connector of worker {}: {e}",
                            team.worker
                        )));
                        return errors;
                    }
                    let began = Instant::now();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let n = attempts.fetch_add(1, Ordering::Relaxed);
                        if quota.is_some_and(|q| n >= q.saturating_sub(1)) {
                            break;
                        }
                        if let Some(interval) = interval {
                            let due = began + interval.mul_f64(n as f64);
                            let now = Instant::now();
                            if due > now {
                                thread::sleep(due - now);
                            }
                        }
                        if let Err(e) = client(addr, &made) {
                            errors.push(e);
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                    errors
                })
            })
            .collect();
        start.wait();
        let waker = scope.spawn(|| {
            let errors: Vec<io::Error> = clients
                .into_iter()
                .flat_map(|c| c.join().unwrap_or_default())
                .collect();
            expected.store(made.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
            // The accepting thread blocks in accept(): one last connection wakes it.
            let last = client(addr, &made);
            (errors, last)
        });
        let mut accepted = 0;
        loop {
            match listener.accept() {
                Ok((mut server, _)) => {
                    accepted += 1;
                    match server.write_all(&data) {
                        Ok(()) => result.connections += 1,
                        Err(e) => fail(&mut result, e),
                    }
                    // The server closes first; the client reads EOF and closes.
                    drop(server);
                }
                Err(e) => fail(&mut result, e),
            }
            if accepted >= expected.load(Ordering::SeqCst) {
                break;
            }
        }
        if let Ok((errors, last)) = waker.join() {
            for e in errors.into_iter().chain(last.err()) {
                fail(&mut result, e);
            }
        }
    });
    result
}

/// A [`Shape::Server`] client: connect (counted in `made`), read to EOF, close.
fn client(addr: SocketAddr, made: &AtomicU64) -> io::Result<()> {
    let mut client = TcpStream::connect(addr)?;
    made.fetch_add(1, Ordering::SeqCst);
    let mut sink = Vec::new();
    client.read_to_end(&mut sink)?;
    if sink.is_empty() {
        return Err(io::Error::other("the server sent nothing"));
    }
    Ok(())
}

/// One connection, opened, used and closed in the order that makes exactly ten transitions.
fn connection(listener: &TcpListener, addr: SocketAddr) -> io::Result<()> {
    let mut client = TcpStream::connect(addr)?;
    let (mut server, _) = listener.accept()?;
    let mut byte = [0u8; 1];
    client.write_all(b"?")?;
    server.read_exact(&mut byte)?;
    server.write_all(b"!")?;
    client.read_exact(&mut byte)?;
    // The client closes first...
    drop(client);
    // ...and the server closes once it has read the FIN, so it goes through CLOSE_WAIT.
    if server.read(&mut byte)? != 0 {
        return Err(io::Error::other("the client sent more than one byte"));
    }
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_run_makes_the_connections_it_was_asked_for() {
        let report = run(&ChurnOptions {
            shape: Shape::Pingpong,
            connectors: 1,
            payload: 1,
            workers: 3,
            duration: None,
            connections: Some(31),
            rate: None,
            base_port: 0,
            families: Families::V4,
            placement: Placement::Free,
        })
        .unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.connections, 31);
        assert_eq!(report.transitions, 31 * 10 + 3 * 2);
        assert_eq!(report.ports.len(), 3);
    }

    #[test]
    fn a_rate_limited_run_makes_exactly_the_connections_asked() {
        let report = run(&ChurnOptions {
            shape: Shape::Pingpong,
            connectors: 1,
            payload: 1,
            workers: 2,
            duration: None,
            connections: Some(20),
            rate: Some(200.0),
            base_port: 0,
            families: Families::V4,
            placement: Placement::Free,
        })
        .unwrap();
        // Exactly the connections asked for. (How long it took is wall-clock time, which a
        // test does not assert; `cargo xtask bench` reports the rate it reached.)
        assert_eq!(report.connections, 20);
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
    }

    #[test]
    fn a_server_shaped_run_makes_the_connections_it_was_asked_for() {
        let report = run(&ChurnOptions {
            shape: Shape::Server,
            connectors: 2,
            payload: 100,
            workers: 2,
            duration: None,
            connections: Some(40),
            rate: None,
            base_port: 0,
            families: Families::V4,
            placement: Placement::Free,
        })
        .unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.connections, 40);
        assert_eq!(report.transitions, 40 * 10 + 2 * 2);
    }
}

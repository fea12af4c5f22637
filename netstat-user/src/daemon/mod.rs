//! `enetstat daemon`: one long-running engine that loads the kernel programs once, keeps the
//! live socket table, the closed-connection history and the lifecycle book, and serves them on
//! a Unix socket; optionally Prometheus metrics over HTTP.
//!
//! # The socket
//!
//! Default `/run/enetstat/enetstat.sock` (`--socket PATH`), mode 0660, owner root, group from
//! `--socket-group GROUP`: members of that group can use every client command without root.
//! The directories it makes for the socket are mode 0750 with that group, whatever the umask.
//! A socket file left by a daemon that was killed is replaced at start; if a live daemon
//! answers on it, the new one refuses to start. The file is removed on every orderly exit; a
//! daemon that cannot remove it (its directory belongs to someone else) says so at start and
//! at exit.
//!
//! # Limits
//!
//! What clients may take (connections, subscribers, filter size and work, queues) is capped,
//! each refusal a clear error and a counter in `stats` and the metrics: see [`limits`].
//!
//! # The protocol (version 1)
//!
//! Newline-delimited JSON (NDJSON) both ways: a client writes one request per line and reads
//! one reply per line. Every request carries `"v": 1` and an `"op"`. A connection may carry any
//! number of `snapshot` and `stats` requests, one after the other; a `subscribe` request turns
//! it into a stream for the rest of its life.
//!
//! Requests:
//!
//! ```json
//! {"v":1,"op":"stats"}
//! {"v":1,"op":"snapshot","filter":"dport = :443","recent_ms":60000,"format":"text",
//!  "protos":["tcp"],"servers":"include","family":"ipv4","states":["TIME_WAIT"],
//!  "numeric":true,"programs":true,"extend":false,"wide":false,"header":true}
//! {"v":1,"op":"subscribe","stream":"transitions","filter":"state established",
//!  "format":"json"}
//! {"v":1,"op":"subscribe","stream":"lifecycles","format":"text","wide":false,
//!  "time":"wall","utc":false,"start_ns":0,"header":true}
//! ```
//!
//! Every field but `v` and `op` is optional. `filter` is an expression of the `watch` filter
//! language (empty: everything); for snapshots it is tested against each socket of the table.
//! `format` is `json` (the default), `text` or `csv`: the daemon renders with the same
//! renderers the standalone commands use, so clients print exactly what `enetstat`,
//! `enetstat watch` and `enetstat life` print without a daemon.
//!
//! Replies:
//!
//! - `stats`: `{"v":1,"stats":{...counters...}}`.
//! - `snapshot`: `{"v":1,"output":"..."}`, `output` being the whole snapshot as `enetstat -c`
//!   prints one refresh (with `format: json`, one JSON object on one line).
//! - `subscribe`: `{"v":1,"ok":true,"subscribed":"transitions"}`, then the header line (text
//!   and CSV, unless `"header":false`), then one line per event in the chosen format: with
//!   `format: json` these are the objects `enetstat watch -o json` (or `life -o json`) prints.
//! - Errors: `{"error":"what went wrong"}`. Malformed JSON, an unknown `op`, a wrong `v`, a bad
//!   filter, a request longer than 64 KiB or one cut short without its newline each get one;
//!   the connection stays usable except after a truncated request.
//! - A subscriber that reads too slowly (more than `--client-queue` events waiting) is cut off
//!   with `{"error":"lagged: N events dropped","lagged":N}` and the connection is closed; the
//!   engine and the other clients never wait for it. One that stops reading altogether is cut
//!   off once a write to it has waited 10 s, and one whose filter does more than its share of
//!   `--filter-budget` with an error saying so. Error lines always start `{"error"`, which no
//!   text or CSV line does.
//! - A JSON object with a key twice is refused (parsers disagree on which one wins).

pub mod engine;
pub mod event;
pub mod event_log;
pub mod http;
pub mod limits;
pub mod lines;
pub mod metrics;
pub mod privilege;
pub use netstat_core::protocol;
pub mod server;
pub mod socket;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::probe::{Probe, ProbeError, ProbeOptions};

pub use engine::EngineOptions;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/enetstat/enetstat.sock";

/// How to run the daemon.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub socket: PathBuf,
    /// Group (name or gid) that may use the socket.
    pub socket_group: Option<String>,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    pub probe: ProbeOptions,
    pub engine: EngineOptions,
    /// Most events waiting for one subscriber before it is cut off.
    pub queue_len: usize,
    /// Caps on clients, subscribers and metrics connections.
    pub connections: limits::ConnectionLimits,
    /// Drop every capability but [`privilege::KEPT`] once the programs are attached.
    pub drop_capabilities: bool,
    /// Write every transition to this NDJSON log.
    pub event_log: Option<event_log::EventLogOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot set up the socket {path}: {cause}")]
    Socket {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "another enetstat daemon is already serving on {0}. Stop it first (e.g. `systemctl stop \
         enetstat`), or give this one another --socket PATH"
    )]
    AlreadyRunning(PathBuf),
    #[error(
        "{0} exists and is not a socket, so enetstat will not touch it. Remove it yourself if \
         it is garbage, or give --socket another PATH"
    )]
    NotASocket(PathBuf),
    #[error(
        "there is no group {0:?}. Create it (`groupadd {0}`) and add the users who may query the \
         daemon (`usermod -aG {0} USER`), or name another --socket-group"
    )]
    Group(String),
    #[error(
        "cannot serve metrics on {addr}: {cause}{hint}",
        hint = if cause.kind() == std::io::ErrorKind::AddrInUse {
            ". Another process (another enetstat daemon?) serves on that address; stop it, or \
             give --metrics another ADDR"
        } else {
            ""
        }
    )]
    Metrics {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Privilege(#[from] privilege::PrivilegeError),
    #[error(transparent)]
    EventLog(#[from] event_log::EventLogError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

/// Runs the daemon until `stop` resolves. `ready` is called once the programs are attached,
/// the table is seeded and the socket is served.
/// Everything but the engine (clients, metrics, the event log's tasks) runs on `services`;
/// the engine runs in the caller's task, on the thread that loads the programs.
pub async fn run(
    opts: DaemonOptions,
    services: &tokio::runtime::Handle,
    stop: impl Future<Output = ()>,
    ready: impl FnOnce(),
) -> Result<(), DaemonError> {
    let gid = opts
        .socket_group
        .as_deref()
        .map(socket::group_id)
        .transpose()?;
    let guards = limits::Guards::new(opts.connections);
    let metrics = opts
        .metrics
        .map(|_| Arc::new(metrics::Metrics::new().with_guards(guards.clone())));
    // The socket file is removed when `_file` drops: on return, error or panic.
    // First, so a second daemon on the same socket says so (not that its metrics port is
    // taken).
    // Both listeners register with `services`' reactor, where their tasks run.
    let (listener, _file) = {
        let _services = services.enter();
        socket::bind(&opts.socket, gid)?
    };
    let http = match (opts.metrics, &metrics) {
        (Some(addr), Some(m)) => {
            let listener = bind_metrics(addr, services)
                .map_err(|cause| DaemonError::Metrics { addr, cause })?;
            Some(services.spawn(http::serve(listener, m.clone(), guards.metrics.clone())))
        }
        _ => None,
    };
    let mut probe = Probe::start(opts.probe.clone())?;
    let mut stream = probe.events()?;
    if opts.drop_capabilities {
        drop_capabilities(&probe)?;
    }
    let (commands, rx) = mpsc::channel(256);
    let shared = server::Shared {
        commands,
        queue_len: opts.queue_len,
        limits: opts.engine.limits,
        guards: guards.clone(),
    };
    let serving = services.spawn(server::serve(listener, shared));
    let log = opts
        .event_log
        .clone()
        .map(event_log::EventLog::start)
        .transpose()?;
    let engine_opts = engine::EngineOptions {
        mode: Some(probe.mode()),
        ..opts.engine.clone()
    };
    let engine = engine::Engine::new(engine_opts, metrics, log, guards);
    // Here, on the thread that loaded the programs, not as a task on `services`:
    // capabilities are per thread, and on kernels that check CAP_BPF on every bpf() call
    // (5.10 with `kernel.unprivileged_bpf_disabled`) only this thread keeps it (see
    // `drop_capabilities`). On a worker, the engine could not set the ring's sleep flag there.
    let result = engine
        .run(&mut stream, rx, stop, || probe.counters(), ready)
        .await;
    drop(stream);
    drop(probe);
    serving.abort();
    let _ = serving.await;
    if let Some(h) = http {
        h.abort();
    }
    result.map_err(Into::into)
}

/// The metrics listener, registered with `services`' reactor.
fn bind_metrics(
    addr: SocketAddr,
    services: &tokio::runtime::Handle,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }?;
    // As `TcpListener::bind` does: a restarted daemon can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let _services = services.enter();
    socket.listen(1024)
}

/// Default for how long closed connections are kept for `--recent`.
pub const DEFAULT_KEEP_CLOSED: Duration = Duration::from_secs(3600);

/// Drops every capability the daemon no longer needs once attached. Whether reading its own
/// maps still needs CAP_BPF depends on the kernel: older ones (5.8 to 5.1x, with
/// `kernel.unprivileged_bpf_disabled` set, as Debian sets it) check it on every bpf() call,
/// newer ones only when creating programs and maps. So it is tried, not assumed: the engine
/// (on this thread) reads the counters without CAP_BPF once, and keeps it only if that fails.
fn drop_capabilities(probe: &Probe) -> Result<(), privilege::PrivilegeError> {
    use caps::Capability::{CAP_BPF, CAP_SETPCAP};
    // CAP_SETPCAP stays until the end, to take CAP_BPF out of the bounding set too.
    privilege::drop_capabilities_but(&[CAP_BPF, CAP_SETPCAP])?;
    let has_bpf = caps::has_cap(None, caps::CapSet::Permitted, CAP_BPF).unwrap_or(false);
    if has_bpf {
        privilege::set_effective(CAP_BPF, false)?;
        if let Err(e) = probe.counters() {
            privilege::set_effective(CAP_BPF, true)?;
            privilege::drop_capabilities_but(&[CAP_BPF])?;
            tracing::info!(
                "attached; this kernel checks CAP_BPF on every bpf() call ({e}), so the daemon \
                 keeps it to read its maps, and drops every other capability but \
                 CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
            );
            return Ok(());
        }
    }
    privilege::drop_capabilities()?;
    tracing::info!("attached; dropped every capability but CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH");
    Ok(())
}

//! The client commands through a running daemon, and `enetstat daemon` itself.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result};
use enetstat::{
    client::Client,
    clock::monotonic_ns,
    daemon::{
        self, DEFAULT_SOCKET, DaemonOptions, EngineOptions,
        protocol::{Stream, SubscribeRequest, WireTime},
    },
    probe::ProbeOptions,
    table::Limits,
    top::{Feed, daemon_feed::DaemonFeed},
};

use crate::{
    cli::{Cli, DaemonArgs, TimeArg, TopArgs, WatchArgs},
    snapshot_args::SnapshotArgs,
};

/// The daemon socket a client command should use, if any: `--socket`, or the default one when
/// it exists; never with `--standalone`.
pub fn socket_for(cli: &Cli) -> Option<PathBuf> {
    if cli.standalone {
        return None;
    }
    if let Some(p) = &cli.socket {
        return Some(p.clone());
    }
    let default = Path::new(DEFAULT_SOCKET);
    default.exists().then(|| default.to_owned())
}

/// `enetstat daemon`.
pub fn daemon(args: DaemonArgs, socket: Option<PathBuf>) -> Result<ExitCode> {
    // Before the runtime starts a thread: every thread then has the user's ids.
    if let Some(name) = &args.user {
        let user = daemon::privilege::RunAs::lookup(name)?;
        user.switch()?;
        tracing::info!(
            "running as {} (uid {}, gid {})",
            user.name,
            user.uid,
            user.gid
        );
    }
    // Every descriptor the daemon may have, so clients cannot starve its own (netlink dumps,
    // /proc scans); the caps below are then made to fit.
    let asked = daemon::limits::ConnectionLimits {
        clients: args.max_clients,
        subscribers: args.max_subscribers,
        metrics: args.max_metrics_connections,
    };
    let connections = match daemon::limits::raise_nofile() {
        Ok(fds) => {
            let (fitted, warning) = asked.fit(fds);
            if let Some(w) = warning {
                eprintln!("enetstat: warning: {w}");
            }
            fitted
        }
        Err(e) => {
            eprintln!("enetstat: warning: cannot read or raise the open-file limit: {e}");
            asked
        }
    };
    let keep_caps = args.keep_capabilities;
    // Two runtimes. The clients, the metrics and the blocking /proc and netlink work run on
    // `services`, whose threads never need more than the daemon keeps (capabilities are per
    // thread). The engine runs alone on this thread, in a runtime of its own: it loads the
    // programs here and drops the rest of its capabilities right after, and its poll timer and
    // ring are driven by this thread's own epoll. As `block_on` on a multi-threaded runtime,
    // every poll was a wakeup from a worker thread, which on a VM is an IPI (an exit to the
    // hypervisor) per poll.
    let services = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("enetstat-services")
        .on_thread_start(move || {
            if !keep_caps && let Err(e) = daemon::privilege::drop_capabilities() {
                tracing::warn!("{e}");
            }
        })
        .enable_all()
        .build()
        .map_err(crate::runtime_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::runtime_error)?;
    let socket = socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let opts = DaemonOptions {
        socket: socket.clone(),
        socket_group: args.socket_group,
        metrics: args.metrics,
        probe: ProbeOptions {
            ring_size: args.ring_size,
            wakeup_interval: Duration::from_micros(args.wakeup_us),
            ..ProbeOptions::default()
        },
        engine: EngineOptions {
            limits: Limits {
                max_sockets: args.max_sockets,
                max_closed: args.max_closed,
            },
            max_sockets: args.max_sockets,
            reconcile: args.reconcile,
            filter_budget: args.filter_budget,
            keep_closed: args.keep_closed,
            mode: None,
        },
        queue_len: args.client_queue,
        connections,
        drop_capabilities: !args.keep_capabilities,
        event_log: args
            .event_log
            .clone()
            .map(|path| daemon::event_log::EventLogOptions {
                path,
                max_bytes: args.event_log_size,
                keep: args.event_log_keep,
                queue: 65_536,
                run_as: args.user.clone(),
            }),
    };
    let metrics = args.metrics;
    // A handle: the runtime itself must be dropped outside any async context.
    let services = services.handle().clone();
    runtime.block_on(async move {
        let stop = crate::stop_signal()?;
        daemon::run(opts, &services, stop, || match metrics {
            Some(addr) => eprintln!(
                "enetstat: tracing TCP state transitions; daemon serving on {} and metrics \
                     on http://{addr}/metrics",
                socket.display()
            ),
            None => eprintln!(
                "enetstat: tracing TCP state transitions; daemon serving on {}",
                socket.display()
            ),
        })
        .await?;
        eprintln!("enetstat: daemon stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// How long `watch` through the daemon waits for the daemon's counters.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The daemon's `stats`, or an error when it does not answer within [`STATS_TIMEOUT`].
async fn stats(counters: &mut Client, path: &Path) -> Result<serde_json::Value> {
    tokio::time::timeout(STATS_TIMEOUT, counters.stats())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the daemon at {} did not answer a stats request within {STATS_TIMEOUT:?}",
                path.display()
            )
        })?
        .map_err(Into::into)
}

/// `enetstat watch` and `enetstat life` through the daemon: the same lines standalone mode
/// prints, rendered by the daemon.
pub async fn watch(path: &Path, args: WatchArgs, stream: Stream) -> Result<ExitCode> {
    let filter = crate::watch_filter(&args)?;
    refuse_tracing_flags(&args, path)?;
    let stop = crate::stop_signal()?;
    let mut client = Client::connect(path).await?;
    // The daemon's kernel counters before and after, for the summary. A daemon that does not
    // answer must not hang the client (nor keep it from seeing Ctrl-C before the loop below).
    let mut counters = Client::connect(path).await?;
    let before = stats(&mut counters, path).await?;
    let request = SubscribeRequest {
        stream,
        filter: filter.to_string(),
        format: args.output,
        wide: args.wide,
        time: match args.time {
            TimeArg::Wall => WireTime::Wall,
            TimeArg::Relative => WireTime::Relative,
            TimeArg::None => WireTime::None,
        },
        utc: args.utc,
        start_ns: monotonic_ns(),
        header: false,
    };
    let style = daemon::lines::style(&request);
    let renderer = daemon::lines::renderer(&request, &style);
    client.subscribe(request).await?;
    eprintln!(
        "enetstat: tracing TCP state transitions through the daemon at {}; press Ctrl-C to stop",
        path.display()
    );
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    renderer.write_header(&mut out)?;
    out.flush()?;
    let mut stop = std::pin::pin!(stop);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut sleep = std::pin::pin!(async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    });
    // Lines count as shown once they are flushed: when the reader goes away (`| head -1`),
    // what was still in the buffer never reached it.
    let mut shown = 0u64;
    let mut pending = 0u64;
    loop {
        tokio::select! {
            line = client.next_line() => {
                let Some(line) = line? else {
                    anyhow::bail!("the daemon at {} closed the connection", path.display());
                };
                // The daemon's bytes are untrusted: nothing reaches the terminal raw.
                let line = enetstat::render::escape::terminal_safe(&line);
                let written = out.write_all(line.as_bytes()).and_then(|()| {
                    pending += 1;
                    let last = args.count.is_some_and(|n| shown + pending >= n);
                    if client.buffered() == 0 || last {
                        out.flush().map(|()| {
                            shown += std::mem::take(&mut pending);
                        })
                    } else {
                        Ok(())
                    }
                });
                match written {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                    Err(e) => return Err(e).context("cannot write the output"),
                }
                if args.count.is_some_and(|n| shown >= n) {
                    break;
                }
            }
            () = &mut stop => break,
            () = &mut sleep => break,
        }
    }
    if pending > 0 && out.flush().is_ok() {
        shown += pending;
    }
    let after = stats(&mut counters, path).await?;
    let delta = |key: &str| {
        let n = |v: &serde_json::Value| v[key].as_u64().unwrap_or(0);
        n(&after).saturating_sub(n(&before))
    };
    // The standalone summary's shape: seen and lost are the daemon's kernel counters over
    // this run (every client's, as one tracer sees them all).
    eprintln!(
        "enetstat: {} transitions seen, {shown} shown, {} lost, {} undecodable",
        delta("kernel_seen"),
        delta("kernel_ringbuf_full") + delta("kernel_recursion_misses"),
        delta("undecodable"),
    );
    eprintln!("enetstat: served by the daemon at {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `enetstat top` through the daemon: its streams and its table, filtered by it.
pub async fn top(path: &Path, args: TopArgs) -> Result<ExitCode> {
    let (opts, filter) = crate::top_options(&args, format!("daemon at {}", path.display()))?;
    if args.ring_size != WatchArgs::tracing_defaults().0 {
        anyhow::bail!(
            "--ring-size sets up in-process tracing, but the daemon at {} traces with its own \
             settings (see `enetstat daemon --help`). Add --standalone to trace in-process",
            path.display()
        );
    }
    let stop = crate::stop_signal()?;
    let feed = DaemonFeed::connect(path, filter.to_string()).await?;
    enetstat::top::run(Feed::Daemon(feed), &opts, stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--ring-size` and `--wakeup-us` shape in-process tracing; the daemon traces with its own
/// settings, so giving them here would do nothing: refused, naming the way out.
fn refuse_tracing_flags(args: &WatchArgs, path: &Path) -> Result<()> {
    let defaults = crate::cli::WatchArgs::tracing_defaults();
    if (args.ring_size, args.wakeup_us) != defaults {
        anyhow::bail!(
            "--ring-size and --wakeup-us set up in-process tracing, but the daemon at {} traces \
             for this command with its own settings (see `enetstat daemon --help`). Add \
             --standalone to trace in-process with them",
            path.display()
        );
    }
    Ok(())
}

/// `enetstat [FLAGS]` through the daemon: the table it keeps, as `enetstat -c` shows it.
pub async fn snapshot(path: &Path, args: SnapshotArgs) -> Result<ExitCode> {
    let mut client = Client::connect(path).await?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let Some(cont) = args.continuous() else {
        let text = client.snapshot(args.request(true)).await?;
        let text = enetstat::render::escape::terminal_safe(&text);
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).context("cannot write the output");
            }
            _ => {}
        }
        return Ok(ExitCode::SUCCESS);
    };
    let stop = crate::stop_signal()?;
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(cont.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        let text = client.snapshot(args.request(shown == 0)).await?;
        let text = enetstat::render::escape::terminal_safe(&text);
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("cannot write the output"),
        }
        shown += 1;
        if cont.count.is_some_and(|n| shown >= n) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! The `enetstat` binary: parses the command line, starts the engine, and turns every error
//! into one clear paragraph on stderr (no backtraces).

// The binary reaches most of the package's dependencies through the `enetstat` library, so
// this lint, which looks at one target at a time, would name them all; it counts in lib.rs.
#![allow(unused_crate_dependencies)]

mod cli;
mod duration_arg;
mod format_arg;
mod generate;
mod size_arg;
mod snapshot_args;
mod via_daemon;

use std::{io::Write as _, process::ExitCode};

use anyhow::{Context as _, Result};
use enetstat::{
    clock::monotonic_ns,
    event::Family,
    filter::Side,
    filter::{self, Filter},
    probe::{Probe, ProbeOptions},
    render::Stream,
    render::transition::text::{TextStyle, Time, Zone},
    top::{BatchFormat, Feed, TopOptions, keys::View, local::LocalFeed},
    watch::{self, WatchOptions},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, TimeArg, TopArgs, TopOutput, TopView, WatchArgs};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    init_logging(cli.verbose);
    large_allocations_mapped();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}`: the error and the causes `context` chained, `: `-separated. Each of
            // enetstat's errors names its own cause in its message and chains nothing, so
            // no cause is printed twice.
            eprintln!("enetstat: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks of 1 MiB or more get pages of their own (`mmap`), always. glibc's default raises
/// that threshold each time such a block is freed, after which the live table's slab, which
/// grows by doubling under churn (tens of MB), came from the heap and every doubling copied
/// it (an eighth of the daemon's samples while it grew). Mapped, a doubling is `mremap`,
/// which moves page tables, not bytes, and a freed block goes back to the system at once.
fn large_allocations_mapped() {
    #[cfg(target_env = "gnu")]
    // SAFETY: sets an allocator tunable; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("ENETSTAT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false)
        .init();
}

/// Whether log lines may be coloured: only on a terminal (a pipe, a file or the journal gets
/// plain text, not escape codes), and not under `NO_COLOR` (set and not empty) or a `dumb`
/// one.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && !std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// Why the async runtime would not start; its epoll and eventfd are the first descriptors
/// enetstat opens, so a too-low open-file limit usually shows here first.
fn runtime_error(e: std::io::Error) -> anyhow::Error {
    if enetstat::fd_limit::is_exhausted(&e) {
        anyhow::anyhow!(
            "cannot start the async runtime: {e}. {}",
            enetstat::fd_limit::hint()
        )
    } else {
        anyhow::Error::new(e).context("cannot start the async runtime")
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime_error)?;
    let socket = via_daemon::socket_for(&cli);
    if let Some(Command::Life(args)) = &cli.command {
        refuse_watch_only_flags(args)?;
    }
    match (cli.command, socket) {
        (Some(Command::Daemon(args)), _) => via_daemon::daemon(args, cli.socket),
        (Some(Command::GenerateDocs { dir }), _) => {
            generate::docs(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        (Some(Command::Watch(args)), Some(path)) => {
            runtime.block_on(via_daemon::watch(&path, args, Stream::Transitions))
        }
        (Some(Command::Life(args)), Some(path)) => {
            runtime.block_on(via_daemon::watch(&path, args, Stream::Lifecycles))
        }
        // A plain snapshot reads the kernel's socket dump itself: its output never depends
        // on whether a daemon runs, and a stale or foreign daemon socket never blocks it.
        // Only the live table (`-c`, `--recent`) is worth asking a daemon for.
        (None, Some(path)) if cli.snapshot.needs_tracing() => {
            runtime.block_on(via_daemon::snapshot(&path, cli.snapshot))
        }
        (None, _) => runtime.block_on(snapshot(cli.snapshot)),
        (Some(Command::Watch(args)), None) => {
            runtime.block_on(watch(args, Stream::Transitions, cli.verbose))
        }
        (Some(Command::Life(args)), None) => {
            runtime.block_on(watch(args, Stream::Lifecycles, cli.verbose))
        }
        (Some(Command::Top(args)), Some(path)) => runtime.block_on(via_daemon::top(&path, args)),
        (Some(Command::Top(args)), None) => runtime.block_on(top(args)),
    }
}

/// `life` prints every line in full and has no TIME column: `-w` and `--time` would do
/// nothing, so they are refused rather than silently ignored.
fn refuse_watch_only_flags(args: &WatchArgs) -> Result<()> {
    if args.wide {
        anyhow::bail!("`life` lines always show full endpoints and times; -w is for `watch`");
    }
    if args.time != TimeArg::Wall {
        anyhow::bail!(
            "`life` text has no TIME column (JSON and CSV carry `time`); --time is for `watch`"
        );
    }
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

async fn watch(args: WatchArgs, shows: Stream, verbose: u8) -> Result<ExitCode> {
    // A bad expression is reported before anything needs root.
    let filter = watch_filter(&args)?;
    // Signals are handled before anything is attached, so no exit path skips the detach.
    let stop = stop_signal()?;
    let mut probe = Probe::start(ProbeOptions {
        ring_size: args.ring_size,
        filter: filter.kernel_part(),
        wakeup_interval: std::time::Duration::from_micros(args.wakeup_us),
    })?;
    let mut stream = probe.events()?;
    let start_ns = monotonic_ns();
    eprintln!("enetstat: tracing TCP state transitions; press Ctrl-C to stop");

    let zone = if args.utc { Zone::Utc } else { Zone::Local };
    let opts = WatchOptions {
        stream: shows,
        measure_latency: args.stats_json.is_some(),
        format: args.output,
        filter,
        count: args.count,
        duration: args.duration,
        max_sockets: args.max_sockets,
        seed_owners: Some(enetstat::pipeline::records_netns(probe.mode())),
        text: TextStyle {
            wide: args.wide,
            time: match args.time {
                TimeArg::Wall => Time::Wall(zone),
                TimeArg::Relative => Time::Relative { start_ns },
                TimeArg::None => Time::Hidden,
            },
        },
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let summary = watch::run(&mut stream, &opts, &mut out, stop, || probe.counters()).await?;
    let _ = out.flush();
    drop(stream);
    drop(probe);
    eprintln!("enetstat: {summary}");
    if verbose > 0 {
        eprintln!("enetstat: {}", kernel_filter_line(&summary.kernel));
    }
    if let Some(path) = &args.stats_json {
        write_stats(path, &summary)?;
    }
    if summary.kernel.ringbuf_full > 0 {
        eprintln!(
            "enetstat: warning: {} events were lost because the ring buffer was full; \
             raise --ring-size (now {} bytes)",
            summary.kernel.ringbuf_full, args.ring_size
        );
    }
    if summary.kernel.recursion_misses > 0 {
        eprintln!(
            "enetstat: warning: the kernel skipped our programs {} times because they were \
             already running on that CPU (interrupted twice in a row); those events are lost",
            summary.kernel.recursion_misses
        );
    }
    if summary.kernel.read_errors > 0 {
        eprintln!(
            "enetstat: warning: {} reads of a socket's fields failed in the kernel; those \
             events were shown with zeroes there (addresses, ports or counters)",
            summary.kernel.read_errors
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `top` shows, from its flags; the filter is checked before anything needs root.
fn top_options(args: &TopArgs, source: String) -> Result<(TopOptions, Filter)> {
    let filter = filter::from_words(&args.expression)?;
    let opts = TopOptions {
        delay: args.delay,
        view: match args.view {
            TopView::Processes => View::Processes,
            TopView::Remotes => View::Remotes,
            TopView::Ports => View::LocalPorts,
            TopView::Connections => View::Connections,
        },
        filter: args.expression.join(" "),
        numeric: args.numeric,
        batch: args.batch.then_some(match args.output {
            TopOutput::Text => BatchFormat::Text,
            TopOutput::Json => BatchFormat::Json,
        }),
        iterations: args.iterations,
        source,
    };
    Ok((opts, filter))
}

/// `enetstat top`, tracing in this process.
async fn top(args: TopArgs) -> Result<ExitCode> {
    let (opts, filter) = top_options(&args, "standalone".into())?;
    // Signals are handled before anything is attached, so no exit path skips the detach.
    let stop = stop_signal()?;
    let feed = LocalFeed::start(args.ring_size, args.max_sockets, filter)?;
    enetstat::top::run(Feed::Local(Box::new(feed)), &opts, stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// What the kernel-side filter did, for `-v`: `seen - filtered` records reached userspace.
fn kernel_filter_line(kernel: &enetstat::probe::KernelCounters) -> String {
    format!(
        "kernel filter: {} of {} transitions left out in the kernel, {} passed to userspace",
        kernel.filtered,
        kernel.seen,
        kernel.seen.saturating_sub(kernel.filtered)
    )
}

/// The machine-readable summary for `--stats-json`.
fn write_stats(path: &std::path::Path, summary: &watch::Summary) -> Result<()> {
    let stats = serde_json::json!({
        "received": summary.received,
        "shown": summary.shown,
        "seen": summary.kernel.seen,
        "filtered": summary.kernel.filtered,
        "lost": summary.kernel.lost(),
        "ringbuf_full": summary.kernel.ringbuf_full,
        "recursion_misses": summary.kernel.recursion_misses,
        "read_errors": summary.kernel.read_errors,
        "undecodable": summary.undecodable,
        "latency_us": summary.latency.as_ref().map(enetstat::latency::Latency::report),
    });
    std::fs::write(path, format!("{stats}\n"))
        .with_context(|| format!("cannot write the statistics to {}", path.display()))
}

/// The expression and the filter flags, AND-ed.
fn watch_filter(args: &WatchArgs) -> Result<Filter> {
    let mut filter = filter::from_words(&args.expression)?;
    if args.ipv4 {
        filter = filter.and(Filter::family(Family::Ipv4));
    }
    if args.ipv6 {
        filter = filter.and(Filter::family(Family::Ipv6));
    }
    Ok(filter
        .and(Filter::ports(Side::Local, &args.lport))
        .and(Filter::ports(Side::Remote, &args.rport))
        .and(Filter::ports(Side::Either, &args.port)))
}

/// `enetstat [FLAGS]`: one snapshot from the kernel's socket dump, or with `-c` a live table
/// refreshed until Ctrl-C.
async fn snapshot(args: snapshot_args::SnapshotArgs) -> Result<ExitCode> {
    let opts = args.options().map_err(anyhow::Error::msg)?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    if args.recent.is_some() && args.continuous.is_none() {
        anyhow::bail!(
            "--recent needs tracing: add -c, or start `enetstat daemon`, which remembers closed \
             connections for every client"
        );
    }
    let Some(cont) = args.continuous() else {
        match enetstat::snapshot::once(&opts, &mut out) {
            Err(enetstat::snapshot::SnapshotError::Output(e))
                if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
        return Ok(ExitCode::SUCCESS);
    };
    let stop = stop_signal()?;
    let mut probe = Probe::start(ProbeOptions {
        ring_size: args.ring_size,
        ..ProbeOptions::default()
    })?;
    let mut stream = probe.events()?;
    let status = enetstat::snapshot::continuous(&mut stream, &opts, cont, &mut out, stop, || {
        probe.counters()
    })
    .await?;
    let _ = out.flush();
    drop(stream);
    drop(probe);
    if status.lost > 0 {
        eprintln!(
            "enetstat: warning: {} transitions were lost because the ring buffer was full; \
             the table was corrected by reconciliation; raise --ring-size (now {} bytes)",
            status.lost, args.ring_size
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! The `enetstat` binary: parses the command line, starts the engine, and turns every error
//! into one clear paragraph on stderr (no backtraces).

mod cli;

use std::{io::Write as _, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Parser as _;
use enetstat::{
    event::Family,
    filter::Filter,
    probe::{Probe, ProbeOptions},
    render::text::Zone,
    watch::{self, Format, WatchOptions},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, Output, WatchArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("enetstat: error: {err:#}");
            ExitCode::FAILURE
        }
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
        .with_target(false)
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Watch(args) => runtime.block_on(watch(args)),
    }
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

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    // Signals are handled before anything is attached, so no exit path skips the detach.
    let stop = stop_signal()?;
    let filter = Filter {
        family: match (args.ipv4, args.ipv6) {
            (true, _) => Some(Family::Ipv4),
            (_, true) => Some(Family::Ipv6),
            _ => None,
        },
        lports: args.lport,
        rports: args.rport,
        ports: args.port,
    };
    let mut probe = Probe::start(ProbeOptions {
        ring_size: args.ring_size,
        filter: filter.kernel_part(),
        wakeup_interval: std::time::Duration::from_micros(args.wakeup_us),
    })?;
    let mut stream = probe.events()?;
    eprintln!("enetstat: tracing TCP state transitions; press Ctrl-C to stop");

    let opts = WatchOptions {
        format: match args.output {
            Output::Text => Format::Text,
            Output::Json => Format::Json,
        },
        filter,
        count: args.count,
        duration: args.duration,
        max_sockets: args.max_sockets,
        zone: if args.utc { Zone::Utc } else { Zone::Local },
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (_end, summary) =
        watch::run(&mut stream, &opts, &mut out, stop, || probe.counters()).await?;
    let _ = out.flush();
    drop(stream);
    drop(probe);
    eprintln!("enetstat: {summary}");
    if summary.kernel.ringbuf_full > 0 {
        eprintln!(
            "enetstat: warning: {} transitions were lost because the ring buffer was full; \
             raise --ring-size (now {} bytes)",
            summary.kernel.ringbuf_full, args.ring_size
        );
    }
    Ok(ExitCode::SUCCESS)
}

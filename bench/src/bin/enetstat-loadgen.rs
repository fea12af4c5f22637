//! `enetstat-loadgen`: loopback TCP load for enetstat's benchmarks. Prints its results as one
//! JSON object on stdout; everything else goes to stderr.
//!
//! ```text
//! enetstat-loadgen churn --workers 2 --seconds 10            # as fast as possible
//! enetstat-loadgen churn --workers 2 --seconds 10 --rate 1000 # 1000 connections/s
//! enetstat-loadgen hold --connections 100000                  # hold until stdin closes
//! enetstat-loadgen floor                                      # the delivery floor, until ^C
//! ```

// The load generator reaches the package's dependencies through its library, and the
// benchmark's (criterion, enetstat) are not its own.
#![allow(unused_crate_dependencies)]

use std::{
    io::Write as _,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Result;
use clap::{Parser, Subcommand};
use enetstat_bench::{
    churn::{self, ChurnOptions, Families, Shape},
    floor::{self, FloorOptions},
    hold::{self, HoldOptions},
    placement::Placement,
};

#[derive(Parser)]
#[command(
    name = "enetstat-loadgen",
    about = "Loopback TCP load with a known number of state transitions, for enetstat's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Open, use and close connections: 10 transitions per connection, 2 per listener.
    Churn {
        /// Concurrent workers, each with its own thread and listening port.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Run this long (fractions allowed).
        #[arg(long, value_name = "SECS")]
        seconds: Option<f64>,
        /// Stop after this many connections in total.
        #[arg(long, value_name = "N")]
        connections: Option<u64>,
        /// Target connections per second over all workers (default: as fast as possible).
        #[arg(long, value_name = "CONN_PER_S")]
        rate: Option<f64>,
        /// Worker i listens on PORT + i (0: ports the kernel picks).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address families.
        #[arg(long, value_enum, default_value_t = Families::V4)]
        families: Families,
        /// pingpong: one thread per worker, client closes first; server: an accepting thread
        /// and --connectors connecting threads per worker, server closes first.
        #[arg(long, value_enum, default_value_t = Shape::Pingpong)]
        shape: Shape,
        /// With --shape server: connecting threads per worker.
        #[arg(long, default_value_t = 2)]
        connectors: usize,
        /// With --shape server: bytes the server writes before closing.
        #[arg(long, default_value_t = 1)]
        payload: usize,
        /// Where each worker's threads run: free (the scheduler decides, as for real
        /// servers), together (worker i's threads on CPU i), apart (its connecting threads on
        /// CPU i + 1, so every connection wakes the other CPU).
        #[arg(long, value_enum, default_value_t = Placement::Free)]
        placement: Placement,
    },
    /// Open this many established connections, print a JSON line once they are all up, and
    /// hold them until standard input closes (or --max-seconds pass).
    Hold {
        #[arg(long, default_value_t = 100_000)]
        connections: u64,
        /// Listening ports to spread them over (0: one per 20,000 connections).
        #[arg(long, default_value_t = 0)]
        ports: u16,
        /// First listening port (0: ports the kernel picks).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Source addresses 127.0.0.1 ..= 127.0.0.N.
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Threads opening connections.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Give up holding after this many seconds, in case nobody closes standard input.
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
    },
    /// The delivery floor: a minimal eBPF program that sends a record of every TCP state
    /// transition to a reader, which reads them every --interval-us. Runs until SIGINT or
    /// SIGTERM, then prints what it read and lost. Needs root (or CAP_BPF and CAP_PERFMON).
    Floor {
        /// Bytes of each record (plus the ring's 8-byte header).
        #[arg(long, default_value_t = 16)]
        record_bytes: u32,
        /// How often the reader reads, in microseconds.
        #[arg(long, default_value_t = 4000)]
        interval_us: u64,
        /// Each CPU's ring buffer's size in bytes (a power of two).
        #[arg(long, default_value_t = 4 << 20)]
        ring_bytes: u32,
    },
}

/// Set by SIGINT and SIGTERM: the floor stops reading and detaches.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    // If the harness dies without cleaning up, do not outlive it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and has no other effect.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One paragraph, never a backtrace: the harness shows it as the reason.
            eprintln!("enetstat-loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.mode {
        Mode::Churn {
            workers,
            seconds,
            connections,
            rate,
            port,
            families,
            shape,
            connectors,
            payload,
            placement,
        } => {
            let report = churn::run(&ChurnOptions {
                shape,
                connectors,
                payload,
                workers,
                duration: seconds.map(Duration::from_secs_f64),
                connections,
                rate,
                base_port: port,
                families,
                placement,
            })?;
            serde_json::to_writer(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
        Mode::Hold {
            connections,
            ports,
            port,
            sources,
            threads,
            max_seconds,
        } => {
            let max_hold = Duration::from_secs(max_seconds);
            let held = hold::open(&HoldOptions {
                connections,
                ports,
                base_port: port,
                sources,
                threads,
            })?;
            serde_json::to_writer(&mut stdout, &held.report)?;
            writeln!(stdout)?;
            stdout.flush()?;
            hold::wait(max_hold);
            drop(held);
        }
        Mode::Floor {
            record_bytes,
            interval_us,
            ring_bytes,
        } => {
            for signal in [libc::SIGINT, libc::SIGTERM] {
                // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
                unsafe { libc::signal(signal, on_stop as *const () as libc::sighandler_t) };
            }
            let options = FloorOptions {
                record_bytes,
                interval: Duration::from_micros(interval_us),
                ring_bytes,
            };
            let report = floor::run(&options, &STOP, || {
                eprintln!("enetstat-loadgen floor: attached to sock:inet_sock_set_state");
            })?;
            eprintln!(
                "enetstat-loadgen floor: {} records read, {} lost",
                report.records, report.lost
            );
            serde_json::to_writer(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
    }
    Ok(())
}

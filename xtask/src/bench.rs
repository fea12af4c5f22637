//! `cargo xtask bench`: every benchmark of issue 6 in one run, on loopback only.
//!
//! 1. overhead: load-generator rate untraced vs traced, alternating rounds;
//! 2. lossless: every transition of a flat-out churn received, none lost;
//! 3. replay: userspace events/s on one core (criterion, `bench/benches/replay.rs`);
//! 4. latency: kernel timestamp to applied, p50/p99/max at 1k/10k/100k events/s;
//! 5. scale: 100,000 held connections: enetstat's memory and snapshot time vs `ss -tan`.
//!
//! It prints a table, and writes `results.json` (everything measured, plus the machine and
//! the command) and `results.md` (the table, ready for docs/performance.md) under
//! `<target>/bench/`. Benchmarks measure and report; they never fail on a missed target.
//! Every process started is stopped on every exit path (see [`child`]).

mod child;
mod enetstat;
mod latency;
mod lossless;
mod overhead;
mod replay;
mod report;
mod scale;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

pub use self::report::{Row, Verdict};
use self::{
    child::Child,
    enetstat::Tools,
    report::{machine, markdown, plain_table},
};
use crate::{build, cargo, cargo::Profile, cmd, privilege::is_root, setup};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bench {
    Overhead,
    Lossless,
    Replay,
    Latency,
    Scale,
}

impl Bench {
    fn name(self) -> &'static str {
        match self {
            Bench::Overhead => "overhead",
            Bench::Lossless => "lossless",
            Bench::Replay => "replay",
            Bench::Latency => "latency",
            Bench::Scale => "scale",
        }
    }
}

#[derive(Args)]
pub struct Options {
    /// Seconds per load run (overhead rounds, lossless, each latency rate); the replay
    /// benchmark measures for at most 5 s per function.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    seconds: f64,

    /// Rounds of the overhead benchmark (each round runs every configuration once).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,

    /// Load-generator workers (threads, one listening port each).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,

    /// Run only these benchmarks (comma-separated); the lossless run also records the events
    /// the replay benchmark uses, so run them together for a replay on real events.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "BENCH,..")]
    only: Vec<Bench>,

    /// Established connections for the scale benchmark.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    scale_conns: u64,

    /// First loopback port the load generator listens on (the churn uses WORKERS ports from
    /// here, the scale benchmark one per 20,000 connections from PORT + 100). Keep them out of
    /// the ephemeral range (net.ipv4.ip_local_port_range), where TIME_WAIT sockets of earlier
    /// runs may hold them.
    #[arg(long, default_value_t = 61_000, value_name = "PORT")]
    port: u16,

    /// Where the overhead benchmark's load threads run (`enetstat-loadgen churn
    /// --placement`): free, where the scheduler puts them, as servers run; together, each
    /// worker's threads on one CPU; apart, its connecting threads on the next CPU. The server
    /// shape's untraced rate moves by a third from round to round with the scheduler's
    /// placement alone; pinned, the rounds scatter less (docs/performance.md).
    #[arg(long, value_enum, default_value_t = Placement::Free)]
    placement: Placement,

    /// Benchmark this enetstat binary instead of building the workspace's (to compare two
    /// builds; the load generator and the replay benchmark still come from the workspace).
    #[arg(long, value_name = "PATH")]
    enetstat: Option<PathBuf>,
}

/// `enetstat-loadgen churn --placement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    Free,
    Together,
    Apart,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::Free => "free",
            Placement::Together => "together",
            Placement::Apart => "apart",
        }
    }
}

/// What every benchmark needs.
pub struct Context {
    tools: Tools,
    out_dir: PathBuf,
    seconds: f64,
    rounds: usize,
    workers: u16,
    scale_conns: u64,
    port: u16,
    /// Where the overhead benchmark's load threads run.
    placement: Placement,
}

impl Context {
    /// The churn's listening ports, as `--port` values.
    fn ports(&self) -> Vec<String> {
        (0..self.workers)
            .map(|i| (self.port + i).to_string())
            .collect()
    }

    fn hold_port(&self) -> u16 {
        self.port + 100
    }

    /// Where the lossless run keeps real events for the replay benchmark.
    fn capture_path(&self) -> PathBuf {
        self.out_dir.join("capture.ndjson")
    }

    /// Runs the load generator's churn with `extra` options and returns its JSON report.
    fn churn(&self, extra: &[(&str, String)]) -> Result<Value> {
        let mut args = vec![
            "churn".to_owned(),
            "--workers".into(),
            self.workers.to_string(),
            "--port".into(),
            self.port.to_string(),
        ];
        for (flag, value) in extra {
            args.extend([(*flag).to_owned(), value.clone()]);
        }
        let mut load = Child::spawn("enetstat-loadgen", self.tools.loadgen(&args))?;
        let stdout = load.take_stdout().context("loadgen stdout")?;
        let reader = std::thread::spawn(move || std::io::read_to_string(stdout));
        let status = load.wait(Duration::from_secs_f64(self.seconds * 3.0 + 60.0))?;
        let out = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        if !status.success() {
            bail!(
                "enetstat-loadgen failed ({status}):\n{}",
                load.stderr.tail(10)
            );
        }
        let report: Value = serde_json::from_str(out.trim())
            .with_context(|| format!("enetstat-loadgen printed {out:?}"))?;
        if report["errors"].as_u64().unwrap_or(0) > 0 {
            say!(
                "warning: the load generator had {} failed connections (first: {})",
                report["errors"],
                report["first_error"]
            );
        }
        Ok(report)
    }
}

/// The median of `v` (0 when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

impl Options {
    pub fn run(self) -> Result<()> {
        if !self.seconds.is_finite() || self.seconds <= 0.0 {
            bail!("--seconds must be positive");
        }
        // The churn takes up to 64 ports from --port, the scale benchmark ~1 per 10,000
        // connections from --port + 100.
        let last_port = u64::from(self.port) + 100 + self.scale_conns / 10_000 + 1;
        if last_port > u64::from(u16::MAX) {
            bail!(
                "--port {} leaves too few ports above it; pick one below 65000",
                self.port
            );
        }
        let selected: Vec<Bench> = if self.only.is_empty() {
            Bench::value_variants().to_vec()
        } else {
            self.only.clone()
        };
        let needs_root = selected.iter().any(|b| *b != Bench::Replay);
        if needs_root && !is_root() {
            bail!(
                "the overhead, lossless, latency and scale benchmarks load eBPF programs and \
                 need root: run `cargo xtask bench` as root, or `cargo xtask bench --only \
                 replay` for the part that does not"
            );
        }
        setup::ensure_with_bench_peers()?;
        let enetstat = match self.enetstat {
            Some(path) => path
                .canonicalize()
                .with_context(|| format!("--enetstat {}", path.display()))?,
            None => build::build(Profile::Release)?,
        };
        cmd::run(
            cargo::nightly([
                "build",
                "--package",
                "enetstat-bench",
                "--bin",
                "enetstat-loadgen",
            ])
            .args(Profile::Release.flags()),
        )?;
        let loadgen = Profile::Release.bin("enetstat-loadgen");
        let out_dir = cargo::target_dir().join("bench");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;

        warn_if_ephemeral(
            self.port,
            self.port + 100 + (self.scale_conns / 20_000) as u16,
        );
        child::catch_interrupts();
        let cx = Context {
            tools: Tools::probe(enetstat, loadgen),
            out_dir,
            seconds: self.seconds,
            rounds: self.rounds as usize,
            workers: self.workers,
            scale_conns: self.scale_conns,
            port: self.port,
            placement: self.placement,
        };
        let machine = machine();
        say!(
            "benchmarking on {}; other load on this machine skews every number",
            machine["summary"].as_str().unwrap_or("?")
        );

        let mut rows = Vec::new();
        let mut results = serde_json::Map::new();
        // Scale runs first: the churn of the others leaves tens of thousands of TIME_WAIT
        // sockets for a minute, which every snapshot (and `ss`) would have to list too.
        let order = [
            Bench::Scale,
            Bench::Overhead,
            Bench::Lossless,
            Bench::Replay,
            Bench::Latency,
        ];
        for bench in &order {
            if !selected.contains(bench) {
                continue;
            }
            child::check()?;
            say!("=== {} ===", bench.name());
            let outcome = match bench {
                Bench::Overhead => overhead::run(&cx),
                Bench::Lossless => lossless::run(&cx),
                Bench::Replay => replay::run(&cx),
                Bench::Latency => latency::run(&cx),
                Bench::Scale => scale::run(&cx),
            };
            if *bench == Bench::Scale && selected.contains(&Bench::Overhead) {
                // The held connections close into TIME_WAIT: more than the kernel keeps
                // (`tcp_max_tw_buckets`), so the first overhead round's connections would skip
                // TIME_WAIT and run faster than the rest (the pingpong shape read 1.2x
                // untraced in one run).
                drain_time_wait(Duration::from_secs(70));
            }
            match outcome {
                Ok((detail, mut r)) => {
                    results.insert(bench.name().into(), detail);
                    rows.append(&mut r);
                }
                // Ctrl-C stops everything; any other failure is reported and the rest run.
                Err(e) if child::check().is_err() => return Err(e),
                Err(e) => {
                    say!("{} failed: {e:#}", bench.name());
                    results.insert(bench.name().into(), json!({ "error": format!("{e:#}") }));
                    rows.push(Row::na(bench.name(), "", &format!("failed: {e:#}"), ""));
                }
            }
        }

        // The table follows the order.
        rows.sort_by_key(|r| {
            Bench::value_variants()
                .iter()
                .position(|b| b.name() == r.bench)
        });
        let command = std::iter::once("cargo xtask bench".to_owned())
            .chain(std::env::args().skip(2))
            .collect::<Vec<_>>()
            .join(" ");
        let markdown = markdown(&rows, &machine, &command);
        let table_rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "bench": r.bench, "config": r.config, "result": r.value,
                    "target": r.target, "verdict": r.verdict.word(),
                })
            })
            .collect();
        let all = json!({
            "command": command,
            "machine": machine,
            "options": {
                "seconds": cx.seconds, "rounds": cx.rounds, "workers": cx.workers,
                "scale_conns": cx.scale_conns, "port": cx.port,
            },
            "table": table_rows,
            "results": results,
        });
        let json_path = cx.out_dir.join("results.json");
        let md_path = cx.out_dir.join("results.md");
        std::fs::write(&json_path, serde_json::to_string_pretty(&all)? + "\n")?;
        std::fs::write(&md_path, &markdown)?;
        eprintln!();
        eprint!("{}", plain_table(&rows));
        eprintln!();
        say!(
            "results: {} and {} (a markdown table for docs/performance.md)",
            json_path.display(),
            md_path.display()
        );
        Ok(())
    }
}

/// Warns when the benchmark's listening ports fall in the ephemeral range, where clients'
/// TIME_WAIT sockets may make them unavailable.
fn warn_if_ephemeral(first: u16, last: u16) {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let bounds: Vec<u16> = range
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if let [low, high] = bounds[..]
        && first <= high
        && last >= low
    {
        say!(
            "warning: ports {first}-{last} overlap the ephemeral range {low}-{high}; if a \
             listener cannot bind, pick another --port"
        );
    }
}

/// Waits, up to `limit`, until the system holds fewer than 1,000 TIME_WAIT sockets (the `tw`
/// count of `/proc/net/sockstat`), saying what it waits for.
fn drain_time_wait(limit: Duration) {
    let time_wait = || -> Option<u64> {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
        let tcp = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
        let mut fields = tcp.split_whitespace();
        fields.find(|&f| f == "tw")?;
        fields.next()?.parse().ok()
    };
    let start = std::time::Instant::now();
    let Some(first) = time_wait() else { return };
    if first < 1_000 {
        return;
    }
    say!(
        "waiting for {first} TIME_WAIT sockets to expire before the overhead runs (up to {} s)",
        limit.as_secs()
    );
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(2));
        if time_wait().is_none_or(|n| n < 1_000) {
            say!("TIME_WAIT drained after {} s", start.elapsed().as_secs());
            return;
        }
    }
    say!(
        "{} TIME_WAIT sockets left after {} s; running anyway",
        time_wait().unwrap_or(0),
        limit.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Task};

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn only_takes_a_comma_separated_list() {
        let Task::Bench(o) = Cli::parse_from([
            "xtask",
            "bench",
            "--only",
            "replay,scale",
            "--scale-conns",
            "1000",
        ])
        .task
        else {
            unreachable!()
        };
        assert_eq!(o.only, [Bench::Replay, Bench::Scale]);
        assert_eq!(o.scale_conns, 1000);
    }
}

//! Userspace cost per event: ring-buffer records through what `enetstat` does with each one,
//! on one core, without the kernel. Target: at least 5 million events/s for the watch path.
//!
//! - `decode`: bytes to a `Transition` (length and kind checks, addresses, comm).
//! - `watch_path`: decode + tracker (durations, owner) + lifecycles (how it ended) + filter
//!   (matches everything): what `enetstat watch` does per event before rendering. The target
//!   applies to this one.
//! - `watch_json`: the watch path and the JSON line rendered into memory: the whole
//!   userspace cost of `enetstat watch -o json` per event, except the write to stdout.
//! - `watch_path_port_filter`: the same with a two-term port filter (`sport = :P or dport =
//!   :P`, P the first listener's port), as `--port P` builds it.
//! - `table_path`: the same pipeline feeding the live table, + filter, what the daemon does
//!   per event before handing it out.
//!
//! Every path runs the shipped [`Pipeline`], not a copy of it.
//!
//! The records are a real capture when `ENETSTAT_REPLAY_NDJSON` names an `enetstat watch -o
//! json` file (`cargo xtask bench` records one during its lossless run), otherwise synthetic
//! churn connections (see `enetstat_bench::records`).
//!
//! `cargo bench -p enetstat-bench --bench replay` (criterion's own options after `--`).

// The benchmark uses a few of the package's dependencies; the rest are the load generator's.
#![allow(unused_crate_dependencies)]

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enetstat::{
    clock::WallClock,
    decode::decode_record,
    event::Record,
    filter::{Filter, Observed},
    pipeline::Pipeline,
    render::{self, Line},
    table::{Limits, Table},
};
use enetstat_bench::records::{self, RawRecord};

/// Most records replayed from a capture.
const MAX_CAPTURED: usize = 200_000;

fn load() -> (String, Vec<RawRecord>) {
    if let Some(path) = std::env::var_os("ENETSTAT_REPLAY_NDJSON") {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.to_string_lossy()));
        let records = records::from_ndjson(&text, MAX_CAPTURED)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.to_string_lossy()));
        if !records.is_empty() {
            return (format!("capture {}", path.to_string_lossy()), records);
        }
    }
    // 10,000 connections, 64 in flight at once, one in four over IPv6.
    ("synthetic".into(), records::synthetic(10_000, 64, 4))
}

fn replay(c: &mut Criterion) {
    let (source, records) = load();
    eprintln!("replay: {} records from {source}", records.len());
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(records.len() as u64));

    group.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                let _ = black_box(decode_record(black_box(r)));
            }
        });
    });

    let watch_path = |filter: Filter, json: bool| {
        let records = &records;
        move |b: &mut criterion::Bencher| {
            let mut pipeline = Pipeline::new(1_000_000);
            let clock = WallClock::new();
            let mut out = Vec::with_capacity(1 << 20);
            b.iter(|| {
                let mut shown = 0u64;
                for r in records {
                    let Some(step) = pipeline.feed(black_box(r), None) else {
                        continue;
                    };
                    let observed = Observed {
                        transition: &step.transition,
                        owner: step.context.owner.as_ref(),
                    };
                    if !filter.matches(&observed) {
                        continue;
                    }
                    shown += 1;
                    if json {
                        let line = Line {
                            transition: &step.transition,
                            time: clock.wall(step.transition.ts_ns),
                            owner: step.context.owner.as_ref(),
                            in_old: step.context.in_old,
                            end: step.context.end,
                            cgroup: None,
                        };
                        render::transition::json::write_line(&mut out, &line)
                            .expect("writing to memory");
                    } else {
                        black_box(&step);
                    }
                }
                black_box(&out);
                out.clear();
                shown
            });
        }
    };
    group.bench_function("watch_path", watch_path(Filter::default(), false));
    let port = first_port(&records);
    let both = enetstat::filter::parse(&format!("sport = :{port} or dport = :{port}"))
        .expect("a valid filter expression");
    group.bench_function("watch_path_port_filter", watch_path(both, false));
    group.bench_function("watch_json", watch_path(Filter::default(), true));

    group.bench_function("table_path", |b| {
        let mut table = Table::new(Limits::default(), None);
        let mut pipeline = Pipeline::new(1_000_000);
        let filter = Filter::default();
        b.iter(|| {
            let mut kept = 0u64;
            for r in &records {
                if let Some(step) = pipeline.feed(black_box(r), Some(&mut table)) {
                    let observed = Observed {
                        transition: &step.transition,
                        owner: step.context.owner.as_ref(),
                    };
                    kept += u64::from(filter.matches(&observed));
                }
            }
            kept
        });
    });
    group.finish();
}

/// The listening port of the first listener or connection in `records`.
fn first_port(records: &[RawRecord]) -> u16 {
    records
        .iter()
        .find_map(|r| match decode_record(r) {
            Ok(Record::Transition(t)) => t.local.port.filter(|_| t.remote.port.is_none()),
            _ => None,
        })
        .unwrap_or(8080)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = replay
}
criterion_main!(benches);

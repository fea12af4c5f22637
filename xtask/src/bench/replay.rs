//! Benchmark 3, userspace cost per event: the criterion benchmark `bench/benches/replay.rs`, on the
//! capture the lossless run kept (synthetic records without one), read back from criterion's own
//! result files.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Context, Row, Verdict};
use crate::{cargo, cmd};

/// Benchmarks in the `replay` group, and the one the target applies to.
const BENCHES: [&str; 5] = [
    "watch_path",
    "watch_path_port_filter",
    "watch_json",
    "table_path",
    "decode",
];
const TARGET: f64 = 5e6;

pub fn run(cx: &Context) -> Result<(Value, Vec<Row>)> {
    let seconds = cx.seconds.clamp(1.0, 5.0).to_string();
    let mut command = cargo::nightly([
        "bench",
        "--package",
        "enetstat-bench",
        "--bench",
        "replay",
        "--",
        "--noplot",
        "--warm-up-time",
        "1",
        "--measurement-time",
        &seconds,
    ]);
    let capture = cx.capture_path();
    let source = if capture.metadata().is_ok_and(|m| m.len() > 0) {
        command.env("ENETSTAT_REPLAY_NDJSON", &capture);
        format!("capture ({})", capture.display())
    } else {
        "synthetic".to_owned()
    };
    cmd::run(&mut command)?;

    let dir = cargo::target_dir().join("criterion").join("replay");
    let mut rows = Vec::new();
    let mut results = serde_json::Map::new();
    for name in BENCHES {
        let events_per_s = read(&dir.join(name))
            .with_context(|| format!("reading criterion's results for replay/{name}"))?;
        results.insert(name.into(), json!(events_per_s));
        let is_target = name == "watch_path";
        rows.push(Row {
            bench: "replay",
            config: format!("{name}, one core, {source}"),
            value: format!("{:.2} M events/s", events_per_s / 1e6),
            target: if is_target {
                ">= 5 M/s".into()
            } else {
                "-".into()
            },
            verdict: if is_target {
                Verdict::of(events_per_s >= TARGET)
            } else {
                Verdict::Info
            },
        });
    }
    Ok((json!({ "source": source, "events_per_s": results }), rows))
}

/// Events per second from criterion's `new/estimates.json` (mean time per iteration) and
/// `new/benchmark.json` (elements per iteration).
fn read(dir: &Path) -> Result<f64> {
    let load = |file: &str| -> Result<Value> {
        let path = dir.join("new").join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let mean_ns = load("estimates.json")?["mean"]["point_estimate"]
        .as_f64()
        .context("no mean estimate")?;
    let elements = load("benchmark.json")?["throughput"]["Elements"]
        .as_f64()
        .context("no element throughput")?;
    Ok(elements / (mean_ns / 1e9))
}

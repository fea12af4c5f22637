//! Benchmark 4, latency from the kernel's timestamp to the moment userspace has applied the event,
//! at fixed event rates (the load generator paced; 10 events per connection). enetstat measures it
//! itself for every event and writes percentiles with the hidden `watch --stats-json PATH`.

use std::{process::Stdio, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Context, Row, Verdict};

/// Events per second to measure at.
const RATES: [u64; 3] = [1_000, 10_000, 100_000];
/// What one load-generator connection makes (`enetstat_bench::TRANSITIONS_PER_CONNECTION`;
/// xtask builds on stable and cannot link that crate).
const TRANSITIONS_PER_CONNECTION: f64 = 10.0;
/// The targets (microseconds), for rates up to 10k/s and for the first events after idle.
const TARGET_P50_US: f64 = 1_000.0;
const TARGET_P99_US: f64 = 2_000.0;
const TARGET: &str = "p50 < 1 ms, p99 < 2 ms";
/// The idle case: this long with no event at all (the reader asleep, its CPU idle), then one
/// connection; this many times.
const IDLE: Duration = Duration::from_secs(10);
const IDLE_ROUNDS: usize = 3;

pub fn run(cx: &Context) -> Result<(Value, Vec<Row>)> {
    if !cx.tools.stats_json {
        let why = "skipped: this enetstat has no `watch --stats-json` yet";
        say!("latency: {why}");
        let rows = RATES
            .iter()
            .map(|r| Row::na("latency", &format!("{r} events/s"), why, TARGET))
            .collect();
        return Ok((json!({ "skipped": why }), rows));
    }
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for rate in RATES {
        say!("latency: {rate} events/s");
        let conn_rate = rate as f64 / TRANSITIONS_PER_CONNECTION;
        let (stats, loads) = measure(cx, &format!("latency-{rate}.json"), |cx| {
            Ok(vec![cx.churn(&[
                ("--seconds", cx.seconds.to_string()),
                ("--rate", conn_rate.to_string()),
            ])?])
        })?;
        let reached = loads[0]["events_per_s"].as_f64().unwrap_or(0.0);
        rows.push(row(
            format!("{rate} events/s (reached {reached:.0})"),
            &stats,
            rate <= 10_000,
        ));
        details.push(
            json!({ "rate": rate, "reached_events_per_s": reached, "stats": stats, "load": loads[0] }),
        );
    }
    // The reader asleep for long: the first event has to wake it (and its idle vCPU) through
    // the kernel's wakeup, not a poll.
    say!(
        "latency: one connection after {}s of idle, {IDLE_ROUNDS} times",
        IDLE.as_secs()
    );
    let (stats, loads) = measure(cx, "latency-idle.json", |cx| {
        (0..IDLE_ROUNDS)
            .map(|_| {
                super::child::pause(IDLE)?;
                cx.churn(&[("--connections", "1".to_owned())])
            })
            .collect()
    })?;
    rows.push(row(
        format!(
            "1 connection after {}s idle, {IDLE_ROUNDS} times",
            IDLE.as_secs()
        ),
        &stats,
        true,
    ));
    details.push(
        json!({ "idle_s": IDLE.as_secs(), "rounds": IDLE_ROUNDS, "stats": stats, "load": loads }),
    );
    Ok((json!({ "runs": details }), rows))
}

/// Runs `watch -o json` on the churn's ports while `load` runs, and returns the latency
/// statistics it wrote and what `load` returned.
fn measure(
    cx: &Context,
    name: &str,
    load: impl FnOnce(&Context) -> Result<Vec<Value>>,
) -> Result<(Value, Vec<Value>)> {
    let ports = cx.ports().join(",");
    let stats = super::enetstat::scratch(&cx.out_dir, name);
    let args: Vec<String> = [
        "watch",
        "-o",
        "json",
        "--port",
        &ports,
        "--stats-json",
        &stats.to_string_lossy(),
    ]
    .map(str::to_owned)
    .into();
    let mut tracer = cx.tools.tracer("enetstat watch", &args, Stdio::null())?;
    let loads = load(cx)?;
    super::child::pause(Duration::from_millis(300))?;
    tracer.stop(libc::SIGINT, Duration::from_secs(30))?;
    let text = std::fs::read_to_string(&stats).with_context(|| {
        format!(
            "enetstat did not write {}:\n{}",
            stats.display(),
            tracer.stderr.tail(5)
        )
    })?;
    let s =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", stats.display()))?;
    Ok((s, loads))
}

/// One row of the table: the percentiles, judged against the target where it applies.
fn row(config: String, s: &Value, has_target: bool) -> Row {
    let l = &s["latency_us"];
    let (p50, p99, max) = (
        l["p50"].as_f64().unwrap_or(f64::NAN),
        l["p99"].as_f64().unwrap_or(f64::NAN),
        l["max"].as_f64().unwrap_or(f64::NAN),
    );
    Row {
        bench: "latency",
        config,
        value: format!(
            "p50 {} / p99 {} / max {}, {} events",
            us(p50),
            us(p99),
            us(max),
            l["count"]
        ),
        target: if has_target {
            TARGET.into()
        } else {
            "-".into()
        },
        verdict: if has_target {
            Verdict::of(p50 < TARGET_P50_US && p99 < TARGET_P99_US)
        } else {
            Verdict::Info
        },
    }
}

/// Microseconds, shown in the unit that reads best.
fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

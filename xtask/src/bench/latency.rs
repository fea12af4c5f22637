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
/// p99 target (microseconds), for rates up to 10k/s.
const TARGET_P99_US: f64 = 1_000.0;

pub fn run(cx: &Context) -> Result<(Value, Vec<Row>)> {
    if !cx.tools.stats_json {
        let why = "skipped: this enetstat has no `watch --stats-json` yet";
        say!("latency: {why}");
        let rows = RATES
            .iter()
            .map(|r| Row::na("latency", &format!("{r} events/s"), why, "p99 < 1 ms"))
            .collect();
        return Ok((json!({ "skipped": why }), rows));
    }
    let ports = cx.ports().join(",");
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for rate in RATES {
        let stats = super::enetstat::scratch(&cx.out_dir, &format!("latency-{rate}.json"));
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
        say!("latency: {rate} events/s");
        let mut tracer = cx.tools.tracer("enetstat watch", &args, Stdio::null())?;
        let conn_rate = rate as f64 / TRANSITIONS_PER_CONNECTION;
        let load = cx.churn(&[
            ("--seconds", cx.seconds.to_string()),
            ("--rate", conn_rate.to_string()),
        ])?;
        super::child::pause(Duration::from_millis(300))?;
        tracer.stop(libc::SIGINT, Duration::from_secs(30))?;
        let text = std::fs::read_to_string(&stats).with_context(|| {
            format!(
                "enetstat did not write {}:\n{}",
                stats.display(),
                tracer.stderr.tail(5)
            )
        })?;
        let s: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", stats.display()))?;
        let l = &s["latency_us"];
        let (p50, p99, max) = (
            l["p50"].as_f64().unwrap_or(f64::NAN),
            l["p99"].as_f64().unwrap_or(f64::NAN),
            l["max"].as_f64().unwrap_or(f64::NAN),
        );
        let reached = load["events_per_s"].as_f64().unwrap_or(0.0);
        let has_target = rate <= 10_000;
        rows.push(Row {
            bench: "latency",
            config: format!("{rate} events/s (reached {reached:.0})"),
            value: format!(
                "p50 {} / p99 {} / max {}, {} events",
                us(p50),
                us(p99),
                us(max),
                l["count"]
            ),
            target: if has_target {
                "p99 < 1 ms".into()
            } else {
                "-".into()
            },
            verdict: if has_target {
                Verdict::of(p99 < TARGET_P99_US)
            } else {
                Verdict::Info
            },
        });
        details.push(
            json!({ "rate": rate, "reached_events_per_s": reached, "stats": s, "load": load }),
        );
    }
    Ok((json!({ "runs": details }), rows))
}

/// Microseconds, shown in the unit that reads best.
fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

//! Benchmark 2, lossless under the heaviest churn: `enetstat watch -o json --port <the load
//! generator's ports>` while the load generator runs flat out; every transition it made must come
//! out as one JSON line, with no record lost to a full ring (default ring size).
//!
//! The first lines are kept as `capture.ndjson`, real events for the replay benchmark.

use std::{collections::BTreeMap, fs::File, process::Stdio, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Context, Row, Verdict, child::LineCounter, enetstat::Summary};

/// Lines kept for the replay benchmark.
const CAPTURE_LINES: usize = 200_000;

pub fn run(cx: &Context) -> Result<(Value, Vec<Row>)> {
    let ports = cx.ports().join(",");
    let args: Vec<String> = ["watch", "-o", "json", "--port", &ports]
        .map(str::to_owned)
        .into();
    // Straight to a file, counted afterwards: a pipe to xtask would take CPU from the tracer
    // on a machine the load generator already keeps busy.
    let output_path = cx.out_dir.join("lossless.ndjson");
    let output = File::create(&output_path)
        .with_context(|| format!("cannot create {}", output_path.display()))?;
    let mut tracer = cx
        .tools
        .tracer("enetstat watch", &args, Stdio::from(output))?;
    let load = cx.churn(&[("--seconds", cx.seconds.to_string())])?;
    // Let the last records of the run reach the ring and be read (the reader wakes at least
    // every --wakeup-us and polls on its own timer).
    super::child::pause(Duration::from_millis(500))?;
    tracer.stop(libc::SIGINT, Duration::from_secs(30))?;
    let summary = Summary::find(&tracer.stderr.all()).unwrap_or_default();
    let counted = LineCounter::start(File::open(&output_path)?, CAPTURE_LINES).finish()?;
    let received = counted.lines;
    std::fs::write(cx.capture_path(), &counted.kept)?;
    // Hundreds of megabytes at full speed; the capture keeps what the replay needs.
    let _ = std::fs::remove_file(&output_path);
    let connections = load["connections"].as_u64().unwrap_or(0);
    let listeners = load["listeners"].as_u64().unwrap_or(0);
    let differences = differences(&counted.transitions, connections, listeners);

    let generated = load["transitions"].as_u64().unwrap_or(0);
    let errors = load["errors"].as_u64().unwrap_or(0);
    let events_per_s = load["events_per_s"].as_f64().unwrap_or(0.0);
    let exact = received == generated && summary.lost == 0 && errors == 0;
    let mut value = format!(
        "{received} of {generated} received, {} lost, at {events_per_s:.0} events/s",
        summary.lost
    );
    if errors > 0 {
        value.push_str(&format!(", {errors} load generator errors"));
    }
    if summary.lost > 0 {
        value.push_str(" (the ring filled: the reader did not keep up)");
    } else if !differences.is_empty() {
        let list: Vec<String> = differences
            .iter()
            .map(|(t, d)| format!("{t} {d:+}"))
            .collect();
        value.push_str(&format!(
            "; by transition, received minus made: {}",
            list.join(", ")
        ));
    }
    let rows = vec![Row {
        bench: "lossless",
        config: format!("{} workers flat out, default ring", cx.workers),
        value,
        target: "all received, 0 lost".into(),
        verdict: Verdict::of(exact),
    }];
    Ok((
        json!({
            "generated": generated,
            "received": received,
            "lost": summary.lost,
            "undecodable": summary.undecodable,
            "kernel_seen": summary.seen,
            "shown": summary.shown,
            "events_per_s": events_per_s,
            "load": load,
            "exact": exact,
            "received_by_transition": counted.transitions,
            "received_minus_made": differences.iter().cloned().collect::<BTreeMap<_, _>>(),
        }),
        rows,
    ))
}

/// What one load-generator connection makes, both ends (`enetstat_bench::records::
/// CONNECTION_SCRIPT`; xtask builds on stable and cannot link that crate), and one listener.
const PER_CONNECTION: [&str; 10] = [
    "CLOSE->SYN_SENT",
    "SYN_SENT->ESTABLISHED",
    "LISTEN->SYN_RECV",
    "SYN_RECV->ESTABLISHED",
    "ESTABLISHED->FIN_WAIT1",
    "ESTABLISHED->CLOSE_WAIT",
    "FIN_WAIT1->FIN_WAIT2",
    "CLOSE_WAIT->LAST_ACK",
    "FIN_WAIT2->CLOSE",
    "LAST_ACK->CLOSE",
];
const PER_LISTENER: [&str; 2] = ["CLOSE->LISTEN", "LISTEN->CLOSE"];

/// Transitions received more (+) or fewer (-) times than the load generator made them, so a
/// mismatch says which transition went missing.
fn differences(
    received: &BTreeMap<String, u64>,
    connections: u64,
    listeners: u64,
) -> Vec<(String, i64)> {
    let mut made = BTreeMap::<String, u64>::new();
    for t in PER_CONNECTION {
        *made.entry(t.into()).or_default() += connections;
    }
    for t in PER_LISTENER {
        *made.entry(t.into()).or_default() += listeners;
    }
    let mut keys: Vec<&String> = made.keys().chain(received.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let d = received.get(k).copied().unwrap_or(0) as i64
                - made.get(k).copied().unwrap_or(0) as i64;
            (d != 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_transition() {
        let mut received: BTreeMap<String, u64> = PER_CONNECTION
            .iter()
            .map(|t| ((*t).to_owned(), 5))
            .chain(PER_LISTENER.iter().map(|t| ((*t).to_owned(), 2)))
            .collect();
        assert!(differences(&received, 5, 2).is_empty());
        received.remove("LAST_ACK->CLOSE");
        received.insert("SYN_SENT->CLOSE".into(), 1);
        assert_eq!(
            differences(&received, 5, 2),
            [
                ("LAST_ACK->CLOSE".to_owned(), -5),
                ("SYN_SENT->CLOSE".to_owned(), 1)
            ]
        );
    }
}

//! Benchmark 5, scale: many established loopback connections held open by `enetstat-loadgen hold`;
//! the memory of the long-running enetstat (the daemon, or the live table `-c` as a stand-in) and
//! the time a full snapshot takes, side by side with `ss -tan` on the same sockets. Snapshot times
//! are whole processes, start to exit, output to /dev/null: what a user waits.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    Context, Row, Verdict,
    child::{self, Child},
    median,
};
use crate::cmd;

/// Snapshots timed per tool; the median is reported.
const RUNS: usize = 3;
const RSS_TARGET_KIB: u64 = 64 * 1024;

pub fn run(cx: &Context) -> Result<(Value, Vec<Row>)> {
    let conns = cx.scale_conns;
    let (holders, report) = hold(cx, conns)?;
    say!("scale: holding {report}");

    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    details.insert("hold".into(), report.clone());

    // `ss -tan`, the reference.
    let mut ss = cmd::new("ss");
    ss.arg("-tan");
    let (ss_lines, ss_s) = time_snapshot(ss)?;
    details.insert(
        "ss_tan".into(),
        json!({ "lines": ss_lines, "median_s": ss_s }),
    );
    rows.push(Row {
        bench: "scale",
        config: format!(
            "ss -tan, {conns} conns ({} sockets held)",
            report["sockets"]
        ),
        value: format!("{ss_s:.3} s, {ss_lines} lines"),
        target: "-".into(),
        verdict: Verdict::Info,
    });

    // `enetstat -tan`, one-shot (with `--standalone` where a daemon could be picked up).
    if cx.tools.snapshot {
        let mut c = cmd::new(&cx.tools.enetstat);
        c.arg("-tan");
        let (lines, s) = time_snapshot(c)?;
        details.insert(
            "enetstat_tan".into(),
            json!({ "lines": lines, "median_s": s }),
        );
        rows.push(Row {
            bench: "scale",
            config: format!("enetstat -tan one-shot, {conns} conns"),
            value: format!("{s:.3} s, {lines} lines ({:.2}x ss)", s / ss_s),
            target: "faster than ss".into(),
            verdict: Verdict::of(s < ss_s),
        });
    } else {
        rows.push(Row::na(
            "scale",
            "enetstat -tan one-shot",
            "n/a (no snapshot mode yet)",
            "faster than ss",
        ));
    }

    // The live table, a stand-in for the daemon's memory.
    if cx.tools.live {
        let live = cx
            .tools
            .background(
                "enetstat -c 1 -tan",
                &["-c".into(), "1".into(), "-tan".into()],
                Duration::from_secs(5),
            )
            .and_then(|live| Ok((child::memory_kib(live.id())?, live)));
        match live {
            Ok(((rss, hwm), live)) => {
                details.insert(
                    "live_table".into(),
                    json!({ "rss_kib": rss, "peak_kib": hwm }),
                );
                rows.push(Row {
                    bench: "scale",
                    config: format!("live table -c 1 -tan RSS (daemon stand-in), {conns} conns"),
                    value: format!("{:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm)),
                    target: "< 64 MiB".into(),
                    verdict: Verdict::of(rss < RSS_TARGET_KIB),
                });
                drop(live);
            }
            Err(e) => {
                child::check()?;
                rows.push(Row::na(
                    "scale",
                    "live table -c 1 -tan RSS",
                    &format!("failed: {e:#}"),
                    "< 64 MiB",
                ));
            }
        }
    } else {
        rows.push(Row::na(
            "scale",
            "live table -c RSS",
            "n/a (no live-table mode yet)",
            "< 64 MiB",
        ));
    }

    if cx.tools.daemon {
        // A daemon that cannot start must not cost the rows above.
        if let Err(e) = daemon(cx, conns, ss_s, &mut rows, &mut details) {
            child::check()?;
            say!("scale: the daemon part failed: {e:#}");
            rows.push(Row::na(
                "scale",
                "daemon RSS and snapshot",
                &format!("failed: {e:#}"),
                "< 64 MiB, faster than ss",
            ));
        }
    } else {
        rows.push(Row::na(
            "scale",
            "daemon RSS and snapshot",
            "n/a (no daemon yet)",
            "< 64 MiB, faster than ss",
        ));
    }

    // Closing their stdin tells the holders to let go.
    for mut holder in holders {
        drop(holder.take_stdin());
        holder.wait(Duration::from_secs(60))?;
    }
    Ok((Value::Object(details), rows))
}

/// The daemon's memory with every socket in its table, and a snapshot served by it.
fn daemon(
    cx: &Context,
    conns: u64,
    ss_s: f64,
    rows: &mut Vec<Row>,
    details: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let socket = super::enetstat::scratch(&cx.out_dir, "scale.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    let daemon = cx.tools.background(
        "enetstat daemon",
        &["daemon".into(), "--socket".into(), socket_arg.clone()],
        Duration::from_secs(5),
    )?;
    let (rss, hwm) = child::memory_kib(daemon.id())?;
    let mut c = cmd::new(&cx.tools.enetstat);
    c.args(["--socket", &socket_arg, "-tan"]);
    let (lines, s) = time_snapshot(c)?;
    details.insert(
        "daemon".into(),
        json!({ "rss_kib": rss, "peak_kib": hwm, "snapshot_lines": lines, "snapshot_median_s": s }),
    );
    rows.push(Row {
        bench: "scale",
        config: format!("daemon RSS, {conns} conns"),
        value: format!("{:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm)),
        target: "< 64 MiB".into(),
        verdict: Verdict::of(rss < RSS_TARGET_KIB),
    });
    rows.push(Row {
        bench: "scale",
        config: format!("enetstat --socket -tan from the daemon, {conns} conns"),
        value: format!("{s:.3} s, {lines} lines ({:.2}x ss)", s / ss_s),
        target: "faster than ss".into(),
        verdict: Verdict::of(s < ss_s),
    });
    drop(daemon);
    Ok(())
}

/// Opens `conns` established connections with as many `enetstat-loadgen hold` processes as
/// the open-file limit needs: each connection takes two descriptors, and raising the hard
/// limit needs CAP_SYS_RESOURCE, which containers often lack. Returns the holders (they let
/// go when dropped or when their stdin closes) and their reports merged.
fn hold(cx: &Context, conns: u64) -> Result<(Vec<Child>, Value)> {
    let per_holder = (hard_nofile().saturating_sub(512) / 2).clamp(1_000, conns.max(1));
    let count = conns.div_ceil(per_holder);
    // Each holder listens on its own ports, one per 20,000 connections.
    let ports_each = per_holder.div_ceil(20_000);
    let mut holders = Vec::new();
    let mut reports = Vec::new();
    for i in 0..count {
        let n = per_holder.min(conns - i * per_holder);
        let port = u64::from(cx.hold_port()) + i * ports_each;
        let port = u16::try_from(port).context("too many holders for the port range")?;
        let mut command = cx.tools.loadgen(&[
            "hold".into(),
            "--connections".into(),
            n.to_string(),
            "--ports".into(),
            ports_each.to_string(),
            "--port".into(),
            port.to_string(),
        ]);
        command.stdin(Stdio::piped());
        let mut holder = Child::spawn("enetstat-loadgen hold", command)?;
        reports.push(ready(&mut holder, Duration::from_secs(600))?);
        holders.push(holder);
    }
    let sum = |key: &str| {
        reports
            .iter()
            .map(|r| r[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let setup_s: f64 = reports
        .iter()
        .map(|r| r["setup_s"].as_f64().unwrap_or(0.0))
        .sum();
    let report = json!({
        "connections": sum("connections"),
        "sockets": sum("sockets"),
        "holders": count,
        "setup_s": setup_s,
        "ports": reports.iter().flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default()).collect::<Vec<_>>(),
    });
    Ok((holders, report))
}

/// The hard open-file limit children inherit.
fn hard_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } == 0 {
        lim.rlim_max
    } else {
        1024
    }
}

/// Waits for the holder's JSON line saying every connection is up.
fn ready(holder: &mut Child, timeout: Duration) -> Result<Value> {
    let stdout = holder
        .take_stdout()
        .context("the holder's stdout was not piped")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let end = Instant::now() + timeout;
    loop {
        child::check()?;
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if !line.trim().is_empty() => {
                return serde_json::from_str(&line)
                    .with_context(|| format!("the holder printed {line:?}"));
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                holder.wait(Duration::from_secs(5))?;
                bail!("enetstat-loadgen hold failed:\n{}", holder.stderr.tail(10));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > end => {
                bail!("enetstat-loadgen hold did not get its connections up in {timeout:?}")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Runs a snapshot command once to count its lines, then [`RUNS`] times with its output to
/// /dev/null: lines and median seconds.
fn time_snapshot(mut command: Command) -> Result<(u64, f64)> {
    let shown = cmd::display(&command);
    command.stdin(Stdio::null()).stderr(Stdio::piped());
    let mut lines = 0;
    let mut times = Vec::new();
    for run in 0..=RUNS {
        child::check()?;
        let counting = run == 0;
        say!(
            "$ {shown}{}",
            if counting { " | wc -l" } else { " > /dev/null" }
        );
        command.stdout(if counting {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let start = Instant::now();
        let output = command
            .output()
            .with_context(|| format!("could not start `{shown}`"))?;
        let elapsed = start.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!(
                "`{shown}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        if counting {
            lines = output.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
        } else {
            times.push(elapsed);
        }
    }
    Ok((lines, median(&times)))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

//! Benchmark 1, overhead on the traced host: the load generator's connection rate untraced and
//! under each tracing configuration, alternating, several rounds; reported as the median rate and
//! the median of each round's ratio to that round's untraced rate, with the rounds' lowest and
//! highest ratio (the spread says how far one round can be trusted). Run for both load shapes (`enetstat-loadgen --shape`):
//! pingpong (one thread per worker, client closes first) and server (an accepting thread and
//! two connecting threads per worker, server closes first: a cross-thread wakeup per connection,
//! as in real servers). For each configuration it also counts the IPIs the host took
//! (`/proc/interrupts`: function calls, reschedules, IRQ work), per 1000 transitions: on a VM
//! each is an exit to the hypervisor, which is where event delivery used to cost most.
//!
//! Beside enetstat run the peers (libbpf-tools' `tcpstates`, a bpftrace count) and the
//! delivery floor (`enetstat-loadgen floor`): the least any tracer costs that delivers a record
//! of every transition, so a target can be read against what the host allows at all.
//!
//! `enetstat top -b` runs as a configuration of its own: the issue that added top asked that
//! it keep the overhead targets beside a full-speed churn.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Context, Row, Verdict, child, enetstat::Summary, median};

struct Config {
    name: &'static str,
    /// enetstat's arguments; `None` runs untraced (or the peer below).
    args: Option<Vec<String>>,
    /// A peer tool instead of enetstat: its program and arguments, output to /dev/null.
    peer: Option<(PathBuf, Vec<String>)>,
    /// Whether it prints "tracing" when ready (watch) or needs a settle time.
    announces: bool,
    target: Option<f64>,
    /// Where `top -b -o json` writes its refreshes. It prints no closing summary: its first
    /// refresh says it is ready, and its last one how many events it lost.
    refreshes: Option<PathBuf>,
}

/// The delivery floor's configuration.
const FLOOR: &str = "delivery floor: a 16-byte record per transition, read every 4 ms";

/// What the delivery floor (`enetstat-loadgen floor`) says it lost, from its last line.
fn floor_lost(lines: &[String]) -> Option<u64> {
    lines.iter().rev().find_map(|line| {
        let rest = line.strip_prefix("enetstat-loadgen floor: ")?;
        let (_, lost) = rest.split_once(" records read, ")?;
        lost.strip_suffix(" lost")?.parse().ok()
    })
}

/// How long top may take to load, attach, seed and print its first refresh.
const TOP_READY: Duration = Duration::from_secs(60);

/// The complete lines of `path` so far.
fn lines_of(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_owned).collect()
}

/// Waits until `path` holds at least `n` complete lines.
fn wait_lines(path: &Path, n: usize, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    while lines_of(path).len() < n {
        if Instant::now() >= end {
            bail!("{} had no refresh {n} after {timeout:?}", path.display());
        }
        child::pause(Duration::from_millis(20))?;
    }
    Ok(())
}

/// The events top's last refresh in `path` says went uncounted.
fn top_lost(path: &Path) -> Result<u64> {
    let last = lines_of(path).pop().context("top printed no refresh")?;
    let frame: Value = serde_json::from_str(&last).context("top's refresh is not JSON")?;
    frame["lost_events"]
        .as_u64()
        .context("top's refresh has no lost_events")
}

/// The load shapes, as `enetstat-loadgen --shape` names them.
const SHAPES: [&str; 2] = ["pingpong", "server"];

/// IPIs taken so far, over all CPUs: the CAL, RES and IWI lines of `/proc/interrupts`.
fn ipis() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    let mut total = 0;
    for line in text.lines() {
        let line = line.trim_start();
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if matches!(name, "CAL" | "RES" | "IWI") {
            total += rest
                .split_whitespace()
                .map_while(|w| w.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(total)
}

pub fn run(cx: &Context) -> Result<(Value, Vec<Row>)> {
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for shape in SHAPES {
        let (d, r) = run_shape(cx, shape)?;
        details.push(json!({ "shape": shape, "configs": d }));
        rows.extend(r);
    }
    if !cx.tools.daemon {
        rows.push(Row::na(
            "overhead",
            "daemon",
            "n/a (no daemon yet)",
            ">= 0.92",
        ));
    }
    Ok((
        json!({
            "workers": cx.workers,
            "seconds": cx.seconds,
            "rounds": cx.rounds,
            "placement": cx.placement.name(),
            "shapes": details,
        }),
        rows,
    ))
}

fn run_shape(cx: &Context, shape: &str) -> Result<(Vec<Value>, Vec<Row>)> {
    let words = |s: &str| Some(s.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
    let mut configs = vec![
        Config {
            name: "untraced",
            args: None,
            announces: false,
            target: None,
            peer: None,
            refreshes: None,
        },
        Config {
            name: "watch -o json > /dev/null",
            args: words("watch -o json"),
            announces: true,
            target: Some(0.85),
            peer: None,
            refreshes: None,
        },
        Config {
            // enetstat's own floor: its kernel programs run on every transition and the
            // kernel filter drops each record (no listener on port 1), so nothing reaches
            // userspace. What a front end costs beyond it is its delivery and its userspace.
            name: "watch --lport 1 (kernel programs only, nothing delivered)",
            args: words("watch -o json --lport 1"),
            announces: true,
            target: None,
            peer: None,
            refreshes: None,
        },
        Config {
            name: "watch -o json --wakeup-us 0 (wake per event)",
            args: words("watch -o json --wakeup-us 0"),
            announces: true,
            target: None,
            peer: None,
            refreshes: None,
        },
    ];
    if cx.tools.daemon {
        let socket = super::enetstat::scratch(&cx.out_dir, "overhead.sock");
        configs.push(Config {
            name: "daemon",
            args: words(&format!("daemon --socket {}", socket.display())),
            announces: false,
            target: Some(0.92),
            peer: None,
            refreshes: None,
        });
    }
    if cx.tools.live {
        configs.push(Config {
            name: "live table -c 1 -tan > /dev/null (daemon stand-in)",
            args: words("-c 1 -tan"),
            announces: false,
            target: None,
            peer: None,
            refreshes: None,
        });
    }
    if cx.tools.top {
        // Enough refreshes to outlast the settle and the churn; it is stopped before.
        let refreshes = (cx.seconds + 120.0).ceil().to_string();
        configs.push(Config {
            name: "top -b -d 1 -o json > file",
            args: words(&format!("top -b -d 1 -n {refreshes} -o json")),
            announces: false,
            // A standalone tracer, as `watch` is.
            target: Some(0.85),
            peer: None,
            refreshes: Some(super::enetstat::scratch(&cx.out_dir, "overhead-top.ndjson")),
        });
    }

    // The peers, in the same run (installed by `cargo xtask bench`'s set-up): libbpf-tools'
    // tcpstates, and the floor: a bpftrace program that only counts the tracepoint's calls in a
    // map, the least any tool on this tracepoint can cost.
    for (name, program, args) in [
        ("tcpstates > /dev/null (libbpf-tools)", "tcpstates", vec![]),
        (
            "bpftrace counting the tracepoint in a map (any program's floor)",
            "bpftrace",
            vec![
                "-e".to_owned(),
                "tracepoint:sock:inet_sock_set_state { @[args->newstate] = count(); }".to_owned(),
            ],
        ),
    ] {
        if let Ok(program) = which::which(program) {
            configs.push(Config {
                name,
                args: None,
                announces: false,
                target: None,
                peer: Some((program, args)),
                refreshes: None,
            });
        }
    }
    // The delivery floor: the least a tracer can cost that delivers a record of every
    // transition to userspace (bench/src/floor.rs). A target below its ratio cannot be met
    // by any such tracer on the host measured.
    configs.push(Config {
        name: FLOOR,
        args: None,
        announces: false,
        target: None,
        peer: Some((cx.tools.loadgen.clone(), vec!["floor".to_owned()])),
        refreshes: None,
    });

    say!("overhead: {shape}: warm-up run (not counted)");
    let placement = ("--placement", cx.placement.name().to_owned());
    cx.churn(&[
        ("--seconds", "1".into()),
        ("--shape", shape.into()),
        placement.clone(),
    ])?;

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut lost = vec![0u64; configs.len()];
    let mut ipis_per_k: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut failed: Vec<Option<String>> = vec![None; configs.len()];
    for round in 0..cx.rounds {
        // Rotate the order so no configuration always runs right after the same other one.
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let config = &configs[i];
            say!(
                "overhead: {shape}: round {}/{}: {}",
                round + 1,
                cx.rounds,
                config.name
            );
            if failed[i].is_some() {
                continue;
            }
            let started = match (&config.args, &config.peer) {
                (None, None) => Ok(None),
                (None, Some((program, args))) => {
                    let mut command = crate::cmd::new(program);
                    command
                        .args(args)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null());
                    child::Child::spawn(config.name, command).and_then(|c| {
                        // bpftrace compiles its program first; the peers say nothing when ready.
                        child::pause(Duration::from_secs(5))?;
                        Ok(Some(c))
                    })
                }
                (Some(args), _) if config.announces => {
                    cx.tools.tracer(config.name, args, Stdio::null()).map(Some)
                }
                (Some(args), _) if config.refreshes.is_some() => {
                    let path = config.refreshes.as_deref().unwrap_or(Path::new(""));
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))
                        .and_then(|file| {
                            let top = cx.tools.background_to(
                                config.name,
                                args,
                                Stdio::from(file),
                                Duration::ZERO,
                            )?;
                            wait_lines(path, 1, TOP_READY)?;
                            Ok(Some(top))
                        })
                }
                (Some(args), _) => cx
                    .tools
                    .background(config.name, args, Duration::from_secs(3))
                    .map(Some),
            };

            // One configuration that cannot start (a mode still being built) must not cost
            // the others their numbers; Ctrl-C still stops everything.
            let tracer = match started {
                Ok(t) => t,
                Err(e) if child::check().is_err() => return Err(e),
                Err(e) => {
                    say!(
                        "overhead: {} could not start, skipping it: {e:#}",
                        config.name
                    );
                    failed[i] = Some(format!("{e:#}"));
                    continue;
                }
            };
            let cpu_before = tracer.as_ref().and_then(|t| child::cpu_time(t.id()));
            let ipis_before = ipis();
            let result = cx.churn(&[
                ("--seconds", cx.seconds.to_string()),
                ("--shape", shape.into()),
                placement.clone(),
            ])?;
            rates[i].push(result["rate_cps"].as_f64().unwrap_or(0.0));
            if let (Some(a), Some(b), Some(events)) =
                (ipis_before, ipis(), result["transitions"].as_u64())
            {
                ipis_per_k[i].push(b.saturating_sub(a) as f64 * 1000.0 / events.max(1) as f64);
            }
            if let Some(mut tracer) = tracer {
                let cpu_after = child::cpu_time(tracer.id());
                // The refresh after the churn: it counts the churn's last events.
                if let Some(path) = &config.refreshes {
                    wait_lines(path, lines_of(path).len() + 1, Duration::from_secs(10))?;
                }
                if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
                    let elapsed = result["elapsed_s"].as_f64().unwrap_or(1.0);
                    // The process's CPU time only grows.
                    #[allow(clippy::unchecked_time_subtraction)]
                    cpu[i].push((b - a).as_secs_f64() / elapsed * 100.0);
                }
                tracer.stop(libc::SIGINT, Duration::from_secs(10))?;
                lost[i] += match &config.refreshes {
                    Some(path) => top_lost(path)?,
                    None if config.name == FLOOR => floor_lost(&tracer.stderr.all())
                        .context("the delivery floor did not say what it lost")?,
                    None => Summary::find(&tracer.stderr.all()).map_or(0, |s| s.lost),
                };
            }
        }
    }

    let base = median(&rates[0]);
    let untraced = &rates[0];
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        if let Some(error) = &failed[i] {
            details.push(json!({ "config": config.name, "error": error }));
            let target = config.target.map_or("-".into(), |t| format!(">= {t:.2}"));
            rows.push(Row::na(
                "overhead",
                &format!("{shape}: {}", config.name),
                &format!("failed: {error}"),
                &target,
            ));
            continue;
        }
        let m = median(&rates[i]);
        // Each round's rate against the untraced rate of the same round, then the median:
        // the host's speed drifts by a tenth and more between rounds (see docs/performance.md),
        // and a pair run minutes apart shares less of that drift than one run seconds apart.
        let ratios = paired_ratios(&rates[i], untraced);
        let ratio = median(&ratios);
        let (lowest, highest) = spread(&ratios);
        let cpu_pct = (!cpu[i].is_empty()).then(|| median(&cpu[i]));
        let ipis = (!ipis_per_k[i].is_empty()).then(|| median(&ipis_per_k[i]));
        details.push(json!({
            "config": config.name,
            "ipis_per_1000_transitions": ipis,
            "rates_cps": rates[i],
            "median_cps": m,
            "ratio": ratio,
            "round_ratios": ratios,
            "ratio_of_medians": m / base,
            "tracer_cpu_pct_of_one_core": cpu_pct,
            "lost": lost[i],
            "target_ratio": config.target,
        }));
        let mut value = format!("{m:.0} conn/s, ratio {ratio:.2}");
        if ratios.len() > 1 && i != 0 {
            value.push_str(&format!(" (rounds {lowest:.2}-{highest:.2})"));
        }
        if let Some(c) = cpu_pct {
            value.push_str(&format!(", tracer CPU {c:.0}%"));
        }
        if let Some(ipis) = ipis {
            value.push_str(&format!(", {ipis:.0} IPIs/1k events"));
        }
        // Only enetstat and the floor report what they lost; the peers do not say.
        if config.args.is_some() || config.name == FLOOR {
            value.push_str(&format!(", {} lost", lost[i]));
        }
        rows.push(Row {
            bench: "overhead",
            config: format!("{shape}: {}", config.name),
            value,
            target: config.target.map_or("-".into(), |t| format!(">= {t:.2}")),
            verdict: match config.target {
                None => Verdict::Info,
                Some(t) => Verdict::of(ratio >= t && lost[i] == 0),
            },
        });
    }
    Ok((details, rows))
}

/// Each round's rate over the untraced rate of the same round (a configuration that stopped
/// starting has fewer rounds, its first ones).
fn paired_ratios(rates: &[f64], untraced: &[f64]) -> Vec<f64> {
    rates
        .iter()
        .zip(untraced)
        .filter(|&(_, &u)| u > 0.0)
        .map(|(r, u)| r / u)
        .collect()
}

/// The lowest and highest of `v` (0 and 0 when empty).
fn spread(v: &[f64]) -> (f64, f64) {
    let lowest = v.iter().copied().reduce(f64::min).unwrap_or(0.0);
    let highest = v.iter().copied().reduce(f64::max).unwrap_or(0.0);
    (lowest, highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_each_round_with_its_own_untraced_run() {
        // A host that slows down by half between rounds: each traced run keeps 0.9 of its
        // own round's untraced rate, which a ratio of medians across rounds would not show.
        let untraced = [100.0, 50.0, 100.0];
        let traced = [90.0, 45.0, 90.0];
        let ratios = paired_ratios(&traced, &untraced);
        assert_eq!(ratios, vec![0.9, 0.9, 0.9]);
        assert_eq!(spread(&ratios), (0.9, 0.9));
        // A configuration that stopped after two rounds pairs with those two.
        assert_eq!(paired_ratios(&[80.0, 40.0], &untraced), vec![0.8, 0.8]);
        assert_eq!(spread(&[]), (0.0, 0.0));
    }

    #[test]
    fn the_floors_losses_come_from_its_last_line() {
        let lines = [
            "enetstat-loadgen floor: attached to sock:inet_sock_set_state".to_owned(),
            "enetstat-loadgen floor: 834874 records read, 825 lost".to_owned(),
        ];
        assert_eq!(floor_lost(&lines), Some(825));
        assert_eq!(floor_lost(&lines[..1]), None);
    }
}

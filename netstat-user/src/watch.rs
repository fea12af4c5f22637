//! `enetstat watch` and `enetstat life`: the event log and the connection log. Records flow
//! from the probe's stream through decode, the tracker, the lifecycle book and the filter to a
//! renderer, in batches: one drain of the ring, one flush.

use std::{
    future::Future,
    io::{self, Write},
    pin::pin,
    time::Duration,
};

use crate::{
    cgroup,
    clock::WallClock,
    clock::monotonic_ns,
    decode::is_owner_fact,
    filter::Filter,
    filter::Observed,
    latency::Latency,
    pipeline::{Pipeline, SeedOwners as _, Step},
    probe::{EventStream, KernelCounters, ProbeError},
    render::{Format, Line, Renderer, Stream, transition::text::TextStyle},
};

#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Every transition (`watch`) or one line per connection when it ends (`life`).
    pub stream: Stream,
    pub format: Format,
    pub filter: Filter,
    /// Stop after this many transitions were printed.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Most sockets remembered for durations and owners.
    pub max_sockets: usize,
    /// How text lines look (ignored by JSON and CSV).
    pub text: TextStyle,
    /// Measure, for every record, how long after the kernel stamped it we had applied it.
    pub measure_latency: bool,
    /// Give sockets that predate tracing their owners from `/proc`, under this network
    /// namespace inode (see [`Pipeline::seed_owners`]); `None` skips the scan.
    pub seed_owners: Option<u32>,
}

/// What happened during a watch, for the closing summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Records received from the kernel: transitions and resets (owner facts, accepts and
    /// process exits, are not counted: the kernel's `seen` does not count them either).
    pub received: u64,
    /// Transitions printed.
    pub shown: u64,
    /// Records that could not be decoded (skipped).
    pub undecodable: u64,
    /// Sockets the socket memory (`--max-sockets`) could not follow because it was full,
    /// each counted once.
    pub untracked: u64,
    /// Kernel counters at the end.
    pub kernel: KernelCounters,
    /// Kernel timestamp to applied, when measured.
    pub latency: Option<Latency>,
}

impl std::fmt::Display for Summary {
    /// tcpdump-style: what was seen, shown and lost.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} transitions seen, {} shown, {} lost, {} undecodable",
            self.kernel.seen,
            self.shown,
            self.kernel.lost(),
            self.undecodable
        )?;
        if self.untracked > 0 {
            write!(
                f,
                ", {} sockets untracked (socket table full)",
                self.untracked
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

/// Runs the event log until `stop` resolves, `--count` or `--duration` is reached, or the
/// output closes (`enetstat watch | head`). `counters` is read at the end for the summary.
pub async fn run(
    stream: &mut EventStream,
    opts: &WatchOptions,
    out: &mut impl Write,
    stop: impl Future<Output = ()>,
    counters: impl Fn() -> Result<KernelCounters, ProbeError>,
) -> Result<Summary, WatchError> {
    let mut stop = pin!(stop);
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut sleep = pin!(async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    });
    let mut pipeline = Pipeline::new(opts.max_sockets);
    if let Some(netns) = opts.seed_owners {
        match pipeline.seed_owners(netns) {
            Ok(n) => {
                tracing::debug!("{n} sockets that predate tracing got their owners from /proc");
            }
            Err(e) => {
                tracing::warn!("{e}; sockets that predate tracing show no owner until they act");
            }
        }
    }
    let mut clock = WallClock::new();
    let mut summary = Summary::default();

    // JSON and CSV name each socket's cgroup and container; text has no column for them.
    let mut cgroups = (opts.format != Format::Text).then(cgroup::Paths::new);
    let mut latency = opts.measure_latency.then(Latency::new);
    let renderer = Renderer {
        stream: opts.stream,
        format: opts.format,
        style: &opts.text,
    };
    renderer
        .write_header(out)
        .and_then(|()| out.flush())
        .map_err(WatchError::Output)?;

    loop {
        // Stopping still drains what the ring holds: those transitions happened.
        let mut ending = false;
        tokio::select! {
            r = stream.ready() => r?,
            () = &mut stop => ending = true,
            () = &mut sleep => ending = true,
        }
        clock.refresh();
        let mut io_result = Ok(());
        let mut reached_count = false;
        let mut handle = |bytes: &[u8]| {
            // Transitions and resets, as the kernel's counters count them.
            summary.received += u64::from(!is_owner_fact(bytes));
            if reached_count || io_result.is_err() {
                return;
            }
            let Some(step) = pipeline.feed(bytes, None) else {
                return;
            };
            let Step {
                transition: t,
                context: cx,
            } = step;
            let observed = Observed {
                transition: t,
                owner: cx.owner.as_ref(),
            };
            let wanted = opts.filter.matches(&observed);
            if let Some(latency) = latency.as_mut() {
                latency.record(monotonic_ns().saturating_sub(t.ts_ns));
            }
            if !wanted {
                return;
            }
            let time = clock.wall(t.ts_ns);
            let cgroup = cgroups.as_mut().and_then(|c| c.get(t.cgroup)).map(|c| &**c);
            let line = Line {
                transition: t,
                time,
                owner: cx.owner.as_ref(),
                in_old: cx.in_old,
                end: cx.end,
                cgroup,
            };
            match renderer.write(out, &line, cx.life.as_ref()) {
                Ok(false) => return,
                written => io_result = written.map(drop),
            }
            summary.shown += 1;
            reached_count = opts.count.is_some_and(|n| summary.shown >= n);
        };
        if ending {
            stream.drain_to_end(&mut handle);
        } else {
            stream.drain(&mut handle);
        }
        let flushed = io_result.and_then(|()| out.flush());
        summary.untracked = pipeline.untracked();
        summary.undecodable = pipeline.undecodable;
        match flushed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(WatchError::Output(e)),
        }
        if reached_count || ending {
            break;
        }
    }
    summary.kernel = counters()?;
    summary.latency = latency;
    Ok(summary)
}

//! The snapshot flags: `enetstat [FLAGS]` with no subcommand, netstat's flags.

use std::time::Duration;

use clap::Args;

use crate::format_arg::FormatArg;
use enetstat::{
    daemon::protocol::SnapshotRequest,
    render::Format,
    snapshot::{Continuous, Servers, SnapshotOptions},
    state::TcpState,
    table::{DEFAULT_MAX_CLOSED, DEFAULT_MAX_SOCKETS, Limits},
};

/// `-o` of a snapshot.
const TABLE_FORMATS: FormatArg = FormatArg {
    help: [
        "netstat's columns, for people",
        "One JSON object per snapshot, one line each (NDJSON with -c); see the README",
        "A header, then one line per socket (per refresh with -c)",
    ],
};

#[derive(Debug, Args)]
#[command(next_help_heading = "Snapshot (enetstat with no subcommand)")]
pub struct SnapshotArgs {
    /// TCP sockets (with -u: both; neither: both).
    #[arg(short = 't', long = "tcp")]
    pub tcp: bool,

    /// UDP sockets.
    #[arg(short = 'u', long = "udp")]
    pub udp: bool,

    /// Only servers: listening TCP sockets and unconnected UDP sockets.
    #[arg(short = 'l', long = "listening", conflicts_with = "all")]
    pub listening: bool,

    /// All sockets: servers too (by default they are left out, as netstat does).
    #[arg(short = 'a', long = "all")]
    pub all: bool,

    /// Numbers only: no host, service or user names.
    #[arg(short = 'n', long = "numeric")]
    pub numeric: bool,

    /// PID/Program name of the process holding each socket (from /proc; see all of them as
    /// root). While tracing, a socket no process holds any more shows its last owner, marked *.
    #[arg(short = 'p', long = "program")]
    pub program: bool,

    /// Extended: user, socket inode and socket cookie.
    #[arg(short = 'e', long = "extend")]
    pub extend: bool,

    /// Only IPv4 sockets (v4-mapped IPv6 sockets count as IPv4).
    #[arg(short = '4', long = "ipv4", alias = "inet", conflicts_with = "inet6")]
    pub inet: bool,

    /// Only IPv6 sockets.
    #[arg(short = '6', long = "ipv6", alias = "inet6")]
    pub inet6: bool,

    /// Wide: never truncate addresses.
    #[arg(short = 'w', long = "wide", short_alias = 'W')]
    pub wide: bool,

    /// Trace and refresh this often (default 1s; 500ms, 2s; a bare number is seconds) until
    /// Ctrl-C. Needs root (eBPF):
    /// adds AGE, the time each socket has been in its state (when its change was seen).
    #[arg(
        short = 'c',
        long = "continuous",
        value_name = "DURATION",
        num_args = 0..=1,
        default_missing_value = "1",
        value_parser = crate::duration_arg::parse
    )]
    pub continuous: Option<Duration>,

    /// Only sockets in these states (comma-separated netstat or ss names, e.g.
    /// TIME_WAIT,syn-sent). Implies servers too.
    #[arg(long, value_name = "STATE[,STATE..]", value_delimiter = ',')]
    pub state: Vec<TcpState>,

    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = TABLE_FORMATS, default_value = "text")]
    pub output: Format,

    /// With -c, or through a daemon: also show connections that closed in the last DURATION
    /// (e.g. 10s, 500ms, 5m, 1h), with their lifetimes, marked CLOSED: the ones a poller
    /// never sees.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration_arg::parse)]
    pub recent: Option<Duration>,

    /// With -c: compare the table with the kernel's socket dump this often (1s, 500ms), and
    /// count every correction. The dump also brings what no transition announces: UDP
    /// sockets, queue lengths, and a timewait socket turning from FIN_WAIT2 to TIME_WAIT.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration_arg::parse)]
    pub reconcile: Duration,

    /// With -c: stop after N refreshes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), requires = "continuous")]
    pub refreshes: Option<u64>,

    /// Most live sockets kept in the table; beyond it sockets are counted, not shown.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SOCKETS, hide_short_help = true)]
    pub max_sockets: usize,

    /// Most closed connections remembered for --recent; the oldest go first, counted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLOSED, hide_short_help = true)]
    pub max_closed: usize,

    /// With -c: kernel ring-buffer size (a power of two: 4M, 8M, 16M...), shared by the
    /// per-CPU rings.
    #[arg(long = "ring-size", alias = "trace-ring-size", value_name = "BYTES", default_value = "8M", value_parser = crate::size_arg::parse_size, hide_short_help = true)]
    pub ring_size: u32,
}

impl SnapshotArgs {
    /// The daemon request these flags make (the only flags-to-wire conversion). `header`:
    /// CSV's header line (a client refreshing with `-c` asks for it only the first time).
    pub fn request(&self, header: bool) -> SnapshotRequest {
        let mut protos = Vec::new();
        if self.tcp || !self.udp {
            protos.push("tcp".to_owned());
        }
        if self.udp || !self.tcp {
            protos.push("udp".to_owned());
        }
        SnapshotRequest {
            filter: String::new(),
            recent_ms: self.recent.map(|d| d.as_millis() as u64),
            protos,
            servers: match (self.listening, self.all) {
                (true, _) => Servers::Only,
                (_, true) => Servers::Include,
                _ => Servers::Exclude,
            },
            family: match (self.inet, self.inet6) {
                (true, _) => Some("ipv4".into()),
                (_, true) => Some("ipv6".into()),
                _ => None,
            },
            states: self
                .state
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            format: self.output,
            numeric: self.numeric,
            programs: self.program,
            extend: self.extend,
            wide: self.wide,
            header,
        }
    }

    /// The options a standalone snapshot runs with: the request's, through the conversion the
    /// daemon uses, with this process's table limits. `--recent` keeps the flag's own
    /// duration (the wire carries whole milliseconds).
    pub fn options(&self) -> Result<SnapshotOptions, String> {
        let limits = Limits {
            max_sockets: self.max_sockets,
            max_closed: self.max_closed,
        };
        let opts = self.request(true).options(limits, None)?;
        Ok(SnapshotOptions {
            recent: self.recent,
            ..opts
        })
    }

    /// Whether this snapshot needs the live table (`-c`, `--recent`), which only tracing
    /// (in-process or a daemon's) keeps.
    pub fn needs_tracing(&self) -> bool {
        self.continuous.is_some() || self.recent.is_some()
    }

    pub fn continuous(&self) -> Option<Continuous> {
        self.continuous.map(|interval| Continuous {
            interval,
            reconcile: self.reconcile,
            count: self.refreshes,
        })
    }
}

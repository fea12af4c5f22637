//! The command line, as clap sees it. `--help` is the first documentation users read, so every
//! flag says what it does and what it defaults to.

use std::time::Duration;

use crate::{format_arg::FormatArg, snapshot_args::SnapshotArgs};
use clap::{
    Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum,
    error::ErrorKind, parser::ValueSource,
};
use enetstat::{
    render::Format,
    table::{DEFAULT_MAX_CLOSED, DEFAULT_MAX_SOCKETS},
};

#[derive(Debug, Parser)]
#[command(
    name = "enetstat",
    version,
    about = "netstat rebuilt on eBPF: every TCP state transition, as it happens",
    long_about = "enetstat traces every TCP state transition on this host with an eBPF program on \
the kernel's inet_sock_set_state tracepoint, so it catches the connections that polling tools \
(netstat, ss) miss, shows how long each socket spent in each state, and names the process that \
really owns each socket.\n\nNeeds root (or CAP_BPF and CAP_PERFMON) and a kernel >= 5.8 with BTF.",
    after_help = "Examples:\n  enetstat watch                      every transition, as text\n  \
enetstat watch -o json --port 443   NDJSON, connections to or from port 443\n  \
enetstat watch --count 10 -6        the next ten IPv6 transitions\n  \
enetstat -tanp                      a netstat-style snapshot of every TCP socket, with owners\n  \
enetstat -c 1 --recent 10s          live, with connections closed in the last 10 s"
)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug). ENETSTAT_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The daemon's socket. Client commands (snapshots, watch, life) use a running daemon
    /// through it, and need neither root nor CAP_BPF then (only membership of the socket's
    /// group). Without this flag they use /run/enetstat/enetstat.sock when it exists.
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,

    /// Never use a daemon: load the eBPF programs in this process (root or CAP_BPF and
    /// CAP_PERFMON).
    #[arg(long, global = true, conflicts_with = "socket")]
    pub standalone: bool,

    /// No subcommand: a netstat-style snapshot (see the snapshot flags).
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub snapshot: SnapshotArgs,
}

impl Cli {
    /// Parses the command line. The global flags (`-v`, `--socket`, `--standalone`) go
    /// anywhere; the snapshot flags only without a subcommand, where they mean something.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = Cli::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        if let Some(sub) = matches.subcommand_name() {
            let snapshot = SnapshotArgs::augment_args(clap::Command::new("snapshot"));
            let given = snapshot.get_arguments().find(|a| {
                matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
            });
            if let Some(arg) = given {
                let name = match (arg.get_short(), arg.get_long()) {
                    (Some(s), Some(l)) => format!("-{s}/--{l}"),
                    (None, Some(l)) => format!("--{l}"),
                    (Some(s), None) => format!("-{s}"),
                    (None, None) => arg.get_id().to_string(),
                };
                return Err(cmd.error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "{name} is a snapshot flag (for `enetstat` with no subcommand), not one \
                         of `{sub}`. A subcommand's own flags go after it: `enetstat {sub} \
                         --help` lists them"
                    ),
                ));
            }
        }
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }

    /// [`Cli::try_parse_args`] on this process's arguments; on error, prints it and exits
    /// as clap does.
    pub fn parse_args() -> Cli {
        Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every TCP state transition as it happens, one line each, until Ctrl-C.
    #[command(
        // The limits from their constants, so the help cannot drift from them.
        after_help = format!("Columns: TIME, PID/COMM of the socket's owner (\"-\" when unknown), \
LPORT (LOCAL with -w) and REMOTE endpoints (\"*\" for a port not yet assigned), OLD>NEW \
state, and MS, the milliseconds the socket spent in OLD (blank on the first transition seen \
for a socket), then how the connection ended when it was not an orderly close (refused, \
timeout, reset_received, reset_sent, aborted). The default layout fits 80 columns before that \
ending (ESTABLISHED shows as ESTAB, long names and IPv6 endpoints are shortened with \"…\"); \
-w shows everything.\n\n\
Filter EXPRESSION (ss-like; the words are joined with spaces):\n  \
state NAME | from NAME      the new state (from: the old state) is NAME or in group NAME:\n  \
                            established, syn-sent, ..., connected, synchronized, bucket,\n  \
                            big, opening, teardown, all\n  \
sport|dport|port OP PORT    local/remote/either port; OP: = != < > <= >= (eq ne lt gt le ge);\n  \
                            PORT: 443, :443, :https\n  \
src|dst ADDR                10.0.0.0/8, 10.0.0.1:80, ::1, [::1]:443, [fe80::]/10, *:80\n  \
pid N | comm NAME           the owner; NAME may use * and ? (quote names with spaces)\n  \
family ipv4|ipv6 | netns N | cookie N | cgroup PATH|ID\n  \
and (&&, or just a space), or (||), not (!), ( )\n\
A filter is at most {MAX_LEN} bytes and nests (, not and ! at most {MAX_DEPTH} deep.\n\n\
Examples:\n  enetstat watch\n  enetstat watch 'dport = :443 and (state syn-sent or state \
established) and not dst 10.0.0.0/8'\n  enetstat watch -o json --count 100 > transitions.ndjson\n  \
enetstat watch -o csv --time none state close > closes.csv\n  \
enetstat watch --rport 5432 --duration 60",
        MAX_LEN = enetstat::filter::MAX_LEN,
        MAX_DEPTH = enetstat::filter::MAX_DEPTH,
    ))]
    Watch(WatchArgs),

    /// Print one line per TCP connection when it ends: owner, both ends, lifetime, connect
    /// latency, time in every state in order, bytes, retransmits, RTT, and how it ended.
    #[command(
        after_help = "Takes the same filter EXPRESSION, flags and formats as `watch`; the expression is tested against the connection's closing transition, so `from syn-sent` picks connections that never got established and `dport = :443` those to port 443.

END is one of: normal, refused (RST answered our SYN), timeout (retries ran out), reset_received, reset_sent (e.g. close() with SO_LINGER 0), aborted (closed while connecting).

Examples:
  enetstat life
  enetstat life -o json 'dport = :443' > connections.ndjson
  enetstat life 'from syn-sent'      connections that failed to connect"
    )]
    Life(WatchArgs),

    /// A live full-screen view of who connects to what: per process, remote endpoint and
    /// local port, connections opened, failed and reset per second, connect latency and
    /// bytes, and the live connections with their age in their state. `-b` prints the
    /// refreshes for scripts instead.
    #[command(
        after_help = "Columns (per second over the last interval, except ACT and the latencies): \
ACT live connections; CONN/s connects (active opens); ACPT/s accepted connections (passive \
opens); FAIL/s connects refused or timed out; RSTin/RSTout connections reset by the peer / by \
this host; P50/P99 connect latency (SYN_SENT -> ESTABLISHED); RX/s TX/s bytes moved, by live \
connections (read from the kernel's socket dump each refresh, also through a daemon) and by those \
that closed; CONTAINER (process view, 93 columns or wider) the short id of \
the container the process's sockets are in. PID* is a process that has exited. A row marked ! \
(bold, red with colour) had its failures and resets at least double (to 1/s or more) since the \
interval before.\n\n\
Keys: Tab/Shift-Tab or 1-4 views, s or >/< sort column, r reverse, / filter (the EXPRESSION \
language of `watch`), p pause, ? help, q or Ctrl-C quit.\n\n\
Examples:\n  enetstat top\n  enetstat top 'dport = :443'\n  \
enetstat top -b -n 3 -o json > top.ndjson"
    )]
    Top(TopArgs),

    /// Run the engine as a service: load the programs once, keep the live table, the history
    /// of closed connections and the lifecycles, and serve them to clients on a Unix socket
    /// (and Prometheus metrics with --metrics). Stops on SIGINT or SIGTERM.
    #[command(
        // The limits from their constants, so the help cannot drift from them.
        after_help = format!("The socket (--socket, default /run/enetstat/enetstat.sock) is mode 0660, owner root, \
group --socket-group: its members can run `enetstat`, `enetstat watch` and `enetstat life` without \
root. The protocol (NDJSON) is described in the README.\n\n\
Limits: a subscriber that falls --client-queue events behind, or does not read for {WRITE} s, \
is cut off; a filter is at most {MAX_LEN} bytes and nests (, not and ! at most {MAX_DEPTH} deep; \
a request line is at most {REQUEST} KiB; a metrics request head at most {HEAD} KiB, sent within \
{HTTP} s. Every refusal is counted in `stats` and the metrics.\n\n\
Examples:\n  enetstat daemon --socket-group enetstat\n  \
enetstat daemon --metrics 127.0.0.1:9977 --keep-closed 1h",
        WRITE = enetstat::daemon::limits::WRITE_TIMEOUT.as_secs(),
        MAX_LEN = enetstat::filter::MAX_LEN,
        MAX_DEPTH = enetstat::filter::MAX_DEPTH,
        REQUEST = enetstat::daemon::protocol::MAX_REQUEST / 1024,
        HEAD = enetstat::daemon::http::MAX_HEAD / 1024,
        HTTP = enetstat::daemon::http::CLIENT_TIMEOUT.as_secs(),
    ))]
    Daemon(DaemonArgs),

    /// Write the man pages and shell completions to DIR (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write `man/` and `completions/`.
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Group (name or gid) allowed to use the socket.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off by default), e.g. 127.0.0.1:9977.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Kernel ring-buffer size (a power of two: 4M, 8M, 16M...), shared equally by the
    /// per-CPU rings. 8M rides out the heaviest churn a 2-core host makes (280k events/s)
    /// without loss; it is mapped twice, so it counts twice in RSS once used.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = crate::size_arg::parse_size)]
    pub ring_size: u32,

    /// Compare the table with the kernel's socket dump this often (and refresh the metrics'
    /// gauges): 500ms, 2s, 1m; a bare number is seconds. A costly dump (tens of thousands of
    /// TIME_WAIT sockets under churn) waits longer: at least 50 times what the last one took,
    /// so reconciling stays under 2% of a core.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration_arg::parse)]
    pub reconcile: Duration,

    /// Keep closed connections this long, for `enetstat --recent` (e.g. 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::duration_arg::parse)]
    pub keep_closed: Duration,

    /// Most live sockets in the table (and sockets followed for durations and lifecycles).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SOCKETS)]
    pub max_sockets: usize,

    /// Most closed connections remembered.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLOSED)]
    pub max_closed: usize,

    /// Most events waiting for one subscriber; one that falls further behind is cut off with
    /// "lagged: N events dropped".
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub client_queue: usize,

    /// Most Unix-socket clients served at once; one more gets "too many clients" and is
    /// closed (counted as clients_refused in `stats`). The daemon raises its open-file limit
    /// to the hard limit at start, and lowers this (saying so) if even that is too small.
    #[arg(long, value_name = "N", default_value_t = enetstat::daemon::limits::DEFAULT_MAX_CLIENTS,
          value_parser = at_least_one)]
    pub max_clients: usize,

    /// Most subscribers (`watch`, `life`) served at once, among those clients; one more gets
    /// "too many subscribers" (subscribers_refused in `stats`).
    #[arg(long, value_name = "N", default_value_t = enetstat::daemon::limits::DEFAULT_MAX_SUBSCRIBERS,
          value_parser = at_least_one)]
    pub max_subscribers: usize,

    /// Most metrics connections at once; one more gets HTTP 503 (metrics_connections_refused
    /// in `stats`). Each may take 10 s and send a 16 KiB request head at most.
    #[arg(long, value_name = "N", default_value_t = enetstat::daemon::limits::DEFAULT_MAX_METRICS_CONNECTIONS,
          value_parser = at_least_one)]
    pub max_metrics_connections: usize,

    /// Filter work per second all subscribers share, in units of one condition tested per
    /// event; a subscriber whose filter does more than its share (this divided among the
    /// subscribers, checked every --reconcile) is cut off, so it slows nobody else down.
    #[arg(long, value_name = "UNITS", default_value_t = enetstat::daemon::engine::DEFAULT_FILTER_BUDGET,
          hide_short_help = true)]
    pub filter_budget: u64,

    /// How long (microseconds) a record may wait in the ring before the daemon reads it; under
    /// a flood (256k events/s or more) up to 16 times as long, for fewer, larger reads.
    #[arg(
        long,
        value_name = "USECS",
        default_value_t = 250,
        hide_short_help = true
    )]
    pub wakeup_us: u64,

    /// Keep every capability (by default the daemon drops all but CAP_SYS_PTRACE and
    /// CAP_DAC_READ_SEARCH, which `-p` needs, once its programs are attached).
    #[arg(long)]
    pub keep_capabilities: bool,

    /// Run as this user (name or uid), with its groups, instead of root. The daemon switches
    /// before it loads its programs and keeps only the capabilities it needs; the socket
    /// stays owned by root. The user must be able to remove the socket: the default
    /// directory, or one the daemon makes, is given to it.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Also write every transition to PATH as NDJSON (the objects `watch -o json` prints), from
    /// a thread of its own: a slow disk never holds the daemon up (what does not fit in its
    /// queue is counted as dropped, see `stats`).
    #[arg(long, value_name = "PATH")]
    pub event_log: Option<std::path::PathBuf>,

    /// Rotate the event log when it reaches this size (PATH -> PATH.1 -> ...).
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = crate::size_arg::parse_log_size)]
    pub event_log_size: u64,

    /// Rotated event logs kept.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub event_log_keep: u32,
}

/// A count of at least one.
fn at_least_one(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
}

/// `-o` of `watch` and `life`.
pub const WATCH_FORMATS: FormatArg = FormatArg {
    help: [
        "Aligned columns for people",
        "One JSON object per line (NDJSON) for scripts; see the README for the schema",
        "A header row, then one row per line; the columns are the JSON fields",
    ],
};

/// What the TIME column shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TimeArg {
    /// Time of day (local time; UTC with --utc).
    Wall,
    /// Seconds since enetstat started tracing.
    Relative,
    /// No TIME column.
    None,
}

/// Batch output of `top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TopOutput {
    /// The view's table, as the screen shows it, after a title and the totals.
    Text,
    /// One JSON object per refresh, with every view; see the README for the schema.
    Json,
}

/// The view `top` starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TopView {
    /// By process (pid and name).
    Processes,
    /// By remote endpoint.
    Remotes,
    /// By local (service) port.
    Ports,
    /// The live connections.
    Connections,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Count only connections matching this filter expression (the language of `watch`;
    /// `/` changes it while top runs).
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

    /// Time between refreshes: 1, 0.5, 2s, 500ms; a bare number is seconds.
    #[arg(short, long, value_name = "SECS", default_value = "1", value_parser = crate::duration_arg::parse)]
    pub delay: Duration,

    /// Batch mode: print each refresh (see -o) instead of drawing on the terminal.
    #[arg(short, long)]
    pub batch: bool,

    /// Exit after N refreshes.
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,

    /// Batch output format.
    #[arg(short, long, value_enum, default_value_t = TopOutput::Text, requires = "batch")]
    pub output: TopOutput,

    /// Show addresses and ports as numbers (no host or service name lookups).
    #[arg(long)]
    pub numeric: bool,

    /// The view to start with (and the one batch text prints).
    #[arg(long, value_enum, default_value_t = TopView::Processes)]
    pub view: TopView,

    /// Kernel ring-buffer size, tracing in this process (a power of two: 4M, 8M, 16M...),
    /// shared equally by the per-CPU rings.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = crate::size_arg::parse_size)]
    pub ring_size: u32,

    /// Most sockets followed for owners, durations and the live table.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SOCKETS, hide_short_help = true)]
    pub max_sockets: usize,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Show only transitions matching this filter expression (see below), e.g.
    /// 'dport = :443 and state established'. Combined with -4/-6/--lport/--rport/--port by AND.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

    /// Output format.
    #[arg(short, long, value_parser = WATCH_FORMATS, default_value = "text")]
    pub output: Format,

    /// `watch` text output: the full layout (microsecond times, both full endpoints, whole
    /// names) instead of the one that fits 80 columns. (`life` lines are always full; it
    /// refuses -w.)
    #[arg(short, long)]
    pub wide: bool,

    /// `watch` text output: what the TIME column shows. JSON and CSV always carry `time` and
    /// `ts_ns`. (`life` text has no TIME column; it refuses --time.)
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = TimeArg::Wall)]
    pub time: TimeArg,

    /// Exit after printing N lines: N transitions for `watch`, N connections for `life`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Exit after this long: 500ms, 2s, 5m, 1h; a bare number is seconds.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration_arg::parse)]
    pub duration: Option<Duration>,

    /// Only IPv4 sockets (v4-mapped IPv6 sockets count as IPv4).
    #[arg(short = '4', long = "ipv4", alias = "inet", conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Only IPv6 sockets.
    #[arg(short = '6', long = "ipv6", alias = "inet6")]
    pub ipv6: bool,

    /// Only sockets whose local port is one of these (comma-separated).
    #[arg(long, value_name = "PORT[,PORT..]", value_delimiter = ',', value_parser = parse_port)]
    pub lport: Vec<u16>,

    /// Only sockets whose remote port is one of these (comma-separated).
    #[arg(long, value_name = "PORT[,PORT..]", value_delimiter = ',', value_parser = parse_port)]
    pub rport: Vec<u16>,

    /// Only sockets with either port one of these (comma-separated).
    #[arg(long, value_name = "PORT[,PORT..]", value_delimiter = ',', value_parser = parse_port)]
    pub port: Vec<u16>,

    /// Print times in UTC instead of local time (text output; JSON and CSV are always UTC).
    #[arg(long)]
    pub utc: bool,

    /// Kernel ring-buffer size (a power of two: 4M, 8M, 16M...), shared equally by the
    /// per-CPU rings. Larger rides out longer bursts; every record lost to a full ring is
    /// counted and reported.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = crate::size_arg::parse_size)]
    pub ring_size: u32,

    /// Most sockets remembered for durations and owners; beyond it sockets are counted as
    /// untracked and shown without MS and owner.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SOCKETS)]
    pub max_sockets: usize,

    /// How long (microseconds) a record may wait in the ring before enetstat reads it; under a
    /// flood (256k events/s or more) up to 16 times as long, for fewer, larger reads. Lower is
    /// fresher, higher costs the traced host less under heavy load; 0 wakes enetstat on every
    /// event.
    #[arg(
        long,
        value_name = "USECS",
        default_value_t = 250,
        hide_short_help = true
    )]
    pub wakeup_us: u64,

    /// At exit, write counters and event latency (kernel timestamp to applied, p50/p99/max in
    /// microseconds) as JSON to PATH. For benchmarks.
    #[arg(long, value_name = "PATH", hide = true)]
    pub stats_json: Option<std::path::PathBuf>,
}

impl WatchArgs {
    /// The defaults of `--ring-size` and `--wakeup-us`.
    pub fn tracing_defaults() -> (u32, u64) {
        (8 << 20, 250)
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a port number (1-65535)")),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_seconds() {
        assert_eq!(parse_port("443"), Ok(443));
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn comma_separated_ports() {
        let cli = Cli::try_parse_args(["enetstat", "watch", "--lport", "80,443", "-4"]).unwrap();
        let Some(Command::Watch(w)) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(w.lport, vec![80, 443]);
        assert!(w.ipv4);
        assert!(Cli::try_parse_args(["enetstat", "watch", "-4", "-6"]).is_err());
    }

    /// One spelling per flag in every command; the old ones still parse, unlisted.
    #[test]
    fn one_spelling_per_flag_with_the_old_ones_as_hidden_aliases() {
        for args in [
            &["enetstat", "-tn", "--ipv4"][..],
            &["enetstat", "-tn", "--inet"],
            &["enetstat", "-tn", "-4"],
        ] {
            let cli = Cli::try_parse_args(args).unwrap();
            assert!(cli.snapshot.inet && !cli.snapshot.inet6, "{args:?}");
        }
        for args in [
            &["enetstat", "watch", "--ipv6"][..],
            &["enetstat", "watch", "--inet6"],
            &["enetstat", "life", "-6"],
        ] {
            let cli = Cli::try_parse_args(args).unwrap();
            let Some(Command::Watch(w) | Command::Life(w)) = cli.command else {
                panic!("{args:?}")
            };
            assert!(w.ipv6 && !w.ipv4, "{args:?}");
        }
        for flag in ["--ring-size", "--trace-ring-size"] {
            let cli = Cli::try_parse_args(["enetstat", "-tn", "-c", "1", flag, "16M"]).unwrap();
            assert_eq!(cli.snapshot.ring_size, 16 << 20, "{flag}");
        }
        let cli = Cli::try_parse_args(["enetstat", "watch", "--ring-size", "16M"]).unwrap();
        let Some(Command::Watch(w)) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(w.ring_size, 16 << 20);
        // The help lists one spelling.
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let help = cmd.render_long_help().to_string();
        assert!(
            help.contains("--ipv4") && !help.contains("--inet"),
            "{help}"
        );
        assert!(!help.contains("--trace-ring-size"), "{help}");
    }

    #[test]
    fn global_flags_go_anywhere_and_snapshot_flags_only_without_a_subcommand() {
        for args in [
            &["enetstat", "-v", "--socket", "/s", "watch"][..],
            &["enetstat", "watch", "-v", "--socket", "/s"],
            &["enetstat", "--socket", "/s", "watch", "-v"],
        ] {
            let cli = Cli::try_parse_args(args).unwrap();
            assert_eq!(cli.verbose, 1, "{args:?}");
            assert_eq!(cli.socket.as_deref(), Some(std::path::Path::new("/s")));
            assert!(matches!(cli.command, Some(Command::Watch(_))));
        }
        let cli = Cli::try_parse_args(["enetstat", "--standalone", "-tan"]).unwrap();
        assert!(cli.standalone && cli.snapshot.tcp && cli.command.is_none());
        let err = Cli::try_parse_args(["enetstat", "-t", "watch"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let text = err.to_string();
        assert!(
            text.contains("-t/--tcp is a snapshot flag") && text.contains("enetstat watch --help"),
            "{text}"
        );
        assert!(Cli::try_parse_args(["enetstat", "-o", "json", "life"]).is_err());
    }

    #[test]
    fn expression_words_formats_and_times() {
        let cli = Cli::try_parse_args([
            "enetstat",
            "watch",
            "-o",
            "csv",
            "dport",
            "=",
            ":443",
            "--time",
            "relative",
            "-w",
            "state",
            "established",
        ])
        .unwrap();
        let Some(Command::Watch(w)) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(w.expression, ["dport", "=", ":443", "state", "established"]);
        assert_eq!(w.output, Format::Csv);
        assert_eq!(w.time, TimeArg::Relative);
        assert!(w.wide);
        let cli = Cli::try_parse_args(["enetstat", "watch"]).unwrap();
        let Some(Command::Watch(w)) = cli.command else {
            panic!("not watch")
        };
        assert!(w.expression.is_empty());
        assert_eq!(
            (w.output, w.time, w.wide),
            (Format::Text, TimeArg::Wall, false)
        );
    }
}

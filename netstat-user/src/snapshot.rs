//! `enetstat` without a subcommand: netstat-shaped snapshots of the socket table.
//!
//! One-shot: one socket dump and one `/proc` scan, no eBPF (so no root needed beyond what
//! `/proc` shows). Continuous (`-c`): the probe runs, the [`Table`] is kept live by
//! transitions and reconciled against a dump every `reconcile` interval, and every refresh
//! renders the table: AGE for sockets whose state change was seen, and with `--recent` the
//! connections that closed in that window.

use std::{
    future::Future,
    io::{self, Write},
    pin::pin,
    sync::Arc,
    time::Duration,
};

use chrono::{SecondsFormat, Utc};

use crate::{
    cgroup,
    clock::monotonic_ns,
    event::{Cookie, Endpoint, Owner},
    live::{Live, Status},
    mem,
    pids::SocketOwners,
    probe::{KernelCounters, ProbeError},
    render::{
        Format,
        snapshot::{
            ClosedInfo, Row, ShownOwner, csv as snapshot_csv,
            json::{self as snapshot_json, JsonSnapshot, JsonSocket},
            text::{self as netstat, Columns, TextRow},
        },
    },
    resolve::Resolver,
    sockdiag::{self, Proto, SockDiagError},
    source::RecordSource,
    table::{Entry, Table},
};

use netstat_core::table::select::shown_live;
pub use netstat_core::{
    snapshot::SnapshotOptions,
    table::select::{Matcher, Selection, Servers, is_server},
};

/// How often a continuous snapshot refreshes and reconciles.
#[derive(Clone, Copy, Debug)]
pub struct Continuous {
    pub interval: Duration,
    pub reconcile: Duration,
    /// Stop after this many refreshes.
    pub count: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    SockDiag(#[from] SockDiagError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

/// Everything a renderer needs besides the table.
struct View<'a> {
    opts: &'a SnapshotOptions,
    owners: &'a SocketOwners,
    names: &'a mut Names,
    now_ns: u64,
    tracing: bool,
}

impl<'a> View<'a> {
    fn new(
        opts: &'a SnapshotOptions,
        owners: &'a SocketOwners,
        names: &'a mut Names,
        now_ns: u64,
        tracing: bool,
    ) -> Self {
        Self {
            opts,
            owners,
            names,
            now_ns,
            tracing,
        }
    }
}

/// Where numbers get their names: hosts and services, users, cgroups. Cached per snapshot
/// (or, with `-c`, for the whole run).
struct Names {
    resolver: Resolver,
    users: Users,
    cgroups: cgroup::Paths,
}

impl Names {
    /// Looks names up, spending at most `budget` on host names.
    fn new(budget: Duration) -> Self {
        Self {
            resolver: Resolver::new(budget),
            users: Users::default(),
            cgroups: cgroup::Paths::new(),
        }
    }

    /// Looks nothing up (for callers that only pick rows).
    fn none() -> Self {
        Self {
            resolver: Resolver::new(Duration::ZERO),
            users: Users::default(),
            cgroups: cgroup::Paths::empty(),
        }
    }
}

/// Prints one snapshot from a single socket dump: no eBPF.
pub fn once(opts: &SnapshotOptions, out: &mut impl Write) -> Result<(), SnapshotError> {
    let started = monotonic_ns();
    let mut table = Table::new(opts.limits, crate::netns::own_netns());
    // The dump goes straight into the table: no list of every socket next to it.
    table.seed_with(started, |sink| {
        sockdiag::dump_each(&opts.select.protos, sink)
    })?;
    let owners = if opts.programs {
        SocketOwners::scan()
    } else {
        SocketOwners::new()
    };
    let mut names = Names::new(opts.resolve_budget);
    let mut view = View::new(opts, &owners, &mut names, monotonic_ns(), false);
    render(&mut view, &mut table, None, out, true).map_err(SnapshotError::Output)?;
    out.flush().map_err(SnapshotError::Output)
}

/// Keeps the table live from `stream` and prints a snapshot every interval until `stop`
/// resolves, the count is reached, or the output closes.
pub async fn continuous(
    stream: &mut impl RecordSource,
    opts: &SnapshotOptions,
    cont: Continuous,
    out: &mut impl Write,
    stop: impl Future<Output = ()>,
    counters: impl Fn() -> Result<KernelCounters, ProbeError>,
) -> Result<Status, SnapshotError> {
    let mut stop = pin!(stop);
    // The daemon's live table, kept the same way; its owners come from the pipeline `watch`
    // uses. Every record is handled, however many: each refresh must follow them all.
    let mut live = Live::new(opts.limits, opts.limits.max_sockets);
    live.seed(stream, &mut ())?;
    mem::trim();
    let mut last_reconcile = tokio::time::Instant::now();

    let mut owners = SocketOwners::new();
    let mut names = Names::new(opts.resolve_budget);
    let mut tick = tokio::time::interval(cont.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    let mut first = true;
    let mut status = Status::default();

    loop {
        tokio::select! {
            r = stream.ready() => {
                r?;
                live.catch_up(stream, &mut ());
                continue;
            }
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        live.catch_up(stream, &mut ());
        if last_reconcile.elapsed() >= cont.reconcile {
            live.reconcile(stream, &mut ())?;
            last_reconcile = tokio::time::Instant::now();
        }
        if opts.programs {
            owners.refresh();
        }
        let now_ns = monotonic_ns();
        // Keep what --recent may show, and no more.
        live.expire_closed(now_ns, opts.recent.unwrap_or(Duration::ZERO));
        status = live.status(counters()?);
        let mut view = View::new(opts, &owners, &mut names, now_ns, true);
        let written = render(&mut view, &mut live.table, Some(&status), out, first)
            .and_then(|()| out.flush());
        first = false;
        // A refresh's transient memory (the sorted list, names) goes back to the system.
        mem::trim();
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(SnapshotError::Output(e)),
        }
        shown += 1;
        if cont.count.is_some_and(|n| shown >= n) {
            break;
        }
    }
    Ok(status)
}

/// The process a live socket's row names: the holder a `/proc` scan found, else (while
/// tracing) the last owner transitions showed.
fn shown_owner(view: &View<'_>, e: &Entry) -> Option<ShownOwner> {
    match (view.owners.get(e.inode()), &e.owner) {
        (Some(o), _) => Some(ShownOwner {
            pid: o.pid,
            comm: o.comm.to_string(),
            holds: true,
        }),
        (None, Some(o)) if view.tracing => Some(ShownOwner {
            pid: o.pid,
            comm: o.comm.to_string(),
            holds: false,
        }),
        _ => None,
    }
}

/// Who a `/proc` scan found holding the shown sockets, to remember in the table.
fn holders(view: &View<'_>, live: &[&Entry]) -> Vec<(Cookie, Owner)> {
    if view.owners.is_empty() {
        return Vec::new();
    }
    live.iter()
        .filter_map(|e| Some((e.cookie, view.owners.get(e.inode())?.clone())))
        .collect()
}

/// The closed connections `--recent` shows, oldest first.
fn closed_rows<'t>(view: &View<'_>, table: &'t Table) -> impl Iterator<Item = Row> + 't {
    let opts = view.opts;
    let netns = table.netns();
    let now_ns = view.now_ns;
    let recent = opts.recent.filter(|_| view.tracing);
    let since = recent.map_or(u64::MAX, |r| now_ns.saturating_sub(r.as_nanos() as u64));
    let select = opts.select.clone();
    table
        .history()
        .since(since)
        .filter(move |c| recent.is_some() && select.matches_closed(&c.entry))
        .map(move |c| {
            let owner = c.entry.owner.as_ref().map(|o| ShownOwner {
                pid: o.pid,
                comm: o.comm.to_string(),
                holds: false,
            });
            let closed = ClosedInfo {
                lifetime: c.lifetime(),
                ago: Duration::from_nanos(now_ns.saturating_sub(c.closed_ns)),
                last_state: c.last_state,
                errno: c.fin.map_or(0, |f| f.errno),
            };
            row(&c.entry, netns, owner, None, Some(closed))
        })
}

/// The rows of a snapshot, sorted as shown: live sockets, then closed connections.
fn rows(view: &View<'_>, table: &mut Table) -> Vec<Row> {
    let live = shown_live(&view.opts.select, table);
    let holders = holders(view, &live);
    let mut rows: Vec<Row> = live
        .iter()
        .map(|e| {
            row(
                e,
                table.netns(),
                shown_owner(view, e),
                e.age_ns(view.now_ns).map(Duration::from_nanos),
                None,
            )
        })
        .collect();
    drop(live);
    for (cookie, owner) in holders {
        table.set_owner(cookie, &owner);
    }
    rows.extend(closed_rows(view, table));
    rows
}

fn row(
    e: &Entry,
    netns: Option<u32>,
    owner: Option<ShownOwner>,
    age: Option<Duration>,
    closed: Option<ClosedInfo>,
) -> Row {
    Row {
        proto: e.proto,
        family: e.family,
        local_addr: e.local.addr,
        local_port: e.local.port,
        remote_addr: e.remote.addr,
        remote_port: e.remote.port,
        state: e.state,
        recv_q: e.recv_q,
        send_q: e.send_q,
        owner,
        uid: e.uid(),
        inode: e.inode(),
        cookie: e.cookie,
        netns,
        cgroup: e.cgroup(),
        age,
        closed,
    }
}

fn render(
    view: &mut View<'_>,
    table: &mut Table,
    status: Option<&Status>,
    out: &mut impl Write,
    first: bool,
) -> io::Result<()> {
    if view.opts.format == Format::Text && view.opts.numeric {
        return write_text_streaming(view, table, status, out);
    }
    let rows = rows(view, table);
    render_rows(view, &rows, status, out, first)
}

/// A numeric text snapshot written as the table is walked: one row at a time, no list of
/// rows, no string per cell. Shows exactly what [`rows`] and [`write_text`] show.
fn write_text_streaming(
    view: &mut View<'_>,
    table: &mut Table,
    status: Option<&Status>,
    out: &mut impl Write,
) -> io::Result<()> {
    let opts = view.opts;
    let cols = columns(view);
    netstat::write_title(out, opts.select.title())?;
    netstat::write_header(out, cols)?;
    let mut text = TextBuffers::default();
    let mut orphans = false;
    let live = shown_live(&opts.select, table);
    let holders = holders(view, &live);
    for e in &live {
        let r = row(
            e,
            table.netns(),
            shown_owner(view, e),
            e.age_ns(view.now_ns).map(Duration::from_nanos),
            None,
        );
        orphans |= r.owner.as_ref().is_some_and(|o| !o.holds);
        write_text_row(view, &r, cols, &mut text, out)?;
    }
    drop(live);
    for (cookie, owner) in holders {
        table.set_owner(cookie, &owner);
    }
    for r in closed_rows(view, table) {
        orphans |= r.owner.as_ref().is_some_and(|o| !o.holds);
        write_text_row(view, &r, cols, &mut text, out)?;
    }
    write_text_footer(opts, orphans, status, out)
}

/// Reused between rows, so rendering a row allocates nothing.
#[derive(Default)]
struct TextBuffers {
    local: String,
    remote: String,
    user: String,
    cgroup: String,
    line: String,
}

fn columns(view: &View<'_>) -> Columns {
    Columns {
        extend: view.opts.extend,
        programs: view.opts.programs,
        age: view.tracing,
        wide: view.opts.wide,
    }
}

fn write_text_row(
    view: &mut View<'_>,
    r: &Row,
    cols: Columns,
    text: &mut TextBuffers,
    out: &mut impl Write,
) -> io::Result<()> {
    let opts = view.opts;
    if opts.numeric {
        netstat::numeric_address(&mut text.local, r.local_addr, r.local_port, opts.wide);
        netstat::numeric_address(&mut text.remote, r.remote_addr, r.remote_port, opts.wide);
    } else {
        let local = Endpoint {
            addr: r.local_addr,
            port: r.local_port,
        };
        let remote = Endpoint {
            addr: r.remote_addr,
            port: r.remote_port,
        };
        text.local = endpoint_text(view, r.proto, local);
        text.remote = endpoint_text(view, r.proto, remote);
    }
    text.user.clear();
    text.cgroup.clear();
    if cols.extend {
        match r.uid {
            Some(uid) if opts.numeric => {
                use std::fmt::Write as _;
                let _ = write!(text.user, "{uid}");
            }
            Some(uid) => text.user.push_str(view.names.users.name(uid)),
            None => text.user.push('-'),
        }
        match view.names.cgroups.get(r.cgroup) {
            Some(c) => match &c.container {
                Some(container) => text.cgroup.push_str(&container.short()),
                None => text
                    .cgroup
                    .push_str(&crate::render::escape::escape_comm(&c.path)),
            },
            None => text.cgroup.push('-'),
        }
    }
    let cells = TextRow {
        row: r,
        local: &text.local,
        remote: &text.remote,
        user: &text.user,
        cgroup: &text.cgroup,
    };
    netstat::row_line(&mut text.line, &cells, cols);
    out.write_all(text.line.as_bytes())
}

/// The rows of a snapshot of a table someone else keeps live (the daemon), picked while the
/// caller holds the table; render them later with [`render_traced`], so name lookups never
/// hold the table up.
pub fn traced_rows(
    opts: &SnapshotOptions,
    table: &mut Table,
    owners: &SocketOwners,
    now_ns: u64,
) -> Vec<Row> {
    let mut names = Names::none();
    let view = View::new(opts, owners, &mut names, now_ns, true);
    rows(&view, table)
}

/// Renders rows from [`traced_rows`] exactly as a refresh of `enetstat -c` shows them.
pub fn render_traced(
    opts: &SnapshotOptions,
    rows: &[Row],
    status: &Status,
    out: &mut impl Write,
    first: bool,
) -> io::Result<()> {
    let owners = SocketOwners::new();
    let mut names = Names::new(opts.resolve_budget);
    let mut view = View::new(opts, &owners, &mut names, monotonic_ns(), true);
    render_rows(&mut view, rows, Some(status), out, first)
}

fn render_rows(
    view: &mut View<'_>,
    rows: &[Row],
    status: Option<&Status>,
    out: &mut impl Write,
    first: bool,
) -> io::Result<()> {
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let cgroups = match view.opts.format {
        Format::Json | Format::Csv => cgroups_of(&mut view.names.cgroups, rows),
        Format::Text => std::collections::HashMap::default(),
    };
    match view.opts.format {
        Format::Json => snapshot_json::write_json(
            out,
            &JsonSnapshot {
                time,
                tracing: view.tracing,
                sockets: rows
                    .iter()
                    .map(|r| JsonSocket::new(r, cgroups.get(&r.cgroup).map(|c| &**c)))
                    .collect(),
                counters: status,
            },
        ),
        Format::Csv => {
            if first {
                snapshot_csv::write_csv_header(out)?;
            }
            for r in rows {
                let cgroup = cgroups.get(&r.cgroup).map(|c| &**c);
                snapshot_csv::write_csv_row(out, &time, r, cgroup)?;
            }
            Ok(())
        }
        Format::Text => write_text(view, rows, status, out),
    }
}

/// What the rows' cgroups name, looked up once per cgroup.
fn cgroups_of(
    paths: &mut cgroup::Paths,
    rows: &[Row],
) -> std::collections::HashMap<u64, Arc<cgroup::Cgroup>> {
    let mut named = std::collections::HashMap::new();
    for r in rows {
        if !named.contains_key(&r.cgroup)
            && let Some(c) = paths.get(r.cgroup)
        {
            named.insert(r.cgroup, Arc::clone(c));
        }
    }
    named
}

fn write_text(
    view: &mut View<'_>,
    rows: &[Row],
    status: Option<&Status>,
    out: &mut impl Write,
) -> io::Result<()> {
    let opts = view.opts;
    if !opts.numeric {
        view.names.resolver.prepare(
            rows.iter().flat_map(|r| [r.local_addr, r.remote_addr]),
            rows.iter().flat_map(|r| {
                [r.local_port, r.remote_port]
                    .into_iter()
                    .flatten()
                    .map(|p| (p, r.proto))
            }),
        );
    }
    let cols = columns(view);
    netstat::write_title(out, opts.select.title())?;
    netstat::write_header(out, cols)?;
    let mut text = TextBuffers::default();
    let mut orphans = false;
    for r in rows {
        orphans |= r.owner.as_ref().is_some_and(|o| !o.holds);
        write_text_row(view, r, cols, &mut text, out)?;
    }
    write_text_footer(opts, orphans, status, out)
}

fn write_text_footer(
    opts: &SnapshotOptions,
    orphans: bool,
    status: Option<&Status>,
    out: &mut impl Write,
) -> io::Result<()> {
    if opts.programs && orphans {
        writeln!(
            out,
            "* the process that last owned the socket; none holds it now (orphaned or closed)"
        )?;
    }
    if let Some(s) = status {
        let c = s.table.corrections;
        let mut line = format!(
            "-- tracing: {} transitions, {} lost (ring buffer full), {} corrections by \
             reconciliation ({} added, {} removed, {} state) in {} dumps",
            s.table.transitions,
            s.lost,
            c.total(),
            c.added,
            c.removed,
            c.state,
            s.table.reconciliations
        );
        if s.table.socket_overflow > 0 || s.table.history_overflow > 0 {
            line.push_str(&format!(
                "; over the caps: {} sockets not tracked (raise --max-sockets), {} closed \
                 connections forgotten (raise --max-closed)",
                s.table.socket_overflow, s.table.history_overflow
            ));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn endpoint_text(view: &View<'_>, proto: Proto, e: Endpoint) -> String {
    let numeric = view.opts.numeric;
    let host = match view.names.resolver.host(e.addr) {
        Some(name) if !numeric => name.to_owned(),
        _ => e.addr.to_string(),
    };
    let port = match e.port {
        None => "*".to_owned(),
        Some(p) => match view.names.resolver.service(p, proto) {
            Some(name) if !numeric => name.to_owned(),
            _ => p.to_string(),
        },
    };
    netstat::address(&host, &port, view.opts.wide)
}

/// User names by uid, from the system's user database, cached.
#[derive(Debug, Default)]
struct Users {
    names: std::collections::HashMap<u32, String>,
}

impl Users {
    fn name(&mut self, uid: u32) -> &str {
        self.names
            .entry(uid)
            .or_insert_with(|| user_name(uid).unwrap_or_else(|| uid.to_string()))
    }
}

fn user_name(uid: u32) -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    Some(user.name).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::{event::Family, sockdiag::DiagSocket, state::TcpState, table::Limits};

    fn d(cookie: u64, proto: Proto, state: TcpState, inode: u64) -> DiagSocket {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        DiagSocket {
            proto,
            cookie: Cookie(cookie),
            family: Family::Ipv4,
            local: Endpoint::new(lo, 1000 + cookie as u16),
            remote: Endpoint::new(lo, if state == TcpState::Listen { 0 } else { 80 }),
            state,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            inode,
            cgroup: 0,
            bytes: None,
        }
    }

    fn text_of(opts: &SnapshotOptions, dump: &[DiagSocket]) -> String {
        let mut table = Table::new(Limits::default(), None);
        table
            .seed_with(0, |sink| {
                dump.iter().cloned().for_each(sink);
                Ok::<(), ()>(())
            })
            .unwrap();
        let owners = SocketOwners::new();
        let mut names = Names::new(Duration::ZERO);
        let mut view = View::new(opts, &owners, &mut names, 0, false);
        let mut out = Vec::new();
        render(&mut view, &mut table, None, &mut out, true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_leaves_servers_out_like_netstat() {
        let dump = [
            d(1, Proto::Tcp, TcpState::Listen, 1),
            d(2, Proto::Tcp, TcpState::Established, 2),
            d(3, Proto::Udp, TcpState::Close, 3),
            d(4, Proto::Tcp, TcpState::TimeWait, 0),
        ];
        let opts = SnapshotOptions {
            numeric: true,
            ..SnapshotOptions::default()
        };
        let text = text_of(&opts, &dump);
        assert_eq!(
            text,
            "Active Internet connections (w/o servers)\n\
             Proto Recv-Q Send-Q Local Address           Foreign Address         State\n\
             tcp        0      0 127.0.0.1:1002          127.0.0.1:80            ESTABLISHED\n\
             tcp        0      0 127.0.0.1:1004          127.0.0.1:80            TIME_WAIT\n"
        );
        let mut opts = opts;
        opts.select.servers = Servers::Only;
        let text = text_of(&opts, &dump);
        assert!(text.contains("(only servers)"));
        assert!(text.contains("127.0.0.1:1001          127.0.0.1:*             LISTEN"));
        assert!(text.contains("udp        0      0 127.0.0.1:1003"));
        assert_eq!(text.lines().count(), 4);
        opts.select.servers = Servers::Include;
        opts.select.protos = vec![Proto::Udp];
        assert_eq!(text_of(&opts, &dump).lines().count(), 3);
        opts.select.protos = vec![Proto::Tcp, Proto::Udp];
        opts.select.states = vec![TcpState::TimeWait];
        let text = text_of(&opts, &dump);
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains("TIME_WAIT"));
    }

    #[test]
    fn json_snapshot_is_one_line_with_every_socket() {
        let dump = [
            d(1, Proto::Tcp, TcpState::Listen, 1),
            d(2, Proto::Tcp, TcpState::Established, 2),
        ];
        let mut opts = SnapshotOptions {
            format: Format::Json,
            ..SnapshotOptions::default()
        };
        opts.select.servers = Servers::Include;
        opts.select.extra = Some(Arc::new(|e: &Entry| e.state == TcpState::Listen));
        let text = text_of(&opts, &dump);
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["tracing"], false);
        assert_eq!(v["sockets"].as_array().unwrap().len(), 1);
        assert_eq!(v["sockets"][0]["state"], "LISTEN");
        assert_eq!(v["sockets"][0]["local_port"], 1001);
    }
}

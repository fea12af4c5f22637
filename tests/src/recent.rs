//! `-c --recent -o json` in any mode: a connection that closed while tracing shows as closed,
//! both ends, with its lifetime and last owner; the live listener, whose CLOSE>LISTEN was
//! traced, is one row once the kernel's socket dump has it (its inode), with its AGE (from the
//! transition) and its holder, so the traced socket and the dumped one are joined. One
//! definition for the host suite (each mode forced, in a namespace) and the kernel matrix
//! (each kernel's own mode).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scenario::Child;
use crate::{enetstat_bin, peer_bin};

/// Runs `enetstat --standalone -tanpe -o json -c 200ms --recent 60s` (with `env`), a listener
/// on 127.0.0.1:`port` and one connection to it that closes, every program started through
/// `command` (in a namespace, or not), and checks the snapshots; `mode` names the case in
/// messages.
///
/// # Panics
///
/// When a snapshot never shows both closed ends and the joined listener, or shows them wrong.
pub fn continuous_shows_closed_and_live(
    mode: &str,
    port: u16,
    command: &dyn Fn(PathBuf) -> Command,
    env: &[(&str, &str)],
) {
    let mut cmd = command(enetstat_bin());
    cmd.args([
        "--standalone",
        "-tanpe",
        "-o",
        "json",
        "-c",
        "200ms",
        "--recent",
        "60s",
    ])
    .envs(env.iter().copied());
    let mut snapshots = Child::spawn(cmd, &format!("enetstat -c --recent ({mode})"));
    // Its first snapshot: it traces from now on.
    let first = snapshots.json(Duration::from_secs(60));
    assert_eq!(first["tracing"], true, "{mode}: {first}");

    let server = format!("127.0.0.1:{port}");
    let mut cmd = command(peer_bin());
    cmd.args(["serve", "--addr", &server, "--accept", "2"]);
    let mut serve = Child::spawn(cmd, "enetstat-peer serve");
    let (_, listening) = serve.line(Duration::from_secs(30));
    assert_eq!(listening, format!("listening {port}"));
    let mut cmd = command(peer_bin());
    cmd.args(["connect", "--addr", &server, "--count", "1"]);
    let mut client = Child::spawn(cmd, "enetstat-peer connect");
    let (_, connected) = client.line(Duration::from_secs(30));
    let client_port: u16 = connected
        .strip_prefix("connected ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not `connected <port>`: {connected}"));
    let client_pid = u64::from(client.pid());
    let serve_pid = u64::from(serve.pid());

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = snapshots.json(Duration::from_secs(30));
        let sockets = snapshot["sockets"].as_array().cloned().unwrap_or_default();
        let find = |local: u16, remote: Option<u16>, closed: bool| {
            sockets
                .iter()
                .find(|s| {
                    s["local_port"] == local
                        && remote.is_none_or(|r| s["remote_port"] == r)
                        && s["closed"] == closed
                })
                .cloned()
        };
        let listeners: Vec<&Value> = sockets
            .iter()
            .filter(|s| s["local_port"] == port && s["state"] == "LISTEN")
            .collect();
        // Seen by its transition at once; joined to the kernel's dump (its inode) at the next
        // reconcile.
        let listener = find(port, None, false)
            .filter(|s| s["state"] == "LISTEN" && s["inode"].as_u64().is_some_and(|i| i != 0));
        let closed_client = find(client_port, Some(port), true);
        let closed_server = find(port, Some(client_port), true);
        if let (Some(listener), Some(closed_client), Some(closed_server)) =
            (listener, closed_client, closed_server)
        {
            assert_eq!(
                listeners.len(),
                1,
                "{mode}: one row for the listener, its traced and dumped halves joined: \
                 {listeners:#?}"
            );
            assert!(
                listener["age_ms"].as_f64().is_some(),
                "{mode}: the live listener's AGE (its traced CLOSE>LISTEN): {listener}"
            );
            assert_eq!(listener["pid"], serve_pid, "{mode}: its holder: {listener}");
            assert_eq!(listener["holds"], true, "{mode}: {listener}");
            for (s, owner) in [(&closed_client, client_pid), (&closed_server, serve_pid)] {
                assert!(
                    s["lifetime_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
                    "{mode}: a closed connection's lifetime: {s}"
                );
                assert_eq!(s["pid"], owner, "{mode}: its last owner: {s}");
                assert_eq!(s["holds"], false, "{mode}: no one holds it now: {s}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: no snapshot with the live listener on {port} and both closed ends of \
             {client_port} -> {port} within 30 s; the last: {snapshot}"
        );
    }
}

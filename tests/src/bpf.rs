//! Which eBPF programs a process holds, and whether they are gone: "leave nothing attached".

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The ids of the eBPF programs process `pid` holds: those `bpftool -j prog show` lists with
/// `pid` in their `pids` field, plus the `prog_id` of every program and link fd in
/// `/proc/<pid>/fdinfo`. (bpftool fills `pids` only when built with skeleton support, which
/// Debian's is not, so fdinfo is what finds them there.)
///
/// # Panics
///
/// When bpftool cannot run or prints something that is not its JSON.
pub fn prog_ids_held_by(pid: u32) -> BTreeSet<u32> {
    let mut ids = from_bpftool_pids(pid);
    ids.extend(from_fdinfo(pid));
    ids
}

/// The ids of the tracing (`tp_btf`) programs loaded now by anyone but process `ours`: another
/// tracer on the machine (a test suite running next door, say) whose programs call
/// `bpf_get_socket_cookie` gives every socket its cookie for everyone to read.
///
/// # Panics
///
/// When bpftool cannot run or prints something that is not its JSON.
pub fn foreign_tracing_progs(ours: u32) -> BTreeSet<u32> {
    let out = bpftool(&["-j", "prog", "show"]);
    assert!(out.status.success(), "`bpftool -j prog show` failed");
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`bpftool -j prog show` printed no JSON: {e}"));
    let held = prog_ids_held_by(ours);
    progs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "tracing")
        .filter_map(|p| p["id"].as_u64())
        .map(|id| u32::try_from(id).expect("prog id fits u32"))
        .filter(|id| !held.contains(id))
        .collect()
}

fn from_bpftool_pids(pid: u32) -> BTreeSet<u32> {
    let out = bpftool(&["-j", "prog", "show"]);
    assert!(
        out.status.success(),
        "`bpftool -j prog show` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`bpftool -j prog show` printed no JSON: {e}"));
    let mut ids = BTreeSet::new();
    for prog in progs.as_array().into_iter().flatten() {
        let held = prog["pids"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["pid"].as_u64() == Some(u64::from(pid)));
        if let (true, Some(id)) = (held, prog["id"].as_u64()) {
            ids.insert(u32::try_from(id).expect("prog id fits u32"));
        }
    }
    ids
}

fn from_fdinfo(pid: u32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        // An fd may close between listing and reading; skip it.
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Some(id) = line
                .strip_prefix("prog_id:")
                .and_then(|v| v.trim().parse().ok())
            {
                ids.insert(id);
            }
        }
    }
    ids
}

/// Whether an eBPF program with this id exists (`bpftool prog show id N`).
///
/// # Panics
///
/// When bpftool fails for another reason than "no such program".
pub fn prog_exists(id: u32) -> bool {
    let out = bpftool(&["prog", "show", "id", &id.to_string()]);
    if out.status.success() {
        return true;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("No such file or directory"),
        "`bpftool prog show id {id}` failed: {err}"
    );
    false
}

/// Waits up to `timeout` for every program in `ids` to be gone (the kernel frees programs a
/// little after their last reference closes); returns those still there.
pub fn wait_progs_gone(ids: &BTreeSet<u32>, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = ids.iter().copied().filter(|&id| prog_exists(id)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn bpftool(args: &[&str]) -> std::process::Output {
    Command::new("bpftool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run bpftool ({e}); install it (Debian: apt-get install bpftool)")
        })
}

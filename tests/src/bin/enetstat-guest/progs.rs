//! "Nothing left attached": the eBPF programs the checks' enetstat processes held, and the
//! programs loaded in the guest before and after.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use enetstat_tests::{prog_ids_held_by, wait_progs_gone};
use serde_json::Value;

/// The eBPF programs held by the enetstat processes the checks started.
#[derive(Default)]
pub(crate) struct Progs {
    ids: BTreeSet<u32>,
    pub(crate) holders: Vec<String>,
}

impl Progs {
    pub(crate) fn add(&mut self, who: &str, pid: u32) {
        let ids = prog_ids_held_by(pid);
        assert!(
            !ids.is_empty(),
            "{who} (pid {pid}) holds no eBPF program while it traces"
        );
        self.ids.extend(ids);
        self.holders.push(format!("{who} (pid {pid})"));
    }
}

/// `bpftool -j prog show`: every eBPF program loaded.
pub(crate) fn bpftool_progs() -> Result<Vec<Value>, String> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .map_err(|e| format!("cannot run bpftool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`bpftool -j prog show` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let progs: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`bpftool -j prog show` printed no JSON: {e}"))?;
    Ok(progs.as_array().cloned().unwrap_or_default())
}

/// Every program the tracers and the daemon held is gone, and no program that was not there
/// before the checks is left (this holds, and is checked, even where nothing could load).
pub(crate) fn check_detached(held: &Progs, baseline: &BTreeSet<u64>) {
    let left = wait_progs_gone(&held.ids, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "eBPF programs {left:?} of {} still exist after they exited",
        held.holders.join(", ")
    );
    let new: Vec<String> = bpftool_progs()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| !baseline.contains(&id)))
        .map(|p| format!("{} ({})", p["name"], p["type"]))
        .collect();
    assert!(
        new.is_empty(),
        "programs loaded during the checks are still there: {new:?}"
    );
}

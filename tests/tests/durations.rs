//! Every duration flag takes units (`500ms`, `2s`, `5m`, `1h`), a bare number is seconds, and
//! an absurd value is refused with the accepted range (clap's exit status 2), never a panic
//! (exit status 101).

use std::process::{Command, Stdio};

use enetstat_tests::{Tracer, enetstat_bin, require_root};

fn enetstat(args: &[&str]) -> std::process::Output {
    Command::new(enetstat_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run enetstat")
}

/// Needs no root: the values are refused while the command line is read.
#[test]
fn absurd_durations_are_refused_with_the_range_not_a_panic() {
    let cases: &[&[&str]] = &[
        &["watch", "--standalone", "--duration", "1e30"],
        &[
            "life",
            "--standalone",
            "--duration",
            "99999999999999999999h",
        ],
        &["--standalone", "-tn", "-c", "1e30"],
        &["--standalone", "-tn", "-c", "1", "--reconcile", "1e30"],
        &[
            "--standalone",
            "-tn",
            "-c",
            "1",
            "--recent",
            "99999999999999999999h",
        ],
        &[
            "daemon",
            "--socket",
            "/nonexistent/x.sock",
            "--reconcile",
            "1e30",
        ],
        &[
            "daemon",
            "--socket",
            "/nonexistent/x.sock",
            "--keep-closed",
            "99999999999999999999h",
        ],
        &["watch", "--standalone", "--duration", "0"],
        &["watch", "--standalone", "--duration", "soon"],
    ];
    for args in cases {
        let out = enetstat(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("out of range: a duration is from 1ms to 365d")
                || stderr.contains("is not a duration; use a number with a unit"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn durations_take_units_everywhere() {
    if !require_root("durations_take_units_everywhere") {
        return;
    }
    // `--duration` with a unit ends the run by itself.
    let finished = Tracer::start(&[
        "watch",
        "--standalone",
        "-o",
        "json",
        "--duration",
        "500ms",
        "--port",
        "1",
    ])
    .wait_exit();
    finished.assert_success();
    // `-c` and `--reconcile` with units: two refreshes, then exit.
    let out = enetstat(&[
        "--standalone",
        "-tn",
        "-o",
        "json",
        "-c",
        "500ms",
        "--reconcile",
        "2s",
        "--recent",
        "1m",
        "--refreshes",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["tracing"] == true));
}

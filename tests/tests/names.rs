//! Snapshots as the README describes them, end to end, in a network namespace of the test's own
//! whose `/etc/netns/NAME` files stand in for `/etc/hosts`, `/etc/services` and
//! `/etc/resolv.conf`, so no real DNS is needed:
//!
//! - without `-n`, host and service names come from the hosts and services files;
//! - an address the hosts file does not know goes to DNS, and a DNS server that never answers
//!   delays the output by at most the one-second budget: the address shows as a number;
//! - `-w` shows a long name whole, and without it the column is cut to 23 characters;
//! - `-4` and `-6` keep one family.

use std::time::{Duration, Instant};

use enetstat_tests::{
    enetstat_bin, peer_bin, require_root,
    scenario::{Child, Netns},
};

/// A name longer than the Local Address column.
const LONG_NAME: &str = "a-rather-long-host-name.enetstat.test";

/// The test's namespace: its files under /etc/netns, a DNS server that never answers, and
/// listeners on 127.0.0.2:45678 (named in the hosts and services files), 127.0.0.3:45679
/// (named nowhere), 127.0.0.4:45680 (a long name) and [::1]:45681.
struct Names {
    // Children first: they run in the namespace.
    _children: Vec<Child>,
    ns: Netns,
}

impl Names {
    fn new() -> Names {
        let ns = Netns::new("names");
        ns.etc_file(
            "hosts",
            &format!("127.0.0.2 alpha.test\n127.0.0.4 {LONG_NAME}\n"),
        );
        ns.etc_file("services", "esvc 45678/tcp\n");
        // One attempt with a 30 s timeout: a resolver that waited for the answer would take 30 s.
        ns.etc_file(
            "resolv.conf",
            "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n",
        );
        ns.etc_file("nsswitch.conf", "hosts: files dns\nservices: files\n");
        let mut children = Vec::new();
        let mut dns = ns.command(peer_bin());
        dns.args(["mute", "--addr", "127.0.0.1:53"]);
        let mut dns = Child::spawn(dns, "silent DNS server");
        let (_, line) = dns.line(Duration::from_secs(30));
        assert_eq!(line, "bound 53");
        children.push(dns);
        for addr in [
            "127.0.0.2:45678",
            "127.0.0.3:45679",
            "127.0.0.4:45680",
            "[::1]:45681",
        ] {
            let mut cmd = ns.command(peer_bin());
            cmd.args(["serve", "--addr", addr]);
            let mut server = Child::spawn(cmd, &format!("listener on {addr}"));
            let (_, line) = server.line(Duration::from_secs(30));
            assert!(line.starts_with("listening "), "{addr}: {line}");
            children.push(server);
        }
        Names {
            _children: children,
            ns,
        }
    }

    /// `enetstat ARGS` in the namespace: its stdout, after checking it succeeded.
    fn enetstat(&self, args: &[&str]) -> String {
        let out = self
            .ns
            .command(enetstat_bin())
            .args(args)
            .output()
            .expect("cannot run enetstat");
        assert!(
            out.status.success(),
            "enetstat {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }
}

/// The Local Address column of every row.
fn local_addresses(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .map(|l| {
            l.split_whitespace()
                .nth(3)
                .unwrap_or_else(|| panic!("a short row: {l:?}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn snapshot_names_come_from_the_hosts_and_services_files_within_the_budget() {
    if !require_root("snapshot_names_come_from_the_hosts_and_services_files_within_the_budget") {
        return;
    }
    let names = Names::new();
    let started = Instant::now();
    let text = names.enetstat(&["-tl4w"]);
    let took = started.elapsed();
    let mut local = local_addresses(&text);
    local.sort();
    assert_eq!(
        local,
        [
            "127.0.0.3:45679".to_owned(),
            format!("{LONG_NAME}:45680"),
            "alpha.test:esvc".to_owned(),
        ],
        "{text}"
    );
    // The DNS query for 127.0.0.3 never gets an answer and would take 30 s; the budget is one
    // second, so the snapshot comes long before (this bounds the wait, it does not time it).
    assert!(
        took < Duration::from_secs(15),
        "the snapshot waited {took:?} for a DNS server that never answers"
    );
    // The header, as netstat prints it.
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Active Internet connections (only servers)")
    );
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "Proto", "Recv-Q", "Send-Q", "Local", "Address", "Foreign", "Address", "State"
        ])
    );
}

#[test]
fn snapshot_cuts_long_names_to_the_column_unless_wide_and_keeps_one_family_with_4_or_6() {
    if !require_root(
        "snapshot_cuts_long_names_to_the_column_unless_wide_and_keeps_one_family_with_4_or_6",
    ) {
        return;
    }
    let names = Names::new();
    // Without -w, the name is cut so `host:port` fits 23 characters.
    let narrow = local_addresses(&names.enetstat(&["-tl4"]));
    let cut = format!("{}:45680", &LONG_NAME[..23 - ":45680".len()]);
    assert!(narrow.contains(&cut), "no {cut} in {narrow:?}");
    assert!(narrow.iter().all(|a| a.chars().count() <= 23), "{narrow:?}");
    let wide = local_addresses(&names.enetstat(&["-tl4w"]));
    assert!(wide.contains(&format!("{LONG_NAME}:45680")), "{wide:?}");

    // -4 and -6, numeric: one family each; the README's `-4`/`-6`.
    let mut v4 = local_addresses(&names.enetstat(&["-tln4"]));
    v4.sort();
    assert_eq!(
        v4,
        ["127.0.0.2:45678", "127.0.0.3:45679", "127.0.0.4:45680"],
        "-4"
    );
    let v6 = local_addresses(&names.enetstat(&["-tln6"]));
    assert_eq!(v6, ["::1:45681"], "-6");
    let mut both = local_addresses(&names.enetstat(&["-tln"]));
    both.sort();
    assert_eq!(
        both,
        [
            "127.0.0.2:45678",
            "127.0.0.3:45679",
            "127.0.0.4:45680",
            "::1:45681"
        ]
    );
    // JSON says the same with `family`.
    let json: serde_json::Value =
        serde_json::from_str(&names.enetstat(&["-tln6", "-o", "json"])).expect("JSON");
    let sockets = json["sockets"].as_array().unwrap();
    assert_eq!(sockets.len(), 1, "{json}");
    assert_eq!(sockets[0]["family"], "ipv6");
    assert_eq!(sockets[0]["local_port"], 45681);
}

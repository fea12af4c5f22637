//! The Kubernetes DaemonSet (`dist/kubernetes/daemonset.yaml`), read as YAML and checked
//! against what it is for: its pieces agree with one another (selector and labels, the
//! metrics port, annotations and readiness probe, volumes and mounts), with the systemd unit
//! and the README (the socket path, the capabilities), and with the binary: the container's
//! arguments, run by the binary under test with only the capabilities the manifest grants,
//! start a daemon that serves its socket and answers the readiness probe.
//!
//! Only the socket path and the metrics address are changed for the run (a temporary socket,
//! a free port on loopback); every flag is passed as the manifest spells it.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpStream},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{
    PortReservation,
    daemon::{Conn, TempDir},
    enetstat_bin, require_program, require_root,
    scenario::Child,
};
use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

const TEST: &str = "daemonset_agrees_with_itself_the_unit_the_readme_and_the_binary";

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

fn list<'a>(y: &'a Yaml, what: &str) -> &'a [Yaml] {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {y:?}"))
}

/// The element of `items` whose `name` is `name`.
fn named<'a>(items: &'a Yaml, name: &str, what: &str) -> &'a Yaml {
    list(items, what)
        .iter()
        .find(|i| i["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {what} named {name}: {items:?}"))
}

/// `--flag=value` or `--flag value` in `args`: the value.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&format!("{name}=")).or_else(|| {
            (a == name)
                .then(|| args.get(i + 1).map(String::as_str))
                .flatten()
        })
    })
}

#[test]
fn daemonset_agrees_with_itself_the_unit_the_readme_and_the_binary() {
    if !require_root(TEST) {
        return;
    }
    let Some(setpriv) = require_program(TEST, "setpriv", "util-linux") else {
        return;
    };
    let docs = YamlLoader::load_from_str(&read("dist/kubernetes/daemonset.yaml"))
        .expect("the manifest is YAML");
    let kinds: Vec<&str> = docs.iter().map(|d| text(&d["kind"], "kind")).collect();
    assert_eq!(kinds, ["Namespace", "DaemonSet"]);
    let namespace = text(&docs[0]["metadata"]["name"], "the namespace's name");
    let ds = &docs[1];
    assert_eq!(text(&ds["apiVersion"], "apiVersion"), "apps/v1");
    assert_eq!(
        text(&ds["metadata"]["namespace"], "the DaemonSet's namespace"),
        namespace
    );

    // The selector picks the pods the template makes.
    let spec = &ds["spec"];
    let selector = spec["selector"]["matchLabels"]
        .as_hash()
        .expect("matchLabels");
    let labels = spec["template"]["metadata"]["labels"]
        .as_hash()
        .expect("template labels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the selector's {k:?} is not a pod label"
        );
    }

    // The node's sockets and processes: the host's network and PID namespaces.
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "hostNetwork");
    assert_eq!(pod["hostPID"].as_bool(), Some(true), "hostPID");
    let containers = list(&pod["containers"], "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let args: Vec<String> = list(&c["args"], "args")
        .iter()
        .map(|a| text(a, "an argument").to_owned())
        .collect();
    assert_eq!(args[0], "daemon", "{args:?}");

    // The socket: the unit's and the README's path, on a hostPath volume of the same path.
    let socket = flag(&args, "--socket").expect("--socket");
    let unit = read("dist/enetstat.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains(&format!("--socket {socket}")),
        "the unit serves elsewhere: {exec}"
    );
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("`{socket}` by default")),
        "the README's default socket is not {socket}"
    );
    let socket_dir = Path::new(socket).parent().unwrap().to_str().unwrap();
    let mounts = &c["volumeMounts"];
    let run_mount = list(mounts, "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(socket_dir))
        .unwrap_or_else(|| panic!("nothing mounted at {socket_dir}"));
    let run_volume = named(
        &pod["volumes"],
        text(&run_mount["name"], "a mount's name"),
        "volume",
    );
    assert_eq!(
        text(&run_volume["hostPath"]["path"], "the socket's hostPath"),
        socket_dir,
        "node tools find the socket where the README says"
    );
    // BTF, which the programs are loaded with, from the node.
    let btf = named(&pod["volumes"], "btf", "volume");
    assert_eq!(text(&btf["hostPath"]["path"], "btf"), "/sys/kernel/btf");
    assert_eq!(
        text(
            &named(mounts, "btf", "volumeMount")["mountPath"],
            "btf mount"
        ),
        "/sys/kernel/btf"
    );

    // Metrics: the port in --metrics is the container's `metrics` port, the one Prometheus
    // is told to scrape, at the path the readiness probe asks.
    let metrics = flag(&args, "--metrics").expect("--metrics");
    let metrics_port: u16 = metrics
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("--metrics ADDR:PORT");
    let port = named(&c["ports"], "metrics", "port");
    assert_eq!(
        port["containerPort"].as_i64(),
        Some(i64::from(metrics_port))
    );
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(
        text(&annotations["prometheus.io/port"], "prometheus.io/port"),
        metrics_port.to_string()
    );
    let probe = &c["readinessProbe"]["httpGet"];
    let probe_path = text(&probe["path"], "the probe's path");
    assert_eq!(
        text(&annotations["prometheus.io/path"], "prometheus.io/path"),
        probe_path
    );
    assert_eq!(text(&probe["port"], "the probe's port"), "metrics");

    // Capabilities: all dropped, then what the daemon needs, all within the unit's set.
    let sc = &c["securityContext"];
    let drop: Vec<&str> = list(&sc["capabilities"]["drop"], "drop")
        .iter()
        .map(|d| text(d, "a capability"))
        .collect();
    assert_eq!(drop, ["ALL"]);
    let add: Vec<&str> = list(&sc["capabilities"]["add"], "add")
        .iter()
        .map(|a| text(a, "a capability"))
        .collect();
    let bounding = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit's CapabilityBoundingSet");
    for cap in &add {
        assert!(
            bounding
                .split_whitespace()
                .any(|b| b == format!("CAP_{cap}")),
            "{cap} is granted by the DaemonSet but not the unit: {bounding}"
        );
    }
    assert!(add.contains(&"BPF") && add.contains(&"PERFMON"), "{add:?}");
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));

    // The binary takes the arguments: a daemon started with them (socket and metrics
    // address moved), holding only the manifest's capabilities, serves its socket and
    // answers the readiness probe.
    let dir = TempDir::new("daemonset");
    let test_socket = dir.path.join("enetstat.sock");
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let test_metrics = reservation.addr();
    reservation.release();
    let run_args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("--socket=") {
                format!("--socket={}", test_socket.display())
            } else if a.starts_with("--metrics=") {
                format!("--metrics={test_metrics}")
            } else {
                a.clone()
            }
        })
        .collect();
    assert!(
        run_args.iter().any(|a| a.starts_with("--socket="))
            && run_args.iter().any(|a| a.starts_with("--metrics=")),
        "the manifest spells --socket and --metrics as --flag=value: {args:?}"
    );
    let bounding_set = std::iter::once("-all".to_owned())
        .chain(add.iter().map(|c| format!("+{}", c.to_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new(setpriv);
    cmd.args(["--bounding-set", &bounding_set, "--inh-caps=-all", "--"])
        .arg(enetstat_bin())
        .args(&run_args);
    let mut daemon = Child::spawn(cmd, "enetstat daemon (the DaemonSet's arguments)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(&test_socket).is_err() {
        if let Some(status) = daemon.exited() {
            panic!(
                "enetstat {} (capabilities {bounding_set}) exited ({status}); its stderr is above",
                run_args.join(" ")
            );
        }
        assert!(
            Instant::now() < deadline,
            "enetstat {} (capabilities {bounding_set}) did not serve in 60 s",
            run_args.join(" ")
        );
        thread::sleep(Duration::from_millis(50));
    }
    let stats = Conn::connect(&test_socket).request(&json!({"v": 1, "op": "stats"}));
    assert!(stats["stats"].is_object(), "{stats}");
    // The readiness probe: GET path on the metrics port answers 200.
    let mut http = TcpStream::connect(test_metrics).expect("the metrics port");
    write!(
        http,
        "GET {probe_path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    http.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "GET {probe_path}: {}",
        reply.lines().next().unwrap_or_default()
    );
}

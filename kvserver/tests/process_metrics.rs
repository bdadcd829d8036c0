//! The store's metrics as an operator scrapes them: `tinykv-server --status-addr` serves
//! `GET /metrics` in the Prometheus text format, every metric of docs/METRICS.md is there, and a
//! put and a get through a static one-store cluster move its counters; anything else is 404. A
//! malformed or busy `--status-addr` fails the start with one line and exit 1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_addrs, start_cluster, SERVER};
use kvserver::client::Client;

/// The store's metrics (series with their labels), each followed by its value in the text.
const SERIES: [&str; 12] = [
    "tinykv_raft_proposals_total{kind=\"normal\"}",
    "tinykv_raft_proposals_total{kind=\"admin\"}",
    "tinykv_raft_proposals_total{kind=\"read_index\"}",
    "tinykv_raft_applied_entries_total",
    "tinykv_engine_fsyncs_total{engine=\"raft\"}",
    "tinykv_engine_fsyncs_total{engine=\"kv\"}",
    "tinykv_store_round_duration_seconds_count",
    "tinykv_store_round_duration_seconds_bucket{le=\"+Inf\"}",
    "tinykv_apply_batch_duration_seconds_count",
    "tinykv_apply_batch_duration_seconds_sum",
    "tinykv_store_regions",
    "tinykv_store_leaders",
];

/// One plain HTTP/1.1 request to `addr` (the connection retried for up to 20 s while the
/// server starts): the status code and the body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot reach {addr}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head:?}"));
    (code, body.to_string())
}

/// `GET /metrics` at `addr`: the text, after checking the answer is 200 with a Prometheus
/// content type.
fn scrape(addr: &str) -> String {
    let (code, body) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of `series` (a name with its labels, as printed) in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

#[test]
fn test_store_metrics_are_served_and_move_with_a_put() {
    let root = tempfile::tempdir().unwrap();
    let status = free_addrs(1).remove(0);
    let procs = start_cluster(
        root.path(),
        1,
        &["--raft-base-tick-ms", "50", "--status-addr", &status],
    );
    let before = scrape(&status);
    for series in SERIES {
        value(&before, series);
    }
    for name in [
        "tinykv_raft_proposals_total",
        "tinykv_engine_fsyncs_total",
        "tinykv_store_round_duration_seconds",
        "tinykv_store_leaders",
    ] {
        assert!(
            before.contains(&format!("# HELP {name} ")),
            "no help for {name}"
        );
    }

    let client = Client::new(vec![procs[0].addr.clone()], Duration::from_secs(20)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        client.put("", b"metrics-key", b"v").await.expect("put");
        let got = client.get("", b"metrics-key").await.expect("get");
        assert_eq!(got.as_deref(), Some(&b"v"[..]));
    });

    // The counters are moved before the answers leave; the gauges are set every base tick.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let text = scrape(&status);
        if value(&text, "tinykv_store_leaders") == 1.0 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let moved = |series: &str| {
        let (a, b) = (value(&before, series), value(&after, series));
        assert!(b > a, "{series} did not move: {a} -> {b}");
    };
    moved("tinykv_raft_proposals_total{kind=\"normal\"}");
    moved("tinykv_raft_proposals_total{kind=\"read_index\"}");
    moved("tinykv_raft_applied_entries_total");
    moved("tinykv_engine_fsyncs_total{engine=\"raft\"}");
    moved("tinykv_store_round_duration_seconds_count");
    moved("tinykv_apply_batch_duration_seconds_count");
    assert!(value(&after, "tinykv_engine_fsyncs_total{engine=\"kv\"}") > 0.0);
    assert_eq!(value(&after, "tinykv_store_regions"), 1.0, "{after}");
    assert_eq!(value(&after, "tinykv_store_leaders"), 1.0, "{after}");

    // Anything but GET /metrics is 404.
    assert_eq!(http(&status, "GET", "/").0, 404);
    assert_eq!(http(&status, "GET", "/metrics/x").0, 404);
    assert_eq!(http(&status, "POST", "/metrics").0, 404);
}

/// Exactly one non-empty line.
fn one_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).to_string();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {s:?}");
    lines[0].to_string()
}

#[test]
fn test_bad_or_busy_status_addr_fails_the_start_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let addr = free_addrs(1).remove(0);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    for (status, expect) in [
        ("127.0.0.1", "is not HOST:PORT"),
        ("127.0.0.1:http", "is not HOST:PORT"),
        (busy_addr.as_str(), "cannot serve status on"),
    ] {
        let dir = root.path().join("store");
        let out = std::process::Command::new(SERVER)
            .args(["--store-id", "1", "--addr", &addr])
            .args(["--initial-cluster", &format!("1={addr}")])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--status-addr", status])
            .env("TINYKV_LOG", "info")
            .output()
            .expect("run tinykv-server");
        assert_eq!(out.status.code(), Some(1), "--status-addr {status}");
        let line = one_line(&out.stderr);
        assert!(
            line.contains(expect) && line.contains(status),
            "--status-addr {status}: {line}"
        );
        assert!(!dir.exists(), "a refused start wrote its data dir");
    }
}

//! The scheduler's metrics as an operator scrapes them: `tinykv-scheduler --status-addr` serves
//! `GET /metrics` in the Prometheus text format, every metric of docs/METRICS.md is there, and
//! AllocID, Tso, a store heartbeat and region heartbeats (one taken in, one stale) move its
//! counters and gauges; anything else is 404. A malformed or busy `--status-addr` fails the
//! start with one line and exit 1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::metapb::{Peer, Region, RegionEpoch, Store};
use proto::schedulerpb::*;
use scheduler::schedulerpb::scheduler_client::SchedulerClient;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_tinykv-scheduler");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

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

async fn connect(addr: &str) -> SchedulerClient<Channel> {
    for _ in 0..400 {
        if let Ok(c) = SchedulerClient::connect(format!("http://{addr}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot reach the scheduler at {addr}");
}

fn h(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader { cluster_id })
}

async fn alloc(c: &mut SchedulerClient<Channel>, id: u64) -> u64 {
    c.alloc_id(AllocIdRequest { header: h(id) })
        .await
        .unwrap()
        .into_inner()
        .id
}

#[test]
fn test_scheduler_metrics_are_served_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, status) = (free_addr(), free_addr());
    let _p = KillOnDrop(
        Command::new(BIN)
            .args(["--addr", &addr, "--status-addr", &status, "--data-dir"])
            .arg(dir.path())
            .env("TINYKV_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinykv-scheduler"),
    );
    let before = scrape(&status);
    for series in [
        "tinykv_scheduler_region_heartbeats_total{result=\"ok\"}",
        "tinykv_scheduler_region_heartbeats_total{result=\"stale\"}",
        "tinykv_scheduler_region_heartbeats_total{result=\"error\"}",
        "tinykv_scheduler_store_heartbeats_total{result=\"ok\"}",
        "tinykv_scheduler_store_heartbeats_total{result=\"error\"}",
        "tinykv_scheduler_operators_running",
        "tinykv_scheduler_stores",
        "tinykv_scheduler_regions",
        "tinykv_scheduler_tso_timestamps_total",
        "tinykv_scheduler_ids_allocated_total",
    ] {
        value(&before, series);
    }
    // tinykv_scheduler_operators_total has a series per operator description and event: none
    // before the first operator.
    assert!(before.contains("# HELP tinykv_scheduler_ids_allocated_total "));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The heartbeat stream stays open until the end: closing it is no part of the test.
    let _stream = rt.block_on(async {
        let mut c = connect(&addr).await;
        let id = c
            .get_members(GetMembersRequest { header: None })
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .cluster_id;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(TsoRequest {
            header: h(id),
            count: 10,
        })
        .unwrap();
        let mut ts = c
            .tso(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert!(ts.message().await.unwrap().is_some());
        let store = Store {
            id: alloc(&mut c, id).await,
            address: "127.0.0.1:7".into(),
            ..Default::default()
        };
        c.bootstrap(BootstrapRequest {
            header: h(id),
            store: Some(store.clone()),
        })
        .await
        .unwrap();
        c.store_heartbeat(StoreHeartbeatRequest {
            header: h(id),
            stats: Some(StoreStats {
                store_id: store.id,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        let peer = Peer {
            id: alloc(&mut c, id).await,
            store_id: store.id,
        };
        let region = |version| Region {
            id: 100,
            peers: vec![peer],
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version,
            }),
            ..Default::default()
        };
        let heartbeat = |version| RegionHeartbeatRequest {
            header: h(id),
            region: Some(region(version)),
            leader: Some(peer),
            ..Default::default()
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Version 2, then a stale version 1.
        tx.send(heartbeat(2)).unwrap();
        tx.send(heartbeat(1)).unwrap();
        let answers = c
            .region_heartbeat(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, answers)
    });

    // Heartbeats are handled as they arrive on the stream; the gauges are set every 50 ms.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let text = scrape(&status);
        let done = value(
            &text,
            "tinykv_scheduler_region_heartbeats_total{result=\"stale\"}",
        ) >= 1.0
            && value(&text, "tinykv_scheduler_regions") == 1.0;
        if done || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let grew = |series: &str, by: f64| {
        let (a, b) = (value(&before, series), value(&after, series));
        assert!(b - a >= by, "{series} grew by less than {by}: {a} -> {b}");
    };
    grew("tinykv_scheduler_ids_allocated_total", 2.0);
    grew("tinykv_scheduler_tso_timestamps_total", 10.0);
    grew(
        "tinykv_scheduler_store_heartbeats_total{result=\"ok\"}",
        1.0,
    );
    grew(
        "tinykv_scheduler_region_heartbeats_total{result=\"ok\"}",
        1.0,
    );
    grew(
        "tinykv_scheduler_region_heartbeats_total{result=\"stale\"}",
        1.0,
    );
    assert_eq!(value(&after, "tinykv_scheduler_stores"), 1.0, "{after}");
    assert_eq!(value(&after, "tinykv_scheduler_regions"), 1.0, "{after}");
    assert_eq!(
        value(&after, "tinykv_scheduler_operators_running"),
        0.0,
        "{after}"
    );

    assert_eq!(http(&status, "GET", "/").0, 404);
    assert_eq!(http(&status, "GET", "/metricsx").0, 404);
    assert_eq!(http(&status, "DELETE", "/metrics").0, 404);
}

#[test]
fn test_bad_or_busy_status_addr_fails_the_start_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    for (status, expect) in [
        ("nowhere", "is not HOST:PORT"),
        (":2381", "is not HOST:PORT"),
        (busy_addr.as_str(), "cannot serve status on"),
    ] {
        let dir = root.path().join("d");
        let out = Command::new(BIN)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--status-addr",
                status,
                "--data-dir",
            ])
            .arg(&dir)
            .env("TINYKV_LOG", "info")
            .output()
            .expect("run tinykv-scheduler");
        assert_eq!(out.status.code(), Some(1), "--status-addr {status}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(expect) && err.contains(status),
            "--status-addr {status}: {err}"
        );
        assert!(!dir.exists(), "a refused start wrote its data dir");
    }
}

//! Bad input, server and CLI: every case gets a clear error and never a panic or a hang. Client
//! mistakes get a gRPC status with a message (INVALID_ARGUMENT); start-up mistakes make
//! `tinykv-server` exit non-zero with one line on stderr; `tinykv-ctl` failures likewise. The
//! BatchRaw stream carries the same statuses in its answers.

mod common;

use std::time::Duration;

use std::collections::HashMap;

use common::{free_addrs, run, start_cluster, ServerProc, BENCH, CTL, SERVER};
use kvserver::client::{Client, ClientError};
use kvserver::tinykvpb::tiny_kv_client::TinyKvClient;
use kvserver::tinykvpb::{
    raw_request, raw_response, BatchRawRequest, BatchRawResponse, RawRequest, RawResponse,
};
use proto::kvrpcpb::{RawGetRequest, RawPutRequest, RawScanRequest};
use tonic::Code;

/// Exactly one non-empty line.
fn one_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).to_string();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {s:?}");
    lines[0].to_string()
}

fn rejected(r: Result<impl std::fmt::Debug, ClientError>, what: &str) -> String {
    match r {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, Code::InvalidArgument, "{what}: {message}");
            message
        }
        other => panic!("{what}: expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn test_bad_client_input_gets_invalid_argument() {
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("small-entries.toml");
    // A small raft entry limit, so the oversized value stays small: values up to 64 KiB - 8 KiB.
    std::fs::write(
        &cfg,
        "raft-entry-max-size = 65536\nraft-base-tick-ms = 50\n",
    )
    .unwrap();
    let procs = start_cluster(root.path(), 1, &["--config", cfg.to_str().unwrap()]);
    let unary = Client::new(vec![procs[0].addr.clone()], Duration::from_secs(10)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The same answers through unary calls and through the BatchRaw stream.
    for client in [unary.clone(), unary.batched()] {
        rt.block_on(bad_input_cases(&client));
    }
}

async fn bad_input_cases(client: &Client) {
    let m = rejected(client.put("", b"", b"v").await, "empty key");
    assert!(m.contains("empty"), "{m}");
    let m = rejected(client.get("", b"").await, "empty key get");
    assert!(m.contains("empty"), "{m}");
    let big_key = vec![b'k'; 4097];
    let m = rejected(client.put("", &big_key, b"v").await, "long key");
    assert!(m.contains("4096"), "{m}");
    client
        .put("", &vec![b'k'; 4096], b"v")
        .await
        .expect("a 4 KiB key is fine");
    let m = rejected(
        client.put("", b"k", &vec![0u8; 60 * 1024]).await,
        "big value",
    );
    assert!(m.contains("limit"), "{m}");
    client
        .put("", b"k", &vec![1u8; 56 * 1024])
        .await
        .expect("a value under the limit");
    let m = rejected(client.put("nope", b"k", b"v").await, "unknown cf");
    assert!(m.contains("column family"), "{m}");
    rejected(client.scan("raft", b"", 10).await, "the internal raft cf");
    let m = rejected(client.scan("", &big_key, 10).await, "long scan start");
    assert!(m.contains("4096"), "{m}");
    rejected(client.delete("lock ", b"k").await, "cf with a space");
    assert!(
        client.scan("", b"", 0).await.unwrap().is_empty(),
        "limit 0: empty answer"
    );
    assert_eq!(client.scan("", b"", 10).await.unwrap().len(), 2);
}

/// The next message of an answer stream; a test failure, not a hang, when none comes.
async fn next(
    answers: &mut tonic::Streaming<BatchRawResponse>,
) -> Result<Option<BatchRawResponse>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("no answer within 10 s")
}

/// The BatchRaw stream on the wire: every request answered once under its own id, bad requests
/// answered with the unary call's status in the answer (the stream goes on), a follower's
/// NotLeader answer with the leader's address, and a malformed batch ending the stream.
#[test]
fn test_batch_stream_answers_each_request_by_id() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 3, &["--raft-base-tick-ms", "50"]);
    let addrs: Vec<String> = procs.iter().map(|p| p.addr.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::new(addrs.clone(), Duration::from_secs(20)).unwrap();
        client
            .put("", b"a", b"1")
            .await
            .expect("the cluster serves");
        let leader = client.leader().unwrap();
        let follower = addrs.iter().find(|a| **a != leader).unwrap().clone();
        let mut raw = TinyKvClient::connect(format!("http://{leader}"))
            .await
            .unwrap();

        let put = |k: &[u8], v: &[u8]| {
            raw_request::Cmd::Put(RawPutRequest {
                key: k.to_vec(),
                value: v.to_vec(),
                ..Default::default()
            })
        };
        let get = |k: &[u8]| {
            raw_request::Cmd::Get(RawGetRequest {
                key: k.to_vec(),
                ..Default::default()
            })
        };
        // Ids of the client's choosing, in no particular order; the bad requests sit between
        // good ones.
        let first: Vec<(u64, Option<raw_request::Cmd>)> = vec![
            (70, Some(put(b"b", b"2"))),
            (3, Some(put(b"", b"x"))),
            (12, None),
            (5, Some(get(b"a"))),
            (900, Some(put(b"c", b"3"))),
            (
                41,
                Some(raw_request::Cmd::Scan(RawScanRequest {
                    cf: "nope".into(),
                    limit: 1,
                    ..Default::default()
                })),
            ),
        ];
        let second: Vec<(u64, Option<raw_request::Cmd>)> = vec![
            (1, Some(get(b"b"))),
            (2, Some(get(b"c"))),
            (4, Some(get(b"zz"))),
        ];
        let batch = |reqs: Vec<(u64, Option<raw_request::Cmd>)>| BatchRawRequest {
            request_ids: reqs.iter().map(|r| r.0).collect(),
            requests: reqs.into_iter().map(|r| RawRequest { cmd: r.1 }).collect(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(batch(first)).await.unwrap();
        let mut answers = raw
            .batch_raw(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut got: HashMap<u64, RawResponse> = HashMap::new();
        while got.len() < 6 {
            let m = next(&mut answers).await.unwrap().expect("answers");
            assert_eq!(m.request_ids.len(), m.responses.len());
            for (id, r) in m.request_ids.into_iter().zip(m.responses) {
                assert!(got.insert(id, r).is_none(), "request {id} answered twice");
            }
        }
        let mut ids: Vec<u64> = got.keys().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![3, 5, 12, 41, 70, 900]);
        for id in [70, 900] {
            let r = &got[&id];
            assert_eq!(r.code, 0, "{}", r.message);
            match &r.cmd {
                Some(raw_response::Cmd::Put(p)) => assert!(p.region_error.is_none()),
                other => panic!("request {id}: {other:?}"),
            }
        }
        match &got[&5].cmd {
            Some(raw_response::Cmd::Get(g)) => assert_eq!(g.value, b"1"),
            other => panic!("request 5: {other:?}"),
        }
        for (id, words) in [(3, "empty"), (12, "command"), (41, "column family")] {
            let r = &got[&id];
            assert_eq!(r.code, Code::InvalidArgument as i32, "request {id}");
            assert!(r.cmd.is_none());
            assert!(r.message.contains(words), "request {id}: {}", r.message);
        }

        // The stream goes on after bad requests, and sees the writes it acknowledged.
        tx.send(batch(second)).await.unwrap();
        let mut got: HashMap<u64, RawResponse> = HashMap::new();
        while got.len() < 3 {
            let m = next(&mut answers).await.unwrap().expect("answers");
            got.extend(m.request_ids.into_iter().zip(m.responses));
        }
        let value = |r: &RawResponse| match &r.cmd {
            Some(raw_response::Cmd::Get(g)) => (!g.not_found).then(|| g.value.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(value(&got[&1]).as_deref(), Some(&b"2"[..]));
        assert_eq!(value(&got[&2]).as_deref(), Some(&b"3"[..]));
        assert_eq!(value(&got[&4]), None);

        // Two ids for one request: the stream ends with INVALID_ARGUMENT.
        let mut bad = batch(vec![(8, Some(get(b"a")))]);
        bad.request_ids.push(9);
        tx.send(bad).await.unwrap();
        let status = loop {
            match next(&mut answers).await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without an error"),
                Err(s) => break s,
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("request ids"),
            "{}",
            status.message()
        );

        // A follower answers NotLeader with the leader's address.
        let mut raw = TinyKvClient::connect(format!("http://{follower}"))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(batch(vec![(7, Some(get(b"a")))])).await.unwrap();
        let mut answers = raw
            .batch_raw(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let m = next(&mut answers).await.unwrap().expect("an answer");
        assert_eq!(m.request_ids, vec![7]);
        match &m.responses[0].cmd {
            Some(raw_response::Cmd::Get(g)) => {
                let nl = g.region_error.as_ref().and_then(|e| e.not_leader.as_ref());
                assert!(nl.is_some(), "{g:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.responses[0].leader_addr, leader);
    });
}

#[test]
fn test_server_startup_errors_are_one_line() {
    let root = tempfile::tempdir().unwrap();
    let addrs = free_addrs(2);
    let dir = root.path().join("s1");
    let d = dir.to_str().unwrap();
    let cluster = format!("1={},2={}", addrs[0], addrs[1]);

    // Missing and bad flags.
    let out = run(
        SERVER,
        &[
            "--addr",
            &addrs[0],
            "--data-dir",
            d,
            "--initial-cluster",
            &cluster,
        ],
    );
    assert!(!out.status.success());
    assert!(one_line(&out.stderr).contains("--store-id"));
    // Each of the other required flags left out, one at a time.
    let full = [
        ("--store-id", "1"),
        ("--addr", addrs[0].as_str()),
        ("--data-dir", d),
        ("--initial-cluster", cluster.as_str()),
    ];
    for missing in ["--addr", "--data-dir", "--initial-cluster"] {
        let args: Vec<&str> = full
            .iter()
            .filter(|(flag, _)| *flag != missing)
            .flat_map(|(flag, value)| [*flag, *value])
            .collect();
        let out = run(SERVER, &args);
        assert!(!out.status.success(), "without {missing}");
        assert!(one_line(&out.stderr).contains(missing), "without {missing}");
    }
    assert!(!dir.exists(), "nothing was created by a refused start");
    let out = run(SERVER, &["--store-id", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out.stderr).contains("store-id"));
    let out = run(
        SERVER,
        &[
            "--store-id",
            "3",
            "--addr",
            &addrs[0],
            "--data-dir",
            d,
            "--initial-cluster",
            &cluster,
        ],
    );
    assert!(one_line(&out.stderr).contains("does not contain store 3"));
    let out = run(
        SERVER,
        &[
            "--store-id",
            "1",
            "--addr",
            &addrs[0],
            "--data-dir",
            d,
            "--initial-cluster",
            "1=nohost",
        ],
    );
    assert!(one_line(&out.stderr).contains("HOST:PORT"));
    let bad_cfg = root.path().join("bad.toml");
    std::fs::write(&bad_cfg, "raft-election-timeout-tick = 10\n").unwrap();
    let out = run(
        SERVER,
        &["--config", bad_cfg.to_str().unwrap(), "--store-id", "1"],
    );
    assert!(one_line(&out.stderr).contains("unknown field"));
    // Values the raft clock cannot count with: refused before anything starts.
    std::fs::write(
        &bad_cfg,
        "raft-election-timeout-ticks = 9223372036854775807\n",
    )
    .unwrap();
    let never = root.path().join("never-started");
    let out = run(
        SERVER,
        &[
            "--config",
            bad_cfg.to_str().unwrap(),
            "--store-id",
            "1",
            "--addr",
            &addrs[0],
            "--data-dir",
            never.to_str().unwrap(),
            "--initial-cluster",
            &format!("1={}", addrs[0]),
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(one_line(&out.stderr).contains("must be from 1 to"));
    assert!(
        !never.exists(),
        "nothing is created for a refused configuration"
    );
    let out = run(SERVER, &["--config", "/nonexistent/tinykv.toml"]);
    assert!(one_line(&out.stderr).contains("cannot read config file"));

    // A data dir held by a running server.
    let mut s1 = ServerProc::new(
        &addrs[0],
        &dir,
        vec![
            "--store-id".into(),
            "1".into(),
            "--initial-cluster".into(),
            cluster.clone(),
        ],
    );
    s1.start();
    let other = free_addrs(1);
    let out = run(
        SERVER,
        &[
            "--store-id",
            "1",
            "--addr",
            &other[0],
            "--data-dir",
            d,
            "--initial-cluster",
            &cluster,
        ],
    );
    assert!(!out.status.success());
    assert!(
        one_line(&out.stderr).contains("in use"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The listen address taken.
    let out = run(
        SERVER,
        &[
            "--store-id",
            "1",
            "--addr",
            &addrs[0],
            "--data-dir",
            root.path().join("s9").to_str().unwrap(),
            "--initial-cluster",
            &cluster,
        ],
    );
    assert!(one_line(&out.stderr).contains("cannot listen"));
    s1.terminate();

    // The data dir of store 1 used as store 2, or for another cluster.
    let out = run(
        SERVER,
        &[
            "--store-id",
            "2",
            "--addr",
            &addrs[1],
            "--data-dir",
            d,
            "--initial-cluster",
            &cluster,
        ],
    );
    assert!(one_line(&out.stderr).contains("belongs to store 1"));
    let other_cluster = format!("1={},2={},3=127.0.0.1:9", addrs[0], addrs[1]);
    let out = run(
        SERVER,
        &[
            "--store-id",
            "1",
            "--addr",
            &addrs[0],
            "--data-dir",
            d,
            "--initial-cluster",
            &other_cluster,
        ],
    );
    assert!(one_line(&out.stderr).contains("another cluster"));
    // Unreadable state: a data dir whose kv path is a file.
    let broken = root.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("kv"), b"not a database").unwrap();
    let out = run(
        SERVER,
        &[
            "--store-id",
            "1",
            "--addr",
            &addrs[0],
            "--data-dir",
            broken.to_str().unwrap(),
            "--initial-cluster",
            &cluster,
        ],
    );
    assert!(!out.status.success());
    assert!(one_line(&out.stderr).contains("cannot open"));
}

#[test]
fn test_ctl_round_trip_and_errors() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 3, &["--raft-base-tick-ms", "50"]);
    let eps: Vec<String> = procs.iter().map(|p| p.addr.clone()).collect();
    let eps = eps.join(",");
    let ok = |args: &[&str]| {
        let mut full = vec!["--endpoints", &eps];
        full.extend_from_slice(args);
        let out = run(CTL, &full);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["put", "a", "1"]);
    ok(&["put", "b", "2"]);
    ok(&["--cf", "lock", "put", "a", "L"]);
    assert_eq!(ok(&["get", "a"]), "1\n");
    assert_eq!(ok(&["get", "a", "--cf", "lock"]), "L\n");
    assert_eq!(ok(&["scan", ""]), "a\t1\nb\t2\n");
    assert_eq!(ok(&["scan", "", "--limit", "1"]), "a\t1\n");
    ok(&["delete", "a"]);
    let out = run(CTL, &["--endpoints", &eps, "get", "a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out.stderr).contains("not found"));
    assert!(out.stdout.is_empty());
    let out = run(CTL, &["--endpoints", &eps, "put", "", "v"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out.stderr).contains("empty"));
    let out = run(CTL, &["--endpoints", &eps, "--cf", "bogus", "get", "a"]);
    assert!(one_line(&out.stderr).contains("column family"));
    let long_key = "k".repeat(4097);
    let out = run(CTL, &["--endpoints", &eps, "put", &long_key, "v"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out.stderr).contains("4096"));
    let out = run(CTL, &["--endpoints", &eps, "scan", "", "--limit", "0"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    let out = run(CTL, &["--endpoints", &eps, "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    one_line(&out.stderr);
    for bad in ["0", "-1", "inf", "NaN", "1e300", "1e19"] {
        let flag = format!("--timeout={bad}");
        let out = run(CTL, &["--endpoints", &eps, &flag, "get", "a"]);
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}");
        assert!(
            one_line(&out.stderr).contains("--timeout"),
            "--timeout {bad}"
        );
    }
    // Nobody there: a timeout, one line, exit 1.
    for p in &mut procs {
        p.terminate();
    }
    let out = run(CTL, &["--endpoints", &eps, "--timeout", "0.5", "get", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out.stderr).contains("no answer within"));
}

/// `tinykv-bench` against a real cluster: with `--ops` it sends exactly that many measured
/// requests after the warm-up, reports them with the latency line, and the preload of a mixed run
/// wrote every key; bad flags get one line and a non-zero exit.
#[test]
fn test_bench_reports_the_measured_run() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 3, &["--raft-base-tick-ms", "50"]);
    let eps: Vec<String> = procs.iter().map(|p| p.addr.clone()).collect();
    let eps = eps.join(",");
    for api in ["batch", "unary"] {
        let out = run(
            BENCH,
            &[
                "--endpoints",
                &eps,
                "--api",
                api,
                "--clients",
                "4",
                "--workload",
                "mixed",
                "--keys",
                "20",
                "--value-size",
                "16",
                "--ops",
                "150",
                "--warmup",
                "0.3",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{api}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        assert!(lines[0].starts_with("workload=Mixed"), "{stdout}");
        assert!(lines[1].starts_with("ops=150 errors=0 "), "{stdout}");
        let field_of = |line: &str, name: &str| -> f64 {
            let f = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"));
            f.parse().unwrap()
        };
        let field = |name: &str| field_of(lines[2], name);
        let (p50, p99, max) = (field("p50="), field("p99="), field("max="));
        // Measured from the end of the warm-up to the last answer: a run that counted the
        // warm-up's requests would end before the measured part starts.
        let throughput = field_of(lines[1], "throughput=");
        assert!(throughput.is_finite() && throughput > 0.0, "{stdout}");
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("[warm-up]"));
    }
    let value = run(CTL, &["--endpoints", &eps, "get", "bench0000000019"]);
    assert!(value.status.success(), "the preload wrote every key");
    assert_eq!(String::from_utf8_lossy(&value.stdout).trim().len(), 16);
    for bad in [
        &["--clients", "0"][..],
        &["--warmup=-1"][..],
        &["--duration", "0"][..],
        &["--duration", "inf"][..],
        &["--duration", "1e300"][..],
        &["--timeout", "1e19"][..],
        &["--warmup", "NaN"][..],
        &["--workload", "sideways"][..],
    ] {
        let mut args = vec!["--endpoints", &eps];
        args.extend_from_slice(bad);
        let out = run(BENCH, &args);
        assert!(!out.status.success(), "{bad:?}");
        one_line(&out.stderr);
    }
}

/// A scan whose answer would not fit in one gRPC message is refused with OUT_OF_RANGE and a
/// message (not cut short, and not failing the batch stream it came on); a smaller one is served.
#[test]
fn test_oversized_scan_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 1, &[]);
    let unary = Client::new(vec![procs[0].addr.clone()], Duration::from_secs(30)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Nine values just under the raft entry limit (8 MiB - 8 KiB): 75 MB in all, over the
        // 64 MiB message limit.
        let value = vec![b'v'; (8 << 20) - (16 << 10)];
        for i in 0..9u8 {
            unary.put("", &[b'k', i], &value).await.unwrap();
        }
        for client in [unary.clone(), unary.clone().batched()] {
            match client.scan("", b"", 9).await {
                Err(ClientError::Rejected { code, message }) => {
                    assert_eq!(code, Code::OutOfRange, "{message}");
                    assert!(message.contains("message limit"), "{message}");
                }
                other => panic!("expected OUT_OF_RANGE, got {:?}", other.map(|v| v.len())),
            }
            // The stream goes on: small requests beside it, and a scan that fits.
            assert_eq!(
                client.get("", b"k\x00").await.unwrap().map(|v| v.len()),
                Some(value.len())
            );
            let got = client.scan("", b"", 7).await.unwrap();
            assert_eq!(got.len(), 7);
        }
    });
}

/// A put of key `a` with `ctx`, its answer (each put writes its own value, so the end state tells
/// which one was applied).
async fn put_a(
    raw: &mut TinyKvClient<tonic::transport::Channel>,
    ctx: proto::kvrpcpb::Context,
    value: &[u8],
) -> proto::kvrpcpb::RawPutResponse {
    let req = RawPutRequest {
        context: Some(ctx),
        key: b"a".to_vec(),
        value: value.to_vec(),
        cf: String::new(),
    };
    raw.raw_put(req).await.unwrap().into_inner()
}

/// A request whose `Context` names a region is checked against that region, and what is wrong
/// comes back in `region_error` (TinyKV's contract), not as a gRPC failure: an unknown region
/// (RegionNotFound), a stale epoch (EpochNotMatch, with the current region), a term older than
/// the leader's (StaleCommand); the same request with the right context is served.
#[test]
fn test_region_errors_reach_the_client() {
    use proto::kvrpcpb::Context;
    use proto::metapb::RegionEpoch;

    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 1, &["--raft-base-tick-ms", "50"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::new(vec![procs[0].addr.clone()], Duration::from_secs(20)).unwrap();
        client.put("", b"a", b"1").await.expect("the store serves");
        let mut raw = TinyKvClient::connect(format!("http://{}", procs[0].addr))
            .await
            .unwrap();

        let unknown = Context {
            region_id: 99,
            ..Default::default()
        };
        let e = put_a(&mut raw, unknown, b"unknown").await;
        let e = e.region_error.expect("region 99 is not here");
        assert_eq!(e.region_not_found.map(|r| r.region_id), Some(99), "{e:?}");

        let stale_epoch = Context {
            region_id: 1,
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 999,
            }),
            ..Default::default()
        };
        let e = put_a(&mut raw, stale_epoch, b"epoch").await;
        let e = e.region_error.expect("the epoch is not the region's");
        let before = client.get("", b"a").await.unwrap();
        assert_eq!(
            before.as_deref(),
            Some(&b"1"[..]),
            "no refused put was applied"
        );
        let current = e.epoch_not_match.expect("EpochNotMatch").current_regions;
        assert_eq!(current.len(), 1, "the current region comes with the error");
        let region = current[0].clone();
        assert_eq!(region.id, 1);

        let right = Context {
            region_id: 1,
            region_epoch: region.region_epoch,
            peer: region.peers.iter().find(|p| p.store_id == 1).copied(),
            term: 0,
        };
        let ok = put_a(&mut raw, right, b"2").await;
        assert!(ok.region_error.is_none() && ok.error.is_empty(), "{ok:?}");

        // A bootstrapped region starts at term 5, so its leader's term is past 2.
        let old_term = Context { term: 1, ..right };
        let e = put_a(&mut raw, old_term, b"term").await;
        let e = e.region_error.expect("term 1 is stale");
        assert!(e.stale_command.is_some(), "{e:?}");
    });
    procs[0].terminate();
    assert_eq!(
        common::engine_get_many(&procs[0].dir, "default", &[b"a".to_vec()]),
        vec![Some(b"2".to_vec())],
        "the put with the right context was applied, the stale-term one after it was not"
    );
}

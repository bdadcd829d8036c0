//! Process-level tests: real `tinykv-server` processes on loopback ports with RocksDB in temp
//! directories, driven through gRPC. A leader is SIGKILLed while clients write (some writes in
//! flight at the kill); every write that was acknowledged must afterwards be readable and in the
//! kv engine of every store, including the killed and restarted one, and a store that was down
//! while the others moved on catches up. Writers use both unary calls and BatchRaw streams.
//! `scripts/cluster.sh` (what `make cluster` runs) starts a scheduler and three stores, stops
//! them cleanly on Ctrl-C and resumes from the same data; `scripts/cluster.sh add` adds a store.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{engine_get_many, start_cluster, ServerProc};
use kvserver::client::Client;

const FAST: &[&str] = &["--raft-base-tick-ms", "50"];

fn client_of(procs: &[ServerProc]) -> Client {
    Client::new(
        procs.iter().map(|p| p.addr.clone()).collect(),
        Duration::from_secs(20),
    )
    .unwrap()
}

/// Stops every store cleanly and checks each holds every pair of `acked` in its kv engine. A
/// store still catching up gets more time: the cluster is restarted and checked again, up to
/// three times.
fn assert_everywhere(procs: &mut [ServerProc], acked: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let keys: Vec<Vec<u8>> = acked.keys().cloned().collect();
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        for p in procs.iter_mut() {
            p.terminate();
        }
        let mut missing = Vec::new();
        for p in procs.iter() {
            let got = engine_get_many(&p.dir, "default", &keys);
            let lost = keys
                .iter()
                .zip(&got)
                .filter(|(k, v)| v.as_deref() != Some(acked[*k].as_slice()))
                .count();
            if lost > 0 {
                missing.push((p.addr.clone(), lost));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            round < 2,
            "acknowledged writes missing after 3 rounds (store, count): {missing:?}"
        );
        for p in procs.iter_mut() {
            p.start();
        }
    }
}

/// Waits until `acked` holds at least `n` writes; panics after 60 s.
fn wait_for_acks(acked: &Mutex<BTreeMap<Vec<u8>, Vec<u8>>>, n: usize, when: &str) {
    let start = std::time::Instant::now();
    while acked.lock().unwrap().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{when}: only {} of {n} writes acknowledged within 60 s",
            acked.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leader is SIGKILLed while eight writers (half on BatchRaw streams) keep writing: each
/// writer loops until told to stop, so writes are in flight at the kill, and the test asserts that
/// some were (started before the kill, answered after it). Every acknowledged write must then be
/// readable through the new leader and be in every store's kv engine once the killed store is back;
/// a write whose answer never came may or may not be there.
#[test]
fn test_leader_sigkill_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 3, FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs);
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    rt.block_on(async {
        client.put("", b"warmup", b"1").await.expect("first write");
    });
    acked
        .lock()
        .unwrap()
        .insert(b"warmup".to_vec(), b"1".to_vec());
    // 0: before the kill; 1: SIGKILL being sent; 2: the leader is dead (reaped).
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Writes started before the kill and answered after it: (acknowledged, failed).
    let across = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let batched = client_of(&procs).batched();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = if w % 2 == 0 { &client } else { &batched };
            let (client, acked) = (client.clone(), acked.clone());
            let (phase, stop, across) = (phase.clone(), stop.clone(), across.clone());
            rt.spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let k = format!("w{w}-{i:06}").into_bytes();
                    let v = format!("value {w} {i}").into_bytes();
                    i += 1;
                    let before_kill = phase.load(Ordering::SeqCst) == 0;
                    let ok = client.put("", &k, &v).await.is_ok();
                    if before_kill && phase.load(Ordering::SeqCst) == 2 {
                        let n = if ok { &across.0 } else { &across.1 };
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    if ok {
                        acked.lock().unwrap().insert(k, v);
                    }
                }
            })
        })
        .collect();
    wait_for_acks(&acked, 200, "before the kill");
    let leader = client.leader().expect("the client found a leader");
    let idx = procs.iter().position(|p| p.addr == leader).unwrap();
    phase.store(1, Ordering::SeqCst);
    procs[idx].kill();
    phase.store(2, Ordering::SeqCst);
    let at_kill = acked.lock().unwrap().len();
    // The writers go on through the election of a new leader, then are told to stop.
    wait_for_acks(&acked, at_kill + 200, "after the kill");
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    let (across_ok, across_failed) = (
        across.0.load(Ordering::SeqCst),
        across.1.load(Ordering::SeqCst),
    );
    eprintln!(
        "{} writes acknowledged ({at_kill} before the kill); {across_ok} acknowledged and \
         {across_failed} failed of those in flight at the kill",
        acked.len()
    );
    assert!(
        across_ok + across_failed > 0,
        "no write was in flight when the leader was killed"
    );
    procs[idx].start();
    // Reads through the new leader see every acknowledged write.
    rt.block_on(async {
        for (k, v) in acked.iter() {
            assert_eq!(
                client.get("", k).await.unwrap().as_deref(),
                Some(v.as_slice()),
                "acknowledged write of {} lost",
                String::from_utf8_lossy(k)
            );
        }
    });
    assert_everywhere(&mut procs, &acked);
}

#[test]
fn test_restarted_store_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 3, FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs);
    let mut acked = BTreeMap::new();
    rt.block_on(async {
        client.put("", b"before", b"0").await.unwrap();
    });
    acked.insert(b"before".to_vec(), b"0".to_vec());
    // Ctrl-C (SIGINT) stops a store as cleanly as SIGTERM: exit status 0.
    procs[2].interrupt();
    rt.block_on(async {
        for i in 0..300 {
            let k = format!("k{i:04}").into_bytes();
            client.put("", &k, b"while down").await.unwrap();
            acked.insert(k, b"while down".to_vec());
        }
        // Overwrites and deletes while the store is down must reach it too.
        client.put("", b"k0000", b"new").await.unwrap();
        client.delete("", b"k0001").await.unwrap();
    });
    acked.insert(b"k0000".to_vec(), b"new".to_vec());
    acked.remove(b"k0001".as_slice());
    procs[2].start();
    assert_everywhere(&mut procs, &acked);
    let got = engine_get_many(&procs[2].dir, "default", &[b"k0001".to_vec()]);
    assert_eq!(got[0], None, "the delete reached the restarted store");
}

#[test]
fn test_lagging_store_catches_up_by_snapshot() {
    let root = tempfile::tempdir().unwrap();
    // A short log: the writes made while store 3 is down are compacted away, so it can only
    // catch up through a snapshot streamed over the `Snapshot` RPC.
    let args = [
        "--raft-base-tick-ms",
        "50",
        "--raft-log-gc-count-limit",
        "20",
    ];
    let mut procs = start_cluster(root.path(), 3, &args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs);
    let mut acked = BTreeMap::new();
    procs[2].terminate();
    rt.block_on(async {
        for i in 0..400 {
            let k = format!("s{i:04}").into_bytes();
            let v = vec![b'v'; 1000];
            client.put("", &k, &v).await.unwrap();
            acked.insert(k, v);
        }
        client.put("lock", b"only-in-lock", b"L").await.unwrap();
    });
    procs[2].start();
    assert_everywhere(&mut procs, &acked);
    let got = engine_get_many(&procs[2].dir, "lock", &[b"only-in-lock".to_vec()]);
    assert_eq!(
        got[0].as_deref(),
        Some(&b"L"[..]),
        "every column family travels"
    );
    let log = procs[2].log_text();
    assert!(
        log.contains("snapshot received"),
        "store 3 caught up without a snapshot: the log was not compacted?\n{log}"
    );
}

#[test]
fn test_batched_client_reconnects_to_a_restarted_store() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 1, FAST);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&procs).batched();
    rt.block_on(async {
        client.put("", b"k", b"1").await.unwrap();
    });
    // The store goes away under the open stream and comes back on the same address: the next
    // requests open a new stream to it.
    procs[0].kill();
    procs[0].start();
    rt.block_on(async {
        assert_eq!(
            client.get("", b"k").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        let puts: Vec<_> = (0..32u8)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.put("", &[b'p', i], &[i]).await })
            })
            .collect();
        for p in puts {
            p.await.unwrap().unwrap();
        }
        let got = client.scan("", b"p", 100).await.unwrap();
        assert_eq!(got.len(), 32);
        assert!(got.iter().all(|(k, v)| k[1] == v[0]));
    });
}

/// `n` consecutive free loopback ports (`scripts/cluster.sh` puts store N on base+N-1).
fn free_port_run(n: u16) -> u16 {
    use std::net::TcpListener;
    for _ in 0..200 {
        // Below Linux's ephemeral range (32768-60999), where outgoing connections take ports.
        let base = 20_000 + rand::random::<u16>() % 12_000;
        let held: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Kills a process group (a script and the processes it started) when dropped: a no-op after a
/// clean stop, a clean-up after a failed assertion.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Where `scripts/cluster.sh` runs in a test: its data dir, ports and binaries moved aside.
struct ScriptEnv {
    script: String,
    bin_dir: std::path::PathBuf,
    data: std::path::PathBuf,
    /// Store N listens on base+N-1.
    base: u16,
    /// The scheduler's address.
    sched: String,
}

impl ScriptEnv {
    /// Ports for four stores and the scheduler (the port after theirs), data under `root`.
    fn new(root: &std::path::Path) -> ScriptEnv {
        // The manifest dir as cargo gives it when the test runs (a build reused from another
        // checkout of the same commit has that checkout's path compiled in); the compiled-in one
        // otherwise.
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let bin_dir = std::path::Path::new(common::SERVER)
            .parent()
            .unwrap()
            .to_path_buf();
        // The scheduler is another crate's binary: cargo builds it next to this crate's ones
        // with the workspace (`cargo build --workspace`, `cargo test --workspace`).
        let scheduler = bin_dir.join("tinykv-scheduler");
        assert!(
            scheduler.is_file(),
            "{} is missing: build it with `cargo build --workspace`",
            scheduler.display()
        );
        let base = free_port_run(5);
        ScriptEnv {
            script: format!("{manifest}/../scripts/cluster.sh"),
            bin_dir,
            data: root.join("data"),
            base,
            sched: format!("127.0.0.1:{}", base + 4),
        }
    }

    /// `tinykv-ctl --scheduler <the script's scheduler> --timeout 20 args...`.
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--scheduler", self.sched.as_str(), "--timeout", "20"];
        all.extend_from_slice(args);
        common::run(common::CTL, &all)
    }

    /// Starts `cluster.sh [args...] BIN_DIR` in a process group of its own (so that a failed
    /// assertion kills it and everything it started), and reads its output up to its greeting's
    /// "Press Ctrl-C". With `ignore_int` the script starts with SIGINT ignored, as it does from a
    /// non-interactive shell's background job: bash cannot trap a signal ignored on entry, so it
    /// only sees its processes exit, cleanly, on the group's SIGINT. From a terminal it can trap.
    fn start(&self, args: &[&str], ignore_int: bool) -> Script {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let trap = if ignore_int { "trap '' INT; " } else { "" };
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("{trap}exec bash \"$0\" \"$@\""))
            .arg(&self.script)
            .args(args)
            .arg(&self.bin_dir)
            .env("TINYKV_DATA", &self.data)
            .env("TINYKV_BASE_PORT", self.base.to_string())
            .env("TINYKV_SCHEDULER_PORT", (self.base + 4).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("run scripts/cluster.sh");
        let group = KillGroupOnDrop(child.id());
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut greeting = String::new();
        while !greeting.contains("Press Ctrl-C") {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                panic!("cluster.sh {args:?} ended early: {greeting}{err}");
            }
            greeting.push_str(&line);
        }
        Script {
            child,
            out,
            greeting,
            _group: group,
        }
    }
}

/// A running `scripts/cluster.sh`.
struct Script {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    /// Its output up to "Press Ctrl-C".
    greeting: String,
    _group: KillGroupOnDrop,
}

impl Script {
    /// Ctrl-C as a terminal sends it: SIGINT to the script's whole process group. Returns the
    /// exit status and the rest of the output (stdout, then stderr).
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let status = common::signal_group_and_wait(&mut self.child, "INT", "cluster.sh");
        self.rest(status)
    }

    /// Waits (at most 60 s) for the script to end by itself.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "cluster.sh did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.rest(status)
    }

    fn rest(mut self, status: std::process::ExitStatus) -> (std::process::ExitStatus, String) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut rest).unwrap();
        (status, rest)
    }
}

/// Checks the output of a cluster script stopped by Ctrl-C: exit 0, every store and then the
/// scheduler stopped cleanly, no process called unexpectedly gone.
fn assert_stopped_cleanly((status, rest): (std::process::ExitStatus, String)) {
    assert!(status.success(), "exit {status}: {rest}");
    assert!(rest.contains("all stores stopped cleanly"), "{rest}");
    assert!(rest.contains("the scheduler stopped cleanly"), "{rest}");
    assert!(!rest.contains("unexpectedly"), "{rest}");
}

/// `scripts/cluster.sh` as `make cluster` runs it, with its data and ports moved aside: it starts
/// the scheduler and three stores with `--scheduler`, prints how to use the CLI once they run,
/// `tinykv-ctl --scheduler` works against it, Ctrl-C (SIGINT to the script's whole process
/// group, as a terminal sends it) stops every process cleanly (exit 0) without calling any exit
/// unexpected, whether the script can trap SIGINT or not, and a second run resumes from the same
/// data.
#[test]
fn test_cluster_script_serves_stops_cleanly_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let env = ScriptEnv::new(root.path());
    let run_script = |first: bool| {
        let script = env.start(&[], !first);
        // Its greeting says the processes run and how to reach them.
        let put = format!("tinykv-ctl --scheduler {} put hello world", env.sched);
        assert!(script.greeting.contains(&put), "{}", script.greeting);
        if first {
            let put = env.ctl(&["put", "hello", "world"]);
            assert!(put.status.success(), "{put:?}");
        }
        let get = env.ctl(&["get", "hello"]);
        assert!(get.status.success(), "{get:?}");
        assert_eq!(String::from_utf8_lossy(&get.stdout), "world\n");
        let scan = env.ctl(&["scan", "", "--limit", "10"]);
        assert_eq!(String::from_utf8_lossy(&scan.stdout), "hello\tworld\n");
        // The stores exit cleanly on the group's SIGINT, which is expected; the script stops
        // every process and says so, with no word of one exiting unexpectedly.
        assert_stopped_cleanly(script.interrupt());
    };
    run_script(true);
    for i in 1..=3 {
        assert!(env.data.join(format!("store-{i}")).is_dir());
        assert!(env.data.join(format!("store-{i}.log")).is_file());
    }
    assert!(env.data.join("scheduler").is_dir());
    assert!(env.data.join("scheduler.log").is_file());
    // The second run serves what the first one wrote, with SIGINT ignored by the script.
    run_script(false);
}

/// The stores' rows of `tinykv-ctl stores` whose state is Up.
fn stores_up(env: &ScriptEnv) -> Vec<String> {
    let out = env.ctl(&["stores"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2) == Some("Up"))
        .map(str::to_string)
        .collect()
}

/// `scripts/cluster.sh add` (what `make cluster-add` runs) starts a fourth store on the port after
/// the three, against the running scheduler, which registers it; stopping the cluster stops it
/// too (cleanly: its own script says so and exits 0), and the cluster's next run starts it with
/// the other three.
#[test]
fn test_cluster_script_adds_a_store() {
    let root = tempfile::tempdir().unwrap();
    let env = ScriptEnv::new(root.path());
    let cluster = env.start(&[], false);
    let put = env.ctl(&["put", "hello", "world"]);
    assert!(put.status.success(), "{put:?}");
    let fourth = format!("127.0.0.1:{}", env.base + 3);
    let added = env.start(&["add"], false);
    assert!(
        added
            .greeting
            .contains(&format!("Store 4 running on {fourth}")),
        "{}",
        added.greeting
    );
    // The scheduler lists it once its first heartbeat arrives.
    let start = std::time::Instant::now();
    loop {
        let up = stores_up(&env);
        if up.len() == 4 && up.iter().any(|l| l.contains(&fourth)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the fourth store did not register: {up:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let get = env.ctl(&["get", "hello"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "world\n", "{get:?}");
    assert!(env.data.join("store-4.pid").is_file());
    // Ctrl-C in the cluster's terminal: the cluster stops the added store too.
    assert_stopped_cleanly(cluster.interrupt());
    let (status, rest) = added.wait();
    assert!(status.success(), "exit {status}: {rest}");
    assert!(rest.contains("store 4 stopped cleanly"), "{rest}");
    assert!(!env.data.join("store-4.pid").exists());
    // The next run resumes all four.
    let cluster = env.start(&[], false);
    assert!(
        cluster.greeting.contains("stores 1-4") && cluster.greeting.contains(&fourth),
        "{}",
        cluster.greeting
    );
    let get = env.ctl(&["get", "hello"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "world\n", "{get:?}");
    assert_stopped_cleanly(cluster.interrupt());
}

/// `tinykv-server --standalone` (Project 1, no raft) serves the raw API to `tinykv-ctl`, stops
/// cleanly, and keeps what it acknowledged across a restart.
#[test]
fn test_standalone_server_serves_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let addr = common::free_addrs(1).remove(0);
    let mut server = ServerProc::new(
        &addr,
        &root.path().join("standalone"),
        vec!["--standalone".into()],
    );
    server.start();
    let ctl = |args: &[&str]| common::ctl(&addr, args);
    assert!(ctl(&["put", "k1", "v1"]).status.success());
    assert!(ctl(&["--cf", "lock", "put", "k2", "v2"]).status.success());
    assert_eq!(String::from_utf8_lossy(&ctl(&["get", "k1"]).stdout), "v1\n");
    server.terminate();
    server.start();
    assert_eq!(
        String::from_utf8_lossy(&ctl(&["--cf", "lock", "scan", ""]).stdout),
        "k2\tv2\n"
    );
    assert!(ctl(&["delete", "k1"]).status.success());
    let missing = ctl(&["get", "k1"]);
    assert_eq!(missing.status.code(), Some(1));
    server.terminate();
}

//! Helpers of the process-level tests: free loopback ports, `tinykv-server` processes in temp data
//! directories (start, SIGKILL, SIGTERM, SIGINT, restart), and reading a stopped store's kv engine.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, ALL_CFS};

/// The server binary under test.
pub const SERVER: &str = env!("CARGO_BIN_EXE_tinykv-server");
/// The CLI under test.
pub const CTL: &str = env!("CARGO_BIN_EXE_tinykv-ctl");
/// The load generator under test.
pub const BENCH: &str = env!("CARGO_BIN_EXE_tinykv-bench");

/// `n` loopback addresses with ports that were free a moment ago.
pub fn free_addrs(n: usize) -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// One `tinykv-server` process and how to start it again.
pub struct ServerProc {
    /// The listen address.
    pub addr: String,
    /// The data directory.
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProc {
    /// A server with `args` (plus --addr and --data-dir), not started yet.
    pub fn new(addr: &str, dir: &Path, args: Vec<String>) -> ServerProc {
        ServerProc {
            addr: addr.to_string(),
            dir: dir.to_path_buf(),
            args,
            child: None,
            log: dir.with_extension("log"),
        }
    }

    /// Starts the process and waits until it accepts connections (panics after 20 s, showing its log).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = Command::new(SERVER)
            .args(&self.args)
            .arg("--addr")
            .arg(&self.addr)
            .arg("--data-dir")
            .arg(&self.dir)
            .env(
                "TINYKV_LOG",
                std::env::var("TINYKV_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tinykv-server");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "server {} exited with {status}: {}",
                    self.addr,
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "server {} did not start: {}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process dies at once, with no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM, then waits for a clean exit (status 0); panics if it takes over 20 s.
    pub fn terminate(&mut self) {
        self.stop_with("TERM");
    }

    /// SIGINT (Ctrl-C), then waits for a clean exit as [`ServerProc::terminate`] does.
    pub fn interrupt(&mut self) {
        self.stop_with("INT");
    }

    fn stop_with(&mut self, signal: &str) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let what = format!("server {}", self.addr);
        let status = signal_and_wait(&mut c, signal, &what);
        assert!(
            status.success(),
            "{what} exited with {status} on SIG{signal}: {}",
            self.log_text()
        );
    }

    /// Whether the process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cluster of `n` server processes on free ports under `root`, started.
pub fn start_cluster(root: &Path, n: usize, extra: &[&str]) -> Vec<ServerProc> {
    let addrs = free_addrs(n);
    let initial: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let initial = initial.join(",");
    let mut procs: Vec<ServerProc> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut args = vec![
                "--store-id".to_string(),
                (i + 1).to_string(),
                "--initial-cluster".to_string(),
                initial.clone(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            ServerProc::new(a, &root.join(format!("store-{}", i + 1)), args)
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    procs
}

/// Runs a command to completion.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().expect("run command")
}

/// Sends SIG`signal` to `child` and waits for it to exit; kills it and panics after 30 s.
pub fn signal_and_wait(child: &mut Child, signal: &str, what: &str) -> ExitStatus {
    signal_target_and_wait(child, child.id().to_string(), signal, what)
}

/// Sends SIG`signal` to every process of `child`'s process group (`child` must lead its own
/// group), as a terminal's Ctrl-C does to its foreground group, and waits for `child` to exit;
/// kills it and panics after 30 s.
pub fn signal_group_and_wait(child: &mut Child, signal: &str, what: &str) -> ExitStatus {
    signal_target_and_wait(child, format!("-{}", child.id()), signal, what)
}

/// Sends SIG`signal` to `target` (a pid, or a negated process group id) and waits for `child` to
/// exit; kills it and panics after 30 s.
fn signal_target_and_wait(
    child: &mut Child,
    target: String,
    signal: &str,
    what: &str,
) -> ExitStatus {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), "--".to_string(), target])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} found no process for {what}");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{what} did not stop within 30 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tinykv-ctl --endpoints endpoints --timeout 20 args...`.
pub fn ctl(endpoints: &str, args: &[&str]) -> Output {
    let mut all = vec!["--endpoints", endpoints, "--timeout", "20"];
    all.extend_from_slice(args);
    run(CTL, &all)
}

/// The value of `key` in `cf` of a stopped store's kv engine.
pub fn engine_get(dir: &Path, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
    let kv = RocksEngine::open(dir.join("kv"), &ALL_CFS).expect("open a stopped store's kv engine");
    kv.get_cf(cf, key).expect("read the kv engine")
}

/// Reads many keys of a stopped store's kv engine in one open.
pub fn engine_get_many(dir: &Path, cf: &str, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let kv = RocksEngine::open(dir.join("kv"), &ALL_CFS).expect("open a stopped store's kv engine");
    keys.iter()
        .map(|k| kv.get_cf(cf, k).expect("read the kv engine"))
        .collect()
}

/// A scheduler in this process on a free port, its state in `dir`, quiet.
pub fn start_scheduler(dir: &Path) -> scheduler::server::RunningScheduler {
    scheduler::server::RunningScheduler::start(
        scheduler::server::ServerConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.to_path_buf(),
            ..Default::default()
        },
        slog::Logger::root(slog::Discard, slog::o!()),
    )
    .expect("start a scheduler")
}

/// Three stores run by the scheduler at `sched`, with fast ticks and heartbeats and small
/// regions (24 KiB: a test's keys soon span several), plus `more` lines of configuration;
/// started.
pub fn start_scheduled_stores(root: &Path, sched: &str, more: &str) -> Vec<ServerProc> {
    let config = root.join("fast.toml");
    std::fs::write(
        &config,
        String::from(
            "raft-base-tick-ms = 50\n\
             raft-wal-preallocate-mb = 0\n\
             region-max-size = \"24KiB\"\n\
             region-split-size = \"16KiB\"\n\
             split-region-check-tick-interval = \"200ms\"\n\
             scheduler-heartbeat-tick-interval = \"200ms\"\n\
             scheduler-store-heartbeat-tick-interval = \"500ms\"\n",
        ) + more,
    )
    .unwrap();
    let mut procs: Vec<ServerProc> = free_addrs(3)
        .iter()
        .enumerate()
        .map(|(i, a)| {
            ServerProc::new(
                a,
                &root.join(format!("store-{i}")),
                vec![
                    "--scheduler".into(),
                    sched.into(),
                    "--config".into(),
                    config.to_str().unwrap().into(),
                ],
            )
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    procs
}

//! `tinykv-bench`: a closed-loop load generator for a TinyKV cluster's raw API.
//!
//! `--clients` tasks each keep one request in flight (on shared HTTP/2 connections: one
//! `BatchRaw` stream per store by default, unary calls with `--api unary`), for
//! `--duration` seconds or until `--ops` requests in all, after `--warmup` seconds of the same
//! load that are not measured (a fresh cluster's first seconds are slower: its write-ahead logs are
//! new files, later ones are recycled). A progress line goes to stderr every second; at the end it
//! prints throughput, latency percentiles (an HDR histogram, microsecond precision) and the error
//! count, all of the measured part alone. Read and mixed workloads first write every key once (not
//! measured) unless `--no-preload`. `--scheduler HOST:PORT` (instead of `--endpoints`) runs it
//! against a multi-region cluster: each request goes to the leader of its key's region.
//!
//! `--workload txn` (needs `--scheduler`) runs bank transfers as Percolator transactions: the
//! `--keys` accounts start with [`INITIAL_BALANCE`] each (written in transactions first, not
//! measured), and each operation moves one unit between two random accounts (read both, write
//! both, commit), run again with a new start timestamp after a write conflict until it commits.
//! Its latency covers those retries; the conflicts are counted, and at the end one snapshot of
//! every account must sum to the starting total (printed, and a failure if not).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use kvserver::client::txn::{TxnClient, TxnClientError};
use kvserver::client::{parse_seconds, parse_seconds_or_zero, Client};
use kvserver::config::{async_runtime, exit_on_error, parse_args_or_exit};
use rand::{Rng, SeedableRng};
use scheduler::tso_client::TsoClient;

/// mimalloc instead of glibc malloc: fewer cycles per allocation on the request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Workload {
    /// Puts only.
    Write,
    /// Gets only (linearizable: each round of reads is confirmed by one ReadIndex quorum check).
    Read,
    /// Half puts, half gets.
    Mixed,
    /// Timestamps from the scheduler (needs --scheduler): each client asks for one at a time;
    /// the clients' requests travel batched on one `Tso` stream.
    Tso,
    /// Two-key transfers between accounts, as transactions (needs --scheduler).
    Txn,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Api {
    /// Every request on one `BatchRaw` stream per store: requests issued together share a
    /// message (this project's extension of the TinyKv service).
    Batch,
    /// Every request its own unary call (`RawPut`, `RawGet`), as a plain TinyKV client does.
    Unary,
}

/// Load generator for a TinyKV cluster.
#[derive(Parser, Debug)]
#[command(name = "tinykv-bench", version, about)]
struct Cli {
    /// The stores of a static cluster, HOST:PORT,HOST:PORT,... [default:
    /// 127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162 when --scheduler is not given either]
    #[arg(long, conflicts_with = "scheduler")]
    endpoints: Option<String>,
    /// The scheduler of a multi-region cluster, HOST:PORT (instead of --endpoints): each request
    /// goes to the leader of its key's region.
    #[arg(long)]
    scheduler: Option<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = Workload::Write)]
    workload: Workload,
    /// Distinct keys, chosen uniformly at random.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Seconds to run (ignored when --ops is given; at most a week).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    duration: Duration,
    /// Total requests to send, instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Seconds of load before the measured part; requests started then are not counted.
    #[arg(long, default_value = "0", value_parser = parse_seconds_or_zero)]
    warmup: Duration,
    /// Per-request deadline in seconds, retries included.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    timeout: Duration,
    /// Threads of the client's async runtime. One thread (the default) costs the least CPU
    /// per request, which matters when the bench shares the cores with the stores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// How requests travel.
    #[arg(long, value_enum, default_value_t = Api::Batch)]
    api: Api,
    /// Skip writing every key before a read or mixed run.
    #[arg(long)]
    no_preload: bool,
}

fn main() {
    let cli: Cli = parse_args_or_exit("tinykv-bench");
    exit_on_error("tinykv-bench", run(cli));
}

/// The stores `--endpoints` names when neither it nor `--scheduler` is given.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162";

/// Fewest concurrent writers of the (unmeasured) preload before a read or mixed run.
const PRELOAD_CLIENTS: usize = 64;

fn key(i: u64) -> Vec<u8> {
    format!("bench{i:010}").into_bytes()
}

/// Every account's balance before a `txn` run.
const INITIAL_BALANCE: i64 = 1000;

/// Accounts written per transaction by the preload of a `txn` run.
const ACCOUNTS_PER_TXN: u64 = 500;

struct Shared {
    client: Client,
    /// The transactional client of a `txn` run.
    txn: Option<TxnClient>,
    /// Transfers run again after a write conflict.
    conflicts: AtomicU64,
    /// The timestamp client of a `tso` run.
    tso: Option<TsoClient>,
    value: Vec<u8>,
    done: AtomicU64,
    errors: AtomicU64,
    issued: AtomicU64,
    stop: AtomicBool,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.clients == 0 || cli.keys == 0 {
        anyhow::bail!("--clients and --keys must be greater than 0");
    }
    let mut client = match &cli.scheduler {
        Some(addr) => Client::with_scheduler(addr.clone(), cli.timeout)?,
        None => {
            let endpoints = cli.endpoints.as_deref().unwrap_or(DEFAULT_ENDPOINTS);
            Client::new(
                endpoints.split(',').map(str::to_string).collect(),
                cli.timeout,
            )?
        }
    };
    if cli.api == Api::Batch {
        client = client.batched();
    }
    if matches!(cli.workload, Workload::Tso | Workload::Txn) && cli.scheduler.is_none() {
        anyhow::bail!("--workload {:?} needs --scheduler", cli.workload);
    }
    if cli.workload == Workload::Txn && cli.keys < 2 {
        anyhow::bail!("--workload txn needs at least 2 accounts (--keys)");
    }
    let txn = match (&cli.scheduler, cli.workload) {
        (Some(addr), Workload::Txn) => Some(TxnClient::new(addr.clone(), cli.timeout)?),
        _ => None,
    };
    let rt = async_runtime(cli.threads.into(), "tinykv-bench")?;
    rt.block_on(async move {
        let value: Vec<u8> = (0..cli.value_size).map(|i| b'a' + (i % 26) as u8).collect();
        let tso = match (&cli.scheduler, cli.workload) {
            (Some(addr), Workload::Tso) => Some(TsoClient::connect(addr).await?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            client,
            txn,
            conflicts: AtomicU64::new(0),
            tso,
            value,
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        if cli.workload == Workload::Txn {
            if !cli.no_preload {
                open_accounts(&shared, cli.keys, cli.clients.max(PRELOAD_CLIENTS)).await?;
            }
            measure(&shared, &cli).await?;
            return check_total(&shared, cli.keys).await;
        }
        if !matches!(cli.workload, Workload::Write | Workload::Tso) && !cli.no_preload {
            // The preload is not measured: it runs with at least PRELOAD_CLIENTS writers, so
            // that a one-client read run does not spend minutes writing its keys first.
            preload(&shared, cli.keys, cli.clients.max(PRELOAD_CLIENTS)).await?;
        }
        measure(&shared, &cli).await
    })
}

/// Writes every key once, with all clients.
async fn preload(shared: &Arc<Shared>, keys: u64, clients: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (shared, next) = (shared.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<_, anyhow::Error>(());
                }
                shared.client.put("", &key(i), &shared.value).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "preloaded {keys} keys in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes every account with [`INITIAL_BALANCE`], [`ACCOUNTS_PER_TXN`] per transaction.
async fn open_accounts(shared: &Arc<Shared>, keys: u64, clients: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.min(keys.div_ceil(ACCOUNTS_PER_TXN) as usize) {
        let (shared, next) = (shared.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let txn = shared
                .txn
                .as_ref()
                .expect("a txn run has a transactional client");
            loop {
                let from = next.fetch_add(ACCOUNTS_PER_TXN, Ordering::Relaxed);
                if from >= keys {
                    return Ok::<_, anyhow::Error>(());
                }
                let mut t = txn.begin().await?;
                for i in from..(from + ACCOUNTS_PER_TXN).min(keys) {
                    t.put(key(i), INITIAL_BALANCE.to_string());
                }
                t.commit().await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "opened {keys} accounts of {INITIAL_BALANCE} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The balance stored in an account (a missing account is an error: the preload writes all).
fn balance(k: &[u8], v: Option<Vec<u8>>) -> Result<i64, TxnClientError> {
    let v = v.ok_or_else(|| {
        TxnClientError::Unexpected(format!(
            "account {} does not exist",
            String::from_utf8_lossy(k)
        ))
    })?;
    String::from_utf8_lossy(&v).parse().map_err(|_| {
        TxnClientError::Unexpected(format!(
            "account {} holds no number",
            String::from_utf8_lossy(k)
        ))
    })
}

/// One transfer of 1 from account `a` to `b`, run again after a write conflict until it
/// commits; how many conflicts it met.
async fn transfer(txn: &TxnClient, a: &[u8], b: &[u8]) -> Result<u64, TxnClientError> {
    let mut conflicts = 0;
    loop {
        let mut t = txn.begin().await?;
        let from = balance(a, t.get(a).await?)?;
        let to = balance(b, t.get(b).await?)?;
        t.put(a, (from - 1).to_string());
        t.put(b, (to + 1).to_string());
        match t.commit().await {
            Ok(_) => return Ok(conflicts),
            Err(e) if e.is_retryable() => conflicts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Reads every account from one snapshot: their sum must be what the preload wrote.
async fn check_total(shared: &Arc<Shared>, keys: u64) -> anyhow::Result<()> {
    let txn = shared
        .txn
        .as_ref()
        .expect("a txn run has a transactional client");
    let t = txn.begin().await?;
    let accounts = t.scan(&key(0), &key(keys), keys as usize).await?;
    let mut total = 0i64;
    for (k, v) in &accounts {
        total += balance(k, Some(v.clone()))?;
    }
    let want = keys as i64 * INITIAL_BALANCE;
    let stats = txn.stats();
    println!(
        "conflicts={} locks_resolved={} lock_waits={} accounts={} total={total} (expected {want})",
        shared.conflicts.load(Ordering::Relaxed),
        stats.resolved(),
        stats.lock_waits.load(Ordering::Relaxed),
        accounts.len(),
    );
    if accounts.len() as u64 != keys || total != want {
        anyhow::bail!(
            "the accounts do not add up: {} accounts summing to {total}, expected {keys} summing \
             to {want}",
            accounts.len()
        );
    }
    Ok(())
}

async fn measure(shared: &Arc<Shared>, cli: &Cli) -> anyhow::Result<()> {
    // The measured part starts after the warm-up; a request counts if it starts in it.
    let start = Instant::now() + cli.warmup;
    let deadline = cli.ops.is_none().then(|| start + cli.duration);
    let mut tasks = Vec::new();
    for c in 0..cli.clients {
        let shared = shared.clone();
        let (workload, keys, ops) = (cli.workload, cli.keys, cli.ops);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64 ^ 0x5eed);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let measured = Instant::now() >= start;
                if let Some(n) = ops {
                    if measured && shared.issued.fetch_add(1, Ordering::Relaxed) >= n {
                        break;
                    }
                }
                let k = key(rng.random_range(0..keys));
                let t = Instant::now();
                let ok = match (workload, &shared.tso, &shared.txn) {
                    (Workload::Tso, Some(tso), _) => tso.get_ts().await.is_ok(),
                    (Workload::Txn, _, Some(txn)) => {
                        let (a, mut b) = (rng.random_range(0..keys), rng.random_range(0..keys - 1));
                        if b >= a {
                            b += 1;
                        }
                        match transfer(txn, &key(a), &key(b)).await {
                            Ok(n) => {
                                shared.conflicts.fetch_add(n, Ordering::Relaxed);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    (Workload::Write, _, _) => {
                        shared.client.put("", &k, &shared.value).await.is_ok()
                    }
                    (Workload::Mixed, _, _) if rng.random_bool(0.5) => {
                        shared.client.put("", &k, &shared.value).await.is_ok()
                    }
                    _ => shared.client.get("", &k).await.is_ok(),
                };
                if !measured {
                    continue;
                }
                if ok {
                    hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
                    shared.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            (hist, Instant::now())
        }));
    }
    if !cli.warmup.is_zero() {
        tokio::time::sleep_until(start.into()).await;
        eprintln!(
            "[warm-up] {:.1} s done; measuring",
            cli.warmup.as_secs_f64()
        );
    }
    // Progress, once a second (the last interval ends at the deadline), until the deadline or
    // until every client is done.
    let mut last = (start, 0u64);
    loop {
        let mut next = Instant::now() + Duration::from_secs(1);
        if let Some(d) = deadline {
            next = next.min(d);
        }
        tokio::time::sleep_until(next.into()).await;
        let done = shared.done.load(Ordering::Relaxed);
        let now = Instant::now();
        eprintln!(
            "[{:5.1}s] {done} ops, {:.0} ops/s, {} errors",
            now.duration_since(start).as_secs_f64(),
            (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64(),
            shared.errors.load(Ordering::Relaxed)
        );
        last = (now, done);
        if deadline.is_some_and(|d| now >= d) || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    // The run ends when its last client does (with --ops, usually before the progress tick).
    let mut end = start;
    for t in tasks {
        let (h, finished) = t.await?;
        hist.add(h)?;
        end = end.max(finished);
    }
    let elapsed = end.duration_since(start).as_secs_f64();
    let done = shared.done.load(Ordering::Relaxed);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "workload={:?} api={:?} clients={} value_size={} keys={} warmup={}s",
        cli.workload,
        cli.api,
        cli.clients,
        cli.value_size,
        cli.keys,
        cli.warmup.as_secs_f64()
    );
    println!(
        "ops={done} errors={} elapsed={elapsed:.2}s throughput={:.0} ops/s",
        shared.errors.load(Ordering::Relaxed),
        done as f64 / elapsed.max(1e-6)
    );
    println!(
        "latency_ms p50={:.3} p99={:.3} p99.9={:.3} max={:.3}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0
    );
    Ok(())
}

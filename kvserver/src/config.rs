//! The server's configuration: command-line flags over an optional TOML file over defaults.
//!
//! The file uses kebab-case keys, every one optional; unknown keys are an error (a typo must not
//! be ignored silently):
//!
//! ```toml
//! store-id = 1
//! addr = "127.0.0.1:20160"
//! data-dir = "data/store-1"
//! initial-cluster = "1=127.0.0.1:20160,2=127.0.0.1:20161,3=127.0.0.1:20162"
//! raft-base-tick-ms = 100          # one base tick of the raft clock
//! raft-heartbeat-ticks = 2
//! raft-election-timeout-ticks = 10 # randomized in [10, 20) ticks
//! raft-log-gc-tick-ticks = 10
//! raft-log-gc-count-limit = 128000
//! raft-entry-max-size = 8388608    # largest raft entry; values up to this less 8 KiB
//! raft-max-size-per-msg = 1048576
//! raft-max-inflight-msgs = 256
//! command-timeout-ms = 5000        # a client request not applied by then fails UNAVAILABLE
//! grpc-threads = 1                 # threads of the async runtime serving gRPC
//! raft-async-sync = true           # sync the raft log off the store's round
//! raft-wal-preallocate-mb = 20     # raft WAL files written to full size at start (0: off)
//! region-max-size = "144MiB"       # a region grows past this: split (bytes or a size string)
//! region-split-size = "96MiB"      # where a split cuts
//! split-region-check-tick-interval = "10s"   # ms number or duration string
//! status-addr = "127.0.0.1:20180"  # serve GET /metrics here (docs/METRICS.md); default: no
//! ```
//!
//! A store runs in one of three modes:
//! - **static** (`--store-id N --initial-cluster 1=h:p,...`): a fixed set of stores, one region
//!   with a peer on each, no scheduler;
//! - **with a scheduler** (`--scheduler HOST:PORT`, TinyKV's Project 3C): the scheduler allocates
//!   the store's id (kept in the data dir), bootstraps the cluster's first region on the first
//!   store to ask, tells stores each other's addresses, and moves regions and leaders; these keys
//!   apply there:
//!
//! ```toml
//! scheduler = "127.0.0.1:2379"
//! scheduler-connect-timeout = "60s"            # how long start-up waits for an unreachable scheduler
//! scheduler-heartbeat-tick-interval = "1s"     # region heartbeats of leaders (default 10 base ticks)
//! scheduler-store-heartbeat-tick-interval = "10s" # store heartbeats (default 100 base ticks)
//! capacity = "0"   # disk size reported to the scheduler; 0: the data dir's filesystem (`df`)
//! gc-tick-interval = "10s"   # how often MVCC GC asks the scheduler for its safe point (0s: never)
//! ```
//!
//!   `--store-id` and `--initial-cluster` are refused with `--scheduler`: the store id comes from
//!   the scheduler and is kept in the data dir, addresses from the scheduler.
//! - **standalone** (`--standalone`, Project 1): one RocksDB, no raft.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::limits::{MAX_GRPC_MESSAGE, RAFT_ENVELOPE_ROOM};
use crate::units::{ReadableDuration, ReadableSize};

/// TinyKV's `SplitRegionCheckTickInterval` (`kv/config/config.go`).
pub const DEFAULT_SPLIT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long start-up keeps retrying an unreachable scheduler by default.
pub const DEFAULT_SCHEDULER_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A configuration problem, described in one line.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The keys a `--config` file may hold.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// This store's id.
    pub store_id: Option<u64>,
    /// Listen address.
    pub addr: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Every store of the cluster: `1=host:port,2=host:port,...`.
    pub initial_cluster: Option<String>,
    /// Base tick, in milliseconds.
    pub raft_base_tick_ms: Option<u64>,
    /// Base ticks between heartbeats.
    pub raft_heartbeat_ticks: Option<usize>,
    /// Base ticks of the election timeout.
    pub raft_election_timeout_ticks: Option<usize>,
    /// Base ticks between raft-log GC checks.
    pub raft_log_gc_tick_ticks: Option<usize>,
    /// Applied entries kept in the log before compaction is proposed.
    pub raft_log_gc_count_limit: Option<u64>,
    /// Largest raft entry, in bytes.
    pub raft_entry_max_size: Option<u64>,
    /// Byte limit of the entries of one append message.
    pub raft_max_size_per_msg: Option<u64>,
    /// Appends in flight to one follower.
    pub raft_max_inflight_msgs: Option<usize>,
    /// Client request timeout, in milliseconds.
    pub command_timeout_ms: Option<u64>,
    /// Threads of the gRPC runtime (default 1; see [`ServerConfig::grpc_threads`]).
    pub grpc_threads: Option<usize>,
    /// Sync the raft log off the store's round (default true; `raftstore::Config::async_raft_sync`).
    pub raft_async_sync: Option<bool>,
    /// Size in MiB of the raft engine's WAL files written out at start (see
    /// [`ServerConfig::raft_wal_preallocate`]); 0 turns it off.
    pub raft_wal_preallocate_mb: Option<u64>,
    /// The scheduler's address, `HOST:PORT`: run with a scheduler (see the module documentation).
    pub scheduler: Option<String>,
    /// How long start-up keeps retrying an unreachable scheduler.
    pub scheduler_connect_timeout: Option<ReadableDuration>,
    /// A region whose data grows past this is split (TiKV's `region-max-size`).
    pub region_max_size: Option<ReadableSize>,
    /// Where a split cuts: after this much of the region's data (TiKV's `region-split-size`).
    pub region_split_size: Option<ReadableSize>,
    /// How often a leader checks whether its region needs a split.
    pub split_region_check_tick_interval: Option<ReadableDuration>,
    /// How often a leader sends its region's heartbeat to the scheduler.
    pub scheduler_heartbeat_tick_interval: Option<ReadableDuration>,
    /// How often the store sends its heartbeat to the scheduler.
    pub scheduler_store_heartbeat_tick_interval: Option<ReadableDuration>,
    /// The capacity reported to the scheduler; 0: the size of the data dir's filesystem.
    pub capacity: Option<ReadableSize>,
    /// Address of the status server (`GET /metrics`), `HOST:PORT`.
    pub status_addr: Option<String>,
    /// How often the MVCC garbage collector asks the scheduler for its GC safe point (0: never).
    pub gc_tick_interval: Option<ReadableDuration>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(one_line(&e.to_string())))
    }
}

pub use scheduler::cmdline::{exit_on_error, one_line, parse_args_or_exit, shutdown_signal};

/// An async runtime of `threads` threads named `name`: the single-threaded scheduler for 1 (the
/// tasks woken together then run in order before their connection writes, so answers leave
/// in batches; see [`ServerConfig::grpc_threads`]), the multi-threaded one otherwise.
pub fn async_runtime(threads: usize, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        0 => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an async runtime needs at least one thread",
            ))
        }
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder.thread_name(name).enable_all().build()
}

/// The resolved configuration of a store.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This store's id (0 in standalone mode when not given).
    pub store_id: u64,
    /// Listen address.
    pub addr: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Store id -> address, for every store of the cluster (empty in standalone mode).
    pub cluster: BTreeMap<u64, String>,
    /// Serve from one local RocksDB without raft (Project 1).
    pub standalone: bool,
    /// The raftstore's configuration.
    pub raft: raftstore::Config,
    /// How long a client request may wait to be applied.
    pub command_timeout: Duration,
    /// Threads of the async runtime serving gRPC and running the store (`crate::store_task`).
    /// With 1 (the default) every connection and request task and the store run on one thread,
    /// in order of wake-up, so the answers a raft round completes together leave together, one
    /// write per connection, and nothing crosses a thread between the network and the store;
    /// on 2 cores that is far fewer `writev` calls and less CPU per put on the leader than with 2
    /// threads (see docs/PERFORMANCE.md). More threads pay off only with spare cores.
    pub grpc_threads: usize,
    /// Bytes of each of two raft-engine WAL files written out when the store starts, so that
    /// its synced appends overwrite blocks on disk from the first write instead of growing a new
    /// file (`RocksEngine::preallocate_wal`; 0: off). Default `WAL_FILE_BYTES` (20 MiB): 40 MiB
    /// written once per start.
    pub raft_wal_preallocate: u64,
    /// The scheduler's address (`HOST:PORT`) when the store runs with one; None in static and
    /// standalone mode.
    pub scheduler: Option<String>,
    /// How long start-up keeps retrying an unreachable scheduler before it gives up.
    pub scheduler_connect_timeout: Duration,
    /// The capacity reported in store heartbeats; 0: the size of the data dir's filesystem.
    pub capacity: u64,
    /// Address of the status server (`GET /metrics`, docs/METRICS.md); None: no status server.
    pub status_addr: Option<String>,
    /// How often MVCC garbage collection asks the scheduler for its safe point and collects
    /// below it (with a scheduler; zero: never). See `crate::gc`.
    pub gc_interval: Duration,
}

/// How often MVCC GC asks for the safe point, by default.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(10);

impl ServerConfig {
    /// Resolves flags over `file` over defaults; `flags` holds what the command line gave.
    pub fn resolve(
        flags: FileConfig,
        file: FileConfig,
        standalone: bool,
    ) -> Result<Self, ConfigError> {
        let pick = |a: Option<u64>, b: Option<u64>| a.or(b);
        let addr = flags
            .addr
            .or(file.addr)
            .ok_or_else(|| ConfigError("missing --addr HOST:PORT".into()))?;
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .ok_or_else(|| ConfigError("missing --data-dir DIR".into()))?;
        let store_id = pick(flags.store_id, file.store_id);
        let cluster_text = flags.initial_cluster.or(file.initial_cluster);
        let mut raft = raftstore::Config::default();
        if let Some(ms) = pick(flags.raft_base_tick_ms, file.raft_base_tick_ms) {
            raft.raft_base_tick_interval = Duration::from_millis(ms);
        }
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = flags.$field.or(file.$field) {
                    raft.$field = v;
                }
            };
        }
        set!(raft_heartbeat_ticks);
        set!(raft_election_timeout_ticks);
        set!(raft_log_gc_tick_ticks);
        set!(raft_log_gc_count_limit);
        set!(raft_entry_max_size);
        set!(raft_max_size_per_msg);
        set!(raft_max_inflight_msgs);
        raft.async_raft_sync = file.raft_async_sync.unwrap_or(true);
        if let Some(ReadableSize(n)) = flags.region_max_size.or(file.region_max_size) {
            raft.region_max_size = n;
        }
        if let Some(ReadableSize(n)) = flags.region_split_size.or(file.region_split_size) {
            raft.region_split_size = n;
        }
        let base = raft.raft_base_tick_interval;
        let split_check = flags
            .split_region_check_tick_interval
            .or(file.split_region_check_tick_interval)
            .map_or(DEFAULT_SPLIT_CHECK_INTERVAL, |d| d.0);
        raft.split_region_check_ticks = ticks_of(split_check, base);
        if let Some(d) = flags
            .scheduler_heartbeat_tick_interval
            .or(file.scheduler_heartbeat_tick_interval)
        {
            raft.scheduler_heartbeat_ticks = ticks_of(d.0, base);
        }
        if let Some(d) = flags
            .scheduler_store_heartbeat_tick_interval
            .or(file.scheduler_store_heartbeat_tick_interval)
        {
            raft.scheduler_store_heartbeat_ticks = ticks_of(d.0, base);
        }
        raft.validate()
            .map_err(|e| ConfigError(format!("bad raft settings: {e}")))?;
        // A raft message carrying the largest entry, or the most entries one message may carry,
        // must fit in a gRPC message with room for its envelope; past that it could never arrive.
        let most = (MAX_GRPC_MESSAGE - RAFT_ENVELOPE_ROOM) as u64;
        if !(64 * 1024..=most).contains(&raft.raft_entry_max_size) {
            return Err(ConfigError(format!(
                "raft-entry-max-size must be from 65536 to {most} bytes (under the gRPC message limit)"
            )));
        }
        if raft.raft_max_size_per_msg > most {
            return Err(ConfigError(format!(
                "raft-max-size-per-msg must be at most {most} bytes (under the gRPC message limit)"
            )));
        }
        let command_timeout = Duration::from_millis(
            pick(flags.command_timeout_ms, file.command_timeout_ms).unwrap_or(5000),
        );
        let grpc_threads = flags.grpc_threads.or(file.grpc_threads).unwrap_or(1);
        if grpc_threads == 0 || grpc_threads > 1024 {
            return Err(ConfigError(format!(
                "grpc-threads must be between 1 and 1024, got {grpc_threads}"
            )));
        }
        let raft_wal_preallocate = match file.raft_wal_preallocate_mb {
            None => raftstore::engine::rocks::WAL_FILE_BYTES,
            Some(mb @ 0..=1024) => mb << 20,
            Some(mb) => {
                return Err(ConfigError(format!(
                    "raft-wal-preallocate-mb must be from 0 to 1024, got {mb}"
                )))
            }
        };
        let scheduler = match flags.scheduler.or(file.scheduler) {
            Some(text) => Some(parse_scheduler_addr(&text)?),
            None => None,
        };
        let scheduler_connect_timeout = flags
            .scheduler_connect_timeout
            .or(file.scheduler_connect_timeout)
            .map_or(DEFAULT_SCHEDULER_CONNECT_TIMEOUT, |d| d.0);
        let capacity = flags.capacity.or(file.capacity).map_or(0, |c| c.0);
        let status_addr = match flags.status_addr.or(file.status_addr) {
            Some(a) => Some(
                scheduler::status::parse_status_addr(&a).map_err(|e| ConfigError(e.to_string()))?,
            ),
            None => None,
        };
        let gc_interval = flags
            .gc_tick_interval
            .or(file.gc_tick_interval)
            .map_or(DEFAULT_GC_INTERVAL, |d| d.0);
        let mut cfg = ServerConfig {
            gc_interval,
            store_id: 0,
            addr,
            data_dir,
            cluster: BTreeMap::new(),
            standalone,
            raft,
            command_timeout,
            grpc_threads,
            raft_wal_preallocate,
            scheduler: None,
            scheduler_connect_timeout,
            capacity,
            status_addr,
        };
        if standalone {
            if scheduler.is_some() {
                return Err(ConfigError(
                    "--scheduler and --standalone exclude each other".into(),
                ));
            }
            cfg.store_id = store_id.unwrap_or(0);
            return Ok(cfg);
        }
        if let Some(scheduler) = scheduler {
            // The scheduler allocates the store id (kept in the data dir) and knows every
            // store's address: a static setting of either would only be a second truth.
            if store_id.is_some() {
                return Err(ConfigError(
                    "--store-id is not used with --scheduler: the scheduler allocates the store id \
                     and the data dir keeps it"
                        .into(),
                ));
            }
            if cluster_text.is_some() {
                return Err(ConfigError(
                    "--initial-cluster is not used with --scheduler: stores learn each other's \
                     addresses from the scheduler"
                        .into(),
                ));
            }
            cfg.scheduler = Some(scheduler);
            return Ok(cfg);
        }
        let store_id = store_id
            .ok_or_else(|| ConfigError("missing --store-id N (or --scheduler HOST:PORT)".into()))?;
        if store_id == 0 {
            return Err(ConfigError("--store-id must be greater than 0".into()));
        }
        let cluster_text = cluster_text.ok_or_else(|| {
            ConfigError("missing --initial-cluster 1=HOST:PORT,2=HOST:PORT,...".into())
        })?;
        let cluster = parse_initial_cluster(&cluster_text)?;
        if !cluster.contains_key(&store_id) {
            return Err(ConfigError(format!(
                "--initial-cluster {cluster_text:?} does not contain store {store_id}"
            )));
        }
        cfg.store_id = store_id;
        cfg.cluster = cluster;
        Ok(cfg)
    }

    /// An id of the cluster, the same for every store given the same `--initial-cluster`: a hash
    /// of its store ids and addresses. A data dir bootstrapped for another cluster has another.
    pub fn cluster_id(&self) -> u64 {
        // FNV-1a: stable across Rust versions and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (id, addr) in &self.cluster {
            for b in format!("{id}={addr};").bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h.max(1)
    }
}

/// Base ticks of `base` that make up at least `d` (one at least; past `usize` saturates, which
/// the raftstore's validation refuses).
fn ticks_of(d: Duration, base: Duration) -> usize {
    let base = base.as_nanos().max(1);
    let n = d.as_nanos().div_ceil(base).max(1);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whether `addr` is `HOST:PORT` with a non-empty host and a port number.
fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !h.contains('/') && p.parse::<u16>().is_ok())
}

/// Parses the scheduler's address: `HOST:PORT`, or `http://HOST:PORT` (TinyKV's form); returns
/// `HOST:PORT`.
pub fn parse_scheduler_addr(text: &str) -> Result<String, ConfigError> {
    let t = text.trim();
    let hp = t.strip_prefix("http://").unwrap_or(t).trim_end_matches('/');
    if !is_host_port(hp) {
        return Err(ConfigError(format!(
            "--scheduler {text:?} is not HOST:PORT (e.g. 127.0.0.1:2379)"
        )));
    }
    Ok(hp.to_string())
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| {
            ConfigError(format!(
                "--initial-cluster entry {part:?} is not ID=HOST:PORT"
            ))
        })?;
        let id: u64 = id.trim().parse().map_err(|_| {
            ConfigError(format!(
                "--initial-cluster entry {part:?}: {id:?} is not a store id"
            ))
        })?;
        if id == 0 {
            return Err(ConfigError(
                "--initial-cluster: store ids start at 1".into(),
            ));
        }
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(ConfigError(format!(
                "--initial-cluster entry {part:?}: {addr:?} is not HOST:PORT"
            )));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError(format!(
                "--initial-cluster names store {id} twice"
            )));
        }
    }
    if out.is_empty() {
        return Err(ConfigError("--initial-cluster is empty".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> FileConfig {
        FileConfig {
            store_id: Some(2),
            addr: Some("127.0.0.1:1".into()),
            data_dir: Some("d".into()),
            initial_cluster: Some("1=127.0.0.1:1,2=127.0.0.1:2".into()),
            ..Default::default()
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let file =
            FileConfig::parse("store-id = 7\nraft-heartbeat-ticks = 3\naddr = \"x:1\"").unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert_eq!(cfg.store_id, 2);
        assert_eq!(cfg.addr, "127.0.0.1:1");
        assert_eq!(
            cfg.raft.raft_heartbeat_ticks, 3,
            "the file fills what flags leave out"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors() {
        let e = FileConfig::parse("raft-heartbeat-tick = 3").unwrap_err();
        assert!(e.0.contains("unknown field"), "{e}");
        assert!(!e.0.contains('\n'));
        let file = FileConfig::parse("raft-heartbeat-ticks = 10").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("election"), "{e}");
        // A raft entry larger than a gRPC message: its largest values could never arrive.
        let file = FileConfig::parse("raft-entry-max-size = 134217728").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("gRPC message limit"), "{e}");
        let file = FileConfig::parse("raft-entry-max-size = 67108864").unwrap();
        assert!(ServerConfig::resolve(flags(), file, false).is_err());
        let file = FileConfig::parse("raft-entry-max-size = 67043328").unwrap();
        assert!(ServerConfig::resolve(flags(), file, false).is_ok());
        let file = FileConfig::parse("raft-max-size-per-msg = 67108864").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("raft-max-size-per-msg"), "{e}");
        let file = FileConfig::parse("raft-election-timeout-ticks = 4000000000").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("must be from 1 to"), "{e}");
    }

    #[test]
    fn initial_cluster_must_name_the_store_and_be_well_formed() {
        let mut f = flags();
        f.store_id = Some(3);
        let e = ServerConfig::resolve(f, FileConfig::default(), false).unwrap_err();
        assert!(e.0.contains("does not contain store 3"), "{e}");
        for bad in ["1=a", "x=a:1", "1=a:1,1=b:2", "0=a:1", "", "1=:80"] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?} accepted");
        }
        let c = parse_initial_cluster("2=h:2, 1=h:1").unwrap();
        assert_eq!(c.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn cluster_id_depends_on_the_members_only() {
        let a = ServerConfig::resolve(flags(), FileConfig::default(), false).unwrap();
        let mut f = flags();
        f.store_id = Some(1);
        let b = ServerConfig::resolve(f, FileConfig::default(), false).unwrap();
        assert_eq!(a.cluster_id(), b.cluster_id());
        let mut f = flags();
        f.initial_cluster = Some("1=127.0.0.1:1,2=127.0.0.1:3".into());
        let c = ServerConfig::resolve(f, FileConfig::default(), false).unwrap();
        assert_ne!(a.cluster_id(), c.cluster_id());
    }

    #[test]
    fn grpc_threads_default_to_one_and_zero_is_refused() {
        let cfg = ServerConfig::resolve(flags(), FileConfig::default(), false).unwrap();
        assert_eq!(cfg.grpc_threads, 1);
        let file = FileConfig::parse("grpc-threads = 4").unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert_eq!(cfg.grpc_threads, 4);
        let mut f = flags();
        f.grpc_threads = Some(0);
        let e = ServerConfig::resolve(f, FileConfig::default(), false).unwrap_err();
        assert!(e.0.contains("grpc-threads"), "{e}");
    }

    #[test]
    fn raft_wal_preallocation_defaults_on_and_is_bounded() {
        let cfg = ServerConfig::resolve(flags(), FileConfig::default(), false).unwrap();
        assert_eq!(
            cfg.raft_wal_preallocate,
            raftstore::engine::rocks::WAL_FILE_BYTES
        );
        let file = FileConfig::parse("raft-wal-preallocate-mb = 0").unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert_eq!(cfg.raft_wal_preallocate, 0);
        let file = FileConfig::parse("raft-wal-preallocate-mb = 64").unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert_eq!(cfg.raft_wal_preallocate, 64 << 20);
        let file = FileConfig::parse("raft-wal-preallocate-mb = 1025").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("raft-wal-preallocate-mb"), "{e}");
    }

    fn scheduler_flags() -> FileConfig {
        FileConfig {
            addr: Some("127.0.0.1:1".into()),
            data_dir: Some("d".into()),
            scheduler: Some("127.0.0.1:2379".into()),
            ..Default::default()
        }
    }

    #[test]
    fn scheduler_mode_needs_no_store_id_and_refuses_static_settings() {
        let cfg = ServerConfig::resolve(scheduler_flags(), FileConfig::default(), false).unwrap();
        assert_eq!(cfg.scheduler.as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(cfg.store_id, 0);
        assert!(cfg.cluster.is_empty());
        assert_eq!(
            cfg.scheduler_connect_timeout,
            DEFAULT_SCHEDULER_CONNECT_TIMEOUT
        );
        let mut f = scheduler_flags();
        f.scheduler = Some("http://h:2379/".into());
        let cfg = ServerConfig::resolve(f, FileConfig::default(), false).unwrap();
        assert_eq!(cfg.scheduler.as_deref(), Some("h:2379"));
        for bad in ["h", "h:", ":2379", "h:99999", "h:port", "grpc://h:1", ""] {
            let mut f = scheduler_flags();
            f.scheduler = Some(bad.into());
            let e = ServerConfig::resolve(f, FileConfig::default(), false).unwrap_err();
            assert!(e.0.contains("is not HOST:PORT"), "{bad:?}: {e}");
        }
        let mut f = scheduler_flags();
        f.store_id = Some(1);
        let e = ServerConfig::resolve(f, FileConfig::default(), false).unwrap_err();
        assert!(
            e.0.contains("--store-id is not used with --scheduler"),
            "{e}"
        );
        let file = FileConfig::parse("initial-cluster = \"1=h:1\"").unwrap();
        let e = ServerConfig::resolve(scheduler_flags(), file, false).unwrap_err();
        assert!(e.0.contains("--initial-cluster is not used"), "{e}");
        let e = ServerConfig::resolve(scheduler_flags(), FileConfig::default(), true).unwrap_err();
        assert!(e.0.contains("--standalone"), "{e}");
        let file =
            FileConfig::parse("scheduler = \"h:1\"\nscheduler-connect-timeout = \"5s\"").unwrap();
        let mut f = scheduler_flags();
        f.scheduler = None;
        let cfg = ServerConfig::resolve(f, file, false).unwrap();
        assert_eq!(cfg.scheduler.as_deref(), Some("h:1"));
        assert_eq!(cfg.scheduler_connect_timeout, Duration::from_secs(5));
        let e = ServerConfig::resolve(FileConfig::default(), FileConfig::default(), false);
        assert!(e.is_err());
    }

    #[test]
    fn region_sizes_and_intervals_map_onto_the_raftstore() {
        let cfg = ServerConfig::resolve(flags(), FileConfig::default(), false).unwrap();
        // TinyKV's defaults (kv/config/config.go): 144 MiB, 96 MiB, a split check every 10 s.
        assert_eq!(cfg.raft.region_max_size, 144 << 20);
        assert_eq!(cfg.raft.region_split_size, 96 << 20);
        assert_eq!(cfg.raft.split_region_check_ticks, 100);
        let file = FileConfig::parse(
            "region-max-size = \"1MiB\"\nregion-split-size = 65536\n\
             split-region-check-tick-interval = \"1s\"\nraft-base-tick-ms = 50\n\
             scheduler-heartbeat-tick-interval = 120\n\
             scheduler-store-heartbeat-tick-interval = \"2s\"\ncapacity = \"1GiB\"",
        )
        .unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert_eq!(cfg.raft.region_max_size, 1 << 20);
        assert_eq!(cfg.raft.region_split_size, 64 << 10);
        assert_eq!(cfg.raft.split_region_check_ticks, 20);
        assert_eq!(
            cfg.raft.scheduler_heartbeat_ticks, 3,
            "120 ms is 3 ticks of 50 ms"
        );
        assert_eq!(cfg.raft.scheduler_store_heartbeat_ticks, 40);
        assert_eq!(cfg.capacity, 1 << 30);
        let file = FileConfig::parse("region-max-size = \"1MiB\"").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("region_split_size"), "{e}");
        let e = FileConfig::parse("region-max-size = \"lots\"").unwrap_err();
        assert!(e.0.contains("is not a size"), "{e}");
        let e = FileConfig::parse("split-region-check-tick-interval = \"soon\"").unwrap_err();
        assert!(e.0.contains("is not a duration"), "{e}");
        let file = FileConfig::parse("split-region-check-tick-interval = \"1000h\"").unwrap();
        let e = ServerConfig::resolve(flags(), file, false).unwrap_err();
        assert!(e.0.contains("split_region_check_ticks"), "{e}");
    }

    #[test]
    fn metrics_status_addr_is_optional_and_checked() {
        let cfg = ServerConfig::resolve(flags(), FileConfig::default(), false).unwrap();
        assert_eq!(cfg.status_addr, None, "no status server unless asked");
        let file = FileConfig::parse("status-addr = \"127.0.0.1:20180\"").unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert_eq!(cfg.status_addr.as_deref(), Some("127.0.0.1:20180"));
        let mut f = flags();
        f.status_addr = Some("127.0.0.1".into());
        let e = ServerConfig::resolve(f, FileConfig::default(), false).unwrap_err();
        assert!(
            e.0.contains("--status-addr") && e.0.contains("HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn raft_log_is_synced_off_the_round_unless_the_file_says_not() {
        let cfg = ServerConfig::resolve(flags(), FileConfig::default(), false).unwrap();
        assert!(cfg.raft.async_raft_sync);
        let file = FileConfig::parse("raft-async-sync = false").unwrap();
        let cfg = ServerConfig::resolve(flags(), file, false).unwrap();
        assert!(!cfg.raft.async_raft_sync);
        let e = FileConfig::parse("raft-async-sync = 1").unwrap_err();
        assert!(
            e.0.contains("raft-async-sync") || e.0.contains("bool"),
            "{e}"
        );
    }
}

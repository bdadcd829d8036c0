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
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::limits::{MAX_GRPC_MESSAGE, RAFT_ENVELOPE_ROOM};

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

/// Collapses a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the command line of binary `name`; on bad usage prints one line (and where to get
/// help) on stderr and exits with status 2. `--help` and `--version` print and exit 0.
pub fn parse_args_or_exit<T: clap::Parser>(name: &str) -> T {
    match T::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let text = e.to_string();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            eprintln!("{} (see {name} --help)", one_line(&kept.join("\n")));
            std::process::exit(2);
        }
    }
}

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
}

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
        if standalone {
            return Ok(ServerConfig {
                store_id: store_id.unwrap_or(0),
                addr,
                data_dir,
                cluster: BTreeMap::new(),
                standalone,
                raft,
                command_timeout,
                grpc_threads,
                raft_wal_preallocate,
            });
        }
        let store_id = store_id.ok_or_else(|| ConfigError("missing --store-id N".into()))?;
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
        Ok(ServerConfig {
            store_id,
            addr,
            data_dir,
            cluster,
            standalone,
            raft,
            command_timeout,
            grpc_threads,
            raft_wal_preallocate,
        })
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

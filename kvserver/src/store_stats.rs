//! The disk figures of a store heartbeat (`StoreStats`): what the raftstore cannot know itself.
//!
//! - `capacity`: the configured `capacity`, or (0, the default) the size of the filesystem of the
//!   data directory, read with POSIX `df -Pk` (the standard library has no `statvfs`, and this
//!   crate takes no `libc` dependency for one call every store heartbeat);
//! - `available`: the filesystem's free space, at most `capacity - used_size` when a capacity
//!   is configured (as TiKV does);
//! - `used_size`: the bytes of the RocksDB SST files of the store's two engines;
//! - `start_time`: when the store started, in seconds since the epoch.
//!
//! A figure that cannot be read is left 0 (unknown), with a debug line. The scheduler treats a
//! store whose capacity is unknown as short of space (TinyKV's `IsLowSpace`), so configure
//! `capacity` where `df` is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::schedulerpb::StoreStats;
use slog::{debug, Logger};

/// Where a store's disk figures come from.
#[derive(Clone, Debug)]
pub struct StatsSource {
    data_dir: PathBuf,
    capacity: u64,
    start_time: u32,
}

impl StatsSource {
    /// Figures for the store in `data_dir` with configured `capacity` (0: the filesystem's),
    /// started now.
    pub fn new(data_dir: &Path, capacity: u64) -> StatsSource {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        StatsSource {
            data_dir: data_dir.to_path_buf(),
            capacity,
            start_time: u32::try_from(now).unwrap_or(u32::MAX),
        }
    }

    /// Fills in capacity, available, used size and start time of `stats`.
    pub fn fill(&self, stats: &mut StoreStats, logger: &Logger) {
        let used = sst_bytes(&self.data_dir.join("kv")) + sst_bytes(&self.data_dir.join("raft"));
        let disk = match filesystem_space(&self.data_dir) {
            Ok(d) => Some(d),
            Err(e) => {
                debug!(logger, "cannot read the data dir's filesystem size"; "err" => e);
                None
            }
        };
        let (capacity, available) = match (self.capacity, disk) {
            (0, Some((size, avail))) => (size, avail),
            (0, None) => (0, 0),
            (cap, disk) => {
                let left = cap.saturating_sub(used);
                (cap, disk.map_or(left, |(_, avail)| avail.min(left)))
            }
        };
        stats.capacity = capacity;
        stats.available = available;
        stats.used_size = used;
        stats.start_time = self.start_time;
    }
}

/// Bytes of the `.sst` files directly in `dir` (a RocksDB directory); 0 if it cannot be read.
pub fn sst_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The size and the free bytes of the filesystem holding `dir`, from `df -Pk`.
pub fn filesystem_space(dir: &Path) -> Result<(u64, u64), String> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run df: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "df failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_df(&String::from_utf8_lossy(&out.stdout))
}

/// Parses POSIX `df -Pk` output: a header line, then `FS 1024-blocks used available capacity
/// mount`; returns (size, available) in bytes.
fn parse_df(text: &str) -> Result<(u64, u64), String> {
    let line = text
        .lines()
        .nth(1)
        .ok_or_else(|| format!("unexpected df output {text:?}"))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    // The filesystem's name may hold spaces; the five columns after it do not.
    if cols.len() < 6 {
        return Err(format!("unexpected df line {line:?}"));
    }
    let n = cols.len();
    let kib = |s: &str| {
        s.parse::<u64>()
            .map(|k| k.saturating_mul(1024))
            .map_err(|_| format!("unexpected df line {line:?}"))
    };
    Ok((kib(cols[n - 5])?, kib(cols[n - 3])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_parsed() {
        let text = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                    /dev/vda         264212084 34623176  60662712      37% /\n";
        assert_eq!(parse_df(text), Ok((264_212_084 * 1024, 60_662_712 * 1024)));
        let spaced = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                      my disk 100 40 60 40% /mnt/x\n";
        assert_eq!(parse_df(spaced), Ok((102_400, 61_440)));
        assert!(parse_df("Filesystem\n").is_err());
        assert!(parse_df("header\nfs x y z 1% /\n").is_err());
    }

    #[test]
    fn stats_count_sst_files_and_respect_a_configured_capacity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kv")).unwrap();
        std::fs::create_dir_all(dir.path().join("raft")).unwrap();
        std::fs::write(dir.path().join("kv/000012.sst"), vec![0u8; 3000]).unwrap();
        std::fs::write(dir.path().join("raft/000007.sst"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("kv/000013.log"), vec![0u8; 5000]).unwrap();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut stats = StoreStats::default();
        StatsSource::new(dir.path(), 10_000).fill(&mut stats, &logger);
        assert_eq!(stats.used_size, 4000);
        assert_eq!(stats.capacity, 10_000);
        assert!(stats.available <= 6000);
        assert!(stats.start_time > 0);
        let mut stats = StoreStats::default();
        StatsSource::new(dir.path(), 0).fill(&mut stats, &logger);
        if filesystem_space(dir.path()).is_ok() {
            assert!(stats.capacity > 0 && stats.available <= stats.capacity);
        }
    }
}

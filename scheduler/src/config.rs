//! The scheduler process's settings: flags and a TOML file (flags win), TiKV/PD's names.
//!
//! ```toml
//! addr = "127.0.0.1:2379"
//! data-dir = "data/scheduler"
//! name = "scheduler"
//! status-addr = "127.0.0.1:2381"  # serve GET /metrics here (docs/METRICS.md); default: no
//! gc-life-time = "10m"           # the GC safe point trails the clock by this ("0s": never raised)
//!
//! [schedule]                     # any subset; the rest keep TinyKV's defaults
//! max-replicas = 3
//! leader-schedule-limit = 4
//! region-schedule-limit = 64
//! replica-schedule-limit = 64
//! max-store-down-time = "30m"    # Go-style durations: "1h30m", "20s", "500ms"
//! max-snapshot-count = 3
//! max-pending-peer-count = 16
//! tolerant-size-ratio = 5.0
//! ```
//! An unknown key or a bad value is an error of one line naming it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::schedule::ScheduleConfig;
use crate::server::ServerConfig;

/// A bad setting, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Every setting, each optional: what a file or the flags give.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Address to serve gRPC on.
    pub addr: Option<String>,
    /// Directory of the scheduler's state.
    pub data_dir: Option<PathBuf>,
    /// This member's name.
    pub name: Option<String>,
    /// Address of the status server (`GET /metrics`).
    pub status_addr: Option<String>,
    /// Scheduling options (keys left out keep their defaults).
    pub schedule: Option<ScheduleConfig>,
    /// How far behind the clock the GC safe point is kept ("10m"; "0s": the scheduler never
    /// raises it itself).
    pub gc_life_time: Option<String>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        FileConfig::parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(crate::cmdline::one_line(&e.to_string())))
    }

    /// The settings of `flags`, else of `file`, else the defaults; checked.
    pub fn resolve(flags: FileConfig, file: FileConfig) -> Result<ServerConfig, ConfigError> {
        let mut cfg = ServerConfig::default();
        if let Some(a) = flags.addr.or(file.addr) {
            cfg.addr = a;
        }
        if let Some(d) = flags.data_dir.or(file.data_dir) {
            cfg.data_dir = d;
        }
        if let Some(n) = flags.name.or(file.name) {
            cfg.name = n;
        }
        if let Some(a) = flags.status_addr.or(file.status_addr) {
            cfg.status_addr =
                Some(crate::status::parse_status_addr(&a).map_err(|e| ConfigError(e.to_string()))?);
        }
        if let Some(s) = flags.schedule.or(file.schedule) {
            cfg.schedule = s;
        }
        if let Some(t) = flags.gc_life_time.or(file.gc_life_time) {
            cfg.gc_life_time = crate::schedule::config::parse_duration(&t)
                .map_err(|e| ConfigError(format!("gc-life-time: {e}")))?;
        }
        let s = &cfg.schedule;
        if s.max_replicas == 0 {
            return Err(ConfigError(
                "schedule.max-replicas must be at least 1".into(),
            ));
        }
        if !(s.tolerant_size_ratio.is_finite() && s.tolerant_size_ratio >= 0.0) {
            return Err(ConfigError(
                "schedule.tolerant-size-ratio must be a number of at least 0".into(),
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_flags_win_over_the_file_and_the_schedule_table_applies() {
        let file = FileConfig::parse(
            "addr = \"127.0.0.1:1\"\ndata-dir = \"d\"\n[schedule]\nmax-replicas = 5\n\
             max-store-down-time = \"1m\"\n",
        )
        .unwrap();
        let flags = FileConfig {
            addr: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let cfg = FileConfig::resolve(flags, file).unwrap();
        assert_eq!(cfg.addr, "127.0.0.1:2");
        assert_eq!(cfg.data_dir, PathBuf::from("d"));
        assert_eq!(cfg.schedule.max_replicas, 5);
        assert_eq!(cfg.schedule.max_store_down_time, Duration::from_secs(60));
        assert_eq!(cfg.schedule.region_schedule_limit, 64, "a default kept");
    }

    #[test]
    fn test_unknown_keys_and_bad_values_are_one_line_errors() {
        let e = FileConfig::parse("adr = \"x\"").unwrap_err().to_string();
        assert!(e.contains("adr") && !e.contains('\n'), "{e}");
        let e = FileConfig::parse("[schedule]\nmax-store-down-time = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("soon") && !e.contains('\n'), "{e}");
        let file = FileConfig::parse("[schedule]\nmax-replicas = 0").unwrap();
        assert!(FileConfig::resolve(FileConfig::default(), file).is_err());
        let file = FileConfig::parse("gc-life-time = \"a while\"").unwrap();
        let e = FileConfig::resolve(FileConfig::default(), file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gc-life-time") && !e.contains('\n'), "{e}");
        let file = FileConfig::parse("gc-life-time = \"90s\"").unwrap();
        let cfg = FileConfig::resolve(FileConfig::default(), file).unwrap();
        assert_eq!(cfg.gc_life_time, Duration::from_secs(90));
    }

    #[test]
    fn test_metrics_status_addr_from_the_file_or_the_flag_and_checked() {
        let cfg = FileConfig::resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(cfg.status_addr, None, "no status server unless asked");
        let file = FileConfig::parse("status-addr = \"127.0.0.1:2381\"").unwrap();
        let cfg = FileConfig::resolve(FileConfig::default(), file.clone()).unwrap();
        assert_eq!(cfg.status_addr.as_deref(), Some("127.0.0.1:2381"));
        let flags = FileConfig {
            status_addr: Some("127.0.0.1:9".into()),
            ..Default::default()
        };
        let cfg = FileConfig::resolve(flags, file).unwrap();
        assert_eq!(cfg.status_addr.as_deref(), Some("127.0.0.1:9"));
        let flags = FileConfig {
            status_addr: Some("nowhere".into()),
            ..Default::default()
        };
        let e = FileConfig::resolve(flags, FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--status-addr"), "{e}");
    }
}

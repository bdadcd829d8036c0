//! `ScheduleConfig`: the scheduling options (TinyKV's `ScheduleConfig` and `ReplicationConfig` in
//! `scheduler/server/config/config.go`, with the defaults of `scheduler/pkg/mock/mockoption`),
//! loadable from TOML with kebab-case names; durations are Go-style strings ("30m", "100ms").

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The scheduling options.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The number of replicas each region should have.
    pub max_replicas: usize,
    /// The most leader operators running at once.
    pub leader_schedule_limit: u64,
    /// The most region (peer-moving) operators running at once.
    pub region_schedule_limit: u64,
    /// The most replica-checker operators running at once.
    pub replica_schedule_limit: u64,
    /// A store silent for longer is down: no region moves to or from it, its peers are replaced.
    #[serde(deserialize_with = "de_duration")]
    pub max_store_down_time: Duration,
    /// The interval between two patrols of the replica checker over (part of) the regions.
    #[serde(deserialize_with = "de_duration")]
    pub patrol_region_interval: Duration,
    /// A store sending, receiving or applying more snapshots takes no new peer.
    pub max_snapshot_count: u64,
    /// A store with more pending peers takes no new peer.
    pub max_pending_peer_count: u64,
    /// Leaders move only between stores whose leader counts differ by at least twice this.
    pub tolerant_size_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> ScheduleConfig {
        ScheduleConfig {
            max_replicas: 3,
            leader_schedule_limit: 4,
            region_schedule_limit: 64,
            replica_schedule_limit: 64,
            max_store_down_time: Duration::from_secs(30 * 60),
            patrol_region_interval: Duration::from_millis(100),
            max_snapshot_count: 3,
            max_pending_peer_count: 16,
            tolerant_size_ratio: 5.0,
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parses a Go-style duration: a sequence of numbers with units `h`, `m`, `s`, `ms`, `us`, `ns`
/// ("1h30m", "100ms", "2.5s").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += value * secs;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn config_loads_from_toml_with_defaults() {
        let cfg: ScheduleConfig = toml::from_str(
            "max-replicas = 5\nmax-store-down-time = \"1m\"\nleader-schedule-limit = 8\n",
        )
        .unwrap();
        assert_eq!(cfg.max_replicas, 5);
        assert_eq!(cfg.max_store_down_time, Duration::from_secs(60));
        assert_eq!(cfg.leader_schedule_limit, 8);
        assert_eq!(cfg.region_schedule_limit, 64);
        assert_eq!(cfg.patrol_region_interval, Duration::from_millis(100));
        assert!(toml::from_str::<ScheduleConfig>("max-replica = 5").is_err());
        assert_eq!(
            toml::from_str::<ScheduleConfig>("").unwrap(),
            ScheduleConfig::default()
        );
    }
}

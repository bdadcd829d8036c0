//! The store's Prometheus metrics (docs/METRICS.md): their definitions, all in this module, and
//! the [`registry`] that holds them, which `tinykv-server` serves on `--status-addr`.
//!
//! They are process-wide statics: `tinykv-server` runs one store per process, so the scrape
//! target names the store; a process that runs several stores (the simulator, the cluster test
//! harness) adds their figures up. Nothing here is ever read back by the store's logic, so the
//! metrics cannot change what a store does, nor the simulator's determinism; they only cost
//! atomic additions (counters and gauges), and a histogram observation once per round or per
//! batch of applies, never per entry. Label children are resolved once (a static per label
//! value), so the hot paths take no lock.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

/// Commands a replica took for raft, by kind.
pub static RAFT_PROPOSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "tinykv_raft_proposals_total",
            "Commands a replica took for raft, by kind: normal (writes, proposed as log entries), \
             admin (split, compact log, membership change, leader transfer), read_index (reads \
             confirmed by ReadIndex, not written to the log).",
        ),
        &["kind"],
    )
    .expect("a valid metric")
});

/// `RAFT_PROPOSALS{kind="normal"}`.
pub static PROPOSALS_NORMAL: LazyLock<IntCounter> =
    LazyLock::new(|| RAFT_PROPOSALS.with_label_values(&["normal"]));
/// `RAFT_PROPOSALS{kind="admin"}`.
pub static PROPOSALS_ADMIN: LazyLock<IntCounter> =
    LazyLock::new(|| RAFT_PROPOSALS.with_label_values(&["admin"]));
/// `RAFT_PROPOSALS{kind="read_index"}`.
pub static PROPOSALS_READ_INDEX: LazyLock<IntCounter> =
    LazyLock::new(|| RAFT_PROPOSALS.with_label_values(&["read_index"]));

/// Committed log entries applied to the kv engine.
pub static APPLIED_ENTRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tinykv_raft_applied_entries_total",
        "Committed raft log entries applied to the kv engine, by all the store's replicas.",
    )
    .expect("a valid metric")
});

/// Fsyncs of the store's engines, by engine.
pub static ENGINE_FSYNCS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "tinykv_engine_fsyncs_total",
            "Fsyncs of the store's engines (synced writes and explicit syncs), by engine: raft \
             (the raft log) or kv (the data and apply states).",
        ),
        &["engine"],
    )
    .expect("a valid metric")
});

/// `ENGINE_FSYNCS{engine="raft"}`: attached to the raft engine by the server
/// (`RocksEngine::with_fsync_counter`).
pub static RAFT_ENGINE_FSYNCS: LazyLock<IntCounter> =
    LazyLock::new(|| ENGINE_FSYNCS.with_label_values(&["raft"]));
/// `ENGINE_FSYNCS{engine="kv"}`: attached to the kv engine by the server.
pub static KV_ENGINE_FSYNCS: LazyLock<IntCounter> =
    LazyLock::new(|| ENGINE_FSYNCS.with_label_values(&["kv"]));

/// Buckets of the latency histograms: 50 µs to about 6.6 s, doubling.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets")
}

/// Duration of one round of the store's driver.
pub static ROUND_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "tinykv_store_round_duration_seconds",
            "Duration of one round of the store's driver (raftstore::runtime::StoreDriver::round: \
             the base tick when due, Store::round with its raft-engine write, the round's \
             messages, tasks and answers handed on); a sync made in place after it is not \
             included.",
        )
        .buckets(latency_buckets()),
    )
    .expect("a valid metric")
});

/// Duration of one batch of applies.
pub static APPLY_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "tinykv_apply_batch_duration_seconds",
            "Duration of one batch of applies: from the first committed entry applied into the \
             store's apply write batch to the end of its kv-engine write.",
        )
        .buckets(latency_buckets()),
    )
    .expect("a valid metric")
});

/// Region replicas the store hosts.
pub static REGIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "tinykv_store_regions",
        "Region replicas the store hosts (set every base tick).",
    )
    .expect("a valid metric")
});

/// Of those, the ones that lead their region.
pub static LEADERS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "tinykv_store_leaders",
        "Region replicas of the store that lead their region (set every base tick).",
    )
    .expect("a valid metric")
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::new();
    // The label children first, so that every series is exported from the start, at 0.
    for c in [
        &PROPOSALS_NORMAL,
        &PROPOSALS_ADMIN,
        &PROPOSALS_READ_INDEX,
        &RAFT_ENGINE_FSYNCS,
        &KV_ENGINE_FSYNCS,
    ] {
        LazyLock::force(c);
    }
    let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
        Box::new(RAFT_PROPOSALS.clone()),
        Box::new(APPLIED_ENTRIES.clone()),
        Box::new(ENGINE_FSYNCS.clone()),
        Box::new(ROUND_DURATION.clone()),
        Box::new(APPLY_DURATION.clone()),
        Box::new(REGIONS.clone()),
        Box::new(LEADERS.clone()),
    ];
    for c in collectors {
        r.register(c).expect("metric names are unique");
    }
    r
});

/// The registry of every metric of this module, for a status server to export.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Seconds since `start`, for a histogram.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// One store's share of a process-wide gauge: setting it moves the gauge by the difference, and
/// dropping it (the store stopped, or crashed in the simulator) takes the share back out, so the
/// gauge is the sum over the process's running stores.
#[derive(Debug)]
pub struct GaugeShare {
    gauge: IntGauge,
    value: i64,
}

impl GaugeShare {
    /// A share of 0 in `gauge`.
    pub fn new(gauge: &IntGauge) -> GaugeShare {
        GaugeShare {
            gauge: gauge.clone(),
            value: 0,
        }
    }

    /// Sets this share to `value`.
    pub fn set(&mut self, value: i64) {
        if value != self.value {
            self.gauge.add(value - self.value);
            self.value = value;
        }
    }
}

impl Drop for GaugeShare {
    fn drop(&mut self) {
        self.gauge.sub(self.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_registry_exports_every_store_metric() {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry().gather())
            .unwrap();
        for name in [
            "tinykv_raft_proposals_total{kind=\"normal\"}",
            "tinykv_raft_proposals_total{kind=\"admin\"}",
            "tinykv_raft_proposals_total{kind=\"read_index\"}",
            "tinykv_raft_applied_entries_total",
            "tinykv_engine_fsyncs_total{engine=\"raft\"}",
            "tinykv_engine_fsyncs_total{engine=\"kv\"}",
            "tinykv_store_round_duration_seconds_bucket",
            "tinykv_apply_batch_duration_seconds_count",
            "tinykv_store_regions",
            "tinykv_store_leaders",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("# HELP tinykv_store_leaders "), "{text}");
    }

    #[test]
    fn metrics_gauge_shares_add_up_and_leave_on_drop() {
        let gauge = IntGauge::new("tinykv_test_share", "a test gauge").unwrap();
        let mut a = GaugeShare::new(&gauge);
        let mut b = GaugeShare::new(&gauge);
        a.set(3);
        b.set(4);
        assert_eq!(gauge.get(), 7);
        a.set(1);
        assert_eq!(gauge.get(), 5);
        drop(b);
        assert_eq!(gauge.get(), 1);
        drop(a);
        assert_eq!(gauge.get(), 0);
    }
}

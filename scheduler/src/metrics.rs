//! The scheduler's Prometheus metrics (docs/METRICS.md): their definitions, all in this module,
//! and the [`registry`] that holds them, which `tinykv-scheduler` serves on `--status-addr`.
//!
//! They are process-wide statics, counted where things happen: the cluster's logic
//! ([`crate::cluster`], the operator controller) only adds to counters, which nothing reads back,
//! so it stays deterministic; the gauges are set by the service's timer ([`set_gauges`]).

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use proto::schedulerpb::OperatorStatus;

/// Region heartbeats handled, by result.
pub static REGION_HEARTBEATS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "tinykv_scheduler_region_heartbeats_total",
            "Region heartbeats handled, by result: ok (taken in), stale (older than the region \
             the scheduler knows: refused), error (refused otherwise: no peer, unknown leader \
             store, another cluster's id).",
        ),
        &["result"],
    )
    .expect("a valid metric")
});

/// `REGION_HEARTBEATS{result="ok"}`.
pub static REGION_HEARTBEATS_OK: LazyLock<IntCounter> =
    LazyLock::new(|| REGION_HEARTBEATS.with_label_values(&["ok"]));
/// `REGION_HEARTBEATS{result="stale"}`.
pub static REGION_HEARTBEATS_STALE: LazyLock<IntCounter> =
    LazyLock::new(|| REGION_HEARTBEATS.with_label_values(&["stale"]));
/// `REGION_HEARTBEATS{result="error"}`.
pub static REGION_HEARTBEATS_ERROR: LazyLock<IntCounter> =
    LazyLock::new(|| REGION_HEARTBEATS.with_label_values(&["error"]));

/// Store heartbeats handled, by result.
pub static STORE_HEARTBEATS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "tinykv_scheduler_store_heartbeats_total",
            "Store heartbeats handled, by result: ok (the store's statistics recorded), error \
             (an unknown or removed store).",
        ),
        &["result"],
    )
    .expect("a valid metric")
});

/// `STORE_HEARTBEATS{result="ok"}`.
pub static STORE_HEARTBEATS_OK: LazyLock<IntCounter> =
    LazyLock::new(|| STORE_HEARTBEATS.with_label_values(&["ok"]));
/// `STORE_HEARTBEATS{result="error"}`.
pub static STORE_HEARTBEATS_ERROR: LazyLock<IntCounter> =
    LazyLock::new(|| STORE_HEARTBEATS.with_label_values(&["error"]));

/// Operator events, by the operator's description and the event.
pub static OPERATORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "tinykv_scheduler_operators_total",
            "Operator events, by the operator's description (balance-leader, balance-region, \
             make-up-replica, ...) and event: created, refused (its region unknown, its epoch \
             stale, or a more urgent operator running), finished (every step done), cancelled \
             (the region changed past it), timed_out, replaced (by a more urgent one).",
        ),
        &["desc", "event"],
    )
    .expect("a valid metric")
});

/// Operators running now.
pub static OPERATORS_RUNNING: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "tinykv_scheduler_operators_running",
        "Operators running now (set every scheduling tick, 50 ms).",
    )
    .expect("a valid metric")
});

/// Stores the scheduler knows.
pub static STORES: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "tinykv_scheduler_stores",
        "Stores the scheduler knows, removed (tombstone) ones included (set every scheduling \
         tick).",
    )
    .expect("a valid metric")
});

/// Regions the scheduler knows.
pub static REGIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "tinykv_scheduler_regions",
        "Regions the scheduler knows (set every scheduling tick).",
    )
    .expect("a valid metric")
});

/// Timestamps handed out by the TSO.
pub static TSO_TIMESTAMPS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tinykv_scheduler_tso_timestamps_total",
        "Timestamps handed out by the timestamp oracle (a Tso request for n counts n).",
    )
    .expect("a valid metric")
});

/// Ids allocated.
pub static IDS_ALLOCATED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tinykv_scheduler_ids_allocated_total",
        "Ids allocated (for stores, regions and peers: AllocID calls and split ids).",
    )
    .expect("a valid metric")
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::new();
    // The label children first, so that every series is exported from the start, at 0.
    for c in [
        &REGION_HEARTBEATS_OK,
        &REGION_HEARTBEATS_STALE,
        &REGION_HEARTBEATS_ERROR,
        &STORE_HEARTBEATS_OK,
        &STORE_HEARTBEATS_ERROR,
    ] {
        LazyLock::force(c);
    }
    let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
        Box::new(REGION_HEARTBEATS.clone()),
        Box::new(STORE_HEARTBEATS.clone()),
        Box::new(OPERATORS.clone()),
        Box::new(OPERATORS_RUNNING.clone()),
        Box::new(STORES.clone()),
        Box::new(REGIONS.clone()),
        Box::new(TSO_TIMESTAMPS.clone()),
        Box::new(IDS_ALLOCATED.clone()),
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

/// Counts an event of the operator described `desc` (see [`OPERATORS`]).
pub fn operator_event(desc: &str, event: &str) {
    OPERATORS.with_label_values(&[desc, event]).inc();
}

/// The event of [`OPERATORS`] an operator that ended with `status` counts as.
pub fn operator_end_event(status: OperatorStatus) -> &'static str {
    match status {
        OperatorStatus::Success => "finished",
        OperatorStatus::Cancel => "cancelled",
        OperatorStatus::Timeout => "timed_out",
        OperatorStatus::Replace => "replaced",
        OperatorStatus::Running => "running",
    }
}

/// Sets the gauges: running operators, known stores and regions.
pub fn set_gauges(operators: usize, stores: usize, regions: usize) {
    OPERATORS_RUNNING.set(operators as i64);
    STORES.set(stores as i64);
    REGIONS.set(regions as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_registry_exports_every_scheduler_metric() {
        operator_event("test-operator", operator_end_event(OperatorStatus::Timeout));
        let text = crate::status::render(&[registry().clone()]).unwrap();
        for name in [
            "tinykv_scheduler_region_heartbeats_total{result=\"ok\"}",
            "tinykv_scheduler_region_heartbeats_total{result=\"stale\"}",
            "tinykv_scheduler_region_heartbeats_total{result=\"error\"}",
            "tinykv_scheduler_store_heartbeats_total{result=\"ok\"}",
            "tinykv_scheduler_operators_total{desc=\"test-operator\",event=\"timed_out\"}",
            "tinykv_scheduler_operators_running",
            "tinykv_scheduler_stores",
            "tinykv_scheduler_regions",
            "tinykv_scheduler_tso_timestamps_total",
            "tinykv_scheduler_ids_allocated_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}

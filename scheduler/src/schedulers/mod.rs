//! The schedulers (TinyKV's `scheduler/server/schedulers`): balance-leader and balance-region,
//! behind one trait, with the run-interval rule they share.

mod balance_leader;
mod balance_region;

use std::time::Duration;

use rand::RngCore;

pub use balance_leader::BalanceLeaderScheduler;
pub use balance_region::BalanceRegionScheduler;

use crate::schedule::operator::Operator;
use crate::schedule::operator_controller::OperatorController;
use crate::schedule::Cluster;

/// The shortest interval between two runs of a scheduler (and the interval after a run that
/// produced an operator).
pub const MIN_SCHEDULE_INTERVAL: Duration = Duration::from_millis(10);
/// The longest interval between two runs of a scheduler.
pub const MAX_SCHEDULE_INTERVAL: Duration = Duration::from_secs(5);
/// How much the interval grows after a run that produced nothing.
pub const SCHEDULE_INTERVAL_FACTOR: f64 = 1.3;

/// A scheduler: looks at the cluster and proposes an operator.
pub trait Scheduler: Send {
    /// Its name.
    fn name(&self) -> &'static str;
    /// Whether it may run now (its kind of operators is under its limit).
    fn is_schedule_allowed(&self, cluster: &dyn Cluster, ops: &OperatorController) -> bool;
    /// An operator that improves the cluster, if it finds one. Random choices use `rng`.
    fn schedule(&mut self, cluster: &dyn Cluster, rng: &mut dyn RngCore) -> Option<Operator>;
    /// The interval after a run that produced an operator.
    fn min_interval(&self) -> Duration {
        MIN_SCHEDULE_INTERVAL
    }
    /// The interval after a run that produced nothing, the last interval being `interval`.
    fn next_interval(&self, interval: Duration) -> Duration {
        interval
            .mul_f64(SCHEDULE_INTERVAL_FACTOR)
            .min(MAX_SCHEDULE_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_grows_to_the_max() {
        let s = BalanceRegionScheduler::new();
        let mut i = s.min_interval();
        assert_eq!(i, Duration::from_millis(10));
        i = s.next_interval(i);
        assert_eq!(i, Duration::from_millis(13));
        for _ in 0..100 {
            i = s.next_interval(i);
        }
        assert_eq!(i, MAX_SCHEDULE_INTERVAL);
    }
}

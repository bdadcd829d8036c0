//! `RaftCluster`: the scheduler's state machine (TinyKV's `scheduler/server/cluster.go`,
//! `cluster_worker.go` and `coordinator.go`, without their goroutines and storage): stores and
//! regions learnt from heartbeats, split ids, the operators running on regions, and the timer that
//! runs balance-leader, balance-region and the replica checker.
//!
//! It does no IO and reads no clock of its own: ids come from an [`IdAllocator`], time from a
//! [`Clock`], and commands for stores are queued in an outbox ([`RaftCluster::take_messages`])
//! that the service sends on the stores' heartbeat streams. The service persists what
//! [`RegionChange`] and the store calls tell it changed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::metapb::{Region, Store, StoreState};
use proto::schedulerpb::{AskSplitResponse, OperatorStatus, RegionHeartbeatResponse, StoreStats};
use rand::rngs::StdRng;
use rand::SeedableRng;
use slog::{info, warn, Logger};

pub use crate::schedule::ScheduleConfig;

use crate::core::{BasicCluster, RegionInfo, StoreInfo};
use crate::errors::{Error, Result};
use crate::metrics;
use crate::schedule::checker::ReplicaChecker;
use crate::schedule::operator::{OpKind, Operator, PriorityLevel};
use crate::schedule::operator_controller::{DispatchSource, OperatorController};
use crate::schedule::Cluster;
use crate::schedulers::{BalanceLeaderScheduler, BalanceRegionScheduler, Scheduler};

/// How many times a scheduler is asked per run before the run counts as empty.
pub const MAX_SCHEDULE_RETRIES: usize = 10;
/// How many regions the replica checker looks at per patrol.
pub const PATROL_SCAN_REGION_LIMIT: usize = 128;
/// Schedulers wait for heartbeats from this share of the known regions (overall and per store)...
pub const COLLECT_FACTOR: f64 = 0.8;
/// ...or for this long after start, whichever comes first.
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Hands out cluster-unique ids (the service makes them durable).
pub trait IdAllocator: Send + Sync {
    /// A new id, never handed out before.
    fn alloc(&self) -> Result<u64>;
}

/// An in-memory id allocator counting up from a base (for tests and tools).
#[derive(Debug, Default)]
pub struct MemoryIdAllocator {
    last: AtomicU64,
}

impl MemoryIdAllocator {
    /// An allocator whose first id is `base + 1`.
    pub fn new(base: u64) -> MemoryIdAllocator {
        MemoryIdAllocator {
            last: AtomicU64::new(base),
        }
    }
}

impl IdAllocator for MemoryIdAllocator {
    fn alloc(&self) -> Result<u64> {
        Ok(self.last.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// The time source of the cluster logic.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock standing at the current time plus an hour (so tests may look back in time).
    pub fn new() -> ManualClock {
        ManualClock {
            now: Mutex::new(Instant::now() + Duration::from_secs(3600)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a region heartbeat changed, for the service to persist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionChange {
    /// The region was put into the cache (something about it changed).
    pub saved: bool,
    /// The region is new or its epoch grew: its meta should be persisted.
    pub epoch_changed_or_new: bool,
    /// The ids of the regions it overlapped, now dropped: their metas should be deleted.
    pub removed: Vec<u64>,
}

/// An error unless `region`'s epoch is at least `origin`'s in both version and conf version
/// (TinyKV's `checkStaleRegion`).
pub fn check_stale_region(origin: &Region, region: &Region) -> Result<()> {
    let o = origin.region_epoch.unwrap_or_default();
    let e = region.region_epoch.unwrap_or_default();
    if e.version < o.version || e.conf_ver < o.conf_ver {
        return Err(Error::stale(region.id, &e, origin.id, &o));
    }
    Ok(())
}

/// An error unless `left` and `right` are the two adjacent halves of a split (TinyKV's
/// `checkSplitRegion`, behind ReportSplit).
pub fn check_split_region(left: &Region, right: &Region) -> Result<()> {
    let invalid = || {
        Error::InvalidSplit(format!(
            "left region {}, right region {}",
            left.id, right.id
        ))
    };
    if left.end_key != right.start_key {
        return Err(invalid());
    }
    if right.end_key.is_empty() || left.start_key < right.end_key {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// What schedulers see of a `RaftCluster` during a tick.
struct ClusterView<'a> {
    basic: &'a BasicCluster,
    cfg: &'a ScheduleConfig,
    ids: &'a dyn IdAllocator,
    ops: &'a OperatorController,
    now: Instant,
}

impl Cluster for ClusterView<'_> {
    fn basic(&self) -> &BasicCluster {
        self.basic
    }
    fn config(&self) -> &ScheduleConfig {
        self.cfg
    }
    fn now(&self) -> Instant {
        self.now
    }
    fn alloc_id(&self) -> Result<u64> {
        self.ids.alloc()
    }
    fn has_operator(&self, region_id: u64) -> bool {
        self.ops.get_operator(region_id).is_some()
    }
}

/// A scheduler and its timer.
struct ScheduleController {
    scheduler: Box<dyn Scheduler>,
    interval: Duration,
    next_run: Instant,
}

/// Holds schedulers back until enough regions have reported since start (TinyKV's
/// `prepareChecker`), so they do not act on region metas loaded from storage.
struct PrepareChecker {
    start: Instant,
    heartbeated: HashSet<u64>,
    prepared: bool,
}

impl PrepareChecker {
    fn check(&mut self, core: &BasicCluster, now: Instant) -> bool {
        if self.prepared || now.saturating_duration_since(self.start) > COLLECT_TIMEOUT {
            self.prepared = true;
            // Needed no more: the set would otherwise grow with every region for good.
            self.heartbeated = HashSet::new();
            return true;
        }
        let regions = &core.regions;
        if regions.region_count() as f64 * COLLECT_FACTOR > self.heartbeated.len() as f64 {
            return false;
        }
        let mut per_store: HashMap<u64, usize> = HashMap::new();
        for region in self
            .heartbeated
            .iter()
            .filter_map(|id| regions.get_region(*id))
        {
            for store in region.store_ids() {
                *per_store.entry(store).or_default() += 1;
            }
        }
        for store in core.stores.get_stores().into_iter().filter(|s| s.is_up()) {
            let total = regions.store_region_count(store.id());
            if total as f64 * COLLECT_FACTOR
                > per_store.get(&store.id()).copied().unwrap_or(0) as f64
            {
                return false;
            }
        }
        self.prepared = true;
        true
    }
}

/// The cluster as the scheduler knows and steers it.
pub struct RaftCluster {
    cluster_id: u64,
    cfg: ScheduleConfig,
    ids: Arc<dyn IdAllocator>,
    clock: Arc<dyn Clock>,
    core: BasicCluster,
    ops: OperatorController,
    schedulers: Vec<ScheduleController>,
    checker: ReplicaChecker,
    patrol_key: Vec<u8>,
    next_patrol: Instant,
    prepare: PrepareChecker,
    rng: StdRng,
    logger: Logger,
}

impl RaftCluster {
    /// A cluster with no stores or regions, running balance-region and balance-leader, not
    /// logging.
    pub fn new(
        cluster_id: u64,
        cfg: ScheduleConfig,
        ids: Arc<dyn IdAllocator>,
        clock: Arc<dyn Clock>,
    ) -> RaftCluster {
        RaftCluster::with_logger(
            cluster_id,
            cfg,
            ids,
            clock,
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    /// [`RaftCluster::new`], logging to `logger`.
    pub fn with_logger(
        cluster_id: u64,
        cfg: ScheduleConfig,
        ids: Arc<dyn IdAllocator>,
        clock: Arc<dyn Clock>,
        logger: Logger,
    ) -> RaftCluster {
        let now = clock.now();
        let schedulers: Vec<Box<dyn Scheduler>> = vec![
            Box::new(BalanceRegionScheduler::with_logger(logger.clone())),
            Box::new(BalanceLeaderScheduler::with_logger(logger.clone())),
        ];
        let schedulers = schedulers
            .into_iter()
            .map(|s| ScheduleController {
                interval: s.min_interval(),
                next_run: now,
                scheduler: s,
            })
            .collect();
        RaftCluster {
            cluster_id,
            cfg,
            ids,
            clock,
            core: BasicCluster::new(),
            ops: OperatorController::new(cluster_id, logger.clone()),
            schedulers,
            checker: ReplicaChecker::new(),
            patrol_key: Vec::new(),
            next_patrol: now,
            prepare: PrepareChecker {
                start: now,
                heartbeated: HashSet::new(),
                prepared: false,
            },
            rng: StdRng::seed_from_u64(cluster_id),
            logger,
        }
    }

    /// Reseeds the random choices of the schedulers.
    pub fn set_rng_seed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The scheduling options.
    pub fn config(&self) -> &ScheduleConfig {
        &self.cfg
    }

    /// Replaces the scheduling options.
    pub fn set_config(&mut self, cfg: ScheduleConfig) {
        self.cfg = cfg;
    }

    /// Sets the number of replicas per region (PutClusterConfig's `max_peer_count`).
    pub fn set_max_replicas(&mut self, n: usize) {
        self.cfg.max_replicas = n;
    }

    /// The model: stores and regions.
    pub fn basic(&self) -> &BasicCluster {
        &self.core
    }

    // ---- stores ----

    /// Registers or updates a store: refuses id 0, an address another live (non-tombstone) store
    /// uses, and a store that was removed. An existing store only changes its address.
    pub fn put_store(&mut self, store: Store) -> Result<()> {
        if store.id == 0 {
            return Err(Error::InvalidStoreId);
        }
        if let Some(other) = self
            .core
            .stores
            .get_stores()
            .into_iter()
            .find(|s| !s.is_tombstone() && s.id() != store.id && s.address() == store.address)
        {
            return Err(Error::DuplicatedAddress {
                address: store.address,
                other: other.id(),
            });
        }
        let info = match self.core.stores.get_store(store.id) {
            Some(s) if s.is_tombstone() => return Err(Error::StoreTombstone(store.id)),
            Some(s) => s.clone().with_address(store.address),
            None => {
                info!(self.logger, "new store"; "store_id" => store.id, "address" => &store.address);
                let id = store.id;
                let info = StoreInfo::new(store).with_first_seen(Some(self.clock.now()));
                let status = self.core.store_status_from_regions(id);
                self.core.stores.set_store(info);
                self.core.stores.update_store_status(id, status);
                return Ok(());
            }
        };
        self.core.stores.set_store(info);
        Ok(())
    }

    /// Restores a persisted store at start-up (no checks; first seen now, no heartbeat yet).
    pub fn load_store(&mut self, store: Store) {
        let id = store.id;
        self.core
            .stores
            .set_store(StoreInfo::new(store).with_first_seen(Some(self.clock.now())));
        self.core.update_store_status(id);
    }

    /// The store with id `id`.
    pub fn get_store(&self, id: u64) -> Option<&StoreInfo> {
        self.core.stores.get_store(id)
    }

    /// Every store, by id.
    pub fn get_stores(&self) -> Vec<&StoreInfo> {
        self.core.stores.get_stores()
    }

    /// Records a store's heartbeat: its statistics and the time. Unknown and removed stores are
    /// refused. Counted in `tinykv_scheduler_store_heartbeats_total` by result.
    pub fn handle_store_heartbeat(&mut self, stats: StoreStats) -> Result<()> {
        let id = stats.store_id;
        let Some(store) = self.core.stores.get_store(id) else {
            metrics::STORE_HEARTBEATS_ERROR.inc();
            return Err(Error::StoreNotFound(id));
        };
        if store.is_tombstone() {
            metrics::STORE_HEARTBEATS_ERROR.inc();
            return Err(Error::StoreTombstone(id));
        }
        metrics::STORE_HEARTBEATS_OK.inc();
        let now = self.clock.now();
        self.core
            .stores
            .update(id, |s| s.with_stats(stats).with_last_heartbeat(Some(now)));
        Ok(())
    }

    /// Marks a store Offline (its peers will be moved away). Offline already: nothing; removed:
    /// an error. The caller persists the store's new meta.
    pub fn remove_store(&mut self, id: u64) -> Result<()> {
        let store = self
            .core
            .stores
            .get_store(id)
            .ok_or(Error::StoreNotFound(id))?;
        if store.is_offline() {
            return Ok(());
        }
        if store.is_tombstone() {
            return Err(Error::StoreTombstone(id));
        }
        warn!(self.logger, "store offline"; "store_id" => id);
        self.core
            .stores
            .update(id, |s| s.with_state(StoreState::Offline));
        Ok(())
    }

    /// Marks a store Tombstone (removed for good); an Up store only with `force`. The caller
    /// persists the store's new meta.
    pub fn bury_store(&mut self, id: u64, force: bool) -> Result<()> {
        let store = self
            .core
            .stores
            .get_store(id)
            .ok_or(Error::StoreNotFound(id))?;
        if store.is_tombstone() {
            return Ok(());
        }
        if store.is_up() && !force {
            return Err(Error::StoreStillUp(id));
        }
        warn!(self.logger, "store tombstone"; "store_id" => id);
        self.core
            .stores
            .update(id, |s| s.with_state(StoreState::Tombstone));
        Ok(())
    }

    /// Keeps the balancers from picking a store.
    pub fn block_store(&mut self, id: u64) -> Result<()> {
        self.core.stores.block_store(id)
    }

    /// Lets the balancers pick a store again.
    pub fn unblock_store(&mut self, id: u64) {
        self.core.stores.unblock_store(id)
    }

    // ---- regions ----

    /// Takes in what a region heartbeat says (TinyKV's `processRegionHeartbeat`, the Project 3C
    /// exercise). Refused, changing nothing, if the region is stale: its version or conf version
    /// is lower than the cached region with its id, or than any cached region it overlaps
    /// ([`check_stale_region`]). Otherwise, if anything changed (the region differs from the
    /// cached one, or none is cached), the region replaces the cached one and the regions it
    /// overlaps (`BasicCluster::put_region`, which also recomputes the counts and sizes of every
    /// store touched). The answer says what happened ([`RegionChange`]: saved, new or with a
    /// greater version or conf version, and the ids of the overlapped regions dropped). While
    /// the cluster is not prepared yet (`self.prepare.prepared`), a region that is not stale is
    /// also recorded in `self.prepare.heartbeated`.
    pub fn process_region_heartbeat(&mut self, region: RegionInfo) -> Result<RegionChange> {
        // STAGE 3C: refuse a region staler than the cached one or any it overlaps; else record it as heartbeated and, if it changed, put it in the cache
        let origin = self.core.regions.get_region(region.id());
        if let Some(origin) = origin {
            check_stale_region(origin.meta(), region.meta())?;
        }
        for other in self.core.regions.get_overlaps(&region) {
            check_stale_region(other.meta(), region.meta())?;
        }
        let mut change = RegionChange {
            saved: origin != Some(&region),
            epoch_changed_or_new: origin
                .is_none_or(|o| o.version() < region.version() || o.conf_ver() < region.conf_ver()),
            removed: Vec::new(),
        };
        if !self.prepare.prepared {
            self.prepare.heartbeated.insert(region.id());
        }
        if change.saved {
            let id = region.id();
            let removed = self.core.put_region(region);
            change.removed = removed.iter().map(RegionInfo::id).collect();
            if !change.removed.is_empty() {
                info!(self.logger, "region overlaps dropped"; "region_id" => id, "removed" => ?change.removed);
            }
        }
        Ok(change)
        // END STAGE 3C
    }

    /// [`RaftCluster::process_region_heartbeat`] for a heartbeat from a store (TinyKV's
    /// `HandleRegionHeartbeat`): a region without peers is refused; then the region's operator
    /// is dispatched (its pending command re-queued, or the operator finished or dropped).
    /// Counted in `tinykv_scheduler_region_heartbeats_total` by result.
    pub fn handle_region_heartbeat(&mut self, region: RegionInfo) -> Result<RegionChange> {
        if region.peers().is_empty() {
            metrics::REGION_HEARTBEATS_ERROR.inc();
            return Err(Error::ZeroPeers(region.id()));
        }
        let id = region.id();
        let change = self
            .process_region_heartbeat(region)
            .inspect_err(|e| match e {
                Error::StaleRegion { .. } => metrics::REGION_HEARTBEATS_STALE.inc(),
                _ => metrics::REGION_HEARTBEATS_ERROR.inc(),
            })?;
        metrics::REGION_HEARTBEATS_OK.inc();
        let now = self.clock.now();
        if let Some(region) = self.core.regions.get_region(id) {
            self.ops.dispatch(region, DispatchSource::Heartbeat, now);
        }
        Ok(change)
    }

    /// Restores a persisted region at start-up (no leader; no operator). Returns the ids of the
    /// regions it overlapped, which were dropped.
    pub fn load_region(&mut self, region: Region) -> Vec<u64> {
        self.core
            .put_region(RegionInfo::new(region, None))
            .iter()
            .map(RegionInfo::id)
            .collect()
    }

    /// The region with id `id`.
    pub fn get_region(&self, id: u64) -> Option<&RegionInfo> {
        self.core.regions.get_region(id)
    }

    /// The region whose range holds `key`.
    pub fn get_region_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.core.regions.search_region(key)
    }

    /// The region just before (and adjacent to) the one holding `key`.
    pub fn get_prev_region(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.core.regions.search_prev_region(key)
    }

    /// The regions from the one holding `start` on, in key order, until one starts at or past
    /// `end` (empty: no bound), at most `limit` (0: all).
    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<&RegionInfo> {
        self.core.regions.scan_range(start, end, limit)
    }

    /// Every region, in key order.
    pub fn get_regions(&self) -> Vec<&RegionInfo> {
        self.core.regions.get_regions()
    }

    /// Ids for splitting `region`: a new region id and one new peer id per peer. Refused if no
    /// region is known at its start key, or the known one's epoch is newer.
    pub fn ask_split(&mut self, region: &Region) -> Result<AskSplitResponse> {
        let known = self
            .core
            .regions
            .search_region(&region.start_key)
            .ok_or_else(|| {
                Error::RegionNotFound(format!(
                    "no region at the start key of region {}",
                    region.id
                ))
            })?;
        check_stale_region(known.meta(), region)?;
        let new_region_id = self.ids.alloc()?;
        let new_peer_ids = region
            .peers
            .iter()
            .map(|_| self.ids.alloc())
            .collect::<Result<Vec<u64>>>()?;
        Ok(AskSplitResponse {
            header: None,
            new_region_id,
            new_peer_ids,
        })
    }

    // ---- operators ----

    /// Adds an operator (it must match the region's current epoch); its first command is queued.
    pub fn add_operator(&mut self, op: Operator) -> bool {
        let now = self.clock.now();
        let region = self.core.regions.get_region(op.region_id());
        self.ops.add_operator(op, region, now)
    }

    /// The running operator of region `region_id`.
    pub fn get_operator(&self, region_id: u64) -> Option<&Operator> {
        self.ops.get_operator(region_id)
    }

    /// The operator of region `region_id` and its status: the running one, else the last one that
    /// ended in the past 10 minutes (for GetOperator).
    pub fn get_operator_status(&self, region_id: u64) -> Option<(&Operator, OperatorStatus)> {
        self.ops.operator_status(region_id, self.clock.now())
    }

    /// The number of running operators whose kind has any flag of `mask`.
    pub fn operator_count(&self, mask: OpKind) -> u64 {
        self.ops.operator_count(mask)
    }

    /// The number of running operators.
    pub fn running_operator_count(&self) -> usize {
        self.ops.operators().count()
    }

    /// Takes the queued commands, each with the id of the store (the region leader's) it is for.
    pub fn take_messages(&mut self) -> Vec<(u64, RegionHeartbeatResponse)> {
        self.ops.take_messages()
    }

    /// Runs what is due: drops timed-out operators; then, once enough regions have reported
    /// since start, each scheduler whose time has come (10 ms after a run that scheduled
    /// something, growing ×1.3 per empty run up to 5 s) and a patrol of the replica checker over
    /// the next regions (every `patrol_region_interval`). New operators' first commands are
    /// queued at once.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        self.ops.remove_timed_out(now);
        if !self.prepare.check(&self.core, now) {
            return;
        }
        self.run_schedulers(now);
        if now >= self.next_patrol {
            self.next_patrol = now + self.cfg.patrol_region_interval;
            self.patrol_regions(now);
        }
    }

    fn run_schedulers(&mut self, now: Instant) {
        for ctl in &mut self.schedulers {
            if now < ctl.next_run {
                continue;
            }
            let view = ClusterView {
                basic: &self.core,
                cfg: &self.cfg,
                ids: &*self.ids,
                ops: &self.ops,
                now,
            };
            if !ctl.scheduler.is_schedule_allowed(&view, &self.ops) {
                ctl.next_run = now + ctl.interval;
                continue;
            }
            let op = (0..MAX_SCHEDULE_RETRIES)
                .find_map(|_| ctl.scheduler.schedule(&view, &mut self.rng));
            match op {
                Some(op) => {
                    ctl.interval = ctl.scheduler.min_interval();
                    let region = self.core.regions.get_region(op.region_id());
                    self.ops.add_operator(op, region, now);
                }
                None => ctl.interval = ctl.scheduler.next_interval(ctl.interval),
            }
            ctl.next_run = now + ctl.interval;
        }
    }

    fn patrol_regions(&mut self, now: Instant) {
        let batch: Vec<(u64, Vec<u8>)> = self
            .core
            .regions
            .scan_range(&self.patrol_key, &[], PATROL_SCAN_REGION_LIMIT)
            .into_iter()
            .map(|r| (r.id(), r.end_key().to_vec()))
            .collect();
        if batch.is_empty() {
            self.patrol_key.clear();
            return;
        }
        for (id, end_key) in batch {
            if self.ops.operator_count(OpKind::REPLICA) >= self.cfg.replica_schedule_limit {
                return;
            }
            self.patrol_key = end_key;
            // A region with a running operator is left to it, unless it has a peer on a down or
            // offline store to replace and the operator is less urgent (a balance move, say,
            // whose target store died after its peer was added: it would hold the region at a
            // dead replica until it timed out, REGION_OPERATOR_WAIT_TIME).
            let running = self.ops.get_operator(id).map(|op| op.priority());
            if running.is_some_and(|p| p >= PriorityLevel::High) {
                continue;
            }
            let Some(region) = self.core.regions.get_region(id) else {
                continue;
            };
            let view = ClusterView {
                basic: &self.core,
                cfg: &self.cfg,
                ids: &*self.ids,
                ops: &self.ops,
                now,
            };
            let op = match running {
                None => self.checker.check(&view, region),
                Some(_) => self.checker.check_urgent(&view, region),
            };
            if let Some(op) = op {
                self.ops.add_operator(op, Some(region), now);
            }
        }
    }
}

#[cfg(test)]
mod tests;

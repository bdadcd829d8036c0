//! Store id → address, for the raft transport and for the leader hints of the service (TinyKV's
//! `kv/server/resolver`, here without its own worker).
//!
//! In static mode the map is `--initial-cluster` and never changes. With a scheduler, an id not
//! known yet is asked of the scheduler (`GetStore`) and the answer cached; after a failed
//! connection the transport drops the cached address ([`StoreResolver::invalidate`]) so that a
//! store that moved is found at its new address on the next attempt.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::scheduler_client::{usable_address, SchedulerConn};

/// Resolves store ids to addresses. Cheap to clone (shared).
#[derive(Clone)]
pub struct StoreResolver {
    inner: Arc<Inner>,
}

struct Inner {
    addrs: RwLock<HashMap<u64, String>>,
    /// Where unknown stores are looked up; None: the map is all there is.
    scheduler: Option<SchedulerConn>,
}

impl StoreResolver {
    /// A fixed map (static mode).
    pub fn fixed(addrs: HashMap<u64, String>) -> StoreResolver {
        StoreResolver {
            inner: Arc::new(Inner {
                addrs: RwLock::new(addrs),
                scheduler: None,
            }),
        }
    }

    /// A resolver asking `scheduler` for stores it does not know.
    pub fn with_scheduler(scheduler: SchedulerConn) -> StoreResolver {
        StoreResolver {
            inner: Arc::new(Inner {
                addrs: RwLock::new(HashMap::new()),
                scheduler: Some(scheduler),
            }),
        }
    }

    /// Whether unknown stores are looked up (scheduler mode).
    pub fn is_dynamic(&self) -> bool {
        self.inner.scheduler.is_some()
    }

    /// The stores known now (static mode: every store).
    pub fn known(&self) -> HashMap<u64, String> {
        self.inner.addrs.read().unwrap().clone()
    }

    /// The address of `store_id` if known now, without asking anyone.
    pub fn cached(&self, store_id: u64) -> Option<String> {
        self.inner.addrs.read().unwrap().get(&store_id).cloned()
    }

    /// The address of `store_id`: known, or (scheduler mode) asked of the scheduler and cached.
    /// The error is one line.
    pub async fn resolve(&self, store_id: u64) -> Result<String, String> {
        if let Some(a) = self.cached(store_id) {
            return Ok(a);
        }
        let Some(scheduler) = &self.inner.scheduler else {
            return Err(format!("no address for store {store_id}"));
        };
        let store = scheduler
            .get_store(store_id)
            .await
            .map_err(|e| format!("cannot resolve store {store_id}: {e}"))?;
        let addr = usable_address(&store)
            .ok_or_else(|| {
                format!(
                    "store {store_id} has no usable address (state {:?}, address {:?})",
                    store.state(),
                    store.address
                )
            })?
            .to_string();
        self.inner
            .addrs
            .write()
            .unwrap()
            .insert(store_id, addr.clone());
        Ok(addr)
    }

    /// Forgets the cached address of `store_id` (scheduler mode; a fixed map keeps it).
    pub fn invalidate(&self, store_id: u64) {
        if self.is_dynamic() {
            self.inner.addrs.write().unwrap().remove(&store_id);
        }
    }
}

impl From<HashMap<u64, String>> for StoreResolver {
    fn from(addrs: HashMap<u64, String>) -> Self {
        StoreResolver::fixed(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_map_resolves_its_stores_only_and_keeps_them() {
        let r = StoreResolver::fixed([(1, "h:1".to_string())].into());
        assert!(!r.is_dynamic());
        assert_eq!(r.resolve(1).await.as_deref(), Ok("h:1"));
        r.invalidate(1);
        assert_eq!(r.cached(1).as_deref(), Some("h:1"));
        let e = r.resolve(2).await.unwrap_err();
        assert!(e.contains("no address for store 2"), "{e}");
    }
}

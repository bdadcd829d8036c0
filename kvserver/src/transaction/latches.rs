//! Latches (TinyKV's `kv/transaction/latches`): a command that writes holds the latch of every
//! user key it may write, so that two commands on the same keys of one store run one after the
//! other (the second reads what the first wrote). All of a command's latches are taken at once
//! or none: when one is held, the command waits for its holder to let go and tries again, so
//! commands never wait for each other in a circle. Reads take no latch.
//!
//! A validation hook (tests install one) is shown every command's changes and latched keys
//! before they are written; TinyKV's harness checks with it that every written key was latched.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use raftstore::engine::CF_LOCK;
use tokio::sync::Notify;

use super::codec::decode_user_key;
use crate::storage::Modify;

/// A check of a command's changes against the keys it latched.
pub type Validation = Box<dyn Fn(&[Modify], &[Vec<u8>]) + Send + Sync>;

/// The latches of one store's user keys.
#[derive(Default)]
pub struct Latches {
    /// Held keys, each with the signal its holder gives when it lets go.
    held: Mutex<HashMap<Vec<u8>, Arc<Notify>>>,
    validation: Mutex<Option<Validation>>,
}

/// The latches a command holds; dropping it lets them go.
pub struct LatchGuard<'l> {
    latches: &'l Latches,
    keys: Vec<Vec<u8>>,
    signal: Arc<Notify>,
}

impl LatchGuard<'_> {
    /// The latched keys.
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }
}

impl Drop for LatchGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.latches.held.lock().unwrap();
        for k in &self.keys {
            held.remove(k);
        }
        drop(held);
        self.signal.notify_waiters();
    }
}

impl Latches {
    /// No key latched.
    pub fn new() -> Latches {
        Latches::default()
    }

    /// Waits until every key of `keys` (duplicates allowed) is free, then holds them all.
    pub async fn acquire(&self, keys: impl IntoIterator<Item = Vec<u8>>) -> LatchGuard<'_> {
        let mut unique: Vec<Vec<u8>> = keys
            .into_iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        unique.sort();
        loop {
            let wait = {
                let mut held = self.held.lock().unwrap();
                match unique.iter().find_map(|k| held.get(k)) {
                    Some(signal) => {
                        // Registered before the lock is released: the holder's signal cannot
                        // be missed.
                        let signal = signal.clone();
                        let notified = signal.notified_owned();
                        Some(notified)
                    }
                    None => {
                        let signal = Arc::new(Notify::new());
                        for k in &unique {
                            held.insert(k.clone(), signal.clone());
                        }
                        return LatchGuard {
                            latches: self,
                            keys: unique,
                            signal,
                        };
                    }
                }
            };
            if let Some(notified) = wait {
                notified.await;
            }
        }
    }

    /// Installs `check`, shown every validated command's changes and latched keys.
    pub fn set_validation(&self, check: Validation) {
        *self.validation.lock().unwrap() = Some(check);
    }

    /// Shows `writes` and the `latched` keys to the validation hook, if one is installed.
    pub fn validate(&self, writes: &[Modify], latched: &[Vec<u8>]) {
        if let Some(check) = self.validation.lock().unwrap().as_ref() {
            check(writes, latched);
        }
    }
}

/// The user key a change is about: lock keys are user keys, `default` and `write` keys are
/// MVCC keys (TinyKV's harness decodes them the same way). None for a key that does not decode.
pub fn user_key_of(m: &Modify) -> Option<Vec<u8>> {
    if m.cf() == CF_LOCK {
        Some(m.key().to_vec())
    } else {
        decode_user_key(m.key()).ok()
    }
}

/// A validation that panics when a change touches a key that was not latched (TinyKV's test
/// hook).
pub fn every_write_latched() -> Validation {
    Box::new(|writes, latched| {
        for m in writes {
            let key = user_key_of(m)
                .unwrap_or_else(|| panic!("a change to a key that does not decode: {m:?}"));
            assert!(
                latched.contains(&key),
                "a change to key {key:?} that was not latched (latched: {latched:?})"
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// TinyKV's `TestAcquireLatches`: a command gets its latches when none is held; another
    /// that shares a key waits until the first lets go; one on other keys goes at once.
    #[test]
    fn test_acquire_latches() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = Latches::new();
            let a = l
                .acquire(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
                .await;
            // Shares nothing: at once.
            let d = l.acquire(vec![b"d".to_vec(), b"e".to_vec()]).await;
            drop(d);
            // Shares "c": waits.
            let waiting = l.acquire(vec![b"c".to_vec(), b"z".to_vec()]);
            tokio::pin!(waiting);
            assert!(
                tokio::time::timeout(Duration::from_millis(20), &mut waiting)
                    .await
                    .is_err(),
                "a latch held by another command was given"
            );
            drop(a);
            let g = tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the latch is given once its holder lets go");
            assert_eq!(g.keys(), [b"c".to_vec(), b"z".to_vec()]);
            // Duplicates are one latch; "a" is free again.
            let dup = l.acquire(vec![b"a".to_vec(), b"a".to_vec()]).await;
            assert_eq!(dup.keys().len(), 1);
        });
    }

    #[test]
    fn validation_sees_unlatched_writes() {
        let l = Latches::new();
        l.set_validation(every_write_latched());
        let writes = vec![
            Modify::Put {
                cf: CF_LOCK.into(),
                key: b"k".to_vec(),
                value: vec![],
            },
            Modify::Delete {
                cf: "default".into(),
                key: super::super::codec::encode_key(b"k", 5),
            },
        ];
        l.validate(&writes, &[b"k".to_vec()]);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            l.validate(&writes, &[b"other".to_vec()])
        }));
        assert!(caught.is_err());
    }
}

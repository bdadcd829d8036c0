//! Seeds and digests for the simulated suites. A simulated run is a function of its seed; which
//! seeds a scenario runs is decided here, from the environment:
//!
//! - `TINYKV_SEED=n` replays seed `n` alone (the command a failure prints);
//! - `TINYKV_SEED_BASE=b` is CI's mode (`make test` sets it from the clock and prints it): the
//!   scenario runs the seeds `b, b+1, ...` (`TINYKV_SEEDS` of them, default [`CI_SEEDS`]), so
//!   every CI run explores fresh schedules, and then the seeds of [`REGRESSIONS`] listed for it;
//! - otherwise `TINYKV_SEEDS=n` runs seeds `0..n` (a student's reproducible run), and with
//!   neither variable set the scenario's own default count of seeds from 0.
//!
//! A digest is a stable hash of the delivered events, printed per run to show that a
//! seed replays bit for bit.

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
    )
}

/// Fresh seeds per scenario in CI's mode (`TINYKV_SEED_BASE` set, `TINYKV_SEEDS` not).
pub const CI_SEEDS: u64 = 3;

/// Seeds that once failed, by scenario (the name its run prints, e.g. `sim::test_basic_2b`):
/// CI's mode runs each of them again after the fresh seeds. Each entry says what it caught.
pub const REGRESSIONS: &[(&str, u64)] = &[
    // Once drop filters compounded as TinyKV's do (each filter its own roll, ~57% lost late in an
    // iteration), a client's put timed out ("request timeout") on 49 of seeds 0..50: generic_test
    // awaited the clients before healing the network, where TinyKV's GenericTest stops the chaos
    // and clears the filters first, so a request in flight at the end of an iteration had to get
    // through the compounded drops.
    ("sim::test_persist_concurrent_unreliable_2b", 0),
    // The same request timeout, from the same cause, on every seed 0..28 of this 2C scenario.
    ("sim::test_snapshot_unreliable_2c", 0),
    // 3B, as each was found (the schedules a seed gives have changed with the code since):
    // (1,1) removed and added again with the same id: its old replica's acks counted for the new
    // one, whose store then dropped every heartbeat (a commit above 0 is no initial message), so
    // "failed to transfer leader" on every seed.
    ("sim::test_conf_change_remove_leader_3b", 0),
    // A two-peer region's survivor crashed after its partner applied its own removal and was
    // destroyed, lost the commit of that removal, and waited forever for the destroyed peer's
    // vote ("request timeout").
    ("sim::test_conf_change_unreliable_recover_3b", 0),
    // A split-off region stayed unknown to the scheduler until its first election ended, which
    // under compounded drops took more than the 2 s of "find no region".
    ("sim::test_split_unreliable_3b", 0),
    // 808 bytes against a maximum of 800: the last check ran just under the maximum and the writes
    // after it were less than an eighth of the split size, so no check ran again ("no split").
    ("sim::test_one_split_3b", 0),
    // A read index waiting for heartbeat acks of a peer that the next membership change removed
    // was never answered, and every later read of the now single-peer region waited behind it
    // (a client's scan: "request timeout"); found by CI's fresh seed.
    (
        "sim::test_conf_change_recover_many_clients_3b",
        1_796_581_207,
    ),
    // With check-quorum, a leader deposed under partitions and compounded drops left the region
    // without one for longer than a client's budget ("request timeout").
    (
        "sim::test_conf_change_snapshot_unreliable_recover_concurrent_partition_3b",
        5,
    ),
    // A removed replica that missed its removal still believed it led the region; the harness
    // kept sending it the scan after its EpochNotMatch answers, for 51 s ("request timeout").
    // Found by the grader's fixed seeds, explained by `tinykv-trace explain` (4871 x "epoch not
    // match" from one peer).
    (
        "sim::test_split_conf_change_snapshot_unreliable_recover_concurrent_partition_3b",
        8,
    ),
    // A leader that removed itself sent its successor MsgTimeoutNow before the append carrying
    // the removal's commit; the successor campaigned in a newer term, so neither it nor the other
    // follower learned the commit and both still counted the destroyed leader among 4 voters.
    // With peer 1 gone too, 3 of 4 was all of the survivors, which the rotating partitions never
    // joined ("have peer 5"). Found by make test's fresh seed; read with `tinykv-trace dump`.
    (
        "sim::test_conf_change_snapshot_unreliable_recover_concurrent_partition_3b",
        1_796_631_121,
    ),
];

/// The seeds `scenario` runs (see the module documentation); `default_count` seeds from 0 when
/// no variable is set.
pub fn seeds(scenario: &str, default_count: u64) -> Vec<u64> {
    if let Some(s) = env_u64("TINYKV_SEED") {
        return vec![s];
    }
    if let Some(base) = env_u64("TINYKV_SEED_BASE") {
        let count = env_u64("TINYKV_SEEDS").unwrap_or(CI_SEEDS);
        let mut out: Vec<u64> = (0..count).map(|i| base.wrapping_add(i)).collect();
        for &(name, seed) in REGRESSIONS {
            if name == scenario && !out.contains(&seed) {
                out.push(seed);
            }
        }
        return out;
    }
    (0..env_u64("TINYKV_SEEDS").unwrap_or(default_count)).collect()
}

/// A running hash of a run's events, eight bytes at a time (each step a bijection of the state:
/// xor, multiply by an odd constant, rotate), so two runs that differ in any event differ in
/// their digest but for a 64-bit collision. Byte-at-a-time FNV-1a over every message was a
/// share of a simulated run's CPU worth saving (docs/PERFORMANCE.md, "The simulator").
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    /// Hashes in more bytes (and their count, so that how the bytes were split between calls
    /// counts too).
    pub fn add(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
        self.mix(bytes.len() as u64);
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    fn digest(parts: &[&[u8]]) -> u64 {
        let mut d = Digest::default();
        for p in parts {
            d.add(p);
        }
        d.value()
    }

    #[test]
    fn digest_tells_runs_apart() {
        let a = digest(&[b"hello world, a message", &[1, 2]]);
        assert_eq!(a, digest(&[b"hello world, a message", &[1, 2]]));
        assert_ne!(a, digest(&[b"hello world, a messagf", &[1, 2]]));
        assert_ne!(a, digest(&[b"hello world, a message", &[1]]));
        assert_ne!(a, digest(&[b"hello world, a message", &[1, 2, 0]]));
        assert_ne!(a, digest(&[b"hello world, a messag", b"e", &[1, 2]]));
        assert_ne!(digest(&[&[0]]), digest(&[&[0, 0]]));
    }
}

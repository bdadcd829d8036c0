//! Seeds and digests for the simulated suites: `TINYKV_SEED=n` replays one seed,
//! `TINYKV_SEEDS=n` runs seeds `0..n`; a digest is a stable hash (FNV-1a) of the delivered events.

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
    )
}

/// The seeds to run: `TINYKV_SEED` alone, else `0..TINYKV_SEEDS` (default `default_count`).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(s) = env_u64("TINYKV_SEED") {
        return vec![s];
    }
    (0..env_u64("TINYKV_SEEDS").unwrap_or(default_count)).collect()
}

/// A running FNV-1a hash.
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Hashes in more bytes.
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

//! Seeded randomness split into independent streams: one seed, and per purpose a stream whose
//! seed is the run seed mixed with the stream's name, so drawing more from one stream (say, a
//! longer workload) never shifts the draws of another (say, the faults).

pub use grove_rpc::rng::SplitMix64;

/// The stream named `name` of run `seed`.
pub fn stream(seed: u64, name: &str) -> SplitMix64 {
    SplitMix64::new(seed ^ fnv1a(name.as_bytes()).rotate_left(17))
}

/// FNV-1a over `bytes` (64-bit): the stable hash of stream names and trace events.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Uniform float in `[low, high)`.
pub fn uniform(rng: &mut SplitMix64, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.next_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_replayable() {
        let draws = |seed, name| {
            let mut rng = stream(seed, name);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1, "faults"), draws(1, "faults"));
        assert_ne!(draws(1, "faults"), draws(1, "network"));
        assert_ne!(draws(1, "faults"), draws(2, "faults"));
    }
}

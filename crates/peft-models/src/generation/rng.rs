//! A small seeded random number generator for sampling: the same seed gives the same draws on
//! every platform, with no dependency.

/// SplitMix64 (Steele, Lea and Flood 2014): a 64-bit counter through a bijective mixer. Plenty
/// for drawing one token per row per step, and trivially reproducible.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`, or from the clock when `None`.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| d.as_nanos() as u64)
        });
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw from `[0, 1)` with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_repeat_and_spread() {
        let draws = |seed| {
            let mut rng = Rng::new(Some(seed));
            (0..1000).map(|_| rng.uniform()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let d = draws(7);
        assert!(d.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        // Each tenth of [0, 1) gets a fair share.
        for bin in 0..10 {
            let n = d.iter().filter(|x| (**x * 10.0) as usize == bin).count();
            assert!((60..140).contains(&n), "bin {bin}: {n}");
        }
    }
}

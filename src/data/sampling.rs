//! Seeded sampling of initial states and parameters: Latin hypercube or
//! uniform, from a small PRNG whose stream never changes with crate versions
//! (SplitMix64 seeding xoshiro256**), so a seed names the same data forever.

/// xoshiro256** seeded through SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// The generator's state, to resume the stream later.
    pub fn state(&self) -> [u64; 4] {
        self.0
    }

    pub fn from_state(state: [u64; 4]) -> Self {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// How points fill the sampled box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Latin hypercube: each dimension's range cut into `n` strata, one point in each.
    Lhs,
    /// Independent uniform draws.
    Uniform,
}

/// `n` points in the box `ranges` (one `[lo, hi]` per dimension), as one column per dimension.
pub fn sample(method: Method, ranges: &[[f64; 2]], n: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    ranges
        .iter()
        .map(|&[lo, hi]| {
            let unit: Vec<f64> = match method {
                Method::Uniform => (0..n).map(|_| rng.uniform()).collect(),
                Method::Lhs => {
                    let mut strata: Vec<usize> = (0..n).collect();
                    rng.shuffle(&mut strata);
                    strata
                        .into_iter()
                        .map(|s| (s as f64 + rng.uniform()) / n as f64)
                        .collect()
                }
            };
            unit.into_iter().map(|u| lo + (hi - lo) * u).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lhs_puts_one_point_in_each_stratum() {
        let cols = sample(
            Method::Lhs,
            &[[0.0, 1.0], [-2.0, 2.0]],
            100,
            &mut Rng::new(7),
        );
        for (col, [lo, hi]) in cols.iter().zip([[0.0, 1.0], [-2.0, 2.0]]) {
            let mut hits = vec![0; 100];
            for x in col {
                assert!((lo..hi).contains(x));
                hits[((x - lo) / (hi - lo) * 100.0) as usize] += 1;
            }
            assert!(hits.iter().all(|&h| h == 1), "{hits:?}");
        }
    }

    #[test]
    fn same_seed_same_points() {
        let a = sample(Method::Uniform, &[[0.0, 1.0]], 10, &mut Rng::new(1));
        let b = sample(Method::Uniform, &[[0.0, 1.0]], 10, &mut Rng::new(1));
        let c = sample(Method::Uniform, &[[0.0, 1.0]], 10, &mut Rng::new(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The stream is part of the file format: pin its first value.
        assert_eq!(Rng::new(0).next_u64(), 0x99EC_5F36_CB75_F2B4);
    }
}

//! A small seeded pseudo-random generator (SplitMix64) for reproducible choices: which
//! demonstrations a prompt shows, which concept pairs a sweep draws, in which order.
//!
//! The engine needs a handful of draws per prompt, reproducible from one seed on every machine
//! and every version of xlpatch, so the generator is written out here (Steele, Lea & Flood,
//! "Fast splittable pseudorandom number generators", OOPSLA 2014; the constants of Java's
//! `SplittableRandom`) instead of depending on `rand`, whose streams may change between
//! releases. [`Rng::below`] is unbiased (Lemire's multiply-and-reject), so a draw depends only
//! on the seed and the sequence of calls.

/// A SplitMix64 generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator for the sub-stream `stream` of `seed`: independent of the other streams,
    /// so that adding draws to one part of a sweep does not change the others.
    pub fn stream(seed: u64, stream: &str) -> Rng {
        // FNV-1a of the stream name, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng::new(mix(seed ^ mix(h)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// A uniform integer in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        // Lemire: the high word of x * n is uniform once the biased low words are rejected.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Shuffles `xs` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }

    /// A uniformly chosen element of `xs`, `None` when it is empty.
    pub fn choose<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        (!xs.is_empty()).then(|| &xs[self.below(xs.len())])
    }

    /// `k` distinct indices of `0..n` in random order (all of them, shuffled, when `k >= n`).
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        // A partial Fisher-Yates: the first k slots are a uniform k-permutation.
        for i in 0..k {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // Reference values of SplitMix64 seeded with 1234567 (the published test vector).
        let mut r = Rng::new(1234567);
        let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821
            ]
        );
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(7);
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[r.below(6)] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
        assert!((0..1000).all(|_| r.unit() < 1.0));
    }

    #[test]
    fn shuffle_and_sample_are_permutations_and_reproducible() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        Rng::new(3).shuffle(&mut a);
        Rng::new(3).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());

        let s = Rng::new(9).sample(10, 4);
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|&i| i < 10));
        let mut d = s.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 4, "{s:?}");
        assert_eq!(Rng::new(9).sample(3, 10).len(), 3);
        assert_eq!(Rng::new(1).choose::<u8>(&[]), None);
        assert_eq!(Rng::new(1).choose(&[5]), Some(&5));
    }

    #[test]
    fn streams_differ_by_name_and_seed() {
        let x = Rng::stream(1, "pairs").next_u64();
        assert_eq!(x, Rng::stream(1, "pairs").next_u64());
        assert_ne!(x, Rng::stream(1, "demos").next_u64());
        assert_ne!(x, Rng::stream(2, "pairs").next_u64());
    }
}

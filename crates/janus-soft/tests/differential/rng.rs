//! A small seeded generator (xorshift64*): deterministic for a given seed, no dependencies.

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 step so that nearby seeds give unrelated streams (and never 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let v: &mut [u8; 8] = chunk.try_into().unwrap_or_else(|_| unreachable!());
            *v = self.next().to_le_bytes();
        }
        for b in chunks.into_remainder() {
            *b = self.next() as u8;
        }
    }

    /// An integer biased towards values that exercise flags and edge cases.
    pub fn value(&mut self) -> u64 {
        const SPECIAL: [u64; 18] = [
            0,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x7fff,
            0x8000,
            0xffff,
            0x1_0000,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
        ];
        match self.below(10) {
            0..=3 => self.next(),
            4 => self.below(17),
            5 => self.below(17).wrapping_neg(),
            6 => self.pick(&SPECIAL),
            7 => 1 << self.below(64),
            8 => self.next() >> self.below(64),
            _ => {
                let bits = self.pick(&[8u32, 16, 32]);
                let v = self.next();
                ((v << (64 - bits)) as i64 >> (64 - bits)) as u64
            }
        }
    }
}

//! Helpers shared by unit tests.

/// A small deterministic generator, so tests need no crate and always try
/// the same inputs.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

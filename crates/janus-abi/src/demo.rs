//! The demo workload: what the embedded guest runs and how the VMM checks it.
//!
//! The guest runs four parts, each bracketed by POST codes on port 0x80 so the VMM can attribute
//! exits and host time to the part without trusting the guest. After each part the guest prints
//! one result line (`janus-demo: part=NAME ...`) with a checksum the VMM recomputes on its own.
//! The reference functions here are used by both: the guest computes, the host verifies.

/// The parts, in the order the guest runs them.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Write [`CONSOLE_BYTES`] of text to the console.
    Console = 1,
    /// Read the time [`CLOCK_READS`] times.
    Clock = 2,
    /// Run [`compute`] for the configured number of iterations.
    Compute = 3,
    /// Read [`BLOCK_BYTES`] from the disk.
    Block = 4,
    /// A two-instruction loop (`dec rcx; jnz`), for guest instructions per second.
    Loop = 5,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Console,
        Part::Clock,
        Part::Compute,
        Part::Block,
        Part::Loop,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Part::Console => "console",
            Part::Clock => "clock",
            Part::Compute => "compute",
            Part::Block => "block",
            Part::Loop => "loop",
        }
    }

    pub fn from_name(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == name)
    }

    /// POST code written just before the part starts.
    pub const fn begin_code(self) -> u8 {
        POST_BEGIN | self as u8
    }

    /// POST code written just after the part ends.
    pub const fn end_code(self) -> u8 {
        POST_END | self as u8
    }

    /// The part whose begin code is `code`.
    pub fn from_begin_code(code: u8) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.begin_code() == code)
    }

    /// The part whose end code is `code`.
    pub fn from_end_code(code: u8) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.end_code() == code)
    }
}

/// High nibble of a part's begin POST code.
pub const POST_BEGIN: u8 = 0x10;
/// High nibble of a part's end POST code.
pub const POST_END: u8 = 0x20;

/// Prefix of every line the demo guest prints about itself.
pub const LINE_PREFIX: &str = "janus-demo: ";

/// Bytes the console part writes.
pub const CONSOLE_BYTES: usize = 4096;
/// Time reads in the clock part.
pub const CLOCK_READS: u32 = 1000;
/// Bytes the block part reads.
pub const BLOCK_BYTES: usize = 1024 * 1024;
/// Bytes per block request in para mode (so 16 requests for the part).
pub const BLOCK_REQUEST_BYTES: usize = 64 * 1024;
/// Unit in which block ops are counted: one 4 KiB block.
pub const BLOCK_OP_BYTES: usize = 4096;
/// Default iterations of the compute loop (command line `compute=N` overrides).
pub const DEFAULT_COMPUTE_ITERS: u64 = 200_000;
/// Default iterations of the two-instruction loop (command line `loop=N` overrides).
pub const DEFAULT_LOOP_ITERS: u64 = 500_000;
/// Instructions per iteration of the loop part, by construction.
pub const LOOP_INSNS_PER_ITER: u64 = 2;

/// FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over bytes, continuing from `hash` (start with [`FNV_OFFSET`]).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a over little-endian 64-bit words: a cheaper checksum for large buffers (one multiply
/// per 8 bytes). `bytes.len()` must be a multiple of 8; a tail is folded in byte by byte.
pub fn fnv1a_words(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        hash ^= w;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    fnv1a(hash, chunks.remainder())
}

/// Byte `i` of the console text: numbered lines of 64 bytes, the last one a newline.
pub fn console_byte(i: usize) -> u8 {
    const BODY: &[u8] = b": the quick brown fox jumps over the lazy dog, 0123456789";
    let line = i / 64;
    let col = i % 64;
    match col {
        0 => b'L',
        1..=4 => {
            // Four decimal digits of the line number.
            let div = [1000, 100, 10, 1][col - 1];
            b'0' + ((line / div) % 10) as u8
        }
        63 => b'\n',
        _ => BODY[(col - 5) % BODY.len()],
    }
}

/// Checksum of the whole console text, as the guest should report it.
pub fn console_checksum() -> u64 {
    let mut h = FNV_OFFSET;
    for i in 0..CONSOLE_BYTES {
        h = fnv1a(h, &[console_byte(i)]);
    }
    h
}

/// The compute kernel: integer mixing with no memory traffic, identical in both modes.
#[inline(never)]
pub fn compute(iters: u64) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut acc: u64 = 0;
    let mut i = 0;
    while i < iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = (acc ^ x.wrapping_add(i)).rotate_left(5);
        i += 1;
    }
    acc
}

/// Byte at `offset` of the built-in test disk image (used when no `--disk` is given): a
/// position-dependent pattern, so a misplaced sector changes the checksum.
pub fn test_image_byte(offset: u64) -> u8 {
    let sector = offset / 512;
    let x = (offset ^ sector.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x2545_f491_4f6c_dd1d);
    (x >> 56) as u8
}

/// Parses a `key=value` decimal unsigned integer out of a boot command line.
pub fn cmdline_u64(cmdline: &str, key: &str) -> Option<u64> {
    cmdline.split_ascii_whitespace().find_map(|word| {
        let (k, v) = word.split_once('=')?;
        if k == key {
            v.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_codes_identify_parts() {
        for p in Part::ALL {
            assert_eq!(Part::from_begin_code(p.begin_code()), Some(p));
            assert_eq!(Part::from_end_code(p.end_code()), Some(p));
            assert_eq!(Part::from_name(p.name()), Some(p));
        }
        assert_eq!(Part::from_begin_code(0x20 | 1), None);
    }

    #[test]
    fn console_text_is_numbered_lines() {
        let text: [u8; 128] = core::array::from_fn(console_byte);
        assert_eq!(&text[..5], b"L0000");
        assert_eq!(text[63], b'\n');
        assert_eq!(&text[64..69], b"L0001");
        assert!(text.iter().all(|b| b.is_ascii()));
    }

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn word_checksum_sees_every_byte() {
        let mut buf = [0u8; 64];
        let a = fnv1a_words(FNV_OFFSET, &buf);
        buf[37] = 1;
        assert_ne!(a, fnv1a_words(FNV_OFFSET, &buf));
    }

    #[test]
    fn compute_is_deterministic_and_depends_on_iterations() {
        assert_eq!(compute(1000), compute(1000));
        assert_ne!(compute(1000), compute(1001));
        assert_eq!(compute(0), 0);
    }

    #[test]
    fn cmdline_values() {
        assert_eq!(cmdline_u64("a=1 compute=5000 b", "compute"), Some(5000));
        assert_eq!(cmdline_u64("compute=x", "compute"), None);
        assert_eq!(cmdline_u64("", "compute"), None);
    }
}

//! Helpers for guest-level tests: assembling test guests and building descriptor tables.

#![allow(dead_code)]

use iced_x86::code_asm::CodeAssembler;
use iced_x86::IcedError;
use janus_soft::testing::TestMachine;

/// Assembles `f` as `bits`-bit code to run at `ip`.
pub fn asm(
    bits: u32,
    ip: u64,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).expect("bitness");
    f(&mut a).expect("assemble");
    a.assemble(ip).expect("assemble")
}

/// A code or data segment descriptor: flat 4 GiB.
pub fn descriptor(code: bool, dpl: u8, long: bool, big: bool) -> u64 {
    let typ: u64 = if code { 0xa } else { 0x2 };
    let access = (1 << 7) | ((dpl as u64) << 5) | (1 << 4) | typ; // P, DPL, S, type
    let flags = (1u64 << 3) // G
        | if long { 1 << 1 } else { 0 }
        | if big { 1 << 2 } else { 0 };
    0xffff | (access << 40) | (0xf << 48) | (flags << 52)
}

/// A 16-byte 64-bit interrupt (or trap) gate.
pub fn gate64(handler: u64, selector: u16, ist: u8, dpl: u8, trap: bool) -> [u64; 2] {
    let typ: u64 = if trap { 0xf } else { 0xe };
    let lo = (handler & 0xffff)
        | ((selector as u64) << 16)
        | ((ist as u64 & 7) << 32)
        | (typ << 40)
        | ((dpl as u64) << 45)
        | (1 << 47)
        | ((handler >> 16) & 0xffff) << 48;
    [lo, handler >> 32]
}

/// An 8-byte 32-bit interrupt gate.
pub fn gate32(handler: u32, selector: u16) -> u64 {
    (handler as u64 & 0xffff)
        | ((selector as u64) << 16)
        | (0x8eu64 << 40)
        | ((handler as u64 >> 16) << 48)
}

pub fn put_u64s(m: &TestMachine, at: u64, vals: &[u64]) {
    for (i, v) in vals.iter().enumerate() {
        m.write_u64(at + 8 * i as u64, *v);
    }
}

pub fn read_u32(m: &TestMachine, at: u64) -> u32 {
    u32::from_le_bytes(m.read(at, 4).try_into().unwrap())
}

/// A xorshift generator for the random-code tests (deterministic from its seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

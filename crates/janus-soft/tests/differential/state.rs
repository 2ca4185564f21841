//! A test state (what both sides start from) and the FXSAVE image helpers.

use crate::rng::Rng;

/// The 64-bit FXSAVE image: x87, MMX and SSE state in one 512-byte block.
#[derive(Clone)]
#[repr(C, align(16))]
pub struct Fx(pub [u8; 512]);

pub mod fxo {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    pub const FTW: usize = 4;
    pub const MXCSR: usize = 24;
    pub const ST: usize = 32;
    pub const XMM: usize = 160;
}

impl Fx {
    /// FNINIT state, MXCSR at its reset value.
    pub fn init() -> Fx {
        let mut f = Fx([0; 512]);
        f.set_fcw(0x037f);
        f.set_mxcsr(0x1f80);
        f
    }
    fn u16_at(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.0[o], self.0[o + 1]])
    }
    pub fn fcw(&self) -> u16 {
        self.u16_at(fxo::FCW)
    }
    pub fn fsw(&self) -> u16 {
        self.u16_at(fxo::FSW)
    }
    pub fn ftw(&self) -> u8 {
        self.0[fxo::FTW]
    }
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes(
            self.0[fxo::MXCSR..fxo::MXCSR + 4]
                .try_into()
                .unwrap_or_default(),
        )
    }
    /// ST(i) (stack order, as FXSAVE stores it): the 80-bit value.
    pub fn st(&self, i: usize) -> [u8; 10] {
        let o = fxo::ST + 16 * i;
        self.0[o..o + 10].try_into().unwrap_or_default()
    }
    pub fn xmm(&self, i: usize) -> u128 {
        let o = fxo::XMM + 16 * i;
        u128::from_le_bytes(self.0[o..o + 16].try_into().unwrap_or_default())
    }
    pub fn set_fcw(&mut self, v: u16) {
        self.0[fxo::FCW..fxo::FCW + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_fsw(&mut self, v: u16) {
        self.0[fxo::FSW..fxo::FSW + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_ftw(&mut self, v: u8) {
        self.0[fxo::FTW] = v;
    }
    pub fn set_mxcsr(&mut self, v: u32) {
        self.0[fxo::MXCSR..fxo::MXCSR + 4].copy_from_slice(&v.to_le_bytes());
        // MXCSR_MASK is ignored by FXRSTOR; keep it 0 in inputs.
    }
    pub fn set_st(&mut self, i: usize, v: [u8; 10]) {
        let o = fxo::ST + 16 * i;
        self.0[o..o + 10].copy_from_slice(&v);
        self.0[o + 10..o + 16].fill(0);
    }
    pub fn set_xmm(&mut self, i: usize, v: u128) {
        let o = fxo::XMM + 16 * i;
        self.0[o..o + 16].copy_from_slice(&v.to_le_bytes());
    }
    /// TOP from the status word.
    pub fn top(&self) -> usize {
        ((self.fsw() >> 11) & 7) as usize
    }
}

/// Everything a test starts from.
#[derive(Clone)]
pub struct State {
    /// rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15.
    pub gpr: [u64; 16],
    /// Arithmetic flags and DF (the rest is fixed by each side: bit 1, IF).
    pub rflags: u64,
    pub fx: Fx,
    /// Bits 128..256 of YMM0-15.
    pub ymmh: [u128; 16],
    /// The compared area: data buffer then stack area.
    pub mem: Vec<u8>,
}

pub const CF: u64 = 1;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// The RFLAGS bits the suite sets and compares.
pub const TESTED_FLAGS: u64 = ARITH | DF;

pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

// ------------------------------------------------------------- floating-point values

/// An interesting single-precision bit pattern.
pub fn f32_bits(rng: &mut Rng) -> u32 {
    let sign = (rng.below(2) as u32) << 31;
    sign | match rng.below(16) {
        0 => 0,
        1 => 0x7f80_0000,                                     // infinity
        2 => 0x7fc0_0000 | (rng.next() as u32 & 0x3f_ffff),   // quiet NaN
        3 => 0x7f80_0000 | (1 + rng.below(0x3f_ffff) as u32), // signalling NaN
        4 => 1 + rng.below(0x7f_ffff) as u32,                 // denormal
        5 => 0x0080_0000,                                     // smallest normal
        6 => 0x7f7f_ffff,                                     // largest finite
        7 => 0x3f80_0000,                                     // 1.0
        8 => (rng.pick(&[1.5f32, 2.0, 3.0, 0.5, 10.0, 100.0, 1e9, 0.1, 2.5, 3.5])).to_bits(),
        9 => ((rng.range(1, 1 << 20) as f32) * rng.pick(&[1.0f32, 0.25, 0.5])).to_bits(),
        10..=12 => ((rng.range(0x60, 0xa0) as u32) << 23) | (rng.next() as u32 & 0x7f_ffff),
        _ => rng.next() as u32 & 0x7fff_ffff,
    }
}

/// An interesting double-precision bit pattern.
pub fn f64_bits(rng: &mut Rng) -> u64 {
    let sign = rng.below(2) << 63;
    sign | match rng.below(16) {
        0 => 0,
        1 => 0x7ff0_0000_0000_0000,
        2 => 0x7ff8_0000_0000_0000 | (rng.next() & 0x7_ffff_ffff_ffff),
        3 => 0x7ff0_0000_0000_0000 | (1 + rng.below(0x7_ffff_ffff_ffff)),
        4 => 1 + rng.below(0xf_ffff_ffff_ffff),
        5 => 0x0010_0000_0000_0000,
        6 => 0x7fef_ffff_ffff_ffff,
        7 => 1.0f64.to_bits(),
        8 => (rng.pick(&[
            1.5f64,
            2.0,
            3.0,
            0.5,
            10.0,
            1e18,
            0.1,
            2.5,
            3.5,
            4294967296.5,
        ]))
        .to_bits(),
        9 => ((rng.range(1, 1 << 40) as f64) * rng.pick(&[1.0f64, 0.25, 0.5])).to_bits(),
        10..=12 => (rng.range(0x3c0, 0x440) << 52) | (rng.next() & 0xf_ffff_ffff_ffff),
        _ => rng.next() & 0x7fff_ffff_ffff_ffff,
    }
}

/// An interesting extended-precision (80-bit) value, including the encodings modern CPUs
/// treat as invalid (unnormals, pseudo-NaNs, pseudo-infinities) now and then.
pub fn f80_bits(rng: &mut Rng) -> [u8; 10] {
    let sign = (rng.below(2) as u16) << 15;
    let (exp, mant): (u16, u64) = match rng.below(20) {
        0 => (0, 0),
        1 => (0x7fff, 1 << 63),                                    // infinity
        2 => (0x7fff, (3 << 62) | (rng.next() & ((1 << 62) - 1))), // quiet NaN
        3 => (0x7fff, (1 << 63) | (1 + rng.below((1 << 62) - 1))), // signalling NaN
        4 => (0, 1 + rng.below((1 << 63) - 1)),                    // denormal
        5 => (0, (1 << 63) | rng.next()),                          // pseudo-denormal
        6 => (rng.range(1, 0x7fff) as u16, rng.next() & !(1 << 63)), // unnormal
        7 => (0x7fff, rng.next() & !(1 << 63)),                    // pseudo-NaN/infinity
        8 => (0x3fff, 1 << 63),                                    // 1.0
        9 => {
            let v = (rng.range(1, 1 << 40) as f64) * rng.pick(&[1.0, 0.25, 0.5, 0.1]);
            return f64_to_f80(v.to_bits() | (sign as u64) << 48);
        }
        10..=15 => (rng.range(0x3fc0, 0x4040) as u16, (1 << 63) | rng.next()),
        16 => (rng.range(1, 0x7fff) as u16, (1 << 63) | rng.next()),
        _ => return f64_to_f80(f64_bits(rng)),
    };
    let mut out = [0u8; 10];
    out[..8].copy_from_slice(&mant.to_le_bytes());
    out[8..].copy_from_slice(&(sign | exp).to_le_bytes());
    out
}

/// Exact conversion of a double to the 80-bit format (NaNs keep their payload).
pub fn f64_to_f80(b: u64) -> [u8; 10] {
    let sign = ((b >> 63) as u16) << 15;
    let e = ((b >> 52) & 0x7ff) as i32;
    let f = b & 0xf_ffff_ffff_ffff;
    let (exp, mant) = if e == 0 {
        if f == 0 {
            (0u16, 0u64)
        } else {
            // Normalise the denormal: f * 2^-1074 = (f << lz) * 2^(-lz - 1074).
            let lz = f.leading_zeros();
            ((15372 - lz) as u16, f << lz)
        }
    } else if e == 0x7ff {
        (0x7fff, (1 << 63) | (f << 11))
    } else {
        ((e - 1023 + 16383) as u16, (1 << 63) | (f << 11))
    };
    let mut out = [0u8; 10];
    out[..8].copy_from_slice(&mant.to_le_bytes());
    out[8..].copy_from_slice(&(sign | exp).to_le_bytes());
    out
}

/// A random XMM value: float lanes, double lanes or plain integers.
pub fn xmm_value(rng: &mut Rng) -> u128 {
    match rng.below(4) {
        0 => (0..4).fold(0u128, |a, i| a | (f32_bits(rng) as u128) << (32 * i)),
        1 => f64_bits(rng) as u128 | (f64_bits(rng) as u128) << 64,
        2 => (0..2).fold(0u128, |a, i| a | (rng.value() as u128) << (64 * i)),
        _ => rng.next() as u128 | (rng.next() as u128) << 64,
    }
}

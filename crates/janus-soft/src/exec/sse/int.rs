//! Integer SIMD (MMX and SSE2) and the bitwise, shuffle and unpack forms of SSE, in Rust.
//!
//! Every operation works on a `u128` of `w` meaningful bytes (8 for MMX registers, 16 for
//! XMM), lane by lane through the [`Lane`] trait, so one definition serves both widths.

use super::super::Insn;
use super::operand::{imm8, mmx_enter, prologue, read, write};
use crate::core::{Cpu, Flow, Step};

/// A lane type: an integer of `BITS` bits stored in the low bits of a `u128`.
pub trait Lane: Copy {
    const BITS: u32;
    fn from_bits(v: u128) -> Self;
    fn bits(self) -> u128;
}

macro_rules! lane {
    ($($t:ty: $u:ty),*) => {$(
        impl Lane for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn from_bits(v: u128) -> Self {
                v as $u as $t
            }
            #[inline(always)]
            fn bits(self) -> u128 {
                self as $u as u128
            }
        }
    )*};
}
lane!(u8: u8, i8: u8, u16: u16, i16: u16, u32: u32, i32: u32, u64: u64);

/// Lane `i` of `v`.
#[inline(always)]
fn get<T: Lane>(v: u128, i: u32) -> T {
    T::from_bits(v >> (i * T::BITS))
}

/// `x` placed as lane `i`.
#[inline(always)]
fn at<T: Lane>(x: T, i: u32) -> u128 {
    x.bits() << (i * T::BITS)
}

/// Number of `T` lanes in `w` bytes.
#[inline(always)]
fn count<T: Lane>(w: u32) -> u32 {
    w * 8 / T::BITS
}

/// Lane-wise `f(a, b)`.
fn map2<T: Lane>(a: u128, b: u128, w: u32, f: impl Fn(T, T) -> T) -> u128 {
    (0..count::<T>(w)).fold(0, |r, i| r | at(f(get(a, i), get(b, i)), i))
}

/// Lane-wise `f(a)`.
fn map1<T: Lane>(a: u128, w: u32, f: impl Fn(T) -> T) -> u128 {
    (0..count::<T>(w)).fold(0, |r, i| r | at(f(get(a, i)), i))
}

/// All ones if `c`, else zero (compare results).
fn ones<T: Lane>(c: bool) -> T {
    T::from_bits(if c { u128::MAX } else { 0 })
}

/// Narrows the lanes of `a` then `b` into one register (PACKSSWB and friends).
fn pack<S: Lane, D: Lane>(a: u128, b: u128, w: u32, f: impl Fn(S) -> D) -> u128 {
    let n = count::<S>(w);
    (0..n).fold(0, |r, i| {
        r | at(f(get(a, i)), i) | at(f(get::<S>(b, i)), i + n)
    })
}

/// Interleaves the low (or high) halves of `a` and `b` (PUNPCKL*/PUNPCKH*, UNPCK*).
fn unpack<T: Lane>(a: u128, b: u128, w: u32, high: bool) -> u128 {
    let half = count::<T>(w) / 2;
    let base = if high { half } else { 0 };
    (0..half).fold(0, |r, i| {
        r | at(get::<T>(a, base + i), 2 * i) | at(get::<T>(b, base + i), 2 * i + 1)
    })
}

/// Logical shift left (`left`) or right of each lane by `n`; counts past the lane width give 0.
fn shift<T: Lane>(a: u128, n: u64, w: u32, left: bool) -> u128 {
    if n >= T::BITS as u64 {
        return 0;
    }
    let n = n as u32;
    map1::<T>(a, w, |x| {
        let v = x.bits();
        T::from_bits(if left { v << n } else { v >> n })
    })
}

/// Arithmetic shift right; counts past the lane width fill with the sign.
fn sar<T: Lane>(a: u128, n: u64, w: u32) -> u128 {
    let n = n.min(T::BITS as u64 - 1) as u32;
    let s = 128 - T::BITS;
    map1::<T>(a, w, |x| {
        T::from_bits((((x.bits() << s) as i128) >> (s + n)) as u128)
    })
}

/// Sum of absolute byte differences per 64-bit group, in that group's low word.
fn psadbw(a: u128, b: u128, w: u32) -> u128 {
    (0..w / 8).fold(0, |r, g| {
        let sum: u64 = (0..8)
            .map(|i| get::<u8>(a, g * 8 + i).abs_diff(get::<u8>(b, g * 8 + i)) as u64)
            .sum();
        r | (sum as u128) << (g * 64)
    })
}

/// Multiplies signed words and adds adjacent pairs into doublewords.
fn pmaddwd(a: u128, b: u128, w: u32) -> u128 {
    (0..count::<u32>(w)).fold(0, |r, j| {
        let p = |i: u32| get::<i16>(a, i) as i32 * get::<i16>(b, i) as i32;
        r | at(p(2 * j).wrapping_add(p(2 * j + 1)), j)
    })
}

/// Unsigned multiply of the even doublewords into quadwords.
fn pmuludq(a: u128, b: u128, w: u32) -> u128 {
    (0..count::<u64>(w)).fold(0, |r, j| {
        r | at(get::<u32>(a, 2 * j) as u64 * get::<u32>(b, 2 * j) as u64, j)
    })
}

/// The top bit of each lane of `v`, as a bit mask.
fn signs<T: Lane>(v: u128, w: u32) -> u128 {
    (0..count::<T>(w)).fold(0, |r, i| {
        r | ((get::<T>(v, i).bits() >> (T::BITS - 1)) & 1) << i
    })
}

/// Four lanes of `T` from `src`, lane i chosen by imm bits 2i+1..2i (PSHUFD, PSHUFW and the
/// halves of PSHUFLW/PSHUFHW); `first` is the lane index of the group.
fn shuffle4<T: Lane>(src: u128, imm: u8, first: u32) -> u128 {
    (0..4).fold(0, |r, i| {
        let sel = (imm >> (2 * i)) as u32 & 3;
        r | at(get::<T>(src, first + sel), first + i)
    })
}

fn sat_i8(x: i16) -> i8 {
    x.clamp(i8::MIN as i16, i8::MAX as i16) as i8
}
fn sat_i16(x: i32) -> i16 {
    x.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}
fn sat_u8(x: i16) -> u8 {
    x.clamp(0, u8::MAX as i16) as u8
}

/// Operation codes for [`int2`].
pub mod op {
    pub const PADDB: u8 = 0;
    pub const PADDW: u8 = 1;
    pub const PADDD: u8 = 2;
    pub const PADDQ: u8 = 3;
    pub const PADDSB: u8 = 4;
    pub const PADDSW: u8 = 5;
    pub const PADDUSB: u8 = 6;
    pub const PADDUSW: u8 = 7;
    pub const PSUBB: u8 = 8;
    pub const PSUBW: u8 = 9;
    pub const PSUBD: u8 = 10;
    pub const PSUBQ: u8 = 11;
    pub const PSUBSB: u8 = 12;
    pub const PSUBSW: u8 = 13;
    pub const PSUBUSB: u8 = 14;
    pub const PSUBUSW: u8 = 15;
    pub const PMULLW: u8 = 16;
    pub const PMULHW: u8 = 17;
    pub const PMULHUW: u8 = 18;
    pub const PMULUDQ: u8 = 19;
    pub const PMADDWD: u8 = 20;
    pub const PAVGB: u8 = 21;
    pub const PAVGW: u8 = 22;
    pub const PMINUB: u8 = 23;
    pub const PMAXUB: u8 = 24;
    pub const PMINSW: u8 = 25;
    pub const PMAXSW: u8 = 26;
    pub const PSADBW: u8 = 27;
    pub const PCMPEQB: u8 = 28;
    pub const PCMPEQW: u8 = 29;
    pub const PCMPEQD: u8 = 30;
    pub const PCMPGTB: u8 = 31;
    pub const PCMPGTW: u8 = 32;
    pub const PCMPGTD: u8 = 33;
    pub const AND: u8 = 34;
    pub const ANDN: u8 = 35;
    pub const OR: u8 = 36;
    pub const XOR: u8 = 37;
    pub const PSLLW: u8 = 38;
    pub const PSLLD: u8 = 39;
    pub const PSLLQ: u8 = 40;
    pub const PSRLW: u8 = 41;
    pub const PSRLD: u8 = 42;
    pub const PSRLQ: u8 = 43;
    pub const PSRAW: u8 = 44;
    pub const PSRAD: u8 = 45;
    pub const PSLLDQ: u8 = 46;
    pub const PSRLDQ: u8 = 47;
    pub const PACKSSWB: u8 = 48;
    pub const PACKSSDW: u8 = 49;
    pub const PACKUSWB: u8 = 50;
    pub const UNPCKLBW: u8 = 51;
    pub const UNPCKLWD: u8 = 52;
    pub const UNPCKLDQ: u8 = 53;
    pub const UNPCKLQDQ: u8 = 54;
    pub const UNPCKHBW: u8 = 55;
    pub const UNPCKHWD: u8 = 56;
    pub const UNPCKHDQ: u8 = 57;
    pub const UNPCKHQDQ: u8 = 58;
    pub const PSHUFD: u8 = 59;
    pub const PSHUFW: u8 = 60;
    pub const PSHUFLW: u8 = 61;
    pub const PSHUFHW: u8 = 62;
    pub const SHUFPS: u8 = 63;
    pub const SHUFPD: u8 = 64;
    pub const PEXTRW: u8 = 65;
    pub const PINSRW: u8 = 66;
    pub const PMOVMSKB: u8 = 67;
    pub const MOVMSKPS: u8 = 68;
    pub const MOVMSKPD: u8 = 69;
}

/// `a op b` on `w` bytes; `imm` is the instruction's imm8 where it has one. `a` is the
/// destination's value, `b` the source's (for shifts, the count).
pub fn compute(code: u8, a: u128, b: u128, imm: u8, w: u32) -> u128 {
    use op::*;
    let n = b as u64;
    match code {
        PADDB => map2::<u8>(a, b, w, u8::wrapping_add),
        PADDW => map2::<u16>(a, b, w, u16::wrapping_add),
        PADDD => map2::<u32>(a, b, w, u32::wrapping_add),
        PADDQ => map2::<u64>(a, b, w, u64::wrapping_add),
        PADDSB => map2::<i8>(a, b, w, i8::saturating_add),
        PADDSW => map2::<i16>(a, b, w, i16::saturating_add),
        PADDUSB => map2::<u8>(a, b, w, u8::saturating_add),
        PADDUSW => map2::<u16>(a, b, w, u16::saturating_add),
        PSUBB => map2::<u8>(a, b, w, u8::wrapping_sub),
        PSUBW => map2::<u16>(a, b, w, u16::wrapping_sub),
        PSUBD => map2::<u32>(a, b, w, u32::wrapping_sub),
        PSUBQ => map2::<u64>(a, b, w, u64::wrapping_sub),
        PSUBSB => map2::<i8>(a, b, w, i8::saturating_sub),
        PSUBSW => map2::<i16>(a, b, w, i16::saturating_sub),
        PSUBUSB => map2::<u8>(a, b, w, u8::saturating_sub),
        PSUBUSW => map2::<u16>(a, b, w, u16::saturating_sub),
        PMULLW => map2::<u16>(a, b, w, u16::wrapping_mul),
        PMULHW => map2::<i16>(a, b, w, |x, y| ((x as i32 * y as i32) >> 16) as i16),
        PMULHUW => map2::<u16>(a, b, w, |x, y| ((x as u32 * y as u32) >> 16) as u16),
        PMULUDQ => pmuludq(a, b, w),
        PMADDWD => pmaddwd(a, b, w),
        PAVGB => map2::<u8>(a, b, w, |x, y| ((x as u16 + y as u16 + 1) >> 1) as u8),
        PAVGW => map2::<u16>(a, b, w, |x, y| ((x as u32 + y as u32 + 1) >> 1) as u16),
        PMINUB => map2::<u8>(a, b, w, u8::min),
        PMAXUB => map2::<u8>(a, b, w, u8::max),
        PMINSW => map2::<i16>(a, b, w, i16::min),
        PMAXSW => map2::<i16>(a, b, w, i16::max),
        PSADBW => psadbw(a, b, w),
        PCMPEQB => map2::<u8>(a, b, w, |x, y| ones(x == y)),
        PCMPEQW => map2::<u16>(a, b, w, |x, y| ones(x == y)),
        PCMPEQD => map2::<u32>(a, b, w, |x, y| ones(x == y)),
        PCMPGTB => map2::<i8>(a, b, w, |x, y| ones(x > y)),
        PCMPGTW => map2::<i16>(a, b, w, |x, y| ones(x > y)),
        PCMPGTD => map2::<i32>(a, b, w, |x, y| ones(x > y)),
        AND => a & b,
        ANDN => !a & b,
        OR => a | b,
        XOR => a ^ b,
        PSLLW => shift::<u16>(a, n, w, true),
        PSLLD => shift::<u32>(a, n, w, true),
        PSLLQ => shift::<u64>(a, n, w, true),
        PSRLW => shift::<u16>(a, n, w, false),
        PSRLD => shift::<u32>(a, n, w, false),
        PSRLQ => shift::<u64>(a, n, w, false),
        PSRAW => sar::<i16>(a, n, w),
        PSRAD => sar::<i32>(a, n, w),
        PSLLDQ if n < 16 => a << (n * 8),
        PSRLDQ if n < 16 => a >> (n * 8),
        PSLLDQ | PSRLDQ => 0,
        PACKSSWB => pack::<i16, i8>(a, b, w, sat_i8),
        PACKSSDW => pack::<i32, i16>(a, b, w, sat_i16),
        PACKUSWB => pack::<i16, u8>(a, b, w, sat_u8),
        UNPCKLBW => unpack::<u8>(a, b, w, false),
        UNPCKLWD => unpack::<u16>(a, b, w, false),
        UNPCKLDQ => unpack::<u32>(a, b, w, false),
        UNPCKLQDQ => unpack::<u64>(a, b, w, false),
        UNPCKHBW => unpack::<u8>(a, b, w, true),
        UNPCKHWD => unpack::<u16>(a, b, w, true),
        UNPCKHDQ => unpack::<u32>(a, b, w, true),
        UNPCKHQDQ => unpack::<u64>(a, b, w, true),
        PSHUFD => shuffle4::<u32>(b, imm, 0),
        PSHUFW => shuffle4::<u16>(b, imm, 0),
        PSHUFLW => shuffle4::<u16>(b, imm, 0) | (b >> 64) << 64,
        PSHUFHW => shuffle4::<u16>(b, imm, 4) | (b as u64 as u128),
        SHUFPS => shufps(a, b, imm),
        SHUFPD => {
            at(get::<u64>(a, imm as u32 & 1), 0) | at(get::<u64>(b, (imm as u32 >> 1) & 1), 1)
        }
        PEXTRW => get::<u16>(b, imm as u32 & (count::<u16>(w) - 1)) as u128,
        PINSRW => {
            let i = imm as u32 & (count::<u16>(w) - 1);
            (a & !at(u16::MAX, i)) | at(b as u16, i)
        }
        PMOVMSKB => signs::<u8>(b, w),
        MOVMSKPS => signs::<u32>(b, 16),
        MOVMSKPD => signs::<u64>(b, 16),
        _ => a,
    }
}

/// SHUFPS: two lanes of the destination, then two of the source, chosen by imm8.
fn shufps(a: u128, b: u128, imm: u8) -> u128 {
    let sel = |i: u32| (imm >> (2 * i)) as u32 & 3;
    at(get::<u32>(a, sel(0)), 0)
        | at(get::<u32>(a, sel(1)), 1)
        | at(get::<u32>(b, sel(2)), 2)
        | at(get::<u32>(b, sel(3)), 3)
}

/// An integer, bitwise or shuffle operation: operand 0 = f(operand 0, operand 1, imm8), on MMX
/// registers (8 bytes) if it names one, else on XMM (16 bytes). Operand 0 may be a
/// general-purpose register (PEXTRW, PMOVMSKB, MOVMSKPS/PD).
pub fn int2<const OP: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let mmx = prologue(cpu, insn, false)?;
    let w = if mmx { 8 } else { 16 };
    let a = read(cpu, insn, 0)?;
    let b = read(cpu, insn, 1)?;
    let r = compute(OP, a, b, imm8(insn), w);
    write(cpu, insn, 0, r)?;
    if mmx {
        mmx_enter(cpu);
    }
    Ok(Flow::Next)
}

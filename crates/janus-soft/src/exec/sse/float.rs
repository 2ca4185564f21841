//! SSE/SSE2 floating point: arithmetic, compares, conversions. Each runs on the host (see
//! `host`); this module feeds it the guest's operands and applies the guest's MXCSR.

use super::super::{get, put, Insn};
use super::host::{self, Bin, DE, FLAGS, IE, OE, PE, UE, ZE};
use super::operand::{check, imm8, low, mmx_enter, prologue, read, write};
use crate::core::{vector, Cpu, Fault, Flow, Step, Stop};
use crate::cpu::CR4_OSXMMEXCPT;
use crate::flags;

/// The lanes of a result, for the exceptions a run with every exception masked cannot show
/// (see [`post_flags`]). Only operations that can overflow or underflow need them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// No overflow or underflow possible.
    None,
    Ps,
    Pd,
    Ss,
    Sd,
    /// Two doubles in, two singles out (CVTPD2PS).
    PdToPs,
    /// One double in, one single out (CVTSD2SS).
    SdToSs,
}

impl Lanes {
    /// (number of lanes, input lane bits, output lane bits)
    fn shape(self) -> (u32, u32, u32) {
        match self {
            Lanes::None => (0, 32, 32),
            Lanes::Ps => (4, 32, 32),
            Lanes::Pd => (2, 64, 64),
            Lanes::Ss => (1, 32, 32),
            Lanes::Sd => (1, 64, 64),
            Lanes::PdToPs => (2, 64, 32),
            Lanes::SdToSs => (1, 64, 32),
        }
    }
}

/// What an operation that can overflow or underflow computes, to tell whether its result
/// is exact when the exponent range does not matter (see [`exact`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    None,
    Add,
    Sub,
    Mul,
    Div,
    /// Rounds the source to single precision.
    Narrow,
}

/// One floating-point operation with an XMM (or, for CVT*2PI, MMX) destination.
pub struct FpOp {
    pub host: Bin,
    /// Bytes of the source operand that the instruction reads (the rest of a register source is
    /// zeroed, so the host instruction sees only those lanes).
    pub src: u32,
    pub arith: Arith,
    pub lanes: Lanes,
}

/// The fault for an unmasked SIMD floating-point exception: #XM, or #UD without
/// CR4.OSXMMEXCPT.
pub fn simd_fault(cpu: &Cpu) -> Stop {
    if cpu.r.cr4 & CR4_OSXMMEXCPT != 0 {
        Fault::new(vector::XM).into()
    } else {
        Fault::ud().into()
    }
}

/// Applies the exception flags an operation raised to the guest MXCSR. `post` computes the
/// post-computation flags as hardware reports them when some are unmasked. Returns whether the
/// destination may be written; an unmasked exception raises #XM instead (the flags are set,
/// the destination is not written).
///
/// Hardware first looks for pre-computation exceptions (invalid, denormal, divide by zero) in
/// every lane; if one is unmasked it sets those flags only and traps. Otherwise it computes,
/// sets every flag and traps if any is unmasked.
pub fn settle(cpu: &mut Cpu, raised: u32, post: impl FnOnce(u32) -> u32) -> Result<(), Stop> {
    let guest = cpu.r.fpu.mxcsr;
    let unmasked = host::unmasked(guest);
    let raised = raised & FLAGS;
    if unmasked == 0 {
        cpu.r.fpu.mxcsr |= raised;
        return Ok(());
    }
    let pre = raised & (IE | DE | ZE);
    let flags = if pre & unmasked != 0 {
        pre
    } else {
        post(unmasked)
    };
    cpu.r.fpu.mxcsr |= flags;
    if flags & unmasked != 0 {
        return Err(simd_fault(cpu));
    }
    Ok(())
}

/// A value with every lane but `k` (of `bits` bits) replaced by 1.0, which no operation
/// turns into an exception.
fn isolate(v: u128, k: u32, bits: u32) -> u128 {
    let one: u128 = if bits == 32 {
        0x3f80_0000
    } else {
        0x3ff0_0000_0000_0000
    };
    let mask = low(u128::MAX, bits / 8);
    let mut r = v & (mask << (k * bits));
    for i in (0..128 / bits).filter(|&i| i != k) {
        r |= one << (i * bits);
    }
    r
}

/// Lane `k` of `v`, `bits` wide.
fn lane(v: u128, k: u32, bits: u32) -> u64 {
    (low(v >> (k * bits), bits / 8)) as u64
}

/// Lane value `x` (`bits` wide) is a nonzero denormal.
fn denormal(x: u64, bits: u32) -> bool {
    if bits == 32 {
        x & 0x7f80_0000 == 0 && x & 0x007f_ffff != 0
    } else {
        x & 0x7ff0_0000_0000_0000 == 0 && x & 0x000f_ffff_ffff_ffff != 0
    }
}

/// A finite nonzero value as (negative, odd significand, exponent): ±odd × 2^exponent.
/// `daz` treats denormals as zero. None for zeros, infinities and NaNs.
fn parts(x: u64, bits: u32, daz: bool) -> Option<(bool, u64, i32)> {
    let (frac_bits, exp_bits): (u32, u32) = if bits == 32 { (23, 8) } else { (52, 11) };
    let x = low(x as u128, bits / 8) as u64;
    let neg = x >> (bits - 1) != 0;
    let max_exp = (1i32 << exp_bits) - 1;
    let exp = (x >> frac_bits) as i32 & max_exp;
    let frac = x & ((1u64 << frac_bits) - 1);
    // value = significand × 2^(exp - bias), the significand an integer.
    let bias = (max_exp >> 1) + frac_bits as i32;
    let (sig, e) = match exp {
        0 if daz || frac == 0 => return None,
        0 => (frac, 1 - bias),
        _ if exp == max_exp => return None,
        _ => (frac | 1 << frac_bits, exp - bias),
    };
    let tz = sig.trailing_zeros();
    Some((neg, sig >> tz, e + tz as i32))
}

/// Bits from the highest set bit down to the lowest set bit of `v` (nonzero).
fn span(v: u128) -> u32 {
    128 - v.leading_zeros() - v.trailing_zeros()
}

/// Whether `a op b` is exact at `precision` significand bits with an unbounded exponent:
/// what decides inexact when overflow or underflow traps (the trap sees the result rounded to
/// precision with its exponent out of range).
fn exact(arith: Arith, a: u64, b: u64, bits: u32, precision: u32, daz: bool) -> bool {
    let (pa, pb) = (parts(a, bits, daz), parts(b, bits, daz));
    match (arith, pa, pb) {
        (Arith::Narrow, _, Some((_, m, _))) => span(m as u128) <= precision,
        (Arith::Mul, Some((_, ma, _)), Some((_, mb, _))) => {
            span(ma as u128 * mb as u128) <= precision
        }
        (Arith::Div, Some((_, ma, _)), Some((_, mb, _))) => {
            ma % mb == 0 && span((ma / mb) as u128) <= precision
        }
        (Arith::Add | Arith::Sub, Some((na, ma, ea)), Some((nb, mb, eb))) => {
            let nb = nb ^ (arith == Arith::Sub);
            let lo = ea.min(eb);
            let (da, db) = ((ea - lo) as u32, (eb - lo) as u32);
            // Past 70 bits apart the sum of two odd-ended values spans more than 53 bits.
            if da.max(db) > 70 {
                return false;
            }
            let (x, y) = ((ma as i128) << da, (mb as i128) << db);
            let s = if na == nb { x + y } else { x - y };
            s == 0 || span(s.unsigned_abs()) <= precision
        }
        _ => true,
    }
}

/// The post-computation flags hardware reports when overflow or underflow is unmasked, which a
/// masked run cannot show directly: a lane whose overflow or underflow traps reports inexact
/// only if its result is inexact at full precision with an unbounded exponent, and with
/// underflow unmasked an exact tiny result underflows too. So each lane is run alone.
fn post_flags(op: &FpOp, ctl: u32, a: u128, b: u128, unmasked: u32) -> u32 {
    let (n, inb, outb) = op.lanes.shape();
    let daz = ctl & (1 << 6) != 0;
    let precision = if outb == 32 { 24 } else { 53 };
    let mut flags = 0;
    for k in 0..n {
        let (r, csr) = (op.host)(ctl, isolate(a, k, inb), isolate(b, k, inb));
        let mut f = csr & FLAGS;
        if unmasked & UE != 0 && denormal(lane(r, k, outb), outb) {
            f |= UE;
        }
        if f & unmasked & (OE | UE) != 0 {
            f &= !PE;
            let (x, y) = (lane(a, k, inb), lane(b, k, inb));
            if !exact(op.arith, x, y, inb, precision, daz) {
                f |= PE;
            }
        }
        flags |= f;
    }
    flags
}

/// Runs `op` on the host for the guest and applies the guest's MXCSR.
pub fn compute(cpu: &mut Cpu, op: &FpOp, a: u128, b: u128) -> Result<u128, Stop> {
    let ctl = host::control(cpu.r.fpu.mxcsr);
    let (r, csr) = (op.host)(ctl, a, b);
    settle(cpu, csr, |unmasked| {
        if op.lanes != Lanes::None && unmasked & (OE | UE) != 0 {
            post_flags(op, ctl, a, b, unmasked)
        } else {
            csr & FLAGS
        }
    })?;
    Ok(r)
}

/// Executes a floating-point operation: destination operand 0 (XMM, or MMX for CVT*2PI),
/// source operand 1.
pub fn run(cpu: &mut Cpu, insn: &Insn, op: &FpOp) -> Step {
    let mmx = prologue(cpu, insn, true)?;
    let a = read(cpu, insn, 0)?;
    let b = low(read(cpu, insn, 1)?, op.src);
    if mmx {
        // The switch to MMX mode happens once the operands are read, so it has happened
        // when the conversion raises #XM (as the host shows).
        mmx_enter(cpu);
    }
    let r = compute(cpu, op, a, b)?;
    write(cpu, insn, 0, r)?;
    Ok(Flow::Next)
}

/// Defines handlers for floating-point operations: `name: host function, source bytes,
/// arithmetic, lanes`.
macro_rules! fp_ops {
    ($($name:ident: $host:path, $src:expr, $arith:ident $lanes:ident;)*) => {$(
        pub fn $name(cpu: &mut Cpu, insn: &Insn) -> Step {
            run(cpu, insn, &FpOp {
                host: $host,
                src: $src,
                arith: Arith::$arith,
                lanes: Lanes::$lanes,
            })
        }
    )*};
}

fp_ops! {
    addps: host::addps, 16, Add Ps; addpd: host::addpd, 16, Add Pd;
    addss: host::addss, 4, Add Ss; addsd: host::addsd, 8, Add Sd;
    subps: host::subps, 16, Sub Ps; subpd: host::subpd, 16, Sub Pd;
    subss: host::subss, 4, Sub Ss; subsd: host::subsd, 8, Sub Sd;
    mulps: host::mulps, 16, Mul Ps; mulpd: host::mulpd, 16, Mul Pd;
    mulss: host::mulss, 4, Mul Ss; mulsd: host::mulsd, 8, Mul Sd;
    divps: host::divps, 16, Div Ps; divpd: host::divpd, 16, Div Pd;
    divss: host::divss, 4, Div Ss; divsd: host::divsd, 8, Div Sd;
    minps: host::minps, 16, None None; minpd: host::minpd, 16, None None;
    minss: host::minss, 4, None None; minsd: host::minsd, 8, None None;
    maxps: host::maxps, 16, None None; maxpd: host::maxpd, 16, None None;
    maxss: host::maxss, 4, None None; maxsd: host::maxsd, 8, None None;
    sqrtps: host::sqrtps, 16, None None; sqrtpd: host::sqrtpd, 16, None None;
    sqrtss: host::sqrtss, 4, None None; sqrtsd: host::sqrtsd, 8, None None;
    rcpps: host::rcpps, 16, None None; rcpss: host::rcpss, 4, None None;
    rsqrtps: host::rsqrtps, 16, None None; rsqrtss: host::rsqrtss, 4, None None;
    cvtps2pd: host::cvtps2pd, 8, None None; cvtpd2ps: host::cvtpd2ps, 16, Narrow PdToPs;
    cvtss2sd: host::cvtss2sd, 4, None None; cvtsd2ss: host::cvtsd2ss, 8, Narrow SdToSs;
    cvtdq2ps: host::cvtdq2ps, 16, None None; cvtps2dq: host::cvtps2dq, 16, None None;
    cvttps2dq: host::cvttps2dq, 16, None None; cvtdq2pd: host::cvtdq2pd, 8, None None;
    cvtpd2dq: host::cvtpd2dq, 16, None None; cvttpd2dq: host::cvttpd2dq, 16, None None;
    cvtpi2ps: host::cvtpi2ps, 8, None None; cvtpi2pd: host::cvtdq2pd, 8, None None;
    cvtps2pi: host::cvtps2dq, 8, None None; cvttps2pi: host::cvttps2dq, 8, None None;
    cvtpd2pi: host::cvtpd2dq, 16, None None; cvttpd2pi: host::cvttpd2dq, 16, None None;
}

/// CMPPS/CMPPD/CMPSS/CMPSD: the predicate is imm8 bits 0..=2 (legacy SSE ignores the rest).
/// `F` picks the form: 0 PS, 1 PD, 2 SS, 3 SD.
pub fn cmp<const F: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let p = (imm8(insn) & 7) as usize;
    let (table, src) = match F {
        0 => (&host::CMPPS, 16),
        1 => (&host::CMPPD, 16),
        2 => (&host::CMPSS, 4),
        _ => (&host::CMPSD, 8),
    };
    run(
        cpu,
        insn,
        &FpOp {
            host: table[p],
            src,
            arith: Arith::None,
            lanes: Lanes::None,
        },
    )
}

/// CVTSS2SI, CVTTSS2SI, CVTSD2SI, CVTTSD2SI: `F` = 0..=3 in that order; the destination is a
/// 32- or 64-bit general-purpose register.
pub fn to_int<const F: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true, false)?;
    let wide = insn.osize == 8;
    let (op, src): (host::ToInt, u32) = match (F, wide) {
        (0, false) => (host::cvtss2si32, 4),
        (0, true) => (host::cvtss2si64, 4),
        (1, false) => (host::cvttss2si32, 4),
        (1, true) => (host::cvttss2si64, 4),
        (2, false) => (host::cvtsd2si32, 8),
        (2, true) => (host::cvtsd2si64, 8),
        (_, false) => (host::cvttsd2si32, 8),
        (_, true) => (host::cvttsd2si64, 8),
    };
    let b = low(read(cpu, insn, 1)?, src);
    let (v, csr) = op(host::control(cpu.r.fpu.mxcsr), b);
    settle(cpu, csr, |_| csr & FLAGS)?;
    put(cpu, insn, 0, insn.osize, v)?;
    Ok(Flow::Next)
}

/// CVTSI2SS (`D` = false) and CVTSI2SD (`D` = true) from a 32- or 64-bit register or memory.
pub fn from_int<const D: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true, false)?;
    let wide = insn.ssize == 8;
    let op: host::FromInt = match (D, wide) {
        (false, false) => host::cvtsi2ss32,
        (false, true) => host::cvtsi2ss64,
        (true, false) => host::cvtsi2sd32,
        (true, true) => host::cvtsi2sd64,
    };
    let g = get(cpu, insn, 1, insn.ssize)?;
    let a = read(cpu, insn, 0)?;
    let (r, csr) = op(host::control(cpu.r.fpu.mxcsr), a, g);
    settle(cpu, csr, |_| csr & FLAGS)?;
    write(cpu, insn, 0, r)?;
    Ok(Flow::Next)
}

/// COMISS, UCOMISS, COMISD, UCOMISD (`F` = 0..=3): ZF, PF, CF from the compare, OF, SF, AF
/// cleared.
pub fn comis<const F: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true, false)?;
    let (op, src): (host::Compare, u32) = match F {
        0 => (host::comiss, 4),
        1 => (host::ucomiss, 4),
        2 => (host::comisd, 8),
        _ => (host::ucomisd, 8),
    };
    let a = read(cpu, insn, 0)?;
    let b = low(read(cpu, insn, 1)?, src);
    let (f, csr) = op(host::control(cpu.r.fpu.mxcsr), a, b);
    settle(cpu, csr, |_| csr & FLAGS)?;
    let fl = &mut cpu.r.flags;
    fl.materialize();
    fl.bits = (fl.bits & !flags::ARITH) | (f & (flags::ZF | flags::PF | flags::CF));
    Ok(Flow::Next)
}

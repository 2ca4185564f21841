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

/// One floating-point operation with an XMM (or, for CVT*2PI, MMX) destination.
pub struct FpOp {
    pub host: Bin,
    /// Bytes of the source operand that the instruction reads (the rest of a register source is
    /// zeroed, so the host instruction sees only those lanes).
    pub src: u32,
    pub lanes: Lanes,
}

/// The fault for an unmasked SIMD floating-point exception: #XM, or #UD without
/// CR4.OSXMMEXCPT.
fn simd_fault(cpu: &Cpu) -> Stop {
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

/// Lane `k` of `bits` bits is a nonzero denormal.
fn denormal(v: u128, k: u32, bits: u32) -> bool {
    let x = (v >> (k * bits)) as u64;
    if bits == 32 {
        x & 0x7f80_0000 == 0 && x & 0x007f_ffff != 0
    } else {
        x & 0x7ff0_0000_0000_0000 == 0 && x & 0x000f_ffff_ffff_ffff != 0
    }
}

/// The post-computation flags hardware reports when overflow or underflow is unmasked, which a
/// masked run cannot show directly: a lane whose overflow or underflow traps does not report
/// inexact, and with underflow unmasked an exact tiny result underflows too. So each lane is
/// run alone.
fn post_flags(op: Bin, ctl: u32, a: u128, b: u128, lanes: Lanes, unmasked: u32) -> u32 {
    let (n, inb, outb) = lanes.shape();
    let mut flags = 0;
    for k in 0..n {
        let (r, csr) = op(ctl, isolate(a, k, inb), isolate(b, k, inb));
        let mut f = csr & FLAGS;
        if unmasked & UE != 0 && denormal(r, k, outb) {
            f |= UE;
        }
        if f & unmasked & (OE | UE) != 0 {
            f &= !PE;
        }
        flags |= f;
    }
    flags
}

/// Runs `op` on the host for the guest and applies the guest's MXCSR.
pub fn compute(cpu: &mut Cpu, op: Bin, a: u128, b: u128, lanes: Lanes) -> Result<u128, Stop> {
    let ctl = host::control(cpu.r.fpu.mxcsr);
    let (r, csr) = op(ctl, a, b);
    settle(cpu, csr, |unmasked| {
        if lanes != Lanes::None && unmasked & (OE | UE) != 0 {
            post_flags(op, ctl, a, b, lanes, unmasked)
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
    let r = compute(cpu, op.host, a, b, op.lanes)?;
    write(cpu, insn, 0, r)?;
    if mmx {
        mmx_enter(cpu);
    }
    Ok(Flow::Next)
}

/// Defines handlers for floating-point operations: `name: host function, source bytes,
/// lanes`.
macro_rules! fp_ops {
    ($($name:ident: $host:path, $src:expr, $lanes:ident;)*) => {$(
        pub fn $name(cpu: &mut Cpu, insn: &Insn) -> Step {
            run(cpu, insn, &FpOp { host: $host, src: $src, lanes: Lanes::$lanes })
        }
    )*};
}

fp_ops! {
    addps: host::addps, 16, Ps; addpd: host::addpd, 16, Pd;
    addss: host::addss, 4, Ss; addsd: host::addsd, 8, Sd;
    subps: host::subps, 16, Ps; subpd: host::subpd, 16, Pd;
    subss: host::subss, 4, Ss; subsd: host::subsd, 8, Sd;
    mulps: host::mulps, 16, Ps; mulpd: host::mulpd, 16, Pd;
    mulss: host::mulss, 4, Ss; mulsd: host::mulsd, 8, Sd;
    divps: host::divps, 16, Ps; divpd: host::divpd, 16, Pd;
    divss: host::divss, 4, Ss; divsd: host::divsd, 8, Sd;
    minps: host::minps, 16, None; minpd: host::minpd, 16, None;
    minss: host::minss, 4, None; minsd: host::minsd, 8, None;
    maxps: host::maxps, 16, None; maxpd: host::maxpd, 16, None;
    maxss: host::maxss, 4, None; maxsd: host::maxsd, 8, None;
    sqrtps: host::sqrtps, 16, None; sqrtpd: host::sqrtpd, 16, None;
    sqrtss: host::sqrtss, 4, None; sqrtsd: host::sqrtsd, 8, None;
    rcpps: host::rcpps, 16, None; rcpss: host::rcpss, 4, None;
    rsqrtps: host::rsqrtps, 16, None; rsqrtss: host::rsqrtss, 4, None;
    cvtps2pd: host::cvtps2pd, 8, None; cvtpd2ps: host::cvtpd2ps, 16, PdToPs;
    cvtss2sd: host::cvtss2sd, 4, None; cvtsd2ss: host::cvtsd2ss, 8, SdToSs;
    cvtdq2ps: host::cvtdq2ps, 16, None; cvtps2dq: host::cvtps2dq, 16, None;
    cvttps2dq: host::cvttps2dq, 16, None; cvtdq2pd: host::cvtdq2pd, 8, None;
    cvtpd2dq: host::cvtpd2dq, 16, None; cvttpd2dq: host::cvttpd2dq, 16, None;
    cvtpi2ps: host::cvtpi2ps, 8, None; cvtpi2pd: host::cvtdq2pd, 8, None;
    cvtps2pi: host::cvtps2dq, 8, None; cvttps2pi: host::cvttps2dq, 8, None;
    cvtpd2pi: host::cvtpd2dq, 16, None; cvttpd2pi: host::cvttpd2dq, 16, None;
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

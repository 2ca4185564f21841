//! Integer arithmetic, logic, shifts, multiplication and division, bit operations.
//!
//! Handlers compute the result, write the destination, and only then record flags, so a store
//! that faults leaves the flags untouched.

use super::{ea, get, mem_get, mem_put, put, reg_get, reg_put, Insn, Opnd};
use crate::core::{vector, Cpu, Fault, Flow, Step};
use crate::flags::{mask, sext, sign_bit, Op, AF, CF, OF, PF, SF, ZF};

pub const ADD: u8 = 0;
pub const OR: u8 = 1;
pub const ADC: u8 = 2;
pub const SBB: u8 = 3;
pub const AND: u8 = 4;
pub const SUB: u8 = 5;
pub const XOR: u8 = 6;
pub const CMP: u8 = 7;
pub const TEST: u8 = 8;

#[inline(always)]
fn compute<const OP: u8>(cpu: &Cpu, a: u64, b: u64) -> (u64, bool) {
    match OP {
        ADD => (a.wrapping_add(b), false),
        OR => (a | b, false),
        ADC => {
            let c = cpu.r.flags.cf();
            (a.wrapping_add(b).wrapping_add(c as u64), c)
        }
        SBB => {
            let c = cpu.r.flags.cf();
            (a.wrapping_sub(b).wrapping_sub(c as u64), c)
        }
        AND | TEST => (a & b, false),
        SUB | CMP => (a.wrapping_sub(b), false),
        _ => (a ^ b, false),
    }
}

#[inline(always)]
fn record<const OP: u8>(cpu: &mut Cpu, size: u8, r: u64, a: u64, b: u64, carry: bool) {
    let f = &mut cpu.r.flags;
    match OP {
        ADD => f.set(Op::Add, size, r, a, b),
        ADC => f.set_carry_op(Op::Adc, size, r, a, b, carry),
        SUB | CMP => f.set(Op::Sub, size, r, a, b),
        SBB => f.set_carry_op(Op::Sbb, size, r, a, b, carry),
        _ => f.set(Op::Logic, size, r, 0, 0),
    }
}

/// ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST in any operand form.
pub fn alu<const OP: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    let b = get(cpu, insn, 1, size)?;
    let (r, c) = compute::<OP>(cpu, a, b);
    if OP != CMP && OP != TEST {
        put(cpu, insn, 0, size, r)?;
    }
    record::<OP>(cpu, size, r, a, b, c);
    Ok(Flow::Next)
}

/// The register-register form at operand size `SIZE`, without operand dispatch.
pub fn alu_rr<const OP: u8, const SIZE: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (Opnd::Reg(d), Opnd::Reg(s)) = (insn.op[0], insn.op[1]) else {
        return alu::<OP>(cpu, insn);
    };
    let size = SIZE;
    let a = reg_get(cpu, d, size);
    let b = reg_get(cpu, s, size);
    let (r, c) = compute::<OP>(cpu, a, b);
    if OP != CMP && OP != TEST {
        reg_put(cpu, d, size, r);
    }
    record::<OP>(cpu, size, r, a, b, c);
    Ok(Flow::Next)
}

/// The register-immediate form at operand size `SIZE`.
pub fn alu_ri<const OP: u8, const SIZE: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (Opnd::Reg(d), Opnd::Imm(b)) = (insn.op[0], insn.op[1]) else {
        return alu::<OP>(cpu, insn);
    };
    let size = SIZE;
    let a = reg_get(cpu, d, size);
    let b = b & mask(size);
    let (r, c) = compute::<OP>(cpu, a, b);
    if OP != CMP && OP != TEST {
        reg_put(cpu, d, size, r);
    }
    record::<OP>(cpu, size, r, a, b, c);
    Ok(Flow::Next)
}

pub fn inc(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    let r = a.wrapping_add(1);
    put(cpu, insn, 0, size, r)?;
    cpu.r.flags.set_incdec(Op::Inc, size, r, a);
    Ok(Flow::Next)
}

pub fn dec(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    let r = a.wrapping_sub(1);
    put(cpu, insn, 0, size, r)?;
    cpu.r.flags.set_incdec(Op::Dec, size, r, a);
    Ok(Flow::Next)
}

/// INC/DEC of a register at operand size `SIZE`, without operand dispatch.
pub fn incdec_r<const DEC: bool, const SIZE: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let Opnd::Reg(r) = insn.op[0] else {
        return if DEC { dec(cpu, insn) } else { inc(cpu, insn) };
    };
    let size = SIZE;
    let a = reg_get(cpu, r, size);
    let v = if DEC {
        a.wrapping_sub(1)
    } else {
        a.wrapping_add(1)
    };
    reg_put(cpu, r, size, v);
    let op = if DEC { Op::Dec } else { Op::Inc };
    cpu.r.flags.set_incdec(op, size, v, a);
    Ok(Flow::Next)
}

pub fn neg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    let r = 0u64.wrapping_sub(a);
    put(cpu, insn, 0, size, r)?;
    cpu.r.flags.set(Op::Neg, size, r, a, 0);
    Ok(Flow::Next)
}

pub fn not(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    put(cpu, insn, 0, size, !a)?;
    Ok(Flow::Next)
}

/// Sets CF and OF to `overflow` and the other arithmetic flags from the low result, as
/// multiplication does (SF, ZF, AF and PF are architecturally undefined).
fn mul_flags(cpu: &mut Cpu, size: u8, low: u64, overflow: bool) {
    let f = &mut cpu.r.flags;
    f.set(Op::Logic, size, low, 0, 0);
    f.materialize();
    f.bits &= !(CF | OF | AF);
    if overflow {
        f.bits |= CF | OF;
    }
}

/// Reads the accumulator pair of a one-operand MUL/DIV: AX, DX:AX, EDX:EAX or RDX:RAX.
fn acc_pair(cpu: &Cpu, size: u8) -> (u64, u64) {
    let a = cpu.r.gpr[0];
    let d = cpu.r.gpr[2];
    match size {
        1 => ((a >> 8) & 0xff, a & 0xff),
        2 => (d & 0xffff, a & 0xffff),
        4 => (d & 0xffff_ffff, a & 0xffff_ffff),
        _ => (d, a),
    }
}

fn set_acc_pair(cpu: &mut Cpu, size: u8, hi: u64, lo: u64) {
    if size == 1 {
        reg_put(cpu, 0, 2, (lo & 0xff) | ((hi & 0xff) << 8));
    } else {
        reg_put(cpu, 0, size, lo);
        reg_put(cpu, 2, size, hi);
    }
}

/// MUL r/m: unsigned accumulator * operand.
pub fn mul(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let b = get(cpu, insn, 0, size)? as u128;
    let a = (cpu.r.gpr[0] & mask(size)) as u128;
    let p = a * b;
    let bits = size as u32 * 8;
    let lo = (p as u64) & mask(size);
    let hi = ((p >> bits) as u64) & mask(size);
    set_acc_pair(cpu, size, hi, lo);
    mul_flags(cpu, size, lo, hi != 0);
    Ok(Flow::Next)
}

/// IMUL in its one-, two- and three-operand forms.
pub fn imul(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let bits = size as u32 * 8;
    match insn.i.op_count() {
        1 => {
            let b = sext(get(cpu, insn, 0, size)?, size) as i128;
            let a = sext(cpu.r.gpr[0], size) as i128;
            let p = a * b;
            let lo = (p as u64) & mask(size);
            let hi = ((p >> bits) as u64) & mask(size);
            set_acc_pair(cpu, size, hi, lo);
            mul_flags(cpu, size, lo, p != sext(lo, size) as i128);
        }
        n => {
            let (a, b) = if n == 2 {
                (get(cpu, insn, 0, size)?, get(cpu, insn, 1, size)?)
            } else {
                (get(cpu, insn, 1, size)?, get(cpu, insn, 2, size)?)
            };
            let p = sext(a, size) as i128 * sext(b, size) as i128;
            let lo = (p as u64) & mask(size);
            put(cpu, insn, 0, size, lo)?;
            mul_flags(cpu, size, lo, p != sext(lo, size) as i128);
        }
    }
    Ok(Flow::Next)
}

/// DIV r/m: unsigned; #DE on a zero divisor or a quotient that does not fit.
pub fn div(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let d = get(cpu, insn, 0, size)? as u128;
    if d == 0 {
        return Err(Fault::new(vector::DE).into());
    }
    let (hi, lo) = acc_pair(cpu, size);
    let n = ((hi as u128) << (size as u32 * 8)) | lo as u128;
    let q = n / d;
    if q > mask(size) as u128 {
        return Err(Fault::new(vector::DE).into());
    }
    set_acc_pair(cpu, size, (n % d) as u64, q as u64);
    Ok(Flow::Next)
}

/// IDIV r/m: signed; #DE on a zero divisor or a quotient that does not fit.
pub fn idiv(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let bits = size as u32 * 8;
    let d = sext(get(cpu, insn, 0, size)?, size) as i128;
    if d == 0 {
        return Err(Fault::new(vector::DE).into());
    }
    let (hi, lo) = acc_pair(cpu, size);
    let n = (((hi as u128) << bits) | lo as u128) as i128;
    // Sign-extend the 2*bits-wide dividend.
    let n = (n << (128 - 2 * bits)) >> (128 - 2 * bits);
    if n == i128::MIN && d == -1 {
        return Err(Fault::new(vector::DE).into());
    }
    let q = n / d;
    let r = n % d;
    let min = -(1i128 << (bits - 1));
    let max = (1i128 << (bits - 1)) - 1;
    if q < min || q > max {
        return Err(Fault::new(vector::DE).into());
    }
    set_acc_pair(cpu, size, (r as u64) & mask(size), (q as u64) & mask(size));
    Ok(Flow::Next)
}

/// Shift count operand (CL, an immediate, or 1), masked as the CPU masks it.
fn shift_count(cpu: &mut Cpu, insn: &Insn, k: usize) -> Result<u32, crate::core::Stop> {
    let raw = match insn.op[k] {
        Opnd::None => 1,
        _ => get(cpu, insn, k, 1)?,
    };
    Ok((raw as u32) & if insn.osize == 8 { 0x3f } else { 0x1f })
}

pub const SHL: u8 = 4;
pub const SHR: u8 = 5;
pub const SAR: u8 = 7;
pub const ROL: u8 = 0;
pub const ROR: u8 = 1;
pub const RCL: u8 = 2;
pub const RCR: u8 = 3;

/// SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR (the /reg field of the group-2 opcodes).
pub fn shift<const KIND: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let n = shift_count(cpu, insn, 1)?;
    if n == 0 {
        // No flags change; the operand is still accessed (a faulting page faults).
        let a = get(cpu, insn, 0, size)?;
        put(cpu, insn, 0, size, a)?;
        return Ok(Flow::Next);
    }
    let a = get(cpu, insn, 0, size)?;
    let bits = size as u32 * 8;
    let m = mask(size);
    match KIND {
        SHL => {
            let r = if n >= 64 { 0 } else { (a << n) & m };
            put(cpu, insn, 0, size, r)?;
            cpu.r.flags.set(Op::Shl, size, r, a, n as u64);
        }
        SHR => {
            let r = if n >= 64 { 0 } else { (a & m) >> n };
            put(cpu, insn, 0, size, r)?;
            cpu.r.flags.set(Op::Shr, size, r, a, n as u64);
        }
        SAR => {
            let r = ((sext(a, size) >> n.min(63)) as u64) & m;
            put(cpu, insn, 0, size, r)?;
            cpu.r.flags.set(Op::Sar, size, r, a, n as u64);
        }
        ROL | ROR => {
            let k = n % bits;
            let a = a & m;
            let r = if k == 0 {
                a
            } else if KIND == ROL {
                ((a << k) | (a >> (bits - k))) & m
            } else {
                ((a >> k) | (a << (bits - k))) & m
            };
            put(cpu, insn, 0, size, r)?;
            let msb = r & sign_bit(size) != 0;
            let (cf, of) = if KIND == ROL {
                let cf = r & 1 != 0;
                (cf, msb ^ cf)
            } else {
                (msb, msb ^ (r & (sign_bit(size) >> 1) != 0))
            };
            set_cf_of(cpu, cf, of);
        }
        _ => {
            // RCL/RCR rotate through CF: a (bits + 1)-bit rotation.
            let k = match size {
                1 => n % 9,
                2 => n % 17,
                _ => n,
            };
            let mut v = a & m;
            let mut cf = cpu.r.flags.cf();
            for _ in 0..k {
                if KIND == RCL {
                    let out = v & sign_bit(size) != 0;
                    v = ((v << 1) | cf as u64) & m;
                    cf = out;
                } else {
                    let out = v & 1 != 0;
                    v = (v >> 1) | if cf { sign_bit(size) } else { 0 };
                    cf = out;
                }
            }
            put(cpu, insn, 0, size, v)?;
            let msb = v & sign_bit(size) != 0;
            let of = if KIND == RCL {
                msb ^ cf
            } else {
                msb ^ (v & (sign_bit(size) >> 1) != 0)
            };
            set_cf_of(cpu, cf, of);
        }
    }
    Ok(Flow::Next)
}

fn set_cf_of(cpu: &mut Cpu, cf: bool, of: bool) {
    let f = &mut cpu.r.flags;
    f.materialize();
    f.bits = (f.bits & !(CF | OF)) | if cf { CF } else { 0 } | if of { OF } else { 0 };
}

/// SHLD/SHRD: double-precision shifts.
pub fn shld_shrd<const LEFT: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let bits = size as u32 * 8;
    let n = shift_count(cpu, insn, 2)?;
    let a = get(cpu, insn, 0, size)?;
    if n == 0 {
        put(cpu, insn, 0, size, a)?;
        return Ok(Flow::Next);
    }
    let b = get(cpu, insn, 1, size)?;
    let m = mask(size);
    let (r, cf) = if size == 2 {
        // 16-bit operands with a count above 16 are undefined; like P6 and later CPUs, shift
        // dst:src:dst (left) or src:dst:dst (right).
        let (a, b) = (a & 0xffff, b & 0xffff);
        if LEFT {
            let t = (a << 16) | b;
            let mut r = t << n;
            if n > 16 {
                r |= a << (n - 16);
            }
            ((r >> 16) & 0xffff, (t >> (32 - n)) & 1 != 0)
        } else {
            let t = (b << 16) | a;
            let mut r = t >> n;
            if n > 16 {
                r |= a << (32 - n);
            }
            (r & 0xffff, (a >> (n - 1)) & 1 != 0)
        }
    } else if LEFT {
        (
            ((a << n) | ((b & m) >> (bits - n))) & m,
            (a >> (bits - n)) & 1 != 0,
        )
    } else {
        (
            (((a & m) >> n) | (b << (bits - n))) & m,
            (a >> (n - 1)) & 1 != 0,
        )
    };
    put(cpu, insn, 0, size, r)?;
    let f = &mut cpu.r.flags;
    f.set(Op::Logic, size, r, 0, 0);
    f.materialize();
    f.bits &= !(CF | OF | AF);
    if cf {
        f.bits |= CF;
    }
    if (r ^ a) & sign_bit(size) != 0 {
        f.bits |= OF;
    }
    Ok(Flow::Next)
}

pub const BT: u8 = 0;
pub const BTS: u8 = 1;
pub const BTR: u8 = 2;
pub const BTC: u8 = 3;

/// BT, BTS, BTR, BTC. With a register bit offset and a memory operand, the offset selects
/// memory beyond the operand (signed, in operand-size units).
pub fn bt<const KIND: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let bits = size as u64 * 8;
    let off = get(cpu, insn, 1, size)?;
    let (cf, new) = match (insn.op[0], insn.op[1]) {
        (Opnd::Mem, Opnd::Reg(_)) => {
            let signed = sext(off, size);
            let unit = signed.div_euclid(bits as i64);
            let bit = signed.rem_euclid(bits as i64) as u64;
            let addr = ea(cpu, insn).wrapping_add((unit * size as i64) as u64);
            let addr = match insn.asize {
                8 => addr,
                4 => addr & 0xffff_ffff,
                _ => addr & 0xffff,
            };
            let seg = insn.mem.seg as usize;
            let v = mem_get(cpu, seg, addr, size)?;
            let (cf, new) = bt_op::<KIND>(v, bit);
            if KIND != BT {
                mem_put(cpu, seg, addr, size, new)?;
            }
            (cf, new)
        }
        _ => {
            let v = get(cpu, insn, 0, size)?;
            let (cf, new) = bt_op::<KIND>(v, off % bits);
            if KIND != BT {
                put(cpu, insn, 0, size, new)?;
            }
            (cf, new)
        }
    };
    let _ = new;
    cpu.r.flags.assign(CF, cf);
    Ok(Flow::Next)
}

fn bt_op<const KIND: u8>(v: u64, bit: u64) -> (bool, u64) {
    let b = 1u64 << bit;
    let cf = v & b != 0;
    let new = match KIND {
        BTS => v | b,
        BTR => v & !b,
        BTC => v ^ b,
        _ => v,
    };
    (cf, new)
}

/// BSF/BSR (and TZCNT/LZCNT, which execute as BSF/BSR on a CPU without BMI1/ABM, as Janus
/// reports). A zero source sets ZF and leaves the destination unchanged.
pub fn bsf_bsr<const REVERSE: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = get(cpu, insn, 1, size)?;
    let f = &mut cpu.r.flags;
    if v == 0 {
        f.set(Op::Logic, size, 0, 0, 0);
        return Ok(Flow::Next);
    }
    let idx = if REVERSE {
        63 - v.leading_zeros() as u64
    } else {
        v.trailing_zeros() as u64
    };
    put(cpu, insn, 0, size, idx)?;
    cpu.r.flags.set(Op::Logic, size, 1, 0, 0);
    Ok(Flow::Next)
}

/// POPCNT: ZF from the source, the other flags cleared.
pub fn popcnt(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = get(cpu, insn, 1, size)?;
    put(cpu, insn, 0, size, v.count_ones() as u64)?;
    let f = &mut cpu.r.flags;
    f.materialize();
    f.bits &= !(CF | PF | AF | ZF | SF | OF);
    if v == 0 {
        f.bits |= ZF;
    }
    Ok(Flow::Next)
}

pub fn xadd(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    let b = get(cpu, insn, 1, size)?;
    let r = a.wrapping_add(b);
    // The source gets the old destination, then the destination the sum (so XADD r, r with
    // one register leaves the sum); a memory destination is written first, so that a fault
    // there leaves the register alone.
    if insn.op[0] == Opnd::Mem {
        put(cpu, insn, 0, size, r)?;
        put(cpu, insn, 1, size, a)?;
    } else {
        put(cpu, insn, 1, size, a)?;
        put(cpu, insn, 0, size, r)?;
    }
    cpu.r.flags.set(Op::Add, size, r, a, b);
    Ok(Flow::Next)
}

/// CMPXCHG r/m, r: compares the accumulator with the destination. A memory destination is
/// written either way (its own value on a mismatch), as the locked read-modify-write does; a
/// register destination is left alone on a mismatch (a 32-bit one is not zero-extended then,
/// as on the host).
pub fn cmpxchg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let d = get(cpu, insn, 0, size)?;
    let acc = cpu.r.gpr[0] & mask(size);
    if acc == d {
        let s = get(cpu, insn, 1, size)?;
        put(cpu, insn, 0, size, s)?;
    } else {
        if insn.op[0] == Opnd::Mem {
            put(cpu, insn, 0, size, d)?;
        }
        reg_put(cpu, 0, size, d);
    }
    cpu.r.flags.set(Op::Sub, size, acc.wrapping_sub(d), acc, d);
    Ok(Flow::Next)
}

/// CMPXCHG8B / CMPXCHG16B m.
pub fn cmpxchg_wide(cpu: &mut Cpu, insn: &Insn) -> Step {
    let seg = insn.mem.seg as usize;
    let off = ea(cpu, insn);
    let wide = insn.i.memory_size().size() == 16;
    let (half, m) = if wide {
        (8u8, u64::MAX)
    } else {
        (4u8, 0xffff_ffff)
    };
    if wide && !off.is_multiple_of(16) {
        return Err(Fault::gp(0).into());
    }
    // A locked read-modify-write of the whole operand: checked for writing first, so that a
    // fault (#GP for a non-canonical end, #PF with W set) comes before anything is read.
    cpu.probe_write(seg, off, 2 * half as u32)?;
    let lo = mem_get(cpu, seg, off, half)?;
    let hi = mem_get(cpu, seg, off + half as u64, half)?;
    let equal = lo == cpu.r.gpr[0] & m && hi == cpu.r.gpr[2] & m;
    if equal {
        let (nlo, nhi) = (cpu.r.gpr[3] & m, cpu.r.gpr[1] & m);
        mem_put(cpu, seg, off, half, nlo)?;
        mem_put(cpu, seg, off + half as u64, half, nhi)?;
    } else {
        mem_put(cpu, seg, off, half, lo)?;
        mem_put(cpu, seg, off + half as u64, half, hi)?;
        reg_put(cpu, 0, half, lo);
        reg_put(cpu, 2, half, hi);
    }
    cpu.r.flags.assign(ZF, equal);
    Ok(Flow::Next)
}

pub fn bswap(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = get(cpu, insn, 0, size)?;
    let r = match size {
        8 => v.swap_bytes(),
        4 => (v as u32).swap_bytes() as u64,
        _ => 0, // 16-bit BSWAP is undefined; Intel and AMD CPUs give 0
    };
    put(cpu, insn, 0, size, r)?;
    Ok(Flow::Next)
}

/// CBW/CWDE/CDQE: sign-extend the accumulator's lower half into the whole.
pub fn cbw(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = sext(cpu.r.gpr[0], size / 2) as u64;
    reg_put(cpu, 0, size, v);
    Ok(Flow::Next)
}

/// CWD/CDQ/CQO: sign of the accumulator into rDX.
pub fn cwd(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let neg = cpu.r.gpr[0] & sign_bit(size) != 0;
    reg_put(cpu, 2, size, if neg { u64::MAX } else { 0 });
    Ok(Flow::Next)
}

fn set_szp(cpu: &mut Cpu, al: u8) {
    let f = &mut cpu.r.flags;
    f.materialize();
    f.bits &= !(ZF | SF | PF);
    if al == 0 {
        f.bits |= ZF;
    }
    if al & 0x80 != 0 {
        f.bits |= SF;
    }
    if al.count_ones().is_multiple_of(2) {
        f.bits |= PF;
    }
}

/// DAA and DAS (16/32-bit code only).
pub fn daa_das<const SUBTRACT: bool>(cpu: &mut Cpu, _: &Insn) -> Step {
    let old_al = cpu.r.gpr[0] as u8;
    let old_cf = cpu.r.flags.cf();
    let af = cpu.r.flags.af();
    let mut al = old_al;
    let mut cf = false;
    let mut new_af = false;
    if al & 0xf > 9 || af {
        al = if SUBTRACT {
            al.wrapping_sub(6)
        } else {
            al.wrapping_add(6)
        };
        cf = old_cf || if SUBTRACT { old_al < 6 } else { old_al > 0xf9 };
        new_af = true;
    }
    if old_al > 0x99 || old_cf {
        al = if SUBTRACT {
            al.wrapping_sub(0x60)
        } else {
            al.wrapping_add(0x60)
        };
        cf = true;
    }
    reg_put(cpu, 0, 1, al as u64);
    set_szp(cpu, al);
    let f = &mut cpu.r.flags;
    f.bits = (f.bits & !(CF | AF)) | if cf { CF } else { 0 } | if new_af { AF } else { 0 };
    Ok(Flow::Next)
}

/// AAA and AAS (16/32-bit code only).
pub fn aaa_aas<const SUBTRACT: bool>(cpu: &mut Cpu, _: &Insn) -> Step {
    let af = cpu.r.flags.af();
    let ax = cpu.r.gpr[0] & 0xffff;
    let adjust = (ax & 0xf) > 9 || af;
    let mut new = ax;
    if adjust {
        new = if SUBTRACT {
            let al = (ax as u8).wrapping_sub(6);
            let ah = ((ax >> 8) as u8).wrapping_sub(1);
            ((ah as u64) << 8) | al as u64
        } else {
            ax.wrapping_add(0x106)
        };
    }
    new = (new & 0xff00) | (new & 0x0f);
    reg_put(cpu, 0, 2, new);
    set_szp(cpu, new as u8);
    let f = &mut cpu.r.flags;
    f.bits = (f.bits & !(CF | AF)) | if adjust { CF | AF } else { 0 };
    Ok(Flow::Next)
}

/// AAM imm8: AH = AL / imm, AL = AL % imm; #DE if imm is 0.
pub fn aam(cpu: &mut Cpu, insn: &Insn) -> Step {
    let base = insn.i.immediate8();
    if base == 0 {
        return Err(Fault::new(vector::DE).into());
    }
    let al = cpu.r.gpr[0] as u8;
    let (ah, al) = (al / base, al % base);
    reg_put(cpu, 0, 2, ((ah as u64) << 8) | al as u64);
    set_szp(cpu, al);
    let f = &mut cpu.r.flags;
    f.bits &= !(CF | AF | OF);
    Ok(Flow::Next)
}

/// AAD imm8: AL = AH * imm + AL, AH = 0.
pub fn aad(cpu: &mut Cpu, insn: &Insn) -> Step {
    let base = insn.i.immediate8();
    let ax = cpu.r.gpr[0];
    let al = ((ax as u8) as u16 + ((ax >> 8) as u8) as u16 * base as u16) as u8;
    reg_put(cpu, 0, 2, al as u64);
    let f = &mut cpu.r.flags;
    f.set(
        Op::Add,
        1,
        al as u64,
        ax as u8 as u64,
        (((ax >> 8) as u8 as u16 * base as u16) as u8) as u64,
    );
    Ok(Flow::Next)
}

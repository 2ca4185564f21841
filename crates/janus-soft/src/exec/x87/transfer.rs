//! Data transfer: loads, stores and conversions, constants, FXCH, FCMOVcc, and the stack
//! bookkeeping instructions (FFREE, FINCSTP, FDECSTP, FNOP).

use super::host::{
    self, CONSTANT, F80, KIND_SIZE, LOAD, M16INT, M16INT_TRUNC, M32FP, M32INT, M32INT_TRUNC, M64FP,
    M64INT, M64INT_TRUNC, M80BCD, STORE,
};
use super::{
    check, is_empty, masked_invalid, merged, note, overflow, phys, pop, probe_dest, push,
    read_operand, set_st, set_top, st, stack_fault, sti, underflow, write_bytes, C1,
};
use crate::core::{Cpu, Flow, Step};
use crate::exec::{Handler, Insn};
use iced_x86::Code;

macro_rules! e {
    ($h:expr, $fop:expr) => {
        ($h as Handler, $fop)
    };
}

/// Condition codes (as `Flags::cond` numbers them) of the FCMOVcc forms.
const B: u8 = 2;
const NB: u8 = 3;
const E: u8 = 4;
const NE: u8 = 5;
const BE: u8 = 6;
const NBE: u8 = 7;
const U: u8 = 10;
const NU: u8 = 11;

/// Handler and FOP base of the data-transfer encodings.
pub(super) fn entry(code: Code) -> Option<(Handler, u16)> {
    memory_entry(code).or_else(|| register_entry(code))
}

fn memory_entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    Some(match code {
        Fld_m32fp => e!(load::<M32FP>, 0x100),
        Fst_m32fp => e!(store::<M32FP, false>, 0x110),
        Fstp_m32fp => e!(store::<M32FP, true>, 0x118),
        Fild_m32int => e!(load::<M32INT>, 0x300),
        Fist_m32int => e!(store::<M32INT, false>, 0x310),
        Fistp_m32int => e!(store::<M32INT, true>, 0x318),
        Fld_m80fp => e!(fld_m80, 0x328),
        Fstp_m80fp => e!(fstp_m80, 0x338),
        Fld_m64fp => e!(load::<M64FP>, 0x500),
        Fst_m64fp => e!(store::<M64FP, false>, 0x510),
        Fstp_m64fp => e!(store::<M64FP, true>, 0x518),
        Fild_m16int => e!(load::<M16INT>, 0x700),
        Fist_m16int => e!(store::<M16INT, false>, 0x710),
        Fistp_m16int => e!(store::<M16INT, true>, 0x718),
        Fbld_m80bcd => e!(load::<M80BCD>, 0x720),
        Fild_m64int => e!(load::<M64INT>, 0x728),
        Fbstp_m80bcd => e!(store::<M80BCD, true>, 0x730),
        Fistp_m64int => e!(store::<M64INT, true>, 0x738),
        Fisttp_m16int => e!(store::<M16INT_TRUNC, true>, 0x708),
        Fisttp_m32int => e!(store::<M32INT_TRUNC, true>, 0x308),
        Fisttp_m64int => e!(store::<M64INT_TRUNC, true>, 0x508),
        _ => return None,
    })
}

fn register_entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    Some(match code {
        Fld_sti => e!(fld_sti, 0x1c0),
        Fxch_st0_sti => e!(fxch, 0x1c8),
        Fxch_st0_sti_DDC8 => e!(fxch, 0x5c8),
        Fxch_st0_sti_DFC8 => e!(fxch, 0x7c8),
        Fnop => e!(fnop, 0x1d0),
        Fst_sti => e!(fst_sti::<false>, 0x5d0),
        Fstp_sti => e!(fst_sti::<true>, 0x5d8),
        Fstpnce_sti => e!(fstpnce, 0x1d8),
        Fstp_sti_DFD0 => e!(fst_sti::<true>, 0x7d0),
        Fstp_sti_DFD8 => e!(fst_sti::<true>, 0x7d8),
        Fld1 => e!(constant::<0>, 0x1e8),
        Fldl2t => e!(constant::<1>, 0x1e9),
        Fldl2e => e!(constant::<2>, 0x1ea),
        Fldpi => e!(constant::<3>, 0x1eb),
        Fldlg2 => e!(constant::<4>, 0x1ec),
        Fldln2 => e!(constant::<5>, 0x1ed),
        Fldz => e!(constant::<6>, 0x1ee),
        Fdecstp => e!(move_top::<7>, 0x1f6),
        Fincstp => e!(move_top::<1>, 0x1f7),
        Ffree_sti => e!(ffree::<false>, 0x5c0),
        Ffreep_sti => e!(ffree::<true>, 0x7c0),
        Fcmovb_st0_sti => e!(fcmov::<B>, 0x2c0),
        Fcmove_st0_sti => e!(fcmov::<E>, 0x2c8),
        Fcmovbe_st0_sti => e!(fcmov::<BE>, 0x2d0),
        Fcmovu_st0_sti => e!(fcmov::<U>, 0x2d8),
        Fcmovnb_st0_sti => e!(fcmov::<NB>, 0x3c0),
        Fcmovne_st0_sti => e!(fcmov::<NE>, 0x3c8),
        Fcmovnbe_st0_sti => e!(fcmov::<NBE>, 0x3d0),
        Fcmovnu_st0_sti => e!(fcmov::<NU>, 0x3d8),
        _ => return None,
    })
}

// ------------------------------------------------------------------ loads

/// FLD m32fp/m64fp, FILD, FBLD: convert on the host (which raises what the conversion
/// raises) and push.
fn load<const KIND: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let m = read_operand(cpu, insn, KIND_SIZE[KIND])?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if !is_empty(f, 7) {
        overflow(f);
        return Ok(Flow::Next);
    }
    let out = host::run(&LOAD[KIND], f.fcw, f.fsw, [F80::default(); 2], m);
    if out.depth == 1 {
        push(f, out.res[0]);
    }
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    Ok(Flow::Next)
}

/// FLD m80fp: no conversion, so no exception but stack overflow.
fn fld_m80(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let m = read_operand(cpu, insn, 10)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if !is_empty(f, 7) {
        overflow(f);
        return Ok(Flow::Next);
    }
    push(f, F80::from_bytes(&m));
    f.fsw &= !C1;
    Ok(Flow::Next)
}

/// FLD ST(i): an empty source is an underflow even when the push would also overflow.
fn fld_sti(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = sti(insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, i) {
        f.fsw = stack_fault(f.fsw, f.fcw, false);
        if masked_invalid(f) {
            push(f, F80::INDEFINITE);
        }
    } else if !is_empty(f, 7) {
        overflow(f);
    } else {
        let v = st(f, i);
        push(f, v);
        f.fsw &= !C1;
    }
    Ok(Flow::Next)
}

/// FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ (rounded as the control word says).
fn constant<const K: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if !is_empty(f, 7) {
        overflow(f);
        return Ok(Flow::Next);
    }
    let out = host::run(&CONSTANT[K], f.fcw, f.fsw, [F80::default(); 2], [0; 16]);
    push(f, out.res[0]);
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    Ok(Flow::Next)
}

// ------------------------------------------------------------------ stores

/// FST/FSTP m32fp/m64fp, FIST/FISTP, FBSTP: convert on the host, store, maybe pop. The
/// store happens before any FPU state changes, so a faulting store changes nothing. An
/// unmasked exception (the host did not complete the store) writes nothing and keeps ST(0),
/// but the destination is still checked.
fn store<const KIND: usize, const POP: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let f = &cpu.r.fpu;
    let (write, fsw, pops) = if is_empty(f, 0) {
        let fsw = stack_fault(f.fsw, f.fcw, false);
        match masked_invalid(f) {
            true => (Some(host::indefinite_store(KIND)), fsw, POP),
            false => (None, fsw, false),
        }
    } else {
        let out = host::run(
            &STORE[KIND],
            f.fcw,
            f.fsw,
            [st(f, 0), F80::default()],
            [0; 16],
        );
        let done = out.depth == 0;
        let fsw = merged(f.fsw, f.fcw, out.sw, C1);
        (done.then_some(out.mem), fsw, done && POP)
    };
    match write {
        Some(m) => write_bytes(cpu, insn, &m[..KIND_SIZE[KIND]])?,
        None => probe_dest(cpu, insn, KIND_SIZE[KIND])?,
    }
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    f.fsw = fsw;
    if pops {
        pop(f);
    }
    Ok(Flow::Next)
}

/// FSTP m80fp: a plain copy (the indefinite NaN for an empty ST(0), when masked).
fn fstp_m80(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let f = &cpu.r.fpu;
    let (value, fsw) = if is_empty(f, 0) {
        let v = masked_invalid(f).then_some(F80::INDEFINITE);
        (v, stack_fault(f.fsw, f.fcw, false))
    } else {
        (Some(st(f, 0)), f.fsw & !C1)
    };
    match value {
        Some(v) => write_bytes(cpu, insn, &v.to_bytes())?,
        None => probe_dest(cpu, insn, 10)?,
    }
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    f.fsw = fsw;
    if value.is_some() {
        pop(f);
    }
    Ok(Flow::Next)
}

/// FST/FSTP ST(i) (and the undocumented FSTP aliases).
fn fst_sti<const POP: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = sti(insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        underflow(f, Some(i), POP as usize);
        return Ok(Flow::Next);
    }
    let v = st(f, 0);
    set_st(f, i, v);
    f.fsw &= !C1;
    if POP {
        pop(f);
    }
    Ok(Flow::Next)
}

/// FSTPNCE ST(i) (D9 D8+i, an undocumented FSTP): with ST(0) empty it only clears C1 and
/// pops, raising nothing, as the host CPU does.
fn fstpnce(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    if is_empty(&cpu.r.fpu, 0) {
        note(cpu, insn);
        let f = &mut cpu.r.fpu;
        f.fsw &= !C1;
        pop(f);
        return Ok(Flow::Next);
    }
    fst_sti::<true>(cpu, insn)
}

// ------------------------------------------------------------------ register moves

/// FXCH ST(i). With an empty operand the masked response exchanges the indefinite NaN in
/// its place.
fn fxch(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = sti(insn);
    let f = &mut cpu.r.fpu;
    let (empty0, emptyi) = (is_empty(f, 0), is_empty(f, i));
    let (mut a, mut b) = (st(f, 0), st(f, i));
    if empty0 || emptyi {
        f.fsw = stack_fault(f.fsw, f.fcw, false);
        if !masked_invalid(f) {
            return Ok(Flow::Next);
        }
        if empty0 {
            a = F80::INDEFINITE;
        }
        if emptyi {
            b = F80::INDEFINITE;
        }
    } else {
        f.fsw &= !C1;
    }
    set_st(f, i, a);
    set_st(f, 0, b);
    Ok(Flow::Next)
}

/// FCMOVcc ST(0), ST(i), on the EFLAGS condition `CC`.
fn fcmov<const CC: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = sti(insn);
    let take = cpu.r.flags.cond(CC);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || is_empty(f, i) {
        underflow(f, Some(0), 0);
        return Ok(Flow::Next);
    }
    if take {
        let v = st(f, i);
        set_st(f, 0, v);
    }
    f.fsw &= !C1;
    Ok(Flow::Next)
}

/// FFREE ST(i) tags it empty (and clears C1); FFREEP also pops.
fn ffree<const POP: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    f.ftw &= !(1 << phys(f, sti(insn)));
    f.fsw &= !C1;
    if POP {
        pop(f);
    }
    Ok(Flow::Next)
}

/// FINCSTP (`D` = 1) and FDECSTP (`D` = 7): rotate TOP, tags unchanged, C1 cleared.
fn move_top<const D: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    set_top(f, f.top() + D);
    f.fsw &= !C1;
    Ok(Flow::Next)
}

/// FNOP: a waiting x87 instruction that only updates the last-instruction pointers.
fn fnop(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    Ok(Flow::Next)
}

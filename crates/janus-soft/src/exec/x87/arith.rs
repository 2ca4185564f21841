//! Arithmetic, comparisons and the transcendental functions.

use super::host::{
    self, Kernel, ADD, ARITH_MEM, ARITH_POP, ARITH_RR, COMPARE_EFLAGS, COMPARE_MEM, COMPARE_RR,
    DIV, DIVR, F2XM1, F80, FCOS, FLAGS_UNCHANGED, FPATAN, FPREM, FPREM1, FPTAN, FRNDINT, FSCALE,
    FSIN, FSINCOS, FSQRT, FXTRACT, FYL2X, FYL2XP1, IN_PLACE2, KIND_SIZE, M16INT, M32FP, M32INT,
    M64FP, MUL, POPPING, PUSHING, SUB, SUBR, UNARY,
};
use super::{
    check, is_empty, masked_invalid, merged, note, pop, push, read_operand, set_st, st,
    stack_fault, sti, underflow, C0, C1, C2, C3, CC,
};
use crate::core::{Cpu, Flow, Step};
use crate::exec::{Handler, Insn};
use crate::flags::{ARITH, CF, PF, ZF};
use crate::fpu::Fpu;
use iced_x86::Code;

macro_rules! e {
    ($h:expr, $fop:expr) => {
        ($h as Handler, $fop)
    };
}

/// Handler and FOP base of the arithmetic and comparison encodings.
pub(super) fn entry(code: Code) -> Option<(Handler, u16)> {
    arith_entry(code)
        .or_else(|| compare_entry(code))
        .or_else(|| function_entry(code))
}

fn arith_entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    Some(match code {
        Fadd_st0_sti => e!(st0_sti::<ADD>, 0x0c0),
        Fmul_st0_sti => e!(st0_sti::<MUL>, 0x0c8),
        Fsub_st0_sti => e!(st0_sti::<SUB>, 0x0e0),
        Fsubr_st0_sti => e!(st0_sti::<SUBR>, 0x0e8),
        Fdiv_st0_sti => e!(st0_sti::<DIV>, 0x0f0),
        Fdivr_st0_sti => e!(st0_sti::<DIVR>, 0x0f8),
        Fadd_sti_st0 => e!(sti_st0::<ADD>, 0x4c0),
        Fmul_sti_st0 => e!(sti_st0::<MUL>, 0x4c8),
        Fsubr_sti_st0 => e!(sti_st0::<SUBR>, 0x4e0),
        Fsub_sti_st0 => e!(sti_st0::<SUB>, 0x4e8),
        Fdivr_sti_st0 => e!(sti_st0::<DIVR>, 0x4f0),
        Fdiv_sti_st0 => e!(sti_st0::<DIV>, 0x4f8),
        Faddp_sti_st0 => e!(sti_st0_pop::<ADD>, 0x6c0),
        Fmulp_sti_st0 => e!(sti_st0_pop::<MUL>, 0x6c8),
        Fsubrp_sti_st0 => e!(sti_st0_pop::<SUBR>, 0x6e0),
        Fsubp_sti_st0 => e!(sti_st0_pop::<SUB>, 0x6e8),
        Fdivrp_sti_st0 => e!(sti_st0_pop::<DIVR>, 0x6f0),
        Fdivp_sti_st0 => e!(sti_st0_pop::<DIV>, 0x6f8),
        _ => return arith_mem_entry(code),
    })
}

fn arith_mem_entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    Some(match code {
        Fadd_m32fp => e!(mem::<ADD, M32FP>, 0x000),
        Fmul_m32fp => e!(mem::<MUL, M32FP>, 0x008),
        Fsub_m32fp => e!(mem::<SUB, M32FP>, 0x020),
        Fsubr_m32fp => e!(mem::<SUBR, M32FP>, 0x028),
        Fdiv_m32fp => e!(mem::<DIV, M32FP>, 0x030),
        Fdivr_m32fp => e!(mem::<DIVR, M32FP>, 0x038),
        Fiadd_m32int => e!(mem::<ADD, M32INT>, 0x200),
        Fimul_m32int => e!(mem::<MUL, M32INT>, 0x208),
        Fisub_m32int => e!(mem::<SUB, M32INT>, 0x220),
        Fisubr_m32int => e!(mem::<SUBR, M32INT>, 0x228),
        Fidiv_m32int => e!(mem::<DIV, M32INT>, 0x230),
        Fidivr_m32int => e!(mem::<DIVR, M32INT>, 0x238),
        Fadd_m64fp => e!(mem::<ADD, M64FP>, 0x400),
        Fmul_m64fp => e!(mem::<MUL, M64FP>, 0x408),
        Fsub_m64fp => e!(mem::<SUB, M64FP>, 0x420),
        Fsubr_m64fp => e!(mem::<SUBR, M64FP>, 0x428),
        Fdiv_m64fp => e!(mem::<DIV, M64FP>, 0x430),
        Fdivr_m64fp => e!(mem::<DIVR, M64FP>, 0x438),
        Fiadd_m16int => e!(mem::<ADD, M16INT>, 0x600),
        Fimul_m16int => e!(mem::<MUL, M16INT>, 0x608),
        Fisub_m16int => e!(mem::<SUB, M16INT>, 0x620),
        Fisubr_m16int => e!(mem::<SUBR, M16INT>, 0x628),
        Fidiv_m16int => e!(mem::<DIV, M16INT>, 0x630),
        Fidivr_m16int => e!(mem::<DIVR, M16INT>, 0x638),
        _ => return None,
    })
}

fn compare_entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    const ORD: usize = 0;
    const UNORD: usize = 1;
    Some(match code {
        Fcom_st0_sti => e!(compare::<ORD, 0>, 0x0d0),
        Fcomp_st0_sti => e!(compare::<ORD, 1>, 0x0d8),
        Fcom_st0_sti_DCD0 => e!(compare::<ORD, 0>, 0x4d0),
        Fcomp_st0_sti_DCD8 => e!(compare::<ORD, 1>, 0x4d8),
        Fcomp_st0_sti_DED0 => e!(compare::<ORD, 1>, 0x6d0),
        Fcompp => e!(compare::<ORD, 2>, 0x6d9),
        Fucom_st0_sti => e!(compare::<UNORD, 0>, 0x5e0),
        Fucomp_st0_sti => e!(compare::<UNORD, 1>, 0x5e8),
        Fucompp => e!(compare::<UNORD, 2>, 0x2e9),
        Fcomi_st0_sti => e!(compare_eflags::<ORD, 0>, 0x3f0),
        Fucomi_st0_sti => e!(compare_eflags::<UNORD, 0>, 0x3e8),
        Fcomip_st0_sti => e!(compare_eflags::<ORD, 1>, 0x7f0),
        Fucomip_st0_sti => e!(compare_eflags::<UNORD, 1>, 0x7e8),
        Fcom_m32fp => e!(compare_mem::<M32FP, 0>, 0x010),
        Fcomp_m32fp => e!(compare_mem::<M32FP, 1>, 0x018),
        Fcom_m64fp => e!(compare_mem::<M64FP, 0>, 0x410),
        Fcomp_m64fp => e!(compare_mem::<M64FP, 1>, 0x418),
        Ficom_m32int => e!(compare_mem::<M32INT, 0>, 0x210),
        Ficomp_m32int => e!(compare_mem::<M32INT, 1>, 0x218),
        Ficom_m16int => e!(compare_mem::<M16INT, 0>, 0x610),
        Ficomp_m16int => e!(compare_mem::<M16INT, 1>, 0x618),
        Ftst => e!(ftst, 0x1e4),
        Fxam => e!(fxam, 0x1e5),
        _ => return None,
    })
}

fn function_entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    Some(match code {
        Fchs => e!(fchs, 0x1e0),
        Fabs => e!(fabs, 0x1e1),
        F2xm1 => e!(unary::<F2XM1>, 0x1f0),
        Fyl2x => e!(popping::<FYL2X>, 0x1f1),
        Fptan => e!(pushing::<FPTAN>, 0x1f2),
        Fpatan => e!(popping::<FPATAN>, 0x1f3),
        Fxtract => e!(pushing::<FXTRACT>, 0x1f4),
        Fprem1 => e!(in_place2::<FPREM1>, 0x1f5),
        Fprem => e!(in_place2::<FPREM>, 0x1f8),
        Fyl2xp1 => e!(popping::<FYL2XP1>, 0x1f9),
        Fsqrt => e!(unary::<FSQRT>, 0x1fa),
        Fsincos => e!(pushing::<FSINCOS>, 0x1fb),
        Frndint => e!(unary::<FRNDINT>, 0x1fc),
        Fscale => e!(in_place2::<FSCALE>, 0x1fd),
        Fsin => e!(unary::<FSIN>, 0x1fe),
        Fcos => e!(unary::<FCOS>, 0x1ff),
        _ => return None,
    })
}

// ------------------------------------------------------------------ arithmetic

/// FADD ST(0), ST(i) and friends: ST(0) = ST(0) op ST(i).
fn st0_sti<const OP: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    registers(cpu, insn, 0, sti(insn), &ARITH_RR[OP])
}

/// FADD ST(i), ST(0) and friends: ST(i) = ST(i) op ST(0).
fn sti_st0<const OP: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    registers(cpu, insn, sti(insn), 0, &ARITH_RR[OP])
}

/// ST(dest) = ST(dest) op ST(src) through `k`, which computes host st(0) op st(1).
fn registers(cpu: &mut Cpu, insn: &Insn, dest: usize, src: usize, k: &Kernel) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, dest) || is_empty(f, src) {
        underflow(f, Some(dest), 0);
        return Ok(Flow::Next);
    }
    let out = host::run(k, f.fcw, f.fsw, [st(f, dest), st(f, src)], [0; 16]);
    // Suppressed by an unmasked exception, the host left st(0) as it was.
    set_st(f, dest, out.res[0]);
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    Ok(Flow::Next)
}

/// FADDP ST(i), ST(0) and friends: ST(i) = ST(i) op ST(0), then pop.
fn sti_st0_pop<const OP: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = sti(insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || is_empty(f, i) {
        underflow(f, Some(i), 1);
        return Ok(Flow::Next);
    }
    let out = host::run(&ARITH_POP[OP], f.fcw, f.fsw, [st(f, 0), st(f, i)], [0; 16]);
    if out.depth == 1 {
        set_st(f, i, out.res[0]);
        pop(f);
    }
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    Ok(Flow::Next)
}

/// FADD m32fp, FIADD m16int and friends: ST(0) = ST(0) op memory.
fn mem<const OP: usize, const KIND: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let m = read_operand(cpu, insn, KIND_SIZE[KIND])?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        underflow(f, Some(0), 0);
        return Ok(Flow::Next);
    }
    let out = host::run(
        &ARITH_MEM[KIND][OP],
        f.fcw,
        f.fsw,
        [st(f, 0), F80::default()],
        m,
    );
    set_st(f, 0, out.res[0]);
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    Ok(Flow::Next)
}

// ------------------------------------------------------------------ comparisons

/// A compare with an empty operand reports "unordered" whether or not the invalid operation
/// is masked; only the masked response also pops.
fn compare_underflow(f: &mut Fpu, pops: usize) {
    f.fsw = stack_fault(f.fsw, f.fcw, false) | C0 | C2 | C3;
    if masked_invalid(f) {
        for _ in 0..pops {
            pop(f);
        }
    }
}

/// Pops `n` times if the host run completed (left `expect` values).
fn pop_if_done(f: &mut Fpu, depth: u8, expect: usize, n: usize) {
    if depth as usize == expect {
        for _ in 0..n {
            pop(f);
        }
    }
}

/// FCOM/FUCOM ST(i) (POPS = 0), FCOMP/FUCOMP (1), FCOMPP/FUCOMPP (2, with ST(1)).
fn compare<const UNORD: usize, const POPS: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = if POPS == 2 { 1 } else { sti(insn) };
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || is_empty(f, i) {
        compare_underflow(f, POPS);
        return Ok(Flow::Next);
    }
    let k = &COMPARE_RR[UNORD][POPS];
    let out = host::run(k, f.fcw, f.fsw, [st(f, 0), st(f, i)], [0; 16]);
    pop_if_done(f, out.depth, 2 - POPS, POPS);
    f.fsw = merged(f.fsw, f.fcw, out.sw, CC);
    Ok(Flow::Next)
}

/// FCOM m32fp, FICOMP m16int and friends.
fn compare_mem<const KIND: usize, const POP: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let m = read_operand(cpu, insn, KIND_SIZE[KIND])?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        compare_underflow(f, POP);
        return Ok(Flow::Next);
    }
    let k = &COMPARE_MEM[KIND][POP];
    let out = host::run(k, f.fcw, f.fsw, [st(f, 0), F80::default()], m);
    pop_if_done(f, out.depth, 1 - POP, POP);
    f.fsw = merged(f.fsw, f.fcw, out.sw, CC);
    Ok(Flow::Next)
}

/// Sets ZF, PF and CF from `v` and clears OF, SF and AF, as FCOMI does.
fn set_compare_flags(cpu: &mut Cpu, v: u64) {
    let fl = &mut cpu.r.flags;
    fl.materialize();
    fl.bits = (fl.bits & !ARITH) | (v & (ZF | PF | CF));
}

/// FCOMI/FUCOMI ST(i) and the popping FCOMIP/FUCOMIP: the result goes to EFLAGS.
fn compare_eflags<const UNORD: usize, const POP: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let i = sti(insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || is_empty(f, i) {
        // As for FCOM: "unordered" either way, the pop only when masked.
        f.fsw = stack_fault(f.fsw, f.fcw, false);
        if POP == 1 && masked_invalid(f) {
            pop(f);
        }
        set_compare_flags(cpu, ZF | PF | CF);
        return Ok(Flow::Next);
    }
    let k = &COMPARE_EFLAGS[UNORD][POP];
    let out = host::run(k, f.fcw, f.fsw, [st(f, 0), st(f, i)], [0; 16]);
    pop_if_done(f, out.depth, 2 - POP, POP);
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    if out.flags != FLAGS_UNCHANGED {
        set_compare_flags(cpu, out.flags as u64);
    }
    Ok(Flow::Next)
}

/// FTST: compares ST(0) with 0.0.
fn ftst(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        compare_underflow(f, 0);
        return Ok(Flow::Next);
    }
    let out = host::run(
        &host::FTST,
        f.fcw,
        f.fsw,
        [st(f, 0), F80::default()],
        [0; 16],
    );
    f.fsw = merged(f.fsw, f.fcw, out.sw, CC);
    Ok(Flow::Next)
}

/// FXAM: classifies ST(0) in C3, C2, C0 and gives its sign in C1. An empty register is a
/// class of its own (C3 and C0), not an exception.
fn fxam(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        let sign = if st(f, 0).se & 0x8000 != 0 { C1 } else { 0 };
        f.fsw = (f.fsw & !CC) | C3 | C0 | sign;
        return Ok(Flow::Next);
    }
    let out = host::run(
        &host::FXAM,
        f.fcw,
        f.fsw,
        [st(f, 0), F80::default()],
        [0; 16],
    );
    f.fsw = merged(f.fsw, f.fcw, out.sw, CC);
    Ok(Flow::Next)
}

// ------------------------------------------------------------------ functions of ST(0)

/// FCHS and FABS change only the sign bit and raise nothing but stack underflow.
fn sign_op(cpu: &mut Cpu, insn: &Insn, op: fn(u16) -> u16) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        underflow(f, Some(0), 0);
        return Ok(Flow::Next);
    }
    let mut v = st(f, 0);
    v.se = op(v.se);
    set_st(f, 0, v);
    f.fsw &= !C1;
    Ok(Flow::Next)
}

fn fchs(cpu: &mut Cpu, insn: &Insn) -> Step {
    sign_op(cpu, insn, |se| se ^ 0x8000)
}

fn fabs(cpu: &mut Cpu, insn: &Insn) -> Step {
    sign_op(cpu, insn, |se| se & 0x7fff)
}

/// FSQRT, FRNDINT, F2XM1, FSIN, FCOS: ST(0) = f(ST(0)). FSIN and FCOS report an operand out
/// of range in C2 (leaving it alone).
fn unary<const K: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let cmask = if K == FSIN || K == FCOS { C1 | C2 } else { C1 };
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) {
        // C2 ("out of range") is cleared too, for the functions that report it.
        f.fsw &= !(cmask & C2);
        underflow(f, Some(0), 0);
        return Ok(Flow::Next);
    }
    let out = host::run(&UNARY[K], f.fcw, f.fsw, [st(f, 0), F80::default()], [0; 16]);
    set_st(f, 0, out.res[0]);
    f.fsw = merged(f.fsw, f.fcw, out.sw, cmask);
    Ok(Flow::Next)
}

/// FPTAN, FSINCOS, FXTRACT: replace ST(0) and push a second result. Both stack faults (an
/// empty ST(0), or a full ST(7) to push into) fill both places with the indefinite NaN when
/// masked.
fn pushing<const K: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let range = K == FPTAN || K == FSINCOS;
    let cmask = if range { C1 | C2 } else { C1 };
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || !is_empty(f, 7) {
        f.fsw = stack_fault(f.fsw & !(cmask & C2), f.fcw, !is_empty(f, 0));
        if masked_invalid(f) {
            set_st(f, 0, F80::INDEFINITE);
            push(f, F80::INDEFINITE);
        }
        return Ok(Flow::Next);
    }
    let out = host::run(
        &PUSHING[K],
        f.fcw,
        f.fsw,
        [st(f, 0), F80::default()],
        [0; 16],
    );
    // An operand out of range (C2) leaves ST(0) alone and pushes nothing.
    let out_of_range = range && out.sw & C2 != 0;
    if out.depth == 2 && !out_of_range {
        set_st(f, 0, out.res[1]);
        push(f, out.res[0]);
    } else {
        set_st(f, 0, out.res[0]);
    }
    f.fsw = merged(f.fsw, f.fcw, out.sw, cmask);
    Ok(Flow::Next)
}

/// FSCALE, FPREM, FPREM1: ST(0) = f(ST(0), ST(1)). The remainders report the quotient's low
/// bits and completion in all four condition codes.
fn in_place2<const K: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let cmask = if K == FSCALE { C1 } else { CC };
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || is_empty(f, 1) {
        // A remainder reports "incomplete" (C2) no more; the quotient bits stay.
        f.fsw &= !(cmask & C2);
        underflow(f, Some(0), 0);
        return Ok(Flow::Next);
    }
    let out = host::run(&IN_PLACE2[K], f.fcw, f.fsw, [st(f, 0), st(f, 1)], [0; 16]);
    set_st(f, 0, out.res[0]);
    f.fsw = merged(f.fsw, f.fcw, out.sw, cmask);
    Ok(Flow::Next)
}

/// FYL2X, FYL2XP1, FPATAN: ST(1) = f(ST(0), ST(1)), then pop.
fn popping<const K: usize>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    note(cpu, insn);
    let f = &mut cpu.r.fpu;
    if is_empty(f, 0) || is_empty(f, 1) {
        underflow(f, Some(1), 1);
        return Ok(Flow::Next);
    }
    let out = host::run(&POPPING[K], f.fcw, f.fsw, [st(f, 0), st(f, 1)], [0; 16]);
    if out.depth == 1 {
        set_st(f, 1, out.res[0]);
        pop(f);
    }
    f.fsw = merged(f.fsw, f.fcw, out.sw, C1);
    Ok(Flow::Next)
}

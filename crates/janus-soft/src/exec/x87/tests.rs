//! Differential tests: the same x87 code run under the soft CPU and natively on the host.
//!
//! A test program loops over a table of input vectors. For each vector it starts from
//! FNINIT, loads the vector's control word, builds a register stack, sets RFLAGS, runs the
//! instruction under test and records the whole FPU with FNSAVE (a no-wait instruction, so an
//! unmasked exception is recorded rather than taken, and FNSAVE reinitialises the FPU for the
//! next vector), plus RFLAGS, RAX and a memory result. The code and data sit at the same
//! addresses in both runs (the native run maps them at `CODE` and `DATA` in the test process),
//! so even the instruction and data pointers compare equal.

mod faults;
mod fop;
mod harness;
mod modes;

use super::host::F80;
use crate::testing::DATA;
use harness::{run_vectors, Emit, Vector};
use iced_x86::code_asm::*;

const fn v(se: u16, sig: u64) -> F80 {
    F80 { sig, se }
}

/// 80-bit operands: every class, the boundaries, and values that round interestingly.
const VALUES: &[F80] = &[
    v(0x0000, 0),
    v(0x8000, 0),
    v(0x3fff, 1 << 63),
    v(0xbfff, 1 << 63),
    v(0x4000, 0xc000_0000_0000_0000), // 3
    v(0x3ffd, 0xaaaa_aaaa_aaaa_aaab), // 1/3
    v(0x4000, 0xc90f_daa2_2168_c235), // pi
    v(0xc001, 0xe800_0000_0000_0000), // -7.25
    v(0x4000, 0xa000_0000_0000_0000), // 2.5
    v(0xbffe, 0xc000_0000_0000_0000), // -0.75
    v(0x400d, 0xffff_0000_0000_0000), // 32767.5
    v(0xc00e, 0x8000_8000_0000_0000), // -32768.5
    v(0x403e, 0x8000_0000_0000_0000), // 2^63
    v(0x403d, 0xffff_ffff_ffff_ffff), // 2^63 - 0.5
    v(0x7ffe, 0xffff_ffff_ffff_ffff), // largest
    v(0x6000, 0x8000_0000_0000_0001), // huge
    v(0x0001, 0x8000_0000_0000_0000), // smallest normal
    v(0x1000, 0xc000_0000_0000_0001), // tiny
    v(0x0000, 0x0000_0000_0000_0001), // smallest denormal
    v(0x8000, 0x4000_0000_0000_0000), // -denormal
    v(0x0000, 0x8000_0000_0000_0000), // pseudo-denormal
    v(0x7fff, 0x8000_0000_0000_0000), // +inf
    v(0xffff, 0x8000_0000_0000_0000), // -inf
    v(0x7fff, 0xc000_0000_0000_0001), // QNaN
    v(0xffff, 0x8000_0000_0000_0005), // -SNaN
    v(0x7fff, 0xa000_0000_0000_0000), // SNaN
    F80::INDEFINITE,
    v(0x3fff, 0x4000_0000_0000_0000), // unnormal
    v(0x7fff, 0x4000_0000_0000_0000), // pseudo-NaN
    v(0x7fff, 0x0000_0000_0000_0000), // pseudo-infinity
    v(0x403f, 0xc90f_daa2_2168_c235), // pi * 2^64 (out of FSIN's range)
];

/// A few operands, for tests that do not depend much on the value.
const FEW: &[F80] = &[
    v(0x3fff, 1 << 63),
    v(0xc000, 0xc90f_daa2_2168_c235),
    v(0x0000, 0),
    v(0x7fff, 0xa000_0000_0000_0000),
    v(0x0000, 0x0000_0000_0000_0001),
];

/// Control words: every rounding and precision control, all masked, all unmasked, and each
/// exception unmasked alone.
const CWS: &[u16] = &[
    0x037f, 0x077f, 0x0b7f, 0x0f7f, 0x007f, 0x027f, 0x0340, 0x037e, 0x037d, 0x037b, 0x0377, 0x036f,
    0x035f,
];

/// RFLAGS values the vectors cycle through (for FCMOVcc).
const FLAGS: &[u64] = &[0, 0x8d5, 0x001, 0x040, 0x004, 0x041];

/// Vectors for every pair of `a` and `b` (memory operand `m` from `mems`, cycled).
fn pairs(a: &[F80], b: &[F80], mems: &[&[u8]]) -> Vec<Vector> {
    let mut out = Vec::new();
    for (j, x) in a.iter().enumerate() {
        for (k, y) in b.iter().enumerate() {
            let n = out.len();
            out.push(Vector {
                a: *x,
                b: *y,
                mem: mems
                    .get((j + k) % mems.len().max(1))
                    .map_or(vec![], |m| m.to_vec()),
                flags: FLAGS[n % FLAGS.len()],
            });
        }
    }
    out
}

/// Vectors for `a` against each memory operand.
fn with_mem(a: &[F80], mems: &[&[u8]]) -> Vec<Vector> {
    let mut out = Vec::new();
    for x in a {
        for m in mems {
            let n = out.len();
            out.push(Vector {
                a: *x,
                b: FEW[n % FEW.len()],
                mem: m.to_vec(),
                flags: FLAGS[n % FLAGS.len()],
            });
        }
    }
    out
}

/// Runs `op` after `setup` for every control word in `cws`.
fn check_all(name: &str, setup: Emit, op: Emit, vectors: &[Vector], cws: &[u16]) {
    for &cw in cws {
        run_vectors(name, cw, setup, op, vectors);
    }
}

// ------------------------------------------------------------------ stack set-ups

/// st(0) = a, st(1) = b.
fn two(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.fld(tword_ptr(rsi + 10))?;
    a.fld(tword_ptr(rsi))
}

/// st(0) = a, st(1) = b, with C0, C2 and C3 set beforehand (to catch condition codes an
/// instruction leaves alone).
fn dirty(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.fldenv(ptr(harness::DIRTY_ENV))?;
    two(a)
}

/// Like `dirty`, with SF and IE already set.
fn sticky(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.fldenv(ptr(harness::STICKY_ENV))?;
    two(a)
}

/// st(0) = a.
fn one(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.fld(tword_ptr(rsi))
}

/// An empty stack.
fn none(_: &mut CodeAssembler) -> Result<(), IcedError> {
    Ok(())
}

/// st(0) = a, st(1) empty, st(2) = b.
fn gap(a: &mut CodeAssembler) -> Result<(), IcedError> {
    two(a)?;
    a.fld(tword_ptr(rsi))?;
    a.ffree(st1)
}

/// All eight registers full, st(0) = a, st(1) = b.
fn full(a: &mut CodeAssembler) -> Result<(), IcedError> {
    for _ in 0..6 {
        a.fld(tword_ptr(rsi + 10))?;
    }
    two(a)
}

/// st(0) = a, st(1) = b, and st(7) full (a push overflows).
fn top_full(a: &mut CodeAssembler) -> Result<(), IcedError> {
    two(a)?;
    a.fld(tword_ptr(rsi + 10))?;
    a.fincstp()
}

/// st(0) empty (holding a), st(1) = b.
fn hole(a: &mut CodeAssembler) -> Result<(), IcedError> {
    two(a)?;
    a.ffree(st0)
}

fn dirty_none(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.fldenv(ptr(harness::DIRTY_ENV))
}

fn dirty_one(a: &mut CodeAssembler) -> Result<(), IcedError> {
    dirty_none(a)?;
    one(a)
}

fn dirty_gap(a: &mut CodeAssembler) -> Result<(), IcedError> {
    dirty_none(a)?;
    gap(a)
}

fn dirty_full(a: &mut CodeAssembler) -> Result<(), IcedError> {
    dirty_none(a)?;
    full(a)
}

const SETUPS: &[(&str, Emit)] = &[
    ("two", two),
    ("one", one),
    ("none", none),
    ("gap", gap),
    ("hole", hole),
    ("dirty", dirty),
    ("dirty none", dirty_none),
    ("dirty one", dirty_one),
    ("dirty gap", dirty_gap),
];

// ------------------------------------------------------------------ memory operands

const M32: &[&[u8]] = &[
    &0u32.to_le_bytes(),
    &0x8000_0000u32.to_le_bytes(),
    &0x3f80_0000u32.to_le_bytes(),
    &0xbfc0_0000u32.to_le_bytes(),
    &0x0000_0001u32.to_le_bytes(),
    &0x807f_ffffu32.to_le_bytes(),
    &0x7f80_0000u32.to_le_bytes(),
    &0xff80_0000u32.to_le_bytes(),
    &0x7fc0_0001u32.to_le_bytes(),
    &0x7f80_0001u32.to_le_bytes(),
    &0x7f7f_ffffu32.to_le_bytes(),
    &0x4049_0fdbu32.to_le_bytes(),
];

const M64: &[&[u8]] = &[
    &0u64.to_le_bytes(),
    &0x3ff0_0000_0000_0000u64.to_le_bytes(),
    &0xc004_0000_0000_0000u64.to_le_bytes(),
    &0x0000_0000_0000_0001u64.to_le_bytes(),
    &0x7ff0_0000_0000_0000u64.to_le_bytes(),
    &0xfff8_0000_0000_0001u64.to_le_bytes(),
    &0x7ff0_0000_0000_0001u64.to_le_bytes(),
    &0x7fef_ffff_ffff_ffffu64.to_le_bytes(),
    &0x01a5_6e1f_c2f8_f359u64.to_le_bytes(),
    &0x4009_21fb_5444_2d18u64.to_le_bytes(),
];

const M16: &[&[u8]] = &[
    &0u16.to_le_bytes(),
    &1u16.to_le_bytes(),
    &0xffffu16.to_le_bytes(),
    &0x7fffu16.to_le_bytes(),
    &0x8000u16.to_le_bytes(),
    &3u16.to_le_bytes(),
];

const M32I: &[&[u8]] = &[
    &0u32.to_le_bytes(),
    &1u32.to_le_bytes(),
    &0xffff_ffffu32.to_le_bytes(),
    &0x7fff_ffffu32.to_le_bytes(),
    &0x8000_0000u32.to_le_bytes(),
    &12345u32.to_le_bytes(),
];

const M64I: &[&[u8]] = &[
    &0u64.to_le_bytes(),
    &u64::MAX.to_le_bytes(),
    &0x8000_0000_0000_0000u64.to_le_bytes(),
    &0x7fff_ffff_ffff_ffffu64.to_le_bytes(),
    &0x0020_0000_0000_0001u64.to_le_bytes(),
];

const BCD: &[&[u8]] = &[
    &[0; 10],
    &[0x34, 0x12, 0, 0, 0, 0, 0, 0, 0, 0],
    &[0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x80],
    &[0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0x80],
    &[0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff],
];

const M80: &[&[u8]] = &[
    &[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f],
    &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    &[1, 0, 0, 0, 0, 0, 0, 0xa0, 0xff, 0x7f],
    &[0, 0, 0, 0, 0, 0, 0, 0x40, 0xff, 0x3f],
];

// ------------------------------------------------------------------ arithmetic

macro_rules! ops {
    ($($name:literal => |$a:ident| $body:expr),* $(,)?) => {
        &[$(($name, {
            fn emit($a: &mut CodeAssembler) -> Result<(), IcedError> {
                $body
            }
            emit as Emit
        })),*]
    };
}

const ARITH_REG: &[(&str, Emit)] = ops![
    "fadd st0,st1" => |a| a.fadd_2(st0, st1),
    "fadd st1,st0" => |a| a.fadd_2(st1, st0),
    "faddp st1" => |a| a.faddp(st1, st0),
    "fadd st0,st0" => |a| a.fadd_2(st0, st0),
    "fmul st0,st1" => |a| a.fmul_2(st0, st1),
    "fmulp st1" => |a| a.fmulp(st1, st0),
    "fsub st0,st1" => |a| a.fsub_2(st0, st1),
    "fsub st1,st0" => |a| a.fsub_2(st1, st0),
    "fsubp st1" => |a| a.fsubp(st1, st0),
    "fsubr st0,st1" => |a| a.fsubr_2(st0, st1),
    "fsubr st1,st0" => |a| a.fsubr_2(st1, st0),
    "fsubrp st1" => |a| a.fsubrp(st1, st0),
    "fdiv st0,st1" => |a| a.fdiv_2(st0, st1),
    "fdiv st1,st0" => |a| a.fdiv_2(st1, st0),
    "fdivp st1" => |a| a.fdivp(st1, st0),
    "fdivr st0,st1" => |a| a.fdivr_2(st0, st1),
    "fdivr st1,st0" => |a| a.fdivr_2(st1, st0),
    "fdivrp st1" => |a| a.fdivrp(st1, st0),
    "fsubp st0" => |a| a.fsubp(st0, st0),
    "fadd st0,st2" => |a| a.fadd_2(st0, st2),
];

#[test]
fn arithmetic_registers() {
    let vectors = pairs(VALUES, VALUES, &[]);
    for (name, op) in ARITH_REG {
        check_all(name, two, *op, &vectors, CWS);
    }
}

const ARITH_MEM: &[(&str, Emit, &[&[u8]])] = &[
    ("fadd m32", |a| a.fadd(dword_ptr(rsi + 20)), M32),
    ("fmul m32", |a| a.fmul(dword_ptr(rsi + 20)), M32),
    ("fsub m32", |a| a.fsub(dword_ptr(rsi + 20)), M32),
    ("fsubr m32", |a| a.fsubr(dword_ptr(rsi + 20)), M32),
    ("fdiv m32", |a| a.fdiv(dword_ptr(rsi + 20)), M32),
    ("fdivr m32", |a| a.fdivr(dword_ptr(rsi + 20)), M32),
    ("fadd m64", |a| a.fadd(qword_ptr(rsi + 20)), M64),
    ("fmul m64", |a| a.fmul(qword_ptr(rsi + 20)), M64),
    ("fsub m64", |a| a.fsub(qword_ptr(rsi + 20)), M64),
    ("fsubr m64", |a| a.fsubr(qword_ptr(rsi + 20)), M64),
    ("fdiv m64", |a| a.fdiv(qword_ptr(rsi + 20)), M64),
    ("fdivr m64", |a| a.fdivr(qword_ptr(rsi + 20)), M64),
    ("fiadd m16", |a| a.fiadd(word_ptr(rsi + 20)), M16),
    ("fimul m16", |a| a.fimul(word_ptr(rsi + 20)), M16),
    ("fisub m16", |a| a.fisub(word_ptr(rsi + 20)), M16),
    ("fisubr m16", |a| a.fisubr(word_ptr(rsi + 20)), M16),
    ("fidiv m16", |a| a.fidiv(word_ptr(rsi + 20)), M16),
    ("fidivr m16", |a| a.fidivr(word_ptr(rsi + 20)), M16),
    ("fiadd m32", |a| a.fiadd(dword_ptr(rsi + 20)), M32I),
    ("fimul m32", |a| a.fimul(dword_ptr(rsi + 20)), M32I),
    ("fisub m32", |a| a.fisub(dword_ptr(rsi + 20)), M32I),
    ("fisubr m32", |a| a.fisubr(dword_ptr(rsi + 20)), M32I),
    ("fidiv m32", |a| a.fidiv(dword_ptr(rsi + 20)), M32I),
    ("fidivr m32", |a| a.fidivr(dword_ptr(rsi + 20)), M32I),
];

#[test]
fn arithmetic_memory() {
    for (name, op, mems) in ARITH_MEM {
        check_all(name, one, *op, &with_mem(VALUES, mems), CWS);
    }
}

/// Every register form with empty operands and gaps: stack underflow, masked and not.
#[test]
fn arithmetic_underflow() {
    let vectors = pairs(FEW, FEW, &[]);
    for (name, op) in ARITH_REG {
        for (setup_name, setup) in SETUPS {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, &[0x037f, 0x037e]);
        }
    }
    for (name, op, mems) in ARITH_MEM {
        check_all(name, none, *op, &with_mem(FEW, mems), &[0x037f, 0x037e]);
    }
}

// ------------------------------------------------------------------ comparisons

const COMPARES: &[(&str, Emit)] = ops![
    "fcom st1" => |a| a.fcom_2(st0, st1),
    "fcomp st1" => |a| a.fcomp_2(st0, st1),
    "fcompp" => |a| a.fcompp(),
    "fucom st1" => |a| a.fucom(st0, st1),
    "fucomp st1" => |a| a.fucomp(st0, st1),
    "fucompp" => |a| a.fucompp(),
    "fcomi st1" => |a| a.fcomi(st0, st1),
    "fcomip st1" => |a| a.fcomip(st0, st1),
    "fucomi st1" => |a| a.fucomi(st0, st1),
    "fucomip st1" => |a| a.fucomip(st0, st1),
    "fcom st0" => |a| a.fcom_2(st0, st0),
    "fcomi st2" => |a| a.fcomi(st0, st2),
    "ftst" => |a| a.ftst(),
    "fxam" => |a| a.fxam(),
];

const COMPARES_MEM: &[(&str, Emit, &[&[u8]])] = &[
    ("fcom m32", |a| a.fcom(dword_ptr(rsi + 20)), M32),
    ("fcomp m32", |a| a.fcomp(dword_ptr(rsi + 20)), M32),
    ("fcom m64", |a| a.fcom(qword_ptr(rsi + 20)), M64),
    ("fcomp m64", |a| a.fcomp(qword_ptr(rsi + 20)), M64),
    ("ficom m16", |a| a.ficom(word_ptr(rsi + 20)), M16),
    ("ficomp m16", |a| a.ficomp(word_ptr(rsi + 20)), M16),
    ("ficom m32", |a| a.ficom(dword_ptr(rsi + 20)), M32I),
    ("ficomp m32", |a| a.ficomp(dword_ptr(rsi + 20)), M32I),
];

#[test]
fn comparisons() {
    let vectors = pairs(VALUES, VALUES, &[]);
    for (name, op) in COMPARES {
        check_all(name, two, *op, &vectors, &[0x037f, 0x037e, 0x037d, 0x0340]);
        check_all(name, dirty, *op, &vectors, &[0x037f, 0x0340]);
    }
    for (name, op, mems) in COMPARES_MEM {
        check_all(
            name,
            one,
            *op,
            &with_mem(VALUES, mems),
            &[0x037f, 0x037e, 0x037d],
        );
    }
}

#[test]
fn comparison_underflow() {
    let vectors = pairs(FEW, FEW, &[]);
    for (name, op) in COMPARES {
        for (setup_name, setup) in SETUPS {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, &[0x037f, 0x037e]);
        }
    }
    for (name, op, mems) in COMPARES_MEM {
        check_all(name, none, *op, &with_mem(FEW, mems), &[0x037f, 0x037e]);
    }
}

// ------------------------------------------------------------------ functions

const FUNCTIONS: &[(&str, Emit)] = ops![
    "fsqrt" => |a| a.fsqrt(),
    "frndint" => |a| a.frndint(),
    "f2xm1" => |a| a.f2xm1(),
    "fsin" => |a| a.fsin(),
    "fcos" => |a| a.fcos(),
    "fabs" => |a| a.fabs(),
    "fchs" => |a| a.fchs(),
    "fptan" => |a| a.fptan(),
    "fsincos" => |a| a.fsincos(),
    "fxtract" => |a| a.fxtract(),
    "fscale" => |a| a.fscale(),
    "fprem" => |a| a.fprem(),
    "fprem1" => |a| a.fprem1(),
    "fyl2x" => |a| a.fyl2x(),
    "fyl2xp1" => |a| a.fyl2xp1(),
    "fpatan" => |a| a.fpatan(),
];

#[test]
fn functions() {
    let vectors = pairs(VALUES, VALUES, &[]);
    for (name, op) in FUNCTIONS {
        check_all(name, two, *op, &vectors, CWS);
        check_all(name, dirty, *op, &vectors, &[0x037f, 0x0360]);
    }
}

#[test]
fn function_stack_faults() {
    let vectors = pairs(FEW, FEW, &[]);
    let setups: &[(&str, Emit)] = &[
        ("one", one),
        ("none", none),
        ("gap", gap),
        ("full", full),
        ("top full", top_full),
        ("dirty none", dirty_none),
        ("dirty one", dirty_one),
        ("dirty gap", dirty_gap),
        ("dirty full", dirty_full),
    ];
    for (name, op) in FUNCTIONS {
        for (setup_name, setup) in setups {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, &[0x037f, 0x037e]);
        }
    }
}

// ------------------------------------------------------------------ loads and stores

const LOADS: &[(&str, Emit, &[&[u8]])] = &[
    ("fld m32", |a| a.fld(dword_ptr(rsi + 20)), M32),
    ("fld m64", |a| a.fld(qword_ptr(rsi + 20)), M64),
    ("fld m80", |a| a.fld(tword_ptr(rsi + 20)), M80),
    ("fild m16", |a| a.fild(word_ptr(rsi + 20)), M16),
    ("fild m32", |a| a.fild(dword_ptr(rsi + 20)), M32I),
    ("fild m64", |a| a.fild(qword_ptr(rsi + 20)), M64I),
    ("fbld", |a| a.fbld(tword_ptr(rsi + 20)), BCD),
    ("fld1", |a| a.fld1(), &[]),
    ("fldl2t", |a| a.fldl2t(), &[]),
    ("fldl2e", |a| a.fldl2e(), &[]),
    ("fldpi", |a| a.fldpi(), &[]),
    ("fldlg2", |a| a.fldlg2(), &[]),
    ("fldln2", |a| a.fldln2(), &[]),
    ("fldz", |a| a.fldz(), &[]),
    ("fld st1", |a| a.fld(st1), &[]),
    ("fld st0", |a| a.fld(st0), &[]),
    ("fld st3", |a| a.fld(st3), &[]),
];

#[test]
fn loads() {
    let setups: &[(&str, Emit)] = &[
        ("two", two),
        ("none", none),
        ("gap", gap),
        ("full", full),
        ("top full", top_full),
        ("dirty", dirty),
        ("dirty full", dirty_full),
    ];
    for (name, op, mems) in LOADS {
        let vectors = if mems.is_empty() {
            pairs(VALUES, FEW, &[])
        } else {
            with_mem(FEW, mems)
        };
        for (setup_name, setup) in setups {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, CWS);
        }
    }
}

const STORES: &[(&str, Emit)] = ops![
    "fst m32" => |a| a.fst(dword_ptr(rdi + 128)),
    "fstp m32" => |a| a.fstp(dword_ptr(rdi + 128)),
    "fst m64" => |a| a.fst(qword_ptr(rdi + 128)),
    "fstp m64" => |a| a.fstp(qword_ptr(rdi + 128)),
    "fstp m80" => |a| a.fstp(tword_ptr(rdi + 128)),
    "fist m16" => |a| a.fist(word_ptr(rdi + 128)),
    "fistp m16" => |a| a.fistp(word_ptr(rdi + 128)),
    "fist m32" => |a| a.fist(dword_ptr(rdi + 128)),
    "fistp m32" => |a| a.fistp(dword_ptr(rdi + 128)),
    "fistp m64" => |a| a.fistp(qword_ptr(rdi + 128)),
    "fbstp" => |a| a.fbstp(tword_ptr(rdi + 128)),
    "fst st1" => |a| a.fst(st1),
    "fstp st1" => |a| a.fstp(st1),
    "fst st0" => |a| a.fst(st0),
    "fstp st0" => |a| a.fstp(st0),
    "fst st3" => |a| a.fst(st3),
    "fstpnce st1" => |a| a.fstpnce(st1),
    "fstp st1 (df d1)" => |a| a.db(&[0xdf, 0xd1]),
    "fstp st1 (df d9)" => |a| a.db(&[0xdf, 0xd9]),
];

#[test]
fn stores() {
    let vectors = pairs(VALUES, FEW, &[]);
    for (name, op) in STORES {
        check_all(name, two, *op, &vectors, CWS);
        let setups = [
            ("hole", hole as Emit),
            ("none", none),
            ("gap", gap),
            ("dirty", dirty),
            ("dirty none", dirty_none),
        ];
        for (setup_name, setup) in setups {
            let name = format!("{name} ({setup_name})");
            check_all(&name, setup, *op, &pairs(FEW, FEW, &[]), &[0x037f, 0x037e]);
        }
    }
}

// ------------------------------------------------------------------ register moves

const MOVES: &[(&str, Emit)] = ops![
    "fxch st1" => |a| a.fxch(st0, st1),
    "fxch st2" => |a| a.fxch(st0, st2),
    "fxch st0" => |a| a.fxch(st0, st0),
    "fxch st1 (dd c9)" => |a| a.db(&[0xdd, 0xc9]),
    "fxch st1 (df c9)" => |a| a.db(&[0xdf, 0xc9]),
    "fcom st1 (dc d1)" => |a| a.db(&[0xdc, 0xd1]),
    "fcomp st1 (dc d9)" => |a| a.db(&[0xdc, 0xd9]),
    "fcomp st1 (de d1)" => |a| a.db(&[0xde, 0xd1]),
    "fcmovb" => |a| a.fcmovb(st0, st1),
    "fcmove" => |a| a.fcmove(st0, st1),
    "fcmovbe" => |a| a.fcmovbe(st0, st1),
    "fcmovu" => |a| a.fcmovu(st0, st1),
    "fcmovnb" => |a| a.fcmovnb(st0, st1),
    "fcmovne" => |a| a.fcmovne(st0, st1),
    "fcmovnbe" => |a| a.fcmovnbe(st0, st1),
    "fcmovnu" => |a| a.fcmovnu(st0, st1),
    "fcmovb st2" => |a| a.fcmovb(st0, st2),
    "ffree st1" => |a| a.ffree(st1),
    "ffree st0" => |a| a.ffree(st0),
    "ffreep st0" => |a| a.ffreep(st0),
    "ffreep st2" => |a| a.ffreep(st2),
    "fincstp" => |a| a.fincstp(),
    "fdecstp" => |a| a.fdecstp(),
    "fnop" => |a| a.fnop(),
    "fwait" => |a| a.wait(),
];

#[test]
fn register_moves() {
    let vectors = pairs(VALUES, FEW, &[]);
    for (name, op) in MOVES {
        for (setup_name, setup) in SETUPS {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, &[0x037f, 0x037e]);
        }
    }
}

// ------------------------------------------------------------------ control

/// Control instructions that do not wait (safe with an unmasked exception pending).
const NO_WAIT: &[(&str, Emit)] = ops![
    "fnstsw ax" => |a| a.fnstsw(ax),
    "fnstsw m16" => |a| a.fnstsw(word_ptr(rdi + 128)),
    "fnstcw" => |a| a.fnstcw(word_ptr(rdi + 128)),
    "fnclex" => |a| a.fnclex(),
    "fninit" => |a| a.fninit(),
    "fnstenv" => |a| a.fnstenv(ptr(rdi + 128)),
    "fneni" => |a| a.fneni(),
    "fndisi" => |a| a.fndisi(),
    "fnsetpm" => |a| a.fnsetpm(),
];

/// Waiting control instructions.
const WAITING: &[(&str, Emit)] = ops![
    "fstsw ax" => |a| a.fstsw(ax),
    "fstsw m16" => |a| a.fstsw(word_ptr(rdi + 128)),
    "fstcw" => |a| a.fstcw(word_ptr(rdi + 128)),
    "fldcw" => |a| a.fldcw(word_ptr(rsi + 20)),
    "fclex" => |a| a.fclex(),
    "finit" => |a| a.finit(),
    "fstenv" => |a| a.fstenv(ptr(rdi + 128)),
];

/// Control words for FLDCW, reserved bits included.
const CW_VALUES: &[&[u8]] = &[
    &0xffffu16.to_le_bytes(),
    &0x0000u16.to_le_bytes(),
    &0x1f7fu16.to_le_bytes(),
    &0x0c40u16.to_le_bytes(),
    &0x037bu16.to_le_bytes(),
];

/// A set-up that leaves exception flags and condition codes behind: 1/0, pending if ZE is
/// unmasked (so nothing that waits may follow).
fn flagged(a: &mut CodeAssembler) -> Result<(), IcedError> {
    two(a)?;
    a.fxam()?;
    a.fldz()?;
    a.fdivr_2(st0, st2)
}

#[test]
fn control() {
    let vectors = pairs(VALUES, FEW, CW_VALUES);
    let setups: &[(&str, Emit)] = &[("two", two), ("flagged", flagged), ("none", none)];
    for (name, op) in NO_WAIT {
        for (setup_name, setup) in setups {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, &[0x037f, 0x0f60, 0x0040]);
        }
    }
    for (name, op) in WAITING {
        for (setup_name, setup) in setups {
            let name = format!("{name} ({setup_name})");
            check_all(&name, *setup, *op, &vectors, &[0x037f, 0x0b7f]);
        }
    }
}

// ------------------------------------------------------------------ environment and save

/// Where the environment test keeps things, from `DATA`.
const ENV_IN: u64 = 0x400;
const SAVE_IN: u64 = 0x800;

/// An FLDENV image (32-bit layout): a pending unmasked exception, TOP = 3, tags that
/// disagree with the contents, and pointers.
fn env_image() -> [u8; 28] {
    let mut e = [0u8; 28];
    let dwords: [u32; 7] = [
        0xffff_0362,
        0xffff_5a85 & !0x80,
        0xffff_5a3c,
        0x1234_5678,
        0x07ff_0023,
        0x9abc_def0,
        0xffff_002b,
    ];
    for (k, d) in dwords.iter().enumerate() {
        e[4 * k..4 * k + 4].copy_from_slice(&d.to_le_bytes());
    }
    e
}

/// An FRSTOR image: the environment above (unmasked flags pending) and registers of every
/// class.
fn save_image() -> Vec<u8> {
    let mut s = env_image().to_vec();
    for k in 0..8 {
        s.extend_from_slice(&VALUES[(3 * k + 1) % VALUES.len()].to_bytes());
    }
    s
}

/// Emits `code` with memory operand `[DATA + off]`.
fn at(code: iced_x86::Code, off: u64) -> Result<iced_x86::Instruction, IcedError> {
    iced_x86::Instruction::with1(code, iced_x86::MemoryOperand::with_displ(DATA + off, 8))
}

fn environment_program() -> Result<Vec<u8>, IcedError> {
    use iced_x86::Code::*;
    let mut a = CodeAssembler::new(64)?;
    a.fninit()?;
    a.fldcw(word_ptr(DATA))?;
    for k in 0..5u64 {
        a.fld(tword_ptr(DATA + 0x10 + 10 * k))?;
    }
    a.fdiv_2(st0, st3)?;
    a.fxam()?;
    a.ffree(st2)?;
    a.fadd(dword_ptr(DATA + 0x80))?;
    let steps = [
        (Fnstenv_m28byte, 0x100),
        (Fnsave_m108byte, 0x200),
        (Fldenv_m28byte, ENV_IN),
        (Fnstenv_m28byte, 0x500),
        (Fnsave_m108byte, 0x600),
        (Frstor_m108byte, 0x200),
        (Fnsave_m108byte, 0x700),
        (Frstor_m108byte, SAVE_IN),
        (Fnstenv_m28byte, 0x900),
        (Fnsave_m108byte, 0x980),
        (Frstor_m108byte, 0x200),
        (Fnstenv_m14byte, 0xa00),
        (Fnsave_m94byte, 0xa80),
        (Frstor_m94byte, 0xa80),
        (Fnsave_m108byte, 0xb00),
        (Fldenv_m14byte, 0xa00),
        (Fnstenv_m28byte, 0xb80),
    ];
    for (code, off) in steps {
        a.add_instruction(at(code, off)?)?;
    }
    a.assemble(crate::testing::CODE)
}

/// Compares two runs' data areas, except the selectors in the environment images (CS and
/// DS differ between the guest and the host process) and pointers the host lost (see
/// `harness::masked`).
fn compare_images(guest: &[u8], native: &[u8], images: &[(usize, bool)]) {
    let mut g = guest.to_vec();
    let mut h = native.to_vec();
    for &(off, big) in images {
        let sels: [usize; 2] = if big { [16, 24] } else { [8, 12] };
        for s in sels {
            g[off + s..off + s + 2].fill(0);
            h[off + s..off + s + 2].fill(0);
        }
    }
    for (k, (x, y)) in g.iter().zip(&h).enumerate() {
        assert_eq!(
            x,
            y,
            "byte {k:#x} differs: soft {:02x?} native {:02x?}",
            &g[k & !0xf..(k & !0xf) + 16],
            &h[k & !0xf..(k & !0xf) + 16]
        );
    }
}

#[test]
fn environment_and_save_round_trips() {
    let code = environment_program().expect("assembles");
    let mut data = vec![0u8; 0x1000];
    for (cw, round) in [(0x037fu16, 0), (0x0f7f, 1), (0x027b, 2)] {
        data[..2].copy_from_slice(&cw.to_le_bytes());
        for k in 0..5 {
            let v = VALUES[(5 * k + round) % VALUES.len()];
            data[0x10 + 10 * k..0x1a + 10 * k].copy_from_slice(&v.to_bytes());
        }
        data[0x80..0x84].copy_from_slice(&0x7f80_0001u32.to_le_bytes());
        data[ENV_IN as usize..ENV_IN as usize + 28].copy_from_slice(&env_image());
        data[SAVE_IN as usize..SAVE_IN as usize + 108].copy_from_slice(&save_image());
        let (guest, guest_final) = harness::run_guest("environment", &code, &data);
        let (native, native_final) = harness::run_native(&code, &data);
        assert_eq!(guest_final, native_final, "final x87 state (soft, native)");
        let images = [
            (0x100, true),
            (0x200, true),
            (0x500, true),
            (0x600, true),
            (0x700, true),
            (0x900, true),
            (0x980, true),
            (0xa00, false),
            (0xa80, false),
            (0xb00, true),
            (0xb80, true),
        ];
        compare_images(&guest, &native, &images);
        for (off, _) in images {
            assert_ne!(
                guest[off..off + 14],
                [0; 14],
                "image at {off:#x} was stored"
            );
        }
    }
}

// ------------------------------------------------------------------ random operands

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Mostly normal numbers of moderate size, some near the range limits, some special.
    fn f80(&mut self) -> F80 {
        let r = self.next();
        let sign = ((r >> 63) as u16) << 15;
        let exp = match r % 8 {
            0 => (r >> 8) as u16 & 0x7fff,
            1 => (r >> 8) as u16 & 0x3f,
            2 => 0x7fff - ((r >> 8) as u16 & 0x3f),
            _ => 0x3fff - 0x40 + ((r >> 8) as u16 & 0x7f),
        };
        let sig = self.next() | if r % 16 == 3 { 0 } else { 1 << 63 };
        v(sign | exp, sig)
    }
}

#[test]
fn random_operands() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vectors: Vec<Vector> = (0..3000)
        .map(|n| Vector {
            a: rng.f80(),
            b: rng.f80(),
            mem: rng.next().to_le_bytes().to_vec(),
            flags: FLAGS[n % FLAGS.len()],
        })
        .collect();
    let cws = [0x037f, 0x0b7f, 0x007f, 0x0240, 0x036f];
    for setup in [two as Emit, dirty] {
        let ops = ARITH_REG
            .iter()
            .chain(FUNCTIONS)
            .chain(COMPARES)
            .chain(STORES);
        for (name, op) in ops.chain(MOVES) {
            check_all(name, setup, *op, &vectors, &cws);
        }
        for (name, op, _) in ARITH_MEM.iter().chain(COMPARES_MEM).chain(LOADS) {
            check_all(name, setup, *op, &vectors, &cws);
        }
    }
    let ops = ARITH_REG
        .iter()
        .chain(FUNCTIONS)
        .chain(COMPARES)
        .chain(STORES);
    for (name, op) in ops.chain(MOVES).chain(NO_WAIT).chain(WAITING) {
        check_all(name, sticky, *op, &vectors, &[0x037f]);
    }
}

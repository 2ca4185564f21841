//! Exceptions: #MF for pending unmasked x87 exceptions, #NM for CR0.EM/TS/MP, and memory
//! faults that must leave the FPU untouched. These run only under the soft CPU (natively
//! they would kill the test process), against what the SDM specifies.

use super::super::{B, ES};
use crate::cpu::Dtr;
use crate::testing::{End, TestMachine, CODE, DATA};
use iced_x86::code_asm::*;
use janus_engine::cpu::bits::{CR0_EM, CR0_MP, CR0_NE, CR0_TS};

/// Where the handlers record the vector and the return RIP.
const SEEN_VECTOR: u64 = DATA + 0x7000;
const SEEN_RIP: u64 = DATA + 0x7008;
const NO_VECTOR: u8 = 0xff;
/// The zero-divide flag of the status word.
const ZE: u16 = 1 << 2;
const IDT: u64 = DATA + 0x8000;
const HANDLERS: u64 = CODE + 0x1000;
/// Every handler is this long (padded).
const HANDLER_SIZE: u64 = 32;

/// A machine running `body` (then HLT) with an IDT whose handlers record the vector and the
/// faulting RIP, then halt.
fn machine(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> TestMachine {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    body(&mut a).expect("test code assembles");
    a.hlt().expect("hlt");
    let code = a.assemble(CODE).expect("assembles");
    let mut m = TestMachine::long_mode(&code);
    for v in 0..32u64 {
        let at = HANDLERS + v * HANDLER_SIZE;
        let mut h = CodeAssembler::new(64).expect("64-bit assembler");
        h.mov(byte_ptr(SEEN_VECTOR), v as u32).expect("mov");
        h.mov(rax, qword_ptr(rsp)).expect("mov");
        h.mov(qword_ptr(SEEN_RIP), rax).expect("mov");
        h.hlt().expect("hlt");
        let bytes = h.assemble(at).expect("handler assembles");
        assert!(bytes.len() as u64 <= HANDLER_SIZE);
        m.write(at, &bytes);
        let gate_lo = (at & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((at >> 16) & 0xffff) << 48;
        m.write_u64(IDT + 16 * v, gate_lo);
        m.write_u64(IDT + 16 * v + 8, at >> 32);
    }
    m.write(SEEN_VECTOR, &[NO_VECTOR]);
    m.regs().idtr = Dtr {
        base: IDT,
        limit: 32 * 16 - 1,
    };
    m
}

/// Runs to HLT; returns the vector taken (or `NO_VECTOR`) and the RIP it reported.
fn run(m: &mut TestMachine) -> (u8, u64) {
    assert_eq!(m.run(), End::Halt);
    (m.read(SEEN_VECTOR, 1)[0], m.read_u64(SEEN_RIP))
}

/// Unmasks ZE, divides 1 by 0 (ZE pending), then runs `after`.
fn zero_divide_then(
    after: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError> {
    move |a| {
        a.mov(word_ptr(DATA), 0x037bu32)?;
        a.fldcw(word_ptr(DATA))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        after(a)
    }
}

/// Address of the instruction after the 5-instruction prologue of `zero_divide_then`.
fn after_prologue() -> u64 {
    let mut a = CodeAssembler::new(64).expect("assembler");
    zero_divide_then(|_| Ok(()))(&mut a).expect("assembles");
    CODE + a.assemble(CODE).expect("assembles").len() as u64
}

/// What runs between the zero divide and the faulting FLD1: no-wait instructions only.
fn no_wait_part(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.fnstsw(ax)?;
    a.mov(word_ptr(DATA + 4), ax)?;
    a.fnstcw(word_ptr(DATA + 2))
}

#[test]
fn unmasked_exception_raises_mf_at_the_next_waiting_instruction() {
    let mut m = machine(zero_divide_then(|a| {
        no_wait_part(a)?;
        a.fld1()?;
        // Not reached: the #MF handler halts.
        a.mov(word_ptr(DATA + 6), ax)
    }));
    let mut prefix = CodeAssembler::new(64).expect("assembler");
    zero_divide_then(no_wait_part)(&mut prefix).expect("assembles");
    let fld1_at = CODE + prefix.assemble(CODE).expect("assembles").len() as u64;
    let (vector, rip) = run(&mut m);
    assert_eq!((vector, rip), (16, fld1_at), "#MF at FLD1");
    let f = m.regs().fpu.clone();
    assert_eq!(f.fsw & (ES | B | ZE), ES | B | ZE);
    assert_eq!(
        f.top(),
        6,
        "FDIVP was suppressed (no pop) and FLD1 pushed nothing"
    );
    let seen = u16::from_le_bytes([m.read(DATA + 4, 2)[0], m.read(DATA + 4, 2)[1]]);
    assert_eq!(seen, f.fsw, "FNSTSW AX saw the pending exception");
    assert_eq!(m.read(DATA + 6, 2), vec![0; 2], "nothing ran after FLD1");
}

#[test]
fn fwait_and_finit_take_the_pending_exception() {
    for wait in [true, false] {
        let mut m = machine(zero_divide_then(
            move |a| {
                if wait {
                    a.wait()
                } else {
                    a.finit()
                }
            },
        ));
        assert_eq!(run(&mut m), (16, after_prologue()));
    }
}

#[test]
fn no_wait_forms_do_not_fault() {
    let mut m = machine(zero_divide_then(|a| {
        a.fnstenv(ptr(DATA + 0x100))?;
        a.fld1()?;
        a.fnsave(ptr(DATA + 0x200))?;
        a.fld1()?;
        a.fnclex()?;
        a.fld1()?;
        a.fninit()?;
        a.fld1()
    }));
    assert_eq!(run(&mut m).0, NO_VECTOR);
    // FNSTENV masked every exception (clearing ES), so the first FLD1 ran.
    assert_eq!(m.read(DATA + 0x100, 2), vec![0x7b, 0x03]);
    assert_eq!(m.read(DATA + 0x200, 2), vec![0x7f, 0x03]);
    assert_eq!(m.regs().fpu.top(), 7);
}

#[test]
fn fldcw_unmasking_a_raised_flag_makes_it_pending() {
    let mut m = machine(|a| {
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.mov(word_ptr(DATA), 0x037bu32)?;
        a.fldcw(word_ptr(DATA))?;
        a.fnop()
    });
    let (vector, _) = run(&mut m);
    assert_eq!(vector, 16);
    assert_eq!(m.regs().fpu.fsw & (ES | B), ES | B);
}

#[test]
fn without_cr0_ne_no_mf_is_raised() {
    let mut m = machine(zero_divide_then(|a| a.fld1()));
    m.regs().cr0 &= !CR0_NE;
    assert_eq!(run(&mut m).0, NO_VECTOR);
}

#[test]
fn cr0_ts_and_em_raise_nm() {
    for (bits, fwait_faults) in [
        (CR0_TS | CR0_MP, true),
        (CR0_TS, false),
        (CR0_EM, false),
        (CR0_EM | CR0_MP, false),
    ] {
        for code in ["fld1", "fninit", "fwait"] {
            let mut m = machine(|a| match code {
                "fld1" => a.fld1(),
                "fninit" => a.fninit(),
                _ => a.wait(),
            });
            m.regs().cr0 = (m.regs().cr0 & !(CR0_TS | CR0_MP | CR0_EM)) | bits;
            let (vector, rip) = run(&mut m);
            if code != "fwait" || fwait_faults {
                assert_eq!((vector, rip), (7, CODE), "{code} with cr0 bits {bits:#x}");
            } else {
                assert_eq!(vector, NO_VECTOR, "{code} with cr0 bits {bits:#x}");
            }
        }
    }
}

#[test]
fn nm_comes_before_mf() {
    let mut m = machine(zero_divide_then(|a| {
        a.mov(rax, cr0)?;
        a.or(rax, CR0_TS as i32)?;
        a.mov(cr0, rax)?;
        a.fld1()
    }));
    assert_eq!(run(&mut m).0, 7);
}

/// A 2 MiB page of RAM made not-present, for faulting accesses.
const HOLE: u64 = 0x3e0_0000;

fn unmap_hole(m: &TestMachine) {
    // The page tables of `TestMachine::long_mode`: the PD for 0..1 GiB at 0x3000.
    m.write_u64(0x3000 + 8 * (HOLE >> 21), 0);
}

#[test]
fn faulting_stores_change_nothing() {
    let before = HOLE - 0x40;
    let stores: [super::harness::Emit; 4] = [
        |a| a.fnsave(ptr(HOLE - 0x40)),
        |a| a.fstp(tword_ptr(HOLE - 4)),
        |a| a.fistp(qword_ptr(HOLE - 4)),
        |a| a.fnstenv(ptr(HOLE - 8)),
    ];
    for store in stores {
        let mut m = machine(|a| {
            a.fld1()?;
            a.fldpi()?;
            a.fld(tword_ptr(DATA))?;
            store(a)
        });
        m.write(DATA, &[0xff; 10]);
        unmap_hole(&m);
        m.write(before, &[0x5a; 0x40]);
        let (vector, _) = run(&mut m);
        assert_eq!(vector, 14, "#PF");
        let f = m.regs().fpu.clone();
        assert_eq!(f.top(), 5, "nothing popped");
        assert_eq!(f.fcw, 0x037f, "no FNINIT, no masking");
        assert_eq!(f.fsw & 0x3fff, 5 << 11, "no flags");
        assert_eq!(m.read(before, 0x40), vec![0x5a; 0x40], "nothing written");
    }
}

#[test]
fn faulting_loads_change_nothing() {
    let mut m = machine(|a| {
        a.fld1()?;
        a.frstor(ptr(HOLE - 0x40))
    });
    unmap_hole(&m);
    let (vector, _) = run(&mut m);
    assert_eq!(vector, 14, "#PF");
    let f = m.regs().fpu.clone();
    assert_eq!((f.top(), f.ftw), (7, 0x80));
}

//! The FOP value rebuilt at decode time must equal the instruction's own opcode and ModRM
//! bytes, for every addressing form in every code size.

use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions};

/// Checks every instruction in `code` (assembled for `bitness` at 0).
fn check(bitness: u32, code: &[u8]) {
    let mut decoder = Decoder::with_ip(bitness, code, 0, DecoderOptions::NONE);
    let mut checked = 0;
    while decoder.can_decode() {
        let i = decoder.decode();
        let bytes = &code[i.ip() as usize..i.next_ip() as usize];
        let insn = crate::decode::lower(&i, bitness, crate::cpuid::Isa::ALL);
        assert!(insn.implemented, "{i} is implemented");
        let Some(op) = bytes.iter().position(|b| (0xd8..=0xdf).contains(b)) else {
            continue;
        };
        let expect = (((bytes[op] & 7) as u16) << 8) | bytes[op + 1] as u16;
        assert_eq!(
            insn.rel as u16, expect,
            "{bitness}-bit `{i}` ({bytes:02x?}): FOP {:#05x}, expected {expect:#05x}",
            insn.rel
        );
        checked += 1;
    }
    assert!(checked > 10);
}

#[test]
fn fop_in_64_bit_code() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut data = a.create_label();
    a.fld(dword_ptr(rax))?;
    a.fld(dword_ptr(rsp))?;
    a.fld(qword_ptr(rbp))?;
    a.fld(dword_ptr(r12))?;
    a.fld(dword_ptr(r13))?;
    a.fadd(dword_ptr(rax + rcx * 4 + 8))?;
    a.fmul(qword_ptr(rsp + 0x1000))?;
    a.fsub(dword_ptr(0x1234u64))?;
    a.fidivr(word_ptr(rbx + rsi * 8 - 0x80))?;
    a.fistp(word_ptr(rdi))?;
    a.fbstp(tword_ptr(r8 + r9))?;
    a.fild(qword_ptr(r15 + 0x1234_5678))?;
    a.fcomp(qword_ptr(rsp + rax))?;
    a.ficom(dword_ptr(eax))?;
    a.fst(dword_ptr(esp + 8))?;
    a.fstp(tword_ptr(ebp))?;
    a.fld(dword_ptr(data))?;
    a.fadd_2(st0, st5)?;
    a.fsubp(st3, st0)?;
    a.fdivr_2(st6, st0)?;
    a.fcompp()?;
    a.fucompp()?;
    a.fxch(st0, st7)?;
    a.fnop()?;
    a.fcmovnbe(st0, st2)?;
    a.fucomip(st0, st4)?;
    a.ffreep(st1)?;
    a.fsincos()?;
    a.set_label(&mut data)?;
    a.db(&[0; 4])?;
    check(64, &a.assemble(0)?);
    Ok(())
}

#[test]
fn fop_in_32_bit_code() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    a.fld(dword_ptr(eax))?;
    a.fld(dword_ptr(esp))?;
    a.fld(dword_ptr(ebp + 4))?;
    a.fiadd(dword_ptr(0x1234u64))?;
    a.fisub(word_ptr(ecx * 2 + 0x10))?;
    a.fdiv(qword_ptr(edx + esi * 4))?;
    a.fld(dword_ptr(bx + si))?;
    a.fld(dword_ptr(bp))?;
    a.fst(qword_ptr(di + 0x1234))?;
    a.fstp(tword_ptr(ebp - 0x20))?;
    a.fld(st3)?;
    a.fcomi(st0, st1)?;
    check(32, &a.assemble(0)?);
    Ok(())
}

#[test]
fn fop_in_16_bit_code() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(16)?;
    a.fld(dword_ptr(bx + si))?;
    a.fld(dword_ptr(bx + di + 4))?;
    a.fld(dword_ptr(bp + si))?;
    a.fadd(qword_ptr(bp + di - 0x100))?;
    a.fmul(dword_ptr(si))?;
    a.fsub(dword_ptr(di))?;
    a.fcom(dword_ptr(bp))?;
    a.ficomp(word_ptr(0x1234u64))?;
    a.fist(word_ptr(bx))?;
    a.fld(dword_ptr(eax))?;
    a.fld(dword_ptr(esp + 4))?;
    a.fabs()?;
    check(16, &a.assemble(0)?);
    Ok(())
}

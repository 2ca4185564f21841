//! Mode transitions: real mode -> protected mode -> long mode (compatibility, then 64-bit),
//! then out of long mode by turning paging off and back in again, as the Linux decompressor
//! does.

mod common;
use common::*;
use iced_x86::code_asm::*;
use janus_engine::CpuState;
use janus_soft::cpu::Mode;
use janus_soft::testing::{End, TestMachine};

const GDT: u64 = 0x8000;
const GDT_PTR: u64 = 0x8100;
const MARKS: u64 = 0x6000;
const PM32: u64 = 0x9000;
const LM64: u64 = 0xa000;
const LM64_AGAIN: u64 = 0xa800;
const COMPAT: u64 = 0xb000;
const PML4: u64 = 0x10000;

/// A far jump ptr16:32 (in 16-bit code it needs the operand-size prefix).
fn far_jump(prefix: bool, sel: u16, off: u32) -> Vec<u8> {
    let mut v = Vec::new();
    if prefix {
        v.push(0x66);
    }
    v.push(0xea);
    v.extend_from_slice(&off.to_le_bytes());
    v.extend_from_slice(&sel.to_le_bytes());
    v
}

#[test]
fn real_to_protected_to_long_and_back() {
    let mut state = CpuState::power_on();
    state.cs.selector = 0;
    state.cs.base = 0;
    state.rip = 0x7c00;
    let mut m = TestMachine::new(&state, 16 << 20);

    // GDT: null, 0x08 32-bit code, 0x10 data, 0x18 64-bit code.
    put_u64s(
        &m,
        GDT,
        &[
            0,
            descriptor(true, 0, false, true),
            descriptor(false, 0, false, true),
            descriptor(true, 0, true, false),
        ],
    );
    m.write(GDT_PTR, &[0x1f, 0x00]);
    m.write(GDT_PTR + 2, &(GDT as u32).to_le_bytes());
    // Identity map of the first 1 GiB with 2 MiB pages.
    m.write_u64(PML4, (PML4 + 0x1000) | 3);
    m.write_u64(PML4 + 0x1000, (PML4 + 0x2000) | 3);
    for e in 0..512u64 {
        m.write_u64(PML4 + 0x2000 + e * 8, (e << 21) | 0x83);
    }

    let real = asm(16, 0x7c00, |a| {
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0x7000)?;
        a.mov(word_ptr(MARKS), 0x1111)?;
        a.lgdt(ptr(GDT_PTR))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        a.db(&far_jump(true, 0x08, PM32 as u32))
    });
    let pm32 = asm(32, PM32, |a| {
        a.mov(ax, 0x10)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, 0x7000)?;
        a.mov(dword_ptr(MARKS + 4), 0x2222)?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?; // PAE
        a.mov(cr4, eax)?;
        a.mov(eax, PML4 as u32)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 0x100)?; // LME
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32)?; // PG: long mode, still 32-bit code
        a.mov(cr0, eax)?;
        a.mov(dword_ptr(MARKS + 8), 0x3333)?;
        a.db(&far_jump(false, 0x18, LM64 as u32))
    });
    let lm64 = asm(64, LM64, |a| {
        a.mov(dword_ptr(MARKS + 12), 0x4444)?;
        a.mov(rax, 0x1234_5678_9abc_def0u64)?;
        a.mov(qword_ptr(MARKS + 16), rax)?;
        // Far return to 32-bit compatibility code.
        a.mov(rax, COMPAT)?;
        a.push(0x08)?;
        a.push(rax)?;
        a.db(&[0x48, 0xcb]) // retfq
    });
    let compat = asm(32, COMPAT, |a| {
        a.mov(dword_ptr(MARKS + 24), 0x5555)?;
        a.mov(eax, cr0)?;
        a.and(eax, 0x7fff_ffff)?; // paging off: leaves long mode
        a.mov(cr0, eax)?;
        a.mov(dword_ptr(MARKS + 28), 0x6666)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32)?; // and back in (EFER.LME is still set)
        a.mov(cr0, eax)?;
        a.db(&far_jump(false, 0x18, LM64_AGAIN as u32))
    });
    let again = asm(64, LM64_AGAIN, |a| {
        a.mov(dword_ptr(MARKS + 32), 0x7777)?;
        a.hlt()
    });
    for (at, code) in [
        (0x7c00, &real),
        (PM32, &pm32),
        (LM64, &lm64),
        (COMPAT, &compat),
        (LM64_AGAIN, &again),
    ] {
        m.write(at, code);
    }

    assert_eq!(m.run(), End::Halt);
    assert_eq!(&m.read(MARKS, 2), &[0x11, 0x11], "real mode ran");
    assert_eq!(read_u32(&m, MARKS + 4), 0x2222, "protected mode ran");
    assert_eq!(
        read_u32(&m, MARKS + 8),
        0x3333,
        "compatibility mode with paging ran"
    );
    assert_eq!(read_u32(&m, MARKS + 12), 0x4444, "64-bit mode ran");
    assert_eq!(
        m.read_u64(MARKS + 16),
        0x1234_5678_9abc_def0,
        "64-bit store"
    );
    assert_eq!(
        read_u32(&m, MARKS + 24),
        0x5555,
        "back in compatibility mode"
    );
    assert_eq!(
        read_u32(&m, MARKS + 28),
        0x6666,
        "protected mode with paging off"
    );
    assert_eq!(read_u32(&m, MARKS + 32), 0x7777, "64-bit mode again");
    let r = m.regs();
    assert_eq!(r.mode(), Mode::Long);
    assert_ne!(r.efer & (1 << 10), 0, "EFER.LMA");
}

#[test]
fn real_mode_segmentation_and_wraparound() {
    // In real mode, DS:offset is DS * 16 + offset.
    let mut state = CpuState::power_on();
    state.cs.selector = 0;
    state.cs.base = 0;
    state.rip = 0x7c00;
    let mut m = TestMachine::new(&state, 4 << 20);
    let code = asm(16, 0x7c00, |a| {
        a.mov(ax, 0x1234)?;
        a.mov(ds, ax)?;
        a.mov(word_ptr(0x10), 0xbeef)?; // linear 0x12350
        a.mov(ax, 0)?;
        a.mov(es, ax)?;
        a.mov(bx, word_ptr(0x10))?; // read back through DS
        a.hlt()
    });
    m.write(0x7c00, &code);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(&m.read(0x12350, 2), &[0xef, 0xbe]);
    assert_eq!(m.regs().gpr[3] & 0xffff, 0xbeef);
}

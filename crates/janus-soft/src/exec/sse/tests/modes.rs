//! Compatibility mode (8 XMM registers, 32-bit addressing) and operands in MMIO space.

use super::harness::{load, State};
use crate::cpu::{Seg, CS};
use crate::testing::{Access, End, TestMachine, CODE, DATA};
use iced_x86::code_asm::*;

/// Runs 32-bit `code` (then HLT) in compatibility mode from `s`, EBX = DATA.
fn compat(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, s: &State) -> TestMachine {
    let mut a = CodeAssembler::new(32).expect("assembler");
    f(&mut a).expect("encodable");
    a.hlt().expect("hlt");
    let code = a.assemble(CODE).expect("assembled");
    let mut m = TestMachine::long_mode(&code);
    load(&mut m, s);
    // A 32-bit code segment (flat, DPL 0) in the GDT's spare slot 0x28.
    let desc = 0x00cf_9b00_0000_ffffu64;
    m.write_u64(0x8000 + 0x28, desc);
    m.regs().seg[CS] = Seg::from_descriptor(0x28, desc, 0);
    m.vcpu.cpu.sync_mode();
    assert_eq!(m.vcpu.cpu.bitness(), 32);
    assert_eq!(m.run(), End::Halt);
    m
}

#[test]
fn compat_mode_fxsave_stores_eight_xmm_registers() {
    let s = State {
        xmm: std::array::from_fn(|i| 0x1111_1111_1111_1111_1111_1111_1111_1111 * (i as u128 + 1)),
        ..State::default()
    };
    let m = compat(|a| a.fxsave(ptr(ebx)), &s);
    let area = m.read(DATA, 512);
    for i in 0..8 {
        let slot = &area[160 + 16 * i..176 + 16 * i];
        assert_eq!(slot, &s.xmm[i].to_le_bytes(), "xmm{i}");
    }
    // XMM8..15 do not exist outside 64-bit mode: their slots are left alone.
    assert!(
        area[288..512].iter().all(|&b| b == 0),
        "{:x?}",
        &area[288..]
    );
}

#[test]
fn compat_mode_arithmetic_and_moves() {
    let mut s = State::default();
    s.xmm[1] = 0x4000_0000_3f80_0000_4040_0000_4080_0000;
    s.data[..16].copy_from_slice(&0x3f80_0000_3f80_0000_3f80_0000_3f80_0000u128.to_le_bytes());
    let mut m = compat(
        |a| {
            a.addps(xmm1, xmmword_ptr(ebx))?;
            a.movups(xmmword_ptr(ebx + 16), xmm1)?;
            a.movd(eax, xmm1)
        },
        &s,
    );
    let want = 0x4040_0000_4000_0000_4080_0000_40a0_0000u128;
    assert_eq!(m.regs().fpu.xmm[1], want);
    assert_eq!(m.read(DATA + 16, 16), want.to_le_bytes());
    assert_eq!(m.regs().gpr[0], 0x40a0_0000);
}

/// A 16-byte load and store in MMIO space are two 8-byte accesses each, in order, and the
/// instruction completes once the VMM has answered them.
#[test]
fn mmio_operands() {
    const MMIO: u64 = 0x1000_0000;
    let code = {
        let mut a = CodeAssembler::new(64).expect("assembler");
        a.mov(rbx, MMIO).expect("mov");
        a.movups(xmm1, xmmword_ptr(rbx)).expect("load");
        a.movups(xmmword_ptr(rbx + 16), xmm1).expect("store");
        a.maskmovq(mm1, mm2).expect("maskmovq");
        a.hlt().expect("hlt");
        a.assemble(CODE).expect("assembled")
    };
    let mut m = TestMachine::long_mode(&code);
    m.regs().gpr[7] = MMIO + 0x40;
    m.regs().fpu.st[1][..8].copy_from_slice(&0x8877_6655_4433_2211u64.to_le_bytes());
    m.regs().fpu.st[2][..8].copy_from_slice(&0x0080_0000_8000_0080u64.to_le_bytes());
    let mut log = Vec::new();
    let end = m.run_with(20, |a| {
        log.push(a.clone());
        match a {
            Access::MmioRead { addr, .. } => addr * 3,
            _ => 0,
        }
    });
    assert_eq!(end, End::Halt);
    let lo = MMIO * 3;
    let hi = (MMIO + 8) * 3;
    assert_eq!(
        log,
        vec![
            Access::MmioRead {
                addr: MMIO,
                size: 8
            },
            Access::MmioRead {
                addr: MMIO + 8,
                size: 8
            },
            Access::MmioWrite {
                addr: MMIO + 16,
                size: 8,
                value: lo
            },
            Access::MmioWrite {
                addr: MMIO + 24,
                size: 8,
                value: hi
            },
            Access::MmioWrite {
                addr: MMIO + 0x40,
                size: 1,
                value: 0x11
            },
            Access::MmioWrite {
                addr: MMIO + 0x43,
                size: 1,
                value: 0x44
            },
            Access::MmioWrite {
                addr: MMIO + 0x46,
                size: 1,
                value: 0x77
            },
        ]
    );
    assert_eq!(m.regs().fpu.xmm[1], lo as u128 | (hi as u128) << 64);
}

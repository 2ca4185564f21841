//! The FSTENV/FLDENV layouts outside 64-bit mode (real-address and 32-bit protected mode),
//! against the layouts the SDM gives (the host cannot run these modes natively).

use crate::testing::{End, TestMachine, RAM};
use iced_x86::code_asm::{CodeAssembler, IcedError};
use iced_x86::BlockEncoderOptions;
use iced_x86::{Code, Instruction, MemoryOperand, Register};
use janus_engine::cpu::bits;
use janus_engine::{CpuState, Segment};

/// `code` with a 16-bit (`o16`) or 32-bit memory operand at `[disp]` in `bitness` code.
fn at(code: Code, bitness: u32, disp: u64) -> Result<Instruction, IcedError> {
    let size = if bitness == 16 { 2 } else { 4 };
    let mem = MemoryOperand::with_base_displ_size(Register::None, disp as i64, size);
    Instruction::with1(code, mem)
}

/// FNINIT, 1.0 + 2.0 from `[0x10]`, then FNSTENV in both layouts, then an FLDENV of a
/// prepared 14-byte image and FNSTENV again.
fn program(bitness: u32, ip: u64) -> Result<(Vec<u8>, u64), IcedError> {
    let mut a = CodeAssembler::new(bitness)?;
    a.fninit()?;
    a.fld1()?;
    let fadd_at = a.instructions().len();
    a.add_instruction(at(Code::Fadd_m32fp, bitness, 0x10)?)?;
    a.add_instruction(at(Code::Fnstenv_m14byte, bitness, 0x100)?)?;
    a.add_instruction(at(Code::Fnstenv_m28byte, bitness, 0x200)?)?;
    a.add_instruction(at(Code::Fldenv_m14byte, bitness, 0x300)?)?;
    a.add_instruction(at(Code::Fnstenv_m14byte, bitness, 0x400)?)?;
    a.hlt()?;
    let result = a.assemble_options(ip, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let fadd_ip = ip + result.inner.new_instruction_offsets[fadd_at] as u64;
    Ok((result.inner.code_buffer, fadd_ip))
}

fn words(b: &[u8]) -> Vec<u16> {
    b.chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn dwords(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A 14-byte image for FLDENV: CW, SW (TOP = 5, IE), tags (R5 zero, R6 special, rest
/// empty), FIP, then FCS or (real mode) FIP[19:16] and FOP, FDP, FDS or FDP[19:16].
const ENV14: [u16; 7] = [0x027f, 0x2801, 0xf9ff, 0x1234, 0x5678, 0x9abc, 0xd000];

fn machine(state: &CpuState, code: &[u8], code_at: u64, data_at: u64) -> TestMachine {
    let m = TestMachine::new(state, RAM);
    m.write(code_at, code);
    m.write(data_at + 0x10, &2.0f32.to_le_bytes());
    let env: Vec<u8> = ENV14.iter().flat_map(|w| w.to_le_bytes()).collect();
    m.write(data_at + 0x300, &env);
    m
}

#[test]
fn real_mode_layouts() -> Result<(), IcedError> {
    let (cs, ds, ip) = (0x1000u16, 0x2000u16, 0x0100u64);
    let (cs32, ds32) = (cs as u32, ds as u32);
    let (code, fadd_ip) = program(16, ip)?;
    let mut s = CpuState::power_on();
    s.cs = Segment::real_mode(cs, true);
    s.ds = Segment::real_mode(ds, false);
    s.rip = ip;
    let data = (ds as u64) << 4;
    let mut m = machine(&s, &code, ((cs as u64) << 4) + ip, data);
    assert_eq!(m.run(), End::Halt);
    let fip = (cs32 << 4) + fadd_ip as u32;
    let fdp = (ds32 << 4) + 0x10;
    let fop = 0x006u32; // D8 /0, ModRM 06 ([disp16])
    let env = words(&m.read(data + 0x100, 14));
    let tw = 0x3fffu32; // R7 valid, the rest empty
    let expect: Vec<u16> = [
        0x037f,
        0x3800,
        tw,
        fip & 0xffff,
        ((fip >> 16) << 12) | fop,
        fdp & 0xffff,
        (fdp >> 16) << 12,
    ]
    .iter()
    .map(|&w| w as u16)
    .collect();
    assert_eq!(env, expect);
    let env = dwords(&m.read(data + 0x200, 28));
    assert_eq!(
        env,
        vec![
            0xffff_037f,
            0xffff_3800,
            0xffff_0000 | tw,
            0xffff_0000 | (fip & 0xffff),
            ((fip & 0xffff_0000) >> 4) | fop,
            0xffff_0000 | (fdp & 0xffff),
            (fdp & 0xffff_0000) >> 4,
        ]
    );
    // The loaded image comes back with the tags recomputed from the registers: R4 and R5,
    // tagged non-empty by the image, hold 0.0, so both read back as zero (01).
    let env = words(&m.read(data + 0x400, 14));
    assert_eq!(
        env,
        vec![0x027f, 0x2801, 0xf5ff, 0x1234, 0x5678, 0x9abc, 0xd000]
    );
    Ok(())
}

fn flat32(selector: u16, code: bool) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: true,
        dpl: 0,
        db: true,
        s: true,
        l: false,
        g: true,
        avl: false,
        unusable: false,
    }
}

#[test]
fn protected_mode_layouts() -> Result<(), IcedError> {
    let (code_at, data) = (0x10_0000u64, 0u64);
    let (code, fadd_ip) = program(32, code_at)?;
    let mut s = CpuState::power_on();
    s.cs = flat32(0x08, true);
    for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
        *seg = flat32(0x10, false);
    }
    s.cr0 = bits::CR0_PE | bits::CR0_ET | bits::CR0_NE;
    s.rip = code_at;
    let mut m = machine(&s, &code, code_at, data);
    assert_eq!(m.run(), End::Halt);
    let fop = 0x005u32; // D8 /0, ModRM 05 ([disp32])
    let env = words(&m.read(data + 0x100, 14));
    assert_eq!(
        env,
        vec![0x037f, 0x3800, 0x3fff, fadd_ip as u16, 0x08, 0x10, 0x10]
    );
    let env = dwords(&m.read(data + 0x200, 28));
    assert_eq!(
        env,
        vec![
            0xffff_037f,
            0xffff_3800,
            0xffff_3fff,
            fadd_ip as u32,
            0x08 | (fop << 16),
            0x10,
            0xffff_0010,
        ]
    );
    // The 16-bit protected-mode layout has no FOP; the selectors come back as loaded.
    let env = words(&m.read(data + 0x400, 14));
    assert_eq!(
        env,
        vec![0x027f, 0x2801, 0xf5ff, 0x1234, 0x5678, 0x9abc, 0xd000]
    );
    assert_eq!(m.regs().fpu.fop, 0);
    assert_eq!(m.regs().fpu.fip, 0x5678_0000_1234);
    Ok(())
}

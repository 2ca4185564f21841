//! LDMXCSR/STMXCSR, EMMS and FXSAVE/FXRSTOR (legacy and 64-bit formats).

use super::super::{ea, Insn};
use super::operand::{check, mmx_enter, offset_add, read, write};
use crate::core::{vector, Cpu, Fault, Flow, Step, Stop};
use crate::cpu::CR4_OSFXSR;
use crate::fpu::{Fpu, MXCSR_MASK};
use crate::mmu::Acc;
use iced_x86::Mnemonic;
use janus_engine::cpu::bits;

/// The checks of LDMXCSR/STMXCSR, or of their VEX forms.
fn mxcsr_check(cpu: &Cpu, insn: &Insn) -> Result<(), Stop> {
    if insn.i.code().encoding() == iced_x86::EncodingKind::VEX {
        super::xsave::avx_check(cpu)
    } else {
        check(cpu, true, false)
    }
}

pub fn ldmxcsr(cpu: &mut Cpu, insn: &Insn) -> Step {
    mxcsr_check(cpu, insn)?;
    let v = read(cpu, insn, 0)? as u32;
    if v & !MXCSR_MASK != 0 {
        return Err(Fault::gp(0).into());
    }
    cpu.r.fpu.mxcsr = v;
    Ok(Flow::Next)
}

pub fn stmxcsr(cpu: &mut Cpu, insn: &Insn) -> Step {
    mxcsr_check(cpu, insn)?;
    let v = cpu.r.fpu.mxcsr;
    write(cpu, insn, 0, v as u128)?;
    Ok(Flow::Next)
}

/// EMMS: every x87 register empty and TOP = 0.
pub fn emms(cpu: &mut Cpu, _insn: &Insn) -> Step {
    check(cpu, false, true)?;
    mmx_enter(cpu);
    cpu.r.fpu.ftw = 0;
    Ok(Flow::Next)
}

/// Size of the FXSAVE area, in 8-byte chunks, before the XMM registers.
const HEADER_CHUNKS: usize = 20;
/// The chunk holding MXCSR and MXCSR_MASK (bytes 24..32).
const MXCSR_CHUNK: usize = 3;

/// FXSAVE/FXRSTOR checks: CR0.EM or CR0.TS raise #NM (not #UD); the area must be 16-byte
/// aligned. Returns the area's segment and offset.
fn area(cpu: &Cpu, insn: &Insn, acc: Acc) -> Result<(usize, u64), Stop> {
    if cpu.r.cr0 & (bits::CR0_EM | bits::CR0_TS) != 0 {
        return Err(Fault::new(vector::NM).into());
    }
    let (seg, off) = (insn.mem.seg as usize, ea(cpu, insn));
    // The order the host shows: the first byte's segment and canonical checks, then
    // alignment, then the rest of the area (FXSAVE's stores and FXRSTOR's probe).
    if cpu.linear(seg, off, 1, acc)? & 15 != 0 {
        return Err(Fault::gp(0).into());
    }
    Ok((seg, off))
}

/// The XMM registers in the area: 16 in 64-bit mode, else 8; none without CR4.OSFXSR (which
/// then leaves MXCSR alone as well, as Intel processors do).
fn xmm_count(cpu: &Cpu) -> usize {
    if cpu.r.cr4 & CR4_OSFXSR == 0 {
        0
    } else if cpu.long64 {
        16
    } else {
        8
    }
}

/// The 64-bit format (FXSAVE64/FXRSTOR64) stores FIP and FDP whole.
fn wide(insn: &Insn) -> bool {
    matches!(insn.i.mnemonic(), Mnemonic::Fxsave64 | Mnemonic::Fxrstor64)
}

/// The x87 and MXCSR part of the area (bytes 0..160).
///
/// The legacy format has a 32-bit FIP/FDP offset plus a 16-bit FCS/FDS selector. [`Fpu`] keeps
/// no selectors, so bits 32..=47 of `fip`/`fdp` stand for FCS/FDS in that format (an x87
/// engine outside 64-bit mode keeps the selector there). That makes both formats round-trip.
pub fn header(fpu: &Fpu, wide: bool) -> [u8; 160] {
    let mut h = [0u8; 160];
    h[0..2].copy_from_slice(&fpu.fcw.to_le_bytes());
    h[2..4].copy_from_slice(&fpu.fsw.to_le_bytes());
    h[4] = fpu.ftw;
    h[6..8].copy_from_slice(&(fpu.fop & 0x7ff).to_le_bytes());
    if wide {
        h[8..16].copy_from_slice(&fpu.fip.to_le_bytes());
        h[16..24].copy_from_slice(&fpu.fdp.to_le_bytes());
    } else {
        h[8..14].copy_from_slice(&fpu.fip.to_le_bytes()[..6]);
        h[16..22].copy_from_slice(&fpu.fdp.to_le_bytes()[..6]);
    }
    h[24..28].copy_from_slice(&fpu.mxcsr.to_le_bytes());
    h[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    // ST0..ST7 in stack order: ST(i) is physical register (TOP + i) mod 8.
    for i in 0..8 {
        let phys = &fpu.st[(fpu.top() + i) & 7];
        h[32 + 16 * i..42 + 16 * i].copy_from_slice(&phys[..10]);
    }
    h
}

/// Loads the x87 and MXCSR part of the area (see [`header`]); `mxcsr` says whether MXCSR is
/// loaded too.
pub fn load_header(fpu: &mut Fpu, h: &[u8; 160], wide: bool, mxcsr: bool) {
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or_default());
    // FCW's reserved bits read back fixed and ES/B follow the flags and masks, as after
    // FLDCW.
    fpu.fsw = u16_at(2);
    crate::exec::x87::control::load_fcw(fpu, u16_at(0));
    fpu.ftw = h[4];
    fpu.fop = u16_at(6) & 0x7ff;
    if wide {
        fpu.fip = u64_at(8);
        fpu.fdp = u64_at(16);
    } else {
        fpu.fip = u64_at(8) & 0xffff_ffff_ffff;
        fpu.fdp = u64_at(16) & 0xffff_ffff_ffff;
    }
    if mxcsr {
        fpu.mxcsr = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    }
    let top = fpu.top();
    for i in 0..8 {
        let mut r = [0u8; 16];
        r[..10].copy_from_slice(&h[32 + 16 * i..42 + 16 * i]);
        fpu.st[(top + i) & 7] = r;
    }
}

/// FXSAVE, FXSAVE64. Bytes the format reserves (and the XMM slots not saved in this mode) are
/// left as they were, as hardware does.
pub fn fxsave(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (seg, off) = area(cpu, insn, Acc::Write)?;
    cpu.probe_write(seg, off, 512)?;
    let h = header(&cpu.r.fpu, wide(insn));
    let n = xmm_count(cpu);
    let mut chunks: Vec<(usize, u64)> = (0..HEADER_CHUNKS)
        .filter(|&c| n > 0 || c != MXCSR_CHUNK)
        .map(|c| {
            (
                c,
                u64::from_le_bytes(h[8 * c..8 * c + 8].try_into().unwrap_or_default()),
            )
        })
        .collect();
    for (r, x) in cpu.r.fpu.xmm[..n].iter().enumerate() {
        chunks.push((HEADER_CHUNKS + 2 * r, *x as u64));
        chunks.push((HEADER_CHUNKS + 2 * r + 1, (*x >> 64) as u64));
    }
    for (c, v) in chunks {
        cpu.write::<u64>(seg, offset_add(insn, off, 8 * c as u64), v)?;
    }
    Ok(Flow::Next)
}

/// FXRSTOR, FXRSTOR64: the whole area is checked, then everything is read and checked
/// (reserved MXCSR bits raise #GP(0)) before any state changes.
pub fn fxrstor(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (seg, off) = area(cpu, insn, Acc::Read)?;
    // Hardware faults on any inaccessible byte of the 512-byte area, even the unused tail,
    // and before it looks at MXCSR.
    cpu.probe_read(seg, off, 512)?;
    let n = xmm_count(cpu);
    let chunk = |cpu: &mut Cpu, c: usize| cpu.read::<u64>(seg, offset_add(insn, off, 8 * c as u64));
    let mut h = [0u8; 160];
    for c in 0..HEADER_CHUNKS {
        h[8 * c..8 * c + 8].copy_from_slice(&chunk(cpu, c)?.to_le_bytes());
    }
    let mut xmm = [0u128; 16];
    for (r, x) in xmm[..n].iter_mut().enumerate() {
        let lo = chunk(cpu, HEADER_CHUNKS + 2 * r)?;
        let hi = chunk(cpu, HEADER_CHUNKS + 2 * r + 1)?;
        *x = lo as u128 | (hi as u128) << 64;
    }
    let mxcsr = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if n > 0 && mxcsr & !MXCSR_MASK != 0 {
        return Err(Fault::gp(0).into());
    }
    load_header(&mut cpu.r.fpu, &h, wide(insn), n > 0);
    cpu.r.fpu.xmm[..n].copy_from_slice(&xmm[..n]);
    Ok(Flow::Next)
}

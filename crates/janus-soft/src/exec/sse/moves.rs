//! Data movement between XMM, MMX and general-purpose registers and memory, and the masked
//! byte stores MASKMOVQ/MASKMOVDQU.

use super::super::{reg_get, Insn};
use super::operand::{low, mmx_enter, offset_add, prologue, read, write};
use crate::core::{Cpu, Flow, Step};
use iced_x86::Mnemonic;

/// How a move combines source and destination; picked once per decoded instruction.
pub mod kind {
    /// Destination = the moved bytes of the source, zero-extended (register destinations) or
    /// stored (memory destinations).
    pub const COPY: u8 = 0;
    /// The low bytes of the destination register are replaced (MOVSS/MOVSD register forms,
    /// MOVLPS/MOVLPD loads).
    pub const MERGE: u8 = 1;
    /// The destination's high quadword = the source's low one (MOVHPS/MOVHPD loads, MOVLHPS).
    pub const HIGH_LOAD: u8 = 2;
    /// The source's high quadword (MOVHPS/MOVHPD stores).
    pub const HIGH_STORE: u8 = 3;
    /// The destination's low quadword = the source's high one (MOVHLPS).
    pub const LOW_FROM_HIGH: u8 = 4;
}

/// Bytes a move transfers.
fn width(insn: &Insn) -> u32 {
    use Mnemonic::*;
    match insn.i.mnemonic() {
        Movd | Movss => 4,
        Movq | Movsd | Movlps | Movlpd | Movhps | Movhpd | Movq2dq | Movdq2q | Movntq => 8,
        _ => 16,
    }
}

/// A move of kind `K` from operand 1 to operand 0.
pub fn mov<const K: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    use kind::*;
    let mmx = prologue(cpu, insn, false)?;
    let w = width(insn);
    let src = read(cpu, insn, 1)?;
    let v = match K {
        COPY => low(src, w),
        HIGH_STORE => src >> 64,
        _ => {
            let dst = read(cpu, insn, 0)?;
            match K {
                MERGE => (dst & !low(u128::MAX, w)) | low(src, w),
                HIGH_LOAD => low(dst, 8) | src << 64,
                _ => (dst >> 64) << 64 | src >> 64,
            }
        }
    };
    write(cpu, insn, 0, v)?;
    if mmx {
        mmx_enter(cpu);
    }
    Ok(Flow::Next)
}

/// MASKMOVQ and MASKMOVDQU: stores the bytes of operand 1 whose byte in operand 2 has its top
/// bit set, at seg:rDI (DS unless overridden). Hardware need not check bytes it does not
/// write; this probes the whole range once any byte is selected, so a fault leaves memory
/// untouched.
pub fn maskmov(cpu: &mut Cpu, insn: &Insn) -> Step {
    let mmx = if insn.i.code().encoding() == iced_x86::EncodingKind::VEX {
        // VMASKMOVDQU: the AVX checks.
        super::xsave::avx_check(cpu)?;
        false
    } else {
        prologue(cpu, insn, false)?
    };
    let n = if mmx { 8 } else { 16 };
    let data = read(cpu, insn, 1)?;
    let mask = read(cpu, insn, 2)?;
    let seg = insn.mem.seg as usize;
    let base = reg_get(cpu, 7, insn.asize);
    let selected = (0..n).filter(|i| (mask >> (8 * i + 7)) & 1 != 0);
    if selected.clone().next().is_some() {
        cpu.probe_write(seg, base, n)?;
        for i in selected {
            let off = offset_add(insn, base, i as u64);
            cpu.write::<u8>(seg, off, (data >> (8 * i)) as u8)?;
        }
    }
    if mmx {
        mmx_enter(cpu);
    }
    Ok(Flow::Next)
}

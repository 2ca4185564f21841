//! The checks every SSE/MMX instruction makes first, and operand access: XMM, MMX and
//! general-purpose registers, memory (with the 16-byte alignment rule) and immediates.

use super::super::{ea, reg_get, reg_put, Insn};
use crate::core::{vector, Cpu, Fault, Stop};
use crate::cpu::CR4_OSFXSR;
use crate::decode::gpr;
use crate::mmu::Acc;
use iced_x86::{Mnemonic, OpKind, Register};
use janus_engine::cpu::bits;

/// FSW exception summary bit: an unmasked x87 exception is pending.
const FSW_ES: u16 = 1 << 7;
/// FSW TOP field.
const FSW_TOP: u16 = 7 << 11;

/// Which register files an instruction names.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uses {
    pub xmm: bool,
    pub mm: bool,
}

/// The register files named by `insn`'s operands.
pub fn uses(insn: &Insn) -> Uses {
    let mut u = Uses::default();
    for k in 0..insn.i.op_count() {
        if insn.i.op_kind(k) == OpKind::Register {
            let r = insn.i.op_register(k);
            u.xmm |= r.is_xmm();
            u.mm |= r.is_mm();
        }
    }
    u
}

/// The device-not-available and feature checks, in hardware's order: CR0.EM (#UD), CR4.OSFXSR
/// for instructions that touch SSE state (#UD), CR0.TS (#NM), then a pending x87 exception for
/// those that touch MMX registers (#MF).
pub fn check(cpu: &Cpu, sse: bool, mmx: bool) -> Result<(), Stop> {
    let cr0 = cpu.r.cr0;
    if cr0 & bits::CR0_EM != 0 || (sse && cpu.r.cr4 & CR4_OSFXSR == 0) {
        return Err(Fault::ud().into());
    }
    if cr0 & bits::CR0_TS != 0 {
        return Err(Fault::new(vector::NM).into());
    }
    // With CR0.NE clear a pending x87 error is reported through FERR#/IRQ 13, which this
    // machine does not wire; the instruction then just runs.
    if mmx && cpu.r.fpu.fsw & FSW_ES != 0 && cr0 & bits::CR0_NE != 0 {
        return Err(Fault::new(vector::MF).into());
    }
    Ok(())
}

/// Checks an instruction by the registers it names (`sse` forces the SSE checks for forms with
/// no XMM register, such as CVTPS2PI mm, m64). Returns whether it uses MMX registers.
pub fn prologue(cpu: &Cpu, insn: &Insn, sse: bool) -> Result<bool, Stop> {
    let u = uses(insn);
    check(cpu, sse || u.xmm, u.mm)?;
    Ok(u.mm)
}

/// What every MMX instruction does to the x87 state: TOP = 0 and every register valid.
/// Called once the instruction can no longer fault.
pub fn mmx_enter(cpu: &mut Cpu) {
    cpu.r.fpu.fsw &= !FSW_TOP;
    cpu.r.fpu.ftw = 0xff;
}

/// MMn: the 64-bit mantissa of physical x87 register n.
pub fn mm_get(cpu: &Cpu, n: usize) -> u64 {
    let s = &cpu.r.fpu.st[n & 7];
    u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
}

/// Writes MMn; the register's sign and exponent become all ones, as on hardware.
pub fn mm_put(cpu: &mut Cpu, n: usize, v: u64) {
    let s = &mut cpu.r.fpu.st[n & 7];
    s[..8].copy_from_slice(&v.to_le_bytes());
    s[8] = 0xff;
    s[9] = 0xff;
}

/// Reads register `r` (XMM, MMX or general-purpose), zero-extended.
pub fn reg_read(cpu: &Cpu, r: Register) -> u128 {
    if r.is_xmm() {
        cpu.r.fpu.xmm[r.number() & 15]
    } else if r.is_mm() {
        mm_get(cpu, r.number()) as u128
    } else if let Some((n, size)) = gpr(r) {
        reg_get(cpu, n, size) as u128
    } else {
        0
    }
}

/// Writes register `r`: XMM registers take all 128 bits, MMX registers the low 64, and
/// general-purpose registers their size (a 32-bit write zero-extends, as always).
pub fn reg_write(cpu: &mut Cpu, r: Register, v: u128) {
    if r.is_xmm() {
        cpu.r.fpu.xmm[r.number() & 15] = v;
    } else if r.is_mm() {
        mm_put(cpu, r.number(), v as u64);
    } else if let Some((n, size)) = gpr(r) {
        reg_put(cpu, n, size, v as u64);
    }
}

/// Size in bytes of the instruction's memory operand.
pub fn mem_size(insn: &Insn) -> usize {
    insn.i.memory_size().size()
}

/// Legacy SSE 16-byte memory operands must be 16-byte aligned, except for the explicitly
/// unaligned moves and loads and SSE4.2's string compares.
pub fn must_align(insn: &Insn, size: usize) -> bool {
    use Mnemonic::*;
    size == 16
        && !matches!(
            insn.i.mnemonic(),
            Movups
                | Movupd
                | Movdqu
                | Lddqu
                | Pcmpestri
                | Pcmpestri64
                | Pcmpestrm
                | Pcmpestrm64
                | Pcmpistri
                | Pcmpistrm
        )
}

/// #GP(0) unless the linear address of `seg:off` is aligned to `size` (16 or 32; segment
/// checks first, except in 64-bit mode).
pub fn check_align(cpu: &Cpu, seg: usize, off: u64, size: u32, acc: Acc) -> Result<(), Stop> {
    let mask = size as u64 - 1;
    if cpu.long64 {
        // In 64-bit mode a misaligned operand raises #GP(0) even when its address is also
        // non-canonical on the stack (#SS): the order the differential suite measures on the
        // host, which the SDM leaves open.
        let base = if seg >= crate::cpu::FS {
            cpu.r.seg[seg].base
        } else {
            0
        };
        if base.wrapping_add(off) & mask != 0 {
            return Err(Fault::gp(0).into());
        }
    }
    let lin = cpu.linear(seg, off, size, acc)?;
    if lin & mask != 0 {
        return Err(Fault::gp(0).into());
    }
    Ok(())
}

/// `off + n` wrapped to the instruction's address size.
pub fn offset_add(insn: &Insn, off: u64, n: u64) -> u64 {
    let a = off.wrapping_add(n);
    match insn.asize {
        8 => a,
        4 => a & 0xffff_ffff,
        _ => a & 0xffff,
    }
}

/// Reads `size` bytes (1, 2, 4, 8 or 16) of memory at `seg:off`.
pub fn read_bytes(
    cpu: &mut Cpu,
    insn: &Insn,
    seg: usize,
    off: u64,
    size: usize,
) -> Result<u128, Stop> {
    Ok(match size {
        1 => cpu.read::<u8>(seg, off)? as u128,
        2 => cpu.read::<u16>(seg, off)? as u128,
        4 => cpu.read::<u32>(seg, off)? as u128,
        8 => cpu.read::<u64>(seg, off)? as u128,
        _ => {
            // The whole operand passes the segment and canonical checks before either half
            // is read.
            cpu.linear(seg, off, 16, Acc::Read)?;
            let lo = cpu.read::<u64>(seg, off)?;
            let hi = cpu.read::<u64>(seg, offset_add(insn, off, 8))?;
            lo as u128 | (hi as u128) << 64
        }
    })
}

/// Writes `size` bytes (1, 2, 4, 8 or 16) of memory at `seg:off`. A 16-byte store is probed
/// first so that it either happens whole or faults without writing.
pub fn write_bytes(
    cpu: &mut Cpu,
    insn: &Insn,
    seg: usize,
    off: u64,
    size: usize,
    v: u128,
) -> Result<(), Stop> {
    match size {
        1 => cpu.write::<u8>(seg, off, v as u8),
        2 => cpu.write::<u16>(seg, off, v as u16),
        4 => cpu.write::<u32>(seg, off, v as u32),
        8 => cpu.write::<u64>(seg, off, v as u64),
        _ => {
            cpu.probe_write(seg, off, 16)?;
            cpu.write::<u64>(seg, off, v as u64)?;
            cpu.write::<u64>(seg, offset_add(insn, off, 8), (v >> 64) as u64)
        }
    }
}

/// Reads operand `k`: a register, the memory operand (aligned where required) or an 8-bit
/// immediate.
pub fn read(cpu: &mut Cpu, insn: &Insn, k: u32) -> Result<u128, Stop> {
    match insn.i.op_kind(k) {
        OpKind::Register => Ok(reg_read(cpu, insn.i.op_register(k))),
        OpKind::Memory => {
            let (seg, off, size) = (insn.mem.seg as usize, ea(cpu, insn), mem_size(insn));
            if must_align(insn, size) {
                check_align(cpu, seg, off, 16, Acc::Read)?;
            }
            read_bytes(cpu, insn, seg, off, size)
        }
        OpKind::Immediate8 => Ok(insn.i.immediate8() as u128),
        _ => Ok(0),
    }
}

/// Writes operand `k` (a register or the memory operand, aligned where required).
pub fn write(cpu: &mut Cpu, insn: &Insn, k: u32, v: u128) -> Result<(), Stop> {
    match insn.i.op_kind(k) {
        OpKind::Register => {
            reg_write(cpu, insn.i.op_register(k), v);
            Ok(())
        }
        OpKind::Memory => {
            let (seg, off, size) = (insn.mem.seg as usize, ea(cpu, insn), mem_size(insn));
            if must_align(insn, size) {
                check_align(cpu, seg, off, 16, Acc::Write)?;
            }
            write_bytes(cpu, insn, seg, off, size, v)
        }
        _ => Ok(()),
    }
}

/// The instruction's 8-bit immediate (0 if it has none).
pub fn imm8(insn: &Insn) -> u8 {
    insn.i.immediate8()
}

/// The low `bytes` bytes of `v`.
pub fn low(v: u128, bytes: u32) -> u128 {
    if bytes >= 16 {
        v
    } else {
        v & ((1u128 << (bytes * 8)) - 1)
    }
}

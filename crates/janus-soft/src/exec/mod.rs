//! Instruction semantics. `decode` turns an iced-x86 instruction into an [`Insn`]: a handler
//! chosen once per decoded instruction plus its operands in a form that is cheap to use; the
//! handlers in the submodules execute it.

pub mod alu;
pub mod control;
pub mod data;
pub mod sse;
pub mod string;
pub mod system;
pub mod x87;

use crate::core::{Cpu, Fault, Step, Stop};
use crate::cpu::{CS, SS};
use crate::flags::mask;
use crate::mmu::Val;

pub type Handler = fn(&mut Cpu, &Insn) -> Step;

/// "No register" in [`MemRef`].
pub const NONE: u8 = 0xff;
/// RIP as the base register of a memory operand.
pub const RIP: u8 = 0x10;

/// A memory operand: `seg:[base + index << scale + disp]`, wrapped to the address size.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemRef {
    pub base: u8,
    pub index: u8,
    pub scale: u8,
    pub seg: u8,
    pub disp: u64,
}

/// One operand of a decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opnd {
    None,
    /// General-purpose register: 0..=15, or 16..=19 for AH, CH, DH, BH.
    Reg(u8),
    /// The instruction's memory operand ([`Insn::mem`]).
    Mem,
    Imm(u64),
}

/// A decoded instruction, ready to execute.
#[derive(Clone)]
pub struct Insn {
    pub exec: Handler,
    pub len: u8,
    /// Operand size in bytes (1, 2, 4, 8) where it applies.
    pub osize: u8,
    /// Source operand size for MOVZX/MOVSX and friends.
    pub ssize: u8,
    /// Address size in bytes (2, 4, 8).
    pub asize: u8,
    /// Condition code (Jcc, SETcc, CMOVcc, LOOPcc).
    pub cc: u8,
    /// REP/REPE (1) or REPNE (2) prefix.
    pub rep: u8,
    pub op: [Opnd; 3],
    pub mem: MemRef,
    /// Branch displacement relative to the next instruction.
    pub rel: i64,
    /// A datum the handler chose at decode time (the host stub's plan and registers for the
    /// instructions `sse::stub` runs).
    pub aux: u64,
    /// Janus implements this instruction (false: it raises #UD, counted by name unless the CPU
    /// model leaves its extension out).
    pub implemented: bool,
    /// The iced-x86 instruction, for handlers that need more than the above.
    pub i: iced_x86::Instruction,
}

/// Reads general-purpose register `r` at `size` bytes.
#[inline(always)]
pub fn reg_get(cpu: &Cpu, r: u8, size: u8) -> u64 {
    if r >= 16 {
        (cpu.r.gpr[(r - 16) as usize] >> 8) & 0xff
    } else {
        cpu.r.gpr[r as usize] & mask(size)
    }
}

/// Writes general-purpose register `r` at `size` bytes: 8- and 16-bit writes merge, 32-bit
/// writes zero the upper half.
#[inline(always)]
pub fn reg_put(cpu: &mut Cpu, r: u8, size: u8, v: u64) {
    if r >= 16 {
        let g = &mut cpu.r.gpr[(r - 16) as usize];
        *g = (*g & !0xff00) | ((v & 0xff) << 8);
        return;
    }
    let g = &mut cpu.r.gpr[r as usize];
    *g = match size {
        1 => (*g & !0xff) | (v & 0xff),
        2 => (*g & !0xffff) | (v & 0xffff),
        4 => v & 0xffff_ffff,
        _ => v,
    };
}

/// Effective address (offset in the segment) of the memory operand.
#[inline(always)]
pub fn ea(cpu: &Cpu, insn: &Insn) -> u64 {
    let m = &insn.mem;
    let mut a = m.disp;
    if m.base != NONE {
        a = a.wrapping_add(if m.base == RIP {
            cpu.next_rip
        } else {
            cpu.r.gpr[m.base as usize]
        });
    }
    if m.index != NONE {
        a = a.wrapping_add(cpu.r.gpr[m.index as usize] << m.scale);
    }
    match insn.asize {
        8 => a,
        4 => a & 0xffff_ffff,
        _ => a & 0xffff,
    }
}

/// Reads `size` bytes of memory at `seg:off`.
#[inline(always)]
pub fn mem_get(cpu: &mut Cpu, seg: usize, off: u64, size: u8) -> Result<u64, Stop> {
    Ok(match size {
        1 => cpu.read::<u8>(seg, off)? as u64,
        2 => cpu.read::<u16>(seg, off)? as u64,
        4 => cpu.read::<u32>(seg, off)? as u64,
        _ => cpu.read::<u64>(seg, off)?,
    })
}

/// Writes `size` bytes of memory at `seg:off`.
#[inline(always)]
pub fn mem_put(cpu: &mut Cpu, seg: usize, off: u64, size: u8, v: u64) -> Result<(), Stop> {
    match size {
        1 => cpu.write::<u8>(seg, off, v as u8),
        2 => cpu.write::<u16>(seg, off, v as u16),
        4 => cpu.write::<u32>(seg, off, v as u32),
        _ => cpu.write::<u64>(seg, off, v),
    }
}

/// Reads operand `k` at `size` bytes.
#[inline(always)]
pub fn get(cpu: &mut Cpu, insn: &Insn, k: usize, size: u8) -> Result<u64, Stop> {
    match insn.op[k] {
        Opnd::Reg(r) => Ok(reg_get(cpu, r, size)),
        Opnd::Imm(v) => Ok(v & mask(size)),
        Opnd::Mem => mem_get(cpu, insn.mem.seg as usize, ea(cpu, insn), size),
        Opnd::None => Ok(0),
    }
}

/// Writes operand `k` at `size` bytes.
#[inline(always)]
pub fn put(cpu: &mut Cpu, insn: &Insn, k: usize, size: u8, v: u64) -> Result<(), Stop> {
    match insn.op[k] {
        Opnd::Reg(r) => {
            reg_put(cpu, r, size, v);
            Ok(())
        }
        Opnd::Mem => mem_put(cpu, insn.mem.seg as usize, ea(cpu, insn), size, v),
        _ => Ok(()),
    }
}

/// Reads a value of type `T` from the memory operand.
#[inline(always)]
pub fn load<T: Val>(cpu: &mut Cpu, insn: &Insn) -> Result<T, Stop> {
    let off = ea(cpu, insn);
    cpu.read::<T>(insn.mem.seg as usize, off)
}

/// Writes a value of type `T` to the memory operand.
#[inline(always)]
pub fn store<T: Val>(cpu: &mut Cpu, insn: &Insn, v: T) -> Result<(), Stop> {
    let off = ea(cpu, insn);
    cpu.write::<T>(insn.mem.seg as usize, off, v)
}

// ------------------------------------------------------------------ stack

/// Stack pointer width in bytes: 8 in 64-bit mode, else by SS.B.
#[inline(always)]
pub fn stack_width(cpu: &Cpu) -> u8 {
    if cpu.long64 {
        8
    } else if cpu.r.seg[SS].big() {
        4
    } else {
        2
    }
}

#[inline(always)]
fn sp_wrap(cpu: &Cpu, v: u64) -> u64 {
    match stack_width(cpu) {
        8 => v,
        4 => v & 0xffff_ffff,
        _ => v & 0xffff,
    }
}

/// Sets RSP (or ESP or SP, merging) to `v`.
#[inline(always)]
pub fn set_sp(cpu: &mut Cpu, v: u64) {
    let w = stack_width(cpu);
    reg_put(cpu, 4, w, v);
}

/// Pushes `size` bytes. RSP changes only if the store succeeds.
#[inline(always)]
pub fn push(cpu: &mut Cpu, size: u8, v: u64) -> Result<(), Stop> {
    let sp = sp_wrap(cpu, cpu.r.gpr[4].wrapping_sub(size as u64));
    mem_put(cpu, SS, sp, size, v)?;
    set_sp(cpu, sp);
    Ok(())
}

/// Reads `size` bytes at the top of the stack plus `offset`, without popping.
#[inline(always)]
pub fn peek(cpu: &mut Cpu, size: u8, offset: u64) -> Result<u64, Stop> {
    let sp = sp_wrap(cpu, cpu.r.gpr[4].wrapping_add(offset));
    mem_get(cpu, SS, sp, size)
}

/// Pops `size` bytes.
#[inline(always)]
pub fn pop(cpu: &mut Cpu, size: u8) -> Result<u64, Stop> {
    let v = peek(cpu, size, 0)?;
    let sp = sp_wrap(cpu, cpu.r.gpr[4].wrapping_add(size as u64));
    set_sp(cpu, sp);
    Ok(v)
}

/// Operand size of stack operations for instructions without an explicit size (near CALL,
/// RET): 8 in 64-bit mode unless 66h, else the operand size.
#[inline(always)]
pub fn branch_width(cpu: &Cpu, insn: &Insn) -> u8 {
    if cpu.long64 {
        if insn.osize == 2 {
            2
        } else {
            8
        }
    } else {
        insn.osize
    }
}

/// Moves RIP to `target`, truncated to the operand size as near branches do, and checks it
/// against the code segment limit outside 64-bit mode.
#[inline(always)]
pub fn jump_to(cpu: &mut Cpu, target: u64, width: u8) -> Result<(), Stop> {
    let t = match width {
        8 => target,
        4 => target & 0xffff_ffff,
        _ => target & 0xffff,
    };
    if cpu.long64 {
        if ((t as i64) << 16) >> 16 != t as i64 {
            return Err(Fault::gp(0).into());
        }
    } else if t > cpu.r.seg[CS].limit as u64 {
        return Err(Fault::gp(0).into());
    }
    cpu.r.rip = t;
    Ok(())
}

/// Raises #UD, counting the instruction by name (it decoded, but Janus does not implement
/// it).
pub fn unimplemented(cpu: &mut Cpu, insn: &Insn) -> Step {
    let name = format!("{:?}", insn.i.mnemonic()).to_lowercase();
    let count = cpu.stats.unimplemented.entry(name.clone()).or_insert(0);
    *count += 1;
    if *count == 1 {
        tracing::warn!(
            "soft engine: `{name}` is not implemented; raising #UD at rip={:#x}",
            cpu.r.rip
        );
    }
    Err(Fault::ud().into())
}

/// Handlers for the instruction groups outside the integer core (x87, MMX, SSE, SSE2).
pub fn extended(insn: &mut Insn) -> Option<Handler> {
    x87::handler(insn).or_else(|| sse::handler(insn))
}

/// Raises #UD (an invalid or unsupported encoding).
pub fn invalid(_: &mut Cpu, _: &Insn) -> Step {
    Err(Fault::ud().into())
}

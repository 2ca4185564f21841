//! Where translated code finds the guest state: byte offsets from the CPU pointer (host R15)
//! and inside a TLB entry, taken from the Rust structs themselves so they cannot drift.

use crate::core::Cpu;
use crate::cpu::{Msrs, Regs, Seg};
use crate::flags::Flags;
use crate::fpu::Fpu;
use crate::mmu::{Tlb, TlbEntry};
use std::mem::{offset_of, size_of};

fn i32_of(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// General-purpose register `n` (0..=15).
pub fn gpr(n: u8) -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, gpr) + 8 * (n as usize & 15))
}

/// RIP.
pub fn rip() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, rip))
}

/// `Flags::res`, which holds PUSHFQ's image when `Flags::op` is `Op::Native`.
pub fn flags_res() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, flags) + offset_of!(Flags, res))
}

/// `Flags::op` (one byte).
pub fn flags_op() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, flags) + offset_of!(Flags, op))
}

/// Base of segment register `s` (FS = 4, GS = 5).
pub fn seg_base(s: usize) -> i32 {
    i32_of(
        offset_of!(Cpu, r) + offset_of!(Regs, seg) + s * size_of::<Seg>() + offset_of!(Seg, base),
    )
}

/// Guest XMM register `n` (0..=15).
pub fn xmm(n: u8) -> i32 {
    i32_of(
        offset_of!(Cpu, r) + offset_of!(Regs, fpu) + offset_of!(Fpu, xmm) + 16 * (n as usize & 15),
    )
}

/// Bits 128..256 of guest YMM register `n` (0..=15).
pub fn ymm_hi(n: u8) -> i32 {
    i32_of(
        offset_of!(Cpu, r)
            + offset_of!(Regs, fpu)
            + offset_of!(Fpu, ymm_hi)
            + 16 * (n as usize & 15),
    )
}

/// The x87 last-instruction opcode and pointers (`Fpu::fop`, `fip`, `fdp`).
pub fn fpu_fop() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, fpu) + offset_of!(Fpu, fop))
}

pub fn fpu_fip() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, fpu) + offset_of!(Fpu, fip))
}

pub fn fpu_fdp() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, fpu) + offset_of!(Fpu, fdp))
}

/// Selector of segment register `s`.
pub fn seg_selector(s: usize) -> i32 {
    i32_of(
        offset_of!(Cpu, r)
            + offset_of!(Regs, seg)
            + s * size_of::<Seg>()
            + offset_of!(Seg, selector),
    )
}

/// `Cpu::jit_x87_img` and `Cpu::jit_x87_in_image`.
pub fn x87_img() -> i32 {
    i32_of(offset_of!(Cpu, jit_x87_img))
}

pub fn x87_in_image() -> i32 {
    i32_of(offset_of!(Cpu, jit_x87_in_image))
}

/// XCR0.
pub fn xcr0() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, xcr0))
}

/// The guest's MXCSR (32 bits).
pub fn mxcsr() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, fpu) + offset_of!(Fpu, mxcsr))
}

/// CR0 and CR4.
pub fn cr0() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, cr0))
}

pub fn cr4() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, cr4))
}

/// `Cpu::jit_host_mxcsr`: the MXCSR host code runs with.
pub fn host_mxcsr() -> i32 {
    i32_of(offset_of!(Cpu, jit_host_mxcsr))
}

/// `Cpu::jit_slots[n]`.
pub fn slot(n: usize) -> i32 {
    i32_of(offset_of!(Cpu, jit_slots) + 8 * (n & 3))
}

/// The attribute bits of segment register `s` (16 bits; DPL in bits 5-6).
pub fn seg_attr(s: usize) -> i32 {
    i32_of(
        offset_of!(Cpu, r) + offset_of!(Regs, seg) + s * size_of::<Seg>() + offset_of!(Seg, attr),
    )
}

/// `Flags::bits`, where IF and the other system flags always are.
pub fn flags_bits() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, flags) + offset_of!(Flags, bits))
}

/// IA32_KERNEL_GS_BASE.
pub fn kernel_gs_base() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, msr) + offset_of!(Msrs, kernel_gs_base))
}

/// `Cpu::int_shadow` (one byte).
pub fn int_shadow() -> i32 {
    i32_of(offset_of!(Cpu, int_shadow))
}

/// `Cpu::jit_tsc_offset`.
pub fn tsc_offset() -> i32 {
    i32_of(offset_of!(Cpu, jit_tsc_offset))
}

/// IA32_TSC_AUX.
pub fn tsc_aux() -> i32 {
    i32_of(offset_of!(Cpu, r) + offset_of!(Regs, msr) + offset_of!(Msrs, tsc_aux))
}

/// `Cpu::chain_budget`.
pub fn chain_budget() -> i32 {
    i32_of(offset_of!(Cpu, chain_budget))
}

/// `Cpu::jit_exit`.
pub fn jit_exit() -> i32 {
    i32_of(offset_of!(Cpu, jit_exit))
}

/// `Cpu::jit_table`, the address of the translator's jump table.
pub fn jit_table() -> i32 {
    i32_of(offset_of!(Cpu, jit_table))
}

/// `Cpu::exec_key` (32 bits).
pub fn exec_key() -> i32 {
    i32_of(offset_of!(Cpu, exec_key))
}

/// `Cpu::jit_seg_limit[s][write]`.
pub fn seg_limit(s: usize, write: bool) -> i32 {
    i32_of(offset_of!(Cpu, jit_seg_limit) + 16 * s + 8 * write as usize)
}

/// The TLB's generation counter: `global` for the one only global flushes bump.
pub fn tlb_generation(global: bool) -> i32 {
    let g = if global {
        offset_of!(Tlb, global_generation)
    } else {
        offset_of!(Tlb, generation)
    };
    i32_of(offset_of!(Cpu, tlb) + g)
}

pub fn tlb_tag_r() -> i32 {
    i32_of(offset_of!(TlbEntry, tag_r))
}

pub fn tlb_tag_w() -> i32 {
    i32_of(offset_of!(TlbEntry, tag_w))
}

pub fn tlb_addend() -> i32 {
    i32_of(offset_of!(TlbEntry, addend))
}

/// log2 of the TLB entry size (the probe indexes by shifting).
pub const TLB_ENTRY_SHIFT: u8 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_fit_and_entry_is_64_bytes() {
        assert_eq!(size_of::<TlbEntry>(), 1 << TLB_ENTRY_SHIFT);
        for v in [
            gpr(15),
            rip(),
            flags_res(),
            flags_op(),
            seg_base(5),
            xmm(15),
            mxcsr(),
            host_mxcsr(),
        ] {
            assert!((0..i32::MAX).contains(&v));
        }
        assert_eq!(gpr(1) - gpr(0), 8);
    }
}

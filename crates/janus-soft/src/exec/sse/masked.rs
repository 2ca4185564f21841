//! AVX2's gathers and AVX/AVX2's masked moves (`--cpu v3`): instructions whose memory
//! accesses depend on register contents, so they cannot run on the host with one buffer.
//! They run element by element here, touching (and faulting on) only the elements the mask
//! selects, as hardware does.

use super::super::{ea, Handler, Insn};
use super::operand::offset_add;
use super::xsave::avx_check;
use crate::core::{Cpu, Fault, Flow, Step};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// Whether `i` is one of this module's.
pub fn is_masked(i: &Instruction) -> bool {
    gather(i).is_some() || masked_move(i).is_some()
}

/// A gather: (index element bytes, data element bytes).
fn gather(i: &Instruction) -> Option<(u32, u32)> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Vpgatherdd | Vgatherdps => (4, 4),
        Vpgatherdq | Vgatherdpd => (4, 8),
        Vpgatherqd | Vgatherqps => (8, 4),
        Vpgatherqq | Vgatherqpd => (8, 8),
        _ => return None,
    })
}

/// A masked move: element bytes.
fn masked_move(i: &Instruction) -> Option<u32> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Vmaskmovps | Vpmaskmovd => 4,
        Vmaskmovpd | Vpmaskmovq => 8,
        _ => return None,
    })
}

pub fn handler(insn: &mut Insn) -> Option<Handler> {
    if gather(&insn.i).is_some() {
        Some(run_gather)
    } else if masked_move(&insn.i).is_some() {
        Some(run_masked_move)
    } else {
        None
    }
}

/// A whole vector register (low and high halves).
fn get(cpu: &Cpu, n: usize) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&cpu.r.fpu.xmm[n].to_le_bytes());
    b[16..].copy_from_slice(&cpu.r.fpu.ymm_hi[n].to_le_bytes());
    b
}

fn put(cpu: &mut Cpu, n: usize, b: &[u8; 32]) {
    let half =
        |k: usize| u128::from_le_bytes(b[16 * k..16 * k + 16].try_into().unwrap_or_default());
    cpu.r.fpu.xmm[n] = half(0);
    cpu.r.fpu.ymm_hi[n] = half(1);
}

/// Element `j` of `size` bytes.
fn element(b: &[u8; 32], j: usize, size: usize) -> u64 {
    let mut e = [0u8; 8];
    e[..size].copy_from_slice(&b[j * size..(j + 1) * size]);
    u64::from_le_bytes(e)
}

fn set_element(b: &mut [u8; 32], j: usize, size: usize, v: u64) {
    b[j * size..(j + 1) * size].copy_from_slice(&v.to_le_bytes()[..size]);
}

fn sign(v: u64, size: usize) -> bool {
    v >> (8 * size - 1) & 1 != 0
}

/// VPGATHERDD and friends: `dest[j] = [base + index[j] * scale + disp]` for each element whose
/// mask element's sign is set, clearing that mask element; a fault leaves the elements done
/// so far done (with their mask cleared), so the instruction can resume. At the end the mask
/// is zero and what lies beyond the elements (the upper half of a 128-bit form) is cleared.
fn run_gather(cpu: &mut Cpu, insn: &Insn) -> Step {
    let i = &insn.i;
    let Some((isize, dsize)) = gather(i) else {
        return Err(Fault::ud().into());
    };
    avx_check(cpu)?;
    let (dst, idx, msk) = (i.op0_register(), i.memory_index(), i.op2_register());
    let (d, x, m) = (dst.number(), idx.number(), msk.number());
    if d == x || d == m || x == m {
        return Err(Fault::ud().into());
    }
    let count = (dst.size() as u32 / dsize).min(idx.size() as u32 / isize) as usize;
    let (isize, dsize) = (isize as usize, dsize as usize);
    let (seg, base) = (insn.mem.seg as usize, ea(cpu, insn));
    let index = get(cpu, x);
    let scale = i.memory_index_scale() as u64;
    for j in 0..count {
        let mut mask = get(cpu, m);
        if !sign(element(&mask, j, dsize), dsize) {
            continue;
        }
        let raw = element(&index, j, isize);
        let off = if isize == 4 {
            raw as u32 as i32 as i64 as u64
        } else {
            raw
        };
        let addr = offset_add(insn, base, off.wrapping_mul(scale));
        let v = if dsize == 4 {
            cpu.read::<u32>(seg, addr)? as u64
        } else {
            cpu.read::<u64>(seg, addr)?
        };
        let mut dest = get(cpu, d);
        set_element(&mut dest, j, dsize, v);
        set_element(&mut mask, j, dsize, 0);
        put(cpu, d, &dest);
        put(cpu, m, &mask);
    }
    let mut dest = get(cpu, d);
    let width = if dst.is_ymm() { 32 } else { 16 };
    dest[count * dsize..].fill(0);
    dest[width..].fill(0);
    put(cpu, d, &dest);
    put(cpu, m, &[0; 32]);
    Ok(Flow::Next)
}

/// VMASKMOVPS/PD, VPMASKMOVD/Q: a load zeroes the elements whose mask sign is clear and
/// reads the others; a store writes only the selected elements. Unselected elements are not
/// accessed and cannot fault.
fn run_masked_move(cpu: &mut Cpu, insn: &Insn) -> Step {
    let i = &insn.i;
    let Some(size) = masked_move(i) else {
        return Err(Fault::ud().into());
    };
    avx_check(cpu)?;
    let size = size as usize;
    let mask_reg = i.op1_register();
    let mask = get(cpu, mask_reg.number());
    let width = mask_reg.size();
    let (seg, off) = (insn.mem.seg as usize, ea(cpu, insn));
    let at = |j: usize| offset_add(insn, off, (j * size) as u64);
    if i.op0_kind() == OpKind::Memory {
        let src = get(cpu, i.op2_register().number());
        let selected = |j: usize| sign(element(&mask, j, size), size);
        // Every selected element is checked before any is written.
        for j in (0..width / size).filter(|&j| selected(j)) {
            cpu.probe_write(seg, at(j), size as u32)?;
        }
        for j in (0..width / size).filter(|&j| selected(j)) {
            let v = element(&src, j, size);
            if size == 4 {
                cpu.write::<u32>(seg, at(j), v as u32)?;
            } else {
                cpu.write::<u64>(seg, at(j), v)?;
            }
        }
    } else {
        let mut dest = [0u8; 32];
        for j in 0..width / size {
            if sign(element(&mask, j, size), size) {
                let v = if size == 4 {
                    cpu.read::<u32>(seg, at(j))? as u64
                } else {
                    cpu.read::<u64>(seg, at(j))?
                };
                set_element(&mut dest, j, size, v);
            }
        }
        put(cpu, i.op0_register().number(), &dest);
    }
    Ok(Flow::Next)
}

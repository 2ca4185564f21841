//! The AVX state (`--cpu v3`): XGETBV/XSETBV, XSAVE/XSAVEOPT/XRSTOR in the standard (not
//! compacted) format, VZEROUPPER/VZEROALL, and the checks every VEX instruction on vector
//! registers makes.
//!
//! The area is the FXSAVE image (x87, MXCSR, XMM), a 64-byte header whose XSTATE_BV says
//! which components the area holds, and the AVX component (the upper halves of YMM0-15) at
//! 576. XSAVEOPT is XSAVE: the SDM lets a processor save a component whether or not it was
//! modified, and this one reports every enabled component as in use.

use super::super::{ea, Insn};
use super::state::{header, load_header};
use crate::core::{vector, Cpu, Fault, Flow, Step, Stop};
use crate::cpuid::{XCR0_V3, XSAVE_AVX_OFFSET, XSAVE_AVX_SIZE};
use crate::exec::system::CR4_OSXSAVE;
use crate::fpu::{Fpu, MXCSR_MASK};
use crate::mmu::Acc;
use iced_x86::Mnemonic;
use janus_engine::cpu::bits;

const X87: u64 = 1;
const SSE: u64 = 2;
const AVX: u64 = 4;
/// Where the header (XSTATE_BV, XCOMP_BV, reserved) starts.
const HEADER: u64 = 512;

/// Bytes of the standard-format area for the components in `xcr0`.
pub fn xsave_size(xcr0: u64) -> u32 {
    if xcr0 & AVX != 0 {
        XSAVE_AVX_OFFSET + XSAVE_AVX_SIZE
    } else {
        512 + 64
    }
}

/// #UD unless CR4.OSXSAVE is set (XGETBV, XSETBV, XSAVE, XRSTOR).
fn need_osxsave(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.r.cr4 & CR4_OSXSAVE == 0 {
        return Err(Fault::ud().into());
    }
    Ok(())
}

/// What a VEX instruction on vector registers checks first: #UD unless the OS enabled XSAVE
/// and the SSE and AVX state in XCR0, then #NM with CR0.TS (CR0.EM and CR4.OSFXSR do not
/// matter to VEX forms).
pub fn avx_check(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.r.cr4 & CR4_OSXSAVE == 0 || cpu.r.xcr0 & (SSE | AVX) != SSE | AVX {
        return Err(Fault::ud().into());
    }
    if cpu.r.cr0 & bits::CR0_TS != 0 {
        return Err(Fault::new(vector::NM).into());
    }
    Ok(())
}

/// Vector registers the current mode has: 16 in 64-bit mode, else 8.
fn vector_count(cpu: &Cpu) -> usize {
    if cpu.long64 {
        16
    } else {
        8
    }
}

pub fn xgetbv(cpu: &mut Cpu, _: &Insn) -> Step {
    need_osxsave(cpu)?;
    if cpu.r.gpr[1] as u32 != 0 {
        return Err(Fault::gp(0).into());
    }
    let v = cpu.r.xcr0;
    cpu.r.gpr[0] = v & 0xffff_ffff;
    cpu.r.gpr[2] = v >> 32;
    Ok(Flow::Next)
}

/// XSETBV: XCR0 must keep x87 state, and AVX state needs SSE state.
pub fn xsetbv(cpu: &mut Cpu, _: &Insn) -> Step {
    need_osxsave(cpu)?;
    let v = (cpu.r.gpr[2] << 32) | (cpu.r.gpr[0] & 0xffff_ffff);
    let bad = cpu.cpl() != 0
        || cpu.r.gpr[1] as u32 != 0
        || v & !XCR0_V3 != 0
        || v & X87 == 0
        || (v & AVX != 0 && v & SSE == 0);
    if bad {
        return Err(Fault::gp(0).into());
    }
    cpu.r.xcr0 = v;
    Ok(Flow::Next)
}

/// The checks of XSAVE and XRSTOR: OSXSAVE, CR0.TS, a 64-byte aligned area. Returns the
/// area's segment and offset, and the requested-feature bitmap (XCR0 & EDX:EAX).
fn area(cpu: &Cpu, insn: &Insn, acc: Acc) -> Result<(usize, u64, u64), Stop> {
    need_osxsave(cpu)?;
    if cpu.r.cr0 & bits::CR0_TS != 0 {
        return Err(Fault::new(vector::NM).into());
    }
    let (seg, off) = (insn.mem.seg as usize, ea(cpu, insn));
    if cpu.linear(seg, off, 1, acc)? & 63 != 0 {
        return Err(Fault::gp(0).into());
    }
    let rfbm = cpu.r.xcr0 & ((cpu.r.gpr[2] << 32) | (cpu.r.gpr[0] & 0xffff_ffff));
    Ok((seg, off, rfbm))
}

fn at(insn: &Insn, off: u64, n: u64) -> u64 {
    super::operand::offset_add(insn, off, n)
}

/// The 64-bit format stores FIP and FDP whole.
fn wide(insn: &Insn) -> bool {
    matches!(
        insn.i.mnemonic(),
        Mnemonic::Xsave64 | Mnemonic::Xsaveopt64 | Mnemonic::Xrstor64
    )
}

/// XSAVE, XSAVEOPT (and their 64-bit forms): the requested components, and XSTATE_BV's bits
/// for them; the rest of the area is left as it was.
pub fn xsave(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (seg, off, rfbm) = area(cpu, insn, Acc::Write)?;
    let size = if rfbm & AVX != 0 {
        (XSAVE_AVX_OFFSET + XSAVE_AVX_SIZE) as u64
    } else {
        HEADER + 64
    };
    cpu.probe_write(seg, off, size as u32)?;
    let h = header(&cpu.r.fpu, wide(insn));
    let mut writes: Vec<(u64, u64)> = Vec::new();
    let chunk = |i: usize| u64::from_le_bytes(h[8 * i..8 * i + 8].try_into().unwrap_or_default());
    if rfbm & X87 != 0 {
        // FCW..FDP (bytes 0..24) and ST0..ST7 (32..160).
        writes.extend((0..3).chain(4..20).map(|i| (8 * i as u64, chunk(i))));
    }
    if rfbm & (SSE | AVX) != 0 {
        writes.push((24, chunk(3)));
    }
    let n = vector_count(cpu);
    if rfbm & SSE != 0 {
        for (r, x) in cpu.r.fpu.xmm[..n].iter().enumerate() {
            writes.push((160 + 16 * r as u64, *x as u64));
            writes.push((168 + 16 * r as u64, (*x >> 64) as u64));
        }
    }
    if rfbm & AVX != 0 {
        for (r, x) in cpu.r.fpu.ymm_hi[..n].iter().enumerate() {
            let o = XSAVE_AVX_OFFSET as u64 + 16 * r as u64;
            writes.push((o, *x as u64));
            writes.push((o + 8, (*x >> 64) as u64));
        }
    }
    let bv = cpu.read::<u64>(seg, at(insn, off, HEADER))?;
    // Every enabled component counts as in use.
    writes.push((HEADER, (bv & !rfbm) | (cpu.r.xcr0 & rfbm)));
    for (o, v) in writes {
        cpu.write::<u64>(seg, at(insn, off, o), v)?;
    }
    Ok(Flow::Next)
}

/// XRSTOR (and XRSTOR64): checks the header (no compacted format, no component XCR0 does not
/// enable, reserved bytes zero) and MXCSR, then loads each requested component the area
/// holds and initializes each requested one it does not.
pub fn xrstor(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (seg, off, rfbm) = area(cpu, insn, Acc::Read)?;
    cpu.probe_read(seg, off, (HEADER + 64) as u32)?;
    let read = |cpu: &mut Cpu, o: u64| cpu.read::<u64>(seg, at(insn, off, o));
    let bv = read(cpu, HEADER)?;
    let mut reserved = 0;
    for i in 1..8 {
        reserved |= read(cpu, HEADER + 8 * i)?;
    }
    if bv & !cpu.r.xcr0 != 0 || reserved != 0 {
        return Err(Fault::gp(0).into());
    }
    let mut h = [0u8; 160];
    for i in 0..20 {
        h[8 * i..8 * i + 8].copy_from_slice(&read(cpu, 8 * i as u64)?.to_le_bytes());
    }
    let mxcsr = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    let loads_mxcsr = rfbm & (SSE | AVX) != 0;
    if loads_mxcsr && mxcsr & !MXCSR_MASK != 0 {
        return Err(Fault::gp(0).into());
    }
    let n = vector_count(cpu);
    let mut xmm = cpu.r.fpu.xmm;
    let mut hi = cpu.r.fpu.ymm_hi;
    if rfbm & SSE != 0 {
        for (r, x) in xmm[..n].iter_mut().enumerate() {
            *x = if bv & SSE != 0 {
                let lo = read(cpu, 160 + 16 * r as u64)?;
                let up = read(cpu, 168 + 16 * r as u64)?;
                lo as u128 | (up as u128) << 64
            } else {
                0
            };
        }
    }
    if rfbm & AVX != 0 {
        if bv & AVX != 0 {
            let o = XSAVE_AVX_OFFSET as u64;
            cpu.probe_read(seg, at(insn, off, o), XSAVE_AVX_SIZE)?;
        }
        for (r, x) in hi[..n].iter_mut().enumerate() {
            *x = if bv & AVX != 0 {
                let o = XSAVE_AVX_OFFSET as u64 + 16 * r as u64;
                let lo = read(cpu, o)?;
                let up = read(cpu, o + 8)?;
                lo as u128 | (up as u128) << 64
            } else {
                0
            };
        }
    }
    // Nothing can fault from here on.
    let f = &mut cpu.r.fpu;
    if rfbm & X87 != 0 {
        if bv & X87 != 0 {
            let keep = f.mxcsr;
            load_header(f, &h, wide(insn), false);
            f.mxcsr = keep;
        } else {
            let keep = (f.mxcsr, f.xmm, f.ymm_hi);
            *f = Fpu::default();
            (f.mxcsr, f.xmm, f.ymm_hi) = keep;
        }
    }
    if loads_mxcsr {
        f.mxcsr = mxcsr;
    }
    f.xmm = xmm;
    f.ymm_hi = hi;
    Ok(Flow::Next)
}

/// VZEROUPPER: the upper halves of the registers this mode has become zero.
pub fn vzeroupper(cpu: &mut Cpu, _: &Insn) -> Step {
    avx_check(cpu)?;
    let n = vector_count(cpu);
    cpu.r.fpu.ymm_hi[..n].fill(0);
    Ok(Flow::Next)
}

/// VZEROALL: the registers this mode has become zero.
pub fn vzeroall(cpu: &mut Cpu, _: &Insn) -> Step {
    avx_check(cpu)?;
    let n = vector_count(cpu);
    cpu.r.fpu.ymm_hi[..n].fill(0);
    cpu.r.fpu.xmm[..n].fill(0);
    Ok(Flow::Next)
}

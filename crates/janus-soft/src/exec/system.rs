//! System instructions: port I/O, HLT, interrupt flag, CPUID, time-stamp counter, MSRs,
//! control and debug registers, descriptor tables, segment registers.

use super::{ea, get, mem_get, mem_put, pop, push, put, reg_put, Insn, Opnd};
use crate::core::{vector, Cpu, Exit, Fault, Flow, Step, Stop};
use crate::cpu::{self, Mode, Seg, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_PSE, CR4_TSD, CS, FS, GS, SS};
use crate::flags::{self, mask};
use crate::msr;
use crate::segments::sel_error;
use janus_engine::cpu::bits;

fn require_cpl0(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.cpl() != 0 {
        return Err(Fault::gp(0).into());
    }
    Ok(())
}

/// I/O privilege: at CPL > IOPL (or in virtual-8086 mode) the TSS I/O permission bitmap must
/// allow every port of the access.
pub fn check_io(cpu: &mut Cpu, port: u16, size: u8) -> Result<(), Stop> {
    let mode = cpu.r.mode();
    if mode == Mode::Real {
        return Ok(());
    }
    let v86 = cpu.r.flags.bits & flags::VM != 0;
    if !v86 && cpu.cpl() <= cpu.r.flags.iopl() {
        return Ok(());
    }
    let tr = cpu.r.tr;
    let denied = Fault::gp(0);
    if tr.unusable || tr.limit < 0x67 {
        return Err(denied.into());
    }
    let base_off = cpu.read_sys::<u16>(tr.base + 0x66)? as u64;
    let byte = base_off + port as u64 / 8;
    if byte + 1 > tr.limit as u64 {
        return Err(denied.into());
    }
    let bits = cpu.read_sys::<u16>(tr.base + byte)? as u32;
    let want = ((1u32 << size) - 1) << (port % 8);
    if bits & want != 0 {
        return Err(denied.into());
    }
    Ok(())
}

/// IN AL/AX/EAX, imm8 or DX.
pub fn in_(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let port = match insn.op[1] {
        Opnd::Imm(p) => p as u16,
        _ => cpu.r.gpr[2] as u16,
    };
    check_io(cpu, port, size)?;
    match cpu.io.replay() {
        Some(Some(v)) => {
            reg_put(cpu, 0, size, v);
            Ok(Flow::Next)
        }
        _ => Err(cpu.exit(Exit::PioIn { port, size })),
    }
}

/// OUT imm8 or DX, AL/AX/EAX.
pub fn out(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let port = match insn.op[0] {
        Opnd::Imm(p) => p as u16,
        _ => cpu.r.gpr[2] as u16,
    };
    check_io(cpu, port, size)?;
    match cpu.io.replay() {
        Some(_) => Ok(Flow::Next),
        None => Err(cpu.exit(Exit::PioOut {
            port,
            size,
            value: (cpu.r.gpr[0] & mask(size)) as u32,
        })),
    }
}

pub fn hlt(cpu: &mut Cpu, _: &Insn) -> Step {
    require_cpl0(cpu)?;
    Err(Stop::Halt)
}

fn check_if_privilege(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.r.mode() != Mode::Real && cpu.cpl() > cpu.r.flags.iopl() {
        return Err(Fault::gp(0).into());
    }
    Ok(())
}

pub fn cli(cpu: &mut Cpu, _: &Insn) -> Step {
    check_if_privilege(cpu)?;
    cpu.r.flags.assign(flags::IF, false);
    Ok(Flow::Next)
}

/// STI: interrupts stay blocked until after the next instruction.
pub fn sti(cpu: &mut Cpu, _: &Insn) -> Step {
    check_if_privilege(cpu)?;
    if !cpu.r.flags.if_() {
        cpu.int_shadow = true;
    }
    cpu.r.flags.assign(flags::IF, true);
    Ok(Flow::Resync)
}

pub fn cpuid(cpu: &mut Cpu, _: &Insn) -> Step {
    let (function, index) = (cpu.r.gpr[0] as u32, cpu.r.gpr[1] as u32);
    let (a, mut b, mut c, d) = crate::cpuid::query(&cpu.cpuid, function, index);
    // The bits that follow the CPU's state: OSXSAVE mirrors CR4.OSXSAVE, and XSAVE's leaf
    // gives the area's size for the components XCR0 enables now.
    if function == 1 && cpu.isa.xsave() {
        c &= !crate::cpuid::OSXSAVE;
        if cpu.r.cr4 & CR4_OSXSAVE != 0 {
            c |= crate::cpuid::OSXSAVE;
        }
    }
    if function == 0xd && index == 0 && cpu.isa.xsave() {
        b = crate::exec::sse::xsave_size(cpu.r.xcr0);
    }
    for (r, v) in [(0u8, a), (3, b), (1, c), (2, d)] {
        reg_put(cpu, r, 8, v as u64);
    }
    Ok(Flow::Next)
}

/// The guest's TSC now.
pub fn guest_tsc(cpu: &Cpu) -> u64 {
    use janus_engine::GuestClock;
    cpu.tsc.guest_tsc()
}

pub fn rdtsc(cpu: &mut Cpu, _: &Insn) -> Step {
    if cpu.r.cr4 & CR4_TSD != 0 && cpu.cpl() != 0 {
        return Err(Fault::gp(0).into());
    }
    let t = guest_tsc(cpu);
    reg_put(cpu, 0, 4, t & 0xffff_ffff);
    reg_put(cpu, 2, 4, t >> 32);
    Ok(Flow::Next)
}

pub fn rdtscp(cpu: &mut Cpu, insn: &Insn) -> Step {
    rdtsc(cpu, insn)?;
    let aux = cpu.r.msr.tsc_aux;
    reg_put(cpu, 1, 4, aux & 0xffff_ffff);
    Ok(Flow::Next)
}

pub fn rdmsr(cpu: &mut Cpu, _: &Insn) -> Step {
    require_cpl0(cpu)?;
    let index = cpu.r.gpr[1] as u32;
    let v = msr::read(cpu, index)?;
    reg_put(cpu, 0, 4, v & 0xffff_ffff);
    reg_put(cpu, 2, 4, v >> 32);
    Ok(Flow::Next)
}

pub fn wrmsr(cpu: &mut Cpu, _: &Insn) -> Step {
    require_cpl0(cpu)?;
    let index = cpu.r.gpr[1] as u32;
    let v = (cpu.r.gpr[2] << 32) | (cpu.r.gpr[0] & 0xffff_ffff);
    msr::write(cpu, index, v)?;
    Ok(Flow::Resync)
}

/// Control register number of a MOV CRn operand.
fn cr_number(r: iced_x86::Register) -> u32 {
    r as u32 - iced_x86::Register::CR0 as u32
}

fn dr_number(r: iced_x86::Register) -> u32 {
    r as u32 - iced_x86::Register::DR0 as u32
}

/// MOV r, CRn.
pub fn mov_from_cr(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let v = match cr_number(insn.i.op1_register()) {
        0 => cpu.r.cr0,
        2 => cpu.r.cr2,
        3 => cpu.r.cr3,
        4 => cpu.r.cr4,
        8 => cpu
            .intc
            .as_ref()
            .and_then(|c| c.cr8())
            .unwrap_or(cpu.r.cr8 & 0xf),
        _ => return Err(Fault::ud().into()),
    };
    put(cpu, insn, 0, insn.osize, v)?;
    Ok(Flow::Next)
}

/// CR4 bits Janus's soft CPU implements.
pub const CR4_SUPPORTED: u64 = cpu::CR4_TSD
    | cpu::CR4_DE
    | CR4_PSE
    | CR4_PAE
    | (1 << 6) // MCE: machine checks are never raised
    | CR4_PGE
    | (1 << 8) // PCE
    | cpu::CR4_OSFXSR
    | cpu::CR4_OSXMMEXCPT;

/// CR4.OSXSAVE: XSAVE and the AVX state enabled (accepted only where XSAVE is advertised).
pub const CR4_OSXSAVE: u64 = 1 << 18;

/// The CR4 bits this CPU accepts, with its CPUID model.
fn cr4_supported(cpu: &Cpu) -> u64 {
    if cpu.isa.xsave() {
        CR4_SUPPORTED | CR4_OSXSAVE
    } else {
        CR4_SUPPORTED
    }
}

/// MOV CRn, r.
pub fn mov_to_cr(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let v = get(cpu, insn, 1, insn.osize)?;
    let n = cr_number(insn.i.op0_register());
    set_cr(cpu, n, v)?;
    Ok(Flow::Resync)
}

/// Writes control register `n` with the architectural checks and their side effects.
pub fn set_cr(cpu: &mut Cpu, n: u32, v: u64) -> Result<(), Stop> {
    match n {
        0 => {
            let v = v | bits::CR0_ET;
            if v >> 32 != 0
                || (v & bits::CR0_PG != 0 && v & bits::CR0_PE == 0)
                || (v & bits::CR0_NW != 0 && v & bits::CR0_CD == 0)
            {
                return Err(Fault::gp(0).into());
            }
            let old = cpu.r.cr0;
            let paging_on = v & bits::CR0_PG != 0 && old & bits::CR0_PG == 0;
            let paging_off = v & bits::CR0_PG == 0 && old & bits::CR0_PG != 0;
            if paging_on && cpu.r.efer & bits::EFER_LME != 0 {
                if cpu.r.cr4 & CR4_PAE == 0 {
                    return Err(Fault::gp(0).into());
                }
                cpu.r.efer |= bits::EFER_LMA;
            }
            if paging_off && cpu.r.long_mode_active() {
                if cpu.long64 {
                    return Err(Fault::gp(0).into());
                }
                cpu.r.efer &= !bits::EFER_LMA;
            }
            cpu.r.cr0 = v;
            if (old ^ v) & (bits::CR0_PG | bits::CR0_WP | bits::CR0_PE) != 0 {
                cpu.tlb.flush_all();
            }
            cpu.sync_mode();
        }
        2 => cpu.r.cr2 = v,
        3 => {
            let keep = cpu.r.cr4 & CR4_PCIDE != 0 && v & (1 << 63) != 0;
            cpu.r.cr3 = v & !(1 << 63);
            if !keep {
                cpu.tlb.flush_nonglobal();
            }
        }
        4 => {
            if v & !cr4_supported(cpu) != 0 || (cpu.r.long_mode_active() && v & CR4_PAE == 0) {
                return Err(Fault::gp(0).into());
            }
            let old = cpu.r.cr4;
            cpu.r.cr4 = v;
            if (old ^ v) & (CR4_PAE | CR4_PGE | CR4_PSE | CR4_PCIDE) != 0 {
                cpu.tlb.flush_all();
            }
        }
        8 => {
            if v & !0xf != 0 {
                return Err(Fault::gp(0).into());
            }
            cpu.r.cr8 = v;
            if let Some(c) = &cpu.intc {
                c.set_cr8(v);
            }
        }
        _ => return Err(Fault::ud().into()),
    }
    Ok(())
}

pub fn mov_from_dr(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let mut n = dr_number(insn.i.op1_register()) as usize;
    if n == 4 || n == 5 {
        if cpu.r.cr4 & cpu::CR4_DE != 0 {
            return Err(Fault::ud().into());
        }
        n += 2;
    }
    let v = cpu.r.dr[n];
    put(cpu, insn, 0, insn.osize, v)?;
    Ok(Flow::Next)
}

/// MOV DRn, r: the registers hold their values; hardware breakpoints are not implemented.
pub fn mov_to_dr(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let mut n = dr_number(insn.i.op0_register()) as usize;
    if n == 4 || n == 5 {
        if cpu.r.cr4 & cpu::CR4_DE != 0 {
            return Err(Fault::ud().into());
        }
        n += 2;
    }
    let v = get(cpu, insn, 1, insn.osize)?;
    if (n == 6 || n == 7) && v >> 32 != 0 {
        return Err(Fault::gp(0).into());
    }
    cpu.r.dr[n] = match n {
        6 => v | 0xffff_0ff0,
        7 => (v | 0x400) & !0x2000,
        _ => v,
    };
    Ok(Flow::Next)
}

/// LGDT/LIDT m: a 16-bit limit and a 24-, 32- or 64-bit base.
pub fn lgdt_lidt<const IDT: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let seg = insn.mem.seg as usize;
    let off = ea(cpu, insn);
    let limit = mem_get(cpu, seg, off, 2)? as u16;
    let base = if cpu.long64 {
        mem_get(cpu, seg, off + 2, 8)?
    } else {
        let b = mem_get(cpu, seg, off + 2, 4)?;
        if insn.osize == 2 {
            b & 0x00ff_ffff
        } else {
            b
        }
    };
    let t = if IDT {
        &mut cpu.r.idtr
    } else {
        &mut cpu.r.gdtr
    };
    t.base = base;
    t.limit = limit;
    Ok(Flow::Next)
}

/// SGDT/SIDT m.
pub fn sgdt_sidt<const IDT: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let t = if IDT { cpu.r.idtr } else { cpu.r.gdtr };
    let seg = insn.mem.seg as usize;
    let off = ea(cpu, insn);
    let wide = if cpu.long64 { 8 } else { 4 };
    cpu.probe_write(seg, off, 2 + wide as u32)?;
    mem_put(cpu, seg, off, 2, t.limit as u64)?;
    mem_put(cpu, seg, off + 2, wide, t.base)?;
    Ok(Flow::Next)
}

/// LLDT r/m16.
pub fn lldt(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    if cpu.r.mode() == Mode::Real {
        return Err(Fault::ud().into());
    }
    let sel = get(cpu, insn, 0, 2)? as u16;
    if sel & !3 == 0 {
        cpu.r.ldtr = Seg {
            selector: sel,
            unusable: true,
            ..Default::default()
        };
        return Ok(Flow::Next);
    }
    if sel & 4 != 0 {
        return Err(Fault::gp(sel_error(sel)).into());
    }
    let wide = cpu.r.long_mode_active();
    let (lo, hi) = cpu.read_descriptor(sel, wide)?;
    let seg = Seg::from_descriptor(sel, lo, hi);
    if seg.attr & cpu::ATTR_S != 0 || seg.type_() != 2 {
        return Err(Fault::gp(sel_error(sel)).into());
    }
    if !seg.present() {
        return Err(Fault::with_error(vector::NP, sel_error(sel)).into());
    }
    cpu.r.ldtr = seg;
    Ok(Flow::Next)
}

/// LTR r/m16: loads an available TSS and marks it busy.
pub fn ltr(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    if cpu.r.mode() == Mode::Real {
        return Err(Fault::ud().into());
    }
    let sel = get(cpu, insn, 0, 2)? as u16;
    if sel & !3 == 0 || sel & 4 != 0 {
        return Err(Fault::gp(sel_error(sel)).into());
    }
    let wide = cpu.r.long_mode_active();
    let (lo, hi) = cpu.read_descriptor(sel, wide)?;
    let seg = Seg::from_descriptor(sel, lo, hi);
    let t = seg.type_();
    let available = if wide { t == 9 } else { t == 9 || t == 1 };
    if seg.attr & cpu::ATTR_S != 0 || !available {
        return Err(Fault::gp(sel_error(sel)).into());
    }
    if !seg.present() {
        return Err(Fault::with_error(vector::NP, sel_error(sel)).into());
    }
    let addr = cpu.descriptor_addr(sel, false)?;
    cpu.write_sys::<u64>(addr, lo | (2 << 40))?;
    let mut seg = seg;
    seg.attr |= 2; // busy
    cpu.r.tr = seg;
    Ok(Flow::Next)
}

/// SLDT / STR.
pub fn sldt_str<const TR: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    if cpu.r.mode() == Mode::Real {
        return Err(Fault::ud().into());
    }
    let sel = if TR {
        cpu.r.tr.selector
    } else {
        cpu.r.ldtr.selector
    };
    let size = if insn.op[0] == Opnd::Mem {
        2
    } else {
        insn.osize
    };
    put(cpu, insn, 0, size, sel as u64)?;
    Ok(Flow::Next)
}

/// LMSW: sets the low four bits of CR0 (it cannot clear PE).
pub fn lmsw(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let v = get(cpu, insn, 0, 2)?;
    let new = (cpu.r.cr0 & !0xe) | (v & 0xf) | (cpu.r.cr0 & 1);
    set_cr(cpu, 0, new)?;
    Ok(Flow::Resync)
}

pub fn smsw(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = if insn.op[0] == Opnd::Mem {
        2
    } else {
        insn.osize
    };
    put(cpu, insn, 0, size, cpu.r.cr0)?;
    Ok(Flow::Next)
}

pub fn clts(cpu: &mut Cpu, _: &Insn) -> Step {
    require_cpl0(cpu)?;
    cpu.r.cr0 &= !bits::CR0_TS;
    Ok(Flow::Next)
}

pub fn invlpg(cpu: &mut Cpu, insn: &Insn) -> Step {
    require_cpl0(cpu)?;
    let off = ea(cpu, insn);
    let seg = insn.mem.seg as usize;
    let lin = if cpu.long64 {
        if seg >= FS {
            cpu.r.seg[seg].base.wrapping_add(off)
        } else {
            off
        }
    } else {
        cpu.r.seg[seg].base.wrapping_add(off) & 0xffff_ffff
    };
    cpu.tlb.flush_page(lin);
    Ok(Flow::Resync)
}

/// WBINVD, INVD: caches are not modelled; privileged.
pub fn privileged_nop(cpu: &mut Cpu, _: &Insn) -> Step {
    require_cpl0(cpu)?;
    Ok(Flow::Next)
}

pub fn swapgs(cpu: &mut Cpu, _: &Insn) -> Step {
    if !cpu.long64 {
        return Err(Fault::ud().into());
    }
    require_cpl0(cpu)?;
    std::mem::swap(&mut cpu.r.seg[GS].base, &mut cpu.r.msr.kernel_gs_base);
    Ok(Flow::Next)
}

/// Segment register number of an iced segment register.
pub fn sreg_index(r: iced_x86::Register) -> usize {
    r as usize - iced_x86::Register::ES as usize
}

/// MOV Sreg, r/m16. MOV SS inhibits interrupts for one instruction.
pub fn mov_to_sreg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let s = sreg_index(insn.i.op0_register());
    if s == CS {
        return Err(Fault::ud().into());
    }
    let sel = get(cpu, insn, 1, 2)? as u16;
    cpu.load_data_seg(s, sel)?;
    if s == SS {
        cpu.int_shadow = true;
    }
    Ok(Flow::Resync)
}

/// MOV r/m, Sreg (a register destination is zero-extended).
pub fn mov_from_sreg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let s = sreg_index(insn.i.op1_register());
    let sel = cpu.r.seg[s].selector as u64;
    let size = if insn.op[0] == Opnd::Mem {
        2
    } else {
        insn.osize
    };
    put(cpu, insn, 0, size, sel)?;
    Ok(Flow::Next)
}

pub fn push_sreg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let s = sreg_index(insn.i.op0_register());
    let sel = cpu.r.seg[s].selector as u64;
    push(cpu, insn.osize, sel)?;
    Ok(Flow::Next)
}

pub fn pop_sreg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let s = sreg_index(insn.i.op0_register());
    let sel = super::peek(cpu, insn.osize, 0)? as u16;
    cpu.load_data_seg(s, sel)?;
    pop(cpu, insn.osize)?;
    if s == SS {
        cpu.int_shadow = true;
    }
    Ok(Flow::Resync)
}

/// LDS, LES, LFS, LGS, LSS r, m16:16/32/64.
pub fn load_far_pointer(cpu: &mut Cpu, insn: &Insn) -> Step {
    use iced_x86::Mnemonic::*;
    let s = match insn.i.mnemonic() {
        Lds => crate::cpu::DS,
        Les => crate::cpu::ES,
        Lfs => FS,
        Lgs => GS,
        _ => SS,
    };
    let size = insn.osize;
    let seg = insn.mem.seg as usize;
    let off = ea(cpu, insn);
    let o = mem_get(cpu, seg, off, size)?;
    let sel = mem_get(cpu, seg, off.wrapping_add(size as u64), 2)? as u16;
    cpu.load_data_seg(s, sel)?;
    put(cpu, insn, 0, size, o)?;
    Ok(Flow::Resync)
}

/// LAR, LSL, VERR, VERW: descriptor checks that report through ZF.
pub fn descriptor_query<const KIND: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    if cpu.r.mode() == Mode::Real {
        return Err(Fault::ud().into());
    }
    let src = if KIND >= 2 { 0 } else { 1 };
    let sel = get(cpu, insn, src, 2)? as u16;
    let result = (|| -> Result<Option<(u64, u64)>, Stop> {
        if sel & !3 == 0 {
            return Ok(None);
        }
        let Ok((lo, hi)) = cpu.read_descriptor(sel, false) else {
            return Ok(None);
        };
        Ok(Some((lo, hi)))
    })()?;
    let cpl = cpu.cpl();
    let ok = result.filter(|&(lo, _)| {
        let seg = Seg::from_descriptor(sel, lo, 0);
        let s = seg.attr & cpu::ATTR_S != 0;
        let t = seg.type_();
        let conforming = s && t & 0xc == 0xc;
        let dpl = seg.dpl();
        let rpl = (sel & 3) as u8;
        let priv_ok = conforming || (dpl >= cpl && dpl >= rpl);
        match KIND {
            0 => priv_ok && (s || matches!(t, 1 | 2 | 3 | 4 | 5 | 9 | 0xb | 0xc)),
            1 => priv_ok && (s || matches!(t, 1 | 2 | 3 | 9 | 0xb)),
            2 => priv_ok && s && (t & 8 == 0 || t & 2 != 0),
            _ => priv_ok && s && t & 8 == 0 && t & 2 != 0,
        }
    });
    if let Some((lo, _)) = ok {
        match KIND {
            0 => {
                let v = lo >> 32 & 0x00f0_ff00;
                put(cpu, insn, 0, insn.osize, v)?;
            }
            1 => {
                let seg = Seg::from_descriptor(sel, lo, 0);
                put(cpu, insn, 0, insn.osize, seg.limit as u64)?;
            }
            _ => {}
        }
    }
    cpu.r.flags.assign(flags::ZF, ok.is_some());
    Ok(Flow::Next)
}

/// RDPMC: performance counters are not implemented (#GP, as with CR4.PCE clear).
pub fn rdpmc(_: &mut Cpu, _: &Insn) -> Step {
    Err(Fault::gp(0).into())
}

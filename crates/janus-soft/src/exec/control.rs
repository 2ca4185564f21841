//! Control transfer: jumps, calls, returns, loops, software interrupts, IRET, and the fast
//! system-call instructions.

use super::{branch_width, get, jump_to, mem_get, peek, push, set_sp, Insn, Opnd};
use crate::core::{Cpu, Fault, Flow, Step, Stop};
use crate::cpu::{Mode, Seg, ATTR_DB, ATTR_G, ATTR_L, ATTR_P, ATTR_S, CS, SS};
use crate::flags::{self, mask};
use crate::interrupt::Source;
use janus_engine::cpu::bits;

#[inline(always)]
fn target(cpu: &Cpu, insn: &Insn) -> u64 {
    cpu.next_rip.wrapping_add(insn.rel as u64)
}

pub fn jmp_rel(cpu: &mut Cpu, insn: &Insn) -> Step {
    let t = target(cpu, insn);
    jump_to(cpu, t, branch_width(cpu, insn))?;
    Ok(Flow::Jump)
}

pub fn jcc(cpu: &mut Cpu, insn: &Insn) -> Step {
    if cpu.r.flags.cond(insn.cc) {
        let t = target(cpu, insn);
        jump_to(cpu, t, branch_width(cpu, insn))?;
        return Ok(Flow::Jump);
    }
    Ok(Flow::Next)
}

/// JMP r/m (near, indirect).
pub fn jmp_ind(cpu: &mut Cpu, insn: &Insn) -> Step {
    let w = branch_width(cpu, insn);
    let t = get(cpu, insn, 0, w)?;
    jump_to(cpu, t, w)?;
    Ok(Flow::Jump)
}

pub fn call_rel(cpu: &mut Cpu, insn: &Insn) -> Step {
    let w = branch_width(cpu, insn);
    let t = target(cpu, insn) & mask(w);
    let ret = cpu.next_rip;
    check_target(cpu, t)?;
    push(cpu, w, ret)?;
    cpu.r.rip = t;
    Ok(Flow::Jump)
}

pub fn call_ind(cpu: &mut Cpu, insn: &Insn) -> Step {
    let w = branch_width(cpu, insn);
    let t = get(cpu, insn, 0, w)?;
    check_target(cpu, t)?;
    push(cpu, w, cpu.next_rip)?;
    cpu.r.rip = t;
    Ok(Flow::Jump)
}

/// #GP for a branch target outside CS (or non-canonical), before anything is pushed.
fn check_target(cpu: &Cpu, t: u64) -> Result<(), Stop> {
    if cpu.long64 {
        if ((t as i64) << 16) >> 16 != t as i64 {
            return Err(Fault::gp(0).into());
        }
    } else if t > cpu.r.seg[CS].limit as u64 {
        return Err(Fault::gp(0).into());
    }
    Ok(())
}

/// RET and RET imm16.
pub fn ret(cpu: &mut Cpu, insn: &Insn) -> Step {
    let w = branch_width(cpu, insn);
    let t = peek(cpu, w, 0)?;
    check_target(cpu, t)?;
    let extra = match insn.op[0] {
        Opnd::Imm(v) => v & 0xffff,
        _ => 0,
    };
    let sp = cpu.r.gpr[4].wrapping_add(w as u64 + extra);
    set_sp(cpu, sp);
    cpu.r.rip = t;
    Ok(Flow::Jump)
}

/// The count register of LOOP/JCXZ at the instruction's address size.
fn count_reg(cpu: &Cpu, insn: &Insn) -> u64 {
    cpu.r.gpr[1] & mask(insn.asize)
}

/// LOOP, LOOPE, LOOPNE.
pub fn loop_(cpu: &mut Cpu, insn: &Insn) -> Step {
    use iced_x86::Mnemonic;
    let c = count_reg(cpu, insn).wrapping_sub(1) & mask(insn.asize);
    let take = c != 0
        && match insn.i.mnemonic() {
            Mnemonic::Loope => cpu.r.flags.zf(),
            Mnemonic::Loopne => !cpu.r.flags.zf(),
            _ => true,
        };
    if take {
        let t = target(cpu, insn);
        jump_to(cpu, t, branch_width(cpu, insn))?;
    }
    super::reg_put(cpu, 1, insn.asize, c);
    Ok(if take { Flow::Jump } else { Flow::Next })
}

/// JCXZ, JECXZ, JRCXZ.
pub fn jcxz(cpu: &mut Cpu, insn: &Insn) -> Step {
    if count_reg(cpu, insn) == 0 {
        let t = target(cpu, insn);
        jump_to(cpu, t, branch_width(cpu, insn))?;
        return Ok(Flow::Jump);
    }
    Ok(Flow::Next)
}

/// Transfers to `sel:off` for a far JMP/CALL to a code segment (no gates, no task switch).
fn far_transfer(cpu: &mut Cpu, sel: u16, off: u64, push_ret: Option<u8>) -> Step {
    if cpu.r.mode() == Mode::Real || cpu.r.flags.bits & flags::VM != 0 {
        if let Some(w) = push_ret {
            push(cpu, w, cpu.r.seg[CS].selector as u64)?;
            push(cpu, w, cpu.next_rip)?;
        }
        cpu.r.seg[CS].selector = sel;
        cpu.r.seg[CS].base = (sel as u64) << 4;
        cpu.r.rip = off;
        return Ok(Flow::Jump);
    }
    // Call gates and task gates are not code segments: check_code_seg rejects them.
    let seg = match cpu.check_code_seg(sel, None) {
        Ok(s) => s,
        Err(Stop::Fault(f)) => {
            let (desc, _) = cpu.read_descriptor(sel, false).unwrap_or((0, 0));
            let system_type = (desc >> 40) & 0x1f;
            if matches!(system_type, 0x04 | 0x05 | 0x0c | 0x09 | 0x0b) {
                return Err(cpu.fail(format!(
                    "far transfer through a call gate, task gate or TSS (selector {sel:#x}): not implemented"
                )));
            }
            return Err(f.into());
        }
        Err(e) => return Err(e),
    };
    let cpl = cpu.cpl();
    if !(cpu.r.long_mode_active() && seg.long()) && off > seg.limit as u64 {
        return Err(Fault::gp(0).into());
    }
    if let Some(w) = push_ret {
        let ret_cs = cpu.r.seg[CS].selector as u64;
        let ret_ip = cpu.next_rip;
        let sp = cpu.r.gpr[4];
        let r = push(cpu, w, ret_cs).and_then(|_| push(cpu, w, ret_ip));
        if let Err(e) = r {
            cpu.r.gpr[4] = sp;
            return Err(e);
        }
    }
    cpu.set_cs(seg, cpl);
    cpu.r.rip = off;
    Ok(Flow::Jump)
}

/// JMP ptr16:16/32 (direct far jump, not in 64-bit mode).
pub fn jmp_far_direct(cpu: &mut Cpu, insn: &Insn) -> Step {
    let sel = insn.i.far_branch_selector();
    let off = if insn.osize == 2 {
        insn.i.far_branch16() as u64
    } else {
        insn.i.far_branch32() as u64
    };
    far_transfer(cpu, sel, off, None)
}

pub fn call_far_direct(cpu: &mut Cpu, insn: &Insn) -> Step {
    let sel = insn.i.far_branch_selector();
    let off = if insn.osize == 2 {
        insn.i.far_branch16() as u64
    } else {
        insn.i.far_branch32() as u64
    };
    far_transfer(cpu, sel, off, Some(insn.osize))
}

/// Reads a far pointer m16:16/32/64 from the memory operand.
fn far_pointer(cpu: &mut Cpu, insn: &Insn) -> Result<(u16, u64), Stop> {
    let size = insn.osize;
    let seg = insn.mem.seg as usize;
    let off = super::ea(cpu, insn);
    let o = mem_get(cpu, seg, off, size)?;
    let s = mem_get(cpu, seg, off.wrapping_add(size as u64), 2)? as u16;
    Ok((s, o))
}

/// JMP m16:16/32/64.
pub fn jmp_far_ind(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (s, o) = far_pointer(cpu, insn)?;
    far_transfer(cpu, s, o, None)
}

/// CALL m16:16/32/64.
pub fn call_far_ind(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (s, o) = far_pointer(cpu, insn)?;
    far_transfer(cpu, s, o, Some(insn.osize))
}

/// RETF and RETF imm16: same-privilege or to an outer level.
pub fn ret_far(cpu: &mut Cpu, insn: &Insn) -> Step {
    let w = insn.osize;
    let extra = match insn.op[0] {
        Opnd::Imm(v) => v & 0xffff,
        _ => 0,
    };
    let off = peek(cpu, w, 0)?;
    let sel = peek(cpu, w, w as u64)? as u16;
    if cpu.r.mode() == Mode::Real || cpu.r.flags.bits & flags::VM != 0 {
        let sp = cpu.r.gpr[4].wrapping_add(2 * w as u64 + extra);
        set_sp(cpu, sp);
        cpu.r.seg[CS].selector = sel;
        cpu.r.seg[CS].base = (sel as u64) << 4;
        cpu.r.rip = off & mask(w);
        return Ok(Flow::Jump);
    }
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    if rpl < cpl {
        return Err(Fault::gp(crate::segments::sel_error(sel)).into());
    }
    let seg = cpu.check_code_seg(sel, Some(rpl))?;
    if rpl > cpl {
        let sp_off = 2 * w as u64 + extra;
        let new_sp = peek(cpu, w, sp_off)?;
        let new_ss = peek(cpu, w, sp_off + w as u64)? as u16;
        let saved = cpu.r.seg[CS];
        cpu.r.seg[CS].attr = (saved.attr & !(3 << 5)) | ((rpl as u16) << 5);
        let r = cpu.load_data_seg(SS, new_ss);
        cpu.r.seg[CS] = saved;
        r?;
        cpu.set_cs(seg, rpl);
        let sp = new_sp.wrapping_add(extra);
        set_sp(cpu, sp);
    } else {
        let sp = cpu.r.gpr[4].wrapping_add(2 * w as u64 + extra);
        set_sp(cpu, sp);
        cpu.set_cs(seg, cpl);
    }
    cpu.r.rip = off & mask(w);
    Ok(Flow::Jump)
}

/// INT imm8, INT3, INTO, INT1: delivered with the next instruction as the return address.
pub fn int(cpu: &mut Cpu, insn: &Insn) -> Step {
    use iced_x86::Mnemonic;
    let (vector, source) = match insn.i.mnemonic() {
        Mnemonic::Int3 => (crate::core::vector::BP, Source::Software),
        Mnemonic::Into => {
            if !cpu.r.flags.of() {
                return Ok(Flow::Next);
            }
            (crate::core::vector::OF, Source::Software)
        }
        Mnemonic::Int1 => (crate::core::vector::DB, Source::Icebp),
        _ => (insn.i.immediate8(), Source::Software),
    };
    if cpu.r.flags.bits & flags::VM != 0 && cpu.r.flags.iopl() < 3 {
        return Err(Fault::gp(0).into());
    }
    let here = cpu.r.rip;
    cpu.r.rip = cpu.next_rip;
    if let Err(e) = cpu.raise(vector, None, source) {
        // A fault during delivery is reported at the INT instruction itself.
        if matches!(e, Stop::Fault(_)) {
            cpu.r.rip = here;
        }
        return Err(e);
    }
    Ok(Flow::Jump)
}

/// IRET, IRETD, IRETQ.
pub fn iret(cpu: &mut Cpu, insn: &Insn) -> Step {
    cpu.iret(insn.osize)?;
    Ok(Flow::Jump)
}

/// SYSCALL (64-bit mode; also legacy-mode form with EFER.SCE).
pub fn syscall(cpu: &mut Cpu, _: &Insn) -> Step {
    if cpu.r.efer & bits::EFER_SCE == 0 {
        return Err(Fault::ud().into());
    }
    let star = cpu.r.msr.star;
    let cs_sel = ((star >> 32) & 0xfffc) as u16;
    let flags_now = cpu.r.flags.get();
    if cpu.r.long_mode_active() {
        cpu.r.gpr[1] = cpu.next_rip;
        cpu.r.gpr[11] = flags_now & !flags::RF;
        let target = if cpu.long64 {
            cpu.r.msr.lstar
        } else {
            cpu.r.msr.cstar
        };
        cpu.set_cs(flat_code(cs_sel, 0, true), 0);
        cpu.r.seg[SS] = flat_data(cs_sel + 8, 0);
        cpu.r
            .flags
            .load(flags_now & !cpu.r.msr.sfmask & !flags::RF & !flags::VM);
        cpu.r.rip = target;
    } else {
        cpu.r.gpr[1] = cpu.next_rip & 0xffff_ffff;
        cpu.set_cs(flat_code(cs_sel, 0, false), 0);
        cpu.r.seg[SS] = flat_data(cs_sel + 8, 0);
        cpu.r
            .flags
            .load(flags_now & !(flags::IF | flags::VM | flags::RF));
        cpu.r.rip = star & 0xffff_ffff;
    }
    Ok(Flow::Jump)
}

/// SYSRET to 64-bit (REX.W) or compatibility mode.
pub fn sysret(cpu: &mut Cpu, insn: &Insn) -> Step {
    if cpu.r.efer & bits::EFER_SCE == 0 {
        return Err(Fault::ud().into());
    }
    if cpu.cpl() != 0 || cpu.r.mode() == Mode::Real {
        return Err(Fault::gp(0).into());
    }
    let base = ((cpu.r.msr.star >> 48) & 0xffff) as u16;
    let to64 = insn.osize == 8;
    let rip = cpu.r.gpr[1];
    if to64 && ((rip as i64) << 16) >> 16 != rip as i64 {
        return Err(Fault::gp(0).into());
    }
    if cpu.r.long_mode_active() {
        let cs = if to64 { base + 16 } else { base };
        cpu.set_cs(flat_code(cs | 3, 3, to64), 3);
        cpu.r
            .flags
            .load((cpu.r.gpr[11] & !(flags::RF | flags::VM)) | flags::FIXED1);
        cpu.r.rip = if to64 { rip } else { rip & 0xffff_ffff };
    } else {
        cpu.set_cs(flat_code(base | 3, 3, false), 3);
        let f = cpu.r.flags.get() | flags::IF;
        cpu.r.flags.load(f);
        cpu.r.rip = rip & 0xffff_ffff;
    }
    // SS selector is STAR[63:48] + 8 with RPL 3, flat, DPL 3.
    cpu.r.seg[SS] = flat_data((base + 8) | 3, 3);
    Ok(Flow::Jump)
}

/// SYSENTER: to CPL 0 at SYSENTER_CS:SYSENTER_EIP with SYSENTER_ESP.
pub fn sysenter(cpu: &mut Cpu, _: &Insn) -> Step {
    let cs = (cpu.r.msr.sysenter_cs & 0xfffc) as u16;
    if cpu.r.mode() == Mode::Real || cs == 0 {
        return Err(Fault::gp(0).into());
    }
    let long = cpu.r.long_mode_active();
    cpu.set_cs(flat_code(cs, 0, long), 0);
    cpu.r.seg[SS] = flat_data(cs + 8, 0);
    let f = cpu.r.flags.get() & !(flags::VM | flags::IF | flags::RF);
    cpu.r.flags.load(f);
    let (eip, esp) = (cpu.r.msr.sysenter_eip, cpu.r.msr.sysenter_esp);
    cpu.r.rip = if long { eip } else { eip & 0xffff_ffff };
    cpu.r.gpr[4] = if long { esp } else { esp & 0xffff_ffff };
    Ok(Flow::Jump)
}

/// SYSEXIT: to CPL 3 at RDX with stack RCX.
pub fn sysexit(cpu: &mut Cpu, insn: &Insn) -> Step {
    let base = (cpu.r.msr.sysenter_cs & 0xfffc) as u16;
    if cpu.r.mode() == Mode::Real || base == 0 || cpu.cpl() != 0 {
        return Err(Fault::gp(0).into());
    }
    let to64 = insn.osize == 8;
    let cs = if to64 { base + 32 } else { base + 16 };
    let ss = if to64 { base + 40 } else { base + 24 };
    cpu.set_cs(flat_code(cs | 3, 3, to64), 3);
    cpu.r.seg[SS] = flat_data(ss | 3, 3);
    let m = if to64 { u64::MAX } else { 0xffff_ffff };
    cpu.r.rip = cpu.r.gpr[2] & m;
    cpu.r.gpr[4] = cpu.r.gpr[1] & m;
    Ok(Flow::Jump)
}

/// The flat code segment SYSCALL/SYSENTER install (they do not read the GDT).
fn flat_code(sel: u16, dpl: u8, long: bool) -> Seg {
    Seg {
        selector: sel,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0xb
            | ATTR_S
            | ((dpl as u16) << 5)
            | ATTR_P
            | ATTR_G
            | if long { ATTR_L } else { ATTR_DB },
        unusable: false,
    }
}

fn flat_data(sel: u16, dpl: u8) -> Seg {
    Seg {
        selector: sel,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0x3 | ATTR_S | ((dpl as u16) << 5) | ATTR_P | ATTR_G | ATTR_DB,
        unusable: false,
    }
}

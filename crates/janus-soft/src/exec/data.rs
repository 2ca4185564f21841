//! Data movement: MOV and its extending forms, LEA, XCHG, the stack, flag transfers, CMOVcc,
//! SETcc, ENTER/LEAVE, XLAT.

use super::{
    ea, get, mem_get, peek, pop, push, put, reg_get, reg_put, set_sp, stack_width, Insn, Opnd,
};
use crate::core::{Cpu, Fault, Flow, Step};
use crate::cpu::{Mode, SS};
use crate::flags::{self, mask, sext};

pub fn mov(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = get(cpu, insn, 1, size)?;
    put(cpu, insn, 0, size, v)?;
    Ok(Flow::Next)
}

/// MOV reg, reg at operand size `SIZE`, without operand dispatch.
pub fn mov_rr<const SIZE: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (Opnd::Reg(d), Opnd::Reg(s)) = (insn.op[0], insn.op[1]) else {
        return mov(cpu, insn);
    };
    let v = reg_get(cpu, s, SIZE);
    reg_put(cpu, d, SIZE, v);
    Ok(Flow::Next)
}

/// MOV reg, imm at operand size `SIZE`.
pub fn mov_ri<const SIZE: u8>(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (Opnd::Reg(d), Opnd::Imm(v)) = (insn.op[0], insn.op[1]) else {
        return mov(cpu, insn);
    };
    reg_put(cpu, d, SIZE, v);
    Ok(Flow::Next)
}

pub fn movzx(cpu: &mut Cpu, insn: &Insn) -> Step {
    let v = get(cpu, insn, 1, insn.ssize)?;
    put(cpu, insn, 0, insn.osize, v)?;
    Ok(Flow::Next)
}

/// MOVSX and MOVSXD.
pub fn movsx(cpu: &mut Cpu, insn: &Insn) -> Step {
    let v = get(cpu, insn, 1, insn.ssize)?;
    put(cpu, insn, 0, insn.osize, sext(v, insn.ssize) as u64)?;
    Ok(Flow::Next)
}

pub fn lea(cpu: &mut Cpu, insn: &Insn) -> Step {
    let a = ea(cpu, insn);
    put(cpu, insn, 0, insn.osize, a)?;
    Ok(Flow::Next)
}

pub fn xchg(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let a = get(cpu, insn, 0, size)?;
    let b = get(cpu, insn, 1, size)?;
    // The memory operand (if any) is operand 0 or 1; write it first so a fault changes nothing.
    if insn.op[1] == Opnd::Mem {
        put(cpu, insn, 1, size, a)?;
        put(cpu, insn, 0, size, b)?;
    } else {
        put(cpu, insn, 0, size, b)?;
        put(cpu, insn, 1, size, a)?;
    }
    Ok(Flow::Next)
}

/// PUSH r/m, PUSH imm. `osize` is the number of bytes pushed.
pub fn push_op(cpu: &mut Cpu, insn: &Insn) -> Step {
    let v = get(cpu, insn, 0, insn.osize)?;
    push(cpu, insn.osize, v)?;
    Ok(Flow::Next)
}

/// POP r/m. A memory destination addressed through RSP sees RSP after the pop.
pub fn pop_op(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = peek(cpu, size, 0)?;
    let old_sp = cpu.r.gpr[4];
    let w = stack_width(cpu);
    let new_sp = old_sp.wrapping_add(size as u64);
    set_sp(cpu, new_sp);
    if let Err(e) = put(cpu, insn, 0, size, v) {
        reg_put(cpu, 4, w, old_sp);
        return Err(e);
    }
    Ok(Flow::Next)
}

/// PUSHF/PUSHFD/PUSHFQ: the image has RF and VM clear.
pub fn pushf(cpu: &mut Cpu, insn: &Insn) -> Step {
    if cpu.r.mode() != Mode::Real && cpu.r.flags.bits & flags::VM != 0 && cpu.r.flags.iopl() < 3 {
        return Err(Fault::gp(0).into());
    }
    let v = cpu.r.flags.get() & !(flags::RF | flags::VM);
    push(cpu, insn.osize, v)?;
    Ok(Flow::Next)
}

/// POPF/POPFD/POPFQ with the privilege rules: IOPL changes only at CPL 0, IF only when
/// CPL <= IOPL; VM, VIP and VIF never change; RF is cleared.
pub fn popf(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = pop(cpu, size)?;
    let cur = cpu.r.flags.get();
    let cpl = cpu.cpl();
    let mut changeable = flags::ARITH | flags::TF | flags::DF | flags::NT | flags::AC | flags::ID;
    if cpl == 0 || cpu.r.mode() == Mode::Real {
        changeable |= flags::IOPL;
    }
    if cpl <= cpu.r.flags.iopl() || cpu.r.mode() == Mode::Real {
        changeable |= flags::IF;
    }
    changeable &= mask(size);
    let new = ((cur & !changeable) | (v & changeable)) & !flags::RF;
    cpu.r.flags.load(new);
    // IF may have changed: end the block so pending interrupts are looked at.
    Ok(Flow::Resync)
}

pub fn lahf(cpu: &mut Cpu, _: &Insn) -> Step {
    let f = cpu.r.flags.get() & 0xd5 | flags::FIXED1;
    reg_put(cpu, 16, 1, f);
    Ok(Flow::Next)
}

pub fn sahf(cpu: &mut Cpu, _: &Insn) -> Step {
    let ah = (cpu.r.gpr[0] >> 8) & 0xd5;
    let f = &mut cpu.r.flags;
    f.materialize();
    f.bits = (f.bits & !0xd5) | ah;
    Ok(Flow::Next)
}

/// CMOVcc: the source is read (and may fault) either way; a 32-bit destination is written
/// (zero-extended) even when the condition is false.
pub fn cmov(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let src = get(cpu, insn, 1, size)?;
    let v = if cpu.r.flags.cond(insn.cc) {
        src
    } else {
        get(cpu, insn, 0, size)?
    };
    put(cpu, insn, 0, size, v)?;
    Ok(Flow::Next)
}

pub fn setcc(cpu: &mut Cpu, insn: &Insn) -> Step {
    let v = cpu.r.flags.cond(insn.cc) as u64;
    put(cpu, insn, 0, 1, v)?;
    Ok(Flow::Next)
}

/// ENTER imm16, imm8: make a stack frame with `level` nesting levels.
pub fn enter(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let alloc = insn.i.immediate(0) & 0xffff;
    let level = insn.i.immediate(1) & 0x1f;
    let w = stack_width(cpu);
    let old_sp = cpu.r.gpr[4];
    let old_bp = cpu.r.gpr[5];
    let result = (|| {
        push(cpu, size, reg_get(cpu, 5, size))?;
        let frame = cpu.r.gpr[4] & mask(w);
        if level > 0 {
            let mut bp = old_bp;
            for _ in 1..level {
                bp = bp.wrapping_sub(size as u64);
                let v = mem_get(cpu, SS, bp & mask(w), size)?;
                push(cpu, size, v)?;
            }
            push(cpu, size, frame)?;
        }
        let sp = cpu.r.gpr[4].wrapping_sub(alloc);
        // The new stack top must be writable.
        cpu.probe_write(SS, sp & mask(w), 1)?;
        reg_put(cpu, 5, size, frame);
        set_sp(cpu, sp);
        Ok(())
    })();
    if let Err(e) = result {
        cpu.r.gpr[4] = old_sp;
        cpu.r.gpr[5] = old_bp;
        return Err(e);
    }
    Ok(Flow::Next)
}

pub fn leave(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let w = stack_width(cpu);
    let bp = cpu.r.gpr[5] & mask(w);
    let v = mem_get(cpu, SS, bp, size)?;
    set_sp(cpu, bp.wrapping_add(size as u64));
    reg_put(cpu, 5, size, v);
    Ok(Flow::Next)
}

/// PUSHA/PUSHAD (16/32-bit code).
pub fn pusha(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let sp = cpu.r.gpr[4];
    let w = stack_width(cpu);
    let mut t = sp;
    let regs = [0usize, 1, 2, 3, 4, 5, 6, 7];
    // Check the whole frame is writable first.
    let total = 8 * size as u64;
    cpu.probe_write(SS, sp.wrapping_sub(total) & mask(w), total as u32)?;
    for r in regs {
        let v = if r == 4 { sp } else { cpu.r.gpr[r] };
        t = t.wrapping_sub(size as u64);
        super::mem_put(cpu, SS, t & mask(w), size, v & mask(size))?;
    }
    set_sp(cpu, t);
    Ok(Flow::Next)
}

/// POPA/POPAD (16/32-bit code); the stored SP is skipped.
pub fn popa(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let mut vals = [0u64; 8];
    for (i, v) in vals.iter_mut().enumerate() {
        *v = peek(cpu, size, (i * size as usize) as u64)?;
    }
    let regs = [7usize, 6, 5, 4, 3, 2, 1, 0];
    for (i, r) in regs.into_iter().enumerate() {
        if r != 4 {
            reg_put(cpu, r as u8, size, vals[i]);
        }
    }
    let sp = cpu.r.gpr[4].wrapping_add(8 * size as u64);
    set_sp(cpu, sp);
    Ok(Flow::Next)
}

/// XLAT: AL = [seg:rBX + AL].
pub fn xlat(cpu: &mut Cpu, insn: &Insn) -> Step {
    let base = cpu.r.gpr[3].wrapping_add(cpu.r.gpr[0] & 0xff);
    let off = match insn.asize {
        8 => base,
        4 => base & 0xffff_ffff,
        _ => base & 0xffff,
    };
    let v = mem_get(cpu, insn.mem.seg as usize, off, 1)?;
    reg_put(cpu, 0, 1, v);
    Ok(Flow::Next)
}

pub fn nop(_: &mut Cpu, _: &Insn) -> Step {
    Ok(Flow::Next)
}

/// CLFLUSH/CLFLUSHOPT: the engine has no cache to write back, but the address is still
/// checked like a byte load (#GP/#SS for a bad segment offset, #PF for an unmapped page).
pub fn clflush(cpu: &mut Cpu, insn: &Insn) -> Step {
    let off = ea(cpu, insn);
    cpu.probe_read(insn.mem.seg as usize, off, 1)?;
    Ok(Flow::Next)
}

/// CLC, STC, CMC, CLD, STD.
pub fn flag_op<const WHICH: u8>(cpu: &mut Cpu, _: &Insn) -> Step {
    let f = &mut cpu.r.flags;
    match WHICH {
        0 => f.assign(flags::CF, false),
        1 => f.assign(flags::CF, true),
        2 => {
            let cf = f.cf();
            f.assign(flags::CF, !cf)
        }
        3 => f.assign(flags::DF, false),
        _ => f.assign(flags::DF, true),
    }
    Ok(Flow::Next)
}

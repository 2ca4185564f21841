//! x87 floating-point instructions.
//!
//! The guest register stack (TOP, tags, the eight physical registers) lives in [`Fpu`]; every
//! numeric operation runs on the host FPU (see [`host`]), so results, exception flags and
//! condition codes are bit-exact with hardware. Stack overflow and underflow, the tag word,
//! the instruction and data pointers and the #NM/#MF rules are done here in software.
//!
//! Each handler first makes every memory access that can fault, then changes the FPU state,
//! so an instruction that faults leaves everything as it was.
//!
//! Two [`Insn`] fields carry x87 facts computed once at decode time: `ssize` holds the index
//! `i` of the ST(i) operand, `rel` the 11-bit FOP value with the ModRM bits of the encoding.

mod arith;
pub(crate) mod control;
mod host;
mod transfer;

#[cfg(test)]
mod tests;

use super::{ea, Handler, Insn, Opnd};
use crate::core::{vector, Cpu, Fault, Stop};
use crate::cpu::{Mode, CS};
use crate::fpu::Fpu;
use crate::mmu::Acc;
use host::F80;
use iced_x86::{Code, Instruction, Register};
use janus_engine::cpu::bits::{CR0_EM, CR0_MP, CR0_NE, CR0_TS};

// ------------------------------------------------------------------ status word

pub(crate) const IE: u16 = 1 << 0;
pub(crate) const SF: u16 = 1 << 6;
pub(crate) const ES: u16 = 1 << 7;
pub(crate) const C0: u16 = 1 << 8;
pub(crate) const C1: u16 = 1 << 9;
pub(crate) const C2: u16 = 1 << 10;
pub(crate) const C3: u16 = 1 << 14;
pub(crate) const B: u16 = 1 << 15;
/// The six exception flags (and the six mask bits of the control word).
pub(crate) const EXC: u16 = 0x3f;
/// All four condition codes.
pub(crate) const CC: u16 = C0 | C1 | C2 | C3;

/// `fsw` with ES and B set if an exception flag is set whose mask is clear, else cleared:
/// what the FPU recomputes whenever the control word or status word is loaded.
pub(crate) fn summarize(fsw: u16, fcw: u16) -> u16 {
    if fsw & !fcw & EXC != 0 {
        fsw | ES | B
    } else {
        fsw & !(ES | B)
    }
}

/// The status word after an instruction whose host run ended with status `host_sw`: the
/// condition codes in `cmask` come from the host, the exception flags accumulate, and an
/// unmasked one raises ES and B (the #MF waits for the next waiting instruction).
pub(crate) fn merged(fsw: u16, fcw: u16, host_sw: u16, cmask: u16) -> u16 {
    let fsw = (fsw & !cmask) | (host_sw & cmask) | (host_sw & EXC);
    if fsw & !fcw & EXC != 0 {
        fsw | ES | B
    } else {
        fsw
    }
}

/// The status word after a stack overflow (`over`) or underflow: invalid operation with SF,
/// C1 telling which.
pub(crate) fn stack_fault(fsw: u16, fcw: u16, over: bool) -> u16 {
    let c1 = if over { C1 } else { 0 };
    merged((fsw & !C1) | SF | c1, fcw, IE, 0)
}

/// The invalid-operation exception is masked: stack faults get the masked response.
pub(crate) fn masked_invalid(f: &Fpu) -> bool {
    f.fcw & IE != 0
}

// ------------------------------------------------------------------ register stack

/// Physical register of ST(i).
pub(crate) fn phys(f: &Fpu, i: usize) -> usize {
    (f.top() + i) & 7
}

pub(crate) fn is_empty(f: &Fpu, i: usize) -> bool {
    f.ftw & (1 << phys(f, i)) == 0
}

pub(crate) fn st(f: &Fpu, i: usize) -> F80 {
    F80::from_bytes(&f.st[phys(f, i)])
}

/// Writes ST(i) and tags it valid.
pub(crate) fn set_st(f: &mut Fpu, i: usize, v: F80) {
    let p = phys(f, i);
    f.st[p] = [0; 16];
    f.st[p][..10].copy_from_slice(&v.to_bytes());
    f.ftw |= 1 << p;
}

pub(crate) fn set_top(f: &mut Fpu, top: usize) {
    f.fsw = (f.fsw & !(7 << 11)) | ((top as u16 & 7) << 11);
}

/// Decrements TOP and writes the new ST(0).
pub(crate) fn push(f: &mut Fpu, v: F80) {
    set_top(f, f.top().wrapping_sub(1));
    set_st(f, 0, v);
}

/// Tags ST(0) empty and increments TOP (the register keeps its contents).
pub(crate) fn pop(f: &mut Fpu) {
    f.ftw &= !(1 << phys(f, 0));
    set_top(f, f.top() + 1);
}

/// Stack underflow: the masked response writes the indefinite NaN to ST(dest), if the
/// instruction has a register destination, and pops `pops` times; unmasked, only the status
/// word changes (ES and B flag the pending #MF).
pub(crate) fn underflow(f: &mut Fpu, dest: Option<usize>, pops: usize) {
    f.fsw = stack_fault(f.fsw, f.fcw, false);
    if masked_invalid(f) {
        if let Some(d) = dest {
            set_st(f, d, F80::INDEFINITE);
        }
        for _ in 0..pops {
            pop(f);
        }
    }
}

/// Stack overflow on a push: the masked response pushes the indefinite NaN.
pub(crate) fn overflow(f: &mut Fpu) {
    f.fsw = stack_fault(f.fsw, f.fcw, true);
    if masked_invalid(f) {
        push(f, F80::INDEFINITE);
    }
}

// ------------------------------------------------------------------ checks and pointers

/// #NM when CR0.EM or CR0.TS is set; then, for waiting forms, #MF if an unmasked exception
/// is pending (with CR0.NE; without it the error would go out on FERR#, which the soft CPU
/// does not wire, so it is ignored as if IGNNE# were asserted).
pub(crate) fn check(cpu: &Cpu, wait: bool) -> Result<(), Stop> {
    if cpu.r.cr0 & (CR0_EM | CR0_TS) != 0 {
        return Err(Fault::new(vector::NM).into());
    }
    if wait && mf_pending(cpu) {
        return Err(Fault::new(vector::MF).into());
    }
    Ok(())
}

pub(crate) fn mf_pending(cpu: &Cpu) -> bool {
    cpu.r.fpu.fsw & ES != 0 && cpu.r.cr0 & CR0_NE != 0
}

/// FWAIT: #NM only when both CR0.TS and CR0.MP are set, then the pending-#MF check.
pub(crate) fn check_wait(cpu: &Cpu) -> Result<(), Stop> {
    if cpu.r.cr0 & (CR0_TS | CR0_MP) == CR0_TS | CR0_MP {
        return Err(Fault::new(vector::NM).into());
    }
    if mf_pending(cpu) {
        return Err(Fault::new(vector::MF).into());
    }
    Ok(())
}

/// Index of the ST(i) operand (decode-time fact, see the module comment).
pub(crate) fn sti(insn: &Insn) -> usize {
    insn.ssize as usize & 7
}

/// Records a non-control instruction in FOP, FIP and (with a memory operand) FDP. Outside
/// 64-bit mode the pointers hold selector:offset as FXSAVE lays them out (offset in bits
/// 0..=31, selector in 32..=47); in 64-bit mode they are the 64-bit RIP and operand offset.
pub(crate) fn note(cpu: &mut Cpu, insn: &Insn) {
    let mem = insn.op[0] == Opnd::Mem || insn.op[1] == Opnd::Mem;
    let fdp = mem.then(|| {
        let off = ea(cpu, insn);
        if cpu.long64 {
            off
        } else {
            ((cpu.r.seg[insn.mem.seg as usize].selector as u64) << 32) | (off & 0xffff_ffff)
        }
    });
    let fip = if cpu.long64 {
        cpu.r.rip
    } else {
        ((cpu.r.seg[CS].selector as u64) << 32) | (cpu.r.rip & 0xffff_ffff)
    };
    let f = &mut cpu.r.fpu;
    f.fop = insn.rel as u16 & 0x7ff;
    f.fip = fip;
    if let Some(d) = fdp {
        f.fdp = d;
    }
}

/// Real-address or virtual-8086 mode (the real-mode FSTENV/FSAVE layouts).
pub(crate) fn real_layout(cpu: &Cpu) -> bool {
    cpu.r.mode() == Mode::Real || cpu.r.flags.bits & crate::flags::VM != 0
}

// ------------------------------------------------------------------ memory

/// Offset `k` bytes into the memory operand, wrapped to the address size.
fn offset(insn: &Insn, base: u64, k: usize) -> u64 {
    let a = base.wrapping_add(k as u64);
    match insn.asize {
        8 => a,
        4 => a & 0xffff_ffff,
        _ => a & 0xffff,
    }
}

/// The largest access (8, 4, 2 or 1 bytes) for the next piece of `left` bytes at `off`. An
/// environment or state image (`image`) is accessed piece by piece and no piece crosses a
/// page, so that, as on the host, a #PF on an early page comes before a #GP for a later,
/// non-canonical one.
fn piece(off: u64, left: usize, image: bool) -> usize {
    let room = if image {
        left.min(4096 - (off & 0xfff) as usize)
    } else {
        left
    };
    match room {
        8.. => 8,
        4..=7 => 4,
        2..=3 => 2,
        _ => 1,
    }
}

/// The largest single x87 memory operand (m80fp, m80bcd); anything longer is an image.
const OPERAND_MAX: usize = 10;

/// Reads `buf.len()` bytes of the memory operand.
pub(crate) fn read_bytes(cpu: &mut Cpu, insn: &Insn, buf: &mut [u8]) -> Result<(), Stop> {
    let seg = insn.mem.seg as usize;
    let base = ea(cpu, insn);
    let image = buf.len() > OPERAND_MAX;
    if !image {
        // An operand is one access: it passes the segment and canonical checks whole before
        // any part is read.
        cpu.linear(seg, base, buf.len() as u32, Acc::Read)?;
    }
    let mut k = 0;
    while k < buf.len() {
        let off = offset(insn, base, k);
        let n = piece(off, buf.len() - k, image);
        let v = match n {
            8 => cpu.read::<u64>(seg, off)?,
            4 => cpu.read::<u32>(seg, off)? as u64,
            2 => cpu.read::<u16>(seg, off)? as u64,
            _ => cpu.read::<u8>(seg, off)? as u64,
        };
        buf[k..k + n].copy_from_slice(&v.to_le_bytes()[..n]);
        k += n;
    }
    Ok(())
}

/// Reads `len` (at most 16) bytes of the memory operand into a zero-padded buffer.
pub(crate) fn read_operand(cpu: &mut Cpu, insn: &Insn, len: usize) -> Result<[u8; 16], Stop> {
    let mut buf = [0u8; 16];
    read_bytes(cpu, insn, &mut buf[..len.min(OPERAND_MAX)])?;
    Ok(buf)
}

/// Checks the destination of a store whose value an unmasked exception suppressed: the
/// hardware still makes the access check (and faults on it) without writing.
pub(crate) fn probe_dest(cpu: &mut Cpu, insn: &Insn, size: usize) -> Result<(), Stop> {
    let off = ea(cpu, insn);
    cpu.probe_write(insn.mem.seg as usize, off, size as u32)
}

/// Writes `bytes` to the memory operand, all or nothing: the whole range is checked first
/// (an image piece by piece, in order).
pub(crate) fn write_bytes(cpu: &mut Cpu, insn: &Insn, bytes: &[u8]) -> Result<(), Stop> {
    let seg = insn.mem.seg as usize;
    let base = ea(cpu, insn);
    let image = bytes.len() > OPERAND_MAX;
    if !image {
        cpu.probe_write(seg, base, bytes.len() as u32)?;
    } else {
        let mut k = 0;
        while k < bytes.len() {
            let off = offset(insn, base, k);
            let n = piece(off, bytes.len() - k, true);
            cpu.probe_write(seg, off, n as u32)?;
            k += n;
        }
    }
    let mut k = 0;
    while k < bytes.len() {
        let off = offset(insn, base, k);
        let n = piece(off, bytes.len() - k, image);
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&bytes[k..k + n]);
        let v = u64::from_le_bytes(v);
        match n {
            8 => cpu.write::<u64>(seg, off, v)?,
            4 => cpu.write::<u32>(seg, off, v as u32)?,
            2 => cpu.write::<u16>(seg, off, v as u16)?,
            _ => cpu.write::<u8>(seg, off, v as u8)?,
        }
        k += n;
    }
    Ok(())
}

// ------------------------------------------------------------------ decode

/// The handler for `insn` if it belongs to this group. Also stores the ST(i) index and the
/// FOP value in `insn` (see the module comment).
pub fn handler(insn: &mut Insn) -> Option<Handler> {
    let (exec, fop_base) = entry(insn.i.code())?;
    let i = insn.i;
    let st_index = (0..i.op_count())
        .filter_map(|k| st_register(&i, k))
        .max()
        .unwrap_or(0);
    insn.ssize = st_index;
    let memory = insn.op[0] == Opnd::Mem || insn.op[1] == Opnd::Mem;
    insn.rel = if memory {
        (fop_base | modrm_mem(&i) as u16) as i64
    } else {
        (fop_base + st_index as u16) as i64
    };
    Some(exec)
}

/// The index of ST(i) if operand `k` is an x87 register.
fn st_register(i: &Instruction, k: u32) -> Option<u8> {
    if i.op_kind(k) != iced_x86::OpKind::Register {
        return None;
    }
    let r = i.op_register(k) as u32;
    let st0 = Register::ST0 as u32;
    (st0..st0 + 8).contains(&r).then(|| (r - st0) as u8)
}

/// The mod and r/m bits of the ModRM byte that encoded this memory operand, rebuilt from
/// the decoded operand (the reg field comes from the opcode table).
fn modrm_mem(i: &Instruction) -> u8 {
    use Register::{None as NoReg, BP, BX, DI, EIP, RIP, SI};
    let (base, index) = (i.memory_base(), i.memory_index());
    let md = match (base, i.memory_displ_size()) {
        (NoReg | RIP | EIP, _) | (_, 0) => 0,
        (_, 1) => 0x40,
        _ => 0x80,
    };
    let addr16 = base.is_gpr16()
        || index.is_gpr16()
        || (base == NoReg && index == NoReg && i.memory_displ_size() == 2);
    let rm = if addr16 {
        match (base, index) {
            (BX, SI) => 0,
            (BX, DI) => 1,
            (BP, SI) => 2,
            (BP, DI) => 3,
            (SI, _) => 4,
            (DI, _) => 5,
            (BP, _) | (NoReg, _) => 6,
            _ => 7,
        }
    } else {
        match base {
            RIP | EIP => 5,
            // [disp32]: r/m 101 outside 64-bit mode, where that encoding means RIP-relative
            // and an absolute address needs a SIB byte.
            NoReg if index == NoReg && i.code_size() != iced_x86::CodeSize::Code64 => 5,
            NoReg => 4,
            _ if index != NoReg => 4,
            b => crate::decode::gpr(b).map_or(0, |(n, _)| n & 7),
        }
    };
    md | rm
}

/// The handler and FOP base (low three bits of the D8..DF opcode in bits 8..=10, then the
/// ModRM reg field, or the whole second byte for register forms) of each x87 encoding.
fn entry(code: Code) -> Option<(Handler, u16)> {
    arith::entry(code)
        .or_else(|| transfer::entry(code))
        .or_else(|| control::entry(code))
}

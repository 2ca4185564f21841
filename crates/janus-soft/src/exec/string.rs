//! String instructions (MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS) with REP prefixes.
//!
//! A REP instruction runs up to [`BUDGET`] iterations per execution and then yields with RIP
//! still on it, so interrupts are taken between iterations as on hardware. Registers are
//! updated after every iteration, so a fault or an I/O exit leaves exactly the completed
//! iterations done. `rep movs` and `rep stos` with DF clear copy whole runs within a page
//! directly when both sides are RAM.

use super::{mem_get, mem_put, reg_put, Insn};
use crate::core::{Cpu, Exit, Flow, Step};
use crate::cpu::ES;
use crate::flags::{mask, Op};
use crate::mmu::Acc;

/// Iterations a REP instruction runs before yielding.
pub const BUDGET: u32 = 65_536;

/// rSI, rDI or rCX at the address size.
#[inline(always)]
fn areg(cpu: &Cpu, insn: &Insn, r: usize) -> u64 {
    cpu.r.gpr[r] & mask(insn.asize)
}

#[inline(always)]
fn advance(cpu: &mut Cpu, insn: &Insn, r: usize, by: u64) {
    let v = cpu.r.gpr[r].wrapping_add(by);
    reg_put(cpu, r as u8, insn.asize, v);
}

#[inline(always)]
fn delta(cpu: &Cpu, size: u8) -> u64 {
    if cpu.r.flags.df() {
        (size as u64).wrapping_neg()
    } else {
        size as u64
    }
}

/// One iteration done: count it down; says whether the instruction is finished.
#[inline(always)]
fn next(cpu: &mut Cpu, insn: &Insn, budget: &mut u32) -> Option<Flow> {
    cpu.io.clear();
    if insn.rep == 0 {
        return Some(Flow::Next);
    }
    let c = areg(cpu, insn, 1).wrapping_sub(1);
    reg_put(cpu, 1, insn.asize, c);
    if c & mask(insn.asize) == 0 {
        return Some(Flow::Next);
    }
    *budget -= 1;
    if *budget == 0 {
        return Some(Flow::Repeat);
    }
    None
}

/// `n` elements done at once: counts them down; says whether the instruction finished or must
/// yield (as `next` does for one).
fn bulk_done(cpu: &mut Cpu, insn: &Insn, n: u64, budget: &mut u32) -> Option<Flow> {
    let c = areg(cpu, insn, 1) - n;
    reg_put(cpu, 1, insn.asize, c);
    if c == 0 {
        return Some(Flow::Next);
    }
    *budget = budget.saturating_sub(n as u32);
    (*budget == 0).then_some(Flow::Repeat)
}

/// Host pointer for `len` bytes at `seg:off` if they are RAM within one page (translating
/// with the current privilege); `None` sends the caller down the element-by-element path.
fn direct(cpu: &mut Cpu, seg: usize, off: u64, len: u64, acc: Acc) -> Option<*mut u8> {
    let lin = cpu.linear(seg, off, len as u32, acc).ok()?;
    if (lin & 0xfff) + len > 4096 {
        return None;
    }
    let user = cpu.mmu_idx == 1;
    let pa = cpu.translate(lin, acc, user).ok()?;
    if acc == Acc::Write && cpu.mem.is_code_page(pa >> 12) {
        cpu.code_written.push(pa >> 12);
    }
    cpu.mem.host(pa, len)
}

/// Bytes a bulk run may cover: the rest of both pages, the count, and the address-size wrap.
fn run_len(cpu: &Cpu, insn: &Insn, offs: &[u64], size: u8) -> u64 {
    let count = areg(cpu, insn, 1);
    let mut n = count.min(BUDGET as u64);
    for &o in offs {
        let room = (4096 - (o & 0xfff)) / size as u64;
        let wrap = (mask(insn.asize) - o) / size as u64 + 1;
        n = n.min(room).min(wrap);
    }
    n
}

pub fn movs(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let src_seg = insn.mem.seg as usize;
    let mut budget = BUDGET;
    loop {
        if insn.rep != 0 && areg(cpu, insn, 1) == 0 {
            return Ok(Flow::Next);
        }
        let (si, di) = (areg(cpu, insn, 6), areg(cpu, insn, 7));
        if insn.rep != 0 && !cpu.r.flags.df() {
            let n = run_len(cpu, insn, &[si, di], size);
            if n > 1 {
                let len = n * size as u64;
                if let (Some(s), Some(d)) = (
                    direct(cpu, src_seg, si, len, Acc::Read),
                    direct(cpu, ES, di, len, Acc::Write),
                ) {
                    copy_forward(d, s, n as usize, size as usize);
                    advance(cpu, insn, 6, len);
                    advance(cpu, insn, 7, len);
                    if let Some(f) = bulk_done(cpu, insn, n, &mut budget) {
                        return Ok(f);
                    }
                    continue;
                }
            }
        }
        let v = mem_get(cpu, src_seg, si, size)?;
        mem_put(cpu, ES, di, size, v)?;
        let d = delta(cpu, size);
        advance(cpu, insn, 6, d);
        advance(cpu, insn, 7, d);
        if let Some(f) = next(cpu, insn, &mut budget) {
            return Ok(f);
        }
    }
}

/// Copies `n` elements of `size` bytes like a forward `rep movs` does, also when the ranges
/// overlap: with the destination above the source, earlier stores feed later loads (which
/// `memmove` would not do), one whole element at a time.
fn copy_forward(dst: *mut u8, src: *const u8, n: usize, size: usize) {
    let (d, s, len) = (dst as usize, src as usize, n * size);
    if d <= s || d >= s + len {
        // SAFETY: both ranges were checked to be `len` bytes of guest RAM by `direct`; a forward
        // copy with the destination below the source (or disjoint) is what memmove does.
        unsafe { std::ptr::copy(src, dst, len) };
        return;
    }
    let mut elem = [0u8; 8];
    for i in 0..n {
        // SAFETY: as above; each element is loaded whole before it is stored, so an element
        // that overlaps its own source sees the bytes as they were before this step.
        unsafe {
            std::ptr::copy_nonoverlapping(src.add(i * size), elem.as_mut_ptr(), size);
            std::ptr::copy_nonoverlapping(elem.as_ptr(), dst.add(i * size), size);
        }
    }
}

pub fn stos(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let v = cpu.r.gpr[0] & mask(size);
    let mut budget = BUDGET;
    loop {
        if insn.rep != 0 && areg(cpu, insn, 1) == 0 {
            return Ok(Flow::Next);
        }
        let di = areg(cpu, insn, 7);
        if insn.rep != 0 && !cpu.r.flags.df() {
            let n = run_len(cpu, insn, &[di], size);
            if n > 1 {
                let len = n * size as u64;
                if let Some(d) = direct(cpu, ES, di, len, Acc::Write) {
                    fill(d, v, size, n as usize);
                    advance(cpu, insn, 7, len);
                    if let Some(f) = bulk_done(cpu, insn, n, &mut budget) {
                        return Ok(f);
                    }
                    continue;
                }
            }
        }
        mem_put(cpu, ES, di, size, v)?;
        let d = delta(cpu, size);
        advance(cpu, insn, 7, d);
        if let Some(f) = next(cpu, insn, &mut budget) {
            return Ok(f);
        }
    }
}

fn fill(dst: *mut u8, v: u64, size: u8, n: usize) {
    // SAFETY: `direct` checked `n * size` bytes of guest RAM at `dst`.
    unsafe {
        match size {
            1 => std::ptr::write_bytes(dst, v as u8, n),
            2 => (0..n).for_each(|i| std::ptr::write_unaligned((dst as *mut u16).add(i), v as u16)),
            4 => (0..n).for_each(|i| std::ptr::write_unaligned((dst as *mut u32).add(i), v as u32)),
            _ => (0..n).for_each(|i| std::ptr::write_unaligned((dst as *mut u64).add(i), v)),
        }
    }
}

pub fn lods(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let seg = insn.mem.seg as usize;
    let mut budget = BUDGET;
    loop {
        if insn.rep != 0 && areg(cpu, insn, 1) == 0 {
            return Ok(Flow::Next);
        }
        let v = mem_get(cpu, seg, areg(cpu, insn, 6), size)?;
        reg_put(cpu, 0, size, v);
        let d = delta(cpu, size);
        advance(cpu, insn, 6, d);
        if let Some(f) = next(cpu, insn, &mut budget) {
            return Ok(f);
        }
    }
}

/// CMPS and SCAS: REPE stops on a difference, REPNE on a match.
fn compare_loop(cpu: &mut Cpu, insn: &Insn, scas: bool) -> Step {
    let size = insn.osize;
    let seg = insn.mem.seg as usize;
    let mut budget = BUDGET;
    loop {
        if insn.rep != 0 && areg(cpu, insn, 1) == 0 {
            return Ok(Flow::Next);
        }
        let d = delta(cpu, size);
        let (a, b) = if scas {
            let b = mem_get(cpu, ES, areg(cpu, insn, 7), size)?;
            (cpu.r.gpr[0] & mask(size), b)
        } else {
            let a = mem_get(cpu, seg, areg(cpu, insn, 6), size)?;
            let b = mem_get(cpu, ES, areg(cpu, insn, 7), size)?;
            advance(cpu, insn, 6, d);
            (a, b)
        };
        advance(cpu, insn, 7, d);
        cpu.r.flags.set(Op::Sub, size, a.wrapping_sub(b), a, b);
        if let Some(f) = next(cpu, insn, &mut budget) {
            return Ok(f);
        }
        let equal = a == b;
        if (insn.rep == 1 && !equal) || (insn.rep == 2 && equal) {
            return Ok(Flow::Next);
        }
    }
}

pub fn cmps(cpu: &mut Cpu, insn: &Insn) -> Step {
    compare_loop(cpu, insn, false)
}

pub fn scas(cpu: &mut Cpu, insn: &Insn) -> Step {
    compare_loop(cpu, insn, true)
}

/// Elements of a forward REP INS/OUTS at `off` that can go in one exit: the rest of the page,
/// the count, at most a page; 0 or 1 means element by element.
fn string_io_run(cpu: &mut Cpu, insn: &Insn, seg: usize, off: u64, acc: Acc) -> u64 {
    if insn.rep == 0 || cpu.r.flags.df() {
        return 0;
    }
    let size = insn.osize;
    let n = run_len(cpu, insn, &[off], size).min(4096 / size as u64);
    if n > 1 && direct(cpu, seg, off, n * size as u64, acc).is_some() {
        n
    } else {
        0
    }
}

/// Counts `n` elements of a string instruction done; says whether it finished or must yield.
fn string_io_done(
    cpu: &mut Cpu,
    insn: &Insn,
    reg: usize,
    n: u64,
    budget: &mut u32,
) -> Option<Flow> {
    cpu.io.clear();
    advance(cpu, insn, reg, n * insn.osize as u64);
    bulk_done(cpu, insn, n, budget)
}

/// A forward REP INS into RAM: a page at a time, one exit each.
fn ins_run(cpu: &mut Cpu, insn: &Insn, port: u16, n: u64) -> Result<(), crate::core::Stop> {
    let size = insn.osize;
    let len = n * size as u64;
    if cpu.io.replay().is_none() || cpu.io.bulk.len() as u64 != len {
        return Err(cpu.exit(Exit::PioInString {
            port,
            size,
            count: n as u16,
        }));
    }
    let di = areg(cpu, insn, 7);
    // Checked by `string_io_run` before the exit; no guest code ran since to change the mapping.
    let Some(dst) = direct(cpu, ES, di, len, Acc::Write) else {
        return Err(cpu.fail(format!(
            "REP INS destination {di:#x} stopped being RAM during its exit"
        )));
    };
    // SAFETY: `direct` checked that `len` bytes at `dst` are guest RAM within one page.
    unsafe { std::ptr::copy_nonoverlapping(cpu.io.bulk.as_ptr(), dst, len as usize) };
    Ok(())
}

/// INS: port input to ES:rDI; a forward REP INS into RAM takes one exit per page, as on KVM,
/// anything else one exit per element.
pub fn ins(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let port = cpu.r.gpr[2] as u16;
    super::system::check_io(cpu, port, size)?;
    let mut budget = BUDGET;
    loop {
        if insn.rep != 0 && areg(cpu, insn, 1) == 0 {
            return Ok(Flow::Next);
        }
        let di = areg(cpu, insn, 7);
        let n = string_io_run(cpu, insn, ES, di, Acc::Write);
        if n > 1 {
            ins_run(cpu, insn, port, n)?;
            match string_io_done(cpu, insn, 7, n, &mut budget) {
                Some(f) => return Ok(f),
                None => continue,
            }
        }
        // The destination must be writable before the device is read.
        cpu.probe_write(ES, di, size as u32)?;
        let v = match cpu.io.replay() {
            Some(Some(v)) => v,
            _ => return Err(cpu.exit(Exit::PioIn { port, size })),
        };
        mem_put(cpu, ES, di, size, v)?;
        let d = delta(cpu, size);
        advance(cpu, insn, 7, d);
        if let Some(f) = next(cpu, insn, &mut budget) {
            return Ok(f);
        }
    }
}

/// OUTS: port output from seg:rSI; a forward REP OUTS from RAM takes one exit per page, as
/// on KVM, anything else one exit per element.
pub fn outs(cpu: &mut Cpu, insn: &Insn) -> Step {
    let size = insn.osize;
    let port = cpu.r.gpr[2] as u16;
    let seg = insn.mem.seg as usize;
    super::system::check_io(cpu, port, size)?;
    let mut budget = BUDGET;
    loop {
        if insn.rep != 0 && areg(cpu, insn, 1) == 0 {
            return Ok(Flow::Next);
        }
        let si = areg(cpu, insn, 6);
        let n = string_io_run(cpu, insn, seg, si, Acc::Read);
        if n > 1 {
            if cpu.io.replay().is_none() {
                let len = n as usize * size as usize;
                let Some(src) = direct(cpu, seg, si, len as u64, Acc::Read) else {
                    return Err(cpu.fail(format!("REP OUTS source {si:#x} is not RAM")));
                };
                cpu.io.bulk.clear();
                // SAFETY: `direct` checked that `len` bytes at `src` are guest RAM in one page.
                cpu.io
                    .bulk
                    .extend_from_slice(unsafe { std::slice::from_raw_parts(src, len) });
                return Err(cpu.exit(Exit::PioOutString {
                    port,
                    size,
                    count: n as u16,
                }));
            }
            match string_io_done(cpu, insn, 6, n, &mut budget) {
                Some(f) => return Ok(f),
                None => continue,
            }
        }
        let v = mem_get(cpu, seg, areg(cpu, insn, 6), size)?;
        if cpu.io.replay().is_none() {
            return Err(cpu.exit(Exit::PioOut {
                port,
                size,
                value: v as u32,
            }));
        }
        let d = delta(cpu, size);
        advance(cpu, insn, 6, d);
        if let Some(f) = next(cpu, insn, &mut budget) {
            return Ok(f);
        }
    }
}

//! Control instructions: FINIT, FCLEX, FLDCW, FSTCW, FSTSW, FSTENV, FLDENV, FSAVE, FRSTOR,
//! FWAIT, and the 8087/80287 leftovers the FPU ignores. None of them updates FOP, FIP or FDP.

use super::host::{F80, TAG_EMPTY};
use super::{
    check, check_wait, phys, read_bytes, real_layout, summarize, write_bytes, B, ES, EXC, SF,
};
use crate::core::{Cpu, Flow, Step};
use crate::cpu::DS;
use crate::exec::{reg_put, Handler, Insn};
use crate::fpu::Fpu;
use iced_x86::Code;

/// Control-word bits that exist (the rest read as 0, bit 6 as 1).
const FCW_BITS: u16 = 0x1f3f;
const FCW_ONES: u16 = 0x0040;

macro_rules! e {
    ($h:expr) => {
        ($h as Handler, 0)
    };
}

/// Handlers of the control encodings (they have no FOP).
pub(super) fn entry(code: Code) -> Option<(Handler, u16)> {
    use Code::*;
    Some(match code {
        Fninit => e!(finit::<false>),
        Finit => e!(finit::<true>),
        Fnclex => e!(fclex::<false>),
        Fclex => e!(fclex::<true>),
        Fldcw_m2byte => e!(fldcw),
        Fnstcw_m2byte => e!(fstcw::<false>),
        Fstcw_m2byte => e!(fstcw::<true>),
        Fnstsw_m2byte => e!(fstsw::<false>),
        Fstsw_m2byte => e!(fstsw::<true>),
        Fnstsw_AX => e!(fstsw_ax::<false>),
        Fstsw_AX => e!(fstsw_ax::<true>),
        Fnstenv_m14byte => e!(fstenv::<false, false>),
        Fstenv_m14byte => e!(fstenv::<true, false>),
        Fnstenv_m28byte => e!(fstenv::<false, true>),
        Fstenv_m28byte => e!(fstenv::<true, true>),
        Fldenv_m14byte => e!(fldenv::<false>),
        Fldenv_m28byte => e!(fldenv::<true>),
        Fnsave_m94byte => e!(fsave::<false, false>),
        Fsave_m94byte => e!(fsave::<true, false>),
        Fnsave_m108byte => e!(fsave::<false, true>),
        Fsave_m108byte => e!(fsave::<true, true>),
        Frstor_m94byte => e!(frstor::<false>),
        Frstor_m108byte => e!(frstor::<true>),
        Wait => e!(fwait),
        Fneni | Fndisi | Fnsetpm => e!(ignored::<false>),
        Feni | Fdisi | Fsetpm => e!(ignored::<true>),
        _ => return None,
    })
}

/// FNINIT: the power-on FPU state (register contents are kept, but all are tagged empty).
fn reset(f: &mut Fpu) {
    f.fcw = 0x037f;
    f.fsw = 0;
    f.ftw = 0;
    f.fop = 0;
    f.fip = 0;
    f.fdp = 0;
}

fn finit<const WAIT: bool>(cpu: &mut Cpu, _: &Insn) -> Step {
    check(cpu, WAIT)?;
    reset(&mut cpu.r.fpu);
    Ok(Flow::Next)
}

/// FCLEX: clears the exception flags, SF, ES and B.
fn fclex<const WAIT: bool>(cpu: &mut Cpu, _: &Insn) -> Step {
    check(cpu, WAIT)?;
    cpu.r.fpu.fsw &= !(EXC | SF | ES | B);
    Ok(Flow::Next)
}

/// Stores `fcw` as the FPU keeps it and recomputes ES and B: unmasking an exception whose flag
/// is set makes it pending.
pub(crate) fn load_fcw(f: &mut Fpu, fcw: u16) {
    f.fcw = (fcw & FCW_BITS) | FCW_ONES;
    f.fsw = summarize(f.fsw, f.fcw);
}

fn fldcw(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let mut b = [0u8; 2];
    read_bytes(cpu, insn, &mut b)?;
    load_fcw(&mut cpu.r.fpu, u16::from_le_bytes(b));
    Ok(Flow::Next)
}

fn fstcw<const WAIT: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, WAIT)?;
    let v = cpu.r.fpu.fcw;
    write_bytes(cpu, insn, &v.to_le_bytes())?;
    Ok(Flow::Next)
}

fn fstsw<const WAIT: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, WAIT)?;
    let v = cpu.r.fpu.fsw;
    write_bytes(cpu, insn, &v.to_le_bytes())?;
    Ok(Flow::Next)
}

fn fstsw_ax<const WAIT: bool>(cpu: &mut Cpu, _: &Insn) -> Step {
    check(cpu, WAIT)?;
    let v = cpu.r.fpu.fsw;
    reg_put(cpu, 0, 2, v as u64);
    Ok(Flow::Next)
}

/// FWAIT: only the #NM (TS and MP) and pending-#MF checks.
fn fwait(cpu: &mut Cpu, _: &Insn) -> Step {
    check_wait(cpu)?;
    Ok(Flow::Next)
}

/// FENI, FDISI, FSETPM: meaningful on the 8087 and 80287 only; later FPUs ignore them.
fn ignored<const WAIT: bool>(cpu: &mut Cpu, _: &Insn) -> Step {
    check(cpu, WAIT)?;
    Ok(Flow::Next)
}

// ------------------------------------------------------------------ environment

/// The x87 state as FNSAVE stores it in 32-bit protected mode (108 bytes): what translated
/// code loads with FRSTOR and saves with FNSAVE. The last-instruction pointers are zero (the
/// translator runs x87 code only with every exception masked, where no handler reads them).
pub fn to_fsave(f: &Fpu, img: &mut [u8; 108]) {
    img.fill(0);
    img[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    img[4..6].copy_from_slice(&f.fsw.to_le_bytes());
    img[8..10].copy_from_slice(&tag_word(f).to_le_bytes());
    let top = f.top();
    for i in 0..8 {
        img[28 + 10 * i..38 + 10 * i].copy_from_slice(&f.st[(top + i) & 7][..10]);
    }
}

/// The x87 registers back from an FNSAVE image (see [`to_fsave`]); the last-instruction
/// pointers and opcode stay as they were.
pub fn from_fsave(f: &mut Fpu, img: &[u8; 108]) {
    f.fcw = u16::from_le_bytes([img[0], img[1]]);
    f.fsw = u16::from_le_bytes([img[4], img[5]]);
    f.ftw = abridge(u16::from_le_bytes([img[8], img[9]]));
    let top = f.top();
    for i in 0..8 {
        let mut r = [0u8; 16];
        r[..10].copy_from_slice(&img[28 + 10 * i..38 + 10 * i]);
        f.st[(top + i) & 7] = r;
    }
}

/// The full tag word: two bits per physical register, from its contents unless empty.
fn tag_word(f: &Fpu) -> u16 {
    (0..8).fold(0u16, |tw, p| {
        let tag = if f.ftw & (1 << p) == 0 {
            TAG_EMPTY
        } else {
            F80::from_bytes(&f.st[p]).tag()
        };
        tw | (tag << (2 * p))
    })
}

/// The abridged (FXSAVE) tag byte of a full tag word: only empty or not survives.
fn abridge(tw: u16) -> u8 {
    (0..8).fold(0u8, |ftw, p| {
        if (tw >> (2 * p)) & 3 == TAG_EMPTY {
            ftw
        } else {
            ftw | (1 << p)
        }
    })
}

/// The last-instruction pointers as the environment stores them: (FIP offset, FCS, FDP
/// offset, FDS). In 64-bit mode the pointers hold no selectors; the current CS and DS stand
/// in for them.
fn pointers(cpu: &Cpu) -> (u32, u16, u32, u16) {
    let f = &cpu.r.fpu;
    if cpu.long64 {
        let ds = cpu.r.seg[DS].selector;
        (f.fip as u32, cpu.cs_selector(), f.fdp as u32, ds)
    } else {
        let sel = |p: u64| (p >> 32) as u16;
        (f.fip as u32, sel(f.fip), f.fdp as u32, sel(f.fdp))
    }
}

/// Puts little-endian 16-bit words (`big` = false) or 32-bit dwords into an image.
fn pack(fields: [u32; 7], big: bool) -> ([u8; 28], usize) {
    let mut img = [0u8; 28];
    for (k, v) in fields.iter().enumerate() {
        if big {
            img[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
        } else {
            img[2 * k..2 * k + 2].copy_from_slice(&(*v as u16).to_le_bytes());
        }
    }
    (img, if big { 28 } else { 14 })
}

/// The 14- or 28-byte environment FSTENV and FSAVE store, in the layout of the current mode.
fn env_image(cpu: &Cpu, big: bool) -> ([u8; 28], usize) {
    let f = &cpu.r.fpu;
    let (ip, cs, dp, ds) = pointers(cpu);
    let (cw, sw, tw, op) = (f.fcw as u32, f.fsw as u32, tag_word(f) as u32, f.fop as u32);
    // Reserved halves of the 32-bit layouts read as ones.
    let hi = if big { 0xffff_0000 } else { 0 };
    if !real_layout(cpu) {
        return pack(
            [
                hi | cw,
                hi | sw,
                hi | tw,
                ip,
                cs as u32 | (op << 16),
                dp,
                hi | ds as u32,
            ],
            big,
        );
    }
    // Real-address layouts keep 20- or 32-bit linear addresses, split around the opcode.
    let ip = ((cs as u32) << 4).wrapping_add(ip);
    let dp = ((ds as u32) << 4).wrapping_add(dp);
    let (ip_hi, dp_hi) = if big {
        ((ip & 0xffff_0000) >> 4, (dp & 0xffff_0000) >> 4)
    } else {
        ((ip & 0xf_0000) >> 4, (dp & 0xf_0000) >> 4)
    };
    pack(
        [
            hi | cw,
            hi | sw,
            hi | tw,
            hi | (ip & 0xffff),
            ip_hi | op,
            hi | (dp & 0xffff),
            dp_hi,
        ],
        big,
    )
}

/// The fields of an environment image, by the layout of the current mode.
struct Env {
    fcw: u16,
    fsw: u16,
    tw: u16,
    fop: u16,
    fip: u64,
    fdp: u64,
}

fn parse_env(cpu: &Cpu, img: &[u8], big: bool) -> Env {
    let field = |k: usize| -> u32 {
        if big {
            u32::from_le_bytes([img[4 * k], img[4 * k + 1], img[4 * k + 2], img[4 * k + 3]])
        } else {
            u16::from_le_bytes([img[2 * k], img[2 * k + 1]]) as u32
        }
    };
    let (fcw, fsw, tw) = (field(0) as u16, field(1) as u16, field(2) as u16);
    let (fop, fip, fdp) = if real_layout(cpu) {
        let (ip_hi, dp_hi) = if big {
            ((field(4) & 0x0fff_f000) << 4, (field(6) & 0x0fff_f000) << 4)
        } else {
            ((field(4) & 0xf000) << 4, (field(6) & 0xf000) << 4)
        };
        let ip = ip_hi | (field(3) & 0xffff);
        let dp = dp_hi | (field(5) & 0xffff);
        ((field(4) & 0x7ff) as u16, ip as u64, dp as u64)
    } else {
        // The 16-bit protected-mode layout has no opcode.
        let fop = if big { (field(4) >> 16) & 0x7ff } else { 0 };
        let with_sel = |off: u32, sel: u32| {
            if cpu.long64 {
                off as u64
            } else {
                ((sel as u64 & 0xffff) << 32) | off as u64
            }
        };
        let ip = with_sel(field(3), field(4));
        let dp = with_sel(field(5), field(6));
        (fop as u16, ip, dp)
    };
    Env {
        fcw,
        fsw,
        tw,
        fop,
        fip,
        fdp,
    }
}

/// Loads an environment: ES and B follow the loaded flags and masks, only the empty/non-empty
/// part of the tag word is kept (the rest is recomputed from the registers when stored).
fn load_env(f: &mut Fpu, env: &Env) {
    f.fsw = env.fsw;
    load_fcw(f, env.fcw);
    f.ftw = abridge(env.tw);
    f.fop = env.fop;
    f.fip = env.fip;
    f.fdp = env.fdp;
}

/// FSTENV: stores the environment, then masks every exception (so an exception handler can
/// use the FPU), which also clears ES and B.
fn fstenv<const WAIT: bool, const BIG: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, WAIT)?;
    let (img, len) = env_image(cpu, BIG);
    write_bytes(cpu, insn, &img[..len])?;
    let f = &mut cpu.r.fpu;
    load_fcw(f, f.fcw | EXC);
    Ok(Flow::Next)
}

fn fldenv<const BIG: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let mut img = [0u8; 28];
    let len = if BIG { 28 } else { 14 };
    read_bytes(cpu, insn, &mut img[..len])?;
    let env = parse_env(cpu, &img, BIG);
    load_env(&mut cpu.r.fpu, &env);
    Ok(Flow::Next)
}

/// FSAVE: the environment, then ST(0)..ST(7) in stack order, then FNINIT.
fn fsave<const WAIT: bool, const BIG: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, WAIT)?;
    let (env, len) = env_image(cpu, BIG);
    let mut img = [0u8; 108];
    img[..len].copy_from_slice(&env[..len]);
    let f = &cpu.r.fpu;
    for k in 0..8 {
        let p = phys(f, k);
        img[len + 10 * k..len + 10 * k + 10].copy_from_slice(&f.st[p][..10]);
    }
    write_bytes(cpu, insn, &img[..len + 80])?;
    reset(&mut cpu.r.fpu);
    Ok(Flow::Next)
}

/// FRSTOR: the environment, then the registers in stack order of the loaded TOP.
fn frstor<const BIG: bool>(cpu: &mut Cpu, insn: &Insn) -> Step {
    check(cpu, true)?;
    let len = if BIG { 28 } else { 14 };
    let mut img = [0u8; 108];
    read_bytes(cpu, insn, &mut img[..len + 80])?;
    let env = parse_env(cpu, &img, BIG);
    let f = &mut cpu.r.fpu;
    load_env(f, &env);
    for k in 0..8 {
        let p = phys(f, k);
        f.st[p] = [0; 16];
        f.st[p][..10].copy_from_slice(&img[len + 10 * k..len + 10 * k + 10]);
    }
    Ok(Flow::Next)
}

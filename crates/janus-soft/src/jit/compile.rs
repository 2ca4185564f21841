//! Translation of one decoded block (64-bit code) into host code.
//!
//! Guest and host are both x86-64, so most guest instructions run as themselves: the guest
//! registers an instruction uses are loaded from the CPU struct into host registers of the same
//! number (RSP, R14 and R15, which the host needs, are renamed), the instruction is re-encoded
//! with its memory operand replaced by a host pointer, run, and the registers it wrote are
//! stored back. Its flags come out of the host's RFLAGS exactly as the guest's would, which is
//! why this is exact: the host CPU is the reference the differential suite compares against.
//!
//! Memory operands go through an inline probe of the software TLB (the same entries the
//! interpreter fills); a miss calls `jit_tlb_fill`, and anything that is not a plain RAM access
//! within one page (MMIO, a fault, a page crossing, a store to a page holding code) is left to
//! the interpreter's handler for that one instruction (`jit_fallback`), which also runs every
//! instruction the translator has no template for. Branches, calls, returns, pushes and pops
//! have templates; each block ends by adding to RIP (or storing it) and returning to the
//! dispatcher.
//!
//! Invariants inside a translated block: `cpu.r.rip` holds the block's start (exits add the
//! offset of where execution goes); a guest register lives in the CPU struct, or in the host
//! register of the same number once an instruction has loaded it there (`Gen::cached`, and
//! `Gen::dirty` when the host copy is newer), so a run of register instructions loads and
//! stores each register once; everything is written back before anything that reads the CPU
//! struct (the interpreter, an exit) or clobbers host registers (a call, a template). The
//! guest's arithmetic flags are either in the host's RFLAGS or saved in `Flags::res`
//! (`Op::Native`), or both; `Gen::host_valid` and `Gen::saved` track which.

use super::layout as lay;
use super::x64::{cc, reg::*, Alu, Asm, Fixup, Mem};
use crate::block::Block;
use crate::exec::{Insn, NONE, RIP};
use crate::flags::Op;
use iced_x86::{
    Code, Encoder, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
    RflagsBits,
};
use janus_engine::cpu::bits;

const ARITH: u32 = RflagsBits::OF
    | RflagsBits::SF
    | RflagsBits::ZF
    | RflagsBits::AF
    | RflagsBits::CF
    | RflagsBits::PF;

/// Addresses of what translated code calls or jumps to.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    pub fallback: u64,
    pub tlb_fill: u64,
    /// The epilogue that returns to the dispatcher (status in EAX).
    pub exit: usize,
}

/// What the translator made of a block.
pub struct Translation {
    pub code: Vec<u8>,
    /// Instructions run natively or by a template, and those left to the interpreter.
    pub native: u32,
    pub fallback: u32,
}

/// How one instruction is translated.
enum Plan {
    Native(Box<Native>),
    Lea,
    Nop,
    Jcc(u8),
    JmpRel,
    CallRel,
    Ret(u16),
    JmpInd,
    CallInd,
    Push,
    Pop,
    Leave,
    Fallback,
}

/// A guest instruction run on the host.
struct Native {
    bytes: Vec<u8>,
    /// (guest register, host register, written)
    regs: Vec<(u8, u8, bool)>,
    /// XMM registers (guest and host number are the same), and whether it writes them.
    xregs: Vec<(u8, bool)>,
    mem: Option<MemAccess>,
    flags_in: bool,
    flags_out: bool,
    /// An SSE instruction: it needs the SSE checks and, for floating point, the guest's MXCSR.
    sse: Option<Sse>,
}

#[derive(Clone, Copy)]
struct Sse {
    /// Floating point: runs under the guest's MXCSR.
    float: bool,
    /// A 16-byte memory operand that must be aligned (#GP otherwise).
    align: bool,
}

#[derive(Clone, Copy)]
struct MemAccess {
    size: u8,
    write: bool,
    ptr: u8,
}

/// How an instruction affects the arithmetic flags.
#[derive(Clone, Copy, Default)]
struct FlagUse {
    /// Needs the current flags whatever comes after (reads some, or may fault or exit).
    reads: bool,
    /// Writes only some: needs the current flags only if what it leaves is live.
    partial: bool,
    writes_any: bool,
    writes_all: bool,
}

/// MXCSR's exception mask bits: translated floating point runs only with all of them set.
const MXCSR_MASKS: u32 = 0x1f80;

/// Host registers guest values and pointers may use (not RSP, R14 = TLB set, R15 = CPU).
const POOL: [u8; 13] = [
    R11, R10, R9, R8, RDX, RCX, RBX, RBP, R12, R13, RDI, RAX, RSI,
];
/// The same without the registers that need a REX prefix.
const LOW_POOL: [u8; 7] = [RBP, RDI, RDX, RCX, RBX, RAX, RSI];

/// Host registers a call may clobber (System V).
const CALLER_SAVED: u16 =
    1 << RAX | 1 << RCX | 1 << RDX | 1 << RSI | 1 << RDI | 1 << R8 | 1 << R9 | 1 << R10 | 1 << R11;

fn bit(r: u8) -> u16 {
    1 << r
}

/// The register numbers in `mask`, lowest first.
fn regs_in(mask: u16) -> impl Iterator<Item = u8> {
    (0..16u8).filter(move |r| mask & bit(*r) != 0)
}

pub struct Compiler {
    enc: Encoder,
    info: InstructionInfoFactory,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler::new()
    }
}

impl Compiler {
    pub fn new() -> Compiler {
        Compiler {
            enc: Encoder::new(64),
            info: InstructionInfoFactory::new(),
        }
    }

    /// Translates `block` for placement at address `base`.
    pub fn translate(&mut self, block: &Block, base: usize, t: &Targets) -> Translation {
        let insns = &block.insns;
        let plans: Vec<Plan> = insns.iter().map(|i| self.plan(i)).collect();
        let uses: Vec<FlagUse> = insns
            .iter()
            .zip(&plans)
            .map(|(i, p)| flag_use(i, p))
            .collect();
        // Flags live after each instruction (conservatively live at the end of the block).
        let mut live_after = vec![true; insns.len()];
        for k in (1..insns.len()).rev() {
            let u = uses[k];
            live_after[k - 1] = u.reads || (live_after[k] && !u.writes_all);
        }
        let mut g = Gen {
            a: Asm::new(),
            base,
            page_off: block.start_phys() & 0xfff,
            t: *t,
            host_valid: false,
            saved: true,
            cached: 0,
            dirty: 0,
            xcached: 0,
            xdirty: 0,
            sse_checked: false,
            mxcsr_loaded: false,
            cold: Vec::new(),
        };
        let mut native = 0;
        let mut fallback = 0;
        let mut off = 0u64;
        let mut ended = false;
        for (k, (insn, plan)) in insns.iter().zip(&plans).enumerate() {
            let u = uses[k];
            let live_in = u.reads || (live_after[k] && !u.writes_all);
            let at = Site {
                index: k as u32,
                off,
                next: off + insn.len as u64,
                live_in,
                // A partial writer whose flags nobody reads runs on whatever the host has.
                flags_needed: u.reads || (u.partial && live_after[k]),
                insn,
            };
            match plan {
                Plan::Fallback => fallback += 1,
                _ => native += 1,
            }
            ended = g.emit(&at, plan);
            off = at.next;
            if ended {
                break;
            }
        }
        if !ended {
            g.exit_rel(off, insns.len() as u32);
        }
        g.emit_cold();
        Translation {
            code: g.a.buf,
            native,
            fallback,
        }
    }

    fn plan(&mut self, insn: &Insn) -> Plan {
        use Mnemonic::*;
        let i = &insn.i;
        if !insn.implemented || i.has_lock_prefix() && i.op0_kind() != OpKind::Memory {
            return Plan::Fallback;
        }
        let reg0 = matches!(insn.op[0], crate::exec::Opnd::Reg(r) if r < 16);
        let stack_op = insn.osize == 8 && insn.asize == 8;
        match i.mnemonic() {
            Nop | Pause | Endbr64 | Prefetchnta | Prefetcht0 | Prefetcht1 | Prefetcht2 => Plan::Nop,
            Lea if reg0 && insn.asize != 2 => Plan::Lea,
            Jmp => match i.op0_kind() {
                OpKind::NearBranch64 => Plan::JmpRel,
                OpKind::Register | OpKind::Memory if insn.osize == 8 && jmp_ok(i) => Plan::JmpInd,
                _ => Plan::Fallback,
            },
            Call => match i.op0_kind() {
                OpKind::NearBranch64 if stack_op => Plan::CallRel,
                OpKind::Register | OpKind::Memory if stack_op && jmp_ok(i) => Plan::CallInd,
                _ => Plan::Fallback,
            },
            Ret if stack_op => Plan::Ret(if i.op_count() == 1 {
                i.immediate16()
            } else {
                0
            }),
            Push if stack_op && push_ok(i) => Plan::Push,
            Pop if stack_op && reg0 && i.op0_kind() == OpKind::Register => Plan::Pop,
            Leave if stack_op => Plan::Leave,
            Ja | Jae | Jb | Jbe | Je | Jg | Jge | Jl | Jle | Jne | Jno | Jnp | Jns | Jo | Jp
            | Js if i.op0_kind() == OpKind::NearBranch64 => Plan::Jcc(i.condition_code() as u8 - 1),
            _ if crate::exec::sse::host_kind(insn).is_some() => match self.native(insn) {
                Some(n) => Plan::Native(Box::new(n)),
                None => Plan::Fallback,
            },
            m if native_mnemonic(m) => match self.native(insn) {
                Some(n) => Plan::Native(Box::new(n)),
                None => Plan::Fallback,
            },
            _ => Plan::Fallback,
        }
    }

    /// Plans running `insn` on the host, if it can run there exactly.
    fn native(&mut self, insn: &Insn) -> Option<Native> {
        let i = &insn.i;
        let sse = crate::exec::sse::host_kind(insn).map(|float| Sse {
            float,
            align: crate::exec::sse::must_align(insn, i.memory_size().size()),
        });
        let mut has_mem = false;
        let mut explicit = [false; 16];
        for k in 0..i.op_count() {
            match i.op_kind(k) {
                OpKind::Register => {
                    let r = i.op_register(k);
                    if r.is_xmm() && sse.is_some() {
                        continue;
                    }
                    if !r.is_gpr() {
                        return None;
                    }
                    explicit[r.full_register().number() & 15] = true;
                }
                OpKind::Memory => has_mem = true,
                OpKind::Immediate8
                | OpKind::Immediate8_2nd
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate64
                | OpKind::Immediate8to16
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64 => {}
                _ => return None,
            }
        }
        if has_mem && (is_moffs(i.code()) || bit_offset_in_register(i)) {
            return None;
        }
        let mem_regs = [i.memory_base(), i.memory_index()].map(|r| {
            if r.is_gpr() {
                Some(r.full_register().number() as u8 & 15)
            } else {
                None
            }
        });
        let info = self.info.info(i);
        // Guest register families the instruction touches, and whether it writes them.
        let mut used: Vec<(u8, bool)> = Vec::new();
        let mut xregs: Vec<(u8, bool)> = Vec::new();
        for u in info.used_registers() {
            let r = u.register();
            if r.is_segment_register() || matches!(r, Register::RIP | Register::EIP) {
                continue;
            }
            let written = matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            let (list, fam) = if r.is_xmm() && sse.is_some() && r.number() < 16 {
                (&mut xregs, r.number() as u8)
            } else if r.is_gpr() {
                (&mut used, r.full_register().number() as u8 & 15)
            } else {
                return None;
            };
            match list.iter_mut().find(|(f, _)| *f == fam) {
                Some(e) => e.1 |= written,
                None => list.push((fam, written)),
            }
        }
        let mem = if has_mem {
            let m = info.used_memory().first()?;
            let write = matches!(
                m.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            let size = m.memory_size().size();
            let fits = matches!(size, 1 | 2 | 4 | 8) || size == 16 && sse.is_some();
            if !fits {
                return None;
            }
            Some((size as u8, write))
        } else {
            None
        };
        // Families the host keeps for itself are renamed when they are operands, and left out
        // when they only form the address (which the translator computes itself).
        let reserved = |f: u8| matches!(f, RSP | R14 | R15);
        let mut taken = [false; 16];
        let mut regs: Vec<(u8, u8, bool)> = Vec::new();
        let mut renamed: Vec<(u8, bool)> = Vec::new();
        for &(fam, written) in &used {
            if reserved(fam) {
                if explicit[fam as usize] {
                    renamed.push((fam, written));
                } else if mem_regs.contains(&Some(fam)) && !written {
                    continue;
                } else {
                    return None;
                }
            } else {
                taken[fam as usize] = true;
                regs.push((fam, fam, written));
            }
        }
        // AH..BH cannot be encoded next to a REX prefix: with one of them, the pointer must be
        // a register that needs none.
        let high_byte = (0..i.op_count()).any(|k| {
            i.op_kind(k) == OpKind::Register
                && matches!(
                    i.op_register(k),
                    Register::AH | Register::CH | Register::DH | Register::BH
                )
        });
        let pool: &[u8] = if high_byte { &LOW_POOL } else { &POOL };
        let mut free = pool
            .iter()
            .copied()
            .filter(|&r| !taken[r as usize] && r != RSI);
        let ptr = if mem.is_some() {
            Some(free.next()?)
        } else {
            None
        };
        let mut map = [None::<u8>; 16];
        for (fam, written) in renamed {
            let h = free.next()?;
            map[fam as usize] = Some(h);
            regs.push((fam, h, written));
        }
        let mut ins = *i;
        for k in 0..ins.op_count() {
            if ins.op_kind(k) == OpKind::Register {
                let r = ins.op_register(k);
                if let Some(h) = map[r.full_register().number() & 15] {
                    ins.set_op_register(k, sized(h, r.size())?);
                }
            }
        }
        if let Some(p) = ptr {
            ins.set_memory_base(sized(p, 8)?);
            ins.set_memory_index(Register::None);
            ins.set_memory_index_scale(1);
            ins.set_memory_displacement64(0);
            ins.set_memory_displ_size(0);
            ins.set_segment_prefix(Register::None);
        }
        let encoded = self.enc.encode(&ins, 0);
        // The encoder keeps what it wrote before failing: take it either way.
        let bytes = self.enc.take_buffer();
        encoded.ok()?;
        let f = flags_of(i);
        Some(Native {
            bytes,
            regs,
            xregs,
            sse,
            mem: mem
                .zip(ptr)
                .map(|((size, write), ptr)| MemAccess { size, write, ptr }),
            flags_in: f.reads || f.partial,
            flags_out: f.writes_any,
        })
    }
}

/// Mnemonics whose register and memory forms run natively (the operand checks in
/// `Compiler::native` decide the rest).
fn native_mnemonic(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Add | Or
            | Adc
            | Sbb
            | And
            | Sub
            | Xor
            | Cmp
            | Test
            | Inc
            | Dec
            | Neg
            | Not
            | Mov
            | Movzx
            | Movsx
            | Movsxd
            | Shl
            | Shr
            | Sar
            | Sal
            | Rol
            | Ror
            | Rcl
            | Rcr
            | Shld
            | Shrd
            | Imul
            | Mul
            | Bt
            | Bts
            | Btr
            | Btc
            | Bsf
            | Bsr
            | Bswap
            | Xchg
            | Cmpxchg
            | Xadd
            | Cbw
            | Cwde
            | Cdqe
            | Cwd
            | Cdq
            | Cqo
            | Popcnt
            | Clc
            | Stc
            | Cmc
            | Sahf
            | Lahf
            | Seta
            | Setae
            | Setb
            | Setbe
            | Sete
            | Setg
            | Setge
            | Setl
            | Setle
            | Setne
            | Setno
            | Setnp
            | Setns
            | Seto
            | Setp
            | Sets
            | Cmova
            | Cmovae
            | Cmovb
            | Cmovbe
            | Cmove
            | Cmovg
            | Cmovge
            | Cmovl
            | Cmovle
            | Cmovne
            | Cmovno
            | Cmovnp
            | Cmovns
            | Cmovo
            | Cmovp
            | Cmovs
    )
}

fn is_moffs(c: Code) -> bool {
    use Code::*;
    matches!(
        c,
        Mov_AL_moffs8
            | Mov_AX_moffs16
            | Mov_EAX_moffs32
            | Mov_RAX_moffs64
            | Mov_moffs8_AL
            | Mov_moffs16_AX
            | Mov_moffs32_EAX
            | Mov_moffs64_RAX
    )
}

/// BT/BTS/BTR/BTC with a memory operand and a register bit offset address memory beyond the
/// operand (the offset picks the byte), which the probe does not cover.
fn bit_offset_in_register(i: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(i.mnemonic(), Bt | Bts | Btr | Btc) && i.op1_kind() == OpKind::Register
}

/// Indirect branch operands the templates handle: a 64-bit register or a memory operand.
fn jmp_ok(i: &Instruction) -> bool {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().is_gpr64(),
        OpKind::Memory => i.memory_size().size() == 8 && !is_moffs(i.code()),
        _ => false,
    }
}

/// PUSH of a 64-bit register or an immediate.
fn push_ok(i: &Instruction) -> bool {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().is_gpr64(),
        OpKind::Immediate8to64 | OpKind::Immediate32to64 => true,
        _ => false,
    }
}

/// The host register `n` at `size` bytes (low byte for size 1).
fn sized(n: u8, size: usize) -> Option<Register> {
    use Register::*;
    const R64: [Register; 16] = [
        RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15,
    ];
    const R32: [Register; 16] = [
        EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, R8D, R9D, R10D, R11D, R12D, R13D, R14D, R15D,
    ];
    const R16: [Register; 16] = [
        AX, CX, DX, BX, SP, BP, SI, DI, R8W, R9W, R10W, R11W, R12W, R13W, R14W, R15W,
    ];
    const R8B: [Register; 16] = [
        AL, CL, DL, BL, SPL, BPL, SIL, DIL, R8L, R9L, R10L, R11L, R12L, R13L, R14L, R15L,
    ];
    let n = n as usize & 15;
    Some(match size {
        8 => R64[n],
        4 => R32[n],
        2 => R16[n],
        1 => R8B[n],
        _ => return Option::None,
    })
}

/// How `i` uses the arithmetic flags, from iced-x86's tables plus the cases they describe
/// loosely: a shift or rotate by CL leaves the flags alone when the count is 0, and by an
/// immediate that masks to 0 it never touches them.
fn flags_of(i: &Instruction) -> FlagUse {
    use Mnemonic::*;
    let rd = i.rflags_read() & ARITH;
    let md = i.rflags_modified() & ARITH;
    let shift = matches!(
        i.mnemonic(),
        Shl | Shr | Sar | Sal | Rol | Ror | Rcl | Rcr | Shld | Shrd
    );
    let count_kind = if matches!(i.mnemonic(), Shld | Shrd) {
        i.op2_kind()
    } else {
        i.op1_kind()
    };
    let variable = shift && count_kind == OpKind::Register;
    if shift && count_kind == OpKind::Immediate8 {
        let width = if i.op0_kind() == OpKind::Register {
            i.op0_register().size()
        } else {
            i.memory_size().size()
        };
        let mask = if width == 8 { 0x3f } else { 0x1f };
        if i.immediate8() & mask == 0 {
            return FlagUse::default();
        }
    }
    FlagUse {
        reads: rd != 0 || variable,
        partial: md != 0 && md != ARITH,
        writes_any: md != 0,
        writes_all: md == ARITH && !variable,
    }
}

/// How the instruction uses the flags, for liveness. An instruction that may fault or exit
/// counts as reading them: the exception frame (or whatever runs next) sees RFLAGS as they
/// were before it.
fn flag_use(insn: &Insn, plan: &Plan) -> FlagUse {
    let observes = FlagUse {
        reads: true,
        ..FlagUse::default()
    };
    match plan {
        Plan::Jcc(_)
        | Plan::CallRel
        | Plan::Ret(_)
        | Plan::CallInd
        | Plan::Push
        | Plan::Pop
        | Plan::Leave
        | Plan::JmpInd => observes,
        Plan::Lea | Plan::Nop | Plan::JmpRel => FlagUse::default(),
        Plan::Native(n) => FlagUse {
            reads: flags_of(&insn.i).reads || n.mem.is_some() || n.sse.is_some(),
            partial: flags_of(&insn.i).partial,
            writes_any: n.flags_out,
            writes_all: flags_of(&insn.i).writes_all,
        },
        Plan::Fallback => FlagUse {
            reads: true,
            ..flags_of(&insn.i)
        },
    }
}

/// Where in the block an instruction is.
struct Site<'a> {
    index: u32,
    off: u64,
    next: u64,
    /// Flags are live before the instruction (it or a later one reads them).
    live_in: bool,
    /// The instruction needs the guest's flags in RFLAGS (it reads them, or writes only some
    /// and what it leaves is live).
    flags_needed: bool,
    insn: &'a Insn,
}

/// Out-of-line code, emitted after the block's main path.
enum Cold {
    /// A TLB probe missed: fill the TLB or run the instruction in the interpreter.
    Miss {
        from: Fixup,
        back: usize,
        ptr: u8,
        /// Cached registers the call to fill the TLB clobbers.
        reload: u16,
        /// Cached XMM registers (the call clobbers them all).
        xreload: u16,
        /// The host's MXCSR holds the guest's.
        mxcsr: bool,
        info: u32,
        insn: *const Insn,
        off: u64,
        index: u32,
        resume: Resume,
    },
    /// A fallback ended the block or stopped: count what retired, return its status.
    Leave { from: Fixup, index: u32 },
    /// A branch target or return address is not canonical, a 16-byte SSE operand is not
    /// aligned, or the SSE checks failed: the interpreter runs the instruction (and raises
    /// the fault).
    Interpret {
        from: Vec<Fixup>,
        /// The host's MXCSR holds the guest's.
        mxcsr: bool,
        insn: *const Insn,
        off: u64,
        index: u32,
        resume: Resume,
    },
}

/// Where the main path continues after the interpreter ran an instruction in cold code.
#[derive(Clone, Copy)]
enum Resume {
    /// At this offset of the main path, reloading the registers the main path has cached
    /// there (`regs`) and restoring the host flags first if `flags` is set.
    At {
        to: Option<usize>,
        flags: bool,
        regs: u16,
        xregs: u16,
        mxcsr: bool,
    },
    /// The instruction was a branch: leave the block after it.
    Exit { next: u64 },
}

struct Gen {
    a: Asm,
    base: usize,
    /// Offset of the block's first byte in its page: exits that stay on that page can be
    /// chained.
    page_off: u64,
    t: Targets,
    /// The host's RFLAGS hold the guest's arithmetic flags.
    host_valid: bool,
    /// `Flags` in the CPU struct holds them (in the native form).
    saved: bool,
    /// Guest registers held in the host register of the same number.
    cached: u16,
    /// Of those, the ones whose host copy is newer than the CPU struct's.
    dirty: u16,
    /// The same for guest XMM registers, held in the host XMM register of the same number.
    xcached: u16,
    xdirty: u16,
    /// The SSE checks (CR0.EM/TS, CR4.OSFXSR, every MXCSR exception masked) passed on this
    /// path since the last call out.
    sse_checked: bool,
    /// The host's MXCSR holds the guest's (loaded for floating point; the guest's exception
    /// flags accumulate there until `sse_end` stores it).
    mxcsr_loaded: bool,
    cold: Vec<Cold>,
}

fn cpu(disp: i32) -> Mem {
    Mem::at(R15, disp)
}

impl Gen {
    /// Writes the cached registers in `mask` that are newer than the CPU struct back to it.
    fn write_back(&mut self, mask: u16) {
        for g in regs_in(self.dirty & mask) {
            self.a.store(8, cpu(lay::gpr(g)), g);
        }
        self.dirty &= !mask;
    }

    /// Writes every newer register back (stores leave RFLAGS alone).
    fn spill(&mut self) {
        self.write_back(u16::MAX);
        for x in regs_in(self.xdirty) {
            self.a.movdqu_store(cpu(lay::xmm(x)), x);
        }
        self.xdirty = 0;
    }

    /// Ends the SSE session before a call out or an exit: the guest's MXCSR (with the
    /// exception flags raised since it was loaded) back to the CPU struct and the host's into
    /// MXCSR. Leaves RFLAGS alone.
    fn sse_end(&mut self) {
        if self.mxcsr_loaded {
            self.a.stmxcsr(cpu(lay::mxcsr()));
            self.a.ldmxcsr(cpu(lay::host_mxcsr()));
            self.mxcsr_loaded = false;
        }
        self.sse_checked = false;
    }

    /// Before an SSE instruction: the checks its translation depends on, once per session,
    /// and the guest's MXCSR for floating point. If a check fails, the interpreter runs the
    /// instruction (raising #UD or #NM, or the exception an unmasked MXCSR bit asks for) and
    /// the block ends after it.
    fn sse_begin(&mut self, s: &Site, float: bool) {
        if !self.sse_checked {
            self.spill();
            self.clobber(s.live_in);
            self.evict(bit(RDI));
            let mut from = Vec::new();
            let a = &mut self.a;
            a.load64(RDI, cpu(lay::cr0()));
            a.alu_ri(Alu::And, RDI, (bits::CR0_EM | bits::CR0_TS) as i32);
            from.push(a.jcc(cc::NE));
            a.load64(RDI, cpu(lay::cr4()));
            a.alu_ri(Alu::And, RDI, bits::CR4_OSFXSR as i32);
            from.push(a.jcc(cc::E));
            a.load32(RDI, cpu(lay::mxcsr()));
            a.alu_ri(Alu::And, RDI, MXCSR_MASKS as i32);
            a.alu_ri(Alu::Cmp, RDI, MXCSR_MASKS as i32);
            from.push(a.jcc(cc::NE));
            self.cold.push(Cold::Interpret {
                from,
                mxcsr: false,
                insn: s.insn,
                off: s.off,
                index: s.index,
                resume: Resume::Exit { next: s.next },
            });
            self.sse_checked = true;
        }
        if float && !self.mxcsr_loaded {
            self.a.ldmxcsr(cpu(lay::mxcsr()));
            self.mxcsr_loaded = true;
        }
    }

    /// Frees the host registers in `mask` for other uses, writing back what they cache.
    fn evict(&mut self, mask: u16) {
        self.write_back(mask);
        self.cached &= !mask;
    }

    /// Before host code that reads or writes guest registers in the CPU struct, or calls out.
    fn forget_all(&mut self) {
        self.evict(u16::MAX);
        self.spill();
        self.xcached = 0;
        self.sse_end();
    }

    /// Guest register `g` in host register `g`.
    fn use_reg(&mut self, g: u8) {
        if self.cached & bit(g) == 0 {
            self.a.load64(g, cpu(lay::gpr(g)));
            self.cached |= bit(g);
        }
    }

    /// Guest register `g`'s current value into host register `dst`.
    fn read_gpr(&mut self, dst: u8, g: u8) {
        if self.cached & bit(g) != 0 {
            if dst != g {
                self.a.mov_rr(dst, g);
            }
        } else {
            self.a.load64(dst, cpu(lay::gpr(g)));
        }
    }

    /// Cold code: the registers in `mask` again from the CPU struct (after a call, or after
    /// the interpreter ran an instruction).
    fn reload(&mut self, mask: u16) {
        for g in regs_in(mask) {
            self.a.load64(g, cpu(lay::gpr(g)));
        }
    }

    /// Cold code: the XMM registers in `mask` again from the CPU struct.
    fn reload_xmm(&mut self, mask: u16) {
        for x in regs_in(mask) {
            self.a.movdqu_load(x, cpu(lay::xmm(x)));
        }
    }

    fn save(&mut self) {
        if !self.saved {
            self.a.save_flags(cpu(lay::flags_res()));
            self.a.store8_imm(cpu(lay::flags_op()), Op::Native as u8);
            self.saved = true;
        }
    }

    /// Host code that changes RFLAGS follows: keep the guest's flags if they are live.
    fn clobber(&mut self, live: bool) {
        if live {
            self.save();
        }
        self.host_valid = false;
    }

    /// The next host instruction needs the guest's flags in RFLAGS.
    fn need(&mut self) {
        if !self.host_valid {
            self.a.load_flags(cpu(lay::flags_res()));
            self.host_valid = true;
        }
    }

    /// Calls `f(cpu, rsi, rdx)` (RSI and RDX set by the caller or given here).
    fn call(&mut self, f: u64) {
        self.a.mov_rr(RDI, R15);
        self.a.mov_ri(RAX, f);
        self.a.call_r(RAX);
    }

    /// Leaves the block with RIP advanced to block offset `to`, `retired` instructions done.
    ///
    /// A target on the block's own page may be chained: the exit ends in a `jmp rel32` that
    /// first leads to the dispatcher and that the dispatcher points at the target block's
    /// translation once there is one (both blocks are then on one physical page, so writing
    /// that page drops them together). Each chained jump spends one unit of
    /// `Cpu::chain_budget`, so control returns to the dispatcher regularly.
    fn exit_rel(&mut self, to: u64, retired: u32) {
        self.spill();
        self.sse_end();
        self.save();
        if to != 0 {
            self.a.alu_mi(Alu::Add, cpu(lay::rip()), to as i32);
        }
        let target = self.page_off as i64 + to as i64;
        if !(0..4096).contains(&target) {
            self.exit_lookup(retired);
            return;
        }
        if retired != 0 {
            self.a
                .alu_mi(Alu::Add, cpu(lay::instructions()), retired as i32);
        }
        self.a.alu_mi(Alu::Sub, cpu(lay::chain_budget()), 1);
        let spent = self.a.jcc(cc::E);
        let site = self.a.jmp();
        let unchained = self.a.len();
        self.a.patch(site, unchained);
        self.a.patch(spent, unchained);
        let site_addr = self.base + site.end();
        self.a.mov_ri(RAX, site_addr as u64);
        self.a.store(8, cpu(lay::jit_exit()), RAX);
        self.a.mov_ri(RAX, 0);
        let here = self.base;
        self.a.jmp_abs(here, self.t.exit);
    }

    /// Leaves the block for RIP (already stored), which is known only at run time: through
    /// the jump table straight to its translation when the dispatcher has run it under the
    /// current mappings (spending one unit of `Cpu::chain_budget`), else to the dispatcher.
    fn exit_lookup(&mut self, retired: u32) {
        self.spill();
        self.sse_end();
        self.save();
        if retired != 0 {
            self.a
                .alu_mi(Alu::Add, cpu(lay::instructions()), retired as i32);
        }
        let a = &mut self.a;
        a.load64(RAX, cpu(lay::rip()));
        // The tag: RIP ^ exec_key << 48.
        a.load32(RDX, cpu(lay::exec_key()));
        a.shl_ri(RDX, 48);
        a.alu_rr(Alu::Xor, RDX, RAX);
        // The slot: (RIP ^ RIP >> 12) mod JUMP_SLOTS.
        a.mov_rr(RCX, RAX);
        a.shr_ri(RCX, 12);
        a.alu_rr(Alu::Xor, RCX, RAX);
        a.alu_ri(Alu::And, RCX, super::JUMP_SLOTS as i32 - 1);
        a.shl_ri(RCX, super::JUMP_SLOT_SHIFT);
        a.alu_rm(Alu::Add, RCX, cpu(lay::jit_table()));
        a.alu_rm(Alu::Cmp, RDX, Mem::at(RCX, 0));
        let miss_tag = a.jcc(cc::NE);
        // Still the mappings it was found under?
        a.load64(RAX, Mem::at(RCX, 8));
        a.load64(
            RAX,
            Mem {
                base: R15,
                index: Some((RAX, 0)),
                disp: 0,
            },
        );
        a.alu_rm(Alu::Cmp, RAX, Mem::at(RCX, 16));
        let miss_gen = a.jcc(cc::NE);
        a.alu_mi(Alu::Sub, cpu(lay::chain_budget()), 1);
        let spent = a.jcc(cc::E);
        a.jmp_m(Mem::at(RCX, 24));
        let here = a.len();
        for f in [miss_tag, miss_gen, spent] {
            a.patch(f, here);
        }
        a.mov_ri(RAX, 0);
        let base = self.base;
        a.jmp_abs(base, self.t.exit);
    }

    /// Computes the guest effective address of `insn`'s memory operand into RSI (RDI is
    /// scratch), adding the FS/GS base when `segment` is set.
    fn ea(&mut self, s: &Site, segment: bool) {
        let m = s.insn.mem;
        let disp = m.disp as i64;
        self.evict(bit(RSI) | bit(RDI));
        if m.base != RIP && m.base != NONE {
            self.read_gpr(RSI, m.base);
        }
        if m.index != NONE && m.base != RIP {
            self.read_gpr(RDI, m.index);
        }
        let a = &mut self.a;
        match m.base {
            RIP => {
                a.load64(RSI, cpu(lay::rip()));
                let d = disp.wrapping_add(s.next as i64);
                if let Ok(d) = i32::try_from(d) {
                    a.lea(RSI, Mem::at(RSI, d));
                } else {
                    a.mov_ri(RDI, d as u64);
                    a.lea(
                        RSI,
                        Mem {
                            base: RSI,
                            index: Some((RDI, 0)),
                            disp: 0,
                        },
                    );
                }
            }
            NONE => a.mov_ri(RSI, disp as u64),
            _ => {
                if m.index == NONE && disp != 0 {
                    a.lea(RSI, Mem::at(RSI, disp as i32));
                }
            }
        }
        if m.index != NONE && m.base != RIP {
            let d = if m.base == NONE { 0 } else { disp as i32 };
            a.lea(
                RSI,
                Mem {
                    base: RSI,
                    index: Some((RDI, m.scale)),
                    disp: d,
                },
            );
        }
        if s.insn.asize == 4 {
            a.mov_rr32(RSI, RSI);
        }
        let seg = m.seg as usize;
        if segment && (seg == crate::cpu::FS || seg == crate::cpu::GS) {
            a.load64(RDI, cpu(lay::seg_base(seg)));
            a.lea(
                RSI,
                Mem {
                    base: RSI,
                    index: Some((RDI, 0)),
                    disp: 0,
                },
            );
        }
    }

    /// Probes the TLB for `size` bytes at the linear address in RSI and leaves the host
    /// pointer in `ptr`; a miss goes to cold code, which comes back with `ptr` set or runs the
    /// instruction in the interpreter and resumes as `resume` says.
    fn probe(&mut self, s: &Site, size: u8, write: bool, ptr: u8, resume: Resume) {
        // The probe uses RDI and `ptr` (and RSI holds the address); the registers still cached
        // must survive the cold path's call.
        self.evict(bit(RDI) | bit(ptr) | bit(RSI));
        let reload = self.cached & CALLER_SAVED;
        let xreload = self.xcached;
        let mxcsr = self.mxcsr_loaded;
        let a = &mut self.a;
        a.lea(RDI, Mem::at(RSI, size as i32 - 1));
        a.shr_ri(RDI, 12);
        a.mov_rr(ptr, RSI);
        a.shr_ri(ptr, 12);
        a.alu_ri(Alu::And, ptr, crate::mmu::TLB_SIZE as i32 - 1);
        a.shl_ri(ptr, lay::TLB_ENTRY_SHIFT);
        let tag = if write {
            lay::tlb_tag_w()
        } else {
            lay::tlb_tag_r()
        };
        let entry = |disp| Mem {
            base: R14,
            index: Some((ptr, 0)),
            disp,
        };
        a.alu_rm(Alu::Cmp, RDI, entry(tag));
        let from = a.jcc(cc::NE);
        a.load64(ptr, entry(lay::tlb_addend()));
        a.lea(
            ptr,
            Mem {
                base: ptr,
                index: Some((RSI, 0)),
                disp: 0,
            },
        );
        let back = a.len();
        self.cold.push(Cold::Miss {
            from,
            back,
            ptr,
            reload,
            xreload,
            mxcsr,
            info: size as u32 | (write as u32) << 8,
            insn: s.insn,
            off: s.off,
            index: s.index,
            resume,
        });
    }

    /// Calls the interpreter for `insn` (at block offset `off`); EAX = its status.
    fn fallback_call(&mut self, insn: *const Insn, off: u64) {
        self.a.mov_ri(RSI, insn as u64);
        self.a.mov_ri(RDX, off);
        self.call(self.t.fallback);
    }

    /// Leaves through cold code if the fallback's status in EAX is not "continue".
    fn leave_unless_continue(&mut self, index: u32) {
        self.a.test_rr32(RAX, RAX);
        let from = self.a.jcc(cc::NE);
        self.cold.push(Cold::Leave { from, index });
    }

    /// Emits one instruction; returns whether it ended the block.
    fn emit(&mut self, s: &Site, plan: &Plan) -> bool {
        match plan {
            Plan::Nop | Plan::Native(_) | Plan::Lea => {}
            // Conditional branches only leave; the rest read and write guest registers in the
            // CPU struct and use host registers of their own.
            Plan::Jcc(_) => self.spill(),
            _ => self.forget_all(),
        }
        match plan {
            Plan::Nop => false,
            Plan::Native(n) => {
                self.native(s, n);
                false
            }
            Plan::Lea => {
                self.lea(s);
                false
            }
            Plan::Fallback => {
                self.save();
                self.fallback_call(s.insn, s.off);
                self.host_valid = false;
                self.leave_unless_continue(s.index);
                false
            }
            Plan::Jcc(cond) => {
                self.sse_end();
                self.need();
                self.save();
                let taken = self.a.jcc(*cond);
                self.exit_rel(s.next, s.index + 1);
                let here = self.a.len();
                self.a.patch(taken, here);
                self.exit_rel((s.next as i64 + s.insn.rel) as u64, s.index + 1);
                true
            }
            Plan::JmpRel => {
                self.exit_rel((s.next as i64 + s.insn.rel) as u64, s.index + 1);
                true
            }
            Plan::CallRel => {
                let resume = branch_resume(s);
                self.push_prepare(s, resume);
                self.a.load64(RAX, cpu(lay::rip()));
                self.a.lea(RAX, Mem::at(RAX, s.next as i32));
                self.push_commit();
                self.exit_rel((s.next as i64 + s.insn.rel) as u64, s.index + 1);
                true
            }
            Plan::Ret(pop) => {
                let resume = branch_resume(s);
                self.a.load64(RBX, cpu(lay::gpr(RSP)));
                self.a.mov_rr(RSI, RBX);
                self.clobber(s.live_in);
                self.probe(s, 8, false, R11, resume);
                self.a.load64(RAX, Mem::at(R11, 0));
                self.canonical_or_interpret(s, RAX, resume);
                self.a.lea(RBX, Mem::at(RBX, 8 + *pop as i32));
                self.a.store(8, cpu(lay::gpr(RSP)), RBX);
                self.a.store(8, cpu(lay::rip()), RAX);
                self.exit_lookup(s.index + 1);
                true
            }
            Plan::JmpInd => {
                let resume = branch_resume(s);
                self.branch_target(s, R12, resume);
                self.a.store(8, cpu(lay::rip()), R12);
                self.exit_lookup(s.index + 1);
                true
            }
            Plan::CallInd => {
                let resume = branch_resume(s);
                self.branch_target(s, R12, resume);
                self.push_prepare(s, resume);
                self.a.load64(RAX, cpu(lay::rip()));
                self.a.lea(RAX, Mem::at(RAX, s.next as i32));
                self.push_commit();
                self.a.store(8, cpu(lay::rip()), R12);
                self.exit_lookup(s.index + 1);
                true
            }
            Plan::Push => {
                let resume = self.resume_after(s);
                self.push_prepare(s, resume);
                match s.insn.i.op0_kind() {
                    OpKind::Register => {
                        let r = s.insn.i.op0_register().number() as u8;
                        self.a.load64(RAX, cpu(lay::gpr(r)));
                    }
                    _ => self.a.mov_ri(RAX, s.insn.i.immediate(0)),
                }
                self.push_commit();
                self.resolve(resume);
                false
            }
            Plan::Pop => {
                let dst = s.insn.i.op0_register().number() as u8;
                self.pop_template(s, RSP, dst);
                false
            }
            // LEAVE: RSP = RBP, then POP RBP.
            Plan::Leave => {
                self.pop_template(s, RBP, RBP);
                false
            }
        }
    }

    /// A resume point at the end of this (non-branch) instruction, patched by `resolve`.
    fn resume_after(&self, _s: &Site) -> Resume {
        Resume::At {
            to: None,
            flags: false,
            regs: 0,
            xregs: 0,
            mxcsr: false,
        }
    }

    /// Points the cold paths of the instruction just emitted at the current offset, with the
    /// flag state the main path has here.
    fn resolve(&mut self, _r: Resume) {
        let here = self.a.len();
        let flags = self.host_valid;
        let cached = self.cached;
        let xcached = self.xcached;
        let mxcsr_loaded = self.mxcsr_loaded;
        for c in self.cold.iter_mut().rev() {
            let r = match c {
                Cold::Miss { resume, .. } | Cold::Interpret { resume, .. } => resume,
                Cold::Leave { .. } => continue,
            };
            match r {
                Resume::At {
                    to: to @ None,
                    flags: f,
                    regs,
                    xregs,
                    mxcsr,
                } => {
                    *to = Some(here);
                    *f = flags;
                    *regs = cached;
                    *xregs = xcached;
                    *mxcsr = mxcsr_loaded;
                }
                _ => break,
            }
        }
    }

    /// Pops the 8 bytes at guest register `sp` (RSP, or RBP for LEAVE) into `dst`, and sets
    /// RSP just past them.
    fn pop_template(&mut self, s: &Site, sp: u8, dst: u8) {
        let resume = self.resume_after(s);
        self.a.load64(RBX, cpu(lay::gpr(sp)));
        self.a.mov_rr(RSI, RBX);
        self.clobber(s.live_in);
        self.probe(s, 8, false, R11, resume);
        self.a.load64(RAX, Mem::at(R11, 0));
        self.a.lea(RBX, Mem::at(RBX, 8));
        self.a.store(8, cpu(lay::gpr(RSP)), RBX);
        self.a.store(8, cpu(lay::gpr(dst)), RAX);
        self.resolve(resume);
    }

    /// RSP - 8 into RBX and RSI, probed for an 8-byte store (the pointer in R11).
    fn push_prepare(&mut self, s: &Site, resume: Resume) {
        self.a.load64(RBX, cpu(lay::gpr(RSP)));
        self.a.lea(RBX, Mem::at(RBX, -8));
        self.a.mov_rr(RSI, RBX);
        self.clobber(s.live_in);
        self.probe(s, 8, true, R11, resume);
    }

    /// Stores RAX at the probed slot and commits RSP = RBX.
    fn push_commit(&mut self) {
        self.a.store(8, Mem::at(R11, 0), RAX);
        self.a.store(8, cpu(lay::gpr(RSP)), RBX);
    }

    /// Loads an indirect branch's target into `dst` (a callee-saved register) and checks it is
    /// canonical.
    fn branch_target(&mut self, s: &Site, dst: u8, resume: Resume) {
        if s.insn.i.op0_kind() == OpKind::Register {
            let r = s.insn.i.op0_register().number() as u8;
            self.a.load64(dst, cpu(lay::gpr(r)));
        } else {
            self.ea(s, true);
            self.clobber(s.live_in);
            self.probe(s, 8, false, R11, resume);
            self.a.load64(dst, Mem::at(R11, 0));
        }
        self.canonical_or_interpret(s, dst, resume);
    }

    /// Sends the instruction to the interpreter (which raises #GP) if `r` is not canonical.
    fn canonical_or_interpret(&mut self, s: &Site, r: u8, resume: Resume) {
        self.clobber(s.live_in);
        // Canonical iff sign-extending from bit 47 gives the value back.
        self.a.mov_rr(RDX, r);
        self.a.shl_ri(RDX, 16);
        self.a.sar_ri(RDX, 16);
        self.a.alu_rr(Alu::Cmp, RDX, r);
        let from = self.a.jcc(cc::NE);
        self.cold.push(Cold::Interpret {
            from: vec![from],
            mxcsr: false,
            insn: s.insn,
            off: s.off,
            index: s.index,
            resume,
        });
    }

    /// Sends the instruction to the interpreter (which raises #GP) if the linear address in
    /// RSI is not 16-byte aligned. (Guest RAM is mapped page-aligned, so the host pointer
    /// would be misaligned too and the host instruction would fault.)
    fn misaligned_or_interpret(&mut self, s: &Site, resume: Resume) {
        self.a.mov_rr32(RDI, RSI);
        self.a.alu_ri(Alu::And, RDI, 15);
        let from = self.a.jcc(cc::NE);
        self.cold.push(Cold::Interpret {
            from: vec![from],
            mxcsr: self.mxcsr_loaded,
            insn: s.insn,
            off: s.off,
            index: s.index,
            resume,
        });
    }

    fn lea(&mut self, s: &Site) {
        let crate::exec::Opnd::Reg(dst) = s.insn.op[0] else {
            return;
        };
        self.ea(s, false);
        self.evict(bit(dst));
        let slot = cpu(lay::gpr(dst));
        match s.insn.osize {
            8 => self.a.store(8, slot, RSI),
            4 => {
                self.a.mov_rr32(RSI, RSI);
                self.a.store(8, slot, RSI);
            }
            _ => self.a.store(2, slot, RSI),
        }
    }

    fn native(&mut self, s: &Site, n: &Native) {
        let resume = self.resume_after(s);
        if let Some(sse) = n.sse {
            self.sse_begin(s, sse.float);
        }
        if let Some(m) = n.mem {
            // A miss may run the instruction in the interpreter, which reads the CPU struct.
            self.spill();
            self.ea(s, true);
            self.clobber(s.live_in);
            if n.sse.is_some_and(|x| x.align) {
                self.misaligned_or_interpret(s, resume);
            }
            self.probe(s, m.size, m.write, m.ptr, resume);
        }
        if n.flags_in && s.flags_needed {
            self.need();
        }
        for &(g, h, _) in &n.regs {
            if g == h {
                self.use_reg(g);
            } else {
                // A renamed register (RSP, R14, R15) borrows a host register that may cache
                // another guest register.
                self.evict(bit(h));
                self.a.load64(h, cpu(lay::gpr(g)));
            }
        }
        for &(x, _) in &n.xregs {
            if self.xcached & bit(x) == 0 {
                self.a.movdqu_load(x, cpu(lay::xmm(x)));
                self.xcached |= bit(x);
            }
        }
        self.a.bytes(&n.bytes);
        for &(g, h, w) in &n.regs {
            if w {
                if g == h {
                    self.dirty |= bit(g);
                } else {
                    self.a.store(8, cpu(lay::gpr(g)), h);
                }
            }
        }
        for &(x, w) in &n.xregs {
            if w {
                self.xdirty |= bit(x);
            }
        }
        if n.flags_out {
            self.host_valid = true;
            self.saved = false;
        }
        if n.mem.is_some() {
            self.resolve(resume);
        }
    }

    fn emit_cold(&mut self) {
        let cold = std::mem::take(&mut self.cold);
        for c in cold {
            match c {
                Cold::Miss {
                    from,
                    back,
                    ptr,
                    reload,
                    xreload,
                    mxcsr,
                    info,
                    insn,
                    off,
                    index,
                    resume,
                } => {
                    let here = self.a.len();
                    self.a.patch(from, here);
                    self.host_mxcsr(mxcsr);
                    // RSI still holds the linear address.
                    self.a.mov_ri(RDX, info as u64);
                    self.call(self.t.tlb_fill);
                    self.a.test_rr64(RAX, RAX);
                    let miss = self.a.jcc(cc::E);
                    self.a.mov_rr(ptr, RAX);
                    self.reload(reload);
                    self.reload_xmm(xreload);
                    if mxcsr {
                        self.a.ldmxcsr(cpu(lay::mxcsr()));
                    }
                    let j = self.a.jmp();
                    self.a.patch(j, back);
                    let here = self.a.len();
                    self.a.patch(miss, here);
                    self.interpret(insn, off, index, resume);
                }
                Cold::Interpret {
                    from,
                    mxcsr,
                    insn,
                    off,
                    index,
                    resume,
                } => {
                    let here = self.a.len();
                    for f in from {
                        self.a.patch(f, here);
                    }
                    self.host_mxcsr(mxcsr);
                    self.interpret(insn, off, index, resume);
                }
                Cold::Leave { from, index } => {
                    let here = self.a.len();
                    self.a.patch(from, here);
                    self.leave_status(index);
                }
            }
        }
    }

    /// Cold: if the host's MXCSR holds the guest's (`loaded`), stores it to the CPU struct and
    /// puts the host's back, before a call out.
    fn host_mxcsr(&mut self, loaded: bool) {
        if loaded {
            self.a.stmxcsr(cpu(lay::mxcsr()));
            self.a.ldmxcsr(cpu(lay::host_mxcsr()));
        }
    }

    /// Cold: runs the instruction in the interpreter, then resumes the main path or leaves.
    fn interpret(&mut self, insn: *const Insn, off: u64, index: u32, resume: Resume) {
        // The main path saved live flags before anything that reaches here.
        self.fallback_call(insn, off);
        self.a.test_rr32(RAX, RAX);
        let stop = self.a.jcc(cc::NE);
        match resume {
            Resume::At {
                to,
                flags,
                regs,
                xregs,
                mxcsr,
            } => {
                self.reload(regs);
                self.reload_xmm(xregs);
                if mxcsr {
                    self.a.ldmxcsr(cpu(lay::mxcsr()));
                }
                if flags {
                    self.a.load_flags(cpu(lay::flags_res()));
                }
                let j = self.a.jmp();
                self.a.patch(j, to.unwrap_or(0));
            }
            Resume::Exit { next } => {
                // The interpreter counted the instruction itself.
                self.a.alu_mi(Alu::Add, cpu(lay::rip()), next as i32);
                self.leave_normally(index);
            }
        }
        let here = self.a.len();
        self.a.patch(stop, here);
        self.leave_status(index);
    }

    /// Cold: returns "done" after counting `retired` instructions (flags are in the struct).
    fn leave_normally(&mut self, retired: u32) {
        if retired != 0 {
            self.a
                .alu_mi(Alu::Add, cpu(lay::instructions()), retired as i32);
        }
        self.a.mov_ri(RAX, 0);
        let here = self.base;
        self.a.jmp_abs(here, self.t.exit);
    }

    /// Returns the fallback's status in EAX after counting the `index` instructions before it.
    fn leave_status(&mut self, index: u32) {
        if index != 0 {
            self.a
                .alu_mi(Alu::Add, cpu(lay::instructions()), index as i32);
        }
        let here = self.base;
        self.a.jmp_abs(here, self.t.exit);
    }
}

/// Resume for branches run by the interpreter in cold code: they end the block. (The
/// interpreter reports a branch as a jump, which leaves through `leave_status`; this covers a
/// handler that completes it as a plain step.)
fn branch_resume(s: &Site) -> Resume {
    Resume::Exit { next: s.next }
}

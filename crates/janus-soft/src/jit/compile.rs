//! Planning the translation of one decoded block (64-, 32- or 16-bit code): what each guest
//! instruction becomes (`Plan`), and the flag liveness the code
//! generator (`gen.rs`) uses to save the guest's flags only where they are live.
//!
//! Guest and host are both x86-64, so most guest instructions run as themselves (`Native`):
//! re-encoded with their memory operand replaced by a host pointer and RSP, R14 and R15
//! renamed to the host registers they live in. Their flags come out of the host's RFLAGS
//! exactly as the guest's would, which is why this is exact: the host CPU is the reference the
//! differential suite compares against. Stack operations, branches and a few system and string
//! instructions have templates; everything else runs in the interpreter, one instruction at a
//! time (`Plan::Fallback`).

use super::gen::{bit, sized, Gen, FLOATING};
use super::x64::reg::*;
use crate::block::Block;
use crate::exec::Insn;
use iced_x86::{
    Code, Encoder, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
    RflagsBits,
};

const ARITH: u32 = RflagsBits::OF
    | RflagsBits::SF
    | RflagsBits::ZF
    | RflagsBits::AF
    | RflagsBits::CF
    | RflagsBits::PF;

/// Addresses of what translated code calls or jumps to.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// The host has LAHF/SAHF in 64-bit mode (every x86-64 CPU since 2006).
    pub lahf: bool,
    pub fallback: u64,
    pub tlb_fill: u64,
    pub x87_prepare: u64,
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
pub enum Plan {
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
    /// PUSHF of the code size's width.
    Pushf,
    Pop,
    Leave,
    Cli,
    Sti,
    /// CLD, or STD (`true`): DF lives in `Flags::bits`, never in the host's RFLAGS.
    SetDf(bool),
    Swapgs,
    /// VZEROUPPER: the upper halves in the CPU struct become zero.
    VzeroUpper,
    /// RDTSC, or RDTSCP (`true`).
    Rdtsc(bool),
    /// REP MOVS (`true`) or REP STOS of elements of this many bytes.
    RepString(bool, u8),
    Fallback,
}

/// A guest instruction run on the host.
pub struct Native {
    /// The instruction with its memory operand reduced to a base register (set to the probe's
    /// result when it is emitted).
    pub ins: Instruction,
    /// Guest registers held in the host register of the same number (operands, implicit
    /// registers, the address's registers), and whether it writes them.
    pub identity: Vec<(u8, bool)>,
    /// Guest RSP, R14 and R15 as explicit operands, and whether it writes them: the operand
    /// is re-encoded with the host register they are in.
    pub floating: Vec<(u8, bool)>,
    /// (operand index, guest register, operand size) of those operands.
    pub renames: Vec<(u32, u8, usize)>,
    /// XMM registers (guest and host number are the same), and whether it writes them.
    pub xregs: Vec<(u8, bool)>,
    pub mem: Option<MemAccess>,
    pub flags_in: bool,
    /// The arithmetic flags it needs valid before it runs (those it reads, and those it
    /// leaves as they were), as RflagsBits.
    pub flags_kept: u32,
    pub flags_out: bool,
    /// An SSE instruction: it needs the SSE checks and, for floating point, the guest's MXCSR.
    pub sse: Option<Sse>,
    /// An x87 or MMX instruction: it runs with the guest's x87 registers loaded in the
    /// host's.
    pub x87: bool,
    /// An x87 instruction that keeps FOP/FIP/FDP (not MMX, not FNSTSW).
    pub x87_note: bool,
    /// It names AH..BH, so the host pointer must be a register that needs no REX prefix.
    pub high_byte: bool,
    /// DIV or IDIV: what must hold for it not to fault (else the interpreter runs it).
    pub div: Option<Div>,
    /// The alignment (16 or 32 bytes; 0: none) a memory operand must have (#GP otherwise):
    /// aligned SSE and AVX forms and CMPXCHG16B.
    pub align: u8,
    /// BT/BTS/BTR/BTC with a memory operand and the bit offset in a register: the offset
    /// (signed, operand-sized) moves the address by whole operands, and the instruction runs
    /// on the operand it lands in with the offset reduced to it.
    pub bit_offset: bool,
}

/// A DIV or IDIV of `size` bytes (4 or 8) by its operand.
#[derive(Clone, Copy)]
pub struct Div {
    pub signed: bool,
    pub size: u8,
}

#[derive(Clone, Copy)]
pub struct Sse {
    /// Floating point: runs under the guest's MXCSR.
    pub float: bool,
    /// A VEX form: the AVX checks apply, and the upper halves of its YMM registers go in and
    /// out of the CPU struct around it.
    pub avx: bool,
}

#[derive(Clone, Copy)]
pub struct MemAccess {
    pub size: u8,
    pub write: bool,
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

pub struct Compiler {
    /// Bitness of the block being translated (64, 32 or 16).
    bits: u32,
    /// The block's IP when it was decoded, and its linear address (what `Instruction::ip`
    /// counts from).
    start_ip: u64,
    start_linear: u64,
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
            bits: 64,
            start_ip: 0,
            start_linear: 0,
            enc: Encoder::new(64),
            info: InstructionInfoFactory::new(),
        }
    }

    /// Translates `block` for placement at address `base`, to run under the
    /// `Cpu::exec_key` bits `mode` (`core::TRANSLATION_MODE`: flat or segmented, the stack's
    /// width).
    pub fn translate(&mut self, block: &Block, mode: u32, base: usize, t: &Targets) -> Translation {
        let insns = &block.insns;
        self.bits = match block.ip_mask {
            u64::MAX => 64,
            0xffff_ffff => 32,
            _ => 16,
        };
        self.start_ip = block.start_ip;
        self.start_linear = insns.first().map_or(0, |i| i.i.ip());
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
        let mut g = Gen::new(base, block.start_phys() & 0xfff, *t, self.bits, mode);
        let mut native = 0;
        let mut fallback = 0;
        let mut off = 0u64;
        let mut ended = false;
        for (k, (insn, plan)) in insns.iter().zip(&plans).enumerate() {
            let u = uses[k];
            let live_in = u.reads || (live_after[k] && !u.writes_all);
            let at = Site {
                index: k as u32,
                last: k + 1 == insns.len(),
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
        let bits = self.bits;
        let w = (bits / 8) as u8;
        let reg0 = matches!(insn.op[0], crate::exec::Opnd::Reg(r) if r < 16);
        // The stack templates take 64-bit operands in 64-bit code, and 16- or 32-bit ones in
        // other code (gcc -m16 code pushes, calls and returns with 32-bit operands); the
        // indirect branch templates take the code size's own width only.
        let stack_op = if bits == 64 {
            insn.osize == 8 && insn.asize == 8
        } else {
            matches!(insn.osize, 2 | 4)
        };
        let near = match bits {
            64 => OpKind::NearBranch64,
            32 => OpKind::NearBranch32,
            _ => OpKind::NearBranch16,
        };
        // In 16-bit code a 32-bit relative branch (66 prefix) whose target lies past 64 KiB
        // leaves IP above the limit or faults: the interpreter decides. A translation of
        // 16-bit code runs only at the IP it was decoded at (see `vcpu`), so the target is
        // known here.
        let near = if bits == 16
            && i.op_count() > 0
            && i.op0_kind() == OpKind::NearBranch32
            && self
                .start_ip
                .wrapping_add(i.next_ip().wrapping_sub(self.start_linear) as u32 as u64)
                .wrapping_add(insn.rel as u64)
                & 0xffff_ffff
                <= 0xffff
        {
            OpKind::NearBranch32
        } else {
            near
        };
        match i.mnemonic() {
            Nop | Pause | Endbr64 | Endbr32 | Prefetchnta | Prefetcht0 | Prefetcht1
            | Prefetcht2 => Plan::Nop,
            Lea if reg0 => Plan::Lea,
            Jmp => match i.op0_kind() {
                k if k == near => Plan::JmpRel,
                OpKind::Register | OpKind::Memory if insn.osize == w && jmp_ok(i, bits) => {
                    Plan::JmpInd
                }
                _ => Plan::Fallback,
            },
            Call => match i.op0_kind() {
                k if k == near && stack_op => Plan::CallRel,
                OpKind::Register | OpKind::Memory if stack_op && jmp_ok(i, bits) => Plan::CallInd,
                _ => Plan::Fallback,
            },
            Ret if stack_op => Plan::Ret(if i.op_count() == 1 {
                i.immediate16()
            } else {
                0
            }),
            Push if stack_op && push_ok(i, insn.osize) => Plan::Push,
            Pushfq | Pushfd | Pushf if stack_op => Plan::Pushf,
            Pop if stack_op
                && reg0
                && i.op0_kind() == OpKind::Register
                && i.op0_register().size() == insn.osize as usize =>
            {
                Plan::Pop
            }
            Leave if stack_op => Plan::Leave,
            Cli => Plan::Cli,
            Cld => Plan::SetDf(false),
            Std => Plan::SetDf(true),
            Sti => Plan::Sti,
            Swapgs if bits == 64 => Plan::Swapgs,
            Rdtsc => Plan::Rdtsc(false),
            Rdtscp => Plan::Rdtsc(true),
            Movsb | Movsq | Stosb | Stosq
                if bits == 64
                    && i.has_rep_prefix()
                    && insn.asize == 8
                    && i.segment_prefix() == Register::None =>
            {
                let movs = matches!(i.mnemonic(), Movsb | Movsq);
                let size = if matches!(i.mnemonic(), Movsb | Stosb) {
                    1
                } else {
                    8
                };
                Plan::RepString(movs, size)
            }
            Ja | Jae | Jb | Jbe | Je | Jg | Jge | Jl | Jle | Jne | Jno | Jnp | Jns | Jo | Jp
            | Js if i.op0_kind() == near => Plan::Jcc(i.condition_code() as u8 - 1),
            Vzeroupper if insn.implemented => Plan::VzeroUpper,
            _ if crate::exec::sse::host_kind(insn).is_some() => match self.native(insn) {
                Some(n) => Plan::Native(Box::new(n)),
                None => Plan::Fallback,
            },
            _ if crate::exec::sse::runs_on_host_as_integer(insn) => match self.native(insn) {
                Some(n) => Plan::Native(Box::new(n)),
                None => Plan::Fallback,
            },
            _ if native_x87(insn) || native_mmx(insn) => match self.native(insn) {
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
            avx: crate::exec::sse::is_vex_vector(i),
        });
        let x87 = native_x87(insn) || native_mmx(insn);
        let mut has_mem = false;
        let mut explicit = [false; 16];
        for k in 0..i.op_count() {
            match i.op_kind(k) {
                OpKind::Register => {
                    let r = i.op_register(k);
                    if (r.is_xmm() || r.is_ymm()) && sse.is_some()
                        || (r.is_st() || r.is_mm()) && x87
                    {
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
        // A memory offset (MOV AL/AX/EAX, moffs) is a plain absolute address in 16- and
        // 32-bit code (it becomes MOV r, r/m below); in 64-bit code it is a 64-bit one the
        // probe does not take.
        let moffs = is_moffs(i.code());
        // BT/BTS/BTR/BTC m, r address the word the offset picks (`Native::bit_offset`): in
        // 64-bit addressing only.
        let bit_offset = has_mem && bit_offset_in_register(i);
        if has_mem && ((moffs && self.bits == 64) || (bit_offset && insn.asize != 8)) {
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
            // VEX forms zero a register up to the widest one (iced names the ZMM register).
            let vector = r.is_xmm() || r.is_ymm() || r.is_zmm();
            if (r.is_st() || r.is_mm()) && x87 {
                continue;
            }
            let (list, fam) = if vector && sse.is_some() && r.number() < 16 {
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
            let wide = sse.is_some() || i.mnemonic() == Mnemonic::Cmpxchg16b;
            let avx = sse.is_some_and(|s| s.avx);
            let fits = matches!(size, 1 | 2 | 4 | 8) || size == 16 && wide || size == 32 && avx;
            if !fits {
                return None;
            }
            Some((size as u8, write))
        } else {
            None
        };
        // Guest RSP, R14 and R15 live in whatever host register is free: as explicit operands
        // they are renamed to it, as the address's registers the address computation reads
        // them; anything else (an implicit use) is left to the interpreter.
        let mut identity: Vec<(u8, bool)> = Vec::new();
        let mut floating: Vec<(u8, bool)> = Vec::new();
        for &(fam, written) in &used {
            if FLOATING & bit(fam) != 0 {
                if explicit[fam as usize] {
                    floating.push((fam, written));
                } else if !mem_regs.contains(&Some(fam)) || written {
                    return None;
                }
            } else {
                identity.push((fam, written));
            }
        }
        let mut renames = Vec::new();
        for k in 0..i.op_count() {
            if i.op_kind(k) == OpKind::Register {
                let r = i.op_register(k);
                let g = r.full_register().number() as u8 & 15;
                if r.is_gpr() && FLOATING & bit(g) != 0 {
                    renames.push((k, g, r.size()));
                }
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
        // The register budget: the operands, plus an address, the probe's two registers and
        // the host pointer; with AH..BH the pointer must be one of the seven low registers.
        let low_used = identity.iter().filter(|(g, _)| *g < 8).count();
        if identity.len() + floating.len() + 4 > 13 || (high_byte && low_used + 1 > 6) {
            return None;
        }
        let mut ins = host_form(i)?;
        if has_mem {
            crate::decode::rebase_memory(&mut ins, Register::RSI);
        }
        // Encodable with registers like the ones it will get?
        let mut trial = ins;
        for &(k, _, size) in &renames {
            trial.set_op_register(k, sized(R10, size)?);
        }
        let encoded = self.enc.encode(&trial, 0);
        let _ = self.enc.take_buffer();
        encoded.ok()?;
        let div = match i.mnemonic() {
            Mnemonic::Div | Mnemonic::Idiv => {
                let size = if has_mem {
                    i.memory_size().size()
                } else {
                    i.op0_register().size()
                };
                if !matches!(size, 4 | 8) {
                    return None;
                }
                Some(Div {
                    signed: i.mnemonic() == Mnemonic::Idiv,
                    size: size as u8,
                })
            }
            _ => None,
        };
        let f = flags_of(i);
        Some(Native {
            align: match sse {
                Some(s) if s.avx => crate::exec::sse::vex_alignment(i),
                Some(_) if crate::exec::sse::must_align(insn, i.memory_size().size()) => 16,
                _ if i.mnemonic() == Mnemonic::Cmpxchg16b => 16,
                _ => 0,
            },
            div,
            bit_offset,
            ins,
            identity,
            floating,
            renames,
            xregs,
            sse,
            x87,
            x87_note: native_x87(insn) && i.mnemonic() != Mnemonic::Fnstsw,
            mem: mem.map(|(size, write)| MemAccess { size, write }),
            flags_in: f.reads || f.partial,
            // A shift or rotate by CL keeps every flag when the count is 0.
            flags_kept: if f.reads && i.rflags_read() & ARITH == 0 {
                ARITH
            } else {
                (i.rflags_read() | (ARITH & !i.rflags_modified())) & ARITH
            },
            flags_out: f.writes_any,
            high_byte,
        })
    }
}

/// MMX instructions (on MMX registers only, no XMM register and no implicit memory) that run
/// as themselves on the host's MMX registers, inside an x87 session (FRSTOR loads the guest's
/// registers, which the MMX registers alias).
fn native_mmx(insn: &Insn) -> bool {
    let i = &insn.i;
    let regs = (0..i.op_count()).filter(|&k| i.op_kind(k) == OpKind::Register);
    let mm = regs.clone().any(|k| i.op_register(k).is_mm());
    let xmm = regs.clone().any(|k| {
        let r = i.op_register(k);
        r.is_xmm() || r.is_ymm()
    });
    insn.implemented
        && (mm && !xmm || i.mnemonic() == Mnemonic::Emms)
        // The conversions between MMX and XMM are floating point (MXCSR), even when the XMM
        // side is a memory operand.
        && !matches!(
            i.mnemonic(),
            Mnemonic::Maskmovq
                | Mnemonic::Cvtps2pi
                | Mnemonic::Cvttps2pi
                | Mnemonic::Cvtpd2pi
                | Mnemonic::Cvttpd2pi
                | Mnemonic::Cvtpi2ps
                | Mnemonic::Cvtpi2pd
        )
}

/// x87 instructions that run as themselves on the host's FPU (with the guest's registers loaded
/// there, every exception masked): arithmetic, loads and stores of 2 to 8 bytes, compares,
/// constants, register moves. What changes the control word or the environment, the 80-bit
/// and BCD memory forms, and the state saves stay in the interpreter.
fn native_x87(insn: &Insn) -> bool {
    use Mnemonic::*;
    let i = &insn.i;
    let mem_size = (0..i.op_count())
        .any(|k| i.op_kind(k) == OpKind::Memory)
        .then(|| i.memory_size().size());
    if mem_size.is_some_and(|s| !matches!(s, 2 | 4 | 8)) {
        return false;
    }
    insn.implemented
        && matches!(
            i.mnemonic(),
            Fld | Fst
                | Fstp
                | Fild
                | Fist
                | Fistp
                | Fisttp
                | Fadd
                | Faddp
                | Fiadd
                | Fsub
                | Fsubp
                | Fisub
                | Fsubr
                | Fsubrp
                | Fisubr
                | Fmul
                | Fmulp
                | Fimul
                | Fdiv
                | Fdivp
                | Fidiv
                | Fdivr
                | Fdivrp
                | Fidivr
                | Fcom
                | Fcomp
                | Fcompp
                | Ficom
                | Ficomp
                | Fucom
                | Fucomp
                | Fucompp
                | Fcomi
                | Fcomip
                | Fucomi
                | Fucomip
                | Fxch
                | Fchs
                | Fabs
                | Ftst
                | Fxam
                | Fld1
                | Fldz
                | Fldpi
                | Fldl2e
                | Fldl2t
                | Fldlg2
                | Fldln2
                | Fsqrt
                | Frndint
                | Fscale
                | Fprem
                | Fprem1
                | Fxtract
                | Fcmovb
                | Fcmove
                | Fcmovbe
                | Fcmovu
                | Fcmovnb
                | Fcmovne
                | Fcmovnbe
                | Fcmovnu
                | Fnstsw
                | Fincstp
                | Fdecstp
                | Fnop
        )
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
            | Cmpxchg8b
            | Cmpxchg16b
            | Cbw
            | Cwde
            | Cdqe
            | Cwd
            | Cdq
            | Cqo
            | Popcnt
            | Lfence
            | Mfence
            | Sfence
            | Div
            | Idiv
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

/// Indirect branch operands the templates handle: a register or a memory operand of the code
/// size's width.
fn jmp_ok(i: &Instruction, bits: u32) -> bool {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() * 8 == bits as usize,
        OpKind::Memory => i.memory_size().size() * 8 == bits as usize && !is_moffs(i.code()),
        _ => false,
    }
}

/// PUSH of a register, an immediate or a memory operand of the operand size (`osize` bytes).
fn push_ok(i: &Instruction, osize: u8) -> bool {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().is_gpr() && i.op0_register().size() == osize as usize,
        OpKind::Immediate8to64 | OpKind::Immediate32to64 => osize == 8,
        OpKind::Immediate8to32 | OpKind::Immediate32 => osize == 4,
        OpKind::Immediate8to16 | OpKind::Immediate16 => osize == 2,
        OpKind::Memory => i.memory_size().size() == osize as usize && !is_moffs(i.code()),
        _ => false,
    }
}

/// `i` as an instruction that means the same in 64-bit code: the one-byte INC/DEC forms of
/// 16- and 32-bit code are REX prefixes there (their ModRM forms are not), and a memory offset
/// move becomes MOV with a memory operand. Others are themselves (if one has no 64-bit
/// encoding, the encoder says so and the interpreter runs it).
fn host_form(i: &Instruction) -> Option<Instruction> {
    use iced_x86::MemoryOperand;
    use Code::*;
    let mem = || MemoryOperand::with_base(Register::RSI);
    let r = |code| Instruction::with1(code, i.op0_register()).ok();
    let load = |code| Instruction::with2(code, i.op0_register(), mem()).ok();
    let store = |code| Instruction::with2(code, mem(), i.op1_register()).ok();
    match i.code() {
        Inc_r16 => r(Inc_rm16),
        Inc_r32 => r(Inc_rm32),
        Dec_r16 => r(Dec_rm16),
        Dec_r32 => r(Dec_rm32),
        Mov_AL_moffs8 => load(Mov_r8_rm8),
        Mov_AX_moffs16 => load(Mov_r16_rm16),
        Mov_EAX_moffs32 => load(Mov_r32_rm32),
        Mov_moffs8_AL => store(Mov_rm8_r8),
        Mov_moffs16_AX => store(Mov_rm16_r16),
        Mov_moffs32_EAX => store(Mov_rm32_r32),
        _ => Some(*i),
    }
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
        | Plan::Pushf
        | Plan::Pop
        | Plan::Leave
        | Plan::Cli
        | Plan::Sti
        | Plan::Swapgs
        | Plan::VzeroUpper
        | Plan::RepString(..)
        | Plan::Rdtsc(_)
        | Plan::JmpInd => observes,
        // CLD/STD change no arithmetic flag and cannot fault.
        Plan::Lea | Plan::Nop | Plan::JmpRel | Plan::SetDf(_) => FlagUse::default(),
        Plan::Native(n) => FlagUse {
            // Whatever may fault (a memory operand, the SSE and x87 checks, a divide) pushes
            // the flags as they are.
            reads: flags_of(&insn.i).reads
                || n.mem.is_some()
                || n.sse.is_some()
                || n.x87
                || n.div.is_some(),
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
pub struct Site<'a> {
    pub index: u32,
    /// The block's last instruction.
    pub last: bool,
    pub off: u64,
    pub next: u64,
    /// Flags are live before the instruction (it or a later one reads them).
    pub live_in: bool,
    /// The instruction needs the guest's flags in RFLAGS (it reads them, or writes only some
    /// and what it leaves is live).
    pub flags_needed: bool,
    pub insn: &'a Insn,
}

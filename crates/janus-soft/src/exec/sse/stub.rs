//! SSE3 to SSE4.2 (`--cpu v2`) and AVX, AVX2, FMA, F16C, BMI1, BMI2, LZCNT and MOVBE
//! (`--cpu v3`), run as themselves on the host.
//!
//! Design decision: these extensions add hundreds of forms (shuffles, blends, horizontal and
//! dot-product arithmetic, rounding, the string compares of SSE4.2, CRC32, every vector
//! operation again in VEX form at 128 and 256 bits, fused multiply-add, half-precision
//! conversions, bit manipulation) whose exact results, down to DPPS's rounding order and
//! PCMPESTRI's aggregation, are the host's when the host runs them. The soft engine offers a
//! level only on hosts that have it (`cpuid::Level::host_runs`), and the interpreter runs each
//! such instruction through a stub: the instruction re-encoded with its vector operands in
//! xmm1..xmm4 or ymm1..ymm4 (xmm0 when the encoding fixes it), MMX operands in mm0/mm1,
//! general-purpose operands in RAX, RCX and R8 (implicit ones, as PCMPESTRI's or MULX's, in
//! themselves) and its memory operand at a buffer (`[rsi]`), then RET. A stub is made once per
//! form (the operands renamed, so forms are few: mnemonic, immediate, operand sizes) into an
//! arena of its own, which is mapped twice, writable and executable, so no page is both. The
//! translator runs the same instructions inline. Gathers and masked moves, whose memory
//! accesses depend on the data, are in `masked`.

use super::super::{ea, Handler, Insn};
use super::float::simd_fault;
use super::operand::{
    check_align, mm_get, mm_put, mmx_enter, must_align, prologue, read_bytes, write_bytes,
};
use super::xsave::avx_check;
use crate::core::{Cpu, Flow, Step, Stop};
use crate::mmu::Acc;
use iced_x86::{
    CpuidFeature, Encoder, EncodingKind, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register, RflagsBits,
};
use std::arch::asm;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

/// The extensions this module runs.
fn in_extension(i: &Instruction) -> bool {
    use CpuidFeature as F;
    i.cpuid_features().iter().any(|f| {
        matches!(
            f,
            F::SSE3
                | F::SSSE3
                | F::SSE4_1
                | F::SSE4_2
                | F::AVX
                | F::AVX2
                | F::FMA
                | F::F16C
                | F::BMI1
                | F::BMI2
                | F::LZCNT
                | F::MOVBE
        )
    }) && !matches!(
        i.mnemonic(),
        // SSE3's x87 store and its thread-monitoring pair are not vector instructions; the
        // AVX state instructions are in `xsave`.
        Mnemonic::Fisttp
            | Mnemonic::Monitor
            | Mnemonic::Mwait
            | Mnemonic::Vzeroupper
            | Mnemonic::Vzeroall
            | Mnemonic::Vldmxcsr
            | Mnemonic::Vstmxcsr
            | Mnemonic::Vmaskmovdqu
    ) && !super::masked::is_masked(i)
}

/// A VEX-encoded vector instruction (AVX, AVX2, FMA, F16C; not BMI's on general-purpose
/// registers).
pub fn is_vex_vector(i: &Instruction) -> bool {
    use CpuidFeature as F;
    i.code().encoding() == EncodingKind::VEX
        && i.cpuid_features()
            .iter()
            .any(|f| matches!(f, F::AVX | F::AVX2 | F::FMA | F::F16C))
}

/// A VEX form whose operands must be aligned (to their size).
fn vex_aligned(i: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(
        i.mnemonic(),
        Vmovaps | Vmovapd | Vmovdqa | Vmovntps | Vmovntpd | Vmovntdq | Vmovntdqa
    )
}

/// The alignment a VEX form's memory operand needs (0: none).
pub fn vex_alignment(i: &Instruction) -> u8 {
    if vex_aligned(i) {
        i.memory_size().size() as u8
    } else {
        0
    }
}

/// Whether `i` is one of this module's instructions that computes in floating point (and so
/// must run under the guest's MXCSR); every VEX form counts.
pub fn is_float(i: &Instruction) -> bool {
    use Mnemonic::*;
    is_vex_vector(i)
        || matches!(
            i.mnemonic(),
            Addsubps
                | Addsubpd
                | Haddps
                | Haddpd
                | Hsubps
                | Hsubpd
                | Dpps
                | Dppd
                | Roundps
                | Roundpd
                | Roundss
                | Roundsd
        )
}

/// The translator may run `i` inline as itself with the guest's XMM registers in the host's
/// (and, for VEX forms, their upper halves brought in and out around it): one of this
/// module's vector instructions that names no MMX register (those live in the x87 file).
pub fn covers(i: &Instruction) -> bool {
    let legacy_sse = i.code().encoding() == EncodingKind::Legacy
        && (0..i.op_count()).any(|k| is_reg(i, k, Register::is_xmm));
    in_extension(i)
        && (legacy_sse || is_vex_vector(i))
        && !(0..i.op_count()).any(|k| is_reg(i, k, Register::is_mm))
}

/// One of this module's instructions on general-purpose registers only (BMI1, BMI2, LZCNT,
/// MOVBE, CRC32, POPCNT forms): the translator runs it as an integer instruction.
pub fn general_purpose(insn: &Insn) -> bool {
    let i = &insn.i;
    insn.aux != 0
        && in_extension(i)
        && (0..i.op_count()).all(|k| i.op_kind(k) != OpKind::Register || i.op_register(k).is_gpr())
}

fn is_reg(i: &Instruction, k: u32, f: fn(Register) -> bool) -> bool {
    i.op_kind(k) == OpKind::Register && f(i.op_register(k))
}

/// The handler for `insn` if this module runs it; records the form's plan in `insn.aux`.
pub fn handler(insn: &mut Insn) -> Option<Handler> {
    if !in_extension(&insn.i) {
        return None;
    }
    insn.aux = register(&insn.i)?;
    Some(run)
}

/// How one form runs on the host, whatever guest registers its operands name: which frame
/// slots are in use and written, the memory operand, the flags. The guest registers behind
/// the slots are in `Insn::aux` (see [`Regs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Plan {
    stub: usize,
    /// Host xmm0..xmm4 or ymm0..ymm4 (guest vector registers): in use, written.
    xmm: [Option<bool>; 5],
    /// Host mm0, mm1 (guest MMX registers).
    mm: [Option<bool>; 2],
    /// Host RAX, RCX, RDX, R8 (guest general-purpose registers).
    gpr: [Option<bool>; 4],
    /// The memory operand: bytes, read, written.
    mem: Option<(usize, bool, bool)>,
    /// RFLAGS bits (EFLAGS positions) the instruction writes.
    flags: u64,
    /// A VEX form on vector registers: whole YMM registers go in and out, and the AVX checks
    /// apply.
    wide: bool,
}

/// Host general-purpose registers of the frame's slots, and the slots explicit operands are
/// renamed into (RAX and RCX first: they have the AH/CH forms).
const GPR_SLOTS: usize = 4;
const EXPLICIT_GPR: [usize; 3] = [0, 1, 3];

/// The guest register behind each slot, packed in `Insn::aux` above the plan's index (bits
/// 0..24): four bits per vector slot (24..44), three per MMX slot (44..50), four per
/// general-purpose slot of explicit operands (50..62). RDX's slot only ever holds RDX.
#[derive(Clone, Copy, Debug, Default)]
struct Regs {
    xmm: [u8; 5],
    mm: [u8; 2],
    gpr: [u8; GPR_SLOTS],
}

const PLAN_BITS: u32 = 24;

impl Regs {
    fn pack(&self, plan: u32) -> u64 {
        let mut v = 0u64;
        for (k, r) in self.xmm.iter().enumerate() {
            v |= (*r as u64 & 15) << (4 * k);
        }
        for (k, r) in self.mm.iter().enumerate() {
            v |= (*r as u64 & 7) << (20 + 3 * k);
        }
        for (k, &slot) in EXPLICIT_GPR.iter().enumerate() {
            v |= (self.gpr[slot] as u64 & 15) << (26 + 4 * k);
        }
        plan as u64 | v << PLAN_BITS
    }

    fn unpack(aux: u64) -> (u32, Regs) {
        let v = aux >> PLAN_BITS;
        let mut r = Regs {
            xmm: std::array::from_fn(|k| (v >> (4 * k)) as u8 & 15),
            mm: std::array::from_fn(|k| (v >> (20 + 3 * k)) as u8 & 7),
            gpr: [0, 0, 2, 0],
        };
        for (k, &slot) in EXPLICIT_GPR.iter().enumerate() {
            r.gpr[slot] = (v >> (26 + 4 * k)) as u8 & 15;
        }
        ((aux & ((1 << PLAN_BITS) - 1)) as u32, r)
    }
}

fn writes(a: OpAccess) -> bool {
    matches!(
        a,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

fn reads(a: OpAccess) -> bool {
    matches!(
        a,
        OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

/// iced's RflagsBits as EFLAGS bit positions (arithmetic flags only).
fn eflags_of(r: u32) -> u64 {
    [
        (RflagsBits::CF, crate::flags::CF),
        (RflagsBits::PF, crate::flags::PF),
        (RflagsBits::AF, crate::flags::AF),
        (RflagsBits::ZF, crate::flags::ZF),
        (RflagsBits::SF, crate::flags::SF),
        (RflagsBits::OF, crate::flags::OF),
    ]
    .iter()
    .filter(|(b, _)| r & b != 0)
    .fold(0, |a, (_, e)| a | e)
}

/// Host register of frame slot `slot` (0: RAX, 1: RCX, 3: R8) at the size and kind of guest
/// register `r`.
fn host_gpr(slot: usize, r: Register) -> Option<Register> {
    use Register as R;
    let high = matches!(r, R::AH | R::CH | R::DH | R::BH);
    Some(match (slot, r.size(), high) {
        (0, 1, true) => R::AH,
        (1, 1, true) => R::CH,
        (0, 1, false) => R::AL,
        (1, 1, false) => R::CL,
        (3, 1, false) => R::R8L,
        (0, 2, _) => R::AX,
        (1, 2, _) => R::CX,
        (3, 2, _) => R::R8W,
        (0, 4, _) => R::EAX,
        (1, 4, _) => R::ECX,
        (3, 4, _) => R::R8D,
        (0, 8, _) => R::RAX,
        (1, 8, _) => R::RCX,
        (3, 8, _) => R::R8,
        _ => return None,
    })
}

/// Vector register `n` of the kind of `r` (XMM or YMM).
fn vector(r: Register, n: usize) -> Register {
    const X: [Register; 5] = [
        Register::XMM0,
        Register::XMM1,
        Register::XMM2,
        Register::XMM3,
        Register::XMM4,
    ];
    const Y: [Register; 5] = [
        Register::YMM0,
        Register::YMM1,
        Register::YMM2,
        Register::YMM3,
        Register::YMM4,
    ];
    if r.is_ymm() {
        Y[n]
    } else {
        X[n]
    }
}

/// Whether operand `k` of `i` is a register the encoding fixes (BLENDVPS's XMM0): renaming it
/// changes the instruction.
fn fixed_register(i: &Instruction, k: u32) -> bool {
    let mut t = *i;
    let other = if i.op_register(k) == Register::XMM1 {
        Register::XMM2
    } else {
        Register::XMM1
    };
    t.set_op_register(k, other);
    let mut e = Encoder::new(64);
    if e.encode(&t, 0).is_err() {
        return true;
    }
    let bytes = e.take_buffer();
    let d = iced_x86::Decoder::new(64, &bytes, iced_x86::DecoderOptions::NONE).decode();
    d.code() != t.code() || d.op_register(k) != other
}

/// Works out how `i` runs on the host: the renamed instruction, its plan (stub not yet set)
/// and the guest registers behind the slots.
fn plan(i: &Instruction) -> Option<(Instruction, Plan, Regs)> {
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(i);
    let mut host = *i;
    let mut p = Plan {
        flags: eflags_of(i.rflags_modified()),
        wide: is_vex_vector(i),
        ..Plan::default()
    };
    let mut regs = Regs::default();
    let (mut nx, mut nm, mut ng) = (1usize, 0usize, 0usize);
    let mut explicit = Vec::new();
    for k in 0..i.op_count() {
        let written = writes(info.op_access(k));
        match i.op_kind(k) {
            OpKind::Register => {
                let r = i.op_register(k);
                explicit.push(r.full_register());
                if r.is_xmm() || r.is_ymm() {
                    if r == Register::XMM0 && fixed_register(i, k) {
                        p.xmm[0] = Some(written);
                        continue;
                    }
                    *p.xmm.get_mut(nx)? = Some(written);
                    regs.xmm[nx] = r.number() as u8;
                    host.set_op_register(k, vector(r, nx));
                    nx += 1;
                } else if r.is_mm() {
                    *p.mm.get_mut(nm)? = Some(written);
                    regs.mm[nm] = r.number() as u8;
                    host.set_op_register(k, [Register::MM0, Register::MM1][nm]);
                    nm += 1;
                } else if r.is_gpr() {
                    let slot = *EXPLICIT_GPR.get(ng)?;
                    let (n, _) = crate::decode::gpr(r)?;
                    host.set_op_register(k, host_gpr(slot, r)?);
                    p.gpr[slot] = Some(written);
                    regs.gpr[slot] = if n >= 16 { n - 16 } else { n };
                    ng += 1;
                } else {
                    return None;
                }
            }
            OpKind::Memory => {
                let m = info.used_memory().first()?;
                let size = m.memory_size().size();
                if !matches!(size, 1 | 2 | 4 | 8 | 16 | 32) {
                    return None;
                }
                p.mem = Some((size, reads(m.access()), writes(m.access())));
                crate::decode::rebase_memory(&mut host, Register::RSI);
            }
            OpKind::Immediate8 | OpKind::Immediate8_2nd => {}
            _ => return None,
        }
    }
    for u in info.used_registers() {
        let r = u.register();
        let full = r.full_register();
        if full == Register::ZMM0 {
            // XMM0 fixed or implicit (BLENDVPS's mask, PCMPESTRM's result), or also an
            // explicit operand: slot 0 carries it, and an explicit operand's slot, written
            // back after it, wins.
            let w = p.xmm[0].unwrap_or(false) || writes(u.access());
            p.xmm[0] = Some(w);
        } else if !(r.is_segment_register() || r.is_gpr() || explicit.contains(&full)) {
            return None;
        }
    }
    // Implicit general-purpose registers (PCMPESTRI's EAX, EDX, ECX; MULX's EDX) stay where
    // they are, which must not be where an explicit operand was put.
    for (n, written) in implicit_gprs(i)? {
        if n > 2 || EXPLICIT_GPR[..ng].contains(&n) {
            return None;
        }
        p.gpr[n] = Some(p.gpr[n].unwrap_or(false) || written);
        regs.gpr[n] = n as u8;
    }
    Some((host, p, regs))
}

/// The general-purpose registers `i` uses beyond its operands and address (number, written):
/// what an instruction uses once its explicit register operands are moved to R12-R15 and its
/// memory operand to `[rsi]`, other than those. (An implicit register can also be an explicit
/// one, as MULX's EDX: comparing with the instruction itself would hide it.)
fn implicit_gprs(i: &Instruction) -> Option<Vec<(usize, bool)>> {
    use Register as R;
    const MOVED: [[R; 4]; 4] = [
        [R::R12L, R::R12W, R::R12D, R::R12],
        [R::R13L, R::R13W, R::R13D, R::R13],
        [R::R14L, R::R14W, R::R14D, R::R14],
        [R::R15L, R::R15W, R::R15D, R::R15],
    ];
    let mut probe = *i;
    let mut k_moved = 0;
    for k in 0..i.op_count() {
        if i.op_kind(k) == OpKind::Register && i.op_register(k).is_gpr() {
            let size = match i.op_register(k).size() {
                1 => 0,
                2 => 1,
                4 => 2,
                _ => 3,
            };
            probe.set_op_register(k, MOVED.get(k_moved)?[size]);
            k_moved += 1;
        }
    }
    if (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory) {
        crate::decode::rebase_memory(&mut probe, R::RSI);
    }
    let mut factory = InstructionInfoFactory::new();
    let mut out: Vec<(usize, bool)> = Vec::new();
    for u in factory.info(&probe).used_registers() {
        let full = u.register().full_register();
        if !u.register().is_gpr() || matches!(full, R::R12 | R::R13 | R::R14 | R::R15 | R::RSI) {
            continue;
        }
        let n = full.number();
        match out.iter_mut().find(|(m, _)| *m == n) {
            Some(e) => e.1 |= writes(u.access()),
            None => out.push((n, writes(u.access()))),
        }
    }
    Some(out)
}

/// Every plan made so far, the stubs by encoding, and the arena they live in.
struct Registry {
    plans: Vec<Plan>,
    by_plan: HashMap<Plan, u32>,
    stubs: HashMap<Vec<u8>, usize>,
    arena: Option<Arena>,
}

fn registry() -> &'static RwLock<Registry> {
    static R: OnceLock<RwLock<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        RwLock::new(Registry {
            // Index 0 is no plan: `Insn::aux` is 0 for instructions that have none.
            plans: vec![Plan::default()],
            by_plan: HashMap::new(),
            stubs: HashMap::new(),
            arena: None,
        })
    })
}

/// Creates the stub arena (and installs its SIGFPE handler) now rather than at the first
/// stub. Returns whether it could.
pub fn prepare() -> bool {
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    if reg.arena.is_none() {
        reg.arena = Arena::new(ARENA_BYTES).ok();
    }
    reg.arena.is_some()
}

/// Plans `i` and makes its stub (or finds them): the value for `Insn::aux`.
fn register(i: &Instruction) -> Option<u64> {
    let (host, mut plan, regs) = plan(i)?;
    let mut enc = Encoder::new(64);
    enc.encode(&host, 0).ok()?;
    let code = enc.take_buffer();
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    plan.stub = match reg.stubs.get(&code) {
        Some(&s) => s,
        None => {
            if reg.arena.is_none() {
                reg.arena = Some(Arena::new(ARENA_BYTES).ok()?);
            }
            let mut bytes = code.clone();
            bytes.push(0xc3); // RET
            let s = reg.arena.as_mut()?.emit(&bytes)?;
            reg.stubs.insert(code, s);
            s
        }
    };
    let n = match reg.by_plan.get(&plan) {
        Some(&n) => n,
        None => {
            let n = reg.plans.len() as u32;
            reg.plans.push(plan);
            reg.by_plan.insert(plan, n);
            n
        }
    };
    Some(regs.pack(n))
}

/// Forms are bounded (renamed operands: mnemonic, immediate, operand sizes), a few tens of
/// thousands at most at 16 bytes each.
const ARENA_BYTES: usize = 4 << 20;

/// Bytes per stub slot, and where in it the RET a trapping instruction resumes at is.
const SLOT: usize = 32;
const RECOVER: usize = 16;

/// Where the arena's executable view is, for the SIGFPE handler: [start, end).
static EXEC_START: AtomicUsize = AtomicUsize::new(0);
static EXEC_END: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The signal the last stub this thread ran trapped with (0: none): SIGFPE for an
    /// unmasked SIMD floating-point exception; anything else is a defect of this module.
    static TRAPPED: Cell<i32> = const { Cell::new(0) };
}

/// Signals a stub can raise, and their dispositions before [`on_signal`] was installed, for
/// faults that are not ours.
const SIGNALS: [libc::c_int; 3] = [libc::SIGFPE, libc::SIGSEGV, libc::SIGILL];
static PREVIOUS: OnceLock<Vec<(libc::c_int, libc::sigaction)>> = OnceLock::new();

/// A stub's instruction trapped. SIGFPE is an unmasked SIMD floating-point exception (#XM):
/// the exception flags are in the interrupted MXCSR, which the kernel restores, and the
/// instruction wrote nothing. SIGSEGV or SIGILL would be a defect here (a form that should not
/// have become a stub); it stops the VM instead of the VMM. Either way: resume at the slot's
/// recovery RET and note the signal. A signal anywhere else goes to the previous handler, or,
/// with none, recurs under the default action.
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid ucontext_t as the third argument.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let (lo, hi) = (
        EXEC_START.load(Ordering::Acquire),
        EXEC_END.load(Ordering::Acquire),
    );
    if (lo..hi).contains(&rip) {
        TRAPPED.with(|t| t.set(sig));
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] =
            ((rip - lo) / SLOT * SLOT + lo + RECOVER) as i64;
        return;
    }
    let prev = PREVIOUS
        .get()
        .and_then(|p| p.iter().find(|(s, _)| *s == sig));
    match prev {
        Some((_, p)) if p.sa_flags & libc::SA_SIGINFO != 0 && p.sa_sigaction > 1 => {
            // SAFETY: a SA_SIGINFO handler installed by someone else has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(p.sa_sigaction) };
            f(sig, info, ctx);
        }
        _ => {
            // SAFETY: resetting a signal's disposition has no memory-safety preconditions.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

fn install_handlers() -> std::io::Result<()> {
    let mut previous = Vec::new();
    for sig in SIGNALS {
        // SAFETY: an all-zero sigaction is a valid starting value; the handler has the
        // SA_SIGINFO signature; `old` receives the previous disposition.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            // On the alternate stack where the thread has one (Rust sets one up to report
            // stack overflows, which this handler passes on).
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &sa, &mut old) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            previous.push((sig, old));
        }
    }
    let _ = PREVIOUS.set(previous);
    Ok(())
}

/// Executable memory for stubs: a [`DualMap`](crate::jit::buffer::DualMap), writable at one
/// address and executable at another.
struct Arena {
    map: crate::jit::buffer::DualMap,
    used: usize,
}

impl Arena {
    fn new(size: usize) -> std::io::Result<Arena> {
        let map = crate::jit::buffer::DualMap::new(size, c"janus-stubs")?;
        EXEC_START.store(map.exec_at(0), Ordering::Release);
        EXEC_END.store(map.exec_at(size), Ordering::Release);
        install_handlers()?;
        Ok(Arena { map, used: 0 })
    }

    /// Places the instruction `code` (at most 15 bytes) in a slot of its own: the instruction
    /// and RET, and at [`RECOVER`] another RET where a trapping instruction resumes. Returns
    /// the slot's executable address.
    fn emit(&mut self, code: &[u8]) -> Option<usize> {
        if code.len() >= RECOVER {
            return None;
        }
        let start = self.used;
        if start + SLOT > self.map.size() {
            return None;
        }
        let mut slot = [0xccu8; SLOT];
        slot[..code.len()].copy_from_slice(code);
        slot[code.len()] = 0xc3;
        slot[RECOVER] = 0xc3;
        // SAFETY: `start + SLOT <= size`: in bounds; no stub at these bytes exists yet, so
        // nothing executes them.
        unsafe { self.map.write(start, &slot) };
        self.used = start + SLOT;
        Some(self.map.exec_at(start))
    }
}

/// What a stub runs on: operands in, results out. Vector slots are 32 bytes (YMM); legacy
/// forms use the low 16. The offsets are the `call_*` blocks' (checked by a test).
#[repr(C, align(32))]
#[derive(Default)]
struct Frame {
    xmm: [[u128; 2]; 5],
    mem: [u8; 32],
    gpr: [u64; GPR_SLOTS],
    mm: [u64; 2],
    flags: u64,
    mxcsr: u32,
    save: u32,
}

/// Calls `stub` with the frame's registers loaded and stores them back, under the frame's
/// MXCSR (the host's restored after). XMM registers only: legacy forms, which leave the upper
/// halves alone.
fn call_sse(stub: usize, f: &mut Frame) {
    // SAFETY: `stub` is a stub from the arena: one instruction that reads and writes only
    // xmm0-xmm4, mm0/mm1, RAX/RCX/RDX/R8, RFLAGS, MXCSR and the 32 bytes at RSI (the frame's
    // buffer), then RET. The block loads and stores those registers from the frame, which is
    // a live local; every register it changes is declared clobbered, the stack is used only
    // by CALL/PUSHFQ (no `nostack`), EMMS leaves the x87 state empty and the host's MXCSR is
    // restored.
    unsafe {
        asm!(
            "stmxcsr dword ptr [r11 + 252]",
            "ldmxcsr dword ptr [r11 + 248]",
            "movdqa xmm0, xmmword ptr [r11]",
            "movdqa xmm1, xmmword ptr [r11 + 32]",
            "movdqa xmm2, xmmword ptr [r11 + 64]",
            "movdqa xmm3, xmmword ptr [r11 + 96]",
            "movdqa xmm4, xmmword ptr [r11 + 128]",
            "movq mm0, qword ptr [r11 + 224]",
            "movq mm1, qword ptr [r11 + 232]",
            "mov rax, qword ptr [r11 + 192]",
            "mov rcx, qword ptr [r11 + 200]",
            "mov rdx, qword ptr [r11 + 208]",
            "mov r8, qword ptr [r11 + 216]",
            "lea rsi, [r11 + 160]",
            "call r10",
            "pushfq",
            "pop qword ptr [r11 + 240]",
            "mov qword ptr [r11 + 192], rax",
            "mov qword ptr [r11 + 200], rcx",
            "mov qword ptr [r11 + 208], rdx",
            "mov qword ptr [r11 + 216], r8",
            "movdqa xmmword ptr [r11], xmm0",
            "movdqa xmmword ptr [r11 + 32], xmm1",
            "movdqa xmmword ptr [r11 + 64], xmm2",
            "movdqa xmmword ptr [r11 + 96], xmm3",
            "movdqa xmmword ptr [r11 + 128], xmm4",
            "movq qword ptr [r11 + 224], mm0",
            "movq qword ptr [r11 + 232], mm1",
            "emms",
            "stmxcsr dword ptr [r11 + 248]",
            "ldmxcsr dword ptr [r11 + 252]",
            in("r10") stub,
            in("r11") f as *mut Frame,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            out("rsi") _,
            out("r8") _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            out("xmm4") _,
            out("mm0") _,
            out("mm1") _,
        );
    }
}

/// As [`call_sse`] with whole YMM registers, for VEX forms; VZEROUPPER at the end keeps the
/// host's own SSE code free of the transition penalty.
///
/// # Safety
/// The host must have AVX (the soft engine offers VEX forms only at `--cpu v3`, which needs
/// it).
#[target_feature(enable = "avx")]
unsafe fn call_avx(stub: usize, f: &mut Frame) {
    // SAFETY: as in `call_sse`, with ymm0-ymm4; the caller guarantees AVX.
    unsafe {
        asm!(
            "stmxcsr dword ptr [r11 + 252]",
            "ldmxcsr dword ptr [r11 + 248]",
            "vmovdqa ymm0, ymmword ptr [r11]",
            "vmovdqa ymm1, ymmword ptr [r11 + 32]",
            "vmovdqa ymm2, ymmword ptr [r11 + 64]",
            "vmovdqa ymm3, ymmword ptr [r11 + 96]",
            "vmovdqa ymm4, ymmword ptr [r11 + 128]",
            "mov rax, qword ptr [r11 + 192]",
            "mov rcx, qword ptr [r11 + 200]",
            "mov rdx, qword ptr [r11 + 208]",
            "mov r8, qword ptr [r11 + 216]",
            "lea rsi, [r11 + 160]",
            "call r10",
            "pushfq",
            "pop qword ptr [r11 + 240]",
            "mov qword ptr [r11 + 192], rax",
            "mov qword ptr [r11 + 200], rcx",
            "mov qword ptr [r11 + 208], rdx",
            "mov qword ptr [r11 + 216], r8",
            "vmovdqa ymmword ptr [r11], ymm0",
            "vmovdqa ymmword ptr [r11 + 32], ymm1",
            "vmovdqa ymmword ptr [r11 + 64], ymm2",
            "vmovdqa ymmword ptr [r11 + 96], ymm3",
            "vmovdqa ymmword ptr [r11 + 128], ymm4",
            "vzeroupper",
            "stmxcsr dword ptr [r11 + 248]",
            "ldmxcsr dword ptr [r11 + 252]",
            in("r10") stub,
            in("r11") f as *mut Frame,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            out("rsi") _,
            out("r8") _,
            out("ymm0") _,
            out("ymm1") _,
            out("ymm2") _,
            out("ymm3") _,
            out("ymm4") _,
        );
    }
}

fn load_plan(n: u32) -> Option<Plan> {
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    reg.plans.get(n as usize).copied()
}

/// Reads the `size`-byte memory operand (up to 32 bytes; a 32-byte one is checked whole
/// before either half is read).
fn read_mem(
    cpu: &mut Cpu,
    insn: &Insn,
    seg: usize,
    off: u64,
    size: usize,
) -> Result<[u8; 32], Stop> {
    let mut b = [0u8; 32];
    if size == 32 {
        cpu.linear(seg, off, 32, Acc::Read)?;
        let hi = super::operand::offset_add(insn, off, 16);
        b[..16].copy_from_slice(&read_bytes(cpu, insn, seg, off, 16)?.to_le_bytes());
        b[16..].copy_from_slice(&read_bytes(cpu, insn, seg, hi, 16)?.to_le_bytes());
    } else {
        b[..16].copy_from_slice(&read_bytes(cpu, insn, seg, off, size)?.to_le_bytes());
    }
    Ok(b)
}

/// Writes the `size`-byte memory operand (a 32-byte one is probed whole first).
fn write_mem(
    cpu: &mut Cpu,
    insn: &Insn,
    seg: usize,
    off: u64,
    size: usize,
    b: &[u8; 32],
) -> Result<(), Stop> {
    let half =
        |k: usize| u128::from_le_bytes(b[16 * k..16 * k + 16].try_into().unwrap_or_default());
    if size == 32 {
        cpu.probe_write(seg, off, 32)?;
        let hi = super::operand::offset_add(insn, off, 16);
        write_bytes(cpu, insn, seg, off, 16, half(0))?;
        write_bytes(cpu, insn, seg, hi, 16, half(1))
    } else {
        write_bytes(cpu, insn, seg, off, size, half(0))
    }
}

/// Runs `insn` through its stub: checks in hardware's order (#UD/#NM/#MF for the register
/// files it names, or the AVX checks for VEX forms; the memory operand's alignment and
/// access), computes under the guest's MXCSR (an unmasked exception traps on the host: #XM,
/// the flags set, nothing written), stores the memory result, and only then writes registers
/// and flags.
pub fn run(cpu: &mut Cpu, insn: &Insn) -> Step {
    let (n, regs) = Regs::unpack(insn.aux);
    let Some(p) = load_plan(n) else {
        return super::super::unimplemented(cpu, insn);
    };
    let mmx = if p.wide {
        avx_check(cpu)?;
        false
    } else {
        prologue(cpu, insn, false)?
    };
    let mut f = Frame::default();
    for (k, s) in p.xmm.iter().enumerate() {
        if s.is_some() {
            let r = regs.xmm[k] as usize;
            f.xmm[k] = [cpu.r.fpu.xmm[r], cpu.r.fpu.ymm_hi[r]];
        }
    }
    for (k, s) in p.mm.iter().enumerate() {
        if s.is_some() {
            f.mm[k] = mm_get(cpu, regs.mm[k] as usize);
        }
    }
    for (k, s) in p.gpr.iter().enumerate() {
        if s.is_some() {
            f.gpr[k] = cpu.r.gpr[regs.gpr[k] as usize];
        }
    }
    let mut store = None;
    if let Some((size, read, write)) = p.mem {
        let (seg, off) = (insn.mem.seg as usize, ea(cpu, insn));
        let acc = if read { Acc::Read } else { Acc::Write };
        let align = if p.wide {
            vex_aligned(&insn.i)
        } else {
            must_align(insn, size)
        };
        if align {
            check_align(cpu, seg, off, size as u32, acc)?;
        }
        if read {
            f.mem = read_mem(cpu, insn, seg, off, size)?;
        }
        if write {
            // A store's fault comes before any floating-point exception.
            if !read {
                cpu.probe_write(seg, off, size as u32)?;
            }
            store = Some((seg, off, size));
        }
    }
    // The guest's own control bits, exception masks included: an unmasked exception traps
    // on the host as it would on the guest's CPU, with the flags hardware reports.
    f.mxcsr = cpu.r.fpu.mxcsr & !super::host::FLAGS;
    TRAPPED.with(|t| t.set(0));
    if p.wide {
        // SAFETY: VEX forms decode only at `--cpu v3`, which the engine offers only on hosts
        // with AVX (`cpuid::Level::host_runs`).
        unsafe { call_avx(p.stub, &mut f) };
    } else {
        call_sse(p.stub, &mut f);
    }
    let raised = f.mxcsr & super::host::FLAGS;
    match TRAPPED.with(|t| t.get()) {
        0 => {}
        libc::SIGFPE => {
            cpu.r.fpu.mxcsr |= raised;
            return Err(simd_fault(cpu));
        }
        sig => {
            return Err(cpu.fail(format!(
                "soft engine: the host stub for `{}` at rip={:#x} raised signal {sig}",
                insn.i, cpu.r.rip
            )))
        }
    }
    // A store that faults leaves MXCSR as it was, as on hardware.
    if let Some((seg, off, size)) = store {
        write_mem(cpu, insn, seg, off, size, &f.mem)?;
    }
    cpu.r.fpu.mxcsr |= raised;
    for (k, s) in p.xmm.iter().enumerate() {
        if *s == Some(true) {
            let r = regs.xmm[k] as usize;
            cpu.r.fpu.xmm[r] = f.xmm[k][0];
            if p.wide {
                cpu.r.fpu.ymm_hi[r] = f.xmm[k][1];
            }
        }
    }
    if mmx {
        mmx_enter(cpu);
        for (k, s) in p.mm.iter().enumerate() {
            if *s == Some(true) {
                mm_put(cpu, regs.mm[k] as usize, f.mm[k]);
            }
        }
    }
    // Last slot first: where two operands name one register (MULX's), the first operand's
    // value is the one hardware leaves.
    for (k, s) in p.gpr.iter().enumerate().rev() {
        if *s == Some(true) {
            cpu.r.gpr[regs.gpr[k] as usize] = f.gpr[k];
        }
    }
    if p.flags != 0 {
        let fl = &mut cpu.r.flags;
        fl.materialize();
        fl.bits = (fl.bits & !p.flags) | (f.flags & p.flags);
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_offsets_match_the_call_blocks() {
        let f = Frame::default();
        let base = &f as *const Frame as usize;
        let at = |p: *const u8| p as usize - base;
        assert_eq!(at(f.xmm.as_ptr().cast()), 0);
        assert_eq!(at(f.mem.as_ptr()), 160);
        assert_eq!(at(f.gpr.as_ptr().cast()), 192);
        assert_eq!(at(f.mm.as_ptr().cast()), 224);
        assert_eq!(at((&f.flags as *const u64).cast()), 240);
        assert_eq!(at((&f.mxcsr as *const u32).cast()), 248);
        assert_eq!(at((&f.save as *const u32).cast()), 252);
    }

    #[test]
    fn packed_registers_round_trip() {
        let r = Regs {
            xmm: [0, 15, 7, 9, 3],
            mm: [7, 2],
            gpr: [13, 1, 2, 15],
        };
        let (n, back) = Regs::unpack(r.pack(0xab_cdef));
        assert_eq!(n, 0xab_cdef);
        assert_eq!(back.xmm, r.xmm);
        assert_eq!(back.mm, r.mm);
        assert_eq!(back.gpr, r.gpr);
    }
}

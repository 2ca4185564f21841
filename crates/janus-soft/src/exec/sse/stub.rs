//! SSE3, SSSE3, SSE4.1 and SSE4.2 (`--cpu v2`), run as themselves on the host.
//!
//! Design decision: these extensions add some 70 mnemonics (shuffles, blends, horizontal and
//! dot-product arithmetic, rounding, packed compares, the string compares of SSE4.2, CRC32)
//! whose exact results, down to DPPS's rounding order and PCMPESTRI's aggregation, are the
//! host's when the host runs them. The soft engine offers a level only on hosts that have it
//! (`cpuid::Level::host_runs`), and the interpreter runs each such instruction through a
//! stub: the instruction re-encoded with its vector operands in xmm1..xmm3 (xmm0 when the
//! encoding fixes it), MMX operands in mm0/mm1, general-purpose operands in RAX/RCX (implicit
//! ones, as PCMPESTRI's, in themselves) and its memory operand at a buffer (`[rsi]`), then
//! RET. A stub is made once per form (the operands renamed, so forms are few: mnemonic,
//! immediate, operand sizes) into an arena of its own, which is mapped twice, writable and
//! executable, so no page is both. The translator runs the same instructions inline.

use super::super::{ea, Handler, Insn};
use super::float::simd_fault;
use super::host;
use super::operand::{
    check_align, mm_get, mm_put, mmx_enter, must_align, prologue, read_bytes, write_bytes,
};
use crate::core::{Cpu, Flow, Step};
use crate::mmu::Acc;
use iced_x86::{
    CpuidFeature, Encoder, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind,
    Register, RflagsBits,
};
use std::arch::asm;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

/// The extensions this module runs.
fn in_extension(i: &Instruction) -> bool {
    i.cpuid_features().iter().any(|f| {
        matches!(
            f,
            CpuidFeature::SSE3 | CpuidFeature::SSSE3 | CpuidFeature::SSE4_1 | CpuidFeature::SSE4_2
        )
    }) && !matches!(
        i.mnemonic(),
        // SSE3's x87 store and its thread-monitoring pair are not vector instructions.
        Mnemonic::Fisttp | Mnemonic::Monitor | Mnemonic::Mwait
    )
}

/// Whether `i` is one of this module's instructions that computes in floating point (and so
/// must run under the guest's MXCSR).
pub fn is_float(i: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(
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

/// The translator may run `i` inline as itself: it is one of this module's instructions and
/// names no MMX register (those live in the x87 file).
pub fn covers(i: &Instruction) -> bool {
    in_extension(i) && !(0..i.op_count()).any(|k| is_reg(i, k, Register::is_mm))
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
    /// Host xmm0..xmm3 (guest XMM registers): in use, written.
    xmm: [Option<bool>; 4],
    /// Host mm0, mm1 (guest MMX registers).
    mm: [Option<bool>; 2],
    /// Host RAX, RCX, RDX (guest general-purpose registers).
    gpr: [Option<bool>; 3],
    /// The memory operand: bytes, read, written.
    mem: Option<(usize, bool, bool)>,
    /// RFLAGS bits (EFLAGS positions) the instruction writes.
    flags: u64,
}

/// The guest register behind each slot, packed in `Insn::aux` above the plan's index: four
/// bits per XMM slot (bits 32..48), three per MMX slot (48..54), four per general-purpose
/// slot (54..66, so the last slot's top bit is cut: RDX's slot only ever holds RDX).
#[derive(Clone, Copy, Debug, Default)]
struct Regs {
    xmm: [u8; 4],
    mm: [u8; 2],
    gpr: [u8; 3],
}

impl Regs {
    fn pack(&self, plan: u32) -> u64 {
        let mut v = 0u64;
        for (k, r) in self.xmm.iter().enumerate() {
            v |= (*r as u64 & 15) << (4 * k);
        }
        for (k, r) in self.mm.iter().enumerate() {
            v |= (*r as u64 & 7) << (16 + 3 * k);
        }
        for (k, r) in self.gpr.iter().enumerate().take(2) {
            v |= (*r as u64 & 15) << (22 + 4 * k);
        }
        plan as u64 | v << 32
    }

    fn unpack(aux: u64) -> (u32, Regs) {
        let v = aux >> 32;
        let r = Regs {
            xmm: std::array::from_fn(|k| (v >> (4 * k)) as u8 & 15),
            mm: std::array::from_fn(|k| (v >> (16 + 3 * k)) as u8 & 7),
            gpr: [(v >> 22) as u8 & 15, (v >> 26) as u8 & 15, 2],
        };
        (aux as u32, r)
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

/// Host register `slot` (0: RAX, 1: RCX) at the size and kind of guest register `r`.
fn host_gpr(slot: usize, r: Register) -> Option<Register> {
    use Register as R;
    let high = matches!(r, R::AH | R::CH | R::DH | R::BH);
    Some(match (slot, r.size(), high) {
        (0, 1, true) => R::AH,
        (1, 1, true) => R::CH,
        (0, 1, false) => R::AL,
        (1, 1, false) => R::CL,
        (0, 2, _) => R::AX,
        (1, 2, _) => R::CX,
        (0, 4, _) => R::EAX,
        (1, 4, _) => R::ECX,
        (0, 8, _) => R::RAX,
        (1, 8, _) => R::RCX,
        _ => return None,
    })
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
                if r.is_xmm() {
                    if r == Register::XMM0 && fixed_register(i, k) {
                        p.xmm[0] = Some(written);
                        continue;
                    }
                    *p.xmm.get_mut(nx)? = Some(written);
                    regs.xmm[nx] = r.number() as u8;
                    host.set_op_register(
                        k,
                        [
                            Register::XMM0,
                            Register::XMM1,
                            Register::XMM2,
                            Register::XMM3,
                        ][nx],
                    );
                    nx += 1;
                } else if r.is_mm() {
                    *p.mm.get_mut(nm)? = Some(written);
                    regs.mm[nm] = r.number() as u8;
                    host.set_op_register(k, [Register::MM0, Register::MM1][nm]);
                    nm += 1;
                } else if r.is_gpr() && ng < 2 {
                    let (n, _) = crate::decode::gpr(r)?;
                    host.set_op_register(k, host_gpr(ng, r)?);
                    p.gpr[ng] = Some(written);
                    regs.gpr[ng] = if n >= 16 { n - 16 } else { n };
                    ng += 1;
                } else {
                    return None;
                }
            }
            OpKind::Memory => {
                let m = info.used_memory().first()?;
                let size = m.memory_size().size();
                if !matches!(size, 1 | 2 | 4 | 8 | 16) {
                    return None;
                }
                p.mem = Some((size, reads(m.access()), writes(m.access())));
                crate::decode::rebase_memory(&mut host, Register::RSI);
            }
            OpKind::Immediate8 | OpKind::Immediate8_2nd => {}
            _ => return None,
        }
    }
    let addressing = [i.memory_base(), i.memory_index()].map(|r| r.full_register());
    for u in info.used_registers() {
        let r = u.register();
        let full = r.full_register();
        if r == Register::XMM0 {
            // XMM0 fixed or implicit (BLENDVPS's mask, PCMPESTRM's result), or also an
            // explicit operand: slot 0 carries it, and an explicit operand's slot, written
            // back after it, wins.
            let w = p.xmm[0].unwrap_or(false) || writes(u.access());
            p.xmm[0] = Some(w);
        } else if r.is_segment_register() || explicit.contains(&full) {
            continue;
        } else if r.is_gpr() {
            let n = full.number();
            // Implicit general-purpose registers (PCMPESTRI's EAX, EDX, ECX) stay where they
            // are, which leaves no room for renamed ones; a register only used to address the
            // memory operand is not needed.
            if n > 2 || ng > 0 {
                if addressing.contains(&full) {
                    continue;
                }
                return None;
            }
            let w = p.gpr[n].unwrap_or(false) || writes(u.access());
            p.gpr[n] = Some(w);
            regs.gpr[n] = n as u8;
        } else {
            return None;
        }
    }
    Some((host, p, regs))
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
            plans: Vec::new(),
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
    /// The last stub this thread ran trapped (an unmasked SIMD floating-point exception).
    static TRAPPED: Cell<bool> = const { Cell::new(false) };
}

/// SIGFPE's disposition before [`on_sigfpe`] was installed, for faults that are not ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A stub's instruction raised an unmasked SIMD floating-point exception (#XM, SIGFPE): the
/// exception flags are in the interrupted MXCSR, which the kernel restores, and the
/// instruction wrote nothing. Resume at the slot's recovery RET and note the trap. A SIGFPE
/// anywhere else goes to the previous handler, or, with none, recurs under the default action.
extern "C" fn on_sigfpe(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid ucontext_t as the third argument.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let (lo, hi) = (
        EXEC_START.load(Ordering::Acquire),
        EXEC_END.load(Ordering::Acquire),
    );
    if (lo..hi).contains(&rip) {
        TRAPPED.with(|t| t.set(true));
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] =
            ((rip - lo) / SLOT * SLOT + lo + RECOVER) as i64;
        return;
    }
    match PREVIOUS.get() {
        Some(p) if p.sa_flags & libc::SA_SIGINFO != 0 && p.sa_sigaction > 1 => {
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

fn install_sigfpe() -> std::io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid starting value; the handler has the
    // SA_SIGINFO signature; `old` receives the previous disposition.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigfpe as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGFPE, &sa, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let _ = PREVIOUS.set(old);
    }
    Ok(())
}

/// Executable memory for stubs: one memfd mapped writable at one address and executable at
/// another.
struct Arena {
    write: *mut u8,
    exec: *const u8,
    size: usize,
    used: usize,
}

// SAFETY: the mappings are owned by the arena, written only under the registry's lock, and
// live as long as the process (stubs are never freed).
unsafe impl Send for Arena {}
// SAFETY: as above; shared access only reads `exec`.
unsafe impl Sync for Arena {}

impl Arena {
    fn new(size: usize) -> std::io::Result<Arena> {
        let err = std::io::Error::last_os_error;
        // SAFETY: the name is a NUL-terminated string; the result is checked.
        let fd = unsafe { libc::memfd_create(c"janus-stubs".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(err());
        }
        // SAFETY: `fd` is the memfd just created.
        if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
            let e = err();
            // SAFETY: `fd` is ours and closed once.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let map = |prot| {
            // SAFETY: a shared mapping of the whole memfd with no address hint; checked.
            let p =
                unsafe { libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0) };
            (p != libc::MAP_FAILED).then_some(p)
        };
        let w = map(libc::PROT_READ | libc::PROT_WRITE);
        let x = map(libc::PROT_READ | libc::PROT_EXEC);
        // SAFETY: the mappings keep the memory; the descriptor is no longer needed.
        unsafe { libc::close(fd) };
        match (w, x) {
            (Some(w), Some(x)) => {
                EXEC_START.store(x as usize, Ordering::Release);
                EXEC_END.store(x as usize + size, Ordering::Release);
                install_sigfpe()?;
                Ok(Arena {
                    write: w.cast(),
                    exec: x.cast(),
                    size,
                    used: 0,
                })
            }
            _ => Err(err()),
        }
    }

    /// Places the instruction `code` (at most 15 bytes) in a slot of its own: the instruction
    /// and RET, and at [`RECOVER`] another RET where a trapping instruction resumes. Returns
    /// the slot's executable address.
    fn emit(&mut self, code: &[u8]) -> Option<usize> {
        if code.len() >= RECOVER {
            return None;
        }
        let start = self.used;
        if start + SLOT > self.size {
            return None;
        }
        let mut slot = [0xccu8; SLOT];
        slot[..code.len()].copy_from_slice(code);
        slot[code.len()] = 0xc3;
        slot[RECOVER] = 0xc3;
        // SAFETY: `start + SLOT <= size`: inside the writable mapping; no stub at these bytes
        // exists yet, so nothing executes them.
        unsafe {
            std::ptr::copy_nonoverlapping(slot.as_ptr(), self.write.add(start), SLOT);
        }
        self.used = start + SLOT;
        Some(self.exec as usize + start)
    }
}

/// What a stub runs on: operands in, results out.
#[repr(C, align(16))]
#[derive(Default)]
struct Frame {
    xmm: [u128; 4],
    mem: [u8; 32],
    gpr: [u64; 3],
    mm: [u64; 2],
    flags: u64,
    mxcsr: u32,
    save: u32,
}

/// Calls `stub` with the frame's registers loaded and stores them back, under the frame's
/// MXCSR (the host's restored after).
fn call(stub: usize, f: &mut Frame) {
    // SAFETY: `stub` is a stub from the arena: one instruction that reads and writes only
    // xmm0-xmm3, mm0/mm1, RAX/RCX/RDX, RFLAGS, MXCSR and the 32 bytes at RSI (the frame's
    // buffer), then RET. The block loads and stores those registers from the frame, which is
    // a live local; every register it changes is declared clobbered, the stack is used only
    // by CALL/PUSHFQ (no `nostack`), EMMS leaves the x87 state empty and the host's MXCSR is
    // restored.
    unsafe {
        asm!(
            "stmxcsr dword ptr [r11 + 148]",
            "ldmxcsr dword ptr [r11 + 144]",
            "movdqa xmm0, xmmword ptr [r11]",
            "movdqa xmm1, xmmword ptr [r11 + 16]",
            "movdqa xmm2, xmmword ptr [r11 + 32]",
            "movdqa xmm3, xmmword ptr [r11 + 48]",
            "movq mm0, qword ptr [r11 + 120]",
            "movq mm1, qword ptr [r11 + 128]",
            "mov rax, qword ptr [r11 + 96]",
            "mov rcx, qword ptr [r11 + 104]",
            "mov rdx, qword ptr [r11 + 112]",
            "lea rsi, [r11 + 64]",
            "call r10",
            "pushfq",
            "pop qword ptr [r11 + 136]",
            "mov qword ptr [r11 + 96], rax",
            "mov qword ptr [r11 + 104], rcx",
            "mov qword ptr [r11 + 112], rdx",
            "movdqa xmmword ptr [r11], xmm0",
            "movdqa xmmword ptr [r11 + 16], xmm1",
            "movdqa xmmword ptr [r11 + 32], xmm2",
            "movdqa xmmword ptr [r11 + 48], xmm3",
            "movq qword ptr [r11 + 120], mm0",
            "movq qword ptr [r11 + 128], mm1",
            "emms",
            "stmxcsr dword ptr [r11 + 144]",
            "ldmxcsr dword ptr [r11 + 148]",
            in("r10") stub,
            in("r11") f as *mut Frame,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            out("rsi") _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            out("mm0") _,
            out("mm1") _,
        );
    }
}

fn load_plan(n: u32) -> Option<Plan> {
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    reg.plans.get(n as usize).copied()
}

/// Runs `insn` through its stub: checks in hardware's order (#UD/#NM/#MF for the register
/// files it names, the memory operand's alignment and access), computes under the guest's
/// MXCSR (an unmasked exception traps on the host: #XM, the flags set, nothing written),
/// stores the memory result, and only then writes registers and flags.
pub fn run(cpu: &mut Cpu, insn: &Insn) -> Step {
    let mmx = prologue(cpu, insn, false)?;
    let (n, regs) = Regs::unpack(insn.aux);
    let Some(p) = load_plan(n) else {
        return super::super::unimplemented(cpu, insn);
    };
    let mut f = Frame::default();
    for (k, s) in p.xmm.iter().enumerate() {
        if s.is_some() {
            f.xmm[k] = cpu.r.fpu.xmm[regs.xmm[k] as usize];
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
        if must_align(insn, size) {
            let acc = if read { Acc::Read } else { Acc::Write };
            check_align(cpu, seg, off, 16, acc)?;
        }
        if read {
            let v = read_bytes(cpu, insn, seg, off, size)?;
            f.mem[..16].copy_from_slice(&v.to_le_bytes());
        }
        if write {
            store = Some((seg, off, size));
        }
    }
    // The guest's own control bits, exception masks included: an unmasked exception traps
    // on the host as it would on the guest's CPU, with the flags hardware reports.
    f.mxcsr = cpu.r.fpu.mxcsr & !host::FLAGS;
    TRAPPED.with(|t| t.set(false));
    call(p.stub, &mut f);
    cpu.r.fpu.mxcsr |= f.mxcsr & host::FLAGS;
    if TRAPPED.with(|t| t.get()) {
        return Err(simd_fault(cpu));
    }
    if let Some((seg, off, size)) = store {
        let mut b = [0u8; 16];
        b.copy_from_slice(&f.mem[..16]);
        write_bytes(cpu, insn, seg, off, size, u128::from_le_bytes(b))?;
    }
    for (k, s) in p.xmm.iter().enumerate() {
        if *s == Some(true) {
            cpu.r.fpu.xmm[regs.xmm[k] as usize] = f.xmm[k];
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
    for (k, s) in p.gpr.iter().enumerate() {
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

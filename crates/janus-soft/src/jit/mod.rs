//! The binary translator: hot blocks of guest code (64-, 32- and 16-bit, flat or segmented)
//! become host code.
//!
//! The interpreter runs a block until it has run [`Jit::threshold`] times; then the block is
//! translated ([`compile`] plans it, [`gen`] emits it) into a [`CodeBuffer`] and the dispatcher
//! calls the translation instead. Translated code keeps every guest-visible effect of the
//! interpreter: the same TLB, the same exits, the same exceptions (anything unusual is handed
//! to the interpreter's handler for that one instruction), the same instruction count. Code
//! outside 64-bit mode whose CS, DS, ES and SS are not flat (16-bit code, real mode) is
//! translated as segmented code: each access checks its segment's limit and adds its base
//! (`Cpu::jit_seg_limit`), and its exits never use the jump table (keyed by RIP, which is not
//! the linear address there). Blocks started inside an interrupt shadow, and virtual-8086
//! code, are always interpreted.
//!
//! Entering translated code goes through a small prologue generated at start-up: it saves the
//! host's callee-saved registers, puts the CPU pointer in R15 and the current TLB set in R14,
//! and jumps to the block; every exit jumps to the matching epilogue with a status in EAX.

pub mod buffer;
pub mod compile;
pub mod gen;
pub mod layout;
pub mod x64;

use crate::block::Block;
use crate::core::{Cpu, Flow};
use crate::exec::Insn;
use crate::mmu::{Acc, TlbEntry, TLB_SIZE};
use buffer::CodeBuffer;
use compile::{Compiler, Targets};
use x64::{reg::*, Asm};

/// A translated block finished normally (RIP and the instruction count are up to date).
pub const DONE: u32 = 0;
/// The interpreter, called for one instruction, ended the block early (a branch, a mode
/// change, a store to code, or a REP instruction to be resumed).
pub const ENDED: u32 = 1;
/// An instruction stopped (exception, exit, halt...): the reason is in `Cpu::jit_stop`.
pub const STOPPED: u32 = 2;

/// Status the fallback helper returns for an instruction that completed normally.
const CONTINUE: u32 = 0;

/// How big the code buffer is. A Linux boot translates about 40 MiB of host code (blocks go
/// on past conditional branches, each with its cold paths); when the buffer fills, every
/// translation is dropped and hot blocks are translated again. Pages the translator never
/// writes cost nothing (the mapping reserves no memory up front).
const BUFFER_SIZE: usize = 256 << 20;

type Entry = unsafe extern "C" fn(*mut Cpu, *const u8, *const TlbEntry) -> u32;

/// Counters, for `janus run`'s report and for tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitStats {
    pub blocks: u64,
    /// Guest instructions translated to host code, and those left to the interpreter.
    pub native_insns: u64,
    pub fallback_insns: u64,
    pub code_bytes: u64,
    /// Times the buffer filled and every translation was dropped.
    pub flushes: u64,
    /// Exits patched to jump straight to the next block.
    pub chained: u64,
}

/// One entry of the jump table translated code consults where an exit's target is known only
/// at run time (returns, indirect branches, jumps to another page): with a hit it jumps to the
/// target's translation instead of returning to the dispatcher. The dispatcher fills it with
/// every translation it runs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JumpSlot {
    /// The block's linear address XOR its `exec_key` shifted to bit 48 (unique for canonical
    /// addresses, since the key is below 2^16).
    pub tag: u64,
    /// Offset in the CPU struct of the TLB generation the entry depends on: the global one
    /// for a block on one global page, else the one every flush bumps.
    pub gen_off: u64,
    /// That generation's value when the entry was made.
    pub gen: u64,
    pub code: u64,
}

/// Entries in the jump table (a power of two).
pub const JUMP_SLOTS: usize = 4096;
/// log2 of the size of a `JumpSlot`.
pub const JUMP_SLOT_SHIFT: u8 = 5;

const NO_SLOT: JumpSlot = JumpSlot {
    tag: 0,
    gen_off: 0,
    gen: u64::MAX,
    code: 0,
};

/// The jump table index of linear address `pc`.
pub fn jump_slot(pc: u64) -> usize {
    ((pc ^ (pc >> 12)) as usize) & (JUMP_SLOTS - 1)
}

/// The tag of `pc` run with `key`.
pub fn jump_tag(pc: u64, key: u32) -> u64 {
    pc ^ (key as u64) << 48
}

pub struct Jit {
    buf: CodeBuffer,
    /// `/tmp/perf-PID.map`, when `JANUS_PERF_MAP` is set: names each translation by its
    /// guest-physical address, so `perf report` shows which guest code the host time went to.
    /// With `JANUS_PERF_MAP=dump`, `/tmp/janus-jit-PID.txt` also lists each block's guest
    /// instructions and host code.
    perf_map: Option<std::fs::File>,
    dump: Option<std::fs::File>,
    table: Box<[JumpSlot; JUMP_SLOTS]>,
    entry: Entry,
    stubs: usize,
    targets: Targets,
    compiler: Compiler,
    /// Interpreted runs before a block is translated (0: translate at once).
    pub threshold: u32,
    /// Bumped when the buffer is flushed; translations of older epochs are gone.
    pub epoch: u32,
    pub stats: JitStats,
}

impl Jit {
    /// A translator, or `None` where executable memory cannot be had (the engine then only
    /// interprets).
    pub fn new(threshold: u32) -> Option<Jit> {
        Jit::with_buffer(threshold, BUFFER_SIZE)
    }

    pub fn with_buffer(threshold: u32, size: usize) -> Option<Jit> {
        let mut buf = match CodeBuffer::new(size) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("soft engine: no executable memory for the translator: {e}");
                return None;
            }
        };
        let (entry, exit) = stubs(&mut buf)?;
        let stubs = buf.used();
        // SAFETY: `entry` points at the prologue just emitted, a function with this C
        // signature (it saves what the ABI needs saved and returns through the epilogue).
        let entry: Entry = unsafe { std::mem::transmute::<*const u8, Entry>(entry) };
        let perf_map = std::env::var_os("JANUS_PERF_MAP").and_then(|_| {
            let path = format!("/tmp/perf-{}.map", std::process::id());
            std::fs::File::create(&path)
                .map_err(|e| tracing::warn!("soft engine: cannot write {path}: {e}"))
                .ok()
        });
        let dump = (std::env::var_os("JANUS_PERF_MAP").is_some_and(|v| v == "dump"))
            .then(|| std::fs::File::create(format!("/tmp/janus-jit-{}.txt", std::process::id())))
            .and_then(|f| f.ok());
        Some(Jit {
            buf,
            perf_map,
            dump,
            table: Box::new([NO_SLOT; JUMP_SLOTS]),
            entry,
            stubs,
            targets: Targets {
                lahf: host_has_lahf(),
                fallback: jit_fallback as *const () as u64,
                tlb_fill: jit_tlb_fill as *const () as u64,
                x87_prepare: jit_x87_prepare as *const () as u64,
                exit,
            },
            compiler: Compiler::new(),
            threshold,
            epoch: 1,
            stats: JitStats::default(),
        })
    }

    /// Translates `block` (64-bit code) and returns the address of its code.
    pub fn translate(&mut self, block: &Block, mode: u32) -> Option<usize> {
        for _ in 0..2 {
            let base = self.buf.cursor().next_multiple_of(16);
            let t = self.compiler.translate(block, mode, base, &self.targets);
            if let Some(p) = self.buf.emit(&t.code) {
                debug_assert_eq!(p as usize, base);
                self.stats.blocks += 1;
                self.stats.native_insns += t.native as u64;
                self.stats.fallback_insns += t.fallback as u64;
                self.stats.code_bytes += t.code.len() as u64;
                if let Some(f) = &mut self.perf_map {
                    use std::io::Write;
                    let _ = writeln!(
                        f,
                        "{:x} {:x} guest_{:x}",
                        p as usize,
                        t.code.len(),
                        block.start_phys()
                    );
                }
                if let Some(f) = &mut self.dump {
                    dump_block(f, block, p as usize, &t.code);
                }
                return Some(p as usize);
            }
            self.flush();
        }
        None
    }

    /// Points the chainable exit whose `jmp rel32` ends at `site` at `target` (the start of
    /// a translation of the current epoch).
    pub fn chain(&mut self, site: u64, target: usize) {
        let site = site as usize;
        if !self.buf.contains(site - 4) || !self.buf.contains(target) {
            return;
        }
        let rel = (target as i64 - site as i64) as i32;
        // SAFETY: `site` came from a translation in this buffer (checked above), where the four
        // bytes before it are the rel32 of a `jmp`; nothing runs translated code while the
        // dispatcher patches it.
        unsafe { self.buf.patch_i32(site - 4, rel) };
        self.stats.chained += 1;
    }

    /// Lets translated code reach `code`, the translation of the block at linear address
    /// `pc` run with `key`, while the TLB generation it depends on stays where it is now.
    pub fn remember(&mut self, cpu: &Cpu, pc: u64, global: bool, code: usize) {
        let (gen_off, gen) = if global {
            (layout::tlb_generation(true), cpu.tlb.global_generation)
        } else {
            (layout::tlb_generation(false), cpu.tlb.generation)
        };
        self.table[jump_slot(pc)] = JumpSlot {
            tag: jump_tag(pc, cpu.exec_key),
            gen_off: gen_off as u64,
            gen,
            code: code as u64,
        };
    }

    /// Drops every translation.
    pub fn flush(&mut self) {
        self.table.fill(NO_SLOT);
        self.buf.reset_to(self.stubs);
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.stats.flushes += 1;
    }

    /// Runs the translation at `code` of the current epoch. Returns [`DONE`], [`ENDED`] or
    /// [`STOPPED`].
    pub fn run(&self, cpu: &mut Cpu, code: usize) -> u32 {
        debug_assert!(self.buf.contains(code));
        let tlb = cpu.tlb.e[cpu.mmu_idx & 1].as_ptr();
        cpu.jit_table = self.table.as_ptr() as u64;
        cpu.jit_host_mxcsr = host_mxcsr();
        // SAFETY: `code` is a translation in this buffer made for the block the CPU is about to
        // run, under the mode it was made for (code size, flat or segmented, stack width), which
        // the caller checked; it only touches the CPU struct through R15, guest
        // RAM through pointers from the TLB entries the engine filled (always within one
        // mapped page), and calls the helpers below with the pointers it was given.
        unsafe { (self.entry)(cpu, code as *const u8, tlb) }
    }
}

/// Whether the host runs LAHF and SAHF in 64-bit mode (CPUID 0x8000_0001 ECX bit 0).
fn host_has_lahf() -> bool {
    let r = std::arch::x86_64::__cpuid(0x8000_0001);
    r.ecx & 1 != 0
}

/// The MXCSR the calling thread runs with (translated code restores it after guest floating
/// point).
fn host_mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: STMXCSR stores the four bytes of MXCSR into `v`, a live local.
    unsafe {
        std::arch::asm!("stmxcsr dword ptr [{}]", in(reg) &mut v as *mut u32, options(nostack));
    }
    v
}

/// Writes a block's guest instructions and its translation's bytes (for `objdump -D -b binary
/// -mi386:x86-64`).
fn dump_block(f: &mut std::fs::File, block: &Block, at: usize, code: &[u8]) {
    use iced_x86::{Formatter, IntelFormatter};
    use std::io::Write;
    let mut fmt = IntelFormatter::new();
    let mut text = format!("== guest_{:x} at {at:#x}\n", block.start_phys());
    for insn in &block.insns {
        let mut s = String::new();
        fmt.format(&insn.i, &mut s);
        text.push_str(&format!("  {:#x}: {s}\n", insn.i.ip()));
    }
    let hex: Vec<String> = code.iter().map(|b| format!("{b:02x}")).collect();
    text.push_str(&format!("  host: {}\n", hex.join("")));
    let _ = f.write_all(text.as_bytes());
}

/// Emits the prologue and epilogue; returns their addresses.
fn stubs(buf: &mut CodeBuffer) -> Option<(*const u8, usize)> {
    let mut a = Asm::new();
    for r in [RBX, RBP, R12, R13, R14, R15] {
        a.push_r(r);
    }
    // Six pushes after the call's return address: RSP is 8 off a 16-byte boundary.
    a.alu_ri(x64::Alu::Sub, RSP, 8);
    a.mov_rr(R15, RDI);
    a.mov_rr(R14, RDX);
    a.jmp_r(RSI);
    let exit_off = a.len();
    a.alu_ri(x64::Alu::Add, RSP, 8);
    for r in [R15, R14, R13, R12, RBP, RBX] {
        a.pop_r(r);
    }
    a.ret();
    let entry = buf.emit(&a.buf)?;
    Some((entry, entry as usize + exit_off))
}

/// Translated code calls this to run one instruction in the interpreter. `offset` is the
/// instruction's offset from the block start, which `cpu.r.rip` holds. Returns `CONTINUE` with
/// RIP back at the block start, or `ENDED`/`STOPPED` with RIP where the interpreter left it.
extern "C" fn jit_fallback(cpu: *mut Cpu, insn: *const Insn, offset: u64) -> u32 {
    // SAFETY: translated code passes the CPU it was entered with (exclusively borrowed by
    // `Jit::run` for the whole call) and a pointer into the block it was translated from,
    // which the dispatcher keeps alive while the translation runs.
    let (cpu, insn) = unsafe { (&mut *cpu, &*insn) };
    // An instruction on the x87 state works on `r.fpu`: bring it up to date with what
    // translated x87 code left in its image, and hand the image back afterwards.
    let x87_in_image = cpu.jit_x87_in_image != 0 && touches_x87(&insn.i);
    if x87_in_image {
        cpu.sync_x87();
    }
    let m = insn.i.mnemonic() as usize;
    if cpu.stats.fallbacks.len() <= m {
        cpu.stats.fallbacks.resize(m + 1, 0);
    }
    cpu.stats.fallbacks[m] += 1;
    let base = cpu.r.rip;
    let mask = match cpu.exec_key & 0xff {
        64 => u64::MAX,
        32 => 0xffff_ffff,
        _ => 0xffff,
    };
    cpu.r.rip = base.wrapping_add(offset) & mask;
    cpu.next_rip = cpu.r.rip.wrapping_add(insn.len as u64) & mask;
    let status = match (insn.exec)(cpu, insn) {
        Ok(Flow::Next) => {
            cpu.stats.instructions += 1;
            cpu.io.clear();
            if cpu.code_written.is_empty() {
                cpu.r.rip = base;
                CONTINUE
            } else {
                cpu.r.rip = cpu.next_rip;
                ENDED
            }
        }
        Ok(Flow::Jump) => {
            cpu.stats.instructions += 1;
            cpu.io.clear();
            ENDED
        }
        Ok(Flow::Resync) => {
            cpu.r.rip = cpu.next_rip;
            cpu.stats.instructions += 1;
            cpu.io.clear();
            ENDED
        }
        Ok(Flow::Repeat) => ENDED,
        Err(stop) => {
            cpu.jit_stop = Some(stop);
            STOPPED
        }
    };
    cpu.r.flags.to_native();
    if x87_in_image {
        cpu.x87_to_image();
    }
    status
}

/// Whether `i` reads or writes the x87 state (x87, MMX registers, FWAIT, the state saves).
fn touches_x87(i: &iced_x86::Instruction) -> bool {
    use iced_x86::CpuidFeature as F;
    i.mnemonic() == iced_x86::Mnemonic::Wait
        || (0..i.op_count())
            .any(|k| i.op_kind(k) == iced_x86::OpKind::Register && i.op_register(k).is_mm())
        || i.cpuid_features().iter().any(|f| {
            matches!(
                f,
                F::FPU
                    | F::FPU287
                    | F::FPU387
                    | F::MMX
                    | F::FXSR
                    | F::SSE3
                    | F::XSAVE
                    | F::XSAVEOPT
                    | F::XSAVEC
                    | F::XSAVES
            )
        })
}

/// Translated code calls this before it loads the x87 registers with FRSTOR when their image
/// is older than `r.fpu`.
extern "C" fn jit_x87_prepare(cpu: *mut Cpu) {
    // SAFETY: as in `jit_fallback`: the CPU translated code was entered with.
    let cpu = unsafe { &mut *cpu };
    cpu.x87_to_image();
}

/// Translated code calls this when its TLB probe missed: fills the entry and returns the host
/// address of `lin`, or 0 when the access is not a plain RAM access within one page (the
/// interpreter then runs the instruction and deals with it). `info` is the size in bits 0-7
/// and 1 for a write in bit 8.
extern "C" fn jit_tlb_fill(cpu: *mut Cpu, lin: u64, info: u64) -> u64 {
    // SAFETY: as in `jit_fallback`.
    let cpu = unsafe { &mut *cpu };
    let size = info & 0xff;
    let write = info & 0x100 != 0;
    let canonical = ((lin as i64) << 16) >> 16 == lin as i64;
    if !canonical || (lin & 0xfff) + size > 4096 {
        return 0;
    }
    let user = cpu.mmu_idx == 1;
    let acc = if write { Acc::Write } else { Acc::Read };
    if cpu.translate(lin, acc, user).is_err() {
        return 0;
    }
    let e = &cpu.tlb.e[cpu.mmu_idx & 1][((lin >> 12) as usize) & (TLB_SIZE - 1)];
    let tag = if write { e.tag_w } else { e.tag_r };
    if tag != lin >> 12 {
        return 0;
    }
    e.addend.wrapping_add(lin)
}

#[cfg(test)]
mod x87_state_tests {
    use super::touches_x87;

    fn decode(b: &[u8]) -> iced_x86::Instruction {
        iced_x86::Decoder::new(64, b, iced_x86::DecoderOptions::NONE).decode()
    }

    #[test]
    fn what_touches_the_x87_state() {
        for (bytes, touches) in [
            (&[0xd9, 0xe8][..], true),        // fld1
            (&[0x0f, 0xfc, 0xc1][..], true),  // paddb mm0, mm1
            (&[0x0f, 0xd7, 0xc1][..], true),  // pmovmskb eax, mm1 (an SSE instruction)
            (&[0x0f, 0xae, 0x00][..], true),  // fxsave [rax]
            (&[0x9b][..], true),              // fwait
            (&[0x48, 0x89, 0xc8][..], false), // mov rax, rcx
            (&[0x0f, 0x58, 0xc1][..], false), // addps xmm0, xmm1
            (&[0x0f, 0x22, 0xd8][..], false), // mov cr3, rax
        ] {
            assert_eq!(touches_x87(&decode(bytes)), touches, "{bytes:x?}");
        }
    }
}

//! The executor: looks up blocks, runs their instructions, delivers exceptions and
//! interrupts, and hands device accesses to the VMM as exits.

use crate::block::BlockCache;
use crate::core::{Cpu, Exit, Flow, Stop, CS_FULL, FLAT, TRANSLATION_MODE, VM86};
use crate::interrupt::Source;
use crate::jit::{self, Jit, JitStats};
use crate::Tsc;
use janus_engine::{CpuState, GuestClock, InterruptController, Result, Vcpu, VmExit};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Guest-physical ranges written behind the CPU's back (device DMA), for invalidating code.
#[derive(Default)]
pub struct DmaLog {
    ranges: Mutex<Vec<(u64, u64)>>,
    pending: std::sync::atomic::AtomicBool,
}

impl janus_engine::DmaObserver for DmaLog {
    fn dma_written(&self, gpa: u64, len: u64) {
        let mut r = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        r.push((gpa, len));
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Whether blocks get translated to host code, and after how many interpreted runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitMode {
    /// Interpret everything.
    Off,
    /// Translate a block of 64-bit code once the interpreter has run it this many times.
    After(u32),
}

impl JitMode {
    /// From `JANUS_JIT`: `off`, or the number of interpreted runs before a block is translated
    /// (0: at once; default 2).
    pub fn from_env() -> JitMode {
        match std::env::var("JANUS_JIT").ok().as_deref() {
            Some("off") | Some("no") => JitMode::Off,
            Some(v) => v
                .parse()
                .map_or(JitMode::After(DEFAULT_THRESHOLD), JitMode::After),
            None => JitMode::After(DEFAULT_THRESHOLD),
        }
    }
}

const DEFAULT_THRESHOLD: u32 = 2;

/// Instructions translated code may retire, chaining from block to block, before it returns
/// to the dispatcher, which is where interrupts are taken: a few microseconds of guest time.
/// Translated code counts its instructions by spending this budget (`Cpu::chain_budget`), and
/// the dispatcher adds what was spent to the CPU's count.
const CHAIN_BUDGET: i64 = 4096;

/// The translator, made when the first block is due for translation.
enum JitSlot {
    Off,
    Pending(u32),
    On(Box<Jit>),
}

pub struct SoftVcpu {
    pub cpu: Cpu,
    cache: BlockCache,
    jit: JitSlot,
    /// The chainable exit the last translated block left through, and the RIP it went to.
    chain_from: Option<(u64, u64)>,
    /// The exit returned by the last `run`, completed by the next one.
    pending: Option<Exit>,
    /// The data of the exit being handled: one element, or a string I/O exit's page.
    io_buf: Box<[u8; 4096]>,
    halted: bool,
    dma: Arc<DmaLog>,
    /// Set from another thread to make `run` return (`VmExit::Interrupted`) at the next block
    /// boundary, even from a guest that never exits; translated code comes back to the
    /// dispatcher at least every chain budget's worth of instructions.
    kick: Arc<AtomicBool>,
}

impl SoftVcpu {
    pub fn new(
        mut cpu: Cpu,
        irq: Option<Arc<dyn InterruptController>>,
        dma: Arc<DmaLog>,
    ) -> SoftVcpu {
        cpu.intc = irq;
        SoftVcpu {
            cpu,
            cache: BlockCache::new(),
            jit: match JitMode::from_env() {
                JitMode::Off => JitSlot::Off,
                JitMode::After(n) => JitSlot::Pending(n),
            },
            chain_from: None,
            pending: None,
            io_buf: Box::new([0; 4096]),
            halted: false,
            dma,
            kick: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that makes `run` return at the next block boundary (see `kick`).
    pub fn kick_flag(&self) -> Arc<AtomicBool> {
        self.kick.clone()
    }

    /// Chooses whether and when blocks are translated (tests use this; the default comes
    /// from `JANUS_JIT`). Drops existing translations.
    pub fn set_jit(&mut self, mode: JitMode) {
        self.jit = match mode {
            JitMode::Off => JitSlot::Off,
            JitMode::After(n) => match std::mem::replace(&mut self.jit, JitSlot::Off) {
                JitSlot::On(mut j) => {
                    j.flush();
                    j.threshold = n;
                    JitSlot::On(j)
                }
                _ => JitSlot::Pending(n),
            },
        };
    }

    /// Moves this vCPU's translator to `other` (tests that make many short-lived vCPUs reuse
    /// one code buffer this way).
    pub fn hand_jit_to(&mut self, other: &mut SoftVcpu) {
        if let JitSlot::On(mut j) = std::mem::replace(&mut self.jit, JitSlot::Off) {
            j.flush();
            other.jit = JitSlot::On(j);
        }
    }

    /// The translator's counters (zero while it has not started).
    pub fn jit_stats(&self) -> JitStats {
        match &self.jit {
            JitSlot::On(j) => j.stats,
            _ => JitStats::default(),
        }
    }

    /// Connects the CPU's INTR pin to `irq`.
    pub fn set_interrupt_controller(&mut self, irq: Arc<dyn InterruptController>) {
        self.cpu.intc = Some(irq);
    }

    /// The CPU executed HLT and no interrupt has woken it yet.
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Live decoded blocks (for tests and statistics).
    pub fn blocks(&self) -> usize {
        self.cache.len()
    }

    /// Completes the exit handed out last time: its answer goes into the I/O log and the
    /// instruction runs again from its first access.
    fn complete_pending(&mut self) {
        if let Some(e) = self.pending.take() {
            let value = match e {
                Exit::PioIn { size, .. } | Exit::MmioRead { size, .. } => {
                    let mut v = [0u8; 8];
                    v[..size as usize].copy_from_slice(&self.io_buf[..size as usize]);
                    Some(u64::from_le_bytes(v))
                }
                Exit::PioInString { size, count, .. } => {
                    let n = size as usize * count as usize;
                    self.cpu.io.push_bulk(&self.io_buf[..n]);
                    self.cpu.io.rewind();
                    return;
                }
                _ => None,
            };
            self.cpu.io.push(value);
            self.cpu.io.rewind();
        }
    }

    fn drain_dma(&mut self) {
        if !self
            .dma
            .pending
            .swap(false, std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let ranges =
            std::mem::take(&mut *self.dma.ranges.lock().unwrap_or_else(|p| p.into_inner()));
        for (gpa, len) in ranges {
            let first = gpa >> 12;
            let last = gpa.saturating_add(len.max(1) - 1) >> 12;
            for p in first..=last {
                if self.cpu.mem.is_code_page(p) {
                    self.cache.invalidate_page(&mut self.cpu, p);
                }
            }
        }
    }

    fn invalidate_written_code(&mut self) {
        let pages = std::mem::take(&mut self.cpu.code_written);
        for p in pages {
            self.cache.invalidate_page(&mut self.cpu, p);
        }
    }

    /// Takes a pending external interrupt if the CPU accepts one now.
    fn take_interrupt(&mut self) -> std::result::Result<bool, Stop> {
        if self.cpu.int_shadow || !self.cpu.r.flags.if_() {
            return Ok(false);
        }
        let Some(irq) = &self.cpu.intc else {
            return Ok(false);
        };
        if !irq.has_interrupt() {
            return Ok(false);
        }
        let Some(vector) = irq.acknowledge() else {
            return Ok(false);
        };
        self.halted = false;
        self.cpu.raise(vector, None, Source::External)?;
        Ok(true)
    }

    /// Runs guest code until something needs the VMM.
    fn execute(&mut self) -> Stop {
        loop {
            if self.kick.load(Ordering::Relaxed) && self.kick.swap(false, Ordering::AcqRel) {
                return Stop::Idle;
            }
            // An instruction that exited for I/O finishes first: the access has happened, so
            // the interrupt comes after it (taken here, it would return to the instruction and
            // repeat the access: a device register written twice).
            if self.cpu.r.flags.if_() && self.cpu.intc.is_some() && !self.cpu.io.in_progress() {
                if let Err(stop) = self.take_interrupt() {
                    return stop;
                }
            }
            if self.halted {
                // Interrupts can wake the CPU only if IF is set and something can raise one.
                match &self.cpu.intc {
                    Some(irq) if self.cpu.r.flags.if_() => {
                        if !irq.has_interrupt() {
                            irq.wait(std::time::Duration::from_millis(10));
                            if !irq.has_interrupt() {
                                return Stop::Idle;
                            }
                        }
                        continue;
                    }
                    _ => return Stop::Halt,
                }
            }
            // Outside 64-bit mode the key also says whether the segments are flat, and a
            // segment load (which ends its block) changes it.
            if !self.cpu.long64 {
                self.cpu.sync_mode();
            }
            let id = match self.cache.lookup(&mut self.cpu) {
                Ok(id) => id,
                Err(Stop::Fault(f)) => {
                    if let Err(stop) = self.cpu.raise(f.vector, f.error, Source::Exception) {
                        return stop;
                    }
                    continue;
                }
                Err(stop) => return stop,
            };
            let stop = self.run_block(id);
            if !self.cpu.code_written.is_empty() {
                self.invalidate_written_code();
            }
            match stop {
                None => {}
                Some(Stop::Fault(f)) => {
                    self.cpu.io.clear();
                    if let Err(stop) = self.cpu.raise(f.vector, f.error, Source::Exception) {
                        return stop;
                    }
                }
                Some(Stop::Halt) => {
                    self.cpu.r.rip = self.cpu.next_rip;
                    self.cpu.stats.instructions += 1;
                    self.halted = true;
                }
                Some(other) => return other,
            }
        }
    }

    /// Runs block `id`: its translation if it has a current one (translating it first once
    /// the interpreter has run it often enough), else the interpreter, which counts the run.
    fn run_block(&mut self, id: u32) -> Option<Stop> {
        let chain_from = self.chain_from.take();
        if !self.cpu.int_shadow {
            self.translate_if_due(id);
        }
        if let JitSlot::On(jit) = &mut self.jit {
            let b = self.cache.get(id);
            let key = self.cpu.exec_key;
            if b.code != 0
                && b.code_epoch == jit.epoch
                && b.code_mode == key & TRANSLATION_MODE
                && !self.cpu.int_shadow
                && translatable(key)
                && at_decoded_ip(b, self.cpu.r.rip)
            {
                // The last block left for exactly this one: jump here directly next time.
                if let Some((site, rip)) = chain_from {
                    if rip == self.cpu.r.rip && b.one_page() {
                        jit.chain(site, b.code);
                    }
                }
                // Returns and indirect branches to this block may now skip the dispatcher
                // (not in segmented code, where RIP is not the linear address).
                if b.ip_mask == u64::MAX || key & FLAT != 0 {
                    let global = b.one_page() && self.cpu.code_page_is_global(self.cpu.r.rip);
                    jit.remember(&self.cpu, self.cpu.r.rip, global, b.code);
                }
                self.cpu.r.flags.to_native();
                self.cpu.chain_budget = CHAIN_BUDGET;
                self.cpu.jit_exit = 0;
                let status = jit.run(&mut self.cpu, b.code);
                self.cpu.stats.instructions +=
                    CHAIN_BUDGET.wrapping_sub(self.cpu.chain_budget) as u64;
                if status == jit::STOPPED {
                    return self.cpu.jit_stop.take();
                }
                if self.cpu.jit_exit != 0 {
                    self.chain_from = Some((self.cpu.jit_exit, self.cpu.r.rip));
                }
                return None;
            }
        }
        // The interpreter works on `r.fpu`, which translated x87 code may have left behind.
        self.cpu.sync_x87();
        let stop = run_block(&mut self.cpu, self.cache.get(id));
        let b = self.cache.get_mut(id);
        b.hits = b.hits.saturating_add(1).min(u32::MAX - 1);
        stop
    }

    /// Translates block `id` if it is 64-bit code, has no current translation and the
    /// interpreter has run it `threshold` times.
    fn translate_if_due(&mut self, id: u32) {
        let threshold = match &self.jit {
            JitSlot::Off => return,
            JitSlot::Pending(n) => *n,
            JitSlot::On(j) => j.threshold,
        };
        let b = self.cache.get(id);
        let mode = self.cpu.exec_key & TRANSLATION_MODE;
        // u32::MAX marks a block that could not be translated.
        if !translatable(self.cpu.exec_key) || b.hits == u32::MAX || b.hits < threshold {
            return;
        }
        if let JitSlot::On(j) = &self.jit {
            if b.code != 0 && b.code_epoch == j.epoch && b.code_mode == mode {
                return;
            }
        }
        if let JitSlot::Pending(n) = self.jit {
            self.jit = match Jit::new(n) {
                Some(j) => JitSlot::On(Box::new(j)),
                None => JitSlot::Off,
            };
        }
        let JitSlot::On(jit) = &mut self.jit else {
            return;
        };
        let b = self.cache.get_mut(id);
        match jit.translate(b, mode) {
            Some(code) => {
                b.code = code;
                b.code_epoch = jit.epoch;
                b.code_mode = mode;
            }
            None => b.hits = u32::MAX,
        }
    }

    fn exit_for(&mut self, e: Exit) -> VmExit<'_> {
        self.pending = Some(e);
        match e {
            Exit::PioIn { port, size } => VmExit::PioIn {
                port,
                size,
                data: &mut self.io_buf[..size as usize],
            },
            Exit::PioOut { port, size, value } => {
                self.io_buf[..4].copy_from_slice(&value.to_le_bytes());
                VmExit::PioOut {
                    port,
                    size,
                    data: &self.io_buf[..size as usize],
                }
            }
            Exit::MmioRead { addr, size } => VmExit::MmioRead {
                addr,
                data: &mut self.io_buf[..size as usize],
            },
            Exit::PioInString { port, size, count } => VmExit::PioIn {
                port,
                size,
                data: &mut self.io_buf[..size as usize * count as usize],
            },
            Exit::PioOutString { port, size, count } => {
                let n = size as usize * count as usize;
                self.io_buf[..n].copy_from_slice(&self.cpu.io.bulk[..n]);
                VmExit::PioOut {
                    port,
                    size,
                    data: &self.io_buf[..n],
                }
            }
            Exit::MmioWrite { addr, size, value } => {
                self.io_buf[..8].copy_from_slice(&value.to_le_bytes());
                VmExit::MmioWrite {
                    addr,
                    data: &self.io_buf[..size as usize],
                }
            }
        }
    }
}

/// Whether code run under `exec_key` may run translated: 64-bit code, and other code whose CS
/// limit covers the code size's IPs, except virtual-8086 code (whose IOPL-sensitive
/// instructions the templates do not model).
fn translatable(exec_key: u32) -> bool {
    exec_key & 0xff == 64 || exec_key & (VM86 | CS_FULL) == CS_FULL
}

/// A 16-bit block runs translated only at the IP it was decoded at (the same bytes can run
/// as 1000:0010 and as 1001:0000): its translation knows each branch's target IP, whether it
/// wraps at 64 KiB and whether a 32-bit one goes past it. Exits chain only to blocks entered
/// this way, so chained code keeps to it too.
fn at_decoded_ip(b: &crate::block::Block, rip: u64) -> bool {
    b.ip_mask != 0xffff || b.start_ip == rip
}

/// Runs the instructions of `block` from its start until it ends, leaves, or stops; after an
/// STI or MOV SS only one instruction runs, so the interrupt shadow covers exactly that one.
#[inline(always)]
fn run_block(cpu: &mut Cpu, block: &crate::block::Block) -> Option<Stop> {
    let shadow = cpu.int_shadow;
    let insns = if shadow {
        &block.insns[..1]
    } else {
        &block.insns[..]
    };
    let mut retired = 0u64;
    let mut stop = None;
    for insn in insns {
        cpu.next_rip = cpu.r.rip.wrapping_add(insn.len as u64) & block.ip_mask;
        match (insn.exec)(cpu, insn) {
            Ok(Flow::Next) => {
                cpu.r.rip = cpu.next_rip;
                retired += 1;
                cpu.io.clear();
                if !cpu.code_written.is_empty() {
                    break;
                }
            }
            Ok(Flow::Jump) => {
                retired += 1;
                cpu.io.clear();
                break;
            }
            Ok(Flow::Resync) => {
                cpu.r.rip = cpu.next_rip;
                retired += 1;
                cpu.io.clear();
                break;
            }
            Ok(Flow::Repeat) => break,
            Err(s) => {
                stop = Some(s);
                break;
            }
        }
    }
    cpu.stats.instructions += retired;
    let size = match block.ip_mask {
        0xffff => 0,
        0xffff_ffff => 1,
        _ => 2,
    };
    cpu.stats.interpreted[size] += retired;
    if shadow && (retired > 0 || stop.is_some()) {
        cpu.int_shadow = false;
    }
    stop
}

impl Vcpu for SoftVcpu {
    fn run(&mut self) -> Result<VmExit<'_>> {
        // Registers may have been edited between runs (tests, state restore).
        self.cpu.sync_mode();
        self.complete_pending();
        self.drain_dma();
        let stop = self.execute();
        self.cpu.sync_x87();
        match stop {
            Stop::Exit => match self.cpu.pending_exit.take() {
                Some(e) => Ok(self.exit_for(e)),
                None => Ok(VmExit::Failed {
                    reason: "soft engine: an exit without its access".into(),
                }),
            },
            // Halted for good: interrupts are off or there is nothing to raise one.
            Stop::Halt => Ok(VmExit::Halt),
            // Halted, waiting for an interrupt: give the VMM a look.
            Stop::Idle => Ok(VmExit::Interrupted),
            Stop::Shutdown => {
                tracing::info!("soft engine: {}", self.cpu.stop_reason);
                Ok(VmExit::Shutdown)
            }
            Stop::Failed => Ok(VmExit::Failed {
                reason: std::mem::take(&mut self.cpu.stop_reason),
            }),
            Stop::Fault(f) => Ok(VmExit::Failed {
                reason: format!("unhandled exception {f:?}"),
            }),
        }
    }

    fn state(&mut self) -> Result<CpuState> {
        Ok(self.cpu.r.to_state())
    }

    fn clock(&self) -> Arc<dyn GuestClock> {
        self.cpu.tsc.clone()
    }

    fn kick_flag(&self) -> Option<Arc<AtomicBool>> {
        Some(self.kick.clone())
    }

    fn instructions_retired(&self) -> Option<u64> {
        Some(self.cpu.stats.instructions)
    }

    fn exec_stats(&self) -> Option<janus_engine::ExecStats> {
        let j = self.jit_stats();
        let mut fallbacks: Vec<(String, u64)> = self
            .cpu
            .stats
            .fallbacks
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(m, n)| {
                let m = iced_x86::Mnemonic::values().nth(m)?;
                Some((format!("{m:?}").to_lowercase(), *n))
            })
            .collect();
        fallbacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Some(janus_engine::ExecStats {
            blocks_decoded: self.cpu.stats.blocks_decoded,
            blocks_invalidated: self.cpu.stats.blocks_invalidated,
            translated_blocks: j.blocks,
            code_bytes: j.code_bytes,
            flushes: j.flushes,
            interpreted: self.cpu.stats.interpreted,
            fallbacks,
        })
    }

    fn set_msr_handler(&mut self, handler: Arc<dyn janus_engine::MsrHandler>) -> Result<()> {
        self.cpu.msr_handler = Some(handler);
        Ok(())
    }
}

/// Re-exported for tests: the TSC type behind `clock()`.
pub type SoftClock = Tsc;

//! The soft CPU: registers, memory view, TLB and the bookkeeping the executor needs.

use crate::cpu::{Mode, Regs, CS};
use crate::mem::PhysMem;
use crate::mmu::Tlb;
use janus_engine::CpuidEntry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Exception vectors.
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const XM: u8 = 19;
}

/// An exception raised by an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error: Option<u32>,
}

impl Fault {
    pub const fn new(vector: u8) -> Fault {
        Fault {
            vector,
            error: None,
        }
    }
    pub const fn with_error(vector: u8, error: u32) -> Fault {
        Fault {
            vector,
            error: Some(error),
        }
    }
    pub const fn gp(error: u32) -> Fault {
        Fault::with_error(vector::GP, error)
    }
    pub const fn ud() -> Fault {
        Fault::new(vector::UD)
    }
}

/// A device access the VMM must perform before the instruction can complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    PioIn {
        port: u16,
        size: u8,
    },
    PioOut {
        port: u16,
        size: u8,
        value: u32,
    },
    /// `count` elements of a REP INS into RAM at once, as KVM reports string I/O: one exit for
    /// up to a page.
    PioInString {
        port: u16,
        size: u8,
        count: u16,
    },
    /// `count` elements of a REP OUTS, gathered in `IoLog::bulk`.
    PioOutString {
        port: u16,
        size: u8,
        count: u16,
    },
    MmioRead {
        addr: u64,
        size: u8,
    },
    MmioWrite {
        addr: u64,
        size: u8,
        value: u64,
    },
}

/// Why an instruction did not simply complete. Kept to a few bytes so that handler results
/// come back in registers; the details of the rarer stops live in the [`Cpu`]
/// (`pending_exit`, `stop_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Deliver this exception (RIP still at the faulting instruction).
    Fault(Fault),
    /// Hand `Cpu::pending_exit` to the VMM, then re-execute the instruction (RIP unchanged).
    Exit,
    /// HLT completed: wait for an interrupt.
    Halt,
    /// Halted and no interrupt arrived within the wait: the VMM may act, then run again.
    Idle,
    /// The processor shut down (triple fault); why is in `Cpu::stop_reason`.
    Shutdown,
    /// The engine cannot continue the guest (for example code in MMIO space); why is in
    /// `Cpu::stop_reason`.
    Failed,
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Stop {
        Stop::Fault(f)
    }
}

/// What an instruction did to control flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Fell through to the next instruction.
    Next,
    /// Changed RIP (branch taken); the block ends here.
    Jump,
    /// Changed the CPU mode, paging or the code bytes: the block ends and the next one is looked
    /// up afresh.
    Resync,
    /// A REP string instruction made progress but is not finished: RIP stays on it, the block
    /// ends (so interrupts can be taken between iterations, as on hardware) and it runs again.
    Repeat,
}

pub type Step = Result<Flow, Stop>;

/// Device accesses already performed for the instruction being (re)executed: an I/O
/// instruction that stopped for the VMM is executed again and finds its answer here.
#[derive(Default, Debug)]
pub struct IoLog {
    done: Vec<Option<u64>>,
    pos: usize,
    /// A string I/O exit's data: what the VMM read (INS), or what goes out (OUTS).
    pub bulk: Vec<u8>,
}

impl IoLog {
    /// The next recorded access, if the instruction got this far before.
    #[inline]
    pub fn replay(&mut self) -> Option<Option<u64>> {
        let r = self.done.get(self.pos).copied();
        if r.is_some() {
            self.pos += 1;
        }
        r
    }

    /// Records the VMM's answer to the access that stopped the instruction.
    pub fn push(&mut self, read_value: Option<u64>) {
        self.done.push(read_value);
    }

    /// An instruction stopped at a port or MMIO access and has not completed yet: it must run
    /// again (replaying what it did) before the CPU may take an interrupt.
    pub fn in_progress(&self) -> bool {
        !self.done.is_empty()
    }

    /// Records the VMM's answer to a REP INS exit: the bytes it read.
    pub fn push_bulk(&mut self, data: &[u8]) {
        self.bulk.clear();
        self.bulk.extend_from_slice(data);
        self.done.push(None);
    }

    /// Starts the instruction over (replaying from the first access).
    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    /// The instruction completed: forget its accesses.
    #[inline]
    pub fn clear(&mut self) {
        if !self.done.is_empty() {
            self.done.clear();
        }
        self.pos = 0;
    }
}

/// Counters the engine keeps about itself.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub instructions: u64,
    pub blocks_decoded: u64,
    pub blocks_invalidated: u64,
    /// Instructions the engine met but does not implement, by name (each raised #UD).
    pub unimplemented: BTreeMap<String, u64>,
    /// Instructions the interpreter ran in blocks that were not translated, by code size
    /// (16-, 32-, 64-bit).
    pub interpreted: [u64; 3],
    /// Instructions translated code handed to the interpreter one at a time, indexed by
    /// `iced_x86::Mnemonic as usize` (grown on demand).
    pub fallbacks: Vec<u64>,
}

/// `Cpu::exec_key` bit: 32-bit code with flat segments (`Cpu::flat_segments`).
pub const FLAT: u32 = 1 << 9;
/// `Cpu::exec_key` bit outside 64-bit mode: the stack is 32-bit (SS.B), so SP is ESP.
pub const SS32: u32 = 1 << 10;
/// `Cpu::exec_key` bit: virtual-8086 mode (its code is interpreted).
pub const VM86: u32 = 1 << 11;
/// `Cpu::exec_key` bit outside 64-bit mode: CS's limit covers every IP of the code size (64
/// KiB, or 4 GiB), so no branch target wrapped to the code size can fall outside it; code
/// is translated only then.
pub const CS_FULL: u32 = 1 << 12;
/// The `Cpu::exec_key` bits a translation is made for (with the block's code size): a
/// translation runs only under the same ones.
pub const TRANSLATION_MODE: u32 = FLAT | SS32 | VM86;

/// The whole soft CPU.
pub struct Cpu {
    pub r: Regs,
    pub mem: PhysMem,
    pub tlb: Tlb,
    pub io: IoLog,
    pub cpuid: Vec<CpuidEntry>,
    /// The instruction-set extensions `cpuid` advertises, which the decoder lets run.
    pub isa: crate::cpuid::Isa,
    pub stats: Stats,
    /// RIP of the instruction after the one executing.
    pub next_rip: u64,
    /// Cached from CR0/EFER/CS: 64-bit mode, TLB index (user or supervisor).
    pub long64: bool,
    pub mmu_idx: usize,
    /// A store hit a page holding cached code; the executor invalidates it.
    pub code_written: Vec<u64>,
    /// Interrupts are inhibited until after the next instruction (STI, MOV SS, POP SS).
    pub int_shadow: bool,
    /// The guest's time-stamp counter (shared with the PV clock).
    pub tsc: Arc<crate::Tsc>,
    /// The device access behind the last `Stop::Exit`.
    pub pending_exit: Option<Exit>,
    /// What the last `Stop::Shutdown` or `Stop::Failed` was about.
    pub stop_reason: String,
    /// Bitness and privilege of the code running now, and whether its segments are flat
    /// (`bitness | mmu_idx << 8 | flat << 9 | ss32 << 10 | vm86 << 11`, see [`FLAT`],
    /// [`SS32`], [`VM86`]): the key decoded blocks and translations are looked up with,
    /// refreshed by `sync_mode`.
    pub exec_key: u32,
    /// Outside 64-bit mode, per segment register, the largest offset of an access's last
    /// byte that needs no check beyond the limit, for reads (`[s][0]`) and writes
    /// (`[s][1]`), or -1 when every access needs the full check (an unusable or expand-down
    /// segment, a write to a code or read-only segment, a read of an execute-only one):
    /// translated segmented code compares against it and leaves anything above to the
    /// interpreter, which raises the fault. Refreshed by `sync_mode`.
    pub jit_seg_limit: [[i64; 2]; 6],
    /// The interrupt controller behind INTR (on a PC, the local APIC), which also keeps the
    /// task priority CR8 reads and writes.
    pub intc: Option<Arc<dyn janus_engine::InterruptController>>,
    /// Why translated code stopped (it returns a status; the reason waits here).
    pub jit_stop: Option<Stop>,
    /// Instructions translated code may still retire before it must return to the dispatcher
    /// (which takes interrupts); what it spent is what it retired.
    pub chain_budget: i64,
    /// Set by a translated block leaving through an exit that can be chained: the address just
    /// after its patchable `jmp rel32`.
    pub jit_exit: u64,
    /// Address of the translator's jump table (`jit::JumpSlot`s), which translated code
    /// consults at exits whose target is known only at run time.
    pub jit_table: u64,
    /// The MXCSR of the host code that entered translated code, which translated code puts
    /// back after running guest floating point under the guest's MXCSR.
    pub jit_host_mxcsr: u32,
    /// Where translated code keeps values of its own across a call out (cold paths only).
    pub jit_slots: [u64; 4],
    /// The address of the guest TSC's offset from the host's (`Tsc::offset_ptr`), which lives
    /// as long as `tsc`: translated RDTSC reads the host's TSC and adds it.
    pub jit_tsc_offset: u64,
    /// The x87 state as FNSAVE stores it, for translated code (FRSTOR/FNSAVE around its x87
    /// instructions); `jit_x87_in_image` says it is newer than `r.fpu` (see `sync_x87`).
    pub jit_x87_img: [u8; 108],
    /// (A whole quadword: translated code compares it as one.)
    pub jit_x87_in_image: u64,
    /// MSRs the VMM implements (KVM's para-virtual ones, in para mode), consulted after the
    /// interrupt controller's and before the CPU's own.
    pub msr_handler: Option<Arc<dyn janus_engine::MsrHandler>>,
}

impl Cpu {
    pub fn new(r: Regs, mem: PhysMem, cpuid: Vec<CpuidEntry>, tsc: Arc<crate::Tsc>) -> Cpu {
        let mut cpu = Cpu {
            r,
            mem,
            tlb: Tlb::new(),
            io: IoLog::default(),
            isa: crate::cpuid::Isa::from_cpuid(&cpuid),
            cpuid,
            stats: Stats::default(),
            next_rip: 0,
            long64: false,
            mmu_idx: 0,
            code_written: Vec::new(),
            int_shadow: false,
            tsc,
            pending_exit: None,
            stop_reason: String::new(),
            exec_key: 0,
            jit_seg_limit: [[-1; 2]; 6],
            intc: None,
            jit_stop: None,
            chain_budget: 0,
            jit_exit: 0,
            jit_table: 0,
            jit_host_mxcsr: 0x1f80,
            jit_slots: [0; 4],
            jit_tsc_offset: 0,
            jit_x87_img: [0; 108],
            jit_x87_in_image: 0,
            msr_handler: None,
        };
        cpu.jit_tsc_offset = cpu.tsc.offset_ptr() as u64;
        cpu.sync_mode();
        cpu
    }

    /// Recomputes the cached mode bits after CR0, EFER or a segment register changed.
    #[inline]
    pub fn sync_mode(&mut self) {
        self.long64 = self.r.mode() == Mode::Long;
        self.mmu_idx = (self.r.cpl() == 3) as usize;
        let bitness = self.r.bitness();
        let mut key = bitness | (self.mmu_idx as u32) << 8;
        if !self.long64 {
            let mode = self.r.mode();
            if bitness == 32 && mode != Mode::Real && self.flat_segments() {
                key |= FLAT;
            }
            if self.r.seg[crate::cpu::SS].big() {
                key |= SS32;
            }
            if mode != Mode::Real && self.r.flags.bits & crate::flags::VM != 0 {
                key |= VM86;
            }
            let ip_max = if bitness == 16 { 0xffff } else { 0xffff_ffff };
            if self.r.seg[crate::cpu::CS].limit >= ip_max {
                key |= CS_FULL;
            }
            self.sync_seg_limits(mode);
        }
        self.exec_key = key;
    }

    /// Fills `jit_seg_limit` from the segment registers, as `linear_legacy` checks them.
    fn sync_seg_limits(&mut self, mode: Mode) {
        for (s, g) in self.r.seg.iter().enumerate() {
            let limit = g.limit as i64;
            self.jit_seg_limit[s] = if mode == Mode::Real {
                [limit, limit]
            } else if g.unusable {
                [-1, -1]
            } else {
                let t = g.type_();
                let code = t & 8 != 0;
                let expand_down = !code && t & 4 != 0;
                let readable = !code || t & 2 != 0;
                let writable = !code && t & 2 != 0;
                match expand_down {
                    true => [-1, -1],
                    false => [
                        if readable { limit } else { -1 },
                        if writable { limit } else { -1 },
                    ],
                }
            };
        }
    }

    /// 32-bit code whose CS, DS, ES and SS are flat: base 0, a 4 GiB limit, and for the data
    /// segments usable, writable and expand-up (SS 32-bit). Translated 32-bit code relies on
    /// it: addresses in those segments are their offsets, with nothing to check.
    fn flat_segments(&self) -> bool {
        use crate::cpu::{ATTR_DB, DS, ES, SS};
        let flat = |s: usize| {
            let g = &self.r.seg[s];
            g.base == 0 && g.limit == 0xffff_ffff && !g.unusable
        };
        let data = |s: usize| {
            let g = &self.r.seg[s];
            // Type: writable (bit 1), not expand-down (bit 2), data (bit 3 clear).
            flat(s) && g.type_() & 0b1110 == 0b0010
        };
        flat(CS) && data(DS) && data(ES) && data(SS) && self.r.seg[SS].attr & ATTR_DB != 0
    }

    /// Stops the instruction for device access `e`.
    pub fn exit(&mut self, e: Exit) -> Stop {
        self.pending_exit = Some(e);
        Stop::Exit
    }

    /// Stops the guest: the engine cannot go on.
    /// Brings `r.fpu` up to date with the x87 state translated code left in its FNSAVE image
    /// (call before anything reads or writes the x87 registers outside translated code).
    pub fn sync_x87(&mut self) {
        if self.jit_x87_in_image != 0 {
            crate::exec::x87::control::from_fsave(&mut self.r.fpu, &self.jit_x87_img);
            self.jit_x87_in_image = 0;
        }
    }

    /// Writes `r.fpu`'s x87 registers into the image translated code loads (FRSTOR).
    pub fn x87_to_image(&mut self) {
        crate::exec::x87::control::to_fsave(&self.r.fpu, &mut self.jit_x87_img);
        self.jit_x87_in_image = 1;
    }

    pub fn fail(&mut self, why: String) -> Stop {
        self.stop_reason = why;
        Stop::Failed
    }

    /// Stops the guest: the processor shut down.
    pub fn shutdown(&mut self, why: String) -> Stop {
        self.stop_reason = why;
        Stop::Shutdown
    }

    #[inline(always)]
    pub fn cpl(&self) -> u8 {
        self.r.cpl()
    }

    /// Bitness of the code segment (16, 32, 64).
    pub fn bitness(&self) -> u32 {
        self.r.bitness()
    }

    /// The code segment's selector, for error reports.
    pub fn cs_selector(&self) -> u16 {
        self.r.seg[CS].selector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_log_replays_in_order() {
        let mut log = IoLog::default();
        assert_eq!(log.replay(), None);
        log.push(Some(7));
        log.rewind();
        assert_eq!(log.replay(), Some(Some(7)));
        assert_eq!(log.replay(), None);
        log.push(None);
        log.rewind();
        assert_eq!(log.replay(), Some(Some(7)));
        assert_eq!(log.replay(), Some(None));
        log.clear();
        assert_eq!(log.replay(), None);
    }
}

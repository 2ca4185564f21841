//! A bare machine for tests: guest code run directly on a [`SoftVcpu`], no VMM.
//!
//! [`TestMachine::long_mode`] gives 64 MiB of RAM, the first 4 GiB identity-mapped with 2 MiB
//! pages, flat 64-bit segments, CPL 0, SSE enabled (CR4.OSFXSR/OSXMMEXCPT), EFER.SCE/NXE, code
//! at [`CODE`], a stack below [`STACK_TOP`] and a free data area at [`DATA`]. Port and MMIO
//! exits are answered by the test through [`TestMachine::run`]'s callback.

use crate::core::Cpu;
use crate::cpu::Regs;
use crate::mem::PhysMem;
use crate::vcpu::{DmaLog, SoftVcpu};
use crate::Tsc;
use janus_engine::cpu::bits;
use janus_engine::{CpuState, GuestMemory, Segment, Vcpu, VmExit};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress};

/// Where [`TestMachine::long_mode`] puts the code.
pub const CODE: u64 = 0x10_0000;
/// A free area for test data.
pub const DATA: u64 = 0x20_0000;
/// Initial RSP.
pub const STACK_TOP: u64 = 0xf_0000;
/// RAM size.
pub const RAM: usize = 64 << 20;

const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const GDT: u64 = 0x8000;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// HLT with nothing to wake the CPU (or, with an interrupt controller attached, nothing
    /// pending for 10 ms).
    Halt,
    /// Triple fault.
    Shutdown,
    /// The engine could not go on.
    Failed(String),
    /// The exit budget ran out.
    Budget,
}

/// A port or MMIO access the guest made, for the test's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    PioIn { port: u16, size: u8 },
    PioOut { port: u16, size: u8, value: u64 },
    MmioRead { addr: u64, size: u8 },
    MmioWrite { addr: u64, size: u8, value: u64 },
}

pub struct TestMachine {
    pub vcpu: SoftVcpu,
    pub mem: GuestMemory,
    /// Port I/O exits taken by `run_with` (a string I/O exit counts once).
    pub io_exits: usize,
}

fn flat(selector: u16, code: bool) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: true,
        dpl: 0,
        db: !code,
        s: true,
        l: code,
        g: true,
        avl: false,
        unusable: false,
    }
}

/// CPL 0 at [`CODE`] with the stack at [`STACK_TOP`], the GDT at `GDT`, code segment `cs`
/// and every data segment `data`, a TSS and no LDT: what both test modes share.
fn flat_state(cs: Segment, data: Segment) -> CpuState {
    let mut s = CpuState {
        rip: CODE,
        rflags: 2,
        cs,
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            type_: 0xb,
            present: true,
            limit: 0x67,
            ..Default::default()
        },
        ldt: Segment {
            unusable: true,
            ..Default::default()
        },
        ..Default::default()
    };
    s.gdt.base = GDT;
    s.gprs[4] = STACK_TOP;
    s
}

impl TestMachine {
    /// A machine with `mem_size` bytes of RAM starting in `state`.
    pub fn new(state: &CpuState, mem_size: usize) -> TestMachine {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), mem_size)]).expect("guest memory");
        let cpuid = crate::cpuid::supported(crate::host_tsc_hz(), crate::cpuid::Level::host_max());
        let cpu = Cpu::new(
            Regs::from_state(state),
            PhysMem::new(&mem),
            cpuid,
            Arc::new(Tsc::new()),
        );
        TestMachine {
            vcpu: SoftVcpu::new(cpu, None, Arc::new(DmaLog::default())),
            mem,
            io_exits: 0,
        }
    }

    /// 64-bit mode at CPL 0 with `code` at [`CODE`].
    pub fn long_mode(code: &[u8]) -> TestMachine {
        let mut s = CpuState {
            cr0: bits::CR0_PE
                | bits::CR0_MP
                | bits::CR0_ET
                | bits::CR0_NE
                | bits::CR0_WP
                | bits::CR0_PG,
            cr3: PML4,
            cr4: bits::CR4_PAE | bits::CR4_PGE | bits::CR4_OSFXSR | bits::CR4_OSXMMEXCPT,
            efer: bits::EFER_SCE | bits::EFER_LME | bits::EFER_LMA | bits::EFER_NXE,
            ..flat_state(flat(0x08, true), flat(0x10, false))
        };
        s.gdt.limit = 0x2f;
        let m = TestMachine::new(&s, RAM);
        // Upper levels allow user access (as OSes set them); the 2 MiB leaves are supervisor
        // pages, so a test opens a page to CPL 3 by setting U/S on its leaf.
        m.write_u64(PML4, PDPT | 7);
        for g in 0..4u64 {
            m.write_u64(PDPT + g * 8, (PD + g * 0x1000) | 7);
            for e in 0..512u64 {
                m.write_u64(PD + g * 0x1000 + e * 8, (g << 30) | (e << 21) | 0x83);
            }
        }
        for (i, d) in [
            0u64,
            0x00af_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x00af_fb00_0000_ffff,
            0x00cf_f300_0000_ffff,
        ]
        .iter()
        .enumerate()
        {
            m.write_u64(GDT + 8 * i as u64, *d);
        }
        m.write(CODE, code);
        m
    }

    /// 32-bit protected mode at CPL 0 with flat segments and paging off, SSE enabled, `code`
    /// at [`CODE`] and ESP at [`STACK_TOP`].
    pub fn protected_mode(code: &[u8]) -> TestMachine {
        let flat32 = |selector, code| Segment {
            db: true,
            l: false,
            ..flat(selector, code)
        };
        let mut s = CpuState {
            cr0: bits::CR0_PE | bits::CR0_MP | bits::CR0_ET | bits::CR0_NE,
            cr4: bits::CR4_OSFXSR | bits::CR4_OSXMMEXCPT,
            ..flat_state(flat32(0x08, true), flat32(0x10, false))
        };
        s.gdt.limit = 0x17;
        let m = TestMachine::new(&s, RAM);
        for (i, d) in [0u64, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
            .iter()
            .enumerate()
        {
            m.write_u64(GDT + 8 * i as u64, *d);
        }
        m.write(CODE, code);
        m
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .expect("test write inside RAM");
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem
            .read_slice(&mut v, GuestAddress(addr))
            .expect("test read inside RAM");
        v
    }

    /// Makes the 2 MiB page holding `addr` (in the first 4 GiB) not present.
    pub fn unmap_large_page(&self, addr: u64) {
        let g = (addr >> 30) & 3;
        let e = (addr >> 21) & 511;
        self.write_u64(PD + g * 0x1000 + e * 8, 0);
    }

    pub fn write_u64(&self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    pub fn read_u64(&self, addr: u64) -> u64 {
        u64::from_le_bytes(self.read(addr, 8).try_into().unwrap_or_default())
    }

    /// Enables XSAVE and the x87, SSE and AVX state (CR4.OSXSAVE, XCR0), as an OS does at
    /// `--cpu v3`, so that VEX instructions run.
    pub fn enable_avx(&mut self) {
        let r = self.regs();
        r.cr4 |= crate::exec::system::CR4_OSXSAVE;
        r.xcr0 = crate::cpuid::XCR0_V3;
    }

    /// The CPU's registers (to set up or inspect).
    pub fn regs(&mut self) -> &mut Regs {
        &mut self.vcpu.cpu.r
    }

    /// Runs until HLT, shutdown or failure, answering each device access with `on_access`
    /// (its return value is what a read gets), for at most `max_exits` accesses.
    pub fn run_with(&mut self, max_exits: usize, mut on_access: impl FnMut(Access) -> u64) -> End {
        for _ in 0..=max_exits {
            let exit = match self.vcpu.run() {
                Ok(e) => e,
                Err(e) => return End::Failed(e.to_string()),
            };
            let le = |d: &[u8]| {
                let mut b = [0u8; 8];
                b[..d.len()].copy_from_slice(d);
                u64::from_le_bytes(b)
            };
            match exit {
                VmExit::Halt => return End::Halt,
                VmExit::Shutdown => return End::Shutdown,
                VmExit::Failed { reason } => return End::Failed(reason),
                VmExit::Interrupted => {
                    if self.vcpu.is_halted() {
                        return End::Halt;
                    }
                }
                // A string I/O exit carries several elements: one access each.
                VmExit::PioIn { port, size, data } => {
                    self.io_exits += 1;
                    for element in data.chunks_mut(size.max(1) as usize) {
                        let v = on_access(Access::PioIn { port, size });
                        let n = element.len();
                        element.copy_from_slice(&v.to_le_bytes()[..n]);
                    }
                }
                VmExit::PioOut { port, size, data } => {
                    self.io_exits += 1;
                    for element in data.chunks(size.max(1) as usize) {
                        on_access(Access::PioOut {
                            port,
                            size,
                            value: le(element),
                        });
                    }
                }
                VmExit::MmioRead { addr, data } => {
                    let size = data.len() as u8;
                    let v = on_access(Access::MmioRead { addr, size });
                    let n = data.len();
                    data.copy_from_slice(&v.to_le_bytes()[..n]);
                }
                VmExit::MmioWrite { addr, data } => {
                    on_access(Access::MmioWrite {
                        addr,
                        size: data.len() as u8,
                        value: le(data),
                    });
                }
            }
        }
        End::Budget
    }

    /// Runs until HLT with no device accesses expected (any access fails the run).
    pub fn run(&mut self) -> End {
        let mut unexpected = None;
        let end = self.run_with(0, |a| {
            unexpected = Some(a);
            0
        });
        match unexpected {
            Some(a) => End::Failed(format!("unexpected device access {a:?}")),
            None => end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_code_to_hlt() {
        // mov rax, 0x1234 ; add rax, rax ; hlt
        let mut m =
            TestMachine::long_mode(&[0x48, 0xc7, 0xc0, 0x34, 0x12, 0, 0, 0x48, 0x01, 0xc0, 0xf4]);
        assert_eq!(m.run(), End::Halt);
        assert_eq!(m.regs().gpr[0], 0x2468);
    }

    #[test]
    fn answers_port_reads() {
        // in al, 0x60 ; out 0x61, al ; hlt
        let mut m = TestMachine::long_mode(&[0xe4, 0x60, 0xe6, 0x61, 0xf4]);
        let mut log = Vec::new();
        let end = m.run_with(10, |a| {
            log.push(a.clone());
            0x5a
        });
        assert_eq!(end, End::Halt);
        assert_eq!(
            log,
            vec![
                Access::PioIn {
                    port: 0x60,
                    size: 1
                },
                Access::PioOut {
                    port: 0x61,
                    size: 1,
                    value: 0x5a
                }
            ]
        );
    }
}

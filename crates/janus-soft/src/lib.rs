//! The soft engine: Janus's own x86-64 system CPU, for hosts without hardware assist.
//!
//! An interpreter over cached decoded blocks (iced-x86 decodes; `decode` picks a handler per
//! instruction once), with a software TLB in front of a full page walker, lazy flags, precise
//! exceptions and IDT delivery in every mode. Device accesses leave the engine as [`VmExit`]s
//! exactly as on kvm, so devices never know which engine runs the guest.
//!
//! [`VmExit`]: janus_engine::VmExit

pub mod block;
pub mod core;
pub mod cpu;
pub mod cpuid;
pub mod decode;
pub mod exec;
pub mod flags;
pub mod fpu;
pub mod interrupt;
pub mod jit;
pub mod mem;
pub mod mmu;
pub mod msr;
pub mod segments;
pub mod testing;
pub mod vcpu;

pub use vcpu::SoftVcpu;

pub use janus_engine::IrqRouter;
use janus_engine::{
    CpuState, CpuidEntry, DmaObserver, EngineKind, GuestClock, GuestMemory, InKernelDevices,
    InterruptController, IrqLine, Result, Vcpu, Vm,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The host's time-stamp counter.
pub fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions in user mode on Linux (CR4.TSD is clear).
    unsafe { ::core::arch::x86_64::_rdtsc() }
}

/// The host TSC frequency in Hz, measured once against the monotonic clock (20 ms).
pub fn host_tsc_hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        let t0 = Instant::now();
        let c0 = host_tsc();
        std::thread::sleep(Duration::from_millis(20));
        let c1 = host_tsc();
        let ns = t0.elapsed().as_nanos() as u64;
        // Round to kHz: the measurement is not finer than that.
        ((c1 - c0) as u128 * 1_000_000_000 / ns as u128) as u64 / 1000 * 1000
    })
}

/// The guest TSC: the host TSC plus an offset the guest can change by writing IA32_TSC.
pub struct Tsc {
    offset: AtomicI64,
    hz: u64,
}

impl Tsc {
    /// Where the offset from the host's TSC is kept (translated RDTSC adds it itself).
    pub fn offset_ptr(&self) -> *const AtomicI64 {
        &self.offset
    }

    /// A TSC that reads 0 now.
    pub fn new() -> Tsc {
        Tsc {
            offset: AtomicI64::new((host_tsc() as i64).wrapping_neg()),
            hz: host_tsc_hz(),
        }
    }

    /// Makes the guest TSC read `v` now.
    pub fn set(&self, v: u64) {
        self.offset
            .store(v.wrapping_sub(host_tsc()) as i64, Ordering::Relaxed);
    }
}

impl Default for Tsc {
    fn default() -> Self {
        Tsc::new()
    }
}

impl GuestClock for Tsc {
    fn guest_tsc(&self) -> u64 {
        host_tsc().wrapping_add(self.offset.load(Ordering::Relaxed) as u64)
    }
    fn tsc_hz(&self) -> u64 {
        self.hz
    }
}

struct RoutedLine {
    router: Arc<dyn IrqRouter>,
    gsi: u32,
}

impl IrqLine for RoutedLine {
    fn set_level(&self, high: bool) -> Result<()> {
        self.router.set_level(self.gsi, high);
        Ok(())
    }
}

/// A VM on the soft engine.
pub struct SoftVm {
    memory: GuestMemory,
    level: cpuid::Level,
    router: Option<Arc<dyn IrqRouter>>,
    controller: Option<Arc<dyn InterruptController>>,
    dma: Arc<vcpu::DmaLog>,
}

impl SoftVm {
    /// A VM whose vCPUs present the x86-64 micro-architecture `level`.
    pub fn new(memory: &GuestMemory, level: cpuid::Level) -> SoftVm {
        SoftVm {
            memory: memory.clone(),
            level,
            router: None,
            controller: None,
            dma: Arc::new(vcpu::DmaLog::default()),
        }
    }

    /// Connects the platform's interrupt controllers: `router` takes device interrupt lines,
    /// `controller` is what the CPU's INTR pin sees. Call before creating vCPUs and lines.
    pub fn set_interrupt_controllers(
        &mut self,
        router: Arc<dyn IrqRouter>,
        controller: Arc<dyn InterruptController>,
    ) {
        self.router = Some(router);
        self.controller = Some(controller);
    }
}

/// Lines on a platform with no interrupt controller: the level goes nowhere, as on a PC whose
/// PIC has every input masked.
struct Unconnected;

impl IrqRouter for Unconnected {
    fn set_level(&self, _gsi: u32, _high: bool) {}
}

impl Vm for SoftVm {
    fn kind(&self) -> EngineKind {
        EngineKind::Soft
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        Ok(cpuid::supported(host_tsc_hz(), self.level))
    }

    fn in_kernel_devices(&self) -> InKernelDevices {
        InKernelDevices::default()
    }

    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn IrqLine>> {
        let router = self.router.clone().unwrap_or_else(|| Arc::new(Unconnected));
        Ok(Arc::new(RoutedLine { router, gsi }))
    }

    fn dma_observer(&self) -> Arc<dyn DmaObserver> {
        self.dma.clone()
    }

    fn create_vcpu(
        &mut self,
        _index: u32,
        cpuid: &[CpuidEntry],
        state: &CpuState,
    ) -> Result<Box<dyn Vcpu>> {
        let regs = cpu::Regs::from_state(state);
        let mem = mem::PhysMem::new(&self.memory);
        let cpu = core::Cpu::new(regs, mem, cpuid.to_vec(), Arc::new(Tsc::new()));
        Ok(Box::new(SoftVcpu::new(
            cpu,
            self.controller.clone(),
            self.dma.clone(),
        )))
    }
}

//! The engine seam between the VMM and whatever executes guest instructions.
//!
//! An engine creates a [`Vm`] over guest memory; the VM creates [`Vcpu`]s; [`Vcpu::run`] runs
//! guest code until it needs the VMM and returns a [`VmExit`]. Both engines (kvm and soft)
//! produce the same exits, so the device bus never knows which engine runs the guest.

pub mod cpu;
pub mod cpuid;
pub mod exit;

use std::sync::Arc;

pub use cpu::{CpuState, DescriptorTable, Segment};
pub use cpuid::CpuidEntry;
pub use exit::{ExitCounters, ExitKind, VmExit};

/// How a software engine ran the guest's instructions: what it translated, and what it left
/// to its interpreter (the gaps in its translator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Blocks of guest code decoded, and dropped because their page was written.
    pub blocks_decoded: u64,
    pub blocks_invalidated: u64,
    /// Blocks translated to host code, the bytes of host code, and the times the code buffer
    /// filled and every translation was dropped.
    pub translated_blocks: u64,
    pub code_bytes: u64,
    pub flushes: u64,
    /// Instructions the interpreter ran in blocks that were not translated, by code size (16-,
    /// 32- and 64-bit code).
    pub interpreted: [u64; 3],
    /// Instructions translated code handed to the interpreter one at a time, by mnemonic,
    /// most frequent first.
    pub fallbacks: Vec<(String, u64)>,
}

/// Guest RAM as every part of Janus sees it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// Which engine executes the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Hardware-assisted virtualization through /dev/kvm.
    Kvm,
    /// Janus's own x86-64 CPU in software.
    Soft,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Kvm => "kvm",
            EngineKind::Soft => "soft",
        }
    }
}

/// Errors an engine reports to the VMM. These are host-side failures (an ioctl failed, the
/// engine cannot do what was asked), not guest misbehaviour, which arrives as a [`VmExit`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {source}")]
    Host {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Platform devices the engine emulates itself (in the host kernel for kvm), so the VMM must not
/// put its own models of them on the bus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InKernelDevices {
    /// i8259 PIC pair, I/O APIC and local APIC.
    pub irqchip: bool,
    /// i8254 PIT (ports 0x40-0x43) and the speaker/gate port 0x61.
    pub pit: bool,
}

/// One interrupt input of the platform's interrupt controllers (a GSI).
pub trait IrqLine: Send + Sync {
    /// Drives the line to `high` (level-triggered sources).
    fn set_level(&self, high: bool) -> Result<()>;

    /// Raises and lowers the line (edge-triggered sources, such as ISA devices).
    fn pulse(&self) -> Result<()> {
        self.set_level(true)?;
        self.set_level(false)
    }
}

/// An interrupt controller's output to a CPU (the INTR pin and the acknowledge cycle), for
/// engines that deliver external interrupts themselves (the soft engine; KVM has its own).
/// On a PC this is the local APIC, which also passes the 8259 PIC's ExtINT through LINT0.
pub trait InterruptController: Send + Sync {
    /// Is an interrupt waiting for the CPU (INTR asserted)? Called between instruction blocks,
    /// so it must be cheap (an atomic load, not a lock).
    fn has_interrupt(&self) -> bool;
    /// Interrupt acknowledge: the vector to deliver, if one is still pending.
    fn acknowledge(&self) -> Option<u8>;
    /// The guest wrote CR8 (task priority, TPR bits 7:4 = CR8 bits 3:0).
    fn set_cr8(&self, _cr8: u64) {}
    /// The task priority as CR8 reads it, where the controller keeps it.
    fn cr8(&self) -> Option<u64> {
        None
    }
    /// Blocks a halted vCPU until an interrupt may be pending or `timeout` passes.
    fn wait(&self, timeout: std::time::Duration) {
        std::thread::sleep(timeout)
    }
    /// Reads an MSR the controller owns (IA32_APIC_BASE), or `None` if it is not one of its.
    fn read_msr(&self, _index: u32) -> Option<u64> {
        None
    }
    /// Writes an MSR the controller owns: `Some(false)` if the value is refused (#GP), `None`
    /// if it is not one of its.
    fn write_msr(&self, _index: u32, _value: u64) -> Option<bool> {
        None
    }
}

/// Where device interrupt lines go: the platform's interrupt controllers (GSI numbering:
/// 0..=15 are the ISA IRQs, routed to both the 8259 PICs and the I/O APIC, as on a PC).
pub trait IrqRouter: Send + Sync {
    fn set_level(&self, gsi: u32, high: bool);
}

/// Devices that write guest memory behind the vCPU's back (DMA) report the range here, so an
/// engine that caches decoded guest code can drop what the write replaced.
pub trait DmaObserver: Send + Sync {
    fn dma_written(&self, gpa: u64, len: u64);
}

/// For engines that cache no guest code (kvm).
pub struct NoDmaObserver;

impl DmaObserver for NoDmaObserver {
    fn dma_written(&self, _gpa: u64, _len: u64) {}
}

/// Model-specific registers the VMM implements for engines that have no hypervisor behind them
/// to do it (the soft engine): KVM's para-virtual MSRs, for example, which KVM implements in
/// the kernel on the kvm engine. Called on the vCPU's thread, between instructions.
pub trait MsrHandler: Send + Sync {
    /// Reads MSR `index`, or `None` if it is not one of this handler's.
    fn read_msr(&self, index: u32) -> Option<u64>;
    /// Writes MSR `index`: `Some(false)` if the value is refused (the engine raises #GP),
    /// `None` if it is not one of this handler's.
    fn write_msr(&self, index: u32, value: u64) -> Option<bool>;
    /// The guest wrote its time-stamp counter: clock pages derived from it are stale.
    fn tsc_changed(&self) {}
}

/// The guest's time-stamp counter as the VMM can read it from outside the vCPU, for building
/// the PV clock page.
pub trait GuestClock: Send + Sync {
    /// The guest's TSC value now.
    fn guest_tsc(&self) -> u64;
    /// Frequency of the guest's TSC in Hz.
    fn tsc_hz(&self) -> u64;
}

/// A virtual machine: guest memory attached to an engine, with its platform interrupt routing.
pub trait Vm {
    fn kind(&self) -> EngineKind;

    /// CPUID leaves this engine can present (the mode policy filters and extends them).
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>>;

    /// Which platform devices the engine emulates itself.
    fn in_kernel_devices(&self) -> InKernelDevices;

    /// The interrupt line for global system interrupt `gsi`.
    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn IrqLine>>;

    /// Where devices report DMA writes to guest memory.
    fn dma_observer(&self) -> Arc<dyn DmaObserver> {
        Arc::new(NoDmaObserver)
    }

    /// Creates vCPU `index` with the given CPUID table and initial state.
    fn create_vcpu(
        &mut self,
        index: u32,
        cpuid: &[CpuidEntry],
        state: &CpuState,
    ) -> Result<Box<dyn Vcpu>>;
}

/// One virtual CPU.
pub trait Vcpu: Send {
    /// Runs guest code until the VMM must act. Data of an I/O read exit is written into the
    /// exit's buffer by the caller and is consumed by the next call.
    fn run(&mut self) -> Result<VmExit<'_>>;

    /// The current architectural state (for reports and for tests).
    fn state(&mut self) -> Result<CpuState>;

    /// The guest clock of this vCPU, valid for the life of the VM.
    fn clock(&self) -> Arc<dyn GuestClock>;

    /// A flag another thread sets to make `run` return soon (`VmExit::Interrupted`) even from
    /// a guest that makes no exits, where the engine has one.
    fn kick_flag(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        None
    }

    /// Guest instructions retired so far, where the engine counts them.
    fn instructions_retired(&self) -> Option<u64> {
        None
    }

    /// How the engine ran the guest's instructions, where it has more than one way to.
    fn exec_stats(&self) -> Option<ExecStats> {
        None
    }

    /// Hands MSRs the engine does not implement itself to `handler` (before the vCPU first
    /// runs). Engines whose hypervisor implements the para-virtual MSRs refuse.
    fn set_msr_handler(&mut self, _handler: Arc<dyn MsrHandler>) -> Result<()> {
        Err(EngineError::Unsupported(
            "this engine implements its para-virtual MSRs itself".into(),
        ))
    }
}

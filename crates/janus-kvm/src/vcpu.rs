//! A vCPU on /dev/kvm.

use crate::{convert, host_err};
use janus_engine::{CpuState, CpuidEntry, EngineError, GuestClock, Result, Vcpu, VmExit};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_run, CpuId, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::Arc;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// MTRRs enabled, default type write-back: what firmware leaves for the OS.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// Local APIC register offsets and delivery modes for the LINT pins.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7 << 8;
const APIC_MODE_NMI: u32 = 0x4 << 8;

/// What `KVM_RUN` returned, with the data-carrying exits decoded later from the run page.
enum Reason {
    Io,
    Mmio,
    Internal,
    Done(VmExit<'static>),
}

pub struct KvmVcpu {
    fd: VcpuFd,
    clock: Arc<KvmClock>,
}

impl KvmVcpu {
    pub(crate) fn new(fd: VcpuFd, cpuid: &[CpuidEntry], state: &CpuState) -> Result<KvmVcpu> {
        let entries: Vec<_> = cpuid.iter().map(convert::cpuid_to_kvm).collect();
        let cpuid = CpuId::from_entries(&entries)
            .map_err(|_| EngineError::Unsupported("CPUID table too large for KVM".into()))?;
        fd.set_cpuid2(&cpuid).map_err(host_err("KVM_SET_CPUID2"))?;
        set_boot_msrs(&fd)?;
        set_fpu_reset(&fd)?;
        set_lapic_lints(&fd)?;
        let mut sregs = fd.get_sregs().map_err(host_err("KVM_GET_SREGS"))?;
        convert::sregs_to_kvm(state, &mut sregs);
        fd.set_sregs(&sregs).map_err(host_err("KVM_SET_SREGS"))?;
        fd.set_regs(&convert::regs_to_kvm(state))
            .map_err(host_err("KVM_SET_REGS"))?;
        let clock = Arc::new(KvmClock::measure(&fd)?);
        Ok(KvmVcpu { fd, clock })
    }

    fn io_exit(&mut self) -> VmExit<'_> {
        let run: *mut kvm_run = self.fd.get_kvm_run();
        // SAFETY: exit_reason is KVM_EXIT_IO, so `io` is the live union member.
        let io = unsafe { (*run).__bindgen_anon_1.io };
        let len = io.size as usize * io.count as usize;
        // SAFETY: KVM puts the I/O data `data_offset` bytes into the kvm_run mapping, which is
        // mapped for the life of the vCPU fd; the slice borrows `self` mutably, so nothing else
        // touches the page until the caller is done with it.
        let data = unsafe {
            std::slice::from_raw_parts_mut((run as *mut u8).add(io.data_offset as usize), len)
        };
        if io.direction as u32 == kvm_bindings::KVM_EXIT_IO_IN {
            VmExit::PioIn {
                port: io.port,
                size: io.size,
                data,
            }
        } else {
            VmExit::PioOut {
                port: io.port,
                size: io.size,
                data,
            }
        }
    }

    fn mmio_exit(&mut self) -> VmExit<'_> {
        let run = self.fd.get_kvm_run();
        // SAFETY: exit_reason is KVM_EXIT_MMIO, so `mmio` is the live union member.
        let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
        let len = (mmio.len as usize).min(mmio.data.len());
        let addr = mmio.phys_addr;
        if mmio.is_write != 0 {
            VmExit::MmioWrite {
                addr,
                data: &mmio.data[..len],
            }
        } else {
            VmExit::MmioRead {
                addr,
                data: &mut mmio.data[..len],
            }
        }
    }

    fn internal_error(&mut self) -> VmExit<'static> {
        let run = self.fd.get_kvm_run();
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the live member.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let what = match internal.suberror {
            kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => "instruction emulation failed",
            kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
            kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
            _ => "internal error",
        };
        VmExit::Failed {
            reason: format!("KVM: {what} (suberror {})", internal.suberror),
        }
    }
}

impl Vcpu for KvmVcpu {
    fn run(&mut self) -> Result<VmExit<'_>> {
        let reason = match self.fd.run() {
            Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..)) => Reason::Io,
            Ok(VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..)) => Reason::Mmio,
            Ok(VcpuExit::InternalError) => Reason::Internal,
            Ok(VcpuExit::Hlt) => Reason::Done(VmExit::Halt),
            Ok(VcpuExit::Shutdown) => Reason::Done(VmExit::Shutdown),
            Ok(VcpuExit::SystemEvent(kind, _))
                if kind == kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN
                    || kind == kvm_bindings::KVM_SYSTEM_EVENT_RESET =>
            {
                Reason::Done(VmExit::Shutdown)
            }
            Ok(VcpuExit::Intr) => Reason::Done(VmExit::Interrupted),
            Ok(VcpuExit::FailEntry(hw, cpu)) => Reason::Done(VmExit::Failed {
                reason: format!(
                    "KVM: vCPU entry failed on host CPU {cpu} (hardware reason {hw:#x})"
                ),
            }),
            Ok(other) => Reason::Done(VmExit::Failed {
                reason: format!("KVM: unexpected exit {other:?}"),
            }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Reason::Done(VmExit::Interrupted)
            }
            Err(e) => return Err(host_err("KVM_RUN")(e)),
        };
        Ok(match reason {
            Reason::Io => self.io_exit(),
            Reason::Mmio => self.mmio_exit(),
            Reason::Internal => self.internal_error(),
            Reason::Done(exit) => exit,
        })
    }

    fn state(&mut self) -> Result<CpuState> {
        let regs = self.fd.get_regs().map_err(host_err("KVM_GET_REGS"))?;
        let sregs = self.fd.get_sregs().map_err(host_err("KVM_GET_SREGS"))?;
        Ok(convert::state_from_kvm(&regs, &sregs))
    }

    fn clock(&self) -> Arc<dyn GuestClock> {
        self.clock.clone()
    }
}

fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}

/// MSRs a firmware would have set before handing over to an OS.
fn set_boot_msrs(fd: &VcpuFd) -> Result<()> {
    let entries = [
        msr(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        msr(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ];
    let msrs = Msrs::from_entries(&entries)
        .map_err(|_| EngineError::Unsupported("MSR list too large".into()))?;
    let set = fd.set_msrs(&msrs).map_err(host_err("KVM_SET_MSRS"))?;
    if set != entries.len() {
        return Err(EngineError::Unsupported(format!(
            "KVM accepted only {set} of {} boot MSRs",
            entries.len()
        )));
    }
    Ok(())
}

/// The x87/SSE state after FNINIT and with MXCSR at its reset value.
fn set_fpu_reset(fd: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(host_err("KVM_SET_FPU"))
}

/// Wires the local APIC's LINT0 to the PIC (ExtINT) and LINT1 to NMI, as PC firmware does, so
/// interrupts from the i8259 reach the CPU in virtual-wire mode.
fn set_lapic_lints(fd: &VcpuFd) -> Result<()> {
    let mut lapic = fd.get_lapic().map_err(host_err("KVM_GET_LAPIC"))?;
    for (offset, mode) in [
        (APIC_LVT_LINT0, APIC_MODE_EXTINT),
        (APIC_LVT_LINT1, APIC_MODE_NMI),
    ] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[offset + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | mode;
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            lapic.regs[offset + i] = b as _;
        }
    }
    fd.set_lapic(&lapic).map_err(host_err("KVM_SET_LAPIC"))
}

fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions in user mode on Linux (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The guest TSC seen from the host: KVM runs it as the host TSC plus a fixed offset (no TSC
/// scaling is requested), so measuring the offset once lets the VMM read the guest's TSC at
/// any time without stopping the vCPU.
pub struct KvmClock {
    offset: i64,
    hz: u64,
}

impl KvmClock {
    fn measure(fd: &VcpuFd) -> Result<KvmClock> {
        let khz = fd.get_tsc_khz().map_err(host_err("KVM_GET_TSC_KHZ"))?;
        let mut msrs = Msrs::from_entries(&[msr(MSR_IA32_TSC, 0)])
            .map_err(|_| EngineError::Unsupported("MSR list too large".into()))?;
        let before = host_tsc();
        fd.get_msrs(&mut msrs).map_err(host_err("KVM_GET_MSRS"))?;
        let after = host_tsc();
        let guest = msrs.as_slice()[0].data;
        let host_mid = before / 2 + after / 2;
        Ok(KvmClock {
            offset: guest.wrapping_sub(host_mid) as i64,
            hz: khz as u64 * 1000,
        })
    }
}

impl GuestClock for KvmClock {
    fn guest_tsc(&self) -> u64 {
        host_tsc().wrapping_add(self.offset as u64)
    }

    fn tsc_hz(&self) -> u64 {
        self.hz
    }
}

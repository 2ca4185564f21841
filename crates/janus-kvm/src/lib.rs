//! The kvm engine: guests run on the host CPU through /dev/kvm (VT-x or AMD-V).
//!
//! The interrupt controllers (PIC, I/O APIC, local APIC) and the PIT live in the host kernel
//! (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2), as on Firecracker and QEMU's default KVM machine;
//! everything else exits to the VMM as a [`VmExit`].

mod convert;
mod host;
mod vcpu;

pub use host::{hardware_assist, kvm_modules};
pub use vcpu::KvmVcpu;

use janus_engine::{
    CpuState, CpuidEntry, EngineError, EngineKind, GuestMemory, InKernelDevices, IrqLine, Result,
    Vcpu, Vm,
};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use std::sync::Arc;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Three pages KVM needs for the real-mode TSS on Intel hosts without unrestricted guest;
/// placed in the MMIO hole below 4 GiB where no RAM is.
const TSS_ADDRESS: usize = 0xfffb_d000;
/// One page for the EPT identity map on such hosts, just below the TSS.
const IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

fn host_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> EngineError {
    move |e| EngineError::Host {
        what,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// A VM on /dev/kvm.
pub struct KvmVm {
    kvm: Kvm,
    vm: Arc<VmFd>,
    // Kept so the host mappings registered with KVM outlive the VM.
    _memory: GuestMemory,
}

impl KvmVm {
    /// Opens /dev/kvm, creates a VM with the in-kernel irqchip and PIT, and registers `memory`.
    pub fn new(memory: &GuestMemory) -> Result<KvmVm> {
        let kvm = Kvm::new().map_err(|e| EngineError::Open {
            path: "/dev/kvm".into(),
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let vm = kvm.create_vm().map_err(host_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(host_err("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(IDENTITY_MAP_ADDRESS)
            .map_err(host_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        vm.create_irq_chip()
            .map_err(host_err("KVM_CREATE_IRQCHIP"))?;
        // SPEAKER_DUMMY: KVM also answers port 0x61 (PIT channel 2 gate and output), which
        // guests use to calibrate their TSC.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(host_err("KVM_CREATE_PIT2"))?;
        for (slot, region) in memory.iter().enumerate() {
            let host = region.as_ptr() as u64;
            let mapping = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host,
                flags: 0,
            };
            // SAFETY: the region is a live host mapping of `region.len()` bytes, owned by the
            // GuestMemory clone this VM keeps until it is dropped, so KVM never sees it unmapped.
            unsafe { vm.set_user_memory_region(mapping) }
                .map_err(host_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(KvmVm {
            kvm,
            vm: Arc::new(vm),
            _memory: memory.clone(),
        })
    }
}

impl Vm for KvmVm {
    fn kind(&self) -> EngineKind {
        EngineKind::Kvm
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(host_err("KVM_GET_SUPPORTED_CPUID"))?;
        Ok(cpuid
            .as_slice()
            .iter()
            .map(convert::cpuid_from_kvm)
            .collect())
    }

    fn in_kernel_devices(&self) -> InKernelDevices {
        InKernelDevices {
            irqchip: true,
            pit: true,
        }
    }

    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn IrqLine>> {
        Ok(Arc::new(KvmIrqLine {
            vm: self.vm.clone(),
            gsi,
        }))
    }

    fn create_vcpu(
        &mut self,
        index: u32,
        cpuid: &[CpuidEntry],
        state: &CpuState,
    ) -> Result<Box<dyn Vcpu>> {
        let fd = self
            .vm
            .create_vcpu(index as u64)
            .map_err(host_err("KVM_CREATE_VCPU"))?;
        Ok(Box::new(KvmVcpu::new(fd, cpuid, state)?))
    }
}

/// A GSI of KVM's in-kernel irqchip, driven with KVM_IRQ_LINE.
struct KvmIrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, high: bool) -> Result<()> {
        self.vm
            .set_irq_line(self.gsi, high)
            .map_err(host_err("KVM_IRQ_LINE"))
    }
}

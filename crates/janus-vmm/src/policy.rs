//! The mode policy: everything that differs between full and para virtualization, decided in
//! one place.
//!
//! | what the guest sees      | full (unmodified, unaware)        | para (hypervisor-aware)                 |
//! |--------------------------|-----------------------------------|-----------------------------------------|
//! | CPUID.1:ECX[31]          | clear                             | set                                     |
//! | leaves 0x4000_0000+      | none                              | KVM's leaves (KVMKVMKVM: kvmclock, PV EOI, ...), and Janus's signature + doorbell leaves at 0x4000_0100 |
//! | invariant TSC (0x8000_0007 EDX[8]) | as the engine reports it | hidden, so that Linux prefers kvm-clock (as QEMU does without `invtsc`) |
//! | console                  | 16550 UART                        | UART, virtio-console, the console hypercall |
//! | clock                    | PIT, CMOS RTC, TSC                | the same, plus kvmclock and the PV clock page |
//! | disk (`--disk`)          | PIIX IDE primary master (ata_piix) | virtio-blk, and the block-read hypercall |
//! | network (`--net`)        | Intel 82540EM (e1000) on PCI      | virtio-net                              |
//! | entropy                  | none                              | virtio-rng                              |
//! | guest panics             | invisible (as on a PC)            | pvpanic at port 0x505 (ACPI QEMU0001): reported, status 4 |
//! | how it calls the VMM     | it does not: it touches hardware  | hypercall doorbell ports 0x500.., virtio notify |
//!
//! KVM's leaves come from the engine on kvm, where KVM implements what they advertise in the
//! kernel. On the soft engine Janus implements the features in [`SOFT_KVM_FEATURES`] itself and
//! advertises exactly those.

use crate::config::Mode;
use janus_abi::cpuid::{
    signature_regs, ABI_VERSION, HYPERVISOR_BIT, JANUS_LEAF, JANUS_LEAF_DOORBELL,
};
use janus_abi::hypercall::{CALL_COUNT, DOORBELL_BASE};
use janus_abi::kvm_para::{self, feature};
use janus_engine::{CpuidEntry, EngineKind};

/// KVM para-virtual features Janus implements on the soft engine: kvmclock at both MSR pairs
/// (`janus_devices::kvmclock`) with a stable TSC, PV EOI (`janus_devices::irqchip`), and no
/// need for I/O delays (no Janus device has timing constraints).
pub const SOFT_KVM_FEATURES: u32 = feature::CLOCKSOURCE
    | feature::NOP_IO_DELAY
    | feature::CLOCKSOURCE2
    | feature::PV_EOI
    | feature::CLOCKSOURCE_STABLE_BIT;

/// CPUID.8000_0007:EDX bit 8: the TSC runs at a constant rate in every state.
const INVARIANT_TSC: u32 = 1 << 8;

/// Janus devices a guest gets beyond the PC platform every guest has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParaDevices {
    /// The hypercall doorbell (console, clock, block, poweroff calls).
    pub doorbell: bool,
    /// virtio-mmio devices: console and entropy always, block for `--disk`, network for
    /// `--net`.
    pub virtio: bool,
    /// Janus implements KVM's para-virtual MSRs (kvmclock, PV EOI) itself, because the engine
    /// has no hypervisor to do it (the soft engine). On kvm, KVM does.
    pub kvm_msrs: bool,
    /// QEMU's pvpanic device (port 0x505, ACPI QEMU0001): the guest says when it panics.
    pub pvpanic: bool,
}

/// Where `--disk` is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskAttachment {
    /// The primary master of the PC's PIIX IDE controller: hardware a stock kernel drives.
    Ide,
    /// The para-virtual devices: virtio-blk (what Linux drives) and the doorbell's block-read
    /// hypercall (what the embedded guest uses).
    Paravirtual,
}

/// Which card `--net` becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetAttachment {
    /// The emulated Intel 82540EM at 00:03.0: hardware a stock kernel drives (`e1000`).
    E1000,
    /// virtio-net among the para-virtual devices.
    VirtioNet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModePolicy {
    mode: Mode,
}

fn is_hypervisor_leaf(function: u32) -> bool {
    (0x4000_0000..0x5000_0000).contains(&function)
}

impl ModePolicy {
    pub fn new(mode: Mode) -> ModePolicy {
        ModePolicy { mode }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn para_devices(&self, engine: EngineKind) -> ParaDevices {
        let para = self.mode == Mode::Para;
        ParaDevices {
            doorbell: para,
            virtio: para,
            kvm_msrs: para && engine == EngineKind::Soft,
            pvpanic: para,
        }
    }

    /// Where the guest finds `--disk`. Every PC has the IDE controller, in both modes; only in
    /// full mode does the disk sit on it.
    pub fn disk_attachment(&self) -> DiskAttachment {
        match self.mode {
            Mode::Full => DiskAttachment::Ide,
            Mode::Para => DiskAttachment::Paravirtual,
        }
    }

    /// Which network card the guest finds for `--net`: in full mode one it has a stock driver
    /// for, in para mode virtio-net.
    pub fn net_attachment(&self) -> NetAttachment {
        match self.mode {
            Mode::Full => NetAttachment::E1000,
            Mode::Para => NetAttachment::VirtioNet,
        }
    }

    /// The CPUID table vCPU `index` sees, from what the engine supports.
    pub fn cpuid(
        &self,
        engine: EngineKind,
        supported: &[CpuidEntry],
        index: u32,
    ) -> Vec<CpuidEntry> {
        let para = self.mode == Mode::Para;
        // Hypervisor leaves the engine offers are kept only in para mode, and only where the
        // engine implements what they advertise: KVM does (kvmclock, PV EOI, ... in the kernel).
        let keep_engine_leaves = para && engine == EngineKind::Kvm;
        let mut table: Vec<CpuidEntry> = supported
            .iter()
            .filter(|e| !is_hypervisor_leaf(e.function) || keep_engine_leaves)
            .copied()
            .collect();
        for e in &mut table {
            match e.function {
                1 => {
                    e.ecx = if para {
                        e.ecx | HYPERVISOR_BIT
                    } else {
                        e.ecx & !HYPERVISOR_BIT
                    };
                    // Initial APIC ID in EBX[31:24].
                    e.ebx = (e.ebx & 0x00ff_ffff) | (index << 24);
                }
                // x2APIC ID in the extended topology leaves.
                0xb | 0x1f => e.edx = index,
                // Linux rates kvm-clock below the TSC when the TSC is invariant; a para guest
                // is meant to use the PV clock.
                0x8000_0007 if para => e.edx &= !INVARIANT_TSC,
                _ => {}
            }
        }
        if para && engine == EngineKind::Soft {
            table.extend(soft_kvm_leaves());
        }
        if para {
            let [b, c, d] = signature_regs();
            table.push(CpuidEntry {
                function: JANUS_LEAF,
                eax: JANUS_LEAF_DOORBELL,
                ebx: b,
                ecx: c,
                edx: d,
                ..Default::default()
            });
            table.push(CpuidEntry {
                function: JANUS_LEAF_DOORBELL,
                eax: DOORBELL_BASE as u32,
                ebx: CALL_COUNT as u32,
                ecx: ABI_VERSION,
                ..Default::default()
            });
        }
        table
    }

    /// One line per difference, for `janus demo` and logs.
    pub fn describe(&self) -> &'static str {
        match self.mode {
            Mode::Full => "unmodified and unaware: no hypervisor bit or leaves; UART, PIT, CMOS RTC, ACPI poweroff, IDE disk",
            Mode::Para => "hypervisor-aware: hypervisor bit, KVM leaves (kvmclock, PV EOI), Janus leaves at 0x40000100, hypercall doorbell at 0x500, PV clock, virtio devices",
        }
    }
}

/// KVM's signature and feature leaves for what Janus implements on the soft engine.
fn soft_kvm_leaves() -> [CpuidEntry; 2] {
    let [b, c, d] = kvm_para::signature_regs();
    [
        CpuidEntry {
            function: kvm_para::CPUID_SIGNATURE,
            eax: kvm_para::CPUID_FEATURES,
            ebx: b,
            ecx: c,
            edx: d,
            ..Default::default()
        },
        CpuidEntry {
            function: kvm_para::CPUID_FEATURES,
            eax: SOFT_KVM_FEATURES,
            ..Default::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_engine::cpuid::lookup;

    fn host_like() -> Vec<CpuidEntry> {
        vec![
            CpuidEntry {
                function: 0,
                eax: 0xd,
                ..Default::default()
            },
            CpuidEntry {
                function: 1,
                ecx: HYPERVISOR_BIT | 0x2000,
                ebx: 0x0102_0800,
                ..Default::default()
            },
            CpuidEntry {
                function: 0x4000_0000,
                eax: 0x4000_0001,
                ebx: 0x4b4d_564b,
                ..Default::default()
            },
            CpuidEntry {
                function: 0x4000_0001,
                eax: 0x0100_7efb,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn full_mode_hides_the_hypervisor() {
        let t = ModePolicy::new(Mode::Full).cpuid(EngineKind::Kvm, &host_like(), 0);
        let leaf1 = lookup(&t, 1, 0).unwrap();
        assert_eq!(leaf1.ecx & HYPERVISOR_BIT, 0);
        assert_eq!(leaf1.ecx & 0x2000, 0x2000, "other features kept");
        assert!(t.iter().all(|e| !is_hypervisor_leaf(e.function)));
    }

    #[test]
    fn para_mode_shows_janus_and_kvm_leaves() {
        let t = ModePolicy::new(Mode::Para).cpuid(EngineKind::Kvm, &host_like(), 0);
        assert_ne!(lookup(&t, 1, 0).unwrap().ecx & HYPERVISOR_BIT, 0);
        let sig = lookup(&t, JANUS_LEAF, 0).unwrap();
        assert_eq!([sig.ebx, sig.ecx, sig.edx], signature_regs());
        let bell = lookup(&t, JANUS_LEAF_DOORBELL, 0).unwrap();
        assert_eq!(bell.eax, DOORBELL_BASE as u32);
        assert_eq!(bell.ebx, CALL_COUNT as u32);
        assert!(
            lookup(&t, 0x4000_0000, 0).is_some(),
            "KVM leaves kept on kvm"
        );
    }

    #[test]
    fn para_mode_on_soft_engine_advertises_what_janus_implements() {
        let t = ModePolicy::new(Mode::Para).cpuid(EngineKind::Soft, &host_like(), 0);
        let sig = lookup(&t, kvm_para::CPUID_SIGNATURE, 0).unwrap();
        assert_eq!([sig.ebx, sig.ecx, sig.edx], kvm_para::signature_regs());
        assert_eq!(sig.eax, kvm_para::CPUID_FEATURES);
        let features = lookup(&t, kvm_para::CPUID_FEATURES, 0).unwrap();
        assert_eq!(
            features.eax, SOFT_KVM_FEATURES,
            "not the host's 0x0100_7efb"
        );
        assert_eq!(
            t.iter()
                .filter(|e| e.function == kvm_para::CPUID_FEATURES)
                .count(),
            1,
            "the engine's own leaf is dropped"
        );
        assert!(lookup(&t, JANUS_LEAF, 0).is_some());
    }

    #[test]
    fn para_mode_hides_the_invariant_tsc() {
        let mut host = host_like();
        host.push(CpuidEntry {
            function: 0x8000_0007,
            edx: INVARIANT_TSC,
            ..Default::default()
        });
        for engine in [EngineKind::Kvm, EngineKind::Soft] {
            let para = ModePolicy::new(Mode::Para).cpuid(engine, &host, 0);
            assert_eq!(lookup(&para, 0x8000_0007, 0).unwrap().edx, 0);
            let full = ModePolicy::new(Mode::Full).cpuid(engine, &host, 0);
            assert_eq!(lookup(&full, 0x8000_0007, 0).unwrap().edx, INVARIANT_TSC);
        }
    }

    #[test]
    fn apic_id_is_the_vcpu_index() {
        let t = ModePolicy::new(Mode::Full).cpuid(EngineKind::Kvm, &host_like(), 3);
        assert_eq!(lookup(&t, 1, 0).unwrap().ebx >> 24, 3);
    }

    #[test]
    fn devices_follow_mode() {
        for engine in [EngineKind::Kvm, EngineKind::Soft] {
            let full = ModePolicy::new(Mode::Full).para_devices(engine);
            assert!(!full.doorbell && !full.virtio && !full.kvm_msrs);
            let para = ModePolicy::new(Mode::Para).para_devices(engine);
            assert!(para.doorbell && para.virtio);
            assert_eq!(para.kvm_msrs, engine == EngineKind::Soft, "KVM has its own");
        }
        let full = ModePolicy::new(Mode::Full);
        assert_eq!(full.disk_attachment(), DiskAttachment::Ide);
        assert_eq!(full.net_attachment(), NetAttachment::E1000);
        let para = ModePolicy::new(Mode::Para);
        assert_eq!(para.disk_attachment(), DiskAttachment::Paravirtual);
        assert_eq!(para.net_attachment(), NetAttachment::VirtioNet);
    }
}

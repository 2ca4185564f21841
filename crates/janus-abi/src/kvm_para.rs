//! KVM's para-virtual interface as a guest sees it (Linux's `asm/kvm_para.h`): the CPUID
//! leaves that announce it and the MSRs behind its features.
//!
//! On the kvm engine KVM implements all of this in the kernel; on the soft engine Janus
//! implements the features it advertises (see the mode policy).

/// CPUID leaf with the signature: EAX = highest KVM leaf, EBX:ECX:EDX = "KVMKVMKVM\0\0\0".
pub const CPUID_SIGNATURE: u32 = 0x4000_0000;
/// CPUID leaf with the feature bits in EAX and hints in EDX.
pub const CPUID_FEATURES: u32 = 0x4000_0001;
/// The signature bytes, as EBX, ECX, EDX return them.
pub const SIGNATURE: [u8; 12] = *b"KVMKVMKVM\0\0\0";

/// Feature bits of leaf 0x4000_0001 EAX.
pub mod feature {
    /// kvmclock at the original MSRs 0x11 (wall clock) and 0x12 (system time).
    pub const CLOCKSOURCE: u32 = 1 << 0;
    /// Port I/O needs no delay (Linux then skips its port 0x80 writes).
    pub const NOP_IO_DELAY: u32 = 1 << 1;
    /// kvmclock at MSRs 0x4b564d00 (wall clock) and 0x4b564d01 (system time).
    pub const CLOCKSOURCE2: u32 = 1 << 3;
    /// Para-virtual end of interrupt (MSR 0x4b564d04).
    pub const PV_EOI: u32 = 1 << 6;
    /// The TSC is stable: the guest may trust PVCLOCK_TSC_STABLE_BIT in the clock page.
    pub const CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;
}

/// kvmclock wall clock MSR (with [`feature::CLOCKSOURCE`]).
pub const MSR_WALL_CLOCK: u32 = 0x11;
/// kvmclock system time MSR (with [`feature::CLOCKSOURCE`]).
pub const MSR_SYSTEM_TIME: u32 = 0x12;
/// kvmclock wall clock MSR (with [`feature::CLOCKSOURCE2`]): the guest writes the address of a
/// [`PvclockWallClock`] and the hypervisor fills it in.
pub const MSR_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
/// kvmclock system time MSR (with [`feature::CLOCKSOURCE2`]): the address of this vCPU's
/// `pvclock_vcpu_time_info`, bit 0 set to enable updates.
pub const MSR_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// PV EOI MSR: the address of a 4-byte-aligned flag word, bit 0 set to enable.
pub const MSR_PV_EOI_EN: u32 = 0x4b56_4d04;
/// Bit 0 of an MSR value: enable.
pub const MSR_ENABLED: u64 = 1;
/// Bit of the PV EOI flag word the hypervisor sets when the guest may skip the APIC EOI
/// write, and the guest clears instead of writing it.
pub const PV_EOI_BIT: u32 = 1 << 0;

/// `pvclock_wall_clock`: the wall-clock time at which kvmclock's system time was zero.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvclockWallClock {
    /// Odd while the hypervisor writes, even when done.
    pub version: u32,
    pub sec: u32,
    pub nsec: u32,
}

const _: () = assert!(core::mem::size_of::<PvclockWallClock>() == 12);

/// The signature split into the three registers, little-endian as CPUID returns it.
pub const fn signature_regs() -> [u32; 3] {
    let s = SIGNATURE;
    [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    ]
}

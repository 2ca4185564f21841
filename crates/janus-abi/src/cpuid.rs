//! CPUID leaves a para-virtualized guest uses to find Janus.
//!
//! Hypervisor leaves live at `0x4000_0000 + k * 0x100`. Leaf `0x4000_0000` belongs to the
//! KVM-compatible interface where the engine offers one (Linux looks there for "KVMKVMKVM"), so
//! Janus's own leaves sit at `0x4000_0100`. Guests scan the range in steps of 0x100 for the
//! signature, as Linux's `hypervisor_cpuid_base` does.

/// CPUID.1:ECX bit 31: "a hypervisor is present". Clear in full virtualization.
pub const HYPERVISOR_BIT: u32 = 1 << 31;

/// First hypervisor leaf.
pub const HYPERVISOR_LEAF_BASE: u32 = 0x4000_0000;

/// Janus signature leaf: EAX = highest Janus leaf, EBX:ECX:EDX = [`SIGNATURE`].
pub const JANUS_LEAF: u32 = 0x4000_0100;

/// Janus doorbell leaf: EAX = doorbell base port, EBX = number of calls, ECX = ABI version.
pub const JANUS_LEAF_DOORBELL: u32 = JANUS_LEAF + 1;

/// "JanusJanusVM" as EBX, ECX, EDX.
pub const SIGNATURE: [u8; 12] = *b"JanusJanusVM";

/// Version of the hypercall ABI in this crate.
pub const ABI_VERSION: u32 = 1;

/// The signature split into the three registers, little-endian as CPUID returns it.
pub const fn signature_regs() -> [u32; 3] {
    let s = SIGNATURE;
    [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    ]
}

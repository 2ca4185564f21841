//! Boot information for Janus's direct 64-bit ELF entry.
//!
//! The VMM enters an ELF guest in long mode with the first 4 GiB identity-mapped, RDI holding the
//! guest-physical address of a [`BootInfo`]. This is what a boot loader hands a kernel (memory
//! size, command line); it says nothing about virtualization, so full-mode guests get it too.

/// `BootInfo::magic`: "JANUSBI1".
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"JANUSBI1");

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    pub magic: u64,
    /// Bytes of RAM starting at guest-physical 0.
    pub mem_size: u64,
    /// Guest-physical address of the command line (not NUL-terminated).
    pub cmdline_gpa: u64,
    /// Length of the command line in bytes.
    pub cmdline_len: u64,
}

const _: () = assert!(core::mem::size_of::<BootInfo>() == 32);

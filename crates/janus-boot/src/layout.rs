//! Where Janus puts things in low guest memory for a direct ELF boot.
//!
//! Everything the VMM writes lives below 1 MiB; guest images must load at or above
//! [`HIMEM_START`] (the ELF loader enforces it), so neither can overwrite the other.

/// GDT (a handful of 8-byte entries).
pub const GDT: u64 = 0x500;
/// [`janus_abi::boot::BootInfo`] passed in RDI.
pub const BOOT_INFO: u64 = 0x6000;
/// Top of the initial stack the VMM gives the guest (grows down from here, within low memory).
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Page-map level 4 table.
pub const PML4: u64 = 0x9000;
/// Page-directory-pointer table for the first 512 GiB.
pub const PDPT: u64 = 0xa000;
/// Four page directories mapping 0..4 GiB with 2 MiB pages.
pub const PD: u64 = 0xb000;
/// Bytes of identity mapping the boot page tables provide.
pub const IDENTITY_MAP_BYTES: u64 = 4 << 30;
/// Kernel command line.
pub const CMDLINE: u64 = 0x2_0000;
/// Longest command line accepted.
pub const CMDLINE_MAX: usize = 4096;
/// Start of memory for guest images.
pub const HIMEM_START: u64 = 0x10_0000;
/// Smallest guest RAM Janus boots with.
pub const MIN_MEMORY: u64 = 4 << 20;

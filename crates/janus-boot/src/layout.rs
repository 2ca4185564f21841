//! Where Janus puts things in low guest memory.
//!
//! Everything the VMM writes lives below 1 MiB; guest images must load at or above
//! [`HIMEM_START`] (the loaders enforce it), so neither can overwrite the other.
//!
//! ```text
//! 0x0000_0400  BIOS data area (Linux boot: EBDA segment and base memory size)
//! 0x0000_0500  GDT
//! 0x0000_6000  BootInfo (Janus ELF guests)
//! 0x0000_6100  hvm_start_info, module list, memory map (Linux PVH boot)
//! 0x0000_7000  boot_params, the "zero page" (Linux bzImage boot)
//! 0x0000_8ff0  top of the boot stack
//! 0x0000_9000  page tables (PML4, PDPT, 4 PDs) up to 0xefff
//! 0x0002_0000  command line
//! 0x0009_fc00  EBDA .. 0x10_0000: reserved in the e820 map (EBDA, VGA hole, BIOS area)
//! 0x000e_0000  ACPI tables (RSDP first), up to 0x10_0000
//! 0x0010_0000  the kernel (a bzImage's protected-mode part, or ELF segments) and beyond
//! ```

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

/// Linux `boot_params` (the zero page, 4 KiB), whose address the kernel gets in RSI.
pub const ZERO_PAGE: u64 = 0x7000;
/// PVH `hvm_start_info`, whose address the kernel gets in EBX.
pub const PVH_START_INFO: u64 = 0x6100;
/// PVH module list (the initramfs is module 0).
pub const PVH_MODLIST: u64 = 0x6200;
/// PVH memory map table (`hvm_memmap_table_entry`s, 24 bytes each).
pub const PVH_MEMMAP: u64 = 0x6300;
/// Most PVH memory map entries that fit below [`ZERO_PAGE`].
pub const PVH_MEMMAP_MAX: usize = ((ZERO_PAGE - PVH_MEMMAP) / 24) as usize;

/// BIOS data area: word holding the EBDA segment.
pub const BDA_EBDA_SEGMENT: u64 = 0x40e;
/// BIOS data area: word holding the KiB of base memory below the EBDA.
pub const BDA_BASE_MEMORY_KB: u64 = 0x413;
/// Start of the extended BIOS data area; RAM below it is usable, the rest up to 1 MiB is not.
pub const EBDA_START: u64 = 0x9_fc00;
/// The BIOS area where firmware tables live; the legacy RSDP scan covers it.
pub const BIOS_AREA_START: u64 = 0xe_0000;
/// End of the BIOS area (1 MiB).
pub const BIOS_AREA_END: u64 = 0x10_0000;
/// ACPI tables start here, with the RSDP (16-byte aligned, so the legacy scan finds it).
pub const ACPI_START: u64 = BIOS_AREA_START;

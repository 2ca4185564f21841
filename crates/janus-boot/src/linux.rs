//! Booting an unmodified Linux kernel: a bzImage through the 64-bit boot protocol, or an
//! uncompressed vmlinux (ELF) through its PVH entry.
//!
//! **bzImage** (Documentation/x86/boot.rst, "64-bit Boot Protocol"). The header is checked
//! first (magic, protocol 2.12 or newer, relocatable, 64-bit entry, sizes against the file), then
//! linux-loader copies the protected-mode kernel to 1 MiB. The kernel decompresses itself to
//! `max(align_up(1 MiB, kernel_alignment), pref_address)` and uses `init_size` bytes from there;
//! the initramfs goes above that, as high as RAM below the MMIO hole and `initrd_addr_max`
//! allow, page-aligned. `boot_params` (the zero page) starts from the image's setup header
//! (copied the way the protocol says: 0x1f1 up to the end given by the jump at 0x200) plus what
//! a boot loader fills in: loader type 0xff, command line, initramfs, e820 map, RSDP address.
//! The CPU enters at load address + 0x200 in long mode with 0..4 GiB identity-mapped, CS =
//! `__BOOT_CS` (0x10), DS/ES/SS = `__BOOT_DS` (0x18), interrupts off and RSI = the zero page.
//!
//! **vmlinux with a PVH note** (XEN_ELFNOTE_PHYS32_ENTRY). The segments are checked and loaded at
//! their physical addresses; the CPU enters the note's address in 32-bit protected mode with
//! paging off, flat CS/DS/ES/SS and EBX = an `hvm_start_info` (version 1) carrying the command
//! line, the initramfs as module 0, the RSDP and the same memory map.
//!
//! Both paths write the ACPI tables ([`crate::acpi`]) and a BIOS data area that points at the
//! EBDA, as firmware would. Every size and address that comes from the image is checked before
//! use; a bad image gives a one-line [`BootError::Kernel`].

use crate::acpi::{self, AcpiConfig};
use crate::e820::{self, E820Entry};
use crate::gdt::{self, linux as sel};
use crate::{elf, layout, long_mode_state, paging, BootError, Result};
use janus_engine::cpu::{bits, gpr};
use janus_engine::{CpuState, DescriptorTable, GuestMemory};
use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, E820_MAX_ENTRIES_ZEROPAGE,
};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use std::io::Cursor;
use vm_memory::{ByteValued, Bytes, GuestAddress};

/// What to boot.
#[derive(Clone, Copy, Debug)]
pub struct LinuxBoot<'a> {
    /// A bzImage, or an uncompressed vmlinux with a PVH note; told apart by content.
    pub kernel: &'a [u8],
    /// The initramfs (for example a gzip'ed cpio), if any.
    pub initramfs: Option<&'a [u8]>,
    pub cmdline: &'a str,
    /// What the ACPI tables describe.
    pub acpi: &'a AcpiConfig,
}

/// Offset of the setup header in a bzImage.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `HdrS`, at 0x202.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// `boot_flag` at 0x1fe.
pub const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// Oldest boot protocol accepted: 2.12 brought `xloadflags` (and with it XLF_KERNEL_64).
pub const MIN_PROTOCOL: u16 = 0x020c;
/// `loadflags`: the protected-mode code loads at 0x100000 (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags`: the kernel has the 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `type_of_loader` for a boot loader without an assigned ID.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// Offset of the 64-bit entry point from the load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

const PAGE: u64 = 0x1000;
const FOUR_GIB: u64 = 1 << 32;

fn bad(msg: impl Into<String>) -> BootError {
    BootError::Kernel(msg.into())
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// A checked bzImage header and the sizes derived from it.
#[derive(Clone, Copy, Debug)]
pub struct BzImageInfo {
    /// The setup header as the protocol says to copy it (fields past the header's end are 0).
    pub hdr: setup_header,
    /// Bytes of real-mode setup code in front of the protected-mode kernel.
    pub setup_len: usize,
    /// Bytes of the protected-mode kernel in the file.
    pub kernel_len: usize,
}

impl BzImageInfo {
    /// Where the kernel decompresses itself to and how far its buffer reaches, for a
    /// protected-mode kernel loaded at `load` (arch/x86/boot/compressed/head_64.S: the load
    /// address aligned up to `kernel_alignment`, but not below LOAD_PHYSICAL_ADDR, which a
    /// relocatable kernel reports as `pref_address`; `init_size` bytes from there).
    pub fn footprint(&self, load: u64) -> Option<(u64, u64)> {
        let align = u64::from(self.hdr.kernel_alignment);
        let start = align_up(load, align)?.max(self.hdr.pref_address);
        let end = start.checked_add(u64::from(self.hdr.init_size))?;
        Some((start, end))
    }
}

/// Checks a bzImage's header and sizes; reports the first problem in one line.
pub fn parse_bzimage(image: &[u8]) -> Result<BzImageInfo> {
    let hdr_len = std::mem::size_of::<setup_header>();
    let full_end = SETUP_HEADER_OFFSET + hdr_len;
    if image.len() < 0x206 {
        return Err(bad(format!(
            "truncated: {} bytes is too short for a bzImage header",
            image.len()
        )));
    }
    if image[0x202..0x206] != HDRS_MAGIC.to_le_bytes() {
        return Err(bad(
            "neither a bzImage (no \"HdrS\" magic at 0x202) nor an ELF file",
        ));
    }
    if image.len() < full_end {
        return Err(bad(format!(
            "truncated: {} bytes is too short for a bzImage header",
            image.len()
        )));
    }
    let boot_flag = u16_at(image, 0x1fe);
    if boot_flag != BOOT_FLAG_MAGIC {
        return Err(bad(format!(
            "bad boot flag {boot_flag:#06x} at 0x1fe (expected 0xaa55)"
        )));
    }
    // The header ends where the jump at 0x200 lands (0x202 + its 8-bit displacement).
    let hdr_end = (0x202 + usize::from(image[0x201])).min(full_end);
    let mut hdr = setup_header::default();
    hdr.as_mut_slice()[..hdr_end - SETUP_HEADER_OFFSET]
        .copy_from_slice(&image[SETUP_HEADER_OFFSET..hdr_end]);

    let version = hdr.version;
    if version < MIN_PROTOCOL {
        return Err(bad(format!(
            "boot protocol {}.{:02} is too old; 2.12 or newer is needed",
            version >> 8,
            version & 0xff
        )));
    }
    if hdr_end < full_end - 8 {
        // 2.12 reaches past init_size (0x260..0x264), which loading depends on.
        return Err(bad(format!(
            "setup header ends at {hdr_end:#x}, too short for protocol {}.{:02}",
            version >> 8,
            version & 0xff
        )));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(bad("not a bzImage: a zImage loads below 1 MiB"));
    }
    let xloadflags = hdr.xloadflags;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(bad(
            "no 64-bit entry point (XLF_KERNEL_64 clear): not an x86-64 kernel",
        ));
    }
    if hdr.relocatable_kernel == 0 {
        return Err(bad("the kernel is not relocatable"));
    }
    let align = hdr.kernel_alignment;
    if !align.is_power_of_two() || u64::from(align) < PAGE {
        return Err(bad(format!(
            "kernel_alignment {align:#x} is not a power of two of at least 4 KiB"
        )));
    }
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => usize::from(n),
    };
    let setup_len = (setup_sects + 1) * 512;
    if setup_len >= image.len() {
        return Err(bad(format!(
            "truncated: the setup code alone is {setup_len} bytes, the file {}",
            image.len()
        )));
    }
    let kernel_len = image.len() - setup_len;
    let syssize = u64::from(hdr.syssize) * 16;
    if syssize > kernel_len as u64 {
        return Err(bad(format!(
            "truncated: the protected-mode kernel should be {syssize} bytes, the file has {kernel_len}"
        )));
    }
    let payload_end = u64::from(hdr.payload_offset) + u64::from(hdr.payload_length);
    if payload_end > kernel_len as u64 {
        return Err(bad(format!(
            "truncated: the compressed payload ends at {payload_end:#x}, past the kernel's {kernel_len:#x} bytes"
        )));
    }
    let init_size = hdr.init_size;
    if u64::from(init_size) < syssize.max(1) {
        return Err(bad(format!(
            "init_size {init_size:#x} is smaller than the kernel itself ({syssize:#x})"
        )));
    }
    let pref = hdr.pref_address;
    if pref >= FOUR_GIB {
        return Err(bad(format!(
            "preferred address {pref:#x} is above 4 GiB"
        )));
    }
    Ok(BzImageInfo {
        hdr,
        setup_len,
        kernel_len,
    })
}

/// Loads a Linux kernel (bzImage or PVH vmlinux), its initramfs, command line, boot parameters,
/// ACPI tables and entry page tables/GDT, and returns the boot CPU's entry state.
pub fn load_linux(mem: &GuestMemory, boot: &LinuxBoot) -> Result<CpuState> {
    let size = crate::memory_size(mem);
    if size < layout::MIN_MEMORY {
        return Err(BootError::MemoryTooSmall {
            size,
            min: layout::MIN_MEMORY,
        });
    }
    let regions = e820::ram_regions(mem);
    let map = e820::memory_map(&regions)?;
    if boot.kernel.starts_with(b"\x7fELF") {
        load_pvh(mem, boot, &regions, &map)
    } else {
        load_bzimage(mem, boot, &regions, &map)
    }
}

/// End of the RAM region that holds `addr`, if one does.
fn region_end(regions: &[(u64, u64)], addr: u64) -> Option<u64> {
    regions
        .iter()
        .find(|&&(s, l)| addr >= s && addr - s < l)
        .map(|&(s, l)| s + l)
}

fn load_bzimage(
    mem: &GuestMemory,
    boot: &LinuxBoot,
    regions: &[(u64, u64)],
    map: &[E820Entry],
) -> Result<CpuState> {
    let info = parse_bzimage(boot.kernel)?;
    let load = layout::HIMEM_START;
    let low_end = region_end(regions, load).unwrap_or(0);
    let (run_start, run_end) = info
        .footprint(load)
        .ok_or_else(|| bad("kernel_alignment/pref_address/init_size overflow"))?;
    let kernel_end = run_end.max(load + info.kernel_len as u64);
    if kernel_end > low_end {
        let size = crate::memory_size(mem);
        if size < kernel_end {
            return Err(BootError::MemoryTooSmall {
                size,
                min: kernel_end,
            });
        }
        return Err(bad(format!(
            "the kernel decompresses into {run_start:#x}..{run_end:#x}, past low RAM's end at {low_end:#x}"
        )));
    }

    let max_cmdline = (info.hdr.cmdline_size as usize).min(layout::CMDLINE_MAX);
    write_cmdline(mem, boot.cmdline, max_cmdline)?;
    let rsdp = acpi::write_acpi(mem, boot.acpi)?;

    let loaded = BzImage::load(
        mem,
        Some(GuestAddress(load)),
        &mut Cursor::new(boot.kernel),
        Some(GuestAddress(layout::HIMEM_START)),
    )
    .map_err(|e| bad(e.to_string()))?;

    // initrd_addr_max is the highest address the initramfs may occupy (inclusive).
    let limit = (u64::from(info.hdr.initrd_addr_max) + 1).min(FOUR_GIB);
    let (initrd_at, initrd_len) = place_initramfs(mem, boot.initramfs, regions, kernel_end, limit)
        .map_err(|e| match e {
            BootError::Initramfs(m) => BootError::Initramfs(format!(
                "{m} (the kernel decompresses into {run_start:#x}..{run_end:#x})"
            )),
            e => e,
        })?;

    let mut params = boot_params::default();
    params.hdr = info.hdr;
    params.hdr.code32_start = loaded.kernel_load.0 as u32;
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = layout::CMDLINE as u32;
    params.ext_cmd_line_ptr = (layout::CMDLINE >> 32) as u32;
    params.hdr.ramdisk_image = initrd_at as u32;
    params.ext_ramdisk_image = (initrd_at >> 32) as u32;
    params.hdr.ramdisk_size = initrd_len as u32;
    params.ext_ramdisk_size = (initrd_len >> 32) as u32;
    params.acpi_rsdp_addr = rsdp;
    if map.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(bad(format!("{} e820 entries do not fit", map.len())));
    }
    params.e820_entries = map.len() as u8;
    for (slot, e) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    mem.write_obj(params, GuestAddress(layout::ZERO_PAGE))?;

    write_bios_data_area(mem)?;
    gdt::write_entries(mem, &sel::ENTRIES)?;
    paging::write_identity_map(mem)?;
    Ok(linux_64bit_state(load + ENTRY_64_OFFSET))
}

/// The 64-bit boot protocol's entry state at `entry`.
pub fn linux_64bit_state(entry: u64) -> CpuState {
    let seg = |s| gdt::segment_in(&sel::ENTRIES, s);
    let mut s = long_mode_state(entry);
    s.cs = seg(sel::BOOT_CS);
    s.ds = seg(sel::BOOT_DS);
    s.es = seg(sel::BOOT_DS);
    s.fs = seg(sel::BOOT_DS);
    s.gs = seg(sel::BOOT_DS);
    s.ss = seg(sel::BOOT_DS);
    s.tr = seg(sel::TSS);
    s.gdt = gdt::register(&sel::ENTRIES);
    s.gprs[gpr::RSI] = layout::ZERO_PAGE;
    s
}

/// The PVH entry state at `entry`: 32-bit protected mode, paging off, EBX = start info.
pub fn pvh_state(entry: u32) -> CpuState {
    let seg = |s| gdt::segment_in(&sel::ENTRIES, s);
    let mut s = CpuState {
        rip: u64::from(entry),
        rflags: bits::RFLAGS_RESERVED1,
        cs: seg(sel::CODE32),
        ds: seg(sel::BOOT_DS),
        es: seg(sel::BOOT_DS),
        fs: seg(sel::BOOT_DS),
        gs: seg(sel::BOOT_DS),
        ss: seg(sel::BOOT_DS),
        tr: seg(sel::TSS),
        ldt: gdt::null_ldt(),
        gdt: gdt::register(&sel::ENTRIES),
        idt: DescriptorTable { base: 0, limit: 0 },
        cr0: bits::CR0_PE | bits::CR0_ET,
        ..Default::default()
    };
    s.gprs[gpr::RBX] = layout::PVH_START_INFO;
    s.gprs[gpr::RSP] = layout::BOOT_STACK_TOP;
    s
}

fn load_pvh(
    mem: &GuestMemory,
    boot: &LinuxBoot,
    regions: &[(u64, u64)],
    map: &[E820Entry],
) -> Result<CpuState> {
    let info = elf::parse(boot.kernel)?;
    elf::check_placement(&info, mem)?;
    let kernel_end = info
        .segments
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .unwrap_or(layout::HIMEM_START);
    write_cmdline(mem, boot.cmdline, layout::CMDLINE_MAX)?;
    let rsdp = acpi::write_acpi(mem, boot.acpi)?;

    let loaded = Elf::load(
        mem,
        None,
        &mut Cursor::new(boot.kernel),
        Some(GuestAddress(layout::HIMEM_START)),
    )
    .map_err(|e| bad(e.to_string()))?;
    let entry = match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(a) => a.0,
        _ => {
            return Err(bad(
                "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); boot a bzImage instead",
            ))
        }
    };
    let inside = info
        .segments
        .iter()
        .any(|s| entry >= s.paddr && entry - s.paddr < s.memsz);
    if !inside {
        return Err(bad(format!(
            "PVH entry point {entry:#x} is not inside any loadable segment"
        )));
    }

    let (initrd_at, initrd_len) =
        place_initramfs(mem, boot.initramfs, regions, kernel_end, FOUR_GIB)?;

    if map.len() > layout::PVH_MEMMAP_MAX {
        return Err(bad(format!("{} memory map entries do not fit", map.len())));
    }
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        mem.write_obj(entry, GuestAddress(layout::PVH_MEMMAP + 24 * i as u64))?;
    }
    let mut start = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE,
        rsdp_paddr: rsdp,
        memmap_paddr: layout::PVH_MEMMAP,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if initrd_len > 0 {
        let module = hvm_modlist_entry {
            paddr: initrd_at,
            size: initrd_len,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(layout::PVH_MODLIST))?;
        start.nr_modules = 1;
        start.modlist_paddr = layout::PVH_MODLIST;
    }
    mem.write_obj(start, GuestAddress(layout::PVH_START_INFO))?;

    write_bios_data_area(mem)?;
    gdt::write_entries(mem, &sel::ENTRIES)?;
    let entry = u32::try_from(entry).map_err(|_| bad("PVH entry point above 4 GiB"))?;
    Ok(pvh_state(entry))
}

/// Writes the command line, NUL-terminated, at [`layout::CMDLINE`] if it has at most `max`
/// bytes.
fn write_cmdline(mem: &GuestMemory, cmdline: &str, max: usize) -> Result<()> {
    if cmdline.len() > max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE))?;
    Ok(())
}

/// Copies the initramfs as high as possible into RAM between `lowest` (rounded up to a page) and
/// `limit`; returns its address and length, or (0, 0) without one.
fn place_initramfs(
    mem: &GuestMemory,
    initramfs: Option<&[u8]>,
    regions: &[(u64, u64)],
    lowest: u64,
    limit: u64,
) -> Result<(u64, u64)> {
    let Some(data) = initramfs.filter(|d| !d.is_empty()) else {
        return Ok((0, 0));
    };
    let len = data.len() as u64;
    let lowest = align_up(lowest, PAGE).unwrap_or(u64::MAX);
    let at = e820::place_high(regions, len, lowest, limit).ok_or_else(|| {
        BootError::Initramfs(format!(
            "{len} bytes do not fit in RAM between {lowest:#x} and {limit:#x}"
        ))
    })?;
    mem.write_slice(data, GuestAddress(at))?;
    Ok((at, len))
}

/// The two BIOS data area words Linux reads: the EBDA segment and the KiB of base memory (it
/// reserves from the lower of the two up to 1 MiB).
fn write_bios_data_area(mem: &GuestMemory) -> Result<()> {
    mem.write_obj(
        (layout::EBDA_START >> 4) as u16,
        GuestAddress(layout::BDA_EBDA_SEGMENT),
    )?;
    mem.write_obj(
        (layout::EBDA_START >> 10) as u16,
        GuestAddress(layout::BDA_BASE_MEMORY_KB),
    )?;
    Ok(())
}

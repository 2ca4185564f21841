//! Booting an unmodified Linux kernel: a bzImage through the 64-bit boot protocol, or an
//! uncompressed vmlinux (ELF) through its PVH entry.
//!
//! **bzImage** (Documentation/x86/boot.rst, "64-bit Boot Protocol"). The header is checked
//! first (magic, protocol 2.12 or newer, 64-bit entry, sizes against the file), then
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
    /// relocatable kernel reports as `pref_address`; a kernel that is not relocatable runs at
    /// `pref_address` itself; `init_size` bytes from there).
    pub fn footprint(&self, load: u64) -> Option<(u64, u64)> {
        let align = u64::from(self.hdr.kernel_alignment);
        let start = if self.hdr.relocatable_kernel == 0 {
            self.hdr.pref_address
        } else {
            align_up(load, align)?.max(self.hdr.pref_address)
        };
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
    // A kernel that is not relocatable runs at its preferred address, which must lie above
    // the protected-mode image Janus loads at 1 MiB (as on QEMU, see `footprint`).
    let pref = hdr.pref_address;
    if hdr.relocatable_kernel == 0 && pref < layout::HIMEM_START {
        return Err(bad(format!(
            "the kernel is not relocatable and prefers {pref:#x}, below 1 MiB"
        )));
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
        return Err(bad(format!("preferred address {pref:#x} is above 4 GiB")));
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

    let mut params = boot_params {
        hdr: info.hdr,
        ..Default::default()
    };
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
    let kernel_end = info.end();
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
        _ => return Err(bad(
            "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); boot a bzImage instead",
        )),
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
pub(crate) fn write_bios_data_area(mem: &GuestMemory) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::{s5, scan_rsdp, table, walk};
    use crate::e820::{E820_RAM, E820_RESERVED};
    use std::path::PathBuf;

    const MIB: u64 = 1 << 20;

    fn mem(size: u64) -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    fn put<const N: usize>(v: &mut [u8], at: usize, b: [u8; N]) {
        v[at..at + N].copy_from_slice(&b);
    }

    #[test]
    fn a_kernel_that_is_not_relocatable_runs_at_its_preferred_address() {
        let mut v = fake_bzimage(4096, 0x40_0000);
        v[0x234] = 0;
        put(&mut v, 0x230, 0x1000u32.to_le_bytes()); // kernel_alignment 4 KiB
        let info = parse_bzimage(&v).expect("accepted");
        // Relocatable, it would run at 1 MiB aligned up (and not below pref_address); not
        // relocatable, exactly at pref_address.
        assert_eq!(info.footprint(MIB).unwrap().0, 0x100_0000);
    }

    /// A minimal well-formed bzImage: 4 setup sectors plus the boot sector, then `kernel_len`
    /// bytes of protected-mode "kernel" (a byte pattern), protocol 2.15.
    fn fake_bzimage(kernel_len: usize, init_size: u32) -> Vec<u8> {
        let setup = 5 * 512;
        let mut v = vec![0u8; setup + kernel_len];
        v[0x1f1] = 4; // setup_sects
        put(&mut v, 0x1f4, ((kernel_len / 16) as u32).to_le_bytes()); // syssize
        put(&mut v, 0x1fe, 0xaa55u16.to_le_bytes());
        put(&mut v, 0x200, [0xeb, 0x6a]); // jmp to 0x26c: the whole 2.15 header
        put(&mut v, 0x202, *b"HdrS");
        put(&mut v, 0x206, 0x020fu16.to_le_bytes());
        v[0x211] = LOADED_HIGH;
        put(&mut v, 0x214, 0x10_0000u32.to_le_bytes()); // code32_start
        put(&mut v, 0x22c, 0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        put(&mut v, 0x230, 0x20_0000u32.to_le_bytes()); // kernel_alignment
        v[0x234] = 1; // relocatable
        put(&mut v, 0x236, 0x7fu16.to_le_bytes()); // xloadflags
        put(&mut v, 0x238, 2047u32.to_le_bytes()); // cmdline_size
        put(&mut v, 0x248, 0x100u32.to_le_bytes()); // payload_offset
        put(&mut v, 0x24c, 0x200u32.to_le_bytes()); // payload_length
        put(&mut v, 0x258, 0x100_0000u64.to_le_bytes()); // pref_address
        put(&mut v, 0x260, init_size.to_le_bytes());
        for (i, b) in v[setup..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        v
    }

    fn zero_page(m: &GuestMemory) -> boot_params {
        m.read_obj(GuestAddress(layout::ZERO_PAGE)).unwrap()
    }

    fn e820_of(p: &boot_params) -> Vec<(u64, u64, u32)> {
        let n = p.e820_entries as usize;
        let table = p.e820_table;
        table[..n]
            .iter()
            .map(|e| {
                let (a, s, t) = (e.addr, e.size, e.r#type);
                (a, s, t)
            })
            .collect()
    }

    fn cstr(m: &GuestMemory, at: u64) -> String {
        let mut b = vec![0u8; 4097];
        m.read_slice(&mut b, GuestAddress(at)).unwrap();
        let n = b.iter().position(|&c| c == 0).expect("NUL-terminated");
        String::from_utf8(b[..n].to_vec()).unwrap()
    }

    fn boot<'a>(kernel: &'a [u8], initrd: Option<&'a [u8]>, cmdline: &'a str) -> LinuxBoot<'a> {
        static ACPI: std::sync::LazyLock<AcpiConfig> =
            std::sync::LazyLock::new(|| AcpiConfig::new(2));
        LinuxBoot {
            kernel,
            initramfs: initrd,
            cmdline,
            acpi: &ACPI,
        }
    }

    fn err(m: &GuestMemory, b: &LinuxBoot) -> String {
        load_linux(m, b).unwrap_err().to_string()
    }

    /// Sanity rules for an e820 map: sorted, disjoint, the boot structures and the kernel in RAM,
    /// the BIOS area reserved.
    fn check_e820(map: &[(u64, u64, u32)], kernel_end: u64) {
        for w in map.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{map:#x?}");
        }
        let ram = |a: u64, b: u64| {
            map.iter()
                .any(|&(s, l, t)| t == E820_RAM && s <= a && b <= s + l)
        };
        assert!(ram(0, layout::CMDLINE + 4096), "low boot structures in RAM");
        assert!(ram(MIB, kernel_end), "kernel in RAM");
        assert!(map
            .iter()
            .any(|&(s, l, t)| t == E820_RESERVED && s <= layout::BIOS_AREA_START && s + l >= MIB));
        assert!(!map
            .iter()
            .any(|&(s, l, t)| t == E820_RAM && s < MIB && s + l > layout::EBDA_START));
    }

    #[test]
    fn loads_a_bzimage() {
        let m = mem(128 * MIB);
        let img = fake_bzimage(0x1_0000, 0x40_0000);
        let initrd = vec![0x5au8; 10_000];
        let s = load_linux(&m, &boot(&img, Some(&initrd), "console=ttyS0 quiet")).unwrap();

        assert_eq!(s.rip, 0x10_0200);
        assert_eq!(s.gprs[gpr::RSI], layout::ZERO_PAGE);
        assert_eq!(
            (s.cs.selector, s.ds.selector, s.ss.selector),
            (0x10, 0x18, 0x18)
        );
        assert!(s.cs.l && s.efer & bits::EFER_LMA != 0 && s.cr0 & bits::CR0_PG != 0);
        assert_eq!(s.rflags & bits::RFLAGS_IF, 0);
        assert_eq!(s.gdt.base, layout::GDT);

        // The protected-mode kernel is at 1 MiB.
        let mut k = vec![0u8; 0x1_0000];
        m.read_slice(&mut k, GuestAddress(MIB)).unwrap();
        assert_eq!(&k[..], &img[5 * 512..]);

        let p = zero_page(&m);
        let h = p.hdr;
        assert_eq!(h.type_of_loader, 0xff);
        assert_eq!((h.boot_flag, h.header), (0xaa55, HDRS_MAGIC));
        assert_eq!({ h.code32_start }, 0x10_0000);
        assert_eq!({ h.kernel_alignment }, 0x20_0000);
        assert_eq!({ h.init_size }, 0x40_0000);
        assert_eq!(h.cmd_line_ptr as u64, layout::CMDLINE);
        assert_eq!({ p.ext_cmd_line_ptr }, 0);
        assert_eq!(cstr(&m, layout::CMDLINE), "console=ttyS0 quiet");
        assert_eq!({ h.ramdisk_size }, 10_000);
        let rd = h.ramdisk_image as u64;
        assert!(rd.is_multiple_of(0x1000));
        // As high as possible: the last page-aligned spot below the end of RAM.
        assert_eq!(rd, (128 * MIB - 10_000) & !0xfff);
        assert!(
            rd >= 0x100_0000 + 0x40_0000,
            "above the decompression buffer"
        );
        let mut r = vec![0u8; 10_000];
        m.read_slice(&mut r, GuestAddress(rd)).unwrap();
        assert_eq!(r, initrd);
        assert_eq!((p.ext_ramdisk_image, p.ext_ramdisk_size), (0, 0));
        assert_eq!(p.sentinel, 0);

        check_e820(&e820_of(&p), 0x140_0000);
        // The RSDP in boot_params is the one the legacy scan finds, and its tables parse.
        let rsdp = p.acpi_rsdp_addr;
        assert_eq!(scan_rsdp(&m), vec![rsdp]);
        let tables = walk(&m, rsdp);
        let fadt = table(&m, tables[0].1, b"FACP");
        let dsdt = table(
            &m,
            u64::from_le_bytes(fadt[140..148].try_into().unwrap()),
            b"DSDT",
        );
        assert_eq!(s5(&dsdt).0, 5);

        // BIOS data area: EBDA at 0x9fc00, 639 KiB of base memory.
        let ebda: u16 = m.read_obj(GuestAddress(0x40e)).unwrap();
        let base: u16 = m.read_obj(GuestAddress(0x413)).unwrap();
        assert_eq!((ebda, base), (0x9fc0, 639));
    }

    #[test]
    fn memory_above_the_hole() {
        // 5 GiB laid out as janus-vmm does: 3 GiB from 0, 2 GiB from 4 GiB (sparse host mappings).
        const GIB: u64 = 1 << 30;
        let m = GuestMemory::from_ranges(&[
            (GuestAddress(0), 3 * GIB as usize),
            (GuestAddress(4 * GIB), 2 * GIB as usize),
        ])
        .unwrap();
        let img = fake_bzimage(0x1000, 0x40_0000);
        let initrd = vec![9u8; 3 * MIB as usize];
        load_linux(&m, &boot(&img, Some(&initrd), "")).unwrap();
        let p = zero_page(&m);
        let map = e820_of(&p);
        check_e820(&map, 0x140_0000);
        let ram: Vec<_> = map.iter().filter(|e| e.2 == E820_RAM).collect();
        assert_eq!(
            ram.iter().map(|e| (e.0, e.0 + e.1)).collect::<Vec<_>>(),
            vec![(0, 0x9_fc00), (MIB, 3 * GIB), (4 * GIB, 6 * GIB)]
        );
        // initrd_addr_max (2 GiB - 1) wins over the end of low RAM.
        let h = p.hdr;
        assert_eq!(h.ramdisk_image as u64, 2 * GIB - 3 * MIB);
        assert_eq!({ p.ext_ramdisk_image }, 0);
    }

    #[test]
    fn no_initramfs_means_zero_ramdisk_fields() {
        let m = mem(64 * MIB);
        let img = fake_bzimage(0x1000, 0x40_0000);
        for initrd in [None, Some(&[][..])] {
            load_linux(&m, &boot(&img, initrd, "")).unwrap();
            let h = zero_page(&m).hdr;
            assert_eq!((h.ramdisk_image, h.ramdisk_size), (0, 0));
            assert_eq!(cstr(&m, layout::CMDLINE), "");
        }
    }

    #[test]
    fn initramfs_respects_initrd_addr_max() {
        let m = mem(256 * MIB);
        let mut img = fake_bzimage(0x1000, 0x40_0000);
        put(&mut img, 0x22c, (64 * MIB as u32 - 1).to_le_bytes());
        let initrd = vec![1u8; 3 * MIB as usize + 5];
        load_linux(&m, &boot(&img, Some(&initrd), "")).unwrap();
        let h = zero_page(&m).hdr;
        let (at, len) = (h.ramdisk_image as u64, h.ramdisk_size as u64);
        assert!(at + len <= 64 * MIB);
        assert_eq!(at, (64 * MIB - len) & !0xfff);
    }

    #[test]
    fn initramfs_that_does_not_fit_is_an_error() {
        let m = mem(64 * MIB);
        // The kernel decompresses into 16 MiB .. 48 MiB; 20 MiB do not fit above that.
        let img = fake_bzimage(0x1000, 32 * MIB as u32);
        let big = vec![0u8; 20 * MIB as usize];
        let e = err(&m, &boot(&img, Some(&big), ""));
        assert!(
            e.starts_with("initramfs:") && e.contains("0x3000000"),
            "{e}"
        );
        // 15 MiB do, just above the buffer.
        let fits = vec![0u8; 15 * MIB as usize];
        load_linux(&m, &boot(&img, Some(&fits), "")).unwrap();
        assert!(zero_page(&m).hdr.ramdisk_image as u64 >= 48 * MIB);
        // The limit below the initramfs' end leaves no room at all.
        let mut low = img.clone();
        put(&mut low, 0x22c, (40 * MIB as u32).to_le_bytes());
        let e = err(&m, &boot(&low, Some(&fits), ""));
        assert!(e.starts_with("initramfs:"), "{e}");
    }

    #[test]
    fn kernel_footprint_must_fit() {
        let img = fake_bzimage(0x1000, 0x800_0000); // 128 MiB from 16 MiB
        let e = err(&mem(64 * MIB), &boot(&img, None, ""));
        assert!(e.contains("too small"), "{e}");
        let e = err(&mem(2 * MIB), &boot(&img, None, ""));
        assert!(e.contains("too small"), "{e}");
    }

    #[test]
    fn cmdline_limits() {
        let m = mem(64 * MIB);
        let mut img = fake_bzimage(0x1000, 0x40_0000);
        let ok = "x".repeat(2047);
        load_linux(&m, &boot(&img, None, &ok)).unwrap();
        assert_eq!(cstr(&m, layout::CMDLINE), ok);
        let long = "x".repeat(2048);
        assert!(matches!(
            load_linux(&m, &boot(&img, None, &long)),
            Err(BootError::CmdlineTooLong {
                len: 2048,
                max: 2047
            })
        ));
        // A kernel that claims more than Janus has room for gets Janus's limit.
        put(&mut img, 0x238, 1_000_000u32.to_le_bytes());
        let huge = "x".repeat(layout::CMDLINE_MAX + 1);
        assert!(matches!(
            load_linux(&m, &boot(&img, None, &huge)),
            Err(BootError::CmdlineTooLong {
                max: layout::CMDLINE_MAX,
                ..
            })
        ));
    }

    #[test]
    fn broken_bzimages_are_reported() {
        let m = mem(64 * MIB);
        let good = fake_bzimage(0x1000, 0x40_0000);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "truncated"),
            (good[..0x230].to_vec(), "truncated"),
            (good[..5 * 512].to_vec(), "truncated"),
            (good[..good.len() - 16].to_vec(), "truncated"),
            (
                {
                    let mut v = good.clone();
                    v[0x202] = b'X';
                    v
                },
                "HdrS",
            ),
            (b"MZ\x90\x00 a PE file, not a kernel".repeat(40), "HdrS"),
            (
                {
                    let mut v = good.clone();
                    put(&mut v, 0x1fe, [0, 0]);
                    v
                },
                "boot flag",
            ),
            (
                {
                    let mut v = good.clone();
                    put(&mut v, 0x206, 0x0209u16.to_le_bytes());
                    v
                },
                "too old",
            ),
            (
                {
                    let mut v = good.clone();
                    v[0x211] = 0;
                    v
                },
                "zImage",
            ),
            (
                {
                    let mut v = good.clone();
                    put(&mut v, 0x236, 0u16.to_le_bytes());
                    v
                },
                "64-bit",
            ),
            (
                {
                    let mut v = good.clone();
                    v[0x234] = 0;
                    put(&mut v, 0x258, 0x8000u64.to_le_bytes());
                    v
                },
                "not relocatable and prefers 0x8000",
            ),
            (
                {
                    let mut v = good.clone();
                    put(&mut v, 0x230, 0x3000u32.to_le_bytes());
                    v
                },
                "kernel_alignment",
            ),
            (
                {
                    let mut v = good.clone();
                    put(&mut v, 0x24c, 0x10_0000u32.to_le_bytes());
                    v
                },
                "payload",
            ),
            (
                {
                    let mut v = good.clone();
                    put(&mut v, 0x260, 0x10u32.to_le_bytes());
                    v
                },
                "init_size",
            ),
            (
                {
                    let mut v = good.clone();
                    v[0x1f1] = 0xff; // 128 KiB of setup code in an 8 KiB file
                    v
                },
                "truncated",
            ),
            (
                {
                    let mut v = good.clone();
                    v[0x201] = 0x10; // header ends at 0x212
                    v
                },
                "too short",
            ),
        ];
        for (img, want) in cases {
            let e = err(&m, &boot(&img, None, ""));
            assert!(e.starts_with("kernel image: "), "{e}");
            assert!(e.contains(want), "wanted {want:?} in {e:?}");
            assert!(!e.contains('\n'));
        }
    }

    /// Every single-byte corruption of the header and every truncation gives an error or a
    /// successful load, never a panic, and never a write outside guest RAM.
    #[test]
    fn corrupted_headers_never_panic() {
        let m = mem(64 * MIB);
        let good = fake_bzimage(0x1000, 0x40_0000);
        for at in 0x1f1..0x270 {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut img = good.clone();
                img[at] = v;
                let _ = load_linux(&m, &boot(&img, Some(&[1, 2, 3]), "x"));
            }
        }
        for len in (0..good.len()).step_by(97) {
            assert!(load_linux(&m, &boot(&good[..len], None, "")).is_err());
        }
    }

    // --- PVH ---

    /// An ELF64 image with one PT_LOAD segment at `paddr` and a PT_NOTE holding `notes`.
    fn pvh_elf(paddr: u64, code: &[u8], memsz: u64, notes: &[u8]) -> Vec<u8> {
        let (ehdr, phdr) = (64usize, 56usize);
        let code_off = ehdr + 2 * phdr;
        let note_off = code_off + code.len();
        let mut v = vec![0u8; code_off];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[5] = 1;
        v[6] = 1;
        put(&mut v, 16, 2u16.to_le_bytes());
        put(&mut v, 18, 62u16.to_le_bytes());
        put(&mut v, 20, 1u32.to_le_bytes());
        put(&mut v, 24, paddr.to_le_bytes());
        put(&mut v, 32, (ehdr as u64).to_le_bytes());
        put(&mut v, 52, (ehdr as u16).to_le_bytes());
        put(&mut v, 54, (phdr as u16).to_le_bytes());
        put(&mut v, 56, 2u16.to_le_bytes());
        let p = ehdr;
        put(&mut v, p, 1u32.to_le_bytes()); // PT_LOAD
        put(&mut v, p + 4, 5u32.to_le_bytes());
        put(&mut v, p + 8, (code_off as u64).to_le_bytes());
        put(&mut v, p + 16, paddr.to_le_bytes());
        put(&mut v, p + 24, paddr.to_le_bytes());
        put(&mut v, p + 32, (code.len() as u64).to_le_bytes());
        put(&mut v, p + 40, memsz.to_le_bytes());
        let p = ehdr + phdr;
        put(&mut v, p, 4u32.to_le_bytes()); // PT_NOTE
        put(&mut v, p + 8, (note_off as u64).to_le_bytes());
        put(&mut v, p + 32, (notes.len() as u64).to_le_bytes());
        put(&mut v, p + 40, (notes.len() as u64).to_le_bytes());
        v.extend_from_slice(code);
        v.extend_from_slice(notes);
        v
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(name);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v.extend_from_slice(desc);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    #[test]
    fn loads_a_pvh_vmlinux() {
        let m = mem(64 * MIB);
        let mut notes = note(b"GNU\0", 3, &[0xaa; 20]);
        notes.extend(note(b"Xen\0", 18, &0x100_0040u32.to_le_bytes()));
        let img = pvh_elf(0x100_0000, &[0xf4; 0x100], 0x20_0000, &notes);
        let initrd = vec![7u8; 5000];
        let s = load_linux(&m, &boot(&img, Some(&initrd), "console=ttyS0")).unwrap();

        assert_eq!(s.rip, 0x100_0040);
        assert_eq!(s.gprs[gpr::RBX], layout::PVH_START_INFO);
        assert!(s.cs.db && !s.cs.l && s.cs.base == 0 && s.cs.limit == 0xffff_ffff);
        assert_eq!(s.cr0 & bits::CR0_PG, 0);
        assert_ne!(s.cr0 & bits::CR0_PE, 0);
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!(s.rflags & bits::RFLAGS_IF, 0);
        assert!(s.summary().contains("mode=protected"), "{}", s.summary());

        let si: hvm_start_info = m.read_obj(GuestAddress(layout::PVH_START_INFO)).unwrap();
        assert_eq!((si.magic, si.version), (XEN_HVM_START_MAGIC, 1));
        assert_eq!(cstr(&m, si.cmdline_paddr), "console=ttyS0");
        assert_eq!(scan_rsdp(&m), vec![si.rsdp_paddr]);
        assert_eq!(si.nr_modules, 1);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(si.modlist_paddr)).unwrap();
        assert_eq!(module.size, 5000);
        assert!(module.paddr >= 0x120_0000 && module.paddr.is_multiple_of(0x1000));
        let map: Vec<(u64, u64, u32)> = (0..si.memmap_entries as u64)
            .map(|i| {
                let e: hvm_memmap_table_entry =
                    m.read_obj(GuestAddress(si.memmap_paddr + 24 * i)).unwrap();
                (e.addr, e.size, e.type_)
            })
            .collect();
        check_e820(&map, 0x120_0000);
        assert!(map.iter().any(|&(a, l, t)| t == E820_RAM
            && a <= module.paddr
            && module.paddr + module.size <= a + l));
    }

    #[test]
    fn elf_without_pvh_note_is_refused() {
        let m = mem(64 * MIB);
        let img = pvh_elf(0x100_0000, &[0xf4], 0x1000, &note(b"GNU\0", 3, &[0; 8]));
        let e = err(&m, &boot(&img, None, ""));
        assert!(e.contains("PVH"), "{e}");
        // An entry note pointing outside the kernel.
        let img = pvh_elf(
            0x100_0000,
            &[0xf4],
            0x1000,
            &note(b"Xen\0", 18, &0x5000u32.to_le_bytes()),
        );
        let e = err(&m, &boot(&img, None, ""));
        assert!(e.contains("not inside"), "{e}");
    }

    // --- the real kernel ---

    fn asset(name: &str) -> Option<Vec<u8>> {
        let dir = std::env::var_os("JANUS_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/guest")
            });
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "skipped: {} is missing ({e}); run scripts/guest-assets.sh",
                    path.display()
                );
                None
            }
        }
    }

    #[test]
    fn loads_debian_kernel() {
        let (Some(kernel), Some(initrd)) = (asset("vmlinuz"), asset("initramfs.cpio.gz")) else {
            return;
        };
        let m = mem(512 * MIB);
        let cmdline = "console=ttyS0 panic=-1 janus.cmd=ZWNobyBoaQo=";
        let s = load_linux(&m, &boot(&kernel, Some(&initrd), cmdline)).unwrap();
        let info = parse_bzimage(&kernel).unwrap();
        assert_eq!(s.rip, 0x10_0200);
        assert_eq!(s.gprs[gpr::RSI], layout::ZERO_PAGE);

        let p = zero_page(&m);
        let h = p.hdr;
        assert_eq!(h.type_of_loader, 0xff);
        assert!(h.version >= 0x020f, "Debian 6.1 speaks protocol 2.15");
        assert_eq!({ h.code32_start }, 0x10_0000);
        assert_eq!(cstr(&m, h.cmd_line_ptr as u64), cmdline);
        assert_eq!(h.ramdisk_size as usize, initrd.len());
        let rd = h.ramdisk_image as u64;
        let mut back = vec![0u8; initrd.len()];
        m.read_slice(&mut back, GuestAddress(rd)).unwrap();
        assert!(back == initrd);
        let (_, run_end) = info.footprint(MIB).unwrap();
        assert!(
            rd >= run_end,
            "initramfs {rd:#x} inside the kernel's buffer (..{run_end:#x})"
        );
        assert!(rd + initrd.len() as u64 <= 512 * MIB);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe_0000);
        check_e820(&e820_of(&p), run_end);
        let total: u64 = e820_of(&p)
            .iter()
            .filter(|e| e.2 == E820_RAM)
            .map(|e| e.1)
            .sum();
        assert_eq!(total, 512 * MIB - (MIB - layout::EBDA_START));

        // The protected-mode kernel sits at 1 MiB, byte for byte.
        let mut k = vec![0u8; info.kernel_len];
        m.read_slice(&mut k, GuestAddress(MIB)).unwrap();
        assert!(k[..] == kernel[info.setup_len..]);
        // The 64-bit entry is startup_64, 0x200 into the image; Linux's starts with cld; cli.
        assert_eq!(&k[0x200..0x202], &[0xfc, 0xfa]);
    }
}

//! Multiboot v1 kernels, as QEMU's `-kernel` loads them: an ELF image (32- or 64-bit, loaded
//! by its program headers' physical addresses) or any image whose header has the a.out kludge
//! (bit 16: the load addresses are in the header), entered in 32-bit protected mode with
//! paging off, EAX = 0x2BADB002 and EBX = the Multiboot information: memory sizes, the memory
//! map, the command line, the initramfs as a module, and the loader's name.
//!
//! Written from the Multiboot 0.6.96 specification; the information lives below 1 MiB, in the
//! page the PVH start info uses for Linux (a kernel is one or the other).

use crate::acpi::{self, AcpiConfig};
use crate::e820;
use crate::gdt::{self, linux as sel};
use crate::{elf, layout, linux, BootError, Result};
use janus_engine::cpu::gpr;
use janus_engine::{CpuState, GuestMemory};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// The header's magic, and what EAX holds at entry.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header lies 4-byte aligned in the first 8 KiB.
const SEARCH: usize = 8192;
/// Header flags: modules page-aligned, memory information, video mode, a.out kludge.
const PAGE_ALIGN: u32 = 1 << 0;
const MEMORY_INFO: u32 = 1 << 1;
const VIDEO_MODE: u32 = 1 << 2;
const AOUT_KLUDGE: u32 = 1 << 16;
/// Information flags: mem_lower/upper, cmdline, mods, mmap, boot_loader_name.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;

/// Where the boot information goes (below 1 MiB, clear of the GDT, stack and command line).
const INFO: u64 = layout::PVH_START_INFO;
const MODS: u64 = INFO + 0x80;
const LOADER_NAME: u64 = INFO + 0xa0;
const MODULE_STRING: u64 = INFO + 0xc0;
const MMAP: u64 = INFO + 0x100;
const MMAP_MAX: usize = ((layout::ZERO_PAGE - MMAP) / 24) as usize;

/// A Multiboot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Offset of the header in the file.
    pub offset: usize,
    pub flags: u32,
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The image's Multiboot header, if it has one (magic and checksum right).
pub fn find_header(image: &[u8]) -> Option<Header> {
    let end = image.len().min(SEARCH);
    (0..end.saturating_sub(11)).step_by(4).find_map(|o| {
        let (magic, flags, sum) = (
            u32_at(image, o)?,
            u32_at(image, o + 4)?,
            u32_at(image, o + 8)?,
        );
        if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            return None;
        }
        let at = |k: usize| u32_at(image, o + 12 + 4 * k).unwrap_or(0);
        Some(Header {
            offset: o,
            flags,
            header_addr: at(0),
            load_addr: at(1),
            load_end_addr: at(2),
            bss_end_addr: at(3),
            entry_addr: at(4),
        })
    })
}

fn bad(msg: impl Into<String>) -> BootError {
    BootError::Kernel(msg.into())
}

/// What a Multiboot boot needs.
pub struct MultibootBoot<'a> {
    pub kernel: &'a [u8],
    pub cmdline: &'a str,
    /// The initramfs, handed over as the one module.
    pub module: Option<&'a [u8]>,
    pub acpi: &'a AcpiConfig,
}

/// The image laid out as the a.out kludge says: (segment, entry).
fn aout_layout(image: &[u8], h: &Header) -> Result<(elf::ElfInfo, u64)> {
    if h.load_addr > h.header_addr {
        return Err(bad("Multiboot header: load_addr lies above header_addr"));
    }
    let start = (h.offset as u64)
        .checked_sub((h.header_addr - h.load_addr) as u64)
        .ok_or_else(|| bad("Multiboot header: load_addr lies before the start of the file"))?;
    let file_end = if h.load_end_addr == 0 {
        image.len() as u64
    } else {
        let len = h
            .load_end_addr
            .checked_sub(h.load_addr)
            .ok_or_else(|| bad("Multiboot header: load_end_addr below load_addr"))?;
        start + len as u64
    };
    if file_end > image.len() as u64 {
        return Err(bad(
            "Multiboot header: the image to load reaches past the file's end",
        ));
    }
    let filesz = file_end - start;
    let memsz = if h.bss_end_addr == 0 {
        filesz
    } else {
        (h.bss_end_addr as u64)
            .checked_sub(h.load_addr as u64)
            .filter(|&m| m >= filesz)
            .ok_or_else(|| bad("Multiboot header: bss_end_addr below the loaded image"))?
    };
    let seg = elf::LoadSegment {
        paddr: h.load_addr as u64,
        offset: start,
        filesz,
        memsz,
    };
    Ok((
        elf::ElfInfo {
            entry: h.entry_addr as u64,
            segments: vec![seg],
        },
        h.entry_addr as u64,
    ))
}

/// Loads a Multiboot kernel, its module and boot information; the entry state.
pub fn load_multiboot(mem: &GuestMemory, boot: &MultibootBoot) -> Result<CpuState> {
    let h = find_header(boot.kernel).ok_or_else(|| bad("no Multiboot header"))?;
    // The low 16 flags are requirements: refuse what this loader does not provide.
    let required = h.flags & 0xffff;
    if required & !(PAGE_ALIGN | MEMORY_INFO | VIDEO_MODE) != 0 {
        return Err(bad(format!(
            "the Multiboot kernel requires features Janus does not provide (flags {:#x})",
            h.flags
        )));
    }
    let (info, entry) = if h.flags & AOUT_KLUDGE != 0 {
        aout_layout(boot.kernel, &h)?
    } else {
        let info = elf::parse_32_or_64(boot.kernel)
            .map_err(|e| bad(format!("Multiboot kernel without the a.out kludge: {e}")))?;
        let entry = info.entry;
        (info, entry)
    };
    elf::check_placement(&info, mem)?;
    elf::load_segments(mem, boot.kernel, &info)?;
    let kernel_end = info.end();

    let regions = e820::ram_regions(mem);
    let map = e820::memory_map(&regions)?;
    if map.len() > MMAP_MAX {
        return Err(bad(format!("{} memory map entries do not fit", map.len())));
    }
    let mut flags = INFO_MEMORY | INFO_MMAP | INFO_LOADER_NAME | INFO_CMDLINE;
    let mut mbi = [0u32; 22];
    // KiB of conventional memory, and of memory from 1 MiB to the first hole.
    mbi[1] = (layout::EBDA_START >> 10) as u32;
    let upper = map
        .iter()
        .find(|e| {
            e.kind == e820::E820_RAM
                && e.addr <= layout::HIMEM_START
                && e.end() > layout::HIMEM_START
        })
        .map_or(0, |e| (e.end() - layout::HIMEM_START) >> 10);
    mbi[2] = upper.min(u32::MAX as u64) as u32;
    if boot.cmdline.len() > layout::CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong {
            len: boot.cmdline.len(),
            max: layout::CMDLINE_MAX,
        });
    }
    let mut cmdline = boot.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    mem.write_slice(&cmdline, GuestAddress(layout::CMDLINE))?;
    mbi[4] = layout::CMDLINE as u32;
    if let Some(module) = boot.module {
        let start = kernel_end.next_multiple_of(4096);
        let end = start + module.len() as u64;
        let fits = end <= 0xffff_ffff && mem.check_range(GuestAddress(start), module.len().max(1));
        if !fits {
            return Err(BootError::Initramfs(format!(
                "{} bytes do not fit in guest RAM after the kernel (at {start:#x})",
                module.len()
            )));
        }
        mem.write_slice(module, GuestAddress(start))?;
        mem.write_slice(b"initramfs\0", GuestAddress(MODULE_STRING))?;
        for (k, v) in [start as u32, end as u32, MODULE_STRING as u32, 0]
            .iter()
            .enumerate()
        {
            mem.write_obj(*v, GuestAddress(MODS + 4 * k as u64))?;
        }
        flags |= INFO_MODS;
        mbi[5] = 1;
        mbi[6] = MODS as u32;
    }
    for (i, e) in map.iter().enumerate() {
        let at = MMAP + 24 * i as u64;
        // size (of the rest of the entry), base, length, type.
        mem.write_obj(20u32, GuestAddress(at))?;
        mem.write_obj(e.addr, GuestAddress(at + 4))?;
        mem.write_obj(e.size, GuestAddress(at + 12))?;
        mem.write_obj(e.kind, GuestAddress(at + 20))?;
    }
    mbi[11] = (24 * map.len()) as u32;
    mbi[12] = MMAP as u32;
    mem.write_slice(b"Janus\0", GuestAddress(LOADER_NAME))?;
    mbi[16] = LOADER_NAME as u32;
    mbi[0] = flags;
    for (k, v) in mbi.iter().enumerate() {
        mem.write_obj(*v, GuestAddress(INFO + 4 * k as u64))?;
    }

    acpi::write_acpi(mem, boot.acpi)?;
    linux::write_bios_data_area(mem)?;
    gdt::write_entries(mem, &sel::ENTRIES)?;
    let entry = u32::try_from(entry).map_err(|_| bad("Multiboot entry point above 4 GiB"))?;
    let mut s = linux::pvh_state(entry);
    s.gprs[gpr::RAX] = BOOTLOADER_MAGIC as u64;
    s.gprs[gpr::RBX] = INFO;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u32, addrs: [u32; 5]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        ] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        for a in addrs {
            v.extend_from_slice(&a.to_le_bytes());
        }
        v
    }

    #[test]
    fn finds_a_header_with_the_right_checksum_only() {
        let mut image = vec![0u8; 64];
        image.extend(header(AOUT_KLUDGE, [0x10_0040, 0x10_0000, 0, 0, 0x10_0060]));
        let h = find_header(&image).expect("header");
        assert_eq!(
            (h.offset, h.load_addr, h.entry_addr),
            (64, 0x10_0000, 0x10_0060)
        );
        image[64 + 8] ^= 1;
        assert!(find_header(&image).is_none(), "bad checksum");
        assert!(find_header(&[0u8; 100]).is_none());
    }

    #[test]
    fn aout_layout_checks_its_addresses() {
        let image = header(AOUT_KLUDGE, [0x10_0000, 0x10_0000, 0x10_1000, 0, 0x10_0020]);
        let h = find_header(&image).unwrap();
        assert!(aout_layout(&image, &h).is_err(), "load_end past the file");
        let image = header(AOUT_KLUDGE, [0x10_0000, 0x10_0010, 0, 0, 0x10_0020]);
        let h = find_header(&image).unwrap();
        assert!(
            aout_layout(&image, &h).is_err(),
            "load_addr above header_addr"
        );
        let image = header(AOUT_KLUDGE, [0x10_0000, 0x10_0000, 0, 0x10_2000, 0x10_0020]);
        let h = find_header(&image).unwrap();
        let (info, entry) = aout_layout(&image, &h).unwrap();
        assert_eq!(entry, 0x10_0020);
        assert_eq!(info.segments[0].filesz, image.len() as u64);
        assert_eq!(info.segments[0].memsz, 0x2000);
    }
}

//! ELF guest images: validated here, copied into guest memory by linux-loader.
//!
//! linux-loader checks the header and copies each segment's file bytes, but it does not check
//! where a segment's memory image ends or that segments stay clear of the boot structures the
//! VMM writes below 1 MiB. A kernel image is user input, so this module checks every loadable
//! segment first and reports the first problem in one line.

use crate::{layout, BootError, Result};
use janus_engine::GuestMemory;
use linux_loader::loader::{Elf, KernelLoader};
use std::io::Cursor;
use vm_memory::{GuestAddress, GuestMemoryBackend};

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
const EM_386: u16 = 3;
const PHDR32_SIZE: usize = 32;

/// A loadable segment as the program header describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// The facts of an ELF image that loading depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    pub entry: u64,
    pub segments: Vec<LoadSegment>,
}

impl ElfInfo {
    /// Where the last segment's memory image ends (1 MiB with no segments).
    pub fn end(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(layout::HIMEM_START)
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

fn bad(msg: impl Into<String>) -> BootError {
    BootError::Kernel(msg.into())
}

/// Parses and checks the ELF header and program headers of `image`.
pub fn parse(image: &[u8]) -> Result<ElfInfo> {
    if image.len() < EHDR_SIZE || &image[..4] != b"\x7fELF" {
        return Err(bad("not an ELF file (no ELF magic number)"));
    }
    if image[4] != 2 || image[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let machine = u16_at(image, 18);
    if machine != EM_X86_64 {
        return Err(bad(format!("ELF machine {machine} is not x86-64 (62)")));
    }
    let entry = u64_at(image, 24);
    let phoff = u64_at(image, 32);
    let phentsize = u16_at(image, 54) as usize;
    let phnum = u16_at(image, 56) as usize;
    if phentsize != PHDR_SIZE {
        return Err(bad(format!(
            "program header size {phentsize}, expected {PHDR_SIZE}"
        )));
    }
    let table_end = phoff
        .checked_add((phnum * PHDR_SIZE) as u64)
        .filter(|&end| end <= image.len() as u64)
        .ok_or_else(|| bad("program header table lies outside the file"))?;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let h = &image[phoff as usize + i * PHDR_SIZE..table_end as usize][..PHDR_SIZE];
        if u32_at(h, 0) != PT_LOAD {
            continue;
        }
        let seg = LoadSegment {
            offset: u64_at(h, 8),
            paddr: u64_at(h, 24),
            filesz: u64_at(h, 32),
            memsz: u64_at(h, 40),
        };
        if seg
            .offset
            .checked_add(seg.filesz)
            .is_none_or(|e| e > image.len() as u64)
        {
            return Err(bad(format!("segment {i} reaches past the end of the file")));
        }
        if seg.filesz > seg.memsz {
            return Err(bad(format!(
                "segment {i} has more file bytes than memory bytes"
            )));
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(bad("no loadable segments"));
    }
    Ok(ElfInfo { entry, segments })
}

/// Parses a 32-bit (i386) or 64-bit (x86-64) ELF image's entry point and loadable segments,
/// by physical address (as Multiboot loads them).
pub fn parse_32_or_64(image: &[u8]) -> Result<ElfInfo> {
    if image.len() >= 52 && &image[..4] == b"\x7fELF" && image[4] == 1 {
        if image[5] != 1 {
            return Err(bad("not a little-endian ELF file"));
        }
        let machine = u16_at(image, 18);
        if machine != EM_386 {
            return Err(bad(format!("32-bit ELF machine {machine} is not i386 (3)")));
        }
        let entry = u32_at(image, 24) as u64;
        let phoff = u32_at(image, 28) as usize;
        let phentsize = u16_at(image, 42) as usize;
        let phnum = u16_at(image, 44) as usize;
        if phentsize != PHDR32_SIZE {
            return Err(bad(format!(
                "program header size {phentsize}, expected {PHDR32_SIZE}"
            )));
        }
        let table = image
            .get(phoff..phoff.saturating_add(phnum * PHDR32_SIZE))
            .ok_or_else(|| bad("program header table lies outside the file"))?;
        let mut segments = Vec::new();
        for (i, h) in table.chunks_exact(PHDR32_SIZE).enumerate() {
            if u32_at(h, 0) != PT_LOAD {
                continue;
            }
            let seg = LoadSegment {
                offset: u32_at(h, 4) as u64,
                paddr: u32_at(h, 12) as u64,
                filesz: u32_at(h, 16) as u64,
                memsz: u32_at(h, 20) as u64,
            };
            if seg.offset + seg.filesz > image.len() as u64 || seg.filesz > seg.memsz {
                return Err(bad(format!("segment {i} is inconsistent with the file")));
            }
            segments.push(seg);
        }
        if segments.is_empty() {
            return Err(bad("no loadable segments"));
        }
        return Ok(ElfInfo { entry, segments });
    }
    parse(image)
}

/// Copies each segment's file bytes to its physical address and zeroes the rest of its memory
/// image (after [`check_placement`]).
pub fn load_segments(mem: &GuestMemory, image: &[u8], info: &ElfInfo) -> Result<()> {
    use vm_memory::Bytes;
    for s in &info.segments {
        let file = &image[s.offset as usize..(s.offset + s.filesz) as usize];
        mem.write_slice(file, GuestAddress(s.paddr))?;
        let zeros = vec![0u8; (s.memsz - s.filesz) as usize];
        mem.write_slice(&zeros, GuestAddress(s.paddr + s.filesz))?;
    }
    Ok(())
}

/// Checks that every segment lies in guest RAM above [`layout::HIMEM_START`] and that the
/// entry point is inside a segment.
pub fn check_placement(info: &ElfInfo, mem: &GuestMemory) -> Result<()> {
    for s in &info.segments {
        let end = s
            .paddr
            .checked_add(s.memsz)
            .ok_or_else(|| bad("segment address overflows"))?;
        if s.paddr < layout::HIMEM_START {
            return Err(bad(format!(
                "segment at {:#x} is below {:#x}, where the VMM keeps boot structures",
                s.paddr,
                layout::HIMEM_START
            )));
        }
        let fits = usize::try_from(s.memsz)
            .is_ok_and(|len| len == 0 || mem.check_range(GuestAddress(s.paddr), len));
        if !fits {
            return Err(bad(format!(
                "segment {:#x}..{end:#x} does not fit in guest RAM",
                s.paddr
            )));
        }
    }
    let inside = |s: &LoadSegment| info.entry >= s.paddr && info.entry < s.paddr + s.memsz;
    if !info.segments.iter().any(inside) {
        return Err(bad(format!(
            "entry point {:#x} is not inside any loadable segment",
            info.entry
        )));
    }
    Ok(())
}

/// Loads `image` into `mem` and returns its entry point.
pub fn load(mem: &GuestMemory, image: &[u8]) -> Result<u64> {
    let info = parse(image)?;
    check_placement(&info, mem)?;
    let result = Elf::load(
        mem,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(layout::HIMEM_START)),
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(result.kernel_load.0)
}

/// Wraps raw machine code in a minimal ELF image: one loadable segment of `memsz` bytes at
/// `paddr` (the entry point) holding `code`. For building small test guests.
pub fn image_from_code(paddr: u64, code: &[u8], memsz: u64) -> Vec<u8> {
    let mut v = vec![0u8; EHDR_SIZE + PHDR_SIZE];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2;
    v[5] = 1;
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes());
    v[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&paddr.to_le_bytes());
    v[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
    v[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    v[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    v[56..58].copy_from_slice(&1u16.to_le_bytes());
    let p = EHDR_SIZE;
    v[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    v[p + 4..p + 8].copy_from_slice(&5u32.to_le_bytes());
    let off = (EHDR_SIZE + PHDR_SIZE) as u64;
    v[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
    v[p + 16..p + 24].copy_from_slice(&paddr.to_le_bytes());
    v[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
    v[p + 32..p + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    v[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
    v.extend_from_slice(code);
    v
}

/// Does `image` carry a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), as a Linux vmlinux built
/// with CONFIG_PVH does?
pub fn has_pvh_note(image: &[u8]) -> bool {
    const PT_NOTE: u32 = 4;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    if image.len() < EHDR_SIZE || &image[..4] != b"\x7fELF" || image[4] != 2 {
        return false;
    }
    let phoff = u64_at(image, 32) as usize;
    let phnum = u16_at(image, 56) as usize;
    (0..phnum).any(|i| {
        let Some(h) = image.get(phoff + i * PHDR_SIZE..phoff + (i + 1) * PHDR_SIZE) else {
            return false;
        };
        if u32_at(h, 0) != PT_NOTE {
            return false;
        }
        let (off, len) = (u64_at(h, 8) as usize, u64_at(h, 32) as usize);
        let Some(notes) = image.get(off..off.saturating_add(len)) else {
            return false;
        };
        let mut at = 0;
        while at + 12 <= notes.len() {
            let namesz = u32_at(notes, at) as usize;
            let descsz = u32_at(notes, at + 4) as usize;
            let kind = u32_at(notes, at + 8);
            let name = notes.get(at + 12..at + 12 + namesz).unwrap_or(&[]);
            if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") {
                return true;
            }
            at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap()
    }

    #[test]
    fn loads_valid_image() {
        let img = image_from_code(0x20_0000, &[0xf4, 0x90], 0x1000);
        assert_eq!(load(&mem(), &img).unwrap(), 0x20_0000);
        let mut b = [0u8; 2];
        vm_memory::Bytes::read_slice(&mem(), &mut b, GuestAddress(0x20_0000)).unwrap();
    }

    #[test]
    fn rejects_non_elf() {
        let err = load(
            &mem(),
            b"MZ this is not an elf file at all, but long enough....",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an ELF"), "{err}");
    }

    #[test]
    fn rejects_segment_past_memory() {
        let img = image_from_code(0x70_0000, &[0xf4], 0x20_0000);
        let err = load(&mem(), &img).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
    }

    #[test]
    fn rejects_segment_over_boot_structures() {
        let img = image_from_code(0x8000, &[0xf4], 0x100);
        let err = load(&mem(), &img).unwrap_err().to_string();
        assert!(err.contains("below"), "{err}");
    }

    #[test]
    fn rejects_truncated_segment() {
        let mut img = image_from_code(0x20_0000, &[0xf4; 16], 0x1000);
        img.truncate(img.len() - 8);
        let err = load(&mem(), &img).unwrap_err().to_string();
        assert!(err.contains("past the end of the file"), "{err}");
    }

    #[test]
    fn rejects_truncated_header_table() {
        let img = image_from_code(0x20_0000, &[], 0x1000);
        let err = parse(&img[..EHDR_SIZE + 10]).unwrap_err().to_string();
        assert!(err.contains("outside the file"), "{err}");
    }
}

//! Putting a guest into memory and giving its first vCPU a state to start from: Janus's own ELF
//! guests (direct 64-bit entry), and unmodified Linux (bzImage or PVH vmlinux) with an e820 map
//! and ACPI tables.

pub mod acpi;
pub mod acpi_loader;
pub mod e820;
pub mod elf;
pub mod gdt;
pub mod layout;
pub mod linux;
pub mod multiboot;
pub mod paging;

pub use acpi::{write_acpi, AcpiConfig};
pub use linux::{load_linux, LinuxBoot};

use janus_abi::boot::{BootInfo, BOOT_INFO_MAGIC};
use janus_engine::cpu::{bits, gpr};
use janus_engine::{CpuState, DescriptorTable, GuestMemory};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Errors while loading a guest. Messages name the problem in one line for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("kernel image: {0}")]
    Kernel(String),
    #[error("command line is {len} bytes; at most {max} fit")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("guest memory of {size} bytes is too small (at least {min} bytes are needed)")]
    MemoryTooSmall { size: u64, min: u64 },
    #[error("initramfs: {0}")]
    Initramfs(String),
    #[error("ACPI tables: {0}")]
    Acpi(String),
    #[error("writing boot structures into guest memory failed: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

pub type Result<T> = std::result::Result<T, BootError>;

/// Loads an x86-64 ELF guest and prepares its 64-bit entry: identity page tables for the first
/// 4 GiB, a flat GDT, a [`BootInfo`] in RDI, and the command line.
pub fn load_elf_guest(mem: &GuestMemory, image: &[u8], cmdline: &str) -> Result<CpuState> {
    let size = memory_size(mem);
    if size < layout::MIN_MEMORY {
        return Err(BootError::MemoryTooSmall {
            size,
            min: layout::MIN_MEMORY,
        });
    }
    let entry = elf::load(mem, image)?;
    write_cmdline(mem, cmdline)?;
    let info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        mem_size: size,
        cmdline_gpa: layout::CMDLINE,
        cmdline_len: cmdline.len() as u64,
    };
    write_boot_info(mem, &info)?;
    gdt::write(mem)?;
    paging::write_identity_map(mem)?;
    let mut state = long_mode_state(entry);
    state.gprs[gpr::RDI] = layout::BOOT_INFO;
    Ok(state)
}

/// Total bytes of guest RAM (all regions; there may be a hole below 4 GiB).
pub fn memory_size(mem: &GuestMemory) -> u64 {
    use vm_memory::GuestMemoryRegion;
    mem.iter().map(|r| r.len()).sum()
}

fn write_cmdline(mem: &GuestMemory, cmdline: &str) -> Result<()> {
    if cmdline.len() > layout::CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: layout::CMDLINE_MAX,
        });
    }
    mem.write_slice(cmdline.as_bytes(), GuestAddress(layout::CMDLINE))?;
    Ok(())
}

fn write_boot_info(mem: &GuestMemory, info: &BootInfo) -> Result<()> {
    let fields = [
        info.magic,
        info.mem_size,
        info.cmdline_gpa,
        info.cmdline_len,
    ];
    for (i, v) in fields.iter().enumerate() {
        mem.write_obj(*v, GuestAddress(layout::BOOT_INFO + 8 * i as u64))?;
    }
    Ok(())
}

/// 64-bit long mode with paging on, flat segments from [`gdt`], interrupts off, SSE usable.
pub fn long_mode_state(entry: u64) -> CpuState {
    let mut s = CpuState {
        rip: entry,
        rflags: bits::RFLAGS_RESERVED1,
        cs: gdt::segment(gdt::CODE64),
        ds: gdt::segment(gdt::DATA),
        es: gdt::segment(gdt::DATA),
        fs: gdt::segment(gdt::DATA),
        gs: gdt::segment(gdt::DATA),
        ss: gdt::segment(gdt::DATA),
        tr: gdt::segment(gdt::TSS),
        ldt: gdt::null_ldt(),
        gdt: gdt::register(&gdt::ENTRIES),
        idt: DescriptorTable { base: 0, limit: 0 },
        cr0: bits::CR0_PE
            | bits::CR0_MP
            | bits::CR0_ET
            | bits::CR0_NE
            | bits::CR0_WP
            | bits::CR0_PG,
        cr3: layout::PML4,
        cr4: bits::CR4_PAE | bits::CR4_OSFXSR | bits::CR4_OSXMMEXCPT,
        efer: bits::EFER_LME | bits::EFER_LMA | bits::EFER_NXE,
        ..Default::default()
    };
    s.gprs[gpr::RSP] = layout::BOOT_STACK_TOP;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(size: usize) -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    #[test]
    fn rejects_tiny_memory() {
        let m = mem(1 << 20);
        assert!(matches!(
            load_elf_guest(&m, &[], ""),
            Err(BootError::MemoryTooSmall { .. })
        ));
    }

    #[test]
    fn rejects_long_cmdline() {
        let m = mem(8 << 20);
        let long = "x".repeat(layout::CMDLINE_MAX + 1);
        assert!(matches!(
            write_cmdline(&m, &long),
            Err(BootError::CmdlineTooLong { .. })
        ));
    }

    #[test]
    fn boot_info_layout_matches_abi() {
        let m = mem(8 << 20);
        let info = BootInfo {
            magic: BOOT_INFO_MAGIC,
            mem_size: 8 << 20,
            cmdline_gpa: layout::CMDLINE,
            cmdline_len: 3,
        };
        write_boot_info(&m, &info).unwrap();
        let magic: u64 = m.read_obj(GuestAddress(layout::BOOT_INFO)).unwrap();
        let len: u64 = m.read_obj(GuestAddress(layout::BOOT_INFO + 24)).unwrap();
        assert_eq!(magic, BOOT_INFO_MAGIC);
        assert_eq!(len, 3);
    }

    #[test]
    fn long_mode_state_is_consistent() {
        let s = long_mode_state(0x10_0000);
        assert!(s.cs.l && !s.cs.db);
        assert_eq!(s.efer & bits::EFER_LMA, bits::EFER_LMA);
        assert!(s.summary().contains("mode=long"));
    }
}

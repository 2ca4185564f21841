//! A PVH entry point, so the same guest binary also boots under QEMU (`-kernel demo.elf`),
//! the peer Janus is measured against.
//!
//! PVH enters in 32-bit protected mode with paging off and EBX pointing to an
//! `hvm_start_info`. The trampoline maps the first 1 GiB with 2 MiB pages, enters long mode,
//! turns the start info into Janus's `BootInfo`, and continues at the 64-bit `_start`, as if
//! Janus had entered directly. (Janus itself uses the ELF entry point and never runs this.)

use janus_abi::boot::{BootInfo, BOOT_INFO_MAGIC};

/// `hvm_start_info` (Xen's PVH boot ABI): the fields the guest reads.
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `hvm_memmap_table_entry`.
#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

core::arch::global_asm!(
    // The PVH note: type XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", the 32-bit entry.
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4, 4, 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long _start32",
    ".popsection",
    ".section .text.pvh, \"ax\"",
    ".code32",
    ".global _start32",
    "_start32:",
    "    cli",
    "    mov esi, ebx",
    // PML4[0] -> PDPT, PDPT[0] -> PD, PD: 512 x 2 MiB.
    "    lea edi, [pvh_pml4]",
    "    lea eax, [pvh_pdpt + 3]",
    "    mov [edi], eax",
    "    lea edi, [pvh_pdpt]",
    "    lea eax, [pvh_pd + 3]",
    "    mov [edi], eax",
    "    lea edi, [pvh_pd]",
    "    mov eax, 0x83",
    "    mov ecx, 512",
    "2:",
    "    mov [edi], eax",
    "    add eax, 0x200000",
    "    add edi, 8",
    "    dec ecx",
    "    jnz 2b",
    "    mov eax, cr4",
    "    or eax, 0x20",
    "    mov cr4, eax",
    "    lea eax, [pvh_pml4]",
    "    mov cr3, eax",
    "    mov ecx, 0xc0000080",
    "    rdmsr",
    "    or eax, 0x100",
    "    wrmsr",
    "    mov eax, cr0",
    "    or eax, 0x80000001",
    "    mov cr0, eax",
    "    lgdt [pvh_gdt_ptr]",
    "    ljmp 0x08, offset pvh_long",
    ".code64",
    "pvh_long:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    lea rsp, [rip + __stack_top]",
    "    mov edi, esi",
    "    call {convert}",
    "    mov rdi, rax",
    "    jmp _start",
    ".section .rodata.pvh, \"a\"",
    ".balign 8",
    "pvh_gdt:",
    ".quad 0, 0x00af9a000000ffff, 0x00cf92000000ffff",
    "pvh_gdt_ptr:",
    ".word 23",
    ".long pvh_gdt",
    ".section .bss.pvh, \"aw\", @nobits",
    ".balign 4096",
    "pvh_pml4: .skip 4096",
    "pvh_pdpt: .skip 4096",
    "pvh_pd: .skip 4096",
    ".text",
    convert = sym boot_info_from_pvh,
);

static mut PVH_BOOT_INFO: BootInfo = BootInfo {
    magic: 0,
    mem_size: 0,
    cmdline_gpa: 0,
    cmdline_len: 0,
};

/// Builds a `BootInfo` from the PVH start info at `start` and returns its address.
extern "C" fn boot_info_from_pvh(start: u32) -> *const BootInfo {
    let info = start as u64 as *const HvmStartInfo;
    // SAFETY: PVH passes a valid hvm_start_info in EBX; checked by magic before use. Single-
    // threaded boot code owns PVH_BOOT_INFO.
    unsafe {
        let mut out = BootInfo {
            magic: BOOT_INFO_MAGIC,
            ..BootInfo::default()
        };
        if (*info).magic == HVM_START_MAGIC {
            let cmd = (*info).cmdline_paddr as *const u8;
            if !cmd.is_null() {
                let mut n = 0;
                while n < 4096 && *cmd.add(n) != 0 {
                    n += 1;
                }
                out.cmdline_gpa = cmd as u64;
                out.cmdline_len = n as u64;
            }
            let map = (*info).memmap_paddr as *const MemmapEntry;
            for i in 0..(*info).memmap_entries as usize {
                let e = &*map.add(i);
                if e.kind == E820_RAM {
                    out.mem_size += e.size;
                }
            }
        }
        let p = core::ptr::addr_of_mut!(PVH_BOOT_INFO);
        p.write(out);
        p
    }
}

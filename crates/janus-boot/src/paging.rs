//! Identity page tables for the first 4 GiB, with 2 MiB pages.

use crate::layout;
use janus_engine::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;

/// Writes PML4 -> PDPT -> 4 PDs so that virtual == physical for 0..4 GiB (RAM and the MMIO hole
/// below 4 GiB alike). 2 MiB pages need only PSE-style directory entries, which every x86-64
/// CPU supports, unlike 1 GiB pages.
pub fn write_identity_map(mem: &GuestMemory) -> vm_memory::GuestMemoryResult<()> {
    mem.write_obj(
        layout::PDPT | PRESENT | WRITABLE,
        GuestAddress(layout::PML4),
    )?;
    let directories = layout::IDENTITY_MAP_BYTES >> 30;
    for d in 0..directories {
        let pd = layout::PD + d * 0x1000;
        mem.write_obj(pd | PRESENT | WRITABLE, GuestAddress(layout::PDPT + d * 8))?;
        for e in 0..512u64 {
            let phys = (d << 30) | (e << 21);
            mem.write_obj(
                phys | PRESENT | WRITABLE | PAGE_SIZE_2M,
                GuestAddress(pd + e * 8),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables the way the MMU does and checks virtual == physical.
    fn walk(mem: &GuestMemory, va: u64) -> u64 {
        let pml4e: u64 = mem
            .read_obj(GuestAddress(layout::PML4 + ((va >> 39) & 511) * 8))
            .unwrap();
        assert!(pml4e & PRESENT != 0);
        let pdpte: u64 = mem
            .read_obj(GuestAddress((pml4e & !0xfff) + ((va >> 30) & 511) * 8))
            .unwrap();
        assert!(pdpte & PRESENT != 0);
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 511) * 8))
            .unwrap();
        assert!(pde & PAGE_SIZE_2M != 0);
        (pde & !0x1f_ffff & 0x000f_ffff_ffff_f000) | (va & 0x1f_ffff)
    }

    #[test]
    fn maps_identity_up_to_4g() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_identity_map(&mem).unwrap();
        for va in [0u64, 0x10_0000, 0x1234_5678, 0xfee0_0000, 0xffff_ffff] {
            assert_eq!(walk(&mem, va), va);
        }
    }
}

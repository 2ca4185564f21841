//! The BIOS-style (e820) memory map Janus hands a Linux guest, derived from guest RAM.
//!
//! ```text
//! 0 .. 0x9fc00                 RAM
//! 0x9fc00 .. 0x100000          reserved: EBDA, VGA hole, BIOS area (ACPI tables live here)
//! 0x100000 .. end of low RAM   RAM (up to the MMIO hole at 3 GiB)
//! 0xfec00000 + 4 KiB           reserved: I/O APIC
//! 0xfee00000 + 4 KiB           reserved: local APIC
//! 4 GiB ..                     RAM (whatever did not fit below the hole)
//! ```
//!
//! The APIC pages are marked reserved as PC firmware does. Linux computes the gap it hands to
//! PCI (`e820__setup_pci_gap`) from the e820 map early in boot, before the APIC drivers claim
//! their MMIO; with the pages reserved the gap ends below the I/O APIC, so nothing is ever
//! placed over the APICs, and /proc/iomem shows them.

use crate::{layout, BootError, Result};
use janus_abi::pc;
use janus_engine::GuestMemory;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl E820Entry {
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// `(start, length)` of each RAM region of `mem`, in address order.
pub fn ram_regions(mem: &GuestMemory) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = mem
        .iter()
        .map(|r| (r.start_addr().0, r.len()))
        .filter(|&(_, len)| len > 0)
        .collect();
    v.sort_unstable();
    v
}

/// The memory map for guest RAM made of `regions` (`(start, length)`, in address order). The
/// first region must start at 0 and reach past 1 MiB: the boot structures and ACPI tables live
/// below 1 MiB.
pub fn memory_map(regions: &[(u64, u64)]) -> Result<Vec<E820Entry>> {
    let low_ok = regions
        .first()
        .is_some_and(|&(start, len)| start == 0 && len > layout::HIMEM_START);
    if !low_ok {
        return Err(BootError::Kernel(
            "guest RAM must start at 0 and reach past 1 MiB for a Linux boot".into(),
        ));
    }
    let mut map = Vec::new();
    for &(start, len) in regions {
        let end = start
            .checked_add(len)
            .ok_or_else(|| BootError::Kernel("a RAM region wraps around".into()))?;
        if start < layout::HIMEM_START {
            let low_end = end.min(layout::EBDA_START);
            if low_end > start {
                map.push(ram(start, low_end - start));
            }
            map.push(E820Entry {
                addr: layout::EBDA_START,
                size: layout::HIMEM_START - layout::EBDA_START,
                kind: E820_RESERVED,
            });
            if end > layout::HIMEM_START {
                map.push(ram(layout::HIMEM_START, end - layout::HIMEM_START));
            }
        } else {
            map.push(ram(start, len));
        }
    }
    for base in [pc::IOAPIC_BASE, pc::LAPIC_BASE] {
        let page = E820Entry {
            addr: base,
            size: pc::APIC_MMIO_SIZE,
            kind: E820_RESERVED,
        };
        // A map with RAM over the APICs is broken anyway; never make it overlap as well.
        if !map
            .iter()
            .any(|e| e.addr < page.end() && page.addr < e.end())
        {
            map.push(page);
        }
    }
    map.sort_unstable_by_key(|e| e.addr);
    Ok(map)
}

fn ram(addr: u64, size: u64) -> E820Entry {
    E820Entry {
        addr,
        size,
        kind: E820_RAM,
    }
}

/// The highest page-aligned address `a` such that `[a, a + size)` lies inside one RAM region,
/// at or above `lowest` and below `limit`. For placing an initramfs high in memory.
pub fn place_high(regions: &[(u64, u64)], size: u64, lowest: u64, limit: u64) -> Option<u64> {
    const PAGE: u64 = 0x1000;
    regions.iter().rev().find_map(|&(start, len)| {
        let top = start.checked_add(len)?.min(limit);
        let at = top.checked_sub(size)? & !(PAGE - 1);
        (at >= start && at >= lowest).then_some(at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn check_sane(map: &[E820Entry]) {
        for w in map.windows(2) {
            assert!(w[0].end() <= w[1].addr, "overlap or disorder: {map:#x?}");
        }
        assert!(map.iter().all(|e| e.size > 0));
    }

    #[test]
    fn small_memory_map() {
        let map = memory_map(&[(0, 512 * MIB)]).unwrap();
        check_sane(&map);
        assert_eq!(
            map,
            vec![
                ram(0, 0x9_fc00),
                E820Entry {
                    addr: 0x9_fc00,
                    size: 0x6_0400,
                    kind: E820_RESERVED
                },
                ram(MIB, 511 * MIB),
                E820Entry {
                    addr: 0xfec0_0000,
                    size: 0x1000,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0xfee0_0000,
                    size: 0x1000,
                    kind: E820_RESERVED
                },
            ]
        );
    }

    #[test]
    fn memory_above_the_hole() {
        // 5 GiB as janus-vmm lays it out: 3 GiB low, 2 GiB from 4 GiB.
        let map = memory_map(&[(0, 3 * GIB), (4 * GIB, 2 * GIB)]).unwrap();
        check_sane(&map);
        let ram: Vec<_> = map.iter().filter(|e| e.kind == E820_RAM).collect();
        assert_eq!(ram.len(), 3);
        assert_eq!((ram[1].addr, ram[1].end()), (MIB, 3 * GIB));
        assert_eq!((ram[2].addr, ram[2].end()), (4 * GIB, 6 * GIB));
        let total: u64 = ram.iter().map(|e| e.size).sum();
        assert_eq!(total, 5 * GIB - (MIB - 0x9_fc00));
        // Nothing usable in the BIOS area or the hole.
        assert!(!ram
            .iter()
            .any(|e| e.addr < MIB && e.end() > layout::EBDA_START));
        assert!(!ram.iter().any(|e| e.addr < 4 * GIB && e.end() > 3 * GIB));
    }

    #[test]
    fn map_from_guest_memory() {
        let mem = GuestMemory::from_ranges(&[
            (vm_memory::GuestAddress(0), 8 * MIB as usize),
            (vm_memory::GuestAddress(4 * GIB), 16 * MIB as usize),
        ])
        .unwrap();
        let regions = ram_regions(&mem);
        assert_eq!(regions, vec![(0, 8 * MIB), (4 * GIB, 16 * MIB)]);
        check_sane(&memory_map(&regions).unwrap());
    }

    #[test]
    fn rejects_ram_without_low_memory() {
        assert!(memory_map(&[(MIB, 8 * MIB)]).is_err());
        assert!(memory_map(&[(0, 512 * 1024)]).is_err());
        assert!(memory_map(&[]).is_err());
    }

    #[test]
    fn places_high_and_page_aligned() {
        let r = [(0, 512 * MIB)];
        assert_eq!(
            place_high(&r, 0x1800, 0, u64::MAX),
            Some(512 * MIB - 0x2000)
        );
        assert_eq!(place_high(&r, 4 * MIB, 0, 256 * MIB), Some(252 * MIB));
        // Does not fit above `lowest`.
        assert_eq!(place_high(&r, 100 * MIB, 450 * MIB, u64::MAX), None);
        assert_eq!(place_high(&r, 513 * MIB, 0, u64::MAX), None);
        // Skips a region above the limit and uses the one below.
        let two = [(0, 3 * GIB), (4 * GIB, GIB)];
        assert_eq!(place_high(&two, MIB, 0, 4 * GIB), Some(3 * GIB - MIB));
        assert_eq!(place_high(&two, MIB, 0, u64::MAX), Some(5 * GIB - MIB));
    }
}

//! Guest RAM layout: low RAM up to 3 GiB, then a 1 GiB hole for MMIO (local and I/O APIC,
//! PCI, KVM's TSS), and the rest above 4 GiB, as on a PC.

use crate::{Result, VmmError};
use janus_engine::GuestMemory;
use vm_memory::GuestAddress;

/// Start of the MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 3 << 30;
/// End of the hole.
pub const FOUR_GIB: u64 = 4 << 30;
/// Largest guest RAM supported.
pub const MAX_MEMORY: u64 = 64 << 30;

/// (start, length) of each RAM region for `size` bytes of RAM.
pub fn ram_regions(size: u64) -> Vec<(u64, u64)> {
    let low = size.min(MMIO_HOLE_START);
    let mut v = vec![(0, low)];
    if size > low {
        v.push((FOUR_GIB, size - low));
    }
    v
}

/// Maps anonymous host memory for the guest: `size` bytes of RAM, and with `rom` a firmware
/// window of that many bytes ending at 4 GiB (inside the MMIO hole).
pub fn create(size: u64, rom: Option<u64>) -> Result<GuestMemory> {
    let mut ranges: Vec<(GuestAddress, usize)> = ram_regions(size)
        .into_iter()
        .map(|(start, len)| (GuestAddress(start), len as usize))
        .collect();
    if let Some(len) = rom {
        ranges.push((GuestAddress(FOUR_GIB - len), len as usize));
    }
    GuestMemory::from_ranges(&ranges)
        .map_err(|e| VmmError::Memory(format!("cannot map {} MiB: {e}", size >> 20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_region() {
        assert_eq!(ram_regions(512 << 20), vec![(0, 512 << 20)]);
    }

    #[test]
    fn large_ram_skips_the_hole() {
        assert_eq!(ram_regions(5 << 30), vec![(0, 3 << 30), (4 << 30, 2 << 30)]);
    }
}

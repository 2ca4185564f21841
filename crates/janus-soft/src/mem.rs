//! Guest-physical memory as the soft CPU sees it: RAM regions it reads and writes directly,
//! and everything else, which is MMIO and goes to the VMM.

use janus_engine::GuestMemory;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

#[derive(Clone, Copy, Debug)]
struct Ram {
    base: u64,
    len: u64,
    host: *mut u8,
}

/// Guest RAM plus a bitmap of the physical pages that hold cached (decoded) code.
pub struct PhysMem {
    ram: Vec<Ram>,
    /// One bit per 4 KiB page up to the end of RAM.
    code: Vec<u64>,
    // Keeps the mappings behind `ram` alive.
    _memory: GuestMemory,
}

// SAFETY: the raw host pointers refer to mappings owned by `_memory`, which is Send; the soft
// CPU is the only user of this struct on its thread.
unsafe impl Send for PhysMem {}

impl PhysMem {
    pub fn new(memory: &GuestMemory) -> PhysMem {
        let mut ram = Vec::new();
        let mut end = 0;
        for r in memory.iter() {
            let base = r.start_addr().0;
            if let Ok(host) = memory.get_host_address(GuestAddress(base)) {
                ram.push(Ram {
                    base,
                    len: r.len(),
                    host,
                });
                end = end.max(base + r.len());
            }
        }
        let pages = end.div_ceil(4096) as usize;
        PhysMem {
            ram,
            code: vec![0; pages.div_ceil(64)],
            _memory: memory.clone(),
        }
    }

    /// Host address of `len` bytes at `paddr`, if they are RAM (within one region).
    #[inline(always)]
    pub fn host(&self, paddr: u64, len: u64) -> Option<*mut u8> {
        for r in &self.ram {
            let off = paddr.wrapping_sub(r.base);
            if off < r.len && len <= r.len - off {
                // `off + len <= r.len`, so the pointer stays inside the mapping.
                return Some(r.host.wrapping_add(off as usize));
            }
        }
        None
    }

    pub fn read_u64(&self, paddr: u64) -> Option<u64> {
        let p = self.host(paddr, 8)?;
        // SAFETY: `host` checked that 8 bytes at `p` are inside a live guest RAM mapping.
        Some(unsafe { std::ptr::read_unaligned(p as *const u64) })
    }

    pub fn read_u32(&self, paddr: u64) -> Option<u32> {
        let p = self.host(paddr, 4)?;
        // SAFETY: as in `read_u64`.
        Some(unsafe { std::ptr::read_unaligned(p as *const u32) })
    }

    pub fn write_u64(&self, paddr: u64, v: u64) -> bool {
        match self.host(paddr, 8) {
            Some(p) => {
                // SAFETY: as in `read_u64`.
                unsafe { std::ptr::write_unaligned(p as *mut u64, v) };
                true
            }
            None => false,
        }
    }

    pub fn write_u32(&self, paddr: u64, v: u32) -> bool {
        match self.host(paddr, 4) {
            Some(p) => {
                // SAFETY: as in `read_u64`.
                unsafe { std::ptr::write_unaligned(p as *mut u32, v) };
                true
            }
            None => false,
        }
    }

    /// Copies RAM into `buf`; false if any byte is not RAM.
    pub fn read_bytes(&self, paddr: u64, buf: &mut [u8]) -> bool {
        match self.host(paddr, buf.len() as u64) {
            Some(p) => {
                // SAFETY: `host` checked the whole range.
                unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    pub fn is_code_page(&self, ppage: u64) -> bool {
        let i = ppage as usize;
        self.code
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set_code_page(&mut self, ppage: u64, on: bool) {
        let i = ppage as usize;
        if let Some(w) = self.code.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_and_holes() {
        let m = GuestMemory::from_ranges(&[
            (GuestAddress(0), 0x10000),
            (GuestAddress(0x10_0000), 0x1000),
        ])
        .unwrap();
        let mut p = PhysMem::new(&m);
        assert!(p.host(0, 8).is_some());
        assert!(p.host(0xfff8, 8).is_some());
        assert!(p.host(0xfffc, 8).is_none(), "crosses the end of a region");
        assert!(p.host(0x20000, 1).is_none(), "hole");
        assert!(p.host(u64::MAX - 2, 8).is_none());
        assert!(p.write_u64(0x100, 0x1122_3344_5566_7788));
        assert_eq!(p.read_u64(0x100), Some(0x1122_3344_5566_7788));
        assert_eq!(p.read_u32(0x104), Some(0x1122_3344));
        p.set_code_page(0x100, true);
        assert!(p.is_code_page(0x100));
        p.set_code_page(0x100, false);
        assert!(!p.is_code_page(0x100));
        assert!(!p.is_code_page(1 << 40), "beyond RAM is never code");
    }
}

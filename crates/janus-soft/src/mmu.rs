//! Segmentation, paging and the software TLB: every guest memory access goes through here.
//!
//! The fast path is a direct-mapped TLB per privilege (supervisor, user) mapping a virtual page
//! to a host pointer, with separate tags for read, write and execute. A write tag is only
//! filled once the page's dirty bit is set and the page holds no cached code, so stores that
//! need the slow path (set D, catch self-modifying code) always take it.

use crate::core::{vector, Cpu, Exit, Fault, Stop};
use crate::cpu::{Mode, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_PSE, FS, SS};
use janus_engine::cpu::bits;

pub const TLB_SIZE: usize = 1024;
const INVALID: u64 = u64::MAX;

/// One TLB entry. Translated code reads the tags and the addend at fixed offsets and indexes
/// the table by shifting, so the layout is C's and the size a power of two (64 bytes).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct TlbEntry {
    pub tag_r: u64,
    pub tag_w: u64,
    pub tag_x: u64,
    /// host address = addend + linear address
    pub addend: u64,
    /// Physical page number.
    pub ppage: u64,
    pub global: bool,
}

const EMPTY: TlbEntry = TlbEntry {
    tag_r: INVALID,
    tag_w: INVALID,
    tag_x: INVALID,
    addend: 0,
    ppage: 0,
    global: false,
};

pub struct Tlb {
    pub e: Box<[[TlbEntry; TLB_SIZE]; 2]>,
    /// Bumped on every flush, so caches keyed by virtual address know to drop theirs.
    pub generation: u64,
    /// Bumped only by flushes that may drop global entries too; caches that keep what global
    /// pages map across `flush_nonglobal` watch this one.
    pub global_generation: u64,
    /// Slots (set × TLB_SIZE + index) filled with non-global entries since the last flush, so
    /// that a CR3 write (twice per system call under the guest's page-table isolation) clears
    /// those instead of scanning the whole table.
    nonglobal: Vec<u16>,
    /// More slots were filled than `nonglobal` holds: the next flush scans.
    nonglobal_overflow: bool,
}

/// How many non-global fills `Tlb::nonglobal` remembers before a flush falls back to a scan.
const NONGLOBAL_TRACKED: usize = TLB_SIZE;

impl Tlb {
    pub fn new() -> Tlb {
        Tlb {
            e: Box::new([[EMPTY; TLB_SIZE]; 2]),
            generation: 0,
            global_generation: 0,
            nonglobal: Vec::with_capacity(NONGLOBAL_TRACKED),
            nonglobal_overflow: false,
        }
    }

    /// Puts `entry` in slot `index` of set `set` (0 supervisor, 1 user).
    fn fill(&mut self, set: usize, index: usize, entry: TlbEntry) {
        if !entry.global {
            if self.nonglobal.len() < NONGLOBAL_TRACKED {
                self.nonglobal.push((set * TLB_SIZE + index) as u16);
            } else {
                self.nonglobal_overflow = true;
            }
        }
        self.e[set][index] = entry;
    }

    pub fn flush_all(&mut self) {
        for set in self.e.iter_mut() {
            set.fill(EMPTY);
        }
        self.nonglobal.clear();
        self.nonglobal_overflow = false;
        self.generation += 1;
        self.global_generation += 1;
    }

    pub fn flush_nonglobal(&mut self) {
        if self.nonglobal_overflow {
            for set in self.e.iter_mut() {
                for e in set.iter_mut().filter(|e| !e.global) {
                    *e = EMPTY;
                }
            }
        } else {
            for &slot in &self.nonglobal {
                let e = &mut self.e[slot as usize / TLB_SIZE][slot as usize % TLB_SIZE];
                // The slot may have been refilled with a global entry since.
                if !e.global {
                    *e = EMPTY;
                }
            }
        }
        self.nonglobal.clear();
        self.nonglobal_overflow = false;
        self.generation += 1;
    }

    pub fn flush_page(&mut self, lin: u64) {
        let i = ((lin >> 12) as usize) & (TLB_SIZE - 1);
        for set in self.e.iter_mut() {
            set[i] = EMPTY;
        }
        self.generation += 1;
        self.global_generation += 1;
    }

    /// Stops direct stores to physical page `ppage` (it now holds cached code).
    pub fn protect_code(&mut self, ppage: u64) {
        for set in self.e.iter_mut() {
            for e in set.iter_mut().filter(|e| e.ppage == ppage) {
                e.tag_w = INVALID;
            }
        }
    }
}

impl Default for Tlb {
    fn default() -> Tlb {
        Tlb::new()
    }
}

/// Kind of memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acc {
    Read,
    Write,
    Exec,
}

/// A value that can be loaded from or stored to guest memory.
pub trait Val: Copy {
    const SIZE: usize;
    fn from_u64(v: u64) -> Self;
    fn to_u64(self) -> u64;
}

macro_rules! val {
    ($t:ty) => {
        impl Val for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
        }
    };
}
val!(u8);
val!(u16);
val!(u32);
val!(u64);

/// The result of walking the page tables for one linear address.
#[derive(Clone, Copy, Debug)]
struct Walk {
    paddr: u64,
    user: bool,
    writable: bool,
    nx: bool,
    dirty: bool,
    global: bool,
}

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;
/// Physical address bits Janus reports (CPUID 0x80000008): 40.
pub const PHYS_BITS: u32 = 40;
const ADDR_MASK: u64 = ((1u64 << PHYS_BITS) - 1) & !0xfff;

/// Page-fault error code bits.
const PF_P: u32 = 1;
const PF_W: u32 = 2;
const PF_U: u32 = 4;
const PF_RSVD: u32 = 8;
const PF_I: u32 = 16;

/// Whether `v` is a canonical 48-bit linear address (bits 63..47 all equal).
#[inline(always)]
fn canonical(v: u64) -> bool {
    ((v as i64) << 16) >> 16 == v as i64
}

impl Cpu {
    /// Linear address of `size` bytes at `off` in segment `seg`, with the segment checks of the
    /// current mode.
    #[inline(always)]
    pub fn linear(&self, seg: usize, off: u64, size: u32, acc: Acc) -> Result<u64, Fault> {
        if self.long64 {
            let lin = if seg >= FS {
                self.r.seg[seg].base.wrapping_add(off)
            } else {
                off
            };
            // Both ends must be canonical: an access that runs off the lower half's top
            // faults as a segment violation, not a page fault.
            let last = lin.wrapping_add(size.saturating_sub(1) as u64);
            if !canonical(lin) || !canonical(last) {
                return Err(self.seg_fault(seg));
            }
            return Ok(lin);
        }
        self.linear_legacy(seg, off, size, acc)
    }

    fn seg_fault(&self, seg: usize) -> Fault {
        if seg == SS {
            Fault::with_error(vector::SS, 0)
        } else {
            Fault::gp(0)
        }
    }

    fn linear_legacy(&self, seg: usize, off: u64, size: u32, acc: Acc) -> Result<u64, Fault> {
        let s = &self.r.seg[seg];
        let off = off & 0xffff_ffff;
        if self.r.mode() != Mode::Real {
            if s.unusable {
                return Err(self.seg_fault(seg));
            }
            let t = s.type_();
            let code = t & 8 != 0;
            match acc {
                Acc::Write if code || t & 2 == 0 => return Err(self.seg_fault(seg)),
                Acc::Read if code && t & 2 == 0 => return Err(self.seg_fault(seg)),
                _ => {}
            }
            let last = off + size as u64 - 1;
            let expand_down = !code && t & 4 != 0;
            if expand_down {
                let top = if s.big() { 0xffff_ffff } else { 0xffff };
                if off <= s.limit as u64 || last > top {
                    return Err(self.seg_fault(seg));
                }
            } else if last > s.limit as u64 {
                return Err(self.seg_fault(seg));
            }
        } else if self.r.mode() == Mode::Real && off + size as u64 - 1 > s.limit as u64 {
            return Err(self.seg_fault(seg));
        }
        Ok((s.base.wrapping_add(off)) & 0xffff_ffff)
    }

    fn read_pte(&mut self, addr: u64) -> Option<u64> {
        self.mem.read_u64(addr)
    }

    fn pf(&mut self, lin: u64, code: u32) -> Fault {
        self.r.cr2 = lin;
        Fault::with_error(vector::PF, code)
    }

    /// Walks the page tables for `lin`; sets accessed (and, for writes, dirty) bits.
    fn walk(&mut self, lin: u64, acc: Acc, user: bool) -> Result<Walk, Fault> {
        let write = acc == Acc::Write;
        let fetch_code = if acc == Acc::Exec && self.r.efer & bits::EFER_NXE != 0 {
            PF_I
        } else {
            0
        };
        let base_code = ((write as u32) * PF_W) | ((user as u32) * PF_U) | fetch_code;
        let nxe = self.r.efer & bits::EFER_NXE != 0;
        let rsvd_nx = if nxe { 0 } else { XD };
        let mut w = Walk {
            paddr: 0,
            user: true,
            writable: true,
            nx: false,
            dirty: false,
            global: false,
        };
        // (entry address, level) pairs visited, for setting accessed bits afterwards.
        let mut visited: [(u64, u64); 4] = [(0, 0); 4];
        let mut n = 0;
        let leaf: u64;
        let leaf_addr: u64;
        let page_mask: u64;
        if self.r.long_mode_active() || self.r.cr4 & CR4_PAE != 0 {
            let four_level = self.r.long_mode_active();
            let cr3 = if four_level {
                let m = if self.r.cr4 & CR4_PCIDE != 0 {
                    !0xfff
                } else {
                    !0xfe7
                };
                self.r.cr3 & m & ADDR_MASK
            } else {
                self.r.cr3 & 0xffff_ffe0
            };
            let mut table = cr3;
            let levels: &[(u32, bool)] = if four_level {
                &[(39, false), (30, true), (21, true), (12, false)]
            } else {
                &[(30, false), (21, true), (12, false)]
            };
            let mut found = None;
            for (i, &(shift, large_ok)) in levels.iter().enumerate() {
                let idx = (lin >> shift) & if !four_level && i == 0 { 3 } else { 511 };
                let addr = table + idx * 8;
                let e = self.read_pte(addr).ok_or_else(|| self.pf(lin, base_code))?;
                if e & P == 0 {
                    return Err(self.pf(lin, base_code));
                }
                let pae_pdpte = !four_level && i == 0;
                let reserved = if pae_pdpte {
                    // PAE PDPTEs: bits 1, 2, 5..=8 and above MAXPHYADDR are reserved.
                    0x1e6 | !(((1u64 << PHYS_BITS) - 1) | 0xfff)
                } else {
                    rsvd_nx | (!((1u64 << PHYS_BITS) - 1) & 0x7ff0_0000_0000_0000)
                };
                if e & reserved != 0 || (shift == 39 && e & PS != 0) {
                    return Err(self.pf(lin, base_code | PF_P | PF_RSVD));
                }
                if !pae_pdpte {
                    w.user &= e & US != 0;
                    w.writable &= e & RW != 0;
                    w.nx |= nxe && e & XD != 0;
                    visited[n] = (addr, e);
                    n += 1;
                }
                if shift == 12 || (large_ok && e & PS != 0) {
                    found = Some((addr, e, (1u64 << shift) - 1));
                    break;
                }
                table = e & ADDR_MASK;
            }
            let (a, e, m) = found.ok_or_else(|| self.pf(lin, base_code))?;
            leaf = e;
            leaf_addr = a;
            page_mask = m;
        } else {
            // 32-bit paging: 2 levels, 4 MiB pages with CR4.PSE.
            let pde_addr = (self.r.cr3 & 0xffff_f000) + ((lin >> 22) & 0x3ff) * 4;
            let pde = self
                .mem
                .read_u32(pde_addr)
                .ok_or_else(|| self.pf(lin, base_code))? as u64;
            if pde & P == 0 {
                return Err(self.pf(lin, base_code));
            }
            w.user &= pde & US != 0;
            w.writable &= pde & RW != 0;
            if pde & PS != 0 && self.r.cr4 & CR4_PSE != 0 {
                leaf = (pde & 0xffc0_0000) | (pde & 0x1fff);
                leaf_addr = pde_addr;
                page_mask = 0x3f_ffff;
                visited[n] = (pde_addr | 1 << 63, pde);
                n += 1;
            } else {
                visited[n] = (pde_addr | 1 << 63, pde);
                n += 1;
                let pte_addr = (pde & 0xffff_f000) + ((lin >> 12) & 0x3ff) * 4;
                let pte = self
                    .mem
                    .read_u32(pte_addr)
                    .ok_or_else(|| self.pf(lin, base_code))? as u64;
                if pte & P == 0 {
                    return Err(self.pf(lin, base_code));
                }
                w.user &= pte & US != 0;
                w.writable &= pte & RW != 0;
                leaf = pte;
                leaf_addr = pte_addr | 1 << 63;
                page_mask = 0xfff;
                visited[n] = (leaf_addr, pte);
                n += 1;
            }
        }
        // Permission checks.
        let wp = self.r.cr0 & bits::CR0_WP != 0;
        let denied = (user && !w.user)
            || (write && !w.writable && (user || wp))
            || (acc == Acc::Exec && w.nx);
        if denied {
            return Err(self.pf(lin, base_code | PF_P));
        }
        // Accessed bits on every level; dirty on the leaf for writes.
        for &(addr, e) in &visited[..n] {
            let is_leaf = addr & !(1 << 63) == leaf_addr & !(1 << 63);
            let mut ne = e | A;
            if is_leaf && write {
                ne |= D;
            }
            if ne != e {
                self.store_pte(addr, ne);
            }
        }
        let frame = if page_mask == 0x3f_ffff {
            leaf & 0xffc0_0000
        } else {
            leaf & ADDR_MASK & !page_mask
        };
        w.paddr = frame | (lin & page_mask);
        w.dirty = leaf & D != 0 || write;
        w.global = leaf & G != 0 && self.r.cr4 & CR4_PGE != 0;
        Ok(w)
    }

    /// Writes a paging-structure entry back (bit 63 of `addr` marks a 32-bit entry).
    fn store_pte(&mut self, addr: u64, e: u64) {
        if addr & (1 << 63) != 0 {
            self.mem.write_u32(addr & !(1 << 63), e as u32);
        } else {
            self.mem.write_u64(addr, e);
        }
    }

    /// Translates `lin` for an access of kind `acc` and fills the TLB. Returns the physical
    /// address.
    pub fn translate(&mut self, lin: u64, acc: Acc, user: bool) -> Result<u64, Fault> {
        let w = if self.r.paging() {
            self.walk(lin, acc, user)?
        } else {
            Walk {
                paddr: lin
                    & if self.r.long_mode_active() {
                        u64::MAX
                    } else {
                        0xffff_ffff
                    },
                user: true,
                writable: true,
                nx: false,
                dirty: true,
                global: false,
            }
        };
        self.fill_tlb(lin, &w, user);
        Ok(w.paddr)
    }

    /// Whether the TLB maps the page of code at `lin` through a global entry (one that
    /// survives CR3 writes), for the current privilege.
    pub fn code_page_is_global(&self, lin: u64) -> bool {
        let e = &self.tlb.e[self.mmu_idx & 1][((lin >> 12) as usize) & (TLB_SIZE - 1)];
        e.tag_x == lin >> 12 && e.global
    }

    fn fill_tlb(&mut self, lin: u64, w: &Walk, user: bool) {
        let ppage = w.paddr >> 12;
        let Some(host) = self.mem.host(ppage << 12, 4096) else {
            return; // MMIO: always the slow path
        };
        let vpage = lin >> 12;
        let wp = self.r.cr0 & bits::CR0_WP != 0;
        let idx = user as usize;
        let can_write = (if user {
            w.writable && w.user
        } else {
            w.writable || !wp
        }) && w.dirty
            && !self.mem.is_code_page(ppage);
        let readable = !user || w.user;
        let entry = TlbEntry {
            tag_r: if readable { vpage } else { INVALID },
            tag_w: if can_write { vpage } else { INVALID },
            tag_x: if readable && !w.nx { vpage } else { INVALID },
            addend: (host as u64).wrapping_sub(vpage << 12),
            ppage,
            global: w.global,
        };
        self.tlb.fill(idx, (vpage as usize) & (TLB_SIZE - 1), entry);
    }

    // ------------------------------------------------------------------ loads and stores

    /// Reads from segment `seg` at offset `off`.
    #[inline(always)]
    pub fn read<T: Val>(&mut self, seg: usize, off: u64) -> Result<T, Stop> {
        let lin = self.linear(seg, off, T::SIZE as u32, Acc::Read)?;
        self.read_lin(lin)
    }

    /// Writes to segment `seg` at offset `off`.
    #[inline(always)]
    pub fn write<T: Val>(&mut self, seg: usize, off: u64, v: T) -> Result<(), Stop> {
        let lin = self.linear(seg, off, T::SIZE as u32, Acc::Write)?;
        self.write_lin(lin, v)
    }

    #[inline(always)]
    pub fn read_lin<T: Val>(&mut self, lin: u64) -> Result<T, Stop> {
        let e = &self.tlb.e[self.mmu_idx][((lin >> 12) as usize) & (TLB_SIZE - 1)];
        if e.tag_r == lin >> 12 && (lin & 0xfff) as usize + T::SIZE <= 4096 {
            let p = e.addend.wrapping_add(lin) as *const T;
            // SAFETY: the TLB only holds entries whose page is guest RAM (checked by
            // `PhysMem::host` when filled) and the access stays inside that page.
            return Ok(unsafe { std::ptr::read_unaligned(p) });
        }
        self.read_slow(lin, T::SIZE, self.mmu_idx == 1)
            .map(T::from_u64)
    }

    #[inline(always)]
    pub fn write_lin<T: Val>(&mut self, lin: u64, v: T) -> Result<(), Stop> {
        let e = &self.tlb.e[self.mmu_idx][((lin >> 12) as usize) & (TLB_SIZE - 1)];
        if e.tag_w == lin >> 12 && (lin & 0xfff) as usize + T::SIZE <= 4096 {
            let p = e.addend.wrapping_add(lin) as *mut T;
            // SAFETY: as in `read_lin`; write tags exist only for writable RAM pages.
            unsafe { std::ptr::write_unaligned(p, v) };
            return Ok(());
        }
        self.write_slow(lin, T::SIZE, v.to_u64(), self.mmu_idx == 1)
    }

    /// Supervisor-privilege read of a linear address (descriptor tables, TSS, IDT).
    pub fn read_sys<T: Val>(&mut self, lin: u64) -> Result<T, Stop> {
        self.read_slow(lin, T::SIZE, false).map(T::from_u64)
    }

    /// Supervisor-privilege write of a linear address.
    pub fn write_sys<T: Val>(&mut self, lin: u64, v: T) -> Result<(), Stop> {
        self.write_slow(lin, T::SIZE, v.to_u64(), false)
    }

    fn lin_mask(&self) -> u64 {
        if self.r.long_mode_active() {
            u64::MAX
        } else {
            0xffff_ffff
        }
    }

    #[inline(never)]
    fn read_slow(&mut self, lin: u64, size: usize, user: bool) -> Result<u64, Stop> {
        if (lin & 0xfff) as usize + size > 4096 {
            let mask = self.lin_mask();
            // Translate both pages before reading anything.
            let first = 4096 - (lin & 0xfff) as usize;
            self.translate(lin, Acc::Read, user)?;
            self.translate(lin.wrapping_add(first as u64) & mask, Acc::Read, user)?;
            let mut v = 0u64;
            for i in 0..size {
                let b = self.read_slow(lin.wrapping_add(i as u64) & mask, 1, user)?;
                v |= b << (8 * i);
            }
            return Ok(v);
        }
        let pa = self.translate(lin, Acc::Read, user)?;
        match self.mem.host(pa, size as u64) {
            Some(p) => Ok(load(p, size)),
            None => self.mmio_read(pa, size),
        }
    }

    #[inline(never)]
    fn write_slow(&mut self, lin: u64, size: usize, v: u64, user: bool) -> Result<(), Stop> {
        if (lin & 0xfff) as usize + size > 4096 {
            let mask = self.lin_mask();
            let first = 4096 - (lin & 0xfff) as usize;
            self.translate(lin, Acc::Write, user)?;
            self.translate(lin.wrapping_add(first as u64) & mask, Acc::Write, user)?;
            for i in 0..size {
                self.write_slow(lin.wrapping_add(i as u64) & mask, 1, v >> (8 * i), user)?;
            }
            return Ok(());
        }
        let pa = self.translate(lin, Acc::Write, user)?;
        match self.mem.host(pa, size as u64) {
            Some(p) => {
                store(p, size, v);
                if self.mem.is_code_page(pa >> 12) {
                    self.code_written.push(pa >> 12);
                }
                Ok(())
            }
            None => self.mmio_write(pa, size, v),
        }
    }

    /// Checks that `size` bytes at `seg:off` could be written, without writing (for
    /// instructions that must not change anything when a later store would fault).
    pub fn probe_write(&mut self, seg: usize, off: u64, size: u32) -> Result<(), Stop> {
        self.probe(seg, off, size, Acc::Write)
    }

    /// Checks that `size` bytes at `seg:off` could be read, without reading (CLFLUSH, and
    /// whole-area checks before a partial access).
    pub fn probe_read(&mut self, seg: usize, off: u64, size: u32) -> Result<(), Stop> {
        self.probe(seg, off, size, Acc::Read)
    }

    fn probe(&mut self, seg: usize, off: u64, size: u32, acc: Acc) -> Result<(), Stop> {
        let lin = self.linear(seg, off, size, acc)?;
        let user = self.mmu_idx == 1;
        let e = &self.tlb.e[self.mmu_idx][((lin >> 12) as usize) & (TLB_SIZE - 1)];
        let tag = if acc == Acc::Write { e.tag_w } else { e.tag_r };
        if tag == lin >> 12 && (lin & 0xfff) + size as u64 <= 4096 {
            return Ok(());
        }
        self.translate(lin, acc, user)?;
        let last = lin.wrapping_add(size.saturating_sub(1) as u64) & self.lin_mask();
        if last >> 12 != lin >> 12 {
            self.translate(last, acc, user)?;
        }
        Ok(())
    }

    fn mmio_read(&mut self, addr: u64, size: usize) -> Result<u64, Stop> {
        match self.io.replay() {
            Some(Some(v)) => Ok(v),
            _ => Err(self.exit(Exit::MmioRead {
                addr,
                size: size as u8,
            })),
        }
    }

    fn mmio_write(&mut self, addr: u64, size: usize, value: u64) -> Result<(), Stop> {
        match self.io.replay() {
            Some(_) => Ok(()),
            None => Err(self.exit(Exit::MmioWrite {
                addr,
                size: size as u8,
                value,
            })),
        }
    }

    /// Reads instruction bytes at linear `lin` (up to the end of its page) for the decoder.
    /// Returns the physical address of the first byte and how many bytes were copied.
    /// The physical address of the code at `lin`, walking the page tables (and raising #PF)
    /// on a TLB miss.
    pub fn code_address(&mut self, lin: u64) -> Result<u64, Stop> {
        let e = &self.tlb.e[self.mmu_idx & 1][((lin >> 12) as usize) & (TLB_SIZE - 1)];
        if e.tag_x == lin >> 12 {
            return Ok((e.ppage << 12) | (lin & 0xfff));
        }
        let user = self.mmu_idx == 1;
        Ok(self.translate(lin, Acc::Exec, user)?)
    }

    pub fn fetch(&mut self, lin: u64, buf: &mut [u8]) -> Result<(u64, usize), Stop> {
        let user = self.mmu_idx == 1;
        let pa = {
            let e = &self.tlb.e[self.mmu_idx][((lin >> 12) as usize) & (TLB_SIZE - 1)];
            if e.tag_x == lin >> 12 {
                (e.ppage << 12) | (lin & 0xfff)
            } else {
                self.translate(lin, Acc::Exec, user)?
            }
        };
        let n = buf.len().min(4096 - (lin & 0xfff) as usize);
        if !self.mem.read_bytes(pa, &mut buf[..n]) {
            return Err(self.fail(format!(
                "instruction fetch from {pa:#x}, which is not RAM (rip={:#x})",
                self.r.rip
            )));
        }
        Ok((pa, n))
    }
}

fn load(p: *mut u8, size: usize) -> u64 {
    // SAFETY: callers obtained `p` from `PhysMem::host` for `size` bytes.
    unsafe {
        match size {
            1 => *p as u64,
            2 => std::ptr::read_unaligned(p as *const u16) as u64,
            4 => std::ptr::read_unaligned(p as *const u32) as u64,
            _ => std::ptr::read_unaligned(p as *const u64),
        }
    }
}

fn store(p: *mut u8, size: usize, v: u64) {
    // SAFETY: callers obtained `p` from `PhysMem::host` for `size` bytes.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => std::ptr::write_unaligned(p as *mut u16, v as u16),
            4 => std::ptr::write_unaligned(p as *mut u32, v as u32),
            _ => std::ptr::write_unaligned(p as *mut u64, v),
        }
    }
}

//! The flat GDTs used for the VMM's guest entries: one for Janus's direct 64-bit ELF entry, one
//! laid out for the Linux boot protocols (its selectors are the ones Linux documents).

use crate::layout;
use janus_engine::{DescriptorTable, GuestMemory, Segment};
use vm_memory::{Bytes, GuestAddress};

/// Selector of the 64-bit code segment.
pub const CODE64: u16 = 0x08;
/// Selector of the flat data segment.
pub const DATA: u16 = 0x10;
/// Selector of the task state segment (a 16-byte system descriptor).
pub const TSS: u16 = 0x18;

const NULL_DESC: u64 = 0;
const CODE64_DESC: u64 = 0x00af_9b00_0000_ffff;
const CODE32_DESC: u64 = 0x00cf_9b00_0000_ffff;
const DATA_DESC: u64 = 0x00cf_9300_0000_ffff;
/// A busy TSS, limit 0x67, base 0 (a 32-bit TSS in protected mode, a 64-bit one in long mode:
/// the type encoding is the same). VT-x requires a usable TR at entry, and the guest loads its
/// own before it needs one.
const TSS_DESC: u64 = 0x0000_8b00_0000_0067;

/// Descriptors: null, 64-bit code, flat 4 GiB data, and a busy 64-bit TSS (16 bytes).
pub const ENTRIES: [u64; 5] = [NULL_DESC, CODE64_DESC, DATA_DESC, TSS_DESC, 0];

/// The GDT for Linux entry. The 64-bit boot protocol asks for `__BOOT_CS` (0x10, flat
/// execute/read) and `__BOOT_DS` (0x18, flat read/write); PVH entry needs a flat 32-bit code
/// segment, which sits at 0x08.
pub mod linux {
    use super::*;

    /// Flat 32-bit code (PVH entry).
    pub const CODE32: u16 = 0x08;
    /// `__BOOT_CS`: flat 64-bit code.
    pub const BOOT_CS: u16 = 0x10;
    /// `__BOOT_DS`: flat data.
    pub const BOOT_DS: u16 = 0x18;
    /// Busy TSS (16 bytes).
    pub const TSS: u16 = 0x20;
    pub const ENTRIES: [u64; 6] = [NULL_DESC, CODE32_DESC, CODE64_DESC, DATA_DESC, TSS_DESC, 0];
}

/// Writes the GDT for ELF guests at [`layout::GDT`].
pub fn write(mem: &GuestMemory) -> vm_memory::GuestMemoryResult<()> {
    write_entries(mem, &ENTRIES)
}

/// Writes `entries` as the GDT at [`layout::GDT`].
pub fn write_entries(mem: &GuestMemory, entries: &[u64]) -> vm_memory::GuestMemoryResult<()> {
    for (i, e) in entries.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::GDT + 8 * i as u64))?;
    }
    Ok(())
}

/// GDTR for `entries` written at [`layout::GDT`].
pub fn register(entries: &[u64]) -> DescriptorTable {
    DescriptorTable {
        base: layout::GDT,
        limit: (entries.len() * 8 - 1) as u16,
    }
}

/// The cached segment register contents for `selector` in [`ENTRIES`].
pub fn segment(selector: u16) -> Segment {
    segment_in(&ENTRIES, selector)
}

/// The cached segment register contents for `selector` in `entries` (a null segment for a
/// selector past the end).
pub fn segment_in(entries: &[u64], selector: u16) -> Segment {
    let i = (selector >> 3) as usize;
    let low = entries.get(i).copied().unwrap_or(0);
    let high = entries.get(i + 1).copied().unwrap_or(0);
    Segment::from_descriptor(selector, low, high)
}

/// An empty, unusable LDT register.
pub fn null_ldt() -> Segment {
    Segment {
        type_: 0x2,
        unusable: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_selectors_are_flat() {
        let cs = segment_in(&linux::ENTRIES, linux::BOOT_CS);
        assert!(cs.l && !cs.db && cs.present && cs.type_ & 0x8 != 0);
        let ds = segment_in(&linux::ENTRIES, linux::BOOT_DS);
        assert!(ds.base == 0 && ds.limit == 0xffff_ffff && ds.type_ & 0x2 != 0);
        let c32 = segment_in(&linux::ENTRIES, linux::CODE32);
        assert!(c32.db && !c32.l && c32.limit == 0xffff_ffff && c32.base == 0);
        let tr = segment_in(&linux::ENTRIES, linux::TSS);
        assert!(!tr.s && tr.type_ == 0xb && tr.limit == 0x67);
    }
}

//! The flat GDT used for direct 64-bit entry.

use crate::layout;
use janus_engine::{GuestMemory, Segment};
use vm_memory::{Bytes, GuestAddress};

/// Selector of the 64-bit code segment.
pub const CODE64: u16 = 0x08;
/// Selector of the flat data segment.
pub const DATA: u16 = 0x10;
/// Selector of the task state segment (a 16-byte system descriptor).
pub const TSS: u16 = 0x18;

/// Descriptors: null, 64-bit code, flat 4 GiB data, and a busy 64-bit TSS (limit 0x67,
/// base 0; VT-x requires a usable TR at entry, and the guest loads its own before it needs one).
pub const ENTRIES: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0000_8b00_0000_0067,
    0,
];

/// Writes the GDT at [`layout::GDT`].
pub fn write(mem: &GuestMemory) -> vm_memory::GuestMemoryResult<()> {
    for (i, e) in ENTRIES.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::GDT + 8 * i as u64))?;
    }
    Ok(())
}

/// The cached segment register contents for `selector`.
pub fn segment(selector: u16) -> Segment {
    let i = (selector >> 3) as usize;
    let high = ENTRIES.get(i + 1).copied().unwrap_or(0);
    Segment::from_descriptor(selector, ENTRIES[i], high)
}

/// An empty, unusable LDT register.
pub fn null_ldt() -> Segment {
    Segment {
        type_: 0x2,
        unusable: true,
        ..Default::default()
    }
}

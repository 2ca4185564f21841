//! Engine-neutral architectural CPU state: what the boot code sets up and what reports show.

/// General-purpose register indices, in x86 encoding order.
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
    pub const R8: usize = 8;
    pub const R15: usize = 15;
    pub const NAMES: [&str; 16] = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
}

/// Control register and EFER bits used when building entry states.
pub mod bits {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_EM: u64 = 1 << 2;
    pub const CR0_TS: u64 = 1 << 3;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_AM: u64 = 1 << 18;
    pub const CR0_NW: u64 = 1 << 29;
    pub const CR0_CD: u64 = 1 << 30;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PSE: u64 = 1 << 4;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_PGE: u64 = 1 << 7;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
    pub const RFLAGS_RESERVED1: u64 = 1 << 1;
    pub const RFLAGS_IF: u64 = 1 << 9;
}

/// A segment register in its cached (descriptor) form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    /// Limit in bytes (already scaled by the granularity bit).
    pub limit: u32,
    pub selector: u16,
    /// Descriptor type field (4 bits).
    pub type_: u8,
    pub present: bool,
    pub dpl: u8,
    /// Default operation size (D/B): 32-bit when set.
    pub db: bool,
    /// Code/data (set) or system (clear) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity: limit in 4 KiB units.
    pub g: bool,
    pub avl: bool,
    /// The register holds no usable segment (a null selector was loaded).
    pub unusable: bool,
}

impl Segment {
    /// Decodes a GDT/LDT descriptor (the low 8 bytes; 16-byte system descriptors in long mode
    /// carry the upper base bits in the next 8 bytes, passed as `high`).
    pub fn from_descriptor(selector: u16, desc: u64, high: u64) -> Segment {
        let g = desc & (1 << 55) != 0;
        let raw_limit = ((desc & 0xffff) | ((desc >> 32) & 0xf_0000)) as u32;
        let limit = if g {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        };
        let s = desc & (1 << 44) != 0;
        let mut base = ((desc >> 16) & 0xff_ffff) | ((desc >> 32) & 0xff00_0000);
        if !s {
            base |= (high & 0xffff_ffff) << 32;
        }
        Segment {
            base,
            limit,
            selector,
            type_: ((desc >> 40) & 0xf) as u8,
            present: desc & (1 << 47) != 0,
            dpl: ((desc >> 45) & 3) as u8,
            db: desc & (1 << 54) != 0,
            s,
            l: desc & (1 << 53) != 0,
            g,
            avl: desc & (1 << 52) != 0,
            unusable: false,
        }
    }

    /// A real-mode segment: base = selector * 16, 64 KiB limit, read/write (or code).
    pub fn real_mode(selector: u16, code: bool) -> Segment {
        Segment {
            base: (selector as u64) << 4,
            limit: 0xffff,
            selector,
            type_: if code { 0xb } else { 0x3 },
            present: true,
            s: true,
            ..Default::default()
        }
    }
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// Architectural state a vCPU starts from and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// General-purpose registers in encoding order (see [`gpr`]).
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: DescriptorTable,
    pub idt: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
}

impl CpuState {
    /// The x86 power-on state: real mode at F000:FFF0 (linear 0xFFFF_FFF0).
    pub fn power_on() -> CpuState {
        let mut cs = Segment::real_mode(0xf000, true);
        cs.base = 0xffff_0000;
        let data = Segment::real_mode(0, false);
        CpuState {
            rip: 0xfff0,
            rflags: bits::RFLAGS_RESERVED1,
            cs,
            ds: data,
            es: data,
            fs: data,
            gs: data,
            ss: data,
            tr: Segment {
                type_: 0xb,
                present: true,
                limit: 0xffff,
                ..Default::default()
            },
            ldt: Segment {
                type_: 0x2,
                present: true,
                limit: 0xffff,
                ..Default::default()
            },
            gdt: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            idt: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            cr0: bits::CR0_ET | bits::CR0_NW | bits::CR0_CD,
            ..Default::default()
        }
    }

    /// One-line summary for fault reports.
    pub fn summary(&self) -> String {
        let mode = if self.efer & bits::EFER_LMA != 0 {
            if self.cs.l {
                "long"
            } else {
                "compat"
            }
        } else if self.cr0 & bits::CR0_PE != 0 {
            "protected"
        } else {
            "real"
        };
        format!(
            "rip={:#x} cs={:#x} rsp={:#x} rflags={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x} mode={mode}",
            self.rip,
            self.cs.selector,
            self.gprs[gpr::RSP],
            self.rflags,
            self.cr0,
            self.cr3,
            self.cr4,
            self.efer
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_flat_long_mode_code_descriptor() {
        let s = Segment::from_descriptor(0x08, 0x00af_9b00_0000_ffff, 0);
        assert!(s.l && s.present && s.s && s.g && !s.db);
        assert_eq!(s.type_, 0xb);
        assert_eq!(s.base, 0);
        assert_eq!(s.limit, 0xffff_ffff);
    }

    #[test]
    fn decodes_64bit_tss_base() {
        // Busy 64-bit TSS at 0x1234_5678_9abc_d000, limit 0x67.
        let low: u64 = 0x9a00_8bbc_d000_0067;
        let high: u64 = 0x1234_5678;
        let s = Segment::from_descriptor(0x18, low, high);
        assert!(!s.s);
        assert_eq!(s.type_, 0xb);
        assert_eq!(s.base, 0x1234_5678_9abc_d000);
        assert_eq!(s.limit, 0x67);
    }

    #[test]
    fn power_on_is_real_mode_at_reset_vector() {
        let s = CpuState::power_on();
        assert_eq!(s.cs.base + s.rip, 0xffff_fff0);
        assert_eq!(s.cr0 & bits::CR0_PE, 0);
        assert!(s.summary().contains("mode=real"));
    }
}

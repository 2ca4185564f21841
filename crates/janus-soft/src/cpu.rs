//! Architectural state of the soft CPU, outside memory.

use crate::flags::Flags;
use crate::fpu::Fpu;
use janus_engine::cpu::bits;
use janus_engine::{CpuState, DescriptorTable, Segment};

/// Segment registers in encoding order (the `sreg` field of ModRM).
pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seg {
    pub selector: u16,
    pub base: u64,
    /// Limit in bytes, granularity applied.
    pub limit: u32,
    /// Type (bits 0..=3), S (4), DPL (5..=6), P (7), AVL (12), L (13), D/B (14), G (15): the
    /// descriptor's attribute bits in the VMX access-rights layout.
    pub attr: u16,
    /// Loaded with a null selector (data segments) or never loaded.
    pub unusable: bool,
}

pub const ATTR_S: u16 = 1 << 4;
pub const ATTR_P: u16 = 1 << 7;
pub const ATTR_L: u16 = 1 << 13;
pub const ATTR_DB: u16 = 1 << 14;
pub const ATTR_G: u16 = 1 << 15;

impl Seg {
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    pub fn type_(&self) -> u8 {
        (self.attr & 0xf) as u8
    }
    pub fn present(&self) -> bool {
        self.attr & ATTR_P != 0
    }
    pub fn long(&self) -> bool {
        self.attr & ATTR_L != 0
    }
    pub fn big(&self) -> bool {
        self.attr & ATTR_DB != 0
    }
    pub fn is_code(&self) -> bool {
        self.attr & ATTR_S != 0 && self.type_() & 8 != 0
    }

    /// A real-mode (or virtual-8086) segment: base = selector * 16, 64 KiB, read/write.
    pub fn real(selector: u16, code: bool) -> Seg {
        Seg {
            selector,
            base: (selector as u64) << 4,
            limit: 0xffff,
            attr: ATTR_P | ATTR_S | if code { 0xb } else { 0x3 },
            unusable: false,
        }
    }

    /// From a descriptor's two dwords (`high` is the upper half of a 16-byte system
    /// descriptor in long mode).
    pub fn from_descriptor(selector: u16, desc: u64, high: u64) -> Seg {
        let s = Segment::from_descriptor(selector, desc, high);
        Seg::from_segment(&s)
    }

    pub fn from_segment(s: &Segment) -> Seg {
        let attr = (s.type_ as u16 & 0xf)
            | (s.s as u16) << 4
            | ((s.dpl as u16) & 3) << 5
            | (s.present as u16) << 7
            | (s.avl as u16) << 12
            | (s.l as u16) << 13
            | (s.db as u16) << 14
            | (s.g as u16) << 15;
        Seg {
            selector: s.selector,
            base: s.base,
            limit: s.limit,
            attr,
            unusable: s.unusable,
        }
    }

    pub fn to_segment(&self) -> Segment {
        Segment {
            base: self.base,
            limit: self.limit,
            selector: self.selector,
            type_: self.type_(),
            present: self.present(),
            dpl: self.dpl(),
            db: self.big(),
            s: self.attr & ATTR_S != 0,
            l: self.long(),
            g: self.attr & ATTR_G != 0,
            avl: self.attr & (1 << 12) != 0,
            unusable: self.unusable,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dtr {
    pub base: u64,
    pub limit: u16,
}

/// Model-specific registers the soft CPU implements (the ones Linux touches).
#[derive(Clone, Debug, Default)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    pub apic_base: u64,
    pub misc_enable: u64,
    pub mtrr_def_type: u64,
    pub mtrr_fixed: [u64; 11],
    pub mtrr_var: [u64; 16],
    pub tsc_aux: u64,
    pub tsc_deadline: u64,
}

/// The CPU's execution mode, derived from CR0, EFER and CS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Real,
    /// Protected mode (16- or 32-bit code by CS.D).
    Protected,
    /// IA-32e compatibility mode (32- or 16-bit code under a 64-bit OS).
    Compat,
    /// 64-bit mode.
    Long,
}

/// Everything but memory and the FPU/SSE register file.
#[derive(Clone)]
pub struct Regs {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub flags: Flags,
    pub seg: [Seg; 6],
    pub ldtr: Seg,
    pub tr: Seg,
    pub gdtr: Dtr,
    pub idtr: Dtr,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub dr: [u64; 8],
    pub xcr0: u64,
    pub msr: Msrs,
    pub fpu: Fpu,
}

pub const CR4_TSD: u64 = 1 << 2;
pub const CR4_DE: u64 = 1 << 3;
pub const CR4_PSE: u64 = bits::CR4_PSE;
pub const CR4_PAE: u64 = bits::CR4_PAE;
pub const CR4_PGE: u64 = bits::CR4_PGE;
pub const CR4_OSFXSR: u64 = bits::CR4_OSFXSR;
pub const CR4_OSXMMEXCPT: u64 = bits::CR4_OSXMMEXCPT;
pub const CR4_FSGSBASE: u64 = 1 << 16;
pub const CR4_PCIDE: u64 = 1 << 17;

impl Regs {
    pub fn new() -> Regs {
        Regs {
            gpr: [0; 16],
            rip: 0,
            flags: Flags::default(),
            seg: [Seg::default(); 6],
            ldtr: Seg::default(),
            tr: Seg::default(),
            gdtr: Dtr::default(),
            idtr: Dtr::default(),
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400],
            xcr0: 1,
            // What firmware leaves for the OS: fast strings on, MTRRs enabled with write-back
            // as the default type (as the kvm engine sets them too).
            msr: Msrs {
                pat: 0x0007_0406_0007_0406,
                apic_base: 0xfee0_0000 | (1 << 11) | (1 << 8),
                misc_enable: 1,
                mtrr_def_type: (1 << 11) | 6,
                ..Default::default()
            },
            fpu: Fpu::default(),
        }
    }

    #[inline(always)]
    pub fn mode(&self) -> Mode {
        if self.cr0 & bits::CR0_PE == 0 {
            Mode::Real
        } else if self.efer & bits::EFER_LMA != 0 {
            if self.seg[CS].long() {
                Mode::Long
            } else {
                Mode::Compat
            }
        } else {
            Mode::Protected
        }
    }

    /// Default code size in bits: 16, 32 or 64.
    #[inline(always)]
    pub fn bitness(&self) -> u32 {
        match self.mode() {
            Mode::Long => 64,
            Mode::Real => 16,
            _ if self.seg[CS].big() => 32,
            _ => 16,
        }
    }

    /// Current privilege level.
    #[inline(always)]
    pub fn cpl(&self) -> u8 {
        match self.mode() {
            Mode::Real => 0,
            _ => self.seg[CS].dpl(),
        }
    }

    pub fn paging(&self) -> bool {
        self.cr0 & bits::CR0_PG != 0
    }

    pub fn long_mode_active(&self) -> bool {
        self.efer & bits::EFER_LMA != 0
    }

    pub fn from_state(s: &CpuState) -> Regs {
        let mut r = Regs::new();
        r.gpr = s.gprs;
        r.rip = s.rip;
        r.flags.load(s.rflags);
        let segs = [&s.es, &s.cs, &s.ss, &s.ds, &s.fs, &s.gs];
        for (i, seg) in segs.into_iter().enumerate() {
            r.seg[i] = Seg::from_segment(seg);
        }
        r.ldtr = Seg::from_segment(&s.ldt);
        r.tr = Seg::from_segment(&s.tr);
        r.gdtr = Dtr {
            base: s.gdt.base,
            limit: s.gdt.limit,
        };
        r.idtr = Dtr {
            base: s.idt.base,
            limit: s.idt.limit,
        };
        r.cr0 = s.cr0 | bits::CR0_ET;
        r.cr2 = s.cr2;
        r.cr3 = s.cr3;
        r.cr4 = s.cr4;
        r.cr8 = s.cr8;
        r.efer = s.efer;
        r
    }

    pub fn to_state(&self) -> CpuState {
        let seg = |i: usize| self.seg[i].to_segment();
        CpuState {
            gprs: self.gpr,
            rip: self.rip,
            rflags: self.flags.get(),
            es: seg(ES),
            cs: seg(CS),
            ss: seg(SS),
            ds: seg(DS),
            fs: seg(FS),
            gs: seg(GS),
            tr: self.tr.to_segment(),
            ldt: self.ldtr.to_segment(),
            gdt: DescriptorTable {
                base: self.gdtr.base,
                limit: self.gdtr.limit,
            },
            idt: DescriptorTable {
                base: self.idtr.base,
                limit: self.idtr.limit,
            },
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            cr8: self.cr8,
            efer: self.efer,
        }
    }
}

impl Default for Regs {
    fn default() -> Regs {
        Regs::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_modes() {
        let s = CpuState::power_on();
        let r = Regs::from_state(&s);
        assert_eq!(r.mode(), Mode::Real);
        assert_eq!(r.bitness(), 16);
        let back = r.to_state();
        assert_eq!(back.cs, s.cs);
        assert_eq!(back.rip, s.rip);
        let mut long = s.clone();
        long.cr0 |= bits::CR0_PE | bits::CR0_PG;
        long.efer = bits::EFER_LME | bits::EFER_LMA;
        long.cs.l = true;
        let r = Regs::from_state(&long);
        assert_eq!(r.mode(), Mode::Long);
        assert_eq!(r.bitness(), 64);
    }
}

//! Descriptor tables and loading segment registers, with the protected-mode checks.

use crate::core::{vector, Cpu, Fault, Stop};
use crate::cpu::{Mode, Seg, ATTR_P, ATTR_S, CS, SS};

/// Error code for a fault caused by `selector` (index and TI, RPL cleared).
pub fn sel_error(selector: u16) -> u32 {
    (selector & 0xfffc) as u32
}

impl Cpu {
    /// Linear address of the descriptor for `selector`, checked against the GDT/LDT limit.
    pub fn descriptor_addr(&self, selector: u16, wide: bool) -> Result<u64, Fault> {
        let (base, limit) = if selector & 4 != 0 {
            if self.r.ldtr.unusable {
                return Err(Fault::gp(sel_error(selector)));
            }
            (self.r.ldtr.base, self.r.ldtr.limit as u64)
        } else {
            (self.r.gdtr.base, self.r.gdtr.limit as u64)
        };
        let off = (selector & !7) as u64;
        let size = if wide { 16 } else { 8 };
        if off + size - 1 > limit {
            return Err(Fault::gp(sel_error(selector)));
        }
        Ok(base.wrapping_add(off))
    }

    /// Reads the 8-byte descriptor for `selector` (and the next 8 bytes when `wide`, for
    /// 16-byte system descriptors in long mode).
    pub fn read_descriptor(&mut self, selector: u16, wide: bool) -> Result<(u64, u64), Stop> {
        let addr = self.descriptor_addr(selector, wide)?;
        let low = self.read_sys::<u64>(addr)?;
        let high = if wide {
            self.read_sys::<u64>(addr + 8)?
        } else {
            0
        };
        Ok((low, high))
    }

    /// Sets the accessed bit of a code/data descriptor, as loading it does.
    pub fn set_accessed(&mut self, selector: u16, desc: u64) -> Result<(), Stop> {
        if desc & (1 << 40) == 0 {
            let addr = self.descriptor_addr(selector, false)?;
            self.write_sys::<u64>(addr, desc | (1 << 40))?;
        }
        Ok(())
    }

    /// MOV/POP to a data segment register or SS (and LDS and friends).
    pub fn load_data_seg(&mut self, sreg: usize, selector: u16) -> Result<(), Stop> {
        let mode = self.r.mode();
        if mode == Mode::Real || self.r.flags.bits & crate::flags::VM != 0 {
            let s = &mut self.r.seg[sreg];
            s.selector = selector;
            s.base = (selector as u64) << 4;
            s.unusable = false;
            if mode != Mode::Real {
                *s = Seg::real(selector, false);
            }
            return Ok(());
        }
        let cpl = self.cpl();
        let rpl = (selector & 3) as u8;
        if selector & !3 == 0 {
            // A null selector: fine for data segments; for SS only in 64-bit mode below CPL 3.
            if sreg == SS && !(self.long64 && cpl != 3 && rpl == cpl) {
                return Err(Fault::gp(0).into());
            }
            let s = &mut self.r.seg[sreg];
            *s = Seg {
                selector,
                unusable: true,
                ..Default::default()
            };
            if sreg == SS {
                s.attr = (cpl as u16) << 5;
            }
            return Ok(());
        }
        let (desc, _) = self.read_descriptor(selector, false)?;
        let seg = Seg::from_descriptor(selector, desc, 0);
        let t = seg.type_();
        let is_code = t & 8 != 0;
        let dpl = seg.dpl();
        if seg.attr & ATTR_S == 0 {
            return Err(Fault::gp(sel_error(selector)).into());
        }
        if sreg == SS {
            if rpl != cpl || dpl != cpl || is_code || t & 2 == 0 {
                return Err(Fault::gp(sel_error(selector)).into());
            }
            if seg.attr & ATTR_P == 0 {
                return Err(Fault::with_error(vector::SS, sel_error(selector)).into());
            }
        } else {
            let readable = !is_code || t & 2 != 0;
            let conforming = is_code && t & 4 != 0;
            if !readable || (!conforming && (dpl < cpl || dpl < rpl)) {
                return Err(Fault::gp(sel_error(selector)).into());
            }
            if seg.attr & ATTR_P == 0 {
                return Err(Fault::with_error(vector::NP, sel_error(selector)).into());
            }
        }
        self.set_accessed(selector, desc)?;
        let keep_base = self.long64 && sreg >= crate::cpu::FS;
        let old_base = self.r.seg[sreg].base;
        self.r.seg[sreg] = seg;
        if keep_base {
            // In 64-bit mode the descriptor gives only the low 32 bits; Linux sets the full
            // base through the MSRs after loading the selector.
            self.r.seg[sreg].base = seg.base & 0xffff_ffff;
            let _ = old_base;
        }
        Ok(())
    }

    /// Loads CS for a far transfer to a code segment (no call gates or task switches):
    /// checks type, privilege and presence; returns the new segment without installing it.
    pub fn check_code_seg(&mut self, selector: u16, new_cpl: Option<u8>) -> Result<Seg, Stop> {
        if selector & !3 == 0 {
            return Err(Fault::gp(0).into());
        }
        let (desc, _) = self.read_descriptor(selector, false)?;
        let seg = Seg::from_descriptor(selector, desc, 0);
        if seg.attr & ATTR_S == 0 || !seg.is_code() {
            return Err(Fault::gp(sel_error(selector)).into());
        }
        let cpl = new_cpl.unwrap_or_else(|| self.cpl());
        let conforming = seg.type_() & 4 != 0;
        let dpl = seg.dpl();
        if (conforming && dpl > cpl) || (!conforming && dpl != cpl) {
            return Err(Fault::gp(sel_error(selector)).into());
        }
        if seg.attr & ATTR_P == 0 {
            return Err(Fault::with_error(vector::NP, sel_error(selector)).into());
        }
        if self.r.long_mode_active() && seg.long() && seg.big() {
            return Err(Fault::gp(sel_error(selector)).into());
        }
        self.set_accessed(selector, desc)?;
        Ok(seg)
    }

    /// Installs a new CS with RPL = `cpl` and refreshes the cached mode.
    pub fn set_cs(&mut self, mut seg: Seg, cpl: u8) {
        seg.selector = (seg.selector & !3) | cpl as u16;
        // CPL is CS.DPL in Janus's model (conforming segments run at the caller's CPL).
        seg.attr = (seg.attr & !(3 << 5)) | ((cpl as u16) << 5);
        self.r.seg[CS] = seg;
        self.sync_mode();
    }
}

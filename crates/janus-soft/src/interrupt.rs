//! Delivering exceptions and interrupts through the IVT (real mode) or IDT (protected and long
//! mode), double and triple faults, and IRET.

use crate::core::{vector, Cpu, Fault, Stop};
use crate::cpu::{Mode, Seg, CS, SS};
use crate::exec::reg_put;
use crate::flags;
use crate::segments::sel_error;

/// Where an event comes from; it decides the return address, the DPL check and the EXT bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A fault: the return address is the faulting instruction.
    Exception,
    /// An external interrupt or NMI (between instructions).
    External,
    /// INT n, INT3, INTO: the return address is the next instruction; the gate's DPL is
    /// checked against CPL.
    Software,
    /// INT1 (ICEBP): like a software interrupt without the DPL check.
    Icebp,
}

fn contributory(v: u8) -> bool {
    matches!(
        v,
        vector::DE | vector::TS | vector::NP | vector::SS | vector::GP
    )
}

impl Cpu {
    /// Delivers `vector`, turning a fault during delivery into #DF and a fault during #DF into
    /// a triple fault (shutdown). RIP must be the return address for `source`.
    pub fn raise(&mut self, vector: u8, error: Option<u32>, source: Source) -> Result<(), Stop> {
        let first = match self.deliver(vector, error, source) {
            Ok(()) => return Ok(()),
            Err(Stop::Fault(f)) => f,
            Err(other) => return Err(other),
        };
        if vector == vector::DF {
            return Err(self.shutdown(format!(
                "triple fault: #{} while delivering a double fault",
                first.vector
            )));
        }
        let double = (contributory(vector) && contributory(first.vector))
            || (vector == vector::PF && (contributory(first.vector) || first.vector == vector::PF));
        let (v, e) = if double {
            (vector::DF, Some(0))
        } else {
            (first.vector, first.error)
        };
        match self.deliver(v, e, Source::Exception) {
            Ok(()) => Ok(()),
            Err(Stop::Fault(f)) if v == vector::DF => Err(self.shutdown(format!(
                "triple fault: #{} while delivering a double fault",
                f.vector
            ))),
            Err(Stop::Fault(f)) => {
                // The second event also failed: now it is a double fault.
                match self.deliver(vector::DF, Some(0), Source::Exception) {
                    Ok(()) => Ok(()),
                    Err(Stop::Fault(_)) => {
                        Err(self
                            .shutdown(format!("triple fault: #{} while delivering #{v}", f.vector)))
                    }
                    Err(o) => Err(o),
                }
            }
            Err(o) => Err(o),
        }
    }

    fn deliver(&mut self, vector: u8, error: Option<u32>, source: Source) -> Result<(), Stop> {
        match self.r.mode() {
            Mode::Real => self.deliver_real(vector),
            Mode::Long | Mode::Compat => self.deliver_long(vector, error, source),
            Mode::Protected => self.deliver_protected(vector, error, source),
        }
    }

    fn ext_bit(source: Source) -> u32 {
        (source == Source::External) as u32
    }

    fn deliver_real(&mut self, vector: u8) -> Result<(), Stop> {
        let off = vector as u64 * 4;
        if off + 3 > self.r.idtr.limit as u64 {
            return Err(Fault::gp(0).into());
        }
        let entry = self.read_sys::<u32>(self.r.idtr.base + off)?;
        let flags = self.r.flags.get();
        let cs = self.r.seg[CS].selector;
        let ip = self.r.rip;
        let sp = self.r.gpr[4];
        let push16 = |cpu: &mut Cpu, v: u64| crate::exec::push(cpu, 2, v);
        let res = (|| {
            push16(self, flags)?;
            push16(self, cs as u64)?;
            push16(self, ip)
        })();
        if let Err(e) = res {
            self.r.gpr[4] = sp;
            return Err(e);
        }
        self.r
            .flags
            .load(flags & !(flags::IF | flags::TF | flags::AC | flags::RF));
        let sel = (entry >> 16) as u16;
        self.r.seg[CS].selector = sel;
        self.r.seg[CS].base = (sel as u64) << 4;
        self.r.rip = (entry & 0xffff) as u64;
        Ok(())
    }

    /// Reads and checks the IDT gate for `vector`; returns (offset, selector, type, ist).
    fn gate(&mut self, vector: u8, source: Source, long: bool) -> Result<(u64, u16, u8, u8), Stop> {
        let size = if long { 16 } else { 8 };
        let idt_err = vector as u32 * 8 + 2 + Self::ext_bit(source);
        let off = vector as u64 * size;
        if off + size - 1 > self.r.idtr.limit as u64 {
            return Err(Fault::gp(idt_err).into());
        }
        let lo = self.read_sys::<u64>(self.r.idtr.base + off)?;
        let hi = if long {
            self.read_sys::<u64>(self.r.idtr.base + off + 8)?
        } else {
            0
        };
        let typ = ((lo >> 40) & 0x1f) as u8; // S bit + type
        let dpl = ((lo >> 45) & 3) as u8;
        let present = lo & (1 << 47) != 0;
        let valid = if long {
            matches!(typ, 0x0e | 0x0f)
        } else {
            matches!(typ, 0x06 | 0x07 | 0x0e | 0x0f | 0x05)
        };
        if !valid {
            return Err(Fault::gp(idt_err).into());
        }
        if source == Source::Software && dpl < self.cpl() {
            return Err(Fault::gp(idt_err).into());
        }
        if !present {
            return Err(Fault::with_error(vector::NP, idt_err).into());
        }
        if typ == 0x05 {
            return Err(self.fail(format!(
                "interrupt {vector} goes through a task gate; hardware task switching is not implemented"
            )));
        }
        let offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi & 0xffff_ffff) << 32;
        let sel = ((lo >> 16) & 0xffff) as u16;
        let ist = ((lo >> 32) & 7) as u8;
        Ok((offset, sel, typ, ist))
    }

    /// The handler's code segment from the gate selector; returns it and its privilege.
    fn handler_cs(&mut self, sel: u16, source: Source) -> Result<(Seg, u8), Stop> {
        let err = sel_error(sel) + Self::ext_bit(source);
        if sel & !3 == 0 {
            return Err(Fault::gp(Self::ext_bit(source)).into());
        }
        let (desc, _) = self.read_descriptor(sel, false)?;
        let seg = Seg::from_descriptor(sel, desc, 0);
        if !seg.is_code() || seg.dpl() > self.cpl() {
            return Err(Fault::gp(err).into());
        }
        if !seg.present() {
            return Err(Fault::with_error(vector::NP, err).into());
        }
        let conforming = seg.type_() & 4 != 0;
        let new_cpl = if conforming { self.cpl() } else { seg.dpl() };
        Ok((seg, new_cpl))
    }

    fn deliver_long(&mut self, vector: u8, error: Option<u32>, source: Source) -> Result<(), Stop> {
        let (offset, sel, typ, ist) = self.gate(vector, source, true)?;
        let (seg, new_cpl) = self.handler_cs(sel, source)?;
        if !seg.long() || seg.big() {
            return Err(Fault::gp(sel_error(sel)).into());
        }
        let old_cpl = self.cpl();
        let old_ss = self.r.seg[SS];
        let old_rsp = self.r.gpr[4];
        let tss = self.r.tr.base;
        let mut rsp = if ist != 0 {
            self.read_sys::<u64>(tss + 0x24 + (ist as u64 - 1) * 8)?
        } else if new_cpl < old_cpl {
            self.read_sys::<u64>(tss + 4 + new_cpl as u64 * 8)?
        } else {
            old_rsp
        };
        rsp &= !0xf;
        let rflags = self.r.flags.get();
        let frame: [u64; 6] = [
            old_ss.selector as u64,
            old_rsp,
            rflags,
            self.r.seg[CS].selector as u64,
            self.r.rip,
            error.unwrap_or(0) as u64,
        ];
        let n = if error.is_some() { 6 } else { 5 };
        // Write the frame with supervisor privilege at the new CPL's stack.
        let saved_idx = self.mmu_idx;
        self.mmu_idx = 0;
        let mut sp = rsp;
        let mut result = Ok(());
        for v in frame[..n].iter() {
            sp = sp.wrapping_sub(8);
            if let Err(e) = self.write_stack_sys(sp, 8, *v) {
                result = Err(e);
                break;
            }
        }
        self.mmu_idx = saved_idx;
        result?;
        if new_cpl < old_cpl {
            // SS becomes a null selector with RPL = new CPL.
            self.r.seg[SS] = Seg {
                selector: new_cpl as u16,
                unusable: true,
                attr: (new_cpl as u16) << 5 | crate::cpu::ATTR_P,
                ..Default::default()
            };
        }
        self.r.gpr[4] = sp;
        self.set_cs(seg, new_cpl);
        self.r.rip = offset;
        let mut f = rflags & !(flags::TF | flags::NT | flags::RF | flags::VM);
        if typ == 0x0e {
            f &= !flags::IF;
        }
        self.r.flags.load(f);
        Ok(())
    }

    /// A store for interrupt delivery: linear address, supervisor privilege.
    fn write_stack_sys(&mut self, lin: u64, size: u8, v: u64) -> Result<(), Stop> {
        match size {
            2 => self.write_sys::<u16>(lin, v as u16),
            4 => self.write_sys::<u32>(lin, v as u32),
            _ => self.write_sys::<u64>(lin, v),
        }
    }

    fn deliver_protected(
        &mut self,
        vector: u8,
        error: Option<u32>,
        source: Source,
    ) -> Result<(), Stop> {
        if self.r.flags.bits & flags::VM != 0 {
            return Err(self.fail("interrupt in virtual-8086 mode: not implemented".into()));
        }
        let (offset, sel, typ, _) = self.gate(vector, source, false)?;
        let (seg, new_cpl) = self.handler_cs(sel, source)?;
        let gate32 = typ & 8 != 0;
        let size: u8 = if gate32 { 4 } else { 2 };
        let old_cpl = self.cpl();
        let old_ss = self.r.seg[SS];
        let old_esp = self.r.gpr[4];
        let rflags = self.r.flags.get();
        let mut frame = Vec::with_capacity(6);
        let (new_ss, mut sp, ss_big) = if new_cpl < old_cpl {
            // Inner stack from the 32-bit TSS: ESPn at 4 + 8n, SSn at 8 + 8n.
            let tss = self.r.tr.base;
            let esp = self.read_sys::<u32>(tss + 4 + new_cpl as u64 * 8)? as u64;
            let ss_sel = self.read_sys::<u16>(tss + 8 + new_cpl as u64 * 8)?;
            if ss_sel & !3 == 0 {
                return Err(Fault::with_error(vector::TS, Self::ext_bit(source)).into());
            }
            let (desc, _) = self.read_descriptor(ss_sel, false)?;
            let ss = Seg::from_descriptor(ss_sel, desc, 0);
            if ss.is_code() || ss.type_() & 2 == 0 || ss.dpl() != new_cpl {
                return Err(Fault::with_error(vector::TS, sel_error(ss_sel)).into());
            }
            if !ss.present() {
                return Err(Fault::with_error(vector::SS, sel_error(ss_sel)).into());
            }
            frame.push(old_ss.selector as u64);
            frame.push(old_esp);
            let big = ss.big();
            (Some(ss), esp, big)
        } else {
            (None, old_esp, old_ss.big())
        };
        frame.push(rflags);
        frame.push(self.r.seg[CS].selector as u64);
        frame.push(self.r.rip);
        if let Some(e) = error {
            frame.push(e as u64);
        }
        let stack_base = new_ss.map_or(old_ss.base, |s| s.base);
        let spmask = if ss_big { 0xffff_ffff } else { 0xffff };
        let saved_idx = self.mmu_idx;
        self.mmu_idx = 0;
        let mut result = Ok(());
        for v in &frame {
            sp = sp.wrapping_sub(size as u64) & spmask;
            let lin = stack_base.wrapping_add(sp) & 0xffff_ffff;
            if let Err(e) = self.write_stack_sys(lin, size, *v) {
                result = Err(e);
                break;
            }
        }
        self.mmu_idx = saved_idx;
        result?;
        if let Some(ss) = new_ss {
            self.r.seg[SS] = ss;
            self.r.gpr[4] = sp;
        } else {
            reg_put(self, 4, if ss_big { 4 } else { 2 }, sp);
        }
        self.set_cs(seg, new_cpl);
        self.r.rip = if gate32 {
            offset & 0xffff_ffff
        } else {
            offset & 0xffff
        };
        let mut f = rflags & !(flags::TF | flags::NT | flags::RF | flags::VM);
        if typ & 1 == 0 {
            f &= !flags::IF;
        }
        self.r.flags.load(f);
        Ok(())
    }

    /// IRET/IRETD/IRETQ with operand size `size`.
    pub fn iret(&mut self, size: u8) -> Result<(), Stop> {
        use crate::exec::peek;
        match self.r.mode() {
            Mode::Real => {
                let ip = peek(self, size, 0)?;
                let cs = peek(self, size, size as u64)?;
                let fl = peek(self, size, 2 * size as u64)?;
                let sp = self.r.gpr[4].wrapping_add(3 * size as u64);
                crate::exec::set_sp(self, sp);
                let sel = cs as u16;
                self.r.seg[CS].selector = sel;
                self.r.seg[CS].base = (sel as u64) << 4;
                self.r.rip = ip & if size == 2 { 0xffff } else { 0xffff_ffff };
                let keep = if size == 2 {
                    !0xffff
                } else {
                    flags::VM | flags::VIP | flags::VIF
                };
                let cur = self.r.flags.get();
                self.r.flags.load((cur & keep) | (fl & !keep));
                Ok(())
            }
            mode => {
                if self.r.flags.bits & flags::NT != 0 && mode == Mode::Protected {
                    return Err(self.fail(
                        "IRET with NT set (task return): hardware task switching is not implemented".into(),
                    ));
                }
                let rip = peek(self, size, 0)?;
                let cs = peek(self, size, size as u64)? as u16;
                let fl = peek(self, size, 2 * size as u64)?;
                let cpl = self.cpl();
                let rpl = (cs & 3) as u8;
                if rpl < cpl {
                    return Err(Fault::gp(sel_error(cs)).into());
                }
                if fl & flags::VM != 0 && size == 4 && mode == Mode::Protected && cpl == 0 {
                    return Err(self.fail("IRET to virtual-8086 mode: not implemented".into()));
                }
                let seg = self.check_code_seg(cs, Some(rpl))?;
                // 64-bit mode always pops SS:RSP; otherwise only a return to an outer level does.
                let (new_sp, new_ss) = if mode == Mode::Long || rpl > cpl {
                    let sp = peek(self, size, 3 * size as u64)?;
                    let ss = peek(self, size, 4 * size as u64)? as u16;
                    (Some(sp), Some(ss))
                } else {
                    (None, None)
                };
                // Flags: as POPF at the old CPL, but IOPL and IF at CPL 0 only.
                let cur = self.r.flags.get();
                let mut changeable = flags::ARITH
                    | flags::TF
                    | flags::DF
                    | flags::NT
                    | flags::AC
                    | flags::ID
                    | flags::RF;
                if cpl == 0 {
                    changeable |= flags::IOPL | flags::VIF | flags::VIP;
                }
                if cpl <= self.r.flags.iopl() {
                    changeable |= flags::IF;
                }
                if size == 2 {
                    changeable &= 0xffff;
                }
                let new_flags = (cur & !changeable) | (fl & changeable);
                if let (Some(sp), Some(ss)) = (new_sp, new_ss) {
                    if ss & !3 == 0 {
                        // Null SS is allowed returning to 64-bit code below CPL 3.
                        if !(mode != Mode::Protected && seg.long() && rpl != 3) {
                            return Err(Fault::gp(0).into());
                        }
                        self.r.seg[SS] = Seg {
                            selector: ss,
                            unusable: true,
                            attr: (rpl as u16) << 5 | crate::cpu::ATTR_P,
                            ..Default::default()
                        };
                    } else {
                        let saved = self.r.seg[CS];
                        // Check SS against the new CPL.
                        self.r.seg[CS].attr = (saved.attr & !(3 << 5)) | ((rpl as u16) << 5);
                        let r = self.load_data_seg(SS, ss);
                        self.r.seg[CS] = saved;
                        r?;
                    }
                    self.set_cs(seg, rpl);
                    let w = if size == 8 || self.long64 {
                        8
                    } else if self.r.seg[SS].big() {
                        4
                    } else {
                        2
                    };
                    reg_put(self, 4, w, sp);
                } else {
                    let sp = self.r.gpr[4].wrapping_add(3 * size as u64);
                    crate::exec::set_sp(self, sp);
                    self.set_cs(seg, rpl);
                }
                self.r.rip = match size {
                    8 => rip,
                    4 => rip & 0xffff_ffff,
                    _ => rip & 0xffff,
                };
                self.r.flags.load(new_flags);
                if rpl > cpl {
                    // Data segments the new privilege may not use become null.
                    for s in [
                        crate::cpu::ES,
                        crate::cpu::DS,
                        crate::cpu::FS,
                        crate::cpu::GS,
                    ] {
                        let seg = self.r.seg[s];
                        let conforming_code = seg.is_code() && seg.type_() & 4 != 0;
                        if !seg.unusable && !conforming_code && seg.dpl() < rpl {
                            self.r.seg[s].unusable = true;
                            self.r.seg[s].selector = 0;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

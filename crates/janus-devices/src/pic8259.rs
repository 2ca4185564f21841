//! The PC's pair of i8259A programmable interrupt controllers (master at ports 0x20-0x21, slave
//! at 0xa0-0xa1, cascaded on the master's IRQ 2) and the PIIX edge/level control registers
//! (ELCR) at 0x4d0-0x4d1.
//!
//! Modelled: the ICW1-ICW4 initialization sequence (8086 mode; single mode and LTIM are
//! accepted), OCW1 masks, OCW2 EOIs (non-specific, specific, with rotation, set priority),
//! OCW3 register reads, poll mode and special mask mode, auto-EOI with optional rotation,
//! special fully nested mode, and the spurious IRQ 7 (or IRQ 15 through the cascade) that an
//! acknowledge gets when the request has gone away.
//!
//! Edge inputs latch the request on a rising edge and keep it until acknowledged, even if the
//! line falls first: devices that pulse their line (raise, lower at once) must not lose the
//! interrupt. Level inputs (ELCR bit set) make IRR follow the line.
//!
//! The pair knows nothing of the CPU: [`Pic8259Pair::int_output`] is the master's INT pin (to
//! the local APIC's LINT0) and [`Pic8259Pair::inta`] is the acknowledge cycle.

use janus_abi::pc::{ELCR, PIC_MASTER, PIC_SLAVE};

/// The master input the slave's INT output drives.
const CASCADE: u8 = 2;

/// ELCR bits that can be set: IRQ 0 (timer), 1 (keyboard) and 2 (cascade) on the master and
/// IRQ 8 (RTC) and 13 (FPU) on the slave are always edge-triggered on a PIIX.
const ELCR_WRITABLE: [u8; 2] = [0xf8, 0xde];

/// Where the next write to the data port goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitStep {
    /// Initialized: the data port is the mask register.
    Done,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
struct Pic {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register.
    imr: u8,
    /// Current level of each input (for edge detection, and so that an input already high at
    /// initialization needs a new rising edge).
    lines: u8,
    elcr: u8,
    elcr_writable: u8,
    /// ICW1 LTIM: every input level-triggered.
    ltim: bool,
    /// ICW2: vector of IRQ 0 (bits 7:3).
    base: u8,
    /// The input with the highest priority (rotation moves it).
    priority_base: u8,
    /// OCW3: a command-port read returns ISR (else IRR).
    read_isr: bool,
    /// OCW3: the next read is a poll.
    poll: bool,
    special_mask: bool,
    init: InitStep,
    expect_icw4: bool,
    single: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    is_master: bool,
}

impl Pic {
    fn new(is_master: bool) -> Pic {
        Pic {
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            elcr: 0,
            elcr_writable: ELCR_WRITABLE[usize::from(!is_master)],
            ltim: false,
            base: 0,
            priority_base: 0,
            read_isr: false,
            poll: false,
            special_mask: false,
            init: InitStep::Done,
            expect_icw4: false,
            single: false,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            is_master,
        }
    }

    /// Inputs that are level-triggered.
    fn level_mask(&self) -> u8 {
        if self.ltim {
            0xff
        } else {
            self.elcr
        }
    }

    fn set_input(&mut self, irq: u8, high: bool) {
        let bit = 1u8 << (irq & 7);
        let rising = high && self.lines & bit == 0;
        if high {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        if self.level_mask() & bit != 0 {
            if high {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if rising {
            self.irr |= bit;
        }
    }

    /// Priority (0 highest, 8 none) of the best input set in `mask`, given the rotation.
    fn priority(&self, mask: u8) -> u8 {
        (0..8)
            .find(|p| mask & (1 << ((p + self.priority_base) & 7)) != 0)
            .unwrap_or(8)
    }

    fn irq_at(&self, priority: u8) -> u8 {
        (priority + self.priority_base) & 7
    }

    /// The input this chip would signal on INT: the best unmasked request that outranks
    /// everything in service.
    fn pending(&self) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr);
        if p == 8 {
            return None;
        }
        let mut in_service = self.isr;
        // Special mask mode: a masked level in service no longer blocks other levels.
        if self.special_mask {
            in_service &= !self.imr;
        }
        // Special fully nested mode: the slave may interrupt its own in-service cascade level.
        if self.special_fully_nested && self.is_master {
            in_service &= !(1 << CASCADE);
        }
        (p < self.priority(in_service)).then(|| self.irq_at(p))
    }

    /// The acknowledge of `irq` (INTA or a poll read).
    fn intack(&mut self, irq: u8) {
        let bit = 1u8 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_base = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        // A level input keeps requesting while its line is high.
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
    }

    /// ICW1: everything but the ELCR and the input levels goes back to its initial state.
    fn icw1(&mut self, v: u8) {
        let keep = Pic::new(self.is_master);
        *self = Pic {
            lines: self.lines,
            elcr: self.elcr,
            ltim: v & 0x08 != 0,
            single: v & 0x02 != 0,
            expect_icw4: v & 0x01 != 0,
            init: InitStep::Icw2,
            ..keep
        };
        // Edge requests are forgotten (an input already high needs a new rising edge); level
        // requests are the lines themselves.
        self.irr = self.lines & self.level_mask();
    }

    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            self.icw1(v);
        } else if v & 0x08 != 0 {
            self.ocw3(v);
        } else {
            self.ocw2(v);
        }
    }

    fn ocw3(&mut self, v: u8) {
        if v & 0x04 != 0 {
            self.poll = true;
        }
        if v & 0x02 != 0 {
            self.read_isr = v & 0x01 != 0;
        }
        if v & 0x40 != 0 {
            self.special_mask = v & 0x20 != 0;
        }
    }

    fn ocw2(&mut self, v: u8) {
        let irq = v & 7;
        match v >> 5 {
            // Rotate in auto-EOI mode: clear (0) or set (4).
            0 => self.rotate_on_auto_eoi = false,
            4 => self.rotate_on_auto_eoi = true,
            // Non-specific EOI, optionally rotating: the highest-priority level in service.
            cmd @ (1 | 5) => {
                let p = self.priority(self.isr);
                if p != 8 {
                    let irq = self.irq_at(p);
                    self.isr &= !(1 << irq);
                    if cmd == 5 {
                        self.priority_base = (irq + 1) & 7;
                    }
                }
            }
            3 => self.isr &= !(1 << irq),
            // Set priority: `irq` becomes the lowest.
            6 => self.priority_base = (irq + 1) & 7,
            7 => {
                self.isr &= !(1 << irq);
                self.priority_base = (irq + 1) & 7;
            }
            _ => {} // 2: no operation
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init {
            InitStep::Done => self.imr = v,
            InitStep::Icw2 => {
                self.base = v & 0xf8;
                self.init = match (self.single, self.expect_icw4) {
                    (false, _) => InitStep::Icw3,
                    (true, true) => InitStep::Icw4,
                    (true, false) => InitStep::Done,
                };
            }
            // The cascade wiring of a PC is fixed; ICW3 only has to be consumed.
            InitStep::Icw3 => {
                self.init = if self.expect_icw4 {
                    InitStep::Icw4
                } else {
                    InitStep::Done
                };
            }
            InitStep::Icw4 => {
                // Bit 0 (8086 mode) is assumed; the MCS-80 CALL sequence is not modelled.
                self.auto_eoi = v & 0x02 != 0;
                self.special_fully_nested = v & 0x10 != 0;
                self.init = InitStep::Done;
            }
        }
    }

    fn poll_read(&mut self) -> u8 {
        self.poll = false;
        match self.pending() {
            Some(irq) => {
                self.intack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }

    fn read(&mut self, data_port: bool) -> u8 {
        if self.poll {
            return self.poll_read();
        }
        match (data_port, self.read_isr) {
            (true, _) => self.imr,
            (false, true) => self.isr,
            (false, false) => self.irr,
        }
    }
}

/// The master/slave pair with the ELCR, as wired on a PC.
#[derive(Clone, Debug)]
pub struct Pic8259Pair {
    master: Pic,
    slave: Pic,
}

impl Default for Pic8259Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic8259Pair {
    pub fn new() -> Pic8259Pair {
        Pic8259Pair {
            master: Pic::new(true),
            slave: Pic::new(false),
        }
    }

    /// Drives ISA IRQ `irq` (0..=15). IRQ 2 is the cascade, driven by the slave only, so an
    /// outside level on it (and any number above 15) is ignored.
    pub fn set_irq(&mut self, irq: u32, high: bool) {
        match irq {
            0..=7 if irq != u32::from(CASCADE) => self.master.set_input(irq as u8, high),
            8..=15 => self.slave.set_input(irq as u8 - 8, high),
            _ => return,
        }
        self.cascade();
    }

    /// The slave's INT output is the master's IRQ 2 input.
    fn cascade(&mut self) {
        let slave_int = self.slave.pending().is_some();
        self.master.set_input(CASCADE, slave_int);
    }

    /// The master's INT output: an interrupt is waiting for an acknowledge.
    pub fn int_output(&self) -> bool {
        self.master.pending().is_some()
    }

    /// The interrupt acknowledge cycle: the vector of the best request, or the spurious IRQ 7
    /// vector of the master (of the slave, IRQ 15, when the master saw the cascade request
    /// but the slave's request has gone) when there is none.
    pub fn inta(&mut self) -> u8 {
        let vector = match self.master.pending() {
            Some(CASCADE) => {
                let v = match self.slave.pending() {
                    Some(irq) => {
                        self.slave.intack(irq);
                        self.slave.base | irq
                    }
                    None => self.slave.base | 7,
                };
                self.master.intack(CASCADE);
                v
            }
            Some(irq) => {
                self.master.intack(irq);
                self.master.base | irq
            }
            None => self.master.base | 7,
        };
        self.cascade();
        vector
    }

    /// A read of `port` (0x20, 0x21, 0xa0, 0xa1, 0x4d0 or 0x4d1; others read 0xff).
    pub fn read_port(&mut self, port: u16) -> u8 {
        let v = match port {
            PIC_MASTER | 0x21 => self.master.read(port & 1 != 0),
            PIC_SLAVE | 0xa1 => self.slave.read(port & 1 != 0),
            ELCR => self.master.elcr,
            0x4d1 => self.slave.elcr,
            _ => return 0xff,
        };
        // A poll read acknowledges, which can change the slave's INT.
        self.cascade();
        v
    }

    /// A write of `v` to `port` (as for [`Pic8259Pair::read_port`]; others are ignored).
    pub fn write_port(&mut self, port: u16, v: u8) {
        match port {
            PIC_MASTER => self.master.write_command(v),
            0x21 => self.master.write_data(v),
            PIC_SLAVE => self.slave.write_command(v),
            0xa1 => self.slave.write_data(v),
            ELCR => set_elcr(&mut self.master, v),
            0x4d1 => set_elcr(&mut self.slave, v),
            _ => return,
        }
        self.cascade();
    }
}

fn set_elcr(pic: &mut Pic, v: u8) {
    pic.elcr = v & pic.elcr_writable;
    // A newly level input requests exactly while its line is high.
    let level = pic.level_mask();
    pic.irr = (pic.irr & !level) | (pic.lines & level);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's init_8259A(auto_eoi): ICW1 0x11, ICW2 base, ICW3 cascade, ICW4 8086 mode.
    fn linux_init(pic: &mut Pic8259Pair, auto_eoi: bool) {
        pic.write_port(0x21, 0xff);
        pic.write_port(0xa1, 0xff);
        pic.write_port(0x20, 0x11);
        pic.write_port(0x21, 0x20);
        pic.write_port(0x21, 1 << 2);
        pic.write_port(0x21, if auto_eoi { 0x03 } else { 0x01 });
        pic.write_port(0xa0, 0x11);
        pic.write_port(0xa1, 0x28);
        pic.write_port(0xa1, 2);
        pic.write_port(0xa1, 0x01);
        // All unmasked but for what a test masks itself.
        pic.write_port(0x21, 0x00);
        pic.write_port(0xa1, 0x00);
    }

    fn linux_pic() -> Pic8259Pair {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic, false);
        pic
    }

    fn pulse(pic: &mut Pic8259Pair, irq: u32) {
        pic.set_irq(irq, true);
        pic.set_irq(irq, false);
    }

    fn read_isr(pic: &mut Pic8259Pair, cmd: u16) -> u8 {
        pic.write_port(cmd, 0x0b);
        let v = pic.read_port(cmd);
        pic.write_port(cmd, 0x0a);
        v
    }

    #[test]
    fn linux_init_sequence_and_masks() {
        let mut pic = Pic8259Pair::new();
        // probe_8259A: the mask register reads back.
        pic.write_port(0x21, 0xa5);
        assert_eq!(pic.read_port(0x21), 0xa5);
        linux_init(&mut pic, false);
        pic.write_port(0x21, 0xfb);
        pic.write_port(0xa1, 0xff);
        assert_eq!(pic.read_port(0x21), 0xfb);
        assert_eq!(pic.read_port(0xa1), 0xff);
        pulse(&mut pic, 1);
        assert!(!pic.int_output(), "masked");
        pic.write_port(0x21, 0xf9);
        assert!(pic.int_output(), "latched edge delivered once unmasked");
        assert_eq!(pic.inta(), 0x21);
    }

    #[test]
    fn edge_inta_and_eoi() {
        let mut pic = linux_pic();
        assert!(!pic.int_output());
        pulse(&mut pic, 4);
        assert!(pic.int_output());
        assert_eq!(
            pic.read_port(0x20),
            0x10,
            "IRR after reset of OCW3 reads IRR"
        );
        assert_eq!(pic.inta(), 0x24);
        assert!(!pic.int_output());
        assert_eq!(read_isr(&mut pic, 0x20), 0x10);
        assert_eq!(pic.read_port(0x20), 0, "IRR cleared by INTA");
        // A new edge while in service waits for the EOI.
        pulse(&mut pic, 4);
        assert!(!pic.int_output());
        pic.write_port(0x20, 0x20);
        assert_eq!(read_isr(&mut pic, 0x20), 0);
        assert!(pic.int_output());
        assert_eq!(pic.inta(), 0x24);
        // Specific EOI (what Linux's mask_and_ack_8259A sends).
        pic.write_port(0x20, 0x60 | 4);
        assert_eq!(read_isr(&mut pic, 0x20), 0);
        // A line held high gives one edge only.
        pic.set_irq(4, true);
        assert_eq!(pic.inta(), 0x24);
        pic.write_port(0x20, 0x20);
        assert!(!pic.int_output());
    }

    #[test]
    fn priority_irq0_over_irq1_and_nesting() {
        let mut pic = linux_pic();
        pulse(&mut pic, 1);
        pulse(&mut pic, 0);
        assert_eq!(pic.inta(), 0x20);
        // IRQ 1 is lower than IRQ 0 in service.
        assert!(!pic.int_output());
        pic.write_port(0x20, 0x20);
        assert_eq!(pic.inta(), 0x21);
        // A higher priority nests over a lower one in service.
        pulse(&mut pic, 0);
        assert!(pic.int_output());
        assert_eq!(pic.inta(), 0x20);
        assert_eq!(read_isr(&mut pic, 0x20), 0x03);
        // Non-specific EOI ends the highest (IRQ 0) first.
        pic.write_port(0x20, 0x20);
        assert_eq!(read_isr(&mut pic, 0x20), 0x02);
    }

    #[test]
    fn rotation_changes_priority() {
        let mut pic = linux_pic();
        pulse(&mut pic, 0);
        assert_eq!(pic.inta(), 0x20);
        // Rotate on non-specific EOI: IRQ 0 becomes the lowest.
        pic.write_port(0x20, 0xa0);
        pulse(&mut pic, 0);
        pulse(&mut pic, 3);
        assert_eq!(pic.inta(), 0x23);
        pic.write_port(0x20, 0x20);
        assert_eq!(pic.inta(), 0x20);
        pic.write_port(0x20, 0x20);
        // Set priority: IRQ 5 lowest, so IRQ 6 is the highest.
        pic.write_port(0x20, 0xc5);
        pulse(&mut pic, 5);
        pulse(&mut pic, 7);
        pulse(&mut pic, 6);
        assert_eq!(pic.inta(), 0x26);
        // Rotate on specific EOI of 6: 7 now highest.
        pic.write_port(0x20, 0xe6);
        assert_eq!(pic.inta(), 0x27);
    }

    #[test]
    fn slave_cascade() {
        let mut pic = linux_pic();
        pulse(&mut pic, 8);
        assert!(pic.int_output());
        assert_eq!(pic.inta(), 0x28);
        assert_eq!(read_isr(&mut pic, 0xa0), 0x01);
        assert_eq!(read_isr(&mut pic, 0x20), 0x04);
        // Linux EOIs the slave, then the master's cascade level.
        pic.write_port(0xa0, 0x60);
        pic.write_port(0x20, 0x62);
        assert_eq!(read_isr(&mut pic, 0xa0), 0);
        assert_eq!(read_isr(&mut pic, 0x20), 0);
        // A slave input masked at the master's cascade input is not seen.
        pic.write_port(0x21, 0x04);
        pulse(&mut pic, 14);
        assert!(!pic.int_output());
        pic.write_port(0x21, 0x00);
        assert_eq!(pic.inta(), 0x2e);
        // IRQ 0 outranks the whole slave (cascade is master level 2).
        pic.write_port(0xa0, 0x20);
        pic.write_port(0x20, 0x20);
        pulse(&mut pic, 9);
        pulse(&mut pic, 0);
        assert_eq!(pic.inta(), 0x20);
        pic.write_port(0x20, 0x20);
        assert_eq!(pic.inta(), 0x29);
    }

    #[test]
    fn elcr_level_triggered() {
        let mut pic = linux_pic();
        // IRQs 0, 1, 2, 8, 13 stay edge.
        pic.write_port(0x4d0, 0xff);
        pic.write_port(0x4d1, 0xff);
        assert_eq!(pic.read_port(0x4d0), 0xf8);
        assert_eq!(pic.read_port(0x4d1), 0xde);
        pic.write_port(0x4d0, 0x20);
        pic.write_port(0x4d1, 0x02);
        // IRR follows a level line; an acknowledged level input requests again after the
        // EOI while its line stays high.
        pic.set_irq(5, true);
        assert_eq!(pic.inta(), 0x25);
        assert_eq!(pic.read_port(0x20) & 0x20, 0x20, "IRR stays with the line");
        pic.write_port(0x20, 0x20);
        assert!(pic.int_output());
        assert_eq!(pic.inta(), 0x25);
        pic.set_irq(5, false);
        pic.write_port(0x20, 0x20);
        assert!(!pic.int_output());
        // A level input on the slave (the SCI on IRQ 9).
        pic.set_irq(9, true);
        assert_eq!(pic.inta(), 0x29);
        pic.set_irq(9, false);
        pic.write_port(0xa0, 0x20);
        pic.write_port(0x20, 0x20);
        assert!(!pic.int_output());
    }

    #[test]
    fn spurious_irq7_and_irq15() {
        let mut pic = linux_pic();
        pic.write_port(0x4d0, 0x20);
        pic.set_irq(5, true);
        assert!(pic.int_output());
        pic.set_irq(5, false);
        assert!(!pic.int_output());
        // The CPU acknowledges anyway: IRQ 7, with nothing put in service.
        assert_eq!(pic.inta(), 0x27);
        assert_eq!(read_isr(&mut pic, 0x20), 0);
        // On the slave: the master latched the cascade edge, the slave's level went away.
        pic.write_port(0x4d1, 0x08);
        pic.set_irq(11, true);
        pic.set_irq(11, false);
        assert!(pic.int_output());
        assert_eq!(pic.inta(), 0x2f);
        assert_eq!(read_isr(&mut pic, 0xa0), 0, "slave puts nothing in service");
        assert_eq!(
            read_isr(&mut pic, 0x20),
            0x04,
            "master's cascade is in service"
        );
        pic.write_port(0x20, 0x20);
        assert!(!pic.int_output());
    }

    #[test]
    fn ocw3_reads_and_poll() {
        let mut pic = linux_pic();
        pic.write_port(0x21, 0xff);
        pulse(&mut pic, 3);
        pulse(&mut pic, 6);
        pic.write_port(0x20, 0x0a);
        assert_eq!(pic.read_port(0x20), 0x48, "IRR shows masked requests");
        pic.write_port(0x20, 0x0b);
        assert_eq!(pic.read_port(0x20), 0);
        assert_eq!(pic.read_port(0x21), 0xff, "data port reads IMR");
        pic.write_port(0x21, 0x00);
        // Poll: acknowledges the best request and reports it with bit 7.
        pic.write_port(0x20, 0x0c);
        assert_eq!(pic.read_port(0x20), 0x83);
        assert_eq!(read_isr(&mut pic, 0x20), 0x08);
        pic.write_port(0x20, 0x0c);
        assert_eq!(pic.read_port(0x20), 0, "IRQ 6 is below IRQ 3 in service");
        pic.write_port(0x20, 0x20);
        pic.write_port(0x20, 0x0c);
        assert_eq!(pic.read_port(0x20), 0x86);
        // The poll is one read only.
        pic.write_port(0x20, 0x0a);
        assert_eq!(pic.read_port(0x20), 0);
    }

    #[test]
    fn special_mask_mode() {
        let mut pic = linux_pic();
        pulse(&mut pic, 3);
        assert_eq!(pic.inta(), 0x23);
        pulse(&mut pic, 5);
        assert!(!pic.int_output(), "IRQ 5 is blocked by IRQ 3 in service");
        // Mask IRQ 3 and enter special mask mode: lower levels may interrupt.
        pic.write_port(0x21, 0x08);
        pic.write_port(0x20, 0x68);
        assert!(pic.int_output());
        assert_eq!(pic.inta(), 0x25);
        pic.write_port(0x20, 0x48);
        pic.write_port(0x20, 0x65);
        assert!(!pic.int_output());
    }

    #[test]
    fn auto_eoi() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic, true);
        pulse(&mut pic, 0);
        assert_eq!(pic.inta(), 0x20);
        assert_eq!(
            read_isr(&mut pic, 0x20),
            0,
            "auto-EOI leaves nothing in service"
        );
        pulse(&mut pic, 1);
        assert!(pic.int_output(), "no EOI needed");
        assert_eq!(pic.inta(), 0x21);
        // Rotate in auto-EOI mode: the acknowledged level becomes the lowest.
        pic.write_port(0x20, 0x80);
        pulse(&mut pic, 1);
        assert_eq!(pic.inta(), 0x21);
        pulse(&mut pic, 0);
        pulse(&mut pic, 1);
        pulse(&mut pic, 3);
        assert_eq!(pic.inta(), 0x23);
        pic.write_port(0x20, 0x00);
        assert_eq!(
            pic.inta(),
            0x20,
            "priority after IRQ 3 rotation: 4..7, 0, 1"
        );
    }

    #[test]
    fn reinit_forgets_edges_and_needs_new_edge() {
        let mut pic = linux_pic();
        pic.set_irq(4, true);
        assert!(pic.int_output());
        linux_init(&mut pic, false);
        assert!(!pic.int_output(), "ICW1 resets edge sense");
        pic.set_irq(4, false);
        pic.set_irq(4, true);
        assert_eq!(pic.inta(), 0x24);
    }

    #[test]
    fn hostile_values_do_not_panic() {
        let mut pic = Pic8259Pair::new();
        for port in [0x20u16, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22, 0xffff] {
            for v in 0..=255u8 {
                pic.write_port(port, v);
                pic.read_port(port);
                pic.inta();
            }
        }
        for irq in [2u32, 16, 255, u32::MAX] {
            pic.set_irq(irq, true);
        }
        assert_eq!(pic.read_port(0x22), 0xff);
    }

    #[test]
    fn single_mode_without_icw4() {
        let mut pic = Pic8259Pair::new();
        pic.write_port(0x20, 0x12); // single, no ICW4
        pic.write_port(0x21, 0x40);
        // The next data write is the mask again.
        pic.write_port(0x21, 0xfe);
        assert_eq!(pic.read_port(0x21), 0xfe);
        pulse(&mut pic, 0);
        assert_eq!(pic.inta(), 0x40);
    }
}

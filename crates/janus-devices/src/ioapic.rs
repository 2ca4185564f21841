//! An 82093AA-style I/O APIC (version 0x11, 24 redirection entries) at 0xfec00000: IOREGSEL
//! at offset 0x00 selects a register, IOWIN at 0x10 reads and writes it.
//!
//! Modelled: ID, version and arbitration registers; per pin: vector, delivery mode, physical
//! or logical destination, polarity (stored only, see below), trigger mode, mask and remote
//! IRR. An edge pin sends a message on each rising edge while unmasked (edges on a masked pin
//! are lost, as on the 82093AA). A level pin sends one while its line is asserted, unmasked and
//! remote IRR is clear; the message sets remote IRR, and the local APIC's EOI broadcast for
//! the vector clears it and sends again if the line is still asserted. Rewriting an entry as
//! edge-triggered clears remote IRR, which Linux relies on for I/O APICs without an EOI
//! register (version below 0x20).
//!
//! Lines are logical: `set_line(pin, true)` means the source asserts its request, whatever
//! the wire's polarity. The polarity bit describes the wire on real boards and is kept for the
//! guest to read back; inverting by it would make an idle active-low line (the SCI) fire
//! forever. QEMU and KVM do the same.

use crate::lapic::{ApicBus, ApicMessage, DeliveryMode, Destination};

/// Version register: version 0x11, highest redirection entry 23.
pub const VERSION: u32 = 0x0017_0011;
/// Number of pins.
pub const PINS: usize = 24;

/// MMIO offsets.
pub const IOREGSEL: u64 = 0x00;
pub const IOWIN: u64 = 0x10;

const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIR: u8 = 0x10;

const RTE_DEST_LOGICAL: u64 = 1 << 11;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
/// Low dword: all but delivery status (bit 12) and remote IRR (bit 14), which are read-only.
const RTE_WRITABLE_LOW: u64 = 0x0001_afff;
/// High dword: the destination field (bits 63:56).
const RTE_WRITABLE_HIGH: u64 = 0xff00_0000 << 32;

/// The I/O APIC.
#[derive(Clone, Debug)]
pub struct IoApic {
    id: u8,
    select: u8,
    redir: [u64; PINS],
    /// Asserted inputs.
    lines: u32,
}

impl IoApic {
    /// An I/O APIC with `id` (bits 3:0 used) and every entry masked.
    pub fn new(id: u8) -> IoApic {
        IoApic {
            id: id & 0xf,
            select: 0,
            redir: [RTE_MASKED; PINS],
            lines: 0,
        }
    }

    /// Drives input `pin` (pins above 23 are ignored).
    pub fn set_line(&mut self, pin: u32, high: bool, bus: &mut dyn ApicBus) {
        let Some(bit) = pin_bit(pin) else { return };
        let rising = high && self.lines & bit == 0;
        if high {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        let pin = pin as usize;
        if self.redir[pin] & RTE_LEVEL != 0 {
            self.service_level(pin, bus);
        } else if rising {
            self.send(pin, bus);
        }
    }

    /// The local APICs ended level-triggered `vector`: entries waiting on it may send again.
    pub fn eoi(&mut self, vector: u8, bus: &mut dyn ApicBus) {
        for pin in 0..PINS {
            let e = self.redir[pin];
            if e & RTE_LEVEL != 0 && e & RTE_REMOTE_IRR != 0 && e as u8 == vector {
                self.redir[pin] &= !RTE_REMOTE_IRR;
                self.service_level(pin, bus);
            }
        }
    }

    /// Sends a level pin's message if it is asserted, unmasked and not already in service.
    fn service_level(&mut self, pin: usize, bus: &mut dyn ApicBus) {
        let e = self.redir[pin];
        let asserted = self.lines & (1 << pin) != 0;
        if !asserted || e & RTE_REMOTE_IRR != 0 {
            return;
        }
        if self.send(pin, bus) && self.uses_remote_irr(pin) {
            self.redir[pin] |= RTE_REMOTE_IRR;
        }
    }

    /// Only fixed and lowest-priority level messages are acknowledged by an EOI; the other
    /// modes behave as edge-triggered.
    fn uses_remote_irr(&self, pin: usize) -> bool {
        let mode = DeliveryMode::from_bits(self.redir[pin] as u32);
        matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
    }

    /// Sends pin's message unless masked; whether some local APIC accepted it.
    fn send(&mut self, pin: usize, bus: &mut dyn ApicBus) -> bool {
        let e = self.redir[pin];
        if e & RTE_MASKED != 0 {
            return false;
        }
        let dest = (e >> 56) as u8;
        let msg = ApicMessage {
            vector: e as u8,
            mode: DeliveryMode::from_bits(e as u32),
            dest: if e & RTE_DEST_LOGICAL != 0 {
                Destination::Logical(dest)
            } else {
                Destination::Physical(dest)
            },
            level: e & RTE_LEVEL != 0 && self.uses_remote_irr(pin),
        };
        bus.deliver(&msg)
    }

    /// A 32-bit read at `offset` in the MMIO window (the caller checks the width).
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            IOREGSEL => u32::from(self.select),
            IOWIN => self.read_register(self.select),
            _ => 0,
        }
    }

    /// A 32-bit write at `offset` in the MMIO window (the caller checks the width).
    pub fn write(&mut self, offset: u64, value: u32, bus: &mut dyn ApicBus) {
        match offset {
            IOREGSEL => self.select = value as u8,
            IOWIN => self.write_register(self.select, value, bus),
            _ => {}
        }
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID | REG_ARBITRATION => u32::from(self.id) << 24,
            REG_VERSION => VERSION,
            _ => match redir_slot(index) {
                Some((pin, high)) => {
                    let e = self.redir[pin];
                    if high {
                        (e >> 32) as u32
                    } else {
                        e as u32
                    }
                }
                None => 0,
            },
        }
    }

    fn write_register(&mut self, index: u8, value: u32, bus: &mut dyn ApicBus) {
        if index == REG_ID {
            self.id = ((value >> 24) & 0xf) as u8;
            return;
        }
        let Some((pin, high)) = redir_slot(index) else {
            return;
        };
        let (writable, new) = if high {
            (RTE_WRITABLE_HIGH, u64::from(value) << 32)
        } else {
            (RTE_WRITABLE_LOW, u64::from(value))
        };
        let mut e = (self.redir[pin] & !writable) | (new & writable);
        if e & RTE_LEVEL == 0 {
            e &= !RTE_REMOTE_IRR;
        }
        self.redir[pin] = e;
        // An unmasked level entry whose line is already asserted sends now.
        if e & RTE_LEVEL != 0 {
            self.service_level(pin, bus);
        }
    }

    /// The raw redirection entry of `pin` (for tests and diagnostics).
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.redir.get(pin).copied()
    }
}

fn pin_bit(pin: u32) -> Option<u32> {
    (pin < PINS as u32).then(|| 1 << pin)
}

/// Pin and half (high dword?) of redirection register `index`.
fn redir_slot(index: u8) -> Option<(usize, bool)> {
    let i = usize::from(index.checked_sub(REG_REDIR)?);
    (i < 2 * PINS).then_some((i / 2, i % 2 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records deliveries; accepts messages for physical APIC 0 or logical bit 0.
    #[derive(Default)]
    struct Sink {
        got: Vec<ApicMessage>,
    }

    impl ApicBus for Sink {
        fn deliver(&mut self, msg: &ApicMessage) -> bool {
            let ours = match msg.dest {
                Destination::Physical(d) => d == 0 || d == 0xff,
                Destination::Logical(m) => m & 1 != 0,
                _ => false,
            };
            if ours {
                self.got.push(*msg);
            }
            ours
        }
    }

    fn program(io: &mut IoApic, pin: u8, low: u32, high: u32, sink: &mut Sink) {
        io.write(IOREGSEL, u32::from(REG_REDIR + 2 * pin + 1), sink);
        io.write(IOWIN, high, sink);
        io.write(IOREGSEL, u32::from(REG_REDIR + 2 * pin), sink);
        io.write(IOWIN, low, sink);
    }

    fn read_reg(io: &mut IoApic, index: u8, sink: &mut Sink) -> u32 {
        io.write(IOREGSEL, u32::from(index), sink);
        io.read(IOWIN)
    }

    #[test]
    fn id_version_arbitration() {
        let mut s = Sink::default();
        let mut io = IoApic::new(2);
        assert_eq!(read_reg(&mut io, 0, &mut s), 2 << 24);
        assert_eq!(read_reg(&mut io, 1, &mut s), 0x0017_0011);
        assert_eq!(read_reg(&mut io, 2, &mut s), 2 << 24);
        io.write(IOWIN, 0xffff_ffff, &mut s); // arbitration is read-only
        assert_eq!(read_reg(&mut io, 2, &mut s), 2 << 24);
        io.write(IOREGSEL, 0, &mut s);
        io.write(IOWIN, 0x0500_0000, &mut s);
        assert_eq!(read_reg(&mut io, 0, &mut s), 5 << 24);
        assert_eq!(io.read(IOREGSEL), 0);
        // Entries reset masked; registers past entry 23 read 0.
        assert_eq!(read_reg(&mut io, 0x10, &mut s), 1 << 16);
        assert_eq!(read_reg(&mut io, 0x3f, &mut s), 0);
        assert_eq!(read_reg(&mut io, 0x40, &mut s), 0);
        assert_eq!(read_reg(&mut io, 0xff, &mut s), 0);
    }

    #[test]
    fn edge_entry_delivers_vector() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0);
        program(&mut io, 4, 0x31, 0, &mut s);
        assert_eq!(read_reg(&mut io, 0x18, &mut s), 0x31);
        io.set_line(4, true, &mut s);
        io.set_line(4, true, &mut s);
        io.set_line(4, false, &mut s);
        assert_eq!(
            s.got,
            vec![ApicMessage {
                vector: 0x31,
                mode: DeliveryMode::Fixed,
                dest: Destination::Physical(0),
                level: false
            }]
        );
        // Logical destination (Linux's flat mode), lowest priority.
        program(&mut io, 4, 0x31 | (1 << 8) | (1 << 11), 0x0100_0000, &mut s);
        io.set_line(4, true, &mut s);
        assert_eq!(s.got[1].dest, Destination::Logical(1));
        assert_eq!(s.got[1].mode, DeliveryMode::LowestPriority);
    }

    #[test]
    fn masked_entries_drop_edges() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0);
        program(&mut io, 2, 0x30 | (1 << 16), 0, &mut s);
        io.set_line(2, true, &mut s);
        io.set_line(2, false, &mut s);
        program(&mut io, 2, 0x30, 0, &mut s);
        assert!(s.got.is_empty(), "an edge on a masked pin is lost");
        io.set_line(2, true, &mut s);
        assert_eq!(s.got.len(), 1);
    }

    #[test]
    fn level_remote_irr_until_eoi() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0);
        program(&mut io, 9, 0x39 | (1 << 15) | (1 << 13), 0, &mut s);
        io.set_line(9, true, &mut s);
        assert_eq!(s.got.len(), 1);
        assert!(s.got[0].level);
        assert_ne!(read_reg(&mut io, 0x22, &mut s) & (1 << 14), 0, "remote IRR");
        // Held: no more messages while remote IRR is set.
        io.set_line(9, false, &mut s);
        io.set_line(9, true, &mut s);
        assert_eq!(s.got.len(), 1);
        // An EOI for another vector does nothing.
        io.eoi(0x40, &mut s);
        assert_eq!(s.got.len(), 1);
        // EOI with the line still asserted: sent again.
        io.eoi(0x39, &mut s);
        assert_eq!(s.got.len(), 2);
        io.set_line(9, false, &mut s);
        io.eoi(0x39, &mut s);
        assert_eq!(s.got.len(), 2);
        assert_eq!(read_reg(&mut io, 0x22, &mut s) & (1 << 14), 0);
    }

    #[test]
    fn level_masked_then_unmasked_sends() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0);
        program(&mut io, 20, 0x50 | (1 << 15) | (1 << 16), 0, &mut s);
        io.set_line(20, true, &mut s);
        assert!(s.got.is_empty());
        program(&mut io, 20, 0x50 | (1 << 15), 0, &mut s);
        assert_eq!(s.got.len(), 1);
    }

    #[test]
    fn rewrite_as_edge_clears_remote_irr() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0);
        let level = 0x39 | (1 << 15);
        program(&mut io, 9, level, 0, &mut s);
        io.set_line(9, true, &mut s);
        io.set_line(9, false, &mut s);
        // Linux's __eoi_ioapic_pin for version 0x11: mask + edge, then restore.
        program(&mut io, 9, 0x39 | (1 << 16), 0, &mut s);
        assert_eq!(read_reg(&mut io, 0x22, &mut s) & (1 << 14), 0);
        program(&mut io, 9, level, 0, &mut s);
        io.set_line(9, true, &mut s);
        assert_eq!(s.got.len(), 2);
    }

    #[test]
    fn undelivered_level_sets_no_remote_irr() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0);
        program(&mut io, 10, 0x3a | (1 << 15), 7 << 24, &mut s);
        io.set_line(10, true, &mut s);
        assert!(s.got.is_empty());
        assert_eq!(read_reg(&mut io, 0x24, &mut s) & (1 << 14), 0);
        // Retargeted at APIC 0 while asserted: sends on the rewrite.
        program(&mut io, 10, 0x3a | (1 << 15), 0, &mut s);
        assert_eq!(s.got.len(), 1);
    }

    #[test]
    fn hostile_values() {
        let mut s = Sink::default();
        let mut io = IoApic::new(0xff);
        assert_eq!(read_reg(&mut io, 0, &mut s), 0x0f << 24);
        for index in 0..=255u32 {
            io.write(IOREGSEL, index, &mut s);
            io.write(IOWIN, 0xffff_ffff, &mut s);
            io.read(IOWIN);
        }
        for off in [4u64, 8, 0x14, 0x40, 0xfff, u64::MAX] {
            io.write(off, 0xffff_ffff, &mut s);
            assert_eq!(io.read(off), 0);
        }
        io.set_line(24, true, &mut s);
        io.set_line(u32::MAX, true, &mut s);
        // Read-only bits stayed clear for edge entries.
        assert_eq!(io.entry(0).unwrap() & (1 << 12), 0);
    }
}

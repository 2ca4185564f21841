//! The i8042 keyboard controller with a PS/2 keyboard on its first port, as a PC has it: the
//! command byte (CTR), self tests, the output port with the CPU reset line, and a keyboard
//! that answers the commands Linux's atkbd sends (reset, identify, LEDs, scan-code set,
//! typematic rate). No keys are ever pressed: the console is the UART. The second (AUX,
//! mouse) port is absent and the controller says so, as a PC without a PS/2 mouse port does.
//!
//! Written by hand: vm-superio's i8042 implements only the reset command, and Linux reading
//! back the command byte (0x20) is what makes its driver bind rather than time out.
//! Data leave through one output buffer; its "full" flag drives IRQ 1 when the command byte
//! enables keyboard interrupts (the lines are edge-triggered ISA IRQs; the level follows the
//! buffer as QEMU models it).

use crate::bus::BusDevice;
use crate::control::{StopRequest, VmControl};
use janus_engine::IrqLine;
use std::collections::VecDeque;
use std::sync::Arc;

/// Offset of the command/status port (0x64) from the data port (0x60).
pub const COMMAND_OFFSET: u64 = 4;

// Status register bits.
const STR_OBF: u8 = 0x01;
const STR_SYS: u8 = 0x04;
/// The last write went to the command port.
const STR_CMD: u8 = 0x08;
/// Keyboard not inhibited (the key lock is open).
const STR_UNLOCKED: u8 = 0x10;

// Command byte (CTR) bits.
const CTR_KBD_INT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBD_DISABLE: u8 = 0x10;
const CTR_AUX_DISABLE: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

// Output port bits.
const OUT_RESET_HIGH: u8 = 0x01;
const OUT_A20: u8 = 0x02;

// Keyboard replies.
const KBD_ACK: u8 = 0xfa;
const KBD_RESEND: u8 = 0xfe;
const KBD_BAT_OK: u8 = 0xaa;

/// The most bytes the output queue holds (a real controller holds one and the keyboard a few
/// more; a guest that never reads cannot make the queue grow).
const QUEUE_MAX: usize = 16;

/// A controller command waiting for its data byte on port 0x60: where the byte goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Ctr,
    OutputPort,
    KbdOutput,
    AuxOutput,
    Aux,
}

/// A keyboard command waiting for its parameter byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KbdPending {
    Leds,
    Typematic,
    ScanCodeSet,
}

struct Keyboard {
    scanning: bool,
    scan_code_set: u8,
    pending: Option<KbdPending>,
}

impl Keyboard {
    fn new() -> Keyboard {
        Keyboard {
            scanning: true,
            scan_code_set: 2,
            pending: None,
        }
    }

    /// The keyboard's reply to a byte the host sent it.
    fn command(&mut self, b: u8, translated: bool) -> Vec<u8> {
        if let Some(p) = self.pending.take() {
            return match p {
                KbdPending::ScanCodeSet if b == 0 => vec![KBD_ACK, self.scan_code_set],
                KbdPending::ScanCodeSet if (1..=3).contains(&b) => {
                    self.scan_code_set = b;
                    vec![KBD_ACK]
                }
                KbdPending::ScanCodeSet => vec![KBD_RESEND],
                KbdPending::Leds | KbdPending::Typematic => vec![KBD_ACK],
            };
        }
        match b {
            0xed => self.wait(KbdPending::Leds),
            0xf3 => self.wait(KbdPending::Typematic),
            0xf0 => self.wait(KbdPending::ScanCodeSet),
            0xee => vec![0xee],
            // Identify: an MF2 keyboard (0x83 reads as 0x41 through the translation).
            0xf2 => vec![KBD_ACK, 0xab, if translated { 0x41 } else { 0x83 }],
            0xf4 => {
                self.scanning = true;
                vec![KBD_ACK]
            }
            0xf5 => {
                self.scanning = false;
                self.scan_code_set = 2;
                vec![KBD_ACK]
            }
            0xf6 => {
                self.scan_code_set = 2;
                vec![KBD_ACK]
            }
            // The typematic/make/break mode commands of scan-code set 3.
            0xf7..=0xfd => vec![KBD_ACK],
            0xfe => vec![KBD_ACK],
            0xff => {
                *self = Keyboard::new();
                vec![KBD_ACK, KBD_BAT_OK]
            }
            _ => vec![KBD_RESEND],
        }
    }

    fn wait(&mut self, p: KbdPending) -> Vec<u8> {
        self.pending = Some(p);
        vec![KBD_ACK]
    }
}

pub struct I8042 {
    control: Arc<VmControl>,
    irq: Option<Arc<dyn IrqLine>>,
    irq_level: bool,
    ctr: u8,
    status_flags: u8,
    output_port: u8,
    queue: VecDeque<u8>,
    /// What port 0x60 returns when the queue is empty: the last byte read, as hardware does.
    last: u8,
    pending: Option<Pending>,
    kbd: Keyboard,
}

impl I8042 {
    /// A controller as the firmware leaves it: keyboard interrupts on, translation on, the
    /// AUX port disabled, the self test passed. `irq` is the keyboard's IRQ 1.
    pub fn new(control: Arc<VmControl>, irq: Option<Arc<dyn IrqLine>>) -> I8042 {
        I8042 {
            control,
            irq,
            irq_level: false,
            ctr: CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLE | CTR_XLATE,
            status_flags: STR_SYS,
            output_port: OUT_RESET_HIGH | OUT_A20,
            queue: VecDeque::new(),
            last: 0,
            pending: None,
            kbd: Keyboard::new(),
        }
    }

    fn status(&self) -> u8 {
        let obf = if self.queue.is_empty() { 0 } else { STR_OBF };
        obf | self.status_flags | STR_UNLOCKED
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.queue.len() < QUEUE_MAX {
                self.queue.push_back(b);
            }
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        self.set_irq(!self.queue.is_empty() && self.ctr & CTR_KBD_INT != 0);
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.queue.pop_front() {
            self.last = b;
        }
        // Reading empties the one-byte output buffer, which lowers the line; the next queued
        // byte then fills it and raises the line again, an edge the IRQ controller sees.
        self.set_irq(false);
        self.update_irq();
        self.last
    }

    fn set_irq(&mut self, level: bool) {
        if level != self.irq_level {
            self.irq_level = level;
            if let Some(irq) = &self.irq {
                if let Err(e) = irq.set_level(level) {
                    tracing::warn!("i8042: IRQ 1: {e}");
                }
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        self.status_flags |= STR_CMD;
        match cmd {
            0x20 => self.push(&[self.ctr]),
            // Bytes 1-31 of the controller RAM: nothing is kept there.
            0x21..=0x3f => self.push(&[0]),
            0x60 => self.pending = Some(Pending::Ctr),
            0xa7 => self.ctr |= CTR_AUX_DISABLE,
            0xa8 => self.ctr &= !CTR_AUX_DISABLE,
            // AUX interface test: no mouse port, its clock line reads stuck low.
            0xa9 => self.push(&[0x01]),
            0xaa => {
                self.status_flags |= STR_SYS;
                self.push(&[0x55]);
            }
            // Keyboard interface test: no error.
            0xab => self.push(&[0x00]),
            0xad => self.ctr |= CTR_KBD_DISABLE,
            0xae => self.ctr &= !CTR_KBD_DISABLE,
            // Input port: keyboard not locked, colour display.
            0xc0 => self.push(&[0x80]),
            0xd0 => self.push(&[self.output_port]),
            0xd1 => self.pending = Some(Pending::OutputPort),
            0xd2 => self.pending = Some(Pending::KbdOutput),
            0xd3 => self.pending = Some(Pending::AuxOutput),
            0xd4 => self.pending = Some(Pending::Aux),
            0xe0 => self.push(&[0x00]),
            // Pulse output port lines: bit 0 low pulses the CPU reset line.
            0xf0..=0xff if cmd & 1 == 0 => self.reset(),
            0xf0..=0xff => {}
            other => tracing::debug!("i8042: command {other:#04x} ignored"),
        }
    }

    fn reset(&self) {
        self.control.request(StopRequest::Reset { via: "i8042" });
    }

    fn write_data(&mut self, b: u8) {
        self.status_flags &= !STR_CMD;
        match self.pending.take() {
            Some(Pending::Ctr) => {
                self.ctr = b;
                if b & CTR_SYS != 0 {
                    self.status_flags |= STR_SYS;
                } else {
                    self.status_flags &= !STR_SYS;
                }
                self.update_irq();
            }
            Some(Pending::OutputPort) => {
                self.output_port = b;
                if b & OUT_RESET_HIGH == 0 {
                    self.reset();
                }
            }
            Some(Pending::KbdOutput) => self.push(&[b]),
            // There is no AUX port: its loopback answers as keyboard data, which Linux reads
            // as "no AUX" at once instead of waiting for a timeout.
            Some(Pending::AuxOutput) => self.push(&[b]),
            Some(Pending::Aux) => {}
            None => {
                // Sending to the keyboard enables its port.
                self.ctr &= !CTR_KBD_DISABLE;
                let reply = self.kbd.command(b, self.ctr & CTR_XLATE != 0);
                self.push(&reply);
            }
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v = if offset == COMMAND_OFFSET {
            self.status()
        } else {
            self.read_data()
        };
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        if offset == COMMAND_OFFSET {
            self.command(b);
        } else {
            self.write_data(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Line;

    fn kbc() -> (I8042, Arc<VmControl>, Arc<Line>) {
        let control = Arc::new(VmControl::new());
        let line = Arc::new(Line::default());
        let k = I8042::new(control.clone(), Some(line.clone()));
        (k, control, line)
    }

    fn status(k: &mut I8042) -> u8 {
        let mut s = [0u8];
        k.read(COMMAND_OFFSET, &mut s);
        s[0]
    }

    fn data(k: &mut I8042) -> u8 {
        let mut s = [0u8];
        k.read(0, &mut s);
        s[0]
    }

    /// Reads everything in the output buffer, as a polling driver does.
    fn drain(k: &mut I8042) -> Vec<u8> {
        let mut v = Vec::new();
        while status(k) & STR_OBF != 0 {
            v.push(data(k));
        }
        v
    }

    #[test]
    fn reset_command_requests_reset() {
        let (mut k, control, _) = kbc();
        k.write(COMMAND_OFFSET, &[0xfe]);
        assert_eq!(control.take(), Some(StopRequest::Reset { via: "i8042" }));
        // Pulsing no line (0xff) does nothing; writing the output port with the reset line
        // low resets.
        let (mut k, control, _) = kbc();
        k.write(COMMAND_OFFSET, &[0xff]);
        assert!(!control.pending());
        k.write(COMMAND_OFFSET, &[0xd1]);
        k.write(0, &[0xfe]);
        assert_eq!(control.take(), Some(StopRequest::Reset { via: "i8042" }));
    }

    #[test]
    fn a_keyboard_byte_is_not_a_reset() {
        let (mut k, control, _) = kbc();
        k.write(0, &[0xfe]);
        assert!(!control.pending());
    }

    #[test]
    fn status_reads_idle() {
        let (mut k, _, _) = kbc();
        assert_eq!(status(&mut k) & 0x03, 0, "input and output buffers empty");
        assert_ne!(status(&mut k) & STR_SYS, 0, "the self test has passed");
    }

    #[test]
    fn command_byte_reads_back_what_was_written() {
        let (mut k, _, _) = kbc();
        k.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(drain(&mut k), [0x65]);
        k.write(COMMAND_OFFSET, &[0x60]);
        k.write(0, &[0x47]);
        k.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(drain(&mut k), [0x47]);
        k.write(COMMAND_OFFSET, &[0xa7]);
        k.write(COMMAND_OFFSET, &[0xad]);
        k.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(drain(&mut k), [0x47 | CTR_AUX_DISABLE | CTR_KBD_DISABLE]);
    }

    #[test]
    fn self_tests_pass_and_there_is_no_aux_port() {
        let (mut k, _, _) = kbc();
        k.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!(drain(&mut k), [0x55]);
        k.write(COMMAND_OFFSET, &[0xab]);
        assert_eq!(drain(&mut k), [0x00]);
        // Linux's AUX check: the loopback's reply is not AUX data, and the AUX test fails.
        k.write(COMMAND_OFFSET, &[0xd3]);
        k.write(0, &[0x5a]);
        assert_eq!(status(&mut k) & 0x20, 0, "not from the AUX port");
        assert_eq!(drain(&mut k), [0x5a]);
        k.write(COMMAND_OFFSET, &[0xa9]);
        assert_eq!(drain(&mut k), [0x01]);
    }

    #[test]
    fn keyboard_answers_atkbd() {
        let (mut k, _, _) = kbc();
        k.write(0, &[0xff]);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_BAT_OK]);
        k.write(0, &[0xf2]);
        assert_eq!(drain(&mut k), [KBD_ACK, 0xab, 0x41], "translated ID");
        k.write(0, &[0xed]);
        k.write(0, &[0x07]);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_ACK]);
        k.write(0, &[0xf0]);
        k.write(0, &[0x00]);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_ACK, 2]);
        k.write(0, &[0xf0]);
        k.write(0, &[0x09]);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_RESEND]);
        k.write(0, &[0xee]);
        assert_eq!(drain(&mut k), [0xee]);
        k.write(0, &[0x42]);
        assert_eq!(drain(&mut k), [KBD_RESEND]);
    }

    #[test]
    fn output_buffer_drives_irq1_when_enabled() {
        let (mut k, _, line) = kbc();
        k.write(0, &[0xf4]);
        assert_eq!(*line.0.lock().unwrap(), [true]);
        data(&mut k);
        assert_eq!(*line.0.lock().unwrap(), [true, false]);
        // With keyboard interrupts off, a reply raises nothing.
        k.write(COMMAND_OFFSET, &[0x60]);
        k.write(0, &[0x64]);
        k.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(line.0.lock().unwrap().len(), 2);
        assert_eq!(drain(&mut k), [0x64]);
    }

    #[test]
    fn each_queued_byte_is_a_new_edge() {
        let (mut k, _, line) = kbc();
        k.write(0, &[0xf2]);
        assert_eq!(drain(&mut k), [KBD_ACK, 0xab, 0x41]);
        assert_eq!(
            *line.0.lock().unwrap(),
            [true, false, true, false, true, false]
        );
    }

    #[test]
    fn an_empty_buffer_repeats_the_last_byte() {
        let (mut k, _, _) = kbc();
        k.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!(data(&mut k), 0x55);
        assert_eq!(data(&mut k), 0x55);
    }

    #[test]
    fn a_guest_that_never_reads_cannot_grow_the_queue() {
        let (mut k, _, _) = kbc();
        for _ in 0..1000 {
            k.write(0, &[0xf2]);
        }
        assert_eq!(drain(&mut k).len(), QUEUE_MAX);
    }
}

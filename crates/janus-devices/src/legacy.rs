//! Small pieces of the legacy PC: the reset control register (0xCF9), system control port A
//! (0x92: fast reset and the A20 gate), and "nothing here" for the legacy ports a PC OS probes
//! where this platform has no device.

use crate::bus::BusDevice;
use crate::control::{StopRequest, VmControl};
use std::sync::Arc;

/// The PIIX reset control register at 0xCF9: writing the reset bit (2) with a system (1) or
/// CPU (1) reset type resets the machine.
pub struct ResetControl {
    value: u8,
    control: Arc<VmControl>,
}

impl ResetControl {
    pub fn new(control: Arc<VmControl>) -> ResetControl {
        ResetControl { value: 0, control }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.value;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        if v & 0x04 != 0 {
            self.control.request(StopRequest::Reset {
                via: "reset control register",
            });
        }
        self.value = v & 0x0a;
    }
}

/// System control port A (0x92): bit 0 pulses a CPU reset, bit 1 is the A20 gate (always on
/// in Janus: it never wraps addresses at 1 MiB).
pub struct SystemControlA {
    control: Arc<VmControl>,
}

impl SystemControlA {
    pub fn new(control: Arc<VmControl>) -> SystemControlA {
        SystemControlA { control }
    }
}

impl BusDevice for SystemControlA {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = 0x02; // A20 enabled
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if data.first().is_some_and(|v| v & 1 != 0) {
            self.control.request(StopRequest::Reset {
                via: "system control port A",
            });
        }
    }
}

/// A legacy I/O range where this PC has nothing: reads float high (all ones), writes vanish,
/// as on an ISA bus with no card there. Only ranges an OS is known to probe are mapped this
/// way; any other unmapped port still stops the VM with a report.
pub struct Absent;

impl BusDevice for Absent {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_control_resets_on_bit_2() {
        let c = Arc::new(VmControl::new());
        let mut r = ResetControl::new(c.clone());
        r.write(0, &[0x02]);
        assert!(!c.pending(), "setting the type alone does nothing");
        r.write(0, &[0x06]);
        assert!(c.pending());
    }

    #[test]
    fn port_92_fast_reset_and_a20() {
        let c = Arc::new(VmControl::new());
        let mut p = SystemControlA::new(c.clone());
        let mut d = [0u8];
        p.read(0, &mut d);
        assert_eq!(d[0] & 2, 2);
        p.write(0, &[0x02]);
        assert!(!c.pending());
        p.write(0, &[0x03]);
        assert!(c.pending());
    }

    #[test]
    fn absent_reads_all_ones() {
        let mut a = Absent;
        let mut d = [0u8; 4];
        a.read(0, &mut d);
        assert_eq!(d, [0xff; 4]);
    }
}

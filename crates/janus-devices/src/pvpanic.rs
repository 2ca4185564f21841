//! QEMU's pvpanic device on an I/O port (0x505), which Linux's `pvpanic-mmio` driver finds
//! through ACPI (`QEMU0001`): the guest reads what events the device supports and writes the
//! event when it panics, so a panic is visible to the host instead of a VM that spins.

use crate::bus::BusDevice;
use crate::control::{StopRequest, VmControl};
use std::sync::Arc;

/// QEMU's port for the ISA pvpanic device.
pub const PORT: u16 = 0x505;
/// Events: the guest panicked; the guest is loading a crash kernel (kdump).
pub const PANICKED: u8 = 1;
pub const CRASH_LOADED: u8 = 2;

pub struct PvPanic {
    control: Arc<VmControl>,
}

impl PvPanic {
    pub fn new(control: Arc<VmControl>) -> PvPanic {
        PvPanic { control }
    }
}

impl BusDevice for PvPanic {
    /// The events the device reports.
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = PANICKED | CRASH_LOADED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let v = data.first().copied().unwrap_or(0);
        if v & PANICKED != 0 {
            self.control.request(StopRequest::Panic);
        } else if v & CRASH_LOADED != 0 {
            // The guest goes on into its crash kernel; nothing to stop.
            tracing::warn!("pvpanic: the guest crashed and is loading a crash kernel");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_its_events_and_a_panic_stops_the_vm() {
        let control = Arc::new(VmControl::new());
        let mut d = PvPanic::new(control.clone());
        let mut b = [0u8; 1];
        d.read(0, &mut b);
        assert_eq!(b[0], PANICKED | CRASH_LOADED);
        d.write(0, &[CRASH_LOADED]);
        assert!(!control.pending());
        d.write(0, &[PANICKED]);
        assert_eq!(control.take(), Some(StopRequest::Panic));
    }
}

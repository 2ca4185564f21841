//! The i8042 keyboard controller, as far as a VM needs it: the CPU reset line (command 0xFE on
//! port 0x64), on vm-superio's model. Reads answer 0 (no keyboard, buffers empty).

use crate::bus::BusDevice;
use crate::control::{StopRequest, VmControl};
use std::sync::Arc;
use vm_superio::{I8042Device, Trigger};

/// Offset of the command port (0x64) from the data port (0x60), as vm-superio counts.
pub const COMMAND_OFFSET: u64 = 4;

struct ResetLine(Arc<VmControl>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(StopRequest::Reset { via: "i8042" });
        Ok(())
    }
}

pub struct I8042 {
    inner: I8042Device<ResetLine>,
}

impl I8042 {
    pub fn new(control: Arc<VmControl>) -> I8042 {
        I8042 {
            inner: I8042Device::new(ResetLine(control)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.inner.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            let Ok(()) = self.inner.write(offset as u8, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_reset() {
        let control = Arc::new(VmControl::new());
        let mut k = I8042::new(control.clone());
        k.write(0, &[0xfe]); // data port: not a command
        assert!(!control.pending());
        k.write(COMMAND_OFFSET, &[0xfe]);
        assert_eq!(control.take(), Some(StopRequest::Reset { via: "i8042" }));
    }

    #[test]
    fn status_reads_idle() {
        let mut k = I8042::new(Arc::new(VmControl::new()));
        let mut s = [0xffu8];
        k.read(COMMAND_OFFSET, &mut s);
        assert_eq!(s[0] & 0x03, 0, "input and output buffers empty");
    }
}

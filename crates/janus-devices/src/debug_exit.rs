//! QEMU's isa-debug-exit: a port a test kernel writes a value to, which ends the VM with
//! status `(value << 1) | 1` (always odd, so it never looks like a clean 0). Test kernels and
//! OS test suites written for QEMU report their result this way.

use crate::bus::BusDevice;
use crate::control::{StopRequest, VmControl};
use std::sync::Arc;

/// QEMU's default port and width.
pub const DEFAULT_IOBASE: u16 = 0x501;
pub const DEFAULT_IOSIZE: u8 = 1;

pub struct DebugExit {
    control: Arc<VmControl>,
}

impl DebugExit {
    pub fn new(control: Arc<VmControl>) -> DebugExit {
        DebugExit { control }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // An access to any byte of the port counts, with the bytes written as the value.
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(v) << (8 * offset.min(3));
        self.control.request(StopRequest::DebugExit { value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_stops_the_vm_with_its_value() {
        let control = Arc::new(VmControl::new());
        let mut d = DebugExit::new(control.clone());
        d.write(0, &[0x10]);
        assert_eq!(control.take(), Some(StopRequest::DebugExit { value: 0x10 }));
    }
}

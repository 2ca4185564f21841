//! The 16550A UART (COM1), on vm-superio's model: console output to a host writer, host input
//! queued into its receive FIFO, interrupts on the ISA IRQ line.

use crate::bus::BusDevice;
use janus_engine::{EngineError, IrqLine};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

/// Where console bytes go; shared by the UART and the para-virtual console call.
#[derive(Clone)]
pub struct ConsoleOut(Arc<Mutex<Box<dyn Write + Send>>>);

impl ConsoleOut {
    pub fn new(w: Box<dyn Write + Send>) -> ConsoleOut {
        ConsoleOut(Arc::new(Mutex::new(w)))
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// Raises the UART's interrupt line (edge, as on the ISA bus).
pub struct IrqTrigger(Option<Arc<dyn IrqLine>>);

impl Trigger for IrqTrigger {
    type E = EngineError;
    fn trigger(&self) -> Result<(), EngineError> {
        match &self.0 {
            Some(line) => line.pulse(),
            None => Ok(()),
        }
    }
}

pub struct Uart16550 {
    serial: Serial<IrqTrigger, NoEvents, ConsoleOut>,
    /// The host writer failed once (for example a closed pipe); reported once, not per byte.
    output_failed: bool,
}

impl Uart16550 {
    pub fn new(irq: Option<Arc<dyn IrqLine>>, out: ConsoleOut) -> Uart16550 {
        Uart16550 {
            serial: Serial::new(IrqTrigger(irq), out),
            output_failed: false,
        }
    }

    /// Queues host input for the guest; returns how many bytes fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        match self.serial.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(vm_superio::serial::Error::FullFifo) => 0,
            Err(e) => {
                tracing::warn!("uart: input interrupt failed: {e}");
                0
            }
        }
    }

    /// Room left in the receive FIFO.
    pub fn input_room(&self) -> usize {
        self.serial.fifo_capacity()
    }
}

impl BusDevice for Uart16550 {
    // The 16550 is an 8-bit device: a wider access touches consecutive registers, as the ISA
    // bus splits it.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.serial.read((offset as u8).wrapping_add(i as u8) & 7);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let reg = (offset as u8).wrapping_add(i as u8) & 7;
            if let Err(e) = self.serial.write(reg, *b) {
                if !self.output_failed {
                    tracing::warn!("uart: console output failed, further output is dropped: {e}");
                    self.output_failed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct CountingLine(AtomicUsize);
    impl IrqLine for CountingLine {
        fn set_level(&self, high: bool) -> janus_engine::Result<()> {
            if high {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    const LSR: u64 = 5;

    #[test]
    fn transmits_bytes_and_reports_thr_empty() {
        let buf = Buf::default();
        let mut u = Uart16550::new(None, ConsoleOut::new(Box::new(buf.clone())));
        let mut lsr = [0u8];
        u.read(LSR, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
        for b in b"hi\n" {
            u.write(0, &[*b]);
        }
        assert_eq!(&*buf.0.lock().unwrap(), b"hi\n");
    }

    #[test]
    fn divisor_latch_does_not_transmit() {
        let buf = Buf::default();
        let mut u = Uart16550::new(None, ConsoleOut::new(Box::new(buf.clone())));
        u.write(3, &[0x80]); // DLAB
        u.write(0, &[0x01]); // divisor low, not data
        u.write(3, &[0x03]);
        assert!(buf.0.lock().unwrap().is_empty());
    }

    #[test]
    fn input_raises_interrupt_and_is_read_back() {
        let line = Arc::new(CountingLine::default());
        let mut u = Uart16550::new(Some(line.clone()), ConsoleOut::new(Box::new(io::sink())));
        u.write(1, &[0x01]); // IER: received-data interrupt
        assert_eq!(u.enqueue_input(b"ab"), 2);
        assert!(line.0.load(Ordering::SeqCst) >= 1);
        let mut d = [0u8];
        u.read(LSR, &mut d);
        assert_ne!(d[0] & 1, 0, "data ready");
        u.read(0, &mut d);
        assert_eq!(d[0], b'a');
        u.read(0, &mut d);
        assert_eq!(d[0], b'b');
        u.read(LSR, &mut d);
        assert_eq!(d[0] & 1, 0);
    }

    #[test]
    fn full_fifo_accepts_nothing_more() {
        let mut u = Uart16550::new(None, ConsoleOut::new(Box::new(io::sink())));
        let room = u.input_room();
        assert_eq!(u.enqueue_input(&vec![b'x'; room + 10]), room);
        assert_eq!(u.enqueue_input(b"y"), 0);
    }
}

//! virtio-console (virtio 1.x, section 5.3) with one port and no optional features: what
//! the guest writes to /dev/hvc0 goes to the host console, and host input goes to the guest
//! when it has posted receive buffers.

use super::queue::{Queues, Stream};
use super::VirtioDevice;
use crate::uart16550::ConsoleOut;
use std::collections::VecDeque;
use std::io::Write;
use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;

const RECEIVEQ: usize = 0;
const TRANSMITQ: usize = 1;
const QUEUE_SIZES: &[u16] = &[64, 64];
/// Host input held for the guest at most (older bytes are dropped, as a UART overruns).
const INPUT_MAX: usize = 64 << 10;
/// Bytes of one transmit chain sent to the host at most; the rest is dropped.
const OUTPUT_MAX: u64 = 64 << 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleStats {
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Input bytes dropped because the guest did not take them in time.
    pub input_dropped: u64,
}

pub struct Console {
    out: ConsoleOut,
    input: VecDeque<u8>,
    stats: ConsoleStats,
    scratch: Vec<u8>,
}

impl Console {
    pub fn new(out: ConsoleOut) -> Console {
        Console {
            out,
            input: VecDeque::new(),
            stats: ConsoleStats::default(),
            scratch: Vec::new(),
        }
    }

    pub fn stats(&self) -> ConsoleStats {
        self.stats
    }

    /// Host input for the guest: delivered now if the guest has receive buffers, else when it
    /// posts some. Call through [`super::MmioTransport::with_device`], or before the driver
    /// starts (then it waits).
    pub fn input(&mut self, bytes: &[u8], queues: &mut Queues) {
        self.queue_input(bytes);
        self.deliver(queues);
    }

    /// Holds host input until the driver is ready for it (bounded: the oldest bytes go).
    pub fn queue_input(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
        let excess = self.input.len().saturating_sub(INPUT_MAX);
        self.input.drain(..excess);
        self.stats.input_dropped += excess as u64;
    }

    fn deliver(&mut self, queues: &mut Queues) {
        while !self.input.is_empty() {
            let Some(chain) = queues.pop(RECEIVEQ) else {
                break;
            };
            let inp = Stream::new(&chain.writable);
            let n = (inp.len() as usize).min(self.input.len());
            let bytes: Vec<u8> = self.input.drain(..n).collect();
            let written = if inp.write(queues, 0, &bytes) { n } else { 0 };
            self.stats.bytes_in += written as u64;
            queues.add_used(RECEIVEQ, chain.head, written as u32);
        }
        queues.notify_driver(RECEIVEQ);
    }

    fn transmit(&mut self, queues: &mut Queues) {
        queues.process(TRANSMITQ, |q, chain| {
            let out = Stream::new(&chain.readable);
            let n = out.len().min(OUTPUT_MAX) as usize;
            self.scratch.resize(n, 0);
            if out.read(q.mem(), 0, &mut self.scratch) {
                self.stats.bytes_out += n as u64;
                // The console is best effort: a closed stdout must not stop the guest.
                let _ = self
                    .out
                    .write_all(&self.scratch)
                    .and_then(|_| self.out.flush());
            }
            0
        });
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn name(&self) -> &'static str {
        "virtio-console"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        0
    }

    /// `virtio_console_config` (cols, rows, max_nr_ports, emerg_wr): none of its features
    /// are offered, so it is all zero.
    fn config(&self) -> Vec<u8> {
        vec![0; 12]
    }

    fn activate(&mut self, _features: u64, queues: &mut Queues) {
        self.deliver(queues);
    }

    fn notify(&mut self, index: usize, queues: &mut Queues) {
        match index {
            TRANSMITQ => self.transmit(queues),
            _ => self.deliver(queues),
        }
    }

    fn activity(&self) -> String {
        format!(
            "{} bytes out, {} bytes in",
            self.stats.bytes_out, self.stats.bytes_in
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmio::tests::Mmio;
    use super::super::queue::tests::{Driver, Line, DESC, NEXT, WRITE};
    use super::super::F_VERSION_1;
    use super::*;
    use std::sync::{Arc, Mutex};
    use virtio_bindings::bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
    use vm_memory::{Bytes, GuestAddress};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Both queues share the test driver's rings (only one is used per test).
    fn rig(queue: u32) -> (Driver, Mmio<Console>, Buf) {
        let d = Driver::new(8);
        let out = Buf::default();
        let console = Console::new(ConsoleOut::new(Box::new(out.clone())));
        let mut m = Mmio::new(console, &d, Arc::new(Line::default()));
        m.bring_up(F_VERSION_1, &[(queue, 8)]);
        (d, m, out)
    }

    #[test]
    fn transmit_reaches_the_host_console() {
        let (mut d, mut m, out) = rig(TRANSMITQ as u32);
        d.mem.write_slice(b"hello ", GuestAddress(0x8000)).unwrap();
        d.mem.write_slice(b"hvc0\n", GuestAddress(0x9000)).unwrap();
        d.desc(0, 0x8000, 6, NEXT, 1);
        d.desc(1, 0x9000, 5, 0, 0);
        d.offer(0);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, TRANSMITQ as u32);
        assert_eq!(&*out.0.lock().unwrap(), b"hello hvc0\n");
        assert_eq!(d.used(0), (0, 0));
        assert_eq!(m.t.device().stats().bytes_out, 11);
        let _ = DESC;
    }

    #[test]
    fn input_waits_for_receive_buffers() {
        let (mut d, mut m, _) = rig(RECEIVEQ as u32);
        m.t.with_device(|c, q| c.input(b"typed", q)).unwrap();
        assert_eq!(d.used_idx(), 0, "no buffer yet");
        d.desc(0, 0x8000, 3, WRITE, 0);
        d.desc(1, 0x9000, 16, WRITE, 0);
        d.offer(0);
        d.offer(1);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, RECEIVEQ as u32);
        assert_eq!(d.used(0), (0, 3));
        assert_eq!(d.used(1), (1, 2));
        let mut b = [0u8; 3];
        d.mem.read_slice(&mut b, GuestAddress(0x8000)).unwrap();
        assert_eq!(&b, b"typ");
        assert_eq!(m.t.device().stats().bytes_in, 5);
    }

    #[test]
    fn input_is_bounded() {
        let mut c = Console::new(ConsoleOut::new(Box::new(Buf::default())));
        c.queue_input(&vec![b'x'; INPUT_MAX + 10]);
        assert_eq!(c.input.len(), INPUT_MAX);
        assert_eq!(c.stats().input_dropped, 10);
    }
}

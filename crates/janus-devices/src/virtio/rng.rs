//! virtio-rng (virtio 1.x, section 5.4): fills the guest's buffers from the host's random
//! source (getrandom(2)), which feeds the guest's /dev/hwrng.

use super::queue::{Queues, Stream};
use super::VirtioDevice;
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;

const QUEUE_SIZES: &[u16] = &[64];
/// Bytes given per request at most; the driver asks again for more.
const REQUEST_MAX: usize = 4096;

pub struct Rng {
    bytes: u64,
    requests: u64,
    scratch: Vec<u8>,
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

impl Rng {
    pub fn new() -> Rng {
        Rng {
            bytes: 0,
            requests: 0,
            scratch: Vec::new(),
        }
    }

    /// Entropy bytes handed to the guest.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fills `buf` from the host's random source; false if it failed.
    fn fill(buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes for the call.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!("virtio-rng: getrandom: {e}");
                return false;
            }
            done += n as usize;
        }
        true
    }

    fn serve(&mut self, queues: &Queues, chain: &super::Chain) -> u32 {
        let inp = Stream::new(&chain.writable);
        let n = (inp.len() as usize).min(REQUEST_MAX);
        self.scratch.resize(n, 0);
        if !Self::fill(&mut self.scratch) || !inp.write(queues, 0, &self.scratch) {
            return 0;
        }
        self.requests += 1;
        self.bytes += n as u64;
        n as u32
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn name(&self) -> &'static str {
        "virtio-rng"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        0
    }

    fn config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn notify(&mut self, index: usize, queues: &mut Queues) {
        queues.process(index, |q, chain| self.serve(q, chain));
    }

    fn activity(&self) -> String {
        format!("{} requests, {} bytes", self.requests, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmio::tests::Mmio;
    use super::super::queue::tests::{Driver, Line, WRITE};
    use super::super::F_VERSION_1;
    use super::*;
    use std::sync::Arc;
    use virtio_bindings::bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn fills_writable_buffers_up_to_a_limit() {
        let mut d = Driver::new(8);
        let mut m = Mmio::new(Rng::new(), &d, Arc::new(Line::default()));
        m.bring_up(F_VERSION_1, &[(0, 8)]);
        d.desc(0, 0x8000, 64, WRITE, 0);
        d.desc(1, 0x10000, 0x20000, WRITE, 0);
        d.offer(0);
        d.offer(1);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(d.used(0), (0, 64));
        assert_eq!(d.used(1), (1, REQUEST_MAX as u32));
        let mut b = [0u8; 64];
        d.mem.read_slice(&mut b, GuestAddress(0x8000)).unwrap();
        assert!(
            b.iter().any(|&x| x != 0),
            "64 random bytes are not all zero"
        );
        assert_eq!(m.t.device().bytes(), 64 + REQUEST_MAX as u64);
    }

    #[test]
    fn readable_only_chain_gets_nothing() {
        let mut d = Driver::new(8);
        let mut m = Mmio::new(Rng::new(), &d, Arc::new(Line::default()));
        m.bring_up(F_VERSION_1, &[(0, 8)]);
        d.desc(0, 0x8000, 64, 0, 0);
        d.offer(0);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(d.used(0), (0, 0));
    }
}

//! virtio-net (virtio 1.x, section 5.1) on a host TAP interface: one receive and one
//! transmit queue, a MAC address and link status, no offloads (the guest computes its own
//! checksums and segments its own packets).
//!
//! Every frame is preceded by the 12-byte `virtio_net_hdr_v1`. Transmit happens in the
//! notify. Receive runs on its own thread ([`RxThread`]), which waits for the TAP interface to
//! have a frame and the guest to have a buffer: while the guest has posted none, the thread
//! leaves frames queued in the host kernel and waits for the guest's next receive notify.

use super::mmio::MmioTransport;
use super::queue::{Queues, Stream};
use super::VirtioDevice;
pub use crate::tap::Backend;
pub use crate::tap::RxThread;

use std::sync::{Arc, Mutex};
use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const RXQ: usize = 0;
const TXQ: usize = 1;
const QUEUE_SIZES: &[u16] = &[256, 256];
/// `virtio_net_hdr_v1` (with num_buffers, always present in virtio 1.x).
const HEADER: usize = 12;
/// The largest frame the TAP interface hands over (64 KiB IP packet and Ethernet header).
const FRAME_MAX: usize = 65_535 + 14 + 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames dropped: too large for the guest's buffer or the TAP, or refused by the host.
    pub dropped: u64,
}

/// What a receive pass ended on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxState {
    /// The TAP interface has nothing more: wait for it.
    TapEmpty,
    /// A frame waits for a guest buffer: wait for the guest's receive notify.
    NeedBuffers,
}

pub struct Net {
    tap: Arc<dyn Backend>,
    mac: [u8; 6],
    stats: NetStats,
    /// A frame read from the TAP interface that no guest buffer has taken yet.
    frame: Vec<u8>,
    frame_len: Option<usize>,
    /// Wakes the receive thread: the guest posted buffers, or the device started.
    wake: EventFd,
    warned: bool,
    scratch: Vec<u8>,
}

impl Net {
    pub fn new(tap: Arc<dyn Backend>, mac: [u8; 6]) -> std::io::Result<Net> {
        Ok(Net {
            tap,
            mac,
            stats: NetStats::default(),
            frame: vec![0; FRAME_MAX],
            frame_len: None,
            wake: EventFd::new(EFD_NONBLOCK)?,
            warned: false,
            scratch: Vec::new(),
        })
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn host_error(&mut self, what: &str, e: std::io::Error) {
        self.stats.dropped += 1;
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "virtio-net: {what} on {}: {e} (further errors are counted)",
                self.tap.name()
            );
        }
    }

    fn wake_receiver(&self) {
        // A full eventfd counter already means "wake up".
        let _ = self.wake.write(1);
    }

    /// Moves frames from the TAP interface into the guest's receive buffers.
    pub fn receive(&mut self, queues: &mut Queues) -> RxState {
        let state = self.receive_frames(queues);
        queues.notify_driver(RXQ);
        state
    }

    fn receive_frames(&mut self, queues: &mut Queues) -> RxState {
        loop {
            let len = match self.frame_len {
                Some(len) => len,
                None => match self.tap.read_frame(&mut self.frame) {
                    Ok(len) => len,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return RxState::TapEmpty
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.host_error("read", e);
                        return RxState::TapEmpty;
                    }
                },
            };
            self.frame_len = Some(len);
            let Some(chain) = queues.pop(RXQ) else {
                return RxState::NeedBuffers;
            };
            self.frame_len = None;
            let inp = Stream::new(&chain.writable);
            let mut header = [0u8; HEADER];
            header[10] = 1; // num_buffers: the frame is in this one chain
            let fits = inp.len() >= (HEADER + len) as u64;
            let written = fits
                && inp.write(queues, 0, &header)
                && inp.write(queues, HEADER as u64, &self.frame[..len]);
            if written {
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                queues.add_used(RXQ, chain.head, (HEADER + len) as u32);
            } else {
                self.stats.dropped += 1;
                queues.add_used(RXQ, chain.head, 0);
            }
        }
    }

    fn transmit(&mut self, queues: &mut Queues) {
        let mut failures = Vec::new();
        queues.process(TXQ, |q, chain| {
            let out = Stream::new(&chain.readable);
            let total = out.len();
            if total < HEADER as u64 || total - HEADER as u64 > FRAME_MAX as u64 {
                self.stats.dropped += 1;
                return 0;
            }
            let len = (total - HEADER as u64) as usize;
            self.scratch.resize(len, 0);
            if !out.read(q.mem(), HEADER as u64, &mut self.scratch) {
                self.stats.dropped += 1;
                return 0;
            }
            match self.tap.write_frame(&self.scratch) {
                Ok(()) => {
                    self.stats.tx_frames += 1;
                    self.stats.tx_bytes += len as u64;
                }
                Err(e) => failures.push(e),
            }
            0
        });
        for e in failures {
            self.host_error("write", e);
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    }

    /// `virtio_net_config`: the MAC address, then the link status.
    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 8];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        c
    }

    fn activate(&mut self, _features: u64, _queues: &mut Queues) {
        self.wake_receiver();
    }

    fn notify(&mut self, index: usize, queues: &mut Queues) {
        match index {
            TXQ => self.transmit(queues),
            _ => self.wake_receiver(),
        }
    }

    fn reset(&mut self) {
        self.frame_len = None;
    }

    fn activity(&self) -> String {
        let s = &self.stats;
        format!(
            "{} frames out ({} bytes), {} frames in ({} bytes), {} dropped",
            s.tx_frames, s.tx_bytes, s.rx_frames, s.rx_bytes, s.dropped
        )
    }
}

/// Starts the receive side's thread: it polls the TAP interface (while the guest has buffers)
/// and the device's wake-up event, and moves frames in.
pub fn receive_thread(device: Arc<Mutex<MmioTransport<Net>>>) -> std::io::Result<RxThread> {
    let (tap, wake) = {
        let t = device.lock().unwrap_or_else(|p| p.into_inner());
        (t.device().tap.clone(), t.device().wake.try_clone()?)
    };
    RxThread::spawn("virtio-net", tap, &wake, move || {
        let mut t = device.lock().unwrap_or_else(|p| p.into_inner());
        // Before DRIVER_OK the device takes no frames; its activation wakes the thread.
        t.with_device(|net, q| net.receive(q)) == Some(RxState::TapEmpty)
    })
}

#[cfg(test)]
mod tests {
    use super::super::mmio::tests::Mmio;
    use super::super::queue::tests::{Driver, Line, NEXT, WRITE};
    use super::super::F_VERSION_1;
    use super::*;
    use crate::test_support::Socket;
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    use virtio_bindings::bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
    use vm_memory::{Bytes, GuestAddress};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn rig(queue: u32) -> (Driver, Mmio<Net>, UnixDatagram) {
        let d = Driver::new(8);
        let (ours, host) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let net = Net::new(Arc::new(Socket(ours)), MAC).unwrap();
        let mut m = Mmio::new(net, &d, Arc::new(Line::default()));
        m.bring_up(F_VERSION_1, &[(queue, 8)]);
        (d, m, host)
    }

    #[test]
    fn config_has_mac_and_link_up() {
        let (_, m, _) = rig(0);
        let c = m.t.device().config();
        assert_eq!(&c[..6], &MAC);
        assert_eq!(c[6], 1);
    }

    #[test]
    fn transmit_strips_the_header() {
        let (mut d, mut m, host) = rig(TXQ as u32);
        d.mem
            .write_slice(&[0xaa; HEADER], GuestAddress(0x8000))
            .unwrap();
        d.mem
            .write_slice(b"frame-bytes", GuestAddress(0x9000))
            .unwrap();
        d.desc(0, 0x8000, HEADER as u32, NEXT, 1);
        d.desc(1, 0x9000, 11, 0, 0);
        d.desc(2, 0x8000, 4, 0, 0); // shorter than a header
        d.offer(0);
        d.offer(2);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, TXQ as u32);
        let mut b = [0u8; 64];
        let n = host.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"frame-bytes");
        let s = m.t.device().stats();
        assert_eq!((s.tx_frames, s.tx_bytes, s.dropped), (1, 11, 1));
        assert_eq!(d.used_idx(), 2);
    }

    #[test]
    fn receive_waits_for_buffers_and_drops_what_does_not_fit() {
        let (mut d, mut m, host) = rig(RXQ as u32);
        host.send(b"first").unwrap();
        let state = m.t.with_device(|n, q| n.receive(q)).unwrap();
        assert_eq!(state, RxState::NeedBuffers, "read, but no buffer yet");
        d.desc(0, 0x8000, 4, WRITE, 0); // too small for header and frame
        d.desc(1, 0x9000, 1526, WRITE, 0);
        d.offer(0);
        d.offer(1);
        host.send(b"second").unwrap();
        let state = m.t.with_device(|n, q| n.receive(q)).unwrap();
        assert_eq!(state, RxState::TapEmpty);
        assert_eq!(d.used(0), (0, 0), "dropped: the buffer is too small");
        assert_eq!(d.used(1), (1, (HEADER + 6) as u32));
        let mut b = [0u8; HEADER + 6];
        d.mem.read_slice(&mut b, GuestAddress(0x9000)).unwrap();
        assert_eq!(b[10], 1, "num_buffers");
        assert_eq!(&b[HEADER..], b"second");
        let s = m.t.device().stats();
        assert_eq!((s.rx_frames, s.dropped), (1, 1));
    }

    #[test]
    fn receive_thread_delivers_frames() {
        let mut d = Driver::new(8);
        let (ours, host) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let net = Net::new(Arc::new(Socket(ours)), MAC).unwrap();
        let line = Arc::new(Line::default());
        let mut m = Mmio::new(net, &d, line.clone());
        d.desc(0, 0x9000, 1526, WRITE, 0);
        d.offer(0);
        m.bring_up(F_VERSION_1, &[(RXQ as u32, 8)]);
        let device = Arc::new(Mutex::new(m.t));
        let rx = receive_thread(device.clone()).unwrap();
        host.send(b"ping").unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while d.used_idx() == 0 {
            assert!(Instant::now() < until, "frame not delivered");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(d.used(0), (0, (HEADER + 4) as u32));
        assert!(
            line.high.load(std::sync::atomic::Ordering::SeqCst),
            "interrupt raised"
        );
        drop(rx);
    }
}

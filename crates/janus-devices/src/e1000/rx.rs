//! The receive side: the address filter, the on-chip receive FIFO, legacy receive
//! descriptors, and the thread that takes frames from the TAP interface.
//!
//! A frame the filter accepts goes into the FIFO (the 82540's 48 KiB receive packet buffer);
//! when the FIFO has no room the frame is lost as on the part: the missed packet count (MPC)
//! goes up and ICR.RXO is raised. Frames leave the FIFO into the descriptors between RDH and
//! RDT, spread over as many as their length needs with EOP on the last, the length written
//! back with DD. A frame waits in the FIFO while the ring has too few free descriptors; the
//! driver's next RDT write moves it on.

use super::device::{GuestError, E1000};
use super::frame::{destination, fcs, vlan_tag, Destination, ETHERTYPE_AT, MIN_FRAME};
use super::regs::*;
use crate::bus::lock;
use crate::tap::RxThread;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The receive packet buffer's size (PBA.RXA at power-up).
pub const FIFO_BYTES: usize = 48 * 1024;
/// The longest frame without Long Packet Enable: 1518 bytes and an 802.1Q tag, with FCS.
const MAX_FRAME: usize = 1522;
/// With LPE: the 82540's limit.
const MAX_LONG_FRAME: usize = 16384;
/// The largest frame the TAP interface hands over.
const TAP_FRAME_MAX: usize = 65_535 + 14 + 4;

/// Receive descriptor status and error bits.
const STAT_DD: u8 = 0x01;
const STAT_EOP: u8 = 0x02;
/// Ignore checksum indication: the card did not check TCP/IP checksums.
const STAT_IXSM: u8 = 0x04;
const STAT_VP: u8 = 0x08;
/// RX data error: the buffer could not be written (it is not RAM).
const ERR_RXE: u8 = 0x80;

/// A frame in the FIFO: its bytes as they go to memory (FCS included) and its VLAN tag.
struct Received {
    bytes: Vec<u8>,
    vlan: Option<u16>,
}

/// Frames accepted and not yet in guest memory.
#[derive(Default)]
pub struct Fifo {
    frames: VecDeque<Received>,
    bytes: usize,
}

impl Fifo {
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// RCTL's receive buffer size.
fn buffer_size(rctl: u32) -> usize {
    let extended = rctl & RCTL_BSEX != 0;
    match ((rctl >> 16) & 3, extended) {
        (1, false) => 1024,
        (2, false) => 512,
        (3, false) => 256,
        (1, true) => 16384,
        (2, true) => 8192,
        (3, true) => 4096,
        // 0 is 2048 bytes (reserved with BSEX).
        _ => 2048,
    }
}

impl E1000 {
    /// Whether the receive filter takes `frame`: VLAN filter, then exact addresses,
    /// promiscuous modes, broadcast, and the multicast hash.
    fn accepts(&self, frame: &[u8]) -> bool {
        let rctl = self.get(RCTL);
        if frame.len() < ETHERTYPE_AT + 2 {
            return false;
        }
        if let Some(tci) = vlan_tag(frame, self.get(VET) as u16) {
            let vid = (tci & 0xfff) as u32;
            let allowed = self.get(VFTA + 4 * (vid >> 5)) & (1 << (vid & 31)) != 0;
            if rctl & RCTL_VFE != 0 && !allowed {
                return false;
            }
        }
        let dst = &frame[..6];
        match destination(frame) {
            Destination::Broadcast => rctl & (RCTL_BAM | RCTL_MPE) != 0,
            Destination::Multicast => rctl & RCTL_MPE != 0 || self.multicast_hash_hit(dst),
            Destination::Unicast => rctl & RCTL_UPE != 0 || self.exact_match(dst),
        }
    }

    fn exact_match(&self, dst: &[u8]) -> bool {
        (0..RA_PAIRS).any(|i| {
            let low = self.get(RAL0 + 8 * i).to_le_bytes();
            let high = self.get(RAH0 + 8 * i);
            let high_bytes = high.to_le_bytes();
            high & (1 << 31) != 0 && dst[..4] == low && dst[4..6] == high_bytes[..2]
        })
    }

    /// The multicast table array: 12 bits of the address, picked by RCTL.MO.
    fn multicast_hash_hit(&self, dst: &[u8]) -> bool {
        let shift = [4, 3, 2, 0][((self.get(RCTL) >> 12) & 3) as usize];
        let hash = ((u16::from_le_bytes([dst[4], dst[5]]) >> shift) & 0xfff) as u32;
        self.get(MTA + 4 * (hash >> 5)) & (1 << (hash & 31)) != 0
    }

    /// A frame from the wire: filtered, checked for length, and queued in the FIFO (or lost
    /// when it is full), then moved into guest memory if descriptors wait.
    pub fn receive_frame(&mut self, frame: &[u8]) {
        let rctl = self.get(RCTL);
        if rctl & RCTL_EN == 0 || !self.accepts(frame) {
            return;
        }
        let mut bytes = frame.to_vec();
        let tpid = self.get(VET) as u16;
        let vlan = vlan_tag(&bytes, tpid).filter(|_| self.get(CTRL) & CTRL_VME != 0);
        if vlan.is_some() {
            bytes.drain(ETHERTYPE_AT..ETHERTYPE_AT + 4);
        }
        // The sender padded it on the wire, and the card keeps the FCS unless told to strip.
        if bytes.len() < MIN_FRAME {
            bytes.resize(MIN_FRAME, 0);
        }
        if rctl & RCTL_SECRC == 0 {
            let crc = fcs(&bytes);
            bytes.extend_from_slice(&crc);
        }
        let limit = if rctl & RCTL_LPE != 0 {
            MAX_LONG_FRAME
        } else {
            MAX_FRAME
        };
        if frame.len() + 4 > limit {
            self.count(stat::ROC, 1);
            self.stats.dropped += 1;
            return;
        }
        self.count(stat::TPR, 1);
        self.count64(stat::TORL, frame.len() as u64 + 4);
        if self.fifo.bytes + bytes.len() > FIFO_BYTES {
            self.count(stat::MPC, 1);
            self.stats.dropped += 1;
            self.interrupt(ICR_RXO);
            return;
        }
        self.fifo.bytes += bytes.len();
        self.fifo.frames.push_back(Received { bytes, vlan });
        self.deliver();
    }

    /// Moves frames from the FIFO into the descriptors the driver has given.
    pub(super) fn deliver(&mut self) {
        if self.fifo.is_empty() || self.get(RCTL) & RCTL_EN == 0 || !self.mastering() {
            return;
        }
        let Some((base, count)) = self.ring(RDBAL) else {
            return;
        };
        let (head, tail) = (self.get(RDH), self.get(RDT));
        if head >= count || tail >= count {
            self.guest_error(GuestError::Index);
            return;
        }
        let size = buffer_size(self.get(RCTL));
        let mut delivered = false;
        while let Some(f) = self.fifo.frames.front() {
            let needed = f.bytes.len().div_ceil(size) as u32;
            let free = (self.get(RDT) + count - self.get(RDH)) % count;
            if needed >= count {
                // It can never fit: the driver's ring is smaller than the frame.
                self.guest_error(GuestError::RingTooSmall);
                self.drop_front();
                continue;
            }
            if free < needed {
                self.count(stat::RNBC, 1);
                break;
            }
            let Some(f) = self.fifo.frames.pop_front() else {
                break;
            };
            self.fifo.bytes -= f.bytes.len();
            self.write_descriptors(base, count, size, &f);
            delivered = true;
        }
        if delivered {
            self.interrupt(ICR_RXT0 | self.threshold_cause(count));
        }
    }

    fn drop_front(&mut self) {
        if let Some(f) = self.fifo.frames.pop_front() {
            self.fifo.bytes -= f.bytes.len();
            self.stats.dropped += 1;
        }
    }

    /// ICR.RXDMT0 when the free descriptors fall to the fraction RCTL.RDMTS names.
    fn threshold_cause(&self, count: u32) -> u32 {
        let free = (self.get(RDT) + count - self.get(RDH)) % count;
        let shift = ((self.get(RCTL) >> 8) & 3) + 1;
        if free <= count >> shift {
            ICR_RXDMT0
        } else {
            0
        }
    }

    /// Writes one frame over the next descriptors from RDH and advances it.
    fn write_descriptors(&mut self, base: u64, count: u32, size: usize, f: &Received) {
        let chunks = f.bytes.chunks(size).collect::<Vec<_>>();
        let mut head = self.get(RDH);
        for (i, chunk) in chunks.iter().enumerate() {
            let at = base + head as u64 * DESC_SIZE;
            let mut addr = [0u8; 8];
            let mut errors = 0;
            if !self.dma_read(at, &mut addr) {
                self.guest_error(GuestError::Ring);
                return;
            }
            if !self.dma_write(u64::from_le_bytes(addr), chunk) {
                self.guest_error(GuestError::RxBuffer);
                errors |= ERR_RXE;
            }
            let mut status = STAT_DD | STAT_IXSM;
            if i + 1 == chunks.len() {
                status |= STAT_EOP;
            }
            if f.vlan.is_some() {
                status |= STAT_VP;
            }
            let mut wb = [0u8; 8];
            wb[..2].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
            wb[4] = status;
            wb[5] = errors;
            wb[6..].copy_from_slice(&f.vlan.unwrap_or(0).to_le_bytes());
            self.dma_write(at + 8, &wb);
            head = (head + 1) % count;
            self.set(RDH, head);
        }
        self.count_received(f);
    }

    fn count_received(&mut self, f: &Received) {
        let len = f.bytes.len() as u64;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += len;
        self.count(stat::GPRC, 1);
        self.count64(stat::GORCL, len);
        match destination(&f.bytes) {
            Destination::Broadcast => self.count(stat::BPRC, 1),
            Destination::Multicast => self.count(stat::MPRC, 1),
            Destination::Unicast => {}
        }
    }

    /// Takes every frame waiting on the backend (while the receiver is enabled); whether the
    /// receive thread should watch the backend.
    pub fn poll_backend(&mut self, buf: &mut [u8]) -> bool {
        while self.get(RCTL) & RCTL_EN != 0 {
            match self.backend.read_frame(buf) {
                Ok(len) => self.receive_frame(&buf[..len.min(buf.len())]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.host_error("read", e);
                    return true;
                }
            }
        }
        // Disabled: frames wait in the host until the driver enables the receiver.
        false
    }
}

/// Starts the card's receive thread: it polls the backend (while the receiver is enabled) and
/// the card's wake-up event.
pub fn receive_thread(nic: Arc<Mutex<E1000>>) -> std::io::Result<RxThread> {
    let (backend, wake) = {
        let n = lock(&nic);
        (n.backend.clone(), n.wake.try_clone()?)
    };
    let mut buf = vec![0u8; TAP_FRAME_MAX];
    RxThread::spawn("e1000", backend, &wake, move || {
        lock(&nic).poll_backend(&mut buf)
    })
}

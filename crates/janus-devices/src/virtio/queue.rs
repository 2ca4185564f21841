//! Virtqueues as Janus's devices use them. The split queue itself (rings, EVENT_IDX
//! arithmetic, descriptor iteration) is virtio-queue's; it stops quietly on a bad chain and
//! leaves the checks to the device. This module walks each chain the driver offers and checks
//! it before any device sees it: every buffer in guest RAM, device-readable buffers before
//! device-writable ones, and a proper end (no loop, no next index off the table, no more
//! descriptors than the queue holds). A bad chain is returned to the driver with nothing
//! written, counted, and logged once; a queue the device cannot go on with (an available index
//! running ahead of the ring, a head index off the table) puts the device in DEVICE_NEEDS_RESET.

use janus_engine::{DmaObserver, GuestMemory, IrqLine};
use std::num::Wrapping;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};

/// Interrupt status bit: the device used buffers.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration (or the device status) changed.
pub const INT_CONFIG: u32 = 2;

/// One guest buffer of a chain, checked to lie in guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
}

/// A descriptor chain that passed [`walk`]: its buffers in order, split by direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    /// Buffers the device reads (the driver's request).
    pub readable: Vec<Buffer>,
    /// Buffers the device writes (its answer), all after the readable ones.
    pub writable: Vec<Buffer>,
}

/// Why a chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the chain is empty or its descriptors cannot be read")]
    Empty,
    #[error(
        "the chain does not end: its next pointers loop, leave the table, or outnumber the queue"
    )]
    Unterminated,
    #[error("a buffer at {addr:#x} of {len} bytes lies outside guest RAM")]
    OutsideRam { addr: u64, len: u32 },
    #[error("a device-readable buffer follows a device-writable one")]
    ReadableAfterWritable,
}

/// `len` bytes at `addr` are guest RAM (an empty buffer anywhere is harmless).
pub fn in_ram(mem: &GuestMemory, addr: u64, len: u64) -> bool {
    len == 0
        || addr
            .checked_add(len - 1)
            .is_some_and(|_| mem.check_range(GuestAddress(addr), len as usize))
}

/// Walks the chain `descriptors` yields (virtio-queue's iterator, which follows indirect
/// tables and stops at the end, at a loop or at an unreadable descriptor) and checks it.
pub fn walk(
    head: u16,
    descriptors: impl Iterator<Item = Descriptor>,
    mem: &GuestMemory,
) -> Result<Chain, ChainError> {
    let mut chain = Chain {
        head,
        ..Chain::default()
    };
    let mut last = None;
    for d in descriptors {
        let (addr, len) = (d.addr().0, d.len());
        if !in_ram(mem, addr, len as u64) {
            return Err(ChainError::OutsideRam { addr, len });
        }
        let buffer = Buffer { addr, len };
        if d.is_write_only() {
            chain.writable.push(buffer);
        } else if chain.writable.is_empty() {
            chain.readable.push(buffer);
        } else {
            return Err(ChainError::ReadableAfterWritable);
        }
        last = Some(d);
    }
    match last {
        None => Err(ChainError::Empty),
        // The iterator ended although the last descriptor points on.
        Some(d) if d.has_next() => Err(ChainError::Unterminated),
        Some(_) => Ok(chain),
    }
}

/// Counters of one device's queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Chains handed to the device.
    pub chains: u64,
    /// Chains refused by [`walk`] and returned to the driver untouched.
    pub bad_chains: u64,
    /// Misuse of the transport or the queues (writes the device ignored, broken rings).
    pub misuse: u64,
}

/// The queues of one device, with what a device needs to serve them: guest memory, the
/// engine's DMA observer, and the interrupt line.
pub struct Queues {
    mem: GuestMemory,
    dma: Arc<dyn DmaObserver>,
    irq: Arc<dyn IrqLine>,
    queues: Vec<Queue>,
    /// Chains added to each queue's used ring since the driver was last notified.
    added: Vec<u32>,
    /// Interrupt status (INT_VRING, INT_CONFIG); the line is high while it is not zero.
    isr: u32,
    /// The device cannot go on until the driver resets it.
    needs_reset: bool,
    stats: QueueStats,
    name: &'static str,
    warned: bool,
}

impl Queues {
    /// Queues of the given maximum sizes (each a power of two up to 32768).
    pub fn new(
        name: &'static str,
        sizes: &[u16],
        mem: GuestMemory,
        dma: Arc<dyn DmaObserver>,
        irq: Arc<dyn IrqLine>,
    ) -> Queues {
        let queues: Vec<Queue> = sizes.iter().filter_map(|&s| Queue::new(s).ok()).collect();
        Queues {
            added: vec![0; queues.len()],
            mem,
            dma,
            irq,
            queues,
            isr: 0,
            needs_reset: false,
            stats: QueueStats::default(),
            name,
            warned: false,
        }
    }

    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The queue at `index`, for the transport's configuration registers.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Queue> {
        self.queues.get_mut(index)
    }

    pub fn get(&self, index: usize) -> Option<&Queue> {
        self.queues.get(index)
    }

    pub fn needs_reset(&self) -> bool {
        self.needs_reset
    }

    pub fn interrupt_status(&self) -> u32 {
        self.isr
    }

    /// Back to the power-on state (device reset): queues unconfigured, interrupt low.
    pub fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.added.iter_mut().for_each(|a| *a = 0);
        self.needs_reset = false;
        self.acknowledge(u32::MAX);
    }

    /// Logs the first misuse of this device by the guest; later ones are only counted.
    pub fn misuse(&mut self, what: std::fmt::Arguments) {
        self.stats.misuse += 1;
        self.warn(what);
    }

    fn warn(&mut self, what: std::fmt::Arguments) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "{}: {what} (further guest errors on this device are counted, not logged)",
                self.name
            );
        }
    }

    /// Stops serving the queues and tells the driver (DEVICE_NEEDS_RESET and a configuration
    /// interrupt), as a device that lost track of its rings does.
    pub fn fail(&mut self, what: std::fmt::Arguments) {
        self.misuse(what);
        if !self.needs_reset {
            self.needs_reset = true;
            self.raise(INT_CONFIG);
        }
    }

    /// At DRIVER_OK: checks that every ready queue's rings lie in guest RAM and switches
    /// EVENT_IDX on or off. Returns false (and fails the device) if a ring does not fit.
    pub fn activate(&mut self, event_idx: bool) -> bool {
        let mut ok = true;
        for q in &mut self.queues {
            q.set_event_idx(event_idx);
            ok &= !q.ready() || q.is_valid(&self.mem);
        }
        if !ok {
            self.fail(format_args!("a queue's rings lie outside guest RAM"));
        }
        ok
    }

    fn raise(&mut self, bit: u32) {
        let was = self.isr;
        self.isr |= bit;
        if was == 0 {
            self.set_line(true);
        }
    }

    /// The driver acknowledged interrupt status bits.
    pub fn acknowledge(&mut self, bits: u32) {
        let was = self.isr;
        self.isr &= !bits;
        if was != 0 && self.isr == 0 {
            self.set_line(false);
        }
    }

    fn set_line(&mut self, high: bool) {
        if let Err(e) = self.irq.set_level(high) {
            tracing::warn!("{}: cannot drive its interrupt line: {e}", self.name);
        }
    }

    /// Tells the engine about a device write to guest memory.
    pub fn dma_written(&self, addr: u64, len: u64) {
        if len > 0 {
            self.dma.dma_written(addr, len);
        }
    }

    /// The next good chain the driver made available on queue `index`, or `None` when there
    /// is none (then notifications from the driver are enabled again, EVENT_IDX permitting).
    /// Bad chains on the way are returned to the driver unused.
    pub fn pop(&mut self, index: usize) -> Option<Chain> {
        loop {
            if self.needs_reset {
                return None;
            }
            let q = self.queues.get_mut(index).filter(|q| q.ready())?;
            let next = Wrapping(q.next_avail());
            let size = q.size();
            match q.avail_idx(&self.mem, Ordering::Acquire) {
                Err(e) => {
                    self.fail(format_args!(
                        "queue {index}: available ring unreadable: {e}"
                    ));
                    return None;
                }
                Ok(avail) if (avail - next).0 > size => {
                    self.fail(format_args!(
                        "queue {index}: available index {} runs more than the queue size ahead of {}",
                        avail.0, next.0
                    ));
                    return None;
                }
                Ok(avail) if avail == next => {
                    // Caught up: ask for a notification at the next entry, and look once more
                    // in case the driver added one meanwhile.
                    if q.enable_notification(&self.mem).unwrap_or(false) {
                        continue;
                    }
                    self.report_used_ring(index);
                    return None;
                }
                Ok(_) => {}
            }
            let mem = self.mem.clone();
            let chain: DescriptorChain<&GuestMemory> = q.pop_descriptor_chain(&mem)?;
            let head = chain.head_index();
            match walk(head, chain, &mem) {
                Ok(c) => {
                    self.stats.chains += 1;
                    return Some(c);
                }
                Err(e) => {
                    self.stats.bad_chains += 1;
                    self.warn(format_args!("queue {index}: chain at {head} refused: {e}"));
                    if head >= size {
                        self.fail(format_args!(
                            "queue {index}: head index {head} is off the table"
                        ));
                        return None;
                    }
                    self.add_used(index, head, 0);
                }
            }
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written into it.
    pub fn add_used(&mut self, index: usize, head: u16, len: u32) {
        let Some(q) = self.queues.get_mut(index) else {
            return;
        };
        match q.add_used(&self.mem, head, len) {
            Ok(()) => self.added[index] += 1,
            Err(e) => self.fail(format_args!("queue {index}: used ring unwritable: {e}")),
        }
    }

    /// Interrupts the driver if chains were used on queue `index` since the last time and
    /// EVENT_IDX (if negotiated) asks for it.
    pub fn notify_driver(&mut self, index: usize) {
        if self.added.get(index).is_none_or(|&n| n == 0) {
            return;
        }
        self.added[index] = 0;
        self.report_used_ring(index);
        let Some(q) = self.queues.get_mut(index) else {
            return;
        };
        match q.needs_notification(&self.mem) {
            Ok(true) => self.raise(INT_VRING),
            Ok(false) => {}
            Err(e) => self.fail(format_args!("queue {index}: used_event unreadable: {e}")),
        }
    }

    /// The used ring (with avail_event after it) was written.
    fn report_used_ring(&self, index: usize) {
        if let Some(q) = self.queues.get(index) {
            self.dma_written(q.used_ring(), 6 + 8 * q.size() as u64);
        }
    }

    /// Hands every good chain available on queue `index` to `handle`, which returns how many
    /// bytes it wrote into the chain; returns them and notifies the driver.
    pub fn process(&mut self, index: usize, mut handle: impl FnMut(&Queues, &Chain) -> u32) {
        while let Some(chain) = self.pop(index) {
            let len = handle(self, &chain);
            self.add_used(index, chain.head, len);
        }
        self.notify_driver(index);
    }
}

/// Reads and writes the bytes of a chain's buffers as one stream, checked against guest RAM
/// by [`walk`] already (and again by vm-memory on every access).
pub struct Stream<'a> {
    buffers: &'a [Buffer],
}

impl<'a> Stream<'a> {
    pub fn new(buffers: &'a [Buffer]) -> Stream<'a> {
        Stream { buffers }
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.buffers.iter().map(|b| b.len as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The guest ranges covering `len` bytes from byte `offset` of the stream (fewer if the
    /// stream ends first).
    pub fn ranges(&self, offset: u64, len: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let (mut skip, mut left) = (offset, len);
        for b in self.buffers {
            if left == 0 {
                break;
            }
            let blen = b.len as u64;
            if skip >= blen {
                skip -= blen;
                continue;
            }
            let n = (blen - skip).min(left);
            out.push((b.addr + skip, n));
            left -= n;
            skip = 0;
        }
        out
    }

    /// Copies `out.len()` bytes from byte `offset` of the stream; false if the stream is
    /// shorter or guest memory refused.
    pub fn read(&self, mem: &GuestMemory, offset: u64, out: &mut [u8]) -> bool {
        use vm_memory::Bytes;
        let mut done = 0usize;
        for (addr, n) in self.ranges(offset, out.len() as u64) {
            let piece = &mut out[done..done + n as usize];
            if mem.read_slice(piece, GuestAddress(addr)).is_err() {
                return false;
            }
            done += n as usize;
        }
        done == out.len()
    }

    /// Copies `data` to byte `offset` of the stream and reports the write to the engine;
    /// false if the stream is shorter or guest memory refused.
    pub fn write(&self, queues: &Queues, offset: u64, data: &[u8]) -> bool {
        use vm_memory::Bytes;
        let mut done = 0usize;
        for (addr, n) in self.ranges(offset, data.len() as u64) {
            let piece = &data[done..done + n as usize];
            if queues.mem.write_slice(piece, GuestAddress(addr)).is_err() {
                return false;
            }
            queues.dma_written(addr, n);
            done += n as usize;
        }
        done == data.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use janus_engine::NoDmaObserver;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use vm_memory::{Address, Bytes};

    pub const RAM: u64 = 0x10_0000;
    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;
    pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

    /// An interrupt line that remembers its level and counts rising edges.
    #[derive(Default)]
    pub struct Line {
        pub high: AtomicBool,
        pub raised: Mutex<u32>,
    }
    impl IrqLine for Line {
        fn set_level(&self, high: bool) -> janus_engine::Result<()> {
            if high && !self.high.swap(true, Ordering::SeqCst) {
                *self.raised.lock().unwrap() += 1;
            }
            self.high.store(high, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A driver's view of one split queue in test memory.
    pub struct Driver {
        pub mem: GuestMemory,
        pub size: u16,
        pub avail_idx: u16,
    }

    impl Driver {
        pub fn new(size: u16) -> Driver {
            let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
            Driver {
                mem,
                size,
                avail_idx: 0,
            }
        }

        pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            self.desc_at(DESC, i, addr, len, flags, next);
        }

        pub fn desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let at = GuestAddress(table + 16 * i as u64);
            self.mem.write_obj(addr, at).unwrap();
            self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
            self.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
            self.mem.write_obj(next, at.unchecked_add(14)).unwrap();
        }

        /// Makes chain `head` available.
        pub fn offer(&mut self, head: u16) {
            let slot = AVAIL + 4 + 2 * (self.avail_idx % self.size) as u64;
            self.mem.write_obj(head, GuestAddress(slot)).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.mem
                .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
                .unwrap();
        }

        pub fn used_idx(&self) -> u16 {
            self.mem.read_obj(GuestAddress(USED + 2)).unwrap()
        }

        /// Used element `i`: (head, len).
        pub fn used(&self, i: u16) -> (u32, u32) {
            let at = USED + 4 + 8 * (i % self.size) as u64;
            (
                self.mem.read_obj(GuestAddress(at)).unwrap(),
                self.mem.read_obj(GuestAddress(at + 4)).unwrap(),
            )
        }

        /// Queues with one queue configured on this driver's rings, activated.
        pub fn queues(&self, line: Arc<Line>) -> Queues {
            let mut qs = Queues::new(
                "test",
                &[self.size],
                self.mem.clone(),
                Arc::new(NoDmaObserver),
                line,
            );
            let q = qs.get_mut(0).unwrap();
            q.set_size(self.size);
            q.set_desc_table_address(Some(DESC as u32), Some(0));
            q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
            q.set_used_ring_address(Some(USED as u32), Some(0));
            q.set_ready(true);
            assert!(qs.activate(false));
            qs
        }
    }

    fn pop_one(d: &Driver) -> (Option<Chain>, Queues) {
        let mut qs = d.queues(Arc::new(Line::default()));
        let c = qs.pop(0);
        (c, qs)
    }

    #[test]
    fn good_chain_splits_by_direction() {
        let mut d = Driver::new(8);
        d.desc(0, 0x8000, 16, NEXT, 1);
        d.desc(1, 0x9000, 512, NEXT | WRITE, 2);
        d.desc(2, 0xa000, 1, WRITE, 0);
        d.offer(0);
        let (c, _) = pop_one(&d);
        let c = c.unwrap();
        assert_eq!(c.head, 0);
        assert_eq!(
            c.readable,
            vec![Buffer {
                addr: 0x8000,
                len: 16
            }]
        );
        assert_eq!(c.writable.len(), 2);
    }

    #[test]
    fn indirect_tables_are_followed() {
        let mut d = Driver::new(8);
        d.desc_at(0x5000, 0, 0x8000, 16, NEXT, 1);
        d.desc_at(0x5000, 1, 0x9000, 1, WRITE, 0);
        d.desc(3, 0x5000, 32, INDIRECT, 0);
        d.offer(3);
        let (c, _) = pop_one(&d);
        let c = c.unwrap();
        assert_eq!((c.head, c.readable.len(), c.writable.len()), (3, 1, 1));
    }

    /// Each bad chain is refused, returned unused, counted; the next good one still works.
    #[test]
    fn bad_chains_are_returned_and_counted() {
        let mut d = Driver::new(8);
        // 0: a loop (0 -> 1 -> 0).
        d.desc(0, 0x8000, 16, NEXT, 1);
        d.desc(1, 0x8000, 16, NEXT, 0);
        // 2: next index off the table.
        d.desc(2, 0x8000, 16, NEXT, 200);
        // 3: buffer past the end of RAM.
        d.desc(3, RAM - 8, 16, 0, 0);
        // 4: buffer at an address that wraps.
        d.desc(4, u64::MAX - 4, 16, 0, 0);
        // 5: readable after writable.
        d.desc(5, 0x8000, 1, WRITE | NEXT, 6);
        d.desc(6, 0x8000, 1, 0, 0);
        // 7: a good one.
        d.desc(7, 0x8000, 1, WRITE, 0);
        for h in [0, 2, 3, 4, 5, 7] {
            d.offer(h);
        }
        let line = Arc::new(Line::default());
        let mut qs = d.queues(line.clone());
        let c = qs.pop(0).unwrap();
        assert_eq!(c.head, 7);
        qs.add_used(0, 7, 1);
        qs.notify_driver(0);
        assert!(qs.pop(0).is_none());
        assert_eq!(qs.stats().bad_chains, 5);
        assert_eq!(d.used_idx(), 6);
        for i in 0..5 {
            assert_eq!(d.used(i).1, 0, "bad chain returned with nothing written");
        }
        assert_eq!(d.used(5), (7, 1));
        assert!(!qs.needs_reset());
        assert_eq!(qs.interrupt_status(), INT_VRING);
        assert!(line.high.load(Ordering::SeqCst));
    }

    #[test]
    fn chain_longer_than_the_queue_is_refused() {
        let mut d = Driver::new(4);
        for i in 0..4 {
            d.desc(i, 0x8000, 1, NEXT, (i + 1) % 4);
        }
        d.offer(0);
        let (c, qs) = pop_one(&d);
        assert!(c.is_none());
        assert_eq!(qs.stats().bad_chains, 1);
    }

    #[test]
    fn indirect_table_outside_ram_or_nested_is_refused() {
        let mut d = Driver::new(8);
        d.desc(0, RAM + 0x1000, 64, INDIRECT, 0);
        d.desc_at(0x5000, 0, 0x6000, 32, INDIRECT, 0);
        d.desc(1, 0x5000, 16, INDIRECT, 0);
        d.offer(0);
        d.offer(1);
        let (c, qs) = pop_one(&d);
        assert!(c.is_none());
        assert_eq!(qs.stats().bad_chains, 2);
    }

    #[test]
    fn runaway_avail_index_needs_reset() {
        let mut d = Driver::new(4);
        d.desc(0, 0x8000, 1, 0, 0);
        d.offer(0);
        d.mem.write_obj(9u16, GuestAddress(AVAIL + 2)).unwrap();
        let line = Arc::new(Line::default());
        let mut qs = d.queues(line.clone());
        assert!(qs.pop(0).is_none());
        assert!(qs.needs_reset());
        assert_eq!(qs.interrupt_status(), INT_CONFIG);
        qs.acknowledge(INT_CONFIG);
        assert!(!line.high.load(Ordering::SeqCst));
        qs.reset();
        assert!(!qs.needs_reset());
    }

    #[test]
    fn head_off_the_table_needs_reset() {
        let mut d = Driver::new(4);
        d.offer(7);
        let (c, qs) = pop_one(&d);
        assert!(c.is_none());
        assert!(qs.needs_reset());
    }

    #[test]
    fn rings_outside_ram_fail_activation() {
        let d = Driver::new(8);
        let mut qs = d.queues(Arc::new(Line::default()));
        qs.get_mut(0)
            .unwrap()
            .set_used_ring_address(Some(0xffff_f000), Some(0));
        assert!(!qs.activate(true));
        assert!(qs.needs_reset());
    }

    #[test]
    fn event_idx_suppresses_interrupts_the_driver_did_not_ask_for() {
        let mut d = Driver::new(8);
        d.desc(0, 0x8000, 1, WRITE, 0);
        d.desc(1, 0x8000, 1, WRITE, 0);
        let line = Arc::new(Line::default());
        let mut qs = d.queues(line.clone());
        qs.activate(true);
        // used_event (after the avail ring) = 1: interrupt only once entry 1 is used.
        d.mem
            .write_obj(1u16, GuestAddress(AVAIL + 4 + 2 * 8))
            .unwrap();
        d.offer(0);
        qs.process(0, |_, _| 1);
        assert_eq!(qs.interrupt_status(), 0, "entry 0 used: not asked for");
        d.offer(1);
        qs.process(0, |_, _| 1);
        assert_eq!(qs.interrupt_status(), INT_VRING);
        assert_eq!(*line.raised.lock().unwrap(), 1);
        // avail_event (after the used ring) tells the driver where to notify next.
        let avail_event: u16 = d.mem.read_obj(GuestAddress(USED + 4 + 8 * 8)).unwrap();
        assert_eq!(avail_event, 2);
    }

    #[test]
    fn stream_reads_and_writes_across_buffers() {
        let d = Driver::new(8);
        let qs = d.queues(Arc::new(Line::default()));
        let bufs = [
            Buffer {
                addr: 0x8000,
                len: 3,
            },
            Buffer {
                addr: 0x9000,
                len: 5,
            },
        ];
        let s = Stream::new(&bufs);
        assert_eq!(s.len(), 8);
        assert!(s.write(&qs, 1, b"abcdef"));
        let mut out = [0u8; 7];
        assert!(s.read(&d.mem, 1, &mut out[..6]));
        assert_eq!(&out[..6], b"abcdef");
        assert!(!s.read(&d.mem, 4, &mut out), "past the end");
        assert_eq!(s.ranges(2, 3), vec![(0x8002, 1), (0x9000, 2)]);
    }
}
